//! Automate's side of patch governance: patchflow's approval decisions written into the client's
//! approval policy and read back, installs through Automate's patch deployment, results per KB,
//! the reboot and the agent's state, each through a route of Automate's published OpenAPI
//! ("Automate API" v1, as vendored in covenanttechnologysolutions/connectwise-rest under
//! generator/automate-json/):
//!
//! - an approval: the specification has no route that writes one (its approval-policy routes are
//!   read-only), so the MSP's approval script (`automate.scripts.approval`) runs through
//!   `POST /Batch/ScriptExecute` (Batch.json, `ScheduleScriptBatchRequest`) on the client's
//!   target computers, one call per client and patch, with the parameters `PatchflowKey`, `KB`
//!   and `Action` (`Approve`, `Deny`, `NotApproved`);
//! - its read-back: `PolicyApproval.Name` of the KB's rows in
//!   `GET /Computers/{computerId}/MicrosoftUpdates` (Computers.json,
//!   `LabTech.Models.ComputerMicrosoftUpdateData`), filtered by `KnowledgeBaseId`;
//! - the install: `POST /PatchActions/DeployAllApproved` (Patching.json, body
//!   `LabTech.Models.PatchActionArgs {EntityType, EntityId}`, answer 204), not sent while
//!   `GET /Computers/{computerId}/PatchingStats` says `PatchJobRunning`;
//! - the results: every expected KB's `IsInstalled` / `IsFailed` in `MicrosoftUpdates`;
//! - the reboot and the agent: `GET /Computers` filtered by `condition=Id = N` (the specification
//!   lists no `GET /Computers/{id}`): `LastStartup`, `IsRebootNeeded`, `Status`,
//!   `RemoteAgentLastContact`, `IsMaintenanceModeEnabled`.

use chrono::{DateTime, Utc};
use patchflow_core::ids::{EndpointId, PatchId};
use patchflow_core::ports::rmm::{AgentState, ApprovalPush, RmmApproval, RmmEvent, RmmReport};
use patchflow_core::ports::PortError;
use patchflow_core::rules::cadence::PowerState;
use patchflow_core::rules::commands::RmmCommand;
use patchflow_core::rules::validation::{Check, CheckResult};
use patchflow_core::schedule::Window;
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::wire::{real, MicrosoftUpdate, PatchingStats};
use super::{
    rfc3339, schedule, Automate, Id, Monitor, OfflineActionFlags, ScriptExecute,
    ScriptExecuteResponse, ScriptHistory, ScriptParameter, Stamp, API, SYSTEM,
};

/// `PatchActionArgs.EntityType` of a computer. The specification types it as a bare integer; the
/// one enumeration of Automate's entity types it publishes (`EntityType` of the batch requests:
/// `System`, `Computer`, `Site`, `Company`, ...) puts `Computer` at 1, counted from 0.
pub(super) const PATCH_ACTION_COMPUTER: i32 = 1;
/// A `DeployAllApproved` may go out this long before its window opens (clocks differ).
const DEPLOY_EARLY: chrono::Duration = chrono::Duration::minutes(5);
/// The most KBs named in one `condition` (beyond, the computer's rows are read whole).
const MAX_CONDITION_KBS: usize = 100;

// ---- the wire ------------------------------------------------------------------------------

/// A computer's row of `GET /Computers` (`LabTech.Models.Computer`), the fields of its state.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ComputerState {
    id: Id,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    last_startup: Option<Stamp>,
    #[serde(default)]
    is_reboot_needed: Option<bool>,
    #[serde(default)]
    remote_agent_last_contact: Option<Stamp>,
    #[serde(default)]
    is_maintenance_mode_enabled: Option<bool>,
}

/// `LabTech.Models.PatchActionArgs`.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct PatchActionArgs {
    entity_type: i32,
    entity_id: u64,
}

// ---- mapping -------------------------------------------------------------------------------

