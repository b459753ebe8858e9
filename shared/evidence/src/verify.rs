//! Verification of stored evidence: every hash recomputed, every chain walked, every lock read.
//!
//! Everything here goes through the [`EvidenceStore`] port and only reads from it (except
//! [`copy`], which writes to its destination), so the same code checks a local directory and an
//! S3 bucket, and an auditor's read-only access is enough.
//!
//! - [`verify`] reads every object of a [`Scope`] once and checks, per bundle folder: a manifest
//!   exists, parses and names the folder it is in; every listed artifact exists with the SHA-256,
//!   size and content type the manifest gives; nothing in the folder is missing from the
//!   manifest; every object's lock, as the store reports it, is in the expected mode and lasts at
//!   least the expected time after the bundle closed and no less than the manifest declares. Then
//!   per client it walks the manifests by sequence: unique sequences, each `previous` link naming
//!   the manifest of the sequence before with the SHA-256 of its stored bytes (the chain's order
//!   is the order the bundles took their places, which need not be their closing times' order);
//!   a link leaving the scope is followed and checked, anchoring the chain there. A cycle
//!   roll-up's record pins its tiers' manifests by SHA-256; each pin is checked.
//! - [`summarize`] says what evidence exists, bundle by bundle (`patchflow audit list`).
//! - [`copy`] copies a scope, and the manifests its chains link to outside it, to another store
//!   (`patchflow audit pull`).
//!
//! What a verification cannot see is the newest manifest of a chain being removed with its
//! bundle: the report gives each chain's tip (key, sequence and SHA-256) for comparison with one
//! noted earlier or held by the client.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use patchflow_core::ids::{ClientId, CycleId};
use patchflow_core::ports::evidence::{
    EvidenceHead, EvidenceKey, EvidencePrefix, EvidenceStore, LockMode, NewEvidence, Retention,
    Sha256Digest,
};
use patchflow_core::ports::{error_chain, PortError};
use patchflow_core::schedule::utc;

use crate::manifest::{Link, Manifest, SCHEMA};
use crate::names::MANIFEST;

/// Which evidence to look at: everything, a cycle, a client (in one cycle or in all), a bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    cycle: Option<CycleId>,
    client: Option<ClientId>,
    bundle: Option<String>,
}

/// Why a scope cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// A prefix that is not `evidence/YYYY-MM[/CLIENT[/BUNDLE]]`.
    #[error("`{0}` is not an evidence prefix: expected evidence/YYYY-MM[/CLIENT[/BUNDLE]]")]
    Prefix(String),
    /// A client or bundle that cannot be a key segment.
    #[error(
        "`{0}` is not a valid client or bundle: use 1-128 characters of A-Z a-z 0-9 . _ - and no leading dot"
    )]
    Segment(String),
    /// A bundle without its client.
    #[error("a bundle is narrowed to within a client: give the client too")]
    BundleWithoutClient,
}

/// The rule every key segment follows (see `EvidenceKey`).
fn valid_segment(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Scope {
    /// Every cycle, client and bundle.
    pub fn everything() -> Self {
        Self::default()
    }

    /// A scope narrowed to a cycle, a client and a bundle (a bundle needs its client).
    pub fn new(
        cycle: Option<CycleId>,
        client: Option<&str>,
        bundle: Option<&str>,
    ) -> Result<Self, ScopeError> {
        let client = client
            .map(|c| {
                ClientId::parse(c)
                    .ok()
                    .filter(|_| valid_segment(c))
                    .ok_or_else(|| ScopeError::Segment(c.to_owned()))
            })
            .transpose()?;
        if let Some(b) = bundle {
            if client.is_none() {
                return Err(ScopeError::BundleWithoutClient);
            }
            if !valid_segment(b) {
                return Err(ScopeError::Segment(b.to_owned()));
            }
        }
        Ok(Self {
            cycle,
            client,
            bundle: bundle.map(str::to_owned),
        })
    }

    /// Parses a key prefix: `evidence`, `evidence/2026-12`, `evidence/2026-12/contoso` or
    /// `evidence/2026-12/contoso/servers.contoso.pilot`, with or without a trailing `/`.
    pub fn from_prefix(text: &str) -> Result<Self, ScopeError> {
        let err = || ScopeError::Prefix(text.to_owned());
        let trimmed = text.strip_suffix('/').unwrap_or(text);
        let parts: Vec<&str> = trimmed.split('/').collect();
        match parts.as_slice() {
            ["evidence"] => Ok(Self::everything()),
            ["evidence", cycle, rest @ ..] if rest.len() <= 2 => {
                let cycle: CycleId = cycle.parse().map_err(|_| err())?;
                Self::new(Some(cycle), rest.first().copied(), rest.get(1).copied())
            }
            _ => Err(err()),
        }
    }

    /// The cycle, if narrowed to one.
    pub fn cycle(&self) -> Option<CycleId> {
        self.cycle
    }

    /// The client, if narrowed to one.
    pub fn client(&self) -> Option<&ClientId> {
        self.client.as_ref()
    }

    /// The bundle, if narrowed to one.
    pub fn bundle(&self) -> Option<&str> {
        self.bundle.as_deref()
    }

    /// Whether a key lies inside the scope.
    pub fn contains(&self, key: &EvidenceKey) -> bool {
        self.cycle.is_none_or(|c| c == key.cycle())
            && self
                .client
                .as_ref()
                .is_none_or(|c| c.as_str() == key.client())
            && self.bundle.as_deref().is_none_or(|b| b == key.tier())
    }

    /// Every key in the scope, in key order.
    pub async fn keys<S: EvidenceStore>(&self, store: &S) -> Result<Vec<EvidenceKey>, PortError> {
        let cycles = match self.cycle {
            Some(c) => vec![c],
            None => store.cycles().await?,
        };
        let mut keys = Vec::new();
        for cycle in cycles {
            let prefix = EvidencePrefix {
                cycle,
                client: self.client.clone(),
                tier: self.bundle.clone(),
            };
            keys.extend(store.list(&prefix).await?);
        }
        keys.sort();
        Ok(keys)
    }
}

impl fmt::Display for Scope {
    /// As a key prefix: `evidence/`, `evidence/2026-12/contoso/`, `evidence/*/contoso/`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("evidence/")?;
        match self.cycle {
            Some(c) => write!(f, "{c}/")?,
            None if self.client.is_some() => f.write_str("*/")?,
            None => {}
        }
        if let Some(c) = &self.client {
            write!(f, "{c}/")?;
            if let Some(b) = &self.bundle {
                write!(f, "{b}/")?;
            }
        }
        Ok(())
    }
}

/// What the evidence must satisfy beyond its own records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expectations {
    /// The shortest retention after a bundle closed ([`crate::DEFAULT_RETENTION_DAYS`] days by
    /// default).
    pub min_retention: Duration,
    /// The lock mode every object must have at least (COMPLIANCE by default; GOVERNANCE accepts
    /// either).
    pub mode: LockMode,
}

impl Default for Expectations {
    fn default() -> Self {
        Self {
            min_retention: Duration::days(crate::DEFAULT_RETENTION_DAYS),
            mode: LockMode::Compliance,
        }
    }
}

/// How far a verification, summary or copy has got.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// The scope was listed.
    Listed {
        /// Bundle folders in the scope.
        bundles: usize,
        /// Objects in the scope.
        objects: usize,
    },
    /// An object of the scope is being read.
    Object(&'a EvidenceKey),
    /// A manifest outside the scope that a chain links to is being read.
    Link(&'a EvidenceKey),
}

/// Something wrong with one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The object's key (or the key where an object should be).
    pub key: String,
    /// What is wrong, with the values that disagree.
    pub why: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.why)
    }
}

