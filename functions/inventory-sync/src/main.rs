//! inventory-sync, as a Lambda function: on its schedule (EventBridge), pull the inventory,
//! write what changed, and after Patch Tuesday's release open the month's cycle.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod handler;

#[tokio::main]
async fn main() -> Result<(), patchflow_lambda::Error> {
    patchflow_lambda::run::<handler::InventorySync>().await
}
