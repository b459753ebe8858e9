//! `plan`: every decision of a cycle for a fleet and a catalog, before anything runs: approvals,
//! the exception register, and per endpoint its scope, track, wave, install and reboot windows,
//! each with its trace.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use crate::ids::{ClientId, CycleId, EndpointId, PatchId};
use crate::model::{Catalog, Criticality, Endpoint, EndpointKind, Inventory, Ring};
use crate::policy::Policy;
use crate::reason as r;
use crate::rules::applicability::{Applicability, Matcher};
use crate::rules::approval::{self, Approval, Decision};
use crate::rules::cadence::{self, InstallMode, Memo, RebootPlan, WindowKind};
use crate::rules::exception::ExceptionEntry;
use crate::rules::representation::{self, Warning};
use crate::rules::scope::{self, Scope};
use crate::rules::waves::{self, Start, Wave, WaveChoice};
use crate::schedule::{nth_weekday, resolve_local, utc, Window};
use crate::trace::{Node, Trace, TraceEntry};

/// The cycle's calendar: its Patch Tuesday and release instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// The cycle.
    pub cycle: CycleId,
    /// Its Patch Tuesday (the second Tuesday by default).
    pub patch_tuesday: NaiveDate,
    /// The release instant: 10:00 America/Los_Angeles on Patch Tuesday, or an override.
    pub released_at: DateTime<Utc>,
}

impl Release {
    /// The release of a cycle under a policy, or at `override_at` for an out-of-band release.
    pub fn of(cycle: CycleId, policy: &Policy, override_at: Option<DateTime<Utc>>) -> Self {
        let patch_tuesday = nth_weekday(cycle, policy.release.weekday, policy.release.week);
        let released_at = override_at.unwrap_or_else(|| {
            resolve_local(
                policy.release.timezone,
                patch_tuesday.and_time(policy.release.time.time()),
            )
        });
        Self {
            cycle,
            patch_tuesday,
            released_at,
        }
    }
}

/// The install of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Install {
    /// Who installs.
    pub mode: InstallMode,
    /// When.
    pub window: Window,
}

/// Every decision for one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointPlan {
    /// The endpoint.
    pub id: EndpointId,
    /// Its client.
    pub client: ClientId,
    /// Host name.
    pub hostname: String,
    /// Server or workstation.
    pub kind: EndpointKind,
    /// Its zone.
    pub tz: Tz,
    /// Ring from the inventory.
    pub ring: Ring,
    /// Server criticality.
    pub criticality: Option<Criticality>,
    /// Scope.
    pub scope: Scope,
    /// Track: server, regular or daytime.
    pub track: WindowKind,
    /// Wave (in-scope only).
    pub wave: Option<Wave>,
    /// Install (in-scope only).
    pub install: Option<Install>,
    /// Reboot (in-scope only).
    pub reboot: Option<RebootPlan>,
    /// Critical server: an engineer approves before anything installs.
    pub manual_approval_required: bool,
    /// The approved patches that apply to it, sorted.
    pub patches: Vec<PatchId>,
    /// How its applicability was known.
    pub applicability: Applicability,
    /// In scope, its patch scan reported, and no approved patch applies: nothing is sent to it.
    pub up_to_date: bool,
    /// Why.
    pub trace: Trace,
}

/// The production gates of a plan: the instants before which no production window may start.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Gates {
    /// The fleet's workstation production gate, if there are production workstations.
    pub workstations: Option<DateTime<Utc>>,
    /// Per client with two or more in-scope servers, its server production gate.
    pub servers: Vec<(ClientId, DateTime<Utc>)>,
}

/// A cycle's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Calendar.
    pub release: Release,
    /// Per patch, in catalog order.
    pub approvals: Vec<Approval>,
    /// Endpoint exceptions, in inventory order.
    pub exception_register: Vec<ExceptionEntry>,
    /// Per endpoint, in inventory order.
    pub endpoints: Vec<EndpointPlan>,
    /// Production gates.
    pub gates: Gates,
    /// Per approval (same order), how many in-scope endpoints the patch applies to.
    pub approval_endpoints: Vec<usize>,
    /// Ids an endpoint's patch scan reported that the catalog does not have, in inventory
    /// order.
    pub unknown_patches: Vec<(EndpointId, PatchId)>,
    /// Where the inventory falls short of the operating model without being invalid: pilot
    /// representation, exclusions without their signed approval.
    pub warnings: Vec<Warning>,
}

