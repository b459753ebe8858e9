//! patchflow's pipeline: the handlers of a cycle's six stages (inventory sync, approval
//! evaluation, ring promotion, reboot scheduling, failure escalation, evidence archiving), generic
//! over the ports, so the same code runs in Lambda on the AWS adapters and on one machine on the
//! embedded default; and the pump that feeds them from queues the way Lambda's event sources do.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod applicability;
pub mod approval;
pub mod batch;
pub mod batches;
pub mod compliance;
pub mod env;
pub mod error;
pub mod evidence;
pub mod failure;
pub mod messages;
pub mod opening;
pub mod operator;
pub mod pump;
pub mod records;
pub mod rollout;
pub mod schedule;
pub mod summary;
pub mod sync;
pub mod tick;
pub mod watch;

pub use env::{Env, Settings};
pub use error::HandlerError;