/// The KB number of a Microsoft patch id (`KB5048667` -> 5048667); `None` for other patches
/// (third-party, Click-to-Run), which Automate's `MicrosoftUpdates` does not list.
pub(super) fn kb_number(patch: &PatchId) -> Option<u64> {
    let s = patch.as_str();
    let (prefix, rest) = (s.get(..2)?, s.get(2..)?);
    if !prefix.eq_ignore_ascii_case("kb")
        || rest.is_empty()
        || !rest.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    rest.parse().ok()
}

/// The `Action` parameter the approval script receives.
pub(super) fn action(approval: RmmApproval) -> &'static str {
    match approval {
        RmmApproval::Approved => "Approve",
        RmmApproval::Denied => "Deny",
        RmmApproval::NotApproved => "NotApproved",
    }
}

/// Automate's approval name (`PolicyApproval.Name`) as patchflow's decision: `Approve` is
/// approved; `Deny`, `Ignore` and `Remove` are denied (never installed); `Not Set` (or no
/// approval at all) is not approved. Case, spaces and `-`/`_` do not matter; any other name is
/// `None`.
pub(super) fn approval_named(name: Option<&str>) -> Option<RmmApproval> {
    let Some(name) = name else {
        return Some(RmmApproval::NotApproved);
    };
    let norm: String = name
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-' && *c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    match norm.as_str() {
        "approve" | "approved" => Some(RmmApproval::Approved),
        "deny" | "denied" | "ignore" | "ignored" | "remove" | "removed" => {
            Some(RmmApproval::Denied)
        }
        "" | "notset" | "notapproved" | "none" => Some(RmmApproval::NotApproved),
        _ => None,
    }
}

/// The least permissive of two decisions (rows of one KB that disagree confirm neither).
fn least(a: RmmApproval, b: RmmApproval) -> RmmApproval {
    let rank = |x: RmmApproval| match x {
        RmmApproval::Denied => 0,
        RmmApproval::NotApproved => 1,
        RmmApproval::Approved => 2,
    };
    if rank(a) <= rank(b) {
        a
    } else {
        b
    }
}

/// `KnowledgeBaseId = a or KnowledgeBaseId = b ...`, or `None` past [`MAX_CONDITION_KBS`].
fn kb_condition(kbs: &[u64]) -> Option<String> {
    (kbs.len() <= MAX_CONDITION_KBS).then(|| {
        kbs.iter()
            .map(|kb| format!("KnowledgeBaseId = {kb}"))
            .collect::<Vec<_>>()
            .join(" or ")
    })
}

/// The install as the expected KBs' rows show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum KbOutcome {
    /// Every expected KB installed, the last at this time.
    Installed(DateTime<Utc>),
    /// These KBs failed (with their titles), the last attempt at this time.
    Failed(DateTime<Utc>, Vec<(PatchId, Option<String>)>),
    /// Not yet.
    Pending,
}

