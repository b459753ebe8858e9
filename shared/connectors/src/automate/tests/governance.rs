//! Automate's side of patch governance against a local server speaking the published shapes
//! (generator/automate-json: Batch.json `POST /Batch/ScriptExecute`, Patching.json
//! `POST /PatchActions/DeployAllApproved`, Computers.json `GET /Computers`,
//! `/Computers/{id}/MicrosoftUpdates`, `/Computers/{id}/PatchingStats`): approvals written once
//! and read back, installs deployed once in their window, results per KB, the reboot and the
//! agent's state.

use chrono::{DateTime, Duration, TimeZone, Utc};
use patchflow_core::ids::{ClientId, EndpointId, PatchId};
use patchflow_core::ports::rmm::{ApprovalPush, Rmm, RmmApproval, RmmEvent};
use patchflow_core::rules::cadence::PowerState;
use patchflow_core::rules::commands::RmmCommand;
use patchflow_core::schedule::Window;
use serde_json::{json, Value};
use wiremock::matchers::{body_json, body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{computer, config, creds, fast, mount_token, requests_to};
use crate::automate::*;

fn automate(server: &MockServer) -> Automate {
    let mut cfg = config(server);
    cfg.scripts.approval = Some(907);
    Automate::with_http(cfg, creds(), fast()).unwrap()
}

fn ep(id: &str) -> EndpointId {
    EndpointId::parse(id).unwrap()
}

fn kb(id: &str) -> PatchId {
    PatchId::parse(id).unwrap()
}

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 10, h, m, 0).unwrap()
}

fn text(e: &PortError) -> String {
    match std::error::Error::source(e) {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    }
}

fn script_ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "ScriptResults": [{"EntityId": 101, "ResultDetails": {"ResultStatus": 0, "Message": ""}}],
        "ContainsUnsuccessfulResults": false
    }))
}

/// A `ComputerMicrosoftUpdateData` row as Automate writes it.
fn update(kb: u64, installed: bool, failed: bool, approval: &str, install_date: &str) -> Value {
    json!({
        "ComputerId": 101, "KnowledgeBaseId": kb, "MicrosoftUpdateId": "a1b2c3",
        "Title": format!("2026-12 Update (KB{kb})"), "Category": "Security Updates",
        "Severity": "Critical", "ReleaseDate": "2026-12-08T18:00:00", "InstallDate": install_date,
        "IsInstalled": installed, "IsFailed": failed, "IsCompliant": installed && !failed,
        "IsNonCompliant": !installed || failed, "InstallState": "",
        "PolicyApproval": {"Id": 1, "Name": approval}, "Cvss": 8.1
    })
}

/// A `ComputerPatchingStats` as Automate writes it.
fn stats(running: bool, last_patched: &str) -> Value {
    json!({
        "ComputerId": 101, "OverallCompliance": 90.0, "InstalledPatchCount": 40,
        "MissingPatchCount": 2, "FailedPatchCount": 0, "Stage": "Production",
        "NoPatchInventory": false, "WSUSEnabled": false, "PatchJobRunning": running,
        "DaytimePatchingEnabled": false, "LastPatchedDate": last_patched,
        "LastPatchInventory": "2026-12-10T01:00:00"
    })
}

async fn mount_updates(server: &MockServer, computer: u64, condition: &str, rows: Value) {
    Mock::given(method("GET"))
        .and(path(format!(
            "/cwa/api/v1/Computers/{computer}/MicrosoftUpdates"
        )))
        .and(query_param("condition", condition))
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(rows))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/cwa/api/v1/Computers/{computer}/MicrosoftUpdates"
        )))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(server)
        .await;
}

