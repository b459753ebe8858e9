//! approval-eval: approval governance for each patch of the month (phase 3), the exception
//! register for declined drivers, and the daily sweep that escalates overdue reviews.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use patchflow_core::contract::{catalog_from_doc, CatalogDoc, PatchDoc};
use patchflow_core::ids::CycleId;
use patchflow_core::model::{Criticality, Patch};
use patchflow_core::ports::psa::{NewTicket, Psa};
use patchflow_core::ports::queue::{Envelope, QueueSender};
use patchflow_core::ports::rmm::{ApprovalPush, Rmm, RmmApproval};
use patchflow_core::ports::state::{ApprovalStore, ExceptionStore};
use patchflow_core::ports::PortError;
use patchflow_core::rules::approval::{self, review_overdue, Decision};
use patchflow_core::rules::exception::{ExceptionEntry, ExceptionKind};
use patchflow_core::schedule::utc;
use patchflow_core::trace::Node;

use crate::env::Ports;
use crate::error::HandlerError;
use crate::messages::{EvaluatePatch, Message, PushApproval, ReviewSweep};
use crate::records::{self, CycleDoc, RmmConfirmation, ScopeShard};
use patchflow_core::ids::EndpointId;
use patchflow_core::rules::applicability::{normalize, Matcher};

/// How the RMM's approval policy holds a decision: auto-approved and approved patches are
/// approved, declined ones denied, and a patch held for review stays not approved.
pub fn rmm_approval(decision: Decision) -> RmmApproval {
    match decision {
        Decision::AutoApproved | Decision::Approved => RmmApproval::Approved,
        Decision::Declined => RmmApproval::Denied,
        Decision::PendingReview => RmmApproval::NotApproved,
    }
}

/// A decision's tag in its pushes' keys: the decision's name, and for an engineer's decision the
/// instant of its sign-off, so that a patch declined, approved and declined again is written
/// three times while a repeat of any one of them changes nothing.
pub fn decision_tag(a: &approval::Approval) -> String {
    match &a.sign_off {
        None => a.decision.as_str().to_owned(),
        Some(s) => format!("{}@{}", a.decision.as_str(), s.at.format("%Y%m%dT%H%M%S")),
    }
}

/// The RMM's idempotency key of a push: `{cycle}/approval/{client}/{patch}/{decision}`, with
/// `/{tier}` after it for a later batch's tier and `/{shard}` for a client's second and later
/// shards.
pub fn push_key(cycle: CycleId, msg: &PushApproval) -> String {
    let mut base = format!(
        "{cycle}/approval/{}/{}/{}",
        msg.client, msg.patch, msg.decision
    );
    if let Some(tier) = &msg.tier {
        base = format!("{base}/{tier}");
    }
    if msg.shard == 0 {
        base
    } else {
        format!("{base}/{}", msg.shard)
    }
}

/// The messages that write a decision into every client's approval policy: one per client and
/// scope shard, so no one message's work grows with the fleet.
pub fn approval_pushes(cycle_doc: &CycleDoc, a: &approval::Approval) -> Vec<Envelope> {
    let tag = decision_tag(a);
    cycle_doc
        .scopes
        .iter()
        .flat_map(|scope| {
            let tag = tag.clone();
            (0..scope.shards).map(move |shard| {
                let msg = PushApproval {
                    patch: a.patch.clone(),
                    client: scope.client.clone(),
                    shard,
                    decision: tag.clone(),
                    tier: None,
                };
                let key = format!("{}/push", push_key(cycle_doc.cycle, &msg));
                msg.envelope(cycle_doc.cycle, key, None)
            })
        })
        .collect()
}

