//! The hourly read of what changed in the RMM goes only to the clients watched in a tier: in a
//! fleet-wide tier whose clients' windows open half a day apart (Kolkata and Los Angeles), the
//! second client's computers are not asked about while only the first client's installs are out,
//! and the cycle ends as it would with every client asked every hour. A client whose daytime
//! workstations wait for their users' reboots is not asked in the night before their first
//! reminder, only in the hours their reports can come.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::Drain;
use chrono::{DateTime, Duration, Timelike, Utc};
use patchflow_connectors::file::{FileCatalog, FileInventory};
use patchflow_core::ids::CycleId;
use patchflow_core::ports::clock::Clock;
use patchflow_core::ports::queue::Envelope;
use patchflow_core::ports::state::{DocStore, TierId, TierStore};
use patchflow_core::rules::commands::RmmCommand;
use patchflow_core::run::{REPORT_GRACE, USER_REBOOT_LISTEN};
use patchflow_core::tier::TierState;
use patchflow_pipeline::batch::handle;
use patchflow_pipeline::messages::{ClientChanges, Message};
use patchflow_pipeline::records::{self, Run, RunStatus};
use patchflow_pipeline::schedule::WAITING_PHASES;

const PER_CLIENT: usize = 6;
const CLIENTS: usize = 3;

fn cycle() -> CycleId {
    "2026-12".parse().unwrap()
}

