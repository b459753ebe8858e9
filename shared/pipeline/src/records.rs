//! What the pipeline keeps about a cycle, as documents in the state store: the cycle itself (its
//! release, catalog and client snapshot), each tier's plan, each endpoint's run through the
//! cycle, and the endpoints left out.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use patchflow_core::contract::{
    inventory_from_doc, CatalogDoc, ClientDoc, EndpointDoc, InventoryDoc,
};
use patchflow_core::ids::{ClientId, CycleId, EndpointId, PatchId};
use patchflow_core::model::{Endpoint, EndpointKind};
use patchflow_core::policy::Policy;
use patchflow_core::ports::rmm::RmmApproval;
use patchflow_core::ports::state::{DocIndex, DocStore, DueCursor, TierId, TierRecord, TierStore};
use patchflow_core::ports::PortError;
use patchflow_core::rules::waves::Wave;
use patchflow_core::run;
use patchflow_core::schedule::utc;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{corrupt, HandlerError};

/// The document kind of the cycle record (one per cycle, id [`CYCLE_ID`]).
pub const CYCLE_KIND: &str = "cycle";
/// The cycle record's id.
pub const CYCLE_ID: &str = "cycle";
/// How many of a client's in-scope endpoints one scope shard holds (and one approval push
/// targets): a push's work is bounded by this, whatever the client's or the fleet's size.
pub const SCOPE_SHARD: usize = 250;

/// The document kind of a client's in-scope endpoints (id: the shard's number).
pub fn scope_kind(client: &ClientId) -> String {
    format!("scope.{client}")
}

/// The document kind of the approvals confirmed in the RMM for a client (id:
/// `{patch}.{shard}.{decision}`).
pub fn rmm_approval_kind(client: &ClientId) -> String {
    format!("rmm_approval.{client}")
}

/// The document kind of tier plans (id: the tier).
pub const TIER_KIND: &str = "tier";
/// The document kind of a client's out-of-scope endpoints (id: the client).
pub const EXCLUDED_KIND: &str = "excluded";

/// The document kind of a tier's endpoint runs (id: the endpoint).
pub fn run_kind(tier: &TierId) -> String {
    format!("{RUN_KIND_PREFIX}{tier}")
}

const RUN_KIND_PREFIX: &str = "run.";

/// A run's phase in the index: planned, not deployed yet (its tier not deployed, or the run
/// held with its client).
pub const PHASE_PLANNED: &str = "planned";
/// Scheduled, its install not sent yet.
pub const PHASE_PENDING: &str = "pending";
/// Awaiting an engineer's approval (a critical server): the engineer's queue reads this phase,
/// not the tier.
pub const PHASE_AWAITING: &str = "awaiting";
/// Its install sent, not reported yet.
pub const PHASE_SENT: &str = "sent";
/// Its install reported, waiting for the reboot or the checks.
pub const PHASE_REPORTED: &str = "reported";
/// Failed.
pub const PHASE_FAILED: &str = "failed";
/// Validated, or up to date from the cycle's opening.
pub const PHASE_VALIDATED: &str = "validated";
/// The phases of runs whose install is not reported: the tier deploys while any is left.
pub const UNREPORTED_PHASES: &[&str] = &[PHASE_PLANNED, PHASE_AWAITING, PHASE_PENDING, PHASE_SENT];
/// The phases of runs not validated: the tier validates while any is left.
pub const UNVALIDATED_PHASES: &[&str] = &[
    PHASE_PLANNED,
    PHASE_AWAITING,
    PHASE_PENDING,
    PHASE_SENT,
    PHASE_REPORTED,
    PHASE_FAILED,
];

/// A run's phase in the index: the core's [`run::phase`], with its pending runs told apart
/// (planned, awaiting, pending, sent) so that a tick asks the RMM only about tiers with an install out
/// and releases held runs only where some are planned.
pub fn index_phase(run: &Run) -> &'static str {
    match run::phase(run) {
        run::Phase::Pending if run.status == RunStatus::Planned => PHASE_PLANNED,
        run::Phase::Pending if run.status == RunStatus::AwaitingApproval => PHASE_AWAITING,
        run::Phase::Pending if run.install_sent_at.is_some() => PHASE_SENT,
        run::Phase::Pending => PHASE_PENDING,
        run::Phase::Reported => PHASE_REPORTED,
        run::Phase::Failed => PHASE_FAILED,
        run::Phase::Validated => PHASE_VALIDATED,
    }
}

