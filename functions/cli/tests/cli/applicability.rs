//! The contract's applicability extension: which approved patch each endpoint needs, from its
//! RMM patch scan, else its OS against a patch's products, else assumed. Every expectation below
//! is worked out by hand from `tests/fixtures/inventory-applicability.json` and
//! `catalog-applicability.json`: auto-approved are KB5070001 (Windows 11), KB5070002 (Server
//! 2022), KB5070010 (Server 2012 R2) and KB5070020 (SQL Server: not an OS product); the driver
//! KB5070003 is declined and CHROME-143 held.

use std::fs;

use serde_json::{json, Value};

use crate::helpers::{endpoint, fixture, patchflow, plan_json};

fn plan() -> Value {
    let inv = fixture("inventory-applicability.json");
    let cat = fixture("catalog-applicability.json");
    plan_json(&[
        "--inventory",
        inv.to_str().unwrap(),
        "--catalog",
        cat.to_str().unwrap(),
        "--cycle",
        "2026-12",
    ])
}

fn patches(plan: &Value, id: &str) -> Vec<String> {
    endpoint(plan, id)["patches"]
        .as_array()
        .unwrap_or_else(|| panic!("{id} has no patches array"))
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect()
}

fn approval<'a>(plan: &'a Value, patch: &str) -> &'a Value {
    plan["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["patch"] == patch)
        .unwrap_or_else(|| panic!("no approval for {patch}"))
}

#[test]
fn a_reported_scan_decides_which_approved_patches_apply() {
    let plan = plan();
    let e = endpoint(&plan, "n-ws1");
    assert_eq!(e["applicability"], "reported");
    assert_eq!(e["up_to_date"], false);
    assert_eq!(patches(&plan, "n-ws1"), ["KB5070001"]);
    assert_eq!(e["wave"], "pilot");
    assert!(e["install"]["start"].is_string());
    // The scan is read as a set: the repeated id counts once; the id the catalog lacks is not
    // one of its patches.
    assert_eq!(patches(&plan, "n-ws3"), ["KB5070001"]);
    assert_eq!(endpoint(&plan, "n-ws3")["applicability"], "reported");
}

#[test]
fn a_scanned_endpoint_missing_nothing_approved_is_up_to_date_and_keeps_its_wave() {
    let plan = plan();
    for id in ["n-ws2", "n-ws6"] {
        let e = endpoint(&plan, id);
        assert_eq!(e["up_to_date"], true, "{id}");
        assert_eq!(e["applicability"], "reported", "{id}");
        assert_eq!(e["patches"], json!([]), "{id}");
        assert_eq!(e["wave"], "production", "{id}");
        assert!(e["install"].is_null(), "{id}: {}", e["install"]);
        assert!(e["reboot"].is_null(), "{id}: {}", e["reboot"]);
        assert_eq!(e["scope"], "in_scope", "{id}");
    }
    // n-ws6 needs only the declined driver: a declined patch is not approved, so nothing applies.
    let trace = endpoint(&plan, "n-ws2")["trace"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        trace
            .iter()
            .any(|s| s["node"] == "phase0.inventory_sync" && s["reason"] == "up_to_date"),
        "{trace:?}"
    );
}

#[test]
fn without_a_scan_the_os_decides_for_patches_naming_an_operating_system() {
    let plan = plan();
    // Windows 11 Pro: the Windows 11 update matches; the server updates do not; SQL Server names
    // no OS, so it is assumed to apply.
    let ws4 = endpoint(&plan, "n-ws4");
    assert_eq!(ws4["applicability"], "products");
    assert_eq!(patches(&plan, "n-ws4"), ["KB5070001", "KB5070020"]);
    // Windows 10 Pro: `Windows 11 Version 24H2` does not match it.
    assert_eq!(patches(&plan, "n-ws5"), ["KB5070020"]);
    assert_eq!(endpoint(&plan, "n-ws5")["applicability"], "products");
    // `Windows Server 2022 (Server Core installation)` matches `Microsoft Windows Server 2022
    // Standard x64`; the 2012 R2 rollup does not.
    assert_eq!(patches(&plan, "n-fs1"), ["KB5070002", "KB5070020"]);
    // Never up to date without a scan, even where some approved patch does not apply: the
    // endpoint keeps its windows.
    for id in ["n-ws4", "n-ws5", "n-fs1"] {
        assert_eq!(endpoint(&plan, id)["up_to_date"], false, "{id}");
        assert!(endpoint(&plan, id)["install"]["start"].is_string(), "{id}");
    }
}

#[test]
fn with_nothing_known_every_approved_patch_is_assumed_to_apply() {
    let plan = plan();
    let dc = endpoint(&plan, "n-dc1");
    assert_eq!(dc["applicability"], "assumed");
    assert_eq!(dc["up_to_date"], false);
    assert_eq!(
        patches(&plan, "n-dc1"),
        ["KB5070001", "KB5070002", "KB5070010", "KB5070020"]
    );
}

