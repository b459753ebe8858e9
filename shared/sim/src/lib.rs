//! Simulation support for patchflow: a seeded generator of realistic fleets in the inventory
//! contract's format, and simulated RMM, PSA and pager adapters with seeded, realistic outcomes,
//! for demos, tests and benchmarks.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod connectors;
pub mod fleet;
pub mod scans;
