//! The state store in one DynamoDB table, designed from its access patterns (see
//! docs/adapters.md): a string partition key `pk` and sort key `sk`, on-demand capacity, and TTL
//! on `ttl` for idempotency records.
//!
//! | record | pk | sk |
//! |---|---|---|
//! | endpoint | `CLIENT#{client}` | `ENDPOINT#{id}` |
//! | tier | `CYCLE#{cycle}` | `TIER#{tier}` |
//! | exception register entry | `EXCEPTIONS` | `EXCEPTION#{subject}#{kind}` |
//! | approval | `CYCLE#{cycle}` | `APPROVAL#{patch}` |
//! | failure | `CYCLE#{cycle}` | `FAILURE#{id}` |
//! | evidence index | `CYCLE#{cycle}` | `EVIDENCE#{key}` |
//! | idempotency | `IDEMPOTENCY#{key}` | `IDEMPOTENCY` |
//! | cycle document | `CYCLE#{cycle}#{kind}` | `DOC#{id}` |
//! | manifest chain head | `CHAIN#{client}` | `HEAD` |
//!
//! Two sparse global secondary indexes serve the indexed cycle documents
//! ([`DocStore::put_doc_indexed`]); a document without a due or a phase carries no attribute for
//! it, so it is in neither:
//!
//! | index | partition key | sort key | projection | serves |
//! |---|---|---|---|---|
//! | `due` | `pk` (`CYCLE#{cycle}#{kind}`) | `due_sk`: `{due, fixed-width RFC 3339 UTC to the µs}#{id}` | ALL | `list_due_docs`: `Query` on `due_sk < :until$` with `Limit` |
//! | `phase` | `phase_pk`: `CYCLE#{cycle}#{kind}#{phase}` | `sk` | KEYS_ONLY | `any_doc_in_phase` (`Query`, `Limit` 1), `list_ids_in_phase` (`Query`, `sk >` the position), `count_docs_in_phase` (`Select` COUNT) |
//!
//! A document's JSON body from 200 bytes on is stored deflated, as the binary `bodyz`
//! instead of the string `body`, when that is smaller (writes are billed per KB, reads per 4 KB).
//!
//! Every transition is a conditional write; a failed condition is `Conflict`.

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, KeysAndAttributes, Projection, ProjectionType, Put, PutRequest, ScalarAttributeType,
    Select, TimeToLiveSpecification, TransactWriteItem, Update, WriteRequest,
};
use chrono::{DateTime, Duration, Utc};
use patchflow_core::ids::{ClientId, CycleId, EndpointId, PatchId};
use patchflow_core::ports::evidence::EvidencePrefix;
use patchflow_core::ports::state::{
    due_of_sort_key, due_sort_key, due_upper_bound, next_tier_record, ApprovalStore, Claim,
    Completion, Doc, DocIndex, DocStore, DueCursor, EndpointStore, EvidenceIndex, EvidenceRecord,
    ExceptionStore, FailureRecord, FailureStore, IdempotencyStore, StoredEndpoint, SyncSummary,
    TierId, TierRecord, TierStore,
};
use patchflow_core::ports::PortError;
use patchflow_core::rules::approval::{Approval, Decision};
use patchflow_core::rules::exception::ExceptionEntry;
use patchflow_core::tier::TierEvent;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::errors::classify;

/// DynamoDB's limit on items per `BatchWriteItem`.
pub const MAX_BATCH_WRITE: usize = 25;
/// DynamoDB's limit on keys per `BatchGetItem`.
pub const MAX_BATCH_GET: usize = 100;
/// How many rounds unprocessed items or keys are retried before giving up as transient.
const BATCH_ATTEMPTS: u32 = 8;
/// The global secondary index of documents by due instant (see the module doc).
pub const DUE_INDEX: &str = "due";
/// The global secondary index of documents by phase (see the module doc).
pub const PHASE_INDEX: &str = "phase";

/// The state store table.
#[derive(Debug, Clone)]
pub struct DynamoState {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoState {
    /// A store over an existing table (see [`create_state_table`]).
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct EndpointItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    record: StoredEndpoint,
}

#[derive(Serialize, Deserialize)]
struct TierItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    record: TierRecord,
}

fn endpoint_key(client: &ClientId, id: &EndpointId) -> (String, String) {
    (format!("CLIENT#{client}"), format!("ENDPOINT#{id}"))
}

fn tier_key(cycle: CycleId, tier: &TierId) -> (String, String) {
    (format!("CYCLE#{cycle}"), format!("TIER#{tier}"))
}

fn key_map((pk, sk): (String, String)) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk)),
        ("sk".to_owned(), AttributeValue::S(sk)),
    ])
}

fn to_item<T: Serialize>(
    what: &str,
    value: &T,
) -> Result<HashMap<String, AttributeValue>, PortError> {
    serde_dynamo::to_item(value).map_err(|e| PortError::permanent(format!("encode {what}"), e))
}

fn from_item<T: serde::de::DeserializeOwned>(
    what: &str,
    item: HashMap<String, AttributeValue>,
) -> Result<T, PortError> {
    serde_dynamo::from_item(item)
        .map_err(|e| PortError::permanent(format!("stored {what} is unreadable"), e))
}

fn backoff(attempt: u32) -> StdDuration {
    let cap = 25u64 << attempt.min(7);
    StdDuration::from_millis(rand::thread_rng().gen_range(0..=cap))
}

