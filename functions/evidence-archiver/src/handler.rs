//! evidence-archiver: the evidence stage's queue: evidence bundles, PSA updates, tier closure. The skeleton answers each SQS batch with the records to retry
//! (`batchItemFailures`) and moves poison records to the stage's dead-letter queue.

use patchflow_lambda::{SqsStage, Stage};

/// The evidence-archiver function.
#[derive(Debug, Clone, Copy, Default)]
pub struct EvidenceArchiver;

impl SqsStage for EvidenceArchiver {
    const NAME: &'static str = "evidence-archiver";
    const STAGE: Stage = Stage::Evidence;
}

#[cfg(test)]
mod tests;
