//! The scale-out store: one MergeTree table, partitioned by class and day, with a
//! column per catalog field, written with typed `RowBinary` inserts and read
//! with SQL whose every value goes through the crate's escaping `bind()`.
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
use std::net::IpAddr;

#[derive(Clone, Debug, Default)]
pub struct ClickHouseConfig {
    /// `http://host:8123`: the node searches and inserts go to.
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// A sharded deployment: the data lives in `events_local` on every
    /// node, and `events` is a `Distributed` table over the cluster.
    pub cluster: Option<Cluster>,
}

/// A cluster named in the servers' `remote_servers`, and the HTTP address
/// of every node holding a shard (or replica), where the store creates,
/// checks and drops its local tables.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub name: String,
    pub nodes: Vec<String>,
}

pub struct ClickHouseStore {
    client: clickhouse::Client,
    rt: tokio::runtime::Runtime,
    catalog: Catalog,
    /// What searches and inserts name: `db.events`.
    table: String,
    /// Where rows are stored on each node: `db.events`, or `db.events_local`
    /// under a `Distributed` `db.events` in a cluster.
    local: String,
    /// Every node holding rows (the one node when not a cluster).
    nodes: Vec<clickhouse::Client>,
    /// `INSERT INTO … (columns) FORMAT RowBinary`, the catalog's columns after
    /// the fixed ones, in `kinds`' order.
    insert: String,
    kinds: Vec<Kind>,
    /// Field path → (index in `kinds`, kind).
    slots: std::collections::HashMap<String, (usize, Kind)>,
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
            let items: Vec<String> =
                v.and_then(Value::as_array).into_iter().flatten().filter_map(super::text_of).collect();
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
        Kind::Addr => match v.and_then(Value::as_str).and_then(|s| s.parse::<IpAddr>().ok()) {
            Some(ip) => {
                out.push(0);
                put_str(out, &ip.to_string());
            }
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

/// Columns of the events table, in order: (name, type).
pub fn columns(catalog: &Catalog) -> Vec<(String, String)> {
    let mut cols: Vec<(String, String)> = vec![
        ("_class".into(), "String".into()),
        ("_day".into(), "Date".into()),
        ("_ts".into(), "Float64".into()),
        ("_log".into(), "String".into()),
        ("_sensor".into(), "String".into()),
        ("_all".into(), "String".into()),
        ("_raw".into(), "String".into()),
    ];
    for f in &catalog.fields {
        if f.path == LOG_FIELD || f.path == SENSOR_FIELD {
            continue;
        }
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

/// The `Distributed` table over the cluster's `events_local` tables. Its
/// address columns are aliases: inserts leave them to each shard's
/// MATERIALIZED columns, and queries read those.
pub fn distributed_ddl(catalog: &Catalog, db: &str, cluster: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {db}.events (\n{}\n) ENGINE = Distributed({cluster}, {db}, events_local, rand())",
        column_defs(catalog, "ALIAS")
    )
}

/// The catalog's columns as DDL, each address's bytes computed from its
/// text as `how` says (MATERIALIZED where stored, ALIAS where read through).
fn column_defs(catalog: &Catalog, how: &str) -> String {
    let cols: Vec<String> = columns(catalog)
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

/// The table's DDL, derived from the catalog.
pub fn ddl(catalog: &Catalog, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (\n{}\n) ENGINE = MergeTree() PARTITION BY (_class, _day) ORDER BY (_day, _log, _ts)",
        column_defs(catalog, "MATERIALIZED")
    )
}

impl ClickHouseStore {
    /// Connects, creates the database and table if missing, and refuses a
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
            let mut client = clickhouse::Client::default().with_url(url).with_validation(false);
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
        let (local, nodes) = match &cfg.cluster {
            Some(c) => {
                if c.nodes.is_empty() || !c.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(StoreError::Invalid(format!(
                        "cluster '{}' needs a name of letters, digits and _ and at least one node",
                        c.name
                    )));
                }
                (format!("{db}.events_local"), c.nodes.iter().map(|u| connect(u)).collect())
            }
            None => (format!("{db}.events"), vec![client.clone()]),
        };
        let catalog = Catalog::new();
        let table = format!("{db}.events");
        let mut names: Vec<String> =
            ["_class", "_day", "_ts", "_log", "_sensor", "_all", "_raw"].iter().map(|c| format!("`{c}`")).collect();
        let (mut kinds, mut slots) = (Vec::new(), std::collections::HashMap::new());
        for f in &catalog.fields {
            if f.path == LOG_FIELD || f.path == SENSOR_FIELD {
                continue;
            }
            slots.insert(f.path.clone(), (kinds.len(), f.kind));
            kinds.push(f.kind);
            names.push(format!("`{}`", column(&f.path)));
        }
        let insert = format!("INSERT INTO {table} ({}) FORMAT RowBinary", names.join(", "));
        let store = ClickHouseStore { client, rt, catalog, table, local, nodes, insert, kinds, slots };
        for node in &store.nodes {
            store.exec_on(node, &format!("CREATE DATABASE IF NOT EXISTS {db}"), &[])?;
            store.exec_on(node, &ddl(&store.catalog, &store.local), &[])?;
            store.check_schema(node, db, store.local_name())?;
            let batches = format!("{db}.ingest_batches{}", if cfg.cluster.is_some() { "_local" } else { "" });
            store.exec_on(node, &batches_ddl(&batches), &[])?;
            if let Some(c) = &cfg.cluster {
                store.exec_on(node, &distributed_ddl(&store.catalog, db, &c.name), &[])?;
                store.check_schema(node, db, "events")?;
                store.exec_on(
                    node,
                    &format!(
                        "CREATE TABLE IF NOT EXISTS {db}.ingest_batches AS {batches} ENGINE = Distributed({}, {db}, ingest_batches_local, cityHash64(sensor, id))",
                        c.name
                    ),
                    &[],
                )?;
            }
        }
        Ok(store)
    }

    fn batches(&self) -> String {
        format!("{}_batches", self.table.replace(".events", ".ingest"))
    }

    fn local_name(&self) -> &str {
        self.local.split_once('.').map_or("events", |(_, t)| t)
    }

    fn check_schema(&self, node: &clickhouse::Client, db: &str, table: &str) -> Result<()> {
        let rows = self.fetch_on(
            node,
            "SELECT name, type FROM system.columns WHERE database = ? AND table = ?",
            &[Arg::Str(db.to_string()), Arg::Str(table.to_string())],
        )?;
        let have: Vec<(String, String)> = rows
            .iter()
            .map(|r| (r["name"].as_str().unwrap_or("").to_string(), r["type"].as_str().unwrap_or("").to_string()))
            .collect();
        let want = columns(&self.catalog);
        if have.len() != want.len() || want.iter().any(|w| !have.contains(w)) {
            let diff: Vec<String> = want
                .iter()
                .filter(|w| !have.contains(w))
                .map(|(n, t)| format!("{n} {t}"))
                .chain(have.iter().filter(|h| !want.contains(h)).map(|(n, t)| format!("unexpected {n} {t}")))
                .take(10)
                .collect();
            return Err(StoreError::Backend(format!(
                "table {db}.{table} disagrees with the field catalog: {}",
                diff.join(", ")
            )));
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

    /// Appends a record to a `RowBinary` body in the order of `self.insert`'s
    /// columns: the server reads typed bytes instead of parsing JSON, which
    /// at 200-odd columns was most of an insert's cost.
    fn encode<'r>(&self, r: &'r Record, present: &mut Vec<(usize, Kind, &'r Value)>, out: &mut Vec<u8>) {
        put_str(out, r.class().name());
        // Validation keeps ts within 1970..2100, inside Date's range.
        out.extend_from_slice(&((r.ts / 86_400.0).floor() as u16).to_le_bytes());
        out.extend_from_slice(&r.ts.to_le_bytes());
        put_str(out, &r.log);
        put_str(out, &r.sensor);
        put_str(out, &r.all_text());
        put_str(out, &r.raw_json());
        present.clear();
        for (k, v) in &r.fields {
            if let Some(&(i, kind)) = self.slots.get(k.as_str()) {
                present.push((i, kind, v));
            }
        }
        present.sort_unstable_by_key(|p| p.0);
        let mut next = present.iter().peekable();
        for (i, kind) in self.kinds.iter().enumerate() {
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

    /// Active partitions: key, server id, rows, bytes on disk.
    /// Active partitions on every node, summed: key, server id, rows, bytes.
    fn parts(&self) -> Result<Vec<(PartKey, String, u64, u64)>> {
        let (db, table) = self.local.split_once('.').unwrap_or(("default", "events"));
        let num = |v: &Value| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or(0);
        let mut all: std::collections::BTreeMap<(PartKey, String), (u64, u64)> = Default::default();
        for node in &self.nodes {
            let rows = self.fetch_on(
                node,
                "SELECT partition, partition_id, sum(rows) AS r, sum(bytes_on_disk) AS b FROM system.parts WHERE database = ? AND table = ? AND active GROUP BY partition, partition_id",
                &[Arg::Str(db.into()), Arg::Str(table.into())],
            )?;
            for r in &rows {
                let (Some(key), Some(id)) =
                    (r["partition"].as_str().and_then(parse_partition), r["partition_id"].as_str())
                else {
                    continue;
                };
                let e = all.entry((key, id.to_string())).or_default();
                e.0 += num(&r["r"]);
                e.1 += num(&r["b"]);
            }
        }
        Ok(all.into_iter().map(|((k, id), (r, b))| (k, id, r, b)).collect())
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

    /// The query as a SQL condition; every leaf is wrapped so that NULL
    /// (the field is absent) counts as false, as in Tantivy.
    fn sql(&self, q: &Query, args: &mut Vec<Arg>) -> Result<String> {
        Ok(match q {
            Query::All => "1".into(),
            Query::And(v) => {
                let parts: Result<Vec<String>> = v.iter().map(|x| self.sql(x, args)).collect();
                format!("({})", parts?.join(" AND "))
            }
            Query::Or(v) => {
                let parts: Result<Vec<String>> = v.iter().map(|x| self.sql(x, args)).collect();
                format!("({})", parts?.join(" OR "))
            }
            Query::Not(x) => format!("(NOT {})", self.sql(x, args)?),
            Query::Term { field, value } => {
                let c = column(field);
                let kind = self.kind(field)?;
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
        })
    }

    fn where_clause(&self, q: &Query, from: Option<f64>, to: Option<f64>, args: &mut Vec<Arg>) -> Result<String> {
        let mut w = self.sql(q, args)?;
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
        if records.is_empty() {
            return Ok(());
        }
        // The body goes out in pieces as it is encoded, so the server parses
        // one piece while the next is made: one insert (one part per
        // partition), two cores busy.
        const PIECE: usize = 4096;
        let mut ins = self.client.insert_formatted_with(self.insert.clone());
        let mut present = Vec::new();
        for piece in records.chunks(PIECE) {
            let mut body = Vec::with_capacity(piece.len() * 600);
            for r in piece {
                self.encode(r, &mut present, &mut body);
            }
            self.rt.block_on(ins.send(body.into())).map_err(backend)?;
        }
        self.rt.block_on(ins.end()).map_err(backend)
    }

    fn search(&self, req: &SearchRequest) -> Result<SearchResult> {
        req.check(&self.catalog)?;
        let mut args = Vec::new();
        let w = self.where_clause(&req.query, req.from, req.to, &mut args)?;
        let count = format!("SELECT count() AS n FROM {} WHERE {w}", self.table);
        let c = column(&req.sort.field);
        let dir = if req.sort.descending { "DESC" } else { "ASC" };
        // Records without the sort field last; ties in time order, then by
        // content, so pages are stable.
        let page = format!(
            "SELECT _raw FROM {} WHERE {w} ORDER BY isNull(`{c}`), `{c}` {dir}, _ts {dir}, _raw LIMIT {} OFFSET {}",
            self.table, req.limit, req.offset
        );
        let mut out = self.fetch_all(&[(&count, &args), (&page, &args)])?.into_iter();
        let (total, rows) = (out.next().unwrap_or_default(), out.next().unwrap_or_default());
        let total =
            total.first().and_then(|r| r["n"].as_str().and_then(|s| s.parse().ok()).or(r["n"].as_u64())).unwrap_or(0);
        let hits = rows
            .iter()
            .map(|r| serde_json::from_str(r["_raw"].as_str().unwrap_or("null")).unwrap_or(Value::Null))
            .collect();
        Ok(SearchResult { total, hits })
    }

    fn aggregate(&self, query: &Query, from: Option<f64>, to: Option<f64>, agg: &Agg) -> Result<AggResult> {
        agg.check(&self.catalog)?;
        super::check_range(from, to)?;
        let mut args = Vec::new();
        let w = self.where_clause(query, from, to, &mut args)?;
        let t = &self.table;
        let num = |v: &Value| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
        Ok(match agg {
            Agg::Terms { field, size } => {
                let c = column(field);
                let kind = self.kind(field)?;
                let key = match kind {
                    Kind::StrSet => format!("arrayJoin(`{c}`)"),
                    Kind::Bool => format!("if(`{c}` = 1, 'true', 'false')"),
                    _ => format!("toString(`{c}`)"),
                };
                let cond = if kind == Kind::StrSet { "1".to_string() } else { format!("isNotNull(`{c}`)") };
                let sql = format!(
                    "SELECT {key} AS k, count() AS n FROM {t} WHERE {w} AND {cond} GROUP BY k ORDER BY n DESC, k ASC LIMIT {size}"
                );
                let rows = self.fetch(&sql, &args)?;
                AggResult::Buckets(
                    rows.iter()
                        .map(|r| Bucket {
                            key: r["k"].as_str().unwrap_or("").to_string(),
                            count: num(&r["n"]).unwrap_or(0.0) as u64,
                        })
                        .collect(),
                )
            }
            Agg::Histogram { interval_secs } => {
                // Binds follow the text: the SELECT's before the WHERE's.
                let mut a2 = vec![Arg::F64(*interval_secs), Arg::F64(*interval_secs)];
                a2.extend(args.iter().cloned());
                let sql =
                    format!("SELECT floor(_ts / ?) * ? AS b, count() AS n FROM {t} WHERE {w} GROUP BY b ORDER BY b");
                let rows = self.fetch(&sql, &a2)?;
                AggResult::Buckets(
                    rows.iter()
                        .map(|r| {
                            let b = num(&r["b"]).unwrap_or(0.0);
                            let key = if b.fract() == 0.0 { format!("{}", b as i64) } else { b.to_string() };
                            Bucket { key, count: num(&r["n"]).unwrap_or(0.0) as u64 }
                        })
                        .collect(),
                )
            }
            Agg::Stats { field } => {
                let c = column(field);
                let sql = format!(
                    "SELECT count(`{c}`) AS n, sum(`{c}`) AS s, avg(`{c}`) AS a, min(`{c}`) AS lo, max(`{c}`) AS hi FROM {t} WHERE {w}"
                );
                let rows = self.fetch(&sql, &args)?;
                let r = rows.first().cloned().unwrap_or(Value::Null);
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
                let sql = format!("SELECT uniqExact({expr}) AS n FROM {t} WHERE {w}");
                let rows = self.fetch(&sql, &args)?;
                AggResult::Value { value: rows.first().and_then(|r| num(&r["n"])).unwrap_or(0.0) as u64 }
            }
        })
    }

    fn partitions(&self) -> Result<Vec<Partition>> {
        let mut out: Vec<Partition> = self
            .parts()?
            .into_iter()
            .map(|(key, _, records, bytes)| Partition { class: key.class, day: key.day, records, bytes })
            .collect();
        out.sort_by(|a, b| (a.class, &a.day).cmp(&(b.class, &b.day)));
        Ok(out)
    }

    fn drop_partition(&self, class: Class, day: &str) -> Result<bool> {
        let Some((_, id, _, _)) = self.parts()?.into_iter().find(|(k, ..)| k.class == class && k.day == day) else {
            return Ok(false);
        };
        // Partition ids are hex digests made by the server; checked anyway,
        // since ALTER takes no bound parameters.
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(StoreError::Backend(format!("unexpected partition id '{id}'")));
        }
        for node in &self.nodes {
            // A node without that day drops nothing and says nothing.
            self.exec_on(node, &format!("ALTER TABLE {} DROP PARTITION ID '{id}'", self.local), &[])?;
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
        let n = rows.first().and_then(|r| r["n"].as_u64().or_else(|| r["n"].as_str().and_then(|s| s.parse().ok())));
        Ok(n.unwrap_or(0) > 0)
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
        let w = self.sql(query, &mut args)?;
        let n = self.fetch(&format!("SELECT count() AS n FROM {} WHERE {w}", self.table), &args)?;
        let n = n
            .first()
            .and_then(|r| r["n"].as_u64().or_else(|| r["n"].as_str().and_then(|s| s.parse().ok())))
            .unwrap_or(0);
        // Mutations run in the background; wait for them so the effect is
        // visible when this returns.
        for node in &self.nodes {
            self.exec_on(node, &format!("ALTER TABLE {} DELETE WHERE {w}", self.local), &args)?;
        }
        let table = Arg::Str(self.local_name().to_string());
        for node in &self.nodes {
            for _ in 0..600 {
                let pending = self.fetch_on(
                    node,
                    "SELECT count() AS n FROM system.mutations WHERE is_done = 0 AND table = ?",
                    std::slice::from_ref(&table),
                )?;
                let left = pending
                    .first()
                    .and_then(|r| r["n"].as_u64().or_else(|| r["n"].as_str().and_then(|s| s.parse().ok())))
                    .unwrap_or(0);
                if left == 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
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
    fn like_escapes_its_own_wildcards() {
        assert_eq!(like_pattern("*.duckdns.org"), "%.duckdns.org");
        assert_eq!(like_pattern("100%_x?"), "100\\%\\_x_");
        assert_eq!(like_pattern("a\\*b"), "a*b");
    }

    #[test]
    fn ddl_follows_the_catalog() {
        let d = ddl(&Catalog::new(), "db.events");
        assert!(d.contains("`id_orig_h` Nullable(String)"));
        assert!(d.contains("`tunnel_parents` Array(String)"));
        assert!(d.contains("PARTITION BY (_class, _day)"));
    }
}
