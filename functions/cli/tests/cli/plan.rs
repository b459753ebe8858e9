//! `patchflow plan` on a fleet spread over the awkward zones (Lord Howe, Chatham, Santiago,
//! St. John's), each expectation worked out by hand in the comments.

use serde_json::Value;

use crate::helpers::{demo_catalog, dst_plan_output, endpoint, fixture, patchflow, plan_json};

fn dst_plan(extra: &[&str]) -> Value {
    let inv = fixture("inventory-dst.json");
    let cat = fixture("catalog-2026-10.json");
    let mut args = vec![
        "--inventory",
        inv.to_str().unwrap(),
        "--catalog",
        cat.to_str().unwrap(),
        "--cycle",
        "2026-10",
    ];
    args.extend_from_slice(extra);
    plan_json(&args)
}

fn install(plan: &Value, id: &str) -> (String, String) {
    let e = endpoint(plan, id);
    (
        e["install"]["start"].as_str().unwrap().to_owned(),
        e["install"]["end"].as_str().unwrap().to_owned(),
    )
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

#[test]
fn the_release_is_patch_tuesday_ten_am_pacific_in_daylight_time() {
    let plan = dst_plan(&[]);
    assert_eq!(plan["patch_tuesday"], "2026-10-13");
    assert_eq!(plan["released_at"], "2026-10-13T17:00:00Z");
    // A vendor written "Microsoft" is Microsoft; a third party's critical patch is still held.
    assert_eq!(plan["approvals"][0]["decision"], "auto_approved");
    assert_eq!(plan["approvals"][1]["decision"], "pending_review");
    assert_eq!(plan["approvals"][1]["review_due"], "2026-10-20T17:00:00Z");
}

#[test]
fn pilots_take_the_first_local_window_after_the_release() {
    let plan = dst_plan(&[]);
    // Lord Howe (+11): release is 04:00 on the 14th; the next 02:00 is the 15th, 15:00Z the 14th.
    assert_eq!(
        install(&plan, "hb-ws1"),
        pair("2026-10-14T15:00:00Z", "2026-10-14T17:00:00Z")
    );
    // Santiago (-3): release is 14:00 Tuesday; daytime's next 09:00 start is Wednesday.
    assert_eq!(
        install(&plan, "an-ws1"),
        pair("2026-10-14T12:00:00Z", "2026-10-14T20:00:00Z")
    );
    // Chatham (+13:45): 21:20 on the 14th is 07:35Z; the test-ring server pilots.
    assert_eq!(
        install(&plan, "kw-app1"),
        pair("2026-10-14T07:35:00Z", "2026-10-14T13:35:00Z")
    );
    assert_eq!(endpoint(&plan, "kw-app1")["wave"], "pilot");
    // A client's only server goes straight to its production window.
    let dc = endpoint(&plan, "hb-dc1");
    assert_eq!(dc["wave"], "production");
    assert_eq!(
        install(&plan, "hb-dc1"),
        pair("2026-10-14T10:20:00Z", "2026-10-14T16:20:00Z")
    );
    assert_eq!(dc["reboot"]["mode"], "automatic");
}

#[test]
fn production_waits_for_the_latest_pilot_end_plus_seven_days() {
    let plan = dst_plan(&[]);
    // Fleet workstation gate: Santiago's pilot ends last, 2026-10-14T20:00Z; + 7 days.
    assert_eq!(
        plan["production_gates"]["workstation_production"],
        "2026-10-21T20:00:00Z"
    );
    // St. John's (-2:30): 17:30 on the 21st -> 02:00 on the 22nd = 04:30Z.
    assert_eq!(
        install(&plan, "hm-ws1"),
        pair("2026-10-22T04:30:00Z", "2026-10-22T06:30:00Z")
    );
    // Santiago regular: 02:00 on the 22nd = 05:00Z.
    assert_eq!(
        install(&plan, "an-ws2"),
        pair("2026-10-22T05:00:00Z", "2026-10-22T07:00:00Z")
    );
    // Lord Howe daytime: Thursday 09:00-17:00 +11.
    assert_eq!(
        install(&plan, "hb-ws2"),
        pair("2026-10-21T22:00:00Z", "2026-10-22T06:00:00Z")
    );
    // Chatham servers: pilot end 13:35Z on the 14th + 7 days = 03:20 local on the 22nd, so
    // the window that evening.
    assert_eq!(
        plan["production_gates"]["server_production"]["kiwi"],
        "2026-10-21T13:35:00Z"
    );
    assert_eq!(
        install(&plan, "kw-sql1"),
        pair("2026-10-22T07:35:00Z", "2026-10-22T13:35:00Z")
    );
    assert_eq!(
        install(&plan, "kw-bkp1"),
        pair("2026-10-22T07:35:00Z", "2026-10-22T13:35:00Z")
    );
}

#[test]
fn reboots_follow_policy_group_approval_and_track() {
    let plan = dst_plan(&[]);
    // Auto install auto reboot without unattended approval: the technician reboots.
    assert_eq!(endpoint(&plan, "kw-bkp1")["reboot"]["mode"], "technician");
    // A critical server is planned but needs an engineer's approval.
    assert_eq!(endpoint(&plan, "kw-sql1")["manual_approval_required"], true);
    assert_eq!(
        endpoint(&plan, "kw-bkp1")["manual_approval_required"],
        false
    );
    // Daytime: install ends 06:00Z on the 22nd, +72h = 17:00 local on the 25th; next 02:00 is the 26th.
    let r = &endpoint(&plan, "hb-ws2")["reboot"];
    assert_eq!(
        (r["mode"].as_str(), r["reminder_local"].as_str()),
        (Some("user"), Some("10:00"))
    );
    assert_eq!(
        (r["forced_start"].as_str(), r["forced_end"].as_str()),
        (Some("2026-10-25T15:00:00Z"), Some("2026-10-25T17:00:00Z"))
    );
}

#[test]
fn an_out_of_band_release_moves_the_pilot_onto_lord_howes_half_hour_gap() {
    // Released 22:30 local on 2026-10-03; that night Lord Howe skips 02:00-02:30, so the 02:00
    // window opens at 02:30 (+11) and lasts 90 minutes.
    let plan = dst_plan(&["--released-at", "2026-10-03T12:00:00Z"]);
    assert_eq!(plan["released_at"], "2026-10-03T12:00:00Z");
    assert_eq!(plan["patch_tuesday"], "2026-10-13");
    assert_eq!(
        install(&plan, "hb-ws1"),
        pair("2026-10-03T15:30:00Z", "2026-10-03T17:00:00Z")
    );
    // Reviews are due seven days after the release that actually happened.
    assert_eq!(plan["approvals"][1]["review_due"], "2026-10-10T12:00:00Z");
}

#[test]
fn a_policy_file_changes_the_numbers_the_plan_uses() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[rollout]\nsoak_days = 10\n[workstation]\nregular_window = \"01:00-03:00\"\n",
    )
    .unwrap();
    let plan = dst_plan(&["--policy", policy.to_str().unwrap()]);
    assert_eq!(
        plan["production_gates"]["workstation_production"],
        "2026-10-24T20:00:00Z"
    );
    // Lord Howe pilot now 01:00-03:00 +11 on the 15th.
    assert_eq!(
        install(&plan, "hb-ws1"),
        pair("2026-10-14T14:00:00Z", "2026-10-14T16:00:00Z")
    );
}

