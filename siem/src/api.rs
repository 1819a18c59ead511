//! The SIEM's HTTP API (axum): ingest from sensors, search, aggregate,
//! status, and the OpenAPI document. Store calls run on the blocking pool;
//! ingest is bounded (a full server answers 503 with Retry-After, never
//! queues without limit); every error is a status with a reason, internals
//! are logged and not sent.

use crate::query::{parse, Query, QueryError};
use crate::schema::Catalog;
use crate::store::{Agg, Record, SearchRequest, Store, StoreError, MAX_RECORD_BYTES};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query as UrlQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Largest request body (after decompression too).
pub const MAX_BODY_BYTES: usize = 32 << 20;
/// Alerts of one rule from one source this close together share an
/// incident opened by the SIEM.
pub const INCIDENT_WINDOW_SECS: f64 = 3600.0;
/// Most uids and Community IDs a pivot follows.
const MAX_PIVOT_IDS: usize = 256;
/// Most buckets a histogram answers with.
pub use crate::store::MAX_BUCKETS;
/// Batch ids held in memory per sensor; one not held is looked up in the
/// store, which names every record's batch.
const BATCH_IDS_KEPT: usize = 100_000;

/// Who may call: sensors ingest, readers search. Tokens are kept as their
/// SHA-256, never in clear.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    /// Sensor name → hex SHA-256 of its token.
    #[serde(default)]
    pub sensors: BTreeMap<String, String>,
    /// Reader name → hex SHA-256 of its token.
    #[serde(default)]
    pub readers: BTreeMap<String, String>,
    /// Admin name → hex SHA-256 of its token (readers who may also read the
    /// audit trail).
    #[serde(default)]
    pub admins: BTreeMap<String, String>,
}

pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn find<'a>(map: &'a BTreeMap<String, String>, token: &str) -> Option<&'a str> {
        let h = hash_token(token);
        // Compared over every entry, equal length hex strings.
        let mut found = None;
        for (name, want) in map {
            if constant_time_eq(want.as_bytes(), h.as_bytes()) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Batch ids seen, per sensor: the set, and the order they came in (the
/// oldest are forgotten first).
#[derive(Default)]
struct SeenBatches {
    ids: HashSet<String>,
    order: VecDeque<String>,
    /// Being stored now: a concurrent retry waits for the outcome.
    inflight: HashSet<String>,
    /// Begun and never acknowledged (the server stopped, or storing
    /// failed): what they stored, whole or in part, is undone before they
    /// are stored again.
    unresolved: HashSet<String>,
    /// Some ids were forgotten to bound memory: an id not held is looked up
    /// in the store.
    forgot: bool,
}

impl SeenBatches {
    fn remember(&mut self, id: &str) {
        if self.ids.insert(id.to_string()) {
            self.order.push_back(id.to_string());
            if self.order.len() > BATCH_IDS_KEPT {
                if let Some(old) = self.order.pop_front() {
                    self.ids.remove(&old);
                    self.forgot = true;
                }
            }
        }
    }
}

/// The ingest ledger's two files in the data folder: a batch's line goes to
/// `ingest-begun.log` before its records are stored and to
/// `ingest-batches.log` before it is acknowledged, both synced. A batch
/// begun and not done was never acknowledged; a line holds the sensor's
/// name, a space and the id.
const BEGUN_FILE: &str = "ingest-begun.log";
const DONE_FILE: &str = "ingest-batches.log";

fn append_synced(path: &Path, sensor: &str, id: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(format!("{sensor} {id}\n").as_bytes())?;
    f.sync_data()
}

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub workflow: Option<crate::workflow::Workflow>,
    pub audit: Option<crate::audit::Audit>,
    pub catalog: Catalog,
    /// Replaced whole when the tokens file is read again (SIGHUP): a
    /// request sees the old table or the new one, never a mix.
    tokens: std::sync::RwLock<Arc<Tokens>>,
    /// Without tokens configured, the API answers on loopback only and
    /// takes every caller as the `local` sensor and reader (the demo).
    pub open: bool,
    ingest_slots: Semaphore,
    seen: Mutex<HashMap<String, SeenBatches>>,
    /// The data folder, where the ingest ledger is kept.
    ledger_dir: Option<PathBuf>,
    pub retention: crate::retention::Policy,
    retention_runs: Mutex<RetentionRuns>,
    /// Where flows' packets come from (the packet ring of the sensor that
    /// kept them); none: the pcap endpoint answers 404.
    pub packets: Option<Arc<dyn PacketSource>>,
    /// The SOC's key for evidence bundles (in the data folder).
    pub signer: Option<Arc<crate::evidence::Signer>>,
    /// The rules folder sensors fetch (`citysoc serve --rules`).
    pub rules_dir: Option<PathBuf>,
    /// Callers refused (401, 403, failed TLS handshakes), logged and
    /// audited at a bounded rate.
    pub refusals: crate::refusals::Refusals,
    /// What `/metrics` exposes.
    pub metrics: crate::metrics::SiemMetrics,
    /// Origins besides the server's own (as seen in `Host`) whose pages may
    /// send changes: those a reverse proxy presents the server under
    /// (`https://soc.city.example`).
    pub extra_origins: Vec<String>,
    /// What hunts run (none: hunting is refused).
    pub hunter: Option<Arc<dyn crate::hunts::Hunter>>,
    /// The hunts run and their findings.
    pub hunts: Arc<crate::hunts::Hunts>,
}

/// Packets of flows, as one pcap file, from whatever keeps them.
pub trait PacketSource: Send + Sync {
    /// The packets of the flows with these uids within `[from, to]` (epoch
    /// seconds), in time order, as a pcap file; `None` when none are kept.
    fn pcap(&self, uids: &[String], from: Option<f64>, to: Option<f64>) -> Result<Option<Vec<u8>>, String>;
    /// The packets within `[from, to]` a BPF filter accepts, at most `max`,
    /// as a pcap file (`None` when none); the error names a bad filter.
    fn filtered(&self, filter: &str, from: f64, to: f64, max: usize) -> Result<Option<Vec<u8>>, String>;
}

/// Packets one filtered fetch returns at most.
pub const MAX_FILTERED_PACKETS: usize = 1_000_000;

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct EvidenceParams {
    pub alert: Option<String>,
    pub incident: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct PcapParams {
    pub uid: Option<String>,
    pub community_id: Option<String>,
    /// Every flow this alert names (its own and those of its evidence).
    pub alert: Option<String>,
    /// A BPF filter (tcpdump's language) over the time range `from`-`to`.
    pub filter: Option<String>,
    #[serde(default, deserialize_with = "time_param")]
    pub from: Option<f64>,
    #[serde(default, deserialize_with = "time_param")]
    pub to: Option<f64>,
}

/// What the last retention runs did, for the status view.
#[derive(Default, Serialize)]
struct RetentionRuns {
    last_run: Option<f64>,
    last_error: Option<String>,
    /// The most recent drops, oldest first.
    recent: VecDeque<crate::retention::Dropped>,
}

const RECENT_DROPS: usize = 100;

/// The flows an alert names: its own uid, then each flow of its evidence
/// (`log:uid`, e.g. `conn:C1…` or `http:C2…`, or a bare uid), in order and
/// once each. A file (`files:F…`, where a rule on files.log names the flow
/// as `files:C…`) is not a flow: see [`alert_file_ids`]. Only a uid's
/// alphabet passes (they become file names).
pub fn alert_flow_uids(a: &Value) -> Vec<String> {
    let named = a["evidence"].as_array().into_iter().flatten().filter_map(Value::as_str);
    let flows = named.map(|e| e.rsplit_once(':').map_or(e, |(_, u)| u)).filter(|u| !u.starts_with('F'));
    ids_once(a["uid"].as_str().into_iter().chain(flows))
}

/// The files an alert's evidence names (`files:F…`, their `fuid`).
pub fn alert_file_ids(a: &Value) -> Vec<String> {
    let named = a["evidence"].as_array().into_iter().flatten().filter_map(Value::as_str);
    ids_once(named.filter_map(|e| e.strip_prefix("files:")).filter(|f| f.starts_with('F')))
}

fn ids_once<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in ids {
        if !e.is_empty() && e.len() <= 32 && e.chars().all(|c| c.is_ascii_alphanumeric()) && !out.iter().any(|u| u == e)
        {
            out.push(e.to_string());
        }
    }
    out
}

fn now_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl AppState {
    /// With a data directory, triage and the audit trail are kept there;
    /// on a broken audit chain the server opens read-only (see
    /// [`AppState::audit_as`]).
    pub fn open(
        store: Arc<dyn Store>,
        tokens: Option<Tokens>,
        data: &Path,
        ingest_concurrency: usize,
    ) -> Result<AppState, String> {
        let mut st = AppState::new(store, tokens, Some(data), ingest_concurrency);
        st.workflow = Some(crate::workflow::Workflow::open(data).map_err(|e| format!("{}: {e}", data.display()))?);
        let audit = crate::audit::Audit::open(data).map_err(|e| e.to_string())?;
        if let Some(b) = audit.broken() {
            tracing::error!(line = b.line, reason = %b.reason, path = %audit.path().display(),
                "audit trail broken: serving read-only (searches and downloads; changes refused)");
        }
        st.audit = Some(audit);
        st.signer = Some(Arc::new(
            crate::evidence::Signer::open(data).map_err(|e| format!("evidence key in {}: {e}", data.display()))?,
        ));
        Ok(st)
    }

    /// Drops what the retention policy says is past its age or budget; each
    /// drop is audited as done by `retention`. Blocks: call it on a
    /// blocking thread. Nothing is dropped while the audit trail is broken.
    pub fn enforce_retention(&self) -> Result<Vec<crate::retention::Dropped>, String> {
        if let Some(b) = self.audit_broken() {
            self.metrics.retention(None);
            return Err(read_only_message(b));
        }
        let r = crate::retention::enforce(self.store.as_ref(), &self.retention, now_secs());
        self.metrics.retention(r.as_ref().ok().map(Vec::as_slice));
        let mut runs = self.retention_runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.last_run = Some(now_secs());
        match r {
            Ok(dropped) => {
                runs.last_error = None;
                for d in &dropped {
                    if let Some(a) = &self.audit {
                        let detail = serde_json::to_value(d).unwrap_or(Value::Null);
                        a.record("retention", "server", "retention.drop", detail).map_err(|e| e.to_string())?;
                    }
                    runs.recent.push_back(d.clone());
                    if runs.recent.len() > RECENT_DROPS {
                        runs.recent.pop_front();
                    }
                }
                Ok(dropped)
            }
            Err(e) => {
                runs.last_error = Some(e.to_string());
                Err(e.to_string())
            }
        }
    }

    /// The tokens in force.
    pub fn tokens(&self) -> Arc<Tokens> {
        match self.tokens.read() {
            Ok(t) => Arc::clone(&t),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Puts a new tokens table in force (the file read again). An API
    /// started open stays open: it has no tokens file to read.
    pub fn replace_tokens(&self, tokens: Tokens) {
        let mut g = match self.tokens.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = Arc::new(tokens);
    }

    pub fn new(
        store: Arc<dyn Store>,
        tokens: Option<Tokens>,
        data: Option<&Path>,
        ingest_concurrency: usize,
    ) -> AppState {
        let mut seen: HashMap<String, SeenBatches> = HashMap::new();
        if let Some(d) = data {
            let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
            let lines = |t: &str| -> Vec<(String, String)> {
                // Ids have no spaces; a sensor's name may. A last line
                // without its newline was cut short (a power loss during its
                // write): its batch was never acknowledged, and its id may be
                // cut to another batch's id, so it is left out.
                t.split_inclusive('\n')
                    .filter_map(|l| l.strip_suffix('\n')?.rsplit_once(' '))
                    .map(|(s, i)| (s.to_string(), i.to_string()))
                    .collect()
            };
            let done_text = read(DONE_FILE);
            if !done_text.is_empty() && !done_text.ends_with('\n') {
                // Ended, so that the next line appended stands on its own.
                use std::io::Write;
                let ended = std::fs::OpenOptions::new()
                    .append(true)
                    .open(d.join(DONE_FILE))
                    .and_then(|mut f| f.write_all(b"\n").and_then(|_| f.sync_data()));
                if let Err(e) = ended {
                    tracing::warn!(error = %e, "ingest ledger's last line not ended");
                }
            }
            let done = lines(&done_text);
            for (sensor, id) in &done {
                seen.entry(sensor.clone()).or_default().remember(id);
            }
            let done: HashSet<(String, String)> = done.into_iter().collect();
            let mut still = String::new();
            for (sensor, id) in lines(&read(BEGUN_FILE)) {
                if !done.contains(&(sensor.clone(), id.clone())) {
                    seen.entry(sensor.clone()).or_default().unresolved.insert(id.clone());
                    still.push_str(&format!("{sensor} {id}\n"));
                }
            }
            // The begun file keeps only what is unresolved, so it does not
            // grow with every batch: written aside, then renamed over.
            let tmp = d.join(format!("{BEGUN_FILE}.tmp"));
            let kept = std::fs::File::create(&tmp)
                .and_then(|mut f| {
                    use std::io::Write;
                    f.write_all(still.as_bytes())?;
                    f.sync_all()
                })
                .and_then(|_| std::fs::rename(&tmp, d.join(BEGUN_FILE)));
            if let Err(e) = kept {
                // The old file stays whole: nothing is lost, it is only longer.
                tracing::warn!(error = %e, "ingest ledger not compacted");
            }
        }
        AppState {
            packets: None,
            signer: None,
            rules_dir: None,
            store,
            workflow: None,
            audit: None,
            catalog: Catalog::new(),
            open: tokens.is_none(),
            tokens: std::sync::RwLock::new(Arc::new(tokens.unwrap_or_default())),
            ingest_slots: Semaphore::new(ingest_concurrency.max(1)),
            seen: Mutex::new(seen),
            ledger_dir: data.map(Path::to_path_buf),
            retention: crate::retention::Policy::default(),
            retention_runs: Mutex::new(RetentionRuns::default()),
            refusals: Default::default(),
            metrics: {
                let m = crate::metrics::SiemMetrics::new();
                m.ingest_slots.set(ingest_concurrency.max(1) as i64);
                m
            },
            extra_origins: Vec::new(),
            hunter: None,
            hunts: Arc::new(crate::hunts::Hunts::open(data).unwrap_or_else(|e| {
                tracing::error!(error = %e, "hunts not kept in the data folder");
                crate::hunts::Hunts::open(None).unwrap_or_else(|_| unreachable!("no folder, no error"))
            })),
        }
    }
}

#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    Forbidden,
    BadRequest(String),
    BadQuery(QueryError),
    TooLarge,
    /// A body in an encoding the API does not read.
    Unsupported(String),
    NotFound,
    /// A resource that is not there, with the reason.
    Missing(String),
    Busy,
    /// The audit trail is broken: changes are refused (see
    /// [`AppState::audit_as`]).
    ReadOnly(crate::audit::Broken),
    Internal(String),
    /// A bad request with a stable code (400).
    Invalid(Coded),
    /// Not there, with a stable code and the reason (404).
    Absent(Coded),
}

/// A refusal a client can show in its reader's language: a stable code
/// (`range.reversed`) and its named values; `message` is the English text
/// every client gets as `error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coded {
    pub code: &'static str,
    pub args: Vec<(&'static str, String)>,
    pub message: String,
}

impl Coded {
    pub fn new(code: &'static str, message: impl Into<String>) -> Coded {
        Coded { code, args: Vec::new(), message: message.into() }
    }

    pub fn arg(mut self, name: &'static str, value: impl ToString) -> Coded {
        self.args.push((name, value.to_string()));
        self
    }
}

fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Invalid(Coded::new(code, message))
}

fn absent(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Absent(Coded::new(code, message))
}

fn args_json(args: &[(&'static str, String)]) -> Value {
    Value::Object(args.iter().map(|(k, v)| (k.to_string(), Value::String(v.clone()))).collect())
}

/// The store's range check, as coded refusals.
fn check_range(from: Option<f64>, to: Option<f64>) -> ApiResult<()> {
    for t in [from, to].into_iter().flatten() {
        if !(0.0..=crate::store::MAX_TS).contains(&t) {
            let m = format!("time {t} is outside 0..={}", crate::store::MAX_TS);
            return Err(ApiError::Invalid(Coded::new("range.outside", m).arg("time", t)));
        }
    }
    if matches!((from, to), (Some(f), Some(t)) if f > t) {
        return Err(invalid("range.reversed", "from is after to"));
    }
    Ok(crate::store::check_range(from, to)?)
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(m) => ApiError::BadRequest(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, json!({"error": "missing or unknown bearer token"})),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, json!({"error": "this token may not do that"})),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, json!({"error": m})),
            ApiError::BadQuery(e) => {
                let mut args = args_json(&e.args);
                args["position"] = json!(e.position.to_string());
                (
                    StatusCode::BAD_REQUEST,
                    json!({"error": format!("invalid query: {}", e.message), "position": e.position,
                           "code": e.code, "args": args}),
                )
            }
            ApiError::Invalid(c) => {
                (StatusCode::BAD_REQUEST, json!({"error": c.message, "code": c.code, "args": args_json(&c.args)}))
            }
            ApiError::Absent(c) => {
                (StatusCode::NOT_FOUND, json!({"error": c.message, "code": c.code, "args": args_json(&c.args)}))
            }
            ApiError::NotFound => (StatusCode::NOT_FOUND, json!({"error": "no such endpoint"})),
            ApiError::Missing(m) => (StatusCode::NOT_FOUND, json!({"error": m})),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, json!({"error": too_large()})),
            ApiError::Unsupported(m) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, json!({"error": m})),
            ApiError::Busy => {
                let mut r = (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "ingest is busy, retry later"})))
                    .into_response();
                r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                return r;
            }
            ApiError::ReadOnly(b) => {
                (StatusCode::SERVICE_UNAVAILABLE, json!({"error": read_only_message(&b), "audit_broken_line": b.line}))
            }
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "internal error"}))
            }
        };
        (status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn too_large() -> String {
    format!("body larger than {MAX_BODY_BYTES} bytes (decompressed too)")
}

/// Every error of the API is JSON, axum's own rejections too (a body over
/// the limit, a missing or wrong content type, JSON that does not parse, a
/// method a route does not have): their text becomes `{"error": ...}`, with
/// the status and headers (`Allow`, `Retry-After`) kept.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // Rejection texts are short; a longer one is cut, not buffered whole.
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else if text.is_empty() {
        status.canonical_reason().unwrap_or("request failed").to_lowercase()
    } else {
        let mut c = text.chars();
        c.next().map(|f| f.to_lowercase().chain(c).collect()).unwrap_or_default()
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    Response::from_parts(parts, axum::body::Body::from(json!({ "error": message }).to_string()))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Sensor,
    Reader,
    Admin,
}

/// Who the bearer token names, and whether that role may make this call:
/// 401 for an unknown token, 403 for a known one in the wrong role.
fn caller(st: &AppState, headers: &HeaderMap, allowed: &[Role]) -> ApiResult<String> {
    if st.open {
        return Ok("local".into());
    }
    let t = bearer(headers).ok_or(ApiError::Unauthorized)?;
    let tokens = st.tokens();
    let tables = [(Role::Sensor, &tokens.sensors), (Role::Reader, &tokens.readers), (Role::Admin, &tokens.admins)];
    let (role, name) = tables
        .iter()
        .find_map(|(r, m)| Tokens::find(m, t).map(|n| (*r, n.to_string())))
        .ok_or(ApiError::Unauthorized)?;
    if allowed.contains(&role) {
        Ok(name)
    } else {
        Err(ApiError::Forbidden)
    }
}

fn sensor_of(st: &AppState, headers: &HeaderMap) -> ApiResult<String> {
    caller(st, headers, &[Role::Sensor])
}

/// Readers, and admins who are readers too.
fn reader_of(st: &AppState, headers: &HeaderMap) -> ApiResult<String> {
    caller(st, headers, &[Role::Reader, Role::Admin])
}

fn admin_of(st: &AppState, headers: &HeaderMap) -> ApiResult<String> {
    caller(st, headers, &[Role::Admin])
}

fn unknown_status(s: &str) -> ApiError {
    ApiError::Invalid(Coded::new("status.unknown", format!("unknown status '{s}'")).arg("status", s))
}

fn not_an_alert_id(id: &str) -> ApiError {
    let id: String = id.chars().take(64).collect();
    ApiError::Invalid(Coded::new("alert.bad_id", format!("'{id}' is not an alert id")).arg("id", id))
}

fn text_too_long() -> ApiError {
    let max = crate::workflow::MAX_TEXT;
    ApiError::Invalid(Coded::new("text.too_long", format!("text longer than {max} bytes")).arg("max", max))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// Runs a store call on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

/// The caller's address, for the audit trail.
pub struct Peer(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let addr =
            parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string());
        Ok(Peer(addr.unwrap_or_else(|| "unknown".into())))
    }
}