/// Writes one patch's decision into one client's approval policy (one shard of its in-scope
/// endpoints), keyed, then reads it back on the shard's first endpoint: confirmed, it is
/// recorded with the approval; not yet visible, the message comes back; the RMM holding
/// another decision after the write is an error naming both. A message for a decision since
/// replaced changes nothing (the later decision has its own messages).
pub async fn push_approval<X: Ports>(
    x: &X,
    cycle: CycleId,
    msg: PushApproval,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    let env = x.env();
    let current = env
        .state
        .get_approval(cycle, &msg.patch)
        .await?
        .ok_or_else(|| HandlerError::Poison(format!("{} has no approval in {cycle}", msg.patch)))?;
    if decision_tag(&current) != msg.decision {
        return Ok(format!(
            "{} for {}: {} was replaced by {}",
            msg.patch,
            msg.client,
            msg.decision,
            decision_tag(&current)
        ));
    }
    let want = rmm_approval(current.decision);
    // A later batch's push targets its tier's endpoints (see `batches`), else the client's.
    let scope_kind = match &msg.tier {
        Some(tier) => crate::batches::batch_scope_kind(tier, &msg.client),
        None => records::scope_kind(&msg.client),
    };
    let (scope, _): (ScopeShard, u64) =
        records::must_load(&env.state, cycle, &scope_kind, &msg.shard.to_string()).await?;
    // The targets: the shard's in-scope endpoints the patch applies to (by their scans as the
    // cycle opened, else their OS against its products, else all); read back where a scan
    // lists it, since the RMM shows a patch's approval only on a computer that needs it.
    let cycle_doc = records::open_cycle(&env.state, cycle).await?;
    let patch = cycle_doc
        .catalog
        .patches
        .iter()
        .find(|p| p.id == msg.patch.as_str())
        .map(patch_model)
        .transpose()?
        .ok_or_else(|| {
            HandlerError::Poison(format!("{} is not in the {cycle} catalog", msg.patch))
        })?;
    let (targets, read_back) = push_targets(&scope, &patch);
    let Some((read_back, listed)) = read_back else {
        return Ok(format!(
            "{} for {}: applies to none of shard {}'s endpoints; nothing to write",
            msg.patch, msg.client, msg.shard
        ));
    };
    let key = push_key(cycle, &msg);
    let push = ApprovalPush {
        client: msg.client.clone(),
        patch: msg.patch.clone(),
        approval: want,
        endpoints: targets,
    };
    env.rmm.push_approval(&key, &push).await?;
    let verified = match env.rmm.approval_state(&read_back, &msg.patch).await? {
        Some(held) if held == want => true,
        Some(held) => {
            // A later decision may have been written meanwhile: then this one is moot.
            let now_current = env.state.get_approval(cycle, &msg.patch).await?;
            if now_current.as_ref().map(decision_tag).as_deref() != Some(msg.decision.as_str()) {
                return Ok(format!(
                    "{} for {}: {} was replaced meanwhile",
                    msg.patch, msg.client, msg.decision
                ));
            }
            // The write is the MSP's script, which the agent runs later: until it has, the
            // policy still holds the earlier state. Handed back; a state that never changes
            // ends in the dead-letter queue with this reason after the queue's receive limit.
            return Err(HandlerError::Retry(format!(
                "the RMM still holds {} for client {} as {held} on {read_back} after patchflow \
                 wrote {want} ({}): not applied yet",
                msg.patch,
                msg.client,
                current.decision.as_str()
            )));
        }
        // No target's scan lists the patch: the RMM may not show its approval there at all.
        // Written, and recorded as not verifiable, rather than retried for ever.
        None if !listed => false,
        None => {
            return Err(HandlerError::Retry(format!(
                "{} for {} written as {want}; not yet visible on {read_back}",
                msg.patch, msg.client
            )))
        }
    };
    let confirmation = RmmConfirmation {
        patch: msg.patch.clone(),
        client: msg.client.clone(),
        shard: msg.shard,
        decision: current.decision.as_str().to_owned(),
        approval: want,
        key: key.clone(),
        endpoints: push.endpoints.len(),
        read_back,
        confirmed_at: now,
        verified,
        tier: msg.tier.clone(),
    };
    match records::save(
        &env.state,
        cycle,
        &records::rmm_approval_kind(&msg.client),
        &match &msg.tier {
            Some(tier) => format!("{}.{tier}.{}.{}", msg.patch, msg.shard, msg.decision),
            None => format!("{}.{}.{}", msg.patch, msg.shard, msg.decision),
        },
        &confirmation,
        None,
    )
    .await
    {
        Ok(_) | Err(PortError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(format!(
        "{} for {}: {want} on {} endpoint(s), {}",
        msg.patch,
        msg.client,
        push.endpoints.len(),
        if verified {
            "confirmed"
        } else {
            "not verifiable (no target's scan lists it)"
        }
    ))
}

/// The endpoints of a scope shard a patch's decision is written to, and the one it is read back
/// on: the first whose scan lists the patch (`true`: the RMM must show it there), else the
/// first target (`false`: it may not).
pub fn push_targets(
    scope: &ScopeShard,
    patch: &Patch,
) -> (Vec<EndpointId>, Option<(EndpointId, bool)>) {
    if scope.scans.len() != scope.endpoints.len() {
        // A shard without scans: whether the RMM lists the patch there is not known.
        return (
            scope.endpoints.clone(),
            scope.endpoints.first().map(|e| (e.clone(), true)),
        );
    }
    let matcher = Matcher::new([patch]);
    let mut targets = Vec::new();
    let mut listed = None;
    for (id, scan) in scope.endpoints.iter().zip(&scope.scans) {
        let os = scan.os.as_deref().map(normalize);
        if !matcher.applies_to(scan.applicable.as_deref(), &os, 0) {
            continue;
        }
        if listed.is_none() && scan.applicable.is_some() {
            listed = Some(id.clone());
        }
        targets.push(id.clone());
    }
    let read_back = listed
        .map(|e| (e, true))
        .or_else(|| targets.first().map(|e| (e.clone(), false)));
    (targets, read_back)
}

/// Sends a decision's pushes to the approval queue.
pub async fn send_approval_pushes(
    queues: &impl QueueSender,
    cycle_doc: &CycleDoc,
    a: &approval::Approval,
) -> Result<usize, PortError> {
    let messages = approval_pushes(cycle_doc, a);
    queues.send_batch(PushApproval::STAGE, &messages).await?;
    Ok(messages.len())
}

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
    // The decision as stored (an engineer's, if one came first) goes to every client's approval
    // policy in the RMM.
    let stored = env
        .state
        .get_approval(cycle, &patch.id)
        .await?
        .unwrap_or_else(|| approval.clone());
    let pushes = send_approval_pushes(&env.queues, &cycle_doc, &stored).await?;
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
                signed: false,
                approval_ref: None,
                lifted_by: patchflow_core::rules::exception::lifted_by(
                    ExceptionKind::PatchDeclined,
                    None,
                ),
            })
            .await?;
    }
    Ok(format!(
        "{} {}, {pushes} RMM approval push(es)",
        patch.id,
        stored.decision.as_str()
    ))
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

