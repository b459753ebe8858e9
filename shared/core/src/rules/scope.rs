//! Phase 1, scope and exclusions, and the grouping nodes that can take an endpoint out of
//! automation (Do Not Patch). First match wins: disabled, client-excluded, Do Not Patch.

use serde::Serialize;

use crate::model::{
    Criticality, CriticalitySource, Endpoint, Location, Profile, ServerPolicyGroup, ServerRole,
    WorkstationPolicyGroup,
};
use crate::reason as r;
use crate::rules::exception::{lifted_by, ExceptionEntry, ExceptionKind};
use crate::trace::{Facts, Node, Trace, TraceEntry};

/// Whether and why an endpoint takes part in the cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Patching disabled on the agent or its location: nothing is done until cleared.
    Disabled,
    /// Standing client exclusion: in the exception register.
    Excluded,
    /// Policy group Do Not Patch: in the exception register.
    DoNotPatch,
    /// Patched this cycle.
    InScope,
}

impl Scope {
    /// The scope's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Disabled => "disabled",
            Scope::Excluded => "excluded",
            Scope::DoNotPatch => "do_not_patch",
            Scope::InScope => "in_scope",
        }
    }
}

/// What the scope rules decided for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeDecision {
    /// The scope.
    pub scope: Scope,
    /// The register entry, for exclusions and Do Not Patch.
    pub exception: Option<ExceptionEntry>,
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Decides an endpoint's scope and records the grouping steps (classification, policy group,
/// role, track, ring) on the way, as the seed does before its Do Not Patch check.
/// `location` is the endpoint's location record, if it names one.
pub fn decide_scope(
    endpoint: &Endpoint,
    location: Option<&Location>,
    trace: &mut Trace,
) -> ScopeDecision {
    trace.push(TraceEntry::new(
        Node::InventorySync,
        "accepted",
        r::INVENTORY_ACCEPTED,
    ));

    let location_disabled = location.is_some_and(|l| l.patching_disabled);
    if endpoint.patching_disabled || location_disabled {
        let (reason, facts) = if endpoint.patching_disabled {
            (
                r::ENDPOINT_PATCHING_DISABLED,
                Facts::Static("agent flag set"),
            )
        } else {
            let loc = location.map(|l| l.id.as_str()).unwrap_or_default();
            (
                r::LOCATION_PATCHING_DISABLED,
                Facts::from(format!("location {loc}")),
            )
        };
        trace.push(TraceEntry::new(Node::Disabled, "yes", reason).with_facts(facts));
        return ScopeDecision {
            scope: Scope::Disabled,
            exception: None,
        };
    }
    trace.push(TraceEntry::new(Node::Disabled, "no", r::NOT_DISABLED));

    if endpoint.client_excluded {
        trace.push(
            TraceEntry::new(Node::ClientExcluded, "yes", r::CLIENT_EXCLUSION)
                .with_facts(signed_facts(endpoint)),
        );
        return ScopeDecision {
            scope: Scope::Excluded,
            exception: Some(ExceptionEntry {
                subject: endpoint.id.to_string(),
                kind: ExceptionKind::ClientExcluded,
                reason: r::CLIENT_EXCLUSION.into(),
                node: Node::ClientExcluded,
                client: Some(endpoint.client.clone()),
                reference: endpoint.exclusion_ref.clone(),
                engineer: None,
                engineer_reason: None,
                signed_at: None,
                change_requires: "signed client approval".into(),
                signed: endpoint.exclusion_ref.is_some(),
                approval_ref: endpoint.exclusion_ref.clone(),
                lifted_by: lifted_by(
                    ExceptionKind::ClientExcluded,
                    endpoint.exclusion_ref.as_deref(),
                ),
            }),
        };
    }
    trace.push(TraceEntry::new(Node::ClientExcluded, "no", r::NOT_EXCLUDED));

    let group_reason = if endpoint.provenance.policy_group {
        r::POLICY_GROUP_FROM_INVENTORY
    } else {
        r::POLICY_GROUP_DEFAULT
    };
    let (dnp_node, do_not_patch) = match &endpoint.profile {
        Profile::Server(s) => {
            trace.push(TraceEntry::new(
                Node::Classify,
                "server",
                r::KIND_FROM_INVENTORY,
            ));
            trace.push(TraceEntry::new(
                Node::ServerPolicyGroup,
                server_policy_group_name(s.policy_group),
                group_reason,
            ));
            let reason = match s.criticality_source {
                CriticalitySource::Override => r::CRITICALITY_OVERRIDE,
                CriticalitySource::Role => r::CRITICALITY_FROM_ROLE,
                CriticalitySource::Default => r::CRITICALITY_DEFAULT,
            };
            let mut role = TraceEntry::new(Node::ServerRoleGroup, crit_name(s.criticality), reason);
            if let Some(role_name) = s.role {
                role = role.with_facts(role_facts(role_name));
            }
            trace.push(role);
            (
                Node::ServerDoNotPatch,
                s.policy_group == ServerPolicyGroup::DoNotPatch,
            )
        }
        Profile::Workstation(w) => {
            trace.push(TraceEntry::new(
                Node::Classify,
                "workstation",
                r::KIND_FROM_INVENTORY,
            ));
            let track_reason = if endpoint.provenance.track {
                r::TRACK_FROM_INVENTORY
            } else {
                r::TRACK_DEFAULT
            };
            trace.push(
                TraceEntry::new(Node::WorkstationPolicyTrack, w.track.as_str(), track_reason)
                    .with_facts(format!(
                        "policy group {} ({})",
                        match w.policy_group {
                            WorkstationPolicyGroup::DoNotPatch => "do_not_patch",
                            WorkstationPolicyGroup::Standard => "standard",
                        },
                        if endpoint.provenance.policy_group {
                            "from the inventory"
                        } else {
                            "default"
                        }
                    )),
            );
            let ring_reason = if endpoint.provenance.ring {
                r::RING_FROM_INVENTORY
            } else {
                r::RING_DEFAULT
            };
            trace.push(TraceEntry::new(
                Node::WorkstationRing,
                endpoint.ring.as_str(),
                ring_reason,
            ));
            (
                Node::WorkstationDoNotPatch,
                w.policy_group == WorkstationPolicyGroup::DoNotPatch,
            )
        }
    };

    if do_not_patch {
        trace.push(
            TraceEntry::new(dnp_node, yes_no(true), r::DO_NOT_PATCH_POLICY)
                .with_facts(signed_facts(endpoint)),
        );
        return ScopeDecision {
            scope: Scope::DoNotPatch,
            exception: Some(ExceptionEntry {
                subject: endpoint.id.to_string(),
                kind: ExceptionKind::DoNotPatch,
                reason: r::DO_NOT_PATCH_POLICY.into(),
                node: dnp_node,
                client: Some(endpoint.client.clone()),
                reference: endpoint.exclusion_ref.clone(),
                engineer: None,
                engineer_reason: None,
                signed_at: None,
                change_requires: "approval to change the policy group".into(),
                signed: endpoint.exclusion_ref.is_some(),
                approval_ref: endpoint.exclusion_ref.clone(),
                lifted_by: lifted_by(ExceptionKind::DoNotPatch, endpoint.exclusion_ref.as_deref()),
            }),
        };
    }
    trace.push(TraceEntry::new(
        dnp_node,
        yes_no(false),
        r::PATCH_POLICY_ALLOWS,
    ));
    ScopeDecision {
        scope: Scope::InScope,
        exception: None,
    }
}

