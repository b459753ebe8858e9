use chrono::{Duration, TimeZone};
use proptest::prelude::*;

use super::*;
use crate::model::{Profile, ServerPolicyGroup};
use crate::plan::{EndpointPlan, Install};
use crate::rules::applicability::Applicability;
use crate::rules::cadence::{assign_cadence, install_mode, plan_reboot, Memo};
use crate::rules::commands::rmm_commands;
use crate::rules::scope::Scope;
use crate::rules::validation::{checks_for, Check};
use crate::rules::waves::Wave;
use crate::testing::{daytime, server, workstation};

fn policy() -> Policy {
    Policy::default()
}

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

/// Wednesday 2026-12-09, the day after Patch Tuesday.
fn deployed() -> DateTime<Utc> {
    at(2026, 12, 9, 0, 0)
}

fn technician_server(id: &str) -> Endpoint {
    let mut e = server(id);
    if let Profile::Server(s) = &mut e.profile {
        s.policy_group = ServerPolicyGroup::ManualPatchAndReboot;
    }
    e
}

/// The run of an endpoint whose tier deployed at `deployed()`: its commands planned for its
/// first window, as the reboot-scheduler plans them.
fn scheduled(e: &Endpoint, tier: &str) -> Run {
    let p = policy();
    let mut memo = Memo::default();
    let mut trace = Trace::new();
    let track = assign_cadence(e, &p, &mut memo, &mut trace);
    let window = track.daily(&p).first_starting_at_or_after(e.tz, deployed());
    let reboot = plan_reboot(e, window, &p, &mut memo, &mut trace);
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
        manual_approval_required: false,
        patches: Vec::new(),
        applicability: Applicability::Assumed,
        up_to_date: false,
        trace: Trace::new(),
    };
    let commands = rmm_commands(&plan, &[], &p, &mut trace);
    let doc: EndpointDoc = serde_json::from_value(serde_json::json!({
        "id": e.id.as_str(),
        "client": e.client.as_str(),
        "kind": if e.server().is_some() { "server" } else { "workstation" },
    }))
    .unwrap();
    Run {
        endpoint: e.id.clone(),
        client: e.client.clone(),
        tier: TierId::parse(tier).unwrap(),
        doc,
        planned_install: window,
        status: RunStatus::Scheduled,
        attempt: 0,
        commands_at: Some(deployed()),
        commands,
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

fn window(run: &Run) -> Window {
    install_window(run).unwrap()
}

fn awake() -> AgentState {
    AgentState {
        online: true,
        maintenance: false,
        last_contact: None,
        power: PowerState::Awake,
    }
}

fn kb(id: &str) -> PatchId {
    PatchId::parse(id).unwrap()
}

fn report(run: &Run, at: DateTime<Utc>, event: RmmEvent) -> RmmReport {
    RmmReport {
        endpoint: run.endpoint.clone(),
        at,
        event,
    }
}

fn healthy(e: &Endpoint) -> RmmEvent {
    RmmEvent::Checks {
        results: checks_for(e)
            .into_iter()
            .map(|check| CheckResult {
                check,
                passed: true,
            })
            .collect(),
    }
}

/// Advances with what the handler would read: the agent (when needed) and the reports.
fn step(
    run: &mut Run,
    e: &Endpoint,
    agent: AgentState,
    reports: &[RmmReport],
    now: DateTime<Utc>,
) -> Vec<Effect> {
    let needs = needs(run, now);
    let patches = [kb("KB5000001"), kb("KB5000002")];
    let obs = Observed {
        agent: needs.agent.then_some(&agent),
        reports: if needs.reports { reports } else { &[] },
        patches: &patches,
    };
    advance(run, e, &obs, now, &policy())
}

fn sends(effects: &[Effect]) -> Vec<&str> {
    effects
        .iter()
        .filter_map(|f| match f {
            Effect::Send { what, .. } => Some(what.as_str()),
            Effect::Fail(_) => None,
        })
        .collect()
}

fn failure(effects: &[Effect]) -> Option<&RunFailure> {
    effects.iter().find_map(|f| match f {
        Effect::Fail(f) => Some(f),
        Effect::Send { .. } => None,
    })
}

/// A run whose install went out at its window's opening.
fn sent(e: &Endpoint) -> Run {
    let mut run = scheduled(e, "workstations.production");
    let start = window(&run).start;
    let effects = step(&mut run, e, awake(), &[], start);
    assert!(failure(&effects).is_none(), "{effects:?}");
    run
}

/// A run that reported its install.
fn installed(e: &Endpoint) -> Run {
    let mut run = sent(e);
    let w = window(&run);
    let r = report(
        &run,
        w.start + Duration::minutes(30),
        RmmEvent::InstallSucceeded,
    );
    step(&mut run, e, awake(), &[r], w.start + Duration::hours(1));
    assert_eq!(run.status, RunStatus::Installed);
    run
}

// The install window's opening.

#[test]
fn before_the_window_nothing_happens_and_nothing_is_read() {
    let e = workstation("ws1");
    let mut run = scheduled(&e, "workstations.production");
    let before = window(&run).start - Duration::minutes(1);
    assert_eq!(needs(&run, before), Needs::default());
    let copy = run.clone();
    assert!(step(&mut run, &e, awake(), &[], before).is_empty());
    assert_eq!(run, copy);
    assert_eq!(next_due(&run, e.tz, &policy()), Some(window(&run).start));
}

#[test]
fn at_the_window_the_agent_is_read_and_the_install_goes_out_with_its_patches() {
    let e = workstation("ws1");
    let mut run = scheduled(&e, "workstations.production");
    let w = window(&run);
    assert_eq!(
        needs(&run, w.start),
        Needs {
            agent: true,
            reports: false
        }
    );
    let effects = step(&mut run, &e, awake(), &[], w.start);
    assert_eq!(sends(&effects), vec!["schedule_install", "schedule_reboot"]);
    let Effect::Send { command, .. } = &effects[0] else {
        panic!("{effects:?}")
    };
    assert_eq!(command.patches(), &[kb("KB5000001"), kb("KB5000002")]);
    assert_eq!(run.commands[0].patches(), command.patches());
    assert_eq!(run.install_sent_at, Some(w.start));
    assert_eq!(run.status, RunStatus::Scheduled);
    // The reports are read from the next tick on.
    assert_eq!(
        needs(&run, w.start + Duration::hours(1)),
        Needs {
            agent: false,
            reports: true
        }
    );
    assert_eq!(next_due(&run, e.tz, &policy()), Some(w.end + REPORT_GRACE));
}

#[test]
fn a_user_reboot_sends_neither_reminder_nor_forced_reboot_at_the_window() {
    let e = daytime("day1");
    let mut run = scheduled(&e, "workstations.production");
    let start = window(&run).start;
    let effects = step(&mut run, &e, awake(), &[], start);
    assert_eq!(sends(&effects), vec!["schedule_install"]);
}

#[test]
fn an_agent_in_maintenance_mode_is_sent_nothing_and_fails_the_install() {
    let e = workstation("ws1");
    let mut run = scheduled(&e, "workstations.production");
    let now = window(&run).start + Duration::minutes(10);
    let agent = AgentState {
        maintenance: true,
        ..awake()
    };
    let effects = step(&mut run, &e, agent, &[], now);
    assert!(sends(&effects).is_empty());
    let f = failure(&effects).unwrap();
    assert_eq!(f.stage, FailureStage::Install);
    assert_eq!(f.id, "ws1.install.0");
    assert_eq!(f.at, now);
    assert!(f.detail.contains("maintenance mode"), "{}", f.detail);
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.failures, vec!["ws1.install.0".to_owned()]);
    assert_eq!(run.skipped.len(), 1);
    assert_eq!(run.skipped[0].at, now);
    assert!(run.install_sent_at.is_none());
    assert_eq!(next_due(&run, e.tz, &policy()), None);
}

