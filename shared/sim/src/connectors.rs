//! Simulated RMM, PSA and pager: the systems patchflow drives, played with seeded outcomes so a
//! whole cycle can run on one machine. Some installs fail (one KB of them), some users never
//! reboot until forced, some post-reboot checks fail, some endpoints sleep through their window;
//! retries mostly work. The RMM keeps each client's patch approval policy as patchflow writes it
//! and, like Automate's patch deployment, installs only the patches approved there.
//! Every outcome is a pure function of the seed, the endpoint and the attempt, so a run is
//! repeatable; and every command, ticket and page is kept by its key, so a duplicate is counted,
//! never run twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Duration, Utc};
use patchflow_core::ids::{ClientId, EndpointId, PatchId};
use patchflow_core::model::Criticality;
use patchflow_core::ports::clock::Clock;
use patchflow_core::ports::pager::Pager;
use patchflow_core::ports::psa::{Attached, Attachment, NewTicket, NoteAdded, Psa};
use patchflow_core::ports::rmm::{
    AgentState, ApprovalPush, HealthReport, RetryNote, Rmm, RmmApproval, RmmEvent, RmmReport,
    TierClosure,
};
use patchflow_core::ports::PortError;
use patchflow_core::rules::cadence::PowerState;
use patchflow_core::rules::commands::RmmCommand;
use patchflow_core::rules::validation::{Check, CheckResult};
use serde::Serialize;
use sha2::{Digest, Sha256};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How often things go wrong.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Outcomes {
    /// The seed.
    pub seed: u64,
    /// Share of first installs that fail (a retry fails at a quarter of this, a third try never).
    pub failure_rate: f64,
}

impl Outcomes {
    /// A number in [0, 1) fixed by the seed and the words.
    fn draw(&self, words: &[&str]) -> f64 {
        let mut h = Sha256::new();
        h.update(self.seed.to_le_bytes());
        for w in words {
            h.update(w.as_bytes());
            h.update([0]);
        }
        let d = h.finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn rate(&self, attempt: usize) -> f64 {
        match attempt {
            0 => self.failure_rate,
            1 => self.failure_rate / 4.0,
            _ => 0.0,
        }
    }
}

/// A command the simulated RMM took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TakenCommand {
    /// Its key.
    pub key: String,
    /// When it came.
    pub at: DateTime<Utc>,
    /// The command.
    pub command: RmmCommand,
}

#[derive(Debug, Default)]
struct RmmState {
    by_key: BTreeMap<String, usize>,
    log: Vec<TakenCommand>,
    /// Each endpoint's commands in the log, in order: a report reads its endpoint's, not the log.
    by_endpoint: HashMap<EndpointId, Vec<usize>>,
    duplicates: usize,
    /// Each client's approval policy.
    policy: BTreeMap<(ClientId, PatchId), RmmApproval>,
    /// The client of each endpoint an approval was written for.
    client_of: BTreeMap<EndpointId, ClientId>,
    /// The approval writes taken, by key.
    approval_keys: BTreeSet<String>,
    approval_duplicates: usize,
    /// Per install command's key, what it installs and what the policy refused, decided when
    /// the RMM took it.
    installs: BTreeMap<String, InstallOutcome>,
    /// Agents in maintenance mode.
    maintenance: BTreeSet<EndpointId>,
    /// Endpoints whose agent the health read reports offline (a laptop asleep).
    offline: BTreeSet<EndpointId>,
    /// Endpoints asleep through their first window, until when.
    asleep_until: BTreeMap<EndpointId, DateTime<Utc>>,
    /// Endpoints made to sleep through their first window, whatever the seed says.
    sleepers: BTreeSet<EndpointId>,
    /// Each tier's closure per client, by key.
    closures: BTreeMap<String, TierClosure>,
    closure_duplicates: usize,
    retries: BTreeMap<String, RetryNote>,
    /// Endpoints made unhealthy from an instant on (until an install is sent to them after it).
    unhealthy: BTreeMap<EndpointId, DateTime<Utc>>,
    /// Health reads answered.
    health_reads: usize,
    /// Per client, the instants at which a report event may happen on its endpoints (every
    /// candidate instant of every command taken, so `changed` reads only the range it is asked
    /// about).
    changes: BTreeMap<ClientId, BTreeMap<DateTime<Utc>, BTreeSet<EndpointId>>>,
    /// Per endpoint, its commands' candidate instants (indexed under its client when the client
    /// becomes known, or changes).
    instants: BTreeMap<EndpointId, Vec<DateTime<Utc>>>,
    /// The candidate instants of endpoints whose client is not known yet (no approval pushed
    /// for them): every client's `changed` lists them, until their client is known.
    unassigned: BTreeMap<DateTime<Utc>, BTreeSet<EndpointId>>,
    /// Port calls answered, by method.
    calls: BTreeMap<&'static str, u64>,
    /// Sends to take before the next one fails (a crash of the caller half-way through).
    fail_send_after: Option<usize>,
}

impl RmmState {
    /// An endpoint's commands taken, oldest first.
    fn commands_of<'a>(&'a self, endpoint: &EndpointId) -> impl Iterator<Item = &'a TakenCommand> {
        self.by_endpoint
            .get(endpoint)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.log.get(i))
    }
}

impl RmmState {
    /// Counts one call of a port method.
    fn count(&mut self, method: &'static str) {
        *self.calls.entry(method).or_default() += 1;
    }