#[cfg(test)]
mod tests {
    use patchflow_core::contract::parse_catalog;
    use patchflow_core::ids::{ClientId, PatchId};

    use super::*;
    use crate::records::ScopeScan;

    fn id(s: &str) -> EndpointId {
        EndpointId::parse(s).unwrap()
    }

    fn scan(applicable: Option<&[&str]>, os: Option<&str>) -> ScopeScan {
        ScopeScan {
            applicable: applicable.map(|l| l.iter().map(|p| PatchId::parse(*p).unwrap()).collect()),
            os: os.map(str::to_owned),
        }
    }

    #[test]
    fn a_push_targets_the_endpoints_its_patch_applies_to_and_reads_back_where_a_scan_lists_it() {
        let catalog = parse_catalog(
            "catalog",
            r#"{"patches": [{"id": "KB5", "vendor": "microsoft", "classification": "security",
                "severity": "critical", "products": ["Windows Server 2022"]}]}"#,
        )
        .unwrap();
        let patch = &catalog.patches[0];
        let scope = ScopeShard {
            client: ClientId::parse("acme").unwrap(),
            shard: 0,
            endpoints: vec![
                id("ws1"),
                id("srv-old"),
                id("srv-new"),
                id("srv-scanned"),
                id("nothing"),
            ],
            scans: vec![
                scan(None, Some("Windows 11 Pro")),
                scan(None, Some("Windows Server 2019 Standard")),
                scan(None, Some("Microsoft Windows Server 2022 Standard x64")),
                scan(Some(&["KB1", "KB5"]), Some("Windows Server 2022 Standard")),
                scan(None, None),
            ],
        };
        let (targets, read_back) = push_targets(&scope, patch);
        assert_eq!(
            targets,
            vec![id("srv-new"), id("srv-scanned"), id("nothing")]
        );
        assert_eq!(read_back, Some((id("srv-scanned"), true)));
        // A scan that does not list it takes the endpoint out; nothing left, nothing to write.
        let none = ScopeShard {
            endpoints: vec![id("srv-scanned")],
            scans: vec![scan(Some(&["KB1"]), None)],
            ..scope.clone()
        };
        assert_eq!(push_targets(&none, patch), (vec![], None));
        // A shard written before scans were kept: every endpoint, read back on the first.
        let old = ScopeShard {
            scans: vec![],
            ..scope
        };
        let (targets, read_back) = push_targets(&old, patch);
        assert_eq!(targets.len(), 5);
        assert_eq!(read_back, Some((id("ws1"), true)));
        // Targets without a scan listing it: read back on the first, which may not show it.
        let unscanned = ScopeShard {
            endpoints: vec![id("srv-new")],
            scans: vec![scan(None, Some("Windows Server 2022 Datacenter"))],
            ..old
        };
        assert_eq!(
            push_targets(&unscanned, patch),
            (vec![id("srv-new")], Some((id("srv-new"), false)))
        );
    }
}
