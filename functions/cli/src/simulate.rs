//! `patchflow simulate`: a whole cycle (sync, approvals, pilot, soak, production, validation,
//! failures, evidence) through the very handlers and queues the Lambda functions use, on a
//! simulated clock, with simulated RMM, PSA and pager, on the embedded default or on AWS.

use std::collections::BTreeMap;
use std::fs;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, Timelike, Utc};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use indicatif::{ProgressBar, ProgressStyle};
use patchflow_connectors::file::{FileCatalog, FileInventory};
use patchflow_core::ids::CycleId;
use patchflow_core::plan::Release;
use patchflow_core::policy::Policy;
use patchflow_core::ports::clock::{Clock, ManualClock};
use patchflow_core::ports::evidence::EvidenceStore;
use patchflow_core::ports::queue::{QueueConsumer, QueueSender, Stage};
use patchflow_core::ports::state::StateStore;
use patchflow_core::rules::failure::RootCause;
use patchflow_core::rules::outcome::Category;
use patchflow_core::tier::TierState;
use patchflow_local::StoreWork;
use patchflow_pipeline::operator::{approve_endpoint, record_root_cause, sign};
use patchflow_pipeline::pump::{drain_all_probed, Peak, PumpOptions, PumpStats, Work};
use patchflow_pipeline::records::{self, run_kind, Run, RunStatus};
use patchflow_pipeline::summary::{summarize, Summary};
use patchflow_pipeline::{Env, Settings};
use patchflow_sim::connectors::{Outcomes, SimPager, SimPsa, SimRmm};
use serde::Serialize;

use crate::CliError;

/// What the simulated RMM's approval policy saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RmmApprovals {
    /// Approval writes taken (one per patch, client, shard and decision).
    pub writes: usize,
    /// Approval writes repeated under a key already taken (nothing changed).
    pub duplicate_writes: usize,
    /// Install commands that named a patch the client's policy denies or holds.
    pub declined_requested: usize,
    /// Patches deployed that the client's policy denies or holds: must be 0.
    pub declined_deployed: usize,
}

/// What a simulation is asked to do.
#[derive(Debug, Clone)]
pub struct SimulateSpec {
    /// Inventory file (JSON or CSV).
    pub inventory: PathBuf,
    /// Catalog file.
    pub catalog: PathBuf,
    /// The cycle.
    pub cycle: CycleId,
    /// Share of first installs that fail.
    pub failure_rate: f64,
    /// Seed of the simulated outcomes.
    pub seed: u64,
    /// Where state, evidence and the report go.
    pub out: PathBuf,
    /// The policy.
    pub policy: Policy,
    /// How long the simulated engineer takes to document a root cause or approve a critical
    /// server.
    pub engineer_response: Duration,
    /// The longest the cycle may run.
    pub days: i64,
    /// Deliver every message twice.
    pub deliver_twice: bool,
}

/// What a simulation did.
#[derive(Debug, Clone, Serialize)]
pub struct SimulateReport {
    /// The cycle's state per client and tier.
    pub summary: Summary,
    /// Queue traffic.
    pub pump: PumpStats,
    /// Messages in dead-letter queues, by stage.
    pub dead_letters: BTreeMap<String, usize>,
    /// RMM commands taken.
    pub rmm_commands: usize,
    /// Duplicate sends refused by key.
    pub duplicate_commands: usize,
    /// The approval policy in the simulated RMM.
    pub rmm_approvals: RmmApprovals,
    /// PSA tickets (failures, overdue reviews, compliance records).
    pub psa_tickets: usize,
    /// The simulated RMM's port calls, by method (the inventory and its patch scans come from
    /// files in a simulation, so the sync's bulk reads are not among them).
    pub rmm_calls: BTreeMap<String, u64>,
    /// Pages.
    pub pages: usize,
    /// Simulated hours.
    pub hours: i64,
    /// Whether every tier closed.
    pub all_closed: bool,
    /// When the simulation ended (simulated).
    #[serde(with = "patchflow_core::schedule::utc")]
    pub ended_at: DateTime<Utc>,
    /// Where the evidence is.
    pub evidence: String,
}

