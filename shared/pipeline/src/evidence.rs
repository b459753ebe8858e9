//! evidence-archiver: a validated tier's closure requirements checked, its evidence bundle per
//! client (per-endpoint outcomes, reboot confirmations with timestamps, approvals, tickets,
//! exceptions) written once under retention with a manifest of SHA-256 hashes, the PSA updated,
//! and the tier closed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use patchflow_core::ids::{ClientId, CycleId};
use patchflow_core::model::Criticality;
use patchflow_core::ports::evidence::{EvidenceKey, EvidenceStore, NewEvidence, Retention};
use patchflow_core::ports::pager::Pager;
use patchflow_core::ports::psa::{NewTicket, Psa};
use patchflow_core::ports::state::{
    ApprovalStore, EvidenceIndex, EvidenceRecord, ExceptionStore, FailureRecord, FailureStore,
    TierStore,
};
use patchflow_core::ports::PortError;
use patchflow_core::rules::closure::{check_closure, ClosureRecord, EndpointClosure};
use patchflow_core::schedule::utc;
use patchflow_core::tier::{TierEvent, TierState};
use patchflow_core::trace::Trace;
use serde::Serialize;
use tracing::info;

use crate::env::Ports;
use crate::error::HandlerError;
use crate::messages::ArchiveTier;
use crate::records::{self, run_kind, Run, RunStatus, TierPlan, TIER_KIND};

/// The manifest's name in each bundle.
pub const MANIFEST: &str = "manifest.json";

#[derive(Serialize)]
struct Outcome<'a> {
    endpoint: &'a str,
    hostname: &'a str,
    status: &'static str,
    attempts: u32,
    #[serde(with = "utc::option")]
    installed_at: Option<DateTime<Utc>>,
    #[serde(with = "utc::option")]
    reboot_confirmed_at: Option<DateTime<Utc>>,
    reminders: usize,
    forced_reboot: bool,
    #[serde(with = "utc::option")]
    validated_at: Option<DateTime<Utc>>,
    failures: &'a [String],
}

