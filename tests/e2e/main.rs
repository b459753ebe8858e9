//! Cross-crate tests: what must hold of every plan, for any fleet, cycle and release; one
//! contract suite per port against every adapter; whole cycles through the pipeline.

mod audit;
mod batches;
mod closure;
mod connectors;
mod cycle;
mod escalation;
mod evidence_store;
mod governance;
mod honest;
mod infra;
mod plan_invariants;
mod pump;
mod queues;
mod shards;
mod soak;
mod sqs_limits;
mod state_store;
mod support;
mod watch;
