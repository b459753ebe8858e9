//! The fleet and the catalog as the domain sees them: validated, typed, complete.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::ids::{ClientId, EndpointId, LocationId, PatchId};

/// Server or workstation: decides which track of the flow applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// A server: server policy groups, role criticality, controlled reboot windows.
    Server,
    /// A workstation: rings, tracks, user-facing reboot prompts.
    Workstation,
}

/// How a server receives patches and reboots (the seed's four server policy groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerPolicyGroup {
    /// Excluded from automation; in the exception register.
    DoNotPatch,
    /// A technician installs and reboots.
    ManualPatchAndReboot,
    /// Automatic install; a technician reboots.
    AutoInstallManualReboot,
    /// Automatic install and reboot (only where unattended reboot is approved).
    AutoInstallAutoReboot,
}

/// How a workstation receives patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkstationPolicyGroup {
    /// Excluded from automation; in the exception register.
    DoNotPatch,
    /// Patched on its track.
    Standard,
}

/// The role of a server, which drives its criticality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerRole {
    /// Domain controller (P1).
    DomainController,
    /// SQL server (P1).
    Sql,
    /// Line-of-business application server (P1).
    App,
    /// File server (P2).
    File,
    /// Web server (P2).
    Web,
    /// Utility server (P2).
    Utility,
    /// Infrastructure server (P2).
    Infrastructure,
    /// Backup server (P3).
    Backup,
    /// Disaster-recovery server (P3).
    Dr,
    /// Virtualization host (optional group, P2).
    VirtualizationHost,
    /// Exchange / messaging (optional group, P2).
    Exchange,
    /// SMTP relay (optional group, P2).
    Smtp,
    /// Management server (optional group, P2).
    Management,
}

impl ServerRole {
    /// Every role, in the seed's order.
    pub const ALL: [ServerRole; 13] = [
        ServerRole::DomainController,
        ServerRole::Sql,
        ServerRole::App,
        ServerRole::File,
        ServerRole::Web,
        ServerRole::Utility,
        ServerRole::Infrastructure,
        ServerRole::Backup,
        ServerRole::Dr,
        ServerRole::VirtualizationHost,
        ServerRole::Exchange,
        ServerRole::Smtp,
        ServerRole::Management,
    ];

    /// The role's name as written in the inventory.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerRole::DomainController => "domain_controller",
            ServerRole::Sql => "sql",
            ServerRole::App => "app",
            ServerRole::File => "file",
            ServerRole::Web => "web",
            ServerRole::Utility => "utility",
            ServerRole::Infrastructure => "infrastructure",
            ServerRole::Backup => "backup",
            ServerRole::Dr => "dr",
            ServerRole::VirtualizationHost => "virtualization_host",
            ServerRole::Exchange => "exchange",
            ServerRole::Smtp => "smtp",
            ServerRole::Management => "management",
        }
    }
}

/// Escalation priority, P1 most critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Criticality {
    /// Most critical: domain controllers, SQL, line-of-business apps.
    P1,
    /// File, web, utility and infrastructure servers; workstations by default.
    P2,
    /// Least critical: backup and DR servers.
    P3,
}

impl Criticality {
    /// `p1`, `p2` or `p3`.
    pub fn as_str(self) -> &'static str {
        match self {
            Criticality::P1 => "p1",
            Criticality::P2 => "p2",
            Criticality::P3 => "p3",
        }
    }

    /// 1, 2 or 3.
    pub fn number(self) -> u8 {
        match self {
            Criticality::P1 => 1,
            Criticality::P2 => 2,
            Criticality::P3 => 3,
        }
    }
}

impl fmt::Display for Criticality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{}", self.number())
    }
}

/// Client impact, as an inventory extension gives it per client or per endpoint: how much a
/// failure here hurts the client. It raises a failure's ticket priority (never lowers it):
/// `high` is P1, `medium` P2, `low` P3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    /// A failure stops the client's business: P1.
    High,
    /// The default impact: P2.
    Medium,
    /// Little impact: P3.
    Low,
}

