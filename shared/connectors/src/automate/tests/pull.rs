//! The inventory pull's patch state (`PatchingStats`, `MicrosoftUpdates`) against a local
//! server speaking Automate's published shapes: applicability, computers without a patch
//! inventory, bounded concurrency, large fleets and tokens that expire part way.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::{computer, config, creds, fast, mount_page, mount_token, requests_to};
use crate::automate::*;

/// A `ComputerMicrosoftUpdateData` row as Automate writes it.
fn update(kb: Value, installed: bool, failed: bool, severity: &str, released: &str) -> Value {
    json!({
        "ComputerId": 101, "KnowledgeBaseId": kb, "MicrosoftUpdateId": "b2c3d4",
        "Title": format!("Update {kb}"), "Category": "Security Updates",
        "Severity": severity, "ReleaseDate": released, "IsInstalled": installed,
        "IsFailed": failed, "IsCompliant": installed && !failed,
        "IsNonCompliant": !installed || failed, "InstallState": "",
        "PolicyApproval": { "Id": 1, "Name": "Approve" }, "Cvss": 8.1
    })
}

/// A `ComputerPatchingStats` as Automate writes it.
fn stats(no_inventory: bool) -> Value {
    let scanned = if no_inventory {
        "0001-01-01T00:00:00"
    } else {
        "2026-12-01T02:00:00"
    };
    json!({
        "ComputerId": 101, "OverallCompliance": 87.5, "InstalledPatchCount": 40,
        "MissingPatchCount": 2, "FailedPatchCount": 1, "Stage": "Production",
        "NoPatchInventory": no_inventory, "WSUSEnabled": false, "PatchJobRunning": false,
        "DaytimePatchingEnabled": false, "WUAOutOfDate": false,
        "LastPatchInventory": scanned
    })
}

