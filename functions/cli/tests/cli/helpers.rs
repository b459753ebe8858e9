use std::path::PathBuf;

use assert_cmd::Command;
use serde_json::Value;

/// The binary under test.
pub fn patchflow() -> Command {
    let mut cmd = Command::cargo_bin("patchflow").expect("the patchflow binary is built");
    cmd.env_remove("RUST_LOG");
    cmd
}

/// The repository's `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

/// Generates the small fleet the simulation tests use (30 endpoints, 2 clients, seed 3).
pub fn small_fleet(inventory: &std::path::Path) {
    patchflow()
        .args([
            "fleet",
            "generate",
            "--endpoints",
            "30",
            "--clients",
            "2",
            "--seed",
            "3",
            "--out",
        ])
        .arg(inventory)
        .assert()
        .success();
}

/// The bundled demo catalog.
pub fn demo_catalog() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("demo/catalog-2026-12.json")
}

/// The public contract's worked example, kept in the team's reference folder beside the checkout
/// (override with PATCHFLOW_CONTRACT_EXAMPLES).
pub fn contract_examples() -> PathBuf {
    std::env::var_os("PATCHFLOW_CONTRACT_EXAMPLES").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/contract/examples"),
        PathBuf::from,
    )
}

/// `patchflow plan` on the DST fixture fleet and its October catalog, with extra arguments.
pub fn dst_plan_output(extra: &[&str]) -> std::process::Output {
    patchflow()
        .arg("plan")
        .arg("--inventory")
        .arg(fixture("inventory-dst.json"))
        .arg("--catalog")
        .arg(fixture("catalog-2026-10.json"))
        .args(extra)
        .output()
        .expect("patchflow runs")
}

/// Runs `patchflow plan ... --format json` and parses stdout.
pub fn plan_json(args: &[&str]) -> Value {
    let out = patchflow()
        .arg("plan")
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "plan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("plan prints JSON")
}

/// One endpoint of a plan by id.
pub fn endpoint<'a>(plan: &'a Value, id: &str) -> &'a Value {
    plan["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("no endpoint {id} in the plan"))
}
