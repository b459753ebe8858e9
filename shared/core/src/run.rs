//! An endpoint's run through a cycle, and the reboot-scheduler's state machine over it as a pure
//! function: scheduled, the install sent at its window's opening (after the agent's state is
//! read), installed, rebooted, validated, or failed; the daily reboot reminders, the forced
//! reboot and the deadlines after which a missing RMM report is a failure.
//!
//! The handler reads what [`needs`] asks for (the agent's state, the RMM's reports), calls
//! [`advance`] and carries out the [`Effect`]s it returns, in order. [`next_due`] is the instant
//! of a run's next action, so a tick can read only the runs due in its hour; [`phase`] is what
//! its tier needs to know of it.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::contract::EndpointDoc;
use crate::ids::{ClientId, EndpointId, PatchId};
use crate::model::Endpoint;
use crate::policy::Policy;
use crate::ports::rmm::{AgentState, RmmEvent, RmmReport};
use crate::ports::state::TierId;
use crate::rules::approval::SignOff;
use crate::rules::cadence::{check_posture, next_reminder, Posture, PowerState, WindowKind};
use crate::rules::commands::RmmCommand;
use crate::rules::failure::FailureStage;
use crate::rules::validation::{judge, CheckResult, Validation};
use crate::schedule::{utc, Window};
use crate::trace::Trace;

#[cfg(test)]
mod tests;

/// How long after a window the pipeline waits for the RMM's report before calling it a failure.
pub const REPORT_GRACE: Duration = Duration::hours(4);
/// How long a technician has to confirm a reboot before it is a failure.
pub const TECHNICIAN_GRACE: Duration = Duration::days(3);

/// Where an endpoint is in its run through the cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting for its tier to deploy.
    Planned,
    /// A critical server: waiting for an engineer's approval before anything installs.
    AwaitingApproval,
    /// Install (and reboot) commands sent.
    Scheduled,
    /// Installed; waiting for the reboot.
    Installed,
    /// Rebooted; waiting for the post-reboot checks.
    Rebooted,
    /// Checks passed: patched.
    Validated,
    /// Failed; escalated, waiting for a root cause and a retry.
    Failed,
}

impl RunStatus {
    /// The status's name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Planned => "planned",
            RunStatus::AwaitingApproval => "awaiting_approval",
            RunStatus::Scheduled => "scheduled",
            RunStatus::Installed => "installed",
            RunStatus::Rebooted => "rebooted",
            RunStatus::Validated => "validated",
            RunStatus::Failed => "failed",
        }
    }
}

/// One endpoint's run through a cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The endpoint.
    pub endpoint: EndpointId,
    /// Its client.
    pub client: ClientId,
    /// Its tier.
    pub tier: TierId,
    /// The endpoint as synced when the cycle opened.
    pub doc: EndpointDoc,
    /// The install window the plan gave it.
    pub planned_install: Window,
    /// Where it is.
    pub status: RunStatus,
    /// 0 for the first try, one more per retry.
    pub attempt: u32,
    /// When this attempt's commands went out.
    #[serde(default, with = "utc::option", skip_serializing_if = "Option::is_none")]
    pub commands_at: Option<DateTime<Utc>>,
    /// This attempt's commands: install and reboot when the install window opens (the install
    /// then carrying the endpoint's approved patches), reminders and the forced reboot when due.
    #[serde(default)]
    pub commands: Vec<RmmCommand>,
    /// When this attempt's install (and reboot) went to the RMM, at its window's opening.
    #[serde(default, with = "utc::option", skip_serializing_if = "Option::is_none")]
    pub install_sent_at: Option<DateTime<Utc>>,
    /// Installs not sent, and why (the agent in maintenance mode, a daytime workstation not
    /// awake), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
    /// When the install was reported.
    #[serde(default, with = "utc::option", skip_serializing_if = "Option::is_none")]
    pub installed_at: Option<DateTime<Utc>>,
    /// When the reboot was confirmed.
    #[serde(default, with = "utc::option", skip_serializing_if = "Option::is_none")]
    pub reboot_confirmed_at: Option<DateTime<Utc>>,
    /// Reboot reminders shown this attempt.
    #[serde(default)]
    pub reminders: Vec<Reminder>,
    /// Whether the forced reboot was sent this attempt.
    #[serde(default)]
    pub forced_reboot: bool,
    /// The post-reboot checks.
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    /// When the checks passed.
    #[serde(default, with = "utc::option", skip_serializing_if = "Option::is_none")]
    pub validated_at: Option<DateTime<Utc>>,
    /// Its failures' ids, oldest first.
    #[serde(default)]
    pub failures: Vec<String>,
    /// An engineer's approval (critical servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engineer_approval: Option<SignOff>,
    /// In scope, but its RMM patch scan showed no approved patch missing when the cycle opened:
    /// nothing is sent to it, and it is done (validated) from the opening.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub up_to_date: bool,
}

