//! Each computer's patch state, as Automate's last patch scan reports it: which updates the
//! computer needs, so a plan counts only the flaws that exist.
//!
//! # The routes (Automate REST API "25.0.5", `generator/automate-json/Computers.json`)
//!
//! - `GET /Computers/{computerId}/PatchingStats` answers one
//!   `Automate.Api.Domain.Contracts.Patching.ComputerPatchingStats`: patchflow reads
//!   `NoPatchInventory` (Automate has no scan of the computer: what it needs is unknown),
//!   `PatchJobRunning`, `Stage` and `LastPatchInventory`.
//! - `GET /Computers/{computerId}/MicrosoftUpdates` answers rows of
//!   `LabTech.Models.ComputerMicrosoftUpdateData` (`KnowledgeBaseId`, `IsInstalled`,
//!   `IsFailed`, `PolicyApproval {Id, Name}`, `Severity`, `ReleaseDate`, `Title`, `Category`),
//!   paged like the other lists. The specification types the answer only as `object`; patchflow
//!   expects a list, as every list route gives, and anything else is an error naming the route.
//!
//! A computer needs a KB when a row of it is not installed, or installed and failed. Only the
//! computers a cycle would patch are read: one that is disabled, in a disabled location,
//! excluded by its client or Do Not Patch keeps `applicable` absent (the plan takes it out of
//! scope before applicability matters).

use std::collections::{BTreeMap, HashSet};

use chrono::DateTime;
use futures::stream::{self, StreamExt, TryStreamExt};
use patchflow_core::contract::{EndpointDoc, NeededUpdateDoc, PolicyGroupDoc};
use patchflow_core::model::Severity;
use patchflow_core::ports::sources::NoPatchInventory;
use patchflow_core::ports::PortError;
use reqwest::Method;

use super::wire::{real, Kb, MicrosoftUpdate, PatchingStats};
use super::{rfc3339, Automate, Pulled, SYSTEM};

/// Automate's severity as patchflow's, where it is one of Microsoft's ratings.
fn severity(raw: &str) -> Option<Severity> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "critical" => Some(Severity::Critical),
        "important" => Some(Severity::Important),
        "moderate" => Some(Severity::Moderate),
        "low" => Some(Severity::Low),
        _ => None,
    }
}

/// What a computer needs: its applicable patch ids (sorted, unique) and what is known of each.
/// A row that does not say whether it is installed counts as needed: an unknown is never
/// counted as compliant.
fn needed_updates(rows: &[MicrosoftUpdate]) -> (Vec<String>, Vec<NeededUpdateDoc>) {
    let mut by_id: BTreeMap<String, NeededUpdateDoc> = BTreeMap::new();
    for row in rows {
        let Some(id) = row.knowledge_base_id.and_then(Kb::patch_id) else {
            continue;
        };
        let installed = row.is_installed.unwrap_or(false);
        let failed = row.is_failed.unwrap_or(false);
        if installed && !failed {
            continue;
        }
        let doc = by_id.entry(id.clone()).or_insert_with(|| NeededUpdateDoc {
            id,
            title: None,
            severity: None,
            released: None,
            failed: Some(false),
        });
        // Several rows of one KB (one per product it updates) merge: the first title, the
        // gravest rating, the earliest release, failed if any failed.
        if doc.title.is_none() {
            doc.title = row.title.clone().filter(|t| !t.trim().is_empty());
        }
        if let Some(s) = row.severity.as_deref().and_then(severity) {
            doc.severity = Some(doc.severity.map_or(s, |old| old.min(s)));
        }
        if let Some(t) = real(row.release_date) {
            let earlier = doc
                .released
                .as_deref()
                .and_then(|r| DateTime::parse_from_rfc3339(r).ok())
                .is_none_or(|old| t < old);
            if earlier {
                doc.released = Some(rfc3339(t));
            }
        }
        if failed {
            doc.failed = Some(true);
        }
    }
    let applicable = by_id.keys().cloned().collect();
    (applicable, by_id.into_values().collect())
}

/// Whether the cycle would patch this endpoint at all (the scope rules' exclusions, as the
/// record gives them), so its patch state matters.
fn patched(e: &EndpointDoc, disabled_locations: &HashSet<(String, String)>) -> bool {
    let disabled_location = e
        .location
        .as_ref()
        .is_some_and(|l| disabled_locations.contains(&(e.client.clone(), l.clone())));
    !(e.patching_disabled == Some(true)
        || disabled_location
        || e.client_excluded == Some(true)
        || e.policy_group == Some(PolicyGroupDoc::DoNotPatch))
}

/// One computer's patch state: its stats, and what it needs unless Automate has no patch
/// inventory of it.
type ComputerPatchState = (PatchingStats, Option<(Vec<String>, Vec<NeededUpdateDoc>)>);

impl Automate {
    async fn computer_patch_state(&self, computer: &str) -> Result<ComputerPatchState, PortError> {
        let stats: PatchingStats = self
            .call(
                Method::GET,
                &format!("Computers/{computer}/PatchingStats"),
                &[],
                None,
            )
            .await?;
        if stats.no_patch_inventory == Some(true) {
            return Ok((stats, None));
        }
        let rows: Vec<MicrosoftUpdate> = self
            .all(&format!("Computers/{computer}/MicrosoftUpdates"), None)
            .await?;
        Ok((stats, Some(needed_updates(&rows))))
    }

