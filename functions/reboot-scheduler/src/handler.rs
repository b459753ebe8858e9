//! reboot-scheduler: the schedule stage's queue: install and reboot commands, the hourly tier ticks (reports, reminders, forced reboots, validation). The skeleton answers each SQS batch with the records to retry
//! (`batchItemFailures`) and moves poison records to the stage's dead-letter queue.

use patchflow_lambda::{SqsStage, Stage};

/// The reboot-scheduler function.
#[derive(Debug, Clone, Copy, Default)]
pub struct RebootScheduler;

impl SqsStage for RebootScheduler {
    const NAME: &'static str = "reboot-scheduler";
    const STAGE: Stage = Stage::Schedule;
}

#[cfg(test)]
mod tests;
