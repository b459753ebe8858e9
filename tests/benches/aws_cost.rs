//! What a whole cycle costs on AWS, per in-scope endpoint: AWS requests by service and
//! operation and DynamoDB read and write units, measured on the AWS adapters against moto's
//! server behind tests/counting-proxy.py (which counts on the wire and computes the units DynamoDB
//! would bill), at two fleet sizes, and the cost per 10,000 in-scope endpoints at list prices.
//!
//! Not a test: `make bench-aws`, or
//! `PATCHFLOW_COUNTING_PROXY=1 tests/with-moto.sh cargo bench -p patchflow-tests --bench aws_cost`.
//! `PATCHFLOW_BENCH_AWS_FLEETS=200:5,2000:20` chooses the fleets (endpoints:clients).
//!
//! The cycle is played as `patchflow_cli::simulate::run_cycle` plays it (daily sync, hourly
//! tick, queues drained, the simulated engineer), with each part in its own phase of the proxy's
//! counts, so what the production functions make is told apart from the simulation's own reads
//! (the engineer's and the loop's hourly look at every tier and run) and from the queue pump,
//! whose receives and deletes Lambda's event source mappings make in AWS.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Timelike, Utc};
use patchflow_aws::bootstrap::{bootstrap, Names};
use patchflow_aws::config::sdk_config;
use patchflow_aws::dynamodb::DynamoState;
use patchflow_aws::s3::S3EvidenceStore;
use patchflow_aws::sqs::SqsQueues;
use patchflow_cli::simulate::{engineer, sim_env, SimulateSpec};
use patchflow_connectors::file::{FileCatalog, FileInventory};
use patchflow_core::ids::CycleId;
use patchflow_core::plan::Release;
use patchflow_core::policy::Policy;
use patchflow_core::ports::clock::{Clock, ManualClock};
use patchflow_core::ports::state::TierStore;
use patchflow_core::tier::TierState;
use patchflow_pipeline::pump::{drain_all, PumpOptions};
use patchflow_sim::fleet::{generate, FleetSpec};
use serde_json::{json, Value};

const CATALOG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../functions/cli/demo/catalog-2026-12.json"
);

/// List prices, us-east-1 (docs/performance.md cites the pages, checked 2026-12-02).
mod price {
    /// DynamoDB on demand, per read request unit.
    pub const DYNAMODB_READ: f64 = 0.125 / 1e6;
    /// DynamoDB on demand, per write request unit.
    pub const DYNAMODB_WRITE: f64 = 0.625 / 1e6;
    /// DynamoDB storage, per GB-month (the first 25 GB of an account are free).
    pub const DYNAMODB_STORAGE_GB_MONTH: f64 = 0.25;
    /// SQS standard queues, per request (64 KB chunk), past the free million.
    pub const SQS_REQUEST: f64 = 0.40 / 1e6;
    /// Lambda on arm64, per GB-second.
    pub const LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
    /// Lambda, per invocation.
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    /// S3 Standard PUT, COPY, POST, LIST, per request.
    pub const S3_PUT: f64 = 0.005 / 1e3;
    /// S3 Standard GET and the rest, per request.
    pub const S3_GET: f64 = 0.0004 / 1e3;
    /// S3 Standard storage, per GB-month.
    pub const S3_STORAGE_GB_MONTH: f64 = 0.023;
}

/// Every function's memory (infra/template.yaml, Globals).
const LAMBDA_MEMORY_GB: f64 = 0.25;

/// Assumed in-region latency of a request from Lambda, by service, for the modelled durations.
fn aws_latency(service: &str, op: &str) -> f64 {
    match (service, op) {
        ("dynamodb", _) => 0.008,
        ("sqs", _) => 0.015,
        ("s3", "PutObject") => 0.040,
        ("s3", _) => 0.020,
        _ => 0.020,
    }
}