async fn mount_stats(server: &MockServer, computer: u64, body: Value) {
    Mock::given(method("GET"))
        .and(path(format!(
            "/cwa/api/v1/Computers/{computer}/PatchingStats"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

/// `GET /Computers?condition=Id = N` answering the computer with these fields changed.
async fn mount_state(server: &MockServer, id: u64, fields: Value) {
    let mut c = computer(id, "ACME-WS01", (5, "Acme Corp"), (1, "HQ"), "Workstation");
    c["IsMaintenanceModeEnabled"] = json!(false);
    for (k, v) in fields.as_object().unwrap() {
        c[k] = v.clone();
    }
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/Computers"))
        .and(query_param("condition", format!("Id = {id}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([c])))
        .mount(server)
        .await;
}

fn push(approval: RmmApproval) -> ApprovalPush {
    ApprovalPush {
        client: ClientId::parse("acme").unwrap(),
        patch: kb("KB5048667"),
        approval,
        endpoints: vec![ep("101"), ep("102")],
    }
}

#[tokio::test]
async fn an_approval_is_written_once_per_key_for_the_clients_computers_and_read_back() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    Mock::given(method("POST"))
        .and(path("/cwa/api/v1/Batch/ScriptExecute"))
        .and(body_partial_json(json!({
            "EntityType": "Computer", "EntityIds": [101, 102], "ScriptId": 907,
            "Parameters": [
                {"Key": "PatchflowKey", "Value": "2026-12/approval/acme/KB5048667/1"},
                {"Key": "KB", "Value": "KB5048667"},
                {"Key": "Action", "Value": "Approve"}
            ]
        })))
        .respond_with(script_ok())
        .expect(1)
        .mount(&server)
        .await;
    mount_updates(
        &server,
        101,
        "KnowledgeBaseId = 5048667",
        json!([update(
            5048667,
            false,
            false,
            "Approve",
            "0001-01-01T00:00:00"
        )]),
    )
    .await;
    let a = automate(&server);
    let key = "2026-12/approval/acme/KB5048667/1";
    a.push_approval(key, &push(RmmApproval::Approved))
        .await
        .unwrap();
    // A repeat of the key sends nothing.
    a.push_approval(key, &push(RmmApproval::Approved))
        .await
        .unwrap();
    assert_eq!(
        a.approval_state(&ep("101"), &kb("KB5048667"))
            .await
            .unwrap(),
        Some(RmmApproval::Approved)
    );
    server.verify().await;
}

#[tokio::test]
async fn a_patch_without_a_kb_is_not_written_to_automates_policy() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    Mock::given(method("POST"))
        .and(path("/cwa/api/v1/Batch/ScriptExecute"))
        .respond_with(script_ok())
        .expect(0)
        .mount(&server)
        .await;
    let a = automate(&server);
    for id in [
        "C2R-2026-12-365-APPS-FOR-ENTERPRISE",
        "CHROME-144.0.7200.60",
    ] {
        let p = ApprovalPush {
            patch: kb(id),
            ..push(RmmApproval::Approved)
        };
        a.push_approval(&format!("2026-12/approval/acme/{id}/1"), &p)
            .await
            .unwrap();
        assert_eq!(a.approval_state(&ep("101"), &kb(id)).await.unwrap(), None);
    }
    server.verify().await;
}

#[tokio::test]
async fn a_decline_is_written_as_deny_and_automates_names_read_back_as_decisions() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    Mock::given(method("POST"))
        .and(path("/cwa/api/v1/Batch/ScriptExecute"))
        .and(body_partial_json(json!({
            "EntityIds": [101, 102], "ScriptId": 907,
            "Parameters": [
                {"Key": "PatchflowKey", "Value": "k-deny"},
                {"Key": "KB", "Value": "KB5048667"},
                {"Key": "Action", "Value": "Deny"}
            ]
        })))
        .respond_with(script_ok())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/cwa/api/v1/Batch/ScriptExecute"))
        .and(body_partial_json(json!({
            "Parameters": [
                {"Key": "PatchflowKey", "Value": "k-hold"},
                {"Key": "KB", "Value": "KB5048667"},
                {"Key": "Action", "Value": "NotApproved"}
            ]
        })))
        .respond_with(script_ok())
        .expect(1)
        .mount(&server)
        .await;
    let a = automate(&server);
    a.push_approval("k-deny", &push(RmmApproval::Denied))
        .await
        .unwrap();
    a.push_approval("k-hold", &push(RmmApproval::NotApproved))
        .await
        .unwrap();
    server.verify().await;

    for (computer, name, want) in [
        (201, "Deny", Some(RmmApproval::Denied)),
        (202, "Ignore", Some(RmmApproval::Denied)),
        (203, "Not Set", Some(RmmApproval::NotApproved)),
    ] {
        mount_updates(
            &server,
            computer,
            "KnowledgeBaseId = 5048667",
            json!([update(5048667, false, false, name, "0001-01-01T00:00:00")]),
        )
        .await;
        let got = a
            .approval_state(&ep(&computer.to_string()), &kb("KB5048667"))
            .await
            .unwrap();
        assert_eq!(got, want, "{name}");
    }
    // Two rows of the KB that disagree confirm only the least permissive.
    mount_updates(
        &server,
        204,
        "KnowledgeBaseId = 5048667",
        json!([
            update(5048667, false, false, "Approve", "0001-01-01T00:00:00"),
            update(5048667, false, false, "Not Set", "0001-01-01T00:00:00")
        ]),
    )
    .await;
    assert_eq!(
        a.approval_state(&ep("204"), &kb("KB5048667"))
            .await
            .unwrap(),
        Some(RmmApproval::NotApproved)
    );
    // Automate does not know the KB there; a third-party patch is not in its Microsoft updates.
    mount_updates(&server, 205, "KnowledgeBaseId = 5048667", json!([])).await;
    assert_eq!(
        a.approval_state(&ep("205"), &kb("KB5048667"))
            .await
            .unwrap(),
        None
    );
    let before = server.received_requests().await.unwrap().len();
    assert_eq!(
        a.approval_state(&ep("205"), &kb("chrome-131.0.6778.86"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(server.received_requests().await.unwrap().len(), before);
}

#[tokio::test]
async fn an_unknown_approval_name_or_a_missing_script_is_a_clear_error() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_updates(
        &server,
        101,
        "KnowledgeBaseId = 5048667",
        json!([update(
            5048667,
            false,
            false,
            "Maybe Later",
            "0001-01-01T00:00:00"
        )]),
    )
    .await;
    let a = automate(&server);
    let e = a
        .approval_state(&ep("101"), &kb("KB5048667"))
        .await
        .unwrap_err();
    let t = text(&e);
    assert!(
        t.contains("GET /cwa/api/v1/Computers/101/MicrosoftUpdates")
            && t.contains("[0].PolicyApproval.Name")
            && t.contains("Maybe Later"),
        "{t}"
    );
    assert!(!e.is_retryable());

    let unconfigured = Automate::with_http(config(&server), creds(), fast()).unwrap();
    let e = unconfigured
        .push_approval("k", &push(RmmApproval::Approved))
        .await
        .unwrap_err();
    assert!(
        text(&e).contains("automate.scripts.approval"),
        "{}",
        text(&e)
    );
    assert_eq!(
        requests_to(
            &server.received_requests().await.unwrap(),
            "/cwa/api/v1/Batch/ScriptExecute"
        ),
        0
    );
}

#[tokio::test]
async fn a_refused_approval_quotes_automate() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    Mock::given(method("POST"))
        .and(path("/cwa/api/v1/Batch/ScriptExecute"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ScriptResults": [{"EntityId": 102, "ResultDetails": {"ResultStatus": 1, "Message": "Script 907 not found"}}],
            "ContainsUnsuccessfulResults": true
        })))
        .mount(&server)
        .await;
    let a = automate(&server);
    let e = a
        .push_approval("k", &push(RmmApproval::Approved))
        .await
        .unwrap_err();
    let t = text(&e);
    assert!(
        t.contains("Script 907 not found") && t.contains("101, 102"),
        "{t}"
    );
    assert!(!e.is_retryable());
}

fn open_window(now: DateTime<Utc>) -> Window {
    Window {
        start: now - Duration::minutes(10),
        end: now + Duration::hours(4),
    }
}

#[tokio::test]
async fn an_install_is_deployed_once_in_its_window_and_not_while_a_patch_job_runs() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_stats(&server, 101, stats(false, "2026-11-12T04:00:00")).await;
    mount_stats(&server, 102, stats(true, "2026-11-12T04:00:00")).await;
    Mock::given(method("POST"))
        .and(path("/cwa/api/v1/PatchActions/DeployAllApproved"))
        .and(body_json(json!({"EntityType": 1, "EntityId": 101})))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let a = automate(&server);
    let now = Utc::now();
    let install = |id: &str| RmmCommand::ScheduleInstall {
        endpoint: ep(id),
        window: open_window(now),
        patches: vec![kb("KB5048667")],
    };
    a.send("2026-12/rmm/101/1/schedule_install", &install("101"))
        .await
        .unwrap();
    a.send("2026-12/rmm/101/1/schedule_install", &install("101"))
        .await
        .unwrap();
    // A patch job already runs on 102: that job is the deployment.
    a.send("2026-12/rmm/102/1/schedule_install", &install("102"))
        .await
        .unwrap();
    server.verify().await;
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(
        requests_to(&reqs, "/cwa/api/v1/Batch/ScriptExecute"),
        0,
        "no install script"
    );
}

#[tokio::test]
async fn an_install_outside_its_window_is_refused_and_nothing_is_sent() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    let a = automate(&server);
    let now = at(12, 0);
    for window in [
        Window {
            start: at(14, 0),
            end: at(18, 0),
        },
        Window {
            start: at(6, 0),
            end: at(10, 0),
        },
    ] {
        let e = a
            .deploy_approved("k", &ep("101"), window, now)
            .await
            .unwrap_err();
        assert!(
            text(&e).contains("DeployAllApproved installs at once"),
            "{}",
            text(&e)
        );
        assert!(!e.is_retryable());
    }
    // Five minutes early is in time (clocks differ).
    mount_stats(&server, 101, stats(false, "2026-11-12T04:00:00")).await;
    Mock::given(method("POST"))
        .and(path("/cwa/api/v1/PatchActions/DeployAllApproved"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    a.deploy_approved(
        "k",
        &ep("101"),
        Window {
            start: at(12, 4),
            end: at(16, 0),
        },
        now,
    )
    .await
    .unwrap();
    server.verify().await;
}

#[tokio::test]
async fn a_token_refused_by_the_deployment_is_renewed_and_the_deployment_sent_once_more() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", Some(1)).await;
    mount_token(&server, "t2", None).await;
    mount_stats(&server, 101, stats(false, "2026-11-12T04:00:00")).await;
    Mock::given(method("POST"))
        .and(path("/cwa/api/v1/PatchActions/DeployAllApproved"))
        .and(header("Authorization", "Bearer t1"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/cwa/api/v1/PatchActions/DeployAllApproved"))
        .and(header("Authorization", "Bearer t2"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let a = automate(&server);
    let now = at(12, 0);
    let window = Window {
        start: at(11, 0),
        end: at(15, 0),
    };
    a.deploy_approved("k", &ep("101"), window, now)
        .await
        .unwrap();
    server.verify().await;
}

/// What computer 101 reports since 02:00 for these expected KBs.
async fn kb_reports(
    server: &MockServer,
    expect: &[&str],
) -> Result<Vec<patchflow_core::ports::rmm::RmmReport>, PortError> {
    let a = automate(server);
    let expect: Vec<PatchId> = expect.iter().map(|k| kb(k)).collect();
    a.reports(&ep("101"), at(2, 0), &expect).await
}

const TWO_KBS: &str = "KnowledgeBaseId = 5048667 or KnowledgeBaseId = 5048685";

#[tokio::test]
async fn every_expected_kb_installed_is_the_install_and_the_start_up_after_it_the_reboot() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_stats(&server, 101, stats(false, "2026-12-10T03:50:00")).await;
    mount_updates(
        &server,
        101,
        TWO_KBS,
        json!([
            update(5048667, true, false, "Approve", "2026-12-10T03:20:00"),
            update(5048685, true, false, "Approve", "2026-12-10T03:45:00")
        ]),
    )
    .await;
    mount_state(
        &server,
        101,
        json!({"LastStartup": "2026-12-10T04:05:00", "IsRebootNeeded": false}),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/Computers/101/Monitors"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    // Third-party patches are not in Automate's Microsoft updates and are not waited for.
    let reports = kb_reports(&server, &["KB5048667", "KB5048685", "chrome-131"])
        .await
        .unwrap();
    let events: Vec<(DateTime<Utc>, &RmmEvent)> =
        reports.iter().map(|r| (r.at, &r.event)).collect();
    assert_eq!(
        events,
        [
            (at(3, 45), &RmmEvent::InstallSucceeded),
            (at(4, 5), &RmmEvent::RebootConfirmed)
        ]
    );
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(
        requests_to(&reqs, "/cwa/api/v1/Computers/101"),
        0,
        "GET /Computers/{{id}} is not in the published specification"
    );
    assert_eq!(
        requests_to(&reqs, "/cwa/api/v1/Computers/101/ScriptHistory"),
        0
    );
}

#[tokio::test]
async fn a_reboot_still_needed_is_not_confirmed_and_a_kb_not_installed_is_not_yet() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_stats(&server, 101, stats(false, "2026-12-10T03:50:00")).await;
    mount_updates(
        &server,
        101,
        TWO_KBS,
        json!([
            update(5048667, true, false, "Approve", "2026-12-10T03:20:00"),
            update(5048685, true, false, "Approve", "2026-12-10T03:45:00")
        ]),
    )
    .await;
    mount_state(
        &server,
        101,
        json!({"LastStartup": "2026-12-10T04:05:00", "IsRebootNeeded": true}),
    )
    .await;
    let reports = kb_reports(&server, &["KB5048667", "KB5048685"])
        .await
        .unwrap();
    assert_eq!(
        reports.iter().map(|r| &r.event).collect::<Vec<_>>(),
        [&RmmEvent::InstallSucceeded]
    );

    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_stats(&server, 101, stats(false, "2026-12-10T03:50:00")).await;
    mount_updates(
        &server,
        101,
        TWO_KBS,
        json!([
            update(5048667, true, false, "Approve", "2026-12-10T03:20:00"),
            update(5048685, false, false, "Approve", "0001-01-01T00:00:00")
        ]),
    )
    .await;
    let reports = kb_reports(&server, &["KB5048667", "KB5048685"])
        .await
        .unwrap();
    assert!(reports.is_empty(), "{reports:?}");
}

#[tokio::test]
async fn an_expected_kb_automate_does_not_list_on_the_computer_is_not_waited_for() {
    // Assumed to apply without a scan, KB5048685 is not an update this computer has: the
    // install is the listed KB's, and with none listed the deployment's patch job.
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_stats(&server, 101, stats(false, "2026-12-10T03:50:00")).await;
    mount_updates(
        &server,
        101,
        TWO_KBS,
        json!([update(
            5048667,
            true,
            false,
            "Approve",
            "2026-12-10T03:20:00"
        )]),
    )
    .await;
    mount_state(
        &server,
        101,
        json!({"LastStartup": "2026-12-10T03:10:00", "IsRebootNeeded": false}),
    )
    .await;
    let reports = kb_reports(&server, &["KB5048667", "KB5048685"])
        .await
        .unwrap();
    assert_eq!(
        reports.iter().map(|r| &r.event).collect::<Vec<_>>(),
        [&RmmEvent::InstallSucceeded]
    );

    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_stats(&server, 101, stats(false, "2026-12-10T03:50:00")).await;
    mount_updates(&server, 101, TWO_KBS, json!([])).await;
    mount_state(
        &server,
        101,
        json!({"LastStartup": "2026-12-10T03:10:00", "IsRebootNeeded": false}),
    )
    .await;
    let reports = kb_reports(&server, &["KB5048667", "KB5048685"])
        .await
        .unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].event, RmmEvent::InstallSucceeded);
    assert_eq!(reports[0].at.to_rfc3339(), "2026-12-10T03:50:00+00:00");
}

#[tokio::test]
async fn a_failed_kb_is_the_install_failure_naming_it() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_stats(&server, 101, stats(false, "2026-12-10T03:50:00")).await;
    mount_updates(
        &server,
        101,
        TWO_KBS,
        json!([
            update(5048667, true, false, "Approve", "2026-12-10T03:20:00"),
            update(5048685, false, true, "Approve", "2026-12-10T03:48:00")
        ]),
    )
    .await;
    let reports = kb_reports(&server, &["KB5048667", "KB5048685"])
        .await
        .unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].at, at(3, 48));
    let RmmEvent::InstallFailed { detail, patches } = &reports[0].event else {
        panic!("{reports:?}")
    };
    assert_eq!(patches, &[kb("KB5048685")]);
    assert!(
        detail.contains("KB5048685 (2026-12 Update (KB5048685))") && !detail.contains("KB5048667"),
        "{detail}"
    );
    // No reboot is looked for after a failed install.
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(requests_to(&reqs, "/cwa/api/v1/Computers"), 0);
}

