//! GIVEN an inventory that falls short of the operating model without being invalid (a pilot
//! ring that does not represent every client and track, an exclusion without its signed
//! approval) WHEN it is planned THEN the plan warns, in the table and in its JSON `warnings`;
//! `--strict` (or the policy, for unsigned exclusions) makes the warnings errors. Also: a P1
//! server needs an engineer's approval, and an impact that is not high/medium/low is invalid.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::helpers::{demo_catalog, endpoint, fixture, patchflow, plan_json};

fn inventory() -> PathBuf {
    fixture("inventory-representation.json")
}

fn args(inventory: &Path) -> Vec<String> {
    vec![
        "--inventory".into(),
        inventory.display().to_string(),
        "--catalog".into(),
        demo_catalog().display().to_string(),
        "--cycle".into(),
        "2026-12".into(),
    ]
}

fn plan(extra: &[&str]) -> Value {
    let mut a = args(&inventory());
    a.extend(extra.iter().map(|s| s.to_string()));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    plan_json(&a)
}

fn run(inventory: &Path, extra: &[&str]) -> std::process::Output {
    patchflow()
        .arg("plan")
        .args(args(inventory))
        .args(extra)
        .output()
        .expect("patchflow runs")
}

fn register<'a>(plan: &'a Value, subject: &str) -> &'a Value {
    plan["exception_register"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["subject"] == subject)
        .unwrap_or_else(|| panic!("no register entry for {subject}"))
}

#[test]
fn the_json_plan_lists_each_warning_with_its_code_subject_and_message() {
    let p = plan(&[]);
    let got: Vec<(&str, &str)> = p["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["code"].as_str().unwrap(), w["subject"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("pilot_server_missing", "acme"),
            ("pilot_client_workstations_missing", "globex"),
            ("pilot_track_missing", "daytime"),
            ("unsigned_exclusion", "acme-ws3"),
        ]
    );
    let w = &p["warnings"][0];
    // The plan falls back to the least critical server, and says so.
    assert!(
        w["message"]
            .as_str()
            .unwrap()
            .contains("least critical server, acme-fs1 (ACME-FS1, P2)"),
        "{w}"
    );
    assert_eq!(endpoint(&p, "acme-fs1")["wave"], "pilot");
    assert_eq!(p["warnings"][3]["field"], "exclusion_ref");
    assert_eq!(p["warnings"][3]["client"], "acme");
}

#[test]
fn a_fleet_whose_pilot_represents_every_client_and_track_has_no_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let mut inv: Value =
        serde_json::from_str(&std::fs::read_to_string(inventory()).unwrap()).unwrap();
    for e in inv["endpoints"].as_array_mut().unwrap() {
        match e["id"].as_str().unwrap() {
            "acme-fs1" | "acme-ws2" => e["ring"] = "test".into(),
            "globex-ws1" => e["ring"] = "pilot".into(),
            "acme-ws3" => e["exclusion_ref"] = "ACME-SIGNED-2026-04".into(),
            _ => {}
        }
    }
    let path = dir.path().join("fleet.json");
    std::fs::write(&path, inv.to_string()).unwrap();
    let out = run(&path, &["--strict", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["warnings"], serde_json::json!([]));
    assert_eq!(register(&p, "acme-ws3")["signed"], true);
}

