//! Test support (feature `testing`, and this crate's own tests): writes a small bundle with a
//! chained manifest through any evidence store, as the archiver lays one out, so verification
//! can be tested against local folders and S3 alike.

use chrono::{DateTime, Duration, Utc};
use patchflow_core::ids::{ClientId, CycleId};
use patchflow_core::ports::evidence::{
    EvidenceKey, EvidenceStore, LockMode, NewEvidence, Retention, Sha256Digest,
};
use patchflow_core::ports::PortError;

use crate::manifest::{Artifact, Link, Manifest, SCHEMA};
use crate::names::MANIFEST;

/// The key of an object of a bundle; panics on an invalid name (test data).
pub fn key(cycle: CycleId, client: &str, bundle: &str, name: &str) -> EvidenceKey {
    let client = ClientId::parse(client).unwrap_or_else(|e| panic!("client {client}: {e}"));
    EvidenceKey::new(cycle, &client, bundle, name).unwrap_or_else(|e| panic!("{e}"))
}

/// COMPLIANCE until `days` after `closed_at`.
pub fn lock(closed_at: DateTime<Utc>, days: i64) -> Retention {
    Retention {
        mode: LockMode::Compliance,
        retain_until: closed_at + Duration::days(days),
    }
}

/// Writes four small artifacts of a bundle, then its manifest at `sequence` linking to
/// `previous`, every object locked for `days` after `closed_at`; returns the link to the
/// manifest.
#[allow(clippy::too_many_arguments)]
pub async fn write_bundle<S: EvidenceStore>(
    store: &S,
    cycle: CycleId,
    client: &str,
    bundle: &str,
    closed_at: DateTime<Utc>,
    days: i64,
    sequence: u64,
    previous: Option<Link>,
) -> Result<Link, PortError> {
    let retention = lock(closed_at, days);
    let files: [(&str, Vec<u8>, &str); 4] = [
        (
            "record.json",
            format!("{{\"client\": \"{client}\", \"bundle\": \"{bundle}\"}}\n").into_bytes(),
            "application/json",
        ),
        (
            "report.html",
            format!("<html><body>{client} {bundle} {cycle}</body></html>\n").into_bytes(),
            "text/html",
        ),
        (
            "summary.png",
            b"\x89PNG\r\n\x1a\n not really an image".to_vec(),
            "image/png",
        ),
        (
            "outcomes.csv",
            format!("endpoint,outcome\n{client}-ws1,patched\n").into_bytes(),
            "text/csv",
        ),
    ];
    let mut artifacts = Vec::new();
    for (name, bytes, content_type) in files {
        artifacts.push(Artifact {
            name: name.to_owned(),
            sha256: Sha256Digest::of(&bytes),
            size: bytes.len() as u64,
            content_type: content_type.to_owned(),
            retention,
        });
        store
            .put(NewEvidence {
                key: key(cycle, client, bundle, name),
                bytes,
                content_type: content_type.to_owned(),
                retention,
            })
            .await?;
    }
    let manifest = Manifest {
        schema: SCHEMA,
        cycle,
        client: client.to_owned(),
        bundle: bundle.to_owned(),
        closed_at,
        retention,
        sequence,
        previous,
        artifacts,
    };
    let bytes = manifest
        .to_bytes()
        .map_err(|e| PortError::permanent("encode the manifest", e))?;
    let mkey = key(cycle, client, bundle, MANIFEST);
    let link = Link {
        key: mkey.as_path(),
        sequence,
        sha256: Sha256Digest::of(&bytes),
    };
    store
        .put(NewEvidence {
            key: mkey,
            bytes,
            content_type: "application/json".into(),
            retention,
        })
        .await?;
    Ok(link)
}
