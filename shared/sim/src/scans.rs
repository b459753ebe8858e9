//! Seeded RMM patch scans for a generated fleet: each endpoint's operating system, and the
//! updates its last scan reports as needed (`applicable`, with what the RMM knows of each in
//! `needed`), as ConnectWise Automate's patch inventory would give them. A patch naming an
//! operating system among its products is needed only where it matches the endpoint's OS; other
//! patches (Office, SQL Server, third-party software) on most endpoints; some updates are
//! already installed; a few endpoints still miss an older update than the month's; a few have no
//! patch inventory at all. The same seed always gives the same scans, and the fleet itself is
//! left as it was (the scans draw from their own stream per endpoint).

use patchflow_core::contract::{CatalogDoc, EndpointDoc, InventoryDoc, NeededUpdateDoc};
use patchflow_core::model::{EndpointKind, Severity};
use patchflow_core::rules::applicability::{matches, names_os};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

const SERVER_OS: &[(&str, u32)] = &[
    ("Microsoft Windows Server 2022 Standard x64", 45),
    ("Microsoft Windows Server 2019 Standard x64", 30),
    ("Microsoft Windows Server 2016 Standard x64", 15),
    ("Microsoft Windows Server 2025 Datacenter x64", 10),
];

const WORKSTATION_OS: &[(&str, u32)] = &[
    ("Microsoft Windows 11 Pro x64", 70),
    ("Microsoft Windows 10 Pro x64", 30),
];

/// How the scans are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScanSpec {
    /// Seed.
    pub seed: u64,
    /// Share of endpoints with no patch inventory (`applicable` unknown).
    pub no_inventory: f64,
    /// Share of needed updates already installed by the scan's time.
    pub installed: f64,
    /// Share of endpoints that still miss an update older than the month's catalog.
    pub older_missing: f64,
}

impl ScanSpec {
    /// The defaults `fleet generate --catalog` uses.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            no_inventory: 0.04,
            installed: 0.08,
            older_missing: 0.06,
        }
    }
}

/// An update older than any month's catalog, missing where `older_missing` draws it: the
/// previous month's cumulative update for the endpoint's kind.
fn older(kind: EndpointKind) -> NeededUpdateDoc {
    let (id, title) = match kind {
        EndpointKind::Server => (
            "KB5066001",
            "2026-11 Cumulative Update for Windows Server (missed)",
        ),
        EndpointKind::Workstation => (
            "KB5066002",
            "2026-11 Cumulative Update for Windows (missed)",
        ),
    };
    NeededUpdateDoc {
        id: id.to_owned(),
        title: Some(title.to_owned()),
        severity: Some(Severity::Critical),
        released: Some("2026-11-10T18:00:00Z".to_owned()),
        failed: None,
    }
}

fn rng_for(seed: u64, endpoint: &str) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(b"scan\0");
    h.update(endpoint.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 32];
    b.copy_from_slice(&d);
    ChaCha8Rng::from_seed(b)
}