impl Plan {
    /// An endpoint's plan by id.
    pub fn endpoint(&self, id: &str) -> Option<&EndpointPlan> {
        self.endpoints.iter().find(|e| e.id.as_str() == id)
    }

    /// The cycle's update batches as planned: batch 1, the patches that deploy on Patch
    /// Tuesday's decisions (pilot, soak, production); then, when patches are held for review,
    /// batch 2: each one approved after the first deployment goes through a later batch's own
    /// pilot and soak (one approved before any deployment joins batch 1 instead).
    pub fn batches(&self) -> Vec<PlanBatch> {
        let of = |d: Decision| -> Vec<PatchId> {
            self.approvals
                .iter()
                .filter(|a| a.decision == d)
                .map(|a| a.patch.clone())
                .collect()
        };
        let mut out = vec![PlanBatch {
            batch: 1,
            opens: PlanBatch::FIRST_DEPLOYMENT,
            patches: of(Decision::AutoApproved),
        }];
        let pending = of(Decision::PendingReview);
        if !pending.is_empty() {
            out.push(PlanBatch {
                batch: 2,
                opens: PlanBatch::ON_APPROVAL,
                patches: pending,
            });
        }
        out
    }
}

/// An update batch of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanBatch {
    /// Its number.
    pub batch: u32,
    /// What fixes it: [`PlanBatch::FIRST_DEPLOYMENT`] (the cycle's first tier deploying) or
    /// [`PlanBatch::ON_APPROVAL`] (an engineer's approval after it).
    pub opens: &'static str,
    /// Its patches, in catalog order.
    pub patches: Vec<PatchId>,
}

impl PlanBatch {
    /// Batch 1: fixed when the cycle's first tier deploys.
    pub const FIRST_DEPLOYMENT: &'static str = "first_deployment";
    /// A later batch: opened by an engineer's approval after the first deployment.
    pub const ON_APPROVAL: &'static str = "on_approval";
}

fn local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

/// What the plan of one part of a fleet needs from the whole of it: the fleet's workstation
/// production tier waits for the latest pilot workstation's window, wherever its client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FleetPilots {
    /// The end of the latest first install window of an in-scope pilot workstation that is
    /// not up to date, if there is one.
    pub workstation_pilot_end: Option<DateTime<Utc>>,
}

/// The fleet's pilots as [`plan`] finds them, in one pass that keeps nothing per endpoint: a
/// cycle opened a client at a time plans each client with [`plan_with`] and these.
pub fn fleet_pilots(
    inventory: &Inventory,
    catalog: &Catalog,
    release: Release,
    policy: &Policy,
) -> FleetPilots {
    let released_at = release.released_at;
    let matcher = Matcher::new(&catalog.patches);
    let approved: Vec<usize> = catalog
        .patches
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            approval::evaluate(p, released_at, &policy.approval).decision == Decision::AutoApproved
        })
        .map(|(i, _)| i)
        .collect();
    let mut memo = Memo::default();
    let mut end: Option<DateTime<Utc>> = None;
    for e in inventory.endpoints() {
        if e.kind() != EndpointKind::Workstation {
            continue;
        }
        let choice = waves::workstation_wave(e);
        if choice.wave != Wave::Pilot || choice.start != Start::AtRelease {
            continue;
        }
        let mut trace = Trace::new();
        let decision = scope::decide_scope(e, inventory.location_of(e), &mut trace);
        if decision.scope != Scope::InScope {
            continue;
        }
        let track = cadence::assign_cadence(e, policy, &mut memo, &mut trace);
        if matcher.for_endpoint(e, &approved).up_to_date {
            continue;
        }
        let w = memo.first_window(policy, e.tz, track, released_at);
        end = end.max(Some(w.end));
    }
    FleetPilots {
        workstation_pilot_end: end,
    }
}

/// Plans a cycle. Pure: the same inputs always give the same plan.
pub fn plan(inventory: &Inventory, catalog: &Catalog, release: Release, policy: &Policy) -> Plan {
    plan_with(inventory, catalog, release, policy, None)
}

