//! What patchflow's six Lambda functions share, so that no `main` is copy-pasted: JSON tracing
//! the way the Lambda runtime expects it ([`logging`]), the configuration read once from the
//! environment ([`config`]), the AWS wiring built once per execution environment ([`aws`]), the
//! SQS partial batch response ([`sqs`]), scheduled events ([`scheduled`]) and the entry point each
//! function's `main` calls in one line ([`run`], with a function described by [`Function`]).
//!
//! Handlers stay generic over the pipeline's ports, so the functions' tests run them on the
//! embedded adapters (the `testing` module, behind the `testing` feature).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod aws;
pub mod config;
pub mod function;
pub mod logging;
pub mod scheduled;
pub mod sqs;
pub mod systems;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod wiring;

pub use aws::AwsEnv;
pub use config::{Config, ConfigError};
pub use function::{run, Failure, Function, SqsStage};
pub use scheduled::Invocation;
pub use sqs::sqs_batch;
pub use systems::Sources;

/// Re-exported so function crates name one version of each.
pub use aws_lambda_events::event::eventbridge::EventBridgeEvent;
pub use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
pub use lambda_runtime::{Context, Error, LambdaEvent};
pub use patchflow_core::ports::queue::Stage;
