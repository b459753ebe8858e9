//! The Automate client against a local server speaking Automate's documented shapes.

use chrono::TimeZone;
use patchflow_core::ports::rmm::RmmEvent;
use patchflow_core::schedule::Window;
use serde_json::{json, Value};
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::*;
use crate::secrets::Secret;

fn fast() -> HttpClient {
    HttpClient::new(SYSTEM, Timeouts::default(), RetryPolicy::fast()).unwrap()
}

fn creds() -> AutomateCredentials {
    AutomateCredentials {
        username: "patchflow-api".into(),
        password: Secret::new("pa55"),
        client_id: "cid-123".into(),
        two_factor_passcode: None,
    }
}

fn config(server: &MockServer) -> AutomateConfig {
    let text = format!(
        r#"{{
        "base_url": "{}",
        "page_size": 2,
        "default_timezone": "America/Chicago",
        "clients": {{ "5": {{ "id": "acme", "timezone": "America/New_York",
                               "disabled_locations": ["Warehouse"] }} }},
        "groups": [
            {{ "name": "Patching - Pilot", "ring": "pilot" }},
            {{ "name": "Servers - DC", "role": "domain_controller",
               "policy_group": "auto_install_auto_reboot", "unattended_reboot_approved": true }}
        ],
        "scripts": {{ "install": 901, "reboot": 902, "reminder": 903, "forced_reboot": 904,
                      "technician_install": 905 }},
        "monitors": {{ "DNS Service": "dns_dhcp", "LOB App Ping": "lob_apps" }}
    }}"#,
        server.uri()
    );
    serde_json::from_str(&text).unwrap()
}

fn token_body(token: &str) -> Value {
    json!({
        "AccessToken": token, "TokenType": "Bearer",
        "ExpirationDate": "2099-01-01T00:00:00", "IsTwoFactorRequired": false
    })
}

