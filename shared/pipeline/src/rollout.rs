//! ring-promotion: a scheduled tier deploys when its turn comes. A pilot (or a client's only
//! server) deploys as soon as the month's approvals are in; a production tier waits for its
//! pilot's 7-day soak, counted from the moment the pilot was actually healthy (every pilot run
//! validated, forced reboots included; a retry restarts it), and for its health: a pilot failure
//! holds it (a critical one blocks it). During the soak the pilot is re-checked against the RMM
//! daily ([`check_soak`]), and a pilot that turns unhealthy fails and is escalated like a failed
//! install. With `rollout.hold_scope = "client"`, a pilot workstation's failure holds only its
//! own client's production workstations: the other clients' deploy when their soak passes, and
//! the held client's runs stay planned until its own pilot is healthy again and soaked
//! ([`release_cleared`], from the tier's hourly tick).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use patchflow_core::ids::{ClientId, CycleId};
use patchflow_core::model::EndpointKind;
use patchflow_core::policy::HoldScope;
use patchflow_core::ports::queue::{Envelope, QueueSender};
use patchflow_core::ports::rmm::Rmm;
use patchflow_core::ports::state::{ApprovalStore, DocStore, TierId, TierStore};
use patchflow_core::ports::PortError;
use patchflow_core::rules::failure::{is_critical, FailureStage};
use patchflow_core::rules::waves::{
    pilot_soak_end, promotion_gate, soak_gate_from_health, soak_recheck, PilotHealth, Promotion,
    SoakReading,
};
use patchflow_core::schedule::utc;
use patchflow_core::tier::{TierEvent, TierState};
use patchflow_core::trace::Trace;
use tracing::info;

use crate::env::Ports;
use crate::error::HandlerError;
use crate::messages::{CheckSoak, DeployShard, EndpointFailed, Message, PromoteTier};
use crate::records::RunModel;
use crate::records::{
    self, run_kind, CycleDoc, Run, RunStatus, SoakCheck, SoakFinding, TierPlan, TIER_KIND,
};

/// How many held clients a per-client promotion decision names (the rest are counted).
const NAMED_HELD_CLIENTS: usize = 20;

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The health of some of a pilot tier's runs.
fn health_of<'a>(
    cycle: &CycleDoc,
    runs: impl IntoIterator<Item = &'a Run>,
) -> Result<PilotHealth, HandlerError> {
    let mut h = PilotHealth::default();
    for run in runs {
        match run.status {
            // An up-to-date run is done (validated) from the cycle's opening.
            RunStatus::Validated => h.validated(
                run.validated_at
                    .or(run.up_to_date.then_some(cycle.opened_at)),
            ),
            RunStatus::Failed => h.failed(is_critical(&run.endpoint_model(cycle)?)),
            _ => h.pending(),
        }
    }
    Ok(h)
}

/// The health of a pilot tier's endpoints.
pub async fn pilot_health<X: Ports>(
    x: &X,
    cycle: &CycleDoc,
    pilot: &TierId,
) -> Result<PilotHealth, HandlerError> {
    let runs: Vec<(Run, u64)> =
        records::list(&x.env().state, cycle.cycle, &run_kind(pilot)).await?;
    let h = health_of(cycle, runs.iter().map(|(r, _)| r))?;
    validated_fallback(x, cycle.cycle, pilot, h).await
}

/// A validated pilot none of whose runs carries its validation's instant (no runs, or records
/// from before it was kept) is healthy since the tier's validation (its record's last change).
async fn validated_fallback<X: Ports>(
    x: &X,
    cycle: CycleId,
    pilot: &TierId,
    h: PilotHealth,
) -> Result<PilotHealth, HandlerError> {
    if h.healthy_at.is_some() || !h.all_healthy() {
        return Ok(h);
    }
    Ok(match x.env().state.get_tier(cycle, pilot).await? {
        Some(r) if r.state == TierState::Validated => h.since_or(r.updated_at),
        _ => h,
    })
}

