//! The client's PSA compliance ticket through a tier's life: opened when the tier deploys, one
//! per client of the tier under `{cycle}/compliance/{tier}/{client}` (the reference the archiver
//! closes it under, with the evidence), and given a keyed note at each transition: deploying,
//! installs reported, validated, held or blocked by a failure, retried after a root cause.
//!
//! Each handler calls [`note`] in one line just before its transition (a redelivery that finds
//! the transition not done keeps it again, under the same key, and changes nothing), and the
//! operator's root-cause command calls [`retried`]: both only keep every client's note in the
//! state store, a document per note keyed by the transition (and its round), cheap and
//! idempotent. [`flush`] sends kept notes to the PSA, at most [`FLUSH_LIMIT`] per invocation
//! (from the tier's tick, the promotion that deployed it, the soak check and the archiver,
//! which closes nothing while a note is unsent), and marks a note sent only once the PSA took
//! it: no invocation's PSA calls grow with the tier's clients, a PSA outage loses no note and
//! never stops the tier, and a death after the transition loses none either.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use patchflow_core::ids::{ClientId, CycleId};
use patchflow_core::model::Criticality;
use patchflow_core::ports::psa::{NewTicket, Psa};
use patchflow_core::ports::state::{DocIndex, DocStore, TierId};
use patchflow_core::ports::PortError;
use patchflow_core::rules::outcome::{Category, Counts};
use patchflow_core::schedule::utc;
use patchflow_core::tier::TierState;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::env::Ports;
use crate::error::HandlerError;
use crate::messages::EndpointFailed;
use crate::records::{self, run_kind, Run};

/// The most kept notes one invocation sends to the PSA (two calls each: the ticket's open,
/// answered with the ticket already open, and the keyed note).
pub const FLUSH_LIMIT: usize = 50;
use crate::summary::run_category;

/// The compliance ticket's reference for a client's part of a tier.
pub fn external_ref(cycle: CycleId, tier: &TierId, client: &ClientId) -> String {
    format!("{cycle}/compliance/{tier}/{client}")
}

/// The compliance ticket of a client's part of a tier, as opened when the tier deploys (opening
/// it again answers with the same ticket).
pub fn new_ticket(cycle: CycleId, tier: &TierId, client: &ClientId) -> NewTicket {
    NewTicket {
        external_ref: external_ref(cycle, tier, client),
        client: client.clone(),
        priority: Criticality::P3,
        summary: format!("Patch compliance {cycle} {tier}"),
        description: format!(
            "Patch cycle {cycle}, tier {tier} for {client}. patchflow notes the tier's life \
             here (deploying, installs reported, validated, held or blocked by a failure, \
             retried after a root cause) and closes the ticket with the compliance evidence \
             once every closure requirement is met."
        ),
    }
}

/// A transition of a tier's life.
#[derive(Debug, Clone, Copy)]
pub enum Life<'a> {
    /// Its windows opened: install and reboot commands go out.
    Deploying,
    /// Every install has reported.
    InstallsReported,
    /// Every endpoint passed its post-reboot checks.
    Validated,
    /// A failure held the tier (blocked it, on a critical system).
    Failed {
        /// The failure's id.
        failure: &'a str,
        /// The failed endpoint's client (only its own ticket names the endpoint).
        client: &'a ClientId,
        /// The failed endpoint.
        endpoint: &'a str,
        /// Where it failed (`install`, `reboot`, `validation`, ...).
        stage: &'a str,
        /// On a critical system: the tier is blocked, not held.
        critical: bool,
    },
}

impl Life<'_> {
    /// The note's key after the ticket's reference; `round` is the tier's highest attempt, so a
    /// tier validated again after a retry gets a new note.
    fn key(&self, round: u32) -> String {
        match self {
            Life::Deploying => "deploying".to_owned(),
            Life::InstallsReported => format!("installs-reported.{round}"),
            Life::Validated => format!("validated.{round}"),
            Life::Failed {
                failure, critical, ..
            } => format!("{}.{failure}", if *critical { "blocked" } else { "held" }),
        }
    }

    fn words(&self, tier: &TierId, to: &ClientId) -> String {
        match self {
            Life::Deploying => format!(
                "Deploying: tier {tier} started; install and reboot commands go out at each \
                 endpoint's window."
            ),
            Life::InstallsReported => {
                format!("Installs reported: every install of tier {tier} has reported.")
            }
            Life::Validated => format!(
                "Validated: every endpoint of tier {tier} passed its post-reboot checks; the \
                 evidence is archived next."
            ),
            Life::Failed {
                failure,
                client,
                endpoint,
                stage,
                critical,
            } => {
                let state = if *critical { "Blocked" } else { "Held" };
                let what = if *critical {
                    "a critical system"
                } else {
                    "an endpoint"
                };
                if *client == to {
                    format!(
                        "{state}: {stage} failed on {endpoint} (failure {failure}); tier {tier} \
                         waits for a documented root cause before the failed endpoints retry."
                    )
                } else {
                    format!(
                        "{state}: {stage} failed on {what} of another client in tier {tier}; \
                         the tier waits for a documented root cause before it retries."
                    )
                }
            }
        }
    }
}