/// A run's index: the instant of its next action ([`run::next_due`]: window opening, report
/// deadline, reminder, forced reboot) and its phase ([`run::phase`]), which the tier's ticks
/// read instead of the whole tier. `tz` is the endpoint's zone (its reminders are due in local
/// time); a run waiting for its reboot cannot be indexed without it.
pub fn run_index(run: &Run, tz: Option<Tz>, policy: &Policy) -> Result<DocIndex, PortError> {
    let tz = match tz {
        Some(tz) => tz,
        None if run::needs_zone(run) => {
            return Err(PortError::permanent(
                format!("index run {} of {}", run.endpoint, run.tier),
                "its reminders are due in the endpoint's time zone, which was not given",
            ))
        }
        None => Tz::UTC,
    };
    Ok(DocIndex {
        due: run::next_due(run, tz, policy),
        phase: Some(index_phase(run).to_owned()),
    })
}

/// Writes a run with its index ([`run_index`]); create when `expected` is `None`.
pub async fn save_run(
    store: &impl DocStore,
    cycle: CycleId,
    run: &Run,
    tz: Option<Tz>,
    policy: &Policy,
    expected: Option<u64>,
) -> Result<u64, PortError> {
    let index = run_index(run, tz, policy)?;
    put_run(store, cycle, run, expected, &index).await
}

async fn put_run(
    store: &impl DocStore,
    cycle: CycleId,
    run: &Run,
    expected: Option<u64>,
    index: &DocIndex,
) -> Result<u64, PortError> {
    let kind = run_kind(&run.tier);
    let body = serde_json::to_string(run)
        .map_err(|e| PortError::permanent(format!("encode {kind}"), e))?;
    store
        .put_doc_indexed(cycle, &kind, run.endpoint.as_str(), &body, expected, index)
        .await
}

/// Writes a run that waits for a message rather than a time (planned, awaiting an engineer's
/// approval, failed, validated: not [`run::active`]), with its phase and no due instant;
/// `Permanent` for a run under way, which is saved with its zone and policy ([`save_run`]).
pub async fn save_waiting_run(
    store: &impl DocStore,
    cycle: CycleId,
    run: &Run,
    expected: Option<u64>,
) -> Result<u64, PortError> {
    if run::active(run) {
        return Err(PortError::permanent(
            format!("save run {} of {}", run.endpoint, run.tier),
            "a run under way is saved with its next due instant (records::save_run)",
        ));
    }
    let index = DocIndex {
        due: None,
        phase: Some(index_phase(run).to_owned()),
    };
    put_run(store, cycle, run, expected, &index).await
}

/// A tier's record, which must exist (a message naming a tier the cycle does not have is
/// poison).
pub async fn tier_record(
    store: &impl TierStore,
    cycle: CycleId,
    tier: &TierId,
) -> Result<TierRecord, HandlerError> {
    store
        .get_tier(cycle, tier)
        .await?
        .ok_or_else(|| HandlerError::Poison(format!("no tier {tier} in {cycle}")))
}

/// A tier's runs due by `until` (their next action has come), in (due, endpoint) order,
/// strictly after `after`, at most `limit`; each with its version and its position.
pub async fn due_runs(
    store: &impl DocStore,
    cycle: CycleId,
    tier: &TierId,
    until: DateTime<Utc>,
    after: Option<&DueCursor>,
    limit: usize,
) -> Result<Vec<(DueCursor, Run, u64)>, HandlerError> {
    let kind = run_kind(tier);
    store
        .list_due_docs(cycle, &kind, until, after, limit)
        .await?
        .into_iter()
        .map(|(at, d)| {
            serde_json::from_str(&d.body)
                .map(|r| (at, r, d.version))
                .map_err(|e| corrupt(&kind, e))
        })
        .collect()
}

/// The runs of a tier on these endpoints (those it has), with their versions; strongly
/// consistent reads in bulk.
pub async fn get_runs(
    store: &impl DocStore,
    cycle: CycleId,
    tier: &TierId,
    endpoints: &[EndpointId],
) -> Result<Vec<(Run, u64)>, HandlerError> {
    let kind = run_kind(tier);
    let ids: Vec<String> = endpoints.iter().map(|e| e.as_str().to_owned()).collect();
    store
        .get_docs(cycle, &kind, &ids)
        .await?
        .into_iter()
        .map(|d| {
            serde_json::from_str(&d.body)
                .map(|r| (r, d.version))
                .map_err(|e| corrupt(&kind, e))
        })
        .collect()
}

