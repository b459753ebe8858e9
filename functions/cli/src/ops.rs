//! The operator's commands on a running cycle (approve, decline, failure root-cause, status) and
//! `simulate`, on either backend: the embedded default in a local folder, or the AWS adapters
//! under the configured names. With no AWS configuration (`PATCHFLOW_STATE_TABLE` unset) the
//! embedded default is used.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use clap::{Args, Subcommand, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use patchflow_aws::config as aws;
use patchflow_aws::dynamodb::DynamoState;
use patchflow_aws::s3::S3EvidenceStore;
use patchflow_aws::sqs::SqsQueues;
use patchflow_core::ids::{CycleId, EndpointId, PatchId};
use patchflow_core::ports::clock::{Clock, ManualClock};
use patchflow_core::ports::queue::QueueSender;
use patchflow_core::ports::state::StateStore;
use patchflow_core::rules::approval::EngineerDecision;
use patchflow_core::rules::failure::RootCause;
use patchflow_local::clock::SystemClock;
use patchflow_local::evidence::FsEvidenceStore;
use patchflow_local::queue::SqliteQueues;
use patchflow_local::state::SqliteState;
use patchflow_pipeline::operator::{self, ActionError};

use crate::simulate::{self, SimulateSpec};
use crate::{finish, load_policy, CliError};

/// Where the state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// The embedded default: SQLite state and queues, evidence files, in a local folder.
    Local,
    /// DynamoDB, SQS and S3 under the configured names (PATCHFLOW_STATE_TABLE,
    /// PATCHFLOW_QUEUE_PREFIX, PATCHFLOW_EVIDENCE_BUCKET), at AWS_ENDPOINT_URL if set.
    Aws,
}

/// The backend in force: the one asked for, else AWS when it is configured, else local.
fn backend(asked: Option<Backend>) -> Backend {
    asked.unwrap_or_else(|| {
        if std::env::var_os(aws::STATE_TABLE).is_some_and(|v| !v.is_empty()) {
            Backend::Aws
        } else {
            Backend::Local
        }
    })
}

/// Where to find the state.
#[derive(Debug, Args, Clone)]
pub struct StateArgs {
    /// The backend [default: aws when PATCHFLOW_STATE_TABLE is set, else local].
    #[arg(long, value_enum, env = "PATCHFLOW_BACKEND")]
    pub backend: Option<Backend>,
    /// The local state folder (the `--out` of `simulate`).
    #[arg(
        long,
        value_name = "DIR",
        env = "PATCHFLOW_STATE_DIR",
        default_value = "patchflow-state"
    )]
    pub state: PathBuf,
}

