//! Which clients' RMM changes are read each hour: a client is watched in a tier until the
//! latest next-action instant of its runs there that wait for a report (phases `sent` and
//! `reported`), so the hourly tick asks the RMM what changed only for the clients that can have
//! news, not for every client of a fleet-wide tier that has one run out.
//!
//! One document per tier and client (`watch.{tier}`, id the client), extended whenever a run
//! is saved waiting for a report with a later next action ([`extend`], once per client per
//! message) and read by the tick (one listing per waiting tier: at most its clients). A watch
//! that lags (a write lost to a race, a cycle opened before watches) delays a report to the
//! run's own deadline, when the tier's tick reads it anyway; it never loses one.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use patchflow_core::ids::{ClientId, CycleId};
use patchflow_core::ports::state::{DocStore, TierId};
use patchflow_core::ports::PortError;
use patchflow_core::schedule::utc;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::error::HandlerError;
use crate::records;

/// The document kind of a tier's watches (id: the client).
pub fn watch_kind(tier: &TierId) -> String {
    format!("watch.{tier}")
}

/// How long a run waiting for a report without a next action keeps its client watched.
const NO_DUE_HORIZON: Duration = Duration::days(31);

/// A client's watch in a tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    /// Until when the client's changes are read for the tier.
    #[serde(with = "utc")]
    pub until: DateTime<Utc>,
}

/// The instant a run saved waiting for a report keeps its client watched until: its next
/// action (`None` due: a horizon from `now`).
pub fn until_of(due: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    due.unwrap_or(now + NO_DUE_HORIZON)
}

/// Extends the watches of a tier's clients to at least these instants: one bulk read, and a
/// write for each watch that is later now. A write that loses a race is tried again on what
/// won; after a few tries it is left (the run's deadline still reads its reports).
pub async fn extend(
    store: &impl DocStore,
    cycle: CycleId,
    tier: &TierId,
    wanted: &BTreeMap<ClientId, DateTime<Utc>>,
) -> Result<(), HandlerError> {
    if wanted.is_empty() {
        return Ok(());
    }
    let kind = watch_kind(tier);
    let ids: Vec<String> = wanted.keys().map(|c| c.as_str().to_owned()).collect();
    let mut stored: BTreeMap<String, (Watch, u64)> = BTreeMap::new();
    for doc in store.get_docs(cycle, &kind, &ids).await? {
        let watch: Watch = serde_json::from_str(&doc.body).map_err(|e| {
            HandlerError::Poison(format!("stored {kind} {} is unreadable: {e}", doc.id))
        })?;
        stored.insert(doc.id, (watch, doc.version));
    }
    for (client, until) in wanted {
        let mut current = stored.remove(client.as_str());
        for attempt in 0..3 {
            if current.as_ref().is_some_and(|(w, _)| w.until >= *until) {
                break;
            }
            let watch = Watch { until: *until };
            let expected = current.as_ref().map(|(_, v)| *v);
            match records::save(store, cycle, &kind, client.as_str(), &watch, expected).await {
                Ok(_) => break,
                Err(PortError::Conflict(_)) if attempt < 2 => {
                    current = records::load(store, cycle, &kind, client.as_str()).await?;
                }
                Err(PortError::Conflict(_)) => {
                    warn!(%cycle, %tier, %client, "watch not extended: lost every race");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// The clients of a tier watched at `now`: those whose watch runs until `since` or later (the
/// start of the hour of changes the tick reads).
pub async fn watched(
    store: &impl DocStore,
    cycle: CycleId,
    tier: &TierId,
    since: DateTime<Utc>,
) -> Result<Vec<ClientId>, HandlerError> {
    let kind = watch_kind(tier);
    let mut out = Vec::new();
    for doc in store.list_docs(cycle, &kind).await? {
        let watch: Watch = serde_json::from_str(&doc.body).map_err(|e| {
            HandlerError::Poison(format!("stored {kind} {} is unreadable: {e}", doc.id))
        })?;
        if watch.until >= since {
            let client = ClientId::parse(&doc.id).map_err(|e| {
                HandlerError::Poison(format!("{kind}: `{}` is not a client: {e}", doc.id))
            })?;
            out.push(client);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchflow_local::state::SqliteState;

    fn at(h: i64) -> DateTime<Utc> {
        "2026-12-09T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::hours(h)
    }

    fn client(id: &str) -> ClientId {
        ClientId::parse(id).unwrap()
    }

    #[tokio::test]
    async fn a_watch_only_grows_and_the_tick_sees_the_clients_watched_since_its_hour() {
        let store = SqliteState::in_memory().unwrap();
        let cycle: CycleId = "2026-12".parse().unwrap();
        let tier = TierId::parse("workstations.production").unwrap();
        // GIVEN two clients watched until hours 5 and 10
        let wanted = BTreeMap::from([(client("alpha"), at(5)), (client("bravo"), at(10))]);
        extend(&store, cycle, &tier, &wanted).await.unwrap();
        // WHEN alpha's is asked to end earlier and bravo's later
        let wanted = BTreeMap::from([(client("alpha"), at(2)), (client("bravo"), at(12))]);
        extend(&store, cycle, &tier, &wanted).await.unwrap();
        // THEN alpha keeps its later end, bravo's grows
        let (a, _): (Watch, u64) = records::must_load(&store, cycle, &watch_kind(&tier), "alpha")
            .await
            .unwrap();
        assert_eq!(a.until, at(5));
        let (b, _): (Watch, u64) = records::must_load(&store, cycle, &watch_kind(&tier), "bravo")
            .await
            .unwrap();
        assert_eq!(b.until, at(12));
        // AND the tick's hour decides who is read: both at hour 5, bravo only after it
        assert_eq!(
            watched(&store, cycle, &tier, at(5)).await.unwrap(),
            [client("alpha"), client("bravo")]
        );
        assert_eq!(
            watched(&store, cycle, &tier, at(6)).await.unwrap(),
            [client("bravo")]
        );
        assert!(watched(&store, cycle, &tier, at(13))
            .await
            .unwrap()
            .is_empty());
        // AND another tier's watches are its own
        let other = TierId::parse("workstations.pilot").unwrap();
        assert!(watched(&store, cycle, &other, at(0))
            .await
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_run_without_a_next_action_keeps_its_client_watched_for_the_horizon() {
        assert_eq!(until_of(Some(at(3)), at(1)), at(3));
        assert_eq!(until_of(None, at(1)), at(1) + NO_DUE_HORIZON);
    }
}