#[test]
fn each_approval_counts_the_in_scope_endpoints_it_applies_to() {
    let plan = plan();
    // In scope: n-ws1..6, n-fs1, n-dc1 (n-old1's location is disabled, so it does not count
    // even though its scan needs the 2012 R2 rollup).
    assert_eq!(endpoint(&plan, "n-old1")["scope"], "disabled");
    let counts = [
        ("KB5070001", 4), // ws1, ws3 (scan), ws4 (Windows 11), dc1 (assumed)
        ("KB5070002", 2), // fs1 (Server 2022), dc1
        ("KB5070010", 1), // dc1 alone: no in-scope 2012 R2 machine
        ("KB5070003", 5), // ws6 (scan); ws4, ws5, fs1, dc1 assumed (no products)
        ("KB5070020", 4), // ws4, ws5, fs1, dc1: SQL Server is not an OS product
        ("CHROME-143", 4),
    ];
    for (patch, n) in counts {
        assert_eq!(approval(&plan, patch)["endpoints"], n, "{patch}");
    }
    assert_eq!(approval(&plan, "KB5070003")["decision"], "declined");
}

#[test]
fn scanned_ids_the_catalog_lacks_are_listed_not_errors() {
    let plan = plan();
    assert_eq!(
        plan["unknown_patches"],
        json!([{ "endpoint": "n-ws3", "patch": "KB4999999" }])
    );
}

#[test]
fn a_plan_without_applicability_inputs_assumes_and_changes_nothing_else() {
    let inv = fixture("inventory-dst.json");
    let cat = fixture("catalog-2026-10.json");
    let plan = plan_json(&[
        "--inventory",
        inv.to_str().unwrap(),
        "--catalog",
        cat.to_str().unwrap(),
        "--cycle",
        "2026-10",
    ]);
    assert_eq!(plan["unknown_patches"], json!([]));
    let approved: Vec<&str> = plan["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["decision"] == "auto_approved")
        .map(|a| a["patch"].as_str().unwrap())
        .collect();
    for e in plan["endpoints"].as_array().unwrap() {
        assert_eq!(e["applicability"], "assumed", "{}", e["id"]);
        assert_eq!(e["up_to_date"], false, "{}", e["id"]);
        let mut want: Vec<&str> = approved.clone();
        want.sort();
        assert_eq!(e["patches"], json!(want), "{}", e["id"]);
        if e["scope"] == "in_scope" {
            assert!(e["install"]["start"].is_string(), "{}", e["id"]);
        }
    }
}

#[test]
fn an_applicable_entry_that_is_not_a_string_is_an_input_error_naming_endpoint_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = fs::read_to_string(fixture("inventory-applicability.json")).unwrap();
    let bad = text.replace(
        r#""applicable": ["KB5070001"] }"#,
        r#""applicable": ["KB5070001", 5] }"#,
    );
    assert_ne!(bad, text, "the fixture changed: fix the replacement");
    let inv = dir.path().join("inventory.json");
    fs::write(&inv, bad).unwrap();
    let out = patchflow()
        .args(["plan", "--inventory", inv.to_str().unwrap(), "--catalog"])
        .arg(fixture("catalog-applicability.json"))
        .args(["--cycle", "2026-12", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("inventory.json"), "{err}");
    assert!(err.contains("n-ws1"), "{err}");
    assert!(err.contains("applicable"), "{err}");
}

#[test]
fn explaining_an_endpoint_names_its_patches_and_how_they_were_known() {
    let inv = fixture("inventory-applicability.json");
    let cat = fixture("catalog-applicability.json");
    let run = |id: &str| {
        let out = patchflow()
            .args(["plan", "--inventory", inv.to_str().unwrap(), "--catalog"])
            .arg(&cat)
            .args(["--cycle", "2026-12", "--format", "table", "--endpoint", id])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let ws2 = run("n-ws2");
    assert!(ws2.contains("up to date"), "{ws2}");
    assert!(ws2.contains("(reported applicability)"), "{ws2}");
    let ws3 = run("n-ws3");
    assert!(ws3.contains("KB5070001"), "{ws3}");
    assert!(ws3.contains("not in the catalog: KB4999999"), "{ws3}");
    let fs1 = run("n-fs1");
    assert!(
        fs1.contains("KB5070002, KB5070020 (products applicability)"),
        "{fs1}"
    );
    assert!(fs1.contains("applicability_from_products"), "{fs1}");
}

#[test]
fn the_table_shows_counts_up_to_date_endpoints_and_unknown_patches() {
    let inv = fixture("inventory-applicability.json");
    let cat = fixture("catalog-applicability.json");
    let out = patchflow()
        .args(["plan", "--inventory", inv.to_str().unwrap(), "--catalog"])
        .arg(&cat)
        .args(["--cycle", "2026-12", "--format", "table"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("1 endpoint(s)"), "{text}");
    assert!(
        text.contains("up to date (the patch scan shows nothing approved missing): n-ws2, n-ws6"),
        "{text}"
    );
    assert!(text.contains("KB4999999"), "{text}");
}
