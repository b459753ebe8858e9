//! The SAM template and the code agree: every variable a function cannot start without is set
//! for it, and it sets none the code does not read; every queue a function sends to exists and
//! its role may send to it, and to nothing else; every event source the template wires is one the
//! function handles; the queues and schedules are built as the pipeline needs them. Then a whole
//! simulated cycle holds the code's wiring table to what the handlers really send.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use chrono::{Duration, TimeZone, Utc};
use patchflow_core::ids::CycleId;
use patchflow_core::ports::clock::ManualClock;
use patchflow_core::ports::queue::{Envelope, QueueSender, Stage};
use patchflow_core::ports::PortError;
use patchflow_lambda::config::{Config, Connectors, READS};
use patchflow_lambda::wiring::{consumer_of, function, System, Wiring, FUNCTIONS};
use serde_yaml::Value;

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml");

struct Template {
    resources: BTreeMap<String, Value>,
}

fn tag<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    match v {
        Value::Tagged(t) if t.tag == name => Some(&t.value),
        _ => None,
    }
}

/// The logical id a `!GetAtt X.Attr` or `!Ref X` names.
fn target(v: &Value) -> Option<String> {
    if let Some(Value::String(s)) = tag(v, "GetAtt") {
        return s.split('.').next().map(str::to_owned);
    }
    if let Some(Value::Sequence(parts)) = tag(v, "GetAtt") {
        return parts.first().and_then(Value::as_str).map(str::to_owned);
    }
    tag(v, "Ref").and_then(Value::as_str).map(str::to_owned)
}

impl Template {
    fn load() -> Self {
        let text = std::fs::read_to_string(TEMPLATE).expect("infra/template.yaml");
        let doc: Value = serde_yaml::from_str(&text).expect("the template is YAML");
        let resources = doc["Resources"]
            .as_mapping()
            .expect("Resources")
            .iter()
            .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.clone()))
            .collect();
        Self { resources }
    }

    fn of_type<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
        self.resources
            .iter()
            .filter(move |(_, r)| r["Type"].as_str() == Some(ty))
    }

    /// The function resource deployed under the function's name.
    fn function(&self, w: &Wiring) -> (&String, &Value) {
        let want = format!("${{AWS::StackName}}-{}", w.name);
        self.of_type("AWS::Serverless::Function")
            .find(|(_, r)| {
                tag(&r["Properties"]["FunctionName"], "Sub").and_then(Value::as_str) == Some(&want)
            })
            .unwrap_or_else(|| panic!("no function named {want} in the template"))
    }

    /// The stage (or `stage-dlq`, or another queue's suffix) a queue resource is named for.
    fn queue_suffix(&self, logical: &str) -> String {
        let q = &self.resources[logical];
        assert_eq!(
            q["Type"].as_str(),
            Some("AWS::SQS::Queue"),
            "{logical} is not a queue"
        );
        let name = tag(&q["Properties"]["QueueName"], "Sub")
            .and_then(Value::as_str)
            .unwrap();
        name.strip_prefix("${QueuePrefix}-")
            .unwrap_or(name)
            .to_owned()
    }

    /// The statements of a role's inline policies.
    fn statements(&self, role: &str) -> Vec<&Value> {
        self.resources[role]["Properties"]["Policies"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|p| p["PolicyDocument"]["Statement"].as_sequence().unwrap())
            .collect()
    }
}

fn strings(v: &Value) -> Vec<&Value> {
    match v {
        Value::Sequence(s) => s.iter().collect(),
        other => vec![other],
    }
}

fn allows(stmt: &Value, action: &str) -> bool {
    stmt["Effect"].as_str() == Some("Allow")
        && strings(&stmt["Action"])
            .iter()
            .any(|a| a.as_str() == Some(action))
}