/// Plans a cycle for part of a fleet (one client's endpoints), given the whole fleet's pilots
/// ([`fleet_pilots`]): each endpoint's plan is the one [`plan`] gives it in the whole fleet.
/// Without `fleet`, the inventory is the whole fleet.
pub fn plan_with(
    inventory: &Inventory,
    catalog: &Catalog,
    release: Release,
    policy: &Policy,
    fleet: Option<FleetPilots>,
) -> Plan {
    let released_at = release.released_at;
    let approvals: Vec<Approval> = catalog
        .patches
        .iter()
        .map(|p| approval::evaluate(p, released_at, &policy.approval))
        .collect();
    // Applicability: every catalog patch prepared once; the approved ones are what installs.
    let matcher = Matcher::new(&catalog.patches);
    let approved: Vec<usize> = approvals
        .iter()
        .enumerate()
        .filter(|(_, a)| a.decision == Decision::AutoApproved)
        .map(|(i, _)| i)
        .collect();
    let known: std::collections::HashSet<&PatchId> =
        catalog.patches.iter().map(|p| &p.id).collect();
    let mut approval_endpoints = vec![0usize; approvals.len()];
    let mut unknown_patches = Vec::new();

    let mut memo = Memo::default();
    let mut exception_register = Vec::new();
    let mut plans: Vec<EndpointPlan> = Vec::with_capacity(inventory.endpoints().len());
    for e in inventory.endpoints() {
        let mut trace = Trace::new();
        let decision = scope::decide_scope(e, inventory.location_of(e), &mut trace);
        if let Some(x) = decision.exception {
            exception_register.push(x);
        }
        let track = if decision.scope == Scope::InScope {
            cadence::assign_cadence(e, policy, &mut memo, &mut trace)
        } else {
            WindowKind::of(e)
        };
        if let Some(list) = &e.applicable {
            for id in list.iter().filter(|id| !known.contains(id)) {
                unknown_patches.push((e.id.clone(), id.clone()));
            }
        }
        let view = matcher.for_endpoint(e, &approved);
        let in_scope = decision.scope == Scope::InScope;
        if in_scope {
            let os = e.os.as_deref().map(crate::rules::applicability::normalize);
            for (i, n) in approval_endpoints.iter_mut().enumerate() {
                if matcher.applies(e, i, &os) {
                    *n += 1;
                }
            }
            let reason = match (view.source, view.up_to_date) {
                (_, true) => r::UP_TO_DATE,
                (Applicability::Reported, false) => r::APPLICABILITY_REPORTED,
                (Applicability::Products, _) => r::APPLICABILITY_FROM_PRODUCTS,
                (Applicability::Assumed, _) => r::APPLICABILITY_ASSUMED,
            };
            let facts = memo.facts.get(
                "applicable",
                Tz::UTC,
                view.patches.len() as i64,
                approved.len() as i64,
                || {
                    format!(
                        "{} of {} approved patch(es) apply",
                        view.patches.len(),
                        approved.len()
                    )
                },
            );
            trace.push(
                TraceEntry::new(Node::InventorySync, view.source.as_str(), reason)
                    .with_facts(facts),
            );
        }
        plans.push(EndpointPlan {
            id: e.id.clone(),
            client: e.client.clone(),
            hostname: e.hostname.clone(),
            kind: e.kind(),
            tz: e.tz,
            ring: e.ring,
            criticality: e.server().map(|s| s.criticality),
            scope: decision.scope,
            track,
            wave: None,
            install: None,
            reboot: None,
            manual_approval_required: in_scope
                && !view.up_to_date
                && cadence::manual_approval_required(e),
            patches: view.patches,
            applicability: view.source,
            up_to_date: in_scope && view.up_to_date,
            trace,
        });
    }

    // Waves. Servers are grouped per client, keeping inventory order inside each group.
    let mut choices: Vec<Option<WaveChoice>> = vec![None; plans.len()];
    let mut servers_by_client: HashMap<&ClientId, Vec<usize>> = HashMap::new();
    let mut client_order: Vec<&ClientId> = Vec::new();
    for (i, (e, p)) in inventory.endpoints().iter().zip(&plans).enumerate() {
        if p.scope != Scope::InScope {
            continue;
        }
        match e.kind() {
            EndpointKind::Workstation => choices[i] = Some(waves::workstation_wave(e)),
            EndpointKind::Server => {
                let list = servers_by_client.entry(&e.client).or_default();
                if list.is_empty() {
                    client_order.push(&e.client);
                }
                list.push(i);
            }
        }
    }
    for client in &client_order {
        let idx = &servers_by_client[client];
        let refs: Vec<&Endpoint> = idx.iter().map(|&i| &inventory.endpoints()[i]).collect();
        for (&i, choice) in idx.iter().zip(waves::server_waves(&refs)) {
            choices[i] = Some(choice);
        }
    }

    // Pilot windows (and single servers), then the gates they set, then production windows.
    let mut ws_pilot_end: Option<DateTime<Utc>> = None;
    let mut server_pilot_end: HashMap<&ClientId, DateTime<Utc>> = HashMap::new();
    let mut windows: Vec<Option<Window>> = vec![None; plans.len()];
    for (i, e) in inventory.endpoints().iter().enumerate() {
        let Some(choice) = choices[i] else { continue };
        if choice.start != Start::AtRelease || plans[i].up_to_date {
            continue;
        }
        let w = memo.first_window(policy, e.tz, plans[i].track, released_at);
        windows[i] = Some(w);
        if choice.wave == Wave::Pilot {
            match e.kind() {
                EndpointKind::Workstation => ws_pilot_end = ws_pilot_end.max(Some(w.end)),
                EndpointKind::Server => {
                    let end = server_pilot_end.entry(&e.client).or_insert(w.end);
                    *end = (*end).max(w.end);
                }
            }
        }
    }
    if let Some(fleet) = fleet {
        ws_pilot_end = fleet.workstation_pilot_end;
    }
    let soak = policy.rollout.soak;
    let (ws_gate, ws_gate_reason) = waves::soak_gate(ws_pilot_end, released_at, soak);
    let mut gates = Gates::default();
    let mut any_ws_production = false;
    for (i, e) in inventory.endpoints().iter().enumerate() {
        let Some(choice) = choices[i] else { continue };
        let p = &mut plans[i];
        let server_count = match e.kind() {
            EndpointKind::Server => servers_by_client.get(&e.client).map_or(0, Vec::len),
            EndpointKind::Workstation => 0,
        };
        let entry = match e.kind() {
            EndpointKind::Server => {
                TraceEntry::new(Node::ServerPilotFirst, choice.wave.as_str(), choice.reason)
                    .with_facts(
                        memo.facts
                            .get("servers", Tz::UTC, server_count as i64, 0, || {
                                format!("{server_count} in-scope server(s) at this client")
                            }),
                    )
            }
            EndpointKind::Workstation => {
                TraceEntry::new(Node::RingDeployment, choice.wave.as_str(), choice.reason)
            }
        };
        p.trace.push(entry);
        if p.up_to_date {
            // Nothing approved is missing: it keeps its wave, and nothing is sent to it.
            p.wave = Some(choice.wave);
            continue;
        }
        let tz = e.tz;
        let window = match windows[i] {
            Some(w) => {
                let text = memo.facts.get(
                    "release",
                    tz,
                    released_at.timestamp(),
                    w.start.timestamp(),
                    || {
                        format!(
                            "released {}; window {}",
                            utc::format(&released_at),
                            local(w.start, tz)
                        )
                    },
                );
                p.trace.push(
                    TraceEntry::new(Node::PilotSoak, "release", r::FIRST_WINDOW_AFTER_RELEASE)
                        .with_facts(text),
                );
                w
            }
            None => {
                let (gate, reason) = match e.kind() {
                    EndpointKind::Workstation => {
                        any_ws_production = true;
                        (ws_gate, ws_gate_reason)
                    }
                    EndpointKind::Server => waves::soak_gate(
                        server_pilot_end.get(&e.client).copied(),
                        released_at,
                        soak,
                    ),
                };
                let w = memo.first_window(policy, e.tz, p.track, gate);
                let text =
                    memo.facts
                        .get("gate", tz, gate.timestamp(), w.start.timestamp(), || {
                            format!(
                                "not before {}; window {}",
                                utc::format(&gate),
                                local(w.start, tz)
                            )
                        });
                p.trace
                    .push(TraceEntry::new(Node::PilotSoak, "soak_gate", reason).with_facts(text));
                w
            }
        };
        p.wave = Some(choice.wave);
        p.install = Some(Install {
            mode: cadence::install_mode(e),
            window,
        });
        p.reboot = Some(cadence::plan_reboot(
            e,
            window,
            policy,
            &mut memo,
            &mut p.trace,
        ));
    }
    if any_ws_production {
        gates.workstations = Some(ws_gate);
    }
    for client in client_order {
        if let Some(end) = server_pilot_end.get(client) {
            gates.servers.push((client.clone(), *end + soak));
        }
    }

    let scopes: Vec<Scope> = plans.iter().map(|p| p.scope).collect();
    let mut warnings = representation::representation(inventory, &scopes);
    warnings.extend(representation::unsigned_exclusions(&exception_register));

    Plan {
        release,
        approvals,
        exception_register,
        endpoints: plans,
        gates,
        approval_endpoints,
        unknown_patches,
        warnings,
    }
}

