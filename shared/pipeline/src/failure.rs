//! failure-escalation: every failed deployment or validation becomes a PSA ticket with its
//! P1-P3 priority; a server-class failure after hours pages on-call; the tier is held (blocked
//! for a critical system) until a root cause is documented; the next retry window is recorded,
//! and written to the RMM where the technician sees it.

use chrono::{DateTime, Utc};
use patchflow_core::ids::CycleId;
use patchflow_core::ports::pager::Pager;
use patchflow_core::ports::psa::{NewTicket, Psa};
use patchflow_core::ports::rmm::{RetryNote, Rmm};
use patchflow_core::ports::state::{FailureRecord, FailureStore, TierStore};
use patchflow_core::ports::PortError;
use patchflow_core::rules::failure::{client_impact, escalate};
use patchflow_core::schedule::utc;
use patchflow_core::tier::{TierEvent, TierState};
use patchflow_core::trace::Trace;
use tracing::{info, warn};

use crate::env::Ports;
use crate::error::HandlerError;
use crate::messages::EndpointFailed;
use crate::records::RunModel;
use crate::records::{self, run_kind, Run};

/// A trace in words, one step a line.
pub fn trace_lines(trace: &Trace) -> String {
    trace
        .entries()
        .iter()
        .map(|t| {
            let facts = t
                .facts
                .as_ref()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default();
            format!("- {}: {} [{}]{facts}", t.node.title(), t.outcome, t.reason)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Escalates one failure: recorded once, one ticket, at most one page, the tier held.
pub async fn endpoint_failed<X: Ports>(
    x: &X,
    cycle: CycleId,
    msg: EndpointFailed,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    let env = x.env();
    let cycle_doc = records::open_cycle(&env.state, cycle).await?;
    let (run, _): (Run, u64) = records::must_load(
        &env.state,
        cycle,
        &run_kind(&msg.tier),
        msg.endpoint.as_str(),
    )
    .await?;
    let e = run.endpoint_model(&cycle_doc)?;
    let mut trace = Trace::new();
    // The client impact (the endpoint's, else its client's) raises the priority, never lowers it.
    let esc = escalate(&e, msg.at, client_impact(&e), &env.policy, &mut trace);
    let opened = FailureRecord {
        id: msg.id.clone(),
        cycle,
        tier: msg.tier.clone(),
        endpoint: msg.endpoint.clone(),
        client: msg.client.clone(),
        stage: msg.stage,
        priority: esc.priority,
        paged: esc.page_on_call,
        failed_at: msg.at,
        next_retry: esc.next_retry,
        ticket: None,
        root_cause: None,
        version: 0,
    };
    match env.state.open_failure(&opened).await {
        Ok(()) | Err(PortError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let mut failure = env
        .state
        .get_failure(cycle, &msg.id)
        .await?
        .ok_or_else(|| HandlerError::Retry(format!("failure {} not readable yet", msg.id)))?;
    // The KBs that failed, when the RMM named them.
    let kbs = if msg.patches.is_empty() {
        String::new()
    } else {
        let ids: Vec<&str> = msg.patches.iter().map(|p| p.as_str()).collect();
        format!(" ({})", ids.join(", "))
    };
    let summary = format!(
        "{} {} failed{kbs} on {} ({}), {}",
        failure.priority.as_str().to_uppercase(),
        msg.stage.as_str(),
        e.hostname,
        msg.endpoint,
        msg.tier
    );
    if failure.ticket.is_none() {
        let description = format!(
            "{}\n\nFailed at {}. Next retry window from {} to {}.\nThe tier is held until a \
             root cause is documented:\n  patchflow failure root-cause {} --cycle {cycle} \
             --engineer NAME --text \"...\"\n\nWhy:\n{}",
            msg.detail,
            utc::format(&msg.at),
            utc::format(&failure.next_retry.start),
            utc::format(&failure.next_retry.end),
            msg.id,
            trace_lines(&trace)
        );
        let ticket = env
            .psa
            .open_ticket(&NewTicket {
                external_ref: format!("{cycle}/failure/{}", msg.id),
                client: msg.client.clone(),
                priority: failure.priority,
                summary: summary.clone(),
                description,
            })
            .await?;
        failure.ticket = Some(ticket);
        let version = failure.version;
        failure = env.state.save_failure(&failure, version).await?;
    }
    if failure.paged {
        env.pager
            .trigger(&format!("{cycle}/{}", msg.id), &summary)
            .await?;
    }
    // Hold the tier (block it for a critical system), unless the endpoint has already moved on
    // to a later attempt (a late delivery of an old failure).
    let critical = esc.block_production;
    let attempt: Option<u32> = msg.id.rsplit('.').next().and_then(|a| a.parse().ok());
    let stale = attempt.is_some_and(|a| run.attempt > a);
    let tier = if stale {
        None
    } else {
        env.state.get_tier(cycle, &msg.tier).await?
    };
    if let Some(tier) = tier {
        let applies = match tier.state {
            TierState::Deploying | TierState::Validating | TierState::Validated => true,
            TierState::Held => critical,
            _ => false,
        };
        // The hold this failure makes, already made (a redelivery after the transition, or a
        // failure of a tier another one held the same way).
        let done = match tier.state {
            TierState::Held => !critical,
            TierState::Blocked => critical,
            _ => false,
        };
        // The compliance note is kept before the transition, and again whenever the hold is
        // found made: under the failure's key, so it is kept once.
        if applies || done {
            crate::compliance::held(x, cycle, &msg, run.attempt, critical, now).await?;
        }
        if applies {
            env.state
                .transition_tier(
                    cycle,
                    &msg.tier,
                    tier.version,
                    TierEvent::Failed { critical },
                    now,
                )
                .await?;
        }
    }
    // The failed patch tracked in the RMM with its next retry window documented, where the
    // technician sees it: once per failure (keyed), beside the tier closures. After the hold,
    // so documentation never delays the safety hold; a passing RMM failure retries the message
    // (the ticket, the page and the hold are not repeated); one the RMM refuses is logged and
    // named in the outcome, never a reason to drop the escalation.
    let mut rmm_note = String::new();
    match env
        .rmm
        .record_retry(
            &format!("{cycle}/retry/{}", msg.id),
            &RetryNote {
                client: msg.client.clone(),
                cycle,
                endpoint: msg.endpoint.clone(),
                hostname: e.hostname.clone(),
                failure: msg.id.clone(),
                stage: msg.stage.as_str().to_owned(),
                patches: msg.patches.clone(),
                next_retry: failure.next_retry,
                ticket: failure.ticket.clone(),
            },
        )
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_retryable() => return Err(e.into()),
        Err(e) => {
            warn!(%cycle, failure = %msg.id, error = %e, "the retry window was not written to the RMM");
            rmm_note = format!("; retry window not written to the RMM: {e}");
        }
    }
    info!(%cycle, failure = %msg.id, priority = failure.priority.as_str(), paged = failure.paged, "failure escalated");
    Ok(format!(
        "{} ticket {} ({}){}",
        msg.id,
        failure.ticket.as_deref().unwrap_or("-"),
        failure.priority.as_str(),
        if failure.paged { ", on-call paged" } else { "" },
    ) + &rmm_note)
}
