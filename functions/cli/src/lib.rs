//! The `patchflow` operator CLI: argument parsing, commands, and the renderings people read.

#![forbid(unsafe_code)]

pub mod audit;
mod explain;
mod ops;
pub mod pull;
pub mod simulate;
mod table;

use std::fs;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use patchflow_core::contract::{parse_catalog, parse_inventory};
use patchflow_core::ids::CycleId;
use patchflow_core::plan::{plan, Plan, Release};
use patchflow_core::policy::Policy;
use patchflow_core::schedule::parse_instant;
use patchflow_sim::fleet::{generate, FleetSpec};

/// patchflow: patch-management and flaw-remediation orchestration for MSPs
/// (NIST SP 800-171 3.14.1, CMMC L2 SI.L2-3.14.1).
#[derive(Debug, Parser)]
#[command(name = "patchflow", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decide a cycle for a fleet: approvals, exceptions, and per endpoint its scope, wave,
    /// install and reboot windows, with the reasons.
    Plan(PlanArgs),
    /// Fleets for demos, tests and benchmarks.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// The policy in force: the seed's defaults, or a policy file over them.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The operating model's vocabulary: flow nodes and reason codes.
    #[command(subcommand)]
    Explain(ExplainCommand),
    /// Run a whole cycle (sync, approvals, pilot, soak, production, validation, failures,
    /// evidence) through the pipeline's handlers and queues on a simulated clock, with simulated
    /// RMM, PSA and pager.
    Simulate(ops::SimulateArgs),
    /// Approve a patch held for review (or a critical server's install, with --endpoint).
    Approve(ops::DecisionArgs),
    /// Decline a patch; the decline is recorded in the exception register.
    Decline(ops::DecisionArgs),
    /// Failures: list them, record a root cause so the tier may retry.
    #[command(subcommand)]
    Failure(ops::FailureCommand),
    /// A cycle's state per client and tier.
    Status(ops::StatusArgs),
    /// AWS resources, against whatever endpoint the SDK is pointed at (AWS_ENDPOINT_URL).
    #[command(subcommand)]
    Aws(AwsCommand),
    /// The fleet as the RMM sees it, as the contract's inventory.
    #[command(subcommand)]
    Inventory(pull::InventoryCommand),
    /// The month's patches as Microsoft publishes them, as the contract's catalog.
    #[command(subcommand)]
    Catalog(pull::CatalogCommand),
    /// Evidence for assessors: list it, pull a copy, verify it without trusting the MSP (every
    /// hash recomputed, every chain of manifests walked, every lock read). Read-only: the
    /// auditor role is enough.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

/// `patchflow aws` subcommands.
#[derive(Debug, Subcommand)]
pub enum AwsCommand {
    /// Create the state table, the stage queues with their dead-letter queues, and the
    /// Object-Lock evidence bucket under the configured names (what exists is left as it is).
    Bootstrap(BootstrapArgs),
}

/// `patchflow aws bootstrap` arguments.
#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// The DynamoDB state table.
    #[arg(long, env = patchflow_aws::config::STATE_TABLE, default_value = "patchflow-state")]
    pub table: String,
    /// The S3 evidence bucket (globally unique on AWS).
    #[arg(long, env = patchflow_aws::config::EVIDENCE_BUCKET)]
    pub bucket: String,
    /// Queues are named PREFIX-STAGE and PREFIX-STAGE-dlq.
    #[arg(long, env = patchflow_aws::config::QUEUE_PREFIX, default_value = "patchflow")]
    pub queue_prefix: String,
    /// The evidence bucket's default COMPLIANCE retention, in days.
    #[arg(long, default_value_t = 2555, value_parser = clap::value_parser!(i32).range(1..=36_500))]
    pub retention_days: i32,
    /// Receives before a message moves to its stage's dead-letter queue.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_receives: u32,
    /// The queues' visibility timeout in seconds (at least 6x the consumer's timeout).
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(i64).range(0..=43_200))]
    pub visibility_seconds: i64,
}