#[test]
fn the_table_shows_the_warnings_and_who_may_lift_each_register_entry() {
    let out = run(&inventory(), &["--format", "table"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Warnings: 4"), "{text}");
    for line in [
        "client \"acme\" pilot_server_missing (acme): 2 in-scope servers and none in the pilot or test ring",
        "client \"globex\" pilot_client_workstations_missing (globex)",
        "track \"daytime\" pilot_track_missing (daytime)",
        "endpoint \"acme-ws3\" unsigned_exclusion (acme-ws3): client_excluded without the signed approval",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("lifted by"), "{text}");
    assert!(
        text.contains("client signed change (GLX-SIGNED-2026-02)"),
        "{text}"
    );
    assert!(
        text.contains("MSP service manager with the client's"),
        "{text}"
    );
    // The P1 domain controller waits for an engineer.
    assert!(
        text.contains("awaits engineer approval (critical)"),
        "{text}"
    );
}

#[test]
fn strict_makes_every_warning_an_error_on_stderr_with_nothing_on_stdout() {
    let out = run(&inventory(), &["--strict", "--format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    let inv = inventory().display().to_string();
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with(&format!("error: {inv}: "))),
        "{err}"
    );
    assert!(
        lines[0].contains("client \"acme\": pilot_server_missing"),
        "{err}"
    );
    assert!(
        lines[3].contains("endpoint \"acme-ws3\": field `exclusion_ref`: client_excluded"),
        "{err}"
    );
}

#[test]
fn an_unsigned_exclusion_warns_by_default_and_its_register_entry_says_unsigned() {
    let p = plan(&[]);
    let x = register(&p, "acme-ws3");
    assert_eq!(x["kind"], "client_excluded");
    assert_eq!(x["signed"], false);
    assert_eq!(x["approval_ref"], Value::Null);
    assert_eq!(
        x["lifted_by"],
        "client signed change (no signed approval on record)"
    );
    let signed = register(&p, "globex-lab");
    assert_eq!(
        (&signed["signed"], &signed["approval_ref"]),
        (&Value::Bool(true), &Value::from("GLX-SIGNED-2026-02"))
    );
    assert_eq!(
        signed["lifted_by"],
        "client signed change (GLX-SIGNED-2026-02)"
    );
    let dnp = register(&p, "globex-kiosk");
    assert_eq!(dnp["kind"], "do_not_patch");
    assert_eq!(dnp["signed"], true);
    assert_eq!(
        dnp["lifted_by"],
        "MSP service manager with the client's sign-off (GLX-SIGNED-2026-01)"
    );
    // The exclusion's trace says what is missing.
    let ws3 = endpoint(&p, "acme-ws3");
    assert_eq!(ws3["scope"], "excluded");
    let step = ws3["trace"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["node"] == "phase1.client_excluded")
        .unwrap();
    assert_eq!(
        step["facts"],
        "no signed approval on record (no exclusion_ref)"
    );
}

#[test]
fn the_policy_makes_an_unsigned_exclusion_an_input_error_naming_the_endpoint_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[scope]\nunsigned_exclusion = \"error\"\n").unwrap();
    let out = run(
        &inventory(),
        &["--policy", policy.to_str().unwrap(), "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    // Only the unsigned exclusion is an error; the representation warnings are not.
    assert_eq!(
        err.trim_end(),
        format!(
            "error: {}: endpoint \"acme-ws3\": field `exclusion_ref`: client_excluded without \
             the signed approval it needs: no exclusion_ref names the client's signed approval",
            inventory().display()
        )
    );
    // `policy show` writes the setting out.
    let shown = patchflow()
        .args(["policy", "show", "--policy", policy.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("[scope]\nunsigned_exclusion = \"error\"")
    );
}

#[test]
fn a_p1_server_requires_an_engineers_approval_and_the_trace_says_it_is_p1() {
    let p = plan(&[]);
    let dc = endpoint(&p, "acme-dc1");
    assert_eq!(dc["criticality"], "p1");
    assert_eq!(dc["manual_approval_required"], true);
    let step = dc["trace"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["node"] == "phase2.critical_server")
        .unwrap();
    assert_eq!(step["outcome"], "yes");
    assert_eq!(step["reason"], "critical_server_by_criticality");
    assert_eq!(step["facts"], "P1 by role domain_controller");
    let fs = endpoint(&p, "acme-fs1");
    assert_eq!(fs["manual_approval_required"], false);
}

#[test]
fn an_impact_that_is_not_high_medium_or_low_is_invalid_input_naming_the_record_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(inventory()).unwrap();
    for (from, to, record) in [
        (
            r#""impact": "low""#,
            r#""impact": "urgent""#,
            "endpoint \"globex-ws1\"",
        ),
        (r#""impact": "high""#, r#""impact": 1"#, "client \"acme\""),
    ] {
        let path = dir.path().join("fleet.json");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let out = run(&path, &["--format", "json"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(out.stdout.is_empty());
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.starts_with(&format!(
                "error: {}: {record}: field `impact`: ",
                path.display()
            )),
            "{err}"
        );
    }
    let path = dir.path().join("fleet.json");
    std::fs::write(
        &path,
        text.replacen(r#""impact": "low""#, r#""impact": "urgent""#, 1),
    )
    .unwrap();
    let err = String::from_utf8(run(&path, &[]).stderr).unwrap();
    assert!(
        err.contains("unknown variant `urgent`, expected one of `high`, `medium`, `low`"),
        "{err}"
    );
}

#[test]
fn a_generated_fleet_passes_strict() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.json");
    // The demo's fleet (make run) and a larger one.
    for (endpoints, clients, seed) in [("200", "5", "42"), ("3000", "40", "7")] {
        patchflow()
            .args([
                "fleet",
                "generate",
                "--endpoints",
                endpoints,
                "--clients",
                clients,
                "--seed",
                seed,
                "--catalog",
            ])
            .arg(demo_catalog())
            .arg("--out")
            .arg(&fleet)
            .assert()
            .success();
        let out = run(&fleet, &["--strict", "--format", "json"]);
        assert!(
            out.status.success(),
            "{endpoints}/{clients}/{seed}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn inventory_pull_writes_the_inventory_and_warns_as_plan_does() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet.json");
    let o = patchflow()
        .args(["inventory", "pull", "--rmm", "file", "--inventory"])
        .arg(inventory())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.exists());
    let err = String::from_utf8(o.stderr).unwrap();
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 4, "{err}");
    assert!(
        warnings[0].contains("client \"acme\": pilot_server_missing"),
        "{err}"
    );
    assert!(
        warnings[3].contains("endpoint \"acme-ws3\": field `exclusion_ref`"),
        "{err}"
    );
}
