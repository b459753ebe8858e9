//! Writing a bundle: its artifacts once under retention, then its manifest, chained to the
//! client's previous manifest.
//!
//! A client's chain has one head in the state store (across cycles). The artifacts are written
//! first: nothing in them depends on the chain. Then the next place is taken: the head moves, on
//! its version, to the new manifest, carrying the whole manifest (its link to the previous head
//! included) while it is open. The manifest is written and the head sealed with its hash.
//! Whoever finds a place open, a retry of the same bundle or another bundle of the client, first
//! finishes it from what the head carries: so two manifests never link to the same predecessor,
//! a retry writes the same bytes, and a bundle that failed after taking its place (a crash, a
//! dead-lettered message) never holds the chain.

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
    /// Its hash, once written; `None` while the place is open.
    #[serde(default)]
    sha256: Option<Sha256Digest>,
    /// While the place is open: the manifest to write there (its artifacts are stored).
    #[serde(default)]
    pending: Option<Manifest>,
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

fn encode_head(client: &ClientId, head: &Head) -> Result<String, HandlerError> {
    serde_json::to_string(head).map_err(|e| {
        HandlerError::Poison(format!("encode the manifest chain head of {client}: {e}"))
    })
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

/// Finishes the place at the head: writes the manifest it carries (once) and seals the head
/// with its hash. Returns the manifest's hash.
async fn finish<X: Ports>(
    x: &X,
    client: &ClientId,
    head: Head,
    version: u64,
) -> Result<Sha256Digest, HandlerError> {
    let Some(manifest) = head.pending.clone() else {
        return head.sha256.ok_or_else(|| {
            corrupt_head(client, "an open place without the manifest to write there")
        });
    };
    let key = EvidenceKey::try_from(head.manifest.clone())
        .map_err(|e| corrupt_head(client, &e.to_string()))?;
    let bytes = manifest
        .to_bytes()
        .map_err(|e| HandlerError::Poison(format!("encode {key}: {e}")))?;
    let rec = put_once(x, key, bytes, "application/json", manifest.retention).await?;
    let sealed = Head {
        sha256: Some(rec.sha256),
        pending: None,
        ..head
    };
    match x
        .env()
        .state
        .put_chain_head(client, &encode_head(client, &sealed)?, Some(version))
        .await
    {
        // The head moved from this version only by being sealed (by another finisher of the same
        // place) and then, perhaps, taken for the next: sealed either way.
        Ok(_) | Err(PortError::Conflict(_)) => Ok(rec.sha256),
        Err(e) => Err(e.into()),
    }
}

fn corrupt_head(client: &ClientId, why: &str) -> HandlerError {
    HandlerError::Poison(format!(
        "stored manifest chain head of {client} is unusable: {why}"
    ))
}

/// Writes an object once; a second write of the same bytes is the same object (idempotent), of
/// other bytes a refusal. The record is the object as stored (its retention included).
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
    let retention = match env
        .evidence
        .put(NewEvidence {
            key: key.clone(),
            bytes,
            content_type: content_type.to_owned(),
            retention,
        })
        .await
    {
        Ok(_) => retention,
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
            // The lock it was stored under, which a manifest must declare.
            head.retention.unwrap_or(retention)
        }
        Err(e) => return Err(e.into()),
    };
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
        if head.manifest == manifest_key.as_path() && head.sha256.is_none() {
            finish(x, bundle.client, head, version).await?;
        }
    }
    Ok(Some(Written {
        manifest: manifest_key,
        sha256: stored.sha256,
        objects: 0,
    }))
}

/// How often a bundle tries to take the next place while other bundles of its client move the
/// chain; then the message is retried.
const PLACE_ATTEMPTS: usize = 4;

