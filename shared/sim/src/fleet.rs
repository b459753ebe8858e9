//! A seeded fleet generator: clients across the world's time zones (half-hour and 45-minute
//! offsets and 30-minute DST included), sites, servers with roles and policy groups, workstations
//! on both tracks and all rings, and the flags that take endpoints out of scope. The same seed
//! always gives the same fleet.

use patchflow_core::contract::{
    role_criticality, ClientDoc, EndpointDoc, InventoryDoc, LocationDoc, PolicyGroupDoc,
};
use patchflow_core::model::{Criticality, EndpointKind, Ring, ServerRole, Track};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetSpec {
    /// Number of endpoints.
    pub endpoints: usize,
    /// Number of clients (at most the number of endpoints, at least one).
    pub clients: usize,
    /// Seed: the same spec always gives the same fleet.
    pub seed: u64,
}

/// Client zones, weighted towards North America and Europe like a typical MSP book, with the
/// awkward ones present: half-hour (St. John's, Kolkata, Adelaide), 45-minute (Kathmandu, Eucla,
/// Chatham), 30-minute DST (Lord Howe), midnight transitions (Santiago) and negative DST (Dublin).
const ZONES: &[(&str, u32)] = &[
    ("America/New_York", 18),
    ("America/Chicago", 12),
    ("America/Denver", 5),
    ("America/Phoenix", 3),
    ("America/Los_Angeles", 10),
    ("America/Halifax", 2),
    ("America/St_Johns", 2),
    ("America/Sao_Paulo", 2),
    ("America/Santiago", 2),
    ("Europe/London", 6),
    ("Europe/Dublin", 3),
    ("Europe/Berlin", 5),
    ("Europe/Paris", 3),
    ("Africa/Johannesburg", 2),
    ("Asia/Dubai", 2),
    ("Asia/Kolkata", 3),
    ("Asia/Kathmandu", 1),
    ("Asia/Singapore", 2),
    ("Asia/Tokyo", 2),
    ("Australia/Sydney", 4),
    ("Australia/Adelaide", 2),
    ("Australia/Eucla", 1),
    ("Australia/Lord_Howe", 1),
    ("Pacific/Auckland", 2),
    ("Pacific/Chatham", 1),
];

const NAMES: &[&str] = &[
    "Contoso",
    "Fabrikam",
    "Northwind",
    "Tailspin",
    "Woodgrove",
    "Litware",
    "Proseware",
    "Adatum",
    "Lucerne",
    "Wingtip",
    "Alpine Ski",
    "Coho",
    "Fourth Coffee",
    "Humongous",
    "Margie's",
    "Trey",
    "Wide World",
    "Blue Yonder",
    "City Power",
    "Relecloud",
    "Southridge",
    "Datum",
    "Bellows",
    "Lamna",
    "Munson's",
    "VanArsdel",
    "Woodland",
    "Nod",
    "Consolidated",
    "Graphic Design",
];

const TRADES: &[&str] = &[
    "Dental",
    "Legal",
    "Logistics",
    "Clinic",
    "Manufacturing",
    "Accounting",
    "Realty",
    "Engineering",
    "Veterinary",
    "Architects",
    "Insurance",
    "Credit Union",
];

const ROLES: &[(ServerRole, u32)] = &[
    (ServerRole::DomainController, 16),
    (ServerRole::Sql, 9),
    (ServerRole::App, 10),
    (ServerRole::File, 14),
    (ServerRole::Web, 7),
    (ServerRole::Utility, 7),
    (ServerRole::Infrastructure, 7),
    (ServerRole::Backup, 9),
    (ServerRole::Dr, 4),
    (ServerRole::VirtualizationHost, 7),
    (ServerRole::Exchange, 3),
    (ServerRole::Smtp, 3),
    (ServerRole::Management, 4),
];

const SERVER_GROUPS: &[(PolicyGroupDoc, u32)] = &[
    (PolicyGroupDoc::AutoInstallManualReboot, 44),
    (PolicyGroupDoc::AutoInstallAutoReboot, 36),
    (PolicyGroupDoc::ManualPatchAndReboot, 15),
    (PolicyGroupDoc::DoNotPatch, 5),
];

