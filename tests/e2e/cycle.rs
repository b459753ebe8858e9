//! Whole cycles through the pipeline: the handlers fed by the event-source pump (batches,
//! partial failures, redelivery, dead letters), on the embedded default and on the AWS adapters
//! against moto's server, with the simulated RMM, PSA and pager.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use chrono::{Duration, Utc};
use patchflow_aws::bootstrap::{bootstrap, Names};
use patchflow_aws::config::sdk_config;
use patchflow_aws::dynamodb::DynamoState;
use patchflow_aws::s3::S3EvidenceStore;
use patchflow_aws::sqs::SqsQueues;
use patchflow_cli::simulate::{run_cycle, sim_env, SimulateReport, SimulateSpec};
use patchflow_core::contract::parse_inventory;
use patchflow_core::ids::CycleId;
use patchflow_core::model::Criticality;
use patchflow_core::plan::{plan, Release};
use patchflow_core::policy::Policy;
use patchflow_core::ports::clock::ManualClock;
use patchflow_core::ports::evidence::EvidenceStore;
use patchflow_core::ports::state::{StateStore, TierId};
use patchflow_core::rules::commands::RmmCommand;
use patchflow_core::rules::scope::Scope;
use patchflow_core::tier::TierState;
use patchflow_local::evidence::FsEvidenceStore;
use patchflow_local::queue::SqliteQueues;
use patchflow_local::state::SqliteState;
use patchflow_pipeline::records::{self, TierPlan, TIER_KIND};
use patchflow_sim::fleet::{generate, FleetSpec};

use crate::support::unique;

const CATALOG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../functions/cli/demo/catalog-2026-12.json"
);

fn cycle() -> CycleId {
    "2026-12".parse().unwrap()
}

fn spec(dir: &Path, inventory: &Path, failure_rate: f64, deliver_twice: bool) -> SimulateSpec {
    SimulateSpec {
        inventory: inventory.to_owned(),
        catalog: CATALOG.into(),
        cycle: cycle(),
        failure_rate,
        seed: 7,
        out: dir.to_owned(),
        policy: Policy::default(),
        engineer_response: Duration::hours(20),
        days: 40,
        deliver_twice,
    }
}

fn fleet(dir: &Path, endpoints: usize, clients: usize) -> std::path::PathBuf {
    let doc = generate(FleetSpec {
        endpoints,
        clients,
        seed: 11,
    });
    let path = dir.join("inventory.json");
    std::fs::write(&path, serde_json::to_string(&doc).unwrap()).unwrap();
    path
}

fn endpoint_of(c: &RmmCommand) -> &str {
    c.endpoint().as_str()
}

/// Everything a run leaves that must not depend on how often messages were delivered.
#[derive(Debug, PartialEq)]
struct Outcome {
    summary: Vec<patchflow_pipeline::summary::Row>,
    commands: BTreeSet<String>,
    tickets: BTreeSet<String>,
    pages: usize,
    evidence: BTreeMap<String, String>,
    all_closed: bool,
}

async fn outcome<S: StateStore, Q, E: EvidenceStore>(
    env: &patchflow_pipeline::Env<
        S,
        Q,
        E,
        patchflow_sim::connectors::SimRmm<ManualClock>,
        patchflow_sim::connectors::SimPsa,
        patchflow_sim::connectors::SimPager,
    >,
    report: &SimulateReport,
) -> Outcome {
    let evidence = env
        .state
        .list_evidence(cycle())
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.key.as_path(), r.sha256.to_hex()))
        .collect();
    Outcome {
        summary: report.summary.rows.clone(),
        commands: env.rmm.commands().into_iter().map(|c| c.key).collect(),
        tickets: env
            .psa
            .tickets()
            .into_iter()
            .map(|t| t.external_ref)
            .collect(),
        pages: env.pager.pages().len(),
        evidence,
        all_closed: report.all_closed,
    }
}

