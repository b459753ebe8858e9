//! `changed` against a local server speaking Automate's published shapes
//! (generator/automate-json: Computers.json `GET /Computers` with `condition`, rows of
//! `LabTech.Models.Computer`; Patching.json `GET /PatchHistory`, rows of
//! `Automate.Api.Domain.Contracts.Patching.PatchHistory`; Company.json `GET /Clients`): one paged
//! read of each per client, whatever its size, the condition on the client and the instant, the
//! computer ids as endpoint ids.

use chrono::{DateTime, TimeZone, Utc};
use patchflow_core::ids::{ClientId, EndpointId};
use patchflow_core::ports::rmm::Rmm;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{computer, config, creds, fast, mount_token, requests_to};
use crate::automate::*;

const COMPUTERS: &str = "/cwa/api/v1/Computers";
const PATCH_HISTORY: &str = "/cwa/api/v1/PatchHistory";
/// The computers' condition for client 5 since 03:00 (start-ups since 24 hours before).
const COMPUTERS_CONDITION: &str = "Client.Id = 5 and (LastStartup >= 2026-12-09T03:00:00Z or \
                                   WindowsUpdateDate >= 2026-12-10T03:00:00Z)";
const HISTORY_CONDITION: &str = "PatchHistoryClient.Id = 5 and ActionDate >= 2026-12-10T03:00:00Z";

fn since() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 10, 3, 0, 0).unwrap()
}

fn acme() -> ClientId {
    ClientId::parse("acme").unwrap()
}

fn ids(list: &[EndpointId]) -> Vec<&str> {
    list.iter().map(|e| e.as_str()).collect()
}

fn text(e: &PortError) -> String {
    match std::error::Error::source(e) {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    }
}

/// A `PatchHistory` row as Automate writes it.
fn operation(computer: u64, client: u64, at: &str) -> Value {
    json!({
        "ActionDate": at, "ComputerId": computer,
        "OperationCode": {"Id": 1, "Name": "Installation"},
        "PatchHistoryClient": {"Id": client, "Name": "Acme Corp"},
        "PatchHistoryTitle": {"Id": 77, "Title": "2026-12 Cumulative Update (KB5071001)",
                              "KnowledgeBaseId": 5071001},
        "ResultCode": {"Id": 2, "Name": "Succeeded"}, "UpdateId": "a1b2c3"
    })
}

fn acme_computer(id: u64) -> Value {
    computer(
        id,
        &format!("ACME-WS{id}"),
        (5, "Acme Corp"),
        (1, "HQ"),
        "Workstation",
    )
}

/// Page `page` of `route` under `condition` (page size 2, as the tests' configuration says).
async fn mount_page(server: &MockServer, route: &str, condition: &str, page: u32, rows: Value) {
    Mock::given(method("GET"))
        .and(path(route))
        .and(query_param("condition", condition))
        .and(query_param("page", page.to_string()))
        .and(query_param("pageSize", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(rows))
        .mount(server)
        .await;
}

#[tokio::test]
async fn the_clients_computers_and_patch_operations_are_read_page_by_page_under_its_condition() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    for (page, rows) in [
        (1, json!([acme_computer(101), acme_computer(102)])),
        (2, json!([acme_computer(103), acme_computer(104)])),
        (3, json!([acme_computer(105)])),
    ] {
        mount_page(&server, COMPUTERS, COMPUTERS_CONDITION, page, rows).await;
    }
    for (page, rows) in [
        (
            1,
            json!([
                operation(104, 5, "2026-12-10T03:20:00"),
                operation(201, 5, "2026-12-10T03:40:00")
            ]),
        ),
        (2, json!([])),
    ] {
        mount_page(&server, PATCH_HISTORY, HISTORY_CONDITION, page, rows).await;
    }
    let a = Automate::with_http(config(&server), creds(), fast()).unwrap();

    let changed = a.changed(&acme(), since()).await.unwrap();

    assert_eq!(
        ids(&changed),
        ["101", "102", "103", "104", "105", "201"],
        "every computer of both routes, once, sorted"
    );
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(requests_to(&reqs, COMPUTERS), 3);
    assert_eq!(requests_to(&reqs, PATCH_HISTORY), 2);
    // Nothing per computer, and the client came from the connectors file.
    let others: Vec<&str> = reqs
        .iter()
        .map(|r| r.url.path())
        .filter(|p| ![COMPUTERS, PATCH_HISTORY, "/cwa/api/v1/apitoken"].contains(p))
        .collect();
    assert!(others.is_empty(), "{others:?}");
}

#[tokio::test]
async fn a_client_not_in_the_connectors_file_is_found_by_name_and_nothing_new_is_empty() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    for (page, rows) in [
        (
            1,
            json!([{"Id": 5, "Name": "Acme Corp"}, {"Id": 12, "Name": "Globex, Inc."}]),
        ),
        (2, json!([])),
    ] {
        Mock::given(method("GET"))
            .and(path("/cwa/api/v1/Clients"))
            .and(query_param("page", page.to_string()))
            .respond_with(ResponseTemplate::new(200).set_body_json(rows))
            .mount(&server)
            .await;
    }
    let computers = "Client.Id = 12 and (LastStartup >= 2026-12-09T03:00:00Z or \
                     WindowsUpdateDate >= 2026-12-10T03:00:00Z)";
    mount_page(&server, COMPUTERS, computers, 1, json!([])).await;
    let history = "PatchHistoryClient.Id = 12 and ActionDate >= 2026-12-10T03:00:00Z";
    mount_page(&server, PATCH_HISTORY, history, 1, json!([])).await;
    let a = Automate::with_http(config(&server), creds(), fast()).unwrap();

    let changed = a
        .changed(&ClientId::parse("globex-inc").unwrap(), since())
        .await
        .unwrap();

    assert!(changed.is_empty(), "{changed:?}");
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(requests_to(&reqs, COMPUTERS), 1);
    assert_eq!(requests_to(&reqs, PATCH_HISTORY), 1);
}