async fn mount_stats(server: &MockServer, id: u64, body: Value) {
    Mock::given(method("GET"))
        .and(path(format!("/cwa/api/v1/Computers/{id}/PatchingStats")))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

/// Acme: a server needing three KBs, a workstation in a disabled location (never read) and
/// one Automate has never scanned.
async fn acme(server: &MockServer) {
    mount_token(server, "t1", None).await;
    mount_page(
        server,
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
        server,
        "/cwa/api/v1/Computers",
        2,
        json!([computer(
            103,
            "ACME-WS03",
            (5, "Acme Corp"),
            (1, "HQ"),
            "Workstation"
        )]),
    )
    .await;
    mount_stats(server, 101, stats(false)).await;
    mount_stats(server, 103, stats(true)).await;
    // Four rows over two pages of two (then an empty page).
    let p = "/cwa/api/v1/Computers/101/MicrosoftUpdates";
    mount_page(
        server,
        p,
        1,
        json!([
            update(
                json!(5048667),
                false,
                false,
                "Critical",
                "2026-12-08T18:00:00"
            ),
            update(
                json!("KB5046616"),
                true,
                true,
                "Important",
                "2026-11-11T18:00:00"
            ),
        ]),
    )
    .await;
    mount_page(
        server,
        p,
        2,
        json!([
            update(
                json!("5044281"),
                true,
                false,
                "Important",
                "2026-10-08T17:00:00"
            ),
            update(
                json!("890830"),
                false,
                false,
                "Unspecified",
                "0001-01-01T00:00:00"
            ),
        ]),
    )
    .await;
    mount_page(server, p, 3, json!([])).await;
}

#[tokio::test]
async fn applicability_is_what_each_computers_scan_reports_missing_or_failed() {
    let server = MockServer::start().await;
    acme(&server).await;
    let mut cfg = config(&server);
    cfg.groups.clear();
    let a = Automate::with_http(cfg, creds(), fast()).unwrap();
    let pulled = a.pull_inventory().await.unwrap();
    let inv = &pulled.inventory;
    let dc = inv.endpoints.iter().find(|e| e.id == "101").unwrap();
    // Missing, installed-and-failed, and missing without a rating; the installed KB is not
    // needed; "5048667", "KB5046616" and 890830 all become KB ids.
    assert_eq!(
        dc.applicable.as_deref(),
        Some(
            &[
                "KB5046616".to_owned(),
                "KB5048667".into(),
                "KB890830".into()
            ][..]
        )
    );
    assert_eq!(
        dc.os.as_deref(),
        Some("Microsoft Windows Server 2022 Standard x64")
    );
    let needed = dc.needed.as_ref().unwrap();
    assert_eq!(needed.len(), 3);
    let cu = needed.iter().find(|n| n.id == "KB5048667").unwrap();
    assert_eq!(cu.severity, Some(patchflow_core::model::Severity::Critical));
    assert_eq!(cu.released.as_deref(), Some("2026-12-08T18:00:00Z"));
    assert_eq!(cu.failed, Some(false));
    let failed = needed.iter().find(|n| n.id == "KB5046616").unwrap();
    assert_eq!(failed.failed, Some(true));
    let msrt = needed.iter().find(|n| n.id == "KB890830").unwrap();
    assert_eq!((msrt.severity, msrt.released.as_deref()), (None, None));
    assert_eq!(
        pulled.status["101"].patch_stage.as_deref(),
        Some("Production")
    );

    // Never scanned: unknown, not "needs nothing", and named.
    let ws3 = inv.endpoints.iter().find(|e| e.id == "103").unwrap();
    assert_eq!((ws3.applicable.as_ref(), ws3.needed.as_ref()), (None, None));
    assert_eq!(
        pulled.no_patch_inventory,
        [patchflow_core::ports::sources::NoPatchInventory {
            endpoint: "103".into(),
            hostname: "ACME-WS03".into(),
            client: "acme".into(),
        }]
    );
    assert_eq!(pulled.status["103"].no_patch_inventory, Some(true));
    assert_eq!(pulled.status["103"].last_patch_inventory, None);
    // The written record says `applicable` is unknown by leaving it out.
    let text = serde_json::to_value(ws3).unwrap();
    assert!(text.get("applicable").is_none(), "{text}");
    // The pulled inventory is still valid contract input.
    let text = serde_json::to_string(inv).unwrap();
    patchflow_core::contract::parse_inventory("pulled", &text).unwrap();

    // Only computers a cycle patches are read: the Warehouse is disabled for Acme.
    let ws1 = inv.endpoints.iter().find(|e| e.id == "102").unwrap();
    assert_eq!(ws1.applicable, None);
    assert!(pulled
        .no_patch_inventory
        .iter()
        .all(|n| n.endpoint != "102"));
    let reqs = server.received_requests().await.unwrap();
    assert!(reqs
        .iter()
        .all(|r| !r.url.path().starts_with("/cwa/api/v1/Computers/102/")));
    // No updates are read where there is no inventory.
    assert_eq!(
        requests_to(&reqs, "/cwa/api/v1/Computers/103/MicrosoftUpdates"),
        0
    );
    assert_eq!(
        requests_to(&reqs, "/cwa/api/v1/Computers/101/MicrosoftUpdates"),
        3
    );
}

#[tokio::test]
async fn the_sync_port_names_computers_without_a_patch_inventory() {
    let server = MockServer::start().await;
    acme(&server).await;
    let mut cfg = config(&server);
    cfg.groups.clear();
    let a = Automate::with_http(cfg, creds(), fast()).unwrap();
    let (inv, notes) = a.pull_with_notes().await.unwrap();
    assert_eq!(inv.endpoints.len(), 3);
    let named: Vec<(&str, &str, &str)> = notes
        .no_patch_inventory
        .iter()
        .map(|n| (n.endpoint.as_str(), n.hostname.as_str(), n.client.as_str()))
        .collect();
    assert_eq!(named, [("103", "ACME-WS03", "acme")]);
    assert!(notes.clients_left_out.is_empty());
}

#[tokio::test]
async fn microsoft_updates_that_are_not_a_list_fail_naming_the_route() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_page(
        &server,
        "/cwa/api/v1/Computers",
        1,
        json!([computer(
            101,
            "ACME-DC01",
            (5, "Acme Corp"),
            (1, "HQ"),
            "Server"
        )]),
    )
    .await;
    mount_stats(&server, 101, stats(false)).await;
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/Computers/101/MicrosoftUpdates"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"Items": [], "TotalCount": 0})),
        )
        .mount(&server)
        .await;
    let mut cfg = config(&server);
    cfg.groups.clear();
    let a = Automate::with_http(cfg, creds(), fast()).unwrap();
    let e = a.pull_inventory().await.unwrap_err();
    assert!(matches!(e, PortError::Permanent { .. }), "{e:?}");
    let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert!(
        text.contains("GET /cwa/api/v1/Computers/101/MicrosoftUpdates")
            && text.contains("expected a list of rows")
            && text.contains("`Items`"),
        "{text}"
    );
}