/// Why a change is refused while the audit trail is broken.
pub fn read_only_message(b: &crate::audit::Broken) -> String {
    format!(
        "read-only: the audit trail is broken at line {} ({}); searches and downloads go on, changes are refused \
         until an admin repairs audit.log",
        b.line, b.reason
    )
}

/// Actions carried out while the audit trail is broken, logged (warn)
/// instead of appended: those that change nothing, and a user's change of
/// their own password (an admin made to change a first password must get in
/// to see what broke). Every other action is a change and refused. Console
/// actions are named here too.
pub const READ_ONLY_ACTIONS: &[&str] = &[
    "console.password",
    "search",
    "aggregate",
    "ledger",
    "alerts",
    "alert.view",
    "pcap",
    "evidence.export",
    "pivot",
    "incidents",
    "incident.view",
    "rules.fetch",
    "audit.read",
    "export",
    "rule.test",
    "console.login",
    "console.login_password",
    "console.login_code_failed",
    "console.login_failed",
    "console.logout",
    "dashboard",
    "investigation.view",
];

/// The operations the API and the console share: each checks its input,
/// is audited as done by `who` from `from`, and blocks (run it on a
/// blocking thread). Callers check the role first.
impl AppState {
    pub fn audit_as(&self, who: &str, from: &str, action: &str, detail: Value) -> ApiResult<()> {
        if let Some(a) = &self.audit {
            if let Some(b) = a.broken() {
                // Nothing extends a broken chain. Reads go on (the SOC can
                // still look), each logged; changes wait for a repair.
                if READ_ONLY_ACTIONS.contains(&action) {
                    tracing::warn!(who, from, action, %detail, broken_line = b.line, "read not appended to the broken audit trail");
                    return Ok(());
                }
                return Err(ApiError::ReadOnly(b.clone()));
            }
            // An action that cannot be audited is not carried out.
            a.record(who, from, action, detail).map_err(internal)?;
        }
        Ok(())
    }

