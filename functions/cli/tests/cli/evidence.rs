//! The evidence a simulated cycle leaves: every closed tier's bundle per client, the cycle's
//! roll-up, each client's manifests in one unbroken chain, and the 3.14.1 clocks per flaw.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::helpers::small_fleet;
use crate::simulate::simulate;

fn simulated() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let inventory = tmp.path().join("fleet.json");
    small_fleet(&inventory);
    let out = tmp.path().join("cycle");
    simulate(&inventory, &out).assert().success();
    (tmp, out)
}

fn json(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every bundle folder under `evidence/2026-12`: (client, bundle) -> its folder.
fn bundles(out: &Path) -> BTreeMap<(String, String), PathBuf> {
    let mut found = BTreeMap::new();
    for client in std::fs::read_dir(out.join("evidence/2026-12")).unwrap() {
        let client = client.unwrap();
        for bundle in std::fs::read_dir(client.path()).unwrap() {
            let bundle = bundle.unwrap();
            found.insert(
                (
                    client.file_name().to_string_lossy().into_owned(),
                    bundle.file_name().to_string_lossy().into_owned(),
                ),
                bundle.path(),
            );
        }
    }
    found
}

#[test]
fn a_simulated_cycle_leaves_chained_bundles_a_roll_up_and_the_3_14_1_clocks() {
    let (_tmp, out) = simulated();
    let bundles = bundles(&out);
    let clients: std::collections::BTreeSet<&String> = bundles.keys().map(|(c, _)| c).collect();
    assert_eq!(clients.len(), 2, "{bundles:?}");

    // Each client's manifests: sequences 1..n, each linking to the one before by key and hash.
    let mut chains: BTreeMap<String, Vec<(u64, String, Value)>> = BTreeMap::new();
    for ((client, bundle), dir) in &bundles {
        let manifest = json(&dir.join("manifest.json"));
        assert_eq!(manifest["bundle"], bundle.as_str());
        let names: Vec<&str> = manifest["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        let expected: &[&str] = if bundle == "cycle" {
            &["record.json", "report.html", "summary.png", "sla.csv"]
        } else {
            &[
                "record.json",
                "report.html",
                "summary.png",
                "outcomes.csv",
                "sla.csv",
            ]
        };
        assert_eq!(names, expected, "{bundle}");
        // Every artifact's hash and size as listed.
        for a in manifest["artifacts"].as_array().unwrap() {
            let bytes = std::fs::read(dir.join(a["name"].as_str().unwrap())).unwrap();
            assert_eq!(a["sha256"], hex(&bytes).as_str());
            assert_eq!(a["size"], bytes.len() as u64);
            assert_eq!(a["retention"]["mode"], "COMPLIANCE");
        }
        let key = format!("evidence/2026-12/{client}/{bundle}/manifest.json");
        chains.entry(client.clone()).or_default().push((
            manifest["sequence"].as_u64().unwrap(),
            key,
            manifest,
        ));
    }
    for (client, mut chain) in chains {
        chain.sort_by_key(|(seq, _, _)| *seq);
        let seqs: Vec<u64> = chain.iter().map(|(s, _, _)| *s).collect();
        assert_eq!(
            seqs,
            (1..=chain.len() as u64).collect::<Vec<_>>(),
            "{client}"
        );
        assert!(chain[0].2["previous"].is_null());
        for pair in chain.windows(2) {
            let (prev_seq, prev_key, _) = &pair[0];
            let link = &pair[1].2["previous"];
            assert_eq!(link["key"], prev_key.as_str(), "{client}");
            assert_eq!(link["sequence"], *prev_seq);
            let stored = std::fs::read(out.join(prev_key)).unwrap();
            assert_eq!(link["sha256"], hex(&stored).as_str(), "{client}");
        }
        // The roll-up closes the cycle: the last link of the client's chain.
        let (_, last_key, last) = chain.last().unwrap();
        assert!(last_key.ends_with("/cycle/manifest.json"), "{last_key}");
        let roll_up = json(&out.join(last_key.replace("manifest.json", "record.json")));
        let tiers = roll_up["tiers"].as_array().unwrap();
        assert_eq!(tiers.len(), chain.len() - 1, "{client}");
        for t in tiers {
            let stored = std::fs::read(out.join(t["manifest"].as_str().unwrap())).unwrap();
            assert_eq!(t["manifest_sha256"], hex(&stored).as_str());
        }
        assert_eq!(last["bundle"], "cycle");
    }

    // The clocks: every flaw identified when the cycle opened, reported when its approval was
    // recorded; the declined driver is no flaw; an auto-approved patch is corrected at the
    // endpoint's confirmed install; a patch held for review is not corrected.
    let (_, dir) = bundles
        .iter()
        .find(|((_, b), _)| b == "workstations.pilot")
        .unwrap();
    let record = json(&dir.join("record.json"));
    let flaws = record["sla"]["flaws"].as_array().unwrap();
    let outcomes = record["outcomes"].as_array().unwrap();
    assert!(!outcomes.is_empty());
    assert_eq!(flaws.len(), outcomes.len() * 11, "12 patches, 1 declined");
    assert!(flaws.iter().all(|f| f["patch"] != "KB5071007"));
    let approvals = record["approvals"].as_array().unwrap();
    let approval = |id: &str| approvals.iter().find(|a| a["patch"] == id).unwrap();
    for f in flaws {
        assert_eq!(f["identify"]["at"], record["opened_at"]);
        assert_eq!(
            f["report"]["at"],
            approval(f["patch"].as_str().unwrap())["recorded_at"]
        );
        let endpoint = outcomes
            .iter()
            .find(|o| o["endpoint"] == f["endpoint"])
            .unwrap();
        match f["patch"].as_str().unwrap() {
            "KB5071001" => {
                assert_eq!(f["correct"]["at"], endpoint["installed_at"]);
                assert_eq!(f["correct"]["status"], "met");
            }
            "ADOBE-APSB26-88" => {
                assert!(f["correct"]["at"].is_null());
                assert_ne!(f["correct"]["status"], "met");
            }
            _ => {}
        }
    }
    let tallies = record["sla"]["tallies"].as_array().unwrap();
    let letters: Vec<&str> = tallies
        .iter()
        .map(|t| t["letter"].as_str().unwrap())
        .collect();
    assert_eq!(letters, ["b", "d", "f"]);
    // Identified within 24 hours of release, but for the patch released five days before Patch
    // Tuesday: the cycle's sync identified it late, and the record says so.
    for f in flaws {
        let expected = if f["patch"] == "ZOOM-6.7.2" {
            "breached"
        } else {
            "met"
        };
        assert_eq!(f["identify"]["status"], expected, "{f}");
    }
    let zoom = flaws.iter().filter(|f| f["patch"] == "ZOOM-6.7.2").count() as u64;
    assert_eq!(tallies[0]["breached"], zoom);
    let breaches = record["sla"]["breaches"].as_array().unwrap();
    assert!(breaches
        .iter()
        .any(|b| b["letter"] == "b" && b["patch"] == "ZOOM-6.7.2" && b["late_by_hours"] == 98));

    // The report a person reads has every section, and the files are read-only.
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for id in [
        "summary",
        "outcomes",
        "reboots",
        "approvals",
        "exceptions",
        "excluded",
        "tickets",
        "sla",
        "integrity",
    ] {
        assert!(html.contains(&format!("<section id=\"{id}\"")), "{id}");
    }
    assert!(std::fs::metadata(dir.join("report.html"))
        .unwrap()
        .permissions()
        .readonly());
}

#[test]
fn a_simulated_cycles_evidence_verifies_and_a_tier_manifest_replaced_after_the_roll_up_does_not() {
    let (_tmp, out) = simulated();
    crate::helpers::patchflow()
        .args(["audit", "verify"])
        .arg(out.join("evidence"))
        .assert()
        .success()
        .stdout(predicates::str::contains("problems: none"));

    // GIVEN a tier's manifest rewritten, with the store's own record of it rewritten to match
    // (what someone with write access to a local folder could do)
    let (_, dir) = bundles(&out)
        .into_iter()
        .find(|((_, b), _)| b == "workstations.pilot")
        .unwrap();
    let manifest = dir.join("manifest.json");
    let rel = manifest.strip_prefix(&out).unwrap().to_owned();
    let meta = out.join(".meta").join(format!("{}.json", rel.display()));
    for f in [&manifest, &meta] {
        let mut perms = std::fs::metadata(f).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(f, perms).unwrap();
    }
    let mut m = json(&manifest);
    m["closed_at"] = "2026-12-11T10:00:00Z".into();
    let bytes = serde_json::to_vec_pretty(&m).unwrap();
    std::fs::write(&manifest, &bytes).unwrap();
    let mut record = json(&meta);
    record["sha256"] = hex(&bytes).into();
    record["size"] = (bytes.len() as u64).into();
    std::fs::write(&meta, serde_json::to_vec_pretty(&record).unwrap()).unwrap();

    // THEN verification fails, and the cycle roll-up's pin on it is named
    crate::helpers::patchflow()
        .args(["audit", "verify"])
        .arg(out.join("evidence"))
        .assert()
        .code(1)
        .stdout(predicates::str::contains(
            "field `tiers[workstations.pilot].manifest_sha256`",
        ));
}

/// A simulated cycle of a fleet whose endpoints carry their RMM patch scans: the evidence counts
/// a flaw only where the patch applies, and counts every needed update older than the catalog.
#[test]
fn a_scanned_fleets_flaws_are_exactly_the_patches_that_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let inventory = tmp.path().join("fleet.json");
    crate::helpers::patchflow()
        .args([
            "fleet",
            "generate",
            "--endpoints",
            "60",
            "--clients",
            "2",
            "--seed",
            "5",
        ])
        .arg("--catalog")
        .arg(crate::helpers::demo_catalog())
        .arg("--out")
        .arg(&inventory)
        .assert()
        .success();
    let out = tmp.path().join("cycle");
    simulate(&inventory, &out).assert().success();

    let fleet = json(&inventory);
    let catalog = json(&crate::helpers::demo_catalog());
    let in_catalog: std::collections::BTreeSet<&str> = catalog["patches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    // The only declined patch of the demo catalog is its driver.
    let declined = "KB5071007";
    let scans: BTreeMap<&str, Option<Vec<&str>>> = fleet["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let list = e["applicable"]
                .as_array()
                .map(|l| l.iter().map(|p| p.as_str().unwrap()).collect());
            (e["id"].as_str().unwrap(), list)
        })
        .collect();
    let os: BTreeMap<&str, &str> = fleet["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e["os"].as_str().unwrap()))
        .collect();

    let mut flaws: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, (String, String)> = BTreeMap::new();
    for ((_, bundle), dir) in bundles(&out) {
        if bundle == "cycle" {
            continue;
        }
        let record = json(&dir.join("record.json"));
        for f in record["sla"]["flaws"].as_array().unwrap() {
            flaws
                .entry(f["endpoint"].as_str().unwrap().to_owned())
                .or_default()
                .push((
                    f["patch"].as_str().unwrap().to_owned(),
                    f["applicability"].as_str().unwrap().to_owned(),
                ));
        }
        for o in record["outcomes"].as_array().unwrap() {
            outcomes.insert(
                o["endpoint"].as_str().unwrap().to_owned(),
                (
                    o["status"].as_str().unwrap().to_owned(),
                    o["applicability"].as_str().unwrap().to_owned(),
                ),
            );
        }
    }
    assert!(!outcomes.is_empty());
    let (mut reported, mut older, mut up_to_date) = (0, 0, 0);
    for (endpoint, (status, basis)) in &outcomes {
        let got: Vec<&str> = flaws
            .get(endpoint)
            .map(|v| v.iter().map(|(p, _)| p.as_str()).collect())
            .unwrap_or_default();
        match &scans[endpoint.as_str()] {
            Some(list) => {
                reported += 1;
                assert_eq!(basis, "reported", "{endpoint}");
                // Exactly its scan's needed updates, less the declined driver: this month's and
                // the older ones alike.
                let mut want: Vec<&str> = list.iter().copied().filter(|p| *p != declined).collect();
                want.sort_unstable();
                let mut got = got.clone();
                got.sort_unstable();
                assert_eq!(got, want, "{endpoint}");
                older += list.iter().filter(|p| !in_catalog.contains(*p)).count();
                if status == "up_to_date" {
                    up_to_date += 1;
                }
            }
            None => {
                // No patch inventory: never counted compliant, its OS decides for OS updates.
                assert_eq!(basis, "products", "{endpoint}");
                assert_ne!(status, "up_to_date", "{endpoint}");
                assert!(!got.is_empty(), "{endpoint}");
            }
        }
        // Nothing is a flaw where it cannot apply: no server update on a workstation's OS.
        let o = os[endpoint.as_str()];
        if o.contains("Windows 1") {
            assert!(
                !got.contains(&"KB5071003") && !got.contains(&"KB5071002"),
                "{endpoint} {o}: {got:?}"
            );
        } else {
            assert!(!got.contains(&"KB5071001"), "{endpoint} {o}: {got:?}");
        }
        for (_, b) in flaws.get(endpoint).into_iter().flatten() {
            assert_eq!(b, basis, "{endpoint}");
        }
    }
    assert!(reported > 0, "no scanned endpoint in scope");
    assert!(
        older > 0,
        "no older missing update drawn: pick another seed"
    );
    assert!(
        up_to_date > 0,
        "no up-to-date endpoint drawn: pick another seed"
    );
}