async fn mount_token(server: &MockServer, token: &str, times: Option<u64>) {
    let m = Mock::given(method("POST"))
        .and(path("/cwa/api/v1/apitoken"))
        .and(header("ClientId", "cid-123"))
        .and(body_partial_json(
            json!({"UserName": "patchflow-api", "Password": "pa55"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body(token)));
    match times {
        Some(n) => m.up_to_n_times(n).mount(server).await,
        None => m.mount(server).await,
    }
}

fn computer(id: u64, name: &str, client: (u64, &str), loc: (u64, &str), kind: &str) -> Value {
    json!({
        "Id": id, "ComputerName": name,
        "Client": { "Id": client.0, "Name": client.1 },
        "Location": { "Id": loc.0, "Name": loc.1 },
        "Type": kind, "OperatingSystemName": "Microsoft Windows Server 2022 Standard x64",
        "Status": "Online", "LastStartup": "2026-12-01T03:00:00",
        "WindowsUpdateDate": "2026-11-12T04:00:00", "IsRebootNeeded": false,
        "RemoteAgentLastContact": "2026-12-01T03:05:00"
    })
}

async fn mount_page(server: &MockServer, path_: &str, page: u32, rows: Value) {
    Mock::given(method("GET"))
        .and(path(path_))
        .and(query_param("page", page.to_string()))
        .and(query_param("pageSize", "2"))
        .and(header("Authorization", "Bearer t1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(rows))
        .mount(server)
        .await;
}

async fn mount_groups(server: &MockServer) {
    mount_page(
        server,
        "/cwa/api/v1/Groups",
        1,
        json!([{"Id": 10, "Name": "Patching - Pilot"}, {"Id": "11", "Name": "Servers - DC"}]),
    )
    .await;
    mount_page(server, "/cwa/api/v1/Groups", 2, json!([])).await;
    for (group, rows) in [
        (
            10,
            json!([{"Id": "1", "GroupId": "10", "ComputerId": "101"}]),
        ),
        (
            11,
            json!([{"Id": "2", "GroupId": "11", "ComputerId": "101"},
                   {"Id": "3", "GroupId": "11", "ComputerId": "301"}]),
        ),
    ] {
        Mock::given(method("GET"))
            .and(path("/cwa/api/v1/GroupComputers"))
            .and(query_param("page", "1"))
            .and(query_param("condition", format!("GroupId = {group}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(rows))
            .mount(server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/GroupComputers"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(server)
        .await;
}

fn requests_to(reqs: &[Request], p: &str) -> usize {
    reqs.iter().filter(|r| r.url.path() == p).count()
}

/// Every computer has a patch inventory and needs nothing (tests of the mapping).
async fn mount_up_to_date(server: &MockServer) {
    Mock::given(method("GET"))
        .and(wiremock::matchers::path_regex(
            r"^/cwa/api/v1/Computers/\d+/PatchingStats$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"NoPatchInventory": false})))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path_regex(
            r"^/cwa/api/v1/Computers/\d+/MicrosoftUpdates$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(server)
        .await;
}

mod changed;
mod governance;
mod health;
mod pull;

#[tokio::test]
async fn the_inventory_is_paged_to_the_end_and_mapped_client_by_client() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_page(
        &server,
        "/cwa/api/v1/Computers",
        1,
        json!([
            computer(101, "ACME-DC01", (5, "Acme Corp"), (1, "HQ"), "Server"),
            computer(
                102,
                "ACME-WS01",
                (5, "Acme Corp"),
                (2, "Warehouse"),
                "Workstation"
            ),
        ]),
    )
    .await;
    mount_page(
        &server,
        "/cwa/api/v1/Computers",
        2,
        json!([
            computer(
                201,
                "BETA-WS01",
                (7, "Beta & Sons, LLC"),
                (3, "Main"),
                "Workstation"
            ),
            computer(
                202,
                "BETA-WS02",
                (7, "Beta & Sons, LLC"),
                (3, "Main"),
                "Workstation"
            ),
        ]),
    )
    .await;
    mount_page(
        &server,
        "/cwa/api/v1/Computers",
        3,
        json!([computer(
            301,
            "GAMMA-SQL",
            (9, "Gamma"),
            (4, "DC"),
            "Server"
        )]),
    )
    .await;
    mount_groups(&server).await;
    mount_up_to_date(&server).await;

    let mut cfg = config(&server);
    cfg.clients.insert(
        "9".into(),
        ClientMapping {
            id: Some("gamma".into()),
            timezone: Some("Europe/London".into()),
            disabled_locations: vec![],
            impact: Some(patchflow_core::model::Impact::High),
        },
    );
    // An endpoint's impact comes from a group rule.
    cfg.groups[1].impact = Some(patchflow_core::model::Impact::High);
    let a = Automate::with_http(cfg, creds(), fast()).unwrap();
    let pulled = a.pull_inventory().await.unwrap();
    assert!(pulled.skipped.is_empty(), "{:?}", pulled.skipped);
    let inv = &pulled.inventory;
    let ids: Vec<&str> = inv.clients.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["acme", "beta-sons-llc", "gamma"]);
    assert_eq!(inv.clients[0].timezone.as_deref(), Some("America/New_York"));
    assert_eq!(inv.clients[1].timezone.as_deref(), Some("America/Chicago"));
    // A client's impact comes from its mapping (Automate has no such field).
    assert_eq!(inv.clients[0].impact, None);
    assert_eq!(
        inv.clients[2].impact,
        Some(patchflow_core::model::Impact::High)
    );
    let locs = inv.clients[0].locations.as_ref().unwrap();
    assert_eq!(locs.len(), 2);
    let warehouse = locs.iter().find(|l| l.id == "warehouse").unwrap();
    assert_eq!(warehouse.patching_disabled, Some(true));

    assert_eq!(inv.endpoints.len(), 5);
    let dc = inv.endpoints.iter().find(|e| e.id == "101").unwrap();
    assert_eq!(dc.hostname.as_deref(), Some("ACME-DC01"));
    assert_eq!(dc.kind, EndpointKind::Server);
    assert_eq!(dc.ring, Some(Ring::Pilot));
    assert_eq!(dc.role, Some(ServerRole::DomainController));
    assert_eq!(dc.unattended_reboot_approved, Some(true));
    assert_eq!(dc.impact, Some(patchflow_core::model::Impact::High));
    let ws = inv.endpoints.iter().find(|e| e.id == "102").unwrap();
    assert_eq!(ws.kind, EndpointKind::Workstation);
    assert_eq!(ws.location.as_deref(), Some("warehouse"));
    assert_eq!(ws.ring, None);
    assert_eq!(ws.impact, None, "not in the group");
    assert_eq!(
        pulled.status["101"].last_windows_update,
        Some(Utc.with_ymd_and_hms(2026, 11, 12, 4, 0, 0).unwrap())
    );
    // The mapped inventory is valid contract input.
    let text = serde_json::to_string(inv).unwrap();
    patchflow_core::contract::parse_inventory("pulled", &text).unwrap();

    let reqs = server.received_requests().await.unwrap();
    assert_eq!(requests_to(&reqs, "/cwa/api/v1/Computers"), 3);
    assert_eq!(requests_to(&reqs, "/cwa/api/v1/apitoken"), 1);
    for r in reqs
        .iter()
        .filter(|r| r.url.path() != "/cwa/api/v1/apitoken")
    {
        assert_eq!(r.headers.get("ClientId").unwrap(), "cid-123");
    }
}

#[tokio::test]
async fn a_client_that_cannot_be_mapped_is_left_out_whole_and_named() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_page(
        &server,
        "/cwa/api/v1/Computers",
        1,
        json!([
            computer(101, "ACME-DC01", (5, "Acme Corp"), (1, "HQ"), "Server"),
            computer(301, "GAMMA-SQL", (9, "Gamma"), (4, "DC"), "Server"),
        ]),
    )
    .await;
    mount_page(
        &server,
        "/cwa/api/v1/Computers",
        2,
        json!([{
            "Id": 302, "ComputerName": "GAMMA-PROBE", "Client": {"Id": 9, "Name": "Gamma"},
            "Type": "NetworkProbe", "OperatingSystemName": "Linux"
        }]),
    )
    .await;
    mount_groups(&server).await;
    mount_up_to_date(&server).await;
    let mut cfg = config(&server);
    cfg.default_timezone = Some("UTC".into());
    let a = Automate::with_http(cfg.clone(), creds(), fast()).unwrap();
    let pulled = a.pull_inventory().await.unwrap();
    assert_eq!(pulled.inventory.clients.len(), 1);
    assert!(pulled
        .inventory
        .endpoints
        .iter()
        .all(|e| e.client == "acme"));
    assert_eq!(pulled.skipped.len(), 1);
    let s = &pulled.skipped[0];
    assert_eq!((s.automate_id, s.name.as_str()), (9, "Gamma"));
    assert!(
        s.reason.contains("302") && s.reason.contains("neither a server nor a workstation"),
        "{}",
        s.reason
    );

    // Without any time zone, nothing maps: the pull fails rather than return an empty fleet.
    cfg.default_timezone = None;
    cfg.clients.clear();
    let a = Automate::with_http(cfg, creds(), fast()).unwrap();
    let e = a.pull().await.unwrap_err();
    let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert!(
        text.contains("no time zone") && text.contains("Acme Corp"),
        "{text}"
    );
}

#[test]
fn groups_that_disagree_name_both() {
    let cfg = AutomateConfig {
        base_url: "http://x".into(),
        page_size: 10,
        default_timezone: Some("UTC".into()),
        clients: BTreeMap::new(),
        groups: vec![
            GroupRule {
                name: "A".into(),
                ring: Some(Ring::Pilot),
                ..GroupRule::default()
            },
            GroupRule {
                name: "B".into(),
                ring: Some(Ring::Production),
                ..GroupRule::default()
            },
        ],
        scripts: Scripts::default(),
        monitors: BTreeMap::new(),
        patch_state_concurrency: 8,
        changed_startup_hours: 24,
    };
    let c: Computer =
        serde_json::from_value(computer(1, "X", (1, "One"), (1, "L"), "Server")).unwrap();
    let members: BTreeMap<String, HashSet<Id>> = [
        ("A".to_owned(), HashSet::from([Id(1)])),
        ("B".to_owned(), HashSet::from([Id(1)])),
    ]
    .into();
    let pulled = map_inventory(&cfg, &[c], &members);
    assert_eq!(pulled.skipped.len(), 1);
    let r = &pulled.skipped[0].reason;
    assert!(
        r.contains("`A`") && r.contains("`B`") && r.contains("ring"),
        "{r}"
    );
}

#[tokio::test]
async fn an_expired_token_mid_sync_is_renewed_once_and_the_sync_goes_on() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", Some(1)).await;
    mount_token(&server, "t2", None).await;
    mount_page(
        &server,
        "/cwa/api/v1/Computers",
        1,
        json!([
            computer(101, "ACME-DC01", (5, "Acme Corp"), (1, "HQ"), "Server"),
            computer(102, "ACME-WS01", (5, "Acme Corp"), (1, "HQ"), "Workstation"),
        ]),
    )
    .await;
    // Page 2: the first token has expired.
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/Computers"))
        .and(query_param("page", "2"))
        .and(header("Authorization", "Bearer t1"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"code": "Unauthorized", "message": "Token expired"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/Computers"))
        .and(query_param("page", "2"))
        .and(header("Authorization", "Bearer t2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([computer(
            103,
            "ACME-WS02",
            (5, "Acme Corp"),
            (1, "HQ"),
            "Workstation"
        )])))
        .mount(&server)
        .await;
    let mut cfg = config(&server);
    mount_up_to_date(&server).await;
    cfg.groups.clear();
    let a = Automate::with_http(cfg, creds(), fast()).unwrap();
    let inv = a.pull().await.unwrap();
    assert_eq!(inv.endpoints.len(), 3);
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(requests_to(&reqs, "/cwa/api/v1/apitoken"), 2);
}

#[tokio::test]
async fn a_token_refused_twice_is_a_permanent_error_and_nothing_is_returned() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/Computers"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let mut cfg = config(&server);
    cfg.groups.clear();
    let a = Automate::with_http(cfg, creds(), fast()).unwrap();
    let e = a.pull().await.unwrap_err();
    assert!(matches!(e, PortError::Permanent { .. }), "{e:?}");
    assert!(e.to_string().contains(SYSTEM), "{e}");
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(requests_to(&reqs, "/cwa/api/v1/Computers"), 2);
}

#[tokio::test]
async fn bad_credentials_and_two_factor_are_explained_without_the_password() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/cwa/api/v1/apitoken"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "AccessToken": null, "IsTwoFactorRequired": true
        })))
        .mount(&server)
        .await;
    let a = Automate::with_http(config(&server), creds(), fast()).unwrap();
    let e = a.pull().await.unwrap_err();
    let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert!(
        text.contains("two-factor") && !text.contains("pa55"),
        "{text}"
    );

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/cwa/api/v1/apitoken"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"code": "Unauthorized", "message": "Invalid credentials"})),
        )
        .mount(&server)
        .await;
    let a = Automate::with_http(config(&server), creds(), fast()).unwrap();
    let e = a.pull().await.unwrap_err();
    let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert!(
        text.contains("refused the credentials of `patchflow-api`") && !text.contains("pa55"),
        "{text}"
    );
}

