//! The month's Microsoft release from the Security Update Guide's CVRF API, as the contract's
//! catalog: one patch per KB article, and one per product family for the fixes Microsoft ships
//! without a KB (Click-to-Run, release notes), each with the CVEs it fixes, the products it
//! applies to and the highest severity Microsoft rates any of them. Third-party patches can be
//! merged in from a catalog file ([`MsrcCatalog::with_third_party`]).
//!
//! # The API
//!
//! Public documentation: the interactive reference at
//! <https://api.msrc.microsoft.com/cvrf/v3.0/swagger> and the
//! [microsoft/MSRC-Microsoft-Security-Updates-API](https://github.com/microsoft/MSRC-Microsoft-Security-Updates-API)
//! repository (`docs/swagger.yaml` describes the JSON document; the `MsrcSecurityUpdates`
//! PowerShell module is Microsoft's own client).
//!
//! - `GET {base}/cvrf/{id}` with `Accept: application/json` returns one month's CVRF document;
//!   the id is the year and the English month abbreviation, `2026-Dec` for the cycle `2026-12`
//!   (the module's `Get-MsrcCvrfDocument -ID 2016-Aug`). Without that header the API answers XML.
//! - No key: Microsoft removed the API-key requirement in February 2021 ("Continuing to Listen:
//!   Good News about the Security Update Guide API", MSRC blog, 2021-02-09); v3.0 takes neither a
//!   key nor an `api-version`.
//! - A month not published yet answers 404, returned as [`PortError::NotFound`].
//!
//! # The document, and what is read of it
//!
//! ```text
//! DocumentTitle.Value                      "December 2026 Security Updates"
//! DocumentTracking.InitialReleaseDate      "2026-12-08T08:00:00Z"     -> every patch's `released`
//! ProductTree.FullProductName[]            {ProductID, Value}         -> product names
//! Vulnerability[]
//!   CVE                                    "CVE-2026-0001"
//!   Threats[]       {Type, Description.Value, ProductID[]}
//!                   Type 3: severity, "Critical" | "Important" | "Moderate" | "Low"
//!   Remediations[]  {Type, Description.Value, ProductID[], SubType, URL, ...}
//!                   Type 2: vendor fix, Description.Value the KB number ("5048667"),
//!                   or "Click to Run" / "Release Notes" with the URL where it is published
//!   RevisionHistory[] {Number, Date}      the CVE's publication and revisions
//! ```
//!
//! The type codes are CVRF 1.1's enumerations as Microsoft serialises them: remediation types
//! Workaround 0, Mitigation 1, Vendor Fix 2, None Available 3, Will Not Fix 4; threat types
//! Impact 0, Exploit Status 1, Target Set 2 and Microsoft's Severity 3. Microsoft's module reads
//! them the same way: `Get-MsrcCvrfAffectedSoftware.ps1` takes the KB article from the
//! remediations of `Type -eq 2`, the severity from the threats of `Type -eq 3` and the impact
//! from `Type -eq 0`, each matched to a product by `ProductID`.
//!
//! # Mapping
//!
//! Vendor fixes are grouped by KB: the patch `KB{n}`, vendor `microsoft`, classification
//! `security`; its CVEs and product names sorted and deduplicated; its severity the highest
//! Microsoft rates any CVE it fixes for any product it fixes it on (a CVE with no rating for
//! those products counts with its highest rating for any product).
//!
//! Some products receive their fixes without a KB: Microsoft 365 Apps and Office LTSC through
//! Click-to-Run (`Description.Value` "Click to Run"), Microsoft Edge and Office for Mac as the
//! version their release notes name ("Release Notes"). Such a vendor fix becomes one patch per
//! product family and month, `C2R-{cycle}-{family}` or `RN-{cycle}-{family}`, e.g.
//! `C2R-2026-12-365-APPS-FOR-ENTERPRISE` for "Microsoft 365 Apps for Enterprise for 64-bit
//! Systems" and its 32-bit sibling, `RN-2026-12-EDGE` for "Microsoft Edge (Chromium-based)":
//! the family is the product name without `Microsoft `, parenthesised remarks and the
//! architecture, upper-cased, so two pulls of the same document give the same ids. Its CVEs,
//! products and severity are gathered as for a KB; its `released` is the first publication
//! (`RevisionHistory`) of the earliest CVE it fixes, else the document's date, since these
//! channels ship on their own schedule (Edge's fixes often precede Patch Tuesday).
//!
//! Nothing is dropped silently: a vendor fix that is none of these (a bare build number, no
//! description, no product in the product tree) is counted and named in [`ReleaseCounts`]
//! and in a warning; other remediation types (workarounds, mitigations) are advice, not
//! patches, and only counted.
//!
//! Only what the mapping needs is modelled, and leniently (fields the CVRF omits or nulls are
//! optional); what the catalog carries is validated: a KB-looking description that is not a KB
//! number, a severity outside the four ratings, or a release date that is not a date is a
//! `Permanent` error naming the system, the call and the field. An empty severity is read as
//! "not rated".
//!
//! `released` is Microsoft's `InitialReleaseDate`, midnight Pacific on Patch Tuesday (07:00 or
//! 08:00 UTC), not the 10:00 Pacific release instant the cycle's plan uses; the planner reads the
//! release instant from the policy, not from the patches.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use patchflow_core::contract::{CatalogDoc, PatchDoc};
use patchflow_core::ids::CycleId;
use patchflow_core::model::{Classification, Severity};
use patchflow_core::ports::sources::CatalogSource;
use patchflow_core::ports::PortError;
use reqwest::header::ACCEPT;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Deserializer};

use crate::file::FileCatalog;
use crate::http::{call, join, HttpClient, RetryPolicy, Timeouts};

/// The system's name in errors and logs.
pub const SYSTEM: &str = "Microsoft Security Update Guide";

/// Microsoft's public CVRF API.
pub const DEFAULT_BASE_URL: &str = "https://api.msrc.microsoft.com/cvrf/v3.0";

/// The remediation type of a vendor fix (CVRF 1.1: Workaround 0, Mitigation 1, Vendor Fix 2, ...).
const REMEDIATION_VENDOR_FIX: u32 = 2;

/// Microsoft's threat type for a severity rating (Impact 0, Exploit Status 1, ..., Severity 3).
const THREAT_SEVERITY: u32 = 3;

/// Where the release comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MsrcConfig {
    /// The CVRF API's base URL (`/cvrf/{id}` is appended); default
    /// `https://api.msrc.microsoft.com/cvrf/v3.0`.
    pub base_url: String,
}

impl Default for MsrcConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
        }
    }
}

/// The month's catalog: Microsoft's release, plus third-party patches from a file if configured.
#[derive(Debug, Clone)]
pub struct MsrcCatalog {
    config: MsrcConfig,
    http: HttpClient,
    third_party: Option<FileCatalog>,
}

impl MsrcCatalog {
    /// A catalog read from `config.base_url` through `http` (whose system name is used in
    /// errors).
    pub fn with_http(config: MsrcConfig, http: HttpClient) -> Self {
        Self {
            config,
            http,
            third_party: None,
        }
    }

    /// A catalog with the default timeouts and retries.
    pub fn new(config: MsrcConfig) -> Result<Self, PortError> {
        let http = HttpClient::new(SYSTEM, Timeouts::default(), RetryPolicy::default())?;
        Ok(Self::with_http(config, http))
    }

