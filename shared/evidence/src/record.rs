//! The machine record of a bundle (`record.json`): everything the report shows, as data.
//!
//! A [`TierRecord`] is one client's part of a closed tier; a [`CycleRecord`] rolls a client's
//! closed tiers of a cycle up for the assessor. Both carry an [`SlaSection`]: the 3.14.1 time
//! frames of the policy, every flaw's identified, reported and corrected times with its standing
//! on [b], [d] and [f], the tallies and the breaches.
//!
//! Instants are RFC 3339 UTC with `Z`; the records are written once, so their field order and
//! formatting are fixed by these types.

use std::collections::BTreeMap;

use chrono::Duration;
use chrono::{DateTime, Utc};
use patchflow_core::ids::CycleId;
use patchflow_core::model::Severity;
use patchflow_core::policy::SlaPolicy;
use patchflow_core::rules::outcome::{categorize, OutcomeFacts};
pub use patchflow_core::rules::outcome::{Category, Counts};
use patchflow_core::rules::sla::{self, Flaw, Objective, Standing};
use patchflow_core::schedule::utc;
use serde::{Deserialize, Serialize};

/// The record format's version. 2 added the endpoint categories of
/// [`patchflow_core::rules::outcome`] to the counts (`patched_after_retry`, `up_to_date`,
/// `awaiting_approval`, `in_progress`; `failed` is now an endpoint whose latest attempt failed)
/// and the 48-hour time to patch of auto-approved flaws (`sla.time_to_patch`,
/// `sla.flaws[].time_to_patch`, `sla.time_frames.time_to_patch_hours`). Every addition reads as
/// absent from a schema-1 record, so both still parse and verify.
pub const SCHEMA: u32 = 2;

/// One client's part of a closed tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierRecord {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The cycle.
    pub cycle: CycleId,
    /// The client.
    pub client: String,
    /// The tier (`servers.{client}.{wave}` or `workstations.{wave}`).
    pub tier: String,
    /// `server` or `workstation`.
    pub kind: String,
    /// The ring: `pilot` or `production`.
    pub wave: String,
    /// The month's release (Patch Tuesday).
    #[serde(with = "utc")]
    pub released_at: DateTime<Utc>,
    /// When the inventory sync opened the cycle (identification).
    #[serde(with = "utc")]
    pub opened_at: DateTime<Utc>,
    /// When the tier validated; the record is as of this instant.
    #[serde(with = "utc")]
    pub validated_at: DateTime<Utc>,
    /// Per endpoint of the client in the tier.
    pub outcomes: Vec<EndpointOutcome>,
    /// The client's endpoints of the tier's kind left out of scope.
    pub excluded: Vec<ExcludedEndpoint>,
    /// Every patch of the month with its decision.
    pub approvals: Vec<ApprovalLine>,
    /// The exception register entries that concern the client.
    pub exceptions: Vec<ExceptionLine>,
    /// The failure tickets of the client's endpoints in the tier.
    pub tickets: Vec<TicketLine>,
    /// The 3.14.1 clocks.
    pub sla: SlaSection,
}

/// How one endpoint went through the tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointOutcome {
    /// The endpoint id.
    pub endpoint: String,
    /// Its host name.
    pub hostname: String,
    /// Its run status (`validated`, `failed`, `awaiting_approval`, ...).
    pub status: String,
    /// Attempts made (1 for the first).
    pub attempts: u32,
    /// When the install was confirmed.
    #[serde(default, with = "utc::option")]
    pub installed_at: Option<DateTime<Utc>>,
    /// When the reboot was confirmed.
    #[serde(default, with = "utc::option")]
    pub reboot_confirmed_at: Option<DateTime<Utc>>,
    /// Reboot reminders shown.
    pub reminders: u32,
    /// Whether the reboot was forced.
    pub forced_reboot: bool,
    /// When the post-reboot checks passed.
    #[serde(default, with = "utc::option")]
    pub validated_at: Option<DateTime<Utc>>,
    /// Its failures' ids, oldest first.
    pub failures: Vec<String>,
    /// How its patches were known to apply: `reported` (the RMM's patch scan), `products` (its
    /// OS against the patches' products) or `assumed` (nothing known: every patch counted);
    /// empty in records written before it was kept.
    #[serde(default)]
    pub applicability: String,
}

