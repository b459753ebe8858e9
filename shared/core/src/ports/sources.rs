//! Where the inventory and the month's catalog come from (the contract's files now, the RMM and
//! Microsoft's release later), in the contract's shapes.

use std::future::Future;

use serde::Serialize;

use crate::contract::{CatalogDoc, InventoryDoc};
use crate::ids::CycleId;
use crate::ports::PortError;

/// What a pull noticed besides the inventory itself, for the sync's report to name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PullNotes {
    /// Endpoints the source has no patch inventory of: what they need is unknown (their
    /// `applicable` is absent), never "nothing".
    pub no_patch_inventory: Vec<NoPatchInventory>,
    /// Clients the source left out of the inventory (their previous inventory is kept).
    pub clients_left_out: Vec<ClientLeftOut>,
}

/// An endpoint the source has no patch inventory of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoPatchInventory {
    /// The endpoint's id (the RMM's computer id).
    pub endpoint: String,
    /// Its host name.
    pub hostname: String,
    /// Its client's patchflow id.
    pub client: String,
}

/// A client the source could not map, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientLeftOut {
    /// The client's id in the source (e.g. Automate's `Client.Id`).
    pub source_id: String,
    /// Its name.
    pub name: String,
    /// Why it was left out.
    pub reason: String,
}

/// The fleet's inventory.
///
/// Error contract: `Permanent` for a malformed inventory (the error names the source, record and
/// field), `Transient` for a source that is passingly unavailable.
pub trait InventorySource: Send + Sync {
    /// The whole inventory, in the contract's format.
    fn pull(&self) -> impl Future<Output = Result<InventoryDoc, PortError>> + Send;

    /// The whole inventory and what the source noticed on the way (by default, nothing: a
    /// source that knows more, such as an RMM's patch scans, says so here).
    fn pull_with_notes(
        &self,
    ) -> impl Future<Output = Result<(InventoryDoc, PullNotes), PortError>> + Send {
        async move { Ok((self.pull().await?, PullNotes::default())) }
    }
}

/// The month's patches.
pub trait CatalogSource: Send + Sync {
    /// The catalog of a cycle, in the contract's format.
    fn catalog(&self, cycle: CycleId)
        -> impl Future<Output = Result<CatalogDoc, PortError>> + Send;
}
