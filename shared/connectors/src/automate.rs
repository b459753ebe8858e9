//! ConnectWise Automate, the RMM: the fleet's inventory, the commands that carry out each
//! endpoint's plan, and what the agents report back.
//!
//! # The API it speaks (REST, `{base_url}/cwa/api/v1`)
//!
//! - `POST /apitoken` with `{"UserName", "Password", "TwoFactorPasscode"?}` and the `ClientId`
//!   header returns `{"AccessToken", "TokenType", "ExpirationDate", "IsTwoFactorRequired", ...}`;
//!   every later call sends `Authorization: Bearer {AccessToken}` and `ClientId`. A token lasts
//!   about an hour: it is renewed two minutes before `ExpirationDate`, and a 401 in the middle of
//!   a sync logs in again and repeats the call, once.
//! - Lists (`GET /Computers`, `/Groups`, `/GroupComputers`, `/Computers/{id}/ScriptHistory`,
//!   `/Computers/{id}/Monitors`) are bare JSON arrays paged by `page` (from 1) and `pageSize`
//!   (at most 1000), filtered by `condition`; a page shorter than `pageSize` is the last.
//! - Computers carry `Id`, `ComputerName`, `Client {Id, Name}`, `Location {Id, Name}`, `Type`
//!   (`Server` / `Workstation`), `OperatingSystemName`, `Status` (`Online` / `Offline`),
//!   `LastStartup`, `WindowsUpdateDate` and `IsRebootNeeded`. Group membership is
//!   `GroupComputers` rows `{GroupId, ComputerId}`.
//! - Each computer a cycle would patch has its patch state read, a few computers at a time:
//!   `GET /Computers/{id}/PatchingStats` and `GET /Computers/{id}/MicrosoftUpdates`
//!   (`automate/patch_state.rs`), which fill the record's `applicable`, `os` and `needed`.
//! - Commands are the MSP's Automate scripts, scheduled per computer through
//!   `POST /Batch/ScriptExecute` with `{"EntityType": "Computer", "EntityIds": [id], "ScriptId",
//!   "Parameters": [{"Key", "Value"}], "StartDate", "ExpireDate", "OfflineActionFlags", ...}`;
//!   the answer's `ContainsUnsuccessfulResults` and `ScriptResults[].ResultDetails` say whether
//!   Automate took it. Outcomes of an install carrying no KB are read back from the computer's
//!   `ScriptHistory` (`ScriptId`, `Status`, `State` = `Success` / `Failure`, `HistoryDate`,
//!   `DiagnosticMessage`).
//! - Governance (`governance`): approvals through the MSP's approval script and read back from
//!   `MicrosoftUpdates`' `PolicyApproval`; unattended installs through
//!   `POST /PatchActions/DeployAllApproved`; results per KB; the reboot and the agent's state
//!   from `GET /Computers?condition=Id = N` (the published specification has no
//!   `GET /Computers/{id}`).
//! - The soak's health read (`health`): the agent from `GET /Computers?condition=Id = N` and the
//!   post-reboot monitors from `GET /Computers/{computerId}/Monitors` (`automate/health.rs`).
//!
//! Sources: ConnectWise's Automate REST API reference (developer.connectwise.com, Automate
//! "REST API" section) and the widely used open clients that follow it: the `AutomateAPI`
//! PowerShell module (`Connect-AutomateAPI`, `Get-AutomateComputer`, `Invoke-AutomateCommand`:
//! token, paging until a short page, conditions) and `pyconnectwise` (models generated from the
//! Automate OpenAPI document: `Computer`, `GroupComputer`, `ComputerMonitor`, `ScriptHistory`,
//! `ScheduleScriptBatchRequest`, `TokenResult`). docs/connectors.md has the worked mapping.
//!
//! # Mapping Automate onto the contract
//!
//! [`AutomateConfig`] says, per Automate client, patchflow's client id and time zone (Automate
//! keeps only a UTC offset); per Automate group, the contract fields its members take (policy
//! group, role, ring, track, criticality, exclusions, agent-level disable); which script carries
//! each command; and which monitors are which post-reboot check. The endpoint id is the Automate
//! computer id, so commands go back to the same computer.
//!
//! A sync is all-or-nothing per client: a client whose records cannot be mapped (no time zone,
//! a computer that is neither a server nor a workstation, two rules that disagree) is left out
//! of the pull and named in [`Pulled::skipped`], so the state keeps that client's previous
//! inventory rather than half of a new one; a transport or format failure fails the whole pull.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use chrono::{DateTime, NaiveDateTime, Utc};
use patchflow_core::contract::{ClientDoc, EndpointDoc, InventoryDoc, LocationDoc, PolicyGroupDoc};
use patchflow_core::ids::{EndpointId, PatchId};
use patchflow_core::model::{Criticality, EndpointKind, Ring, ServerRole, Track};
use patchflow_core::ports::rmm::{
    AgentState, ApprovalPush, RetryNote, Rmm, RmmApproval, RmmReport, TierClosure,
};
use patchflow_core::ports::sources::{ClientLeftOut, InventorySource, NoPatchInventory, PullNotes};
use patchflow_core::ports::PortError;
use patchflow_core::rules::commands::RmmCommand;
use patchflow_core::rules::validation::Check;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::http::{join, CallError, HttpClient, RetryPolicy, Timeouts};
use crate::secrets::{AutomateCredentials, Secret};

