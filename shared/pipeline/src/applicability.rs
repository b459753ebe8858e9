//! Which of the cycle's patches a run's endpoint needs, by the core's applicability rule
//! (`patchflow_core::rules::applicability`): its RMM patch scan as synced when the cycle opened,
//! else its OS against a patch's products, else assumed.

use patchflow_core::ids::PatchId;
use patchflow_core::model::{Endpoint, Patch};
use patchflow_core::rules::applicability::{EndpointApplicability, Matcher};

use crate::approval::patch_model;
use crate::error::HandlerError;
use crate::records::RunModel;
use crate::records::{CycleDoc, Run};

/// The cycle's catalog as the domain has it, in catalog order.
pub fn catalog_patches(cycle: &CycleDoc) -> Result<Vec<Patch>, HandlerError> {
    cycle.catalog.patches.iter().map(patch_model).collect()
}

/// The endpoint's view of `approved` (patch ids; ids not in the catalog are left out).
pub fn view(endpoint: &Endpoint, catalog: &[Patch], approved: &[PatchId]) -> EndpointApplicability {
    let matcher = Matcher::new(catalog);
    let idx: Vec<usize> = catalog
        .iter()
        .enumerate()
        .filter(|(_, p)| approved.contains(&p.id))
        .map(|(i, _)| i)
        .collect();
    matcher.for_endpoint(endpoint, &idx)
}

/// The approved patches that apply to a run's endpoint, sorted.
pub fn run_patches(
    run: &Run,
    cycle: &CycleDoc,
    approved: &[PatchId],
) -> Result<Vec<PatchId>, HandlerError> {
    let endpoint = run.endpoint_model(cycle)?;
    Ok(view(&endpoint, &catalog_patches(cycle)?, approved).patches)
}

#[cfg(test)]
mod tests {
    use patchflow_core::contract::{parse_catalog, parse_inventory};
    use patchflow_core::rules::applicability::Applicability;

    use super::*;

    #[test]
    fn a_run_gets_only_the_approved_patches_its_scan_or_os_says_it_needs() {
        let inventory = parse_inventory(
            "inventory",
            r#"{"clients": [{"id": "acme", "timezone": "America/Chicago"}],
                "endpoints": [
                  {"id": "scanned", "client": "acme", "kind": "workstation", "applicable": ["KB2", "KB9"]},
                  {"id": "srv", "client": "acme", "kind": "server", "os": "Windows Server 2022 Standard"}
                ]}"#,
        )
        .unwrap();
        let catalog = parse_catalog(
            "catalog",
            r#"{"patches": [
                {"id": "KB1", "vendor": "microsoft", "classification": "security", "severity": "critical",
                 "products": ["Windows Server 2012 R2"]},
                {"id": "KB2", "vendor": "microsoft", "classification": "security", "severity": "critical",
                 "products": ["Windows 11 Version 24H2"]},
                {"id": "KB3", "vendor": "microsoft", "classification": "security", "severity": "important",
                 "products": ["Windows Server 2022"]}
            ]}"#,
        )
        .unwrap();
        let approved: Vec<PatchId> = ["KB1", "KB2", "KB3"]
            .iter()
            .map(|i| PatchId::parse(*i).unwrap())
            .collect();
        let scanned = view(&inventory.endpoints()[0], &catalog.patches, &approved);
        assert_eq!(scanned.source, Applicability::Reported);
        assert_eq!(scanned.patches, vec![PatchId::parse("KB2").unwrap()]);
        let srv = view(&inventory.endpoints()[1], &catalog.patches, &approved);
        assert_eq!(srv.source, Applicability::Products);
        assert_eq!(srv.patches, vec![PatchId::parse("KB3").unwrap()]);
        // Only what is approved counts: KB2 held, the scanned endpoint needs nothing approved.
        let held = view(&inventory.endpoints()[0], &catalog.patches, &approved[2..]);
        assert!(held.up_to_date);
    }
}