#[tokio::test]
async fn a_malformed_computer_names_the_field_and_a_busy_server_is_retried() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/Computers"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "0"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mount_page(
        &server,
        "/cwa/api/v1/Computers",
        1,
        json!([
            computer(101, "ACME-DC01", (5, "Acme Corp"), (1, "HQ"), "Server"),
            {"Id": 102, "ComputerName": "NO-CLIENT"}
        ]),
    )
    .await;
    let a = Automate::with_http(config(&server), creds(), fast()).unwrap();
    let e = a.pull().await.unwrap_err();
    let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert!(
        text.contains("GET /cwa/api/v1/Computers")
            && text.contains("[1]")
            && text.contains("Client"),
        "{text}"
    );
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(requests_to(&reqs, "/cwa/api/v1/Computers"), 2);
}

fn window(h: u32) -> Window {
    Window {
        start: Utc.with_ymd_and_hms(2026, 12, 10, h, 0, 0).unwrap(),
        end: Utc.with_ymd_and_hms(2026, 12, 10, h + 4, 0, 0).unwrap(),
    }
}

#[tokio::test]
async fn a_command_schedules_its_script_once_per_key() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    Mock::given(method("POST"))
        .and(path("/cwa/api/v1/Batch/ScriptExecute"))
        .and(body_partial_json(json!({
            "EntityType": "Computer", "EntityIds": [101], "ScriptId": 902,
            "StartDate": "2026-12-10T03:00:00Z", "ExpireDate": "2026-12-10T07:00:00Z",
            "OfflineActionFlags": {"WakesOfflineAgents": true},
            "Parameters": [
                {"Key": "PatchflowKey", "Value": "2026-12/reboot/101"},
                {"Key": "Command", "Value": "schedule_reboot"},
                {"Key": "WindowStart", "Value": "2026-12-10T03:00:00Z"},
                {"Key": "WindowEnd", "Value": "2026-12-10T07:00:00Z"}
            ]
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ScriptResults": [{"EntityId": 101, "ResultDetails": {"ResultStatus": 0, "ReasonCode": 0, "Message": ""}}],
            "ContainsUnsuccessfulResults": false
        })))
        .expect(1)
        .mount(&server)
        .await;
    let a = Automate::with_http(config(&server), creds(), fast()).unwrap();
    let cmd = RmmCommand::ScheduleReboot {
        endpoint: EndpointId::parse("101").unwrap(),
        window: window(3),
    };
    a.send("2026-12/reboot/101", &cmd).await.unwrap();
    a.send("2026-12/reboot/101", &cmd).await.unwrap();
    server.verify().await;
}

