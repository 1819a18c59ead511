//! The scale-out store: a MergeTree table per log (`events_conn`,
//! `events_dns`…), each partitioned by class and day with a column per field
//! of its log, written with typed `RowBinary` inserts and read with SQL whose
//! every value goes through the crate's escaping `bind()`. A search reads the
//! tables its query can match, as one `UNION ALL`.
//!
//! One table per log rather than one for every field: a part of a 200-odd
//! column table costs the server hundreds of files and a value per absent
//! field for every row, in inserts and again in every merge, while a record
//! has a dozen fields.
//!
//! The DDL and queries keep to what both ClickHouse 18.16 (Debian's
//! package) and current releases accept: no DateTime64, IPv4/IPv6 types,
//! TTL, skipping indexes or server-side parameters. Addresses are strings
//! compared through `IPv4StringToNum`/`IPv6StringToNum` for CIDR search;
//! retention drops whole partitions.

use super::{
    day_of, Agg, AggResult, Bucket, Class, PartKey, Partition, Record, Result, SearchRequest, SearchResult, Store,
    StoreError,
};
use crate::query::{tokens, Bound as QBound, Query};
use crate::schema::{column, Catalog, Kind, LOG_FIELD, SENSOR_FIELD};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write as _;
use std::net::IpAddr;

#[derive(Clone, Debug, Default)]
pub struct ClickHouseConfig {
    /// `http://host:8123`: the node searches and inserts go to.
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// A sharded deployment: the data lives in `events_<log>_local` on every
    /// node, under a `Distributed` `events_<log>` over the cluster.
    pub cluster: Option<Cluster>,
    pub compression: Compression,
}

/// How inserts and answers travel to and from the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// LZ4 blocks: fewer bytes on the wire, for a client and a
    /// server a network apart.
    #[default]
    Lz4,
    /// Plain bytes: less CPU on both sides where the link is not the limit
    /// (one machine, a fast LAN).
    None,
}

/// A cluster named in the servers' `remote_servers`, and the HTTP address
/// of every node holding a shard (or replica), where the store creates,
/// checks and drops its local tables.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub name: String,
    pub nodes: Vec<String>,
}

/// One log's table.
struct Table {
    log: &'static str,
    class: Class,
    /// What searches and inserts name: `db.events_<log>`.
    name: String,
    /// Where rows are stored on each node: the same, or `db.events_<log>_local`
    /// under a `Distributed` table in a cluster.
    local: String,
    /// `INSERT INTO … (columns) FORMAT RowBinary`, the log's fields after
    /// the fixed columns, in `kinds`' order.
    insert: String,
    kinds: Vec<Kind>,
    /// Field path → (index in `kinds`, kind, whether its words go to
    /// `_all`): looked up for every field of every record inserted.
    slots: HashMap<String, (usize, Kind, bool), foldhash::fast::FixedState>,
}

impl Table {
    fn has(&self, path: &str) -> bool {
        path == LOG_FIELD || path == SENSOR_FIELD || self.slots.contains_key(path)
    }

    fn local_name(&self) -> &str {
        self.local.split_once('.').map_or(&self.local, |(_, t)| t)
    }
}

/// Buffers an encoder reuses from record to record.
#[derive(Default)]
struct Scratch<'r> {
    text: String,
    raw: Vec<u8>,
    present: Vec<(usize, Kind, &'r Value)>,
}

pub struct ClickHouseStore {
    client: clickhouse::Client,
    rt: tokio::runtime::Runtime,
    catalog: Catalog,
    database: String,
    tables: Vec<Table>,
    /// Every node holding rows (the one node when not a cluster).
    nodes: Vec<clickhouse::Client>,
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// One catalog column's value in `RowBinary`: `Nullable` columns a marker
/// byte (1 = NULL) then the value, arrays a count then their strings.
/// Validation has already checked each value against its kind; a value
/// that does not convert is stored as NULL, as the JSON path did.
fn encode_value(out: &mut Vec<u8>, kind: Kind, v: Option<&Value>) {
    let null = |out: &mut Vec<u8>| out.push(1);
    match kind {
        Kind::StrSet => {
            let items: Vec<_> = v.and_then(Value::as_array).into_iter().flatten().filter_map(super::text_of).collect();
            put_varint(out, items.len() as u64);
            for s in &items {
                put_str(out, s);
            }
        }
        Kind::Str => match v.and_then(super::text_of) {
            Some(s) => {
                out.push(0);
                put_str(out, &s);
            }
            None => null(out),
        },
        Kind::Addr => match v.and_then(Value::as_str) {
            // Rust's parser takes IPv4 only in its one canonical form (no
            // leading zeros, four parts): such text is stored as it came.
            Some(s) if s.parse::<std::net::Ipv4Addr>().is_ok() => {
                out.push(0);
                put_str(out, s);
            }
            Some(s) => match s.parse::<IpAddr>() {
                Ok(ip) => {
                    out.push(0);
                    // The canonical form, as queries write it; formatted on
                    // the stack (an address is at most 45 characters).
                    let mut buf = [0u8; 64];
                    let mut w = std::io::Cursor::new(&mut buf[..]);
                    let _ = write!(w, "{ip}");
                    let n = w.position() as usize;
                    put_varint(out, n as u64);
                    out.extend_from_slice(&buf[..n]);
                }
                Err(_) => null(out),
            },
            None => null(out),
        },
        Kind::Count => match v.and_then(Value::as_u64) {
            Some(n) => {
                out.push(0);
                out.extend_from_slice(&n.to_le_bytes());
            }
            None => null(out),
        },
        Kind::Float => match v.and_then(Value::as_f64) {
            Some(f) => {
                out.push(0);
                out.extend_from_slice(&f.to_le_bytes());
            }
            None => null(out),
        },
        Kind::Bool => match v.and_then(Value::as_bool) {
            Some(b) => {
                out.push(0);
                out.push(u8::from(b));
            }
            None => null(out),
        },
    }
}

/// The longest SQL sent (`max_query_size`).
const MAX_QUERY_SQL_BYTES: usize = 4 << 20;

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A value bound into a query.
#[derive(Clone, Debug, PartialEq)]
enum Arg {
    Str(String),
    U64(u64),
    F64(f64),
}

fn col_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Str | Kind::Addr => "Nullable(String)",
        Kind::StrSet => "Array(String)",
        Kind::Count => "Nullable(UInt64)",
        Kind::Float => "Nullable(Float64)",
        Kind::Bool => "Nullable(UInt8)",
    }
}

