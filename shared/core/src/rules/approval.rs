//! Phase 3, approval governance: auto-approve Microsoft security Critical/Important, decline
//! drivers by default, hold everything else for an engineer's explicit decision.

use std::fmt;

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{Engineer, PatchId};
use crate::model::{Classification, Patch, Vendor};
use crate::policy::ApprovalPolicy;
use crate::reason as r;
use crate::rules::exception::{lifted_by, ExceptionEntry, ExceptionKind};
use crate::schedule::utc;
use crate::trace::Node;

/// Where a patch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Approved by policy, no review.
    AutoApproved,
    /// Declined (by default for drivers, or by an engineer).
    Declined,
    /// Held for engineer review until `review_due`.
    PendingReview,
    /// Approved by an engineer after review.
    Approved,
}

impl Decision {
    /// The decision's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::AutoApproved => "auto_approved",
            Decision::Declined => "declined",
            Decision::PendingReview => "pending_review",
            Decision::Approved => "approved",
        }
    }

    /// Whether endpoints receive the patch.
    pub fn deploys(self) -> bool {
        matches!(self, Decision::AutoApproved | Decision::Approved)
    }
}

/// An engineer's sign-off on a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignOff {
    /// Who decided.
    pub engineer: Engineer,
    /// Their reason code (e.g. `cve_reviewed`, `vendor_regression`).
    pub reason_code: ReasonCode,
    /// When.
    #[serde(with = "utc")]
    pub at: DateTime<Utc>,
}

/// A patch's approval state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The patch.
    pub patch: PatchId,
    /// Its state.
    pub decision: Decision,
    /// Reason code for the state.
    pub reason: Cow<'static, str>,
    /// The node that decided.
    pub node: Node,
    /// When the review hold ends (pending reviews).
    #[serde(default, with = "utc::option")]
    pub review_due: Option<DateTime<Utc>>,
    /// Time-to-patch target (auto-approved patches).
    #[serde(default, with = "utc::option")]
    pub target_by: Option<DateTime<Utc>>,
    /// The engineer's sign-off, for explicit decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_off: Option<SignOff>,
    /// When the first decision was recorded: the flaw's report to the patch engineers
    /// (3.14.1[c]); kept across later decisions.
    #[serde(default, with = "utc::option", skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<DateTime<Utc>>,
}

/// A short snake_case code an engineer gives for a decision.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReasonCode(String);

impl TryFrom<String> for ReasonCode {
    type Error = ReasonCodeError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ReasonCode> for String {
    fn from(r: ReasonCode) -> String {
        r.0
    }
}

/// Why a text is not a reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a reason code: use 2-64 characters of a-z, 0-9 and _, starting with a letter"
)]
pub struct ReasonCodeError(String);

impl ReasonCode {
    /// Parses a reason code: `[a-z][a-z0-9_]{1,63}`.
    pub fn parse(raw: &str) -> Result<Self, ReasonCodeError> {
        let ok = (2..=64).contains(&raw.len())
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ReasonCodeError(raw.to_owned()))
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Governs one patch of a release: driver decline first, then Microsoft security auto-approval,
/// then review. `released_at` is the cycle's release instant; the review is due a hold period
/// after it.
pub fn evaluate(patch: &Patch, released_at: DateTime<Utc>, policy: &ApprovalPolicy) -> Approval {
    let base = |decision, reason, node| Approval {
        patch: patch.id.clone(),
        decision,
        reason: Cow::Borrowed(reason),
        node,
        review_due: None,
        target_by: None,
        sign_off: None,
        recorded_at: None,
    };
    if patch.classification == Classification::Driver {
        return base(
            Decision::Declined,
            r::DRIVER_DEFAULT_DECLINE,
            Node::DriverDecline,
        );
    }
    let microsoft = patch.vendor == Vendor::Microsoft;
    let security = patch.classification == Classification::Security;
    let auto_severity = patch
        .severity
        .is_some_and(|s| policy.auto_approve_severities.contains(&s));
    if microsoft && security && auto_severity {
        return Approval {
            target_by: Some(released_at + policy.time_to_patch_target),
            ..base(
                Decision::AutoApproved,
                r::MICROSOFT_SECURITY_AUTO_APPROVE,
                Node::AutoApprove,
            )
        };
    }
    let reason = if !microsoft {
        r::THIRD_PARTY_REVIEW
    } else if !security {
        r::NON_SECURITY_REVIEW
    } else if patch.severity.is_none() {
        r::SEVERITY_MISSING
    } else {
        r::SEVERITY_BELOW_AUTO_APPROVAL
    };
    Approval {
        review_due: Some(released_at + policy.review_hold),
        ..base(Decision::PendingReview, reason, Node::ManualApproval)
    }
}

/// An engineer's explicit decision on a patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineerDecision {
    /// Approve for deployment.
    Approve(SignOff),
    /// Decline or defer.
    Decline(SignOff),
}

