//! A cycle opens a client at a time: each client planned alone with the fleet's pilots gets,
//! endpoint for endpoint, the plan the whole fleet's plan gives it.

use std::collections::BTreeMap;

use patchflow_core::contract::{catalog_from_doc, inventory_from_doc, CatalogDoc, InventoryDoc};
use patchflow_core::model::EndpointKind;
use patchflow_core::plan::{fleet_pilots, plan, plan_with, Release};
use patchflow_core::policy::Policy;
use patchflow_core::rules::waves::Wave;
use patchflow_sim::fleet::{generate, FleetSpec};

const CATALOG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../functions/cli/demo/catalog-2026-12.json"
);

fn by_client(doc: &InventoryDoc) -> BTreeMap<String, InventoryDoc> {
    let mut out: BTreeMap<String, InventoryDoc> = BTreeMap::new();
    for e in &doc.endpoints {
        out.entry(e.client.clone())
            .or_insert_with(|| InventoryDoc {
                clients: doc
                    .clients
                    .iter()
                    .filter(|c| c.id == e.client)
                    .cloned()
                    .collect(),
                endpoints: Vec::new(),
            })
            .endpoints
            .push(e.clone());
    }
    out
}

/// Plans the fleet whole and a client at a time; returns how many clients' production gate their
/// own pilots alone would have set otherwise.
fn compare(doc: &InventoryDoc, what: &str) -> usize {
    let text = std::fs::read_to_string(CATALOG).unwrap();
    let catalog_doc: CatalogDoc = serde_json::from_str(&text).unwrap();
    let catalog = catalog_from_doc("catalog", catalog_doc).unwrap();
    let policy = Policy::default();
    let release = Release::of("2026-12".parse().unwrap(), &policy, None);
    let whole_inventory = inventory_from_doc("fleet", doc.clone()).unwrap();
    let whole = plan(&whole_inventory, &catalog, release, &policy);
    let fleet = fleet_pilots(&whole_inventory, &catalog, release, &policy);
    assert!(fleet.workstation_pilot_end.is_some(), "{what}: no pilots");
    let mut planned = 0;
    let mut alone_differs = 0;
    for (client, part) in by_client(doc) {
        let inventory = inventory_from_doc(&client, part).unwrap();
        let alone = plan_with(&inventory, &catalog, release, &policy, Some(fleet));
        for p in &alone.endpoints {
            let w = whole.endpoint(p.id.as_str()).unwrap();
            assert_eq!(p, w, "{what}: {} of {client}", p.id);
            planned += 1;
        }
        if alone.gates.workstations.is_some() {
            assert_eq!(
                alone.gates.workstations, whole.gates.workstations,
                "{what}: {client}"
            );
        }
        for (c, g) in &alone.gates.servers {
            assert!(
                whole.gates.servers.contains(&(c.clone(), *g)),
                "{what}: {client}"
            );
        }
        // Without the fleet's pilots, a client's own pilots set its production gate.
        if plan(&inventory, &catalog, release, &policy)
            .gates
            .workstations
            != alone.gates.workstations
        {
            alone_differs += 1;
        }
    }
    assert_eq!(planned, whole.endpoints.len(), "{what}");
    alone_differs
}

#[test]
fn each_client_planned_alone_with_the_fleets_pilots_gets_the_fleets_plan() {
    let mut alone_differs = 0;
    for seed in [1, 7, 42] {
        let mut doc = generate(FleetSpec {
            endpoints: 3_000,
            clients: 30,
            seed,
        });
        alone_differs += compare(&doc, &format!("seed {seed}"));
        // The pilot workstations whose windows end last made up to date (their scans need none
        // of the catalog): the fleet's gate comes from the pilots that install, not from them.
        let inventory = inventory_from_doc("fleet", doc.clone()).unwrap();
        let text = std::fs::read_to_string(CATALOG).unwrap();
        let catalog = catalog_from_doc("catalog", serde_json::from_str(&text).unwrap()).unwrap();
        let policy = Policy::default();
        let release = Release::of("2026-12".parse().unwrap(), &policy, None);
        let whole = plan(&inventory, &catalog, release, &policy);
        let pilots: Vec<_> = whole
            .endpoints
            .iter()
            .filter(|p| p.wave == Some(Wave::Pilot) && p.kind == EndpointKind::Workstation)
            .filter_map(|p| Some((p.install?.window.end, p.id.to_string())))
            .collect();
        let end = pilots.iter().map(|(end, _)| *end).max().unwrap();
        let last: Vec<&String> = pilots
            .iter()
            .filter(|(e, _)| *e == end)
            .map(|(_, id)| id)
            .collect();
        let before = fleet_pilots(&inventory, &catalog, release, &policy);
        for e in doc.endpoints.iter_mut().filter(|e| last.contains(&&e.id)) {
            e.applicable = Some(Vec::new());
        }
        let after = fleet_pilots(
            &inventory_from_doc("fleet", doc.clone()).unwrap(),
            &catalog,
            release,
            &policy,
        );
        assert!(
            after.workstation_pilot_end < before.workstation_pilot_end,
            "seed {seed}"
        );
        alone_differs += compare(
            &doc,
            &format!("seed {seed}, {} last pilots up to date", last.len()),
        );
    }
    assert!(
        alone_differs > 0,
        "no client's own pilots differ from the fleet's"
    );
}
