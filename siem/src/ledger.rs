//! The loss ledger: for every sensor and time window, what it saw and what
//! was lost on the way to the store, with numbers. The sensor side comes
//! from its stats reports (counters since the start of a run: packets read
//! and dropped by the kernel or interface, records made, spooled, dropped
//! from a full spool, acknowledged, the spool's depth); the store side is
//! a count of what is stored. A window's figures are the differences
//! between consecutive reports of each run that end in it.

use crate::query::Query;
use crate::store::{Agg, AggResult, Result, SearchRequest, Sort, Store, StoreError};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// How far before a range the ledger looks for each run's previous report
/// (the baseline its first report in the range is counted from).
const LOOKBACK_SECS: f64 = 3600.0;
/// Reports read at most for one ledger: ten sensors reporting every 10 s
/// for four days.
const MAX_REPORTS: usize = 400_000;
const PAGE: usize = 5_000;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Window {
    pub sensor: String,
    /// Window start, epoch seconds (a multiple of the window's length).
    pub start: f64,
    pub packets_read: u64,
    /// By the kernel or the interface.
    pub packets_dropped: u64,
    pub records_made: u64,
    pub records_spooled: u64,
    pub records_spool_dropped: u64,
    pub records_shipped: u64,
    /// Records of the sensor stored with a time in the window (stats
    /// reports aside). Records carry the time their flow began and are made
    /// when it ends, so this leads `records_made` by up to a flow's length.
    pub records_stored: u64,
    /// Stats reports that ended in the window.
    pub reports: u64,
    /// At the window's last report: records and alerts waiting in the
    /// sensor's spool (of any run), not yet acknowledged.
    pub pending: Option<u64>,
    pub spool_bytes: Option<u64>,
    pub rules_version: Option<String>,
    pub version: Option<String>,
    /// The sensor's clock at the window's latest report.
    pub last_report_at: Option<f64>,
}

impl Window {
    /// Nothing known lost: no packet dropped, no record dropped from the
    /// spool, nothing still waiting at its last report, and at least one
    /// report to say so.
    pub fn complete(&self) -> bool {
        self.reports > 0 && self.packets_dropped == 0 && self.records_spool_dropped == 0 && self.pending == Some(0)
    }
}

/// A range's verdict: what is known lost or still on its way, over every
/// sensor that reported in it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Completeness {
    pub complete: bool,
    pub sensors: Vec<String>,
    /// Sensors with records stored in the range but no stats report in it:
    /// nothing can be said about their losses.
    pub unreported: Vec<String>,
    pub packets_read: u64,
    pub packets_dropped: u64,
    pub records_made: u64,
    pub records_spool_dropped: u64,
    pub pending: u64,
    /// Records made that were neither acknowledged, nor counted dropped,
    /// nor waiting at the sensor's latest report: lost without a count (a
    /// sensor killed with records in hand, a spool emptied by hand).
    pub records_unaccounted: u64,
}

#[derive(Clone, Debug, Default)]
struct Report {
    ts: f64,
    /// The sensor's clock at the report (`ts` if it did not say).
    at: f64,
    sensor: String,
    run: Option<String>,
    c: [u64; 6],
    pending: Option<u64>,
    spool_bytes: Option<u64>,
    rules_version: Option<String>,
    version: Option<String>,
}

// Indexes into `Report::c`.
const READ: usize = 0;
const DROPPED: usize = 1;
const MADE: usize = 2;
const SPOOLED: usize = 3;
const SPOOL_DROPPED: usize = 4;
const SHIPPED: usize = 5;

fn report(v: &Value) -> Option<Report> {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let pending = v.get("spool_records").and_then(Value::as_u64);
    let ts = v.get("ts")?.as_f64()?;
    Some(Report {
        ts,
        at: v.get("reported_at").and_then(Value::as_f64).unwrap_or(ts),
        sensor: s("_sensor")?,
        run: s("run"),
        c: [
            n("pkts_read"),
            n("pkts_dropped_kernel") + n("pkts_dropped_iface"),
            n("records_made"),
            n("records_spooled"),
            n("records_spool_dropped"),
            n("records_shipped"),
        ],
        pending,
        spool_bytes: v.get("spool_bytes").and_then(Value::as_u64),
        rules_version: s("rules_version"),
        version: s("version"),
    })
}

fn term(field: &str, value: &str) -> Query {
    Query::Term { field: field.into(), value: value.into() }
}

