//! End-to-end: the bundled captures through the whole sensor pipeline.

use citysoc::replay::{check, load_cases, run_case, Case};
use std::path::{Path, PathBuf};
use std::process::Command;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("replay-pcaps")
}

fn cases() -> Vec<Case> {
    let cases = load_cases(&cases_dir()).expect("cases load");
    assert!(cases.len() >= 19, "expected the bundled cases, found {}", cases.len());
    cases
}

fn shipped_rules() -> std::sync::Arc<detector::detect::RuleSet> {
    let settings = citysoc::detection::DetectSettings {
        rules_dir: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")),
        ..Default::default()
    };
    let rules = settings.load("sensor").unwrap();
    assert!(rules.errors.is_empty(), "shipped rules fail to load: {:?}", rules.errors);
    rules
}

/// Every case with detection on: its records and exactly its alerts.
#[test]
fn every_case_passes_with_one_and_two_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = shipped_rules();
    let mut report = Vec::new();
    for workers in [1, 2] {
        for case in cases() {
            let dir = tmp.path().join(format!("{}-{workers}", case.name));
            let out = run_case(&case, &dir, workers, Some(&rules)).unwrap();
            assert!(out.checks > 0, "{} has no checks", case.name);
            for f in out.failures {
                report.push(format!("{} ({workers} workers): {f}", case.name));
            }
        }
    }
    assert!(report.is_empty(), "replay failures:\n{}", report.join("\n"));
}

#[test]
fn captures_are_reproduced_by_the_generator() {
    for case in cases() {
        let mut fresh = Vec::new();
        pcapgen::scenario(&case.spec.scenario, &mut fresh).unwrap();
        let stored = std::fs::read(case.capture()).unwrap();
        assert!(stored == fresh, "{}: capture.pcap differs from `citysoc generate {}`", case.name, case.spec.scenario);
    }
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(path).unwrap().lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn seeded_records_do_not_depend_on_the_worker_count() {
    let tmp = tempfile::tempdir().unwrap();
    for case in cases().iter().filter(|c| ["tunnels", "tcp-reuse-timeouts", "ip-fragments"].contains(&c.name.as_str()))
    {
        let one = tmp.path().join(format!("{}-1", case.name));
        let two = tmp.path().join(format!("{}-2", case.name));
        run_case(case, &one, 1, None).unwrap();
        run_case(case, &two, 2, None).unwrap();
        for log in ["conn.log", "tunnel.log", "weird.log"] {
            if one.join(log).exists() {
                assert_eq!(sorted_lines(&one.join(log)), sorted_lines(&two.join(log)), "{} {log}", case.name);
            }
        }
    }
}

#[test]
fn a_wrong_expectation_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let src = cases_dir().join("tcp-basic");
    let dir = tmp.path().join("cases/tcp-basic");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(src.join("capture.pcap"), dir.join("capture.pcap")).unwrap();
    let toml =
        std::fs::read_to_string(src.join("case.toml")).unwrap().replace("history = \"ShADadFf\"", "history = \"ShAF\"");
    std::fs::write(dir.join("case.toml"), toml).unwrap();
    let case = load_cases(&tmp.path().join("cases")).unwrap().pop().unwrap();
    let out = run_case(&case, &tmp.path().join("logs"), 1, None).unwrap();
    assert_eq!(out.failures.len(), 2, "{:?}", out.failures);
    assert!(out.failures[0].contains("history=\"ShAF\""), "{}", out.failures[0]);
    // Checking the same logs again gives the same verdict.
    assert_eq!(check(&case, &tmp.path().join("logs")).unwrap().failures.len(), 2);
}

fn citysoc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_citysoc"))
}

#[test]
fn a_file_that_is_not_a_capture_fails_with_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    let bogus = tmp.path().join("notes.txt");
    std::fs::write(&bogus, "this is not a capture\n").unwrap();
    let out =
        citysoc().args(["sensor", "--read"]).arg(&bogus).arg("--log-dir").arg(tmp.path().join("l")).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("notes.txt") && err.contains("cannot open capture"), "{err}");
    let missing =
        citysoc().args(["sensor", "--read", "/nonexistent/x.pcap", "--log-dir"]).arg(tmp.path()).output().unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/x.pcap"));
}

#[test]
fn a_truncated_capture_keeps_what_came_before_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let full = std::fs::read(cases_dir().join("tcp-basic/capture.pcap")).unwrap();
    // Cut inside the record header of a later packet.
    let cut = tmp.path().join("cut.pcap");
    std::fs::write(&cut, &full[..full.len() - 70]).unwrap();
    let logs = tmp.path().join("logs");
    let out =
        citysoc().args(["sensor", "--seed", "1", "--read"]).arg(&cut).arg("--log-dir").arg(&logs).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cut.pcap") && err.contains("damaged"), "{err}");
    let conn = std::fs::read_to_string(logs.join("conn.log")).unwrap();
    assert_eq!(conn.lines().count(), 2, "both sessions were still logged:\n{conn}");
}

#[test]
fn zero_length_and_garbage_files() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let out =
        citysoc().args(["sensor", "--read"]).arg(&empty).arg("--log-dir").arg(tmp.path().join("a")).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty.pcap"));
}
