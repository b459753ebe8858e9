//! The state store: what patchflow remembers between invocations. One narrow trait per
//! capability; every state transition is a conditional write, so two writers can never both win.
//!
//! Error contract for every method: `Conflict` when a condition does not hold (the record exists
//! on create, the version moved on update), `NotFound` when updating a record that does not
//! exist, `Permanent` when the domain refuses the change (an invalid tier transition) or a stored
//! record is unreadable, `Transient` for the store's passing failures. A document index the
//! store cannot hold (a due instant outside years 0000-9999, an empty phase or one with `#`) is
//! `Permanent`.

use std::fmt;
use std::future::Future;

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::contract::EndpointDoc;
use crate::ids::{ClientId, CycleId, EndpointId, IdError, PatchId};
use crate::model::Criticality;
use crate::ports::evidence::{EvidenceKey, Retention, Sha256Digest};
use crate::ports::PortError;
use crate::rules::approval::{Approval, Decision};
use crate::rules::exception::ExceptionEntry;
use crate::rules::failure::{FailureStage, RootCause};
use crate::schedule::utc;
use crate::schedule::Window;
use crate::tier::{TierEvent, TierState};

/// An endpoint as the inventory sync stores it, with the hash of its content so an unchanged
/// endpoint is not rewritten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEndpoint {
    /// Its client.
    pub client: ClientId,
    /// Its id.
    pub id: EndpointId,
    /// SHA-256 of the record's canonical JSON.
    pub hash: Sha256Digest,
    /// The record, in the inventory contract's format.
    pub doc: EndpointDoc,
}

impl StoredEndpoint {
    /// Wraps an inventory record, hashing its canonical JSON (fields in declaration order,
    /// absent options omitted).
    pub fn from_doc(doc: EndpointDoc) -> Result<Self, IdError> {
        let client = ClientId::parse(doc.client.as_str())?;
        let id = EndpointId::parse(doc.id.as_str())?;
        // A struct of strings, booleans and enums always serializes.
        let canonical = serde_json::to_vec(&doc).unwrap_or_default();
        Ok(Self {
            client,
            id,
            hash: Sha256Digest::of(&canonical),
            doc,
        })
    }
}

/// What a sync wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SyncSummary {
    /// New or changed endpoints written.
    pub written: usize,
    /// Endpoints whose stored hash already matched.
    pub unchanged: usize,
}

/// Endpoints synced from the RMM.
pub trait EndpointStore: Send + Sync {
    /// Writes the endpoints that are new or whose content changed; leaves the others untouched.
    fn sync_endpoints(
        &self,
        endpoints: &[StoredEndpoint],
    ) -> impl Future<Output = Result<SyncSummary, PortError>> + Send;

    /// One endpoint.
    fn get_endpoint(
        &self,
        client: &ClientId,
        id: &EndpointId,
    ) -> impl Future<Output = Result<Option<StoredEndpoint>, PortError>> + Send;

    /// A client's endpoints, in id order.
    fn list_endpoints(
        &self,
        client: &ClientId,
    ) -> impl Future<Output = Result<Vec<StoredEndpoint>, PortError>> + Send;
}

/// Why a text is not a tier id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a tier id: use 1-96 characters of a-z 0-9 . _ -")]
pub struct TierIdError(String);

/// A tier of a cycle, e.g. `servers.contoso.pilot` or `workstations.production`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TierId(String);

impl TierId {
    /// Parses a tier id.
    pub fn parse(raw: &str) -> Result<Self, TierIdError> {
        let ok = (1..=96).contains(&raw.len())
            && raw.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            });
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(TierIdError(raw.to_owned()))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The batch the tier belongs to: `N` for `{tier}.b{N}` (N at least 2), else 1.
    pub fn batch(&self) -> u32 {
        self.0
            .rsplit_once('.')
            .and_then(|(_, last)| last.strip_prefix('b'))
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n >= 2)
            .unwrap_or(1)
    }
}