/// An install not sent when its window opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The attempt.
    pub attempt: u32,
    /// When.
    #[serde(with = "utc")]
    pub at: DateTime<Utc>,
    /// Why, in words.
    pub reason: String,
}

/// A reminder shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reminder {
    /// When it was due.
    #[serde(with = "utc")]
    pub at: DateTime<Utc>,
}

impl Run {
    /// A run as a tier's opening plans it: planned in `window`, its first attempt, nothing sent
    /// or reported yet.
    pub fn planned(
        endpoint: EndpointId,
        client: ClientId,
        tier: TierId,
        doc: EndpointDoc,
        window: Window,
    ) -> Self {
        Run {
            endpoint,
            client,
            tier,
            doc,
            planned_install: window,
            status: RunStatus::Planned,
            attempt: 0,
            commands_at: None,
            commands: Vec::new(),
            install_sent_at: None,
            skipped: Vec::new(),
            installed_at: None,
            reboot_confirmed_at: None,
            reminders: Vec::new(),
            forced_reboot: false,
            checks: Vec::new(),
            validated_at: None,
            failures: Vec::new(),
            engineer_approval: None,
            up_to_date: false,
        }
    }

    /// The id of this attempt's failure at a stage.
    pub fn failure_id(&self, stage: FailureStage) -> String {
        // A later batch's run: `{endpoint}.b{N}.{stage}.{attempt}`, apart from its cycle run's.
        match self.tier.batch() {
            1 => format!("{}.{}.{}", self.endpoint, stage.as_str(), self.attempt),
            n => format!("{}.b{n}.{}.{}", self.endpoint, stage.as_str(), self.attempt),
        }
    }
}

/// What the handler read for a run before advancing it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed<'a> {
    /// The agent's state in the RMM, read only when [`needs`] says `agent` (the install is to
    /// go out now).
    pub agent: Option<&'a AgentState>,
    /// The RMM's reports for the endpoint since the attempt's commands, oldest first, read only
    /// when [`needs`] says `reports`.
    pub reports: &'a [RmmReport],
    /// The endpoint's approved applicable patches, which the install carries (needed only when
    /// the install is to go out).
    pub patches: &'a [PatchId],
}

/// What the handler must read from the RMM before advancing a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    /// The agent's state: the install is to go out now.
    pub agent: bool,
    /// The endpoint's reports: its commands were sent and it is still moving.
    pub reports: bool,
}

/// Something the handler must do for a run, in the order [`advance`] returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send a command to the RMM.
    Send {
        /// The last segment of the command's idempotency key: the command's name for the
        /// install, the reboot and the forced reboot, `reminder/{due:%Y%m%dT%H%M}` for a
        /// reminder.
        what: String,
        /// The command.
        command: RmmCommand,
    },
    /// Escalate a failure (the run is already failed).
    Fail(RunFailure),
}

