//! Post-reboot validation: which monitors apply to which endpoint, and whether the results make
//! it healthy.

use serde::{Deserialize, Serialize};

use crate::model::{Endpoint, Profile, ServerRole};
use crate::reason as r;
use crate::trace::{Node, Trace, TraceEntry};

/// A post-reboot validation check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Online and the RMM agent reporting healthy (every endpoint).
    AgentHealthy,
    /// DNS and DHCP services responding.
    DnsDhcp,
    /// Line-of-business applications accessible.
    LobApps,
    /// Line-of-business database and production-line services operational.
    ProductionLine,
    /// SMTP / mail-transfer services responding.
    Smtp,
    /// Exchange services healthy.
    Exchange,
    /// VPN connectivity test passed.
    Vpn,
    /// Baseline applications open (workstations).
    BaselineApps,
}

impl Check {
    /// The check's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::AgentHealthy => "agent_healthy",
            Check::DnsDhcp => "dns_dhcp",
            Check::LobApps => "lob_apps",
            Check::ProductionLine => "production_line",
            Check::Smtp => "smtp",
            Check::Exchange => "exchange",
            Check::Vpn => "vpn",
            Check::BaselineApps => "baseline_apps",
        }
    }
}

/// The checks that apply to a server role ("where applicable" in the seed).
pub fn checks_for_role(role: Option<ServerRole>) -> Vec<Check> {
    let mut checks = vec![Check::AgentHealthy];
    let extra: &[Check] = match role {
        Some(ServerRole::DomainController) => &[Check::DnsDhcp],
        Some(ServerRole::Sql) => &[Check::ProductionLine],
        Some(ServerRole::App) => &[Check::LobApps, Check::ProductionLine],
        Some(ServerRole::Web) => &[Check::LobApps],
        Some(ServerRole::Infrastructure) => &[Check::DnsDhcp, Check::Vpn],
        Some(ServerRole::Exchange) => &[Check::Exchange, Check::Smtp],
        Some(ServerRole::Smtp) => &[Check::Smtp],
        Some(ServerRole::Management) => &[Check::Vpn],
        Some(
            ServerRole::File
            | ServerRole::Utility
            | ServerRole::Backup
            | ServerRole::Dr
            | ServerRole::VirtualizationHost,
        )
        | None => &[],
    };
    checks.extend_from_slice(extra);
    checks
}

/// The checks that apply to an endpoint: its role's for a server; agent, baseline apps and VPN
/// for a workstation (the workstation closure requires the last two).
pub fn checks_for(endpoint: &Endpoint) -> Vec<Check> {
    match &endpoint.profile {
        Profile::Server(s) => checks_for_role(s.role),
        Profile::Workstation(_) => vec![Check::AgentHealthy, Check::BaselineApps, Check::Vpn],
    }
}

/// One check's result as the RMM's monitor reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check.
    pub check: Check,
    /// Whether it passed.
    pub passed: bool,
}

/// The verdict of post-reboot validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Validation {
    /// Every applicable check passed.
    Healthy,
    /// Some applicable checks failed or have no result.
    Unhealthy {
        /// Checks that failed.
        failed: Vec<Check>,
        /// Checks with no result.
        missing: Vec<Check>,
    },
}

