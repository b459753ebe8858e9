//! What changed on a client's computers since an instant, in bulk (`Rmm::changed`): instead of
//! reading every waiting endpoint's reports each hour (2 to 4 calls per endpoint), the pipeline
//! asks once per client and hour which computers may have something new, and reads reports for
//! those alone. Two paged reads of Automate's published OpenAPI ("Automate API" v1, as vendored
//! in covenanttechnologysolutions/connectwise-rest under generator/automate-json/), each
//! filtered by the client, however many computers it has:
//!
//! - `GET /Computers` (Computers.json, `Computers_GetComputerList`, rows of
//!   `LabTech.Models.Computer`) with `condition=Client.Id = C and (LastStartup >= S' or
//!   WindowsUpdateDate >= S)`: a computer that started since (the reboot), or whose Windows
//!   Update last installed since (an install, by the patch deployment or by an install script
//!   that runs Windows Update);
//! - `GET /PatchHistory` (Patching.json, `PatchHistory_GetPatchHistoryListAsync`, rows of
//!   `Automate.Api.Domain.Contracts.Patching.PatchHistory`: `ComputerId`, `ActionDate`,
//!   `PatchHistoryClient {Id, Name}`, `OperationCode`, `ResultCode`, `PatchHistoryTitle`) with
//!   `condition=PatchHistoryClient.Id = C and ActionDate >= S`: every patch operation that
//!   finished since, succeeded or failed (a failed install leaves `WindowsUpdateDate` as it was).
//!
//! The post-reboot checks: the specification has no monitor route filtered by client
//! (`GET /MonitorStatistics`, `/MonitorHistory` and `/InternalMonitorResults` in Monitors.json
//! carry a `ComputerId` and no client, so they would read every monitor run of the fleet), and
//! `observe` reports the checks once every mapped monitor has scanned since the start-up. So a
//! computer is listed from its start-up for [`AutomateConfig::changed_startup_hours`] (`S'` is
//! `S` less that), long enough for its monitors to scan: the hours its checks may still come.
//!
//! Not seen in bulk: a run of an install script that changed no update (one that fails before
//! Windows Update runs, or installs only third-party software): the specification's script
//! history is per computer (`GET /Computers/{computerId}/ScriptHistory`; `GET
//! /Scripting/RunningScripts` lists only what runs now), so such an outcome is read when the
//! run reaches its deadline, where the pipeline reads every run's reports.

use chrono::{DateTime, Utc};
use patchflow_core::ids::{ClientId, EndpointId};
use patchflow_core::ports::PortError;
use serde::Deserialize;
use std::collections::BTreeSet;

use super::{Automate, Id, Stamp, API, SYSTEM};

/// A client as a computer or a patch operation names it (`LabTech.Models.Client`,
/// `PatchHistoryClient`): its id.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ClientRef {
    id: Id,
}

/// A row of `GET /Computers` (`LabTech.Models.Computer`), the fields `changed` reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChangedComputer {
    id: Id,
    client: ClientRef,
    // Read so that a row whose stamp is not a date is an error naming it.
    #[allow(dead_code)]
    #[serde(default)]
    last_startup: Option<Stamp>,
    #[allow(dead_code)]
    #[serde(default)]
    windows_update_date: Option<Stamp>,
}

/// A row of `GET /PatchHistory` (`Automate.Api.Domain.Contracts.Patching.PatchHistory`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PatchOperation {
    computer_id: Id,
    #[allow(dead_code)]
    action_date: Stamp,
    #[serde(default)]
    patch_history_client: Option<ClientRef>,
}

/// A stamp as Automate's `condition` compares it.
fn condition_stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The error of a row of another client than the one asked: the server ignored `condition`,
/// and listing the fleet as one client's would be wrong.
fn not_the_client(route: &str, row: &str, found: u64, asked: u64) -> PortError {
    PortError::permanent(
        format!("{SYSTEM} GET /{API}/{route}"),
        format!(
            "malformed response: {row} is client {found}'s, not client {asked}'s: the server \
             ignores `condition`"
        ),
    )
}

impl Automate {
    /// The client's computers on which something the pipeline waits for may have happened at
    /// or after `since` (see the module's documentation), as endpoint ids (the computer id),
    /// sorted. Over-reports (a computer that started for another reason, a scan-only patch
    /// operation), never under-reports what these two routes show.
    pub async fn read_changed(
        &self,
        client: &ClientId,
        since: DateTime<Utc>,
    ) -> Result<Vec<EndpointId>, PortError> {
        let automate_client = self.automate_client(client).await?;
        let started_since =
            since - chrono::Duration::hours(i64::from(self.config.changed_startup_hours));
        let computers: Vec<ChangedComputer> = self
            .all(
                "Computers",
                Some(format!(
                    "Client.Id = {automate_client} and (LastStartup >= {} or WindowsUpdateDate \
                     >= {})",
                    condition_stamp(started_since),
                    condition_stamp(since)
                )),
            )
            .await?;
        let mut found = BTreeSet::new();
        for c in &computers {
            if c.client.id.0 != automate_client {
                return Err(not_the_client(
                    "Computers",
                    &format!("computer {}", c.id.0),
                    c.client.id.0,
                    automate_client,
                ));
            }
            found.insert(c.id.0);
        }
        let operations: Vec<PatchOperation> = self
            .all(
                "PatchHistory",
                Some(format!(
                    "PatchHistoryClient.Id = {automate_client} and ActionDate >= {}",
                    condition_stamp(since)
                )),
            )
            .await?;
        for op in &operations {
            if let Some(other) = op
                .patch_history_client
                .as_ref()
                .map(|c| c.id.0)
                .filter(|id| *id != automate_client)
            {
                return Err(not_the_client(
                    "PatchHistory",
                    &format!("the operation on computer {}", op.computer_id.0),
                    other,
                    automate_client,
                ));
            }
            found.insert(op.computer_id.0);
        }
        tracing::debug!(
            system = SYSTEM,
            client = %client,
            automate_client,
            computers = computers.len(),
            patch_operations = operations.len(),
            changed = found.len(),
            "changed since {since}"
        );
        found
            .into_iter()
            .map(|id| {
                EndpointId::parse(id.to_string()).map_err(|e| {
                    PortError::permanent(
                        format!("{SYSTEM} changed"),
                        format!("computer id {id} is not an endpoint id: {e}"),
                    )
                })
            })
            .collect()
    }
}
