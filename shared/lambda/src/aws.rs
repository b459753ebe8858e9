//! The AWS wiring, built once per execution environment: the SDK configuration and clients, the
//! stage queues' URLs, and the pipeline's [`Env`] over DynamoDB, SQS and S3, with the connectors
//! the configuration names.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_sqs::error::DisplayErrorContext;
use patchflow_aws::config::{dynamodb_client, s3_client, sdk_config, sqs_client};
use patchflow_aws::dynamodb::DynamoState;
use patchflow_aws::s3::S3EvidenceStore;
use patchflow_aws::sqs::{SqsQueues, StageQueue};
use patchflow_core::ports::queue::Stage;
use patchflow_local::clock::SystemClock;
use patchflow_pipeline::env::{Env, Settings};
use patchflow_sim::connectors::{SimPager, SimPsa, SimRmm};
use tokio::task::JoinSet;

use crate::config::{Config, ConfigError, Connectors, QUEUE_PREFIX};

/// The environment every function runs on in AWS.
pub type AwsEnv = Env<DynamoState, SqsQueues, S3EvidenceStore, SimRmm<SystemClock>, SimPsa, SimPager>;

/// Why a function cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The S3 client's configuration.
    #[error(transparent)]
    S3(#[from] patchflow_aws::config::ConfigError),
    /// A stage queue could not be found.
    #[error("queue {queue} (from {QUEUE_PREFIX}): {message}")]
    Queue {
        /// The queue's name.
        queue: String,
        /// What SQS said.
        message: String,
    },
}

/// The name of a stage's queue and of its dead-letter queue.
pub fn queue_names(prefix: &str, stage: Stage) -> (String, String) {
    (format!("{prefix}-{stage}"), format!("{prefix}-{stage}-dlq"))
}

/// Looks up every stage's queue and dead-letter queue by name, concurrently.
pub async fn stage_queues(
    client: &aws_sdk_sqs::Client,
    prefix: &str,
) -> Result<HashMap<Stage, StageQueue>, StartupError> {
    let mut lookups = JoinSet::new();
    for stage in Stage::ALL {
        let (queue, dlq) = queue_names(prefix, stage);
        for (name, is_dlq) in [(queue, false), (dlq, true)] {
            let client = client.clone();
            lookups.spawn(async move {
                let url = client
                    .get_queue_url()
                    .queue_name(&name)
                    .send()
                    .await
                    .map_err(|e| StartupError::Queue {
                        queue: name.clone(),
                        message: DisplayErrorContext(&e).to_string(),
                    })?
                    .queue_url
                    .ok_or_else(|| StartupError::Queue {
                        queue: name.clone(),
                        message: "SQS returned no queue URL".to_owned(),
                    })?;
                Ok::<_, StartupError>((stage, is_dlq, url))
            });
        }
    }
    let mut urls: HashMap<Stage, (Option<String>, Option<String>)> = HashMap::new();
    while let Some(joined) = lookups.join_next().await {
        let (stage, is_dlq, url) = joined.map_err(|e| StartupError::Queue {
            queue: format!("{prefix}-*"),
            message: format!("the lookup did not finish: {e}"),
        })??;
        let entry = urls.entry(stage).or_default();
        if is_dlq {
            entry.1 = Some(url);
        } else {
            entry.0 = Some(url);
        }
    }
    let mut queues = HashMap::new();
    for stage in Stage::ALL {
        let (name, dlq_name) = queue_names(prefix, stage);
        let (url, dlq_url) = urls.remove(&stage).unwrap_or_default();
        let missing = |queue: String| StartupError::Queue {
            queue,
            message: "not looked up".to_owned(),
        };
        queues.insert(
            stage,
            StageQueue {
                url: url.ok_or_else(|| missing(name))?,
                dlq_url: dlq_url.ok_or_else(|| missing(dlq_name))?,
            },
        );
    }
    Ok(queues)
}

/// Builds the environment: SDK configuration from the standard chain, one client per service,
/// the stage queues looked up by name, the connectors of the configuration.
pub async fn aws_env(config: &Config) -> Result<AwsEnv, StartupError> {
    let sdk = sdk_config().await;
    let sqs = sqs_client(&sdk);
    let queues = stage_queues(&sqs, &config.queue_prefix).await?;
    let s3 = s3_client(&sdk)?;
    let Connectors::Simulation(outcomes) = config.connectors;
    Ok(Env {
        state: DynamoState::new(dynamodb_client(&sdk), config.state_table.clone()),
        queues: SqsQueues::new(sqs, queues),
        evidence: S3EvidenceStore::new(s3, config.evidence_bucket.clone()),
        rmm: SimRmm::new(outcomes, Arc::new(SystemClock)),
        psa: SimPsa::default(),
        pager: SimPager::default(),
        policy: config.policy.clone(),
        settings: Settings::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_follow_the_bootstrap_layout() {
        assert_eq!(
            queue_names("patchflow", Stage::Approval),
            ("patchflow-approval".to_owned(), "patchflow-approval-dlq".to_owned())
        );
    }
}