/// The signed approval an exclusion or Do Not Patch rests on, in words.
fn signed_facts(endpoint: &Endpoint) -> String {
    match &endpoint.exclusion_ref {
        Some(reference) => format!("signed approval {reference}"),
        None => "no signed approval on record (no exclusion_ref)".to_owned(),
    }
}

/// The inventory name of a server policy group.
pub fn server_policy_group_name(g: ServerPolicyGroup) -> &'static str {
    match g {
        ServerPolicyGroup::DoNotPatch => "do_not_patch",
        ServerPolicyGroup::ManualPatchAndReboot => "manual_patch_and_reboot",
        ServerPolicyGroup::AutoInstallManualReboot => "auto_install_manual_reboot",
        ServerPolicyGroup::AutoInstallAutoReboot => "auto_install_auto_reboot",
    }
}

fn role_facts(role: ServerRole) -> &'static str {
    match role {
        ServerRole::DomainController => "role domain_controller",
        ServerRole::Sql => "role sql",
        ServerRole::App => "role app",
        ServerRole::File => "role file",
        ServerRole::Web => "role web",
        ServerRole::Utility => "role utility",
        ServerRole::Infrastructure => "role infrastructure",
        ServerRole::Backup => "role backup",
        ServerRole::Dr => "role dr",
        ServerRole::VirtualizationHost => "role virtualization_host",
        ServerRole::Exchange => "role exchange",
        ServerRole::Smtp => "role smtp",
        ServerRole::Management => "role management",
    }
}

