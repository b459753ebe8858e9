//! What engineers do to a running cycle, through the CLI: approve or decline a held patch,
//! approve a critical server's install, and record a failure's root cause so it may retry.
//! Each is a conditional write: an engineer and a handler can never both win.

use chrono::{DateTime, Utc};
use patchflow_core::ids::{CycleId, EndpointId, PatchId};
use patchflow_core::ports::queue::QueueSender;
use patchflow_core::ports::state::{DocStore, StateStore};
use patchflow_core::ports::PortError;
use patchflow_core::rules::approval::{
    apply_engineer_decision, Decision, EngineerDecision, SignOff,
};
use patchflow_core::rules::failure::RootCause;
use patchflow_core::tier::{TierEvent, TierState};

use crate::approval::{decision_tag, patch_model, send_approval_pushes};
use crate::error::HandlerError;
use crate::messages::{DeployEndpoint, Message};
use crate::records::{self, run_kind, Run, RunStatus};

/// Why an engineer's action was refused.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The thing acted on does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The action does not apply now.
    #[error("{0}")]
    Refused(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] PortError),
    /// A stored record is unreadable.
    #[error("{0}")]
    Corrupt(String),
}

impl From<HandlerError> for ActionError {
    fn from(e: HandlerError) -> Self {
        match e {
            HandlerError::Retry(m) | HandlerError::Poison(m) => ActionError::Corrupt(m),
        }
    }
}

/// Approves or declines a patch held for review (or reverses a default decline); returns the
/// decision stored. See [`decide_patch_in_batch`].
pub async fn decide_patch(
    state: &impl StateStore,
    queues: &impl QueueSender,
    cycle: CycleId,
    patch: &PatchId,
    decision: EngineerDecision,
) -> Result<Decision, ActionError> {
    Ok(decide_patch_in_batch(state, queues, cycle, patch, decision)
        .await?
        .decision)
}

/// What an engineer's decision on a patch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchDecided {
    /// The decision stored.
    pub decision: Decision,
    /// For an approval: `Some(1)` when it deploys with the cycle's tiers (no tier had deployed,
    /// or the patch was already in batch 1); `None` when it came after the first deployment and
    /// goes to a later batch, pilot first (ring-promotion opens it).
    pub batch: Option<u32>,
}

/// Approves or declines a patch held for review (or reverses a default decline). A decline, and
/// an approval while no tier has deployed (batch 1), are queued for approval-eval to write into
/// every client's approval policy in the RMM (one message per client and scope shard). An
/// approval after the first deployment goes to a later batch: ring-promotion is asked to open
/// it, and its approval is written into the RMM tier by tier as the batch's tiers deploy, for
/// their endpoints only (so production's policy approves it only after its batch pilot soaked).
pub async fn decide_patch_in_batch(
    state: &impl StateStore,
    queues: &impl QueueSender,
    cycle: CycleId,
    patch: &PatchId,
    decision: EngineerDecision,
) -> Result<PatchDecided, ActionError> {
    let cycle_doc = records::cycle_doc(state, cycle)
        .await?
        .ok_or_else(|| ActionError::NotFound(format!("cycle {cycle} is not open")))?;
    let doc = cycle_doc
        .catalog
        .patches
        .iter()
        .find(|p| p.id == patch.as_str())
        .ok_or_else(|| ActionError::NotFound(format!("{patch} is not in the {cycle} catalog")))?;
    let current = state.get_approval(cycle, patch).await?.ok_or_else(|| {
        ActionError::Refused(format!(
            "{patch} has not been evaluated yet; try again shortly"
        ))
    })?;
    let decided = apply_engineer_decision(&current, &patch_model(doc)?, decision)
        .map_err(|e| ActionError::Refused(e.to_string()))?;
    state
        .put_approval(cycle, &decided.approval, Some(current.decision))
        .await
        .map_err(|e| match e {
            PortError::Conflict(_) => ActionError::Refused(format!(
                "{patch} changed while you decided (it was {}); look again",
                current.decision.as_str()
            )),
            other => ActionError::Store(other),
        })?;
    if let Some(entry) = &decided.exception {
        state.record_exception(entry).await?;
    }
    let batch = if decided.approval.decision.deploys() {
        crate::batches::join_first(state, cycle, patch).await?
    } else {
        None
    };
    if decided.approval.decision.deploys() && batch.is_none() {
        crate::batches::request_open(queues, cycle, patch, &decision_tag(&decided.approval))
            .await?;
    } else {
        send_approval_pushes(queues, &cycle_doc, &decided.approval).await?;
    }
    Ok(PatchDecided {
        decision: decided.approval.decision,
        batch,
    })
}

/// Finds an endpoint's run in a cycle: the one awaiting an engineer's approval if any (an
/// endpoint has a run per update batch it takes part in), else its first.
async fn find_run(
    state: &impl DocStore,
    cycle: CycleId,
    endpoint: &EndpointId,
) -> Result<(Run, u64), ActionError> {
    let cycle_doc = records::cycle_doc(state, cycle)
        .await?
        .ok_or_else(|| ActionError::NotFound(format!("cycle {cycle} is not open")))?;
    let mut first = None;
    for tier in &cycle_doc.tiers {
        if let Some(found) =
            records::load::<Run>(state, cycle, &run_kind(tier), endpoint.as_str()).await?
        {
            if found.0.status == RunStatus::AwaitingApproval && found.0.engineer_approval.is_none()
            {
                return Ok(found);
            }
            first.get_or_insert(found);
        }
    }
    if let Some(found) = first {
        return Ok(found);
    }
    Err(ActionError::NotFound(format!(
        "{endpoint} is not in any tier of {cycle} (out of scope, or not in the inventory)"
    )))
}