fn weighted<'a, T>(rng: &mut ChaCha8Rng, items: &'a [(T, u32)]) -> &'a T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut pick = rng.gen_range(0..total);
    for (item, w) in items {
        if pick < *w {
            return item;
        }
        pick -= w;
    }
    &items[items.len() - 1].0
}

fn slug(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' => Some(c),
            ' ' | '-' => Some('-'),
            _ => None,
        })
        .collect()
}

fn code(name: &str) -> String {
    let letters: String = name
        .chars()
        .filter(|c| c.is_ascii_alphabetic())
        .take(3)
        .collect();
    letters.to_uppercase()
}

fn role_name(role: ServerRole) -> &'static str {
    match role {
        ServerRole::DomainController => "DC",
        ServerRole::Sql => "SQL",
        ServerRole::App => "APP",
        ServerRole::File => "FS",
        ServerRole::Web => "WEB",
        ServerRole::Utility => "UTIL",
        ServerRole::Infrastructure => "INFRA",
        ServerRole::Backup => "BKP",
        ServerRole::Dr => "DR",
        ServerRole::VirtualizationHost => "HV",
        ServerRole::Exchange => "EXCH",
        ServerRole::Smtp => "SMTP",
        ServerRole::Management => "MGMT",
    }
}

/// Generates a fleet in the inventory contract's format.
pub fn generate(spec: FleetSpec) -> InventoryDoc {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let n_clients = spec.clients.clamp(1, spec.endpoints.max(1));

    let mut clients = Vec::with_capacity(n_clients);
    let mut codes = Vec::with_capacity(n_clients);
    for i in 0..n_clients {
        let name = format!(
            "{} {}",
            NAMES[(i + rng.gen_range(0..NAMES.len())) % NAMES.len()],
            TRADES.choose(&mut rng).copied().unwrap_or("Group")
        );
        let id = format!("{}-{:03}", slug(&name), i + 1);
        codes.push(format!("{}{}", code(&name), i + 1));
        let n_locations = rng.gen_range(1..=3);
        let locations = (0..n_locations)
            .map(|l| LocationDoc {
                id: if l == 0 {
                    "hq".to_owned()
                } else {
                    format!("branch-{l}")
                },
                patching_disabled: (l > 0 && rng.gen_bool(0.06)).then_some(true),
            })
            .collect();
        clients.push(ClientDoc {
            id,
            name: Some(name),
            timezone: Some((*weighted(&mut rng, ZONES)).to_owned()),
            locations: Some(locations),
            impact: None,
        });
    }

    // A skewed book: a few big clients, many small ones; every client gets at least one endpoint.
    let weights: Vec<f64> = (0..n_clients)
        .map(|_| rng.gen_range(1.0f64..12.0).powi(2))
        .collect();
    let total: f64 = weights.iter().sum();
    let spare = spec.endpoints.saturating_sub(n_clients);
    let mut counts: Vec<usize> = weights
        .iter()
        .map(|w| 1 + (w / total * spare as f64) as usize)
        .collect();
    let mut assigned: usize = counts.iter().sum();
    let mut k = 0;
    while assigned < spec.endpoints {
        counts[k % n_clients] += 1;
        assigned += 1;
        k += 1;
    }
    while assigned > spec.endpoints {
        if let Some(c) = counts.iter_mut().filter(|c| **c > 1).max_by_key(|c| **c) {
            *c -= 1;
        }
        assigned -= 1;
    }

    let mut endpoints = Vec::with_capacity(spec.endpoints);
    for (ci, client) in clients.iter().enumerate() {
        let n = counts[ci];
        let locations = client.locations.as_deref().unwrap_or_default();
        // Small shops often have one server; larger ones about one in seven endpoints.
        let servers = if n == 1 {
            0
        } else {
            ((n as f64 / 7.0).ceil() as usize).clamp(1, n - 1)
        };
        let mut ws_n = 0;
        let mut role_n = std::collections::HashMap::new();
        for j in 0..n {
            let kind = if j < servers {
                EndpointKind::Server
            } else {
                EndpointKind::Workstation
            };
            let location = locations.choose(&mut rng).map(|l| l.id.clone());
            let excluded = rng.gen_bool(0.02);
            let mut doc = EndpointDoc {
                id: format!("{}-{:05}", client.id, j + 1),
                client: client.id.clone(),
                location,
                hostname: None,
                kind,
                timezone: None,
                patching_disabled: rng.gen_bool(0.02).then_some(true),
                client_excluded: excluded.then_some(true),
                exclusion_ref: excluded
                    .then(|| format!("{}-SIGNED-{}", codes[ci], rng.gen_range(2023..=2026))),
                policy_group: None,
                role: None,
                criticality: None,
                ring: None,
                track: None,
                unattended_reboot_approved: None,
                critical: None,
                applicable: None,
                os: None,
                needed: None,
                impact: None,
            };
            match kind {
                EndpointKind::Server => {
                    let role = *weighted(&mut rng, ROLES);
                    let nth = role_n.entry(role).or_insert(0);
                    *nth += 1;
                    doc.hostname = Some(format!("{}-{}{:02}", codes[ci], role_name(role), nth));
                    doc.role = Some(role);
                    let group = *weighted(&mut rng, SERVER_GROUPS);
                    doc.policy_group = Some(group);
                    if group == PolicyGroupDoc::DoNotPatch {
                        // Do Not Patch rests on the client's sign-off, as an exclusion does.
                        doc.exclusion_ref = Some(format!("{}-DNP-S{:02}", codes[ci], j + 1));
                    }
                    if group == PolicyGroupDoc::AutoInstallAutoReboot {
                        doc.unattended_reboot_approved = Some(rng.gen_bool(0.75));
                    }
                    if rng.gen_bool(0.05) {
                        doc.criticality = Some(
                            *[Criticality::P1, Criticality::P2, Criticality::P3]
                                .choose(&mut rng)
                                .unwrap_or(&Criticality::P2),
                        );
                    }
                    if rng.gen_bool(0.12) {
                        doc.ring = Some(Ring::Pilot);
                    }
                    if rng.gen_bool(0.05) {
                        doc.critical = Some(true);
                    }
                }
                EndpointKind::Workstation => {
                    ws_n += 1;
                    doc.hostname = Some(format!("{}-WS{:04}", codes[ci], ws_n));
                    doc.track = Some(if rng.gen_bool(0.3) {
                        Track::Daytime
                    } else {
                        Track::Regular
                    });
                    let r: f64 = rng.gen();
                    doc.ring = Some(if r < 0.08 {
                        Ring::Pilot
                    } else if r < 0.12 {
                        Ring::Test
                    } else {
                        Ring::Production
                    });
                    if rng.gen_bool(0.03) {
                        doc.policy_group = Some(PolicyGroupDoc::DoNotPatch);
                        // Do Not Patch rests on the client's sign-off, as an exclusion does.
                        doc.exclusion_ref = Some(format!("{}-DNP-{:04}", codes[ci], ws_n));
                    }
                    // Remote staff keep their laptops in their own zone.
                    if rng.gen_bool(0.08) {
                        doc.timezone = Some((*weighted(&mut rng, ZONES)).to_owned());
                    }
                }
            }
            endpoints.push(doc);
        }
        let first = endpoints.len() - n;
        represent_in_pilot(client, &mut endpoints[first..]);
    }
    InventoryDoc { clients, endpoints }
}

