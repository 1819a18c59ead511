//! Detection wired into the sensor: the rule folders, the sink that runs
//! the detector on the output thread and writes `alerts.log`, and the
//! payload tap that runs YARA on the workers.

use detector::detect::{Detector, DetectorConfig, PayloadScanner, RuleSet, Subject};
use detector::sigma::correlation::CorrelationConfig;
use detector::sigma::mapping::Mapping;
use schema::{AlertRecord, Event, Time};
use sensor::output::EventSink;
use sensor::pipeline::PipelineConfig;
use sensor::proto::stream::Chunk;
use sensor::proto::tap::{Datagram, PayloadTap, StreamChunk, TapFactory};
use sensor::ring::Pins;
use sensor::SensorError;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `[detect]` table of the sensor's configuration.
#[derive(Clone, Debug, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DetectSettings {
    /// Run detection at all (`--no-detect` turns it off).
    pub enabled: bool,
    /// The rules folder: `sigma/`, `yara/`, `intel/`, `sigma-mapping.toml`,
    /// `placeholders.toml` and `models.toml` under it (`--rules` overrides
    /// it). Unset: the `rules` folder of the source checkout the binary was
    /// built from (development builds only), else `/usr/share/citysoc/rules`.
    pub rules_dir: Option<PathBuf>,
    /// More Sigma folders (a SigmaHQ checkout loads as is).
    pub sigma_dirs: Vec<PathBuf>,
    /// More YARA folders.
    pub yara_dirs: Vec<PathBuf>,
    /// More indicator folders or files.
    pub intel_dirs: Vec<PathBuf>,
    /// Repeats of a rule between the same endpoints within this many
    /// seconds (record time) become one alert with a count.
    pub alert_window_secs: u64,
    /// Alerts held open for folding at once.
    pub max_open_alerts: usize,
    /// Bytes of each TCP stream direction scanned by YARA.
    pub yara_stream_bytes: usize,
    /// Bytes of each file scanned by YARA.
    pub yara_file_bytes: usize,
    /// Scan UDP payloads with YARA.
    pub yara_udp: bool,
    /// Stream bytes one worker holds for YARA at most (MiB); past it,
    /// streams are scanned with what they have.
    pub yara_buffer_mb: usize,
    /// Correlation groups kept at once.
    pub correlation_max_groups: usize,
    /// Matches remembered per correlation group.
    pub correlation_max_events_per_group: usize,
    /// How often (seconds) the indicator files are checked for changes and
    /// reloaded.
    pub intel_reload_secs: u64,
}

