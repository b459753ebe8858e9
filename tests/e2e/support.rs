//! Fresh resources for every test, spawn_app style: a unique bucket on the AWS API server that
//! `make test` started (moto, see tests/with-moto.sh), or a fresh temporary directory.

use std::sync::atomic::{AtomicU32, Ordering};

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use patchflow_aws::config::{dynamodb_client, s3_client, sdk_config, sqs_client};
use patchflow_aws::dynamodb::{create_state_table, DynamoState};
use patchflow_aws::s3::{create_evidence_bucket, S3EvidenceStore};
use patchflow_aws::sqs::{create_stage_queue, SqsQueues};
use patchflow_core::ports::clock::ManualClock;
use patchflow_core::ports::queue::Stage;
use patchflow_local::evidence::FsEvidenceStore;
use patchflow_local::queue::SqliteQueues;
use patchflow_local::state::SqliteState;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name no other test of this run uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Refuses to go on without the local AWS API server `make test` starts.
pub fn require_aws_endpoint() {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "the AWS adapter tests run against a local AWS API server: run them with `make test` \
         (or tests/with-moto.sh cargo test ...), which starts moto and sets AWS_ENDPOINT_URL"
    );
}

/// An S3 evidence store over a new Object-Lock bucket.
pub async fn s3_store() -> S3EvidenceStore {
    require_aws_endpoint();
    let sdk = sdk_config().await;
    let client = s3_client(&sdk).expect("S3 client configuration");
    let bucket = unique("pf-evidence");
    create_evidence_bucket(&client, &bucket, 1)
        .await
        .expect("create the evidence bucket");
    S3EvidenceStore::new(client, bucket)
}

/// A local evidence store in a new temporary directory (removed when the guard drops).
pub fn fs_store() -> (FsEvidenceStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store =
        FsEvidenceStore::open(dir.path().join("evidence-root")).expect("open the local store");
    (store, dir)
}

/// The redrive threshold the queue tests use.
pub const MAX_RECEIVES: u32 = 3;

/// Stage queues on SQS with fresh names.
pub async fn sqs_queues() -> SqsQueues {
    require_aws_endpoint();
    let sdk = sdk_config().await;
    let client = sqs_client(&sdk);
    let prefix = unique("pf");
    let mut queues = HashMap::new();
    for stage in Stage::ALL {
        let q = create_stage_queue(&client, &prefix, stage, MAX_RECEIVES, Duration::seconds(30))
            .await
            .expect("create the stage queues");
        queues.insert(stage, q);
    }
    SqsQueues::new(client, queues)
}

/// Local queues in memory, on a clock that only moves when the test moves it.
pub fn local_queues() -> (SqliteQueues, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 12, 8, 18, 0, 0).unwrap(),
    ));
    let queues =
        SqliteQueues::in_memory(clock.clone(), MAX_RECEIVES).expect("open the local queues");
    (queues, clock)
}

/// A DynamoDB state store over a new table, built from `conf` (so a test can add interceptors).
pub async fn dynamo_state_with(
    conf: impl FnOnce(aws_sdk_dynamodb::config::Builder) -> aws_sdk_dynamodb::config::Builder,
) -> DynamoState {
    require_aws_endpoint();
    let sdk = sdk_config().await;
    let table = unique("pf-state");
    create_state_table(&dynamodb_client(&sdk), &table)
        .await
        .expect("create the state table");
    let client = aws_sdk_dynamodb::Client::from_conf(
        conf(aws_sdk_dynamodb::config::Builder::from(&sdk)).build(),
    );
    DynamoState::new(client, table)
}

/// A DynamoDB state store over a new table.
pub async fn dynamo_state() -> DynamoState {
    dynamo_state_with(|b| b).await
}

/// A SQLite state store in memory.
pub fn sqlite_state() -> SqliteState {
    SqliteState::in_memory().expect("open the local state store")
}

