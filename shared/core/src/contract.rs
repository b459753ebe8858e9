//! The public input formats (inventory and catalog JSON, see the docs' contract page), parsed at
//! the edge into the domain. Every error names the source, the record and the field.

use std::collections::HashSet;
use std::fmt;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::ids::{ClientId, EndpointId, IdError, LocationId, PatchId};
use crate::model::{
    Catalog, Classification, Client, Criticality, CriticalitySource, Endpoint, EndpointImpact,
    EndpointKind, Impact, ImpactSource, Inventory, InventoryError, Location, Patch, Profile,
    Provenance, Ring, ServerPolicyGroup, ServerProfile, ServerRole, Severity, Track, Vendor,
    WorkstationPolicyGroup, WorkstationProfile,
};
use crate::schedule::parse_instant;

/// Input that cannot be used, located as precisely as the input allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InputError {
    /// The file (or other source) name.
    pub source_name: String,
    /// The record, e.g. `endpoint "ep-1"`, when the error is inside one.
    pub record: Option<String>,
    /// The field within the record (or the top-level key), when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source_name)?;
        if let Some(r) = &self.record {
            write!(f, ": {r}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl InputError {
    fn new(
        source: &str,
        record: Option<String>,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            source_name: source.to_owned(),
            record,
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }
}

/// Inventory document, as written (see the contract).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryDoc {
    /// Clients.
    pub clients: Vec<ClientDoc>,
    /// Endpoints.
    pub endpoints: Vec<EndpointDoc>,
}

/// A client record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientDoc {
    /// Unique id.
    pub id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Default IANA zone for its endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Sites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locations: Option<Vec<LocationDoc>>,
    /// Client impact (an inventory extension): `high`, `medium` or `low`; its endpoints'
    /// default, raising a failure's ticket priority to P1, P2 or P3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<Impact>,
}

/// A location record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationDoc {
    /// Id, unique within the client.
    pub id: String,
    /// Location-level disabled flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patching_disabled: Option<bool>,
}

/// Every policy group name of either kind, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyGroupDoc {
    /// Either kind.
    DoNotPatch,
    /// Servers.
    ManualPatchAndReboot,
    /// Servers.
    AutoInstallManualReboot,
    /// Servers.
    AutoInstallAutoReboot,
    /// Workstations.
    Standard,
}

/// An endpoint record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointDoc {
    /// Fleet-unique id.
    pub id: String,
    /// Client id.
    pub client: String,
    /// Location id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Server or workstation.
    pub kind: EndpointKind,
    /// IANA zone (else the client's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Agent-level disabled flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patching_disabled: Option<bool>,
    /// Standing client exclusion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_excluded: Option<bool>,
    /// Signed exclusion reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusion_ref: Option<String>,
    /// Policy group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_group: Option<PolicyGroupDoc>,
    /// Server role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<ServerRole>,
    /// Criticality override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criticality: Option<Criticality>,
    /// Ring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring: Option<Ring>,
    /// Workstation track.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<Track>,
    /// Servers: unattended reboot approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unattended_reboot_approved: Option<bool>,
    /// Critical server: manual approval required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<bool>,
    /// The catalog patch ids the RMM's last patch scan reports as needed (missing, or installed
    /// and failed); absent or `null`: not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applicable: Option<Vec<String>>,
    /// The operating system's product name as the RMM reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// What the RMM knows of each update its scan reports as needed here (an extra field of
    /// the contract, beside `applicable`): the evidence takes the release dates of needed
    /// updates older than the month's catalog from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needed: Option<Vec<NeededUpdateDoc>>,
    /// Client impact of this endpoint (an inventory extension): `high`, `medium` or `low`;
    /// overrides its client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<Impact>,
}

/// An update the RMM's patch scan reports as needed on an endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeededUpdateDoc {
    /// Its id, as in `applicable` (e.g. `KB5048667`).
    pub id: String,
    /// Title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Severity, where the RMM rates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// The vendor's release instant, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<String>,
    /// Installed and failed (rather than missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<bool>,
}