/// Why an engineer's decision cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    /// The patch is already in the requested state.
    #[error("patch {patch} is already {state}")]
    AlreadyDecided {
        /// The patch.
        patch: PatchId,
        /// Its state.
        state: &'static str,
    },
}

/// The outcome of applying an engineer's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// The new approval state.
    pub approval: Approval,
    /// The register entry it creates (every decline; approvals of drivers).
    pub exception: Option<ExceptionEntry>,
}

/// Applies an engineer's explicit approve or decline, with sign-off. A decline, and the approval
/// of a driver, are recorded in the exception register.
pub fn apply_engineer_decision(
    current: &Approval,
    patch: &Patch,
    decision: EngineerDecision,
) -> Result<Decided, DecisionError> {
    let (new_state, reason, sign_off) = match decision {
        EngineerDecision::Approve(s) => (Decision::Approved, r::ENGINEER_APPROVED, s),
        EngineerDecision::Decline(s) => (Decision::Declined, r::ENGINEER_DECLINED, s),
    };
    let already = match new_state {
        Decision::Approved => current.decision.deploys(),
        _ => current.decision == Decision::Declined && current.sign_off.is_some(),
    };
    if already {
        return Err(DecisionError::AlreadyDecided {
            patch: current.patch.clone(),
            state: current.decision.as_str(),
        });
    }
    let exception_kind = match new_state {
        Decision::Declined => Some(ExceptionKind::PatchDeclined),
        _ if patch.classification == Classification::Driver => Some(ExceptionKind::DriverApproved),
        _ => None,
    };
    let exception = exception_kind.map(|kind| ExceptionEntry {
        subject: current.patch.to_string(),
        kind,
        reason: Cow::Borrowed(reason),
        node: if kind == ExceptionKind::DriverApproved {
            Node::DriverDecline
        } else {
            Node::ManualApproval
        },
        client: None,
        reference: None,
        engineer: Some(sign_off.engineer.clone()),
        engineer_reason: Some(sign_off.reason_code.to_string()),
        signed_at: Some(sign_off.at),
        change_requires: "a new engineer decision with sign-off".into(),
        signed: true,
        approval_ref: None,
        lifted_by: lifted_by(kind, None),
    });
    Ok(Decided {
        approval: Approval {
            patch: current.patch.clone(),
            decision: new_state,
            reason: Cow::Borrowed(reason),
            node: Node::ManualApproval,
            review_due: None,
            target_by: current.target_by,
            sign_off: Some(sign_off),
            recorded_at: current.recorded_at,
        },
        exception,
    })
}