    /// Where the audit trail breaks, if it does (the server is read-only).
    pub fn audit_broken(&self) -> Option<&crate::audit::Broken> {
        self.audit.as_ref().and_then(|a| a.broken())
    }

    /// Refuses a change while the audit trail is broken, for changes made
    /// before they are audited (ingest, retention).
    pub fn writable(&self) -> ApiResult<()> {
        match self.audit_broken() {
            Some(b) => Err(ApiError::ReadOnly(b.clone())),
            None => Ok(()),
        }
    }

    pub fn search_records(&self, who: &str, from: &str, p: &SearchParams) -> ApiResult<crate::store::SearchResult> {
        self.audit_as(who, from, "search", json!({"q": p.q, "from": p.from, "to": p.to}))?;
        let mut req = SearchRequest::new(query_of(self, p.q.as_deref())?);
        req.from = p.from;
        req.to = p.to;
        if let Some(s) = &p.sort {
            req.sort.field = s.clone();
        }
        req.sort.descending = match p.order.as_deref() {
            None | Some("desc") => true,
            Some("asc") => false,
            Some(o) => {
                return Err(ApiError::Invalid(
                    Coded::new("search.order", format!("order is asc or desc, not '{o}'")).arg("order", o),
                ))
            }
        };
        req.limit = p.limit.unwrap_or(100);
        req.offset = p.offset.unwrap_or(0);
        if let Some(c) = &p.cursor {
            req.after = Some(crate::store::Cursor::decode(c).map_err(ApiError::BadRequest)?);
        }
        check_range(p.from, p.to)?;
        Ok(self.store.search(&req)?)
    }

