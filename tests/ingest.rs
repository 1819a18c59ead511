//! Ingest under crashes: several senders ship batches to `citysoc serve`
//! while it is killed with SIGKILL at random points and started again,
//! each batch sent until acknowledged; every record is then stored exactly
//! once, in either store. And a demo's store served later keeps its old
//! captures.

mod common;

use common::{citysoc, free_port, sha256_hex, ClickHouse, Server};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SENDERS: usize = 4;
/// Batches per sender: 1 040 in all, past any fixed window of recent ids
/// (Tantivy commits once named the latest 256).
const BATCHES: usize = 260;
const RECORDS: usize = 4;
/// Kills, each after a random while of serving (a restart takes seconds
/// of a debug build's time: more kills would leave little serving).
const KILLS: usize = 12;
/// 2023-11-14: older than every class's default retention, which runs at
/// each start of the server.
const T0: f64 = 1_700_000_000.0;

fn tokens(dir: &Path) -> std::path::PathBuf {
    let mut text = String::from("[sensors]\n");
    for s in 0..SENDERS {
        text.push_str(&format!("s{s} = \"{}\"\n", sha256_hex(&format!("sensor-{s}"))));
    }
    text.push_str(&format!("[readers]\nr = \"{}\"\n", sha256_hex("reader")));
    let path = dir.join("tokens.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A small, fast, unseeded-by-the-clock-only generator: kill points differ
/// from run to run, and the seed is printed to replay one.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % n
    }
}

