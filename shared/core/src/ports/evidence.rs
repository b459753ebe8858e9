//! The evidence store: objects written once, hashed, and retained under a lock that nobody can
//! shorten, laid out by cycle, client and tier.

use std::fmt;
use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{ClientId, CycleId};
use crate::ports::PortError;
use crate::schedule::utc;

/// A SHA-256 digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// The digest of some bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The raw 32 bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From raw bytes (e.g. a decoded checksum header); `None` unless exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// Lower-case hex, as written in manifests.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses lower- or upper-case hex.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(chunk).ok()?;
            out[i] = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::from_hex(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("`{text}` is not a SHA-256 hex digest"))
        })
    }
}

/// Why a text is not an evidence key or name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid evidence name: use 1-128 characters of A-Z a-z 0-9 . _ - and no leading dot")]
pub struct EvidenceNameError(String);

fn valid_segment(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Where an object lives: `evidence/{cycle}/{client}/{tier}/{name}`. Every segment is checked,
/// so a key can never climb out of its folder or collide across clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EvidenceKey {
    cycle: CycleId,
    client: String,
    tier: String,
    name: String,
}

impl EvidenceKey {
    /// The key of an artifact of a tier.
    pub fn new(
        cycle: CycleId,
        client: &ClientId,
        tier: &str,
        name: &str,
    ) -> Result<Self, EvidenceNameError> {
        for seg in [client.as_str(), tier, name] {
            if !valid_segment(seg) {
                return Err(EvidenceNameError(seg.to_owned()));
            }
        }
        Ok(Self {
            cycle,
            client: client.to_string(),
            tier: tier.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The cycle.
    pub fn cycle(&self) -> CycleId {
        self.cycle
    }

    /// The client segment.
    pub fn client(&self) -> &str {
        &self.client
    }

    /// The tier segment.
    pub fn tier(&self) -> &str {
        &self.tier
    }

    /// The artifact's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The full key, `evidence/{cycle}/{client}/{tier}/{name}`.
    pub fn as_path(&self) -> String {
        format!(
            "evidence/{}/{}/{}/{}",
            self.cycle, self.client, self.tier, self.name
        )
    }
}

impl fmt::Display for EvidenceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_path())
    }
}

impl From<EvidenceKey> for String {
    fn from(k: EvidenceKey) -> String {
        k.as_path()
    }
}

impl TryFrom<String> for EvidenceKey {
    type Error = EvidenceNameError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let err = || EvidenceNameError(text.clone());
        let parts: Vec<&str> = text.split('/').collect();
        let [root, cycle, client, tier, name] = parts.as_slice() else {
            return Err(err());
        };
        if *root != "evidence" {
            return Err(err());
        }
        let cycle: CycleId = cycle.parse().map_err(|_| err())?;
        let client = ClientId::parse(*client).map_err(|_| err())?;
        Self::new(cycle, &client, tier, name)
    }
}

/// Which objects to list: a cycle, optionally narrowed to a client and a tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidencePrefix {
    /// The cycle.
    pub cycle: CycleId,
    /// Only this client.
    pub client: Option<ClientId>,
    /// Only this tier (needs a client).
    pub tier: Option<String>,
}

impl EvidencePrefix {
    /// The key prefix, ending in `/`.
    pub fn as_path(&self) -> String {
        let mut p = format!("evidence/{}/", self.cycle);
        if let Some(c) = &self.client {
            p.push_str(c.as_str());
            p.push('/');
            if let Some(t) = &self.tier {
                p.push_str(t);
                p.push('/');
            }
        }
        p
    }
}

/// Object Lock mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LockMode {
    /// Nobody, not even the account root, can delete the object or shorten its retention.
    Compliance,
    /// Users with a special permission can bypass the lock.
    Governance,
}

/// How long an object is kept, and how strictly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// The lock mode.
    pub mode: LockMode,
    /// Until when (UTC, whole seconds).
    #[serde(with = "utc")]
    pub retain_until: DateTime<Utc>,
}

/// An object to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvidence {
    /// Where.
    pub key: EvidenceKey,
    /// The content.
    pub bytes: Vec<u8>,
    /// MIME type.
    pub content_type: String,
    /// The lock.
    pub retention: Retention,
}

/// What the store says about a stored object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceHead {
    /// Where.
    pub key: EvidenceKey,
    /// Size in bytes.
    pub size: u64,
    /// The SHA-256 the store recorded at write time.
    pub sha256: Sha256Digest,
    /// The lock in force, as the store reports it.
    pub retention: Option<Retention>,
    /// Whether a legal hold is on.
    pub legal_hold: bool,
    /// The MIME type recorded at write time, when the store reports one.
    #[serde(default)]
    pub content_type: Option<String>,
}