/// Judges an endpoint's post-reboot results: healthy only if every applicable check has a passing
/// result. Results for checks that do not apply are ignored.
pub fn judge(endpoint: &Endpoint, results: &[CheckResult], trace: &mut Trace) -> Validation {
    let required = checks_for(endpoint);
    let mut failed = Vec::new();
    let mut missing = Vec::new();
    for check in &required {
        let mine: Vec<&CheckResult> = results.iter().filter(|r| r.check == *check).collect();
        if mine.is_empty() {
            missing.push(*check);
        } else if mine.iter().any(|r| !r.passed) {
            failed.push(*check);
        }
    }
    let node = match endpoint.profile {
        Profile::Server(_) => Node::ServerHealthy,
        Profile::Workstation(_) => Node::RebootedHealthy,
    };
    let names = |v: &[Check]| v.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ");
    trace.push(
        TraceEntry::new(Node::ServerValidation, "ran", r::ALL_CHECKS_PASSED)
            .with_facts(format!("checks: {}", names(&required))),
    );
    if failed.is_empty() && missing.is_empty() {
        trace.push(TraceEntry::new(node, "yes", r::ALL_CHECKS_PASSED));
        Validation::Healthy
    } else {
        let reason = if failed.is_empty() {
            r::CHECKS_MISSING
        } else {
            r::CHECKS_FAILED
        };
        trace.push(TraceEntry::new(node, "no", reason).with_facts(format!(
            "failed: [{}]; missing: [{}]",
            names(&failed),
            names(&missing)
        )));
        Validation::Unhealthy { failed, missing }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServerProfile;
    use crate::testing::{server, workstation};

    fn with_role(role: ServerRole) -> Endpoint {
        let mut e = server("s");
        if let Profile::Server(ServerProfile { role: r, .. }) = &mut e.profile {
            *r = Some(role);
        }
        e
    }

    fn pass(checks: &[Check]) -> Vec<CheckResult> {
        checks
            .iter()
            .map(|c| CheckResult {
                check: *c,
                passed: true,
            })
            .collect()
    }

    #[test]
    fn every_endpoint_is_checked_for_a_healthy_agent() {
        for role in ServerRole::ALL {
            assert!(checks_for_role(Some(role)).contains(&Check::AgentHealthy));
        }
        assert!(checks_for(&workstation("w")).contains(&Check::AgentHealthy));
    }

    #[test]
    fn role_specific_checks_apply_only_where_applicable() {
        assert!(checks_for_role(Some(ServerRole::DomainController)).contains(&Check::DnsDhcp));
        assert!(checks_for_role(Some(ServerRole::Exchange)).contains(&Check::Exchange));
        assert!(checks_for_role(Some(ServerRole::Smtp)).contains(&Check::Smtp));
        assert!(checks_for_role(Some(ServerRole::App)).contains(&Check::LobApps));
        assert!(checks_for_role(Some(ServerRole::Sql)).contains(&Check::ProductionLine));
        assert!(checks_for_role(Some(ServerRole::Infrastructure)).contains(&Check::Vpn));
        assert_eq!(
            checks_for_role(Some(ServerRole::Backup)),
            vec![Check::AgentHealthy]
        );
        assert!(!checks_for_role(Some(ServerRole::File)).contains(&Check::Exchange));
    }

    #[test]
    fn a_workstation_must_pass_baseline_apps_and_vpn() {
        assert_eq!(
            checks_for(&workstation("w")),
            vec![Check::AgentHealthy, Check::BaselineApps, Check::Vpn]
        );
    }

    #[test]
    fn a_server_passing_every_applicable_check_is_healthy() {
        let e = with_role(ServerRole::DomainController);
        let mut t = Trace::new();
        assert_eq!(
            judge(&e, &pass(&[Check::AgentHealthy, Check::DnsDhcp]), &mut t),
            Validation::Healthy
        );
        assert_eq!(t.find(Node::ServerHealthy).unwrap().outcome, "yes");
    }

    #[test]
    fn a_failed_or_missing_check_makes_it_unhealthy() {
        let e = with_role(ServerRole::DomainController);
        let mut t = Trace::new();
        let results = vec![
            CheckResult {
                check: Check::AgentHealthy,
                passed: true,
            },
            CheckResult {
                check: Check::DnsDhcp,
                passed: false,
            },
        ];
        assert_eq!(
            judge(&e, &results, &mut t),
            Validation::Unhealthy {
                failed: vec![Check::DnsDhcp],
                missing: vec![]
            }
        );
        assert_eq!(
            judge(&e, &pass(&[Check::AgentHealthy, Check::Exchange]), &mut t),
            Validation::Unhealthy {
                failed: vec![],
                missing: vec![Check::DnsDhcp]
            }
        );
    }
}
