//! The RMM (ConnectWise Automate) as a port: the commands patchflow sends, the approval policy it
//! holds for each client, the agents' state, and what the RMM reports back about installs,
//! reboots and post-reboot checks.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{ClientId, CycleId, EndpointId, PatchId};
use crate::ports::state::TierId;
use crate::ports::PortError;
use crate::rules::cadence::PowerState;
use crate::rules::commands::RmmCommand;
use crate::rules::validation::CheckResult;
use crate::schedule::utc;

/// Something the RMM observed on an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RmmEvent {
    /// The approved patches installed.
    InstallSucceeded,
    /// The install failed.
    InstallFailed {
        /// The RMM's words (naming the KBs that failed, when it reports per KB).
        detail: String,
        /// The patches that failed (empty: the RMM did not say which).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        patches: Vec<PatchId>,
    },
    /// The install window came and the endpoint was not awake (the daytime posture check).
    NotAwake {
        /// Its power state.
        power: PowerState,
    },
    /// The endpoint rebooted after the install.
    RebootConfirmed,
    /// The post-reboot monitors reported.
    Checks {
        /// Each check's result.
        results: Vec<CheckResult>,
    },
}

/// An RMM observation with its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RmmReport {
    /// The endpoint.
    pub endpoint: EndpointId,
    /// When it happened.
    #[serde(with = "utc")]
    pub at: DateTime<Utc>,
    /// What happened.
    #[serde(flatten)]
    pub event: RmmEvent,
}

/// A decision as the RMM's patch approval policy holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RmmApproval {
    /// Approved: installed by the RMM's patch deployment.
    Approved,
    /// Denied: never installed.
    Denied,
    /// Not approved: held for an engineer's review, not installed.
    NotApproved,
}

impl RmmApproval {
    /// Its name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            RmmApproval::Approved => "approved",
            RmmApproval::Denied => "denied",
            RmmApproval::NotApproved => "not_approved",
        }
    }
}

impl std::fmt::Display for RmmApproval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One patch's decision for one client's computers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalPush {
    /// The client whose policy it is.
    pub client: ClientId,
    /// The patch.
    pub patch: PatchId,
    /// The decision.
    pub approval: RmmApproval,
    /// The client's in-scope endpoints the patch applies to (the write's targets; the first is
    /// the one read back). Bounded by the client's size, never the fleet's.
    pub endpoints: Vec<EndpointId>,
}

/// The agent as the RMM sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// The agent is checking in.
    pub online: bool,
    /// The agent is in maintenance mode (Automate's `IsMaintenanceModeEnabled`): no work is sent.
    pub maintenance: bool,
    /// Its last contact (Automate's `RemoteAgentLastContact`).
    #[serde(default, with = "crate::schedule::utc::option")]
    pub last_contact: Option<DateTime<Utc>>,
    /// Its power state: `Awake` when online; `Sleeping` or `Unknown` when offline.
    pub power: PowerState,
}

/// An endpoint's health as the RMM sees it now: its agent and its post-reboot monitors, read
/// during a pilot's soak (at least daily) to confirm the pilot stays healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// The endpoint.
    pub endpoint: EndpointId,
    /// When the RMM answered.
    #[serde(with = "utc")]
    pub at: DateTime<Utc>,
    /// The agent is checking in.
    pub online: bool,
    /// The agent is in maintenance mode.
    pub maintenance: bool,
    /// Each post-reboot check's current result, as its monitor last reported it (`agent_healthy`
    /// included).
    pub checks: Vec<CheckResult>,
}

/// A tier's closure for one client, recorded in the RMM where a technician sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierClosure {
    /// The client.
    pub client: ClientId,
    /// The cycle.
    pub cycle: CycleId,
    /// The tier.
    pub tier: TierId,
    /// When the tier validated (what closed it).
    #[serde(with = "utc")]
    pub closed_at: DateTime<Utc>,
    /// One line for the technician: the counts and the PSA compliance ticket.
    pub summary: String,
}