/// Judges the install from the expected KBs' rows: a KB failed when a row of it `IsFailed` in
/// this attempt (dated at or after `since`, or undated after a patch job that ran since); it is
/// installed when a row of it `IsInstalled` and none failed; the install succeeded when every
/// expected KB is installed. Times never precede `since`; an undated one is the patch job's
/// (`LastPatchedDate`) when it ran since, else `now`.
pub(super) fn judge_kbs(
    expect: &[(u64, PatchId)],
    rows: &[MicrosoftUpdate],
    stats: &PatchingStats,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> KbOutcome {
    let last_job = real(stats.last_patched_date);
    let job_since = last_job.is_some_and(|d| d >= since);
    let mut failed = Vec::new();
    let mut failed_at: Option<DateTime<Utc>> = None;
    let mut installed_at = since;
    let mut all_installed = true;
    let mut listed = false;
    for (kb, patch) in expect {
        let of_kb: Vec<&MicrosoftUpdate> = rows
            .iter()
            .filter(|r| r.knowledge_base_id.map(|i| i.0) == Some(*kb))
            .collect();
        if of_kb.is_empty() {
            // Automate lists no such update on this computer: it does not apply here (an
            // update assumed to apply without a scan), so it is not waited for.
            continue;
        }
        listed = true;
        let fail = of_kb.iter().find(|r| {
            r.is_failed == Some(true)
                && match real(r.install_date) {
                    Some(d) => d >= since,
                    None => job_since,
                }
        });
        if let Some(r) = fail {
            let at = real(r.install_date).or(last_job).unwrap_or(now).max(since);
            failed_at = Some(failed_at.map_or(at, |f| f.max(at)));
            failed.push((patch.clone(), r.title.clone().filter(|t| !t.is_empty())));
            continue;
        }
        match of_kb
            .iter()
            .find(|r| r.is_installed == Some(true) && r.is_failed != Some(true))
        {
            Some(r) => {
                let dated = real(r.install_date)
                    .or(last_job.filter(|d| *d >= since))
                    .unwrap_or(now);
                installed_at = installed_at.max(dated);
            }
            None => all_installed = false,
        }
    }
    if !failed.is_empty() {
        return KbOutcome::Failed(failed_at.unwrap_or(now), failed);
    }
    if !listed {
        // None of the expected updates is listed here: the deployment's own patch job is the
        // install.
        return match last_job.filter(|_| job_since) {
            Some(at) => KbOutcome::Installed(at),
            None => KbOutcome::Pending,
        };
    }
    if all_installed {
        KbOutcome::Installed(installed_at)
    } else {
        KbOutcome::Pending
    }
}

/// Governance judges a KB from its rows' `IsInstalled` and `IsFailed`: a row without either
/// is an error naming the route and the field (the pull, which counts such a row as needed,
/// does not ask this).
fn require_install_fields(rows: &[MicrosoftUpdate], path: &str) -> Result<(), PortError> {
    for (i, r) in rows.iter().enumerate() {
        for (field, value) in [("IsInstalled", r.is_installed), ("IsFailed", r.is_failed)] {
            if value.is_none() {
                return Err(PortError::permanent(
                    format!("{SYSTEM} GET /{API}/{path}"),
                    format!("malformed response: field `[{i}].{field}` is missing"),
                ));
            }
        }
    }
    Ok(())
}

/// The failure's words: the KBs, each with its title.
fn failed_detail(failed: &[(PatchId, Option<String>)]) -> String {
    let named: Vec<String> = failed
        .iter()
        .map(|(p, t)| match t {
            Some(t) => format!("{p} ({t})"),
            None => p.to_string(),
        })
        .collect();
    format!(
        "Automate reports {} failed to install (MicrosoftUpdates IsFailed): {}",
        if failed.len() == 1 {
            "1 update".to_owned()
        } else {
            format!("{} updates", failed.len())
        },
        named.join(", ")
    )
}

// ---- the calls -----------------------------------------------------------------------------

impl Automate {
    fn sent_before(&self, key: &str) -> bool {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
    }

    fn remember(&self, key: &str) {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned());
    }

    /// Schedules a script through `POST /Batch/ScriptExecute`; an answer with
    /// `ContainsUnsuccessfulResults` is a permanent error quoting Automate's reasons.
    pub(super) async fn script_execute(
        &self,
        what: &str,
        body: &ScriptExecute,
    ) -> Result<(), PortError> {
        let value = serde_json::to_value(body)
            .map_err(|e| PortError::permanent(format!("{SYSTEM} {what}"), e))?;
        let answer: ScriptExecuteResponse = self
            .call(Method::POST, "Batch/ScriptExecute", &[], Some(&value))
            .await?;
        if answer.contains_unsuccessful_results {
            let why: Vec<String> = answer
                .script_results
                .iter()
                .filter_map(|r| r.result_details.as_ref()?.message.clone())
                .filter(|m| !m.is_empty())
                .collect();
            let computers: Vec<String> = body.entity_ids.iter().map(u64::to_string).collect();
            return Err(PortError::permanent(
                format!("{SYSTEM} POST /{API}/Batch/ScriptExecute"),
                format!(
                    "script {} for computer(s) {} ({what}) was refused: {}",
                    body.script_id,
                    computers.join(", "),
                    if why.is_empty() {
                        "no reason given".to_owned()
                    } else {
                        why.join("; ")
                    }
                ),
            ));
        }
        Ok(())
    }

    /// A `POST` whose answer has no body (Automate's patch actions answer 204); sent once, a 401
    /// logs in again and repeats it once.
    async fn post_no_content(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<StatusCode, PortError> {
        let what = &format!("POST /{API}/{path}");
        let url = &self.url(path);
        self.with_token(what, |token| async move {
            let request = self.request(Method::POST, url, &token).json(body);
            self.http.send_once(what, request).await.map(|r| r.status())
        })
        .await
    }

    /// Writes one patch's decision for one client's computers: the approval script
    /// (`automate.scripts.approval`) run once on all of them through `POST /Batch/ScriptExecute`
    /// with `PatchflowKey`, `KB` and `Action`. A key Automate took in this process is not sent
    /// again; across processes the script skips a key it has run (and setting an approval it
    /// already holds changes nothing). No endpoint: nothing to write.
    pub async fn push_approval_script(
        &self,
        key: &str,
        push: &ApprovalPush,
    ) -> Result<(), PortError> {
        let what = format!("approval of {} for {}", push.patch, push.client);
        if self.sent_before(key) {
            return Ok(());
        }
        if push.endpoints.is_empty() {
            tracing::debug!(system = SYSTEM, %what, "no endpoint to write the approval for");
            return Ok(());
        }
        if kb_number(&push.patch).is_none() {
            // Automate's approval policy holds Microsoft updates by KB: a third-party patch or a
            // fix without a KB (Click-to-Run, release notes) has no place in it, so nothing is
            // written (the read-back answers "not known" for it too).
            tracing::info!(system = SYSTEM, %what, "not a KB: Automate's approval policy does not hold it");
            return Ok(());
        }
        let script = self.config.scripts.approval.ok_or_else(|| {
            PortError::permanent(
                format!("{SYSTEM} {what}"),
                "no approval script is configured: set automate.scripts.approval",
            )
        })?;
        let mut computers = Vec::with_capacity(push.endpoints.len());
        for e in &push.endpoints {
            let id = Self::computer_id(e)?;
            if !computers.contains(&id) {
                computers.push(id);
            }
        }
        let p = |key: &'static str, value: String| ScriptParameter { key, value };
        let body = ScriptExecute {
            entity_type: "Computer",
            entity_ids: computers,
            script_id: script,
            parameters: vec![
                p("PatchflowKey", key.to_owned()),
                p("KB", push.patch.to_string()),
                p("Action", action(push.approval).to_owned()),
            ],
            offline_action_flags: OfflineActionFlags {
                skips_offline_agents: false,
                wakes_offline_agents: false,
                only_runs_on_offline_agents: false,
            },
            priority: 5,
            use_agent_time: false,
            start_date: rfc3339(Utc::now()),
            expire_date: None,
        };
        self.script_execute(&what, &body).await?;
        self.remember(key);
        Ok(())
    }

    /// The decision Automate holds for the patch on the endpoint: `PolicyApproval.Name` of the
    /// KB's rows in `GET /Computers/{id}/MicrosoftUpdates` (filtered by `KnowledgeBaseId`). No
    /// row, or a patch that is not a KB (Automate's Microsoft updates do not list it): `None`.
    /// Rows that disagree give the least permissive; an unknown name is a permanent error naming
    /// the route, the field and the name.
    pub async fn read_approval(
        &self,
        endpoint: &EndpointId,
        patch: &PatchId,
    ) -> Result<Option<RmmApproval>, PortError> {
        let computer = Self::computer_id(endpoint)?;
        let Some(kb) = kb_number(patch) else {
            return Ok(None);
        };
        let path = format!("Computers/{computer}/MicrosoftUpdates");
        let rows: Vec<MicrosoftUpdate> = self
            .all(&path, Some(format!("KnowledgeBaseId = {kb}")))
            .await?;
        require_install_fields(&rows, &path)?;
        let mut held: Option<RmmApproval> = None;
        for (i, row) in rows.iter().enumerate() {
            if row.knowledge_base_id.map(|i| i.0) != Some(kb) {
                continue;
            }
            let name = row.policy_approval.as_ref().and_then(|a| a.name.as_deref());
            let approval = approval_named(name).ok_or_else(|| {
                PortError::permanent(
                    format!("{SYSTEM} GET /{API}/{path}"),
                    format!(
                        "field `[{i}].PolicyApproval.Name`: `{}` is not an approval patchflow \
                         knows (Approve, Deny, Ignore, Remove, Not Set)",
                        name.unwrap_or_default()
                    ),
                )
            })?;
            held = Some(held.map_or(approval, |h| least(h, approval)));
        }
        Ok(held)
    }

    /// `GET /Computers/{id}/PatchingStats`: whether a patch job is running (`PatchJobRunning`,
    /// required: a missing one is an error naming the route and the field), and the stats.
    pub(super) async fn patching_stats(
        &self,
        computer: u64,
    ) -> Result<(bool, PatchingStats), PortError> {
        let path = format!("Computers/{computer}/PatchingStats");
        let stats: PatchingStats = self.call(Method::GET, &path, &[], None).await?;
        let running = stats.patch_job_running.ok_or_else(|| {
            PortError::permanent(
                format!("{SYSTEM} GET /{API}/{path}"),
                "malformed response: field `PatchJobRunning` is missing",
            )
        })?;
        Ok((running, stats))
    }

    /// Starts the unattended install: `POST /PatchActions/DeployAllApproved` for the computer,
    /// which installs what its approval policy approves, at once. So it goes out only in the
    /// window (from `DEPLOY_EARLY` before its start to its end; otherwise a permanent error
    /// saying so, nothing sent), once per key, and not while a patch job runs there (that job
    /// is the deployment; sending again changes nothing).
    pub async fn deploy_approved(
        &self,
        key: &str,
        endpoint: &EndpointId,
        window: Window,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let what = format!("POST /{API}/PatchActions/DeployAllApproved");
        if self.sent_before(key) {
            return Ok(());
        }
        let computer = Self::computer_id(endpoint)?;
        if now < window.start - DEPLOY_EARLY || now >= window.end {
            return Err(PortError::permanent(
                format!("{SYSTEM} {what}"),
                format!(
                    "computer {computer}: DeployAllApproved installs at once, and the install \
                     window is {} to {} (now {}): it is sent when the window is open",
                    rfc3339(window.start),
                    rfc3339(window.end),
                    rfc3339(now)
                ),
            ));
        }
        let (running, _) = self.patching_stats(computer).await?;
        if running {
            tracing::info!(
                system = SYSTEM,
                computer,
                key,
                "a patch job is running: DeployAllApproved not sent again"
            );
            self.remember(key);
            return Ok(());
        }
        let body = serde_json::to_value(PatchActionArgs {
            entity_type: PATCH_ACTION_COMPUTER,
            entity_id: computer,
        })
        .map_err(|e| PortError::permanent(format!("{SYSTEM} {what}"), e))?;
        let status = self
            .post_no_content("PatchActions/DeployAllApproved", &body)
            .await?;
        if status != StatusCode::NO_CONTENT {
            tracing::warn!(
                system = SYSTEM,
                computer,
                %status,
                "DeployAllApproved answered other than the documented 204; taken as accepted"
            );
        }
        self.remember(key);
        Ok(())
    }

    /// The computer's row of `GET /Computers?condition=Id = N`.
    async fn computer_state(&self, computer: u64) -> Result<ComputerState, PortError> {
        let what = format!("{SYSTEM} GET /{API}/Computers");
        let rows: Vec<serde_json::Value> = self
            .call(
                Method::GET,
                "Computers",
                &[
                    ("condition", format!("Id = {computer}")),
                    ("pageSize", "1".to_owned()),
                ],
                None,
            )
            .await?;
        let Some(row) = rows.into_iter().next() else {
            return Err(PortError::NotFound(format!(
                "{what}: no computer with Id {computer}"
            )));
        };
        let c: ComputerState = serde_path_to_error::deserialize(row).map_err(|e| {
            PortError::permanent(
                what.clone(),
                format!(
                    "malformed response: field `[0].{}`: {}",
                    e.path(),
                    e.inner()
                ),
            )
        })?;
        if c.id.0 != computer {
            return Err(PortError::permanent(
                what,
                format!(
                    "asked for `Id = {computer}`, answered computer {}: the server ignores \
                     `condition`",
                    c.id.0
                ),
            ));
        }
        Ok(c)
    }

    /// The agent as Automate sees it now, from the computer's row of `GET /Computers`: `Status`
    /// (`Online` or `Offline`, required), `IsMaintenanceModeEnabled` (required) and
    /// `RemoteAgentLastContact`. Online is awake; offline is an unknown power state (Automate
    /// cannot tell asleep from off).
    pub async fn read_agent_state(&self, endpoint: &EndpointId) -> Result<AgentState, PortError> {
        let computer = Self::computer_id(endpoint)?;
        let c = self.computer_state(computer).await?;
        let what = format!("{SYSTEM} GET /{API}/Computers");
        let status = c.status.as_deref().map(str::trim).unwrap_or_default();
        let online = if status.eq_ignore_ascii_case("online") {
            true
        } else if status.eq_ignore_ascii_case("offline") {
            false
        } else {
            return Err(PortError::permanent(
                what,
                format!(
                    "computer {computer}: field `[0].Status`: `{status}` is neither Online nor \
                     Offline"
                ),
            ));
        };
        let maintenance = c.is_maintenance_mode_enabled.ok_or_else(|| {
            PortError::permanent(
                what,
                format!("computer {computer}: field `[0].IsMaintenanceModeEnabled` is missing"),
            )
        })?;
        Ok(AgentState {
            online,
            maintenance,
            last_contact: c.remote_agent_last_contact.map(|s| s.0),
            power: if online {
                PowerState::Awake
            } else {
                PowerState::Unknown
            },
        })
    }

    /// What Automate observed on the endpoint since `since`: the install, the reboot after it,
    /// and the post-reboot checks.
    ///
    /// The install: with `expect` naming KBs, from their rows in `MicrosoftUpdates` once no
    /// patch job runs (`PatchingStats.PatchJobRunning`): succeeded when every one `IsInstalled`,
    /// failed naming each that `IsFailed` in this attempt (see `judge_kbs`). Expected patches
    /// that are not KBs are not in Automate's Microsoft updates and are not waited for. With no
    /// KB expected, the first finished run of an install script (`scripts.technician_install`,
    /// or `scripts.install`) since `since`, as before; without one, nothing.
    ///
    /// The reboot: the computer's `LastStartup` (`GET /Computers?condition=Id = N`) after the
    /// install, unless `IsRebootNeeded` is still set. The checks: once every mapped monitor of
    /// `GET /Computers/{id}/Monitors` has scanned since the start-up.
    pub async fn observe(
        &self,
        endpoint: &EndpointId,
        since: DateTime<Utc>,
        expect: &[PatchId],
    ) -> Result<Vec<RmmReport>, PortError> {
        let computer = Self::computer_id(endpoint)?;
        let report = |at, event| RmmReport {
            endpoint: endpoint.clone(),
            at,
            event,
        };
        let mut out = Vec::new();
        let mut kbs: Vec<(u64, PatchId)> = Vec::new();
        for p in expect {
            match kb_number(p) {
                Some(kb) if !kbs.iter().any(|(k, _)| *k == kb) => kbs.push((kb, p.clone())),
                Some(_) => {}
                None => tracing::debug!(
                    system = SYSTEM,
                    computer,
                    patch = %p,
                    "not a KB: Automate's Microsoft updates do not report it"
                ),
            }
        }
        let installed_at = if kbs.is_empty() {
            match self.install_script_outcome(computer, since).await? {
                // No install script ran: an unattended install is Automate's deployment, whose
                // patch job (finished since the commands went out) is the install.
                None => {
                    let (running, stats) = self.patching_stats(computer).await?;
                    match real(stats.last_patched_date).filter(|d| !running && *d >= since) {
                        Some(at) => {
                            out.push(report(at, RmmEvent::InstallSucceeded));
                            at
                        }
                        None => return Ok(out),
                    }
                }
                Some((at, RmmEvent::InstallSucceeded)) => {
                    out.push(report(at, RmmEvent::InstallSucceeded));
                    at
                }
                Some((at, event)) => {
                    out.push(report(at, event));
                    return Ok(out);
                }
            }
        } else {
            let (running, stats) = self.patching_stats(computer).await?;
            if running {
                return Ok(out);
            }
            let numbers: Vec<u64> = kbs.iter().map(|(k, _)| *k).collect();
            let path = format!("Computers/{computer}/MicrosoftUpdates");
            let rows: Vec<MicrosoftUpdate> = self.all(&path, kb_condition(&numbers)).await?;
            require_install_fields(&rows, &path)?;
            match judge_kbs(&kbs, &rows, &stats, since, Utc::now()) {
                KbOutcome::Pending => return Ok(out),
                KbOutcome::Failed(at, failed) => {
                    let detail = failed_detail(&failed);
                    let patches = failed.into_iter().map(|(p, _)| p).collect();
                    out.push(report(at, RmmEvent::InstallFailed { detail, patches }));
                    return Ok(out);
                }
                KbOutcome::Installed(at) => {
                    out.push(report(at, RmmEvent::InstallSucceeded));
                    at
                }
            }
        };
        // The reboot: the computer started after the install and needs no other.
        let c = self.computer_state(computer).await?;
        let Some(started) = c
            .last_startup
            .map(|s| s.0)
            .filter(|s| *s > installed_at && c.is_reboot_needed != Some(true))
        else {
            return Ok(out);
        };
        out.push(report(started, RmmEvent::RebootConfirmed));
        if let Some(checks) = self.checks(computer, started, &c).await? {
            out.push(report(checks.0, checks.1));
        }
        Ok(out)
    }

    /// The first finished run, since `since`, of an install script (the technician's, or the
    /// unattended one of earlier configurations): `Success` or `Failure` with its words.
    async fn install_script_outcome(
        &self,
        computer: u64,
        since: DateTime<Utc>,
    ) -> Result<Option<(DateTime<Utc>, RmmEvent)>, PortError> {
        let scripts: Vec<u64> = [
            self.config.scripts.install,
            self.config.scripts.technician_install,
        ]
        .into_iter()
        .flatten()
        .collect();
        if scripts.is_empty() {
            return Ok(None);
        }
        let which: Vec<String> = scripts.iter().map(|s| format!("ScriptId = {s}")).collect();
        let history: Vec<ScriptHistory> = self
            .all(
                &format!("Computers/{computer}/ScriptHistory"),
                Some(format!(
                    "({}) and HistoryDate >= {}",
                    which.join(" or "),
                    since.format("%Y-%m-%dT%H:%M:%SZ")
                )),
            )
            .await?;
        let mut finished: Vec<&ScriptHistory> = history
            .iter()
            .filter(|h| scripts.contains(&h.script_id.0) && h.history_date.0 >= since)
            .filter(|h| {
                !h.status
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case("running"))
            })
            // `Information` rows are progress, not an outcome.
            .filter(|h| {
                h.state.as_deref().is_some_and(|s| {
                    s.eq_ignore_ascii_case("success") || s.eq_ignore_ascii_case("failure")
                })
            })
            .collect();
        finished.sort_by_key(|h| h.history_date);
        let Some(install) = finished.first() else {
            return Ok(None);
        };
        let at = install.history_date.0;
        Ok(match install.state.as_deref() {
            Some(s) if s.eq_ignore_ascii_case("success") => Some((at, RmmEvent::InstallSucceeded)),
            Some(_) => {
                let detail = install
                    .diagnostic_message
                    .clone()
                    .filter(|d| !d.is_empty())
                    .unwrap_or_else(|| "the install script failed".to_owned());
                Some((
                    at,
                    RmmEvent::InstallFailed {
                        detail,
                        patches: Vec::new(),
                    },
                ))
            }
            None => None,
        })
    }

    /// The post-reboot checks, once every mapped monitor has scanned since `started`.
    async fn checks(
        &self,
        computer: u64,
        started: DateTime<Utc>,
        c: &ComputerState,
    ) -> Result<Option<(DateTime<Utc>, RmmEvent)>, PortError> {
        let monitors: Vec<Monitor> = self
            .all(&format!("Computers/{computer}/Monitors"), None)
            .await?;
        let mapped: Vec<(&Monitor, Check)> = monitors
            .iter()
            .filter_map(|m| self.config.monitors.get(&m.name).map(|c| (m, *c)))
            .collect();
        if mapped.is_empty() {
            // Checks of the agent alone would fail every role that needs more; without a
            // report, the run's deadline names the missing checks instead.
            tracing::warn!(
                system = SYSTEM,
                computer,
                "no configured monitor on this computer (automate.monitors): no checks reported"
            );
            return Ok(None);
        }
        if mapped
            .iter()
            .any(|(m, _)| m.last_scanned.is_none_or(|s| s.0 < started))
        {
            return Ok(None);
        }
        let online = c
            .status
            .as_deref()
            .is_some_and(|s| s.trim().eq_ignore_ascii_case("online"));
        let mut results = vec![CheckResult {
            check: Check::AgentHealthy,
            passed: online,
        }];
        let mut at = started;
        for (m, check) in mapped {
            let scanned = m.last_scanned.map(|s| s.0).unwrap_or(started);
            at = at.max(scanned);
            // Failing now: the latest scan since the start is the failed one (a monitor that
            // failed while services came up and passed since is healthy).
            let failed = m
                .last_failed
                .is_some_and(|f| f.0 >= started && f.0 >= scanned);
            match results.iter_mut().find(|r| r.check == check) {
                // Several monitors may prove one check: all must pass.
                Some(r) => r.passed &= !failed,
                None => results.push(CheckResult {
                    check,
                    passed: !failed,
                }),
            }
        }
        Ok(Some((at, RmmEvent::Checks { results })))
    }

    /// Schedules a command's script (every command but the unattended install), once per key.
    async fn send_script(&self, key: &str, command: &RmmCommand) -> Result<(), PortError> {
        if self.sent_before(key) {
            return Ok(());
        }
        let computer = Self::computer_id(command.endpoint())?;
        let script = self.config.script(command)?;
        let (parameters, start, expire) = schedule(key, command);
        let body = ScriptExecute {
            entity_type: "Computer",
            entity_ids: vec![computer],
            script_id: script,
            parameters,
            offline_action_flags: OfflineActionFlags {
                skips_offline_agents: false,
                // Wake-on-LAN for unattended work in the window.
                wakes_offline_agents: matches!(command, RmmCommand::ScheduleReboot { .. }),
                only_runs_on_offline_agents: false,
            },
            priority: 5,
            use_agent_time: false,
            start_date: rfc3339(start),
            expire_date: expire.map(rfc3339),
        };
        self.script_execute(command.name(), &body).await?;
        self.remember(key);
        Ok(())
    }

    /// Sends one command: an unattended install is Automate's patch deployment
    /// ([`Automate::deploy_approved`]); every other command is its script.
    pub(super) async fn send_command(
        &self,
        key: &str,
        command: &RmmCommand,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        match command {
            RmmCommand::ScheduleInstall {
                endpoint, window, ..
            } => self.deploy_approved(key, endpoint, *window, now).await,
            _ => self.send_script(key, command).await,
        }
    }
}
