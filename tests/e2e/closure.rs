//! A tier's closure through the pipeline when a delivery dies half-way: the redelivery finds the
//! compliance ticket's summary attached and the RMM's closure recorded, and adds neither again;
//! a fleet-wide tier is archived a client at a time, each part reading only its client's runs.

use std::sync::Arc;

use chrono::{Duration, Utc};
use patchflow_cli::simulate::{run_cycle, run_cycle_measured, sim_env, SimulateSpec};
use patchflow_core::ids::{ClientId, CycleId};
use patchflow_core::policy::Policy;
use patchflow_core::ports::clock::ManualClock;
use patchflow_core::ports::evidence::{EvidenceKey, EvidenceStore, Sha256Digest};
use patchflow_core::ports::queue::Stage;
use patchflow_local::evidence::FsEvidenceStore;
use patchflow_local::queue::SqliteQueues;
use patchflow_local::state::SqliteState;
use patchflow_pipeline::pump::Work;
use patchflow_sim::connectors::SimPsa;
use patchflow_sim::fleet::{generate, FleetSpec};

const CATALOG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../functions/cli/demo/catalog-2026-12.json"
);

#[tokio::test]
async fn a_redelivered_archive_attaches_no_second_summary_and_records_no_second_closure() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.json");
    let doc = generate(FleetSpec {
        endpoints: 40,
        clients: 3,
        seed: 5,
    });
    std::fs::write(&inventory, serde_json::to_string(&doc).unwrap()).unwrap();
    let cycle: CycleId = "2026-12".parse().unwrap();
    let spec = SimulateSpec {
        inventory: inventory.clone(),
        catalog: CATALOG.into(),
        cycle,
        failure_rate: 0.1,
        seed: 7,
        out: dir.path().to_owned(),
        policy: Policy::default(),
        engineer_response: Duration::hours(20),
        days: 40,
        deliver_twice: false,
    };
    let clock = Arc::new(ManualClock::new(Utc::now()));
    // Each ticket's first close fails, so an archive may take a delivery per ticket of its tier.
    let queues = SqliteQueues::in_memory(clock.clone(), 50).unwrap();
    let consumer = queues.clone();
    let mut env = sim_env(
        SqliteState::in_memory().unwrap(),
        queues,
        FsEvidenceStore::open(dir.path().join("evidence")).unwrap(),
        clock.clone(),
        &spec,
    );
    // Every ticket's first close times out: each tier's archive dies after attaching, and its
    // redelivery goes through the attachment and the RMM closure again.
    env.psa = SimPsa::with_flaky_closes();
    let report = run_cycle(&env, &consumer, &clock, &spec, String::new())
        .await
        .unwrap();
    assert!(report.all_closed, "{:#?}", report.summary);
    assert!(report.dead_letters.is_empty(), "{:?}", report.dead_letters);

    let compliance: Vec<_> = env
        .psa
        .tickets()
        .into_iter()
        .filter(|t| t.external_ref.starts_with("2026-12/compliance/"))
        .collect();
    assert!(compliance.len() >= 4, "{compliance:?}");
    let attachments = env.psa.attachments();
    assert_eq!(
        attachments.len(),
        compliance.len(),
        "one summary per ticket"
    );
    assert!(
        env.psa.attachment_duplicates() >= compliance.len(),
        "every compliance ticket's archive was redelivered after its attachment"
    );
    let closures = env.rmm.closures();
    assert_eq!(
        closures.len(),
        compliance.len(),
        "one RMM closure per client and tier"
    );
    for t in &compliance {
        assert!(t.closed, "{}", t.external_ref);
        let (tier, client) = t
            .external_ref
            .strip_prefix("2026-12/compliance/")
            .and_then(|r| r.rsplit_once('/'))
            .unwrap();
        let mine: Vec<_> = attachments.iter().filter(|a| a.ticket == t.id).collect();
        assert_eq!(mine.len(), 1, "{}", t.external_ref);
        let key = EvidenceKey::new(
            cycle,
            &ClientId::parse(client).unwrap(),
            tier,
            "summary.png",
        )
        .unwrap();
        let (png, _) = env.evidence.get(&key).await.unwrap();
        assert_eq!(
            mine[0].sha256,
            Sha256Digest::of(&png).to_hex(),
            "{}: the stored image",
            t.external_ref
        );
        assert!(
            closures.contains_key(&format!("2026-12/closure/{tier}/{client}")),
            "{}",
            t.external_ref
        );
    }
}

