//! `patchflow audit list|pull|verify`: what an assessor runs to see the evidence, take a copy,
//! and check it without trusting the MSP: every hash recomputed, every chain of manifests
//! walked, every lock read, through the same evidence store port whether the evidence is in the
//! S3 bucket or in a local folder. Only reads from the store (a pull writes into a new local
//! folder), so the read-only auditor role is enough.

use std::fs;
use std::io::{IsTerminal, Write};
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use clap::{Args, Subcommand};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressStyle};
use patchflow_aws::config as aws;
use patchflow_aws::s3::S3EvidenceStore;
use patchflow_core::ids::CycleId;
use patchflow_core::ports::evidence::{EvidenceStore, LockMode};
use patchflow_core::ports::{error_chain, PortError};
use patchflow_core::schedule::utc;
use patchflow_evidence::verify::{
    copy, refusal, summarize, verify, CopyError, Expectations, Progress, Report, Scope,
};
use patchflow_local::evidence::FsEvidenceStore;
use serde::{Deserialize, Serialize};

use crate::ops::runtime;
use crate::{finish, CliError};

/// What `audit pull` leaves beside the evidence it pulled: where it came from and the scope, so
/// that `audit verify DIR` checks that scope and treats the manifests pulled from outside it as
/// the anchors of the chains.
pub const PULL_RECORD: &str = "audit-pull.json";

/// The staging folder inside `--out` while a pull runs; renamed into place only when whole.
const STAGING: &str = ".incomplete";

/// `patchflow audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// What evidence exists: per cycle, client and bundle, its objects, size, manifest
    /// sequence, closing time and retain-until (nothing is verified: see `audit verify`).
    ///
    /// Reads the evidence bucket (--bucket or PATCHFLOW_EVIDENCE_BUCKET; the SDK's credentials,
    /// at AWS_ENDPOINT_URL when set) or, with --state, a local evidence folder. Needs only
    /// s3:ListBucket, s3:GetObject and s3:GetObjectRetention.
    #[command(after_long_help = "Examples:
  patchflow audit list --bucket acme-evidence --cycle 2026-12
  patchflow audit list --state target/demo/cycle --client contoso")]
    List(ListArgs),
    /// Copy a cycle's evidence into a new local folder, with what the source reports of each
    /// object (SHA-256, size, content type, lock), for `audit verify DIR` offline.
    ///
    /// Every object's bytes are checked against the checksum the source recorded at write time
    /// as they arrive; one that fails stops the pull, names the object, and leaves nothing
    /// behind. The manifests outside the cycle that its chains link to are pulled too (the
    /// manifest only), so the copy's chains can be checked up to their anchors. The folder
    /// gets DIR/evidence/... (the bytes, read-only), DIR/.meta/... (what the source reported)
    /// and DIR/audit-pull.json (the source and scope). DIR must be new or empty. Needs only
    /// s3:ListBucket, s3:GetObject, s3:GetObjectRetention and s3:GetObjectLegalHold.
    #[command(after_long_help = "Example:
  patchflow audit pull --bucket acme-evidence --cycle 2026-12 --out evidence-2026-12
  patchflow audit verify evidence-2026-12")]
    Pull(PullArgs),
    /// Verify evidence: every hash recomputed, every chain of manifests walked, every lock
    /// read. Prints a report, then `verified: N objects in M bundles`.
    ///
    /// TARGET is a local folder (the root `simulate --out` or `audit pull --out` wrote, or its
    /// `evidence` folder, or a folder below it) or s3://BUCKET[/evidence/YYYY-MM[/CLIENT[/BUNDLE]]].
    ///
    /// Checks per bundle folder: a manifest.json exists, parses and names the cycle, client and
    /// bundle of its folder; every artifact it lists exists with its SHA-256, size and content
    /// type; no object is missing from it (an added object is a problem); every object reads
    /// back as the store recorded it at write time; every object's lock, as the store reports
    /// it, is COMPLIANCE and lasts at least --min-retention-days after the bundle closed, and no
    /// less than the manifest declares; on S3, every key has one version only (evidence is
    /// written once: a second version is an overwrite or a deletion). Per client: each manifest
    /// has its own sequence, links to the manifest of the sequence before with the SHA-256 of
    /// its stored bytes (sequence 1 links to none). A link leaving the scope (one cycle's first
    /// manifest to the month before) is followed and checked: the chain is anchored there. A
    /// cycle roll-up's record pins its tiers' manifests by SHA-256: each pin must match. The report gives each chain's newest manifest (tip) and its
    /// SHA-256: compare it with one noted earlier to notice the newest bundle removed.
    ///
    /// Exit status: 0 verified; 1 a problem found (the first bad object and why on stderr,
    /// every problem in the report) or the store could not be read; 2 invalid arguments or
    /// nothing to verify.
    #[command(after_long_help = "Examples:
  patchflow audit verify target/demo/cycle
  patchflow audit verify s3://acme-evidence/evidence/2026-12/contoso
  patchflow audit verify evidence-2026-12 --min-retention-days 2190")]
    Verify(VerifyArgs),
}

