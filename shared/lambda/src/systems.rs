//! The systems around patchflow that a function drives, as the configuration chooses them: the
//! simulated RMM, PSA and pager (`PATCHFLOW_CONNECTORS=simulation`, with the inventory and
//! catalog from files), or the real ones (`connectwise`: ConnectWise Automate and PSA, PagerDuty
//! or an SNS topic, Microsoft's CVRF release plus a third-party catalog file), with credentials
//! read once from Secrets Manager.
//!
//! Each port is an enum over its adapters, so a function's environment has one type whatever
//! the configuration says. With `connectwise`, a function fails at start, naming what is
//! missing, when a system it talks to (per [`crate::wiring`]) has no section in the connectors
//! file or no credentials; a system it does not talk to is `Unavailable`, and using it is a
//! permanent error naming the function and the system. That is how least privilege shows up
//! (only the functions that page get the pager's secret).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use patchflow_aws::secrets::{secrets_client, SecretsCache};
use patchflow_aws::sns::{sns_client, SnsPager};
use patchflow_connectors::automate::Automate;
use patchflow_connectors::file::{FileCatalog, FileInventory};
use patchflow_connectors::manage::ManagePsa;
use patchflow_connectors::msrc::MsrcCatalog;
use patchflow_connectors::pagerduty::PagerDutyPager;
use patchflow_connectors::secrets::parse_credentials;
use patchflow_connectors::settings::PagerChoice;
use patchflow_core::contract::{CatalogDoc, InventoryDoc};
use patchflow_core::ids::{ClientId, CycleId, EndpointId, PatchId};
use patchflow_core::ports::pager::Pager;
use patchflow_core::ports::psa::{Attached, Attachment, NewTicket, NoteAdded, Psa};
use patchflow_core::ports::rmm::{
    AgentState, ApprovalPush, RetryNote, Rmm, RmmApproval, RmmReport, TierClosure,
};
use patchflow_core::ports::sources::{CatalogSource, InventorySource, PullNotes};
use patchflow_core::ports::PortError;
use patchflow_core::rules::commands::RmmCommand;
use patchflow_pipeline::error::error_chain;
#[cfg(any(test, feature = "simulation"))]
use patchflow_sim::connectors::{SimPager, SimPsa, SimRmm};

/// The machine's clock, the simulated RMM's.
#[cfg(any(test, feature = "simulation"))]
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[cfg(any(test, feature = "simulation"))]
impl patchflow_core::ports::clock::Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

use crate::config::{Config, Connectors};
use crate::wiring::{System, Wiring};

fn unavailable(system: &str, why: &str) -> PortError {
    PortError::permanent(
        format!("{system} is not configured for this function"),
        why.to_owned(),
    )
}

/// The RMM.
#[derive(Debug)]
pub enum AnyRmm {
    /// The simulation (boxed: it holds every command, approval and closure it took), in a
    /// build with the `simulation` feature.
    #[cfg(any(test, feature = "simulation"))]
    Simulated(Box<SimRmm<SystemClock>>),
    /// ConnectWise Automate.
    Automate(Arc<Automate>),
    /// Not configured for this function (why).
    Unavailable(String),
}

impl Rmm for AnyRmm {
    async fn send(&self, key: &str, command: &RmmCommand) -> Result<(), PortError> {
        match self {
            #[cfg(any(test, feature = "simulation"))]
            AnyRmm::Simulated(r) => r.send(key, command).await,
            AnyRmm::Automate(r) => r.send(key, command).await,
            AnyRmm::Unavailable(why) => Err(unavailable("the RMM", why)),
        }
    }

    async fn reports(
        &self,
        endpoint: &EndpointId,
        since: DateTime<Utc>,
        expect: &[PatchId],
    ) -> Result<Vec<RmmReport>, PortError> {
        match self {
            #[cfg(any(test, feature = "simulation"))]
            AnyRmm::Simulated(r) => r.reports(endpoint, since, expect).await,
            AnyRmm::Automate(r) => r.reports(endpoint, since, expect).await,
            AnyRmm::Unavailable(why) => Err(unavailable("the RMM", why)),
        }
    }

    async fn changed(
        &self,
        client: &ClientId,
        since: DateTime<Utc>,
    ) -> Result<Vec<EndpointId>, PortError> {
        match self {
            #[cfg(any(test, feature = "simulation"))]
            AnyRmm::Simulated(r) => r.changed(client, since).await,
            AnyRmm::Automate(r) => r.changed(client, since).await,
            AnyRmm::Unavailable(why) => Err(unavailable("the RMM", why)),
        }
    }