fn conditional_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(
    e: &aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> bool {
    e.as_service_error().and_then(|s| s.code()) == Some("ConditionalCheckFailedException")
}

impl DynamoState {
    /// Puts an item if `condition` holds; `Conflict` (with `conflict`'s message) if it does not.
    /// Attribute names in conditions go through `#placeholders` (`#v` is `version`, `#d` is
    /// `decision`), so no record field can collide with a DynamoDB reserved word.
    async fn put_if(
        &self,
        what: &str,
        item: HashMap<String, AttributeValue>,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
        conflict: impl FnOnce() -> String,
    ) -> Result<(), PortError> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition);
        for (placeholder, name) in [("#v", "version"), ("#d", "decision")] {
            if condition.contains(placeholder) {
                req = req.expression_attribute_names(placeholder, name);
            }
        }
        for (name, value) in values {
            req = req.expression_attribute_values(name, value);
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if conditional_failed(&e) => Err(PortError::Conflict(conflict())),
            Err(e) => Err(classify(format!("write {what}"), e)),
        }
    }

    /// Reads one item.
    async fn get_record<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        key: (String, String),
    ) -> Result<Option<T>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_map(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(format!("get {what}"), e))?;
        out.item.map(|i| from_item(what, i)).transpose()
    }

    /// Reads every item of a partition whose sort key starts with `prefix`, in sort-key order.
    async fn query_prefix<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        pk: String,
        prefix: &str,
    ) -> Result<Vec<T>, PortError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", AttributeValue::S(pk))
            .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            out.push(from_item(
                what,
                item.map_err(|e| classify(format!("list {what}"), e))?,
            )?);
        }
        Ok(out)
    }
    /// Reads these keys' items, `projection` of them, in `BatchGetItem`s of 100 keys, eventually
    /// consistent unless `consistent`, retrying unprocessed keys with backoff.
    async fn batch_get_projected(
        &self,
        what: &str,
        keys: Vec<HashMap<String, AttributeValue>>,
        projection: &str,
        names: &[(&str, &str)],
        consistent: bool,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, PortError> {
        let mut items = Vec::new();
        for chunk in keys.chunks(MAX_BATCH_GET) {
            let mut builder = KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .projection_expression(projection)
                .consistent_read(consistent);
            for (placeholder, name) in names {
                builder = builder.expression_attribute_names(*placeholder, *name);
            }
            let mut pending = builder
                .build()
                .map_err(|e| PortError::permanent("build a batch get", e))?;
            for attempt in 0..BATCH_ATTEMPTS {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, pending.clone())
                    .send()
                    .await
                    .map_err(|e| classify(format!("read {what}"), e))?;
                if let Some(got) = out.responses.and_then(|mut r| r.remove(&self.table)) {
                    items.extend(got);
                }
                match out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys().is_empty())
                {
                    None => break,
                    Some(rest) if attempt + 1 < BATCH_ATTEMPTS => {
                        pending = rest;
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    Some(_) => {
                        return Err(PortError::transient(
                            format!("read {what}"),
                            "keys still unprocessed after retries",
                        ))
                    }
                }
            }
        }
        Ok(items)
    }

    /// Reads the stored hashes of these keys, retrying unprocessed keys.
    async fn stored_hashes(
        &self,
        keys: Vec<(String, String)>,
    ) -> Result<HashMap<(String, String), String>, PortError> {
        // Eventually consistent, at half the read units: the hashes are written only by the
        // daily sync itself, a day apart; a stale one costs one needless write.
        let items = self
            .batch_get_projected(
                "endpoint hashes",
                keys.into_iter().map(key_map).collect(),
                "pk, sk, #h",
                &[("#h", "hash")],
                false,
            )
            .await?;
        let mut hashes = HashMap::new();
        for item in items {
            let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
            if let (Some(pk), Some(sk), Some(h)) = (s("pk"), s("sk"), s("hash")) {
                hashes.insert((pk, sk), h);
            }
        }
        Ok(hashes)
    }

    /// Writes items in batches of 25, retrying unprocessed items with backoff.
    async fn batch_put(
        &self,
        items: Vec<HashMap<String, AttributeValue>>,
    ) -> Result<(), PortError> {
        for chunk in items.chunks(MAX_BATCH_WRITE) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|item| {
                    PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .map(|p| WriteRequest::builder().put_request(p).build())
                        .map_err(|e| PortError::permanent("build a batch write", e))
                })
                .collect::<Result<_, _>>()?;
            for attempt in 0..BATCH_ATTEMPTS {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| classify("write endpoints", e))?;
                let rest: Vec<WriteRequest> = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if rest.is_empty() {
                    break;
                }
                if attempt + 1 == BATCH_ATTEMPTS {
                    return Err(PortError::transient(
                        "write endpoints",
                        format!(
                            "{} item(s) still unprocessed after {BATCH_ATTEMPTS} attempts",
                            rest.len()
                        ),
                    ));
                }
                pending = rest;
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
        Ok(())
    }
}