#[test]
fn a_daytime_workstation_offline_or_asleep_fails_the_posture_check() {
    let e = daytime("day1");
    for (agent, says) in [
        (
            AgentState {
                online: false,
                maintenance: false,
                last_contact: Some(at(2026, 12, 8, 22, 0)),
                power: PowerState::Awake,
            },
            "offline, Unknown, last contact 2026-12-08T22:00:00Z",
        ),
        (
            AgentState {
                power: PowerState::Sleeping,
                ..awake()
            },
            "online, Sleeping",
        ),
    ] {
        let mut run = scheduled(&e, "workstations.production");
        let now = window(&run).start;
        let effects = step(&mut run, &e, agent, &[], now);
        let f = failure(&effects).unwrap();
        assert_eq!(f.stage, FailureStage::Posture);
        assert!(f.detail.contains(says), "{}", f.detail);
        assert!(sends(&effects).is_empty());
        assert_eq!(run.skipped.len(), 1);
        assert_eq!(run.status, RunStatus::Failed);
    }
}

#[test]
fn a_regular_workstation_has_no_posture_requirement() {
    let e = workstation("ws1");
    let mut run = scheduled(&e, "workstations.production");
    let agent = AgentState {
        online: false,
        power: PowerState::Sleeping,
        ..awake()
    };
    let start = window(&run).start;
    let effects = step(&mut run, &e, agent, &[], start);
    assert!(failure(&effects).is_none());
    assert!(run.install_sent_at.is_some());
}

