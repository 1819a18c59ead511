//! The embedded store: one Tantivy index per class and UTC day under
//! `<data>/tantivy/<class>/<YYYY-MM-DD>/`, so retention drops whole
//! directories and searches visit only the days in their time range.
//!
//! Every catalog field is a fast column (text, addresses, counts,
//! numbers, booleans), which searches, sorts and aggregations read. The
//! only term indexes are the two terms of each boolean field and `_all`:
//! the words of the free-text fields (`Catalog::free_text`), tokenized.
//! The record itself is stored, as returned by searches.
//!
//! Why columns rather than a term index per field: most fields of network
//! records have one value per record or nearly (`uid`, `ts`, addresses,
//! ports, byte counts), so a term index per field spends most of the
//! indexing time on terms that match one record each, and a field lookup
//! over a day's column takes milliseconds (see the book's figures, docs/src/benchmarks.md).

use super::{
    append_words, parts_in_range, text_of, Agg, AggResult, Bucket, Class, PartKey, Partition, Record, Result,
    SearchRequest, SearchResult, Store, StoreError, MAX_TIE,
};
use crate::query::{tokens, Bound as QBound, Query};
use crate::schema::{column, Catalog, Kind, LOG_FIELD, SENSOR_FIELD};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tantivy::aggregation::agg_req::Aggregations;
use tantivy::aggregation::intermediate_agg_result::IntermediateAggregationResults;
use tantivy::aggregation::{AggContextParams, AggregationLimitsGuard, DistributedAggregationCollector};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{
    doc_predicate_query::{ConstOrVariableSegmentPredicate, DocPredicate, DocPredicateQuery, SegmentDocPredicate},
    AllQuery, AllScorer, BooleanQuery, ExistsQuery, Occur, PhraseQuery, Query as TQuery, RangeQuery, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value as _, FAST, INDEXED, STORED, STRING,
};
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

/// A record's place in a search's order (see `search`).
type Score = (f64, f64, f64);
/// The score of records before a cursor, below any record's.
const EXCLUDED: Score = (-1.0, 0.0, 0.0);

/// A partition's layout, written beside its index: what the schema does not
/// say, such as how column dictionaries are encoded (plain blocks since
/// layout 2: compressing them cost more indexing, merging and search time
/// than the few percent of disk it saved, see docs/src/benchmarks.md), so that a
/// partition another version wrote is refused at open, naming it. Layout 3
/// names each document's ingest batch and keeps unknown fields in `_extra`.
const LAYOUT: &str = "3";
const LAYOUT_FILE: &str = "citysoc-layout";

#[derive(Clone, Debug)]
pub struct TantivyConfig {
    /// Indexing memory per open day.
    pub writer_heap_mb: usize,
}

impl Default for TantivyConfig {
    fn default() -> Self {
        TantivyConfig { writer_heap_mb: 64 }
    }
}

struct Fields {
    schema: Schema,
    /// Field path → (column, kind, whether its words go to `_all`).
    by_path: HashMap<String, (Field, Kind, bool), foldhash::fast::FixedState>,
    all: Field,
    raw: Field,
    /// The ingest batch a document came in (`sensor id`), one untokenized
    /// term: whether a batch is stored, and undoing one that was stored but
    /// never acknowledged, are term lookups with no window of recent ids.
    batch: Field,
}

const ALL: &str = "_all";
const RAW: &str = "_raw";
const BATCH: &str = "_batch";

fn build_schema(catalog: &Catalog) -> Fields {
    let mut b = Schema::builder();
    let mut by_path = HashMap::default();
    for f in &catalog.fields {
        let name = column(&f.path);
        let field = match f.kind {
            Kind::Str | Kind::StrSet => b.add_text_field(&name, FAST),
            Kind::Addr => b.add_ip_addr_field(&name, FAST),
            Kind::Count => b.add_u64_field(&name, FAST),
            Kind::Float => b.add_f64_field(&name, FAST),
            // Tantivy reads no ranges over boolean columns; two terms
            // cost nothing to index.
            Kind::Bool => b.add_bool_field(&name, INDEXED | FAST),
        };
        by_path.insert(f.path.clone(), (field, f.kind, f.free_text));
    }
    let all = b.add_text_field(
        ALL,
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("default")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        ),
    );
    let raw = b.add_text_field(RAW, STORED);
    let batch = b.add_text_field(BATCH, STRING);
    Fields { schema: b.build(), by_path, all, raw, batch }
}

/// A wildcard on a field, matched against its fast column: for text, the
/// terms of each segment's dictionary the pattern accepts, then each
/// document's term numbers; for addresses, each distinct address of a
/// segment written out once.
struct Wildcard {
    col: String,
    kind: Kind,
    re: Arc<tantivy_fst::Regex>,
}

impl std::fmt::Debug for Wildcard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wildcard").field("col", &self.col).finish_non_exhaustive()
    }
}

fn accepts(re: &tantivy_fst::Regex, bytes: &[u8]) -> bool {
    use tantivy_fst::Automaton;
    let mut state = re.start();
    for &b in bytes {
        if !re.can_match(&state) {
            return false;
        }
        state = re.accept(&state, b);
    }
    re.is_match(&state)
}

enum WildcardSegment {
    Text { col: tantivy::columnar::StrColumn, ords: Vec<u64> },
    Addr { col: tantivy::columnar::Column<Ipv6Addr>, re: Arc<tantivy_fst::Regex>, seen: HashMap<Ipv6Addr, bool> },
}

