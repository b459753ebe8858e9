//! The `patchflow` binary, driven as a user or a script drives it.

mod applicability;
mod audit;
mod aws;
mod batches;
mod closure;
mod contract_example;
mod docs;
mod evidence;
mod fleet;
mod helpers;
mod invalid_input;
mod plan;
mod pull;
mod simulate;
mod warnings;
