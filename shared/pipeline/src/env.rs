//! What every handler works with: the ports and the policy, built once per process.

use chrono::Duration;
use patchflow_core::ids::ClientId;
use patchflow_core::policy::Policy;
use patchflow_core::ports::evidence::{EvidenceStore, LockMode};
use patchflow_core::ports::pager::Pager;
use patchflow_core::ports::psa::Psa;
use patchflow_core::ports::queue::QueueSender;
use patchflow_core::ports::rmm::Rmm;
use patchflow_core::ports::state::StateStore;

/// Settings that are not part of the operating model's policy.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long evidence is locked.
    pub retention: Duration,
    /// The evidence lock mode (COMPLIANCE in production).
    pub lock_mode: LockMode,
    /// How long a claimed message is ours before another delivery may take it over.
    pub lease: Duration,
    /// How long idempotency records are kept.
    pub idempotency_ttl: Duration,
    /// The PSA company for the MSP's own tickets (overdue reviews).
    pub msp_client: ClientId,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            // Seven years (2,555 days), the evidence bucket's default retention too
            // (`patchflow aws bootstrap --retention-days`): longer than a CMMC certificate's three
            // years and the FAR's three years after final payment on a multi-year contract.
            retention: Duration::days(2555),
            lock_mode: LockMode::Compliance,
            lease: Duration::minutes(5),
            idempotency_ttl: Duration::days(90),
            msp_client: ClientId::parse("msp").expect("a literal, valid id"),
        }
    }
}

/// The ports and the policy.
#[derive(Debug)]
pub struct Env<S, Q, E, R, P, G> {
    /// The state store.
    pub state: S,
    /// Sending to the stages' queues.
    pub queues: Q,
    /// The evidence store.
    pub evidence: E,
    /// The RMM.
    pub rmm: R,
    /// The PSA.
    pub psa: P,
    /// The pager.
    pub pager: G,
    /// The operating model's policy.
    pub policy: Policy,
    /// Everything else.
    pub settings: Settings,
}

/// The environment of a [`Ports`].
pub type PortsEnv<X> = Env<
    <X as Ports>::S,
    <X as Ports>::Q,
    <X as Ports>::E,
    <X as Ports>::R,
    <X as Ports>::P,
    <X as Ports>::G,
>;

/// The bounds every handler needs, as one trait.
pub trait Ports: Send + Sync {
    /// State.
    type S: StateStore;
    /// Queues.
    type Q: QueueSender;
    /// Evidence.
    type E: EvidenceStore;
    /// RMM.
    type R: Rmm;
    /// PSA.
    type P: Psa;
    /// Pager.
    type G: Pager;
    /// The environment.
    fn env(&self) -> &PortsEnv<Self>;
}

impl<S, Q, E, R, P, G> Ports for Env<S, Q, E, R, P, G>
where
    S: StateStore,
    Q: QueueSender,
    E: EvidenceStore,
    R: Rmm,
    P: Psa,
    G: Pager,
{
    type S = S;
    type Q = Q;
    type E = E;
    type R = R;
    type P = P;
    type G = G;
    fn env(&self) -> &Env<S, Q, E, R, P, G> {
        self
    }
}