/// A note of the tier's life kept for [`flush`] to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingNote {
    /// The client whose ticket it goes to.
    pub client: ClientId,
    /// The note's key.
    pub key: String,
    /// Its text.
    pub text: String,
    /// Sent and taken by the PSA.
    pub sent: bool,
}

/// The document kind of a tier's kept notes (id: the note's key).
pub fn pending_kind(tier: &TierId) -> String {
    format!("compliance.{tier}")
}

/// Each client's runs in the tier, counted by category.
fn by_client(runs: &[(Run, u64)], state: TierState) -> BTreeMap<ClientId, Counts> {
    let mut out: BTreeMap<ClientId, Counts> = BTreeMap::new();
    for (run, _) in runs {
        out.entry(run.client.clone())
            .or_default()
            .add(run_category(run, state));
    }
    out
}

fn counts_line(client: &ClientId, c: &Counts) -> String {
    let parts: Vec<String> = Category::ALL
        .iter()
        .filter(|cat| c.get(**cat) > 0)
        .map(|cat| format!("{} {}", c.get(*cat), cat.label()))
        .collect();
    format!(
        "{client}'s {} endpoint(s) in the tier: {}.",
        c.in_scope(),
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    )
}

async fn send<X: Ports>(
    x: &X,
    cycle: CycleId,
    tier: &TierId,
    client: &ClientId,
    key: &str,
    text: &str,
) -> Result<(), PortError> {
    let psa = &x.env().psa;
    let ticket = psa.open_ticket(&new_ticket(cycle, tier, client)).await?;
    psa.add_note(&ticket, key, text).await?;
    Ok(())
}

/// The index a kept note waits under until the PSA takes it: all at one due instant (so the
/// due index lists them in key order) and the phase [`UNSENT`]. A sent note is saved without
/// it, so a flush reads only what is left to send, never the tier's every note.
fn unsent_index() -> DocIndex {
    DocIndex {
        due: Some(DateTime::<Utc>::UNIX_EPOCH),
        phase: Some(UNSENT.to_owned()),
    }
}

/// The index phase of notes not sent yet.
const UNSENT: &str = "unsent";