impl EndpointOutcome {
    /// Its category, by the one definition `patchflow status` uses too
    /// ([`patchflow_core::rules::outcome::categorize`]): a record is written when its tier
    /// validated, so no endpoint of it waits on its tier.
    pub fn category(&self) -> Category {
        categorize(&OutcomeFacts {
            up_to_date: self.status == "up_to_date",
            validated: self.status == "validated",
            failed: self.status == "failed",
            awaiting_approval: self.status == "awaiting_approval",
            retried: !self.failures.is_empty() || self.attempts > 1,
            tier_waiting: false,
        })
    }
}

/// An endpoint left out of scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExcludedEndpoint {
    /// The endpoint id.
    pub endpoint: String,
    /// Its host name.
    pub hostname: String,
    /// Why (the scope rule's reason code).
    pub reason: String,
}

/// A patch's approval decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalLine {
    /// The patch id (a KB, or a third-party id).
    pub patch: String,
    /// Its title.
    pub title: String,
    /// Its severity, if it has one (`critical`, `important`, `moderate`, `low`).
    pub severity: Option<String>,
    /// `approved`, `declined` or `pending_review`.
    pub decision: String,
    /// The reason code of the decision.
    pub reason: String,
    /// The operating-model node that decided.
    pub node: String,
    /// When the decision was recorded (the flaw's report, 3.14.1[c]).
    #[serde(default, with = "utc::option")]
    pub recorded_at: Option<DateTime<Utc>>,
    /// The engineer who signed an explicit decision.
    pub engineer: Option<String>,
    /// The engineer's reason code.
    pub reason_code: Option<String>,
    /// When the engineer signed.
    #[serde(default, with = "utc::option")]
    pub signed_at: Option<DateTime<Utc>>,
}

/// An exception register entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionLine {
    /// What it is about (a patch, an endpoint).
    pub subject: String,
    /// The kind of exception.
    pub kind: String,
    /// The reason code.
    pub reason: String,
    /// The client, when it concerns one.
    pub client: Option<String>,
    /// A reference (a ticket, a change record).
    pub reference: Option<String>,
    /// The engineer who signed it.
    pub engineer: Option<String>,
    /// The engineer's reason.
    pub engineer_reason: Option<String>,
    /// When it was signed.
    #[serde(default, with = "utc::option")]
    pub signed_at: Option<DateTime<Utc>>,
    /// What lifting it requires.
    pub change_requires: String,
    /// Whether it carries its signed approval (the client's reference for an exclusion or Do
    /// Not Patch, an engineer's sign-off for a patch); false in records written before it was
    /// kept.
    #[serde(default)]
    pub signed: bool,
    /// Who may lift it (empty in records written before it was kept).
    #[serde(default)]
    pub lifted_by: String,
}

/// A failure's PSA ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketLine {
    /// The failure id.
    pub failure: String,
    /// The endpoint.
    pub endpoint: String,
    /// Where it failed (`install`, `reboot`, `validation`, ...).
    pub stage: String,
    /// `P1`, `P2` or `P3`.
    pub priority: String,
    /// The PSA ticket, once opened.
    pub ticket: Option<String>,
    /// `open` or `closed`.
    pub status: String,
    /// Whether on-call was paged.
    pub paged: bool,
    /// When it failed.
    #[serde(with = "utc")]
    pub failed_at: DateTime<Utc>,
    /// The engineer's root cause, once given.
    pub root_cause: Option<String>,
}

/// The 3.14.1 section of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaSection {
    /// The instant the standings were judged at.
    #[serde(with = "utc")]
    pub as_of: DateTime<Utc>,
    /// The policy's time frames.
    pub time_frames: TimeFrames,
    /// Per objective, [b] [d] [f] in order.
    pub tallies: Vec<ObjectiveTally>,
    /// Every breach.
    pub breaches: Vec<BreachLine>,
    /// Every flaw (patch x endpoint).
    pub flaws: Vec<FlawLine>,
    /// The auto-approved flaws' time to patch against the target; absent in schema-1 records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_patch: Option<TimeToPatchTally>,
}

