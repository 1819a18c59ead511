//! Hunting gives what the sensor raised live: each anomaly scenario is
//! replayed with detection, its logs stored in the embedded store, and the
//! models run again over the stored range.

use citysoc::detection::DetectSettings;
use citysoc::replay::{ingest_logs, load_cases, run_case};
use serde_json::Value;
use siem::store::tantivy::{TantivyConfig, TantivyStore};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model_alerts(text: &str) -> Vec<Value> {
    let mut v: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|a| a["rule.source"] == "model")
        .collect();
    v.sort_by_key(|a| a["id"].as_str().unwrap_or_default().to_string());
    v
}

#[test]
fn hunting_over_stored_records_raises_the_live_alerts() {
    let settings = DetectSettings { rules_dir: Some(root().join("rules")), ..Default::default() };
    let rules = settings.load("sensor").unwrap();
    let cases = load_cases(&root().join("replay-pcaps")).unwrap();
    let mut compared = 0;
    for case in cases.iter().filter(|c| c.name.starts_with("anomaly-")) {
        let tmp = tempfile::tempdir().unwrap();
        let logs = tmp.path().join("logs");
        let out = run_case(case, &logs.join(&case.name), 1, Some(&rules)).unwrap();
        assert!(out.failures.is_empty(), "{}: {:?}", case.name, out.failures);
        let live = model_alerts(&std::fs::read_to_string(logs.join(&case.name).join("alerts.log")).unwrap_or_default());
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let store = TantivyStore::open(&data, TantivyConfig::default()).unwrap();
        ingest_logs(&store, &logs, "sensor").unwrap();
        let report = citysoc::hunt::hunt(
            &store,
            1_699_990_000.0,
            1_700_300_000.0,
            &rules.models,
            rules.cfg.aggregate_window_secs,
            rules.cfg.max_open_alerts,
        )
        .unwrap();
        assert!(report.records > 0, "{}", case.name);
        let text: String = report.alerts.iter().map(|a| serde_json::to_string(a).unwrap() + "\n").collect();
        let hunted = model_alerts(&text);
        assert_eq!(hunted, live, "{}", case.name);
        compared += live.len();
    }
    // Every attack scenario's model alerts, not an empty comparison.
    assert!(compared >= 12, "{compared}");
}

#[test]
fn an_empty_range_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = TantivyStore::open(tmp.path(), TantivyConfig::default()).unwrap();
    let e = citysoc::hunt::hunt(&store, 10.0, 10.0, &Default::default(), 60.0, 10).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
}
