//! File extraction: every stored file is the file files.log describes (same
//! SHA-256 and size), and the size and count caps hold.

use citysoc::sensor_setup::SensorConfig;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;

fn run(case: &str, cfg: &SensorConfig, dir: &Path) -> Vec<Value> {
    let cap = Path::new(env!("CARGO_MANIFEST_DIR")).join("replay-pcaps").join(case).join("capture.pcap");
    let sink = cfg.log_writer(dir).unwrap();
    let spec = sensor::capture::SourceSpec::File(cap);
    let (summary, _) =
        sensor::pipeline::run(&spec, &cfg.pipeline(), sink, Default::default(), Default::default()).unwrap();
    assert!(summary.source_error.is_none());
    let text = std::fs::read_to_string(dir.join("files.log")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn config(max_bytes: u64, max_files: u64) -> SensorConfig {
    SensorConfig {
        extract_files: true,
        extract_max_file_bytes: max_bytes,
        extract_max_files: max_files,
        uid_seed: Some(1),
        ..SensorConfig::default()
    }
}

fn hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn extracted_files_match_their_records() {
    for case in ["http", "ftp", "smtp"] {
        let tmp = tempfile::tempdir().unwrap();
        let recs = run(case, &config(16 << 20, 1000), tmp.path());
        assert!(!recs.is_empty(), "{case}");
        for r in &recs {
            let name = r["extracted"].as_str().unwrap_or_else(|| panic!("{case}: not extracted: {r}"));
            assert!(name.starts_with("extract-") && !name.contains('/'), "{name}");
            let data = std::fs::read(tmp.path().join("extract_files").join(name)).unwrap();
            assert_eq!(r["extracted_cutoff"], false, "{case}: {r}");
            assert_eq!(r["extracted_size"], data.len(), "{case}: {r}");
            assert_eq!(r["seen_bytes"], data.len(), "{case}: {r}");
            assert_eq!(r["sha256"], hex(&data), "{case}: {r}");
        }
    }
}

#[test]
fn caps_on_size_and_count() {
    let tmp = tempfile::tempdir().unwrap();
    let recs = run("smtp", &config(10, 2), tmp.path());
    let extracted: Vec<&Value> = recs.iter().filter(|r| r.get("extracted").is_some()).collect();
    assert_eq!(extracted.len(), 2);
    for r in &extracted {
        let data = std::fs::read(tmp.path().join("extract_files").join(r["extracted"].as_str().unwrap())).unwrap();
        let seen = r["seen_bytes"].as_u64().unwrap();
        assert_eq!(data.len() as u64, seen.min(10));
        assert_eq!(r["extracted_cutoff"], seen > 10);
    }
    // Files past the count cap are logged without extraction fields.
    let rest: Vec<&Value> = recs.iter().filter(|r| r.get("extracted").is_none()).collect();
    assert!(!rest.is_empty());
    assert_eq!(rest.len(), recs.len() - 2);
    assert!(rest.iter().all(|r| r.get("extracted_cutoff").is_none() && r.get("extracted_size").is_none()));
    assert_eq!(std::fs::read_dir(tmp.path().join("extract_files")).unwrap().count(), 2);
}

#[test]
fn off_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = SensorConfig { uid_seed: Some(1), ..SensorConfig::default() };
    let recs = run("http", &cfg, tmp.path());
    assert!(recs.iter().all(|r| r.get("extracted").is_none() && r.get("extracted_cutoff").is_none()));
    assert!(!tmp.path().join("extract_files").exists());
}