impl Impact {
    /// `high`, `medium` or `low`.
    pub fn as_str(self) -> &'static str {
        match self {
            Impact::High => "high",
            Impact::Medium => "medium",
            Impact::Low => "low",
        }
    }

    /// The priority this impact asks for: high P1, medium P2, low P3.
    pub fn criticality(self) -> Criticality {
        match self {
            Impact::High => Criticality::P1,
            Impact::Medium => Criticality::P2,
            Impact::Low => Criticality::P3,
        }
    }
}

/// Where an endpoint's client impact came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImpactSource {
    /// The endpoint's own `impact` (it overrides the client's).
    Endpoint,
    /// Its client's `impact`.
    Client,
}

/// An endpoint's client impact and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct EndpointImpact {
    /// The impact.
    pub level: Impact,
    /// The endpoint's own value, or its client's.
    pub source: ImpactSource,
}

/// Rollout ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ring {
    /// First to receive each batch.
    Pilot,
    /// The cross-track test ring; rolls out with the pilot.
    Test,
    /// Everyone else; waits for the pilot's soak. `regular` in inventories means this.
    #[serde(alias = "regular")]
    Production,
}

impl Ring {
    /// Whether the ring rolls out first (pilot and test do).
    pub fn is_pilot(self) -> bool {
        matches!(self, Ring::Pilot | Ring::Test)
    }

    /// The ring's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Ring::Pilot => "pilot",
            Ring::Test => "test",
            Ring::Production => "production",
        }
    }
}

/// Workstation deployment track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Track {
    /// Overnight: patch and reboot 02:00-04:00 local, fully automated.
    Regular,
    /// Business hours: the user reboots, reminded daily; forced after three days.
    Daytime,
}

impl Track {
    /// The track's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Track::Regular => "regular",
            Track::Daytime => "daytime",
        }
    }
}

/// Where a server's criticality came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CriticalitySource {
    /// The inventory's `criticality` overrode the role.
    Override,
    /// The server's role group.
    Role,
    /// No role: the default, P2.
    Default,
}

/// A server's grouping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerProfile {
    /// Server patch policy group.
    pub policy_group: ServerPolicyGroup,
    /// Server role group, if known.
    pub role: Option<ServerRole>,
    /// Escalation priority.
    pub criticality: Criticality,
    /// Where the criticality came from.
    pub criticality_source: CriticalitySource,
    /// Whether the client approved unattended reboots.
    pub unattended_reboot_approved: bool,
}

/// A workstation's grouping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkstationProfile {
    /// Workstation patch policy group.
    pub policy_group: WorkstationPolicyGroup,
    /// Regular (overnight) or daytime.
    pub track: Track,
}

/// The kind-specific part of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// A server and its grouping.
    Server(ServerProfile),
    /// A workstation and its grouping.
    Workstation(WorkstationProfile),
}

/// A managed endpoint, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// Fleet-unique id.
    pub id: EndpointId,
    /// Owning client.
    pub client: ClientId,
    /// Site within the client, if known.
    pub location: Option<LocationId>,
    /// Host name as the RMM reports it (the id when unknown).
    pub hostname: String,
    /// The zone its windows are computed in.
    pub tz: Tz,
    /// Agent-level patching-disabled flag.
    pub patching_disabled: bool,
    /// Standing exclusion agreed with the client.
    pub client_excluded: bool,
    /// Reference to the client's signed exclusion approval.
    pub exclusion_ref: Option<String>,
    /// Critical server: every install needs an engineer's manual approval.
    pub critical: bool,
    /// Rollout ring.
    pub ring: Ring,
    /// Server or workstation details.
    pub profile: Profile,
    /// Which values the inventory gave (the others are defaults).
    pub provenance: Provenance,
    /// The patch ids the RMM's last patch scan reports as needed here (missing, or installed
    /// and failed), sorted and unique; `None` when not known.
    pub applicable: Option<Vec<PatchId>>,
    /// The operating system's product name as the RMM reports it, if known.
    pub os: Option<String>,
    /// Client impact: the endpoint's own, else its client's; `None` when neither gives one.
    pub impact: Option<EndpointImpact>,
}