/// Stats reports of the range (and the lookback before it), oldest first.
fn reports(store: &dyn Store, from: f64, to: f64, sensor: Option<&str>) -> Result<Vec<Report>> {
    let mut q = vec![term("_log", "stats")];
    if let Some(s) = sensor {
        q.push(term("_sensor", s));
    }
    let mut out = Vec::new();
    // Pages by time (offsets are capped): each page starts at the last
    // time of the one before, skipping the reports at that time it held.
    let (mut lo, mut skip) = ((from - LOOKBACK_SECS).max(0.0), 0usize);
    loop {
        let mut req = SearchRequest::new(Query::And(q.clone()));
        req.from = Some(lo);
        req.to = Some(to);
        req.sort = Sort { field: "ts".into(), descending: false };
        req.limit = PAGE;
        req.offset = skip;
        let page = store.search(&req)?;
        let times: Vec<f64> = page.hits.iter().filter_map(|h| h.get("ts").and_then(Value::as_f64)).collect();
        out.extend(page.hits.iter().filter_map(report));
        if page.hits.len() < PAGE {
            break;
        }
        if out.len() >= MAX_REPORTS {
            return Err(StoreError::Invalid(format!(
                "more than {MAX_REPORTS} stats reports in the range: narrow it or name a sensor"
            )));
        }
        let last = times.last().copied().unwrap_or(lo);
        let same = times.iter().rev().take_while(|t| **t == last).count();
        if last > lo {
            (lo, skip) = (last, same);
        } else {
            skip += times.len();
        }
    }
    // Searches return pages sorted by time; ties keep the store's order.
    out.sort_by(|a, b| a.ts.total_cmp(&b.ts));
    Ok(out)
}

/// The ledger of `[from, to)` in windows of `window_secs`, per sensor (or
/// one sensor), windows without reports or records left out.
pub fn ledger(store: &dyn Store, from: f64, to: f64, window_secs: f64, sensor: Option<&str>) -> Result<Vec<Window>> {
    crate::store::check_range(Some(from), Some(to))?;
    if !(60.0..=86_400.0 * 31.0).contains(&window_secs) || to <= from || (to - from) / window_secs > 10_000.0 {
        return Err(StoreError::Invalid(
            "the window is 60 s to 31 days, and a range holds at most 10 000 of them".into(),
        ));
    }
    let mut out: BTreeMap<(String, i64), Window> = BTreeMap::new();
    fn slot<'a>(out: &'a mut BTreeMap<(String, i64), Window>, sensor: &str, t: f64, len: f64) -> &'a mut Window {
        let start = (t / len).floor() * len;
        out.entry((sensor.to_string(), start as i64)).or_insert_with(|| Window {
            sensor: sensor.to_string(),
            start,
            ..Window::default()
        })
    }
    // Sensor side: each report minus the previous one of its run; a report
    // without a run (a sensor writing local logs) counts from zero.
    let mut last: BTreeMap<(String, String), [u64; 6]> = BTreeMap::new();
    let mut latest: BTreeMap<(String, i64), f64> = BTreeMap::new();
    for r in reports(store, from, to, sensor)? {
        let prev = match &r.run {
            Some(run) => last.insert((r.sensor.clone(), run.clone()), r.c).unwrap_or_default(),
            None => [0; 6],
        };
        if r.ts < from {
            continue;
        }
        // A counter that went down means the run restarted its counters.
        let base = if r.c.iter().zip(&prev).any(|(c, p)| c < p) { [0; 6] } else { prev };
        let w = slot(&mut out, &r.sensor, r.ts, window_secs);
        w.packets_read += r.c[READ] - base[READ];
        w.packets_dropped += r.c[DROPPED] - base[DROPPED];
        w.records_made += r.c[MADE] - base[MADE];
        w.records_spooled += r.c[SPOOLED] - base[SPOOLED];
        w.records_spool_dropped += r.c[SPOOL_DROPPED] - base[SPOOL_DROPPED];
        w.records_shipped += r.c[SHIPPED] - base[SHIPPED];
        w.reports += 1;
        // The state of the spool and the versions: from the report made
        // last by the sensor's clock (a replay's reports of different runs
        // interleave by capture time).
        if r.at >= latest.get(&(r.sensor.clone(), w.start as i64)).copied().unwrap_or(f64::MIN) {
            latest.insert((r.sensor.clone(), w.start as i64), r.at);
            w.last_report_at = Some(r.at);
            w.pending = r.pending.or(w.pending);
            w.spool_bytes = r.spool_bytes.or(w.spool_bytes);
            w.rules_version = r.rules_version.or(w.rules_version.take());
            w.version = r.version.or(w.version.take());
        }
    }
    // Store side: records per sensor and window.
    let all_records = |s: Option<&str>| {
        let mut q = vec![Query::Not(Box::new(term("_log", "stats")))];
        if let Some(s) = s {
            q.push(term("_sensor", s));
        }
        Query::And(q)
    };
    let sensors: Vec<String> = match sensor {
        Some(s) => vec![s.to_string()],
        None => match store.aggregate(&all_records(None), Some(from), Some(to), &Agg::terms("_sensor", 1000))? {
            AggResult::Buckets(b) => b.into_iter().map(|b| b.key).collect(),
            _ => Vec::new(),
        },
    };
    for s in sensors {
        let hist = store.aggregate(
            &all_records(Some(&s)),
            Some(from),
            Some(to),
            &Agg::Histogram { interval_secs: window_secs },
        )?;
        if let AggResult::Histogram { interval_secs, .. } = hist {
            // Windows are bounded above, so the store keeps their width;
            // were it widened, counts would land in the wrong windows.
            if interval_secs != window_secs {
                return Err(StoreError::Invalid(format!("windows of {window_secs} s are too many for this range")));
            }
        }
        {
            for b in hist.buckets().into_iter().filter(|b| b.count > 0) {
                let t: f64 = b.key.parse().unwrap_or(from);
                slot(&mut out, &s, t.max(from), window_secs).records_stored += b.count;
            }
        }
    }
    Ok(out.into_values().collect())
}

