//! Criticality, exclusions and escalation input through the pipeline (the handlers fed by the
//! queue pump on the embedded default, with the simulated RMM, PSA and pager): a P1 server
//! waits for an engineer's approval before anything installs; an exclusion without its signed
//! approval is never commanded and stays in the register (and the evidence) as unsigned, with
//! who may lift it; a client's or an endpoint's impact raises a workstation failure's ticket.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, Timelike, Utc};
use patchflow_cli::simulate::{run_cycle, sim_env, SimulateSpec};
use patchflow_connectors::file::{FileCatalog, FileInventory};
use patchflow_core::ids::{ClientId, CycleId, EndpointId};
use patchflow_core::model::{Criticality, Impact};
use patchflow_core::plan::Release;
use patchflow_core::policy::Policy;
use patchflow_core::ports::clock::{Clock, ManualClock};
use patchflow_core::ports::state::{DocStore, EndpointStore, ExceptionStore, TierId};
use patchflow_core::rules::commands::RmmCommand;
use patchflow_local::evidence::FsEvidenceStore;
use patchflow_local::queue::SqliteQueues;
use patchflow_local::state::SqliteState;
use patchflow_pipeline::operator::{approve_endpoint, sign};
use patchflow_pipeline::pump::{drain_all, PumpOptions};
use patchflow_pipeline::records::{self, run_kind, Run, RunStatus};
use patchflow_sim::connectors::{SimPager, SimPsa, SimRmm};

const CATALOG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../functions/cli/demo/catalog-2026-12.json"
);

type Env = patchflow_pipeline::Env<
    SqliteState,
    SqliteQueues,
    FsEvidenceStore,
    SimRmm<ManualClock>,
    SimPsa,
    SimPager,
>;

fn cycle() -> CycleId {
    "2026-12".parse().unwrap()
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("inventory.json");
    std::fs::write(&path, text).unwrap();
    path
}

fn spec(dir: &Path, inventory: &Path, failure_rate: f64) -> SimulateSpec {
    SimulateSpec {
        inventory: inventory.to_owned(),
        catalog: CATALOG.into(),
        cycle: cycle(),
        failure_rate,
        seed: 7,
        out: dir.to_owned(),
        policy: Policy::default(),
        engineer_response: Duration::days(30),
        days: 40,
        deliver_twice: false,
    }
}

struct Local {
    env: Env,
    consumer: SqliteQueues,
    clock: Arc<ManualClock>,
}

fn local(dir: &Path, spec: &SimulateSpec) -> Local {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let state = SqliteState::in_memory().unwrap();
    let queues = SqliteQueues::in_memory(clock.clone(), 3).unwrap();
    let evidence = FsEvidenceStore::open(dir.join("evidence")).unwrap();
    let consumer = queues.clone();
    let env = sim_env(state, queues, evidence, clock.clone(), spec);
    Local {
        env,
        consumer,
        clock,
    }
}

/// The pipeline hour by hour as the deployed schedule drives it (the sync at the start and
/// daily at 06:00, the tick, every queue drained), with no engineer acting, until `until`.
async fn run_until(l: &Local, inventory: &Path, until: DateTime<Utc>) {
    let inv = FileInventory::new(inventory);
    let cat = FileCatalog::new(CATALOG.to_owned());
    let mut first = true;
    while l.clock.now() <= until {
        let now = l.clock.now();
        if first || now.hour() == 6 {
            patchflow_pipeline::sync::inventory_sync(&l.env, &inv, &cat, now)
                .await
                .unwrap();
            first = false;
        }
        patchflow_pipeline::tick::tick(&l.env, now).await.unwrap();
        drain_all(&l.env, &l.consumer, now, PumpOptions::default())
            .await
            .unwrap();
        l.clock.advance(Duration::hours(1));
    }
}