/// The queue pump's operations: in AWS, the event source mappings make them.
fn pump_op(service: &str, op: &str) -> bool {
    service == "sqs"
        && matches!(
            op,
            "ReceiveMessage"
                | "DeleteMessage"
                | "DeleteMessageBatch"
                | "ChangeMessageVisibility"
                | "ChangeMessageVisibilityBatch"
        )
}

/// The counting proxy's control endpoints.
struct Proxy {
    addr: String,
}

impl Proxy {
    fn from_env() -> Self {
        let url = std::env::var("PATCHFLOW_COUNTING_PROXY_URL").unwrap_or_else(|_| {
            eprintln!(
                "aws_cost: no counting proxy: run `make bench-aws`, or \
                 PATCHFLOW_COUNTING_PROXY=1 tests/with-moto.sh cargo bench -p patchflow-tests --bench aws_cost"
            );
            std::process::exit(2)
        });
        let addr = url.trim_start_matches("http://").trim_end_matches('/');
        Self {
            addr: addr.to_owned(),
        }
    }

    fn call(&self, method: &str, path: &str, body: &str) -> String {
        let mut s =
            std::net::TcpStream::connect(&self.addr).expect("connect to the counting proxy");
        s.set_read_timeout(Some(StdDuration::from_secs(600))).ok();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .expect("write to the counting proxy");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read the counting proxy");
        let (head, rest) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        assert!(head.contains(" 200 "), "counting proxy: {head}");
        rest.to_owned()
    }

    fn phase(&self, name: &str) {
        self.call("POST", "/__phase", name);
    }

    fn reset(&self) {
        self.call("POST", "/__reset", "");
    }

    fn counts(&self) -> Value {
        serde_json::from_str(&self.call("GET", "/__counts", "")).expect("counts JSON")
    }

    fn table_bytes(&self, table: &str) -> Value {
        serde_json::from_str(&self.call("GET", &format!("/__table-bytes?table={table}"), ""))
            .expect("table bytes JSON")
    }
}

fn cycle() -> CycleId {
    "2026-12".parse().unwrap()
}

/// What one fleet's cycle measured.
struct Run {
    endpoints: usize,
    clients: usize,
    in_scope: usize,
    tiers: usize,
    closed: bool,
    hours: i64,
    messages: usize,
    wall: f64,
    /// Wall time per phase.
    phase_wall: BTreeMap<String, f64>,
    /// Lambda invocations: scheduled (sync, tick) and one per non-empty receive.
    invocations: f64,
    counts: Value,
    table: Value,
}