#[test]
fn every_variable_a_function_needs_is_set_and_none_it_ignores() {
    let t = Template::load();
    for w in &FUNCTIONS {
        let (id, f) = t.function(w);
        let vars: BTreeSet<&str> = f["Properties"]["Environment"]["Variables"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{id} has no environment"))
            .keys()
            .map(|k| k.as_str().unwrap())
            .collect();
        for need in w.required() {
            assert!(vars.contains(need), "{id} ({}) needs {need}", w.name);
        }
        for set in &vars {
            assert!(READS.contains(set), "{id} sets {set}, which no code reads");
        }
    }
}

/// The template's parameters, by name.
fn parameters() -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(TEMPLATE).expect("infra/template.yaml");
    let doc: Value = serde_yaml::from_str(&text).expect("the template is YAML");
    doc["Parameters"]
        .as_mapping()
        .expect("Parameters")
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.clone()))
        .collect()
}

/// A function's environment as a stack deployed with the parameters' defaults sets it: a
/// `!Ref` to a parameter is its default (`ConnectorsConfigPath` is `connectors`, the file the
/// test wrote), to a resource a made-up name or ARN; an `!If` on an empty parameter is unset.
fn deployed_environment(t: &Template, w: &Wiring, connectors: &str) -> BTreeMap<String, String> {
    let params = parameters();
    let (_, f) = t.function(w);
    let mut env = BTreeMap::new();
    for (k, v) in f["Properties"]["Environment"]["Variables"]
        .as_mapping()
        .unwrap()
    {
        let name = k.as_str().unwrap().to_owned();
        let value = match tag(v, "Ref").and_then(Value::as_str) {
            Some("ConnectorsConfigPath") => Some(connectors.to_owned()),
            Some(p) if params.contains_key(p) => params[p]["Default"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| params[p]["Default"].as_u64().map(|n| n.to_string())),
            Some(resource) => Some(format!(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:{resource}"
            )),
            // `!If [HasX, !Ref X, !Ref AWS::NoValue]` with X's default empty: not set.
            None if tag(v, "If").is_some() => None,
            None => v.as_str().map(str::to_owned),
        };
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            env.insert(name, value);
        }
    }
    env
}

#[test]
fn a_deployed_stack_drives_the_real_systems_and_each_function_starts_only_with_what_it_needs() {
    // GIVEN the template's defaults
    let params = parameters();
    let connectors = &params["Connectors"];
    assert_eq!(connectors["Default"].as_str(), Some("connectwise"));
    let allowed: BTreeSet<&str> = connectors["AllowedValues"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(allowed, BTreeSet::from(["connectwise", "simulation"]));

    let t = Template::load();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, pager: &str| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            format!(
                "[automate]\nbase_url = \"https://rmm.msp.example\"\n[manage]\n\
                 base_url = \"https://na.myconnectwise.net/v4_6_release/apis/3.0\"\n\
                 board = \"Patching\"\n[pager]\nkind = \"{pager}\"\n"
            ),
        )
        .unwrap();
        p.display().to_string()
    };
    let pagerduty = file("pagerduty.toml", "pagerduty");
    let sns = file("sns.toml", "sns");
    for w in &FUNCTIONS {
        // WHEN a function starts with the environment the stack gives it and a full connectors
        // file: it is configured for the real systems, and has all it talks to.
        let env = deployed_environment(&t, w, &pagerduty);
        assert_eq!(
            env.get("PATCHFLOW_CONNECTORS").map(String::as_str),
            Some("connectwise"),
            "{}",
            w.name
        );
        let lookup = |env: BTreeMap<String, String>| move |name: &str| env.get(name).cloned();
        let config = Config::from_lookup(lookup(env)).unwrap_or_else(|e| panic!("{}: {e}", w.name));
        assert!(
            matches!(config.connectors, Connectors::ConnectWise(_)),
            "{}",
            w.name
        );
        config
            .check_systems(w)
            .unwrap_or_else(|e| panic!("{}: {e}", w.name));

        // Paging through SNS without the PagerTopicArn parameter: the functions that page do
        // not start, and say which variable they lack; the others start.
        let env = deployed_environment(&t, w, &sns);
        let config = Config::from_lookup(lookup(env)).unwrap();
        match config.check_systems(w) {
            Ok(()) => assert!(!w.talks_to.contains(&System::Pager), "{}", w.name),
            Err(e) => {
                assert!(w.talks_to.contains(&System::Pager), "{}: {e}", w.name);
                assert!(
                    e.to_string().contains("PATCHFLOW_PAGER_TOPIC_ARN")
                        && e.to_string().contains(w.name),
                    "{e}"
                );
            }
        }

        // A package built without the connectors file: every function fails at start, naming
        // the variable and the path it read.
        let env = deployed_environment(&t, w, "/var/task/connectors.toml");
        let e = Config::from_lookup(lookup(env)).unwrap_err().to_string();
        assert!(
            e.contains("PATCHFLOW_CONNECTORS_CONFIG") && e.contains("/var/task/connectors.toml"),
            "{}: {e}",
            w.name
        );
    }
}

