//! GIVEN the contract's worked example WHEN it is planned THEN every decision of the expected
//! summary is reproduced, and the output keeps the contract's shape.

use serde_json::Value;

use crate::helpers::{contract_examples, endpoint, plan_json};

/// The example planned, with its expected summary; `None` (the test says so and passes) on a
/// clone without the team's reference folder beside it, where the project's own fixtures
/// (`plan.rs`, `applicability.rs`) still cover every rule. CI has the folder.
fn example_plan() -> Option<(Value, Value)> {
    let dir = contract_examples();
    if !dir.join("inventory.json").exists() {
        eprintln!(
            "skipped: the contract examples are not at {} (set PATCHFLOW_CONTRACT_EXAMPLES)",
            dir.display()
        );
        return None;
    }
    let inv = dir.join("inventory.json");
    let cat = dir.join("catalog.json");
    let plan = plan_json(&[
        "--inventory",
        inv.to_str().unwrap(),
        "--catalog",
        cat.to_str().unwrap(),
        "--cycle",
        "2026-12",
    ]);
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected-plan-summary.json")).unwrap(),
    )
    .unwrap();
    Some((plan, expected))
}

#[test]
fn the_worked_example_is_reproduced_decision_by_decision() {
    let Some((plan, exp)) = example_plan() else {
        return;
    };
    for key in ["cycle", "patch_tuesday", "released_at"] {
        assert_eq!(plan[key], exp[key], "{key}");
    }
    let approvals = plan["approvals"].as_array().unwrap();
    assert_eq!(approvals.len(), exp["approvals"].as_object().unwrap().len());
    for a in approvals {
        let e = &exp["approvals"][a["patch"].as_str().unwrap()];
        assert_eq!(a["decision"], e["decision"], "{a}");
        assert_eq!(a["review_due"], e["review_due"], "{a}");
    }
    let subjects: Vec<&Value> = plan["exception_register"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| &x["subject"])
        .collect();
    let expected_subjects: Vec<&Value> = exp["exception_register_subjects"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(subjects, expected_subjects);

    for e in exp["endpoints"].as_array().unwrap() {
        let id = e["id"].as_str().unwrap();
        let got = endpoint(&plan, id);
        assert_eq!(got["scope"], e["scope"], "{id}");
        if e["scope"] != "in_scope" {
            for k in ["wave", "install", "reboot"] {
                assert!(got[k].is_null(), "{id}: {k} must be null out of scope");
            }
            continue;
        }
        assert_eq!(got["track"], e["track"], "{id}");
        assert_eq!(got["wave"], e["wave"], "{id}");
        assert_eq!(got["install"]["start"], e["install_start"], "{id}");
        assert_eq!(got["install"]["end"], e["install_end"], "{id}");
        assert_eq!(got["reboot"]["mode"], e["reboot_mode"], "{id}");
        if let Some(mode) = e.get("install_mode") {
            assert_eq!(&got["install"]["mode"], mode, "{id}");
        }
        if let Some(forced) = e.get("forced_start") {
            assert_eq!(&got["reboot"]["forced_start"], forced, "{id}");
            assert_eq!(got["reboot"]["forced_end"], e["forced_end"], "{id}");
            assert_eq!(got["reboot"]["reminder_local"], "10:00", "{id}");
        }
    }
}

#[test]
fn every_endpoint_keeps_the_contract_shape_and_a_non_empty_trace() {
    let Some((plan, _)) = example_plan() else {
        return;
    };
    let z = |v: &Value| v.as_str().is_some_and(|s| s.ends_with('Z'));
    for e in plan["endpoints"].as_array().unwrap() {
        for key in [
            "id", "client", "kind", "scope", "track", "wave", "install", "reboot", "trace",
        ] {
            assert!(e.get(key).is_some(), "{}: {key} missing", e["id"]);
        }
        let trace = e["trace"].as_array().unwrap();
        assert!(!trace.is_empty());
        assert!(trace
            .iter()
            .all(|t| t["node"].is_string() && t["outcome"].is_string()));
        assert!(
            trace.iter().any(|t| t["node"] == "phase1.disabled"),
            "every endpoint passes the disabled check"
        );
        if e["scope"] == "in_scope" {
            assert!(z(&e["install"]["start"]) && z(&e["install"]["end"]));
            match e["reboot"]["mode"].as_str().unwrap() {
                "automatic" => assert!(z(&e["reboot"]["start"]) && z(&e["reboot"]["end"])),
                "technician" => {
                    assert!(e["reboot"]["start"].is_null() && e["reboot"]["end"].is_null())
                }
                "user" => {
                    assert!(e["reboot"]["start"].is_null() && e["reboot"]["end"].is_null());
                    assert!(z(&e["reboot"]["forced_start"]) && z(&e["reboot"]["forced_end"]));
                }
                other => panic!("unknown reboot mode {other}"),
            }
        }
    }
}

#[test]
fn the_worked_examples_pilot_server_is_the_least_critical_and_says_why() {
    let Some((plan, _)) = example_plan() else {
        return;
    };
    let file1 = endpoint(&plan, "con-file1");
    let step = file1["trace"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["node"] == "server.pilot_first")
        .unwrap();
    assert_eq!(step["outcome"], "pilot");
    assert_eq!(step["reason"], "pilot_by_lowest_criticality");
    let disabled = endpoint(&plan, "con-ws-xray");
    let last = disabled["trace"].as_array().unwrap().last().unwrap();
    assert_eq!(
        (last["node"].as_str(), last["outcome"].as_str()),
        (Some("phase1.disabled"), Some("yes"))
    );
}
