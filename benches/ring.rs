//! The packet ring: the sensor's packet rate with and without keeping
//! packets, the ring's own write rate, and the time to fetch one flow from
//! a large ring, in one run.
//!
//! `cargo bench --bench ring`; `CITYSOC_BENCH_MB` (default 256) sizes the
//! realistic mix, `CITYSOC_BENCH_RING_MB` (default 10240) the ring that
//! flows are fetched from. Without `--bench` (as `cargo test` runs it) a
//! quick pass over small sizes checks the harness works.

use citysoc::sensor_setup::SensorConfig;
use schema::{FlowUid, Time};
use sensor::capture::SourceSpec;
use sensor::output::EventSink;
use sensor::pipeline::{self, Controls, Hooks};
use sensor::ring::{flow_packets, read_pcap, PacketRing, Pins, RingConfig};
use sensor::worker::RingSetup;
use sensor::SensorError;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

mod common;
use common::capture;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Discard;

impl EventSink for Discard {
    fn write(&mut self, _: &mut [schema::Event]) -> Result<(), SensorError> {
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SensorError> {
        Ok(())
    }
}

fn ring_cfg(dir: &Path, budget: u64) -> Arc<RingConfig> {
    Arc::new(RingConfig {
        dir: dir.to_path_buf(),
        segment_bytes: 64 << 20,
        budget_bytes: budget,
        max_age_secs: 0,
        flow_bytes: 0,
        hold_secs: 0,
        headers_only: None,
    })
}

fn sensor_rate(path: &Path, ring: Option<&Path>) -> f64 {
    let cfg = SensorConfig { workers: 1, ..Default::default() };
    let mut pcfg = cfg.pipeline();
    pcfg.worker.ring = ring.map(|d| RingSetup { cfg: ring_cfg(d, 1 << 40), pins: Arc::new(Pins::default()) });
    let t = Instant::now();
    let (sum, _) =
        pipeline::run(&SourceSpec::File(path.to_path_buf()), &pcfg, Discard, Controls::default(), Hooks::default())
            .expect("sensor run");
    sum.stats.pkts_read as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let mb = if quick { 4 } else { env("CITYSOC_BENCH_MB", 256) };
    let ring_mb = if quick { 64 } else { env("CITYSOC_BENCH_RING_MB", 10_240) };
    let path = capture(mb);
    let work = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-data/ring");
    let _ = std::fs::remove_dir_all(&work);

    // Alternated, best of three each: the first run warms the page cache.
    let (mut plain, mut with_ring) = (0f64, 0f64);
    for _ in 0..if quick { 1 } else { 3 } {
        plain = plain.max(sensor_rate(&path, None));
        with_ring = with_ring.max(sensor_rate(&path, Some(&work.join("sensor"))));
        let _ = std::fs::remove_dir_all(&work);
    }

    // The ring alone: every frame of the capture, one flow per 8 frames.
    let (dlt, frames) = read_pcap(&path).expect("read capture");
    let bytes: u64 = frames.iter().map(|p| p.data.len() as u64).sum();
    let pins = Arc::new(Pins::default());
    let mut ring = PacketRing::open(ring_cfg(&work.join("alone"), 1 << 40), Arc::clone(&pins), 0, 1, dlt).unwrap();
    let t = Instant::now();
    for (i, p) in frames.iter().enumerate() {
        ring.write(p.ts, &p.data, &[FlowUid::new((i / 8) as u128)], None, false);
    }
    ring.finish();
    let alone = frames.len() as f64 / t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&work);

    // A large ring: the capture written again and again (time shifted)
    // until it holds `ring_mb`, then single flows fetched with the time
    // range of their records, as the pcap endpoint asks.
    let big = work.join("big");
    let mut ring = PacketRing::open(ring_cfg(&big, u64::MAX), pins, 0, 1, dlt).unwrap();
    let span = frames.last().map_or(0, |p| p.ts.0) - frames.first().map_or(0, |p| p.ts.0) + 1_000_000;
    let rounds = (ring_mb << 20).div_ceil(bytes.max(1)).max(1);
    let mut written = 0u64;
    for r in 0..rounds {
        for (i, p) in frames.iter().enumerate() {
            let uid = FlowUid::new((((r as usize) << 32) | (i / 8)) as u128);
            ring.write(Time(p.ts.0 + r as i64 * span), &p.data, &[uid], None, false);
        }
        written += bytes;
    }
    ring.finish();
    let mut lat = Vec::new();
    for k in 0..20u64 {
        let r = (k * 7919) % rounds;
        let i = ((k * 104_729) as usize % frames.len()) / 8 * 8;
        let uid = FlowUid::new((((r as usize) << 32) | (i / 8)) as u128);
        let ts = frames[i].ts.0 + r as i64 * span;
        let (from, to) =
            (Time(ts - 1_000_000), Time(frames[(i + 7).min(frames.len() - 1)].ts.0 + r as i64 * span + 1_000_000));
        let t = Instant::now();
        let (_, pkts) = flow_packets(&big, uid, Some(from), Some(to)).expect("fetch");
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(!pkts.is_empty() && pkts.len() <= 8, "{k}: {}", pkts.len());
    }
    lat.sort_by(f64::total_cmp);
    let _ = std::fs::remove_dir_all(&work);
    println!(
        "capture {} ({} packets, {:.0} B/packet)",
        path.display(),
        frames.len(),
        bytes as f64 / frames.len() as f64
    );
    println!("| measure | value | vs sensor without ring |");
    println!("|---|---:|---:|");
    println!("| sensor, flows + analyzers, 1 worker | {plain:.0} packets/s | 1.00x |");
    println!("| same, keeping every packet in the ring | {with_ring:.0} packets/s | {:.2}x |", with_ring / plain);
    println!(
        "| ring alone (write + index) | {alone:.0} packets/s, {:.0} MB/s | {:.1}x |",
        alone * bytes as f64 / frames.len() as f64 / 1e6,
        alone / plain
    );
    println!(
        "| one flow from a {:.1} GB ring, p50 / max of 20 | {:.2} / {:.2} ms | |",
        written as f64 / 1e9,
        lat[lat.len() / 2],
        lat[lat.len() - 1]
    );
}