/// A failed patch's next retry window, recorded in the RMM where a technician sees it (the seed's
/// "Failed patches tracked in RMM with next retry window documented").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryNote {
    /// The client whose endpoint failed.
    pub client: ClientId,
    /// The cycle.
    pub cycle: CycleId,
    /// The endpoint.
    pub endpoint: EndpointId,
    /// Its host name.
    pub hostname: String,
    /// The failure's id.
    pub failure: String,
    /// What failed (`install`, `reboot`, `validation`, ...).
    pub stage: String,
    /// The patches that failed, when the RMM named them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<PatchId>,
    /// The next retry window, the endpoint's own, from the failure handling standard.
    pub next_retry: crate::schedule::Window,
    /// The PSA ticket tracking it, when opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// Commands to, and reports from, the RMM.
///
/// Error contract: `Transient` for the RMM's passing failures (retry the message), `Permanent`
/// for a command it refuses. `send` is keyed: a command whose key the RMM has already taken is
/// not run twice.
pub trait Rmm: Send + Sync {
    /// Sends one command under an idempotency key.
    fn send(
        &self,
        key: &str,
        command: &RmmCommand,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// What the RMM observed on an endpoint at or after `since` and up to now, oldest first.
    /// `expect` are the approved applicable patches the install must show installed (an
    /// install is reported succeeded when every one of them is; a failed one is named).
    fn reports(
        &self,
        endpoint: &EndpointId,
        since: DateTime<Utc>,
        expect: &[PatchId],
    ) -> impl Future<Output = Result<Vec<RmmReport>, PortError>> + Send;

    /// The client's endpoints on which anything the pipeline waits for may have happened at or
    /// after `since`: a patch job or install script that finished, a startup, a post-reboot
    /// monitor that changed. One paged read of the client's computers however many it has
    /// (never one call per endpoint); the pipeline then reads `reports` only for these. May
    /// over-report (an endpoint listed with nothing new is harmless), must never miss one.
    ///
    /// Error contract: `Transient` when the RMM throttles or fails passingly (retry the tick);
    /// `Permanent` when it refuses the read or answers in a shape it does not document (a
    /// retry would answer the same). Either way nothing is listed: the caller must not take an
    /// error for "nothing changed".
    fn changed(
        &self,
        client: &ClientId,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<EndpointId>, PortError>> + Send;

    /// Writes a decision into the client's approval policy for the push's endpoints, under an
    /// idempotency key (a repeat changes nothing).
    fn push_approval(
        &self,
        key: &str,
        push: &ApprovalPush,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// The decision the RMM holds for the patch on the endpoint (`None`: the RMM does not know
    /// the patch there).
    fn approval_state(
        &self,
        endpoint: &EndpointId,
        patch: &PatchId,
    ) -> impl Future<Output = Result<Option<RmmApproval>, PortError>> + Send;

    /// The agent's state now, read before work is sent.
    fn agent_state(
        &self,
        endpoint: &EndpointId,
    ) -> impl Future<Output = Result<AgentState, PortError>> + Send;

    /// The endpoint's health now (agent and post-reboot monitors), read during a pilot's soak.
    fn health(
        &self,
        endpoint: &EndpointId,
    ) -> impl Future<Output = Result<HealthReport, PortError>> + Send;

    /// Records a tier's closure for one client: one write per client and tier (never per
    /// endpoint), under an idempotency key, so a repeat changes nothing. `Ok(true)` when this
    /// call wrote it, `Ok(false)` when it was already recorded.
    fn record_closure(
        &self,
        key: &str,
        closure: &TierClosure,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Records a failure's next retry window for one endpoint, under an idempotency key: one
    /// write per failure (never per tick), so a repeat changes nothing. `Ok(true)` when this
    /// call wrote it, `Ok(false)` when it was already recorded.
    fn record_retry(
        &self,
        key: &str,
        note: &RetryNote,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;
}
