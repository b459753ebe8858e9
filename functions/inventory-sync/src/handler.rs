//! A scheduled event to the inventory sync, with the inventory and catalog files of the
//! configuration. The sync runs for the event's `time` (else now), so a retried invocation does
//! the same run.

use chrono::{DateTime, Utc};
use patchflow_connectors::file::{FileCatalog, FileInventory};
use patchflow_core::ports::queue::QueueConsumer;
use patchflow_lambda::scheduled::scheduled_at;
use patchflow_lambda::{Config, ConfigError, Function, LambdaEvent};
use patchflow_pipeline::env::Ports;
use patchflow_pipeline::error::HandlerError;
use patchflow_pipeline::sync::{inventory_sync, SyncReport};

/// The inventory-sync function.
#[derive(Debug, Clone)]
pub struct InventorySync {
    inventory: FileInventory,
    catalog: FileCatalog,
}

impl InventorySync {
    /// Syncs this inventory file, with the catalog at this path (`{cycle}` is `YYYY-MM`).
    pub fn new(inventory_path: &str, catalog_template: &str) -> Self {
        Self {
            inventory: FileInventory::new(inventory_path),
            catalog: FileCatalog::new(catalog_template),
        }
    }
}

impl Function for InventorySync {
    type Event = serde_json::Value;
    type Response = SyncReport;
    const NAME: &'static str = "inventory-sync";

    fn from_config(config: &Config) -> Result<Self, ConfigError> {
        Ok(Self::new(config.inventory_path()?, config.catalog_path()?))
    }

    async fn handle<X: Ports, C: QueueConsumer>(
        &self,
        x: &X,
        _queues: &C,
        event: LambdaEvent<Self::Event>,
        now: DateTime<Utc>,
    ) -> Result<SyncReport, HandlerError> {
        let at = scheduled_at(&event.payload, now)?;
        inventory_sync(x, &self.inventory, &self.catalog, at).await
    }
}

#[cfg(test)]
mod tests;