fn start(port: u16, data: &Path, tokens: &Path, extra: &[String]) -> Server {
    Server(
        citysoc()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data)
            .arg("--tokens")
            .arg(tokens)
            .args(extra)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn wait_up(port: u16) {
    let start = Instant::now();
    while ureq::get(&format!("http://127.0.0.1:{port}/api/v1/fields")).call().is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "the SIEM did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A batch that failed is sent again after this many more of its sender's
/// batches: with four senders, more than 256 batches reach the store in
/// between (Tantivy commits once named the latest 256).
const RETRY_AFTER: usize = 80;

/// One sender's batches, each posted until the SIEM acknowledges it; one
/// that failed (maybe stored, never acknowledged) goes again later, as from
/// a spool, and once more at the end until it is acknowledged.
fn send_all(port: u16, s: usize, stop: &AtomicBool, deadline: Instant) -> usize {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(20)).build();
    let post = |b: usize| -> bool {
        assert!(!stop.load(Ordering::Relaxed) && Instant::now() < deadline, "sender {s} gave up at batch {b}");
        let body: String = (0..RECORDS)
            .map(|i| {
                let ts = T0 + (b * RECORDS + i) as f64;
                format!("{{\"_log\":\"conn\",\"ts\":{ts},\"uid\":\"S{s}B{b}R{i}\",\"orig_bytes\":{b}}}\n")
            })
            .collect();
        let r = agent
            .post(&format!("http://127.0.0.1:{port}/api/v1/ingest"))
            .set("Authorization", &format!("Bearer sensor-{s}"))
            .set("X-Batch-Id", &format!("run1-{b}"))
            .send_string(&body);
        match r {
            Ok(resp) => {
                let v: serde_json::Value = resp.into_json().unwrap();
                assert!(v["rejected"].as_array().unwrap().is_empty(), "{v}");
                true
            }
            Err(ureq::Error::Status(code, resp)) if code < 500 => {
                panic!("batch {s}/{b}: {code} {}", resp.into_string().unwrap_or_default())
            }
            // Refused, reset, 503 busy, 500 from a dying server.
            Err(_) => false,
        }
    };
    let mut retries = 0;
    let mut later: std::collections::VecDeque<(usize, usize)> = Default::default();
    let mut failed = |b: usize, now: usize, later: &mut std::collections::VecDeque<(usize, usize)>| {
        retries += 1;
        later.push_back((b, now + RETRY_AFTER));
        // Not on to the next batch before the SIEM is back.
        while agent.get(&format!("http://127.0.0.1:{port}/api/v1/fields")).call().is_err() {
            assert!(Instant::now() < deadline, "sender {s}: the SIEM never came back");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    for b in 0..BATCHES {
        while let Some(&(old, due)) = later.front() {
            if due > b {
                break;
            }
            later.pop_front();
            if !post(old) {
                failed(old, b, &mut later);
            }
        }
        if !post(b) {
            failed(b, b, &mut later);
        }
    }
    while let Some((old, _)) = later.pop_front() {
        if !post(old) {
            failed(old, BATCHES, &mut later);
        }
    }
    retries
}

/// Senders ship while the SIEM is killed at random points; then every
/// record is counted, per sender.
fn chaos(data: &Path, extra: &[String]) {
    let tmp = tempfile::tempdir().unwrap();
    let tokens = tokens(tmp.path());
    let port = free_port();
    let mut server = start(port, data, &tokens, extra);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("kill points seed {seed}");
    let mut rng = Rng(seed);
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(900);
    let done = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
            std::thread::spawn(move || {
                let retries = send_all(port, s, &stop, deadline);
                done.fetch_add(1, Ordering::SeqCst);
                retries
            })
        })
        .collect();
    let began = Instant::now();
    let mut kills = 0;
    while done.load(Ordering::SeqCst) < SENDERS && kills < KILLS {
        if began.elapsed() > Duration::from_secs(600) {
            stop.store(true, Ordering::Relaxed);
            panic!("senders not done after 10 minutes ({kills} kills)");
        }
        // Up, then serving for a random while before the kill.
        wait_up(port);
        std::thread::sleep(Duration::from_millis(300 + rng.below(2500)));
        if done.load(Ordering::SeqCst) == SENDERS {
            break;
        }
        // SIGKILL: no chance to finish what is in flight.
        server.0.kill().unwrap();
        server.0.wait().unwrap();
        kills += 1;
        server = start(port, data, &tokens, extra);
    }
    let retries: usize = senders.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(kills >= 5, "only {kills} kills: the senders were done too soon to test anything");
    assert!(retries >= kills, "{retries} retries for {kills} kills: the kills hit no batch in flight");
    // Counted after one more restart, with the store read from disk.
    drop(server);
    let _server = start(port, data, &tokens, extra);
    wait_up(port);
    let count = |q: &str| -> u64 {
        let v: serde_json::Value = ureq::get(&format!("http://127.0.0.1:{port}/api/v1/search"))
            .query("q", q)
            .query("limit", "1")
            .set("Authorization", "Bearer reader")
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        v["total"].as_u64().unwrap()
    };
    eprintln!("{kills} kills, {retries} retries, {:.1} s", began.elapsed().as_secs_f64());
    for s in 0..SENDERS {
        assert_eq!(count(&format!("_sensor:s{s}")), (BATCHES * RECORDS) as u64, "sender {s}: every record once");
    }
    assert_eq!(count("*"), (SENDERS * BATCHES * RECORDS) as u64);
}

#[test]
fn records_sent_through_kills_of_the_siem_are_stored_exactly_once_in_tantivy() {
    let tmp = tempfile::tempdir().unwrap();
    chaos(&tmp.path().join("data"), &[]);
}

#[test]
fn records_sent_through_kills_of_the_siem_are_stored_exactly_once_in_clickhouse() {
    let ch = ClickHouse::start();
    let tmp = tempfile::tempdir().unwrap();
    let extra = ["--clickhouse".to_string(), ch.url(), "--clickhouse-db".into(), "chaos".into()];
    chaos(&tmp.path().join("data"), &extra);
}

/// `citysoc demo --no-serve` then `citysoc serve` on its data, with the
/// default retention (which runs at start): the 2023 captures the demo just
/// stored are kept.
#[test]
fn a_demo_served_later_keeps_its_old_captures() {
    let tmp = tempfile::tempdir().unwrap();
    let root = common::root();
    let cases = tmp.path().join("cases");
    std::fs::create_dir_all(&cases).unwrap();
    // Two scenarios are enough: one of protocol records, one with alerts.
    for case in ["dns-dyndns", "http"] {
        let to = cases.join(case);
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(root.join("replay-pcaps").join(case)).unwrap().flatten() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    let data = tmp.path().join("demo-data");
    let out = citysoc()
        .args(["demo", "--no-serve", "--cases"])
        .arg(&cases)
        .arg("--rules")
        .arg(root.join("rules"))
        .arg("--data")
        .arg(&data)
        .arg("--log-dir")
        .arg(tmp.path().join("logs"))
        .arg("--ring")
        .arg(tmp.path().join("ring"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let port = free_port();
    let mut serve = citysoc();
    serve.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"]).arg(&data).stderr(Stdio::piped());
    let mut server = Server(serve.spawn().unwrap());
    let lines = common::stderr_lines(&mut server.0);
    common::wait_for(&lines, "serving the console");
    // Retention ran before serving began; give a drop time to be logged.
    std::thread::sleep(Duration::from_millis(500));
    let logged: Vec<String> = lines.try_iter().collect();
    assert!(!logged.iter().any(|l| l.contains("retention: dropped")), "{logged:?}");
    let total = |q: &str| -> u64 {
        let v: serde_json::Value = ureq::get(&format!("http://127.0.0.1:{port}/api/v1/search"))
            .query("q", q)
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        v["total"].as_u64().unwrap()
    };
    assert!(total("_log:dns") > 0 && total("_log:conn") > 0);
    assert!(total("_log:alerts") > 0, "the demo's alerts are kept");
}
