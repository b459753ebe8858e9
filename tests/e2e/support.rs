//! Fresh resources for every test, spawn_app style: a unique bucket on the AWS API server that
//! `make test` started (moto, see tests/with-moto.sh), or a fresh temporary directory.

use std::sync::atomic::{AtomicU32, Ordering};

use patchflow_aws::config::{s3_client, sdk_config};
use patchflow_aws::s3::{create_evidence_bucket, S3EvidenceStore};
use patchflow_local::evidence::FsEvidenceStore;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name no other test of this run uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn require_aws_endpoint() {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "the AWS adapter tests run against a local AWS API server: run them with `make test` \
         (or tests/with-moto.sh cargo test ...), which starts moto and sets AWS_ENDPOINT_URL"
    );
}

/// An S3 evidence store over a new Object-Lock bucket.
pub async fn s3_store() -> S3EvidenceStore {
    require_aws_endpoint();
    let sdk = sdk_config().await;
    let client = s3_client(&sdk).expect("S3 client configuration");
    let bucket = unique("pf-evidence");
    create_evidence_bucket(&client, &bucket, 1)
        .await
        .expect("create the evidence bucket");
    S3EvidenceStore::new(client, bucket)
}

/// A local evidence store in a new temporary directory (removed when the guard drops).
pub fn fs_store() -> (FsEvidenceStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store =
        FsEvidenceStore::open(dir.path().join("evidence-root")).expect("open the local store");
    (store, dir)
}
