//! Test support for the functions' handler tests (feature `testing`): the pipeline on the
//! embedded adapters (SQLite state and queues in memory, evidence in a temporary directory, the
//! simulated RMM, PSA and pager) on a clock that only moves when told to; the checked-in event
//! fixtures as [`LambdaEvent`]s; and SQS records put on the local queues so that their receipt
//! handles are live, as Lambda's event source mapping delivers them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::{DateTime, Duration, TimeZone, Utc};
use lambda_runtime::{Context, LambdaEvent};
use patchflow_pipeline::error::HandlerError;

use crate::function::Function;
use patchflow_connectors::file::{FileCatalog, FileInventory};
use patchflow_core::ids::CycleId;
use patchflow_core::ports::clock::{Clock, ManualClock};
use patchflow_core::ports::queue::{
    Delivery, Envelope, QueueConsumer, QueueSender, Stage, SCHEMA_VERSION,
};
use patchflow_core::ports::{BoxError, PortError};
use patchflow_local::evidence::FsEvidenceStore;
use patchflow_local::queue::SqliteQueues;
use patchflow_local::state::SqliteState;
use patchflow_pipeline::env::{Env, Settings};
use patchflow_pipeline::pump::{drain, PumpOptions};
use patchflow_pipeline::sync::{inventory_sync, SyncReport};
use patchflow_sim::connectors::{Outcomes, SimPager, SimPsa, SimRmm};
use serde::de::DeserializeOwned;

use crate::sqs::RECEIVE_COUNT;

/// The environment of the embedded adapters.
pub type LocalEnv =
    Env<SqliteState, SqliteQueues, FsEvidenceStore, SimRmm<ManualClock>, SimPsa, SimPager>;

/// The inventory [`Embedded::open_cycle`] syncs.
pub const INVENTORY: &str = "tests/fixtures/inventory-dst.json";
/// The catalog template [`Embedded::open_cycle`] reads.
pub const CATALOG: &str = "functions/cli/demo/catalog-{cycle}.json";

/// 2026-12's release: Patch Tuesday 2026-12-08, 10:00 America/Los_Angeles.
pub fn release() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 8, 18, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Receives before the local queues move a message to its dead-letter queue.
pub const MAX_RECEIVES: u32 = 5;

/// The pipeline on the embedded adapters.
#[derive(Debug)]
pub struct Embedded {
    /// The ports and the policy.
    pub env: LocalEnv,
    /// The stage queues' consumer side (the same queues as `env.queues`).
    pub queues: SqliteQueues,
    /// The clock of the queues and the RMM.
    pub clock: Arc<ManualClock>,
    /// The evidence store's directory, removed on drop.
    pub dir: tempfile::TempDir,
}

impl Embedded {
    /// A fresh pipeline at `now`: empty state and queues, the default policy, a simulated RMM
    /// that never fails.
    pub fn new(now: DateTime<Utc>) -> Result<Self, BoxError> {
        let clock = Arc::new(ManualClock::new(now));
        let dir = tempfile::tempdir()?;
        let queues = SqliteQueues::in_memory(clock.clone(), MAX_RECEIVES)?;
        let env = Env {
            state: SqliteState::in_memory()?,
            queues: queues.clone(),
            evidence: FsEvidenceStore::open(dir.path().join("evidence"))?,
            rmm: SimRmm::new(
                Outcomes {
                    seed: 1,
                    failure_rate: 0.0,
                },
                clock.clone(),
            ),
            psa: SimPsa::default(),
            pager: SimPager::default(),
            policy: patchflow_core::policy::Policy::default(),
            settings: Settings::default(),
        };
        Ok(Self {
            env,
            queues,
            clock,
            dir,
        })
    }

    /// The clock's now.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Invokes a function with an event, at the clock's now, as the runtime would.
    pub async fn invoke<F: Function>(
        &self,
        function: &F,
        payload: F::Event,
    ) -> Result<F::Response, HandlerError> {
        function
            .handle(&self.env, &self.queues, lambda_event(payload), self.now())
            .await
    }

    /// Opens the 2026-12 cycle as inventory-sync and ring-promotion do at Patch Tuesday's
    /// release (2026-12-08T18:00:00Z): the inventory `tests/fixtures/inventory-dst.json` (9
    /// endpoints of 4 clients in 5 tiers) synced, each client's part of the opening handled from
    /// the rollout queue, and the demo catalog `functions/cli/demo/catalog-2026-12.json` (12
    /// patches, whose evaluations the opening puts on the approval queue).
    pub async fn open_cycle(&self) -> Result<SyncReport, BoxError> {
        let inventory = FileInventory::new(workspace_file(INVENTORY));
        let catalog = FileCatalog::new(workspace_file(CATALOG).display().to_string());
        let report = inventory_sync(&self.env, &inventory, &catalog, release()).await?;
        let stats = drain(
            &self.env,
            &self.queues,
            Stage::Rollout,
            self.now(),
            PumpOptions::default(),
        )
        .await?;
        if stats.retried > 0 || stats.dead_lettered > 0 {
            return Err(format!("the cycle's opening did not finish: {stats:?}").into());
        }
        Ok(report)
    }

