//! ring-promotion on the embedded adapters, invoked with the checked-in scheduled and SQS events.

use chrono::Duration;
use patchflow_core::ports::state::TierStore;
use patchflow_core::tier::TierState;
use patchflow_lambda::testing::{fixture, fixture_text, lambda_event, release, Embedded};
use patchflow_pipeline::pump::{drain, PumpOptions};
use serde_json::{json, Value};

use super::*;

async fn invoke(p: &Embedded, payload: Value) -> Result<Response, HandlerError> {
    RingPromotion
        .handle(&p.env, &p.queues, lambda_event(payload), p.now())
        .await
}

async fn tier_states(p: &Embedded) -> Vec<(String, TierState)> {
    p.env
        .state
        .list_tiers("2026-12".parse().unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.tier.to_string(), t.state))
        .collect()
}

/// The cycle opened and every patch's approval evaluated.
async fn approved() -> Embedded {
    let p = Embedded::new(release()).unwrap();
    p.open_cycle().await.unwrap();
    let stats = drain(
        &p.env,
        &p.queues,
        Stage::Approval,
        p.now(),
        PumpOptions::default(),
    )
    .await
    .unwrap();
    // 12 patches evaluated, then each decision pushed to the RMM for each of the 4 clients.
    assert_eq!(stats.done, 12 + 12 * 4);
    p
}

#[tokio::test]
async fn the_scheduled_tick_sends_each_tier_its_hours_work() {
    let p = Embedded::new(release()).unwrap();
    p.open_cycle().await.unwrap();
    p.take(Stage::Approval).await.unwrap();
    let r = invoke(&p, fixture("scheduled-ring-promotion-tick.json").unwrap())
        .await
        .unwrap();
    // 19:00 UTC: a promotion decision for each tier that may deploy now; the production tiers
    // behind a pilot's soak gate, and the day's review sweep, wait for the day's message hours.
    assert_eq!(
        r,
        Response::Tick(TickReport {
            cycles: 1,
            messages: 3
        })
    );
    let keys = |messages: Vec<patchflow_core::ports::queue::Envelope>| {
        let mut keys: Vec<String> = messages.into_iter().map(|m| m.idempotency_key).collect();
        keys.sort();
        keys
    };
    let promote = p.take(Stage::Rollout).await.unwrap();
    assert!(promote.iter().all(|m| m.kind == "promote_tier"));
    assert_eq!(
        keys(promote),
        [
            "servers.harbour.production",
            "servers.kiwi.pilot",
            "workstations.pilot"
        ]
        .map(|t| format!("2026-12/promote/{t}/20261208T19"))
    );
    assert!(p.take(Stage::Approval).await.unwrap().is_empty());

    // Midnight UTC: hourly decisions again, and the day's messages: the production tiers'
    // decision (why they wait, once a day until the gate) and the review sweep.
    p.clock.advance(Duration::hours(5));
    let r = invoke(&p, json!({"time": "2026-12-09T00:00:00Z"}))
        .await
        .unwrap();
    assert_eq!(
        r,
        Response::Tick(TickReport {
            cycles: 1,
            messages: 6
        })
    );
    assert_eq!(
        keys(p.take(Stage::Rollout).await.unwrap()),
        [
            "servers.harbour.production/20261209T00",
            "servers.kiwi.pilot/20261209T00",
            "servers.kiwi.production/2026-12-09",
            "workstations.pilot/20261209T00",
            "workstations.production/2026-12-09"
        ]
        .map(|t| format!("2026-12/promote/{t}"))
    );
    let sweep = p.take(Stage::Approval).await.unwrap();
    assert_eq!(sweep.len(), 1);
    assert_eq!(sweep[0].idempotency_key, "2026-12/reviews/2026-12-09");
}

