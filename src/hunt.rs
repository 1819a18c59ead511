//! Hunting: the anomaly models over stored records of a past time range.
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
    if from.partial_cmp(&to) != Some(std::cmp::Ordering::Less) {
        bail!("the range is empty: from {from} is not before to {to}");
    }
    let catalog = siem::schema::Catalog::new();
    let text: Vec<String> = MODEL_LOGS.iter().map(|l| format!("_log:{l}")).collect();
    let query = siem::query::parse(&text.join(" OR "), &catalog).context("the hunting query")?;
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
            });
            report.records += 1;
            s.models.observe(&log, &rec, &sensor, &mut out);
            for a in out.drain(..) {
                s.agg.add(a, &mut report.alerts);
            }
        }
    }
    for (sensor, mut s) in sensors {
        s.models.flush(&sensor, &mut out);
        for a in out.drain(..) {
            s.agg.add(a, &mut report.alerts);
        }
        s.agg.flush(&mut report.alerts);
        let c = &s.models.counters;
        report.counters.records += c.records;
        report.counters.verdicts += c.verdicts;
        report.counters.late += c.late;
        report.counters.state_full += c.state_full;
    }
    report.alerts.sort_by(|a, b| a.first_seen.cmp(&b.first_seen).then_with(|| a.id.cmp(&b.id)));
    Ok(report)
}
