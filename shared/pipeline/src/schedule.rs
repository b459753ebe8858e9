//! reboot-scheduler: an endpoint's install and reboot commands to the RMM, in its own windows and
//! time zone: planned when its tier deploys, sent when the install window opens (the RMM's patch
//! deployment runs at once) with the endpoint's approved patches, after reading the agent's
//! state (an agent in maintenance mode is sent nothing; a daytime workstation offline or asleep
//! fails the posture check); then, hour by hour, the RMM's reports (install per KB, reboot,
//! post-reboot checks), the daily reboot reminders until the reboot is confirmed, the forced
//! reboot after the grace period, and the tier moving on as its endpoints report.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use patchflow_core::ids::{ClientId, CycleId, PatchId};
use patchflow_core::model::{Endpoint, Patch};
use patchflow_core::plan::{EndpointPlan, Install};
use patchflow_core::policy::Policy;
use patchflow_core::ports::queue::QueueSender;
use patchflow_core::ports::rmm::Rmm;
use patchflow_core::ports::state::{
    ApprovalStore, DocStore, DueCursor, FailureStore, TierId, TierStore,
};
use patchflow_core::ports::PortError;
use patchflow_core::rules::applicability::Matcher;
use patchflow_core::rules::cadence::{
    assign_cadence, install_mode, manual_approval_required, plan_reboot, Memo,
};
use patchflow_core::rules::commands::{rmm_commands, RmmCommand};
use patchflow_core::rules::failure::may_retry;
use patchflow_core::rules::scope::Scope;
use patchflow_core::rules::waves::Wave;
use patchflow_core::run::{self, sent_at_window, Effect, Observed};
use patchflow_core::schedule::Window;
use patchflow_core::tier::{TierEvent, TierState};
use patchflow_core::trace::Trace;

use crate::applicability::catalog_patches;
use crate::env::Ports;
use crate::error::HandlerError;
use crate::messages::{
    ClientChanges, DeployEndpoint, DeployShard, DuePosition, EndpointFailed, Message, TierTick,
};
use crate::records::RunModel;
use crate::records::{self, run_kind, CycleDoc, Run, RunStatus};

pub use patchflow_core::run::{REPORT_GRACE, TECHNICIAN_GRACE};

/// The commands that carry out an endpoint's install from `install` (moved to the first window
/// starting at or after `not_before` if it starts earlier), as the core's rule makes them.
pub fn endpoint_commands(
    e: &Endpoint,
    install: Window,
    not_before: DateTime<Utc>,
    approved: bool,
    policy: &Policy,
) -> Vec<RmmCommand> {
    let mut memo = Memo::default();
    let mut trace = Trace::new();
    let track = assign_cadence(e, policy, &mut memo, &mut trace);
    let window = if install.start >= not_before {
        install
    } else {
        track
            .daily(policy)
            .first_starting_at_or_after(e.tz, not_before)
    };
    let reboot = plan_reboot(e, window, policy, &mut memo, &mut trace);
    let plan = EndpointPlan {
        id: e.id.clone(),
        client: e.client.clone(),
        hostname: e.hostname.clone(),
        kind: e.kind(),
        tz: e.tz,
        ring: e.ring,
        criticality: e.server().map(|s| s.criticality),
        scope: Scope::InScope,
        track,
        wave: Some(Wave::Production),
        install: Some(Install {
            mode: install_mode(e),
            window,
        }),
        reboot: Some(reboot),
        manual_approval_required: manual_approval_required(e) && !approved,
        patches: Vec::new(),
        applicability: patchflow_core::rules::applicability::Applicability::Assumed,
        up_to_date: false,
        trace: Trace::new(),
    };
    rmm_commands(&plan, &[], policy, &mut trace)
}

/// The patches an endpoint's install carries: the cycle's approved patches that apply to it
/// (by its patch scan as synced, else its OS against their products, else all of them).
fn endpoint_patches(e: &Endpoint, approved: &[Patch]) -> Vec<PatchId> {
    let all: Vec<usize> = (0..approved.len()).collect();
    Matcher::new(approved).for_endpoint(e, &all).patches
}