    /// Reads the patch state of every computer of `pulled` that a cycle would patch,
    /// [`super::AutomateConfig::patch_state_concurrency`] computers at a time, into its record
    /// (`applicable`, `needed`) and its status; names those without a patch inventory.
    pub(super) async fn read_patch_state(&self, pulled: &mut Pulled) -> Result<(), PortError> {
        let disabled_locations: HashSet<(String, String)> = pulled
            .inventory
            .clients
            .iter()
            .flat_map(|c| {
                c.locations
                    .iter()
                    .flatten()
                    .filter(|l| l.patching_disabled == Some(true))
                    .map(|l| (c.id.clone(), l.id.clone()))
            })
            .collect();
        let wanted: Vec<(usize, String)> = pulled
            .inventory
            .endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| patched(e, &disabled_locations))
            .map(|(i, e)| (i, e.id.clone()))
            .collect();
        let not_read = pulled.inventory.endpoints.len() - wanted.len();
        let read = wanted.len();
        let results: Vec<(usize, ComputerPatchState)> = stream::iter(wanted)
            .map(|(i, id)| async move { self.computer_patch_state(&id).await.map(|s| (i, s)) })
            .buffer_unordered(self.config.patch_state_concurrency)
            .try_collect()
            .await?;
        for (i, (stats, needed)) in results {
            let Some(e) = pulled.inventory.endpoints.get_mut(i) else {
                continue;
            };
            if let Some(status) = pulled.status.get_mut(&e.id) {
                status.patch_stage = stats.stage.clone().filter(|s| !s.trim().is_empty());
                status.patch_job_running = stats.patch_job_running;
                status.last_patch_inventory = real(stats.last_patch_inventory);
                status.no_patch_inventory = stats.no_patch_inventory;
            }
            match needed {
                Some((applicable, needed)) => {
                    e.applicable = Some(applicable);
                    e.needed = Some(needed);
                }
                None => {
                    e.applicable = None;
                    e.needed = None;
                    pulled.no_patch_inventory.push(NoPatchInventory {
                        endpoint: e.id.clone(),
                        hostname: e.hostname.clone().unwrap_or_default(),
                        client: e.client.clone(),
                    });
                }
            }
        }
        pulled
            .no_patch_inventory
            .sort_by(|a, b| (&a.client, &a.endpoint).cmp(&(&b.client, &b.endpoint)));
        for n in &pulled.no_patch_inventory {
            tracing::warn!(
                system = SYSTEM,
                computer = %n.endpoint,
                name = %n.hostname,
                client = %n.client,
                "no patch inventory in Automate: what this computer needs is unknown"
            );
        }
        tracing::info!(
            system = SYSTEM,
            read,
            not_read,
            no_patch_inventory = pulled.no_patch_inventory.len(),
            "patch state read (computers out of scope are not read)"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::parse_kb;
    use super::super::Stamp;
    use super::*;
    use chrono::Utc;

    fn row(kb: serde_json::Value, installed: bool, failed: bool) -> MicrosoftUpdate {
        serde_json::from_value(serde_json::json!({
            "KnowledgeBaseId": kb, "IsInstalled": installed, "IsFailed": failed,
            "Severity": "Important", "ReleaseDate": "2026-11-11T18:00:00", "Title": "t"
        }))
        .unwrap()
    }

    #[test]
    fn kb_numbers_are_normalised_whatever_automate_sends() {
        assert_eq!(parse_kb("5048667"), Some(Kb(5048667)));
        assert_eq!(parse_kb("KB5048667"), Some(Kb(5048667)));
        assert_eq!(parse_kb(" kb 5048667 "), Some(Kb(5048667)));
        assert_eq!(parse_kb(""), Some(Kb(0)));
        assert_eq!(parse_kb("KB50x"), None);
        assert_eq!(parse_kb("-5"), None);
        assert_eq!(parse_kb("+5"), None);
        let e = serde_json::from_value::<MicrosoftUpdate>(serde_json::json!({
            "KnowledgeBaseId": "patch", "IsInstalled": false
        }))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("`patch` is not a knowledge-base number"),
            "{e}"
        );
    }

    #[test]
    fn a_kb_is_needed_when_missing_or_failed_and_its_rows_merge() {
        let mut grave = row(serde_json::json!(5048667), false, false);
        grave.severity = Some("Critical".into());
        grave.release_date = Some(Stamp(
            DateTime::parse_from_rfc3339("2026-10-14T17:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        ));
        let rows = vec![
            row(serde_json::json!("KB5048667"), false, false),
            grave,
            row(serde_json::json!(5048685), true, true),
            row(serde_json::json!(5040000), true, false),
            row(serde_json::json!(0), false, false),
            row(serde_json::json!(999999), false, false),
        ];
        let (applicable, needed) = needed_updates(&rows);
        assert_eq!(applicable, ["KB5048667", "KB5048685", "KB999999"]);
        assert_eq!(needed[0].severity, Some(Severity::Critical));
        assert_eq!(needed[0].released.as_deref(), Some("2026-10-14T17:00:00Z"));
        assert_eq!(needed[0].failed, Some(false));
        assert_eq!(needed[1].failed, Some(true));
        assert_eq!(needed[1].severity, Some(Severity::Important));
    }

    #[test]
    fn unrated_severities_and_placeholder_dates_are_left_out() {
        assert_eq!(severity("Unspecified"), None);
        assert_eq!(severity(" moderate "), Some(Severity::Moderate));
        let mut r = row(serde_json::json!(1), false, false);
        r.release_date = Some(Stamp(DateTime::<Utc>::MIN_UTC));
        r.severity = Some(String::new());
        let (_, needed) = needed_updates(&[r]);
        assert_eq!(
            (needed[0].released.as_deref(), needed[0].severity),
            (None, None)
        );
    }
}
