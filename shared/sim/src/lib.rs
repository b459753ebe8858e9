//! Simulation support for patchflow: a seeded generator of realistic fleets in the inventory
//! contract's format, for demos, tests and benchmarks.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod fleet;
