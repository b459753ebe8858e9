//! Phase 0, the RMM's patch scan: which of the month's patches each endpoint really needs.
//!
//! A patch applies to an endpoint when the RMM's last scan lists it among the endpoint's needed
//! updates (`applicable`). When the scan is not known, the endpoint's operating system decides
//! only for a patch that names an operating system among its products: it applies when one of
//! those products matches the OS. Every other case (no OS, no products, or products the OS cannot
//! tell about, such as Office or SQL Server) is assumed to apply: nothing is known to be
//! installed, so nothing may be counted as patched without the RMM saying so.

use serde::Serialize;

use crate::ids::PatchId;
use crate::model::{Endpoint, Patch};

/// How an endpoint's applicability was known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Applicability {
    /// The RMM's patch scan listed the endpoint's needed updates.
    Reported,
    /// No scan, but the endpoint's OS decided for some approved patch that names an OS.
    Products,
    /// Nothing known: every approved patch is assumed to apply.
    Assumed,
}

impl Applicability {
    /// Its name, as the plan writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Applicability::Reported => "reported",
            Applicability::Products => "products",
            Applicability::Assumed => "assumed",
        }
    }
}

/// Where a product name is cut: the edition or servicing detail that follows the family.
const CUTS: [&str; 4] = [" version ", " (", " for ", " service pack "];
/// Architecture words that end a name.
const ARCHES: [&str; 5] = ["x64", "x86", "arm64", "64-bit", "32-bit"];

/// A product or OS name normalised for matching: lower case, a leading `Microsoft ` dropped,
/// cut at the first ` Version `, ` (`, ` for `, ` Service Pack ` or trailing architecture.
pub fn normalize(name: &str) -> String {
    let mut s = name.trim().to_lowercase();
    if let Some(rest) = s.strip_prefix("microsoft ") {
        s = rest.trim_start().to_owned();
    }
    for cut in CUTS {
        if let Some(i) = s.find(cut) {
            s.truncate(i);
        }
    }
    loop {
        let trimmed = s.trim_end();
        let head = ARCHES.iter().find_map(|arch| {
            trimmed
                .strip_suffix(arch)
                .filter(|h| h.is_empty() || h.ends_with(' ') || h.ends_with('-'))
        });
        match head {
            Some(h) => s = h.trim_end_matches([' ', '-']).to_owned(),
            None => {
                s = trimmed.to_owned();
                break;
            }
        }
    }
    s
}

/// Whether a product names an operating system (its normalised name starts with `windows`).
pub fn names_os(product: &str) -> bool {
    normalize(product).starts_with("windows")
}

/// Whether a product matches an OS: either normalised name is a prefix of the other.
pub fn matches(product: &str, os: &str) -> bool {
    let (p, o) = (normalize(product), normalize(os));
    !p.is_empty() && !o.is_empty() && (p.starts_with(&o) || o.starts_with(&p))
}

/// Whether the patch names an operating system among its products.
pub fn patch_names_os(patch: &Patch) -> bool {
    patch.products.iter().any(|p| names_os(p))
}

/// Whether `patch` applies to `endpoint`, by the rule of this module.
pub fn applies(endpoint: &Endpoint, patch: &Patch) -> bool {
    Matcher::new([patch]).applies(endpoint, 0, &endpoint.os.as_deref().map(normalize))
}

/// One endpoint's view of a set of approved patches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointApplicability {
    /// The approved patches that apply, sorted.
    pub patches: Vec<PatchId>,
    /// How that was known.
    pub source: Applicability,
    /// Its scan is reported and nothing approved applies.
    pub up_to_date: bool,
}

/// An endpoint's approved applicable patches, and how they were known.
pub fn for_endpoint<'a>(
    endpoint: &Endpoint,
    approved: impl IntoIterator<Item = &'a Patch>,
) -> EndpointApplicability {
    let m = Matcher::new(approved);
    let all: Vec<usize> = (0..m.patches.len()).collect();
    m.for_endpoint(endpoint, &all)
}

