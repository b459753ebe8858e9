//! `make bench` (part): what evidence-archiver spends per client of a closed tier: the PNG
//! summary, the HTML report, the CSVs and the JSON record of a tier of 500 endpoints and 12
//! patches (6,000 flaws).
//!
//! Run with `cargo bench -p patchflow-evidence --bench render`. Environment:
//! PATCHFLOW_BENCH_ENDPOINTS (default 500), PATCHFLOW_BENCH_RUNS (default 9).

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use patchflow_core::policy::Policy;
use patchflow_core::rules::sla::{Flaw, FlawEvents};
use patchflow_evidence::record::{ApprovalLine, EndpointOutcome, SlaSection, TierRecord, SCHEMA};
use patchflow_evidence::{csv, html, png};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(runs: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut size = f();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            size = black_box(f());
            t.elapsed()
        })
        .collect();
    times.sort();
    (times[times.len() / 2], size)
}

fn record(endpoints: usize) -> TierRecord {
    let released = Utc.with_ymd_and_hms(2026, 12, 8, 18, 0, 0).unwrap();
    let opened = released + chrono::Duration::minutes(30);
    let patches: Vec<String> = (0..12).map(|i| format!("KB50710{i:02}")).collect();
    let outcomes: Vec<EndpointOutcome> = (0..endpoints)
        .map(|i| {
            let installed = opened + chrono::Duration::hours(30 + (i % 48) as i64);
            EndpointOutcome {
                endpoint: format!("ep-{i:05}"),
                hostname: format!("HOST-{i:05}"),
                status: "validated".into(),
                attempts: 1 + (i % 7 == 0) as u32,
                installed_at: Some(installed),
                reboot_confirmed_at: Some(installed + chrono::Duration::hours(2)),
                reminders: (i % 3) as u32,
                forced_reboot: i % 11 == 0,
                validated_at: Some(installed + chrono::Duration::hours(3)),
                failures: if i % 7 == 0 {
                    vec![format!("ep-{i:05}.install.0")]
                } else {
                    vec![]
                },
                applicability: "reported".into(),
            }
        })
        .collect();
    let flaws: Vec<Flaw> = outcomes
        .iter()
        .flat_map(|o| {
            patches.iter().enumerate().map(move |(p, id)| Flaw {
                client: "contoso".into(),
                endpoint: o.endpoint.clone(),
                patch: id.clone(),
                severity: None,
                released,
                events: FlawEvents {
                    identified: Some(opened),
                    reported: Some(opened + chrono::Duration::minutes(1)),
                    corrected: (p % 4 != 0).then_some(o.installed_at).flatten(),
                },
                applicability: "reported".into(),
                auto_approved: p % 2 == 0,
            })
        })
        .collect();
    let as_of = released + chrono::Duration::days(9);
    TierRecord {
        schema: SCHEMA,
        cycle: "2026-12".parse().expect("a cycle"),
        client: "contoso".into(),
        tier: "workstations.production".into(),
        kind: "workstation".into(),
        wave: "production".into(),
        released_at: released,
        opened_at: opened,
        validated_at: as_of,
        outcomes,
        excluded: vec![],
        approvals: patches
            .iter()
            .map(|p| ApprovalLine {
                patch: p.clone(),
                title: format!("{p} cumulative update"),
                severity: Some("important".into()),
                decision: "auto_approved".into(),
                reason: "microsoft_security_auto_approve".into(),
                node: "auto_approve".into(),
                recorded_at: Some(opened),
                engineer: None,
                reason_code: None,
                signed_at: None,
            })
            .collect(),
        exceptions: vec![],
        tickets: vec![],
        sla: SlaSection::judge(
            &Policy::default().sla,
            Policy::default().approval.time_to_patch_target,
            &flaws,
            as_of,
        ),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this too, without it, as a
    // smoke test on a small tier so the bench keeps compiling and working.
    let measuring = std::env::args().any(|a| a == "--bench");
    let (default_endpoints, default_runs) = if measuring { (500, 9) } else { (20, 1) };
    let endpoints = env("PATCHFLOW_BENCH_ENDPOINTS", default_endpoints);
    let runs = env("PATCHFLOW_BENCH_RUNS", default_runs).max(1);
    let r = record(endpoints);
    println!(
        "evidence of one client's tier: {endpoints} endpoints, {} flaws, median of {runs} runs",
        r.sla.flaws.len()
    );
    let summary = r.summary();
    let image = png::render(&summary).expect("render the summary");
    let report = |name: &str, (t, size): (Duration, usize)| {
        println!(
            "  {name:<24} {:>8.1} ms  {:>9} bytes",
            t.as_secs_f64() * 1e3,
            size
        );
    };
    report(
        "summary.png",
        median(runs, || png::render(&summary).map_or(0, |b| b.len())),
    );
    report(
        "report.html",
        median(runs, || html::tier_report(&r, &image).len()),
    );
    report(
        "record.json",
        median(runs, || {
            serde_json::to_vec_pretty(&r).map_or(0, |b| b.len())
        }),
    );
    report(
        "outcomes.csv + sla.csv",
        median(runs, || {
            csv::outcomes(&r).map_or(0, |c| c.len()) + csv::flaws(&r.sla).map_or(0, |c| c.len())
        }),
    );
}
