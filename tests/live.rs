//! Live capture on the loopback interface. Needs the right to capture
//! (root or CAP_NET_RAW), so it is ignored by default and run by `.ci/run`
//! as root: `cargo test --test live -- --ignored`.

mod common;

use common::{stderr_lines, wait_for, Server as Guard};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
#[ignore = "needs permission to capture on lo"]
fn live_capture_on_loopback_logs_flows_and_reports_on_signal() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    let child = Command::new(env!("CARGO_BIN_EXE_citysoc"))
        .args(["sensor", "--interface", "lo", "--filter", "udp port 45999", "--seed", "3", "--log-dir"])
        .arg(&logs)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Guard(child);
    let rx = stderr_lines(&mut child.0);
    wait_for(&rx, "capturing on lo");

    let sock = UdpSocket::bind("127.0.0.1:45998").unwrap();
    for _ in 0..3 {
        sock.send_to(b"city sensor test", "127.0.0.1:45999").unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-USR1", &pid]).status().unwrap().success());
    let report = wait_for(&rx, "packets:");
    assert!(report.contains("dropped by kernel"), "{report}");
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let status = child.0.wait().unwrap();
    assert!(status.success(), "sensor exited with {status}");

    let conn = std::fs::read_to_string(logs.join("conn.log")).unwrap();
    let rec: serde_json::Value = conn
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["id.resp_p"] == 45999)
        .unwrap_or_else(|| panic!("no flow to port 45999 in:\n{conn}"));
    assert_eq!(rec["id.orig_h"], "127.0.0.1");
    assert_eq!(rec["id.orig_p"], 45998);
    assert_eq!(rec["orig_pkts"], 3);
    assert_eq!(rec["orig_bytes"], 48);
    let stats: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(logs.join("stats.log")).unwrap().lines().last().unwrap()).unwrap();
    assert_eq!(stats["pkts_read"], 3);
    assert!(stats.get("pkts_dropped_iface").is_some());
}

const RULE: &str = "title: Reload test NAME
id: UUID
status: test
description: Datagrams to the reload test port.
author: CitySOC
date: 2026-11-28
logsource:
    product: zeek
    service: conn
detection:
    selection:
        id.resp_p: PORT
    condition: selection
level: high
";

