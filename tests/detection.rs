//! Detection end to end: the shipped rules against the bundled scenarios,
//! rule errors as an admin sees them, and the sensor's switches.

use citysoc::detection::DetectSettings;
use citysoc::replay::load_cases;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn citysoc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_citysoc"))
}

/// Every shipped rule that raises alerts has a scenario that fires it and a
/// benign look-alike on which it must stay silent.
#[test]
fn every_shipped_rule_has_an_attack_and_a_benign_scenario() {
    let settings = DetectSettings { rules_dir: Some(root().join("rules")), ..Default::default() };
    let rules = settings.load("sensor").unwrap();
    assert!(rules.errors.is_empty(), "{:?}", rules.errors);
    let mut ids: Vec<String> = Vec::new();
    for r in rules.sigma.rules.iter().filter(|r| !r.quiet) {
        ids.push(r.meta.id.clone().expect("shipped Sigma rules have ids"));
    }
    for c in &rules.sigma.correlations {
        ids.push(c.meta.id.clone().expect("shipped correlations have ids"));
    }
    ids.extend(rules.yara.as_ref().map(|y| y.info.keys().cloned().collect::<Vec<_>>()).unwrap_or_default());
    let models: Vec<String> = rules.models.all().iter().filter(|(_, c)| c.enabled).map(|(_, c)| c.id.clone()).collect();
    assert_eq!(models.len(), detector::models::MODEL_IDS.len(), "every model ships enabled: {models:?}");
    ids.extend(models);
    assert!(ids.len() >= 15, "{ids:?}");
    let cases = load_cases(&root().join("replay-pcaps")).unwrap();
    let fired: BTreeSet<&str> = cases.iter().flat_map(|c| c.spec.alert.iter().map(|a| a.rule.as_str())).collect();
    let benign: BTreeSet<&str> = cases.iter().flat_map(|c| c.spec.benign_for.iter().map(String::as_str)).collect();
    let mut missing = Vec::new();
    for id in &ids {
        if !fired.contains(id.as_str()) {
            missing.push(format!("{id}: no scenario fires it"));
        }
        if !benign.contains(id.as_str()) {
            missing.push(format!("{id}: no benign scenario for it"));
        }
    }
    // Cases must name rules that exist.
    for id in fired.iter().chain(benign.iter()) {
        if !id.starts_with("intel:") && !ids.iter().any(|x| x == id) {
            missing.push(format!("{id}: named by a case but not a shipped rule"));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const GOOD: &str = "title: Good rule\nid: 11111111-1111-4111-8111-111111111111\nlogsource:\n    product: zeek\n    service: dns\ndetection:\n    sel:\n        query|endswith: '.bad.example'\n    condition: sel\nlevel: high\n";

#[test]
fn broken_rules_are_reported_with_file_and_line_and_the_rest_load() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "sigma/good.yml", GOOD);
    write(
        d,
        "sigma/bad_modifier.yml",
        "title: Bad modifier\nlogsource:\n    product: zeek\n    service: dns\ndetection:\n    sel:\n        query|endswoth: 'x'\n    condition: sel\n",
    );
    write(d, "sigma/bad_yaml.yml", "title: Broken\ndetection: [unclosed\n");
    write(
        d,
        "sigma/bad_condition.yml",
        "title: Bad condition\nlogsource:\n    product: zeek\n    service: dns\ndetection:\n    sel:\n        query: 'x'\n    condition: sel and nothere\n",
    );
    write(
        d,
        "yara/bad.yar",
        "rule ok_one { condition: true }\n\nrule broken {\n  strings:\n    $a = \"x\"\n  condition:\n    $b\n}\n",
    );
    write(d, "yara/good.yar", "rule fine { strings: $a = \"needle\" condition: $a }\n");
    let out = citysoc().args(["rules", "check", "--rules"]).arg(d).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("bad_modifier.yml:7:9: E102: unknown modifier 'endswoth'"), "{text}");
    assert!(text.contains("bad_yaml.yml:3:1: E100: invalid YAML"), "{text}");
    assert!(text.contains("bad_condition.yml:8:") && text.contains("unknown selection 'nothere'"), "{text}");
    assert!(text.contains("bad.yar:7:") && text.contains("E100"), "{text}");
    assert!(text.contains("1 Sigma rules loaded") && text.contains("1 YARA rules in 1 files"), "{text}");
}

