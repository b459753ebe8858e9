//! Time: local wall-clock windows in IANA zones, resolved to UTC instants, and the Patch Tuesday
//! calendar.
//!
//! The rules, stated once:
//! - a window is anchored to the local date on which it starts; an end time at or before the
//!   start time falls on the next local day (21:20-03:20 crosses midnight);
//! - a local time that does not exist (the clocks spring forward over it) resolves to the first
//!   instant after the gap;
//! - a local time that exists twice (the clocks fall back) resolves to the earlier instant;
//! - start and end resolve independently, so a window on a transition night is shorter or longer.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
    Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::ids::CycleId;

/// A wall-clock time of day, minute precision, written `HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClockTime(NaiveTime);

/// Why a text is not a `HH:MM` time or an `HH:MM-HH:MM` window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// Not `HH:MM` with HH 00-23 and MM 00-59.
    #[error("`{0}` is not a time of day: expected HH:MM (00:00 to 23:59)")]
    Time(String),
    /// Not `HH:MM-HH:MM`.
    #[error("`{0}` is not a window: expected HH:MM-HH:MM, e.g. 21:20-03:20")]
    Window(String),
    /// Start and end are the same time.
    #[error("window `{0}` is empty: start and end are the same time")]
    EmptyWindow(String),
    /// No weekday allowed.
    #[error("a window needs at least one weekday")]
    NoDays,
}

impl ClockTime {
    /// A time from hours (0-23) and minutes (0-59).
    pub fn hm(hour: u32, minute: u32) -> Result<Self, ClockError> {
        NaiveTime::from_hms_opt(hour, minute, 0)
            .map(Self)
            .ok_or_else(|| ClockError::Time(format!("{hour:02}:{minute:02}")))
    }

    /// The time as a chrono value.
    pub fn time(self) -> NaiveTime {
        self.0
    }
}

impl FromStr for ClockTime {
    type Err = ClockError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ClockError::Time(s.to_owned());
        let (h, m) = s.split_once(':').ok_or_else(err)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(err());
        }
        let hour: u32 = h.parse().map_err(|_| err())?;
        let minute: u32 = m.parse().map_err(|_| err())?;
        Self::hm(hour, minute).map_err(|_| err())
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%H:%M"))
    }
}

impl Serialize for ClockTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClockTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A set of weekdays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Weekdays(u8);

impl Weekdays {
    /// Every day of the week.
    pub const ALL: Weekdays = Weekdays(0b111_1111);
    /// Monday to Friday.
    pub const MON_FRI: Weekdays = Weekdays(0b001_1111);

    /// The set holding exactly these days.
    pub fn of(days: &[Weekday]) -> Self {
        Self(
            days.iter()
                .fold(0, |acc, d| acc | 1 << d.num_days_from_monday()),
        )
    }

    /// Whether the set holds a day.
    pub fn contains(self, day: Weekday) -> bool {
        self.0 & (1 << day.num_days_from_monday()) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The days in the set, Monday first.
    pub fn days(self) -> impl Iterator<Item = Weekday> {
        [
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
            Weekday::Sat,
            Weekday::Sun,
        ]
        .into_iter()
        .filter(move |d| self.contains(*d))
    }
}

impl fmt::Display for Weekdays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Weekdays::ALL => f.write_str("daily"),
            Weekdays::MON_FRI => f.write_str("Mon-Fri"),
            other => {
                let names: Vec<String> = other.days().map(|d| d.to_string()).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

impl Serialize for Weekdays {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(None)?;
        for d in self.days() {
            seq.serialize_element(&d.to_string().to_lowercase())?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Weekdays {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        let mut days = Vec::with_capacity(names.len());
        for n in names {
            let day: Weekday = n.parse().map_err(|_| {
                serde::de::Error::custom(format!(
                    "`{n}` is not a weekday: expected mon, tue, wed, thu, fri, sat or sun"
                ))
            })?;
            days.push(day);
        }
        Ok(Self::of(&days))
    }
}

/// A recurring local window: start and end wall-clock times on the allowed weekdays (the weekday
/// of the local start date counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DailyWindow {
    start: ClockTime,
    end: ClockTime,
    days: Weekdays,
}

impl DailyWindow {
    /// A window from `start` to `end` on `days`; `end` at or before `start` means the next day.
    pub fn new(start: ClockTime, end: ClockTime, days: Weekdays) -> Result<Self, ClockError> {
        if start == end {
            return Err(ClockError::EmptyWindow(format!("{start}-{end}")));
        }
        if days.is_empty() {
            return Err(ClockError::NoDays);
        }
        Ok(Self { start, end, days })
    }

    /// Parses `HH:MM-HH:MM` on the given days.
    pub fn parse(text: &str, days: Weekdays) -> Result<Self, ClockError> {
        let (s, e) = text
            .split_once('-')
            .ok_or_else(|| ClockError::Window(text.to_owned()))?;
        let start = s
            .trim()
            .parse()
            .map_err(|_| ClockError::Window(text.to_owned()))?;
        let end = e
            .trim()
            .parse()
            .map_err(|_| ClockError::Window(text.to_owned()))?;
        Self::new(start, end, days)
    }

    /// Local start time.
    pub fn start(&self) -> ClockTime {
        self.start
    }

    /// Local end time.
    pub fn end(&self) -> ClockTime {
        self.end
    }

    /// Allowed weekdays.
    pub fn days(&self) -> Weekdays {
        self.days
    }

    /// Whether the window ends on the day after it starts.
    pub fn crosses_midnight(&self) -> bool {
        self.end <= self.start
    }

    /// The window anchored to a local start date (ignoring the weekday filter).
    pub fn on(&self, tz: Tz, date: NaiveDate) -> Window {
        let end_date = if self.crosses_midnight() {
            date.succ_opt().unwrap_or(date)
        } else {
            date
        };
        Window {
            start: resolve_local(tz, date.and_time(self.start.time())),
            end: resolve_local(tz, end_date.and_time(self.end.time())),
        }
    }

    /// The first window on an allowed weekday whose start is at or after `instant`.
    pub fn first_starting_at_or_after(&self, tz: Tz, instant: DateTime<Utc>) -> Window {
        // A window anchored on the previous local day can still start after `instant` only if
        // the gap rule pushed it forward, so begin one day early.
        let mut date = instant
            .with_timezone(&tz)
            .date_naive()
            .pred_opt()
            .unwrap_or(NaiveDate::MIN);
        loop {
            if self.days.contains(date.weekday()) {
                let w = self.on(tz, date);
                if w.start >= instant {
                    return w;
                }
            }
            match date.succ_opt() {
                Some(next) => date = next,
                // The calendar ends in the year 262143: nothing to schedule there.
                None => return self.on(tz, date),
            }
        }
    }

    /// The window that contains `instant` (start <= instant < end), if any.
    pub fn containing(&self, tz: Tz, instant: DateTime<Utc>) -> Option<Window> {
        let local = instant.with_timezone(&tz).date_naive();
        [local.pred_opt(), Some(local)]
            .into_iter()
            .flatten()
            .filter(|d| self.days.contains(d.weekday()))
            .map(|d| self.on(tz, d))
            .find(|w| w.start <= instant && instant < w.end)
    }
}

impl fmt::Display for DailyWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)?;
        if self.days != Weekdays::ALL {
            write!(f, " {}", self.days)?;
        }
        Ok(())
    }
}