#[test]
fn a_window_that_closed_before_the_install_went_out_fails_it_without_reading_the_agent() {
    let e = workstation("ws1");
    let mut run = scheduled(&e, "workstations.production");
    let w = window(&run);
    let now = w.end + Duration::hours(2);
    assert!(!needs(&run, now).agent);
    let effects = advance(&mut run, &e, &Observed::default(), now, &policy());
    let f = failure(&effects).unwrap();
    assert_eq!(f.stage, FailureStage::Install);
    assert_eq!(f.at, w.end);
    assert!(
        f.detail.contains("closed before the install"),
        "{}",
        f.detail
    );
    assert!(run.skipped.is_empty());
}

#[test]
fn without_the_agent_state_the_install_does_not_go_out() {
    let e = workstation("ws1");
    let mut run = scheduled(&e, "workstations.production");
    let copy = run.clone();
    let effects = advance(
        &mut run,
        &e,
        &Observed::default(),
        window(&copy).start,
        &policy(),
    );
    assert!(effects.is_empty());
    assert_eq!(run, copy);
}

// The RMM's reports.

#[test]
fn an_install_reported_moves_the_run_to_installed() {
    let e = workstation("ws1");
    let run = installed(&e);
    assert_eq!(
        run.installed_at,
        Some(window(&run).start + Duration::minutes(30))
    );
    assert_eq!(phase(&run), Phase::Reported);
}

#[test]
fn a_failed_install_names_its_kbs() {
    let e = workstation("ws1");
    let mut run = sent(&e);
    let w = window(&run);
    let r = report(
        &run,
        w.start + Duration::minutes(20),
        RmmEvent::InstallFailed {
            detail: "0x80070643".into(),
            patches: vec![kb("KB5000002")],
        },
    );
    let effects = step(&mut run, &e, awake(), &[r], w.start + Duration::hours(1));
    let f = failure(&effects).unwrap();
    assert_eq!(f.detail, "install failed for KB5000002: 0x80070643");
    assert_eq!(f.patches, vec![kb("KB5000002")]);
    assert_eq!(f.at, w.start + Duration::minutes(20));
    assert_eq!(run.status, RunStatus::Failed);

    // The RMM's words already naming the KBs are kept as they are.
    let mut run = sent(&e);
    let r = report(
        &run,
        w.start,
        RmmEvent::InstallFailed {
            detail: "KB5000002 failed: 0x80070643".into(),
            patches: vec![kb("KB5000002")],
        },
    );
    let effects = step(&mut run, &e, awake(), &[r], w.start + Duration::hours(1));
    assert_eq!(
        failure(&effects).unwrap().detail,
        "install failed: KB5000002 failed: 0x80070643"
    );
}

#[test]
fn not_awake_fails_the_posture_of_a_daytime_workstation_and_the_install_of_others() {
    let e = daytime("day1");
    let mut run = sent(&e);
    let now = window(&run).start + Duration::hours(1);
    let asleep = report(
        &run,
        now,
        RmmEvent::NotAwake {
            power: PowerState::Hibernating,
        },
    );
    let effects = step(&mut run, &e, awake(), &[asleep], now);
    assert_eq!(failure(&effects).unwrap().stage, FailureStage::Posture);

    // Unconfirmed (unknown power) is not a failure.
    let mut run = sent(&e);
    let unknown = report(
        &run,
        now,
        RmmEvent::NotAwake {
            power: PowerState::Unknown,
        },
    );
    assert!(step(&mut run, &e, awake(), &[unknown], now).is_empty());
    assert_eq!(run.status, RunStatus::Scheduled);

    let e = workstation("ws1");
    let mut run = sent(&e);
    let now = window(&run).start + Duration::hours(1);
    let asleep = report(
        &run,
        now,
        RmmEvent::NotAwake {
            power: PowerState::Unknown,
        },
    );
    let effects = step(&mut run, &e, awake(), &[asleep], now);
    let f = failure(&effects).unwrap();
    assert_eq!(f.stage, FailureStage::Install);
    assert!(f.detail.contains("not reachable"), "{}", f.detail);
}