/// One bundle folder as verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleReport {
    /// The cycle.
    pub cycle: CycleId,
    /// The client.
    pub client: String,
    /// The bundle: a tier id, or [`crate::CYCLE_BUNDLE`].
    pub bundle: String,
    /// Objects in the folder, the manifest included.
    pub objects: usize,
    /// Their bytes, as read.
    pub bytes: u64,
    /// The manifest's sequence, when it could be read.
    pub sequence: Option<u64>,
    /// When the bundle closed, per its manifest.
    pub closed_at: Option<DateTime<Utc>>,
    /// The earliest retain-until the store reports for the folder's objects.
    pub retain_until: Option<DateTime<Utc>>,
}

/// One client's chain of manifests as walked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// The client.
    pub client: String,
    /// Manifests of the client in the scope.
    pub manifests: usize,
    /// The lowest sequence in the scope.
    pub first: u64,
    /// The highest sequence in the scope.
    pub last: u64,
    /// Where the chain enters the scope, when its first manifest links to one outside it whose
    /// stored bytes match the link; `None` when it starts at sequence 1 (or is broken there).
    pub anchor: Option<Link>,
    /// The newest manifest: note its SHA-256 to notice it later being removed or replaced.
    pub tip: Link,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// What was verified.
    pub scope: Scope,
    /// Against what.
    pub expectations: Expectations,
    /// Every bundle folder, in key order.
    pub bundles: Vec<BundleReport>,
    /// Every client's chain, by client.
    pub chains: Vec<ChainReport>,
    /// Objects read and hashed.
    pub objects: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Objects whose lock the store reported and that were checked against the expectations.
    pub locks: usize,
    /// Objects under a legal hold.
    pub legal_holds: usize,
    /// Manifests outside the scope read to check a link.
    pub links_followed: usize,
    /// Everything wrong, by key (each key's problems in the order found); empty when the
    /// evidence verifies.
    pub problems: Vec<Problem>,
}

impl Report {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// The first bad object and why.
    pub fn first_problem(&self) -> Option<&Problem> {
        self.problems.first()
    }
}

/// An object as read: its digest and size, what the store says of it, and the bytes of a
/// manifest (the only ones kept).
struct Read {
    sha256: Sha256Digest,
    size: u64,
    head: EvidenceHead,
    bytes: Option<Vec<u8>>,
}

/// Reads an object once. A passing failure ends the verification (its answer would be unknown);
/// anything else the store refuses is the object's problem.
async fn read<S: EvidenceStore>(
    store: &S,
    key: &EvidenceKey,
    keep: bool,
) -> Result<Result<Read, String>, PortError> {
    match store.get(key).await {
        Ok((bytes, head)) => Ok(Ok(Read {
            sha256: Sha256Digest::of(&bytes),
            size: bytes.len() as u64,
            head,
            bytes: keep.then_some(bytes),
        })),
        Err(e @ PortError::Transient { .. }) => Err(e),
        Err(PortError::NotFound(_)) => Ok(Err("listed by the store, but missing when read".into())),
        Err(e) => Ok(Err(format!(
            "the store refuses its bytes: {}",
            refusal(&key.as_path(), &e)
        ))),
    }
}

/// What a store's refusal of an object says, without repeating its key: for a checksum, the
/// digest the bytes have and the one recorded at write time.
pub fn refusal(key: &str, e: &PortError) -> String {
    match e {
        PortError::Permanent { context, source } | PortError::Transient { context, source } => {
            let rest = if context.ends_with(key) {
                ""
            } else {
                context
                    .strip_prefix(key)
                    .map_or(context.as_str(), |r| r.trim_start_matches(':').trim_start())
            };
            let cause = error_chain(source.as_ref());
            if rest.is_empty() {
                cause
            } else {
                format!("{rest}: {cause}")
            }
        }
        other => other.to_string(),
    }
}

fn mode_name(mode: LockMode) -> &'static str {
    match mode {
        LockMode::Compliance => "COMPLIANCE",
        LockMode::Governance => "GOVERNANCE",
    }
}

/// COMPLIANCE binds everyone, GOVERNANCE all but the holders of a bypass permission.
fn strength(mode: LockMode) -> u8 {
    match mode {
        LockMode::Governance => 0,
        LockMode::Compliance => 1,
    }
}

/// What is wrong with an object's lock as the store reports it.
fn lock_problems(
    reported: Option<&Retention>,
    declared: &Retention,
    closed_at: DateTime<Utc>,
    expect: &Expectations,
) -> Vec<String> {
    let Some(lock) = reported else {
        return vec!["no lock: the store reports no retention for it".into()];
    };
    let mut out = Vec::new();
    if strength(lock.mode) < strength(expect.mode) {
        out.push(format!(
            "lock mode {}, expected {}",
            mode_name(lock.mode),
            mode_name(expect.mode)
        ));
    }
    if strength(lock.mode) < strength(declared.mode) {
        out.push(format!(
            "lock mode {}, weaker than the {} its manifest declares",
            mode_name(lock.mode),
            mode_name(declared.mode)
        ));
    }
    // Object Lock keeps whole seconds: a fraction of a second in a closing time or a declared
    // date is not a shortened lock.
    let floor = whole_seconds(closed_at + expect.min_retention);
    if lock.retain_until < floor {
        out.push(format!(
            "retained until {}, before {} ({} days after the bundle closed at {})",
            utc::format(&lock.retain_until),
            utc::format(&floor),
            expect.min_retention.num_days(),
            utc::format(&closed_at)
        ));
    }
    if lock.retain_until < whole_seconds(declared.retain_until) {
        out.push(format!(
            "retained until {}, earlier than the {} its manifest declares: the retention was \
             shortened",
            utc::format(&lock.retain_until),
            utc::format(&declared.retain_until)
        ));
    }
    out
}

/// An instant without its fraction of a second.
fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// A manifest of the scope that was read and parsed.
struct Stored {
    key: String,
    sha256: Sha256Digest,
    manifest: Manifest,
}

type BundleId = (CycleId, String, String);

fn group(keys: Vec<EvidenceKey>) -> BTreeMap<BundleId, Vec<EvidenceKey>> {
    let mut bundles: BTreeMap<BundleId, Vec<EvidenceKey>> = BTreeMap::new();
    for key in keys {
        let id = (key.cycle(), key.client().to_owned(), key.tier().to_owned());
        bundles.entry(id).or_default().push(key);
    }
    bundles
}

fn manifest_key((cycle, client, bundle): &BundleId) -> String {
    format!("evidence/{cycle}/{client}/{bundle}/{MANIFEST}")
}

/// The state of one verification.
struct Verifier<'a> {
    expect: &'a Expectations,
    problems: Vec<Problem>,
    locks: usize,
    legal_holds: usize,
    /// Manifests outside the scope read to check a link.
    followed: usize,
    /// Manifest keys of the scope that are missing or could not be read or trusted (their
    /// problem is reported; a link to one is not checked again).
    unreadable: BTreeSet<String>,
}