    /// Merges in the third-party patches of a catalog file in the contract's format (its
    /// `{cycle}` template is filled with the cycle). A patch id in both is an error.
    pub fn with_third_party(mut self, catalog: FileCatalog) -> Self {
        self.third_party = Some(catalog);
        self
    }

    /// Microsoft's release for a cycle, mapped to the contract's catalog, with how many
    /// patches of each kind it holds and the vendor fixes left out.
    pub async fn release(&self, cycle: CycleId) -> Result<Release, PortError> {
        let id = cvrf_id(cycle);
        let path = format!("/cvrf/{id}");
        let what = call(&Method::GET, &path);
        let url = join(&self.config.base_url, &path);
        let resp = self
            .http
            .send(&what, || {
                self.http
                    .request(Method::GET, &url)
                    .header(ACCEPT, "application/json")
            })
            .await
            .map_err(|e| match e.status {
                Some(StatusCode::NOT_FOUND) => PortError::NotFound(format!(
                    "{}: the {cycle} release (CVRF document {id}) is not published yet: \
                     {what} answered 404",
                    self.http.system()
                )),
                _ => e.error,
            })?;
        let body = resp
            .bytes()
            .await
            .map_err(|e| PortError::transient(format!("{} {what}", self.http.system()), e))?;
        let doc: CvrfDocument = crate::http::decode(self.http.system(), &what, &body)?;
        let (catalog, counts) = map_document(&doc, cycle, self.http.system(), &what)?;
        Ok(Release {
            document: id,
            catalog,
            counts,
        })
    }

    /// The cycle's catalog, as [`CatalogSource::catalog`] reads it, with how many patches of
    /// each kind it holds (`patchflow catalog pull` prints them).
    pub async fn pull(&self, cycle: CycleId) -> Result<Release, PortError> {
        // The file first: a malformed file fails before any network call. A month without
        // third-party patches has no file.
        let third_party = match &self.third_party {
            Some(file) if !file.path(cycle).exists() => {
                tracing::warn!(
                    file = %file.path(cycle).display(),
                    %cycle,
                    "no third-party catalog for this cycle: Microsoft's release only"
                );
                None
            }
            Some(file) => Some((file.path(cycle), file.catalog(cycle).await?)),
            None => None,
        };
        let mut release = self.release(cycle).await?;
        if let Some((path, third_party)) = third_party {
            let microsoft: HashSet<&str> = release
                .catalog
                .patches
                .iter()
                .map(|p| p.id.as_str())
                .collect();
            if let Some(dup) = third_party
                .patches
                .iter()
                .find(|p| microsoft.contains(p.id.as_str()))
            {
                return Err(PortError::permanent(
                    format!("catalog {cycle}"),
                    format!(
                        "patch id `{}` is both in the {SYSTEM}'s {} release and in the \
                         third-party catalog {}: a patch must come from one source",
                        dup.id,
                        cvrf_id(cycle),
                        path.display()
                    ),
                ));
            }
            release.counts.third_party = third_party.patches.len();
            release.catalog.patches.extend(third_party.patches);
        }
        Ok(release)
    }
}

impl CatalogSource for MsrcCatalog {
    async fn catalog(&self, cycle: CycleId) -> Result<CatalogDoc, PortError> {
        self.pull(cycle).await.map(|r| r.catalog)
    }
}

/// The CVRF document id of a cycle: `2026-Dec` for `2026-12` (English abbreviations, whatever
/// the locale).
pub fn cvrf_id(cycle: CycleId) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = usize::try_from(cycle.month())
        .ok()
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or("???"); // unreachable: a cycle's month is 1-12
    format!("{:04}-{month}", cycle.year())
}

// --- The CVRF document, as much of it as the mapping reads. ---

/// A JSON null or a missing field read as the default (the CVRF omits or nulls empty lists).
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CvrfDocument {
    #[serde(default)]
    document_title: Option<Text>,
    document_tracking: Tracking,
    #[serde(default)]
    product_tree: Option<ProductTree>,
    #[serde(default, deserialize_with = "nullable")]
    vulnerability: Vec<Vulnerability>,
}

#[derive(Debug, Default, Deserialize)]
struct Text {
    #[serde(rename = "Value", default)]
    value: Option<String>,
}

impl Text {
    fn get(text: &Option<Text>) -> Option<&str> {
        text.as_ref()?
            .value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tracking {
    initial_release_date: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProductTree {
    #[serde(default, deserialize_with = "nullable")]
    full_product_name: Vec<FullProductName>,
}

#[derive(Debug, Deserialize)]
struct FullProductName {
    #[serde(rename = "ProductID")]
    product_id: String,
    #[serde(rename = "Value")]
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Vulnerability {
    #[serde(rename = "CVE", default)]
    cve: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    threats: Vec<Threat>,
    #[serde(default, deserialize_with = "nullable")]
    remediations: Vec<Remediation>,
    #[serde(default, deserialize_with = "nullable")]
    revision_history: Vec<Revision>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Threat {
    #[serde(rename = "Type")]
    kind: u32,
    #[serde(default)]
    description: Option<Text>,
    #[serde(rename = "ProductID", default, deserialize_with = "nullable")]
    product_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Remediation {
    #[serde(rename = "Type")]
    kind: u32,
    #[serde(default)]
    description: Option<Text>,
    #[serde(rename = "ProductID", default, deserialize_with = "nullable")]
    product_ids: Vec<String>,
    #[serde(default)]
    sub_type: Option<String>,
    #[serde(rename = "URL", default)]
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Revision {
    #[serde(default)]
    date: Option<String>,
}

// --- Mapping. ---

/// The longest product family in a non-KB fix's id (`C2R-2026-12-` and the family stay well
/// within an id's 128 bytes).
const MAX_FAMILY_LEN: usize = 64;

/// How Microsoft ships a vendor fix that is not a KB article.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Channel {
    /// `Click to Run`: Office's Click-to-Run channels (Microsoft 365 Apps, Office LTSC), which
    /// receive their security fixes only that way.
    ClickToRun,
    /// `Release Notes`: the fix is the version the product's release notes name (Microsoft
    /// Edge, Office for Mac, Microsoft 365 Apps' channels).
    ReleaseNotes,
}

impl Channel {
    /// The channel a vendor fix's description names, in any case and spacing
    /// (`Click to Run`, `Click-to-Run`, `Release Notes`).
    fn of(description: &str) -> Option<Self> {
        let key: String = description
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match key.as_str() {
            "clicktorun" => Some(Channel::ClickToRun),
            "releasenotes" => Some(Channel::ReleaseNotes),
            _ => None,
        }
    }

    /// The first part of its patches' ids.
    fn prefix(self) -> &'static str {
        match self {
            Channel::ClickToRun => "C2R",
            Channel::ReleaseNotes => "RN",
        }
    }

    /// What its patches' titles call it.
    fn label(self) -> &'static str {
        match self {
            Channel::ClickToRun => "Click-to-Run update",
            Channel::ReleaseNotes => "Update per the release notes",
        }
    }
}

/// A patch as it is gathered over the document's vulnerabilities.
#[derive(Default)]
struct Fix {
    cves: BTreeSet<String>,
    products: BTreeSet<String>,
    sub_types: BTreeSet<String>,
    urls: BTreeSet<String>,
    severity: Option<Severity>,
    /// A non-KB fix's release: the first publication of the earliest CVE it fixes.
    released: Option<DateTime<Utc>>,
}

impl Fix {
    fn add(&mut self, cve: Option<&str>, fix: &Remediation) {
        if let Some(cve) = cve {
            self.cves.insert(cve.to_owned());
        }
        if let Some(sub) = fix.sub_type.as_deref().map(str::trim) {
            if !sub.is_empty() {
                self.sub_types.insert(sub.to_owned());
            }
        }
        if let Some(url) = fix.url.as_deref().map(str::trim) {
            if !url.is_empty() {
                self.urls.insert(url.to_owned());
            }
        }
    }
}

impl Vulnerability {
    /// When the CVE was first published: its earliest revision's date, `None` without one.
    fn first_published(
        &self,
        i: usize,
        system: &str,
        what: &str,
    ) -> Result<Option<DateTime<Utc>>, PortError> {
        let mut first: Option<DateTime<Utc>> = None;
        for (k, revision) in self.revision_history.iter().enumerate() {
            let Some(text) = revision.date.as_deref().filter(|d| !d.trim().is_empty()) else {
                continue;
            };
            let date = parse_released(text).ok_or_else(|| {
                malformed(
                    system,
                    what,
                    &format!("Vulnerability[{i}].RevisionHistory[{k}].Date"),
                    format!("`{text}` is not a date and time (RFC 3339)"),
                )
            })?;
            first = Some(first.map_or(date, |f| f.min(date)));
        }
        Ok(first)
    }
}

/// A vendor fix left out of the catalog, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Where it is in the document (`Vulnerability[2].Remediations[2]`).
    pub field: String,
    /// The CVE it fixes.
    pub cve: Option<String>,
    /// Its `Description.Value`.
    pub description: String,
    /// Why it is no patch.
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cve {
            Some(cve) => write!(f, "{cve} ({}): {}", self.field, self.reason),
            None => write!(f, "{}: {}", self.field, self.reason),
        }
    }
}

/// How many patches of each kind a catalog read, and what it left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseCounts {
    /// Microsoft's KB updates (`KB<n>`).
    pub kb: usize,
    /// Microsoft's Click-to-Run fixes (`C2R-<cycle>-<family>`).
    pub click_to_run: usize,
    /// Microsoft's fixes published as release notes (`RN-<cycle>-<family>`).
    pub release_notes: usize,
    /// Patches from the third-party catalog file.
    pub third_party: usize,
    /// Remediations that are advice rather than a fix (workarounds, mitigations, other types):
    /// no patch by their nature.
    pub advice: usize,
    /// Vendor fixes that did not become a patch, each named.
    pub skipped: Vec<Skipped>,
}

impl fmt::Display for ReleaseCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        write!(
            f,
            "{}, {}, {}, {}",
            plural(self.kb, "KB update", "KB updates"),
            plural(self.click_to_run, "Click-to-Run", "Click-to-Run"),
            plural(
                self.release_notes,
                "release-notes fix",
                "release-notes fixes"
            ),
            plural(self.third_party, "third-party", "third-party"),
        )?;
        if !self.skipped.is_empty() {
            write!(
                f,
                "; {} left out",
                plural(self.skipped.len(), "vendor fix", "vendor fixes")
            )?;
        }
        Ok(())
    }
}

