//! Identifiers parsed at the edge: the domain never sees an unvalidated id.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The identifier is empty or only white space.
    #[error("must not be empty")]
    Empty,
    /// The identifier is longer than [`MAX_ID_LEN`] bytes.
    #[error("is {0} bytes long, the limit is {MAX_ID_LEN}")]
    TooLong(usize),
    /// The identifier contains a control character.
    #[error("contains a control character")]
    ControlCharacter,
}

/// Longest identifier accepted (DynamoDB sort keys and S3 keys are built from ids).
pub const MAX_ID_LEN: usize = 128;

fn check_id(raw: &str) -> Result<(), IdError> {
    if raw.trim().is_empty() {
        return Err(IdError::Empty);
    }
    if raw.len() > MAX_ID_LEN {
        return Err(IdError::TooLong(raw.len()));
    }
    if raw.chars().any(char::is_control) {
        return Err(IdError::ControlCharacter);
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses an identifier: non-empty, at most [`MAX_ID_LEN`] bytes, no control characters.
            pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
                let raw = raw.into();
                check_id(&raw)?;
                Ok(Self(raw))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// A managed endpoint (server or workstation), unique across the fleet.
    EndpointId
);
string_id!(
    /// A client of the MSP.
    ClientId
);
string_id!(
    /// A site of a client, as the RMM knows it.
    LocationId
);
string_id!(
    /// A patch (a KB number for Microsoft, a vendor id for third parties).
    PatchId
);
string_id!(
    /// The engineer who signs a decision off.
    Engineer
);

/// Why a cycle id is not `YYYY-MM`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a cycle: expected YYYY-MM with a month from 01 to 12, e.g. 2026-12")]
pub struct CycleIdError(String);

/// A monthly patch cycle, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CycleId {
    year: i32,
    month: u32,
}

impl CycleId {
    /// A cycle from a year (2000-9999) and a month (1-12).
    pub fn new(year: i32, month: u32) -> Result<Self, CycleIdError> {
        if !(2000..=9999).contains(&year) || !(1..=12).contains(&month) {
            return Err(CycleIdError(format!("{year:04}-{month:02}")));
        }
        Ok(Self { year, month })
    }

    /// The cycle's year.
    pub fn year(self) -> i32 {
        self.year
    }

    /// The cycle's month, 1-12.
    pub fn month(self) -> u32 {
        self.month
    }

    /// The first day of the cycle's month.
    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN)
        // unreachable: year and month are validated in `new`
    }

    /// The cycle that contains a date.
    pub fn containing(date: NaiveDate) -> Result<Self, CycleIdError> {
        Self::new(date.year(), date.month())
    }

    /// The cycle after this one.
    pub fn next(self) -> Result<Self, CycleIdError> {
        if self.month == 12 {
            Self::new(self.year + 1, 1)
        } else {
            Self::new(self.year, self.month + 1)
        }
    }
}

impl FromStr for CycleId {
    type Err = CycleIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CycleIdError(s.to_owned());
        let (y, m) = s.split_once('-').ok_or_else(err)?;
        if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let year = y.parse().map_err(|_| err())?;
        let month = m.parse().map_err(|_| err())?;
        Self::new(year, month).map_err(|_| err())
    }
}

impl fmt::Display for CycleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl Serialize for CycleId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CycleId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_id_parses_year_and_month() {
        let c: CycleId = "2026-12".parse().unwrap();
        assert_eq!((c.year(), c.month()), (2026, 12));
        assert_eq!(c.to_string(), "2026-12");
        assert_eq!(c.next().unwrap().to_string(), "2027-01");
    }

    #[test]
    fn a_cycle_id_rejects_anything_but_yyyy_mm() {
        for bad in [
            "2026-13",
            "2026-00",
            "2026-1",
            "26-12",
            "2026/12",
            "",
            "2026-12-01",
            "abcd-ef",
        ] {
            assert!(bad.parse::<CycleId>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn an_identifier_must_not_be_blank_too_long_or_contain_control_characters() {
        assert_eq!(EndpointId::parse("  "), Err(IdError::Empty));
        assert_eq!(
            EndpointId::parse("a".repeat(129)),
            Err(IdError::TooLong(129))
        );
        assert_eq!(EndpointId::parse("a\nb"), Err(IdError::ControlCharacter));
        assert_eq!(EndpointId::parse("ep-1").unwrap().as_str(), "ep-1");
    }
}
