//! Every number of the operating model in one place, with the seed's values as defaults and an
//! optional TOML file to override them.

use std::str::FromStr;

use chrono::{Duration, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::model::{Criticality, Severity};
use crate::schedule::{ClockError, ClockTime, DailyWindow, Weekdays};

/// When a cycle's batch is released (Patch Tuesday).
#[derive(Debug, Clone, PartialEq)]
pub struct ReleasePolicy {
    /// Day of the week of the release (Tuesday).
    pub weekday: Weekday,
    /// Which occurrence of that weekday in the month (the second).
    pub week: u8,
    /// Local release time (10:00).
    pub time: ClockTime,
    /// Zone of the release time (America/Los_Angeles, Redmond).
    pub timezone: Tz,
}

/// What an exclusion or a Do Not Patch endpoint without its signed approval (`exclusion_ref`)
/// is: a warning (the default), or an input error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnsignedExclusion {
    /// A plan warning; the register entry is marked unsigned.
    Warn,
    /// Invalid input: the plan is refused, naming the endpoint and the field.
    Error,
}

impl UnsignedExclusion {
    /// `warn` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            UnsignedExclusion::Warn => "warn",
            UnsignedExclusion::Error => "error",
        }
    }
}

/// Scope and exclusions.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopePolicy {
    /// An exclusion or Do Not Patch without `exclusion_ref` (warn).
    pub unsigned_exclusion: UnsignedExclusion,
}

/// Approval governance.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalPolicy {
    /// Microsoft security severities approved without review (Critical, Important).
    pub auto_approve_severities: Vec<Severity>,
    /// How long a held patch waits for an engineer's review (7 days).
    pub review_hold: Duration,
    /// Time-to-patch target for auto-approved patches (48 hours).
    pub time_to_patch_target: Duration,
}

/// Staged rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutPolicy {
    /// Minimum pilot soak before production (7 days), counted from the moment the pilot was
    /// healthy.
    pub soak: Duration,
    /// What a pilot workstation's failure holds: the whole fleet's production workstations (the
    /// seed's reading, the default) or only its own client's.
    pub hold_scope: HoldScope,
}

/// What a pilot workstation's failure holds (`rollout.hold_scope`). Server tiers are per client
/// whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HoldScope {
    /// Any pilot workstation failure holds every production workstation of the fleet.
    #[default]
    Fleet,
    /// A pilot workstation failure holds only its own client's production workstations; a
    /// client with no pilot workstation follows the fleet's pilot.
    Client,
}

impl HoldScope {
    /// `fleet` or `client`, as the policy file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldScope::Fleet => "fleet",
            HoldScope::Client => "client",
        }
    }
}

/// Workstation windows and reboot behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkstationPolicy {
    /// Regular (overnight) install and reboot window (02:00-04:00 daily).
    pub regular_window: DailyWindow,
    /// Daytime install window (09:00-17:00 Monday to Friday).
    pub daytime_window: DailyWindow,
    /// Daily reboot reminder for daytime workstations (10:00).
    pub reminder_time: ClockTime,
    /// Forced reboot once this long has passed since the install window ended (72 hours).
    pub force_reboot_after: Duration,
    /// Escalation priority of a workstation failure unless the client impact is higher (P2).
    pub default_failure_priority: Criticality,
}

/// Server windows.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerPolicy {
    /// Unattended install and reboot window (21:20-03:20 daily).
    pub window: DailyWindow,
}

/// Failure handling.
#[derive(Debug, Clone, PartialEq)]
pub struct FailurePolicy {
    /// Business hours in the endpoint's zone (08:00-18:00 Monday to Friday); server-class failures
    /// outside them page the on-call engineer.
    pub business_hours: DailyWindow,
    /// Earliest retry after a failure (24 hours), then the endpoint's next window.
    pub retry_after: Duration,
}

/// A time frame per severity; `other` is for patches without one (non-security
/// classifications).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BySeverity {
    /// Critical.
    pub critical: Duration,
    /// Important.
    pub important: Duration,
    /// Moderate.
    pub moderate: Duration,
    /// Low.
    pub low: Duration,
    /// No severity.
    pub other: Duration,
}

