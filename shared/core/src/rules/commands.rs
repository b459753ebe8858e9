//! Phase 0, the RMM as the orchestration engine: every install, reboot, reminder and forced
//! reboot that patchflow decides becomes a command to the RMM (ConnectWise Automate). This rule
//! turns one endpoint's plan into those commands.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{EndpointId, PatchId};
use crate::plan::EndpointPlan;
use crate::policy::Policy;
use crate::reason as r;
use crate::rules::cadence::{next_reminder, InstallMode, RebootPlan};
use crate::schedule::{ClockTime, Window};
use crate::trace::{Node, Trace, TraceEntry};

/// A command for the RMM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum RmmCommand {
    /// Install the approved patches automatically in the window.
    ScheduleInstall {
        /// The endpoint.
        endpoint: EndpointId,
        /// When.
        window: Window,
        /// The endpoint's approved applicable patches.
        #[serde(default)]
        patches: Vec<PatchId>,
    },
    /// Open a technician task to install in the window (Manually Patch and Reboot).
    TechnicianInstall {
        /// The endpoint.
        endpoint: EndpointId,
        /// When.
        window: Window,
        /// The endpoint's approved applicable patches.
        #[serde(default)]
        patches: Vec<PatchId>,
    },
    /// Reboot automatically in the window.
    ScheduleReboot {
        /// The endpoint.
        endpoint: EndpointId,
        /// When.
        window: Window,
    },
    /// Open a technician task to schedule and confirm the reboot.
    TechnicianReboot {
        /// The endpoint.
        endpoint: EndpointId,
        /// Not before the install window ends.
        #[serde(with = "crate::schedule::utc")]
        after: DateTime<Utc>,
    },
    /// Show the daily reboot reminder popup, from `first` on, daily at `local_time`, until the
    /// reboot is confirmed or forced.
    ReminderPopup {
        /// The endpoint.
        endpoint: EndpointId,
        /// The first reminder.
        #[serde(with = "crate::schedule::utc")]
        first: DateTime<Utc>,
        /// Local time of day.
        local_time: ClockTime,
    },
    /// Force the reboot in the window if the user has not rebooted.
    ForcedReboot {
        /// The endpoint.
        endpoint: EndpointId,
        /// When.
        window: Window,
    },
}

impl RmmCommand {
    /// The endpoint it is for.
    pub fn endpoint(&self) -> &EndpointId {
        match self {
            RmmCommand::ScheduleInstall { endpoint, .. }
            | RmmCommand::TechnicianInstall { endpoint, .. }
            | RmmCommand::ScheduleReboot { endpoint, .. }
            | RmmCommand::TechnicianReboot { endpoint, .. }
            | RmmCommand::ReminderPopup { endpoint, .. }
            | RmmCommand::ForcedReboot { endpoint, .. } => endpoint,
        }
    }

    /// The patches an install carries (none for other commands).
    pub fn patches(&self) -> &[PatchId] {
        match self {
            RmmCommand::ScheduleInstall { patches, .. }
            | RmmCommand::TechnicianInstall { patches, .. } => patches,
            _ => &[],
        }
    }

    /// Whether it is an install (unattended or a technician's).
    pub fn is_install(&self) -> bool {
        matches!(
            self,
            RmmCommand::ScheduleInstall { .. } | RmmCommand::TechnicianInstall { .. }
        )
    }

    /// Its name, as serialized in `command`.
    pub fn name(&self) -> &'static str {
        match self {
            RmmCommand::ScheduleInstall { .. } => "schedule_install",
            RmmCommand::TechnicianInstall { .. } => "technician_install",
            RmmCommand::ScheduleReboot { .. } => "schedule_reboot",
            RmmCommand::TechnicianReboot { .. } => "technician_reboot",
            RmmCommand::ReminderPopup { .. } => "reminder_popup",
            RmmCommand::ForcedReboot { .. } => "forced_reboot",
        }
    }
}