#[test]
fn reboot_then_healthy_checks_validate_the_run_and_reports_stop_at_the_first_failure() {
    let e = workstation("ws1");
    let mut run = installed(&e);
    let w = window(&run);
    let reports = [
        report(&run, w.end, RmmEvent::RebootConfirmed),
        report(&run, w.end + Duration::minutes(10), healthy(&e)),
    ];
    let now = w.end + Duration::hours(1);
    assert!(step(&mut run, &e, awake(), &reports, now).is_empty());
    assert_eq!(run.status, RunStatus::Validated);
    assert_eq!(run.reboot_confirmed_at, Some(w.end));
    assert_eq!(run.validated_at, Some(w.end + Duration::minutes(10)));
    assert_eq!(run.checks.len(), checks_for(&e).len());
    assert_eq!(phase(&run), Phase::Validated);
    assert_eq!(next_due(&run, e.tz, &policy()), None);
    assert_eq!(needs(&run, now), Needs::default());

    // Unhealthy: failed, and what follows is not applied.
    let mut run = installed(&e);
    let unhealthy = RmmEvent::Checks {
        results: vec![CheckResult {
            check: Check::AgentHealthy,
            passed: false,
        }],
    };
    let reports = [
        report(&run, w.end, RmmEvent::RebootConfirmed),
        report(&run, w.end + Duration::minutes(10), unhealthy),
        report(&run, w.end + Duration::minutes(20), healthy(&e)),
    ];
    let effects = step(&mut run, &e, awake(), &reports, now);
    let f = failure(&effects).unwrap();
    assert_eq!(f.stage, FailureStage::Validation);
    assert_eq!(
        f.detail,
        r#"post-reboot checks failed: ["agent_healthy"], missing: ["baseline_apps", "vpn"]"#
    );
    assert_eq!(effects.len(), 1);
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.validated_at.is_none());
    assert_eq!(phase(&run), Phase::Failed);
}

#[test]
fn reports_out_of_order_for_the_status_are_ignored() {
    let e = workstation("ws1");
    let mut run = sent(&e);
    let w = window(&run);
    // Checks before the reboot was confirmed, a reboot before the install: nothing.
    let reports = [
        report(&run, w.start, healthy(&e)),
        report(&run, w.start, RmmEvent::RebootConfirmed),
    ];
    assert!(step(
        &mut run,
        &e,
        awake(),
        &reports,
        w.start + Duration::hours(1)
    )
    .is_empty());
    assert_eq!(run.status, RunStatus::Scheduled);
}

// Deadlines.

#[test]
fn no_install_report_fails_at_the_window_end_plus_the_grace() {
    let e = workstation("ws1");
    let mut run = sent(&e);
    let deadline = window(&run).end + REPORT_GRACE;
    assert!(step(&mut run, &e, awake(), &[], deadline - Duration::seconds(1)).is_empty());
    let effects = step(&mut run, &e, awake(), &[], deadline);
    let f = failure(&effects).unwrap();
    assert_eq!(f.stage, FailureStage::Install);
    assert_eq!(f.at, deadline);
    assert_eq!(f.detail, "no install report from the RMM after the window");
}

#[test]
fn no_reboot_fails_after_its_window_plus_the_grace() {
    let e = workstation("ws1");
    let mut run = installed(&e);
    let deadline = window(&run).end + REPORT_GRACE;
    assert_eq!(next_due(&run, e.tz, &policy()), Some(deadline));
    assert!(step(&mut run, &e, awake(), &[], deadline - Duration::minutes(1)).is_empty());
    let effects = step(&mut run, &e, awake(), &[], deadline + Duration::hours(3));
    let f = failure(&effects).unwrap();
    assert_eq!(f.stage, FailureStage::Reboot);
    assert_eq!(f.at, deadline);
    assert_eq!(f.detail, "the reboot was not confirmed");
}

