//! evidence-archiver: a validated tier's closure requirements checked; its evidence bundle per
//! client written once under retention (`record.json`, the machine record; `report.html`, the
//! compliance report; `summary.png`, its summary image; `outcomes.csv`; `sla.csv`; and a
//! `manifest.json` of their SHA-256 hashes chained to the client's previous manifest); the PSA
//! compliance ticket given `summary.png` as stored and the completion note, then closed; the
//! closure recorded on the client in the RMM; the tier closed. When the cycle's last tier closes, each client gets the cycle's
//! roll-up bundle (`evidence/{cycle}/{client}/cycle/`) with the 3.14.1 clocks over every tier.

mod chain;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use patchflow_core::ids::{ClientId, CycleId};
use patchflow_core::model::EndpointKind;
use patchflow_core::model::{Endpoint, Patch};
use patchflow_core::ports::evidence::{EvidenceKey, EvidenceStore, Retention};
use patchflow_core::ports::pager::Pager;
use patchflow_core::ports::psa::{Attachment, Psa};
use patchflow_core::ports::queue::QueueSender;
use patchflow_core::ports::rmm::{Rmm, TierClosure};
use patchflow_core::ports::state::{
    ApprovalStore, DocIndex, DocStore, EvidenceIndex, ExceptionStore, FailureRecord, FailureStore,
    TierId, TierStore,
};
use patchflow_core::ports::PortError;
use patchflow_core::rules::applicability::{normalize, Applicability, Matcher};
use patchflow_core::rules::approval::{Approval, Decision};
use patchflow_core::rules::closure::{check_closure, ClosureRecord, EndpointClosure, Missing};
use patchflow_core::rules::exception::ExceptionEntry;
use patchflow_core::rules::sla::{Flaw, FlawEvents};
use patchflow_core::schedule::utc;
use patchflow_core::tier::{TierEvent, TierState};
use patchflow_core::trace::Trace;
use patchflow_evidence::names::{MANIFEST, OUTCOMES, RECORD, REPORT, SLA, SUMMARY};
use patchflow_evidence::record::{
    self, ApprovalLine, CycleRecord, EndpointOutcome, ExceptionLine, ExcludedEndpoint, SlaSection,
    TicketLine, TierLine, TierRecord,
};
use patchflow_evidence::{csv, html, CYCLE_BUNDLE};
use tracing::{info, warn};

use self::chain::{stored, write_bundle, Bundle, Piece};
use crate::applicability::catalog_patches;
use crate::env::Ports;
use crate::error::{corrupt, HandlerError};
use crate::messages::{ArchiveTier, Message, RollUpClient};
use crate::records::RunModel;
use crate::records::{self, CycleDoc, Excluded, Run, RunStatus, TierPlan, TIER_KIND};

fn outcome(run: &Run, applicability: Option<Applicability>) -> EndpointOutcome {
    EndpointOutcome {
        endpoint: run.endpoint.to_string(),
        hostname: run
            .doc
            .hostname
            .clone()
            .unwrap_or_else(|| run.endpoint.to_string()),
        status: if run.up_to_date {
            "up_to_date".to_owned()
        } else {
            run.status.as_str().to_owned()
        },
        attempts: if run.up_to_date { 0 } else { run.attempt + 1 },
        installed_at: run.installed_at,
        reboot_confirmed_at: run.reboot_confirmed_at,
        reminders: run.reminders.len() as u32,
        forced_reboot: run.forced_reboot,
        validated_at: run.validated_at,
        failures: run.failures.clone(),
        applicability: applicability.map_or("", Applicability::as_str).to_owned(),
    }
}

fn kind_name(kind: EndpointKind) -> &'static str {
    match kind {
        EndpointKind::Server => "server",
        EndpointKind::Workstation => "workstation",
    }
}

fn approval_line(a: &Approval, cycle: &CycleDoc) -> ApprovalLine {
    let patch = cycle
        .catalog
        .patches
        .iter()
        .find(|p| p.id == a.patch.as_str());
    ApprovalLine {
        patch: a.patch.to_string(),
        title: patch.and_then(|p| p.title.clone()).unwrap_or_default(),
        severity: patch
            .and_then(|p| p.severity)
            .map(|s| s.as_str().to_owned()),
        decision: a.decision.as_str().to_owned(),
        reason: a.reason.to_string(),
        node: a.node.id().to_owned(),
        recorded_at: a.recorded_at,
        engineer: a.sign_off.as_ref().map(|s| s.engineer.to_string()),
        reason_code: a.sign_off.as_ref().map(|s| s.reason_code.to_string()),
        signed_at: a.sign_off.as_ref().map(|s| s.at),
    }
}

fn exception_line(x: &ExceptionEntry) -> ExceptionLine {
    ExceptionLine {
        subject: x.subject.clone(),
        kind: x.kind.as_str().to_owned(),
        reason: x.reason.to_string(),
        client: x.client.as_ref().map(ToString::to_string),
        reference: x.reference.clone(),
        engineer: x.engineer.as_ref().map(ToString::to_string),
        engineer_reason: x.engineer_reason.clone(),
        signed_at: x.signed_at,
        change_requires: x.change_requires.to_string(),
        signed: x.signed,
        lifted_by: x.lifted_by.to_string(),
    }
}

fn ticket_line(f: &FailureRecord, tier_closed: bool) -> TicketLine {
    TicketLine {
        failure: f.id.clone(),
        endpoint: f.endpoint.to_string(),
        stage: f.stage.as_str().to_owned(),
        priority: f.priority.as_str().to_uppercase(),
        ticket: f.ticket.clone(),
        // The archiver closes every failure ticket of the tier with it.
        status: if tier_closed { "closed" } else { "open" }.to_owned(),
        paged: f.paged,
        failed_at: f.failed_at,
        root_cause: f.root_cause.as_ref().map(|r| r.text.clone()),
    }
}