/// Patches with their operating-system products normalised once, to decide many endpoints.
#[derive(Debug, Clone)]
pub struct Matcher<'a> {
    patches: Vec<(&'a Patch, Vec<String>)>,
}

impl<'a> Matcher<'a> {
    /// Prepares `patches` (in the order given; indexes below refer to it).
    pub fn new(patches: impl IntoIterator<Item = &'a Patch>) -> Self {
        let patches = patches
            .into_iter()
            .map(|p| {
                let os: Vec<String> = p
                    .products
                    .iter()
                    .map(|n| normalize(n))
                    .filter(|n| n.starts_with("windows"))
                    .collect();
                (p, os)
            })
            .collect();
        Self { patches }
    }

    /// The prepared patches, in order.
    pub fn patches(&self) -> impl Iterator<Item = &'a Patch> + '_ {
        self.patches.iter().map(|(p, _)| *p)
    }

    /// Whether patch `i` applies to `endpoint`, whose normalised OS is `os`.
    pub fn applies(&self, endpoint: &Endpoint, i: usize, os: &Option<String>) -> bool {
        self.applies_to(endpoint.applicable.as_deref(), os, i)
    }

    /// Whether patch `i` applies to an endpoint known by its scan (`applicable`, sorted) and
    /// its normalised OS alone.
    pub fn applies_to(
        &self,
        applicable: Option<&[PatchId]>,
        os: &Option<String>,
        i: usize,
    ) -> bool {
        let Some((patch, os_products)) = self.patches.get(i) else {
            return false;
        };
        if let Some(list) = applicable {
            return list.binary_search(&patch.id).is_ok();
        }
        let Some(os) = os.as_deref().filter(|o| !o.is_empty()) else {
            return true;
        };
        if os_products.is_empty() {
            return true;
        }
        os_products
            .iter()
            .any(|p| p.starts_with(os) || os.starts_with(p.as_str()))
    }

