//! reboot-scheduler: an endpoint's install and reboot commands to the RMM, in its own windows and
//! time zone: planned when its tier deploys, sent when the install window opens (the RMM's patch
//! deployment runs at once) with the endpoint's approved patches, after reading the agent's
//! state (an agent in maintenance mode is sent nothing; a daytime workstation offline or asleep
//! fails the posture check); then, hour by hour, the RMM's reports (install per KB, reboot,
//! post-reboot checks), the daily reboot reminders until the reboot is confirmed, the forced
//! reboot after the grace period, and the tier moving on as its endpoints report.

use chrono::{DateTime, Duration, Utc};
use patchflow_core::ids::{CycleId, PatchId};
use patchflow_core::model::{Endpoint, Patch};
use patchflow_core::plan::{EndpointPlan, Install};
use patchflow_core::policy::Policy;
use patchflow_core::ports::queue::QueueSender;
use patchflow_core::ports::rmm::{Rmm, RmmEvent, RmmReport};
use patchflow_core::ports::state::{ApprovalStore, FailureStore, TierStore};
use patchflow_core::ports::PortError;
use patchflow_core::rules::applicability::Matcher;
use patchflow_core::rules::cadence::{
    assign_cadence, check_posture, install_mode, manual_approval_required, next_reminder,
    plan_reboot, Memo, Posture, PowerState, WindowKind,
};
use patchflow_core::rules::commands::{rmm_commands, RmmCommand};
use patchflow_core::rules::failure::{may_retry, FailureStage};
use patchflow_core::rules::scope::Scope;
use patchflow_core::rules::validation::{judge, Validation};
use patchflow_core::rules::waves::Wave;
use patchflow_core::schedule::Window;
use patchflow_core::tier::{TierEvent, TierState};
use patchflow_core::trace::Trace;

use crate::applicability::catalog_patches;
use crate::env::Ports;
use crate::error::HandlerError;
use crate::messages::{DeployEndpoint, EndpointFailed, Message, TierTick};
use crate::records::{self, run_kind, CycleDoc, Reminder, Run, RunStatus, Skipped};

/// How long after a window the pipeline waits for the RMM's report before calling it a failure.
pub const REPORT_GRACE: Duration = Duration::hours(4);
/// How long a technician has to confirm a reboot before it is a failure.
pub const TECHNICIAN_GRACE: Duration = Duration::days(3);

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

/// The commands sent when the install window opens: the install and the reboot that follows
/// it (reminders and the forced reboot go out later, when due).
fn sent_at_window(c: &RmmCommand) -> bool {
    !matches!(
        c,
        RmmCommand::ReminderPopup { .. } | RmmCommand::ForcedReboot { .. }
    )
}