    /// Indexes a command's candidate instants under its endpoint's client (or, while that is
    /// not known, under `unassigned`).
    fn index(&mut self, endpoint: &EndpointId, at: Vec<DateTime<Utc>>) {
        let by_instant = match self.client_of.get(endpoint) {
            Some(client) => self.changes.entry(client.clone()).or_default(),
            None => &mut self.unassigned,
        };
        for t in &at {
            by_instant.entry(*t).or_default().insert(endpoint.clone());
        }
        self.instants
            .entry(endpoint.clone())
            .or_default()
            .extend(at);
    }

    /// Records the endpoint's client; on a change, moves its instants under the client's
    /// changes (the old client's index keeps them: over-reporting, never missing).
    fn assign(&mut self, endpoint: &EndpointId, client: &ClientId) {
        let before = self.client_of.insert(endpoint.clone(), client.clone());
        if before.as_ref() == Some(client) {
            return;
        }
        let at = self.instants.get(endpoint).cloned().unwrap_or_default();
        let by_instant = self.changes.entry(client.clone()).or_default();
        for t in &at {
            by_instant.entry(*t).or_default().insert(endpoint.clone());
        }
        if before.is_none() {
            for t in &at {
                if let Some(endpoints) = self.unassigned.get_mut(t) {
                    endpoints.remove(endpoint);
                    if endpoints.is_empty() {
                        self.unassigned.remove(t);
                    }
                }
            }
        }
    }
}

/// The instants at which a command taken at `at` may lead `events` to report something: the
/// install (or the endpoint found asleep), the reboot and the checks 20 minutes after it. A
/// superset: a reboot is reported at the latest of its command's instant and 10 minutes after
/// the install, and both are listed.
fn candidate_instants(command: &RmmCommand, at: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let checks = Duration::minutes(20);
    let install = |i: DateTime<Utc>| {
        vec![
            i,
            i + Duration::minutes(10),
            i + Duration::minutes(10) + checks,
        ]
    };
    let reboot = |r: DateTime<Utc>| vec![r, r + checks];
    match command {
        RmmCommand::ScheduleInstall { window, .. } => {
            install(window.start.max(at) + Duration::minutes(15))
        }
        RmmCommand::TechnicianInstall { window, .. } => {
            install(window.start.max(at) + Duration::hours(1))
        }
        RmmCommand::ScheduleReboot { window, .. } => reboot(window.start + Duration::minutes(40)),
        RmmCommand::TechnicianReboot { after, .. } => reboot(*after + Duration::hours(2)),
        RmmCommand::ReminderPopup { first, .. } => reboot(*first + Duration::hours(1)),
        RmmCommand::ForcedReboot { window, .. } => reboot(window.start + Duration::minutes(5)),
    }
}

/// What one install command does, by the client's approval policy when the RMM took it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstallOutcome {
    /// The endpoint.
    pub endpoint: EndpointId,
    /// Patches approved in the client's policy: installed (unless the install fails).
    pub installs: Vec<PatchId>,
    /// Patches the command named that the policy denies or holds (or does not know): never
    /// installed.
    pub refused: Vec<(PatchId, Option<RmmApproval>)>,
}

/// The simulated RMM.
#[derive(Debug)]
pub struct SimRmm<C> {
    outcomes: Outcomes,
    clock: Arc<C>,
    state: Mutex<RmmState>,
}

impl<C: Clock> SimRmm<C> {
    /// An RMM with these outcomes, on this clock.
    pub fn new(outcomes: Outcomes, clock: Arc<C>) -> Self {
        Self {
            outcomes,
            clock,
            state: Mutex::new(RmmState::default()),
        }
    }

    /// Every command taken, in order.
    pub fn commands(&self) -> Vec<TakenCommand> {
        lock(&self.state).log.clone()
    }

    /// Commands sent again under a key already taken (and not run again).
    pub fn duplicates(&self) -> usize {
        lock(&self.state).duplicates
    }

    /// Approval writes taken (by key).
    pub fn approval_writes(&self) -> usize {
        lock(&self.state).approval_keys.len()
    }

    /// Approval writes repeated under a key already taken (and not written again).
    pub fn approval_duplicates(&self) -> usize {
        lock(&self.state).approval_duplicates
    }

    /// The decision a client's policy holds for a patch.
    pub fn policy(&self, client: &ClientId, patch: &PatchId) -> Option<RmmApproval> {
        lock(&self.state)
            .policy
            .get(&(client.clone(), patch.clone()))
            .copied()
    }

    /// Makes the soak's health read report the endpoint's agent offline (or online again).
    pub fn set_offline(&self, endpoint: &EndpointId, on: bool) {
        let mut st = lock(&self.state);
        if on {
            st.offline.insert(endpoint.clone());
        } else {
            st.offline.remove(endpoint);
        }
    }

    /// Puts an agent in maintenance mode (or takes it out).
    pub fn set_maintenance(&self, endpoint: &EndpointId, on: bool) {
        let mut st = lock(&self.state);
        if on {
            st.maintenance.insert(endpoint.clone());
        } else {
            st.maintenance.remove(endpoint);
        }
    }

    /// Makes an endpoint sleep (offline) through the first window it is asked about, whatever
    /// the seed says.
    pub fn make_sleeper(&self, endpoint: &EndpointId) {
        lock(&self.state).sleepers.insert(endpoint.clone());
    }

