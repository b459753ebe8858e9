//! approval-eval: the approval stage's queue: approval governance per patch and the daily sweep for overdue reviews. The skeleton answers each SQS batch with the records to retry
//! (`batchItemFailures`) and moves poison records to the stage's dead-letter queue.

use patchflow_lambda::{SqsStage, Stage};

/// The approval-eval function.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApprovalEval;

impl SqsStage for ApprovalEval {
    const NAME: &'static str = "approval-eval";
    const STAGE: Stage = Stage::Approval;
}

#[cfg(test)]
mod tests;
