//! `make bench`: plan a generated 100,000-endpoint fleet, against the I/O floor of merely parsing
//! that inventory and serializing a plan of the same size.
//!
//! Run with `cargo bench -p patchflow-cli --bench plan` (or `make bench`, which also measures the
//! real binary's wall time and peak memory). Environment: PATCHFLOW_BENCH_ENDPOINTS (default
//! 100000), PATCHFLOW_BENCH_CLIENTS (default 500), PATCHFLOW_BENCH_RUNS (default 7).

use std::hint::black_box;
use std::time::{Duration, Instant};

use patchflow_core::contract::{parse_catalog, parse_inventory, CatalogDoc, InventoryDoc};
use patchflow_core::ids::CycleId;
use patchflow_core::plan::{plan, Release};
use patchflow_core::policy::Policy;
use patchflow_sim::fleet::{generate, FleetSpec};

const CATALOG: &str = include_str!("../demo/catalog-2026-12.json");

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median wall time of `f`; what `f` returns is dropped outside the timing, as the CLI leaves
/// its plan to the process exit.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    drop(f()); // warm-up: page in, size the allocator's arenas
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                let kept = black_box(f());
                let elapsed = t.elapsed();
                drop(kept);
                elapsed
            })
            .collect(),
    )
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this too, without it, as a
    // smoke test on a small fleet so the bench keeps compiling and working.
    let measuring = std::env::args().any(|a| a == "--bench");
    let (default_endpoints, default_runs) = if measuring { (100_000, 7) } else { (1_000, 1) };
    let endpoints = env("PATCHFLOW_BENCH_ENDPOINTS", default_endpoints);
    let clients = env("PATCHFLOW_BENCH_CLIENTS", 500).min(endpoints);
    let runs = env("PATCHFLOW_BENCH_RUNS", default_runs).max(1);
    let cycle: CycleId = "2026-12".parse().expect("valid cycle");
    let policy = Policy::default();
    let release = Release::of(cycle, &policy, None);

    let inventory_json = serde_json::to_string(&generate(FleetSpec {
        endpoints,
        clients,
        seed: 1,
    }))
    .expect("fleet serializes");
    println!(
        "fleet: {endpoints} endpoints, {clients} clients, {:.1} MB of inventory JSON; {runs} runs, median",
        inventory_json.len() as f64 / 1e6
    );

    let inventory = parse_inventory("bench", &inventory_json).expect("generated fleet is valid");
    let catalog = parse_catalog("catalog", CATALOG).expect("demo catalog is valid");
    let reference = plan(&inventory, &catalog, release, &policy);
    let mut out = Vec::with_capacity(1 << 26);
    serde_json::to_writer(&mut out, &reference).expect("plan serializes");
    let plan_bytes = out.len();

    let floor = time(runs, || {
        let inv: InventoryDoc = serde_json::from_str(&inventory_json).expect("parses");
        let cat: CatalogDoc = serde_json::from_str(CATALOG).expect("parses");
        out.clear();
        serde_json::to_writer(&mut out, &reference).expect("serializes");
        (inv, cat)
    });
    let decide = time(runs, || plan(&inventory, &catalog, release, &policy));
    let full = time(runs, || {
        let inv = parse_inventory("bench", &inventory_json).expect("parses");
        let cat = parse_catalog("catalog", CATALOG).expect("parses");
        let p = plan(&inv, &cat, release, &policy);
        out.clear();
        serde_json::to_writer(&mut out, &p).expect("serializes");
        (inv, cat, p)
    });

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("plan JSON: {:.1} MB", plan_bytes as f64 / 1e6);
    println!(
        "{:<52} {:>9.1} ms",
        "I/O floor (parse inventory + serialize a plan)",
        ms(floor)
    );
    println!(
        "{:<52} {:>9.1} ms",
        "decisions only (plan, inputs already parsed)",
        ms(decide)
    );
    println!(
        "{:<52} {:>9.1} ms",
        "full plan (parse + validate + plan + serialize)",
        ms(full)
    );
    let ratio = full.as_secs_f64() / floor.as_secs_f64();
    println!("{:<52} {:>9.2}x", "full / floor", ratio);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "targets: full < 1 s: {}; full within 3x of the floor: {}",
        verdict(full < Duration::from_secs(1)),
        verdict(ratio <= 3.0)
    );
}
