//! The detector as the sensor runs it: rules loaded once and shared, an
//! evaluator per thread, alerts folded by rule and endpoints.

pub use crate::alert::{make_alert, parse_uid, AlertSpec, Subject};
use crate::error::RuleError;
use crate::intel::{self, IntelHit, IntelSet};
use crate::models::{Models, ModelsConfig};
use crate::sigma::correlation::{CorrelationConfig, CorrelationEngine, CorrelationHit};
use crate::sigma::engine::{Evaluator, RuleHit};
use crate::sigma::mapping::Mapping;
use crate::sigma::{self, LoadReport, SigmaOptions, SigmaSet};
use crate::yara::{self, YaraHit, YaraScanner, YaraSet};
use schema::{AlertRecord, Event, FlowUid, RuleSource, Severity, Summary, Time};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct DetectorConfig {
    pub sigma_paths: Vec<PathBuf>,
    pub yara_paths: Vec<PathBuf>,
    pub intel_paths: Vec<PathBuf>,
    pub mapping: Mapping,
    pub placeholders: HashMap<String, Vec<String>>,
    pub sensor_name: String,
    /// Repeats of a rule on the same endpoints within this window (record
    /// time) are folded into one alert.
    pub aggregate_window_secs: f64,
    /// Alerts held open for folding; beyond it the oldest is written out.
    pub max_open_alerts: usize,
    /// Bytes scanned at the start of each TCP stream direction.
    pub stream_scan_bytes: usize,
    /// Largest file handed to YARA (bytes beyond it are not scanned).
    pub file_scan_bytes: usize,
    /// Scan UDP payloads.
    pub scan_udp: bool,
    /// Stream bytes one worker holds for scanning at most; past it, a
    /// stream is scanned with what it has instead of waiting for more.
    pub stream_buffer_bytes: usize,
    pub correlation: CorrelationConfig,
    /// How often the indicator files are looked at for changes.
    pub intel_reload_secs: u64,
    /// `models.toml`: the anomaly models' thresholds (none: no models).
    pub models_path: Option<PathBuf>,
    /// `tuning.toml`: rules switched off and suppressions.
    pub tuning_path: Option<PathBuf>,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            sigma_paths: Vec::new(),
            yara_paths: Vec::new(),
            intel_paths: Vec::new(),
            mapping: Mapping::shipped(),
            placeholders: HashMap::new(),
            sensor_name: "sensor".into(),
            aggregate_window_secs: 60.0,
            max_open_alerts: 10_000,
            stream_scan_bytes: 64 << 10,
            file_scan_bytes: 8 << 20,
            scan_udp: true,
            stream_buffer_bytes: 16 << 20,
            correlation: CorrelationConfig::default(),
            intel_reload_secs: 5,
            models_path: None,
            tuning_path: None,
        }
    }
}

/// Everything loaded from the rule folders, shared read-only.
pub struct RuleSet {
    pub sigma: SigmaSet,
    pub sigma_report: LoadReport,
    pub yara: Option<Arc<YaraSet>>,
    pub intel: Arc<IntelSet>,
    pub models: ModelsConfig,
    pub tuning: crate::tuning::Tuning,
    pub errors: Vec<RuleError>,
    pub cfg: DetectorConfig,
}

impl RuleSet {
    pub fn load(cfg: DetectorConfig) -> RuleSet {
        let opts = SigmaOptions { mapping: cfg.mapping.clone(), placeholders: cfg.placeholders.clone() };
        let (sigma, sigma_report) = sigma::load(&cfg.sigma_paths, &opts);
        let mut errors = sigma_report.errors.clone();
        let (yara, yerr) = if cfg.yara_paths.is_empty() { (None, Vec::new()) } else { yara::load(&cfg.yara_paths) };
        errors.extend(yerr);
        let (intel, ierr) = intel::load(&cfg.intel_paths);
        errors.extend(ierr);
        let models = match &cfg.models_path {
            Some(p) => {
                let (m, merr) = ModelsConfig::load(p, &cfg.placeholders);
                errors.extend(merr);
                m
            }
            None => ModelsConfig::default(),
        };
        let tuning = match &cfg.tuning_path {
            Some(p) => {
                let (t, terr) = crate::tuning::Tuning::load(p);
                errors.extend(terr);
                t
            }
            None => crate::tuning::Tuning::default(),
        };
        RuleSet { sigma, sigma_report, yara, intel: Arc::new(intel), models, tuning, errors, cfg }
    }