/// Rules change under a running live sensor: SIGHUP reloads the folder, the
/// capture goes on without a packet lost, the next records meet the new
/// rules, and the stats reports name the rule set in use before and after.
#[test]
#[ignore = "needs permission to capture on lo"]
fn rules_reload_on_sighup_while_capturing() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("rules");
    let root = common::root();
    assert!(Command::new("cp").arg("-r").arg(root.join("rules")).arg(&rules).status().unwrap().success());
    let rule_file = rules.join("sigma/network/reload_test.yml");
    let a = RULE.replace("NAME", "A").replace("UUID", "6f1d3a52-4a0e-4c44-9a51-3d2b7c1e0a01").replace("PORT", "45997");
    std::fs::write(&rule_file, a).unwrap();
    let logs = tmp.path().join("logs");
    let child = Command::new(env!("CARGO_BIN_EXE_citysoc"))
        .args(["sensor", "--interface", "lo", "--filter", "udp port 45997", "--seed", "3", "--stats-secs", "1"])
        .arg("--rules")
        .arg(&rules)
        .arg("--log-dir")
        .arg(&logs)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Guard(child);
    let rx = stderr_lines(&mut child.0);
    wait_for(&rx, "capturing on lo");
    let send = |port: u16| {
        let sock = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        for _ in 0..3 {
            sock.send_to(b"reload test", "127.0.0.1:45997").unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    send(45996);
    std::thread::sleep(Duration::from_millis(1500));
    // Rule A goes, rule B comes; the sensor is told.
    let b = RULE.replace("NAME", "B").replace("UUID", "6f1d3a52-4a0e-4c44-9a51-3d2b7c1e0a02").replace("PORT", "45997");
    std::fs::write(&rule_file, b).unwrap();
    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    wait_for(&rx, "rules reloaded from SIGHUP");
    send(45995);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let status = child.0.wait().unwrap();
    assert!(status.success(), "sensor exited with {status}");

    let read = |f: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(logs.join(f))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    // Flows are logged when they end (here, at the stop): both meet rule B.
    let alerts = read("alerts.log");
    let titles: Vec<&str> = alerts.iter().filter_map(|a| a["rule.title"].as_str()).collect();
    assert!(titles.contains(&"Reload test B"), "{titles:?}");
    assert!(!titles.contains(&"Reload test A"), "{titles:?}");
    // The reports name the rule set in use: one version, then another.
    let stats = read("stats.log");
    let versions: Vec<&str> = stats.iter().filter_map(|s| s["rules_version"].as_str()).collect();
    assert!(versions.len() >= 2, "{stats:?}");
    assert_ne!(versions.first(), versions.last(), "{versions:?}");
    // Nothing dropped across the reload, every datagram counted.
    let last = stats.last().unwrap();
    assert_eq!(last["pkts_read"], 6);
    assert_eq!(last["pkts_dropped_kernel"], 0);
    let conn = read("conn.log");
    assert_eq!(conn.iter().filter(|c| c["id.resp_p"] == 45997).count(), 2);
}

/// A sensor that runs the SIEM's rules picks up a new version while it
/// captures: edited at the SOC, fetched, reloaded, reported.
#[test]
#[ignore = "needs permission to capture on lo"]
fn rules_edited_at_the_siem_reach_a_running_sensor() {
    let tmp = tempfile::tempdir().unwrap();
    let root = common::root();
    let rules = tmp.path().join("soc-rules");
    assert!(Command::new("cp").arg("-r").arg(root.join("rules")).arg(&rules).status().unwrap().success());
    let rule_file = rules.join("sigma/network/reload_test.yml");
    let a = RULE.replace("NAME", "A").replace("UUID", "6f1d3a52-4a0e-4c44-9a51-3d2b7c1e0a03").replace("PORT", "45993");
    std::fs::write(&rule_file, a).unwrap();
    let token_hash = common::sha256_hex("t9");
    std::fs::write(tmp.path().join("tokens.toml"), format!("[sensors]\nd9 = \"{token_hash}\"\n")).unwrap();
    std::fs::write(tmp.path().join("token"), "t9\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _siem = Guard(
        Command::new(env!("CARGO_BIN_EXE_citysoc"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(tmp.path().join("data"))
            .arg("--tokens")
            .arg(tmp.path().join("tokens.toml"))
            .arg("--rules")
            .arg(&rules)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "the SIEM did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs = tmp.path().join("logs");
    let child = Command::new(env!("CARGO_BIN_EXE_citysoc"))
        .args(["sensor", "--interface", "lo", "--filter", "udp port 45993", "--seed", "3", "--stats-secs", "1"])
        .args(["--ship", &format!("http://127.0.0.1:{port}"), "--rules-from-siem", "--rules-poll-secs", "1"])
        .arg("--token-file")
        .arg(tmp.path().join("token"))
        .arg("--log-dir")
        .arg(&logs)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Guard(child);
    let rx = stderr_lines(&mut child.0);
    wait_for(&rx, "capturing on lo");
    let b = RULE.replace("NAME", "B").replace("UUID", "6f1d3a52-4a0e-4c44-9a51-3d2b7c1e0a04").replace("PORT", "45993");
    std::fs::write(&rule_file, b).unwrap();
    wait_for(&rx, "rules reloaded from the SIEM");
    let sock = UdpSocket::bind("127.0.0.1:45992").unwrap();
    for _ in 0..3 {
        sock.send_to(b"reload test", "127.0.0.1:45993").unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    assert!(child.0.wait().unwrap().success());
    let alerts = std::fs::read_to_string(logs.join("alerts.log")).unwrap_or_default();
    assert!(alerts.contains("Reload test B"), "{alerts}");
    assert!(!alerts.contains("Reload test A"), "{alerts}");
    let versions: Vec<String> = std::fs::read_to_string(logs.join("stats.log"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["rules_version"].as_str().map(String::from))
        .collect();
    assert_ne!(versions.first(), versions.last(), "{versions:?}");
}

/// A live sensor the SIEM refuses (a wrong token) stops by itself the way
/// a signal stops it: the flow open at that moment is logged and spooled,
/// and the sensor exits non-zero with the SIEM's reason.
#[test]
#[ignore = "needs permission to capture on lo"]
fn a_live_sensor_refused_by_the_siem_stops_with_its_flows_spooled() {
    let tmp = tempfile::tempdir().unwrap();
    let token_hash = common::sha256_hex("t8");
    std::fs::write(tmp.path().join("tokens.toml"), format!("[sensors]\nd8 = \"{token_hash}\"\n")).unwrap();
    std::fs::write(tmp.path().join("token"), "not-t8\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _siem = Guard(
        Command::new(env!("CARGO_BIN_EXE_citysoc"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(tmp.path().join("data"))
            .arg("--tokens")
            .arg(tmp.path().join("tokens.toml"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "the SIEM did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs = tmp.path().join("logs");
    let child = Command::new(env!("CARGO_BIN_EXE_citysoc"))
        .args(["sensor", "--interface", "lo", "--filter", "udp port 45991", "--seed", "3", "--stats-secs", "1"])
        .args(["--no-detect", "--ship-wait-secs", "5", "--ship", &format!("http://127.0.0.1:{port}")])
        .arg("--token-file")
        .arg(tmp.path().join("token"))
        .arg("--log-dir")
        .arg(&logs)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Guard(child);
    let rx = stderr_lines(&mut child.0);
    wait_for(&rx, "capturing on lo");
    // Before the first batch (a stats report after a second, spooled within
    // two) meets the refusal: the flow is still open then.
    let sock = UdpSocket::bind("127.0.0.1:45990").unwrap();
    for _ in 0..3 {
        sock.send_to(b"refused test", "127.0.0.1:45991").unwrap();
    }
    let why = wait_for(&rx, "citysoc: shipping to the SIEM at");
    assert!(why.contains("stopped: the SIEM refused the sensor's token (401"), "{why}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the refused sensor did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    let conn = std::fs::read_to_string(logs.join("conn.log")).unwrap();
    assert!(conn.contains("45991"), "{conn}");
    let spooled: String = std::fs::read_dir(logs.join("spool"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "zst"))
        .map(|e| String::from_utf8(zstd::decode_all(&std::fs::read(e.path()).unwrap()[..]).unwrap()).unwrap())
        .collect();
    let flow = spooled
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["_log"] == "conn" && r["id.resp_p"] == 45991);
    assert!(flow.is_some_and(|f| f["orig_pkts"] == 3), "the flow is spooled: {spooled}");
}

/// One sample's value (0 when absent).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// A live sensor scraped while it captures: ready, its packet counter
/// follows the traffic within seconds, and a quiet link still shows
/// progress (the loop publishes idle or not).
#[test]
#[ignore = "needs permission to capture on lo"]
fn a_live_sensor_is_ready_and_its_metrics_follow_the_traffic() {
    let tmp = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", common::free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_citysoc"))
        .args(["sensor", "--interface", "lo", "--filter", "udp port 45997", "--no-detect", "--log-dir"])
        .arg(tmp.path().join("logs"))
        .args(["--metrics", &addr])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Guard(child);
    let rx = stderr_lines(&mut child.0);
    wait_for(&rx, "capturing on lo");
    let get = |path: &str| match ureq::get(&format!("http://{addr}{path}")).call() {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap()),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(get("/readyz"), (200, "ready\n".to_string()));
    let sock = UdpSocket::bind("127.0.0.1:45996").unwrap();
    for _ in 0..3 {
        sock.send_to(b"metrics test", "127.0.0.1:45997").unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = get("/metrics").1;
        if sample(&text, "citysoc_sensor_packets_total") == 3.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(sample(&text, "citysoc_sensor_packets_total"), 3.0, "{text}");
    assert_eq!(sample(&text, "citysoc_sensor_capturing"), 1.0);
    assert!(text.contains("citysoc_sensor_interface_dropped_packets_total"), "{text}");
    let before = sample(&text, "citysoc_sensor_last_update_timestamp_seconds");
    std::thread::sleep(Duration::from_millis(2500));
    let quiet = get("/metrics").1;
    assert!(sample(&quiet, "citysoc_sensor_last_update_timestamp_seconds") > before, "{quiet}");
    assert_eq!(get("/readyz").0, 200);
    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    assert!(child.0.wait().unwrap().success());
}

/// The uid, gid and effective capabilities of a thread, from /proc.
fn thread_ids(status: &str) -> (Vec<u32>, Vec<u32>, String) {
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_default().to_string();
    let ids = |s: String| s.split_whitespace().map(|x| x.parse().unwrap()).collect::<Vec<u32>>();
    (ids(field("Uid:")), ids(field("Gid:")), field("CapEff:").trim().to_string())
}

/// Started as root with `--user nobody`, the sensor opens the capture, then
/// every thread (the workers' above all) runs as nobody without a
/// capability left, and it still captures.
#[test]
#[ignore = "needs root"]
fn a_root_sensor_drops_to_its_user_after_opening_the_capture() {
    use std::os::unix::fs::PermissionsExt;
    let nobody = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    let uid: u32 = String::from_utf8_lossy(&nobody.stdout).trim().parse().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o777)).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_citysoc"))
        .args(["sensor", "--interface", "lo", "--filter", "udp port 45997", "--no-detect", "--user", "nobody"])
        .args(["--workers", "2", "--log-dir"])
        .arg(&logs)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Guard(child);
    let rx = stderr_lines(&mut child.0);
    let line = wait_for(&rx, "running as nobody");
    assert!(line.contains(&format!("uid {uid}")), "{line}");
    wait_for(&rx, "capturing on lo");
    let pid = child.0.id();
    // A thread names itself once it runs: looked at until both workers have.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut workers = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
            let task = task.unwrap().path();
            let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            let Ok(status) = std::fs::read_to_string(task.join("status")) else { continue };
            let (uids, _gids, caps) = thread_ids(&status);
            assert_eq!(uids, vec![uid; 4], "thread {} runs as {uids:?}", comm.trim());
            assert_eq!(caps, "0000000000000000", "thread {} keeps capabilities {caps}", comm.trim());
            workers += usize::from(comm.starts_with("worker-"));
        }
        if workers == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{workers} worker threads, not 2");
        std::thread::sleep(Duration::from_millis(50));
    }

    let sock = UdpSocket::bind("127.0.0.1:45996").unwrap();
    sock.send_to(b"after the drop", "127.0.0.1:45997").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap().success());
    assert!(child.0.wait().unwrap().success());
    let conn = std::fs::read_to_string(logs.join("conn.log")).unwrap();
    assert!(conn.contains("45997"), "{conn}");
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(logs.join("conn.log")).unwrap());
    assert_eq!(owner, uid, "the logs are written as the new user");
}

/// A user the system does not know stops the sensor before it captures.
#[test]
fn an_unknown_user_stops_the_sensor_before_it_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_citysoc"))
        .args(["sensor", "--no-detect", "--user", "no-such-user-here", "--read"])
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("replay-pcaps/dns/capture.pcap"))
        .arg("--log-dir")
        .arg(tmp.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("no-such-user-here: no such user"), "{err}");
    assert!(!tmp.path().join("conn.log").exists());
}
