//! The exception register: every endpoint or patch that is kept out of normal automation, with
//! who agreed to it and why.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{ClientId, Engineer};
use crate::schedule::utc;
use crate::trace::Node;

/// Why something is in the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExceptionKind {
    /// An endpoint excluded by a standing agreement with the client.
    ClientExcluded,
    /// An endpoint whose policy group is Do Not Patch.
    DoNotPatch,
    /// A patch an engineer declined or deferred.
    PatchDeclined,
    /// A driver update an engineer approved (drivers are declined by default).
    DriverApproved,
}

impl ExceptionKind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExceptionKind::ClientExcluded => "client_excluded",
            ExceptionKind::DoNotPatch => "do_not_patch",
            ExceptionKind::PatchDeclined => "patch_declined",
            ExceptionKind::DriverApproved => "driver_approved",
        }
    }
}

/// One register entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionEntry {
    /// The endpoint or patch id.
    pub subject: String,
    /// What kind of exception.
    pub kind: ExceptionKind,
    /// Reason code.
    pub reason: Cow<'static, str>,
    /// The node that recorded it.
    pub node: Node,
    /// The client it concerns, for endpoint exceptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientId>,
    /// Reference to the signed approval (client exclusions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Engineer who signed it off (patch exceptions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engineer: Option<Engineer>,
    /// The engineer's reason code (patch exceptions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engineer_reason: Option<String>,
    /// When it was signed off (patch exceptions).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "utc::option")]
    pub signed_at: Option<DateTime<Utc>>,
    /// What a change of status requires.
    pub change_requires: Cow<'static, str>,
    /// Whether it carries its signed approval: the client's signed reference (`exclusion_ref`)
    /// for an exclusion or a Do Not Patch endpoint, an engineer's sign-off for a patch.
    #[serde(default)]
    pub signed: bool,
    /// The signed approval's reference, `null` when there is none (`reference` is the same,
    /// omitted when none).
    #[serde(default)]
    pub approval_ref: Option<String>,
    /// Who may lift it (change its status), from the operating model.
    #[serde(default)]
    pub lifted_by: Cow<'static, str>,
}

/// Who may lift a register entry of this kind, naming the signed approval where there is one:
/// a client exclusion needs the client's signed change, Do Not Patch the MSP service manager
/// with the client's sign-off, a patch exception a new engineer decision.
pub fn lifted_by(kind: ExceptionKind, reference: Option<&str>) -> Cow<'static, str> {
    match (kind, reference) {
        (ExceptionKind::ClientExcluded, Some(r)) => format!("client signed change ({r})").into(),
        (ExceptionKind::ClientExcluded, None) => {
            "client signed change (no signed approval on record)".into()
        }
        (ExceptionKind::DoNotPatch, Some(r)) => {
            format!("MSP service manager with the client's sign-off ({r})").into()
        }
        (ExceptionKind::DoNotPatch, None) => {
            "MSP service manager with the client's sign-off (none on record)".into()
        }
        (ExceptionKind::PatchDeclined, _) => {
            "an engineer's approval with sign-off and reason code".into()
        }
        (ExceptionKind::DriverApproved, _) => {
            "an engineer's decline with sign-off and reason code".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_names_who_may_lift_it_and_the_signed_approval() {
        assert_eq!(
            lifted_by(ExceptionKind::ClientExcluded, Some("FAB-SIGNED-2026-03")),
            "client signed change (FAB-SIGNED-2026-03)"
        );
        assert!(lifted_by(ExceptionKind::ClientExcluded, None).contains("no signed approval"));
        assert!(lifted_by(ExceptionKind::DoNotPatch, Some("R-1")).contains("service manager"));
        assert!(lifted_by(ExceptionKind::DoNotPatch, Some("R-1")).contains("R-1"));
        assert!(lifted_by(ExceptionKind::PatchDeclined, None).contains("engineer"));
        assert!(lifted_by(ExceptionKind::DriverApproved, None).contains("decline"));
    }
}
