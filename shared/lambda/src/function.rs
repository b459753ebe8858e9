//! A Lambda function as the skeleton runs it: what it reads from the configuration, and how it
//! handles its event on any ports. [`run`] does the rest, once per execution environment.

use std::future::Future;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use patchflow_core::ports::queue::QueueConsumer;
use patchflow_core::ports::queue::Stage;
use patchflow_pipeline::env::Ports;
use patchflow_pipeline::error::HandlerError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{error, info};

use crate::aws::{aws_env, StartupError};
use crate::config::{Config, ConfigError};
use crate::logging;
use crate::systems::Sources;

/// One of patchflow's Lambda functions.
pub trait Function: Sized + Send + Sync + 'static {
    /// The event it is invoked with.
    type Event: DeserializeOwned + Send + 'static;
    /// What it answers.
    type Response: Serialize + Send + 'static;
    /// Its name, for logs.
    const NAME: &'static str;

    /// The function, from the configuration and the inventory and catalog sources it names
    /// (only inventory-sync keeps them); an error names what is missing.
    fn from_config(config: &Config, sources: Sources) -> Result<Self, ConfigError>;

    /// Handles one invocation at `now`. `queues` is the consumer side of the stage queues, for
    /// moving poison messages to their dead-letter queue.
    fn handle<X: Ports, C: QueueConsumer>(
        &self,
        x: &X,
        queues: &C,
        event: LambdaEvent<Self::Event>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Self::Response, HandlerError>> + Send;
}

/// A function that is one stage's SQS consumer and nothing else (approval-eval,
/// reboot-scheduler, failure-escalation, evidence-archiver): its name and stage are all it says;
/// the skeleton answers each batch through [`sqs_batch`](crate::sqs::sqs_batch).
pub trait SqsStage: Default + Send + Sync + 'static {
    /// The function's name, for logs.
    const NAME: &'static str;
    /// The stage whose queue feeds it.
    const STAGE: Stage;
}

impl<T: SqsStage> Function for T {
    type Event = SqsEvent;
    type Response = SqsBatchResponse;
    const NAME: &'static str = <T as SqsStage>::NAME;

    fn from_config(_config: &Config, _sources: Sources) -> Result<Self, ConfigError> {
        Ok(T::default())
    }

    async fn handle<X: Ports, C: QueueConsumer>(
        &self,
        x: &X,
        queues: &C,
        event: LambdaEvent<SqsEvent>,
        now: DateTime<Utc>,
    ) -> Result<SqsBatchResponse, HandlerError> {
        Ok(crate::sqs::sqs_batch(x, T::STAGE, event.payload, queues, now).await)
    }
}

/// A failed invocation, as Lambda reports it: `errorType` is `Retry` or `Poison`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failure(#[from] pub HandlerError);

impl From<Failure> for Diagnostic {
    fn from(f: Failure) -> Self {
        let error_type = match f.0 {
            HandlerError::Retry(_) => "Retry",
            HandlerError::Poison(_) => "Poison",
        };
        Diagnostic {
            error_type: error_type.to_owned(),
            error_message: f.to_string(),
        }
    }
}

async fn start<F: Function>() -> Result<(F, crate::AwsEnv), StartupError> {
    let config = Config::from_env()?;
    let wiring = crate::wiring::function(F::NAME).ok_or(StartupError::Unwired(F::NAME))?;
    // What the function talks to must be configured before any AWS call is made.
    config.check_systems(wiring)?;
    let (env, sources) = aws_env(&config, wiring).await?;
    let function = F::from_config(&config, sources)?;
    Ok((function, env))
}

/// Runs a function: JSON logs, the configuration and the AWS environment built once, then
/// [`lambda_runtime::run`] with a service that hands each event to [`Function::handle`] at the
/// system clock's now. A configuration error is logged and ends the process before the first
/// invocation (Lambda reports an init error).
pub async fn run<F: Function>() -> Result<(), lambda_runtime::Error> {
    logging::init();
    let (function, env) = match start::<F>().await {
        Ok(started) => started,
        Err(e) => {
            error!(function = F::NAME, error = %e, "cannot start");
            return Err(e.into());
        }
    };
    info!(function = F::NAME, "started");
    let shared = Arc::new((function, env));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<F::Event>| {
        let shared = Arc::clone(&shared);
        async move {
            let (function, env) = &*shared;
            function
                .handle(env, &env.queues, event, Utc::now())
                .await
                .map_err(|e| {
                    error!(function = F::NAME, error = %e, "invocation failed");
                    Failure(e)
                })
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_reports_its_kind_as_the_error_type() {
        let d = Diagnostic::from(Failure(HandlerError::Retry("throttled".into())));
        assert_eq!(d.error_type, "Retry");
        assert!(d.error_message.contains("throttled"));
        let d = Diagnostic::from(Failure(HandlerError::Poison("bad inventory".into())));
        assert_eq!(d.error_type, "Poison");
    }
}
