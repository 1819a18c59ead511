//! One suite, every backend: the same records, the same queries, the same
//! answers from Tantivy and from a real ClickHouse server started here on
//! a free loopback port with a temporary data directory.

use serde_json::{json, Value};
use siem::query::{parse, Query};
use siem::retention::{self, Policy, Reason};
use siem::schema::Catalog;
use siem::store::clickhouse::{ClickHouseConfig, ClickHouseStore, Cluster};
use siem::store::tantivy::{TantivyConfig, TantivyStore};
use siem::store::{Agg, AggResult, Class, Record, SearchRequest, Sort, Store};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A ClickHouse server for one test, stopped when dropped.
struct ClickHouse {
    child: Child,
    http_port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl ClickHouse {
    fn start() -> ClickHouse {
        ClickHouse::start_with(free_port(), None)
    }

    /// A server whose native port is `tcp`; `extra` is a `config.d` file
    /// (the package's config and users copied beside it).
    fn start_with(tcp: u16, extra: Option<&str>) -> ClickHouse {
        let bin = ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("clickhouse-server is not installed (scripts/install-deps installs it)");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (http, inter) = (free_port(), free_port());
        let arg = |k: &str, v: String| format!("--{k}={v}");
        let config = match extra {
            None => "/etc/clickhouse-server/config.xml".to_string(),
            Some(xml) => {
                let conf = d.join("conf");
                std::fs::create_dir_all(conf.join("config.d")).unwrap();
                for f in ["config.xml", "users.xml"] {
                    std::fs::copy(Path::new("/etc/clickhouse-server").join(f), conf.join(f)).unwrap();
                }
                std::fs::write(conf.join("config.d/extra.xml"), xml).unwrap();
                conf.join("config.xml").display().to_string()
            }
        };
        let child = Command::new(bin)
            .arg(format!("--config-file={config}"))
            .arg("--")
            .arg(arg("path", format!("{}/data/", d.display())))
            .arg(arg("tmp_path", format!("{}/tmp/", d.display())))
            .arg(arg("user_files_path", format!("{}/uf/", d.display())))
            .arg(arg("format_schema_path", format!("{}/fs/", d.display())))
            .arg(arg("http_port", http.to_string()))
            .arg(arg("tcp_port", tcp.to_string()))
            .arg(arg("interserver_http_port", inter.to_string()))
            .arg("--listen_host=127.0.0.1")
            .arg(arg("logger.log", format!("{}/server.log", d.display())))
            .arg(arg("logger.errorlog", format!("{}/server.err.log", d.display())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("clickhouse-server starts");
        let ch = ClickHouse { child, http_port: http, _dir: dir };
        let start = Instant::now();
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", http)) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET /ping HTTP/1.0\r\n\r\n");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.contains("Ok.") {
                    break;
                }
            }
            assert!(start.elapsed() < Duration::from_secs(30), "clickhouse-server did not answer /ping");
            std::thread::sleep(Duration::from_millis(100));
        }
        ch
    }