    async fn push_approval(&self, key: &str, push: &ApprovalPush) -> Result<(), PortError> {
        match self {
            #[cfg(any(test, feature = "simulation"))]
            AnyRmm::Simulated(r) => r.push_approval(key, push).await,
            AnyRmm::Automate(r) => r.push_approval(key, push).await,
            AnyRmm::Unavailable(why) => Err(unavailable("the RMM", why)),
        }
    }

    async fn approval_state(
        &self,
        endpoint: &EndpointId,
        patch: &PatchId,
    ) -> Result<Option<RmmApproval>, PortError> {
        match self {
            #[cfg(any(test, feature = "simulation"))]
            AnyRmm::Simulated(r) => r.approval_state(endpoint, patch).await,
            AnyRmm::Automate(r) => r.approval_state(endpoint, patch).await,
            AnyRmm::Unavailable(why) => Err(unavailable("the RMM", why)),
        }
    }

    async fn agent_state(&self, endpoint: &EndpointId) -> Result<AgentState, PortError> {
        match self {
            #[cfg(any(test, feature = "simulation"))]
            AnyRmm::Simulated(r) => r.agent_state(endpoint).await,
            AnyRmm::Automate(r) => r.agent_state(endpoint).await,
            AnyRmm::Unavailable(why) => Err(unavailable("the RMM", why)),
        }
    }

    async fn health(
        &self,
        endpoint: &EndpointId,
    ) -> Result<patchflow_core::ports::rmm::HealthReport, PortError> {
        match self {
            #[cfg(any(test, feature = "simulation"))]
            AnyRmm::Simulated(r) => r.health(endpoint).await,
            AnyRmm::Automate(r) => r.health(endpoint).await,
            AnyRmm::Unavailable(why) => Err(unavailable("the RMM", why)),
        }
    }

    async fn record_closure(&self, key: &str, closure: &TierClosure) -> Result<bool, PortError> {
        match self {
            #[cfg(any(test, feature = "simulation"))]
            AnyRmm::Simulated(r) => r.record_closure(key, closure).await,
            AnyRmm::Automate(r) => r.record_closure(key, closure).await,
            AnyRmm::Unavailable(why) => Err(unavailable("the RMM", why)),
        }
    }

    async fn record_retry(&self, key: &str, note: &RetryNote) -> Result<bool, PortError> {
        match self {
            #[cfg(any(test, feature = "simulation"))]
            AnyRmm::Simulated(r) => r.record_retry(key, note).await,
            AnyRmm::Automate(r) => r.record_retry(key, note).await,
            AnyRmm::Unavailable(why) => Err(unavailable("the RMM", why)),
        }
    }
}

/// The PSA.
#[derive(Debug)]
pub enum AnyPsa {
    /// The simulation, in a build with the `simulation` feature.
    #[cfg(any(test, feature = "simulation"))]
    Simulated(SimPsa),
    /// ConnectWise PSA.
    Manage(Box<ManagePsa>),
    /// Not configured for this function (why).
    Unavailable(String),
}

impl Psa for AnyPsa {
    async fn open_ticket(&self, ticket: &NewTicket) -> Result<String, PortError> {
        match self {
            #[cfg(any(test, feature = "simulation"))]
            AnyPsa::Simulated(p) => p.open_ticket(ticket).await,
            AnyPsa::Manage(p) => p.open_ticket(ticket).await,
            AnyPsa::Unavailable(why) => Err(unavailable("the PSA", why)),
        }
    }

    async fn add_note(
        &self,
        ticket: &str,
        note_key: &str,
        text: &str,
    ) -> Result<NoteAdded, PortError> {
        match self {
            #[cfg(any(test, feature = "simulation"))]
            AnyPsa::Simulated(p) => p.add_note(ticket, note_key, text).await,
            AnyPsa::Manage(p) => p.add_note(ticket, note_key, text).await,
            AnyPsa::Unavailable(why) => Err(unavailable("the PSA", why)),
        }
    }

    async fn close_ticket(&self, ticket: &str) -> Result<(), PortError> {
        match self {
            #[cfg(any(test, feature = "simulation"))]
            AnyPsa::Simulated(p) => p.close_ticket(ticket).await,
            AnyPsa::Manage(p) => p.close_ticket(ticket).await,
            AnyPsa::Unavailable(why) => Err(unavailable("the PSA", why)),
        }
    }

