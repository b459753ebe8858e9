//! approval-eval: approval governance for each patch of the month (phase 3), the exception
//! register for declined drivers, and the daily sweep that escalates overdue reviews.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use patchflow_core::contract::{catalog_from_doc, CatalogDoc, PatchDoc};
use patchflow_core::ids::CycleId;
use patchflow_core::model::{Criticality, Patch};
use patchflow_core::ports::psa::{NewTicket, Psa};
use patchflow_core::ports::state::{ApprovalStore, ExceptionStore};
use patchflow_core::ports::PortError;
use patchflow_core::rules::approval::{self, review_overdue, Decision};
use patchflow_core::rules::exception::{ExceptionEntry, ExceptionKind};
use patchflow_core::schedule::utc;
use patchflow_core::trace::Node;

use crate::env::Ports;
use crate::error::HandlerError;
use crate::messages::{EvaluatePatch, ReviewSweep};
use crate::records;

/// A patch record of the catalog as the domain model has it.
pub fn patch_model(doc: &PatchDoc) -> Result<Patch, HandlerError> {
    let catalog = catalog_from_doc(
        "the cycle's catalog",
        CatalogDoc {
            patches: vec![doc.clone()],
        },
    )
    .map_err(|e| HandlerError::Poison(e.to_string()))?;
    catalog
        .patches
        .into_iter()
        .next()
        .ok_or_else(|| HandlerError::Poison(format!("patch {} did not load", doc.id)))
}

/// Evaluates one patch and stores its approval (once: a second evaluation finds it stored).
pub async fn evaluate_patch<X: Ports>(
    x: &X,
    cycle: CycleId,
    msg: EvaluatePatch,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    let env = x.env();
    // The sync enqueues approvals just before it writes the cycle record: not open yet is a
    // retry, not poison.
    let cycle_doc = records::open_cycle(&env.state, cycle)
        .await
        .map_err(|e| match e {
            HandlerError::Poison(m) => HandlerError::Retry(m),
            other => other,
        })?;
    let patch = patch_model(&msg.patch)?;
    let approval = approval::Approval {
        recorded_at: Some(now),
        ..approval::evaluate(&patch, cycle_doc.released_at, &env.policy.approval)
    };
    match env.state.put_approval(cycle, &approval, None).await {
        Ok(()) | Err(PortError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    if approval.decision == Decision::Declined && approval.node == Node::DriverDecline {
        env.state
            .record_exception(&ExceptionEntry {
                subject: patch.id.to_string(),
                kind: ExceptionKind::PatchDeclined,
                reason: approval.reason.clone(),
                node: Node::DriverDecline,
                client: None,
                reference: None,
                engineer: None,
                engineer_reason: None,
                signed_at: None,
                change_requires: Cow::Borrowed("an engineer's approval with sign-off"),
            })
            .await?;
    }
    Ok(format!("{} {}", patch.id, approval.decision.as_str()))
}

/// Opens a PSA ticket (once per patch) for each review that is past due.
pub async fn review_sweep<X: Ports>(
    x: &X,
    cycle: CycleId,
    _msg: ReviewSweep,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    let env = x.env();
    let mut escalated = 0;
    for a in env.state.list_approvals(cycle).await? {
        if !review_overdue(&a, now) {
            continue;
        }
        let due = a.review_due.map(|d| utc::format(&d)).unwrap_or_default();
        env.psa
            .open_ticket(&NewTicket {
                external_ref: format!("{cycle}/review/{}", a.patch),
                client: env.settings.msp_client.clone(),
                priority: Criticality::P3,
                summary: format!("Patch review overdue: {} ({cycle})", a.patch),
                description: format!(
                    "{} is held for engineer review ({}); the review was due {due}. Approve or \
                     decline it: patchflow approve|decline {} --engineer NAME --reason-code CODE",
                    a.patch, a.reason, a.patch
                ),
            })
            .await?;
        escalated += 1;
    }
    Ok(format!("{escalated} overdue review(s) escalated"))
}
