//! An SQS batch as Lambda's event source mapping delivers it, through a stage's handler, answered
//! with a partial batch response (the mapping must report batch item failures): a record that is
//! done is a success and Lambda deletes it; one to retry is a batch item failure and comes back
//! after its visibility timeout (and lands in the dead-letter queue after the queue's maximum
//! receives); a poison one is moved to the stage's dead-letter queue with its reason at once and
//! reported a success. If that move fails, the record is a batch item failure: it is never lost.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use patchflow_core::ports::queue::{Delivery, QueueConsumer, Stage};
use patchflow_pipeline::batch::{self, Outcome};
use patchflow_pipeline::env::Ports;
use patchflow_pipeline::error::error_chain;
use tracing::{error, info, warn};

/// The SQS system attribute counting a message's receives.
pub const RECEIVE_COUNT: &str = "ApproximateReceiveCount";

/// The delivery a record is, for the queue port: its body (empty if it has none), its receipt
/// handle (empty if it has none) and its receive count (1 when the attribute is missing or not a
/// number).
pub fn delivery_of(record: &SqsMessage) -> Delivery {
    Delivery {
        body: record.body.clone().unwrap_or_default(),
        receipt: record.receipt_handle.clone().unwrap_or_default(),
        receive_count: record
            .attributes
            .get(RECEIVE_COUNT)
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(1),
    }
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordResult {
    /// Handled (now or before): Lambda deletes it.
    Done(String),
    /// Handed back for redelivery: a batch item failure.
    Retry(String),
    /// Moved to the stage's dead-letter queue with this reason.
    DeadLettered(String),
    /// Poison, but the move to the dead-letter queue failed: a batch item failure, so the queue
    /// keeps it (and its redrive policy moves it after the maximum receives).
    DeadLetterFailed {
        /// Why it is poison.
        reason: String,
        /// Why the move failed.
        error: String,
    },
}

impl RecordResult {
    /// Whether the record is reported as a batch item failure.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            RecordResult::Retry(_) | RecordResult::DeadLetterFailed { .. }
        )
    }
}

/// Handles one record of a stage's batch at `now`.
pub async fn sqs_record<X: Ports, C: QueueConsumer>(
    x: &X,
    stage: Stage,
    record: &SqsMessage,
    consumer: &C,
    now: DateTime<Utc>,
) -> RecordResult {
    let id = record.message_id.as_deref().unwrap_or("");
    let outcome = match record.body.as_deref() {
        Some(body) => batch::handle(x, stage, body, now).await,
        None => Outcome::Poison(format!("SQS message {id:?} has no body")),
    };
    match outcome {
        Outcome::Done(what) => {
            info!(%stage, message_id = id, outcome = %what, "record done");
            RecordResult::Done(what)
        }
        Outcome::Retry(why) => {
            warn!(%stage, message_id = id, reason = %why, "record handed back for a retry");
            RecordResult::Retry(why)
        }
        Outcome::Poison(reason) => {
            let delivery = delivery_of(record);
            if delivery.receipt.is_empty() {
                let error = "the record has no receipt handle".to_owned();
                error!(%stage, message_id = id, %reason, %error, "poison record not dead-lettered");
                return RecordResult::DeadLetterFailed { reason, error };
            }
            match consumer.dead_letter(stage, &delivery, &reason).await {
                Ok(()) => {
                    warn!(%stage, message_id = id, %reason, receive_count = delivery.receive_count, "record dead-lettered");
                    RecordResult::DeadLettered(reason)
                }
                Err(e) => {
                    let error = error_chain(&e);
                    error!(%stage, message_id = id, %reason, %error, "poison record not dead-lettered: handed back");
                    RecordResult::DeadLetterFailed { reason, error }
                }
            }
        }
    }
}

/// Handles a stage's SQS batch at `now`, record after record, and answers with the records to
/// hand back. A failed record without a message id cannot be named: its empty identifier makes
/// Lambda retry the whole batch, which idempotency makes safe.
pub async fn sqs_batch<X: Ports, C: QueueConsumer>(
    x: &X,
    stage: Stage,
    event: SqsEvent,
    consumer: &C,
    now: DateTime<Utc>,
) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for record in &event.records {
        if sqs_record(x, stage, record, consumer, now)
            .await
            .is_failure()
        {
            let item_identifier = record.message_id.clone().unwrap_or_default();
            if item_identifier.is_empty() {
                error!(%stage, "a failed record has no message id: the whole batch is retried");
            }
            failures.push(BatchItemFailure { item_identifier });
        }
    }
    info!(%stage, records = event.records.len(), failures = failures.len(), "batch handled");
    SqsBatchResponse {
        batch_item_failures: failures,
    }
}

#[cfg(test)]
mod tests {
    use aws_lambda_events::event::sqs::SqsMessage;
    use patchflow_core::ports::queue::{Envelope, QueueConsumer, SCHEMA_VERSION};

    use super::*;
    use crate::testing::{release, Embedded};