impl Verifier<'_> {
    fn problem(&mut self, key: impl Into<String>, why: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            why: why.into(),
        });
    }

    fn check_lock(
        &mut self,
        key: &str,
        head: &EvidenceHead,
        declared: &Retention,
        at: DateTime<Utc>,
    ) {
        if head.retention.is_some() {
            self.locks += 1;
        }
        for why in lock_problems(head.retention.as_ref(), declared, at, self.expect) {
            self.problem(key, why);
        }
    }

    /// Checks a bundle folder's objects against its manifest; returns the manifest if it could
    /// be read and names this folder.
    fn check_bundle(
        &mut self,
        id: &BundleId,
        objects: &mut BTreeMap<String, Result<Read, String>>,
    ) -> Option<Stored> {
        let (cycle, client, bundle) = id;
        let mkey = manifest_key(id);
        let Some(read) = objects.remove(MANIFEST) else {
            let n = objects.len();
            self.problem(
                &mkey,
                format!("missing: the bundle folder holds {n} object(s) but no {MANIFEST}"),
            );
            return None;
        };
        let read = match read {
            Ok(r) => r,
            Err(why) => {
                self.problem(&mkey, why);
                return None;
            }
        };
        let manifest = match Manifest::from_bytes(read.bytes.as_deref().unwrap_or_default()) {
            Ok(m) => m,
            Err(e) => {
                self.problem(&mkey, format!("does not parse as a manifest: {e}"));
                return None;
            }
        };
        let mut named_here = true;
        if manifest.schema != SCHEMA {
            self.problem(
                &mkey,
                format!(
                    "field `schema`: {}, this verifier reads {SCHEMA}",
                    manifest.schema
                ),
            );
            named_here = false;
        }
        for (field, says, is) in [
            ("cycle", manifest.cycle.to_string(), cycle.to_string()),
            ("client", manifest.client.clone(), client.clone()),
            ("bundle", manifest.bundle.clone(), bundle.clone()),
        ] {
            if says != is {
                self.problem(
                    &mkey,
                    format!("field `{field}`: the manifest says `{says}`, its key says `{is}`"),
                );
                named_here = false;
            }
        }
        self.check_lock(&mkey, &read.head, &manifest.retention, manifest.closed_at);

        let mut listed = BTreeSet::new();
        for a in &manifest.artifacts {
            let akey = format!("evidence/{cycle}/{client}/{bundle}/{}", a.name);
            if a.name == MANIFEST || !valid_segment(&a.name) {
                self.problem(
                    &akey,
                    format!("the manifest lists an artifact named `{}`", a.name),
                );
                continue;
            }
            if !listed.insert(a.name.as_str()) {
                self.problem(&akey, "the manifest lists this artifact twice");
                continue;
            }
            let got = match objects.get(&a.name) {
                None => {
                    self.problem(
                        &akey,
                        "missing: listed in the manifest, absent from the store",
                    );
                    continue;
                }
                Some(Err(why)) => {
                    self.problem(&akey, why.clone());
                    continue;
                }
                Some(Ok(r)) => r,
            };
            if got.sha256 != a.sha256 {
                self.problem(
                    &akey,
                    format!(
                        "SHA-256 {} does not match the manifest's {}",
                        got.sha256, a.sha256
                    ),
                );
            }
            if got.size != a.size {
                self.problem(
                    &akey,
                    format!("{} bytes, the manifest says {}", got.size, a.size),
                );
            }
            if let Some(ct) = got.head.content_type.as_deref() {
                if ct != a.content_type {
                    self.problem(
                        &akey,
                        format!(
                            "content type `{ct}`, the manifest says `{}`",
                            a.content_type
                        ),
                    );
                }
            }
            self.check_lock(&akey, &got.head, &a.retention, manifest.closed_at);
        }
        for (name, got) in objects.iter() {
            if listed.contains(name.as_str()) {
                continue;
            }
            let key = format!("evidence/{cycle}/{client}/{bundle}/{name}");
            match got {
                Err(why) => self.problem(&key, why.clone()),
                Ok(_) => self.problem(
                    &key,
                    "not listed in the manifest: an object added to the bundle after it closed",
                ),
            }
        }
        named_here.then_some(Stored {
            key: mkey,
            sha256: read.sha256,
            manifest,
        })
    }

    /// Checks that the tier manifests a cycle roll-up's record pins (key and SHA-256) are the
    /// ones stored: a tier bundle replaced after the roll-up no longer matches its pin.
    async fn check_pins<S: EvidenceStore>(
        &mut self,
        store: &S,
        record_key: &str,
        bytes: &[u8],
        in_scope: &BTreeMap<&str, &Stored>,
        progress: &mut impl FnMut(Progress<'_>),
    ) -> Result<(), PortError> {
        let record: crate::record::CycleRecord = match serde_json::from_slice(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.problem(record_key, format!("not a cycle roll-up record: {e}"));
                return Ok(());
            }
        };
        for tier in &record.tiers {
            let stored = match in_scope.get(tier.manifest.as_str()) {
                Some(s) => Some(s.sha256),
                None => match EvidenceKey::try_from(tier.manifest.clone()) {
                    Err(_) => None,
                    Ok(target) => {
                        progress(Progress::Link(&target));
                        self.followed += 1;
                        match store.get(&target).await {
                            Ok((bytes, _)) => Some(Sha256Digest::of(&bytes)),
                            Err(e @ PortError::Transient { .. }) => return Err(e),
                            Err(_) => None,
                        }
                    }
                },
            };
            match stored {
                Some(sha) if sha.to_hex() == tier.manifest_sha256 => {}
                Some(sha) => self.problem(
                    record_key,
                    format!(
                        "field `tiers[{}].manifest_sha256`: pins {} at {}, but it hashes to {sha}",
                        tier.tier, tier.manifest, tier.manifest_sha256
                    ),
                ),
                None => self.problem(
                    record_key,
                    format!(
                        "field `tiers[{}].manifest`: pins {}, which is missing or unreadable",
                        tier.tier, tier.manifest
                    ),
                ),
            }
        }
        Ok(())
    }

    /// Checks one manifest's link to its previous; returns the link when it leaves the scope
    /// and holds (the chain's anchor, if this is the first manifest of the scope).
    async fn check_link<S: EvidenceStore>(
        &mut self,
        store: &S,
        m: &Stored,
        link: &Link,
        in_scope: &BTreeMap<&str, &Stored>,
        progress: &mut impl FnMut(Progress<'_>),
    ) -> Result<Option<Link>, PortError> {
        let seq = m.manifest.sequence;
        if link.sequence.checked_add(1) != Some(seq) {
            self.problem(
                &m.key,
                format!(
                    "field `previous.sequence`: {}, expected {} (one before its own {seq})",
                    link.sequence,
                    seq.saturating_sub(1)
                ),
            );
        }
        let target = match EvidenceKey::try_from(link.key.clone()) {
            Ok(k) if k.name() == MANIFEST && k.client() == m.manifest.client => k,
            _ => {
                self.problem(
                    &m.key,
                    format!(
                        "field `previous.key`: `{}` is not a manifest of client {}",
                        link.key, m.manifest.client
                    ),
                );
                return Ok(None);
            }
        };
        // The previous manifest's hash and sequence, from the scope or from the store.
        let (sha256, prev_seq, outside) = if let Some(p) = in_scope.get(link.key.as_str()) {
            (p.sha256, p.manifest.sequence, false)
        } else if self.unreadable.contains(&link.key) {
            // Its own problem is reported; nothing here can be checked against it.
            return Ok(None);
        } else {
            progress(Progress::Link(&target));
            self.followed += 1;
            let bytes = match store.get(&target).await {
                Ok((bytes, _)) => bytes,
                Err(e @ PortError::Transient { .. }) => return Err(e),
                Err(PortError::NotFound(_)) => {
                    self.problem(
                        &link.key,
                        format!(
                            "missing: {} (sequence {seq}) links to it as sequence {}: a manifest \
                             was removed from the chain",
                            m.key, link.sequence
                        ),
                    );
                    return Ok(None);
                }
                Err(e) => {
                    self.problem(
                        &link.key,
                        format!("the store refuses its bytes: {}", refusal(&link.key, &e)),
                    );
                    return Ok(None);
                }
            };
            match Manifest::from_bytes(&bytes) {
                Ok(p) if p.client == m.manifest.client => {
                    (Sha256Digest::of(&bytes), p.sequence, true)
                }
                Ok(p) => {
                    self.problem(
                        &link.key,
                        format!(
                            "field `client`: `{}`, its key says `{}`",
                            p.client,
                            target.client()
                        ),
                    );
                    return Ok(None);
                }
                Err(e) => {
                    self.problem(&link.key, format!("does not parse as a manifest: {e}"));
                    return Ok(None);
                }
            }
        };
        let mut holds = true;
        if sha256 != link.sha256 {
            self.problem(
                &link.key,
                format!(
                    "its stored bytes hash to {sha256}, but {} (sequence {seq}) links to it with \
                     {}: it was changed after the next manifest was written",
                    m.key, link.sha256
                ),
            );
            holds = false;
        }
        if prev_seq != link.sequence {
            self.problem(
                &link.key,
                format!(
                    "sequence {prev_seq}, but {} links to it as sequence {}",
                    m.key, link.sequence
                ),
            );
            holds = false;
        }
        Ok((outside && holds).then(|| link.clone()))
    }
}