/// The tally of the auto-approved flaws' time to patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeToPatchTally {
    /// The target, in hours from release.
    pub target_hours: i64,
    /// Installed within the target.
    pub met: u64,
    /// Installed later, or not installed and past it.
    pub missed: u64,
    /// Not installed, not yet due.
    pub running: u64,
    /// The longest time to patch of an installed flaw, in whole hours rounded up.
    pub longest_hours: Option<i64>,
}

impl TimeToPatchTally {
    /// The share met of the flaws decided, as [`percent_met`].
    pub fn percent_met(&self) -> Option<String> {
        percent_met(self.met, self.missed)
    }
}

/// One auto-approved flaw's time to patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeToPatchLine {
    /// `met`, `missed` or `running`.
    pub status: String,
    /// Release plus the target.
    #[serde(with = "utc")]
    pub due: DateTime<Utc>,
    /// When the install was confirmed, if it was.
    #[serde(default, with = "utc::option")]
    pub at: Option<DateTime<Utc>>,
    /// Whole hours from release to `at`, rounded up.
    pub hours: Option<i64>,
}

impl TimeToPatchLine {
    /// The line of a judged time to patch.
    pub fn of(t: sla::TimeToPatch) -> Self {
        let (status, due, at) = match t.standing {
            Standing::Met { due, at } => ("met", due, Some(at)),
            Standing::Breached { due, at } => ("missed", due, at),
            Standing::Running { due } => ("running", due, None),
        };
        Self {
            status: status.to_owned(),
            due,
            at,
            hours: t.hours,
        }
    }
}

/// The time frames [a], [c], [e] as the policy states them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeFrames {
    /// [a]: hours from release to identification.
    pub identify_hours: i64,
    /// [c]: hours from identification to report, per severity (`critical`, `important`,
    /// `moderate`, `low`, `none`).
    pub report_hours: BTreeMap<String, i64>,
    /// [e]: days from release to correction, per severity.
    pub correct_days: BTreeMap<String, i64>,
    /// The time-to-patch target of auto-approved patches, in hours from release (48); absent
    /// in schema-1 records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_patch_hours: Option<i64>,
}

/// The severities the time frames are stated for, with `none` for patches without one.
pub const SEVERITIES: [Option<Severity>; 5] = [
    Some(Severity::Critical),
    Some(Severity::Important),
    Some(Severity::Moderate),
    Some(Severity::Low),
    None,
];

fn severity_name(s: Option<Severity>) -> &'static str {
    s.map_or("none", |s| s.as_str())
}

impl TimeFrames {
    /// The policy's time frames, with the time-to-patch target.
    pub fn of(policy: &SlaPolicy, time_to_patch: Duration) -> Self {
        Self {
            time_to_patch_hours: Some(time_to_patch.num_hours()),
            identify_hours: policy.identify.num_hours(),
            report_hours: SEVERITIES
                .iter()
                .map(|s| {
                    (
                        severity_name(*s).to_owned(),
                        policy.report.of(*s).num_hours(),
                    )
                })
                .collect(),
            correct_days: SEVERITIES
                .iter()
                .map(|s| {
                    (
                        severity_name(*s).to_owned(),
                        policy.correct.of(*s).num_days(),
                    )
                })
                .collect(),
        }
    }
}

/// The tally of one objective.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectiveTally {
    /// `identify`, `report` or `correct`.
    pub objective: String,
    /// `b`, `d` or `f`.
    pub letter: String,
    /// Met in time.
    pub met: u64,
    /// Breached.
    pub breached: u64,
    /// Not done and not yet due.
    pub running: u64,
}

impl ObjectiveTally {
    /// The share met of the flaws decided (met or breached; running ones are not yet decided),
    /// rounded down to a tenth of a percent so one breach never shows as 100.0; `None` while
    /// nothing is decided. The report and its image both show this figure.
    pub fn percent_met(&self) -> Option<String> {
        percent_met(self.met, self.breached)
    }
}

/// See [`ObjectiveTally::percent_met`].
pub fn percent_met(met: u64, breached: u64) -> Option<String> {
    let decided = u128::from(met) + u128::from(breached);
    if decided == 0 {
        return None;
    }
    let tenths = u128::from(met) * 1000 / decided;
    Some(format!("{}.{}", tenths / 10, tenths % 10))
}

