//! Shipping records and alerts to the SIEM's ingest API through a disk
//! spool. The output thread packs JSON lines (with their `_log`) into
//! zstd batches and writes each to the spool folder; a shipping thread sends
//! the spool in order and deletes a batch once the SIEM acknowledged it.
//! While the SIEM is unreachable or pushes back, the sensor keeps capturing
//! and the spool grows, up to its cap; past it, the policy decides: drop
//! the oldest record batches (never alerts), or pause the output (and so,
//! through the bounded queues, the capture). Batch ids are fixed when a
//! batch is spooled and kept across restarts, and the SIEM ignores a batch
//! id it has stored, so a retry or a restart never stores a batch twice.

use schema::Event;
use sensor::output::EventSink;
use sensor::SensorError;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpoolFull {
    /// Delete the oldest batches of records (alert batches are kept).
    DropOldest,
    /// Stop taking records until the spool drains.
    Pause,
}

#[derive(Clone, Debug)]
pub struct ShipConfig {
    /// Base URL of the SIEM (`http://soc:8080`).
    pub url: String,
    pub token: String,
    /// Records per batch.
    pub batch_records: usize,
    /// A partial batch is spooled after this long.
    pub batch_secs: f64,
    /// At the end of a run, wait this long for the spool to drain; what is
    /// left ships at the next start.
    pub retry_secs: u64,
    /// The spool folder (`<log dir>/spool` by default).
    pub spool_dir: PathBuf,
    /// Bytes of compressed batches the spool holds at most.
    pub spool_bytes: u64,
    pub spool_full: SpoolFull,
    /// How the SOC is trusted over `https://`.
    pub tls: crate::tls::ClientTls,
    /// A stats report this often while the spool drains at the end of a
    /// run (the capture's own reports stop with the capture).
    pub report_every: Option<Duration>,
    /// Raised when the SIEM refuses the sensor: a live capture then stops
    /// as if told to, every open flow logged and spooled. Without it (a
    /// replay) the run goes on to its end, spooling everything.
    pub stop_on_refusal: Option<Arc<AtomicBool>>,
    /// While the SIEM does not take batches, a warning this often (and one
    /// when it stops and when it takes them again).
    pub warn_every: Duration,
}

/// What the spool and the shipper did, shared between the two threads.
#[derive(Debug, Default)]
pub struct ShipCounters {
    pub spooled_records: AtomicU64,
    pub shipped_records: AtomicU64,
    pub shipped_batches: AtomicU64,
    pub dropped_records: AtomicU64,
    pub retries: AtomicU64,
    pub paused_ms: AtomicU64,
}

struct Shared {
    dir: PathBuf,
    counters: ShipCounters,
    /// When the first record of each batch spooled by this run was made.
    made_at: Mutex<std::collections::HashMap<u64, Instant>>,
    /// (seconds from a batch's first record to its acknowledgement, records)
    /// per batch acknowledged: the SIEM acknowledges once the batch is
    /// stored and searchable.
    latencies: Mutex<Vec<(f64, u64)>>,
    /// Why the SIEM refused the sensor, once it did: retrying cannot fix
    /// it (a bad token, a certificate, a batch refused).
    refused: Mutex<Option<String>>,
    stop: AtomicBool,
    /// Once stopping: when the shipper gives up on what is left.
    deadline: Mutex<Option<Instant>>,
}

/// Spool file names: `<seq, 12 digits>-<r|a>-<records>.zst`, where `a`
/// marks a batch of alerts. The batch id sent is `<run>-<seq>`.
fn batch_name(seq: u64, alerts: bool, n: usize) -> String {
    format!("{seq:012}-{}-{n}.zst", if alerts { 'a' } else { 'r' })
}

fn parse_batch(name: &str) -> Option<(u64, bool, u64)> {
    let stem = name.strip_suffix(".zst")?;
    let mut it = stem.split('-');
    let seq = it.next()?.parse().ok()?;
    let alerts = it.next()? == "a";
    let n = it.next()?.parse().ok()?;
    Some((seq, alerts, n))
}

/// The spool's batches, oldest first, with their sizes.
fn list(dir: &Path) -> Vec<(u64, bool, u64, PathBuf, u64)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let (seq, alerts, n) = parse_batch(&name)?;
            Some((seq, alerts, n, e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        })
        .collect();
    v.sort_by_key(|b| b.0);
    v
}

/// The shipping state as it is now, read from another thread.
#[derive(Clone)]
pub struct ShipMonitor {
    shared: Arc<Shared>,
    spool_dir: PathBuf,
}