/// A cycle's catalog as read: the patches, and how many of each kind.
#[derive(Debug, Clone)]
pub struct Release {
    /// The CVRF document read (`2026-Dec`).
    pub document: String,
    /// The contract's catalog.
    pub catalog: CatalogDoc,
    /// How many of each kind, and what was left out.
    pub counts: ReleaseCounts,
}

impl Release {
    /// `read 2026-Dec: 84 KB updates, 3 Click-to-Run, 2 release-notes fixes, 12 third-party`.
    pub fn summary(&self) -> String {
        format!("read {}: {}", self.document, self.counts)
    }
}

/// A field of the document that does not hold what the catalog needs.
fn malformed(system: &str, what: &str, field: &str, message: String) -> PortError {
    PortError::permanent(
        format!("{system} {what}"),
        format!("malformed response: field `{field}`: {message}"),
    )
}

/// How severe, for comparisons (the domain's `Severity` orders Critical first).
fn rank(s: Severity) -> u8 {
    match s {
        Severity::Critical => 4,
        Severity::Important => 3,
        Severity::Moderate => 2,
        Severity::Low => 1,
    }
}

fn max_severity(a: Option<Severity>, b: Option<Severity>) -> Option<Severity> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if rank(y) > rank(x) { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Microsoft's rating; `None` for an empty one; an error for anything else.
fn parse_severity(value: &str) -> Result<Option<Severity>, String> {
    Ok(Some(match value.trim() {
        "" => return Ok(None),
        "Critical" => Severity::Critical,
        "Important" => Severity::Important,
        "Moderate" => Severity::Moderate,
        "Low" => Severity::Low,
        other => {
            return Err(format!(
                "unknown severity `{other}`: expected Critical, Important, Moderate or Low"
            ))
        }
    }))
}

/// The KB number of a vendor fix's description (`5048667` or `KB5048667`): `Ok(None)` for a
/// description that is not a KB (release notes, a link, a build number), an error for one that
/// looks like a KB but is not a valid number.
fn parse_kb(description: &str) -> Result<Option<u64>, String> {
    let text = description.trim();
    let (digits, prefixed) = match text.get(..2) {
        Some(p) if p.eq_ignore_ascii_case("KB") => (text[2..].trim_start(), true),
        _ => (text, false),
    };
    if !prefixed && (digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit())) {
        return Ok(None);
    }
    let valid = !digits.is_empty()
        && digits.len() <= 9
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if !valid {
        return Err(format!(
            "`{text}` is not a KB number: expected 1 to 9 digits, optionally after `KB`"
        ));
    }
    digits
        .parse()
        .map(Some)
        .map_err(|e| format!("`{text}` is not a KB number: {e}"))
}