#[tokio::test]
async fn a_refused_or_unconfigured_command_is_permanent_and_says_why() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    Mock::given(method("POST"))
        .and(path("/cwa/api/v1/Batch/ScriptExecute"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ScriptResults": [{"EntityId": 101, "ResultDetails": {"ResultStatus": 1, "Message": "Computer is in maintenance mode"}}],
            "ContainsUnsuccessfulResults": true
        })))
        .mount(&server)
        .await;
    let a = Automate::with_http(config(&server), creds(), fast()).unwrap();
    let reboot = RmmCommand::ScheduleReboot {
        endpoint: EndpointId::parse("101").unwrap(),
        window: window(7),
    };
    let e = a.send("k1", &reboot).await.unwrap_err();
    let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert!(
        text.contains("maintenance mode") && text.contains("902"),
        "{text}"
    );
    assert!(!e.is_retryable());

    let tech = RmmCommand::TechnicianReboot {
        endpoint: EndpointId::parse("101").unwrap(),
        after: window(3).end,
    };
    let e = a.send("k2", &tech).await.unwrap_err();
    let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert!(
        text.contains("automate.scripts.technician_reboot"),
        "{text}"
    );

    let stranger = RmmCommand::ScheduleInstall {
        endpoint: EndpointId::parse("ws-1").unwrap(),
        window: window(3),
        patches: Vec::new(),
    };
    let e = a.send("k3", &stranger).await.unwrap_err();
    assert!(
        format!("{e:?}").contains("not an Automate computer id"),
        "{e:?}"
    );
}

