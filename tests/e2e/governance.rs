//! Patch governance in the RMM over whole simulated cycles: every decision written into each
//! client's approval policy and read back, an engineer's later decision too, no declined or
//! held patch ever deployed, installs carrying their patches and sent when their windows open,
//! per-KB failures ticketed naming the KB, an agent in maintenance mode sent nothing, and a
//! daytime workstation asleep in its window failing the posture check.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{Duration, Utc};
use patchflow_cli::simulate::{run_cycle, sim_env, SimulateReport, SimulateSpec};
use patchflow_core::contract::{parse_catalog, parse_inventory};
use patchflow_core::ids::{ClientId, CycleId, EndpointId, PatchId};
use patchflow_core::plan::{plan, EndpointPlan, Release};
use patchflow_core::policy::Policy;
use patchflow_core::ports::clock::{Clock, ManualClock};
use patchflow_core::ports::rmm::RmmApproval;
use patchflow_core::ports::state::ApprovalStore;
use patchflow_core::rules::approval::{Decision, EngineerDecision};
use patchflow_core::rules::cadence::WindowKind;
use patchflow_core::rules::commands::RmmCommand;
use patchflow_core::rules::scope::Scope;
use patchflow_local::evidence::FsEvidenceStore;
use patchflow_local::queue::SqliteQueues;
use patchflow_local::state::SqliteState;
use patchflow_pipeline::approval::rmm_approval;
use patchflow_pipeline::operator::{decide_patch, sign};
use patchflow_pipeline::pump::{drain_all, PumpOptions};
use patchflow_pipeline::records::{self, Run, RunStatus};
use patchflow_sim::connectors::{SimPager, SimPsa, SimRmm};
use patchflow_sim::fleet::{generate, FleetSpec};

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

fn fleet(dir: &Path) -> PathBuf {
    let doc = generate(FleetSpec {
        endpoints: 40,
        clients: 3,
        seed: 11,
    });
    let path = dir.join("inventory.json");
    std::fs::write(&path, serde_json::to_string(&doc).unwrap()).unwrap();
    path
}

fn spec(dir: &Path, inventory: &Path, failure_rate: f64, days: i64) -> SimulateSpec {
    SimulateSpec {
        inventory: inventory.to_owned(),
        catalog: CATALOG.into(),
        cycle: cycle(),
        failure_rate,
        seed: 7,
        out: dir.to_owned(),
        policy: Policy::default(),
        engineer_response: Duration::hours(20),
        days,
        deliver_twice: false,
    }
}

/// The fleet's plan, to pick endpoints by what the plan makes of them.
fn planned(inventory: &Path) -> Vec<EndpointPlan> {
    let inv = parse_inventory("inventory", &std::fs::read_to_string(inventory).unwrap()).unwrap();
    let catalog = parse_catalog("catalog", &std::fs::read_to_string(CATALOG).unwrap()).unwrap();
    let policy = Policy::default();
    plan(&inv, &catalog, Release::of(cycle(), &policy, None), &policy).endpoints
}

fn unattended(p: &EndpointPlan) -> bool {
    p.scope == Scope::InScope && p.install.is_some() && !p.manual_approval_required
}

/// Runs a cycle on the embedded default, `prepare` first touching the simulated RMM.
async fn run(
    spec: &SimulateSpec,
    prepare: impl FnOnce(&SimRmm<ManualClock>),
) -> (SimulateReport, Env, SqliteQueues, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let state = SqliteState::in_memory().unwrap();
    let queues = SqliteQueues::in_memory(clock.clone(), 3).unwrap();
    let evidence = FsEvidenceStore::open(spec.out.join("evidence")).unwrap();
    let consumer = queues.clone();
    let env = sim_env(state, queues, evidence, clock.clone(), spec);
    prepare(&env.rmm);
    let report = run_cycle(&env, &consumer, &clock, spec, String::new())
        .await
        .unwrap();
    (report, env, consumer, clock)
}