impl SegmentDocPredicate for WildcardSegment {
    fn eval(&mut self, doc: tantivy::DocId) -> bool {
        match self {
            WildcardSegment::Text { col, ords } => col.term_ords(doc).any(|o| ords.binary_search(&o).is_ok()),
            WildcardSegment::Addr { col, re, seen } => col.values_for_doc(doc).any(|ip| {
                *seen.entry(ip).or_insert_with(|| {
                    // As the address is written everywhere else: IPv4 in
                    // dotted form, not as its mapped IPv6 form.
                    let text = match ip.to_ipv4_mapped() {
                        Some(v4) => v4.to_string(),
                        None => ip.to_string(),
                    };
                    accepts(re, text.as_bytes())
                })
            }),
        }
    }
}

impl DocPredicate for Wildcard {
    type SegmentDocPredicate = WildcardSegment;

    fn doc_predicate(
        &self,
        seg: &tantivy::SegmentReader,
    ) -> tantivy::Result<ConstOrVariableSegmentPredicate<WildcardSegment>> {
        let all = || Box::new(AllScorer::new(seg.max_doc())) as Box<dyn tantivy::DocSet>;
        let ff = seg.fast_fields();
        let predicate = if self.kind == Kind::Addr {
            let Some(col) = ff.column_opt::<Ipv6Addr>(&self.col)? else {
                return Ok(ConstOrVariableSegmentPredicate::Const(false));
            };
            WildcardSegment::Addr { col, re: Arc::clone(&self.re), seen: Default::default() }
        } else {
            let Some(col) = ff.str(&self.col)? else {
                return Ok(ConstOrVariableSegmentPredicate::Const(false));
            };
            let mut ords = Vec::new();
            let mut terms = col.dictionary().search(self.re.as_ref()).into_stream()?;
            while terms.advance() {
                ords.push(terms.term_ord());
            }
            if ords.is_empty() {
                return Ok(ConstOrVariableSegmentPredicate::Const(false));
            }
            WildcardSegment::Text { col, ords }
        };
        Ok(ConstOrVariableSegmentPredicate::Variable { predicate, necessary_condition: all() })
    }
}

fn wildcard(col: String, kind: Kind, re: Arc<tantivy_fst::Regex>) -> Box<dyn TQuery> {
    Box::new(DocPredicateQuery::from(Wildcard { col, kind, re }))
}

/// Exact counts per distinct value of one field, with the sum of some count
/// fields (a flow's bytes) per value: what `terms` and `cardinality` read.
///
/// Tantivy's own terms aggregation keeps each segment's top `segment_size`
/// terms and merges those, so a value frequent overall but spread over many
/// small segments (every acknowledged batch is a commit) is undercounted or
/// left out; its cardinality is a HyperLogLog estimate. Counting every
/// value of every segment instead is exact and costs what the aggregation
/// costs before its cut: one pass over the matching documents' column
/// values, a counter per term ordinal of a segment's dictionary, then one
/// map entry per distinct value (as ClickHouse's `GROUP BY` and
/// `uniqExact` hold them).
struct Groups {
    col: String,
    kind: Kind,
    sums: Vec<String>,
}

/// Value as text → (records, sum).
type GroupCounts = HashMap<String, (u64, u64)>;

enum GroupValues {
    Text(tantivy::columnar::StrColumn, Vec<(u64, u64)>),
    Addr(tantivy::columnar::Column<Ipv6Addr>, HashMap<Ipv6Addr, (u64, u64)>),
    Count(tantivy::columnar::Column<u64>, HashMap<u64, (u64, u64)>),
    Bool(tantivy::columnar::Column<bool>, [(u64, u64); 2]),
    None,
}

struct GroupSegment {
    values: GroupValues,
    sums: Vec<tantivy::columnar::Column<u64>>,
}

fn addr_text(ip: Ipv6Addr) -> String {
    // As the address is written everywhere else: IPv4 in dotted form.
    match ip.to_ipv4_mapped() {
        Some(v4) => v4.to_string(),
        None => ip.to_string(),
    }
}

impl tantivy::collector::SegmentCollector for GroupSegment {
    type Fruit = GroupCounts;

    fn collect(&mut self, doc: tantivy::DocId, _score: tantivy::Score) {
        let sum: u64 = self.sums.iter().filter_map(|c| c.first(doc)).fold(0u64, u64::saturating_add);
        let add = |e: &mut (u64, u64)| {
            e.0 += 1;
            e.1 = e.1.saturating_add(sum);
        };
        match &mut self.values {
            GroupValues::Text(col, counts) => {
                for o in col.term_ords(doc) {
                    if let Some(e) = counts.get_mut(o as usize) {
                        add(e);
                    }
                }
            }
            GroupValues::Addr(col, counts) => col.values_for_doc(doc).for_each(|v| add(counts.entry(v).or_default())),
            GroupValues::Count(col, counts) => col.values_for_doc(doc).for_each(|v| add(counts.entry(v).or_default())),
            GroupValues::Bool(col, counts) => col.values_for_doc(doc).for_each(|v| add(&mut counts[usize::from(v)])),
            GroupValues::None => {}
        }
    }

