//! A cycle's opening, a client at a time (ring-promotion): the inventory sync validates the
//! fleet, finds its pilots ([`patchflow_core::plan::fleet_pilots`]), stores the opening and each
//! client's roster, and sends one [`OpenCycle`] per client. Each client's part plans only its
//! endpoints ([`patchflow_core::plan::plan_with`], the same plan as the whole fleet's) and writes
//! its runs, scope shards, members shards, exclusions and exceptions; the last part asks the
//! coordinator, which sums the stored parts into the tiers, queues the approval work and writes
//! the cycle record: once it exists, the cycle is open. A part's work grows with its client,
//! the coordinator's with the number of clients, neither with the fleet.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use patchflow_core::contract::{
    catalog_from_doc, inventory_from_doc, CatalogDoc, ClientDoc, EndpointDoc, InventoryDoc,
};
use patchflow_core::ids::{ClientId, CycleId, EndpointId};
use patchflow_core::model::{Catalog, EndpointKind, Inventory};
use patchflow_core::plan::{plan_with, FleetPilots, Install, Release};
use patchflow_core::ports::queue::QueueSender;
use patchflow_core::ports::state::{
    DocIndex, DocStore, EndpointStore, ExceptionStore, TierId, TierRecord, TierStore,
};
use patchflow_core::ports::PortError;
use patchflow_core::rules::cadence::InstallMode;
use patchflow_core::rules::scope::Scope;
use patchflow_core::rules::waves::Wave;
use patchflow_core::schedule::{utc, Window};
use patchflow_core::tier::TierState;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::env::Ports;
use crate::error::{corrupt, HandlerError};
use crate::messages::{EvaluatePatch, Message, OpenCycle};
use crate::records::{
    self, scope_kind, tier_id, CycleDoc, Excluded, Run, RunStatus, ScopeRef, ScopeScan, ScopeShard,
    TierPlan, CYCLE_ID, CYCLE_KIND, EXCLUDED_KIND, SCOPE_SHARD, TIER_KIND,
};

/// The document kind of a cycle's opening (id [`CYCLE_ID`]).
pub const OPENING_KIND: &str = "opening";
/// The document kind of each client's part of the opening (id: the client), indexed by phase:
/// [`PART_PENDING`] until its runs are written, then [`PART_DONE`].
pub const PART_KIND: &str = "opening-part";
const PART_PENDING: &str = "pending";
const PART_DONE: &str = "done";
/// How many endpoint ids one roster shard holds (a client's endpoints in the synced inventory,
/// in its order; kind `roster.{client}`, id the shard's number).
pub const ROSTER_SHARD: usize = 2_000;
/// Concurrent run writes in a client's part.
const WRITERS: usize = 16;

/// The document kind of a client's roster.
pub fn roster_kind(client: &ClientId) -> String {
    format!("roster.{client}")
}

/// A cycle's opening as the inventory sync stored it: what every client's part plans with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Opening {
    /// The cycle.
    pub cycle: CycleId,
    /// Its Patch Tuesday.
    pub patch_tuesday: NaiveDate,
    /// The release instant.
    #[serde(with = "utc")]
    pub released_at: DateTime<Utc>,
    /// When the inventory sync opened it.
    #[serde(with = "utc")]
    pub opened_at: DateTime<Utc>,
    /// The month's catalog.
    pub catalog: CatalogDoc,
    /// The clients as the inventory had them.
    pub clients: Vec<ClientDoc>,
    /// The fleet's latest pilot workstation window end.
    #[serde(default, with = "utc::option", skip_serializing_if = "Option::is_none")]
    pub workstation_pilot_end: Option<DateTime<Utc>>,
    /// Each client with endpoints in the inventory, and how many roster shards list them.
    pub parts: Vec<PartRef>,
}

impl Opening {
    fn release(&self) -> Release {
        Release {
            cycle: self.cycle,
            patch_tuesday: self.patch_tuesday,
            released_at: self.released_at,
        }
    }
}