fn crit_name(c: Criticality) -> &'static str {
    c.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::LocationId;
    use crate::testing::{server, workstation};

    fn decide(e: &Endpoint, loc: Option<&Location>) -> (ScopeDecision, Trace) {
        let mut t = Trace::new();
        let d = decide_scope(e, loc, &mut t);
        (d, t)
    }

    #[test]
    fn an_endpoint_with_its_agent_flag_set_is_disabled_and_stops_there() {
        let mut e = workstation("ws-1");
        e.patching_disabled = true;
        e.client_excluded = true;
        let (d, t) = decide(&e, None);
        assert_eq!(d.scope, Scope::Disabled);
        assert_eq!(
            d.exception, None,
            "disabled endpoints are not exceptions, just stopped"
        );
        assert_eq!(t.entries().last().unwrap().node, Node::Disabled);
        assert_eq!(
            t.entries().last().unwrap().reason,
            r::ENDPOINT_PATCHING_DISABLED
        );
    }

    #[test]
    fn an_endpoint_at_a_disabled_location_is_disabled() {
        let e = workstation("ws-1");
        let loc = Location {
            id: LocationId::parse("lab").unwrap(),
            patching_disabled: true,
        };
        let (d, t) = decide(&e, Some(&loc));
        assert_eq!(d.scope, Scope::Disabled);
        assert_eq!(
            t.find(Node::Disabled).unwrap().reason,
            r::LOCATION_PATCHING_DISABLED
        );
    }

    #[test]
    fn a_client_excluded_endpoint_enters_the_register_with_its_signed_reference() {
        let mut e = server("srv-1");
        e.client_excluded = true;
        e.exclusion_ref = Some("SIGNED-1".into());
        let (d, t) = decide(&e, None);
        assert_eq!(d.scope, Scope::Excluded);
        let x = d.exception.unwrap();
        assert_eq!(
            (x.kind, x.reference.as_deref()),
            (ExceptionKind::ClientExcluded, Some("SIGNED-1"))
        );
        assert_eq!(t.find(Node::ClientExcluded).unwrap().outcome, "yes");
        assert!(
            t.find(Node::Classify).is_none(),
            "processing stops at the exclusion"
        );
    }

    #[test]
    fn a_do_not_patch_server_enters_the_register_after_its_grouping() {
        let mut e = server("srv-1");
        if let Profile::Server(s) = &mut e.profile {
            s.policy_group = ServerPolicyGroup::DoNotPatch;
        }
        let (d, t) = decide(&e, None);
        assert_eq!(d.scope, Scope::DoNotPatch);
        assert_eq!(d.exception.unwrap().node, Node::ServerDoNotPatch);
        assert!(t.find(Node::ServerRoleGroup).is_some());
    }

    #[test]
    fn a_do_not_patch_workstation_enters_the_register() {
        let mut e = workstation("ws-1");
        if let Profile::Workstation(w) = &mut e.profile {
            w.policy_group = WorkstationPolicyGroup::DoNotPatch;
        }
        let (d, _) = decide(&e, None);
        assert_eq!(d.scope, Scope::DoNotPatch);
        assert_eq!(d.exception.unwrap().node, Node::WorkstationDoNotPatch);
    }

    #[test]
    fn an_ordinary_endpoint_is_in_scope_with_every_check_traced() {
        let (d, t) = decide(&server("srv-1"), None);
        assert_eq!(d.scope, Scope::InScope);
        for node in [
            Node::Disabled,
            Node::ClientExcluded,
            Node::Classify,
            Node::ServerDoNotPatch,
        ] {
            assert!(t.find(node).is_some(), "{node} missing");
        }
        assert_eq!(t.find(Node::ServerDoNotPatch).unwrap().outcome, "no");
    }
}