/// Every in-scope endpoint's run, by endpoint.
async fn runs(env: &Env) -> BTreeMap<EndpointId, Run> {
    let cycle_doc = records::open_cycle(&env.state, cycle()).await.unwrap();
    let mut out = BTreeMap::new();
    for tier in &cycle_doc.tiers {
        let list: Vec<(Run, u64)> = records::list(&env.state, cycle(), &records::run_kind(tier))
            .await
            .unwrap();
        out.extend(list.into_iter().map(|(r, _)| (r.endpoint.clone(), r)));
    }
    out
}

/// The clients with in-scope endpoints.
async fn clients(env: &Env) -> BTreeSet<ClientId> {
    runs(env).await.values().map(|r| r.client.clone()).collect()
}

#[tokio::test]
async fn every_decision_is_written_once_per_client_confirmed_and_no_declined_or_held_patch_is_deployed(
) {
    let dir = tempfile::tempdir().unwrap();
    let inventory = fleet(dir.path());
    let (report, env, _, _) = run(&spec(dir.path(), &inventory, 0.1, 40), |_| {}).await;
    assert!(report.all_closed, "{:#?}", report.summary);
    assert!(report.dead_letters.is_empty(), "{:?}", report.dead_letters);

    let approvals = env.state.list_approvals(cycle()).await.unwrap();
    let clients = clients(&env).await;
    assert!(clients.len() >= 2, "{clients:?}");
    // One write per patch and client (each client fits one scope shard), each read back.
    assert_eq!(
        env.rmm.approval_writes(),
        approvals.len() * clients.len(),
        "{:?}",
        report.rmm_approvals
    );
    for client in &clients {
        let confirmed = records::rmm_confirmations(&env.state, cycle(), client)
            .await
            .unwrap();
        let patches: Vec<&PatchId> = confirmed.iter().map(|c| &c.patch).collect();
        assert_eq!(patches.len(), approvals.len(), "{client}: {confirmed:?}");
        for a in &approvals {
            let want = rmm_approval(a.decision);
            assert_eq!(
                env.rmm.policy(client, &a.patch),
                Some(want),
                "{client} {}",
                a.patch
            );
            let c = confirmed.iter().find(|c| c.patch == a.patch).unwrap();
            assert_eq!(c.approval, want);
            assert_eq!(c.decision, a.decision.as_str());
            assert_eq!(
                c.key,
                format!(
                    "{}/approval/{client}/{}/{}",
                    cycle(),
                    a.patch,
                    a.decision.as_str()
                )
            );
        }
    }

    // The catalog has a declined driver and patches held for review; none is ever deployed.
    let deploys: BTreeSet<PatchId> = approvals
        .iter()
        .filter(|a| a.decision.deploys())
        .map(|a| a.patch.clone())
        .collect();
    let kept_back: BTreeSet<PatchId> = approvals
        .iter()
        .filter(|a| !a.decision.deploys())
        .map(|a| a.patch.clone())
        .collect();
    assert!(approvals
        .iter()
        .any(|a| a.decision == Decision::Declined && a.patch.as_str() == "KB5071007"));
    assert!(approvals
        .iter()
        .any(|a| a.decision == Decision::PendingReview));
    assert!(!deploys.is_empty());
    assert_eq!(report.rmm_approvals.declined_deployed, 0);
    assert_eq!(report.rmm_approvals.declined_requested, 0);
    let runs = runs(&env).await;
    for (id, run) in &runs {
        let deployed = env.rmm.deployed(id);
        assert!(deployed.is_disjoint(&kept_back), "{id}: {deployed:?}");
        if run.status == RunStatus::Validated {
            // Every approved patch went out to it, through the client's policy.
            assert_eq!(deployed, deploys, "{id}");
        }
    }
    // Each install names exactly the approved patches and goes out at its window, not before.
    let mut installs = 0;
    for c in env.rmm.commands() {
        if let RmmCommand::ScheduleInstall {
            window, patches, ..
        }
        | RmmCommand::TechnicianInstall {
            window, patches, ..
        } = &c.command
        {
            installs += 1;
            let named: BTreeSet<PatchId> = patches.iter().cloned().collect();
            assert_eq!(named, deploys, "{}", c.key);
            assert!(c.at >= window.start && c.at < window.end, "{c:?}");
        }
    }
    assert!(installs >= runs.len());
}

