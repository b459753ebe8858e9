//! inventory-sync: pull the inventory, write only what changed, and on Patch Tuesday (after the
//! release) start the month's cycle's opening: the fleet's pilots found, each client's roster
//! stored, one message per client, whose parts plan and write its runs (see `opening`).

use chrono::{DateTime, Utc};
use patchflow_core::contract::{catalog_from_doc, inventory_from_doc};
use patchflow_core::ids::CycleId;
use patchflow_core::plan::{fleet_pilots, Release};
use patchflow_core::ports::sources::{
    CatalogSource, ClientLeftOut, InventorySource, NoPatchInventory,
};
use patchflow_core::ports::state::{DocStore, EndpointStore, StoredEndpoint, SyncSummary};
use patchflow_core::rules::representation::{inventory_warnings, Warning};
use serde::Serialize;
use tracing::{info, warn};

use crate::env::Ports;
use crate::error::HandlerError;
use crate::{opening, records};

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Endpoints written and left unchanged.
    pub endpoints: SyncSummary,
    /// The cycle whose opening it started, if it started one (its clients' parts then open it:
    /// see `opening`).
    pub opened: Option<CycleId>,
    /// The opening's client parts sent, one message each.
    pub parts: usize,
    /// The endpoints in their rosters.
    pub rostered: usize,
    /// Endpoints the inventory source has no patch inventory of: what they need is unknown.
    pub no_patch_inventory: Vec<NoPatchInventory>,
    /// Clients the inventory source left out (their previous inventory is kept).
    pub clients_left_out: Vec<ClientLeftOut>,
    /// Where the inventory falls short of the operating model (pilot representation, exclusions
    /// without their signed approval), as `plan` warns.
    pub warnings: Vec<Warning>,
}

/// Runs the inventory sync at `now`.
pub async fn inventory_sync<X: Ports>(
    x: &X,
    inventory_source: &impl InventorySource,
    catalog_source: &impl CatalogSource,
    now: DateTime<Utc>,
) -> Result<SyncReport, HandlerError> {
    let env = x.env();
    let (doc, notes) = inventory_source.pull_with_notes().await?;
    let stored = doc
        .endpoints
        .iter()
        .cloned()
        .map(StoredEndpoint::from_doc)
        .collect::<Result<Vec<_>, _>>();
    // The clients as the RMM sent them (the cycle record keeps them); the document itself
    // goes into the validated inventory, not copied.
    let clients = doc.clients.clone();
    // Validate the whole inventory before writing any of it: a bad record writes nothing (and
    // the validation's error, naming the record and field, comes first).
    let inventory =
        inventory_from_doc("inventory", doc).map_err(|e| HandlerError::Poison(e.to_string()))?;
    let stored = stored.map_err(|e| HandlerError::Poison(format!("inventory: {e}")))?;
    let endpoints = env.state.sync_endpoints(&stored).await?;
    // A fleet's records are held a few times over while its cycle opens: each copy goes as
    // soon as it has served.
    drop(stored);
    let mut report = SyncReport {
        endpoints,
        no_patch_inventory: notes.no_patch_inventory,
        clients_left_out: notes.clients_left_out,
        warnings: inventory_warnings(&inventory),
        ..SyncReport::default()
    };
    for w in &report.warnings {
        warn!(code = w.code, subject = %w.subject, "{}", w.message);
    }
    info!(
        written = endpoints.written,
        unchanged = endpoints.unchanged,
        no_patch_inventory = report.no_patch_inventory.len(),
        clients_left_out = report.clients_left_out.len(),
        "inventory synced"
    );
    for n in &report.no_patch_inventory {
        warn!(
            endpoint = %n.endpoint,
            hostname = %n.hostname,
            client = %n.client,
            "no patch inventory: what this endpoint needs is unknown"
        );
    }

    let cycle = CycleId::containing(now.date_naive())
        .map_err(|e| HandlerError::Poison(format!("no cycle for {now}: {e}")))?;
    let release = Release::of(cycle, &env.policy, None);
    if now < release.released_at
        || records::cycle_doc(&env.state, cycle).await?.is_some()
        || env
            .state
            .get_doc(cycle, opening::OPENING_KIND, records::CYCLE_ID)
            .await?
            .is_some()
    {
        // Open, or opening: the hourly tick's coordinator finishes an opening left half-way.
        return Ok(report);
    }

    let catalog_doc = catalog_source.catalog(cycle).await?;
    let catalog = catalog_from_doc("catalog", catalog_doc.clone())
        .map_err(|e| HandlerError::Poison(e.to_string()))?;
    // The fleet's pilots in one pass; then each client is planned and written by its own part.
    let fleet = fleet_pilots(&inventory, &catalog, release, &env.policy);
    let rosters = opening::rosters(&inventory);
    drop(inventory);
    let started = opening::start(x, release, catalog_doc, clients, rosters, fleet, now).await?;
    report.opened = Some(cycle);
    report.parts = started.clients;
    report.rostered = started.endpoints;
    Ok(report)
}