/// Verifies every object of a scope and the chains of its manifests, reading each object once.
///
/// Returns `Err` only when the store cannot answer (listing fails, or a read keeps failing
/// transiently); everything wrong with the evidence itself is a [`Problem`] of the report,
/// sorted by key, so the first is the first bad object.
pub async fn verify<S: EvidenceStore>(
    store: &S,
    scope: &Scope,
    expect: &Expectations,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Report, PortError> {
    let keys = scope.keys(store).await?;
    let total = keys.len();
    let bundles = group(keys);
    progress(Progress::Listed {
        bundles: bundles.len(),
        objects: total,
    });
    let mut v = Verifier {
        expect,
        problems: Vec::new(),
        locks: 0,
        legal_holds: 0,
        followed: 0,
        unreadable: BTreeSet::new(),
    };
    let (mut objects_read, mut bytes_read) = (0, 0);
    let mut reports = Vec::new();
    let mut stored: Vec<Stored> = Vec::new();
    // Each cycle roll-up's record and the tier manifests it pins by hash.
    let mut pins: Vec<(String, Vec<u8>)> = Vec::new();
    for (id, keys) in &bundles {
        let mut objects = BTreeMap::new();
        for key in keys {
            progress(Progress::Object(key));
            // Manifests, and a roll-up's record (its pins), are parsed: their bytes are kept.
            let keep = key.name() == MANIFEST
                || (key.tier() == crate::CYCLE_BUNDLE && key.name() == crate::names::RECORD);
            let got = read(store, key, keep).await?;
            objects.insert(key.name().to_owned(), got);
        }
        let mut report = BundleReport {
            cycle: id.0,
            client: id.1.clone(),
            bundle: id.2.clone(),
            objects: keys.len(),
            bytes: 0,
            sequence: None,
            closed_at: None,
            retain_until: None,
        };
        for r in objects.values().flatten() {
            objects_read += 1;
            report.bytes += r.size;
            if r.head.legal_hold {
                v.legal_holds += 1;
            }
            if let Some(lock) = r.head.retention {
                report.retain_until = Some(
                    report
                        .retain_until
                        .map_or(lock.retain_until, |t| t.min(lock.retain_until)),
                );
            }
        }
        bytes_read += report.bytes;
        if let Some(Ok(Read {
            bytes: Some(bytes), ..
        })) = objects.get(crate::names::RECORD)
        {
            // The record's time-to-patch figures re-derived from its own instants.
            let (cycle, client, bundle) = id;
            let key = format!(
                "evidence/{cycle}/{client}/{bundle}/{}",
                crate::names::RECORD
            );
            match crate::record::record_problems(bytes) {
                Ok(found) => {
                    for why in found {
                        v.problem(key.as_str(), why);
                    }
                }
                Err(why) => v.problem(key.as_str(), why),
            }
        }
        if id.2 == crate::CYCLE_BUNDLE {
            if let Some(Ok(Read {
                bytes: Some(bytes), ..
            })) = objects.get(crate::names::RECORD)
            {
                let (cycle, client, bundle) = id;
                pins.push((
                    format!(
                        "evidence/{cycle}/{client}/{bundle}/{}",
                        crate::names::RECORD
                    ),
                    bytes.clone(),
                ));
            }
        }
        match v.check_bundle(id, &mut objects) {
            Some(m) => {
                report.sequence = Some(m.manifest.sequence);
                report.closed_at = Some(m.manifest.closed_at);
                stored.push(m);
            }
            None => {
                v.unreadable.insert(manifest_key(id));
            }
        }
        reports.push(report);
    }

    let in_scope: BTreeMap<&str, &Stored> = stored.iter().map(|s| (s.key.as_str(), s)).collect();
    for (record_key, bytes) in &pins {
        v.check_pins(store, record_key, bytes, &in_scope, &mut progress)
            .await?;
    }
    let mut by_client: BTreeMap<&str, Vec<&Stored>> = BTreeMap::new();
    for s in &stored {
        by_client
            .entry(s.manifest.client.as_str())
            .or_default()
            .push(s);
    }
    let mut chains = Vec::new();
    for (client, mut list) in by_client {
        list.sort_by(|a, b| (a.manifest.sequence, &a.key).cmp(&(b.manifest.sequence, &b.key)));
        for pair in list.windows(2) {
            if let [a, b] = pair {
                if a.manifest.sequence == b.manifest.sequence {
                    v.problem(
                        &b.key,
                        format!(
                            "sequence {} is also the sequence of {}: each of a client's \
                             manifests has its own",
                            b.manifest.sequence, a.key
                        ),
                    );
                }
            }
        }
        let mut anchor = None;
        for (i, m) in list.iter().enumerate() {
            match (&m.manifest.previous, m.manifest.sequence) {
                (_, 0) => v.problem(&m.key, "field `sequence`: 0, sequences start at 1"),
                (None, 1) => {}
                (Some(l), 1) => v.problem(
                    &m.key,
                    format!(
                        "sequence 1 links to a previous manifest ({}): only a client's first \
                         manifest has sequence 1",
                        l.key
                    ),
                ),
                (None, n) => v.problem(
                    &m.key,
                    format!(
                        "sequence {n} has no previous link: only a client's first manifest \
                         (sequence 1) has none"
                    ),
                ),
                (Some(link), _) => {
                    let held = v
                        .check_link(store, m, link, &in_scope, &mut progress)
                        .await?;
                    if i == 0 {
                        anchor = held;
                    }
                }
            }
        }
        if let (Some(first), Some(last)) = (list.first(), list.last()) {
            chains.push(ChainReport {
                client: client.to_owned(),
                manifests: list.len(),
                first: first.manifest.sequence,
                last: last.manifest.sequence,
                anchor,
                tip: Link {
                    key: last.key.clone(),
                    sequence: last.manifest.sequence,
                    sha256: last.sha256,
                },
            });
        }
    }

    // Evidence is written once: a key with more versions was overwritten or deleted, even when
    // its latest version and every later manifest were rewritten to agree.
    let scope_prefix = scope.to_string();
    let prefix = scope_prefix.split('*').next().unwrap_or("evidence/");
    for (key, versions) in store.versions_beyond_one(prefix).await? {
        let in_scope = EvidenceKey::try_from(key.clone()).map_or(true, |k| scope.contains(&k));
        if in_scope {
            v.problem(
                key,
                format!(
                    "{versions} versions (evidence is written once): overwritten or deleted since \
                     it was stored; its older versions hold the locked original"
                ),
            );
        }
    }

    let mut problems = v.problems;
    problems.sort_by(|a, b| a.key.cmp(&b.key));
    problems.dedup();
    Ok(Report {
        scope: scope.clone(),
        expectations: *expect,
        bundles: reports,
        chains,
        objects: objects_read,
        bytes: bytes_read,
        locks: v.locks,
        legal_holds: v.legal_holds,
        links_followed: v.followed,
        problems,
    })
}

/// What a bundle folder holds, as `audit list` shows it (nothing is verified: see [`verify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSummary {
    /// The cycle.
    pub cycle: CycleId,
    /// The client.
    pub client: String,
    /// The bundle: a tier id, or [`crate::CYCLE_BUNDLE`].
    pub bundle: String,
    /// Objects in the folder, the manifest included.
    pub objects: usize,
    /// Their bytes, as the store reports them.
    pub bytes: u64,
    /// The manifest's sequence.
    pub sequence: Option<u64>,
    /// When the bundle closed, per its manifest.
    pub closed_at: Option<DateTime<Utc>>,
    /// The earliest retain-until the store reports for the folder's objects.
    pub retain_until: Option<DateTime<Utc>>,
    /// What could not be read or has no lock, one line each.
    pub notes: Vec<String>,
}