/// A tier's runs in a phase (e.g. [`PHASE_FAILED`]), with their versions, by endpoint: the
/// phase index a page at a time, then those runs in bulk (strongly consistent, so a run listed
/// that has moved on since is read as it is now, and left out if no longer in the phase).
/// The work is proportional to the runs in the phase, whatever the tier's size.
pub async fn runs_in_phase(
    store: &impl DocStore,
    cycle: CycleId,
    tier: &TierId,
    phase: &str,
) -> Result<Vec<(Run, u64)>, HandlerError> {
    let mut runs = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, next) =
            runs_in_phase_page(store, cycle, tier, phase, after.as_deref(), MEMBERS_SHARD).await?;
        runs.extend(page);
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    runs.sort_by(|(a, _), (b, _)| a.endpoint.cmp(&b.endpoint));
    Ok(runs)
}

/// One page of [`runs_in_phase`]: at most `limit` runs listed after `after` (an endpoint id),
/// and where the next page starts (`None` on the last).
pub async fn runs_in_phase_page(
    store: &impl DocStore,
    cycle: CycleId,
    tier: &TierId,
    phase: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<(Run, u64)>, Option<String>), HandlerError> {
    let kind = run_kind(tier);
    let ids = store
        .list_ids_in_phase(cycle, &kind, phase, after, limit)
        .await?;
    let next = (ids.len() == limit).then(|| ids.last().cloned()).flatten();
    let endpoints = ids
        .iter()
        .map(|id| {
            EndpointId::parse(id).map_err(|e| {
                HandlerError::Poison(format!("{kind}: indexed id `{id}` is not an endpoint: {e}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut runs = Vec::with_capacity(endpoints.len());
    for (run, version) in get_runs(store, cycle, tier, &endpoints).await? {
        if index_phase(&run) == phase {
            runs.push((run, version));
        }
    }
    runs.sort_by(|(a, _), (b, _)| a.endpoint.cmp(&b.endpoint));
    Ok((runs, next))
}

/// How many endpoints one members shard lists.
pub const MEMBERS_SHARD: usize = 500;

/// The document kind of a client's endpoints in a tier (id: the shard's number, from 0): what
/// a per-client shard of the tier's work (its archive) reads instead of the whole tier.
pub fn members_kind(tier: &TierId, client: &ClientId) -> String {
    format!("members.{tier}.{client}")
}

/// One shard of a client's endpoints in a tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    /// At most [`MEMBERS_SHARD`] endpoints.
    pub endpoints: Vec<EndpointId>,
}

/// Writes a client's endpoints in a tier as members shards (each once: a repeat finds them
/// written).
pub async fn save_members(
    store: &impl DocStore,
    cycle: CycleId,
    tier: &TierId,
    client: &ClientId,
    endpoints: &[EndpointId],
) -> Result<(), PortError> {
    let kind = members_kind(tier, client);
    for (n, chunk) in endpoints.chunks(MEMBERS_SHARD).enumerate() {
        let shard = Members {
            endpoints: chunk.to_vec(),
        };
        match save(store, cycle, &kind, &n.to_string(), &shard, None).await {
            Ok(_) | Err(PortError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A client's runs in a tier, with their versions, by endpoint: its members shards, then its
/// runs in bulk. The work is proportional to the client's endpoints in the tier, whatever the
/// tier's size.
pub async fn client_runs(
    store: &impl DocStore,
    cycle: CycleId,
    tier: &TierId,
    client: &ClientId,
) -> Result<Vec<(Run, u64)>, HandlerError> {
    let mut endpoints = Vec::new();
    for (shard, _) in list::<Members>(store, cycle, &members_kind(tier, client)).await? {
        endpoints.extend(shard.endpoints);
    }
    let mut runs = Vec::with_capacity(endpoints.len());
    for chunk in endpoints.chunks(MEMBERS_SHARD) {
        runs.extend(get_runs(store, cycle, tier, chunk).await?);
    }
    runs.sort_by(|(a, _), (b, _)| a.endpoint.cmp(&b.endpoint));
    Ok(runs)
}

/// The parts a tier's runs are read in, one at a time: each client of the tier's plan (its
/// members shards), or, for a plan written before it listed its clients, the whole tier at once.
#[derive(Debug, Clone)]
pub enum RunParts {
    /// A client at a time.
    Clients(Vec<ClientId>),
    /// The tier in one read.
    Whole,
}

impl RunParts {
    /// How a tier's runs are read: from its plan's clients.
    pub async fn of(
        store: &impl DocStore,
        cycle: CycleId,
        tier: &TierId,
    ) -> Result<Self, HandlerError> {
        Ok(
            match load::<TierPlan>(store, cycle, TIER_KIND, tier.as_str()).await? {
                Some((p, _)) if !p.clients.is_empty() || p.endpoints == 0 => {
                    Self::Clients(p.clients)
                }
                _ => Self::Whole,
            },
        )
    }

    /// How many reads: the clients, or one.
    pub fn len(&self) -> usize {
        match self {
            Self::Clients(c) => c.len(),
            Self::Whole => 1,
        }
    }

    /// No part to read (a tier without endpoints).
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Clients(c) if c.is_empty())
    }

    /// The runs of part `i` (`i < len()`).
    pub async fn runs(
        &self,
        store: &impl DocStore,
        cycle: CycleId,
        tier: &TierId,
        i: usize,
    ) -> Result<Vec<(Run, u64)>, HandlerError> {
        match self {
            Self::Clients(c) => match c.get(i) {
                Some(client) => client_runs(store, cycle, tier, client).await,
                None => Ok(Vec::new()),
            },
            Self::Whole if i == 0 => list(store, cycle, &run_kind(tier)).await,
            Self::Whole => Ok(Vec::new()),
        }
    }
}

/// An opened cycle. Its existence is what "the cycle is open" means.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CycleDoc {
    /// The cycle.
    pub cycle: CycleId,
    /// Its Patch Tuesday.
    pub patch_tuesday: NaiveDate,
    /// The release instant.
    #[serde(with = "utc")]
    pub released_at: DateTime<Utc>,
    /// When the inventory sync opened it.
    #[serde(with = "utc")]
    pub opened_at: DateTime<Utc>,
    /// The month's catalog as it was when the cycle opened.
    pub catalog: CatalogDoc,
    /// The clients as they were when the cycle opened.
    pub clients: Vec<ClientDoc>,
    /// Its tiers.
    pub tiers: Vec<TierId>,
    /// Per client with in-scope endpoints, how many scope shards hold them (the approval
    /// pushes' targets).
    #[serde(default)]
    pub scopes: Vec<ScopeRef>,
}

/// A client's in-scope endpoints, as scope shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeRef {
    /// The client.
    pub client: ClientId,
    /// How many shards (`scope.{client}` documents `0` to `shards - 1`).
    pub shards: u32,
}

/// One shard of a client's in-scope endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeShard {
    /// The client.
    pub client: ClientId,
    /// The shard's number.
    pub shard: u32,
    /// Its endpoints, at most [`SCOPE_SHARD`].
    pub endpoints: Vec<EndpointId>,
    /// Per endpoint (same order), what its RMM patch scan said when the cycle opened, so a
    /// push writes only where its patch applies and reads back where the scan lists it (empty
    /// in shards written before it was kept: every endpoint is a target).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scans: Vec<ScopeScan>,
}

/// An endpoint's patch scan as a scope shard keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeScan {
    /// The patch ids its scan reports needed, sorted; absent when not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applicable: Option<Vec<PatchId>>,
    /// Its operating system as the RMM reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
}

/// A decision written into the RMM's approval policy and read back as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RmmConfirmation {
    /// The patch.
    pub patch: PatchId,
    /// The client.
    pub client: ClientId,
    /// The scope shard the write targeted.
    pub shard: u32,
    /// patchflow's decision (`auto_approved`, `approved`, `declined`, `pending_review`).
    pub decision: String,
    /// The decision as the RMM holds it.
    pub approval: RmmApproval,
    /// The write's idempotency key.
    pub key: String,
    /// How many endpoints the write targeted.
    pub endpoints: usize,
    /// The endpoint read back.
    pub read_back: EndpointId,
    /// When the read-back confirmed it.
    #[serde(with = "utc")]
    pub confirmed_at: DateTime<Utc>,
    /// Whether the read-back showed the decision. False where no target's scan lists the patch
    /// (the RMM shows a patch's approval only on a computer that needs it): written, not
    /// verifiable there.
    #[serde(default = "verified_default")]
    pub verified: bool,
    /// For a later batch's approval: the batch tier whose endpoints the write targeted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<TierId>,
}

fn verified_default() -> bool {
    true
}

impl CycleDoc {
    /// A client's record.
    pub fn client(&self, id: &ClientId) -> Option<&ClientDoc> {
        self.clients.iter().find(|c| c.id == id.as_str())
    }
}

/// A tier's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierPlan {
    /// The tier.
    pub tier: TierId,
    /// Servers or workstations.
    pub kind: EndpointKind,
    /// The client, for a server tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientId>,
    /// Pilot or production.
    pub wave: Wave,
    /// For a production tier with a pilot: the pilot tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pilot: Option<TierId>,
    /// For a production tier with a pilot: the soak gate (no window before it).
    #[serde(default, with = "utc::option", skip_serializing_if = "Option::is_none")]
    pub gate: Option<DateTime<Utc>>,
    /// How many endpoints it has.
    pub endpoints: usize,
    /// The clients with endpoints in it, sorted (their compliance tickets are told of its
    /// holds without reading its runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<ClientId>,
    /// The clients whose endpoints were sent to deploy (all of a tier without a pilot at its
    /// deployment; a client at a time with the client hold scope), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<ClientId>,
    /// The last promotion decision, in words (for a production tier: since when its pilot is
    /// healthy and until when it soaks, or what holds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<String>,
    /// For a pilot tier: its soak's daily re-checks against the RMM, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub soak_checks: Vec<SoakCheck>,
}

/// One daily re-check of a validated pilot during its soak: each endpoint's agent and
/// post-reboot monitors read from the RMM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoakCheck {
    /// The day it is for (at most one per tier and day).
    pub day: NaiveDate,
    /// When it ran.
    #[serde(with = "utc")]
    pub at: DateTime<Utc>,
    /// Since when the pilot was healthy (its latest validation).
    #[serde(with = "utc")]
    pub healthy_since: DateTime<Utc>,
    /// When its soak ends if it stays healthy.
    #[serde(with = "utc")]
    pub soak_until: DateTime<Utc>,
    /// Endpoints read.
    pub endpoints: usize,
    /// Every endpoint read healthy.
    pub healthy: bool,
    /// The endpoints found unhealthy, and what was wrong (each failed and escalated).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unhealthy: Vec<SoakFinding>,
    /// Endpoints not checked: the agent offline or in maintenance mode, or the RMM unable to
    /// read it (not failures; a later check reads them again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_checked: Vec<SoakFinding>,
}

