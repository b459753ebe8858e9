//! inventory-sync: pull the inventory, write only what changed, and on Patch Tuesday (after the
//! release) open the month's cycle: scope and exclusions, the plan's tiers and runs, and the
//! approval work for every patch of the catalog.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use patchflow_core::contract::{catalog_from_doc, inventory_from_doc, EndpointDoc};
use patchflow_core::ids::{ClientId, CycleId, EndpointId};
use patchflow_core::model::EndpointKind;
use patchflow_core::plan::{plan, Install, Release};
use patchflow_core::ports::queue::QueueSender;
use patchflow_core::ports::sources::{
    CatalogSource, ClientLeftOut, InventorySource, NoPatchInventory,
};
use patchflow_core::ports::state::{
    EndpointStore, ExceptionStore, StoredEndpoint, SyncSummary, TierId, TierRecord, TierStore,
};
use patchflow_core::ports::PortError;
use patchflow_core::rules::cadence::InstallMode;
use patchflow_core::rules::representation::{inventory_warnings, Warning};
use patchflow_core::rules::scope::Scope;
use patchflow_core::rules::waves::Wave;
use patchflow_core::schedule::Window;
use patchflow_core::tier::TierState;
use serde::Serialize;
use tracing::{info, warn};

use crate::env::Ports;
use crate::error::HandlerError;
use crate::messages::{EvaluatePatch, Message};
use crate::records::{
    self, scope_kind, tier_id, CycleDoc, Excluded, Run, RunStatus, ScopeRef, ScopeScan, ScopeShard,
    TierPlan, CYCLE_ID, CYCLE_KIND, EXCLUDED_KIND, SCOPE_SHARD, TIER_KIND,
};

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Endpoints written and left unchanged.
    pub endpoints: SyncSummary,
    /// The cycle it opened, if it opened one.
    pub opened: Option<CycleId>,
    /// Tiers of the opened cycle.
    pub tiers: usize,
    /// Endpoints in scope / out of scope in the opened cycle.
    pub in_scope: usize,
    /// Endpoints left out.
    pub excluded: usize,
    /// Endpoints the inventory source has no patch inventory of: what they need is unknown.
    pub no_patch_inventory: Vec<NoPatchInventory>,
    /// Clients the inventory source left out (their previous inventory is kept).
    pub clients_left_out: Vec<ClientLeftOut>,
    /// Where the inventory falls short of the operating model (pilot representation, exclusions
    /// without their signed approval), as `plan` warns.
    pub warnings: Vec<Warning>,
}

/// Concurrent writes when a cycle opens.
const WRITERS: usize = 16;