impl Default for DetectSettings {
    fn default() -> Self {
        let d = DetectorConfig::default();
        let c = CorrelationConfig::default();
        DetectSettings {
            enabled: true,
            rules_dir: None,
            sigma_dirs: Vec::new(),
            yara_dirs: Vec::new(),
            intel_dirs: Vec::new(),
            alert_window_secs: d.aggregate_window_secs as u64,
            max_open_alerts: d.max_open_alerts,
            yara_stream_bytes: d.stream_scan_bytes,
            yara_file_bytes: d.file_scan_bytes,
            yara_udp: d.scan_udp,
            yara_buffer_mb: d.stream_buffer_bytes >> 20,
            correlation_max_groups: c.max_groups,
            correlation_max_events_per_group: c.max_events_per_group,
            intel_reload_secs: d.intel_reload_secs,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Placeholders {
    #[serde(default)]
    placeholders: HashMap<String, Vec<String>>,
}

impl DetectSettings {
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        for (name, v) in [
            ("detect.max_open_alerts", self.max_open_alerts),
            ("detect.correlation_max_groups", self.correlation_max_groups),
            ("detect.correlation_max_events_per_group", self.correlation_max_events_per_group),
        ] {
            if v == 0 {
                errs.push(format!("{name} must be positive"));
            }
        }
        errs
    }

    /// The detector's configuration: folders resolved, mapping and
    /// placeholders read from the rules folder when it has them.
    pub fn detector_config(&self, sensor_name: &str) -> anyhow::Result<DetectorConfig> {
        let root = &self.rules_root()?;
        let sub = |s: &str| root.join(s);
        let mut sigma_paths: Vec<PathBuf> = Vec::new();
        if sub("sigma").is_dir() {
            sigma_paths.push(sub("sigma"));
        }
        sigma_paths.extend(self.sigma_dirs.iter().cloned());
        let mut yara_paths: Vec<PathBuf> = Vec::new();
        if sub("yara").is_dir() {
            yara_paths.push(sub("yara"));
        }
        yara_paths.extend(self.yara_dirs.iter().cloned());
        let mut intel_paths: Vec<PathBuf> = Vec::new();
        if sub("intel").is_dir() {
            intel_paths.push(sub("intel"));
        }
        intel_paths.extend(self.intel_dirs.iter().cloned());
        let mapping_path = sub("sigma-mapping.toml");
        let mapping = if mapping_path.is_file() {
            let text = std::fs::read_to_string(&mapping_path)?;
            let m = Mapping::parse(&text, &mapping_path.display().to_string())?;
            for l in &m.unknown_logs {
                eprintln!(
                    "{}: log '{l}' is not one this build writes; its rules read the other logs",
                    mapping_path.display()
                );
            }
            m
        } else {
            Mapping::shipped()
        };
        let ph_path = sub("placeholders.toml");
        let placeholders = if ph_path.is_file() {
            let text = std::fs::read_to_string(&ph_path)?;
            toml::from_str::<Placeholders>(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", ph_path.display()))?
                .placeholders
        } else {
            HashMap::new()
        };
        Ok(DetectorConfig {
            sigma_paths,
            yara_paths,
            intel_paths,
            mapping,
            placeholders,
            sensor_name: sensor_name.to_string(),
            aggregate_window_secs: self.alert_window_secs as f64,
            max_open_alerts: self.max_open_alerts,
            stream_scan_bytes: self.yara_stream_bytes,
            file_scan_bytes: self.yara_file_bytes,
            scan_udp: self.yara_udp,
            stream_buffer_bytes: self.yara_buffer_mb << 20,
            correlation: CorrelationConfig {
                max_groups: self.correlation_max_groups,
                max_events_per_group: self.correlation_max_events_per_group,
            },
            intel_reload_secs: self.intel_reload_secs,
            models_path: Some(sub("models.toml")).filter(|p| p.is_file()),
            tuning_path: Some(sub("tuning.toml")).filter(|p| p.is_file()),
        })
    }

    /// The rules folder in use (see [`crate::rules_location`]).
    pub fn rules_root(&self) -> Result<PathBuf, crate::locations::RulesNotFound> {
        crate::rules_location(None, self.rules_dir.as_deref())
    }

    /// Loads the rules; failures of single rules are in `RuleSet::errors`.
    pub fn load(&self, sensor_name: &str) -> anyhow::Result<Arc<RuleSet>> {
        Ok(Arc::new(RuleSet::load(self.detector_config(sensor_name)?)))
    }
}

/// Adds what detection needs to the pipeline: file bytes kept for YARA and
/// the payload tap on every worker.
pub fn attach(pcfg: &mut PipelineConfig, rules: &Arc<RuleSet>) {
    attach_live(pcfg, &LiveRules::new(Arc::clone(rules), None));
}

/// As `attach`, with rules that may be replaced while the sensor runs.
pub fn attach_live(pcfg: &mut PipelineConfig, live: &Arc<LiveRules>) {
    let (rules, _) = live.current();
    if !rules.wants_payload() {
        return;
    }
    let keep = rules.cfg.file_scan_bytes as u64;
    pcfg.worker.flow.keep_file_bytes = pcfg.worker.flow.keep_file_bytes.max(keep);
    let live = Arc::clone(live);
    pcfg.worker.flow.tap = Some(TapFactory(Arc::new(move || {
        let gen = live.generation();
        let scanner = PayloadScanner::new(live.current().0);
        Box::new(YaraTap { live: Arc::clone(&live), gen, scanner }) as Box<dyn PayloadTap>
    })));
}

/// The rule set a running sensor uses, replaced whole by a reload (SIGHUP,
/// or a new version from the SIEM): the detection stage and each worker's
/// payload scanner pick it up at their next record, and the capture goes
/// on meanwhile.
pub struct LiveRules {
    gen: std::sync::atomic::AtomicU64,
    slot: std::sync::Mutex<(Arc<RuleSet>, Option<String>)>,
}

impl LiveRules {
    pub fn new(rules: Arc<RuleSet>, version: Option<String>) -> Arc<LiveRules> {
        Arc::new(LiveRules { gen: Default::default(), slot: std::sync::Mutex::new((rules, version)) })
    }

    pub fn replace(&self, rules: Arc<RuleSet>, version: Option<String>) {
        if let Ok(mut g) = self.slot.lock() {
            *g = (rules, version);
        }
        self.gen.fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    pub fn generation(&self) -> u64 {
        self.gen.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn current(&self) -> (Arc<RuleSet>, Option<String>) {
        match self.slot.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// A worker's YARA scanning of stream payloads; streams under way when the
/// rules change are scanned from the change on with the new rules.
struct YaraTap {
    live: Arc<LiveRules>,
    gen: u64,
    scanner: Option<PayloadScanner>,
}

impl YaraTap {
    fn scanner(&mut self) -> Option<&mut PayloadScanner> {
        let now = self.live.generation();
        if now != self.gen {
            self.gen = now;
            self.scanner = PayloadScanner::new(self.live.current().0);
        }
        self.scanner.as_mut()
    }
}

fn subject(ts: Time, uid: schema::FlowUid, orig: (std::net::IpAddr, u16), resp: (std::net::IpAddr, u16)) -> Subject {
    Subject { ts, uid: Some(uid), community_id: None, orig: Some(orig), resp: Some(resp) }
}

impl PayloadTap for YaraTap {
    fn stream(&mut self, c: &StreamChunk<'_>, out: &mut Vec<Event>) {
        let s = subject(c.ts, c.uid, c.orig, c.resp);
        let data = match c.chunk {
            Chunk::Data(d) => Some(d),
            Chunk::Gap(_) => None,
        };
        if let Some(sc) = self.scanner() {
            sc.stream(&s, c.is_orig, data, out);
        }
    }

    fn datagram(&mut self, d: &Datagram<'_>, out: &mut Vec<Event>) {
        let s = subject(d.ts, d.uid, d.orig, d.resp);
        if let Some(sc) = self.scanner() {
            sc.datagram(&s, d.payload, out);
        }
    }

    fn end(&mut self, _ts: Time, uid: schema::FlowUid, out: &mut Vec<Event>) {
        if let Some(sc) = self.scanner() {
            sc.end(uid, out);
        }
    }
}

/// Runs the detector over every record on its way to the logs; alerts go
/// to `alerts.log` once folded.
pub struct DetectingSink<S> {
    inner: S,
    detector: Detector,
    alerts: Vec<AlertRecord>,
    batch: Vec<Event>,
    /// The packet ring's pins: flows an alert names are kept as evidence.
    pins: Option<Arc<Pins>>,
    rules_version: Option<String>,
    /// Where a reloaded rule set comes from, and the generation in use.
    live: Option<(Arc<LiveRules>, u64)>,
}

impl<S: EventSink> DetectingSink<S> {
    pub fn new(inner: S, rules: Arc<RuleSet>) -> Self {
        DetectingSink {
            inner,
            detector: Detector::new(rules),
            alerts: Vec::new(),
            batch: Vec::new(),
            pins: None,
            rules_version: None,
            live: None,
        }
    }

    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    fn write_alerts(&mut self) -> Result<(), SensorError> {
        if self.alerts.is_empty() {
            return Ok(());
        }
        if let Some(pins) = &self.pins {
            for a in &self.alerts {
                for uid in alert_flows(a) {
                    pins.pin(uid);
                }
            }
        }
        self.batch.clear();
        self.batch.extend(self.alerts.drain(..).map(|a| Event::Alert(Box::new(a))));
        let mut b = std::mem::take(&mut self.batch);
        let r = self.inner.write(&mut b);
        self.batch = b;
        r
    }
}

impl<S: EventSink> EventSink for DetectingSink<S> {
    fn write(&mut self, events: &mut [Event]) -> Result<(), SensorError> {
        if let Some((live, gen)) = &mut self.live {
            let now = live.generation();
            if now != *gen {
                *gen = now;
                let (rules, version) = live.current();
                self.detector.reload(rules);
                tracing::info!(version = version.as_deref().unwrap_or("-"), "rules reloaded");
                self.rules_version = version;
            }
        }
        if let Some(errors) = self.detector.reload_intel_if_changed() {
            for e in errors {
                tracing::warn!(error = %e, "indicator file not loaded");
            }
        }
        for ev in events.iter_mut() {
            if let Event::Stats(st) = ev {
                st.rules_version.clone_from(&self.rules_version);
            }
            self.detector.observe(ev, &mut self.alerts);
        }
        let raised = self.detector.take_raised_flows();
        if let Some(pins) = &self.pins {
            for uid in raised {
                pins.pin(uid);
            }
            // Progress for the ring: every record up to here is judged.
            if let Some(t) = events.iter().map(record_time).max() {
                pins.seen_until(t);
            }
        }
        // Alerts made on the workers were folded by the detector; the rest
        // of the batch goes on as it came.
        if events.iter().any(|e| matches!(e, Event::Alert(_))) {
            let mut rest: Vec<Event> = events.iter().filter(|e| !matches!(e, Event::Alert(_))).cloned().collect();
            self.inner.write(&mut rest)?;
        } else {
            self.inner.write(events)?;
        }
        self.write_alerts()
    }

    fn flush(&mut self) -> Result<(), SensorError> {
        self.detector.flush(&mut self.alerts);
        self.write_alerts()?;
        self.inner.flush()
    }
}

fn record_time(ev: &Event) -> Time {
    match ev {
        Event::Conn(c) => c.ts,
        Event::Dns(d) => d.ts,
        Event::Http(h) => h.ts,
        Event::Ssl(s) => s.ts,
        Event::Stats(s) => s.ts,
        _ => Time(i64::MIN),
    }
}

/// The flows an alert is about: its own and those of its evidence.
pub fn alert_flows(a: &AlertRecord) -> Vec<schema::FlowUid> {
    let mut v: Vec<schema::FlowUid> = a.uid.into_iter().collect();
    for e in &a.evidence {
        if let Some(u) = e.split_once(':').and_then(|(_, u)| detector::detect::parse_uid(u)) {
            if !v.contains(&u) {
                v.push(u);
            }
        }
    }
    v
}

/// Rules of every kind in a set: zero means detection would watch for
/// nothing.
pub fn rule_count(rules: &RuleSet) -> usize {
    rules.sigma.rules.len()
        + rules.sigma.correlations.len()
        + rules.yara.as_ref().map_or(0, |y| y.files)
        + rules.intel.len()
}

/// Loads the rules a sensor or a replay runs, refusing a folder that is
/// not there or holds no rule at all: a sensor that watches for nothing
/// must not look like one that found nothing. Prints what was not loaded
/// and the summary (folder and counts).
pub fn load_for_detection(settings: &DetectSettings, sensor_name: &str) -> anyhow::Result<(Arc<RuleSet>, PathBuf)> {
    let root = settings.rules_root().map_err(|e| anyhow::anyhow!("{e}; --no-detect runs without detection"))?;
    let settings = DetectSettings { rules_dir: Some(root.clone()), ..settings.clone() };
    let rules = settings.load(sensor_name)?;
    for e in &rules.errors {
        eprintln!("rule not loaded: {e}");
    }
    if rule_count(&rules) == 0 {
        anyhow::bail!(
            "no rules loaded from {} ({} rule errors); --no-detect runs without detection",
            root.display(),
            rules.errors.len()
        );
    }
    eprintln!("detection: {}", describe(&rules, &root));
    Ok((rules, root))
}

/// Where rule files are, for messages.
pub fn describe(rules: &RuleSet, root: &Path) -> String {
    format!(
        "{} Sigma rules, {} correlations, {} YARA files, {} indicators from {} ({} rule errors)",
        rules.sigma.rules.len(),
        rules.sigma.correlations.len(),
        rules.yara.as_ref().map_or(0, |y| y.files),
        rules.intel.len(),
        root.display(),
        rules.errors.len()
    )
}

/// The sensor's sink with or without detection.
pub enum MaybeDetecting<S> {
    Plain(S),
    Detecting(Box<DetectingSink<S>>),
}

impl<S: EventSink> MaybeDetecting<S> {
    pub fn new(inner: S, rules: Option<Arc<RuleSet>>) -> Self {
        match rules {
            Some(r) => MaybeDetecting::Detecting(Box::new(DetectingSink::new(inner, r))),
            None => MaybeDetecting::Plain(inner),
        }
    }

    /// Detection on a rule set that may be replaced while the sensor runs.
    pub fn live(inner: S, live: Option<&Arc<LiveRules>>) -> Self {
        match live {
            Some(l) => {
                let (rules, version) = l.current();
                let mut d = DetectingSink::new(inner, rules);
                d.rules_version = version;
                d.live = Some((Arc::clone(l), l.generation()));
                MaybeDetecting::Detecting(Box::new(d))
            }
            None => MaybeDetecting::Plain(inner),
        }
    }

    /// Pins the flows of every alert in the packet ring.
    pub fn with_pins(mut self, pins: Option<Arc<Pins>>) -> Self {
        if let (MaybeDetecting::Detecting(d), Some(p)) = (&mut self, &pins) {
            p.track_detection();
            d.pins = Some(Arc::clone(p));
        }
        self
    }
}

impl<S: EventSink> EventSink for MaybeDetecting<S> {
    fn write(&mut self, events: &mut [Event]) -> Result<(), SensorError> {
        match self {
            MaybeDetecting::Plain(s) => s.write(events),
            MaybeDetecting::Detecting(d) => d.write(events),
        }
    }

    fn flush(&mut self) -> Result<(), SensorError> {
        match self {
            MaybeDetecting::Plain(s) => s.flush(),
            MaybeDetecting::Detecting(d) => d.flush(),
        }
    }
}