/// Catalog document, as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogDoc {
    /// Patches.
    pub patches: Vec<PatchDoc>,
}

/// A patch record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatchDoc {
    /// KB or vendor id.
    pub id: String,
    /// Title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Vendor name.
    pub vendor: String,
    /// Classification.
    pub classification: Classification,
    /// Severity (security).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Release instant, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<String>,
    /// CVE ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cves: Option<Vec<String>>,
    /// The names of the products the patch applies to (e.g. `Windows Server 2025`), as the
    /// vendor gives them. Where an endpoint's applicability is not reported, a patch naming an
    /// operating system applies only to endpoints whose `os` matches one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub products: Option<Vec<String>>,
}

/// Parses a JSON document, turning any error into one that names the source, and for errors
/// inside `collection[i]`, the record's id and the field.
fn parse_json<T: serde::de::DeserializeOwned>(
    source: &str,
    text: &str,
    collections: &[(&str, &str)],
) -> Result<T, InputError> {
    // The fast path parses directly; the path-tracking parser runs only to explain a failure.
    let first = match serde_json::from_str::<T>(text) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    // serde_json reports a null where an enum is expected as a syntax error; only text that is
    // not JSON at all is malformed.
    let well_formed =
        first.is_data() || serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
    if !well_formed {
        return Err(InputError::new(
            source,
            None,
            None,
            format!(
                "malformed JSON at line {}, column {}: {}",
                first.line(),
                first.column(),
                strip_position(&first.to_string())
            ),
        ));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let err = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(_) => {
            return Err(InputError::new(
                source,
                None,
                None,
                strip_position(&first.to_string()),
            ))
        }
        Err(e) => e,
    };
    let mut message = strip_position(&err.inner().to_string());
    if message == "expected value" {
        message = "must not be null: expected one of the allowed values".to_owned();
    }
    let segments: Vec<String> = err.path().iter().map(|s| s.to_string()).collect();
    let mut record = None;
    let mut field_parts: Vec<String> = Vec::new();
    let mut rest = segments.as_slice();
    if let [coll, idx, tail @ ..] = segments.as_slice() {
        if let Some((_, singular)) = collections.iter().find(|(c, _)| c == coll) {
            if let Some(index) = idx.strip_prefix('[').and_then(|i| i.strip_suffix(']')) {
                if let Ok(index) = index.parse::<usize>() {
                    record = Some(record_name(text, coll, index, singular));
                    rest = tail;
                }
            }
        }
    }
    for seg in rest {
        if seg.starts_with('[') {
            if let Some(last) = field_parts.last_mut() {
                last.push_str(seg);
                continue;
            }
        }
        field_parts.push(seg.clone());
    }
    let mut field = (!field_parts.is_empty()).then(|| field_parts.join("."));
    if let Some(missing) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        field = Some(match field {
            Some(prefix) => format!("{prefix}.{missing}"),
            None => missing.to_owned(),
        });
        return Err(InputError::new(
            source,
            record,
            field.as_deref(),
            "is required but missing",
        ));
    }
    if record.is_some() && field.is_none() {
        // The record itself is not an object (null, a number, a list...).
        message = format!("the record must be a JSON object: {message}");
    }
    Err(InputError::new(source, record, field.as_deref(), message))
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn record_name(text: &str, collection: &str, index: usize, singular: &str) -> String {
    let id = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| {
            v.get(collection)?
                .get(index)?
                .get("id")?
                .as_str()
                .map(str::to_owned)
        });
    match id {
        Some(id) => format!("{singular} \"{id}\""),
        None => format!("{singular} #{} (no id)", index + 1),
    }
}

fn quoted(kind: &str, id: &str) -> Option<String> {
    Some(format!("{kind} \"{id}\""))
}

fn id_error(source: &str, record: Option<String>, field: &str, e: IdError) -> InputError {
    InputError::new(source, record, Some(field), e.to_string())
}

