//! Anomaly models: behaviour rather than signatures. Scans, floods,
//! beaconing, DNS tunnelling and DGAs, brute force, and IoT devices leaving
//! their learned profile.
//!
//! Models read records through [`Fields`], so the same code runs on the
//! sensor's live records and on records read back from the SIEM (hunting).
//! Windows are anchored to record time and close only when the record
//! clock has passed their end by `lateness_secs`, so the verdicts do not
//! depend on the order in which records arrive: a flow's record comes when
//! the flow ends, a stored record comes in time order, and both give the
//! same alerts.

pub mod beacon;
pub mod brute;
pub mod config;
pub mod dns;
pub mod fields;
pub mod flood;
pub mod iot;
pub mod scan;
pub mod window;

pub use config::{ModelsConfig, MODEL_IDS};
pub use fields::Fields;

use crate::alert::{make_alert, AlertSpec, Subject};
use schema::{AlertRecord, RuleSource, Severity, Time};
use std::net::IpAddr;

/// What a model concluded, before it becomes an alert.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub model: &'static str,
    /// Record time the behaviour started.
    pub first: Time,
    pub last: Time,
    pub orig: Option<IpAddr>,
    pub resp: Option<IpAddr>,
    pub resp_p: Option<u16>,
    /// The explanation in numbers.
    pub summary: schema::Summary,
    /// The figures behind the verdict as `name=value`.
    pub matched: Vec<String>,
    /// Records behind it (`conn:C...`).
    pub evidence: Vec<String>,
    /// Raised above the model's configured severity (a brute force that
    /// ended in a success).
    pub severity: Option<Severity>,
    pub count: u64,
}

/// Counters of the models, for stats and tests.
#[derive(Clone, Debug, Default)]
pub struct ModelCounters {
    pub records: u64,
    pub verdicts: u64,
    /// Records that came later than `lateness_secs` behind the record
    /// clock: their windows had closed.
    pub late: u64,
    /// New keys refused because a model's state was at its cap.
    pub state_full: u64,
}

/// Every enabled model, fed one record at a time.
pub struct Models {
    cfg: ModelsConfig,
    scan: Option<scan::ScanModel>,
    flood: Option<flood::FloodModel>,
    beacon: Option<beacon::BeaconModel>,
    dns: Option<dns::DnsModel>,
    brute: Option<brute::BruteModel>,
    iot: Option<iot::IotModel>,
    /// The record clock: the latest `ts` seen.
    now: Time,
    ticked: Time,
    verdicts: Vec<Verdict>,
    pub counters: ModelCounters,
}

