//! GIVEN any generated fleet, any cycle and any release instant WHEN it is planned THEN the plan
//! keeps the operating model's promises.

use std::collections::HashMap;

use chrono::{Duration, LocalResult, TimeZone};
use patchflow_core::contract::inventory_from_doc;
use patchflow_core::ids::CycleId;
use patchflow_core::model::{Catalog, EndpointKind};
use patchflow_core::plan::{plan, Plan, Release};
use patchflow_core::policy::Policy;
use patchflow_core::rules::cadence::RebootPlan;
use patchflow_core::rules::exception::ExceptionKind;
use patchflow_core::rules::scope::Scope;
use patchflow_core::rules::waves::Wave;
use patchflow_core::trace::Node;
use patchflow_sim::fleet::{generate, FleetSpec};
use proptest::prelude::*;

fn planned(
    endpoints: usize,
    clients: usize,
    seed: u64,
    cycle: CycleId,
    shift_hours: Option<i64>,
) -> Plan {
    let inv = inventory_from_doc(
        "generated",
        generate(FleetSpec {
            endpoints,
            clients,
            seed,
        }),
    )
    .unwrap();
    let policy = Policy::default();
    let base = Release::of(cycle, &policy, None);
    let release = Release::of(
        cycle,
        &policy,
        shift_hours.map(|h| base.released_at + Duration::hours(h)),
    );
    plan(&inv, &Catalog::default(), release, &policy)
}

fn check(p: &Plan) -> Result<(), TestCaseError> {
    let policy = Policy::default();
    let released = p.release.released_at;
    let soak = policy.rollout.soak;
    let ws_pilot_end = p
        .endpoints
        .iter()
        .filter(|e| e.kind == EndpointKind::Workstation && e.wave == Some(Wave::Pilot))
        .filter_map(|e| e.install.map(|i| i.window.end))
        .max();
    let mut server_pilot_end = HashMap::new();
    let mut servers_in_scope: HashMap<_, usize> = HashMap::new();
    for e in p
        .endpoints
        .iter()
        .filter(|e| e.kind == EndpointKind::Server && e.scope == Scope::InScope)
    {
        *servers_in_scope.entry(&e.client).or_default() += 1;
        if e.wave == Some(Wave::Pilot) {
            let end = e.install.unwrap().window.end;
            let slot = server_pilot_end.entry(&e.client).or_insert(end);
            *slot = (*slot).max(end);
        }
    }

    for e in &p.endpoints {
        let entries = e.trace.entries();
        prop_assert!(!entries.is_empty());
        prop_assert_eq!(entries[0].node, Node::InventorySync);
        if e.scope != Scope::InScope {
            prop_assert!(
                e.wave.is_none() && e.install.is_none() && e.reboot.is_none(),
                "{}",
                e.id
            );
            let kind = p
                .exception_register
                .iter()
                .find(|x| x.subject == e.id.as_str())
                .map(|x| x.kind);
            let expected = match e.scope {
                Scope::Excluded => Some(ExceptionKind::ClientExcluded),
                Scope::DoNotPatch => Some(ExceptionKind::DoNotPatch),
                _ => None,
            };
            prop_assert_eq!(kind, expected, "{} register entry", e.id);
            continue;
        }
        let install = e.install.expect("in scope has an install");
        let w = install.window;
        prop_assert!(w.start >= released, "{} starts before the release", e.id);
        prop_assert!(w.end > w.start);

        // Its local start is the policy's, unless that local time did not exist that day.
        let daily = e.track.daily(&policy);
        let local = w.start.with_timezone(&e.tz);
        if local.time() != daily.start().time() {
            let anchor = local.date_naive().and_time(daily.start().time());
            prop_assert!(
                matches!(e.tz.from_local_datetime(&anchor), LocalResult::None),
                "{} starts at {}",
                e.id,
                local
            );
        }

        match (e.kind, e.wave) {
            (EndpointKind::Workstation, Some(Wave::Production)) => {
                let gate = ws_pilot_end.map_or(released + soak, |end| end + soak);
                prop_assert!(
                    w.start >= gate,
                    "{} production before the workstation soak",
                    e.id
                );
            }
            (EndpointKind::Server, Some(Wave::Production)) if servers_in_scope[&e.client] >= 2 => {
                let end = server_pilot_end.get(&e.client).copied();
                prop_assert!(
                    end.is_some(),
                    "{}: a client with two servers always has a pilot",
                    e.client
                );
                prop_assert!(
                    w.start >= end.unwrap() + soak,
                    "{} production before its client's soak",
                    e.id
                );
            }
            (_, None) => prop_assert!(false, "{} in scope without a wave", e.id),
            _ => {}
        }

        match e.reboot.expect("in scope has a reboot") {
            RebootPlan::Automatic(r) => prop_assert_eq!(r, w),
            RebootPlan::Technician => prop_assert_eq!(e.kind, EndpointKind::Server),
            RebootPlan::User { forced, .. } => {
                prop_assert!(forced.start >= w.end + policy.workstation.force_reboot_after);
                prop_assert!(
                    forced.start
                        < w.end
                            + policy.workstation.force_reboot_after
                            + Duration::days(1)
                            + Duration::hours(3)
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_plan_keeps_the_operating_models_promises(
        endpoints in 1usize..400,
        clients in 1usize..12,
        seed in any::<u64>(),
        year in 2026i32..2029,
        month in 1u32..=12,
        shift in proptest::option::of(-48i64..400),
    ) {
        let cycle = CycleId::new(year, month).unwrap();
        check(&planned(endpoints, clients, seed, cycle, shift))?;
    }
}

#[test]
fn a_large_generated_fleet_plans_with_every_promise_kept() {
    let p = planned(20_000, 150, 2026, "2026-12".parse().unwrap(), None);
    assert_eq!(p.endpoints.len(), 20_000);
    check(&p).unwrap();
}

#[test]
fn the_same_inputs_always_give_the_same_plan() {
    let a = planned(500, 9, 5, "2027-03".parse().unwrap(), None);
    let b = planned(500, 9, 5, "2027-03".parse().unwrap(), None);
    assert_eq!(a, b);
}