/// Whether a production tier of the cycle waits for this tier as its pilot: two records read
/// by id (the pilot's plan, and the plan of the production tier it would lead), never the
/// cycle's list of tiers (one per client's server wave).
async fn soaks_for_production<X: Ports>(
    x: &X,
    cycle: CycleId,
    pilot: &TierId,
) -> Result<bool, HandlerError> {
    let state = &x.env().state;
    let Some((plan, _)) =
        records::load::<TierPlan>(state, cycle, TIER_KIND, pilot.as_str()).await?
    else {
        return Ok(false);
    };
    let Some(production) = records::production_of(&plan)? else {
        return Ok(false);
    };
    Ok(
        records::load::<TierPlan>(state, cycle, TIER_KIND, production.as_str())
            .await?
            .is_some_and(|(p, _)| p.pilot.as_ref() == Some(pilot)),
    )
}

/// Where a validated tier is in its soak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PilotSoak {
    /// No soak to wait for: not a pilot any production tier waits for, or its soak has passed.
    Done,
    /// Soaking until then: re-checked daily, not archived.
    Soaking {
        /// When the soak ends.
        until: DateTime<Utc>,
    },
    /// A run failed during the soak and its escalation has not held the tier yet: not archived.
    Unhealthy,
}

/// Where a validated tier is in its soak at `now`.
pub async fn pilot_soak<X: Ports>(
    x: &X,
    cycle: &CycleDoc,
    tier: &TierId,
    now: DateTime<Utc>,
) -> Result<PilotSoak, HandlerError> {
    if !soaks_for_production(x, cycle.cycle, tier).await? {
        return Ok(PilotSoak::Done);
    }
    let health = pilot_health(x, cycle, tier).await?;
    Ok(match pilot_soak_end(&health, x.env().policy.rollout.soak) {
        None => PilotSoak::Unhealthy,
        Some(until) if now < until => PilotSoak::Soaking { until },
        Some(_) => PilotSoak::Done,
    })
}

/// The pilot's soak check of today, when it found the pilot healthy and soaking past `now` and
/// the pilot is still validated: what the tick and the hourly promotion decision read instead
/// of the pilot's runs (the check read them today; a pilot's runs change while it is validated
/// only by a check that fails one, and a failed check is not healthy).
async fn soaking_today<X: Ports>(
    x: &X,
    cycle: CycleId,
    pilot: &TierId,
    now: DateTime<Utc>,
) -> Result<Option<SoakCheck>, HandlerError> {
    let state = &x.env().state;
    let today = now.date_naive();
    let Some((plan, _)) =
        records::load::<TierPlan>(state, cycle, TIER_KIND, pilot.as_str()).await?
    else {
        return Ok(None);
    };
    let Some(check) = plan
        .soak_checks
        .into_iter()
        .rev()
        .find(|c| c.day == today && c.healthy && now < c.soak_until)
    else {
        return Ok(None);
    };
    Ok(match state.get_tier(cycle, pilot).await? {
        Some(r) if r.state == TierState::Validated => Some(check),
        _ => None,
    })
}

/// What the hourly tick does for a validated tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoakTick {
    /// A pilot checked today, healthy and soaking past now: nothing until tomorrow's check
    /// (today's `soak_check` message is the one that made it).
    CheckedToday,
    /// A pilot soaking (or unhealthy) without today's check: the day's `soak_check`.
    Check,
    /// No soak to wait for: the tier is archived.
    Archive,
}

/// What the hourly tick does for a validated tier: from the pilot's plan alone when it holds a
/// healthy soak check of today that soaks past `now`; otherwise from [`pilot_soak`], which
/// reads the pilot's runs. So a soaking pilot's runs are read by the tick in the first hour of
/// each day and at the soak's end, not every hour, and its day's check is sent until it is made,
/// not every hour of the day.
pub async fn tick_soak<X: Ports>(
    x: &X,
    cycle: &CycleDoc,
    tier: &TierId,
    now: DateTime<Utc>,
) -> Result<SoakTick, HandlerError> {
    if soaking_today(x, cycle.cycle, tier, now).await?.is_some() {
        return Ok(SoakTick::CheckedToday);
    }
    Ok(match pilot_soak(x, cycle, tier, now).await? {
        PilotSoak::Done => SoakTick::Archive,
        PilotSoak::Soaking { .. } | PilotSoak::Unhealthy => SoakTick::Check,
    })
}

