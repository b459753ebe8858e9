//! moto accepts what SQS refuses (an 11-entry batch, a 300 KiB batch) and never fails an entry
//! on its side, so these tests hold the adapter to SQS's real limits at the SDK's own layer: an
//! interceptor counts every SendMessageBatch, fails any over SQS's limits, and rewrites chosen
//! responses into the partial failures and 5xx answers that SQS does give.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use aws_sdk_sqs::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeSerializationInterceptorContextRef,
};
use aws_sdk_sqs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sqs::error::BoxError;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchInput;
use aws_smithy_types::body::SdkBody;
use chrono::Duration;
use patchflow_aws::config::sdk_config;
use patchflow_aws::sqs::{create_stage_queue, SqsQueues, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES};
use patchflow_core::ports::queue::{Envelope, QueueConsumer, QueueSender, Stage, SCHEMA_VERSION};

use crate::support::{unique, MAX_RECEIVES};

/// What the interceptor does to the n-th SendMessageBatch HTTP attempt's response (0-based).
#[derive(Debug, Clone)]
enum Fault {
    /// Report these entry ids as failed on SQS's side (they were in fact enqueued).
    FailEntries(Vec<String>),
    /// Answer with this HTTP status instead.
    Status(u16),
}

#[derive(Debug, Default)]
struct Seen {
    /// Entries per SendMessageBatch operation.
    batch_sizes: Vec<usize>,
    /// HTTP attempts of SendMessageBatch (retries included).
    attempts: usize,
    /// The entry ids of the request in flight, when it is a SendMessageBatch.
    in_flight: Option<Vec<String>>,
    over_limit: Vec<String>,
}

fn is_send_batch(req: &aws_sdk_sqs::config::http::HttpRequest) -> bool {
    req.headers()
        .get("x-amz-target")
        .is_some_and(|t| t.ends_with(".SendMessageBatch"))
}

#[derive(Debug, Clone, Default)]
struct SqsLimits {
    seen: Arc<Mutex<Seen>>,
    faults: Arc<Mutex<HashMap<usize, Fault>>>,
}

