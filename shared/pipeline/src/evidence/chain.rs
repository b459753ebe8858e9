//! Writing a bundle: its artifacts once under retention, then its manifest, chained to the
//! client's previous manifest.
//!
//! A client's chain has one head in the state store (across cycles). Chaining a manifest first
//! reserves the next place: the head moves, on its version, to the new manifest's key with the
//! previous head as its link and no hash yet. The artifacts and the manifest are written, then
//! the head gets the manifest's hash. A retry finds its own reservation and writes the same
//! bytes; another bundle of the same client waits (retries) while a reservation is open, so two
//! manifests never link to the same predecessor.

use chrono::{DateTime, Utc};
use patchflow_core::ids::{ClientId, CycleId};
use patchflow_core::ports::evidence::{
    EvidenceKey, EvidenceStore, NewEvidence, Retention, Sha256Digest,
};
use patchflow_core::ports::state::{EvidenceIndex, EvidenceRecord};
use patchflow_core::ports::PortError;
use patchflow_evidence::manifest::{self, Artifact, Link, Manifest};
use patchflow_evidence::names::MANIFEST;
use serde::{Deserialize, Serialize};

use crate::env::Ports;
use crate::error::{corrupt, HandlerError};

/// A client's chain head, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Head {
    /// The manifest at the head.
    manifest: String,
    /// Its sequence.
    sequence: u64,
    /// Its hash, once written; `None` while its bundle is being written.
    #[serde(default)]
    sha256: Option<Sha256Digest>,
    /// Its link to the one before.
    previous: Option<Link>,
}

/// A place in the chain held for one manifest.
struct Reservation {
    head: Head,
    version: u64,
}

/// One artifact to write.
pub struct Piece {
    /// Its name in the bundle.
    pub name: &'static str,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its MIME type.
    pub content_type: &'static str,
}

/// A bundle written.
pub struct Written {
    /// The manifest's key.
    pub manifest: EvidenceKey,
    /// The manifest's SHA-256.
    pub sha256: Sha256Digest,
    /// Objects written by this call (0 when an earlier delivery wrote them all).
    pub objects: usize,
}

fn encode_head(head: &Head) -> Result<String, HandlerError> {
    serde_json::to_string(head)
        .map_err(|e| HandlerError::Poison(format!("encode the chain head: {e}")))
}

async fn load_head<X: Ports>(
    x: &X,
    client: &ClientId,
) -> Result<Option<(Head, u64)>, HandlerError> {
    let Some(doc) = x.env().state.chain_head(client).await? else {
        return Ok(None);
    };
    let head: Head = serde_json::from_str(&doc.body)
        .map_err(|e| corrupt(&format!("the manifest chain head of {client}"), e))?;
    Ok(Some((head, doc.version)))
}

/// Holds the chain's next place for `key` (or finds this key's own earlier reservation).
async fn reserve<X: Ports>(
    x: &X,
    client: &ClientId,
    key: &EvidenceKey,
) -> Result<Reservation, HandlerError> {
    let state = &x.env().state;
    let ours = key.as_path();
    let (head, expected) = match load_head(x, client).await? {
        Some((head, version)) if head.manifest == ours => return Ok(Reservation { head, version }),
        Some((head, _)) if head.sha256.is_none() => {
            return Err(HandlerError::Retry(format!(
                "the manifest chain of {client} is held by {} until its bundle is written",
                head.manifest
            )))
        }
        Some((prev, version)) => {
            let sha256 = prev.sha256.ok_or_else(|| {
                HandlerError::Retry(format!("the manifest chain of {client} moved"))
            })?;
            let head = Head {
                manifest: ours,
                sequence: prev.sequence + 1,
                sha256: None,
                previous: Some(Link {
                    key: prev.manifest,
                    sequence: prev.sequence,
                    sha256,
                }),
            };
            (head, Some(version))
        }
        None => (
            Head {
                manifest: ours,
                sequence: 1,
                sha256: None,
                previous: None,
            },
            None,
        ),
    };
    // A Conflict (another bundle of the client moved first) is a retry.
    let version = state
        .put_chain_head(client, &encode_head(&head)?, expected)
        .await?;
    Ok(Reservation { head, version })
}

/// Gives the reserved head its manifest's hash.
async fn seal<X: Ports>(
    x: &X,
    client: &ClientId,
    reservation: Reservation,
    sha256: Sha256Digest,
) -> Result<(), HandlerError> {
    if reservation.head.sha256.is_some() {
        return Ok(());
    }
    let head = Head {
        sha256: Some(sha256),
        ..reservation.head
    };
    x.env()
        .state
        .put_chain_head(client, &encode_head(&head)?, Some(reservation.version))
        .await?;
    Ok(())
}