/// One promotion decision (for the whole tier, or for one client's part of it).
#[derive(Debug, Clone, Copy)]
struct Gate {
    decision: Promotion,
    health: PilotHealth,
}

fn gate(
    kind: EndpointKind,
    now: DateTime<Utc>,
    planned: DateTime<Utc>,
    soak: Duration,
    health: PilotHealth,
) -> Gate {
    let until = soak_gate_from_health(planned, &health, soak);
    let decision = promotion_gate(kind, now, until, health, &mut Trace::new());
    Gate { decision, health }
}

fn words(pilot: &TierId, g: &Gate, soak: Duration) -> String {
    let h = &g.health;
    let since = h.healthy_since();
    let healthy = |until: DateTime<Utc>| {
        match since {
        Some(s) => format!(
            "pilot {pilot} healthy since {}, soaking until {}",
            stamp(s),
            stamp(until)
        ),
        None => format!(
            "pilot {pilot} {} of {} validated, soaking {} days from its last validation (not before {})",
            h.healthy,
            h.endpoints,
            soak.num_days(),
            stamp(until)
        ),
    }
    };
    match g.decision {
        Promotion::Promote => match since {
            Some(s) => format!(
                "promoted: pilot {pilot} healthy since {}, soaked until {}",
                stamp(s),
                stamp(s + soak)
            ),
            None => format!("promoted: pilot {pilot} healthy"),
        },
        Promotion::WaitForSoak { until } => {
            format!("waiting for the pilot's soak: {}", healthy(until))
        }
        Promotion::Hold => format!(
            "held: pilot {pilot} has {} failed and {} of {} healthy",
            h.failed, h.healthy, h.endpoints
        ),
        Promotion::Blocked => format!(
            "blocked: pilot {pilot} has {} critical failure(s)",
            h.critical_failures
        ),
    }
}

/// A production tier's promotion decisions: the fleet's (the whole pilot), and with the client
/// hold scope (workstations), one per client of the tier.
struct Decisions {
    fleet: Gate,
    per_client: Option<BTreeMap<ClientId, Gate>>,
    words: String,
}

impl Decisions {
    /// Whether any client may deploy now.
    fn any_cleared(&self) -> bool {
        match &self.per_client {
            None => self.fleet.decision == Promotion::Promote,
            Some(m) => m.values().any(|g| g.decision == Promotion::Promote),
        }
    }

    fn cleared(&self, client: &ClientId) -> bool {
        let g = self
            .per_client
            .as_ref()
            .and_then(|m| m.get(client))
            .unwrap_or(&self.fleet);
        g.decision == Promotion::Promote
    }
}