/// Output formats of `plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The machine-readable contract.
    Json,
    /// For people: grouped by client and wave, local times beside UTC.
    Table,
}

/// `patchflow plan` arguments.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Inventory JSON (clients and endpoints).
    #[arg(long, value_name = "FILE")]
    pub inventory: PathBuf,
    /// Catalog JSON (the month's patches).
    #[arg(long, value_name = "FILE")]
    pub catalog: PathBuf,
    /// The cycle, YYYY-MM. Its Patch Tuesday is the month's second Tuesday.
    #[arg(long, value_name = "YYYY-MM")]
    pub cycle: CycleId,
    /// Release instant for an out-of-band release (RFC 3339); default 10:00
    /// America/Los_Angeles on Patch Tuesday.
    #[arg(long, value_name = "RFC3339", value_parser = parse_released_at)]
    pub released_at: Option<DateTime<Utc>>,
    /// Output format [default: table on a terminal, json otherwise].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Show one endpoint's decisions and the reasons, step by step.
    #[arg(long, value_name = "ID")]
    pub endpoint: Option<String>,
    /// Policy file (TOML) overriding the seed's defaults; see `patchflow policy show`.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Make every warning (pilot representation, an exclusion without its signed approval) an
    /// error: exit 2 with the warnings on stderr and nothing on stdout.
    #[arg(long)]
    pub strict: bool,
}

fn parse_released_at(s: &str) -> Result<DateTime<Utc>, String> {
    parse_instant(s)
        .map_err(|e| format!("`{s}` is not an RFC 3339 instant ({e}); e.g. 2026-12-08T18:00:00Z"))
}

/// `patchflow fleet` subcommands.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Write a realistic, seeded inventory in the contract's format.
    Generate(GenerateArgs),
}

/// `patchflow fleet generate` arguments.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Number of endpoints.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub endpoints: u64,
    /// Number of clients.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub clients: u64,
    /// Seed: the same arguments always give the same fleet.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// One line of JSON instead of indented.
    #[arg(long)]
    pub compact: bool,
    /// Give every endpoint an OS and an RMM patch scan against this catalog (`os`,
    /// `applicable`, `needed`): patches naming an OS are needed where it matches, others on
    /// most endpoints, some already installed, a few older updates missing, a few endpoints
    /// without patch inventory. The fleet itself is the same as without it.
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
}

/// `patchflow policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the policy in force as TOML (every key, with its value).
    Show {
        /// Policy file to validate and apply over the defaults.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
}

/// `patchflow explain` subcommands.
#[derive(Debug, Subcommand)]
pub enum ExplainCommand {
    /// Every node of the operating model: id, seed node, rule.
    Nodes {
        /// As a Markdown table.
        #[arg(long)]
        markdown: bool,
    },
    /// Every reason code and what it means.
    Reasons {
        /// As a Markdown table.
        #[arg(long)]
        markdown: bool,
    },
}

/// A failed command: bad input (exit 2), or a failure to write the result or to reach a
/// service (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Invalid input: a file, record or field that cannot be used.
    #[error("{0}")]
    Input(String),
    /// Writing the result failed.
    #[error("{0}")]
    Output(String),
    /// A service call failed.
    #[error("{0}")]
    Service(String),
}

impl CliError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Input(_) => 2,
            CliError::Output(_) | CliError::Service(_) => 1,
        }
    }
}