    fn envelope(kind: &str, key: &str) -> String {
        Envelope {
            kind: kind.to_owned(),
            schema_version: SCHEMA_VERSION,
            idempotency_key: key.to_owned(),
            cycle: "2026-12".parse().unwrap(),
            tier: None,
            payload: serde_json::json!({"day": "2026-12-09"}),
        }
        .to_body()
    }

    fn record(id: Option<&str>, body: Option<&str>) -> SqsMessage {
        SqsMessage {
            message_id: id.map(str::to_owned),
            body: body.map(str::to_owned),
            receipt_handle: Some("not-a-live-receipt".to_owned()),
            ..SqsMessage::default()
        }
    }

    #[test]
    fn a_delivery_carries_the_body_receipt_and_receive_count() {
        let mut r = record(Some("m1"), Some("{}"));
        r.attributes
            .insert(RECEIVE_COUNT.to_owned(), "4".to_owned());
        assert_eq!(
            delivery_of(&r),
            Delivery {
                body: "{}".into(),
                receipt: "not-a-live-receipt".into(),
                receive_count: 4
            }
        );
        r.attributes
            .insert(RECEIVE_COUNT.to_owned(), "many".to_owned());
        assert_eq!(delivery_of(&r).receive_count, 1);
        assert_eq!(delivery_of(&record(None, None)).body, "");
    }

    #[tokio::test]
    async fn a_poison_record_is_dead_lettered_and_reported_done() {
        let p = Embedded::new(release()).unwrap();
        let mut event = SqsEvent {
            records: vec![record(Some("m1"), Some("[1, 2"))],
        };
        p.deliver(Stage::Approval, &mut event).await.unwrap();
        let resp = sqs_batch(&p.env, Stage::Approval, event, &p.queues, p.now()).await;
        assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
        let dead = p.queues.dead_letters(Stage::Approval).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].body, "[1, 2");
        assert!(
            dead[0].reason.contains("not a patchflow envelope"),
            "{}",
            dead[0].reason
        );
        assert!(p.take(Stage::Approval).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_poison_record_that_cannot_be_dead_lettered_is_a_batch_item_failure() {
        let p = Embedded::new(release()).unwrap();
        // Its receipt handle is not one the queue knows: the move fails, the record stays.
        let event = SqsEvent {
            records: vec![record(Some("m1"), Some("not json"))],
        };
        let resp = sqs_batch(&p.env, Stage::Approval, event, &p.queues, p.now()).await;
        assert_eq!(
            resp.batch_item_failures,
            vec![BatchItemFailure {
                item_identifier: "m1".into()
            }]
        );
        assert!(p
            .queues
            .dead_letters(Stage::Approval)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn a_record_without_a_body_is_poison_and_without_a_receipt_it_stays() {
        let p = Embedded::new(release()).unwrap();
        let mut no_body = record(Some("m1"), None);
        let r = sqs_record(&p.env, Stage::Approval, &no_body, &p.queues, p.now()).await;
        assert!(
            matches!(&r, RecordResult::DeadLetterFailed { reason, .. } if reason.contains("no body")),
            "{r:?}"
        );
        no_body.receipt_handle = None;
        let r = sqs_record(&p.env, Stage::Approval, &no_body, &p.queues, p.now()).await;
        assert!(
            matches!(&r, RecordResult::DeadLetterFailed { error, .. } if error.contains("receipt")),
            "{r:?}"
        );
        assert!(r.is_failure());
    }

    #[tokio::test]
    async fn a_failed_record_without_a_message_id_fails_the_whole_batch() {
        let p = Embedded::new(release()).unwrap();
        let event = SqsEvent {
            records: vec![record(None, Some("not json"))],
        };
        let resp = sqs_batch(&p.env, Stage::Approval, event, &p.queues, p.now()).await;
        assert_eq!(resp.batch_item_failures.len(), 1);
        assert_eq!(resp.batch_item_failures[0].item_identifier, "");
    }

    #[tokio::test]
    async fn done_records_are_not_reported_and_a_retry_is() {
        let p = Embedded::new(release()).unwrap();
        // The cycle is not open yet: a review sweep is done (nothing to sweep), an evaluation
        // waits for the cycle record and is handed back.
        let sweep = envelope("review_sweep", "2026-12/reviews/2026-12-09");
        let evaluate = Envelope {
            payload: serde_json::json!({"patch": {"id": "KB1", "title": "t", "vendor": "microsoft",
                "classification": "security", "severity": "critical",
                "released": "2026-12-08T18:00:00Z"}}),
            kind: "evaluate_patch".into(),
            idempotency_key: "2026-12/evaluate/KB1".into(),
            ..Envelope::from_body(&sweep).unwrap()
        }
        .to_body();
        let event = SqsEvent {
            records: vec![
                record(Some("sweep"), Some(&sweep)),
                record(Some("eval"), Some(&evaluate)),
            ],
        };
        let resp = sqs_batch(&p.env, Stage::Approval, event, &p.queues, p.now()).await;
        assert_eq!(
            resp.batch_item_failures,
            vec![BatchItemFailure {
                item_identifier: "eval".into()
            }]
        );
        assert!(p
            .queues
            .dead_letters(Stage::Approval)
            .await
            .unwrap()
            .is_empty());
    }
}