#[tokio::test]
async fn the_start_up_window_follows_the_configuration_and_is_bounded() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    let computers = "Client.Id = 5 and (LastStartup >= 2026-12-09T21:00:00Z or \
                     WindowsUpdateDate >= 2026-12-10T03:00:00Z)";
    mount_page(
        &server,
        COMPUTERS,
        computers,
        1,
        json!([acme_computer(101)]),
    )
    .await;
    mount_page(&server, PATCH_HISTORY, HISTORY_CONDITION, 1, json!([])).await;
    let mut cfg = config(&server);
    cfg.changed_startup_hours = 6;
    let a = Automate::with_http(cfg, creds(), fast()).unwrap();
    assert_eq!(ids(&a.changed(&acme(), since()).await.unwrap()), ["101"]);

    let mut cfg = config(&server);
    cfg.changed_startup_hours = 0;
    let e = Automate::with_http(cfg, creds(), fast()).unwrap_err();
    assert!(
        text(&e).contains("automate.changed_startup_hours 0"),
        "{}",
        text(&e)
    );
}

#[tokio::test]
async fn a_malformed_answer_names_the_route_and_the_field() {
    // A computer whose start-up is not a date.
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    let mut bad = acme_computer(102);
    bad["LastStartup"] = json!("yesterday");
    mount_page(
        &server,
        COMPUTERS,
        COMPUTERS_CONDITION,
        1,
        json!([acme_computer(101), bad]),
    )
    .await;
    let a = Automate::with_http(config(&server), creds(), fast()).unwrap();
    let e = a.changed(&acme(), since()).await.unwrap_err();
    let t = text(&e);
    assert!(
        t.contains("GET /cwa/api/v1/Computers") && t.contains("`[1].LastStartup`"),
        "{t}"
    );
    assert!(!e.is_retryable());

    // A patch operation without its computer.
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_page(&server, COMPUTERS, COMPUTERS_CONDITION, 1, json!([])).await;
    let mut bad = operation(104, 5, "2026-12-10T03:20:00");
    bad.as_object_mut().unwrap().remove("ComputerId");
    mount_page(
        &server,
        PATCH_HISTORY,
        HISTORY_CONDITION,
        1,
        json!([operation(103, 5, "2026-12-10T03:10:00"), bad]),
    )
    .await;
    let a = Automate::with_http(config(&server), creds(), fast()).unwrap();
    let t = text(&a.changed(&acme(), since()).await.unwrap_err());
    assert!(
        t.contains("GET /cwa/api/v1/PatchHistory")
            && t.contains("`[1]")
            && t.contains("missing field `ComputerId`"),
        "{t}"
    );

    // Not a list; and a server that ignores `condition` (another client's rows).
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    Mock::given(method("GET"))
        .and(path(COMPUTERS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"Items": []})))
        .mount(&server)
        .await;
    let a = Automate::with_http(config(&server), creds(), fast()).unwrap();
    let t = text(&a.changed(&acme(), since()).await.unwrap_err());
    assert!(
        t.contains("GET /cwa/api/v1/Computers") && t.contains("expected a list of rows"),
        "{t}"
    );
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_page(&server, COMPUTERS, COMPUTERS_CONDITION, 1, json!([])).await;
    mount_page(
        &server,
        PATCH_HISTORY,
        HISTORY_CONDITION,
        1,
        json!([operation(301, 9, "2026-12-10T03:10:00")]),
    )
    .await;
    let a = Automate::with_http(config(&server), creds(), fast()).unwrap();
    let t = text(&a.changed(&acme(), since()).await.unwrap_err());
    assert!(
        t.contains("GET /cwa/api/v1/PatchHistory")
            && t.contains("client 9's, not client 5's")
            && t.contains("ignores `condition`"),
        "{t}"
    );
}

#[tokio::test]
async fn a_busy_server_is_retried_and_one_that_stays_down_is_a_transient_error() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    Mock::given(method("GET"))
        .and(path(PATCH_HISTORY))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "0"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mount_page(
        &server,
        COMPUTERS,
        COMPUTERS_CONDITION,
        1,
        json!([acme_computer(101)]),
    )
    .await;
    mount_page(
        &server,
        PATCH_HISTORY,
        HISTORY_CONDITION,
        1,
        json!([operation(102, 5, "2026-12-10T03:10:00")]),
    )
    .await;
    let a = Automate::with_http(config(&server), creds(), fast()).unwrap();
    assert_eq!(
        ids(&a.changed(&acme(), since()).await.unwrap()),
        ["101", "102"]
    );
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(requests_to(&reqs, PATCH_HISTORY), 2);

    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    Mock::given(method("GET"))
        .and(path(COMPUTERS))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let a = Automate::with_http(config(&server), creds(), fast()).unwrap();
    let e = a.changed(&acme(), since()).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(
        text(&e).contains("GET /cwa/api/v1/Computers"),
        "{}",
        text(&e)
    );
    let reqs = server.received_requests().await.unwrap();
    // The retry policy's attempts, then no answer: nothing is listed.
    assert_eq!(requests_to(&reqs, COMPUTERS), 3);
    assert_eq!(requests_to(&reqs, PATCH_HISTORY), 0);
}