fn approved(a: &Approval) -> bool {
    matches!(a.decision, Decision::AutoApproved | Decision::Approved)
}

/// What the archive knows of each run's endpoint: its model and how its patches apply.
struct Views<'a> {
    catalog: &'a [Patch],
    matcher: Matcher<'a>,
    endpoints: HashMap<String, Endpoint>,
    approved: Vec<usize>,
}

impl<'a> Views<'a> {
    fn new(
        cycle: &CycleDoc,
        catalog: &'a [Patch],
        runs: &[Run],
        approvals: &[Approval],
    ) -> Result<Self, HandlerError> {
        let mut endpoints = HashMap::with_capacity(runs.len());
        for r in runs {
            endpoints.insert(r.endpoint.to_string(), r.endpoint_model(cycle)?);
        }
        let approved = catalog
            .iter()
            .enumerate()
            .filter(|(_, p)| approvals.iter().any(|a| a.patch == p.id && approved(a)))
            .map(|(i, _)| i)
            .collect();
        Ok(Self {
            catalog,
            matcher: Matcher::new(catalog),
            endpoints,
            approved,
        })
    }

    fn applicability(&self, run: &Run) -> Option<Applicability> {
        let e = self.endpoints.get(run.endpoint.as_str())?;
        Some(self.matcher.for_endpoint(e, &self.approved).source)
    }
}

/// Every flaw of a client's runs: each patch of the month not declined that applies to the
/// endpoint (by its RMM patch scan, else its OS against the patch's products, else assumed),
/// and each update its scan reported needed that is older than the month's catalog, with its own
/// release. Identified when the sync opened the cycle; reported when its approval was first
/// recorded (kept across later decisions, so `recorded` may hold decisions made since the tier
/// validated), and for an older update when the cycle opened (the sync report and the plan's
/// `unknown_patches` name it); corrected when the endpoint's install was confirmed, if the patch
/// was approved by then (`approvals`: the decisions as they stood when the tier validated). An
/// older update is never corrected by this cycle's install: the RMM's next scan tells.
fn flaws(
    cycle: &CycleDoc,
    client: &ClientId,
    runs: &[&Run],
    approvals: &[Approval],
    recorded: &HashMap<String, DateTime<Utc>>,
    views: &Views<'_>,
) -> Vec<Flaw> {
    let by_patch: HashMap<&str, &Approval> =
        approvals.iter().map(|a| (a.patch.as_str(), a)).collect();
    let in_catalog: std::collections::HashSet<&str> =
        views.catalog.iter().map(|p| p.id.as_str()).collect();
    let mut out = Vec::new();
    for run in runs {
        let Some(endpoint) = views.endpoints.get(run.endpoint.as_str()) else {
            continue;
        };
        let os = endpoint.os.as_deref().map(normalize);
        let basis = views
            .matcher
            .for_endpoint(endpoint, &views.approved)
            .source
            .as_str();
        for (i, patch) in views.catalog.iter().enumerate() {
            let approval = by_patch.get(patch.id.as_str()).copied();
            if approval.is_some_and(|a| a.decision == Decision::Declined) {
                continue;
            }
            if !views.matcher.applies(endpoint, i, &os) {
                continue;
            }
            let released = patch.released.unwrap_or(cycle.released_at);
            let corrected = match (approval, run.installed_at) {
                (Some(a), Some(installed)) if approved(a) => match &a.sign_off {
                    Some(s) if s.at > installed => None,
                    _ => Some(installed),
                },
                _ => None,
            };
            out.push(Flaw {
                client: client.to_string(),
                endpoint: run.endpoint.to_string(),
                patch: patch.id.to_string(),
                severity: patch.severity,
                released,
                events: FlawEvents {
                    identified: Some(cycle.opened_at),
                    reported: recorded.get(patch.id.as_str()).copied(),
                    corrected,
                },
                applicability: basis.to_owned(),
                auto_approved: approval.is_some_and(|a| a.decision == Decision::AutoApproved),
            });
        }
        // Older missing updates: reported by the scan, not in the month's catalog, dated by
        // what the RMM knows of them (`needed`), else by the cycle's opening.
        let needed: HashMap<&str, &patchflow_core::contract::NeededUpdateDoc> = run
            .doc
            .needed
            .iter()
            .flatten()
            .map(|n| (n.id.as_str(), n))
            .collect();
        let mut older: Vec<&str> = run
            .doc
            .applicable
            .iter()
            .flatten()
            .map(String::as_str)
            .chain(needed.keys().copied())
            .filter(|id| !in_catalog.contains(id))
            .collect();
        older.sort_unstable();
        older.dedup();
        for id in older {
            let n = needed.get(id);
            let released = n
                .and_then(|n| n.released.as_deref())
                .and_then(|t| patchflow_core::schedule::parse_instant(t).ok())
                .unwrap_or(cycle.opened_at);
            out.push(Flaw {
                client: client.to_string(),
                endpoint: run.endpoint.to_string(),
                patch: id.to_owned(),
                severity: n.and_then(|n| n.severity),
                released,
                events: FlawEvents {
                    identified: Some(cycle.opened_at),
                    reported: Some(cycle.opened_at),
                    corrected: None,
                },
                applicability: Applicability::Reported.as_str().to_owned(),
                auto_approved: false,
            });
        }
    }
    out
}

