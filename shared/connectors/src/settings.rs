//! The connectors file: which real systems patchflow drives and how it maps onto them. One TOML
//! file (docs/connectors.md has a complete example) with a section per system:
//!
//! ```toml
//! [automate]          # ConnectWise Automate: inventory, commands, reports (AutomateConfig)
//! [manage]            # ConnectWise PSA: tickets (ManageConfig)
//! [pager]             # kind = "pagerduty" (with PagerDutyConfig's fields) or kind = "sns"
//! [msrc]              # Microsoft's CVRF API (MsrcConfig; optional, the defaults are right)
//! ```
//!
//! Credentials are not in this file: they come from Secrets Manager (by ARN) in AWS, and from a
//! file or an environment variable on an engineer's machine (see [`crate::secrets`]).

use serde::Deserialize;

use crate::automate::AutomateConfig;
use crate::manage::ManageConfig;
use crate::msrc::MsrcConfig;
use crate::pagerduty::PagerDutyConfig;

/// The connectors file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorsFile {
    /// ConnectWise Automate.
    #[serde(default)]
    pub automate: Option<AutomateConfig>,
    /// ConnectWise PSA (Manage).
    #[serde(default)]
    pub manage: Option<ManageConfig>,
    /// On-call paging.
    #[serde(default)]
    pub pager: Option<PagerChoice>,
    /// Microsoft's release (the defaults when absent).
    #[serde(default)]
    pub msrc: MsrcConfig,
}

/// How the on-call engineer is paged.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PagerChoice {
    /// PagerDuty's Events API v2 (the routing key is a credential).
    PagerDuty(PagerDutyConfig),
    /// An SNS topic (its ARN is configuration: `PATCHFLOW_PAGER_TOPIC_ARN` in AWS).
    Sns {},
}

impl ConnectorsFile {
    /// Parses the file's text; an error names the file, the line and the key.
    pub fn from_toml(source: &str, text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| format!("{source}: {e}"))
    }

    /// Reads and parses a file.
    pub fn read(path: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        Self::from_toml(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses_and_the_pager_is_chosen_by_kind() {
        let f = ConnectorsFile::from_toml(
            "connectors.toml",
            r#"
            [automate]
            base_url = "https://rmm.example.com"
            default_timezone = "America/New_York"
            [automate.clients.5]
            id = "acme"
            [[automate.groups]]
            name = "Patching - Pilot"
            ring = "pilot"
            [automate.scripts]
            install = 901
            [automate.monitors]
            "DNS Service" = "dns_dhcp"

            [manage]
            base_url = "https://api-na.myconnectwise.net/v4_6_release/apis/3.0"
            board = "Patching"

            [pager]
            kind = "pagerduty"
            severity = "error"
            "#,
        )
        .unwrap();
        let a = f.automate.unwrap();
        assert_eq!(a.clients["5"].id.as_deref(), Some("acme"));
        assert_eq!(a.scripts.install, Some(901));
        assert_eq!(f.manage.unwrap().board, "Patching");
        assert!(matches!(f.pager, Some(PagerChoice::PagerDuty(_))));

        let f = ConnectorsFile::from_toml("c", "[pager]\nkind = \"sns\"\n").unwrap();
        assert!(matches!(f.pager, Some(PagerChoice::Sns {})));
    }

    #[test]
    fn a_mistyped_key_names_the_file_and_the_key() {
        let e = ConnectorsFile::from_toml(
            "connectors.toml",
            "[automate]\nbase_url = \"https://x\"\npage_sise = 10\n",
        )
        .unwrap_err();
        assert!(
            e.contains("connectors.toml") && e.contains("page_sise"),
            "{e}"
        );
        let e = ConnectorsFile::from_toml("c.toml", "[pager]\nkind = \"pigeon\"\n").unwrap_err();
        assert!(e.contains("pigeon"), "{e}");
    }
}
