//! Sensor to SIEM over HTTP: a sensor replaying a capture ships its records
//! and alerts to a `citysoc serve` with tokens; the SIEM stores them under
//! the sensor's name, the same as its local logs.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn citysoc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_citysoc"))
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

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