    fn harvest(self) -> GroupCounts {
        let mut out = GroupCounts::default();
        match self.values {
            GroupValues::Text(col, counts) => {
                // One pass over the dictionary in order (a lookup per
                // ordinal would seek and decode a block each time).
                if let Ok(mut terms) = col.dictionary().stream() {
                    while terms.advance() {
                        let c = counts.get(terms.term_ord() as usize).copied().unwrap_or_default();
                        if c.0 > 0 {
                            out.insert(String::from_utf8_lossy(terms.key()).into_owned(), c);
                        }
                    }
                }
            }
            GroupValues::Addr(_, counts) => out.extend(counts.into_iter().map(|(k, c)| (addr_text(k), c))),
            GroupValues::Count(_, counts) => out.extend(counts.into_iter().map(|(k, c)| (k.to_string(), c))),
            GroupValues::Bool(_, counts) => {
                for (k, c) in ["false", "true"].into_iter().zip(counts) {
                    if c.0 > 0 {
                        out.insert(k.to_string(), c);
                    }
                }
            }
            GroupValues::None => {}
        }
        out
    }
}

fn merge_groups(into: &mut GroupCounts, from: GroupCounts) {
    for (k, (n, s)) in from {
        let e = into.entry(k).or_default();
        e.0 += n;
        e.1 = e.1.saturating_add(s);
    }
}

impl tantivy::collector::Collector for Groups {
    type Fruit = GroupCounts;
    type Child = GroupSegment;

    fn for_segment(
        &self,
        _ord: tantivy::SegmentOrdinal,
        seg: &tantivy::SegmentReader,
    ) -> tantivy::Result<GroupSegment> {
        let ff = seg.fast_fields();
        let values = match self.kind {
            Kind::Str | Kind::StrSet => match ff.str(&self.col)? {
                Some(col) => {
                    let n = col.num_terms();
                    GroupValues::Text(col, vec![(0, 0); n])
                }
                None => GroupValues::None,
            },
            Kind::Addr => ff.column_opt(&self.col)?.map_or(GroupValues::None, |c| GroupValues::Addr(c, HashMap::new())),
            Kind::Count => {
                ff.column_opt(&self.col)?.map_or(GroupValues::None, |c| GroupValues::Count(c, HashMap::new()))
            }
            Kind::Bool => ff.column_opt(&self.col)?.map_or(GroupValues::None, |c| GroupValues::Bool(c, [(0, 0); 2])),
            // Agg::check refuses number fields for terms and distinct counts.
            Kind::Float => GroupValues::None,
        };
        let mut sums = Vec::new();
        for s in &self.sums {
            if let Some(c) = ff.column_opt::<u64>(s)? {
                sums.push(c);
            }
        }
        Ok(GroupSegment { values, sums })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<GroupCounts>) -> tantivy::Result<GroupCounts> {
        let mut out = GroupCounts::default();
        for f in fruits {
            merge_groups(&mut out, f);
        }
        Ok(out)
    }
}

struct Day {
    index: Index,
    writer: IndexWriter,
    reader: IndexReader,
    /// Opstamp of the last commit by this process: every document with a
    /// smaller opstamp is durable and searchable.
    committed: Option<u64>,
    /// When records were last added here (epoch seconds): every commit
    /// carries it as its payload, kept in `meta.json` with the segments it
    /// makes durable, so retention can age replayed history by when it came.
    ingested: Option<f64>,
}

/// A commit's payload.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Payload {
    ingested: Option<f64>,
}

fn now_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl Day {
    fn commit(&mut self) -> Result<()> {
        let payload = serde_json::to_string(&Payload { ingested: self.ingested }).map_err(backend)?;
        let mut prepared = self.writer.prepare_commit().map_err(backend)?;
        prepared.set_payload(&payload);
        self.committed = Some(prepared.commit().map_err(backend)?);
        self.reader.reload().map_err(backend)
    }
}

pub struct TantivyStore {
    dir: PathBuf,
    cfg: TantivyConfig,
    catalog: Catalog,
    fields: Arc<Fields>,
    days: Mutex<BTreeMap<PartKey, Arc<Mutex<Day>>>>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v) => v.to_ipv6_mapped(),
        IpAddr::V6(v) => v,
    }
}