    /// The loss ledger of a range, window by window, and its verdict.
    pub fn loss_ledger(
        &self,
        who: &str,
        from: &str,
        p: &LedgerParams,
    ) -> ApiResult<(Vec<crate::ledger::Window>, crate::ledger::Completeness)> {
        self.audit_as(who, from, "ledger", json!({"from": p.from, "to": p.to, "sensor": p.sensor}))?;
        let to = p.to.unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
        });
        let from = p.from.unwrap_or(to - 86_400.0).max(0.0);
        let windows =
            crate::ledger::ledger(self.store.as_ref(), from, to, p.window.unwrap_or(3600.0), p.sensor.as_deref())?;
        let verdict = crate::ledger::completeness(&windows);
        Ok((windows, verdict))
    }

    pub fn aggregate_records(&self, who: &str, from: &str, p: &AggParams) -> ApiResult<crate::store::AggResult> {
        self.audit_as(who, from, "aggregate", json!({"q": p.q, "agg": p.agg, "field": p.field, "sum": p.sum}))?;
        self.aggregate_records_unaudited(p)
    }

    /// The same aggregation, unaudited: one of the several that make up a
    /// page (a dashboard, a search's histogram) whose view the caller audits
    /// once, so that one look is one entry of the trail.
    pub fn aggregate_records_unaudited(&self, p: &AggParams) -> ApiResult<crate::store::AggResult> {
        let q = query_of(self, p.q.as_deref())?;
        let field = || {
            p.field.clone().ok_or_else(|| {
                ApiError::Invalid(Coded::new("agg.needs_field", format!("{} needs a field", p.agg)).arg("agg", &p.agg))
            })
        };
        let agg = match p.agg.as_str() {
            "terms" => Agg::Terms {
                field: field()?,
                size: p.size.unwrap_or(10),
                sum: p
                    .sum
                    .iter()
                    .flat_map(|s| s.split(','))
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            },
            "histogram" => Agg::Histogram { interval_secs: p.interval.unwrap_or(3600.0) },
            "stats" => Agg::Stats { field: field()? },
            "cardinality" => Agg::Cardinality { field: field()? },
            other => {
                return Err(ApiError::Invalid(
                    Coded::new("agg.unknown", format!("unknown aggregation '{other}'")).arg("agg", other),
                ))
            }
        };
        check_range(p.from, p.to)?;
        // A histogram too fine for the records' span is widened by the
        // store (at most `MAX_BUCKETS` buckets), which says so in its answer.
        Ok(self.store.aggregate(&q, p.from, p.to, &agg)?)
    }

    /// Alerts, newest first, each with its triage state and incident, and
    /// how many there are.
    pub fn list_alerts(&self, who: &str, from: &str, p: &AlertsParams) -> ApiResult<(usize, Vec<Value>)> {
        self.alerts_listed(p, Some((who, from)))
    }

    /// The same list again for a view whose opening was audited (a queue's
    /// live refresh): the refresh is no action of the user's, and auditing
    /// it would bury the trail (an open tab every 5 s is 17,000 entries a
    /// day). The caller makes sure the view was audited for this user.
    pub fn list_alerts_again(&self, p: &AlertsParams) -> ApiResult<(usize, Vec<Value>)> {
        self.alerts_listed(p, None)
    }

    fn alerts_listed(&self, p: &AlertsParams, audit: Option<(&str, &str)>) -> ApiResult<(usize, Vec<Value>)> {
        let wf = workflow(self)?;
        let status = match p.status.as_deref() {
            None => None,
            Some(s) => Some(crate::workflow::Status::parse(s).ok_or_else(|| unknown_status(s))?),
        };
        let user = query_of(self, p.q.as_deref())?;
        if let Some((who, from)) = audit {
            self.audit_as(who, from, "alerts", json!({"q": p.q, "status": p.status}))?;
        }
        check_range(p.from, p.to)?;
        let q = Query::And(vec![Query::Term { field: "_log".into(), value: "alerts".into() }, user]);
        let mut req = SearchRequest::new(q);
        req.from = p.from;
        req.to = p.to;
        // Triage state lives beside the store: the status filter applies to
        // the newest alerts the store returns (at most MAX_LIMIT of them).
        req.limit = crate::store::MAX_LIMIT;
        let r = self.store.search(&req)?;
        let mut out = Vec::new();
        for mut a in r.hits {
            let id = a["id"].as_str().unwrap_or("").to_string();
            let t = wf.get(&id);
            if status.is_some_and(|s| s != t.status) {
                continue;
            }
            a["triage"] = serde_json::to_value(&t).map_err(internal)?;
            a["incident"] = wf.incident_of(&id).map_or(Value::Null, Value::String);
            out.push(a);
        }
        let total = out.len();
        let offset = p.offset.unwrap_or(0).min(total);
        let limit = p.limit.unwrap_or(100).min(crate::store::MAX_LIMIT);
        Ok((total, out.into_iter().skip(offset).take(limit).collect()))
    }

    /// One alert with its triage state and incident.
    pub fn alert(&self, who: &str, from: &str, id: &str) -> ApiResult<Value> {
        workflow(self)?;
        if !valid_alert_id(id) {
            return Err(not_an_alert_id(id));
        }
        self.audit_as(who, from, "alert.view", json!({"id": id}))?;
        self.find_alert(id)
    }

    /// The records of every flow an alert names (see [`alert_flow_uids`]),
    /// in time order: what the alert's page shows and its bundle holds.
    pub fn alert_records(&self, alert: &Value) -> ApiResult<Vec<Value>> {
        let uids = alert_flow_uids(alert);
        // A file's records (files.log) by its id, and the flows that carried it.
        let mut terms: Vec<(&str, String)> = alert_file_ids(alert).into_iter().map(|f| ("fuid", f)).collect();
        terms.extend(uids.into_iter().map(|u| ("uid", u)));
        let mut out: Vec<Value> = Vec::new();
        for part in terms.chunks(64) {
            let any: Vec<Query> =
                part.iter().map(|(f, v)| Query::Term { field: (*f).into(), value: v.clone() }).collect();
            let mut req = SearchRequest::new(Query::Or(any));
            req.limit = crate::store::MAX_LIMIT;
            out.extend(self.store.search(&req)?.hits);
        }
        out.sort_by(|a, b| a["ts"].as_f64().unwrap_or(0.0).total_cmp(&b["ts"].as_f64().unwrap_or(0.0)));
        Ok(out)
    }

    /// The flows an alert names ([`alert_flow_uids`]) and those that
    /// carried the files it names.
    pub fn alert_flows(&self, alert: &Value) -> ApiResult<Vec<String>> {
        let mut uids = alert_flow_uids(alert);
        let files = alert_file_ids(alert);
        if !files.is_empty() {
            let any: Vec<Query> = files.into_iter().map(|f| Query::Term { field: "fuid".into(), value: f }).collect();
            let mut req = SearchRequest::new(Query::Or(any));
            req.limit = 1000;
            for h in self.store.search(&req)?.hits {
                for u in ids_once(h["uid"].as_str().into_iter()) {
                    if !uids.contains(&u) {
                        uids.push(u);
                    }
                }
            }
        }
        Ok(uids)
    }

    /// One alert with its triage state and incident, unaudited (the caller
    /// audits what it does with it: a download of its packets is audited as
    /// that download, not also as a view).
    pub fn find_alert(&self, id: &str) -> ApiResult<Value> {
        let wf = workflow(self)?;
        if !valid_alert_id(id) {
            return Err(not_an_alert_id(id));
        }
        let q = Query::And(vec![
            Query::Term { field: "_log".into(), value: "alerts".into() },
            Query::Term { field: "id".into(), value: id.into() },
        ]);
        let mut a =
            self.store.search(&SearchRequest::new(q))?.hits.into_iter().next().ok_or_else(|| {
                ApiError::Absent(Coded::new("alert.unknown", format!("no alert '{id}'")).arg("id", id))
            })?;
        a["triage"] = serde_json::to_value(wf.get(id)).map_err(internal)?;
        a["incident"] = wf.incident_of(id).map_or(Value::Null, Value::String);
        Ok(a)
    }

    /// Changes an alert's triage: status (with a reason), assignee, a comment.
    pub fn triage_alert(&self, who: &str, from: &str, id: &str, c: TriageChange) -> ApiResult<crate::workflow::Triage> {
        self.triage_alert_for(who, from, id, c, "alert.triage", json!({}))
    }

    /// A triage change made as part of another action (an admin accepting
    /// a device's change as normal closes its alert): one audit entry, the
    /// action's, with `extra` added to the triage's detail.
    pub fn triage_alert_for(
        &self,
        who: &str,
        from: &str,
        id: &str,
        c: TriageChange,
        action: &str,
        extra: Value,
    ) -> ApiResult<crate::workflow::Triage> {
        use crate::workflow::{Change, Status, MAX_TEXT};
        let wf = workflow(self)?;
        if !valid_alert_id(id) {
            return Err(not_an_alert_id(id));
        }
        for t in [&c.reason, &c.assign, &c.comment].into_iter().flatten() {
            if t.len() > MAX_TEXT {
                return Err(text_too_long());
            }
        }
        let status = match &c.status {
            None => None,
            Some(s) => Some(Status::parse(s).ok_or_else(|| unknown_status(s))?),
        };
        if status.is_none() && c.assign.is_none() && c.comment.is_none() {
            return Err(invalid("triage.nothing", "nothing to change: give status, assign or comment"));
        }
        if status.is_some_and(Status::is_closed) && c.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err(invalid("triage.needs_reason", "closing an alert needs a reason"));
        }
        // The alert must exist.
        let q = Query::And(vec![
            Query::Term { field: "_log".into(), value: "alerts".into() },
            Query::Term { field: "id".into(), value: id.into() },
        ]);
        if self.store.search(&SearchRequest::new(q))?.total == 0 {
            return Err(ApiError::Absent(Coded::new("alert.unknown", format!("no alert '{id}'")).arg("id", id)));
        }
        let mut detail =
            json!({"id": id, "status": c.status, "reason": c.reason, "assign": c.assign, "comment": c.comment});
        if let (Some(d), Value::Object(extra)) = (detail.as_object_mut(), extra) {
            d.extend(extra);
        }
        self.audit_as(who, from, action, detail)?;
        let ts = now_secs();
        let io = |e: std::io::Error| ApiError::Internal(e.to_string());
        let mut t = wf.get(id);
        let by = who.to_string();
        if let Some(to) = c.assign {
            let to = if to.is_empty() { None } else { Some(to) };
            t = wf.change(Change::Assign { alert: id.into(), to, by: by.clone(), ts }).map_err(io)?;
        }
        if let Some(text) = c.comment {
            t = wf.change(Change::Comment { alert: id.into(), text, by: by.clone(), ts }).map_err(io)?;
        }
        if let Some(status) = status {
            t = wf.change(Change::Status { alert: id.into(), status, reason: c.reason, by, ts }).map_err(io)?;
        }
        Ok(t)
    }

    /// Everything about one flow, as a timeline: records with its uid, and,
    /// through the Community ID of its conn record, records of the same flow
    /// seen by other sensors (and their uids in turn).
    /// One flow's packets (by uid), or those of every flow with a Community
    /// ID (across sensors) within a time range, as a pcap file. Audited.
    pub fn flow_pcap(&self, who: &str, peer: &str, p: PcapParams) -> ApiResult<(String, Vec<u8>)> {
        let Some(src) = &self.packets else {
            return Err(absent("pcap.none_kept", "this SIEM keeps no packets"));
        };
        let ok = |v: &str| {
            !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_alphanumeric() || ":+/=-_".contains(c))
        };
        check_range(p.from, p.to)?;
        if let Some(f) = &p.filter {
            let (Some(from), Some(to), None, None, None) = (p.from, p.to, &p.uid, &p.community_id, &p.alert) else {
                return Err(invalid("pcap.filter_range", "a filter takes a time range (from and to) and no uid"));
            };
            if to - from > 86_400.0 || f.len() > 512 || f.chars().any(char::is_control) {
                return Err(invalid("pcap.filter_size", "a filter covers a day at most, in 512 characters"));
            }
            self.audit_as(who, peer, "pcap", json!({"filter": f, "from": from, "to": to}))?;
            return match src.filtered(f, from, to, MAX_FILTERED_PACKETS).map_err(ApiError::BadRequest)? {
                Some(bytes) => Ok(("filtered.pcap".into(), bytes)),
                None => Err(absent("pcap.filter_empty", "no kept packet matches the filter in that range")),
            };
        }
        let (uids, name) = match (&p.uid, &p.community_id, &p.alert) {
            // A uid as an alert's evidence names it (`conn:C…`, `http:C…`,
            // `files:F…`: the flows that carried the file) or bare.
            (Some(u), None, None) if ok(u) => {
                let flows = self.alert_flows(&json!({ "evidence": [u] }))?;
                if flows.is_empty() {
                    return Err(ApiError::Invalid(
                        Coded::new("pcap.not_a_flow", format!("'{u}' names no flow")).arg("uid", u),
                    ));
                }
                let name = flows.first().cloned().unwrap_or_default();
                (flows, name)
            }
            (None, None, Some(id)) if valid_alert_id(id) => (self.alert_flows(&self.find_alert(id)?)?, id.clone()),
            (None, Some(c), None) if ok(c) => {
                let mut req = SearchRequest::new(Query::And(vec![
                    Query::Term { field: "_log".into(), value: "conn".into() },
                    Query::Term { field: "community_id".into(), value: c.clone() },
                ]));
                req.from = p.from;
                req.to = p.to;
                req.limit = 100;
                let hits = self.store.search(&req)?.hits;
                let uids: Vec<String> = hits.iter().filter_map(|h| h["uid"].as_str().map(String::from)).collect();
                (uids, "community".to_string())
            }
            (None, None, None) | (Some(_), None, None) | (None, Some(_), None) => {
                return Err(invalid("flow.one_id", "give one uid or one community_id"))
            }
            _ => return Err(invalid("pcap.one_id", "give one uid, one community_id or one alert")),
        };
        self.audit_as(
            who,
            peer,
            "pcap",
            json!({"uid": p.uid, "community_id": p.community_id, "alert": p.alert, "flows": uids.len()}),
        )?;
        if uids.is_empty() {
            return Err(absent("pcap.no_flow", "no flow with that Community ID in the range"));
        }
        // Without a range, the flows' own span (from conn.log) narrows the
        // ring's segments to read to those that can hold them.
        let (mut from, mut to) = (p.from, p.to);
        if from.is_none() && to.is_none() {
            let any: Vec<Query> = uids.iter().map(|u| Query::Term { field: "uid".into(), value: u.clone() }).collect();
            let mut req = SearchRequest::new(Query::And(vec![
                Query::Term { field: "_log".into(), value: "conn".into() },
                Query::Or(any),
            ]));
            req.limit = 100;
            let conns = self.store.search(&req)?.hits;
            if conns.len() == uids.len() {
                let start = conns.iter().filter_map(|c| c["ts"].as_f64()).fold(f64::MAX, f64::min);
                let end = conns
                    .iter()
                    .filter_map(|c| Some(c["ts"].as_f64()? + c["duration"].as_f64().unwrap_or(0.0)))
                    .fold(f64::MIN, f64::max);
                if start <= end {
                    (from, to) = (Some(start - 1.0), Some(end + 1.0));
                }
            }
        }
        match src.pcap(&uids, from, to).map_err(ApiError::Internal)? {
            Some(bytes) => Ok((format!("{name}.pcap"), bytes)),
            None => Err(absent("pcap.flow_not_kept", "no packets of that flow are kept")),
        }
    }

    /// An alert or an incident as a signed evidence bundle: its alerts,
    /// the records and packets of their flows, a manifest of SHA-256s.
    /// Audited with who exported what.
    pub fn export_evidence(&self, who: &str, peer: &str, p: EvidenceParams) -> ApiResult<(String, Vec<u8>)> {
        let Some(signer) = &self.signer else {
            return Err(absent("evidence.no_key", "this SIEM has no evidence key (it runs without a data folder)"));
        };
        let (subject, name, alert_ids, incident) = match (&p.alert, &p.incident) {
            (Some(a), None) if valid_alert_id(a) => (json!({"alert": a}), a.clone(), vec![a.clone()], None),
            (None, Some(i)) if i.len() <= 64 && i.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => {
                let inc = self.list_incidents(who, peer, None)?.into_iter().find(|x| &x.id == i).ok_or_else(|| {
                    ApiError::Absent(Coded::new("incident.unknown", format!("no incident {i}")).arg("id", i))
                })?;
                (json!({"incident": i}), i.clone(), inc.alerts.clone(), Some(inc))
            }
            _ => return Err(invalid("evidence.one_id", "give one alert id or one incident id")),
        };
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(inc) = &incident {
            files.push(("incident.json".into(), serde_json::to_vec_pretty(inc).map_err(internal)?));
        }
        let mut uids: Vec<String> = Vec::new();
        let mut fuids: Vec<String> = Vec::new();
        for id in alert_ids.iter().filter(|id| valid_alert_id(id)) {
            let a = self.find_alert(id)?;
            uids.extend(self.alert_flows(&a)?);
            fuids.extend(alert_file_ids(&a));
            files.push((format!("alerts/{id}.json"), serde_json::to_vec_pretty(&a).map_err(internal)?));
        }
        uids.sort();
        uids.dedup();
        let named: Vec<String> =
            uids.iter().map(|u| format!("conn:{u}")).chain(fuids.iter().map(|f| format!("files:{f}"))).collect();
        let mut records = Vec::new();
        for h in self.alert_records(&json!({ "evidence": named }))? {
            records.extend(serde_json::to_vec(&h).map_err(internal)?);
            records.push(b'\n');
        }
        for u in &uids {
            if let Some(src) = &self.packets {
                if let Some(pcap) = src.pcap(std::slice::from_ref(u), None, None).map_err(ApiError::Internal)? {
                    files.push((format!("flows/{u}.pcap"), pcap));
                }
            }
        }
        files.push(("records.jsonl".into(), records));
        let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
        self.audit_as(who, peer, "evidence.export", json!({"subject": subject, "files": names}))?;
        let bytes = crate::evidence::bundle(&files, subject, who, signer).map_err(internal)?;
        Ok((format!("evidence-{name}.tar"), bytes))
    }

    fn hunter(&self) -> ApiResult<&Arc<dyn crate::hunts::Hunter>> {
        self.hunter.as_ref().ok_or_else(|| absent("hunt.unavailable", "this SIEM runs no hunts (it has no rules)"))
    }

    /// What a hunt can run, and the hunts run, newest first, each without
    /// its findings (`found` says how many).
    pub fn list_hunts(&self) -> ApiResult<Value> {
        let choices = self.hunter()?.choices();
        let hunts: Vec<Value> = self
            .hunts
            .list()
            .into_iter()
            .map(|mut h| {
                let found = h.findings.len();
                h.findings.clear();
                let mut v = serde_json::to_value(h).unwrap_or_default();
                v["found"] = json!(found);
                v
            })
            .collect();
        Ok(json!({"choices": choices, "hunts": hunts}))
    }

    pub fn hunt(&self, id: &str) -> ApiResult<crate::hunts::Hunt> {
        self.hunts.get(id).ok_or_else(|| {
            ApiError::Absent(Coded::new("hunt.unknown", format!("no hunt '{id}'")).arg("id", clip_id(id)))
        })
    }

    /// Starts a hunt over a stored range on its own thread. Audited.
    pub fn start_hunt(&self, who: &str, peer: &str, n: NewHunt) -> ApiResult<crate::hunts::Hunt> {
        let hunter = Arc::clone(self.hunter()?);
        if !(n.from.is_finite() && n.to.is_finite() && n.from >= 0.0 && n.from < n.to) {
            return Err(invalid("hunt.range", "a hunt needs a range: from before to"));
        }
        if n.to - n.from > MAX_HUNT_SECS {
            return Err(ApiError::Invalid(
                Coded::new("hunt.too_long", format!("a hunt covers {} days at most", MAX_HUNT_SECS / 86_400.0))
                    .arg("days", MAX_HUNT_SECS / 86_400.0),
            ));
        }
        let choices = hunter.choices();
        if let Some(bad) = n.chosen.iter().find(|c| !choices.iter().any(|x| &x.id == *c)) {
            return Err(ApiError::Invalid(
                Coded::new("hunt.unknown_choice", format!("no model or rule '{}'", clip_id(bad)))
                    .arg("id", clip_id(bad)),
            ));
        }
        if self.hunts.running() >= MAX_RUNNING_HUNTS {
            return Err(ApiError::Invalid(
                Coded::new("hunt.busy", format!("{MAX_RUNNING_HUNTS} hunts are running: wait for one to end"))
                    .arg("n", MAX_RUNNING_HUNTS),
            ));
        }
        let mut chosen = n.chosen;
        chosen.sort();
        chosen.dedup();
        let mut seed = [0u8; 6];
        rand::fill(&mut seed);
        let id = format!("H{}", seed.iter().map(|b| format!("{b:02x}")).collect::<String>());
        self.audit_as(who, peer, "hunt.start", json!({"hunt": id, "from": n.from, "to": n.to, "chosen": chosen}))?;
        let h = crate::hunts::Hunt {
            id: id.clone(),
            by: who.to_string(),
            started: now_secs(),
            finished: None,
            from: n.from,
            to: n.to,
            chosen,
            state: crate::hunts::HuntState::Running,
            records: 0,
            error: None,
            findings: Vec::new(),
        };
        self.hunts.add(h.clone());
        let store = Arc::clone(&self.store);
        let store2 = Arc::clone(&self.store);
        crate::hunts::spawn(Arc::clone(&self.hunts), hunter, store, id, move |ids| {
            ids.iter().map(|i| valid_alert_id(i) && alert_exists(store2.as_ref(), i)).collect()
        });
        Ok(h)
    }

    /// Puts a hunt's finding into the alert queue, with its evidence as
    /// detection named it. Audited with the reason given.
    pub fn promote_finding(&self, who: &str, peer: &str, hunt: &str, n: usize, reason: &str) -> ApiResult<String> {
        if reason.chars().count() > 4000 {
            return Err(text_too_long());
        }
        let h = self.hunt(hunt)?;
        let Some(f) = h.findings.iter().find(|f| f.n == n) else {
            return Err(ApiError::Absent(
                Coded::new("hunt.no_finding", format!("hunt {} has no finding {n}", h.id))
                    .arg("hunt", &h.id)
                    .arg("n", n),
            ));
        };
        let id = f.alert["id"].as_str().unwrap_or_default().to_string();
        if !valid_alert_id(&id) {
            return Err(internal(format!("hunt {} finding {n} has no alert id", h.id)));
        }
        if f.in_queue || alert_exists(self.store.as_ref(), &id) {
            self.hunts.update(&h.id, |x| {
                if let Some(f) = x.findings.iter_mut().find(|f| f.n == n) {
                    f.in_queue = true;
                }
            });
            return Err(ApiError::Invalid(
                Coded::new("hunt.in_queue", format!("alert {id} is in the queue already")).arg("id", &id),
            ));
        }
        let Value::Object(mut fields) = f.alert.clone() else {
            return Err(internal("a finding that is not an object"));
        };
        fields.remove("_log");
        let sensor = match fields.remove("_sensor") {
            Some(Value::String(s)) => s,
            _ => fields.get("sensor").and_then(Value::as_str).unwrap_or("hunt").to_string(),
        };
        let ts = fields.get("ts").and_then(Value::as_f64).unwrap_or(h.from);
        self.writable()?;
        self.audit_as(who, peer, "hunt.promote", json!({"id": id, "hunt": h.id, "finding": n, "reason": reason}))?;
        let rec = Record { log: "alerts".into(), sensor, ts, fields };
        self.store.ingest(std::slice::from_ref(&rec))?;
        let by = who.to_string();
        self.hunts.update(&h.id, |x| {
            if let Some(f) = x.findings.iter_mut().find(|f| f.n == n) {
                f.in_queue = true;
                f.promoted_by = Some(by);
            }
        });
        Ok(id)
    }

    pub fn flow_timeline(&self, who: &str, from: &str, p: PivotParams) -> ApiResult<Vec<Value>> {
        self.audit_as(who, from, "pivot", json!({"uid": p.uid, "community_id": p.community_id}))?;
        self.flow_records(p)
    }

    /// The records of a flow across sensors, unaudited: part of a view the
    /// caller audits (an alert's page shows its flow as other sensors saw it).
    pub fn flow_records(&self, p: PivotParams) -> ApiResult<Vec<Value>> {
        let ok = |v: &str| {
            !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_alphanumeric() || ":+/=-_".contains(c))
        };
        let (mut uids, mut cids): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
        match (p.uid, p.community_id) {
            (Some(u), None) if ok(&u) => uids.push(u),
            (None, Some(c)) if ok(&c) => cids.push(c),
            _ => return Err(invalid("flow.one_id", "give one uid or one community_id")),
        }
        let term = |f: &str, v: &str| Query::Term { field: f.into(), value: v.into() };
        // uid -> community id -> the other sensors' uids -> their records;
        // a few rounds at most, until nothing new turns up.
        let mut seen: Vec<Value> = Vec::new();
        for _ in 0..4 {
            let known = uids.len() + cids.len();
            let mut any: Vec<Query> = uids.iter().map(|u| term("uid", u)).collect();
            any.extend(cids.iter().map(|c| term("community_id", c)));
            let mut req = SearchRequest::new(Query::Or(any));
            req.limit = 1000;
            seen = self.store.search(&req)?.hits;
            for h in &seen {
                // Each id becomes a term of the next round's query: a flow
                // seen by many sensors must not grow it without bound.
                if uids.len() + cids.len() >= MAX_PIVOT_IDS {
                    break;
                }
                if let Some(c) = h["community_id"].as_str().filter(|c| !cids.iter().any(|x| x == c)) {
                    cids.push(c.to_string());
                }
                if let Some(u) = h["uid"].as_str().filter(|u| !uids.iter().any(|x| x == u)) {
                    uids.push(u.to_string());
                }
            }
            if uids.len() + cids.len() == known {
                break;
            }
        }
        seen.sort_by(|a, b| a["ts"].as_f64().unwrap_or(0.0).total_cmp(&b["ts"].as_f64().unwrap_or(0.0)));
        Ok(seen)
    }
}