fn json<T: serde::Serialize>(what: &str, v: &T) -> Result<Vec<u8>, HandlerError> {
    serde_json::to_vec_pretty(v).map_err(|e| HandlerError::Poison(format!("encode {what}: {e}")))
}

/// The bundle's PNG summary.
#[cfg(feature = "render")]
fn summary_png(summary: &patchflow_evidence::record::Summary) -> Result<Vec<u8>, String> {
    patchflow_evidence::png::render(summary).map_err(|e| e.to_string())
}

/// Without the `render` feature there is no rasterizer and no font: only evidence-archiver
/// archives evidence, and it is built with the feature.
#[cfg(not(feature = "render"))]
fn summary_png(_summary: &patchflow_evidence::record::Summary) -> Result<Vec<u8>, String> {
    Err(
        "this binary was built without patchflow-pipeline's `render` feature (evidence-archiver \
         and the CLI enable it; no other function archives evidence)"
            .to_owned(),
    )
}

/// A bundle's pieces: its record, the report and its image, and its CSVs. `at` names the
/// bundle in errors.
fn pieces<T: serde::Serialize>(
    at: &Bundle<'_>,
    record: &T,
    summary: &patchflow_evidence::record::Summary,
    report: impl FnOnce(&[u8]) -> String,
    csvs: Vec<(&'static str, Result<String, csv::CsvError>)>,
) -> Result<Vec<Piece>, HandlerError> {
    let render_err = |name: &str, e: &dyn std::fmt::Display| match at.key(name) {
        Ok(key) => HandlerError::Poison(format!("render {key}: {e}")),
        Err(other) => other,
    };
    let png = summary_png(summary).map_err(|e| render_err(SUMMARY, &e))?;
    let report = report(&png);
    let mut out = vec![
        Piece {
            name: RECORD,
            bytes: json(&at.key(RECORD)?.as_path(), record)?,
            content_type: "application/json",
        },
        Piece {
            name: REPORT,
            bytes: report.into_bytes(),
            content_type: "text/html; charset=utf-8",
        },
        Piece {
            name: SUMMARY,
            bytes: png,
            content_type: "image/png",
        },
    ];
    for (name, text) in csvs {
        out.push(Piece {
            name,
            bytes: text.map_err(|e| render_err(name, &e))?.into_bytes(),
            content_type: "text/csv",
        });
    }
    Ok(out)
}

fn tier_pieces(at: &Bundle<'_>, record: &TierRecord) -> Result<Vec<Piece>, HandlerError> {
    pieces(
        at,
        record,
        &record.summary(),
        |png| html::tier_report(record, png),
        vec![
            (OUTCOMES, csv::outcomes(record)),
            (SLA, csv::flaws(&record.sla)),
        ],
    )
}

fn cycle_pieces(at: &Bundle<'_>, record: &CycleRecord) -> Result<Vec<Piece>, HandlerError> {
    pieces(
        at,
        record,
        &record.summary(),
        |png| html::cycle_report(record, png),
        vec![(SLA, csv::flaws(&record.sla))],
    )
}

/// A record as its bundle's first writing attempt built it, kept put-once in the state store:
/// a later attempt (a redelivery after a crash) writes the same bytes even when approvals,
/// root causes, the exception register or the retention setting changed in between.
#[derive(serde::Serialize, serde::Deserialize)]
struct Snapshot<R> {
    record: R,
    retention: Retention,
}

/// The document kind of bundle snapshots (id: `{bundle}/{client}`).
const SNAPSHOT_KIND: &str = "evidence.record";

async fn snapshot<X, R>(
    x: &X,
    cycle: CycleId,
    id: &str,
    build: impl FnOnce() -> Snapshot<R>,
) -> Result<Snapshot<R>, HandlerError>
where
    X: Ports,
    R: serde::Serialize + serde::de::DeserializeOwned,
{
    let state = &x.env().state;
    if let Some((kept, _)) = records::load(state, cycle, SNAPSHOT_KIND, id).await? {
        return Ok(kept);
    }
    let fresh = build();
    match records::save(state, cycle, SNAPSHOT_KIND, id, &fresh, None).await {
        Ok(_) => Ok(fresh),
        // Another delivery kept its snapshot first: write what it will write.
        Err(PortError::Conflict(_)) => records::must_load(state, cycle, SNAPSHOT_KIND, id)
            .await
            .map(|(kept, _)| kept),
        Err(e) => Err(e.into()),
    }
}

fn retention<X: Ports>(x: &X, from: DateTime<Utc>) -> Retention {
    let settings = &x.env().settings;
    Retention {
        mode: settings.lock_mode,
        retain_until: from + settings.retention,
    }
}

/// The document kind of a tier's per-client archive shards (id: the client), indexed by
/// phase ([`SHARD_PENDING`] until the client's part is archived, then [`SHARD_DONE`]).
fn archive_kind(tier: &TierId) -> String {
    format!("archive.{tier}")
}

/// A client's part of a tier, not archived yet.
const SHARD_PENDING: &str = "pending";
/// A client's part of a tier, archived.
const SHARD_DONE: &str = "done";

/// Whether a client's part of a tier is archived.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct ArchiveShard {
    done: bool,
}

