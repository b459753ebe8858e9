//! One contract suite for the evidence store port, run against S3 (on moto) and the local
//! directory store; then what only each adapter can show.

use base64::Engine as _;
use chrono::{Duration, TimeZone, Utc};
use patchflow_core::ids::{ClientId, CycleId};
use patchflow_core::ports::evidence::{
    EvidenceKey, EvidencePrefix, EvidenceStore, LockMode, NewEvidence, Retention, Sha256Digest,
};
use patchflow_core::ports::PortError;

use crate::support::{fs_store, s3_store, unique};

fn cycle() -> CycleId {
    "2026-12".parse().unwrap()
}

fn retention() -> Retention {
    // Whole seconds: that is what Object Lock keeps.
    Retention {
        mode: LockMode::Compliance,
        retain_until: Utc.with_ymd_and_hms(2033, 12, 31, 0, 0, 0).unwrap(),
    }
}

fn object(client: &ClientId, tier: &str, name: &str, bytes: &[u8]) -> NewEvidence {
    NewEvidence {
        key: EvidenceKey::new(cycle(), client, tier, name).unwrap(),
        bytes: bytes.to_vec(),
        content_type: "application/json".into(),
        retention: retention(),
    }
}

/// The port's contract, whatever the adapter.
async fn contract<S: EvidenceStore>(store: &S) {
    let client = ClientId::parse(unique("client")).unwrap();

    // GIVEN an object written once
    let first = object(
        &client,
        "server-pilot",
        "outcomes.json",
        b"{\"patched\": 3}",
    );
    let key = first.key.clone();
    let head = store.put(first).await.expect("the first write succeeds");
    assert_eq!(head.sha256, Sha256Digest::of(b"{\"patched\": 3}"));
    assert_eq!(head.size, 14);

    // THEN head reports its checksum, size and lock
    let h = store.head(&key).await.expect("head");
    assert_eq!((h.sha256, h.size), (head.sha256, 14));
    assert_eq!(h.retention, Some(retention()));
    assert!(!h.legal_hold);

    // AND get returns exactly the bytes
    let (bytes, _) = store.get(&key).await.expect("get");
    assert_eq!(bytes, b"{\"patched\": 3}");

    // WHEN the same key is written again THEN it is refused and the original stays
    let again = store
        .put(object(
            &client,
            "server-pilot",
            "outcomes.json",
            b"{\"patched\": 0}",
        ))
        .await;
    assert!(matches!(again, Err(PortError::Conflict(_))), "{again:?}");
    assert_eq!(store.get(&key).await.unwrap().0, b"{\"patched\": 3}");

    // AND listing narrows by cycle, client and tier, in key order
    store
        .put(object(
            &client,
            "server-pilot",
            "a-report.html",
            b"<html></html>",
        ))
        .await
        .unwrap();
    store
        .put(object(&client, "server-production", "outcomes.json", b"{}"))
        .await
        .unwrap();
    let other = ClientId::parse(unique("other")).unwrap();
    store
        .put(object(&other, "server-pilot", "outcomes.json", b"{}"))
        .await
        .unwrap();
    let tier = EvidencePrefix {
        cycle: cycle(),
        client: Some(client.clone()),
        tier: Some("server-pilot".into()),
    };
    let names: Vec<String> = store
        .list(&tier)
        .await
        .unwrap()
        .iter()
        .map(|k| k.name().to_owned())
        .collect();
    assert_eq!(names, ["a-report.html", "outcomes.json"]);
    let whole_client = EvidencePrefix {
        cycle: cycle(),
        client: Some(client.clone()),
        tier: None,
    };
    assert_eq!(store.list(&whole_client).await.unwrap().len(), 3);
    let next_cycle = EvidencePrefix {
        cycle: cycle().next().unwrap(),
        client: Some(client.clone()),
        tier: None,
    };
    assert!(store.list(&next_cycle).await.unwrap().is_empty());

    // AND a legal hold can be placed and lifted
    store.set_legal_hold(&key, true).await.unwrap();
    assert!(store.head(&key).await.unwrap().legal_hold);
    store.set_legal_hold(&key, false).await.unwrap();
    assert!(!store.head(&key).await.unwrap().legal_hold);

    // AND a missing key is NotFound everywhere
    let missing = EvidenceKey::new(cycle(), &client, "server-pilot", "missing.json").unwrap();
    assert!(matches!(
        store.head(&missing).await,
        Err(PortError::NotFound(_))
    ));
    assert!(matches!(
        store.get(&missing).await,
        Err(PortError::NotFound(_))
    ));
    let hold = store.set_legal_hold(&missing, true).await;
    assert!(matches!(hold, Err(PortError::NotFound(_))), "{hold:?}");

    // AND objects written once, a refused second write and a legal hold included, are one
    // version each
    assert_eq!(
        store.versions_beyond_one("evidence/").await.unwrap(),
        Vec::<(String, usize)>::new()
    );
}

