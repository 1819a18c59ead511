//! The inputs of the `query` and `ingest` fuzz targets, shared with the
//! tests that run them over their seeds: a search as a user types it,
//! parsed, checked against the bounds, and run on a Tantivy store holding
//! one record (the translation, the scorers and the aggregations a search
//! builds); an ingest body as a sender posts it, decoded, parsed into
//! records and stored.

use crate::query::{check_size, parse, size, MAX_DEPTH, MAX_NODES};
use crate::schema::Catalog;
use crate::store::tantivy::{TantivyConfig, TantivyStore};
use crate::store::{Agg, Record, SearchRequest, Store};
use std::sync::OnceLock;

fn store() -> Option<&'static (TantivyStore, Catalog)> {
    static STORE: OnceLock<Option<(TantivyStore, Catalog)>> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("citysoc-fuzz-query-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let store = TantivyStore::open(&dir, TantivyConfig { writer_heap_mb: 16 }).ok()?;
            let catalog = Catalog::new();
            let fields = serde_json::json!({"ts": 1.7e9, "uid": "CHhAvVGS1DHFjwGM9", "id.orig_h": "10.1.2.3",
                "id.resp_h": "192.0.2.7", "id.resp_p": 80, "proto": "tcp", "service": "http", "duration": 1.5});
            let r = Record::validate(&catalog, "conn", "s1", fields.as_object()?.clone()).ok()?;
            store.ingest(&[r]).ok()?;
            Some((store, catalog))
        })
        .as_ref()
}

/// Parses one input as a query; what parses is within the bounds and runs
/// as a search and an aggregation without panicking (an error naming what
/// is wrong is fine).
pub fn run_query(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Some((store, catalog)) = store() else { return };
    let Ok(q) = parse(text, catalog) else { return };
    let (nodes, depth) = size(&q);
    assert!(nodes <= MAX_NODES && depth <= MAX_DEPTH, "{nodes} nodes, {depth} deep: {text:?}");
    assert!(check_size(&q).is_ok());
    let mut req = SearchRequest::new(q.clone());
    req.limit = 1;
    let _ = store.search(&req);
    let _ = store.aggregate(&q, None, None, &Agg::Cardinality { field: "uid".into() });
}

/// Content encodings an ingest body is sent with; the first input byte
/// picks one.
const ENCODINGS: [&str; 5] = ["", "gzip", "deflate", "zstd", "x-unknown"];

/// Reads one input as an ingest request: the first byte picks the content
/// encoding, the rest is the body. Whatever decodes and parses is stored
/// and found again by its log; nothing may panic or grow past the body
/// limit.
pub fn run_ingest(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else { return };
    let Some((store, catalog)) = store() else { return };
    let mut headers = axum::http::HeaderMap::new();
    let encoding = ENCODINGS[usize::from(pick) % ENCODINGS.len()];
    if !encoding.is_empty() {
        headers.insert(axum::http::header::CONTENT_ENCODING, axum::http::HeaderValue::from_static(encoding));
    }
    let Ok(raw) = crate::api::decode_body(&headers, axum::body::Bytes::copy_from_slice(body)) else { return };
    assert!(raw.len() <= crate::api::MAX_BODY_BYTES);
    let Ok(text) = std::str::from_utf8(&raw) else { return };
    let (good, bad) = crate::api::parse_lines(catalog, text, "fuzz", Some("conn"));
    assert!(good.len() + bad.len() <= text.lines().count());
    if good.is_empty() {
        return;
    }
    let _ = store.ingest(&good);
}

#[cfg(test)]
mod tests {
    /// The seeds of the fuzz target (`fuzz/seed-corpus.py` writes the same
    /// lines), and inputs the bounds exist for.
    #[test]
    fn seeds_and_hostile_inputs_run() {
        for line in include_str!("../../fuzz/query-seeds.txt").lines() {
            super::run_query(line.as_bytes());
        }
        for hostile in [
            "NOT ".repeat(250) + "uid:x",
            "(".repeat(3000),
            "-(".repeat(1000),
            "a ".repeat(2000),
            "10.0.0.1 ".repeat(400),
            "query:".to_string() + &"*?".repeat(1000),
            "query:".to_string() + &"*?".repeat(4),
            "query:".to_string() + &"a*".repeat(8),
            "query:".to_string() + &"?".repeat(8),
            "query:*".to_string() + &"a".repeat(62) + "*",
            "query:*".to_string() + &"ab?".repeat(6) + &"a".repeat(45) + "*",
            "query:".to_string() + &"*ab?".repeat(4) + &"x".repeat(48),
            "query:".to_string() + &"*?".repeat(4) + &"x".repeat(56),
            "query:".to_string() + &"*".repeat(8) + &"x".repeat(56),
            "query:".to_string() + &"?".repeat(8) + &"x".repeat(56),
            "query:".to_string() + &"x?".repeat(8) + "*" + &"x".repeat(47),
            "\"".to_string() + &"x ".repeat(2000) + "\"",
        ] {
            super::run_query(hostile.as_bytes());
        }
    }

    /// The shapes a sender gets wrong: broken JSON, wrong types, unknown
    /// fields, huge numbers, a compressed body cut short, a bomb.
    #[test]
    fn hostile_ingest_bodies_run() {
        use std::io::Write;
        let lines = [
            r#"{"ts":1.7e9,"uid":"C1","id.orig_h":"10.0.0.1","custom":{"a":[1,2]}}"#,
            r#"{"_log":"dns","ts":1e308,"query":"x","rcode":-1}"#,
            r#"{"_log":"nosuch","ts":1}"#,
            r#"{"ts":"yesterday"}"#,
            "[1,2,3]",
            r#"{"ts":1.7e9,"uid":"\u0000"}"#,
            "{",
        ];
        for l in lines {
            super::run_ingest(&[0].iter().chain(l.as_bytes()).copied().collect::<Vec<_>>());
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&vec![b'a'; 40 << 20]).unwrap();
        let bomb = gz.finish().unwrap();
        super::run_ingest(&[1].iter().chain(&bomb).copied().collect::<Vec<_>>());
        super::run_ingest(&[1].iter().chain(&bomb[..bomb.len() / 2]).copied().collect::<Vec<_>>());
        super::run_ingest(&[3, 0x28, 0xb5, 0x2f, 0xfd, 0xff]);
    }
}