/// The evidence store port.
///
/// Error contract: `put` returns `Conflict` when the key exists (it never overwrites);
/// `get`, `head`, `retention` and `set_legal_hold` return `NotFound` for a missing key; `get` returns
/// `Permanent` when the bytes no longer match the recorded checksum; `list` and `cycles` return
/// `Permanent` for an object or folder that is not laid out as evidence; any call may return
/// `Transient` or `Permanent` for the store's own failures. Everything but `put` and
/// `set_legal_hold` only reads, so an auditor's read-only access suffices for it.
pub trait EvidenceStore: Send + Sync {
    /// Writes an object once, under its retention, recording its SHA-256.
    fn put(
        &self,
        object: NewEvidence,
    ) -> impl Future<Output = Result<EvidenceHead, PortError>> + Send;

    /// Reads an object back, verifying it against the recorded SHA-256.
    fn get(
        &self,
        key: &EvidenceKey,
    ) -> impl Future<Output = Result<(Vec<u8>, EvidenceHead), PortError>> + Send;

    /// Reads what the store recorded about an object: size, checksum, lock, legal hold.
    fn head(
        &self,
        key: &EvidenceKey,
    ) -> impl Future<Output = Result<EvidenceHead, PortError>> + Send;

    /// Lists the keys under a prefix, in key order.
    fn list(
        &self,
        prefix: &EvidencePrefix,
    ) -> impl Future<Output = Result<Vec<EvidenceKey>, PortError>> + Send;

    /// The cycles that hold evidence, in order: with `list`, what covers a whole store.
    fn cycles(&self) -> impl Future<Output = Result<Vec<CycleId>, PortError>> + Send;

    /// The keys under a key prefix (`evidence/...`) that hold more than one version, with how
    /// many (delete markers included), in key order. Evidence is written once, so any is an
    /// overwrite or a deletion, its locked original kept as an older version. Empty for a store
    /// that keeps one version per key.
    fn versions_beyond_one(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<(String, usize)>, PortError>> + Send;

    /// Reads the lock in force on an object back from the store itself (S3's
    /// GetObjectRetention; a local store's recorded retention while the file is read-only):
    /// `None` when the object carries no lock. What a closing tier checks its evidence is
    /// retained by.
    fn retention(
        &self,
        key: &EvidenceKey,
    ) -> impl Future<Output = Result<Option<Retention>, PortError>> + Send;

    /// Turns an object's legal hold on or off.
    fn set_legal_hold(
        &self,
        key: &EvidenceKey,
        on: bool,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> EvidenceKey {
        EvidenceKey::new(
            "2026-12".parse().unwrap(),
            &ClientId::parse("contoso").unwrap(),
            "server-pilot",
            "report.html",
        )
        .unwrap()
    }

    #[test]
    fn an_evidence_key_is_laid_out_by_cycle_client_and_tier_and_round_trips() {
        let k = key();
        assert_eq!(
            k.as_path(),
            "evidence/2026-12/contoso/server-pilot/report.html"
        );
        assert_eq!(EvidenceKey::try_from(k.as_path()).unwrap(), k);
    }

    #[test]
    fn an_evidence_key_cannot_climb_out_of_its_folder() {
        let c = ClientId::parse("contoso").unwrap();
        for bad in ["..", "../x", "a/b", ".hidden", "", "sp ace"] {
            assert!(
                EvidenceKey::new("2026-12".parse().unwrap(), &c, "t", bad).is_err(),
                "{bad}"
            );
        }
        assert!(EvidenceKey::try_from("evidence/2026-12/contoso/t/a/b".to_owned()).is_err());
        assert!(EvidenceKey::try_from("other/2026-12/contoso/t/a".to_owned()).is_err());
    }

    #[test]
    fn a_digest_round_trips_through_hex() {
        let d = Sha256Digest::of(b"hello");
        assert_eq!(
            d.to_hex(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(Sha256Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Sha256Digest::from_hex("zz"), None);
    }

    #[test]
    fn a_prefix_narrows_by_client_then_tier() {
        let p = EvidencePrefix {
            cycle: "2026-12".parse().unwrap(),
            client: Some(ClientId::parse("c").unwrap()),
            tier: Some("t".into()),
        };
        assert_eq!(p.as_path(), "evidence/2026-12/c/t/");
    }
}
