//! The messages between the stages: one payload type per kind, shared by producers and
//! consumers, carried in the core's versioned [`Envelope`].

use chrono::{DateTime, NaiveDate, Utc};
use patchflow_core::contract::PatchDoc;
use patchflow_core::ids::{ClientId, CycleId, EndpointId, PatchId};
use patchflow_core::ports::queue::{Envelope, Stage, SCHEMA_VERSION};
use patchflow_core::ports::state::TierId;
use patchflow_core::rules::failure::FailureStage;
use patchflow_core::schedule::utc;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::HandlerError;

/// A message payload: its kind and the stage whose queue carries it.
pub trait Message: Serialize + DeserializeOwned {
    /// The envelope's `kind`.
    const KIND: &'static str;
    /// The queue it travels on.
    const STAGE: Stage;

    /// The message in an envelope.
    fn envelope(&self, cycle: CycleId, key: String, tier: Option<&TierId>) -> Envelope {
        Envelope {
            kind: Self::KIND.to_owned(),
            schema_version: SCHEMA_VERSION,
            idempotency_key: key,
            cycle,
            tier: tier.map(|t| t.to_string()),
            // Payloads are plain data: serializing cannot fail.
            payload: serde_json::to_value(self).unwrap_or_default(),
        }
    }

    /// The payload of an envelope of this kind.
    fn from_envelope(env: &Envelope) -> Result<Self, HandlerError> {
        serde_json::from_value(env.payload.clone()).map_err(|e| {
            HandlerError::Poison(format!("`{}` payload does not fit its kind: {e}", env.kind))
        })
    }
}

/// Evaluate one patch of the month's catalog (approval-eval).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvaluatePatch {
    /// The patch, as the catalog has it.
    pub patch: PatchDoc,
}

impl Message for EvaluatePatch {
    const KIND: &'static str = "evaluate_patch";
    const STAGE: Stage = Stage::Approval;
}

/// Write one patch's decision into the RMM's approval policy for one shard of a client's
/// in-scope endpoints, and confirm it by reading it back (approval-eval).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushApproval {
    /// The patch.
    pub patch: PatchId,
    /// The client.
    pub client: ClientId,
    /// The scope shard (see `records::ScopeShard`).
    pub shard: u32,
    /// The decision it writes, as `approval::decision_tag` names it (a later decision has
    /// another tag, so this message then changes nothing).
    pub decision: String,
    /// For a later batch's approval: the batch tier whose endpoints it targets (the shard is
    /// then one of `batches::batch_scope_kind`'s), written when that tier deploys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<TierId>,
}

impl Message for PushApproval {
    const KIND: &'static str = "push_approval";
    const STAGE: Stage = Stage::Approval;
}

/// Look for overdue reviews (approval-eval), once a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewSweep {
    /// The day it is for.
    pub day: NaiveDate,
}

impl Message for ReviewSweep {
    const KIND: &'static str = "review_sweep";
    const STAGE: Stage = Stage::Approval;
}

/// A cycle's opening (ring-promotion; see `opening`): with a client, that client's part (its
/// endpoints planned and their runs written); without, the coordinator (the tiers and the cycle
/// record once every part is written, or the parts not written yet sent again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenCycle {
    /// The client whose part it is; none for the coordinator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientId>,
}

impl Message for OpenCycle {
    const KIND: &'static str = "open_cycle";
    const STAGE: Stage = Stage::Rollout;
}

/// Open the next update batch: the patches approved after the cycle's first deployment, with
/// their own pilot and production tiers (ring-promotion; see `batches`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenBatch {
    /// The late approval that asked for it (for the log), if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<PatchId>,
}

impl Message for OpenBatch {
    const KIND: &'static str = "open_batch";
    const STAGE: Stage = Stage::Rollout;
}

/// Decide whether a scheduled tier deploys now (ring-promotion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteTier {
    /// The tier.
    pub tier: TierId,
}

impl Message for PromoteTier {
    const KIND: &'static str = "promote_tier";
    const STAGE: Stage = Stage::Rollout;
}

/// Re-check a validated pilot tier during its soak (ring-promotion), once a day: each of its
/// endpoints' agent and post-reboot monitors read from the RMM (a pilot is small: the work is
/// one pilot tier's runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSoak {
    /// The pilot tier.
    pub tier: TierId,
    /// The day it is for.
    pub day: NaiveDate,
}

impl Message for CheckSoak {
    const KIND: &'static str = "soak_check";
    const STAGE: Stage = Stage::Rollout;
}

/// Send an endpoint's install and reboot commands (reboot-scheduler).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployEndpoint {
    /// Its tier.
    pub tier: TierId,
    /// The endpoint.
    pub endpoint: EndpointId,
    /// 0 for the first try, one more for each retry.
    pub attempt: u32,
}

