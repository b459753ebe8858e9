//! patchflow's connectors: adapters for the systems around it. For now the inventory and the
//! month's catalog from files in the contract's formats (JSON, and CSV for inventories exported
//! from a spreadsheet or an RMM report).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod file;
