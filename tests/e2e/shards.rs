//! A tier larger than a page: its deployment goes in one message per members shard of at most
//! `records::MEMBERS_SHARD` runs, and its hourly work in messages of at most `schedule::PAGE` runs
//! (the tick's due pages, each client's changes), whatever its size; a shard or a page that dies
//! half-way is finished by its redelivery, each install sent once; and the tier still closes
//! with every run validated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::Drain;
use chrono::{Duration, Timelike};
use patchflow_connectors::file::{FileCatalog, FileInventory};
use patchflow_core::ids::CycleId;
use patchflow_core::ports::clock::{Clock, ManualClock};
use patchflow_core::ports::queue::{Envelope, Stage};
use patchflow_core::ports::state::{DocStore, TierStore};
use patchflow_core::rules::commands::RmmCommand;
use patchflow_core::tier::TierState;
use patchflow_local::state::SqliteState;
use patchflow_pipeline::batch::handle;
use patchflow_pipeline::messages::{ClientChanges, DeployShard, Message, TierTick};
use patchflow_pipeline::records::{self, Run, RunStatus};
use patchflow_pipeline::schedule::PAGE;
use patchflow_sim::connectors::SimRmm;

/// More than two pages of pilot workstations, one client, one zone: their windows open in the
/// same hour, so that hour's tick has them all due at once.
const ENDPOINTS: usize = 2 * PAGE + 150;

fn cycle() -> CycleId {
    "2026-12".parse().unwrap()
}

