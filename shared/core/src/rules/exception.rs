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
}
