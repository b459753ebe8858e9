//! reboot-scheduler on the embedded adapters, invoked with the checked-in SQS events.

use std::collections::BTreeSet;

use chrono::{TimeZone, Utc};
use patchflow_core::ports::queue::Envelope;
use patchflow_core::ports::state::{DocStore, TierId, TierStore};
use patchflow_core::tier::{TierEvent, TierState};
use patchflow_lambda::testing::{fixture, release, Embedded};
use patchflow_pipeline::messages::{ClientChanges, Message};
use patchflow_pipeline::pump::{drain, PumpOptions};
use serde_json::Value;

use super::*;
use patchflow_core::ports::queue::QueueConsumer;
use patchflow_lambda::{SqsBatchResponse, SqsEvent, Stage};

async fn invoke(p: &Embedded, event: SqsEvent) -> SqsBatchResponse {
    p.invoke(&RebootScheduler, event).await.unwrap()
}

fn cycle() -> patchflow_core::ids::CycleId {
    "2026-12".parse().unwrap()
}

fn pilot() -> TierId {
    TierId::parse("workstations.pilot").unwrap()
}

fn taken(p: &Embedded) -> BTreeSet<String> {
    p.env.rmm.commands().into_iter().map(|c| c.key).collect()
}

async fn runs(p: &Embedded) -> Vec<Value> {
    p.env
        .state
        .list_docs(cycle(), "run.workstations.pilot")
        .await
        .unwrap()
        .into_iter()
        .map(|d| serde_json::from_str(&d.body).unwrap())
        .collect()
}

/// The install windows' openings of the pilot's runs, earliest first.
async fn openings(p: &Embedded) -> Vec<chrono::DateTime<Utc>> {
    let mut out: Vec<chrono::DateTime<Utc>> = runs(p)
        .await
        .iter()
        .filter_map(|r| r["commands"][0]["window"]["start"].as_str())
        .map(|t| t.parse().unwrap())
        .collect();
    out.sort();
    out
}

/// The fixture's tick delivered at `at` (its key made that hour's, as ring-promotion's are),
/// with each client's changes since the hour before, as ring-promotion's tick sends them.
async fn tick_at(p: &Embedded, at: chrono::DateTime<Utc>) {
    p.clock.set(at);
    let mut e: SqsEvent = fixture("sqs-reboot-scheduler-tick.json").unwrap();
    for r in &mut e.records {
        let mut env = Envelope::from_body(r.body.as_deref().unwrap()).unwrap();
        env.idempotency_key = format!(
            "2026-12/tick/workstations.pilot/{}",
            at.format("%Y%m%dT%H%M%S")
        );
        r.body = Some(env.to_body());
    }
    let doc = patchflow_pipeline::records::open_cycle(&p.env.state, cycle())
        .await
        .unwrap();
    let template = e.records[0].clone();
    for s in &doc.scopes {
        let changes = ClientChanges {
            client: s.client.clone(),
            tiers: vec![pilot()],
            since: at - patchflow_pipeline::schedule::CHANGES_LOOKBACK,
            endpoints: Vec::new(),
        };
        let key = format!(
            "2026-12/changes/{}/{}",
            s.client,
            at.format("%Y%m%dT%H%M%S")
        );
        let mut r = template.clone();
        r.body = Some(changes.envelope(cycle(), key, None).to_body());
        e.records.push(r);
    }
    p.deliver(Stage::Schedule, &mut e).await.unwrap();
    let resp = invoke(p, e).await;
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
}

/// The cycle open, its approvals evaluated, and the fixture's deploy records handled the
/// evening of Patch Tuesday.
async fn deployed() -> Embedded {
    let p = Embedded::new(release()).unwrap();
    p.open_cycle().await.unwrap();
    drain(
        &p.env,
        &p.queues,
        Stage::Approval,
        p.now(),
        PumpOptions::default(),
    )
    .await
    .unwrap();
    p.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 8, 19, 0, 10).unwrap());
    let mut e: SqsEvent = fixture("sqs-reboot-scheduler.json").unwrap();
    p.deliver(Stage::Schedule, &mut e).await.unwrap();
    let resp = invoke(&p, e).await;
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    p
}

