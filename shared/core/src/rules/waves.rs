//! Staged rollout: which endpoints pilot, when production may start (the soak gate), and whether
//! a soaked pilot is healthy enough to promote (the health gate).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Criticality, Endpoint, EndpointKind};
use crate::reason as r;
use crate::rules::validation::{judge, CheckResult, Validation};
use crate::trace::{Node, Trace, TraceEntry};

/// Rollout wave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wave {
    /// First: the pilot (and test) ring.
    Pilot,
    /// After the pilot's soak.
    Production,
}

impl Wave {
    /// `pilot` or `production`.
    pub fn as_str(self) -> &'static str {
        match self {
            Wave::Pilot => "pilot",
            Wave::Production => "production",
        }
    }
}

/// What a wave's first window waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Start {
    /// The first window at or after the release (pilots, and a client's only server).
    AtRelease,
    /// The first window at or after the pilot's soak gate.
    AfterSoak,
}

/// A wave assignment and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaveChoice {
    /// The wave.
    pub wave: Wave,
    /// What its window waits for.
    pub start: Start,
    /// Reason code.
    pub reason: &'static str,
}

impl WaveChoice {
    fn pilot(reason: &'static str) -> Self {
        Self {
            wave: Wave::Pilot,
            start: Start::AtRelease,
            reason,
        }
    }

    fn production(reason: &'static str) -> Self {
        Self {
            wave: Wave::Production,
            start: Start::AfterSoak,
            reason,
        }
    }
}

/// Assigns waves to one client's in-scope servers (the slice order is kept in the result).
/// One server: production directly. Two or more: the pilot- and test-ring servers pilot, or if
/// there is none, the single least critical server (P3 before P2 before P1; ties by hostname,
/// then id); everyone else is production.
pub fn server_waves(servers: &[&Endpoint]) -> Vec<WaveChoice> {
    if servers.len() == 1 {
        // No test tier: production, but in the first window after the release.
        return vec![WaveChoice {
            wave: Wave::Production,
            start: Start::AtRelease,
            reason: r::SINGLE_SERVER,
        }];
    }
    let any_ring_pilot = servers.iter().any(|e| e.ring.is_pilot());
    let lowest = if any_ring_pilot {
        None
    } else {
        servers
            .iter()
            .enumerate()
            .max_by(|(_, a), (_, b)| {
                criticality(a)
                    .cmp(&criticality(b))
                    .then_with(|| b.hostname.cmp(&a.hostname))
                    .then_with(|| b.id.cmp(&a.id))
            })
            .map(|(i, _)| i)
    };
    servers
        .iter()
        .enumerate()
        .map(|(i, e)| {
            if any_ring_pilot && e.ring.is_pilot() {
                WaveChoice::pilot(r::PILOT_BY_RING)
            } else if lowest == Some(i) {
                WaveChoice::pilot(r::PILOT_BY_LOWEST_CRITICALITY)
            } else {
                WaveChoice::production(r::PRODUCTION_AFTER_PILOT)
            }
        })
        .collect()
}

fn criticality(e: &Endpoint) -> Criticality {
    e.server().map_or(Criticality::P2, |s| s.criticality)
}

/// The wave of an in-scope workstation: pilot and test rings pilot, everyone else is production.
pub fn workstation_wave(endpoint: &Endpoint) -> WaveChoice {
    if endpoint.ring.is_pilot() {
        WaveChoice::pilot(r::WORKSTATION_PILOT_RING)
    } else {
        WaveChoice::production(r::WORKSTATION_PRODUCTION_RING)
    }
}

/// The earliest instant production may start: the latest pilot install-window end plus the soak,
/// or with no pilot, the release plus the soak. Returns the instant and its reason code.
pub fn soak_gate(
    latest_pilot_end: Option<DateTime<Utc>>,
    released_at: DateTime<Utc>,
    soak: Duration,
) -> (DateTime<Utc>, &'static str) {
    match latest_pilot_end {
        Some(end) => (end + soak, r::SOAK_AFTER_PILOT_WINDOWS),
        None => (released_at + soak, r::SOAK_AFTER_RELEASE),
    }
}

/// What a pilot tier has reported so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PilotHealth {
    /// Endpoints in the pilot tier.
    pub endpoints: usize,
    /// Endpoints validated healthy after reboot.
    pub healthy: usize,
    /// Endpoints that failed install, reboot or validation (and are not resolved).
    pub failed: usize,
    /// Of the failures, those on critical systems (P1, or flagged critical).
    pub critical_failures: usize,
    /// The latest validation (forced reboots included) among its validated runs. Once every
    /// run is validated, this is the instant the pilot became healthy ([`PilotHealth::healthy_since`]);
    /// a retried run's validation is its retry's, so a retry restarts the soak.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_at: Option<DateTime<Utc>>,
}