/// Where `list` and `pull` read the evidence.
#[derive(Debug, Args, Clone)]
pub struct SourceArgs {
    /// The S3 evidence bucket.
    #[arg(long, value_name = "BUCKET", env = aws::EVIDENCE_BUCKET)]
    pub bucket: Option<String>,
    /// A local evidence folder instead of the bucket (the --out of `simulate` or `audit pull`,
    /// or its `evidence` folder) [default without a bucket: patchflow-state].
    #[arg(long, value_name = "DIR", env = "PATCHFLOW_STATE_DIR")]
    pub state: Option<PathBuf>,
}

/// `patchflow audit list` arguments.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this client.
    #[arg(long, value_name = "CLIENT")]
    pub client: Option<String>,
    /// Only this cycle [default: every cycle].
    #[arg(long, value_name = "YYYY-MM")]
    pub cycle: Option<CycleId>,
    /// Where the evidence is.
    #[command(flatten)]
    pub source: SourceArgs,
}

/// `patchflow audit pull` arguments.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The cycle to pull.
    #[arg(long, value_name = "YYYY-MM")]
    pub cycle: CycleId,
    /// Only this client.
    #[arg(long, value_name = "CLIENT")]
    pub client: Option<String>,
    /// The folder to pull into (new or empty).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Where the evidence is.
    #[command(flatten)]
    pub source: SourceArgs,
}

/// `patchflow audit verify` arguments.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A local evidence folder, or s3://BUCKET[/evidence/YYYY-MM[/CLIENT[/BUNDLE]]].
    #[arg(value_name = "TARGET")]
    pub target: String,
    /// The shortest retention after a bundle closed that every object's lock must have.
    #[arg(
        long,
        value_name = "DAYS",
        default_value_t = patchflow_evidence::DEFAULT_RETENTION_DAYS,
        value_parser = clap::value_parser!(i64).range(0..=36_500)
    )]
    pub min_retention_days: i64,
}

/// An evidence store as configured: a local folder or the S3 bucket.
enum Store {
    Local(FsEvidenceStore),
    S3(S3EvidenceStore),
}

/// Runs `$body` with `$s` bound to the configured store's adapter.
macro_rules! on_store {
    ($store:expr, |$s:ident| $body:expr) => {
        match $store {
            Store::Local($s) => $body,
            Store::S3($s) => $body,
        }
    };
}

fn input(e: impl std::fmt::Display) -> CliError {
    CliError::Input(e.to_string())
}

fn unreadable(source: &str, e: &PortError) -> CliError {
    CliError::Service(format!(
        "cannot read the evidence in {source}: {}",
        error_chain(e)
    ))
}

/// A local store's root, from its root, its `evidence` folder, or a folder below that (which
/// narrows the scope). Nothing is created.
fn local_root(path: &Path) -> Result<(PathBuf, Option<Scope>), CliError> {
    if path.join("evidence").is_dir() {
        return Ok((path.to_path_buf(), None));
    }
    let not_here = || {
        CliError::Input(format!(
            "{}: no evidence here: give the folder `simulate --out` or `audit pull --out` wrote, \
             or its `evidence` folder",
            path.display()
        ))
    };
    if !path.is_dir() {
        return Err(not_here());
    }
    let parts: Vec<Component<'_>> = path.components().collect();
    let at = parts
        .iter()
        .rposition(|c| c.as_os_str() == "evidence")
        .ok_or_else(not_here)?;
    let root: PathBuf = parts[..at].iter().collect();
    let root = if root.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        root
    };
    let rel: Vec<String> = parts[at..]
        .iter()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let scope = Scope::from_prefix(&rel.join("/"))
        .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
    let narrowed = (scope != Scope::everything()).then_some(scope);
    Ok((root, narrowed))
}

