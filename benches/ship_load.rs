//! Several sensors shipping to one SOC at once, each replaying a capture as
//! fast as it can: records per second stored (acknowledged, so committed
//! and searchable) and the latency from a record being made to it being
//! searchable, p50 and p99 over every record. The baseline, in the same
//! run, is one sensor alone.
//!
//! `cargo bench --bench ship_load` (`CITYSOC_BENCH_SENSORS=N`, default 4;
//! `CITYSOC_BENCH_MB=M` per sensor, default 16). Without `--bench` (as
//! `cargo test` runs it) it ships a 1 MiB capture from two sensors to check
//! the harness. Sensor, SIEM and store run in this process on loopback,
//! through the same code as `citysoc sensor --ship` and `citysoc serve`
//! (Tantivy, detection off: the shipping path is what is measured).

#[path = "common/mod.rs"]
mod common;

use citysoc::sensor_setup::SensorConfig;
use citysoc::ship::{ShipConfig, ShipSink, SpoolFull};
use schema::Event;
use sensor::capture::SourceSpec;
use sensor::output::EventSink;
use sensor::pipeline::{self, Controls, Hooks};
use siem::api::{hash_token, router, AppState, Tokens};
use siem::query::Query;
use siem::store::tantivy::{TantivyConfig, TantivyStore};
use siem::store::{SearchRequest, Store};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// No local logs: the SOC is where the records go.
struct Discard;

impl EventSink for Discard {
    fn write(&mut self, _: &mut [Event]) -> Result<(), sensor::SensorError> {
        Ok(())
    }
    fn flush(&mut self) -> Result<(), sensor::SensorError> {
        Ok(())
    }
}

struct Soc {
    rt: tokio::runtime::Runtime,
    store: Arc<dyn Store>,
    url: String,
    _dir: tempfile::TempDir,
}

fn soc(sensors: usize) -> Soc {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> =
        Arc::new(TantivyStore::open(dir.path(), TantivyConfig { writer_heap_mb: 128 }).expect("store"));
    let mut tokens = Tokens::default();
    for i in 0..sensors {
        tokens.sensors.insert(format!("district-{i}"), hash_token(&format!("token-{i}")));
    }
    let state = Arc::new(AppState::new(Arc::clone(&store), Some(tokens), Some(dir.path()), 4));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("listen");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    rt.spawn(async move {
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        let _ = axum::serve(listener, app).await;
    });
    Soc { rt, store, url, _dir: dir }
}

struct Outcome {
    secs: f64,
    made: u64,
    stored: u64,
    /// (seconds, records) per batch.
    latencies: Vec<(f64, u64)>,
}

/// `n` sensors replay `capture` at once into a fresh SOC.
fn run(n: usize, capture: &Path) -> Outcome {
    let soc = soc(n);
    let spools = tempfile::tempdir().expect("temp dir");
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let cfg = ShipConfig {
                url: soc.url.clone(),
                token: format!("token-{i}"),
                batch_records: env_batch(),
                batch_secs: 2.0,
                retry_secs: 600,
                spool_dir: spools.path().join(format!("s{i}")),
                spool_bytes: 1 << 30,
                spool_full: SpoolFull::Pause,
                tls: Default::default(),
                report_every: None,
                stop_on_refusal: None,
                warn_every: std::time::Duration::from_secs(60),
            };
            let capture = capture.to_path_buf();
            std::thread::spawn(move || {
                let sensor = SensorConfig { workers: 1, ..Default::default() };
                let sink = ShipSink::new(Discard, cfg, &format!("district-{i}")).expect("ship sink");
                let spec = SourceSpec::File(capture);
                let (_, sink) = pipeline::run(&spec, &sensor.pipeline(), sink, Controls::default(), Hooks::default())
                    .expect("sensor run");
                let made = sink.counters().spooled_records.load(std::sync::atomic::Ordering::Relaxed);
                (made, sink.latencies())
            })
        })
        .collect();
    let mut made = 0;
    let mut latencies = Vec::new();
    for h in handles {
        let (m, l) = h.join().expect("sensor thread");
        made += m;
        latencies.extend(l);
    }
    let secs = start.elapsed().as_secs_f64();
    let mut all = SearchRequest::new(Query::Not(Box::new(Query::Term { field: "_log".into(), value: "stats".into() })));
    all.limit = 1;
    let stored = soc.store.search(&all).expect("count").total;
    drop(soc.rt);
    Outcome { secs, made, stored, latencies }
}

/// The latency below which a share `p` of the records were searchable.
fn pct(lat: &[(f64, u64)], p: f64) -> f64 {
    let mut v = lat.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: u64 = v.iter().map(|x| x.1).sum();
    let mut acc = 0;
    for (t, n) in &v {
        acc += n;
        if acc as f64 >= p * total as f64 {
            return *t;
        }
    }
    v.last().map_or(0.0, |x| x.0)
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (sensors, mb) =
        if quick { (2, 1) } else { (env("CITYSOC_BENCH_SENSORS", 4) as usize, env("CITYSOC_BENCH_MB", 16)) };
    let capture = common::capture(mb);
    println!("{sensors} sensors shipping a {mb} MiB mix each to one SOC (Tantivy), on this machine's cores");
    println!(
        "{:<10} {:>12} {:>10} {:>14} {:>9} {:>9} {:>10}",
        "sensors", "records", "seconds", "records/s", "p50 ms", "p99 ms", "vs 1"
    );
    let mut base = 0.0;
    for n in [1, sensors] {
        let o = run(n, &capture);
        assert_eq!(o.stored, o.made, "every record made is stored once");
        let rate = o.stored as f64 / o.secs;
        if n == 1 {
            base = rate;
        }
        println!(
            "{:<10} {:>12} {:>10.2} {:>14.0} {:>9.0} {:>9.0} {:>9.2}x",
            n,
            o.stored,
            o.secs,
            rate,
            pct(&o.latencies, 0.5) * 1000.0,
            pct(&o.latencies, 0.99) * 1000.0,
            rate / base
        );
    }
}

/// Records per batch, as `--ship-batch-records` (`CITYSOC_BENCH_BATCH`).
fn env_batch() -> usize {
    std::env::var("CITYSOC_BENCH_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(5000)
}
