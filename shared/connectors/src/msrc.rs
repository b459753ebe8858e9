//! The month's Microsoft release from the Security Update Guide's CVRF API, as the contract's
//! catalog: one patch per KB article, with the CVEs it fixes, the products it applies to and the
//! highest severity Microsoft rates any of them. Third-party patches can be merged in from a
//! catalog file ([`MsrcCatalog::with_third_party`]).
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
//!                   Type 2: vendor fix, Description.Value the KB number ("5048667")
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
//! those products counts with its highest rating for any product). Remediations that are not a
//! KB (release notes, links, build numbers, other types) are skipped.
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

    /// Microsoft's release for a cycle, mapped to the contract's catalog.
    pub async fn release(&self, cycle: CycleId) -> Result<CatalogDoc, PortError> {
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
        map_document(&doc, self.http.system(), &what)
    }
}

impl CatalogSource for MsrcCatalog {
    async fn catalog(&self, cycle: CycleId) -> Result<CatalogDoc, PortError> {
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
        let mut doc = self.release(cycle).await?;
        if let Some((path, third_party)) = third_party {
            let microsoft: HashSet<&str> = doc.patches.iter().map(|p| p.id.as_str()).collect();
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
            doc.patches.extend(third_party.patches);
        }
        Ok(doc)
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
}

// --- Mapping. ---

/// A KB's patch as it is gathered over the document's vulnerabilities.
#[derive(Default)]
struct Kb {
    cves: BTreeSet<String>,
    products: BTreeSet<String>,
    sub_types: BTreeSet<String>,
    severity: Option<Severity>,
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

fn map_document(doc: &CvrfDocument, system: &str, what: &str) -> Result<CatalogDoc, PortError> {
    let released_text = &doc.document_tracking.initial_release_date;
    let released = parse_released(released_text).ok_or_else(|| {
        malformed(
            system,
            what,
            "DocumentTracking.InitialReleaseDate",
            format!("`{released_text}` is not a date and time (RFC 3339)"),
        )
    })?;
    let released = released.to_rfc3339_opts(SecondsFormat::Secs, true);

    let names: HashMap<&str, &str> = doc
        .product_tree
        .iter()
        .flat_map(|t| &t.full_product_name)
        .map(|p| (p.product_id.as_str(), p.value.trim()))
        .collect();

    let mut kbs: BTreeMap<u64, Kb> = BTreeMap::new();
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

        for (j, fix) in vuln.remediations.iter().enumerate() {
            if fix.kind != REMEDIATION_VENDOR_FIX {
                continue;
            }
            let Some(description) = Text::get(&fix.description) else {
                continue;
            };
            let kb = parse_kb(description).map_err(|m| {
                let field = format!("Vulnerability[{i}].Remediations[{j}].Description.Value");
                malformed(system, what, &field, m)
            })?;
            let Some(kb) = kb else { continue };
            let entry = kbs.entry(kb).or_default();
            if let Some(cve) = cve {
                entry.cves.insert(cve.to_owned());
            }
            if let Some(sub) = fix.sub_type.as_deref().map(str::trim) {
                if !sub.is_empty() {
                    entry.sub_types.insert(sub.to_owned());
                }
            }
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
                severity = max_severity(severity, rated.get(product.as_str()).copied());
            }
            entry.severity = max_severity(entry.severity, severity.or(highest));
        }
    }

    let document_title = Text::get(&doc.document_title);
    let patches = kbs
        .into_iter()
        .map(|(kb, entry)| PatchDoc {
            id: format!("KB{kb}"),
            title: Some(title(document_title, kb, &entry)),
            vendor: "microsoft".to_owned(),
            classification: Classification::Security,
            severity: entry.severity,
            released: Some(released.clone()),
            cves: Some(entry.cves.into_iter().collect()),
            products: Some(entry.products.into_iter().collect()),
        })
        .collect();
    Ok(CatalogDoc { patches })
}

/// `December 2026 Security Updates: KB5048667, Security Update for Windows Server 2025 and 2
/// other products`.
fn title(document_title: Option<&str>, kb: u64, entry: &Kb) -> String {
    let mut title = match document_title {
        Some(t) => format!("{t}: KB{kb}"),
        None => format!("KB{kb}"),
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
    title
}

#[cfg(test)]
mod tests {

    use patchflow_core::contract::parse_catalog;
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
    /// on another); KB5048685 fixes one (Moderate); CVE-2026-21003 also has a release-notes
    /// remediation, a workaround and a build number, none of which is a patch.
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
                    {"ProductID": "11762", "Value": "Microsoft Office LTSC 2024 for 64-bit editions"}
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
                        {"Description": {"Value": "Important"}, "ProductID": ["11762"], "Type": 3, "DateSpecified": false}
                    ],
                    "Remediations": [
                        {"Description": {"Value": "Release Notes"}, "URL": "https://learn.microsoft.com/officeupdates/update-history-microsoft365-apps-by-date", "ProductID": ["11762"], "Type": 2, "SubType": "Security Update"},
                        {"Description": {"Value": "Do not open files from unknown sources."}, "ProductID": ["11762"], "Type": 0},
                        {"Description": {"Value": "16.0.18129.20158"}, "ProductID": ["11762"], "Type": 2},
                        {"Description": {"Value": "https://aka.ms/OfficeSecurityReleases"}, "ProductID": ["11762"], "Type": 5}
                    ],
                    "Ordinal": "3"
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
        assert_eq!(
            ids,
            ["KB5048667", "KB5048685"],
            "the Office release notes are no patch"
        );

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
        assert_eq!(parsed.patches.len(), 2);
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
        assert_eq!(doc.patches.len(), 2);
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
        assert_eq!(ids, ["KB5048667", "KB5048685", "7ZIP-2409"]);
        let text = serde_json::to_string(&doc).unwrap();
        assert_eq!(parse_catalog("merged", &text).unwrap().patches.len(), 3);
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
        let ids: Vec<&str> = doc.patches.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["KB5048667", "KB5048685"]);
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
}