    /// Makes an endpoint unhealthy from `from` on: its health read answers its monitors failing
    /// (the agent reporting unhealthy) until an install is sent to it after `from` (the retry
    /// that fixes it).
    pub fn make_unhealthy(&self, endpoint: &EndpointId, from: DateTime<Utc>) {
        lock(&self.state).unhealthy.insert(endpoint.clone(), from);
    }

    /// Tells the RMM the endpoint's client, as Automate knows every computer's client (without
    /// it, the client is known from the first approval pushed for the endpoint).
    pub fn set_client(&self, endpoint: &EndpointId, client: &ClientId) {
        lock(&self.state).assign(endpoint, client);
    }

    /// Health reads answered so far.
    pub fn health_reads(&self) -> usize {
        lock(&self.state).health_reads
    }

    /// Port calls answered so far, by method (`send`, `reports`, `changed`, `push_approval`,
    /// `approval_state`, `agent_state`, `health`, `record_closure`, `record_retry`), duplicates
    /// included: the simulation's "RMM calls per endpoint per cycle".
    pub fn calls(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.state).calls.clone()
    }

    /// Takes `n` more sends, then fails the next one (transient, taking nothing), once: a
    /// handler's crash half-way through a batch of sends, for tests of its redelivery.
    pub fn fail_send_after(&self, n: usize) {
        lock(&self.state).fail_send_after = Some(n);
    }

    /// Every install command's outcome by the approval policy, in key order.
    pub fn install_outcomes(&self) -> Vec<InstallOutcome> {
        lock(&self.state).installs.values().cloned().collect()
    }

    /// Patches deployed to an endpoint: those its installs carried that the client's policy let
    /// through (whether or not the install then succeeded).
    pub fn deployed(&self, endpoint: &EndpointId) -> BTreeSet<PatchId> {
        lock(&self.state)
            .installs
            .values()
            .filter(|o| &o.endpoint == endpoint)
            .flat_map(|o| o.installs.iter().cloned())
            .collect()
    }

    /// Install commands that named a patch the client's policy denies or holds (the RMM
    /// refused those patches).
    pub fn declined_requested(&self) -> usize {
        lock(&self.state)
            .installs
            .values()
            .filter(|o| !o.refused.is_empty())
            .count()
    }

    /// Patches deployed (sent for installation and let through by the policy) that the
    /// client's policy now denies or holds: must stay 0 while no decision is reversed after its
    /// installs went out.
    pub fn declined_deployed(&self) -> usize {
        let st = lock(&self.state);
        st.installs
            .values()
            .map(|o| {
                o.installs
                    .iter()
                    .filter(|p| {
                        st.client_of
                            .get(&o.endpoint)
                            .and_then(|c| st.policy.get(&(c.clone(), (*p).clone())))
                            .is_none_or(|a| *a != RmmApproval::Approved)
                    })
                    .count()
            })
            .sum()
    }

    /// The retry windows recorded, by key.
    pub fn retry_notes(&self) -> BTreeMap<String, RetryNote> {
        lock(&self.state).retries.clone()
    }

    /// The tier closures recorded, by key.
    pub fn closures(&self) -> BTreeMap<String, TierClosure> {
        lock(&self.state).closures.clone()
    }

    /// Closures recorded again under a key already taken (nothing changed).
    pub fn closure_duplicates(&self) -> usize {
        lock(&self.state).closure_duplicates
    }

    /// Whether the endpoint sleeps through its first window (seeded).
    fn sleeper(&self, endpoint: &EndpointId) -> bool {
        let o = &self.outcomes;
        o.draw(&[endpoint.as_str(), "asleep"]) < o.failure_rate / 3.0
    }

    /// Plays the endpoint's commands since `since` against the seed: the events they lead to.
    /// An install that succeeds without every `expect`ed patch (one the client's policy did not
    /// let through) is reported failed, naming those patches.
    fn events(
        &self,
        endpoint: &EndpointId,
        since: DateTime<Utc>,
        expect: &[PatchId],
    ) -> Vec<RmmReport> {
        let st = lock(&self.state);
        let mine: Vec<&TakenCommand> = st.commands_of(endpoint).collect();
        let installs_before = mine
            .iter()
            .filter(|t| t.at < since && is_install(&t.command))
            .count();
        let attempt = installs_before;
        let now_cmds: Vec<&&TakenCommand> = mine.iter().filter(|t| t.at >= since).collect();
        let o = &self.outcomes;
        let id = endpoint.as_str();
        let attempt_s = attempt.to_string();
        let mut out = Vec::new();
        let report = |at, event| RmmReport {
            endpoint: endpoint.clone(),
            at,
            event,
        };
        // The install: once it is sent and its window open.
        let Some((install_at, taken)) = now_cmds.iter().find_map(|t| match &t.command {
            RmmCommand::ScheduleInstall { window, .. } => {
                Some((window.start.max(t.at) + Duration::minutes(15), t))
            }
            RmmCommand::TechnicianInstall { window, .. } => {
                Some((window.start.max(t.at) + Duration::hours(1), t))
            }
            _ => None,
        }) else {
            return out;
        };
        if st
            .asleep_until
            .get(endpoint)
            .is_some_and(|until| install_at < *until)
        {
            out.push(report(
                install_at,
                RmmEvent::NotAwake {
                    power: PowerState::Sleeping,
                },
            ));
            return out;
        }
        let asked = taken.command.patches();
        if o.draw(&[id, &attempt_s, "install"]) < o.rate(attempt) {
            // One KB of the install fails (the RMM's per-KB result).
            let failed: Vec<PatchId> = if asked.is_empty() {
                Vec::new()
            } else {
                let i = (o.draw(&[id, &attempt_s, "kb"]) * asked.len() as f64) as usize;
                asked.get(i % asked.len()).cloned().into_iter().collect()
            };
            let what = "Windows Update returned 0x80070643 (fatal error during installation)";
            out.push(report(
                install_at,
                RmmEvent::InstallFailed {
                    detail: match failed.first() {
                        Some(kb) => format!("{kb}: {what}"),
                        None => what.to_owned(),
                    },
                    patches: failed,
                },
            ));
            return out;
        }
        let installed: &[PatchId] = st
            .installs
            .get(&taken.key)
            .map(|i| i.installs.as_slice())
            .unwrap_or(&[]);
        let missing: Vec<PatchId> = expect
            .iter()
            .filter(|p| !installed.contains(p))
            .cloned()
            .collect();
        if !missing.is_empty() {
            let kbs: Vec<&str> = missing.iter().map(|p| p.as_str()).collect();
            out.push(report(
                install_at,
                RmmEvent::InstallFailed {
                    detail: format!(
                        "{}: not installed, not approved in the client's patch approval policy",
                        kbs.join(", ")
                    ),
                    patches: missing,
                },
            ));
            return out;
        }
        out.push(report(install_at, RmmEvent::InstallSucceeded));
        // The reboot.
        let reboot_at = now_cmds.iter().find_map(|t| match &t.command {
            RmmCommand::ScheduleReboot { window, .. } => {
                Some((window.start + Duration::minutes(40)).max(install_at + Duration::minutes(10)))
            }
            RmmCommand::TechnicianReboot { after, .. } => Some(*after + Duration::hours(2)),
            _ => None,
        });
        let reboot_at = reboot_at.or_else(|| {
            // A user reboots after a number of reminders (some never do until forced).
            let patience = (o.draw(&[id, &attempt_s, "patience"]) * 5.0) as usize + 1;
            let reminders: Vec<DateTime<Utc>> = now_cmds
                .iter()
                .filter_map(|t| match &t.command {
                    RmmCommand::ReminderPopup { first, .. } => Some(*first),
                    _ => None,
                })
                .collect();
            let by_user = (patience <= 3)
                .then(|| reminders.get(patience - 1).map(|r| *r + Duration::hours(1)))
                .flatten();
            let forced = now_cmds.iter().find_map(|t| match &t.command {
                RmmCommand::ForcedReboot { window, .. } => {
                    Some(window.start + Duration::minutes(5))
                }
                _ => None,
            });
            by_user.or(forced)
        });
        let Some(reboot_at) = reboot_at else {
            return out;
        };
        out.push(report(reboot_at, RmmEvent::RebootConfirmed));
        // The post-reboot checks.
        let failing = (o.draw(&[id, &attempt_s, "checks"]) < o.rate(attempt) / 2.0).then(|| {
            ALL_CHECKS[(o.draw(&[id, &attempt_s, "which"]) * ALL_CHECKS.len() as f64) as usize
                % ALL_CHECKS.len()]
        });
        let results = ALL_CHECKS
            .iter()
            .map(|&check| CheckResult {
                check,
                passed: Some(check) != failing,
            })
            .collect();
        out.push(report(
            reboot_at + Duration::minutes(20),
            RmmEvent::Checks { results },
        ));
        out
    }
}