impl Intercept for SqsLimits {
    fn name(&self) -> &'static str {
        "SqsLimits"
    }

    fn read_before_execution(
        &self,
        ctx: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(input) = ctx.input().downcast_ref::<SendMessageBatchInput>() {
            let entries = input.entries();
            let bytes: usize = entries.iter().map(|e| e.message_body().len()).sum();
            let mut seen = self.seen.lock().unwrap();
            seen.batch_sizes.push(entries.len());
            if entries.len() > MAX_BATCH_ENTRIES || bytes > MAX_BATCH_BYTES {
                let msg = format!("{} entries, {bytes} bytes", entries.len());
                seen.over_limit.push(msg.clone());
                return Err(format!("SQS would refuse this batch: {msg}").into());
            }
        }
        Ok(())
    }

    fn read_before_transmit(
        &self,
        ctx: &aws_sdk_sqs::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // The request is gone by the time the response is read: note what this attempt carries.
        let mut seen = self.seen.lock().unwrap();
        seen.in_flight = None;
        if is_send_batch(ctx.request()) {
            seen.attempts += 1;
            let body: serde_json::Value =
                serde_json::from_slice(ctx.request().body().bytes().unwrap_or_default())?;
            seen.in_flight = Some(
                body["Entries"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|e| e["Id"].as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            );
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        ctx: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (ids, n) = {
            let seen = self.seen.lock().unwrap();
            match &seen.in_flight {
                Some(ids) => (ids.clone(), seen.attempts - 1),
                None => return Ok(()),
            }
        };
        let Some(fault) = self.faults.lock().unwrap().remove(&n) else {
            return Ok(());
        };
        let resp = ctx.response_mut();
        match fault {
            Fault::Status(code) => {
                *resp.status_mut() = code.try_into()?;
                *resp.body_mut() =
                    SdkBody::from(r#"{"__type":"InternalError","message":"injected"}"#);
            }
            Fault::FailEntries(failed) => {
                let successful: Vec<_> = ids
                    .iter()
                    .filter(|id| !failed.contains(id))
                    .map(|id| serde_json::json!({"Id": id, "MessageId": format!("m-{id}"), "MD5OfMessageBody": "00000000000000000000000000000000"}))
                    .collect();
                let failed: Vec<_> = failed
                    .iter()
                    .map(|id| serde_json::json!({"Id": id, "SenderFault": false, "Code": "InternalError", "Message": "injected"}))
                    .collect();
                *resp.body_mut() = SdkBody::from(
                    serde_json::json!({"Successful": successful, "Failed": failed}).to_string(),
                );
            }
        }
        Ok(())
    }
}

async fn queues_with(limits: SqsLimits) -> SqsQueues {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "run with `make test` (moto)"
    );
    let sdk = sdk_config().await;
    let plain = aws_sdk_sqs::Client::new(&sdk);
    let prefix = unique("pf-limits");
    let q = create_stage_queue(
        &plain,
        &prefix,
        Stage::Approval,
        MAX_RECEIVES,
        Duration::seconds(30),
    )
    .await
    .unwrap();
    let conf = aws_sdk_sqs::config::Builder::from(&sdk)
        .interceptor(limits)
        .build();
    SqsQueues::new(
        aws_sdk_sqs::Client::from_conf(conf),
        HashMap::from([(Stage::Approval, q)]),
    )
}

fn envelopes(n: usize, payload_bytes: usize) -> Vec<Envelope> {
    (0..n)
        .map(|i| Envelope {
            kind: "evaluate_patch".into(),
            schema_version: SCHEMA_VERSION,
            idempotency_key: format!("k{i}"),
            cycle: "2026-12".parse().unwrap(),
            tier: None,
            payload: serde_json::json!({ "pad": "x".repeat(payload_bytes) }),
        })
        .collect()
}

async fn received_keys(q: &SqsQueues) -> (usize, BTreeSet<String>) {
    let mut total = 0;
    let mut keys = BTreeSet::new();
    for _ in 0..20 {
        let got = q
            .receive(Stage::Approval, 10, Duration::seconds(30))
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        for d in got {
            total += 1;
            keys.insert(Envelope::from_body(&d.body).unwrap().idempotency_key);
            q.ack(Stage::Approval, &d.receipt).await.unwrap();
        }
    }
    (total, keys)
}

#[tokio::test]
async fn every_batch_the_adapter_sends_is_within_sqs_limits() {
    let limits = SqsLimits::default();
    let q = queues_with(limits.clone()).await;
    // 23 small messages, then 7 of 100 KiB: counts and bytes both have to cut batches.
    q.send_batch(Stage::Approval, &envelopes(23, 10))
        .await
        .unwrap();
    q.send_batch(Stage::Approval, &envelopes(7, 100 * 1024))
        .await
        .unwrap();
    let seen = limits.seen.lock().unwrap();
    assert!(seen.over_limit.is_empty(), "{:?}", seen.over_limit);
    assert_eq!(seen.batch_sizes, [10, 10, 3, 2, 2, 2, 1]);
}

#[tokio::test]
async fn the_interceptor_would_catch_a_batch_over_the_limit() {
    // The guard itself is tested: a raw 11-entry batch is stopped before it leaves the SDK.
    let limits = SqsLimits::default();
    let sdk = sdk_config().await;
    let conf = aws_sdk_sqs::config::Builder::from(&sdk)
        .interceptor(limits.clone())
        .build();
    let client = aws_sdk_sqs::Client::from_conf(conf);
    let entries = (0..11)
        .map(|i| {
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body("x")
                .build()
                .unwrap()
        })
        .collect();
    let sent = client
        .send_message_batch()
        .queue_url("http://unused")
        .set_entries(Some(entries))
        .send()
        .await;
    assert!(sent.is_err());
    assert_eq!(limits.seen.lock().unwrap().over_limit.len(), 1);
}

#[tokio::test]
async fn entries_sqs_fails_on_its_side_are_resent_and_arrive() {
    let limits = SqsLimits::default();
    limits
        .faults
        .lock()
        .unwrap()
        .insert(0, Fault::FailEntries(vec!["8".into(), "9".into()]));
    let q = queues_with(limits.clone()).await;
    q.send_batch(Stage::Approval, &envelopes(23, 10))
        .await
        .unwrap();
    assert_eq!(limits.seen.lock().unwrap().batch_sizes, [10, 2, 10, 3]);
    // At least once: the two "failed" entries had in fact been enqueued, so they arrive twice;
    // consumers are idempotent by key.
    let (total, keys) = received_keys(&q).await;
    assert_eq!((total, keys.len()), (25, 23));
}

#[tokio::test]
async fn a_5xx_answer_is_retried_until_the_batch_lands() {
    let limits = SqsLimits::default();
    limits
        .faults
        .lock()
        .unwrap()
        .extend([(0, Fault::Status(503)), (1, Fault::Status(500))]);
    let q = queues_with(limits.clone()).await;
    q.send_batch(Stage::Approval, &envelopes(3, 10))
        .await
        .unwrap();
    // One batch, and the SDK's standard retry made three attempts of it.
    let (sizes, attempts) = {
        let seen = limits.seen.lock().unwrap();
        (seen.batch_sizes.clone(), seen.attempts)
    };
    assert_eq!((sizes.as_slice(), attempts), (&[3][..], 3));
    let (_, keys) = received_keys(&q).await;
    assert_eq!(keys.len(), 3);
}