impl BySeverity {
    /// The time frame of a severity (`None`: a patch without one).
    pub fn of(&self, severity: Option<Severity>) -> Duration {
        match severity {
            Some(Severity::Critical) => self.critical,
            Some(Severity::Important) => self.important,
            Some(Severity::Moderate) => self.moderate,
            Some(Severity::Low) => self.low,
            None => self.other,
        }
    }
}

/// The time frames of NIST SP 800-171A 3.14.1 ([a] identify, [c] report, [e] correct), which the
/// evidence measures each flaw against ([b], [d], [f]).
#[derive(Debug, Clone, PartialEq)]
pub struct SlaPolicy {
    /// [a]: a flaw is identified (in the catalog and the synced inventory) within this of its
    /// release (24 hours: the daily sync).
    pub identify: Duration,
    /// [c]: a flaw is reported (approval record, ticket or notification) within this of its
    /// identification (24 hours critical and important, 72 hours otherwise).
    pub report: BySeverity,
    /// [e]: a flaw is corrected (install confirmed) within this of its release (14 days
    /// critical, 30 important, 60 moderate, 90 low and other).
    pub correct: BySeverity,
}

/// The whole policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Release calendar.
    pub release: ReleasePolicy,
    /// Scope and exclusions.
    pub scope: ScopePolicy,
    /// Approval governance.
    pub approval: ApprovalPolicy,
    /// Staged rollout.
    pub rollout: RolloutPolicy,
    /// Workstations.
    pub workstation: WorkstationPolicy,
    /// Servers.
    pub server: ServerPolicy,
    /// Failure handling.
    pub failure: FailurePolicy,
    /// 3.14.1 time frames.
    pub sla: SlaPolicy,
}

fn window(text: &str, days: Weekdays) -> DailyWindow {
    // The literals below are valid; a typo would be caught by `the_default_policy_is_the_seed`.
    DailyWindow::parse(text, days).unwrap_or_else(|e| panic!("built-in window {text}: {e}"))
}

fn clock(text: &str) -> ClockTime {
    text.parse()
        .unwrap_or_else(|e| panic!("built-in time {text}: {e}"))
}

impl Default for Policy {
    /// The seed's operating model.
    fn default() -> Self {
        Self {
            release: ReleasePolicy {
                weekday: Weekday::Tue,
                week: 2,
                time: clock("10:00"),
                timezone: chrono_tz::America::Los_Angeles,
            },
            scope: ScopePolicy {
                unsigned_exclusion: UnsignedExclusion::Warn,
            },
            approval: ApprovalPolicy {
                auto_approve_severities: vec![Severity::Critical, Severity::Important],
                review_hold: Duration::days(7),
                time_to_patch_target: Duration::hours(48),
            },
            rollout: RolloutPolicy {
                soak: Duration::days(7),
                hold_scope: HoldScope::Fleet,
            },
            workstation: WorkstationPolicy {
                regular_window: window("02:00-04:00", Weekdays::ALL),
                daytime_window: window("09:00-17:00", Weekdays::MON_FRI),
                reminder_time: clock("10:00"),
                force_reboot_after: Duration::hours(72),
                default_failure_priority: Criticality::P2,
            },
            server: ServerPolicy {
                window: window("21:20-03:20", Weekdays::ALL),
            },
            failure: FailurePolicy {
                business_hours: window("08:00-18:00", Weekdays::MON_FRI),
                retry_after: Duration::hours(24),
            },
            sla: SlaPolicy {
                identify: Duration::hours(24),
                report: BySeverity {
                    critical: Duration::hours(24),
                    important: Duration::hours(24),
                    moderate: Duration::hours(72),
                    low: Duration::hours(72),
                    other: Duration::hours(72),
                },
                correct: BySeverity {
                    critical: Duration::days(14),
                    important: Duration::days(30),
                    moderate: Duration::days(60),
                    low: Duration::days(90),
                    other: Duration::days(90),
                },
            },
        }
    }
}

