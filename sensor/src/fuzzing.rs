//! The input format of the `packets` fuzz target, shared with the tests that
//! replay the inputs the fuzzer once found crashing.

use crate::decode::LinkType;
use crate::worker::{Worker, WorkerConfig};
use schema::Time;

const LINKS: [i32; 11] = [1, 0, 9, 50, 104, 101, 108, 113, 276, 228, 229];

/// Feeds one fuzz input through decoding, reassembly, tunnels, the flow table
/// and the analyzers: a byte choosing the link type (its top bit turns
/// checksum verification on), then records of `[len: u16 le][delta_ms: u8]
/// [bytes]`. Caps are small so that eviction paths run too.
pub fn run_packets(data: &[u8]) {
    let Some((&sel, mut rest)) = data.split_first() else { return };
    let lt = LinkType::from_dlt(LINKS[usize::from(sel) % LINKS.len()]);
    let mut cfg = WorkerConfig::default();
    cfg.flow.max_flows = 8;
    cfg.frag.max_datagrams = 4;
    cfg.max_ip_tunnels = 4;
    cfg.verify_checksums = sel & 0x80 != 0;
    let mut w = Worker::new(cfg);
    let mut out = Vec::new();
    let mut ts = Time(1_700_000_000_000_000);
    while rest.len() >= 3 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        ts = Time(ts.0 + i64::from(rest[2]) * 997_000);
        rest = &rest[3..];
        let n = len.min(rest.len());
        w.process(ts, lt, &rest[..n], &mut out);
        w.tick(ts, &mut out);
        rest = &rest[n..];
        out.clear();
    }
    w.finish(&mut out);
}
