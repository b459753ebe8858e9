//! Evidence and closure: what a tier must have before it may close.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::EndpointId;
use crate::model::EndpointKind;
use crate::reason as r;
use crate::trace::{Node, Trace, TraceEntry};

/// One endpoint's closing facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointClosure {
    /// The endpoint.
    pub endpoint: EndpointId,
    /// When its reboot was confirmed, if it was.
    pub reboot_confirmed_at: Option<DateTime<Utc>>,
    /// Whether its post-reboot checks passed (baseline apps and VPN for workstations).
    pub checks_passed: bool,
    /// The PSA ticket tracking its failure, if it failed.
    pub failure_ticket: Option<String>,
}

/// What a tier has gathered for closure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClosureRecord {
    /// Server or workstation tier.
    pub kind: EndpointKind,
    /// The PSA compliance ticket has the completion status (and reboot confirmations).
    pub ticket_updated: bool,
    /// The compliance report (and its image, the seed's "screenshot") is attached.
    pub compliance_report_attached: bool,
    /// The evidence is stored under retention.
    pub evidence_retained: bool,
    /// Every endpoint of the tier.
    pub endpoints: Vec<EndpointClosure>,
}

/// A closure requirement that is not met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "missing", rename_all = "snake_case")]
pub enum Missing {
    /// The PSA ticket has not been updated with the completion status.
    TicketUpdate,
    /// The compliance report is not attached.
    ComplianceReport,
    /// The evidence is not retained.
    EvidenceRetention,
    /// An endpoint has neither a confirmed reboot nor a failure ticket.
    RebootConfirmation {
        /// The endpoint.
        endpoint: EndpointId,
    },
    /// An endpoint's post-reboot checks (baseline apps and VPN for workstations) did not pass and
    /// it has no failure ticket.
    Verification {
        /// The endpoint.
        endpoint: EndpointId,
    },
}

/// Checks every closure requirement. Each endpoint must either be confirmed (reboot timestamp and
/// passing checks) or be a failure tracked by a ticket; the tier needs its ticket updated, the
/// compliance report attached and its evidence retained.
pub fn check_closure(record: &ClosureRecord, trace: &mut Trace) -> Result<(), Vec<Missing>> {
    let mut missing = Vec::new();
    if !record.ticket_updated {
        missing.push(Missing::TicketUpdate);
    }
    if record.kind == EndpointKind::Server && !record.compliance_report_attached {
        missing.push(Missing::ComplianceReport);
    }
    if !record.evidence_retained {
        missing.push(Missing::EvidenceRetention);
    }
    for e in &record.endpoints {
        if e.failure_ticket.is_some() {
            continue;
        }
        if e.reboot_confirmed_at.is_none() {
            missing.push(Missing::RebootConfirmation {
                endpoint: e.endpoint.clone(),
            });
        }
        if !e.checks_passed {
            missing.push(Missing::Verification {
                endpoint: e.endpoint.clone(),
            });
        }
    }
    let node = match record.kind {
        EndpointKind::Server => Node::ServerClosure,
        EndpointKind::Workstation => Node::WorkstationClosure,
    };
    if missing.is_empty() {
        trace.push(TraceEntry::new(node, "closed", r::CLOSURE_COMPLETE));
        Ok(())
    } else {
        trace.push(
            TraceEntry::new(node, "open", r::CLOSURE_INCOMPLETE)
                .with_facts(format!("{} requirement(s) missing", missing.len())),
        );
        Err(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn confirmed(id: &str) -> EndpointClosure {
        EndpointClosure {
            endpoint: EndpointId::parse(id).unwrap(),
            reboot_confirmed_at: Some(Utc.with_ymd_and_hms(2026, 12, 9, 4, 0, 0).unwrap()),
            checks_passed: true,
            failure_ticket: None,
        }
    }

    fn complete(kind: EndpointKind) -> ClosureRecord {
        ClosureRecord {
            kind,
            ticket_updated: true,
            compliance_report_attached: true,
            evidence_retained: true,
            endpoints: vec![confirmed("a"), confirmed("b")],
        }
    }

    #[test]
    fn a_tier_with_every_requirement_met_closes() {
        let mut t = Trace::new();
        assert_eq!(
            check_closure(&complete(EndpointKind::Server), &mut t),
            Ok(())
        );
        assert_eq!(t.find(Node::ServerClosure).unwrap().outcome, "closed");
    }

    #[test]
    fn a_tier_missing_its_ticket_report_or_retention_stays_open() {
        let mut rec = complete(EndpointKind::Server);
        rec.ticket_updated = false;
        rec.compliance_report_attached = false;
        rec.evidence_retained = false;
        let missing = check_closure(&rec, &mut Trace::new()).unwrap_err();
        assert_eq!(
            missing,
            vec![
                Missing::TicketUpdate,
                Missing::ComplianceReport,
                Missing::EvidenceRetention
            ]
        );
    }

    #[test]
    fn an_endpoint_without_a_reboot_timestamp_or_passing_checks_keeps_the_tier_open() {
        let mut rec = complete(EndpointKind::Workstation);
        rec.endpoints[0].reboot_confirmed_at = None;
        rec.endpoints[1].checks_passed = false;
        let missing = check_closure(&rec, &mut Trace::new()).unwrap_err();
        assert_eq!(missing.len(), 2);
        assert!(
            matches!(&missing[0], Missing::RebootConfirmation { endpoint } if endpoint.as_str() == "a")
        );
        assert!(
            matches!(&missing[1], Missing::Verification { endpoint } if endpoint.as_str() == "b")
        );
    }

    #[test]
    fn a_failed_endpoint_tracked_by_a_ticket_does_not_keep_the_tier_open() {
        let mut rec = complete(EndpointKind::Server);
        rec.endpoints[0].reboot_confirmed_at = None;
        rec.endpoints[0].checks_passed = false;
        rec.endpoints[0].failure_ticket = Some("T-1".into());
        assert_eq!(check_closure(&rec, &mut Trace::new()), Ok(()));
    }
}