/// Runs a cycle on the embedded default in `dir`.
async fn run_local(
    dir: &Path,
    spec: &SimulateSpec,
) -> (
    Outcome,
    patchflow_pipeline::Env<
        SqliteState,
        SqliteQueues,
        FsEvidenceStore,
        patchflow_sim::connectors::SimRmm<ManualClock>,
        patchflow_sim::connectors::SimPsa,
        patchflow_sim::connectors::SimPager,
    >,
) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let state = SqliteState::in_memory().unwrap();
    let queues = SqliteQueues::in_memory(clock.clone(), 3).unwrap();
    let evidence = FsEvidenceStore::open(dir.join("evidence")).unwrap();
    let consumer = queues.clone();
    let env = sim_env(state, queues, evidence, clock.clone(), spec);
    let report = run_cycle(&env, &consumer, &clock, spec, String::new())
        .await
        .unwrap();
    assert!(
        report.dead_letters.is_empty(),
        "dead letters: {:?}",
        report.dead_letters
    );
    (outcome(&env, &report).await, env)
}

fn out_of_scope(inventory: &Path) -> BTreeSet<String> {
    let inv = parse_inventory("inventory", &std::fs::read_to_string(inventory).unwrap()).unwrap();
    let catalog = patchflow_core::contract::parse_catalog(
        "catalog",
        &std::fs::read_to_string(CATALOG).unwrap(),
    )
    .unwrap();
    let policy = Policy::default();
    let p = plan(&inv, &catalog, Release::of(cycle(), &policy, None), &policy);
    p.endpoints
        .iter()
        .filter(|e| e.scope != Scope::InScope)
        .map(|e| e.id.to_string())
        .collect()
}

type SimEnv<S, Q, E> = patchflow_pipeline::Env<
    S,
    Q,
    E,
    patchflow_sim::connectors::SimRmm<ManualClock>,
    patchflow_sim::connectors::SimPsa,
    patchflow_sim::connectors::SimPager,
>;

/// What must hold of every cycle, whatever the adapters.
async fn check_cycle<S: StateStore, Q, E>(env: &SimEnv<S, Q, E>, inventory: &Path, got: &Outcome) {
    assert!(got.all_closed, "{:#?}", got.summary);
    // Excluded, disabled and do-not-patch endpoints never get an RMM command.
    let excluded = out_of_scope(inventory);
    assert!(
        !excluded.is_empty(),
        "the fleet should have out-of-scope endpoints"
    );
    let commanded: BTreeSet<String> = env
        .rmm
        .commands()
        .iter()
        .map(|c| endpoint_of(&c.command).to_owned())
        .collect();
    assert!(
        commanded.is_disjoint(&excluded),
        "{:?}",
        commanded.intersection(&excluded).collect::<Vec<_>>()
    );
    // Production never starts before its pilot's soak: no production install window opens
    // before the tier's gate.
    let tiers: Vec<(TierPlan, u64)> = records::list(&env.state, cycle(), TIER_KIND).await.unwrap();
    let mut checked = 0;
    for (t, _) in tiers.iter().filter(|(t, _)| t.gate.is_some()) {
        let gate = t.gate.unwrap();
        let runs: Vec<(patchflow_pipeline::records::Run, u64)> =
            records::list(&env.state, cycle(), &records::run_kind(&t.tier))
                .await
                .unwrap();
        let members: BTreeSet<String> = runs.iter().map(|(r, _)| r.endpoint.to_string()).collect();
        for c in env
            .rmm
            .commands()
            .iter()
            .filter(|c| members.contains(endpoint_of(&c.command)))
        {
            if let RmmCommand::ScheduleInstall { window, .. }
            | RmmCommand::TechnicianInstall { window, .. } = &c.command
            {
                assert!(
                    window.start >= gate,
                    "{} installs at {} before the soak gate {gate}",
                    endpoint_of(&c.command),
                    window.start
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked > 0,
        "some production installs should have been checked"
    );
    // Every closed tier has its evidence, with a manifest per client.
    assert!(got.evidence.keys().any(|k| k.ends_with("/manifest.json")));
    // Every failure got a ticket, closed with its tier.
    for t in env.psa.tickets() {
        if t.external_ref.contains("/failure/") {
            assert!(
                t.closed,
                "{} should be closed with its tier",
                t.external_ref
            );
        }
    }
}

#[tokio::test]
async fn a_cycle_closes_every_tier_and_never_commands_an_excluded_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = fleet(dir.path(), 80, 3);
    let spec = spec(dir.path(), &inventory, 0.08, false);
    let (got, env) = run_local(dir.path(), &spec).await;
    check_cycle(&env, &inventory, &got).await;
}

#[tokio::test]
async fn every_message_delivered_twice_yields_the_same_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = fleet(dir.path(), 40, 2);
    let once = run_local(
        &dir.path().join("once"),
        &spec(&dir.path().join("once"), &inventory, 0.15, false),
    )
    .await
    .0;
    let twice_dir = dir.path().join("twice");
    let (twice, env) = run_local(&twice_dir, &spec(&twice_dir, &inventory, 0.15, true)).await;
    assert!(
        !once.tickets.is_empty(),
        "the scenario should have failures"
    );
    assert_eq!(once, twice);
    // The second delivery of each message found it done: nothing reached the RMM twice.
    assert_eq!(env.rmm.duplicates(), 0);
}

fn two_server_client(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("pilot.json");
    std::fs::write(
        &path,
        r#"{
  "clients": [ { "id": "contoso", "timezone": "America/Chicago" } ],
  "endpoints": [
    { "id": "cs-app1", "client": "contoso", "hostname": "CS-APP1", "kind": "server", "role": "app",
      "criticality": "p2", "ring": "pilot", "policy_group": "auto_install_auto_reboot",
      "unattended_reboot_approved": true },
    { "id": "cs-app2", "client": "contoso", "hostname": "CS-APP2", "kind": "server", "role": "app",
      "criticality": "p2", "policy_group": "auto_install_auto_reboot",
      "unattended_reboot_approved": true }
  ]
}"#,
    )
    .unwrap();
    path
}