fn svc(e: impl std::fmt::Display) -> CliError {
    CliError::Service(e.to_string())
}

/// Checks the output folder is new or empty: a simulation starts from a fresh state.
pub fn fresh_dir(out: &Path) -> Result<(), CliError> {
    if out.exists() {
        let mut entries = fs::read_dir(out)
            .map_err(|e| CliError::Input(format!("{}: cannot read: {e}", out.display())))?;
        if entries.next().is_some() {
            return Err(CliError::Input(format!(
                "{}: not empty; a simulation writes a fresh state there: choose a new --out or \
                 remove it (evidence files are read-only: chmod -R u+w first)",
                out.display()
            )));
        }
    }
    fs::create_dir_all(out)
        .map_err(|e| CliError::Output(format!("{}: cannot create: {e}", out.display())))
}

/// The environment of a simulated cycle: the simulated RMM, PSA and pager on a manual clock.
pub type SimEnv<S, Q, E> = Env<S, Q, E, SimRmm<ManualClock>, SimPsa, SimPager>;

/// Builds the simulation's environment over given state, queue and evidence adapters.
pub fn sim_env<S, Q, E>(
    state: S,
    queues: Q,
    evidence: E,
    clock: Arc<ManualClock>,
    spec: &SimulateSpec,
) -> SimEnv<S, Q, E> {
    Env {
        state,
        queues,
        evidence,
        rmm: SimRmm::new(
            Outcomes {
                seed: spec.seed,
                failure_rate: spec.failure_rate,
            },
            clock,
        ),
        psa: SimPsa::default(),
        pager: SimPager::default(),
        policy: spec.policy.clone(),
        settings: Settings::default(),
    }
}

/// The simulated engineer: documents root causes and approves critical servers once they have
/// waited `response`.
pub async fn engineer<S: StateStore, Q: QueueSender>(
    state: &S,
    queues: &Q,
    cycle: CycleId,
    now: DateTime<Utc>,
    response: Duration,
) -> Result<usize, CliError> {
    let mut acted = 0;
    for f in state.list_failures(cycle).await.map_err(svc)? {
        if f.root_cause.is_none() && f.ticket.is_some() && now - f.failed_at >= response {
            let rc = RootCause {
                text: format!(
                    "Simulated engineer: {} on {} investigated; cause cleared for retry.",
                    f.stage.as_str(),
                    f.endpoint
                ),
                engineer: "sim-engineer".into(),
                recorded_at: now,
            };
            record_root_cause(state, queues, cycle, &f.id, rc, now)
                .await
                .map_err(svc)?;
            acted += 1;
        }
    }
    // A run awaits an engineer only in a tier under way (deploying, or held with it): one
    // index read per such tier and hour, and the tier read only while a run of it awaits.
    for record in state.list_tiers(cycle).await.map_err(svc)? {
        if !matches!(
            record.state,
            TierState::Deploying | TierState::Held | TierState::Blocked
        ) {
            continue;
        }
        let kind = run_kind(&record.tier);
        if !state
            .any_doc_in_phase(cycle, &kind, &[records::PHASE_AWAITING])
            .await
            .map_err(svc)?
        {
            continue;
        }
        let runs: Vec<(Run, u64)> = records::list(state, cycle, &kind).await.map_err(svc)?;
        for (run, _) in runs {
            if run.status == RunStatus::AwaitingApproval && run.engineer_approval.is_none() {
                let sign_off =
                    sign("sim-engineer", "critical_server_reviewed", now).map_err(svc)?;
                approve_endpoint(state, queues, cycle, &run.endpoint, sign_off)
                    .await
                    .map_err(svc)?;
                acted += 1;
            }
        }
    }
    Ok(acted)
}