#[tokio::test]
async fn deploy_records_plan_each_endpoints_commands_and_its_window_sends_them_once() {
    let p = deployed().await;
    // Planned, not sent: the RMM's patch deployment runs at once, so the install goes out when
    // its window opens.
    assert!(taken(&p).is_empty());
    for run in runs(&p).await {
        assert_eq!(run["status"], "scheduled", "{run}");
        assert_eq!(run["commands_at"], "2026-12-08T19:00:10Z", "{run}");
    }
    let mut again: SqsEvent = fixture("sqs-reboot-scheduler.json").unwrap();
    p.deliver(Stage::Schedule, &mut again).await.unwrap();
    assert!(invoke(&p, again).await.batch_item_failures.is_empty());
    assert!(taken(&p).is_empty());
    assert!(p.take(Stage::Schedule).await.unwrap().is_empty());

    p.env
        .state
        .transition_tier(cycle(), &pilot(), 0, TierEvent::Deploy, p.now())
        .await
        .unwrap();
    for at in openings(&p).await {
        tick_at(&p, at + chrono::Duration::seconds(2)).await;
    }
    let expected: BTreeSet<String> = [
        "2026-12/rmm/an-ws1/0/schedule_install",
        "2026-12/rmm/hb-ws1/0/schedule_install",
        "2026-12/rmm/hb-ws1/0/schedule_reboot",
    ]
    .map(str::to_owned)
    .into();
    // hb-ws1's deploy came twice in the batch: its commands went once, each install with the
    // cycle's approved patches (the declined driver left out).
    assert_eq!(taken(&p), expected);
    assert_eq!(p.env.rmm.duplicates(), 0);
    let approved: Vec<String> = {
        use patchflow_core::ports::state::ApprovalStore;
        let mut v: Vec<String> = p
            .env
            .state
            .list_approvals(cycle())
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.decision.deploys())
            .map(|a| a.patch.to_string())
            .collect();
        v.sort();
        v
    };
    assert!(!approved.is_empty() && !approved.contains(&"KB5071007".to_owned()));
    for c in p.env.rmm.commands() {
        if c.command.is_install() {
            let named: Vec<String> = c.command.patches().iter().map(|p| p.to_string()).collect();
            assert_eq!(named, approved, "{}", c.key);
        }
    }

    // The deploys redelivered: done, nothing sent again.
    let mut again: SqsEvent = fixture("sqs-reboot-scheduler.json").unwrap();
    p.deliver(Stage::Schedule, &mut again).await.unwrap();
    assert!(invoke(&p, again).await.batch_item_failures.is_empty());
    assert_eq!(taken(&p), expected);
    assert_eq!(p.env.rmm.duplicates(), 0);
}

#[tokio::test]
async fn the_tier_tick_and_the_clients_changes_read_the_rmm_reports_and_move_the_tier_on() {
    let p = deployed().await;
    p.env
        .state
        .transition_tier(cycle(), &pilot(), 0, TierEvent::Deploy, p.now())
        .await
        .unwrap();
    // Each window's opening sends its install (the openings are on the hour); then, the next
    // afternoon, hb-ws1's window (15:00-17:00 UTC) has done its work and an-ws1's is open.
    let later = Utc.with_ymd_and_hms(2026, 12, 9, 16, 0, 2).unwrap();
    let opens = openings(&p).await;
    assert!(opens.iter().all(|t| *t < later), "{opens:?}");
    // Hourly, as ring-promotion ticks: each hour reads what changed since the one before.
    let mut at = opens[0] + chrono::Duration::seconds(2);
    while at < later {
        tick_at(&p, at).await;
        at += chrono::Duration::hours(1);
    }
    tick_at(&p, later).await;

    let tier = p
        .env
        .state
        .get_tier(cycle(), &pilot())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tier.state, TierState::Validating);
    let status = |runs: &[Value], id: &str| {
        runs.iter()
            .find(|r| r["endpoint"] == id)
            .map(|r| r["status"].as_str().unwrap_or_default().to_owned())
    };
    let runs = runs(&p).await;
    assert_eq!(status(&runs, "hb-ws1").as_deref(), Some("validated"));
    assert_eq!(status(&runs, "an-ws1").as_deref(), Some("installed"));
    assert!(p.take(Stage::Failure).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_deploy_for_an_endpoint_without_a_run_is_dead_lettered_naming_it() {
    let p = Embedded::new(release()).unwrap();
    p.open_cycle().await.unwrap();
    let mut e: SqsEvent = fixture("sqs-reboot-scheduler.json").unwrap();
    e.records.truncate(1);
    let mut env = Envelope::from_body(e.records[0].body.as_deref().unwrap()).unwrap();
    env.payload["endpoint"] = "zz-ws9".into();
    env.idempotency_key = "2026-12/deploy/zz-ws9/0".into();
    e.records[0].body = Some(env.to_body());
    p.deliver(Stage::Schedule, &mut e).await.unwrap();
    let resp = invoke(&p, e).await;
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    let dead = p.queues.dead_letters(Stage::Schedule).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.contains("zz-ws9"), "{}", dead[0].reason);
    assert!(taken(&p).is_empty());
}

#[test]
fn the_wiring_table_names_this_function_and_its_queue() {
    let w =
        patchflow_lambda::wiring::function(<RebootScheduler as patchflow_lambda::SqsStage>::NAME)
            .expect("in the wiring table");
    assert_eq!(
        w.consumes,
        Some(<RebootScheduler as patchflow_lambda::SqsStage>::STAGE)
    );
    assert!(!w.scheduled);
}