fn failed_pilot_spec(dir: &Path) -> SimulateSpec {
    let inventory = two_server_client(dir);
    let mut spec = spec(dir, &inventory, 1.0, false);
    // Nobody documents a root cause within the simulated fortnight.
    spec.engineer_response = Duration::days(30);
    spec.days = 14;
    spec
}

async fn check_failed_pilot<S: StateStore, Q, E>(env: &SimEnv<S, Q, E>, got: &Outcome) {
    let failures: Vec<_> = env
        .psa
        .tickets()
        .into_iter()
        .filter(|t| t.external_ref.contains("/failure/"))
        .collect();
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert_eq!(failures[0].priority, Criticality::P2);
    assert!(failures[0].summary.contains("cs-app1"));
    // The failed patch is tracked in the RMM too, with its next retry window and its ticket,
    // once per failure however often the failure was delivered.
    let recorded = env.state.list_failures(cycle()).await.unwrap();
    assert_eq!(recorded.len(), 1);
    let notes = env.rmm.retry_notes();
    assert_eq!(notes.len(), 1, "{notes:#?}");
    let (key, note) = notes.iter().next().unwrap();
    assert_eq!(key, &format!("{}/retry/{}", cycle(), recorded[0].id));
    assert_eq!(note.endpoint.as_str(), "cs-app1");
    assert_eq!(note.next_retry, recorded[0].next_retry);
    assert_eq!(note.ticket, recorded[0].ticket);
    assert!(note.next_retry.start >= recorded[0].failed_at);
    let pilot = TierId::parse("servers.contoso.pilot").unwrap();
    let production = TierId::parse("servers.contoso.production").unwrap();
    let state_of = |t: TierId| {
        let state = &env.state;
        async move { state.get_tier(cycle(), &t).await.unwrap().unwrap().state }
    };
    assert_eq!(state_of(pilot).await, TierState::Held);
    assert_eq!(state_of(production.clone()).await, TierState::Scheduled);
    let (plan, _): (TierPlan, u64) =
        records::must_load(&env.state, cycle(), TIER_KIND, production.as_str())
            .await
            .unwrap();
    assert!(
        plan.last_decision
            .as_deref()
            .is_some_and(|d| d.starts_with("held")),
        "{plan:?}"
    );
    assert!(env
        .rmm
        .commands()
        .iter()
        .all(|c| endpoint_of(&c.command) != "cs-app2"));
    assert!(!got.all_closed);
}