/// Runs a simulation over the given adapters; `consumer` reads the queues `env.queues` sends to.
pub async fn run_cycle<S, Q, E, C>(
    env: &SimEnv<S, Q, E>,
    consumer: &C,
    clock: &ManualClock,
    spec: &SimulateSpec,
    evidence_where: String,
) -> Result<SimulateReport, CliError>
where
    S: StateStore,
    Q: QueueSender,
    E: EvidenceStore,
    C: QueueConsumer,
{
    run_cycle_measured(
        env,
        consumer,
        clock,
        spec,
        evidence_where,
        &StoreWork::default,
    )
    .await
}

/// [`run_cycle`], with `state_work` telling the state store's requests and records read so far
/// (the SQLite store counts them), so that the report names the largest single invocation.
pub async fn run_cycle_measured<S, Q, E, C>(
    env: &SimEnv<S, Q, E>,
    consumer: &C,
    clock: &ManualClock,
    spec: &SimulateSpec,
    evidence_where: String,
    state_work: &(dyn Fn() -> StoreWork + Sync),
) -> Result<SimulateReport, CliError>
where
    S: StateStore,
    Q: QueueSender,
    E: EvidenceStore,
    C: QueueConsumer,
{
    let probe = || {
        let w = state_work();
        Work {
            state_requests: w.requests,
            records_read: w.rows,
            rmm_calls: env.rmm.calls().values().sum(),
        }
    };
    let release = Release::of(spec.cycle, &spec.policy, None);
    // Start on the hour of the release (the Patch Tuesday schedule), then hour by hour.
    let start =
        release.released_at + Duration::minutes(i64::from(60 - release.released_at.minute()) % 60);
    clock.set(start);
    let inventory = FileInventory::new(&spec.inventory);
    let catalog = FileCatalog::new(spec.catalog.display().to_string());
    let opts = PumpOptions {
        deliver_twice: spec.deliver_twice,
        ..PumpOptions::default()
    };
    let hours = spec.days * 24;
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(hours as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg:40} [{bar:30}] day {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut pump = PumpStats::default();
    let mut all_closed = false;
    let mut hour = 0;
    while hour <= hours {
        let now = clock.now();
        // The daily inventory sync (writes only what changed), and on Patch Tuesday the opening.
        if hour == 0 || now.hour() == 6 {
            patchflow_pipeline::sync::inventory_sync(env, &inventory, &catalog, now)
                .await
                .map_err(|e| match e {
                    patchflow_pipeline::HandlerError::Poison(m) => CliError::Input(m),
                    other => svc(other),
                })?;
        }
        patchflow_pipeline::tick::tick(env, now)
            .await
            .map_err(svc)?;
        let stats = drain_all_probed(env, consumer, now, opts, &probe)
            .await
            .map_err(svc)?;
        pump.add(stats);
        let acted = engineer(
            &env.state,
            &env.queues,
            spec.cycle,
            now,
            spec.engineer_response,
        )
        .await?;
        if acted > 0 {
            let stats = drain_all_probed(env, consumer, now, opts, &probe)
                .await
                .map_err(svc)?;
            pump.add(stats);
        }

        let tiers = env.state.list_tiers(spec.cycle).await.map_err(svc)?;
        let closed = tiers
            .iter()
            .filter(|t| t.state == TierState::Closed)
            .count();
        bar.set_position((hour / 24) as u64);
        bar.set_length((hours / 24) as u64);
        bar.set_message(format!(
            "{} {} tiers closed {closed}/{}",
            spec.cycle,
            now.format("%b %d %H:00Z"),
            tiers.len()
        ));
        if !tiers.is_empty() && closed == tiers.len() {
            all_closed = true;
            break;
        }
        clock.advance(Duration::hours(1));
        hour += 1;
    }
    bar.finish_and_clear();
    let summary = summarize(&env.state, spec.cycle).await.map_err(svc)?;
    let mut dead_letters = BTreeMap::new();
    for stage in Stage::ALL {
        let n = consumer.dead_letters(stage).await.map_err(svc)?.len();
        if n > 0 {
            dead_letters.insert(stage.to_string(), n);
        }
    }
    Ok(SimulateReport {
        summary,
        pump,
        dead_letters,
        rmm_commands: env.rmm.commands().len(),
        duplicate_commands: env.rmm.duplicates(),
        rmm_approvals: RmmApprovals {
            writes: env.rmm.approval_writes(),
            duplicate_writes: env.rmm.approval_duplicates(),
            declined_requested: env.rmm.declined_requested(),
            declined_deployed: env.rmm.declined_deployed(),
        },
        psa_tickets: env.psa.tickets().len(),
        rmm_calls: env
            .rmm
            .calls()
            .into_iter()
            .map(|(m, n)| (m.to_owned(), n))
            .collect(),
        pages: env.pager.pages().len(),
        hours: hour.min(hours),
        all_closed,
        ended_at: clock.now(),
        evidence: evidence_where,
    })
}

/// Writes what the simulated systems saw, for inspection.
pub fn write_sim_records<S, Q, E>(env: &SimEnv<S, Q, E>, out: &Path) -> Result<(), CliError> {
    let write = |name: &str, value: serde_json::Value| {
        let path = out.join(name);
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        fs::write(&path, text + "\n")
            .map_err(|e| CliError::Output(format!("{}: cannot write: {e}", path.display())))
    };
    write("rmm-commands.json", serde_json::json!(env.rmm.commands()))?;
    write("psa-tickets.json", serde_json::json!(env.psa.tickets()))?;
    write(
        "psa-attachments.json",
        serde_json::json!({
            "documents": env.psa.attachments(),
            "repeats": env.psa.attachment_duplicates(),
        }),
    )?;
    write(
        "rmm-closures.json",
        serde_json::json!({
            "closures": env.rmm.closures(),
            "repeats": env.rmm.closure_duplicates(),
        }),
    )?;
    write("pages.json", serde_json::json!(env.pager.pages()))?;
    Ok(())
}

/// A tier as the client's row shows it: `servers.contoso.pilot` is `servers pilot` there, and a
/// later batch's `servers.contoso.pilot.b2` is `servers pilot b2`.
fn short_tier(tier: &str) -> String {
    let (base, batch) = match tier.rsplit_once('.') {
        Some((base, last))
            if last.len() > 1
                && last.starts_with('b')
                && last[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            (base, Some(last))
        }
        _ => (tier, None),
    };
    let short = match (base.split('.').next(), base.rsplit('.').next()) {
        (Some(kind), Some(wave)) if base.contains('.') => format!("{kind} {wave}"),
        _ => base.to_owned(),
    };
    match batch {
        Some(b) => format!("{short} {b}"),
        None => short,
    }
}

/// The cycle's update batches: each one's patches, state and tiers (nothing before the first
/// deployment).
pub fn render_batches(
    out: &mut dyn Write,
    batches: &[patchflow_pipeline::batches::BatchStatus],
) -> std::io::Result<()> {
    if batches.is_empty() {
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(["batch", "patches", "state", "tiers"]);
    for b in batches {
        t.add_row(vec![
            Cell::new(b.batch).set_alignment(CellAlignment::Right),
            Cell::new(b.patches.join("\n")),
            Cell::new(&b.state),
            Cell::new(if b.batch == 1 {
                "the cycle's tiers".to_owned()
            } else {
                b.tiers.join("\n")
            }),
        ]);
    }
    writeln!(
        out,
        "Update batches (each through its pilot and soak before production):"
    )?;
    writeln!(out, "{t}")
}

/// The per-client, per-tier table.
pub fn render_table(out: &mut dyn Write, r: &SimulateReport) -> std::io::Result<()> {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["client", "tier", "state"];
    header.extend(Category::ALL.iter().map(|c| c.label()));
    header.extend(["tickets", "pages", "evidence"]);
    t.set_header(header);
    let num = |n: usize| Cell::new(n).set_alignment(CellAlignment::Right);
    let mut rows = r.summary.rows.clone();
    rows.push(r.summary.total());
    for row in &rows {
        let mut cells = vec![
            Cell::new(&row.client),
            Cell::new(short_tier(&row.tier)),
            Cell::new(&row.state),
        ];
        cells.extend(Category::ALL.iter().map(|c| num(row.get(*c))));
        cells.extend([num(row.tickets), num(row.pages), num(row.evidence)]);
        t.add_row(cells);
    }
    writeln!(out, "{t}")?;
    // Each open tier's last decision: a promotion's wait, or the closure requirement that
    // failed and is retried on the next tick.
    let mut seen = std::collections::BTreeSet::new();
    for row in r.summary.rows.iter().filter(|r| !r.decision.is_empty()) {
        if seen.insert(&row.tier) {
            writeln!(out, "{} ({}): {}", row.tier, row.state, row.decision)?;
        }
    }
    Ok(())
}

/// The report for people.
pub fn render(out: &mut dyn Write, r: &SimulateReport) -> std::io::Result<()> {
    let cycle = r
        .summary
        .cycle
        .map(|c| c.to_string())
        .unwrap_or_else(|| "-".into());
    writeln!(
        out,
        "Cycle {cycle}: simulated {} hour(s), until {}",
        r.hours,
        r.ended_at.format("%Y-%m-%d %H:%M UTC")
    )?;
    render_table(out, r)?;
    writeln!(
        out,
        "{}",
        if r.all_closed {
            "Every tier closed with its evidence.".to_owned()
        } else {
            "Not every tier closed in the simulated time: see the held and in-progress columns."
                .to_owned()
        }
    )?;
    writeln!(
        out,
        "RMM commands: {} ({} duplicate send(s) refused by key). PSA tickets: {}. Pages: {}.",
        r.rmm_commands, r.duplicate_commands, r.psa_tickets, r.pages
    )?;
    let in_scope: usize = {
        let t = r.summary.total();
        Category::ALL
            .iter()
            .filter(|c| **c != Category::Excluded)
            .map(|c| t.get(*c))
            .sum()
    };
    if in_scope > 0 {
        // The pilot's daily soak health reads are per pilot endpoint per day, set aside.
        let soak = r.rmm_calls.get("health").copied().unwrap_or(0);
        let all: u64 = r.rmm_calls.values().sum();
        let by: Vec<String> = r
            .rmm_calls
            .iter()
            .map(|(m, n)| format!("{m} {n}"))
            .collect();
        writeln!(
            out,
            "RMM calls: {all} ({:.2} per in-scope endpoint, the soak's {soak} health read(s) aside): {}.",
            (all - soak) as f64 / in_scope as f64,
            by.join(", ")
        )?;
    }
    let l = &r.pump.largest;
    if let Some(stage) = l.records_read.stage {
        let at = |p: &Peak| p.stage.map(|s| s.as_str()).unwrap_or("-");
        writeln!(
            out,
            "Largest invocation: {} state record(s) read ({}), {} state request(s) ({}), \
             {} RMM call(s) ({}).",
            l.records_read.value,
            stage.as_str(),
            l.state_requests.value,
            at(&l.state_requests),
            l.rmm_calls.value,
            at(&l.rmm_calls),
        )?;
    }
    if r.rmm_approvals.writes > 0 {
        writeln!(
            out,
            "RMM approval policy: {} write(s), each read back ({} repeat(s) changed nothing); \
             declined or held patches deployed: {}.",
            r.rmm_approvals.writes,
            r.rmm_approvals.duplicate_writes,
            r.rmm_approvals.declined_deployed
        )?;
    }
    writeln!(
        out,
        "Messages: {} delivered, {} handed back for retry, {} dead-lettered{}.",
        r.pump.received,
        r.pump.retried,
        r.pump.dead_lettered,
        if r.dead_letters.is_empty() {
            String::new()
        } else {
            format!(" (in DLQs: {:?})", r.dead_letters)
        }
    )?;
    writeln!(out, "Evidence: {}", r.evidence)
}