mod changed;
mod closure;
mod governance;
mod health;
mod patch_state;
mod wire;

/// The system's name in errors and logs.
pub const SYSTEM: &str = "ConnectWise Automate";
/// The API's root under the server's address.
const API: &str = "cwa/api/v1";
/// Renew a token this long before it expires.
const RENEW_BEFORE: chrono::Duration = chrono::Duration::minutes(2);
/// The most pages a list is read to (a million rows at the largest page size).
const MAX_PAGES: u32 = 1000;
/// A token's life when the server does not say (Automate's is about an hour).
const DEFAULT_TOKEN_LIFE: chrono::Duration = chrono::Duration::minutes(50);

/// How patchflow reads and drives an Automate server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutomateConfig {
    /// The server's address, e.g. `https://rmm.example.com` (the API is under `/cwa/api/v1`);
    /// in AWS, `PATCHFLOW_RMM_BASE_URL` sets it.
    #[serde(default)]
    pub base_url: String,
    /// Rows per page, 1 to 1000 (default 1000, Automate's largest).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// The time zone of clients that [`AutomateConfig::clients`] does not give one.
    #[serde(default)]
    pub default_timezone: Option<String>,
    /// Per Automate client id (`Client.Id`, as a string): patchflow's id and time zone.
    #[serde(default)]
    pub clients: BTreeMap<String, ClientMapping>,
    /// Group rules, applied in order: an endpoint takes the fields of every group it is in.
    #[serde(default)]
    pub groups: Vec<GroupRule>,
    /// The script that carries each command.
    #[serde(default)]
    pub scripts: Scripts,
    /// Automate monitor name to the post-reboot check it proves.
    #[serde(default)]
    pub monitors: BTreeMap<String, Check>,
    /// How many computers' patch state (`PatchingStats`, `MicrosoftUpdates`) a pull reads at
    /// once, 1 to 64 (default 8).
    #[serde(default = "default_patch_state_concurrency")]
    pub patch_state_concurrency: usize,
    /// How long after a computer's start-up `changed` keeps listing it, in hours, 1 to 168
    /// (default 24): its post-reboot monitors may scan that late, and the specification has no
    /// monitor route filtered by client (`automate/changed.rs`).
    #[serde(default = "default_changed_startup_hours")]
    pub changed_startup_hours: u32,
}

fn default_changed_startup_hours() -> u32 {
    24
}

fn default_page_size() -> u32 {
    1000
}

fn default_patch_state_concurrency() -> usize {
    8
}

/// One Automate client.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientMapping {
    /// patchflow's client id (default: the client's name, lower-cased, words joined by `-`).
    #[serde(default)]
    pub id: Option<String>,
    /// The client's IANA time zone (default: [`AutomateConfig::default_timezone`]).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Automate location names whose endpoints are not patched (location-level disable).
    #[serde(default)]
    pub disabled_locations: Vec<String>,
    /// The client's impact (`high`, `medium`, `low`): Automate has no such field, so the
    /// connectors file states it (written as the inventory's client `impact`).
    #[serde(default)]
    pub impact: Option<patchflow_core::model::Impact>,
}

/// The contract fields the members of an Automate group take.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupRule {
    /// The group's name in Automate (`Groups[].Name`).
    pub name: String,
    /// Policy group.
    #[serde(default)]
    pub policy_group: Option<PolicyGroupDoc>,
    /// Server role.
    #[serde(default)]
    pub role: Option<ServerRole>,
    /// Criticality override.
    #[serde(default)]
    pub criticality: Option<Criticality>,
    /// Ring.
    #[serde(default)]
    pub ring: Option<Ring>,
    /// Workstation track.
    #[serde(default)]
    pub track: Option<Track>,
    /// Servers: unattended reboot approved.
    #[serde(default)]
    pub unattended_reboot_approved: Option<bool>,
    /// Critical server (manual approval).
    #[serde(default)]
    pub critical: Option<bool>,
    /// Agent-level disable.
    #[serde(default)]
    pub patching_disabled: Option<bool>,
    /// Standing client exclusion ...
    #[serde(default)]
    pub client_excluded: Option<bool>,
    /// ... and the signed approval it rests on.
    #[serde(default)]
    pub exclusion_ref: Option<String>,
    /// Client impact of the group's computers (`high`, `medium`, `low`).
    #[serde(default)]
    pub impact: Option<patchflow_core::model::Impact>,
}

