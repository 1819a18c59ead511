//! The payload tap: later stages see each analyzed TCP stream in order,
//! whole, with gaps marked, from every worker.

use citysoc::sensor_setup::SensorConfig;
use sensor::proto::stream::Chunk;
use sensor::proto::tap::{PayloadTap, StreamChunk, TapFactory};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

type Streams = Arc<Mutex<BTreeMap<(String, bool), Vec<u8>>>>;

struct Collect(Streams);

impl PayloadTap for Collect {
    fn stream(&mut self, c: &StreamChunk<'_>, _out: &mut Vec<schema::Event>) {
        let mut m = self.0.lock().unwrap();
        let s = m.entry((c.uid.render('C'), c.is_orig)).or_default();
        match c.chunk {
            Chunk::Data(d) => s.extend_from_slice(d),
            Chunk::Gap(n) => s.extend(std::iter::repeat_n(b'?', n as usize)),
        }
    }
}

fn run(case: &str, workers: usize) -> (Streams, Vec<serde_json::Value>) {
    let streams: Streams = Arc::default();
    let cfg = SensorConfig { uid_seed: Some(1), workers, ..SensorConfig::default() };
    let mut pcfg = cfg.pipeline();
    let s2 = streams.clone();
    pcfg.worker.flow.tap = Some(TapFactory(Arc::new(move || Box::new(Collect(s2.clone())))));
    let dir = tempfile::tempdir().unwrap();
    let cap = Path::new(env!("CARGO_MANIFEST_DIR")).join("replay-pcaps").join(case).join("capture.pcap");
    let sink = cfg.log_writer(dir.path()).unwrap();
    sensor::pipeline::run(&sensor::capture::SourceSpec::File(cap), &pcfg, sink, Default::default(), Default::default())
        .unwrap();
    let http = std::fs::read_to_string(dir.path().join("http.log")).unwrap_or_default();
    (streams, http.lines().map(|l| serde_json::from_str(l).unwrap()).collect())
}

#[test]
fn every_http_request_is_in_its_stream() {
    for workers in [1, 2] {
        let (streams, http) = run("http", workers);
        let streams = streams.lock().unwrap();
        assert!(!http.is_empty());
        for r in &http {
            let uid = r["uid"].as_str().unwrap().to_string();
            let orig = streams.get(&(uid.clone(), true)).unwrap_or_else(|| panic!("no stream for {uid}"));
            let line = format!("{} {}", r["method"].as_str().unwrap(), r["uri"].as_str().unwrap());
            assert!(orig.windows(line.len()).any(|w| w == line.as_bytes()), "{line} not in {uid}");
        }
    }
}

#[test]
fn a_content_gap_is_marked() {
    let (streams, _) = run("tcp-retransmit-gap", 1);
    let streams = streams.lock().unwrap();
    let all: Vec<&Vec<u8>> = streams.values().collect();
    assert!(all.iter().any(|s| s.contains(&b'?')), "no gap marked");
}