const ALL_CHECKS: [Check; 8] = [
    Check::AgentHealthy,
    Check::DnsDhcp,
    Check::LobApps,
    Check::ProductionLine,
    Check::Smtp,
    Check::Exchange,
    Check::Vpn,
    Check::BaselineApps,
];

fn is_install(c: &RmmCommand) -> bool {
    matches!(
        c,
        RmmCommand::ScheduleInstall { .. } | RmmCommand::TechnicianInstall { .. }
    )
}

impl<C: Clock> Rmm for SimRmm<C> {
    async fn send(&self, key: &str, command: &RmmCommand) -> Result<(), PortError> {
        let now = self.clock.now();
        let mut st = lock(&self.state);
        st.count("send");
        match st.fail_send_after {
            Some(0) => {
                st.fail_send_after = None;
                return Err(PortError::transient(
                    format!("send {key}"),
                    "the simulated RMM failed this send (fail_send_after)",
                ));
            }
            Some(left) => st.fail_send_after = Some(left - 1),
            None => {}
        }
        if st.by_key.contains_key(key) {
            st.duplicates += 1;
            return Ok(());
        }
        st.index(command.endpoint(), candidate_instants(command, now));
        if command.is_install() {
            let endpoint = command.endpoint().clone();
            let client = st.client_of.get(&endpoint).cloned();
            let mut outcome = InstallOutcome {
                endpoint,
                installs: Vec::new(),
                refused: Vec::new(),
            };
            for p in command.patches() {
                let held = client
                    .as_ref()
                    .and_then(|c| st.policy.get(&(c.clone(), p.clone())))
                    .copied();
                if held == Some(RmmApproval::Approved) {
                    outcome.installs.push(p.clone());
                } else {
                    outcome.refused.push((p.clone(), held));
                }
            }
            st.installs.insert(key.to_owned(), outcome);
        }
        let n = st.log.len();
        st.by_endpoint
            .entry(command.endpoint().clone())
            .or_default()
            .push(n);
        st.by_key.insert(key.to_owned(), n);
        st.log.push(TakenCommand {
            key: key.to_owned(),
            at: now,
            command: command.clone(),
        });
        Ok(())
    }

