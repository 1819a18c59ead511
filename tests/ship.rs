//! Sensor to SIEM over HTTP: a sensor replaying a capture ships its records
//! and alerts to a `citysoc serve` with tokens; the SIEM stores them under
//! the sensor's name, the same as its local logs.

mod common;

use common::{citysoc, root, sha256_hex, Server};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_sensor_ships_records_and_alerts_to_the_siem() {
    let tmp = tempfile::tempdir().unwrap();
    let tokens = tmp.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "[sensors]\ndistrict-7 = \"{}\"\n[readers]\nanalyst = \"{}\"\n",
            sha256_hex("s3cret-sensor"),
            sha256_hex("s3cret-reader")
        ),
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _server = Server(
        citysoc()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(tmp.path().join("data"))
            .arg("--tokens")
            .arg(&tokens)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while ureq::get(&format!("{base}/api/v1/fields")).call().is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "the SIEM did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let token_file = tmp.path().join("token");
    std::fs::File::create(&token_file).unwrap().write_all(b"s3cret-sensor\n").unwrap();
    let logs = tmp.path().join("logs");
    let out = citysoc()
        .args(["sensor", "--seed", "1", "--name", "ignored-name", "--rules"])
        .arg(root().join("rules"))
        .arg("--read")
        .arg(root().join("replay-pcaps/web-attacks/capture.pcap"))
        .arg("--log-dir")
        .arg(&logs)
        .args(["--ship", &base, "--token-file"])
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let local: usize = ["conn", "http", "files", "alerts"]
        .iter()
        .map(|l| std::fs::read_to_string(logs.join(format!("{l}.log"))).unwrap().lines().count())
        .sum();
    let search = |q: &str| -> serde_json::Value {
        ureq::get(&format!("{base}/api/v1/search"))
            .query("q", q)
            .set("Authorization", "Bearer s3cret-reader")
            .call()
            .unwrap()
            .into_json()
            .unwrap()
    };
    let stored = search("_log:conn OR _log:http OR _log:files OR _log:alerts");
    assert_eq!(stored["total"].as_u64().unwrap() as usize, local);
    let alerts = search("_log:alerts AND rule.source:yara");
    assert!(alerts["total"].as_u64().unwrap() >= 4, "{alerts}");
    assert_eq!(alerts["hits"][0]["_sensor"], "district-7", "stored under the token's sensor");
    // A wrong token is refused, and the sensor says so.
    std::fs::write(&token_file, "wrong").unwrap();
    let out = citysoc()
        .args(["sensor", "--rules"])
        .arg(root().join("rules"))
        .arg("--read")
        .arg(root().join("replay-pcaps/dns/capture.pcap"))
        .arg("--log-dir")
        .arg(tmp.path().join("logs2"))
        .args(["--ship", &base, "--token-file"])
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A sensor replaying `cap` (under the repository) with its logs under
/// `tmp/logs`, shipping to `base` through `spool`, waiting `wait` seconds
/// for the spool to drain.
fn shipping_sensor(
    tmp: &Path,
    base: &str,
    token_file: &Path,
    spool: &Path,
    cap: &str,
    logs: &str,
    wait: &str,
) -> std::process::Output {
    citysoc()
        .args(["sensor", "--seed", "1", "--ship-wait-secs", wait, "--rules"])
        .arg(root().join("rules"))
        .arg("--read")
        .arg(root().join(cap))
        .arg("--log-dir")
        .arg(tmp.join(logs))
        .args(["--ship", base, "--token-file"])
        .arg(token_file)
        .arg("--spool-dir")
        .arg(spool)
        .output()
        .unwrap()
}

/// The SIEM is away while the sensor replays: batches wait in the spool,
/// the sensor finishes, and when the SIEM comes back the next sensor start
/// drains the spool: every record stored once, none twice.
#[test]
fn the_spool_holds_batches_while_the_siem_is_away_and_nothing_is_stored_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let (tokens, token_file) = credentials(tmp.path(), "sensor-t", "reader-t");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let spool = tmp.path().join("spool");
    let sensor = |cap: &str, logs: &str, wait_secs: &str| {
        shipping_sensor(tmp.path(), &base, &token_file, &spool, cap, logs, wait_secs)
    };
    // No SIEM: the run ends with its batches spooled.
    let out = sensor("replay-pcaps/web-attacks/capture.pcap", "l1", "1");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let waiting = std::fs::read_dir(&spool)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "zst"))
        .count();
    assert!(waiting >= 2, "records and alerts wait in the spool: {waiting}");
    // The SIEM comes back; the next run ships the leftovers first, then its own.
    let _server = serve(port, &tmp.path().join("data"), &tokens);
    let out = sensor("replay-pcaps/dns/capture.pcap", "l2", "60");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let count = |dir: &str| -> usize {
        std::fs::read_dir(tmp.path().join(dir))
            .unwrap()
            .flatten()
            .filter(|e| {
                e.path().extension().is_some_and(|x| x == "log")
                    && !e.file_name().to_string_lossy().starts_with("stats")
            })
            .map(|e| std::fs::read_to_string(e.path()).unwrap().lines().count())
            .sum()
    };
    let total = |q: &str| -> usize {
        let v: serde_json::Value = ureq::get(&format!("{base}/api/v1/search"))
            .query("q", q)
            .set("Authorization", "Bearer reader-t")
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        v["total"].as_u64().unwrap() as usize
    };
    let local = count("l1") + count("l2");
    assert_eq!(total("NOT _log:stats"), local, "every record once");
    // A third run (spool empty) does not reuse the drained batches' ids.
    let out = sensor("replay-pcaps/ntp/capture.pcap", "l3", "60");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(total("NOT _log:stats"), local + count("l3"));
    // The sensors' stats reports reached the SIEM too (their health there).
    let local_stats: usize = ["l1", "l2", "l3"]
        .iter()
        .map(|d| std::fs::read_to_string(tmp.path().join(d).join("stats.log")).unwrap().lines().count())
        .sum();
    // Each run's last report, sent again once its spool drained, is in its
    // stats.log too.
    assert_eq!(total("_log:stats"), local_stats);
    // The loss ledger over the captures' time: every record made was
    // acknowledged and stored, nothing dropped, nothing left waiting.
    let times: Vec<f64> = ["l1", "l2", "l3"]
        .iter()
        .flat_map(|d| {
            std::fs::read_to_string(tmp.path().join(d).join("conn.log"))
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok()?["ts"].as_f64())
        .collect();
    let (lo, hi) = (times.iter().copied().fold(f64::MAX, f64::min), times.iter().copied().fold(0.0, f64::max));
    let ledger: serde_json::Value = ureq::get(&format!("{base}/api/v1/ledger"))
        .query("from", &format!("{}", (lo - 7200.0).floor()))
        .query("to", &format!("{}", (hi + 7200.0).ceil()))
        .set("Authorization", "Bearer reader-t")
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let sum = |k: &str| -> u64 { ledger["windows"].as_array().unwrap().iter().map(|w| w[k].as_u64().unwrap()).sum() };
    let all = (local + count("l3")) as u64;
    assert_eq!(sum("records_made"), all, "{ledger}");
    assert_eq!(sum("records_shipped"), all, "{ledger}");
    assert_eq!(sum("records_stored"), all, "{ledger}");
    assert_eq!(sum("records_spool_dropped"), 0);
    assert!(sum("packets_read") > 0);
    assert_eq!(ledger["completeness"]["complete"], true, "{ledger}");
    assert_eq!(ledger["completeness"]["sensors"], serde_json::json!(["d7"]));
    // A search over the range says so too.
    let v: serde_json::Value = ureq::get(&format!("{base}/api/v1/search"))
        .query("q", "_log:conn")
        .query("from", &format!("{}", (lo - 7200.0).floor()))
        .query("to", &format!("{}", (hi + 7200.0).ceil()))
        .query("completeness", "true")
        .set("Authorization", "Bearer reader-t")
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(v["completeness"]["complete"], true, "{v}");
}