struct Instant<'a>(&'a DateTime<Utc>);

impl Serialize for Instant<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        utc::serialize(self.0, s)
    }
}

struct InstallOut<'a>(&'a Install);

impl Serialize for InstallOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("Install", 3)?;
        m.serialize_field("mode", &self.0.mode)?;
        m.serialize_field("start", &Instant(&self.0.window.start))?;
        m.serialize_field("end", &Instant(&self.0.window.end))?;
        m.end()
    }
}

struct RebootOut<'a>(&'a RebootPlan);

impl Serialize for RebootOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("mode", self.0.mode())?;
        match self.0 {
            RebootPlan::Automatic(w) => {
                m.serialize_entry("start", &Instant(&w.start))?;
                m.serialize_entry("end", &Instant(&w.end))?;
            }
            RebootPlan::Technician => {
                m.serialize_entry("start", &None::<()>)?;
                m.serialize_entry("end", &None::<()>)?;
            }
            RebootPlan::User {
                reminder_local,
                forced,
            } => {
                m.serialize_entry("start", &None::<()>)?;
                m.serialize_entry("end", &None::<()>)?;
                m.serialize_entry("reminder_local", reminder_local)?;
                m.serialize_entry("forced_start", &Instant(&forced.start))?;
                m.serialize_entry("forced_end", &Instant(&forced.end))?;
            }
        }
        m.end()
    }
}