impl fmt::Display for TierId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TierId {
    type Error = TierIdError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TierId> for String {
    fn from(t: TierId) -> String {
        t.0
    }
}

/// A tier's stored state. `version` grows by one on every transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierRecord {
    /// The cycle.
    pub cycle: CycleId,
    /// The tier.
    pub tier: TierId,
    /// Where it is.
    pub state: TierState,
    /// Optimistic-concurrency version.
    pub version: u64,
    /// Its endpoints.
    pub endpoints: Vec<EndpointId>,
    /// The last change.
    #[serde(with = "utc")]
    pub updated_at: DateTime<Utc>,
    /// For a tier with a soak gate (a production tier after its pilot): nothing of it deploys
    /// before this instant, so its promotion is decided daily until then, hourly from then on.
    #[serde(default, with = "utc::option", skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
}

/// Tiers and their state machine.
pub trait TierStore: Send + Sync {
    /// Creates a tier; `Conflict` if it exists.
    fn create_tier(&self, tier: &TierRecord) -> impl Future<Output = Result<(), PortError>> + Send;

    /// One tier.
    fn get_tier(
        &self,
        cycle: CycleId,
        tier: &TierId,
    ) -> impl Future<Output = Result<Option<TierRecord>, PortError>> + Send;

    /// Applies an event to a tier at `expected_version`: `Conflict` if the version moved (another
    /// writer won), `Permanent` if the state machine refuses the event, `NotFound` if no tier.
    fn transition_tier(
        &self,
        cycle: CycleId,
        tier: &TierId,
        expected_version: u64,
        event: TierEvent,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<TierRecord, PortError>> + Send;

    /// Like [`TierStore::transition_tier`], and in the same atomic write marks a claimed
    /// idempotency key done: the state change and the record that its message was handled land
    /// together or not at all. `Conflict` also when the key is not claimed and in progress.
    fn transition_tier_once(
        &self,
        cycle: CycleId,
        tier: &TierId,
        expected_version: u64,
        event: TierEvent,
        at: DateTime<Utc>,
        done: &Completion,
    ) -> impl Future<Output = Result<TierRecord, PortError>> + Send;

    /// A cycle's tiers, in id order.
    fn list_tiers(
        &self,
        cycle: CycleId,
    ) -> impl Future<Output = Result<Vec<TierRecord>, PortError>> + Send;
}

/// Marks a claimed idempotency key done, as part of another write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The claimed key.
    pub key: String,
    /// What the handler did (returned to redeliveries as `Claim::Done`).
    pub outcome: String,
    /// How long the record is kept after `at`.
    pub ttl: Duration,
}

/// The answer to claiming an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours: do the work, then complete the key.
    Acquired,
    /// Another delivery holds a live lease: hand the message back and let it retry.
    InProgress,
    /// Already done: skip the work, this was its outcome.
    Done(String),
}

