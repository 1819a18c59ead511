//! One storage interface, two backends (Tantivy on disk, ClickHouse), and
//! what they share: record validation, requests and results. Both pass the
//! same conformance suite (`tests/store_conformance.rs`).

pub mod clickhouse;
pub mod tantivy;

use crate::query::Query;
use crate::schema::{Catalog, Kind, EXTRA_FIELD, LOG_FIELD, SENSOR_FIELD};
use serde::Serialize;
use serde_json::{Map, Value};
use std::net::IpAddr;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("storage: {0}")]
    Backend(String),
    #[error("storage I/O on {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A validated record: its log, sensor, time, and its fields as sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub log: String,
    pub sensor: String,
    pub ts: f64,
    /// The record's own fields (no `_log`/`_sensor`).
    pub fields: Map<String, Value>,
}

/// Largest record accepted, serialised.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

impl Record {
    /// Checks a record against the catalog: a known log, its fields with
    /// values of their type, a time. The message names what is wrong.
    /// Fields the catalog does not list for the log (a site's own Zeek
    /// fields) are kept in the overflow field `_extra`, as one JSON object,
    /// rather than costing the whole record (`has_extra` tells).
    pub fn validate(
        catalog: &Catalog,
        log: &str,
        sensor: &str,
        mut fields: Map<String, Value>,
    ) -> std::result::Result<Record, String> {
        if !catalog.is_log(log) {
            return Err(format!("unknown log '{log}'"));
        }
        let mut extra = Map::new();
        for (k, v) in &fields {
            // A record's own `_extra` is one of its unknown fields too.
            match catalog.field(k).filter(|f| k != EXTRA_FIELD && f.logs.contains(&log)) {
                None => {
                    extra.insert(k.clone(), v.clone());
                }
                Some(f) if !value_fits(f.kind, v) => {
                    return Err(format!("field '{k}' should be a {}", f.kind.name()));
                }
                Some(_) => {}
            }
        }
        if !extra.is_empty() {
            for k in extra.keys() {
                fields.remove(k);
            }
            fields.insert(EXTRA_FIELD.into(), Value::String(Value::Object(extra).to_string()));
        }
        let ts = fields.get("ts").and_then(Value::as_f64).ok_or("missing ts")?;
        if !(0.0..=MAX_TS).contains(&ts) {
            return Err(format!("ts {ts} is out of range"));
        }
        Ok(Record { log: log.to_string(), sensor: sensor.to_string(), ts, fields })
    }

    /// Whether fields the catalog does not list were kept in `_extra`.
    pub fn has_extra(&self) -> bool {
        self.fields.contains_key(EXTRA_FIELD)
    }

    /// The UTC day of the record: its partition.
    pub fn class(&self) -> Class {
        Class::of_log(&self.log)
    }

    pub fn day(&self) -> String {
        day_of(self.ts)
    }

    /// The record as returned by searches: its fields plus `_log` and `_sensor`.
    pub fn to_json(&self) -> Value {
        let mut m = self.fields.clone();
        m.insert(LOG_FIELD.into(), Value::String(self.log.clone()));
        m.insert(SENSOR_FIELD.into(), Value::String(self.sensor.clone()));
        Value::Object(m)
    }

    /// `to_json` serialised to a buffer, without copying the fields first:
    /// both stores keep this text whole beside their indexes.
    pub fn write_raw_json(&self, out: &mut Vec<u8>) {
        struct Raw<'a>(&'a Record);
        impl Serialize for Raw<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let r = self.0;
                let mut m = s.serialize_map(Some(r.fields.len() + 2))?;
                for (k, v) in &r.fields {
                    m.serialize_entry(k, v)?;
                }
                m.serialize_entry(LOG_FIELD, &r.log)?;
                m.serialize_entry(SENSOR_FIELD, &r.sensor)?;
                m.end()
            }
        }
        // Writing a map of strings and JSON values to memory cannot fail.
        let _ = serde_json::to_writer(out, &Raw(self));
    }
}

