//! inventory-sync on the embedded adapters, invoked with the checked-in scheduled events.

use patchflow_core::ports::state::TierStore;
use patchflow_core::tier::TierState;
use patchflow_lambda::testing::{
    fixture, lambda_event, release, workspace_file, Embedded, CATALOG, INVENTORY,
};
use patchflow_lambda::Stage;
use patchflow_pipeline::error::HandlerError;
use serde_json::{json, Value};

use super::*;
use patchflow_lambda::Sources;

fn function() -> InventorySync {
    InventorySync::new(
        &workspace_file(INVENTORY).display().to_string(),
        &workspace_file(CATALOG).display().to_string(),
    )
}

fn event(name: &str) -> LambdaEvent<Value> {
    lambda_event(fixture(name).unwrap())
}

fn catalog_ids() -> Vec<String> {
    let text =
        std::fs::read_to_string(workspace_file("functions/cli/demo/catalog-2026-12.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let mut ids: Vec<String> = doc["patches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn at_the_release_it_opens_the_cycle_and_queues_every_patch_for_approval() {
    // The invocation comes a little late; the event's time is what counts.
    let p = Embedded::new(release() + chrono::Duration::minutes(3)).unwrap();
    let report = function()
        .handle(
            &p.env,
            &p.queues,
            event("scheduled-inventory-sync.json"),
            p.now(),
        )
        .await
        .unwrap();
    assert_eq!(report.opened, Some("2026-12".parse().unwrap()));
    assert_eq!(report.endpoints.written, 9);
    assert_eq!((report.parts, report.rostered), (4, 9));
    // One part per client on the rollout queue; nothing is open until they are written.
    let parts = p.take(Stage::Rollout).await.unwrap();
    let mut keys: Vec<&str> = parts.iter().map(|m| m.idempotency_key.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["andes", "harbour", "himal", "kiwi"].map(|c| format!("2026-12/open/{c}"))
    );
    assert!(p
        .env
        .state
        .list_tiers("2026-12".parse().unwrap())
        .await
        .unwrap()
        .is_empty());
    assert!(p.take(Stage::Approval).await.unwrap().is_empty());
    for m in &parts {
        let body = m.to_body();
        let outcome =
            patchflow_pipeline::batch::handle(&p.env, Stage::Rollout, &body, p.now()).await;
        assert!(
            matches!(outcome, patchflow_pipeline::batch::Outcome::Done(_)),
            "{outcome:?}"
        );
    }
    // The last part asks the coordinator, which writes the tiers and queues the approvals.
    let coordinator = p.take(Stage::Rollout).await.unwrap();
    assert_eq!(coordinator.len(), 1, "{coordinator:?}");
    assert!(coordinator[0]
        .idempotency_key
        .starts_with("2026-12/open/parts-done/"));
    let body = coordinator[0].to_body();
    let outcome = patchflow_pipeline::batch::handle(&p.env, Stage::Rollout, &body, p.now()).await;
    assert!(
        matches!(&outcome, patchflow_pipeline::batch::Outcome::Done(m) if m.contains("5 tier(s), 9 endpoint(s) in scope, 0 left out, 4 client(s)")),
        "{outcome:?}"
    );

    let tiers = p
        .env
        .state
        .list_tiers("2026-12".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(tiers.len(), 5);
    assert!(tiers
        .iter()
        .all(|t| t.state == TierState::Scheduled && t.updated_at == release()));

    let messages = p.take(Stage::Approval).await.unwrap();
    assert!(messages
        .iter()
        .all(|m| m.kind == "evaluate_patch" && m.cycle.to_string() == "2026-12"));
    let mut keys: Vec<String> = messages.iter().map(|m| m.idempotency_key.clone()).collect();
    keys.sort();
    let expected: Vec<String> = catalog_ids()
        .iter()
        .map(|id| format!("2026-12/evaluate/{id}"))
        .collect();
    assert_eq!(keys, expected);
    for stage in [
        Stage::Rollout,
        Stage::Schedule,
        Stage::Failure,
        Stage::Evidence,
    ] {
        assert!(p.take(stage).await.unwrap().is_empty(), "{stage}");
    }
}

#[tokio::test]
async fn a_second_run_finds_the_cycle_opening_or_open_and_sends_nothing_again() {
    let p = Embedded::new(release()).unwrap();
    let f = function();
    f.handle(
        &p.env,
        &p.queues,
        event("scheduled-inventory-sync.json"),
        p.now(),
    )
    .await
    .unwrap();
    // Its opening started: one part per client.
    assert_eq!(p.take(Stage::Rollout).await.unwrap().len(), 4);
    let again = f
        .handle(
            &p.env,
            &p.queues,
            event("scheduled-inventory-sync.json"),
            p.now(),
        )
        .await
        .unwrap();
    assert_eq!(again.opened, None);
    assert_eq!((again.endpoints.written, again.endpoints.unchanged), (0, 9));
    // Opening, not open: the tick's coordinator finishes it, the sync sends nothing again.
    assert!(p.take(Stage::Rollout).await.unwrap().is_empty());
    assert!(p.take(Stage::Approval).await.unwrap().is_empty());
    // The parts taken above were lost: the hourly tick's coordinator sends them again, and
    // once they are written the cycle opens. A third run then sends nothing either.
    let tick = patchflow_pipeline::tick::tick(&p.env, p.now())
        .await
        .unwrap();
    assert_eq!((tick.cycles, tick.messages), (0, 1));
    let stats = patchflow_pipeline::pump::drain(
        &p.env,
        &p.queues,
        Stage::Rollout,
        p.now(),
        patchflow_pipeline::pump::PumpOptions::default(),
    )
    .await
    .unwrap();
    // The tick's coordinator, 4 parts sent again, the last part's coordinator.
    assert_eq!((stats.done, stats.retried, stats.dead_lettered), (6, 0, 0));
    assert_eq!(p.take(Stage::Approval).await.unwrap().len(), 12);
    let third = f
        .handle(
            &p.env,
            &p.queues,
            event("scheduled-inventory-sync.json"),
            p.now(),
        )
        .await
        .unwrap();
    assert_eq!(third.opened, None);
    assert!(p.take(Stage::Rollout).await.unwrap().is_empty());
}

#[tokio::test]
async fn before_the_release_it_syncs_the_inventory_and_opens_nothing() {
    let p = Embedded::new(release()).unwrap();
    let report = function()
        .handle(
            &p.env,
            &p.queues,
            event("scheduled-inventory-sync-before-release.json"),
            p.now(),
        )
        .await
        .unwrap();
    assert_eq!(report.opened, None);
    assert_eq!(report.endpoints.written, 9);
    assert!(p
        .env
        .state
        .list_tiers("2026-12".parse().unwrap())
        .await
        .unwrap()
        .is_empty());
    assert!(p.take(Stage::Approval).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_input_without_time_runs_for_now() {
    let p = Embedded::new(release()).unwrap();
    let early = release() - chrono::Duration::hours(1);
    let report = function()
        .handle(&p.env, &p.queues, lambda_event(json!({})), early)
        .await
        .unwrap();
    assert_eq!(report.opened, None);
    let report = function()
        .handle(
            &p.env,
            &p.queues,
            lambda_event(json!({"source": "manual"})),
            release(),
        )
        .await
        .unwrap();
    assert_eq!(report.opened, Some("2026-12".parse().unwrap()));
}

#[tokio::test]
async fn bad_input_fails_the_invocation_naming_what_is_wrong() {
    let p = Embedded::new(release()).unwrap();
    let e = function()
        .handle(
            &p.env,
            &p.queues,
            lambda_event(json!({"time": "soon"})),
            p.now(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, HandlerError::Poison(m) if m.contains("`time`")),
        "{e}"
    );

    let missing = InventorySync::new("/nonexistent/inventory.json", "/nonexistent/{cycle}.json");
    let e = missing
        .handle(
            &p.env,
            &p.queues,
            event("scheduled-inventory-sync.json"),
            p.now(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, HandlerError::Poison(m) if m.contains("/nonexistent/inventory.json")),
        "{e}"
    );
}

#[test]
fn it_needs_the_inventory_and_catalog_paths_to_start() {
    let base = [
        ("PATCHFLOW_EVIDENCE_BUCKET", "b"),
        ("PATCHFLOW_STATE_TABLE", "t"),
        ("PATCHFLOW_QUEUE_PREFIX", "q"),
    ];
    let lookup = |extra: Vec<(&'static str, &'static str)>| {
        move |name: &str| {
            base.iter()
                .chain(extra.iter())
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    let config = Config::from_lookup(lookup(vec![])).unwrap();
    let e = InventorySync::from_config(&config, Sources::files(&config))
        .unwrap_err()
        .to_string();
    assert!(e.contains("PATCHFLOW_INVENTORY_PATH"), "{e}");
    let config = Config::from_lookup(lookup(vec![(
        "PATCHFLOW_INVENTORY_PATH",
        "/var/task/inventory.json",
    )]))
    .unwrap();
    let e = InventorySync::from_config(&config, Sources::files(&config))
        .unwrap_err()
        .to_string();
    assert!(e.contains("PATCHFLOW_CATALOG_PATH"), "{e}");
    let config = Config::from_lookup(lookup(vec![
        ("PATCHFLOW_INVENTORY_PATH", "/var/task/inventory.json"),
        ("PATCHFLOW_CATALOG_PATH", "/var/task/catalog-{cycle}.json"),
    ]))
    .unwrap();
    assert!(InventorySync::from_config(&config, Sources::files(&config)).is_ok());
}

#[test]
fn the_scheduled_fixtures_are_eventbridge_scheduled_events() {
    use patchflow_lambda::testing::fixture;
    for name in [
        "scheduled-inventory-sync.json",
        "scheduled-inventory-sync-before-release.json",
        "scheduled-ring-promotion-tick.json",
    ] {
        let e: patchflow_lambda::EventBridgeEvent = fixture(name).unwrap();
        assert_eq!(e.detail_type, "Scheduled Event", "{name}");
        assert!(
            ["aws.events", "aws.scheduler"].contains(&e.source.as_str()),
            "{name}"
        );
        assert!(e.time.is_some(), "{name}");
    }
}

#[test]
fn the_wiring_table_has_its_schedule_and_its_files() {
    use patchflow_lambda::Function;
    let w = patchflow_lambda::wiring::function(InventorySync::NAME).expect("in the wiring table");
    assert_eq!(w.consumes, None);
    assert!(w.scheduled);
    let required: Vec<_> = w.required().collect();
    assert!(required.contains(&patchflow_lambda::config::INVENTORY_PATH));
    assert!(required.contains(&patchflow_lambda::config::CATALOG_PATH));
}

#[tokio::test]
async fn the_report_names_computers_automate_has_no_patch_inventory_of() {
    use std::sync::Arc;

    use patchflow_connectors::automate::{Automate, AutomateConfig};
    use patchflow_connectors::file::FileCatalog;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    // GIVEN an Automate server with a scanned server and a workstation it never scanned
    let server = MockServer::start().await;
    let answer = |verb: &str, p: String, body: Value| {
        Mock::given(method(verb))
            .and(path(p))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
    };
    answer(
        "POST",
        "/cwa/api/v1/apitoken".into(),
        json!({"AccessToken": "tok", "ExpirationDate": "2099-01-01T00:00:00"}),
    )
    .mount(&server)
    .await;
    let computer = |id: u64, name: &str, kind: &str| {
        json!({
            "Id": id, "ComputerName": name, "Client": {"Id": 5, "Name": "Acme Corp"},
            "Location": {"Id": 1, "Name": "HQ"}, "Type": kind, "Status": "Online",
            "OperatingSystemName": "Microsoft Windows 11 Pro x64"
        })
    };
    answer(
        "GET",
        "/cwa/api/v1/Computers".into(),
        json!([
            computer(101, "ACME-SRV01", "Server"),
            computer(102, "ACME-WS01", "Workstation")
        ]),
    )
    .mount(&server)
    .await;
    for (id, none) in [(101, false), (102, true)] {
        answer(
            "GET",
            format!("/cwa/api/v1/Computers/{id}/PatchingStats"),
            json!({"NoPatchInventory": none, "PatchJobRunning": false, "Stage": "Production"}),
        )
        .mount(&server)
        .await;
    }
    answer(
        "GET",
        "/cwa/api/v1/Computers/101/MicrosoftUpdates".into(),
        json!([{"KnowledgeBaseId": 5048667, "IsInstalled": false, "IsFailed": false,
                "Severity": "Critical", "ReleaseDate": "2026-12-08T18:00:00"}]),
    )
    .mount(&server)
    .await;
    let config: AutomateConfig = serde_json::from_value(json!({
        "base_url": server.uri(), "default_timezone": "America/Chicago",
        "clients": {"5": {"id": "acme"}}
    }))
    .unwrap();
    let credentials =
        serde_json::from_value(json!({"username": "pf", "password": "pw", "client_id": "cid"}))
            .unwrap();
    let f = InventorySync {
        inventory: AnyInventory::Automate(Arc::new(Automate::new(config, credentials).unwrap())),
        catalog: AnyCatalog::File(FileCatalog::new(
            workspace_file(CATALOG).display().to_string().as_str(),
        )),
    };

    // WHEN the sync runs
    let p = Embedded::new(release()).unwrap();
    let report = f
        .handle(
            &p.env,
            &p.queues,
            event("scheduled-inventory-sync-before-release.json"),
            p.now(),
        )
        .await
        .unwrap();

    // THEN both are synced and the unscanned one is named in the report
    assert_eq!(report.endpoints.written, 2);
    let named: Vec<(&str, &str, &str)> = report
        .no_patch_inventory
        .iter()
        .map(|n| (n.endpoint.as_str(), n.hostname.as_str(), n.client.as_str()))
        .collect();
    assert_eq!(named, [("102", "ACME-WS01", "acme")]);
    assert!(report.clients_left_out.is_empty());
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["no_patch_inventory"][0]["hostname"], "ACME-WS01");
}