/// "Pilot ring includes representative endpoints from all tracks and clients": where a client's
/// in-scope servers (two or more) or the in-scope workstations of one of its tracks have no
/// pilot, the first of them joins the pilot ring (for servers, the first that is not P1 where
/// there is one, as an MSP would pilot on a less critical box). Takes nothing from the random
/// stream, so the rest of the fleet is as it was.
fn represent_in_pilot(client: &ClientDoc, endpoints: &mut [EndpointDoc]) {
    let disabled: std::collections::HashSet<&str> = client
        .locations
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|l| l.patching_disabled == Some(true))
        .map(|l| l.id.as_str())
        .collect();
    let in_scope = |e: &EndpointDoc| {
        e.patching_disabled != Some(true)
            && e.client_excluded != Some(true)
            && e.policy_group != Some(PolicyGroupDoc::DoNotPatch)
            && !e.location.as_deref().is_some_and(|l| disabled.contains(l))
    };
    let pilot = |e: &EndpointDoc| matches!(e.ring, Some(Ring::Pilot | Ring::Test));
    let servers: Vec<usize> = (0..endpoints.len())
        .filter(|&i| endpoints[i].kind == EndpointKind::Server && in_scope(&endpoints[i]))
        .collect();
    if servers.len() >= 2 && !servers.iter().any(|&i| pilot(&endpoints[i])) {
        // The least critical (P3 before P2 before P1, a flagged one last), the first of equals.
        let rank = |e: &EndpointDoc| {
            let c = e
                .criticality
                .or(e.role.map(role_criticality))
                .unwrap_or(Criticality::P2);
            (e.critical != Some(true), c)
        };
        let mut chosen = servers[0];
        for &i in &servers[1..] {
            if rank(&endpoints[i]) > rank(&endpoints[chosen]) {
                chosen = i;
            }
        }
        endpoints[chosen].ring = Some(Ring::Pilot);
    }
    for track in [Track::Regular, Track::Daytime] {
        let members: Vec<usize> = (0..endpoints.len())
            .filter(|&i| {
                let e = &endpoints[i];
                e.kind == EndpointKind::Workstation
                    && e.track.unwrap_or(Track::Regular) == track
                    && in_scope(e)
            })
            .collect();
        if let Some(&first) = members.first() {
            if !members.iter().any(|&i| pilot(&endpoints[i])) {
                endpoints[first].ring = Some(Ring::Pilot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchflow_core::contract::inventory_from_doc;

    #[test]
    fn the_same_seed_gives_the_same_fleet_and_another_seed_another() {
        let spec = FleetSpec {
            endpoints: 300,
            clients: 7,
            seed: 42,
        };
        let a = serde_json::to_string(&generate(spec)).unwrap();
        let b = serde_json::to_string(&generate(spec)).unwrap();
        let c = serde_json::to_string(&generate(FleetSpec { seed: 43, ..spec })).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn a_generated_fleet_has_the_requested_size_and_is_valid_input() {
        for (endpoints, clients) in [(1, 1), (5, 9), (200, 5), (2_000, 40)] {
            let doc = generate(FleetSpec {
                endpoints,
                clients,
                seed: 7,
            });
            assert_eq!(doc.endpoints.len(), endpoints);
            assert_eq!(doc.clients.len(), clients.min(endpoints));
            let inv = inventory_from_doc("generated", doc).unwrap();
            assert_eq!(inv.endpoints().len(), endpoints);
        }
    }

    #[test]
    fn a_generated_fleet_has_no_warnings_pilots_everywhere_and_signed_exclusions() {
        for (endpoints, clients, seed) in [(200, 5, 1), (2_000, 40, 7), (5_000, 60, 1), (30, 9, 3)]
        {
            let doc = generate(FleetSpec {
                endpoints,
                clients,
                seed,
            });
            let inv = inventory_from_doc("generated", doc).unwrap();
            let w = patchflow_core::rules::representation::inventory_warnings(&inv);
            assert!(w.is_empty(), "{endpoints}/{clients}/{seed}: {w:?}");
        }
    }

    #[test]
    fn a_generated_fleet_mixes_everything_the_rules_distinguish() {
        let doc = generate(FleetSpec {
            endpoints: 5_000,
            clients: 60,
            seed: 1,
        });
        let has = |f: &dyn Fn(&EndpointDoc) -> bool| doc.endpoints.iter().any(f);
        assert!(has(&|e| e.kind == EndpointKind::Server));
        assert!(has(&|e| e.track == Some(Track::Daytime)));
        assert!(has(&|e| e.ring == Some(Ring::Test)));
        assert!(has(
            &|e| e.client_excluded == Some(true) && e.exclusion_ref.is_some()
        ));
        assert!(has(&|e| e.patching_disabled == Some(true)));
        assert!(has(&|e| e.policy_group == Some(PolicyGroupDoc::DoNotPatch)));
        assert!(has(&|e| e.unattended_reboot_approved == Some(true)));
        let zones: std::collections::HashSet<_> = doc
            .clients
            .iter()
            .filter_map(|c| c.timezone.as_deref())
            .collect();
        for z in [
            "Asia/Kathmandu",
            "America/St_Johns",
            "Australia/Lord_Howe",
            "Pacific/Chatham",
        ] {
            assert!(zones.contains(z), "{z} missing from {zones:?}");
        }
    }
}