fn installs_of(env: &Env, endpoint: &str) -> Vec<(DateTime<Utc>, RmmCommand)> {
    env.rmm
        .commands()
        .into_iter()
        .filter(|c| {
            c.command.endpoint().as_str() == endpoint
                && matches!(
                    c.command,
                    RmmCommand::ScheduleInstall { .. } | RmmCommand::TechnicianInstall { .. }
                )
        })
        .map(|c| (c.at, c.command))
        .collect()
}

async fn run_of(env: &Env, tier: &str, endpoint: &str) -> Run {
    let (run, _): (Run, u64) = records::must_load(
        &env.state,
        cycle(),
        &run_kind(&TierId::parse(tier).unwrap()),
        endpoint,
    )
    .await
    .unwrap();
    run
}

#[tokio::test]
async fn a_p1_server_installs_nothing_until_an_engineer_approves_it_and_then_installs() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = write(
        dir.path(),
        r#"{
  "clients": [ { "id": "contoso", "timezone": "America/Chicago" } ],
  "endpoints": [
    { "id": "cs-dc1", "client": "contoso", "hostname": "CS-DC1", "kind": "server",
      "role": "domain_controller", "policy_group": "auto_install_auto_reboot",
      "unattended_reboot_approved": true },
    { "id": "cs-fs1", "client": "contoso", "hostname": "CS-FS1", "kind": "server",
      "role": "file", "ring": "pilot", "policy_group": "auto_install_auto_reboot",
      "unattended_reboot_approved": true }
  ]
}"#,
    );
    let spec = spec(dir.path(), &inventory, 0.0);
    let l = local(dir.path(), &spec);
    let release = Release::of(cycle(), &spec.policy, None);
    l.clock.set(
        release.released_at + Duration::minutes(i64::from(60 - release.released_at.minute()) % 60),
    );
    // Past the pilot's soak and many production windows: the P1 server is still waiting.
    run_until(&l, &inventory, release.released_at + Duration::days(14)).await;
    assert!(
        !installs_of(&l.env, "cs-fs1").is_empty(),
        "the pilot file server installs"
    );
    assert_eq!(installs_of(&l.env, "cs-dc1"), vec![]);
    let dc = run_of(&l.env, "servers.contoso.production", "cs-dc1").await;
    assert_eq!(dc.status, RunStatus::AwaitingApproval);
    assert!(dc.installed_at.is_none());
    // It waits in the index's own phase, which the engineer's queue reads instead of the tier.
    let kind = run_kind(&TierId::parse("servers.contoso.production").unwrap());
    let awaiting = || {
        l.env
            .state
            .count_docs_in_phase(cycle(), &kind, records::PHASE_AWAITING)
    };
    assert_eq!(awaiting().await.unwrap(), 1);

    // An engineer approves it: its install is sent at its next window, and it installs.
    let approved_at = l.clock.now();
    approve_endpoint(
        &l.env.state,
        &l.env.queues,
        cycle(),
        &EndpointId::parse("cs-dc1").unwrap(),
        sign("jdoe", "critical_server_reviewed", approved_at).unwrap(),
    )
    .await
    .unwrap();
    run_until(&l, &inventory, approved_at + Duration::days(2)).await;
    let installs = installs_of(&l.env, "cs-dc1");
    assert_eq!(installs.len(), 1, "{installs:?}");
    assert!(installs[0].0 >= approved_at);
    let dc = run_of(&l.env, "servers.contoso.production", "cs-dc1").await;
    assert!(dc.engineer_approval.is_some());
    assert_eq!(awaiting().await.unwrap(), 0, "approved, it left the phase");
    assert!(dc.installed_at.is_some_and(|t| t >= approved_at), "{dc:?}");
}

