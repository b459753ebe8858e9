//! One contract suite for the state store ports, run against DynamoDB (on moto) and SQLite; then
//! racing writers, and DynamoDB's batch limits held at the SDK layer.

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_smithy_types::body::SdkBody;
use chrono::{Duration, TimeZone, Utc};
use patchflow_core::contract::EndpointDoc;
use patchflow_core::ids::{ClientId, CycleId, EndpointId};
use patchflow_core::model::{EndpointKind, Ring};
use patchflow_core::ports::state::{
    Claim, EndpointStore, IdempotencyStore, StoredEndpoint, TierId, TierRecord, TierStore,
};
use patchflow_core::ports::PortError;
use patchflow_core::tier::{TierEvent, TierState};

use crate::support::{dynamo_state, dynamo_state_with, sqlite_state, unique};

fn doc(client: &str, id: &str, ring: Ring) -> EndpointDoc {
    EndpointDoc {
        id: id.into(),
        client: client.into(),
        location: None,
        hostname: Some(id.to_uppercase()),
        kind: EndpointKind::Workstation,
        timezone: Some("America/Chicago".into()),
        patching_disabled: None,
        client_excluded: None,
        exclusion_ref: None,
        policy_group: None,
        role: None,
        criticality: None,
        ring: Some(ring),
        track: None,
        unattended_reboot_approved: None,
        critical: None,
    }
}

fn fleet(client: &str, n: usize, ring: Ring) -> Vec<StoredEndpoint> {
    (0..n)
        .map(|i| StoredEndpoint::from_doc(doc(client, &format!("ws-{i:03}"), ring)).unwrap())
        .collect()
}

fn cycle() -> CycleId {
    "2026-12".parse().unwrap()
}

fn at(h: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 9, h, 0, 0).unwrap()
}

fn tier(name: &str) -> TierRecord {
    TierRecord {
        cycle: cycle(),
        tier: TierId::parse(name).unwrap(),
        state: TierState::Scheduled,
        version: 0,
        endpoints: vec![EndpointId::parse("ws-001").unwrap()],
        updated_at: at(0),
    }
}