impl TantivyStore {
    /// Opens (or creates) the store under `<data>/tantivy/`.
    pub fn open(data: &Path, cfg: TantivyConfig) -> Result<TantivyStore> {
        let dir = data.join("tantivy");
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io { path: dir.display().to_string(), source })?;
        let catalog = Catalog::new();
        let fields = Arc::new(build_schema(&catalog));
        let store = TantivyStore { dir, cfg, catalog, fields, days: Mutex::new(BTreeMap::new()) };
        for class in Class::ALL {
            let dir = store.dir.join(class.name());
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if super::day_start(&name).is_some() {
                    store.day(&PartKey { class, day: name })?;
                }
            }
        }
        Ok(store)
    }

    fn path_of(&self, key: &PartKey) -> PathBuf {
        // Only class names and days made by day_of reach here: no path
        // from a request.
        self.dir.join(key.class.name()).join(&key.day)
    }

    fn day(&self, key: &PartKey) -> Result<Arc<Mutex<Day>>> {
        let mut days = self.days.lock().map_err(backend)?;
        if let Some(d) = days.get(key) {
            return Ok(Arc::clone(d));
        }
        let path = self.path_of(key);
        std::fs::create_dir_all(&path).map_err(|source| StoreError::Io { path: path.display().to_string(), source })?;
        let dir = tantivy::directory::MmapDirectory::open(&path).map_err(backend)?;
        let layout = |e: String| {
            StoreError::Backend(format!(
                "{}: {e}: the partition was written with another index layout (another version of citysoc); \
                 move it out of the data directory and ingest its records again",
                path.display()
            ))
        };
        let marker = path.join(LAYOUT_FILE);
        let existing = path.join("meta.json").exists();
        if existing {
            match std::fs::read_to_string(&marker) {
                Ok(v) if v.trim() == LAYOUT => {}
                Ok(v) => return Err(layout(format!("layout {} where this version writes {LAYOUT}", v.trim()))),
                Err(_) => return Err(layout(format!("no {LAYOUT_FILE} file"))),
            }
        } else {
            // Before the index: a crash between the two leaves a marker
            // and no index, which the next open treats as new.
            std::fs::write(&marker, LAYOUT)
                .map_err(|source| StoreError::Io { path: marker.display().to_string(), source })?;
        }
        let index = match Index::open_or_create(dir, self.fields.schema.clone()) {
            Ok(index) => index,
            Err(tantivy::TantivyError::SchemaError(e)) => return Err(layout(e)),
            Err(e) => return Err(backend(e)),
        };
        if index.schema() != self.fields.schema {
            return Err(layout("schema differs from the catalog".into()));
        }
        let ingested = index
            .load_metas()
            .ok()
            .and_then(|m| m.payload)
            .and_then(|p| serde_json::from_str::<Payload>(&p).ok())
            .unwrap_or_default()
            .ingested;
        let writer: IndexWriter = index.writer(self.cfg.writer_heap_mb << 20).map_err(backend)?;
        // Every acknowledged batch is a commit, so segments are small and
        // many; merging them 16 at a time instead of 8 rewrites each
        // record fewer times (docs/src/benchmarks.md: Tantivy ingest), and searches, which
        // read columns, hardly notice the segments left.
        let mut merges = tantivy::indexer::LogMergePolicy::default();
        merges.set_min_num_segments(16);
        writer.set_merge_policy(Box::new(merges));
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(backend)?;
        let d = Arc::new(Mutex::new(Day { index, writer, reader, committed: None, ingested }));
        days.insert(key.clone(), Arc::clone(&d));
        Ok(d)
    }

    fn day_names(&self) -> Result<Vec<PartKey>> {
        Ok(self.days.lock().map_err(backend)?.keys().cloned().collect())
    }

    /// The record as a document; `text` and `raw` are scratch buffers
    /// reused across a batch's records.
    fn doc(&self, r: &Record, batch: Option<&str>, text: &mut String, raw: &mut Vec<u8>) -> TantivyDocument {
        let f = &self.fields;
        let mut doc = TantivyDocument::default();
        if let Some(b) = batch {
            doc.add_text(f.batch, b);
        }
        for (path, value) in [(LOG_FIELD, &r.log), (SENSOR_FIELD, &r.sensor)] {
            if let Some(&(field, ..)) = f.by_path.get(path) {
                doc.add_text(field, value);
            }
        }
        text.clear();
        let mut put = |path: &str, v: &Value| {
            let Some(&(field, kind, free)) = f.by_path.get(path) else { return };
            if free {
                append_words(text, v);
            }
            match kind {
                Kind::Str => {
                    if let Some(s) = text_of(v) {
                        doc.add_text(field, &s);
                    }
                }
                Kind::StrSet => {
                    for x in v.as_array().into_iter().flatten() {
                        if let Some(s) = text_of(x) {
                            doc.add_text(field, &s);
                        }
                    }
                }
                Kind::Addr => {
                    if let Some(ip) = v.as_str().and_then(|s| s.parse::<IpAddr>().ok()) {
                        doc.add_ip_addr(field, v6(ip));
                    }
                }
                Kind::Count => {
                    if let Some(n) = v.as_u64() {
                        doc.add_u64(field, n);
                    }
                }
                Kind::Float => {
                    if let Some(n) = v.as_f64() {
                        doc.add_f64(field, n);
                    }
                }
                Kind::Bool => {
                    if let Some(b) = v.as_bool() {
                        doc.add_bool(field, b);
                    }
                }
            }
        };
        for (k, v) in &r.fields {
            put(k, v);
        }
        doc.add_text(f.all, &*text);
        raw.clear();
        r.write_raw_json(raw);
        // serde_json writes UTF-8.
        doc.add_text(f.raw, std::str::from_utf8(raw).unwrap_or_default());
        doc
    }

    /// Records `[skip, skip + limit)` of `docs` in the order of `Cursor`:
    /// by score, best first, then by their text; with each one's score.
    /// Only records sharing a score need their text before the page is cut.
    fn ordered_page(
        &self,
        searchers: &[tantivy::Searcher],
        mut docs: Vec<(Score, usize, DocAddress)>,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<(Score, String)>> {
        docs.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
        let raw = |i: usize, addr: DocAddress| -> Result<String> {
            let searcher = searchers.get(i).ok_or_else(|| StoreError::Backend("no such searcher".into()))?;
            let doc: TantivyDocument = searcher.doc(addr).map_err(backend)?;
            Ok(doc.get_first(self.fields.raw).and_then(|v| v.as_str()).unwrap_or("null").to_string())
        };
        let mut out: Vec<(Score, String)> = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while i < docs.len() && out.len() < limit {
            let run = docs[i..].iter().take_while(|d| d.0 == docs[i].0).count();
            if at + run <= skip {
                // Wholly before the page: neither read nor sorted.
                at += run;
                i += run;
                continue;
            }
            let mut texts: Vec<String> = docs[i..i + run].iter().map(|d| raw(d.1, d.2)).collect::<Result<_>>()?;
            texts.sort();
            for t in texts {
                if at >= skip && out.len() < limit {
                    out.push((docs[i].0, t));
                }
                at += 1;
            }
            i += run;
        }
        Ok(out)
    }

    fn field(&self, path: &str) -> Result<(Field, Kind)> {
        self.fields
            .by_path
            .get(path)
            .map(|&(field, kind, _)| (field, kind))
            .ok_or_else(|| StoreError::Invalid(format!("unknown field '{path}'")))
    }

    fn typed_term(&self, path: &str, value: &str) -> Result<Term> {
        let (field, kind) = self.field(path)?;
        let bad = || StoreError::Invalid(format!("'{value}' is not a valid {} for {path}", kind.name()));
        Ok(match kind {
            Kind::Str | Kind::StrSet => Term::from_field_text(field, value),
            Kind::Addr => Term::from_field_ip_addr(field, v6(value.parse().map_err(|_| bad())?)),
            Kind::Count => Term::from_field_u64(field, value.parse().map_err(|_| bad())?),
            Kind::Float => Term::from_field_f64(field, value.parse().map_err(|_| bad())?),
            Kind::Bool => Term::from_field_bool(field, value == "true"),
        })
    }

    fn translate(&self, q: &Query) -> Result<Box<dyn TQuery>> {
        Ok(match q {
            Query::All => Box::new(AllQuery),
            Query::And(v) => {
                let mut clauses: Vec<(Occur, Box<dyn TQuery>)> = Vec::new();
                for x in v {
                    clauses.push((Occur::Must, self.translate(x)?));
                }
                Box::new(BooleanQuery::new(clauses))
            }
            Query::Or(v) => {
                let mut clauses: Vec<(Occur, Box<dyn TQuery>)> = Vec::new();
                for x in v {
                    clauses.push((Occur::Should, self.translate(x)?));
                }
                Box::new(BooleanQuery::new(clauses))
            }
            Query::Not(x) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, Box::new(AllQuery) as Box<dyn TQuery>),
                (Occur::MustNot, self.translate(x)?),
            ])),
            Query::Term { field, value } => {
                // A range of one value is what Tantivy reads a fast column
                // with, whether or not scores are asked for.
                let t = self.typed_term(field, value)?;
                if self.field(field)?.1 == Kind::Bool {
                    Box::new(TermQuery::new(t, IndexRecordOption::Basic))
                } else {
                    Box::new(RangeQuery::new(Bound::Included(t.clone()), Bound::Included(t)))
                }
            }
            Query::Wildcard { field, pattern } => {
                let (_, kind) = self.field(field)?;
                let re = crate::query::wildcard_regex(pattern);
                // The automaton matches whole terms: no anchors.
                let body = re.trim_start_matches('^').trim_end_matches('$');
                let re = Arc::new(tantivy_fst::Regex::new(body).map_err(|e| StoreError::Invalid(e.to_string()))?);
                wildcard(column(field), kind, re)
            }
            Query::Range { field, lo, hi } => {
                let b = |x: &QBound| -> Result<Bound<Term>> {
                    Ok(match x {
                        QBound::Unbounded => Bound::Unbounded,
                        QBound::Included(v) => Bound::Included(self.typed_term(field, v)?),
                        QBound::Excluded(v) => Bound::Excluded(self.typed_term(field, v)?),
                    })
                };
                let (_, kind) = self.field(field)?;
                if matches!(kind, Kind::Str | Kind::StrSet | Kind::Bool) {
                    return Err(StoreError::Invalid(format!(
                        "ranges apply to numbers and addresses; {field} is a {}",
                        kind.name()
                    )));
                }
                Box::new(RangeQuery::new(b(lo)?, b(hi)?))
            }
            Query::Cidr { field, net } => {
                let (f, _) = self.field(field)?;
                let (first, last) = (v6(net.first_address()), v6(net.last_address()));
                Box::new(RangeQuery::new(
                    Bound::Included(Term::from_field_ip_addr(f, first)),
                    Bound::Included(Term::from_field_ip_addr(f, last)),
                ))
            }
            Query::Exists { field } => {
                self.field(field)?;
                Box::new(ExistsQuery::new(column(field), false))
            }
            Query::Text { words } => {
                let toks: Vec<String> = words.iter().flat_map(|w| tokens(w)).collect();
                let terms: Vec<Term> = toks.iter().map(|t| Term::from_field_text(self.fields.all, t)).collect();
                match terms.len() {
                    0 => Box::new(AllQuery),
                    1 => Box::new(TermQuery::new(
                        terms.into_iter().next().unwrap_or_else(|| unreachable!()),
                        IndexRecordOption::Basic,
                    )),
                    _ => Box::new(PhraseQuery::new(terms)),
                }
            }
        })
    }

    /// The query restricted to `[from, to)` on `ts`.
    fn with_time(&self, q: &Query, from: Option<f64>, to: Option<f64>) -> Result<Box<dyn TQuery>> {
        let base = self.translate(q)?;
        if from.is_none() && to.is_none() {
            return Ok(base);
        }
        let (ts, _) = self.field("ts")?;
        let lo = from.map_or(Bound::Unbounded, |f| Bound::Included(Term::from_field_f64(ts, f)));
        let hi = to.map_or(Bound::Unbounded, |t| Bound::Excluded(Term::from_field_f64(ts, t)));
        Ok(Box::new(BooleanQuery::new(vec![(Occur::Must, base), (Occur::Must, Box::new(RangeQuery::new(lo, hi)))])))
    }
}

