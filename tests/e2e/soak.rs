//! The pilot's soak in whole simulated cycles through the pump, on the embedded default: counted
//! from the moment the pilot was actually healthy (a retry restarts it; a daytime pilot that
//! reboots only at its forced reboot soaks from that validation), re-checked daily against the
//! RMM (a pilot unhealthy during its soak is ticketed, holds production, and soaks again after
//! its root cause and retry), the pilot archived only after its soak, and the hold scope (one
//! client's pilot failure holds the fleet's production workstations, or only its own client's).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, Timelike, Utc};
use patchflow_cli::simulate::{sim_env, SimulateSpec};
use patchflow_connectors::file::{FileCatalog, FileInventory};
use patchflow_core::ids::{CycleId, EndpointId};
use patchflow_core::plan::Release;
use patchflow_core::policy::{HoldScope, Policy};
use patchflow_core::ports::clock::{Clock, ManualClock};
use patchflow_core::ports::queue::{Envelope, QueueConsumer, Stage};
use patchflow_core::ports::state::{ApprovalStore, FailureStore, TierId, TierStore};
use patchflow_core::rules::commands::RmmCommand;
use patchflow_core::rules::failure::{FailureStage, RootCause};
use patchflow_core::tier::TierState;
use patchflow_local::evidence::FsEvidenceStore;
use patchflow_local::queue::SqliteQueues;
use patchflow_local::state::SqliteState;
use patchflow_pipeline::messages::PromoteTier;
use patchflow_pipeline::operator::record_root_cause;
use patchflow_pipeline::pump::{drain_all, PumpOptions};
use patchflow_pipeline::records::{self, run_kind, Run, TierPlan, TIER_KIND};
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

fn ep(id: &str) -> EndpointId {
    EndpointId::parse(id).unwrap()
}

fn tier(id: &str) -> TierId {
    TierId::parse(id).unwrap()
}

fn write_inventory(dir: &Path, json: &str) -> PathBuf {
    let path = dir.join("inventory.json");
    std::fs::write(&path, json).unwrap();
    path
}

fn spec(dir: &Path, inventory: &Path, policy: Policy, response: Duration) -> SimulateSpec {
    SimulateSpec {
        inventory: inventory.to_owned(),
        catalog: CATALOG.into(),
        cycle: cycle(),
        // Nothing fails by chance: each test's failures are its own.
        failure_rate: 0.0,
        seed: 7,
        out: dir.to_owned(),
        policy,
        engineer_response: response,
        days: 40,
        deliver_twice: false,
    }
}

/// A whole cycle through the pump, as `patchflow simulate` runs it (the daily sync, the hourly
/// tick, every queue drained, an engineer documenting each failure's root cause after
/// `engineer_response`), with `hook` called every hour to touch the simulated RMM. Returns
/// whether every tier closed.
async fn drive(
    env: &Env,
    consumer: &SqliteQueues,
    clock: &ManualClock,
    spec: &SimulateSpec,
    mut hook: impl FnMut(&Env, DateTime<Utc>, &[Run]),
) -> bool {
    let release = Release::of(spec.cycle, &spec.policy, None);
    let start =
        release.released_at + Duration::minutes(i64::from(60 - release.released_at.minute()) % 60);
    clock.set(start);
    let inventory = FileInventory::new(&spec.inventory);
    let catalog = FileCatalog::new(spec.catalog.display().to_string());
    let opts = PumpOptions::default();
    for hour in 0..=spec.days * 24 {
        let now = clock.now();
        if hour == 0 || now.hour() == 6 {
            patchflow_pipeline::sync::inventory_sync(env, &inventory, &catalog, now)
                .await
                .unwrap();
        }
        patchflow_pipeline::tick::tick(env, now).await.unwrap();
        drain_all(env, consumer, now, opts).await.unwrap();
        let mut acted = false;
        for f in env.state.list_failures(cycle()).await.unwrap() {
            if f.root_cause.is_none()
                && f.ticket.is_some()
                && now - f.failed_at >= spec.engineer_response
            {
                let rc = RootCause {
                    text: format!(
                        "{} on {} investigated and fixed",
                        f.stage.as_str(),
                        f.endpoint
                    ),
                    engineer: "sim-engineer".into(),
                    recorded_at: now,
                };
                record_root_cause(&env.state, &env.queues, cycle(), &f.id, rc, now)
                    .await
                    .unwrap();
                acted = true;
            }
        }
        if acted {
            drain_all(env, consumer, now, opts).await.unwrap();
        }
        hook(env, now, &all_runs(env).await);
        let tiers = env.state.list_tiers(cycle()).await.unwrap();
        if !tiers.is_empty() && tiers.iter().all(|t| t.state == TierState::Closed) {
            for stage in Stage::ALL {
                assert!(
                    consumer.dead_letters(stage).await.unwrap().is_empty(),
                    "dead letters on {stage}"
                );
            }
            return true;
        }
        clock.advance(Duration::hours(1));
    }
    false
}