/// A tokens file for sensor `d7` and reader `r`, and the sensor's token file.
fn credentials(dir: &std::path::Path, sensor: &str, reader: &str) -> (PathBuf, PathBuf) {
    let tokens = dir.join("tokens.toml");
    let text = format!("[sensors]\nd7 = \"{}\"\n[readers]\nr = \"{}\"\n", sha256_hex(sensor), sha256_hex(reader));
    std::fs::write(&tokens, text).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{sensor}\n")).unwrap();
    (tokens, token_file)
}

/// A `citysoc serve` on `port`, once it answers.
fn serve(port: u16, data: &std::path::Path, tokens: &std::path::Path) -> Server {
    serve_with(port, data, tokens, &[])
}

fn serve_with(port: u16, data: &std::path::Path, tokens: &std::path::Path, extra: &[&std::ffi::OsStr]) -> Server {
    let s = Server(
        citysoc()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data)
            .arg("--tokens")
            .arg(tokens)
            .args(extra)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while ureq::get(&format!("http://127.0.0.1:{port}/api/v1/fields")).call().is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "the SIEM did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

/// The SIEM killed with SIGKILL while a sensor ships, then restarted: every
/// record the sensor made is stored exactly once.
#[test]
fn a_siem_killed_mid_replay_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cap = tmp.path().join("mix.pcap");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&cap).unwrap());
    pcapgen::bench_mix_with(&mut w, 6 << 20, false).unwrap();
    w.flush().unwrap();
    drop(w);
    let (tokens, token_file) = credentials(tmp.path(), "sensor-k", "reader-k");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let data = tmp.path().join("data");
    // The capture is from 2023, older than the default retention, which
    // runs when the SIEM starts: it ages replayed days from their ingest,
    // so the second server keeps what the first stored.
    let mut server = serve(port, &data, &tokens);
    let logs = tmp.path().join("logs");
    let mut sensor = citysoc()
        .args(["sensor", "--seed", "1", "--no-detect", "--ship-batch-records", "100", "--ship-wait-secs", "120"])
        .arg("--read")
        .arg(&cap)
        .arg("--log-dir")
        .arg(&logs)
        .args(["--ship", &format!("http://127.0.0.1:{port}"), "--token-file"])
        .arg(&token_file)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it while batches are in flight, bring it back a moment later.
    std::thread::sleep(Duration::from_millis(700));
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _server = serve(port, &data, &tokens);
    assert!(sensor.wait().unwrap().success());
    let local: usize = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap().lines().count())
        .sum();
    assert!(local > 1000, "{local}");
    let stored: serde_json::Value = ureq::get(&format!("http://127.0.0.1:{port}/api/v1/search"))
        .query("q", "_log:conn OR _log:dns OR _log:http OR _log:ssl OR _log:files OR _log:stats OR _log:weird OR _log:known_devices")
        .set("Authorization", "Bearer reader-k")
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    // The last stats report, sent again once the spool drained, is in the
    // local stats.log as well.
    assert_eq!(stored["total"].as_u64().unwrap() as usize, local, "every record once");
}