#[tokio::test]
async fn a_failure_left_from_before_the_commands_or_a_running_job_is_not_a_result_yet() {
    // KB5048685 failed last month; no patch job has run since the commands.
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_stats(&server, 101, stats(false, "2026-11-12T04:00:00")).await;
    mount_updates(
        &server,
        101,
        TWO_KBS,
        json!([
            update(5048667, true, false, "Approve", "2026-12-10T03:20:00"),
            update(5048685, false, true, "Approve", "2026-11-12T04:00:00")
        ]),
    )
    .await;
    let reports = kb_reports(&server, &["KB5048667", "KB5048685"])
        .await
        .unwrap();
    assert!(reports.is_empty(), "{reports:?}");

    // A patch job is running: nothing is judged until it ends.
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_stats(&server, 101, stats(true, "2026-12-10T03:50:00")).await;
    let reports = kb_reports(&server, &["KB5048667"]).await.unwrap();
    assert!(reports.is_empty(), "{reports:?}");
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(
        requests_to(&reqs, "/cwa/api/v1/Computers/101/MicrosoftUpdates"),
        0
    );
}

#[tokio::test]
async fn maintenance_mode_and_an_offline_agent_are_read_from_the_computer() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    mount_state(
        &server,
        101,
        json!({"Status": "Online", "IsMaintenanceModeEnabled": true,
               "RemoteAgentLastContact": "2026-12-10T03:05:00"}),
    )
    .await;
    mount_state(
        &server,
        102,
        json!({"Status": "Offline", "IsMaintenanceModeEnabled": false,
               "RemoteAgentLastContact": "2026-12-09T22:40:00Z"}),
    )
    .await;
    let a = automate(&server);
    let s = a.agent_state(&ep("101")).await.unwrap();
    assert!(s.online && s.maintenance, "{s:?}");
    assert_eq!(s.power, PowerState::Awake);
    assert_eq!(s.last_contact, Some(at(3, 5)));
    let s = a.agent_state(&ep("102")).await.unwrap();
    assert!(!s.online && !s.maintenance, "{s:?}");
    assert_eq!(s.power, PowerState::Unknown);
    assert_eq!(
        s.last_contact,
        Some(Utc.with_ymd_and_hms(2026, 12, 9, 22, 40, 0).unwrap())
    );
}