/// Writes an object once; a second write of the same bytes is the same object (idempotent), of
/// other bytes a refusal.
pub async fn put_once<X: Ports>(
    x: &X,
    key: EvidenceKey,
    bytes: Vec<u8>,
    content_type: &str,
    retention: Retention,
) -> Result<EvidenceRecord, HandlerError> {
    let env = x.env();
    let sha = Sha256Digest::of(&bytes);
    let size = bytes.len() as u64;
    match env
        .evidence
        .put(NewEvidence {
            key: key.clone(),
            bytes,
            content_type: content_type.to_owned(),
            retention,
        })
        .await
    {
        Ok(_) => {}
        Err(PortError::Conflict(_)) => {
            let head = env.evidence.head(&key).await?;
            if head.sha256 != sha {
                return Err(HandlerError::Poison(format!(
                    "{} exists with other content (sha256 {}, expected {})",
                    key.as_path(),
                    head.sha256.to_hex(),
                    sha.to_hex()
                )));
            }
        }
        Err(e) => return Err(e.into()),
    }
    let record = EvidenceRecord {
        key,
        sha256: sha,
        size,
        retention,
    };
    match env.state.index_evidence(&record).await {
        Ok(()) | Err(PortError::Conflict(_)) => Ok(record),
        Err(e) => Err(e.into()),
    }
}

/// Where a bundle goes and how it is kept.
pub struct Bundle<'a> {
    /// The cycle.
    pub cycle: CycleId,
    /// The client.
    pub client: &'a ClientId,
    /// The tier, or the cycle roll-up's segment.
    pub bundle: &'a str,
    /// When it closed.
    pub closed_at: DateTime<Utc>,
    /// Its lock.
    pub retention: Retention,
}

impl Bundle<'_> {
    /// The key of one of its artifacts.
    pub fn key(&self, name: &str) -> Result<EvidenceKey, HandlerError> {
        EvidenceKey::new(self.cycle, self.client, self.bundle, name)
            .map_err(|e| HandlerError::Poison(e.to_string()))
    }
}

/// Writes a bundle: the pieces `make` returns (given the link to the previous manifest), then
/// the manifest listing them, chained. A bundle whose manifest is stored is complete: nothing
/// is written again (its chain place is sealed if a crash left it open).
pub async fn write_bundle<X, F>(
    x: &X,
    bundle: &Bundle<'_>,
    make: F,
) -> Result<Written, HandlerError>
where
    X: Ports,
    F: FnOnce(Option<&Link>) -> Result<Vec<Piece>, HandlerError>,
{
    let env = x.env();
    let manifest_key = bundle.key(MANIFEST)?;
    match env.evidence.head(&manifest_key).await {
        Ok(stored) => {
            if let Some((head, version)) = load_head(x, bundle.client).await? {
                if head.manifest == manifest_key.as_path() {
                    seal(
                        x,
                        bundle.client,
                        Reservation { head, version },
                        stored.sha256,
                    )
                    .await?;
                }
            }
            return Ok(Written {
                manifest: manifest_key,
                sha256: stored.sha256,
                objects: 0,
            });
        }
        Err(PortError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let reservation = reserve(x, bundle.client, &manifest_key).await?;
    let pieces = make(reservation.head.previous.as_ref())?;
    let mut artifacts = Vec::with_capacity(pieces.len());
    for piece in pieces {
        let rec = put_once(
            x,
            bundle.key(piece.name)?,
            piece.bytes,
            piece.content_type,
            bundle.retention,
        )
        .await?;
        artifacts.push(Artifact {
            name: piece.name.to_owned(),
            sha256: rec.sha256,
            size: rec.size,
            content_type: piece.content_type.to_owned(),
            retention: rec.retention,
        });
    }
    let objects = artifacts.len() + 1;
    let manifest = Manifest {
        schema: manifest::SCHEMA,
        cycle: bundle.cycle,
        client: bundle.client.to_string(),
        bundle: bundle.bundle.to_owned(),
        closed_at: bundle.closed_at,
        retention: bundle.retention,
        sequence: reservation.head.sequence,
        previous: reservation.head.previous.clone(),
        artifacts,
    };
    let bytes = manifest
        .to_bytes()
        .map_err(|e| HandlerError::Poison(format!("encode {manifest_key}: {e}")))?;
    let rec = put_once(
        x,
        manifest_key.clone(),
        bytes,
        "application/json",
        bundle.retention,
    )
    .await?;
    seal(x, bundle.client, reservation, rec.sha256).await?;
    Ok(Written {
        manifest: manifest_key,
        sha256: rec.sha256,
        objects,
    })
}
