//! Every update batch through the pilot, over a whole simulated cycle on the embedded default:
//! a patch held for review and approved by an engineer after the pilot deployed is a batch of
//! its own, installed by its batch pilot first and by production only after that pilot's soak;
//! the cycle's production tiers never carry it; a second delivery creates nothing twice; and
//! every tier of both batches closes with evidence that verifies.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Timelike, Utc};
use patchflow_cli::simulate::{engineer, sim_env, SimulateSpec};
use patchflow_connectors::file::{FileCatalog, FileInventory};
use patchflow_core::ids::{CycleId, PatchId};
use patchflow_core::plan::Release;
use patchflow_core::policy::Policy;
use patchflow_core::ports::clock::{Clock, ManualClock};
use patchflow_core::ports::queue::{QueueConsumer, QueueSender, Stage};
use patchflow_core::ports::state::{ApprovalStore, DocStore, EvidenceIndex, TierId, TierStore};
use patchflow_core::rules::approval::{Decision, EngineerDecision};
use patchflow_core::rules::commands::RmmCommand;
use patchflow_core::rules::waves::Wave;
use patchflow_core::tier::TierState;
use patchflow_local::evidence::FsEvidenceStore;
use patchflow_local::queue::SqliteQueues;
use patchflow_local::state::SqliteState;
use patchflow_pipeline::batches::{self, batch_of, Batch, BATCH_KIND};
use patchflow_pipeline::operator::{decide_patch_in_batch, sign, ActionError};
use patchflow_pipeline::pump::{drain_all, PumpOptions};
use patchflow_pipeline::records::{self, Run, TierPlan, TIER_KIND};
use patchflow_sim::fleet::{generate, FleetSpec};

const CATALOG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../functions/cli/demo/catalog-2026-12.json"
);

/// Held for review by the seed's governance (a third-party security update), no products
/// listed: it applies to every endpoint.
const LATE: &str = "ADOBE-APSB26-88";

fn cycle() -> CycleId {
    "2026-12".parse().unwrap()
}

type Env = patchflow_pipeline::Env<
    SqliteState,
    SqliteQueues,
    FsEvidenceStore,
    patchflow_sim::connectors::SimRmm<ManualClock>,
    patchflow_sim::connectors::SimPsa,
    patchflow_sim::connectors::SimPager,
>;

/// Every run of the cycle, of every batch.
async fn all_runs(env: &Env) -> Vec<Run> {
    let doc = records::open_cycle(&env.state, cycle()).await.unwrap();
    let mut out = Vec::new();
    for tier in &doc.tiers {
        let list: Vec<(Run, u64)> = records::list(&env.state, cycle(), &records::run_kind(tier))
            .await
            .unwrap();
        out.extend(list.into_iter().map(|(r, _)| r));
    }
    out
}

async fn plan_of(env: &Env, tier: &str) -> TierPlan {
    records::must_load::<TierPlan>(&env.state, cycle(), TIER_KIND, tier)
        .await
        .unwrap()
        .0
}

