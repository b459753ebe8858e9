//! The connectors as a deployed function builds them: credentials from Secrets Manager (moto),
//! pages through SNS (moto), and ConnectWise Automate, ConnectWise PSA and PagerDuty as local
//! servers speaking their documented shapes.

use chrono::Utc;
use patchflow_aws::config::{sdk_config, sqs_client};
use patchflow_aws::secrets::{secrets_client, SecretsCache};
use patchflow_aws::sns::{sns_client, SnsPager};
use patchflow_core::ids::{ClientId, EndpointId};
use patchflow_core::model::Criticality;
use patchflow_core::ports::error_chain;
use patchflow_core::ports::pager::Pager;
use patchflow_core::ports::psa::{NewTicket, Psa};
use patchflow_core::ports::rmm::Rmm;
use patchflow_core::ports::sources::InventorySource;
use patchflow_core::rules::commands::RmmCommand;
use patchflow_core::schedule::Window;
use patchflow_lambda::config::Config;
use patchflow_lambda::systems::{systems, AnyPager, AnyPsa, AnyRmm};
use patchflow_lambda::wiring::{function, System, Wiring};
use serde_json::{json, Value};
use wiremock::matchers::{body_json, body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::unique;

fn require_aws_endpoint() {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "run with `make test` (or tests/with-moto.sh cargo test ...), which starts moto"
    );
}

async fn put_secret(client: &aws_sdk_secretsmanager::Client, name: &str, value: &Value) -> String {
    let out = client
        .create_secret()
        .name(unique(name))
        .secret_string(value.to_string())
        .send()
        .await
        .expect("create a secret");
    out.arn().expect("the secret's ARN").to_owned()
}

#[tokio::test]
async fn secrets_are_read_once_and_kept_for_the_life_of_the_function() {
    require_aws_endpoint();
    let sdk = sdk_config().await;
    let client = secrets_client(&sdk);
    let arn = put_secret(&client, "pf-rmm", &json!({"routing_key": "R0UT3"})).await;
    let cache = SecretsCache::new(client.clone());
    assert!(cache.get(&arn).await.unwrap().contains("R0UT3"));

    // Gone from Secrets Manager: this execution environment keeps what it read ...
    client
        .delete_secret()
        .secret_id(&arn)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    assert!(cache.get(&arn).await.unwrap().contains("R0UT3"));

    // ... and a new one cannot start, with an error naming the secret, not its value.
    let e = SecretsCache::new(client).get(&arn).await.unwrap_err();
    let text = error_chain(&e);
    assert!(text.contains(&arn) && !text.contains("R0UT3"), "{text}");
    assert!(!e.is_retryable(), "{text}");
}

async fn topic_with_queue(fifo: bool) -> (String, String, aws_sdk_sqs::Client) {
    let sdk = sdk_config().await;
    let sns = sns_client(&sdk);
    let sqs = sqs_client(&sdk);
    let suffix = if fifo { ".fifo" } else { "" };
    let mut topic = sns
        .create_topic()
        .name(format!("{}{suffix}", unique("pf-pages")));
    let mut queue = sqs
        .create_queue()
        .queue_name(format!("{}{suffix}", unique("pf-oncall")));
    if fifo {
        topic = topic.attributes("FifoTopic", "true");
        queue = queue.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
    }
    let topic_arn = topic.send().await.unwrap().topic_arn().unwrap().to_owned();
    let queue_url = queue.send().await.unwrap().queue_url().unwrap().to_owned();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    let queue_arn =
        attrs.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone();
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();
    (topic_arn, queue_url, sqs)
}

