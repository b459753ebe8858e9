//! Where the inventory and the month's catalog come from (the contract's files now, the RMM and
//! Microsoft's release later), in the contract's shapes.

use std::future::Future;

use crate::contract::{CatalogDoc, InventoryDoc};
use crate::ids::CycleId;
use crate::ports::PortError;

/// The fleet's inventory.
///
/// Error contract: `Permanent` for a malformed inventory (the error names the source, record and
/// field), `Transient` for a source that is passingly unavailable.
pub trait InventorySource: Send + Sync {
    /// The whole inventory, in the contract's format.
    fn pull(&self) -> impl Future<Output = Result<InventoryDoc, PortError>> + Send;
}

/// The month's patches.
pub trait CatalogSource: Send + Sync {
    /// The catalog of a cycle, in the contract's format.
    fn catalog(&self, cycle: CycleId)
        -> impl Future<Output = Result<CatalogDoc, PortError>> + Send;
}