/// Idempotency records: how a redelivered message changes nothing twice.
pub trait IdempotencyStore: Send + Sync {
    /// Claims a key for `lease` (a claim whose lease expired, a crashed attempt, can be taken
    /// over). The record expires `ttl` after `now`.
    fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        lease: Duration,
        ttl: Duration,
    ) -> impl Future<Output = Result<Claim, PortError>> + Send;

    /// Gives up a claim that is not done (the handler failed and the message goes back to the
    /// queue), so its redelivery can claim it at once. A done key is left as it is.
    fn abandon(&self, key: &str) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Marks a claimed key done with its outcome.
    fn complete(
        &self,
        key: &str,
        outcome: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Of these keys, those done and not expired at `now`, sorted (a key repeated counts once):
    /// what a sender of a message keyed by its day reads so that it sends it until it is handled,
    /// not every hour of the day. A key handled a moment ago may read as not done (DynamoDB's
    /// eventually consistent read): the message then goes once more, and its claim finds it done.
    fn done(
        &self,
        keys: &[String],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<String>, PortError>> + Send;
}

/// The record a tier transition writes: checks the stored tier exists and is at
/// `expected_version`, and that the state machine accepts the event. Adapters then write it on the
/// condition that the stored version is still `expected_version`.
pub fn next_tier_record(
    current: Option<TierRecord>,
    cycle: CycleId,
    tier: &TierId,
    expected_version: u64,
    event: TierEvent,
    at: DateTime<Utc>,
) -> Result<TierRecord, PortError> {
    let current = current.ok_or_else(|| PortError::NotFound(format!("tier {tier} of {cycle}")))?;
    if current.version != expected_version {
        return Err(PortError::Conflict(format!(
            "tier {tier} of {cycle} is at version {}, not {expected_version}",
            current.version
        )));
    }
    let state = current
        .state
        .apply(event)
        .map_err(|e| PortError::permanent(format!("tier {tier} of {cycle}"), e))?;
    Ok(TierRecord {
        state,
        version: expected_version + 1,
        updated_at: at,
        ..current
    })
}

/// The exception register.
pub trait ExceptionStore: Send + Sync {
    /// Records an entry; `Ok(false)` if the same subject already has an entry of this kind (the
    /// register keeps the first: changing it needs a new signed decision, recorded as its own
    /// kind).
    fn record_exception(
        &self,
        entry: &ExceptionEntry,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Every entry, by subject then kind.
    fn list_exceptions(
        &self,
    ) -> impl Future<Output = Result<Vec<ExceptionEntry>, PortError>> + Send;
}

/// Patch approvals of a cycle, and the review items among them (pending, with a due date).
pub trait ApprovalStore: Send + Sync {
    /// Writes a patch's approval if its stored decision is `expected` (`None`: no approval yet).
    /// `Conflict` otherwise: an engineer and the evaluator can never both win.
    fn put_approval(
        &self,
        cycle: CycleId,
        approval: &Approval,
        expected: Option<Decision>,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// One patch's approval.
    fn get_approval(
        &self,
        cycle: CycleId,
        patch: &PatchId,
    ) -> impl Future<Output = Result<Option<Approval>, PortError>> + Send;

    /// A cycle's approvals, by patch id.
    fn list_approvals(
        &self,
        cycle: CycleId,
    ) -> impl Future<Output = Result<Vec<Approval>, PortError>> + Send;
}

/// A failed deployment or validation, with its ticket and root cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// Unique within the cycle (e.g. `{endpoint}.{stage}.{attempt}`).
    pub id: String,
    /// The cycle.
    pub cycle: CycleId,
    /// The tier it holds.
    pub tier: TierId,
    /// The endpoint.
    pub endpoint: EndpointId,
    /// Its client.
    pub client: ClientId,
    /// Where it failed.
    pub stage: FailureStage,
    /// Ticket priority.
    pub priority: Criticality,
    /// Whether on-call was paged.
    pub paged: bool,
    /// When it failed.
    #[serde(with = "utc")]
    pub failed_at: DateTime<Utc>,
    /// The next window a retry may use.
    pub next_retry: Window,
    /// The PSA ticket, once opened.
    #[serde(default)]
    pub ticket: Option<String>,
    /// The documented root cause, once recorded.
    #[serde(default)]
    pub root_cause: Option<RootCause>,
    /// Optimistic-concurrency version, one more on every save.
    pub version: u64,
}

/// Failures and their tickets.
pub trait FailureStore: Send + Sync {
    /// Records a new failure at version 0; `Conflict` if its id exists (a redelivered message).
    fn open_failure(
        &self,
        failure: &FailureRecord,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Saves a changed failure (ticket, root cause) if the stored version is `expected_version`;
    /// the stored record gets `expected_version + 1`, which is returned.
    fn save_failure(
        &self,
        failure: &FailureRecord,
        expected_version: u64,
    ) -> impl Future<Output = Result<FailureRecord, PortError>> + Send;

    /// One failure.
    fn get_failure(
        &self,
        cycle: CycleId,
        id: &str,
    ) -> impl Future<Output = Result<Option<FailureRecord>, PortError>> + Send;

    /// A cycle's failures, by id.
    fn list_failures(
        &self,
        cycle: CycleId,
    ) -> impl Future<Output = Result<Vec<FailureRecord>, PortError>> + Send;
}

/// An evidence object as indexed in the state store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRecord {
    /// Where it is stored.
    pub key: EvidenceKey,
    /// Its SHA-256.
    pub sha256: Sha256Digest,
    /// Its size.
    pub size: u64,
    /// Its lock.
    pub retention: Retention,
}

/// The index of evidence written, by cycle.
pub trait EvidenceIndex: Send + Sync {
    /// Indexes an object once; `Conflict` if its key is indexed.
    fn index_evidence(
        &self,
        record: &EvidenceRecord,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// A cycle's evidence, by key.
    fn list_evidence(
        &self,
        cycle: CycleId,
    ) -> impl Future<Output = Result<Vec<EvidenceRecord>, PortError>> + Send;

    /// A client's evidence in a cycle, by key: the work is proportional to the client's, not
    /// the cycle's.
    fn list_client_evidence(
        &self,
        cycle: CycleId,
        client: &ClientId,
    ) -> impl Future<Output = Result<Vec<EvidenceRecord>, PortError>> + Send;

    /// The head of a client's manifest chain (the pipeline owns the body's JSON), across cycles;
    /// `None` before the client's first manifest. The document's id is the client.
    fn chain_head(
        &self,
        client: &ClientId,
    ) -> impl Future<Output = Result<Option<Doc>, PortError>> + Send;

    /// Moves a client's chain head: creates it when `expected` is `None` (`Conflict` if it
    /// exists), else replaces it if the stored version is `expected` (`Conflict` if it moved,
    /// `NotFound` if there is none). Returns the new version.
    fn put_chain_head(
        &self,
        client: &ClientId,
        body: &str,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<u64, PortError>> + Send;
}

/// A versioned document of a cycle: the cycle's own record, its client snapshot, its tiers'
/// plans, and each endpoint's run through the cycle. Bodies are JSON; the pipeline owns their
/// types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    /// Its id within its kind.
    pub id: String,
    /// Optimistic-concurrency version: 1 when created, one more on every update.
    pub version: u64,
    /// The JSON body.
    pub body: String,
}

/// How a document is indexed besides its id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocIndex {
    /// The instant of its next action: listed by [`DocStore::list_due_docs`] once it has come.
    /// Stored to the microsecond.
    pub due: Option<DateTime<Utc>>,
    /// Its phase, e.g. a run's `pending`, `reported`, `failed`, `validated` (not empty, no `#`).
    pub phase: Option<String>,
}

/// A position in the due index: documents are listed in (due, id) order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DueCursor {
    /// The document's due instant.
    pub due: DateTime<Utc>,
    /// The document's id.
    pub id: String,
}

/// The latest instant the due index holds: a due key is fixed-width (years 0000-9999).
fn last_due_instant() -> DateTime<Utc> {
    chrono::NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|d| d.and_hms_micro_opt(23, 59, 59, 999_999))
        .map_or(DateTime::<Utc>::MAX_UTC, |t| t.and_utc())
}