#[test]
fn every_function_may_read_the_credentials_of_exactly_the_systems_it_talks_to() {
    let t = Template::load();
    let secret_of = |s: System| match s {
        System::Rmm => "RmmSecret",
        System::Psa => "PsaSecret",
        System::Pager => "PagerSecret",
    };
    for w in &FUNCTIONS {
        let (id, f) = t.function(w);
        let vars = &f["Properties"]["Environment"]["Variables"];
        for s in [System::Rmm, System::Psa, System::Pager] {
            let talks = w.talks_to.contains(&s);
            for v in s.variables() {
                assert_eq!(
                    vars.get(*v).is_some(),
                    talks,
                    "{id} ({}): {v} is set if and only if it talks to the {s:?}",
                    w.name
                );
            }
        }
        let role = target(&f["Properties"]["Role"]).unwrap();
        let mut readable: BTreeSet<String> = BTreeSet::new();
        for stmt in t
            .statements(&role)
            .into_iter()
            .filter(|s| allows(s, "secretsmanager:GetSecretValue"))
        {
            for r in strings(&stmt["Resource"]) {
                readable.insert(target(r).unwrap_or_else(|| panic!("{role}: {r:?}")));
            }
        }
        let expected: BTreeSet<String> = w
            .talks_to
            .iter()
            .map(|s| secret_of(*s).to_owned())
            .collect();
        assert_eq!(
            readable, expected,
            "{role} ({}) reads exactly its systems' secrets",
            w.name
        );
    }
    // Paging through SNS: the publish grant goes to the roles of the functions that page.
    let (_, policy) = t
        .of_type("AWS::IAM::Policy")
        .find(|(id, _)| id.as_str() == "PageThroughSnsPolicy")
        .expect("the SNS paging policy");
    let roles: BTreeSet<String> = strings(&policy["Properties"]["Roles"])
        .into_iter()
        .filter_map(target)
        .collect();
    let expected: BTreeSet<String> = FUNCTIONS
        .iter()
        .filter(|w| w.talks_to.contains(&System::Pager))
        .map(|w| target(&t.function(w).1["Properties"]["Role"]).unwrap())
        .collect();
    assert_eq!(roles, expected);
}

#[test]
fn every_queue_a_function_sends_to_exists_and_its_role_may_send_there_only() {
    let t = Template::load();
    for w in &FUNCTIONS {
        let (id, f) = t.function(w);
        let role = target(&f["Properties"]["Role"]).unwrap_or_else(|| panic!("{id} has no role"));
        let mut may_send = BTreeSet::new();
        for stmt in t
            .statements(&role)
            .into_iter()
            .filter(|s| allows(s, "sqs:SendMessage"))
        {
            for r in strings(&stmt["Resource"]) {
                let queue = target(r).unwrap_or_else(|| {
                    panic!("{role}: a send to a queue not in the template: {r:?}")
                });
                may_send.insert(t.queue_suffix(&queue));
            }
        }
        let mut expected: BTreeSet<String> = w.sends.iter().map(|s| s.to_string()).collect();
        if let Some(own) = w.consumes {
            expected.insert(format!("{own}-dlq"));
        }
        expected.insert("invocations-dlq".into());
        assert_eq!(
            may_send, expected,
            "{role} ({}) may send to exactly what the code sends to",
            w.name
        );
        // Evidence: only the archiver writes it, and it may not delete it.
        let writes = t
            .statements(&role)
            .iter()
            .any(|s| allows(s, "s3:PutObject"));
        assert_eq!(writes, w.writes_evidence, "{role}: s3:PutObject");
        assert!(!t
            .statements(&role)
            .iter()
            .any(|s| allows(s, "s3:DeleteObject")));
    }
}