/// What computer 101 reports since 02:00, given its script history, last start-up and monitors.
async fn reports_of(
    history: Value,
    startup: &str,
    monitors: Value,
) -> Vec<patchflow_core::ports::rmm::RmmReport> {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_reports(&server, history, startup, monitors).await;
    let a = Automate::with_http(config(&server), creds(), fast()).unwrap();
    a.reports(&EndpointId::parse("101").unwrap(), at(2, 0), &[])
        .await
        .unwrap()
}

async fn mount_reports(server: &MockServer, history: Value, startup: &str, monitors: Value) {
    // No patch job since the commands: the install is the scripts' history alone.
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/Computers/101/PatchingStats"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ComputerId": 101, "NoPatchInventory": false, "PatchJobRunning": false,
            "Stage": "Production", "LastPatchedDate": "2026-11-12T04:00:00"
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/Computers/101/ScriptHistory"))
        .and(query_param("page", "1"))
        .and(query_param(
            "condition",
            "(ScriptId = 901 or ScriptId = 905) and HistoryDate >= 2026-12-10T02:00:00Z",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(history))
        .mount(server)
        .await;
    for p in [
        "/cwa/api/v1/Computers/101/ScriptHistory",
        "/cwa/api/v1/Computers/101/Monitors",
    ] {
        Mock::given(method("GET"))
            .and(path(p))
            .and(query_param("page", "2"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
            .mount(server)
            .await;
    }
    let mut c = computer(101, "ACME-DC01", (5, "Acme Corp"), (1, "HQ"), "Server");
    c["LastStartup"] = json!(startup);
    mount_computer(server, c).await;
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/Computers/101/Monitors"))
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(monitors))
        .mount(server)
        .await;
}

/// `GET /Computers?condition=Id = N` answering the one computer (the specification has no
/// `GET /Computers/{id}`).
async fn mount_computer(server: &MockServer, c: Value) {
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/Computers"))
        .and(query_param("condition", format!("Id = {}", c["Id"])))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([c])))
        .mount(server)
        .await;
}

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 10, h, m, 0).unwrap()
}

