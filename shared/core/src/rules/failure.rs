//! The failure handling standard: every failure gets a PSA ticket with P1-P3, server-class
//! failures after hours page on-call, the next retry window is set, and no retry runs until a root
//! cause is documented. The failing tier is held; a critical failure blocks production.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Criticality, CriticalitySource, Endpoint, ImpactSource, Profile};
use crate::policy::Policy;
use crate::reason as r;
use crate::rules::cadence::WindowKind;
use crate::schedule::{utc, Window};
use crate::trace::{Node, Trace, TraceEntry};

/// Where in the deployment the failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureStage {
    /// The patch install failed.
    Install,
    /// The endpoint did not reboot, or did not come back.
    Reboot,
    /// Post-reboot validation failed.
    Validation,
    /// A daytime workstation was asleep or hibernating in its window.
    Posture,
    /// A validated pilot turned unhealthy during its soak (a daily re-check of its agent and
    /// post-reboot monitors).
    Soak,
}

impl FailureStage {
    /// The stage's name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureStage::Install => "install",
            FailureStage::Reboot => "reboot",
            FailureStage::Validation => "validation",
            FailureStage::Posture => "posture",
            FailureStage::Soak => "soak",
        }
    }
}

/// What the standard requires for one failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Escalation {
    /// PSA ticket priority.
    pub priority: Criticality,
    /// Whether the on-call engineer is paged now.
    pub page_on_call: bool,
    /// The tier is held (always, until resolved).
    pub hold_tier: bool,
    /// Production is blocked (critical systems).
    pub block_production: bool,
    /// The next window a retry may use, once a root cause is recorded.
    pub next_retry: Window,
}

/// The ticket priority of a failure: a server's criticality; a workstation's default (P2) unless
/// the reported client impact is higher. A higher client impact raises a server's too.
pub fn priority(
    endpoint: &Endpoint,
    client_impact: Option<Criticality>,
    policy: &Policy,
    trace: &mut Trace,
) -> Criticality {
    let (base, reason) = match &endpoint.profile {
        Profile::Server(s) => (s.criticality, r::PRIORITY_FROM_CRITICALITY),
        Profile::Workstation(_) => (
            policy.workstation.default_failure_priority,
            r::WORKSTATION_DEFAULT_PRIORITY,
        ),
    };
    // P1 < P2 < P3 in order of declaration, so "higher priority" is the smaller value.
    let (prio, reason) = match client_impact {
        Some(impact) if impact < base => (impact, r::CLIENT_IMPACT_HIGHER),
        _ => (base, reason),
    };
    let mut entry = TraceEntry::new(Node::FailureHandling, prio.as_str(), reason);
    if let (Some(impact), Some(i)) = (client_impact, endpoint.impact) {
        if i.level.criticality() == impact {
            let from = match i.source {
                ImpactSource::Endpoint => "the endpoint's",
                ImpactSource::Client => "its client's",
            };
            entry = entry.with_facts(format!(
                "client impact {} ({from}, {impact})",
                i.level.as_str()
            ));
        }
    }
    trace.push(entry);
    prio
}

/// Whether a failure pages on-call: server-class failures outside business hours (in the
/// endpoint's zone). Workstation failures go to the support queue.
pub fn pages_on_call(
    endpoint: &Endpoint,
    at: DateTime<Utc>,
    policy: &Policy,
    trace: &mut Trace,
) -> bool {
    if endpoint.server().is_none() {
        trace.push(TraceEntry::new(
            Node::FailureHandling,
            "queue",
            r::WORKSTATION_NO_PAGE,
        ));
        return false;
    }
    let in_hours = policy
        .failure
        .business_hours
        .containing(endpoint.tz, at)
        .is_some();
    let local = at
        .with_timezone(&endpoint.tz)
        .format("%a %H:%M %Z")
        .to_string();
    if in_hours {
        trace.push(
            TraceEntry::new(Node::FailureHandling, "queue", r::BUSINESS_HOURS_NO_PAGE)
                .with_facts(local),
        );
        false
    } else {
        trace.push(
            TraceEntry::new(Node::FailureHandling, "page", r::AFTER_HOURS_SERVER_PAGE)
                .with_facts(local),
        );
        true
    }
}

