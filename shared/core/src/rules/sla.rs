//! The clocks of NIST SP 800-171A 3.14.1. The policy states the time frames ([a] identify,
//! [c] report, [e] correct, per severity: [`SlaPolicy`]); for every flaw (a patch on an endpoint)
//! the evidence records when it was identified, reported and corrected, and these rules say per
//! objective ([b], [d], [f]) whether the time frame was met, breached, or is still running.
//!
//! Every clock runs on instants (UTC): an endpoint's zone decides its windows, never how long a
//! time frame is, so a flaw corrected at 02:00 in Auckland and one corrected at the same instant
//! in Honolulu are judged alike. A flaw belongs to the release it came in: corrected in the next
//! month, it is measured against its own release, and a later release does not restart it.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::model::Severity;
use crate::policy::SlaPolicy;

/// A 3.14.1 assessment objective measured per flaw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// [b]: system flaws are identified within the specified time frame.
    Identify,
    /// [d]: system flaws are reported within the specified time frame.
    Report,
    /// [f]: system flaws are corrected within the specified time frame.
    Correct,
}

impl Objective {
    /// The three, in the order of 3.14.1.
    pub const ALL: [Objective; 3] = [Objective::Identify, Objective::Report, Objective::Correct];

    /// The objective's letter in NIST SP 800-171A.
    pub fn letter(self) -> &'static str {
        match self {
            Objective::Identify => "b",
            Objective::Report => "d",
            Objective::Correct => "f",
        }
    }
}

/// When a flaw's events happened (none yet: `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct FlawEvents {
    /// Identified: the patch in the catalog and the endpoint in the synced inventory.
    pub identified: Option<DateTime<Utc>>,
    /// Reported: the approval record, a ticket or a notification.
    pub reported: Option<DateTime<Utc>>,
    /// Corrected: the install confirmed.
    pub corrected: Option<DateTime<Utc>>,
}

/// How a flaw stands against one objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Standing {
    /// Done by the due time.
    Met {
        /// When it was due.
        due: DateTime<Utc>,
        /// When it was done.
        at: DateTime<Utc>,
    },
    /// Done late, or not done and past due.
    Breached {
        /// When it was due.
        due: DateTime<Utc>,
        /// When it was done, if it has been.
        at: Option<DateTime<Utc>>,
    },
    /// Not done yet, and not due yet.
    Running {
        /// When it is due.
        due: DateTime<Utc>,
    },
}

impl Standing {
    fn judge(due: DateTime<Utc>, at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        match at {
            Some(at) if at <= due => Standing::Met { due, at },
            Some(at) => Standing::Breached { due, at: Some(at) },
            None if now > due => Standing::Breached { due, at: None },
            None => Standing::Running { due },
        }
    }

    /// Whether the time frame was missed.
    pub fn is_breach(&self) -> bool {
        matches!(self, Standing::Breached { .. })
    }
}

/// A flaw's standing on the three objectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FlawClock {
    /// [b].
    pub identify: Standing,
    /// [d].
    pub report: Standing,
    /// [f].
    pub correct: Standing,
}

impl FlawClock {
    /// The standing on one objective.
    pub fn on(&self, objective: Objective) -> Standing {
        match objective {
            Objective::Identify => self.identify,
            Objective::Report => self.report,
            Objective::Correct => self.correct,
        }
    }
}

/// Judges one flaw at `now`: identification is due `identify` after the release, the report
/// `report` after identification (after the release, while it is not identified), the
/// correction `correct` after the release.
pub fn clock(
    policy: &SlaPolicy,
    severity: Option<Severity>,
    released: DateTime<Utc>,
    events: &FlawEvents,
    now: DateTime<Utc>,
) -> FlawClock {
    let identify_due = released + policy.identify;
    let report_due = events.identified.unwrap_or(released) + policy.report.of(severity);
    let correct_due = released + policy.correct.of(severity);
    FlawClock {
        identify: Standing::judge(identify_due, events.identified, now),
        report: Standing::judge(report_due, events.reported, now),
        correct: Standing::judge(correct_due, events.corrected, now),
    }
}

/// One flaw, named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flaw {
    /// The client.
    pub client: String,
    /// The endpoint.
    pub endpoint: String,
    /// The patch.
    pub patch: String,
    /// Its severity, if it has one.
    pub severity: Option<Severity>,
    /// Its release.
    pub released: DateTime<Utc>,
    /// What happened when.
    pub events: FlawEvents,
    /// How the flaw was known to apply on the endpoint: `reported` (the RMM's patch scan lists
    /// it), `products` (the endpoint's OS matches one of the patch's products) or `assumed`
    /// (nothing known, so counted).
    pub applicability: String,
    /// The patch was auto-approved (Microsoft security Critical/Important): its time to patch
    /// is measured against the 48-hour target ([`time_to_patch`]).
    pub auto_approved: bool,
}

