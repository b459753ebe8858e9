//! `patchflow simulate`, then the operator's commands on the state it leaves.

use predicates::prelude::*;

use crate::helpers::{demo_catalog, patchflow, small_fleet};

fn state_args(dir: &std::path::Path) -> Vec<String> {
    vec![
        "--state".into(),
        dir.display().to_string(),
        "--cycle".into(),
        "2026-12".into(),
        "--backend".into(),
        "local".into(),
    ]
}

/// `patchflow simulate` of the demo catalog on the embedded default.
pub fn simulate(inventory: &std::path::Path, out: &std::path::Path) -> assert_cmd::Command {
    let mut cmd = patchflow();
    cmd.args([
        "simulate",
        "--cycle",
        "2026-12",
        "--backend",
        "local",
        "--inventory",
    ])
    .arg(inventory)
    .arg("--catalog")
    .arg(demo_catalog())
    .arg("--out")
    .arg(out);
    cmd
}

#[test]
fn a_simulated_cycle_leaves_a_state_the_operator_commands_work_on() {
    let tmp = tempfile::tempdir().unwrap();
    let inventory = tmp.path().join("fleet.json");
    small_fleet(&inventory);
    let out = tmp.path().join("cycle");
    simulate(&inventory, &out)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Every tier closed with its evidence.",
        ))
        .stdout(predicate::str::contains("servers pilot"))
        // The largest single invocation, as the SQLite store and the RMM counted it.
        .stdout(
            predicate::str::is_match(
                r"Largest invocation: [1-9]\d* state record\(s\) read \([a-z_]+\), [1-9]\d* state request\(s\) \([a-z_]+\), [1-9]\d* RMM call\(s\) \([a-z_]+\)\.",
            )
            .unwrap(),
        );
    for file in [
        "summary.json",
        "rmm-commands.json",
        "psa-tickets.json",
        "state.db",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
    assert!(out.join("evidence/2026-12").is_dir());

    // A second simulation into the same folder is refused: it would mix two states.
    simulate(&inventory, &out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not empty"));

    patchflow()
        .arg("status")
        .args(state_args(&out))
        .assert()
        .success()
        .stdout(predicate::str::contains("closed"));

    // A patch held for review: approved once, and a second approval is refused.
    patchflow()
        .args([
            "approve",
            "ADOBE-APSB26-88",
            "--engineer",
            "alice",
            "--reason-code",
            "cab_approved",
        ])
        .args(state_args(&out))
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "ADOBE-APSB26-88 in 2026-12: approved by alice",
        ));
    patchflow()
        .args([
            "approve",
            "ADOBE-APSB26-88",
            "--engineer",
            "bob",
            "--reason-code",
            "cab_approved",
        ])
        .args(state_args(&out))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already"));
    patchflow()
        .args([
            "decline",
            "ZOOM-6.7.2",
            "--engineer",
            "alice",
            "--reason-code",
            "vendor_known_issue",
        ])
        .args(state_args(&out))
        .assert()
        .success()
        .stdout(predicate::str::contains("declined"));
    // A bad reason code and an unknown patch are input errors naming what is wrong.
    patchflow()
        .args([
            "approve",
            "KB5071005",
            "--engineer",
            "alice",
            "--reason-code",
            "CAB OK",
        ])
        .args(state_args(&out))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--reason-code"));
    patchflow()
        .args([
            "approve",
            "KB0000000",
            "--engineer",
            "alice",
            "--reason-code",
            "cab_approved",
        ])
        .args(state_args(&out))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not in the 2026-12 catalog"));

    patchflow()
        .args(["failure", "list"])
        .args(state_args(&out))
        .assert()
        .success()
        .stdout(predicate::str::contains("root cause"));
    patchflow()
        .args([
            "failure",
            "root-cause",
            "nosuch.install.0",
            "--engineer",
            "bob",
            "--text",
            "x",
        ])
        .args(state_args(&out))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no failure nosuch.install.0"));
}

#[test]
fn the_operator_commands_refuse_a_folder_without_state() {
    let tmp = tempfile::tempdir().unwrap();
    patchflow()
        .arg("status")
        .args(state_args(tmp.path()))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no patchflow state here"));
}

#[test]
fn simulate_refuses_a_rate_outside_zero_to_one() {
    patchflow()
        .args([
            "simulate",
            "--cycle",
            "2026-12",
            "--inventory",
            "x",
            "--catalog",
            "y",
            "--out",
            "z",
        ])
        .args(["--failure-rate", "1.5"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("between 0 and 1"));
}