#[tokio::test]
async fn reports_follow_the_install_the_reboot_and_the_monitors() {
    let reports = reports_of(
        json!([
            {"Id": 1, "ScriptId": 901, "ComputerId": 101, "Status": "Completed", "State": "Success",
             "HistoryDate": "2026-12-10T03:40:00", "DiagnosticMessage": ""},
            {"Id": 2, "ScriptId": 901, "ComputerId": 101, "Status": "Completed", "State": "Information",
             "HistoryDate": "2026-12-10T03:10:00"}
        ]),
        "2026-12-10T04:05:00",
        json!([
            {"MonitorId": 1, "Name": "DNS Service", "LastScanned": "2026-12-10T04:20:00", "LastFailed": "2026-11-02T01:00:00"},
            {"MonitorId": 2, "Name": "LOB App Ping", "LastScanned": "2026-12-10T04:25:00", "LastFailed": "2026-12-10T04:25:00"},
            {"MonitorId": 3, "Name": "Unmapped", "LastScanned": null}
        ]),
    )
    .await;
    let events: Vec<(DateTime<Utc>, &RmmEvent)> =
        reports.iter().map(|r| (r.at, &r.event)).collect();
    assert_eq!(events.len(), 3, "{events:?}");
    // The Information row (03:10) is progress; the outcome is the Success row.
    assert_eq!(events[0], (at(3, 40), &RmmEvent::InstallSucceeded));
    assert_eq!(events[1], (at(4, 5), &RmmEvent::RebootConfirmed));
    assert_eq!(events[2].0, at(4, 25));
    let RmmEvent::Checks { results } = events[2].1 else {
        panic!("{:?}", events[2])
    };
    let pass = |c: Check| results.iter().find(|r| r.check == c).map(|r| r.passed);
    assert_eq!(pass(Check::AgentHealthy), Some(true));
    assert_eq!(pass(Check::DnsDhcp), Some(true));
    assert_eq!(pass(Check::LobApps), Some(false));
}

#[tokio::test]
async fn no_checks_are_reported_until_every_mapped_monitor_has_scanned_since_the_reboot() {
    let reports = reports_of(
        json!([{"Id": 1, "ScriptId": 901, "Status": "Completed", "State": "Success",
                "HistoryDate": "2026-12-10T03:40:00"}]),
        "2026-12-10T04:05:00",
        json!([
            {"MonitorId": 1, "Name": "DNS Service", "LastScanned": "2026-12-10T04:20:00"},
            {"MonitorId": 2, "Name": "LOB App Ping", "LastScanned": "2026-12-10T03:00:00"}
        ]),
    )
    .await;
    let events: Vec<&RmmEvent> = reports.iter().map(|r| &r.event).collect();
    assert_eq!(
        events,
        [&RmmEvent::InstallSucceeded, &RmmEvent::RebootConfirmed]
    );
}

#[tokio::test]
async fn a_failed_install_is_reported_with_the_scripts_words_and_a_running_one_not_yet() {
    let reports = reports_of(
        json!([{"Id": 1, "ScriptId": 901, "Status": "Completed", "State": "Failure",
                "HistoryDate": "2026-12-10T03:40:00", "DiagnosticMessage": "0x80240022 download failed"}]),
        "2026-12-01T00:00:00",
        json!([]),
    )
    .await;
    assert_eq!(
        reports.iter().map(|r| &r.event).collect::<Vec<_>>(),
        [&RmmEvent::InstallFailed {
            detail: "0x80240022 download failed".into(),
            patches: Vec::new(),
        }]
    );

    let reports = reports_of(
        json!([{"Id": 1, "ScriptId": 901, "Status": "Running", "State": "Information",
                "HistoryDate": "2026-12-10T03:40:00"}]),
        "2026-12-01T00:00:00",
        json!([]),
    )
    .await;
    assert!(reports.is_empty(), "{reports:?}");
}