/// A run's failure, as the handler escalates it (with the run's tier, endpoint and client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFailure {
    /// The failure's id ([`Run::failure_id`]).
    pub id: String,
    /// Where it failed.
    pub stage: FailureStage,
    /// When.
    pub at: DateTime<Utc>,
    /// What happened, in words.
    pub detail: String,
    /// The patches that failed, when the RMM named them.
    pub patches: Vec<PatchId>,
}

/// Where a run is, as its tier counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Not reported yet: planned, awaiting an engineer's approval, or scheduled.
    Pending,
    /// The install reported: installed or rebooted, waiting for the reboot or the checks.
    Reported,
    /// Failed.
    Failed,
    /// Patched and validated, or up to date from the cycle's opening.
    Validated,
}

impl Phase {
    /// The phase's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Reported => "reported",
            Phase::Failed => "failed",
            Phase::Validated => "validated",
        }
    }
}

/// Where a run is, as its tier counts it: the tier moves on when no run is pending (every
/// install reported), then when every run is validated.
pub fn phase(run: &Run) -> Phase {
    if run.up_to_date {
        return Phase::Validated;
    }
    match run.status {
        RunStatus::Planned | RunStatus::AwaitingApproval | RunStatus::Scheduled => Phase::Pending,
        RunStatus::Installed | RunStatus::Rebooted => Phase::Reported,
        RunStatus::Failed => Phase::Failed,
        RunStatus::Validated => Phase::Validated,
    }
}

/// The commands sent when the install window opens: the install and the reboot that follows
/// it (reminders and the forced reboot go out later, when due).
pub fn sent_at_window(c: &RmmCommand) -> bool {
    !matches!(
        c,
        RmmCommand::ReminderPopup { .. } | RmmCommand::ForcedReboot { .. }
    )
}

/// Whether the run is moving on by itself (its commands planned, not yet validated or failed).
/// Whether the run is under way: its commands planned, not failed, validated nor up to date
/// (it has a next action, [`next_due`]).
pub fn active(run: &Run) -> bool {
    !run.up_to_date
        && run.commands_at.is_some()
        && matches!(
            run.status,
            RunStatus::Scheduled | RunStatus::Installed | RunStatus::Rebooted
        )
}

/// Whether the run waits for its install window's opening to send the install.
fn awaiting_install(run: &Run) -> bool {
    active(run) && run.status == RunStatus::Scheduled && run.install_sent_at.is_none()
}

/// The install window of a run's commands.
fn install_window(run: &Run) -> Option<Window> {
    run.commands.iter().find_map(|c| match c {
        RmmCommand::ScheduleInstall { window, .. }
        | RmmCommand::TechnicianInstall { window, .. } => Some(*window),
        _ => None,
    })
}

/// The instant after which a missing install report is a failure.
fn install_deadline(run: &Run) -> Option<DateTime<Utc>> {
    run.commands.iter().find_map(|c| match c {
        RmmCommand::ScheduleInstall { window, .. } => Some(window.end + REPORT_GRACE),
        RmmCommand::TechnicianInstall { window, .. } => Some(window.end + TECHNICIAN_GRACE),
        _ => None,
    })
}

/// The instant after which the reboot's absence is a failure.
fn reboot_deadline(run: &Run) -> Option<DateTime<Utc>> {
    run.commands.iter().find_map(|c| match c {
        RmmCommand::ScheduleReboot { window, .. } | RmmCommand::ForcedReboot { window, .. } => {
            Some(window.end + REPORT_GRACE)
        }
        RmmCommand::TechnicianReboot { after, .. } => Some(*after + TECHNICIAN_GRACE),
        _ => None,
    })
}

/// The instant after which missing post-reboot checks are a failure.
fn validation_deadline(run: &Run) -> Option<DateTime<Utc>> {
    run.reboot_confirmed_at.map(|t| t + REPORT_GRACE)
}

