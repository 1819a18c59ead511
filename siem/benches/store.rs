//! Store throughput and search latency, both backends in the same run.
//!
//! `cargo bench -p siem --bench store` (`CITYSOC_BENCH_RECORDS=N`, default
//! 2 000 000) generates records spread over 24 hours, ingests them in
//! batches into Tantivy and into a ClickHouse server started for the run,
//! then times field, CIDR, free-text and aggregation queries (p50/p99 of
//! repeated runs). The baseline is a linear scan of the same records as
//! JSON lines in memory, filtered in Rust: what searching logs without a
//! SIEM costs. Without `--bench` (as `cargo test` runs it) it does a quick
//! pass over a few thousand records that only checks the harness.

use serde_json::json;
use siem::query::parse;
use siem::schema::Catalog;
use siem::store::clickhouse::{ClickHouseConfig, ClickHouseStore, Compression};
use siem::store::tantivy::{TantivyConfig, TantivyStore};
use siem::store::{Agg, Record, SearchRequest, Store};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The allocator `citysoc` runs with, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU seconds (user + system, all threads) a process has used so far,
/// from `/proc/PID/stat` in ticks of 10 ms: "per core" figures divide by it.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which may hold spaces, in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after it.
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const BATCH: usize = 50_000;
const T0: f64 = 1_700_000_000.0;
const WORDS: &[&str] = &["api", "status", "login", "admin", "camera", "levels", "news", "search", "upload", "map"];

/// The records, made on demand: ten million of them do not fit in memory
/// beside the stores' own buffers.
struct Gen {
    c: Catalog,
    r: Rng,
    i: usize,
    n: usize,
}

impl Gen {
    fn new(n: usize) -> Gen {
        Gen { c: Catalog::new(), r: Rng(0x9e37_79b9_7f4a_7c15), i: 0, n }
    }

    fn chunk(&mut self, max: usize) -> Vec<Record> {
        let end = (self.i + max).min(self.n);
        let out = (self.i..end).map(|i| self.record(i)).collect();
        self.i = end;
        out
    }

    fn record(&mut self, i: usize) -> Record {
        let (c, r, n) = (&self.c, &mut self.r, self.n);
        {
            let ts = T0 + (i as f64) * 86_400.0 / n as f64;
            let orig = format!("10.{}.{}.{}", r.next() % 16, r.next() % 256, r.next() % 256);
            let resp = format!("10.{}.0.{}", 100 + r.next() % 16, r.next() % 256);
            let status = [200, 404, 500][(r.next() % 3) as usize];
            let port = [80, 443, 53, 22, 502, 1883][(r.next() % 6) as usize];
            let state = ["SF", "S0", "REJ"][(r.next() % 3) as usize];
            let (log, v) = match i % 5 {
                0 => (
                    "dns",
                    json!({"ts": ts, "uid": format!("C{i}"), "id.orig_h": orig, "id.orig_p": 5353, "id.resp_h": resp,
                       "id.resp_p": 53, "proto": "udp", "query": format!("{}.{}.city.example", WORDS[(r.next() % 10) as usize], r.next() % 1000),
                       "qtype_name": "A", "rcode_name": "NOERROR", "answers": [format!("10.9.{}.{}", r.next() % 256, r.next() % 256)]}),
                ),
                1 => (
                    "http",
                    json!({"ts": ts, "uid": format!("C{i}"), "id.orig_h": orig, "id.orig_p": 40000, "id.resp_h": resp,
                       "id.resp_p": 80, "method": "GET", "host": "portal.city.example",
                       "uri": format!("/{}/{}?id={}", WORDS[(r.next() % 10) as usize], WORDS[(r.next() % 10) as usize], r.next() % 100000),
                       "user_agent": "Mozilla/5.0", "status_code": status, "response_body_len": r.next() % 50000}),
                ),
                _ => (
                    "conn",
                    json!({"ts": ts, "uid": format!("C{i}"), "id.orig_h": orig, "id.orig_p": 40000 + r.next() % 20000,
                       "id.resp_h": resp, "id.resp_p": port, "proto": "tcp",
                       "conn_state": state, "orig_bytes": r.next() % 100000,
                       "resp_bytes": r.next() % 1000000, "duration": (r.next() % 10000) as f64 / 100.0, "local_orig": true}),
                ),
            };
            Record::validate(c, log, "bench", v.as_object().cloned().unwrap_or_default()).unwrap()
        }
    }
}