impl EndpointStore for DynamoState {
    async fn sync_endpoints(&self, endpoints: &[StoredEndpoint]) -> Result<SyncSummary, PortError> {
        // One write per key: BatchWriteItem refuses a batch naming a key twice; the last wins.
        let mut latest: HashMap<(String, String), &StoredEndpoint> = HashMap::new();
        for e in endpoints {
            latest.insert(endpoint_key(&e.client, &e.id), e);
        }
        let stored = self.stored_hashes(latest.keys().cloned().collect()).await?;
        let mut summary = SyncSummary::default();
        let mut items = Vec::new();
        let mut keys: Vec<&(String, String)> = latest.keys().collect();
        keys.sort();
        for key in keys {
            let e = latest[key];
            if stored.get(key).is_some_and(|h| *h == e.hash.to_hex()) {
                summary.unchanged += 1;
                continue;
            }
            let (pk, sk) = key.clone();
            items.push(to_item(
                "endpoint",
                &EndpointItem {
                    pk,
                    sk,
                    record: e.clone(),
                },
            )?);
            summary.written += 1;
        }
        summary.unchanged += endpoints.len() - latest.len();
        self.batch_put(items).await?;
        Ok(summary)
    }

    async fn get_endpoint(
        &self,
        client: &ClientId,
        id: &EndpointId,
    ) -> Result<Option<StoredEndpoint>, PortError> {
        let item: Option<EndpointItem> = self
            .get_record("endpoint", endpoint_key(client, id))
            .await?;
        Ok(item.map(|i| i.record))
    }

    async fn list_endpoints(&self, client: &ClientId) -> Result<Vec<StoredEndpoint>, PortError> {
        let items: Vec<EndpointItem> = self
            .query_prefix("endpoints", format!("CLIENT#{client}"), "ENDPOINT#")
            .await?;
        Ok(items.into_iter().map(|i| i.record).collect())
    }
}

impl DynamoState {
    /// The checked next record of a tier, and the item that stores it.
    async fn next_tier(
        &self,
        cycle: CycleId,
        tier: &TierId,
        expected_version: u64,
        event: TierEvent,
        at: DateTime<Utc>,
    ) -> Result<(TierRecord, HashMap<String, AttributeValue>), PortError> {
        let current = self.get_tier(cycle, tier).await?;
        let next = next_tier_record(current, cycle, tier, expected_version, event, at)?;
        let (pk, sk) = tier_key(cycle, tier);
        let item = to_item(
            "tier",
            &TierItem {
                pk,
                sk,
                record: next.clone(),
            },
        )?;
        Ok((next, item))
    }
}

impl TierStore for DynamoState {
    async fn create_tier(&self, tier: &TierRecord) -> Result<(), PortError> {
        let (pk, sk) = tier_key(tier.cycle, &tier.tier);
        let item = to_item(
            "tier",
            &TierItem {
                pk,
                sk,
                record: tier.clone(),
            },
        )?;
        self.put_if("tier", item, "attribute_not_exists(pk)", vec![], || {
            format!("tier {} of {} exists", tier.tier, tier.cycle)
        })
        .await
    }

    async fn get_tier(
        &self,
        cycle: CycleId,
        tier: &TierId,
    ) -> Result<Option<TierRecord>, PortError> {
        let item: Option<TierItem> = self.get_record("tier", tier_key(cycle, tier)).await?;
        Ok(item.map(|i| i.record))
    }

    async fn transition_tier(
        &self,
        cycle: CycleId,
        tier: &TierId,
        expected_version: u64,
        event: TierEvent,
        at: DateTime<Utc>,
    ) -> Result<TierRecord, PortError> {
        let (next, item) = self
            .next_tier(cycle, tier, expected_version, event, at)
            .await?;
        // The version is the condition: of two racing writers, exactly one succeeds.
        let expected = vec![(":expected", AttributeValue::N(expected_version.to_string()))];
        self.put_if("tier", item, "#v = :expected", expected, || {
            format!("tier {tier} of {cycle} moved past version {expected_version}")
        })
        .await?;
        Ok(next)
    }

    async fn transition_tier_once(
        &self,
        cycle: CycleId,
        tier: &TierId,
        expected_version: u64,
        event: TierEvent,
        at: DateTime<Utc>,
        done: &Completion,
    ) -> Result<TierRecord, PortError> {
        let (next, item) = self
            .next_tier(cycle, tier, expected_version, event, at)
            .await?;
        let build = |e: aws_sdk_dynamodb::error::BuildError| {
            PortError::permanent("build the transaction", e)
        };
        let put_tier = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("#v = :expected")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(
                ":expected",
                AttributeValue::N(expected_version.to_string()),
            )
            .build()
            .map_err(build)?;
        let expires = at + done.ttl;
        let complete_key = Update::builder()
            .table_name(&self.table)
            .set_key(Some(idempotency_key(&done.key)))
            .update_expression(
                "SET #done = :true, #outcome = :outcome, #exp = :expires, #ttl = :ttl",
            )
            .condition_expression("attribute_exists(pk) AND #done = :false")
            .expression_attribute_names("#done", "done")
            .expression_attribute_names("#outcome", "outcome")
            .expression_attribute_names("#exp", "expires_at")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":outcome", AttributeValue::S(done.outcome.clone()))
            .expression_attribute_values(":expires", n(expires.timestamp_millis()))
            .expression_attribute_values(":ttl", n(expires.timestamp()))
            .build()
            .map_err(build)?;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_tier).build())
            .transact_items(TransactWriteItem::builder().update(complete_key).build())
            .send()
            .await;
        match sent {
            Ok(_) => Ok(next),
            Err(e) => {
                // A cancelled transaction names, per item, the condition that failed.
                let failed_condition = e
                    .as_service_error()
                    .and_then(|s| match s {
                        TransactWriteItemsError::TransactionCanceledException(t) => Some(t),
                        _ => None,
                    })
                    .is_some_and(|t| {
                        t.cancellation_reasons()
                            .iter()
                            .any(|r| r.code() == Some("ConditionalCheckFailed"))
                    });
                if failed_condition {
                    Err(PortError::Conflict(format!(
                        "tier {tier} of {cycle} moved past version {expected_version}, or key {} is not in progress",
                        done.key
                    )))
                } else {
                    Err(classify(format!("transition tier {tier}"), e))
                }
            }
        }
    }

    async fn list_tiers(&self, cycle: CycleId) -> Result<Vec<TierRecord>, PortError> {
        let items: Vec<TierItem> = self
            .query_prefix("tiers", format!("CYCLE#{cycle}"), "TIER#")
            .await?;
        Ok(items.into_iter().map(|i| i.record).collect())
    }
}