#[test]
fn one_endpoint_is_explained_in_words_with_local_and_utc_times() {
    let out = dst_plan_output(&[
        "--cycle",
        "2026-10",
        "--format",
        "table",
        "--endpoint",
        "kw-bkp1",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "kw-bkp1 (KW-BKP1), server of Kiwi Freight, zone Pacific/Chatham",
        "wave     production",
        "Thu 2026-10-22 21:20 +1345",
        "2026-10-22T07:35:00Z - 2026-10-22T13:35:00Z",
        "a technician schedules and confirms it",
        "Unattended reboot approved? [server.unattended_reboot]",
        "unattended reboot is not approved",
        "Client has 2 or more servers? [server.pilot_first]",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn one_endpoint_as_json_is_its_plan_entry() {
    let out = dst_plan_output(&[
        "--cycle",
        "2026-10",
        "--format",
        "json",
        "--endpoint",
        "hb-ws1",
    ]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["id"], "hb-ws1");
    assert_eq!(v["install"]["start"], "2026-10-14T15:00:00Z");
}

#[test]
fn an_unknown_endpoint_is_an_input_error() {
    let out = dst_plan_output(&["--cycle", "2026-10", "--endpoint", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn the_table_groups_by_client_and_wave_with_local_times_beside_utc() {
    let out = dst_plan_output(&["--cycle", "2026-10", "--format", "table"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let kiwi = text
        .find("Client kiwi (Kiwi Freight), Pacific/Chatham")
        .expect("kiwi section");
    let pilot = text[kiwi..].find("wave pilot").unwrap();
    let production = text[kiwi..].find("wave production").unwrap();
    assert!(pilot < production);
    assert!(
        text.contains("Wed 2026-10-14 21:20 +1345 - Thu 03:20 +1345"),
        "{text}"
    );
    assert!(text.contains("2026-10-14T07:35:00Z - 2026-10-14T13:35:00Z"));
    assert!(text.contains("Approvals: 1 auto-approved, 0 declined, 1 pending review"));
}

#[test]
fn without_a_format_a_pipe_gets_json() {
    let out = patchflow()
        .args(["plan", "--cycle", "2026-12", "--inventory"])
        .arg(fixture("inventory-dst.json"))
        .arg("--catalog")
        .arg(demo_catalog())
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON when stdout is not a terminal");
    assert_eq!(v["cycle"], "2026-12");
    assert_eq!(v["approvals"].as_array().unwrap().len(), 12);
}
