//! `patchflow plan` names the cycle's update batches: batch 1, what deploys on Patch Tuesday's
//! decisions, and the patches held for review as a later batch, each with its own pilot and
//! soak once an engineer approves it after the first deployment.

use serde_json::{json, Value};

use crate::helpers::{fixture, patchflow, plan_json};

fn args<'a>(inv: &'a str, cat: &'a str, cycle: &'a str) -> Vec<&'a str> {
    vec!["--inventory", inv, "--catalog", cat, "--cycle", cycle]
}

#[test]
fn the_plan_names_batch_1_and_the_pending_reviews_as_a_later_batch() {
    let inv = fixture("inventory-applicability.json");
    let cat = fixture("catalog-applicability.json");
    let (inv, cat) = (inv.to_str().unwrap(), cat.to_str().unwrap());
    let plan = plan_json(&args(inv, cat, "2026-12"));
    // The auto-approved patches are batch 1 (in catalog order); the declined driver is in no
    // batch; the third-party patch held for review is the later batch.
    assert_eq!(
        plan["batches"],
        json!([
            {"batch": 1, "opens": "first_deployment",
             "patches": ["KB5070001", "KB5070002", "KB5070010", "KB5070020"]},
            {"batch": 2, "opens": "on_approval", "patches": ["CHROME-143"]}
        ])
    );
    let declined: Vec<&Value> = plan["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["decision"] == "declined")
        .collect();
    assert_eq!(declined.len(), 1);
    let in_batches: Vec<&Value> = plan["batches"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["patches"].as_array().unwrap())
        .collect();
    assert!(!in_batches.contains(&&declined[0]["patch"]));
    // Adding the field changed none of the contract's: every other top-level field is there.
    for field in [
        "cycle",
        "patch_tuesday",
        "released_at",
        "approvals",
        "exception_register",
        "production_gates",
        "endpoints",
        "unknown_patches",
    ] {
        assert!(plan.get(field).is_some(), "{field}");
    }

    // The table says the same for people.
    let out = patchflow()
        .arg("plan")
        .args(args(inv, cat, "2026-12"))
        .args(["--format", "table"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            "batch 1: deploys this cycle on Patch Tuesday's decisions: KB5070001, KB5070002, \
             KB5070010, KB5070020"
        ),
        "{text}"
    );
    assert!(
        text.contains("batch 2 and on: pending review: each one approved after the first deployment is a later batch: CHROME-143"),
        "{text}"
    );
}

#[test]
fn with_nothing_held_for_review_there_is_batch_1_only() {
    // The DST fixture's catalog without its third-party patch: everything deploys on Patch
    // Tuesday's decisions.
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.json");
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("catalog-2026-10.json")).unwrap())
            .unwrap();
    doc["patches"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["id"] == "KB5066001");
    std::fs::write(&catalog, doc.to_string()).unwrap();
    let inv = fixture("inventory-dst.json");
    let plan = plan_json(&args(
        inv.to_str().unwrap(),
        catalog.to_str().unwrap(),
        "2026-10",
    ));
    assert_eq!(
        plan["batches"],
        json!([{"batch": 1, "opens": "first_deployment", "patches": ["KB5066001"]}])
    );
}

#[test]
fn an_approval_after_the_first_deployment_says_it_is_a_later_batch_and_status_shows_the_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let inventory = tmp.path().join("fleet.json");
    crate::helpers::small_fleet(&inventory);
    let out = tmp.path().join("cycle");
    // Two simulated days: the pilots have deployed, production has not.
    crate::simulate::simulate(&inventory, &out)
        .args(["--days", "2"])
        .assert()
        .success();
    let state = [
        "--state",
        out.to_str().unwrap(),
        "--cycle",
        "2026-12",
        "--backend",
        "local",
    ];
    let approve = patchflow()
        .args([
            "approve",
            "ADOBE-APSB26-88",
            "--engineer",
            "alice",
            "--reason-code",
            "cab_approved",
        ])
        .args(state)
        .output()
        .unwrap();
    assert!(approve.status.success());
    let said = String::from_utf8(approve.stdout).unwrap();
    assert!(
        said.contains("ADOBE-APSB26-88 in 2026-12: approved by alice (cab_approved); a tier has deployed, so it is a later update batch: its pilots install it first"),
        "{said}"
    );
    // Batch 1 was sealed by the first deployment, without the late patch.
    let status = patchflow()
        .args(["status", "--json"])
        .args(state)
        .output()
        .unwrap();
    assert!(status.status.success());
    let summary: Value = serde_json::from_slice(&status.stdout).unwrap();
    let first = &summary["batches"][0];
    assert_eq!(first["batch"], 1);
    assert_eq!(first["state"], "deploying");
    let patches = first["patches"].as_array().unwrap();
    assert!(patches.contains(&json!("KB5071001")), "{first}");
    assert!(!patches.contains(&json!("ADOBE-APSB26-88")), "{first}");
    let table = patchflow().arg("status").args(state).output().unwrap();
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.contains("Update batches"), "{text}");
    assert!(text.contains("the cycle's tiers"), "{text}");
}