/// What makes an endpoint critical, where something does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Critical {
    /// P1: its role's criticality, or the inventory's explicit `criticality` (servers).
    pub p1: Option<CriticalitySource>,
    /// The inventory flags it `critical: true`.
    pub flagged: bool,
}

impl Critical {
    /// The reason code: `critical_server_by_criticality` when P1 made it critical, else
    /// `critical_server_manual_approval` (the flag).
    pub fn reason(&self) -> &'static str {
        if self.p1.is_some() {
            r::CRITICAL_SERVER_BY_CRITICALITY
        } else {
            r::CRITICAL_SERVER_MANUAL_APPROVAL
        }
    }
}

/// Why an endpoint is critical (P1 by role or `criticality`, or `critical: true`), or `None`.
/// This is the one definition: the critical-server manual approval and "block Production if
/// critical" both use it.
pub fn critical(endpoint: &Endpoint) -> Option<Critical> {
    let p1 = endpoint
        .server()
        .filter(|s| s.criticality == Criticality::P1)
        .map(|s| s.criticality_source);
    (p1.is_some() || endpoint.critical).then_some(Critical {
        p1,
        flagged: endpoint.critical,
    })
}

/// Whether a failure on this endpoint is critical: P1 (by role or `criticality`), or flagged
/// `critical: true`.
pub fn is_critical(endpoint: &Endpoint) -> bool {
    critical(endpoint).is_some()
}

/// What made an endpoint critical, in words (`P1 by role domain_controller; flagged
/// critical`), or `None` when it is not critical.
pub fn critical_facts(endpoint: &Endpoint) -> Option<String> {
    let c = critical(endpoint)?;
    let mut parts = Vec::new();
    match (c.p1, endpoint.server().and_then(|s| s.role)) {
        (Some(CriticalitySource::Role), Some(role)) => {
            parts.push(format!("P1 by role {}", role.as_str()))
        }
        (Some(CriticalitySource::Override), _) => {
            parts.push("P1 by its criticality in the inventory".to_owned())
        }
        (Some(_), _) => parts.push("P1".to_owned()),
        (None, _) => {}
    }
    if c.flagged {
        parts.push("flagged critical".to_owned());
    }
    Some(parts.join("; "))
}

/// The next retry window: the endpoint's own window, starting at least the retry delay after the
/// failure.
pub fn next_retry_window(endpoint: &Endpoint, failed_at: DateTime<Utc>, policy: &Policy) -> Window {
    WindowKind::of(endpoint)
        .daily(policy)
        .first_starting_at_or_after(endpoint.tz, failed_at + policy.failure.retry_after)
}

/// The client impact of an endpoint as a priority (`escalate`'s `client_impact`): its own
/// `impact`, else its client's; `None` when neither gives one.
pub fn client_impact(endpoint: &Endpoint) -> Option<Criticality> {
    endpoint.impact.map(|i| i.level.criticality())
}

/// Applies the failure handling standard to one failure.
pub fn escalate(
    endpoint: &Endpoint,
    failed_at: DateTime<Utc>,
    client_impact: Option<Criticality>,
    policy: &Policy,
    trace: &mut Trace,
) -> Escalation {
    let priority = priority(endpoint, client_impact, policy, trace);
    let page_on_call = pages_on_call(endpoint, failed_at, policy, trace);
    let next_retry = next_retry_window(endpoint, failed_at, policy);
    let block_production = is_critical(endpoint);
    trace.push(
        TraceEntry::new(
            Node::FailureHandling,
            "retry_blocked",
            r::ROOT_CAUSE_REQUIRED,
        )
        .with_facts(format!(
            "next retry window from {}",
            utc::format(&next_retry.start)
        )),
    );
    if let Some(facts) = critical_facts(endpoint) {
        trace.push(
            TraceEntry::new(Node::ServerHealthy, "blocked", r::PRODUCTION_BLOCKED)
                .with_facts(facts),
        );
    }
    Escalation {
        priority,
        page_on_call,
        hold_tier: true,
        block_production,
        next_retry,
    }
}