/// One simulated cycle of `clients` clients of `per_client` endpoints each; the largest single
/// delivery of the evidence stage, and the compliance tickets the PSA holds.
async fn archive_of(clients: usize, per_client: usize, flaky: bool) -> (Work, usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.json");
    let doc = generate(FleetSpec {
        endpoints: clients * per_client,
        clients,
        seed: 11,
    });
    std::fs::write(&inventory, serde_json::to_string(&doc).unwrap()).unwrap();
    let spec = SimulateSpec {
        inventory,
        catalog: CATALOG.into(),
        cycle: "2026-12".parse().unwrap(),
        failure_rate: 0.05,
        seed: 7,
        out: dir.path().to_owned(),
        policy: Policy::default(),
        engineer_response: Duration::hours(4),
        days: 40,
        deliver_twice: false,
    };
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let queues = SqliteQueues::in_memory(clock.clone(), 50).unwrap();
    let consumer = queues.clone();
    let mut env = sim_env(
        SqliteState::in_memory().unwrap(),
        queues,
        FsEvidenceStore::open(dir.path().join("evidence")).unwrap(),
        clock.clone(),
        &spec,
    );
    if flaky {
        env.psa = SimPsa::with_flaky_closes();
    }
    let report = run_cycle_measured(&env, &consumer, &clock, &spec, String::new(), &|| {
        env.state.work()
    })
    .await
    .unwrap();
    assert!(report.all_closed, "{:#?}", report.summary);
    assert!(report.dead_letters.is_empty(), "{:?}", report.dead_letters);
    let compliance: Vec<_> = env
        .psa
        .tickets()
        .into_iter()
        .filter(|t| t.external_ref.starts_with("2026-12/compliance/"))
        .collect();
    assert!(compliance.iter().all(|t| t.closed), "{compliance:?}");
    // Each client's part attached its summary once, and recorded its closure once.
    assert_eq!(env.psa.attachments().len(), compliance.len());
    assert_eq!(env.rmm.closures().len(), compliance.len());
    // One roll-up per client, each written once.
    let rollups = env
        .evidence
        .list(&patchflow_core::ports::evidence::EvidencePrefix {
            cycle: spec.cycle,
            client: None,
            tier: None,
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.tier() == patchflow_evidence::CYCLE_BUNDLE && o.name() == "manifest.json")
        .count();
    (
        report.pump.largest.of(Stage::Evidence),
        compliance.len(),
        rollups,
    )
}

#[tokio::test]
async fn a_fleet_wide_tier_is_archived_a_client_at_a_time_and_no_part_reads_more_as_the_fleet_grows(
) {
    // The same clients' size, twice the clients: the fleet-wide workstation tiers are twice as
    // large, and an archive that read a whole tier would read about twice as much. Each
    // ticket's first close fails in the larger one: the part it dies in is finished by its
    // redelivery.
    let (small, small_tickets, small_rollups) = archive_of(3, 40, false).await;
    let (large, large_tickets, large_rollups) = archive_of(6, 40, true).await;
    assert_eq!(small_rollups, 3);
    assert_eq!(large_rollups, 6);
    assert!(
        large_tickets > small_tickets,
        "{small_tickets} {large_tickets}"
    );
    assert!(
        small.records_read > 40,
        "a part reads its client's runs: {small:?}"
    );
    assert!(
        (large.records_read as f64) <= 1.3 * small.records_read as f64,
        "the evidence stage's largest delivery read {} record(s) at 6 clients, {} at 3",
        large.records_read,
        small.records_read
    );
}
