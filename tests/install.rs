//! What an installed CitySOC relies on: commands run from any folder find
//! the rules (the checkout's, for a development build) and say which; a
//! sensor refuses to run detection on rules that are not there; the first
//! start makes the SIEM's secrets instead of serving an open API; SIGHUP
//! puts a changed tokens file in force; SIGTERM stops the server cleanly.

mod common;

use common::{citysoc, free_port, root, stderr_lines, wait_for, Server};
use std::process::Stdio;
use std::time::Duration;

fn attack_capture() -> std::path::PathBuf {
    root().join("replay-pcaps/web-attacks/capture.pcap")
}

#[test]
fn a_sensor_run_from_another_folder_finds_the_checkout_rules_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    let out = citysoc()
        .current_dir(tmp.path())
        .args(["sensor", "--seed", "1", "--read"])
        .arg(attack_capture())
        .arg("--log-dir")
        .arg(&logs)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let line = err.lines().find(|l| l.starts_with("detection: ")).unwrap_or_else(|| panic!("no summary in {err}"));
    assert!(line.contains(&root().join("rules").display().to_string()), "{line}");
    assert!(!line.starts_with("detection: 0 Sigma rules"), "{line}");
    let alerts = std::fs::read_to_string(logs.join("alerts.log")).unwrap();
    assert!(alerts.lines().count() > 0, "no alert from the attack capture");
}

#[test]
fn a_rules_folder_that_is_not_there_stops_sensor_and_replay_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-rules");
    let logs = tmp.path().join("logs");
    let out = citysoc()
        .current_dir(tmp.path())
        .args(["sensor", "--read"])
        .arg(attack_capture())
        .arg("--log-dir")
        .arg(&logs)
        .arg("--rules")
        .arg(&missing)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&missing.display().to_string()) && err.contains("--no-detect"), "{err}");
    // Refused before reading: no logs at all.
    assert!(!logs.join("conn.log").exists());

    let out = citysoc()
        .current_dir(tmp.path())
        .arg("replay")
        .arg(root().join("replay-pcaps"))
        .arg("--rules")
        .arg(&missing)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

#[test]
fn an_empty_rules_folder_stops_the_sensor_too() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("rules");
    std::fs::create_dir(&empty).unwrap();
    let out = citysoc()
        .current_dir(tmp.path())
        .args(["sensor", "--read"])
        .arg(attack_capture())
        .arg("--log-dir")
        .arg(tmp.path().join("logs"))
        .arg("--rules")
        .arg(&empty)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("no rules loaded from") && err.contains(&empty.display().to_string()), "{err}");
}

