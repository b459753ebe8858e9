//! `patchflow audit list|pull|verify` on local evidence folders written the way the evidence
//! archiver writes them: bundles of artifacts, each with a manifest chained to the client's
//! previous one.

use std::path::Path;

use chrono::{DateTime, Duration, TimeZone, Utc};
use patchflow_core::ids::{ClientId, CycleId};
use patchflow_core::ports::evidence::EvidenceKey;
use patchflow_evidence::manifest::Link;
use patchflow_local::evidence::FsEvidenceStore;
use predicates::prelude::*;

use crate::helpers::patchflow;

const CLIENTS: [&str; 2] = ["contoso", "fabrikam"];

/// A client's bundles in the order they closed.
fn bundles(client: &str) -> [(&'static str, String); 3] {
    [
        ("2026-11", format!("servers.{client}.pilot")),
        ("2026-11", "workstations.production".to_owned()),
        ("2026-12", format!("servers.{client}.pilot")),
    ]
}

fn key(cycle: &str, client: &str, bundle: &str, name: &str) -> EvidenceKey {
    let cycle: CycleId = cycle.parse().unwrap();
    EvidenceKey::new(cycle, &ClientId::parse(client).unwrap(), bundle, name).unwrap()
}

async fn write_bundle(
    store: &FsEvidenceStore,
    client: &str,
    (cycle, bundle): &(&str, String),
    closed_at: DateTime<Utc>,
    sequence: u64,
    previous: Option<Link>,
) -> Link {
    patchflow_evidence::testing::write_bundle(
        store,
        cycle.parse().unwrap(),
        client,
        bundle,
        closed_at,
        patchflow_evidence::DEFAULT_RETENTION_DAYS,
        sequence,
        previous,
    )
    .await
    .unwrap()
}

/// Two clients with three chained bundles each, across 2026-11 and 2026-12, in `root`.
fn evidence_folder(root: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = FsEvidenceStore::open(root).unwrap();
        for (c, client) in CLIENTS.iter().enumerate() {
            let mut previous = None;
            for (b, bundle) in bundles(client).iter().enumerate() {
                let closed = Utc.with_ymd_and_hms(2026, 11, 20, 6, 0, 0).unwrap()
                    + Duration::days(12 * b as i64)
                    + Duration::hours(c as i64);
                previous = Some(
                    write_bundle(&store, client, bundle, closed, b as u64 + 1, previous).await,
                );
            }
        }
    });
}

/// Flips a byte of an evidence file, as someone lifting its read-only flag would.
fn flip_byte(root: &Path, key: &EvidenceKey) {
    let path = root.join(key.as_path());
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[3] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
}

/// `patchflow audit ...` with no ambient configuration.
fn audit(args: &[&str]) -> assert_cmd::Command {
    let mut cmd = patchflow();
    cmd.env_remove("PATCHFLOW_EVIDENCE_BUCKET")
        .env_remove("PATCHFLOW_STATE_DIR")
        .arg("audit")
        .args(args);
    cmd
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn verify_passes_an_intact_folder_given_as_its_root_or_its_evidence_folder() {
    // GIVEN an intact evidence folder
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cycle");
    evidence_folder(&root);

    for target in [root.clone(), root.join("evidence")] {
        // WHEN it is verified THEN it exits 0 with the report and the verdict
        audit(&["verify", path(&target)])
            .assert()
            .success()
            .stdout(predicate::str::contains("bundles: 6"))
            .stdout(predicate::str::contains("servers.fabrikam.pilot"))
            .stdout(predicate::str::contains(
                "contoso: sequences 1-3 (3 manifests), from sequence 1",
            ))
            .stdout(predicate::str::contains("locks: 30 checked"))
            .stdout(predicate::str::contains("problems: none"))
            .stdout(predicate::str::ends_with(
                "verified: 30 objects in 6 bundles\n",
            ))
            .stderr("");
    }

    // AND a folder below `evidence` narrows it, the chain anchored in the month before
    audit(&["verify", path(&root.join("evidence/2026-12/contoso"))])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "anchored at evidence/2026-11/contoso/workstations.production/manifest.json (sequence 2",
        ))
        .stdout(predicate::str::contains("verified: 5 objects in 1 bundles"));
}

