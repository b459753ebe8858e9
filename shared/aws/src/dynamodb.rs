//! The state store in one DynamoDB table, designed from its access patterns (see
//! docs/adapters.md): a string partition key `pk` and sort key `sk`, on-demand capacity, and TTL
//! on `ttl` for idempotency records.
//!
//! | record | pk | sk |
//! |---|---|---|
//! | endpoint | `CLIENT#{client}` | `ENDPOINT#{id}` |
//! | tier | `CYCLE#{cycle}` | `TIER#{tier}` |
//! | idempotency | `IDEMPOTENCY#{key}` | `IDEMPOTENCY` |
//!
//! Every transition is a conditional write; a failed condition is `Conflict`.

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, KeysAndAttributes,
    PutRequest, ScalarAttributeType, TimeToLiveSpecification, WriteRequest,
};
use chrono::{DateTime, Duration, Utc};
use patchflow_core::ids::{ClientId, CycleId, EndpointId};
use patchflow_core::ports::state::{
    next_tier_state, Claim, EndpointStore, IdempotencyStore, StoredEndpoint, SyncSummary, TierId,
    TierRecord, TierStore,
};
use patchflow_core::ports::PortError;
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
    /// Reads the stored hashes of these keys, retrying unprocessed keys.
    async fn stored_hashes(
        &self,
        keys: Vec<(String, String)>,
    ) -> Result<HashMap<(String, String), String>, PortError> {
        let mut hashes = HashMap::new();
        for chunk in keys.chunks(MAX_BATCH_GET) {
            let mut pending = KeysAndAttributes::builder()
                .set_keys(Some(chunk.iter().cloned().map(key_map).collect()))
                .projection_expression("pk, sk, #h")
                .expression_attribute_names("#h", "hash")
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
                    .map_err(|e| classify("read endpoint hashes", e))?;
                for item in out
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                    if let (Some(pk), Some(sk), Some(h)) = (s("pk"), s("sk"), s("hash")) {
                        hashes.insert((pk, sk), h);
                    }
                }
                match out
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .filter(|k| !k.keys().is_empty())
                {
                    None => break,
                    Some(rest) if attempt + 1 < BATCH_ATTEMPTS => {
                        pending = rest.clone();
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    Some(_) => {
                        return Err(PortError::transient(
                            "read endpoint hashes",
                            "keys still unprocessed after retries",
                        ))
                    }
                }
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
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_map(endpoint_key(client, id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(format!("get endpoint {id}"), e))?;
        out.item
            .map(|i| from_item::<EndpointItem>("endpoint", i).map(|it| it.record))
            .transpose()
    }

    async fn list_endpoints(&self, client: &ClientId) -> Result<Vec<StoredEndpoint>, PortError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", AttributeValue::S(format!("CLIENT#{client}")))
            .expression_attribute_values(":prefix", AttributeValue::S("ENDPOINT#".into()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| classify(format!("list endpoints of {client}"), e))?;
            out.push(from_item::<EndpointItem>("endpoint", item)?.record);
        }
        Ok(out)
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
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(
                |e| match classify(format!("create tier {}", tier.tier), e) {
                    PortError::Conflict(_) => {
                        PortError::Conflict(format!("tier {} of {} exists", tier.tier, tier.cycle))
                    }
                    other => other,
                },
            )?;
        Ok(())
    }

    async fn get_tier(
        &self,
        cycle: CycleId,
        tier: &TierId,
    ) -> Result<Option<TierRecord>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_map(tier_key(cycle, tier))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(format!("get tier {tier}"), e))?;
        out.item
            .map(|i| from_item::<TierItem>("tier", i).map(|it| it.record))
            .transpose()
    }

    async fn transition_tier(
        &self,
        cycle: CycleId,
        tier: &TierId,
        expected_version: u64,
        event: TierEvent,
        at: DateTime<Utc>,
    ) -> Result<TierRecord, PortError> {
        let current = self
            .get_tier(cycle, tier)
            .await?
            .ok_or_else(|| PortError::NotFound(format!("tier {tier} of {cycle}")))?;
        if current.version != expected_version {
            return Err(PortError::Conflict(format!(
                "tier {tier} of {cycle} is at version {}, not {expected_version}",
                current.version
            )));
        }
        let next = TierRecord {
            state: next_tier_state(&current, event)?,
            version: expected_version + 1,
            updated_at: at,
            ..current
        };
        let (pk, sk) = tier_key(cycle, tier);
        let item = to_item(
            "tier",
            &TierItem {
                pk,
                sk,
                record: next.clone(),
            },
        )?;
        // The version is the condition: of two racing writers, exactly one succeeds.
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("version = :expected")
            .expression_attribute_values(
                ":expected",
                AttributeValue::N(expected_version.to_string()),
            )
            .send()
            .await
            .map_err(|e| match classify(format!("transition tier {tier}"), e) {
                PortError::Conflict(_) => PortError::Conflict(format!(
                    "tier {tier} of {cycle} moved past version {expected_version}"
                )),
                other => other,
            })?;
        Ok(next)
    }

    async fn list_tiers(&self, cycle: CycleId) -> Result<Vec<TierRecord>, PortError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", AttributeValue::S(format!("CYCLE#{cycle}")))
            .expression_attribute_values(":prefix", AttributeValue::S("TIER#".into()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| classify(format!("list tiers of {cycle}"), e))?;
            out.push(from_item::<TierItem>("tier", item)?.record);
        }
        Ok(out)
    }
}

fn idempotency_key(key: &str) -> HashMap<String, AttributeValue> {
    key_map((format!("IDEMPOTENCY#{key}"), "IDEMPOTENCY".to_owned()))
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl IdempotencyStore for DynamoState {
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
                "attribute_not_exists(pk) OR expires_at <= :now OR (done = :false AND lease_until <= :now)",
            )
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .send()
            .await;
        match put {
            Ok(_) => Ok(Claim::Acquired),
            Err(e) if conditional_failed(&e) => {
                let out = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .set_key(Some(idempotency_key(key)))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| classify(format!("read idempotency key {key}"), e))?;
                let item = out.item.unwrap_or_default();
                if item.get("done").and_then(|v| v.as_bool().ok()) == Some(&true) {
                    let outcome = item
                        .get("outcome")
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .unwrap_or_default();
                    Ok(Claim::Done(outcome))
                } else {
                    Ok(Claim::InProgress)
                }
            }
            Err(e) => Err(classify(format!("claim idempotency key {key}"), e)),
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
                "SET done = :true, outcome = :outcome, expires_at = :expires, #ttl = :ttl",
            )
            .condition_expression("attribute_exists(pk)")
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

/// Creates the state table (on-demand, `pk`/`sk` string keys) and turns TTL on for `ttl`.
/// Waits until the table is active.
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
    let built = (|| -> Result<_, aws_sdk_dynamodb::error::BuildError> {
        Ok((
            key("pk", KeyType::Hash)?,
            key("sk", KeyType::Range)?,
            attr("pk")?,
            attr("sk")?,
        ))
    })()
    .map_err(|e| PortError::permanent("build the table definition", e))?;
    let (pk, sk, pk_attr, sk_attr) = built;
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(pk)
        .key_schema(sk)
        .attribute_definitions(pk_attr)
        .attribute_definitions(sk_attr)
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