fn outcome(run: &Run) -> Outcome<'_> {
    Outcome {
        endpoint: run.endpoint.as_str(),
        hostname: run.doc.hostname.as_deref().unwrap_or(run.endpoint.as_str()),
        status: run.status.as_str(),
        attempts: run.attempt + 1,
        installed_at: run.installed_at,
        reboot_confirmed_at: run.reboot_confirmed_at,
        reminders: run.reminders.len(),
        forced_reboot: run.forced_reboot,
        validated_at: run.validated_at,
        failures: &run.failures,
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn outcomes_csv(runs: &[&Run]) -> String {
    let mut out = String::from(
        "endpoint,hostname,status,attempts,installed_at,reboot_confirmed_at,reminders,forced_reboot,validated_at,failures\n",
    );
    let t = |v: Option<DateTime<Utc>>| v.map(|t| utc::format(&t)).unwrap_or_default();
    for r in runs {
        let o = outcome(r);
        let row = [
            o.endpoint.to_owned(),
            o.hostname.to_owned(),
            o.status.to_owned(),
            o.attempts.to_string(),
            t(o.installed_at),
            t(o.reboot_confirmed_at),
            o.reminders.to_string(),
            o.forced_reboot.to_string(),
            t(o.validated_at),
            o.failures.join(" "),
        ];
        let line: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

#[derive(Serialize)]
struct ManifestEntry {
    name: String,
    sha256: String,
    size: u64,
}

#[derive(Serialize)]
struct Manifest<'a> {
    cycle: CycleId,
    client: &'a str,
    tier: &'a str,
    #[serde(with = "utc")]
    validated_at: DateTime<Utc>,
    retention: Retention,
    artifacts: Vec<ManifestEntry>,
}

fn json<T: Serialize>(what: &str, v: &T) -> Result<Vec<u8>, HandlerError> {
    serde_json::to_vec_pretty(v).map_err(|e| HandlerError::Poison(format!("encode {what}: {e}")))
}

/// Writes an artifact once; a second write of the same bytes is the same object (idempotent), of
/// other bytes a refusal.
async fn put_once<X: Ports>(
    x: &X,
    key: EvidenceKey,
    bytes: Vec<u8>,
    content_type: &str,
    retention: Retention,
) -> Result<EvidenceRecord, HandlerError> {
    let env = x.env();
    let sha = patchflow_core::ports::evidence::Sha256Digest::of(&bytes);
    let size = bytes.len() as u64;
    match env
        .evidence
        .put(NewEvidence {
            key: key.clone(),
            bytes,
            content_type: content_type.to_owned(),
            retention,
        })
        .await
    {
        Ok(_) => {}
        Err(PortError::Conflict(_)) => {
            let head = env.evidence.head(&key).await?;
            if head.sha256 != sha {
                return Err(HandlerError::Poison(format!(
                    "{} exists with other content (sha256 {}, expected {})",
                    key.as_path(),
                    head.sha256.to_hex(),
                    sha.to_hex()
                )));
            }
        }
        Err(e) => return Err(e.into()),
    }
    let record = EvidenceRecord {
        key,
        sha256: sha,
        size,
        retention,
    };
    match env.state.index_evidence(&record).await {
        Ok(()) | Err(PortError::Conflict(_)) => Ok(record),
        Err(e) => Err(e.into()),
    }
}

/// Archives a validated tier and closes it.
pub async fn archive_tier<X: Ports>(
    x: &X,
    cycle: CycleId,
    msg: ArchiveTier,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    let env = x.env();
    let Some(record) = env.state.get_tier(cycle, &msg.tier).await? else {
        return Err(HandlerError::Poison(format!(
            "no tier {} in {cycle}",
            msg.tier
        )));
    };
    match record.state {
        TierState::Validated => {}
        TierState::Closed => return Ok(format!("{} is closed", msg.tier)),
        other => {
            return Ok(format!(
                "{} is {other}, not validated: nothing to archive",
                msg.tier
            ))
        }
    }
    let (plan, _): (TierPlan, u64) =
        records::must_load(&env.state, cycle, TIER_KIND, msg.tier.as_str()).await?;
    let validated_at = record.updated_at;
    let retention = Retention {
        mode: env.settings.lock_mode,
        retain_until: validated_at + env.settings.retention,
    };
    let runs: Vec<Run> = records::list(&env.state, cycle, &run_kind(&msg.tier))
        .await?
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    let failures: Vec<FailureRecord> = env
        .state
        .list_failures(cycle)
        .await?
        .into_iter()
        .filter(|f| f.tier == msg.tier)
        .collect();
    // Decisions as they stood when the tier validated, so a repeat writes the same bytes.
    let approvals: Vec<_> = env
        .state
        .list_approvals(cycle)
        .await?
        .into_iter()
        .filter(|a| a.sign_off.as_ref().is_none_or(|s| s.at <= validated_at))
        .collect();
    let exceptions = env.state.list_exceptions().await?;

    let mut by_client: BTreeMap<&ClientId, Vec<&Run>> = BTreeMap::new();
    for r in &runs {
        by_client.entry(&r.client).or_default().push(r);
    }
    let mut written = 0;
    for (client, client_runs) in &by_client {
        let key = |name: &str| {
            EvidenceKey::new(cycle, client, msg.tier.as_str(), name)
                .map_err(|e| HandlerError::Poison(e.to_string()))
        };
        let tickets: Vec<&FailureRecord> =
            failures.iter().filter(|f| &f.client == *client).collect();
        let client_exceptions: Vec<_> = exceptions
            .iter()
            .filter(|x| x.client.as_ref().is_none_or(|c| c == *client))
            .collect();
        let outcomes: Vec<Outcome> = client_runs.iter().map(|r| outcome(r)).collect();
        let artifacts = [
            (
                "outcomes.csv",
                outcomes_csv(client_runs).into_bytes(),
                "text/csv",
            ),
            (
                "outcomes.json",
                json("outcomes", &outcomes)?,
                "application/json",
            ),
            (
                "approvals.json",
                json("approvals", &approvals)?,
                "application/json",
            ),
            (
                "tickets.json",
                json("tickets", &tickets)?,
                "application/json",
            ),
            (
                "exceptions.json",
                json("exceptions", &client_exceptions)?,
                "application/json",
            ),
        ];
        let mut entries = Vec::new();
        for (name, bytes, content_type) in artifacts {
            let rec = put_once(x, key(name)?, bytes, content_type, retention).await?;
            entries.push(ManifestEntry {
                name: name.to_owned(),
                sha256: rec.sha256.to_hex(),
                size: rec.size,
            });
            written += 1;
        }
        let manifest = Manifest {
            cycle,
            client: client.as_str(),
            tier: msg.tier.as_str(),
            validated_at,
            retention,
            artifacts: entries,
        };
        put_once(
            x,
            key(MANIFEST)?,
            json("manifest", &manifest)?,
            "application/json",
            retention,
        )
        .await?;
        written += 1;

        // The PSA: the tier's compliance ticket with the completion status, then closed; the
        // failure tickets of its endpoints closed with it.
        let patched = client_runs
            .iter()
            .filter(|r| r.status == RunStatus::Validated)
            .count();
        let ticket = env
            .psa
            .open_ticket(&NewTicket {
                external_ref: format!("{cycle}/compliance/{}/{client}", msg.tier),
                client: (*client).clone(),
                priority: Criticality::P3,
                summary: format!("Patch compliance {cycle} {}: {patched} patched", msg.tier),
                description: format!(
                    "Patch cycle {cycle}, tier {} for {client}: {patched} of {} endpoint(s) \
                     patched and validated, {} failure ticket(s).",
                    msg.tier,
                    client_runs.len(),
                    tickets.len()
                ),
            })
            .await?;
        let confirmations: Vec<String> = client_runs
            .iter()
            .map(|r| {
                format!(
                    "{}: reboot confirmed {}",
                    r.endpoint,
                    r.reboot_confirmed_at
                        .map(|t| utc::format(&t))
                        .unwrap_or_else(|| "-".into())
                )
            })
            .collect();
        let note = format!(
            "Completed. Evidence: {} (sha256 listed in {MANIFEST}).\n{}",
            key(MANIFEST)?.as_path(),
            confirmations.join("\n")
        );
        env.psa
            .add_note(
                &ticket,
                &format!("{cycle}/{}/{client}/completed", msg.tier),
                &note,
            )
            .await?;
        env.psa.close_ticket(&ticket).await?;
        for f in &tickets {
            if let Some(t) = &f.ticket {
                env.psa
                    .add_note(
                        t,
                        &format!("{cycle}/{}/closed", f.id),
                        "Retried and validated; the tier is closed.",
                    )
                    .await?;
                env.psa.close_ticket(t).await?;
            }
            if f.paged {
                env.pager.resolve(&format!("{cycle}/{}", f.id)).await?;
            }
        }
    }

    let closure = ClosureRecord {
        kind: plan.kind,
        ticket_updated: true,
        compliance_report_attached: true,
        evidence_retained: true,
        endpoints: runs
            .iter()
            .map(|r| EndpointClosure {
                endpoint: r.endpoint.clone(),
                reboot_confirmed_at: r.reboot_confirmed_at,
                checks_passed: r.status == RunStatus::Validated,
                failure_ticket: None,
            })
            .collect(),
    };
    let mut trace = Trace::new();
    if let Err(missing) = check_closure(&closure, &mut trace) {
        return Err(HandlerError::Poison(format!(
            "{} cannot close: {}",
            msg.tier,
            serde_json::to_string(&missing).unwrap_or_default()
        )));
    }
    match env
        .state
        .transition_tier(cycle, &msg.tier, record.version, TierEvent::Close, now)
        .await
    {
        Ok(_) | Err(PortError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    info!(%cycle, tier = %msg.tier, objects = written, "tier closed");
    Ok(format!("{} closed: {written} evidence object(s)", msg.tier))
}