/// A pilot endpoint a soak re-check found unhealthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoakFinding {
    /// The endpoint.
    pub endpoint: EndpointId,
    /// What was wrong, in words.
    pub detail: String,
}

/// The model of an endpoint's run, kept in the core with its state machine.
pub use patchflow_core::run::{Reminder, Run, RunStatus, Skipped};

/// A run's endpoint as the domain model has it, from the cycle's snapshot.
pub trait RunModel {
    /// The endpoint as the domain model has it, with its client's time zone and locations.
    fn endpoint_model(&self, cycle: &CycleDoc) -> Result<Endpoint, HandlerError>;
}

impl RunModel for Run {
    fn endpoint_model(&self, cycle: &CycleDoc) -> Result<Endpoint, HandlerError> {
        endpoint_model(cycle, &self.client, &self.doc)
    }
}

/// An endpoint record as the domain model has it.
pub fn endpoint_model(
    cycle: &CycleDoc,
    client: &ClientId,
    doc: &EndpointDoc,
) -> Result<Endpoint, HandlerError> {
    let client_doc = cycle.client(client).cloned().ok_or_else(|| {
        HandlerError::Poison(format!("client {client} is not in cycle {}", cycle.cycle))
    })?;
    let inventory = inventory_from_doc(
        "the cycle's snapshot",
        InventoryDoc {
            clients: vec![client_doc],
            endpoints: vec![doc.clone()],
        },
    )
    .map_err(|e| HandlerError::Poison(e.to_string()))?;
    inventory
        .endpoints()
        .first()
        .cloned()
        .ok_or_else(|| HandlerError::Poison(format!("endpoint {} did not load", doc.id)))
}

