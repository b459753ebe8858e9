//! The AWS wiring, built once per execution environment: the SDK configuration and clients, the
//! stage queues at the URLs the configuration gives (no SQS call at start), and the pipeline's [`Env`] over DynamoDB, SQS and S3, with the connectors
//! the configuration names.

use std::collections::{BTreeMap, HashMap};

use patchflow_aws::config::{dynamodb_client, s3_client, sdk_config, sqs_client};
use patchflow_aws::dynamodb::DynamoState;
use patchflow_aws::s3::S3EvidenceStore;
use patchflow_aws::sqs::{SqsQueues, StageQueue};
use patchflow_core::ports::queue::Stage;
use patchflow_pipeline::env::{Env, Settings};

use crate::config::{dlq_url_variable, queue_url_variable, Config, ConfigError};
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
}

/// The stage queues `function` uses, at the configured URLs: each queue it sends to or
/// consumes, and its own queue's dead-letter queue. A URL it needs that is not set is an error
/// naming the variable; a queue it does not use is absent (sending to it is a permanent error).
pub fn stage_queues(
    config: &Config,
    function: &Wiring,
) -> Result<HashMap<Stage, StageQueue>, ConfigError> {
    let url = |variable: &'static str, urls: &BTreeMap<Stage, String>, stage: Stage, why: &str| {
        urls.get(&stage)
            .cloned()
            .ok_or_else(|| ConfigError::Missing {
                name: variable,
                hint: format!(": {} {why} the {stage} queue", function.name),
            })
    };
    let mut queues = HashMap::new();
    for &stage in function.sends {
        let queue = url(
            queue_url_variable(stage),
            &config.queue_urls,
            stage,
            "sends to",
        )?;
        queues.insert(
            stage,
            StageQueue {
                url: queue,
                dlq_url: String::new(),
            },
        );
    }
    if let Some(stage) = function.consumes {
        let queue = url(
            queue_url_variable(stage),
            &config.queue_urls,
            stage,
            "consumes",
        )?;
        let dlq_url = url(
            dlq_url_variable(stage),
            &config.dlq_urls,
            stage,
            "moves poison messages to the dead-letter queue of",
        )?;
        queues.insert(
            stage,
            StageQueue {
                url: queue,
                dlq_url,
            },
        );
    }
    Ok(queues)
}

/// Builds `function`'s environment: SDK configuration from the standard chain, one client per
/// service, the stage queues at their configured URLs ([`stage_queues`]), the connectors of the configuration for the
/// systems it talks to (credentials read once); and inventory-sync's sources.
pub async fn aws_env(
    config: &Config,
    function: &Wiring,
) -> Result<(AwsEnv, Sources), StartupError> {
    let queues = stage_queues(config, function)?;
    let sdk = sdk_config().await;
    let queues = SqsQueues::new(sqs_client(&sdk), queues);
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