async fn run(dir: &Path, proxy: &Proxy, endpoints: usize, clients: usize) -> Run {
    let doc = generate(FleetSpec {
        endpoints,
        clients,
        seed: 42,
    });
    let inventory_path = dir.join(format!("inventory-{endpoints}.json"));
    std::fs::write(&inventory_path, serde_json::to_string(&doc).unwrap()).unwrap();
    let spec = SimulateSpec {
        inventory: inventory_path.clone(),
        catalog: CATALOG.into(),
        cycle: cycle(),
        failure_rate: 0.05,
        seed: 42,
        out: dir.to_owned(),
        policy: Policy::default(),
        engineer_response: Duration::hours(20),
        days: 45,
        deliver_twice: false,
    };

    proxy.reset();
    proxy.phase("setup");
    let sdk = sdk_config().await;
    let tag = format!("{}-{endpoints}", std::process::id());
    let names = Names {
        table: format!("pf-cost-{tag}"),
        bucket: format!("pf-cost-{tag}"),
        queue_prefix: format!("pf-cost-{tag}"),
        retention_days: 1,
        max_receives: 3,
        visibility: Duration::seconds(30),
    };
    bootstrap(&sdk, &names).await.expect("bootstrap on moto");
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let queues = SqsQueues::lookup(sqs, &names.queue_prefix)
        .await
        .expect("the stage queues");
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let consumer = queues.clone();
    let env = sim_env(
        DynamoState::new(dynamo, &names.table),
        queues,
        S3EvidenceStore::new(s3, &names.bucket),
        clock.clone(),
        &spec,
    );

    // The cycle, as run_cycle plays it.
    let release = Release::of(spec.cycle, &spec.policy, None);
    let start =
        release.released_at + Duration::minutes(i64::from(60 - release.released_at.minute()) % 60);
    clock.set(start);
    let inventory = FileInventory::new(&spec.inventory);
    let catalog = FileCatalog::new(spec.catalog.display().to_string());
    let opts = PumpOptions::default();
    let hours = spec.days * 24;
    let mut phase_wall: BTreeMap<String, f64> = BTreeMap::new();
    let mut timed = |name: &str, started: Instant| {
        *phase_wall.entry(name.to_owned()).or_default() += started.elapsed().as_secs_f64();
    };
    let began = Instant::now();
    let (mut syncs, mut ticks, mut messages) = (0usize, 0usize, 0usize);
    let mut closed = false;
    let mut tiers = 0;
    let mut hour = 0;
    while hour <= hours {
        let now = clock.now();
        if hour == 0 || now.hour() == 6 {
            proxy.phase("sync");
            let t = Instant::now();
            patchflow_pipeline::sync::inventory_sync(&env, &inventory, &catalog, now)
                .await
                .expect("inventory sync");
            timed("sync", t);
            syncs += 1;
        }
        proxy.phase("tick");
        let t = Instant::now();
        patchflow_pipeline::tick::tick(&env, now)
            .await
            .expect("tick");
        timed("tick", t);
        ticks += 1;
        proxy.phase("queues");
        let t = Instant::now();
        messages += drain_all(&env, &consumer, now, opts)
            .await
            .expect("drain")
            .done;
        timed("queues", t);
        proxy.phase("operator");
        let t = Instant::now();
        let acted = engineer(
            &env.state,
            &env.queues,
            spec.cycle,
            now,
            spec.engineer_response,
        )
        .await
        .expect("the simulated engineer");
        timed("operator", t);
        if acted > 0 {
            proxy.phase("queues");
            let t = Instant::now();
            messages += drain_all(&env, &consumer, now, opts)
                .await
                .expect("drain")
                .done;
            timed("queues", t);
        }
        proxy.phase("harness");
        let t = Instant::now();
        let all = env.state.list_tiers(spec.cycle).await.expect("tiers");
        timed("harness", t);
        tiers = all.len();
        if !all.is_empty() && all.iter().all(|t| t.state == TierState::Closed) {
            closed = true;
            break;
        }
        clock.advance(Duration::hours(1));
        hour += 1;
    }
    let wall = began.elapsed().as_secs_f64();
    proxy.phase("harness");
    let summary = patchflow_pipeline::summary::summarize(&env.state, spec.cycle)
        .await
        .expect("summary");
    let in_scope: usize = summary.rows.iter().map(|r| r.in_scope()).sum();
    proxy.phase("measure");
    let counts = proxy.counts();
    let table = proxy.table_bytes(&names.table);
    let nonempty: f64 = counts["receives"]["queues"]
        .as_object()
        .map(|q| {
            q.values()
                .map(|r| r["nonempty"].as_f64().unwrap_or(0.0))
                .sum()
        })
        .unwrap_or(0.0);
    Run {
        endpoints,
        clients,
        in_scope,
        tiers,
        closed,
        hours: hour.min(hours),
        messages,
        wall,
        phase_wall,
        invocations: (syncs + ticks) as f64 + nonempty,
        counts,
        table,
    }
}

/// Sums of one phase's counts: requests, billed requests, read and write units, proxy seconds.
#[derive(Default, Clone, Copy)]
struct Sum {
    requests: f64,
    billed: f64,
    rcu: f64,
    wcu: f64,
    index_wcu: f64,
    moto_rcu: f64,
    moto_wcu: f64,
    bytes_in: f64,
    proxy_seconds: f64,
    modelled_seconds: f64,
}