/// `InitialReleaseDate` as an instant: RFC 3339, or without an offset, read as UTC.
fn parse_released(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

fn map_document(
    doc: &CvrfDocument,
    cycle: CycleId,
    system: &str,
    what: &str,
) -> Result<(CatalogDoc, ReleaseCounts), PortError> {
    let released_text = &doc.document_tracking.initial_release_date;
    let released = parse_released(released_text).ok_or_else(|| {
        malformed(
            system,
            what,
            "DocumentTracking.InitialReleaseDate",
            format!("`{released_text}` is not a date and time (RFC 3339)"),
        )
    })?;

    let names: HashMap<&str, &str> = doc
        .product_tree
        .iter()
        .flat_map(|t| &t.full_product_name)
        .map(|p| (p.product_id.as_str(), p.value.trim()))
        .collect();

    let mut counts = ReleaseCounts::default();
    let mut kbs: BTreeMap<u64, Fix> = BTreeMap::new();
    let mut channels: BTreeMap<(Channel, String), Fix> = BTreeMap::new();
    for (i, vuln) in doc.vulnerability.iter().enumerate() {
        let cve = vuln.cve.as_deref().map(str::trim).filter(|c| !c.is_empty());

        // The CVE's rating per product, and its highest for any product.
        let mut rated: HashMap<&str, Severity> = HashMap::new();
        let mut highest = None;
        for (j, threat) in vuln.threats.iter().enumerate() {
            if threat.kind != THREAT_SEVERITY {
                continue;
            }
            let value = Text::get(&threat.description).unwrap_or("");
            let severity = parse_severity(value).map_err(|m| {
                let field = format!("Vulnerability[{i}].Threats[{j}].Description.Value");
                malformed(system, what, &field, m)
            })?;
            let Some(severity) = severity else { continue };
            highest = max_severity(highest, Some(severity));
            for product in &threat.product_ids {
                let slot = rated.entry(product.as_str()).or_insert(severity);
                *slot = max_severity(Some(*slot), Some(severity)).unwrap_or(severity);
            }
        }
        // Only a non-KB fix carries its CVE's own first publication (read when one needs it).
        let mut first_published: Option<Option<DateTime<Utc>>> = None;

        for (j, fix) in vuln.remediations.iter().enumerate() {
            if fix.kind != REMEDIATION_VENDOR_FIX {
                counts.advice += 1;
                continue;
            }
            let field = format!("Vulnerability[{i}].Remediations[{j}]");
            let skip = |reason: String, description: &str| Skipped {
                field: field.clone(),
                cve: cve.map(str::to_owned),
                description: description.to_owned(),
                reason,
            };
            let Some(description) = Text::get(&fix.description) else {
                counts
                    .skipped
                    .push(skip("a vendor fix without a description".to_owned(), ""));
                continue;
            };
            let kb = parse_kb(description)
                .map_err(|m| malformed(system, what, &format!("{field}.Description.Value"), m))?;
            let rating = |product: &str| rated.get(product).copied();
            if let Some(kb) = kb {
                let entry = kbs.entry(kb).or_default();
                entry.add(cve, fix);
                let mut severity = None;
                for product in &fix.product_ids {
                    match names.get(product.as_str()) {
                        Some(name) if !name.is_empty() => {
                            entry.products.insert((*name).to_owned());
                        }
                        _ => tracing::warn!(
                            system,
                            call = what,
                            kb,
                            product = %product,
                            "a vendor fix names a product that is not in the product tree"
                        ),
                    }
                    severity = max_severity(severity, rating(product));
                }
                entry.severity = max_severity(entry.severity, severity.or(highest));
                continue;
            }
            let Some(channel) = Channel::of(description) else {
                counts.skipped.push(skip(
                    format!(
                        "`{description}` is neither a KB number, `Click to Run` nor `Release Notes`"
                    ),
                    description,
                ));
                continue;
            };
            // One patch per product family: Microsoft 365 Apps and Office LTSC 2024 are updated
            // (and approved) separately even when one remediation names both.
            let mut families: BTreeMap<String, Vec<(&str, &str)>> = BTreeMap::new();
            for product in &fix.product_ids {
                match names.get(product.as_str()) {
                    Some(name) if !name.is_empty() => families
                        .entry(family(name))
                        .or_default()
                        .push((product.as_str(), name)),
                    _ => tracing::warn!(
                        system,
                        call = what,
                        field = %field,
                        product = %product,
                        "a vendor fix names a product that is not in the product tree"
                    ),
                }
            }
            if families.is_empty() {
                counts.skipped.push(skip(
                    "names no product of the product tree, so no patch can say what it applies to"
                        .to_owned(),
                    description,
                ));
                continue;
            }
            let published = match first_published {
                Some(p) => p,
                None => {
                    let p = vuln.first_published(i, system, what)?;
                    first_published = Some(p);
                    p
                }
            };
            for (name, products) in families {
                let entry = channels.entry((channel, name)).or_default();
                entry.add(cve, fix);
                let mut severity = None;
                for (id, product) in products {
                    entry.products.insert(product.to_owned());
                    severity = max_severity(severity, rating(id));
                }
                entry.severity = max_severity(entry.severity, severity.or(highest));
                let when = published.unwrap_or(released);
                entry.released = Some(entry.released.map_or(when, |r| r.min(when)));
            }
        }
    }

    let document_title = Text::get(&doc.document_title);
    let released_text = released.to_rfc3339_opts(SecondsFormat::Secs, true);
    counts.kb = kbs.len();
    counts.click_to_run = channels
        .keys()
        .filter(|(c, _)| *c == Channel::ClickToRun)
        .count();
    counts.release_notes = channels.len() - counts.click_to_run;
    let kb_patches = kbs.into_iter().map(|(kb, entry)| PatchDoc {
        id: format!("KB{kb}"),
        title: Some(title(document_title, &format!("KB{kb}"), &entry, false)),
        vendor: "microsoft".to_owned(),
        classification: Classification::Security,
        severity: entry.severity,
        released: Some(released_text.clone()),
        cves: Some(entry.cves.into_iter().collect()),
        products: Some(entry.products.into_iter().collect()),
    });
    let channel_patches = channels
        .into_iter()
        .map(|((channel, name), entry)| PatchDoc {
            id: format!("{}-{cycle}-{name}", channel.prefix()),
            title: Some(title(document_title, channel.label(), &entry, true)),
            vendor: "microsoft".to_owned(),
            classification: Classification::Security,
            severity: entry.severity,
            released: Some(
                entry
                    .released
                    .unwrap_or(released)
                    .to_rfc3339_opts(SecondsFormat::Secs, true),
            ),
            cves: Some(entry.cves.into_iter().collect()),
            products: Some(entry.products.into_iter().collect()),
        });
    let patches = kb_patches.chain(channel_patches).collect();
    if !counts.skipped.is_empty() {
        tracing::warn!(
            system,
            call = what,
            skipped = counts.skipped.len(),
            fixes = %counts
                .skipped
                .iter()
                .map(Skipped::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            "vendor fixes that are no patch were left out of the catalog"
        );
    }
    Ok((CatalogDoc { patches }, counts))
}

/// `December 2026 Security Updates: KB5048667, Security Update for Windows Server 2025 and 2
/// other products`; a non-KB fix adds where Microsoft publishes it (`, see https://...`).
fn title(document_title: Option<&str>, what: &str, entry: &Fix, with_url: bool) -> String {
    let mut title = match document_title {
        Some(t) => format!("{t}: {what}"),
        None => what.to_owned(),
    };
    let kind = entry
        .sub_types
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" / ");
    if !kind.is_empty() {
        title.push_str(", ");
        title.push_str(&kind);
    }
    if let Some(first) = entry.products.first() {
        title.push_str(" for ");
        title.push_str(first);
        match entry.products.len() - 1 {
            0 => {}
            1 => title.push_str(" and 1 other product"),
            n => title.push_str(&format!(" and {n} other products")),
        }
    }
    if with_url {
        if let Some(url) = entry.urls.first() {
            title.push_str(", see ");
            title.push_str(url);
        }
    }
    title
}

/// A product's family, the last part of a non-KB fix's id: its name without a leading
/// `Microsoft `, parenthesised remarks and a trailing architecture (`for 64-bit editions`,
/// `for x64-based Systems`, `x64`), as upper-case ASCII words joined by `-`, at most
/// [`MAX_FAMILY_LEN`] bytes: `Microsoft 365 Apps for Enterprise for 32-bit Systems` is
/// `365-APPS-FOR-ENTERPRISE`, `Microsoft Edge (Chromium-based)` is `EDGE`. Derived from the name
/// alone, so the same document always gives the same ids.
fn family(name: &str) -> String {
    const ARCHITECTURE: [&str; 16] = [
        "32-bit",
        "64-bit",
        "x64",
        "x86",
        "arm64",
        "arm",
        "x64-based",
        "x86-based",
        "arm64-based",
        "arm-based",
        "itanium-based",
        "systems",
        "system",
        "editions",
        "edition",
        "and",
    ];
    let is_architecture = |w: &str| ARCHITECTURE.iter().any(|a| a.eq_ignore_ascii_case(w));
    let mut plain = String::with_capacity(name.len());
    let mut depth = 0usize;
    for c in name.chars() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            c if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let mut words: Vec<&str> = plain.split_whitespace().collect();
    if words
        .first()
        .is_some_and(|w| w.eq_ignore_ascii_case("microsoft"))
        && words.len() > 1
    {
        words.remove(0);
    }
    if let Some(cut) = (1..words.len()).find(|&k| {
        words[k].eq_ignore_ascii_case("for") && words[k + 1..].iter().all(|w| is_architecture(w))
    }) {
        words.truncate(cut);
    }
    while words.len() > 1 && words.last().is_some_and(|w| is_architecture(w)) {
        words.pop();
    }
    let mut slug = String::new();
    for c in words.join(" ").chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_uppercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    while slug.len() > MAX_FAMILY_LEN || slug.ends_with('-') {
        match slug.rfind('-') {
            Some(at) if slug.len() > MAX_FAMILY_LEN || at + 1 == slug.len() => slug.truncate(at),
            _ => slug.truncate(MAX_FAMILY_LEN.min(slug.len())),
        }
    }
    if slug.is_empty() {
        "MICROSOFT".to_owned()
    } else {
        slug
    }
}

#[cfg(test)]
mod tests {

    use patchflow_core::contract::parse_catalog;
    use patchflow_core::ids::PatchId;
    use serde_json::json;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;

    fn fast() -> RetryPolicy {
        RetryPolicy::fast()
    }

    fn catalog(server: &MockServer) -> MsrcCatalog {
        let http = HttpClient::new(SYSTEM, Timeouts::default(), fast()).unwrap();
        MsrcCatalog::with_http(
            MsrcConfig {
                base_url: server.uri(),
            },
            http,
        )
    }

    fn december() -> CycleId {
        "2026-12".parse().unwrap()
    }

    fn chain(e: &PortError) -> String {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    }

    /// A trimmed December release: KB5048667 fixes two CVEs (Important on one product, Critical
    /// on another); KB5048685 fixes one (Moderate). The Office CVEs are fixed without a KB:
    /// Click-to-Run for Microsoft 365 Apps (both architectures) and Office LTSC 2024, release
    /// notes for Office LTSC 2024; CVE-2026-21003 also has a workaround, a link (type 5) and a
    /// vendor fix that is a bare build number. Edge's Chromium CVE, published before Patch
    /// Tuesday and unrated, is fixed per Edge's release notes.
    fn document() -> serde_json::Value {
        json!({
            "DocumentTitle": {"Value": "December 2026 Security Updates"},
            "DocumentType": {"Value": "Security Update"},
            "DocumentPublisher": {"ContactDetails": {"Value": "secure@microsoft.com"}, "IssuingAthority": {"Value": "MSRC"}, "Type": 0},
            "DocumentTracking": {
                "Identification": {"ID": {"Value": "2026-Dec"}, "Alias": {"Value": "2026-Dec"}},
                "Status": 2,
                "Version": "1.0",
                "RevisionHistory": [{"Number": "1", "Date": "2026-12-08T08:00:00", "Description": {"Value": "Information published."}}],
                "InitialReleaseDate": "2026-12-08T08:00:00Z",
                "CurrentReleaseDate": "2026-12-08T08:00:00Z"
            },
            "DocumentNotes": [{"Title": "Release Notes", "Audience": "Public", "Type": 1, "Ordinal": "1", "Value": "..."}],
            "ProductTree": {
                "Branch": [{"Items": [{"Items": [{"ProductID": "12244", "Value": "Windows Server 2022"}], "Type": 0, "Name": "Windows"}], "Type": 0, "Name": "Microsoft"}],
                "FullProductName": [
                    {"ProductID": "12244", "Value": "Windows Server 2022"},
                    {"ProductID": "12390", "Value": "Windows 11 Version 24H2 for x64-based Systems"},
                    {"ProductID": "11762", "Value": "Microsoft Office LTSC 2024 for 64-bit editions"},
                    {"ProductID": "11763", "Value": "Microsoft 365 Apps for Enterprise for 64-bit Systems"},
                    {"ProductID": "11764", "Value": "Microsoft 365 Apps for Enterprise for 32-bit Systems"},
                    {"ProductID": "11655", "Value": "Microsoft Edge (Chromium-based)"}
                ]
            },
            "Vulnerability": [
                {
                    "Title": {"Value": "Windows Kerberos Remote Code Execution Vulnerability"},
                    "Notes": [],
                    "DiscoveryDateSpecified": false,
                    "ReleaseDateSpecified": false,
                    "CVE": "CVE-2026-21001",
                    "ProductStatuses": [{"ProductID": ["12244", "12390"], "Type": 3}],
                    "Threats": [
                        {"Description": {"Value": "Remote Code Execution"}, "ProductID": ["12244", "12390"], "Type": 0, "DateSpecified": false},
                        {"Description": {"Value": "Publicly Disclosed:No;Exploited:No"}, "ProductID": null, "Type": 1, "DateSpecified": false},
                        {"Description": {"Value": "Critical"}, "ProductID": ["12244"], "Type": 3, "DateSpecified": false},
                        {"Description": {"Value": "Important"}, "ProductID": ["12390"], "Type": 3, "DateSpecified": false}
                    ],
                    "CVSSScoreSets": [{"BaseScore": 8.1, "TemporalScore": 7.1, "Vector": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O/RC:C", "ProductID": ["12244", "12390"]}],
                    "Remediations": [
                        {"Description": {"Value": "5048667"}, "URL": "https://catalog.update.microsoft.com/v7/site/Search.aspx?q=KB5048667", "Supercedence": "5046617", "ProductID": ["12244"], "Type": 2, "DateSpecified": false, "AffectedFiles": [], "RestartRequired": {"Value": "Yes"}, "SubType": "Security Update", "FixedBuild": "10.0.20348.2966"},
                        {"Description": {"Value": "5048685"}, "URL": "https://catalog.update.microsoft.com/v7/site/Search.aspx?q=KB5048685", "ProductID": ["12390"], "Type": 2, "DateSpecified": false, "AffectedFiles": [], "RestartRequired": {"Value": "Yes"}, "SubType": "Security Update", "FixedBuild": "10.0.26100.2605"}
                    ],
                    "Acknowledgements": [{"Name": [{"Value": "Anonymous"}], "URL": [""]}],
                    "Ordinal": "1",
                    "RevisionHistory": [{"Number": "1.0", "Date": "2026-12-08T08:00:00", "Description": {"Value": "Information published."}}]
                },
                {
                    "Title": {"Value": "Windows Common Log File System Driver Elevation of Privilege Vulnerability"},
                    "CVE": "CVE-2026-21002",
                    "Threats": [
                        {"Description": {"Value": "Important"}, "ProductID": ["12244"], "Type": 3, "DateSpecified": false},
                        {"Description": {"Value": "Moderate"}, "ProductID": ["12390"], "Type": 3, "DateSpecified": false}
                    ],
                    "Remediations": [
                        {"Description": {"Value": "5048667"}, "ProductID": ["12244"], "Type": 2, "SubType": "Security Update"},
                        {"Description": {"Value": "5048685"}, "ProductID": ["12390"], "Type": 2, "SubType": "Security Update"}
                    ],
                    "Ordinal": "2"
                },
                {
                    "Title": {"Value": "Microsoft Office Remote Code Execution Vulnerability"},
                    "CVE": "CVE-2026-21003",
                    "Threats": [
                        {"Description": {"Value": "Important"}, "ProductID": ["11762", "11763", "11764"], "Type": 3, "DateSpecified": false}
                    ],
                    "Remediations": [
                        {"Description": {"Value": "Release Notes"}, "URL": "https://learn.microsoft.com/officeupdates/update-history-microsoft365-apps-by-date", "ProductID": ["11762"], "Type": 2, "SubType": "Security Update"},
                        {"Description": {"Value": "Click to Run"}, "URL": "https://aka.ms/OfficeSecurityReleases", "ProductID": ["11763", "11764"], "Type": 2, "DateSpecified": false, "AffectedFiles": [], "RestartRequired": {"Value": "No"}, "SubType": "Security Update", "FixedBuild": "https://aka.ms/OfficeSecurityReleases"},
                        {"Description": {"Value": "Do not open files from unknown sources."}, "ProductID": ["11762"], "Type": 0},
                        {"Description": {"Value": "16.0.18129.20158"}, "ProductID": ["11762"], "Type": 2},
                        {"Description": {"Value": "https://aka.ms/OfficeSecurityReleases"}, "ProductID": ["11762"], "Type": 5}
                    ],
                    "Ordinal": "3",
                    "RevisionHistory": [{"Number": "1.0", "Date": "2026-12-08T08:00:00", "Description": {"Value": "Information published."}}]
                },
                {
                    "Title": {"Value": "Microsoft Excel Remote Code Execution Vulnerability"},
                    "CVE": "CVE-2026-21004",
                    "Threats": [
                        {"Description": {"Value": "Critical"}, "ProductID": ["11763", "11764"], "Type": 3},
                        {"Description": {"Value": "Important"}, "ProductID": ["11762"], "Type": 3}
                    ],
                    "Remediations": [
                        {"Description": {"Value": "Click to Run"}, "URL": "https://aka.ms/OfficeSecurityReleases", "ProductID": ["11762", "11763", "11764"], "Type": 2, "RestartRequired": {"Value": "No"}, "SubType": "Security Update", "FixedBuild": "https://aka.ms/OfficeSecurityReleases"}
                    ],
                    "Ordinal": "4",
                    "RevisionHistory": [
                        {"Number": "1.0", "Date": "2026-12-08T08:00:00", "Description": {"Value": "Information published."}},
                        {"Number": "1.1", "Date": "2026-12-10T08:00:00", "Description": {"Value": "Corrected the FAQ."}}
                    ]
                },
                {
                    "Title": {"Value": "Chromium: CVE-2026-13001 Use after free in V8"},
                    "CVE": "CVE-2026-13001",
                    "Notes": [{"Title": "Microsoft Edge (Chromium-based)", "Type": 7, "Value": "This CVE was assigned by Chrome."}],
                    "Threats": [
                        {"Description": {"Value": ""}, "ProductID": ["11655"], "Type": 3}
                    ],
                    "Remediations": [
                        {"Description": {"Value": "Release Notes"}, "URL": "https://learn.microsoft.com/en-us/DeployEdge/microsoft-edge-relnotes-security", "ProductID": ["11655"], "Type": 2, "SubType": "Security Update", "FixedBuild": "131.0.2903.99", "RestartRequired": {"Value": "No"}}
                    ],
                    "Ordinal": "5",
                    "RevisionHistory": [{"Number": "1.0", "Date": "2026-12-04T08:00:00", "Description": {"Value": "Information published."}}]
                }
            ]
        })
    }

    async fn serve(server: &MockServer, body: serde_json::Value) {
        Mock::given(method("GET"))
            .and(path("/cvrf/2026-Dec"))
            .and(header("accept", "application/json"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(server)
            .await;
    }

    #[test]
    fn a_cycle_is_named_by_year_and_english_month() {
        assert_eq!(cvrf_id(december()), "2026-Dec");
        assert_eq!(cvrf_id("2027-01".parse().unwrap()), "2027-Jan");
        assert_eq!(cvrf_id("2026-05".parse().unwrap()), "2026-May");
        let config: MsrcConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config.base_url, DEFAULT_BASE_URL);
        assert!(serde_json::from_str::<MsrcConfig>(r#"{"base_uri": "x"}"#).is_err());
    }

    #[tokio::test]
    async fn each_kb_becomes_one_security_patch_with_its_cves_products_and_highest_severity() {
        let server = MockServer::start().await;
        serve(&server, document()).await;
        let doc = catalog(&server).catalog(december()).await.unwrap();

        let ids: Vec<&str> = doc.patches.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(&ids[..2], ["KB5048667", "KB5048685"]);

        let server_cu = &doc.patches[0];
        assert_eq!(server_cu.vendor, "microsoft");
        assert_eq!(server_cu.classification, Classification::Security);
        assert_eq!(server_cu.severity, Some(Severity::Critical));
        assert_eq!(
            server_cu.cves.as_deref(),
            Some(&["CVE-2026-21001".to_owned(), "CVE-2026-21002".to_owned()][..])
        );
        assert_eq!(
            server_cu.products.as_deref(),
            Some(&["Windows Server 2022".to_owned()][..])
        );
        assert_eq!(server_cu.released.as_deref(), Some("2026-12-08T08:00:00Z"));
        assert_eq!(
            server_cu.title.as_deref(),
            Some("December 2026 Security Updates: KB5048667, Security Update for Windows Server 2022")
        );

        // Rated Important and Moderate on the product it fixes, though Critical elsewhere.
        let client_cu = &doc.patches[1];
        assert_eq!(client_cu.severity, Some(Severity::Important));
        assert_eq!(client_cu.cves.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            client_cu.products.as_deref(),
            Some(&["Windows 11 Version 24H2 for x64-based Systems".to_owned()][..])
        );

        let requests = server.received_requests().await.unwrap();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].url.path(), "/cvrf/2026-Dec");
        assert_eq!(
            requests[0].headers.get("accept").map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
    }

    #[tokio::test]
    async fn the_catalog_is_valid_contract_input() {
        let server = MockServer::start().await;
        serve(&server, document()).await;
        let doc = catalog(&server).catalog(december()).await.unwrap();
        let text = serde_json::to_string_pretty(&doc).unwrap();
        let parsed = parse_catalog("msrc-2026-12.json", &text).unwrap();
        assert_eq!(parsed.patches.len(), 6);
        assert_eq!(parsed.patches[0].id.as_str(), "KB5048667");
        assert!(parsed.patches[0].released.is_some());
        assert!(text.contains("\"products\""), "{text}");
    }

    #[tokio::test]
    async fn an_unpublished_month_is_not_found_and_names_the_cycle() {
        let server = MockServer::start().await;
        Mock::given(path("/cvrf/2026-Dec"))
            .respond_with(ResponseTemplate::new(404))
            .mount(&server)
            .await;
        let e = catalog(&server).catalog(december()).await.unwrap_err();
        let PortError::NotFound(message) = &e else {
            panic!("expected NotFound, got {e:?}");
        };
        assert!(
            message.contains("2026-12")
                && message.contains("2026-Dec")
                && message.contains("not published yet"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_passing_outage_is_retried() {
        let server = MockServer::start().await;
        Mock::given(path("/cvrf/2026-Dec"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        serve(&server, document()).await;
        let doc = catalog(&server).catalog(december()).await.unwrap();
        assert_eq!(doc.patches.len(), 6);
        assert_eq!(server.received_requests().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn an_unknown_severity_names_the_call_the_field_and_the_value() {
        let server = MockServer::start().await;
        let mut body = document();
        body["Vulnerability"][1]["Threats"][1]["Description"]["Value"] = json!("Severe");
        serve(&server, body).await;
        let e = catalog(&server).catalog(december()).await.unwrap_err();
        assert!(matches!(e, PortError::Permanent { .. }), "{e:?}");
        let text = chain(&e);
        assert!(
            text.contains("Microsoft Security Update Guide GET /cvrf/2026-Dec")
                && text.contains("Vulnerability[1].Threats[1].Description.Value")
                && text.contains("Severe"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_malformed_kb_or_document_is_a_permanent_error_naming_the_field() {
        let server = MockServer::start().await;
        let mut body = document();
        body["Vulnerability"][0]["Remediations"][1]["Description"]["Value"] = json!("KB50x8685");
        serve(&server, body).await;
        let e = catalog(&server).catalog(december()).await.unwrap_err();
        let text = chain(&e);
        assert!(
            text.contains("Vulnerability[0].Remediations[1].Description.Value")
                && text.contains("KB50x8685"),
            "{text}"
        );

        let server = MockServer::start().await;
        let mut body = document();
        body["Vulnerability"][2]["Threats"][0]["Type"] = json!("three");
        serve(&server, body).await;
        let e = catalog(&server).catalog(december()).await.unwrap_err();
        assert!(!e.is_retryable());
        let text = chain(&e);
        assert!(text.contains("Vulnerability[2].Threats[0].Type"), "{text}");

        let server = MockServer::start().await;
        let mut body = document();
        body["DocumentTracking"]["InitialReleaseDate"] = json!("Patch Tuesday");
        serve(&server, body).await;
        let text = chain(&catalog(&server).catalog(december()).await.unwrap_err());
        assert!(
            text.contains("DocumentTracking.InitialReleaseDate"),
            "{text}"
        );
    }

    fn third_party_file(patches: serde_json::Value) -> (tempfile::TempDir, FileCatalog) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("third-party-2026-12.json"),
            json!({ "patches": patches }).to_string(),
        )
        .unwrap();
        let template = dir.path().join("third-party-{cycle}.json");
        let file = FileCatalog::new(template.to_string_lossy().into_owned());
        (dir, file)
    }

    #[tokio::test]
    async fn third_party_patches_from_a_file_are_merged_in() {
        let server = MockServer::start().await;
        serve(&server, document()).await;
        let (_dir, file) = third_party_file(json!([{
            "id": "7ZIP-2409", "title": "7-Zip 24.09", "vendor": "7-zip",
            "classification": "security", "severity": "important",
            "released": "2026-12-02T12:00:00Z", "cves": ["CVE-2026-0999"]
        }]));
        let doc = catalog(&server)
            .with_third_party(file)
            .catalog(december())
            .await
            .unwrap();
        let ids: Vec<&str> = doc.patches.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids.len(), 7);
        assert_eq!(ids.last(), Some(&"7ZIP-2409"));
        let text = serde_json::to_string(&doc).unwrap();
        assert_eq!(parse_catalog("merged", &text).unwrap().patches.len(), 7);
    }

    #[tokio::test]
    async fn a_month_without_a_third_party_file_is_microsofts_release_alone() {
        let server = MockServer::start().await;
        serve(&server, document()).await;
        let dir = tempfile::tempdir().unwrap();
        let file = FileCatalog::new(
            dir.path()
                .join("third-party-{cycle}.json")
                .display()
                .to_string(),
        );
        let doc = catalog(&server)
            .with_third_party(file)
            .catalog(december())
            .await
            .unwrap();
        assert_eq!(doc.patches.len(), 6);
        assert!(doc.patches.iter().all(|p| p.vendor == "microsoft"));
    }

    #[tokio::test]
    async fn a_patch_id_in_both_sources_is_an_error_naming_both_and_the_id() {
        let server = MockServer::start().await;
        serve(&server, document()).await;
        let (_dir, file) = third_party_file(json!([{
            "id": "KB5048685", "vendor": "contoso", "classification": "update"
        }]));
        let e = catalog(&server)
            .with_third_party(file)
            .catalog(december())
            .await
            .unwrap_err();
        assert!(matches!(e, PortError::Permanent { .. }), "{e:?}");
        let text = chain(&e);
        assert!(
            text.contains("KB5048685")
                && text.contains("Microsoft Security Update Guide")
                && text.contains("2026-Dec")
                && text.contains("third-party catalog"),
            "{text}"
        );
    }

    #[test]
    fn only_kb_numbers_are_patches() {
        assert_eq!(parse_kb("5048667"), Ok(Some(5_048_667)));
        assert_eq!(parse_kb(" KB5048667 "), Ok(Some(5_048_667)));
        assert_eq!(parse_kb("Release Notes"), Ok(None));
        assert_eq!(parse_kb("https://aka.ms/x"), Ok(None));
        assert_eq!(parse_kb("16.0.18129.20158"), Ok(None));
        assert!(parse_kb("KB").is_err());
        assert!(parse_kb("0").is_err());
        assert!(parse_kb("12345678901").is_err());
    }

    fn patch<'a>(doc: &'a CatalogDoc, id: &str) -> &'a PatchDoc {
        doc.patches
            .iter()
            .find(|p| p.id == id)
            .unwrap_or_else(|| panic!("no patch {id} in {:?}", doc.patches))
    }

    fn strings(v: &Option<Vec<String>>) -> Vec<&str> {
        v.iter().flatten().map(String::as_str).collect()
    }

    #[tokio::test]
    async fn microsofts_fixes_without_a_kb_become_one_patch_per_channel_and_product_family() {
        // GIVEN Office fixed through Click-to-Run and release notes, and Edge per its release notes
        let server = MockServer::start().await;
        serve(&server, document()).await;
        // WHEN the month is read
        let doc = catalog(&server).catalog(december()).await.unwrap();
        // THEN each channel and product family is a patch after the KBs, in a stable order
        let ids: Vec<&str> = doc.patches.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "KB5048667",
                "KB5048685",
                "C2R-2026-12-365-APPS-FOR-ENTERPRISE",
                "C2R-2026-12-OFFICE-LTSC-2024",
                "RN-2026-12-EDGE",
                "RN-2026-12-OFFICE-LTSC-2024",
            ]
        );
        for p in &doc.patches {
            assert_eq!(PatchId::parse(p.id.as_str()).unwrap().as_str(), p.id);
            assert_eq!(p.vendor, "microsoft");
            assert_eq!(p.classification, Classification::Security);
        }

        // Both architectures of Microsoft 365 Apps are one patch, fixing both Office CVEs, rated
        // with the highest (Critical for CVE-2026-21004 on those products).
        let apps = patch(&doc, "C2R-2026-12-365-APPS-FOR-ENTERPRISE");
        assert_eq!(
            strings(&apps.products),
            [
                "Microsoft 365 Apps for Enterprise for 32-bit Systems",
                "Microsoft 365 Apps for Enterprise for 64-bit Systems"
            ]
        );
        assert_eq!(strings(&apps.cves), ["CVE-2026-21003", "CVE-2026-21004"]);
        assert_eq!(apps.severity, Some(Severity::Critical));
        assert_eq!(apps.released.as_deref(), Some("2026-12-08T08:00:00Z"));
        assert_eq!(
            apps.title.as_deref(),
            Some(
                "December 2026 Security Updates: Click-to-Run update, Security Update for \
                 Microsoft 365 Apps for Enterprise for 32-bit Systems and 1 other product, see \
                 https://aka.ms/OfficeSecurityReleases"
            )
        );

        // Office LTSC 2024 is rated Important for CVE-2026-21004 though Critical elsewhere; its
        // Click-to-Run fix and its release-notes fix are two patches.
        let ltsc = patch(&doc, "C2R-2026-12-OFFICE-LTSC-2024");
        assert_eq!(strings(&ltsc.cves), ["CVE-2026-21004"]);
        assert_eq!(ltsc.severity, Some(Severity::Important));
        assert_eq!(
            strings(&ltsc.products),
            ["Microsoft Office LTSC 2024 for 64-bit editions"]
        );
        let notes = patch(&doc, "RN-2026-12-OFFICE-LTSC-2024");
        assert_eq!(strings(&notes.cves), ["CVE-2026-21003"]);
        assert!(
            notes.title.as_deref().is_some_and(|t| t.contains(
                "see https://learn.microsoft.com/officeupdates/update-history-microsoft365-apps-by-date"
            )),
            "{:?}",
            notes.title
        );

        // Edge's fix is released when its CVE was published, before Patch Tuesday, and unrated.
        let edge = patch(&doc, "RN-2026-12-EDGE");
        assert_eq!(strings(&edge.cves), ["CVE-2026-13001"]);
        assert_eq!(strings(&edge.products), ["Microsoft Edge (Chromium-based)"]);
        assert_eq!(edge.severity, None);
        assert_eq!(edge.released.as_deref(), Some("2026-12-04T08:00:00Z"));
    }

    #[tokio::test]
    async fn the_ids_of_fixes_without_a_kb_are_the_same_on_every_pull_of_the_document() {
        let server = MockServer::start().await;
        serve(&server, document()).await;
        let first = catalog(&server).catalog(december()).await.unwrap();
        let again = catalog(&server).catalog(december()).await.unwrap();
        let text = |d: &CatalogDoc| serde_json::to_string(d).unwrap();
        assert_eq!(text(&first), text(&again));

        // The same document serialised in another order gives the same catalog.
        let mut body = document();
        let reverse = |v: &mut serde_json::Value| {
            if let Some(a) = v.as_array_mut() {
                a.reverse();
            }
        };
        reverse(&mut body["Vulnerability"]);
        reverse(&mut body["ProductTree"]["FullProductName"]);
        for vuln in body["Vulnerability"].as_array_mut().unwrap() {
            for fix in vuln["Remediations"].as_array_mut().unwrap() {
                reverse(&mut fix["ProductID"]);
            }
        }
        let server = MockServer::start().await;
        serve(&server, body).await;
        let shuffled = catalog(&server).catalog(december()).await.unwrap();
        assert_eq!(text(&first), text(&shuffled));
    }

    #[tokio::test]
    async fn every_kind_is_counted_and_each_vendor_fix_left_out_is_named() {
        // GIVEN a vendor fix with no description and a Click-to-Run fix for a product the
        // product tree lacks, besides the bare build number
        let mut body = document();
        body["Vulnerability"][1]["Remediations"]
            .as_array_mut()
            .unwrap()
            .extend([
                json!({"Description": {"Value": ""}, "ProductID": ["12244"], "Type": 2}),
                json!({"Description": {"Value": "Click-to-Run"}, "ProductID": ["99999"], "Type": 2}),
            ]);
        let server = MockServer::start().await;
        serve(&server, body).await;
        let (_dir, file) = third_party_file(json!([{
            "id": "7ZIP-2409", "vendor": "7-zip", "classification": "security"
        }]));
        // WHEN the month is pulled with its third-party file
        let release = catalog(&server)
            .with_third_party(file)
            .pull(december())
            .await
            .unwrap();
        // THEN every kind is counted, and what was left out is named with its place and CVE
        assert_eq!(release.document, "2026-Dec");
        assert_eq!(release.catalog.patches.len(), 7);
        let c = &release.counts;
        assert_eq!(
            (
                c.kb,
                c.click_to_run,
                c.release_notes,
                c.third_party,
                c.advice
            ),
            (2, 2, 2, 1, 2)
        );
        assert_eq!(
            release.summary(),
            "read 2026-Dec: 2 KB updates, 2 Click-to-Run, 2 release-notes fixes, 1 third-party; \
             3 vendor fixes left out"
        );
        let named: Vec<String> = c.skipped.iter().map(ToString::to_string).collect();
        assert_eq!(named.len(), 3, "{named:?}");
        assert!(
            named[0].starts_with("CVE-2026-21002 (Vulnerability[1].Remediations[2]): ")
                && named[0].contains("without a description"),
            "{named:?}"
        );
        assert!(
            named[1].starts_with("CVE-2026-21002 (Vulnerability[1].Remediations[3]): ")
                && named[1].contains("no product of the product tree"),
            "{named:?}"
        );
        assert_eq!(c.skipped[2].field, "Vulnerability[2].Remediations[3]");
        assert_eq!(c.skipped[2].description, "16.0.18129.20158");
        assert!(named[2].contains("`16.0.18129.20158` is neither a KB number"));
    }

    #[tokio::test]
    async fn a_malformed_revision_date_of_a_cve_fixed_without_a_kb_names_the_field() {
        let mut body = document();
        body["Vulnerability"][4]["RevisionHistory"][0]["Date"] = json!("early December");
        let server = MockServer::start().await;
        serve(&server, body).await;
        let e = catalog(&server).catalog(december()).await.unwrap_err();
        assert!(matches!(e, PortError::Permanent { .. }), "{e:?}");
        let text = chain(&e);
        assert!(
            text.contains("Vulnerability[4].RevisionHistory[0].Date")
                && text.contains("early December"),
            "{text}"
        );
    }

    #[test]
    fn a_product_family_drops_the_vendor_remarks_and_architecture() {
        for (name, family_of) in [
            (
                "Microsoft 365 Apps for Enterprise for 32-bit Systems",
                "365-APPS-FOR-ENTERPRISE",
            ),
            (
                "Microsoft 365 Apps for Enterprise for 64-bit Systems",
                "365-APPS-FOR-ENTERPRISE",
            ),
            (
                "Microsoft Office LTSC 2024 for 64-bit editions",
                "OFFICE-LTSC-2024",
            ),
            (
                "Microsoft Office LTSC for Mac 2024",
                "OFFICE-LTSC-FOR-MAC-2024",
            ),
            ("Microsoft Edge (Chromium-based)", "EDGE"),
            (
                "Windows 11 Version 24H2 for ARM64-based Systems",
                "WINDOWS-11-VERSION-24H2",
            ),
            (
                "Microsoft Visual Studio 2022 version 17.12",
                "VISUAL-STUDIO-2022-VERSION-17-12",
            ),
            ("Azure Linux 3.0 x64", "AZURE-LINUX-3-0"),
            ("Microsoft", "MICROSOFT"),
        ] {
            assert_eq!(family(name), family_of, "{name}");
        }
        let long = family(&"Contoso Line Of Business Application ".repeat(5));
        assert!(
            long.len() <= MAX_FAMILY_LEN && !long.ends_with('-'),
            "{long}"
        );
        assert!(long.starts_with("CONTOSO-LINE-OF-BUSINESS"), "{long}");
    }

    #[test]
    fn the_channel_is_read_from_the_description_in_any_spelling() {
        assert_eq!(Channel::of("Click to Run"), Some(Channel::ClickToRun));
        assert_eq!(Channel::of("click-to-run"), Some(Channel::ClickToRun));
        assert_eq!(Channel::of(" Release Notes "), Some(Channel::ReleaseNotes));
        assert_eq!(Channel::of("16.0.18129.20158"), None);
        assert_eq!(Channel::of("Security Update"), None);
    }
}
