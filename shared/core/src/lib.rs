//! patchflow's core: the patch-management operating model (NIST SP 800-171 3.14.1 / CMMC L2
//! SI.L2-3.14.1) as pure, explainable rules. No AWS, no network, no filesystem, no clock reads:
//! time is always passed in.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod contract;
pub mod ids;
pub mod model;
pub mod plan;
pub mod policy;
pub mod ports;
pub mod reason;
pub mod rules;
pub mod run;
pub mod schedule;
pub mod tier;
pub mod trace;

#[cfg(test)]
mod testing;