fn open_local(root: &Path) -> Result<FsEvidenceStore, CliError> {
    FsEvidenceStore::open(root)
        .map_err(|e| CliError::Service(format!("{}: {}", root.display(), error_chain(&e))))
}

async fn open_s3(bucket: &str) -> Result<S3EvidenceStore, CliError> {
    let sdk = aws::sdk_config().await;
    let client = aws::s3_client(&sdk).map_err(input)?;
    Ok(S3EvidenceStore::new(client, bucket))
}

/// The store `list` and `pull` read, and how to name it.
async fn source(args: &SourceArgs) -> Result<(Store, String), CliError> {
    let bucket = args.bucket.as_deref().filter(|b| !b.is_empty());
    match (&args.state, bucket) {
        (None, Some(bucket)) => Ok((Store::S3(open_s3(bucket).await?), format!("s3://{bucket}"))),
        (state, _) => {
            let dir = state
                .clone()
                .unwrap_or_else(|| PathBuf::from("patchflow-state"));
            let (root, narrowed) = local_root(&dir).map_err(|e| match (state, e) {
                (None, CliError::Input(m)) => CliError::Input(format!(
                    "{m} (or give the evidence bucket: --bucket BUCKET or {})",
                    aws::EVIDENCE_BUCKET
                )),
                (_, other) => other,
            })?;
            if narrowed.is_some() {
                return Err(CliError::Input(format!(
                    "--state {}: give the store's root (or its `evidence` folder); narrow with \
                     --cycle and --client",
                    dir.display()
                )));
            }
            Ok((Store::Local(open_local(&root)?), root.display().to_string()))
        }
    }
}

fn progress_bar(what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} objects ({elapsed}) {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_owned());
    bar
}

/// Moves a progress bar along as the library reports progress.
fn advance(bar: &ProgressBar) -> impl FnMut(Progress<'_>) + '_ {
    move |p| match p {
        Progress::Listed { objects, .. } => bar.set_length(objects as u64),
        Progress::Object(key) => {
            bar.inc(1);
            bar.set_message(key.to_string());
        }
        Progress::Link(key) => bar.set_message(format!("link {key}")),
    }
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M").to_string(),
    )
}

/// The columns of a bundle listing, in `list` and in `verify`'s report.
const BUNDLE_COLUMNS: [&str; 8] = [
    "cycle",
    "client",
    "bundle",
    "objects",
    "size",
    "sequence",
    "closed at (UTC)",
    "retain until (UTC)",
];

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    t
}

/// `patchflow audit ...`.
pub fn run(cmd: &AuditCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        AuditCommand::List(args) => list(args, out),
        AuditCommand::Pull(args) => pull(args, out),
        AuditCommand::Verify(args) => verify_target(args, out),
    }
}

fn list(args: &ListArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let scope = Scope::new(args.cycle, args.client.as_deref(), None).map_err(input)?;
    runtime()?.block_on(async {
        let (store, name) = source(&args.source).await?;
        on_store!(store, |s| list_from(&s, &name, &scope, out).await)
    })
}

/// `audit list` on a store: a table of the scope's bundles.
pub async fn list_from<S: EvidenceStore>(
    store: &S,
    source: &str,
    scope: &Scope,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let bundles = summarize(store, scope)
        .await
        .map_err(|e| unreadable(source, &e))?;
    if bundles.is_empty() {
        return finish(writeln!(out, "no evidence under {scope} in {source}"));
    }
    let noted = bundles.iter().any(|b| !b.notes.is_empty());
    let mut header = BUNDLE_COLUMNS.to_vec();
    if noted {
        header.push("notes");
    }
    let mut t = table(&header);
    let (mut objects, mut bytes) = (0, 0);
    for b in &bundles {
        objects += b.objects;
        bytes += b.bytes;
        let mut row = vec![
            b.cycle.to_string(),
            b.client.clone(),
            b.bundle.clone(),
            b.objects.to_string(),
            size(b.bytes),
            b.sequence.map_or_else(|| "-".into(), |s| s.to_string()),
            when(b.closed_at),
            when(b.retain_until),
        ];
        if noted {
            row.push(b.notes.join("\n"));
        }
        t.add_row(row);
    }
    finish(writeln!(
        out,
        "evidence under {scope} in {source}\n{t}\n{} bundles, {objects} objects, {}",
        bundles.len(),
        size(bytes)
    ))
}