impl Message for DeployEndpoint {
    const KIND: &'static str = "deploy_endpoint";
    const STAGE: Stage = Stage::Schedule;
}

/// Plan the first attempt of a client's endpoints in a deploying tier (reboot-scheduler): sent
/// once per client when the tier deploys or releases the client. Without a shard, the client's
/// members shards are read (one shard is deployed at once, more go on in one message each); with
/// one, at most `records::MEMBERS_SHARD` runs are read and planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployShard {
    /// The tier.
    pub tier: TierId,
    /// The client.
    pub client: ClientId,
    /// The members shard, once the client's shards are known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
}

impl DeployShard {
    /// Its idempotency key: once per tier, client and shard.
    pub fn key(&self, cycle: CycleId) -> String {
        match self.shard {
            None => format!("{cycle}/deploy-shard/{}/{}", self.tier, self.client),
            Some(n) => format!("{cycle}/deploy-shard/{}/{}/{n}", self.tier, self.client),
        }
    }
}

impl Message for DeployShard {
    const KIND: &'static str = "deploy_shard";
    const STAGE: Stage = Stage::Schedule;
}

/// One hour of a deploying tier (reboot-scheduler): the runs due by now moved on (installs
/// sent as windows open, reminders and forced reboots, report deadlines), at most
/// [`crate::schedule::PAGE`] of them per message (a full page sends the next one, `after` its
/// last run); the last page moves the tier on from its runs' stored phases. What the RMM
/// reports comes by [`ClientChanges`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierTick {
    /// The tier.
    pub tier: TierId,
    /// For a later page: the last run the page before moved on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<DuePosition>,
}

/// A position in a tier's due runs: (due instant, endpoint) order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuePosition {
    /// The run's due instant.
    #[serde(with = "utc")]
    pub due: DateTime<Utc>,
    /// Its endpoint.
    pub endpoint: EndpointId,
}

/// One client's hour in the RMM (reboot-scheduler): one paged read of the client's computers on
/// which something happened since `since` (installs, reboots, start-ups), then the runs of
/// those endpoints in `tiers` (the client's tiers with runs waiting for a report) moved on from
/// their reports, at most [`crate::schedule::PAGE`] runs per message (a longer list goes on in
/// messages naming their endpoints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientChanges {
    /// The client.
    pub client: ClientId,
    /// The tiers whose runs on the client's changed endpoints are moved on.
    pub tiers: Vec<TierId>,
    /// What changed at or after this instant.
    #[serde(with = "utc")]
    pub since: DateTime<Utc>,
    /// For a later part of a long change list: exactly these endpoints (empty: ask the RMM).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointId>,
}

impl Message for ClientChanges {
    const KIND: &'static str = "client_changes";
    const STAGE: Stage = Stage::Schedule;
}

impl Message for TierTick {
    const KIND: &'static str = "tier_tick";
    const STAGE: Stage = Stage::Schedule;
}

/// A deployment or validation failed (failure-escalation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointFailed {
    /// The failure's id: `{endpoint}.{stage}.{attempt}`.
    pub id: String,
    /// Its tier.
    pub tier: TierId,
    /// The endpoint.
    pub endpoint: EndpointId,
    /// Its client.
    pub client: ClientId,
    /// Where it failed.
    pub stage: FailureStage,
    /// When.
    #[serde(with = "utc")]
    pub at: DateTime<Utc>,
    /// What the RMM said.
    pub detail: String,
    /// The patches that failed, when the RMM named them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<PatchId>,
}

impl Message for EndpointFailed {
    const KIND: &'static str = "endpoint_failed";
    const STAGE: Stage = Stage::Failure;
}

/// Archive a validated tier's evidence and close it (evidence-archiver). Without a client, the
/// tier's coordinator: it sends one message per client of the tier not archived yet, and
/// closes the tier once every client's is. With a client: that client's shard (its bundle,
/// its tickets, its closure in the RMM), which reads only the client's runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveTier {
    /// The tier.
    pub tier: TierId,
    /// The client whose part of the tier this message archives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientId>,
}

impl Message for ArchiveTier {
    const KIND: &'static str = "archive_tier";
    const STAGE: Stage = Stage::Evidence;
}

/// Write a client's roll-up of a closed cycle (evidence-archiver): sent for every client once
/// every tier of the cycle is closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollUpClient {
    /// The client.
    pub client: ClientId,
    /// When the cycle's last tier closed: the roll-up is judged then.
    #[serde(with = "utc")]
    pub closed_at: DateTime<Utc>,
}

impl Message for RollUpClient {
    const KIND: &'static str = "roll_up_client";
    const STAGE: Stage = Stage::Evidence;
}