async fn contract<S: EndpointStore + TierStore + IdempotencyStore>(store: &S) {
    let client = unique("client");
    let client_id = ClientId::parse(client.as_str()).unwrap();

    // GIVEN 60 endpoints synced (three batches of writes on DynamoDB)
    let first = fleet(&client, 60, Ring::Production);
    let s = store.sync_endpoints(&first).await.unwrap();
    assert_eq!((s.written, s.unchanged), (60, 0));
    // WHEN the same inventory syncs again THEN nothing is rewritten
    let s = store.sync_endpoints(&first).await.unwrap();
    assert_eq!((s.written, s.unchanged), (0, 60));
    // WHEN five endpoints change ring THEN only those five are written
    let mut second = first.clone();
    for e in second.iter_mut().take(5) {
        *e = StoredEndpoint::from_doc(doc(&client, e.id.as_str(), Ring::Pilot)).unwrap();
    }
    let s = store.sync_endpoints(&second).await.unwrap();
    assert_eq!((s.written, s.unchanged), (5, 55));
    let got = store
        .get_endpoint(&client_id, &EndpointId::parse("ws-000").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.doc.ring, Some(Ring::Pilot));
    assert_eq!(got, second[0]);
    let listed = store.list_endpoints(&client_id).await.unwrap();
    assert_eq!(listed.len(), 60);
    assert!(
        listed.windows(2).all(|w| w[0].id < w[1].id),
        "listed in id order"
    );
    assert!(store
        .get_endpoint(&client_id, &EndpointId::parse("nope").unwrap())
        .await
        .unwrap()
        .is_none());

    // GIVEN a tier THEN creating it again is a conflict
    let t = tier("servers.acme.pilot");
    store.create_tier(&t).await.unwrap();
    assert!(matches!(
        store.create_tier(&t).await,
        Err(PortError::Conflict(_))
    ));
    // AND transitions move it one version at a time
    let t1 = store
        .transition_tier(cycle(), &t.tier, 0, TierEvent::Deploy, at(1))
        .await
        .unwrap();
    assert_eq!(
        (t1.state, t1.version, t1.updated_at),
        (TierState::Deploying, 1, at(1))
    );
    // AND a stale version is a conflict, an event the state machine refuses is permanent
    assert!(matches!(
        store
            .transition_tier(cycle(), &t.tier, 0, TierEvent::InstallsReported, at(2))
            .await,
        Err(PortError::Conflict(_))
    ));
    assert!(matches!(
        store
            .transition_tier(cycle(), &t.tier, 1, TierEvent::Close, at(2))
            .await,
        Err(PortError::Permanent { .. })
    ));
    let missing = TierId::parse("workstations.nowhere").unwrap();
    assert!(matches!(
        store
            .transition_tier(cycle(), &missing, 0, TierEvent::Deploy, at(2))
            .await,
        Err(PortError::NotFound(_))
    ));
    assert_eq!(store.get_tier(cycle(), &t.tier).await.unwrap().unwrap(), t1);
    store
        .create_tier(&tier("workstations.pilot"))
        .await
        .unwrap();
    let names: Vec<String> = store
        .list_tiers(cycle())
        .await
        .unwrap()
        .iter()
        .map(|t| t.tier.to_string())
        .collect();
    assert_eq!(names, ["servers.acme.pilot", "workstations.pilot"]);
    assert!(store
        .list_tiers(cycle().next().unwrap())
        .await
        .unwrap()
        .is_empty());

    // GIVEN an idempotency key claimed by one delivery
    let key = unique("msg");
    let (lease, ttl) = (Duration::minutes(5), Duration::days(14));
    assert_eq!(
        store.claim(&key, at(3), lease, ttl).await.unwrap(),
        Claim::Acquired
    );
    // THEN a redelivery during the lease waits, and after completion skips with the outcome
    assert_eq!(
        store
            .claim(&key, at(3) + Duration::minutes(1), lease, ttl)
            .await
            .unwrap(),
        Claim::InProgress
    );
    store
        .complete(&key, "ticket T-42", at(3) + Duration::minutes(2), ttl)
        .await
        .unwrap();
    assert_eq!(
        store.claim(&key, at(4), lease, ttl).await.unwrap(),
        Claim::Done("ticket T-42".into())
    );
    // AND a crashed attempt's expired lease can be taken over
    let crashed = unique("msg");
    assert_eq!(
        store.claim(&crashed, at(5), lease, ttl).await.unwrap(),
        Claim::Acquired
    );
    assert_eq!(
        store
            .claim(&crashed, at(5) + Duration::minutes(6), lease, ttl)
            .await
            .unwrap(),
        Claim::Acquired
    );
    // AND an expired record is as good as absent (TTL deletes lazily)
    assert_eq!(
        store
            .claim(&key, at(4) + Duration::days(15), lease, ttl)
            .await
            .unwrap(),
        Claim::Acquired
    );
    assert!(matches!(
        store.complete(&unique("never"), "x", at(6), ttl).await,
        Err(PortError::NotFound(_))
    ));
}

#[tokio::test]
async fn the_dynamodb_store_keeps_the_state_contract() {
    contract(&dynamo_state().await).await;
}

#[tokio::test]
async fn the_sqlite_store_keeps_the_state_contract() {
    contract(&sqlite_state()).await;
}

