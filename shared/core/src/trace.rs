//! Decisions are data: every rule names the seed node that made it, what it decided, and a
//! stable reason code, so an engineer or an auditor can always ask "why".

use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use chrono_tz::Tz;
use serde::{Serialize, Serializer};

macro_rules! nodes {
    ($($variant:ident => $id:literal, $phase:literal, $title:literal, $rule:literal;)*) => {
        /// A node of the operating model (the seed flow). Its id is stable: traces, evidence and
        /// the docs refer to it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Node {
            $(
                #[doc = $title]
                $variant,
            )*
        }

        impl Node {
            /// Every node, in the seed's order.
            pub const ALL: &'static [Node] = &[$(Node::$variant,)*];

            /// The stable id, e.g. `phase1.disabled`.
            pub fn id(self) -> &'static str {
                match self { $(Node::$variant => $id,)* }
            }

            /// The phase or track of the seed flow it belongs to.
            pub fn phase(self) -> &'static str {
                match self { $(Node::$variant => $phase,)* }
            }

            /// The node's title in the seed flow.
            pub fn title(self) -> &'static str {
                match self { $(Node::$variant => $title,)* }
            }

            /// What the code does at this node, in one sentence.
            pub fn rule(self) -> &'static str {
                match self { $(Node::$variant => $rule,)* }
            }

            /// The node with this id.
            pub fn from_id(id: &str) -> Option<Node> {
                match id { $($id => Some(Node::$variant),)* _ => None }
            }
        }
    };
}

