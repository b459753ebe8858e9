//! The soak's health read against a local server speaking Automate's published shapes
//! (generator/automate-json/Computers.json: `GET /Computers` with `condition`, and
//! `GET /Computers/{computerId}/Monitors`, rows of `LabTech.Models.ComputerMonitor`).

use chrono::Utc;
use patchflow_core::ids::EndpointId;
use patchflow_core::ports::rmm::Rmm;
use patchflow_core::rules::validation::{Check, CheckResult};
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{computer, config, creds, fast, mount_page, mount_token, requests_to};
use crate::automate::*;

fn ep(id: &str) -> EndpointId {
    EndpointId::parse(id).unwrap()
}

async fn mount_computer(server: &MockServer, id: u64, status: &str, maintenance: bool) {
    let mut c = computer(id, "ACME-WS01", (5, "Acme Corp"), (1, "HQ"), "Workstation");
    c["Status"] = json!(status);
    c["IsMaintenanceModeEnabled"] = json!(maintenance);
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/Computers"))
        .and(query_param("condition", format!("Id = {id}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([c])))
        .mount(server)
        .await;
}

/// The computer's monitors, as Automate pages them (the test configuration's `pageSize` is 2; a
/// page shorter than that is the last); anything but a list is answered as it is.
async fn mount_monitors(server: &MockServer, id: u64, rows: Value) {
    let route = format!("/cwa/api/v1/Computers/{id}/Monitors");
    let Value::Array(rows) = rows else {
        Mock::given(method("GET"))
            .and(path(route))
            .respond_with(ResponseTemplate::new(200).set_body_json(rows))
            .mount(server)
            .await;
        return;
    };
    let mut page = 1;
    for chunk in rows.chunks(2) {
        mount_page(server, &route, page, json!(chunk)).await;
        page += 1;
    }
    if rows.len() % 2 == 0 {
        mount_page(server, &route, page, json!([])).await;
    }
}

fn monitor(name: &str, scanned: &str, failed: Option<&str>) -> Value {
    json!({"MonitorId": 1, "ComputerId": 101, "Name": name, "State": "",
           "LastScanned": scanned, "LastFailed": failed})
}

fn result(checks: &[CheckResult], check: Check) -> Option<bool> {
    checks.iter().find(|r| r.check == check).map(|r| r.passed)
}

#[tokio::test]
async fn a_healthy_computer_reports_its_agent_and_every_configured_monitor_passing() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_computer(&server, 101, "Online", false).await;
    mount_monitors(
        &server,
        101,
        json!([
            // Failed while services came up after the reboot, passing since.
            monitor(
                "DNS Service",
                "2026-12-14T06:00:00",
                Some("2026-12-10T03:10:00")
            ),
            monitor("LOB App Ping", "2026-12-14T06:00:00", None),
            // Not one of the configured post-reboot monitors: ignored.
            monitor(
                "Disk Space",
                "2026-12-14T06:00:00",
                Some("2026-12-14T06:00:00")
            ),
        ]),
    )
    .await;
    let a = Automate::with_http(config(&server), creds(), fast()).unwrap();
    let h = a.health(&ep("101")).await.unwrap();
    assert!(h.online && !h.maintenance, "{h:?}");
    assert_eq!(result(&h.checks, Check::AgentHealthy), Some(true));
    assert_eq!(result(&h.checks, Check::DnsDhcp), Some(true));
    assert_eq!(result(&h.checks, Check::LobApps), Some(true));
    assert_eq!(h.checks.len(), 3, "{h:?}");
    let reqs = server.received_requests().await.unwrap();
    // Three monitors: two pages of two.
    assert_eq!(requests_to(&reqs, "/cwa/api/v1/Computers/101/Monitors"), 2);
    assert_eq!(requests_to(&reqs, "/cwa/api/v1/Computers"), 1);
}

#[tokio::test]
async fn a_failing_monitor_maintenance_mode_or_an_offline_agent_is_unhealthy() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_computer(&server, 101, "Online", false).await;
    mount_monitors(
        &server,
        101,
        json!([
            monitor(
                "DNS Service",
                "2026-12-14T06:00:00",
                Some("2026-12-14T06:00:00")
            ),
            // Never scanned: it reports nothing.
            json!({"MonitorId": 2, "ComputerId": 101, "Name": "LOB App Ping"}),
        ]),
    )
    .await;
    mount_computer(&server, 102, "Online", true).await;
    mount_monitors(&server, 102, json!([])).await;
    mount_computer(&server, 103, "Offline", false).await;
    mount_monitors(&server, 103, json!([])).await;
    let a = Automate::with_http(config(&server), creds(), fast()).unwrap();

    let h = a.health(&ep("101")).await.unwrap();
    assert_eq!(result(&h.checks, Check::AgentHealthy), Some(true));
    assert_eq!(result(&h.checks, Check::DnsDhcp), Some(false), "{h:?}");
    assert_eq!(result(&h.checks, Check::LobApps), None, "{h:?}");

    let h = a.health(&ep("102")).await.unwrap();
    assert!(h.online && h.maintenance, "{h:?}");
    assert_eq!(result(&h.checks, Check::AgentHealthy), Some(false));

    let h = a.health(&ep("103")).await.unwrap();
    assert!(!h.online, "{h:?}");
    assert_eq!(result(&h.checks, Check::AgentHealthy), Some(false));
    assert_eq!(
        h.at.date_naive(),
        Utc::now().date_naive(),
        "the read's instant is now"
    );
}

#[tokio::test]
async fn a_malformed_monitor_list_names_the_route() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_computer(&server, 101, "Online", false).await;
    mount_monitors(&server, 101, json!({"Items": []})).await;
    let a = Automate::with_http(config(&server), creds(), fast()).unwrap();
    let e = a.health(&ep("101")).await.unwrap_err();
    let text = format!(
        "{e} {}",
        std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(text.contains("Computers/101/Monitors"), "{text}");
}