#[test]
fn every_event_source_is_one_the_function_handles() {
    let t = Template::load();
    let schedules: Vec<(&String, &Value)> = t.of_type("AWS::Scheduler::Schedule").collect();
    assert!(!schedules.is_empty());
    for w in &FUNCTIONS {
        let (id, f) = t.function(w);
        let events = f["Properties"]["Events"].as_mapping();
        let sqs: Vec<&Value> = events
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|e| e["Type"].as_str() == Some("SQS"))
            .collect();
        match w.consumes {
            Some(stage) => {
                assert_eq!(sqs.len(), 1, "{id}: one SQS event source");
                let p = &sqs[0]["Properties"];
                let queue = target(&p["Queue"]).unwrap();
                assert_eq!(t.queue_suffix(&queue), stage.to_string(), "{id}'s queue");
                assert!(
                    strings(&p["FunctionResponseTypes"])
                        .iter()
                        .any(|v| v.as_str() == Some("ReportBatchItemFailures")),
                    "{id}: partial batch responses"
                );
                assert!(
                    p["ScalingConfig"]["MaximumConcurrency"] != Value::Null,
                    "{id}: a maximum concurrency"
                );
            }
            None => assert!(sqs.is_empty(), "{id} handles no SQS events"),
        }
        let scheduled = schedules.iter().any(|(_, s)| {
            target(&s["Properties"]["Target"]["Arn"]).as_deref() == Some(id.as_str())
        });
        assert_eq!(scheduled, w.scheduled, "{id}: scheduled");
    }
    for (id, s) in schedules {
        let p = &s["Properties"];
        assert!(
            p["ScheduleExpressionTimezone"] != Value::Null,
            "{id}: a time zone"
        );
        assert!(
            p["Target"]["RetryPolicy"] != Value::Null,
            "{id}: a retry policy"
        );
        assert!(
            p["Target"]["DeadLetterConfig"] != Value::Null,
            "{id}: a dead-letter queue"
        );
    }
}

#[test]
fn every_stage_queue_redrives_to_its_dead_letter_queue_after_its_consumers_timeout() {
    let t = Template::load();
    for stage in Stage::ALL {
        let (queue_id, queue) = t
            .of_type("AWS::SQS::Queue")
            .find(|(id, _)| t.queue_suffix(id) == stage.to_string())
            .unwrap_or_else(|| panic!("no {stage} queue"));
        let p = &queue["Properties"];
        assert!(p["KmsMasterKeyId"] != Value::Null, "{queue_id}: encrypted");
        let dlq = target(&p["RedrivePolicy"]["deadLetterTargetArn"]).unwrap();
        assert_eq!(t.queue_suffix(&dlq), format!("{stage}-dlq"));
        assert!(p["RedrivePolicy"]["maxReceiveCount"]
            .as_u64()
            .is_some_and(|n| n >= 2));
        let consumer = consumer_of(stage).unwrap();
        let (_, f) = t.function(consumer);
        let timeout = f["Properties"]["Timeout"].as_u64().unwrap();
        let visibility = p["VisibilityTimeout"].as_u64().unwrap();
        assert!(
            visibility >= 6 * timeout,
            "{queue_id}: visibility {visibility} < 6 x {timeout}"
        );
    }
}