#[tokio::test]
async fn the_s3_store_keeps_the_evidence_contract() {
    contract(&s3_store().await).await;
}

#[tokio::test]
async fn the_local_store_keeps_the_evidence_contract() {
    let (store, _dir) = fs_store();
    contract(&store).await;
}

#[tokio::test]
async fn a_locked_s3_object_version_cannot_be_deleted() {
    let store = s3_store().await;
    let client = ClientId::parse("contoso").unwrap();
    let obj = object(&client, "server-pilot", "outcomes.json", b"locked");
    let key = obj.key.clone();
    store.put(obj).await.unwrap();
    let versions = store
        .client()
        .list_object_versions()
        .bucket(store.bucket())
        .prefix(key.as_path())
        .send()
        .await
        .unwrap();
    let version = versions.versions()[0].version_id().unwrap().to_owned();
    let deleted = store
        .client()
        .delete_object()
        .bucket(store.bucket())
        .key(key.as_path())
        .version_id(&version)
        .send()
        .await;
    assert!(
        deleted.is_err(),
        "COMPLIANCE mode must refuse deleting the version"
    );
    assert_eq!(store.get(&key).await.unwrap().0, b"locked");
}

#[tokio::test]
async fn bytes_that_do_not_match_their_recorded_checksum_are_refused_on_read() {
    // moto, unlike S3, does not verify x-amz-checksum-sha256 on upload; write a mismatched pair
    // behind the port's back to prove the read-side verification.
    let store = s3_store().await;
    let key = EvidenceKey::new(
        cycle(),
        &ClientId::parse("contoso").unwrap(),
        "t",
        "forged.json",
    )
    .unwrap();
    let wrong = base64::engine::general_purpose::STANDARD
        .encode(Sha256Digest::of(b"something else").bytes());
    store
        .client()
        .put_object()
        .bucket(store.bucket())
        .key(key.as_path())
        .body(b"real bytes".to_vec().into())
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .checksum_sha256(wrong)
        .object_lock_mode(aws_sdk_s3::types::ObjectLockMode::Compliance)
        .object_lock_retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(
            (Utc::now() + Duration::days(1)).timestamp(),
        ))
        .send()
        .await
        .unwrap();
    let got = store.get(&key).await;
    assert!(matches!(got, Err(PortError::Permanent { .. })), "{got:?}");
}

#[tokio::test]
async fn a_tampered_local_file_is_refused_on_read_and_files_are_read_only() {
    let (store, _dir) = fs_store();
    let obj = object(
        &ClientId::parse("contoso").unwrap(),
        "ws-pilot",
        "outcomes.csv",
        b"id,outcome\nws1,patched\n",
    );
    let key = obj.key.clone();
    store.put(obj).await.unwrap();
    let path = store.path_of(&key);
    let perms = std::fs::metadata(&path).unwrap().permissions();
    assert!(perms.readonly(), "evidence files are read-only");

    // An operator with the rights to override the permission flips one byte.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[3] ^= 0x01;
    let mut writable = perms.clone();
    #[allow(clippy::permissions_set_readonly_false)]
    writable.set_readonly(false);
    std::fs::set_permissions(&path, writable).unwrap();
    std::fs::write(&path, &bytes).unwrap();

    let got = store.get(&key).await;
    assert!(matches!(got, Err(PortError::Permanent { .. })), "{got:?}");
}