#[tokio::test]
async fn a_malformed_update_row_names_its_field() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_page(
        &server,
        "/cwa/api/v1/Computers",
        1,
        json!([computer(
            101,
            "ACME-DC01",
            (5, "Acme Corp"),
            (1, "HQ"),
            "Server"
        )]),
    )
    .await;
    mount_stats(&server, 101, stats(false)).await;
    mount_page(
        &server,
        "/cwa/api/v1/Computers/101/MicrosoftUpdates",
        1,
        json!([
            update(
                json!(5048667),
                false,
                false,
                "Critical",
                "2026-12-08T18:00:00"
            ),
            update(
                json!("Cumulative"),
                false,
                false,
                "Critical",
                "2026-12-08T18:00:00"
            ),
        ]),
    )
    .await;
    let mut cfg = config(&server);
    cfg.groups.clear();
    let a = Automate::with_http(cfg, creds(), fast()).unwrap();
    let e = a.pull_inventory().await.unwrap_err();
    let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert!(
        text.contains("MicrosoftUpdates") && text.contains("[1].KnowledgeBaseId"),
        "{text}"
    );
}

/// A fleet of `size` Acme computers (ids from 1) behind one responder: `Computers` paged by
/// the request's `page` and `pageSize`, each computer's stats and one missing KB
/// (`KB5000000 + id`), every 10th without a patch inventory. Patch-state requests are
/// answered after `delay`, their arrival times kept; with `t1_budget`, the token `t1` is
/// refused (401) after that many requests, as an expired token would be.
struct Fleet {
    size: u64,
    delay: Duration,
    arrivals: Arc<std::sync::Mutex<Vec<Instant>>>,
    t1_budget: Option<usize>,
    t1_seen: AtomicUsize,
}

impl Fleet {
    fn new(size: u64, delay: Duration) -> (Self, Arc<std::sync::Mutex<Vec<Instant>>>) {
        let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
        (
            Self {
                size,
                delay,
                arrivals: arrivals.clone(),
                t1_budget: None,
                t1_seen: AtomicUsize::new(0),
            },
            arrivals,
        )
    }
}

impl wiremock::Respond for Fleet {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let auth = req
            .headers
            .get("Authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if auth == "Bearer t1" {
            let seen = self.t1_seen.fetch_add(1, Ordering::SeqCst);
            if self.t1_budget.is_some_and(|b| seen >= b) {
                return ResponseTemplate::new(401)
                    .set_body_json(json!({"code": "Unauthorized", "message": "Token expired"}));
            }
        } else if auth != "Bearer t2" {
            return ResponseTemplate::new(401);
        }
        let q = |k: &str| {
            req.url
                .query_pairs()
                .find(|(key, _)| key == k)
                .and_then(|(_, v)| v.parse::<u64>().ok())
        };
        let parts: Vec<&str> = req.url.path().split('/').collect();
        match parts.as_slice() {
            ["", "cwa", "api", "v1", "Computers"] => {
                let (page, size) = (q("page").unwrap_or(1), q("pageSize").unwrap_or(1000));
                let first = (page - 1) * size + 1;
                let rows: Vec<Value> = (first..=(page * size).min(self.size))
                    .map(|id| {
                        computer(
                            id,
                            &format!("ACME-{id:05}"),
                            (5, "Acme Corp"),
                            (1, "HQ"),
                            "Workstation",
                        )
                    })
                    .collect();
                ResponseTemplate::new(200).set_body_json(rows)
            }
            ["", "cwa", "api", "v1", "Computers", id, what] => {
                self.arrivals
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Instant::now());
                let id: u64 = id.parse().unwrap_or(0);
                let body = match *what {
                    "PatchingStats" => stats(id % 10 == 0),
                    "MicrosoftUpdates" => json!([
                        update(
                            json!(5_000_000 + id),
                            false,
                            false,
                            "Important",
                            "2026-12-08T18:00:00"
                        ),
                        update(
                            json!(4_000_000),
                            true,
                            false,
                            "Important",
                            "2026-11-11T18:00:00"
                        ),
                    ]),
                    _ => return ResponseTemplate::new(404),
                };
                ResponseTemplate::new(200)
                    .set_body_json(body)
                    .set_delay(self.delay)
            }
            _ => ResponseTemplate::new(404),
        }
    }
}