/// Appends the words of a free-text field's value (`Catalog::free_text`) to
/// a record's `_all` text: lower-cased, one space between values. Each store
/// calls it from its own pass over the record's fields, where it already
/// looked the field up.
pub(crate) fn append_words(out: &mut String, v: &Value) {
    let mut push = |s: &str| {
        if !out.is_empty() {
            out.push(' ');
        }
        // Most values are ASCII: lower-cased in place, without the
        // allocation of `to_lowercase`.
        if s.is_ascii() {
            let at = out.len();
            out.push_str(s);
            out[at..].make_ascii_lowercase();
        } else {
            out.push_str(&s.to_lowercase());
        }
    };
    match v {
        Value::String(s) => push(s),
        Value::Array(a) => a.iter().filter_map(Value::as_str).for_each(&mut push),
        _ => {}
    }
}

fn value_fits(kind: Kind, v: &Value) -> bool {
    match kind {
        Kind::Str => v.is_string() || v.is_number(),
        Kind::StrSet => v.as_array().is_some_and(|a| a.iter().all(|x| x.is_string() || x.is_number())),
        Kind::Addr => v.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
        Kind::Count => v.as_u64().is_some(),
        Kind::Float => v.as_f64().is_some_and(f64::is_finite),
        Kind::Bool => v.is_boolean(),
    }
}

/// Text of a value for text columns (numbers in a text field keep their
/// JSON form: ssh.log's `version` 2 is "2").
pub fn text_of(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s)),
        Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
        _ => None,
    }
}