/// A documented root cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootCause {
    /// What went wrong and what was done.
    pub text: String,
    /// Who documented it.
    pub engineer: String,
    /// When.
    pub recorded_at: DateTime<Utc>,
}

/// Why a retry may not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryRefused {
    /// No root cause is documented.
    #[error("no root cause is documented: record one before retrying")]
    RootCauseRequired,
    /// The retry window has not opened.
    #[error("the next retry window opens at {0}")]
    TooEarly(String),
}

/// Whether a retry may run now: only with a documented root cause, and not before the retry window.
pub fn may_retry(
    root_cause: Option<&RootCause>,
    now: DateTime<Utc>,
    next_retry: Window,
    trace: &mut Trace,
) -> Result<(), RetryRefused> {
    match root_cause {
        Some(rc) if !rc.text.trim().is_empty() => {
            if now < next_retry.start {
                return Err(RetryRefused::TooEarly(utc::format(&next_retry.start)));
            }
            trace.push(TraceEntry::new(
                Node::FailureHandling,
                "retry",
                r::RETRY_ALLOWED,
            ));
            Ok(())
        }
        _ => {
            trace.push(TraceEntry::new(
                Node::FailureHandling,
                "refused",
                r::ROOT_CAUSE_REQUIRED,
            ));
            Err(RetryRefused::RootCauseRequired)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CriticalitySource, ServerPolicyGroup, ServerProfile, ServerRole};
    use crate::testing::{server, workstation};
    use chrono::TimeZone;

    fn srv(crit: Criticality) -> Endpoint {
        let mut e = server("s");
        e.profile = Profile::Server(ServerProfile {
            policy_group: ServerPolicyGroup::AutoInstallManualReboot,
            role: Some(ServerRole::File),
            criticality: crit,
            criticality_source: CriticalitySource::Role,
            unattended_reboot_approved: false,
        });
        e
    }

    fn ny(y: i32, m: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        chrono_tz::America::New_York
            .with_ymd_and_hms(y, m, d, h, mi, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_server_failure_takes_the_servers_criticality_as_priority() {
        let p = Policy::default();
        let mut t = Trace::new();
        for c in [Criticality::P1, Criticality::P2, Criticality::P3] {
            assert_eq!(priority(&srv(c), None, &p, &mut t), c);
        }
    }

    #[test]
    fn a_workstation_failure_is_p2_unless_the_client_impact_is_higher() {
        let p = Policy::default();
        let mut t = Trace::new();
        let w = workstation("w");
        assert_eq!(priority(&w, None, &p, &mut t), Criticality::P2);
        assert_eq!(
            priority(&w, Some(Criticality::P3), &p, &mut t),
            Criticality::P2
        );
        assert_eq!(
            priority(&w, Some(Criticality::P1), &p, &mut t),
            Criticality::P1
        );
        assert_eq!(t.entries().last().unwrap().reason, r::CLIENT_IMPACT_HIGHER);
    }

    #[test]
    fn an_endpoints_impact_raises_its_priority_and_the_trace_says_whose() {
        use crate::model::{EndpointImpact, Impact, ImpactSource};
        let p = Policy::default();
        let mut w = workstation("w");
        w.impact = Some(EndpointImpact {
            level: Impact::High,
            source: ImpactSource::Client,
        });
        let mut t = Trace::new();
        assert_eq!(priority(&w, client_impact(&w), &p, &mut t), Criticality::P1);
        let step = t.entries().last().unwrap();
        assert_eq!(step.reason, r::CLIENT_IMPACT_HIGHER);
        assert!(step.facts.as_deref().unwrap().contains("its client's"));
        w.impact = Some(EndpointImpact {
            level: Impact::Low,
            source: ImpactSource::Endpoint,
        });
        assert_eq!(priority(&w, client_impact(&w), &p, &mut t), Criticality::P2);
        let mut s = srv(Criticality::P3);
        s.impact = Some(EndpointImpact {
            level: Impact::Medium,
            source: ImpactSource::Endpoint,
        });
        assert_eq!(priority(&s, client_impact(&s), &p, &mut t), Criticality::P2);
    }

    #[test]
    fn a_server_is_critical_when_p1_by_role_or_override_or_flagged_and_says_which() {
        let mut dc = srv(Criticality::P1);
        assert_eq!(
            critical_facts(&dc).as_deref(),
            Some("P1 by role file"),
            "the role here is file with a P1 source of role: the facts follow the source"
        );
        if let Profile::Server(s) = &mut dc.profile {
            s.criticality_source = CriticalitySource::Override;
        }
        assert_eq!(
            critical_facts(&dc).as_deref(),
            Some("P1 by its criticality in the inventory")
        );
        assert_eq!(
            critical(&dc).unwrap().reason(),
            r::CRITICAL_SERVER_BY_CRITICALITY
        );
        let mut flagged = srv(Criticality::P3);
        assert!(!is_critical(&flagged));
        flagged.critical = true;
        assert_eq!(
            critical_facts(&flagged).as_deref(),
            Some("flagged critical")
        );
        assert_eq!(
            critical(&flagged).unwrap().reason(),
            r::CRITICAL_SERVER_MANUAL_APPROVAL
        );
        assert!(!is_critical(&workstation("w")));
    }

    #[test]
    fn a_server_failure_after_hours_pages_on_call_and_one_in_hours_does_not() {
        let p = Policy::default();
        let mut t = Trace::new();
        let s = srv(Criticality::P2);
        assert!(
            pages_on_call(&s, ny(2026, 12, 9, 23, 0), &p, &mut t),
            "Wednesday 23:00"
        );
        assert!(
            pages_on_call(&s, ny(2026, 12, 12, 11, 0), &p, &mut t),
            "Saturday 11:00"
        );
        assert!(
            !pages_on_call(&s, ny(2026, 12, 9, 11, 0), &p, &mut t),
            "Wednesday 11:00"
        );
        assert!(!pages_on_call(
            &workstation("w"),
            ny(2026, 12, 9, 23, 0),
            &p,
            &mut t
        ));
    }

    #[test]
    fn the_next_retry_is_the_endpoints_window_after_the_retry_delay() {
        let p = Policy::default();
        // Failed 21:30 EST Wed 9th; +24h = Thu 21:30, so Thursday's 21:20 window is too early.
        let w = next_retry_window(&srv(Criticality::P2), ny(2026, 12, 9, 21, 30), &p);
        assert_eq!(w.start, ny(2026, 12, 11, 21, 20));
    }

    #[test]
    fn a_critical_failure_blocks_production_and_every_failure_holds_its_tier() {
        let p = Policy::default();
        let mut t = Trace::new();
        let e = escalate(
            &srv(Criticality::P1),
            ny(2026, 12, 9, 23, 0),
            None,
            &p,
            &mut t,
        );
        assert!(e.block_production && e.hold_tier && e.page_on_call);
        let e = escalate(
            &srv(Criticality::P3),
            ny(2026, 12, 9, 23, 0),
            None,
            &p,
            &mut t,
        );
        assert!(!e.block_production && e.hold_tier);
        let mut flagged = srv(Criticality::P3);
        flagged.critical = true;
        assert!(escalate(&flagged, ny(2026, 12, 9, 23, 0), None, &p, &mut t).block_production);
    }

    #[test]
    fn no_retry_runs_until_a_root_cause_is_documented_and_its_window_opens() {
        let p = Policy::default();
        let failed = ny(2026, 12, 9, 23, 0);
        let win = next_retry_window(&srv(Criticality::P2), failed, &p);
        let mut t = Trace::new();
        assert_eq!(
            may_retry(None, win.start, win, &mut t),
            Err(RetryRefused::RootCauseRequired)
        );
        let blank = RootCause {
            text: "  ".into(),
            engineer: "j".into(),
            recorded_at: failed,
        };
        assert_eq!(
            may_retry(Some(&blank), win.start, win, &mut t),
            Err(RetryRefused::RootCauseRequired)
        );
        let rc = RootCause {
            text: "disk full on C:".into(),
            engineer: "j".into(),
            recorded_at: failed,
        };
        assert!(matches!(
            may_retry(Some(&rc), failed, win, &mut t),
            Err(RetryRefused::TooEarly(_))
        ));
        assert_eq!(may_retry(Some(&rc), win.start, win, &mut t), Ok(()));
    }
}