/// The most patch-state requests the server held at once: a request is held for `delay`
/// after it arrives, so two overlap when one arrives less than `delay` after the other.
fn high_water(arrivals: &[Instant], delay: Duration) -> usize {
    let mut sorted = arrivals.to_vec();
    sorted.sort();
    sorted
        .iter()
        .enumerate()
        .map(|(i, a)| {
            sorted[..=i]
                .iter()
                .filter(|b| a.duration_since(**b) < delay)
                .count()
        })
        .max()
        .unwrap_or(0)
}

async fn fleet_server(fleet: Fleet) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path_regex(r"^/cwa/api/v1/Computers"))
        .respond_with(fleet)
        .mount(&server)
        .await;
    server
}

fn fleet_config(server: &MockServer, page_size: u32, concurrency: usize) -> AutomateConfig {
    let mut cfg = config(server);
    cfg.groups.clear();
    cfg.page_size = page_size;
    cfg.patch_state_concurrency = concurrency;
    cfg
}

/// Every computer of a fleet of `size` was read and mapped.
fn every_computer_read(pulled: &Pulled, size: u64) {
    assert_eq!(pulled.inventory.endpoints.len() as u64, size);
    for e in &pulled.inventory.endpoints {
        let id: u64 = e.id.parse().unwrap();
        if id % 10 == 0 {
            assert_eq!(e.applicable, None, "{}", e.id);
        } else {
            assert_eq!(
                e.applicable.as_deref(),
                Some(&[format!("KB{}", 5_000_000 + id)][..]),
                "{}",
                e.id
            );
        }
    }
    assert_eq!(pulled.no_patch_inventory.len() as u64, size / 10);
}

#[tokio::test]
async fn patch_state_is_read_a_bounded_number_of_computers_at_a_time() {
    let delay = Duration::from_millis(60);
    let (fleet, arrivals) = Fleet::new(40, delay);
    let server = fleet_server(fleet).await;
    mount_token(&server, "t1", None).await;
    let a = Automate::with_http(fleet_config(&server, 1000, 4), creds(), fast()).unwrap();
    let pulled = a.pull_inventory().await.unwrap();
    every_computer_read(&pulled, 40);
    let arrivals = arrivals.lock().unwrap().clone();
    // 40 stats and 36 update lists (4 computers have no inventory).
    assert_eq!(arrivals.len(), 76);
    // Never more than the four configured, and the four are used.
    assert_eq!(high_water(&arrivals, delay), 4);
}

#[tokio::test]
async fn the_default_concurrency_is_eight_and_out_of_range_values_are_refused() {
    let text = r#"{"base_url": "https://rmm.example"}"#;
    let cfg: AutomateConfig = serde_json::from_str(text).unwrap();
    assert_eq!(cfg.patch_state_concurrency, 8);
    for bad in [0, 65] {
        let mut c = cfg.clone();
        c.patch_state_concurrency = bad;
        let e = Automate::with_http(c, creds(), fast()).unwrap_err();
        assert!(
            e.to_string().contains("automate.patch_state_concurrency")
                || std::error::Error::source(&e)
                    .is_some_and(|s| s.to_string().contains("patch_state_concurrency")),
            "{e}"
        );
    }
}