#[tokio::test]
async fn a_server_that_ignores_paging_is_an_error_not_an_endless_read() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/Computers"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            computer(101, "ACME-DC01", (5, "Acme Corp"), (1, "HQ"), "Server"),
            computer(102, "ACME-WS01", (5, "Acme Corp"), (1, "HQ"), "Workstation"),
        ])))
        .mount(&server)
        .await;
    let a = Automate::with_http(config(&server), creds(), fast()).unwrap();
    let e = a.pull().await.unwrap_err();
    let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert!(text.contains("ignores paging"), "{text}");
}

#[test]
fn slugs_are_lower_case_words_joined_by_dashes() {
    assert_eq!(slug("Beta & Sons, LLC"), "beta-sons-llc");
    assert_eq!(slug("  Acme  "), "acme");
    assert_eq!(slug("***"), "");
}

#[test]
fn automate_dates_without_an_offset_are_utc() {
    assert_eq!(parse_stamp("2026-12-10T03:40:00"), Some(at(3, 40)));
    assert_eq!(
        parse_stamp("2026-12-10T03:40:00.123"),
        Some(at(3, 40) + chrono::Duration::milliseconds(123))
    );
    assert_eq!(parse_stamp("2026-12-10T04:40:00+01:00"), Some(at(3, 40)));
    assert_eq!(parse_stamp("soon"), None);
}

#[tokio::test]
async fn a_monitor_that_failed_while_services_came_up_and_passed_since_is_healthy() {
    let reports = reports_of(
        json!([{"Id": 1, "ScriptId": 905, "Status": "Completed", "State": "Success",
                "HistoryDate": "2026-12-10T03:40:00"}]),
        "2026-12-10T04:05:00",
        json!([
            {"MonitorId": 1, "Name": "DNS Service", "LastScanned": "2026-12-10T04:25:00",
             "LastFailed": "2026-12-10T04:10:00"},
            {"MonitorId": 2, "Name": "LOB App Ping", "LastScanned": "2026-12-10T04:26:00",
             "LastFailed": "2026-12-10T04:26:00"}
        ]),
    )
    .await;
    // The technician's install script counts as the install.
    assert_eq!(reports[0].event, RmmEvent::InstallSucceeded);
    let RmmEvent::Checks { results } = &reports[2].event else {
        panic!("{reports:?}")
    };
    let pass = |c: Check| results.iter().find(|r| r.check == c).map(|r| r.passed);
    assert_eq!(pass(Check::DnsDhcp), Some(true));
    assert_eq!(pass(Check::LobApps), Some(false));
}

#[tokio::test]
async fn a_computer_without_any_configured_monitor_reports_no_checks() {
    let reports = reports_of(
        json!([{"Id": 1, "ScriptId": 901, "Status": "Completed", "State": "Success",
                "HistoryDate": "2026-12-10T03:40:00"}]),
        "2026-12-10T04:05:00",
        json!([{"MonitorId": 9, "Name": "Disk C", "LastScanned": "2026-12-10T04:20:00"}]),
    )
    .await;
    let events: Vec<&RmmEvent> = reports.iter().map(|r| &r.event).collect();
    assert_eq!(
        events,
        [&RmmEvent::InstallSucceeded, &RmmEvent::RebootConfirmed]
    );
}

#[tokio::test]
async fn a_command_is_not_resent_after_a_server_error_it_may_have_stored() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    Mock::given(method("POST"))
        .and(path("/cwa/api/v1/Batch/ScriptExecute"))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&server)
        .await;
    let a = Automate::with_http(config(&server), creds(), fast()).unwrap();
    let cmd = RmmCommand::ScheduleReboot {
        endpoint: EndpointId::parse("101").unwrap(),
        window: window(3),
    };
    let e = a.send("k", &cmd).await.unwrap_err();
    // The message goes back to its queue; the script skips a key it has run.
    assert!(e.is_retryable(), "{e:?}");
    server.verify().await;
}

#[tokio::test]
async fn an_echoed_password_never_reaches_an_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/cwa/api/v1/apitoken"))
        .respond_with(
            ResponseTemplate::new(400).set_body_string("{\"message\":\"bad password pa55\"}"),
        )
        .mount(&server)
        .await;
    let a = Automate::with_http(config(&server), creds(), fast()).unwrap();
    let e = a.pull().await.unwrap_err();
    let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert!(
        text.contains("[redacted]") && !text.contains("pa55"),
        "{text}"
    );
}