/// A user reboot's reminder popup (its first reminder and local time) and forced reboot window;
/// reminders and the forced reboot go out only when the commands have both.
fn user_reboot(run: &Run) -> Option<(RmmCommand, Window)> {
    let popup = run
        .commands
        .iter()
        .find(|c| matches!(c, RmmCommand::ReminderPopup { .. }))?;
    let forced = run.commands.iter().find_map(|c| match c {
        RmmCommand::ForcedReboot { window, .. } => Some(*window),
        _ => None,
    })?;
    Some((popup.clone(), forced))
}

/// The next reminder not yet shown: the popup's first, else the day after the last one shown.
fn next_unshown_reminder(
    run: &Run,
    first: DateTime<Utc>,
    tz: Tz,
    policy: &Policy,
) -> DateTime<Utc> {
    match run.reminders.last() {
        None => first,
        Some(r) => next_reminder(tz, r.at, policy),
    }
}

/// What the handler must read before [`advance`] at `now`.
pub fn needs(run: &Run, now: DateTime<Utc>) -> Needs {
    let agent =
        awaiting_install(run) && install_window(run).is_some_and(|w| w.start <= now && now < w.end);
    let reports =
        active(run) && (run.install_sent_at.is_some() || run.status != RunStatus::Scheduled);
    Needs { agent, reports }
}

/// Moves one run on at `now` from what the handler observed: the install at its window's
/// opening, the RMM's reports in order (up to the first failure), the reminders and the forced
/// reboot, the deadlines. Returns what the handler must do, in order: commands before the
/// failure that follows them.
///
/// The tick that sends the install does nothing more for the run (the reports it would read
/// were read before the install went out); the next one reads them. Without the agent's state
/// when [`needs`] asks for it the install does not go out.
pub fn advance(
    run: &mut Run,
    e: &Endpoint,
    obs: &Observed<'_>,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Vec<Effect> {
    let mut effects = Vec::new();
    if !active(run) {
        return effects;
    }
    if awaiting_install(run) {
        open_window(run, e, obs, now, &mut effects);
        return effects;
    }
    for r in obs.reports {
        if let Some(f) = apply(run, e, r) {
            effects.push(Effect::Fail(f));
            return effects;
        }
    }
    match run.status {
        RunStatus::Scheduled => {
            if let Some(deadline) = install_deadline(run).filter(|d| now >= *d) {
                let f = fail(
                    run,
                    FailureStage::Install,
                    deadline,
                    "no install report from the RMM after the window".into(),
                );
                effects.push(Effect::Fail(f));
            }
        }
        RunStatus::Installed => {
            remind_and_force(run, e.tz, now, policy, &mut effects);
            if let Some(deadline) = reboot_deadline(run).filter(|d| now >= *d) {
                let f = fail(
                    run,
                    FailureStage::Reboot,
                    deadline,
                    "the reboot was not confirmed".into(),
                );
                effects.push(Effect::Fail(f));
            }
        }
        RunStatus::Rebooted => {
            if let Some(deadline) = validation_deadline(run).filter(|d| now >= *d) {
                let f = fail(
                    run,
                    FailureStage::Validation,
                    deadline,
                    "no post-reboot checks reported".into(),
                );
                effects.push(Effect::Fail(f));
            }
        }
        _ => {}
    }
    effects
}

/// Whether [`next_due`] needs the endpoint's zone: only while the run waits for its reboot
/// (its reminders are due at a local time).
pub fn needs_zone(run: &Run) -> bool {
    active(run) && run.status == RunStatus::Installed
}