/// An endpoint left out of the cycle, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excluded {
    /// The endpoint.
    pub endpoint: EndpointId,
    /// Its scope decision (`disabled`, `client_excluded`, `do_not_patch`).
    pub scope: String,
    /// Its host name (absent in records of cycles opened before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Server or workstation (absent likewise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<EndpointKind>,
}

/// A tier's id: `servers.{client}.{wave}` or `workstations.{wave}`. A client id that is not
/// already a tier-id segment is lower-cased, its other characters made `-`, and a short hash
/// added so two clients cannot collide.
pub fn tier_id(kind: EndpointKind, client: &ClientId, wave: Wave) -> Result<TierId, HandlerError> {
    let raw = match kind {
        EndpointKind::Server => format!("servers.{}.{}", slug(client.as_str()), wave.as_str()),
        EndpointKind::Workstation => format!("workstations.{}", wave.as_str()),
    };
    TierId::parse(&raw).map_err(|e| HandlerError::Poison(e.to_string()))
}

/// The production tier that follows a pilot tier of this plan (the same kind and client), or
/// none for a production tier or a server pilot without its client.
pub fn production_of(pilot: &TierPlan) -> Result<Option<TierId>, HandlerError> {
    let raw = match (pilot.wave, pilot.kind, &pilot.client) {
        (Wave::Production, _, _) | (Wave::Pilot, EndpointKind::Server, None) => return Ok(None),
        (Wave::Pilot, EndpointKind::Server, Some(c)) => {
            format!("servers.{}.{}", slug(c.as_str()), Wave::Production.as_str())
        }
        (Wave::Pilot, EndpointKind::Workstation, _) => {
            format!("workstations.{}", Wave::Production.as_str())
        }
    };
    TierId::parse(&raw)
        .map(Some)
        .map_err(|e| HandlerError::Poison(e.to_string()))
}

