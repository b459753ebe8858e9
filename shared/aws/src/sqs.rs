//! Stage queues on SQS: one standard queue per stage, each with a dead-letter queue through a
//! redrive policy. Standard, not FIFO: every consumer is idempotent, nothing depends on order,
//! and a FIFO queue's message groups would let one poison message block its group while Lambda
//! retries it.
//!
//! `SendMessageBatch` takes at most 10 entries and 256 KiB in all; batches are cut to fit, and
//! entries SQS fails on its side are retried with backoff.

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use chrono::Duration;
use patchflow_core::ports::queue::{
    DeadLetter, Delivery, Envelope, QueueConsumer, QueueSender, Stage,
};
use patchflow_core::ports::PortError;
use rand::Rng;

use crate::errors::classify;

/// SQS's limit on entries per `SendMessageBatch`.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// SQS's limit on the total payload of one `SendMessageBatch` (and of one message).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// How many times entries SQS failed on its side are resent before giving up.
const SEND_ATTEMPTS: u32 = 4;
/// The message attribute carrying a dead letter's reason.
pub const REASON_ATTRIBUTE: &str = "patchflow_reason";

/// The two queues of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageQueue {
    /// The stage's queue.
    pub url: String,
    /// Its dead-letter queue.
    pub dlq_url: String,
}

/// The stage queues on SQS.
#[derive(Debug, Clone)]
pub struct SqsQueues {
    client: aws_sdk_sqs::Client,
    queues: HashMap<Stage, StageQueue>,
}

impl SqsQueues {
    /// The queues of every stage.
    pub fn new(client: aws_sdk_sqs::Client, queues: HashMap<Stage, StageQueue>) -> Self {
        Self { client, queues }
    }

    fn queue(&self, stage: Stage) -> Result<&StageQueue, PortError> {
        self.queues.get(&stage).ok_or_else(|| {
            PortError::permanent(
                format!("{stage} queue"),
                "no queue is configured for this stage",
            )
        })
    }

    /// The stage's dead-letter queue URL; an empty one (a function that only sends to the stage
    /// is given no dead-letter queue for it) is an error, not a call to SQS.
    fn dlq(&self, stage: Stage) -> Result<&str, PortError> {
        let url = self.queue(stage)?.dlq_url.as_str();
        if url.is_empty() {
            return Err(PortError::permanent(
                format!("{stage} dead-letter queue"),
                "no dead-letter queue is configured for this stage",
            ));
        }
        Ok(url)
    }
}

/// Cuts messages into batches within SQS's entry and size limits. A message that alone exceeds
/// the size limit is an error: no batch can carry it.
pub fn batches(bodies: &[String]) -> Result<Vec<Vec<usize>>, PortError> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut size = 0;
    for (i, body) in bodies.iter().enumerate() {
        let len = body.len();
        if len > MAX_BATCH_BYTES {
            return Err(PortError::permanent(
                "send",
                format!("message {i} is {len} bytes; SQS takes at most {MAX_BATCH_BYTES}"),
            ));
        }
        if current.len() == MAX_BATCH_ENTRIES || size + len > MAX_BATCH_BYTES {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        current.push(i);
        size += len;
    }
    if !current.is_empty() {
        out.push(current);
    }
    Ok(out)
}

fn backoff(attempt: u32) -> StdDuration {
    // Exponential with full jitter: 0..(50ms * 2^attempt).
    let cap = 50u64 << attempt.min(6);
    StdDuration::from_millis(rand::thread_rng().gen_range(0..=cap))
}