fn conflict_ok(r: Result<impl Sized, PortError>) -> Result<(), PortError> {
    match r {
        Ok(_) | Err(PortError::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs the inventory sync at `now`.
pub async fn inventory_sync<X: Ports>(
    x: &X,
    inventory_source: &impl InventorySource,
    catalog_source: &impl CatalogSource,
    now: DateTime<Utc>,
) -> Result<SyncReport, HandlerError> {
    let env = x.env();
    let (mut doc, notes) = inventory_source.pull_with_notes().await?;
    // Validate the whole inventory before writing any of it: a bad record writes nothing.
    let inventory = inventory_from_doc("inventory", doc.clone())
        .map_err(|e| HandlerError::Poison(e.to_string()))?;
    let stored = doc
        .endpoints
        .iter()
        .cloned()
        .map(StoredEndpoint::from_doc)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HandlerError::Poison(format!("inventory: {e}")))?;
    let endpoints = env.state.sync_endpoints(&stored).await?;
    // A fleet's records are held a few times over while its cycle opens: each copy goes as
    // soon as it has served.
    drop(stored);
    let mut report = SyncReport {
        endpoints,
        no_patch_inventory: notes.no_patch_inventory,
        clients_left_out: notes.clients_left_out,
        warnings: inventory_warnings(&inventory),
        ..SyncReport::default()
    };
    for w in &report.warnings {
        warn!(code = w.code, subject = %w.subject, "{}", w.message);
    }
    info!(
        written = endpoints.written,
        unchanged = endpoints.unchanged,
        no_patch_inventory = report.no_patch_inventory.len(),
        clients_left_out = report.clients_left_out.len(),
        "inventory synced"
    );
    for n in &report.no_patch_inventory {
        warn!(
            endpoint = %n.endpoint,
            hostname = %n.hostname,
            client = %n.client,
            "no patch inventory: what this endpoint needs is unknown"
        );
    }

    let cycle = CycleId::containing(now.date_naive())
        .map_err(|e| HandlerError::Poison(format!("no cycle for {now}: {e}")))?;
    let release = Release::of(cycle, &env.policy, None);
    if now < release.released_at || records::cycle_doc(&env.state, cycle).await?.is_some() {
        return Ok(report);
    }

    let catalog_doc = catalog_source.catalog(cycle).await?;
    let catalog = catalog_from_doc("catalog", catalog_doc.clone())
        .map_err(|e| HandlerError::Poison(e.to_string()))?;
    let mut plan = plan(&inventory, &catalog, release, &env.policy);

    for entry in &plan.exception_register {
        env.state.record_exception(entry).await?;
    }

    // Tiers and runs from the plan. Every write is a create: a sync that crashed half-way and
    // runs again finds what it wrote and goes on.
    // The records move into their runs, and each endpoint's plan is let go once its run is made.
    let mut docs: HashMap<String, EndpointDoc> = std::mem::take(&mut doc.endpoints)
        .into_iter()
        .map(|d| (d.id.clone(), d))
        .collect();
    let mut tiers: BTreeMap<String, TierPlan> = BTreeMap::new();
    let mut runs: Vec<Run> = Vec::new();
    let mut scans: HashMap<EndpointId, ScopeScan> = HashMap::new();
    let mut excluded: BTreeMap<ClientId, Vec<Excluded>> = BTreeMap::new();
    for (e, p) in inventory
        .endpoints()
        .iter()
        .zip(std::mem::take(&mut plan.endpoints))
    {
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
                excluded
                    .entry(p.client.clone())
                    .or_default()
                    .push(Excluded {
                        endpoint: p.id.clone(),
                        scope: p.scope.as_str().to_owned(),
                        hostname: Some(p.hostname.clone()),
                        kind: Some(p.kind),
                    });
            }
            continue;
        };
        let tier = tier_id(p.kind, &p.client, wave)?;
        let entry = tiers.entry(tier.to_string()).or_insert_with(|| TierPlan {
            tier: tier.clone(),
            kind: p.kind,
            client: (p.kind == EndpointKind::Server).then(|| p.client.clone()),
            wave,
            pilot: None,
            gate: None,
            endpoints: 0,
            clients: Vec::new(),
            released: Vec::new(),
            last_decision: None,
            soak_checks: Vec::new(),
        });
        entry.endpoints += 1;
        // Sorted and made unique once every endpoint is in.
        entry.clients.push(p.client.clone());
        let run = Run {
            endpoint: e.id.clone(),
            client: e.client.clone(),
            tier: tier.clone(),
            doc: docs
                .remove(e.id.as_str())
                .ok_or_else(|| HandlerError::Poison(format!("endpoint {} has no record", e.id)))?,
            planned_install: install.window,
            status: if p.up_to_date {
                RunStatus::Validated
            } else {
                RunStatus::Planned
            },
            attempt: 0,
            commands_at: None,
            commands: Vec::new(),
            install_sent_at: None,
            skipped: Vec::new(),
            installed_at: None,
            reboot_confirmed_at: None,
            reminders: Vec::new(),
            forced_reboot: false,
            checks: Vec::new(),
            validated_at: p.up_to_date.then_some(now),
            failures: Vec::new(),
            engineer_approval: None,
            up_to_date: p.up_to_date,
        };
        scans.insert(
            e.id.clone(),
            ScopeScan {
                applicable: e.applicable.clone(),
                os: e.os.clone(),
            },
        );
        runs.push(run);
    }
    // Each client's in-scope endpoints, in shards: the targets of its approval pushes.
    let mut in_scope: BTreeMap<ClientId, Vec<EndpointId>> = BTreeMap::new();
    for run in &runs {
        in_scope
            .entry(run.client.clone())
            .or_default()
            .push(run.endpoint.clone());
    }
    let mut scopes = Vec::with_capacity(in_scope.len());
    for (client, endpoints) in &in_scope {
        let mut shards = 0u32;
        for chunk in endpoints.chunks(SCOPE_SHARD) {
            let shard = ScopeShard {
                client: client.clone(),
                shard: shards,
                endpoints: chunk.to_vec(),
                scans: chunk
                    .iter()
                    .map(|id| scans.get(id).cloned().unwrap_or_default())
                    .collect(),
            };
            conflict_ok(
                records::save(
                    &env.state,
                    cycle,
                    &scope_kind(client),
                    &shards.to_string(),
                    &shard,
                    None,
                )
                .await,
            )?;
            shards += 1;
        }
        scopes.push(ScopeRef {
            client: client.clone(),
            shards,
        });
    }
    // Each client's endpoints per tier: what a per-client shard of the tier's work reads.
    let mut members: BTreeMap<(&TierId, &ClientId), Vec<EndpointId>> = BTreeMap::new();
    for run in &runs {
        members
            .entry((&run.tier, &run.client))
            .or_default()
            .push(run.endpoint.clone());
    }
    for ((tier, client), endpoints) in &members {
        records::save_members(&env.state, cycle, tier, client, endpoints).await?;
    }
    drop(members);
    // One document per in-scope endpoint, written a few at a time: a large fleet opens its
    // cycle within the function's timeout.
    report.in_scope = runs.len();
    let state = &env.state;
    let policy = &env.policy;
    stream::iter(runs)
        .map(|run| async move {
            conflict_ok(records::save_run(state, cycle, &run, None, policy, None).await)
        })
        .buffer_unordered(WRITERS)
        .try_collect::<()>()
        .await?;
    // A production tier waits for its pilot's soak (the plan's gate).
    let ids: Vec<String> = tiers.keys().cloned().collect();
    for id in &ids {
        let Some(t) = tiers.get(id).cloned() else {
            continue;
        };
        if t.wave != Wave::Production {
            continue;
        }
        let pilot_id = format!(
            "{}.{}",
            id.trim_end_matches(".production"),
            Wave::Pilot.as_str()
        );
        let pilot = TierId::parse(&pilot_id).map_err(|e| HandlerError::Poison(e.to_string()))?;
        if tiers.contains_key(pilot.as_str()) {
            let gate = match t.kind {
                EndpointKind::Workstation => plan.gates.workstations,
                EndpointKind::Server => plan
                    .gates
                    .servers
                    .iter()
                    .find(|(c, _)| Some(c) == t.client.as_ref())
                    .map(|(_, g)| *g),
            };
            if let Some(entry) = tiers.get_mut(id) {
                entry.pilot = Some(pilot);
                entry.gate = gate;
            }
        }
    }
    for t in tiers.values_mut() {
        t.clients.sort();
        t.clients.dedup();
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
                    updated_at: now,
                })
                .await,
        )?;
    }
    for (client, list) in &excluded {
        report.excluded += list.len();
        conflict_ok(
            records::save(
                &env.state,
                cycle,
                EXCLUDED_KIND,
                client.as_str(),
                list,
                None,
            )
            .await,
        )?;
    }

    // The approval work, then the cycle record: once it exists, the cycle is open.
    let messages: Vec<_> = catalog_doc
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
        patch_tuesday: release.patch_tuesday,
        released_at: release.released_at,
        opened_at: now,
        catalog: catalog_doc,
        clients: doc.clients.clone(),
        tiers: tiers.values().map(|t| t.tier.clone()).collect(),
        scopes,
    };
    conflict_ok(records::save(&env.state, cycle, CYCLE_KIND, CYCLE_ID, &cycle_doc, None).await)?;
    report.opened = Some(cycle);
    report.tiers = tiers.len();
    info!(%cycle, tiers = report.tiers, in_scope = report.in_scope, excluded = report.excluded, "cycle opened");
    Ok(report)
}
