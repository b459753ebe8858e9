//! The AWS wiring, built once per execution environment: the SDK configuration and clients, the
//! stage queues found by name, and the pipeline's [`Env`] over DynamoDB, SQS and S3, with the connectors
//! the configuration names.

use patchflow_aws::config::{dynamodb_client, s3_client, sdk_config, sqs_client};
use patchflow_aws::dynamodb::DynamoState;
use patchflow_aws::s3::S3EvidenceStore;
use patchflow_aws::sqs::SqsQueues;
use patchflow_pipeline::env::{Env, Settings};
use patchflow_pipeline::error::error_chain;

use crate::config::{Config, ConfigError, QUEUE_PREFIX};
use crate::systems::{systems, AnyPager, AnyPsa, AnyRmm, Sources, SystemsError};
use crate::wiring::Wiring;

/// The environment every function runs on in AWS.
pub type AwsEnv = Env<DynamoState, SqsQueues, S3EvidenceStore, AnyRmm, AnyPsa, AnyPager>;

/// Why a function cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The S3 client's configuration.
    #[error(transparent)]
    S3(#[from] patchflow_aws::config::ConfigError),
    /// The RMM, PSA, pager or sources.
    #[error(transparent)]
    Systems(#[from] SystemsError),
    /// The function is not in the wiring table, so what it talks to is unknown.
    #[error("{0} is not in the wiring table (shared/lambda/src/wiring.rs)")]
    Unwired(&'static str),
    /// The stage queues could not be found.
    #[error("the stage queues of {QUEUE_PREFIX}={prefix}: {message}")]
    Queues {
        /// The prefix.
        prefix: String,
        /// What went wrong.
        message: String,
    },
}

/// Builds `function`'s environment: SDK configuration from the standard chain, one client per
/// service, the stage queues looked up by name, the connectors of the configuration for the
/// systems it talks to (credentials read once); and inventory-sync's sources.
pub async fn aws_env(
    config: &Config,
    function: &Wiring,
) -> Result<(AwsEnv, Sources), StartupError> {
    let sdk = sdk_config().await;
    let sqs = sqs_client(&sdk);
    let queues = SqsQueues::lookup(sqs, &config.queue_prefix)
        .await
        .map_err(|e| StartupError::Queues {
            prefix: config.queue_prefix.clone(),
            message: error_chain(&e),
        })?;
    let s3 = s3_client(&sdk)?;
    let systems = systems(config, &sdk, function).await?;
    let env = Env {
        state: DynamoState::new(dynamodb_client(&sdk), config.state_table.clone()),
        queues,
        evidence: S3EvidenceStore::new(s3, config.evidence_bucket.clone()),
        rmm: systems.rmm,
        psa: systems.psa,
        pager: systems.pager,
        policy: config.policy.clone(),
        settings: Settings {
            retention: chrono::Duration::days(config.retention_days),
            ..Settings::default()
        },
    };
    Ok((env, systems.sources))
}