    /// Receives up to 10 messages of a stage and hands them over as Lambda's event source
    /// mapping does: an SQS event whose records carry their live receipt handles.
    pub async fn receive_event(&self, stage: Stage) -> Result<SqsEvent, BoxError> {
        let deliveries = self.queues.receive(stage, 10, Duration::minutes(5)).await?;
        let records = deliveries
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                let mut attributes = HashMap::new();
                attributes.insert(RECEIVE_COUNT.to_owned(), d.receive_count.to_string());
                SqsMessage {
                    message_id: Some(format!("{stage}-{}-{i}", self.now().timestamp_millis())),
                    body: Some(d.body),
                    receipt_handle: Some(d.receipt),
                    attributes,
                    event_source: Some("aws:sqs".to_owned()),
                    event_source_arn: Some(format!(
                        "arn:aws:sqs:us-east-1:123456789012:patchflow-{stage}"
                    )),
                    aws_region: Some("us-east-1".to_owned()),
                    ..SqsMessage::default()
                }
            })
            .collect();
        Ok(SqsEvent { records })
    }

    /// Receives every visible message of a stage (and deletes them): what was sent there.
    pub async fn take(&self, stage: Stage) -> Result<Vec<Envelope>, BoxError> {
        let mut out = Vec::new();
        loop {
            let batch = self.queues.receive(stage, 10, Duration::minutes(5)).await?;
            if batch.is_empty() {
                return Ok(out);
            }
            for d in batch {
                self.queues.ack(stage, &d.receipt).await?;
                out.push(Envelope::from_body(&d.body)?);
            }
        }
    }

    /// Puts each record of `event` on the stage's queue and receives it, so that the record's
    /// receipt handle (replaced here) is live and the queue port can dead-letter it, as in SQS.
    /// A record whose body is an envelope is sent as it is; any other body travels as a stand-in
    /// whose receipt it takes (the local queues only carry envelopes; a dead letter keeps the
    /// record's own body). Other messages received meanwhile are released again.
    pub async fn deliver(&self, stage: Stage, event: &mut SqsEvent) -> Result<(), BoxError> {
        let cycle = CycleId::containing(self.now().date_naive())?;
        let mut sent = Vec::with_capacity(event.records.len());
        for (i, record) in event.records.iter().enumerate() {
            let body = record.body.as_deref().unwrap_or_default();
            let envelope = match Envelope::from_body(body) {
                Ok(envelope) => envelope,
                Err(_) => Envelope {
                    kind: "stand_in".to_owned(),
                    schema_version: SCHEMA_VERSION,
                    idempotency_key: format!(
                        "stand-in/{}/{i}",
                        record.message_id.as_deref().unwrap_or_default()
                    ),
                    cycle,
                    tier: None,
                    payload: serde_json::Value::Null,
                },
            };
            self.queues
                .send_batch(stage, std::slice::from_ref(&envelope))
                .await?;
            sent.push(envelope.to_body());
        }
        let mut received: Vec<Option<Delivery>> = Vec::new();
        loop {
            let batch = self.queues.receive(stage, 10, Duration::minutes(5)).await?;
            if batch.is_empty() {
                break;
            }
            received.extend(batch.into_iter().map(Some));
        }
        for (record, body) in event.records.iter_mut().zip(&sent) {
            let slot = received
                .iter_mut()
                .find(|d| d.as_ref().is_some_and(|d| &d.body == body))
                .and_then(Option::take)
                .ok_or_else(|| PortError::NotFound(format!("a delivered record on {stage}")))?;
            record.receipt_handle = Some(slot.receipt);
        }
        for other in received.into_iter().flatten() {
            self.queues.release(stage, &other.receipt).await?;
        }
        Ok(())
    }
}

/// A file of the workspace, by its path from the workspace root.
pub fn workspace_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// The text of an event fixture of `tests/fixtures/events/`.
pub fn fixture_text(name: &str) -> Result<String, BoxError> {
    let path = workspace_file("tests/fixtures/events").join(name);
    std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// An event fixture of `tests/fixtures/events/`, read as a `T`.
pub fn fixture<T: DeserializeOwned>(name: &str) -> Result<T, BoxError> {
    let text = fixture_text(name)?;
    serde_json::from_str(&text).map_err(|e| format!("{name}: {e}").into())
}

/// An invocation with a payload and a test context.
pub fn lambda_event<T>(payload: T) -> LambdaEvent<T> {
    let mut context = Context::default();
    context.request_id = "00000000-0000-4000-8000-000000000000".to_owned();
    context.invoked_function_arn =
        "arn:aws:lambda:us-east-1:123456789012:function:patchflow-test".to_owned();
    LambdaEvent::new(payload, context)
}
