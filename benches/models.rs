//! Records per second through every anomaly model, next to the rate at
//! which the sensor makes records from a capture, in the same run.
//!
//! `cargo bench --bench models`; `CITYSOC_BENCH_MB` (default 256) sizes
//! the generated realistic mix (`bench-data/mix-<MB>mb.pcap`, shared with
//! the sensor's benchmark). Without `--bench` (as `cargo test` runs it) it
//! does a quick pass over 4 MiB that checks the harness works.

use citysoc::detection::DetectSettings;
use citysoc::sensor_setup::SensorConfig;
use detector::flat::FlatRecord;
use detector::models::Models;
use schema::Event;
use sensor::capture::SourceSpec;
use sensor::output::EventSink;
use sensor::pipeline::{self, Controls, Hooks};
use sensor::SensorError;
use std::path::Path;
use std::time::Instant;

mod common;
use common::capture;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Collect(Vec<Event>);

impl EventSink for Collect {
    fn write(&mut self, events: &mut [Event]) -> Result<(), SensorError> {
        self.0.extend(events.iter().filter(|e| !matches!(e, Event::Stats(_))).cloned());
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SensorError> {
        Ok(())
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("models: bench");
        return;
    }
    let quick = !std::env::args().any(|a| a == "--bench");
    let mb: u64 =
        if quick { 4 } else { std::env::var("CITYSOC_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(256) };
    let path = capture(mb);
    let cfg = SensorConfig { workers: 1, ..Default::default() };
    let pcfg = cfg.pipeline();
    let t = Instant::now();
    let (summary, sink) = pipeline::run(
        &SourceSpec::File(path.clone()),
        &pcfg,
        Collect(Vec::new()),
        Controls::default(),
        Hooks::default(),
    )
    .expect("sensor run");
    let sensor_secs = t.elapsed().as_secs_f64();
    let events = sink.0;
    let n = events.len() as f64;
    let mut by_log: std::collections::BTreeMap<&str, usize> = Default::default();
    for e in &events {
        *by_log.entry(e.log_name()).or_default() += 1;
    }
    println!("capture {} ({} packets): {} records {:?}", path.display(), summary.stats.pkts_read, events.len(), by_log);

    let settings =
        DetectSettings { rules_dir: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")), ..Default::default() };
    let rules = settings.load("bench").expect("rules");
    // Baseline in the same run: turning each record into fields, which the
    // detector does once per record for every rule kind.
    let mut flat = FlatRecord::default();
    let t = Instant::now();
    let mut fields = 0usize;
    for e in &events {
        flat.fill(e);
        fields += flat.fields.len();
    }
    let fill_secs = t.elapsed().as_secs_f64();
    let mut models = Models::new(rules.models.clone());
    let mut out = Vec::new();
    let t = Instant::now();
    for e in &events {
        flat.fill(e);
        models.observe(e.log_name(), &flat, "bench", &mut out);
    }
    models.flush("bench", &mut out);
    let models_secs = t.elapsed().as_secs_f64();
    let state: usize = models.state_sizes().iter().map(|s| s.1).sum();
    assert!(events.len() > 1000 && models.counters.records as usize == events.len(), "{:?}", models.counters);
    // Each model alone, to show where the time goes.
    let mut alone = Vec::new();
    for name in detector::models::MODEL_IDS {
        let mut only = rules.models.clone();
        if name != &"scan" {
            only.scan = None;
        }
        if name != &"flood" {
            only.flood = None;
        }
        if name != &"beacon" {
            only.beacon = None;
        }
        if name != &"dns" {
            only.dns = None;
        }
        if name != &"brute" {
            only.brute = None;
        }
        if name != &"iot" {
            only.iot = None;
        }
        let mut m = Models::new(only);
        let t = Instant::now();
        for e in &events {
            flat.fill(e);
            m.observe(e.log_name(), &flat, "bench", &mut out);
        }
        m.flush("bench", &mut out);
        alone.push((format!("records to fields + {name} model alone"), t.elapsed().as_secs_f64()));
    }
    println!(
        "fields per record {:.1}; model alerts {}; state entries at the end {state}",
        fields as f64 / n,
        out.len()
    );
    println!("| stage | records/s | vs sensor |");
    println!("|---|---:|---:|");
    let sensor_rate = n / sensor_secs;
    let mut rows = vec![
        ("sensor: capture to records (flows + analyzers, 1 worker)".to_string(), sensor_secs),
        ("records to fields (baseline)".to_string(), fill_secs),
        ("records to fields + all models".to_string(), models_secs),
    ];
    rows.extend(alone);
    for (name, secs) in rows {
        let rate = n / secs;
        println!("| {name} | {:.0} | {:.1}x |", rate, rate / sensor_rate);
    }
}