/// What `audit pull` records in [`PULL_RECORD`].
#[derive(Debug, Serialize, Deserialize)]
struct PullRecord {
    /// Where the evidence came from.
    source: String,
    /// The cycle pulled.
    cycle: CycleId,
    /// The client pulled, if only one.
    client: Option<String>,
    /// When.
    #[serde(with = "utc")]
    pulled_at: DateTime<Utc>,
    /// Objects of the scope.
    objects: usize,
    /// Their bytes.
    bytes: u64,
    /// Manifests outside the scope pulled for the chains' anchors.
    links: Vec<String>,
    /// Manifests outside the scope linked to but missing from the source.
    missing_links: Vec<String>,
}

fn pull(args: &PullArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let scope = Scope::new(Some(args.cycle), args.client.as_deref(), None).map_err(input)?;
    runtime()?.block_on(async {
        let (store, name) = source(&args.source).await?;
        on_store!(store, |s| pull_from(&s, &name, &scope, &args.out, out)
            .await)
    })
}

/// Makes `dir` ready for a pull: refuses one that is not empty; returns whether it was created.
fn fresh_dir(dir: &Path) -> Result<bool, CliError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(CliError::Input(format!(
                    "--out {}: not empty: pull into a new or empty folder",
                    dir.display()
                )));
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| {
                CliError::Output(format!("--out {}: cannot create: {e}", dir.display()))
            })?;
            Ok(true)
        }
        Err(e) => Err(CliError::Input(format!(
            "--out {}: cannot read: {e}",
            dir.display()
        ))),
    }
}

/// `audit pull` from a store into `dir`: whole, or nothing left behind.
pub async fn pull_from<S: EvidenceStore>(
    store: &S,
    source: &str,
    scope: &Scope,
    dir: &Path,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let cycle = scope.cycle().ok_or_else(|| {
        CliError::Input("audit pull takes one cycle at a time: give --cycle".into())
    })?;
    let created = fresh_dir(dir)?;
    let staging = dir.join(STAGING);
    let pulled = pull_into(store, source, scope, cycle, dir, &staging).await;
    // Whatever happened, the staging folder goes: on success it is empty, on failure what it
    // holds must not be taken for evidence.
    let cleaned = match fs::remove_dir_all(&staging) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CliError::Output(format!(
            "{}: cannot remove the incomplete pull: {e}",
            staging.display()
        ))),
        _ => Ok(()),
    };
    let record = match (pulled, cleaned) {
        (Ok(record), Ok(())) => record,
        (Ok(_), Err(e)) => return Err(e),
        (Err(e), cleaned) => {
            let mut text = e.to_string();
            if let Err(left) = cleaned {
                text.push_str(&format!("; {left}"));
            } else if created {
                // The folder is ours and now empty; failing to remove it leaves an empty folder,
                // never evidence.
                if let Err(rm) = fs::remove_dir(dir) {
                    text.push_str(&format!("; {} left behind, empty: {rm}", dir.display()));
                }
            }
            return Err(match e {
                CliError::Input(_) => CliError::Input(text),
                CliError::Output(_) => CliError::Output(text),
                CliError::Service(_) => CliError::Service(text),
            });
        }
    };
    let mut text = format!(
        "pulled {} objects ({}) of {scope} from {source} into {}",
        record.objects,
        size(record.bytes),
        dir.display()
    );
    if !record.links.is_empty() {
        text.push_str(&format!(
            "\nwith {} manifest(s) outside it that its chains link to: {}",
            record.links.len(),
            record.links.join(", ")
        ));
    }
    for missing in &record.missing_links {
        text.push_str(&format!(
            "\nnote: {missing} is linked to but missing from {source}; `patchflow audit verify` names it"
        ));
    }
    text.push_str(&format!(
        "\nverify it with: patchflow audit verify {}",
        dir.display()
    ));
    finish(writeln!(out, "{text}"))
}