nodes! {
    RmmPlatform => "phase0.rmm_platform", "Phase 0 Initialization",
        "Automate Server: ConnectWise Automate RMM, central orchestration engine",
        "Every install, reboot, reminder and validation command goes to the RMM through one port; the RMM is the system of record for endpoints.";
    InventorySync => "phase0.inventory_sync", "Phase 0 Initialization",
        "Sync Inventory from RMM / CMDB",
        "Endpoints, OS and patch status, server/workstation class, policy group, ring and the exception register are read and validated before any decision.";
    Disabled => "phase1.disabled", "Phase 1 Scope & Exclusions",
        "Is patch or agent patching disabled?",
        "If patching is disabled on the agent or its location, stop: the endpoint gets nothing until the flag is cleared.";
    ClientExcluded => "phase1.client_excluded", "Phase 1 Scope & Exclusions",
        "Excluded by client policy?",
        "A standing exclusion agreed with the client stops processing and is recorded in the exception register with the signed approval's reference.";
    Cadence => "phase2.cadence", "Phase 2 Schedule & Cadence",
        "Cadence & Maintenance Windows Assigned",
        "Every in-scope endpoint gets its window in its own zone: workstations 02:00-04:00 (regular) or business hours (daytime), servers 21:20-03:20.";
    CriticalServer => "phase2.critical_server", "Phase 2 Schedule & Cadence",
        "Critical servers: Manual approval required",
        "A critical server (P1 by role or criticality, or flagged critical) is scheduled but nothing is installed until an engineer approves it.";
    AutoApprove => "phase3.auto_approve", "Phase 3 Approval Governance",
        "Auto-Approve Monthly Microsoft Security Patches",
        "Microsoft security patches rated Critical or Important are approved without review, with a 48-hour time-to-patch target.";
    DriverDecline => "phase3.driver_decline", "Phase 3 Approval Governance",
        "Decline Drivers by Default",
        "Every driver update, whatever its vendor, is declined; only an engineer can approve one, and that approval enters the exception register.";
    PilotSoak => "phase3.pilot_soak", "Phase 3 Approval Governance",
        "Monthly Update Scan - Pilot Ring, 7-Day Soak",
        "The batch goes to the pilot first; production waits until the pilot's last window has ended plus the soak (7 days) and the pilot is healthy.";
    ManualApproval => "phase3.manual_approval", "Phase 3 Approval Governance",
        "Manual approval required?",
        "Everything not auto-approved or declined is held for engineer review (due 7 days after release) and needs an explicit approve or decline with sign-off and reason code.";
    FailureHandling => "phase3.failure_handling", "Phase 3 Approval Governance",
        "Failure Handling Standard",
        "Every failure opens a PSA ticket with P1-P3, pages on-call after hours for servers, sets the next retry window and blocks the retry until a root cause is recorded.";
    Classify => "phase3.classify", "Phase 3 Approval Governance",
        "Classify Endpoint - Server or Workstation?",
        "The inventory's kind routes the endpoint to the server or the workstation track.";
    ServerPolicyGroup => "server.policy_group", "Server Track: Phase 1 Server Grouping",
        "Assign Server Patch Policy Group",
        "Do Not Patch, Manually Patch and Reboot, Auto Install Manual Reboot, or Auto Install Auto Reboot; Auto Install Manual Reboot when unset.";
    ServerRoleGroup => "server.role_group", "Server Track: Phase 1 Server Grouping",
        "Assign Server Role Group (Criticality P1 -> P3)",
        "Domain controllers, SQL and app servers are P1; file, web, utility, infrastructure and optional roles P2; backup and DR P3; an explicit criticality overrides.";
    ServerDoNotPatch => "server.do_not_patch", "Server Track: Phase 1 Server Grouping",
        "Patch policy is Do Not Patch?",
        "A Do Not Patch server is left out of automation and recorded in the exception register.";
    ServerPilotFirst => "server.pilot_first", "Server Track: Phase 4 Server Deployment",
        "Client has 2 or more servers?",
        "One in-scope server goes straight to its production window; with two or more, the pilot-ring servers (else the least critical one) go first and the rest wait for the soak.";
    UnattendedReboot => "server.unattended_reboot", "Server Track: Phase 4 Server Deployment",
        "Unattended reboot approved?",
        "Only Auto Install Auto Reboot servers with unattended reboot approved reboot automatically in 21:20-03:20; all others are technician-controlled.";
    ServerValidation => "server.validation", "Server Track: Phase 4 Post-Reboot Validation",
        "Run Post-Reboot Validation Monitors",
        "After reboot, the checks that apply to the server's role run: agent, DNS/DHCP, line-of-business apps, production-line services, SMTP, Exchange, VPN.";
    ServerHealthy => "server.healthy", "Server Track: Phase 4 Post-Reboot Validation",
        "Production server healthy?",
        "All checks passing goes to closure; any failure opens a ticket, holds the tier and blocks production if the server is critical.";
    ServerClosure => "server.closure", "Server Track: Phase 5 Evidence & Closure",
        "Update PSA Compliance Ticket + Record Evidence",
        "A server tier closes only with its ticket updated, reboot confirmations timestamped, the compliance report attached and evidence retained.";
    WorkstationPolicyTrack => "workstation.policy_group_track", "Workstation Track: Phase 1 Workstation Grouping",
        "Assign Workstation Patch Policy Group + Track",
        "Standard or Do Not Patch, and the regular (overnight) or daytime track; regular when unset.";
    DaytimePosture => "workstation.daytime_posture", "Workstation Track: Phase 1 Workstation Grouping",
        "Daytime posture requirement",
        "A daytime workstation must not be asleep or hibernating during its window; a sleeping one is not patched and is reported.";
    WorkstationRing => "workstation.ring", "Workstation Track: Phase 1 Workstation Grouping",
        "Assign Ring: Pilot or Regular",
        "Pilot and test rings receive each batch first; everyone else (production, read from `regular` too) after the soak.";
    WorkstationDoNotPatch => "workstation.do_not_patch", "Workstation Track: Phase 1 Workstation Grouping",
        "Patch policy is Do Not Patch?",
        "A Do Not Patch workstation is left out of automation and recorded in the exception register.";
    RingDeployment => "workstation.ring_deployment", "Workstation Track: Phase 3 Workstation Deployment",
        "Workstation in Pilot or Test ring?",
        "Pilot and test workstations take the first window after release; production ones the first window after the fleet's pilot soak.";
    PilotVerified => "workstation.pilot_verified", "Workstation Track: Phase 3 Workstation Deployment",
        "Pilot ring verified healthy?",
        "Production is promoted only when the soak has passed and the pilot ring is healthy; otherwise it is held and a ticket opened.";
    Daytime => "workstation.daytime", "Workstation Track: Phase 3 Workstation Deployment",
        "Workstation track is Daytime?",
        "Daytime: a 10:00 reminder daily until the user reboots, forced at the first overnight window 3 days after install; regular: automatic reboot 02:00-04:00.";
    RebootedHealthy => "workstation.rebooted_healthy", "Workstation Track: Phase 3 Workstation Deployment",
        "Workstation rebooted and ring healthy?",
        "A rebooted, healthy workstation goes to closure; otherwise a ticket, P2 unless the client impact is higher.";
    WorkstationClosure => "workstation.closure", "Workstation Track: Phase 4 Evidence & Closure",
        "Update PSA Compliance Ticket + Close Patch Tier",
        "A workstation tier closes only with its ticket updated, reboots confirmed, baseline app and VPN checks passed and evidence retained.";
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let id = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Node::from_id(&id).ok_or_else(|| {
            serde::de::Error::custom(format!("`{id}` is not a node of the operating model"))
        })
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// One step of a decision: which node decided, what, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceEntry {
    /// The deciding node.
    pub node: Node,
    /// What it decided (`yes`, `no`, `server`, `pilot`, `p1`, ...).
    pub outcome: &'static str,
    /// The stable reason code.
    pub reason: &'static str,
    /// The facts the rule used, in words, where they are not obvious from the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts: Option<Facts>,
}