#[tokio::test]
async fn an_unsigned_exclusion_is_never_commanded_and_stays_unsigned_in_the_register_and_evidence()
{
    let dir = tempfile::tempdir().unwrap();
    let inventory = write(
        dir.path(),
        r#"{
  "clients": [ { "id": "fabrikam", "timezone": "Europe/Dublin" } ],
  "endpoints": [
    { "id": "fb-ws1", "client": "fabrikam", "kind": "workstation", "ring": "pilot" },
    { "id": "fb-ws2", "client": "fabrikam", "kind": "workstation", "client_excluded": true },
    { "id": "fb-ws3", "client": "fabrikam", "kind": "workstation", "client_excluded": true,
      "exclusion_ref": "FAB-SIGNED-2026-03" },
    { "id": "fb-kiosk", "client": "fabrikam", "kind": "workstation",
      "policy_group": "do_not_patch" }
  ]
}"#,
    );
    let spec = spec(dir.path(), &inventory, 0.0);
    let l = local(dir.path(), &spec);
    let report = run_cycle(&l.env, &l.consumer, &l.clock, &spec, String::new())
        .await
        .unwrap();
    assert!(report.all_closed, "{:#?}", report.summary);
    for id in ["fb-ws2", "fb-ws3", "fb-kiosk"] {
        assert!(
            l.env
                .rmm
                .commands()
                .iter()
                .all(|c| c.command.endpoint().as_str() != id),
            "{id} was commanded"
        );
    }
    assert!(!installs_of(&l.env, "fb-ws1").is_empty());

    let register = l.env.state.list_exceptions().await.unwrap();
    let entry = |s: &str| {
        register
            .iter()
            .find(|x| x.subject == s)
            .unwrap_or_else(|| panic!("{s} is not in the register: {register:?}"))
            .clone()
    };
    let unsigned = entry("fb-ws2");
    assert!(!unsigned.signed);
    assert_eq!(unsigned.approval_ref, None);
    assert_eq!(
        unsigned.lifted_by,
        "client signed change (no signed approval on record)"
    );
    let signed = entry("fb-ws3");
    assert!(signed.signed);
    assert_eq!(
        signed.lifted_by,
        "client signed change (FAB-SIGNED-2026-03)"
    );
    let dnp = entry("fb-kiosk");
    assert!(!dnp.signed);
    assert!(dnp.lifted_by.starts_with("MSP service manager"));

    // The evidence's exception lines carry the same.
    let mut lines = Vec::new();
    collect_exception_lines(&dir.path().join("evidence"), &mut lines);
    let line = lines
        .iter()
        .find(|x| x["subject"] == "fb-ws2")
        .unwrap_or_else(|| panic!("no evidence line for fb-ws2 in {lines:?}"));
    assert_eq!(line["signed"], false);
    assert_eq!(
        line["lifted_by"],
        "client signed change (no signed approval on record)"
    );
    let line = lines.iter().find(|x| x["subject"] == "fb-ws3").unwrap();
    assert_eq!(line["signed"], true);
    assert_eq!(line["reference"], "FAB-SIGNED-2026-03");
}

/// Every `exceptions[]` entry of every JSON record under `dir`.
fn collect_exception_lines(dir: &Path, out: &mut Vec<serde_json::Value>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_exception_lines(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            let Ok(v) =
                serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&path).unwrap())
            else {
                continue;
            };
            if let Some(list) = v.get("exceptions").and_then(|e| e.as_array()) {
                out.extend(list.iter().cloned());
            }
        }
    }
}