#[tokio::test]
async fn without_an_open_cycle_the_tick_sends_nothing() {
    let p = Embedded::new(release()).unwrap();
    let r = invoke(&p, fixture("scheduled-ring-promotion-tick.json").unwrap())
        .await
        .unwrap();
    assert_eq!(r, Response::Tick(TickReport::default()));
    assert!(p.take(Stage::Rollout).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_sqs_batch_is_told_by_its_records_and_waits_for_the_approvals() {
    let p = Embedded::new(release()).unwrap();
    p.open_cycle().await.unwrap();
    let mut e: patchflow_lambda::SqsEvent = fixture("sqs-ring-promotion.json").unwrap();
    p.deliver(Stage::Rollout, &mut e).await.unwrap();
    let payload = serde_json::to_value(&e).unwrap();
    let r = invoke(&p, payload).await.unwrap();
    assert_eq!(r, Response::Sqs(SqsBatchResponse::default()));
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({"batchItemFailures": []})
    );
    // 0 of 12 approvals evaluated: nothing deploys.
    assert!(tier_states(&p)
        .await
        .iter()
        .all(|(_, s)| *s == TierState::Scheduled));
    assert!(p.take(Stage::Schedule).await.unwrap().is_empty());
}

#[tokio::test]
async fn once_approved_the_pilots_deploy_and_production_waits_for_their_soak() {
    let p = approved().await;
    p.clock.advance(Duration::hours(1));
    let tick = invoke(&p, json!({"time": "2026-12-08T19:00:00Z"}))
        .await
        .unwrap();
    assert!(
        matches!(
            tick,
            Response::Tick(TickReport {
                cycles: 1,
                messages: 3
            })
        ),
        "{tick:?}"
    );
    // The tiers that may deploy now (the production tiers behind a pilot are decided at the
    // day's message hours).
    let batch = p.receive_event(Stage::Rollout).await.unwrap();
    assert_eq!(batch.records.len(), 3);
    let r = invoke(&p, serde_json::to_value(&batch).unwrap())
        .await
        .unwrap();
    assert_eq!(r, Response::Sqs(SqsBatchResponse::default()));

    // Harbour's one server has no pilot to wait for; the production tiers behind a pilot wait
    // for its soak.
    assert_eq!(
        tier_states(&p).await,
        [
            ("servers.harbour.production", TierState::Deploying),
            ("servers.kiwi.pilot", TierState::Deploying),
            ("servers.kiwi.production", TierState::Scheduled),
            ("workstations.pilot", TierState::Deploying),
            ("workstations.production", TierState::Scheduled),
        ]
        .map(|(t, s)| (t.to_owned(), s))
    );
    let mut deploys: Vec<String> = p
        .take(Stage::Schedule)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.idempotency_key)
        .collect();
    deploys.sort();
    // One message per client of each deploying tier (reboot-scheduler reads its endpoints).
    assert_eq!(
        deploys,
        [
            "servers.harbour.production/harbour",
            "servers.kiwi.pilot/kiwi",
            "workstations.pilot/andes",
            "workstations.pilot/harbour"
        ]
        .map(|t| format!("2026-12/deploy-shard/{t}"))
    );
}

#[tokio::test]
async fn an_event_that_is_neither_fails_the_invocation() {
    let p = Embedded::new(release()).unwrap();
    for bad in [
        json!("tick"),
        json!({"Records": {"messageId": "m1"}}),
        json!({"time": 1}),
    ] {
        let e = invoke(&p, bad.clone()).await.unwrap_err();
        assert!(matches!(e, HandlerError::Poison(_)), "{bad}: {e}");
    }
    // A fixture's text reads the same way Lambda's runtime would deserialize it.
    let text = fixture_text("scheduled-ring-promotion-tick.json").unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["source"], "aws.scheduler");
}

#[test]
fn the_wiring_table_has_the_rollout_queue_and_the_hourly_schedule() {
    use patchflow_lambda::Function;
    let w = patchflow_lambda::wiring::function(RingPromotion::NAME).expect("in the wiring table");
    assert_eq!(w.consumes, Some(patchflow_lambda::Stage::Rollout));
    assert!(w.scheduled);
}

#[tokio::test]
async fn a_soak_check_on_the_rollout_queue_is_handled_not_dead_lettered() {
    use patchflow_core::ports::queue::{QueueConsumer, QueueSender};
    use patchflow_pipeline::messages::{CheckSoak, Message};
    let p = approved().await;
    let tier = patchflow_core::ports::state::TierId::parse("servers.kiwi.pilot").unwrap();
    let msg = CheckSoak {
        tier: tier.clone(),
        day: p.now().date_naive(),
    }
    .envelope(
        "2026-12".parse().unwrap(),
        "2026-12/soak/servers.kiwi.pilot/2026-12-08".into(),
        Some(&tier),
    );
    p.env
        .queues
        .send_batch(Stage::Rollout, &[msg])
        .await
        .unwrap();
    let batch = p.receive_event(Stage::Rollout).await.unwrap();
    assert_eq!(batch.records.len(), 1);
    let r = invoke(&p, serde_json::to_value(&batch).unwrap())
        .await
        .unwrap();
    assert_eq!(r, Response::Sqs(SqsBatchResponse::default()));
    assert!(p
        .queues
        .dead_letters(Stage::Rollout)
        .await
        .unwrap()
        .is_empty());
    // A pilot not yet validated has no soak to check: nothing is read or changed.
    assert_eq!(p.env.rmm.health_reads(), 0);
}