impl QueueSender for SqsQueues {
    async fn send_batch(&self, stage: Stage, messages: &[Envelope]) -> Result<(), PortError> {
        let url = &self.queue(stage)?.url;
        let bodies: Vec<String> = messages.iter().map(Envelope::to_body).collect();
        for batch in batches(&bodies)? {
            let mut pending: Vec<usize> = batch;
            for attempt in 0..SEND_ATTEMPTS {
                let entries = pending
                    .iter()
                    .map(|&i| {
                        SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(&bodies[i])
                            .build()
                            .map_err(|e| PortError::permanent("build a batch entry", e))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| classify(format!("send to {stage}"), e))?;
                if let Some(refused) = out.failed().iter().find(|f| f.sender_fault()) {
                    return Err(PortError::permanent(
                        format!("send to {stage}"),
                        format!(
                            "SQS refused a message: {} {}",
                            refused.code(),
                            refused.message().unwrap_or_default()
                        ),
                    ));
                }
                pending = out
                    .failed()
                    .iter()
                    .filter_map(|f| f.id().parse().ok())
                    .collect();
                if pending.is_empty() {
                    break;
                }
                if attempt + 1 == SEND_ATTEMPTS {
                    return Err(PortError::transient(
                        format!("send to {stage}"),
                        format!(
                            "{} message(s) still failing after {SEND_ATTEMPTS} attempts",
                            pending.len()
                        ),
                    ));
                }
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
        Ok(())
    }
}

impl QueueConsumer for SqsQueues {
    async fn receive(
        &self,
        stage: Stage,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, PortError> {
        let url = &self.queue(stage)?.url;
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .visibility_timeout(visibility.num_seconds().clamp(0, 43_200) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| classify(format!("receive from {stage}"), e))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Some(Delivery {
                    body: m.body()?.to_owned(),
                    receipt: m.receipt_handle()?.to_owned(),
                    receive_count: count,
                })
            })
            .collect())
    }

    async fn ack(&self, stage: Stage, receipt: &str) -> Result<(), PortError> {
        let url = &self.queue(stage)?.url;
        self.client
            .delete_message()
            .queue_url(url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| match classify(format!("ack on {stage}"), e) {
                PortError::NotFound(c) => PortError::Conflict(c),
                other => other,
            })?;
        Ok(())
    }

    async fn release(&self, stage: Stage, receipt: &str) -> Result<(), PortError> {
        let url = &self.queue(stage)?.url;
        self.client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(|e| match classify(format!("release on {stage}"), e) {
                PortError::NotFound(c) => PortError::Conflict(c),
                other => other,
            })?;
        Ok(())
    }

    async fn dead_letter(
        &self,
        stage: Stage,
        delivery: &Delivery,
        reason: &str,
    ) -> Result<(), PortError> {
        let dlq_url = self.dlq(stage)?;
        let reason_attr = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(reason)
            .build()
            .map_err(|e| PortError::permanent("build the reason attribute", e))?;
        // Send first, then delete: a crash in between leaves a duplicate in the dead-letter queue,
        // never a lost message.
        self.client
            .send_message()
            .queue_url(dlq_url)
            .message_body(&delivery.body)
            .message_attributes(REASON_ATTRIBUTE, reason_attr)
            .send()
            .await
            .map_err(|e| classify(format!("dead-letter on {stage}"), e))?;
        self.ack(stage, &delivery.receipt).await
    }

    async fn dead_letters(&self, stage: Stage) -> Result<Vec<DeadLetter>, PortError> {
        let dlq_url = self.dlq(stage)?;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        // Peek with a zero visibility timeout until a receive brings nothing new.
        loop {
            let page = self
                .client
                .receive_message()
                .queue_url(dlq_url)
                .max_number_of_messages(10)
                .visibility_timeout(0)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| classify(format!("read {stage} dead letters"), e))?;
            let mut fresh = 0;
            for m in page.messages() {
                let Some(id) = m.message_id() else { continue };
                if !seen.insert(id.to_owned()) {
                    continue;
                }
                fresh += 1;
                let reason = m
                    .message_attributes()
                    .and_then(|a| a.get(REASON_ATTRIBUTE))
                    .and_then(|v| v.string_value())
                    .unwrap_or("received too many times without being processed (the queue's redrive policy)")
                    .to_owned();
                out.push(DeadLetter {
                    body: m.body().unwrap_or_default().to_owned(),
                    reason,
                });
            }
            if fresh == 0 {
                return Ok(out);
            }
        }
    }
}

impl SqsQueues {
    /// The stage queues named `{prefix}-{stage}` and `{prefix}-{stage}-dlq`, found by name (as
    /// `patchflow aws bootstrap` or the deployment created them).
    pub async fn lookup(client: aws_sdk_sqs::Client, prefix: &str) -> Result<Self, PortError> {
        let mut queues = HashMap::new();
        for stage in Stage::ALL {
            let mut urls = Vec::with_capacity(2);
            for name in [format!("{prefix}-{stage}"), format!("{prefix}-{stage}-dlq")] {
                let url = client
                    .get_queue_url()
                    .queue_name(&name)
                    .send()
                    .await
                    .map_err(|e| classify(format!("find queue {name}"), e))?
                    .queue_url
                    .ok_or_else(|| {
                        PortError::permanent(format!("find queue {name}"), "SQS returned no URL")
                    })?;
                urls.push(url);
            }
            let dlq_url = urls.pop().unwrap_or_default();
            let url = urls.pop().unwrap_or_default();
            queues.insert(stage, StageQueue { url, dlq_url });
        }
        Ok(Self::new(client, queues))
    }
}

/// Creates a stage's queue and its dead-letter queue (`{prefix}-{stage}` and
/// `{prefix}-{stage}-dlq`), with a redrive after `max_receives` receives and a visibility timeout.
pub async fn create_stage_queue(
    client: &aws_sdk_sqs::Client,
    prefix: &str,
    stage: Stage,
    max_receives: u32,
    visibility: Duration,
) -> Result<StageQueue, PortError> {
    let dlq_url = client
        .create_queue()
        .queue_name(format!("{prefix}-{stage}-dlq"))
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .map_err(|e| classify(format!("create the {stage} dead-letter queue"), e))?
        .queue_url
        .ok_or_else(|| PortError::permanent("create queue", "SQS returned no queue URL"))?;
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| classify(format!("read the {stage} dead-letter queue"), e))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| PortError::permanent("create queue", "SQS returned no queue ARN"))?;
    let redrive =
        serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives})
            .to_string();
    let url = client
        .create_queue()
        .queue_name(format!("{prefix}-{stage}"))
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility.num_seconds().to_string(),
        )
        .send()
        .await
        .map_err(|e| classify(format!("create the {stage} queue"), e))?
        .queue_url
        .ok_or_else(|| PortError::permanent("create queue", "SQS returned no queue URL"))?;
    Ok(StageQueue { url, dlq_url })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_at_most_ten_entries() {
        let bodies: Vec<String> = (0..23).map(|i| format!("m{i}")).collect();
        let b = batches(&bodies).unwrap();
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 3]);
    }

    #[test]
    fn batches_stay_within_256_kib() {
        let bodies: Vec<String> = (0..5).map(|_| "x".repeat(100 * 1024)).collect();
        let b = batches(&bodies).unwrap();
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        for batch in &b {
            assert!(batch.iter().map(|&i| bodies[i].len()).sum::<usize>() <= MAX_BATCH_BYTES);
        }
    }

    #[test]
    fn a_message_larger_than_sqs_takes_is_refused_before_sending() {
        let bodies = vec!["x".repeat(MAX_BATCH_BYTES + 1)];
        assert!(matches!(batches(&bodies), Err(PortError::Permanent { .. })));
    }
}