/// A policy file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not valid TOML, or a key that the policy does not have, or a value of the wrong type.
    #[error("{source_name}: {message}")]
    Syntax {
        /// The file.
        source_name: String,
        /// The parser's message (it names the key, line and column).
        message: String,
    },
    /// A well-formed value outside what the policy accepts.
    #[error("{source_name}: key `{key}`: {message}")]
    Invalid {
        /// The file.
        source_name: String,
        /// Dotted key, e.g. `rollout.soak_days`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    release: RawRelease,
    #[serde(default)]
    scope: RawScope,
    #[serde(default)]
    approval: RawApproval,
    #[serde(default)]
    rollout: RawRollout,
    #[serde(default)]
    workstation: RawWorkstation,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    sla: RawSla,
    #[serde(default)]
    failure: RawFailure,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelease {
    weekday: Option<String>,
    week: Option<i64>,
    time: Option<String>,
    timezone: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScope {
    unsigned_exclusion: Option<UnsignedExclusion>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApproval {
    auto_approve_severities: Option<Vec<Severity>>,
    review_hold_days: Option<i64>,
    time_to_patch_target_hours: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRollout {
    soak_days: Option<i64>,
    hold_scope: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkstation {
    regular_window: Option<String>,
    daytime_window: Option<String>,
    daytime_days: Option<Weekdays>,
    reminder_time: Option<String>,
    force_reboot_after_hours: Option<i64>,
    default_failure_priority: Option<Criticality>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    window: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailure {
    business_hours: Option<String>,
    business_days: Option<Weekdays>,
    retry_after_hours: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSla {
    identify_hours: Option<i64>,
    #[serde(default)]
    report_hours: RawBySeverity,
    #[serde(default)]
    correct_days: RawBySeverity,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBySeverity {
    critical: Option<i64>,
    important: Option<i64>,
    moderate: Option<i64>,
    low: Option<i64>,
    other: Option<i64>,
}

struct Builder<'a> {
    source_name: &'a str,
}

impl Builder<'_> {
    fn invalid(&self, key: &str, message: impl Into<String>) -> PolicyError {
        PolicyError::Invalid {
            source_name: self.source_name.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn range(
        &self,
        key: &str,
        value: Option<i64>,
        min: i64,
        max: i64,
    ) -> Result<Option<i64>, PolicyError> {
        match value {
            Some(v) if !(min..=max).contains(&v) => {
                Err(self.invalid(key, format!("{v} is out of range: expected {min} to {max}")))
            }
            other => Ok(other),
        }
    }

    /// Overrides each severity's time frame given, in `unit`s from 1 to `max`.
    fn by_severity(
        &self,
        key: &str,
        raw: &RawBySeverity,
        max: i64,
        unit: fn(i64) -> Duration,
        into: &mut BySeverity,
    ) -> Result<(), PolicyError> {
        for (name, value, slot) in [
            ("critical", raw.critical, &mut into.critical),
            ("important", raw.important, &mut into.important),
            ("moderate", raw.moderate, &mut into.moderate),
            ("low", raw.low, &mut into.low),
            ("other", raw.other, &mut into.other),
        ] {
            if let Some(v) = self.range(&format!("{key}.{name}"), value, 1, max)? {
                *slot = unit(v);
            }
        }
        Ok(())
    }

    fn clock(&self, key: &str, value: Option<String>) -> Result<Option<ClockTime>, PolicyError> {
        value
            .map(|v| {
                v.parse()
                    .map_err(|e: ClockError| self.invalid(key, e.to_string()))
            })
            .transpose()
    }

    fn window(
        &self,
        key: &str,
        value: Option<String>,
        current: DailyWindow,
        days: Option<Weekdays>,
    ) -> Result<DailyWindow, PolicyError> {
        let days = days.unwrap_or(current.days());
        match value {
            Some(text) => {
                DailyWindow::parse(&text, days).map_err(|e| self.invalid(key, e.to_string()))
            }
            None => DailyWindow::new(current.start(), current.end(), days)
                .map_err(|e| self.invalid(key, e.to_string())),
        }
    }
}

impl Policy {
    /// Reads a TOML policy: every key is optional and overrides the seed's default; unknown keys
    /// and out-of-range values are errors naming the key. `source_name` names the file in errors.
    pub fn from_toml(source_name: &str, text: &str) -> Result<Self, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            source_name: source_name.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        let b = Builder { source_name };
        let mut p = Policy::default();

        if let Some(day) = raw.release.weekday {
            p.release.weekday = Weekday::from_str(&day).map_err(|_| {
                b.invalid(
                    "release.weekday",
                    format!("`{day}` is not a weekday: expected mon..sun"),
                )
            })?;
        }
        if let Some(week) = b.range("release.week", raw.release.week, 1, 4)? {
            p.release.week = week as u8;
        }
        if let Some(t) = b.clock("release.time", raw.release.time)? {
            p.release.time = t;
        }
        if let Some(tz) = raw.release.timezone {
            p.release.timezone = tz
                .parse()
                .map_err(|_| b.invalid("release.timezone", format!("unknown time zone `{tz}`")))?;
        }

        if let Some(u) = raw.scope.unsigned_exclusion {
            p.scope.unsigned_exclusion = u;
        }

        if let Some(sev) = raw.approval.auto_approve_severities {
            p.approval.auto_approve_severities = sev;
        }
        if let Some(d) = b.range(
            "approval.review_hold_days",
            raw.approval.review_hold_days,
            1,
            60,
        )? {
            p.approval.review_hold = Duration::days(d);
        }
        if let Some(h) = b.range(
            "approval.time_to_patch_target_hours",
            raw.approval.time_to_patch_target_hours,
            1,
            24 * 60,
        )? {
            p.approval.time_to_patch_target = Duration::hours(h);
        }

        if let Some(d) = b.range("rollout.soak_days", raw.rollout.soak_days, 1, 60)? {
            p.rollout.soak = Duration::days(d);
        }
        if let Some(scope) = raw.rollout.hold_scope {
            p.rollout.hold_scope = match scope.as_str() {
                "fleet" => HoldScope::Fleet,
                "client" => HoldScope::Client,
                other => {
                    return Err(b.invalid(
                        "rollout.hold_scope",
                        format!("`{other}` is not a hold scope: expected \"fleet\" or \"client\""),
                    ))
                }
            };
        }

        let ws = raw.workstation;
        p.workstation.regular_window = b.window(
            "workstation.regular_window",
            ws.regular_window,
            p.workstation.regular_window,
            None,
        )?;
        p.workstation.daytime_window = b.window(
            "workstation.daytime_window",
            ws.daytime_window,
            p.workstation.daytime_window,
            ws.daytime_days,
        )?;
        if let Some(t) = b.clock("workstation.reminder_time", ws.reminder_time)? {
            p.workstation.reminder_time = t;
        }
        if let Some(h) = b.range(
            "workstation.force_reboot_after_hours",
            ws.force_reboot_after_hours,
            1,
            24 * 30,
        )? {
            p.workstation.force_reboot_after = Duration::hours(h);
        }
        if let Some(c) = ws.default_failure_priority {
            p.workstation.default_failure_priority = c;
        }

        p.server.window = b.window("server.window", raw.server.window, p.server.window, None)?;

        p.failure.business_hours = b.window(
            "failure.business_hours",
            raw.failure.business_hours,
            p.failure.business_hours,
            raw.failure.business_days,
        )?;
        if let Some(h) = b.range(
            "failure.retry_after_hours",
            raw.failure.retry_after_hours,
            1,
            24 * 30,
        )? {
            p.failure.retry_after = Duration::hours(h);
        }

        if let Some(h) = b.range("sla.identify_hours", raw.sla.identify_hours, 1, 24 * 30)? {
            p.sla.identify = Duration::hours(h);
        }
        b.by_severity(
            "sla.report_hours",
            &raw.sla.report_hours,
            24 * 90,
            Duration::hours,
            &mut p.sla.report,
        )?;
        b.by_severity(
            "sla.correct_days",
            &raw.sla.correct_days,
            365,
            Duration::days,
            &mut p.sla.correct,
        )?;
        Ok(p)
    }

    /// The policy as TOML, every key written out (the defaults when nothing was overridden).
    pub fn to_toml(&self) -> String {
        let sev: Vec<String> = self
            .approval
            .auto_approve_severities
            .iter()
            .map(|s| format!("\"{}\"", s.as_str()))
            .collect();
        let days = |w: &DailyWindow| {
            let d: Vec<String> = w
                .days()
                .days()
                .map(|d| format!("\"{}\"", d.to_string().to_lowercase()))
                .collect();
            format!("[{}]", d.join(", "))
        };
        format!(
            "[release]\nweekday = \"{}\"\nweek = {}\ntime = \"{}\"\ntimezone = \"{}\"\n\n\
             [scope]\nunsigned_exclusion = \"{}\"\n\n\
             [approval]\nauto_approve_severities = [{}]\nreview_hold_days = {}\ntime_to_patch_target_hours = {}\n\n\
             [rollout]\nsoak_days = {}\nhold_scope = \"{}\"\n\n\
             [workstation]\nregular_window = \"{}-{}\"\ndaytime_window = \"{}-{}\"\ndaytime_days = {}\n\
             reminder_time = \"{}\"\nforce_reboot_after_hours = {}\ndefault_failure_priority = \"{}\"\n\n\
             [server]\nwindow = \"{}-{}\"\n\n\
             [failure]\nbusiness_hours = \"{}-{}\"\nbusiness_days = {}\nretry_after_hours = {}\n\n\
             [sla]\nidentify_hours = {}\n\n[sla.report_hours]\n{}\n[sla.correct_days]\n{}",
            self.release.weekday.to_string().to_lowercase(),
            self.release.week,
            self.release.time,
            self.release.timezone.name(),
            self.scope.unsigned_exclusion.as_str(),
            sev.join(", "),
            self.approval.review_hold.num_days(),
            self.approval.time_to_patch_target.num_hours(),
            self.rollout.soak.num_days(),
            self.rollout.hold_scope.as_str(),
            self.workstation.regular_window.start(),
            self.workstation.regular_window.end(),
            self.workstation.daytime_window.start(),
            self.workstation.daytime_window.end(),
            days(&self.workstation.daytime_window),
            self.workstation.reminder_time,
            self.workstation.force_reboot_after.num_hours(),
            self.workstation.default_failure_priority.as_str(),
            self.server.window.start(),
            self.server.window.end(),
            self.failure.business_hours.start(),
            self.failure.business_hours.end(),
            days(&self.failure.business_hours),
            self.failure.retry_after.num_hours(),
            self.sla.identify.num_hours(),
            by_severity(&self.sla.report, Duration::num_hours),
            by_severity(&self.sla.correct, Duration::num_days),
        )
    }
}

/// A time frame per severity as TOML lines, in the unit `n` counts.
fn by_severity(b: &BySeverity, n: fn(&Duration) -> i64) -> String {
    format!(
        "critical = {}\nimportant = {}\nmoderate = {}\nlow = {}\nother = {}\n",
        n(&b.critical),
        n(&b.important),
        n(&b.moderate),
        n(&b.low),
        n(&b.other)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sla_time_frames_are_read_per_severity_and_checked() {
        let p = Policy::from_toml(
            "p.toml",
            "[sla]\nidentify_hours = 12\n[sla.correct_days]\ncritical = 7\n",
        )
        .unwrap();
        assert_eq!(p.sla.identify, Duration::hours(12));
        assert_eq!(p.sla.correct.critical, Duration::days(7));
        assert_eq!(p.sla.correct.important, Duration::days(30));
        assert_eq!(Policy::from_toml("p", &p.to_toml()).unwrap(), p);
        let e = Policy::from_toml("p.toml", "[sla.report_hours]\nlow = 0\n").unwrap_err();
        assert!(e.to_string().contains("sla.report_hours.low"), "{e}");
        let e = Policy::from_toml("p.toml", "[sla.correct_days]\nurgent = 3\n").unwrap_err();
        assert!(e.to_string().contains("urgent"), "{e}");
    }

    #[test]
    fn the_default_policy_is_the_seed() {
        let p = Policy::default();
        assert_eq!(p.workstation.regular_window.to_string(), "02:00-04:00");
        assert_eq!(
            p.workstation.daytime_window.to_string(),
            "09:00-17:00 Mon-Fri"
        );
        assert_eq!(p.server.window.to_string(), "21:20-03:20");
        assert_eq!(p.rollout.soak, Duration::days(7));
        assert_eq!(p.approval.review_hold, Duration::days(7));
        assert_eq!(p.approval.time_to_patch_target, Duration::hours(48));
        assert_eq!(p.workstation.force_reboot_after, Duration::hours(72));
        assert_eq!(p.workstation.reminder_time.to_string(), "10:00");
        assert_eq!(p.release.time.to_string(), "10:00");
        assert_eq!(p.release.timezone, chrono_tz::America::Los_Angeles);
        assert_eq!((p.release.weekday, p.release.week), (Weekday::Tue, 2));
    }

    #[test]
    fn an_unsigned_exclusion_warns_by_default_and_a_policy_makes_it_an_error() {
        assert_eq!(
            Policy::default().scope.unsigned_exclusion,
            UnsignedExclusion::Warn
        );
        let p = Policy::from_toml("p.toml", "[scope]\nunsigned_exclusion = \"error\"\n").unwrap();
        assert_eq!(p.scope.unsigned_exclusion, UnsignedExclusion::Error);
        assert_eq!(Policy::from_toml("p", &p.to_toml()).unwrap(), p);
        let e = Policy::from_toml("p.toml", "[scope]\nunsigned_exclusion = \"ignore\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unsigned_exclusion") && e.contains("ignore"),
            "{e}"
        );
    }

    #[test]
    fn an_empty_policy_file_keeps_every_default() {
        assert_eq!(Policy::from_toml("p.toml", "").unwrap(), Policy::default());
    }

    #[test]
    fn a_policy_file_overrides_only_the_keys_it_names() {
        let p = Policy::from_toml(
            "p.toml",
            "[rollout]\nsoak_days = 10\n[server]\nwindow = \"22:00-02:00\"\n[workstation]\ndaytime_days = [\"mon\", \"wed\"]\n",
        )
        .unwrap();
        assert_eq!(p.rollout.soak, Duration::days(10));
        assert_eq!(p.server.window.to_string(), "22:00-02:00");
        assert_eq!(
            p.workstation.daytime_window.to_string(),
            "09:00-17:00 Mon,Wed"
        );
        assert_eq!(
            p.workstation.regular_window,
            Policy::default().workstation.regular_window
        );
    }

    #[test]
    fn the_written_out_policy_reads_back_as_itself() {
        let p = Policy::default();
        assert_eq!(Policy::from_toml("p.toml", &p.to_toml()).unwrap(), p);
    }

    #[test]
    fn a_policy_error_names_the_file_and_the_key() {
        let cases = [
            ("[rollout]\nsoak_days = 0\n", "rollout.soak_days"),
            ("[server]\nwindow = \"25:00-03:00\"\n", "server.window"),
            ("[server]\nwindow = \"03:00-03:00\"\n", "server.window"),
            (
                "[release]\ntimezone = \"Mars/Olympus\"\n",
                "release.timezone",
            ),
            (
                "[workstation]\ndaytime_days = []\n",
                "workstation.daytime_window",
            ),
            (
                "[workstation]\nreminder_time = \"10am\"\n",
                "workstation.reminder_time",
            ),
        ];
        for (text, key) in cases {
            let err = Policy::from_toml("policy.toml", text)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("policy.toml: "), "{err}");
            assert!(err.contains(key), "{text:?} -> {err}");
        }
    }

    #[test]
    fn the_hold_scope_is_fleet_by_default_and_client_on_request() {
        assert_eq!(Policy::default().rollout.hold_scope, HoldScope::Fleet);
        let p = Policy::from_toml("p.toml", "[rollout]\nhold_scope = \"client\"\n").unwrap();
        assert_eq!(p.rollout.hold_scope, HoldScope::Client);
        assert!(p.to_toml().contains("hold_scope = \"client\""));
        assert_eq!(Policy::from_toml("p", &p.to_toml()).unwrap(), p);
        let err = Policy::from_toml("policy.toml", "[rollout]\nhold_scope = \"site\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("policy.toml: key `rollout.hold_scope`"),
            "{err}"
        );
        assert!(err.contains("`site` is not a hold scope"), "{err}");
    }

    #[test]
    fn an_unknown_policy_key_is_an_error_not_a_silent_default() {
        let err = Policy::from_toml("policy.toml", "[rollout]\nsoak_dayz = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("soak_dayz"), "{err}");
    }
}