fn slug(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .take(48)
        .collect();
    if s == id {
        s
    } else {
        let h = Sha256::digest(id.as_bytes());
        format!("{s}-{:02x}{:02x}{:02x}", h[0], h[1], h[2])
    }
}

/// Reads a document.
pub async fn load<T: DeserializeOwned>(
    store: &impl DocStore,
    cycle: CycleId,
    kind: &str,
    id: &str,
) -> Result<Option<(T, u64)>, HandlerError> {
    match store.get_doc(cycle, kind, id).await? {
        None => Ok(None),
        Some(doc) => {
            let value = serde_json::from_str(&doc.body).map_err(|e| corrupt(kind, e))?;
            Ok(Some((value, doc.version)))
        }
    }
}

/// Reads a document that must exist.
pub async fn must_load<T: DeserializeOwned>(
    store: &impl DocStore,
    cycle: CycleId,
    kind: &str,
    id: &str,
) -> Result<(T, u64), HandlerError> {
    load(store, cycle, kind, id)
        .await?
        .ok_or_else(|| HandlerError::Poison(format!("no {kind} {id} in cycle {cycle}")))
}

/// Writes a document (create when `expected` is `None`). A run is written through
/// [`save_run`], which keeps its index: a run written here would drop out of its tier's ticks,
/// so it is refused.
pub async fn save<T: Serialize>(
    store: &impl DocStore,
    cycle: CycleId,
    kind: &str,
    id: &str,
    value: &T,
    expected: Option<u64>,
) -> Result<u64, PortError> {
    if kind.starts_with(RUN_KIND_PREFIX) {
        return Err(PortError::permanent(
            format!("save {kind} {id}"),
            "a run is saved with its index (records::save_run)",
        ));
    }
    let body = serde_json::to_string(value)
        .map_err(|e| patchflow_core::ports::PortError::permanent(format!("encode {kind}"), e))?;
    store.put_doc(cycle, kind, id, &body, expected).await
}

/// Reads every document of a kind.
pub async fn list<T: DeserializeOwned>(
    store: &impl DocStore,
    cycle: CycleId,
    kind: &str,
) -> Result<Vec<(T, u64)>, HandlerError> {
    store
        .list_docs(cycle, kind)
        .await?
        .into_iter()
        .map(|d| {
            serde_json::from_str(&d.body)
                .map(|v| (v, d.version))
                .map_err(|e| corrupt(kind, e))
        })
        .collect()
}