/// Whether a held patch passed its review due date with no decision (it is then escalated).
pub fn review_overdue(approval: &Approval, now: DateTime<Utc>) -> bool {
    approval.decision == Decision::PendingReview
        && approval.review_due.is_some_and(|due| now >= due)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;
    use crate::policy::Policy;
    use chrono::TimeZone;

    fn patch(vendor: &str, class: Classification, sev: Option<Severity>) -> Patch {
        Patch {
            id: PatchId::parse("KB1").unwrap(),
            title: "t".into(),
            vendor: Vendor::parse(vendor),
            classification: class,
            severity: sev,
            released: None,
            cves: vec![],
            products: vec![],
        }
    }

    fn released() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 8, 18, 0, 0).unwrap()
    }

    fn eval(p: &Patch) -> Approval {
        evaluate(p, released(), &Policy::default().approval)
    }

    fn sign(code: &str) -> SignOff {
        SignOff {
            engineer: Engineer::parse("jdoe").unwrap(),
            reason_code: ReasonCode::parse(code).unwrap(),
            at: released(),
        }
    }

    #[test]
    fn a_microsoft_critical_or_important_security_patch_is_auto_approved_with_a_48h_target() {
        for sev in [Severity::Critical, Severity::Important] {
            let a = eval(&patch("microsoft", Classification::Security, Some(sev)));
            assert_eq!(a.decision, Decision::AutoApproved);
            assert_eq!(a.node, Node::AutoApprove);
            assert_eq!(a.review_due, None);
            assert_eq!(a.target_by, Some(released() + chrono::Duration::hours(48)));
        }
    }

    #[test]
    fn a_driver_is_declined_by_default_whatever_its_vendor() {
        for vendor in ["microsoft", "realtek"] {
            let a = eval(&patch(
                vendor,
                Classification::Driver,
                Some(Severity::Critical),
            ));
            assert_eq!(
                (a.decision, a.reason.as_ref()),
                (Decision::Declined, "driver_default_decline")
            );
        }
    }

    #[test]
    fn everything_else_is_held_for_review_due_seven_days_after_release() {
        let cases = [
            (
                patch("google", Classification::Security, Some(Severity::Critical)),
                r::THIRD_PARTY_REVIEW,
            ),
            (
                patch("microsoft", Classification::Optional, None),
                r::NON_SECURITY_REVIEW,
            ),
            (
                patch(
                    "microsoft",
                    Classification::Security,
                    Some(Severity::Moderate),
                ),
                r::SEVERITY_BELOW_AUTO_APPROVAL,
            ),
            (
                patch("microsoft", Classification::Security, None),
                r::SEVERITY_MISSING,
            ),
            (
                patch("microsoft", Classification::Feature, None),
                r::NON_SECURITY_REVIEW,
            ),
        ];
        for (p, reason) in cases {
            let a = eval(&p);
            assert_eq!(
                (a.decision, a.reason.as_ref()),
                (Decision::PendingReview, reason)
            );
            assert_eq!(
                a.review_due,
                Some(Utc.with_ymd_and_hms(2026, 12, 15, 18, 0, 0).unwrap())
            );
        }
    }

    #[test]
    fn an_engineer_decline_is_recorded_in_the_register_with_sign_off() {
        let p = patch("google", Classification::Security, Some(Severity::Critical));
        let d = apply_engineer_decision(
            &eval(&p),
            &p,
            EngineerDecision::Decline(sign("vendor_regression")),
        )
        .unwrap();
        assert_eq!(d.approval.decision, Decision::Declined);
        let x = d.exception.unwrap();
        assert_eq!(x.kind, ExceptionKind::PatchDeclined);
        assert_eq!(x.engineer.unwrap().as_str(), "jdoe");
        assert_eq!(x.engineer_reason.as_deref(), Some("vendor_regression"));
    }

    #[test]
    fn an_approved_driver_is_tracked_in_the_register_but_an_approved_app_is_not() {
        let drv = patch("microsoft", Classification::Driver, None);
        let d = apply_engineer_decision(
            &eval(&drv),
            &drv,
            EngineerDecision::Approve(sign("hw_validated")),
        )
        .unwrap();
        assert_eq!(d.approval.decision, Decision::Approved);
        assert_eq!(d.exception.unwrap().kind, ExceptionKind::DriverApproved);

        let app = patch("google", Classification::Update, None);
        let d = apply_engineer_decision(
            &eval(&app),
            &app,
            EngineerDecision::Approve(sign("cve_reviewed")),
        )
        .unwrap();
        assert!(d.exception.is_none());
    }

    #[test]
    fn approving_an_approved_patch_is_refused() {
        let p = patch(
            "microsoft",
            Classification::Security,
            Some(Severity::Critical),
        );
        let err = apply_engineer_decision(&eval(&p), &p, EngineerDecision::Approve(sign("again")))
            .unwrap_err();
        assert!(matches!(
            err,
            DecisionError::AlreadyDecided {
                state: "auto_approved",
                ..
            }
        ));
    }

    #[test]
    fn a_review_is_overdue_from_its_due_instant_on() {
        let a = eval(&patch("google", Classification::Update, None));
        let due = a.review_due.unwrap();
        assert!(!review_overdue(&a, due - chrono::Duration::seconds(1)));
        assert!(review_overdue(&a, due));
    }

    #[test]
    fn a_reason_code_is_a_short_snake_case_token() {
        assert!(ReasonCode::parse("cve_reviewed").is_ok());
        for bad in ["", "x", "Has Space", "9lives", "UPPER", &"a".repeat(65)] {
            assert!(ReasonCode::parse(bad).is_err(), "{bad}");
        }
    }
}