#[test]
fn no_checks_fail_after_the_reboot_plus_the_grace() {
    let e = workstation("ws1");
    let mut run = installed(&e);
    let rebooted = window(&run).end;
    let r = report(&run, rebooted, RmmEvent::RebootConfirmed);
    step(&mut run, &e, awake(), &[r], rebooted + Duration::minutes(5));
    assert_eq!(run.status, RunStatus::Rebooted);
    assert_eq!(phase(&run), Phase::Reported);
    let deadline = rebooted + REPORT_GRACE;
    assert_eq!(next_due(&run, e.tz, &policy()), Some(deadline));
    let effects = step(&mut run, &e, awake(), &[], deadline);
    let f = failure(&effects).unwrap();
    assert_eq!(f.stage, FailureStage::Validation);
    assert_eq!(f.at, deadline);
    assert_eq!(f.detail, "no post-reboot checks reported");
}

#[test]
fn a_technician_has_days_for_the_install_and_the_reboot() {
    let e = technician_server("srv1");
    let mut run = scheduled(&e, "servers.acme.production");
    let w = window(&run);
    let effects = step(&mut run, &e, awake(), &[], w.start);
    assert_eq!(
        sends(&effects),
        vec!["technician_install", "technician_reboot"]
    );
    let install_deadline = w.end + TECHNICIAN_GRACE;
    assert_eq!(next_due(&run, e.tz, &policy()), Some(install_deadline));
    assert!(step(&mut run, &e, awake(), &[], w.end + REPORT_GRACE).is_empty());
    let effects = step(&mut run, &e, awake(), &[], install_deadline);
    assert_eq!(failure(&effects).unwrap().at, install_deadline);
    assert_eq!(failure(&effects).unwrap().id, "srv1.install.0");

    // The reboot: after the install window, plus the grace.
    let e = server("srv2");
    let mut run = scheduled(&e, "servers.acme.production");
    let w = window(&run);
    step(&mut run, &e, awake(), &[], w.start);
    let r = report(&run, w.start, RmmEvent::InstallSucceeded);
    step(&mut run, &e, awake(), &[r], w.start + Duration::hours(1));
    assert_eq!(run.status, RunStatus::Installed);
    let reboot_deadline = w.end + TECHNICIAN_GRACE;
    assert_eq!(next_due(&run, e.tz, &policy()), Some(reboot_deadline));
    assert!(step(
        &mut run,
        &e,
        awake(),
        &[],
        reboot_deadline - Duration::hours(1)
    )
    .is_empty());
    let effects = step(&mut run, &e, awake(), &[], reboot_deadline);
    let f = failure(&effects).unwrap();
    assert_eq!((f.stage, f.at), (FailureStage::Reboot, reboot_deadline));
}

// Reminders and the forced reboot.

fn user_commands(run: &Run) -> (DateTime<Utc>, Window) {
    match user_reboot(run) {
        Some((RmmCommand::ReminderPopup { first, .. }, forced)) => (first, forced),
        other => panic!("not a user reboot: {other:?}"),
    }
}

#[test]
fn one_reminder_a_day_the_latest_due_never_a_backlog() {
    let e = daytime("day1");
    let mut run = installed(&e);
    let (first, forced) = user_commands(&run);
    let p = policy();
    assert!(first < forced.start);
    assert_eq!(next_due(&run, e.tz, &p), Some(first));
    // Not yet due.
    assert!(step(&mut run, &e, awake(), &[], first - Duration::minutes(1)).is_empty());
    // Due: shown once.
    let effects = step(&mut run, &e, awake(), &[], first);
    let what = format!("reminder/{}", first.format("%Y%m%dT%H%M"));
    assert_eq!(sends(&effects), vec![what.as_str()]);
    let Effect::Send { command, .. } = &effects[0] else {
        panic!()
    };
    assert!(matches!(command, RmmCommand::ReminderPopup { first: f, .. } if *f == first));
    assert!(step(&mut run, &e, awake(), &[], first + Duration::hours(3)).is_empty());
    let second = next_reminder(e.tz, first, &p);
    assert_eq!(next_due(&run, e.tz, &p), Some(second));
    // Two days missed: only the latest one is shown.
    let third = next_reminder(e.tz, second, &p);
    let effects = step(&mut run, &e, awake(), &[], third + Duration::hours(1));
    let what = format!("reminder/{}", third.format("%Y%m%dT%H%M"));
    assert_eq!(sends(&effects), vec![what.as_str()]);
    assert_eq!(
        run.reminders,
        vec![Reminder { at: first }, Reminder { at: third }]
    );
}

