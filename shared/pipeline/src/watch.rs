//! Which clients' RMM changes are read each hour: a client is watched in a tier in the spans in
//! which its runs there can be reported on ([`run::report_span`]: a sent install to its deadline,
//! an automatic reboot's window, a user's working day after each reminder, the forced reboot's
//! window, the checks after a reboot), so the hourly tick asks the RMM what changed only for the
//! clients that can have news, not for every client of a fleet-wide tier that has one run out,
//! nor every hour of the days a workstation waits for its user's reboot.
//!
//! One document per tier and client (`watch.{tier}`, id the client) holding at most
//! [`MAX_SPANS`] spans, grown whenever a run is saved waiting for a report ([`extend`], once per
//! client per message) and read by the tick (one listing per waiting tier: at most its clients).
//! A watch that lags (a write lost to a race, a cycle opened before watches) or a report outside
//! its run's span delays that report to the run's own next action (its next reminder, its
//! deadline), when the tier's tick reads the run's reports anyway; it never loses one.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use patchflow_core::ids::{ClientId, CycleId};
use patchflow_core::policy::Policy;
use patchflow_core::ports::state::{DocStore, TierId};
use patchflow_core::ports::PortError;
use patchflow_core::run::{self, Run};
use patchflow_core::schedule::utc;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::error::HandlerError;
use crate::records;

/// The document kind of a tier's watches (id: the client).
pub fn watch_kind(tier: &TierId) -> String {
    format!("watch.{tier}")
}

/// How long a run waiting for a report without a deadline keeps its client watched.
const NO_DUE_HORIZON: Duration = Duration::days(31);

/// The most spans a watch keeps: beyond, the two closest are joined (watched longer, never
/// less).
pub const MAX_SPANS: usize = 24;

/// A span of hours in which a client's changes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Span {
    /// From.
    #[serde(with = "utc")]
    pub from: DateTime<Utc>,
    /// To (inclusive).
    #[serde(with = "utc")]
    pub to: DateTime<Utc>,
}

/// A client's watch in a tier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    /// When the client's changes are read for the tier, in order, apart.
    #[serde(default)]
    pub spans: Vec<Span>,
}

impl Watch {
    /// Whether the changes of the hour from `since` to `now` are read: a span meets it.
    pub fn meets(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.spans.iter().any(|s| s.from <= now && s.to >= since)
    }

    /// This watch with `more` spans, spans that ended before `keep_from` dropped: ordered,
    /// overlapping ones joined, at most [`MAX_SPANS`] (the closest joined). `None` when it
    /// already covers them.
    pub fn with(&self, more: &[Span], keep_from: DateTime<Utc>) -> Option<Watch> {
        if more.iter().all(|m| self.covers(m)) {
            return None;
        }
        let mut spans: Vec<Span> = self
            .spans
            .iter()
            .chain(more)
            .filter(|s| s.to >= keep_from)
            .copied()
            .collect();
        spans.sort();
        let mut joined: Vec<Span> = Vec::with_capacity(spans.len());
        for s in spans {
            match joined.last_mut() {
                Some(last) if s.from <= last.to => last.to = last.to.max(s.to),
                _ => joined.push(s),
            }
        }
        while joined.len() > MAX_SPANS {
            let closest = (1..joined.len())
                .min_by_key(|&i| joined[i].from - joined[i - 1].to)
                .unwrap_or(1);
            let next = joined.remove(closest);
            joined[closest - 1].to = joined[closest - 1].to.max(next.to);
        }
        Some(Watch { spans: joined })
    }

    fn covers(&self, span: &Span) -> bool {
        self.spans
            .iter()
            .any(|s| s.from <= span.from && s.to >= span.to)
    }
}

/// The span a run saved at `now` keeps its client watched in ([`run::report_span`]; a run
/// without a deadline: a horizon from `now`), `None` for a run waiting for no report.
pub fn span_of(run: &Run, tz: Tz, policy: &Policy, now: DateTime<Utc>) -> Option<Span> {
    if !run::active(run) {
        return None;
    }
    match run::report_span(run, tz, policy, now) {
        Some((from, to)) => Some(Span { from, to }),
        None if run::needs(run, now).reports => Some(Span {
            from: now,
            to: now + NO_DUE_HORIZON,
        }),
        None => None,
    }
}