#[tokio::test]
async fn an_engineers_later_decline_is_written_to_every_clients_policy_and_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = fleet(dir.path());
    let (report, env, consumer, clock) = run(&spec(dir.path(), &inventory, 0.0, 40), |_| {}).await;
    assert!(report.all_closed);
    let patch = PatchId::parse("KB5071001").unwrap();
    let clients = clients(&env).await;
    for c in &clients {
        assert_eq!(env.rmm.policy(c, &patch), Some(RmmApproval::Approved));
    }
    let writes = env.rmm.approval_writes();

    let sign_off = sign("alice", "vendor_known_issue", clock.now()).unwrap();
    let stored = decide_patch(
        &env.state,
        &env.queues,
        cycle(),
        &patch,
        EngineerDecision::Decline(sign_off),
    )
    .await
    .unwrap();
    assert_eq!(stored, Decision::Declined);
    let opts = PumpOptions {
        deliver_twice: true,
        ..PumpOptions::default()
    };
    let stats = drain_all(&env, &consumer, clock.now(), opts).await.unwrap();
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    // Once per client, however often the messages came.
    assert_eq!(env.rmm.approval_writes(), writes + clients.len());
    for c in &clients {
        assert_eq!(env.rmm.policy(c, &patch), Some(RmmApproval::Denied), "{c}");
        let confirmed = records::rmm_confirmations(&env.state, cycle(), c)
            .await
            .unwrap();
        let mine: Vec<_> = confirmed.iter().filter(|x| x.patch == patch).collect();
        assert_eq!(mine.len(), 2, "{mine:?}");
        assert_eq!(mine[1].approval, RmmApproval::Denied);
        assert!(mine[1]
            .key
            .starts_with(&format!("{}/approval/{c}/{patch}/declined@", cycle())));
    }
    // Draining again changes nothing.
    drain_all(&env, &consumer, clock.now() + Duration::hours(1), opts)
        .await
        .unwrap();
    assert_eq!(env.rmm.approval_writes(), writes + clients.len());
}

#[tokio::test]
async fn an_agent_in_maintenance_mode_is_sent_no_install_and_its_failure_names_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = fleet(dir.path());
    let plans = planned(&inventory);
    let target = plans
        .iter()
        .find(|p| unattended(p) && p.track != WindowKind::Daytime)
        .map(|p| p.id.clone())
        .unwrap();
    let (_, env, _, _) = run(&spec(dir.path(), &inventory, 0.0, 12), |rmm| {
        rmm.set_maintenance(&target, true)
    })
    .await;
    // Nothing at all went to it.
    assert!(
        env.rmm
            .commands()
            .iter()
            .all(|c| c.command.endpoint() != &target),
        "{target} was sent work while in maintenance mode"
    );
    let run = runs(&env).await.remove(&target).unwrap();
    assert!(!run.skipped.is_empty(), "{run:?}");
    assert!(run
        .skipped
        .iter()
        .all(|s| s.reason.contains("maintenance mode")));
    assert_eq!(run.failures.first(), Some(&format!("{target}.install.0")));
    let ticket = env
        .psa
        .tickets()
        .into_iter()
        .find(|t| t.external_ref == format!("{}/failure/{target}.install.0", cycle()))
        .expect("the skipped install is ticketed");
    assert!(
        ticket.description.contains("maintenance mode"),
        "{ticket:?}"
    );
    // Retried at its next window like any failure (and skipped again while it stays there).
    assert!(run.skipped.iter().any(|s| s.attempt >= 1), "{run:?}");
}

