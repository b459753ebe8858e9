//! A bundle's manifest (`manifest.json`): every artifact of the bundle with its SHA-256, size,
//! content type and retention, and a link to the previous manifest of the same client.
//!
//! The manifests of a client form one chain across tiers and cycles, in the order their bundles
//! closed: the first has `sequence` 1 and no `previous`; each later one names the previous
//! manifest's key, sequence and the SHA-256 of its stored bytes. Changing a byte of any
//! artifact changes its hash (the manifest no longer matches it); changing a manifest changes
//! its hash (the next link no longer matches it); removing or reordering manifests leaves a link
//! pointing at a missing or wrong object, or a gap in the sequence.

use chrono::{DateTime, Utc};
use patchflow_core::ids::CycleId;
use patchflow_core::ports::evidence::{Retention, Sha256Digest};
use patchflow_core::schedule::utc;
use serde::{Deserialize, Serialize};

/// The manifest format's version.
pub const SCHEMA: u32 = 1;

/// A bundle's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The cycle.
    pub cycle: CycleId,
    /// The client.
    pub client: String,
    /// The bundle: a tier id, or [`crate::CYCLE_BUNDLE`] for the cycle's roll-up.
    pub bundle: String,
    /// When the bundle closed (the tier validated; the cycle's last tier closed).
    #[serde(with = "utc")]
    pub closed_at: DateTime<Utc>,
    /// The manifest's own lock (each artifact states its own too).
    pub retention: Retention,
    /// 1 for the client's first manifest, one more for each after.
    pub sequence: u64,
    /// The client's previous manifest; `None` only for sequence 1.
    pub previous: Option<Link>,
    /// The bundle's artifacts, every object in its folder but this manifest.
    pub artifacts: Vec<Artifact>,
}

/// A link to a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Its key, `evidence/{cycle}/{client}/{bundle}/manifest.json`.
    pub key: String,
    /// Its sequence.
    pub sequence: u64,
    /// The SHA-256 of its stored bytes.
    pub sha256: Sha256Digest,
}

/// An artifact as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Its name in the bundle's folder.
    pub name: String,
    /// The SHA-256 of its bytes.
    pub sha256: Sha256Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Its MIME type.
    pub content_type: String,
    /// Its lock.
    pub retention: Retention,
}

impl Manifest {
    /// The bytes stored: pretty JSON, so equal manifests are equal bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec_pretty(self)
    }

    /// Reads stored bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}
