//! Two event sources, told apart by shape: an SQS batch of the rollout stage (an object with
//! `Records`) through its handler, or the hourly schedule's event to the tick, for the event's
//! `time` (else now), so a retried invocation sends the same keys.

use chrono::{DateTime, Utc};
use patchflow_core::ports::queue::QueueConsumer;
use patchflow_lambda::{
    sqs_batch, Config, ConfigError, Function, Invocation, LambdaEvent, Sources, SqsBatchResponse,
    Stage,
};
use patchflow_pipeline::env::Ports;
use patchflow_pipeline::error::HandlerError;
use patchflow_pipeline::tick::{tick, TickReport};
use serde::Serialize;

/// What an invocation answers: the partial batch response to SQS, the tick's report to the
/// schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Response {
    /// For an SQS batch.
    Sqs(SqsBatchResponse),
    /// For a scheduled tick.
    Tick(TickReport),
}

/// The ring-promotion function.
#[derive(Debug, Clone, Copy, Default)]
pub struct RingPromotion;

impl Function for RingPromotion {
    type Event = serde_json::Value;
    type Response = Response;
    const NAME: &'static str = "ring-promotion";

    fn from_config(_config: &Config, _sources: Sources) -> Result<Self, ConfigError> {
        Ok(Self)
    }

    async fn handle<X: Ports, C: QueueConsumer>(
        &self,
        x: &X,
        queues: &C,
        event: LambdaEvent<serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<Response, HandlerError> {
        match Invocation::from_value(event.payload, now)? {
            Invocation::Sqs(batch) => Ok(Response::Sqs(
                sqs_batch(x, Stage::Rollout, batch, queues, now).await,
            )),
            Invocation::Scheduled(at) => Ok(Response::Tick(tick(x, at).await?)),
        }
    }
}

#[cfg(test)]
mod tests;
