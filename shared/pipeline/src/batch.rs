//! One delivery through its stage's handler, exactly as a Lambda function does it for each record
//! of an SQS batch: the envelope read (a malformed one is poison), the idempotency key claimed (a
//! redelivered message that was handled changes nothing twice), the handler run, the key
//! completed, or given up so the redelivery can try again.

use chrono::{DateTime, Utc};
use patchflow_core::ports::queue::{Envelope, Stage};
use patchflow_core::ports::state::{Claim, IdempotencyStore};
use tracing::{info, warn};

use crate::env::Ports;
use crate::error::HandlerError;
use crate::messages::{
    ArchiveTier, CheckSoak, ClientChanges, DeployEndpoint, DeployShard, EndpointFailed,
    EvaluatePatch, Message, OpenBatch, OpenCycle, PromoteTier, PushApproval, ReviewSweep,
    RollUpClient, TierTick,
};
use crate::{approval, batches, evidence, failure, opening, rollout, schedule};

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled now, or before (its outcome then): delete it.
    Done(String),
    /// Hand it back to the queue: it is retried, and dead-lettered after the maximum receives.
    Retry(String),
    /// Never processable: to the dead-letter queue with this reason.
    Poison(String),
}

async fn dispatch<X: Ports>(
    x: &X,
    stage: Stage,
    env: &Envelope,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    let cycle = env.cycle;
    match (stage, env.kind.as_str()) {
        (Stage::Approval, EvaluatePatch::KIND) => {
            approval::evaluate_patch(x, cycle, EvaluatePatch::from_envelope(env)?, now).await
        }
        (Stage::Approval, PushApproval::KIND) => {
            approval::push_approval(x, cycle, PushApproval::from_envelope(env)?, now).await
        }
        (Stage::Approval, ReviewSweep::KIND) => {
            approval::review_sweep(x, cycle, ReviewSweep::from_envelope(env)?, now).await
        }
        (Stage::Rollout, PromoteTier::KIND) => {
            rollout::promote_tier(x, cycle, PromoteTier::from_envelope(env)?, now).await
        }
        (Stage::Rollout, CheckSoak::KIND) => {
            rollout::check_soak(x, cycle, CheckSoak::from_envelope(env)?, now).await
        }
        (Stage::Rollout, OpenCycle::KIND) => {
            opening::open_cycle(x, cycle, OpenCycle::from_envelope(env)?, now).await
        }
        (Stage::Rollout, OpenBatch::KIND) => {
            batches::open_batches(x, cycle, OpenBatch::from_envelope(env)?, now).await
        }
        (Stage::Schedule, DeployEndpoint::KIND) => {
            schedule::deploy_endpoint(x, cycle, DeployEndpoint::from_envelope(env)?, now).await
        }
        (Stage::Schedule, DeployShard::KIND) => {
            schedule::deploy_shard(x, cycle, DeployShard::from_envelope(env)?, now).await
        }
        (Stage::Schedule, ClientChanges::KIND) => {
            schedule::client_changes(x, cycle, ClientChanges::from_envelope(env)?, now).await
        }
        (Stage::Schedule, TierTick::KIND) => {
            schedule::tier_tick(x, cycle, TierTick::from_envelope(env)?, now).await
        }
        (Stage::Failure, EndpointFailed::KIND) => {
            failure::endpoint_failed(x, cycle, EndpointFailed::from_envelope(env)?, now).await
        }
        (Stage::Evidence, ArchiveTier::KIND) => {
            evidence::archive_tier(x, cycle, ArchiveTier::from_envelope(env)?, now).await
        }
        (Stage::Evidence, RollUpClient::KIND) => {
            evidence::roll_up_client(x, cycle, RollUpClient::from_envelope(env)?).await
        }
        (stage, kind) => Err(HandlerError::Poison(format!(
            "the {stage} stage does not handle `{kind}` messages"
        ))),
    }
}

/// Handles one message body arriving on a stage's queue at `now`.
pub async fn handle<X: Ports>(x: &X, stage: Stage, body: &str, now: DateTime<Utc>) -> Outcome {
    let env = match Envelope::from_body(body) {
        Ok(e) => e,
        Err(e) => return Outcome::Poison(e.to_string()),
    };
    let settings = &x.env().settings;
    let state = &x.env().state;
    let key = env.idempotency_key.as_str();
    match state
        .claim(key, now, settings.lease, settings.idempotency_ttl)
        .await
    {
        Ok(Claim::Done(outcome)) => return Outcome::Done(outcome),
        Ok(Claim::InProgress) => {
            return Outcome::Retry(format!("{key} is being handled by another delivery"))
        }
        Ok(Claim::Acquired) => {}
        Err(e) => return Outcome::Retry(format!("claim {key}: {e}")),
    }
    let result = dispatch(x, stage, &env, now).await;
    match result {
        Ok(outcome) => {
            info!(%stage, kind = env.kind, key, outcome, "handled");
            match state
                .complete(key, &outcome, now, settings.idempotency_ttl)
                .await
            {
                Ok(()) => Outcome::Done(outcome),
                // The work is done and idempotent; the redelivery redoes nothing harmful.
                Err(e) => Outcome::Retry(format!("complete {key}: {e}")),
            }
        }
        Err(e) => {
            warn!(%stage, kind = env.kind, key, error = %e, "not handled");
            if let Err(a) = state.abandon(key).await {
                warn!(key, error = %a, "claim not given up; it expires with its lease");
            }
            match e {
                HandlerError::Retry(m) => Outcome::Retry(m),
                HandlerError::Poison(m) => Outcome::Poison(m),
            }
        }
    }
}