/// A client's part of the opening: its roster's size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRef {
    /// The client.
    pub client: ClientId,
    /// Roster shards (`roster.{client}` documents `0` to `shards - 1`).
    pub shards: u32,
}

/// One roster shard: endpoint ids, in the inventory's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    /// At most [`ROSTER_SHARD`].
    pub endpoints: Vec<EndpointId>,
}

/// What a client's part wrote: what the coordinator sums into the tiers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientOpened {
    /// Written (the part is done).
    pub done: bool,
    /// Its endpoints per tier.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<TierPart>,
    /// The fleet's workstation production gate, if the client has a production workstation
    /// to install.
    #[serde(default, with = "utc::option", skip_serializing_if = "Option::is_none")]
    pub workstation_gate: Option<DateTime<Utc>>,
    /// Its server production gate, if it has a server pilot.
    #[serde(default, with = "utc::option", skip_serializing_if = "Option::is_none")]
    pub server_gate: Option<DateTime<Utc>>,
    /// Scope shards written (its in-scope endpoints).
    #[serde(default)]
    pub scope_shards: u32,
    /// Runs written.
    #[serde(default)]
    pub in_scope: usize,
    /// Endpoints left out.
    #[serde(default)]
    pub excluded: usize,
}

/// A client's endpoints in one tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierPart {
    /// The tier.
    pub tier: TierId,
    /// Servers or workstations.
    pub kind: EndpointKind,
    /// Pilot or production.
    pub wave: Wave,
    /// How many.
    pub endpoints: usize,
}

/// What the inventory sync stored and sent to open a cycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Started {
    /// Client parts sent.
    pub clients: usize,
    /// Endpoints in their rosters.
    pub endpoints: usize,
}

/// Each client's endpoints in the inventory, in its order: what the opening's rosters list.
pub type Rosters = BTreeMap<ClientId, Vec<EndpointId>>;

/// The rosters of a validated inventory (its ids already checked).
pub fn rosters(inventory: &Inventory) -> Rosters {
    let mut rosters = Rosters::new();
    for e in inventory.endpoints() {
        rosters
            .entry(e.client.clone())
            .or_default()
            .push(e.id.clone());
    }
    rosters
}

/// Stores a cycle's opening and every client's roster, marks each part pending and sends one
/// [`OpenCycle`] per client. Every write is a create: a sync that crashed half-way and runs
/// again finds what it wrote and goes on.
pub async fn start<X: Ports>(
    x: &X,
    release: Release,
    catalog: CatalogDoc,
    clients: Vec<ClientDoc>,
    rosters: Rosters,
    fleet: FleetPilots,
    now: DateTime<Utc>,
) -> Result<Started, HandlerError> {
    let env = x.env();
    let cycle = release.cycle;
    let mut started = Started::default();
    let mut parts = Vec::with_capacity(rosters.len());
    for (client, ids) in &rosters {
        let kind = roster_kind(client);
        let mut shards = 0u32;
        for chunk in ids.chunks(ROSTER_SHARD) {
            let roster = Roster {
                endpoints: chunk.to_vec(),
            };
            conflict_ok(
                records::save(&env.state, cycle, &kind, &shards.to_string(), &roster, None).await,
            )?;
            shards += 1;
        }
        mark_part(&env.state, cycle, client, &ClientOpened::default(), None).await?;
        started.endpoints += ids.len();
        parts.push(PartRef {
            client: client.clone(),
            shards,
        });
    }
    let opening = Opening {
        cycle,
        patch_tuesday: release.patch_tuesday,
        released_at: release.released_at,
        opened_at: now,
        catalog,
        clients,
        workstation_pilot_end: fleet.workstation_pilot_end,
        parts,
    };
    conflict_ok(records::save(&env.state, cycle, OPENING_KIND, CYCLE_ID, &opening, None).await)?;
    let sends: Vec<_> = opening
        .parts
        .iter()
        .map(|p| {
            OpenCycle {
                client: Some(p.client.clone()),
            }
            .envelope(cycle, format!("{cycle}/open/{}", p.client), None)
        })
        .collect();
    env.queues.send_batch(OpenCycle::STAGE, &sends).await?;
    started.clients = sends.len();
    info!(%cycle, clients = started.clients, endpoints = started.endpoints, "cycle opening, a client at a time");
    Ok(started)
}

