//! No input may panic the sensor: every prefix of every bundled packet, and
//! deterministic corruptions of each, go through decoding and the flow table.
//! (The coverage-guided fuzz target in `fuzz/` explores further.)

use schema::Time;
use sensor::capture::{Next, Source, SourceSpec};
use sensor::decode::LinkType;
use sensor::worker::{Worker, WorkerConfig};
use std::path::Path;

fn packets(path: &Path) -> (LinkType, Vec<Vec<u8>>) {
    let mut src = Source::open(&SourceSpec::File(path.to_path_buf())).unwrap();
    let lt = src.linktype();
    let mut v = Vec::new();
    while let Next::Packet { data, .. } = src.next_packet().unwrap() {
        v.push(data.to_vec());
    }
    (lt, v)
}

fn small_worker() -> Worker {
    let mut cfg = WorkerConfig::default();
    cfg.flow.max_flows = 16;
    cfg.frag.max_datagrams = 4;
    cfg.max_ip_tunnels = 4;
    Worker::new(cfg)
}

#[test]
fn prefixes_and_corruptions_never_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("replay-pcaps");
    let mut fed = 0u64;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for entry in std::fs::read_dir(root).unwrap() {
        let cap = entry.unwrap().path().join("capture.pcap");
        if !cap.exists() {
            continue;
        }
        let (lt, pkts) = packets(&cap);
        for verify in [false, true] {
            let mut w = small_worker();
            let mut out = Vec::new();
            let mut ts = Time(1_700_000_000_000_000);
            for p in &pkts {
                for n in 0..=p.len() {
                    ts = Time(ts.0 + 1);
                    w.process(ts, lt, &p[..n], &mut out);
                    fed += 1;
                }
                for _ in 0..32 {
                    let mut q = p.clone();
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    if q.is_empty() {
                        break;
                    }
                    let i = (seed as usize) % q.len();
                    q[i] ^= (seed >> 32) as u8 | 1;
                    if verify {
                        // Also corrupt a length-bearing header byte.
                        let j = ((seed >> 16) as usize) % q.len().min(64);
                        q[j] = (seed >> 40) as u8;
                    }
                    w.process(ts, lt, &q, &mut out);
                    fed += 1;
                }
                out.clear();
            }
            w.tick(Time(ts.0 + 3_600_000_000), &mut out);
            w.finish(&mut out);
            let c = w.counters();
            assert_eq!(c.flows_active, 0);
            assert_eq!(c.flows_created, c.flows_expired + c.flows_evicted + c.flows_flushed);
        }
    }
    assert!(fed > 10_000, "only {fed} inputs");
}

/// Inputs the fuzzer once found crashing stay fixed.
#[test]
fn fuzz_regressions_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/packets");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        sensor::fuzzing::run_packets(&data);
        n += 1;
    }
    assert!(n > 0);
}