/// What evidence a scope holds, bundle by bundle, from the store's own records: one `head` per
/// object and one `get` per manifest.
pub async fn summarize<S: EvidenceStore>(
    store: &S,
    scope: &Scope,
) -> Result<Vec<BundleSummary>, PortError> {
    let mut out = Vec::new();
    for (id, keys) in group(scope.keys(store).await?) {
        let mut s = BundleSummary {
            cycle: id.0,
            client: id.1,
            bundle: id.2,
            objects: keys.len(),
            bytes: 0,
            sequence: None,
            closed_at: None,
            retain_until: None,
            notes: Vec::new(),
        };
        let mut has_manifest = false;
        for key in &keys {
            let head = if key.name() == MANIFEST {
                has_manifest = true;
                store.get(key).await.map(|(bytes, head)| {
                    match Manifest::from_bytes(&bytes) {
                        Ok(m) => {
                            s.sequence = Some(m.sequence);
                            s.closed_at = Some(m.closed_at);
                        }
                        Err(e) => s.notes.push(format!("{MANIFEST} does not parse: {e}")),
                    }
                    head
                })
            } else {
                store.head(key).await
            };
            match head {
                Ok(h) => {
                    s.bytes += h.size;
                    match h.retention {
                        Some(lock) => {
                            s.retain_until = Some(
                                s.retain_until
                                    .map_or(lock.retain_until, |t| t.min(lock.retain_until)),
                            )
                        }
                        None => s.notes.push(format!("{}: no lock", key.name())),
                    }
                }
                Err(e @ PortError::Transient { .. }) => return Err(e),
                Err(e) => {
                    let why = refusal(&key.as_path(), &e);
                    s.notes.push(format!("{}: {why}", key.name()));
                }
            }
        }
        if !has_manifest {
            s.notes.push(format!("no {MANIFEST}"));
        }
        out.push(s);
    }
    Ok(out)
}

/// What [`copy`] copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    /// Objects of the scope copied.
    pub objects: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Manifests outside the scope that its chains link to, copied too (only the manifest, so
    /// that a verification of the copy can check the links).
    pub links: Vec<String>,
    /// Manifests outside the scope that a chain links to but the source does not have; a
    /// verification of the copy (or of the source) names them.
    pub missing_links: Vec<String>,
}

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The scope could not be listed.
    #[error("cannot list the source")]
    List(#[source] PortError),
    /// An object could not be read, or its bytes do not match its recorded checksum.
    #[error("{key}: cannot be read from the source")]
    Read {
        /// The object.
        key: String,
        /// Why.
        #[source]
        source: PortError,
    },
    /// The source reports no lock for an object, which the copy cannot record.
    #[error(
        "{key}: the source reports no Object Lock retention for it, so the copy cannot record one \
         (`patchflow audit verify` of the source names every such object)"
    )]
    Unlocked {
        /// The object.
        key: String,
    },
    /// The destination refused an object.
    #[error("{key}: cannot be written to the destination")]
    Write {
        /// The object.
        key: String,
        /// Why.
        #[source]
        source: PortError,
    },
}

async fn copy_one<S: EvidenceStore, D: EvidenceStore>(
    from: &S,
    to: &D,
    key: &EvidenceKey,
) -> Result<Vec<u8>, CopyError> {
    let (bytes, head) = from.get(key).await.map_err(|source| CopyError::Read {
        key: key.to_string(),
        source,
    })?;
    let retention = head.retention.ok_or_else(|| CopyError::Unlocked {
        key: key.to_string(),
    })?;
    let write = |source| CopyError::Write {
        key: key.to_string(),
        source,
    };
    to.put(NewEvidence {
        key: key.clone(),
        bytes: bytes.clone(),
        content_type: head
            .content_type
            .unwrap_or_else(|| "application/octet-stream".to_owned()),
        retention,
    })
    .await
    .map_err(write)?;
    if head.legal_hold {
        to.set_legal_hold(key, true).await.map_err(write)?;
    }
    Ok(bytes)
}