fn aws_bootstrap(args: &BootstrapArgs, out: &mut dyn Write) -> Result<(), CliError> {
    use patchflow_aws::bootstrap::{bootstrap, Names};
    let names = Names {
        table: args.table.clone(),
        bucket: args.bucket.clone(),
        queue_prefix: args.queue_prefix.clone(),
        retention_days: args.retention_days,
        max_receives: args.max_receives,
        visibility: chrono::Duration::seconds(args.visibility_seconds),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Service(format!("cannot start the async runtime: {e}")))?;
    let done = runtime.block_on(async {
        let sdk = patchflow_aws::config::sdk_config().await;
        bootstrap(&sdk, &names).await
    });
    let done = done.map_err(|e| {
        let mut text = format!("aws bootstrap: {e}");
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            text.push_str(&format!(": {c}"));
            cause = c.source();
        }
        CliError::Service(text)
    })?;
    let table = if done.table_created {
        "created"
    } else {
        "exists"
    };
    let mut lines = vec![format!("table    {}  ({table})", names.table)];
    for stage in patchflow_core::ports::queue::Stage::ALL {
        if let Some(q) = done.queues.get(&stage) {
            lines.push(format!("queue    {:<9} {}", stage.as_str(), q.url));
            lines.push(format!("dlq      {:<9} {}", stage.as_str(), q.dlq_url));
        }
    }
    lines.push(format!(
        "bucket   {}  (Object Lock, COMPLIANCE {} days by default)",
        names.bucket, names.retention_days
    ));
    finish(writeln!(out, "{}", lines.join("\n")))
}

pub(crate) fn read(path: &Path) -> Result<String, CliError> {
    fs::read_to_string(path)
        .map_err(|e| CliError::Input(format!("{}: cannot read: {e}", path.display())))
}

fn write_err(e: io::Error) -> CliError {
    CliError::Output(format!("cannot write the output: {e}"))
}

/// Ends quietly when the reader of our output went away (`patchflow plan | head`).
pub(crate) fn finish(result: io::Result<()>) -> Result<(), CliError> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(write_err),
    }
}

/// Loads the policy in force: the defaults, or a TOML file over them.
pub fn load_policy(path: Option<&Path>) -> Result<Policy, CliError> {
    match path {
        None => Ok(Policy::default()),
        Some(p) => Policy::from_toml(&p.display().to_string(), &read(p)?)
            .map_err(|e| CliError::Input(e.to_string())),
    }
}

/// Reads the inputs and plans a cycle.
pub fn plan_from_files(
    args: &PlanArgs,
) -> Result<(Plan, patchflow_core::model::Inventory), CliError> {
    let policy = load_policy(args.policy.as_deref())?;
    let inventory = parse_inventory(
        &args.inventory.display().to_string(),
        &read(&args.inventory)?,
    )
    .map_err(|e| CliError::Input(e.to_string()))?;
    let catalog = parse_catalog(&args.catalog.display().to_string(), &read(&args.catalog)?)
        .map_err(|e| CliError::Input(e.to_string()))?;
    let release = Release::of(args.cycle, &policy, args.released_at);
    let plan = plan(&inventory, &catalog, release, &policy);
    check_warnings(
        &plan,
        &args.inventory.display().to_string(),
        &policy,
        args.strict,
    )?;
    Ok((plan, inventory))
}

/// Refuses a plan whose warnings are errors: an exclusion without its signed approval when the
/// policy says so (`scope.unsigned_exclusion = "error"`), every warning with `--strict`. Each
/// becomes one `error:` line naming the file and the record.
fn check_warnings(
    plan: &Plan,
    source: &str,
    policy: &Policy,
    strict: bool,
) -> Result<(), CliError> {
    let unsigned_is_error =
        policy.scope.unsigned_exclusion == patchflow_core::policy::UnsignedExclusion::Error;
    let lines: Vec<String> = plan
        .warnings
        .iter()
        .filter(|w| strict || (unsigned_is_error && w.field.is_some()))
        .map(|w| w.line(source))
        .collect();
    if lines.is_empty() {
        return Ok(());
    }
    Err(CliError::Input(lines.join("\nerror: ")))
}

/// Writes JSON: indented for people at a terminal; one compact document for pipes and files (a
/// third smaller, and faster to write for a large fleet).
fn write_json<T: serde::Serialize>(
    out: &mut impl Write,
    value: &T,
    pretty: bool,
) -> io::Result<()> {
    if pretty {
        serde_json::to_writer_pretty(&mut *out, value)
    } else {
        serde_json::to_writer(&mut *out, value)
    }
    .map_err(io::Error::from)?;
    writeln!(out)
}