/// Grows the watches of a tier's clients to cover these spans: one bulk read, and a write for
/// each watch that does not cover them yet. A write that loses a race is tried again on what
/// won; after a few tries it is left (the runs' next actions still read their reports).
pub async fn extend(
    store: &impl DocStore,
    cycle: CycleId,
    tier: &TierId,
    wanted: &BTreeMap<ClientId, Vec<Span>>,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    if wanted.is_empty() {
        return Ok(());
    }
    let kind = watch_kind(tier);
    let keep_from = now - Duration::days(1);
    let ids: Vec<String> = wanted.keys().map(|c| c.as_str().to_owned()).collect();
    let mut stored: BTreeMap<String, (Watch, u64)> = BTreeMap::new();
    for doc in store.get_docs(cycle, &kind, &ids).await? {
        stored.insert(
            doc.id.clone(),
            (parse(&kind, &doc.id, &doc.body)?, doc.version),
        );
    }
    for (client, spans) in wanted {
        let mut current = stored.remove(client.as_str());
        for attempt in 0..3 {
            let base = current.as_ref().map(|(w, _)| w.clone()).unwrap_or_default();
            let Some(watch) = base.with(spans, keep_from) else {
                break;
            };
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

fn parse(kind: &str, id: &str, body: &str) -> Result<Watch, HandlerError> {
    serde_json::from_str(body)
        .map_err(|e| HandlerError::Poison(format!("stored {kind} {id} is unreadable: {e}")))
}

/// The clients of a tier watched in the hour from `since` to `now` (the changes the tick
/// reads): those with a span meeting it.
pub async fn watched(
    store: &impl DocStore,
    cycle: CycleId,
    tier: &TierId,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<ClientId>, HandlerError> {
    let kind = watch_kind(tier);
    let mut out = Vec::new();
    for doc in store.list_docs(cycle, &kind).await? {
        if parse(&kind, &doc.id, &doc.body)?.meets(since, now) {
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

    fn span(from: i64, to: i64) -> Span {
        Span {
            from: at(from),
            to: at(to),
        }
    }

    fn client(id: &str) -> ClientId {
        ClientId::parse(id).unwrap()
    }

    #[tokio::test]
    async fn a_watch_only_grows_and_the_tick_sees_the_clients_watched_in_its_hour() {
        let store = SqliteState::in_memory().unwrap();
        let cycle: CycleId = "2026-12".parse().unwrap();
        let tier = TierId::parse("workstations.production").unwrap();
        // GIVEN alpha watched in hours 2-5, bravo in 8-10
        let wanted = BTreeMap::from([
            (client("alpha"), vec![span(2, 5)]),
            (client("bravo"), vec![span(8, 10)]),
        ]);
        extend(&store, cycle, &tier, &wanted, at(0)).await.unwrap();
        // WHEN alpha is asked for a span inside its own and bravo for a later one
        let wanted = BTreeMap::from([
            (client("alpha"), vec![span(3, 4)]),
            (client("bravo"), vec![span(20, 22)]),
        ]);
        extend(&store, cycle, &tier, &wanted, at(1)).await.unwrap();
        // THEN alpha's is unchanged (no write), bravo has both spans
        let (a, va): (Watch, u64) = records::must_load(&store, cycle, &watch_kind(&tier), "alpha")
            .await
            .unwrap();
        assert_eq!(a.spans, [span(2, 5)]);
        assert_eq!(va, 1);
        let (b, _): (Watch, u64) = records::must_load(&store, cycle, &watch_kind(&tier), "bravo")
            .await
            .unwrap();
        assert_eq!(b.spans, [span(8, 10), span(20, 22)]);
        // AND the tick's hour decides who is read: alpha in its span, bravo in its, nobody
        // between bravo's two spans
        let hour = |h: i64| (at(h) - Duration::minutes(65), at(h));
        let seen = |h: i64| {
            let (since, now) = hour(h);
            let store = &store;
            let tier = &tier;
            async move { watched(store, cycle, tier, since, now).await.unwrap() }
        };
        assert!(seen(1).await.is_empty());
        assert_eq!(seen(3).await, [client("alpha")]);
        assert_eq!(seen(6).await, [client("alpha")], "the hour a span ended in");
        assert_eq!(seen(9).await, [client("bravo")]);
        assert!(seen(15).await.is_empty());
        assert_eq!(seen(21).await, [client("bravo")]);
        // AND another tier's watches are its own
        let other = TierId::parse("workstations.pilot").unwrap();
        assert!(watched(&store, cycle, &other, at(0), at(30))
            .await
            .unwrap()
            .is_empty());
    }

    #[test]
    fn spans_are_joined_ended_ones_dropped_and_at_most_a_fixed_number_kept() {
        let w = Watch {
            spans: vec![span(0, 2), span(10, 12)],
        };
        // Overlapping spans are joined; one ended before `keep_from` is dropped.
        let grown = w.with(&[span(11, 14), span(30, 31)], at(5)).unwrap();
        assert_eq!(grown.spans, [span(10, 14), span(30, 31)]);
        assert_eq!(grown.with(&[span(12, 13)], at(5)), None);
        // More spans than the cap: the closest are joined, every hour still covered.
        let many: Vec<Span> = (0..(MAX_SPANS as i64 + 5))
            .map(|i| span(i * 10, i * 10 + 1 + i % 3))
            .collect();
        let capped = Watch::default().with(&many, at(0)).unwrap();
        assert_eq!(capped.spans.len(), MAX_SPANS);
        for s in &many {
            assert!(capped.covers(s), "{s:?} lost");
        }
        assert!(capped.spans.windows(2).all(|p| p[0].to < p[1].from));
    }
}
