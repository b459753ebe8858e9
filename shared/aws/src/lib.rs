//! patchflow's AWS adapters. They own every wire format and key layout; handlers only see the
//! ports of `patchflow_core::ports`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bootstrap;
pub mod config;
pub mod dynamodb;
mod errors;
pub mod s3;
pub mod secrets;
pub mod sns;
pub mod sqs;