impl AppState {
    /// A caller refused: logged with its address and audited as `action`,
    /// within the rate of `refusals` (past it counted, and the count said
    /// once a minute). Blocks (the audit trail is written).
    pub fn refused(&self, peer: &str, who: &str, action: &str, why: &str, detail: Value) {
        let admit = self.refusals.admit(peer);
        if let Some((count, peers)) = admit.suppressed {
            tracing::warn!(
                count,
                peers,
                "{count} more refusals in the minute before, from {peers} addresses, were not logged one by one"
            );
            self.audit_refusal("-", "-", "refused.suppressed", json!({"count": count, "peers": peers}));
        }
        if admit.write {
            tracing::warn!(peer, who, action, "refused {peer}: {why}");
            self.audit_refusal(who, peer, action, detail);
        }
    }

    fn audit_refusal(&self, who: &str, peer: &str, action: &str, detail: Value) {
        if let Some(a) = &self.audit {
            if let Err(e) = a.record(who, peer, action, detail) {
                tracing::error!(error = %e, "a refusal was not audited");
            }
        }
    }
}

/// Every 401 and 403 of the API: who was refused, from where, on what.
async fn watch_refusals(
    State(st): State<Arc<AppState>>,
    peer: Peer,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().to_string();
    let token = bearer(req.headers()).map(str::to_string);
    let resp = next.run(req).await;
    let status = resp.status();
    if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
        return resp;
    }
    let _ = tokio::task::spawn_blocking(move || {
        let tokens = st.tokens();
        let tables = [&tokens.sensors, &tokens.readers, &tokens.admins];
        let name = token.as_deref().and_then(|t| tables.iter().find_map(|m| Tokens::find(m, t))).map(str::to_string);
        let code = status.as_u16();
        let why = match &name {
            Some(n) => format!("{code} on {path}: the token of '{n}' may not do that"),
            None if token.is_some() => format!("{code} on {path}: unknown bearer token"),
            None => format!("{code} on {path}: no bearer token"),
        };
        let who = name.unwrap_or_else(|| "-".into());
        st.refused(&peer.0, &who, "auth.refused", &why, json!({"status": status.as_u16(), "path": path}));
    })
    .await;
    resp
}

fn audit(st: &AppState, who: &str, peer: &Peer, action: &str, detail: Value) -> ApiResult<()> {
    st.audit_as(who, &peer.0, action, detail)
}

#[derive(Serialize, Debug, PartialEq)]
pub struct LineError {
    pub line: usize,
    pub error: String,
}

#[derive(Serialize, Debug, Default)]
pub struct IngestReply {
    pub accepted: usize,
    pub rejected: Vec<LineError>,
    /// The batch id was seen before: nothing was stored again.
    pub duplicate: bool,
    /// Accepted records with fields the catalog does not list for their
    /// log, kept in their `_extra` field.
    pub with_unknown_fields: usize,
    /// Accepted records older than their class's retention: kept that long
    /// from now, since retention ages replayed history by when it came.
    pub older_than_retention: usize,
    /// What the sender should know about what was stored, in words.
    pub warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestParams {
    /// Log of every line without its own `_log` (or Zeek's `_path`).
    pub log: Option<String>,
}

/// Parses JSON lines into records; bad lines are reported, good ones kept.
pub fn parse_lines(
    catalog: &Catalog,
    text: &str,
    sensor: &str,
    default_log: Option<&str>,
) -> (Vec<Record>, Vec<LineError>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        if line.len() > MAX_RECORD_BYTES {
            bad.push(LineError { line: n, error: format!("record larger than {MAX_RECORD_BYTES} bytes") });
            continue;
        }
        let mut obj: Map<String, Value> = match serde_json::from_str(line) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                bad.push(LineError { line: n, error: "not a JSON object".into() });
                continue;
            }
            Err(e) => {
                bad.push(LineError { line: n, error: format!("invalid JSON: {e}") });
                continue;
            }
        };
        let log = match obj.remove("_log").or_else(|| obj.remove("_path")) {
            Some(Value::String(s)) => s,
            Some(_) => {
                bad.push(LineError { line: n, error: "_log must be a string".into() });
                continue;
            }
            None => match default_log {
                Some(l) => l.to_string(),
                None => {
                    bad.push(LineError { line: n, error: "no _log in the record and no log parameter".into() });
                    continue;
                }
            },
        };
        // The sensor is who authenticated, not what the record says.
        obj.remove("_sensor");
        match Record::validate(catalog, &log, sensor, obj) {
            Ok(r) => good.push(r),
            Err(e) => bad.push(LineError { line: n, error: e }),
        }
    }
    (good, bad)
}

/// The body as sent, decoded per its `Content-Encoding` (zstd, gzip or
/// deflate), never larger than `MAX_BODY_BYTES` however small it came: a
/// bomb is refused at the limit, not decompressed into memory.
pub(crate) fn decode_body(headers: &HeaderMap, body: Bytes) -> ApiResult<Vec<u8>> {
    let encoding = match headers.get(header::CONTENT_ENCODING) {
        None => return Ok(body.to_vec()),
        Some(v) => v.to_str().unwrap_or("").trim().to_ascii_lowercase(),
    };
    let bad = |e: std::io::Error| ApiError::BadRequest(format!("{encoding} body: {e}"));
    let reader: Box<dyn Read> = match encoding.as_str() {
        "identity" | "" => return Ok(body.to_vec()),
        "zstd" => Box::new(zstd::stream::read::Decoder::new(&body[..]).map_err(bad)?),
        "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        "deflate" => Box::new(flate2::read::ZlibDecoder::new(&body[..])),
        other => {
            return Err(ApiError::Unsupported(format!(
                "content encoding '{}' is not read here: send zstd, gzip, deflate or none",
                other.chars().take(32).collect::<String>()
            )))
        }
    };
    let mut out = Vec::new();
    reader.take(MAX_BODY_BYTES as u64 + 1).read_to_end(&mut out).map_err(bad)?;
    if out.len() > MAX_BODY_BYTES {
        return Err(ApiError::TooLarge);
    }
    Ok(out)
}

