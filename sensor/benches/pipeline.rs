//! Replay benchmark: the sensor pipeline against a bare libpcap read loop over
//! the same capture, in the same run.
//!
//! `cargo bench -p sensor --bench pipeline` generates (once) a realistic mix
//! and a small-packet mix under `bench-data/` (size from `CITYSOC_BENCH_MB`,
//! default 1024 MiB each), then measures, each in a fresh child process so
//! that peak memory is per mode:
//! - `libpcap`: a bare `pcap_next_ex` loop touching every byte count (the ceiling);
//! - flows only (`--no-analyzers`) and flows with every protocol analyzer,
//!   each with 1 and 2 workers, writing the logs to disk (capture and log
//!   writing run on threads of their own);
//!
//! each the median of five runs;
//! - memory per tracked flow, from a counting allocator over 1M open flows.

use mimalloc::MiMalloc;
use schema::Time;
use sensor::capture::{Next, Source, SourceSpec};
use sensor::decode::LinkType;
use sensor::output::LogWriter;
use sensor::pipeline::{self, Controls, Hooks, PipelineConfig};
use sensor::worker::{Worker, WorkerConfig};
use std::alloc::{GlobalAlloc, Layout};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to mimalloc (the binary's allocator) and only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { MiMalloc.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { MiMalloc.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with layout `l`.
        unsafe { MiMalloc.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn ensure_capture(dir: &Path, name: &str, mb: u64, small: bool) -> PathBuf {
    let path = dir.join(format!("{name}-{mb}mb.pcap"));
    if !path.exists() {
        std::fs::create_dir_all(dir).expect("bench-data directory");
        eprintln!("generating {} ...", path.display());
        let tmp = path.with_extension("tmp");
        let f = std::fs::File::create(&tmp).expect("create capture");
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        pcapgen::bench_mix_with(&mut w, mb << 20, small).expect("generate capture");
        std::io::Write::flush(&mut w).expect("write capture");
        std::fs::rename(&tmp, &path).expect("rename capture");
    }
    path
}

/// Runs one mode in this process and prints one result line.
fn child(mode: &str, path: &Path) {
    let start = Instant::now();
    let (pkts, bytes) = match mode {
        "libpcap" => {
            let mut src = Source::open(&SourceSpec::File(path.to_path_buf())).expect("open");
            let (mut n, mut b) = (0u64, 0u64);
            while let Next::Packet { data, wire_len, .. } = src.next_packet().expect("read") {
                n += 1;
                b += u64::from(wire_len);
                std::hint::black_box(data);
            }
            (n, b)
        }
        "w1" | "w2" | "f1" | "f2" => {
            let mut cfg =
                PipelineConfig { workers: if mode.ends_with('1') { 1 } else { 2 }, ..PipelineConfig::default() };
            cfg.worker.flow.analyzers = mode.starts_with('f');
            let out = tempdir();
            let sink = LogWriter::new(&out).expect("log dir");
            let (s, _) =
                pipeline::run(&SourceSpec::File(path.to_path_buf()), &cfg, sink, Controls::default(), Hooks::default())
                    .expect("pipeline");
            let _ = std::fs::remove_dir_all(&out);
            (s.stats.pkts_read, s.wire_bytes)
        }
        other => panic!("unknown mode {other}"),
    };
    let secs = start.elapsed().as_secs_f64();
    println!("RESULT {mode} {pkts} {bytes} {secs:.6} {}", peak_rss_kib());
}

fn tempdir() -> PathBuf {
    let p = std::env::temp_dir().join(format!("citysoc-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

/// Bytes allocated per open flow, from one worker holding `n` flows: TCP
/// SYNs (`tcp`) or one-packet UDP exchanges.
fn flow_memory(n: u32, tcp: bool, analyzers: bool) -> f64 {
    let mut cfg = WorkerConfig::default();
    cfg.flow.max_flows = n as usize + 1;
    cfg.flow.analyzers = analyzers;
    let mut w = Worker::new(cfg);
    let mut out = Vec::new();
    let mut frame = vec![0u8; 54];
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..n {
        // A TCP SYN from 10.x.y.z:port to 172.16.0.1:80, one new flow each.
        let src = std::net::Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8);
        let dst = std::net::Ipv4Addr::new(172, 16, 0, 1);
        let (s, d) = (std::net::IpAddr::V4(src), std::net::IpAddr::V4(dst));
        let sport = 1024 + (i % 60000) as u16;
        let ip = if tcp {
            let hdr = pcapgen::tcp(s, d, sport, 80, i, 0, pcapgen::SYN, 1024, &[]);
            pcapgen::ipv4(src, dst, 6, &hdr, pcapgen::V4Opts::default())
        } else {
            pcapgen::ipv4(src, dst, 17, &pcapgen::udp(s, d, sport, 53, &[0; 32]), pcapgen::V4Opts::default())
        };
        frame.clear();
        frame.extend_from_slice(&pcapgen::eth(pcapgen::ETH_IPV4, &ip));
        w.process(Time(1_700_000_000_000_000 + i64::from(i)), LinkType::Ethernet, &frame, &mut out);
    }
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(w.counters().flows_active, u64::from(n));
    let per = (after - before) as f64 / f64::from(n);
    drop(w);
    per
}

struct Row {
    mode: String,
    pkts: u64,
    bytes: u64,
    secs: f64,
    rss_kib: u64,
}

fn run_child(mode: &str, path: &Path) -> Row {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe).args(["--child", mode]).arg(path).output().expect("spawn child");
    assert!(out.status.success(), "child {mode} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("RESULT ")).expect("result line");
    let f: Vec<&str> = line.split_whitespace().collect();
    Row {
        mode: f[1].to_string(),
        pkts: f[2].parse().unwrap_or(0),
        bytes: f[3].parse().unwrap_or(0),
        secs: f[4].parse().unwrap_or(0.0),
        rss_kib: f[5].parse().unwrap_or(0),
    }
}

/// The run with the median time out of `reps`: this machine is shared, and
/// single runs vary by tens of percent.
fn median_run(mode: &str, path: &Path, reps: usize) -> Row {
    let mut rows: Vec<Row> = (0..reps).map(|_| run_child(mode, path)).collect();
    rows.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    rows.swap_remove(rows.len() / 2)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2], Path::new(&args[3]));
        return;
    }
    if args.iter().any(|a| a == "--memory-only") {
        print_memory(1_000_000);
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then
    // only check that the harness runs on a tiny capture.
    let quick = !args.iter().any(|a| a == "--bench");
    let mb: u64 =
        if quick { 4 } else { std::env::var("CITYSOC_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024) };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench-data");
    let reps = if quick { 1 } else { 5 };
    println!("| capture | mode | packets | Gbit/s | Mpkt/s | vs libpcap | peak RSS |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (name, small) in [("mix", false), ("small", true)] {
        let path = ensure_capture(&dir, name, mb, small);
        // Warm the page cache so that every mode reads from memory.
        let _ = std::fs::read(&path).map(|v| v.len());
        let base = median_run("libpcap", &path, reps);
        for mode in ["libpcap", "w1", "w2", "f1", "f2"] {
            let r =
                if mode == "libpcap" { Row { mode: base.mode.clone(), ..base } } else { median_run(mode, &path, reps) };
            let label = match r.mode.as_str() {
                "libpcap" => "bare libpcap loop",
                "w1" => "flows only, 1 worker",
                "w2" => "flows only, 2 workers",
                "f1" => "flows + analyzers, 1 worker",
                _ => "flows + analyzers, 2 workers",
            };
            println!(
                "| {name} ({:.0} B/pkt) | {label} | {} | {:.2} | {:.2} | {:.0}% | {} MiB |",
                r.bytes as f64 / r.pkts.max(1) as f64,
                r.pkts,
                r.bytes as f64 * 8.0 / r.secs / 1e9,
                r.pkts as f64 / r.secs / 1e6,
                100.0 * base.secs / r.secs,
                r.rss_kib / 1024
            );
            if quick {
                assert!(r.pkts > 0);
            }
        }
    }
    let n = if quick { 10_000 } else { 1_000_000 };
    print_memory(n);
}

fn print_memory(n: u32) {
    println!(
        "\nmemory per tracked flow, {n} open flows in one worker: flows only: TCP {:.0} bytes, UDP {:.0} bytes; \
         with analyzers, a DNS query awaiting its reply: {:.0} bytes",
        flow_memory(n, true, false),
        flow_memory(n, false, false),
        flow_memory(n, false, true)
    );
}