fn setup(spec: &SimulateSpec) -> (Env, SqliteQueues, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let state = SqliteState::in_memory().unwrap();
    let queues = SqliteQueues::in_memory(clock.clone(), 3).unwrap();
    let evidence = FsEvidenceStore::open(spec.out.join("evidence")).unwrap();
    let consumer = queues.clone();
    (
        sim_env(state, queues, evidence, clock.clone(), spec),
        consumer,
        clock,
    )
}

async fn all_runs(env: &Env) -> Vec<Run> {
    let Some(doc) = records::cycle_doc(&env.state, cycle()).await.unwrap() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in &doc.tiers {
        let runs: Vec<(Run, u64)> = records::list(&env.state, cycle(), &run_kind(t))
            .await
            .unwrap();
        out.extend(runs.into_iter().map(|(r, _)| r));
    }
    out
}

async fn plan_of(env: &Env, t: &str) -> TierPlan {
    records::must_load::<TierPlan>(&env.state, cycle(), TIER_KIND, t)
        .await
        .unwrap()
        .0
}

/// When the simulated RMM took the first install for an endpoint.
fn first_install(env: &Env, endpoint: &str) -> DateTime<Utc> {
    env.rmm
        .commands()
        .into_iter()
        .filter(|c| c.command.endpoint().as_str() == endpoint)
        .find(|c| {
            matches!(
                c.command,
                RmmCommand::ScheduleInstall { .. } | RmmCommand::TechnicianInstall { .. }
            )
        })
        .map(|c| c.at)
        .unwrap_or_else(|| panic!("{endpoint} got no install"))
}

fn validated_at(runs: &[Run], endpoint: &str) -> DateTime<Utc> {
    runs.iter()
        .find(|r| r.endpoint.as_str() == endpoint)
        .and_then(|r| r.validated_at)
        .unwrap_or_else(|| panic!("{endpoint} is not validated"))
}

fn soak() -> Duration {
    Policy::default().rollout.soak
}

/// Turns an agent's maintenance mode off once its failure is recorded (the root cause the
/// engineer then documents).
fn maintenance_until_failed(endpoints: &[&str]) -> impl FnMut(&Env, DateTime<Utc>, &[Run]) {
    let endpoints: Vec<String> = endpoints.iter().map(|s| s.to_string()).collect();
    move |env, _now, runs| {
        for e in &endpoints {
            if runs
                .iter()
                .any(|r| r.endpoint.as_str() == e && !r.failures.is_empty())
            {
                env.rmm.set_maintenance(&ep(e), false);
            }
        }
    }
}

const SERVERS: &str = r#"{
  "clients": [ { "id": "contoso", "timezone": "America/Chicago" } ],
  "endpoints": [
    { "id": "cs-app1", "client": "contoso", "hostname": "CS-APP1", "kind": "server", "role": "app",
      "criticality": "p2", "ring": "pilot", "policy_group": "auto_install_auto_reboot",
      "unattended_reboot_approved": true },
    { "id": "cs-app2", "client": "contoso", "hostname": "CS-APP2", "kind": "server", "role": "app",
      "criticality": "p2", "policy_group": "auto_install_auto_reboot",
      "unattended_reboot_approved": true }
  ]
}"#;

