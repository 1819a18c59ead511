//! The sensor's own small HTTP listener (`citysoc sensor --metrics ADDR`):
//! `/metrics` for Prometheus, `/healthz` and `/readyz` for systemd and load
//! balancers. It runs on a thread of its own with a one-thread runtime, away
//! from the capture.
//!
//! The capture figures are not counted here: they are read from the
//! pipeline's published counters, the same ones `stats.log` is written from,
//! so a scrape and `stats.log` agree. Only what `stats.log` does not hold is
//! counted here, as records pass to the logs: records per log, weirds per
//! name, alerts per source and severity.

use anyhow::Context;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use schema::{Event, Severity};
use sensor::output::EventSink;
use sensor::pipeline::{LiveState, LiveStats};
use sensor::SensorError;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Labels = Vec<(&'static str, String)>;

/// A capture loop silent this long is stalled (it publishes every second,
/// idle or not).
pub const STALLED_AFTER: Duration = Duration::from_secs(10);

/// The metrics of one sensor process.
pub struct SensorMetrics {
    registry: Registry,
    packets: Counter,
    bytes: Counter,
    kernel_drops: Counter,
    iface_drops: Counter,
    packets_kind: Family<Labels, Counter>,
    fragments: Family<Labels, Counter>,
    flows_open: Gauge,
    flows_created: Counter,
    flows_ended: Family<Labels, Counter>,
    reassembly_held: Gauge,
    reassembly_gaps: Counter,
    weirds: Counter,
    /// Counted here, as records pass (stats.log has no such split).
    records: Family<Labels, Counter>,
    weird_names: Family<Labels, Counter>,
    alerts: Family<Labels, Counter>,
    rules: Family<Labels, Gauge>,
    capturing: Gauge,
    last_update: Gauge<f64, AtomicU64>,
    spool_records: Gauge,
    spool_bytes: Gauge,
    spool_batches: Gauge,
    spooled: Counter,
    shipped: Counter,
    shipped_batches: Counter,
    spool_dropped: Counter,
    ship_retries: Counter,
    ship_lag: Gauge<f64, AtomicU64>,
    ship_refused: Gauge,
    /// One scrape at a time: counters are brought up to the snapshot's.
    scrape: Mutex<()>,
}

/// Brings a counter up to a total counted elsewhere (totals only grow).
fn mirror(c: &Counter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

fn one(name: &'static str, value: &str) -> Labels {
    vec![(name, value.to_string())]
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Informational => "informational",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

impl Default for SensorMetrics {
    fn default() -> Self {
        SensorMetrics::new()
    }
}

impl SensorMetrics {
    pub fn new() -> SensorMetrics {
        let mut r = Registry::with_prefix("citysoc_sensor");
        let m = SensorMetrics {
            registry: Registry::default(),
            packets: Counter::default(),
            bytes: Counter::default(),
            kernel_drops: Counter::default(),
            iface_drops: Counter::default(),
            packets_kind: Family::default(),
            fragments: Family::default(),
            flows_open: Gauge::default(),
            flows_created: Counter::default(),
            flows_ended: Family::default(),
            reassembly_held: Gauge::default(),
            reassembly_gaps: Counter::default(),
            weirds: Counter::default(),
            records: Family::default(),
            weird_names: Family::default(),
            alerts: Family::default(),
            rules: Family::default(),
            capturing: Gauge::default(),
            last_update: Gauge::default(),
            spool_records: Gauge::default(),
            spool_bytes: Gauge::default(),
            spool_batches: Gauge::default(),
            spooled: Counter::default(),
            shipped: Counter::default(),
            shipped_batches: Counter::default(),
            spool_dropped: Counter::default(),
            ship_retries: Counter::default(),
            ship_lag: Gauge::default(),
            ship_refused: Gauge::default(),
            scrape: Mutex::new(()),
        };
        r.register("packets", "Packets read from the source (stats.log pkts_read)", m.packets.clone());
        r.register_with_unit(
            "wire",
            "Bytes on the wire of the packets read (bytes_read)",
            Unit::Bytes,
            m.bytes.clone(),
        );
        r.register(
            "kernel_dropped_packets",
            "Packets the kernel dropped before the sensor read them (pcap stats, pkts_dropped_kernel)",
            m.kernel_drops.clone(),
        );
        r.register(
            "interface_dropped_packets",
            "Packets the interface dropped (pcap stats, pkts_dropped_iface; live capture only)",
            m.iface_drops.clone(),
        );
        r.register(
            "packets_by_kind",
            "Packets by what became of them: flow, non_ip, malformed, fragment, bad_checksum",
            m.packets_kind.clone(),
        );
        r.register("fragments", "IP fragments by outcome: reassembled, dropped", m.fragments.clone());
        r.register("flows_open", "Flows tracked now (flows_active)", m.flows_open.clone());
        r.register("flows_created", "Flows created (flows_created)", m.flows_created.clone());
        r.register(
            "flows_ended",
            "Flows logged, by why: expired (timeout), evicted (flow table full), flushed (end of run)",
            m.flows_ended.clone(),
        );
        r.register_with_unit(
            "reassembly_held",
            "Out-of-order TCP data held for the analyzers now",
            Unit::Bytes,
            m.reassembly_held.clone(),
        );
        r.register(
            "reassembly_forced_gaps",
            "TCP holes declared gaps because the memory cap was hit",
            m.reassembly_gaps.clone(),
        );
        r.register("weirds", "Weird records (protocol violations, malformed traffic), all analyzers", m.weirds.clone());
        r.register(
            "records",
            "Records written, by log (conn, dns, http, tls, ...: one per analyzer)",
            m.records.clone(),
        );
        r.register("weirds_by_name", "Weird records written, by name", m.weird_names.clone());
        r.register(
            "alerts",
            "Alerts raised, by rule source (sigma, yara, model, ioc, sensor) and severity",
            m.alerts.clone(),
        );
        r.register("rules_info", "The rule set running (version: hash of the rules folder); 1", m.rules.clone());
        r.register("capturing", "1 while the source is open and read", m.capturing.clone());
        r.register(
            "last_update_timestamp_seconds",
            "Unix time the capture loop last published its counters (every second while it runs)",
            m.last_update.clone(),
        );
        r.register("spool_records", "Records waiting in the spool for the SIEM", m.spool_records.clone());
        r.register_with_unit("spool", "Compressed batches waiting in the spool", Unit::Bytes, m.spool_bytes.clone());
        r.register("spool_batches", "Batches waiting in the spool", m.spool_batches.clone());
        r.register("spooled_records", "Records put in the spool by this process", m.spooled.clone());
        r.register("shipped_records", "Records the SIEM acknowledged", m.shipped.clone());
        r.register("shipped_batches", "Batches the SIEM acknowledged", m.shipped_batches.clone());
        r.register(
            "spool_dropped_records",
            "Records dropped from a full spool (spool_full = drop-oldest)",
            m.spool_dropped.clone(),
        );
        r.register("ship_retries", "Shipping attempts retried", m.ship_retries.clone());
        r.register_with_unit(
            "ship_lag",
            "Age of the oldest record spooled and not yet acknowledged by the SIEM (0: all acknowledged)",
            Unit::Seconds,
            m.ship_lag.clone(),
        );
        r.register("ship_refused", "1 once the SIEM refused the sensor (token, certificate)", m.ship_refused.clone());
        // A gauge named `_info` rather than OpenMetrics' info type: the
        // Prometheus text parser (promtool, older servers) knows no `info`.
        let build = Family::<Labels, Gauge>::default();
        build.get_or_create(&one("version", env!("CARGO_PKG_VERSION"))).set(1);
        r.register("build_info", "The running build; 1", build);
        SensorMetrics { registry: r, ..m }
    }

    /// Counts what passes to the logs (call on the output thread).
    pub fn observe(&self, events: &[Event]) {
        for e in events {
            match e {
                Event::Stats(_) => continue,
                Event::Alert(a) => {
                    let l = vec![
                        ("source", a.rule_source.as_str().to_string()),
                        ("severity", severity_name(a.severity).to_string()),
                    ];
                    self.alerts.get_or_create(&l).inc();
                }
                Event::Weird(w) => {
                    self.weird_names.get_or_create(&one("name", w.name)).inc();
                }
                _ => {}
            }
            self.records.get_or_create(&one("log", e.log_name())).inc();
        }
    }

    /// The exposition as of now: the pipeline's counters, the rule set, the
    /// spool.
    pub fn render(&self, live: &LiveState, rules: Option<&str>, ship: Option<&crate::ship::ShipState>) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = &live.stats {
            mirror(&self.packets, s.pkts_read);
            mirror(&self.bytes, s.bytes_read);
            mirror(&self.kernel_drops, s.pkts_dropped_kernel);
            mirror(&self.iface_drops, s.pkts_dropped_iface.unwrap_or(0));
            for (kind, v) in [
                ("flow", s.pkts_flow),
                ("non_ip", s.pkts_non_ip),
                ("malformed", s.pkts_malformed),
                ("fragment", s.pkts_fragment),
                ("bad_checksum", s.pkts_bad_checksum),
            ] {
                mirror(&self.packets_kind.get_or_create(&one("kind", kind)), v);
            }
            mirror(&self.fragments.get_or_create(&one("outcome", "reassembled")), s.fragments_reassembled);
            mirror(&self.fragments.get_or_create(&one("outcome", "dropped")), s.fragments_dropped);
            self.flows_open.set(s.flows_active as i64);
            mirror(&self.flows_created, s.flows_created);
            for (why, v) in [("expired", s.flows_expired), ("evicted", s.flows_evicted), ("flushed", s.flows_flushed)] {
                mirror(&self.flows_ended.get_or_create(&one("reason", why)), v);
            }
            self.reassembly_held.set(s.reassembly_held_bytes as i64);
            mirror(&self.reassembly_gaps, s.reassembly_forced_gaps);
            mirror(&self.weirds, s.weirds);
        }
        self.capturing.set(i64::from(live.capturing));
        if let Some(t) = live.updated {
            let ago = t.elapsed().as_secs_f64();
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            self.last_update.set(now.as_secs_f64() - ago);
        }
        self.rules.clear();
        if let Some(v) = rules {
            self.rules.get_or_create(&one("version", v)).set(1);
        }
        if let Some(st) = ship {
            self.spool_records.set(st.spool_records as i64);
            self.spool_bytes.set(st.spool_bytes as i64);
            self.spool_batches.set(st.spool_batches as i64);
            mirror(&self.spooled, st.spooled_records);
            mirror(&self.shipped, st.shipped_records);
            mirror(&self.shipped_batches, st.shipped_batches);
            mirror(&self.spool_dropped, st.dropped_records);
            mirror(&self.ship_retries, st.retries);
            self.ship_lag.set(st.lag_secs);
            self.ship_refused.set(i64::from(st.refused));
        }
        let mut out = String::new();
        // Writing into a String does not fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Counts records on their way to `inner` (see [`SensorMetrics::observe`]).
/// Without metrics it only passes records on.
pub struct Counted<S> {
    inner: S,
    metrics: Option<Arc<SensorMetrics>>,
}

impl<S> Counted<S> {
    pub fn new(inner: S, metrics: Option<Arc<SensorMetrics>>) -> Counted<S> {
        Counted { inner, metrics }
    }
}

impl<S: EventSink> EventSink for Counted<S> {
    fn write(&mut self, events: &mut [Event]) -> Result<(), SensorError> {
        if let Some(m) = &self.metrics {
            m.observe(events);
        }
        self.inner.write(events)
    }

    fn flush(&mut self) -> Result<(), SensorError> {
        self.inner.flush()
    }
}

/// What the listener reads on each request.
#[derive(Clone)]
pub struct Sources {
    pub metrics: Arc<SensorMetrics>,
    pub live: LiveStats,
    pub rules: Option<Arc<crate::detection::LiveRules>>,
    pub ship: Option<crate::ship::ShipMonitor>,
}

impl Sources {
    fn render(&self) -> String {
        let rules = self.rules.as_ref().map(|r| r.current().1.unwrap_or_else(|| "unknown".into()));
        let ship = self.ship.as_ref().map(|s| s.read());
        self.metrics.render(&self.live.get(), rules.as_deref(), ship.as_ref())
    }

    /// Ready: the capture is open and its loop not stalled.
    fn ready(&self) -> Result<(), String> {
        let s = self.live.get();
        if !s.capturing {
            return Err(if s.stats.is_some() { "the capture ended" } else { "the capture is not open yet" }.into());
        }
        match s.updated {
            Some(t) if t.elapsed() > STALLED_AFTER => {
                Err(format!("the capture loop stalled: no progress for {} s", t.elapsed().as_secs()))
            }
            _ => Ok(()),
        }
    }
}

/// The listener, bound before it returns (a taken port fails the start,
/// not the first scrape); it serves until the process exits.
pub fn serve(addr: SocketAddr, src: Sources) -> anyhow::Result<()> {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::get;
    let std_listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("--metrics: cannot listen on {addr}"))?;
    std_listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    fn plain() -> [(header::HeaderName, &'static str); 1] {
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")]
    }
    let (s1, s2) = (src.clone(), src);
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move |headers: axum::http::HeaderMap| {
                let s1 = s1.clone();
                async move {
                    // Listing the spool reads a folder: off the runtime.
                    let text = tokio::task::spawn_blocking(move || s1.render()).await.unwrap_or_default();
                    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
                    let (ct, text) = siem::metrics::negotiate(text, accept);
                    ([(header::CONTENT_TYPE, ct)], text)
                }
            }),
        )
        .route("/healthz", get(|| async { (plain(), "ok\n") }))
        .route(
            "/readyz",
            get(move || {
                let s2 = s2.clone();
                async move {
                    match s2.ready() {
                        Ok(()) => (plain(), "ready\n".to_string()).into_response(),
                        Err(why) => {
                            (StatusCode::SERVICE_UNAVAILABLE, plain(), format!("not ready: {why}\n")).into_response()
                        }
                    }
                }
            }),
        );
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        rt.block_on(async move {
            match tokio::net::TcpListener::from_std(std_listener) {
                Ok(l) => {
                    if let Err(e) = axum::serve(l, app).await {
                        tracing::error!(error = %e, "metrics listener stopped");
                    }
                }
                Err(e) => tracing::error!(error = %e, "metrics listener not started"),
            }
        })
    })?;
    Ok(())
}
