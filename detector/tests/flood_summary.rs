//! A flood's summary counts what made that flood: the sources of the
//! half-open attempts, not every client the host served in the same bucket
//! (a busy web server under a SYN flood from a few hosts).

use detector::models::{Models, ModelsConfig};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::Path;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

#[test]
fn a_syn_flood_names_its_own_sources() {
    let text = "[flood]\nid = \"model:flood\"\ntitle = \"flood\"\nlevel = \"high\"\n";
    let (cfg, errs) = ModelsConfig::parse(text, Path::new("models.toml"), &HashMap::new());
    assert!(errs.is_empty(), "{errs:?}");
    let mut m = Models::new(cfg);
    let mut out = Vec::new();
    let conn = |i: u32, src: String, port: u16, state: &str, ob: u64| {
        obj(json!({"ts": 1_700_000_000.0 + f64::from(i % 1000) / 200.0, "uid": format!("C{i}"),
            "id.orig_h": src, "id.orig_p": 40000 + i % 20000, "id.resp_h": "10.30.0.80", "id.resp_p": port,
            "proto": "tcp", "conn_state": state, "history": if ob > 0 { "ShADadFf" } else { "S" },
            "orig_pkts": 1, "orig_bytes": ob, "resp_bytes": 0}))
    };
    // 400 half-open attempts from three hosts, 664 ordinary visitors.
    for i in 0..400 {
        m.observe("conn", &conn(i, format!("198.51.100.{}", i % 3), 443, "S0", 0), "s", &mut out);
    }
    for i in 0..664 {
        m.observe("conn", &conn(1000 + i, format!("10.{}.{}.9", 40 + i / 200, i % 200), 80, "SF", 300), "s", &mut out);
    }
    m.flush("s", &mut out);
    let syn: Vec<_> = out.iter().filter(|a| a.matched.iter().any(|x| x == "kind=syn_flood")).collect();
    assert_eq!(syn.len(), 1, "{out:?}");
    let summary = serde_json::to_value(syn[0]).unwrap()["summary"].as_str().unwrap().to_string();
    assert!(summary.contains("400 half-open connection attempts"), "{summary}");
    assert!(summary.contains("from 3 sources"), "{summary}");
    assert!(syn[0].matched.contains(&"sources=3".to_string()), "{:?}", syn[0].matched);
}