#[tokio::test]
async fn a_retried_pilot_soaks_seven_days_from_its_retrys_validation() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = write_inventory(dir.path(), SERVERS);
    let spec = spec(
        dir.path(),
        &inventory,
        Policy::default(),
        Duration::hours(20),
    );
    let (env, consumer, clock) = setup(&spec);
    // GIVEN the pilot's agent in maintenance mode in its first window: nothing is sent, the
    // install fails, the engineer documents it and the retry validates.
    env.rmm.set_maintenance(&ep("cs-app1"), true);
    let closed = drive(
        &env,
        &consumer,
        &clock,
        &spec,
        maintenance_until_failed(&["cs-app1"]),
    )
    .await;
    assert!(closed, "every tier closes within the simulated days");
    let runs = all_runs(&env).await;
    let pilot = runs
        .iter()
        .find(|r| r.endpoint.as_str() == "cs-app1")
        .unwrap();
    assert_eq!(pilot.attempt, 1, "{pilot:?}");
    let retry_validated = validated_at(&runs, "cs-app1");
    // THEN production deploys no earlier than the soak after the retry's validation, which is
    // later than the planned gate.
    let production = plan_of(&env, "servers.contoso.production").await;
    assert!(production.gate.unwrap() < retry_validated + soak());
    let installed = first_install(&env, "cs-app2");
    assert!(
        installed >= retry_validated + soak(),
        "production installed at {installed}, the retry validated at {retry_validated}"
    );
    let words = production.last_decision.unwrap();
    assert!(words.starts_with("promoted"), "{words}");
    assert!(
        words.contains(&format!(
            "healthy since {}",
            retry_validated.format("%Y-%m-%d %H:%M UTC")
        )),
        "{words}"
    );
}

const DAYTIME: &str = r#"{
  "clients": [ { "id": "fabrikam", "timezone": "America/New_York" } ],
  "endpoints": [
    { "id": "fb-p1", "client": "fabrikam", "kind": "workstation", "ring": "pilot", "track": "daytime" },
    { "id": "fb-p2", "client": "fabrikam", "kind": "workstation", "ring": "pilot", "track": "daytime" },
    { "id": "fb-p3", "client": "fabrikam", "kind": "workstation", "ring": "pilot", "track": "daytime" },
    { "id": "fb-p4", "client": "fabrikam", "kind": "workstation", "ring": "pilot", "track": "daytime" },
    { "id": "fb-w1", "client": "fabrikam", "kind": "workstation" },
    { "id": "fb-w2", "client": "fabrikam", "kind": "workstation" }
  ]
}"#;

#[tokio::test]
async fn a_daytime_pilot_that_reboots_only_at_its_forced_reboot_soaks_from_that_validation() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = write_inventory(dir.path(), DAYTIME);
    let spec = spec(
        dir.path(),
        &inventory,
        Policy::default(),
        Duration::hours(20),
    );
    let (env, consumer, clock) = setup(&spec);
    let closed = drive(&env, &consumer, &clock, &spec, |_, _, _| {}).await;
    assert!(closed, "every tier closes within the simulated days");
    let runs = all_runs(&env).await;
    let pilots: Vec<&Run> = runs
        .iter()
        .filter(|r| r.tier.as_str() == "workstations.pilot")
        .collect();
    // GIVEN a pilot whose user never rebooted: validated only after its forced reboot.
    let forced: Vec<&&Run> = pilots.iter().filter(|r| r.forced_reboot).collect();
    assert!(!forced.is_empty(), "a pilot should reboot only when forced");
    let healthy = pilots.iter().filter_map(|r| r.validated_at).max().unwrap();
    assert!(forced.iter().any(|r| r.validated_at == Some(healthy)));
    let production = plan_of(&env, "workstations.production").await;
    assert!(
        production.gate.unwrap() < healthy + soak(),
        "the planned gate would have let production in before the true soak"
    );
    // THEN no production workstation installs before the soak from that validation.
    for w in ["fb-w1", "fb-w2"] {
        let installed = first_install(&env, w);
        assert!(
            installed >= healthy + soak(),
            "{w} installed at {installed}, the pilot was healthy at {healthy}"
        );
    }
    // The pilot was re-checked against the RMM every day of its soak, and archived (closed)
    // only after it.
    let pilot_plan = plan_of(&env, "workstations.pilot").await;
    let checks = &pilot_plan.soak_checks;
    assert!(checks.len() >= 7, "{checks:#?}");
    assert!(checks.iter().all(|c| c.healthy && c.endpoints == 4));
    for pair in checks.windows(2) {
        assert_eq!(pair[1].day - pair[0].day, Duration::days(1), "{checks:#?}");
    }
    assert!(checks.iter().all(|c| c.healthy_since == healthy));
    let closed_at = env
        .state
        .get_tier(cycle(), &tier("workstations.pilot"))
        .await
        .unwrap()
        .unwrap()
        .updated_at;
    assert!(closed_at >= healthy + soak(), "closed at {closed_at}");
    assert!(env.rmm.health_reads() >= 7 * 4);
}