/// The Automate script id of each command. Each script receives the parameters `PatchflowKey`
/// (the command's idempotency key: a script that has already run a key exits), `Command`, and
/// the command's times (`WindowStart`, `WindowEnd`, `After`, `First`, `LocalTime`), in UTC
/// RFC 3339 except `LocalTime`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Scripts {
    /// Installs the approved patches (its history is the install report).
    #[serde(default)]
    pub install: Option<u64>,
    /// Opens a technician task to install.
    #[serde(default)]
    pub technician_install: Option<u64>,
    /// Reboots.
    #[serde(default)]
    pub reboot: Option<u64>,
    /// Opens a technician task to reboot.
    #[serde(default)]
    pub technician_reboot: Option<u64>,
    /// Shows the reboot reminder popup daily.
    #[serde(default)]
    pub reminder: Option<u64>,
    /// Forces the reboot.
    #[serde(default)]
    pub forced_reboot: Option<u64>,
    /// Writes a patch's approval into Automate's policy for the computers it runs on
    /// (parameters `PatchflowKey`, `KB`, `Action` = `Approve` | `Deny` | `NotApproved`).
    #[serde(default)]
    pub approval: Option<u64>,
}

impl AutomateConfig {
    fn script(&self, command: &RmmCommand) -> Result<u64, PortError> {
        let (id, field) = match command {
            RmmCommand::ScheduleInstall { .. } => (self.scripts.install, "install"),
            RmmCommand::TechnicianInstall { .. } => {
                (self.scripts.technician_install, "technician_install")
            }
            RmmCommand::ScheduleReboot { .. } => (self.scripts.reboot, "reboot"),
            RmmCommand::TechnicianReboot { .. } => {
                (self.scripts.technician_reboot, "technician_reboot")
            }
            RmmCommand::ReminderPopup { .. } => (self.scripts.reminder, "reminder"),
            RmmCommand::ForcedReboot { .. } => (self.scripts.forced_reboot, "forced_reboot"),
        };
        id.ok_or_else(|| {
            PortError::permanent(
                format!("{SYSTEM} {}", command.name()),
                format!("no script is configured for it: set automate.scripts.{field}"),
            )
        })
    }
}

// ---- the wire ------------------------------------------------------------------------------

/// An id Automate sends as a number or as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Id(u64);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match number_or_string(d)? {
            Ok(n) => Ok(Id(n)),
            Err(s) => s
                .trim()
                .parse()
                .map(Id)
                .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a numeric id"))),
        }
    }
}

/// A value Automate sends as a JSON number (`Ok`) or as a string (`Err`, for the caller to
/// parse).
fn number_or_string<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Result<u64, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::N(n) => Ok(n),
        Raw::S(s) => Err(s),
    })
}

/// An Automate timestamp: RFC 3339, or ISO without an offset (read as UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Stamp(DateTime<Utc>);

impl<'de> Deserialize<'de> for Stamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_stamp(&s)
            .map(Stamp)
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a date and time")))
    }
}