    pub fn wants_payload(&self) -> bool {
        self.yara.is_some()
    }
}

/// Alerts fold by rule, source and destination.
type FoldKey = (String, Option<IpAddr>, Option<IpAddr>);

struct Open {
    alert: AlertRecord,
}

/// Folds repeats (same rule, same source and destination) within a window.
pub struct Aggregator {
    window_us: i64,
    max_open: usize,
    open: HashMap<FoldKey, Open>,
    /// Open alerts about a flow whose Community ID is not known yet (it
    /// comes with the flow's conn.log record, when the flow ends).
    awaiting_cid: HashMap<FlowUid, Vec<FoldKey>>,
}

const EVIDENCE_KEPT: usize = 20;

impl Aggregator {
    pub fn new(window_secs: f64, max_open: usize) -> Self {
        Aggregator {
            window_us: (window_secs * 1e6) as i64,
            max_open: max_open.max(1),
            open: HashMap::new(),
            awaiting_cid: HashMap::new(),
        }
    }

    pub fn add(&mut self, a: AlertRecord, out: &mut Vec<AlertRecord>) {
        let key = (a.rule_id.clone(), a.orig_h, a.resp_h);
        if let Some(o) = self.open.get_mut(&key) {
            if a.first_seen.0 - o.alert.last_seen.0 <= self.window_us {
                let x = &mut o.alert;
                x.count += a.count;
                x.last_seen = x.last_seen.max(a.last_seen);
                for e in a.evidence {
                    if x.evidence.len() < EVIDENCE_KEPT && !x.evidence.contains(&e) {
                        x.evidence.push(e);
                    }
                }
                for m in a.matched {
                    if x.matched.len() < EVIDENCE_KEPT && !x.matched.contains(&m) {
                        x.matched.push(m);
                    }
                }
                return;
            }
            if let Some(old) = self.open.remove(&key) {
                self.forget(&old.alert);
                out.push(old.alert);
            }
        }
        if self.open.len() >= self.max_open {
            if let Some(k) = self.open.iter().min_by_key(|(_, o)| o.alert.last_seen).map(|(k, _)| k.clone()) {
                if let Some(o) = self.open.remove(&k) {
                    self.forget(&o.alert);
                    out.push(o.alert);
                }
            }
        }
        if let (Some(uid), None) = (a.uid, &a.community_id) {
            self.awaiting_cid.entry(uid).or_default().push(key.clone());
        }
        self.open.insert(key, Open { alert: a });
    }

    /// A flow's Community ID became known: fill it into its open alerts.
    pub fn community_id(&mut self, uid: FlowUid, cid: &str) {
        let Some(keys) = self.awaiting_cid.remove(&uid) else { return };
        for k in keys {
            if let Some(o) = self.open.get_mut(&k) {
                if o.alert.uid == Some(uid) && o.alert.community_id.is_none() {
                    o.alert.community_id = Some(cid.to_string());
                }
            }
        }
    }

    fn forget(&mut self, a: &AlertRecord) {
        let Some(uid) = a.uid else { return };
        if let Some(keys) = self.awaiting_cid.get_mut(&uid) {
            keys.retain(|k| !(k.0 == a.rule_id && k.1 == a.orig_h && k.2 == a.resp_h));
            if keys.is_empty() {
                self.awaiting_cid.remove(&uid);
            }
        }
    }

    /// Writes out alerts whose window has passed at record time `now`.
    pub fn expire(&mut self, now: Time, out: &mut Vec<AlertRecord>) {
        let w = self.window_us;
        let mut done: Vec<_> =
            self.open.iter().filter(|(_, o)| now.0 - o.alert.last_seen.0 > w).map(|(k, _)| k.clone()).collect();
        done.sort_by_key(|k| self.open.get(k).map(|o| o.alert.first_seen));
        for k in done {
            if let Some(o) = self.open.remove(&k) {
                self.forget(&o.alert);
                out.push(o.alert);
            }
        }
    }

    pub fn flush(&mut self, out: &mut Vec<AlertRecord>) {
        self.awaiting_cid.clear();
        let mut all: Vec<AlertRecord> = self.open.drain().map(|(_, o)| o.alert).collect();
        all.sort_by(|a, b| a.first_seen.cmp(&b.first_seen).then_with(|| a.rule_id.cmp(&b.rule_id)));
        out.extend(all);
    }

    pub fn open(&self) -> usize {
        self.open.len()
    }
}