    async fn reports(
        &self,
        endpoint: &EndpointId,
        since: DateTime<Utc>,
        expect: &[PatchId],
    ) -> Result<Vec<RmmReport>, PortError> {
        let now = self.clock.now();
        lock(&self.state).count("reports");
        let mut events = self.events(endpoint, since, expect);
        events.retain(|r| r.at <= now && r.at >= since);
        Ok(events)
    }

    /// The client's endpoints with a candidate instant of a report event (see `events`) in
    /// [`since`, now]: a superset of those whose `reports` since then are not empty. Reads only
    /// the client's index over that range, so its cost follows the changes, not the client's
    /// endpoints or the command log. An endpoint is known to be the client's once an approval
    /// was pushed for it (the pipeline pushes before it installs) or `set_client` said so;
    /// until then it is listed for every client (over-reporting, never missing).
    async fn changed(
        &self,
        client: &ClientId,
        since: DateTime<Utc>,
    ) -> Result<Vec<EndpointId>, PortError> {
        let now = self.clock.now();
        let mut st = lock(&self.state);
        st.count("changed");
        if since > now {
            return Ok(Vec::new());
        }
        let mut found: BTreeSet<EndpointId> = st
            .changes
            .get(client)
            .map(|by_instant| {
                by_instant
                    .range(since..=now)
                    .flat_map(|(_, endpoints)| endpoints.iter().cloned())
                    .collect()
            })
            .unwrap_or_default();
        found.extend(
            st.unassigned
                .range(since..=now)
                .flat_map(|(_, endpoints)| endpoints.iter().cloned()),
        );
        Ok(found.into_iter().collect())
    }

    async fn push_approval(&self, key: &str, push: &ApprovalPush) -> Result<(), PortError> {
        let mut st = lock(&self.state);
        st.count("push_approval");
        if !st.approval_keys.insert(key.to_owned()) {
            st.approval_duplicates += 1;
            return Ok(());
        }
        st.policy
            .insert((push.client.clone(), push.patch.clone()), push.approval);
        for e in &push.endpoints {
            st.assign(e, &push.client);
        }
        Ok(())
    }

    async fn approval_state(
        &self,
        endpoint: &EndpointId,
        patch: &PatchId,
    ) -> Result<Option<RmmApproval>, PortError> {
        let mut st = lock(&self.state);
        st.count("approval_state");
        Ok(st
            .client_of
            .get(endpoint)
            .and_then(|c| st.policy.get(&(c.clone(), patch.clone())))
            .copied())
    }

    async fn agent_state(&self, endpoint: &EndpointId) -> Result<AgentState, PortError> {
        let now = self.clock.now();
        let mut st = lock(&self.state);
        st.count("agent_state");
        let sleeper = self.sleeper(endpoint) || st.sleepers.contains(endpoint);
        let maintenance = st.maintenance.contains(endpoint);
        // A sleeper sleeps through the window it is first asked about (12 hours from then).
        let until = *st
            .asleep_until
            .entry(endpoint.clone())
            .or_insert(if sleeper {
                now + Duration::hours(12)
            } else {
                now
            });
        drop(st);
        let asleep = now < until;
        Ok(AgentState {
            online: !asleep,
            maintenance,
            last_contact: Some(if asleep {
                now - Duration::hours(3)
            } else {
                now
            }),
            power: if asleep {
                PowerState::Sleeping
            } else {
                PowerState::Awake
            },
        })
    }

    async fn health(&self, endpoint: &EndpointId) -> Result<HealthReport, PortError> {
        let now = self.clock.now();
        let mut st = lock(&self.state);
        st.count("health");
        st.health_reads += 1;
        let unhealthy = st.unhealthy.get(endpoint).is_some_and(|from| {
            *from <= now
                && !st
                    .commands_of(endpoint)
                    .any(|t| t.at >= *from && is_install(&t.command))
        });
        Ok(HealthReport {
            endpoint: endpoint.clone(),
            at: now,
            online: !st.offline.contains(endpoint),
            maintenance: st.maintenance.contains(endpoint),
            checks: ALL_CHECKS
                .iter()
                .map(|&check| CheckResult {
                    check,
                    passed: !unhealthy,
                })
                .collect(),
        })
    }

    async fn record_closure(&self, key: &str, closure: &TierClosure) -> Result<bool, PortError> {
        let mut st = lock(&self.state);
        st.count("record_closure");
        if st.closures.contains_key(key) {
            st.closure_duplicates += 1;
            return Ok(false);
        }
        st.closures.insert(key.to_owned(), closure.clone());
        Ok(true)
    }

    async fn record_retry(&self, key: &str, note: &RetryNote) -> Result<bool, PortError> {
        let mut st = lock(&self.state);
        st.count("record_retry");
        if st.retries.contains_key(key) {
            return Ok(false);
        }
        st.retries.insert(key.to_owned(), note.clone());
        Ok(true)
    }
}

