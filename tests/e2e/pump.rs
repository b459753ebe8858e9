//! The event-source pump behaves like Lambda's SQS event source, on both queue adapters:
//! batches, a handed-back message redelivered, dead-lettered after the queue's maximum receives,
//! poison dead-lettered at once with its reason, and the siblings of both handled.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use patchflow_cli::simulate::{sim_env, SimulateSpec};
use patchflow_core::contract::PatchDoc;
use patchflow_core::model::Classification;
use patchflow_core::policy::Policy;
use patchflow_core::ports::clock::{Clock, ManualClock};
use patchflow_core::ports::queue::{QueueConsumer, QueueSender, Stage};
use patchflow_local::evidence::FsEvidenceStore;
use patchflow_local::state::SqliteState;
use patchflow_pipeline::messages::{EvaluatePatch, Message};
use patchflow_pipeline::pump::{drain, PumpOptions};

use crate::support::{local_queues, sqs_queues, MAX_RECEIVES};

fn patch(id: &str) -> EvaluatePatch {
    EvaluatePatch {
        patch: PatchDoc {
            id: id.into(),
            title: None,
            vendor: "microsoft".into(),
            classification: Classification::Security,
            severity: None,
            released: None,
            cves: None,
            products: None,
        },
    }
}

async fn pump_contract<Q: QueueSender + QueueConsumer + Clone>(queues: Q) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 12, 8, 18, 0, 0).unwrap(),
    ));
    let spec = SimulateSpec {
        inventory: dir.path().join("unused.json"),
        catalog: dir.path().join("unused.json"),
        cycle: "2026-12".parse().unwrap(),
        failure_rate: 0.0,
        seed: 1,
        out: dir.path().to_owned(),
        policy: Policy::default(),
        engineer_response: chrono::Duration::hours(1),
        days: 1,
        deliver_twice: false,
    };
    let consumer = queues.clone();
    let env = sim_env(
        SqliteState::in_memory().unwrap(),
        queues,
        FsEvidenceStore::open(dir.path().join("evidence")).unwrap(),
        clock.clone(),
        &spec,
    );
    // GIVEN eleven messages (two batches): an evaluation for a cycle that never opens (its
    // handler hands it back every time), and ten the approval stage handles at once (review
    // sweeps of a cycle without approvals).
    let never: patchflow_core::ids::CycleId = "2031-01".parse().unwrap();
    let mut messages = vec![patch("KB1").envelope(never, "pump/never".into(), None)];
    for n in 0..10 {
        messages.push(
            patchflow_pipeline::messages::ReviewSweep {
                day: clock.now().date_naive(),
            }
            .envelope(never, format!("pump/sweep/{n}"), None),
        );
    }
    env.queues
        .send_batch(Stage::Approval, &messages)
        .await
        .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 12, 8, 18, 0, 0).unwrap();

    // WHEN the pump drains the queue, as often as the event source would poll it
    let opts = PumpOptions::default();
    let first = drain(&env, &consumer, Stage::Approval, now, opts)
        .await
        .unwrap();
    // THEN the siblings are handled in the first round, the evaluation handed back
    assert_eq!(first.done, 10);
    assert_eq!(first.retried, 1);
    let mut rounds = 1;
    while consumer
        .dead_letters(Stage::Approval)
        .await
        .unwrap()
        .is_empty()
        && rounds < 10
    {
        drain(&env, &consumer, Stage::Approval, now, opts)
            .await
            .unwrap();
        rounds += 1;
    }
    // AND after the queue's maximum receives it is in the dead-letter queue
    assert_eq!(
        rounds as u32,
        MAX_RECEIVES + 1,
        "received {MAX_RECEIVES} times, then redriven"
    );
    let dead = consumer.dead_letters(Stage::Approval).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].body.contains("pump/never"));

    // GIVEN a body that is not an envelope THEN it is dead-lettered at once, with its reason
    let poison = patchflow_core::ports::queue::Envelope {
        schema_version: 99,
        ..patch("KB2").envelope(never, "pump/v99".into(), None)
    };
    env.queues
        .send_batch(Stage::Approval, &[poison])
        .await
        .unwrap();
    let stats = drain(&env, &consumer, Stage::Approval, now, opts)
        .await
        .unwrap();
    assert_eq!(stats.dead_lettered, 1);
    let dead = consumer.dead_letters(Stage::Approval).await.unwrap();
    assert!(
        dead.iter()
            .any(|d| d.body.contains("pump/v99") && d.reason.contains("schema version 99")),
        "{dead:?}"
    );
}

#[tokio::test]
async fn the_pump_feeds_the_local_queues_like_an_event_source() {
    let (q, _clock) = local_queues();
    pump_contract(q).await;
}

#[tokio::test]
async fn the_pump_feeds_sqs_like_an_event_source() {
    pump_contract(sqs_queues().await).await;
}