/// Which grouping values came from the inventory rather than from defaults, so a trace can say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Provenance {
    /// `policy_group` was given.
    pub policy_group: bool,
    /// `ring` was given.
    pub ring: bool,
    /// `track` was given.
    pub track: bool,
}

impl Endpoint {
    /// Server or workstation.
    pub fn kind(&self) -> EndpointKind {
        match self.profile {
            Profile::Server(_) => EndpointKind::Server,
            Profile::Workstation(_) => EndpointKind::Workstation,
        }
    }

    /// The server profile, if a server.
    pub fn server(&self) -> Option<&ServerProfile> {
        match &self.profile {
            Profile::Server(s) => Some(s),
            Profile::Workstation(_) => None,
        }
    }

    /// The workstation profile, if a workstation.
    pub fn workstation(&self) -> Option<&WorkstationProfile> {
        match &self.profile {
            Profile::Workstation(w) => Some(w),
            Profile::Server(_) => None,
        }
    }

    /// Whether its policy group is Do Not Patch.
    pub fn is_do_not_patch(&self) -> bool {
        match &self.profile {
            Profile::Server(s) => s.policy_group == ServerPolicyGroup::DoNotPatch,
            Profile::Workstation(w) => w.policy_group == WorkstationPolicyGroup::DoNotPatch,
        }
    }
}

/// A client's site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Id, unique within the client.
    pub id: LocationId,
    /// Location-level patching-disabled flag.
    pub patching_disabled: bool,
}

/// A client of the MSP.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    /// Unique id.
    pub id: ClientId,
    /// Display name (the id when unknown).
    pub name: String,
    /// Default zone for its endpoints.
    pub tz: Option<Tz>,
    /// Its sites.
    pub locations: Vec<Location>,
    /// The client's impact, if the inventory gives one (its endpoints' default).
    pub impact: Option<Impact>,
}

impl Client {
    /// A location of this client by id.
    pub fn location(&self, id: &LocationId) -> Option<&Location> {
        self.locations.iter().find(|l| &l.id == id)
    }
}

/// The fleet: clients and their endpoints, references checked.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    clients: Vec<Client>,
    by_client: HashMap<ClientId, usize>,
    endpoints: Vec<Endpoint>,
}

/// A reference the inventory does not satisfy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    /// Two clients share an id.
    #[error("duplicate client id `{0}`: client ids must be unique")]
    DuplicateClient(ClientId),
    /// Two endpoints share an id.
    #[error("duplicate endpoint id `{0}`: endpoint ids must be unique across the fleet")]
    DuplicateEndpoint(EndpointId),
    /// An endpoint names a client that is not in the inventory.
    #[error("endpoint `{endpoint}` names client `{client}`, which is not in the inventory")]
    UnknownClient {
        /// The endpoint.
        endpoint: EndpointId,
        /// The missing client.
        client: ClientId,
    },
    /// An endpoint names a location its client does not have.
    #[error(
        "endpoint `{endpoint}` names location `{location}`, which client `{client}` does not have"
    )]
    UnknownLocation {
        /// The endpoint.
        endpoint: EndpointId,
        /// Its client.
        client: ClientId,
        /// The missing location.
        location: LocationId,
    },
}