impl Sum {
    fn add(&mut self, service: &str, op: &str, s: &Value) {
        let f = |k: &str| s[k].as_f64().unwrap_or(0.0);
        self.requests += f("requests");
        self.billed += f("billed_requests");
        self.rcu += f("rcu");
        self.wcu += f("wcu");
        self.index_wcu += f("index_wcu");
        self.moto_rcu += f("moto_rcu");
        self.moto_wcu += f("moto_wcu");
        self.bytes_in += f("bytes_in");
        self.proxy_seconds += f("proxy_seconds");
        self.modelled_seconds += f("requests") * aws_latency(service, op);
    }
}

/// Each (phase, service, operation) of the counts.
fn each(counts: &Value) -> Vec<(String, String, String, Value)> {
    let mut out = Vec::new();
    for (phase, services) in counts["phases"].as_object().into_iter().flatten() {
        for (service, ops) in services.as_object().into_iter().flatten() {
            for (op, s) in ops.as_object().into_iter().flatten() {
                out.push((phase.clone(), service.clone(), op.clone(), s.clone()));
            }
        }
    }
    out
}

/// The phases the production system has (sync, tick, queue handlers and their pump).
const PRODUCTION: [&str; 3] = ["sync", "tick", "queues"];

/// What the cost table needs, per in-scope endpoint.
#[derive(Default, Clone, Copy)]
struct PerEndpoint {
    requests: f64,
    rcu: f64,
    wcu: f64,
    dynamodb_requests: f64,
    sqs_billed: f64,
    s3_put: f64,
    s3_get: f64,
    s3_bytes: f64,
    lambda_invocations: f64,
    lambda_gb_s_measured: f64,
    lambda_gb_s_modelled: f64,
    table_bytes: f64,
}

