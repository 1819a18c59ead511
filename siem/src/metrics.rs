//! What the SIEM exposes to Prometheus at `/metrics`: one registry per
//! server, kept in the app state (no global registry: two servers in one
//! test process do not share counters). Counters are bumped where the
//! thing happens; what the store and the audit trail hold is read at scrape
//! time, so the figures are never stale.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

/// Label sets: a few fixed names each, values from a closed set.
pub type Labels = Vec<(&'static str, String)>;

fn one(name: &'static str, value: &str) -> Labels {
    vec![(name, value.to_string())]
}

/// Query latencies: 1 ms to about 33 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16))
}

pub struct SiemMetrics {
    registry: Registry,
    /// Records of ingest requests, by outcome (`accepted`, `rejected`).
    pub ingest_records: Family<Labels, Counter>,
    /// Ingest requests, by outcome: `accepted`, `duplicate`, or the reason
    /// of a refusal.
    pub ingest_batches: Family<Labels, Counter>,
    /// Ingest requests being processed now (each holds a slot).
    pub ingest_in_flight: Gauge,
    /// Ingest slots (`ingest_concurrency`): in flight at this is full.
    pub ingest_slots: Gauge,
    /// Requests answered 503, by route kind (`ingest` busy, `read_only`).
    pub unavailable: Family<Labels, Counter>,
    /// Query latency by route kind.
    pub query_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    pub store_bytes: Family<Labels, Gauge>,
    pub store_records: Family<Labels, Gauge>,
    pub store_partitions: Family<Labels, Gauge>,
    /// Retention runs by outcome (`ok`, `failed`).
    pub retention_runs: Family<Labels, Counter>,
    pub retention_records: Family<Labels, Counter>,
    pub retention_bytes: Family<Labels, Counter>,
    /// Unix time of the last retention run that completed.
    pub retention_last_success: Gauge<f64, AtomicU64>,
    /// When each sensor's last batch was stored (Unix time).
    pub sensor_last_ingest: Family<Labels, Gauge<f64, AtomicU64>>,
    /// Console sign-ins by outcome (`success`, `failure`, `locked`).
    pub logins: Family<Labels, Counter>,
    /// Callers refused by the cross-site check, by reason.
    pub cross_site_refused: Family<Labels, Counter>,
    /// 1 while the audit chain verifies, 0 once it is broken.
    pub audit_chain_ok: Gauge,
    /// 1 while changes are refused (the audit chain is broken).
    pub read_only: Gauge,
    pub started: Gauge<f64, AtomicU64>,
}

impl Default for SiemMetrics {
    fn default() -> Self {
        SiemMetrics::new()
    }
}