fn inventory(dir: &Path) -> PathBuf {
    let mut endpoints = Vec::new();
    for (client, prefix, track) in [
        ("banyan", "bn", "regular"),
        ("sequoia", "sq", "regular"),
        ("cedar", "cd", "daytime"),
    ] {
        for i in 0..PER_CLIENT {
            endpoints.push(serde_json::json!({
                "id": format!("{prefix}-ws{i}"),
                "client": client,
                "hostname": format!("{}-WS{i}", prefix.to_uppercase()),
                "kind": "workstation",
                "ring": "pilot",
                "track": track,
            }));
        }
    }
    let doc = serde_json::json!({
        "clients": [
            {"id": "banyan", "name": "Banyan Health", "timezone": "Asia/Kolkata"},
            {"id": "sequoia", "name": "Sequoia Legal", "timezone": "America/Los_Angeles"},
            {"id": "cedar", "name": "Cedar Dental", "timezone": "America/Chicago"},
        ],
        "endpoints": endpoints,
    });
    let path = dir.join("inventory.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

#[tokio::test]
async fn a_clients_changes_are_read_only_while_it_is_watched_in_a_fleet_wide_tier() {
    let dir = tempfile::tempdir().unwrap();
    let crate::support::HandCycle {
        env,
        clock,
        queue_clock,
        consumer,
        spec,
    } = crate::support::hand_cycle(dir.path(), inventory(dir.path()), 5);
    let inv = FileInventory::new(&spec.inventory);
    let catalog = FileCatalog::new(spec.catalog.display().to_string());
    let pilot = TierId::parse("workstations.pilot").unwrap();
    let kind = records::run_kind(&pilot);

    // Each client's changes read, by the hour it was read.
    let mut read: BTreeMap<String, Vec<DateTime<Utc>>> = BTreeMap::new();
    // The hours at which the pilot had a run waiting for a report after the tick: each client
    // would have been asked then, watched or not.
    let mut waiting_hours = 0;
    let mut closed = false;
    for hour in 0..(spec.days * 24) {
        let now = clock.now();
        queue_clock.set(now);
        if hour == 0 || now.hour() == 6 {
            patchflow_pipeline::sync::inventory_sync(&env, &inv, &catalog, now)
                .await
                .unwrap();
        }
        if env
            .state
            .any_doc_in_phase(cycle(), &kind, WAITING_PHASES)
            .await
            .unwrap()
        {
            waiting_hours += 1;
        }
        patchflow_pipeline::tick::tick(&env, now).await.unwrap();
        let mut drain = Drain::default();
        while let Some((stage, d)) = drain.next(&consumer).await {
            let envelope = Envelope::from_body(&d.body).unwrap();
            if envelope.kind == ClientChanges::KIND {
                let msg = ClientChanges::from_envelope(&envelope).unwrap();
                if msg.endpoints.is_empty() {
                    read.entry(msg.client.to_string()).or_default().push(now);
                }
            }
            let outcome = handle(&env, stage, &d.body, now).await;
            drain.settle(&consumer, stage, d, &outcome).await;
        }
        let tiers = env.state.list_tiers(cycle()).await.unwrap();
        if !tiers.is_empty() && tiers.iter().all(|t| t.state == TierState::Closed) {
            closed = true;
            break;
        }
        clock.advance(Duration::hours(1));
    }
    assert!(closed, "every tier closes");
    let runs: Vec<(Run, u64)> = records::list(&env.state, cycle(), &kind).await.unwrap();
    assert_eq!(runs.len(), CLIENTS * PER_CLIENT);
    assert!(runs.iter().all(|(r, _)| r.status == RunStatus::Validated));

    // Each client was asked only once its own first install was out (and its reports came by
    // its changes: it was asked at all).
    for client in ["banyan", "sequoia", "cedar"] {
        let first_install = runs
            .iter()
            .filter(|(r, _)| r.client.as_str() == client)
            .filter_map(|(r, _)| r.install_sent_at)
            .min()
            .expect("an install went out");
        let asked = read.get(client).expect("its changes were read");
        assert!(
            asked.iter().all(|at| *at > first_install),
            "{client} asked at {:?}, before its first install at {first_install}",
            asked.first()
        );
    }
    // The windows are half a day apart: one client's installs were out long before the other's, so
    // watching saved reads against asking every client while the tier had any run out.
    let first = |c: &str| {
        runs.iter()
            .filter(|(r, _)| r.client.as_str() == c)
            .filter_map(|(r, _)| r.install_sent_at)
            .min()
            .unwrap()
    };
    assert!(
        (first("banyan") - first("sequoia")).num_hours().abs() >= 12,
        "{} against {}",
        first("banyan"),
        first("sequoia")
    );
    let asked: usize = read.values().map(Vec::len).sum();
    assert!(
        asked < CLIENTS * waiting_hours,
        "{asked} reads against {} without watches",
        CLIENTS * waiting_hours
    );

    // Cedar's daytime workstations installed by day and waited for their users' reboots: from
    // their installs' deadline (and the hour after it) to their first reminder the next morning
    // nothing could report, and cedar was not asked; it was, the day the reminders came.
    let cedar: Vec<&Run> = runs
        .iter()
        .map(|(r, _)| r)
        .filter(|r| r.client.as_str() == "cedar")
        .collect();
    let deadline = cedar
        .iter()
        .filter_map(|r| {
            r.commands.iter().find_map(|c| match c {
                RmmCommand::ScheduleInstall { window, .. } => Some(window.end + REPORT_GRACE),
                _ => None,
            })
        })
        .max()
        .expect("cedar's installs were scheduled");
    let first_reminder = cedar
        .iter()
        .filter_map(|r| {
            r.commands.iter().find_map(|c| match c {
                RmmCommand::ReminderPopup { first, .. } => Some(*first),
                _ => None,
            })
        })
        .min()
        .expect("cedar's users were reminded to reboot");
    let quiet_from = deadline + Duration::hours(2);
    assert!(
        first_reminder - quiet_from >= Duration::hours(6),
        "a night between {deadline} and {first_reminder}"
    );
    assert!(
        cedar
            .iter()
            .all(|r| r.reboot_confirmed_at.is_some_and(|at| at > first_reminder)),
        "cedar's runs waited for their reboots through the night"
    );
    let asked = &read["cedar"];
    assert!(
        !asked
            .iter()
            .any(|at| *at > quiet_from && *at < first_reminder),
        "cedar asked in the night before its first reminder: {asked:?}"
    );
    assert!(
        asked
            .iter()
            .any(|at| *at > first_reminder && *at <= first_reminder + USER_REBOOT_LISTEN),
        "cedar asked the day of its reminders: {asked:?}"
    );
}