#[tokio::test]
async fn a_pilot_unhealthy_during_its_soak_is_ticketed_holds_production_and_soaks_again() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = write_inventory(dir.path(), SERVERS);
    let spec = spec(
        dir.path(),
        &inventory,
        Policy::default(),
        Duration::hours(20),
    );
    let (env, consumer, clock) = setup(&spec);
    let mut made = None;
    // GIVEN the pilot turns unhealthy two days after its validation (its monitors failing).
    let closed = drive(&env, &consumer, &clock, &spec, |env, _now, runs| {
        if made.is_none() {
            if let Some(v) = runs
                .iter()
                .find(|r| r.endpoint.as_str() == "cs-app1")
                .and_then(|r| r.validated_at)
            {
                env.rmm
                    .make_unhealthy(&ep("cs-app1"), v + Duration::days(2));
                made = Some(v);
            }
        }
    })
    .await;
    assert!(closed, "every tier closes within the simulated days");
    let first_validated = made.unwrap();
    // THEN the soak's re-check fails it: one failure at stage soak, one ticket naming it.
    let failures = env.state.list_failures(cycle()).await.unwrap();
    assert_eq!(failures.len(), 1, "{failures:#?}");
    let f = &failures[0];
    assert_eq!(f.stage, FailureStage::Soak);
    assert_eq!(f.endpoint.as_str(), "cs-app1");
    assert!(f.failed_at >= first_validated + Duration::days(2));
    assert!(f.failed_at < first_validated + soak());
    let tickets: Vec<_> = env
        .psa
        .tickets()
        .into_iter()
        .filter(|t| t.external_ref.contains("/failure/"))
        .collect();
    assert_eq!(tickets.len(), 1, "{tickets:#?}");
    assert!(
        tickets[0].summary.contains("soak failed"),
        "{}",
        tickets[0].summary
    );
    assert!(
        tickets[0]
            .description
            .contains("unhealthy during the pilot's soak"),
        "{}",
        tickets[0].description
    );
    // The check that found it is on the pilot's plan, naming the endpoint.
    let pilot_plan = plan_of(&env, "servers.contoso.pilot").await;
    let bad: Vec<_> = pilot_plan
        .soak_checks
        .iter()
        .filter(|c| !c.healthy)
        .collect();
    assert_eq!(bad.len(), 1, "{:#?}", pilot_plan.soak_checks);
    assert_eq!(bad[0].unhealthy[0].endpoint.as_str(), "cs-app1");
    assert!(pilot_plan.soak_checks.iter().any(|c| c.healthy));
    // Production held until the retry, then a new full soak from the retry's validation.
    let runs = all_runs(&env).await;
    let pilot = runs
        .iter()
        .find(|r| r.endpoint.as_str() == "cs-app1")
        .unwrap();
    assert_eq!(pilot.attempt, 1);
    let retry_validated = validated_at(&runs, "cs-app1");
    assert!(retry_validated > f.failed_at);
    let installed = first_install(&env, "cs-app2");
    assert!(
        installed >= retry_validated + soak(),
        "production installed at {installed}, the retry validated at {retry_validated}"
    );
    assert!(
        pilot_plan
            .soak_checks
            .iter()
            .any(|c| c.healthy && c.healthy_since == retry_validated),
        "the retry's soak is re-checked too"
    );
    assert!(tickets[0].closed, "the ticket closes with its tier");
}

