//! "Pilot ring includes representative endpoints from all tracks and clients", and the signed
//! approval every exclusion needs: the warnings of a plan (and of an inventory sync). Nothing
//! here changes a decision; it says where the inventory falls short of the operating model.
//!
//! - each client with two or more in-scope servers and none in the pilot or test ring (its
//!   least critical server pilots instead);
//! - each workstation track with in-scope workstations and none of them a pilot;
//! - each client with in-scope workstations and none of them a pilot;
//! - each exclusion or Do Not Patch endpoint without its signed approval (`exclusion_ref`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::contract::InputError;
use crate::ids::ClientId;
use crate::model::{Endpoint, EndpointKind, Inventory, Track};
use crate::reason as r;
use crate::rules::exception::{ExceptionEntry, ExceptionKind};
use crate::rules::scope::{decide_scope, Scope};
use crate::rules::waves;
use crate::trace::Trace;

/// Something a plan (or a sync) notes about its inputs without refusing them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Stable code (a reason code: `patchflow explain reasons`).
    pub code: &'static str,
    /// What it is about: a client id, a track name, or an endpoint id.
    pub subject: String,
    /// In words.
    pub message: String,
    /// The client concerned, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientId>,
    /// The inventory field at fault, for a warning about one endpoint's record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
}

impl Warning {
    /// The warning as an input error in the project's style (file, record, field), for a
    /// warning about one endpoint's record; `None` for the others.
    pub fn input_error(&self, source: &str) -> Option<InputError> {
        let field = self.field?;
        Some(InputError {
            source_name: source.to_owned(),
            record: Some(format!("endpoint \"{}\"", self.subject)),
            field: Some(field.to_owned()),
            message: self.message.clone(),
        })
    }

    /// The record it is about, as errors name records: `endpoint "x"`, `client "acme"` or
    /// `track "daytime"`.
    pub fn record(&self) -> String {
        let kind = if self.field.is_some() {
            "endpoint"
        } else if self.code == r::PILOT_TRACK_MISSING {
            "track"
        } else {
            "client"
        };
        format!("{kind} \"{}\"", self.subject)
    }

    /// One line in the project's error style: `SOURCE: record: field `f`: message` for a
    /// warning about a record's field, else `SOURCE: record: code: message`.
    pub fn line(&self, source: &str) -> String {
        match self.input_error(source) {
            Some(e) => e.to_string(),
            None => format!(
                "{source}: {}: {}: {}",
                self.record(),
                self.code,
                self.message
            ),
        }
    }
}

