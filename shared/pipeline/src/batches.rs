//! Update batches: every batch of the month goes through the pilot and its soak before
//! production receives it.
//!
//! Batch 1 is every patch whose deploy decision was in place when the cycle's first tier
//! deployed (auto-approved on Patch Tuesday, or an engineer's approval before any deployment):
//! the cycle's tiers carry it. An engineer's approval after a tier deployed is a later batch:
//! ring-promotion opens it (an `open_batch` message) with its own tiers, mirroring the cycle's
//! (`{tier}.b{N}`: a client's server pilot and production, the fleet's workstation pilot and
//! production, a client's single server in production at once), holding runs only for the
//! in-scope endpoints its patches apply to, each production tier gated on its own batch pilot,
//! so promotion, soak, ticks, archive and evidence handle it as any tier. Its approval is
//! written into the RMM per tier as that tier deploys, to that tier's endpoints only: a
//! production endpoint's policy approves the patch only once its batch pilot has soaked.
//!
//! Every write is conditional: batch 1 is sealed once (an engineer's approval racing the first
//! deployment lands in batch 1 or after it, never in neither), a later batch is created once
//! (a redelivery or a second approval finds it), and its tiers and runs are creates.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use patchflow_core::ids::{ClientId, CycleId, EndpointId, PatchId};
use patchflow_core::model::Patch;
use patchflow_core::ports::queue::QueueSender;
use patchflow_core::ports::state::{
    ApprovalStore, DocStore, StateStore, TierId, TierRecord, TierStore,
};
use patchflow_core::ports::PortError;
use patchflow_core::rules::applicability::for_endpoint;
use patchflow_core::rules::cadence::{assign_cadence, Memo};
use patchflow_core::rules::waves::{soak_gate, Wave};
use patchflow_core::schedule::{utc, Window};
use patchflow_core::tier::TierState;
use patchflow_core::trace::Trace;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::applicability::catalog_patches;
use crate::approval::{decision_tag, push_key};
use crate::env::Ports;
use crate::error::HandlerError;
use crate::messages::{Message, OpenBatch, PushApproval};
use crate::records::RunModel;
use crate::records::{
    self, run_kind, CycleDoc, Run, RunStatus, ScopeRef, ScopeScan, ScopeShard, TierPlan, CYCLE_ID,
    CYCLE_KIND, SCOPE_SHARD, TIER_KIND,
};

/// The document kind of a cycle's batches (id: the batch's number).
pub const BATCH_KIND: &str = "batch";

/// How often a conditional write is tried again after losing a race.
const RACES: usize = 8;

/// One update batch of a cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Its number: 1 for the cycle's tiers, 2 and on for later approvals.
    pub batch: u32,
    /// Its patches, sorted. Installs carry those of them still approved that apply.
    pub patches: Vec<PatchId>,
    /// When its membership was fixed (batch 1: its first deployment; a later batch: when it
    /// was opened); `None` while batch 1 still takes approvals.
    #[serde(default, with = "utc::option", skip_serializing_if = "Option::is_none")]
    pub sealed_at: Option<DateTime<Utc>>,
    /// A later batch's tiers once they are planned (`None` until then; batch 1's are the
    /// cycle's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<Vec<BatchTier>>,
}

/// A later batch's tier and the endpoints its approval pushes target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchTier {
    /// The tier (`{tier}.b{N}`).
    pub tier: TierId,
    /// Per client, how many shards of the tier's endpoints (`batch_scope.{tier}.{client}`
    /// documents) its approval pushes target.
    pub scopes: Vec<ScopeRef>,
}

/// The batch a tier belongs to: `N` for `{tier}.b{N}`, else 1.
pub fn batch_of(tier: &TierId) -> u32 {
    tier.batch()
}

/// A cycle tier's counterpart in batch `n` (`n` 1: the tier itself).
pub fn batch_tier(base: &TierId, n: u32) -> Result<TierId, HandlerError> {
    if n <= 1 {
        return Ok(base.clone());
    }
    TierId::parse(&format!("{base}.b{n}")).map_err(|e| HandlerError::Poison(e.to_string()))
}

/// The segment a later batch adds to an endpoint's keys (`b{N}/`), empty for batch 1, so an
/// endpoint's runs in two batches never share a message, command or failure key.
pub fn key_segment(tier: &TierId) -> String {
    match batch_of(tier) {
        1 => String::new(),
        n => format!("b{n}/"),
    }
}