/// The decisions for a production tier with a pilot and its planned gate, for `clients` (the
/// client hold scope decides per client; the tier's own runs are not read: a fleet-wide
/// production tier is listed only when some of it deploys).
async fn decide<X: Ports>(
    x: &X,
    cycle: &CycleDoc,
    plan: &TierPlan,
    pilot: &TierId,
    planned: DateTime<Utc>,
    clients: &[ClientId],
    now: DateTime<Utc>,
) -> Result<Decisions, HandlerError> {
    let env = x.env();
    let soak = env.policy.rollout.soak;
    let by_client = plan.kind == EndpointKind::Workstation
        && plan.client.is_none()
        && env.policy.rollout.hold_scope == HoldScope::Client;
    if !by_client {
        // A pilot soaking on today's healthy check: every run validated, healthy since the
        // check's instant, so the gate is not reached before the check's end; the hourly
        // decision reads that check, not the pilot's runs.
        if let Some(check) = soaking_today(x, cycle.cycle, pilot, now).await? {
            let health = PilotHealth {
                endpoints: check.endpoints,
                healthy: check.endpoints,
                healthy_at: Some(check.healthy_since),
                ..PilotHealth::default()
            };
            let fleet = gate(plan.kind, now, planned, soak, health);
            let words = words(pilot, &fleet, soak);
            return Ok(Decisions {
                fleet,
                per_client: None,
                words,
            });
        }
    }
    let pilot_runs: Vec<(Run, u64)> =
        records::list(&env.state, cycle.cycle, &run_kind(pilot)).await?;
    let fleet_health = health_of(cycle, pilot_runs.iter().map(|(r, _)| r))?;
    let fleet_health = validated_fallback(x, cycle.cycle, pilot, fleet_health).await?;
    let fleet = gate(plan.kind, now, planned, soak, fleet_health);
    if !by_client {
        let words = words(pilot, &fleet, soak);
        return Ok(Decisions {
            fleet,
            per_client: None,
            words,
        });
    }
    // The pilot's runs by client, once (not a pass over them per client).
    let mut by_owner: BTreeMap<&ClientId, Vec<&Run>> = BTreeMap::new();
    for (r, _) in &pilot_runs {
        by_owner.entry(&r.client).or_default().push(r);
    }
    let mut per_client = BTreeMap::new();
    let mut parts = Vec::new();
    let mut cleared = 0usize;
    let mut waiting = 0usize;
    let mut held = 0usize;
    for client in clients {
        if per_client.contains_key(client) {
            continue;
        }
        let mine: Vec<&Run> = by_owner.remove(client).unwrap_or_default();
        let (g, follows) = if mine.is_empty() {
            // No pilot workstation of its own: it follows the fleet's pilot.
            (fleet, " (no pilot of its own: the fleet's)")
        } else {
            (
                gate(plan.kind, now, planned, soak, health_of(cycle, mine)?),
                "",
            )
        };
        match g.decision {
            Promotion::Promote => cleared += 1,
            Promotion::WaitForSoak { .. } => waiting += 1,
            Promotion::Hold | Promotion::Blocked => {
                held += 1;
                // At most a fixed number of held clients named: the decision is one item,
                // saved hourly, whatever the number of clients.
                if parts.len() < NAMED_HELD_CLIENTS {
                    parts.push(format!(
                        "client {client}{follows}: {}",
                        words(pilot, &g, soak)
                    ));
                }
            }
        }
        per_client.insert(client.clone(), g);
    }
    let mut text = format!(
        "{} client(s): {cleared} promoted, {waiting} waiting for the soak, {held} held",
        per_client.len()
    );
    if !parts.is_empty() {
        text.push_str(&format!("; {}", parts.join("; ")));
    }
    if held > parts.len() {
        text.push_str(&format!(" and {} more", held - parts.len()));
    }
    Ok(Decisions {
        fleet,
        per_client: Some(per_client),
        words: text,
    })
}