#[tokio::test]
async fn a_fleet_past_a_thousand_computers_is_paged_and_every_computer_read() {
    let (fleet, arrivals) = Fleet::new(2345, Duration::ZERO);
    let server = fleet_server(fleet).await;
    mount_token(&server, "t1", None).await;
    let a = Automate::with_http(fleet_config(&server, 1000, 8), creds(), fast()).unwrap();
    let pulled = a.pull_inventory().await.unwrap();
    every_computer_read(&pulled, 2345);
    let reqs = server.received_requests().await.unwrap();
    // Pages of 1000, 1000 and 345.
    assert_eq!(requests_to(&reqs, "/cwa/api/v1/Computers"), 3);
    let stats = reqs
        .iter()
        .filter(|r| r.url.path().ends_with("/PatchingStats"))
        .count();
    assert_eq!(stats, 2345);
    assert_eq!(arrivals.lock().unwrap().len(), 2345 + 2345 - 234);
}

#[tokio::test]
async fn a_token_refused_part_way_is_renewed_once_and_the_pull_completes() {
    let (mut fleet, _) = Fleet::new(60, Duration::from_millis(20));
    // The computers' list and 30 patch reads with the first token, then it is refused.
    fleet.t1_budget = Some(31);
    let server = fleet_server(fleet).await;
    mount_token(&server, "t1", Some(1)).await;
    mount_token(&server, "t2", None).await;
    let a = Automate::with_http(fleet_config(&server, 1000, 8), creds(), fast()).unwrap();
    let pulled = a.pull_inventory().await.unwrap();
    every_computer_read(&pulled, 60);
    let reqs = server.received_requests().await.unwrap();
    // Eight reads in flight meet the refusal at once; one login serves them all.
    assert_eq!(requests_to(&reqs, "/cwa/api/v1/apitoken"), 2);
    let with_t1 = reqs
        .iter()
        .filter(|r| r.url.path().starts_with("/cwa/api/v1/Computers/"))
        .filter(|r| {
            r.headers
                .get("Authorization")
                .is_some_and(|v| v == "Bearer t1")
        })
        .count();
    // The budget's 31 are the list and 30 patch reads: any read past those with the first token
    // was refused (how many depends on how many were in flight at that moment).
    assert!(with_t1 > 30, "no read was refused: {with_t1}");
}

#[tokio::test]
async fn a_token_whose_expiry_passes_part_way_is_renewed_before_it_is_refused() {
    let (fleet, _) = Fleet::new(120, Duration::from_millis(50));
    let server = fleet_server(fleet).await;
    // The first token is good for two seconds past the renewal margin; the pull takes longer
    // (57 rounds of four 50 ms reads).
    let expires = Utc::now() + RENEW_BEFORE + chrono::Duration::seconds(2);
    Mock::given(method("POST"))
        .and(path("/cwa/api/v1/apitoken"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "AccessToken": "t1", "TokenType": "Bearer",
            "ExpirationDate": rfc3339(expires), "IsTwoFactorRequired": false
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mount_token(&server, "t2", None).await;
    let a = Automate::with_http(fleet_config(&server, 1000, 4), creds(), fast()).unwrap();
    let started = Instant::now();
    let pulled = a.pull_inventory().await.unwrap();
    assert!(started.elapsed() > Duration::from_secs(2));
    every_computer_read(&pulled, 120);
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(requests_to(&reqs, "/cwa/api/v1/apitoken"), 2);
    let with = |t: &str| {
        reqs.iter()
            .filter(|r| {
                r.headers
                    .get("Authorization")
                    .is_some_and(|v| v == format!("Bearer {t}").as_str())
            })
            .count()
    };
    // Both tokens served reads, and none was refused (no read was repeated).
    assert!(with("t1") > 0 && with("t2") > 0);
    assert_eq!(with("t1") + with("t2"), 1 + 120 + 108);
}