struct ClickHouse {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl ClickHouse {
    fn start() -> Option<ClickHouse> {
        let bin = ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"]
            .into_iter()
            .find(|p| Path::new(p).exists())?;
        let dir = tempfile::tempdir().ok()?;
        let port = || TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (http, tcp, inter) = (port(), port(), port());
        let d = dir.path().display().to_string();
        let child = Command::new(bin)
            .arg("--config-file=/etc/clickhouse-server/config.xml")
            .arg("--")
            .arg(format!("--path={d}/data/"))
            .arg(format!("--tmp_path={d}/tmp/"))
            .arg(format!("--user_files_path={d}/uf/"))
            .arg(format!("--format_schema_path={d}/fs/"))
            .arg(format!("--http_port={http}"))
            .arg(format!("--tcp_port={tcp}"))
            .arg(format!("--interserver_http_port={inter}"))
            .arg("--listen_host=127.0.0.1")
            .arg(format!("--logger.log={d}/server.log"))
            .arg(format!("--logger.errorlog={d}/server.err.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let ch = ClickHouse { child, port: http, _dir: dir };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", http)).is_err() {
            if start.elapsed() > Duration::from_secs(30) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(300));
        Some(ch)
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// A line filter of the baseline scan.
type Scan = Box<dyn Fn(&str) -> bool>;

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    // As `citysoc serve` runs; `CITYSOC_BENCH_THP=on` leaves huge pages on.
    if std::env::var("CITYSOC_BENCH_THP").as_deref() != Ok("on") {
        siem::no_transparent_huge_pages();
    }
    let args: Vec<String> = std::env::args().collect();
    let quick = !args.iter().any(|a| a == "--bench");
    let n: usize = if quick {
        5_000
    } else {
        std::env::var("CITYSOC_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000)
    };
    let reps = if quick { 3 } else { 30 };
    let t = Instant::now();
    let mut g = Gen::new(n);
    let mut lines: Vec<String> = Vec::with_capacity(n);
    let mut probe = String::new();
    while lines.len() < n {
        for r in g.chunk(BATCH) {
            if lines.len() == n / 2 {
                probe = r.fields["id.orig_h"].as_str().unwrap_or("10.0.0.1").to_string();
            }
            lines.push(r.to_json().to_string());
        }
    }
    eprintln!("generated {n} records in {:.1} s", t.elapsed().as_secs_f64());

    let c = Catalog::new();
    // An address that occurs (`probe`), and its /24.
    let net = probe.rsplit_once('.').map_or("10.0.0".to_string(), |(a, _)| a.to_string());
    let field_q = format!("id.orig_h:{probe}");
    let cidr_q = format!("id.orig_h:{net}.0/24 AND _log:conn");
    let queries: [(&str, &str); 4] = [
        ("field", &field_q),
        ("CIDR", &cidr_q),
        ("free text", "camera"),
        ("field + range", "_log:http AND status_code:[500 TO 599]"),
    ];
    // Baseline: scan the JSON lines in memory with the same condition.
    let scans: Vec<(&str, Scan)> = vec![
        ("field", {
            let needle = format!("\"id.orig_h\":\"{probe}\"");
            Box::new(move |l: &str| l.contains(&needle))
        }),
        ("CIDR", {
            let needle = format!("\"id.orig_h\":\"{net}.");
            Box::new(move |l: &str| l.contains(&needle) && l.contains("\"_log\":\"conn\""))
        }),
        ("free text", Box::new(|l: &str| l.to_lowercase().contains("camera"))),
        ("field + range", Box::new(|l: &str| l.contains("\"_log\":\"http\"") && l.contains("\"status_code\":500"))),
    ];
    let mut baseline = std::collections::HashMap::new();
    for (name, f) in &scans {
        let t = Instant::now();
        let hits = lines.iter().filter(|l| f(l)).count();
        baseline.insert(*name, t.elapsed().as_secs_f64() * 1000.0);
        eprintln!("scan {name}: {hits} hits");
    }

    let dir = tempfile::tempdir().unwrap();
    // `CITYSOC_BENCH_STORES=tantivy` or `=clickhouse` runs one of them.
    let only = std::env::var("CITYSOC_BENCH_STORES").unwrap_or_default();
    let want = |s: &str| only.is_empty() || only.contains(s);
    let mut stores: Vec<(Box<dyn Store>, Option<u32>)> = Vec::new();
    if want("tantivy") {
        stores.push((Box::new(TantivyStore::open(dir.path(), TantivyConfig { writer_heap_mb: 256 }).unwrap()), None));
    }
    let ch = if want("clickhouse") { ClickHouse::start() } else { None };
    if !want("clickhouse") {
        // Tantivy alone: nothing to start.
    } else if let Some(ch) = &ch {
        let cfg = ClickHouseConfig {
            url: format!("http://127.0.0.1:{}", ch.port),
            database: "bench".into(),
            user: None,
            password: None,
            cluster: None,
            // `CITYSOC_BENCH_CH_COMPRESSION=none` sends plain bytes.
            compression: match std::env::var("CITYSOC_BENCH_CH_COMPRESSION").as_deref() {
                Ok("none") => Compression::None,
                _ => Compression::Lz4,
            },
        };
        stores.push((Box::new(ClickHouseStore::open(&cfg).unwrap()), Some(ch.child.id())));
    } else {
        eprintln!("clickhouse-server not found: ClickHouse skipped");
    }
    println!("{n} records over 24 h (conn 60%, dns 20%, http 20%), batches of 50 000, one ingest thread");
    println!(
        "{:<12} {:>14} {:<16} {:>9} {:>9} {:>12} {:>8}",
        "store", "ingest rec/s", "query", "p50 ms", "p99 ms", "scan ms", "scan/p50"
    );
    let me = std::process::id();
    let mut per_core = Vec::new();
    for (store, server) in &stores {
        let mut g = Gen::new(n);
        let mut spent = Duration::ZERO;
        let (mut cpu, mut cpu_server) = (0.0, 0.0);
        loop {
            let chunk = g.chunk(BATCH);
            if chunk.is_empty() {
                break;
            }
            let (t, c, cs) = (Instant::now(), cpu_secs(me), server.map_or(0.0, cpu_secs));
            store.ingest(&chunk).unwrap();
            spent += t.elapsed();
            let s = server.map_or(0.0, cpu_secs) - cs;
            cpu_server += s;
            cpu += cpu_secs(me) - c + s;
        }
        // Merges started by the last batches (Tantivy's writer, the
        // ClickHouse server) go on after them: their CPU is part of
        // ingesting, counted until the processes are idle, and queries
        // then run against the settled store.
        let busy = || cpu_secs(me) + server.map_or(0.0, cpu_secs);
        let (settle, settle_server) = (busy(), server.map_or(0.0, cpu_secs));
        let mut last = settle;
        for _ in 0..240 {
            std::thread::sleep(Duration::from_millis(500));
            let now = busy();
            if now - last < 0.02 {
                break;
            }
            last = now;
        }
        let after = busy() - settle;
        cpu += after;
        cpu_server += server.map_or(0.0, cpu_secs) - settle_server;
        let rate = n as f64 / spent.as_secs_f64();
        per_core.push(format!(
            "{}: {rate:.0} records/s using {:.2} cores = {:.0} records/s per core (CPU {cpu:.1} s{}; \
             {after:.1} s of it merging after the last batch)",
            store.name(),
            cpu / spent.as_secs_f64(),
            n as f64 / cpu.max(0.01),
            if server.is_some() { format!(", of which the server {cpu_server:.1} s") } else { String::new() }
        ));
        for (i, (name, text)) in queries.iter().enumerate() {
            let q = parse(text, &c).unwrap();
            let mut times = Vec::new();
            let mut total = 0;
            for _ in 0..reps {
                let mut req = SearchRequest::new(q.clone());
                req.limit = 100;
                let t = Instant::now();
                total = store.search(&req).unwrap().total;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            let p50 = pct(times.clone(), 0.5);
            let b = baseline[name];
            println!(
                "{:<12} {:>14} {:<16} {:>9.1} {:>9.1} {:>12.1} {:>7.0}x   ({total} hits)",
                if i == 0 { store.name() } else { "" },
                if i == 0 { format!("{rate:.0}") } else { String::new() },
                name,
                p50,
                pct(times, 0.99),
                b,
                b / p50
            );
        }
        for (name, agg) in [
            ("terms", Agg::terms("id.resp_p", 10)),
            ("histogram", Agg::Histogram { interval_secs: 3600.0 }),
            ("stats", Agg::Stats { field: "orig_bytes".into() }),
        ] {
            let mut times = Vec::new();
            for _ in 0..reps {
                let t = Instant::now();
                let _ = store.aggregate(&siem::query::Query::All, None, None, &agg).unwrap();
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            println!(
                "{:<12} {:>14} {:<16} {:>9.1} {:>9.1}",
                "",
                "",
                format!("agg {name}"),
                pct(times.clone(), 0.5),
                pct(times, 0.99)
            );
        }
        let parts = store.partitions().unwrap();
        let bytes: u64 = parts.iter().map(|p| p.bytes).sum();
        println!("{:<12} {} on disk ({:.0} bytes/record)", "", human(bytes), bytes as f64 / n as f64);
    }
    println!("ingest:");
    for line in per_core {
        println!("  {line}");
    }
}

fn human(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}