/// The cycle's patches approved for deployment (auto-approved, or approved by an engineer),
/// sorted.
async fn approved_patches<X: Ports>(x: &X, cycle: CycleId) -> Result<Vec<PatchId>, HandlerError> {
    let mut out: Vec<PatchId> = x
        .env()
        .state
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

fn key(cycle: CycleId, run: &Run, what: &str) -> String {
    format!(
        "{cycle}/rmm/{}/{}{}/{what}",
        run.endpoint,
        crate::batches::key_segment(&run.tier),
        run.attempt
    )
}

/// Sends an endpoint's install and reboot commands for an attempt.
pub async fn deploy_endpoint<X: Ports>(
    x: &X,
    cycle: CycleId,
    msg: DeployEndpoint,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    let env = x.env();
    let kind = run_kind(&msg.tier);
    let (run, version): (Run, u64) =
        records::must_load(&env.state, cycle, &kind, msg.endpoint.as_str()).await?;
    if let Some(done) = nothing_to_deploy(&run, msg.attempt) {
        return Ok(done);
    }
    let cycle_doc = records::open_cycle(&env.state, cycle).await?;
    deploy_run(x, &cycle_doc, run, version, msg.attempt, now).await
}

/// Why a run needs nothing for an attempt, if it needs nothing: up to date, or the attempt's
/// commands planned already.
fn nothing_to_deploy(run: &Run, attempt: u32) -> Option<String> {
    if run.up_to_date {
        return Some(format!(
            "{} is up to date (its patch scan shows nothing approved missing): nothing sent",
            run.endpoint
        ));
    }
    if attempt < run.attempt || (attempt == run.attempt && run.commands_at.is_some()) {
        return Some(format!("{} attempt {attempt} already sent", run.endpoint));
    }
    None
}

/// Deploys one shard of a client's endpoints in a tier (see [`DeployShard`]): without a shard
/// number, the client's members shards are read and a client of one shard is deployed here, a
/// larger one by one message per shard; with one, that shard's runs are read in bulk and each
/// planned (its first attempt). A run saved before a crash is found planned by the redelivery,
/// which goes on with the rest; a run that moved meanwhile hands the message back.
pub async fn deploy_shard<X: Ports>(
    x: &X,
    cycle: CycleId,
    msg: DeployShard,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    let env = x.env();
    let kind = records::members_kind(&msg.tier, &msg.client);
    let endpoints = match msg.shard {
        Some(n) => {
            let (shard, _): (records::Members, u64) =
                records::must_load(&env.state, cycle, &kind, &n.to_string()).await?;
            shard.endpoints
        }
        None => {
            let mut shards: Vec<(records::Members, u64)> =
                records::list(&env.state, cycle, &kind).await?;
            if shards.is_empty() {
                return Err(HandlerError::Poison(format!(
                    "{} has no endpoints of {} listed (no members shard)",
                    msg.tier, msg.client
                )));
            }
            if shards.len() > 1 {
                let messages: Vec<_> = (0..shards.len())
                    .map(|n| {
                        let part = DeployShard {
                            shard: Some(n as u32),
                            ..msg.clone()
                        };
                        let key = part.key(cycle);
                        part.envelope(cycle, key, Some(&msg.tier))
                    })
                    .collect();
                env.queues.send_batch(DeployShard::STAGE, &messages).await?;
                return Ok(format!(
                    "{} of {}: {} shards sent",
                    msg.tier,
                    msg.client,
                    messages.len()
                ));
            }
            shards.remove(0).0.endpoints
        }
    };
    let runs = records::get_runs(&env.state, cycle, &msg.tier, &endpoints).await?;
    if runs.len() != endpoints.len() {
        return Err(HandlerError::Retry(format!(
            "{} of {}: {} of the shard's {} runs found",
            msg.tier,
            msg.client,
            runs.len(),
            endpoints.len()
        )));
    }
    let cycle_doc = records::open_cycle(&env.state, cycle).await?;
    let (mut planned, mut skipped) = (0, 0);
    let mut alone = Vec::new();
    for (run, version) in runs {
        if nothing_to_deploy(&run, 0).is_some() {
            skipped += 1;
            continue;
        }
        let endpoint = run.endpoint.clone();
        match deploy_run(x, &cycle_doc, run, version, 0, now).await {
            Ok(_) => planned += 1,
            // A run that cannot be planned must not hold its shard's other runs: it goes on in
            // its own message, which ends in the dead-letter queue with the reason.
            Err(HandlerError::Poison(_)) => alone.push(
                DeployEndpoint {
                    tier: msg.tier.clone(),
                    endpoint: endpoint.clone(),
                    attempt: 0,
                }
                .envelope(
                    cycle,
                    crate::batches::deploy_key(cycle, &msg.tier, &endpoint, 0),
                    Some(&msg.tier),
                ),
            ),
            Err(e) => return Err(e),
        }
    }
    if !alone.is_empty() {
        env.queues.send_batch(DeployEndpoint::STAGE, &alone).await?;
    }
    Ok(format!(
        "{} of {}: {planned} endpoint(s) planned, {skipped} needed nothing{}",
        msg.tier,
        msg.client,
        if alone.is_empty() {
            String::new()
        } else {
            format!(", {} not plannable sent on alone", alone.len())
        }
    ))
}

/// Plans a run's commands for an attempt (the first, or a retry in its failure's window).
async fn deploy_run<X: Ports>(
    x: &X,
    cycle_doc: &CycleDoc,
    mut run: Run,
    version: u64,
    attempt: u32,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    let env = x.env();
    let cycle = cycle_doc.cycle;
    let e = run.endpoint_model(cycle_doc)?;
    let mut not_before = now;
    let mut install = run.planned_install;
    if attempt > 0 {
        if attempt != run.attempt + 1 || run.status != RunStatus::Failed {
            return Err(HandlerError::Poison(format!(
                "retry {} of {} does not follow its run (attempt {}, {})",
                attempt,
                run.endpoint,
                run.attempt,
                run.status.as_str()
            )));
        }
        let last = run.failures.last().cloned().unwrap_or_default();
        let failure = env
            .state
            .get_failure(cycle, &last)
            .await?
            .ok_or_else(|| HandlerError::Poison(format!("failure {last} is not recorded")))?;
        let mut trace = Trace::new();
        if let Err(refused) = may_retry(
            failure.root_cause.as_ref(),
            // The retry runs in the failure's next retry window, never before it.
            now.max(failure.next_retry.start),
            failure.next_retry,
            &mut trace,
        ) {
            return Err(HandlerError::Poison(format!(
                "retry of {} refused: {refused}",
                run.endpoint
            )));
        }
        install = failure.next_retry;
        not_before = now.max(failure.next_retry.start);
        run.attempt = attempt;
        run.install_sent_at = None;
        run.installed_at = None;
        run.reboot_confirmed_at = None;
        run.reminders.clear();
        run.forced_reboot = false;
        run.checks.clear();
        run.validated_at = None;
    }
    let approved = run.engineer_approval.is_some();
    if manual_approval_required(&e) && !approved {
        if run.status != RunStatus::AwaitingApproval {
            run.status = RunStatus::AwaitingApproval;
            records::save_run(
                &env.state,
                cycle,
                &run,
                Some(e.tz),
                &env.policy,
                Some(version),
            )
            .await?;
        }
        return Ok(format!(
            "{} is a critical server: waiting for an engineer's approval",
            run.endpoint
        ));
    }
    // Planned now, sent when the install window opens (the tier's tick).
    let commands = endpoint_commands(&e, install, not_before, approved, &env.policy);
    run.status = RunStatus::Scheduled;
    run.commands_at = Some(now);
    run.commands = commands;
    records::save_run(
        &env.state,
        cycle,
        &run,
        Some(e.tz),
        &env.policy,
        Some(version),
    )
    .await?;
    Ok(format!(
        "{} attempt {}: {} command(s) planned, sent when the window opens",
        run.endpoint,
        run.attempt,
        run.commands.iter().filter(|c| sent_at_window(c)).count()
    ))
}

/// Moves one run on at `now`: the core's state machine ([`run::advance`]) fed with what it
/// needs from the RMM (the agent's state when the install is to go out, the reports once it
/// went out), its commands sent (keyed so a repeat does not run them twice) and its failure
/// queued to be escalated, before the run is saved.
///
/// The tick that sends the install reads the endpoint's reports only from the next tick on (they
/// were read before the install went out); the reports keep their own instants, so nothing but
/// the hour at which the run moves on depends on it.
async fn advance<X: Ports>(
    x: &X,
    cycle: &CycleDoc,
    run: &mut Run,
    e: &Endpoint,
    now: DateTime<Utc>,
    approved: &[Patch],
    failed: &mut Vec<EndpointFailed>,
) -> Result<(), HandlerError> {
    let env = x.env();
    let Some(since) = run.commands_at else {
        return Ok(());
    };
    if !matches!(
        run.status,
        RunStatus::Scheduled | RunStatus::Installed | RunStatus::Rebooted
    ) {
        return Ok(());
    }
    let needs = run::needs(run, now);
    let agent = if needs.agent {
        Some(env.rmm.agent_state(&run.endpoint).await?)
    } else {
        None
    };
    let patches = if needs.agent {
        endpoint_patches(e, approved)
    } else {
        Vec::new()
    };
    let reports = if needs.reports {
        let expect: Vec<_> = run
            .commands
            .iter()
            .flat_map(|c| c.patches().iter().cloned())
            .collect();
        env.rmm.reports(&run.endpoint, since, &expect).await?
    } else {
        Vec::new()
    };
    let observed = Observed {
        agent: agent.as_ref(),
        reports: &reports,
        patches: &patches,
    };
    for effect in run::advance(run, e, &observed, now, &env.policy) {
        match effect {
            Effect::Send { what, command } => {
                env.rmm
                    .send(&key(cycle.cycle, run, &what), &command)
                    .await?;
            }
            Effect::Fail(f) => failed.push(EndpointFailed {
                id: f.id,
                tier: run.tier.clone(),
                endpoint: run.endpoint.clone(),
                client: run.client.clone(),
                stage: f.stage,
                at: f.at,
                detail: f.detail,
                patches: f.patches,
            }),
        }
    }
    Ok(())
}

/// The most runs one message moves on: a tier tick's page, a client's changes part. An
/// invocation's work is bounded by it, whatever the tier's, the client's or the fleet's size.
pub const PAGE: usize = 500;

/// How far back a client's hourly changes are read: the hour since the last tick and five
/// minutes more, so that a tick that ran a little late still sees everything, while a change is
/// read about once, not twice (each read costs a `reports` call per listed endpoint). A tick
/// missed altogether leaves its hour's changes to the runs' deadlines, which read the reports.
pub const CHANGES_LOOKBACK: chrono::Duration = chrono::Duration::minutes(65);

/// The index phases of runs waiting for an RMM report: their client's changes are read hourly.
pub const WAITING_PHASES: &[&str] = &[records::PHASE_SENT, records::PHASE_REPORTED];

/// What moving a set of runs on did.
#[derive(Debug, Default)]
struct Moved {
    /// Runs saved with a change.
    changed: usize,
    /// Failures escalated.
    failed: usize,
    /// Runs another writer moved meanwhile (left for the next tick).
    conflicts: usize,
}

/// The patches approved for a tier's installs: the cycle's approved patches its batch carries,
/// as the catalog has them.
async fn tier_approved<X: Ports>(
    x: &X,
    cycle_doc: &CycleDoc,
    tier: &TierId,
) -> Result<Vec<Patch>, HandlerError> {
    let env = x.env();
    // Only its batch's: a cycle tier never carries a patch approved after it deployed.
    let ids = approved_patches(x, cycle_doc.cycle).await?;
    let ids = crate::batches::tier_patches(&env.state, cycle_doc.cycle, tier, ids).await?;
    Ok(catalog_patches(cycle_doc)?
        .into_iter()
        .filter(|p| ids.contains(&p.id))
        .collect())
}

/// Moves these runs of a tier on at `now` ([`advance`]) and saves those that changed, with
/// their index. Failures go out before the runs that record them are saved: a crash in between
/// repeats the escalation (deduplicated by the failure's id), never loses it.
async fn move_runs<X: Ports>(
    x: &X,
    cycle_doc: &CycleDoc,
    tier: &TierId,
    runs: Vec<(Run, u64)>,
    now: DateTime<Utc>,
) -> Result<Moved, HandlerError> {
    let env = x.env();
    let cycle = cycle_doc.cycle;
    // The approved patches, read once per message, only when an install is to go out.
    let approved = if runs.iter().any(|(r, _)| run::needs(r, now).agent) {
        tier_approved(x, cycle_doc, tier).await?
    } else {
        Vec::new()
    };
    let mut moved = Moved::default();
    let mut failed = Vec::new();
    let mut changed = Vec::new();
    // The clients whose runs now wait for a report, in the spans those reports can come.
    let mut watch: BTreeMap<ClientId, Vec<crate::watch::Span>> = BTreeMap::new();
    let mut watch_run = |run: &Run, tz: chrono_tz::Tz| {
        if let Some(span) = crate::watch::span_of(run, tz, &env.policy, now) {
            let spans = watch.entry(run.client.clone()).or_default();
            if !spans.contains(&span) {
                spans.push(span);
            }
        }
    };
    let escalate = |failed: &mut Vec<EndpointFailed>| {
        let messages: Vec<_> = failed
            .drain(..)
            .map(|f| f.envelope(cycle, format!("{cycle}/failure/{}", f.id), Some(&f.tier)))
            .collect();
        async move {
            env.queues
                .send_batch(EndpointFailed::STAGE, &messages)
                .await
        }
    };
    for (mut run, version) in runs {
        let e = run.endpoint_model(cycle_doc)?;
        let before = run.clone();
        let queued = failed.len();
        advance(x, cycle_doc, &mut run, &e, now, &approved, &mut failed).await?;
        moved.failed += failed.len() - queued;
        if before.install_sent_at.is_none() && run.install_sent_at.is_some() {
            // The install went to the RMM: record it at once, so a message that dies later
            // (another run's error, the function's timeout) neither sends it again nor judges
            // the agent anew on the redelivery.
            escalate(&mut failed).await?;
            match records::save_run(
                &env.state,
                cycle,
                &run,
                Some(e.tz),
                &env.policy,
                Some(version),
            )
            .await
            {
                Ok(_) => {
                    moved.changed += 1;
                    watch_run(&run, e.tz);
                }
                Err(PortError::Conflict(_)) => moved.conflicts += 1,
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        if run != before {
            changed.push((run, e.tz, version));
        } else {
            // Unchanged, but watched all the same: a redelivery after a crash before the watches
            // were extended extends them now.
            watch_run(&run, e.tz);
        }
    }
    escalate(&mut failed).await?;
    for (run, tz, version) in &changed {
        match records::save_run(
            &env.state,
            cycle,
            run,
            Some(*tz),
            &env.policy,
            Some(*version),
        )
        .await
        {
            Ok(_) => {
                moved.changed += 1;
                watch_run(run, *tz);
            }
            // Moved meanwhile (an engineer's approval, a retry, another message): the next
            // tick sees it.
            Err(PortError::Conflict(_)) => moved.conflicts += 1,
            Err(e) => return Err(e.into()),
        }
    }
    // The saves came first: a crash before this leaves a watch short, and those runs' reports
    // to their deadlines.
    crate::watch::extend(&env.state, cycle, tier, &watch, now).await?;
    Ok(moved)
}

/// Moves a tier on from its runs' stored phases (two index reads, whatever its size): to
/// validating once no run is pending, to validated once every run is validated. Each
/// transition's compliance notes are kept before it (a redelivery keeps them again under the
/// same keys) and the kept notes sent.
///
/// `record` is the tier's record if the message read it already: its transitions are
/// conditional on its version, so one read earlier in the message serves (a tier that moved
/// meanwhile refuses the transition, and the next tick sees it).
async fn move_tier_on<X: Ports>(
    x: &X,
    cycle: CycleId,
    tier: &TierId,
    record: Option<patchflow_core::ports::state::TierRecord>,
    now: DateTime<Utc>,
) -> Result<Vec<&'static str>, HandlerError> {
    let env = x.env();
    let kind = run_kind(tier);
    let mut moved = Vec::new();
    let mut record = match record {
        Some(r) => r,
        None => records::tier_record(&env.state, cycle, tier).await?,
    };
    if record.state == TierState::Deploying
        && !env
            .state
            .any_doc_in_phase(cycle, &kind, records::UNREPORTED_PHASES)
            .await?
    {
        crate::compliance::installs_reported(x, cycle, tier, now).await?;
        match env
            .state
            .transition_tier(
                cycle,
                tier,
                record.version,
                TierEvent::InstallsReported,
                now,
            )
            .await
        {
            Ok(r) => {
                record = r;
                moved.push("installs reported");
            }
            Err(PortError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if record.state == TierState::Validating
        && !env
            .state
            .any_doc_in_phase(cycle, &kind, records::UNVALIDATED_PHASES)
            .await?
    {
        crate::compliance::validated(x, cycle, tier, now).await?;
        match env
            .state
            .transition_tier(cycle, tier, record.version, TierEvent::Validated, now)
            .await
        {
            Ok(_) => moved.push("validated"),
            Err(PortError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // The kept compliance notes (this message's and earlier ones), at most a fixed number.
    crate::compliance::flush(x, cycle, tier).await?;
    Ok(moved)
}

fn words(moved: &[&str]) -> String {
    if moved.is_empty() {
        String::new()
    } else {
        format!(", {}", moved.join(", "))
    }
}

/// One hour of a deploying tier, a page at a time: the runs due by `now` (read from the due
/// index, never the whole tier) moved on, failures escalated; a full page sends the next; the
/// last moves the tier on. The first page also releases the runs held with their client.
pub async fn tier_tick<X: Ports>(
    x: &X,
    cycle: CycleId,
    msg: TierTick,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    let env = x.env();
    let record = records::tier_record(&env.state, cycle, &msg.tier).await?;
    if matches!(record.state, TierState::Scheduled | TierState::Closed) {
        return Ok(format!("{} is {}", msg.tier, record.state));
    }
    // The cycle record is read once, and only when a run is moved or a client released: most
    // hours of a tier have nothing due.
    let mut cycle_doc = records::LazyCycle::new(cycle);
    // A production tier deployed in part (the client hold scope): the planned runs whose
    // client's pilot is now healthy and soaked are released.
    if msg.after.is_none() && record.state == TierState::Deploying {
        crate::rollout::release_cleared(x, &mut cycle_doc, &msg.tier, now).await?;
    }
    let after = msg.after.as_ref().map(|p| DueCursor {
        due: p.due,
        id: p.endpoint.as_str().to_owned(),
    });
    let page = records::due_runs(&env.state, cycle, &msg.tier, now, after.as_ref(), PAGE).await?;
    let next = (page.len() == PAGE)
        .then(|| {
            page.last()
                .map(|(at, run, _)| (at.due, run.endpoint.clone()))
        })
        .flatten();
    let read = page.len();
    let runs: Vec<_> = page.into_iter().map(|(_, run, v)| (run, v)).collect();
    let moved = if runs.is_empty() {
        Moved::default()
    } else {
        let cycle_doc = cycle_doc.get(&env.state).await?;
        move_runs(x, cycle_doc, &msg.tier, runs, now).await?
    };
    let summary = format!(
        "{}: {read} due run(s) read, {} moved, {} failure(s)",
        msg.tier, moved.changed, moved.failed
    );
    if let Some((due, endpoint)) = next {
        // The next page, keyed by where it starts: a redelivery of this one sends it once.
        let hour = now.format("%Y%m%dT%H");
        let key = format!(
            "{cycle}/tick/{}/{hour}/{}/{endpoint}",
            msg.tier,
            due.format("%Y%m%dT%H%M%S%.6f")
        );
        let page = TierTick {
            tier: msg.tier.clone(),
            after: Some(DuePosition { due, endpoint }),
        };
        env.queues
            .send_batch(
                TierTick::STAGE,
                &[page.envelope(cycle, key, Some(&msg.tier))],
            )
            .await?;
        return Ok(format!("{summary}; next page sent"));
    }
    if moved.conflicts > 0 {
        // The tier moves on only from what is stored.
        crate::compliance::flush(x, cycle, &msg.tier).await?;
        return Ok(format!("{summary}; a run moved meanwhile, next tick"));
    }
    let tier_moved = move_tier_on(x, cycle, &msg.tier, Some(record), now).await?;
    Ok(format!("{summary}{}", words(&tier_moved)))
}

/// One client's hour: what changed in the RMM since `msg.since` read in one paged query, then the
/// runs on those endpoints in the message's tiers moved on from their reports, at most [`PAGE`]
/// runs per message (a longer change list goes on in messages naming their endpoints); each
/// tier then moves on from its stored phases.
pub async fn client_changes<X: Ports>(
    x: &X,
    cycle: CycleId,
    msg: ClientChanges,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    let env = x.env();
    let endpoints = if msg.endpoints.is_empty() {
        let changed = env.rmm.changed(&msg.client, msg.since).await?;
        if changed.len() > PAGE {
            // Parts of at most a page's endpoints each, keyed by their first endpoint.
            let hour = now.format("%Y%m%dT%H");
            let parts: Vec<_> = changed
                .chunks(PAGE)
                .map(|chunk| {
                    let part = ClientChanges {
                        endpoints: chunk.to_vec(),
                        ..msg.clone()
                    };
                    let key = format!("{cycle}/changes/{}/{hour}/{}", msg.client, chunk[0]);
                    part.envelope(cycle, key, None)
                })
                .collect();
            env.queues.send_batch(ClientChanges::STAGE, &parts).await?;
            return Ok(format!(
                "{}: {} changed endpoint(s), sent as {} part(s)",
                msg.client,
                changed.len(),
                parts.len()
            ));
        }
        changed
    } else {
        msg.endpoints.clone()
    };
    if endpoints.is_empty() {
        return Ok(format!("{}: nothing changed", msg.client));
    }
    let cycle_doc = records::open_cycle(&env.state, cycle).await?;
    let mut out = Vec::new();
    for tier in &msg.tiers {
        let record = records::tier_record(&env.state, cycle, tier).await?;
        if matches!(record.state, TierState::Scheduled | TierState::Closed) {
            continue;
        }
        let runs = records::get_runs(&env.state, cycle, tier, &endpoints).await?;
        if runs.is_empty() {
            continue;
        }
        let read = runs.len();
        let moved = move_runs(x, &cycle_doc, tier, runs, now).await?;
        // The tier moves on from what is stored, when this message changed something (the
        // tier's own tick tries every hour anyway).
        let tier_moved = if moved.conflicts > 0 {
            crate::compliance::flush(x, cycle, tier).await?;
            Vec::new()
        } else if moved.changed > 0 {
            move_tier_on(x, cycle, tier, Some(record), now).await?
        } else {
            Vec::new()
        };
        out.push(format!(
            "{tier}: {read} read, {} moved, {} failure(s){}",
            moved.changed,
            moved.failed,
            words(&tier_moved)
        ));
    }
    Ok(format!(
        "{}: {} changed endpoint(s){}",
        msg.client,
        endpoints.len(),
        if out.is_empty() {
            String::new()
        } else {
            format!("; {}", out.join("; "))
        }
    ))
}