/// `patchflow simulate` arguments.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Inventory: the contract's JSON, or CSV with the same fields.
    #[arg(long, value_name = "FILE")]
    pub inventory: PathBuf,
    /// Catalog JSON (the month's patches).
    #[arg(long, value_name = "FILE")]
    pub catalog: PathBuf,
    /// The cycle, YYYY-MM; the simulation starts at its release (Patch Tuesday, 10:00
    /// America/Los_Angeles).
    #[arg(long, value_name = "YYYY-MM")]
    pub cycle: CycleId,
    /// Share of first installs that fail (post-reboot checks fail at half this, sleeping
    /// endpoints at a third; a retry fails at a quarter).
    #[arg(long, default_value_t = 0.05, value_parser = parse_rate)]
    pub failure_rate: f64,
    /// Seed: the same inputs and seed give the same cycle.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Folder for the local state, the evidence (`DIR/evidence`) and the report; must be new or
    /// empty.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The backend [default: aws when PATCHFLOW_STATE_TABLE is set, else local]. On aws, run
    /// `patchflow aws bootstrap` first; the report still goes to --out.
    #[arg(long, value_enum, env = "PATCHFLOW_BACKEND")]
    pub backend: Option<Backend>,
    /// Policy file (TOML) overriding the seed's defaults.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Hours the simulated engineer takes to document a root cause or approve a critical
    /// server.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=720))]
    pub engineer_response_hours: u32,
    /// The longest the cycle may run, in days.
    #[arg(long, default_value_t = 45, value_parser = clap::value_parser!(u32).range(1..=120))]
    pub days: u32,
    /// Deliver every message twice (at-least-once delivery at its worst); the outcome must not
    /// change.
    #[arg(long)]
    pub deliver_twice: bool,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{s}` is not a rate between 0 and 1 (e.g. 0.05)")),
    }
}

/// `patchflow approve|decline` arguments.
#[derive(Debug, Args)]
pub struct DecisionArgs {
    /// The patch (KB id) — or, with --endpoint, nothing.
    #[arg(required_unless_present = "endpoint", conflicts_with = "endpoint")]
    pub patch: Option<String>,
    /// Approve a critical server's install instead of a patch.
    #[arg(long, value_name = "ID")]
    pub endpoint: Option<String>,
    /// Who decides.
    #[arg(long)]
    pub engineer: String,
    /// Why, as a short code (a-z, 0-9 and _, e.g. cab_approved, vendor_known_issue).
    #[arg(long)]
    pub reason_code: String,
    /// The cycle [default: this month's].
    #[arg(long, value_name = "YYYY-MM")]
    pub cycle: Option<CycleId>,
    /// Where the state is.
    #[command(flatten)]
    pub state: StateArgs,
}

/// `patchflow failure` subcommands.
#[derive(Debug, Subcommand)]
pub enum FailureCommand {
    /// A cycle's failures with their tickets and root causes.
    List {
        /// The cycle [default: this month's].
        #[arg(long, value_name = "YYYY-MM")]
        cycle: Option<CycleId>,
        /// Where the state is.
        #[command(flatten)]
        state: StateArgs,
    },
    /// Document a failure's root cause; when every open failure of its tier has one, the tier
    /// leaves its hold and the failed endpoints retry in their next window.
    RootCause {
        /// The failure id (as its ticket and `failure list` show it).
        id: String,
        /// The root cause.
        #[arg(long)]
        text: String,
        /// Who documents it.
        #[arg(long)]
        engineer: String,
        /// The cycle [default: this month's].
        #[arg(long, value_name = "YYYY-MM")]
        cycle: Option<CycleId>,
        /// Where the state is.
        #[command(flatten)]
        state: StateArgs,
    },
}

/// `patchflow status` arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The cycle [default: this month's].
    #[arg(long, value_name = "YYYY-MM")]
    pub cycle: Option<CycleId>,
    /// As JSON.
    #[arg(long)]
    pub json: bool,
    /// Where the state is.
    #[command(flatten)]
    pub state: StateArgs,
}

/// A runtime for one command's calls.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Service(format!("cannot start the async runtime: {e}")))
}

fn svc(e: impl std::fmt::Display) -> CliError {
    CliError::Service(e.to_string())
}

fn action(e: ActionError) -> CliError {
    match e {
        ActionError::NotFound(m) | ActionError::Refused(m) => CliError::Input(m),
        other => CliError::Service(other.to_string()),
    }
}

fn this_cycle(cycle: Option<CycleId>) -> Result<CycleId, CliError> {
    match cycle {
        Some(c) => Ok(c),
        None => CycleId::containing(Utc::now().date_naive()).map_err(svc),
    }
}

/// The local adapters in a folder.
fn local(
    dir: &Path,
    clock: Arc<dyn Clock>,
) -> Result<(SqliteState, SqliteQueues, FsEvidenceStore), CliError> {
    let err = |e: patchflow_core::ports::PortError| {
        CliError::Service(format!(
            "{}: {}",
            dir.display(),
            patchflow_pipeline::error::error_chain(&e)
        ))
    };
    Ok((
        SqliteState::open(&dir.join("state.db")).map_err(err)?,
        SqliteQueues::open(&dir.join("queues.db"), clock, 5).map_err(err)?,
        // Keys are `evidence/{cycle}/...`: rooted at DIR, the bundles land in DIR/evidence.
        FsEvidenceStore::open(dir.to_path_buf()).map_err(err)?,
    ))
}

fn need(name: &'static str) -> Result<String, CliError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| CliError::Input(format!("the aws backend needs {name} set")))
}

/// The AWS adapters under the configured names.
async fn aws_adapters() -> Result<(DynamoState, SqsQueues, S3EvidenceStore), CliError> {
    let table = need(aws::STATE_TABLE)?;
    let bucket = need(aws::EVIDENCE_BUCKET)?;
    let prefix = std::env::var(aws::QUEUE_PREFIX)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "patchflow".into());
    let sdk = aws::sdk_config().await;
    let queues = SqsQueues::lookup(aws::sqs_client(&sdk), &prefix)
        .await
        .map_err(|e| svc(patchflow_pipeline::error::error_chain(&e)))?;
    let s3 = aws::s3_client(&sdk).map_err(|e| CliError::Input(e.to_string()))?;
    Ok((
        DynamoState::new(aws::dynamodb_client(&sdk), table),
        queues,
        S3EvidenceStore::new(s3, bucket),
    ))
}

/// Runs `f` with the state store and queue sender of the backend in force.
macro_rules! with_state {
    ($args:expr, |$state:ident, $queues:ident| $body:expr) => {{
        let args: &StateArgs = $args;
        let rt = runtime()?;
        rt.block_on(async {
            match backend(args.backend) {
                Backend::Local => {
                    if !args.state.join("state.db").exists() {
                        return Err(CliError::Input(format!(
                            "{}: no patchflow state here (give --state DIR, the --out of a simulation)",
                            args.state.display()
                        )));
                    }
                    let ($state, $queues, _) = local(&args.state, Arc::new(SystemClock))?;
                    $body.await
                }
                Backend::Aws => {
                    let ($state, $queues, _) = aws_adapters().await?;
                    $body.await
                }
            }
        })
    }};
}

async fn decide_with<S: StateStore, Q: QueueSender>(
    state: &S,
    queues: &Q,
    args: &DecisionArgs,
    approve: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let cycle = this_cycle(args.cycle)?;
    let now = Utc::now();
    let sign_off = operator::sign(&args.engineer, &args.reason_code, now).map_err(action)?;
    if let Some(endpoint) = &args.endpoint {
        if !approve {
            return Err(CliError::Input(
                "a critical server is approved, not declined: to leave it out, mark it do-not-patch in the RMM".into(),
            ));
        }
        let id = EndpointId::parse(endpoint.as_str())
            .map_err(|e| CliError::Input(format!("--endpoint: {e}")))?;
        operator::approve_endpoint(state, queues, cycle, &id, sign_off)
            .await
            .map_err(action)?;
        return finish(writeln!(
            out,
            "{id}: install approved by {} ({})",
            args.engineer, args.reason_code
        ));
    }
    let raw = args.patch.as_deref().unwrap_or_default();
    let patch = PatchId::parse(raw).map_err(|e| CliError::Input(format!("patch: {e}")))?;
    let decision = if approve {
        EngineerDecision::Approve(sign_off)
    } else {
        EngineerDecision::Decline(sign_off)
    };
    let stored = operator::decide_patch_in_batch(state, queues, cycle, &patch, decision)
        .await
        .map_err(action)?;
    let then = if stored.decision.deploys() && stored.batch.is_none() {
        "a tier has deployed, so it is a later update batch: its pilots install it first and \
         production only after their soak; its approval is written into the RMM's policy as \
         each of the batch's tiers deploys"
    } else {
        "queued for the RMM's approval policy"
    };
    finish(writeln!(
        out,
        "{patch} in {cycle}: {} by {} ({}); {then}",
        stored.decision.as_str(),
        args.engineer,
        args.reason_code
    ))
}

/// `patchflow approve|decline`.
pub fn decide(args: &DecisionArgs, approve: bool, out: &mut dyn Write) -> Result<(), CliError> {
    with_state!(&args.state, |state, queues| decide_with(
        &state, &queues, args, approve, out
    ))
}

async fn failure_with<S: StateStore, Q: QueueSender>(
    state: &S,
    queues: &Q,
    cmd: &FailureCommand,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match cmd {
        FailureCommand::List { cycle, .. } => {
            let cycle = this_cycle(*cycle)?;
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED);
            t.set_header([
                "failure",
                "tier",
                "priority",
                "paged",
                "ticket",
                "failed at",
                "next retry",
                "root cause",
            ]);
            for f in state.list_failures(cycle).await.map_err(svc)? {
                t.add_row(vec![
                    f.id.clone(),
                    f.tier.to_string(),
                    f.priority.as_str().to_uppercase(),
                    if f.paged { "yes".into() } else { "no".into() },
                    f.ticket.clone().unwrap_or_else(|| "-".into()),
                    f.failed_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                    f.next_retry.start.format("%Y-%m-%d %H:%M UTC").to_string(),
                    f.root_cause
                        .as_ref()
                        .map(|r| r.text.clone())
                        .unwrap_or_else(|| "(needed before retry)".into()),
                ]);
            }
            finish(writeln!(out, "{t}"))
        }
        FailureCommand::RootCause {
            id,
            text,
            engineer,
            cycle,
            ..
        } => {
            let cycle = this_cycle(*cycle)?;
            let now: DateTime<Utc> = Utc::now();
            let rc = RootCause {
                text: text.clone(),
                engineer: engineer.clone(),
                recorded_at: now,
            };
            let done = operator::record_root_cause(state, queues, cycle, id, rc, now)
                .await
                .map_err(action)?;
            let line = if done.released {
                format!("{id}: root cause recorded; the tier is released and its failed endpoints retry in their next window")
            } else {
                format!(
                    "{id}: root cause recorded; the tier stays held until these have one too: {}{}",
                    done.waiting.join(", "),
                    if done.more_waiting {
                        " (and maybe more: `patchflow failure list` has them all)"
                    } else {
                        ""
                    }
                )
            };
            finish(writeln!(out, "{line}"))
        }
    }
}

/// `patchflow failure ...`.
pub fn failure(cmd: &FailureCommand, out: &mut dyn Write) -> Result<(), CliError> {
    let state_args = match cmd {
        FailureCommand::List { state, .. } | FailureCommand::RootCause { state, .. } => state,
    };
    with_state!(state_args, |state, queues| failure_with(
        &state, &queues, cmd, out
    ))
}

async fn status_with<S: StateStore, Q: QueueSender>(
    state: &S,
    _queues: &Q,
    args: &StatusArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let cycle = this_cycle(args.cycle)?;
    let summary = patchflow_pipeline::summary::summarize(state, cycle)
        .await
        .map_err(svc)?;
    if summary.cycle.is_none() {
        return Err(CliError::Input(format!(
            "cycle {cycle} is not open in this state"
        )));
    }
    if args.json {
        return finish(
            serde_json::to_writer_pretty(&mut *out, &summary)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(out)),
        );
    }
    let report = simulate::SimulateReport {
        summary,
        pump: Default::default(),
        dead_letters: Default::default(),
        rmm_commands: 0,
        duplicate_commands: 0,
        rmm_approvals: Default::default(),
        psa_tickets: 0,
        rmm_calls: Default::default(),
        pages: 0,
        hours: 0,
        all_closed: false,
        ended_at: Utc::now(),
        evidence: String::new(),
    };
    let batches = report.summary.batches.clone();
    let shown = simulate::render_table(out, &report);
    finish(shown.and_then(|()| simulate::render_batches(out, &batches)))
}

/// `patchflow status`.
pub fn status(args: &StatusArgs, out: &mut dyn Write) -> Result<(), CliError> {
    with_state!(&args.state, |state, queues| status_with(
        &state, &queues, args, out
    ))
}

/// `patchflow simulate`.
pub fn simulate(args: &SimulateArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let spec = SimulateSpec {
        inventory: args.inventory.clone(),
        catalog: args.catalog.clone(),
        cycle: args.cycle,
        failure_rate: args.failure_rate,
        seed: args.seed,
        out: args.out.clone(),
        policy: load_policy(args.policy.as_deref())?,
        engineer_response: Duration::hours(i64::from(args.engineer_response_hours)),
        days: i64::from(args.days),
        deliver_twice: args.deliver_twice,
    };
    for (flag, path) in [
        ("--inventory", &spec.inventory),
        ("--catalog", &spec.catalog),
    ] {
        if !path.is_file() {
            return Err(CliError::Input(format!(
                "{flag} {}: no such file",
                path.display()
            )));
        }
    }
    simulate::fresh_dir(&spec.out)?;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let rt = runtime()?;
    let report = rt.block_on(async {
        match backend(args.backend) {
            Backend::Local => {
                let dyn_clock: Arc<dyn Clock> = clock.clone();
                let (state, queues, evidence) = local(&spec.out, dyn_clock)?;
                let where_ = evidence.root().join("evidence").display().to_string();
                let consumer = queues.clone();
                let env = simulate::sim_env(state, queues, evidence, clock.clone(), &spec);
                let work = || env.state.work();
                let report =
                    simulate::run_cycle_measured(&env, &consumer, &clock, &spec, where_, &work)
                        .await?;
                simulate::write_sim_records(&env, &spec.out)?;
                Ok::<_, CliError>(report)
            }
            Backend::Aws => {
                let (state, queues, evidence) = aws_adapters().await?;
                let where_ = format!(
                    "s3://{}/evidence/{}/",
                    need(aws::EVIDENCE_BUCKET)?,
                    spec.cycle
                );
                let consumer = queues.clone();
                let env = simulate::sim_env(state, queues, evidence, clock.clone(), &spec);
                let report = simulate::run_cycle(&env, &consumer, &clock, &spec, where_).await?;
                simulate::write_sim_records(&env, &spec.out)?;
                Ok(report)
            }
        }
    })?;
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    let path = spec.out.join("summary.json");
    std::fs::write(&path, json + "\n")
        .map_err(|e| CliError::Output(format!("{}: cannot write: {e}", path.display())))?;
    finish(simulate::render(out, &report))
}