/// A sender that records which function sent to which stage.
#[derive(Clone)]
struct Recording<Q> {
    inner: Q,
    current: Arc<Mutex<&'static str>>,
    seen: Arc<Mutex<BTreeSet<(&'static str, Stage)>>>,
}

impl<Q: QueueSender> QueueSender for Recording<Q> {
    async fn send_batch(&self, stage: Stage, messages: &[Envelope]) -> Result<(), PortError> {
        if !messages.is_empty() {
            let who = *self.current.lock().unwrap();
            self.seen.lock().unwrap().insert((who, stage));
        }
        self.inner.send_batch(stage, messages).await
    }
}

#[tokio::test]
async fn a_whole_cycle_sends_and_touches_what_the_wiring_table_says_and_nothing_else() {
    use patchflow_cli::simulate::{sim_env, SimulateSpec};
    use patchflow_connectors::file::{FileCatalog, FileInventory};
    use patchflow_core::ports::clock::Clock;
    use patchflow_core::ports::state::FailureStore;
    use patchflow_pipeline::pump::{drain, PumpOptions};

    let dir = tempfile::tempdir().unwrap();
    let doc = patchflow_sim::fleet::generate(patchflow_sim::fleet::FleetSpec {
        endpoints: 30,
        clients: 2,
        seed: 4,
    });
    let inventory = dir.path().join("inventory.json");
    std::fs::write(&inventory, serde_json::to_string(&doc).unwrap()).unwrap();
    let catalog = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../functions/cli/demo/catalog-2026-12.json"
    );
    let cycle: CycleId = "2026-12".parse().unwrap();
    let spec = SimulateSpec {
        inventory: inventory.clone(),
        catalog: catalog.into(),
        cycle,
        failure_rate: 0.2,
        seed: 3,
        out: dir.path().to_owned(),
        policy: patchflow_core::policy::Policy::default(),
        engineer_response: Duration::hours(6),
        days: 40,
        deliver_twice: false,
    };
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 12, 8, 18, 0, 0).unwrap(),
    ));
    let queues = patchflow_local::queue::SqliteQueues::in_memory(clock.clone(), 3).unwrap();
    let recording = Recording {
        inner: queues.clone(),
        current: Arc::new(Mutex::new("")),
        seen: Arc::new(Mutex::new(BTreeSet::new())),
    };
    let env = sim_env(
        patchflow_local::state::SqliteState::in_memory().unwrap(),
        recording.clone(),
        patchflow_local::evidence::FsEvidenceStore::open(dir.path().join("evidence")).unwrap(),
        clock.clone(),
        &spec,
    );
    let set = |who: &'static str| *recording.current.lock().unwrap() = who;
    // A pilot workstation turns unhealthy during its soak: ring-promotion's daily re-check fails
    // it and escalates it (it sends to the failure queue too).
    let sick = doc
        .endpoints
        .iter()
        .find(|e| {
            e.kind == patchflow_core::model::EndpointKind::Workstation
                && e.ring == Some(patchflow_core::model::Ring::Pilot)
        })
        .map(|e| patchflow_core::ids::EndpointId::parse(&e.id).unwrap())
        .expect("the fleet has a pilot workstation");
    env.rmm
        .make_unhealthy(&sick, Utc.with_ymd_and_hms(2026, 12, 14, 0, 0, 0).unwrap());
    // What the simulated systems hold, to see which function touched which.
    let touched: Arc<Mutex<BTreeSet<(&'static str, System)>>> = Arc::default();
    let fingerprint = || {
        let psa: Vec<_> = env
            .psa
            .tickets()
            .into_iter()
            .map(|t| (t.id, t.notes.len(), t.closed))
            .collect();
        let pager: Vec<_> = env
            .pager
            .pages()
            .into_iter()
            .map(|p| (p.dedup_key, p.resolved))
            .collect();
        let rmm = [
            env.rmm.commands().len(),
            env.rmm.closures().len(),
            env.rmm.health_reads(),
            env.rmm.retry_notes().len(),
        ];
        let psa = (psa, env.psa.attachments().len());
        (rmm, psa, pager)
    };
    let mut before = fingerprint();
    let note = |who: &'static str, before: &mut ([usize; 4], (Vec<_>, usize), Vec<_>)| {
        let after = fingerprint();
        let mut t = touched.lock().unwrap();
        if after.0 != before.0 {
            t.insert((who, System::Rmm));
        }
        if after.1 != before.1 {
            t.insert((who, System::Psa));
        }
        if after.2 != before.2 {
            t.insert((who, System::Pager));
        }
        *before = after;
    };
    let (inv, cat) = (FileInventory::new(&inventory), FileCatalog::new(catalog));
    for _hour in 0..40 * 24 {
        let now = clock.now();
        set("inventory-sync");
        patchflow_pipeline::sync::inventory_sync(&env, &inv, &cat, now)
            .await
            .unwrap();
        note("inventory-sync", &mut before);
        set("ring-promotion");
        patchflow_pipeline::tick::tick(&env, now).await.unwrap();
        note("ring-promotion", &mut before);
        loop {
            let mut handled = 0;
            for stage in Stage::ALL {
                let who = consumer_of(stage).unwrap().name;
                set(who);
                handled += drain(&env, &queues, stage, now, PumpOptions::default())
                    .await
                    .unwrap()
                    .done;
                note(who, &mut before);
            }
            if handled == 0 {
                break;
            }
        }
        // The engineer, through the CLI.
        set("operator");
        for f in env.state.list_failures(cycle).await.unwrap() {
            if f.root_cause.is_none() && now - f.failed_at >= spec.engineer_response {
                let rc = patchflow_core::rules::failure::RootCause {
                    text: "cleared".into(),
                    engineer: "sim".into(),
                    recorded_at: now,
                };
                patchflow_pipeline::operator::record_root_cause(
                    &env.state,
                    &env.queues,
                    cycle,
                    &f.id,
                    rc,
                    now,
                )
                .await
                .unwrap();
            }
        }
        note("operator", &mut before);
        clock.advance(Duration::hours(1));
    }
    // Each function touched only the systems its wiring names (the template gives it their
    // credentials and no others).
    let touched = touched.lock().unwrap().clone();
    for (who, system) in &touched {
        let declared = function(who).is_some_and(|w| w.talks_to.contains(system));
        assert!(
            declared,
            "{who} touched the {system:?}; its wiring does not say so"
        );
    }
    for system in [System::Rmm, System::Psa, System::Pager] {
        assert!(
            touched.iter().any(|(_, s)| *s == system),
            "the cycle never touched the {system:?}: the check above proves nothing"
        );
    }
    let seen = recording.seen.lock().unwrap().clone();
    // Sent only by a tier larger than a page (the next page of due runs, a long change list's
    // later parts): tests/e2e/shards.rs plays those; this cycle is smaller.
    let at_scale = [("reboot-scheduler", Stage::Schedule)];
    for w in &FUNCTIONS {
        let mut sent: BTreeSet<Stage> = seen
            .iter()
            .filter(|(who, _)| *who == w.name)
            .map(|(_, s)| *s)
            .collect();
        for (who, stage) in at_scale {
            if who == w.name {
                sent.insert(stage);
            }
        }
        let declared: BTreeSet<Stage> = w.sends.iter().copied().collect();
        assert_eq!(
            sent, declared,
            "{} sent to {sent:?}, its wiring says {declared:?}",
            w.name
        );
    }
}

#[test]
fn a_schedules_input_carries_its_scheduled_time_to_the_function() {
    let t = Template::load();
    for (id, s) in t.of_type("AWS::Scheduler::Schedule") {
        let input = s["Properties"]["Target"]["Input"]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: an input"));
        // EventBridge Scheduler puts the scheduled time where the placeholder is, so a retried
        // invocation works for the same hour (and sends the same keys).
        assert!(input.contains("<aws.scheduler.scheduled-time>"), "{id}");
        let delivered = input.replace("<aws.scheduler.scheduled-time>", "2026-12-08T18:30:00Z");
        let event: serde_json::Value = serde_json::from_str(&delivered).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 12, 8, 18, 31, 7).unwrap();
        match patchflow_lambda::Invocation::from_value(event, now).unwrap() {
            patchflow_lambda::Invocation::Scheduled(at) => {
                assert_eq!(
                    at,
                    Utc.with_ymd_and_hms(2026, 12, 8, 18, 30, 0).unwrap(),
                    "{id}"
                )
            }
            other => panic!("{id}: read as {other:?}"),
        }
    }
}
