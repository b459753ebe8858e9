//! `patchflow inventory pull` and `patchflow catalog pull` against local servers speaking
//! ConnectWise Automate's and Microsoft's documented shapes.

use std::path::Path;

use serde_json::{json, Value};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{demo_catalog, fixture, patchflow};

async fn automate() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/cwa/api/v1/apitoken"))
        .and(header("ClientId", "cid"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "AccessToken": "tok", "ExpirationDate": "2099-01-01T00:00:00"
        })))
        .mount(&server)
        .await;
    let computer = |id: u64, name: &str, client: (u64, &str), kind: &str| {
        json!({
            "Id": id, "ComputerName": name, "Client": {"Id": client.0, "Name": client.1},
            "Location": {"Id": 1, "Name": "HQ"}, "Type": kind, "Status": "Online",
            "OperatingSystemName": "Microsoft Windows Server 2022 Standard x64",
            "WindowsUpdateDate": "2026-11-12T04:00:00", "IsRebootNeeded": true
        })
    };
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/Computers"))
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            computer(101, "ACME-DC01", (5, "Acme Corp"), "Server"),
            computer(102, "ACME-WS01", (5, "Acme Corp"), "Workstation"),
            computer(301, "GAMMA-PROBE", (9, "Gamma"), "NetworkProbe"),
        ])))
        .mount(&server)
        .await;
    // Patch state: ACME-WS01 has never been scanned; ACME-DC01 misses one KB and has one
    // installed; GAMMA-PROBE needs nothing.
    for (id, no_inventory) in [(101, false), (102, true), (301, false)] {
        Mock::given(method("GET"))
            .and(path(format!("/cwa/api/v1/Computers/{id}/PatchingStats")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "ComputerId": id, "NoPatchInventory": no_inventory, "PatchJobRunning": false,
                "Stage": "Production", "MissingPatchCount": 1, "FailedPatchCount": 0
            })))
            .mount(&server)
            .await;
    }
    let row = |kb: Value, installed: bool| {
        json!({
            "ComputerId": 101, "KnowledgeBaseId": kb, "Title": "2026-12 Cumulative Update",
            "Category": "Security Updates", "Severity": "Critical",
            "ReleaseDate": "2026-12-08T18:00:00", "IsInstalled": installed, "IsFailed": false,
            "PolicyApproval": {"Id": 1, "Name": "Approve"}
        })
    };
    for (id, rows) in [
        (
            101,
            json!([row(json!(5048667), false), row(json!("KB5044281"), true)]),
        ),
        (301, json!([])),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("/cwa/api/v1/Computers/{id}/MicrosoftUpdates")))
            .respond_with(ResponseTemplate::new(200).set_body_json(rows))
            .mount(&server)
            .await;
    }
    server
}

fn connectors(dir: &Path, server: &MockServer, gamma_timezone: bool) -> std::path::PathBuf {
    let gamma = if gamma_timezone {
        "[automate.clients.9]\ntimezone = \"Europe/London\"\n"
    } else {
        ""
    };
    let p = dir.join("connectors.toml");
    std::fs::write(
        &p,
        format!(
            "[automate]\nbase_url = \"{}\"\n[automate.clients.5]\nid = \"acme\"\ntimezone = \"America/New_York\"\n{gamma}\n[msrc]\nbase_url = \"{}/cvrf/v3.0\"\n",
            server.uri(),
            server.uri()
        ),
    )
    .unwrap();
    p
}

fn credentials(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("rmm.json");
    std::fs::write(
        &p,
        r#"{"username": "pf", "password": "s3cret-pw", "client_id": "cid"}"#,
    )
    .unwrap();
    p
}