/// Records a tier's last promotion decision when it changed (a lost race changes nothing: the
/// next decision writes it).
async fn record_decision<X: Ports>(
    x: &X,
    cycle: CycleId,
    plan: &mut TierPlan,
    version: u64,
    words: Option<&str>,
    released: &[ClientId],
) -> Result<(), HandlerError> {
    let new: Vec<&ClientId> = released
        .iter()
        .filter(|c| !plan.released.contains(c))
        .collect();
    if words.is_none_or(|w| plan.last_decision.as_deref() == Some(w)) && new.is_empty() {
        return Ok(());
    }
    plan.released.extend(new.into_iter().cloned());
    plan.released.sort();
    if let Some(w) = words {
        plan.last_decision = Some(w.to_owned());
    }
    match records::save(
        &x.env().state,
        cycle,
        TIER_KIND,
        plan.tier.as_str(),
        plan,
        Some(version),
    )
    .await
    {
        Ok(_) | Err(PortError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// One [`DeployShard`] per client (its shards found by reboot-scheduler), keyed once per tier
/// and client.
fn deploy_messages(cycle: CycleId, tier: &TierId, clients: &BTreeSet<ClientId>) -> Vec<Envelope> {
    clients
        .iter()
        .map(|client| {
            let msg = DeployShard {
                tier: tier.clone(),
                client: client.clone(),
                shard: None,
            };
            msg.envelope(cycle, msg.key(cycle), Some(tier))
        })
        .collect()
}

/// Decides whether a scheduled tier deploys now, and deploys it (with the client hold scope,
/// the part of it whose clients' pilots are healthy and soaked).
pub async fn promote_tier<X: Ports>(
    x: &X,
    cycle: CycleId,
    msg: PromoteTier,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    let env = x.env();
    let record = records::tier_record(&env.state, cycle, &msg.tier).await?;
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

    // A later batch's production tier none of whose pilot endpoints needed the batch's patches
    // has no pilot to follow, only its gate (its pilot's planned windows and the soak): nothing
    // of it deploys, and its approval is not written into the RMM, before then.
    if let (None, Some(gate)) = (&plan.pilot, plan.gate) {
        if now < gate {
            let words = format!(
                "waiting for the soak: no pilot endpoint needed this batch's patches; not before {}",
                stamp(gate)
            );
            record_decision(x, cycle, &mut plan, plan_version, Some(&words), &[]).await?;
            return Ok(words);
        }
    }
    let mut decisions = None;
    if let (Some(pilot), Some(planned)) = (plan.pilot.clone(), plan.gate) {
        let clients = cycle_doc
            .clients
            .iter()
            .map(|c| ClientId::parse(&c.id).map_err(|e| HandlerError::Poison(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let d = decide(x, &cycle_doc, &plan, &pilot, planned, &clients, now).await?;
        if !d.any_cleared() {
            record_decision(x, cycle, &mut plan, plan_version, Some(&d.words), &[]).await?;
            return Ok(d.words);
        }
        decisions = Some(d);
    }
    // The clients that deploy now: one message each (reboot-scheduler reads each client's
    // members shards and plans its runs), none of the tier's runs read here.
    if plan.clients.is_empty() && plan.endpoints > 0 {
        return Err(HandlerError::Poison(format!(
            "{} of {cycle}: its plan lists {} endpoint(s) but no client (written before tiers \
             listed their clients and members, which this version deploys from)",
            msg.tier, plan.endpoints
        )));
    }
    let cleared: BTreeSet<ClientId> = plan
        .clients
        .iter()
        .filter(|c| decisions.as_ref().is_none_or(|d| d.cleared(c)))
        .cloned()
        .collect();
    if cleared.is_empty() {
        let words = decisions.map(|d| d.words).unwrap_or_else(|| {
            format!("{} lists no client's endpoints: nothing deploys", msg.tier)
        });
        record_decision(x, cycle, &mut plan, plan_version, Some(&words), &[]).await?;
        return Ok(words);
    }
    let decision_words = decisions.map(|d| d.words);

    // The first deployment fixes batch 1; a later batch's tier writes its approvals into the
    // RMM for the endpoints it deploys now (crate::batches).
    crate::batches::before_deploy(x, cycle, &msg.tier, &cleared, now).await?;
    // Deploy: the clients' messages first, then the tier's state. If the transition loses a
    // race or the process dies between the two, the messages are idempotent by key.
    let messages = deploy_messages(cycle, &msg.tier, &cleared);
    env.queues.send_batch(DeployShard::STAGE, &messages).await?;
    // The compliance notes are kept before the transition: a redelivery that finds the tier
    // still scheduled keeps them again under the same keys; one after it finds them kept.
    crate::compliance::deploying(x, cycle, &msg.tier, now).await?;
    match env
        .state
        .transition_tier(cycle, &msg.tier, record.version, TierEvent::Deploy, now)
        .await
    {
        Ok(_) => {}
        Err(PortError::Conflict(_)) => return Ok(format!("{} moved on meanwhile", msg.tier)),
        Err(e) => return Err(e.into()),
    }
    // The plan was not written since it was read (only promotions write it, and the tier was
    // scheduled until now): the released clients, and the decision's words.
    let released: Vec<ClientId> = cleared.iter().cloned().collect();
    record_decision(
        x,
        cycle,
        &mut plan,
        plan_version,
        decision_words.as_deref(),
        &released,
    )
    .await?;
    // The compliance tickets opened with their first notes, at most a fixed number now (the
    // tier's ticks send the rest).
    crate::compliance::flush(x, cycle, &msg.tier).await?;
    info!(%cycle, tier = %msg.tier, clients = messages.len(), "tier deploying");
    let held = plan.clients.len() - cleared.len();
    Ok(format!(
        "{} deploying the endpoints of {} client(s){}{}",
        msg.tier,
        cleared.len(),
        if held > 0 {
            format!(", {held} client(s) held")
        } else {
            String::new()
        },
        decision_words.map(|w| format!(": {w}")).unwrap_or_default()
    ))
}

/// For a deploying production tier whose runs are not all released (the client hold scope):
/// the planned runs whose client's pilot is now healthy and soaked are deployed. Called by the
/// tier's hourly tick; returns how many were released. Only a tier with planned runs (one index
/// read tells) is read whole, once an hour until its last client is released.
pub async fn release_cleared<X: Ports>(
    x: &X,
    cycle_doc: &mut records::LazyCycle,
    tier: &TierId,
    now: DateTime<Utc>,
) -> Result<usize, HandlerError> {
    let env = x.env();
    let cycle_id = cycle_doc.cycle();
    let kind = run_kind(tier);
    if !env
        .state
        .any_doc_in_phase(cycle_id, &kind, &[records::PHASE_PLANNED])
        .await?
    {
        return Ok(0);
    }
    let (mut plan, version): (TierPlan, u64) =
        records::must_load(&env.state, cycle_id, TIER_KIND, tier.as_str()).await?;
    let (Some(pilot), Some(planned)) = (plan.pilot.clone(), plan.gate) else {
        return Ok(0);
    };
    // The clients not yet released, as the plan records them (none of the tier's runs read).
    let held: Vec<ClientId> = plan
        .clients
        .iter()
        .filter(|c| !plan.released.contains(c))
        .cloned()
        .collect();
    if held.is_empty() {
        return Ok(0);
    }
    let cycle = cycle_doc.get(&env.state).await?;
    // Decided for every client, so that the words tell the whole tier.
    let d = decide(x, cycle, &plan, &pilot, planned, &plan.clients, now).await?;
    let cleared: BTreeSet<ClientId> = held.into_iter().filter(|c| d.cleared(c)).collect();
    if !cleared.is_empty() {
        crate::batches::before_deploy(x, cycle.cycle, tier, &cleared, now).await?;
        let messages = deploy_messages(cycle.cycle, tier, &cleared);
        env.queues.send_batch(DeployShard::STAGE, &messages).await?;
    }
    let released: Vec<ClientId> = cleared.iter().cloned().collect();
    record_decision(
        x,
        cycle.cycle,
        &mut plan,
        version,
        Some(&d.words),
        &released,
    )
    .await?;
    Ok(released.len())
}

/// The daily soak re-check of a validated pilot tier: each endpoint's agent and post-reboot
/// monitors read from the RMM. An endpoint found unhealthy fails (stage `soak`) and is escalated
/// like a failed install (ticket, page rules, the tier held), so production holds; its retry,
/// after the root cause, restarts the soak from the retry's validation. The check is recorded
/// on the pilot's plan.
pub async fn check_soak<X: Ports>(
    x: &X,
    cycle: CycleId,
    msg: CheckSoak,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    let env = x.env();
    let record = records::tier_record(&env.state, cycle, &msg.tier).await?;
    if record.state != TierState::Validated {
        return Ok(format!(
            "{} is {}: no soak to check",
            msg.tier, record.state
        ));
    }
    // A validated tier has no tick: its kept compliance notes go out from here meanwhile.
    crate::compliance::flush(x, cycle, &msg.tier).await?;
    let cycle_doc = records::open_cycle(&env.state, cycle).await?;
    let kind = run_kind(&msg.tier);
    let runs: Vec<(Run, u64)> = records::list(&env.state, cycle, &kind).await?;
    let health = health_of(&cycle_doc, runs.iter().map(|(r, _)| r))?;
    let health = validated_fallback(x, cycle, &msg.tier, health).await?;
    let soak = env.policy.rollout.soak;
    let (Some(since), Some(until)) = (health.healthy_since(), pilot_soak_end(&health, soak)) else {
        return Ok(format!("{} is not healthy: no soak to check", msg.tier));
    };
    if now >= until {
        return Ok(format!(
            "{} soaked: healthy since {}, soak passed at {}",
            msg.tier,
            stamp(since),
            stamp(until)
        ));
    }
    let (mut plan, plan_version): (TierPlan, u64) =
        records::must_load(&env.state, cycle, TIER_KIND, msg.tier.as_str()).await?;
    if let Some(done) = plan
        .soak_checks
        .iter()
        .find(|c| c.day == msg.day && c.healthy_since == since)
    {
        // A redelivery after the record was saved and before its failed runs were: they fail
        // now (their escalations went out before the record).
        for f in &done.unhealthy {
            let Some((run, version)) = runs
                .iter()
                .find(|(r, _)| r.endpoint == f.endpoint && r.status == RunStatus::Validated)
            else {
                continue;
            };
            let mut failed = run.clone();
            let id = failed.failure_id(FailureStage::Soak);
            if failed.failures.last() != Some(&id) {
                failed.failures.push(id);
            }
            failed.status = RunStatus::Failed;
            match records::save_run(
                &env.state,
                cycle,
                &failed,
                None,
                &env.policy,
                Some(*version),
            )
            .await
            {
                Ok(_) => {}
                Err(PortError::Conflict(_)) => {
                    return Err(HandlerError::Retry(format!(
                        "{}: run {} moved during its soak check",
                        msg.tier, failed.endpoint
                    )))
                }
                Err(e) => return Err(e.into()),
            }
        }
        return Ok(format!("{} already re-checked on {}", msg.tier, msg.day));
    }

    let mut findings = Vec::new();
    let mut failures = Vec::new();
    let mut failed_runs = Vec::new();
    let mut not_read = Vec::new();
    let mut read = 0;
    for (run, version) in &runs {
        // An up-to-date endpoint had nothing installed: nothing of the patch to soak.
        if run.up_to_date || run.status != RunStatus::Validated {
            continue;
        }
        read += 1;
        // One endpoint the RMM cannot answer for (not found, refused) is a finding of the check,
        // not its end; a transient error hands the message back.
        let report = match env.rmm.health(&run.endpoint).await {
            Ok(r) => r,
            Err(e @ PortError::Transient { .. }) => return Err(e.into()),
            Err(e) => {
                not_read.push(SoakFinding {
                    endpoint: run.endpoint.clone(),
                    detail: format!("not read: {e}"),
                });
                continue;
            }
        };
        let e = run.endpoint_model(&cycle_doc)?;
        let mut trace = Trace::new();
        let wrong = match soak_recheck(
            &e,
            report.online,
            report.maintenance,
            &report.checks,
            &mut trace,
        ) {
            SoakReading::Healthy => continue,
            SoakReading::NotChecked(words) => {
                not_read.push(SoakFinding {
                    endpoint: run.endpoint.clone(),
                    detail: words,
                });
                continue;
            }
            SoakReading::Unhealthy(words) => words,
        };
        let mut failed = run.clone();
        let id = failed.failure_id(FailureStage::Soak);
        if failed.failures.last() != Some(&id) {
            failed.failures.push(id.clone());
        }
        failed.status = RunStatus::Failed;
        let detail = format!(
            "unhealthy during the pilot's soak (validated {}, healthy since {}, soaking until {}): {wrong}",
            run.validated_at.map(|t| utc::format(&t)).unwrap_or_else(|| "-".into()),
            utc::format(&since),
            utc::format(&until)
        );
        failures.push(EndpointFailed {
            id: id.clone(),
            tier: msg.tier.clone(),
            endpoint: run.endpoint.clone(),
            client: run.client.clone(),
            stage: FailureStage::Soak,
            at: report.at,
            detail,
            patches: Vec::new(),
        });
        findings.push(SoakFinding {
            endpoint: run.endpoint.clone(),
            detail: wrong,
        });
        failed_runs.push((failed, *version));
    }
    // The escalations go out before the runs that record them are saved: a crash in between
    // repeats them (deduplicated by the failure's id), never loses them.
    let messages: Vec<_> = failures
        .iter()
        .map(|f| f.envelope(cycle, format!("{cycle}/failure/{}", f.id), Some(&f.tier)))
        .collect();
    if !messages.is_empty() {
        env.queues
            .send_batch(EndpointFailed::STAGE, &messages)
            .await?;
    }
    let healthy = findings.is_empty();
    let checked = read - not_read.len();
    let outcome = if healthy {
        format!(
            "{}: soak re-check of {read} endpoint(s): {checked} healthy, {} not checked (healthy since {}, soaking until {})",
            msg.tier,
            not_read.len(),
            stamp(since),
            stamp(until)
        )
    } else {
        let names: Vec<&str> = findings.iter().map(|f| f.endpoint.as_str()).collect();
        format!(
            "{}: soak re-check found {} unhealthy ({}): failed and escalated",
            msg.tier,
            findings.len(),
            names.join(", ")
        )
    };
    // What status shows for the soaking pilot.
    plan.last_decision = Some(if healthy {
        format!(
            "soaking: healthy since {}, until {}; re-checked {}: {checked} healthy, {} not checked{}",
            stamp(since),
            stamp(until),
            msg.day,
            not_read.len(),
            if not_read.is_empty() {
                String::new()
            } else {
                let names: Vec<&str> = not_read.iter().map(|f| f.endpoint.as_str()).collect();
                format!(" ({})", names.join(", "))
            }
        )
    } else {
        let names: Vec<&str> = findings.iter().map(|f| f.endpoint.as_str()).collect();
        format!(
            "soak broken on {}: {} unhealthy, escalated; the soak restarts from the retry's validation",
            msg.day,
            names.join(", ")
        )
    });
    plan.soak_checks.push(SoakCheck {
        day: msg.day,
        at: now,
        healthy_since: since,
        soak_until: until,
        endpoints: read,
        healthy,
        unhealthy: findings,
        not_checked: not_read,
    });
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
        Ok(_) => {}
        Err(PortError::Conflict(_)) => {
            return Err(HandlerError::Retry(format!(
                "{}: plan moved during its soak check",
                msg.tier
            )))
        }
        Err(e) => return Err(e.into()),
    }
    // The failed runs are saved after the check's record: a redelivery after a lost race here
    // finds the record (and the escalations, deduplicated) and fails the runs again, never a
    // failed pilot with no record of why.
    for (run, version) in &failed_runs {
        match records::save_run(&env.state, cycle, run, None, &env.policy, Some(*version)).await {
            Ok(_) => {}
            Err(PortError::Conflict(_)) => {
                return Err(HandlerError::Retry(format!(
                    "{}: run {} moved during its soak check",
                    msg.tier, run.endpoint
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !healthy {
        info!(%cycle, tier = %msg.tier, "pilot unhealthy during its soak");
    }
    Ok(outcome)
}