    async fn attach(&self, ticket: &str, attachment: &Attachment) -> Result<Attached, PortError> {
        match self {
            #[cfg(any(test, feature = "simulation"))]
            AnyPsa::Simulated(p) => p.attach(ticket, attachment).await,
            AnyPsa::Manage(p) => p.attach(ticket, attachment).await,
            AnyPsa::Unavailable(why) => Err(unavailable("the PSA", why)),
        }
    }
}

/// The pager.
#[derive(Debug)]
pub enum AnyPager {
    /// The simulation, in a build with the `simulation` feature.
    #[cfg(any(test, feature = "simulation"))]
    Simulated(SimPager),
    /// PagerDuty.
    PagerDuty(Box<PagerDutyPager>),
    /// An SNS topic.
    Sns(SnsPager),
    /// Not configured for this function (why).
    Unavailable(String),
}

impl Pager for AnyPager {
    async fn trigger(&self, dedup_key: &str, summary: &str) -> Result<(), PortError> {
        match self {
            #[cfg(any(test, feature = "simulation"))]
            AnyPager::Simulated(p) => p.trigger(dedup_key, summary).await,
            AnyPager::PagerDuty(p) => p.trigger(dedup_key, summary).await,
            AnyPager::Sns(p) => p.trigger(dedup_key, summary).await,
            AnyPager::Unavailable(why) => Err(unavailable("the pager", why)),
        }
    }

    async fn resolve(&self, dedup_key: &str) -> Result<(), PortError> {
        match self {
            #[cfg(any(test, feature = "simulation"))]
            AnyPager::Simulated(p) => p.resolve(dedup_key).await,
            AnyPager::PagerDuty(p) => p.resolve(dedup_key).await,
            AnyPager::Sns(p) => p.resolve(dedup_key).await,
            AnyPager::Unavailable(why) => Err(unavailable("the pager", why)),
        }
    }
}

/// Where the inventory comes from.
#[derive(Debug)]
pub enum AnyInventory {
    /// A file in the contract's format.
    File(FileInventory),
    /// ConnectWise Automate.
    Automate(Arc<Automate>),
}

impl InventorySource for AnyInventory {
    async fn pull(&self) -> Result<InventoryDoc, PortError> {
        match self {
            AnyInventory::File(s) => s.pull().await,
            AnyInventory::Automate(s) => s.pull().await,
        }
    }

    async fn pull_with_notes(&self) -> Result<(InventoryDoc, PullNotes), PortError> {
        match self {
            AnyInventory::File(s) => s.pull_with_notes().await,
            AnyInventory::Automate(s) => s.pull_with_notes().await,
        }
    }
}

/// Where the month's catalog comes from.
#[derive(Debug)]
pub enum AnyCatalog {
    /// A file (template) in the contract's format.
    File(FileCatalog),
    /// Microsoft's release, with third-party patches from a file.
    Microsoft(Box<MsrcCatalog>),
}

impl CatalogSource for AnyCatalog {
    async fn catalog(&self, cycle: CycleId) -> Result<CatalogDoc, PortError> {
        match self {
            AnyCatalog::File(s) => s.catalog(cycle).await,
            AnyCatalog::Microsoft(s) => s.catalog(cycle).await,
        }
    }
}

/// The inventory and catalog sources of inventory-sync (absent when the configuration gives
/// none).
#[derive(Debug, Default)]
pub struct Sources {
    /// The inventory.
    pub inventory: Option<AnyInventory>,
    /// The catalog.
    pub catalog: Option<AnyCatalog>,
}

impl Sources {
    /// The file sources of the configuration's paths (the simulation's).
    pub fn files(config: &Config) -> Self {
        Self {
            inventory: config
                .inventory_path
                .as_deref()
                .map(|p| AnyInventory::File(FileInventory::new(p))),
            catalog: config
                .catalog_path
                .as_deref()
                .map(|p| AnyCatalog::File(FileCatalog::new(p))),
        }
    }
}

/// Everything a function drives.
#[derive(Debug)]
pub struct Systems {
    /// The RMM.
    pub rmm: AnyRmm,
    /// The PSA.
    pub psa: AnyPsa,
    /// The pager.
    pub pager: AnyPager,
    /// inventory-sync's sources.
    pub sources: Sources,
}

/// Why the systems cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("connectors: {0}")]
pub struct SystemsError(pub String);

