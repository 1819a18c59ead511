//! Floods and volumetric change per host: half-open TCP (SYN floods), UDP
//! and ICMP packet floods, and amplification replies (large answers from
//! reflecting UDP services to a host that did not ask for them), counted
//! per bucket of record time against fixed floors and, once learned, a
//! baseline per hour of the day (EWMA mean and variance), so that a busy
//! evening is measured against other evenings.
//!
//! Counts come from flow records, so a long flow's packets land in the
//! bucket where it started.

use super::config::FloodConfig;
use super::window::Windows;
use super::{human_bytes, Fields, ModelCounters, Verdict};
use schema::summary::some_of;
use schema::{Severity, Summary, Time};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

#[derive(Default)]
pub struct Bucket {
    syn_pkts: u64,
    syn_ports: BTreeSet<u16>,
    udp_pkts: u64,
    icmp_pkts: u64,
    amp_bytes: u64,
    /// Amplified replies (packets): what the alert counts; the bytes are
    /// its size, in the summary.
    amp_pkts: u64,
    amp_reflectors: BTreeSet<IpAddr>,
    amp_ports: BTreeMap<u16, u64>,
    total_pkts: u64,
    /// Each source and what it sent ([`SYN`], [`UDP`], [`ICMP`] bits): a
    /// flood's summary counts the sources of that flood, not of every flow
    /// to the host.
    sources: BTreeMap<IpAddr, u8>,
    sources_full: bool,
    first: i64,
    last: i64,
    evidence: Vec<String>,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    mean: f64,
    var: f64,
    n: u32,
}

pub struct FloodModel {
    cfg: FloodConfig,
    win: Windows<IpAddr, Bucket>,
    baseline: HashMap<IpAddr, Box<[Slot; 24]>>,
}

const MAX_SOURCES: usize = 1024;
const SYN: u8 = 1;
const UDP: u8 = 2;
const ICMP: u8 = 4;

impl FloodModel {
    pub fn state_len(&self) -> usize {
        self.win.len() + self.baseline.len()
    }

    pub fn new(cfg: FloodConfig, lateness: i64) -> Self {
        // Buckets overlap by half, so a burst across a boundary is whole in one.
        let win = Windows::new(cfg.bucket_secs, 2, lateness, cfg.max_hosts);
        FloodModel { cfg, win, baseline: HashMap::new() }
    }

    pub fn observe(&mut self, now: Time, ts: Time, r: &dyn Fields, c: &mut ModelCounters) {
        let (Some(orig), Some(resp), Some(proto)) = (r.ip("id.orig_h"), r.ip("id.resp_h"), r.text("proto")) else {
            return;
        };
        let opk = r.num("orig_pkts").unwrap_or(0.0).max(0.0) as u64;
        let ob = r.num("orig_bytes").unwrap_or(0.0).max(0.0);
        let rb = r.num("resp_bytes").unwrap_or(0.0).max(0.0);
        let rpk = r.num("resp_pkts").unwrap_or(0.0).max(0.0) as u64;
        let port = r.port("id.resp_p").unwrap_or(0);
        let state = r.text("conn_state").unwrap_or_default();
        let uid = r.text("uid").map(|u| format!("conn:{u}"));
        let cfg = &self.cfg;
        // Amplification: the victim is the originator (the flow was turned
        // around by the service port), the replies are the responder's.
        let amplified =
            proto == "udp" && cfg.amplification_ports.contains(&port) && rb >= cfg.amplification_ratio * ob.max(1.0);
        if amplified {
            self.win.fold(now, ts, &orig, c, |b| {
                touch(b, ts, &uid);
                b.amp_bytes += rb as u64;
                b.amp_pkts += rpk;
                *b.amp_ports.entry(port).or_default() += rb as u64;
                if b.amp_reflectors.len() < MAX_SOURCES {
                    b.amp_reflectors.insert(resp);
                }
            });
            return;
        }
        if cfg.common.as_ref().is_some_and(|x| x.exclude.contains(&orig)) {
            return;
        }
        let half_open = proto == "tcp" && ob == 0.0 && matches!(state.as_ref(), "S0" | "REJ" | "RSTOS0" | "OTH" | "SH");
        self.win.fold(now, ts, &resp, c, |b| {
            touch(b, ts, &uid);
            b.total_pkts += opk;
            // A half-open attempt sent one SYN at least, whatever its
            // record says of the packets.
            let kind = match proto.as_ref() {
                "tcp" if half_open => {
                    b.syn_pkts += opk.max(1);
                    if b.syn_ports.len() < 64 {
                        b.syn_ports.insert(port);
                    }
                    SYN
                }
                "udp" => {
                    b.udp_pkts += opk;
                    UDP
                }
                "icmp" => {
                    b.icmp_pkts += opk;
                    ICMP
                }
                _ => 0,
            };
            if let Some(k) = b.sources.get_mut(&orig) {
                *k |= kind;
            } else if b.sources.len() < MAX_SOURCES {
                b.sources.insert(orig, kind);
            } else {
                b.sources_full = true;
            }
        });
    }