fn parse_tz(source: &str, record: Option<String>, name: &str) -> Result<Tz, InputError> {
    name.parse::<Tz>().map_err(|_| {
        InputError::new(
            source,
            record,
            Some("timezone"),
            format!("unknown time zone `{name}`: expected an IANA name such as America/New_York"),
        )
    })
}

/// Parses and validates an inventory document (`source` names it in errors).
pub fn parse_inventory(source: &str, text: &str) -> Result<Inventory, InputError> {
    let doc: InventoryDoc = parse_json(
        source,
        text,
        &[("clients", "client"), ("endpoints", "endpoint")],
    )?;
    inventory_from_doc(source, doc)
}

/// Validates an inventory document into the domain.
pub fn inventory_from_doc(source: &str, doc: InventoryDoc) -> Result<Inventory, InputError> {
    let mut clients = Vec::with_capacity(doc.clients.len());
    let mut client_index = std::collections::HashMap::with_capacity(doc.clients.len());
    for c in doc.clients {
        let rec = quoted("client", &c.id);
        let id =
            ClientId::parse(c.id.clone()).map_err(|e| id_error(source, rec.clone(), "id", e))?;
        if client_index.insert(id.clone(), clients.len()).is_some() {
            return Err(InputError::new(
                source,
                rec,
                Some("id"),
                "duplicate client id",
            ));
        }
        let tz = c
            .timezone
            .as_deref()
            .map(|n| parse_tz(source, rec.clone(), n))
            .transpose()?;
        let mut locations = Vec::new();
        for (i, l) in c.locations.unwrap_or_default().into_iter().enumerate() {
            let field = format!("locations[{i}].id");
            let lid =
                LocationId::parse(l.id).map_err(|e| id_error(source, rec.clone(), &field, e))?;
            if locations.iter().any(|x: &Location| x.id == lid) {
                return Err(InputError::new(
                    source,
                    rec,
                    Some(&field),
                    format!("duplicate location id `{lid}`"),
                ));
            }
            locations.push(Location {
                id: lid,
                patching_disabled: l.patching_disabled.unwrap_or(false),
            });
        }
        clients.push(Client {
            name: c
                .name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| id.to_string()),
            id,
            tz,
            locations,
            impact: c.impact,
        });
    }

    let mut endpoints = Vec::with_capacity(doc.endpoints.len());
    for e in doc.endpoints {
        // Named lazily: formatting a record name for every valid endpoint would cost more than
        // validating it.
        let rec = || quoted("endpoint", &e.id);
        let id =
            EndpointId::parse(e.id.as_str()).map_err(|err| id_error(source, rec(), "id", err))?;
        let client_id = ClientId::parse(e.client.clone())
            .map_err(|err| id_error(source, rec(), "client", err))?;
        let Some(client) = client_index.get(&client_id).map(|&i| &clients[i]) else {
            return Err(InputError::new(
                source,
                rec(),
                Some("client"),
                format!("unknown client `{client_id}`: it is not in `clients`"),
            ));
        };
        let location = match e.location {
            Some(l) => {
                let lid =
                    LocationId::parse(l).map_err(|err| id_error(source, rec(), "location", err))?;
                if client.location(&lid).is_none() {
                    return Err(InputError::new(
                        source,
                        rec(),
                        Some("location"),
                        format!(
                            "unknown location `{lid}`: client `{client_id}` has no such location"
                        ),
                    ));
                }
                Some(lid)
            }
            None => None,
        };
        let tz = match (&e.timezone, client.tz) {
            (Some(name), _) => parse_tz(source, rec(), name)?,
            (None, Some(tz)) => tz,
            (None, None) => {
                return Err(InputError::new(
                    source,
                    rec(),
                    Some("timezone"),
                    format!(
                    "is required: neither the endpoint nor its client `{client_id}` has a timezone"
                ),
                ))
            }
        };
        let applicable = match e.applicable {
            None => None,
            Some(ids) => {
                let mut out = Vec::with_capacity(ids.len());
                for (i, raw) in ids.into_iter().enumerate() {
                    let field = format!("applicable[{i}]");
                    out.push(
                        PatchId::parse(raw).map_err(|err| id_error(source, rec(), &field, err))?,
                    );
                }
                out.sort();
                out.dedup();
                Some(out)
            }
        };
        let provenance = Provenance {
            policy_group: e.policy_group.is_some(),
            ring: e.ring.is_some(),
            track: e.track.is_some(),
        };
        let profile = match e.kind {
            EndpointKind::Server => {
                let policy_group = match e.policy_group {
                    None => ServerPolicyGroup::AutoInstallManualReboot,
                    Some(PolicyGroupDoc::DoNotPatch) => ServerPolicyGroup::DoNotPatch,
                    Some(PolicyGroupDoc::ManualPatchAndReboot) => ServerPolicyGroup::ManualPatchAndReboot,
                    Some(PolicyGroupDoc::AutoInstallManualReboot) => ServerPolicyGroup::AutoInstallManualReboot,
                    Some(PolicyGroupDoc::AutoInstallAutoReboot) => ServerPolicyGroup::AutoInstallAutoReboot,
                    Some(PolicyGroupDoc::Standard) => {
                        return Err(InputError::new(
                            source,
                            rec(),
                            Some("policy_group"),
                            "`standard` is a workstation policy group; a server takes do_not_patch, manual_patch_and_reboot, auto_install_manual_reboot or auto_install_auto_reboot",
                        ))
                    }
                };
                let (criticality, criticality_source) = match (e.criticality, e.role) {
                    (Some(c), _) => (c, CriticalitySource::Override),
                    (None, Some(role)) => (role_criticality(role), CriticalitySource::Role),
                    (None, None) => (Criticality::P2, CriticalitySource::Default),
                };
                Profile::Server(ServerProfile {
                    policy_group,
                    role: e.role,
                    criticality,
                    criticality_source,
                    unattended_reboot_approved: e.unattended_reboot_approved.unwrap_or(false),
                })
            }
            EndpointKind::Workstation => {
                let policy_group = match e.policy_group {
                    None | Some(PolicyGroupDoc::Standard) => WorkstationPolicyGroup::Standard,
                    Some(PolicyGroupDoc::DoNotPatch) => WorkstationPolicyGroup::DoNotPatch,
                    Some(other) => {
                        return Err(InputError::new(
                            source,
                            rec(),
                            Some("policy_group"),
                            format!(
                                "`{}` is a server policy group; a workstation takes standard or do_not_patch",
                                serde_json::to_value(other).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
                            ),
                        ))
                    }
                };
                Profile::Workstation(WorkstationProfile {
                    policy_group,
                    track: e.track.unwrap_or(Track::Regular),
                })
            }
        };
        endpoints.push(Endpoint {
            hostname: e
                .hostname
                .filter(|h| !h.trim().is_empty())
                .unwrap_or_else(|| id.to_string()),
            id,
            client: client_id,
            location,
            tz,
            patching_disabled: e.patching_disabled.unwrap_or(false),
            client_excluded: e.client_excluded.unwrap_or(false),
            exclusion_ref: e.exclusion_ref,
            critical: e.critical.unwrap_or(false),
            ring: e.ring.unwrap_or(Ring::Production),
            profile,
            provenance,
            applicable,
            os: e.os.filter(|o| !o.trim().is_empty()),
            impact: match (e.impact, client.impact) {
                (Some(level), _) => Some(EndpointImpact {
                    level,
                    source: ImpactSource::Endpoint,
                }),
                (None, Some(level)) => Some(EndpointImpact {
                    level,
                    source: ImpactSource::Client,
                }),
                (None, None) => None,
            },
        });
    }
    // Unique ids are the domain's invariant: the inventory checks them and we name the record.
    Inventory::new(clients, endpoints).map_err(|err| {
        let (record, field) = match &err {
            InventoryError::DuplicateEndpoint(id) => (quoted("endpoint", id.as_str()), "id"),
            InventoryError::DuplicateClient(id) => (quoted("client", id.as_str()), "id"),
            InventoryError::UnknownClient { endpoint, .. } => {
                (quoted("endpoint", endpoint.as_str()), "client")
            }
            InventoryError::UnknownLocation { endpoint, .. } => {
                (quoted("endpoint", endpoint.as_str()), "location")
            }
        };
        InputError::new(source, record, Some(field), err.to_string())
    })
}