/// A ticket in the simulated PSA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimTicket {
    /// Its id.
    pub id: String,
    /// patchflow's reference.
    pub external_ref: String,
    /// The company.
    pub client: ClientId,
    /// Priority.
    pub priority: Criticality,
    /// Summary.
    pub summary: String,
    /// Description.
    pub description: String,
    /// Notes, by key.
    pub notes: BTreeMap<String, String>,
    /// Closed.
    pub closed: bool,
}

/// A document attached to a ticket in the simulated PSA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimAttachment {
    /// Its id.
    pub id: String,
    /// The ticket it is attached to.
    pub ticket: String,
    /// Its title (unique per ticket).
    pub title: String,
    /// The file's name.
    pub file_name: String,
    /// Its media type.
    pub content_type: String,
    /// The file's size in bytes.
    pub size: usize,
    /// The file's SHA-256, in hex.
    pub sha256: String,
    /// The file.
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct PsaState {
    tickets: BTreeMap<String, SimTicket>,
    by_ref: BTreeMap<String, String>,
    duplicates: usize,
    /// Documents by (ticket, title).
    attachments: BTreeMap<(String, String), SimAttachment>,
    attachment_duplicates: usize,
    /// Tickets whose first close failed (with [`SimPsa::with_flaky_closes`]).
    close_failed: BTreeSet<String>,
    /// The fault hook: notes whose key contains this are refused (see
    /// [`SimPsa::refuse_notes`]).
    refuse_notes: Option<String>,
    /// Notes refused so far.
    notes_refused: usize,
}

/// The simulated PSA.
#[derive(Debug, Default)]
pub struct SimPsa {
    state: Mutex<PsaState>,
    flaky_closes: bool,
}

impl SimPsa {
    /// A PSA where each ticket's first close fails as a timeout would: the delivery that was
    /// closing the tier dies after its note and attachment, and the redelivery repeats them.
    pub fn with_flaky_closes() -> Self {
        Self {
            flaky_closes: true,
            ..Self::default()
        }
    }

    /// The fault hook: from now on, a note whose key contains `key_part` is refused as Manage
    /// refuses a request (a permanent error, nothing stored), until
    /// `refuse_notes(None)` lets the PSA recover. E.g. `Some("/completed")` refuses every
    /// tier's completion note.
    pub fn refuse_notes(&self, key_part: Option<&str>) {
        lock(&self.state).refuse_notes = key_part.map(str::to_owned);
    }

    /// How many notes the fault hook refused.
    pub fn notes_refused(&self) -> usize {
        lock(&self.state).notes_refused
    }

    /// Every ticket, by id.
    pub fn tickets(&self) -> Vec<SimTicket> {
        lock(&self.state).tickets.values().cloned().collect()
    }

    /// Opens of a reference already open (answered with the first ticket).
    pub fn duplicates(&self) -> usize {
        lock(&self.state).duplicates
    }

    /// Every attached document, by ticket and title.
    pub fn attachments(&self) -> Vec<SimAttachment> {
        lock(&self.state).attachments.values().cloned().collect()
    }

    /// Attachments of a title the ticket already had (answered with the first, nothing added).
    pub fn attachment_duplicates(&self) -> usize {
        lock(&self.state).attachment_duplicates
    }
}

impl Psa for SimPsa {
    async fn open_ticket(&self, t: &NewTicket) -> Result<String, PortError> {
        let mut st = lock(&self.state);
        if let Some(id) = st.by_ref.get(&t.external_ref).cloned() {
            st.duplicates += 1;
            return Ok(id);
        }
        let id = format!("T{}", 1000 + st.tickets.len());
        st.by_ref.insert(t.external_ref.clone(), id.clone());
        st.tickets.insert(
            id.clone(),
            SimTicket {
                id: id.clone(),
                external_ref: t.external_ref.clone(),
                client: t.client.clone(),
                priority: t.priority,
                summary: t.summary.clone(),
                description: t.description.clone(),
                notes: BTreeMap::new(),
                closed: false,
            },
        );
        Ok(id)
    }

    async fn add_note(
        &self,
        ticket: &str,
        note_key: &str,
        text: &str,
    ) -> Result<NoteAdded, PortError> {
        let mut st = lock(&self.state);
        if st
            .refuse_notes
            .as_deref()
            .is_some_and(|part| note_key.contains(part))
        {
            st.notes_refused += 1;
            return Err(PortError::permanent(
                format!("simulated PSA: note {note_key} on ticket {ticket}"),
                "400 Bad Request: the note was refused",
            ));
        }
        let t = st
            .tickets
            .get_mut(ticket)
            .ok_or_else(|| PortError::NotFound(format!("ticket {ticket}")))?;
        let added = !t.notes.contains_key(note_key);
        t.notes
            .entry(note_key.to_owned())
            .or_insert_with(|| text.to_owned());
        Ok(NoteAdded {
            note: format!("{ticket}:{note_key}"),
            added,
        })
    }