/// A full spool under `drop-oldest` gives up the oldest record batches and
/// keeps every alert batch; the drops are counted.
#[test]
fn a_full_spool_drops_the_oldest_records_and_never_alerts() {
    use citysoc::ship::{ShipConfig, ShipSink, SpoolFull};
    use sensor::output::EventSink;
    /// Keeps the stats reports that pass, as the log writer would write them.
    struct Nowhere(std::sync::Arc<std::sync::Mutex<Vec<schema::StatsRecord>>>);
    impl EventSink for Nowhere {
        fn write(&mut self, events: &mut [schema::Event]) -> Result<(), sensor::SensorError> {
            for e in events.iter() {
                if let schema::Event::Stats(s) = e {
                    self.0.lock().unwrap().push(s.clone());
                }
            }
            Ok(())
        }
        fn flush(&mut self) -> Result<(), sensor::SensorError> {
            Ok(())
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = ShipConfig {
        url: format!("http://127.0.0.1:{port}"),
        token: "t".into(),
        batch_records: 1,
        batch_secs: 3600.0,
        retry_secs: 0,
        spool_dir: tmp.path().join("spool"),
        spool_bytes: 4096,
        spool_full: SpoolFull::DropOldest,
        tls: Default::default(),
        report_every: None,
        stop_on_refusal: None,
        warn_every: Duration::from_secs(60),
    };
    let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut sink = ShipSink::new(Nowhere(std::sync::Arc::clone(&reports)), cfg, "s").unwrap();
    let samples = schema::sample_events();
    let conn = samples.iter().find(|e| e.log_name() == "conn").unwrap().clone();
    let alert = samples.iter().find(|e| e.log_name() == "alerts").unwrap().clone();
    for i in 0..200 {
        let mut batch = [if i % 10 == 0 { alert.clone() } else { conn.clone() }];
        sink.write(&mut batch).unwrap();
    }
    let names: Vec<String> = std::fs::read_dir(tmp.path().join("spool"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".zst"))
        .collect();
    // Every alert kept: the 20 made, and the sensor's own alerts about the
    // records its full spool deleted.
    let alert_lines: Vec<serde_json::Value> = names
        .iter()
        .filter(|n| n.contains("-a-"))
        .flat_map(|n| {
            let raw = zstd::decode_all(&std::fs::read(tmp.path().join("spool").join(n)).unwrap()[..]).unwrap();
            String::from_utf8(raw).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<_>>()
        })
        .collect();
    let health = alert_lines.iter().filter(|a| a["rule.id"] == "sensor:spool-full-dropped").count();
    assert_eq!(alert_lines.len(), 20 + health, "every alert kept");
    assert!(health > 0, "the drops raised an alert");
    assert!(alert_lines.iter().any(
        |a| a["rule.source"] == "sensor" && a["summary"].as_str().unwrap().contains("records) from its full spool")
    ));
    let dropped = sink.counters().dropped_records.load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped > 100, "{dropped}");
    let spooled: u64 = std::fs::read_dir(tmp.path().join("spool"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("-r-"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(spooled <= 4096, "{spooled}");
    // A stats report carries the ledger's sensor side: what was made, what
    // the full spool deleted, and what waits.
    let bytes: u64 = std::fs::read_dir(tmp.path().join("spool"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".zst"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    sink.write(&mut [schema::Event::Stats(schema::StatsRecord::default())]).unwrap();
    let r = reports.lock().unwrap().last().cloned().unwrap();
    // The last drop's alert may still wait in memory for the next batch.
    let made = r.records_made.unwrap();
    assert!(made == 200 + health as u64 || made == 201 + health as u64, "{made}");
    assert_eq!(r.records_spool_dropped, Some(dropped));
    assert_eq!(r.records_shipped, Some(0));
    assert_eq!(made, dropped + r.spool_records.unwrap(), "every record made is either waiting or counted lost");
    assert!(r.run.is_some() && r.reported_at.is_some());
    assert_eq!(r.spool_bytes, Some(bytes));
}

/// Central rules: a sensor runs the rules folder the SIEM serves; a rule
/// switched off there raises nothing at the sensor.
#[test]
fn a_sensor_runs_the_rules_the_siem_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("rules");
    assert!(Command::new("cp").arg("-r").arg(root().join("rules")).arg(&rules).status().unwrap().success());
    std::fs::write(rules.join("tuning.toml"), "disabled = [\"model:scan\"]\n").unwrap();
    let tokens = tmp.path().join("tokens.toml");
    std::fs::write(&tokens, format!("[sensors]\nd7 = \"{}\"\n", sha256_hex("sensor-r"))).unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, "sensor-r\n").unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _server =
        serve_with(port, &tmp.path().join("data"), &tokens, &[std::ffi::OsStr::new("--rules"), rules.as_os_str()]);
    // Without a sensor token the rules are not handed out.
    let e = ureq::get(&format!("http://127.0.0.1:{port}/api/v1/rules")).call().unwrap_err();
    assert!(matches!(e, ureq::Error::Status(401, _)), "{e:?}");
    let logs = tmp.path().join("logs");
    let out = citysoc()
        .args(["sensor", "--seed", "1", "--rules-from-siem", "--read"])
        .arg(root().join("replay-pcaps/port-scan/capture.pcap"))
        .arg("--log-dir")
        .arg(&logs)
        .args(["--ship", &format!("http://127.0.0.1:{port}"), "--token-file"])
        .arg(&token_file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("from the SIEM"), "{err}");
    let alerts = std::fs::read_to_string(logs.join("alerts.log")).unwrap();
    assert!(alerts.contains("883c3427") && !alerts.contains("model:scan"), "{alerts}");
}

/// Records and alerts in the spool's batches (stats reports aside).
fn spooled_records(spool: &std::path::Path) -> (usize, usize) {
    let mut n = (0, 0);
    for e in std::fs::read_dir(spool).unwrap().flatten() {
        if e.path().extension().is_none_or(|x| x != "zst") {
            continue;
        }
        let raw = zstd::decode_all(&std::fs::read(e.path()).unwrap()[..]).unwrap();
        for l in String::from_utf8(raw).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            match v["_log"].as_str().unwrap() {
                "stats" => {}
                "alerts" => (n.0, n.1) = (n.0 + 1, n.1 + 1),
                _ => n.0 += 1,
            }
        }
    }
    n
}

/// Lines of a run's local logs: (records and alerts, stats reports).
fn local_lines(dir: &std::path::Path) -> (usize, usize) {
    let mut n = (0, 0);
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().extension().is_none_or(|x| x != "log") {
            continue;
        }
        let lines = std::fs::read_to_string(e.path()).unwrap().lines().count();
        if e.file_name() == "stats.log" {
            n.1 += lines;
        } else {
            n.0 += lines;
        }
    }
    n
}

/// A sensor the SIEM refuses (a wrong token) while its spool holds an
/// earlier run's batches: run after run, every record and alert it made is
/// spooled before it stops with the SIEM's reason, its stats.log ends with
/// the true counts, and once the token is fixed all of it is stored once and
/// the ledger accounts for every record.
#[test]
fn a_refused_sensor_spools_every_record_it_made_run_after_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (tokens, token_file) = credentials(tmp.path(), "sensor-w", "reader-w");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let spool = tmp.path().join("spool");
    let sensor =
        |cap: &str, logs: &str, wait: &str| shipping_sensor(tmp.path(), &base, &token_file, &spool, cap, logs, wait);
    // The SIEM away: the first run leaves its batches in the spool.
    let out = sensor("replay-pcaps/ftp-cleartext/capture.pcap", "l0", "0");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut made = local_lines(&tmp.path().join("l0"));
    assert_eq!(spooled_records(&spool).0, made.0);
    let _server = serve(port, &tmp.path().join("data"), &tokens);
    // Refused: the shipper meets the 401 on the earlier batch at once,
    // while the run's own records are still on their way to the spool.
    std::fs::write(&token_file, "wrong\n").unwrap();
    for i in 1..=10 {
        let logs = format!("l{i}");
        // A capture with an alert among its few records.
        let out = sensor("replay-pcaps/ftp-cleartext/capture.pcap", &logs, "5");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "run {i}: {err}");
        let last = err.lines().rev().find(|l| l.starts_with("citysoc: ")).unwrap_or_default().to_string();
        assert!(
            last.contains(&format!("shipping to the SIEM at {base} stopped: the SIEM refused the sensor's token (401"))
                && !last.contains("cannot write log"),
            "run {i}: {err}"
        );
        assert_eq!(last.matches("missing or unknown bearer token").count(), 1, "one reason, once: {last}");
        let local = local_lines(&tmp.path().join(&logs));
        made = (made.0 + local.0, made.1 + local.1);
        let (spooled, alerts) = spooled_records(&spool);
        assert_eq!(spooled, made.0, "run {i}: every record made is in the spool");
        assert_eq!(alerts, i + 1, "run {i}: its alert is in the spool");
        // The run's last report, in its stats.log too, counts every record
        // made as spooled and waiting.
        let stats = std::fs::read_to_string(tmp.path().join(&logs).join("stats.log")).unwrap();
        let r: serde_json::Value = serde_json::from_str(stats.lines().last().unwrap()).unwrap();
        assert_eq!(r["records_made"].as_u64(), Some(local.0 as u64), "{r}");
        assert_eq!(r["records_spooled"], r["records_made"], "{r}");
        assert_eq!(r["spool_records"].as_u64(), Some(made.0 as u64), "{r}");
    }
    // The token fixed: everything made arrives, once.
    std::fs::write(&token_file, "sensor-w\n").unwrap();
    let out = sensor("replay-pcaps/ntp/capture.pcap", "fixed", "60");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(spooled_records(&spool).0, 0);
    let local = local_lines(&tmp.path().join("fixed"));
    made = (made.0 + local.0, made.1 + local.1);
    let total = |q: &str| -> usize {
        let v: serde_json::Value = ureq::get(&format!("{base}/api/v1/search"))
            .query("q", q)
            .set("Authorization", "Bearer reader-w")
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        v["total"].as_u64().unwrap() as usize
    };
    assert_eq!(total("NOT _log:stats"), made.0, "every record once");
    assert_eq!(total("_log:stats"), made.1, "every report of every stats.log");
    let ledger: serde_json::Value = ureq::get(&format!("{base}/api/v1/ledger"))
        .query("from", "1000000000")
        .query("to", "1900000000")
        .query("window", "2678400")
        .set("Authorization", "Bearer reader-w")
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let sum = |k: &str| -> u64 { ledger["windows"].as_array().unwrap().iter().map(|w| w[k].as_u64().unwrap()).sum() };
    assert_eq!(sum("records_made"), made.0 as u64, "{ledger}");
    assert_eq!(sum("records_shipped"), made.0 as u64, "{ledger}");
    assert_eq!(ledger["completeness"]["records_unaccounted"], 0, "{ledger}");
    assert_eq!(ledger["completeness"]["complete"], true, "{ledger}");
}