impl SiemMetrics {
    pub fn new() -> SiemMetrics {
        let mut r = Registry::with_prefix("citysoc_siem");
        let m = SiemMetrics {
            ingest_records: Family::default(),
            ingest_batches: Family::default(),
            ingest_in_flight: Gauge::default(),
            ingest_slots: Gauge::default(),
            unavailable: Family::default(),
            query_seconds: Family::new_with_constructor(latency_histogram),
            store_bytes: Family::default(),
            store_records: Family::default(),
            store_partitions: Family::default(),
            retention_runs: Family::default(),
            retention_records: Family::default(),
            retention_bytes: Family::default(),
            retention_last_success: Gauge::default(),
            sensor_last_ingest: Family::default(),
            logins: Family::default(),
            cross_site_refused: Family::default(),
            audit_chain_ok: Gauge::default(),
            read_only: Gauge::default(),
            started: Gauge::default(),
            registry: Registry::default(),
        };
        r.register(
            "ingest_records",
            "Records in ingest requests, by outcome (accepted, rejected)",
            m.ingest_records.clone(),
        );
        r.register(
            "ingest_batches",
            "Ingest requests, by outcome (accepted, duplicate, or the reason of the refusal)",
            m.ingest_batches.clone(),
        );
        r.register("ingest_in_flight", "Ingest requests being stored now", m.ingest_in_flight.clone());
        r.register(
            "ingest_slots",
            "Ingest requests stored at once at most (ingest_concurrency)",
            m.ingest_slots.clone(),
        );
        r.register(
            "unavailable_responses",
            "Requests answered 503, by reason (busy: every ingest slot taken; read_only: audit chain broken)",
            m.unavailable.clone(),
        );
        r.register_with_unit(
            "query_duration",
            "Time to answer a query, by route kind (search, aggregate, pivot, alerts)",
            Unit::Seconds,
            m.query_seconds.clone(),
        );
        r.register_with_unit("store_size", "Disk used by the store, by class", Unit::Bytes, m.store_bytes.clone());
        r.register("store_records", "Records held by the store, by class", m.store_records.clone());
        r.register("store_partitions", "Day partitions held by the store, by class", m.store_partitions.clone());
        r.register("retention_runs", "Retention runs, by outcome (ok, failed)", m.retention_runs.clone());
        r.register("retention_removed_records", "Records removed by retention, by class", m.retention_records.clone());
        r.register_with_unit(
            "retention_removed",
            "Bytes removed by retention, by class",
            Unit::Bytes,
            m.retention_bytes.clone(),
        );
        r.register(
            "retention_last_success_timestamp_seconds",
            "Unix time of the last retention run that completed (0: none yet)",
            m.retention_last_success.clone(),
        );
        r.register(
            "sensor_last_ingest_timestamp_seconds",
            "Unix time each sensor's last batch was stored, by sensor (its name in the tokens file)",
            m.sensor_last_ingest.clone(),
        );
        r.register("console_logins", "Console sign-ins, by outcome (success, failure, locked)", m.logins.clone());
        r.register(
            "cross_site_refused",
            "State-changing requests refused as cross-site, by reason",
            m.cross_site_refused.clone(),
        );
        r.register(
            "audit_chain_ok",
            "1 while the audit trail's hash chain verifies, 0 once broken",
            m.audit_chain_ok.clone(),
        );
        r.register("read_only", "1 while changes are refused because the audit trail is broken", m.read_only.clone());
        r.register("start_time_seconds", "Unix time the server started", m.started.clone());
        // A gauge named `_info` rather than OpenMetrics' info type: the
        // Prometheus text parser (promtool, older servers) knows no `info`.
        let build = Family::<Labels, Gauge>::default();
        build.get_or_create(&one("version", env!("CARGO_PKG_VERSION"))).set(1);
        r.register("build_info", "The running build; 1", build);
        m.started.set(now());
        // The usual series exist from the start at 0: a rate over them is 0,
        // not "no data", before the first event.
        m.records(0, 0);
        for o in ["accepted", "duplicate"] {
            m.ingest_batches.get_or_create(&one("outcome", o)).inc_by(0);
        }
        for o in ["success", "failure", "locked"] {
            m.logins.get_or_create(&one("outcome", o)).inc_by(0);
        }
        for o in ["ok", "failed"] {
            m.retention_runs.get_or_create(&one("outcome", o)).inc_by(0);
        }
        for r in ["busy", "read_only"] {
            m.unavailable.get_or_create(&one("reason", r)).inc_by(0);
        }
        SiemMetrics { registry: r, ..m }
    }

    pub fn batch(&self, outcome: &str) {
        self.ingest_batches.get_or_create(&one("outcome", outcome)).inc();
    }

    pub fn records(&self, accepted: usize, rejected: usize) {
        self.ingest_records.get_or_create(&one("outcome", "accepted")).inc_by(accepted as u64);
        self.ingest_records.get_or_create(&one("outcome", "rejected")).inc_by(rejected as u64);
    }

    /// A batch of `sensor` stored now.
    pub fn sensor_stored(&self, sensor: &str) {
        self.sensor_last_ingest.get_or_create(&one("sensor", sensor)).set(now());
    }