/// An instant as the due index stores it: fixed-width RFC 3339 UTC to the microsecond
/// (`2026-12-09T14:00:00.000000Z`), so lexicographic order is chronological. `Permanent` for an
/// instant outside years 0000-9999.
pub fn due_instant_key(at: DateTime<Utc>) -> Result<String, PortError> {
    if !(0..=9999).contains(&at.year()) {
        return Err(PortError::permanent(
            "index a document",
            format!("due instant {at} is outside years 0000-9999"),
        ));
    }
    Ok(at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

/// A document's key in the due index: `{due_instant_key}#{id}`, so the index's order is
/// (due, id) order.
pub fn due_sort_key(due: DateTime<Utc>, id: &str) -> Result<String, PortError> {
    Ok(format!("{}#{id}", due_instant_key(due)?))
}

/// The exclusive upper bound of a due listing until `until`: every key whose instant is at or
/// before `until` sorts below it (`$` follows `#`). `None` when `until` is before year 0000
/// (nothing is due).
pub fn due_upper_bound(until: DateTime<Utc>) -> Option<String> {
    if until.year() < 0 {
        return None;
    }
    let until = until.min(last_due_instant());
    due_instant_key(until).ok().map(|k| format!("{k}$"))
}

/// The instant of a due index key, as [`due_sort_key`] wrote it; `Permanent` if unreadable.
pub fn due_of_sort_key(key: &str) -> Result<DateTime<Utc>, PortError> {
    let instant = key.split_once('#').map_or(key, |(instant, _)| instant);
    DateTime::parse_from_rfc3339(instant)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| PortError::permanent(format!("stored due key `{key}` is unreadable"), e))
}

impl DocIndex {
    /// The index's stored form, checked: the due key (for `id`) and the phase. `Permanent` for a
    /// due outside years 0000-9999, or an empty phase or one with `#`.
    pub fn keys(&self, id: &str) -> Result<(Option<String>, Option<&str>), PortError> {
        let due = self.due.map(|d| due_sort_key(d, id)).transpose()?;
        let phase = match self.phase.as_deref() {
            Some(p) if p.is_empty() || p.contains('#') => {
                return Err(PortError::permanent(
                    "index a document",
                    format!("phase `{p}` must be non-empty and without `#`"),
                ))
            }
            other => other,
        };
        Ok((due, phase))
    }
}

/// Cycle documents, each written on a condition.
pub trait DocStore: Send + Sync {
    /// Writes a document: creates it when `expected` is `None` (`Conflict` if it exists), else
    /// replaces it if the stored version is `expected` (`Conflict` if it moved, `NotFound` if
    /// there is none). Returns the new version.
    fn put_doc(
        &self,
        cycle: CycleId,
        kind: &str,
        id: &str,
        body: &str,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<u64, PortError>> + Send;

    /// One document.
    fn get_doc(
        &self,
        cycle: CycleId,
        kind: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<Doc>, PortError>> + Send;

    /// A kind's documents in a cycle, by id.
    fn list_docs(
        &self,
        cycle: CycleId,
        kind: &str,
    ) -> impl Future<Output = Result<Vec<Doc>, PortError>> + Send;

    /// Like [`DocStore::put_doc`] (the same conditions, the same version numbering), and sets
    /// the document's index in the same write: a `None` field clears it. (A plain `put_doc`
    /// leaves the document unindexed.) `Permanent` for an index the store cannot hold.
    #[allow(clippy::too_many_arguments)]
    fn put_doc_indexed(
        &self,
        cycle: CycleId,
        kind: &str,
        id: &str,
        body: &str,
        expected: Option<u64>,
        index: &DocIndex,
    ) -> impl Future<Output = Result<u64, PortError>> + Send;

    /// The kind's documents whose due is at or before `until`, in (due, id) order, strictly
    /// after `after`, at most `limit`; each with its position, to pass as the next `after`. The
    /// work read is proportional to what is returned. The index may lag the documents on a
    /// store whose secondary indexes are eventually consistent (DynamoDB): a document just
    /// written may be missed, or listed with its previous body and version (a write on that
    /// version is then refused as a `Conflict`).
    fn list_due_docs(
        &self,
        cycle: CycleId,
        kind: &str,
        until: DateTime<Utc>,
        after: Option<&DueCursor>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(DueCursor, Doc)>, PortError>> + Send;

    /// Whether any document of the kind is in one of `phases`: at most one read per phase.
    /// Eventually consistent like [`DocStore::list_due_docs`].
    fn any_doc_in_phase(
        &self,
        cycle: CycleId,
        kind: &str,
        phases: &[&str],
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// How many documents of the kind are in `phase`: reads the whole phase, for progress
    /// figures, not the hot path. Eventually consistent like [`DocStore::list_due_docs`].
    fn count_docs_in_phase(
        &self,
        cycle: CycleId,
        kind: &str,
        phase: &str,
    ) -> impl Future<Output = Result<u64, PortError>> + Send;

    /// The ids of the kind's documents in `phase`, in id order, strictly after `after`, at most
    /// `limit`: a page of the phase index (the work read is proportional to what is returned; the
    /// bodies are then read with [`DocStore::get_docs`]). Eventually consistent like
    /// [`DocStore::list_due_docs`].
    fn list_ids_in_phase(
        &self,
        cycle: CycleId,
        kind: &str,
        phase: &str,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, PortError>> + Send;

    /// The documents of these ids that exist, by id (each once, however often it is named);
    /// strongly consistent point reads in bulk.
    fn get_docs(
        &self,
        cycle: CycleId,
        kind: &str,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<Doc>, PortError>> + Send;
}

/// Every store the pipeline uses, as one bound.
pub trait StateStore:
    EndpointStore
    + TierStore
    + IdempotencyStore
    + ExceptionStore
    + ApprovalStore
    + FailureStore
    + EvidenceIndex
    + DocStore
{
}

impl<T> StateStore for T where
    T: EndpointStore
        + TierStore
        + IdempotencyStore
        + ExceptionStore
        + ApprovalStore
        + FailureStore
        + EvidenceIndex
        + DocStore
{
}