    /// The endpoint's view of the patches at `approved` (indexes into this matcher).
    pub fn for_endpoint(&self, endpoint: &Endpoint, approved: &[usize]) -> EndpointApplicability {
        let os = endpoint.os.as_deref().map(normalize);
        let mut patches: Vec<PatchId> = approved
            .iter()
            .filter(|&&i| self.applies(endpoint, i, &os))
            .filter_map(|&i| self.patches.get(i).map(|(p, _)| p.id.clone()))
            .collect();
        patches.sort();
        patches.dedup();
        let source = if endpoint.applicable.is_some() {
            Applicability::Reported
        } else if os.as_deref().is_some_and(|o| !o.is_empty())
            && approved
                .iter()
                .any(|&i| self.patches.get(i).is_some_and(|(_, o)| !o.is_empty()))
        {
            Applicability::Products
        } else {
            Applicability::Assumed
        };
        EndpointApplicability {
            up_to_date: source == Applicability::Reported && patches.is_empty(),
            patches,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Classification, Vendor};
    use crate::testing::server;

    fn patch(id: &str, products: &[&str]) -> Patch {
        Patch {
            id: PatchId::parse(id).unwrap(),
            title: String::new(),
            vendor: Vendor::Microsoft,
            classification: Classification::Security,
            severity: None,
            released: None,
            cves: vec![],
            products: products.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    fn with(applicable: Option<&[&str]>, os: Option<&str>) -> Endpoint {
        let mut e = server("s1");
        e.applicable = applicable.map(|l| {
            let mut v: Vec<PatchId> = l.iter().map(|i| PatchId::parse(*i).unwrap()).collect();
            v.sort();
            v
        });
        e.os = os.map(str::to_owned);
        e
    }

    #[test]
    fn normalising_drops_the_vendor_and_cuts_at_edition_detail() {
        assert_eq!(
            normalize("Microsoft Windows Server 2022 Datacenter x64"),
            "windows server 2022 datacenter"
        );
        assert_eq!(
            normalize("Windows Server 2022 (Server Core installation)"),
            "windows server 2022"
        );
        assert_eq!(
            normalize("Windows 10 Version 22H2 for x64-based Systems"),
            "windows 10"
        );
        assert_eq!(
            normalize("Windows Server 2008 R2 for x64-based Systems Service Pack 1"),
            "windows server 2008 r2"
        );
        assert_eq!(normalize("Windows 11 Version 24H2"), "windows 11");
        assert_eq!(normalize("Windows 10 Pro 64-bit"), "windows 10 pro");
        assert_eq!(normalize("  WINDOWS 11 ARM64 "), "windows 11");
        assert_eq!(
            normalize("Microsoft Office LTSC 2021 for 32-bit editions"),
            "office ltsc 2021"
        );
    }

    #[test]
    fn the_contracts_matching_examples_hold() {
        assert!(matches(
            "Windows Server 2022 (Server Core installation)",
            "Microsoft Windows Server 2022 Datacenter x64"
        ));
        assert!(matches(
            "Windows 10 Version 22H2 for x64-based Systems",
            "Windows 10 Pro"
        ));
        assert!(!matches("Windows 11 Version 24H2", "Windows 10 Pro"));
        assert!(!matches(
            "Windows Server 2019",
            "Windows Server 2022 Standard"
        ));
        assert!(names_os("Windows Server 2025"));
        assert!(!names_os(
            "Microsoft SQL Server 2022 for x64-based Systems (CU 16)"
        ));
        assert!(!names_os(
            "Microsoft 365 Apps for Enterprise for 64-bit Systems"
        ));
    }

    #[test]
    fn a_reported_scan_decides_alone() {
        let e = with(Some(&["KB2"]), Some("Windows Server 2022 Standard"));
        // In the scan: applies, whatever its products say.
        assert!(applies(&e, &patch("KB2", &["Windows 11 Version 24H2"])));
        // Not in the scan: does not apply, even though its products match the OS.
        assert!(!applies(&e, &patch("KB1", &["Windows Server 2022"])));
        let a = for_endpoint(&e, &[patch("KB1", &[])]);
        assert_eq!(a.source, Applicability::Reported);
        assert!(a.up_to_date);
        assert!(a.patches.is_empty());
    }

    #[test]
    fn without_a_scan_the_os_decides_only_for_os_products() {
        let e = with(None, Some("Microsoft Windows Server 2022 Datacenter x64"));
        let server2022 = patch(
            "KB1",
            &[
                "Windows Server 2022",
                "Windows Server 2022 (Server Core installation)",
            ],
        );
        let server2012 = patch("KB2", &["Windows Server 2012 R2"]);
        let sql = patch("KB3", &["Microsoft SQL Server 2022 for x64-based Systems"]);
        let bare = patch("KB4", &[]);
        assert!(applies(&e, &server2022));
        assert!(!applies(&e, &server2012));
        assert!(
            applies(&e, &sql),
            "the OS cannot tell whether SQL Server is there"
        );
        assert!(applies(&e, &bare));
        let all = [server2022, server2012, sql, bare];
        let a = for_endpoint(&e, &all);
        assert_eq!(a.source, Applicability::Products);
        assert!(!a.up_to_date);
        let ids: Vec<&str> = a.patches.iter().map(PatchId::as_str).collect();
        assert_eq!(ids, ["KB1", "KB3", "KB4"]);
    }

    #[test]
    fn nothing_known_assumes_every_patch_applies_and_is_never_up_to_date() {
        let e = with(None, None);
        let a = for_endpoint(&e, &[patch("KB2", &["Windows Server 2012 R2"])]);
        assert_eq!(a.source, Applicability::Assumed);
        assert_eq!(a.patches.len(), 1);
        // An OS but no approved patch naming one: still assumed.
        let e = with(None, Some("Windows 11 Pro"));
        let a = for_endpoint(&e, &[patch("KB3", &["Microsoft Office 2019"])]);
        assert_eq!(a.source, Applicability::Assumed);
        // Nothing approved at all, nothing reported: windows kept, not up to date.
        let a = for_endpoint(&e, &[]);
        assert!(a.patches.is_empty());
        assert!(!a.up_to_date);
    }
}
