//! The RMM (ConnectWise Automate) as a port: the commands patchflow sends, and what the RMM
//! reports back about installs, reboots and post-reboot checks.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::EndpointId;
use crate::ports::PortError;
use crate::rules::cadence::PowerState;
use crate::rules::commands::RmmCommand;
use crate::rules::validation::CheckResult;
use crate::schedule::utc;

/// Something the RMM observed on an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RmmEvent {
    /// The approved patches installed.
    InstallSucceeded,
    /// The install failed.
    InstallFailed {
        /// The RMM's words.
        detail: String,
    },
    /// The install window came and the endpoint was not awake (the daytime posture check).
    NotAwake {
        /// Its power state.
        power: PowerState,
    },
    /// The endpoint rebooted after the install.
    RebootConfirmed,
    /// The post-reboot monitors reported.
    Checks {
        /// Each check's result.
        results: Vec<CheckResult>,
    },
}

/// An RMM observation with its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RmmReport {
    /// The endpoint.
    pub endpoint: EndpointId,
    /// When it happened.
    #[serde(with = "utc")]
    pub at: DateTime<Utc>,
    /// What happened.
    #[serde(flatten)]
    pub event: RmmEvent,
}

/// Commands to, and reports from, the RMM.
///
/// Error contract: `Transient` for the RMM's passing failures (retry the message), `Permanent`
/// for a command it refuses. `send` is keyed: a command whose key the RMM has already taken is
/// not run twice.
pub trait Rmm: Send + Sync {
    /// Sends one command under an idempotency key.
    fn send(
        &self,
        key: &str,
        command: &RmmCommand,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// What the RMM observed on an endpoint at or after `since` and up to now, oldest first.
    fn reports(
        &self,
        endpoint: &EndpointId,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<RmmReport>, PortError>> + Send;
}