/// Writes a bundle: its pieces, then the manifest listing them, chained. A bundle already
/// [`stored`] is not written again.
pub async fn write_bundle<X: Ports>(
    x: &X,
    bundle: &Bundle<'_>,
    pieces: Vec<Piece>,
) -> Result<Written, HandlerError> {
    if let Some(done) = stored(x, bundle).await? {
        return Ok(done);
    }
    let manifest_key = bundle.key(MANIFEST)?;
    let ours = manifest_key.as_path();
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
    let draft = Manifest {
        schema: manifest::SCHEMA,
        cycle: bundle.cycle,
        client: bundle.client.to_string(),
        bundle: bundle.bundle.to_owned(),
        closed_at: bundle.closed_at,
        retention: bundle.retention,
        sequence: 1,
        previous: None,
        artifacts,
    };
    let state = &x.env().state;
    for _ in 0..PLACE_ATTEMPTS {
        let (manifest, expected) = match load_head(x, bundle.client).await? {
            // Our own place, taken by an earlier delivery: finish it.
            Some((head, version)) if head.manifest == ours => {
                let sha256 = finish(x, bundle.client, head, version).await?;
                return Ok(Written {
                    manifest: manifest_key,
                    sha256,
                    objects,
                });
            }
            // Another bundle's place, left open: finish it first, then take the next.
            Some((head, version)) if head.sha256.is_none() => {
                finish(x, bundle.client, head, version).await?;
                continue;
            }
            Some((head, version)) => {
                let sha256 = head
                    .sha256
                    .ok_or_else(|| corrupt_head(bundle.client, "a sealed place without a hash"))?;
                let manifest = Manifest {
                    sequence: head.sequence + 1,
                    previous: Some(Link {
                        key: head.manifest,
                        sequence: head.sequence,
                        sha256,
                    }),
                    ..draft.clone()
                };
                (manifest, Some(version))
            }
            None => (draft.clone(), None),
        };
        let taken = Head {
            manifest: ours.clone(),
            sequence: manifest.sequence,
            sha256: None,
            pending: Some(manifest),
        };
        match state
            .put_chain_head(
                bundle.client,
                &encode_head(bundle.client, &taken)?,
                expected,
            )
            .await
        {
            Ok(version) => {
                let sha256 = finish(x, bundle.client, taken, version).await?;
                return Ok(Written {
                    manifest: manifest_key,
                    sha256,
                    objects,
                });
            }
            // Another bundle of the client moved the chain: read it again.
            Err(PortError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(HandlerError::Retry(format!(
        "the manifest chain of {} kept moving while {ours} waited for its place",
        bundle.client
    )))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;
    use patchflow_core::ports::clock::ManualClock;
    use patchflow_core::ports::evidence::LockMode;
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

    fn pieces(text: &str) -> Vec<Piece> {
        vec![Piece {
            name: "record.json",
            bytes: text.as_bytes().to_vec(),
            content_type: "application/json",
        }]
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

        let first = write_bundle(
            &env,
            &bundle(&c, "servers.contoso.pilot", 10),
            pieces("{\"a\":1}"),
        )
        .await
        .unwrap();
        assert_eq!(first.objects, 2);
        let second = write_bundle(
            &env,
            &bundle(&c, "workstations.pilot", 11),
            pieces("{\"b\":2}"),
        )
        .await
        .unwrap();
        // Another client's chain starts on its own.
        let other = write_bundle(
            &env,
            &bundle(&d, "workstations.pilot", 11),
            pieces("{\"c\":3}"),
        )
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

        // A redelivery finds the manifest stored: nothing is written or taken again.
        let again = write_bundle(
            &env,
            &bundle(&c, "servers.contoso.pilot", 10),
            pieces("{\"a\":1}"),
        )
        .await
        .unwrap();
        assert_eq!((again.objects, again.sha256), (0, sha1));
        let head = load_head(&env, &c).await.unwrap().unwrap().0;
        assert_eq!(
            (head.manifest, head.sequence),
            (second.manifest.as_path(), 2)
        );
        assert_eq!((head.sha256, head.pending), (Some(second.sha256), None));
        // Everything written is indexed with its hash.
        let indexed = env
            .state
            .list_evidence("2026-12".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(indexed.len(), 6);
    }

    #[tokio::test]
    async fn a_place_another_bundle_left_open_is_finished_before_the_next_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let env = env(dir.path());
        let c = client("contoso");
        // A bundle whose delivery died after taking its place: its artifacts are stored, its
        // manifest is not, and the head carries the manifest it was to write.
        let abandoned = bundle(&c, "servers.contoso.pilot", 10);
        let rec = put_once(
            &env,
            abandoned.key("record.json").unwrap(),
            b"{}".to_vec(),
            "application/json",
            abandoned.retention,
        )
        .await
        .unwrap();
        let key = abandoned.key(MANIFEST).unwrap();
        let open = Head {
            manifest: key.as_path(),
            sequence: 1,
            sha256: None,
            pending: Some(Manifest {
                schema: manifest::SCHEMA,
                cycle: abandoned.cycle,
                client: c.to_string(),
                bundle: abandoned.bundle.to_owned(),
                closed_at: abandoned.closed_at,
                retention: abandoned.retention,
                sequence: 1,
                previous: None,
                artifacts: vec![Artifact {
                    name: "record.json".into(),
                    sha256: rec.sha256,
                    size: rec.size,
                    content_type: "application/json".into(),
                    retention: rec.retention,
                }],
            }),
        };
        env.state
            .put_chain_head(&c, &encode_head(&c, &open).unwrap(), None)
            .await
            .unwrap();

        // The next bundle of the client finishes that place, then takes the one after it.
        let next = write_bundle(&env, &bundle(&c, "workstations.pilot", 11), pieces("{}"))
            .await
            .unwrap();
        let (first, sha1) = manifest(&env, &key).await;
        assert_eq!((first.sequence, first.artifacts.len()), (1, 1));
        let (second, _) = manifest(&env, &next.manifest).await;
        assert_eq!(
            second.previous,
            Some(Link {
                key: key.as_path(),
                sequence: 1,
                sha256: sha1,
            })
        );
        // And the abandoned bundle's redelivery finds itself complete.
        let again = write_bundle(&env, &abandoned, pieces("{}")).await.unwrap();
        assert_eq!((again.objects, again.sha256), (0, sha1));
    }

    #[tokio::test]
    async fn a_crash_before_the_seal_is_healed_and_the_chain_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let env = env(dir.path());
        let c = client("contoso");
        let first = write_bundle(&env, &bundle(&c, "servers.contoso.pilot", 10), pieces("{}"))
            .await
            .unwrap();
        // As if the process died after writing the manifest, before sealing the head.
        let (head, version) = load_head(&env, &c).await.unwrap().unwrap();
        let (stored_manifest, _) = manifest(&env, &first.manifest).await;
        let open = Head {
            sha256: None,
            pending: Some(stored_manifest),
            ..head
        };
        env.state
            .put_chain_head(&c, &encode_head(&c, &open).unwrap(), Some(version))
            .await
            .unwrap();
        // The redelivery of the first bundle seals it without writing anything new.
        let again = write_bundle(&env, &bundle(&c, "servers.contoso.pilot", 10), pieces("{}"))
            .await
            .unwrap();
        assert_eq!((again.objects, again.sha256), (0, first.sha256));
        let head = load_head(&env, &c).await.unwrap().unwrap().0;
        assert_eq!((head.sha256, head.pending), (Some(first.sha256), None));
        // The second then chains after it.
        let second = write_bundle(&env, &bundle(&c, "workstations.pilot", 11), pieces("{}"))
            .await
            .unwrap();
        let (m2, _) = manifest(&env, &second.manifest).await;
        assert_eq!(
            m2.previous.map(|l| (l.key, l.sha256)),
            Some((first.manifest.as_path(), first.sha256))
        );
    }

    #[tokio::test]
    async fn a_records_first_snapshot_is_what_every_later_attempt_writes() {
        let dir = tempfile::tempdir().unwrap();
        let env = env(dir.path());
        let cycle = "2026-12".parse().unwrap();
        let keep = |record: u32, days: i64| super::super::Snapshot {
            record,
            retention: Retention {
                mode: LockMode::Compliance,
                retain_until: at(10) + chrono::Duration::days(days),
            },
        };
        let first =
            super::super::snapshot(&env, cycle, "workstations.pilot/contoso", || keep(1, 2555))
                .await
                .unwrap();
        // A later attempt that would build another record (a decision, a root cause or the
        // retention setting changed meanwhile) gets the first one.
        let later =
            super::super::snapshot(&env, cycle, "workstations.pilot/contoso", || keep(2, 3650))
                .await
                .unwrap();
        assert_eq!((first.record, later.record), (1, 1));
        assert_eq!(later.retention, keep(1, 2555).retention);
    }
}