fn inventory(dir: &Path) -> PathBuf {
    let endpoints: Vec<serde_json::Value> = (0..ENDPOINTS)
        .map(|i| {
            serde_json::json!({
                "id": format!("bk-ws{i:04}"),
                "client": "bulk",
                "hostname": format!("BK-WS{i:04}"),
                "kind": "workstation",
                "ring": "pilot",
            })
        })
        .collect();
    let doc = serde_json::json!({
        "clients": [{"id": "bulk", "name": "Bulk Logistics", "timezone": "America/Chicago"}],
        "endpoints": endpoints,
    });
    let path = dir.join("inventory.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

/// What one delivery of a schedule-stage message did.
#[derive(Debug)]
struct Handled {
    kind: String,
    key: String,
    outcome: String,
    /// RMM sends it made (installs, reboots, reminders).
    sends: u64,
    /// Runs it saved.
    saved: usize,
    /// State store requests it made, and records it read.
    requests: u64,
    rows: u64,
}

#[tokio::test]
async fn a_tier_larger_than_a_page_moves_in_pages_and_a_page_that_dies_half_way_is_finished_by_its_redelivery(
) {
    let dir = tempfile::tempdir().unwrap();
    let crate::support::HandCycle {
        env,
        clock,
        queue_clock,
        consumer,
        spec,
    } = crate::support::hand_cycle(dir.path(), inventory(dir.path()), 3);
    let inv = FileInventory::new(&spec.inventory);
    let catalog = FileCatalog::new(spec.catalog.display().to_string());
    let pilot = patchflow_core::ports::state::TierId::parse("workstations.pilot").unwrap();
    let sends = |rmm: &SimRmm<ManualClock>| rmm.calls().get("send").copied().unwrap_or(0);

    let mut handled: Vec<Handled> = Vec::new();
    let mut crashed: Option<String> = None;
    let mut shard_crashed: Option<String> = None;
    let mut armed = false;
    let mut closed = false;
    for hour in 0..(spec.days * 24) {
        let now = clock.now();
        queue_clock.set(now);
        if hour == 0 || now.hour() == 6 {
            patchflow_pipeline::sync::inventory_sync(&env, &inv, &catalog, now)
                .await
                .unwrap();
        }
        patchflow_pipeline::tick::tick(&env, now).await.unwrap();
        // The hour the pilot's windows open (every run due at once): the RMM fails half-way
        // through the second page's sends, once.
        if !armed {
            let due = records::due_runs(&env.state, cycle(), &pilot, now, None, ENDPOINTS)
                .await
                .unwrap();
            if due.len() == ENDPOINTS {
                armed = true;
            }
        }
        // The pump, by hand, so that each delivery's work is seen: until a pass finds nothing.
        let mut drain = Drain::default();
        while let Some((stage, d)) = drain.next(&consumer).await {
            let envelope = Envelope::from_body(&d.body).unwrap();
            let is_page = envelope.kind == TierTick::KIND;
            if armed && crashed.is_none() && is_page && envelope.payload.get("after").is_some() {
                // A quarter into this page: its installs and reboots are two sends each.
                env.rmm.fail_send_after(PAGE / 2);
                crashed = Some(envelope.idempotency_key.clone());
            }
            let is_shard = envelope.kind == DeployShard::KIND;
            if shard_crashed.is_none() && is_shard && envelope.payload.get("shard").is_some() {
                // The process dies after planning a fifth of the shard's runs.
                env.state
                    .fail_doc_write_after("run.", records::MEMBERS_SHARD / 5);
                shard_crashed = Some(envelope.idempotency_key.clone());
            }
            let before = sends(&env.rmm);
            let saved_before = saved_runs(&env.state, &pilot).await;
            let work = env.state.work();
            let outcome = handle(&env, stage, &d.body, now).await;
            let (requests, rows) = (
                env.state.work().requests - work.requests,
                env.state.work().rows - work.rows,
            );
            if stage == Stage::Schedule
                && (is_page || is_shard || envelope.kind == ClientChanges::KIND)
            {
                handled.push(Handled {
                    kind: envelope.kind.clone(),
                    key: envelope.idempotency_key.clone(),
                    outcome: format!("{outcome:?}"),
                    sends: sends(&env.rmm) - before,
                    saved: saved_runs(&env.state, &pilot).await - saved_before,
                    requests,
                    rows,
                });
            }
            drain.settle(&consumer, stage, d, &outcome).await;
        }
        let tiers = env.state.list_tiers(cycle()).await.unwrap();
        if !tiers.is_empty() && tiers.iter().all(|t| t.state == TierState::Closed) {
            closed = true;
            break;
        }
        clock.advance(Duration::hours(1));
    }
    assert!(armed, "the pilot's windows never opened in the same hour");
    assert!(closed, "every tier closes");

    // No delivery moved more than a page of runs, nor sent more than a page's commands.
    for h in &handled {
        assert!(h.saved <= PAGE, "{h:?}");
        assert!(h.sends <= 2 * PAGE as u64, "{h:?}");
    }
    // An hour of a deploying tier with nothing due reads its record and a few index entries,
    // never its runs nor the cycle record: a handful of requests, whatever the tier's size.
    let quiet: Vec<&Handled> = handled
        .iter()
        .filter(|h| h.kind == TierTick::KIND && h.outcome.contains(": 0 due run(s) read, 0 moved"))
        .collect();
    assert!(quiet.len() >= 5, "{handled:#?}");
    for h in &quiet {
        // The claim and completion of its key, the tier record, the due page and three index
        // looks (planned runs held, runs unreported, notes unsent); one record read.
        assert!(h.rows <= 2 && h.requests <= 7, "{h:?}");
    }
    // The deployment went as one message for the client, then one per members shard, each
    // planning at most a shard of runs and sending nothing to the RMM.
    let shards: Vec<&Handled> = handled
        .iter()
        .filter(|h| h.kind == DeployShard::KIND)
        .collect();
    let parts = ENDPOINTS.div_ceil(records::MEMBERS_SHARD);
    assert_eq!(
        shards
            .iter()
            .filter(|h| h.outcome.contains(&format!("{parts} shards sent")))
            .count(),
        1,
        "{shards:#?}"
    );
    for h in &shards {
        assert!(h.saved <= records::MEMBERS_SHARD, "{h:?}");
        assert_eq!(h.sends, 0, "{h:?}");
    }
    // The shard that died a fifth of the way was handed back, and its redelivery planned the
    // rest (the runs planned before the crash needed nothing).
    let shard_crashed = shard_crashed.expect("a shard was failed half-way");
    let tries: Vec<&Handled> = shards
        .iter()
        .copied()
        .filter(|h| h.key == shard_crashed)
        .collect();
    assert_eq!(tries.len(), 2, "{tries:#?}");
    assert!(tries[0].outcome.starts_with("Retry"), "{tries:#?}");
    assert_eq!(tries[0].saved, records::MEMBERS_SHARD / 5, "{tries:#?}");
    assert!(tries[1].outcome.starts_with("Done"), "{tries:#?}");
    assert!(
        tries[1]
            .outcome
            .contains(&format!("{} needed nothing", records::MEMBERS_SHARD / 5)),
        "{tries:#?}"
    );
    let planned: usize = shards.iter().map(|h| h.saved).sum();
    assert_eq!(planned, ENDPOINTS, "every run planned once: {shards:#?}");
    // The opening hour went in pages: a first page of 500, then pages keyed where they start.
    let pages: Vec<&Handled> = handled
        .iter()
        .filter(|h| h.kind == TierTick::KIND && h.key.matches('/').count() > 4)
        .collect();
    assert!(pages.len() >= 2, "{handled:#?}");
    let full = handled
        .iter()
        .filter(|h| h.outcome.contains(&format!("{PAGE} due run(s) read")))
        .count();
    assert!(full >= 2, "{handled:#?}");
    // The page that died half-way was handed back and finished by its redelivery.
    let crashed = crashed.expect("a page was failed half-way");
    let tries: Vec<&Handled> = handled.iter().filter(|h| h.key == crashed).collect();
    assert!(tries.len() >= 2, "{tries:#?}");
    assert!(tries[0].outcome.starts_with("Retry"), "{tries:#?}");
    assert!(
        tries.last().unwrap().outcome.starts_with("Done"),
        "{tries:#?}"
    );
    assert!(
        tries[0].sends > 0 && tries[0].saved > 0,
        "it died half-way: {tries:#?}"
    );

    // Each install went out once (no send repeated under its key), and every run is validated.
    assert_eq!(env.rmm.duplicates(), 0);
    let mut installs: BTreeMap<String, usize> = BTreeMap::new();
    for c in env.rmm.commands() {
        if matches!(c.command, RmmCommand::ScheduleInstall { .. }) {
            *installs
                .entry(c.command.endpoint().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(installs.len(), ENDPOINTS);
    assert!(installs.values().all(|n| *n == 1), "{installs:?}");
    let runs: Vec<(Run, u64)> = records::list(&env.state, cycle(), &records::run_kind(&pilot))
        .await
        .unwrap();
    assert_eq!(runs.len(), ENDPOINTS);
    assert!(runs.iter().all(|(r, _)| r.status == RunStatus::Validated));
}

/// The pilot's runs with their version above 1 (saved since they were made), summed: what a
/// delivery saved is the difference.
async fn saved_runs(state: &SqliteState, tier: &patchflow_core::ports::state::TierId) -> usize {
    state
        .list_docs(cycle(), &records::run_kind(tier))
        .await
        .unwrap()
        .iter()
        .map(|d| d.version as usize - 1)
        .sum()
}