fn connector(e: PortError) -> SystemsError {
    SystemsError(error_chain(&e))
}

/// One system's credentials, from the secret at `arn`.
async fn credentials<T: serde::de::DeserializeOwned>(
    secrets: &SecretsCache,
    arn: &str,
) -> Result<T, SystemsError> {
    let text = secrets.get(arn).await.map_err(connector)?;
    parse_credentials(arn, &text).map_err(connector)
}

/// Builds the systems the configuration names for `function`, reading each secret it needs
/// once. With `connectwise`, every system the function talks to ([`Wiring::talks_to`]) must be
/// configured, or this fails naming what is missing ([`Config::check_systems`]); the others are
/// `Unavailable`, and the function never reads their secrets.
pub async fn systems(
    config: &Config,
    sdk: &aws_config::SdkConfig,
    function: &Wiring,
) -> Result<Systems, SystemsError> {
    // Without the simulation the match has one arm (clippy would have it a `let`).
    #[allow(clippy::infallible_destructuring_match)]
    let file = match &config.connectors {
        #[cfg(any(test, feature = "simulation"))]
        Connectors::Simulation(outcomes) => {
            return Ok(Systems {
                rmm: AnyRmm::Simulated(Box::new(SimRmm::new(*outcomes, Arc::new(SystemClock)))),
                psa: AnyPsa::Simulated(SimPsa::default()),
                pager: AnyPager::Simulated(SimPager::default()),
                sources: Sources::files(config),
            })
        }
        Connectors::ConnectWise(file) => file,
    };
    config
        .check_systems(function)
        .map_err(|e| SystemsError(e.to_string()))?;
    let talks = |s: System| function.talks_to.contains(&s);
    let elsewhere = |system: &str| {
        format!(
            "{} does not talk to {system} (shared/lambda/src/wiring.rs), so it is given no \
             credentials for it",
            function.name
        )
    };
    // Unreachable once `check_systems` passed; an error rather than a panic all the same.
    let unchecked = |system: &str| {
        SystemsError(format!(
            "{} talks to {system}, which is not configured",
            function.name
        ))
    };
    let c = &config.connections;
    let secrets = SecretsCache::new(secrets_client(sdk));
    let automate = if talks(System::Rmm) {
        match (&file.automate, &c.rmm_secret_arn) {
            (Some(cfg), Some(arn)) => Some(Arc::new(
                Automate::new(cfg.clone(), credentials(&secrets, arn).await?).map_err(connector)?,
            )),
            _ => return Err(unchecked("the RMM")),
        }
    } else {
        None
    };
    let rmm = match &automate {
        Some(a) => AnyRmm::Automate(Arc::clone(a)),
        None => AnyRmm::Unavailable(elsewhere("the RMM")),
    };
    let psa = if talks(System::Psa) {
        match (&file.manage, &c.psa_secret_arn) {
            (Some(cfg), Some(arn)) => AnyPsa::Manage(Box::new(
                ManagePsa::new(cfg.clone(), credentials(&secrets, arn).await?)
                    .map_err(connector)?,
            )),
            _ => return Err(unchecked("the PSA")),
        }
    } else {
        AnyPsa::Unavailable(elsewhere("the PSA"))
    };
    let pager = if talks(System::Pager) {
        match (&file.pager, &c.pager_secret_arn, &c.pager_topic_arn) {
            (Some(PagerChoice::PagerDuty(cfg)), Some(arn), _) => AnyPager::PagerDuty(Box::new(
                PagerDutyPager::new(cfg.clone(), credentials(&secrets, arn).await?)
                    .map_err(connector)?,
            )),
            (Some(PagerChoice::Sns {}), _, Some(topic)) => {
                AnyPager::Sns(SnsPager::new(sns_client(sdk), topic.clone()))
            }
            _ => return Err(unchecked("the pager")),
        }
    } else {
        AnyPager::Unavailable(elsewhere("the pager"))
    };
    let mut catalog = MsrcCatalog::new(file.msrc.clone()).map_err(connector)?;
    if let Some(third_party) = &config.catalog_path {
        catalog = catalog.with_third_party(FileCatalog::new(third_party.as_str()));
    }
    Ok(Systems {
        rmm,
        psa,
        pager,
        sources: Sources {
            inventory: automate.map(AnyInventory::Automate),
            catalog: Some(AnyCatalog::Microsoft(Box::new(catalog))),
        },
    })
}