/// Runs a command, writing its result to `out`. Nothing is written unless the command succeeds.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CliError> {
    let interactive = io::stdout().is_terminal();
    match cli.command {
        Command::Plan(args) => {
            let (plan, inventory) = plan_from_files(&args)?;
            let format = args.format.unwrap_or(if interactive {
                Format::Table
            } else {
                Format::Json
            });
            let mut out = io::BufWriter::with_capacity(1 << 20, out);
            let result = match (&args.endpoint, format) {
                (Some(id), fmt) => {
                    let ep = plan.endpoint(id).ok_or_else(|| {
                        CliError::Input(format!(
                            "{}: no endpoint with id `{id}`",
                            args.inventory.display()
                        ))
                    })?;
                    match fmt {
                        Format::Json => write_json(&mut out, ep, interactive),
                        Format::Table => explain::endpoint(&mut out, &plan, &inventory, ep),
                    }
                }
                (None, Format::Json) => write_json(&mut out, &plan, interactive),
                (None, Format::Table) => table::render(&mut out, &plan, &inventory),
            };
            let result = finish(result.and_then(|()| out.flush()));
            // The process is about to exit: freeing a large fleet's plan piece by piece would only
            // delay it (about a tenth of the run for 100,000 endpoints).
            std::mem::forget(plan);
            std::mem::forget(inventory);
            result
        }
        Command::Fleet(FleetCommand::Generate(args)) => {
            let spec = FleetSpec {
                endpoints: args.endpoints as usize,
                clients: args.clients as usize,
                seed: args.seed,
            };
            let mut doc = generate(spec);
            if let Some(path) = &args.catalog {
                let text = read(path)?;
                let name = path.display().to_string();
                patchflow_core::contract::parse_catalog(&name, &text)
                    .map_err(|e| CliError::Input(e.to_string()))?;
                let catalog: patchflow_core::contract::CatalogDoc = serde_json::from_str(&text)
                    .map_err(|e| CliError::Input(format!("{name}: {e}")))?;
                patchflow_sim::scans::scan_fleet(
                    &mut doc,
                    &catalog,
                    &patchflow_sim::scans::ScanSpec::new(args.seed),
                );
            }
            let text = if args.compact {
                serde_json::to_string(&doc)
            } else {
                serde_json::to_string_pretty(&doc)
            }
            .map_err(|e| CliError::Output(format!("cannot serialize the fleet: {e}")))?;
            match &args.out {
                Some(path) => {
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        fs::create_dir_all(dir).map_err(|e| {
                            CliError::Output(format!("{}: cannot create: {e}", dir.display()))
                        })?;
                    }
                    fs::write(path, text + "\n").map_err(|e| {
                        CliError::Output(format!("{}: cannot write: {e}", path.display()))
                    })?;
                    eprintln!(
                        "wrote {} endpoints over {} clients (seed {}) to {}",
                        doc.endpoints.len(),
                        doc.clients.len(),
                        args.seed,
                        path.display()
                    );
                    Ok(())
                }
                None => finish(writeln!(out, "{text}")),
            }
        }
        Command::Policy(PolicyCommand::Show { policy }) => {
            let p = load_policy(policy.as_deref())?;
            finish(write!(out, "{}", p.to_toml()))
        }
        Command::Explain(ExplainCommand::Nodes { markdown }) => {
            finish(explain::nodes(out, markdown))
        }
        Command::Explain(ExplainCommand::Reasons { markdown }) => {
            finish(explain::reasons(out, markdown))
        }
        Command::Aws(AwsCommand::Bootstrap(args)) => aws_bootstrap(&args, out),
        Command::Simulate(args) => ops::simulate(&args, out),
        Command::Approve(args) => ops::decide(&args, true, out),
        Command::Decline(args) => ops::decide(&args, false, out),
        Command::Failure(cmd) => ops::failure(&cmd, out),
        Command::Status(args) => ops::status(&args, out),
        Command::Inventory(pull::InventoryCommand::Pull(args)) => pull::inventory_pull(&args, out),
        Command::Catalog(pull::CatalogCommand::Pull(args)) => pull::catalog_pull(&args, out),
        Command::Audit(cmd) => audit::run(&cmd, out),
    }
}
