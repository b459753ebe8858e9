//! `patchflow fleet generate`, and planning what it generates.

use serde_json::Value;

use crate::helpers::{demo_catalog, patchflow, plan_json};

#[test]
fn a_generated_fleet_is_deterministic_and_plans_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("nested/b.json");
    for path in [&a, &b] {
        patchflow()
            .args([
                "fleet",
                "generate",
                "--endpoints",
                "250",
                "--clients",
                "6",
                "--seed",
                "9",
                "--out",
            ])
            .arg(path)
            .assert()
            .success();
    }
    let text = std::fs::read_to_string(&a).unwrap();
    assert_eq!(text, std::fs::read_to_string(&b).unwrap());
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["endpoints"].as_array().unwrap().len(), 250);
    assert_eq!(doc["clients"].as_array().unwrap().len(), 6);

    let plan = plan_json(&[
        "--inventory",
        a.to_str().unwrap(),
        "--catalog",
        demo_catalog().to_str().unwrap(),
        "--cycle",
        "2026-12",
    ]);
    let eps = plan["endpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 250);
    assert!(
        eps.iter().any(|e| e["wave"] == "pilot") && eps.iter().any(|e| e["wave"] == "production")
    );
}

#[test]
fn generate_writes_to_stdout_without_out() {
    let out = patchflow()
        .args([
            "fleet",
            "generate",
            "--endpoints",
            "3",
            "--clients",
            "1",
            "--compact",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["endpoints"].as_array().unwrap().len(), 3);
}

#[test]
fn zero_endpoints_is_refused_as_a_usage_error() {
    let out = patchflow()
        .args(["fleet", "generate", "--endpoints", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn policy_show_prints_the_seed_defaults_as_toml() {
    let out = patchflow().args(["policy", "show"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "soak_days = 7",
        "window = \"21:20-03:20\"",
        "regular_window = \"02:00-04:00\"",
        "reminder_time = \"10:00\"",
        "force_reboot_after_hours = 72",
        "review_hold_days = 7",
        "time_to_patch_target_hours = 48",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}