pub fn day_of(ts: f64) -> String {
    // Times outside 0001..9999 name no day a store holds; clamping keeps
    // the calendar arithmetic in range for any input.
    let ts = if ts.is_finite() { ts.clamp(-62_000_000_000.0, 253_000_000_000.0) } else { 0.0 };
    let days = (ts / 86_400.0).floor() as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

/// Seconds since the epoch at the start of a `YYYY-MM-DD` day.
pub fn day_start(day: &str) -> Option<f64> {
    let mut it = day.split('-');
    let (y, m, d): (i64, i64, i64) = (it.next()?.parse().ok()?, it.next()?.parse().ok()?, it.next()?.parse().ok()?);
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(((era * 146_097 + doe - 719_468) * 86_400) as f64)
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sort {
    /// A count or number field.
    pub field: String,
    pub descending: bool,
}

#[derive(Clone, Debug)]
pub struct SearchRequest {
    pub query: Query,
    /// Time range on `ts`, `[from, to)`.
    pub from: Option<f64>,
    pub to: Option<f64>,
    pub sort: Sort,
    pub limit: usize,
    pub offset: usize,
    /// Continue after this position (the `next` of the previous page)
    /// instead of an offset: pages of a whole range, however deep.
    pub after: Option<Cursor>,
}

/// A position in a search's order, the same on every store.
///
/// The order: records with the sort field first; then the field's value,
/// then `ts`, in the requested direction; then the record's stored text
/// (`_raw`), ascending. Values and times are compared as whole microseconds
/// (`floor(v × 10⁶)`; counts as they are), which both stores compute
/// exactly alike from the same doubles, and which a cursor carries as
/// integers. A cursor names the last hit's key and how many hits with that
/// same key came up to it (`seen`); the next page starts after them.
#[derive(Clone, Debug, PartialEq)]
pub struct Cursor {
    pub field: String,
    pub descending: bool,
    /// The last hit has the sort field.
    pub has: bool,
    /// Its value (counts) or whole microseconds of it (numbers); 0 without.
    pub key: f64,
    /// Whole microseconds of its `ts`.
    pub ts_us: f64,
    /// Hits of this key up to and including the last one.
    pub seen: usize,
}

/// Most records sharing one key (sort value and time) that a page can start
/// or end within: the embedded store reads them all to order them by text.
pub const MAX_TIE: usize = 20_000;

/// Whole microseconds of a time or number, as both stores compute them.
pub fn micros(v: f64) -> f64 {
    (v * 1e6).floor()
}

impl Cursor {
    /// The cursor as text: `c1.<field>.<a|d>.<has>.<key>.<ts µs>.<seen>`.
    pub fn encode(&self) -> String {
        format!(
            "c1.{}.{}.{}.{}.{}.{}",
            self.field,
            if self.descending { "d" } else { "a" },
            u8::from(self.has),
            self.key,
            self.ts_us,
            self.seen
        )
    }

    pub fn decode(text: &str) -> std::result::Result<Cursor, String> {
        let bad = || format!("'{}' is not a cursor of this search", text.chars().take(80).collect::<String>());
        let rest = text.strip_prefix("c1.").ok_or_else(bad)?;
        // The field may hold dots; the five parts after it do not.
        let parts: Vec<&str> = rest.rsplitn(6, '.').collect();
        let [seen, ts_us, key, has, dir, field] = parts.as_slice() else { return Err(bad()) };
        // Whole numbers a double holds exactly (both stores compare them
        // so); `seen` no more than a page can start within.
        let num = |s: &str| s.parse::<f64>().ok().filter(|f| f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0);
        Ok(Cursor {
            field: field.to_string(),
            descending: match *dir {
                "d" => true,
                "a" => false,
                _ => return Err(bad()),
            },
            has: match *has {
                "1" => true,
                "0" => false,
                _ => return Err(bad()),
            },
            key: num(key).ok_or_else(bad)?,
            ts_us: num(ts_us).ok_or_else(bad)?,
            seen: seen.parse().ok().filter(|n| *n <= MAX_TIE).ok_or_else(bad)?,
        })
    }
}

/// Latest time accepted in a range (2100-01-01), as records' `ts`.
pub const MAX_TS: f64 = 4_102_444_800.0;

/// A time as people paste it, a time without an offset read as UTC (see
/// [`crate::timerange::parse_time`], which this is in UTC).
pub fn parse_time(text: &str) -> std::result::Result<f64, String> {
    crate::timerange::parse_time(text, &chrono::Utc, crate::timerange::now())
}

/// A time as RFC 3339 in UTC, to the microsecond where it has one.
pub fn iso_time(t: f64) -> Option<String> {
    let us = (t * 1e6).round();
    if !us.is_finite() || us.abs() > 1e17 {
        return None;
    }
    let d = chrono::DateTime::from_timestamp_micros(us as i64)?;
    Some(d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// A time range must be finite, within the times records may have, and
/// ordered.
pub fn check_range(from: Option<f64>, to: Option<f64>) -> Result<()> {
    for t in [from, to].into_iter().flatten() {
        if !(0.0..=MAX_TS).contains(&t) {
            return Err(StoreError::Invalid(format!("time {t} is outside 0..={MAX_TS}")));
        }
    }
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(StoreError::Invalid("from is after to".into()));
        }
    }
    Ok(())
}

/// Most hits returned by one search, and deepest page.
pub const MAX_LIMIT: usize = 10_000;

impl SearchRequest {
    pub fn new(query: Query) -> Self {
        SearchRequest {
            query,
            from: None,
            to: None,
            sort: Sort { field: "ts".into(), descending: true },
            limit: 100,
            offset: 0,
            after: None,
        }
    }

    pub fn check(&self, catalog: &Catalog) -> Result<()> {
        check_range(self.from, self.to)?;
        match catalog.kind(&self.sort.field) {
            Some(Kind::Count | Kind::Float) => {}
            _ => {
                return Err(StoreError::Invalid(format!(
                    "cannot sort by '{}': sort by a number field",
                    self.sort.field
                )))
            }
        }
        if self.limit > MAX_LIMIT || self.offset > MAX_LIMIT {
            return Err(StoreError::Invalid(format!(
                "limit and offset are at most {MAX_LIMIT}; page deeper with the cursor (next_cursor)"
            )));
        }
        if let Some(c) = &self.after {
            if c.field != self.sort.field || c.descending != self.sort.descending {
                return Err(StoreError::Invalid("the cursor is of a search in another order".into()));
            }
            if self.offset > 0 {
                return Err(StoreError::Invalid("a cursor takes no offset".into()));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SearchResult {
    /// Matching records in the time range (all of them, not just this page).
    pub total: u64,
    pub hits: Vec<Value>,
    /// Where the next page starts, when this one is full.
    #[serde(skip)]
    pub next: Option<Cursor>,
}

/// The cursor after a page: `keys` are the hits' (has, key, ts µs), in
/// order; `after` the cursor the page started from.
pub fn next_cursor(req: &SearchRequest, keys: &[(bool, f64, f64)]) -> Option<Cursor> {
    if keys.len() < req.limit || req.limit == 0 {
        return None;
    }
    let last = *keys.last()?;
    let mut seen = keys.iter().rev().take_while(|k| **k == last).count();
    if let Some(a) = &req.after {
        if (a.has, a.key, a.ts_us) == last {
            seen += a.seen;
        }
    }
    Some(Cursor {
        field: req.sort.field.clone(),
        descending: req.sort.descending,
        has: last.0,
        key: last.1,
        ts_us: last.2,
        seen,
    })
}

#[derive(Clone, Debug, PartialEq)]
pub enum Agg {
    /// The values of a field, counted exactly, most frequent first (ties
    /// by value text). With `sum` (count fields, such as a flow's
    /// `orig_bytes` and `resp_bytes`), each bucket also carries the total
    /// of those fields over its records, and buckets come largest total
    /// first (then most frequent, then by text).
    Terms { field: String, size: usize, sum: Vec<String> },
    /// Counts per time bucket of `interval_secs` on `ts`; an interval too
    /// fine for the records' span is widened (`histogram_interval`).
    Histogram { interval_secs: f64 },
    /// count, sum, avg, min, max of a number field.
    Stats { field: String },
    /// Distinct values of a field, counted exactly.
    Cardinality { field: String },
}

impl Agg {
    /// Terms by count.
    pub fn terms(field: &str, size: usize) -> Agg {
        Agg::Terms { field: field.into(), size, sum: Vec::new() }
    }

    pub fn check(&self, catalog: &Catalog) -> Result<()> {
        let need = |f: &str, ok: &dyn Fn(Kind) -> bool, what: &str| match catalog.kind(f) {
            Some(k) if ok(k) => Ok(()),
            Some(k) => Err(StoreError::Invalid(format!("'{f}' is a {}; {what}", k.name()))),
            None => Err(StoreError::Invalid(format!("unknown field '{f}'"))),
        };
        match self {
            Agg::Terms { field, size, sum } => {
                if *size == 0 || *size > 1000 {
                    return Err(StoreError::Invalid("terms size is 1..=1000".into()));
                }
                if sum.len() > 4 {
                    return Err(StoreError::Invalid("terms sum at most 4 fields".into()));
                }
                for s in sum {
                    need(s, &|k| k == Kind::Count, "terms sum count fields")?;
                }
                need(field, &|k| k != Kind::Float, "terms need a text, address, count or boolean field")
            }
            Agg::Histogram { interval_secs } => {
                if !(*interval_secs >= 1.0 && interval_secs.is_finite()) {
                    return Err(StoreError::Invalid("histogram interval is at least 1 second".into()));
                }
                Ok(())
            }
            Agg::Stats { field } => {
                need(field, &|k| matches!(k, Kind::Count | Kind::Float), "stats need a number field")
            }
            Agg::Cardinality { field } => {
                need(field, &|k| k != Kind::Float, "cardinality needs a text, address, count or boolean field")
            }
        }
    }
}

/// Terms buckets from exact (value, count, sum) groups, in the order of
/// `Agg::Terms`, cut at `size`: both stores order their groups here or
/// exactly alike.
pub fn top_terms(groups: impl IntoIterator<Item = (String, u64, u64)>, size: usize, by_sum: bool) -> Vec<Bucket> {
    let mut all: Vec<(String, u64, u64)> = groups.into_iter().filter(|g| g.1 > 0).collect();
    all.sort_by(|a, b| {
        let by = if by_sum { b.2.cmp(&a.2) } else { std::cmp::Ordering::Equal };
        by.then_with(|| b.1.cmp(&a.1)).then_with(|| a.0.cmp(&b.0))
    });
    all.truncate(size);
    all.into_iter().map(|(key, count, sum)| Bucket { key, count, sum: by_sum.then_some(sum) }).collect()
}

/// Most buckets a histogram answers with.
pub const MAX_BUCKETS: usize = 10_000;

/// Intervals a histogram widens to, in seconds: round steps of a clock and
/// a calendar (1 s … 30 s, 1 min … 30 min, 1 h … 12 h, 1 day, 1 week).
const NICE_INTERVALS: [f64; 20] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 10_800.0, 21_600.0,
    43_200.0, 86_400.0, 172_800.0, 604_800.0,
];

/// The interval a histogram of records from `lo` to `hi` (their first and
/// last time) uses when `requested` is asked for: `requested` if its
/// buckets are at most `MAX_BUCKETS`, otherwise the finest round interval
/// whose buckets are (whole weeks past a week).
pub fn histogram_interval(requested: f64, lo: f64, hi: f64) -> f64 {
    let fits = |i: f64| (hi / i).floor() - (lo / i).floor() < MAX_BUCKETS as f64;
    if !lo.is_finite() || !hi.is_finite() || fits(requested) {
        return requested;
    }
    if let Some(i) = NICE_INTERVALS.iter().copied().find(|i| *i > requested && fits(*i)) {
        return i;
    }
    let week = 604_800.0;
    let mut i = (((hi - lo) / (MAX_BUCKETS - 1) as f64 / week).ceil() * week).max(requested.ceil());
    while !fits(i) {
        i += week;
    }
    i
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AggResult {
    /// (key, count): terms in the order of `Agg::Terms`.
    Buckets(Vec<Bucket>),
    /// Buckets by time (key = bucket start in seconds, empty ones left
    /// out), and the interval they are of: the one asked for or, where
    /// that would make more than `MAX_BUCKETS`, a wider one.
    Histogram {
        interval_secs: f64,
        requested_interval_secs: f64,
        buckets: Vec<Bucket>,
    },
    Stats {
        count: u64,
        sum: f64,
        avg: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
    },
    /// A count of distinct values, and how far it may be from the truth:
    /// both stores count exactly (`approximate` false, `relative_error`
    /// 0); the fields stay so that an estimating store says so.
    Value {
        value: u64,
        approximate: bool,
        relative_error: f64,
    },
}

impl AggResult {
    /// The buckets of terms or a histogram.
    pub fn buckets(self) -> Vec<Bucket> {
        match self {
            AggResult::Buckets(b) | AggResult::Histogram { buckets: b, .. } => b,
            _ => Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bucket {
    pub key: String,
    pub count: u64,
    /// The total of the summed fields over the bucket's records (terms
    /// with `sum`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sum: Option<u64>,
}

/// What a record is kept as, for retention: each class has its own age and
/// disk budget, since a city keeps alerts far longer than flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Alerts,
    Records,
    Flows,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Alerts, Class::Records, Class::Flows];

    /// `alerts.log` is alerts, `conn.log` flows, every other log a protocol
    /// record.
    pub fn of_log(log: &str) -> Class {
        match log {
            "alerts" => Class::Alerts,
            "conn" => Class::Flows,
            _ => Class::Records,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Alerts => "alerts",
            Class::Records => "records",
            Class::Flows => "flows",
        }
    }

    pub fn parse(s: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// The unit of retention: one class, one UTC day.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartKey {
    pub class: Class,
    pub day: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Partition {
    pub class: Class,
    pub day: String,
    pub records: u64,
    pub bytes: u64,
    /// When records were last written to it (epoch seconds), if the store
    /// knows: retention ages a day of replayed history from then.
    pub ingested: Option<f64>,
}

/// What every backend provides. Calls block: the HTTP layer runs them on a
/// blocking pool.
pub trait Store: Send + Sync {
    /// Stores the records durably before returning.
    fn ingest(&self, records: &[Record]) -> Result<()>;
    fn search(&self, req: &SearchRequest) -> Result<SearchResult>;
    fn aggregate(&self, query: &Query, from: Option<f64>, to: Option<f64>, agg: &Agg) -> Result<AggResult>;
    /// Partitions in (class, day) order.
    fn partitions(&self) -> Result<Vec<Partition>>;
    /// Drops one whole partition (retention); false if there was none.
    fn drop_partition(&self, class: Class, day: &str) -> Result<bool>;
    /// Deletes the records a query matches; returns how many.
    fn delete(&self, query: &Query) -> Result<u64>;
    fn name(&self) -> &'static str;
    /// Stores the records of one ingest batch: as `ingest`, with the batch
    /// (`batch_key`) named on every record (a Tantivy term, a ClickHouse
    /// column), so that what a batch stored can be found and undone after a
    /// crash between storing it and acknowledging it.
    fn ingest_batch(&self, records: &[Record], _batch: Option<&str>) -> Result<()> {
        self.ingest(records)
    }
    /// Whether the store keeps ingest batch ids itself, shared by every
    /// ingest node in front of it, and finds the parts of a batch already
    /// stored when it comes again (ClickHouse); otherwise the API keeps a
    /// ledger in its data folder and undoes what an unacknowledged batch
    /// stored (`unstore_batch`) before it is stored again.
    fn keeps_batch_ids(&self) -> bool {
        false
    }
    /// A batch of this sensor with this id was stored before (any of its
    /// records, as long as they are kept).
    fn batch_stored(&self, _sensor: &str, _id: &str) -> Result<bool> {
        Ok(false)
    }
    /// Deletes the records an ingest batch stored (by its `batch_key`), of a
    /// batch stored whole, in part, or not at all; returns how many.
    fn unstore_batch(&self, _key: &str) -> Result<u64> {
        Ok(0)
    }
    /// Remembers a stored batch (after its records are durable).
    fn remember_batch(&self, _sensor: &str, _id: &str) -> Result<()> {
        Ok(())
    }
}

/// How a batch is named on its records: the sensor, a space, its id (ids
/// have no spaces; a sensor's name may).
pub fn batch_key(sensor: &str, id: &str) -> String {
    format!("{sensor} {id}")
}

/// Partitions a time range touches (for pruning), given those present.
pub fn parts_in_range(parts: &[PartKey], from: Option<f64>, to: Option<f64>) -> Vec<PartKey> {
    let lo = from.map(day_of);
    let hi = to.map(|t| day_of(t - 1e-6));
    parts
        .iter()
        .filter(|p| lo.as_ref().is_none_or(|l| &p.day >= l) && hi.as_ref().is_none_or(|h| &p.day <= h))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_and_refuse_what_no_page_gives() {
        let c = Cursor { field: "id.resp_p".into(), descending: false, has: true, key: 443.0, ts_us: 1.7e15, seen: 3 };
        assert_eq!(Cursor::decode(&c.encode()), Ok(c));
        for bad in
            ["c1.ts.d.1.1e300.5.1", "c1.ts.d.1.5.5.99999999999", "c1.ts.x.1.5.5.1", "c1.ts.d.1.0.5", "ts.d.1.5.5.1"]
        {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_as_people_paste_them() {
        let t = 1_796_652_882.0;
        for s in [
            "1796652882",
            "2026-12-07T14:14:42Z",
            "2026-12-07t14:14:42z",
            "2026-12-07T21:14:42+07:00",
            "2026-12-07T21:14:42 07:00",
            "2026-12-07 14:14:42",
            "2026-12-07T14:14:42",
            "2026-12-07T14:14:42.000Z",
        ] {
            assert_eq!(parse_time(s), Ok(t), "{s}");
        }
        assert_eq!(parse_time("2026-12-07T14:14:42.25Z"), Ok(t + 0.25));
        assert_eq!(parse_time("2026-12-07T14:14"), Ok(t - 42.0));
        assert_eq!(parse_time("2026-12-07"), Ok(day_start("2026-12-07").unwrap()));
        assert_eq!(parse_time("1796645682.0149999"), Ok(1796645682.0149999));
        for bad in ["yesterday", "2026-13-01", "NaN", "inf", "", "2026-12-07T25:00Z"] {
            assert!(parse_time(bad).unwrap_err().contains("is not a time"), "{bad}");
        }
        assert_eq!(iso_time(t + 0.25).as_deref(), Some("2026-12-07T14:14:42.250Z"));
        assert_eq!(iso_time(t).as_deref(), Some("2026-12-07T14:14:42Z"));
    }

    #[test]
    fn days() {
        assert_eq!(day_of(0.0), "1970-01-01");
        assert_eq!(day_of(1_700_000_000.0), "2023-11-14");
        assert_eq!(day_of(951_782_400.0), "2000-02-29");
        assert_eq!(day_start("2023-11-14"), Some(1_699_920_000.0));
        assert_eq!(day_start(&day_of(1_700_000_000.0)).map(day_of), Some("2023-11-14".into()));
    }

    #[test]
    fn raw_json_is_to_json() {
        let c = Catalog::new();
        let fields = serde_json::json!({"ts": 1.5, "uid": "C\"1<", "id.orig_h": "10.0.0.1", "orig_bytes": 7});
        let r = Record::validate(&c, "conn", "s\n1", fields.as_object().unwrap().clone()).unwrap();
        let mut raw = Vec::new();
        r.write_raw_json(&mut raw);
        assert_eq!(serde_json::from_slice::<Value>(&raw).unwrap(), r.to_json());
    }

    #[test]
    fn validation_names_the_problem() {
        let c = Catalog::new();
        let m = |v: Value| v.as_object().unwrap().clone();
        assert!(Record::validate(&c, "conn", "s", m(serde_json::json!({"ts": 1.0, "uid": "C1"}))).is_ok());
        // Fields the log does not have are kept, in the overflow field.
        let r =
            Record::validate(&c, "conn", "s", m(serde_json::json!({"ts": 1.0, "query": "x", "site_tag": 7}))).unwrap();
        assert!(r.has_extra() && !r.fields.contains_key("query"));
        let extra: Value = serde_json::from_str(r.fields[EXTRA_FIELD].as_str().unwrap()).unwrap();
        assert_eq!(extra, serde_json::json!({"query": "x", "site_tag": 7}));
        // Even one named like the overflow field itself.
        let r = Record::validate(&c, "conn", "s", m(serde_json::json!({"ts": 1.0, "_extra": {"a": 1}}))).unwrap();
        assert_eq!(r.fields[EXTRA_FIELD], Value::String(r#"{"_extra":{"a":1}}"#.into()));
        assert!(!Record::validate(&c, "conn", "s", m(serde_json::json!({"ts": 1.0}))).unwrap().has_extra());
        let e = Record::validate(&c, "conn", "s", m(serde_json::json!({"ts": 1.0, "id.orig_h": "nope"}))).unwrap_err();
        assert_eq!(e, "field 'id.orig_h' should be a address");
        assert!(Record::validate(&c, "nosuch", "s", m(serde_json::json!({"ts": 1.0}))).is_err());
        assert!(Record::validate(&c, "conn", "s", m(serde_json::json!({"uid": "C1"}))).is_err());
    }
}