    async fn close_ticket(&self, ticket: &str) -> Result<(), PortError> {
        let mut st = lock(&self.state);
        if self.flaky_closes
            && st.tickets.contains_key(ticket)
            && st.close_failed.insert(ticket.to_owned())
        {
            return Err(PortError::transient(
                format!("simulated PSA: close ticket {ticket}"),
                "timed out",
            ));
        }
        let t = st
            .tickets
            .get_mut(ticket)
            .ok_or_else(|| PortError::NotFound(format!("ticket {ticket}")))?;
        t.closed = true;
        Ok(())
    }

    async fn attach(&self, ticket: &str, a: &Attachment) -> Result<Attached, PortError> {
        let mut st = lock(&self.state);
        if !st.tickets.contains_key(ticket) {
            return Err(PortError::NotFound(format!("ticket {ticket}")));
        }
        let key = (ticket.to_owned(), a.title.clone());
        if let Some(doc) = st.attachments.get(&key) {
            let document = doc.id.clone();
            st.attachment_duplicates += 1;
            return Ok(Attached {
                document,
                added: false,
            });
        }
        let id = format!("D{}", 1000 + st.attachments.len());
        let sha256 = Sha256::digest(&a.bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        st.attachments.insert(
            key,
            SimAttachment {
                id: id.clone(),
                ticket: ticket.to_owned(),
                title: a.title.clone(),
                file_name: a.file_name.clone(),
                content_type: a.content_type.clone(),
                size: a.bytes.len(),
                sha256,
                bytes: a.bytes.clone(),
            },
        );
        Ok(Attached {
            document: id,
            added: true,
        })
    }
}

/// A page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimPage {
    /// Its dedup key.
    pub dedup_key: String,
    /// What it said.
    pub summary: String,
    /// Resolved.
    pub resolved: bool,
}

#[derive(Debug, Default)]
struct PagerState {
    pages: BTreeMap<String, SimPage>,
    duplicates: usize,
}

/// The simulated pager.
#[derive(Debug, Default)]
pub struct SimPager {
    state: Mutex<PagerState>,
}

impl SimPager {
    /// Every page, by dedup key.
    pub fn pages(&self) -> Vec<SimPage> {
        lock(&self.state).pages.values().cloned().collect()
    }

    /// Triggers of a key already paged (not paged again).
    pub fn duplicates(&self) -> usize {
        lock(&self.state).duplicates
    }
}

impl Pager for SimPager {
    async fn trigger(&self, dedup_key: &str, summary: &str) -> Result<(), PortError> {
        let mut st = lock(&self.state);
        if st.pages.contains_key(dedup_key) {
            st.duplicates += 1;
            return Ok(());
        }
        st.pages.insert(
            dedup_key.to_owned(),
            SimPage {
                dedup_key: dedup_key.to_owned(),
                summary: summary.to_owned(),
                resolved: false,
            },
        );
        Ok(())
    }

