//! A scheduled event to the inventory sync, with the inventory and catalog sources of the
//! configuration: files with the simulation; ConnectWise Automate and Microsoft's release (plus a
//! third-party catalog file) with `connectwise`. The sync runs for the event's `time` (else
//! now), so a retried invocation does the same run.

use chrono::{DateTime, Utc};
use patchflow_core::ports::queue::QueueConsumer;
use patchflow_lambda::config::{Connectors, CATALOG_PATH, INVENTORY_PATH, RMM_SECRET_ARN};
use patchflow_lambda::scheduled::scheduled_at;
use patchflow_lambda::systems::{AnyCatalog, AnyInventory};
use patchflow_lambda::{Config, ConfigError, Function, LambdaEvent, Sources};
use patchflow_pipeline::env::Ports;
use patchflow_pipeline::error::HandlerError;
use patchflow_pipeline::sync::{inventory_sync, SyncReport};

/// The inventory-sync function.
#[derive(Debug)]
pub struct InventorySync {
    inventory: AnyInventory,
    catalog: AnyCatalog,
}

impl InventorySync {
    /// Syncs this inventory file, with the catalog at this path (`{cycle}` is `YYYY-MM`).
    #[cfg(test)]
    pub fn new(inventory_path: &str, catalog_template: &str) -> Self {
        use patchflow_connectors::file::{FileCatalog, FileInventory};
        Self {
            inventory: AnyInventory::File(FileInventory::new(inventory_path)),
            catalog: AnyCatalog::File(FileCatalog::new(catalog_template)),
        }
    }
}

impl Function for InventorySync {
    type Event = serde_json::Value;
    type Response = SyncReport;
    const NAME: &'static str = "inventory-sync";

    fn from_config(config: &Config, sources: Sources) -> Result<Self, ConfigError> {
        let inventory = match (sources.inventory, &config.connectors) {
            (Some(i), _) => i,
            (None, Connectors::ConnectWise(_)) => {
                return Err(ConfigError::Missing {
                    name: RMM_SECRET_ARN,
                    hint: ": inventory-sync pulls the inventory from Automate with these \
                           credentials and the connectors file's [automate]"
                        .to_owned(),
                })
            }
            // The simulation (only in a build with it) reads the inventory from a file.
            #[allow(unreachable_patterns)]
            (None, _) => {
                return Err(ConfigError::Missing {
                    name: INVENTORY_PATH,
                    hint: ": inventory-sync reads the inventory from it".to_owned(),
                })
            }
        };
        let catalog = sources.catalog.ok_or_else(|| ConfigError::Missing {
            name: CATALOG_PATH,
            hint: ": inventory-sync reads the month's catalog from it ({cycle} is YYYY-MM)"
                .to_owned(),
        })?;
        Ok(Self { inventory, catalog })
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
