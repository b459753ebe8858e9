//! ring-promotion: a scheduled tier deploys when its turn comes. A pilot (or a client's only
//! server) deploys as soon as the month's approvals are in; a production tier waits for its
//! pilot's 7-day soak and health gates, and a pilot failure holds it (a critical one blocks it).

use chrono::{DateTime, Utc};
use patchflow_core::ids::CycleId;
use patchflow_core::ports::queue::QueueSender;
use patchflow_core::ports::state::{ApprovalStore, TierStore};
use patchflow_core::ports::PortError;
use patchflow_core::rules::failure::is_critical;
use patchflow_core::rules::waves::{promotion_gate, PilotHealth, Promotion};
use patchflow_core::tier::{TierEvent, TierState};
use patchflow_core::trace::Trace;
use tracing::info;

use crate::env::Ports;
use crate::error::HandlerError;
use crate::messages::{DeployEndpoint, Message, PromoteTier};
use crate::records::{self, run_kind, CycleDoc, Run, RunStatus, TierPlan, TIER_KIND};

/// The health of a pilot tier's endpoints.
pub async fn pilot_health<X: Ports>(
    x: &X,
    cycle: &CycleDoc,
    pilot: &patchflow_core::ports::state::TierId,
) -> Result<PilotHealth, HandlerError> {
    let env = x.env();
    let runs: Vec<(Run, u64)> = records::list(&env.state, cycle.cycle, &run_kind(pilot)).await?;
    let mut h = PilotHealth {
        endpoints: runs.len(),
        ..PilotHealth::default()
    };
    for (run, _) in &runs {
        match run.status {
            RunStatus::Validated => h.healthy += 1,
            RunStatus::Failed => {
                h.failed += 1;
                if is_critical(&run.endpoint_model(cycle)?) {
                    h.critical_failures += 1;
                }
            }
            _ => {}
        }
    }
    Ok(h)
}

/// Decides whether a scheduled tier deploys now, and deploys it.
pub async fn promote_tier<X: Ports>(
    x: &X,
    cycle: CycleId,
    msg: PromoteTier,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    let env = x.env();
    let Some(record) = env.state.get_tier(cycle, &msg.tier).await? else {
        return Err(HandlerError::Poison(format!(
            "no tier {} in {cycle}",
            msg.tier
        )));
    };
    if record.state != TierState::Scheduled {
        return Ok(format!("{} is already {}", msg.tier, record.state));
    }
    let cycle_doc = records::open_cycle(&env.state, cycle).await?;
    let (mut plan, plan_version): (TierPlan, u64) =
        records::must_load(&env.state, cycle, TIER_KIND, msg.tier.as_str()).await?;

    // Every patch must have its approval decision before anything deploys.
    let decided = env.state.list_approvals(cycle).await?.len();
    let patches = cycle_doc.catalog.patches.len();
    if decided < patches {
        return Ok(format!(
            "{decided} of {patches} approvals evaluated: waiting"
        ));
    }

    if let (Some(pilot), Some(gate)) = (&plan.pilot, plan.gate) {
        let health = pilot_health(x, &cycle_doc, pilot).await?;
        let mut trace = Trace::new();
        let decision = promotion_gate(plan.kind, now, gate, health, &mut trace);
        if decision != Promotion::Promote {
            let words = match decision {
                Promotion::WaitForSoak { until } => {
                    format!(
                        "waiting for the pilot's soak until {}",
                        until.format("%Y-%m-%d %H:%M UTC")
                    )
                }
                Promotion::Hold => format!(
                    "held: pilot {pilot} has {} failed and {} of {} healthy",
                    health.failed, health.healthy, health.endpoints
                ),
                Promotion::Blocked => format!(
                    "blocked: pilot {pilot} has {} critical failure(s)",
                    health.critical_failures
                ),
                Promotion::Promote => String::new(),
            };
            if plan.last_decision.as_deref() != Some(&words) {
                plan.last_decision = Some(words.clone());
                match records::save(
                    &env.state,
                    cycle,
                    TIER_KIND,
                    msg.tier.as_str(),
                    &plan,
                    Some(plan_version),
                )
                .await
                {
                    Ok(_) | Err(PortError::Conflict(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(words);
        }
    }

    // Deploy: the endpoints' messages first, then the tier's state. If the transition loses a
    // race or the process dies between the two, the messages are idempotent by key.
    let runs: Vec<(Run, u64)> = records::list(&env.state, cycle, &run_kind(&msg.tier)).await?;
    let messages: Vec<_> = runs
        .iter()
        .map(|(run, _)| {
            DeployEndpoint {
                tier: msg.tier.clone(),
                endpoint: run.endpoint.clone(),
                attempt: 0,
            }
            .envelope(
                cycle,
                format!("{cycle}/deploy/{}/0", run.endpoint),
                Some(&msg.tier),
            )
        })
        .collect();
    env.queues
        .send_batch(DeployEndpoint::STAGE, &messages)
        .await?;
    match env
        .state
        .transition_tier(cycle, &msg.tier, record.version, TierEvent::Deploy, now)
        .await
    {
        Ok(_) => {}
        Err(PortError::Conflict(_)) => return Ok(format!("{} moved on meanwhile", msg.tier)),
        Err(e) => return Err(e.into()),
    }
    info!(%cycle, tier = %msg.tier, endpoints = runs.len(), "tier deploying");
    Ok(format!("{} deploying {} endpoint(s)", msg.tier, runs.len()))
}