#[tokio::test]
async fn an_unexpected_answer_names_the_route_and_the_field() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    // Status neither Online nor Offline; maintenance mode not said.
    mount_state(&server, 101, json!({"Status": "Sleepy"})).await;
    mount_state(
        &server,
        102,
        json!({"Status": "Online", "IsMaintenanceModeEnabled": null}),
    )
    .await;
    // A server that ignores `condition` answers another computer.
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/Computers"))
        .and(query_param("condition", "Id = 103"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([computer(
            7,
            "OTHER",
            (5, "Acme Corp"),
            (1, "HQ"),
            "Server"
        )])))
        .mount(&server)
        .await;
    // No such computer.
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/Computers"))
        .and(query_param("condition", "Id = 104"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    // PatchingStats without PatchJobRunning; MicrosoftUpdates as an object.
    mount_stats(&server, 105, json!({"ComputerId": 105, "Stage": "Pilot"})).await;
    mount_stats(&server, 106, stats(false, "2026-12-10T03:50:00")).await;
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/Computers/106/MicrosoftUpdates"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"Items": []})))
        .mount(&server)
        .await;
    let a = automate(&server);

    let t = text(&a.agent_state(&ep("101")).await.unwrap_err());
    assert!(
        t.contains("GET /cwa/api/v1/Computers")
            && t.contains("`[0].Status`")
            && t.contains("Sleepy"),
        "{t}"
    );
    let t = text(&a.agent_state(&ep("102")).await.unwrap_err());
    assert!(t.contains("`[0].IsMaintenanceModeEnabled`"), "{t}");
    let t = text(&a.agent_state(&ep("103")).await.unwrap_err());
    assert!(t.contains("ignores `condition`"), "{t}");
    let e = a.agent_state(&ep("104")).await.unwrap_err();
    assert!(matches!(e, PortError::NotFound(_)), "{e:?}");
    assert!(text(&e).contains("no computer with Id 104"), "{}", text(&e));

    let e = a
        .reports(&ep("105"), at(2, 0), &[kb("KB5048667")])
        .await
        .unwrap_err();
    let t = text(&e);
    assert!(
        t.contains("GET /cwa/api/v1/Computers/105/PatchingStats") && t.contains("PatchJobRunning"),
        "{t}"
    );
    assert!(!e.is_retryable());
    let t = text(
        &a.reports(&ep("106"), at(2, 0), &[kb("KB5048667")])
            .await
            .unwrap_err(),
    );
    assert!(
        t.contains("GET /cwa/api/v1/Computers/106/MicrosoftUpdates") && t.contains("malformed"),
        "{t}"
    );
}

#[test]
fn kb_ids_and_approval_names() {
    assert_eq!(
        crate::automate::governance::kb_number(&kb("KB5048667")),
        Some(5048667)
    );
    assert_eq!(
        crate::automate::governance::kb_number(&kb("kb5048667")),
        Some(5048667)
    );
    assert_eq!(crate::automate::governance::kb_number(&kb("KB")), None);
    assert_eq!(
        crate::automate::governance::kb_number(&kb("chrome-131")),
        None
    );
    assert_eq!(
        crate::automate::governance::kb_number(&kb("C2R-2412")),
        None
    );
    use crate::automate::governance::approval_named as named;
    assert_eq!(named(Some("Approve")), Some(RmmApproval::Approved));
    assert_eq!(named(Some("approved")), Some(RmmApproval::Approved));
    assert_eq!(named(Some("Deny")), Some(RmmApproval::Denied));
    assert_eq!(named(Some("Ignore")), Some(RmmApproval::Denied));
    assert_eq!(named(Some("Remove")), Some(RmmApproval::Denied));
    assert_eq!(named(Some("Not Set")), Some(RmmApproval::NotApproved));
    assert_eq!(named(Some("Not_Approved")), Some(RmmApproval::NotApproved));
    assert_eq!(named(None), Some(RmmApproval::NotApproved));
    assert_eq!(named(Some("Install later")), None);
}

#[tokio::test]
async fn a_microsoft_updates_row_without_its_install_state_is_an_error_naming_the_field() {
    // The pull counts such a row as needed; governance can neither judge nor read back from it.
    let server = MockServer::start().await;
    mount_token(&server, "t1", None).await;
    let mut row = update(5048667, false, false, "Approve", "0001-01-01T00:00:00");
    row.as_object_mut().unwrap().remove("IsFailed");
    mount_updates(&server, 101, "KnowledgeBaseId = 5048667", json!([row])).await;
    mount_stats(&server, 101, stats(false, "2026-12-10T03:50:00")).await;
    let a = automate(&server);
    let held = a.approval_state(&ep("101"), &kb("KB5048667")).await;
    let seen = a.reports(&ep("101"), at(2, 0), &[kb("KB5048667")]).await;
    for e in [held.map(|_| ()), seen.map(|_| ())].map(Result::unwrap_err) {
        let t = text(&e);
        let named = t.contains("Computers/101/MicrosoftUpdates") && t.contains("`[0].IsFailed`");
        assert!(named && !e.is_retryable(), "{t}");
    }
}