#[tokio::test]
async fn a_high_impact_client_or_endpoint_raises_a_workstation_failures_ticket_to_p1() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = write(
        dir.path(),
        r#"{
  "clients": [
    { "id": "hi", "timezone": "America/New_York", "impact": "high" },
    { "id": "lo", "timezone": "America/New_York" }
  ],
  "endpoints": [
    { "id": "hi-ws1", "client": "hi", "kind": "workstation", "ring": "pilot" },
    { "id": "hi-ws2", "client": "hi", "kind": "workstation", "ring": "pilot", "impact": "medium" },
    { "id": "lo-ws1", "client": "lo", "kind": "workstation", "ring": "pilot" },
    { "id": "lo-ws2", "client": "lo", "kind": "workstation", "ring": "pilot", "impact": "high" },
    { "id": "lo-ws3", "client": "lo", "kind": "workstation", "ring": "pilot", "impact": "low" }
  ]
}"#,
    );
    // Every first install fails; nobody documents a root cause in the three days simulated.
    let mut spec = spec(dir.path(), &inventory, 1.0);
    spec.days = 3;
    let l = local(dir.path(), &spec);
    run_cycle(&l.env, &l.consumer, &l.clock, &spec, String::new())
        .await
        .unwrap();
    let tickets = l.env.psa.tickets();
    let priority = |endpoint: &str| {
        let found: Vec<Criticality> = tickets
            .iter()
            .filter(|t| t.external_ref.contains("/failure/") && t.summary.contains(endpoint))
            .map(|t| t.priority)
            .collect();
        assert_eq!(found.len(), 1, "{endpoint}: {tickets:#?}");
        found[0]
    };
    assert_eq!(priority("hi-ws1"), Criticality::P1, "the client's impact");
    assert_eq!(
        priority("hi-ws2"),
        Criticality::P2,
        "the endpoint overrides"
    );
    assert_eq!(priority("lo-ws1"), Criticality::P2, "the default");
    assert_eq!(priority("lo-ws2"), Criticality::P1, "the endpoint's impact");
    assert_eq!(
        priority("lo-ws3"),
        Criticality::P2,
        "impact never lowers it"
    );
    let hi = tickets
        .iter()
        .find(|t| t.external_ref.contains("/failure/") && t.summary.contains("hi-ws1"))
        .unwrap();
    assert!(hi.summary.starts_with("P1 "), "{}", hi.summary);
    assert!(
        hi.description
            .contains("client impact high (its client's, P1)"),
        "{}",
        hi.description
    );

    // The impact survives the sync: in the stored endpoint documents and the cycle's runs.
    let stored = l
        .env
        .state
        .get_endpoint(
            &ClientId::parse("lo").unwrap(),
            &EndpointId::parse("lo-ws2").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.doc.impact, Some(Impact::High));
    let run = run_of(&l.env, "workstations.pilot", "lo-ws2").await;
    assert_eq!(run.doc.impact, Some(Impact::High));
    let doc = records::cycle_doc(&l.env.state, cycle())
        .await
        .unwrap()
        .unwrap();
    let hi_client = doc.clients.iter().find(|c| c.id == "hi").unwrap();
    assert_eq!(hi_client.impact, Some(Impact::High));
}

#[tokio::test]
async fn the_inventory_sync_reports_the_plans_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = write(
        dir.path(),
        r#"{
  "clients": [ { "id": "contoso", "timezone": "America/Chicago" } ],
  "endpoints": [
    { "id": "cs-dc1", "client": "contoso", "kind": "server", "role": "domain_controller" },
    { "id": "cs-fs1", "client": "contoso", "kind": "server", "role": "file" },
    { "id": "cs-ws1", "client": "contoso", "kind": "workstation", "ring": "pilot" },
    { "id": "cs-ws2", "client": "contoso", "kind": "workstation", "client_excluded": true }
  ]
}"#,
    );
    let spec = spec(dir.path(), &inventory, 0.0);
    let l = local(dir.path(), &spec);
    let report = patchflow_pipeline::sync::inventory_sync(
        &l.env,
        &FileInventory::new(&inventory),
        &FileCatalog::new(CATALOG.to_owned()),
        l.clock.now(),
    )
    .await
    .unwrap();
    let got: Vec<(&str, &str)> = report
        .warnings
        .iter()
        .map(|w| (w.code, w.subject.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("pilot_server_missing", "contoso"),
            ("unsigned_exclusion", "cs-ws2")
        ]
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["warnings"][1]["field"], "exclusion_ref");
}