/// One objective's standing for a flaw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandingLine {
    /// `met`, `breached` or `running`.
    pub status: String,
    /// When it was (or is) due.
    #[serde(with = "utc")]
    pub due: DateTime<Utc>,
    /// When it was done, if it has been.
    #[serde(default, with = "utc::option")]
    pub at: Option<DateTime<Utc>>,
}

impl From<Standing> for StandingLine {
    fn from(s: Standing) -> Self {
        let (status, due, at) = match s {
            Standing::Met { due, at } => ("met", due, Some(at)),
            Standing::Breached { due, at } => ("breached", due, at),
            Standing::Running { due } => ("running", due, None),
        };
        Self {
            status: status.to_owned(),
            due,
            at,
        }
    }
}

/// A flaw with its three standings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlawLine {
    /// The endpoint.
    pub endpoint: String,
    /// The patch.
    pub patch: String,
    /// Its severity, or `none`.
    pub severity: String,
    /// Its release.
    #[serde(with = "utc")]
    pub released_at: DateTime<Utc>,
    /// [b].
    pub identify: StandingLine,
    /// [d].
    pub report: StandingLine,
    /// [f].
    pub correct: StandingLine,
    /// How the patch was known to apply on the endpoint (`reported`, `products`, `assumed`);
    /// empty in records written before it was kept.
    #[serde(default)]
    pub applicability: String,
    /// The patch was auto-approved (false in schema-1 records).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_approved: bool,
    /// An auto-approved flaw's time to patch against the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_patch: Option<TimeToPatchLine>,
}

/// A missed time frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreachLine {
    /// `b`, `d` or `f`.
    pub letter: String,
    /// `identify`, `report` or `correct`.
    pub objective: String,
    /// The endpoint.
    pub endpoint: String,
    /// The patch.
    pub patch: String,
    /// When it was due.
    #[serde(with = "utc")]
    pub due: DateTime<Utc>,
    /// When it was done, if it has been.
    #[serde(default, with = "utc::option")]
    pub at: Option<DateTime<Utc>>,
    /// How late, in whole hours (to `at`, or to `as_of` while open).
    pub late_by_hours: i64,
}

fn objective_name(o: Objective) -> &'static str {
    match o {
        Objective::Identify => "identify",
        Objective::Report => "report",
        Objective::Correct => "correct",
    }
}

impl SlaSection {
    /// Judges `flaws` (all of one client) at `as_of` under `policy`, and each auto-approved
    /// flaw's time to patch against `time_to_patch` (the policy's
    /// `approval.time_to_patch_target`).
    pub fn judge(
        policy: &SlaPolicy,
        time_to_patch: Duration,
        flaws: &[Flaw],
        as_of: DateTime<Utc>,
    ) -> Self {
        let report = sla::report(policy, flaws, as_of);
        let mut totals: BTreeMap<Objective, sla::Tally> = BTreeMap::new();
        for tallies in report.clients.values() {
            for (o, t) in tallies {
                let total = totals.entry(*o).or_default();
                total.met += t.met;
                total.breached += t.breached;
                total.running += t.running;
            }
        }
        let tallies = Objective::ALL
            .iter()
            .map(|o| {
                let t = totals.get(o).copied().unwrap_or_default();
                ObjectiveTally {
                    objective: objective_name(*o).to_owned(),
                    letter: o.letter().to_owned(),
                    met: t.met as u64,
                    breached: t.breached as u64,
                    running: t.running as u64,
                }
            })
            .collect();
        let breaches = report
            .breaches
            .iter()
            .map(|b| BreachLine {
                letter: b.objective.letter().to_owned(),
                objective: objective_name(b.objective).to_owned(),
                endpoint: b.endpoint.clone(),
                patch: b.patch.clone(),
                due: b.due,
                at: b.at,
                late_by_hours: b.late_by.num_hours(),
            })
            .collect();
        let flaws = flaws
            .iter()
            .map(|f| {
                let c = sla::clock(policy, f.severity, f.released, &f.events, as_of);
                FlawLine {
                    endpoint: f.endpoint.clone(),
                    patch: f.patch.clone(),
                    severity: severity_name(f.severity).to_owned(),
                    released_at: f.released,
                    identify: c.identify.into(),
                    report: c.report.into(),
                    correct: c.correct.into(),
                    applicability: f.applicability.clone(),
                    auto_approved: f.auto_approved,
                    time_to_patch: f.auto_approved.then(|| {
                        TimeToPatchLine::of(sla::time_to_patch(
                            time_to_patch,
                            f.released,
                            f.events.corrected,
                            as_of,
                        ))
                    }),
                }
            })
            .collect::<Vec<_>>();
        let mut ttp = TimeToPatchTally {
            target_hours: time_to_patch.num_hours(),
            met: 0,
            missed: 0,
            running: 0,
            longest_hours: None,
        };
        for t in flaws.iter().filter_map(|f| f.time_to_patch.as_ref()) {
            match t.status.as_str() {
                "met" => ttp.met += 1,
                "missed" => ttp.missed += 1,
                _ => ttp.running += 1,
            }
            if let Some(h) = t.hours {
                ttp.longest_hours = Some(ttp.longest_hours.map_or(h, |l| l.max(h)));
            }
        }
        Self {
            as_of,
            time_frames: TimeFrames::of(policy, time_to_patch),
            tallies,
            breaches,
            flaws,
            time_to_patch: Some(ttp),
        }
    }
}