/// The count per standing of one objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Tally {
    /// Met.
    pub met: usize,
    /// Breached.
    pub breached: usize,
    /// Still running.
    pub running: usize,
}

/// A breach, for the list the assessor reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Breach {
    /// The objective.
    pub objective: Objective,
    /// The client.
    pub client: String,
    /// The endpoint.
    pub endpoint: String,
    /// The patch.
    pub patch: String,
    /// When it was due.
    pub due: DateTime<Utc>,
    /// When it was done, if it has been.
    pub at: Option<DateTime<Utc>>,
    /// How late (to `at`, or to now while it is open).
    pub late_by: Duration,
}

/// The roll-up of a set of flaws: per client and objective, the tallies; and every breach.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SlaReport {
    /// Per client, per objective.
    pub clients: BTreeMap<String, BTreeMap<Objective, Tally>>,
    /// Every breach, by client, endpoint, patch and objective.
    pub breaches: Vec<Breach>,
}

/// Judges every flaw at `now` and rolls them up per client.
pub fn report(policy: &SlaPolicy, flaws: &[Flaw], now: DateTime<Utc>) -> SlaReport {
    let mut out = SlaReport::default();
    for f in flaws {
        let c = clock(policy, f.severity, f.released, &f.events, now);
        let tallies = out.clients.entry(f.client.clone()).or_default();
        for objective in Objective::ALL {
            let tally = tallies.entry(objective).or_default();
            match c.on(objective) {
                Standing::Met { .. } => tally.met += 1,
                Standing::Running { .. } => tally.running += 1,
                Standing::Breached { due, at } => {
                    tally.breached += 1;
                    out.breaches.push(Breach {
                        objective,
                        client: f.client.clone(),
                        endpoint: f.endpoint.clone(),
                        patch: f.patch.clone(),
                        due,
                        at,
                        late_by: at.unwrap_or(now) - due,
                    });
                }
            }
        }
    }
    out.breaches.sort_by(|a, b| {
        (&a.client, &a.endpoint, &a.patch, a.objective).cmp(&(
            &b.client,
            &b.endpoint,
            &b.patch,
            b.objective,
        ))
    });
    out
}

/// An auto-approved flaw's time to patch: the hours from its release to the endpoint's install
/// confirmed by the RMM (the [f] correction instant), against the policy's target
/// (`approval.time_to_patch_target_hours`, 48 by default: "time-to-patch for known CVEs within
/// 48 hours of release").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TimeToPatch {
    /// Met (installed by release + target, the instant itself included), missed (installed
    /// later, or not installed and past it) or running (not installed, not yet due).
    pub standing: Standing,
    /// Whole hours from release to the install, rounded up (so 48 h and one second is 49, and a
    /// flaw shown at 48 or less met the target); `None` while not installed.
    pub hours: Option<i64>,
}

