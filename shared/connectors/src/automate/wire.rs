//! The patch rows both the inventory pull (`patch_state`) and governance (`governance`) read:
//! `GET /Computers/{computerId}/MicrosoftUpdates` (`LabTech.Models.ComputerMicrosoftUpdateData`)
//! and `GET /Computers/{computerId}/PatchingStats`
//! (`Automate.Api.Domain.Contracts.Patching.ComputerPatchingStats`), with the fields either
//! reads. Fields one reader can do without are optional here; a reader that needs one checks it
//! and names the field when it is missing.

use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;

use super::{number_or_string, Stamp};

/// A knowledge-base article number as Automate sends it (`KnowledgeBaseId`): `5048667`,
/// `"5048667"` or `"KB5048667"` (0 or an empty string: the row names none). Anything else is
/// an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Kb(pub(super) u64);

impl Kb {
    /// The catalog's patch id, `KB<digits>`; `None` for a row without a KB.
    pub(super) fn patch_id(self) -> Option<String> {
        (self.0 > 0).then(|| format!("KB{}", self.0))
    }
}

/// The number of a `KnowledgeBaseId` string: digits, with or without a `KB` prefix (any case);
/// `None` when it is not one.
pub(super) fn parse_kb(raw: &str) -> Option<Kb> {
    let s = raw.trim();
    let digits = match s.get(..2) {
        Some(p) if p.eq_ignore_ascii_case("KB") => s[2..].trim_start(),
        _ => s,
    };
    if digits.is_empty() {
        return Some(Kb(0));
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Kb)
}

impl<'de> Deserialize<'de> for Kb {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match number_or_string(d)? {
            Ok(n) => Ok(Kb(n)),
            Err(s) => parse_kb(&s).ok_or_else(|| {
                serde::de::Error::custom(format!("`{s}` is not a knowledge-base number"))
            }),
        }
    }
}

/// A stamp that is a real date (Automate writes `0001-01-01T00:00:00` for none).
pub(super) fn real(stamp: Option<Stamp>) -> Option<DateTime<Utc>> {
    stamp.map(|s| s.0).filter(|t| t.year() > 1970)
}

/// `LabTech.Models.PolicyApprovalSetting`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct PolicyApprovalSetting {
    #[serde(default)]
    pub(super) name: Option<String>,
}

/// One row of `GET /Computers/{computerId}/MicrosoftUpdates`
/// (`LabTech.Models.ComputerMicrosoftUpdateData`). The pull counts a row that does not say
/// whether it is installed as needed; governance requires `IsInstalled` and `IsFailed`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct MicrosoftUpdate {
    #[serde(default)]
    pub(super) knowledge_base_id: Option<Kb>,
    #[serde(default)]
    pub(super) is_installed: Option<bool>,
    #[serde(default)]
    pub(super) is_failed: Option<bool>,
    #[serde(default)]
    pub(super) install_date: Option<Stamp>,
    #[serde(default)]
    pub(super) policy_approval: Option<PolicyApprovalSetting>,
    #[serde(default)]
    pub(super) severity: Option<String>,
    #[serde(default)]
    pub(super) release_date: Option<Stamp>,
    #[serde(default)]
    pub(super) title: Option<String>,
}

/// `GET /Computers/{computerId}/PatchingStats` (`ComputerPatchingStats`). Governance requires
/// `PatchJobRunning`; the pull records what there is.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct PatchingStats {
    #[serde(default)]
    pub(super) no_patch_inventory: Option<bool>,
    #[serde(default)]
    pub(super) patch_job_running: Option<bool>,
    #[serde(default)]
    pub(super) stage: Option<String>,
    #[serde(default)]
    pub(super) last_patch_inventory: Option<Stamp>,
    #[serde(default)]
    pub(super) last_patched_date: Option<Stamp>,
}