/// A cycle whose opening is stored but not finished (its cycle record not written yet).
pub async fn is_opening(store: &impl DocStore, cycle: CycleId) -> Result<bool, HandlerError> {
    Ok(store
        .get_doc(cycle, OPENING_KIND, CYCLE_ID)
        .await?
        .is_some()
        && records::cycle_doc(store, cycle).await?.is_none())
}

/// Handles an [`OpenCycle`]: a client's part, or the coordinator.
pub async fn open_cycle<X: Ports>(
    x: &X,
    cycle: CycleId,
    msg: OpenCycle,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    let env = x.env();
    if records::cycle_doc(&env.state, cycle).await?.is_some() {
        return Ok(format!("{cycle} is open"));
    }
    let (opening, _): (Opening, u64) =
        records::must_load(&env.state, cycle, OPENING_KIND, CYCLE_ID).await?;
    match msg.client {
        Some(client) => open_part(x, &opening, &client).await,
        None => coordinate(x, &opening, now).await,
    }
}

async fn mark_part(
    state: &impl DocStore,
    cycle: CycleId,
    client: &ClientId,
    part: &ClientOpened,
    expected: Option<u64>,
) -> Result<(), HandlerError> {
    let body = serde_json::to_string(part)
        .map_err(|e| HandlerError::Poison(format!("encode {PART_KIND}: {e}")))?;
    let index = DocIndex {
        due: None,
        phase: Some(if part.done { PART_DONE } else { PART_PENDING }.to_owned()),
    };
    match state
        .put_doc_indexed(cycle, PART_KIND, client.as_str(), &body, expected, &index)
        .await
    {
        Ok(_) | Err(PortError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn conflict_ok(r: Result<impl Sized, PortError>) -> Result<(), HandlerError> {
    match r {
        Ok(_) | Err(PortError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A client's part: its endpoints as synced (its roster's, from the endpoint store), planned
/// with the fleet's pilots, written; the last part asks the coordinator.
async fn open_part<X: Ports>(
    x: &X,
    opening: &Opening,
    client: &ClientId,
) -> Result<String, HandlerError> {
    let env = x.env();
    let cycle = opening.cycle;
    let version = match env.state.get_doc(cycle, PART_KIND, client.as_str()).await? {
        Some(doc) => {
            let part: ClientOpened =
                serde_json::from_str(&doc.body).map_err(|e| corrupt(PART_KIND, e))?;
            if part.done {
                return Ok(format!("{client}'s part of {cycle}'s opening is written"));
            }
            Some(doc.version)
        }
        None => None,
    };
    let Some(part) = opening.parts.iter().find(|p| &p.client == client) else {
        return Err(HandlerError::Poison(format!(
            "{client} has no endpoints in {cycle}'s opening"
        )));
    };
    let Some(client_doc) = opening
        .clients
        .iter()
        .find(|c| c.id == client.as_str())
        .cloned()
    else {
        return Err(HandlerError::Poison(format!(
            "{client} is not among the clients of {cycle}'s opening"
        )));
    };
    let kind = roster_kind(client);
    let mut ids: Vec<EndpointId> = Vec::new();
    for n in 0..part.shards {
        let (roster, _): (Roster, u64) =
            records::must_load(&env.state, cycle, &kind, &n.to_string()).await?;
        ids.extend(roster.endpoints);
    }
    let mut stored: HashMap<EndpointId, EndpointDoc> = env
        .state
        .list_endpoints(client)
        .await?
        .into_iter()
        .map(|s| (s.id, s.doc))
        .collect();
    let endpoints = ids
        .iter()
        .map(|id| {
            stored.remove(id).ok_or_else(|| {
                HandlerError::Poison(format!(
                    "{client}'s roster of {cycle} lists endpoint {id}, which the endpoint store \
                     does not have"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    drop(stored);
    let catalog = catalog_from_doc("cycle catalog", opening.catalog.clone())
        .map_err(|e| HandlerError::Poison(e.to_string()))?;
    let fleet = FleetPilots {
        workstation_pilot_end: opening.workstation_pilot_end,
    };
    let mut opened = open_client(
        x,
        opening.release(),
        &catalog,
        fleet,
        opening.opened_at,
        client_doc,
        endpoints,
    )
    .await?;
    opened.done = true;
    mark_part(&env.state, cycle, client, &opened, version).await?;
    // The last part to finish asks the coordinator (the index may lag: the hourly tick's
    // coordinator finishes the opening then).
    let last = !env
        .state
        .any_doc_in_phase(cycle, PART_KIND, &[PART_PENDING])
        .await?;
    if last {
        let done = OpenCycle { client: None }.envelope(
            cycle,
            format!("{cycle}/open/parts-done/{client}"),
            None,
        );
        env.queues
            .send_batch(OpenCycle::STAGE, std::slice::from_ref(&done))
            .await?;
    }
    info!(%cycle, %client, in_scope = opened.in_scope, excluded = opened.excluded, "client's part of the opening written");
    Ok(format!(
        "{client}'s part of {cycle}'s opening: {} run(s), {} left out{}",
        opened.in_scope,
        opened.excluded,
        if last { "; the cycle opens next" } else { "" }
    ))
}

/// Plans one client's endpoints (in the inventory's order) with the fleet's pilots and writes
/// what the cycle keeps of them: exceptions, runs, scope shards, members shards, exclusions.
/// Returns what the coordinator needs (not yet marked done).
pub async fn open_client<X: Ports>(
    x: &X,
    release: Release,
    catalog: &Catalog,
    fleet: FleetPilots,
    now: DateTime<Utc>,
    client_doc: ClientDoc,
    endpoints: Vec<EndpointDoc>,
) -> Result<ClientOpened, HandlerError> {
    let env = x.env();
    let cycle = release.cycle;
    let source = format!("inventory of {}", client_doc.id);
    let doc = InventoryDoc {
        clients: vec![client_doc],
        endpoints,
    };
    let mut docs = doc.endpoints.clone();
    let inventory =
        inventory_from_doc(&source, doc).map_err(|e| HandlerError::Poison(e.to_string()))?;
    let mut plan = plan_with(&inventory, catalog, release, &env.policy, Some(fleet));
    for entry in &plan.exception_register {
        env.state.record_exception(entry).await?;
    }
    let mut opened = ClientOpened {
        workstation_gate: plan.gates.workstations,
        server_gate: plan.gates.servers.first().map(|(_, g)| *g),
        ..ClientOpened::default()
    };
    let mut tiers: BTreeMap<TierId, TierPart> = BTreeMap::new();
    let mut runs: Vec<Run> = Vec::new();
    let mut scans: Vec<ScopeScan> = Vec::new();
    let mut excluded: Vec<Excluded> = Vec::new();
    let mut client: Option<ClientId> = None;
    for ((e, p), d) in inventory
        .endpoints()
        .iter()
        .zip(std::mem::take(&mut plan.endpoints))
        .zip(docs.drain(..))
    {
        client.get_or_insert_with(|| e.client.clone());
        // An up-to-date endpoint keeps its wave and has no window: its run is done at the
        // opening, with nothing sent (its planned install is the release instant).
        let up_to_date = p.up_to_date.then_some(Install {
            mode: InstallMode::Automatic,
            window: Window {
                start: release.released_at,
                end: release.released_at,
            },
        });
        let (Some(install), Some(wave)) = (p.install.or(up_to_date), p.wave) else {
            if p.scope != Scope::InScope {
                excluded.push(Excluded {
                    endpoint: p.id.clone(),
                    scope: p.scope.as_str().to_owned(),
                    hostname: Some(p.hostname.clone()),
                    kind: Some(p.kind),
                });
            }
            continue;
        };
        let tier = tier_id(p.kind, &p.client, wave)?;
        tiers
            .entry(tier.clone())
            .or_insert_with(|| TierPart {
                tier: tier.clone(),
                kind: p.kind,
                wave,
                endpoints: 0,
            })
            .endpoints += 1;
        scans.push(ScopeScan {
            applicable: e.applicable.clone(),
            os: e.os.clone(),
        });
        let mut run = Run::planned(e.id.clone(), e.client.clone(), tier, d, install.window);
        if p.up_to_date {
            // Nothing its scan needs: done from the opening.
            run.status = RunStatus::Validated;
            run.validated_at = Some(now);
            run.up_to_date = true;
        }
        runs.push(run);
    }
    let Some(client) = client else {
        return Ok(opened);
    };
    // The client's in-scope endpoints, in shards: the targets of its approval pushes.
    let in_scope: Vec<EndpointId> = runs.iter().map(|r| r.endpoint.clone()).collect();
    for (n, (chunk, scans)) in in_scope
        .chunks(SCOPE_SHARD)
        .zip(scans.chunks(SCOPE_SHARD))
        .enumerate()
    {
        let shard = ScopeShard {
            client: client.clone(),
            shard: n as u32,
            endpoints: chunk.to_vec(),
            scans: scans.to_vec(),
        };
        conflict_ok(
            records::save(
                &env.state,
                cycle,
                &scope_kind(&client),
                &n.to_string(),
                &shard,
                None,
            )
            .await,
        )?;
        opened.scope_shards += 1;
    }
    // Its endpoints per tier: what a per-client shard of the tier's work reads.
    let mut members: BTreeMap<&TierId, Vec<EndpointId>> = BTreeMap::new();
    for run in &runs {
        members
            .entry(&run.tier)
            .or_default()
            .push(run.endpoint.clone());
    }
    for (tier, endpoints) in &members {
        records::save_members(&env.state, cycle, tier, &client, endpoints).await?;
    }
    drop(members);
    opened.in_scope = runs.len();
    let state = &env.state;
    let policy = &env.policy;
    stream::iter(runs)
        .map(|run| async move {
            conflict_ok(records::save_run(state, cycle, &run, None, policy, None).await)
        })
        .buffer_unordered(WRITERS)
        .try_collect::<()>()
        .await?;
    if !excluded.is_empty() {
        opened.excluded = excluded.len();
        conflict_ok(
            records::save(
                &env.state,
                cycle,
                EXCLUDED_KIND,
                client.as_str(),
                &excluded,
                None,
            )
            .await,
        )?;
    }
    opened.tiers = tiers.into_values().collect();
    Ok(opened)
}

/// The coordinator: once every client's part is written, the tiers from their stored parts,
/// the approval work, then the cycle record; before, one message for each part not written
/// yet (keyed by the hour).
async fn coordinate<X: Ports>(
    x: &X,
    opening: &Opening,
    now: DateTime<Utc>,
) -> Result<String, HandlerError> {
    let env = x.env();
    let cycle = opening.cycle;
    let ids: Vec<String> = opening
        .parts
        .iter()
        .map(|p| p.client.as_str().to_owned())
        .collect();
    let mut parts: HashMap<String, ClientOpened> = HashMap::new();
    for chunk in ids.chunks(records::MEMBERS_SHARD) {
        for doc in env.state.get_docs(cycle, PART_KIND, chunk).await? {
            let part: ClientOpened =
                serde_json::from_str(&doc.body).map_err(|e| corrupt(PART_KIND, e))?;
            parts.insert(doc.id, part);
        }
    }
    let hour = now.format("%Y%m%dT%H");
    let sends: Vec<_> = opening
        .parts
        .iter()
        .filter(|p| !parts.get(p.client.as_str()).is_some_and(|o| o.done))
        .map(|p| {
            OpenCycle {
                client: Some(p.client.clone()),
            }
            .envelope(cycle, format!("{cycle}/open/{}/{hour}", p.client), None)
        })
        .collect();
    if !sends.is_empty() {
        env.queues.send_batch(OpenCycle::STAGE, &sends).await?;
        return Ok(format!(
            "{cycle} opening: {} of {} client(s) to write, one message each",
            sends.len(),
            ids.len()
        ));
    }

    let mut tiers: BTreeMap<TierId, TierPlan> = BTreeMap::new();
    let mut workstation_gate = None;
    let mut server_gates: HashMap<&ClientId, DateTime<Utc>> = HashMap::new();
    let mut scopes = Vec::new();
    let (mut in_scope, mut excluded) = (0usize, 0usize);
    for p in &opening.parts {
        let Some(part) = parts.get(p.client.as_str()) else {
            continue;
        };
        in_scope += part.in_scope;
        excluded += part.excluded;
        workstation_gate = workstation_gate.or(part.workstation_gate);
        if let Some(g) = part.server_gate {
            server_gates.insert(&p.client, g);
        }
        if part.scope_shards > 0 {
            scopes.push(ScopeRef {
                client: p.client.clone(),
                shards: part.scope_shards,
            });
        }
        for t in &part.tiers {
            let plan = tiers.entry(t.tier.clone()).or_insert_with(|| TierPlan {
                tier: t.tier.clone(),
                kind: t.kind,
                client: (t.kind == EndpointKind::Server).then(|| p.client.clone()),
                wave: t.wave,
                pilot: None,
                gate: None,
                endpoints: 0,
                clients: Vec::new(),
                released: Vec::new(),
                last_decision: None,
                soak_checks: Vec::new(),
            });
            plan.endpoints += t.endpoints;
            plan.clients.push(p.client.clone());
        }
    }
    // A production tier waits for its pilot's soak (the plan's gate).
    let pilots: Vec<TierId> = tiers
        .values()
        .filter(|t| t.wave == Wave::Pilot)
        .map(|t| t.tier.clone())
        .collect();
    for t in tiers.values_mut() {
        t.clients.sort();
        t.clients.dedup();
        if t.wave != Wave::Production {
            continue;
        }
        let pilot_id = format!(
            "{}.{}",
            t.tier.as_str().trim_end_matches(".production"),
            Wave::Pilot.as_str()
        );
        let pilot = TierId::parse(&pilot_id).map_err(|e| HandlerError::Poison(e.to_string()))?;
        if pilots.contains(&pilot) {
            t.gate = match t.kind {
                EndpointKind::Workstation => workstation_gate,
                EndpointKind::Server => {
                    t.client.as_ref().and_then(|c| server_gates.get(c).copied())
                }
            };
            t.pilot = Some(pilot);
        }
    }
    for t in tiers.values() {
        conflict_ok(records::save(&env.state, cycle, TIER_KIND, t.tier.as_str(), t, None).await)?;
        conflict_ok(
            env.state
                .create_tier(&TierRecord {
                    cycle,
                    tier: t.tier.clone(),
                    state: TierState::Scheduled,
                    version: 0,
                    endpoints: Vec::new(),
                    updated_at: opening.opened_at,
                    not_before: t.gate,
                })
                .await,
        )?;
    }

    // The approval work, then the cycle record: once it exists, the cycle is open.
    let messages: Vec<_> = opening
        .catalog
        .patches
        .iter()
        .map(|p| {
            EvaluatePatch { patch: p.clone() }.envelope(
                cycle,
                format!("{cycle}/evaluate/{}", p.id),
                None,
            )
        })
        .collect();
    env.queues
        .send_batch(EvaluatePatch::STAGE, &messages)
        .await?;
    let cycle_doc = CycleDoc {
        cycle,
        patch_tuesday: opening.patch_tuesday,
        released_at: opening.released_at,
        opened_at: opening.opened_at,
        catalog: opening.catalog.clone(),
        clients: opening.clients.clone(),
        tiers: tiers.keys().cloned().collect(),
        scopes,
    };
    conflict_ok(records::save(&env.state, cycle, CYCLE_KIND, CYCLE_ID, &cycle_doc, None).await)?;
    info!(%cycle, tiers = tiers.len(), in_scope, excluded, "cycle opened");
    Ok(format!(
        "{cycle} opened: {} tier(s), {in_scope} endpoint(s) in scope, {excluded} left out, \
         {} client(s)",
        tiers.len(),
        ids.len()
    ))
}
