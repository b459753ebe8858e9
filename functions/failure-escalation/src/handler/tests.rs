//! failure-escalation on the embedded adapters, invoked with the checked-in SQS events.

use chrono::{TimeZone, Utc};
use patchflow_core::ports::queue::Envelope;
use patchflow_core::ports::state::{FailureStore, TierId, TierStore};
use patchflow_core::tier::{TierEvent, TierState};
use patchflow_lambda::testing::{fixture, release, Embedded};

use super::*;
use patchflow_core::ports::queue::QueueConsumer;
use patchflow_lambda::{SqsBatchResponse, SqsEvent, Stage};

async fn invoke(p: &Embedded, event: SqsEvent) -> SqsBatchResponse {
    p.invoke(&FailureEscalation, event).await.unwrap()
}

fn cycle() -> patchflow_core::ids::CycleId {
    "2026-12".parse().unwrap()
}

fn kiwi_pilot() -> TierId {
    TierId::parse("servers.kiwi.pilot").unwrap()
}

/// The cycle open and kiwi's pilot server tier deploying, the morning after Patch Tuesday.
async fn deploying() -> Embedded {
    let p = Embedded::new(release()).unwrap();
    p.open_cycle().await.unwrap();
    p.env
        .state
        .transition_tier(cycle(), &kiwi_pilot(), 0, TierEvent::Deploy, p.now())
        .await
        .unwrap();
    p.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 9, 10, 0, 12).unwrap());
    p
}

#[tokio::test]
async fn a_failure_opens_one_ticket_pages_once_and_blocks_its_tier_even_when_sent_twice() {
    let p = deploying().await;
    let mut e: SqsEvent = fixture("sqs-failure-escalation.json").unwrap();
    assert_eq!(e.records.len(), 2, "the same failure, sent twice");
    p.deliver(Stage::Failure, &mut e).await.unwrap();
    let resp = invoke(&p, e).await;
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");

    let tickets = p.env.psa.tickets();
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    assert_eq!(tickets[0].external_ref, "2026-12/failure/kw-app1.install.0");
    assert_eq!(tickets[0].client.as_str(), "kiwi");
    assert!(
        tickets[0].summary.contains("KW-APP1"),
        "{}",
        tickets[0].summary
    );
    assert!(
        tickets[0].description.contains("0x800f0922"),
        "{}",
        tickets[0].description
    );
    assert_eq!(p.env.psa.duplicates(), 0);

    let failure = p
        .env
        .state
        .get_failure(cycle(), "kw-app1.install.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failure.ticket.as_deref(), Some(tickets[0].id.as_str()));
    // A server is a critical system: its failure blocks the tier, and the on-call is paged.
    let tier = p
        .env
        .state
        .get_tier(cycle(), &kiwi_pilot())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tier.state, TierState::Blocked);
    assert!(failure.paged);
    let pages = p.env.pager.pages();
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].dedup_key, "2026-12/kw-app1.install.0");

    // Redelivered later: done, no second ticket, the tier moved once.
    let mut again: SqsEvent = fixture("sqs-failure-escalation.json").unwrap();
    p.deliver(Stage::Failure, &mut again).await.unwrap();
    assert!(invoke(&p, again).await.batch_item_failures.is_empty());
    assert_eq!(p.env.psa.tickets().len(), 1);
    assert_eq!(p.env.psa.duplicates(), 0);
    let after = p
        .env
        .state
        .get_tier(cycle(), &kiwi_pilot())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (after.state, after.version),
        (TierState::Blocked, tier.version)
    );
    assert_eq!(p.env.pager.pages().len(), 1);
    assert!(p
        .queues
        .dead_letters(Stage::Failure)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_failure_of_an_endpoint_without_a_run_is_dead_lettered_naming_it() {
    let p = deploying().await;
    let mut e: SqsEvent = fixture("sqs-failure-escalation.json").unwrap();
    e.records.truncate(1);
    let mut env = Envelope::from_body(e.records[0].body.as_deref().unwrap()).unwrap();
    env.payload["endpoint"] = "kw-gone1".into();
    env.payload["id"] = "kw-gone1.install.0".into();
    env.idempotency_key = "2026-12/failure/kw-gone1.install.0".into();
    e.records[0].body = Some(env.to_body());
    p.deliver(Stage::Failure, &mut e).await.unwrap();
    assert!(invoke(&p, e).await.batch_item_failures.is_empty());
    let dead = p.queues.dead_letters(Stage::Failure).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.contains("kw-gone1"), "{}", dead[0].reason);
    assert!(p.env.psa.tickets().is_empty());
}

#[test]
fn the_wiring_table_names_this_function_and_its_queue() {
    let w =
        patchflow_lambda::wiring::function(<FailureEscalation as patchflow_lambda::SqsStage>::NAME)
            .expect("in the wiring table");
    assert_eq!(
        w.consumes,
        Some(<FailureEscalation as patchflow_lambda::SqsStage>::STAGE)
    );
    assert!(!w.scheduled);
}
