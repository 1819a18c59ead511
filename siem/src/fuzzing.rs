//! The input of the `query` fuzz target, shared with the tests that run it
//! over the seeds: a search as a user types it, parsed, checked against the
//! bounds, and run on a Tantivy store holding one record (the translation,
//! the scorers and the aggregations a search builds).

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
}