    pub fn close(&mut self, now: Time, out: &mut Vec<Verdict>) {
        let cfg = &self.cfg;
        let baseline = &mut self.baseline;
        let secs = cfg.bucket_secs;
        self.win.close(now, |start, _, host, b| {
            let hour = (start.div_euclid(3_600_000_000)).rem_euclid(24) as usize;
            let learned = baseline.get(host).map(|s| s[hour]).filter(|s| s.n >= cfg.min_samples);
            let above_baseline = |x: u64| {
                learned.is_none_or(|s| {
                    let x = x as f64;
                    x > s.mean + cfg.deviations * s.var.sqrt() && x > cfg.factor * s.mean
                })
            };
            let mean = learned.map(|s| format!("{:.0}", s.mean));
            let dev = learned.map(|s| format!("{:.0}", s.var.sqrt()));
            let sources_of = |kind: u8| b.sources.values().filter(|k| *k & kind != 0).count();
            let flood = |key: &'static str, kind: u8, n: u64, ports: Option<(String, Option<String>)>| {
                let (ports, ports_more) = ports.map_or((None, None), |(p, m)| (Some(p), m));
                Summary::en(
                    key,
                    &[
                        ("n", Some(n.to_string())),
                        ("host", Some(host.to_string())),
                        ("ports", ports),
                        ("ports_more", ports_more),
                        ("capped", b.sources_full.then(String::new)),
                        ("sources", Some(sources_of(kind).to_string())),
                        ("secs", Some(secs.to_string())),
                        ("mean", mean.clone()),
                        ("dev", dev.clone()),
                    ],
                )
            };
            let mut found: Vec<(String, Summary, u64)> = Vec::new();
            // Many ports half-open is a scan (the scan model's), not a flood.
            if b.syn_pkts >= cfg.syn_min && b.syn_ports.len() <= 8 && above_baseline(b.total_pkts) {
                let ports: Vec<String> = b.syn_ports.iter().map(u16::to_string).collect();
                found.push((
                    "syn_flood".into(),
                    flood("model.flood.syn", SYN, b.syn_pkts, Some(some_of(&ports, 4))),
                    b.syn_pkts,
                ));
            }
            if b.udp_pkts >= cfg.udp_min && above_baseline(b.total_pkts) {
                found.push(("udp_flood".into(), flood("model.flood.udp", UDP, b.udp_pkts, None), b.udp_pkts));
            }
            if b.icmp_pkts >= cfg.icmp_min && above_baseline(b.total_pkts) {
                found.push(("icmp_flood".into(), flood("model.flood.icmp", ICMP, b.icmp_pkts, None), b.icmp_pkts));
            }
            if b.amp_bytes >= cfg.amplification_bytes_min {
                let ports: Vec<String> =
                    b.amp_ports.iter().map(|(p, n)| format!("udp/{p} {}", human_bytes(*n as f64))).collect();
                found.push((
                    "amplification".into(),
                    {
                        let (ports, ports_more) = some_of(&ports, 4);
                        Summary::en(
                            "model.flood.amplification",
                            &[
                                ("bytes", Some(human_bytes(b.amp_bytes as f64))),
                                ("host", Some(host.to_string())),
                                ("reflectors", Some(b.amp_reflectors.len().to_string())),
                                ("secs", Some(secs.to_string())),
                                ("ports", Some(ports)),
                                ("ports_more", ports_more),
                            ],
                        )
                    },
                    b.amp_pkts,
                ));
            }
            // Learn from quiet buckets only: a flood must not become normal.
            if found.is_empty() && b.total_pkts > 0 {
                if let Some(slots) = baseline.get_mut(host) {
                    learn(&mut slots[hour], b.total_pkts as f64, cfg.alpha);
                } else if baseline.len() < cfg.max_hosts {
                    let mut slots = Box::new([Slot::default(); 24]);
                    learn(&mut slots[hour], b.total_pkts as f64, cfg.alpha);
                    baseline.insert(*host, slots);
                }
            }
            let alerted = !found.is_empty();
            for (kind, summary, n) in found {
                let amp = kind == "amplification";
                out.push(Verdict {
                    model: "flood",
                    first: Time(b.first),
                    last: Time(b.last),
                    orig: None,
                    resp: Some(*host),
                    resp_p: None,
                    summary,
                    matched: vec![
                        format!("kind={kind}"),
                        if amp {
                            format!("reflectors={}", b.amp_reflectors.len())
                        } else {
                            let bit = match kind.as_str() {
                                "syn_flood" => SYN,
                                "udp_flood" => UDP,
                                _ => ICMP,
                            };
                            format!("sources={}{}", if b.sources_full { "over " } else { "" }, sources_of(bit))
                        },
                    ],
                    evidence: b.evidence.clone(),
                    severity: amp.then_some(Severity::High),
                    count: n,
                });
            }
            alerted
        });
    }
}

fn touch(b: &mut Bucket, ts: Time, uid: &Option<String>) {
    if b.first == 0 || ts.0 < b.first {
        b.first = ts.0;
    }
    b.last = b.last.max(ts.0);
    if let Some(u) = uid {
        if b.evidence.len() < 10 {
            b.evidence.push(u.clone());
        }
    }
}

/// Exponentially weighted mean and variance (West's update).
fn learn(s: &mut Slot, x: f64, alpha: f64) {
    if s.n == 0 {
        s.mean = x;
        s.var = 0.0;
    } else {
        let d = x - s.mean;
        s.mean += alpha * d;
        s.var = (1.0 - alpha) * (s.var + alpha * d * d);
    }
    s.n = s.n.saturating_add(1);
}