/// The instant of the run's next action: its install window's opening (scheduled, not sent),
/// its install report's deadline (scheduled, sent); installed, the earliest of its next
/// reminder, its forced reboot and its reboot's deadline; rebooted, its checks' deadline. `None`
/// for a run that waits for a message rather than a time (planned, awaiting approval, validated,
/// failed, up to date). After [`advance`] at `now` it is `None` or after `now`.
pub fn next_due(run: &Run, tz: Tz, policy: &Policy) -> Option<DateTime<Utc>> {
    if !active(run) {
        return None;
    }
    match run.status {
        RunStatus::Scheduled if run.install_sent_at.is_none() => {
            install_window(run).map(|w| w.start)
        }
        RunStatus::Scheduled => install_deadline(run),
        RunStatus::Installed => {
            let user = user_reboot(run).filter(|_| !run.forced_reboot);
            let reminder = user.as_ref().and_then(|(popup, forced)| match popup {
                RmmCommand::ReminderPopup { first, .. } => {
                    Some(next_unshown_reminder(run, *first, tz, policy))
                        .filter(|due| *due < forced.start)
                }
                _ => None,
            });
            let forced = user.map(|(_, forced)| forced.start);
            [reminder, forced, reboot_deadline(run)]
                .into_iter()
                .flatten()
                .min()
        }
        RunStatus::Rebooted => validation_deadline(run),
        _ => None,
    }
}

/// How long after a reboot reminder a user's own reboot is listened for: the working day the
/// popup opens. A user who reboots later is read at the run's next action (the next reminder,
/// a day on, or the forced reboot), never lost.
pub const USER_REBOOT_LISTEN: Duration = Duration::hours(8);

/// The span in which the RMM can next report on a run waiting for a report, from `now` on: the
/// hours its client's changes are worth reading for it (see `patchflow_pipeline::watch`). Sent,
/// from `now` to its install report's deadline; installed, its reboot's: an automatic reboot's
/// window and grace, a technician's three days, a user's working day after the reminder shown
/// last or due next, then the forced reboot's window and grace; rebooted, to its checks'
/// deadline. `None` for a run that waits for no report (not sent, done, failed). A report
/// outside the span is read at the run's next action ([`next_due`]), which reads its reports.
pub fn report_span(
    run: &Run,
    tz: Tz,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    if !active(run) {
        return None;
    }
    let span = match run.status {
        RunStatus::Scheduled if run.install_sent_at.is_none() => return None,
        RunStatus::Scheduled => (now, install_deadline(run)?),
        RunStatus::Installed => {
            let reboot = run.commands.iter().find_map(|c| match c {
                RmmCommand::ScheduleReboot { window, .. } => {
                    Some((window.start, window.end + REPORT_GRACE))
                }
                RmmCommand::TechnicianReboot { after, .. } => {
                    Some((*after, *after + TECHNICIAN_GRACE))
                }
                _ => None,
            });
            match (reboot, user_reboot(run)) {
                (Some(span), _) => span,
                (None, Some((RmmCommand::ReminderPopup { first, .. }, forced))) => {
                    let forced_span = (forced.start, forced.end + REPORT_GRACE);
                    let shown = run
                        .reminders
                        .last()
                        .map(|r| (r.at, r.at + USER_REBOOT_LISTEN));
                    let next = (!run.forced_reboot)
                        .then(|| next_unshown_reminder(run, first, tz, policy))
                        .filter(|at| *at < forced.start)
                        .map(|at| (at, at + USER_REBOOT_LISTEN));
                    [shown, next, Some(forced_span)]
                        .into_iter()
                        .flatten()
                        .find(|(_, end)| *end > now)
                        .unwrap_or(forced_span)
                }
                // Commands without a reboot: to the run's next action.
                _ => (now, next_due(run, tz, policy)?),
            }
        }
        RunStatus::Rebooted => (now, validation_deadline(run)?),
        _ => return None,
    };
    Some((span.0.max(now), span.1.max(now)))
}