#[derive(Serialize, Deserialize)]
struct ExceptionItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    record: ExceptionEntry,
}

#[derive(Serialize, Deserialize)]
struct ApprovalItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    record: Approval,
}

#[derive(Serialize, Deserialize)]
struct FailureItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    record: FailureRecord,
}

#[derive(Serialize, Deserialize)]
struct EvidenceItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    record: EvidenceRecord,
}

const EXCEPTIONS_PK: &str = "EXCEPTIONS";

impl ExceptionStore for DynamoState {
    async fn record_exception(&self, entry: &ExceptionEntry) -> Result<bool, PortError> {
        let sk = format!("EXCEPTION#{}#{}", entry.subject, entry.kind.as_str());
        let record = entry.clone();
        let item = to_item(
            "exception",
            &ExceptionItem {
                pk: EXCEPTIONS_PK.into(),
                sk,
                record,
            },
        )?;
        match self
            .put_if(
                "exception",
                item,
                "attribute_not_exists(pk)",
                vec![],
                String::new,
            )
            .await
        {
            Ok(()) => Ok(true),
            Err(PortError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn list_exceptions(&self) -> Result<Vec<ExceptionEntry>, PortError> {
        let items: Vec<ExceptionItem> = self
            .query_prefix("exceptions", EXCEPTIONS_PK.into(), "EXCEPTION#")
            .await?;
        Ok(items.into_iter().map(|i| i.record).collect())
    }
}

fn approval_key(cycle: CycleId, patch: &PatchId) -> (String, String) {
    (format!("CYCLE#{cycle}"), format!("APPROVAL#{patch}"))
}

impl ApprovalStore for DynamoState {
    async fn put_approval(
        &self,
        cycle: CycleId,
        approval: &Approval,
        expected: Option<Decision>,
    ) -> Result<(), PortError> {
        let (pk, sk) = approval_key(cycle, &approval.patch);
        let item = to_item(
            "approval",
            &ApprovalItem {
                pk,
                sk,
                record: approval.clone(),
            },
        )?;
        let (condition, values) = match expected {
            None => ("attribute_not_exists(pk)", vec![]),
            Some(d) => (
                "#d = :expected",
                vec![(":expected", AttributeValue::S(d.as_str().to_owned()))],
            ),
        };
        self.put_if("approval", item, condition, values, || {
            format!(
                "approval of {} in {cycle} is not {expected:?}",
                approval.patch
            )
        })
        .await
    }

    async fn get_approval(
        &self,
        cycle: CycleId,
        patch: &PatchId,
    ) -> Result<Option<Approval>, PortError> {
        let item: Option<ApprovalItem> = self
            .get_record("approval", approval_key(cycle, patch))
            .await?;
        Ok(item.map(|i| i.record))
    }

    async fn list_approvals(&self, cycle: CycleId) -> Result<Vec<Approval>, PortError> {
        let items: Vec<ApprovalItem> = self
            .query_prefix("approvals", format!("CYCLE#{cycle}"), "APPROVAL#")
            .await?;
        Ok(items.into_iter().map(|i| i.record).collect())
    }
}

fn failure_key(cycle: CycleId, id: &str) -> (String, String) {
    (format!("CYCLE#{cycle}"), format!("FAILURE#{id}"))
}

impl FailureStore for DynamoState {
    async fn open_failure(&self, failure: &FailureRecord) -> Result<(), PortError> {
        let (pk, sk) = failure_key(failure.cycle, &failure.id);
        let record = FailureRecord {
            version: 0,
            ..failure.clone()
        };
        let item = to_item("failure", &FailureItem { pk, sk, record })?;
        self.put_if("failure", item, "attribute_not_exists(pk)", vec![], || {
            format!("failure {} of {} exists", failure.id, failure.cycle)
        })
        .await
    }

    async fn save_failure(
        &self,
        failure: &FailureRecord,
        expected_version: u64,
    ) -> Result<FailureRecord, PortError> {
        let (pk, sk) = failure_key(failure.cycle, &failure.id);
        let saved = FailureRecord {
            version: expected_version + 1,
            ..failure.clone()
        };
        let item = to_item(
            "failure",
            &FailureItem {
                pk,
                sk,
                record: saved.clone(),
            },
        )?;
        let expected = vec![(":expected", AttributeValue::N(expected_version.to_string()))];
        let condition = "attribute_exists(pk) AND #v = :expected";
        let result = self
            .put_if("failure", item, condition, expected, || {
                format!(
                    "failure {} of {} moved past version {expected_version}",
                    failure.id, failure.cycle
                )
            })
            .await;
        match result {
            Err(PortError::Conflict(c))
                if self
                    .get_failure(failure.cycle, &failure.id)
                    .await?
                    .is_none() =>
            {
                Err(PortError::NotFound(c))
            }
            other => other.map(|()| saved),
        }
    }

    async fn get_failure(
        &self,
        cycle: CycleId,
        id: &str,
    ) -> Result<Option<FailureRecord>, PortError> {
        let item: Option<FailureItem> = self.get_record("failure", failure_key(cycle, id)).await?;
        Ok(item.map(|i| i.record))
    }

    async fn list_failures(&self, cycle: CycleId) -> Result<Vec<FailureRecord>, PortError> {
        let items: Vec<FailureItem> = self
            .query_prefix("failures", format!("CYCLE#{cycle}"), "FAILURE#")
            .await?;
        Ok(items.into_iter().map(|i| i.record).collect())
    }
}

impl EvidenceIndex for DynamoState {
    async fn index_evidence(&self, record: &EvidenceRecord) -> Result<(), PortError> {
        let key = record.key.as_path();
        let pk = format!("CYCLE#{}", record.key.cycle());
        let sk = format!("EVIDENCE#{key}");
        let item = to_item(
            "evidence record",
            &EvidenceItem {
                pk,
                sk,
                record: record.clone(),
            },
        )?;
        self.put_if(
            "evidence record",
            item,
            "attribute_not_exists(pk)",
            vec![],
            || format!("{key} is indexed"),
        )
        .await
    }

    async fn list_evidence(&self, cycle: CycleId) -> Result<Vec<EvidenceRecord>, PortError> {
        let items: Vec<EvidenceItem> = self
            .query_prefix("evidence records", format!("CYCLE#{cycle}"), "EVIDENCE#")
            .await?;
        Ok(items.into_iter().map(|i| i.record).collect())
    }

    async fn list_client_evidence(
        &self,
        cycle: CycleId,
        client: &ClientId,
    ) -> Result<Vec<EvidenceRecord>, PortError> {
        let prefix = format!(
            "EVIDENCE#{}",
            EvidencePrefix {
                cycle,
                client: Some(client.clone()),
                tier: None,
            }
            .as_path()
        );
        let items: Vec<EvidenceItem> = self
            .query_prefix("evidence records", format!("CYCLE#{cycle}"), &prefix)
            .await?;
        Ok(items.into_iter().map(|i| i.record).collect())
    }

    async fn chain_head(&self, client: &ClientId) -> Result<Option<Doc>, PortError> {
        let item: Option<DocItem> = self.get_record("chain head", chain_key(client)).await?;
        item.map(|i| {
            let mut doc = doc_of("chain head", i)?;
            doc.id = client.to_string();
            Ok(doc)
        })
        .transpose()
    }

    async fn put_chain_head(
        &self,
        client: &ClientId,
        body: &str,
        expected: Option<u64>,
    ) -> Result<u64, PortError> {
        let what = format!("the manifest chain of {client}");
        self.put_versioned(
            "chain head",
            chain_key(client),
            &what,
            body,
            expected,
            (None, None),
        )
        .await
    }
}

/// A client's chain head: one item per client, outside every cycle.
fn chain_key(client: &ClientId) -> (String, String) {
    (format!("CHAIN#{client}"), "HEAD".to_owned())
}

fn idempotency_pair(key: &str) -> (String, String) {
    (format!("IDEMPOTENCY#{key}"), "IDEMPOTENCY".to_owned())
}

fn idempotency_key(key: &str) -> HashMap<String, AttributeValue> {
    key_map(idempotency_pair(key))
}

/// What a claim needs to know of a held key.
#[derive(Deserialize)]
struct IdempotencyItem {
    done: bool,
    #[serde(default)]
    outcome: Option<String>,
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl IdempotencyStore for DynamoState {
    async fn done(&self, keys: &[String], now: DateTime<Utc>) -> Result<Vec<String>, PortError> {
        // BatchGetItem refuses a request naming a key twice.
        let mut keys: Vec<&String> = keys.iter().collect();
        keys.sort();
        keys.dedup();
        let items = self
            .batch_get_projected(
                "idempotency keys",
                keys.into_iter().map(|k| idempotency_key(k)).collect(),
                "pk, #done, #exp",
                &[("#done", "done"), ("#exp", "expires_at")],
                false,
            )
            .await?;
        let mut out = Vec::new();
        for item in items {
            let done = item.get("done").and_then(|v| v.as_bool().ok()) == Some(&true);
            let live = item
                .get("expires_at")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok())
                .is_some_and(|ms| ms > now.timestamp_millis());
            let key = item
                .get("pk")
                .and_then(|v| v.as_s().ok())
                .and_then(|pk| pk.strip_prefix("IDEMPOTENCY#"));
            if let (true, true, Some(key)) = (done, live, key) {
                out.push(key.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        lease: Duration,
        ttl: Duration,
    ) -> Result<Claim, PortError> {
        let mut item = idempotency_key(key);
        item.insert("done".into(), AttributeValue::Bool(false));
        item.insert("lease_until".into(), n((now + lease).timestamp_millis()));
        item.insert("expires_at".into(), n((now + ttl).timestamp_millis()));
        // TTL deletes lazily (within days), so an expired record counts as absent here.
        item.insert("ttl".into(), n((now + ttl).timestamp()));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(pk) OR #exp <= :now OR (#done = :false AND #lease <= :now)",
            )
            .expression_attribute_names("#exp", "expires_at")
            .expression_attribute_names("#done", "done")
            .expression_attribute_names("#lease", "lease_until")
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .send()
            .await;
        match put {
            Ok(_) => Ok(Claim::Acquired),
            Err(e) if conditional_failed(&e) => {
                let held: Option<IdempotencyItem> = self
                    .get_record("idempotency key", idempotency_pair(key))
                    .await?;
                match held {
                    Some(IdempotencyItem {
                        done: true,
                        outcome,
                    }) => Ok(Claim::Done(outcome.unwrap_or_default())),
                    _ => Ok(Claim::InProgress),
                }
            }
            Err(e) => Err(classify(format!("claim idempotency key {key}"), e)),
        }
    }

    async fn abandon(&self, key: &str) -> Result<(), PortError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(idempotency_key(key)))
            .condition_expression("attribute_exists(pk) AND #done = :false")
            .expression_attribute_names("#done", "done")
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Done, or never claimed: nothing to give up.
            Err(e) if conditional_failed(&e) => Ok(()),
            Err(e) => Err(classify(format!("abandon idempotency key {key}"), e)),
        }
    }

    async fn complete(
        &self,
        key: &str,
        outcome: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<(), PortError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(idempotency_key(key)))
            .update_expression(
                "SET #done = :true, #outcome = :outcome, #exp = :expires, #ttl = :ttl",
            )
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#done", "done")
            .expression_attribute_names("#outcome", "outcome")
            .expression_attribute_names("#exp", "expires_at")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":outcome", AttributeValue::S(outcome.to_owned()))
            .expression_attribute_values(":expires", n((now + ttl).timestamp_millis()))
            .expression_attribute_values(":ttl", n((now + ttl).timestamp()))
            .send()
            .await
            .map_err(
                |e| match classify(format!("complete idempotency key {key}"), e) {
                    PortError::Conflict(_) => {
                        PortError::NotFound(format!("idempotency key {key} was never claimed"))
                    }
                    other => other,
                },
            )?;
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct DocItem {
    pk: String,
    sk: String,
    version: u64,
    /// The body, when stored as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    /// The body deflated (RFC 1951; see [`pack`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bodyz: Option<Packed>,
    /// The due index's sort key; absent on a document without a due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due_sk: Option<String>,
    /// The phase index's partition key; absent on a document without a phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phase_pk: Option<String>,
}

/// A document's partition in the phase index.
fn phase_pk(cycle: CycleId, kind: &str, phase: &str) -> String {
    let (pk, _) = doc_key(cycle, kind, "");
    format!("{pk}#{phase}")
}

fn doc_key(cycle: CycleId, kind: &str, id: &str) -> (String, String) {
    (format!("CYCLE#{cycle}#{kind}"), format!("DOC#{id}"))
}

impl DocStore for DynamoState {
    async fn put_doc(
        &self,
        cycle: CycleId,
        kind: &str,
        id: &str,
        body: &str,
        expected: Option<u64>,
    ) -> Result<u64, PortError> {
        let what = format!("{kind} {id} of {cycle}");
        self.put_versioned(
            kind,
            doc_key(cycle, kind, id),
            &what,
            body,
            expected,
            (None, None),
        )
        .await
    }

    async fn get_doc(
        &self,
        cycle: CycleId,
        kind: &str,
        id: &str,
    ) -> Result<Option<Doc>, PortError> {
        let item: Option<DocItem> = self.get_record(kind, doc_key(cycle, kind, id)).await?;
        item.map(|i| doc_of(kind, i)).transpose()
    }

    async fn list_docs(&self, cycle: CycleId, kind: &str) -> Result<Vec<Doc>, PortError> {
        let (pk, _) = doc_key(cycle, kind, "");
        let items: Vec<DocItem> = self.query_prefix(kind, pk, "DOC#").await?;
        items.into_iter().map(|i| doc_of(kind, i)).collect()
    }

    async fn put_doc_indexed(
        &self,
        cycle: CycleId,
        kind: &str,
        id: &str,
        body: &str,
        expected: Option<u64>,
        index: &DocIndex,
    ) -> Result<u64, PortError> {
        let what = format!("{kind} {id} of {cycle}");
        let (due_sk, phase) = index.keys(id)?;
        let phase_pk = phase.map(|p| phase_pk(cycle, kind, p));
        self.put_versioned(
            kind,
            doc_key(cycle, kind, id),
            &what,
            body,
            expected,
            (due_sk, phase_pk),
        )
        .await
    }

    async fn list_due_docs(
        &self,
        cycle: CycleId,
        kind: &str,
        until: DateTime<Utc>,
        after: Option<&DueCursor>,
        limit: usize,
    ) -> Result<Vec<(DueCursor, Doc)>, PortError> {
        let Some(upper) = due_upper_bound(until) else {
            return Ok(Vec::new());
        };
        let (pk, _) = doc_key(cycle, kind, "");
        // Resuming after a cursor: the index key of the document it names (which need not exist
        // any more), so the query continues strictly after it.
        let mut start = match after {
            Some(a) => {
                let mut key = key_map(doc_key(cycle, kind, &a.id));
                key.insert(
                    "due_sk".to_owned(),
                    AttributeValue::S(due_sort_key(a.due, &a.id)?),
                );
                Some(key)
            }
            None => None,
        };
        let mut out = Vec::new();
        while out.len() < limit {
            let page_limit = i32::try_from(limit - out.len()).unwrap_or(i32::MAX);
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(DUE_INDEX)
                .key_condition_expression("pk = :pk AND due_sk < :upper")
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .expression_attribute_values(":upper", AttributeValue::S(upper.clone()))
                .set_exclusive_start_key(start.take())
                .limit(page_limit)
                .send()
                .await
                .map_err(|e| classify(format!("list due {kind}"), e))?;
            for item in page.items.unwrap_or_default() {
                let item: DocItem = from_item(kind, item)?;
                let due = due_of_sort_key(item.due_sk.as_deref().unwrap_or_default())?;
                let doc = doc_of(kind, item)?;
                out.push((
                    DueCursor {
                        due,
                        id: doc.id.clone(),
                    },
                    doc,
                ));
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        // A page never holds more than asked; the cut only guards that promise.
        out.truncate(limit);
        Ok(out)
    }

    async fn any_doc_in_phase(
        &self,
        cycle: CycleId,
        kind: &str,
        phases: &[&str],
    ) -> Result<bool, PortError> {
        for phase in phases {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(PHASE_INDEX)
                .key_condition_expression("phase_pk = :phase")
                .expression_attribute_values(
                    ":phase",
                    AttributeValue::S(phase_pk(cycle, kind, phase)),
                )
                .limit(1)
                .send()
                .await
                .map_err(|e| classify(format!("{kind} in phase {phase}"), e))?;
            if page.count > 0 || page.items.is_some_and(|i| !i.is_empty()) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn list_ids_in_phase(
        &self,
        cycle: CycleId,
        kind: &str,
        phase: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, PortError> {
        // The index's sort key is the table's (`DOC#{id}`): a page strictly after a position is
        // a key condition, and id order is its order.
        let (_, lower) = doc_key(cycle, kind, after.unwrap_or(""));
        let mut ids = Vec::new();
        let mut start = None;
        while ids.len() < limit {
            let page_limit = i32::try_from(limit - ids.len()).unwrap_or(i32::MAX);
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(PHASE_INDEX)
                .key_condition_expression("phase_pk = :phase AND sk > :after")
                .expression_attribute_values(
                    ":phase",
                    AttributeValue::S(phase_pk(cycle, kind, phase)),
                )
                .expression_attribute_values(":after", AttributeValue::S(lower.clone()))
                .set_exclusive_start_key(start.take())
                .limit(page_limit)
                .send()
                .await
                .map_err(|e| classify(format!("list {kind} in phase {phase}"), e))?;
            for item in page.items.unwrap_or_default() {
                let sk = match item.get("sk") {
                    Some(AttributeValue::S(sk)) => sk,
                    _ => {
                        return Err(PortError::permanent(
                            format!("list {kind} in phase {phase}"),
                            "an index entry has no sort key",
                        ))
                    }
                };
                let id = sk.strip_prefix("DOC#").ok_or_else(|| {
                    PortError::permanent(
                        format!("list {kind} in phase {phase}"),
                        format!("index entry `{sk}` is not a document's"),
                    )
                })?;
                ids.push(id.to_owned());
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        ids.truncate(limit);
        Ok(ids)
    }

    async fn count_docs_in_phase(
        &self,
        cycle: CycleId,
        kind: &str,
        phase: &str,
    ) -> Result<u64, PortError> {
        let mut total = 0u64;
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(PHASE_INDEX)
                .key_condition_expression("phase_pk = :phase")
                .expression_attribute_values(
                    ":phase",
                    AttributeValue::S(phase_pk(cycle, kind, phase)),
                )
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| classify(format!("count {kind} in phase {phase}"), e))?;
            total += u64::try_from(page.count).unwrap_or_default();
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(total),
            }
        }
    }

    async fn get_docs(
        &self,
        cycle: CycleId,
        kind: &str,
        ids: &[String],
    ) -> Result<Vec<Doc>, PortError> {
        // BatchGetItem refuses a request naming a key twice.
        let mut ids: Vec<&String> = ids.iter().collect();
        ids.sort();
        ids.dedup();
        let mut docs = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_BATCH_GET) {
            let mut pending = KeysAndAttributes::builder()
                .set_keys(Some(
                    chunk
                        .iter()
                        .map(|id| key_map(doc_key(cycle, kind, id)))
                        .collect(),
                ))
                .consistent_read(true)
                .build()
                .map_err(|e| PortError::permanent("build a batch get", e))?;
            for attempt in 0..BATCH_ATTEMPTS {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, pending.clone())
                    .send()
                    .await
                    .map_err(|e| classify(format!("get {kind}"), e))?;
                if let Some(items) = out.responses.and_then(|mut r| r.remove(&self.table)) {
                    for item in items {
                        docs.push(doc_of(kind, from_item(kind, item)?)?);
                    }
                }
                match out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys().is_empty())
                {
                    None => break,
                    Some(rest) if attempt + 1 < BATCH_ATTEMPTS => {
                        pending = rest;
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    Some(rest) => {
                        return Err(PortError::transient(
                            format!("get {kind}"),
                            format!(
                                "{} key(s) still unprocessed after {BATCH_ATTEMPTS} attempts",
                                rest.keys().len()
                            ),
                        ))
                    }
                }
            }
        }
        docs.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(docs)
    }
}

impl DynamoState {
    /// Writes a versioned item (a cycle document, a chain head): creates it when `expected` is
    /// `None` (`Conflict` if it exists), else replaces it if its version is `expected`
    /// (`Conflict` if it moved, `NotFound` if there is none), with its index attributes
    /// `(due_sk, phase_pk)` (`None`: absent, so out of that index). Returns the new version.
    async fn put_versioned(
        &self,
        kind: &str,
        (pk, sk): (String, String),
        what: &str,
        body: &str,
        expected: Option<u64>,
        (due_sk, phase_pk): (Option<String>, Option<String>),
    ) -> Result<u64, PortError> {
        let version = expected.map_or(1, |v| v + 1);
        let (body, bodyz) = pack(body);
        let item = to_item(
            kind,
            &DocItem {
                pk: pk.clone(),
                sk: sk.clone(),
                version,
                body,
                bodyz,
                due_sk,
                phase_pk,
            },
        )?;
        let (condition, values) = match expected {
            None => ("attribute_not_exists(pk)", vec![]),
            Some(v) => (
                "attribute_exists(pk) AND #v = :expected",
                vec![(":expected", AttributeValue::N(v.to_string()))],
            ),
        };
        let result = self
            .put_if(kind, item, condition, values, || match expected {
                None => format!("{what} exists"),
                Some(v) => format!("{what} moved past version {v}"),
            })
            .await;
        match result {
            Err(PortError::Conflict(c))
                if expected.is_some()
                    && self.get_record::<DocItem>(kind, (pk, sk)).await?.is_none() =>
            {
                Err(PortError::NotFound(c))
            }
            other => other.map(|()| version),
        }
    }
}

fn doc_of(kind: &str, item: DocItem) -> Result<Doc, PortError> {
    let id = item.sk.strip_prefix("DOC#").unwrap_or(&item.sk).to_owned();
    let body = match (item.body, item.bodyz) {
        (Some(body), None) => body,
        (None, Some(packed)) => unpack(&packed.0).map_err(|e| {
            PortError::permanent(format!("read {kind} {id}"), format!("its body: {e}"))
        })?,
        _ => {
            return Err(PortError::permanent(
                format!("read {kind} {id}"),
                "the item has not exactly one of `body` and `bodyz`",
            ))
        }
    };
    Ok(Doc {
        id,
        version: item.version,
        body,
    })
}

/// A body from [`PACK_FROM`] bytes on is stored deflated, when that is smaller: DynamoDB bills
/// a write per 1 KB of the item (and again per index it is projected to) and a read per 4 KB,
/// and the JSON of a run or a cycle record deflates to a third or less. The developer guide's
/// advice for large attributes ("Best practices for storing large items and attributes":
/// compress them, store them as a binary attribute).
const PACK_FROM: usize = 200;

/// `(body, bodyz)`: the body as a string, or deflated.
fn pack(body: &str) -> (Option<String>, Option<Packed>) {
    use std::io::Write;
    if body.len() >= PACK_FROM {
        let mut z = flate2::write::DeflateEncoder::new(
            Vec::with_capacity(body.len() / 3),
            flate2::Compression::default(),
        );
        if z.write_all(body.as_bytes()).is_ok() {
            if let Ok(packed) = z.finish() {
                if packed.len() < body.len() {
                    return (None, Some(Packed(packed)));
                }
            }
        }
    }
    (Some(body.to_owned()), None)
}

/// A deflated body as it was stored.
fn unpack(packed: &[u8]) -> Result<String, std::io::Error> {
    use std::io::Read;
    let mut body = String::with_capacity(packed.len() * 4);
    flate2::read::DeflateDecoder::new(packed).read_to_string(&mut body)?;
    Ok(body)
}

/// Bytes stored as a DynamoDB binary attribute (`B`).
struct Packed(Vec<u8>);

impl Serialize for Packed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Packed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl<'de> serde::de::Visitor<'de> for Bytes {
            type Value = Packed;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a binary attribute")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Packed, E> {
                Ok(Packed(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Packed, E> {
                Ok(Packed(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Packed, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Packed(out))
            }
        }
        d.deserialize_bytes(Bytes)
    }
}

/// Creates the state table (on-demand, `pk`/`sk` string keys, the `due` and `phase` global
/// secondary indexes of the module doc) and turns TTL on for `ttl`. Waits until the table is
/// active.
pub async fn create_state_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), PortError> {
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let index = |name: &str, hash: &str, range: &str, projection: ProjectionType| {
        GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key(hash, KeyType::Hash)?)
            .key_schema(key(range, KeyType::Range)?)
            .projection(Projection::builder().projection_type(projection).build())
            .build()
    };
    let built = (|| -> Result<_, aws_sdk_dynamodb::error::BuildError> {
        Ok((
            [key("pk", KeyType::Hash)?, key("sk", KeyType::Range)?],
            [attr("pk")?, attr("sk")?, attr("due_sk")?, attr("phase_pk")?],
            [
                index(DUE_INDEX, "pk", "due_sk", ProjectionType::All)?,
                index(PHASE_INDEX, "phase_pk", "sk", ProjectionType::KeysOnly)?,
            ],
        ))
    })()
    .map_err(|e| PortError::permanent("build the table definition", e))?;
    let (keys, attrs, indexes) = built;
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(keys.into()))
        .set_attribute_definitions(Some(attrs.into()))
        .set_global_secondary_indexes(Some(indexes.into()))
        .send()
        .await
        .map_err(|e| classify(format!("create table {table}"), e))?;
    client
        .wait_until_table_exists()
        .table_name(table)
        .wait(StdDuration::from_secs(120))
        .await
        .map_err(|e| PortError::transient(format!("wait for table {table}"), e))?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("ttl")
                .enabled(true)
                .build()
                .map_err(|e| PortError::permanent("build the TTL specification", e))?,
        )
        .send()
        .await
        .map_err(|e| classify(format!("TTL on {table}"), e))?;
    Ok(())
}
