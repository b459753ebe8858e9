//! `patchflow inventory pull` and `patchflow catalog pull`: what the connectors would feed a
//! cycle, written as the contract's files, so an engineer can read it and `plan` against it
//! before trusting the real systems with anything.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use patchflow_connectors::automate::{Automate, Pulled};
use patchflow_connectors::file::{FileCatalog, FileInventory};
use patchflow_connectors::msrc::{MsrcCatalog, MsrcConfig};
use patchflow_connectors::secrets::{
    credentials_from_env, credentials_from_file, AutomateCredentials,
};
use patchflow_connectors::settings::ConnectorsFile;
use patchflow_core::contract::{catalog_from_doc, inventory_from_doc};
use patchflow_core::ids::CycleId;
use patchflow_core::ports::sources::InventorySource;
use patchflow_core::ports::{error_chain, PortError};
use serde_json::Value;

use crate::ops::runtime;
use crate::CliError;

/// The environment variable holding the RMM's credentials (a JSON object) when
/// `--credentials` is not given.
pub const RMM_CREDENTIALS: &str = "PATCHFLOW_RMM_CREDENTIALS";

/// `patchflow inventory` subcommands.
#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// Pull the fleet from the RMM (or a file) and write it as the contract's inventory JSON,
    /// with what the RMM says of each endpoint's patching under `rmm_status`.
    Pull(InventoryPullArgs),
}

/// Where an inventory comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RmmKind {
    /// ConnectWise Automate, per the connectors file's `[automate]`.
    Connectwise,
    /// An inventory file (JSON or CSV), checked and rewritten as JSON.
    File,
}

/// `patchflow inventory pull` arguments.
#[derive(Debug, Args)]
pub struct InventoryPullArgs {
    /// Where the inventory comes from.
    #[arg(long, value_enum, default_value = "connectwise")]
    pub rmm: RmmKind,
    /// The connectors file (TOML; docs/connectors.md), for connectwise.
    #[arg(long, value_name = "FILE", env = "PATCHFLOW_CONNECTORS_CONFIG")]
    pub connectors: Option<PathBuf>,
    /// Automate's credentials (JSON: username, password, client_id), for connectwise; else the
    /// PATCHFLOW_RMM_CREDENTIALS environment variable holds the JSON.
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// The inventory file (JSON or CSV), for file.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Where to write the inventory JSON (written whole or not at all).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `patchflow catalog` subcommands.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Pull the month's Microsoft release from the Security Update Guide (CVRF API), merge
    /// third-party patches from a file, and write the contract's catalog JSON.
    Pull(CatalogPullArgs),
}

/// `patchflow catalog pull` arguments.
#[derive(Debug, Args)]
pub struct CatalogPullArgs {
    /// The cycle, YYYY-MM.
    #[arg(long, value_name = "YYYY-MM")]
    pub cycle: CycleId,
    /// Third-party patches in the contract's catalog format (`{cycle}` becomes YYYY-MM).
    #[arg(long, value_name = "FILE")]
    pub third_party: Option<String>,
    /// The connectors file, for its `[msrc]` section (the defaults are Microsoft's API).
    #[arg(long, value_name = "FILE", env = "PATCHFLOW_CONNECTORS_CONFIG")]
    pub connectors: Option<PathBuf>,
    /// Where to write the catalog JSON (written whole or not at all).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// A port error as the CLI reports it: a refused or malformed answer is the configuration's or
/// the input's to fix (exit 2), a passing failure is the service's (exit 1).
fn port_error(e: &PortError) -> CliError {
    if e.is_retryable() {
        CliError::Service(error_chain(e))
    } else {
        CliError::Input(error_chain(e))
    }
}

fn spinner(message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Writes `value` to `path` through a temporary file beside it, so the file is whole or absent.
fn write_whole(path: &Path, value: &Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Output(format!("{}: {e}", path.display())))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".to_owned());
    let tmp = dir.join(format!(".{name}.partial"));
    std::fs::write(&tmp, text + "\n")
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            CliError::Output(format!("cannot write {}: {e}", path.display()))
        })
}

fn connectors_file(path: Option<&Path>, what: &str) -> Result<Option<ConnectorsFile>, CliError> {
    match path {
        None => Ok(None),
        Some(p) => ConnectorsFile::read(&p.display().to_string())
            .map(Some)
            .map_err(|e| CliError::Input(format!("{what}: {e}"))),
    }
}