#[test]
fn verify_exits_1_naming_the_first_bad_object_of_a_tampered_folder() {
    // GIVEN one byte of a November report flipped
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cycle");
    evidence_folder(&root);
    let bad = key(
        "2026-11",
        "fabrikam",
        "workstations.production",
        "report.html",
    );
    flip_byte(&root, &bad);

    // THEN verify exits 1, names it on stderr, and lists it in the report
    audit(&["verify", path(&root)])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "the first bad object is {}: the store refuses its bytes",
            bad.as_path()
        )))
        .stdout(predicate::str::contains("problems: 1"))
        .stdout(predicate::str::contains(format!("  {}: ", bad.as_path())))
        .stdout(predicate::str::contains("verified:").not());
}

#[test]
fn verify_exits_1_when_the_locks_are_shorter_than_asked_and_2_when_there_is_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cycle");
    evidence_folder(&root);
    audit(&["verify", path(&root), "--min-retention-days", "3650"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "3650 days after the bundle closed",
        ));
    audit(&["verify", path(&tmp.path().join("nowhere"))])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no evidence here"));
    audit(&["verify", "s3://"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no bucket"));
}

#[test]
fn list_shows_every_bundle_with_its_sequence_and_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cycle");
    evidence_folder(&root);

    audit(&["list", "--state", path(&root)])
        .assert()
        .success()
        .stdout(predicate::str::contains("servers.contoso.pilot"))
        .stdout(predicate::str::contains("workstations.production"))
        .stdout(predicate::str::contains("2033-"))
        .stdout(predicate::str::contains("6 bundles, 30 objects"));

    audit(&[
        "list",
        "--state",
        path(&root.join("evidence")),
        "--client",
        "fabrikam",
        "--cycle",
        "2026-12",
    ])
    .assert()
    .success()
    .stdout(predicate::str::contains("servers.fabrikam.pilot"))
    .stdout(predicate::str::contains("contoso").not())
    .stdout(predicate::str::contains("1 bundles, 5 objects"));

    audit(&["list", "--state", path(&tmp.path().join("nowhere"))])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no evidence here"));
}

#[test]
fn a_pulled_cycle_verifies_on_its_own_and_a_second_pull_into_it_is_refused() {
    // GIVEN a local evidence folder
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cycle");
    evidence_folder(&root);
    let pulled = tmp.path().join("pulled");

    // WHEN December is pulled from it
    audit(&[
        "pull",
        "--cycle",
        "2026-12",
        "--state",
        path(&root),
        "--out",
        path(&pulled),
    ])
    .assert()
    .success()
    .stdout(predicate::str::contains("pulled 10 objects"))
    .stdout(predicate::str::contains("2 manifest(s) outside it"));
    assert!(pulled.join("evidence/2026-12/contoso").is_dir());
    assert!(pulled.join(".meta/evidence/2026-12/contoso").is_dir());
    assert!(!pulled.join(".incomplete").exists());

    // THEN the copy verifies, its chains anchored at the pulled November manifests
    audit(&["verify", path(&pulled)])
        .assert()
        .success()
        .stdout(predicate::str::contains("evidence/2026-12/ in"))
        .stdout(predicate::str::contains(
            "anchored at evidence/2026-11/fabrikam/",
        ))
        .stdout(predicate::str::contains(
            "verified: 10 objects in 2 bundles",
        ));

    // AND a second pull into the same folder is refused
    audit(&[
        "pull",
        "--cycle",
        "2026-12",
        "--state",
        path(&root),
        "--out",
        path(&pulled),
    ])
    .assert()
    .code(2)
    .stderr(predicate::str::contains("not empty"));
}

#[test]
fn a_pull_that_meets_a_bad_checksum_names_the_object_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cycle");
    evidence_folder(&root);
    let bad = key(
        "2026-12",
        "contoso",
        "servers.contoso.pilot",
        "outcomes.csv",
    );
    flip_byte(&root, &bad);
    let pulled = tmp.path().join("pulled");

    audit(&[
        "pull",
        "--cycle",
        "2026-12",
        "--state",
        path(&root),
        "--out",
        path(&pulled),
    ])
    .assert()
    .code(1)
    .stderr(predicate::str::contains(bad.as_path()))
    .stderr(predicate::str::contains("does not match the recorded"));
    assert!(!pulled.exists(), "nothing is left claiming to be evidence");
}