impl Serialize for EndpointPlan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("EndpointPlan", 17)?;
        m.serialize_field("id", &self.id)?;
        m.serialize_field("client", &self.client)?;
        m.serialize_field("hostname", &self.hostname)?;
        m.serialize_field("kind", &self.kind)?;
        m.serialize_field("timezone", self.tz.name())?;
        m.serialize_field("scope", &self.scope)?;
        m.serialize_field("track", &self.track)?;
        m.serialize_field("ring", &self.ring)?;
        m.serialize_field("criticality", &self.criticality)?;
        m.serialize_field("wave", &self.wave)?;
        m.serialize_field("install", &self.install.as_ref().map(InstallOut))?;
        m.serialize_field("reboot", &self.reboot.as_ref().map(RebootOut))?;
        m.serialize_field("manual_approval_required", &self.manual_approval_required)?;
        m.serialize_field("patches", &self.patches)?;
        m.serialize_field("applicability", &self.applicability)?;
        m.serialize_field("up_to_date", &self.up_to_date)?;
        m.serialize_field("trace", &self.trace)?;
        m.end()
    }
}

struct GatesOut<'a>(&'a Gates);

impl Serialize for GatesOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Servers<'a>(&'a [(ClientId, DateTime<Utc>)]);
        impl Serialize for Servers<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for (c, t) in self.0 {
                    m.serialize_entry(c, &Instant(t))?;
                }
                m.end()
            }
        }
        let mut m = s.serialize_struct("Gates", 2)?;
        m.serialize_field(
            "workstation_production",
            &self.0.workstations.as_ref().map(Instant),
        )?;
        m.serialize_field("server_production", &Servers(&self.0.servers))?;
        m.end()
    }
}

impl Serialize for Plan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct ApprovalOut<'a> {
            #[serde(flatten)]
            approval: &'a Approval,
            endpoints: usize,
        }
        #[derive(Serialize)]
        struct Unknown<'a> {
            endpoint: &'a EndpointId,
            patch: &'a PatchId,
        }
        let approvals: Vec<ApprovalOut> = self
            .approvals
            .iter()
            .zip(
                self.approval_endpoints
                    .iter()
                    .copied()
                    .chain(std::iter::repeat(0)),
            )
            .map(|(approval, endpoints)| ApprovalOut {
                approval,
                endpoints,
            })
            .collect();
        let unknown: Vec<Unknown> = self
            .unknown_patches
            .iter()
            .map(|(endpoint, patch)| Unknown { endpoint, patch })
            .collect();
        let mut m = s.serialize_struct("Plan", 10)?;
        m.serialize_field("cycle", &self.release.cycle)?;
        m.serialize_field(
            "patch_tuesday",
            &self.release.patch_tuesday.format("%Y-%m-%d").to_string(),
        )?;
        m.serialize_field("released_at", &Instant(&self.release.released_at))?;
        m.serialize_field("approvals", &approvals)?;
        m.serialize_field("exception_register", &self.exception_register)?;
        m.serialize_field("production_gates", &GatesOut(&self.gates))?;
        m.serialize_field("endpoints", &self.endpoints)?;
        m.serialize_field("unknown_patches", &unknown)?;
        m.serialize_field("warnings", &self.warnings)?;
        m.serialize_field("batches", &self.batches())?;
        m.end()
    }
}
