//! The health read of a pilot's soak: whether a pilot computer is still healthy days after its
//! validation, from two of Automate's documented routes (the vendored OpenAPI document,
//! generator/automate-json/Computers.json):
//!
//! - `GET /Computers?condition=Id = N` (`Computers_GetComputerList`): `Status` and
//!   `IsMaintenanceModeEnabled`, as the agent state before an install reads them;
//! - `GET /Computers/{computerId}/Monitors` (`ComputerMonitors_GetComputerMonitorsList`, rows of
//!   `LabTech.Models.ComputerMonitor`: `Name`, `LastScanned`, `LastFailed`): the configured
//!   post-reboot monitors (`automate.monitors`), each failing now when its latest scan is its
//!   latest failure.

use chrono::{DateTime, Utc};
use patchflow_core::ids::EndpointId;
use patchflow_core::ports::rmm::HealthReport;
use patchflow_core::ports::PortError;
use patchflow_core::rules::validation::{Check, CheckResult};

use super::{Automate, Monitor};

impl Automate {
    /// The computer's health now: the agent online and not in maintenance mode
    /// (`agent_healthy`), and each configured monitor's current result. A monitor that has never
    /// scanned reports nothing (the check is then missing, which the soak's rule counts as
    /// unhealthy, as post-reboot validation does); several monitors proving one check must all
    /// pass.
    pub async fn read_health(
        &self,
        endpoint: &EndpointId,
        now: DateTime<Utc>,
    ) -> Result<HealthReport, PortError> {
        let computer = Self::computer_id(endpoint)?;
        let agent = self.read_agent_state(endpoint).await?;
        let monitors: Vec<Monitor> = self
            .all(&format!("Computers/{computer}/Monitors"), None)
            .await?;
        let mut checks = vec![CheckResult {
            check: Check::AgentHealthy,
            passed: agent.online && !agent.maintenance,
        }];
        for m in &monitors {
            let Some(check) = self.config.monitors.get(&m.name).copied() else {
                continue;
            };
            let Some(scanned) = m.last_scanned.as_ref().map(|s| s.0) else {
                continue;
            };
            let failing = m.last_failed.as_ref().is_some_and(|f| f.0 >= scanned);
            match checks.iter_mut().find(|r| r.check == check) {
                Some(r) => r.passed &= !failing,
                None => checks.push(CheckResult {
                    check,
                    passed: !failing,
                }),
            }
        }
        Ok(HealthReport {
            endpoint: endpoint.clone(),
            at: now,
            online: agent.online,
            maintenance: agent.maintenance,
            checks,
        })
    }
}