/// Live documents of a batch (a term's document frequency counts deleted
/// ones until a merge).
fn batch_docs(searcher: &tantivy::Searcher, term: &Term) -> Result<u64> {
    let q = TermQuery::new(term.clone(), IndexRecordOption::Basic);
    Ok(searcher.search(&q, &Count).map_err(backend)? as u64)
}

impl Store for TantivyStore {
    fn name(&self) -> &'static str {
        "tantivy"
    }

    fn ingest(&self, records: &[Record]) -> Result<()> {
        self.ingest_batch(records, None)
    }

    fn ingest_batch(&self, records: &[Record], batch: Option<&str>) -> Result<()> {
        let mut by_day: BTreeMap<PartKey, Vec<&Record>> = BTreeMap::new();
        for r in records {
            by_day.entry(PartKey { class: r.class(), day: r.day() }).or_default().push(r);
        }
        for (day, recs) in by_day {
            // Documents are built outside the partition's lock: concurrent
            // batches build theirs at once.
            let (mut text, mut raw) = (String::new(), Vec::new());
            let docs: Vec<TantivyDocument> = recs.iter().map(|r| self.doc(r, batch, &mut text, &mut raw)).collect();
            let part = self.day(&day)?;
            let mine = {
                let mut d = part.lock().map_err(backend)?;
                let mut last = 0;
                for doc in docs {
                    last = d.writer.add_document(doc).map_err(backend)?;
                }
                d.ingested = Some(now_secs());
                last
            };
            // Durable before the batch is acknowledged. Group commit: a
            // commit covers every document added before it, so a batch
            // that another batch's commit already covered is done, and
            // batches arriving together share one commit.
            let mut d = part.lock().map_err(backend)?;
            if d.committed.is_none_or(|c| c <= mine) {
                d.commit()?;
            }
        }
        Ok(())
    }

    fn search(&self, req: &SearchRequest) -> Result<SearchResult> {
        req.check(&self.catalog)?;
        let q = self.with_time(&req.query, req.from, req.to)?;
        let skip = req.after.as_ref().map_or(req.offset, |a| a.seen);
        let want = skip + req.limit;
        let (_, kind) = self.field(&req.sort.field)?;
        let sign = if req.sort.descending { 1.0 } else { -1.0 };
        // A record's place in the order of `Cursor` as a score, best
        // first: (has the field, value, time), signed for the direction;
        // equal scores are ordered by the record's text below. Records
        // before the cursor score above it and are left out.
        let cut = req.after.as_ref().map(|a| {
            if a.has {
                (1.0, sign * a.key + 0.0, sign * a.ts_us + 0.0)
            } else {
                (0.0, 0.0, sign * a.ts_us + 0.0)
            }
        });
        let scorer = {
            let col = column(&req.sort.field);
            move |seg: &tantivy::SegmentReader| {
                let ff = seg.fast_fields();
                let is_count = kind == Kind::Count;
                let by_u = if is_count { ff.u64(&col).ok() } else { None };
                let by_f = if is_count { None } else { ff.f64(&col).ok() };
                let ts = ff.f64("ts").ok();
                move |doc: tantivy::DocId, _score: tantivy::Score| -> Score {
                    let k = match (&by_u, &by_f) {
                        (Some(c), _) => c.first(doc).map(|v| v as f64),
                        (_, Some(c)) => c.first(doc).map(super::micros),
                        _ => None,
                    };
                    let t = super::micros(ts.as_ref().and_then(|c| c.first(doc)).unwrap_or(0.0));
                    let s = match k {
                        Some(k) => (1.0, sign * k + 0.0, sign * t + 0.0),
                        None => (0.0, 0.0, sign * t + 0.0),
                    };
                    if cut.is_some_and(|c| s > c) {
                        EXCLUDED
                    } else {
                        s
                    }
                }
            }
        };
        let mut total = 0u64;
        // The best `want` of each day by score. Hits are read back through
        // the searcher that found them: a commit or merge since may have
        // changed the partition's segments, and a document address means
        // nothing in another searcher.
        let mut best: Vec<(Score, usize, DocAddress)> = Vec::new();
        let mut searchers: Vec<tantivy::Searcher> = Vec::new();
        // Whether a day's list was cut at `want`, and its lowest score.
        let mut cut_at: Vec<Option<Score>> = Vec::new();
        for day in parts_in_range(&self.day_names()?, req.from, req.to) {
            let d = self.day(&day)?;
            let searcher = d.lock().map_err(backend)?.reader.searcher();
            let top = TopDocs::with_limit(want.max(1)).tweak_score(scorer.clone());
            let (n, docs) = searcher.search(&*q, &(Count, top)).map_err(backend)?;
            total += n as u64;
            let i = searchers.len();
            cut_at.push((docs.len() >= want.max(1)).then(|| docs.last().map(|x| x.0)).flatten());
            best.extend(docs.into_iter().filter(|(k, _)| *k != EXCLUDED).map(|(k, a)| (k, i, a)));
            searchers.push(searcher);
        }
        best.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
        // Scores above the `want`-th are complete; of the records that
        // share it, a day may have been cut among them: they are all
        // fetched, to be ordered by text like the rest.
        if best.len() >= want && want > 0 {
            let boundary = best[want - 1].0;
            best.retain(|x| x.0 >= boundary);
            for (i, searcher) in searchers.iter().enumerate() {
                // A day whose list ended above or below the boundary holds
                // all its tied records already.
                if cut_at[i] != Some(boundary) {
                    continue;
                }
                best.retain(|x| !(x.1 == i && x.0 == boundary));
                let tie = scorer.clone();
                let top = TopDocs::with_limit(MAX_TIE + 1).tweak_score(move |seg: &tantivy::SegmentReader| {
                    let f = tie(seg);
                    move |doc: tantivy::DocId, score: tantivy::Score| u8::from(f(doc, score) == boundary)
                });
                let docs = searcher.search(&*q, &top).map_err(backend)?;
                best.extend(docs.into_iter().filter(|(m, _)| *m == 1).map(|(_, a)| (boundary, i, a)));
            }
            if best.iter().filter(|x| x.0 == boundary).count() > MAX_TIE {
                return Err(StoreError::Invalid(format!(
                    "more than {MAX_TIE} records share one time and sort value at this page's end; narrow the search"
                )));
            }
        }
        let hits = self.ordered_page(&searchers, best, skip, req.limit)?;
        let keys: Vec<(bool, f64, f64)> =
            hits.iter().map(|(s, _)| (s.0 == 1.0, sign * s.1 + 0.0, sign * s.2 + 0.0)).collect();
        let hits = hits.into_iter().map(|(_, raw)| serde_json::from_str(&raw).unwrap_or(Value::Null)).collect();
        Ok(SearchResult { total, hits, next: super::next_cursor(req, &keys) })
    }

    fn aggregate(
        &self,
        query: &crate::query::Query,
        from: Option<f64>,
        to: Option<f64>,
        agg: &Agg,
    ) -> Result<AggResult> {
        agg.check(&self.catalog)?;
        super::check_range(from, to)?;
        let q = self.with_time(query, from, to)?;
        let days = parts_in_range(&self.day_names()?, from, to);
        // Exact groups of a field's values over every day (see `Groups`).
        let groups = |field: &str, sums: &[String]| -> Result<GroupCounts> {
            let (_, kind) = self.field(field)?;
            let coll = Groups { col: column(field), kind, sums: sums.iter().map(|s| column(s)).collect() };
            let mut out = GroupCounts::default();
            for day in &days {
                let searcher = self.day(day)?.lock().map_err(backend)?.reader.searcher();
                merge_groups(&mut out, searcher.search(&*q, &coll).map_err(backend)?);
            }
            Ok(out)
        };
        match agg {
            Agg::Terms { field, size, sum } => {
                let g = groups(field, sum)?;
                return Ok(AggResult::Buckets(super::top_terms(
                    g.into_iter().map(|(k, (n, s))| (k, n, s)),
                    *size,
                    !sum.is_empty(),
                )));
            }
            Agg::Cardinality { field } => {
                let value = groups(field, &[])?.len() as u64;
                return Ok(AggResult::Value { value, approximate: false, relative_error: 0.0 });
            }
            _ => {}
        }
        let requested = match agg {
            Agg::Histogram { interval_secs } => *interval_secs,
            _ => 0.0,
        };
        let interval = match agg {
            Agg::Histogram { interval_secs } => {
                match self.aggregate(query, from, to, &Agg::Stats { field: "ts".into() })? {
                    AggResult::Stats { min: Some(lo), max: Some(hi), .. } => {
                        super::histogram_interval(*interval_secs, lo, hi)
                    }
                    _ => *interval_secs,
                }
            }
            _ => 0.0,
        };
        let name = |f: &str| -> Result<String> {
            self.field(f)?;
            Ok(column(f))
        };
        let req = match agg {
            Agg::Histogram { .. } => serde_json::json!({"a": {"histogram": {"field": "ts", "interval": interval}}}),
            Agg::Stats { field } => serde_json::json!({"a": {"stats": {"field": name(field)?}}}),
            Agg::Terms { .. } | Agg::Cardinality { .. } => unreachable!("answered above"),
        };
        let aggs: Aggregations = serde_json::from_value(req).map_err(backend)?;
        let mut merged: Option<IntermediateAggregationResults> = None;
        for day in days {
            let d = self.day(&day)?;
            let d = d.lock().map_err(backend)?;
            let ctx = AggContextParams::new(AggregationLimitsGuard::default(), d.index.tokenizers().clone());
            let coll = DistributedAggregationCollector::from_aggs(aggs.clone(), ctx);
            let fruit = d.reader.searcher().search(&*q, &coll).map_err(backend)?;
            match merged.as_mut() {
                Some(m) => m.merge_fruits(fruit).map_err(backend)?,
                None => merged = Some(fruit),
            }
        }
        let Some(merged) = merged else {
            return Ok(match agg {
                Agg::Histogram { .. } => AggResult::Histogram {
                    interval_secs: interval,
                    requested_interval_secs: requested,
                    buckets: Vec::new(),
                },
                _ => AggResult::Stats { count: 0, sum: 0.0, avg: None, min: None, max: None },
            });
        };
        let res = merged.into_final_result(aggs, AggregationLimitsGuard::default()).map_err(backend)?;
        let v = serde_json::to_value(&res).map_err(backend)?;
        let a = &v["a"];
        let key_text = |k: &Value| match k {
            Value::Number(n) => n
                .as_f64()
                .map(|f| if f.fract() == 0.0 { format!("{}", f as i64) } else { f.to_string() })
                .unwrap_or_default(),
            other => other.to_string(),
        };
        Ok(match agg {
            Agg::Histogram { .. } => AggResult::Histogram {
                interval_secs: interval,
                requested_interval_secs: requested,
                buckets: a["buckets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|b| b["doc_count"].as_u64().unwrap_or(0) > 0)
                    .map(|b| Bucket {
                        key: key_text(&b["key"]),
                        count: b["doc_count"].as_u64().unwrap_or(0),
                        sum: None,
                    })
                    .collect(),
            },
            _ => AggResult::Stats {
                count: a["count"].as_u64().unwrap_or(0),
                sum: a["sum"].as_f64().unwrap_or(0.0),
                avg: a["avg"].as_f64(),
                min: a["min"].as_f64(),
                max: a["max"].as_f64(),
            },
        })
    }

    fn partitions(&self) -> Result<Vec<Partition>> {
        let mut out = Vec::new();
        for key in self.day_names()? {
            let d = self.day(&key)?;
            let d = d.lock().map_err(backend)?;
            let records = d.reader.searcher().num_docs();
            let bytes = std::fs::read_dir(self.path_of(&key))
                .map(|it| it.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
                .unwrap_or(0);
            out.push(Partition { class: key.class, day: key.day, records, bytes, ingested: d.ingested });
        }
        Ok(out)
    }

    fn drop_partition(&self, class: Class, day: &str) -> Result<bool> {
        let key = PartKey { class, day: day.to_string() };
        let mut days = self.days.lock().map_err(backend)?;
        let Some(entry) = days.remove(&key) else { return Ok(false) };
        // Wait for a writer in use, then let its directory lock go with it;
        // searches already running keep their mapped files until they end.
        drop(entry.lock().map_err(backend)?);
        drop(entry);
        let path = self.path_of(&key);
        std::fs::remove_dir_all(&path).map_err(|source| StoreError::Io { path: path.display().to_string(), source })?;
        Ok(true)
    }

    fn delete(&self, query: &crate::query::Query) -> Result<u64> {
        let mut n = 0;
        for day in self.day_names()? {
            let d = self.day(&day)?;
            let mut d = d.lock().map_err(backend)?;
            let q = self.translate(query)?;
            n += d.reader.searcher().search(&*q, &Count).map_err(backend)? as u64;
            d.writer.delete_query(q).map_err(backend)?;
            d.commit()?;
        }
        Ok(n)
    }

    fn batch_stored(&self, sensor: &str, id: &str) -> Result<bool> {
        let term = Term::from_field_text(self.fields.batch, &super::batch_key(sensor, id));
        for day in self.day_names()? {
            let searcher = self.day(&day)?.lock().map_err(backend)?.reader.searcher();
            if batch_docs(&searcher, &term)? > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn unstore_batch(&self, key: &str) -> Result<u64> {
        let term = Term::from_field_text(self.fields.batch, key);
        let mut n = 0;
        for day in self.day_names()? {
            let d = self.day(&day)?;
            let mut d = d.lock().map_err(backend)?;
            let found = batch_docs(&d.reader.searcher(), &term)?;
            // Also where nothing of it is committed: documents of a batch
            // that failed half-way in this run may wait in the writer, and
            // the delete reaches them at the partition's next commit.
            d.writer.delete_term(term.clone());
            if found > 0 {
                d.commit()?;
                n += found;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_of_another_layout_is_named_with_what_to_do() {
        let data = tempfile::tempdir().unwrap();
        let part = data.path().join("tantivy/flows/2024-01-01");
        std::fs::create_dir_all(&part).unwrap();
        let mut b = Schema::builder();
        b.add_text_field("uid", tantivy::schema::STRING);
        Index::create_in_dir(&part, b.build()).unwrap();
        let err = TantivyStore::open(data.path(), TantivyConfig::default()).err().expect("another layout is refused");
        let msg = err.to_string();
        assert!(msg.contains("2024-01-01") && msg.contains("another index layout"), "{msg}");
    }

    #[test]
    fn a_partition_without_this_layout_marker_is_refused() {
        let data = tempfile::tempdir().unwrap();
        let store = TantivyStore::open(data.path(), TantivyConfig::default()).unwrap();
        let c = Catalog::new();
        let fields = serde_json::json!({"ts": 1.5e9, "uid": "C1", "id.orig_h": "10.0.0.1"});
        let r = Record::validate(&c, "conn", "s1", fields.as_object().unwrap().clone()).unwrap();
        store.ingest(&[r]).unwrap();
        drop(store);
        let marker = std::fs::read_dir(data.path().join("tantivy/flows"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join(LAYOUT_FILE);
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), LAYOUT);
        assert!(TantivyStore::open(data.path(), TantivyConfig::default()).is_ok(), "its own layout opens");
        std::fs::remove_file(&marker).unwrap();
        let err = TantivyStore::open(data.path(), TantivyConfig::default()).err().expect("refused");
        assert!(err.to_string().contains("another index layout"), "{err}");
    }
}