async fn drain(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        let msgs = got.messages();
        if msgs.is_empty() {
            return out;
        }
        for m in msgs {
            out.push(serde_json::from_str(m.body().unwrap()).unwrap());
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn an_sns_pager_reaches_the_topics_subscribers_and_a_fifo_topic_pages_once_per_key() {
    require_aws_endpoint();
    let sdk = sdk_config().await;
    let (topic, queue, sqs) = topic_with_queue(false).await;
    let pager = SnsPager::new(sns_client(&sdk), topic);
    pager
        .trigger(
            "2026-12/page/srv-1",
            "SRV-1 failed its post-reboot checks\nDNS down",
        )
        .await
        .unwrap();
    pager.resolve("2026-12/page/srv-1").await.unwrap();
    let got = drain(&sqs, &queue).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["event"], "trigger");
    assert_eq!(got[0]["dedup_key"], "2026-12/page/srv-1");
    assert!(got[0]["summary"].as_str().unwrap().contains("DNS down"));
    assert_eq!(got[1]["event"], "resolve");

    let (topic, queue, sqs) = topic_with_queue(true).await;
    let pager = SnsPager::new(sns_client(&sdk), topic);
    pager.trigger("2026-12/page/srv-2", "down").await.unwrap();
    pager.trigger("2026-12/page/srv-2", "down").await.unwrap();
    pager.trigger("2026-12/page/srv-3", "down").await.unwrap();
    let got = drain(&sqs, &queue).await;
    let keys: Vec<&str> = got
        .iter()
        .map(|m| m["dedup_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["2026-12/page/srv-2", "2026-12/page/srv-3"]);
}

/// Automate, ConnectWise PSA and PagerDuty on one local server (their paths do not overlap).
async fn systems_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/cwa/api/v1/apitoken"))
        .and(header("ClientId", "automate-cid"))
        .and(body_partial_json(
            json!({"UserName": "pf", "Password": "automate-pw"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "AccessToken": "tok", "ExpirationDate": "2099-01-01T00:00:00"
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/Computers"))
        .and(header("Authorization", "Bearer tok"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{
            "Id": 4021, "ComputerName": "ACME-DC01", "Client": {"Id": 5, "Name": "Acme Corp"},
            "Location": {"Id": 1, "Name": "HQ"}, "Type": "Server",
            "OperatingSystemName": "Microsoft Windows Server 2022 Standard x64", "Status": "Online"
        }])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/Computers/4021/PatchingStats"))
        .and(header("Authorization", "Bearer tok"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ComputerId": 4021, "NoPatchInventory": false, "PatchJobRunning": false
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/cwa/api/v1/Computers/4021/MicrosoftUpdates"))
        .and(header("Authorization", "Bearer tok"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{
            "KnowledgeBaseId": 5048667, "IsInstalled": false, "IsFailed": false,
            "Severity": "Critical", "ReleaseDate": "2026-12-08T18:00:00"
        }])))
        .mount(&server)
        .await;
    // The unattended install is Automate's patch deployment (Patching.json), sent once.
    Mock::given(method("POST"))
        .and(path("/cwa/api/v1/PatchActions/DeployAllApproved"))
        .and(body_json(json!({"EntityType": 1, "EntityId": 4021})))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v4_6_release/apis/3.0/service/tickets"))
        .and(header("clientId", "manage-cid"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v4_6_release/apis/3.0/service/tickets"))
        .and(body_partial_json(json!({
            "board": {"name": "Patching"}, "company": {"identifier": "AcmeCorp"},
            "externalXRef": "2026-12/failure/4021.install.0"
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 77001})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .and(body_partial_json(json!({
            "routing_key": "pd-routing-key-0123456789abcdef0", "event_action": "trigger",
            "dedup_key": "2026-12/page/4021"
        })))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({
            "status": "success", "message": "Event processed", "dedup_key": "2026-12/page/4021"
        })))
        .expect(1)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn a_connectwise_function_reads_its_secrets_once_and_drives_the_real_systems() {
    require_aws_endpoint();
    let server = systems_server().await;
    let sdk = sdk_config().await;
    let client = secrets_client(&sdk);
    let rmm = put_secret(
        &client,
        "pf-rmm",
        &json!({"username": "pf", "password": "automate-pw", "client_id": "automate-cid"}),
    )
    .await;
    let psa = put_secret(
        &client,
        "pf-psa",
        &json!({"company": "msp", "public_key": "pub", "private_key": "manage-pw",
                "client_id": "manage-cid"}),
    )
    .await;
    let pager = put_secret(
        &client,
        "pf-pager",
        &json!({"routing_key": "pd-routing-key-0123456789abcdef0"}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("connectors.toml");
    std::fs::write(
        &file,
        format!(
            r#"
            [automate]
            default_timezone = "America/New_York"
            [automate.clients.5]
            id = "acme"
            [automate.scripts]
            install = 901

            [manage]
            base_url = "{uri}/v4_6_release/apis/3.0"
            board = "Patching"
            [manage.companies]
            acme = "AcmeCorp"

            [pager]
            kind = "pagerduty"
            events_url = "{uri}/v2/enqueue"

            [msrc]
            base_url = "{uri}/cvrf/v3.0"
            "#,
            uri = server.uri()
        ),
    )
    .unwrap();
    let file = file.display().to_string();
    let base = |extra: &[(&'static str, String)]| {
        let mut vars: Vec<(&'static str, String)> = vec![
            ("PATCHFLOW_EVIDENCE_BUCKET", "b".into()),
            ("PATCHFLOW_STATE_TABLE", "t".into()),
            ("PATCHFLOW_QUEUE_PREFIX", "q".into()),
            ("PATCHFLOW_CONNECTORS", "connectwise".into()),
            ("PATCHFLOW_CONNECTORS_CONFIG", file.clone()),
            ("PATCHFLOW_RMM_BASE_URL", server.uri()),
        ];
        vars.extend_from_slice(extra);
        Config::from_lookup(move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap()
    };

    // A function talking to all three (failure-escalation's and inventory-sync's systems),
    // with every secret.
    let everything = Wiring {
        talks_to: &[System::Rmm, System::Psa, System::Pager],
        ..*function("failure-escalation").unwrap()
    };
    let config = base(&[
        ("PATCHFLOW_RMM_SECRET_ARN", rmm.clone()),
        ("PATCHFLOW_PSA_SECRET_ARN", psa.clone()),
        ("PATCHFLOW_PAGER_SECRET_ARN", pager),
    ]);
    let s = systems(&config, &sdk, &everything).await.unwrap();
    assert!(matches!(s.rmm, AnyRmm::Automate(_)));
    let inventory = s.sources.inventory.as_ref().unwrap().pull().await.unwrap();
    assert_eq!(inventory.endpoints[0].id, "4021");
    assert_eq!(
        inventory.endpoints[0].applicable.as_deref(),
        Some(&["KB5048667".to_owned()][..])
    );
    assert_eq!(inventory.clients[0].id, "acme");
    // DeployAllApproved installs at once: it is sent while the window is open.
    let now = Utc::now();
    let window = Window {
        start: now - chrono::Duration::minutes(10),
        end: now + chrono::Duration::hours(4),
    };
    s.rmm
        .send(
            "2026-12/install/4021",
            &RmmCommand::ScheduleInstall {
                endpoint: EndpointId::parse("4021").unwrap(),
                window,
                patches: Vec::new(),
            },
        )
        .await
        .unwrap();
    let ticket = s
        .psa
        .open_ticket(&NewTicket {
            external_ref: "2026-12/failure/4021.install.0".into(),
            client: ClientId::parse("acme").unwrap(),
            priority: Criticality::P1,
            summary: "Install failed on ACME-DC01".into(),
            description: "0x80240022".into(),
        })
        .await
        .unwrap();
    assert_eq!(ticket, "77001");
    s.pager
        .trigger("2026-12/page/4021", "ACME-DC01 install failed after hours")
        .await
        .unwrap();
    server.verify().await;

    // reboot-scheduler: the RMM's secret and the PSA's (its compliance ticket notes). The
    // pager, which it does not talk to, is unavailable, and using it names the function and the
    // system.
    let config = base(&[
        ("PATCHFLOW_RMM_SECRET_ARN", rmm.clone()),
        ("PATCHFLOW_PSA_SECRET_ARN", psa.clone()),
    ]);
    let reboot_scheduler = function("reboot-scheduler").unwrap();
    let s = systems(&config, &sdk, reboot_scheduler).await.unwrap();
    assert!(matches!(s.rmm, AnyRmm::Automate(_)));
    assert!(matches!(s.psa, AnyPsa::Manage(_)));
    assert!(matches!(s.pager, AnyPager::Unavailable(_)));
    let e = s.pager.trigger("k", "x").await.unwrap_err();
    assert!(
        error_chain(&e).contains("reboot-scheduler does not talk to the pager"),
        "{}",
        error_chain(&e)
    );

    // failure-escalation given the RMM's and the PSA's secrets but not the pager's: it does not
    // start, and the error names the variable it lacks.
    let config = base(&[
        ("PATCHFLOW_RMM_SECRET_ARN", rmm.clone()),
        ("PATCHFLOW_PSA_SECRET_ARN", psa),
    ]);
    let e = systems(&config, &sdk, function("failure-escalation").unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("PATCHFLOW_PAGER_SECRET_ARN") && e.contains("failure-escalation"),
        "{e}"
    );

    // A secret that does not exist, or was never given a value, stops the function at start,
    // naming it (approval-eval talks to the RMM and the PSA: its RMM secret is a good one).
    let config = base(&[
        ("PATCHFLOW_RMM_SECRET_ARN", rmm.clone()),
        (
            "PATCHFLOW_PSA_SECRET_ARN",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:pf-missing-AbCdEf".into(),
        ),
    ]);
    let e = systems(&config, &sdk, function("approval-eval").unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("pf-missing"), "{e}");
    let empty = client
        .create_secret()
        .name(unique("pf-empty"))
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    let config = base(&[
        ("PATCHFLOW_RMM_SECRET_ARN", rmm),
        ("PATCHFLOW_PSA_SECRET_ARN", empty.clone()),
    ]);
    let e = systems(&config, &sdk, function("approval-eval").unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&empty), "{e}");
}

#[test]
fn the_connectors_file_in_the_docs_is_one_patchflow_reads() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/connectors.md"
    ))
    .unwrap();
    let start = doc.find("```toml\n").expect("a TOML example") + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let file = patchflow_connectors::settings::ConnectorsFile::from_toml(
        "docs/connectors.md",
        &doc[start..end],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let automate = file.automate.expect("[automate]");
    assert!(!automate.groups.is_empty() && !automate.monitors.is_empty());
    assert!(file.manage.is_some() && file.pager.is_some());
}