#[tokio::test]
async fn a_daytime_workstation_asleep_in_its_window_fails_the_posture_check_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = fleet(dir.path());
    let plans = planned(&inventory);
    let target = plans
        .iter()
        .find(|p| unattended(p) && p.track == WindowKind::Daytime)
        .map(|p| p.id.clone())
        .expect("the fleet has a daytime workstation");
    let (report, env, _, _) = run(&spec(dir.path(), &inventory, 0.0, 40), |rmm| {
        rmm.make_sleeper(&target)
    })
    .await;
    assert!(report.all_closed, "{:#?}", report.summary);
    let id = format!("{target}.posture.0");
    let run = runs(&env).await.remove(&target).unwrap();
    assert_eq!(run.failures.first(), Some(&id), "{run:?}");
    assert!(run.skipped[0].reason.contains("offline"), "{run:?}");
    // Its first attempt sent nothing; the retry installed and validated.
    let keys: Vec<String> = env
        .rmm
        .commands()
        .into_iter()
        .filter(|c| c.command.endpoint() == &target)
        .map(|c| c.key)
        .collect();
    assert!(keys.iter().all(|k| !k.contains("/0/")), "{keys:?}");
    assert!(
        keys.iter().any(|k| k.ends_with("/1/schedule_install")),
        "{keys:?}"
    );
    assert_eq!(run.status, RunStatus::Validated);
    assert!(env
        .psa
        .tickets()
        .iter()
        .any(|t| t.external_ref == format!("{}/failure/{id}", cycle())
            && t.summary.contains("posture")));
}

#[tokio::test]
async fn a_failed_kb_is_named_in_the_failure_and_its_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = fleet(dir.path());
    let (_, env, _, _) = run(&spec(dir.path(), &inventory, 0.5, 40), |_| {}).await;
    let approved: BTreeSet<String> = env
        .state
        .list_approvals(cycle())
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.decision.deploys())
        .map(|a| a.patch.to_string())
        .collect();
    let install_tickets: Vec<_> = env
        .psa
        .tickets()
        .into_iter()
        // Install failures the RMM reported (not an endpoint asleep through its window).
        .filter(|t| t.external_ref.contains(".install.") && t.description.contains("0x80070643"))
        .collect();
    assert!(!install_tickets.is_empty());
    for t in &install_tickets {
        let named: Vec<&String> = approved
            .iter()
            .filter(|kb| t.summary.contains(kb.as_str()) && t.description.contains(kb.as_str()))
            .collect();
        assert_eq!(named.len(), 1, "{t:?}");
    }
}

/// The simulated RMM, answering every approval read-back with `answer` instead.
struct MisreportingRmm {
    inner: SimRmm<ManualClock>,
    answer: Option<RmmApproval>,
}

impl patchflow_core::ports::rmm::Rmm for MisreportingRmm {
    async fn send(
        &self,
        key: &str,
        command: &RmmCommand,
    ) -> Result<(), patchflow_core::ports::PortError> {
        self.inner.send(key, command).await
    }

    async fn reports(
        &self,
        endpoint: &EndpointId,
        since: chrono::DateTime<Utc>,
        expect: &[PatchId],
    ) -> Result<Vec<patchflow_core::ports::rmm::RmmReport>, patchflow_core::ports::PortError> {
        self.inner.reports(endpoint, since, expect).await
    }

    async fn changed(
        &self,
        client: &patchflow_core::ids::ClientId,
        since: chrono::DateTime<Utc>,
    ) -> Result<Vec<EndpointId>, patchflow_core::ports::PortError> {
        self.inner.changed(client, since).await
    }

    async fn push_approval(
        &self,
        key: &str,
        push: &patchflow_core::ports::rmm::ApprovalPush,
    ) -> Result<(), patchflow_core::ports::PortError> {
        self.inner.push_approval(key, push).await
    }

    async fn approval_state(
        &self,
        _endpoint: &EndpointId,
        _patch: &PatchId,
    ) -> Result<Option<RmmApproval>, patchflow_core::ports::PortError> {
        Ok(self.answer)
    }