/// The criticality of a server role: P1 domain controllers, SQL and app servers; P3 backup and
/// DR; P2 everything else.
pub fn role_criticality(role: ServerRole) -> Criticality {
    match role {
        ServerRole::DomainController | ServerRole::Sql | ServerRole::App => Criticality::P1,
        ServerRole::Backup | ServerRole::Dr => Criticality::P3,
        ServerRole::File
        | ServerRole::Web
        | ServerRole::Utility
        | ServerRole::Infrastructure
        | ServerRole::VirtualizationHost
        | ServerRole::Exchange
        | ServerRole::Smtp
        | ServerRole::Management => Criticality::P2,
    }
}

/// Parses and validates a catalog document (`source` names it in errors).
pub fn parse_catalog(source: &str, text: &str) -> Result<Catalog, InputError> {
    let doc: CatalogDoc = parse_json(source, text, &[("patches", "patch")])?;
    catalog_from_doc(source, doc)
}

/// Validates a catalog document into the domain.
pub fn catalog_from_doc(source: &str, doc: CatalogDoc) -> Result<Catalog, InputError> {
    let mut patches = Vec::with_capacity(doc.patches.len());
    let mut seen = HashSet::with_capacity(doc.patches.len());
    for p in doc.patches {
        let rec = quoted("patch", &p.id);
        let id =
            PatchId::parse(p.id.clone()).map_err(|e| id_error(source, rec.clone(), "id", e))?;
        if !seen.insert(id.clone()) {
            return Err(InputError::new(
                source,
                rec,
                Some("id"),
                format!("duplicate patch id `{id}`"),
            ));
        }
        if p.vendor.trim().is_empty() {
            return Err(InputError::new(
                source,
                rec,
                Some("vendor"),
                "must not be empty",
            ));
        }
        let released = p
            .released
            .as_deref()
            .map(|t| {
                parse_instant(t).map_err(|e| {
                    InputError::new(
                        source,
                        rec.clone(),
                        Some("released"),
                        format!("`{t}` is not an RFC 3339 instant: {e}"),
                    )
                })
            })
            .transpose()?;
        patches.push(Patch {
            id,
            title: p.title.unwrap_or_default(),
            vendor: Vendor::parse(&p.vendor),
            classification: p.classification,
            severity: p.severity,
            released,
            cves: p.cves.unwrap_or_default(),
            products: p.products.unwrap_or_default(),
        });
    }
    Ok(Catalog { patches })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENTS: &str = r#""clients": [{"id": "acme", "timezone": "America/New_York", "locations": [{"id": "hq"}]}]"#;

    fn inv(endpoints: &str) -> Result<Inventory, InputError> {
        parse_inventory(
            "inv.json",
            &format!("{{{CLIENTS}, \"endpoints\": [{endpoints}]}}"),
        )
    }

    fn err(endpoints: &str) -> InputError {
        inv(endpoints).unwrap_err()
    }

    #[test]
    fn a_minimal_endpoint_takes_every_default() {
        let i = inv(r#"{"id": "ep-1", "client": "acme", "kind": "server"}"#).unwrap();
        let e = &i.endpoints()[0];
        assert_eq!(e.tz, chrono_tz::America::New_York);
        assert_eq!(e.ring, Ring::Production);
        assert_eq!(e.hostname, "ep-1");
        let s = e.server().unwrap();
        assert_eq!(s.policy_group, ServerPolicyGroup::AutoInstallManualReboot);
        assert_eq!(
            (s.criticality, s.criticality_source),
            (Criticality::P2, CriticalitySource::Default)
        );
        assert!(!s.unattended_reboot_approved);
    }

    #[test]
    fn regular_ring_is_read_as_production_and_nulls_are_defaults() {
        let i = inv(r#"{"id": "w", "client": "acme", "kind": "workstation", "ring": "regular", "track": null, "exclusion_ref": null}"#).unwrap();
        assert_eq!(i.endpoints()[0].ring, Ring::Production);
        assert_eq!(
            i.endpoints()[0].workstation().unwrap().track,
            Track::Regular
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        assert!(
            inv(r#"{"id": "w", "client": "acme", "kind": "workstation", "os": "Windows 11"}"#)
                .is_ok()
        );
    }

    #[test]
    fn a_role_sets_criticality_and_an_explicit_criticality_overrides_it() {
        let i = inv(r#"{"id": "a", "client": "acme", "kind": "server", "role": "backup"},
                      {"id": "b", "client": "acme", "kind": "server", "role": "domain_controller", "criticality": "p3"}"#).unwrap();
        assert_eq!(
            i.endpoints()[0].server().unwrap().criticality,
            Criticality::P3
        );
        let b = i.endpoints()[1].server().unwrap();
        assert_eq!(
            (b.criticality, b.criticality_source),
            (Criticality::P3, CriticalitySource::Override)
        );
    }

    #[test]
    fn an_endpoints_impact_overrides_its_clients_and_a_bad_value_is_named() {
        let i = parse_inventory(
            "inv.json",
            r#"{"clients": [{"id": "acme", "timezone": "America/New_York", "impact": "high"},
                            {"id": "globex", "timezone": "America/New_York"}],
                "endpoints": [{"id": "a", "client": "acme", "kind": "workstation"},
                              {"id": "b", "client": "acme", "kind": "workstation", "impact": "low"},
                              {"id": "c", "client": "globex", "kind": "server"}]}"#,
        )
        .unwrap();
        let impact = |n: usize| i.endpoints()[n].impact;
        assert_eq!(
            impact(0),
            Some(EndpointImpact {
                level: Impact::High,
                source: ImpactSource::Client
            })
        );
        assert_eq!(
            impact(1),
            Some(EndpointImpact {
                level: Impact::Low,
                source: ImpactSource::Endpoint
            })
        );
        assert_eq!(impact(2), None);
        assert_eq!(Impact::High.criticality(), Criticality::P1);
        let e = err(r#"{"id": "w", "client": "acme", "kind": "workstation", "impact": "urgent"}"#);
        assert_eq!(
            (e.record.as_deref(), e.field.as_deref()),
            (Some("endpoint \"w\""), Some("impact"))
        );
        assert!(
            e.message.contains("urgent") && e.message.contains("high"),
            "{e}"
        );
        let e = parse_inventory(
            "inv.json",
            r#"{"clients": [{"id": "acme", "timezone": "UTC", "impact": "p1"}], "endpoints": []}"#,
        )
        .unwrap_err();
        assert_eq!(
            (e.record.as_deref(), e.field.as_deref()),
            (Some("client \"acme\""), Some("impact"))
        );
    }

    #[test]
    fn an_unknown_enum_value_names_the_endpoint_and_field() {
        let e = err(r#"{"id": "ep-9", "client": "acme", "kind": "laptop"}"#);
        assert_eq!(e.record.as_deref(), Some("endpoint \"ep-9\""));
        assert_eq!(e.field.as_deref(), Some("kind"));
        assert!(e.message.contains("laptop"), "{e}");
        assert_eq!(e.to_string().split(": ").next(), Some("inv.json"));
    }

    #[test]
    fn a_missing_required_field_names_it() {
        let e = err(r#"{"id": "ep-2", "client": "acme"}"#);
        assert_eq!(
            (e.record.as_deref(), e.field.as_deref()),
            (Some("endpoint \"ep-2\""), Some("kind"))
        );
        let e = err(r#"{"client": "acme", "kind": "server"}"#);
        assert_eq!(
            (e.record.as_deref(), e.field.as_deref()),
            (Some("endpoint #1 (no id)"), Some("id"))
        );
    }

    #[test]
    fn a_wrongly_typed_field_names_it() {
        let e = err(
            r#"{"id": "ep-3", "client": "acme", "kind": "server", "patching_disabled": "yes"}"#,
        );
        assert_eq!(e.field.as_deref(), Some("patching_disabled"));
    }

    #[test]
    fn an_unknown_time_zone_is_an_error() {
        let e = err(
            r#"{"id": "ep-4", "client": "acme", "kind": "server", "timezone": "Mars/Olympus"}"#,
        );
        assert_eq!(e.field.as_deref(), Some("timezone"));
        assert!(e.message.contains("Mars/Olympus"));
    }

    #[test]
    fn an_endpoint_without_any_time_zone_is_an_error() {
        let e = parse_inventory(
            "inv.json",
            r#"{"clients": [{"id": "c"}], "endpoints": [{"id": "x", "client": "c", "kind": "server"}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            (e.record.as_deref(), e.field.as_deref()),
            (Some("endpoint \"x\""), Some("timezone"))
        );
    }

    #[test]
    fn duplicate_ids_and_unknown_references_are_errors() {
        let e = err(
            r#"{"id": "d", "client": "acme", "kind": "server"}, {"id": "d", "client": "acme", "kind": "server"}"#,
        );
        assert_eq!(
            (e.record.as_deref(), e.field.as_deref()),
            (Some("endpoint \"d\""), Some("id"))
        );
        let e = err(r#"{"id": "u", "client": "globex", "kind": "server"}"#);
        assert_eq!(e.field.as_deref(), Some("client"));
        let e = err(r#"{"id": "l", "client": "acme", "location": "branch", "kind": "server"}"#);
        assert_eq!(e.field.as_deref(), Some("location"));
    }

    #[test]
    fn a_policy_group_of_the_other_kind_is_an_error() {
        let e =
            err(r#"{"id": "s", "client": "acme", "kind": "server", "policy_group": "standard"}"#);
        assert_eq!(e.field.as_deref(), Some("policy_group"));
        let e = err(
            r#"{"id": "w", "client": "acme", "kind": "workstation", "policy_group": "auto_install_auto_reboot"}"#,
        );
        assert_eq!(e.field.as_deref(), Some("policy_group"));
    }

    #[test]
    fn malformed_json_names_the_file_and_position() {
        let e = parse_inventory("fleet.json", "{\"clients\": [\n  {\"id\": }").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("fleet.json: malformed JSON at line 2"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_client_record_is_named() {
        let e = parse_inventory(
            "i.json",
            r#"{"clients": [{"id": "c", "timezone": "Nowhere/Land"}], "endpoints": []}"#,
        )
        .unwrap_err();
        assert_eq!(
            (e.record.as_deref(), e.field.as_deref()),
            (Some("client \"c\""), Some("timezone"))
        );
        let e = parse_inventory("i.json", r#"{"clients": [{"id": "c", "locations": [{"id": "a", "patching_disabled": 1}]}], "endpoints": []}"#).unwrap_err();
        assert_eq!(
            (e.record.as_deref(), e.field.as_deref()),
            (Some("client \"c\""), Some("locations[0].patching_disabled"))
        );
    }

    #[test]
    fn a_catalog_error_names_the_patch_and_field() {
        let e = parse_catalog(
            "cat.json",
            r#"{"patches": [{"id": "KB1", "vendor": "microsoft", "classification": "hotfix"}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            (e.record.as_deref(), e.field.as_deref()),
            (Some("patch \"KB1\""), Some("classification"))
        );
        let e = parse_catalog("cat.json", r#"{"patches": [{"id": "KB2", "vendor": "microsoft", "classification": "security", "severity": "urgent"}]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("severity"));
        let e = parse_catalog("cat.json", r#"{"patches": [{"id": "KB3", "vendor": "microsoft", "classification": "update", "released": "yesterday"}]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("released"));
        let e = parse_catalog("cat.json", r#"{"patches": [{"id": "KB4", "vendor": "x", "classification": "update"}, {"id": "KB4", "vendor": "x", "classification": "update"}]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("id"));
    }
}