/// Judges an auto-approved flaw's time to patch at `now` on instants.
pub fn time_to_patch(
    target: Duration,
    released: DateTime<Utc>,
    installed: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> TimeToPatch {
    TimeToPatch {
        standing: Standing::judge(released + target, installed, now),
        hours: installed.map(|at| hours_up(at - released)),
    }
}

/// Whole hours, rounded up (a negative span, an install before the release, is 0).
pub fn hours_up(d: Duration) -> i64 {
    let secs = d.num_seconds().max(0);
    secs / 3600 + i64::from(secs % 3600 != 0)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use chrono_tz::Tz;

    use super::*;
    use crate::policy::Policy;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    fn local(tz: Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        tz.with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Patch Tuesday, December 2026: 10:00 Pacific.
    fn december() -> DateTime<Utc> {
        local(chrono_tz::America::Los_Angeles, 2026, 12, 8, 10, 0)
    }

    fn sla() -> SlaPolicy {
        Policy::default().sla
    }

    #[test]
    fn a_critical_flaw_handled_in_time_meets_every_objective() {
        let r = december();
        let events = FlawEvents {
            identified: Some(r + Duration::hours(20)),
            reported: Some(r + Duration::hours(21)),
            corrected: Some(r + Duration::days(9)),
        };
        let c = clock(
            &sla(),
            Some(Severity::Critical),
            r,
            &events,
            r + Duration::days(30),
        );
        for o in Objective::ALL {
            assert!(matches!(c.on(o), Standing::Met { .. }), "{o:?}: {c:?}");
        }
    }

    #[test]
    fn the_due_instant_itself_is_in_time_and_a_second_later_is_not() {
        let r = december();
        let due = r + Duration::days(14);
        let on_time = FlawEvents {
            identified: Some(r),
            reported: Some(r),
            corrected: Some(due),
        };
        let c = clock(&sla(), Some(Severity::Critical), r, &on_time, due);
        assert_eq!(c.correct, Standing::Met { due, at: due });
        let late = FlawEvents {
            corrected: Some(due + Duration::seconds(1)),
            ..on_time
        };
        let c = clock(&sla(), Some(Severity::Critical), r, &late, due);
        assert!(c.correct.is_breach());
    }

    #[test]
    fn an_open_flaw_runs_until_due_then_is_breached() {
        let r = december();
        let events = FlawEvents {
            identified: Some(r + Duration::hours(1)),
            ..FlawEvents::default()
        };
        // Important: reported within 24 h of identification, corrected within 30 days.
        let before = clock(
            &sla(),
            Some(Severity::Important),
            r,
            &events,
            r + Duration::hours(24),
        );
        assert_eq!(
            before.report,
            Standing::Running {
                due: r + Duration::hours(25)
            }
        );
        let after = clock(
            &sla(),
            Some(Severity::Important),
            r,
            &events,
            r + Duration::hours(26),
        );
        assert_eq!(
            after.report,
            Standing::Breached {
                due: r + Duration::hours(25),
                at: None
            }
        );
        assert!(matches!(after.correct, Standing::Running { .. }));
    }

    #[test]
    fn the_same_instant_in_any_zone_is_judged_alike() {
        // Critical: due 14 days after the release, 2026-12-22 18:00 UTC.
        let r = december();
        let due = r + Duration::days(14);
        assert_eq!(due, utc(2026, 12, 22, 18, 0));
        let verdict = |at| {
            let e = FlawEvents {
                identified: Some(r),
                reported: Some(r),
                corrected: Some(at),
            };
            clock(&sla(), Some(Severity::Critical), r, &e, at).correct
        };
        // Auckland's 06:00 on the 23rd is an hour before the due instant: in time, though its
        // local date is later; Honolulu's 09:00 on the 22nd is an hour after: late, though its
        // local date is earlier.
        let auckland = local(chrono_tz::Pacific::Auckland, 2026, 12, 23, 6, 0);
        let honolulu = local(chrono_tz::Pacific::Honolulu, 2026, 12, 22, 9, 0);
        assert_eq!(verdict(auckland), Standing::Met { due, at: auckland });
        assert_eq!(
            verdict(honolulu),
            Standing::Breached {
                due,
                at: Some(honolulu)
            }
        );
        // The same instant written in two zones is one verdict.
        let kolkata = local(chrono_tz::Asia::Kolkata, 2026, 12, 22, 23, 30);
        assert_eq!(kolkata, utc(2026, 12, 22, 18, 0));
        assert_eq!(verdict(kolkata), verdict(utc(2026, 12, 22, 18, 0)));
        assert_eq!(verdict(kolkata), Standing::Met { due, at: kolkata });
    }

    #[test]
    fn a_flaw_corrected_in_the_next_cycle_is_measured_against_its_own_release() {
        let december = december();
        let january = local(chrono_tz::America::Los_Angeles, 2027, 1, 12, 10, 0);
        // Moderate: 60 days from December's release, so a January correction is in time, and a
        // correction after January's release is not measured from January.
        let events = FlawEvents {
            identified: Some(december + Duration::hours(3)),
            reported: Some(december + Duration::hours(4)),
            corrected: Some(january + Duration::days(1)),
        };
        let c = clock(
            &sla(),
            Some(Severity::Moderate),
            december,
            &events,
            january + Duration::days(2),
        );
        assert_eq!(
            c.correct,
            Standing::Met {
                due: december + Duration::days(60),
                at: january + Duration::days(1)
            }
        );
        // Critical: 14 days from December, so the same January correction is a breach, late by
        // the days between.
        let r = report(
            &sla(),
            &[Flaw {
                client: "acme".into(),
                endpoint: "ws-1".into(),
                patch: "KB5048667".into(),
                severity: Some(Severity::Critical),
                released: december,
                events,
                applicability: "reported".into(),
                auto_approved: false,
            }],
            january + Duration::days(2),
        );
        assert_eq!(r.breaches.len(), 1);
        let b = &r.breaches[0];
        assert_eq!(b.objective, Objective::Correct);
        assert_eq!(
            b.late_by,
            january + Duration::days(1) - (december + Duration::days(14))
        );
    }

    #[test]
    fn a_march_release_keeps_its_hours_across_the_dst_change() {
        // Released 10:00 PST on 2027-03-09; clocks in the US go forward on 2027-03-14. Fourteen
        // days are 336 hours, so the fix is due at 18:00 UTC on the 23rd: 11:00 on the Pacific
        // clock, not 10:00.
        let r = local(chrono_tz::America::Los_Angeles, 2027, 3, 9, 10, 0);
        assert_eq!(r, utc(2027, 3, 9, 18, 0));
        let c = clock(
            &sla(),
            Some(Severity::Critical),
            r,
            &FlawEvents::default(),
            r,
        );
        assert_eq!(
            c.correct,
            Standing::Running {
                due: utc(2027, 3, 23, 18, 0)
            }
        );
    }

    #[test]
    fn the_report_rolls_up_per_client_and_lists_every_breach() {
        let r = december();
        let now = r + Duration::days(40);
        let flaw = |client: &str, endpoint: &str, severity, events| Flaw {
            client: client.into(),
            endpoint: endpoint.into(),
            patch: "KB1".into(),
            severity,
            released: r,
            events,
            applicability: "reported".into(),
            auto_approved: false,
        };
        let good = FlawEvents {
            identified: Some(r + Duration::hours(2)),
            reported: Some(r + Duration::hours(3)),
            corrected: Some(r + Duration::days(3)),
        };
        let never_patched = FlawEvents {
            corrected: None,
            ..good
        };
        let identified_late = FlawEvents {
            identified: Some(r + Duration::hours(30)),
            ..good
        };
        let out = report(
            &sla(),
            &[
                flaw("acme", "ws-1", Some(Severity::Critical), good),
                flaw("acme", "ws-2", Some(Severity::Critical), never_patched),
                flaw("beta", "srv-1", None, identified_late),
            ],
            now,
        );
        let acme = &out.clients["acme"];
        assert_eq!(
            acme[&Objective::Correct],
            Tally {
                met: 1,
                breached: 1,
                running: 0
            }
        );
        assert_eq!(acme[&Objective::Identify].met, 2);
        let beta = &out.clients["beta"];
        assert_eq!(beta[&Objective::Identify].breached, 1);
        // Reported 3 h after release, but 27 h before it was identified: met.
        assert_eq!(beta[&Objective::Report].met, 1);
        // A non-security patch has 90 days: still running at day 40 had it not been done.
        assert_eq!(beta[&Objective::Correct].met, 1);
        let listed: Vec<(&str, Objective)> = out
            .breaches
            .iter()
            .map(|b| (b.endpoint.as_str(), b.objective))
            .collect();
        assert_eq!(
            listed,
            [("ws-2", Objective::Correct), ("srv-1", Objective::Identify)]
        );
        assert_eq!(out.breaches[0].at, None);
        assert_eq!(out.breaches[0].late_by, Duration::days(26));
        assert_eq!(Objective::Correct.letter(), "f");
    }

    #[test]
    fn time_to_patch_is_met_up_to_48_hours_after_release_and_missed_a_second_later() {
        let r = december();
        let target = Duration::hours(48);
        let within = time_to_patch(
            target,
            r,
            Some(r + Duration::hours(30)),
            r + Duration::days(9),
        );
        assert!(
            matches!(within.standing, Standing::Met { .. }),
            "{within:?}"
        );
        assert_eq!(within.hours, Some(30));
        let edge = time_to_patch(target, r, Some(r + target), r + target);
        assert!(matches!(edge.standing, Standing::Met { .. }));
        assert_eq!(edge.hours, Some(48));
        let late = r + target + Duration::seconds(1);
        let missed = time_to_patch(target, r, Some(late), late);
        assert!(missed.standing.is_breach());
        assert_eq!(missed.hours, Some(49));
        let days = time_to_patch(
            target,
            r,
            Some(r + Duration::hours(74)),
            r + Duration::days(9),
        );
        assert!(days.standing.is_breach());
        assert_eq!(days.hours, Some(74));
    }

    #[test]
    fn time_to_patch_runs_until_the_target_then_is_missed_without_an_install() {
        let r = december();
        let target = Duration::hours(48);
        let running = time_to_patch(target, r, None, r + Duration::hours(47));
        assert_eq!(running.standing, Standing::Running { due: r + target });
        assert_eq!(running.hours, None);
        let open = time_to_patch(target, r, None, r + Duration::hours(49));
        assert_eq!(
            open.standing,
            Standing::Breached {
                due: r + target,
                at: None
            }
        );
    }
}