fn parse_stamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TokenResult {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expiration_date: Option<String>,
    #[serde(default)]
    is_two_factor_required: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NamedRef {
    id: Id,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Computer {
    id: Id,
    computer_name: String,
    client: NamedRef,
    #[serde(default)]
    location: Option<NamedRef>,
    #[serde(default, rename = "Type")]
    kind: Option<String>,
    #[serde(default)]
    operating_system_name: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    windows_update_date: Option<Stamp>,
    #[serde(default)]
    is_reboot_needed: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Group {
    id: Id,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GroupComputer {
    computer_id: Id,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ScriptHistory {
    script_id: Id,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    state: Option<String>,
    history_date: Stamp,
    #[serde(default)]
    diagnostic_message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Monitor {
    name: String,
    #[serde(default)]
    last_scanned: Option<Stamp>,
    #[serde(default)]
    last_failed: Option<Stamp>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ScriptParameter {
    key: &'static str,
    value: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct OfflineActionFlags {
    skips_offline_agents: bool,
    wakes_offline_agents: bool,
    only_runs_on_offline_agents: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ScriptExecute {
    entity_type: &'static str,
    entity_ids: Vec<u64>,
    script_id: u64,
    parameters: Vec<ScriptParameter>,
    offline_action_flags: OfflineActionFlags,
    priority: u8,
    use_agent_time: bool,
    start_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    expire_date: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResultDetails {
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ScriptResult {
    #[serde(default)]
    result_details: Option<ResultDetails>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ScriptExecuteResponse {
    #[serde(default)]
    script_results: Vec<ScriptResult>,
    contains_unsuccessful_results: bool,
}

// ---- the client ----------------------------------------------------------------------------

/// A bearer token (never printed: its `Debug` is redacted).
#[derive(Debug, Clone)]
struct Token {
    value: Secret,
    expires: DateTime<Utc>,
}

/// A client of one Automate server: the inventory source and the RMM port.
#[derive(Debug)]
pub struct Automate {
    config: AutomateConfig,
    credentials: AutomateCredentials,
    http: HttpClient,
    token: tokio::sync::Mutex<Option<Token>>,
    /// Keys whose commands Automate took in this process (a redelivery is not sent again; the
    /// scripts themselves skip a key they have run, across processes).
    sent: Mutex<HashSet<String>>,
}

impl Automate {
    /// A client with the default timeouts and retries.
    pub fn new(
        config: AutomateConfig,
        credentials: AutomateCredentials,
    ) -> Result<Self, PortError> {
        let http = HttpClient::new(SYSTEM, Timeouts::default(), RetryPolicy::default())?;
        Self::with_http(config, credentials, http)
    }

    /// A client over this HTTP client (timeouts and retries of the caller's choosing).
    pub fn with_http(
        config: AutomateConfig,
        credentials: AutomateCredentials,
        http: HttpClient,
    ) -> Result<Self, PortError> {
        if !config.base_url.starts_with("https://") && !config.base_url.starts_with("http://") {
            return Err(PortError::permanent(
                SYSTEM,
                format!(
                    "automate.base_url `{}` is not an http(s) address of the Automate server",
                    config.base_url
                ),
            ));
        }
        if !(1..=1000).contains(&config.page_size) {
            return Err(PortError::permanent(
                SYSTEM,
                format!(
                    "automate.page_size {} is not from 1 to 1000",
                    config.page_size
                ),
            ));
        }
        if !(1..=64).contains(&config.patch_state_concurrency) {
            return Err(PortError::permanent(
                SYSTEM,
                format!(
                    "automate.patch_state_concurrency {} is not from 1 to 64",
                    config.patch_state_concurrency
                ),
            ));
        }
        if !(1..=168).contains(&config.changed_startup_hours) {
            return Err(PortError::permanent(
                SYSTEM,
                format!(
                    "automate.changed_startup_hours {} is not from 1 to 168",
                    config.changed_startup_hours
                ),
            ));
        }
        let http = http.redacting(credentials.password.expose());
        Ok(Self {
            config,
            credentials,
            http,
            token: tokio::sync::Mutex::new(None),
            sent: Mutex::new(HashSet::new()),
        })
    }

    fn url(&self, path: &str) -> String {
        join(&join(&self.config.base_url, API), path)
    }

    /// A valid token: the cached one, or a new one when it is missing, expiring, or `stale`
    /// (the server refused it).
    async fn token(&self, stale: Option<&str>) -> Result<String, PortError> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref() {
            let refused = stale.is_some_and(|s| s == t.value.expose());
            if !refused && Utc::now() + RENEW_BEFORE < t.expires {
                return Ok(t.value.expose().to_owned());
            }
        }
        let what = "POST /cwa/api/v1/apitoken";
        let url = self.url("apitoken");
        let mut body = serde_json::json!({
            "UserName": self.credentials.username,
            "Password": self.credentials.password.expose(),
        });
        if let Some(code) = &self.credentials.two_factor_passcode {
            body["TwoFactorPasscode"] = serde_json::Value::String(code.expose().trim().to_owned());
        }
        let result: TokenResult = self
            .http
            .json(what, || {
                self.http
                    .request(Method::POST, &url)
                    .header("ClientId", &self.credentials.client_id)
                    .json(&body)
            })
            .await
            .map_err(|e| match e.status {
                Some(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => PortError::permanent(
                    format!("{SYSTEM} {what}"),
                    format!(
                        "the server refused the credentials of `{}`: {}",
                        self.credentials.username, e.error
                    ),
                ),
                _ => e.error,
            })?;
        let value = result
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                let why = if result.is_two_factor_required {
                    "the user needs a two-factor passcode (two_factor_passcode), or use an \
                 integrator user without two-factor authentication"
                } else {
                    "the answer has no AccessToken"
                };
                PortError::permanent(format!("{SYSTEM} {what}"), why)
            })?;
        // A stamp the server wrote in its own zone (no offset) can look expired already, or far
        // off: outside a sane life, assume Automate's usual hour.
        let now = Utc::now();
        let expires = result
            .expiration_date
            .as_deref()
            .and_then(parse_stamp)
            .filter(|e| *e > now + RENEW_BEFORE && *e <= now + chrono::Duration::days(1))
            .unwrap_or(now + DEFAULT_TOKEN_LIFE);
        *guard = Some(Token {
            value: Secret::new(value.clone()),
            expires,
        });
        Ok(value)
    }

    /// A request to `url` carrying the token and the `ClientId` header.
    fn request(&self, method: Method, url: &str, token: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .bearer_auth(token)
            .header("ClientId", &self.credentials.client_id)
    }

    /// Sends `what` with a valid token (`send` makes the request with the token it is given);
    /// a 401 logs in again and sends it once more, and a second 401 is a permanent error.
    async fn with_token<R, F, Fut>(&self, what: &str, mut send: F) -> Result<R, PortError>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Result<R, CallError>>,
    {
        let mut token = self.token(None).await?;
        for attempt in 0..2 {
            match send(token.clone()).await {
                Ok(v) => return Ok(v),
                Err(CallError {
                    status: Some(StatusCode::UNAUTHORIZED),
                    ..
                }) if attempt == 0 => {
                    tracing::info!(system = SYSTEM, call = %what, "token refused; logging in again");
                    token = self.token(Some(&token)).await?;
                }
                Err(CallError {
                    status: Some(StatusCode::UNAUTHORIZED),
                    ..
                }) => break,
                Err(e) => return Err(e.error),
            }
        }
        Err(PortError::permanent(
            format!("{SYSTEM} {what}"),
            "the server refused a fresh token too (HTTP 401): the user may lack the permission",
        ))
    }

    /// Calls the API with the token; a 401 logs in again and repeats the call once. Reads are
    /// retried on passing failures; a `body` (a command Automate may have stored before a
    /// timeout or a 5xx) is sent once.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<T, PortError> {
        let what = &format!("{method} /{API}/{path}");
        let url = &self.url(path);
        let method = &method;
        self.with_token(what, |token| async move {
            let build = || {
                let r = self.request(method.clone(), url, &token).query(query);
                match body {
                    Some(b) => r.json(b),
                    None => r,
                }
            };
            match body {
                None => self.http.json::<T>(what, build).await,
                Some(_) => self.http.json_once::<T>(what, build()).await,
            }
        })
        .await
    }

    /// Every row of a list, page by page until a short page.
    async fn all<T: DeserializeOwned>(
        &self,
        path: &str,
        condition: Option<String>,
    ) -> Result<Vec<T>, PortError> {
        let size = self.config.page_size;
        let mut rows = Vec::new();
        let mut previous: Option<serde_json::Value> = None;
        for page in 1..=MAX_PAGES {
            let mut query = vec![("page", page.to_string()), ("pageSize", size.to_string())];
            if let Some(c) = &condition {
                query.push(("condition", c.clone()));
            }
            let answer: serde_json::Value = self.call(Method::GET, path, &query, None).await?;
            let serde_json::Value::Array(batch) = answer else {
                return Err(PortError::permanent(
                    format!("{SYSTEM} GET /{API}/{path}"),
                    format!(
                        "malformed response: page {page}: expected a list of rows, found {}",
                        json_kind(&answer)
                    ),
                ));
            };
            let n = batch.len();
            if n > 0 && previous.as_ref() == batch.first() {
                // A server that ignores `page` would otherwise be read forever.
                return Err(PortError::permanent(
                    format!("{SYSTEM} GET /{API}/{path}"),
                    format!("page {page} repeats the previous page: the server ignores paging"),
                ));
            }
            previous = batch.first().cloned();
            for (i, row) in batch.into_iter().enumerate() {
                rows.push(serde_path_to_error::deserialize(row).map_err(|e| {
                    let index = (page as usize - 1) * size as usize + i;
                    PortError::permanent(
                        format!("{SYSTEM} GET /{API}/{path}"),
                        format!(
                            "malformed response: field `[{index}].{}`: {}",
                            e.path(),
                            e.inner()
                        ),
                    )
                })?);
            }
            if n < size as usize {
                return Ok(rows);
            }
        }
        Err(PortError::permanent(
            format!("{SYSTEM} GET /{API}/{path}"),
            format!("more than {MAX_PAGES} pages of {size}"),
        ))
    }

    /// Pulls the inventory: every computer, the configured groups' members, mapped onto the
    /// contract; clients that cannot be mapped are left out and named.
    pub async fn pull_inventory(&self) -> Result<Pulled, PortError> {
        let computers: Vec<Computer> = self.all("Computers", None).await?;
        let mut members: BTreeMap<String, HashSet<Id>> = BTreeMap::new();
        if !self.config.groups.is_empty() {
            let groups: Vec<Group> = self.all("Groups", None).await?;
            for rule in &self.config.groups {
                let ids: Vec<Id> = groups
                    .iter()
                    .filter(|g| g.name == rule.name)
                    .map(|g| g.id)
                    .collect();
                if ids.is_empty() {
                    return Err(PortError::permanent(
                        format!("{SYSTEM} GET /{API}/Groups"),
                        format!(
                            "automate.groups names `{}`, which is not a group on the server",
                            rule.name
                        ),
                    ));
                }
                let set = members.entry(rule.name.clone()).or_default();
                for id in ids {
                    let rows: Vec<GroupComputer> = self
                        .all("GroupComputers", Some(format!("GroupId = {}", id.0)))
                        .await?;
                    set.extend(rows.into_iter().map(|r| r.computer_id));
                }
            }
        }
        let mut pulled = map_inventory(&self.config, &computers, &members);
        self.read_patch_state(&mut pulled).await?;
        Ok(pulled)
    }

    fn computer_id(endpoint: &EndpointId) -> Result<u64, PortError> {
        endpoint.as_str().parse().map_err(|_| {
            PortError::permanent(
                SYSTEM,
                format!(
                    "endpoint `{endpoint}` is not an Automate computer id (endpoints synced from \
                     Automate are named by their computer id)"
                ),
            )
        })
    }
}

/// A pulled inventory and the clients left out of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pulled {
    /// The inventory of every client that mapped cleanly.
    pub inventory: InventoryDoc,
    /// Per endpoint id, what Automate says of its patching (not part of the contract).
    pub status: BTreeMap<String, PatchStatus>,
    /// Clients left out, each with why.
    pub skipped: Vec<SkippedClient>,
    /// Computers Automate has no patch inventory of (`PatchingStats.NoPatchInventory`): their
    /// `applicable` is absent, since what they need is unknown.
    pub no_patch_inventory: Vec<NoPatchInventory>,
}

/// What Automate says of an endpoint's patching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatchStatus {
    /// The operating system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// `Online` / `Offline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The last Windows Update install.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_windows_update: Option<DateTime<Utc>>,
    /// A reboot is pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reboot_needed: Option<bool>,
    /// Automate's patching stage for it (`PatchingStats.Stage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_stage: Option<String>,
    /// A patch job is running on it (`PatchingStats.PatchJobRunning`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_job_running: Option<bool>,
    /// Automate's last patch scan of it (`PatchingStats.LastPatchInventory`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_patch_inventory: Option<DateTime<Utc>>,
    /// Automate has no patch inventory of it (`PatchingStats.NoPatchInventory`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_patch_inventory: Option<bool>,
}

/// A client left out of a pull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedClient {
    /// Automate's client id.
    pub automate_id: u64,
    /// Its name.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// patchflow's id for a client name: lower case, runs of other characters as one `-`.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

/// Sets `slot` to `value`, or says how two groups disagree (`from` remembers which group set
/// each field).
fn merge<T: PartialEq + Clone + Serialize>(
    slot: &mut Option<T>,
    value: &Option<T>,
    field: &'static str,
    from: &mut BTreeMap<&'static str, String>,
    group: &str,
) -> Result<(), String> {
    // A value as the connectors file writes it (`do_not_patch`, `true`).
    let shown = |v: &T| match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_owned(),
    };
    if let Some(v) = value {
        if let Some(old) = slot.as_ref().filter(|old| *old != v) {
            return Err(format!(
                "groups `{}` and `{group}` give {field} `{}` and `{}`",
                from.get(field).cloned().unwrap_or_default(),
                shown(old),
                shown(v)
            ));
        }
        *slot = Some(v.clone());
        from.insert(field, group.to_owned());
    }
    Ok(())
}

fn map_computer(
    config: &AutomateConfig,
    c: &Computer,
    client_id: &str,
    location: Option<String>,
    members: &BTreeMap<String, HashSet<Id>>,
) -> Result<EndpointDoc, String> {
    let what = format!("computer {} ({})", c.id.0, c.computer_name);
    let kind = match c.kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("server") => EndpointKind::Server,
        Some("workstation") => EndpointKind::Workstation,
        other => match c.operating_system_name.as_deref() {
            Some(os) if os.contains("Server") => EndpointKind::Server,
            Some(os) if os.contains("Windows") || os.contains("mac") => EndpointKind::Workstation,
            _ => {
                return Err(format!(
                    "{what}: Type {other:?} with operating system {:?} is neither a server nor a \
                     workstation",
                    c.operating_system_name
                ))
            }
        },
    };
    let mut doc = EndpointDoc {
        id: c.id.0.to_string(),
        client: client_id.to_owned(),
        location,
        hostname: Some(c.computer_name.clone()),
        kind,
        timezone: None,
        patching_disabled: None,
        client_excluded: None,
        exclusion_ref: None,
        policy_group: None,
        role: None,
        criticality: None,
        ring: None,
        track: None,
        unattended_reboot_approved: None,
        critical: None,
        applicable: None,
        os: c
            .operating_system_name
            .clone()
            .filter(|os| !os.trim().is_empty()),
        needed: None,
        impact: None,
    };
    let mut from = BTreeMap::new();
    for rule in &config.groups {
        if !members.get(&rule.name).is_some_and(|m| m.contains(&c.id)) {
            continue;
        }
        let g = rule.name.as_str();
        let f = &mut from;
        let r: Result<(), String> = (|| {
            merge(
                &mut doc.policy_group,
                &rule.policy_group,
                "policy_group",
                f,
                g,
            )?;
            merge(&mut doc.role, &rule.role, "role", f, g)?;
            merge(&mut doc.criticality, &rule.criticality, "criticality", f, g)?;
            merge(&mut doc.ring, &rule.ring, "ring", f, g)?;
            merge(&mut doc.track, &rule.track, "track", f, g)?;
            merge(
                &mut doc.unattended_reboot_approved,
                &rule.unattended_reboot_approved,
                "unattended_reboot_approved",
                f,
                g,
            )?;
            merge(&mut doc.critical, &rule.critical, "critical", f, g)?;
            merge(
                &mut doc.patching_disabled,
                &rule.patching_disabled,
                "patching_disabled",
                f,
                g,
            )?;
            merge(
                &mut doc.client_excluded,
                &rule.client_excluded,
                "client_excluded",
                f,
                g,
            )?;
            merge(
                &mut doc.exclusion_ref,
                &rule.exclusion_ref,
                "exclusion_ref",
                f,
                g,
            )?;
            merge(&mut doc.impact, &rule.impact, "impact", f, g)
        })();
        r.map_err(|e| format!("{what}: {e}"))?;
    }
    Ok(doc)
}

/// Maps computers and group memberships onto the contract, client by client.
fn map_inventory(
    config: &AutomateConfig,
    computers: &[Computer],
    members: &BTreeMap<String, HashSet<Id>>,
) -> Pulled {
    let mut by_client: BTreeMap<Id, Vec<&Computer>> = BTreeMap::new();
    for c in computers {
        by_client.entry(c.client.id).or_default().push(c);
    }
    let mut pulled = Pulled {
        inventory: InventoryDoc {
            clients: Vec::new(),
            endpoints: Vec::new(),
        },
        status: BTreeMap::new(),
        skipped: Vec::new(),
        no_patch_inventory: Vec::new(),
    };
    let mut ids_taken: BTreeMap<String, u64> = BTreeMap::new();
    for (client, computers) in by_client {
        let name = computers
            .iter()
            .find_map(|c| c.client.name.clone())
            .unwrap_or_else(|| format!("client {}", client.0));
        let mapping = config
            .clients
            .get(&client.0.to_string())
            .cloned()
            .unwrap_or_default();
        let result = (|| -> Result<(ClientDoc, Vec<EndpointDoc>), String> {
            let id = match &mapping.id {
                Some(id) => id.clone(),
                None => match slug(&name) {
                    s if s.is_empty() => format!("client-{}", client.0),
                    s => s,
                },
            };
            if let Some(other) = ids_taken.get(&id) {
                return Err(format!(
                    "its patchflow id `{id}` is also Automate client {other}'s: set \
                     automate.clients.\"{}\".id",
                    client.0
                ));
            }
            let timezone = mapping
                .timezone
                .clone()
                .or_else(|| config.default_timezone.clone())
                .ok_or_else(|| {
                    format!(
                        "no time zone: set automate.clients.\"{}\".timezone or \
                         automate.default_timezone",
                        client.0
                    )
                })?;
            // Locations: named by their Automate name, made unique within the client.
            let mut locations: BTreeMap<Id, (String, bool)> = BTreeMap::new();
            let mut used: HashSet<String> = HashSet::new();
            for c in &computers {
                if let Some(l) = &c.location {
                    if locations.contains_key(&l.id) {
                        continue;
                    }
                    let lname = l.name.clone().unwrap_or_default();
                    let mut lid = match slug(&lname) {
                        s if s.is_empty() => format!("location-{}", l.id.0),
                        s => s,
                    };
                    if !used.insert(lid.clone()) {
                        lid = format!("{lid}-{}", l.id.0);
                        used.insert(lid.clone());
                    }
                    let disabled = mapping.disabled_locations.contains(&lname);
                    locations.insert(l.id, (lid, disabled));
                }
            }
            let mut endpoints = Vec::new();
            for c in &computers {
                let location = c
                    .location
                    .as_ref()
                    .and_then(|l| locations.get(&l.id))
                    .map(|(id, _)| id.clone());
                endpoints.push(map_computer(config, c, &id, location, members)?);
            }
            let doc = ClientDoc {
                id,
                name: Some(name.clone()),
                impact: mapping.impact,
                timezone: Some(timezone),
                locations: Some(
                    locations
                        .into_values()
                        .map(|(id, disabled)| LocationDoc {
                            id,
                            patching_disabled: disabled.then_some(true),
                        })
                        .collect(),
                ),
            };
            Ok((doc, endpoints))
        })();
        match result {
            Ok((doc, endpoints)) => {
                ids_taken.insert(doc.id.clone(), client.0);
                for c in &computers {
                    pulled.status.insert(
                        c.id.0.to_string(),
                        PatchStatus {
                            os: c.operating_system_name.clone(),
                            agent: c.status.clone(),
                            last_windows_update: c.windows_update_date.map(|s| s.0),
                            reboot_needed: c.is_reboot_needed,
                            patch_stage: None,
                            patch_job_running: None,
                            last_patch_inventory: None,
                            no_patch_inventory: None,
                        },
                    );
                }
                pulled.inventory.clients.push(doc);
                pulled.inventory.endpoints.extend(endpoints);
            }
            Err(reason) => {
                tracing::error!(
                    system = SYSTEM,
                    client = client.0,
                    name = %name,
                    %reason,
                    "client left out of the sync; its previous inventory is kept"
                );
                pulled.skipped.push(SkippedClient {
                    automate_id: client.0,
                    name,
                    reason,
                });
            }
        }
    }
    pulled
}

impl InventorySource for Automate {
    async fn pull(&self) -> Result<InventoryDoc, PortError> {
        self.pull_with_notes().await.map(|(inventory, _)| inventory)
    }

    async fn pull_with_notes(&self) -> Result<(InventoryDoc, PullNotes), PortError> {
        let pulled = self.pull_inventory().await?;
        if pulled.inventory.clients.is_empty() && !pulled.skipped.is_empty() {
            let reasons: Vec<String> = pulled
                .skipped
                .iter()
                .map(|s| format!("{} ({}): {}", s.name, s.automate_id, s.reason))
                .collect();
            return Err(PortError::permanent(
                format!("{SYSTEM} inventory"),
                format!("no client could be mapped: {}", reasons.join("; ")),
            ));
        }
        let notes = PullNotes {
            no_patch_inventory: pulled.no_patch_inventory,
            clients_left_out: pulled
                .skipped
                .into_iter()
                .map(|s| ClientLeftOut {
                    source_id: s.automate_id.to_string(),
                    name: s.name,
                    reason: s.reason,
                })
                .collect(),
        };
        Ok((pulled.inventory, notes))
    }
}

/// What a JSON value is, for an error about an answer of the wrong shape (an object's field
/// names are shown, never its values).
fn json_kind(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(o) => {
            let keys: Vec<String> = o.keys().take(8).map(|k| format!("`{k}`")).collect();
            if keys.is_empty() {
                "an empty JSON object".to_owned()
            } else {
                format!("a JSON object with fields {}", keys.join(", "))
            }
        }
        serde_json::Value::Array(_) => "a JSON list".to_owned(),
        serde_json::Value::String(_) => "a JSON string".to_owned(),
        serde_json::Value::Number(_) => "a JSON number".to_owned(),
        serde_json::Value::Bool(_) => "a JSON boolean".to_owned(),
        serde_json::Value::Null => "null".to_owned(),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The script parameters and schedule of a command.
fn schedule(
    key: &str,
    command: &RmmCommand,
) -> (Vec<ScriptParameter>, DateTime<Utc>, Option<DateTime<Utc>>) {
    let mut params = vec![
        ScriptParameter {
            key: "PatchflowKey",
            value: key.to_owned(),
        },
        ScriptParameter {
            key: "Command",
            value: command.name().to_owned(),
        },
    ];
    let p = |key: &'static str, value: String| ScriptParameter { key, value };
    let (start, expire) = match command {
        RmmCommand::ScheduleInstall { window, .. }
        | RmmCommand::TechnicianInstall { window, .. }
        | RmmCommand::ScheduleReboot { window, .. }
        | RmmCommand::ForcedReboot { window, .. } => {
            params.push(p("WindowStart", rfc3339(window.start)));
            params.push(p("WindowEnd", rfc3339(window.end)));
            (window.start, Some(window.end))
        }
        RmmCommand::TechnicianReboot { after, .. } => {
            params.push(p("After", rfc3339(*after)));
            (*after, None)
        }
        RmmCommand::ReminderPopup {
            first, local_time, ..
        } => {
            params.push(p("First", rfc3339(*first)));
            params.push(p("LocalTime", local_time.to_string()));
            (*first, None)
        }
    };
    (params, start, expire)
}

impl Rmm for Automate {
    async fn send(&self, key: &str, command: &RmmCommand) -> Result<(), PortError> {
        self.send_command(key, command, Utc::now()).await
    }

    async fn push_approval(&self, key: &str, push: &ApprovalPush) -> Result<(), PortError> {
        self.push_approval_script(key, push).await
    }

    async fn approval_state(
        &self,
        endpoint: &EndpointId,
        patch: &PatchId,
    ) -> Result<Option<RmmApproval>, PortError> {
        self.read_approval(endpoint, patch).await
    }

    async fn agent_state(&self, endpoint: &EndpointId) -> Result<AgentState, PortError> {
        self.read_agent_state(endpoint).await
    }

    async fn health(
        &self,
        endpoint: &EndpointId,
    ) -> Result<patchflow_core::ports::rmm::HealthReport, PortError> {
        self.read_health(endpoint, Utc::now()).await
    }

    async fn record_closure(&self, key: &str, closure: &TierClosure) -> Result<bool, PortError> {
        self.record_tier_closure(key, closure).await
    }

    async fn record_retry(&self, key: &str, note: &RetryNote) -> Result<bool, PortError> {
        self.record_retry_window(key, note).await
    }

    async fn reports(
        &self,
        endpoint: &EndpointId,
        since: DateTime<Utc>,
        expect: &[PatchId],
    ) -> Result<Vec<RmmReport>, PortError> {
        self.observe(endpoint, since, expect).await
    }

    async fn changed(
        &self,
        client: &patchflow_core::ids::ClientId,
        since: DateTime<Utc>,
    ) -> Result<Vec<EndpointId>, PortError> {
        self.read_changed(client, since).await
    }
}

#[cfg(test)]
mod tests;