async fn pull_into<S: EvidenceStore>(
    store: &S,
    source: &str,
    scope: &Scope,
    cycle: CycleId,
    dir: &Path,
    staging: &Path,
) -> Result<PullRecord, CliError> {
    let to = open_local(staging)?;
    let bar = progress_bar("pulling");
    let copied = copy(store, &to, scope, advance(&bar)).await;
    bar.finish_and_clear();
    let copied = copied.map_err(|e| {
        CliError::Service(match &e {
            CopyError::Read { key, source } | CopyError::Write { key, source } => {
                format!("pull stopped: {e}: {}", refusal(key, source))
            }
            other => format!("pull stopped: {}", error_chain(other)),
        })
    })?;
    if copied.objects == 0 {
        return Err(CliError::Input(format!(
            "no evidence under {scope} in {source}: nothing pulled"
        )));
    }
    for name in ["evidence", ".meta", ".legal-hold"] {
        let from = staging.join(name);
        if !from.exists() {
            continue;
        }
        fs::rename(&from, dir.join(name)).map_err(|e| {
            CliError::Output(format!(
                "cannot move {} to {}: {e}",
                from.display(),
                dir.display()
            ))
        })?;
    }
    let record = PullRecord {
        source: source.to_owned(),
        cycle,
        client: scope.client().map(|c| c.to_string()),
        pulled_at: Utc::now(),
        objects: copied.objects,
        bytes: copied.bytes,
        links: copied.links,
        missing_links: copied.missing_links,
    };
    let path = dir.join(PULL_RECORD);
    let text = serde_json::to_string_pretty(&record)
        .map_err(|e| CliError::Output(format!("{}: {e}", path.display())))?;
    fs::write(&path, text + "\n")
        .map_err(|e| CliError::Output(format!("{}: cannot write: {e}", path.display())))?;
    Ok(record)
}

/// The scope `audit pull` recorded in a folder, if it did.
fn pulled_scope(root: &Path) -> Result<Option<Scope>, CliError> {
    let path = root.join(PULL_RECORD);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CliError::Input(format!(
                "{}: cannot read: {e}",
                path.display()
            )))
        }
    };
    let record: PullRecord = serde_json::from_str(&text)
        .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
    Scope::new(Some(record.cycle), record.client.as_deref(), None)
        .map(Some)
        .map_err(|e| CliError::Input(format!("{}: field `client`: {e}", path.display())))
}

fn verify_target(args: &VerifyArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let expect = Expectations {
        min_retention: Duration::days(args.min_retention_days),
        mode: LockMode::Compliance,
    };
    let target = args.target.as_str();
    if let Some(rest) = target.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(CliError::Input(format!(
                "`{target}`: no bucket: expected s3://BUCKET[/evidence/YYYY-MM[/CLIENT[/BUNDLE]]]"
            )));
        }
        let scope = if prefix.is_empty() {
            Scope::everything()
        } else {
            Scope::from_prefix(prefix).map_err(|e| CliError::Input(format!("`{target}`: {e}")))?
        };
        let name = format!("s3://{bucket}");
        return runtime()?.block_on(async {
            let store = open_s3(bucket).await?;
            verify_in(&store, &name, &scope, None, &expect, out).await
        });
    }
    let (root, narrowed) = local_root(Path::new(target))?;
    let (scope, note) = match (narrowed, pulled_scope(&root)?) {
        (Some(scope), _) => (scope, None),
        (None, Some(scope)) => (
            scope,
            Some(format!(
                "the scope `audit pull` recorded in {}",
                root.join(PULL_RECORD).display()
            )),
        ),
        (None, None) => (Scope::everything(), None),
    };
    let store = open_local(&root)?;
    let name = root.display().to_string();
    runtime()?.block_on(verify_in(
        &store,
        &name,
        &scope,
        note.as_deref(),
        &expect,
        out,
    ))
}