impl Models {
    pub fn new(cfg: ModelsConfig) -> Models {
        let late = cfg.lateness_us();
        Models {
            scan: cfg.scan.as_ref().filter(|c| on(&c.common)).map(|c| scan::ScanModel::new(c.clone(), late)),
            flood: cfg.flood.as_ref().filter(|c| on(&c.common)).map(|c| flood::FloodModel::new(c.clone(), late)),
            beacon: cfg.beacon.as_ref().filter(|c| on(&c.common)).map(|c| beacon::BeaconModel::new(c.clone(), late)),
            dns: cfg.dns.as_ref().filter(|c| on(&c.common)).map(|c| dns::DnsModel::new(c.clone(), late)),
            brute: cfg.brute.as_ref().filter(|c| on(&c.common)).map(|c| brute::BruteModel::new(c.clone(), late)),
            iot: cfg.iot.as_ref().filter(|c| on(&c.common)).map(|c| iot::IotModel::new(c.clone())),
            cfg,
            now: Time(i64::MIN),
            ticked: Time(i64::MIN),
            verdicts: Vec::new(),
            counters: ModelCounters::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.scan.is_none()
            && self.flood.is_none()
            && self.beacon.is_none()
            && self.dns.is_none()
            && self.brute.is_none()
            && self.iot.is_none()
    }

    /// State entries held per model (windows, pairs, devices, baselines).
    pub fn state_sizes(&self) -> Vec<(&'static str, usize)> {
        let mut v = Vec::new();
        if let Some(m) = &self.scan {
            v.push(("scan", m.state_len()));
        }
        if let Some(m) = &self.flood {
            v.push(("flood", m.state_len()));
        }
        if let Some(m) = &self.beacon {
            v.push(("beacon", m.state_len()));
        }
        if let Some(m) = &self.dns {
            v.push(("dns", m.state_len()));
        }
        if let Some(m) = &self.brute {
            v.push(("brute", m.state_len()));
        }
        if let Some(m) = &self.iot {
            v.push(("iot", m.state_len()));
        }
        v
    }

    pub fn config(&self) -> &ModelsConfig {
        &self.cfg
    }

    /// One record of log `log`; finished alerts are appended to `out`.
    pub fn observe(&mut self, log: &str, rec: &dyn Fields, sensor: &str, out: &mut Vec<AlertRecord>) {
        let Some(ts) = rec.time("ts") else { return };
        self.counters.records += 1;
        if ts > self.now {
            self.now = ts;
        }
        let now = self.now;
        let v = &mut self.verdicts;
        let c = &mut self.counters;
        match log {
            "conn" => {
                if let Some(m) = &mut self.scan {
                    m.observe(now, ts, rec, c);
                }
                if let Some(m) = &mut self.flood {
                    m.observe(now, ts, rec, c);
                }
                if let Some(m) = &mut self.beacon {
                    m.observe(now, ts, rec, c, v);
                }
                if let Some(m) = &mut self.brute {
                    m.observe_conn(now, ts, rec, c);
                }
                if let Some(m) = &mut self.iot {
                    m.observe(log, ts, rec, c, v);
                }
            }
            "dns" => {
                if let Some(m) = &mut self.dns {
                    m.observe(now, ts, rec, c);
                }
                if let Some(m) = &mut self.beacon {
                    m.observe_dns(rec);
                }
            }
            "ssh" | "http" | "mqtt_connect" => {
                if let Some(m) = &mut self.brute {
                    m.observe(log, now, ts, rec, c);
                }
            }
            _ => {}
        }
        if matches!(log, "modbus" | "dnp3" | "mqtt_publish" | "mqtt_subscribe" | "coap" | "bacnet") {
            if let Some(m) = &mut self.iot {
                m.observe(log, ts, rec, c, v);
            }
        }
        // Windows close on whole seconds of the record clock: the cost of
        // looking does not grow with the record rate.
        if self.now.0.saturating_sub(self.ticked.0) >= 1_000_000 {
            self.ticked = self.now;
            self.tick(false);
        }
        self.emit(sensor, out);
    }

    fn tick(&mut self, all: bool) {
        let now = if all { Time(i64::MAX) } else { self.now };
        let v = &mut self.verdicts;
        if let Some(m) = &mut self.scan {
            m.close(now, v);
        }
        if let Some(m) = &mut self.flood {
            m.close(now, v);
        }
        if let Some(m) = &mut self.beacon {
            m.close(now, v);
        }
        if let Some(m) = &mut self.dns {
            m.close(now, v);
        }
        if let Some(m) = &mut self.brute {
            m.close(now, v);
        }
    }

    /// End of input: every window closes.
    pub fn flush(&mut self, sensor: &str, out: &mut Vec<AlertRecord>) {
        self.tick(true);
        self.emit(sensor, out);
    }

    fn emit(&mut self, sensor: &str, out: &mut Vec<AlertRecord>) {
        for v in self.verdicts.drain(..) {
            self.counters.verdicts += 1;
            let Some(common) = self.cfg.common(v.model) else { continue };
            let subj = Subject {
                ts: v.last,
                uid: None,
                community_id: None,
                orig: v.orig.map(|h| (h, 0)),
                resp: v.resp.map(|h| (h, v.resp_p.unwrap_or(0))),
            };
            let spec = AlertSpec {
                source: RuleSource::Model,
                rule_id: &common.id,
                title: &common.title,
                version: &self.cfg.version,
                severity: v.severity.unwrap_or(common.severity).max(common.severity),
                attack: &common.attack,
                summary: v.summary,
                matched: v.matched,
                evidence: v.evidence,
                confidence: None,
            };
            let mut a = make_alert(sensor, &subj, spec, v.first, v.count.max(1));
            // A model's alert is about hosts, not a source port.
            a.orig_p = None;
            if v.resp_p.is_none() {
                a.resp_p = None;
            }
            out.push(a);
        }
    }
}

fn on(c: &Option<config::Common>) -> bool {
    c.as_ref().is_some_and(|c| c.enabled)
}

/// `1234 B`, `1.2 KB`, `3.4 MB`: sizes in explanations.
pub(crate) fn human_bytes(b: f64) -> String {
    if b < 1000.0 {
        format!("{b:.0} B")
    } else if b < 1e6 {
        format!("{:.1} KB", b / 1e3)
    } else if b < 1e9 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.1} GB", b / 1e9)
    }
}

/// `45 s`, `12.5 min`, `3.1 h`.
pub(crate) fn human_secs(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}