    fn store(&self, db: &str) -> ClickHouseStore {
        ClickHouseStore::open(&ClickHouseConfig {
            url: format!("http://127.0.0.1:{}", self.http_port),
            database: db.into(),
            user: None,
            password: None,
            cluster: None,
            compression: Default::default(),
        })
        .unwrap()
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

const DAY1: f64 = 1_700_000_000.0; // 2023-11-14
const DAY2: f64 = DAY1 + 86_400.0;
const DAY3: f64 = DAY1 + 2.0 * 86_400.0;

fn rec(log: &str, v: Value) -> Record {
    Record::validate(&Catalog::new(), log, "s1", v.as_object().unwrap().clone()).unwrap()
}

fn records() -> Vec<Record> {
    let mut out = Vec::new();
    for i in 0..30u64 {
        let day = [DAY1, DAY2, DAY3][(i % 3) as usize];
        let port = [80, 443, 502][(i % 3) as usize];
        out.push(rec(
            "conn",
            json!({
                "ts": day + i as f64 * 10.0 + 0.5,
                "uid": format!("C{i}"),
                "id.orig_h": format!("10.1.{}.{}", i % 4, i),
                "id.orig_p": 40000 + i,
                "id.resp_h": if i % 5 == 0 { "2001:db8::80".to_string() } else { format!("10.2.0.{}", i % 7) },
                "id.resp_p": port,
                "proto": "tcp",
                "conn_state": if i % 2 == 0 { "SF" } else { "REJ" },
                "orig_bytes": i * 100,
                "local_orig": i % 4 != 0,
                "tunnel_parents": if i % 6 == 0 { json!(["CT1", "CT2"]) } else { json!([]) },
            }),
        ));
    }
    out.push(rec("dns", json!({"ts": DAY1 + 5.0, "uid": "CD1", "id.orig_h": "10.1.0.9", "query": "cam-7.duckdns.org", "answers": ["203.0.113.5", "cam-7.duckdns.org"], "qtype_name": "A"})));
    out.push(rec("dns", json!({"ts": DAY2 + 5.0, "uid": "CD2", "id.orig_h": "10.1.0.9", "query": "portal.city.example", "answers": ["10.3.0.80"], "qtype_name": "AAAA"})));
    out.push(rec("http", json!({"ts": DAY2 + 7.0, "uid": "CH1", "id.orig_h": "203.0.113.50", "host": "portal.city.example", "uri": "/news.php?id=1%27%20OR%20%271%27=%271", "user_agent": "sqlmap/1.7 (Evil Corp)", "status_code": 500, "method": "GET"})));
    out.push(rec("http", json!({"ts": DAY3 + 7.0, "uid": "CH2", "id.orig_h": "10.1.0.20", "host": "portal.city.example", "uri": "/index.html", "user_agent": "Mozilla/5.0", "status_code": 200, "method": "GET"})));
    out.push(rec(
        "ssh",
        json!({"ts": DAY3 + 9.0, "uid": "CS1", "id.orig_h": "198.51.100.90", "version": 2, "auth_success": false}),
    ));
    out.push(rec("ssl", json!({"ts": DAY3 + 9.5, "uid": "CT9", "version": "TLSv13", "server_name": "cdn.example"})));
    out
}

fn uids(hits: &[Value]) -> Vec<String> {
    hits.iter().map(|h| h["uid"].as_str().unwrap_or("?").to_string()).collect()
}

fn q(s: &str) -> Query {
    parse(s, &Catalog::new()).unwrap()
}

/// (query, expected count) over the whole range; both backends must give
/// these counts and the same records in the same order.
const QUERIES: &[(&str, u64)] = &[
    ("", 36),
    ("_log:conn", 30),
    ("_log:dns OR _log:http", 4),
    ("conn_state:REJ", 15),
    ("id.resp_p:502", 10),
    ("id.resp_p:[80 TO 443]", 20),
    ("id.resp_p:{80 TO 502}", 10),
    ("orig_bytes:>=2500", 5),
    ("orig_bytes:<300", 3),
    ("id.orig_h:10.1.0.0/24", 11),
    ("id.orig_h:10.1.2.4", 0),
    ("id.orig_h:10.1.2.2", 1),
    ("id.orig_h:203.0.113.*", 1),
    ("id.orig_h:10.1.?.2*", 12),
    ("id.resp_h:2001:db8::/32", 6),
    ("id.resp_h:\"2001:db8::80\"", 6),
    ("local_orig:false", 8),
    ("tunnel_parents:CT2", 5),
    ("tunnel_parents:*", 5),
    ("answers:203.0.113.5", 1),
    ("query:*.duckdns.org", 1),
    ("query:portal.city.?xample", 1),
    ("uri:*\\%27*", 1),
    ("user_agent:*sqlmap*", 1),
    ("duckdns", 1),
    ("\"evil corp\"", 1),
    ("portal", 3),
    // Addresses and identifiers are matched whole; an address inside text
    // (a DNS answer) still by its words.
    ("10.1.0.9", 2),
    ("\"203.0.113.5\"", 1),
    ("CH1", 1),
    ("ct2", 0),
    ("CT2", 5),
    ("NOT _log:conn", 6),
    ("-_log:conn -_log:dns", 4),
    ("_log:conn AND NOT conn_state:SF AND id.resp_p:443", 5),
    ("status_code:500 OR (_log:ssh auth_success:false)", 2),
    ("version:2", 1),
    ("version:TLSv13", 1),
    ("uid:*", 36),
    ("query:*", 2),
    // Searched, never executed: as free text (punctuation alone is
    // refused by the parser, so the words are quoted) and as a value.
    ("\"'); DROP TABLE events; --\"", 0),
    ("uri:\"'; DROP TABLE events; --\"", 0),
];

fn run_suite(store: &dyn Store) {
    store.ingest(&records()).unwrap();
    // Idempotent reads: query forms.
    let mut pages = Vec::new();
    for (text, want) in QUERIES {
        let mut req = SearchRequest::new(q(text));
        req.limit = 50;
        let r = store.search(&req).unwrap();
        assert_eq!(r.total, *want, "{}: {text}", store.name());
        assert_eq!(r.hits.len() as u64, (*want).min(50), "{}: {text}", store.name());
        pages.push(uids(&r.hits));
    }
    // The largest and deepest queries the language admits run on every
    // store: each translation stays within what its backend takes
    // (ClickHouse repeats the condition per log's table).
    let ips: Vec<String> = (0..60).map(|i| format!("10.1.{}.{}", i % 4, i)).collect();
    let mut widest = String::new();
    for ip in &ips {
        let more = if widest.is_empty() { ip.clone() } else { format!("{widest} OR {ip}") };
        if parse(&more, &Catalog::new()).is_err() {
            break;
        }
        widest = more;
    }
    let (nodes, _) = siem::query::size(&q(&widest));
    assert!(nodes > siem::query::MAX_NODES - 20, "{nodes}");
    let deepest = format!("{}uid:C1{}", "NOT (".repeat(15), ")".repeat(15));
    let wild: Vec<String> =
        (0..siem::query::MAX_WILDCARDS).map(|i| format!("query:*{}*", "a".repeat(60 - i))).collect();
    for text in [widest.as_str(), deepest.as_str(), &wild.join(" OR ")] {
        let r = store.search(&SearchRequest::new(q(text)));
        assert!(r.is_ok(), "{}: {:?}", store.name(), r.err());
        let r = store.aggregate(&q(text), None, None, &Agg::terms("uid", 10));
        assert!(r.is_ok(), "{}: {:?}", store.name(), r.err());
    }
    // Time range, sort, pagination.
    let mut req = SearchRequest::new(q("_log:conn"));
    req.from = Some(DAY2);
    req.to = Some(DAY3);
    req.limit = 4;
    req.offset = 2;
    req.sort = Sort { field: "orig_bytes".into(), descending: false };
    let r = store.search(&req).unwrap();
    assert_eq!(r.total, 10, "{}", store.name());
    assert_eq!(uids(&r.hits), ["C7", "C10", "C13", "C16"], "{}", store.name());
    let mut req = SearchRequest::new(Query::All);
    req.limit = 3;
    let r = store.search(&req).unwrap();
    assert_eq!(uids(&r.hits), ["C29", "C26", "C23"], "{}: newest first", store.name());
    assert_eq!(r.hits[0]["_log"], "conn");
    assert_eq!(r.hits[0]["_sensor"], "s1");
    let ssh = store.search(&SearchRequest::new(q("_log:ssh"))).unwrap();
    assert_eq!(
        ssh.hits[0],
        json!({"ts": DAY3 + 9.0, "uid": "CS1", "id.orig_h": "198.51.100.90", "version": 2,
        "auth_success": false, "_log": "ssh", "_sensor": "s1"}),
        "records come back as sent"
    );
    // Aggregations.
    let agg = |a: Agg, text: &str| store.aggregate(&q(text), None, None, &a).unwrap();
    let b = |v: &[(&str, u64)]| {
        AggResult::Buckets(
            v.iter().map(|(k, n)| siem::store::Bucket { key: k.to_string(), count: *n, sum: None }).collect(),
        )
    };
    assert_eq!(agg(Agg::terms("_log", 3), ""), b(&[("conn", 30), ("dns", 2), ("http", 2)]), "{}", store.name());
    assert_eq!(
        agg(Agg::terms("id.resp_h", 2), "_log:conn"),
        b(&[("2001:db8::80", 6), ("10.2.0.0", 4)]),
        "{}",
        store.name()
    );
    assert_eq!(
        agg(Agg::terms("id.resp_p", 5), "conn_state:SF"),
        b(&[("443", 5), ("502", 5), ("80", 5)]),
        "{}",
        store.name()
    );
    assert_eq!(agg(Agg::terms("local_orig", 5), ""), b(&[("true", 22), ("false", 8)]), "{}", store.name());
    assert_eq!(agg(Agg::terms("tunnel_parents", 5), ""), b(&[("CT1", 5), ("CT2", 5)]), "{}", store.name());
    let Ok(AggResult::Histogram { interval_secs, requested_interval_secs, buckets }) =
        store.aggregate(&q("_log:conn"), None, None, &Agg::Histogram { interval_secs: 86_400.0 })
    else {
        panic!("{}: a histogram", store.name())
    };
    assert_eq!((interval_secs, requested_interval_secs), (86_400.0, 86_400.0), "{}", store.name());
    assert_eq!(
        AggResult::Buckets(buckets),
        b(&[("1699920000", 10), ("1700006400", 10), ("1700092800", 10)]),
        "{}",
        store.name()
    );
    assert_eq!(
        agg(Agg::Stats { field: "orig_bytes".into() }, "conn_state:SF"),
        AggResult::Stats { count: 15, sum: 21000.0, avg: Some(1400.0), min: Some(0.0), max: Some(2800.0) },
        "{}",
        store.name()
    );
    // Terms by a sum of count fields: logs without them total 0.
    let sum = vec!["orig_bytes".to_string()];
    let by = agg(Agg::Terms { field: "_log".into(), size: 2, sum }, "").buckets();
    let AggResult::Stats { sum: conn_bytes, .. } = agg(Agg::Stats { field: "orig_bytes".into() }, "_log:conn") else {
        panic!("stats")
    };
    assert_eq!(by[0].key, "conn", "{}", store.name());
    assert_eq!(by[0].sum, Some(conn_bytes as u64), "{}", store.name());
    assert_eq!((by[1].key.as_str(), by[1].sum), ("dns", Some(0)), "{}: most frequent after", store.name());
    // Distinct counts are exact on every store, and say so.
    assert_eq!(
        agg(Agg::Cardinality { field: "id.resp_h".into() }, ""),
        AggResult::Value { value: 8, approximate: false, relative_error: 0.0 },
        "{}",
        store.name()
    );
    assert_eq!(
        agg(Agg::Cardinality { field: "uid".into() }, "_log:conn"),
        AggResult::Value { value: 30, approximate: false, relative_error: 0.0 },
        "{}",
        store.name()
    );
    assert_eq!(
        agg(Agg::Stats { field: "orig_bytes".into() }, "_log:dns"),
        AggResult::Stats { count: 0, sum: 0.0, avg: None, min: None, max: None },
        "{}",
        store.name()
    );
    // Partitions (one per class and day), deletion, retention.
    let parts = store.partitions().unwrap();
    let keys: Vec<(Class, &str)> = parts.iter().map(|p| (p.class, p.day.as_str())).collect();
    let days = ["2023-11-14", "2023-11-15", "2023-11-16"];
    let want: Vec<(Class, &str)> =
        [Class::Records, Class::Flows].into_iter().flat_map(|c| days.map(|d| (c, d))).collect();
    assert_eq!(keys, want, "{}", store.name());
    assert_eq!(parts.iter().map(|p| p.records).sum::<u64>(), 36);
    assert!(parts.iter().all(|p| p.bytes > 0), "{}", store.name());
    assert_eq!(store.delete(&q("_log:http")).unwrap(), 2);
    assert_eq!(store.search(&SearchRequest::new(q("_log:http"))).unwrap().total, 0);
    // The 2023 days were written just now: retention ages them from then.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(parts.iter().all(|p| p.ingested.is_some_and(|t| (t - now).abs() < 600.0)), "{}: {parts:?}", store.name());
    // Flows kept a day: replayed history stays for a day from its ingest,
    // and goes after it.
    let mut policy = Policy(BTreeMap::new());
    policy.set_age("flows=1d").unwrap();
    assert_eq!(retention::enforce(store, &policy, now).unwrap(), [], "{}", store.name());
    let dropped = retention::enforce(store, &policy, now + 2.0 * 86_400.0).unwrap();
    // Days past their age go in the order they were written, which on a
    // cluster is the order its shards answered: the set is what matters.
    let mut got: Vec<(Class, &str, Reason)> = dropped.iter().map(|d| (d.class, d.day.as_str(), d.reason)).collect();
    got.sort_by_key(|g| (g.0, g.1));
    let mut flows: Vec<(Class, &str, Reason)> = days.iter().map(|d| (Class::Flows, *d, Reason::Age)).collect();
    flows.sort_by_key(|g| (g.0, g.1));
    assert_eq!(got, flows, "{}", store.name());
    assert_eq!(store.search(&SearchRequest::new(Query::All)).unwrap().total, 36 - 2 - 30, "{}", store.name());
    // A budget no day fits: all but the day written last of protocol
    // records go (written at once, they go by day).
    policy.set_budget("records=1B").unwrap();
    let dropped = retention::enforce(store, &policy, now).unwrap();
    assert_eq!(dropped.len(), 2, "{}: {dropped:?}", store.name());
    assert!(dropped.iter().all(|d| d.class == Class::Records && d.reason == Reason::Budget), "{dropped:?}");
    let gone: u64 = dropped.iter().map(|d| d.records).sum();
    let left = store.search(&SearchRequest::new(Query::All)).unwrap();
    assert_eq!(left.total, 36 - 2 - 30 - gone, "{}", store.name());
    assert_eq!(store.partitions().unwrap().len(), 1, "{}", store.name());
    assert!(!store.drop_partition(Class::Alerts, "2023-11-14").unwrap());
    // Invalid requests are errors, not panics.
    let mut bad = SearchRequest::new(Query::All);
    bad.sort = Sort { field: "uid".into(), descending: true };
    assert!(store.search(&bad).is_err());
    assert!(store.aggregate(&Query::All, None, None, &Agg::Stats { field: "uid".into() }).is_err());
    let _ = pages;
}

#[test]
fn tantivy_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = TantivyStore::open(dir.path(), TantivyConfig::default()).unwrap();
    run_suite(&store);
    // Reopening finds the days on disk, and when each was last written.
    drop(store);
    let store = TantivyStore::open(dir.path(), TantivyConfig::default()).unwrap();
    let parts = store.partitions().unwrap();
    assert_eq!(parts.len(), 1);
    assert!(parts[0].ingested.is_some(), "{parts:?}");
}

/// Every record names its batch: whether a batch is stored, and undoing
/// one stored whole or in part, work across its partitions with no window
/// of recent batches.
#[test]
fn tantivy_finds_and_undoes_a_batch_by_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = TantivyStore::open(dir.path(), TantivyConfig::default()).unwrap();
    let all = records();
    let total = || store.search(&SearchRequest::new(Query::All)).unwrap().total;
    store.ingest_batch(&all, Some("s1 b1")).unwrap();
    for i in 0..20 {
        store.ingest_batch(&all[..1], Some(&format!("s1 n{i}"))).unwrap();
    }
    assert!(store.batch_stored("s1", "b1").unwrap() && !store.batch_stored("s1", "b2").unwrap());
    assert_eq!(store.unstore_batch("s1 b1").unwrap(), 36);
    assert!(!store.batch_stored("s1", "b1").unwrap());
    assert_eq!(total(), 20);
    // Part of a batch (one day of it stored), undone and stored whole.
    let day1: Vec<Record> = all.iter().filter(|r| r.day() == "2023-11-14").cloned().collect();
    store.ingest_batch(&day1, Some("s1 b2")).unwrap();
    store.unstore_batch("s1 b2").unwrap();
    store.ingest_batch(&all, Some("s1 b2")).unwrap();
    assert_eq!(total(), 56);
    drop(store);
    let store = TantivyStore::open(dir.path(), TantivyConfig::default()).unwrap();
    assert!(store.batch_stored("s1", "b2").unwrap() && store.batch_stored("s1", "n0").unwrap());
}

