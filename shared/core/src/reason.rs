//! Stable reason codes: the "why" of every decision, each with a sentence for people.

macro_rules! reasons {
    ($($name:ident => $code:literal, $text:literal;)*) => {
        $(
            #[doc = $text]
            pub const $name: &str = $code;
        )*

        /// Every reason code with its explanation, in declaration order.
        pub const ALL: &[(&str, &str)] = &[$(($code, $text),)*];

        /// The sentence explaining a reason code.
        pub fn explain(code: &str) -> Option<&'static str> {
            match code { $($code => Some($text),)* _ => None }
        }
    };
}

reasons! {
    RMM_COMMANDS => "rmm_commands", "the plan's installs, reboots, reminders and forced reboots were turned into RMM commands";
    INVENTORY_ACCEPTED => "inventory_accepted", "the record was read from the inventory and passed validation";
    APPLICABILITY_REPORTED => "applicability_reported", "the RMM's patch scan lists the updates this endpoint needs; approved patches apply where the scan lists them";
    APPLICABILITY_FROM_PRODUCTS => "applicability_from_products", "no patch scan: approved patches naming an operating system apply only where it matches the endpoint's OS";
    APPLICABILITY_ASSUMED => "applicability_assumed", "no patch scan and nothing to match: every approved patch is assumed to apply";
    UP_TO_DATE => "up_to_date", "the RMM's patch scan shows no approved patch missing: nothing is sent to this endpoint this cycle";
    ENDPOINT_PATCHING_DISABLED => "endpoint_patching_disabled", "patching is disabled on the agent itself";
    LOCATION_PATCHING_DISABLED => "location_patching_disabled", "patching is disabled for the endpoint's whole location";
    NOT_DISABLED => "not_disabled", "neither the agent nor its location has patching disabled";
    CLIENT_EXCLUSION => "client_exclusion", "a standing exclusion was agreed with the client; changing it needs the client's signed approval";
    NOT_EXCLUDED => "not_excluded", "no standing client exclusion";
    DO_NOT_PATCH_POLICY => "do_not_patch_policy", "its patch policy group is Do Not Patch; changing it needs approval";
    PATCH_POLICY_ALLOWS => "patch_policy_allows", "its patch policy group allows patching";
    KIND_FROM_INVENTORY => "kind_from_inventory", "the inventory classifies it";
    POLICY_GROUP_FROM_INVENTORY => "policy_group_from_inventory", "the inventory assigns the policy group";
    POLICY_GROUP_DEFAULT => "policy_group_default", "no policy group in the inventory: the default for its kind applies";
    CRITICALITY_FROM_ROLE => "criticality_from_role", "the server's role group sets its criticality";
    CRITICALITY_OVERRIDE => "criticality_override", "the inventory's explicit criticality overrides the role";
    CRITICALITY_DEFAULT => "criticality_default", "no role and no criticality: P2 by default";
    TRACK_FROM_INVENTORY => "track_from_inventory", "the inventory assigns the track";
    TRACK_DEFAULT => "track_default", "no track in the inventory: regular (overnight)";
    RING_FROM_INVENTORY => "ring_from_inventory", "the inventory assigns the ring";
    RING_DEFAULT => "ring_default", "no ring in the inventory: production";
    SERVER_WINDOW => "server_window", "servers install and reboot in the unattended server window";
    WORKSTATION_REGULAR_WINDOW => "workstation_regular_window", "regular workstations patch and reboot overnight";
    WORKSTATION_DAYTIME_WINDOW => "workstation_daytime_window", "daytime workstations patch during business hours";
    CRITICAL_SERVER_MANUAL_APPROVAL => "critical_server_manual_approval", "the server is flagged critical: an engineer must approve before anything installs";
    CRITICAL_SERVER_BY_CRITICALITY => "critical_server_by_criticality", "the server is P1 (by its role or its explicit criticality), so critical: an engineer must approve before anything installs";
    NOT_CRITICAL_SERVER => "not_critical_server", "neither P1 nor flagged critical: installs follow the policy group";
    SINGLE_SERVER => "single_server", "the client has one in-scope server: no test tier, straight to its production window";
    PILOT_BY_RING => "pilot_by_ring", "the server is in the pilot or test ring, so it goes first";
    PILOT_BY_LOWEST_CRITICALITY => "pilot_by_lowest_criticality", "no server of the client is in a pilot ring, so the least critical one goes first";
    PRODUCTION_AFTER_PILOT => "production_after_pilot", "another server of the client pilots; this one waits for the pilot's soak";
    WORKSTATION_PILOT_RING => "workstation_pilot_ring", "pilot and test ring workstations take the first window after the release";
    WORKSTATION_PRODUCTION_RING => "workstation_production_ring", "production ring workstations wait for the pilot soak";
    FIRST_WINDOW_AFTER_RELEASE => "first_window_after_release", "its first window that starts at or after the release";
    SOAK_AFTER_PILOT_WINDOWS => "soak_after_pilot_windows", "its first window that starts at or after the last pilot window's end plus the soak";
    SOAK_AFTER_RELEASE => "soak_after_release", "no pilot to wait for: its first window that starts at or after the release plus the soak";
    UNATTENDED_REBOOT_APPROVED => "unattended_reboot_approved", "Auto Install Auto Reboot with unattended reboot approved: automatic reboot in the server window";
    UNATTENDED_REBOOT_NOT_APPROVED => "unattended_reboot_not_approved", "unattended reboot is not approved: a technician schedules and confirms the reboot";
    POLICY_MANUAL_REBOOT => "policy_manual_reboot", "its policy group reboots manually: a technician schedules and confirms the reboot";
    MANUAL_INSTALL_POLICY => "manual_install_policy", "Manually Patch and Reboot: a technician installs through the RMM";
    DAYTIME_USER_REBOOT => "daytime_user_reboot", "daytime track: the user reboots, reminded daily, forced after the grace period";
    OVERNIGHT_AUTO_REBOOT => "overnight_auto_reboot", "regular track: automatic reboot in the overnight window";
    POSTURE_REQUIRED => "posture_required", "the workstation must stay awake (no sleep or hibernate) through its daytime window";
    POSTURE_AWAKE => "posture_awake", "the workstation was awake in its window";
    POSTURE_ASLEEP => "posture_asleep", "the workstation was asleep or hibernating in its window: not patched";
    POSTURE_UNKNOWN => "posture_unknown", "the RMM could not tell the workstation's power state";
    DRIVER_DEFAULT_DECLINE => "driver_default_decline", "driver updates are declined by default; an engineer must approve one explicitly";
    MICROSOFT_SECURITY_AUTO_APPROVE => "microsoft_security_auto_approve", "a Microsoft security update rated Critical or Important is approved on Patch Tuesday without review";
    THIRD_PARTY_REVIEW => "third_party_review", "third-party software needs an engineer's review";
    NON_SECURITY_REVIEW => "non_security_review", "a non-security or optional update needs an engineer's review";
    SEVERITY_BELOW_AUTO_APPROVAL => "severity_below_auto_approval", "a Microsoft security update below the auto-approved severities needs review";
    SEVERITY_MISSING => "severity_missing", "a security update with no severity rating needs review";
    ENGINEER_APPROVED => "engineer_approved", "an engineer reviewed and approved it";
    ENGINEER_DECLINED => "engineer_declined", "an engineer reviewed and declined it";
    REVIEW_OVERDUE => "review_overdue", "the review hold passed its due date with no decision";
    SOAK_INCOMPLETE => "soak_incomplete", "the pilot soak has not yet elapsed";
    PILOT_HEALTHY => "pilot_healthy", "the soak passed and every pilot endpoint is healthy";
    PILOT_UNHEALTHY => "pilot_unhealthy", "a pilot endpoint failed: production is held until the root cause is resolved";
    PILOT_INCOMPLETE => "pilot_incomplete", "some pilot endpoints have not reported a validated outcome yet";
    PRODUCTION_BLOCKED => "production_blocked", "a critical tier failed: production is blocked";
    ALL_CHECKS_PASSED => "all_checks_passed", "every validation check that applies passed";
    CHECKS_FAILED => "checks_failed", "one or more validation checks failed";
    CHECKS_MISSING => "checks_missing", "one or more validation checks that apply have no result";
    PRIORITY_FROM_CRITICALITY => "priority_from_criticality", "the server's criticality sets the ticket priority";
    WORKSTATION_DEFAULT_PRIORITY => "workstation_default_priority", "a workstation failure is P2 unless the client impact is higher";
    CLIENT_IMPACT_HIGHER => "client_impact_higher", "the reported client impact raises the priority";
    AFTER_HOURS_SERVER_PAGE => "after_hours_server_page", "a server-class failure outside business hours pages the on-call engineer";
    BUSINESS_HOURS_NO_PAGE => "business_hours_no_page", "inside business hours: the ticket reaches the support queue, no page";
    WORKSTATION_NO_PAGE => "workstation_no_page", "workstation failures notify the support queue, not on-call";
    ROOT_CAUSE_REQUIRED => "root_cause_required", "no retry until a root cause is documented";
    RETRY_ALLOWED => "retry_allowed", "a root cause is documented: the retry may run in the next retry window";
    PILOT_SERVER_MISSING => "pilot_server_missing", "warning: a client with two or more in-scope servers has none in the pilot or test ring, so its least critical server pilots instead";
    PILOT_TRACK_MISSING => "pilot_track_missing", "warning: a workstation track with in-scope workstations has none in the pilot or test ring, so the pilot does not represent it";
    PILOT_CLIENT_WORKSTATIONS_MISSING => "pilot_client_workstations_missing", "warning: a client with in-scope workstations has none in the pilot or test ring, so the pilot does not represent it";
    UNSIGNED_EXCLUSION => "unsigned_exclusion", "warning (or an error by policy or --strict): an exclusion or Do Not Patch endpoint has no signed approval on record (exclusion_ref)";
    CLOSURE_COMPLETE => "closure_complete", "every closure requirement is met";
    CLOSURE_INCOMPLETE => "closure_incomplete", "a closure requirement is missing";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_code_is_unique_snake_case_and_explained() {
        let mut codes: Vec<&str> = ALL.iter().map(|(c, _)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ALL.len());
        for (code, text) in ALL {
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
            assert_eq!(explain(code), Some(*text));
            assert!(!text.is_empty());
        }
    }
}