    pub fn unavailable(&self, reason: &str) {
        self.unavailable.get_or_create(&one("reason", reason)).inc();
    }

    pub fn query(&self, kind: &str, secs: f64) {
        self.query_seconds.get_or_create(&one("kind", kind)).observe(secs);
    }

    pub fn login(&self, outcome: &str) {
        self.logins.get_or_create(&one("outcome", outcome)).inc();
    }

    pub fn cross_site(&self, reason: &str) {
        self.cross_site_refused.get_or_create(&one("reason", reason)).inc();
    }

    /// A retention run: what it dropped, or that it failed.
    pub fn retention(&self, dropped: Option<&[crate::retention::Dropped]>) {
        match dropped {
            Some(d) => {
                self.retention_runs.get_or_create(&one("outcome", "ok")).inc();
                for x in d {
                    let class = one("class", x.class.name());
                    self.retention_records.get_or_create(&class).inc_by(x.records);
                    self.retention_bytes.get_or_create(&class).inc_by(x.bytes);
                }
                self.retention_last_success.set(now());
            }
            None => {
                self.retention_runs.get_or_create(&one("outcome", "failed")).inc();
            }
        }
    }

    /// The store's holdings per class, as of now (every class is listed,
    /// an empty one with zeros, so a dashboard's series do not vanish).
    pub fn set_store(&self, parts: &[crate::store::Partition]) {
        for class in crate::store::Class::ALL {
            let mine = parts.iter().filter(|p| p.class == class);
            let (bytes, records, n) = mine.fold((0u64, 0u64, 0i64), |a, p| (a.0 + p.bytes, a.1 + p.records, a.2 + 1));
            let l = one("class", class.name());
            self.store_bytes.get_or_create(&l).set(bytes as i64);
            self.store_records.get_or_create(&l).set(records as i64);
            self.store_partitions.get_or_create(&l).set(n);
        }
    }

    pub fn set_audit(&self, broken: bool) {
        self.audit_chain_ok.set(i64::from(!broken));
        self.read_only.set(i64::from(broken));
    }

    /// The exposition, OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String does not fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The content type of [`SiemMetrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the classic Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition in the format the scraper asks for: OpenMetrics when its
/// `Accept` names it (Prometheus does), else the classic text format 0.0.4
/// (curl, `promtool check metrics`, older scrapers).
pub fn negotiate(openmetrics: String, accept: Option<&str>) -> (&'static str, String) {
    if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
        (CONTENT_TYPE, openmetrics)
    } else {
        (TEXT_CONTENT_TYPE, to_text_format(&openmetrics))
    }
}

/// OpenMetrics text to the classic text format: a counter's family is named
/// with its `_total` there (OpenMetrics names the family without it), and
/// `# UNIT` and `# EOF` lines are not part of it. Gauges and histograms read
/// the same in both.
pub fn to_text_format(om: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        om.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters.contains(name).then(|| format!("{p}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(l.trim_end()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    #[test]
    fn counters_are_named_with_their_total_in_the_text_format() {
        let m = super::SiemMetrics::new();
        m.batch("accepted");
        m.query("search", 0.1);
        let om = m.render();
        assert!(om.contains("# TYPE citysoc_siem_ingest_batches counter\n"), "{om}");
        assert!(om.ends_with("# EOF\n"));
        let text = super::to_text_format(&om);
        assert!(text.contains("# TYPE citysoc_siem_ingest_batches_total counter\n"), "{text}");
        assert!(text.contains("# HELP citysoc_siem_ingest_batches_total Ingest requests"), "{text}");
        assert!(text.contains("citysoc_siem_ingest_batches_total{outcome=\"accepted\"} 1\n"), "{text}");
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
        assert!(text.contains("# TYPE citysoc_siem_query_duration_seconds histogram\n"), "{text}");
    }
}
