//! The models' state is bounded: a flood of distinct sources, clients and
//! devices fills each model to its cap and no further, in entries and in
//! heap bytes.

use detector::models::{Models, ModelsConfig};
use serde_json::{json, Map, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const CAP: usize = 2_000;

fn config() -> ModelsConfig {
    let head = |m: &str| format!("[{m}]\nid = \"model:{m}\"\ntitle = \"{m}\"\nlevel = \"low\"\n");
    let text = format!(
        "{}max_sources = {CAP}\n{}max_hosts = {CAP}\n{}max_pairs = {CAP}\n{}max_keys = {CAP}\n{}max_keys = {CAP}\n{}device_nets = [\"10.0.0.0/8\"]\nmax_devices = {CAP}\n",
        head("scan"),
        head("flood"),
        head("beacon"),
        head("dns"),
        head("brute"),
        head("iot")
    );
    let (cfg, errs) = ModelsConfig::parse(&text, Path::new("models.toml"), &HashMap::new());
    assert!(errs.is_empty(), "{errs:?}");
    cfg
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// One second of record time per 1000 records; every record from a new
/// source to a new destination, within one window.
fn feed(m: &mut Models, from: u32, to: u32) {
    let mut out = Vec::new();
    for i in from..to {
        let ts = 1_700_000_000.0 + f64::from(i % 200) / 1000.0;
        let src = format!("10.{}.{}.{}", i >> 16 & 0xff, i >> 8 & 0xff, i & 0xff);
        let dst = format!("203.0.{}.{}", i >> 8 & 0xff, i & 0xff);
        let conn = obj(json!({"ts": ts, "uid": "C1", "id.orig_h": src, "id.orig_p": 40000, "id.resp_h": dst,
            "id.resp_p": 443, "proto": "tcp", "conn_state": "S0", "history": "S", "orig_pkts": 1,
            "orig_bytes": 0, "resp_bytes": 0, "local_resp": false}));
        m.observe("conn", &conn, "s", &mut out);
        let dns = obj(json!({"ts": ts, "uid": "C2", "id.orig_h": src, "id.resp_h": "10.0.0.53",
            "query": format!("x{i}.d{i}.example.com"), "qtype_name": "TXT", "rcode_name": "NXDOMAIN",
            "answers": [dst]}));
        m.observe("dns", &dns, "s", &mut out);
        let ssh = obj(json!({"ts": ts, "uid": "C3", "id.orig_h": src, "id.resp_h": dst, "id.resp_p": 22,
            "auth_success": false, "auth_attempts": 1}));
        m.observe("ssh", &ssh, "s", &mut out);
    }
}

#[test]
fn a_flood_of_distinct_sources_stays_within_the_caps() {
    let mut m = Models::new(config());
    feed(&mut m, 0, 10_000);
    let after_cap = LIVE.load(Ordering::Relaxed);
    for (name, n) in m.state_sizes() {
        // Windows overlap by half: a key lives in two of them at once;
        // the beacon's names map has its own fixed cap.
        assert!(n <= 2 * CAP + 100_000, "{name}: {n}");
    }
    feed(&mut m, 10_000, 100_000);
    let after_flood = LIVE.load(Ordering::Relaxed);
    for (name, n) in m.state_sizes() {
        // Each map has the cap: DNS keeps two (tunnels, NXDOMAIN), floods
        // windows and baselines, the beacon its pairs and a names map of a
        // fixed 100 000.
        let cap = match name {
            "beacon" => CAP + 100_000,
            "dns" | "flood" => 2 * CAP,
            _ => CAP,
        };
        assert!(n <= cap, "{name}: {n} entries, cap {cap}");
    }
    assert!(m.counters.state_full > 50_000, "{:?}", m.counters);
    // Ten times the sources, and the heap did not grow past a small
    // margin (the beacon's names map fills up to its own cap).
    let grew = after_flood - after_cap;
    assert!(grew < 16 << 20, "heap grew by {grew} bytes after the caps were reached");
}
