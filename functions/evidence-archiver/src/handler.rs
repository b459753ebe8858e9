//! An SQS batch of the evidence stage through its handler, answered with the records to retry.

use chrono::{DateTime, Utc};
use patchflow_core::ports::queue::QueueConsumer;
use patchflow_lambda::{
    sqs_batch, Config, ConfigError, Function, LambdaEvent, SqsBatchResponse, SqsEvent, Stage,
};
use patchflow_pipeline::env::Ports;
use patchflow_pipeline::error::HandlerError;

/// The evidence-archiver function.
#[derive(Debug, Clone, Copy, Default)]
pub struct EvidenceArchiver;

impl Function for EvidenceArchiver {
    type Event = SqsEvent;
    type Response = SqsBatchResponse;
    const NAME: &'static str = "evidence-archiver";

    fn from_config(_config: &Config) -> Result<Self, ConfigError> {
        Ok(Self)
    }

    async fn handle<X: Ports, C: QueueConsumer>(
        &self,
        x: &X,
        queues: &C,
        event: LambdaEvent<SqsEvent>,
        now: DateTime<Utc>,
    ) -> Result<SqsBatchResponse, HandlerError> {
        Ok(sqs_batch(x, Stage::Evidence, event.payload, queues, now).await)
    }
}

#[cfg(test)]
mod tests;