impl SlaSection {
    /// The image's 3.14.1 rows: [b] [d] [f], then the auto-approved flaws' 48-hour time to
    /// patch (missed shown as breached) when there are any.
    pub fn image_tallies(&self) -> Vec<ObjectiveTally> {
        let mut out = self.tallies.clone();
        if let Some(t) = self
            .time_to_patch
            .as_ref()
            .filter(|t| t.met + t.missed + t.running > 0)
        {
            out.push(ObjectiveTally {
                objective: format!("{} h time to patch", t.target_hours),
                letter: String::new(),
                met: t.met,
                breached: t.missed,
                running: t.running,
            });
        }
        out
    }

    /// Re-derives the time-to-patch figures from the record's own instants and names every one
    /// that does not follow (what `patchflow audit verify` checks of a schema-2 record): each
    /// flaw's due is its release plus the target, its hours are the whole hours from release to
    /// its install rounded up, its status is met when installed by the due instant, missed when
    /// installed later or past due at `as_of`, running otherwise; the tally counts the flaws.
    pub fn time_to_patch_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Some(tally) = &self.time_to_patch else {
            return out;
        };
        let target = Duration::hours(tally.target_hours);
        let (mut met, mut missed, mut running) = (0u64, 0u64, 0u64);
        for (i, f) in self.flaws.iter().enumerate() {
            let Some(t) = &f.time_to_patch else {
                if f.auto_approved {
                    out.push(format!(
                        "field `sla.flaws[{i}].time_to_patch`: auto-approved {} on {} is not \
                         measured",
                        f.patch, f.endpoint
                    ));
                }
                continue;
            };
            if t.at != f.correct.at {
                out.push(format!(
                    "field `sla.flaws[{i}].time_to_patch.at`: {} on {} is measured to {}, not to \
                     its correction {}",
                    f.patch,
                    f.endpoint,
                    t.at.as_ref().map_or_else(|| "-".to_owned(), utc::format),
                    f.correct
                        .at
                        .as_ref()
                        .map_or_else(|| "-".to_owned(), utc::format)
                ));
            }
            let want =
                TimeToPatchLine::of(sla::time_to_patch(target, f.released_at, t.at, self.as_of));
            if *t != want {
                out.push(format!(
                    "field `sla.flaws[{i}].time_to_patch`: {} on {} reads {} ({} h, due {}), \
                     but its instants give {} ({} h, due {})",
                    f.patch,
                    f.endpoint,
                    t.status,
                    t.hours.map_or_else(|| "-".to_owned(), |h| h.to_string()),
                    utc::format(&t.due),
                    want.status,
                    want.hours.map_or_else(|| "-".to_owned(), |h| h.to_string()),
                    utc::format(&want.due)
                ));
            }
            match t.status.as_str() {
                "met" => met += 1,
                "missed" => missed += 1,
                _ => running += 1,
            }
        }
        if (tally.met, tally.missed, tally.running) != (met, missed, running) {
            out.push(format!(
                "field `sla.time_to_patch`: tallies {} met, {} missed, {} running, but its flaws \
                 are {met}, {missed}, {running}",
                tally.met, tally.missed, tally.running
            ));
        }
        out
    }
}