    async fn agent_state(
        &self,
        endpoint: &EndpointId,
    ) -> Result<patchflow_core::ports::rmm::AgentState, patchflow_core::ports::PortError> {
        self.inner.agent_state(endpoint).await
    }

    async fn health(
        &self,
        endpoint: &EndpointId,
    ) -> Result<patchflow_core::ports::rmm::HealthReport, patchflow_core::ports::PortError> {
        self.inner.health(endpoint).await
    }

    async fn record_closure(
        &self,
        key: &str,
        closure: &patchflow_core::ports::rmm::TierClosure,
    ) -> Result<bool, patchflow_core::ports::PortError> {
        self.inner.record_closure(key, closure).await
    }

    async fn record_retry(
        &self,
        key: &str,
        note: &patchflow_core::ports::rmm::RetryNote,
    ) -> Result<bool, patchflow_core::ports::PortError> {
        self.inner.record_retry(key, note).await
    }
}

/// A cycle opened on an RMM whose approval read-back answers `answer`; the approval queue's
/// first `push_approval` for the auto-approved KB5071001, as handled.
async fn read_back(answer: Option<RmmApproval>) -> (patchflow_pipeline::batch::Outcome, String) {
    use patchflow_core::ports::queue::{QueueConsumer, Stage};
    use patchflow_pipeline::batch::{handle, Outcome as Delivered};

    let dir = tempfile::tempdir().unwrap();
    let inventory = fleet(dir.path());
    // Every endpoint's scan lists KB5071001, so the RMM must show its approval on the endpoint
    // read back.
    let mut doc: patchflow_core::contract::InventoryDoc =
        serde_json::from_str(&std::fs::read_to_string(&inventory).unwrap()).unwrap();
    for e in &mut doc.endpoints {
        e.applicable = Some(vec!["KB5071001".to_owned()]);
    }
    std::fs::write(&inventory, serde_json::to_string(&doc).unwrap()).unwrap();
    let spec = spec(dir.path(), &inventory, 0.0, 1);
    let release = Release::of(cycle(), &spec.policy, None);
    let now = release.released_at + Duration::minutes(5);
    let clock = Arc::new(ManualClock::new(now));
    let queues = SqliteQueues::in_memory(clock.clone(), 3).unwrap();
    let base = sim_env(
        SqliteState::in_memory().unwrap(),
        queues.clone(),
        FsEvidenceStore::open(dir.path().join("evidence")).unwrap(),
        clock.clone(),
        &spec,
    );
    let env = patchflow_pipeline::Env {
        state: base.state,
        queues: base.queues,
        evidence: base.evidence,
        rmm: MisreportingRmm {
            inner: base.rmm,
            answer,
        },
        psa: base.psa,
        pager: base.pager,
        policy: base.policy,
        settings: base.settings,
    };
    patchflow_pipeline::sync::inventory_sync(
        &env,
        &patchflow_connectors::file::FileInventory::new(&inventory),
        &patchflow_connectors::file::FileCatalog::new(CATALOG),
        now,
    )
    .await
    .unwrap();
    // The opening: one part per client, then the coordinator that queues the evaluations.
    loop {
        let batch = queues
            .receive(Stage::Rollout, 10, Duration::minutes(5))
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        for d in batch {
            queues.ack(Stage::Rollout, &d.receipt).await.unwrap();
            assert!(matches!(
                handle(&env, Stage::Rollout, &d.body, now).await,
                Delivered::Done(_)
            ));
        }
    }
    // The evaluations: each stores its decision and queues its pushes.
    let mut pushes = Vec::new();
    loop {
        let batch = queues
            .receive(Stage::Approval, 10, Duration::minutes(5))
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        for d in batch {
            queues.ack(Stage::Approval, &d.receipt).await.unwrap();
            let e = patchflow_core::ports::queue::Envelope::from_body(&d.body).unwrap();
            if e.kind == "push_approval" {
                pushes.push(d.body);
            } else {
                assert!(matches!(
                    handle(&env, Stage::Approval, &d.body, now).await,
                    Delivered::Done(_)
                ));
            }
        }
    }
    let body = pushes
        .into_iter()
        .find(|b| b.contains("KB5071001"))
        .expect("a push for KB5071001");
    let client = patchflow_core::ports::queue::Envelope::from_body(&body)
        .unwrap()
        .payload["client"]
        .as_str()
        .unwrap()
        .to_owned();
    (handle(&env, Stage::Approval, &body, now).await, client)
}

