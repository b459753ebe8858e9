//! evidence-archiver on the embedded adapters, invoked with the checked-in SQS events and with
//! the archive message of a tier the pipeline really validated.

use chrono::{Duration, TimeZone, Utc};
use patchflow_core::ports::state::{EvidenceIndex, TierId, TierStore};
use patchflow_core::tier::TierState;
use patchflow_lambda::testing::{fixture, release, Embedded};
use patchflow_pipeline::pump::{drain, PumpOptions};
use patchflow_pipeline::tick::tick;

use super::*;
use patchflow_core::ports::queue::QueueConsumer;
use patchflow_lambda::{SqsBatchResponse, SqsEvent, Stage};

async fn invoke(p: &Embedded, event: SqsEvent) -> SqsBatchResponse {
    p.invoke(&EvidenceArchiver, event).await.unwrap()
}

fn cycle() -> patchflow_core::ids::CycleId {
    "2026-12".parse().unwrap()
}

fn pilot() -> TierId {
    TierId::parse("workstations.pilot").unwrap()
}

/// Drains the stages until nothing moves.
async fn settle(p: &Embedded, stages: &[Stage]) {
    loop {
        let mut moved = 0;
        for stage in stages {
            let s = drain(&p.env, &p.queues, *stage, p.now(), PumpOptions::default())
                .await
                .unwrap();
            moved += s.done + s.dead_lettered;
        }
        if moved == 0 {
            break;
        }
    }
}

/// Runs the pipeline hour by hour (the tick, then every stage but evidence drained), from the
/// release until the workstation pilot is validated and its archive message waits on the
/// evidence queue.
async fn validated() -> Embedded {
    let p = Embedded::new(release()).unwrap();
    p.open_cycle().await.unwrap();
    let stages = [
        Stage::Approval,
        Stage::Rollout,
        Stage::Schedule,
        Stage::Failure,
    ];
    for _hour in 0..24 * 10 {
        tick(&p.env, p.now()).await.unwrap();
        settle(&p, &stages).await;
        let state = p
            .env
            .state
            .get_tier(cycle(), &pilot())
            .await
            .unwrap()
            .unwrap()
            .state;
        if state == TierState::Validated {
            return p;
        }
        p.clock.advance(Duration::hours(1));
    }
    panic!("the workstation pilot did not validate within ten days");
}