/// Fills in what the sender should know about accepted records: unknown
/// fields kept aside, and times older than their retention.
fn notes(st: &AppState, good: &[Record], reply: &mut IngestReply) {
    let now = now_secs();
    reply.with_unknown_fields = good.iter().filter(|r| r.has_extra()).count();
    let mut old: BTreeMap<crate::store::Class, (usize, String)> = BTreeMap::new();
    for r in good {
        if crate::retention::older_than_retention(&st.retention, r.class(), r.ts, now) {
            let e = old.entry(r.class()).or_insert((0, r.day()));
            e.0 += 1;
            e.1 = e.1.clone().min(r.day());
        }
    }
    reply.older_than_retention = old.values().map(|v| v.0).sum();
    if reply.with_unknown_fields > 0 {
        reply.warnings.push(format!(
            "{} records have fields their log does not list: kept in their _extra field, searchable as text",
            reply.with_unknown_fields
        ));
    }
    for (class, (n, oldest)) in old {
        let days = st.retention.get(class).max_age.map_or(0, |a| a.as_secs() / 86_400);
        reply.warnings.push(format!(
            "{n} {} from as early as {oldest} are older than their retention of {days} days: \
             kept {days} days from now, then dropped",
            class.name()
        ));
    }
}

impl ApiError {
    /// A short name of the kind of refusal, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::BadRequest(_) | ApiError::BadQuery(_) | ApiError::Invalid(_) => "bad_request",
            ApiError::TooLarge => "too_large",
            ApiError::Unsupported(_) => "unsupported",
            ApiError::NotFound | ApiError::Missing(_) | ApiError::Absent(_) => "not_found",
            ApiError::Busy => "busy",
            ApiError::ReadOnly(_) => "read_only",
            ApiError::Internal(_) => "internal",
        }
    }
}