#[tokio::test]
async fn a_pilot_agent_offline_during_its_soak_is_not_checked_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = write_inventory(dir.path(), SERVERS);
    let spec = spec(
        dir.path(),
        &inventory,
        Policy::default(),
        Duration::hours(20),
    );
    let (env, consumer, clock) = setup(&spec);
    // GIVEN the pilot's agent offline (asleep) on every soak re-check.
    let mut made = false;
    let closed = drive(&env, &consumer, &clock, &spec, |env, _now, runs| {
        if !made
            && runs
                .iter()
                .any(|r| r.endpoint.as_str() == "cs-app1" && r.validated_at.is_some())
        {
            env.rmm.set_offline(&ep("cs-app1"), true);
            made = true;
        }
    })
    .await;
    assert!(closed, "every tier closes within the simulated days");
    // THEN nothing fails: no failure, no ticket; each check records it not checked.
    let failures = env.state.list_failures(cycle()).await.unwrap();
    assert!(failures.is_empty(), "{failures:#?}");
    let pilot_plan = plan_of(&env, "servers.contoso.pilot").await;
    assert!(!pilot_plan.soak_checks.is_empty());
    for c in &pilot_plan.soak_checks {
        assert!(c.healthy, "{c:#?}");
        let off = c
            .not_checked
            .iter()
            .find(|f| f.endpoint.as_str() == "cs-app1")
            .expect("the offline pilot is reported not checked");
        assert!(off.detail.contains("agent offline"), "{}", off.detail);
    }
}

const TWO_CLIENTS: &str = r#"{
  "clients": [ { "id": "alpha", "timezone": "America/Chicago" },
               { "id": "bravo", "timezone": "America/Chicago" } ],
  "endpoints": [
    { "id": "al-p1", "client": "alpha", "kind": "workstation", "ring": "pilot" },
    { "id": "al-w1", "client": "alpha", "kind": "workstation" },
    { "id": "al-w2", "client": "alpha", "kind": "workstation" },
    { "id": "br-p1", "client": "bravo", "kind": "workstation", "ring": "pilot" },
    { "id": "br-w1", "client": "bravo", "kind": "workstation" },
    { "id": "br-w2", "client": "bravo", "kind": "workstation" }
  ]
}"#;

/// Two clients' workstations, alpha's pilot failing its first install (its agent in maintenance
/// mode) and documented three days later: each production workstation's first install, and the
/// validations of alpha's retried pilot and bravo's pilot.
async fn two_clients(
    scope: HoldScope,
) -> (
    BTreeMap<String, DateTime<Utc>>,
    DateTime<Utc>,
    DateTime<Utc>,
    Env,
) {
    let dir = tempfile::tempdir().unwrap();
    let inventory = write_inventory(dir.path(), TWO_CLIENTS);
    let mut policy = Policy::default();
    policy.rollout.hold_scope = scope;
    let spec = spec(dir.path(), &inventory, policy, Duration::days(3));
    let (env, consumer, clock) = setup(&spec);
    env.rmm.set_maintenance(&ep("al-p1"), true);
    let closed = drive(
        &env,
        &consumer,
        &clock,
        &spec,
        maintenance_until_failed(&["al-p1"]),
    )
    .await;
    assert!(
        closed,
        "every tier closes within the simulated days ({scope:?})"
    );
    let runs = all_runs(&env).await;
    let installs = ["al-w1", "al-w2", "br-w1", "br-w2"]
        .iter()
        .map(|w| (w.to_string(), first_install(&env, w)))
        .collect();
    let alpha = validated_at(&runs, "al-p1");
    let bravo = validated_at(&runs, "br-p1");
    assert!(
        alpha > bravo + Duration::days(2),
        "alpha's pilot is retried days later"
    );
    (installs, alpha, bravo, env)
}

#[tokio::test]
async fn with_the_fleet_hold_scope_one_clients_pilot_failure_holds_every_clients_production() {
    let (installs, alpha, _bravo, env) = two_clients(HoldScope::Fleet).await;
    for (w, at) in &installs {
        assert!(
            *at >= alpha + soak(),
            "{w} installed at {at}, before the soak after alpha's retried pilot ({alpha})"
        );
    }
    let words = plan_of(&env, "workstations.production")
        .await
        .last_decision
        .unwrap();
    assert!(words.starts_with("promoted"), "{words}");
}

#[tokio::test]
async fn with_the_client_hold_scope_a_pilot_failure_holds_only_its_own_clients_production() {
    let (installs, alpha, bravo, env) = two_clients(HoldScope::Client).await;
    for w in ["br-w1", "br-w2"] {
        let at = installs[w];
        assert!(
            at >= bravo + soak(),
            "{w} installed at {at} before bravo's soak"
        );
        assert!(
            at < alpha + soak(),
            "{w} installed at {at}: held by alpha's pilot ({alpha})"
        );
    }
    for w in ["al-w1", "al-w2"] {
        let at = installs[w];
        assert!(
            at >= alpha + soak(),
            "{w} installed at {at}, before the soak after alpha's retried pilot ({alpha})"
        );
    }
    let words = plan_of(&env, "workstations.production")
        .await
        .last_decision
        .unwrap();
    assert!(
        words.starts_with("2 client(s): 2 promoted, 0 waiting for the soak, 0 held"),
        "{words}"
    );
}

