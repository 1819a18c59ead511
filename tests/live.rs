//! Live capture on the loopback interface. Needs the right to capture
//! (root or CAP_NET_RAW), so it is ignored by default and run by `.ci/run`
//! as root: `cargo test --test live -- --ignored`.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the sensor if the test fails, so that no capture outlives it.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_for = |needle: &str, rx: &std::sync::mpsc::Receiver<String>| -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
                if l.contains(needle) {
                    return l;
                }
            }
        }
        panic!("sensor never printed {needle:?}");
    };
    wait_for("capturing on lo", &rx);

    let sock = UdpSocket::bind("127.0.0.1:45998").unwrap();
    for _ in 0..3 {
        sock.send_to(b"city sensor test", "127.0.0.1:45999").unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-USR1", &pid]).status().unwrap().success());
    let report = wait_for("packets:", &rx);
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