/// The fields a log's table has a column for, in catalog order (the fixed
/// `_log` and `_sensor` aside).
fn log_fields<'c>(catalog: &'c Catalog, log: &str) -> impl Iterator<Item = &'c crate::schema::Field> + 'c {
    let log = log.to_string();
    catalog
        .fields
        .iter()
        .filter(move |f| f.path != LOG_FIELD && f.path != SENSOR_FIELD && f.logs.iter().any(|l| *l == log))
}

/// Columns of a log's table, in order: (name, type).
pub fn columns(catalog: &Catalog, log: &str) -> Vec<(String, String)> {
    let mut cols: Vec<(String, String)> = vec![
        ("_class".into(), "String".into()),
        ("_day".into(), "Date".into()),
        ("_ts".into(), "Float64".into()),
        ("_log".into(), "String".into()),
        ("_sensor".into(), "String".into()),
        ("_all".into(), "String".into()),
        ("_raw".into(), "String".into()),
        ("_batch".into(), "String".into()),
    ];
    for f in log_fields(catalog, log) {
        cols.push((column(&f.path), col_type(f.kind).into()));
        if f.kind == Kind::Addr {
            cols.push((bin_column(&f.path), BIN_TYPE.into()));
        }
    }
    cols
}

/// Each address also as 16 bytes (IPv4 mapped into IPv6), computed by the
/// server at insert: CIDR and range tests compare bytes instead of parsing
/// every row's text at query time.
const BIN_TYPE: &str = "Nullable(FixedString(16))";

fn bin_column(path: &str) -> String {
    format!("{}__bin", column(path))
}

fn bin_expr(c: &str) -> String {
    format!("if(position(`{c}`, ':') > 0, IPv6StringToNum(`{c}`), IPv6StringToNum(concat('::ffff:', `{c}`)))")
}

/// The `Distributed` table over the cluster's `events_<log>_local` tables.
/// Its address columns are aliases: inserts leave them to each shard's
/// MATERIALIZED columns, and queries read those.
pub fn distributed_ddl(catalog: &Catalog, log: &str, db: &str, cluster: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {db}.events_{log} (\n{}\n) ENGINE = Distributed({cluster}, {db}, events_{log}_local, rand())",
        column_defs(catalog, log, "ALIAS")
    )
}

/// A log's columns as DDL, each address's bytes computed from its text as
/// `how` says (MATERIALIZED where stored, ALIAS where read through).
fn column_defs(catalog: &Catalog, log: &str, how: &str) -> String {
    let cols: Vec<String> = columns(catalog, log)
        .iter()
        .map(|(n, t)| match n.strip_suffix("__bin") {
            Some(addr) => format!("    `{n}` {t} {how} {}", bin_expr(addr)),
            None => format!("    `{n}` {t}"),
        })
        .collect();
    cols.join(",\n")
}

/// Ingest batch ids stored, per sensor: kept in the store so that every
/// ingest node in front of it refuses a batch any of them stored.
fn batches_ddl(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (sensor String, id String, at DateTime DEFAULT now()) ENGINE = MergeTree() PARTITION BY toYYYYMM(at) ORDER BY (sensor, id)"
    )
}

/// A log's table's DDL, derived from the catalog.
pub fn ddl(catalog: &Catalog, log: &str, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (\n{}\n) ENGINE = MergeTree() PARTITION BY (_class, _day) ORDER BY (_day, _ts)",
        column_defs(catalog, log, "MATERIALIZED")
    )
}

/// Whether a record of `t`'s log can match `q`: a condition on a field the
/// log does not have is false there, as the field is absent from all its
/// records. `NOT` and free text may match anything.
fn may_match(q: &Query, t: &Table) -> bool {
    match q {
        Query::All | Query::Not(_) | Query::Text { .. } => true,
        Query::And(v) => v.iter().all(|x| may_match(x, t)),
        Query::Or(v) => v.iter().any(|x| may_match(x, t)),
        Query::Term { field, value } if field == LOG_FIELD => value == t.log,
        Query::Term { field, .. }
        | Query::Wildcard { field, .. }
        | Query::Range { field, .. }
        | Query::Cidr { field, .. }
        | Query::Exists { field } => t.has(field),
    }
}

