//! Hunting: the anomaly models (and, as the SIEM runs hunts, the Sigma
//! rules) over stored records of a past time range.
//! Records come back from the store in time order, one sensor's records
//! through one set of models, and the alerts fold as the sensor folds
//! them, so a range that the sensor saw live gives the alerts it raised.

use anyhow::{bail, Context};
use detector::detect::Aggregator;
use detector::models::{ModelCounters, Models, ModelsConfig};
use schema::AlertRecord;
use serde_json::Value;
use siem::store::{SearchRequest, Sort, Store, MAX_LIMIT};
use std::collections::BTreeMap;

/// The logs the models read.
pub const MODEL_LOGS: &[&str] = &[
    "conn",
    "dns",
    "ssh",
    "http",
    "mqtt_connect",
    "mqtt_publish",
    "mqtt_subscribe",
    "modbus",
    "dnp3",
    "coap",
    "bacnet",
];

#[derive(Debug, Default)]
pub struct HuntReport {
    pub records: u64,
    /// Queries made to the store (the range is split until each part fits
    /// in one page).
    pub queries: u64,
    pub alerts: Vec<AlertRecord>,
    pub counters: ModelCounters,
}

struct PerSensor {
    models: Models,
    agg: Aggregator,
    sigma: Option<detector::detect::Detector>,
}

/// Runs the models over `[from, to)` (epoch seconds). `fold_secs` and
/// `max_open` are the sensor's alert folding settings.
pub fn hunt(
    store: &dyn Store,
    from: f64,
    to: f64,
    models: &ModelsConfig,
    fold_secs: f64,
    max_open: usize,
) -> anyhow::Result<HuntReport> {
    hunt_with_progress(store, from, to, models, None, fold_secs, max_open, &|_| {})
}

/// As [`hunt`], with `sigma`'s Sigma rules over every stored record too,
/// telling `progress` the records read after each page.
#[allow(clippy::too_many_arguments)]
pub fn hunt_with_progress(
    store: &dyn Store,
    from: f64,
    to: f64,
    models: &ModelsConfig,
    sigma: Option<&std::sync::Arc<detector::detect::RuleSet>>,
    fold_secs: f64,
    max_open: usize,
    progress: &dyn Fn(u64),
) -> anyhow::Result<HuntReport> {
    if from.partial_cmp(&to) != Some(std::cmp::Ordering::Less) {
        bail!("the range is empty: from {from} is not before to {to}");
    }
    let catalog = siem::schema::Catalog::new();
    let text: Vec<String> = MODEL_LOGS.iter().map(|l| format!("_log:{l}")).collect();
    let query = match sigma {
        // Every record but the alerts themselves.
        Some(_) => siem::query::parse("NOT _log:alerts", &catalog).context("the hunting query")?,
        None => siem::query::parse(&text.join(" OR "), &catalog).context("the hunting query")?,
    };
    let mut report = HuntReport::default();
    let mut sensors: BTreeMap<String, PerSensor> = BTreeMap::new();
    let mut out = Vec::new();
    // Ranges to read, oldest first; one that does not fit in a page is
    // split in two.
    let mut todo = vec![(from, to)];
    while let Some((lo, hi)) = todo.pop() {
        let mut req = SearchRequest::new(query.clone());
        req.from = Some(lo);
        req.to = Some(hi);
        req.sort = Sort { field: "ts".into(), descending: false };
        req.limit = MAX_LIMIT;
        let page = store.search(&req).with_context(|| format!("reading records from {lo} to {hi}"))?;
        report.queries += 1;
        if page.total > page.hits.len() as u64 {
            let mid = lo + (hi - lo) / 2.0;
            if hi - lo < 2e-6 || mid <= lo || mid >= hi {
                bail!("more than {MAX_LIMIT} records share the time {lo}: cannot read them in order");
            }
            todo.push((mid, hi));
            todo.push((lo, mid));
            continue;
        }
        for hit in page.hits {
            let Value::Object(rec) = hit else { continue };
            let log = rec.get("_log").and_then(Value::as_str).unwrap_or_default().to_string();
            let sensor = rec.get("_sensor").and_then(Value::as_str).unwrap_or("sensor").to_string();
            let s = sensors.entry(sensor.clone()).or_insert_with(|| PerSensor {
                models: Models::new(models.clone()),
                agg: Aggregator::new(fold_secs, max_open),
                sigma: sigma.map(|r| detector::detect::Detector::new(std::sync::Arc::clone(r))),
            });
            report.records += 1;
            if MODEL_LOGS.contains(&log.as_str()) {
                s.models.observe(&log, &rec, &sensor, &mut out);
                for a in out.drain(..) {
                    s.agg.add(a, &mut report.alerts);
                }
            }
            if let Some(d) = &mut s.sigma {
                // Folded by the detector as the sensor folds them.
                let at = report.alerts.len();
                d.observe_stored(&log, &rec, &mut report.alerts);
                report.alerts[at..].iter_mut().for_each(|a| a.sensor = sensor.clone());
            }
        }
        progress(report.records);
    }
    for (sensor, mut s) in sensors {
        s.models.flush(&sensor, &mut out);
        for a in out.drain(..) {
            s.agg.add(a, &mut report.alerts);
        }
        s.agg.flush(&mut report.alerts);
        if let Some(d) = &mut s.sigma {
            let at = report.alerts.len();
            d.flush(&mut report.alerts);
            report.alerts[at..].iter_mut().for_each(|a| a.sensor = sensor.clone());
        }
        let c = &s.models.counters;
        report.counters.records += c.records;
        report.counters.verdicts += c.verdicts;
        report.counters.late += c.late;
        report.counters.state_full += c.state_full;
    }
    report.alerts.sort_by(|a, b| a.first_seen.cmp(&b.first_seen).then_with(|| a.id.cmp(&b.id)));
    Ok(report)
}