/// `audit verify` on a store: the report on `out`; `Err` naming the first bad object when
/// anything is wrong.
pub async fn verify_in<S: EvidenceStore>(
    store: &S,
    source: &str,
    scope: &Scope,
    note: Option<&str>,
    expect: &Expectations,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let bar = progress_bar("verifying");
    let report = verify(store, scope, expect, advance(&bar)).await;
    bar.finish_and_clear();
    let report = report.map_err(|e| unreadable(source, &e))?;
    if report.bundles.is_empty() {
        return Err(CliError::Input(format!(
            "no evidence under {scope} in {source}: nothing to verify (check the bucket, folder \
             and prefix)"
        )));
    }
    finish(render(out, source, note, &report))?;
    match report.first_problem() {
        None => finish(writeln!(
            out,
            "verified: {} objects in {} bundles",
            report.objects,
            report.bundles.len()
        )),
        Some(first) => Err(CliError::Service(format!(
            "verification failed: the first bad object is {first} ({} problem(s) in all, listed \
             in the report)",
            report.problems.len()
        ))),
    }
}

fn mode_name(mode: LockMode) -> &'static str {
    match mode {
        LockMode::Compliance => "COMPLIANCE",
        LockMode::Governance => "GOVERNANCE",
    }
}

/// The verification report, for people.
fn render(
    out: &mut dyn Write,
    source: &str,
    note: Option<&str>,
    r: &Report,
) -> std::io::Result<()> {
    writeln!(
        out,
        "patchflow audit verify: {} in {source}{}",
        r.scope,
        note.map(|n| format!(" ({n})")).unwrap_or_default()
    )?;
    writeln!(
        out,
        "expected: every object locked in {} mode (or stricter) for at least {} days after its \
         bundle closed",
        mode_name(r.expectations.mode),
        r.expectations.min_retention.num_days()
    )?;
    writeln!(out)?;
    let mut t = table(&BUNDLE_COLUMNS);
    for b in &r.bundles {
        t.add_row(vec![
            b.cycle.to_string(),
            b.client.clone(),
            b.bundle.clone(),
            b.objects.to_string(),
            size(b.bytes),
            b.sequence.map_or_else(|| "-".into(), |s| s.to_string()),
            when(b.closed_at),
            when(b.retain_until),
        ]);
    }
    writeln!(out, "bundles: {}\n{t}", r.bundles.len())?;
    writeln!(out, "\nchains: {}", r.chains.len())?;
    for c in &r.chains {
        let from = match &c.anchor {
            Some(a) => format!(
                "anchored at {} (sequence {}, sha256 {})",
                a.key, a.sequence, a.sha256
            ),
            None if c.first == 1 => "from sequence 1".to_owned(),
            None => "not anchored".to_owned(),
        };
        writeln!(
            out,
            "  {}: sequences {}-{} ({} manifests), {from}; tip {} sha256 {}",
            c.client, c.first, c.last, c.manifests, c.tip.key, c.tip.sha256
        )?;
    }
    writeln!(
        out,
        "\nobjects: {} read and hashed ({}); manifests outside the scope read for their links: {}",
        r.objects,
        size(r.bytes),
        r.links_followed
    )?;
    writeln!(
        out,
        "locks: {} checked; legal holds: {}",
        r.locks, r.legal_holds
    )?;
    if r.problems.is_empty() {
        writeln!(out, "problems: none")?;
    } else {
        writeln!(out, "problems: {}", r.problems.len())?;
        for p in &r.problems {
            writeln!(out, "  {p}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_target_may_be_the_root_its_evidence_folder_or_a_folder_below() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pulled");
        fs::create_dir_all(root.join("evidence/2026-12/contoso")).unwrap();
        assert_eq!(local_root(&root).unwrap(), (root.clone(), None));
        assert_eq!(
            local_root(&root.join("evidence")).unwrap(),
            (root.clone(), None)
        );
        let (r, scope) = local_root(&root.join("evidence/2026-12/contoso")).unwrap();
        assert_eq!(r, root);
        assert_eq!(
            scope.map(|s| s.to_string()).as_deref(),
            Some("evidence/2026-12/contoso/")
        );
        assert!(matches!(
            local_root(&dir.path().join("nothing")),
            Err(CliError::Input(_))
        ));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(2048), "2.0 KiB");
        assert_eq!(size(3 * 1024 * 1024 + 1), "3.0 MiB");
    }
}