/// At the install window's opening: the install and its reboot sent with the endpoint's
/// approved patches, or not sent and failed with the reason (the agent in maintenance mode; a
/// daytime workstation offline or asleep: the posture check). Before the window nothing
/// happens; a window that closed before the install could be sent fails it.
fn open_window(
    run: &mut Run,
    e: &Endpoint,
    obs: &Observed<'_>,
    now: DateTime<Utc>,
    effects: &mut Vec<Effect>,
) {
    let Some(window) = install_window(run) else {
        return;
    };
    if now < window.start {
        return;
    }
    if now >= window.end {
        let f = fail(
            run,
            FailureStage::Install,
            window.end,
            format!(
                "not installed: the install window ({} to {}) closed before the install could be sent",
                utc::format(&window.start),
                utc::format(&window.end)
            ),
        );
        effects.push(Effect::Fail(f));
        return;
    }
    let Some(agent) = obs.agent else {
        return;
    };
    if agent.maintenance {
        let reason = "not sent: the agent is in maintenance mode in the RMM".to_owned();
        run.skipped.push(Skipped {
            attempt: run.attempt,
            at: now,
            reason: reason.clone(),
        });
        effects.push(Effect::Fail(fail(run, FailureStage::Install, now, reason)));
        return;
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
                .map(|t| format!(", last contact {}", utc::format(&t)))
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
            effects.push(Effect::Fail(fail(run, FailureStage::Posture, now, reason)));
            return;
        }
    }
    for c in run.commands.iter_mut() {
        if let RmmCommand::ScheduleInstall { patches: p, .. }
        | RmmCommand::TechnicianInstall { patches: p, .. } = c
        {
            *p = obs.patches.to_vec();
        }
    }
    effects.extend(
        run.commands
            .iter()
            .filter(|c| sent_at_window(c))
            .map(|c| Effect::Send {
                what: c.name().to_owned(),
                command: c.clone(),
            }),
    );
    run.install_sent_at = Some(now);
}

/// Fails the run.
fn fail(run: &mut Run, stage: FailureStage, at: DateTime<Utc>, detail: String) -> RunFailure {
    fail_naming(run, stage, at, detail, Vec::new())
}

/// Fails the run, naming the patches that failed.
fn fail_naming(
    run: &mut Run,
    stage: FailureStage,
    at: DateTime<Utc>,
    detail: String,
    patches: Vec<PatchId>,
) -> RunFailure {
    let id = run.failure_id(stage);
    if run.failures.last() != Some(&id) {
        run.failures.push(id.clone());
    }
    run.status = RunStatus::Failed;
    RunFailure {
        id,
        stage,
        at,
        detail,
        patches,
    }
}

/// Applies one RMM report to a run; a failure comes back to be escalated.
fn apply(run: &mut Run, e: &Endpoint, r: &RmmReport) -> Option<RunFailure> {
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

/// Daily reminders (the latest one due, never a backlog) until the reboot is confirmed or the
/// forced reboot's window opens; the forced reboot once, when its window opens.
fn remind_and_force(
    run: &mut Run,
    tz: Tz,
    now: DateTime<Utc>,
    policy: &Policy,
    effects: &mut Vec<Effect>,
) {
    let Some((
        RmmCommand::ReminderPopup {
            first, local_time, ..
        },
        forced,
    )) = user_reboot(run)
    else {
        return;
    };
    let mut due = next_unshown_reminder(run, first, tz, policy);
    while next_reminder(tz, due, policy) <= now {
        due = next_reminder(tz, due, policy);
    }
    if due <= now && now < forced.start {
        let command = RmmCommand::ReminderPopup {
            endpoint: run.endpoint.clone(),
            first: due,
            local_time,
        };
        effects.push(Effect::Send {
            what: format!("reminder/{}", due.format("%Y%m%dT%H%M")),
            command,
        });
        run.reminders.push(Reminder { at: due });
    }
    if now >= forced.start && !run.forced_reboot {
        let command = RmmCommand::ForcedReboot {
            endpoint: run.endpoint.clone(),
            window: forced,
        };
        effects.push(Effect::Send {
            what: command.name().to_owned(),
            command,
        });
        run.forced_reboot = true;
    }
}
