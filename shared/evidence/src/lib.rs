//! patchflow's audit evidence, the part an assessor reads and verifies.
//!
//! - [`record`]: what a closed tier's bundle (and a cycle's roll-up per client) says: outcomes
//!   per endpoint, approvals and declines, exceptions, tickets, reboot confirmations, and the
//!   3.14.1 clocks per flaw. Stored as `record.json`; the CSVs, the HTML report and the PNG
//!   summary are views of it.
//! - [`manifest`]: the list of a bundle's artifacts with their SHA-256, size and retention,
//!   chained to the client's previous manifest.
//! - [`html`] and [`png`]: the compliance report and its summary image.
//! - [`verify`]: recomputes every hash and walks the chains of a set of bundles.

pub mod csv;
pub mod html;
pub mod manifest;
pub mod png;
pub mod record;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod verify;

/// Days each evidence object is kept under COMPLIANCE lock unless configured otherwise: seven
/// years. docs/evidence.md gives the reasons.
pub const DEFAULT_RETENTION_DAYS: i64 = 2555;

/// The bundle segment of a cycle's roll-up per client (tier ids always contain a dot, so it
/// never names a tier).
pub const CYCLE_BUNDLE: &str = "cycle";

/// Artifact names in a bundle.
pub mod names {
    /// The manifest.
    pub const MANIFEST: &str = "manifest.json";
    /// The machine record.
    pub const RECORD: &str = "record.json";
    /// The HTML compliance report.
    pub const REPORT: &str = "report.html";
    /// The PNG summary of the report.
    pub const SUMMARY: &str = "summary.png";
    /// Per-endpoint outcomes.
    pub const OUTCOMES: &str = "outcomes.csv";
    /// Per-flaw 3.14.1 clocks.
    pub const SLA: &str = "sla.csv";
}