    async fn resolve(&self, dedup_key: &str) -> Result<(), PortError> {
        if let Some(p) = lock(&self.state).pages.get_mut(dedup_key) {
            p.resolved = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchflow_core::ports::clock::ManualClock;
    use patchflow_core::schedule::Window;

    fn t0() -> DateTime<Utc> {
        "2026-12-09T00:00:00Z".parse().unwrap_or_default()
    }

    fn id(s: &str) -> EndpointId {
        EndpointId::parse(s).unwrap()
    }

    fn window(start: DateTime<Utc>, hours: i64) -> Window {
        Window {
            start,
            end: start + Duration::hours(hours),
        }
    }

    /// An RMM with `n` endpoints of client `acme` (approval pushed for them) and one of `other`.
    async fn rmm(n: usize) -> (SimRmm<ManualClock>, Arc<ManualClock>, Vec<EndpointId>) {
        let clock = Arc::new(ManualClock::new(t0()));
        let rmm = SimRmm::new(
            Outcomes {
                seed: 7,
                failure_rate: 0.4,
            },
            clock.clone(),
        );
        let endpoints: Vec<EndpointId> = (0..n).map(|i| id(&format!("acme-ws{i}"))).collect();
        for (client, targets) in [("acme", endpoints.clone()), ("other", vec![id("oth-ws0")])] {
            rmm.push_approval(
                &format!("{client}-kb"),
                &ApprovalPush {
                    client: ClientId::parse(client).unwrap(),
                    patch: PatchId::parse("KB5071001").unwrap(),
                    approval: RmmApproval::Approved,
                    endpoints: targets,
                },
            )
            .await
            .unwrap();
        }
        (rmm, clock, endpoints)
    }

    /// Every report any `reports` call shows in the last hour is on an endpoint `changed` lists
    /// for that hour, through installs (some failing, some asleep), reminders, forced reboots
    /// and retries; and `changed` lists fewer than every endpoint most hours.
    #[tokio::test]
    async fn changed_lists_every_endpoint_a_report_shows_in_the_hour() {
        let (rmm, clock, endpoints) = rmm(40).await;
        let acme = ClientId::parse("acme").unwrap();
        let kb = vec![PatchId::parse("KB5071001").unwrap()];
        let mut sent = Vec::new();
        for (i, e) in endpoints.iter().enumerate() {
            let start = t0() + Duration::hours((i % 10) as i64);
            rmm.agent_state(e).await.unwrap();
            let install = RmmCommand::ScheduleInstall {
                endpoint: e.clone(),
                window: window(start, 6),
                patches: kb.clone(),
            };
            rmm.send(&format!("{e}-install"), &install).await.unwrap();
            sent.push(e.clone());
        }
        let mut quiet_hours = 0;
        let mut kinds = BTreeSet::new();
        for hour in 1..=72 {
            clock.set(t0() + Duration::hours(hour));
            let now = clock.now();
            // Reminders the day after, a forced reboot two days after, a retry on day 2.
            for (i, e) in endpoints.iter().enumerate() {
                if hour == 20 + (i % 5) as i64 {
                    let c = RmmCommand::ReminderPopup {
                        endpoint: e.clone(),
                        first: now + Duration::minutes(30),
                        local_time: "10:00".parse().unwrap(),
                    };
                    rmm.send(&format!("{e}-reminder"), &c).await.unwrap();
                }
                if hour == 44 {
                    let c = RmmCommand::ForcedReboot {
                        endpoint: e.clone(),
                        window: window(now + Duration::hours(2), 2),
                    };
                    rmm.send(&format!("{e}-forced"), &c).await.unwrap();
                }
                if hour == 50 && i % 3 == 0 {
                    let c = RmmCommand::TechnicianInstall {
                        endpoint: e.clone(),
                        window: window(now, 4),
                        patches: kb.clone(),
                    };
                    rmm.send(&format!("{e}-retry"), &c).await.unwrap();
                }
            }
            let hour_start = now - Duration::hours(1);
            let listed: BTreeSet<EndpointId> = rmm
                .changed(&acme, hour_start)
                .await
                .unwrap()
                .into_iter()
                .collect();
            if listed.len() < endpoints.len() {
                quiet_hours += 1;
            }
            for e in &endpoints {
                for since in [t0(), t0() + Duration::hours(50), hour_start] {
                    let seen = rmm.reports(e, since, &kb).await.unwrap();
                    kinds.extend(seen.iter().map(|r| {
                        serde_json::to_value(&r.event).unwrap_or_default()["event"].to_string()
                    }));
                    if seen.iter().any(|r| r.at >= hour_start) {
                        assert!(listed.contains(e), "hour {hour}: {e} missing: {seen:?}");
                    }
                }
            }
            assert!(
                !listed.contains(&id("oth-ws0")),
                "another client's endpoint"
            );
        }
        assert!(quiet_hours > 60, "{quiet_hours}");
        assert_eq!(
            kinds.len(),
            5,
            "every kind of event was reported: {kinds:?}"
        );
    }

    /// Nothing is listed before its instant or after the range asked; an endpoint whose client
    /// is not known yet is listed for every client until it is, then only for its own.
    #[tokio::test]
    async fn changed_reads_the_range_and_the_client() {
        let (rmm, clock, endpoints) = rmm(2).await;
        let acme = ClientId::parse("acme").unwrap();
        let other = ClientId::parse("other").unwrap();
        let stray = id("new-ws9");
        for e in [&endpoints[0], &stray] {
            let c = RmmCommand::ScheduleInstall {
                endpoint: e.clone(),
                window: window(t0() + Duration::hours(2), 4),
                patches: Vec::new(),
            };
            rmm.send(&format!("{e}-install"), &c).await.unwrap();
        }
        // The install is reported at 02:15: not yet at 02:00.
        clock.set(t0() + Duration::hours(2));
        assert!(rmm.changed(&acme, t0()).await.unwrap().is_empty());
        clock.set(t0() + Duration::hours(3));
        assert_eq!(
            rmm.changed(&acme, t0()).await.unwrap(),
            vec![endpoints[0].clone(), stray.clone()]
        );
        assert_eq!(
            rmm.changed(&other, t0()).await.unwrap(),
            vec![stray.clone()]
        );
        // Since after every candidate instant: nothing.
        clock.set(t0() + Duration::hours(30));
        assert!(rmm
            .changed(&acme, t0() + Duration::hours(4))
            .await
            .unwrap()
            .is_empty());
        // Since in the future: nothing.
        assert!(rmm
            .changed(&acme, t0() + Duration::hours(40))
            .await
            .unwrap()
            .is_empty());
        rmm.set_client(&stray, &other);
        assert_eq!(
            rmm.changed(&acme, t0()).await.unwrap(),
            vec![endpoints[0].clone()]
        );
        assert_eq!(
            rmm.changed(&other, t0()).await.unwrap(),
            vec![stray.clone()]
        );
    }

    /// Every port call is counted by its method, a duplicate included.
    #[tokio::test]
    async fn calls_are_counted_by_method() {
        let (rmm, _clock, endpoints) = rmm(1).await;
        let e = &endpoints[0];
        let c = RmmCommand::TechnicianReboot {
            endpoint: e.clone(),
            after: t0(),
        };
        rmm.send("k", &c).await.unwrap();
        rmm.send("k", &c).await.unwrap();
        rmm.reports(e, t0(), &[]).await.unwrap();
        rmm.changed(&ClientId::parse("acme").unwrap(), t0())
            .await
            .unwrap();
        rmm.agent_state(e).await.unwrap();
        rmm.health(e).await.unwrap();
        rmm.approval_state(e, &PatchId::parse("KB5071001").unwrap())
            .await
            .unwrap();
        let calls = rmm.calls();
        let expected: BTreeMap<&'static str, u64> = [
            ("push_approval", 2),
            ("send", 2),
            ("reports", 1),
            ("changed", 1),
            ("agent_state", 1),
            ("health", 1),
            ("approval_state", 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(calls, expected);
    }
}