#[test]
fn no_detect_runs_without_any_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    let out = citysoc()
        .current_dir(tmp.path())
        .args(["sensor", "--no-detect", "--read"])
        .arg(attack_capture())
        .arg("--log-dir")
        .arg(&logs)
        .arg("--rules")
        .arg(tmp.path().join("no-such-rules"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(logs.join("conn.log").exists());
    assert!(!logs.join("alerts.log").exists());
}

fn get(agent: &ureq::Agent, url: &str, token: Option<&str>) -> u16 {
    let mut r = agent.get(url);
    if let Some(t) = token {
        r = r.set("Authorization", &format!("Bearer {t}"));
    }
    match r.call() {
        Ok(resp) => resp.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("{url}: {e}"),
    }
}

/// `serve-init` on a fresh machine: a tokens file (hashes only), the clear
/// tokens once in a 0600 file, a self-signed certificate; the server takes
/// them as they are, refuses callers without a token, and after the tokens
/// file changes and SIGHUP, takes the new token without a restart.
#[test]
fn the_first_start_makes_tokens_and_a_certificate_and_sighup_reloads_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    let config = etc.join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "tokens = {:?}\n[tls]\ncert = {:?}\nkey = {:?}\n",
            etc.join("tokens.toml"),
            etc.join("tls/cert.pem"),
            etc.join("tls/key.pem")
        ),
    )
    .unwrap();
    let clear = tmp.path().join("initial-tokens.txt");
    let init = || {
        citysoc().args(["serve-init", "--config"]).arg(&config).arg("--initial-tokens").arg(&clear).output().unwrap()
    };
    let out = init();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let pin = err.split("--ship-pin ").nth(1).unwrap_or_else(|| panic!("no pin in {err}")).trim().to_string();
    let text = std::fs::read_to_string(&clear).unwrap();
    let token = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(&format!("{name} = "))).unwrap_or_else(|| panic!("{text}")).to_string()
    };
    let (admin, sensor) = (token("admin"), token("sensor"));
    // Nothing is made twice.
    let tokens_before = std::fs::read(etc.join("tokens.toml")).unwrap();
    let again = init();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("left as it is"));
    assert_eq!(std::fs::read(etc.join("tokens.toml")).unwrap(), tokens_before);

    let port = free_port();
    let mut server = Server(
        citysoc()
            .current_dir(tmp.path())
            .args(["serve", "--data"])
            .arg(tmp.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--tokens"])
            .arg(etc.join("tokens.toml"))
            .arg("--tls-cert")
            .arg(etc.join("tls/cert.pem"))
            .arg("--tls-key")
            .arg(etc.join("tls/key.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rx = stderr_lines(&mut server.0);
    // Started from another folder, it still finds the checkout's rules.
    let rules = wait_for(&rx, "rules folder ");
    assert!(rules.contains(&root().join("rules").display().to_string()), "{rules}");
    wait_for(&rx, "serving the console on https://");
    let agent =
        citysoc::tls::ClientTls { pin: Some(pin), ..Default::default() }.agent(Duration::from_secs(20)).unwrap();
    let url = format!("https://127.0.0.1:{port}/api/v1/search?q=*");
    assert_eq!(get(&agent, &url, None), 401);
    assert_eq!(get(&agent, &url, Some(&admin)), 200);
    assert_eq!(get(&agent, &url, Some(&sensor)), 403);
    assert_eq!(get(&agent, &url, Some("a-reader-token")), 401);

    // A reader added to the file: in force after SIGHUP, no restart.
    let mut table = std::fs::read_to_string(etc.join("tokens.toml")).unwrap();
    table =
        table.replace("[readers]\n", &format!("[readers]\nanalyst = \"{}\"\n", common::sha256_hex("a-reader-token")));
    std::fs::write(etc.join("tokens.toml"), table).unwrap();
    let pid = server.0.id().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let line = wait_for(&rx, "tokens reloaded");
    assert!(line.contains("1 readers"), "{line}");
    assert_eq!(get(&agent, &url, Some("a-reader-token")), 200);
    assert_eq!(get(&agent, &url, Some(&admin)), 200);

    // A broken file keeps the tokens in force.
    std::fs::write(etc.join("tokens.toml"), "[readers\n").unwrap();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    wait_for(&rx, "tokens not reloaded");
    assert_eq!(get(&agent, &url, Some("a-reader-token")), 200);

    // systemd stops a service with SIGTERM: a clean stop, not a kill.
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    wait_for(&rx, "stopping");
    let status = server.0.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// The packaged sensor.toml is a valid configuration as shipped, and with
/// every commented key switched on (the comments show real keys and values).
#[test]
fn the_packaged_sensor_config_loads_as_shipped_and_uncommented() {
    use citysoc::sensor_setup::SensorConfig;
    let path = root().join("packaging/sensor.toml");
    let cfg = SensorConfig::load(&path).unwrap();
    assert_eq!(cfg.detect.rules_dir.as_deref(), Some(std::path::Path::new("/var/lib/citysoc/rules")));
    assert_eq!(cfg.ring.dir.as_deref(), Some(std::path::Path::new("/var/lib/citysoc/ring")));
    let text = std::fs::read_to_string(&path).unwrap();
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest)
                if rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_')) =>
            {
                rest
            }
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("sensor.toml"), &uncommented).unwrap();
    let all = SensorConfig::load(&tmp.path().join("sensor.toml")).unwrap();
    assert_eq!(all.user.as_deref(), Some("citysoc"));
    assert_eq!(all.local_nets.len(), 3);
}