/// Writes a client's archive record of a tier (create when `expected` is `None`) with its
/// phase; a `Conflict` (another delivery wrote it first) is no error.
async fn mark_part(
    state: &impl DocStore,
    cycle: CycleId,
    tier: &TierId,
    client: &ClientId,
    done: bool,
    expected: Option<u64>,
) -> Result<(), HandlerError> {
    let kind = archive_kind(tier);
    let body = serde_json::to_string(&ArchiveShard { done })
        .map_err(|e| HandlerError::Poison(format!("encode {kind}: {e}")))?;
    let index = DocIndex {
        due: None,
        phase: Some(if done { SHARD_DONE } else { SHARD_PENDING }.to_owned()),
    };
    match state
        .put_doc_indexed(cycle, &kind, client.as_str(), &body, expected, &index)
        .await
    {
        Ok(_) | Err(PortError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The clients with endpoints in a tier (a plan kept before it listed them: its own client).
fn tier_clients(plan: &TierPlan) -> Vec<ClientId> {
    if plan.clients.is_empty() {
        return plan.client.iter().cloned().collect();
    }
    plan.clients.clone()
}

/// Archives a validated tier and closes it, a client at a time: the message without a client
/// coordinates ([`coordinate`]), each client's archives its part ([`archive_client`]). The
/// cycle's roll-up follows its last tier.
pub async fn archive_tier<X: Ports>(
    x: &X,
    cycle: CycleId,
    msg: ArchiveTier,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    match &msg.client {
        Some(client) => archive_client(x, cycle, &msg.tier, client).await,
        None => coordinate(x, cycle, &msg.tier, now).await,
    }
}

/// A validated tier's coordinator: once its soak (a pilot's) is over and its kept compliance
/// notes are sent, one message per client whose part is not archived yet; once every client's
/// is, the tier closes. Its work grows with the tier's clients, never with its endpoints.
async fn coordinate<X: Ports>(
    x: &X,
    cycle: CycleId,
    tier: &TierId,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    let env = x.env();
    let record = records::tier_record(&env.state, cycle, tier).await?;
    match record.state {
        TierState::Validated => {}
        TierState::Closed => {
            // A redelivery after the close: the roll-up may be what is left to send.
            let rolled = roll_up(x, cycle).await?;
            return Ok(format!("{tier} is closed{}", rolled_note(rolled)));
        }
        other => {
            return Ok(format!(
                "{tier} is {other}, not validated: nothing to archive"
            ))
        }
    }
    // A validated pilot is archived only after its soak (the tick re-checks it daily until then).
    let cycle_doc = records::open_cycle(&env.state, cycle).await?;
    match crate::rollout::pilot_soak(x, &cycle_doc, tier, now).await? {
        crate::rollout::PilotSoak::Done => {}
        crate::rollout::PilotSoak::Soaking { until } => {
            return Ok(format!(
                "{tier} soaking until {}: archived after its soak",
                patchflow_core::schedule::utc::format(&until)
            ))
        }
        crate::rollout::PilotSoak::Unhealthy => {
            return Ok(format!("{tier} failed during its soak: not archived"))
        }
    }
    let (plan, _): (TierPlan, u64) =
        records::must_load(&env.state, cycle, TIER_KIND, tier.as_str()).await?;
    // The kept life-cycle notes go before the completion notes: at most a fixed number per
    // invocation, and the tier's clients are archived only once the PSA has taken every one.
    let flushed = crate::compliance::flush(x, cycle, tier).await?;
    if flushed.unsent > 0 {
        let words = format!(
            "not closed: {} compliance life-cycle note(s) not yet taken by the PSA (at most {} \
             are sent per invocation); retried on the next tick",
            flushed.unsent,
            crate::compliance::FLUSH_LIMIT
        );
        warn!(%cycle, %tier, requirement = %words, "tier stays open");
        record_last_decision(x, cycle, tier, &words).await?;
        return Ok(format!("{tier}: {words}"));
    }
    let kind = archive_kind(tier);
    let clients = tier_clients(&plan);
    let ids: Vec<String> = clients.iter().map(|c| c.as_str().to_owned()).collect();
    let mut shards: HashMap<String, ArchiveShard> = HashMap::new();
    for chunk in ids.chunks(records::MEMBERS_SHARD) {
        for doc in env.state.get_docs(cycle, &kind, chunk).await? {
            let shard: ArchiveShard =
                serde_json::from_str(&doc.body).map_err(|e| corrupt(&kind, e))?;
            shards.insert(doc.id, shard);
        }
    }
    let hour = now.format("%Y%m%dT%H");
    let mut sends = Vec::new();
    for client in &clients {
        match shards.get(client.as_str()) {
            Some(s) if s.done => continue,
            Some(_) => {}
            None => {
                mark_part(&env.state, cycle, tier, client, false, None).await?;
            }
        }
        sends.push(
            ArchiveTier {
                tier: tier.clone(),
                client: Some(client.clone()),
            }
            .envelope(
                cycle,
                format!("{cycle}/archive/{tier}/{client}/{hour}"),
                Some(tier),
            ),
        );
    }
    if !sends.is_empty() {
        env.queues.send_batch(ArchiveTier::STAGE, &sends).await?;
        return Ok(format!(
            "{tier}: {} of {} client(s) to archive, one message each",
            sends.len(),
            clients.len()
        ));
    }
    match env
        .state
        .transition_tier(cycle, tier, record.version, TierEvent::Close, now)
        .await
    {
        Ok(_) | Err(PortError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    info!(%cycle, %tier, clients = clients.len(), "tier closed");
    let rolled = roll_up(x, cycle).await?;
    Ok(format!(
        "{tier} closed: {} client(s) archived{}",
        clients.len(),
        rolled_note(rolled)
    ))
}

/// A client's part of a validated tier: its bundle, its compliance ticket completed and closed
/// with its failure tickets, its closure in the RMM. Reads only the client's runs; the last
/// client's part to finish asks the coordinator to close the tier.
async fn archive_client<X: Ports>(
    x: &X,
    cycle: CycleId,
    tier: &TierId,
    client: &ClientId,
) -> Result<String, HandlerError> {
    let env = x.env();
    let record = records::tier_record(&env.state, cycle, tier).await?;
    match record.state {
        TierState::Validated => {}
        TierState::Closed => return Ok(format!("{tier} is closed: {client}'s part with it")),
        other => {
            return Ok(format!(
                "{tier} is {other}, not validated: nothing to archive"
            ))
        }
    }
    let kind = archive_kind(tier);
    let shard = env.state.get_doc(cycle, &kind, client.as_str()).await?;
    let shard_version = match &shard {
        Some(doc) => {
            let s: ArchiveShard = serde_json::from_str(&doc.body).map_err(|e| corrupt(&kind, e))?;
            if s.done {
                return Ok(format!("{tier}: {client}'s part is archived"));
            }
            Some(doc.version)
        }
        None => None,
    };
    let (plan, _): (TierPlan, u64) =
        records::must_load(&env.state, cycle, TIER_KIND, tier.as_str()).await?;
    let cycle_doc = records::open_cycle(&env.state, cycle).await?;
    let validated_at = record.updated_at;
    let retention = retention(x, validated_at);
    let runs: Vec<Run> = records::client_runs(&env.state, cycle, tier, client)
        .await?
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    if runs.is_empty() {
        return Err(HandlerError::Poison(format!(
            "{tier} lists {client} among its clients, but none of its runs is the client's"
        )));
    }

    // The endpoints' closure requirements first: a part that cannot close writes no evidence.
    // The tier's own (evidence retained, ticket updated, report attached) are checked below,
    // from what the evidence store and the PSA answer.
    // An up-to-date endpoint had nothing installed or rebooted: nothing of it to close.
    let endpoint_closure = |r: &Run| EndpointClosure {
        endpoint: r.endpoint.clone(),
        reboot_confirmed_at: r.reboot_confirmed_at,
        checks_passed: r.status == RunStatus::Validated,
        failure_ticket: None,
    };
    let pending = ClosureRecord {
        kind: plan.kind,
        ticket_updated: false,
        compliance_report_attached: false,
        evidence_retained: false,
        endpoints: runs
            .iter()
            .filter(|r| !r.up_to_date)
            .map(endpoint_closure)
            .collect(),
    };
    if let Err(missing) = check_closure(&pending, &mut Trace::new()) {
        let missing: Vec<_> = missing
            .into_iter()
            .filter(|m| {
                !matches!(
                    m,
                    Missing::TicketUpdate | Missing::ComplianceReport | Missing::EvidenceRetention
                )
            })
            .collect();
        if !missing.is_empty() {
            return Err(HandlerError::Poison(format!(
                "{tier} cannot close for {client}: {}",
                serde_json::to_string(&missing).unwrap_or_default()
            )));
        }
    }

    // The client's failures in the tier, by the ids its runs keep.
    let mut failures: Vec<FailureRecord> = Vec::new();
    for id in runs.iter().flat_map(|r| &r.failures) {
        if let Some(f) = env.state.get_failure(cycle, id).await? {
            if &f.tier == tier && &f.client == client {
                failures.push(f);
            }
        }
    }
    failures.sort_by(|a, b| a.id.cmp(&b.id));
    failures.dedup_by(|a, b| a.id == b.id);
    // Decisions as they stood when the tier validated, so a repeat writes the same bytes; when
    // each was first recorded, which never changes.
    let all_approvals = env.state.list_approvals(cycle).await?;
    let recorded: HashMap<String, DateTime<Utc>> = all_approvals
        .iter()
        .filter_map(|a| Some((a.patch.to_string(), a.recorded_at?)))
        .collect();
    let approvals: Vec<Approval> = all_approvals
        .into_iter()
        .filter(|a| a.sign_off.as_ref().is_none_or(|s| s.at <= validated_at))
        .collect();
    let exceptions: Vec<ExceptionEntry> = env
        .state
        .list_exceptions()
        .await?
        .into_iter()
        .filter(|x| x.signed_at.is_none_or(|t| t <= validated_at))
        .collect();

    let catalog = catalog_patches(&cycle_doc)?;
    let views = Views::new(&cycle_doc, &catalog, &runs, &approvals)?;
    let client_runs: Vec<&Run> = runs.iter().collect();
    let client_runs = &client_runs;
    let mut written = 0;
    let tickets: Vec<&FailureRecord> = failures.iter().filter(|f| &f.client == client).collect();
    let excluded: Vec<Excluded> =
        records::load(&env.state, cycle, records::EXCLUDED_KIND, client.as_str())
            .await?
            .map(|(e, _)| e)
            .unwrap_or_default();
    let snapshot_id = format!("{}/{client}", tier);
    let kept = snapshot(x, cycle, &snapshot_id, || {
        let flaws = flaws(
            &cycle_doc,
            client,
            client_runs,
            &approvals,
            &recorded,
            &views,
        );
        let record = TierRecord {
            schema: record::SCHEMA,
            cycle,
            client: client.to_string(),
            tier: tier.to_string(),
            kind: kind_name(plan.kind).to_owned(),
            wave: plan.wave.as_str().to_owned(),
            released_at: cycle_doc.released_at,
            opened_at: cycle_doc.opened_at,
            validated_at,
            outcomes: client_runs
                .iter()
                .map(|r| outcome(r, views.applicability(r)))
                .collect(),
            excluded: excluded
                .iter()
                .filter(|e| e.kind.is_none_or(|k| k == plan.kind))
                .map(|e| ExcludedEndpoint {
                    endpoint: e.endpoint.to_string(),
                    hostname: e.hostname.clone().unwrap_or_else(|| e.endpoint.to_string()),
                    reason: e.scope.clone(),
                })
                .collect(),
            approvals: approvals
                .iter()
                .map(|a| approval_line(a, &cycle_doc))
                .collect(),
            exceptions: exceptions
                .iter()
                .filter(|x| x.client.as_ref().is_none_or(|c| c == client))
                .map(exception_line)
                .collect(),
            tickets: tickets.iter().map(|f| ticket_line(f, true)).collect(),
            sla: SlaSection::judge(
                &env.policy.sla,
                env.policy.approval.time_to_patch_target,
                &flaws,
                validated_at,
            ),
        };
        Snapshot { record, retention }
    })
    .await?;
    let tier_record = kept.record;
    let bundle = Bundle {
        cycle,
        client,
        bundle: tier.as_str(),
        closed_at: validated_at,
        retention: kept.retention,
    };
    let done = write_bundle(x, &bundle, tier_pieces(&bundle, &tier_record)?).await?;
    written += done.objects;

    // The evidence's locks as the store reads them back (not as the writes asked for them).
    let retained = lock_read_back(x, &bundle, &done.manifest).await?;

    // The PSA: the tier's compliance ticket (opened when the tier deployed, its kept
    // life-cycle notes sent above) with the summary image and the completion status, then
    // closed; the failure tickets of its endpoints closed with it.
    let counts = tier_record.counts();
    let patched = counts.patched + counts.patched_after_retry;
    let up_to_date = counts.up_to_date;
    let mut opened = crate::compliance::new_ticket(cycle, tier, client);
    opened.summary = format!("Patch compliance {cycle} {}: {patched} patched", tier);
    let ticket = env.psa.open_ticket(&opened).await?;
    // The seed's "screenshot of patch compliance report attached": the summary image as the
    // evidence store holds it (the bytes its manifest hashes), once per client and tier.
    let summary_key = bundle.key(SUMMARY)?;
    let (summary_png, _) = env.evidence.get(&summary_key).await?;
    let attached = env
        .psa
        .attach(
            &ticket,
            &Attachment {
                title: format!("patchflow {cycle} {} {client} compliance summary", tier),
                file_name: format!("{cycle}-{}-{client}-{SUMMARY}", tier),
                content_type: "image/png".to_owned(),
                bytes: summary_png,
            },
        )
        .await;
    let confirmations: Vec<String> = client_runs
        .iter()
        .map(|r| {
            if r.up_to_date {
                return format!(
                    "{}: up to date (its patch scan showed nothing approved missing)",
                    r.endpoint
                );
            }
            format!(
                "{}: reboot confirmed {}",
                r.endpoint,
                r.reboot_confirmed_at
                    .map(|t| utc::format(&t))
                    .unwrap_or_else(|| "-".into())
            )
        })
        .collect();
    let sla = &tier_record.sla;
    let breaches = sla.breaches.len();
    let document = attached
        .as_ref()
        .map_or("-", |a| a.document.as_str())
        .to_owned();
    let note = format!(
        "Completed. Compliance report: {}; its summary image {} attached (document \
         {document}); evidence listed with SHA-256 in {} (sha256 {}).\n\
         Endpoints: {}.\n\
         3.14.1: {} flaw(s), {breaches} time frame(s) breached; {}.\n{}",
        bundle.key(REPORT)?.as_path(),
        summary_key.as_path(),
        done.manifest.as_path(),
        done.sha256,
        counts_words(&counts),
        sla.flaws.len(),
        time_to_patch_words(sla),
        confirmations.join("\n")
    );
    // The note says the summary is attached and the evidence retained: it waits for both.
    let noted = match (&attached, &retained) {
        (Err(_), _) => {
            Err("not sent: it names the summary image, which is not attached".to_owned())
        }
        (_, Err(_)) => Err("not sent: the evidence is not retained yet".to_owned()),
        (Ok(_), Ok(())) => env
            .psa
            .add_note(
                &ticket,
                &format!("{cycle}/{}/{client}/completed", tier),
                &note,
            )
            .await
            .map_err(|e| with_causes(&e)),
    };
    // The tier's requirements for this client, from what the systems answered: the
    // evidence's locks read back from the store, the completion note the PSA says it
    // holds, the summary the PSA says is attached.
    let closure = ClosureRecord {
        kind: plan.kind,
        ticket_updated: noted.as_ref().is_ok_and(|n| !n.note.is_empty()),
        compliance_report_attached: attached.as_ref().is_ok_and(|a| !a.document.is_empty()),
        evidence_retained: retained.is_ok(),
        endpoints: client_runs
            .iter()
            .filter(|r| !r.up_to_date)
            .map(|r| endpoint_closure(r))
            .collect(),
    };
    if let Err(missing) = check_closure(&closure, &mut Trace::new()) {
        let why: Vec<String> = missing
            .iter()
            .map(|m| match m {
                Missing::TicketUpdate => format!(
                    "ticket_update (the PSA did not take the completion note on ticket \
                     {ticket}: {})",
                    noted
                        .as_ref()
                        .err()
                        .map_or("no note id in its answer", String::as_str)
                ),
                Missing::ComplianceReport => format!(
                    "compliance_report (the summary image is not attached to ticket \
                     {ticket}: {})",
                    attached.as_ref().err().map_or_else(
                        || "no document id in the PSA's answer".to_owned(),
                        with_causes
                    )
                ),
                Missing::EvidenceRetention => format!(
                    "evidence_retention ({})",
                    retained.as_ref().err().map_or("-", String::as_str)
                ),
                other => serde_json::to_string(other).unwrap_or_default(),
            })
            .collect();
        let words = format!(
            "not closed: closure requirement(s) for {client} not met: {}; retried on the \
             next tick",
            why.join("; ")
        );
        warn!(%cycle, %tier, %client, requirement = %words, "tier stays open");
        record_last_decision(x, cycle, tier, &words).await?;
        return Ok(format!("{}: {words}", tier));
    }
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

    // The closure where a technician sees it in the RMM: once per client and tier.
    env.rmm
        .record_closure(
            &format!("{cycle}/closure/{}/{client}", tier),
            &TierClosure {
                client: client.clone(),
                cycle,
                tier: tier.clone(),
                closed_at: validated_at,
                summary: format!(
                    "{patched} of {} endpoint(s) patched and validated, {up_to_date} up \
                     to date, {} failure ticket(s); PSA compliance ticket {ticket}, summary \
                     attached",
                    client_runs.len(),
                    tickets.len()
                ),
            },
        )
        .await?;

    // This client's part is done; the last part to finish asks the coordinator to close the
    // tier (the index may lag: the hourly tick's coordinator closes it then).
    mark_part(&env.state, cycle, tier, client, true, shard_version).await?;
    info!(%cycle, %tier, %client, objects = written, "client's part archived");
    let last = !env
        .state
        .any_doc_in_phase(cycle, &kind, &[SHARD_PENDING])
        .await?;
    if last {
        let close = ArchiveTier {
            tier: tier.clone(),
            client: None,
        }
        .envelope(
            cycle,
            format!("{cycle}/archive/{tier}/parts-done"),
            Some(tier),
        );
        env.queues
            .send_batch(ArchiveTier::STAGE, std::slice::from_ref(&close))
            .await?;
    }
    Ok(format!(
        "{tier}: {client}'s part archived: {written} evidence object(s){}",
        if last { "; the tier closes next" } else { "" }
    ))
}

/// Reads back the lock the store holds on every object of a written bundle; `Err` names the
/// first object that is not locked as the bundle requires (COMPLIANCE or the bundle's mode,
/// until at least its retain-until).
async fn lock_read_back<X: Ports>(
    x: &X,
    bundle: &Bundle<'_>,
    manifest: &EvidenceKey,
) -> Result<Result<(), String>, HandlerError> {
    let env = x.env();
    let mut keys = Vec::new();
    for name in [RECORD, REPORT, SUMMARY, OUTCOMES, SLA] {
        keys.push(bundle.key(name)?);
    }
    keys.push(manifest.clone());
    let wanted = bundle.retention;
    for key in keys {
        match env.evidence.retention(&key).await {
            Ok(Some(r))
                if r.mode == wanted.mode
                    && r.retain_until.timestamp() >= wanted.retain_until.timestamp() => {}
            Ok(Some(r)) => {
                return Ok(Err(format!(
                    "{} is locked {:?} until {}, not {:?} until {}",
                    key.as_path(),
                    r.mode,
                    utc::format(&r.retain_until),
                    wanted.mode,
                    utc::format(&wanted.retain_until)
                )))
            }
            Ok(None) => {
                return Ok(Err(format!(
                    "{} carries no lock in the store",
                    key.as_path()
                )))
            }
            Err(PortError::NotFound(_)) => {
                return Ok(Err(format!("{} is not in the store", key.as_path())))
            }
            Err(e @ PortError::Transient { .. }) => return Err(e.into()),
            Err(e) => {
                return Ok(Err(format!(
                    "the store did not report the lock of {}: {}",
                    key.as_path(),
                    with_causes(&e)
                )))
            }
        }
    }
    Ok(Ok(()))
}

/// An error with its causes, as one line.
fn with_causes(e: &PortError) -> String {
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Keeps a tier's last decision where `patchflow status` shows it.
async fn record_last_decision<X: Ports>(
    x: &X,
    cycle: CycleId,
    tier: &patchflow_core::ports::state::TierId,
    words: &str,
) -> Result<(), HandlerError> {
    let state = &x.env().state;
    let (mut plan, version): (TierPlan, u64) =
        records::must_load(state, cycle, TIER_KIND, tier.as_str()).await?;
    if plan.last_decision.as_deref() == Some(words) {
        return Ok(());
    }
    plan.last_decision = Some(words.to_owned());
    match records::save(state, cycle, TIER_KIND, tier.as_str(), &plan, Some(version)).await {
        // Written meanwhile: the next attempt records its own.
        Ok(_) | Err(PortError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A client's endpoint counts in words, every non-zero category.
fn counts_words(c: &patchflow_core::rules::outcome::Counts) -> String {
    use patchflow_core::rules::outcome::Category;
    let parts: Vec<String> = Category::ALL
        .iter()
        .filter(|cat| c.get(**cat) > 0)
        .map(|cat| format!("{} {}", c.get(*cat), cat.label()))
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

/// The 48-hour time to patch of auto-approved patches, in words.
fn time_to_patch_words(sla: &SlaSection) -> String {
    match &sla.time_to_patch {
        None => "time to patch not measured".to_owned(),
        Some(t) if t.met + t.missed + t.running == 0 => format!(
            "time to patch (auto-approved, target {} h): no auto-approved flaw",
            t.target_hours
        ),
        Some(t) => format!(
            "time to patch (auto-approved, target {} h): {} met, {} missed, {} running{}",
            t.target_hours,
            t.met,
            t.missed,
            t.running,
            t.longest_hours
                .map(|h| format!(", longest {h} h"))
                .unwrap_or_default()
        ),
    }
}

fn rolled_note(rolled: usize) -> String {
    if rolled == 0 {
        String::new()
    } else {
        format!("; the cycle's roll-up sent for {rolled} client(s)")
    }
}

/// When every tier of the cycle is closed: one message per client for its roll-up bundle
/// ([`roll_up_client`]). Returns how many were sent (0 while a tier is open).
async fn roll_up<X: Ports>(x: &X, cycle: CycleId) -> Result<usize, HandlerError> {
    let env = x.env();
    let tiers = env.state.list_tiers(cycle).await?;
    if tiers.is_empty() || tiers.iter().any(|t| t.state != TierState::Closed) {
        return Ok(0);
    }
    let Some(closed_at) = tiers.iter().map(|t| t.updated_at).max() else {
        return Ok(0);
    };
    let cycle_doc = records::open_cycle(&env.state, cycle).await?;
    let sends: Vec<_> = cycle_doc
        .scopes
        .iter()
        .map(|s| {
            RollUpClient {
                client: s.client.clone(),
                closed_at,
            }
            .envelope(cycle, format!("{cycle}/roll-up/{}", s.client), None)
        })
        .collect();
    env.queues.send_batch(RollUpClient::STAGE, &sends).await?;
    Ok(sends.len())
}

/// A client's roll-up bundle of a closed cycle (once), from its tiers' evidence: reads only
/// the client's.
pub async fn roll_up_client<X: Ports>(
    x: &X,
    cycle: CycleId,
    msg: RollUpClient,
) -> Result<String, HandlerError> {
    let env = x.env();
    let client = &msg.client;
    let closed_at = msg.closed_at;
    // The client's tiers' manifests, from the index of what was written.
    let tier_manifests: Vec<(EvidenceKey, String)> = env
        .state
        .list_client_evidence(cycle, client)
        .await?
        .into_iter()
        .filter(|rec| rec.key.name() == MANIFEST && rec.key.tier() != CYCLE_BUNDLE)
        .map(|rec| (rec.key.clone(), rec.sha256.to_hex()))
        .collect();
    if tier_manifests.is_empty() {
        return Ok(format!(
            "{client} has no tier evidence in {cycle}: nothing to roll up"
        ));
    }
    let probe = Bundle {
        cycle,
        client,
        bundle: CYCLE_BUNDLE,
        closed_at,
        retention: retention(x, closed_at),
    };
    // Written by an earlier delivery: its tiers' records need not be read again.
    if stored(x, &probe).await?.is_some() {
        return Ok(format!("{client}'s roll-up of {cycle} is written"));
    }
    let id = format!("{CYCLE_BUNDLE}/{client}");
    let kept: Snapshot<CycleRecord> =
        match records::load(&env.state, cycle, SNAPSHOT_KIND, &id).await? {
            Some((kept, _)) => kept,
            None => {
                let record = cycle_record(x, cycle, client, tier_manifests, closed_at).await?;
                snapshot(x, cycle, &id, || Snapshot {
                    record,
                    retention: probe.retention,
                })
                .await?
            }
        };
    let bundle = Bundle {
        retention: kept.retention,
        ..probe
    };
    let done = write_bundle(x, &bundle, cycle_pieces(&bundle, &kept.record)?).await?;
    info!(%cycle, %client, breaches = kept.record.sla.breaches.len(), "cycle rolled up");
    Ok(format!(
        "{client}'s roll-up of {cycle}: {} evidence object(s)",
        done.objects
    ))
}

/// A client's roll-up of a cycle from its tiers' stored records, judged at `closed_at`.
async fn cycle_record<X: Ports>(
    x: &X,
    cycle: CycleId,
    client: &ClientId,
    tier_manifests: Vec<(EvidenceKey, String)>,
    closed_at: DateTime<Utc>,
) -> Result<CycleRecord, HandlerError> {
    let env = x.env();
    let cycle_doc = records::open_cycle(&env.state, cycle).await?;
    let mut lines = Vec::new();
    let mut flaws = Vec::new();
    for (manifest, sha) in tier_manifests {
        let key = EvidenceKey::new(cycle, client, manifest.tier(), RECORD)
            .map_err(|e| HandlerError::Poison(e.to_string()))?;
        let (bytes, _) = env.evidence.get(&key).await?;
        let tier: TierRecord =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(&key.as_path(), e))?;
        flaws.extend(tier.sla.flaws.iter().map(|f| f.flaw(&tier.client)));
        lines.push(TierLine {
            tier: tier.tier.clone(),
            kind: tier.kind.clone(),
            wave: tier.wave.clone(),
            validated_at: tier.validated_at,
            manifest: manifest.as_path(),
            manifest_sha256: sha,
            counts: tier.counts(),
        });
    }
    lines.sort_by(|a, b| (a.validated_at, &a.tier).cmp(&(b.validated_at, &b.tier)));
    let exceptions = env.state.list_exceptions().await?;
    Ok(CycleRecord {
        schema: record::SCHEMA,
        cycle,
        client: client.to_string(),
        released_at: cycle_doc.released_at,
        opened_at: cycle_doc.opened_at,
        closed_at,
        tiers: lines,
        exceptions: exceptions
            .iter()
            .filter(|x| x.client.as_ref().is_none_or(|c| c == client))
            .filter(|x| x.signed_at.is_none_or(|t| t <= closed_at))
            .map(exception_line)
            .collect(),
        sla: SlaSection::judge(
            &env.policy.sla,
            env.policy.approval.time_to_patch_target,
            &flaws,
            closed_at,
        ),
    })
}