async fn run(cmd: assert_cmd::Command) -> std::process::Output {
    let mut cmd = cmd;
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inventory_pulled_from_automate_is_the_contracts_and_plans() {
    let server = automate().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet.json");
    let mut cmd = patchflow();
    cmd.args(["inventory", "pull", "--rmm", "connectwise", "--connectors"])
        .arg(connectors(dir.path(), &server, true))
        .arg("--credentials")
        .arg(credentials(dir.path()))
        .arg("--out")
        .arg(&out);
    let o = run(cmd).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("3 endpoints of 2 clients"));
    let inv: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(inv["clients"][0]["id"], "acme");
    let dc = &inv["endpoints"][0];
    assert_eq!(
        (dc["id"].as_str(), dc["kind"].as_str()),
        (Some("101"), Some("server"))
    );
    assert_eq!(dc["rmm_status"]["reboot_needed"], true);
    assert_eq!(dc["rmm_status"]["agent"], "Online");
    // Each computer's patch state: what it needs, or nothing known.
    assert_eq!(dc["applicable"], json!(["KB5048667"]));
    assert_eq!(dc["os"], "Microsoft Windows Server 2022 Standard x64");
    assert_eq!(dc["needed"][0]["severity"], "critical");
    assert_eq!(dc["needed"][0]["released"], "2026-12-08T18:00:00Z");
    assert_eq!(dc["rmm_status"]["patch_stage"], "Production");
    let ws = &inv["endpoints"][1];
    assert_eq!(ws["id"], "102");
    assert!(ws.get("applicable").is_none(), "{ws}");
    assert_eq!(ws["rmm_status"]["no_patch_inventory"], true);
    assert_eq!(inv["endpoints"][2]["applicable"], json!([]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("1 computer(s) have no patch inventory")
            && err.contains("ACME-WS01 (computer 102, client acme)"),
        "{err}"
    );

    // The engineer plans against it before trusting the connectors.
    let plan = patchflow()
        .args([
            "plan",
            "--cycle",
            "2026-12",
            "--format",
            "json",
            "--inventory",
        ])
        .arg(&out)
        .arg("--catalog")
        .arg(demo_catalog())
        .output()
        .unwrap();
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_left_out_is_named_and_the_rest_is_written() {
    let server = automate().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet.json");
    let mut cmd = patchflow();
    cmd.args(["inventory", "pull", "--connectors"])
        .arg(connectors(dir.path(), &server, false))
        .env(
            "PATCHFLOW_RMM_CREDENTIALS",
            r#"{"username": "pf", "password": "s3cret-pw", "client_id": "cid"}"#,
        )
        .arg("--out")
        .arg(&out);
    let o = run(cmd).await;
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Gamma (Automate client 9)") && err.contains("no time zone"),
        "{err}"
    );
    let inv: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(inv["endpoints"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_write_nothing_and_never_show_the_password() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/cwa/api/v1/apitoken"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"code": "Unauthorized"})))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet.json");
    let mut cmd = patchflow();
    cmd.args(["inventory", "pull", "--connectors"])
        .arg(connectors(dir.path(), &server, true))
        .arg("--credentials")
        .arg(credentials(dir.path()))
        .arg("--out")
        .arg(&out);
    let o = run(cmd).await;
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("refused the credentials of `pf`"), "{err}");
    assert!(!err.contains("s3cret-pw"), "{err}");
    assert!(!out.exists());
    // Only the two files the test wrote: no partial inventory either.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn missing_connectors_or_credentials_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet.json");
    let o = patchflow()
        .args(["inventory", "pull", "--out"])
        .arg(&out)
        .env_remove("PATCHFLOW_CONNECTORS_CONFIG")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--connectors"));

    let conn = dir.path().join("c.toml");
    std::fs::write(&conn, "[automate]\nbase_url = \"http://127.0.0.1:9\"\n").unwrap();
    let o = patchflow()
        .args(["inventory", "pull", "--connectors"])
        .arg(&conn)
        .arg("--out")
        .arg(&out)
        .env_remove("PATCHFLOW_RMM_CREDENTIALS")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("PATCHFLOW_RMM_CREDENTIALS"));
}

#[test]
fn a_csv_inventory_file_is_checked_and_written_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("fleet.csv");
    std::fs::write(
        &csv,
        "id,client,client_timezone,kind,hostname\nws-1,acme,America/Chicago,workstation,ACME-WS1\n",
    )
    .unwrap();
    let out = dir.path().join("fleet.json");
    let o = patchflow()
        .args(["inventory", "pull", "--rmm", "file", "--inventory"])
        .arg(&csv)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let inv: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(inv["endpoints"][0]["hostname"], "ACME-WS1");
    assert_eq!(inv["clients"][0]["timezone"], "America/Chicago");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_months_release_is_pulled_merged_with_third_party_patches_and_written() {
    let server = MockServer::start().await;
    let doc: Value =
        serde_json::from_slice(&std::fs::read(fixture("cvrf-2026-Dec.json")).unwrap()).unwrap();
    Mock::given(method("GET"))
        .and(path("/cvrf/v3.0/cvrf/2026-Dec"))
        .and(header("Accept", "application/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(doc))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let third = dir.path().join("third-party-2026-12.json");
    std::fs::write(
        &third,
        r#"{"patches": [{"id": "CHROME-131", "vendor": "google", "classification": "security",
             "severity": "critical", "released": "2026-12-03T00:00:00Z"}]}"#,
    )
    .unwrap();
    let out = dir.path().join("catalog.json");
    let mut cmd = patchflow();
    cmd.args(["catalog", "pull", "--cycle", "2026-12", "--connectors"])
        .arg(connectors(dir.path(), &server, true))
        .arg("--third-party")
        .arg(dir.path().join("third-party-{cycle}.json"))
        .arg("--out")
        .arg(&out);
    let o = run(cmd).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cat: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let ids: Vec<&str> = cat["patches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "KB5048667",
            "KB5048685",
            "C2R-2026-12-365-APPS-FOR-ENTERPRISE",
            "RN-2026-12-EDGE",
            "CHROME-131"
        ]
    );
    // What was read of each kind, and the vendor fix left out, on stderr; stdout says what
    // was written.
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(
            "read 2026-Dec: 2 KB updates, 1 Click-to-Run, 1 release-notes fix, 1 third-party; \
             1 vendor fix left out"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("left out: CVE-2026-21004 (Vulnerability[1].Remediations[1])")
            && stderr.contains("16.0.18227.20162"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("5 patches for 2026-12"), "{stdout}");
    let c2r = cat["patches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "C2R-2026-12-365-APPS-FOR-ENTERPRISE")
        .unwrap();
    assert_eq!(c2r["classification"], "security");
    assert_eq!(c2r["severity"], "important");
    assert_eq!(c2r["cves"], json!(["CVE-2026-21004"]));
    assert_eq!(c2r["products"].as_array().map(Vec::len), Some(2));
    let kb = cat["patches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "KB5048667")
        .unwrap();
    assert_eq!(kb["severity"], "critical");
    assert_eq!(kb["vendor"], "microsoft");

    // A month Microsoft has not published yet.
    let mut cmd = patchflow();
    cmd.args(["catalog", "pull", "--cycle", "2027-01", "--connectors"])
        .arg(dir.path().join("connectors.toml"))
        .arg("--out")
        .arg(dir.path().join("jan.json"));
    let o = run(cmd).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not published"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!dir.path().join("jan.json").exists());
}