/// Copies every object of a scope from one store to another with the content type, lock and
/// legal hold the source reports, then the manifests outside the scope that the copied ones
/// link to. Each object's bytes are checked against the source's recorded checksum on the way
/// (the source's `get`), so a copy holds only what the source vouched for.
pub async fn copy<S: EvidenceStore, D: EvidenceStore>(
    from: &S,
    to: &D,
    scope: &Scope,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Copied, CopyError> {
    let keys = scope.keys(from).await.map_err(CopyError::List)?;
    progress(Progress::Listed {
        bundles: group(keys.clone()).len(),
        objects: keys.len(),
    });
    let copied_keys: BTreeSet<String> = keys.iter().map(EvidenceKey::as_path).collect();
    let mut done = Copied::default();
    let mut links = BTreeSet::new();
    for key in &keys {
        progress(Progress::Object(key));
        let bytes = copy_one(from, to, key).await?;
        done.objects += 1;
        done.bytes += bytes.len() as u64;
        if key.name() == MANIFEST {
            // A manifest that does not parse is copied as it is; verification names it.
            if let Some(link) = Manifest::from_bytes(&bytes).ok().and_then(|m| m.previous) {
                if !copied_keys.contains(&link.key) {
                    links.insert(link.key);
                }
            }
        }
    }
    for text in links {
        let Ok(key) = EvidenceKey::try_from(text.clone()) else {
            done.missing_links.push(text);
            continue;
        };
        progress(Progress::Link(&key));
        match copy_one(from, to, &key).await {
            Ok(_) => done.links.push(text),
            Err(CopyError::Read {
                source: PortError::NotFound(_),
                ..
            }) => done.missing_links.push(text),
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use chrono::TimeZone;
    use patchflow_local::evidence::FsEvidenceStore;
    use serde_json::Value;

    use super::*;

    const CLIENTS: [&str; 2] = ["contoso", "fabrikam"];

    /// A client's bundles in the order they closed: two in November, one in December.
    fn bundles(client: &str) -> [(CycleId, String); 3] {
        [
            (nov(), format!("servers.{client}.pilot")),
            (nov(), "workstations.production".to_owned()),
            (dec(), format!("servers.{client}.pilot")),
        ]
    }

    fn nov() -> CycleId {
        "2026-11".parse().unwrap()
    }

    fn dec() -> CycleId {
        "2026-12".parse().unwrap()
    }

    fn closed_at(client: usize, bundle: usize) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, 6, 0, 0).unwrap()
            + Duration::days(12 * bundle as i64)
            + Duration::hours(client as i64)
    }

    fn lock(closed_at: DateTime<Utc>, days: i64) -> Retention {
        Retention {
            mode: LockMode::Compliance,
            retain_until: closed_at + Duration::days(days),
        }
    }

    fn key(cycle: CycleId, client: &str, bundle: &str, name: &str) -> EvidenceKey {
        EvidenceKey::new(cycle, &ClientId::parse(client).unwrap(), bundle, name).unwrap()
    }

    /// The manifest key of a client's bundle (by closing order).
    fn manifest_of(client: &str, bundle: usize) -> EvidenceKey {
        let (cycle, b) = &bundles(client)[bundle];
        key(*cycle, client, b, MANIFEST)
    }

    struct Fixture {
        store: FsEvidenceStore,
        _dir: tempfile::TempDir,
    }

    /// Two clients, each with three chained bundles across November and December, every object
    /// locked for `days` after its bundle closed (the bundle `short`, if any, for a year only).
    async fn fixture_with(days: i64, short: Option<(usize, usize)>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = FsEvidenceStore::open(dir.path().join("store")).unwrap();
        for (c, client) in CLIENTS.iter().enumerate() {
            let mut previous = None;
            for (b, bundle) in bundles(client).iter().enumerate() {
                let days = if short == Some((c, b)) { 365 } else { days };
                let (cycle, bundle) = bundle;
                let link = crate::testing::write_bundle(
                    &store,
                    *cycle,
                    client,
                    bundle,
                    closed_at(c, b),
                    days,
                    b as u64 + 1,
                    previous.take(),
                )
                .await
                .unwrap();
                previous = Some(link);
            }
        }
        Fixture { store, _dir: dir }
    }

    async fn fixture() -> Fixture {
        fixture_with(crate::DEFAULT_RETENTION_DAYS, None).await
    }

    impl Fixture {
        async fn verify(&self, scope: &Scope) -> Report {
            verify(&self.store, scope, &Expectations::default(), |_| {})
                .await
                .unwrap()
        }

        async fn verify_all(&self) -> Report {
            self.verify(&Scope::everything()).await
        }

        fn meta_path(&self, key: &EvidenceKey) -> PathBuf {
            self.store
                .root()
                .join(".meta")
                .join(format!("{}.json", key.as_path()))
        }

        /// Overwrites an object's bytes as someone with the rights to lift the read-only flag
        /// would; with `record`, rewrites the store's record of them to match.
        fn overwrite(&self, key: &EvidenceKey, bytes: &[u8], record: bool) {
            let path = self.store.path_of(key);
            writable(&path);
            std::fs::write(&path, bytes).unwrap();
            if record {
                self.edit_meta(key, |m| {
                    m["sha256"] = Value::from(Sha256Digest::of(bytes).to_hex());
                    m["size"] = Value::from(bytes.len() as u64);
                });
            }
        }

        fn edit_meta(&self, key: &EvidenceKey, edit: impl FnOnce(&mut Value)) {
            let path = self.meta_path(key);
            writable(&path);
            let mut meta: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            edit(&mut meta);
            std::fs::write(&path, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
        }

        fn read(&self, key: &EvidenceKey) -> Vec<u8> {
            std::fs::read(self.store.path_of(key)).unwrap()
        }

        fn manifest(&self, key: &EvidenceKey) -> Manifest {
            Manifest::from_bytes(&self.read(key)).unwrap()
        }

        /// Replaces a manifest with another, its record rewritten to match: returns the link to
        /// the new one.
        fn rewrite_manifest(&self, key: &EvidenceKey, m: &Manifest) -> Link {
            let bytes = m.to_bytes().unwrap();
            self.overwrite(key, &bytes, true);
            Link {
                key: key.as_path(),
                sequence: m.sequence,
                sha256: Sha256Digest::of(&bytes),
            }
        }

        /// Removes an object and the store's record of it.
        fn remove(&self, key: &EvidenceKey) {
            std::fs::remove_file(self.store.path_of(key)).unwrap();
            std::fs::remove_file(self.meta_path(key)).unwrap();
        }
    }

    fn writable(path: &Path) {
        let mut perms = std::fs::metadata(path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(path, perms).unwrap();
    }

    fn keys_of(report: &Report) -> BTreeSet<&str> {
        report.problems.iter().map(|p| p.key.as_str()).collect()
    }

    fn first(report: &Report) -> &Problem {
        report
            .first_problem()
            .unwrap_or_else(|| panic!("a problem was expected: {report:#?}"))
    }

    #[tokio::test]
    async fn an_intact_fixture_verifies_clean_and_walks_both_chains_from_sequence_one() {
        // GIVEN two clients' evidence, three chained bundles each
        let f = fixture().await;
        // WHEN the whole store is verified
        let report = f.verify_all().await;
        // THEN nothing is wrong, every object was read and its lock checked
        assert!(report.is_clean(), "{:#?}", report.problems);
        assert_eq!(report.bundles.len(), 6);
        assert_eq!(report.objects, 30);
        assert_eq!(report.locks, 30);
        assert_eq!(report.links_followed, 0);
        // AND each chain runs 1..3 from sequence 1 to its December manifest
        assert_eq!(report.chains.len(), 2);
        for (chain, client) in report.chains.iter().zip(CLIENTS) {
            assert_eq!(chain.client, client);
            assert_eq!((chain.manifests, chain.first, chain.last), (3, 1, 3));
            assert_eq!(chain.anchor, None);
            assert_eq!(chain.tip.key, manifest_of(client, 2).as_path());
            assert_eq!(
                chain.tip.sha256,
                Sha256Digest::of(&f.read(&manifest_of(client, 2)))
            );
        }
        let b = &report.bundles[0];
        assert_eq!((b.cycle, b.objects, b.sequence), (nov(), 5, Some(1)));
    }

    #[tokio::test]
    async fn a_flipped_byte_in_an_artifact_is_refused_by_the_store_checksum_and_named() {
        let f = fixture().await;
        let k = key(dec(), "fabrikam", "servers.fabrikam.pilot", "report.html");
        let mut bytes = f.read(&k);
        bytes[7] ^= 0x01;
        f.overwrite(&k, &bytes, false);

        let report = f.verify_all().await;
        assert_eq!(first(&report).key, k.as_path());
        assert!(
            first(&report).why.contains("refuses its bytes"),
            "{report:#?}"
        );
        assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    }

    #[tokio::test]
    async fn a_flipped_byte_in_an_artifact_with_its_record_rewritten_is_caught_by_the_manifest() {
        let f = fixture().await;
        let k = key(nov(), "contoso", "workstations.production", "outcomes.csv");
        let mut bytes = f.read(&k);
        bytes[0] ^= 0x20;
        f.overwrite(&k, &bytes, true);

        let report = f.verify_all().await;
        assert_eq!(first(&report).key, k.as_path());
        assert!(
            first(&report).why.contains("does not match the manifest"),
            "{report:#?}"
        );
        assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    }

    #[tokio::test]
    async fn a_flipped_byte_in_a_manifest_is_refused_by_the_store_checksum_and_named() {
        let f = fixture().await;
        let k = manifest_of("contoso", 1);
        let mut bytes = f.read(&k);
        bytes[40] ^= 0x01;
        f.overwrite(&k, &bytes, false);

        let report = f.verify_all().await;
        assert_eq!(first(&report).key, k.as_path());
        assert!(
            first(&report).why.contains("refuses its bytes"),
            "{report:#?}"
        );
    }

    #[tokio::test]
    async fn a_flipped_byte_in_a_manifest_with_its_record_rewritten_is_caught_only_by_the_chain() {
        // GIVEN the middle manifest of a chain with one space turned into a tab: the same
        // manifest to a JSON reader, other bytes, and a store record rewritten to match them
        let f = fixture().await;
        let k = manifest_of("contoso", 1);
        let mut bytes = f.read(&k);
        let at = bytes.iter().position(|b| *b == b' ').unwrap();
        bytes[at] = b'\t';
        assert_eq!(Manifest::from_bytes(&bytes).unwrap(), f.manifest(&k));
        f.overwrite(&k, &bytes, true);

        // WHEN verified THEN the next manifest's link is what catches it, and it is named
        let report = f.verify_all().await;
        assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
        assert_eq!(first(&report).key, k.as_path());
        assert!(first(&report).why.contains("hash to"), "{report:#?}");
        assert!(first(&report)
            .why
            .contains(&manifest_of("contoso", 2).as_path()));
    }

    #[tokio::test]
    async fn a_deleted_artifact_is_named_as_missing() {
        let f = fixture().await;
        let k = key(nov(), "fabrikam", "servers.fabrikam.pilot", "summary.png");
        f.remove(&k);

        let report = f.verify_all().await;
        assert_eq!(first(&report).key, k.as_path());
        assert!(first(&report).why.starts_with("missing"), "{report:#?}");
        assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    }

    #[tokio::test]
    async fn a_manifest_removed_from_the_middle_of_a_chain_is_named() {
        // GIVEN a whole bundle removed with its manifest, the middle one of contoso's chain
        let f = fixture().await;
        let (cycle, bundle) = &bundles("contoso")[1];
        for name in [
            "record.json",
            "report.html",
            "summary.png",
            "outcomes.csv",
            MANIFEST,
        ] {
            f.remove(&key(*cycle, "contoso", bundle, name));
        }

        // THEN the link of the next one names the removed manifest
        let report = f.verify_all().await;
        assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
        assert_eq!(first(&report).key, manifest_of("contoso", 1).as_path());
        assert!(first(&report).why.contains("removed from the chain"));
        assert_eq!(report.links_followed, 1);
    }

    #[tokio::test]
    async fn two_manifests_swapped_in_sequence_are_caught_by_the_next_link() {
        // GIVEN contoso's first two manifests swapped: the second renumbered 1 with no previous,
        // the first renumbered 2 and linked to it, their records rewritten to match
        let f = fixture().await;
        let (a, b) = (manifest_of("contoso", 0), manifest_of("contoso", 1));
        let (mut ma, mut mb) = (f.manifest(&a), f.manifest(&b));
        mb.sequence = 1;
        mb.previous = None;
        let lb = f.rewrite_manifest(&b, &mb);
        ma.sequence = 2;
        ma.previous = Some(lb);
        f.rewrite_manifest(&a, &ma);

        // THEN the manifest the third one links to is named: it no longer hashes to the link,
        // nor has the sequence the link gives it
        let report = f.verify_all().await;
        assert_eq!(keys_of(&report), BTreeSet::from([b.as_path().as_str()]));
        assert!(report
            .problems
            .iter()
            .any(|p| p.key == b.as_path() && p.why.contains("hash to")));
        assert!(report
            .problems
            .iter()
            .any(|p| p.key == b.as_path() && p.why.contains("links to it as sequence 2")));
    }

    #[tokio::test]
    async fn a_chain_rewritten_consistently_to_its_tip_shows_only_in_its_tip() {
        // GIVEN the same swap with the third manifest relinked too: every link holds
        let f = fixture().await;
        let tip_before = f.verify_all().await;
        let (a, b, c) = (
            manifest_of("fabrikam", 0),
            manifest_of("fabrikam", 1),
            manifest_of("fabrikam", 2),
        );
        let (mut ma, mut mb, mut mc) = (f.manifest(&a), f.manifest(&b), f.manifest(&c));
        mb.sequence = 1;
        mb.previous = None;
        let lb = f.rewrite_manifest(&b, &mb);
        ma.sequence = 2;
        ma.previous = Some(lb);
        let la = f.rewrite_manifest(&a, &ma);
        mc.previous = Some(la);
        f.rewrite_manifest(&c, &mc);

        // THEN the chain holds in itself, and what gives it away is its tip's hash, which the
        // report prints for the auditor to compare with the one noted at the last verification
        let report = f.verify_all().await;
        assert!(report.is_clean(), "{:#?}", report.problems);
        let tip = |r: &Report| {
            r.chains
                .iter()
                .find(|ch| ch.client == "fabrikam")
                .map(|ch| ch.tip.clone())
                .unwrap()
        };
        assert_eq!(tip(&report).key, tip(&tip_before).key);
        assert_ne!(tip(&report).sha256, tip(&tip_before).sha256);
    }

    #[tokio::test]
    async fn a_retention_shorter_than_the_expectation_is_named() {
        // GIVEN contoso's December bundle locked for a year only, as its manifest declares
        let f = fixture_with(crate::DEFAULT_RETENTION_DAYS, Some((0, 2))).await;
        let report = f.verify_all().await;
        // THEN each of its five objects is named, the manifest first
        assert_eq!(report.problems.len(), 5, "{:#?}", report.problems);
        let (cycle, bundle) = &bundles("contoso")[2];
        assert_eq!(
            first(&report).key,
            key(*cycle, "contoso", bundle, MANIFEST).as_path()
        );
        for p in &report.problems {
            assert!(p
                .key
                .starts_with(&format!("evidence/{cycle}/contoso/{bundle}/")));
            assert!(p.why.contains("2555 days after the bundle closed"), "{p}");
        }
    }

    #[tokio::test]
    async fn a_retention_shortened_below_what_the_manifest_declares_or_weakened_is_named() {
        // GIVEN evidence locked for ten years, more than the seven expected
        let f = fixture_with(3650, None).await;
        assert!(f.verify_all().await.is_clean());
        // WHEN the store's record of one artifact says eight years
        let k = key(dec(), "contoso", "servers.contoso.pilot", "record.json");
        let until = closed_at(0, 2) + Duration::days(2920);
        f.edit_meta(&k, |m| {
            m["retention"]["retain_until"] = Value::from(utc::format(&until));
        });
        // AND of another one GOVERNANCE mode
        let g = key(nov(), "fabrikam", "workstations.production", "report.html");
        f.edit_meta(&g, |m| m["retention"]["mode"] = Value::from("GOVERNANCE"));

        // THEN the first is named as shortened, the second as weaker than expected
        let report = f.verify_all().await;
        assert_eq!(
            keys_of(&report),
            BTreeSet::from([k.as_path().as_str(), g.as_path().as_str()])
        );
        let short = report
            .problems
            .iter()
            .find(|p| p.key == k.as_path())
            .unwrap();
        assert!(short.why.contains("shortened"), "{short}");
        let weak = report
            .problems
            .iter()
            .find(|p| p.key == g.as_path())
            .unwrap();
        assert!(
            weak.why.contains("GOVERNANCE, expected COMPLIANCE"),
            "{weak}"
        );
    }

    #[tokio::test]
    async fn a_chain_that_forks_two_manifests_off_one_sequence_is_named() {
        // GIVEN contoso's December manifest rewritten to follow the first one directly, as a
        // second sequence 2
        let f = fixture().await;
        let (first_key, last) = (manifest_of("contoso", 0), manifest_of("contoso", 2));
        let mut m = f.manifest(&last);
        m.sequence = 2;
        m.previous = Some(Link {
            key: first_key.as_path(),
            sequence: 1,
            sha256: Sha256Digest::of(&f.read(&first_key)),
        });
        f.rewrite_manifest(&last, &m);

        let report = f.verify_all().await;
        assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
        assert_eq!(first(&report).key, last.as_path());
        assert!(first(&report).why.contains("also the sequence of"));
    }

    #[tokio::test]
    async fn a_foreign_folder_in_the_store_stops_the_verification_naming_it() {
        let f = fixture().await;
        std::fs::create_dir_all(f.store.root().join("evidence/drafts")).unwrap();
        let err = verify(
            &f.store,
            &Scope::everything(),
            &Expectations::default(),
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("evidence/drafts"), "{err}");
        // A scope that does not need the list of cycles is not affected.
        assert!(f
            .verify(&Scope::new(Some(dec()), None, None).unwrap())
            .await
            .is_clean());
    }

    #[tokio::test]
    async fn an_extra_unlisted_file_is_named() {
        let f = fixture().await;
        let (cycle, bundle) = &bundles("fabrikam")[1];
        let extra = key(*cycle, "fabrikam", bundle, "exception-late.json");
        f.store
            .put(NewEvidence {
                key: extra.clone(),
                bytes: b"{\"approved\": true}".to_vec(),
                content_type: "application/json".into(),
                retention: lock(closed_at(1, 1), 3000),
            })
            .await
            .unwrap();

        let report = f.verify_all().await;
        assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
        assert_eq!(first(&report).key, extra.as_path());
        assert!(first(&report).why.contains("not listed in the manifest"));
    }

    #[tokio::test]
    async fn a_manifest_filed_under_another_bundle_is_named() {
        let f = fixture().await;
        let k = manifest_of("contoso", 2);
        let mut m = f.manifest(&k);
        m.bundle = "servers.contoso.production".into();
        f.rewrite_manifest(&k, &m);

        let report = f.verify_all().await;
        assert_eq!(first(&report).key, k.as_path());
        assert!(first(&report).why.contains("field `bundle`"), "{report:#?}");
    }

    #[tokio::test]
    async fn verifying_one_cycle_anchors_each_chain_in_the_previous_cycle() {
        let f = fixture().await;
        let report = f
            .verify(&Scope::new(Some(dec()), None, None).unwrap())
            .await;
        assert!(report.is_clean(), "{:#?}", report.problems);
        assert_eq!((report.bundles.len(), report.objects), (2, 10));
        assert_eq!(report.links_followed, 2);
        for (chain, client) in report.chains.iter().zip(CLIENTS) {
            assert_eq!((chain.first, chain.last), (3, 3));
            let anchor = chain.anchor.as_ref().expect("anchored in November");
            assert_eq!(anchor.key, manifest_of(client, 1).as_path());
            assert_eq!(anchor.sequence, 2);
        }
    }

    #[tokio::test]
    async fn a_missing_anchor_outside_the_scope_is_named() {
        let f = fixture().await;
        let gone = manifest_of("fabrikam", 1);
        f.remove(&gone);
        let report = f
            .verify(&Scope::new(Some(dec()), None, None).unwrap())
            .await;
        assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
        assert_eq!(first(&report).key, gone.as_path());
        assert!(first(&report).why.contains("removed from the chain"));
        assert!(report
            .chains
            .iter()
            .all(|c| c.client != "fabrikam" || c.anchor.is_none()));
    }

    #[tokio::test]
    async fn a_copy_of_one_cycle_verifies_on_its_own_with_its_anchors() {
        let f = fixture().await;
        let dir = tempfile::tempdir().unwrap();
        let to = FsEvidenceStore::open(dir.path()).unwrap();
        let scope = Scope::new(Some(dec()), Some("contoso"), None).unwrap();
        let copied = copy(&f.store, &to, &scope, |_| {}).await.unwrap();
        assert_eq!(copied.objects, 5);
        assert_eq!(copied.links, [manifest_of("contoso", 1).as_path()]);
        assert!(copied.missing_links.is_empty());

        let report = verify(&to, &scope, &Expectations::default(), |_| {})
            .await
            .unwrap();
        assert!(report.is_clean(), "{:#?}", report.problems);
        assert_eq!(report.objects, 5);
        assert!(report.chains[0].anchor.is_some());
        // The copy records what the source reported: content type and lock.
        let k = key(dec(), "contoso", "servers.contoso.pilot", "report.html");
        let head = to.head(&k).await.unwrap();
        assert_eq!(head.content_type.as_deref(), Some("text/html"));
        assert_eq!(head.retention, Some(lock(closed_at(0, 2), 2555)));
    }

    #[tokio::test]
    async fn a_copy_stops_at_bytes_that_fail_their_checksum_and_names_them() {
        let f = fixture().await;
        let k = key(dec(), "contoso", "servers.contoso.pilot", "outcomes.csv");
        let mut bytes = f.read(&k);
        bytes[1] ^= 0x01;
        f.overwrite(&k, &bytes, false);
        let dir = tempfile::tempdir().unwrap();
        let to = FsEvidenceStore::open(dir.path()).unwrap();
        let err = copy(&f.store, &to, &Scope::everything(), |_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(&err, CopyError::Read { key, .. } if *key == k.as_path()),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_summary_lists_every_bundle_with_its_sequence_and_lock() {
        let f = fixture().await;
        let all = summarize(&f.store, &Scope::everything()).await.unwrap();
        assert_eq!(all.len(), 6);
        let one = summarize(&f.store, &Scope::new(None, Some("fabrikam"), None).unwrap())
            .await
            .unwrap();
        assert_eq!(one.len(), 3);
        let last = &one[2];
        assert_eq!(
            (last.cycle, last.objects, last.sequence),
            (dec(), 5, Some(3))
        );
        assert_eq!(last.closed_at, Some(closed_at(1, 2)));
        assert_eq!(
            last.retain_until,
            Some(closed_at(1, 2) + Duration::days(2555))
        );
        assert!(last.notes.is_empty(), "{:?}", last.notes);
        let on_disk: u64 = [
            "record.json",
            "report.html",
            "summary.png",
            "outcomes.csv",
            MANIFEST,
        ]
        .iter()
        .map(|n| {
            f.read(&key(dec(), "fabrikam", "servers.fabrikam.pilot", n))
                .len() as u64
        })
        .sum();
        assert_eq!(last.bytes, on_disk);
    }

    #[test]
    fn a_lock_is_compared_in_the_whole_seconds_object_lock_keeps() {
        let closed =
            Utc.with_ymd_and_hms(2026, 12, 9, 12, 0, 0).unwrap() + Duration::milliseconds(750);
        let declared = lock(closed, crate::DEFAULT_RETENTION_DAYS);
        let expect = Expectations::default();
        // S3 drops the fraction: not a problem
        let stored = Retention {
            retain_until: whole_seconds(declared.retain_until),
            ..declared
        };
        assert_eq!(
            lock_problems(Some(&stored), &declared, closed, &expect),
            Vec::<String>::new()
        );
        // A second less is both too short and shortened
        let short = Retention {
            retain_until: stored.retain_until - Duration::seconds(1),
            ..stored
        };
        assert_eq!(
            lock_problems(Some(&short), &declared, closed, &expect).len(),
            2
        );
        // No lock at all is named as such
        assert_eq!(
            lock_problems(None, &declared, closed, &expect),
            ["no lock: the store reports no retention for it"]
        );
    }

    #[test]
    fn a_scope_parses_from_a_key_prefix_and_refuses_anything_else() {
        assert_eq!(
            Scope::from_prefix("evidence/").unwrap(),
            Scope::everything()
        );
        let s = Scope::from_prefix("evidence/2026-12/contoso/servers.contoso.pilot/").unwrap();
        assert_eq!(
            s.to_string(),
            "evidence/2026-12/contoso/servers.contoso.pilot/"
        );
        assert!(s.contains(&key(dec(), "contoso", "servers.contoso.pilot", "x.json")));
        assert!(!s.contains(&key(dec(), "contoso", "cycle", "x.json")));
        assert_eq!(
            Scope::new(None, Some("contoso"), None).unwrap().to_string(),
            "evidence/*/contoso/"
        );
        for bad in [
            "",
            "other/2026-12",
            "evidence/2026-13",
            "evidence/2026-12/a/b/c",
            "evidence/2026-12/../x",
        ] {
            assert!(Scope::from_prefix(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Scope::new(Some(dec()), None, Some("cycle")),
            Err(ScopeError::BundleWithoutClient)
        );
    }
}