/// What the ledger says about a range as a whole.
pub fn completeness(windows: &[Window]) -> Completeness {
    let mut c = Completeness::default();
    let mut last_pending: BTreeMap<&str, (f64, u64)> = BTreeMap::new();
    let mut reported: BTreeMap<&str, bool> = BTreeMap::new();
    // Per sensor: made, minus acknowledged and dropped from the spool.
    let mut outstanding: BTreeMap<&str, i128> = BTreeMap::new();
    for w in windows {
        let seen = reported.entry(&w.sensor).or_insert(false);
        *seen |= w.reports > 0;
        *outstanding.entry(&w.sensor).or_default() +=
            i128::from(w.records_made) - i128::from(w.records_shipped) - i128::from(w.records_spool_dropped);
        c.packets_read += w.packets_read;
        c.packets_dropped += w.packets_dropped;
        c.records_made += w.records_made;
        c.records_spool_dropped += w.records_spool_dropped;
        if let (Some(p), Some(at)) = (w.pending, w.last_report_at) {
            let e = last_pending.entry(&w.sensor).or_insert((at, p));
            if at >= e.0 {
                *e = (at, p);
            }
        }
    }
    c.pending = last_pending.values().map(|v| v.1).sum();
    // What a sensor made and did not resolve over the range can only still
    // be waiting (in its spool or output, counted in its latest report's
    // `spool_records`); more than that vanished. Records resolved in the
    // range but made before it only lower the figure, so it never blames
    // a sensor wrongly.
    c.records_unaccounted = outstanding
        .iter()
        .map(|(s, o)| {
            let waiting = last_pending.get(s).map_or(0, |p| p.1);
            u64::try_from(*o - i128::from(waiting)).unwrap_or(0)
        })
        .sum();
    for (s, r) in reported {
        if r {
            c.sensors.push(s.to_string());
        } else {
            c.unreported.push(s.to_string());
        }
    }
    c.complete = !c.sensors.is_empty()
        && c.unreported.is_empty()
        && c.packets_dropped == 0
        && c.records_spool_dropped == 0
        && c.pending == 0
        && c.records_unaccounted == 0;
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Catalog;
    use crate::store::tantivy::{TantivyConfig, TantivyStore};
    use crate::store::Record;
    use serde_json::json;

    const T0: f64 = 1_700_000_000.0; // 22:13:20 UTC: windows start at 21:00, 22:00, 23:00

    fn rec(c: &Catalog, log: &str, sensor: &str, v: Value) -> Record {
        Record::validate(c, log, sensor, v.as_object().unwrap().clone()).unwrap()
    }

    /// A report: sensor, time, run, and (packets read, records made,
    /// dropped from the spool, waiting in it).
    fn stats(
        c: &Catalog,
        sensor: &str,
        ts: f64,
        run: &str,
        (read, made, dropped, waiting): (u64, u64, u64, u64),
    ) -> Record {
        rec(
            c,
            "stats",
            sensor,
            json!({"ts": ts, "peer": sensor, "run": run, "pkts_read": read, "pkts_dropped_kernel": 0,
                   "records_made": made, "records_spooled": made, "records_spool_dropped": dropped,
                   "records_shipped": made - dropped - waiting, "spool_records": waiting, "reported_at": ts,
                   "rules_version": "abc", "version": "1"}),
        )
    }

    #[test]
    fn windows_count_the_differences_between_reports_of_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = TantivyStore::open(dir.path(), TantivyConfig::default()).unwrap();
        let c = Catalog::new();
        let mut recs = vec![
            // Run a: one report before the range (the baseline), two in it.
            stats(&c, "d1", T0 - 1800.0, "a", (1_000, 100, 0, 0)),
            stats(&c, "d1", T0 + 600.0, "a", (5_000, 400, 0, 0)),
            stats(&c, "d1", T0 + 4_200.0, "a", (9_000, 700, 20, 5)),
            // Run b of another sensor starts in the range; its counters
            // go down in a second run with the same id (a restart).
            stats(&c, "d2", T0 + 100.0, "b", (50, 10, 0, 0)),
            stats(&c, "d2", T0 + 200.0, "b", (30, 4, 0, 0)),
        ];
        for i in 0..12 {
            recs.push(rec(&c, "conn", "d1", json!({"ts": T0 + 60.0 * i as f64, "uid": format!("C{i}")})));
        }
        // A sensor that stored records but never reported.
        recs.push(rec(&c, "conn", "d3", json!({"ts": T0, "uid": "X"})));
        store.ingest(&recs).unwrap();
        let w = ledger(&store, T0, T0 + 7_200.0, 3_600.0, None).unwrap();
        let d1: Vec<&Window> = w.iter().filter(|w| w.sensor == "d1").collect();
        assert_eq!(d1.len(), 2);
        assert_eq!((d1[0].packets_read, d1[0].records_made, d1[0].records_stored), (4_000, 300, 12));
        assert!(d1[0].complete());
        assert_eq!((d1[1].packets_read, d1[1].records_made, d1[1].records_spool_dropped), (4_000, 300, 20));
        assert_eq!(d1[1].pending, Some(5));
        assert!(!d1[1].complete());
        let d2: Vec<&Window> = w.iter().filter(|w| w.sensor == "d2").collect();
        assert_eq!((d2[0].packets_read, d2[0].records_made, d2[0].reports), (80, 14, 2));
        let v = completeness(&w);
        assert!(!v.complete);
        assert_eq!(v.sensors, vec!["d1", "d2"]);
        assert_eq!(v.unreported, vec!["d3"]);
        assert_eq!((v.records_spool_dropped, v.pending), (20, 5));
        // One sensor, the first hour only: complete.
        let w = ledger(&store, T0, T0 + 3_000.0, 3_600.0, Some("d1")).unwrap();
        assert!(completeness(&w).complete, "{w:?}");
        // Bad windows are refused with the reason.
        assert!(ledger(&store, T0, T0 + 7_200.0, 1.0, None).is_err());
        assert!(ledger(&store, T0, T0 - 1.0, 3_600.0, None).is_err());
    }

    /// A run whose reports say it made records that never reached the
    /// spool, the SIEM or a count of drops: the range is not complete,
    /// even with nothing waiting and nothing dropped.
    #[test]
    fn records_made_but_never_spooled_nor_acknowledged_make_a_range_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let store = TantivyStore::open(dir.path(), TantivyConfig::default()).unwrap();
        let c = Catalog::new();
        let report = |ts: f64, run: &str, made: u64, spooled: u64, shipped: u64, waiting: u64| {
            rec(
                &c,
                "stats",
                "d1",
                json!({"ts": ts, "peer": "d1", "run": run, "pkts_read": 10, "pkts_dropped_kernel": 0,
                       "records_made": made, "records_spooled": spooled, "records_spool_dropped": 0,
                       "records_shipped": shipped, "spool_records": waiting, "reported_at": ts}),
            )
        };
        let mut recs = vec![
            // Run a: 30 made, all acknowledged.
            report(T0 + 10.0, "a", 30, 30, 30, 0),
            // Run b: 18 made and said waiting, then gone: its last report
            // (after the spool was emptied) has nothing waiting.
            report(T0 + 20.0, "b", 18, 0, 0, 18),
            report(T0 + 30.0, "b", 18, 0, 0, 0),
        ];
        for i in 0..30 {
            recs.push(rec(&c, "conn", "d1", json!({"ts": T0 + i as f64, "uid": format!("C{i}")})));
        }
        store.ingest(&recs).unwrap();
        let v = completeness(&ledger(&store, T0, T0 + 3_600.0, 3_600.0, None).unwrap());
        assert_eq!((v.records_made, v.pending, v.records_spool_dropped), (48, 0, 0));
        assert_eq!(v.records_unaccounted, 18, "{v:?}");
        assert!(!v.complete);
        // Run c ships b's records later: every record resolved, complete.
        store.ingest(&[report(T0 + 40.0, "c", 0, 0, 18, 0)]).unwrap();
        let v = completeness(&ledger(&store, T0, T0 + 3_600.0, 3_600.0, None).unwrap());
        assert_eq!(v.records_unaccounted, 0, "{v:?}");
        assert!(v.complete, "{v:?}");
    }
}
