//! One contract suite for the queue ports, run against SQS (on moto) and the local SQLite queues.

use std::collections::BTreeSet;

use chrono::Duration;
use patchflow_core::ports::queue::{Envelope, QueueConsumer, QueueSender, Stage, SCHEMA_VERSION};

use crate::support::{local_queues, sqs_queues, MAX_RECEIVES};

fn envelope(n: usize, kind: &str) -> Envelope {
    Envelope {
        kind: kind.into(),
        schema_version: SCHEMA_VERSION,
        idempotency_key: format!("2026-12/{n}"),
        cycle: "2026-12".parse().unwrap(),
        tier: Some("server-pilot".into()),
        payload: serde_json::json!({ "n": n }),
    }
}

async fn drain<Q: QueueConsumer>(q: &Q, stage: Stage) -> Vec<Envelope> {
    let mut out = Vec::new();
    // Bounded: the suite never sends more than a few dozen messages.
    for _ in 0..20 {
        let got = q.receive(stage, 10, Duration::seconds(30)).await.unwrap();
        if got.is_empty() {
            break;
        }
        for d in got {
            out.push(Envelope::from_body(&d.body).expect("an envelope"));
            q.ack(stage, &d.receipt).await.unwrap();
        }
    }
    out
}

async fn contract<Q: QueueSender + QueueConsumer>(q: &Q) {
    // GIVEN 23 messages sent in one call (three SQS batches)
    let sent: Vec<Envelope> = (0..23).map(|n| envelope(n, "evaluate_patch")).collect();
    q.send_batch(Stage::Approval, &sent).await.unwrap();
    // THEN another stage's queue does not see them
    assert!(q
        .receive(Stage::Rollout, 10, Duration::seconds(30))
        .await
        .unwrap()
        .is_empty());
    // AND every one arrives once, intact, and acknowledged messages do not come back
    let got = drain(q, Stage::Approval).await;
    let keys: BTreeSet<String> = got.iter().map(|e| e.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 23);
    assert!(got.iter().all(|e| sent.contains(e)));
    assert!(q
        .receive(Stage::Approval, 10, Duration::seconds(30))
        .await
        .unwrap()
        .is_empty());

    // GIVEN a message being processed THEN it is invisible to others until its timeout
    q.send_batch(Stage::Schedule, &[envelope(100, "schedule_install")])
        .await
        .unwrap();
    let first = q
        .receive(Stage::Schedule, 10, Duration::seconds(30))
        .await
        .unwrap();
    assert_eq!((first.len(), first[0].receive_count), (1, 1));
    assert!(q
        .receive(Stage::Schedule, 10, Duration::seconds(30))
        .await
        .unwrap()
        .is_empty());
    q.ack(Stage::Schedule, &first[0].receipt).await.unwrap();

    // GIVEN a poison message among good ones, never acknowledged
    let batch = [
        envelope(1, "open_ticket"),
        envelope(2, "poison"),
        envelope(3, "open_ticket"),
    ];
    q.send_batch(Stage::Failure, &batch).await.unwrap();
    let mut processed = Vec::new();
    let mut receives_of_poison = 0;
    for _ in 0..(MAX_RECEIVES as usize + 3) {
        // Visibility 0: a failed message is at once visible again, as after a timeout.
        let got = q
            .receive(Stage::Failure, 10, Duration::zero())
            .await
            .unwrap();
        let distinct: BTreeSet<&str> = got.iter().map(|d| d.body.as_str()).collect();
        assert_eq!(
            distinct.len(),
            got.len(),
            "one receive never returns a message twice"
        );
        for d in got {
            let e = Envelope::from_body(&d.body).unwrap();
            if e.kind == "poison" {
                receives_of_poison += 1;
                assert_eq!(d.receive_count, receives_of_poison);
            } else {
                processed.push(e.idempotency_key.clone());
                q.ack(Stage::Failure, &d.receipt).await.unwrap();
            }
        }
    }
    // THEN its siblings were processed once each, and after MAX_RECEIVES receives it is in the DLQ
    processed.sort();
    assert_eq!(processed, ["2026-12/1", "2026-12/3"]);
    assert_eq!(receives_of_poison, MAX_RECEIVES);
    let dead = q.dead_letters(Stage::Failure).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(Envelope::from_body(&dead[0].body).unwrap().kind, "poison");
    assert!(!dead[0].reason.is_empty());

    // GIVEN a message a handler knows it can never process THEN it goes to the DLQ with the reason
    q.send_batch(Stage::Evidence, &[envelope(7, "archive_tier")])
        .await
        .unwrap();
    let d = q
        .receive(Stage::Evidence, 10, Duration::seconds(30))
        .await
        .unwrap()
        .remove(0);
    // A released delivery is received again at once (its visibility timeout ended now).
    q.release(Stage::Evidence, &d.receipt).await.unwrap();
    let d = q
        .receive(Stage::Evidence, 10, Duration::seconds(30))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(d.receive_count, 2);
    q.dead_letter(Stage::Evidence, &d, "unknown tier server-pilot")
        .await
        .unwrap();
    let dead = q.dead_letters(Stage::Evidence).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "unknown tier server-pilot");
    assert!(q
        .receive(Stage::Evidence, 10, Duration::zero())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn the_sqs_queues_keep_the_queue_contract() {
    contract(&sqs_queues().await).await;
}

#[tokio::test]
async fn the_local_queues_keep_the_queue_contract() {
    let (q, _clock) = local_queues();
    contract(&q).await;
}

#[tokio::test]
async fn a_local_message_reappears_when_its_visibility_timeout_passes() {
    let (q, clock) = local_queues();
    q.send_batch(Stage::Rollout, &[envelope(1, "tick")])
        .await
        .unwrap();
    let first = q
        .receive(Stage::Rollout, 1, Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    clock.advance(Duration::minutes(4));
    assert!(q
        .receive(Stage::Rollout, 1, Duration::minutes(5))
        .await
        .unwrap()
        .is_empty());
    clock.advance(Duration::minutes(1));
    let again = q
        .receive(Stage::Rollout, 1, Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(again[0].receive_count, 2);
    // The first delivery's receipt is no longer current: acknowledging it is refused.
    assert!(q.ack(Stage::Rollout, &first[0].receipt).await.is_err());
    q.ack(Stage::Rollout, &again[0].receipt).await.unwrap();
}

#[tokio::test]
async fn local_queues_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queues.db");
    let clock = std::sync::Arc::new(patchflow_core::ports::clock::ManualClock::new(
        chrono::Utc::now(),
    ));
    {
        let q =
            patchflow_local::queue::SqliteQueues::open(&path, clock.clone(), MAX_RECEIVES).unwrap();
        q.send_batch(Stage::Approval, &[envelope(1, "evaluate_patch")])
            .await
            .unwrap();
    }
    let q = patchflow_local::queue::SqliteQueues::open(&path, clock, MAX_RECEIVES).unwrap();
    assert_eq!(drain(&q, Stage::Approval).await.len(), 1);
}
