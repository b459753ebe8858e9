//! Every node of the seed flow is decided by some rule: run each rule over a fleet that touches
//! every branch and check that the traces name every node.

use std::collections::BTreeSet;

use chrono::{Duration, TimeZone, Utc};
use patchflow_core::contract::{parse_catalog, parse_inventory};
use patchflow_core::ids::EndpointId;
use patchflow_core::model::EndpointKind;
use patchflow_core::plan::{plan, Release};
use patchflow_core::policy::Policy;
use patchflow_core::rules::cadence::{check_posture, PowerState};
use patchflow_core::rules::closure::{check_closure, ClosureRecord, EndpointClosure};
use patchflow_core::rules::commands::rmm_commands;
use patchflow_core::rules::failure::escalate;
use patchflow_core::rules::validation::{judge, Check, CheckResult};
use patchflow_core::rules::waves::{promotion_gate, PilotHealth};
use patchflow_core::trace::{Node, Trace};

const INVENTORY: &str = r#"{
  "clients": [{"id": "c", "timezone": "Europe/Berlin", "locations": [{"id": "hq"}, {"id": "lab", "patching_disabled": true}]}],
  "endpoints": [
    {"id": "dc", "client": "c", "kind": "server", "role": "domain_controller", "policy_group": "auto_install_auto_reboot", "unattended_reboot_approved": true},
    {"id": "fs", "client": "c", "kind": "server", "role": "file", "critical": true},
    {"id": "nop", "client": "c", "kind": "server", "policy_group": "do_not_patch"},
    {"id": "ws1", "client": "c", "kind": "workstation", "ring": "pilot", "track": "daytime"},
    {"id": "ws2", "client": "c", "kind": "workstation"},
    {"id": "ws3", "client": "c", "kind": "workstation", "policy_group": "do_not_patch"},
    {"id": "ws4", "client": "c", "kind": "workstation", "client_excluded": true},
    {"id": "ws5", "client": "c", "location": "lab", "kind": "workstation"}
  ]
}"#;

const CATALOG: &str = r#"{"patches": [
  {"id": "KB1", "vendor": "microsoft", "classification": "security", "severity": "critical"},
  {"id": "KB2", "vendor": "microsoft", "classification": "driver"},
  {"id": "APP", "vendor": "adobe", "classification": "update"}
]}"#;

#[test]
fn every_seed_node_is_decided_by_some_rule() {
    let policy = Policy::default();
    let inv = parse_inventory("inventory", INVENTORY).unwrap();
    let cat = parse_catalog("catalog", CATALOG).unwrap();
    let p = plan(
        &inv,
        &cat,
        Release::of("2026-12".parse().unwrap(), &policy, None),
        &policy,
    );

    let mut seen: BTreeSet<Node> = BTreeSet::new();
    let mut t = Trace::new();
    for ep in &p.endpoints {
        seen.extend(ep.trace.entries().iter().map(|e| e.node));
        rmm_commands(ep, &[], &policy, &mut t);
    }
    seen.extend(p.approvals.iter().map(|a| a.node));

    let now = Utc.with_ymd_and_hms(2026, 12, 20, 12, 0, 0).unwrap();
    let healthy = PilotHealth {
        endpoints: 1,
        healthy: 1,
        failed: 0,
        critical_failures: 0,
        healthy_at: None,
    };
    promotion_gate(
        EndpointKind::Workstation,
        now,
        now - Duration::days(1),
        healthy,
        &mut t,
    );
    promotion_gate(
        EndpointKind::Workstation,
        now,
        now + Duration::days(1),
        healthy,
        &mut t,
    );
    for e in inv.endpoints() {
        judge(
            e,
            &[CheckResult {
                check: Check::AgentHealthy,
                passed: true,
            }],
            &mut t,
        );
        escalate(e, now, None, &policy, &mut t);
    }
    check_posture(PowerState::Sleeping, &mut t);
    for kind in [EndpointKind::Server, EndpointKind::Workstation] {
        let record = ClosureRecord {
            kind,
            ticket_updated: true,
            compliance_report_attached: true,
            evidence_retained: true,
            endpoints: vec![EndpointClosure {
                endpoint: EndpointId::parse("dc").unwrap(),
                reboot_confirmed_at: Some(now),
                checks_passed: true,
                failure_ticket: None,
            }],
        };
        check_closure(&record, &mut t).unwrap();
    }
    seen.extend(t.entries().iter().map(|e| e.node));

    let missing: Vec<&str> = Node::ALL
        .iter()
        .filter(|n| !seen.contains(n))
        .map(|n| n.id())
        .collect();
    assert!(missing.is_empty(), "no rule decides: {missing:?}");
}