/// `patchflow inventory pull`.
pub fn inventory_pull(args: &InventoryPullArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let rt = runtime()?;
    let (doc, status, skipped, no_patch_inventory, source) = match args.rmm {
        RmmKind::File => {
            let path = args.inventory.as_ref().ok_or_else(|| {
                CliError::Input("inventory pull --rmm file needs --inventory FILE".to_owned())
            })?;
            let doc = rt
                .block_on(FileInventory::new(path).pull())
                .map_err(|e| port_error(&e))?;
            (
                doc,
                None,
                Vec::new(),
                Vec::new(),
                path.display().to_string(),
            )
        }
        RmmKind::Connectwise => {
            let file = connectors_file(args.connectors.as_deref(), "inventory pull")?.ok_or_else(
                || {
                    CliError::Input(
                        "inventory pull --rmm connectwise needs the connectors file: --connectors \
                         FILE or PATCHFLOW_CONNECTORS_CONFIG"
                            .to_owned(),
                    )
                },
            )?;
            let config = file.automate.ok_or_else(|| {
                CliError::Input("inventory pull: the connectors file has no [automate]".into())
            })?;
            let credentials: AutomateCredentials = match &args.credentials {
                Some(p) => credentials_from_file(&p.display().to_string()),
                None => credentials_from_env(RMM_CREDENTIALS),
            }
            .map_err(|e| {
                CliError::Input(format!(
                    "inventory pull: {} (give --credentials FILE or set {RMM_CREDENTIALS})",
                    error_chain(&e)
                ))
            })?;
            let source = config.base_url.clone();
            let automate = Automate::new(config, credentials).map_err(|e| port_error(&e))?;
            let bar = spinner(&format!("pulling the inventory from {source}"));
            let pulled = rt.block_on(automate.pull_inventory());
            bar.finish_and_clear();
            let Pulled {
                inventory,
                status,
                skipped,
                no_patch_inventory,
            } = pulled.map_err(|e| port_error(&e))?;
            (inventory, Some(status), skipped, no_patch_inventory, source)
        }
    };
    // What is written must be what `plan` accepts.
    let inventory = inventory_from_doc(&source, doc.clone())
        .map_err(|e| CliError::Input(format!("inventory pull: {e}")))?;
    // What `plan` would warn of (pilot representation, exclusions without their signed
    // approval): the inventory is written all the same.
    let warnings = patchflow_core::rules::representation::inventory_warnings(&inventory);
    let mut value =
        serde_json::to_value(&doc).map_err(|e| CliError::Output(format!("inventory pull: {e}")))?;
    if let (Some(status), Some(endpoints)) = (
        status,
        value.get_mut("endpoints").and_then(Value::as_array_mut),
    ) {
        for e in endpoints {
            let id = e.get("id").and_then(Value::as_str).unwrap_or_default();
            if let Some(s) = status.get(id) {
                if let (Some(obj), Ok(s)) = (e.as_object_mut(), serde_json::to_value(s)) {
                    obj.insert("rmm_status".to_owned(), s);
                }
            }
        }
    }
    write_whole(&args.out, &value)?;
    writeln!(
        out,
        "{} endpoints of {} clients from {source} written to {}",
        doc.endpoints.len(),
        doc.clients.len(),
        args.out.display()
    )
    .map_err(|e| CliError::Output(e.to_string()))?;
    for w in &warnings {
        eprintln!("warning: {}", w.line(&source));
    }
    if !no_patch_inventory.is_empty() {
        // A warning, not a failure: these endpoints are written, with their needs unknown.
        let lines: Vec<String> = no_patch_inventory
            .iter()
            .map(|n| {
                format!(
                    "  {} (computer {}, client {})",
                    n.hostname, n.endpoint, n.client
                )
            })
            .collect();
        eprintln!(
            "{} computer(s) have no patch inventory in Automate: what they need is unknown, so \
             their `applicable` is left out (run a patch scan in Automate):\n{}",
            no_patch_inventory.len(),
            lines.join("\n")
        );
    }
    if skipped.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = skipped
        .iter()
        .map(|s| {
            format!(
                "  {} (Automate client {}): {}",
                s.name, s.automate_id, s.reason
            )
        })
        .collect();
    Err(CliError::Input(format!(
        "{} client(s) left out of {} (fix the connectors file; the rest was written):\n{}",
        skipped.len(),
        args.out.display(),
        lines.join("\n")
    )))
}

/// `patchflow catalog pull`.
pub fn catalog_pull(args: &CatalogPullArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let msrc = connectors_file(args.connectors.as_deref(), "catalog pull")?
        .map(|f| f.msrc)
        .unwrap_or_else(MsrcConfig::default);
    let source = msrc.base_url.clone();
    let mut catalog = MsrcCatalog::new(msrc).map_err(|e| port_error(&e))?;
    if let Some(t) = &args.third_party {
        catalog = catalog.with_third_party(FileCatalog::new(t.as_str()));
    }
    let rt = runtime()?;
    let bar = spinner(&format!("pulling {}'s release from {source}", args.cycle));
    let release = rt.block_on(catalog.pull(args.cycle));
    bar.finish_and_clear();
    let release = release.map_err(|e| match e {
        PortError::NotFound(m) => CliError::Service(m),
        other => port_error(&other),
    })?;
    // What was read, by kind, and every vendor fix left out, on stderr: stdout says what was
    // written.
    eprintln!("{}", release.summary());
    for skipped in &release.counts.skipped {
        eprintln!("  left out: {skipped}");
    }
    let doc = release.catalog;
    catalog_from_doc(&source, doc.clone())
        .map_err(|e| CliError::Input(format!("catalog pull: {e}")))?;
    let value =
        serde_json::to_value(&doc).map_err(|e| CliError::Output(format!("catalog pull: {e}")))?;
    write_whole(&args.out, &value)?;
    writeln!(
        out,
        "{} patches for {} written to {}",
        doc.patches.len(),
        args.cycle,
        args.out.display()
    )
    .map_err(|e| CliError::Output(e.to_string()))
}
