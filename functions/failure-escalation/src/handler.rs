//! failure-escalation: the failure stage's queue: tickets, priorities, paging, holds. The skeleton answers each SQS batch with the records to retry
//! (`batchItemFailures`) and moves poison records to the stage's dead-letter queue.

use patchflow_lambda::{SqsStage, Stage};

/// The failure-escalation function.
#[derive(Debug, Clone, Copy, Default)]
pub struct FailureEscalation;

impl SqsStage for FailureEscalation {
    const NAME: &'static str = "failure-escalation";
    const STAGE: Stage = Stage::Failure;
}

#[cfg(test)]
mod tests;