impl PilotHealth {
    /// Counts one run validated healthy at `at` (`None`: not known, e.g. a run that had nothing
    /// to install and was done from the cycle's opening).
    pub fn validated(&mut self, at: Option<DateTime<Utc>>) {
        self.endpoints += 1;
        self.healthy += 1;
        self.healthy_at = self.healthy_at.max(at);
    }

    /// Counts one run with an open failure.
    pub fn failed(&mut self, critical: bool) {
        self.endpoints += 1;
        self.failed += 1;
        if critical {
            self.critical_failures += 1;
        }
    }

    /// Counts one run still on its way.
    pub fn pending(&mut self) {
        self.endpoints += 1;
    }

    /// Every pilot endpoint is validated healthy.
    pub fn all_healthy(&self) -> bool {
        self.failed == 0 && self.healthy == self.endpoints
    }

    /// Since when the pilot is healthy: its latest validation, once every run is validated.
    pub fn healthy_since(&self) -> Option<DateTime<Utc>> {
        self.healthy_at.filter(|_| self.all_healthy())
    }

    /// With every run validated but none of them dated (no runs, or only runs done from the
    /// cycle's opening), healthy since `fallback` (e.g. the tier's validation): a pilot known
    /// healthy always has a soak that can end.
    pub fn since_or(mut self, fallback: DateTime<Utc>) -> Self {
        if self.healthy_at.is_none() && self.all_healthy() {
            self.healthy_at = Some(fallback);
        }
        self
    }
}

/// The soak counted from the moment the pilot was actually healthy: production may start at the
/// planned gate (the last planned pilot window's end plus the soak) or, when later, the pilot's
/// healthy instant plus the soak. A pilot not yet healthy keeps the planned gate (the health gate
/// holds production meanwhile).
pub fn soak_gate_from_health(
    planned: DateTime<Utc>,
    health: &PilotHealth,
    soak: Duration,
) -> DateTime<Utc> {
    match health.healthy_since() {
        Some(at) => planned.max(at + soak),
        None => planned,
    }
}

/// When a validated pilot's own soak ends (its healthy instant plus the soak), or `None` when it
/// is not healthy. Until then it is re-checked daily and not archived.
pub fn pilot_soak_end(health: &PilotHealth, soak: Duration) -> Option<DateTime<Utc>> {
    health.healthy_since().map(|at| at + soak)
}

/// What a soak re-check read of one pilot endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoakReading {
    /// The agent online, not in maintenance mode, every post-reboot check passing.
    Healthy,
    /// Nothing to judge today (the agent offline, e.g. a laptop asleep, or in maintenance mode):
    /// a finding, not a failure; a later check reads it again.
    NotChecked(String),
    /// Monitors failing or not reporting: the endpoint fails its soak.
    Unhealthy(String),
}

/// What a soak re-check found of a pilot endpoint. Healthy is every post-reboot check that
/// applies to the endpoint reporting and passing (the validation's own rule); an agent offline or
/// in maintenance mode is not checked (no failure: its monitors say nothing today).
pub fn soak_recheck(
    endpoint: &Endpoint,
    online: bool,
    maintenance: bool,
    checks: &[CheckResult],
    trace: &mut Trace,
) -> SoakReading {
    let mut absent = Vec::new();
    if !online {
        absent.push("agent offline");
    }
    if maintenance {
        absent.push("agent in maintenance mode");
    }
    if !absent.is_empty() {
        let words = format!("not checked: {}", absent.join("; "));
        trace.push(
            TraceEntry::new(Node::PilotSoak, "not_checked", r::SOAK_INCOMPLETE)
                .with_facts(format!("soak re-check: {words}")),
        );
        return SoakReading::NotChecked(words);
    }
    let mut wrong = Vec::new();
    if let Validation::Unhealthy { failed, missing } = judge(endpoint, checks, trace) {
        let names = |c: &[crate::rules::validation::Check]| {
            c.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
        };
        if !failed.is_empty() {
            wrong.push(format!("monitors failing: {}", names(&failed)));
        }
        if !missing.is_empty() {
            wrong.push(format!("monitors not reporting: {}", names(&missing)));
        }
    }
    if wrong.is_empty() {
        trace.push(
            TraceEntry::new(Node::PilotSoak, "healthy", r::ALL_CHECKS_PASSED)
                .with_facts("soak re-check: agent online, every post-reboot check passing"),
        );
        return SoakReading::Healthy;
    }
    let words = wrong.join("; ");
    trace.push(
        TraceEntry::new(Node::PilotSoak, "unhealthy", r::PILOT_UNHEALTHY)
            .with_facts(format!("soak re-check: {words}")),
    );
    SoakReading::Unhealthy(words)
}