impl Inventory {
    /// Builds an inventory, checking ids are unique and every reference resolves.
    pub fn new(clients: Vec<Client>, endpoints: Vec<Endpoint>) -> Result<Self, InventoryError> {
        let mut by_client = HashMap::with_capacity(clients.len());
        for (i, c) in clients.iter().enumerate() {
            if by_client.insert(c.id.clone(), i).is_some() {
                return Err(InventoryError::DuplicateClient(c.id.clone()));
            }
        }
        let mut seen = std::collections::HashSet::with_capacity(endpoints.len());
        for e in &endpoints {
            if !seen.insert(&e.id) {
                return Err(InventoryError::DuplicateEndpoint(e.id.clone()));
            }
            let client = by_client
                .get(&e.client)
                .map(|&i| &clients[i])
                .ok_or_else(|| InventoryError::UnknownClient {
                    endpoint: e.id.clone(),
                    client: e.client.clone(),
                })?;
            if let Some(loc) = &e.location {
                if client.location(loc).is_none() {
                    return Err(InventoryError::UnknownLocation {
                        endpoint: e.id.clone(),
                        client: e.client.clone(),
                        location: loc.clone(),
                    });
                }
            }
        }
        Ok(Self {
            clients,
            by_client,
            endpoints,
        })
    }

    /// Clients in inventory order.
    pub fn clients(&self) -> &[Client] {
        &self.clients
    }

    /// Endpoints in inventory order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// A client by id.
    pub fn client(&self, id: &ClientId) -> Option<&Client> {
        self.by_client.get(id).map(|&i| &self.clients[i])
    }

    /// The location record an endpoint belongs to, if it names one.
    pub fn location_of(&self, endpoint: &Endpoint) -> Option<&Location> {
        let loc = endpoint.location.as_ref()?;
        self.client(&endpoint.client)?.location(loc)
    }
}

/// Who published a patch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// Microsoft (Patch Tuesday releases).
    Microsoft,
    /// Any other vendor: third-party software.
    ThirdParty(String),
}

impl Vendor {
    /// Parses a vendor name; `microsoft` in any case is Microsoft.
    pub fn parse(name: &str) -> Self {
        if name.trim().eq_ignore_ascii_case("microsoft") {
            Vendor::Microsoft
        } else {
            Vendor::ThirdParty(name.trim().to_owned())
        }
    }

    /// The vendor's name.
    pub fn as_str(&self) -> &str {
        match self {
            Vendor::Microsoft => "microsoft",
            Vendor::ThirdParty(n) => n,
        }
    }
}

impl Serialize for Vendor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Update classification, as the catalog gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    /// Security update (carries a severity).
    Security,
    /// Critical non-security update.
    Critical,
    /// Ordinary update.
    Update,
    /// Hardware driver.
    Driver,
    /// Feature update.
    Feature,
    /// Definition update.
    Definition,
    /// Optional / preview update.
    Optional,
}

impl Classification {
    /// The classification's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Security => "security",
            Classification::Critical => "critical",
            Classification::Update => "update",
            Classification::Driver => "driver",
            Classification::Feature => "feature",
            Classification::Definition => "definition",
            Classification::Optional => "optional",
        }
    }
}

/// Security severity (Microsoft's rating scale).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Critical.
    Critical,
    /// Important.
    Important,
    /// Moderate.
    Moderate,
    /// Low.
    Low,
}

impl Severity {
    /// The severity's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Important => "important",
            Severity::Moderate => "moderate",
            Severity::Low => "low",
        }
    }
}

/// A patch of the month's catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct Patch {
    /// KB or vendor id.
    pub id: PatchId,
    /// Title.
    pub title: String,
    /// Publisher.
    pub vendor: Vendor,
    /// Classification.
    pub classification: Classification,
    /// Severity (security updates).
    pub severity: Option<Severity>,
    /// When the vendor released it, if known.
    pub released: Option<DateTime<Utc>>,
    /// CVEs it fixes.
    pub cves: Vec<String>,
    /// The products it applies to, as the vendor names them (empty when not given).
    pub products: Vec<String>,
}

/// The month's patches.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Patches in catalog order, ids unique.
    pub patches: Vec<Patch>,
}