fn report(r: &Run) -> PerEndpoint {
    let n = r.in_scope.max(1) as f64;
    println!();
    println!(
        "== {} endpoints, {} clients: {} in scope, {} tiers {}, {} hours simulated, {} messages handled, {:.0} s wall",
        r.endpoints,
        r.clients,
        r.in_scope,
        r.tiers,
        if r.closed { "all closed" } else { "NOT all closed" },
        r.hours,
        r.messages,
        r.wall
    );
    let rows = each(&r.counts);
    let mut phase_sums: BTreeMap<String, Sum> = BTreeMap::new();
    let mut handler_sums: BTreeMap<String, Sum> = BTreeMap::new();
    let mut pe = PerEndpoint::default();
    println!(
        "{:<9} {:<8} {:<22} {:>9} {:>9} {:>10} {:>10} {:>8} {:>8}",
        "phase", "service", "operation", "requests", "/endpoint", "RRU", "WRU", "RRU/ep", "WRU/ep"
    );
    for (phase, service, op, s) in &rows {
        if phase == "setup" || phase == "measure" {
            continue;
        }
        let mut one = Sum::default();
        one.add(service, op, s);
        phase_sums
            .entry(phase.clone())
            .or_default()
            .add(service, op, s);
        if !pump_op(service, op) {
            handler_sums
                .entry(phase.clone())
                .or_default()
                .add(service, op, s);
        }
        println!(
            "{:<9} {:<8} {:<22} {:>9.0} {:>9.2} {:>10.1} {:>10.1} {:>8.2} {:>8.2}",
            phase,
            service,
            op,
            one.requests,
            one.requests / n,
            one.rcu,
            one.wcu,
            one.rcu / n,
            one.wcu / n
        );
        if PRODUCTION.contains(&phase.as_str()) {
            pe.requests += one.requests;
            pe.rcu += one.rcu;
            pe.wcu += one.wcu;
            match service.as_str() {
                "dynamodb" => pe.dynamodb_requests += one.requests,
                "sqs" if op == "ReceiveMessage" => {
                    // Lambda's pollers: a receive that returned messages, and its batch delete;
                    // empty long polls are a fixed cost per queue (see the docs).
                    let nonempty: f64 = r.counts["receives"][phase.as_str()]
                        .as_object()
                        .map(|q| {
                            q.values()
                                .map(|x| x["nonempty"].as_f64().unwrap_or(0.0))
                                .sum()
                        })
                        .unwrap_or(0.0);
                    pe.sqs_billed += 2.0 * nonempty;
                }
                "sqs" if pump_op(service, op) => {}
                "sqs" => pe.sqs_billed += one.billed,
                "s3" if op.starts_with("Put") || op.starts_with("List") || op == "CreateBucket" => {
                    pe.s3_put += one.requests;
                    if op == "PutObject" {
                        pe.s3_bytes += one.bytes_in;
                    }
                }
                "s3" => pe.s3_get += one.requests,
                _ => {}
            }
        }
    }
    println!("by phase (wall time on moto; the proxy's time, moto's and its look-ups, inside it):");
    println!(
        "{:<9} {:>9} {:>9} {:>10} {:>10} {:>8} {:>8} {:>9} {:>9}",
        "phase", "requests", "/endpoint", "RRU", "WRU", "RRU/ep", "WRU/ep", "wall s", "proxy s"
    );
    let lookups = &r.counts["lookup_seconds"];
    for (phase, s) in &phase_sums {
        println!(
            "{:<9} {:>9.0} {:>9.1} {:>10.1} {:>10.1} {:>8.2} {:>8.2} {:>9.1} {:>9.1}",
            phase,
            s.requests,
            s.requests / n,
            s.rcu,
            s.wcu,
            s.rcu / n,
            s.wcu / n,
            r.phase_wall.get(phase).copied().unwrap_or(0.0),
            s.proxy_seconds
        );
    }
    // Which records the units go to (production phases; the proxy names a request by the first
    // record it touches), the costliest first.
    let mut kinds: Vec<(String, String, f64, f64, f64)> = Vec::new();
    for (phase, by_kind) in r.counts["kinds"].as_object().into_iter().flatten() {
        if !PRODUCTION.contains(&phase.as_str()) {
            continue;
        }
        for (kind, k) in by_kind.as_object().into_iter().flatten() {
            let f = |name: &str| k[name].as_f64().unwrap_or(0.0);
            kinds.push((
                phase.clone(),
                kind.clone(),
                f("requests"),
                f("rcu"),
                f("wcu"),
            ));
        }
    }
    kinds.sort_by(|a, b| (b.3 + b.4).total_cmp(&(a.3 + a.4)));
    println!("by record kind (production, the costliest 25):");
    println!(
        "{:<9} {:<44} {:>9} {:>9} {:>8} {:>8}",
        "phase", "operation and record", "requests", "/endpoint", "RRU/ep", "WRU/ep"
    );
    for (phase, kind, requests, rcu, wcu) in kinds.iter().take(25) {
        println!(
            "{:<9} {:<44} {:>9.0} {:>9.2} {:>8.2} {:>8.2}",
            phase,
            kind,
            requests,
            requests / n,
            rcu / n,
            wcu / n
        );
    }
    let moto: (f64, f64) = phase_sums
        .iter()
        .filter(|(p, _)| PRODUCTION.contains(&p.as_str()))
        .fold((0.0, 0.0), |a, (_, s)| (a.0 + s.moto_rcu, a.1 + s.moto_wcu));
    let index: f64 = phase_sums
        .iter()
        .filter(|(p, _)| PRODUCTION.contains(&p.as_str()))
        .map(|(_, s)| s.index_wcu)
        .sum();
    // Lambda: the handlers' own time is the phase's wall time less what the proxy spent on its
    // requests (moto, the proxy's look-ups); measured, its requests take moto's time less the
    // look-ups; modelled, each takes an assumed in-region AWS latency.
    let (mut measured, mut modelled) = (0.0, 0.0);
    for phase in PRODUCTION {
        let wall = r.phase_wall.get(phase).copied().unwrap_or(0.0);
        let all = phase_sums.get(phase).copied().unwrap_or_default();
        let own = handler_sums.get(phase).copied().unwrap_or_default();
        let lookup = lookups[phase].as_f64().unwrap_or(0.0);
        let compute = (wall - all.proxy_seconds).max(0.0);
        measured += compute + (own.proxy_seconds - lookup).max(0.0);
        modelled += compute + own.modelled_seconds;
    }
    pe.lambda_gb_s_measured = measured * LAMBDA_MEMORY_GB / n;
    pe.lambda_gb_s_modelled = modelled * LAMBDA_MEMORY_GB / n;
    pe.lambda_invocations = r.invocations / n;
    pe.table_bytes = r.table["bytes"].as_f64().unwrap_or(0.0) / n;
    pe.requests /= n;
    pe.rcu /= n;
    pe.wcu /= n;
    pe.dynamodb_requests /= n;
    pe.sqs_billed /= n;
    pe.s3_put /= n;
    pe.s3_get /= n;
    pe.s3_bytes /= n;
    println!(
        "production (sync, tick, queues) per in-scope endpoint: {:.1} AWS requests ({:.1} DynamoDB), \
         {:.2} RRU, {:.2} WRU ({:.2} of them to indexes); moto itself reported {:.2} RRU, {:.2} WRU",
        pe.requests,
        pe.dynamodb_requests,
        pe.rcu,
        pe.wcu,
        index / n,
        moto.0 / n,
        moto.1 / n
    );
    println!(
        "  Lambda: {:.2} invocations, {:.3} GB-s measured on moto, {:.3} GB-s modelled; SQS billed {:.2}; \
         S3 {:.2} PUT-class, {:.2} GET-class, {:.0} bytes PUT; table {} items, {:.0} bytes per endpoint",
        pe.lambda_invocations,
        pe.lambda_gb_s_measured,
        pe.lambda_gb_s_modelled,
        pe.sqs_billed,
        pe.s3_put,
        pe.s3_get,
        pe.s3_bytes,
        r.table["items"],
        pe.table_bytes
    );
    pe
}