/// The RMM commands that carry out an endpoint's plan, the install carrying `patches` (the
/// endpoint's approved applicable patches). Out-of-scope endpoints get none; a critical server
/// gets none until an engineer approves (its approval is a separate decision).
pub fn rmm_commands(
    plan: &EndpointPlan,
    patches: &[PatchId],
    policy: &Policy,
    trace: &mut Trace,
) -> Vec<RmmCommand> {
    let (Some(install), Some(reboot)) = (plan.install, plan.reboot) else {
        return Vec::new();
    };
    if plan.manual_approval_required {
        // Critical by being P1, or by the inventory's flag.
        let reason = if plan.criticality == Some(crate::model::Criticality::P1) {
            r::CRITICAL_SERVER_BY_CRITICALITY
        } else {
            r::CRITICAL_SERVER_MANUAL_APPROVAL
        };
        trace.push(TraceEntry::new(
            Node::RmmPlatform,
            "awaiting_approval",
            reason,
        ));
        return Vec::new();
    }
    let endpoint = plan.id.clone();
    let mut commands = Vec::with_capacity(3);
    commands.push(match install.mode {
        InstallMode::Automatic => RmmCommand::ScheduleInstall {
            endpoint: endpoint.clone(),
            window: install.window,
            patches: patches.to_vec(),
        },
        InstallMode::Technician => RmmCommand::TechnicianInstall {
            endpoint: endpoint.clone(),
            window: install.window,
            patches: patches.to_vec(),
        },
    });
    match reboot {
        RebootPlan::Automatic(window) => {
            commands.push(RmmCommand::ScheduleReboot { endpoint, window })
        }
        RebootPlan::Technician => commands.push(RmmCommand::TechnicianReboot {
            endpoint,
            after: install.window.end,
        }),
        RebootPlan::User {
            reminder_local,
            forced,
        } => {
            commands.push(RmmCommand::ReminderPopup {
                endpoint: endpoint.clone(),
                first: next_reminder(plan.tz, install.window.end, policy),
                local_time: reminder_local,
            });
            commands.push(RmmCommand::ForcedReboot {
                endpoint,
                window: forced,
            });
        }
    }
    trace.push(
        TraceEntry::new(Node::RmmPlatform, "commands", r::RMM_COMMANDS)
            .with_facts(format!("{} command(s)", commands.len())),
    );
    commands
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{parse_catalog, parse_inventory};
    use crate::plan::{plan, Release};

    fn planned() -> crate::plan::Plan {
        let inv = parse_inventory(
            "inv",
            r#"{"clients": [{"id": "c", "timezone": "America/Chicago"}], "endpoints": [
                {"id": "web", "client": "c", "kind": "server", "role": "web", "policy_group": "auto_install_auto_reboot", "unattended_reboot_approved": true},
                {"id": "fs", "client": "c", "kind": "server", "role": "file", "policy_group": "manual_patch_and_reboot"},
                {"id": "sql", "client": "c", "kind": "server", "role": "sql", "critical": true},
                {"id": "ws", "client": "c", "kind": "workstation", "track": "daytime", "ring": "pilot"},
                {"id": "off", "client": "c", "kind": "workstation", "patching_disabled": true}
            ]}"#,
        )
        .unwrap();
        let cat = parse_catalog("cat", r#"{"patches": []}"#).unwrap();
        let p = Policy::default();
        plan(
            &inv,
            &cat,
            Release::of("2026-12".parse().unwrap(), &p, None),
            &p,
        )
    }

    fn commands(id: &str) -> Vec<RmmCommand> {
        let p = planned();
        rmm_commands(
            p.endpoint(id).unwrap(),
            &[],
            &Policy::default(),
            &mut Trace::new(),
        )
    }

    #[test]
    fn an_auto_reboot_server_gets_an_install_and_a_reboot_in_its_window() {
        // A P2 server: a P1 one (a domain controller) would await an engineer's approval.
        let cmds = commands("web");
        assert!(
            matches!(&cmds[..], [RmmCommand::ScheduleInstall { window: a, .. }, RmmCommand::ScheduleReboot { window: b, .. }] if a == b)
        );
    }

    #[test]
    fn a_manual_patch_and_reboot_server_gets_technician_tasks_only() {
        let cmds = commands("fs");
        assert!(matches!(
            &cmds[..],
            [
                RmmCommand::TechnicianInstall { .. },
                RmmCommand::TechnicianReboot { .. }
            ]
        ));
    }

    #[test]
    fn a_critical_server_gets_no_command_until_an_engineer_approves() {
        let p = planned();
        let mut t = Trace::new();
        assert!(
            rmm_commands(p.endpoint("sql").unwrap(), &[], &Policy::default(), &mut t).is_empty()
        );
        let step = t.find(Node::RmmPlatform).unwrap();
        assert_eq!(
            (step.outcome, step.reason),
            ("awaiting_approval", r::CRITICAL_SERVER_BY_CRITICALITY),
            "a SQL server is P1 by its role"
        );
    }

    #[test]
    fn a_daytime_workstation_gets_daily_reminders_from_the_morning_after_install_and_a_forced_reboot(
    ) {
        let cmds = commands("ws");
        match &cmds[..] {
            [RmmCommand::ScheduleInstall { window, .. }, RmmCommand::ReminderPopup {
                first, local_time, ..
            }, RmmCommand::ForcedReboot { window: forced, .. }] => {
                // Install 09:00-17:00 CST on the 9th; the first 10:00 after it is the 10th, 16:00Z.
                assert_eq!(window.end.to_rfc3339(), "2026-12-09T23:00:00+00:00");
                assert_eq!(first.to_rfc3339(), "2026-12-10T16:00:00+00:00");
                assert_eq!(local_time.to_string(), "10:00");
                assert_eq!(forced.start.to_rfc3339(), "2026-12-13T08:00:00+00:00");
            }
            other => panic!("unexpected commands {other:?}"),
        }
    }

    #[test]
    fn a_command_round_trips_through_json_with_utc_instants() {
        for cmd in commands("ws") {
            let text = serde_json::to_string(&cmd).unwrap();
            assert!(!text.contains("+00:00"), "{text}");
            assert_eq!(serde_json::from_str::<RmmCommand>(&text).unwrap(), cmd);
        }
    }

    #[test]
    fn an_out_of_scope_endpoint_never_gets_a_command() {
        assert!(commands("off").is_empty());
    }
}