async fn race<S: TierStore + Clone + 'static>(store: S) {
    let t = tier(&format!("race.{}", unique("t")));
    store.create_tier(&t).await.unwrap();
    // Two writers read version 0 and both try to move the tier.
    let (a, b) = (store.clone(), store.clone());
    let (ta, tb) = (t.tier.clone(), t.tier.clone());
    let one = tokio::spawn(async move {
        a.transition_tier(cycle(), &ta, 0, TierEvent::Deploy, at(1))
            .await
    });
    let two = tokio::spawn(async move {
        b.transition_tier(cycle(), &tb, 0, TierEvent::Deploy, at(1))
            .await
    });
    let results = [one.await.unwrap(), two.await.unwrap()];
    let wins = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(PortError::Conflict(_))))
        .count();
    assert_eq!((wins, conflicts), (1, 1), "{results:?}");
    assert_eq!(
        store
            .get_tier(cycle(), &t.tier)
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_writers_racing_on_a_dynamodb_tier_exactly_one_wins() {
    for _ in 0..5 {
        race(dynamo_state().await).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_writers_racing_on_a_sqlite_tier_exactly_one_wins() {
    let store = sqlite_state();
    for _ in 0..20 {
        race(store.clone()).await;
    }
}

/// moto takes a 26-item BatchWriteItem and never returns UnprocessedItems; this interceptor
/// fails any batch over DynamoDB's limit and rewrites chosen responses so that some items come
/// back unprocessed (they were in fact written; the retry rewrites them, which puts make safe).
#[derive(Debug, Clone, Default)]
struct BatchWriteLimits {
    sizes: Arc<Mutex<Vec<usize>>>,
    over_limit: Arc<Mutex<usize>>,
    /// Attempts (0-based) whose response reports their last `n` items unprocessed.
    unprocessed: Arc<Mutex<Vec<(usize, usize)>>>,
    in_flight: Arc<Mutex<Option<serde_json::Value>>>,
}

impl Intercept for BatchWriteLimits {
    fn name(&self) -> &'static str {
        "BatchWriteLimits"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = ctx.request();
        let is_batch = req
            .headers()
            .get("x-amz-target")
            .is_some_and(|t| t.ends_with(".BatchWriteItem"));
        let mut in_flight = self.in_flight.lock().unwrap();
        *in_flight = None;
        if !is_batch {
            return Ok(());
        }
        let body: serde_json::Value =
            serde_json::from_slice(req.body().bytes().unwrap_or_default())?;
        let count: usize = body["RequestItems"]
            .as_object()
            .map(|m| m.values().filter_map(|v| v.as_array()).map(Vec::len).sum())
            .unwrap_or(0);
        self.sizes.lock().unwrap().push(count);
        if count > 25 {
            *self.over_limit.lock().unwrap() += 1;
            return Err(format!("DynamoDB would refuse a BatchWriteItem of {count} items").into());
        }
        *in_flight = Some(body);
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        ctx: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(body) = self.in_flight.lock().unwrap().take() else {
            return Ok(());
        };
        let attempt = self.sizes.lock().unwrap().len() - 1;
        let Some(&(_, n)) = self
            .unprocessed
            .lock()
            .unwrap()
            .iter()
            .find(|(a, _)| *a == attempt)
        else {
            return Ok(());
        };
        let mut unprocessed = serde_json::Map::new();
        for (table, requests) in body["RequestItems"].as_object().into_iter().flatten() {
            let list = requests.as_array().cloned().unwrap_or_default();
            let tail: Vec<_> = list[list.len().saturating_sub(n)..].to_vec();
            unprocessed.insert(table.clone(), serde_json::Value::Array(tail));
        }
        *ctx.response_mut().body_mut() =
            SdkBody::from(serde_json::json!({ "UnprocessedItems": unprocessed }).to_string());
        Ok(())
    }
}

#[tokio::test]
async fn batch_writes_stay_within_25_items_and_unprocessed_items_all_land() {
    let limits = BatchWriteLimits::default();
    // The first batch returns 7 of its 25 unprocessed; the retry of those 7 returns 2 again.
    limits.unprocessed.lock().unwrap().extend([(0, 7), (1, 2)]);
    let interceptor = limits.clone();
    let store = dynamo_state_with(move |b| b.interceptor(interceptor)).await;
    let client = unique("client");
    let s = store
        .sync_endpoints(&fleet(&client, 60, Ring::Production))
        .await
        .unwrap();
    assert_eq!(s.written, 60);
    assert_eq!(*limits.over_limit.lock().unwrap(), 0);
    assert_eq!(*limits.sizes.lock().unwrap(), [25, 7, 2, 25, 10]);
    assert_eq!(
        store
            .list_endpoints(&ClientId::parse(client.as_str()).unwrap())
            .await
            .unwrap()
            .len(),
        60
    );
}