/// Ingest, counted: every request by outcome, and its records.
async fn ingest(
    State(st): State<Arc<AppState>>,
    peer: Peer,
    p: Result<UrlQuery<IngestParams>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<IngestReply>> {
    // Who sends, for the per-sensor figure (a refused caller has none).
    let sensor = sensor_of(&st, &headers).ok();
    let r = ingest_batch(State(Arc::clone(&st)), peer, p, headers, body).await;
    let outcome = match &r {
        Ok(Json(reply)) if reply.duplicate => "duplicate",
        Ok(Json(reply)) => {
            st.metrics.records(reply.accepted, reply.rejected.len());
            if let Some(s) = &sensor {
                st.metrics.sensor_stored(s);
            }
            "accepted"
        }
        Err(e) => e.kind(),
    };
    st.metrics.batch(outcome);
    r
}

/// An ingest request holding a slot: counted in flight until dropped.
struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl InFlight {
    fn new(g: &prometheus_client::metrics::gauge::Gauge) -> InFlight {
        g.inc();
        InFlight(g.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn ingest_batch(
    State(st): State<Arc<AppState>>,
    peer: Peer,
    p: Result<UrlQuery<IngestParams>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<IngestReply>> {
    // A sensor that goes away mid-request drops this future; the batch's
    // bookkeeping (its id in flight, the ledger, the audit entry) must still
    // be finished, or every retry of that id would be refused as busy.
    tokio::spawn(ingest_batch_whole(st, peer, p, headers, body)).await.map_err(internal)?
}

async fn ingest_batch_whole(
    st: Arc<AppState>,
    peer: Peer,
    p: Result<UrlQuery<IngestParams>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<IngestReply>> {
    let sensor = sensor_of(&st, &headers)?;
    let UrlQuery(p) = p.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    // Stored records are audited after the fact: refused up front.
    st.writable()?;
    let _slot = st.ingest_slots.try_acquire().map_err(|_| ApiError::Busy)?;
    let _flight = InFlight::new(&st.metrics.ingest_in_flight);
    let raw = decode_body(&headers, body)?;
    let text = String::from_utf8(raw).map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))?;
    let batch = headers.get("x-batch-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut unresolved = false;
    let mut forgot = false;
    if let Some(id) = &batch {
        if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
            return Err(ApiError::BadRequest("X-Batch-Id is 1-128 of A-Z a-z 0-9 - _ . :".into()));
        }
        let mut seen = st.seen.lock().map_err(internal)?;
        let e = seen.entry(sensor.clone()).or_default();
        if e.ids.contains(id) {
            return Ok(Json(IngestReply { duplicate: true, ..IngestReply::default() }));
        }
        if !e.inflight.insert(id.clone()) {
            return Err(ApiError::Busy);
        }
        unresolved = e.unresolved.contains(id);
        forgot = e.forgot;
    }
    let st2 = Arc::clone(&st);
    let sensor2 = sensor.clone();
    let log = p.log.clone();
    let batch2 = batch.clone();
    let reply = blocking(move || -> ApiResult<IngestReply> {
        let st = st2;
        let sensor = sensor2;
        let keeps = st.store.keeps_batch_ids();
        if let Some(id) = batch2.as_deref() {
            // Another ingest node in front of the same store may have
            // taken it; or it is older than the ids held in memory.
            if (keeps || (forgot && !unresolved)) && st.store.batch_stored(&sensor, id)? {
                return Ok(IngestReply { duplicate: true, ..IngestReply::default() });
            }
        }
        let (good, bad) = parse_lines(&st.catalog, &text, &sensor, log.as_deref());
        let key = batch2.as_deref().map(|id| crate::store::batch_key(&sensor, id));
        if let (Some(id), Some(key), false) = (batch2.as_deref(), key.as_deref(), keeps) {
            if let Some(d) = &st.ledger_dir {
                append_synced(&d.join(BEGUN_FILE), &sensor, id).map_err(internal)?;
            }
            if unresolved {
                let n = st.store.unstore_batch(key)?;
                tracing::info!(sensor = %sensor, batch = id, records = n, "unacknowledged batch undone before storing it again");
            }
        }
        // Acknowledged only once stored durably, every record named with
        // its batch.
        st.store.ingest_batch(&good, key.as_deref())?;
        if let Some(id) = batch2.as_deref().filter(|_| keeps) {
            st.store.remember_batch(&sensor, id)?;
        }
        if let Some(wf) = &st.workflow {
            for r in good.iter().filter(|r| r.log == "alerts") {
                let f = &r.fields;
                let (Some(id), Some(rule)) =
                    (f.get("id").and_then(Value::as_str), f.get("rule.id").and_then(Value::as_str))
                else {
                    continue;
                };
                let src = f.get("id.orig_h").and_then(Value::as_str).unwrap_or("-");
                let title = format!("{} from {src}", f.get("rule.title").and_then(Value::as_str).unwrap_or(rule));
                wf.group_alert(id, &format!("{rule}|{src}"), &title, r.ts, INCIDENT_WINDOW_SECS).map_err(internal)?;
            }
        }
        let mut reply = IngestReply { accepted: good.len(), rejected: bad, ..IngestReply::default() };
        notes(&st, &good, &mut reply);
        Ok(reply)
    })
    .await;
    if let Some(id) = batch {
        let mut seen = st.seen.lock().map_err(internal)?;
        let e = seen.entry(sensor.clone()).or_default();
        e.inflight.remove(&id);
        match &reply {
            // Only a stored batch is remembered: a failed one may be
            // retried, and what it may have stored in part is undone first.
            Err(_) => {
                e.unresolved.insert(id.clone());
            }
            Ok(r) if !r.duplicate => {
                if let Some(d) = &st.ledger_dir {
                    if let Err(err) = append_synced(&d.join(DONE_FILE), &sensor, &id) {
                        // Not acknowledged: the retry undoes and stores again.
                        e.unresolved.insert(id.clone());
                        return Err(internal(err));
                    }
                }
                e.unresolved.remove(&id);
                e.remember(&id);
            }
            Ok(_) => e.remember(&id),
        }
    }
    let reply = reply?;
    if !reply.warnings.is_empty() {
        tracing::warn!(sensor = %sensor, batch = batch_name(&headers), warnings = ?reply.warnings, "ingest");
    }
    audit(
        &st,
        &sensor,
        &peer,
        "ingest",
        json!({"batch": batch_name(&headers), "accepted": reply.accepted, "rejected": reply.rejected.len(),
               "with_unknown_fields": reply.with_unknown_fields, "older_than_retention": reply.older_than_retention}),
    )?;
    Ok(Json(reply))
}

fn batch_name(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-batch-id").and_then(|v| v.to_str().ok())
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    pub q: Option<String>,
    /// Epoch seconds or ISO 8601 (inclusive).
    #[serde(default, deserialize_with = "time_param")]
    pub from: Option<f64>,
    /// Epoch seconds or ISO 8601 (exclusive).
    #[serde(default, deserialize_with = "time_param")]
    pub to: Option<f64>,
    pub sort: Option<String>,
    /// `asc` or `desc` (the default).
    pub order: Option<String>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
    /// Also say how complete the range is (from the loss ledger); needs
    /// `from` and `to`.
    pub completeness: Option<bool>,
    /// The `next_cursor` of the previous page: continue after it (no
    /// offset, no depth limit; the same query, range and order).
    pub cursor: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct LedgerParams {
    /// Epoch seconds; default: a day before `to`.
    #[serde(default, deserialize_with = "time_param")]
    pub from: Option<f64>,
    /// Epoch seconds; default: now.
    #[serde(default, deserialize_with = "time_param")]
    pub to: Option<f64>,
    /// Window length in seconds (default 3600).
    pub window: Option<f64>,
    pub sensor: Option<String>,
}

/// `from`/`to` of a request: epoch seconds, ISO 8601 (without an offset:
/// UTC) or a span before now (`15m`, `24h`, `7d`; see
/// [`crate::timerange::parse_time`]). A bad one is a 400 naming it.
fn time_param<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| crate::store::parse_time(&s).map_err(serde::de::Error::custom)).transpose()
}

fn query_of(st: &AppState, q: Option<&str>) -> ApiResult<Query> {
    parse(q.unwrap_or(""), &st.catalog).map_err(ApiError::BadQuery)
}

async fn search(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Peer,
    p: Result<UrlQuery<SearchParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let who = reader_of(&st, &headers)?;
    let UrlQuery(p) = p.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let range = iso_range(p.from, p.to);
    let r = blocking(move || {
        let r = st.search_records(&who, &peer.0, &p)?;
        let complete = match (p.completeness, p.from, p.to) {
            (Some(true), Some(from), Some(to)) if to > from => {
                // Windows of an hour, or fewer and longer over a long range.
                let window = ((to - from) / 5_000.0).max(3600.0);
                let w = crate::ledger::ledger(st.store.as_ref(), from, to, window, None)?;
                Some(crate::ledger::completeness(&w))
            }
            (Some(true), ..) => {
                return Err(ApiError::BadRequest("completeness needs a range: from and to, from before to".into()))
            }
            _ => None,
        };
        Ok((r, complete))
    })
    .await?;
    let (r, complete) = r;
    let mut out = json!({"total": r.total, "hits": r.hits});
    if let Some(next) = &r.next {
        out["next_cursor"] = Value::String(next.encode());
    }
    if let Some(range) = range {
        out["range"] = range;
    }
    if let Some(c) = complete {
        out["completeness"] = serde_json::to_value(c).map_err(internal)?;
    }
    Ok(Json(out))
}

async fn ledger(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Peer,
    p: Result<UrlQuery<LedgerParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let who = reader_of(&st, &headers)?;
    let UrlQuery(p) = p.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (windows, verdict) = blocking(move || st.loss_ledger(&who, &peer.0, &p)).await?;
    let windows: Vec<Value> = windows
        .iter()
        .map(|w| {
            let mut v = serde_json::to_value(w).unwrap_or_default();
            v["complete"] = Value::Bool(w.complete());
            v
        })
        .collect();
    Ok(Json(json!({"windows": windows, "completeness": verdict})))
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct AggParams {
    pub q: Option<String>,
    #[serde(default, deserialize_with = "time_param")]
    pub from: Option<f64>,
    #[serde(default, deserialize_with = "time_param")]
    pub to: Option<f64>,
    /// terms, histogram, stats or cardinality.
    pub agg: String,
    pub field: Option<String>,
    pub size: Option<usize>,
    pub interval: Option<f64>,
    /// terms: count fields to total per value and order by, comma-separated
    /// (`orig_ip_bytes,resp_ip_bytes`: a flow's bytes).
    pub sum: Option<String>,
}

async fn aggregate(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Peer,
    p: Result<UrlQuery<AggParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let who = reader_of(&st, &headers)?;
    let UrlQuery(p) = p.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let histogram = p.agg == "histogram";
    let r = blocking(move || st.aggregate_records(&who, &peer.0, &p)).await?;
    let mut out = serde_json::to_value(r).map_err(internal)?;
    if histogram {
        // Each bucket's start as ISO 8601 too.
        for b in out["buckets"].as_array_mut().into_iter().flatten() {
            let t = b["key"].as_str().and_then(|k| k.parse::<f64>().ok()).and_then(crate::store::iso_time);
            b["time"] = t.map_or(Value::Null, Value::String);
        }
    }
    Ok(Json(out))
}

/// The range a search was given, as ISO 8601 (what the server understood).
fn iso_range(from: Option<f64>, to: Option<f64>) -> Option<Value> {
    if from.is_none() && to.is_none() {
        return None;
    }
    let iso = |t: Option<f64>| t.and_then(crate::store::iso_time).map_or(Value::Null, Value::String);
    Some(json!({"from": iso(from), "to": iso(to)}))
}

async fn status(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    reader_of(&st, &headers)?;
    let st2 = Arc::clone(&st);
    let parts = blocking(move || Ok(st2.store.partitions()?)).await?;
    let classes = crate::retention::status(&parts, &st.retention);
    let runs = st.retention_runs.lock().map_err(internal)?;
    Ok(Json(json!({
        "store": st.store.name(),
        "partitions": parts,
        "retention": {"classes": classes, "runs": &*runs},
    })))
}

/// Enforces retention now (admins); answers what was dropped.
async fn run_retention(State(st): State<Arc<AppState>>, headers: HeaderMap, peer: Peer) -> ApiResult<Json<Value>> {
    let who = admin_of(&st, &headers)?;
    audit(&st, &who, &peer, "retention.run", json!({}))?;
    let st2 = Arc::clone(&st);
    let dropped = blocking(move || st2.enforce_retention().map_err(ApiError::Internal)).await?;
    Ok(Json(json!({"dropped": dropped})))
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct AlertsParams {
    pub q: Option<String>,
    pub status: Option<String>,
    #[serde(default, deserialize_with = "time_param")]
    pub from: Option<f64>,
    #[serde(default, deserialize_with = "time_param")]
    pub to: Option<f64>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

fn workflow(st: &AppState) -> ApiResult<&crate::workflow::Workflow> {
    st.workflow
        .as_ref()
        .ok_or_else(|| ApiError::BadRequest("this server keeps no triage state (no data directory)".into()))
}

/// Alerts, newest first, each with its triage state; `status` filters on it.
async fn alerts(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Peer,
    p: Result<UrlQuery<AlertsParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let who = reader_of(&st, &headers)?;
    let UrlQuery(p) = p.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (total, page) = blocking(move || st.list_alerts(&who, &peer.0, &p)).await?;
    Ok(Json(json!({"total": total, "hits": page})))
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct TriageChange {
    /// new, acknowledged, in_progress, closed_true_positive,
    /// closed_false_positive, closed_benign.
    pub status: Option<String>,
    pub reason: Option<String>,
    /// Assign to someone (an empty string unassigns).
    pub assign: Option<String>,
    pub comment: Option<String>,
}

/// A JSON body that is not there as JSON: 415 when its type is not
/// `application/json` (what a cross-site form sends), 400 when it does not
/// parse.
fn json_rejection(e: axum::extract::rejection::JsonRejection) -> ApiError {
    use axum::extract::rejection::JsonRejection;
    match e {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::Unsupported("a JSON body is needed: Content-Type: application/json".into())
        }
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// A hunt spans this much at most (a month).
pub const MAX_HUNT_SECS: f64 = 31.0 * 86_400.0;
/// Hunts running at once at most: each reads the store on its own thread.
pub const MAX_RUNNING_HUNTS: usize = 2;

fn clip_id(s: &str) -> String {
    s.chars().take(64).collect()
}

fn alert_exists(store: &dyn Store, id: &str) -> bool {
    let q = Query::And(vec![
        Query::Term { field: "_log".into(), value: "alerts".into() },
        Query::Term { field: "id".into(), value: id.into() },
    ]);
    store.search(&SearchRequest::new(q)).is_ok_and(|r| r.total > 0)
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct NewHunt {
    /// Epoch seconds.
    pub from: f64,
    pub to: f64,
    /// Model and rule ids (`model:scan`, a Sigma rule's id); none: all.
    #[serde(default)]
    pub chosen: Vec<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Promotion {
    #[serde(default)]
    pub reason: String,
}

async fn hunts(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    reader_of(&st, &headers)?;
    Ok(Json(blocking(move || st.list_hunts()).await?))
}

async fn start_hunt(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Peer,
    body: Result<Json<NewHunt>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let who = reader_of(&st, &headers)?;
    let Json(n) = body.map_err(json_rejection)?;
    let h = blocking(move || st.start_hunt(&who, &peer.0, n)).await?;
    Ok(Json(serde_json::to_value(h).map_err(internal)?))
}

async fn one_hunt(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> ApiResult<Json<Value>> {
    reader_of(&st, &headers)?;
    Ok(Json(serde_json::to_value(st.hunt(&id)?).map_err(internal)?))
}

async fn promote(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Peer,
    axum::extract::Path((id, n)): axum::extract::Path<(String, usize)>,
    body: Result<Json<Promotion>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let who = reader_of(&st, &headers)?;
    let Json(p) = body.map_err(json_rejection)?;
    let alert = blocking(move || st.promote_finding(&who, &peer.0, &id, n, &p.reason)).await?;
    Ok(Json(json!({"alert": alert})))
}

fn valid_alert_id(id: &str) -> bool {
    id.len() <= 64 && id.starts_with('A') && id[1..].chars().all(|c| c.is_ascii_hexdigit())
}

/// Changes an alert's triage: status (with a reason), assignee, a comment.
async fn triage(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Peer,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Result<Json<TriageChange>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let who = reader_of(&st, &headers)?;
    let Json(c) = body.map_err(json_rejection)?;
    let t = blocking(move || st.triage_alert(&who, &peer.0, &id, c)).await?;
    Ok(Json(serde_json::to_value(t).map_err(internal)?))
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct PivotParams {
    pub uid: Option<String>,
    pub community_id: Option<String>,
}

/// Everything about one flow, as a timeline (see [`AppState::flow_timeline`]).
async fn pivot(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Peer,
    p: Result<UrlQuery<PivotParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let who = reader_of(&st, &headers)?;
    let UrlQuery(p) = p.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let hits = blocking(move || st.flow_timeline(&who, &peer.0, p)).await?;
    Ok(Json(json!({"total": hits.len(), "hits": hits})))
}

/// The rules folder as a tar, for sensors to run: every file, and its
/// version (a hash of every path and content) in `X-Rules-Version`.
async fn rules_bundle(State(st): State<Arc<AppState>>, headers: HeaderMap, peer: Peer) -> ApiResult<Response> {
    let who = caller(&st, &headers, &[Role::Sensor, Role::Admin])?;
    let (version, bytes) = blocking(move || {
        let Some(dir) = &st.rules_dir else {
            return Err(ApiError::Missing("this SIEM serves no rules folder".into()));
        };
        let (version, bytes) = crate::evidence::rules_tar(dir).map_err(internal)?;
        st.audit_as(&who, &peer.0, "rules.fetch", json!({"version": version}))?;
        Ok((version, bytes))
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (header::HeaderName::from_static("x-rules-version"), version),
        ],
        bytes,
    )
        .into_response())
}

async fn evidence(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Peer,
    p: Result<UrlQuery<EvidenceParams>, QueryRejection>,
) -> ApiResult<axum::response::Response> {
    let who = reader_of(&st, &headers)?;
    let UrlQuery(p) = p.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (name, bytes) = blocking(move || st.export_evidence(&who, &peer.0, p)).await?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/x-tar".to_string()),
            (axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        bytes,
    )
        .into_response())
}

async fn pcap(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Peer,
    p: Result<UrlQuery<PcapParams>, QueryRejection>,
) -> ApiResult<axum::response::Response> {
    let who = reader_of(&st, &headers)?;
    let UrlQuery(p) = p.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (name, bytes) = blocking(move || st.flow_pcap(&who, &peer.0, p)).await?;
    // The name is a uid or a fixed word (checked above), safe in a header.
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/vnd.tcpdump.pcap".to_string()),
            (axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct IncidentsParams {
    pub status: Option<String>,
}

async fn incidents(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Peer,
    p: Result<UrlQuery<IncidentsParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let who = reader_of(&st, &headers)?;
    let UrlQuery(p) = p.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let list = blocking(move || st.list_incidents(&who, &peer.0, p.status.as_deref())).await?;
    Ok(Json(json!({"total": list.len(), "incidents": list})))
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct NewIncident {
    pub title: String,
    #[serde(default)]
    pub alerts: Vec<String>,
}

async fn create_incident(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Peer,
    body: Result<Json<NewIncident>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let who = reader_of(&st, &headers)?;
    let Json(n) = body.map_err(json_rejection)?;
    let i = blocking(move || st.create_incident(&who, &peer.0, n)).await?;
    Ok(Json(serde_json::to_value(i).map_err(internal)?))
}

fn now() -> f64 {
    now_secs()
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct IncidentChange {
    /// open, investigating, contained, closed.
    pub status: Option<String>,
    pub owner: Option<String>,
    pub note: Option<String>,
    #[serde(default)]
    pub evidence: Vec<String>,
    #[serde(default)]
    pub add_alerts: Vec<String>,
    #[serde(default)]
    pub remove_alerts: Vec<String>,
    /// Fold this other incident (its alerts, evidence) into this one.
    pub merge: Option<String>,
}

async fn change_incident(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Peer,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Result<Json<IncidentChange>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let who = reader_of(&st, &headers)?;
    let Json(c) = body.map_err(json_rejection)?;
    let i = blocking(move || st.change_incident(&who, &peer.0, &id, c)).await?;
    Ok(Json(serde_json::to_value(i).map_err(internal)?))
}

/// Incident operations shared by the API and the console.
impl AppState {
    /// Checks that every id is an alert the store holds.
    fn check_alerts(&self, ids: &[String]) -> ApiResult<()> {
        if ids.len() > 1000 {
            return Err(invalid("incident.too_many_alerts", "at most 1000 alerts at once"));
        }
        if let Some(bad) = ids.iter().find(|i| !valid_alert_id(i)) {
            return Err(not_an_alert_id(bad));
        }
        if ids.is_empty() {
            return Ok(());
        }
        let q = Query::And(vec![
            Query::Term { field: "_log".into(), value: "alerts".into() },
            Query::Or(ids.iter().map(|i| Query::Term { field: "id".into(), value: i.clone() }).collect()),
        ]);
        let mut req = SearchRequest::new(q);
        req.limit = 0;
        let r = self.store.search(&req)?;
        let mut unique = ids.to_vec();
        unique.sort();
        unique.dedup();
        if r.total < unique.len() as u64 {
            return Err(ApiError::BadRequest("some of these alerts do not exist".into()));
        }
        Ok(())
    }

    /// Incidents, most recently changed first; `status` filters on it.
    pub fn list_incidents(
        &self,
        who: &str,
        from: &str,
        status: Option<&str>,
    ) -> ApiResult<Vec<crate::workflow::Incident>> {
        use crate::workflow::IncidentStatus;
        let wf = workflow(self)?;
        let status = match status {
            None => None,
            Some(s) => Some(IncidentStatus::parse(s).ok_or_else(|| unknown_status(s))?),
        };
        self.audit_as(who, from, "incidents", json!({"status": status}))?;
        let mut list: Vec<_> = wf.incidents().into_iter().filter(|i| status.is_none_or(|s| i.status == s)).collect();
        list.sort_by(|a, b| b.updated_ts.total_cmp(&a.updated_ts));
        Ok(list)
    }

    pub fn create_incident(&self, who: &str, from: &str, n: NewIncident) -> ApiResult<crate::workflow::Incident> {
        use crate::workflow::{Change, MAX_TEXT};
        let wf = workflow(self)?;
        if n.title.trim().is_empty() || n.title.len() > MAX_TEXT {
            return Err(ApiError::Invalid(
                Coded::new("incident.title", format!("a title of 1 to {MAX_TEXT} bytes is needed"))
                    .arg("max", MAX_TEXT),
            ));
        }
        self.check_alerts(&n.alerts)?;
        let id = wf.next_incident_id();
        self.audit_as(who, from, "incident.create", json!({"id": id, "title": n.title, "alerts": n.alerts}))?;
        wf.change(Change::IncidentCreate {
            id: id.clone(),
            title: n.title,
            alerts: n.alerts,
            auto: None,
            by: who.into(),
            ts: now(),
        })
        .map_err(internal)?;
        wf.incident(&id).ok_or_else(|| ApiError::Internal(format!("incident {id} not kept")))
    }

    pub fn change_incident(
        &self,
        who: &str,
        from: &str,
        id: &str,
        c: IncidentChange,
    ) -> ApiResult<crate::workflow::Incident> {
        use crate::workflow::{Change, IncidentStatus, MAX_TEXT};
        let wf = workflow(self)?;
        if wf.incident(id).is_none() {
            return Err(ApiError::Absent(Coded::new("incident.unknown", format!("no incident '{id}'")).arg("id", id)));
        }
        let status = match c.status.as_deref() {
            None => None,
            Some("merged") => {
                return Err(invalid(
                    "incident.merge_by_name",
                    "merge by naming the incident to fold in: {\"merge\": \"I2\"}",
                ))
            }
            Some(s) => Some(IncidentStatus::parse(s).ok_or_else(|| unknown_status(s))?),
        };
        for t in [&c.owner, &c.note].into_iter().flatten().chain(c.evidence.iter()) {
            if t.len() > MAX_TEXT {
                return Err(text_too_long());
            }
        }
        if c.evidence.len() > 1000 {
            return Err(invalid("incident.too_much_evidence", "at most 1000 evidence items at once"));
        }
        self.check_alerts(&c.add_alerts)?;
        let merged = match &c.merge {
            None => None,
            Some(other) if other == id => {
                return Err(invalid("incident.merge_itself", "an incident cannot merge itself"))
            }
            Some(other) => Some(wf.incident(other).ok_or_else(|| {
                let other: String = other.chars().take(64).collect();
                ApiError::Invalid(Coded::new("incident.unknown", format!("no incident '{other}'")).arg("id", other))
            })?),
        };
        self.audit_as(
            who,
            from,
            "incident.change",
            json!({"id": id, "status": c.status, "owner": c.owner, "note": c.note,
            "evidence": c.evidence, "add_alerts": c.add_alerts, "remove_alerts": c.remove_alerts, "merge": c.merge}),
        )?;
        let ts = now();
        let io = |e: std::io::Error| ApiError::Internal(e.to_string());
        let mut add = c.add_alerts;
        let mut evidence = c.evidence;
        if let Some(m) = &merged {
            add.extend(m.alerts.iter().cloned());
            evidence.extend(m.evidence.iter().cloned());
            wf.change(Change::IncidentUpdate {
                id: m.id.clone(),
                status: Some(IncidentStatus::Merged),
                owner: None,
                note: Some(format!("merged into {id}")),
                evidence: Vec::new(),
                add_alerts: Vec::new(),
                remove_alerts: Vec::new(),
                by: who.into(),
                ts,
            })
            .map_err(io)?;
        }
        wf.change(Change::IncidentUpdate {
            id: id.into(),
            status,
            owner: c.owner,
            note: c.note,
            evidence,
            add_alerts: add,
            remove_alerts: c.remove_alerts,
            by: who.into(),
            ts,
        })
        .map_err(io)?;
        wf.incident(id).ok_or(ApiError::NotFound)
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    pub action: Option<String>,
    pub who: Option<String>,
    pub limit: Option<usize>,
}

/// The audit trail (admins): newest last.
async fn audit_trail(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Peer,
    p: Result<UrlQuery<AuditParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let who = admin_of(&st, &headers)?;
    let UrlQuery(p) = p.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let Some(a) = &st.audit else {
        return Err(ApiError::BadRequest("this server keeps no audit trail (no data directory)".into()));
    };
    audit(&st, &who, &peer, "audit.read", json!({"action": p.action, "who": p.who}))?;
    let entries = a
        .read(p.action.as_deref(), p.who.as_deref(), p.limit.unwrap_or(100).min(crate::store::MAX_LIMIT))
        .map_err(internal)?;
    Ok(Json(json!({"entries": entries})))
}

async fn fields(State(st): State<Arc<AppState>>) -> Json<Value> {
    let f: Vec<Value> = st
        .catalog
        .fields
        .iter()
        .map(|f| json!({"field": f.path, "type": f.kind.name(), "logs": f.logs, "doc": f.doc}))
        .collect();
    Json(json!({"fields": f}))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The Prometheus exposition: open like the rest of an open API, else for
/// readers and admins.
async fn metrics(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Response> {
    reader_of(&st, &headers)?;
    let st2 = Arc::clone(&st);
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_string);
    let text = blocking(move || {
        // A store that cannot list its partitions still has counters worth
        // scraping: its figures stay at their last values.
        match st2.store.partitions() {
            Ok(parts) => st2.metrics.set_store(&parts),
            Err(e) => tracing::warn!(error = %e, "store sizes not read for /metrics"),
        }
        st2.metrics.set_audit(st2.audit_broken().is_some());
        Ok(st2.metrics.render())
    })
    .await?;
    let (ct, text) = crate::metrics::negotiate(text, accept.as_deref());
    Ok(([(header::CONTENT_TYPE, ct)], text).into_response())
}

/// Alive: the process answers. No token (a load balancer or systemd's
/// watchdog asks), nothing read.
async fn healthz() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok\n").into_response()
}

/// Ready to take records: the store answers, the data folder takes a
/// write, the audit trail is not broken. 503 with the reason otherwise.
async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    let st2 = Arc::clone(&st);
    let r = tokio::task::spawn_blocking(move || -> Result<(), String> {
        if let Some(b) = st2.audit_broken() {
            return Err(format!("audit trail broken at line {}: read-only", b.line));
        }
        st2.store.partitions().map_err(|e| format!("store: {e}"))?;
        if let Some(d) = &st2.ledger_dir {
            let probe = d.join(".readyz");
            std::fs::write(&probe, b"ok")
                .and_then(|_| std::fs::remove_file(&probe))
                .map_err(|e| format!("data folder {} not writable: {e}", d.display()))?;
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    match r {
        Ok(()) => (plain, "ready\n".to_string()).into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, plain, format!("not ready: {why}\n")).into_response(),
    }
}

/// Times the query routes, counts 503s by reason, and refuses bodies
/// announced too large.
async fn observe(
    State(st): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let kind = match (req.method() == axum::http::Method::GET, req.uri().path()) {
        (true, "/api/v1/search") => Some("search"),
        (true, "/api/v1/aggregate") => Some("aggregate"),
        (true, "/api/v1/pivot") => Some("pivot"),
        (true, "/api/v1/alerts") => Some("alerts"),
        (true, "/api/v1/ledger") => Some("ledger"),
        _ => None,
    };
    // A body announced larger than any request may be is refused before a
    // byte of it is read: the client hears 413 (and, waiting on
    // `Expect: 100-continue`, sends nothing) instead of a connection reset
    // halfway through its upload.
    let announced = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        if req.uri().path() == "/api/v1/ingest" {
            st.metrics.batch(ApiError::TooLarge.kind());
        }
        return ApiError::TooLarge.into_response();
    }
    // `/readyz` says 503 by design: not a refused request.
    let api = req.uri().path().starts_with("/api/");
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    if let Some(k) = kind.filter(|_| resp.status().is_success()) {
        st.metrics.query(k, started.elapsed().as_secs_f64());
    }
    if api && resp.status() == StatusCode::SERVICE_UNAVAILABLE {
        // Busy ingest says when to come back; a read-only server does not.
        let busy = resp.headers().contains_key(header::RETRY_AFTER);
        st.metrics.unavailable(if busy { "busy" } else { "read_only" });
    }
    resp
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/v1/ingest", post(ingest))
        .route("/api/v1/search", get(search))
        .route("/api/v1/aggregate", get(aggregate))
        .route("/api/v1/ledger", get(ledger))
        .route("/api/v1/status", get(status))
        .route("/api/v1/retention/run", post(run_retention))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/alerts/{id}/triage", post(triage))
        .route("/api/v1/audit", get(audit_trail))
        .route("/api/v1/pivot", get(pivot))
        .route("/api/v1/pcap", get(pcap))
        .route("/api/v1/evidence", get(evidence))
        .route("/api/v1/rules", get(rules_bundle))
        .route("/api/v1/incidents", get(incidents).post(create_incident))
        .route("/api/v1/incidents/{id}", post(change_incident))
        .route("/api/v1/fields", get(fields))
        // Hunts over stored ranges and the promotion of their findings.
        .route("/api/v1/hunts", get(hunts).post(start_hunt))
        .route("/api/v1/hunts/{id}", get(one_hunt))
        .route("/api/v1/hunts/{id}/findings/{n}/promote", post(promote))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), watch_refusals))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), observe))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), crate::origin::refuse_cross_site))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

/// The API's contract, served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_names_its_flows_and_files_as_its_evidence_says() {
        let a = json!({"uid": "C1a", "evidence": ["http:C2b", "conn:C1a", "C3c", "files:C4d", "files:F5e",
                                                   "dns:C6f", "conn:../x", ""]});
        assert_eq!(alert_flow_uids(&a), ["C1a", "C2b", "C3c", "C4d", "C6f"]);
        assert_eq!(alert_file_ids(&a), ["F5e"]);
        assert!(alert_flow_uids(&json!({"evidence": []})).is_empty());
    }
}
