//! Phase 2 cadence and maintenance windows, and the reboot behaviour of each track: automatic in
//! the window, technician-controlled, or the daytime user reboot with daily reminders, a forced
//! reboot after the grace period, and the awake-posture requirement.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::model::{Endpoint, Profile, ServerPolicyGroup, Track};
use crate::policy::Policy;
use crate::reason as r;
use crate::rules::failure::{critical, critical_facts, is_critical};
use crate::schedule::{resolve_local, ClockTime, DailyWindow, Window};
use crate::trace::{FactCache, Node, Trace, TraceEntry};

/// Which recurring window an endpoint patches in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// Servers: 21:20-03:20 local.
    Server,
    /// Regular workstations: 02:00-04:00 local.
    Regular,
    /// Daytime workstations: 09:00-17:00 local, Monday to Friday.
    Daytime,
}

impl WindowKind {
    /// The kind for an endpoint, which is also its track name in the plan.
    pub fn of(endpoint: &Endpoint) -> Self {
        match &endpoint.profile {
            Profile::Server(_) => WindowKind::Server,
            Profile::Workstation(w) => match w.track {
                Track::Regular => WindowKind::Regular,
                Track::Daytime => WindowKind::Daytime,
            },
        }
    }

    /// `server`, `regular` or `daytime`.
    pub fn as_str(self) -> &'static str {
        match self {
            WindowKind::Server => "server",
            WindowKind::Regular => "regular",
            WindowKind::Daytime => "daytime",
        }
    }

    /// The recurring window of this kind under a policy.
    pub fn daily(self, policy: &Policy) -> DailyWindow {
        match self {
            WindowKind::Server => policy.server.window,
            WindowKind::Regular => policy.workstation.regular_window,
            WindowKind::Daytime => policy.workstation.daytime_window,
        }
    }
}

/// Memoized work for planning many endpoints: windows are a pure function of (zone, window kind,
/// not-before instant) and facts of their key, and fleets share few zones and gates, so most
/// lookups hit.
#[derive(Debug, Default)]
pub struct Memo {
    /// Rendered facts.
    pub facts: FactCache,
    windows: HashMap<(Tz, WindowKind, i64), Window>,
}

impl Memo {
    /// The first window of `kind` in `tz` that starts at or after `at`.
    pub fn first_window(
        &mut self,
        policy: &Policy,
        tz: Tz,
        kind: WindowKind,
        at: DateTime<Utc>,
    ) -> Window {
        // Keyed by whole seconds: windows are minute-aligned, so a sub-second difference in `at`
        // could only matter exactly at a window start; keep it exact by skipping the cache then.
        if at.timestamp_subsec_nanos() != 0 {
            return kind.daily(policy).first_starting_at_or_after(tz, at);
        }
        *self
            .windows
            .entry((tz, kind, at.timestamp()))
            .or_insert_with(|| kind.daily(policy).first_starting_at_or_after(tz, at))
    }
}

/// Who runs the install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallMode {
    /// The RMM installs in the window.
    Automatic,
    /// A technician installs through the RMM.
    Technician,
}

/// Who reboots, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RebootPlan {
    /// The RMM reboots in this window.
    Automatic(Window),
    /// A technician schedules and confirms the reboot.
    Technician,
    /// The user reboots; reminded daily at `reminder_local`, forced in `forced`.
    User {
        /// Local reminder time.
        reminder_local: ClockTime,
        /// The forced-reboot window.
        forced: Window,
    },
}

impl RebootPlan {
    /// `automatic`, `technician` or `user`.
    pub fn mode(&self) -> &'static str {
        match self {
            RebootPlan::Automatic(_) => "automatic",
            RebootPlan::Technician => "technician",
            RebootPlan::User { .. } => "user",
        }
    }
}