/// A client whose workstation pilot is larger than anything the tick should read in an hour.
fn many_pilots(pilots: usize, others: usize) -> String {
    let mut endpoints = Vec::new();
    for i in 0..pilots {
        endpoints.push(format!(
            r#"{{ "id": "nw-p{i}", "client": "northwind", "kind": "workstation", "ring": "pilot" }}"#
        ));
    }
    for i in 0..others {
        endpoints.push(format!(
            r#"{{ "id": "nw-w{i}", "client": "northwind", "kind": "workstation" }}"#
        ));
    }
    format!(
        r#"{{ "clients": [ {{ "id": "northwind", "timezone": "America/Chicago" }} ], "endpoints": [ {} ] }}"#,
        endpoints.join(",\n")
    )
}

#[tokio::test]
async fn a_soaking_pilots_hourly_tick_reads_the_days_check_not_its_runs() {
    const PILOTS: usize = 80;
    let dir = tempfile::tempdir().unwrap();
    let inventory = write_inventory(dir.path(), &many_pilots(PILOTS, 10));
    let mut spec = spec(
        dir.path(),
        &inventory,
        Policy::default(),
        Duration::hours(20),
    );
    // GIVEN a cycle stopped five days in: the pilot validated and soaking.
    spec.days = 5;
    let (env, consumer, clock) = setup(&spec);
    let closed = drive(&env, &consumer, &clock, &spec, |_, _, _| {}).await;
    assert!(!closed, "the production tier waits for the pilot's soak");
    let now = clock.now() - Duration::hours(1);
    let pilot = plan_of(&env, "workstations.pilot").await;
    let check = pilot.soak_checks.last().expect("the day's soak check");
    assert_eq!(check.day, now.date_naive(), "{:?}", pilot.soak_checks);
    assert!(check.healthy && now < check.soak_until, "{check:?}");
    assert_eq!(check.endpoints, PILOTS);
    // WHEN the hourly tick runs again after the day's check
    let before = env.state.work();
    let report = patchflow_pipeline::tick::tick(&env, now).await.unwrap();
    let read = env.state.work().rows - before.rows;
    // THEN it reads the tiers and the pilot's plan, not the pilot's runs, and sends neither the
    // day's soak check again (it was made) nor an archive.
    assert!(
        read < 10,
        "the tick read {read} records for a pilot of {PILOTS}: {report:?}"
    );
    let sent: Vec<String> = consumer
        .receive(Stage::Rollout, 100, Duration::minutes(5))
        .await
        .unwrap()
        .iter()
        .map(|d| Envelope::from_body(&d.body).unwrap().kind)
        .collect();
    assert!(
        !sent
            .iter()
            .any(|k| k == "soak_check" || k == "archive_tier"),
        "{sent:?}"
    );
    let state = env
        .state
        .get_tier(cycle(), &tier("workstations.pilot"))
        .await
        .unwrap();
    assert_eq!(state.map(|t| t.state), Some(TierState::Validated));
    // AND the production tier's hourly promotion decision reads the same check, not the
    // pilot's runs: it waits for the soak, until the check's end.
    let approvals = env.state.list_approvals(cycle()).await.unwrap().len() as u64;
    let before = env.state.work();
    let words = patchflow_pipeline::rollout::promote_tier(
        &env,
        cycle(),
        PromoteTier {
            tier: tier("workstations.production"),
        },
        now,
    )
    .await
    .unwrap();
    let read = env.state.work().rows - before.rows;
    assert!(
        read < approvals + 10,
        "the decision read {read} records ({approvals} approvals) for a pilot of {PILOTS}: {words}"
    );
    let gate = plan_of(&env, "workstations.production")
        .await
        .gate
        .unwrap()
        .max(check.soak_until);
    let expected = format!(
        "waiting for the pilot's soak: pilot workstations.pilot healthy since {}, soaking until {}",
        check.healthy_since.format("%Y-%m-%d %H:%M UTC"),
        gate.format("%Y-%m-%d %H:%M UTC")
    );
    assert_eq!(words, expected);
}