/// What [`ShipMonitor::read`] returns.
#[derive(Clone, Debug, Default)]
pub struct ShipState {
    pub spooled_records: u64,
    pub shipped_records: u64,
    pub shipped_batches: u64,
    pub dropped_records: u64,
    pub retries: u64,
    pub paused_secs: f64,
    /// Batches, records and bytes waiting in the spool.
    pub spool_batches: u64,
    pub spool_records: u64,
    pub spool_bytes: u64,
    /// Seconds since the first record of the oldest batch of this run not
    /// yet acknowledged was made (0 when the SIEM has everything spooled).
    pub lag_secs: f64,
    /// The SIEM refused the sensor (a bad token, a certificate).
    pub refused: bool,
}

impl ShipMonitor {
    pub fn read(&self) -> ShipState {
        let c = &self.shared.counters;
        let spool = list(&self.spool_dir);
        let lag = self
            .shared
            .made_at
            .lock()
            .ok()
            .and_then(|m| m.values().min().map(|t| t.elapsed().as_secs_f64()))
            .unwrap_or(0.0);
        ShipState {
            spooled_records: c.spooled_records.load(Ordering::Relaxed),
            shipped_records: c.shipped_records.load(Ordering::Relaxed),
            shipped_batches: c.shipped_batches.load(Ordering::Relaxed),
            dropped_records: c.dropped_records.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            paused_secs: c.paused_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            spool_batches: spool.len() as u64,
            spool_records: spool.iter().map(|b| b.2).sum(),
            spool_bytes: spool.iter().map(|b| b.4).sum(),
            lag_secs: lag,
            refused: self.shared.refused.lock().map(|r| r.is_some()).unwrap_or(false),
        }
    }
}