/// A replay shipping while the SIEM is away: the sensor warns when the SIEM
/// takes nothing and again when it is back (with what it spooled meanwhile),
/// reports every `--stats-secs` while its spool waits to drain, and its
/// stats.log holds every report, the last with the true shipped count.
#[test]
fn a_shipping_replay_reports_while_it_waits_and_warns_while_the_siem_is_away() {
    let tmp = tempfile::tempdir().unwrap();
    let (tokens, token_file) = credentials(tmp.path(), "sensor-a", "reader-a");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let logs = tmp.path().join("logs");
    let mut sensor = Server(
        citysoc()
            .args(["sensor", "--seed", "1", "--stats-secs", "1", "--ship-wait-secs", "60", "--rules"])
            .arg(root().join("rules"))
            .arg("--read")
            .arg(root().join("replay-pcaps/dns-dyndns/capture.pcap"))
            .arg("--log-dir")
            .arg(&logs)
            .args(["--ship", &base, "--token-file"])
            .arg(&token_file)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = common::stderr_lines(&mut sensor.0);
    let down = common::wait_for(&lines, "takes no batches");
    assert!(down.contains(&base) && down.contains("records wait in the spool"), "{down}");
    // Away for a few report intervals after the capture was read.
    std::thread::sleep(Duration::from_millis(3500));
    let _server = serve(port, &tmp.path().join("data"), &tokens);
    let back = common::wait_for(&lines, "takes batches again");
    assert!(back.contains("records were spooled meanwhile"), "{back}");
    assert!(sensor.0.wait().unwrap().success());
    let reports: Vec<serde_json::Value> = std::fs::read_to_string(logs.join("stats.log"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(reports.len() >= 4, "a report a second while the spool waited: {}", reports.len());
    let last = reports.last().unwrap();
    assert!(last["records_made"].as_u64().unwrap() > 0, "{last}");
    assert_eq!(last["records_shipped"], last["records_made"], "the last report says what was shipped: {last}");
    assert_eq!(last["spool_records"], 0, "{last}");
    let at: Vec<f64> = reports.iter().map(|r| r["reported_at"].as_f64().unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "{at:?}");
    // Every report reached the SIEM too.
    let v: serde_json::Value = ureq::get(&format!("{base}/api/v1/search"))
        .query("q", "_log:stats")
        .set("Authorization", "Bearer reader-a")
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(v["total"].as_u64().unwrap() as usize, reports.len());
}

/// Keeps the stats reports that pass, as the log writer would write them.
struct Reports(std::sync::Arc<std::sync::Mutex<Vec<schema::StatsRecord>>>);

impl sensor::output::EventSink for Reports {
    fn write(&mut self, events: &mut [schema::Event]) -> Result<(), sensor::SensorError> {
        for e in events.iter() {
            if let schema::Event::Stats(s) = e {
                self.0.lock().unwrap().push(s.clone());
            }
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), sensor::SensorError> {
        Ok(())
    }
}

/// A replay's reports at its end all carry the capture's last time; the
/// ledger sorts a run's reports by time, so each leaves the sensor with a
/// later time than the one before, the reports sent again at the end too.
#[test]
fn every_report_of_a_run_has_a_later_time_than_the_one_before() {
    use citysoc::ship::{ShipConfig, ShipSink, SpoolFull};
    use sensor::output::EventSink;
    let tmp = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = ShipConfig {
        url: format!("http://127.0.0.1:{port}"),
        token: "t".into(),
        batch_records: 100,
        batch_secs: 3600.0,
        retry_secs: 1,
        spool_dir: tmp.path().join("spool"),
        spool_bytes: 1 << 20,
        spool_full: SpoolFull::DropOldest,
        tls: Default::default(),
        report_every: Some(Duration::from_millis(200)),
        stop_on_refusal: None,
        warn_every: Duration::from_secs(60),
    };
    let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut sink = ShipSink::new(Reports(std::sync::Arc::clone(&reports)), cfg, "s").unwrap();
    let conn = schema::sample_events().into_iter().find(|e| e.log_name() == "conn").unwrap();
    let at = schema::Time(1_700_000_000_000_000);
    for _ in 0..3 {
        let st = schema::StatsRecord { ts: at, ..Default::default() };
        sink.write(&mut [conn.clone(), schema::Event::Stats(st)]).unwrap();
    }
    // The SIEM away: the spool waits a second, with a report every 200 ms.
    sink.flush().unwrap();
    let r = reports.lock().unwrap();
    assert!(r.len() >= 5, "{}", r.len());
    assert!(r.windows(2).all(|w| w[0].ts.0 < w[1].ts.0), "{:?}", r.iter().map(|r| r.ts.0).collect::<Vec<_>>());
    assert_eq!(r.last().unwrap().records_made, Some(3));
    assert_eq!(r.last().unwrap().spool_records, Some(3));
}