/// The idempotency key of an endpoint's deploy message for an attempt.
pub fn deploy_key(cycle: CycleId, tier: &TierId, endpoint: &EndpointId, attempt: u32) -> String {
    format!("{cycle}/deploy/{endpoint}/{}{attempt}", key_segment(tier))
}

/// The document kind of a later batch tier's endpoints for one client, in shards (id: the
/// shard's number), as `scope.{client}` holds the cycle's.
pub fn batch_scope_kind(tier: &TierId, client: &ClientId) -> String {
    format!("batch_scope.{tier}.{client}")
}

/// A cycle's batches, by number.
pub async fn list(state: &impl DocStore, cycle: CycleId) -> Result<Vec<Batch>, HandlerError> {
    let mut out: Vec<Batch> = records::list(state, cycle, BATCH_KIND)
        .await?
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    out.sort_by_key(|b| b.batch);
    Ok(out)
}

/// Whether batch 1 is sealed: a tier of the cycle has deployed.
pub async fn first_sealed(state: &impl DocStore, cycle: CycleId) -> Result<bool, HandlerError> {
    Ok(records::load::<Batch>(state, cycle, BATCH_KIND, "1")
        .await?
        .is_some_and(|(b, _)| b.sealed_at.is_some()))
}

/// The cycle's patches whose decision deploys now, sorted.
async fn deploying(
    state: &impl ApprovalStore,
    cycle: CycleId,
) -> Result<Vec<PatchId>, HandlerError> {
    let mut out: Vec<PatchId> = state
        .list_approvals(cycle)
        .await?
        .into_iter()
        .filter(|a| a.decision.deploys())
        .map(|a| a.patch)
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

fn merge(into: &mut Vec<PatchId>, more: impl IntoIterator<Item = PatchId>) {
    into.extend(more);
    into.sort();
    into.dedup();
}

/// Seals batch 1 at the cycle's first deployment (every patch then deploying, and every one an
/// engineer put into it), once; returns it as stored.
pub async fn seal_first(
    state: &impl StateStore,
    cycle: CycleId,
    now: DateTime<Utc>,
) -> Result<Batch, HandlerError> {
    for _ in 0..RACES {
        let found = records::load::<Batch>(state, cycle, BATCH_KIND, "1").await?;
        if let Some((b, _)) = &found {
            if b.sealed_at.is_some() {
                return Ok(b.clone());
            }
        }
        let mut patches = found
            .as_ref()
            .map(|(b, _)| b.patches.clone())
            .unwrap_or_default();
        merge(&mut patches, deploying(state, cycle).await?);
        let b = Batch {
            batch: 1,
            patches,
            sealed_at: Some(now),
            tiers: None,
        };
        match records::save(state, cycle, BATCH_KIND, "1", &b, found.map(|(_, v)| v)).await {
            Ok(_) => return Ok(b),
            Err(PortError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(HandlerError::Retry(format!(
        "batch 1 of {cycle} kept changing while it was sealed"
    )))
}

/// Puts an engineer's approval into batch 1 while no tier has deployed: `Some(1)` when the
/// patch is (now) in batch 1, `None` when batch 1 was sealed without it (a later batch takes
/// it).
pub async fn join_first(
    state: &impl DocStore,
    cycle: CycleId,
    patch: &PatchId,
) -> Result<Option<u32>, HandlerError> {
    for _ in 0..RACES {
        let found = records::load::<Batch>(state, cycle, BATCH_KIND, "1").await?;
        let (mut b, expected) = match found {
            Some((b, _)) if b.patches.contains(patch) => return Ok(Some(1)),
            Some((b, _)) if b.sealed_at.is_some() => return Ok(None),
            Some((b, v)) => (b, Some(v)),
            None => (
                Batch {
                    batch: 1,
                    patches: Vec::new(),
                    sealed_at: None,
                    tiers: None,
                },
                None,
            ),
        };
        merge(&mut b.patches, [patch.clone()]);
        match records::save(state, cycle, BATCH_KIND, "1", &b, expected).await {
            Ok(_) => return Ok(Some(1)),
            Err(PortError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(HandlerError::Retry(format!(
        "batch 1 of {cycle} kept changing while {patch} joined it"
    )))
}

/// The patches a tier's installs carry: of `approved`, those of the tier's batch (every one
/// for a cycle whose batch 1 was never sealed, i.e. opened before batches were kept).
pub async fn tier_patches(
    state: &impl DocStore,
    cycle: CycleId,
    tier: &TierId,
    mut approved: Vec<PatchId>,
) -> Result<Vec<PatchId>, HandlerError> {
    let n = batch_of(tier);
    match records::load::<Batch>(state, cycle, BATCH_KIND, &n.to_string()).await? {
        Some((b, _)) if b.sealed_at.is_some() => approved.retain(|p| b.patches.contains(p)),
        _ if n == 1 => {}
        _ => {
            return Err(HandlerError::Poison(format!(
                "tier {tier} of {cycle}: batch {n} is not recorded"
            )))
        }
    }
    Ok(approved)
}

/// What a tier's deploy does first: batch 1 is sealed (the first deployment fixes it); a later
/// batch's tier writes its patches' approvals into the RMM for its own endpoints of the
/// `clients` it deploys now. Returns the pushes sent.
pub async fn before_deploy<X: Ports>(
    x: &X,
    cycle: CycleId,
    tier: &TierId,
    clients: &BTreeSet<ClientId>,
    now: DateTime<Utc>,
) -> Result<usize, HandlerError> {
    let env = x.env();
    seal_first(&env.state, cycle, now).await?;
    let n = batch_of(tier);
    if n == 1 {
        return Ok(0);
    }
    let (batch, _): (Batch, u64) =
        records::must_load(&env.state, cycle, BATCH_KIND, &n.to_string()).await?;
    let messages = tier_pushes(x, cycle, &batch, tier, clients, &batch.patches).await?;
    env.queues
        .send_batch(PushApproval::STAGE, &messages)
        .await?;
    Ok(messages.len())
}

/// The pushes writing `patches`' current decisions (those that deploy) into the RMM for a later
/// batch tier's endpoints of `clients`, keyed by the decision (a new decision, a new key).
async fn tier_pushes<X: Ports>(
    x: &X,
    cycle: CycleId,
    batch: &Batch,
    tier: &TierId,
    clients: &BTreeSet<ClientId>,
    patches: &[PatchId],
) -> Result<Vec<patchflow_core::ports::queue::Envelope>, HandlerError> {
    let env = x.env();
    let scopes = batch
        .tiers
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|t| &t.tier == tier)
        .map(|t| t.scopes.clone())
        .unwrap_or_default();
    let mut messages = Vec::new();
    for patch in patches {
        let Some(a) = env.state.get_approval(cycle, patch).await? else {
            continue;
        };
        if !a.decision.deploys() {
            // Declined meanwhile: its decline was written everywhere when it was made.
            continue;
        }
        let tag = decision_tag(&a);
        for scope in scopes.iter().filter(|s| clients.contains(&s.client)) {
            for shard in 0..scope.shards {
                let msg = PushApproval {
                    patch: patch.clone(),
                    client: scope.client.clone(),
                    shard,
                    decision: tag.clone(),
                    tier: Some(tier.clone()),
                };
                let key = format!("{}/push", push_key(cycle, &msg));
                messages.push(msg.envelope(cycle, key, Some(tier)));
            }
        }
    }
    Ok(messages)
}

/// A new deploy decision (an engineer's approval after a decline) of a patch already in an
/// opened later batch: its approval is written into the RMM again for the batch's tiers that
/// have deployed, for the endpoints they deployed (a deploying tier's clients with a run
/// released; every client of a tier further on), under the new decision's keys. The batch's
/// tiers still scheduled write it when they deploy ([`before_deploy`]). Returns the pushes
/// sent, `None` when the patch is in no opened later batch.
pub async fn redecided<X: Ports>(
    x: &X,
    cycle: CycleId,
    all: &[(Batch, u64)],
    patch: &PatchId,
) -> Result<Option<usize>, HandlerError> {
    let env = x.env();
    let Some(batch) = all
        .iter()
        .map(|(b, _)| b)
        .find(|b| b.batch >= 2 && b.tiers.is_some() && b.patches.contains(patch))
    else {
        return Ok(None);
    };
    if !env
        .state
        .get_approval(cycle, patch)
        .await?
        .is_some_and(|a| a.decision.deploys())
    {
        return Ok(Some(0));
    }
    let mut messages = Vec::new();
    for t in batch.tiers.as_deref().unwrap_or_default() {
        let Some(record) = env.state.get_tier(cycle, &t.tier).await? else {
            continue;
        };
        let clients: BTreeSet<ClientId> = match record.state {
            TierState::Scheduled => continue,
            TierState::Deploying => {
                let runs: Vec<(Run, u64)> =
                    records::list(&env.state, cycle, &run_kind(&t.tier)).await?;
                runs.into_iter()
                    .filter(|(r, _)| r.status != RunStatus::Planned)
                    .map(|(r, _)| r.client)
                    .collect()
            }
            _ => t.scopes.iter().map(|s| s.client.clone()).collect(),
        };
        messages.extend(
            tier_pushes(
                x,
                cycle,
                batch,
                &t.tier,
                &clients,
                std::slice::from_ref(patch),
            )
            .await?,
        );
    }
    env.queues
        .send_batch(PushApproval::STAGE, &messages)
        .await?;
    Ok(Some(messages.len()))
}

/// The message that opens the batch of approvals made after the first deployment.
pub fn open_message(
    cycle: CycleId,
    key: String,
    patch: Option<PatchId>,
) -> patchflow_core::ports::queue::Envelope {
    OpenBatch { patch }.envelope(cycle, key, None)
}

/// ring-promotion's `open_batch`: once batch 1 is sealed, every approved patch in no batch yet
/// becomes the next batch, which is opened (its tiers and runs planned); a batch created but
/// not yet opened (a crash half-way) is opened now; a patch named by the message that is
/// already in an opened batch has its new decision written again for that batch's deployed
/// tiers ([`redecided`]). Changes nothing when there is nothing new.
pub async fn open_batches<X: Ports>(
    x: &X,
    cycle: CycleId,
    msg: OpenBatch,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    let env = x.env();
    let state = &env.state;
    match records::load::<Batch>(state, cycle, BATCH_KIND, "1").await? {
        Some((b, _)) if b.sealed_at.is_some() => {}
        _ => return Ok("no tier has deployed: approvals are batch 1".into()),
    }
    let mut all: Vec<(Batch, u64)> = records::list(state, cycle, BATCH_KIND).await?;
    all.sort_by_key(|(b, _)| b.batch);
    let mut words = Vec::new();
    for (b, v) in all
        .iter()
        .filter(|(b, _)| b.batch >= 2 && b.tiers.is_none())
    {
        words.push(open(x, cycle, b.clone(), *v, now).await?);
    }
    if let Some(patch) = &msg.patch {
        if let Some(n) = redecided(x, cycle, &all, patch).await? {
            words.push(format!(
                "{patch} is in a batch already: its decision written again for its deployed \
                 tiers ({n} push(es))"
            ));
        }
    }
    let assigned: BTreeSet<&PatchId> = all.iter().flat_map(|(b, _)| &b.patches).collect();
    let new: Vec<PatchId> = deploying(state, cycle)
        .await?
        .into_iter()
        .filter(|p| !assigned.contains(p))
        .collect();
    if new.is_empty() {
        if words.is_empty() {
            return Ok("no approval waits for a batch".into());
        }
        return Ok(words.join("; "));
    }
    let n = all.last().map_or(1, |(b, _)| b.batch) + 1;
    let b = Batch {
        batch: n,
        patches: new,
        sealed_at: Some(now),
        tiers: None,
    };
    let v = match records::save(state, cycle, BATCH_KIND, &n.to_string(), &b, None).await {
        Ok(v) => v,
        Err(PortError::Conflict(_)) => {
            return Err(HandlerError::Retry(format!(
                "batch {n} of {cycle} was created meanwhile; looking again"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    words.push(open(x, cycle, b, v, now).await?);
    Ok(words.join("; "))
}

fn conflict_ok(r: Result<impl Sized, PortError>) -> Result<(), PortError> {
    match r {
        Ok(_) | Err(PortError::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Plans a later batch: per cycle tier, its batch counterpart with a run for each of the tier's
/// endpoints the batch's patches apply to (pilots and tiers without a pilot from the first
/// window now; production after its batch pilot's windows and the soak), the tiers' push
/// targets, plans and records, the cycle's tier list, then the batch marked opened. One-time
/// work proportional to the cycle's in-scope runs (read once) and the batch's endpoints.
async fn open<X: Ports>(
    x: &X,
    cycle: CycleId,
    mut batch: Batch,
    version: u64,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    let env = x.env();
    let state = &env.state;
    let policy = &env.policy;
    let cycle_doc = records::open_cycle(state, cycle).await?;
    let patches: Vec<Patch> = catalog_patches(&cycle_doc)?
        .into_iter()
        .filter(|p| batch.patches.contains(&p.id))
        .collect();
    let n = batch.batch;
    let base: Vec<TierId> = cycle_doc
        .tiers
        .iter()
        .filter(|t| batch_of(t) == 1)
        .cloned()
        .collect();
    let mut plans: Vec<TierPlan> = Vec::with_capacity(base.len());
    for t in &base {
        let (p, _): (TierPlan, u64) =
            records::must_load(state, cycle, TIER_KIND, t.as_str()).await?;
        plans.push(p);
    }
    // Tiers that wait on no pilot first, so their windows set the gates of those that do.
    plans.sort_by_key(|p| p.pilot.is_some());
    let mut memo = Memo::default();
    let mut pilot_end: BTreeMap<TierId, Option<DateTime<Utc>>> = BTreeMap::new();
    let mut made: Vec<TierPlan> = Vec::new();
    let mut tiers = Vec::new();
    // A tier a client at a time (its members shards, then its runs): what is held at once is
    // one client's runs, and each client's fresh runs, members and scope shards are written
    // before the next client is read. Every write is a create, so an opening that dies
    // half-way and is delivered again finds what it wrote and goes on.
    for plan in &plans {
        let tier = batch_tier(&plan.tier, n)?;
        let (pilot, gate) = match &plan.pilot {
            None => (None, None),
            Some(p) => {
                let end = pilot_end.get(p).copied().flatten();
                let pilot = pilot_end
                    .contains_key(p)
                    .then(|| batch_tier(p, n))
                    .transpose()?;
                (pilot, Some(soak_gate(end, now, policy.rollout.soak).0))
            }
        };
        if plan.clients.is_empty() && plan.endpoints > 0 {
            return Err(HandlerError::Poison(format!(
                "{} of {cycle}: its plan lists {} endpoint(s) but no client (written before \
                 tiers listed their clients and members, which a later batch opens from)",
                plan.tier, plan.endpoints
            )));
        }
        let from = gate.unwrap_or(now);
        let mut latest: Option<DateTime<Utc>> = None;
        let mut endpoints = 0usize;
        let mut clients = Vec::new();
        let mut scopes = Vec::new();
        for client in &plan.clients {
            let runs = records::client_runs(state, cycle, &plan.tier, client).await?;
            let mut out: Vec<(Run, ScopeScan)> = Vec::new();
            for (run, _) in runs {
                let e = run.endpoint_model(&cycle_doc)?;
                if for_endpoint(&e, &patches).patches.is_empty() {
                    continue;
                }
                let mut trace = Trace::new();
                let track = assign_cadence(&e, policy, &mut memo, &mut trace);
                let window: Window = memo.first_window(policy, e.tz, track, from);
                latest = latest.max(Some(window.end));
                let scan = ScopeScan {
                    applicable: e.applicable.clone(),
                    os: e.os.clone(),
                };
                out.push((fresh_run(run, tier.clone(), window), scan));
            }
            if out.is_empty() {
                continue;
            }
            for (run, _) in &out {
                conflict_ok(records::save_run(state, cycle, run, None, policy, None).await)?;
            }
            let ids: Vec<EndpointId> = out.iter().map(|(r, _)| r.endpoint.clone()).collect();
            records::save_members(state, cycle, &tier, client, &ids).await?;
            let mut shards = 0u32;
            for chunk in out.chunks(SCOPE_SHARD) {
                let shard = ScopeShard {
                    client: client.clone(),
                    shard: shards,
                    endpoints: chunk.iter().map(|(r, _)| r.endpoint.clone()).collect(),
                    scans: chunk.iter().map(|(_, s)| s.clone()).collect(),
                };
                conflict_ok(
                    records::save(
                        state,
                        cycle,
                        &batch_scope_kind(&tier, client),
                        &shards.to_string(),
                        &shard,
                        None,
                    )
                    .await,
                )?;
                shards += 1;
            }
            scopes.push(ScopeRef {
                client: client.clone(),
                shards,
            });
            endpoints += out.len();
            clients.push(client.clone());
        }
        if endpoints == 0 {
            continue;
        }
        if plan.wave == Wave::Pilot {
            pilot_end.insert(plan.tier.clone(), latest);
        }
        clients.sort();
        clients.dedup();
        let made_plan = TierPlan {
            tier,
            kind: plan.kind,
            client: plan.client.clone(),
            wave: plan.wave,
            pilot,
            gate,
            endpoints,
            clients,
            released: Vec::new(),
            last_decision: None,
            soak_checks: Vec::new(),
        };
        conflict_ok(
            records::save(
                state,
                cycle,
                TIER_KIND,
                made_plan.tier.as_str(),
                &made_plan,
                None,
            )
            .await,
        )?;
        tiers.push(BatchTier {
            tier: made_plan.tier.clone(),
            scopes,
        });
        made.push(made_plan);
    }
    for plan in &made {
        conflict_ok(
            state
                .create_tier(&TierRecord {
                    cycle,
                    tier: plan.tier.clone(),
                    state: TierState::Scheduled,
                    version: 0,
                    endpoints: Vec::new(),
                    updated_at: now,
                    not_before: plan.gate,
                })
                .await,
        )?;
    }
    add_tiers(state, cycle, made.iter().map(|p| p.tier.clone()).collect()).await?;
    let endpoints: usize = made.iter().map(|p| p.endpoints).sum();
    let names: Vec<String> = made.iter().map(|p| p.tier.to_string()).collect();
    batch.tiers = Some(tiers);
    match records::save(
        state,
        cycle,
        BATCH_KIND,
        &n.to_string(),
        &batch,
        Some(version),
    )
    .await
    {
        Ok(_) | Err(PortError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    info!(%cycle, batch = n, tiers = made.len(), endpoints, "batch opened");
    Ok(format!(
        "batch {n} ({}) opened: {} tier(s), {endpoints} endpoint(s){}",
        batch
            .patches
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        made.len(),
        if names.is_empty() {
            String::new()
        } else {
            format!(": {}", names.join(", "))
        }
    ))
}

/// A cycle run copied into a later batch's tier: the endpoint as the cycle opened with it, a
/// fresh run planned in `window`.
fn fresh_run(run: Run, tier: TierId, window: Window) -> Run {
    Run::planned(run.endpoint, run.client, tier, run.doc, window)
}

/// Adds tiers to the cycle record's list (a conditional write, tried again on a race), so the
/// operator's commands find their runs.
async fn add_tiers(
    state: &impl DocStore,
    cycle: CycleId,
    tiers: Vec<TierId>,
) -> Result<(), HandlerError> {
    for _ in 0..RACES {
        let (mut doc, v): (CycleDoc, u64) =
            records::must_load(state, cycle, CYCLE_KIND, CYCLE_ID).await?;
        let missing: Vec<TierId> = tiers
            .iter()
            .filter(|t| !doc.tiers.contains(t))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        doc.tiers.extend(missing);
        match records::save(state, cycle, CYCLE_KIND, CYCLE_ID, &doc, Some(v)).await {
            Ok(_) => return Ok(()),
            Err(PortError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(HandlerError::Retry(format!(
        "the {cycle} cycle record kept changing while batch tiers were added"
    )))
}

/// A batch as `status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchStatus {
    /// Its number.
    pub batch: u32,
    /// Its patches.
    pub patches: Vec<String>,
    /// `collecting` (batch 1 before any deployment), `planning`, `deploying` (a tier not
    /// closed yet) or `closed`.
    pub state: String,
    /// Its tiers.
    pub tiers: Vec<String>,
}

/// Each batch of a cycle, its patches, tiers and state (from the tiers' records).
pub async fn status(
    state: &impl StateStore,
    cycle: CycleId,
    records: &[TierRecord],
) -> Result<Vec<BatchStatus>, HandlerError> {
    let mut out = Vec::new();
    for b in list(state, cycle).await? {
        let tiers: Vec<&TierRecord> = records
            .iter()
            .filter(|t| batch_of(&t.tier) == b.batch)
            .collect();
        let words = if b.sealed_at.is_none() {
            "collecting"
        } else if b.batch >= 2 && b.tiers.is_none() {
            "planning"
        } else if tiers.iter().all(|t| t.state == TierState::Closed) {
            "closed"
        } else if tiers.iter().all(|t| t.state == TierState::Scheduled) {
            "scheduled"
        } else {
            "deploying"
        };
        out.push(BatchStatus {
            batch: b.batch,
            patches: b.patches.iter().map(|p| p.to_string()).collect(),
            state: words.to_owned(),
            tiers: tiers.iter().map(|t| t.tier.to_string()).collect(),
        });
    }
    Ok(out)
}

/// Sends the message that opens a later batch after an engineer's late approval.
pub async fn request_open(
    queues: &impl QueueSender,
    cycle: CycleId,
    patch: &PatchId,
    tag: &str,
) -> Result<(), PortError> {
    let env = open_message(
        cycle,
        format!("{cycle}/batches/approved/{patch}/{tag}"),
        Some(patch.clone()),
    );
    queues.send_batch(OpenBatch::STAGE, &[env]).await
}

#[cfg(test)]
mod tests;
