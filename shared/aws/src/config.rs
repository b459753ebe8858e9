//! Configuration read once from the environment, each key by a named constant.

use aws_config::BehaviorVersion;

/// The evidence bucket's name.
pub const EVIDENCE_BUCKET: &str = "PATCHFLOW_EVIDENCE_BUCKET";
/// The state table's name.
pub const STATE_TABLE: &str = "PATCHFLOW_STATE_TABLE";
/// The stage queues' name prefix (`{prefix}-{stage}`, `{prefix}-{stage}-dlq`).
pub const QUEUE_PREFIX: &str = "PATCHFLOW_QUEUE_PREFIX";
/// `true` to address S3 buckets by path (`endpoint/bucket/key`) rather than by virtual host;
/// needed by S3-compatible endpoints without wildcard DNS.
pub const S3_FORCE_PATH_STYLE: &str = "PATCHFLOW_S3_FORCE_PATH_STYLE";

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A variable has a value we cannot read.
    #[error("environment variable {name}: {message}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// A boolean variable (`true`/`false`, `1`/`0`), false when unset.
pub fn flag(name: &'static str) -> Result<bool, ConfigError> {
    match std::env::var(name).ok().as_deref().map(str::trim) {
        None | Some("") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(ConfigError::Invalid {
            name,
            message: format!("`{other}` is not true or false"),
        }),
    }
}

/// The shared SDK configuration: region, credentials and endpoint (`AWS_ENDPOINT_URL`) from the
/// standard chain.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// A DynamoDB client from the SDK configuration.
pub fn dynamodb_client(sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(sdk)
}

/// An SQS client from the SDK configuration.
pub fn sqs_client(sdk: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(sdk)
}

/// An S3 client from the SDK configuration and [`S3_FORCE_PATH_STYLE`].
pub fn s3_client(sdk: &aws_config::SdkConfig) -> Result<aws_sdk_s3::Client, ConfigError> {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(flag(S3_FORCE_PATH_STYLE)?)
        .build();
    Ok(aws_sdk_s3::Client::from_conf(conf))
}
