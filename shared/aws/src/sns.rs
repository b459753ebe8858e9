//! On-call paging through an SNS topic, for MSPs whose on-call tool subscribes to a topic (by
//! e-mail, SMS, an HTTPS endpoint or a chat integration) rather than taking PagerDuty events.
//!
//! Each page is one message: the subject is the summary's first line, the body a JSON object
//! `{"event": "trigger"|"resolve", "dedup_key": ..., "summary": ...}` that subscribers can filter
//! on, with the same fields as message attributes. On a FIFO topic (`.fifo`) the dedup key is
//! the message group and the event's deduplication id, so SNS itself drops a repeated trigger
//! within its five-minute window (FIFO topics deliver to SQS subscribers only); on a standard
//! topic (e-mail, SMS, HTTPS subscribers) a repeated trigger is prevented upstream by the
//! pipeline's idempotency keys.

use aws_sdk_sns::types::MessageAttributeValue;
use patchflow_core::ports::pager::Pager;
use patchflow_core::ports::PortError;
use sha2::{Digest, Sha256};

use crate::errors::classify;

/// SNS limits a subject to 100 characters.
const SUBJECT_MAX: usize = 100;

/// A pager that publishes to an SNS topic.
#[derive(Debug, Clone)]
pub struct SnsPager {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsPager {
    /// Pages through this topic.
    pub fn new(client: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
        }
    }

    async fn publish(&self, event: &str, dedup_key: &str, summary: &str) -> Result<(), PortError> {
        let body = serde_json::json!({
            "event": event,
            "dedup_key": dedup_key,
            "summary": summary,
            "source": "patchflow",
        });
        let first_line = summary.lines().next().unwrap_or_default();
        let subject: String = format!("patchflow {event}: {first_line}")
            .chars()
            // SNS subjects are ASCII printable without newlines.
            .map(|c| {
                if c.is_ascii() && !c.is_ascii_control() {
                    c
                } else {
                    '?'
                }
            })
            .take(SUBJECT_MAX)
            .collect();
        let attr = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| PortError::permanent("SNS message attribute", e))
        };
        let mut req = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(body.to_string())
            .message_attributes("event", attr(event)?)
            .message_attributes("dedup_key", attr(dedup_key)?);
        if self.topic_arn.ends_with(".fifo") {
            let digest = Sha256::digest(format!("{event}\0{dedup_key}").as_bytes());
            let dedup_id: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            req = req
                .message_group_id(group_id(dedup_key))
                .message_deduplication_id(dedup_id);
        }
        req.send()
            .await
            .map_err(|e| classify(format!("SNS Publish {} ({event})", self.topic_arn), e))?;
        Ok(())
    }
}

/// A FIFO message group id: at most 128 characters of `[A-Za-z0-9!-~]`.
fn group_id(dedup_key: &str) -> String {
    dedup_key
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(128)
        .collect()
}

impl Pager for SnsPager {
    async fn trigger(&self, dedup_key: &str, summary: &str) -> Result<(), PortError> {
        self.publish("trigger", dedup_key, summary).await
    }

    async fn resolve(&self, dedup_key: &str) -> Result<(), PortError> {
        self.publish("resolve", dedup_key, "resolved").await
    }
}

/// An SNS client from the SDK configuration.
pub fn sns_client(sdk: &aws_config::SdkConfig) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(sdk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_are_printable_and_short() {
        assert_eq!(group_id("2026-12/page/srv 1"), "2026-12/page/srv_1");
        assert_eq!(group_id(&"x".repeat(300)).len(), 128);
    }
}