/// A number read from JSON output, where 64-bit integers come quoted.
fn num(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

impl ClickHouseStore {
    /// Connects, creates the database and tables if missing, and refuses a
    /// table whose columns disagree with the catalog.
    pub fn open(cfg: &ClickHouseConfig) -> Result<ClickHouseStore> {
        let valid = cfg.database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !cfg.database.is_empty();
        if !valid {
            return Err(StoreError::Invalid(format!("database name '{}' must be letters, digits and _", cfg.database)));
        }
        // One worker drives the HTTP connections between calls, so an
        // insert's pieces travel while the next one is encoded.
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().map_err(backend)?;
        let connect = |url: &str| {
            // 18.16 lacks RowBinaryWithNamesAndTypes, which validation needs.
            let mut client = clickhouse::Client::default().with_url(url).with_validation(false).with_compression(
                match cfg.compression {
                    Compression::Lz4 => clickhouse::Compression::Lz4,
                    Compression::None => clickhouse::Compression::None,
                },
            );
            // A search's condition is repeated in the branch of each log's
            // table: the largest query the language admits (MAX_NODES)
            // comes to more SQL than the server's default of 256 KiB takes
            // (a 500 once). Its size is bounded by the parser, not by this.
            client = client.with_setting("max_query_size", MAX_QUERY_SQL_BYTES.to_string());
            if let Some(u) = &cfg.user {
                client = client.with_user(u);
            }
            if let Some(p) = &cfg.password {
                client = client.with_password(p);
            }
            if cfg.cluster.is_some() {
                // An insert returns once every shard has its rows on disk,
                // not when they are queued on the node that took them.
                client = client.with_setting("insert_distributed_sync", "1");
            }
            client
        };
        let client = connect(&cfg.url);
        let db = &cfg.database;
        let nodes = match &cfg.cluster {
            Some(c) => {
                if c.nodes.is_empty() || !c.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(StoreError::Invalid(format!(
                        "cluster '{}' needs a name of letters, digits and _ and at least one node",
                        c.name
                    )));
                }
                c.nodes.iter().map(|u| connect(u)).collect()
            }
            None => vec![client.clone()],
        };
        let catalog = Catalog::new();
        let suffix = if cfg.cluster.is_some() { "_local" } else { "" };
        let tables = schema::CATALOG
            .iter()
            .map(|l| {
                let name = format!("{db}.events_{}", l.name);
                let mut names: Vec<String> = ["_class", "_day", "_ts", "_log", "_sensor", "_all", "_raw", "_batch"]
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect();
                let (mut kinds, mut slots) = (Vec::new(), HashMap::default());
                for f in log_fields(&catalog, l.name) {
                    slots.insert(f.path.clone(), (kinds.len(), f.kind, f.free_text));
                    kinds.push(f.kind);
                    names.push(format!("`{}`", column(&f.path)));
                }
                Table {
                    log: l.name,
                    class: Class::of_log(l.name),
                    insert: format!("INSERT INTO {name} ({}) FORMAT RowBinary", names.join(", ")),
                    local: format!("{name}{suffix}"),
                    name,
                    kinds,
                    slots,
                }
            })
            .collect();
        let store = ClickHouseStore { client, rt, catalog, database: db.clone(), tables, nodes };
        for node in &store.nodes {
            store.exec_on(node, &format!("CREATE DATABASE IF NOT EXISTS {db}"), &[])?;
            for t in &store.tables {
                store.exec_on(node, &ddl(&store.catalog, t.log, &t.local), &[])?;
            }
            let batches = format!("{db}.ingest_batches{suffix}");
            store.exec_on(node, &batches_ddl(&batches), &[])?;
            if let Some(c) = &cfg.cluster {
                for t in &store.tables {
                    store.exec_on(node, &distributed_ddl(&store.catalog, t.log, db, &c.name), &[])?;
                }
                store.exec_on(
                    node,
                    &format!(
                        "CREATE TABLE IF NOT EXISTS {db}.ingest_batches AS {batches} ENGINE = Distributed({}, {db}, ingest_batches_local, cityHash64(sensor, id))",
                        c.name
                    ),
                    &[],
                )?;
            }
            store.check_schema(node, cfg.cluster.is_some())?;
        }
        Ok(store)
    }

    fn batches(&self) -> String {
        format!("{}.ingest_batches", self.database)
    }

    /// Every log's table on a node (and its `Distributed` table in a
    /// cluster) has exactly the catalog's columns.
    fn check_schema(&self, node: &clickhouse::Client, cluster: bool) -> Result<()> {
        let rows = self.fetch_on(
            node,
            "SELECT table, name, type FROM system.columns WHERE database = ?",
            &[Arg::Str(self.database.clone())],
        )?;
        let mut have: HashMap<&str, Vec<(String, String)>> = HashMap::new();
        for r in &rows {
            have.entry(r["table"].as_str().unwrap_or(""))
                .or_default()
                .push((r["name"].as_str().unwrap_or("").to_string(), r["type"].as_str().unwrap_or("").to_string()));
        }
        for t in &self.tables {
            let want = columns(&self.catalog, t.log);
            let local = t.local_name();
            let distributed = t.name.split_once('.').map_or(t.name.as_str(), |(_, n)| n);
            let names = if cluster { vec![local, distributed] } else { vec![local] };
            for table in names {
                let have = have.get(table).cloned().unwrap_or_default();
                if have.len() != want.len() || want.iter().any(|w| !have.contains(w)) {
                    let diff: Vec<String> = want
                        .iter()
                        .filter(|w| !have.contains(w))
                        .map(|(n, t)| format!("{n} {t}"))
                        .chain(have.iter().filter(|h| !want.contains(h)).map(|(n, t)| format!("unexpected {n} {t}")))
                        .take(10)
                        .collect();
                    return Err(StoreError::Backend(format!(
                        "table {}.{table} disagrees with the field catalog: {}",
                        self.database,
                        diff.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }

    fn query_on(&self, client: &clickhouse::Client, sql: &str, args: &[Arg]) -> clickhouse::query::Query {
        let mut q = client.query(sql);
        for a in args {
            q = match a {
                Arg::Str(s) => q.bind(s.as_str()),
                Arg::U64(n) => q.bind(*n),
                Arg::F64(f) => q.bind(*f),
            };
        }
        q
    }

    fn exec_on(&self, node: &clickhouse::Client, sql: &str, args: &[Arg]) -> Result<()> {
        let q = self.query_on(node, sql, args);
        self.rt.block_on(q.execute()).map_err(backend)
    }

    fn fetch_on(&self, node: &clickhouse::Client, sql: &str, args: &[Arg]) -> Result<Vec<Value>> {
        let mut all = self.fetch_all_on(node, &[(sql, args)])?;
        Ok(all.pop().unwrap_or_default())
    }

    fn fetch(&self, sql: &str, args: &[Arg]) -> Result<Vec<Value>> {
        self.fetch_on(&self.client, sql, args)
    }

    /// Runs queries at once (each on its own connection) and returns their
    /// rows in order: a search's count and its page cost one scan's time.
    fn fetch_all(&self, queries: &[(&str, &[Arg])]) -> Result<Vec<Vec<Value>>> {
        self.fetch_all_on(&self.client, queries)
    }

    fn fetch_all_on(&self, node: &clickhouse::Client, queries: &[(&str, &[Arg])]) -> Result<Vec<Vec<Value>>> {
        let futures: Vec<_> = queries
            .iter()
            .map(|(sql, args)| {
                let q = self.query_on(node, sql, args);
                async move {
                    let mut cur = q.fetch_bytes("JSONEachRow")?;
                    cur.collect().await
                }
            })
            .collect();
        let results = self.rt.block_on(futures::future::join_all(futures));
        results
            .into_iter()
            .map(|r| {
                let bytes = r.map_err(backend)?;
                let text = String::from_utf8_lossy(&bytes);
                text.lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).map_err(backend)).collect()
            })
            .collect()
    }

    /// Appends a record to a `RowBinary` body in the order of its table's
    /// insert columns: the server reads typed bytes instead of parsing JSON.
    fn encode<'r>(t: &Table, r: &'r Record, batch: &str, scratch: &mut Scratch<'r>, out: &mut Vec<u8>) {
        put_str(out, t.class.name());
        // Validation keeps ts within 1970..2100, inside Date's range.
        out.extend_from_slice(&((r.ts / 86_400.0).floor() as u16).to_le_bytes());
        out.extend_from_slice(&r.ts.to_le_bytes());
        put_str(out, &r.log);
        put_str(out, &r.sensor);
        // One pass over the fields finds each one's column and gathers the
        // free-text words; validation admits only the log's fields, so every
        // field has a column.
        let present = &mut scratch.present;
        present.clear();
        scratch.text.clear();
        for (k, v) in &r.fields {
            if let Some(&(i, kind, free)) = t.slots.get(k.as_str()) {
                present.push((i, kind, v));
                if free {
                    super::append_words(&mut scratch.text, v);
                }
            }
        }
        put_str(out, &scratch.text);
        scratch.raw.clear();
        r.write_raw_json(&mut scratch.raw);
        put_varint(out, scratch.raw.len() as u64);
        out.extend_from_slice(&scratch.raw);
        put_str(out, batch);
        present.sort_unstable_by_key(|p| p.0);
        let mut next = present.iter().peekable();
        for (i, kind) in t.kinds.iter().enumerate() {
            let v = match next.peek() {
                Some(&&(j, _, v)) if j == i => {
                    next.next();
                    Some(v)
                }
                _ => None,
            };
            encode_value(out, *kind, v);
        }
    }

    /// One log's records as one insert, its body streamed in pieces as it
    /// is encoded, so the server parses one piece while the next is made.
    fn insert(&self, t: &Table, records: &[&Record], batch: &str) -> Result<()> {
        const PIECE: usize = 4096;
        let mut ins = self.client.insert_formatted_with(t.insert.clone());
        let mut scratch = Scratch::default();
        for piece in records.chunks(PIECE) {
            let mut body = Vec::with_capacity(piece.len() * 400);
            for r in piece {
                Self::encode(t, r, batch, &mut scratch, &mut body);
            }
            self.rt.block_on(ins.send(body.into())).map_err(backend)?;
        }
        self.rt.block_on(ins.end()).map_err(backend)
    }

    /// The records of a batch not stored yet. A log's records of one day are
    /// one part on each shard, written whole or not at all: a (log, day)
    /// with all its rows is skipped, one with none is kept, and one with
    /// some (a cluster insert that reached some shards) has them deleted
    /// and is stored again. The lookup reads the batch's time span only.
    fn not_stored<'r>(
        &self,
        groups: Vec<(&'r Table, Vec<&'r Record>)>,
        batch: &str,
    ) -> Result<Vec<(&'r Table, Vec<&'r Record>)>> {
        let (mut branches, mut args) = (Vec::new(), Vec::new());
        for (t, rs) in &groups {
            let lo = rs.iter().map(|r| r.ts).fold(f64::INFINITY, f64::min);
            let hi = rs.iter().map(|r| r.ts).fold(f64::NEG_INFINITY, f64::max);
            branches.push(format!(
                "SELECT _log AS l, toString(_day) AS d, count() AS n FROM {} WHERE _day >= toDate(?) AND _day <= toDate(?) AND _ts >= ? AND _ts <= ? AND _batch = ? GROUP BY _log, _day",
                t.name
            ));
            args.extend([Arg::Str(day_of(lo)), Arg::Str(day_of(hi)), Arg::F64(lo), Arg::F64(hi)]);
            args.push(Arg::Str(batch.to_string()));
        }
        if branches.is_empty() {
            return Ok(groups);
        }
        let found: HashMap<(String, String), u64> = self
            .fetch(&format!("SELECT l, d, n FROM ({})", branches.join(" UNION ALL ")), &args)?
            .iter()
            .map(|r| {
                let key = (r["l"].as_str().unwrap_or("").to_string(), r["d"].as_str().unwrap_or("").to_string());
                (key, num(&r["n"]).unwrap_or(0.0) as u64)
            })
            .collect();
        if found.is_empty() {
            return Ok(groups);
        }
        let mut out = Vec::new();
        let mut partial = false;
        for (t, rs) in groups {
            let mut days: std::collections::BTreeMap<String, Vec<&Record>> = Default::default();
            for r in rs {
                days.entry(r.day()).or_default().push(r);
            }
            let mut keep = Vec::new();
            for (day, rs) in days {
                match found.get(&(t.log.to_string(), day.clone())).copied().unwrap_or(0) {
                    0 => keep.extend(rs),
                    n if n == rs.len() as u64 => {}
                    _ => {
                        for node in &self.nodes {
                            self.exec_on(
                                node,
                                &format!("ALTER TABLE {} DELETE WHERE _day = toDate(?) AND _batch = ?", t.local),
                                &[Arg::Str(day.clone()), Arg::Str(batch.to_string())],
                            )?;
                        }
                        partial = true;
                        keep.extend(rs);
                    }
                }
            }
            if !keep.is_empty() {
                out.push((t, keep));
            }
        }
        if partial {
            self.wait_mutations()?;
        }
        Ok(out)
    }

    /// Mutations run in the background; waiting for them makes their effect
    /// visible when the call that made them returns.
    fn wait_mutations(&self) -> Result<()> {
        let db = Arg::Str(self.database.clone());
        for node in &self.nodes {
            for _ in 0..600 {
                let pending = self.fetch_on(
                    node,
                    "SELECT count() AS n FROM system.mutations WHERE is_done = 0 AND database = ?",
                    std::slice::from_ref(&db),
                )?;
                if pending.first().and_then(|r| num(&r["n"])).unwrap_or(0.0) == 0.0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Active partitions on every node, summed over the logs' tables, each
    /// with its server id (the same in every table: a digest of the key).
    /// When one was last written is when a part of it last was (an insert,
    /// or a merge or delete rewriting it).
    fn parts(&self) -> Result<Vec<(Partition, String)>> {
        let mut args = vec![Arg::Str(self.database.clone())];
        args.extend(self.tables.iter().map(|t| Arg::Str(t.local_name().to_string())));
        let marks = vec!["?"; self.tables.len()].join(", ");
        let sql = format!(
            "SELECT partition, partition_id, sum(rows) AS r, sum(bytes_on_disk) AS b, max(toUInt32(modification_time)) AS m FROM system.parts WHERE database = ? AND table IN ({marks}) AND active GROUP BY partition, partition_id"
        );
        let mut all: std::collections::BTreeMap<(PartKey, String), (u64, u64, f64)> = Default::default();
        for node in &self.nodes {
            for r in &self.fetch_on(node, &sql, &args)? {
                let (Some(key), Some(id)) =
                    (r["partition"].as_str().and_then(parse_partition), r["partition_id"].as_str())
                else {
                    continue;
                };
                let e = all.entry((key, id.to_string())).or_default();
                e.0 += num(&r["r"]).unwrap_or(0.0) as u64;
                e.1 += num(&r["b"]).unwrap_or(0.0) as u64;
                e.2 = e.2.max(num(&r["m"]).unwrap_or(0.0));
            }
        }
        Ok(all
            .into_iter()
            .map(|((k, id), (records, bytes, m))| {
                let ingested = (m > 0.0).then_some(m);
                (Partition { class: k.class, day: k.day, records, bytes, ingested }, id)
            })
            .collect())
    }

    fn kind(&self, field: &str) -> Result<Kind> {
        self.catalog.kind(field).ok_or_else(|| StoreError::Invalid(format!("unknown field '{field}'")))
    }

    fn typed(&self, field: &str, v: &str) -> Result<Arg> {
        let kind = self.kind(field)?;
        let bad = || StoreError::Invalid(format!("'{v}' is not a valid {} for {field}", kind.name()));
        Ok(match kind {
            Kind::Str | Kind::StrSet => Arg::Str(v.to_string()),
            Kind::Addr => Arg::Str(v.parse::<IpAddr>().map_err(|_| bad())?.to_string()),
            Kind::Count => Arg::U64(v.parse().map_err(|_| bad())?),
            Kind::Float => Arg::F64(v.parse().map_err(|_| bad())?),
            Kind::Bool => Arg::U64(u64::from(v == "true")),
        })
    }

    /// The query as a SQL condition on `t`; every leaf is wrapped so that
    /// NULL (the field is absent) counts as false, as in Tantivy, and a leaf
    /// on a field the log lacks is false. Values are checked against the
    /// catalog whichever table asks.
    fn sql(&self, q: &Query, t: &Table, args: &mut Vec<Arg>) -> Result<String> {
        let leaf_field = match q {
            Query::Term { field, .. }
            | Query::Wildcard { field, .. }
            | Query::Range { field, .. }
            | Query::Cidr { field, .. }
            | Query::Exists { field } => Some(field),
            _ => None,
        };
        if let Query::Term { field, value } = q {
            if field == LOG_FIELD {
                // Every row of a log's table has that log: no column to read.
                return Ok(if *value == t.log { "1" } else { "0" }.into());
            }
        }
        if let Some(field) = leaf_field {
            // `check` has refused bad values whatever the table.
            return if t.has(field) { self.sql_leaf(q, args) } else { Ok("0".into()) };
        }
        Ok(match q {
            Query::And(v) => {
                let parts: Result<Vec<String>> = v.iter().map(|x| self.sql(x, t, args)).collect();
                format!("({})", parts?.join(" AND "))
            }
            Query::Or(v) => {
                let parts: Result<Vec<String>> = v.iter().map(|x| self.sql(x, t, args)).collect();
                format!("({})", parts?.join(" OR "))
            }
            Query::Not(x) => format!("(NOT {})", self.sql(x, t, args)?),
            _ => self.sql_leaf(q, args)?,
        })
    }

    /// Refuses a query naming an unknown field or a bad value, whichever
    /// tables it could match (none, even).
    fn check(&self, q: &Query) -> Result<()> {
        match q {
            Query::And(v) | Query::Or(v) => v.iter().try_for_each(|x| self.check(x)),
            Query::Not(x) => self.check(x),
            _ => self.sql_leaf(q, &mut Vec::new()).map(drop),
        }
    }

    fn sql_leaf(&self, q: &Query, args: &mut Vec<Arg>) -> Result<String> {
        Ok(match q {
            Query::Term { field, value } => {
                let c = column(field);
                let kind = self.kind(field)?;
                if kind == Kind::Addr {
                    // The 16 bytes, as Tantivy compares them (an IPv4
                    // address equals its IPv4-mapped IPv6 form), and a fixed
                    // width compares faster than text.
                    self.typed(field, value)?;
                    let ip: IpAddr =
                        value.parse().map_err(|_| StoreError::Invalid(format!("'{value}' is not an address")))?;
                    args.push(Arg::Str(hex16(ip)));
                    return Ok(format!("ifNull(`{}` = unhex(?), 0)", bin_column(field)));
                }
                args.push(self.typed(field, value)?);
                if kind == Kind::StrSet {
                    format!("has(`{c}`, ?)")
                } else {
                    format!("ifNull(`{c}` = ?, 0)")
                }
            }
            Query::Wildcard { field, pattern } => {
                let c = column(field);
                args.push(Arg::Str(like_pattern(pattern)));
                if self.kind(field)? == Kind::StrSet {
                    format!("arrayExists(x -> x LIKE ?, `{c}`)")
                } else {
                    format!("ifNull(`{c}` LIKE ?, 0)")
                }
            }
            Query::Range { field, lo, hi } => {
                let c = column(field);
                let kind = self.kind(field)?;
                if matches!(kind, Kind::Str | Kind::StrSet | Kind::Bool) {
                    return Err(StoreError::Invalid(format!(
                        "ranges apply to numbers and addresses; {field} is a {}",
                        kind.name()
                    )));
                }
                let expr = if kind == Kind::Addr { format!("`{}`", bin_column(field)) } else { format!("`{c}`") };
                let mut parts = vec![format!("isNotNull(`{c}`)")];
                for (b, inc, exc) in [(lo, ">=", ">"), (hi, "<=", "<")] {
                    let (op, v) = match b {
                        QBound::Unbounded => continue,
                        QBound::Included(v) => (inc, v),
                        QBound::Excluded(v) => (exc, v),
                    };
                    if kind == Kind::Addr {
                        let ip: IpAddr =
                            v.parse().map_err(|_| StoreError::Invalid(format!("'{v}' is not an address")))?;
                        args.push(Arg::Str(hex16(ip)));
                        parts.push(format!("{expr} {op} unhex(?)"));
                    } else {
                        args.push(self.typed(field, v)?);
                        parts.push(format!("{expr} {op} ?"));
                    }
                }
                format!("ifNull(({}), 0)", parts.join(" AND "))
            }
            Query::Cidr { field, net } => {
                self.kind(field)?;
                // Compared as IPv6 (IPv4 mapped), as Tantivy stores them.
                args.push(Arg::Str(hex16(net.first_address())));
                args.push(Arg::Str(hex16(net.last_address())));
                format!("ifNull(`{}` BETWEEN unhex(?) AND unhex(?), 0)", bin_column(field))
            }
            Query::Exists { field } => {
                let c = column(field);
                if self.kind(field)? == Kind::StrSet {
                    format!("notEmpty(`{c}`)")
                } else {
                    format!("isNotNull(`{c}`)")
                }
            }
            Query::Text { words } => {
                let toks: Vec<String> = words.iter().flat_map(|w| tokens(w)).collect();
                if toks.is_empty() {
                    return Ok("1".into());
                }
                // Words in order, separated by non-word characters: the
                // tokens Tantivy's default tokenizer makes.
                let body: Vec<String> = toks.iter().map(|t| regex_syntax::escape(t)).collect();
                args.push(Arg::Str(format!("(^|[^[:alnum:]]){}([^[:alnum:]]|$)", body.join("[^[:alnum:]]+"))));
                "match(_all, ?)".into()
            }
            Query::All => "1".into(),
            Query::And(_) | Query::Or(_) | Query::Not(_) => {
                return Err(StoreError::Backend("a compound query is not a leaf".into()))
            }
        })
    }

    fn where_clause(
        &self,
        q: &Query,
        t: &Table,
        from: Option<f64>,
        to: Option<f64>,
        args: &mut Vec<Arg>,
    ) -> Result<String> {
        let mut w = self.sql(q, t, args)?;
        if let Some(f) = from {
            args.push(Arg::Str(day_of(f)));
            args.push(Arg::F64(f));
            w = format!("{w} AND _day >= toDate(?) AND _ts >= ?");
        }
        if let Some(t) = to {
            args.push(Arg::Str(day_of(t - 1e-6)));
            args.push(Arg::F64(t));
            w = format!("{w} AND _day <= toDate(?) AND _ts < ?");
        }
        Ok(w)
    }

    /// The rows of every log's table the query can match (and, with
    /// `field`, that has the field), as `(SELECT … UNION ALL SELECT …)`:
    /// `select` gives each branch's columns, `cond` is an extra condition.
    /// None when no table can hold a match.
    fn union(
        &self,
        q: &Query,
        (from, to): (Option<f64>, Option<f64>),
        field: Option<&str>,
        select: &dyn Fn(&Table) -> String,
        cond: &str,
        args: &mut Vec<Arg>,
    ) -> Result<Option<String>> {
        self.check(q)?;
        let mut branches = Vec::new();
        for t in self.tables.iter().filter(|t| may_match(q, t) && field.is_none_or(|f| t.has(f))) {
            let w = self.where_clause(q, t, from, to, args)?;
            branches.push(format!("SELECT {} FROM {} WHERE {w} AND {cond}", select(t), t.name));
        }
        Ok((!branches.is_empty()).then(|| format!("({})", branches.join(" UNION ALL "))))
    }
}

/// An address as the 16 bytes `IPv6StringToNum` gives, in hex.
/// `('flows','2023-11-14')` as the server prints a (class, day) key.
fn parse_partition(p: &str) -> Option<PartKey> {
    let inner = p.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (class, day) = inner.split_once(',')?;
    let unquote = |s: &str| s.trim().trim_matches('\'').to_string();
    let class = Class::parse(&unquote(class))?;
    let day = unquote(day);
    super::day_start(&day)?;
    Some(PartKey { class, day })
}

fn hex16(ip: IpAddr) -> String {
    let v6 = match ip {
        IpAddr::V4(v) => v.to_ipv6_mapped(),
        IpAddr::V6(v) => v,
    };
    v6.octets().iter().map(|b| format!("{b:02X}")).collect()
}

/// A `*`/`?` pattern as a LIKE pattern, LIKE's own wildcards escaped.
fn like_pattern(p: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in p.chars() {
        if esc {
            if matches!(c, '%' | '_' | '\\') {
                out.push('\\');
            }
            out.push(c);
            esc = false;
            continue;
        }
        match c {
            '\\' => esc = true,
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

impl Store for ClickHouseStore {
    fn name(&self) -> &'static str {
        "clickhouse"
    }

    fn ingest(&self, records: &[Record]) -> Result<()> {
        self.ingest_batch(records, None)
    }

    /// With a batch named, each row carries the name, and the parts of the
    /// batch already stored (a retry after a crash between the records and
    /// the ledger, or after one log's insert failed) are not stored again.
    fn ingest_batch(&self, records: &[Record], batch: Option<&str>) -> Result<()> {
        let mut by_log: HashMap<&str, Vec<&Record>> = HashMap::new();
        for r in records {
            by_log.entry(r.log.as_str()).or_default().push(r);
        }
        let mut groups: Vec<(&Table, Vec<&Record>)> =
            self.tables.iter().filter_map(|t| by_log.remove(t.log).map(|rs| (t, rs))).collect();
        if let Some(log) = by_log.into_keys().next() {
            // Validation admits only the catalog's logs.
            return Err(StoreError::Invalid(format!("unknown log '{log}'")));
        }
        if let Some(b) = batch {
            groups = self.not_stored(groups, b)?;
        }
        let batch = batch.unwrap_or("");
        // The logs' inserts run side by side, the largest first: each is a
        // connection and a thread on the server, and encoding is most of
        // the client's work.
        groups.sort_by_key(|(_, rs)| std::cmp::Reverse(rs.len()));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(groups.len());
        if threads <= 1 {
            return groups.iter().try_for_each(|(t, rs)| self.insert(t, rs, batch));
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((t, rs)) = groups.get(i) else { return Ok(()) };
                        self.insert(t, rs, batch)?;
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|w| {
                w.join().unwrap_or_else(|_| Err(StoreError::Backend("an insert thread panicked".into())))
            })
        })
    }

    fn search(&self, req: &SearchRequest) -> Result<SearchResult> {
        req.check(&self.catalog)?;
        let c = column(&req.sort.field);
        let kind = self.kind(&req.sort.field)?;
        let ty = col_type(kind);
        let sort = |t: &Table| {
            if t.has(&req.sort.field) {
                format!("_raw, _ts, `{c}` AS _sort")
            } else {
                format!("_raw, _ts, CAST(NULL AS {ty}) AS _sort")
            }
        };
        let mut count_args = Vec::new();
        let range = (req.from, req.to);
        let count_from = self.union(&req.query, range, None, &|_| "count() AS n".into(), "1", &mut count_args)?;
        let mut args = Vec::new();
        let rows_from = self.union(&req.query, range, None, &sort, "1", &mut args)?;
        let (Some(count_from), Some(rows_from)) = (count_from, rows_from) else {
            return Ok(SearchResult { total: 0, hits: Vec::new(), next: None });
        };
        let count = format!("SELECT sum(n) AS n FROM {count_from}");
        let dir = if req.sort.descending { "DESC" } else { "ASC" };
        // The order of `Cursor`: records without the sort field last; the
        // value and the time as whole microseconds (counts as they are);
        // then by content, so pages are stable and the same as Tantivy's.
        let key = if kind == Kind::Float { "floor(_sort * 1000000)" } else { "toFloat64(_sort)" };
        let mut cond = "1".to_string();
        let mut offset = req.offset;
        if let Some(a) = &req.after {
            // At or after the cursor's key; the hits of that key already
            // returned are skipped by count.
            let (lt, le) = if req.sort.descending { ("<", "<=") } else { (">", ">=") };
            cond = if a.has {
                args.push(Arg::F64(a.key));
                args.push(Arg::F64(a.key));
                args.push(Arg::F64(a.ts_us));
                format!("(_h = 1 OR _k {lt} ? OR (_k = ? AND _t {le} ?))")
            } else {
                args.push(Arg::F64(a.ts_us));
                format!("(_h = 1 AND _t {le} ?)")
            };
            offset = a.seen;
        }
        let page = format!(
            "SELECT _raw, _h, _k, _t FROM (SELECT _raw, isNull(_sort) AS _h, ifNull({key}, 0) AS _k, \
             floor(_ts * 1000000) AS _t FROM {rows_from}) WHERE {cond} \
             ORDER BY _h, _k {dir}, _t {dir}, _raw LIMIT {} OFFSET {offset}",
            req.limit
        );
        let mut out = self.fetch_all(&[(&count, &count_args), (&page, &args)])?.into_iter();
        let (total, rows) = (out.next().unwrap_or_default(), out.next().unwrap_or_default());
        let total = total.first().and_then(|r| num(&r["n"])).unwrap_or(0.0) as u64;
        let hits = rows
            .iter()
            .map(|r| serde_json::from_str(r["_raw"].as_str().unwrap_or("null")).unwrap_or(Value::Null))
            .collect();
        let keys: Vec<(bool, f64, f64)> = rows
            .iter()
            .map(|r| (num(&r["_h"]) == Some(0.0), num(&r["_k"]).unwrap_or(0.0), num(&r["_t"]).unwrap_or(0.0)))
            .collect();
        Ok(SearchResult { total, hits, next: super::next_cursor(req, &keys) })
    }

    fn aggregate(&self, query: &Query, from: Option<f64>, to: Option<f64>, agg: &Agg) -> Result<AggResult> {
        agg.check(&self.catalog)?;
        super::check_range(from, to)?;
        let range = (from, to);
        let mut args = Vec::new();
        Ok(match agg {
            Agg::Terms { field, size, sum } => {
                let c = column(field);
                let kind = self.kind(field)?;
                let key = match kind {
                    Kind::StrSet => format!("arrayJoin(`{c}`)"),
                    Kind::Bool => format!("if(`{c}` = 1, 'true', 'false')"),
                    _ => format!("toString(`{c}`)"),
                };
                // The summed fields a table has, missing ones and nulls as 0.
                let total = |t: &Table| {
                    let parts: Vec<String> = sum
                        .iter()
                        .filter(|s| t.has(s))
                        .map(|s| format!("ifNull(toUInt64(`{}`), 0)", column(s)))
                        .collect();
                    if parts.is_empty() {
                        // A column, not a constant: a Distributed table's
                        // branches must agree on which they send.
                        "materialize(toUInt64(0))".to_string()
                    } else {
                        parts.join(" + ")
                    }
                };
                let select = |t: &Table| {
                    if sum.is_empty() {
                        format!("{key} AS k")
                    } else {
                        format!("{key} AS k, {} AS v", total(t))
                    }
                };
                let cond = if kind == Kind::StrSet { "1".to_string() } else { format!("isNotNull(`{c}`)") };
                let Some(rows) = self.union(query, range, Some(field), &select, &cond, &mut args)? else {
                    return Ok(AggResult::Buckets(Vec::new()));
                };
                // Exact: every group counted, then ordered as `top_terms`
                // orders them (by text as bytes, as Rust compares strings).
                let (s, order) =
                    if sum.is_empty() { ("0", "n DESC, k ASC") } else { ("sum(v)", "s DESC, n DESC, k ASC") };
                let sql =
                    format!("SELECT k, count() AS n, {s} AS s FROM {rows} GROUP BY k ORDER BY {order} LIMIT {size}");
                let rows = self.fetch(&sql, &args)?;
                AggResult::Buckets(super::top_terms(
                    rows.iter().map(|r| {
                        (
                            r["k"].as_str().unwrap_or("").to_string(),
                            num(&r["n"]).unwrap_or(0.0) as u64,
                            num(&r["s"]).unwrap_or(0.0) as u64,
                        )
                    }),
                    *size,
                    !sum.is_empty(),
                ))
            }
            Agg::Histogram { interval_secs } => {
                let interval = match self.aggregate(query, from, to, &Agg::Stats { field: "ts".into() })? {
                    AggResult::Stats { min: Some(lo), max: Some(hi), .. } => {
                        super::histogram_interval(*interval_secs, lo, hi)
                    }
                    _ => *interval_secs,
                };
                let answer = |buckets| AggResult::Histogram {
                    interval_secs: interval,
                    requested_interval_secs: *interval_secs,
                    buckets,
                };
                // Binds follow the text: the SELECT's before the WHERE's.
                args = vec![Arg::F64(interval), Arg::F64(interval)];
                let Some(rows) = self.union(query, range, None, &|_| "_ts".into(), "1", &mut args)? else {
                    return Ok(answer(Vec::new()));
                };
                let sql = format!("SELECT floor(_ts / ?) * ? AS b, count() AS n FROM {rows} GROUP BY b ORDER BY b");
                let rows = self.fetch(&sql, &args)?;
                answer(
                    rows.iter()
                        .map(|r| {
                            let b = num(&r["b"]).unwrap_or(0.0);
                            let key = if b.fract() == 0.0 { format!("{}", b as i64) } else { b.to_string() };
                            Bucket { key, count: num(&r["n"]).unwrap_or(0.0) as u64, sum: None }
                        })
                        .collect(),
                )
            }
            Agg::Stats { field } => {
                let c = column(field);
                let rows = self.union(query, range, Some(field), &|_| format!("`{c}` AS v"), "1", &mut args)?;
                let r = match rows {
                    Some(rows) => {
                        let sql = format!(
                            "SELECT count(v) AS n, sum(v) AS s, avg(v) AS a, min(v) AS lo, max(v) AS hi FROM {rows}"
                        );
                        self.fetch(&sql, &args)?.first().cloned().unwrap_or(Value::Null)
                    }
                    None => Value::Null,
                };
                let count = num(&r["n"]).unwrap_or(0.0) as u64;
                let opt = |v: &Value| if count == 0 { None } else { num(v).filter(|f| f.is_finite()) };
                AggResult::Stats {
                    count,
                    sum: num(&r["s"]).unwrap_or(0.0),
                    avg: opt(&r["a"]),
                    min: opt(&r["lo"]),
                    max: opt(&r["hi"]),
                }
            }
            Agg::Cardinality { field } => {
                let c = column(field);
                let expr =
                    if self.kind(field)? == Kind::StrSet { format!("arrayJoin(`{c}`)") } else { format!("`{c}`") };
                let rows = self.union(query, range, Some(field), &|_| format!("{expr} AS v"), "1", &mut args)?;
                let value = match rows {
                    Some(rows) => {
                        let rows = self.fetch(&format!("SELECT uniqExact(v) AS n FROM {rows}"), &args)?;
                        rows.first().and_then(|r| num(&r["n"])).unwrap_or(0.0) as u64
                    }
                    None => 0,
                };
                AggResult::Value { value, approximate: false, relative_error: 0.0 }
            }
        })
    }

    fn partitions(&self) -> Result<Vec<Partition>> {
        let mut out: Vec<Partition> = self.parts()?.into_iter().map(|(p, _)| p).collect();
        out.sort_by(|a, b| (a.class, &a.day).cmp(&(b.class, &b.day)));
        Ok(out)
    }

    fn drop_partition(&self, class: Class, day: &str) -> Result<bool> {
        let Some((_, id)) = self.parts()?.into_iter().find(|(p, _)| p.class == class && p.day == day) else {
            return Ok(false);
        };
        // Partition ids are hex digests made by the server; checked anyway,
        // since ALTER takes no bound parameters.
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(StoreError::Backend(format!("unexpected partition id '{id}'")));
        }
        for node in &self.nodes {
            for t in self.tables.iter().filter(|t| t.class == class) {
                // A table without that day drops nothing and says nothing.
                self.exec_on(node, &format!("ALTER TABLE {} DROP PARTITION ID '{id}'", t.local), &[])?;
            }
        }
        Ok(true)
    }

    fn keeps_batch_ids(&self) -> bool {
        true
    }

    fn batch_stored(&self, sensor: &str, id: &str) -> Result<bool> {
        let rows = self.fetch(
            &format!("SELECT count() AS n FROM {} WHERE sensor = ? AND id = ?", self.batches()),
            &[Arg::Str(sensor.into()), Arg::Str(id.into())],
        )?;
        Ok(rows.first().and_then(|r| num(&r["n"])).unwrap_or(0.0) > 0.0)
    }

    fn remember_batch(&self, sensor: &str, id: &str) -> Result<()> {
        self.exec_on(
            &self.client,
            &format!("INSERT INTO {} (sensor, id) VALUES (?, ?)", self.batches()),
            &[Arg::Str(sensor.into()), Arg::Str(id.into())],
        )
    }

    fn delete(&self, query: &Query) -> Result<u64> {
        let mut args = Vec::new();
        let Some(rows) = self.union(query, (None, None), None, &|_| "count() AS n".into(), "1", &mut args)? else {
            return Ok(0);
        };
        let n = self.fetch(&format!("SELECT sum(n) AS n FROM {rows}"), &args)?;
        let n = n.first().and_then(|r| num(&r["n"])).unwrap_or(0.0) as u64;
        if n == 0 {
            return Ok(0);
        }
        for t in self.tables.iter().filter(|t| may_match(query, t)) {
            let mut args = Vec::new();
            let w = self.sql(query, t, &mut args)?;
            for node in &self.nodes {
                self.exec_on(node, &format!("ALTER TABLE {} DELETE WHERE {w}", t.local), &args)?;
            }
        }
        self.wait_mutations()?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_as_the_server_prints_them() {
        let k = parse_partition("('flows','2023-11-14')").unwrap();
        assert_eq!((k.class, k.day.as_str()), (Class::Flows, "2023-11-14"));
        assert!(parse_partition("('nope','2023-11-14')").is_none());
        assert!(parse_partition("20231114").is_none());
    }

    #[test]
    fn ipv4_text_that_parses_is_canonical() {
        // encode_value stores such text as it came, unformatted.
        for s in ["10.1.0.9", "0.0.0.0", "255.255.255.255", "01.2.3.4", "1.2.3", "1.2.3.4.5", "1.2.3.256", " 1.2.3.4"] {
            if let Ok(ip) = s.parse::<std::net::Ipv4Addr>() {
                assert_eq!(ip.to_string(), s);
            }
        }
        assert!("01.2.3.4".parse::<std::net::Ipv4Addr>().is_err() && "10.1.0.9".parse::<std::net::Ipv4Addr>().is_ok());
    }

    #[test]
    fn like_escapes_its_own_wildcards() {
        assert_eq!(like_pattern("*.duckdns.org"), "%.duckdns.org");
        assert_eq!(like_pattern("100%_x?"), "100\\%\\_x_");
        assert_eq!(like_pattern("a\\*b"), "a*b");
    }

    #[test]
    fn ddl_follows_the_catalog() {
        let d = ddl(&Catalog::new(), "conn", "db.events_conn");
        assert!(d.contains("`id_orig_h` Nullable(String)"));
        assert!(d.contains("`tunnel_parents` Array(String)"));
        assert!(d.contains("PARTITION BY (_class, _day)"));
        // A log's table has its own fields only.
        assert!(!d.contains("`query`"), "dns.log's query is not a conn column");
        let dns = columns(&Catalog::new(), "dns");
        assert!(dns.iter().any(|(n, _)| n == "query"));
        assert!(dns.len() < 60, "{} columns", dns.len());
    }
}
