//! The operating model as rules: each function decides one node (or a short run of nodes) of the
//! seed flow and appends its steps to a [`crate::trace::Trace`].

pub mod applicability;
pub mod approval;
pub mod cadence;
pub mod closure;
pub mod commands;
pub mod exception;
pub mod failure;
pub mod outcome;
pub mod representation;
pub mod scope;
pub mod sla;
pub mod validation;
pub mod waves;