pub struct ShipSink<S> {
    inner: S,
    cfg: ShipConfig,
    shared: Arc<Shared>,
    shipper: Option<std::thread::JoinHandle<()>>,
    records: (Vec<u8>, usize),
    alerts: (Vec<u8>, usize),
    /// Stats reports in `records`' buffer (not counted as records).
    stats_lines: usize,
    /// Records and alerts handed to the sink.
    made: u64,
    /// Names this process's counters in its stats reports: they count from
    /// its start (the spool's run id may be an earlier process's).
    ledger_run: String,
    sensor: String,
    /// The latest stats report, sent again once the spool has drained at
    /// the end of the run: the ledger's last word on the run.
    last_report: Option<schema::StatsRecord>,
    /// When the oldest record not yet spooled was made.
    first_at: Option<Instant>,
    started: Instant,
    seq: u64,
    /// When the latest stats report passed.
    reported: Instant,
    /// The time of the latest report: each report of the run is given a
    /// later one (a microsecond at least), so the SIEM's ledger, which
    /// sorts a run's reports by time, never takes two in the wrong order
    /// (a replay's reports at its end all carry the capture's last time).
    last_ts: i64,
    /// The SIEM's refusal was acted on (warned, the capture told to stop).
    refusal_seen: bool,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> SensorError {
    SensorError::Spool { path: path.to_path_buf(), error: e.to_string() }
}

impl<S: EventSink> ShipSink<S> {
    pub fn new(inner: S, cfg: ShipConfig, sensor: &str) -> Result<Self, SensorError> {
        check_url(&cfg.url).map_err(|reason| SensorError::Ship { url: cfg.url.clone(), reason })?;
        let dir = cfg.spool_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        // Batches left by an earlier run keep the ids they were spooled
        // with (its run id, their numbers), and new ones follow them. An
        // empty spool starts a new run id: numbers restart, and an id the
        // SIEM has seen must never name new records.
        let run_file = dir.join("run-id");
        let leftovers = !list(&dir).is_empty();
        let run = match std::fs::read_to_string(&run_file) {
            Ok(r) if leftovers && !r.trim().is_empty() => r.trim().to_string(),
            _ => {
                let nanos =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
                let r = format!("{}-{:x}-{:x}", sanitize(sensor), nanos, std::process::id());
                std::fs::write(&run_file, &r).map_err(|e| io_err(&run_file, e))?;
                r
            }
        };
        let seq = list(&dir).last().map_or(0, |b| b.0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let ledger_run = format!("{}-{:x}-{:x}", sanitize(sensor), nanos, std::process::id());
        // Built before the first packet: unusable TLS settings stop the run
        // before it starts, not after the capture was processed.
        let agent = cfg.tls.agent(Duration::from_secs(30)).map_err(|e| SensorError::Ship {
            url: cfg.url.clone(),
            reason: format!("the sensor's TLS settings are unusable: {e:#}"),
        })?;
        let shared = Arc::new(Shared {
            dir,
            counters: ShipCounters::default(),
            made_at: Mutex::new(Default::default()),
            latencies: Mutex::new(Vec::new()),
            refused: Mutex::new(None),
            stop: AtomicBool::new(false),
            deadline: Mutex::new(None),
        });
        let (s2, c2) = (Arc::clone(&shared), cfg.clone());
        let shipper = std::thread::Builder::new()
            .name("shipper".into())
            .spawn(move || ship_loop(&s2, &c2, &agent, &run))
            .map_err(|e| io_err(&shared.dir, e))?;
        Ok(ShipSink {
            inner,
            cfg,
            shared,
            shipper: Some(shipper),
            records: (Vec::new(), 0),
            alerts: (Vec::new(), 0),
            stats_lines: 0,
            made: 0,
            ledger_run,
            sensor: sensor.to_string(),
            last_report: None,
            first_at: None,
            started: Instant::now(),
            seq,
            reported: Instant::now(),
            last_ts: i64::MIN,
            refusal_seen: false,
        })
    }

    pub fn counters(&self) -> &ShipCounters {
        &self.shared.counters
    }

    /// A handle to read the shipping state from another thread (the
    /// metrics endpoint) while the sink runs.
    pub fn monitor(&self) -> ShipMonitor {
        ShipMonitor { shared: Arc::clone(&self.shared), spool_dir: self.cfg.spool_dir.clone() }
    }

    /// Per batch acknowledged in this run: seconds from its first record
    /// being made to the SIEM's acknowledgement, and its records.
    pub fn latencies(&self) -> Vec<(f64, u64)> {
        self.shared.latencies.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The sensor side of the loss ledger, as of now.
    fn fill_report(&self, st: &mut schema::StatsRecord, made: u64, unbuffered: u64) {
        let c = &self.shared.counters;
        let spool = list(&self.cfg.spool_dir);
        st.run = Some(self.ledger_run.clone());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        st.reported_at = Some(schema::Time(now.as_micros() as i64));
        st.records_made = Some(made);
        st.records_spooled = Some(c.spooled_records.load(Ordering::Relaxed));
        st.records_spool_dropped = Some(c.dropped_records.load(Ordering::Relaxed));
        st.records_shipped = Some(c.shipped_records.load(Ordering::Relaxed));
        st.spool_bytes = Some(spool.iter().map(|b| b.4).sum());
        let buffered = (self.records.1 + self.alerts.1) as u64;
        st.spool_records = Some(spool.iter().map(|b| b.2).sum::<u64>() + buffered + unbuffered);
    }

    fn add(&mut self, ev: &Event) -> Result<(), SensorError> {
        let mut v = serde_json::to_value(ev).map_err(|e| io_err(&self.cfg.spool_dir, e))?;
        if let Some(m) = v.as_object_mut() {
            m.insert("_log".into(), serde_json::Value::String(ev.log_name().into()));
        }
        self.first_at.get_or_insert_with(Instant::now);
        let buf = if matches!(ev, Event::Alert(_)) { &mut self.alerts } else { &mut self.records };
        serde_json::to_writer(&mut buf.0, &v).map_err(|e| io_err(&self.cfg.spool_dir, e))?;
        buf.0.push(b'\n');
        if matches!(ev, Event::Stats(_)) {
            self.stats_lines += 1;
        } else {
            buf.1 += 1;
            self.made += 1;
        }
        Ok(())
    }

    /// Why the SIEM refused the sensor, if it did.
    pub fn refusal(&self) -> Option<String> {
        self.shared.refused.lock().ok().and_then(|g| g.clone())
    }

    fn refused_error(&self, why: String) -> SensorError {
        SensorError::Ship {
            url: self.cfg.url.clone(),
            reason: format!("{why}; the run's records wait in the spool {}", self.cfg.spool_dir.display()),
        }
    }

    /// Once the SIEM refused the sensor: say so at once, and stop a live
    /// capture the way a signal does. The output itself goes on spooling
    /// whatever still comes, so no record made is lost to the refusal.
    fn on_refusal(&mut self) {
        if self.refusal_seen {
            return;
        }
        let Some(why) = self.refusal() else { return };
        self.refusal_seen = true;
        let then = if self.cfg.stop_on_refusal.is_some() { "the capture stops" } else { "the run goes on" };
        tracing::warn!(url = %self.cfg.url, "{why}; {then}, spooling every record");
        if let Some(stop) = &self.cfg.stop_on_refusal {
            stop.store(true, Ordering::Relaxed);
        }
    }

    /// Writes the pending batches to the spool, then keeps it within its
    /// cap. A refusal by the SIEM does not stop it: what was made is
    /// spooled, to ship once the refusal is fixed.
    fn spool(&mut self) -> Result<(), SensorError> {
        for alerts in [true, false] {
            let (buf, n) = if alerts { &mut self.alerts } else { &mut self.records };
            if *n == 0 && (alerts || self.stats_lines == 0) {
                continue;
            }
            let body = zstd::encode_all(&buf[..], 3).map_err(|e| io_err(&self.cfg.spool_dir, e))?;
            self.seq += 1;
            let path = self.cfg.spool_dir.join(batch_name(self.seq, alerts, *n));
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &body).and_then(|_| std::fs::rename(&tmp, &path)).map_err(|e| io_err(&path, e))?;
            if let Ok(mut m) = self.shared.made_at.lock() {
                m.insert(self.seq, self.first_at.unwrap_or_else(Instant::now));
            }
            self.shared.counters.spooled_records.fetch_add(*n as u64, Ordering::Relaxed);
            buf.clear();
            *n = 0;
            if !alerts {
                self.stats_lines = 0;
            }
        }
        self.started = Instant::now();
        self.first_at = None;
        self.keep_cap()
    }

    /// An alert about the sensor itself: records lost or the capture held
    /// back by a full spool. Alerts are never dropped, so it reaches the SOC.
    fn health_alert(&mut self, id_key: &str, title: &str, summary: schema::Summary) -> Result<(), SensorError> {
        use sha2::Digest;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let ts = schema::Time(now.as_micros() as i64);
        let h = sha2::Sha256::digest(format!("{}|{id_key}|{}", self.ledger_run, self.seq).as_bytes());
        let id: String =
            std::iter::once('A'.to_string()).chain(h.iter().take(10).map(|b| format!("{b:02x}"))).collect();
        let alert = schema::AlertRecord {
            ts,
            id,
            severity: schema::Severity::High,
            rule_source: schema::RuleSource::Sensor,
            rule_id: format!("sensor:{id_key}"),
            rule_title: title.to_string(),
            rule_version: env!("CARGO_PKG_VERSION").to_string(),
            mitre_attack: Vec::new(),
            sensor: self.sensor.clone(),
            uid: None,
            community_id: None,
            orig_h: None,
            orig_p: None,
            resp_h: None,
            resp_p: None,
            summary: summary.text,
            summary_key: summary.key.map(String::from),
            summary_args: summary.args,
            matched: Vec::new(),
            evidence: Vec::new(),
            confidence: None,
            count: 1,
            first_seen: ts,
            last_seen: ts,
        };
        tracing::warn!(rule = %alert.rule_id, "{}", alert.summary);
        self.add(&Event::Alert(Box::new(alert)))
    }

    fn keep_cap(&mut self) -> Result<(), SensorError> {
        let paused = Instant::now();
        let mut dropped = (0u64, 0u64);
        loop {
            let batches = list(&self.cfg.spool_dir);
            let total: u64 = batches.iter().map(|b| b.4).sum();
            if total <= self.cfg.spool_bytes {
                break;
            }
            // Refused, the SIEM takes nothing until the sensor is fixed and
            // restarted: waiting for a drain would hang the run.
            if self.cfg.spool_full == SpoolFull::Pause && self.refusal().is_none() {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            // The oldest batch of records; alerts are never dropped.
            let Some(b) = batches.iter().find(|b| !b.1) else { break };
            if std::fs::remove_file(&b.3).is_ok() {
                if let Ok(mut m) = self.shared.made_at.lock() {
                    m.remove(&b.0);
                }
                self.shared.counters.dropped_records.fetch_add(b.2, Ordering::Relaxed);
                dropped = (dropped.0 + 1, dropped.1 + b.2);
            } else {
                // Not removable: looping on it would hang the output.
                break;
            }
        }
        let ms = paused.elapsed().as_millis() as u64;
        if ms > 0 {
            self.shared.counters.paused_ms.fetch_add(ms, Ordering::Relaxed);
        }
        let cap = self.cfg.spool_bytes >> 20;
        if dropped.0 > 0 {
            let s = schema::Summary::en(
                "sensor.spool_dropped",
                &[
                    ("sensor", Some(self.sensor.clone())),
                    ("batches", Some(dropped.0.to_string())),
                    ("records", Some(dropped.1.to_string())),
                    ("cap", Some(cap.to_string())),
                ],
            );
            let title = schema::Summary::en("sensor.spool_dropped.title", &[]).text;
            self.health_alert("spool-full-dropped", &title, s)?;
        }
        if ms >= 1000 {
            let s = schema::Summary::en(
                "sensor.spool_paused",
                &[
                    ("sensor", Some(self.sensor.clone())),
                    ("secs", Some(format!("{:.1}", ms as f64 / 1000.0))),
                    ("cap", Some(cap.to_string())),
                ],
            );
            let title = schema::Summary::en("sensor.spool_paused.title", &[]).text;
            self.health_alert("spool-full-paused", &title, s)?;
        }
        Ok(())
    }
}

/// Sends the spool in order until told to stop and the spool is empty (or
/// the deadline is over).
fn ship_loop(sh: &Shared, cfg: &ShipConfig, agent: &ureq::Agent, run: &str) {
    let url = format!("{}/api/v1/ingest", cfg.url.trim_end_matches('/'));
    let mut wait = Duration::from_millis(200);
    let mut outage = Outage::default();
    loop {
        let deadline = if sh.stop.load(Ordering::Relaxed) {
            let mut d = sh.deadline.lock().unwrap_or_else(|p| p.into_inner());
            Some(*d.get_or_insert_with(|| Instant::now() + Duration::from_secs(cfg.retry_secs)))
        } else {
            None
        };
        let Some((seq, _, n, path, _)) = list(&sh.dir).into_iter().next() else {
            if deadline.is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if deadline.is_some_and(|t| Instant::now() >= t) {
            return;
        }
        let Ok(body) = std::fs::read(&path) else { continue };
        let id = format!("{run}-{seq}");
        let r = agent
            .post(&url)
            .set("Authorization", &format!("Bearer {}", cfg.token))
            .set("Content-Encoding", "zstd")
            .set("X-Batch-Id", &id)
            .send_bytes(&body);
        let (retry_after, why, unreachable) = match r {
            Ok(resp) => {
                let reply: serde_json::Value = resp.into_json().unwrap_or_default();
                if let Some(bad) = reply["rejected"].as_array().filter(|b| !b.is_empty()) {
                    tracing::warn!(rejected = bad.len(), first = %bad[0], "the SIEM refused records");
                }
                let _ = std::fs::remove_file(&path);
                let made = sh.made_at.lock().ok().and_then(|mut m| m.remove(&seq));
                if let (Some(t), Ok(mut l)) = (made, sh.latencies.lock()) {
                    // Bounded: a long run keeps its first million batches.
                    if l.len() < 1_000_000 {
                        l.push((t.elapsed().as_secs_f64(), n));
                    }
                }
                sh.counters.shipped_records.fetch_add(n, Ordering::Relaxed);
                sh.counters.shipped_batches.fetch_add(1, Ordering::Relaxed);
                outage.back(sh, cfg);
                wait = Duration::from_millis(200);
                continue;
            }
            // Busy or restarting: wait as it asks.
            Err(ureq::Error::Status(code @ (429 | 502 | 503 | 504), resp)) => {
                tracing::debug!(code, "SIEM busy");
                let after = resp.header("Retry-After").and_then(|s| s.parse::<u64>().ok()).map(Duration::from_secs);
                (after, format!("it answers {code}"), false)
            }
            Err(ureq::Error::Status(code, resp)) => {
                // Retrying will not help (a bad token, a batch refused):
                // the batch stays in the spool and the run says why.
                let text = resp.into_string().unwrap_or_default();
                let said = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or(text);
                let said: String = said.chars().take(200).collect();
                let m = match code {
                    401 => format!("the SIEM refused the sensor's token ({code}: {said})"),
                    403 => format!("the SIEM does not let this token ship records ({code}: {said})"),
                    _ => format!("the SIEM refused batch {id} ({code}: {said})"),
                };
                refuse(sh, m);
                return;
            }
            Err(ureq::Error::Transport(t)) => {
                // A certificate refused by either side stays refused: stop
                // with why, the batch kept, rather than retry for ever.
                if let Some(why) = crate::tls::tls_failure(&t) {
                    refuse(sh, format!("TLS with the SIEM failed: {why}"));
                    return;
                }
                tracing::debug!(error = %t, "SIEM unreachable");
                let why = match std::error::Error::source(&t) {
                    Some(cause) => format!("it does not answer: {}: {cause}", t.kind()),
                    None => format!("it does not answer: {}", t.kind()),
                };
                (None, why, true)
            }
        };
        outage.down(sh, cfg, &why, unreachable);
        sh.counters.retries.fetch_add(1, Ordering::Relaxed);
        // In steps: the end of the run must not wait out a long pause.
        let until = Instant::now() + retry_after.unwrap_or(wait).min(Duration::from_secs(10));
        while Instant::now() < until {
            let over = sh.deadline.lock().ok().and_then(|d| *d).is_some_and(|d| Instant::now() >= d);
            if over && sh.stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

fn refuse(sh: &Shared, why: String) {
    if let Ok(mut g) = sh.refused.lock() {
        *g = Some(why);
    }
}

/// Pushback (429, 503) for this long is worth a warning: short spells are
/// a busy SIEM doing its job.
const BUSY_WARN_AFTER: Duration = Duration::from_secs(10);

/// While the SIEM does not take batches: a warning when it stops, one
/// every `warn_every` while it stays away, and one when it is back, so a
/// sensor spooling is never silent about it.
#[derive(Default)]
struct Outage {
    /// Since when, and the run's spooled count then.
    since: Option<(Instant, u64)>,
    warned: Option<Instant>,
}

impl Outage {
    fn waiting(sh: &Shared) -> (u64, u64) {
        let spool = list(&sh.dir);
        (spool.iter().map(|b| b.2).sum(), spool.iter().map(|b| b.4).sum())
    }

    /// `unreachable`: no answer at all; a SIEM that pushes back (busy) is
    /// only worth a warning once it has for a while.
    fn down(&mut self, sh: &Shared, cfg: &ShipConfig, why: &str, unreachable: bool) {
        let now = Instant::now();
        let (since, _) = *self.since.get_or_insert((now, sh.counters.spooled_records.load(Ordering::Relaxed)));
        if self.warned.is_some_and(|w| now.duration_since(w) < cfg.warn_every)
            || (self.warned.is_none() && !unreachable && now.duration_since(since) < BUSY_WARN_AFTER)
        {
            return;
        }
        let (records, bytes) = Self::waiting(sh);
        if self.warned.is_none() {
            tracing::warn!(url = %cfg.url, records, bytes,
                "the SIEM at {} takes no batches ({why}); records wait in the spool ({records} records, {bytes} bytes)",
                cfg.url);
        } else {
            let secs = now.duration_since(since).as_secs();
            tracing::warn!(url = %cfg.url, records, bytes, secs,
                "the SIEM at {} has taken no batches for {secs} s ({why}); {records} records wait in the spool ({bytes} bytes)",
                cfg.url);
        }
        self.warned = Some(now);
    }

    fn back(&mut self, sh: &Shared, cfg: &ShipConfig) {
        let Some((since, spooled_then)) = self.since.take() else { return };
        if self.warned.take().is_none() {
            return;
        }
        let secs = since.elapsed().as_secs();
        let spooled = sh.counters.spooled_records.load(Ordering::Relaxed).saturating_sub(spooled_then);
        let (records, _) = Self::waiting(sh);
        tracing::warn!(url = %cfg.url, secs, spooled, records,
            "the SIEM at {} takes batches again after {secs} s; {spooled} records were spooled meanwhile, {records} still wait",
            cfg.url);
    }
}

fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).take(40).collect()
}

impl<S: EventSink> ShipSink<S> {
    /// The latest report again with the counters as of now, to the local
    /// stats.log and to the SIEM: while the spool drains after the capture,
    /// and once at the very end with the final counts.
    fn report_again(&mut self) -> Result<(), SensorError> {
        let Some(mut r) = self.last_report.clone() else { return Ok(()) };
        self.fill_report(&mut r, self.made, 0);
        self.last_ts = self.last_ts.max(r.ts.0).saturating_add(1);
        r.ts = schema::Time(self.last_ts);
        let mut ev = [Event::Stats(r)];
        self.inner.write(&mut ev)?;
        self.add(&ev[0])?;
        self.reported = Instant::now();
        self.spool()
    }
}

impl<S: EventSink> EventSink for ShipSink<S> {
    fn write(&mut self, events: &mut [Event]) -> Result<(), SensorError> {
        // Each stats report carries the sensor side of the loss ledger as
        // of its place in the stream: records made up to it, spooled,
        // dropped from a full spool, acknowledged, and the spool's depth.
        let mut made = self.made;
        for ev in events.iter_mut() {
            match ev {
                Event::Stats(st) => {
                    // Records before this report in the same call are not
                    // in the buffers yet: they wait too.
                    let unbuffered = made - self.made;
                    self.fill_report(st, made, unbuffered);
                    if st.ts.0 <= self.last_ts {
                        st.ts = schema::Time(self.last_ts.saturating_add(1));
                    }
                    self.last_ts = st.ts.0;
                    self.last_report = Some(st.clone());
                    self.reported = Instant::now();
                }
                _ => made += 1,
            }
        }
        self.inner.write(events)?;
        // Stats reports go too: they are the sensor's health at the SOC.
        for ev in events.iter() {
            self.add(ev)?;
            if self.records.1 + self.alerts.1 >= self.cfg.batch_records {
                self.spool()?;
            }
        }
        if self.started.elapsed().as_secs_f64() >= self.cfg.batch_secs {
            self.spool()?;
        }
        // A refusal is not this call's error: failing here would end the
        // output with records in hand and the pipeline's last ones unread.
        // The refusal ends the run at `flush`, once all is spooled.
        self.on_refusal();
        Ok(())
    }

    /// End of the run: everything spooled, then up to `retry_secs` for
    /// the spool to drain. A spool that did not drain is not an error of
    /// the run (it ships at the next start) and is reported; a refusal by
    /// the SIEM is, once every record of the run is in the spool.
    fn flush(&mut self) -> Result<(), SensorError> {
        self.spool()?;
        self.inner.flush()?;
        let until = Instant::now() + Duration::from_secs(self.cfg.retry_secs);
        loop {
            self.on_refusal();
            if list(&self.cfg.spool_dir).is_empty() || self.refusal_seen || Instant::now() >= until {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            if self.cfg.report_every.is_some_and(|every| self.reported.elapsed() >= every) {
                self.report_again()?;
            }
        }
        // The last word of the run for the SOC's ledger: what was shipped
        // and what still waits. It ships now if the SIEM takes batches,
        // else at the next start.
        let drained = list(&self.cfg.spool_dir).is_empty();
        self.report_again()?;
        self.inner.flush()?;
        if let Ok(mut d) = self.shared.deadline.lock() {
            let grace = if drained && !self.refusal_seen { self.cfg.retry_secs.min(10) } else { 0 };
            *d = Some(Instant::now() + Duration::from_secs(grace));
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.shipper.take() {
            let _ = h.join();
        }
        if let Some(why) = self.refusal() {
            return Err(self.refused_error(why));
        }
        let left: u64 = list(&self.cfg.spool_dir).iter().map(|b| b.2).sum();
        if left > 0 {
            tracing::warn!(records = left, dir = %self.cfg.spool_dir.display(), "spool not drained; it ships at the next start");
        }
        Ok(())
    }
}

impl<S> Drop for ShipSink<S> {
    /// A sink dropped without a flush (an error ended the run): the shipper
    /// stops after its end-of-run wait; the spool keeps what is left.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// The sensor's output: its log files, and the SIEM when shipping.
pub enum Output<S> {
    Logs(S),
    Shipped(Box<ShipSink<S>>),
}

impl<S: EventSink> EventSink for Output<S> {
    fn write(&mut self, events: &mut [Event]) -> Result<(), SensorError> {
        match self {
            Output::Logs(s) => s.write(events),
            Output::Shipped(s) => s.write(events),
        }
    }

    fn flush(&mut self) -> Result<(), SensorError> {
        match self {
            Output::Logs(s) => s.flush(),
            Output::Shipped(s) => s.flush(),
        }
    }
}

/// The SOC's address: `https://`, or `http://` to a SOC on this machine
/// only, since every batch carries the sensor's token and its records in
/// the clear otherwise.
pub fn check_url(url: &str) -> Result<(), String> {
    let u = url::Url::parse(url).map_err(|e| format!("not an address: {e}"))?;
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => return Err("the address names no host".into()),
    };
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err("http:// would send the sensor's token and records in the clear: use https:// \
                       (http:// is for a SOC on this machine)"
            .into()),
        other => Err(format!("'{other}://' is not an address the SOC serves (https://host:port)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_cross_the_network_in_the_clear() {
        for ok in ["https://soc.city:8443", "http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in ["http://soc.city:8080", "http://10.0.0.5", "ftp://soc.city", "soc.city:8443"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
    use std::io::Write;

    /// What the sensor's log (stderr) would show, kept in memory.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);

    impl Write for Log {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Nowhere;

    impl EventSink for Nowhere {
        fn write(&mut self, _: &mut [Event]) -> Result<(), SensorError> {
            Ok(())
        }
        fn flush(&mut self) -> Result<(), SensorError> {
            Ok(())
        }
    }

    /// Nothing answers at the SIEM's address: the sensor says so when the
    /// first batch fails and then once per `warn_every`, not per retry.
    #[test]
    fn a_sensor_warns_while_the_siem_takes_nothing_at_a_bounded_rate() {
        let log = Log::default();
        let l2 = log.clone();
        let sub = tracing_subscriber::fmt().with_writer(move || l2.clone()).with_ansi(false).finish();
        tracing::subscriber::set_global_default(sub).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cfg = ShipConfig {
            url: format!("http://127.0.0.1:{port}"),
            token: "t".into(),
            batch_records: 1,
            batch_secs: 3600.0,
            retry_secs: 3,
            spool_dir: tmp.path().join("spool"),
            spool_bytes: 1 << 20,
            spool_full: SpoolFull::DropOldest,
            tls: Default::default(),
            report_every: None,
            stop_on_refusal: None,
            warn_every: Duration::from_millis(1000),
        };
        let mut sink = ShipSink::new(Nowhere, cfg, "s").unwrap();
        let conn = schema::sample_events().into_iter().find(|e| e.log_name() == "conn").unwrap();
        sink.write(&mut [conn]).unwrap();
        sink.flush().unwrap();
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        let url = format!("the SIEM at http://127.0.0.1:{port}");
        let first: Vec<&str> = text.lines().filter(|l| l.contains(&format!("{url} takes no batches"))).collect();
        assert_eq!(first.len(), 1, "{text}");
        assert!(first[0].contains("it does not answer") && first[0].contains("1 records"), "{text}");
        // Retries every 200 ms to 5 s over 3 s: a dozen, warned about
        // once a second at most.
        let again = text.lines().filter(|l| l.contains(&format!("{url} has taken no batches for"))).count();
        assert!((1..=3).contains(&again), "{text}");
        let retries = sink.counters().retries.load(Ordering::Relaxed);
        assert!(retries > 1 + again as u64, "{retries} retries, {again} warnings");
    }

    /// A SIEM that refuses every batch with 401, as for a wrong token.
    fn refusing_siem() -> u16 {
        use std::io::{BufRead, BufReader, Read};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut len = 0usize;
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let _ = r.take(len as u64).read_to_end(&mut Vec::new());
                let body = r#"{"error":"missing or unknown bearer token"}"#;
                let _ = write!(
                    c,
                    "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        port
    }

    /// Records and alerts in the spool (stats reports aside).
    fn spooled(dir: &Path) -> (u64, u64) {
        let mut n = (0, 0);
        for b in list(dir) {
            let raw = zstd::decode_all(&std::fs::read(&b.3).unwrap()[..]).unwrap();
            for l in String::from_utf8(raw).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                match v["_log"].as_str() {
                    Some("stats") => {}
                    Some("alerts") => n = (n.0 + 1, n.1 + 1),
                    _ => n.0 += 1,
                }
            }
        }
        n
    }

    /// The refusal met at every point of the run: before the first record
    /// (an earlier batch waited in the spool), between records, or only at
    /// the end. Whichever, every record and alert made is in the spool, the
    /// output never fails before the end, and the end says why.
    #[test]
    fn a_refusal_at_any_point_loses_no_record() {
        let port = refusing_siem();
        let samples = schema::sample_events();
        let conn = samples.iter().find(|e| e.log_name() == "conn").unwrap().clone();
        let alert = samples.iter().find(|e| e.log_name() == "alerts").unwrap().clone();
        for run in 0..30 {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("spool");
            std::fs::create_dir_all(&dir).unwrap();
            // An earlier run's batch: the shipper meets the refusal on it.
            let body = zstd::encode_all(&b"{\"_log\":\"conn\",\"ts\":1}\n"[..], 3).unwrap();
            std::fs::write(dir.join(batch_name(1, false, 1)), body).unwrap();
            std::fs::write(dir.join("run-id"), "earlier").unwrap();
            let cfg = ShipConfig {
                url: format!("http://127.0.0.1:{port}"),
                token: "wrong".into(),
                batch_records: 4,
                batch_secs: 3600.0,
                retry_secs: 5,
                spool_dir: dir.clone(),
                spool_bytes: 1 << 20,
                spool_full: if run % 2 == 0 { SpoolFull::DropOldest } else { SpoolFull::Pause },
                tls: Default::default(),
                report_every: None,
                stop_on_refusal: None,
                warn_every: Duration::from_secs(60),
            };
            let mut sink = ShipSink::new(Nowhere, cfg, "s").unwrap();
            // Where in the run of 18 the refusal is waited for.
            let at = [0, 5, 17, 18][run % 4];
            for i in 0..18 {
                if i == at {
                    let t = Instant::now();
                    while sink.refusal().is_none() {
                        assert!(t.elapsed() < Duration::from_secs(10), "never refused");
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                let ev = if i == 9 { alert.clone() } else { conn.clone() };
                sink.write(&mut [ev]).unwrap();
            }
            let e = sink.flush().unwrap_err().to_string();
            assert!(e.contains("refused the sensor's token (401: missing or unknown bearer token)"), "{e}");
            assert_eq!(spooled(&dir), (1 + 18, 1), "run {run}, refused at record {at}");
        }
    }
}