/// The pilot-representation warnings of an inventory whose scopes are known (`scopes` in
/// inventory order, as the plan decided them).
pub fn representation(inventory: &Inventory, scopes: &[Scope]) -> Vec<Warning> {
    #[derive(Default)]
    struct Group<'a> {
        servers: Vec<&'a Endpoint>,
        workstations: usize,
        pilot_workstations: usize,
    }
    let mut clients: BTreeMap<&ClientId, Group> = BTreeMap::new();
    // Per track: in-scope workstations, pilots.
    let mut tracks: [(usize, usize); 2] = [(0, 0); 2];
    for (e, scope) in inventory.endpoints().iter().zip(scopes) {
        if *scope != Scope::InScope {
            continue;
        }
        let g = clients.entry(&e.client).or_default();
        match e.kind() {
            EndpointKind::Server => g.servers.push(e),
            EndpointKind::Workstation => {
                let pilot = e.ring.is_pilot();
                g.workstations += 1;
                g.pilot_workstations += usize::from(pilot);
                let t = match e.workstation().map(|w| w.track) {
                    Some(Track::Daytime) => 1,
                    _ => 0,
                };
                tracks[t].0 += 1;
                tracks[t].1 += usize::from(pilot);
            }
        }
    }
    let mut out = Vec::new();
    // Clients in inventory order.
    for client in inventory.clients() {
        let Some(g) = clients.get(&client.id) else {
            continue;
        };
        if g.servers.len() >= 2 && !g.servers.iter().any(|e| e.ring.is_pilot()) {
            let fallback = waves::server_waves(&g.servers)
                .iter()
                .zip(&g.servers)
                .find(|(c, _)| c.reason == r::PILOT_BY_LOWEST_CRITICALITY)
                .map(|(_, e)| {
                    format!(
                        "the plan falls back to its least critical server, {} ({}, {})",
                        e.id,
                        e.hostname,
                        e.server()
                            .map_or("P2".to_owned(), |s| s.criticality.to_string())
                    )
                })
                .unwrap_or_default();
            out.push(Warning {
                code: r::PILOT_SERVER_MISSING,
                subject: client.id.to_string(),
                message: format!(
                    "{} in-scope servers and none in the pilot or test ring: {fallback}; \
                     designate a pilot server (ring pilot or test)",
                    g.servers.len()
                ),
                client: Some(client.id.clone()),
                field: None,
            });
        }
        if g.workstations > 0 && g.pilot_workstations == 0 {
            out.push(Warning {
                code: r::PILOT_CLIENT_WORKSTATIONS_MISSING,
                subject: client.id.to_string(),
                message: format!(
                    "{} in-scope workstation(s) and none in the pilot or test ring: the \
                     client is not represented in the workstation pilot",
                    g.workstations
                ),
                client: Some(client.id.clone()),
                field: None,
            });
        }
    }
    for (t, track) in [Track::Regular, Track::Daytime].into_iter().enumerate() {
        let (n, pilots) = tracks[t];
        if n > 0 && pilots == 0 {
            out.push(Warning {
                code: r::PILOT_TRACK_MISSING,
                subject: track.as_str().to_owned(),
                message: format!(
                    "{n} in-scope {} workstation(s) and none in the pilot or test ring: the \
                     track is not represented in the pilot",
                    track.as_str()
                ),
                client: None,
                field: None,
            });
        }
    }
    out
}

/// The warnings for register entries that lack their signed approval: exclusions and Do Not
/// Patch endpoints without `exclusion_ref`.
pub fn unsigned_exclusions(register: &[ExceptionEntry]) -> Vec<Warning> {
    register
        .iter()
        .filter(|x| {
            !x.signed
                && matches!(
                    x.kind,
                    ExceptionKind::ClientExcluded | ExceptionKind::DoNotPatch
                )
        })
        .map(|x| {
            let what = match x.kind {
                ExceptionKind::ClientExcluded => "client_excluded",
                _ => "policy_group do_not_patch",
            };
            Warning {
                code: r::UNSIGNED_EXCLUSION,
                subject: x.subject.clone(),
                message: format!(
                    "{what} without the signed approval it needs: no exclusion_ref names the \
                     client's signed approval"
                ),
                client: x.client.clone(),
                field: Some("exclusion_ref"),
            }
        })
        .collect()
}