/// A simulated cycle driven by hand, hour by hour, on the embedded state and queues: its
/// environment (the simulated RMM, PSA and pager), its clock, the queues' clock, and a consumer
/// of the queues.
pub struct HandCycle {
    /// The environment the handlers run in.
    pub env: patchflow_cli::simulate::SimEnv<SqliteState, SqliteQueues, FsEvidenceStore>,
    /// The simulation's clock.
    pub clock: Arc<ManualClock>,
    /// The queues' clock (set to the hour before each pass).
    pub queue_clock: Arc<ManualClock>,
    /// The queues, to receive from.
    pub consumer: SqliteQueues,
    /// What the cycle plays.
    pub spec: patchflow_cli::simulate::SimulateSpec,
}

/// A hand-driven cycle of December 2026 over `inventory` with the demo catalog and no failures,
/// from the first whole hour after the release, for at most 20 days.
pub fn hand_cycle(dir: &std::path::Path, inventory: std::path::PathBuf, seed: u64) -> HandCycle {
    use chrono::Timelike;
    let cycle: patchflow_core::ids::CycleId = "2026-12".parse().expect("a cycle");
    let spec = patchflow_cli::simulate::SimulateSpec {
        inventory,
        catalog: concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../functions/cli/demo/catalog-2026-12.json"
        )
        .into(),
        cycle,
        failure_rate: 0.0,
        seed,
        out: dir.to_owned(),
        policy: patchflow_core::policy::Policy::default(),
        engineer_response: Duration::hours(4),
        days: 20,
        deliver_twice: false,
    };
    let release = patchflow_core::plan::Release::of(cycle, &spec.policy, None);
    let start =
        release.released_at + Duration::minutes(i64::from(60 - release.released_at.minute()) % 60);
    let clock = Arc::new(ManualClock::new(start));
    let (queues, queue_clock) = local_queues();
    queue_clock.set(start);
    let consumer = queues.clone();
    let env = patchflow_cli::simulate::sim_env(
        SqliteState::in_memory().expect("an in-memory state store"),
        queues,
        FsEvidenceStore::open(dir.join("evidence")).expect("an evidence folder"),
        clock.clone(),
        &spec,
    );
    HandCycle {
        env,
        clock,
        queue_clock,
        consumer,
        spec,
    }
}

/// The pump of a hand-driven cycle, a delivery at a time so a test sees each one's work: stage
/// by stage, receiving until the stage is empty (its handed-back deliveries released then, to
/// come again on the next pass), pass after pass until one finds nothing.
#[derive(Default)]
pub struct Drain {
    stage: usize,
    batch: std::collections::VecDeque<patchflow_core::ports::queue::Delivery>,
    handed_back: Vec<String>,
    any: bool,
}

impl Drain {
    /// The next delivery and its stage; `None` once a whole pass found nothing.
    pub async fn next(
        &mut self,
        consumer: &SqliteQueues,
    ) -> Option<(Stage, patchflow_core::ports::queue::Delivery)> {
        use patchflow_core::ports::queue::QueueConsumer;
        loop {
            let stage = Stage::ALL[self.stage];
            if let Some(d) = self.batch.pop_front() {
                self.any = true;
                return Some((stage, d));
            }
            let batch = consumer
                .receive(stage, 10, Duration::seconds(30))
                .await
                .expect("a receive from the embedded queues");
            if !batch.is_empty() {
                self.batch.extend(batch);
                continue;
            }
            for r in self.handed_back.drain(..) {
                consumer
                    .release(stage, &r)
                    .await
                    .expect("a release to the embedded queues");
            }
            self.stage += 1;
            if self.stage == Stage::ALL.len() {
                if !self.any {
                    return None;
                }
                self.stage = 0;
                self.any = false;
            }
        }
    }

    /// Settles a delivery by its outcome: acknowledged, handed back (released at the end of its
    /// stage's turn), or a panic for poison.
    pub async fn settle(
        &mut self,
        consumer: &SqliteQueues,
        stage: Stage,
        delivery: patchflow_core::ports::queue::Delivery,
        outcome: &patchflow_pipeline::batch::Outcome,
    ) {
        use patchflow_core::ports::queue::QueueConsumer;
        use patchflow_pipeline::batch::Outcome;
        match outcome {
            Outcome::Done(_) => consumer
                .ack(stage, &delivery.receipt)
                .await
                .expect("an ack to the embedded queues"),
            Outcome::Retry(_) => self.handed_back.push(delivery.receipt),
            Outcome::Poison(reason) => panic!("{reason}: {}", delivery.body),
        }
    }
}
