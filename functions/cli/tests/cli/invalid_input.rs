//! GIVEN input that cannot be used WHEN it is planned THEN patchflow exits 2, prints nothing on
//! stdout, and its error names the file, the record and the field.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::helpers::{dst_plan_output, fixture, patchflow};

struct Case {
    _dir: tempfile::TempDir,
    inventory: PathBuf,
    catalog: PathBuf,
}

fn base_inventory() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("inventory-dst.json")).unwrap()).unwrap()
}

fn base_catalog() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("catalog-2026-10.json")).unwrap())
        .unwrap()
}

fn write(inventory: &str, catalog: &str) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("fleet.json");
    let cat = dir.path().join("patches.json");
    std::fs::write(&inv, inventory).unwrap();
    std::fs::write(&cat, catalog).unwrap();
    Case {
        _dir: dir,
        inventory: inv,
        catalog: cat,
    }
}

fn with_inventory(f: impl FnOnce(&mut Value)) -> Case {
    let mut inv = base_inventory();
    f(&mut inv);
    write(&inv.to_string(), &base_catalog().to_string())
}

fn with_catalog(f: impl FnOnce(&mut Value)) -> Case {
    let mut cat = base_catalog();
    f(&mut cat);
    write(&base_inventory().to_string(), &cat.to_string())
}

/// Runs plan and returns stderr, asserting exit 2 and an empty stdout.
fn rejected(case: &Case) -> String {
    let out = patchflow()
        .args([
            "plan",
            "--cycle",
            "2026-10",
            "--format",
            "json",
            "--inventory",
        ])
        .arg(&case.inventory)
        .arg("--catalog")
        .arg(&case.catalog)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout, got {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

fn assert_names(stderr: &str, parts: &[&str]) {
    for p in parts {
        assert!(stderr.contains(p), "expected {p:?} in: {stderr}");
    }
}

fn endpoint_mut<'a>(inv: &'a mut Value, id: &str) -> &'a mut Value {
    inv["endpoints"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["id"] == id)
        .unwrap()
}

#[test]
fn malformed_json_names_the_file_and_the_position() {
    let case = write(
        "{\"clients\": [\n  {\"id\": \"a\",,}\n]}",
        &base_catalog().to_string(),
    );
    assert_names(
        &rejected(&case),
        &["fleet.json", "malformed JSON", "line 2"],
    );
}

#[test]
fn a_missing_required_field_names_the_endpoint_and_the_field() {
    let case = with_inventory(|inv| {
        endpoint_mut(inv, "kw-sql1")
            .as_object_mut()
            .unwrap()
            .remove("kind");
    });
    assert_names(
        &rejected(&case),
        &["fleet.json", "endpoint \"kw-sql1\"", "`kind`", "missing"],
    );
}

#[test]
fn an_unknown_enum_value_names_the_endpoint_the_field_and_the_value() {
    for (field, value) in [
        ("kind", "laptop"),
        ("ring", "canary"),
        ("track", "weekend"),
        ("role", "printer"),
        ("policy_group", "yolo"),
        ("criticality", "p4"),
    ] {
        let case = with_inventory(|inv| endpoint_mut(inv, "hb-ws2")[field] = json!(value));
        assert_names(
            &rejected(&case),
            &[
                "fleet.json",
                "endpoint \"hb-ws2\"",
                &format!("`{field}`"),
                value,
            ],
        );
    }
}

#[test]
fn an_unknown_time_zone_names_the_record() {
    let case =
        with_inventory(|inv| endpoint_mut(inv, "hm-ws1")["timezone"] = json!("Asia/Atlantis"));
    assert_names(
        &rejected(&case),
        &["endpoint \"hm-ws1\"", "`timezone`", "Asia/Atlantis"],
    );
    let case = with_inventory(|inv| inv["clients"][1]["timezone"] = json!("Pacific/Nowhere"));
    assert_names(
        &rejected(&case),
        &["client \"kiwi\"", "`timezone`", "Pacific/Nowhere"],
    );
}

#[test]
fn a_duplicate_endpoint_id_is_rejected() {
    let case = with_inventory(|inv| {
        let copy = inv["endpoints"][0].clone();
        inv["endpoints"].as_array_mut().unwrap().push(copy);
    });
    assert_names(
        &rejected(&case),
        &["endpoint \"hb-dc1\"", "`id`", "duplicate"],
    );
}

#[test]
fn an_endpoint_of_an_unknown_client_or_location_is_rejected() {
    let case = with_inventory(|inv| endpoint_mut(inv, "an-ws2")["client"] = json!("globex"));
    assert_names(
        &rejected(&case),
        &["endpoint \"an-ws2\"", "`client`", "globex"],
    );
    let case = with_inventory(|inv| endpoint_mut(inv, "an-ws2")["location"] = json!("smelter"));
    assert_names(
        &rejected(&case),
        &["endpoint \"an-ws2\"", "`location`", "smelter"],
    );
}

#[test]
fn a_bad_patch_names_the_catalog_the_patch_and_the_field() {
    let case = with_catalog(|c| c["patches"][1]["classification"] = json!("hotfix"));
    assert_names(
        &rejected(&case),
        &[
            "patches.json",
            "patch \"FIREFOX-140\"",
            "`classification`",
            "hotfix",
        ],
    );
    let case = with_catalog(|c| c["patches"][0]["severity"] = json!("severe"));
    assert_names(&rejected(&case), &["patch \"KB5066001\"", "`severity`"]);
    let case = with_catalog(|c| {
        c["patches"][0].as_object_mut().unwrap().remove("vendor");
    });
    assert_names(
        &rejected(&case),
        &["patch \"KB5066001\"", "`vendor`", "missing"],
    );
}

#[test]
fn a_missing_file_is_named() {
    let case = write("{}", "{}");
    let out = patchflow()
        .args([
            "plan",
            "--cycle",
            "2026-10",
            "--inventory",
            "/nonexistent/fleet.json",
            "--catalog",
        ])
        .arg(&case.catalog)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/fleet.json"));
}

#[test]
fn a_bad_cycle_or_release_instant_is_a_usage_error() {
    let cases: [&[&str]; 2] = [
        &["--cycle", "2026-13"],
        &["--cycle", "2026-10", "--released-at", "tuesday"],
    ];
    for args in cases {
        let out = dst_plan_output(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
        let flag = args[args.len() - 2];
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(flag),
            "{args:?}"
        );
    }
}

#[test]
fn a_bad_policy_file_names_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[rollout]\nsoak_days = 999\n").unwrap();
    let out = dst_plan_output(&["--cycle", "2026-10", "--policy", policy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("policy.toml") && err.contains("rollout.soak_days"),
        "{err}"
    );
}