/// The promotion decision for a production tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Promotion {
    /// Soak passed and the pilot is healthy: deploy production.
    Promote,
    /// The soak has not elapsed.
    WaitForSoak {
        /// When it does.
        until: DateTime<Utc>,
    },
    /// The pilot is unhealthy or incomplete: hold production until it is resolved.
    Hold,
    /// A critical pilot failed: production is blocked until the root cause is resolved.
    Blocked,
}

/// The soak and health gates for promoting production. Failures hold (or, when critical, block)
/// production at once, whatever the soak clock says.
pub fn promotion_gate(
    kind: EndpointKind,
    now: DateTime<Utc>,
    gate: DateTime<Utc>,
    health: PilotHealth,
    trace: &mut Trace,
) -> Promotion {
    let node = match kind {
        EndpointKind::Server => Node::ServerPilotFirst,
        EndpointKind::Workstation => Node::PilotVerified,
    };
    let facts = format!(
        "{} pilot endpoints: {} healthy, {} failed ({} critical)",
        health.endpoints, health.healthy, health.failed, health.critical_failures
    );
    if health.critical_failures > 0 {
        trace.push(TraceEntry::new(node, "blocked", r::PRODUCTION_BLOCKED).with_facts(facts));
        return Promotion::Blocked;
    }
    if health.failed > 0 {
        trace.push(TraceEntry::new(node, "hold", r::PILOT_UNHEALTHY).with_facts(facts));
        return Promotion::Hold;
    }
    if now < gate {
        trace.push(TraceEntry::new(Node::PilotSoak, "wait", r::SOAK_INCOMPLETE));
        return Promotion::WaitForSoak { until: gate };
    }
    if health.healthy < health.endpoints {
        trace.push(TraceEntry::new(node, "hold", r::PILOT_INCOMPLETE).with_facts(facts));
        return Promotion::Hold;
    }
    trace.push(TraceEntry::new(node, "yes", r::PILOT_HEALTHY).with_facts(facts));
    Promotion::Promote
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CriticalitySource, Profile, Ring};
    use crate::testing::{server, workstation};
    use chrono::TimeZone;

    fn srv(id: &str, host: &str, crit: Criticality, ring: Ring) -> Endpoint {
        let mut e = server(id);
        e.hostname = host.into();
        e.ring = ring;
        if let Profile::Server(s) = &mut e.profile {
            s.criticality = crit;
            s.criticality_source = CriticalitySource::Override;
        }
        e
    }

    fn waves(list: &[Endpoint]) -> Vec<Wave> {
        let refs: Vec<&Endpoint> = list.iter().collect();
        server_waves(&refs).into_iter().map(|w| w.wave).collect()
    }

    #[test]
    fn a_single_server_goes_straight_to_production() {
        let one = [srv("a", "A", Criticality::P1, Ring::Pilot)];
        assert_eq!(
            server_waves(&one.iter().collect::<Vec<_>>())[0].reason,
            r::SINGLE_SERVER
        );
        assert_eq!(waves(&one), [Wave::Production]);
        assert_eq!(
            server_waves(&one.iter().collect::<Vec<_>>())[0].start,
            Start::AtRelease
        );
        let two = [
            srv("a", "A", Criticality::P1, Ring::Production),
            srv("b", "B", Criticality::P2, Ring::Production),
        ];
        let starts: Vec<Start> = server_waves(&two.iter().collect::<Vec<_>>())
            .iter()
            .map(|w| w.start)
            .collect();
        assert_eq!(starts, [Start::AfterSoak, Start::AtRelease]);
    }

    #[test]
    fn with_two_servers_and_none_in_a_pilot_ring_the_least_critical_pilots() {
        let list = [
            srv("dc", "DC", Criticality::P1, Ring::Production),
            srv("file", "FILE", Criticality::P2, Ring::Production),
        ];
        assert_eq!(waves(&list), [Wave::Production, Wave::Pilot]);
    }

    #[test]
    fn the_least_critical_tie_is_broken_by_hostname_then_id() {
        let list = [
            srv("b", "BKP2", Criticality::P3, Ring::Production),
            srv("a", "BKP1", Criticality::P3, Ring::Production),
            srv("z", "BKP1", Criticality::P3, Ring::Production),
            srv("x", "AAA", Criticality::P1, Ring::Production),
        ];
        assert_eq!(
            waves(&list),
            [
                Wave::Production,
                Wave::Pilot,
                Wave::Production,
                Wave::Production
            ]
        );
    }

    #[test]
    fn every_pilot_or_test_ring_server_pilots_and_no_other() {
        let list = [
            srv("a", "A", Criticality::P1, Ring::Pilot),
            srv("b", "B", Criticality::P3, Ring::Production),
            srv("c", "C", Criticality::P2, Ring::Test),
        ];
        assert_eq!(waves(&list), [Wave::Pilot, Wave::Production, Wave::Pilot]);
    }

    #[test]
    fn pilot_and_test_workstations_pilot_and_the_rest_are_production() {
        for (ring, wave) in [
            (Ring::Pilot, Wave::Pilot),
            (Ring::Test, Wave::Pilot),
            (Ring::Production, Wave::Production),
        ] {
            let mut e = workstation("w");
            e.ring = ring;
            assert_eq!(workstation_wave(&e).wave, wave);
        }
    }

    #[test]
    fn the_soak_gate_is_the_last_pilot_end_plus_soak_or_the_release_plus_soak() {
        let rel = Utc.with_ymd_and_hms(2026, 12, 8, 18, 0, 0).unwrap();
        let end = Utc.with_ymd_and_hms(2026, 12, 9, 23, 0, 0).unwrap();
        assert_eq!(
            soak_gate(Some(end), rel, Duration::days(7)).0,
            end + Duration::days(7)
        );
        assert_eq!(
            soak_gate(None, rel, Duration::days(7)).0,
            rel + Duration::days(7)
        );
    }

    #[test]
    fn production_is_promoted_only_after_the_soak_with_a_fully_healthy_pilot() {
        let gate = Utc.with_ymd_and_hms(2026, 12, 16, 23, 0, 0).unwrap();
        let healthy = PilotHealth {
            endpoints: 3,
            healthy: 3,
            failed: 0,
            critical_failures: 0,
            healthy_at: None,
        };
        let mut t = Trace::new();
        let k = EndpointKind::Workstation;
        assert_eq!(
            promotion_gate(k, gate - Duration::seconds(1), gate, healthy, &mut t),
            Promotion::WaitForSoak { until: gate }
        );
        assert_eq!(
            promotion_gate(k, gate, gate, healthy, &mut t),
            Promotion::Promote
        );
        let incomplete = PilotHealth {
            healthy: 2,
            ..healthy
        };
        assert_eq!(
            promotion_gate(k, gate, gate, incomplete, &mut t),
            Promotion::Hold
        );
    }

    fn at(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, d, h, 0, 0).unwrap()
    }

    #[test]
    fn the_pilot_is_healthy_since_its_latest_validation_once_every_run_is_validated() {
        let mut h = PilotHealth::default();
        h.validated(Some(at(9, 10)));
        h.validated(None);
        h.pending();
        assert_eq!(h.healthy_since(), None, "one run is still on its way");
        let mut h = PilotHealth::default();
        h.validated(Some(at(13, 8)));
        h.validated(Some(at(9, 10)));
        h.validated(None);
        assert_eq!(h.healthy_since(), Some(at(13, 8)));
        h.failed(false);
        assert_eq!(h.healthy_since(), None, "an open failure is not healthy");
        assert_eq!((h.endpoints, h.healthy, h.failed), (4, 3, 1));
    }

    #[test]
    fn the_soak_runs_from_the_pilots_health_not_from_the_planned_window() {
        let soak = Duration::days(7);
        let planned = at(16, 23);
        let mut h = PilotHealth::default();
        // A daytime pilot that rebooted only at its forced reboot on the 13th.
        h.validated(Some(at(9, 20)));
        h.validated(Some(at(13, 8)));
        assert_eq!(soak_gate_from_health(planned, &h, soak), at(20, 8));
        assert_eq!(pilot_soak_end(&h, soak), Some(at(20, 8)));
        // Healthy early: the planned gate still holds.
        let mut early = PilotHealth::default();
        early.validated(Some(at(9, 4)));
        assert_eq!(soak_gate_from_health(planned, &early, soak), planned);
        assert_eq!(pilot_soak_end(&early, soak), Some(at(16, 4)));
        // Not healthy yet: the planned gate, and no soak end.
        let mut pending = PilotHealth::default();
        pending.validated(Some(at(9, 4)));
        pending.pending();
        assert_eq!(soak_gate_from_health(planned, &pending, soak), planned);
        assert_eq!(pilot_soak_end(&pending, soak), None);
        // A retried pilot validated on the 12th: the soak restarts there.
        let mut retried = PilotHealth::default();
        retried.validated(Some(at(9, 4)));
        retried.validated(Some(at(12, 4)));
        assert_eq!(soak_gate_from_health(planned, &retried, soak), at(19, 4));
        let mut t = Trace::new();
        let k = EndpointKind::Workstation;
        let gate = soak_gate_from_health(planned, &retried, soak);
        assert_eq!(
            promotion_gate(k, at(17, 0), gate, retried, &mut t),
            Promotion::WaitForSoak { until: at(19, 4) }
        );
        assert_eq!(
            promotion_gate(k, at(19, 4), gate, retried, &mut t),
            Promotion::Promote
        );
    }

    #[test]
    fn a_soak_recheck_names_what_is_unhealthy() {
        use crate::rules::validation::Check;
        let e = workstation("w");
        let pass = |check| CheckResult {
            check,
            passed: true,
        };
        let all = [
            pass(Check::AgentHealthy),
            pass(Check::BaselineApps),
            pass(Check::Vpn),
        ];
        let mut t = Trace::new();
        assert_eq!(
            soak_recheck(&e, true, false, &all, &mut t),
            SoakReading::Healthy
        );
        let mut failing = all;
        failing[2].passed = false;
        let SoakReading::Unhealthy(words) = soak_recheck(&e, true, false, &failing, &mut t) else {
            panic!("a failing monitor is unhealthy");
        };
        assert!(words.contains("monitors failing: vpn"), "{words}");
        let SoakReading::Unhealthy(words) = soak_recheck(&e, true, false, &all[..1], &mut t) else {
            panic!("a monitor not reporting is unhealthy");
        };
        assert!(
            words.contains("not reporting: baseline_apps, vpn"),
            "{words}"
        );
        assert_eq!(t.entries().last().unwrap().reason, r::PILOT_UNHEALTHY);
    }

    #[test]
    fn an_offline_or_maintenance_agent_is_not_checked_not_failed() {
        let e = workstation("w");
        let mut t = Trace::new();
        let SoakReading::NotChecked(words) = soak_recheck(&e, false, false, &[], &mut t) else {
            panic!("an offline agent is not checked");
        };
        assert!(words.contains("agent offline"), "{words}");
        let SoakReading::NotChecked(words) = soak_recheck(&e, true, true, &[], &mut t) else {
            panic!("maintenance mode is not checked");
        };
        assert!(words.contains("maintenance"), "{words}");
        assert_eq!(t.entries().last().unwrap().reason, r::SOAK_INCOMPLETE);
    }

    #[test]
    fn a_validated_pilot_with_no_dated_run_soaks_from_its_fallback() {
        let at = Utc.with_ymd_and_hms(2026, 12, 9, 12, 0, 0).unwrap();
        let soak = Duration::days(7);
        // No runs at all, and only undated (up-to-date) runs: healthy, but no instant.
        let empty = PilotHealth::default();
        let mut undated = PilotHealth::default();
        undated.validated(None);
        undated.validated(None);
        for h in [empty, undated] {
            assert_eq!(pilot_soak_end(&h, soak), None);
            assert_eq!(pilot_soak_end(&h.since_or(at), soak), Some(at + soak));
        }
        // A dated validation wins; an unhealthy pilot gets no fallback.
        let mut dated = undated;
        dated.validated(Some(at + Duration::hours(2)));
        assert_eq!(
            dated.since_or(at).healthy_since(),
            Some(at + Duration::hours(2))
        );
        let mut failed = undated;
        failed.failed(false);
        assert_eq!(failed.since_or(at).healthy_since(), None);
        assert_eq!(failed.endpoints, 3);
    }

    #[test]
    fn a_pilot_failure_holds_production_and_a_critical_one_blocks_it_even_mid_soak() {
        let gate = Utc.with_ymd_and_hms(2026, 12, 16, 23, 0, 0).unwrap();
        let early = gate - Duration::days(3);
        let mut t = Trace::new();
        let failed = PilotHealth {
            endpoints: 3,
            healthy: 2,
            failed: 1,
            critical_failures: 0,
            healthy_at: None,
        };
        assert_eq!(
            promotion_gate(EndpointKind::Server, early, gate, failed, &mut t),
            Promotion::Hold
        );
        let critical = PilotHealth {
            critical_failures: 1,
            ..failed
        };
        assert_eq!(
            promotion_gate(EndpointKind::Server, early, gate, critical, &mut t),
            Promotion::Blocked
        );
        assert_eq!(t.entries().last().unwrap().node, Node::ServerPilotFirst);
    }
}