#[test]
fn the_forced_reboot_goes_out_once_and_no_reminder_from_its_start() {
    let e = daytime("day1");
    let mut run = installed(&e);
    let (_, forced) = user_commands(&run);
    let p = policy();
    let effects = step(&mut run, &e, awake(), &[], forced.start);
    assert_eq!(sends(&effects), vec!["forced_reboot"]);
    assert!(run.forced_reboot);
    assert!(run.reminders.is_empty());
    assert!(step(
        &mut run,
        &e,
        awake(),
        &[],
        forced.start + Duration::hours(1)
    )
    .is_empty());
    // Only the reboot's deadline is left.
    assert_eq!(next_due(&run, e.tz, &p), Some(forced.end + REPORT_GRACE));
    // No reminder after the forced start, up to the reboot's deadline; then only the failure.
    let deadline = forced.end + REPORT_GRACE;
    assert!(step(&mut run, &e, awake(), &[], deadline - Duration::minutes(1)).is_empty());
    let later = next_reminder(e.tz, deadline, &p);
    let effects = step(&mut run, &e, awake(), &[], later);
    assert!(sends(&effects).is_empty());
    assert_eq!(failure(&effects).unwrap().stage, FailureStage::Reboot);
}

#[test]
fn the_reboot_confirmed_stops_the_reminders() {
    let e = daytime("day1");
    let mut run = installed(&e);
    let (first, _) = user_commands(&run);
    let r = report(&run, first - Duration::hours(1), RmmEvent::RebootConfirmed);
    assert!(step(&mut run, &e, awake(), &[r], first).is_empty());
    assert_eq!(run.status, RunStatus::Rebooted);
    assert!(run.reminders.is_empty());
}

#[test]
fn a_run_not_advanced_since_its_install_gets_its_forced_reboot_then_fails_the_reboot() {
    let e = daytime("day1");
    let mut run = installed(&e);
    let (_, forced) = user_commands(&run);
    let deadline = forced.end + REPORT_GRACE;
    // Never advanced since the install: the forced reboot goes out, then the run fails.
    let effects = step(&mut run, &e, awake(), &[], deadline);
    assert_eq!(sends(&effects), vec!["forced_reboot"]);
    assert!(matches!(effects.last(), Some(Effect::Fail(f)) if f.stage == FailureStage::Reboot));
}

// Retries, batches, phases.

#[test]
fn a_retry_and_a_later_batch_have_their_own_failure_ids() {
    let e = workstation("ws1");
    let mut run = scheduled(&e, "workstations.production.b3");
    run.attempt = 2;
    let now = window(&run).end;
    let effects = advance(&mut run, &e, &Observed::default(), now, &policy());
    assert_eq!(failure(&effects).unwrap().id, "ws1.b3.install.2");
    assert_eq!(run.failures, vec!["ws1.b3.install.2".to_owned()]);

    let mut run = scheduled(&e, "workstations.production");
    run.attempt = 1;
    run.failures = vec!["ws1.install.0".into()];
    let effects = advance(&mut run, &e, &Observed::default(), now, &policy());
    assert_eq!(failure(&effects).unwrap().id, "ws1.install.1");
    assert_eq!(
        run.failures,
        vec!["ws1.install.0".to_owned(), "ws1.install.1".to_owned()]
    );
}

#[test]
fn tier_batches_parse_from_the_suffix() {
    let t = |s: &str| TierId::parse(s).unwrap();
    assert_eq!(t("workstations.production").batch(), 1);
    assert_eq!(t("workstations.production.b2").batch(), 2);
    assert_eq!(t("servers.acme.production.b12").batch(), 12);
    assert_eq!(t("workstations.pilot.b1").batch(), 1);
    assert_eq!(t("servers.b2.production").batch(), 1);
}