#[tokio::test]
async fn an_approval_not_yet_visible_in_the_rmm_is_retried() {
    let (outcome, _) = read_back(None).await;
    match outcome {
        patchflow_pipeline::batch::Outcome::Retry(why) => {
            assert!(why.contains("not yet visible"), "{why}")
        }
        other => panic!("expected a retry, got {other:?}"),
    }
}

/// The write is the MSP's script, which the agent runs later: until then the policy still holds
/// the earlier state. The push is handed back (never dead-lettered on its first read), and the
/// reason it carries (to the dead-letter queue, if the state never changes) names both states.
#[tokio::test]
async fn an_rmm_still_holding_another_decision_after_the_write_is_retried_naming_both() {
    let (outcome, client) = read_back(Some(RmmApproval::Denied)).await;
    match outcome {
        patchflow_pipeline::batch::Outcome::Retry(why) => {
            for word in [
                client.as_str(),
                "KB5071001",
                "denied",
                "approved",
                "not applied yet",
            ] {
                assert!(why.contains(word), "{word} in {why}");
            }
        }
        other => panic!("expected a retry, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bad_inventory_record_refuses_the_sync_with_its_record_and_field_and_writes_nothing() {
    use patchflow_core::ports::state::{DocStore, EndpointStore};

    let dir = tempfile::tempdir().unwrap();
    let inventory = fleet(dir.path());
    // GIVEN one endpoint naming a client the inventory does not have
    let mut doc: patchflow_core::contract::InventoryDoc =
        serde_json::from_str(&std::fs::read_to_string(&inventory).unwrap()).unwrap();
    let bad = doc.endpoints[7].id.clone();
    doc.endpoints[7].client = "no-such-client".into();
    std::fs::write(&inventory, serde_json::to_string(&doc).unwrap()).unwrap();
    let spec = spec(dir.path(), &inventory, 0.0, 1);
    let release = Release::of(cycle(), &spec.policy, None);
    let now = release.released_at + Duration::minutes(5);
    let clock = Arc::new(ManualClock::new(now));
    let env = sim_env(
        SqliteState::in_memory().unwrap(),
        SqliteQueues::in_memory(clock.clone(), 3).unwrap(),
        FsEvidenceStore::open(dir.path().join("evidence")).unwrap(),
        clock.clone(),
        &spec,
    );
    // WHEN the daily sync reads it
    let err = patchflow_pipeline::sync::inventory_sync(
        &env,
        &patchflow_connectors::file::FileInventory::new(&inventory),
        &patchflow_connectors::file::FileCatalog::new(CATALOG),
        now,
    )
    .await
    .unwrap_err();
    // THEN it is refused as poison, naming the endpoint and the field, and nothing is written:
    // no endpoint of any client stored, no cycle opened.
    let words = err.to_string();
    assert!(
        matches!(err, patchflow_pipeline::HandlerError::Poison(_)),
        "{words}"
    );
    assert!(
        words.contains(bad.as_str()) && words.contains("client"),
        "{words}"
    );
    for c in &doc.clients {
        let id = ClientId::parse(c.id.clone()).unwrap();
        assert!(env.state.list_endpoints(&id).await.unwrap().is_empty());
    }
    assert!(records::cycle_doc(&env.state, cycle())
        .await
        .unwrap()
        .is_none());
    assert!(env
        .state
        .get_doc(
            cycle(),
            patchflow_pipeline::opening::OPENING_KIND,
            records::CYCLE_ID
        )
        .await
        .unwrap()
        .is_none());
}