/// The install commands the simulated RMM took: when, for which endpoint, under which key,
/// naming which patches.
fn installs(env: &Env) -> Vec<(DateTime<Utc>, String, String, Vec<PatchId>)> {
    env.rmm
        .commands()
        .into_iter()
        .filter(|c| {
            matches!(
                c.command,
                RmmCommand::ScheduleInstall { .. } | RmmCommand::TechnicianInstall { .. }
            )
        })
        .map(|c| {
            (
                c.at,
                c.command.endpoint().to_string(),
                c.key.clone(),
                c.command.patches().to_vec(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_patch_approved_after_the_pilot_deployed_is_a_batch_of_its_own_piloted_and_soaked_before_production(
) {
    let dir = tempfile::tempdir().unwrap();
    let doc = generate(FleetSpec {
        endpoints: 30,
        clients: 2,
        seed: 11,
    });
    let inventory_path = dir.path().join("inventory.json");
    std::fs::write(&inventory_path, serde_json::to_string(&doc).unwrap()).unwrap();
    let spec = SimulateSpec {
        inventory: inventory_path.clone(),
        catalog: CATALOG.into(),
        cycle: cycle(),
        failure_rate: 0.1,
        seed: 7,
        out: dir.path().to_owned(),
        policy: Policy::default(),
        engineer_response: Duration::hours(20),
        days: 45,
        deliver_twice: true,
    };
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let state = SqliteState::in_memory().unwrap();
    let queues = SqliteQueues::in_memory(clock.clone(), 3).unwrap();
    let evidence = FsEvidenceStore::open(dir.path().join("evidence")).unwrap();
    let consumer = queues.clone();
    let env: Env = sim_env(state, queues, evidence, clock.clone(), &spec);
    let inventory = FileInventory::new(&inventory_path);
    let catalog = FileCatalog::new(CATALOG.to_owned());
    let opts = PumpOptions {
        deliver_twice: true,
        ..PumpOptions::default()
    };
    let late = PatchId::parse(LATE).unwrap();
    let release = Release::of(cycle(), &spec.policy, None);
    clock.set(
        release.released_at + Duration::minutes(i64::from(60 - release.released_at.minute()) % 60),
    );

    let mut pilot_deployed = None;
    let mut approved_at = None;
    let mut all_closed = false;
    for hour in 0..=spec.days * 24 {
        let now = clock.now();
        if hour == 0 || now.hour() == 6 {
            patchflow_pipeline::sync::inventory_sync(&env, &inventory, &catalog, now)
                .await
                .unwrap();
        }
        patchflow_pipeline::tick::tick(&env, now).await.unwrap();
        drain_all(&env, &consumer, now, opts).await.unwrap();
        engineer(
            &env.state,
            &env.queues,
            cycle(),
            now,
            spec.engineer_response,
        )
        .await
        .unwrap();
        // The engineer approves the held patch a day after the workstation pilot deployed.
        let pilot = env
            .state
            .get_tier(cycle(), &TierId::parse("workstations.pilot").unwrap())
            .await
            .unwrap();
        if pilot_deployed.is_none() && pilot.is_some_and(|t| t.state != TierState::Scheduled) {
            pilot_deployed = Some(now);
        }
        if approved_at.is_none() && pilot_deployed.is_some_and(|d| now >= d + Duration::days(1)) {
            let held = env
                .state
                .get_approval(cycle(), &late)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(held.decision, Decision::PendingReview);
            let sign_off = sign("alice", "cab_approved", now).unwrap();
            let decided = decide_patch_in_batch(
                &env.state,
                &env.queues,
                cycle(),
                &late,
                EngineerDecision::Approve(sign_off.clone()),
            )
            .await
            .unwrap();
            assert_eq!(decided.decision, Decision::Approved);
            assert_eq!(
                decided.batch, None,
                "after the first deployment: a later batch"
            );
            // A second approval is refused and asks for nothing more.
            assert!(matches!(
                decide_patch_in_batch(
                    &env.state,
                    &env.queues,
                    cycle(),
                    &late,
                    EngineerDecision::Approve(sign_off)
                )
                .await,
                Err(ActionError::Refused(_))
            ));
            approved_at = Some(now);
        }
        drain_all(&env, &consumer, now, opts).await.unwrap();
        let tiers = env.state.list_tiers(cycle()).await.unwrap();
        if approved_at.is_some()
            && tiers.iter().any(|t| batch_of(&t.tier) == 2)
            && tiers.iter().all(|t| t.state == TierState::Closed)
        {
            all_closed = true;
            break;
        }
        clock.advance(Duration::hours(1));
    }
    let approved_at = approved_at.expect("the workstation pilot deployed");
    for stage in Stage::ALL {
        assert!(
            consumer.dead_letters(stage).await.unwrap().is_empty(),
            "{stage} dead letters"
        );
    }
    let tiers = env.state.list_tiers(cycle()).await.unwrap();
    assert!(all_closed, "{tiers:#?}");

    // Batch 1 is what deployed on Patch Tuesday's decisions; batch 2 is the late patch alone.
    let list = batches::list(&env.state, cycle()).await.unwrap();
    assert_eq!(list.len(), 2, "{list:#?}");
    assert!(!list[0].patches.contains(&late));
    assert_eq!(list[1].patches, vec![late.clone()]);
    let b2_tiers: BTreeSet<String> = tiers
        .iter()
        .filter(|t| batch_of(&t.tier) == 2)
        .map(|t| t.tier.to_string())
        .collect();
    assert!(b2_tiers.contains("workstations.pilot.b2"), "{b2_tiers:?}");
    assert!(
        b2_tiers.contains("workstations.production.b2"),
        "{b2_tiers:?}"
    );
    assert!(
        b2_tiers.iter().any(|t| t.starts_with("servers.")),
        "{b2_tiers:?}"
    );
    // The cycle record knows the batch's tiers (the operator's commands find their runs).
    let doc = records::open_cycle(&env.state, cycle()).await.unwrap();
    for t in &b2_tiers {
        assert!(doc.tiers.iter().any(|d| d.as_str() == t), "{t}");
    }

    // A redelivered or repeated request to open a batch creates nothing twice.
    let before: Vec<Batch> = batches::list(&env.state, cycle()).await.unwrap();
    let runs_before = all_runs(&env).await.len();
    let now = clock.now();
    for key in ["again-1", "again-2"] {
        let msg = batches::open_message(cycle(), format!("{}/{key}", cycle()), Some(late.clone()));
        env.queues.send_batch(Stage::Rollout, &[msg]).await.unwrap();
    }
    drain_all(&env, &consumer, now, opts).await.unwrap();
    assert_eq!(batches::list(&env.state, cycle()).await.unwrap(), before);
    assert_eq!(all_runs(&env).await.len(), runs_before);
    assert_eq!(
        env.state.list_tiers(cycle()).await.unwrap().len(),
        tiers.len()
    );
    assert!(env
        .state
        .list_docs(cycle(), BATCH_KIND)
        .await
        .unwrap()
        .iter()
        .all(|d| d.id == "1" || d.id == "2"));

    // The late patch: installed first by its batch pilots, never by a cycle tier, and by
    // production only after its batch pilot's soak.
    let runs = all_runs(&env).await;
    let mut pilot_first: Option<DateTime<Utc>> = None;
    let mut production_first: Option<DateTime<Utc>> = None;
    let installs = installs(&env);
    for (at, endpoint, key, patches) in &installs {
        if !patches.contains(&late) {
            continue;
        }
        assert!(*at >= approved_at);
        assert!(
            key.contains("/b2/"),
            "a cycle tier's install carried {LATE}: {key}"
        );
        let run = runs
            .iter()
            .find(|r| r.endpoint.as_str() == endpoint && batch_of(&r.tier) == 2)
            .unwrap_or_else(|| panic!("{endpoint} has no batch-2 run"));
        let plan = plan_of(&env, run.tier.as_str()).await;
        match plan.wave {
            Wave::Pilot => pilot_first = Some(pilot_first.map_or(*at, |p| p.min(*at))),
            Wave::Production => {
                production_first = Some(production_first.map_or(*at, |p| p.min(*at)));
                if let Some(gate) = plan.gate {
                    assert!(
                        *at >= gate,
                        "{endpoint} installed {LATE} at {at}, before {gate}"
                    );
                }
            }
        }
    }
    let pilot_first = pilot_first.expect("the batch-2 pilots installed the late patch");
    let production_first = production_first.expect("production installed it after the soak");
    assert!(
        production_first >= pilot_first + spec.policy.rollout.soak,
        "production installed {LATE} at {production_first}, the pilot at {pilot_first}"
    );
    // The batch-2 workstation pilot validated before any production endpoint received it.
    let ws_pilot: Vec<&Run> = runs
        .iter()
        .filter(|r| r.tier.as_str() == "workstations.pilot.b2")
        .collect();
    assert!(!ws_pilot.is_empty());
    for r in &ws_pilot {
        let validated = r.validated_at.expect("the batch-2 pilot validated");
        assert!(
            validated < production_first,
            "{} validated {validated}",
            r.endpoint
        );
    }
    // The simulated RMM deployed it to the batch-2 endpoints, and no cycle tier's install
    // named it (batch-1 production kept to batch 1).
    for r in runs.iter().filter(|r| batch_of(&r.tier) == 1) {
        for c in &r.commands {
            assert!(
                !c.patches().contains(&late),
                "{} carried {LATE}",
                r.endpoint
            );
        }
    }
    let b2_endpoints: BTreeSet<String> = runs
        .iter()
        .filter(|r| batch_of(&r.tier) == 2 && r.status == records::RunStatus::Validated)
        .map(|r| r.endpoint.to_string())
        .collect();
    assert!(!b2_endpoints.is_empty());
    for e in &b2_endpoints {
        let id = patchflow_core::ids::EndpointId::parse(e).unwrap();
        assert!(env.rmm.deployed(&id).contains(&late), "{e}");
    }
    assert_eq!(env.rmm.declined_deployed(), 0);
    assert_eq!(
        env.rmm.duplicates(),
        0,
        "every batch's commands have keys of their own"
    );

    // The late approval was written into the RMM per batch tier, for its endpoints, and
    // confirmed: the pilots' before production's.
    let mut pilot_written = None;
    let mut production_written = None;
    for client in doc.scopes.iter().map(|s| s.client.clone()) {
        for c in records::rmm_confirmations(&env.state, cycle(), &client)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.patch == late && c.decision == "approved")
        {
            let tier = c
                .tier
                .clone()
                .expect("a later batch's approval names its tier");
            let plan = plan_of(&env, tier.as_str()).await;
            let slot = match plan.wave {
                Wave::Pilot => &mut pilot_written,
                Wave::Production => &mut production_written,
            };
            *slot = Some(slot.map_or(c.confirmed_at, |t: DateTime<Utc>| t.min(c.confirmed_at)));
            if plan.wave == Wave::Production {
                if let Some(gate) = plan.gate {
                    assert!(c.confirmed_at >= gate, "{c:?}");
                }
            }
        }
    }
    let (Some(p), Some(q)) = (pilot_written, production_written) else {
        panic!("the approval was written for the pilots and production: {pilot_written:?} {production_written:?}");
    };
    assert!(
        p < q && q >= pilot_first + spec.policy.rollout.soak,
        "{p} {q}"
    );

    // `status` shows each batch, its patches, tiers and state, and each batch tier's rows.
    let summary = patchflow_pipeline::summary::summarize(&env.state, cycle())
        .await
        .unwrap();
    let shown: Vec<(u32, String)> = summary
        .batches
        .iter()
        .map(|b| (b.batch, b.state.clone()))
        .collect();
    assert_eq!(shown, [(1, "closed".to_owned()), (2, "closed".to_owned())]);
    assert_eq!(summary.batches[1].patches, vec![LATE.to_owned()]);
    assert_eq!(
        summary.batches[1]
            .tiers
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>(),
        b2_tiers
    );
    assert!(summary
        .rows
        .iter()
        .any(|r| r.tier == "workstations.pilot.b2"));

    // Every tier of both batches closed with its evidence, and all of it verifies.
    let verified = patchflow_evidence::verify::verify(
        &env.evidence,
        &patchflow_evidence::verify::Scope::everything(),
        &patchflow_evidence::verify::Expectations::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert!(verified.is_clean(), "{:?}", verified.problems);
    let evidence_tiers: BTreeSet<String> = env
        .state
        .list_evidence(cycle())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key.tier().to_owned())
        .collect();
    for t in &b2_tiers {
        assert!(
            evidence_tiers.contains(t),
            "no evidence for {t}: {evidence_tiers:?}"
        );
    }
}

#[tokio::test]
async fn a_later_batch_no_pilot_endpoint_needs_reaches_production_only_after_its_gate() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = generate(FleetSpec {
        endpoints: 20,
        clients: 2,
        seed: 11,
    });
    // Every endpoint's scan lists every patch of the month, except that no pilot endpoint
    // needs the late one: its batch has no pilot, production only its gate.
    let catalog_doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(CATALOG).unwrap()).unwrap();
    let every: Vec<String> = catalog_doc["patches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    for e in &mut doc.endpoints {
        let pilot = e.ring.is_some_and(|r| r.is_pilot());
        e.applicable = Some(
            every
                .iter()
                .filter(|p| !(pilot && p.as_str() == LATE))
                .cloned()
                .collect(),
        );
    }
    let inventory_path = dir.path().join("inventory.json");
    std::fs::write(&inventory_path, serde_json::to_string(&doc).unwrap()).unwrap();
    let spec = SimulateSpec {
        inventory: inventory_path.clone(),
        catalog: CATALOG.into(),
        cycle: cycle(),
        failure_rate: 0.0,
        seed: 7,
        out: dir.path().to_owned(),
        policy: Policy::default(),
        engineer_response: Duration::hours(20),
        days: 30,
        deliver_twice: false,
    };
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let queues = SqliteQueues::in_memory(clock.clone(), 3).unwrap();
    let evidence = FsEvidenceStore::open(dir.path().join("evidence")).unwrap();
    let consumer = queues.clone();
    let env: Env = sim_env(
        SqliteState::in_memory().unwrap(),
        queues,
        evidence,
        clock.clone(),
        &spec,
    );
    let inventory = FileInventory::new(&inventory_path);
    let catalog = FileCatalog::new(CATALOG.to_owned());
    let opts = PumpOptions::default();
    let late = PatchId::parse(LATE).unwrap();
    let release = Release::of(cycle(), &spec.policy, None);
    clock.set(
        release.released_at + Duration::minutes(i64::from(60 - release.released_at.minute()) % 60),
    );
    let ws_pilot = TierId::parse("workstations.pilot").unwrap();
    let mut pilot_deployed = None;
    let mut approved = false;
    // The batch's production tiers without a pilot, with their gates.
    let mut gated: Vec<(TierId, DateTime<Utc>)> = Vec::new();
    let mut waited = 0;
    for hour in 0..=spec.days * 24 {
        let now = clock.now();
        if hour == 0 || now.hour() == 6 {
            patchflow_pipeline::sync::inventory_sync(&env, &inventory, &catalog, now)
                .await
                .unwrap();
        }
        patchflow_pipeline::tick::tick(&env, now).await.unwrap();
        drain_all(&env, &consumer, now, opts).await.unwrap();
        engineer(
            &env.state,
            &env.queues,
            cycle(),
            now,
            spec.engineer_response,
        )
        .await
        .unwrap();
        let pilot = env.state.get_tier(cycle(), &ws_pilot).await.unwrap();
        if pilot_deployed.is_none() && pilot.is_some_and(|t| t.state != TierState::Scheduled) {
            pilot_deployed = Some(now);
        }
        if !approved && pilot_deployed.is_some_and(|d| now >= d + Duration::days(1)) {
            let sign_off = sign("alice", "cab_approved", now).unwrap();
            decide_patch_in_batch(
                &env.state,
                &env.queues,
                cycle(),
                &late,
                EngineerDecision::Approve(sign_off),
            )
            .await
            .unwrap();
            approved = true;
        }
        drain_all(&env, &consumer, now, opts).await.unwrap();
        if approved && gated.is_empty() {
            for t in env.state.list_tiers(cycle()).await.unwrap() {
                if batch_of(&t.tier) != 2 {
                    continue;
                }
                let plan = plan_of(&env, t.tier.as_str()).await;
                assert!(
                    plan.wave == Wave::Production || plan.tier.as_str().starts_with("servers."),
                    "no workstation pilot needs {LATE}: {}",
                    plan.tier
                );
                if let (None, Some(gate)) = (&plan.pilot, plan.gate) {
                    assert_eq!(plan.wave, Wave::Production);
                    gated.push((plan.tier.clone(), gate));
                }
            }
        }
        // Before its gate, such a tier stays scheduled, says why, and its endpoints have
        // neither the approval nor an install of the late patch.
        for (tier, gate) in &gated {
            if clock.now() >= *gate {
                continue;
            }
            waited += 1;
            let record = env.state.get_tier(cycle(), tier).await.unwrap().unwrap();
            assert_eq!(record.state, TierState::Scheduled, "{tier} before {gate}");
            let plan = plan_of(&env, tier.as_str()).await;
            let words = plan.last_decision.unwrap_or_default();
            assert!(
                words.is_empty() || words.contains("no pilot endpoint needed"),
                "{tier}: {words}"
            );
        }
        let deployed = !gated.is_empty()
            && env
                .state
                .list_tiers(cycle())
                .await
                .unwrap()
                .iter()
                .all(|t| {
                    !gated.iter().any(|(g, _)| *g == t.tier) || t.state != TierState::Scheduled
                });
        if deployed
            && all_runs(&env)
                .await
                .iter()
                .any(|r| r.install_sent_at.is_some() && gated.iter().any(|(g, _)| *g == r.tier))
        {
            break;
        }
        clock.advance(Duration::hours(1));
    }
    assert!(approved, "the workstation pilot deployed");
    let ws_production = TierId::parse("workstations.production.b2").unwrap();
    assert!(gated.iter().any(|(t, _)| *t == ws_production), "{gated:?}");
    assert!(waited > 24, "the gated tiers waited: {waited} hour(s)");
    // After its gate it deployed; no install or approval of the late patch reached its
    // endpoints before the gate.
    let runs = all_runs(&env).await;
    let mut installed = 0;
    for (at, endpoint, key, patches) in installs(&env) {
        if !patches.contains(&late) {
            continue;
        }
        assert!(key.contains("/b2/"), "a cycle tier carried {LATE}: {key}");
        let run = runs
            .iter()
            .find(|r| r.endpoint.as_str() == endpoint && batch_of(&r.tier) == 2)
            .unwrap();
        if let Some((_, gate)) = gated.iter().find(|(t, _)| *t == run.tier) {
            assert!(
                at >= *gate,
                "{endpoint} installed {LATE} at {at}, before {gate}"
            );
            installed += 1;
        }
    }
    assert!(installed > 0, "production installed it after its gate");
    let clients: BTreeSet<_> = runs.iter().map(|r| r.client.clone()).collect();
    let mut written = 0;
    for client in &clients {
        for c in records::rmm_confirmations(&env.state, cycle(), client)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.patch == late && c.decision.starts_with("approved"))
        {
            let Some(tier) = &c.tier else { continue };
            if let Some((_, gate)) = gated.iter().find(|(t, _)| t == tier) {
                assert!(c.confirmed_at >= *gate, "{c:?} before {gate}");
                written += 1;
            }
        }
    }
    assert!(
        written > 0,
        "the approval was written for production after its gate"
    );
    for stage in Stage::ALL {
        assert!(
            consumer.dead_letters(stage).await.unwrap().is_empty(),
            "{stage} dead letters"
        );
    }
}