/// The figures of a stored `record.json` that do not follow from its own data (see
/// [`SlaSection::time_to_patch_problems`]); a record of schema 1 (or a file that is no record)
/// has none to check.
pub fn record_problems(bytes: &[u8]) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct Head {
        #[serde(default)]
        schema: u32,
        #[serde(default)]
        sla: Option<serde_json::Value>,
    }
    let Ok(head) = serde_json::from_slice::<Head>(bytes) else {
        return Ok(Vec::new());
    };
    let Some(sla) = head.sla.filter(|_| head.schema >= 2) else {
        return Ok(Vec::new());
    };
    let sla: SlaSection = serde_json::from_value(sla).map_err(|e| {
        format!(
            "field `sla`: not a schema-{} 3.14.1 section: {e}",
            head.schema
        )
    })?;
    Ok(sla.time_to_patch_problems())
}

/// A client's roll-up of a cycle: its closed tiers, and the 3.14.1 clocks over all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleRecord {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The cycle.
    pub cycle: CycleId,
    /// The client.
    pub client: String,
    /// The month's release.
    #[serde(with = "utc")]
    pub released_at: DateTime<Utc>,
    /// When the inventory sync opened the cycle.
    #[serde(with = "utc")]
    pub opened_at: DateTime<Utc>,
    /// When the cycle's last tier closed; the roll-up is as of this instant.
    #[serde(with = "utc")]
    pub closed_at: DateTime<Utc>,
    /// The client's tiers, in the order they closed.
    pub tiers: Vec<TierLine>,
    /// The exception register entries that concern the client.
    pub exceptions: Vec<ExceptionLine>,
    /// The clocks over every flaw of the client's tiers.
    pub sla: SlaSection,
}

/// A tier in a cycle's roll-up, pointing at its bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierLine {
    /// The tier.
    pub tier: String,
    /// `server` or `workstation`.
    pub kind: String,
    /// `pilot` or `production`.
    pub wave: String,
    /// When it validated.
    #[serde(with = "utc")]
    pub validated_at: DateTime<Utc>,
    /// Its bundle's manifest key.
    pub manifest: String,
    /// The manifest's SHA-256 (hex).
    pub manifest_sha256: String,
    /// The chart counts.
    pub counts: Counts,
}

impl TierRecord {
    /// The chart counts of this record.
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            excluded: self.excluded.len() as u64,
            ..Counts::default()
        };
        for o in &self.outcomes {
            c.add(o.category());
        }
        c
    }

    /// The PNG summary's content.
    pub fn summary(&self) -> Summary {
        Summary {
            title: format!("Patch compliance {} - {}", self.cycle, self.client),
            subtitle: format!(
                "Tier {} ({} ring), validated {}",
                self.tier,
                self.wave,
                utc::format(&self.validated_at)
            ),
            groups: vec![Group {
                label: format!("{} {}", self.kind, self.wave),
                counts: self.counts(),
            }],
            sla: self.sla.image_tallies(),
        }
    }
}

impl CycleRecord {
    /// The PNG summary's content: one bar group per ring of each kind.
    pub fn summary(&self) -> Summary {
        Summary {
            title: format!("Patch compliance {} - {}", self.cycle, self.client),
            subtitle: format!(
                "Cycle roll-up: {} tier(s), closed {}",
                self.tiers.len(),
                utc::format(&self.closed_at)
            ),
            groups: self
                .tiers
                .iter()
                .map(|t| Group {
                    label: format!("{} {}", t.kind, t.wave),
                    counts: t.counts,
                })
                .collect(),
            sla: self.sla.image_tallies(),
        }
    }
}