/// Assigns the endpoint's cadence (Phase 2): its window kind, traced with the window in its zone,
/// and for servers whether the critical-server manual approval applies.
pub fn assign_cadence(
    endpoint: &Endpoint,
    policy: &Policy,
    memo: &mut Memo,
    trace: &mut Trace,
) -> WindowKind {
    let kind = WindowKind::of(endpoint);
    let reason = match kind {
        WindowKind::Server => r::SERVER_WINDOW,
        WindowKind::Regular => r::WORKSTATION_REGULAR_WINDOW,
        WindowKind::Daytime => r::WORKSTATION_DAYTIME_WINDOW,
    };
    let text = memo.facts.get("cadence", endpoint.tz, kind as i64, 0, || {
        format!("{} {}", kind.daily(policy), endpoint.tz.name())
    });
    trace.push(TraceEntry::new(Node::Cadence, kind.as_str(), reason).with_facts(text));
    if kind == WindowKind::Server {
        if let (true, Some(c), Some(facts)) = (
            manual_approval_required(endpoint),
            critical(endpoint),
            critical_facts(endpoint),
        ) {
            trace.push(TraceEntry::new(Node::CriticalServer, "yes", c.reason()).with_facts(facts));
        } else {
            trace.push(TraceEntry::new(
                Node::CriticalServer,
                "no",
                r::NOT_CRITICAL_SERVER,
            ));
        }
    }
    kind
}

/// Whether every install on this endpoint needs an engineer's approval first: a critical server
/// (P1 by role or `criticality`, or flagged `critical`; see [`is_critical`]).
pub fn manual_approval_required(endpoint: &Endpoint) -> bool {
    endpoint.server().is_some() && is_critical(endpoint)
}

/// Who installs: a technician for Manually Patch and Reboot servers, the RMM otherwise.
pub fn install_mode(endpoint: &Endpoint) -> InstallMode {
    match endpoint.server() {
        Some(s) if s.policy_group == ServerPolicyGroup::ManualPatchAndReboot => {
            InstallMode::Technician
        }
        _ => InstallMode::Automatic,
    }
}

/// Decides the reboot for an endpoint whose install window is `install`.
pub fn plan_reboot(
    endpoint: &Endpoint,
    install: Window,
    policy: &Policy,
    memo: &mut Memo,
    trace: &mut Trace,
) -> RebootPlan {
    match &endpoint.profile {
        Profile::Server(s) => {
            if install_mode(endpoint) == InstallMode::Technician {
                trace.push(TraceEntry::new(
                    Node::UnattendedReboot,
                    "no",
                    r::MANUAL_INSTALL_POLICY,
                ));
                return RebootPlan::Technician;
            }
            let auto_group = s.policy_group == ServerPolicyGroup::AutoInstallAutoReboot;
            if auto_group && s.unattended_reboot_approved {
                trace.push(TraceEntry::new(
                    Node::UnattendedReboot,
                    "yes",
                    r::UNATTENDED_REBOOT_APPROVED,
                ));
                RebootPlan::Automatic(install)
            } else {
                let reason = if auto_group {
                    r::UNATTENDED_REBOOT_NOT_APPROVED
                } else {
                    r::POLICY_MANUAL_REBOOT
                };
                trace.push(TraceEntry::new(Node::UnattendedReboot, "no", reason));
                RebootPlan::Technician
            }
        }
        Profile::Workstation(w) => match w.track {
            Track::Regular => {
                trace.push(TraceEntry::new(
                    Node::Daytime,
                    "no",
                    r::OVERNIGHT_AUTO_REBOOT,
                ));
                RebootPlan::Automatic(install)
            }
            Track::Daytime => {
                let not_before = install.end + policy.workstation.force_reboot_after;
                let forced =
                    memo.first_window(policy, endpoint.tz, WindowKind::Regular, not_before);
                let tz = endpoint.tz;
                let text = memo
                    .facts
                    .get("forced", tz, forced.start.timestamp(), 0, || {
                        format!(
                            "reminder {} daily; forced reboot from {}",
                            policy.workstation.reminder_time,
                            forced.start.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z")
                        )
                    });
                trace.push(
                    TraceEntry::new(Node::Daytime, "yes", r::DAYTIME_USER_REBOOT).with_facts(text),
                );
                trace.push(TraceEntry::new(
                    Node::DaytimePosture,
                    "required",
                    r::POSTURE_REQUIRED,
                ));
                RebootPlan::User {
                    reminder_local: policy.workstation.reminder_time,
                    forced,
                }
            }
        },
    }
}

/// The forced-reboot window of a daytime workstation: the first overnight window that starts at
/// least the grace period (72 hours) after its install window ended.
pub fn forced_reboot_window(tz: Tz, install_end: DateTime<Utc>, policy: &Policy) -> Window {
    policy
        .workstation
        .regular_window
        .first_starting_at_or_after(tz, install_end + policy.workstation.force_reboot_after)
}