/// The approvals confirmed in the RMM for a client in a cycle, by patch then time.
pub async fn rmm_confirmations(
    store: &impl DocStore,
    cycle: CycleId,
    client: &ClientId,
) -> Result<Vec<RmmConfirmation>, HandlerError> {
    let mut out: Vec<RmmConfirmation> = list(store, cycle, &rmm_approval_kind(client))
        .await?
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    out.sort_by(|a, b| {
        (&a.patch, a.confirmed_at, a.shard).cmp(&(&b.patch, b.confirmed_at, b.shard))
    });
    Ok(out)
}

/// The cycle record, if the cycle is open.
pub async fn cycle_doc(
    store: &impl DocStore,
    cycle: CycleId,
) -> Result<Option<CycleDoc>, HandlerError> {
    Ok(load(store, cycle, CYCLE_KIND, CYCLE_ID)
        .await?
        .map(|(c, _)| c))
}

/// The cycle record of a cycle that must be open.
pub async fn open_cycle(store: &impl DocStore, cycle: CycleId) -> Result<CycleDoc, HandlerError> {
    cycle_doc(store, cycle)
        .await?
        .ok_or_else(|| HandlerError::Poison(format!("cycle {cycle} is not open")))
}

/// The cycle record as one message needs it: read at most once, and only if asked for (most
/// hours of a tier have nothing due and need none of it).
#[derive(Debug)]
pub struct LazyCycle {
    cycle: CycleId,
    doc: Option<CycleDoc>,
}

impl LazyCycle {
    /// The cycle, its record not read yet.
    pub fn new(cycle: CycleId) -> Self {
        LazyCycle { cycle, doc: None }
    }

    /// The cycle.
    pub fn cycle(&self) -> CycleId {
        self.cycle
    }

    /// Its record, read on the first call ([`open_cycle`]).
    pub async fn get(&mut self, store: &impl DocStore) -> Result<&CycleDoc, HandlerError> {
        if self.doc.is_none() {
            self.doc = Some(open_cycle(store, self.cycle).await?);
        }
        self.doc
            .as_ref()
            .ok_or_else(|| HandlerError::Poison(format!("cycle {} is not open", self.cycle)))
    }
}

/// The cycle an instant belongs to, and the one before (a cycle's tail runs into the next month).
pub fn cycles_around(now: DateTime<Utc>) -> Vec<CycleId> {
    let today = now.date_naive();
    let mut out = Vec::new();
    if let Ok(c) = CycleId::containing(today) {
        if let Some(prev) = c.first_day().pred_opt() {
            if let Ok(p) = CycleId::containing(prev) {
                out.push(p);
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pilot(kind: EndpointKind, client: Option<&str>) -> TierPlan {
        let client = client.map(|c| ClientId::parse(c).expect("client id"));
        let tier = match &client {
            Some(c) => tier_id(kind, c, Wave::Pilot),
            None => tier_id(
                kind,
                &ClientId::parse("any").expect("client id"),
                Wave::Pilot,
            ),
        }
        .expect("tier id");
        TierPlan {
            tier,
            kind,
            client,
            wave: Wave::Pilot,
            pilot: None,
            gate: None,
            endpoints: 1,
            clients: Vec::new(),
            released: Vec::new(),
            last_decision: None,
            soak_checks: Vec::new(),
        }
    }

    #[test]
    fn a_pilot_leads_to_the_production_tier_of_its_kind_and_client() {
        for client in ["acme", "Acme Corp. (East)"] {
            let id = ClientId::parse(client).expect("client id");
            let p = pilot(EndpointKind::Server, Some(client));
            assert_eq!(
                production_of(&p).expect("id"),
                Some(tier_id(EndpointKind::Server, &id, Wave::Production).expect("id"))
            );
        }
        let ws = pilot(EndpointKind::Workstation, None);
        assert_eq!(
            production_of(&ws)
                .expect("id")
                .map(|t| t.as_str().to_string()),
            Some("workstations.production".to_string())
        );
        let mut production = ws.clone();
        production.wave = Wave::Production;
        assert_eq!(production_of(&production).expect("id"), None);
        assert_eq!(
            production_of(&pilot(EndpointKind::Server, None)).expect("id"),
            None
        );
    }
}