/// A concrete window: two UTC instants, start inclusive, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Window {
    /// First instant of the window (UTC).
    #[serde(with = "utc")]
    pub start: DateTime<Utc>,
    /// End of the window (UTC).
    #[serde(with = "utc")]
    pub end: DateTime<Utc>,
}

impl Window {
    /// How long the window lasts.
    pub fn duration(&self) -> Duration {
        self.end - self.start
    }

    /// Whether two windows share any instant.
    pub fn overlaps(&self, other: &Window) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// Resolves a local wall-clock time in a zone to one UTC instant: a time inside a spring-forward
/// gap becomes the first instant after the gap, a time repeated by a fall-back becomes the earlier
/// of its two instants.
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => first_instant_after_gap(tz, local),
    }
}

fn first_instant_after_gap(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    // Zone transitions fall on whole minutes, so the first valid local minute after `local` is
    // the end of the gap, and its instant is the transition itself. Gaps last at most a few hours
    // (the largest in the database is a day-long skip, hence the bound).
    let start = local
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(local);
    for minute in 1..=(26 * 60) {
        let candidate = start + Duration::minutes(minute);
        match tz.from_local_datetime(&candidate) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(a, b) => return a.min(b).with_timezone(&Utc),
            LocalResult::None => continue,
        }
    }
    // No tz database has a gap this long; read the time with the offset in force a day earlier.
    let offset = tz.offset_from_utc_datetime(&(local - Duration::days(1)));
    Utc.from_utc_datetime(&(local - offset_duration(&offset)))
}

fn offset_duration(offset: &<Tz as TimeZone>::Offset) -> Duration {
    use chrono::Offset;
    Duration::seconds(i64::from(offset.fix().local_minus_utc()))
}

use chrono::Timelike as _;

/// The `n`th `weekday` of a cycle's month (Patch Tuesday is the second Tuesday).
pub fn nth_weekday(cycle: CycleId, weekday: Weekday, n: u8) -> NaiveDate {
    let first = cycle.first_day();
    let shift = (7 + weekday.num_days_from_monday() - first.weekday().num_days_from_monday()) % 7;
    let weeks = u64::from(n.clamp(1, 4) - 1);
    first + chrono::Days::new(u64::from(shift) + 7 * weeks)
}

/// Serde helpers writing UTC instants as RFC 3339 with a `Z` suffix.
pub mod utc {
    use chrono::{DateTime, SecondsFormat, Utc};

    /// Formats an instant as RFC 3339 UTC with `Z`, whole seconds unless it has a fraction.
    pub fn format(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    /// Serializes an instant as RFC 3339 UTC with `Z`.
    pub fn serialize<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}", format(t)))
    }

    /// Deserializes an RFC 3339 instant with any offset into UTC.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        super::parse_instant(&text).map_err(serde::de::Error::custom)
    }

    /// Serde helpers for optional instants.
    pub mod option {
        use chrono::{DateTime, Utc};

        /// Deserializes an optional RFC 3339 instant.
        pub fn deserialize<'de, D: serde::Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            let text = <Option<std::borrow::Cow<'de, str>> as serde::Deserialize>::deserialize(d)?;
            text.map(|t| crate::schedule::parse_instant(&t).map_err(serde::de::Error::custom))
                .transpose()
        }

        /// Serializes an optional instant as RFC 3339 UTC with `Z`, or null.
        pub fn serialize<S: serde::Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }
    }
}

/// Parses an RFC 3339 instant with any offset into UTC.
pub fn parse_instant(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc))
}
