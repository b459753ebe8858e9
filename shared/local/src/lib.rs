//! The embedded default: patchflow's ports implemented on the local machine, so the same
//! handlers run without an AWS account.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
mod db;
pub mod evidence;
pub mod queue;
pub mod state;

pub use db::StoreWork;