/// The install window of a run's commands.
fn install_window(run: &Run) -> Option<Window> {
    run.commands.iter().find_map(|c| match c {
        RmmCommand::ScheduleInstall { window, .. }
        | RmmCommand::TechnicianInstall { window, .. } => Some(*window),
        _ => None,
    })
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
    let (mut run, version): (Run, u64) =
        records::must_load(&env.state, cycle, &kind, msg.endpoint.as_str()).await?;
    if run.up_to_date {
        return Ok(format!(
            "{} is up to date (its patch scan shows nothing approved missing): nothing sent",
            run.endpoint
        ));
    }
    if msg.attempt < run.attempt || (msg.attempt == run.attempt && run.commands_at.is_some()) {
        return Ok(format!(
            "{} attempt {} already sent",
            run.endpoint, msg.attempt
        ));
    }
    let cycle_doc = records::open_cycle(&env.state, cycle).await?;
    let e = run.endpoint_model(&cycle_doc)?;
    let mut not_before = now;
    let mut install = run.planned_install;
    if msg.attempt > 0 {
        if msg.attempt != run.attempt + 1 || run.status != RunStatus::Failed {
            return Err(HandlerError::Poison(format!(
                "retry {} of {} does not follow its run (attempt {}, {})",
                msg.attempt,
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
        run.attempt = msg.attempt;
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
            records::save(
                &env.state,
                cycle,
                &kind,
                run.endpoint.as_str(),
                &run,
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
    records::save(
        &env.state,
        cycle,
        &kind,
        run.endpoint.as_str(),
        &run,
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

/// At the install window's opening: the agent's state read, then the install and its reboot
/// sent with the endpoint's approved patches, or not sent and failed with the reason (the agent
/// in maintenance mode; a daytime workstation offline or asleep: the posture check). Before the
/// window nothing happens; a window that closed before the install could be sent fails it.
async fn send_install<X: Ports>(
    x: &X,
    cycle: CycleId,
    run: &mut Run,
    e: &Endpoint,
    now: DateTime<Utc>,
    approved: &[Patch],
) -> Result<Option<EndpointFailed>, HandlerError> {
    let env = x.env();
    let Some(window) = install_window(run) else {
        return Ok(None);
    };
    if now < window.start {
        return Ok(None);
    }
    if now >= window.end {
        return Ok(Some(fail(
            run,
            FailureStage::Install,
            window.end,
            format!(
                "not installed: the install window ({} to {}) closed before the install could be sent",
                patchflow_core::schedule::utc::format(&window.start),
                patchflow_core::schedule::utc::format(&window.end)
            ),
        )));
    }
    let agent = env.rmm.agent_state(&run.endpoint).await?;
    if agent.maintenance {
        let reason = "not sent: the agent is in maintenance mode in the RMM".to_owned();
        run.skipped.push(Skipped {
            attempt: run.attempt,
            at: now,
            reason: reason.clone(),
        });
        return Ok(Some(fail(run, FailureStage::Install, now, reason)));
    }
    if WindowKind::of(e) == WindowKind::Daytime {
        let mut trace = Trace::new();
        // Offline is not awake, whatever the last known power state.
        let power = if agent.online {
            agent.power
        } else if agent.power == PowerState::Awake {
            PowerState::Unknown
        } else {
            agent.power
        };
        let ready = agent.online && check_posture(power, &mut trace) != Posture::NotReady;
        if !ready {
            let seen = agent
                .last_contact
                .map(|t| {
                    format!(
                        ", last contact {}",
                        patchflow_core::schedule::utc::format(&t)
                    )
                })
                .unwrap_or_default();
            let reason = format!(
                "not awake in its daytime window ({}, {power:?}{seen}): not patched",
                if agent.online { "online" } else { "offline" }
            );
            run.skipped.push(Skipped {
                attempt: run.attempt,
                at: now,
                reason: reason.clone(),
            });
            return Ok(Some(fail(run, FailureStage::Posture, now, reason)));
        }
    }
    let patches = endpoint_patches(e, approved);
    for c in run.commands.iter_mut() {
        if let RmmCommand::ScheduleInstall { patches: p, .. }
        | RmmCommand::TechnicianInstall { patches: p, .. } = c
        {
            *p = patches.clone();
        }
    }
    for c in run.commands.iter().filter(|c| sent_at_window(c)) {
        env.rmm.send(&key(cycle, run, c.name()), c).await?;
    }
    run.install_sent_at = Some(now);
    Ok(None)
}

/// A failure to escalate.
fn fail(run: &mut Run, stage: FailureStage, at: DateTime<Utc>, detail: String) -> EndpointFailed {
    fail_naming(run, stage, at, detail, Vec::new())
}

/// A failure to escalate, naming the patches that failed.
fn fail_naming(
    run: &mut Run,
    stage: FailureStage,
    at: DateTime<Utc>,
    detail: String,
    patches: Vec<PatchId>,
) -> EndpointFailed {
    let id = run.failure_id(stage);
    if run.failures.last() != Some(&id) {
        run.failures.push(id.clone());
    }
    run.status = RunStatus::Failed;
    EndpointFailed {
        id,
        tier: run.tier.clone(),
        endpoint: run.endpoint.clone(),
        client: run.client.clone(),
        stage,
        at,
        detail,
        patches,
    }
}

/// Applies one RMM report to a run; a failure comes back to be escalated.
fn apply(run: &mut Run, e: &Endpoint, r: &RmmReport) -> Option<EndpointFailed> {
    match (run.status, &r.event) {
        (RunStatus::Scheduled, RmmEvent::InstallSucceeded) => {
            run.status = RunStatus::Installed;
            run.installed_at = Some(r.at);
            None
        }
        (RunStatus::Scheduled, RmmEvent::InstallFailed { detail, patches }) => {
            let detail = if patches.iter().all(|p| detail.contains(p.as_str())) {
                format!("install failed: {detail}")
            } else {
                let kbs: Vec<&str> = patches.iter().map(|p| p.as_str()).collect();
                format!("install failed for {}: {detail}", kbs.join(", "))
            };
            Some(fail_naming(
                run,
                FailureStage::Install,
                r.at,
                detail,
                patches.clone(),
            ))
        }
        (RunStatus::Scheduled, RmmEvent::NotAwake { power }) => {
            if WindowKind::of(e) != WindowKind::Daytime {
                // Only daytime workstations have a posture requirement; anything else that is
                // not reachable in its window simply did not install.
                return Some(fail(
                    run,
                    FailureStage::Install,
                    r.at,
                    format!("not reachable in its window ({power:?}): not installed"),
                ));
            }
            let mut trace = Trace::new();
            match check_posture(*power, &mut trace) {
                Posture::NotReady => Some(fail(
                    run,
                    FailureStage::Posture,
                    r.at,
                    format!("not awake in its daytime window ({power:?}): not patched"),
                )),
                Posture::Ready | Posture::Unconfirmed => None,
            }
        }
        (RunStatus::Installed, RmmEvent::RebootConfirmed) => {
            run.status = RunStatus::Rebooted;
            run.reboot_confirmed_at = Some(r.at);
            None
        }
        (RunStatus::Rebooted, RmmEvent::Checks { results }) => {
            run.checks = results.clone();
            let mut trace = Trace::new();
            match judge(e, results, &mut trace) {
                Validation::Healthy => {
                    run.status = RunStatus::Validated;
                    run.validated_at = Some(r.at);
                    None
                }
                Validation::Unhealthy { failed, missing } => Some(fail(
                    run,
                    FailureStage::Validation,
                    r.at,
                    format!(
                        "post-reboot checks failed: {:?}, missing: {:?}",
                        failed.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                        missing.iter().map(|c| c.as_str()).collect::<Vec<_>>()
                    ),
                )),
            }
        }
        _ => None,
    }
}

/// The reboot the run waits for, and the instant after which its absence is a failure.
fn reboot_deadline(run: &Run) -> Option<DateTime<Utc>> {
    run.commands.iter().find_map(|c| match c {
        RmmCommand::ScheduleReboot { window, .. } | RmmCommand::ForcedReboot { window, .. } => {
            Some(window.end + REPORT_GRACE)
        }
        RmmCommand::TechnicianReboot { after, .. } => Some(*after + TECHNICIAN_GRACE),
        _ => None,
    })
}

fn install_deadline(run: &Run) -> Option<DateTime<Utc>> {
    run.commands.iter().find_map(|c| match c {
        RmmCommand::ScheduleInstall { window, .. } => Some(window.end + REPORT_GRACE),
        RmmCommand::TechnicianInstall { window, .. } => Some(window.end + TECHNICIAN_GRACE),
        _ => None,
    })
}

/// Moves one run on at `now`: reports, reminders, forced reboot, deadlines. Commands go out
/// before the run is saved, keyed so a repeat does not run them twice.
async fn advance<X: Ports>(
    x: &X,
    cycle: &CycleDoc,
    run: &mut Run,
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
    let e = run.endpoint_model(cycle)?;
    if run.status == RunStatus::Scheduled && run.install_sent_at.is_none() {
        if let Some(f) = send_install(x, cycle.cycle, run, &e, now, approved).await? {
            failed.push(f);
            return Ok(());
        }
        if run.install_sent_at.is_none() {
            // Its window has not opened yet.
            return Ok(());
        }
    }
    let expect: Vec<_> = run
        .commands
        .iter()
        .flat_map(|c| c.patches().iter().cloned())
        .collect();
    for r in env.rmm.reports(&run.endpoint, since, &expect).await? {
        if let Some(f) = apply(run, &e, &r) {
            failed.push(f);
            return Ok(());
        }
    }
    match run.status {
        RunStatus::Scheduled => {
            if let Some(deadline) = install_deadline(run).filter(|d| now >= *d) {
                failed.push(fail(
                    run,
                    FailureStage::Install,
                    deadline,
                    "no install report from the RMM after the window".into(),
                ));
            }
        }
        RunStatus::Installed => {
            send_reminder_and_forced_reboot(x, cycle.cycle, run, &e, now).await?;
            if let Some(deadline) = reboot_deadline(run).filter(|d| now >= *d) {
                failed.push(fail(
                    run,
                    FailureStage::Reboot,
                    deadline,
                    "the reboot was not confirmed".into(),
                ));
            }
        }
        RunStatus::Rebooted => {
            let deadline = run.reboot_confirmed_at.map(|t| t + REPORT_GRACE);
            if let Some(deadline) = deadline.filter(|d| now >= *d) {
                failed.push(fail(
                    run,
                    FailureStage::Validation,
                    deadline,
                    "no post-reboot checks reported".into(),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Daily reminders (the latest one due, never a backlog) until the reboot is confirmed; the
/// forced reboot once its window opens.
async fn send_reminder_and_forced_reboot<X: Ports>(
    x: &X,
    cycle: CycleId,
    run: &mut Run,
    e: &Endpoint,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let env = x.env();
    let popup = run.commands.iter().find_map(|c| match c {
        RmmCommand::ReminderPopup {
            first, local_time, ..
        } => Some((*first, *local_time)),
        _ => None,
    });
    let forced = run.commands.iter().find_map(|c| match c {
        RmmCommand::ForcedReboot { window, .. } => Some(*window),
        _ => None,
    });
    if let (Some((first, local_time)), Some(forced)) = (popup, forced) {
        let mut due = match run.reminders.last() {
            None => first,
            Some(r) => next_reminder(e.tz, r.at, &env.policy),
        };
        while next_reminder(e.tz, due, &env.policy) <= now {
            due = next_reminder(e.tz, due, &env.policy);
        }
        if due <= now && now < forced.start {
            let c = RmmCommand::ReminderPopup {
                endpoint: run.endpoint.clone(),
                first: due,
                local_time,
            };
            let what = format!("reminder/{}", due.format("%Y%m%dT%H%M"));
            env.rmm.send(&key(cycle, run, &what), &c).await?;
            run.reminders.push(Reminder { at: due });
        }
        if now >= forced.start && !run.forced_reboot {
            let c = RmmCommand::ForcedReboot {
                endpoint: run.endpoint.clone(),
                window: forced,
            };
            env.rmm.send(&key(cycle, run, c.name()), &c).await?;
            run.forced_reboot = true;
        }
    }
    Ok(())
}

/// One hour of a deploying tier: every run moved on, failures escalated, the tier moved on.
pub async fn tier_tick<X: Ports>(
    x: &X,
    cycle: CycleId,
    msg: TierTick,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    let env = x.env();
    let Some(mut record) = env.state.get_tier(cycle, &msg.tier).await? else {
        return Err(HandlerError::Poison(format!(
            "no tier {} in {cycle}",
            msg.tier
        )));
    };
    if matches!(record.state, TierState::Scheduled | TierState::Closed) {
        return Ok(format!("{} is {}", msg.tier, record.state));
    }
    let cycle_doc = records::open_cycle(&env.state, cycle).await?;
    let kind = run_kind(&msg.tier);
    let runs: Vec<(Run, u64)> = records::list(&env.state, cycle, &kind).await?;
    // A production tier deployed in part (the client hold scope): the planned runs whose
    // client's pilot is now healthy and soaked are released.
    if record.state == TierState::Deploying {
        crate::rollout::release_cleared(x, &cycle_doc, &msg.tier, &runs, now).await?;
    }
    // The approved patches, read once per tick, only when an install is to go out.
    let approved = if runs
        .iter()
        .any(|(r, _)| r.status == RunStatus::Scheduled && r.install_sent_at.is_none())
    {
        // Only its batch's: a cycle tier never carries a patch approved after it deployed.
        let ids = approved_patches(x, cycle).await?;
        let ids = crate::batches::tier_patches(&env.state, cycle, &msg.tier, ids).await?;
        catalog_patches(&cycle_doc)?
            .into_iter()
            .filter(|p| ids.contains(&p.id))
            .collect()
    } else {
        Vec::new()
    };
    let mut failed = Vec::new();
    let mut changed = Vec::new();
    let mut statuses = Vec::with_capacity(runs.len());
    let mut moved_meanwhile = false;
    // Failures go out before the runs that record them are saved: a crash in between repeats
    // the escalation (deduplicated by the failure's id), never loses it.
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
        let before = run.clone();
        advance(x, &cycle_doc, &mut run, now, &approved, &mut failed).await?;
        statuses.push(run.status);
        if before.install_sent_at.is_none() && run.install_sent_at.is_some() {
            // The install went to the RMM: record it at once, so a tick that dies later (another
            // run's error, the function's timeout) neither sends it again nor judges the agent
            // anew on the redelivery.
            escalate(&mut failed).await?;
            match records::save(
                &env.state,
                cycle,
                &kind,
                run.endpoint.as_str(),
                &run,
                Some(version),
            )
            .await
            {
                Ok(_) => {}
                Err(PortError::Conflict(_)) => moved_meanwhile = true,
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        if run != before {
            changed.push((run, version));
        }
    }
    escalate(&mut failed).await?;
    for (run, version) in &changed {
        match records::save(
            &env.state,
            cycle,
            &kind,
            run.endpoint.as_str(),
            run,
            Some(*version),
        )
        .await
        {
            Ok(_) => {}
            // Moved meanwhile (an engineer's approval, a retry): the next tick sees it.
            Err(PortError::Conflict(_)) => moved_meanwhile = true,
            Err(e) => return Err(e.into()),
        }
    }
    if moved_meanwhile {
        // The tier moves on only from what is stored.
        crate::compliance::flush(x, cycle, &msg.tier).await?;
        return Ok(format!("{}: a run moved meanwhile; next tick", msg.tier));
    }

    let reported = |s: &RunStatus| {
        matches!(
            s,
            RunStatus::Installed | RunStatus::Rebooted | RunStatus::Validated | RunStatus::Failed
        )
    };
    let mut moved = Vec::new();
    if record.state == TierState::Deploying && statuses.iter().all(reported) {
        // Each transition's compliance notes are kept before it (a redelivery keeps them again
        // under the same keys) and sent by the flush below.
        crate::compliance::installs_reported(x, cycle, &msg.tier, now).await?;
        match env
            .state
            .transition_tier(
                cycle,
                &msg.tier,
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
    if record.state == TierState::Validating && statuses.iter().all(|s| *s == RunStatus::Validated)
    {
        crate::compliance::validated(x, cycle, &msg.tier, now).await?;
        match env
            .state
            .transition_tier(cycle, &msg.tier, record.version, TierEvent::Validated, now)
            .await
        {
            Ok(_) => {
                moved.push("validated");
            }
            Err(PortError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // The kept compliance notes (this tick's and earlier ones), at most a fixed number.
    crate::compliance::flush(x, cycle, &msg.tier).await?;
    Ok(format!(
        "{}: {} run(s) moved, {} failure(s){}",
        msg.tier,
        changed.len(),
        failed.len(),
        if moved.is_empty() {
            String::new()
        } else {
            format!(", {}", moved.join(", "))
        }
    ))
}
