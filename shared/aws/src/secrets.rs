//! Credentials from AWS Secrets Manager, read by ARN once and cached for the life of the
//! execution environment (a cold start reads each secret once; warm invocations reuse it).
//! Values are returned, never logged: errors name the secret's ARN only.

use std::collections::HashMap;
use std::sync::Mutex;

use patchflow_core::ports::PortError;

use crate::errors::classify;

/// A Secrets Manager client with a cache of the secrets it has read.
#[derive(Debug)]
pub struct SecretsCache {
    client: aws_sdk_secretsmanager::Client,
    cache: Mutex<HashMap<String, String>>,
}

impl SecretsCache {
    /// A cache over this client.
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The secret's string value (`SecretString`), read once per ARN.
    pub async fn get(&self, arn: &str) -> Result<String, PortError> {
        if let Some(v) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(arn)
        {
            return Ok(v.clone());
        }
        let context = format!("Secrets Manager GetSecretValue {arn}");
        let out = self
            .client
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| classify(context.clone(), e))?;
        let value = out.secret_string().ok_or_else(|| {
            PortError::permanent(
                context,
                "the secret has no string value (patchflow's credentials are a JSON object \
                 stored as SecretString)",
            )
        })?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(arn.to_owned(), value.to_owned());
        Ok(value.to_owned())
    }
}

/// A Secrets Manager client from the SDK configuration.
pub fn secrets_client(sdk: &aws_config::SdkConfig) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(sdk)
}