fn cost_table(pe: &PerEndpoint, label: &str) -> f64 {
    let k = 10_000.0;
    let gb = 1024.0 * 1024.0 * 1024.0;
    let lambda_gb_s = pe.lambda_gb_s_measured.max(pe.lambda_gb_s_modelled);
    let rows = [
        (
            "DynamoDB reads (on demand)",
            format!("{:.0} RRU", pe.rcu * k),
            pe.rcu * k * price::DYNAMODB_READ,
        ),
        (
            "DynamoDB writes (on demand)",
            format!("{:.0} WRU", pe.wcu * k),
            pe.wcu * k * price::DYNAMODB_WRITE,
        ),
        (
            "DynamoDB storage (a month)",
            format!("{:.1} MB", pe.table_bytes * k / 1e6),
            pe.table_bytes * k / gb * price::DYNAMODB_STORAGE_GB_MONTH,
        ),
        (
            "SQS (billed requests)",
            format!("{:.0}", pe.sqs_billed * k),
            pe.sqs_billed * k * price::SQS_REQUEST,
        ),
        (
            "Lambda invocations",
            format!("{:.0}", pe.lambda_invocations * k),
            pe.lambda_invocations * k * price::LAMBDA_REQUEST,
        ),
        (
            "Lambda duration (256 MB arm64)",
            format!("{:.0} GB-s", lambda_gb_s * k),
            lambda_gb_s * k * price::LAMBDA_GB_SECOND,
        ),
        (
            "S3 PUT-class requests",
            format!("{:.0}", pe.s3_put * k),
            pe.s3_put * k * price::S3_PUT,
        ),
        (
            "S3 GET-class requests",
            format!("{:.0}", pe.s3_get * k),
            pe.s3_get * k * price::S3_GET,
        ),
        (
            "S3 storage (a year)",
            format!("{:.1} MB", pe.s3_bytes * k / 1e6),
            pe.s3_bytes * k / gb * 12.0 * price::S3_STORAGE_GB_MONTH,
        ),
    ];
    println!();
    println!("Cost per 10,000 in-scope endpoints per cycle at list prices ({label}):");
    let mut total = 0.0;
    for (what, qty, usd) in &rows {
        println!("  {what:<32} {qty:>14}  ${usd:.4}");
        total += usd;
    }
    println!(
        "  {:<32} {:>14}  ${total:.4} (target: under $0.10)",
        "total", ""
    );
    total
}

