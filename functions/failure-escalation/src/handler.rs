//! An SQS batch of the failure stage through its handler, answered with the records to retry.

use chrono::{DateTime, Utc};
use patchflow_core::ports::queue::QueueConsumer;
use patchflow_lambda::{
    sqs_batch, Config, ConfigError, Function, LambdaEvent, SqsBatchResponse, SqsEvent, Stage,
};
use patchflow_pipeline::env::Ports;
use patchflow_pipeline::error::HandlerError;

/// The failure-escalation function.
#[derive(Debug, Clone, Copy, Default)]
pub struct FailureEscalation;

impl Function for FailureEscalation {
    type Event = SqsEvent;
    type Response = SqsBatchResponse;
    const NAME: &'static str = "failure-escalation";

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
        Ok(sqs_batch(x, Stage::Failure, event.payload, queues, now).await)
    }
}

#[cfg(test)]
mod tests;