#[test]
fn the_sensor_alerts_by_default_and_not_with_no_detect() {
    let tmp = tempfile::tempdir().unwrap();
    let cap = root().join("replay-pcaps/dns-dyndns/capture.pcap");
    for (flag, want) in [(None, true), (Some("--no-detect"), false)] {
        let logs = tmp.path().join(format!("{want}"));
        let mut cmd = citysoc();
        cmd.args(["sensor", "--seed", "1", "--rules"]).arg(root().join("rules")).arg("--read").arg(&cap);
        cmd.arg("--log-dir").arg(&logs);
        if let Some(f) = flag {
            cmd.arg(f);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(logs.join("alerts.log").exists(), want);
        assert!(logs.join("dns.log").exists());
    }
}

#[test]
fn a_user_rule_folder_loads_beside_the_shipped_rules() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "mine/dns_bad.yml", &GOOD.replace(".bad.example", "duckdns.org"));
    let logs = tmp.path().join("logs");
    let cfg = tmp.path().join("sensor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[detect]\nrules_dir = {:?}\nsigma_dirs = [{:?}]\n",
            root().join("rules").display().to_string(),
            tmp.path().join("mine").display().to_string()
        ),
    )
    .unwrap();
    let cap = root().join("replay-pcaps/dns-dyndns/capture.pcap");
    let out = citysoc()
        .args(["sensor", "--seed", "1", "--config"])
        .arg(&cfg)
        .arg("--read")
        .arg(&cap)
        .arg("--log-dir")
        .arg(&logs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let alerts = std::fs::read_to_string(logs.join("alerts.log")).unwrap();
    assert!(alerts.contains("11111111-1111-4111-8111-111111111111"), "{alerts}");
    assert!(alerts.contains("42269bb5-4044-4d86-9954-931c2005a11e"), "{alerts}");
}

/// Rules switched off and alerts suppressed in `tuning.toml` raise nothing;
/// a suppression past its expiry no longer holds.
#[test]
fn tuning_switches_rules_off_and_suppresses_alerts() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("rules");
    let copy = std::process::Command::new("cp").arg("-r").arg(root().join("rules")).arg(&rules).status().unwrap();
    assert!(copy.success());
    let cap = root().join("replay-pcaps/port-scan/capture.pcap");
    let run = |tuning: &str, name: &str| -> Vec<String> {
        std::fs::write(rules.join("tuning.toml"), tuning).unwrap();
        let logs = tmp.path().join(name);
        let out = citysoc()
            .args(["sensor", "--seed", "1", "--rules"])
            .arg(&rules)
            .arg("--read")
            .arg(&cap)
            .arg("--log-dir")
            .arg(&logs)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::read_to_string(logs.join("alerts.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["rule.id"].as_str().unwrap().to_string())
            .collect()
    };
    let all = run("disabled = []\n", "all");
    assert!(all.iter().any(|r| r == "model:scan") && all.iter().any(|r| r.starts_with("2dfdf66b")), "{all:?}");
    let off = run("disabled = [\"model:scan\"]\n", "off");
    assert!(!off.iter().any(|r| r == "model:scan") && off.len() == all.len() - 1, "{off:?}");
    let suppressed = run(
        "[[suppress]]\nrule = \"*\"\nfield = \"id.orig_h\"\nvalue = \"203.0.113.77\"\nuntil = \"2030-01-01T00:00:00Z\"\n",
        "suppressed",
    );
    // Only the Telnet sweep (another source) is left.
    assert_eq!(suppressed, ["883c3427-0bc3-4079-9c9d-390418ad1d35"]);
    let expired = run(
        "[[suppress]]\nrule = \"*\"\nfield = \"id.orig_h\"\nvalue = \"203.0.113.77\"\nuntil = \"2020-01-01T00:00:00Z\"\n",
        "expired",
    );
    assert_eq!(expired.len(), all.len());
}