#[tokio::test]
async fn a_failed_pilot_holds_production_and_opens_exactly_one_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let spec = failed_pilot_spec(dir.path());
    let (got, env) = run_local(dir.path(), &spec).await;
    check_failed_pilot(&env, &got).await;
}

#[tokio::test]
async fn on_the_aws_adapters_a_failed_pilot_holds_production_and_opens_exactly_one_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let spec = failed_pilot_spec(dir.path());
    let (env, consumer, clock) = aws_env(&spec, Requests::default()).await;
    let report = run_cycle(&env, &consumer, &clock, &spec, String::new())
        .await
        .unwrap();
    let got = outcome(&env, &report).await;
    check_failed_pilot(&env, &got).await;
}

/// Counts AWS requests by operation, across the three services.
#[derive(Debug, Clone, Default)]
struct Requests(Arc<Mutex<BTreeMap<String, usize>>>);

impl Intercept for Requests {
    fn name(&self) -> &'static str {
        "Requests"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = ctx.request();
        let op = match req.headers().get("x-amz-target") {
            // DynamoDB and SQS (JSON protocol): "DynamoDB_20120810.PutItem", "AmazonSQS.ReceiveMessage".
            Some(t) => t.rsplit('.').next().unwrap_or(t).to_owned(),
            // S3 (REST): the method and what the query asks for.
            None => {
                let uri = req.uri();
                let q = uri.split_once('?').map(|(_, q)| q).unwrap_or("");
                let what = if q.contains("list-type") {
                    "ListObjectsV2"
                } else if q.contains("legal-hold") {
                    "ObjectLegalHold"
                } else if q.contains("retention") {
                    "ObjectRetention"
                } else {
                    "Object"
                };
                format!("S3 {} {what}", req.method())
            }
        };
        *self.0.lock().unwrap().entry(op).or_default() += 1;
        Ok(())
    }
}

/// The AWS adapters over fresh resources on the API server `make test` started, their clients
/// counting requests.
async fn aws_env(
    spec: &SimulateSpec,
    counter: Requests,
) -> (
    SimEnv<DynamoState, SqsQueues, S3EvidenceStore>,
    SqsQueues,
    Arc<ManualClock>,
) {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "run with `make test`, which starts moto and sets AWS_ENDPOINT_URL"
    );
    let sdk = sdk_config().await;
    let names = Names {
        table: unique("pf-cycle"),
        bucket: unique("pf-cycle"),
        queue_prefix: unique("pf"),
        retention_days: 1,
        max_receives: 3,
        visibility: Duration::seconds(30),
    };
    bootstrap(&sdk, &names).await.unwrap();
    let dynamo = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(counter.clone())
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .interceptor(counter.clone())
            .build(),
    );
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .interceptor(counter)
            .build(),
    );
    let queues = SqsQueues::lookup(sqs, &names.queue_prefix).await.unwrap();
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let consumer = queues.clone();
    let env = sim_env(
        DynamoState::new(dynamo, &names.table),
        queues,
        S3EvidenceStore::new(s3, &names.bucket),
        clock.clone(),
        spec,
    );
    (env, consumer, clock)
}