/// Stable alert id: the same input gives the same ids on every replay.
fn endpoints(subj: &Subject) -> String {
    match (subj.orig, subj.resp) {
        (Some(o), Some(r)) => format!(" ({}:{} -> {}:{})", fmt_ip(o.0), o.1, fmt_ip(r.0), r.1),
        _ => String::new(),
    }
}

fn fmt_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v) => format!("[{v}]"),
        v => v.to_string(),
    }
}

#[derive(Debug, Default, Clone)]
pub struct DetectorCounters {
    pub records: u64,
    pub sigma_matches: u64,
    pub correlation_matches: u64,
    pub intel_matches: u64,
    pub yara_matches: u64,
    pub files_scanned: u64,
    pub alerts_raised: u64,
    /// Alerts of disabled rules or suppressed by `tuning.toml`.
    pub alerts_silenced: u64,
}

/// The record-side detector (Sigma, correlation, intel, YARA on files),
/// one per output thread.
pub struct Detector {
    rules: Arc<RuleSet>,
    /// The indicators in use: those of the rule set, or a newer load of
    /// the same files after they changed.
    intel: Arc<IntelSet>,
    intel_files: Vec<(PathBuf, Option<std::time::SystemTime>)>,
    intel_checked: std::time::Instant,
    eval: Evaluator,
    corr: CorrelationEngine,
    yara: Option<YaraScanner>,
    agg: Aggregator,
    models: Models,
    model_alerts: Vec<AlertRecord>,
    hits: Vec<RuleHit>,
    chits: Vec<CorrelationHit>,
    ihits: Vec<IntelHit>,
    yhits: Vec<YaraHit>,
    now: Time,
    expired_at: Time,
    pub counters: DetectorCounters,
    /// Flows of alerts raised since the last `take_raised_flows`, before
    /// folding holds them back: the packet ring pins them at once.
    raised_flows: Vec<FlowUid>,
}