fn pick<'a>(rng: &mut ChaCha8Rng, items: &'a [(&'a str, u32)]) -> &'a str {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut n = rng.gen_range(0..total.max(1));
    for (item, w) in items {
        if n < *w {
            return item;
        }
        n -= w;
    }
    items.first().map_or("", |(i, _)| i)
}

/// One endpoint's scan against the catalog.
pub fn scan(doc: &mut EndpointDoc, catalog: &CatalogDoc, spec: &ScanSpec) {
    let mut rng = rng_for(spec.seed, &doc.id);
    let os = match doc.kind {
        EndpointKind::Server => pick(&mut rng, SERVER_OS),
        EndpointKind::Workstation => pick(&mut rng, WORKSTATION_OS),
    };
    doc.os = Some(os.to_owned());
    if rng.gen_bool(spec.no_inventory) {
        doc.applicable = None;
        doc.needed = None;
        return;
    }
    let mut needed = Vec::new();
    for p in &catalog.patches {
        let products = p.products.as_deref().unwrap_or_default();
        let os_products: Vec<&String> = products.iter().filter(|n| names_os(n)).collect();
        let wanted = if os_products.is_empty() {
            // Office, SQL Server, a browser: present on most endpoints, not all.
            rng.gen_bool(0.8)
        } else {
            os_products.iter().any(|n| matches(n, os))
        };
        if !wanted || rng.gen_bool(spec.installed) {
            continue;
        }
        needed.push(NeededUpdateDoc {
            id: p.id.clone(),
            title: p.title.clone(),
            severity: p.severity,
            released: p.released.clone(),
            failed: None,
        });
    }
    if rng.gen_bool(spec.older_missing) {
        needed.push(older(doc.kind));
    }
    needed.sort_by(|a, b| a.id.cmp(&b.id));
    doc.applicable = Some(needed.iter().map(|n| n.id.clone()).collect());
    doc.needed = Some(needed);
}

/// Every endpoint's scan against the catalog.
pub fn scan_fleet(doc: &mut InventoryDoc, catalog: &CatalogDoc, spec: &ScanSpec) {
    for e in &mut doc.endpoints {
        scan(e, catalog, spec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{generate, FleetSpec};
    use patchflow_core::contract::{catalog_from_doc, inventory_from_doc};

    fn catalog() -> CatalogDoc {
        serde_json::from_str(
            r#"{"patches": [
              {"id": "KB1", "vendor": "microsoft", "classification": "security", "severity": "critical",
               "products": ["Windows 11 Version 24H2 for x64-based Systems"]},
              {"id": "KB2", "vendor": "microsoft", "classification": "security", "severity": "important",
               "products": ["Windows Server 2022", "Windows Server 2022 (Server Core installation)"]},
              {"id": "KB3", "vendor": "microsoft", "classification": "security", "severity": "critical",
               "products": ["Windows Server 2012 R2"]},
              {"id": "CHROME-1", "vendor": "google", "classification": "security", "severity": "critical"}
            ]}"#,
        )
        .unwrap()
    }

    #[test]
    fn scans_follow_each_endpoints_os_and_are_repeatable() {
        let spec = FleetSpec {
            endpoints: 400,
            clients: 6,
            seed: 9,
        };
        let plain = generate(spec);
        let mut a = plain.clone();
        scan_fleet(&mut a, &catalog(), &ScanSpec::new(9));
        let mut b = plain.clone();
        scan_fleet(&mut b, &catalog(), &ScanSpec::new(9));
        assert_eq!(a, b);
        // The fleet itself is unchanged: the same endpoints with the same grouping.
        for (x, y) in plain.endpoints.iter().zip(&a.endpoints) {
            assert_eq!(
                (&x.id, x.kind, x.ring, x.track),
                (&y.id, y.kind, y.ring, y.track)
            );
        }
        let mut unknown = 0;
        for e in &a.endpoints {
            let os = e.os.as_deref().unwrap();
            let Some(list) = &e.applicable else {
                unknown += 1;
                continue;
            };
            // Nobody runs Server 2012 R2 here: its rollup is never needed.
            assert!(!list.iter().any(|p| p == "KB3"), "{}", e.id);
            if list.iter().any(|p| p == "KB1") {
                assert!(os.contains("Windows 11"), "{} {os}", e.id);
            }
            if list.iter().any(|p| p == "KB2") {
                assert!(os.contains("Server 2022"), "{} {os}", e.id);
            }
            let needed: Vec<&str> = e
                .needed
                .as_ref()
                .unwrap()
                .iter()
                .map(|n| n.id.as_str())
                .collect();
            assert_eq!(needed, list.iter().map(String::as_str).collect::<Vec<_>>());
        }
        assert!(unknown > 0 && unknown < 60, "{unknown}");
        assert!(a.endpoints.iter().any(|e| e
            .applicable
            .as_ref()
            .is_some_and(|l| l.iter().any(|p| p == "KB5066002"))));
        // Still valid input for the contract.
        inventory_from_doc("scanned", a).unwrap();
        catalog_from_doc("catalog", catalog()).unwrap();
    }
}