#[tokio::test]
async fn a_validated_tier_is_archived_once_and_closed() {
    let p = validated().await;
    // The validated pilot soaks first (re-checked daily on the rollout queue); each hour the tick
    // asks for the archive of every validated tier done soaking, and earlier hours' archive
    // messages are dropped, until the pilot's is among them.
    let tiers_of = |batch: &SqsEvent| -> Vec<String> {
        batch
            .records
            .iter()
            .map(|r| {
                patchflow_core::ports::queue::Envelope::from_body(r.body.as_deref().unwrap())
                    .unwrap()
                    .tier
                    .unwrap_or_default()
            })
            .collect()
    };
    let mut hours = 0;
    let (batch, tiers) = loop {
        p.take(Stage::Evidence).await.unwrap();
        p.clock.advance(Duration::hours(1));
        tick(&p.env, p.now()).await.unwrap();
        settle(
            &p,
            &[
                Stage::Approval,
                Stage::Rollout,
                Stage::Schedule,
                Stage::Failure,
            ],
        )
        .await;
        let batch = p.receive_event(Stage::Evidence).await.unwrap();
        let tiers = tiers_of(&batch);
        if tiers.contains(&"workstations.pilot".to_owned()) {
            break (batch, tiers);
        }
        hours += 1;
        assert!(
            hours < 24 * 10,
            "the pilot was not archived within ten days of its soak"
        );
    };
    // Not before its 7-day soak from the moment it was healthy.
    assert!(hours >= 24 * 6, "archived after {hours} hours");
    assert_eq!(batch.records.len(), tiers.len());
    let resp = invoke(&p, batch).await;
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    // The coordinator sent one part per client (andes, harbour); the last part asks it to
    // close the tier: the evidence queue is invoked until it is empty.
    let mut parts = 0;
    for _ in 0..10 {
        let next = p.receive_event(Stage::Evidence).await.unwrap();
        if next.records.is_empty() {
            break;
        }
        parts += next
            .records
            .iter()
            .filter(|r| r.body.as_deref().unwrap_or_default().contains("\"client\""))
            .count();
        let resp = invoke(&p, next).await;
        assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    }
    assert_eq!(parts, 2, "one part per client of the pilot");

    let tier = p
        .env
        .state
        .get_tier(cycle(), &pilot())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tier.state, TierState::Closed);
    let evidence: Vec<String> = p
        .env
        .state
        .list_evidence(cycle())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.key.tier() == "workstations.pilot")
        .map(|r| format!("{}/{}", r.key.client(), r.key.name()))
        .collect();
    let expected: Vec<String> = ["andes", "harbour"]
        .iter()
        .flat_map(|c| {
            [
                "manifest.json",
                "outcomes.csv",
                "record.json",
                "report.html",
                "sla.csv",
                "summary.png",
            ]
            .map(|n| format!("{c}/{n}"))
        })
        .collect();
    assert_eq!(evidence, expected);
    let compliance: Vec<_> = p
        .env
        .psa
        .tickets()
        .into_iter()
        .filter(|t| {
            t.external_ref
                .starts_with("2026-12/compliance/workstations.pilot/")
        })
        .collect();
    assert_eq!(compliance.len(), 2);
    assert!(
        compliance.iter().all(|t| t.closed
            && t.notes
                .iter()
                .any(|(k, n)| k.ends_with("/completed") && n.contains("Endpoints: 1 patched."))),
        "{compliance:?}"
    );

    // The fixture's archive of the same tier (another hour's key) and one of a tier the cycle
    // does not have: the first finds the tier closed, the second is dead-lettered.
    p.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 18, 10, 0, 3).unwrap());
    let mut e: SqsEvent = fixture("sqs-evidence-archiver.json").unwrap();
    p.deliver(Stage::Evidence, &mut e).await.unwrap();
    assert!(invoke(&p, e).await.batch_item_failures.is_empty());
    let dead = p.queues.dead_letters(Stage::Evidence).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .reason
            .contains("no tier servers.contoso.pilot in 2026-12"),
        "{}",
        dead[0].reason
    );
    let again = p.env.state.list_evidence(cycle()).await.unwrap();
    assert_eq!(
        again
            .iter()
            .filter(|r| r.key.tier() == "workstations.pilot")
            .count(),
        12
    );
    assert_eq!(
        p.env
            .psa
            .tickets()
            .iter()
            .filter(|t| t.external_ref.contains("/compliance/workstations.pilot/"))
            .count(),
        2
    );
}

#[tokio::test]
async fn a_tier_that_is_not_validated_has_nothing_to_archive() {
    let p = Embedded::new(release()).unwrap();
    p.open_cycle().await.unwrap();
    p.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 11, 10, 0, 3).unwrap());
    let mut e: SqsEvent = fixture("sqs-evidence-archiver.json").unwrap();
    p.deliver(Stage::Evidence, &mut e).await.unwrap();
    let resp = invoke(&p, e).await;
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    assert!(p.env.state.list_evidence(cycle()).await.unwrap().is_empty());
    let tier = p
        .env
        .state
        .get_tier(cycle(), &pilot())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tier.state, TierState::Scheduled);
    let dead = p.queues.dead_letters(Stage::Evidence).await.unwrap();
    assert_eq!(dead.len(), 1, "only the unknown tier's record");
    assert!(
        dead[0].reason.contains("servers.contoso.pilot"),
        "{}",
        dead[0].reason
    );
}

#[test]
fn the_wiring_table_names_this_function_and_its_queue() {
    let w =
        patchflow_lambda::wiring::function(<EvidenceArchiver as patchflow_lambda::SqsStage>::NAME)
            .expect("in the wiring table");
    assert_eq!(
        w.consumes,
        Some(<EvidenceArchiver as patchflow_lambda::SqsStage>::STAGE)
    );
    assert!(!w.scheduled);
}