/// Every warning of an inventory on its own (what a sync reports): the scopes are decided
/// here as the plan decides them.
pub fn inventory_warnings(inventory: &Inventory) -> Vec<Warning> {
    let mut register = Vec::new();
    let scopes: Vec<Scope> = inventory
        .endpoints()
        .iter()
        .map(|e| {
            let d = decide_scope(e, inventory.location_of(e), &mut Trace::new());
            register.extend(d.exception);
            d.scope
        })
        .collect();
    let mut out = representation(inventory, &scopes);
    out.extend(unsigned_exclusions(&register));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::parse_inventory;

    fn inv(endpoints: &str) -> Inventory {
        parse_inventory(
            "inv.json",
            &format!(
                r#"{{"clients": [{{"id": "acme", "timezone": "America/New_York"}}, {{"id": "globex", "timezone": "Europe/Dublin"}}], "endpoints": [{endpoints}]}}"#
            ),
        )
        .unwrap()
    }

    fn codes(w: &[Warning]) -> Vec<(&str, &str)> {
        w.iter().map(|w| (w.code, w.subject.as_str())).collect()
    }

    #[test]
    fn a_client_with_two_servers_and_no_pilot_warns_naming_the_fallback() {
        let i = inv(
            r#"{"id": "dc", "client": "acme", "kind": "server", "role": "domain_controller"},
               {"id": "fs", "client": "acme", "kind": "server", "role": "file", "hostname": "ACME-FS"}"#,
        );
        let w = inventory_warnings(&i);
        assert_eq!(codes(&w), vec![(r::PILOT_SERVER_MISSING, "acme")]);
        assert!(
            w[0].message.contains("fs (ACME-FS, P2)"),
            "{}",
            w[0].message
        );
        assert_eq!(w[0].input_error("inv.json"), None);
        assert!(w[0]
            .line("inv.json")
            .starts_with("inv.json: client \"acme\": pilot_server_missing: 2 in-scope servers"));
    }

    #[test]
    fn a_designated_pilot_server_or_a_single_server_does_not_warn() {
        let i = inv(
            r#"{"id": "dc", "client": "acme", "kind": "server", "role": "domain_controller"},
               {"id": "fs", "client": "acme", "kind": "server", "ring": "test"},
               {"id": "g1", "client": "globex", "kind": "server"}"#,
        );
        assert_eq!(inventory_warnings(&i), vec![]);
    }

    #[test]
    fn out_of_scope_servers_do_not_count() {
        let i = inv(r#"{"id": "dc", "client": "acme", "kind": "server"},
               {"id": "fs", "client": "acme", "kind": "server", "patching_disabled": true}"#);
        assert_eq!(inventory_warnings(&i), vec![]);
    }

    #[test]
    fn each_track_and_each_client_needs_a_pilot_workstation() {
        let i = inv(
            r#"{"id": "a1", "client": "acme", "kind": "workstation", "ring": "pilot"},
               {"id": "a2", "client": "acme", "kind": "workstation", "track": "daytime"},
               {"id": "g1", "client": "globex", "kind": "workstation"}"#,
        );
        assert_eq!(
            codes(&inventory_warnings(&i)),
            vec![
                (r::PILOT_CLIENT_WORKSTATIONS_MISSING, "globex"),
                (r::PILOT_TRACK_MISSING, "daytime"),
            ]
        );
        let i = inv(
            r#"{"id": "a1", "client": "acme", "kind": "workstation", "ring": "pilot"},
               {"id": "a2", "client": "acme", "kind": "workstation", "track": "daytime", "ring": "test"},
               {"id": "g1", "client": "globex", "kind": "workstation", "ring": "pilot"}"#,
        );
        assert_eq!(inventory_warnings(&i), vec![]);
    }

    #[test]
    fn an_exclusion_or_do_not_patch_without_its_signed_approval_warns_naming_the_field() {
        let i = inv(
            r#"{"id": "x1", "client": "acme", "kind": "server", "client_excluded": true},
               {"id": "x2", "client": "acme", "kind": "server", "client_excluded": true, "exclusion_ref": "S-1"},
               {"id": "d1", "client": "acme", "kind": "workstation", "policy_group": "do_not_patch"},
               {"id": "d2", "client": "acme", "kind": "workstation", "policy_group": "do_not_patch", "exclusion_ref": "S-2"}"#,
        );
        let w = inventory_warnings(&i);
        assert_eq!(
            codes(&w),
            vec![(r::UNSIGNED_EXCLUSION, "x1"), (r::UNSIGNED_EXCLUSION, "d1")]
        );
        let e = w[0].input_error("inv.json").unwrap();
        assert_eq!(
            (e.record.as_deref(), e.field.as_deref()),
            (Some("endpoint \"x1\""), Some("exclusion_ref"))
        );
        assert!(
            e.to_string()
                .starts_with("inv.json: endpoint \"x1\": field `exclusion_ref`: client_excluded"),
            "{e}"
        );
        assert!(w[1].message.contains("do_not_patch"));
    }
}