fn main() {
    // `cargo test --all-targets` (make test) runs bench targets without `--bench`: it only
    // checks that the bench builds; the measurement runs under `cargo bench` (make bench-aws).
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("aws_cost: built; run `make bench-aws` to measure");
        return;
    }
    let fleets: Vec<(usize, usize)> = std::env::var("PATCHFLOW_BENCH_AWS_FLEETS")
        .unwrap_or_else(|_| "200:5,2000:20".into())
        .split(',')
        .filter_map(|f| {
            let (e, c) = f.split_once(':')?;
            Some((e.trim().parse().ok()?, c.trim().parse().ok()?))
        })
        .collect();
    let proxy = Proxy::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for (endpoints, clients) in &fleets {
        eprintln!("aws_cost: a cycle of {endpoints} endpoints over {clients} clients on moto ...");
        let r = rt.block_on(run(dir.path(), &proxy, *endpoints, *clients));
        let pe = report(&r);
        results.push((r, pe));
    }
    if let [(a, pa), .., (b, pb)] = results.as_slice() {
        let ratio = |x: f64, y: f64| if x > 0.0 { y / x } else { f64::NAN };
        println!();
        println!(
            "per in-scope endpoint, {} vs {} endpoints: requests {:.2}x, RRU {:.2}x, WRU {:.2}x \
             (target: within 20%)",
            b.endpoints,
            a.endpoints,
            ratio(pa.requests, pb.requests),
            ratio(pa.rcu, pb.rcu),
            ratio(pa.wcu, pb.wcu)
        );
    }
    let mut out = Vec::new();
    for (r, pe) in &results {
        let total = cost_table(pe, &format!("measured at {} endpoints", r.endpoints));
        out.push(json!({
            "endpoints": r.endpoints, "clients": r.clients, "in_scope": r.in_scope,
            "tiers": r.tiers, "all_closed": r.closed, "hours": r.hours, "messages": r.messages,
            "wall_seconds": r.wall, "phase_wall_seconds": r.phase_wall,
            "per_endpoint": {
                "requests": pe.requests, "rru": pe.rcu, "wru": pe.wcu,
                "dynamodb_requests": pe.dynamodb_requests, "sqs_billed": pe.sqs_billed,
                "s3_put": pe.s3_put, "s3_get": pe.s3_get, "s3_bytes": pe.s3_bytes,
                "lambda_invocations": pe.lambda_invocations,
                "lambda_gb_s_measured": pe.lambda_gb_s_measured,
                "lambda_gb_s_modelled": pe.lambda_gb_s_modelled,
                "table_bytes": pe.table_bytes,
            },
            "cost_per_10000_usd": total,
            "counts": r.counts, "table": r.table,
        }));
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench/aws-cost.json");
    std::fs::create_dir_all(path.parent().unwrap()).ok();
    std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap()).ok();
    println!();
    println!("(raw counts in target/bench/aws-cost.json)");
}
