//! Builders for unit tests.

use chrono_tz::Tz;

use crate::ids::{ClientId, EndpointId};
use crate::model::{
    Criticality, CriticalitySource, Endpoint, Profile, Provenance, Ring, ServerPolicyGroup,
    ServerProfile, Track, WorkstationPolicyGroup, WorkstationProfile,
};

pub(crate) fn server(id: &str) -> Endpoint {
    Endpoint {
        id: EndpointId::parse(id).unwrap(),
        client: ClientId::parse("acme").unwrap(),
        location: None,
        hostname: id.to_uppercase(),
        tz: Tz::America__New_York,
        patching_disabled: false,
        client_excluded: false,
        exclusion_ref: None,
        critical: false,
        ring: Ring::Production,
        profile: Profile::Server(ServerProfile {
            policy_group: ServerPolicyGroup::AutoInstallManualReboot,
            role: None,
            criticality: Criticality::P2,
            criticality_source: CriticalitySource::Default,
            unattended_reboot_approved: false,
        }),
        provenance: Provenance::default(),
        applicable: None,
        os: None,
        impact: None,
    }
}

pub(crate) fn workstation(id: &str) -> Endpoint {
    Endpoint {
        profile: Profile::Workstation(WorkstationProfile {
            policy_group: WorkstationPolicyGroup::Standard,
            track: Track::Regular,
        }),
        ..server(id)
    }
}

pub(crate) fn with_tz(mut e: Endpoint, tz: Tz) -> Endpoint {
    e.tz = tz;
    e
}

pub(crate) fn daytime(id: &str) -> Endpoint {
    let mut e = workstation(id);
    e.profile = Profile::Workstation(WorkstationProfile {
        policy_group: WorkstationPolicyGroup::Standard,
        track: Track::Daytime,
    });
    e
}