#[test]
fn runs_waiting_for_a_message_are_never_due_and_never_move() {
    let e = workstation("ws1");
    let base = scheduled(&e, "workstations.production");
    let mut planned = base.clone();
    planned.status = RunStatus::Planned;
    planned.commands_at = None;
    planned.commands.clear();
    let mut awaiting = planned.clone();
    awaiting.status = RunStatus::AwaitingApproval;
    let mut up_to_date = planned.clone();
    up_to_date.status = RunStatus::Validated;
    up_to_date.up_to_date = true;
    let mut failed = base.clone();
    failed.status = RunStatus::Failed;
    for (run, phase_) in [
        (planned, Phase::Pending),
        (awaiting, Phase::Pending),
        (up_to_date, Phase::Validated),
        (failed, Phase::Failed),
    ] {
        assert_eq!(phase(&run), phase_, "{:?}", run.status);
        assert_eq!(next_due(&run, e.tz, &policy()), None, "{:?}", run.status);
        let mut moved = run.clone();
        let far = window(&base).end + Duration::days(30);
        assert_eq!(needs(&moved, far), Needs::default());
        assert!(advance(&mut moved, &e, &Observed::default(), far, &policy()).is_empty());
        assert_eq!(moved, run);
    }
    assert_eq!(phase(&base), Phase::Pending);
    assert_eq!(Phase::Reported.as_str(), "reported");
}