/// The facts behind a step, in words. Fleets repeat the same facts (one zone, one window, one
/// release) across thousands of endpoints, so the text is shared rather than copied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Facts {
    /// Text known at compile time.
    Static(&'static str),
    /// Text rendered once and shared.
    Shared(Arc<str>),
}

impl Deref for Facts {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Facts::Static(s) => s,
            Facts::Shared(s) => s,
        }
    }
}

impl fmt::Display for Facts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl Serialize for Facts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self)
    }
}

impl From<&'static str> for Facts {
    fn from(s: &'static str) -> Self {
        Facts::Static(s)
    }
}

impl From<String> for Facts {
    fn from(s: String) -> Self {
        Facts::Shared(Arc::from(s))
    }
}

/// Renders each distinct fact once: keyed by what the text is about (a template tag, a zone and
/// up to two numbers such as instants), so planning a large fleet formats a time once per zone
/// and window rather than once per endpoint.
#[derive(Debug, Default)]
pub struct FactCache {
    rendered: HashMap<(&'static str, Tz, i64, i64), Arc<str>>,
}

impl FactCache {
    /// The facts for `(tag, tz, a, b)`, rendered by `render` the first time they are asked for.
    /// The same key must always render the same text.
    pub fn get(
        &mut self,
        tag: &'static str,
        tz: Tz,
        a: i64,
        b: i64,
        render: impl FnOnce() -> String,
    ) -> Facts {
        Facts::Shared(
            self.rendered
                .entry((tag, tz, a, b))
                .or_insert_with(|| Arc::from(render()))
                .clone(),
        )
    }
}

impl TraceEntry {
    /// An entry with no extra facts.
    pub fn new(node: Node, outcome: &'static str, reason: &'static str) -> Self {
        Self {
            node,
            outcome,
            reason,
            facts: None,
        }
    }

    /// The same entry with the facts it used.
    pub fn with_facts(mut self, facts: impl Into<Facts>) -> Self {
        self.facts = Some(facts.into());
        self
    }
}

/// The steps behind one subject's decisions, in the order they were taken.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Trace(Vec<TraceEntry>);

impl Trace {
    /// An empty trace.
    pub fn new() -> Self {
        Self(Vec::with_capacity(12))
    }

    /// Appends a step.
    pub fn push(&mut self, entry: TraceEntry) {
        self.0.push(entry);
    }

    /// The steps.
    pub fn entries(&self) -> &[TraceEntry] {
        &self.0
    }

    /// The step a node took, if it took one.
    pub fn find(&self, node: Node) -> Option<&TraceEntry> {
        self.0.iter().find(|e| e.node == node)
    }

    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_id_is_unique_and_round_trips() {
        let mut ids: Vec<&str> = Node::ALL.iter().map(|n| n.id()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), Node::ALL.len());
        for n in Node::ALL {
            assert_eq!(Node::from_id(n.id()), Some(*n));
        }
    }

    #[test]
    fn a_trace_entry_serializes_its_node_as_the_stable_id() {
        let e = TraceEntry::new(Node::Disabled, "no", "not_disabled");
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["node"], "phase1.disabled");
        assert_eq!(v["outcome"], "no");
        assert!(v.get("facts").is_none());
        let e = e.with_facts("location lab");
        assert_eq!(serde_json::to_value(&e).unwrap()["facts"], "location lab");
    }

    #[test]
    fn the_fact_cache_renders_each_key_once_and_shares_the_text() {
        let mut cache = FactCache::default();
        let mut renders = 0;
        let a = cache.get("t", Tz::UTC, 1, 2, || {
            renders += 1;
            "x".to_owned()
        });
        let b = cache.get("t", Tz::UTC, 1, 2, || unreachable!("rendered again"));
        let c = cache.get("t", Tz::UTC, 1, 3, || "y".to_owned());
        assert_eq!((renders, &*a, &*b, &*c), (1, "x", "x", "y"));
    }
}