#[test]
fn clickhouse_conforms() {
    let ch = ClickHouse::start();
    let store = ch.store("citysoc_test");
    run_suite(&store);
}

/// A batch retried after part of it was stored (the SIEM died between the
/// records and its ledger line, or one log's insert failed, or a cluster
/// insert reached one shard) ends up stored once.
fn retried_batches_are_stored_once(store: &ClickHouseStore) {
    let all = records();
    let total = || store.search(&SearchRequest::new(Query::All)).unwrap().total;
    store.ingest_batch(&all, Some("s1 b1")).unwrap();
    store.ingest_batch(&all, Some("s1 b1")).unwrap();
    assert_eq!(total(), 36, "the whole batch again");
    let conn: Vec<Record> = all.iter().filter(|r| r.log == "conn").cloned().collect();
    store.ingest_batch(&conn, Some("s1 b2")).unwrap();
    assert_eq!(total(), 36 + 30);
    store.ingest_batch(&all, Some("s1 b2")).unwrap();
    assert_eq!(total(), 72, "the logs that had not gone through");
    let day1: Vec<Record> = conn.iter().filter(|r| r.day() == "2023-11-14").cloned().collect();
    assert_eq!(day1.len(), 10);
    store.ingest_batch(&day1[..4], Some("s1 b3")).unwrap();
    store.ingest_batch(&all, Some("s1 b3")).unwrap();
    assert_eq!(total(), 108, "part of a log's day replaced whole");
    let c0 = store.search(&SearchRequest::new(q("uid:C0"))).unwrap();
    assert_eq!(c0.total, 3, "one copy per batch");
    // Another batch, or no batch id, is stored.
    store.ingest_batch(&all, Some("s2 b1")).unwrap();
    store.ingest(&all).unwrap();
    assert_eq!(total(), 180);
}

