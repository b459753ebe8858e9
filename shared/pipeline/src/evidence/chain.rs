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

/// A bundle whose manifest is stored is complete: its manifest, with its chain place sealed if
/// a crash left it open; `None` while the manifest is not stored.
pub async fn stored<X: Ports>(x: &X, bundle: &Bundle<'_>) -> Result<Option<Written>, HandlerError> {
    let manifest_key = bundle.key(MANIFEST)?;
    let stored = match x.env().evidence.head(&manifest_key).await {
        Ok(stored) => stored,
        Err(PortError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
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
    Ok(Some(Written {
        manifest: manifest_key,
        sha256: stored.sha256,
        objects: 0,
    }))
}

/// Writes a bundle: the pieces `make` returns (given the link to the previous manifest), then
/// the manifest listing them, chained. A bundle already [`stored`] is not written again.
pub async fn write_bundle<X, F>(
    x: &X,
    bundle: &Bundle<'_>,
    make: F,
) -> Result<Written, HandlerError>
where
    X: Ports,
    F: FnOnce(Option<&Link>) -> Result<Vec<Piece>, HandlerError>,
{
    if let Some(done) = stored(x, bundle).await? {
        return Ok(done);
    }
    let manifest_key = bundle.key(MANIFEST)?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;
    use patchflow_core::ports::clock::ManualClock;
    use patchflow_core::ports::evidence::{EvidencePrefix, LockMode};
    use patchflow_core::ports::state::EvidenceIndex;
    use patchflow_local::evidence::FsEvidenceStore;
    use patchflow_local::queue::SqliteQueues;
    use patchflow_local::state::SqliteState;
    use patchflow_sim::connectors::{Outcomes, SimPager, SimPsa, SimRmm};

    use super::*;
    use crate::env::{Env, Settings};

    type TestEnv =
        Env<SqliteState, SqliteQueues, FsEvidenceStore, SimRmm<ManualClock>, SimPsa, SimPager>;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, day, 9, 0, 0).unwrap()
    }

    fn env(dir: &std::path::Path) -> TestEnv {
        let clock = Arc::new(ManualClock::new(at(8)));
        Env {
            state: SqliteState::in_memory().unwrap(),
            queues: SqliteQueues::in_memory(clock.clone(), 5).unwrap(),
            evidence: FsEvidenceStore::open(dir).unwrap(),
            rmm: SimRmm::new(
                Outcomes {
                    seed: 1,
                    failure_rate: 0.0,
                },
                clock,
            ),
            psa: SimPsa::default(),
            pager: SimPager::default(),
            policy: patchflow_core::policy::Policy::default(),
            settings: Settings::default(),
        }
    }

    fn client(id: &str) -> ClientId {
        ClientId::parse(id).unwrap()
    }

    fn bundle<'a>(client: &'a ClientId, tier: &'a str, day: u32) -> Bundle<'a> {
        Bundle {
            cycle: "2026-12".parse().unwrap(),
            client,
            bundle: tier,
            closed_at: at(day),
            retention: Retention {
                mode: LockMode::Compliance,
                retain_until: at(day) + chrono::Duration::days(2555),
            },
        }
    }

    fn pieces(text: &str) -> Result<Vec<Piece>, HandlerError> {
        Ok(vec![Piece {
            name: "record.json",
            bytes: text.as_bytes().to_vec(),
            content_type: "application/json",
        }])
    }

    async fn manifest(env: &TestEnv, key: &EvidenceKey) -> (Manifest, Sha256Digest) {
        let (bytes, head) = env.evidence.get(key).await.unwrap();
        (Manifest::from_bytes(&bytes).unwrap(), head.sha256)
    }

    #[tokio::test]
    async fn a_clients_manifests_chain_in_order_and_a_redelivery_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let env = env(dir.path());
        let (c, d) = (client("contoso"), client("fabrikam"));

        let first = write_bundle(&env, &bundle(&c, "servers.contoso.pilot", 10), |prev| {
            assert!(prev.is_none());
            pieces("{\"a\":1}")
        })
        .await
        .unwrap();
        assert_eq!(first.objects, 2);
        let second = write_bundle(&env, &bundle(&c, "workstations.pilot", 11), |prev| {
            assert_eq!(prev.map(|l| l.sequence), Some(1));
            pieces("{\"b\":2}")
        })
        .await
        .unwrap();
        // Another client's chain starts on its own.
        let other = write_bundle(&env, &bundle(&d, "workstations.pilot", 11), |_| {
            pieces("{\"c\":3}")
        })
        .await
        .unwrap();

        let (m1, sha1) = manifest(&env, &first.manifest).await;
        let (m2, _) = manifest(&env, &second.manifest).await;
        let (m3, _) = manifest(&env, &other.manifest).await;
        assert_eq!((m1.sequence, m1.previous.clone()), (1, None));
        assert_eq!(
            m2.previous,
            Some(Link {
                key: first.manifest.as_path(),
                sequence: 1,
                sha256: sha1,
            })
        );
        assert_eq!(m2.sequence, 2);
        assert_eq!((m3.sequence, m3.previous), (1, None));
        assert_eq!(m1.artifacts[0].sha256, Sha256Digest::of(b"{\"a\":1}"));
        assert_eq!(m1.artifacts[0].retention.mode, LockMode::Compliance);

        // A redelivery finds the manifest stored: nothing is written or reserved again.
        let again = write_bundle(&env, &bundle(&c, "servers.contoso.pilot", 10), |_| {
            panic!("a stored bundle is not made again")
        })
        .await
        .unwrap();
        assert_eq!((again.objects, again.sha256), (0, sha1));
        let head = load_head(&env, &c).await.unwrap().unwrap().0;
        assert_eq!(
            (head.manifest, head.sequence),
            (second.manifest.as_path(), 2)
        );
        assert_eq!(head.sha256, Some(second.sha256));
        // Everything written is indexed with its hash.
        let indexed = env
            .state
            .list_evidence("2026-12".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(indexed.len(), 6);
    }

    #[tokio::test]
    async fn a_bundle_waits_while_another_of_its_client_holds_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let env = env(dir.path());
        let c = client("contoso");
        // Another bundle reserved the next place and has not sealed it yet.
        let held = Head {
            manifest: "evidence/2026-12/contoso/servers.contoso.pilot/manifest.json".into(),
            sequence: 1,
            sha256: None,
            previous: None,
        };
        env.state
            .put_chain_head(&c, &encode_head(&held).unwrap(), None)
            .await
            .unwrap();
        let err = write_bundle(&env, &bundle(&c, "workstations.pilot", 11), |_| {
            pieces("{}")
        })
        .await
        .err()
        .unwrap();
        match err {
            HandlerError::Retry(why) => assert!(why.contains("servers.contoso.pilot"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Nothing of the waiting bundle was written.
        let prefix = EvidencePrefix {
            cycle: "2026-12".parse().unwrap(),
            client: Some(c.clone()),
            tier: None,
        };
        assert!(env.evidence.list(&prefix).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_crash_before_the_seal_is_sealed_by_the_redelivery_and_the_chain_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let env = env(dir.path());
        let c = client("contoso");
        let first = write_bundle(&env, &bundle(&c, "servers.contoso.pilot", 10), |_| {
            pieces("{}")
        })
        .await
        .unwrap();
        // As if the process died after writing the manifest, before sealing the head.
        let (head, version) = load_head(&env, &c).await.unwrap().unwrap();
        let open = Head {
            sha256: None,
            ..head
        };
        env.state
            .put_chain_head(&c, &encode_head(&open).unwrap(), Some(version))
            .await
            .unwrap();
        assert!(matches!(
            write_bundle(&env, &bundle(&c, "workstations.pilot", 11), |_| pieces(
                "{}"
            ))
            .await,
            Err(HandlerError::Retry(_))
        ));
        // The redelivery of the first bundle seals it; the second then chains after it.
        write_bundle(&env, &bundle(&c, "servers.contoso.pilot", 10), |_| {
            panic!("a stored bundle is not made again")
        })
        .await
        .unwrap();
        let second = write_bundle(&env, &bundle(&c, "workstations.pilot", 11), |_| {
            pieces("{}")
        })
        .await
        .unwrap();
        let (m2, _) = manifest(&env, &second.manifest).await;
        assert_eq!(
            m2.previous.map(|l| (l.key, l.sha256)),
            Some((first.manifest.as_path(), first.sha256))
        );
    }
}