/// Approves a critical server's install; it is scheduled by the next message.
pub async fn approve_endpoint(
    state: &impl StateStore,
    queues: &impl QueueSender,
    cycle: CycleId,
    endpoint: &EndpointId,
    sign_off: SignOff,
) -> Result<(), ActionError> {
    let (mut run, version) = find_run(state, cycle, endpoint).await?;
    if run.engineer_approval.is_some() {
        return Err(ActionError::Refused(format!(
            "{endpoint} is already approved"
        )));
    }
    if patchflow_core::run::active(&run) {
        return Err(ActionError::Refused(format!(
            "{endpoint}'s install is already under way ({}): nothing waits for an approval",
            run.status.as_str()
        )));
    }
    run.engineer_approval = Some(sign_off);
    records::save_waiting_run(state, cycle, &run, Some(version)).await?;
    if run.status == RunStatus::AwaitingApproval {
        let msg = DeployEndpoint {
            tier: run.tier.clone(),
            endpoint: endpoint.clone(),
            attempt: run.attempt,
        };
        let env = msg.envelope(
            cycle,
            format!(
                "{}/approved",
                crate::batches::deploy_key(cycle, &run.tier, endpoint, run.attempt)
            ),
            Some(&run.tier),
        );
        queues.send_batch(DeployEndpoint::STAGE, &[env]).await?;
    }
    Ok(())
}

/// What recording a root cause did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootCauseRecorded {
    /// The tier was released (every open failure of it has a root cause) and its failed
    /// endpoints scheduled for retry in their next window.
    pub released: bool,
    /// Failures of the tier still without a root cause: those of the first page of failed runs
    /// (by endpoint) that has any.
    pub waiting: Vec<String>,
    /// Whether failed runs after that page were not looked at (more may be waiting).
    pub more_waiting: bool,
}

/// How many failed runs a root cause's check for failures still waiting reads at a time.
const WAITING_PAGE: usize = 100;

/// Records a failure's root cause. When every open failure of its tier has one, the tier leaves
/// its hold and the failed endpoints are retried in their next retry windows.
pub async fn record_root_cause(
    state: &impl StateStore,
    queues: &impl QueueSender,
    cycle: CycleId,
    failure_id: &str,
    root_cause: RootCause,
    now: DateTime<Utc>,
) -> Result<RootCauseRecorded, ActionError> {
    if root_cause.text.trim().is_empty() {
        return Err(ActionError::Refused("a root cause needs words".into()));
    }
    let mut failure = state
        .get_failure(cycle, failure_id)
        .await?
        .ok_or_else(|| ActionError::NotFound(format!("no failure {failure_id} in {cycle}")))?;
    if failure.root_cause.is_some() {
        return Err(ActionError::Refused(format!(
            "{failure_id} already has a root cause"
        )));
    }
    failure.root_cause = Some(root_cause);
    let version = failure.version;
    state.save_failure(&failure, version).await?;

    // The tier's open failures: each failed run's latest failure, a page of failed runs at a
    // time, stopping at the first page with one still waiting: an engineer working through a
    // tier's failures reads about a page per root cause, not every failure each time.
    let tier = failure.tier.clone();
    let mut failed: Vec<Run> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, next) = records::runs_in_phase_page(
            state,
            cycle,
            &tier,
            records::PHASE_FAILED,
            after.as_deref(),
            WAITING_PAGE,
        )
        .await?;
        let mut waiting = Vec::new();
        for (r, _) in page {
            if r.status != RunStatus::Failed {
                continue;
            }
            if let Some(id) = r.failures.last() {
                let f = state.get_failure(cycle, id).await?;
                if f.is_none_or(|f| f.root_cause.is_none()) {
                    waiting.push(id.clone());
                }
            }
            failed.push(r);
        }
        if !waiting.is_empty() {
            return Ok(RootCauseRecorded {
                released: false,
                more_waiting: next.is_some(),
                waiting,
            });
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let messages: Vec<_> = failed
        .iter()
        .map(|r| {
            DeployEndpoint {
                tier: tier.clone(),
                endpoint: r.endpoint.clone(),
                attempt: r.attempt + 1,
            }
            .envelope(
                cycle,
                crate::batches::deploy_key(cycle, &tier, &r.endpoint, r.attempt + 1),
                Some(&tier),
            )
        })
        .collect();
    queues.send_batch(DeployEndpoint::STAGE, &messages).await?;
    if let Some(t) = state.get_tier(cycle, &tier).await? {
        if matches!(t.state, TierState::Held | TierState::Blocked) {
            // Kept before the transition (keyed by the retry's round): a command run again
            // after a failure in between keeps it again and changes nothing.
            crate::compliance::retried(state, cycle, &tier, now).await?;
            match state
                .transition_tier(cycle, &tier, t.version, TierEvent::RootCauseRecorded, now)
                .await
            {
                Ok(_) => {}
                Err(PortError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(RootCauseRecorded {
        released: true,
        waiting: Vec::new(),
        more_waiting: false,
    })
}

/// Signs an engineer's decision.
pub fn sign(engineer: &str, reason_code: &str, at: DateTime<Utc>) -> Result<SignOff, ActionError> {
    Ok(SignOff {
        engineer: patchflow_core::ids::Engineer::parse(engineer)
            .map_err(|e| ActionError::Refused(format!("--engineer: {e}")))?,
        reason_code: patchflow_core::rules::approval::ReasonCode::parse(reason_code)
            .map_err(|e| ActionError::Refused(format!("--reason-code: {e}")))?,
        at,
    })
}