/// What the PNG summary shows: stacked bars of endpoint counts per group (a client's ring), and
/// the 3.14.1 figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The headline.
    pub title: String,
    /// The line under it.
    pub subtitle: String,
    /// One bar per group, in order.
    pub groups: Vec<Group>,
    /// [b] [d] [f] tallies, in order.
    pub sla: Vec<ObjectiveTally>,
}

/// A labelled bar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// E.g. `server pilot`.
    pub label: String,
    /// Its counts.
    pub counts: Counts,
}

impl FlawLine {
    /// The flaw this line was judged from, to judge it again at a later instant (a cycle's
    /// roll-up re-judges its tiers' flaws when the cycle closes).
    pub fn flaw(&self, client: &str) -> Flaw {
        Flaw {
            client: client.to_owned(),
            endpoint: self.endpoint.clone(),
            patch: self.patch.clone(),
            severity: serde_json::from_value(serde_json::Value::String(self.severity.clone())).ok(),
            released: self.released_at,
            events: sla::FlawEvents {
                identified: self.identify.at,
                reported: self.report.at,
                corrected: self.correct.at,
            },
            applicability: self.applicability.clone(),
            auto_approved: self.auto_approved,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::html::tests::tier_fixture;

    #[test]
    fn a_schema_2_records_time_to_patch_follows_from_its_instants() {
        let record = tier_fixture();
        let bytes = serde_json::to_vec(&record).unwrap();
        assert_eq!(record_problems(&bytes).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn edited_hours_a_flipped_status_or_a_wrong_tally_are_named() {
        let mut record = tier_fixture();
        if let Some(t) = record.sla.flaws[0].time_to_patch.as_mut() {
            t.hours = Some(30);
        }
        if let Some(t) = record.sla.flaws[1].time_to_patch.as_mut() {
            t.status = "met".into();
        }
        let bytes = serde_json::to_vec(&record).unwrap();
        let found = record_problems(&bytes).unwrap();
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(
            found[0].contains("sla.flaws[0].time_to_patch"),
            "{}",
            found[0]
        );
        assert!(
            found[0].contains("(30 h,") && found[0].contains("(35 h,"),
            "{}",
            found[0]
        );
        assert!(found[1].contains("reads met") && found[1].contains("give missed"));
        assert!(
            found[2].contains("field `sla.time_to_patch`"),
            "{}",
            found[2]
        );
    }

    #[test]
    fn a_schema_1_record_or_another_file_has_nothing_to_check() {
        let mut record = tier_fixture();
        record.schema = 1;
        if let Some(t) = record.sla.flaws[0].time_to_patch.as_mut() {
            t.hours = Some(1);
        }
        let bytes = serde_json::to_vec(&record).unwrap();
        assert!(record_problems(&bytes).unwrap().is_empty());
        assert!(record_problems(b"{\"client\": \"c\"}").unwrap().is_empty());
        assert!(record_problems(b"not json").unwrap().is_empty());
        // A schema-1 record as written before: no time to patch, every new count 0.
        let mut old = serde_json::to_value(tier_fixture()).unwrap();
        old["schema"] = 1.into();
        let sla = old["sla"].as_object_mut().unwrap();
        sla.remove("time_to_patch");
        let back: TierRecord = serde_json::from_value(old).unwrap();
        assert!(back.sla.time_to_patch.is_none());
        assert_eq!(back.counts().patched, 1);
    }

    #[test]
    fn the_image_shows_the_time_to_patch_beside_the_three_clocks() {
        let rows = tier_fixture().summary().sla;
        assert_eq!(rows.len(), 4);
        let last = &rows[3];
        assert_eq!(last.objective, "48 h time to patch");
        assert_eq!((last.met, last.breached, last.running), (1, 1, 0));
        let mut none = tier_fixture();
        none.sla.time_to_patch = None;
        assert_eq!(none.summary().sla.len(), 3);
    }

    #[test]
    fn a_retried_endpoint_validated_since_counts_patched_after_retry() {
        let mut o = tier_fixture().outcomes[0].clone();
        assert_eq!(o.category(), Category::Patched);
        o.failures = vec!["f-1".into()];
        o.attempts = 2;
        assert_eq!(o.category(), Category::PatchedAfterRetry);
        o.status = "up_to_date".into();
        assert_eq!(o.category(), Category::UpToDate);
    }
}