async fn keep<S: DocStore>(
    state: &S,
    cycle: CycleId,
    tier: &TierId,
    note: &PendingNote,
) -> Result<(), HandlerError> {
    let body = serde_json::to_string(note)
        .map_err(|e| PortError::permanent(format!("encode note {}", note.key), e))?;
    match state
        .put_doc_indexed(
            cycle,
            &pending_kind(tier),
            &note.key,
            &body,
            None,
            &unsent_index(),
        )
        .await
    {
        Ok(_) | Err(PortError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Keeps the note of a transition of the tier, `state` being the tier's state once it is done,
/// for each of its clients' compliance tickets, for [`flush`] to send. Only state-store work
/// (the tier's runs read, a create per client); a note already kept stays as it was.
pub async fn note<X: Ports>(
    x: &X,
    cycle: CycleId,
    tier: &TierId,
    life: Life<'_>,
    state: TierState,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let env = x.env();
    // The tier's runs a client at a time: what is held is one client's runs and the counts.
    let parts = records::RunParts::of(&env.state, cycle, tier).await?;
    let mut round = 0;
    let mut counted: BTreeMap<ClientId, Counts> = BTreeMap::new();
    for i in 0..parts.len() {
        let runs = parts.runs(&env.state, cycle, tier, i).await?;
        round = runs.iter().map(|(r, _)| r.attempt).fold(round, u32::max);
        // Each client is in one part only (a plan's clients are distinct).
        counted.extend(by_client(&runs, state));
    }
    for (client, counts) in counted {
        let key = format!("{}/{}", external_ref(cycle, tier, &client), life.key(round));
        let text = format!(
            "{} ({})\n{}",
            life.words(tier, &client),
            utc::format(&now),
            counts_line(&client, &counts)
        );
        let pending = PendingNote {
            client,
            key,
            text,
            sent: false,
        };
        keep(&env.state, cycle, tier, &pending).await?;
    }
    Ok(())
}

/// [`note`] of [`Life::Deploying`].
pub async fn deploying<X: Ports>(
    x: &X,
    cycle: CycleId,
    tier: &TierId,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    note(x, cycle, tier, Life::Deploying, TierState::Deploying, now).await
}

/// [`note`] of [`Life::InstallsReported`].
pub async fn installs_reported<X: Ports>(
    x: &X,
    cycle: CycleId,
    tier: &TierId,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    note(
        x,
        cycle,
        tier,
        Life::InstallsReported,
        TierState::Validating,
        now,
    )
    .await
}

/// [`note`] of [`Life::Validated`].
pub async fn validated<X: Ports>(
    x: &X,
    cycle: CycleId,
    tier: &TierId,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    note(x, cycle, tier, Life::Validated, TierState::Validated, now).await
}

/// The note of [`Life::Failed`]: the failure `failed` (of the run's `attempt`) held the tier
/// (blocked it, `critical`). The failed endpoint's client is told which endpoint failed, under
/// the failure's key; each other client of the tier once per attempt and hold (`held.others.N`,
/// `blocked.others.N`), however many endpoints fail: a failure's work is a point read of the
/// tier's plan and a note per client, never a read of the tier's runs.
pub async fn held<X: Ports>(
    x: &X,
    cycle: CycleId,
    failed: &EndpointFailed,
    attempt: u32,
    critical: bool,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let env = x.env();
    let tier = &failed.tier;
    let life = Life::Failed {
        failure: &failed.id,
        client: &failed.client,
        endpoint: failed.endpoint.as_str(),
        stage: failed.stage.as_str(),
        critical,
    };
    let plan: Option<(crate::records::TierPlan, u64)> =
        records::load(&env.state, cycle, crate::records::TIER_KIND, tier.as_str()).await?;
    let clients = match plan {
        Some((p, _)) if !p.clients.is_empty() => p.clients,
        // A plan written before it listed its clients: the runs tell.
        _ => {
            let runs: Vec<(Run, u64)> = records::list(&env.state, cycle, &run_kind(tier)).await?;
            let mut c: Vec<ClientId> = runs.into_iter().map(|(r, _)| r.client).collect();
            c.sort();
            c.dedup();
            c
        }
    };
    let mut clients = clients;
    if !clients.contains(&failed.client) {
        clients.push(failed.client.clone());
    }
    let word = if critical { "blocked" } else { "held" };
    for client in clients {
        let key = if client == failed.client {
            format!(
                "{}/{}",
                external_ref(cycle, tier, &client),
                life.key(attempt)
            )
        } else {
            format!(
                "{}/{word}.others.{attempt}",
                external_ref(cycle, tier, &client)
            )
        };
        let pending = PendingNote {
            text: format!("{} ({})", life.words(tier, &client), utc::format(&now)),
            client,
            key,
            sent: false,
        };
        keep(&env.state, cycle, tier, &pending).await?;
    }
    Ok(())
}

/// Keeps the note that the tier's failed endpoints are retried after their root causes (the
/// operator's command has no PSA: the tier's next tick sends it).
pub async fn retried<S: DocStore>(
    state: &S,
    cycle: CycleId,
    tier: &TierId,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    // The failed runs from the phase index, the tier's clients from its plan: none of the
    // tier's other runs read.
    let runs: Vec<(Run, u64)> =
        records::runs_in_phase(state, cycle, tier, records::PHASE_FAILED).await?;
    let failed: Vec<&Run> = runs
        .iter()
        .map(|(r, _)| r)
        .filter(|r| r.status == crate::records::RunStatus::Failed)
        .collect();
    let round = failed.iter().map(|r| r.attempt + 1).max().unwrap_or(1);
    let plan: Option<(crate::records::TierPlan, u64)> =
        records::load(state, cycle, crate::records::TIER_KIND, tier.as_str()).await?;
    let mut per_client: BTreeMap<&ClientId, usize> = BTreeMap::new();
    if let Some((p, _)) = &plan {
        for c in &p.clients {
            per_client.entry(c).or_default();
        }
    }
    for r in &failed {
        *per_client.entry(&r.client).or_default() += 1;
    }
    for (client, n) in per_client {
        let text = if n > 0 {
            format!(
                "Retried: root causes documented; {n} failed endpoint(s) of {client} retry in \
                 their next windows (attempt {}). ({})",
                round + 1,
                utc::format(&now)
            )
        } else {
            format!(
                "Retried: root causes documented; tier {tier} leaves its hold and its failed \
                 endpoints (none of {client}'s) retry in their next windows. ({})",
                utc::format(&now)
            )
        };
        let pending = PendingNote {
            client: client.clone(),
            key: format!("{}/retried.{round}", external_ref(cycle, tier, client)),
            text,
            sent: false,
        };
        keep(state, cycle, tier, &pending).await?;
    }
    Ok(())
}

/// What a [`flush`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Notes the PSA took now.
    pub sent: usize,
    /// Notes still unsent (refused now, or beyond this invocation's [`FLUSH_LIMIT`]).
    pub unsent: usize,
}

/// Sends at most [`FLUSH_LIMIT`] of the tier's kept notes that the PSA has not taken yet (in
/// key order), marking each sent once the PSA took it. A PSA error is logged and the note kept
/// for the next flush; only the state store's errors fail the caller.
pub async fn flush<X: Ports>(
    x: &X,
    cycle: CycleId,
    tier: &TierId,
) -> Result<Flushed, HandlerError> {
    let env = x.env();
    let kind = pending_kind(tier);
    // The unsent notes only, in key order, a page of them.
    let page = env
        .state
        .list_due_docs(cycle, &kind, DateTime::<Utc>::UNIX_EPOCH, None, FLUSH_LIMIT)
        .await?;
    let full = page.len() == FLUSH_LIMIT;
    let mut kept = Vec::with_capacity(page.len());
    for (_, doc) in page {
        let note: PendingNote =
            serde_json::from_str(&doc.body).map_err(|e| crate::error::corrupt(&kind, e))?;
        // A note just sent may still be listed by an index that lags (DynamoDB's).
        if !note.sent {
            kept.push((note, doc.version));
        }
    }
    let listed = kept.len();
    let mut sent = 0;
    for (mut pending, version) in kept {
        match send(x, cycle, tier, &pending.client, &pending.key, &pending.text).await {
            Ok(()) => {
                pending.sent = true;
                sent += 1;
                match records::save(
                    &env.state,
                    cycle,
                    &kind,
                    &pending.key,
                    &pending,
                    Some(version),
                )
                .await
                {
                    Ok(_) | Err(PortError::Conflict(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => {
                warn!(%cycle, %tier, note = %pending.key, error = %e, "compliance note still not taken by the PSA");
            }
        }
    }
    if sent > 0 {
        info!(%cycle, %tier, notes = sent, "kept compliance notes sent");
    }
    // How many are left: counted only when there may be more than this page.
    let unsent = if full {
        usize::try_from(env.state.count_docs_in_phase(cycle, &kind, UNSENT).await?)
            .unwrap_or(usize::MAX)
    } else {
        listed - sent
    };
    Ok(Flushed { sent, unsent })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;
    use patchflow_core::ports::clock::ManualClock;
    use patchflow_local::evidence::FsEvidenceStore;
    use patchflow_local::queue::SqliteQueues;
    use patchflow_local::state::SqliteState;
    use patchflow_sim::connectors::{Outcomes, SimPager, SimPsa, SimRmm};

    use super::*;
    use crate::env::{Env, Settings};

    type TestEnv =
        Env<SqliteState, SqliteQueues, FsEvidenceStore, SimRmm<ManualClock>, SimPsa, SimPager>;

    fn env(dir: &std::path::Path) -> TestEnv {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 12, 9, 9, 0, 0).unwrap(),
        ));
        Env {
            state: SqliteState::in_memory().unwrap(),
            queues: SqliteQueues::in_memory(clock.clone(), 5).unwrap(),
            evidence: FsEvidenceStore::open(dir).unwrap(),
            rmm: SimRmm::new(
                Outcomes {
                    seed: 1,
                    failure_rate: 0.0,
                },
                clock,
            ),
            psa: SimPsa::default(),
            pager: SimPager::default(),
            policy: patchflow_core::policy::Policy::default(),
            settings: Settings::default(),
        }
    }

    #[tokio::test]
    async fn kept_notes_go_out_a_bounded_number_per_flush_each_once_and_only_once_taken() {
        let dir = tempfile::tempdir().unwrap();
        let env = env(dir.path());
        let cycle: CycleId = "2026-12".parse().unwrap();
        let tier = TierId::parse("workstations.production").unwrap();
        // A tier of 120 clients: every client's note kept, twice (a redelivery), no PSA call.
        let notes: Vec<PendingNote> = (0..120)
            .map(|i| {
                let c = client(&format!("c{i:03}"));
                PendingNote {
                    key: format!("{}/deploying", external_ref(cycle, &tier, &c)),
                    client: c,
                    text: format!("Deploying: note {i}"),
                    sent: false,
                }
            })
            .collect();
        for n in notes.iter().chain(&notes) {
            keep(&env.state, cycle, &tier, n).await.unwrap();
        }
        assert!(env.psa.tickets().is_empty());
        // The PSA refuses one client's notes: it stays unsent, the rest go out.
        env.psa.refuse_notes(Some("/c000/"));
        let mut rounds = Vec::new();
        for _ in 0..4 {
            let before: usize = env.psa.tickets().iter().map(|t| t.notes.len()).sum();
            let f = flush(&env, cycle, &tier).await.unwrap();
            let after: usize = env.psa.tickets().iter().map(|t| t.notes.len()).sum();
            assert_eq!(after - before, f.sent);
            assert!(f.sent <= FLUSH_LIMIT);
            rounds.push((f.sent, f.unsent));
        }
        // The refused note is tried in every flush, within its bound.
        assert_eq!(rounds, [(49, 71), (49, 22), (21, 1), (0, 1)]);
        // Each taken note is on its client's ticket once, marked sent; the refused one is kept
        // unsent and goes out once the PSA recovers.
        let kept: Vec<(PendingNote, u64)> = records::list(&env.state, cycle, &pending_kind(&tier))
            .await
            .unwrap();
        assert_eq!(kept.len(), 120);
        assert_eq!(kept.iter().filter(|(n, _)| !n.sent).count(), 1);
        env.psa.refuse_notes(None);
        let f = flush(&env, cycle, &tier).await.unwrap();
        assert_eq!(f, Flushed { sent: 1, unsent: 0 });
        assert_eq!(env.psa.tickets().len(), 120);
        assert!(env.psa.tickets().iter().all(|t| t.notes.len() == 1));
        assert_eq!(flush(&env, cycle, &tier).await.unwrap(), Flushed::default());
    }

    fn client(id: &str) -> ClientId {
        ClientId::parse(id).unwrap()
    }

    #[test]
    fn a_failure_names_its_endpoint_only_on_its_own_clients_ticket() {
        let tier = TierId::parse("workstations.pilot").unwrap();
        let (acme, globex) = (client("acme"), client("globex"));
        let life = Life::Failed {
            failure: "ws-7.install.0",
            client: &acme,
            endpoint: "ws-7",
            stage: "install",
            critical: false,
        };
        let own = life.words(&tier, &acme);
        assert!(own.starts_with("Held: install failed on ws-7"), "{own}");
        let other = life.words(&tier, &globex);
        assert!(!other.contains("ws-7"), "{other}");
        assert!(other.contains("another client"), "{other}");
        assert_eq!(life.key(0), "held.ws-7.install.0");
        let blocked = Life::Failed {
            failure: "ws-7.install.0",
            client: &acme,
            endpoint: "ws-7",
            stage: "install",
            critical: true,
        };
        assert_eq!(blocked.key(0), "blocked.ws-7.install.0");
    }

    #[test]
    fn a_tier_validated_again_after_a_retry_gets_a_new_note_key() {
        assert_eq!(Life::Deploying.key(3), "deploying");
        assert_eq!(Life::Validated.key(0), "validated.0");
        assert_eq!(Life::Validated.key(1), "validated.1");
        assert_eq!(Life::InstallsReported.key(1), "installs-reported.1");
        let tier = TierId::parse("servers.acme.pilot").unwrap();
        assert_eq!(
            external_ref("2026-12".parse().unwrap(), &tier, &client("acme")),
            "2026-12/compliance/servers.acme.pilot/acme"
        );
    }

    #[test]
    fn the_counts_line_names_every_category_present() {
        let mut c = Counts::default();
        c.add(Category::Patched);
        c.add(Category::PatchedAfterRetry);
        c.add(Category::UpToDate);
        assert_eq!(
            counts_line(&client("acme"), &c),
            "acme's 3 endpoint(s) in the tier: 1 patched, 1 patched (after retry), 1 up to date."
        );
        assert_eq!(
            counts_line(&client("acme"), &Counts::default()),
            "acme's 0 endpoint(s) in the tier: none."
        );
    }
}
