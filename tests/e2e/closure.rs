//! A tier's closure through the pipeline when a delivery dies half-way: the redelivery finds the
//! compliance ticket's summary attached and the RMM's closure recorded, and adds neither again.

use std::sync::Arc;

use chrono::{Duration, Utc};
use patchflow_cli::simulate::{run_cycle, sim_env, SimulateSpec};
use patchflow_core::ids::{ClientId, CycleId};
use patchflow_core::policy::Policy;
use patchflow_core::ports::clock::ManualClock;
use patchflow_core::ports::evidence::{EvidenceKey, EvidenceStore, Sha256Digest};
use patchflow_local::evidence::FsEvidenceStore;
use patchflow_local::queue::SqliteQueues;
use patchflow_local::state::SqliteState;
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