impl Detector {
    pub fn new(rules: Arc<RuleSet>) -> Detector {
        let corr = CorrelationEngine::new(&rules.sigma, rules.cfg.correlation.clone());
        let agg = Aggregator::new(rules.cfg.aggregate_window_secs, rules.cfg.max_open_alerts);
        let yara = rules.yara.clone().map(YaraScanner::new);
        let intel_files = intel::fingerprint(&rules.cfg.intel_paths);
        let models = Models::new(rules.models.clone());
        Detector {
            intel: Arc::clone(&rules.intel),
            intel_files,
            intel_checked: std::time::Instant::now(),
            rules,
            eval: Evaluator::default(),
            corr,
            yara,
            agg,
            models,
            model_alerts: Vec::new(),
            hits: Vec::new(),
            chits: Vec::new(),
            ihits: Vec::new(),
            yhits: Vec::new(),
            now: Time(0),
            expired_at: Time(0),
            counters: DetectorCounters::default(),
            raised_flows: Vec::new(),
        }
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Runs a new rule set from the next record on. Alerts being folded
    /// stay open and fold on; the anomaly models keep what they learned
    /// unless their settings changed; correlations start their windows
    /// afresh, since their rules may be other rules now.
    pub fn reload(&mut self, rules: Arc<RuleSet>) {
        self.corr = CorrelationEngine::new(&rules.sigma, rules.cfg.correlation.clone());
        self.yara = rules.yara.clone().map(YaraScanner::new);
        self.intel = Arc::clone(&rules.intel);
        self.intel_files = intel::fingerprint(&rules.cfg.intel_paths);
        if rules.models != self.rules.models {
            self.models = Models::new(rules.models.clone());
        }
        self.rules = rules;
    }

    /// Reloads the indicator files if any changed since the last look (at
    /// most every `intel_reload_secs` of wall time). Returns the errors of the new
    /// load; on errors in a file, its indicators are left out, as at start.
    pub fn reload_intel_if_changed(&mut self) -> Option<Vec<RuleError>> {
        let every = std::time::Duration::from_secs(self.rules.cfg.intel_reload_secs);
        if self.intel_checked.elapsed() < every || self.rules.cfg.intel_paths.is_empty() {
            return None;
        }
        self.intel_checked = std::time::Instant::now();
        let now = intel::fingerprint(&self.rules.cfg.intel_paths);
        if now == self.intel_files {
            return None;
        }
        self.intel_files = now;
        let (set, errors) = intel::load(&self.rules.cfg.intel_paths);
        tracing::info!(indicators = set.len(), errors = errors.len(), "indicator files changed, reloaded");
        self.intel = Arc::new(set);
        Some(errors)
    }

    /// Evaluates one record; finished alerts are appended to `out`.
    pub fn observe(&mut self, ev: &Event, out: &mut Vec<AlertRecord>) {
        if let Event::Alert(a) = ev {
            // Made elsewhere (payload scanning on the workers): folded here.
            self.now = self.now.max(a.last_seen);
            self.raise((**a).clone(), out);
            return;
        }
        if matches!(ev, Event::Stats(_)) {
            return;
        }
        self.counters.records += 1;
        let rules = Arc::clone(&self.rules);
        self.hits.clear();
        rules.sigma.engine.eval(ev, &mut self.eval, &mut self.hits);
        let ts = self.eval.flat.get("ts").next().and_then(|v| self.eval.flat.num_of(v));
        if let Some(t) = ts.map(|f| Time((f * 1e6).round() as i64)) {
            self.now = self.now.max(t);
        }
        if let Event::Conn(c) = ev {
            if let Some(cid) = &c.community_id {
                self.agg.community_id(c.uid, cid);
            }
        }
        if !self.models.is_empty() {
            self.models.observe(ev.log_name(), &self.eval.flat, &rules.cfg.sensor_name, &mut self.model_alerts);
            self.raise_model_alerts(out);
        }
        self.ihits.clear();
        let intel = Arc::clone(&self.intel);
        intel.check(ev, &self.eval.flat, &mut self.ihits);
        let scan_file = matches!(ev, Event::Files(f) if f.content.is_some()) && self.yara.is_some();
        if self.hits.is_empty() && self.ihits.is_empty() && !scan_file {
            // The common case: nothing to say about this record.
            self.expire(out);
            return;
        }
        let subj = Subject::from_flat(&self.eval.flat);
        let log = ev.log_name();
        let sensor = rules.cfg.sensor_name.as_str();
        let hits = std::mem::take(&mut self.hits);
        self.sigma_alerts(&rules, log, &subj, &hits, out);
        self.hits = hits;
        for h in std::mem::take(&mut self.ihits) {
            let Some(ind) = intel.indicators.get(h.indicator as usize) else { continue };
            self.counters.intel_matches += 1;
            let rule_id = format!("intel:{}:{}", ind.kind.as_str(), ind.value);
            let (kind, value) = (Some(ind.kind.as_str().to_string()), Some(ind.value.to_string()));
            let title = Summary::en(
                "intel.title",
                &[("kind", kind.clone()), ("value", value.clone()), ("source", Some(ind.source.to_string()))],
            )
            .text;
            // The title's source goes with the summary's arguments, so a
            // reader's language can have the title too.
            let summary = Summary::en(
                "intel.match",
                &[
                    ("field", Some(h.field.to_string())),
                    ("kind", kind),
                    ("value", value),
                    ("endpoints", Some(endpoints(&subj))),
                ],
            );
            let mut summary = summary;
            summary.args.0.insert("source".into(), ind.source.to_string());
            let attack: Vec<String> = Vec::new();
            let spec = AlertSpec {
                source: RuleSource::Ioc,
                rule_id: &rule_id,
                title: &title,
                version: "",
                severity: if ind.confidence >= 80 { Severity::High } else { Severity::Medium },
                attack: &attack,
                summary,
                matched: vec![format!("{}={}", h.field, clip(&h.value))],
                evidence: subj.uid.map(|u| vec![format!("{log}:{u}")]).unwrap_or_default(),
                confidence: Some(ind.confidence),
            };
            self.raise(make_alert(sensor, &subj, spec, subj.ts, 1), out);
        }
        if let (Event::Files(f), Some(scanner)) = (ev, self.yara.as_mut()) {
            if let Some(content) = f.content.as_deref() {
                let data = content.get(..rules.cfg.file_scan_bytes.min(content.len())).unwrap_or(content);
                self.yhits.clear();
                scanner.scan(data, &mut self.yhits);
                self.counters.files_scanned += 1;
                let source = Some(f.source.to_string());
                let what = match (&f.filename, &f.mime_type) {
                    (Some(n), _) => What("yara.file.named", vec![("file", Some(clip(n))), ("source", source)]),
                    (None, Some(m)) => What("yara.file.typed", vec![("mime", Some(m.to_string())), ("source", source)]),
                    (None, None) => What("yara.file", vec![("source", source)]),
                };
                let mut hashes = Vec::new();
                for (k, v) in [("md5", &f.md5), ("sha1", &f.sha1), ("sha256", &f.sha256)] {
                    if let Some(v) = v {
                        hashes.push(format!("{k}={v}"));
                    }
                }
                for y in std::mem::take(&mut self.yhits) {
                    let ev = vec![format!("files:{}", f.fuid), format!("conn:{}", f.uid)];
                    let a = yara_alert(&rules, sensor, &subj, &y, &what, hashes.clone(), ev);
                    self.counters.yara_matches += 1;
                    self.raise(a, out);
                }
            }
        }
        self.expire(out);
    }

    /// Alerts (and correlation steps) for the Sigma rules `hits` of one
    /// record, whose subject is `subj`.
    fn sigma_alerts(
        &mut self,
        rules: &RuleSet,
        log: &str,
        subj: &Subject,
        hits: &[RuleHit],
        out: &mut Vec<AlertRecord>,
    ) {
        let sensor = rules.cfg.sensor_name.as_str();
        for h in hits {
            let Some(r) = rules.sigma.rules.get(h.rule as usize) else { continue };
            self.counters.sigma_matches += 1;
            if !self.corr.is_empty() {
                self.chits.clear();
                let uid = subj.uid.map(|u| u.to_string());
                let ts = subj.ts.as_secs_f64();
                self.corr.observe(&rules.sigma, h.rule, ts, &self.eval.flat, uid.as_deref(), &mut self.chits);
                for c in std::mem::take(&mut self.chits) {
                    self.correlation_alert(rules, &c, subj, out);
                }
            }
            if r.quiet {
                continue;
            }
            let matched: Vec<String> = h.matched.iter().map(|(f, v)| format!("{f}={}", clip(v))).collect();
            let id = r.meta.id.clone().unwrap_or_else(|| r.meta.title.clone());
            let summary = Summary::en(
                "sigma.match",
                &[("title", Some(r.meta.title.clone())), ("endpoints", Some(endpoints(subj)))],
            );
            let evidence = subj.uid.map(|u| vec![format!("{log}:{u}")]).unwrap_or_default();
            let spec = AlertSpec {
                source: RuleSource::Sigma,
                rule_id: &id,
                title: &r.meta.title,
                version: &r.version,
                severity: r.severity,
                attack: &r.attack,
                summary,
                matched,
                evidence,
                confidence: None,
            };
            self.raise(make_alert(sensor, subj, spec, subj.ts, 1), out);
        }
    }

    /// A stored record of `log` (as the SIEM returns it) through the Sigma
    /// rules and their correlations: hunting over history. The anomaly
    /// models are the caller's; intelligence and YARA need the sensor's
    /// typed record and its payloads, and are not run.
    pub fn observe_stored(
        &mut self,
        log: &str,
        rec: &serde_json::Map<String, serde_json::Value>,
        out: &mut Vec<AlertRecord>,
    ) {
        self.counters.records += 1;
        let rules = Arc::clone(&self.rules);
        self.hits.clear();
        rules.sigma.engine.eval_stored(log, rec, &mut self.eval, &mut self.hits);
        let ts = self.eval.flat.get("ts").next().and_then(|v| self.eval.flat.num_of(v));
        if let Some(t) = ts.map(|f| Time((f * 1e6).round() as i64)) {
            self.now = self.now.max(t);
        }
        if !self.hits.is_empty() {
            let subj = Subject::from_flat(&self.eval.flat);
            let hits = std::mem::take(&mut self.hits);
            self.sigma_alerts(&rules, log, &subj, &hits, out);
            self.hits = hits;
        }
        self.expire(out);
    }

    /// Folding windows close in record time; looking once per second of
    /// it keeps the cost independent of the number of open alerts.
    fn expire(&mut self, out: &mut Vec<AlertRecord>) {
        if self.now.0 - self.expired_at.0 >= 1_000_000 {
            self.expired_at = self.now;
            self.agg.expire(self.now, out);
        }
    }

    fn correlation_alert(&mut self, rules: &RuleSet, c: &CorrelationHit, subj: &Subject, out: &mut Vec<AlertRecord>) {
        let Some(cr) = rules.sigma.correlations.get(c.correlation as usize) else { return };
        self.counters.correlation_matches += 1;
        let id = cr.meta.id.clone().unwrap_or_else(|| cr.meta.title.clone());
        let group: Vec<String> = c.group.iter().map(|(k, v)| format!("{k}={}", clip(v))).collect();
        let key = match cr.corr.kind {
            sigma::parse::CorrelationKind::EventCount => "sigma.correlation.events",
            sigma::parse::CorrelationKind::ValueCount => "sigma.correlation.values",
            _ => "sigma.correlation.sequence",
        };
        let field =
            (key == "sigma.correlation.values").then(|| cr.corr.field.clone().unwrap_or_else(|| "values".to_string()));
        let summary = Summary::en(
            key,
            &[
                ("title", Some(cr.meta.title.clone())),
                ("n", Some(c.value.to_string())),
                ("field", field),
                ("secs", Some(cr.corr.timespan_secs.to_string())),
                ("group", (!group.is_empty()).then(|| group.join(", "))),
            ],
        );
        let evidence: Vec<String> = c.evidence.iter().map(|u| format!("conn:{u}")).collect();
        // Grouped alerts are about the group, not one flow: keep only the
        // endpoints the group fixes.
        let mut s = subj.clone();
        let fixed = |name: &str| c.group.iter().any(|(k, _)| k == name);
        if !fixed("id.orig_h") && !fixed("src_ip") {
            s.orig = None;
        }
        if !fixed("id.resp_h") && !fixed("dst_ip") {
            s.resp = None;
        }
        if c.evidence.len() > 1 {
            s.uid = None;
            s.community_id = None;
        }
        let spec = AlertSpec {
            source: RuleSource::Sigma,
            rule_id: &id,
            title: &cr.meta.title,
            version: &cr.version,
            severity: cr.severity,
            attack: &cr.attack,
            summary,
            matched: group,
            evidence,
            confidence: None,
        };
        let first = Time((c.first * 1e6).round() as i64);
        let a = make_alert(&rules.cfg.sensor_name, &s, spec, first, c.value.max(1.0) as u64);
        self.raise(a, out);
    }

    fn raise(&mut self, a: AlertRecord, out: &mut Vec<AlertRecord>) {
        if !self.rules.tuning.is_empty() && self.rules.tuning.silences(&a) {
            self.counters.alerts_silenced += 1;
            return;
        }
        self.counters.alerts_raised += 1;
        self.raised_flows.extend(a.uid);
        for e in &a.evidence {
            if let Some(u) = e.split_once(':').and_then(|(_, u)| parse_uid(u)) {
                self.raised_flows.push(u);
            }
        }
        self.agg.add(a, out);
    }

    fn raise_model_alerts(&mut self, out: &mut Vec<AlertRecord>) {
        for a in std::mem::take(&mut self.model_alerts) {
            self.raise(a, out);
        }
    }

    /// Writes out every alert still held: the models' open windows close
    /// and every folded alert is written.
    pub fn flush(&mut self, out: &mut Vec<AlertRecord>) {
        let sensor = self.rules.cfg.sensor_name.clone();
        self.models.flush(&sensor, &mut self.model_alerts);
        self.raise_model_alerts(out);
        self.agg.flush(out);
    }

    /// The flows named by alerts raised since the last call.
    pub fn take_raised_flows(&mut self) -> Vec<FlowUid> {
        std::mem::take(&mut self.raised_flows)
    }

    pub fn models(&self) -> &Models {
        &self.models
    }

    pub fn open_alerts(&self) -> usize {
        self.agg.open()
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// What a YARA rule matched, for the alert's summary: the template and the
/// arguments naming the thing scanned.
pub struct What(pub &'static str, pub Vec<(&'static str, Option<String>)>);

pub fn yara_alert(
    rules: &RuleSet,
    sensor: &str,
    subj: &Subject,
    y: &YaraHit,
    what: &What,
    extra: Vec<String>,
    evidence: Vec<String>,
) -> AlertRecord {
    let info = rules.yara.as_ref().and_then(|s| s.info.get(&y.rule));
    let title = info.map_or(y.rule.as_str(), |i| i.title.as_str());
    let mut matched: Vec<String> =
        y.patterns.iter().map(|p| format!("{}@{}: {}", p.pattern, p.offset, p.excerpt)).collect();
    matched.extend(extra);
    let empty = Vec::new();
    let spec = AlertSpec {
        source: RuleSource::Yara,
        rule_id: &y.rule,
        title,
        version: info.map_or("", |i| i.version.as_str()),
        severity: info.map_or(Severity::High, |i| i.severity),
        attack: info.map_or(&empty, |i| &i.attack),
        summary: {
            let mut args = what.1.clone();
            args.push(("rule", Some(y.rule.clone())));
            args.push(("endpoints", Some(endpoints(subj))));
            Summary::en(what.0, &args)
        },
        matched,
        evidence,
        confidence: None,
    };
    make_alert(sensor, subj, spec, subj.ts, 1)
}

/// YARA over stream starts and UDP payloads, on a worker thread.
pub struct PayloadScanner {
    rules: Arc<RuleSet>,
    scanner: YaraScanner,
    buffers: HashMap<(FlowUid, bool), (Vec<u8>, Subject, bool)>,
    held: usize,
    hits: Vec<YaraHit>,
    /// Streams scanned early because the buffer budget was reached.
    pub early_scans: u64,
}

impl PayloadScanner {
    pub fn new(rules: Arc<RuleSet>) -> Option<PayloadScanner> {
        let set = rules.yara.clone()?;
        Some(PayloadScanner {
            rules,
            scanner: YaraScanner::new(set),
            buffers: HashMap::new(),
            held: 0,
            hits: Vec::new(),
            early_scans: 0,
        })
    }

    /// In-order bytes of one direction of a stream (`None`: a gap).
    pub fn stream(&mut self, subj: &Subject, is_orig: bool, data: Option<&[u8]>, out: &mut Vec<Event>) {
        let Some(uid) = subj.uid else { return };
        let cap = self.rules.cfg.stream_scan_bytes;
        let entry = self.buffers.entry((uid, is_orig)).or_insert_with(|| (Vec::new(), subj.clone(), false));
        if entry.2 {
            return;
        }
        match data {
            Some(d) => {
                let room = cap.saturating_sub(entry.0.len());
                let take = d.get(..room.min(d.len())).unwrap_or(d);
                entry.0.extend_from_slice(take);
                self.held += take.len();
            }
            // Scanning across a hole would match bytes that were never
            // adjacent: scan what came before it and stop.
            None => entry.2 = true,
        }
        entry.1.ts = subj.ts;
        let over_budget = self.held > self.rules.cfg.stream_buffer_bytes;
        if entry.0.len() >= cap || entry.2 || over_budget {
            if over_budget && entry.0.len() < cap && !entry.2 {
                self.early_scans += 1;
            }
            entry.2 = true;
            let buf = std::mem::take(&mut entry.0);
            self.held = self.held.saturating_sub(buf.len());
            let s = entry.1.clone();
            let what = What(if is_orig { "yara.stream.orig" } else { "yara.stream.resp" }, Vec::new());
            self.scan_buf(&buf, &s, &what, out);
        }
    }

    pub fn datagram(&mut self, subj: &Subject, payload: &[u8], out: &mut Vec<Event>) {
        if self.rules.cfg.scan_udp && !payload.is_empty() {
            self.scan_buf(payload, subj, &What("yara.udp", Vec::new()), out);
        }
    }

    /// The flow ended: scan what is buffered of it.
    pub fn end(&mut self, uid: FlowUid, out: &mut Vec<Event>) {
        for dir in [true, false] {
            if let Some((buf, s, done)) = self.buffers.remove(&(uid, dir)) {
                self.held = self.held.saturating_sub(buf.len());
                if !done && !buf.is_empty() {
                    let what = What(if dir { "yara.stream.orig" } else { "yara.stream.resp" }, Vec::new());
                    self.scan_buf(&buf, &s, &what, out);
                }
            }
        }
    }

    fn scan_buf(&mut self, buf: &[u8], subj: &Subject, what: &What, out: &mut Vec<Event>) {
        self.hits.clear();
        self.scanner.scan(buf, &mut self.hits);
        for y in std::mem::take(&mut self.hits) {
            let ev = subj.uid.map(|u| vec![format!("conn:{u}")]).unwrap_or_default();
            let a = yara_alert(&self.rules, &self.rules.cfg.sensor_name, subj, &y, what, Vec::new(), ev);
            out.push(Event::Alert(Box::new(a)));
        }
    }

    pub fn counters(&self) -> (u64, u64, u64) {
        (self.scanner.scans, self.scanner.scanned_bytes, self.scanner.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::summary::{template, Lang, EN};
    use schema::ConnRecord;

    /// Every summary key written in the detector's code has a template in
    /// both languages, and every template is one the detector writes.
    #[test]
    fn every_summary_key_has_both_templates() {
        fn walk(dir: &std::path::Path, out: &mut String) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push_str(&std::fs::read_to_string(&p).unwrap());
                }
            }
        }
        let mut code = String::new();
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        walk(&here.join("src"), &mut code);
        // The sensor's alerts about itself are made in the binary.
        walk(&here.join("../src"), &mut code);
        let keys = regex::Regex::new(r#""((?:sigma|intel|yara|model|sensor)\.[a-z_]+(?:\.[a-z_]+)*)""#).unwrap();
        let used: std::collections::BTreeSet<&str> =
            // A file name such as "sensor.toml" is not a key.
            keys.captures_iter(&code).filter_map(|c| c.get(1)).map(|m| m.as_str()).filter(|k| !k.ends_with(".toml")).collect();
        assert!(used.len() >= 20, "{used:?}");
        for k in &used {
            assert!(template(Lang::En, k).is_some(), "no English template for {k}");
            assert!(template(Lang::Vi, k).is_some(), "no Vietnamese template for {k}");
        }
        for (k, _) in EN {
            assert!(used.contains(k), "template {k} is written by nothing");
        }
    }

    fn conn_to(ip: &str) -> Event {
        Event::Conn(ConnRecord {
            ts: Time(5_000_000),
            uid: FlowUid::new(77),
            orig_h: "10.0.0.1".parse().unwrap(),
            orig_p: 5000,
            resp_h: ip.parse().unwrap(),
            resp_p: 443,
            proto: "tcp",
            service: None,
            duration: None,
            orig_bytes: None,
            resp_bytes: None,
            conn_state: "SF",
            local_orig: true,
            local_resp: false,
            missed_bytes: 0,
            history: None,
            orig_pkts: 1,
            orig_ip_bytes: 1,
            resp_pkts: 1,
            resp_ip_bytes: 1,
            tunnel_parents: vec![],
            ip_proto: 6,
            orig_l2_addr: None,
            resp_l2_addr: None,
            vlan: None,
            inner_vlan: None,
            community_id: Some("1:abc".into()),
        })
    }

    #[test]
    fn indicator_files_reload_when_they_change() {
        let dir = std::env::temp_dir().join(format!("citysoc-intel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let list = dir.join("list.txt");
        std::fs::write(&list, "192.0.2.1\n").unwrap();
        let cfg = DetectorConfig { intel_paths: vec![dir.clone()], intel_reload_secs: 0, ..Default::default() };
        let mut d = Detector::new(Arc::new(RuleSet::load(cfg)));
        let mut out = Vec::new();
        d.observe(&conn_to("192.0.2.2"), &mut out);
        d.flush(&mut out);
        assert!(out.is_empty());
        // A new file version (the mtime may not move within a second, so
        // the size differs too).
        std::fs::write(&list, "192.0.2.1\n192.0.2.2 # added\n").unwrap();
        let t = std::time::SystemTime::now() + std::time::Duration::from_secs(2);
        std::fs::File::options().write(true).open(&list).unwrap().set_modified(t).unwrap();
        assert!(d.reload_intel_if_changed().is_some_and(|e| e.is_empty()));
        d.observe(&conn_to("192.0.2.2"), &mut out);
        d.flush(&mut out);
        assert_eq!(out.len(), 1);
        let a = &out[0];
        assert_eq!(a.rule_source, RuleSource::Ioc);
        assert_eq!(a.community_id.as_deref(), Some("1:abc"));
        assert_eq!(a.matched, ["id.resp_h=192.0.2.2"]);
        // Unchanged files are not reloaded.
        assert!(d.reload_intel_if_changed().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn repeats_fold_within_the_window_and_not_beyond() {
        let mut agg = Aggregator::new(60.0, 10);
        let subj = Subject {
            ts: Time(0),
            orig: Some(("10.0.0.1".parse().unwrap(), 1)),
            resp: Some(("10.0.0.2".parse().unwrap(), 2)),
            ..Subject::default()
        };
        let spec = |n: &str| AlertSpec {
            source: RuleSource::Sigma,
            rule_id: "r",
            title: "t",
            version: "v",
            severity: Severity::High,
            attack: &[],
            summary: Summary::plain("s".into()),
            matched: vec![n.to_string()],
            evidence: vec![format!("conn:{n}")],
            confidence: None,
        };
        let mut out = Vec::new();
        for (i, t) in [0i64, 10, 50, 200].iter().enumerate() {
            let s = Subject { ts: Time(t * 1_000_000), ..subj.clone() };
            agg.add(make_alert("s", &s, spec(&i.to_string()), s.ts, 1), &mut out);
            agg.expire(s.ts, &mut out);
        }
        agg.flush(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].count, out[0].first_seen, out[0].last_seen), (3, Time(0), Time(50_000_000)));
        assert_eq!(out[0].evidence.len(), 3);
        assert_eq!(out[1].count, 1);
        assert_ne!(out[0].id, out[1].id);
    }
}