#[tokio::test]
async fn a_cycle_on_the_aws_adapters_delivered_twice_matches_the_embedded_one_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = fleet(dir.path(), 24, 2);
    let local = run_local(
        &dir.path().join("local"),
        &spec(dir.path(), &inventory, 0.15, false),
    )
    .await
    .0;

    // Every message delivered twice, on DynamoDB, SQS and S3.
    let spec = spec(dir.path(), &inventory, 0.15, true);
    let counter = Requests::default();
    let (env, consumer, clock) = aws_env(&spec, counter.clone()).await;
    let report = run_cycle(&env, &consumer, &clock, &spec, String::new())
        .await
        .unwrap();
    assert!(report.dead_letters.is_empty(), "{:?}", report.dead_letters);
    let aws = outcome(&env, &report).await;
    // The same cycle, whatever the adapters and however often each message arrived.
    assert_eq!(local, aws);
    check_cycle(&env, &inventory, &aws).await;
    assert_eq!(env.rmm.duplicates(), 0);

    // The evidence a whole cycle left in the bucket, every message delivered twice, verifies:
    // every hash, every lock, and one unbroken chain per client ending in its cycle roll-up.
    let verified = patchflow_evidence::verify::verify(
        &env.evidence,
        &patchflow_evidence::verify::Scope::everything(),
        &patchflow_evidence::verify::Expectations::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert!(verified.is_clean(), "{:?}", verified.problems);
    assert_eq!(verified.chains.len(), 2, "{:?}", verified.chains);
    for chain in &verified.chains {
        assert_eq!((chain.first, chain.anchor.as_ref()), (1, None), "{chain:?}");
        assert_eq!(chain.last as usize, chain.manifests);
        assert!(chain.tip.key.ends_with("/cycle/manifest.json"), "{chain:?}");
    }
    assert_eq!(verified.locks, verified.objects);

    // The requests a whole cycle made, per in-scope endpoint, by kind: the basis of the cost per
    // cycle (docs/adapters.md). Receives and deletes are the pump's; in AWS, Lambda's event
    // source mapping makes them. Delivering twice doubles the claims (a second claim reads Done).
    let in_scope: usize = report.summary.rows.iter().map(|r| r.in_scope()).sum();
    let counts = counter.0.lock().unwrap().clone();
    let total: usize = counts.values().sum();
    println!(
        "AWS requests for one cycle of {in_scope} in-scope endpoints ({} hours simulated), every message delivered twice:",
        report.hours
    );
    for (op, n) in &counts {
        println!(
            "  {op:<28} {n:>7}  {:>8.1} per endpoint",
            *n as f64 / in_scope as f64
        );
    }
    println!(
        "  {:<28} {total:>7}  {:>8.1} per endpoint",
        "total",
        total as f64 / in_scope as f64
    );
    // Every handled message costs its idempotency claim and completion, and its duplicate a claim
    // that finds it done (a refused PutItem and a GetItem); beyond those, an endpoint's run costs
    // a handful of writes (its run document moving on, a failure record) and each tier a few
    // (its plan, record, watches and compliance notes: over 23 endpoints, about ten each).
    let writes = counts.get("PutItem").copied().unwrap_or(0)
        + counts.get("UpdateItem").copied().unwrap_or(0);
    let handled = report.pump.done;
    println!(
        "  ({handled} messages handled; delivered once, the cycle would make {handled} PutItem \
         and {handled} GetItem fewer; {writes} item writes)"
    );
    assert!(
        writes <= 3 * handled + 25 * in_scope,
        "{writes} writes for {handled} messages and {in_scope} endpoints"
    );
    assert!(counts.contains_key("SendMessageBatch"));
    assert!(counts.keys().any(|k| k.starts_with("S3 PUT")));
}

