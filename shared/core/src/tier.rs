//! The life of a cycle tier (a client's server pilot or production, the fleet's workstation pilot
//! or production): a small state machine whose every transition is checked, so two writers that
//! race on a tier cannot both move it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a tier is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierState {
    /// Windows planned, nothing sent yet (production waits here for its gates).
    Scheduled,
    /// Install and reboot commands are out.
    Deploying,
    /// Installs reported; post-reboot validation running.
    Validating,
    /// Every endpoint is validated or tracked by a ticket.
    Validated,
    /// A failure holds the tier until a root cause is documented.
    Held,
    /// A critical failure blocks the tier (and production) until a root cause is documented.
    Blocked,
    /// Evidence archived and the ticket updated: done.
    Closed,
}

impl TierState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            TierState::Scheduled => "scheduled",
            TierState::Deploying => "deploying",
            TierState::Validating => "validating",
            TierState::Validated => "validated",
            TierState::Held => "held",
            TierState::Blocked => "blocked",
            TierState::Closed => "closed",
        }
    }
}

impl fmt::Display for TierState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierEvent {
    /// Its windows opened (for production: the soak and health gates passed).
    Deploy,
    /// Every install has reported.
    InstallsReported,
    /// Every endpoint passed validation or is tracked by a ticket.
    Validated,
    /// A failure was recorded.
    Failed {
        /// On a critical system.
        critical: bool,
    },
    /// A root cause was documented: the tier may retry.
    RootCauseRecorded,
    /// The closure requirements are met and the evidence is archived.
    Close,
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a tier that is {from} cannot take `{event:?}`")]
pub struct TransitionError {
    /// The state it was in.
    pub from: TierState,
    /// The refused event.
    pub event: TierEvent,
}

impl TierState {
    /// The state after an event, or an error if the event is not allowed now.
    pub fn apply(self, event: TierEvent) -> Result<TierState, TransitionError> {
        use TierEvent as E;
        use TierState as S;
        let next = match (self, event) {
            (S::Scheduled, E::Deploy) => S::Deploying,
            (S::Deploying, E::InstallsReported) => S::Validating,
            (S::Validating, E::Validated) => S::Validated,
            (
                S::Deploying | S::Validating | S::Validated | S::Held,
                E::Failed { critical: true },
            ) => S::Blocked,
            (S::Deploying | S::Validating | S::Validated, E::Failed { critical: false }) => S::Held,
            (S::Held | S::Blocked, E::RootCauseRecorded) => S::Deploying,
            (S::Validated, E::Close) => S::Closed,
            (from, event) => return Err(TransitionError { from, event }),
        };
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TierEvent as E;
    use TierState as S;

    #[test]
    fn a_clean_tier_goes_from_scheduled_to_closed() {
        let mut s = S::Scheduled;
        for e in [E::Deploy, E::InstallsReported, E::Validated, E::Close] {
            s = s.apply(e).unwrap();
        }
        assert_eq!(s, S::Closed);
    }

    #[test]
    fn a_failure_holds_and_a_critical_one_blocks_until_a_root_cause_allows_a_retry() {
        assert_eq!(
            S::Validating.apply(E::Failed { critical: false }),
            Ok(S::Held)
        );
        assert_eq!(
            S::Validating.apply(E::Failed { critical: true }),
            Ok(S::Blocked)
        );
        assert_eq!(S::Held.apply(E::Failed { critical: true }), Ok(S::Blocked));
        assert_eq!(S::Blocked.apply(E::RootCauseRecorded), Ok(S::Deploying));
        assert!(
            S::Held.apply(E::Deploy).is_err(),
            "no retry without a root cause"
        );
    }

    #[test]
    fn a_tier_closes_only_when_validated_and_never_reopens() {
        for s in [
            S::Scheduled,
            S::Deploying,
            S::Validating,
            S::Held,
            S::Blocked,
        ] {
            assert!(s.apply(E::Close).is_err(), "{s} must not close");
        }
        for e in [
            E::Deploy,
            E::InstallsReported,
            E::Validated,
            E::Failed { critical: true },
            E::RootCauseRecorded,
            E::Close,
        ] {
            assert!(S::Closed.apply(e).is_err());
        }
    }
}