#[test]
fn the_stored_json_is_unchanged() {
    let e = daytime("day1");
    let run = installed(&e);
    let json = serde_json::to_value(&run).unwrap();
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    let mut expected = vec![
        "endpoint",
        "client",
        "tier",
        "doc",
        "planned_install",
        "status",
        "attempt",
        "commands_at",
        "commands",
        "install_sent_at",
        "installed_at",
        "reminders",
        "forced_reboot",
        "checks",
        "failures",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(json["status"], "installed");
    let back: Run = serde_json::from_value(json).unwrap();
    assert_eq!(back, run);
}

// The progress guarantee: after `advance` at `now` the run is not due at or before `now`.

fn endpoint_of(kind: u8) -> Endpoint {
    match kind % 4 {
        0 => workstation("ws1"),
        1 => daytime("day1"),
        2 => server("srv1"),
        _ => technician_server("srv2"),
    }
}

fn event_of(e: &Endpoint, n: u8) -> RmmEvent {
    match n % 6 {
        0 => RmmEvent::InstallSucceeded,
        1 => RmmEvent::InstallFailed {
            detail: "0x1".into(),
            patches: vec![kb("KB5000001")],
        },
        2 => RmmEvent::NotAwake {
            power: PowerState::Unknown,
        },
        3 => RmmEvent::RebootConfirmed,
        4 => healthy(e),
        _ => RmmEvent::NotAwake {
            power: PowerState::Sleeping,
        },
    }
}

proptest! {
    #[test]
    fn after_advance_the_run_is_due_only_after_now(
        kind in 0u8..4,
        agent_kind in 0u8..4,
        // Ticks minutes to days apart, each with a chance of reports from the last two hours.
        ticks in prop::collection::vec(
            (
                prop_oneof![10i64..90, 60i64..4320],
                prop::collection::vec((0u8..6, 0i64..120), 0..3),
            ),
            1..40,
        ),
    ) {
        let e = endpoint_of(kind);
        let p = policy();
        let mut run = scheduled(&e, "workstations.production");
        let agent = match agent_kind {
            0 => AgentState { maintenance: true, ..awake() },
            1 => AgentState { online: false, power: PowerState::Sleeping, ..awake() },
            _ => awake(),
        };
        let mut now = deployed();
        for (gap, events) in ticks {
            now += Duration::minutes(gap);
            let reports: Vec<RmmReport> = events
                .iter()
                .map(|(n, ago)| report(&run, now - Duration::minutes(*ago), event_of(&e, *n)))
                .collect();
            let effects = step(&mut run, &e, agent, &reports, now);
            // Sends come before the failure, and a failure is the last effect.
            if let Some(i) = effects.iter().position(|f| matches!(f, Effect::Fail(_))) {
                prop_assert_eq!(i, effects.len() - 1);
                prop_assert_eq!(run.status, RunStatus::Failed);
            }
            if let Some(due) = next_due(&run, e.tz, &p) {
                prop_assert!(due > now, "due {} at {} ({:?})", due, now, run.status);
            }
            // A second advance at the same instant with nothing new does nothing.
            let copy = run.clone();
            let again = step(&mut run, &e, agent, &[], now);
            prop_assert!(again.is_empty(), "{:?}", again);
            prop_assert_eq!(&run, &copy);
        }
    }
}

// The span in which a run's next report can come (its client's changes are read then).

#[test]
fn a_run_not_sent_or_done_waits_for_no_report() {
    let e = server("srv1");
    let run = scheduled(&e, "servers.acme.production");
    assert_eq!(report_span(&run, e.tz, &policy(), deployed()), None);
    let mut done = installed(&e);
    done.status = RunStatus::Validated;
    assert_eq!(report_span(&done, e.tz, &policy(), deployed()), None);
    let mut failed = installed(&e);
    failed.status = RunStatus::Failed;
    assert_eq!(report_span(&failed, e.tz, &policy(), deployed()), None);
}

#[test]
fn a_sent_install_is_listened_for_to_its_deadline_and_an_automatic_reboot_in_its_window() {
    let e = workstation("ws1");
    let run = sent(&e);
    let w = window(&run);
    let now = w.start + Duration::minutes(5);
    assert_eq!(
        report_span(&run, e.tz, &policy(), now),
        Some((now, w.end + REPORT_GRACE))
    );
    let run = installed(&e);
    let Some(RmmCommand::ScheduleReboot { window: reboot, .. }) = run
        .commands
        .iter()
        .find(|c| matches!(c, RmmCommand::ScheduleReboot { .. }))
        .cloned()
    else {
        panic!("not an automatic reboot: {:?}", run.commands)
    };
    // Before the reboot window: from its start, not from now.
    let before = reboot.start - Duration::hours(2);
    assert_eq!(
        report_span(&run, e.tz, &policy(), before),
        Some((reboot.start, reboot.end + REPORT_GRACE))
    );
    // Rebooted: to the checks' deadline.
    let mut rebooted = run.clone();
    let at = reboot.start + Duration::minutes(40);
    step(
        &mut rebooted,
        &e,
        awake(),
        &[report(&run, at, RmmEvent::RebootConfirmed)],
        at + Duration::minutes(20),
    );
    assert_eq!(rebooted.status, RunStatus::Rebooted);
    let now = at + Duration::minutes(20);
    assert_eq!(
        report_span(&rebooted, e.tz, &policy(), now),
        Some((now, at + REPORT_GRACE))
    );
    // A technician's reboot: from the install window's end, for the technician's days.
    let e = server("srv1");
    let run = installed(&e);
    let w = window(&run);
    let now = run.installed_at.unwrap();
    assert_eq!(
        report_span(&run, e.tz, &policy(), now),
        Some((w.end, w.end + TECHNICIAN_GRACE))
    );
}

#[test]
fn a_user_reboot_is_listened_for_the_day_of_each_reminder_then_in_the_forced_window() {
    let e = daytime("day1");
    let mut run = installed(&e);
    let (first, forced) = user_commands(&run);
    let p = policy();
    // Installed, before the first reminder: its working day, not every hour until then.
    let installed_at = run.installed_at.unwrap();
    assert_eq!(
        report_span(&run, e.tz, &p, installed_at),
        Some((first, first + USER_REBOOT_LISTEN))
    );
    // The first reminder shown: the rest of its day.
    step(&mut run, &e, awake(), &[], first);
    let later = first + Duration::hours(3);
    assert_eq!(
        report_span(&run, e.tz, &p, later),
        Some((later, first + USER_REBOOT_LISTEN))
    );
    // After its day: the next reminder's.
    let second = next_reminder(e.tz, first, &p);
    assert!(second < forced.start);
    assert_eq!(
        report_span(&run, e.tz, &p, first + USER_REBOOT_LISTEN),
        Some((second, second + USER_REBOOT_LISTEN))
    );
    // The forced reboot sent: its window and grace.
    step(&mut run, &e, awake(), &[], forced.start);
    assert!(run.forced_reboot);
    assert_eq!(
        report_span(&run, e.tz, &p, forced.start),
        Some((forced.start, forced.end + REPORT_GRACE))
    );
}

proptest! {
    /// Whatever the hour, a waiting run's span never starts before now, nor ends before it starts.
    #[test]
    fn a_span_is_from_now_on(hours in 0i64..400) {
        let e = daytime("day1");
        let run = installed(&e);
        let now = run.installed_at.unwrap() + Duration::hours(hours);
        if let Some((from, to)) = report_span(&run, e.tz, &policy(), now) {
            prop_assert!(from >= now);
            prop_assert!(to >= from);
        }
    }
}