#[test]
fn clickhouse_stores_a_retried_batch_once() {
    let ch = ClickHouse::start();
    // Plain bytes on the wire here; the other tests use LZ4.
    let store = ClickHouseStore::open(&ClickHouseConfig {
        url: format!("http://127.0.0.1:{}", ch.http_port),
        database: "citysoc_retry".into(),
        compression: siem::store::clickhouse::Compression::None,
        ..Default::default()
    })
    .unwrap();
    retried_batches_are_stored_once(&store);
}

/// Two shards of a cluster on loopback, each a ClickHouse server of its own,
/// both knowing the cluster `citysoc_test`.
fn two_shards() -> (ClickHouse, ClickHouse) {
    let (tcp1, tcp2) = (free_port(), free_port());
    let xml = format!(
        "<yandex><remote_servers><citysoc_test>\
         <shard><replica><host>127.0.0.1</host><port>{tcp1}</port></replica></shard>\
         <shard><replica><host>127.0.0.1</host><port>{tcp2}</port></replica></shard>\
         </citysoc_test></remote_servers></yandex>"
    );
    (ClickHouse::start_with(tcp1, Some(&xml)), ClickHouse::start_with(tcp2, Some(&xml)))
}

fn cluster_store(a: &ClickHouse, b: &ClickHouse, db: &str) -> ClickHouseStore {
    let url = |c: &ClickHouse| format!("http://127.0.0.1:{}", c.http_port);
    ClickHouseStore::open(&ClickHouseConfig {
        url: url(a),
        database: db.into(),
        cluster: Some(Cluster { name: "citysoc_test".into(), nodes: vec![url(a), url(b)] }),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn a_two_shard_clickhouse_cluster_conforms() {
    let (a, b) = two_shards();
    // The rows are spread over both shards, each stored once.
    let store = cluster_store(&a, &b, "citysoc_spread");
    store.ingest(&records()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = |c: &ClickHouse| -> u64 {
        let client =
            clickhouse::Client::default().with_url(format!("http://127.0.0.1:{}", c.http_port)).with_validation(false);
        rt.block_on(
            client
                .query("SELECT sum(rows) FROM system.parts WHERE database = 'citysoc_spread' AND active AND endsWith(table, '_local') AND startsWith(table, 'events_')")
                .fetch_one::<u64>(),
        )
        .unwrap()
    };
    let (na, nb) = (local(&a), local(&b));
    assert!(na > 0 && nb > 0, "rows on one shard only: {na} + {nb}");
    assert_eq!(na + nb, records().len() as u64);
    // Partitions are summed over the shards.
    let parts: u64 = store.partitions().unwrap().iter().map(|p| p.records).sum();
    assert_eq!(parts, records().len() as u64);
    // The whole suite through the Distributed table, from the other node.
    run_suite(&cluster_store(&b, &a, "citysoc_cluster"));
    retried_batches_are_stored_once(&cluster_store(&a, &b, "citysoc_retry"));
}

#[test]
fn both_backends_return_the_same_pages() {
    let ch = ClickHouse::start();
    let c = ch.store("citysoc_same");
    let dir = tempfile::tempdir().unwrap();
    let t = TantivyStore::open(dir.path(), TantivyConfig::default()).unwrap();
    c.ingest(&records()).unwrap();
    t.ingest(&records()).unwrap();
    for (text, _) in QUERIES {
        for (sort, desc) in [("ts", true), ("ts", false), ("orig_bytes", true)] {
            let mut req = SearchRequest::new(q(text));
            req.sort = Sort { field: sort.into(), descending: desc };
            req.limit = 7;
            req.offset = 1;
            let (a, b) = (t.search(&req).unwrap(), c.search(&req).unwrap());
            assert_eq!(a.total, b.total, "{text}");
            assert_eq!(uids(&a.hits), uids(&b.hits), "{text} sorted by {sort} desc={desc}");
        }
    }
}

/// Records that share a time and a sort value: only their text tells them
/// apart, on both stores alike.
fn ties() -> Vec<Record> {
    let mut out = Vec::new();
    for i in 0..6u64 {
        out.push(rec(
            "conn",
            json!({"ts": DAY2 + 0.123456, "uid": format!("T{i}"), "orig_bytes": 700, "duration": 0.1 + (i % 2) as f64,
                   "proto": "udp"}),
        ));
    }
    for i in 0..4 {
        out.push(rec("dns", json!({"ts": DAY2 + 0.123456, "uid": format!("TD{i}"), "query": format!("t{i}.example")})));
    }
    out
}

/// A cursor pages through a whole result, however deep, in the same order
/// on both stores: every record once, as one big page has them.
#[test]
fn both_backends_page_alike_with_a_cursor() {
    let ch = ClickHouse::start();
    let c = ch.store("citysoc_cursor");
    let dir = tempfile::tempdir().unwrap();
    let t = TantivyStore::open(dir.path(), TantivyConfig::default()).unwrap();
    for s in [&c as &dyn Store, &t] {
        s.ingest(&records()).unwrap();
        s.ingest(&ties()).unwrap();
    }
    for text in ["", "_log:conn", "proto:udp OR _log:dns"] {
        for (sort, desc) in
            [("ts", true), ("ts", false), ("orig_bytes", true), ("orig_bytes", false), ("duration", true)]
        {
            let mut whole: Vec<Vec<String>> = Vec::new();
            for store in [&t as &dyn Store, &c] {
                let mut req = SearchRequest::new(q(text));
                req.sort = Sort { field: sort.into(), descending: desc };
                req.limit = 1000;
                let all = store.search(&req).unwrap();
                assert!(all.next.is_none(), "a page that is not full has no next");
                let mut paged = Vec::new();
                req.limit = 3;
                loop {
                    let r = store.search(&req).unwrap();
                    assert_eq!(r.total, all.total);
                    paged.extend(uids(&r.hits));
                    // Through its text form, as the API hands it out.
                    let Some(next) = r.next else { break };
                    req.after = Some(siem::store::Cursor::decode(&next.encode()).unwrap());
                    assert!(paged.len() <= all.hits.len(), "{text} by {sort}: paging does not end");
                }
                assert_eq!(paged, uids(&all.hits), "{}: {text} by {sort} desc={desc}", store.name());
                whole.push(paged);
            }
            assert_eq!(whole[0], whole[1], "{text} by {sort} desc={desc}: tantivy, clickhouse");
        }
    }
    // A cursor of another order is refused.
    let mut req = SearchRequest::new(Query::All);
    req.limit = 2;
    let next = t.search(&req).unwrap().next.unwrap();
    req.sort.descending = false;
    req.after = Some(next);
    for store in [&t as &dyn Store, &c] {
        assert!(store.search(&req).is_err());
    }
}

#[test]
fn clickhouse_refuses_a_table_that_disagrees_with_the_catalog() {
    let ch = ClickHouse::start();
    let url = format!("http://127.0.0.1:{}", ch.http_port);
    let client = clickhouse::Client::default().with_url(&url).with_validation(false);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        client.query("CREATE DATABASE drifted").execute().await.unwrap();
        client
            .query("CREATE TABLE drifted.events_dns (_day Date, _ts Float64) ENGINE = MergeTree() PARTITION BY _day ORDER BY _ts")
            .execute()
            .await
            .unwrap();
    });
    let err = ClickHouseStore::open(&ClickHouseConfig {
        url,
        database: "drifted".into(),
        user: None,
        password: None,
        cluster: None,
        compression: Default::default(),
    })
    .err()
    .expect("a drifted table is refused");
    assert!(err.to_string().contains("disagrees with the field catalog"), "{err}");
}

/// Two stateless ingest nodes (no data folder) in front of the cluster, each
/// talking to a different ClickHouse node: a batch one of them stored is a
/// duplicate at the other, and its records are stored once.
#[test]
fn ingest_nodes_in_front_of_a_cluster_share_the_batch_ledger() {
    use axum::body::{to_bytes, Body};
    use axum::http::Request;
    use siem::api::{hash_token, router, AppState, Tokens};
    use std::sync::Arc;
    use tower::ServiceExt;

    let (a, b) = two_shards();
    let node = |x: &ClickHouse, y: &ClickHouse| {
        let mut tokens = Tokens::default();
        tokens.sensors.insert("district-3".into(), hash_token("sensor-secret"));
        let store: Arc<dyn Store> = Arc::new(cluster_store(x, y, "citysoc_nodes"));
        router(Arc::new(AppState::new(Arc::clone(&store), Some(tokens), None, 2)))
    };
    let (n1, n2) = (node(&a, &b), node(&b, &a));
    let lines: String = (0..50)
        .map(|i| {
            format!("{{\"_log\":\"conn\",\"ts\":{},\"uid\":\"C{i}\",\"id.orig_h\":\"10.3.0.{i}\"}}\n", DAY1 + i as f64)
        })
        .collect();
    let post = |app: &axum::Router, id: &str| {
        let req = Request::post("/api/v1/ingest")
            .header("authorization", "Bearer sensor-secret")
            .header("x-batch-id", id)
            .body(Body::from(lines.clone()))
            .unwrap();
        let app = app.clone();
        async move {
            let resp = app.oneshot(req).await.unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
            serde_json::from_slice::<Value>(&to_bytes(resp.into_body(), 1 << 20).await.unwrap()).unwrap()
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let first = rt.block_on(post(&n1, "run9-1"));
    assert_eq!(first["accepted"], 50);
    let again = rt.block_on(post(&n2, "run9-1"));
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["accepted"], 0);
    let next = rt.block_on(post(&n2, "run9-2"));
    assert_eq!(next["accepted"], 50);
    let store = cluster_store(&a, &b, "citysoc_nodes");
    assert_eq!(store.search(&SearchRequest::new(q("_log:conn"))).unwrap().total, 100);
}

/// Batches ingested at once into one partition share commits; each is
/// searchable when its `ingest` returns, and none is lost.
#[test]
fn concurrent_batches_are_each_searchable_when_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(TantivyStore::open(dir.path(), TantivyConfig::default()).unwrap());
    let c = Catalog::new();
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let (store, c) = (std::sync::Arc::clone(&store), c.clone());
            std::thread::spawn(move || {
                for b in 0..5 {
                    let batch: Vec<Record> = (0..40)
                        .map(|i| {
                            let v = json!({"ts": DAY1 + i as f64, "uid": format!("T{t}B{b}R{i}"), "orig_bytes": t});
                            Record::validate(&c, "conn", "s", v.as_object().unwrap().clone()).unwrap()
                        })
                        .collect();
                    store.ingest(&batch).unwrap();
                    let mine = store.search(&SearchRequest::new(q(&format!("uid:T{t}B{b}R*")))).unwrap();
                    assert_eq!(mine.total, 40, "thread {t} batch {b} visible at its acknowledgement");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(store.search(&SearchRequest::new(Query::All)).unwrap().total, 8 * 5 * 40);
}

/// Flows stored in many small batches (a segment or part each), built so
/// that counting each segment's top values and merging them goes wrong:
/// in every batch 250 uids of one flow, 11 of two flows, and `CX` once;
/// over all batches `CX` is the most frequent uid and port 9 the most
/// frequent port, though never in any one batch. Batch `k` shares one
/// time, spread over 18 hours, so pages cut through ties everywhere.
fn exact_batches() -> Vec<Vec<Record>> {
    (0..12u64)
        .map(|k| {
            let ts = DAY1 + k as f64 * 5_890.0 + 0.25;
            let mut out = Vec::new();
            let mut flow = |uid: String, port: u64, bytes: u64| {
                out.push(rec(
                    "conn",
                    json!({"ts": ts, "uid": uid, "id.orig_h": format!("10.9.{k}.1"), "id.resp_p": port,
                           "orig_ip_bytes": bytes, "resp_ip_bytes": bytes / 2 + k, "proto": "tcp"}),
                ));
            };
            for j in 0..250 {
                flow(format!("C{k}s{j}"), 10_000 + k * 1000 + j, 100 + j);
            }
            for j in 0..11 {
                for _ in 0..2 {
                    flow(format!("C{k}d{j}"), 40_000 + k * 100 + j, 7 + k * 11 + j);
                }
            }
            flow("CX".into(), 9, 1);
            out
        })
        .collect()
}

/// The answers the records themselves give, counted here.
fn exact_truth(recs: &[Record], field: &str, sum: bool) -> Vec<(String, u64, u64)> {
    let mut m: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in recs {
        let Some(v) = r.fields.get(field) else { continue };
        let key = v.as_str().map_or_else(|| v.to_string(), str::to_string);
        let bytes = ["orig_ip_bytes", "resp_ip_bytes"].iter().filter_map(|f| r.fields.get(*f)?.as_u64()).sum::<u64>();
        let e = m.entry(key).or_default();
        e.0 += 1;
        e.1 += bytes;
    }
    let mut v: Vec<(String, u64, u64)> = m.into_iter().map(|(k, (n, s))| (k, n, s)).collect();
    v.sort_by(|a, b| {
        let by = if sum { b.2.cmp(&a.2) } else { std::cmp::Ordering::Equal };
        by.then(b.1.cmp(&a.1)).then(a.0.cmp(&b.0))
    });
    v
}

/// Exact terms, by count and by bytes, and distinct counts; a histogram
/// too fine for its range widened the same way; pages through ties the
/// same, by offset and by cursor: on Tantivy, a ClickHouse server and a
/// two-shard cluster.
#[test]
fn every_store_answers_exactly_and_pages_alike() {
    let ch = ClickHouse::start();
    let (a, b) = two_shards();
    let dir = tempfile::tempdir().unwrap();
    let t = TantivyStore::open(dir.path(), TantivyConfig::default()).unwrap();
    let single = ch.store("citysoc_exact");
    let cluster = cluster_store(&a, &b, "citysoc_exact");
    let stores: [&dyn Store; 3] = [&t, &single, &cluster];
    let batches = exact_batches();
    for s in stores {
        for batch in &batches {
            s.ingest(batch).unwrap();
        }
    }
    let all: Vec<Record> = batches.concat();
    let conn = q("_log:conn");
    for s in stores {
        let name = s.name();
        for (field, size) in [("uid", 1), ("uid", 3), ("uid", 10), ("id.resp_p", 2), ("id.resp_p", 10)] {
            let truth = exact_truth(&all, field, false);
            let want: Vec<(String, u64)> = truth.iter().take(size).map(|x| (x.0.clone(), x.1)).collect();
            let got: Vec<(String, u64)> = s
                .aggregate(&conn, None, None, &Agg::terms(field, size))
                .unwrap()
                .buckets()
                .into_iter()
                .map(|b| (b.key, b.count))
                .collect();
            assert_eq!(got, want, "{name}: terms {field} size {size}");
        }
        assert_eq!(
            s.aggregate(&conn, None, None, &Agg::terms("uid", 1)).unwrap().buckets()[0].key,
            "CX",
            "{name}: the value most frequent overall, in no one batch"
        );
        // By bytes: the sum of both byte fields, largest first.
        let sum = vec!["orig_ip_bytes".to_string(), "resp_ip_bytes".to_string()];
        let by_bytes = Agg::Terms { field: "id.orig_h".into(), size: 4, sum: sum.clone() };
        let got: Vec<(String, u64, Option<u64>)> = s
            .aggregate(&conn, None, None, &by_bytes)
            .unwrap()
            .buckets()
            .into_iter()
            .map(|b| (b.key, b.count, b.sum))
            .collect();
        let want: Vec<(String, u64, Option<u64>)> =
            exact_truth(&all, "id.orig_h", true).into_iter().take(4).map(|x| (x.0, x.1, Some(x.2))).collect();
        assert_eq!(got, want, "{name}: terms by bytes");
        let by_bytes = Agg::Terms { field: "uid".into(), size: 3, sum };
        let got: Vec<String> =
            s.aggregate(&conn, None, None, &by_bytes).unwrap().buckets().into_iter().map(|b| b.key).collect();
        let want: Vec<String> = exact_truth(&all, "uid", true).into_iter().take(3).map(|x| x.0).collect();
        assert_eq!(got, want, "{name}: uids by bytes");
        // Distinct counts: exact, not an estimate.
        let distinct = exact_truth(&all, "uid", false).len() as u64;
        assert_eq!(distinct, 12 * 261 + 1);
        assert_eq!(
            s.aggregate(&conn, None, None, &Agg::Cardinality { field: "uid".into() }).unwrap(),
            AggResult::Value { value: distinct, approximate: false, relative_error: 0.0 },
            "{name}"
        );
        // A 1-second histogram over 18 hours: widened to the finest round
        // interval of at most MAX_BUCKETS buckets, and said so.
        let Ok(AggResult::Histogram { interval_secs, requested_interval_secs, buckets }) =
            s.aggregate(&conn, None, None, &Agg::Histogram { interval_secs: 1.0 })
        else {
            panic!("{name}: a histogram")
        };
        assert_eq!((interval_secs, requested_interval_secs), (10.0, 1.0), "{name}");
        assert_eq!(buckets.len(), 12, "{name}");
        assert!(buckets.iter().all(|b| b.count == all.len() as u64 / 12), "{name}: {buckets:?}");
        assert_eq!(buckets[1].key, ((DAY1 + 5_890.0) / 10.0).floor().mul_add(10.0, 0.0).to_string(), "{name}");
    }
    // Pages through ties: every record once, the same pages everywhere.
    for (sort, desc) in [("ts", true), ("ts", false), ("orig_ip_bytes", true)] {
        let mut first: Option<Vec<String>> = None;
        for s in stores {
            let mut req = SearchRequest::new(conn.clone());
            req.sort = Sort { field: sort.into(), descending: desc };
            req.limit = 97;
            let mut paged = Vec::new();
            loop {
                let r = s.search(&req).unwrap();
                paged.extend(uids(&r.hits));
                let Some(next) = r.next else { break };
                req.after = Some(siem::store::Cursor::decode(&next.encode()).unwrap());
                assert!(paged.len() <= all.len(), "{}: paging does not end", s.name());
            }
            assert_eq!(paged.len(), all.len(), "{} by {sort}", s.name());
            // And by offset, where offsets reach.
            let mut req = SearchRequest::new(conn.clone());
            req.sort = Sort { field: sort.into(), descending: desc };
            req.limit = 101;
            req.offset = 404;
            assert_eq!(uids(&s.search(&req).unwrap().hits), paged[404..505], "{} by {sort}: offset", s.name());
            match &first {
                None => first = Some(paged),
                Some(f) => assert_eq!(&paged, f, "{} by {sort} desc={desc}: pages differ from tantivy's", s.name()),
            }
        }
    }
}