/// The next daily reminder strictly after `after`: the reminder time on the endpoint's local
/// calendar (resolved like any local time when it falls in a transition).
pub fn next_reminder(tz: Tz, after: DateTime<Utc>, policy: &Policy) -> DateTime<Utc> {
    let time = policy.workstation.reminder_time.time();
    let mut date = after
        .with_timezone(&tz)
        .date_naive()
        .pred_opt()
        .unwrap_or(after.date_naive());
    loop {
        let at = resolve_local(tz, date.and_time(time));
        if at > after {
            return at;
        }
        match date.succ_opt() {
            Some(d) => date = d,
            None => return at,
        }
    }
}

/// What the RMM reports of a workstation's power state during its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    /// Awake and reachable.
    Awake,
    /// Asleep (S3).
    Sleeping,
    /// Hibernating (S4).
    Hibernating,
    /// The RMM could not tell.
    Unknown,
}

/// The daytime posture check: a sleeping or hibernating workstation is not patched in the window
/// and is reported; an unknown state is reported but the install is attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Posture {
    /// Patch it.
    Ready,
    /// Do not patch it now; report the posture violation.
    NotReady,
    /// Patch it, but report that the posture was not confirmed.
    Unconfirmed,
}

/// Checks the daytime posture requirement.
pub fn check_posture(state: PowerState, trace: &mut Trace) -> Posture {
    let (posture, outcome, reason) = match state {
        PowerState::Awake => (Posture::Ready, "awake", r::POSTURE_AWAKE),
        PowerState::Sleeping | PowerState::Hibernating => {
            (Posture::NotReady, "asleep", r::POSTURE_ASLEEP)
        }
        PowerState::Unknown => (Posture::Unconfirmed, "unknown", r::POSTURE_UNKNOWN),
    };
    trace.push(TraceEntry::new(Node::DaytimePosture, outcome, reason));
    posture
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Criticality, CriticalitySource, ServerProfile};
    use crate::testing::{daytime, server, with_tz, workstation};
    use chrono::TimeZone;
    use chrono_tz::America::Chicago;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn srv(group: ServerPolicyGroup, approved: bool) -> Endpoint {
        let mut e = server("s");
        e.profile = Profile::Server(ServerProfile {
            policy_group: group,
            role: None,
            criticality: Criticality::P2,
            criticality_source: CriticalitySource::Default,
            unattended_reboot_approved: approved,
        });
        e
    }

    fn window() -> Window {
        Window {
            start: utc(2026, 12, 9, 3, 20),
            end: utc(2026, 12, 9, 9, 20),
        }
    }

    #[test]
    fn a_p1_or_flagged_server_needs_manual_approval_and_the_trace_says_why() {
        let p = Policy::default();
        let mut dc = srv(ServerPolicyGroup::AutoInstallAutoReboot, true);
        if let Profile::Server(s) = &mut dc.profile {
            s.role = Some(crate::model::ServerRole::DomainController);
            s.criticality = Criticality::P1;
            s.criticality_source = CriticalitySource::Role;
        }
        assert!(manual_approval_required(&dc));
        let mut t = Trace::new();
        assign_cadence(&dc, &p, &mut Memo::default(), &mut t);
        let step = t.find(Node::CriticalServer).unwrap();
        assert_eq!(
            (step.outcome, step.reason),
            ("yes", r::CRITICAL_SERVER_BY_CRITICALITY)
        );
        assert_eq!(step.facts.as_deref(), Some("P1 by role domain_controller"));

        let mut flagged = srv(ServerPolicyGroup::AutoInstallManualReboot, false);
        flagged.critical = true;
        let mut t = Trace::new();
        assign_cadence(&flagged, &p, &mut Memo::default(), &mut t);
        let step = t.find(Node::CriticalServer).unwrap();
        assert_eq!(step.reason, r::CRITICAL_SERVER_MANUAL_APPROVAL);

        let plain = srv(ServerPolicyGroup::AutoInstallManualReboot, false);
        assert!(!manual_approval_required(&plain));
        let mut t = Trace::new();
        assign_cadence(&plain, &p, &mut Memo::default(), &mut t);
        assert_eq!(
            t.find(Node::CriticalServer).unwrap().reason,
            r::NOT_CRITICAL_SERVER
        );
    }

    #[test]
    fn only_an_approved_auto_reboot_server_reboots_automatically_in_its_window() {
        let p = Policy::default();
        let mut t = Trace::new();
        assert_eq!(
            plan_reboot(
                &srv(ServerPolicyGroup::AutoInstallAutoReboot, true),
                window(),
                &p,
                &mut Memo::default(),
                &mut t
            ),
            RebootPlan::Automatic(window())
        );
        for (group, approved) in [
            (ServerPolicyGroup::AutoInstallAutoReboot, false),
            (ServerPolicyGroup::AutoInstallManualReboot, true),
            (ServerPolicyGroup::ManualPatchAndReboot, true),
        ] {
            assert_eq!(
                plan_reboot(
                    &srv(group, approved),
                    window(),
                    &p,
                    &mut Memo::default(),
                    &mut t
                ),
                RebootPlan::Technician,
                "{group:?}"
            );
        }
    }

    #[test]
    fn a_manual_patch_and_reboot_server_is_installed_by_a_technician() {
        assert_eq!(
            install_mode(&srv(ServerPolicyGroup::ManualPatchAndReboot, false)),
            InstallMode::Technician
        );
        assert_eq!(
            install_mode(&srv(ServerPolicyGroup::AutoInstallManualReboot, false)),
            InstallMode::Automatic
        );
        assert_eq!(install_mode(&workstation("w")), InstallMode::Automatic);
    }

    #[test]
    fn a_critical_server_needs_manual_approval_but_a_critical_workstation_flag_is_ignored() {
        let mut s = server("s");
        s.critical = true;
        let mut t = Trace::new();
        assert_eq!(
            assign_cadence(&s, &Policy::default(), &mut Memo::default(), &mut t),
            WindowKind::Server
        );
        assert_eq!(t.find(Node::CriticalServer).unwrap().outcome, "yes");
        let mut w = workstation("w");
        w.critical = true;
        assert!(!manual_approval_required(&w));
    }

    #[test]
    fn a_regular_workstation_reboots_automatically_in_its_install_window() {
        let mut t = Trace::new();
        let plan = plan_reboot(
            &workstation("w"),
            window(),
            &Policy::default(),
            &mut Memo::default(),
            &mut t,
        );
        assert_eq!(plan, RebootPlan::Automatic(window()));
        assert_eq!(t.find(Node::Daytime).unwrap().outcome, "no");
    }

    #[test]
    fn a_daytime_workstation_is_forced_at_the_first_overnight_window_three_days_after_install() {
        // Install 09:00-17:00 CST Wed 2026-12-09; +72h = Sat 17:00; next 02:00 is Sun 13th.
        let e = with_tz(daytime("fd"), Chicago);
        let install = Window {
            start: utc(2026, 12, 9, 15, 0),
            end: utc(2026, 12, 9, 23, 0),
        };
        let mut t = Trace::new();
        match plan_reboot(
            &e,
            install,
            &Policy::default(),
            &mut Memo::default(),
            &mut t,
        ) {
            RebootPlan::User {
                reminder_local,
                forced,
            } => {
                assert_eq!(reminder_local.to_string(), "10:00");
                assert_eq!(
                    forced,
                    Window {
                        start: utc(2026, 12, 13, 8, 0),
                        end: utc(2026, 12, 13, 10, 0)
                    }
                );
            }
            other => panic!("expected a user reboot, got {other:?}"),
        }
        assert_eq!(t.find(Node::DaytimePosture).unwrap().outcome, "required");
    }

    #[test]
    fn daytime_reminders_come_daily_at_ten_local() {
        let p = Policy::default();
        // 17:00 CST on the 9th -> 10:00 CST on the 10th (16:00Z), then the 11th.
        let first = next_reminder(Chicago, utc(2026, 12, 9, 23, 0), &p);
        assert_eq!(first, utc(2026, 12, 10, 16, 0));
        assert_eq!(next_reminder(Chicago, first, &p), utc(2026, 12, 11, 16, 0));
        // Before 10:00 local the same day's reminder is next.
        assert_eq!(
            next_reminder(Chicago, utc(2026, 12, 10, 15, 59), &p),
            utc(2026, 12, 10, 16, 0)
        );
    }

    #[test]
    fn a_sleeping_or_hibernating_daytime_workstation_is_not_patched() {
        let mut t = Trace::new();
        assert_eq!(
            check_posture(PowerState::Sleeping, &mut t),
            Posture::NotReady
        );
        assert_eq!(
            check_posture(PowerState::Hibernating, &mut t),
            Posture::NotReady
        );
        assert_eq!(check_posture(PowerState::Awake, &mut t), Posture::Ready);
        assert_eq!(
            check_posture(PowerState::Unknown, &mut t),
            Posture::Unconfirmed
        );
        assert_eq!(t.entries().len(), 4);
    }
}