#[tokio::test]
async fn a_retry_waits_for_a_root_cause_and_a_late_failure_does_not_hold_the_tier_again() {
    use patchflow_core::ports::clock::Clock;
    use patchflow_core::ports::queue::{QueueConsumer, Stage};
    use patchflow_core::ports::state::{FailureStore, TierStore};
    use patchflow_pipeline::batch::{handle, Outcome as Delivered};
    use patchflow_pipeline::messages::{DeployEndpoint, EndpointFailed, Message};
    use patchflow_pipeline::pump::{drain_all, PumpOptions};

    let dir = tempfile::tempdir().unwrap();
    let spec = failed_pilot_spec(dir.path());
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let state = SqliteState::in_memory().unwrap();
    let queues = SqliteQueues::in_memory(clock.clone(), 3).unwrap();
    let evidence = FsEvidenceStore::open(dir.path().join("evidence")).unwrap();
    let consumer = queues.clone();
    let env = sim_env(state, queues, evidence, clock.clone(), &spec);
    run_cycle(&env, &consumer, &clock, &spec, String::new())
        .await
        .unwrap();
    let pilot = TierId::parse("servers.contoso.pilot").unwrap();
    let endpoint = patchflow_core::ids::EndpointId::parse("cs-app1").unwrap();
    let failure = env.state.list_failures(cycle()).await.unwrap().remove(0);
    let now = clock.now();

    // GIVEN a failure without a root cause WHEN its retry arrives THEN it is refused, for good.
    let retry = DeployEndpoint {
        tier: pilot.clone(),
        endpoint: endpoint.clone(),
        attempt: 1,
    }
    .envelope(cycle(), "test/retry-too-early".into(), Some(&pilot));
    match handle(&env, Stage::Schedule, &retry.to_body(), now).await {
        Delivered::Poison(reason) => assert!(reason.contains("root cause"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // WHEN the engineer documents it THEN the tier leaves its hold and the endpoint is retried
    // in the failure's next retry window.
    let rc = patchflow_core::rules::failure::RootCause {
        text: "WSUS content was corrupt; re-synced".into(),
        engineer: "bob".into(),
        recorded_at: now,
    };
    let done = patchflow_pipeline::operator::record_root_cause(
        &env.state,
        &env.queues,
        cycle(),
        &failure.id,
        rc,
        now,
    )
    .await
    .unwrap();
    assert!(done.released);
    let tier = env.state.get_tier(cycle(), &pilot).await.unwrap().unwrap();
    assert_eq!(tier.state, TierState::Deploying);
    drain_all(&env, &consumer, now, PumpOptions::default())
        .await
        .unwrap();
    // The retry's install goes out when its window opens (the tier's tick), not before.
    let (run, _): (records::Run, u64) =
        records::must_load(&env.state, cycle(), &records::run_kind(&pilot), "cs-app1")
            .await
            .unwrap();
    let opens = run
        .commands
        .iter()
        .find_map(|c| match c {
            RmmCommand::ScheduleInstall { window, .. }
            | RmmCommand::TechnicianInstall { window, .. } => Some(window.start),
            _ => None,
        })
        .unwrap();
    assert!(env
        .rmm
        .commands()
        .iter()
        .all(|c| !c.key.contains("/cs-app1/1/")));
    clock.set(opens);
    let tick = patchflow_pipeline::messages::TierTick {
        tier: pilot.clone(),
        after: None,
    }
    .envelope(cycle(), "test/retry-window-opens".into(), Some(&pilot));
    assert!(matches!(
        handle(&env, Stage::Schedule, &tick.to_body(), opens).await,
        Delivered::Done(_)
    ));
    let retried: Vec<_> = env
        .rmm
        .commands()
        .into_iter()
        .filter(|c| c.key.contains("/cs-app1/1/"))
        .collect();
    assert!(!retried.is_empty(), "the retry's commands went out");
    for c in &retried {
        if let RmmCommand::ScheduleInstall { window, .. } = &c.command {
            assert!(window.start >= failure.next_retry.start);
        }
    }

    // GIVEN the endpoint is on its second attempt WHEN the first attempt's failure arrives late
    // THEN it is ticketed as before but does not hold the tier again.
    let late = EndpointFailed {
        id: failure.id.clone(),
        tier: pilot.clone(),
        endpoint: endpoint.clone(),
        client: failure.client.clone(),
        stage: failure.stage,
        at: failure.failed_at,
        detail: "late".into(),
        patches: Vec::new(),
    }
    .envelope(cycle(), "test/late-failure".into(), Some(&pilot));
    assert!(matches!(
        handle(&env, Stage::Failure, &late.to_body(), now).await,
        Delivered::Done(_)
    ));
    let tier = env.state.get_tier(cycle(), &pilot).await.unwrap().unwrap();
    assert_eq!(tier.state, TierState::Deploying);
    assert_eq!(
        env.psa
            .tickets()
            .iter()
            .filter(|t| t.external_ref.contains("/failure/"))
            .count(),
        1
    );
    assert!(consumer
        .dead_letters(Stage::Failure)
        .await
        .unwrap()
        .is_empty());
}