fn model_commons(m: &ModelsConfig) -> Vec<&detector::models::config::Common> {
    [
        m.scan.as_ref().and_then(|c| c.common.as_ref()),
        m.flood.as_ref().and_then(|c| c.common.as_ref()),
        m.beacon.as_ref().and_then(|c| c.common.as_ref()),
        m.dns.as_ref().and_then(|c| c.common.as_ref()),
        m.brute.as_ref().and_then(|c| c.common.as_ref()),
        m.iot.as_ref().and_then(|c| c.common.as_ref()),
    ]
    .into_iter()
    .flatten()
    .filter(|c| c.enabled)
    .collect()
}

/// The models of `m` whose ids are `chosen` (none chosen: all of them).
pub fn choose(m: &ModelsConfig, chosen: &[String]) -> ModelsConfig {
    let mut m = m.clone();
    if chosen.is_empty() {
        return m;
    }
    let keep = |c: Option<&detector::models::config::Common>| c.is_some_and(|c| chosen.contains(&c.id));
    if !keep(m.scan.as_ref().and_then(|c| c.common.as_ref())) {
        m.scan = None;
    }
    if !keep(m.flood.as_ref().and_then(|c| c.common.as_ref())) {
        m.flood = None;
    }
    if !keep(m.beacon.as_ref().and_then(|c| c.common.as_ref())) {
        m.beacon = None;
    }
    if !keep(m.dns.as_ref().and_then(|c| c.common.as_ref())) {
        m.dns = None;
    }
    if !keep(m.brute.as_ref().and_then(|c| c.common.as_ref())) {
        m.brute = None;
    }
    if !keep(m.iot.as_ref().and_then(|c| c.common.as_ref())) {
        m.iot = None;
    }
    m
}

/// The choice of the Sigma rules in a hunt.
pub const SIGMA: &str = "sigma";

/// Hunting as the SIEM runs it: the rules folder's models over the store
/// the server holds open.
pub struct StoreHunter {
    pub models: ModelsConfig,
    /// The folder's Sigma rules (choice `sigma`).
    pub rules: Option<std::sync::Arc<detector::detect::RuleSet>>,
    pub fold_secs: f64,
    pub max_open: usize,
}

impl siem::hunts::Hunter for StoreHunter {
    fn choices(&self) -> Vec<siem::hunts::Choice> {
        let mut v: Vec<siem::hunts::Choice> = model_commons(&self.models)
            .into_iter()
            .map(|c| siem::hunts::Choice { id: c.id.clone(), title: c.title.clone(), kind: "model".into() })
            .collect();
        if let Some(r) = self.rules.as_ref().filter(|r| !r.sigma.rules.is_empty()) {
            let title = format!("Sigma rules ({})", r.sigma.rules.len());
            v.push(siem::hunts::Choice { id: SIGMA.into(), title, kind: "sigma".into() });
        }
        v
    }

    fn hunt(
        &self,
        store: &dyn Store,
        from: f64,
        to: f64,
        chosen: &[String],
        progress: &dyn Fn(u64),
    ) -> Result<(u64, Vec<Value>), String> {
        let models = choose(&self.models, chosen);
        let sigma = self.rules.as_ref().filter(|_| chosen.is_empty() || chosen.iter().any(|c| c == SIGMA));
        let r = hunt_with_progress(store, from, to, &models, sigma, self.fold_secs, self.max_open, progress)
            .map_err(|e| format!("{e:#}"))?;
        let alerts = r.alerts.iter().map(serde_json::to_value).collect::<Result<Vec<Value>, _>>();
        Ok((r.records, alerts.map_err(|e| e.to_string())?))
    }
}

/// The hunter for a rules folder (its `models.toml` and `placeholders.toml`);
/// models that do not load are named in the error list.
pub fn hunter_for(rules: &std::path::Path) -> anyhow::Result<(StoreHunter, Vec<String>)> {
    let settings = crate::detection::DetectSettings { rules_dir: Some(rules.to_path_buf()), ..Default::default() };
    let cfg = settings.detector_config("hunt")?;
    let Some(path) = cfg.models_path.clone() else {
        bail!("{} has no models.toml", rules.display());
    };
    let (models, errors) = ModelsConfig::load(&path, &cfg.placeholders);
    let mut errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let (fold_secs, max_open) = (cfg.aggregate_window_secs, cfg.max_open_alerts);
    let rules = std::sync::Arc::new(detector::detect::RuleSet::load(cfg));
    errors.extend(rules.errors.iter().map(ToString::to_string));
    Ok((StoreHunter { models, rules: Some(rules), fold_secs, max_open }, errors))
}