#[tokio::test]
async fn a_root_cause_checks_a_tier_of_more_failed_runs_than_a_page_and_releases_it_only_when_none_waits(
) {
    use patchflow_core::contract::EndpointDoc;
    use patchflow_core::ports::queue::{Envelope, QueueConsumer, Stage};
    use patchflow_core::ports::state::{FailureRecord, FailureStore};
    use patchflow_core::rules::failure::{FailureStage, RootCause};
    use patchflow_core::schedule::Window;
    use patchflow_pipeline::operator::record_root_cause;

    // GIVEN a tier with 150 failed runs (more than the check's page of 100), each with a
    // ticketed failure and no root cause yet
    const FAILED: usize = 150;
    let cycle: CycleId = "2026-12".parse().unwrap();
    let tier = TierId::parse("workstations.production").unwrap();
    let client = ClientId::parse("northwind").unwrap();
    let now = Utc::now();
    let window = Window {
        start: now + Duration::days(1),
        end: now + Duration::days(1) + Duration::hours(4),
    };
    let clock = Arc::new(ManualClock::new(now));
    let state = SqliteState::in_memory().unwrap();
    let queues = SqliteQueues::in_memory(clock, 3).unwrap();
    let policy = Policy::default();
    let mut ids = Vec::new();
    for i in 0..FAILED {
        let endpoint = EndpointId::parse(format!("nw-{i:03}")).unwrap();
        let doc: EndpointDoc = serde_json::from_value(serde_json::json!({
            "id": endpoint.as_str(), "client": client.as_str(), "kind": "workstation",
        }))
        .unwrap();
        let mut run = Run::planned(endpoint.clone(), client.clone(), tier.clone(), doc, window);
        let id = run.failure_id(FailureStage::Install);
        run.status = RunStatus::Failed;
        run.failures.push(id.clone());
        records::save_run(&state, cycle, &run, None, &policy, None)
            .await
            .unwrap();
        state
            .open_failure(&FailureRecord {
                id: id.clone(),
                cycle,
                tier: tier.clone(),
                endpoint,
                client: client.clone(),
                stage: FailureStage::Install,
                priority: Criticality::P2,
                paged: false,
                failed_at: now,
                next_retry: window,
                ticket: Some(format!("T-{i}")),
                root_cause: None,
                version: 0,
            })
            .await
            .unwrap();
        ids.push(id);
    }
    let rc = || RootCause {
        text: "driver conflict removed".into(),
        engineer: "bob".into(),
        recorded_at: now,
    };
    let record = |id: String| {
        let (state, queues) = (&state, &queues);
        async move {
            record_root_cause(state, queues, cycle, &id, rc(), now)
                .await
                .unwrap()
        }
    };
    // WHEN the first root cause is recorded THEN the rest of the first page waits, and the
    // check says more may wait beyond it.
    let first = record(ids[0].clone()).await;
    assert!(!first.released);
    assert_eq!(first.waiting, ids[1..100].to_vec());
    assert!(first.more_waiting);
    // WHEN every other failure but one on the second page has its root cause THEN that one
    // alone waits, found past the first page.
    let straggler = ids[120].clone();
    let mut last = None;
    for id in ids[1..].iter().filter(|id| **id != straggler) {
        last = Some(record(id.clone()).await);
    }
    let last = last.unwrap();
    assert!(!last.released);
    assert_eq!(last.waiting, vec![straggler.clone()]);
    assert!(!last.more_waiting);
    assert!(queues
        .receive(Stage::Schedule, 10, Duration::minutes(5))
        .await
        .unwrap()
        .is_empty());
    // WHEN the straggler's root cause is recorded THEN the tier is released: every failed
    // endpoint is retried, once.
    let done = record(straggler).await;
    assert!(done.released);
    let mut retried = std::collections::BTreeSet::new();
    loop {
        let batch = queues
            .receive(Stage::Schedule, 100, Duration::minutes(5))
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        for d in batch {
            let env = Envelope::from_body(&d.body).unwrap();
            assert_eq!(env.kind, "deploy_endpoint");
            assert!(retried.insert(env.payload["endpoint"].as_str().unwrap().to_owned()));
            assert_eq!(env.payload["attempt"], 1);
        }
    }
    assert_eq!(retried.len(), FAILED);
}
