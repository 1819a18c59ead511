//! C2 beaconing, scored per (source, destination, port) in the manner of
//! RITA: regular intervals (Bowley skewness and median absolute deviation
//! of the gaps), steady coverage of the time span, and regular sizes.
//!
//! A single connection open for `long_connection_secs` or more is raised
//! too: a channel that stays open needs no check-ins.
//!
//! Pairs are scored every `score_every_secs` of record time on the
//! connections that started before the record clock minus the lateness
//! bound, so live and hunting runs score the same connections.

use super::config::BeaconConfig;
use super::{human_bytes, human_secs, Fields, ModelCounters, Verdict};
use schema::{Summary, Time};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

type Pair = (IpAddr, IpAddr, u16);

#[derive(Default)]
struct History {
    /// (start, bytes sent by the source), in arrival order.
    conns: Vec<(i64, u64)>,
    uids: Vec<String>,
    dirty: bool,
    alerted: bool,
}

pub struct BeaconModel {
    cfg: BeaconConfig,
    lateness: i64,
    pairs: BTreeMap<Pair, History>,
    /// (client, address) → the name the client looked up for it.
    names: HashMap<(IpAddr, IpAddr), String>,
    scored_at: i64,
}

const MAX_NAMES: usize = 100_000;

/// Figures of one scored pair.
#[derive(Debug, Clone, Copy)]
pub struct Score {
    pub n: usize,
    pub span: f64,
    pub interval: f64,
    pub interval_dev: f64,
    pub bytes: f64,
    pub bytes_dev: f64,
    pub timing: f64,
    pub size: f64,
    pub total: f64,
}

fn quartiles(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let i = p * (v.len() - 1) as f64;
        let (lo, hi) = (i.floor() as usize, i.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (i - lo as f64)
    };
    (q(0.25), q(0.5), q(0.75))
}

fn bowley(q1: f64, q2: f64, q3: f64) -> f64 {
    // A spread this tight has no shape worth measuring: jitter of a
    // second on a minute must not read as skew.
    if q3 - q1 < 1e-9 || q3 - q1 < 0.05 * q2.abs() {
        0.0
    } else {
        (q1 + q3 - 2.0 * q2) / (q3 - q1)
    }
}

fn mad(v: &[f64], m: f64) -> f64 {
    let mut d: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    quartiles(&mut d).1
}

/// Scores start times (µs) and sizes; `None` with fewer than three.
pub fn score(conns: &[(i64, u64)]) -> Option<Score> {
    if conns.len() < 3 {
        return None;
    }
    let mut c = conns.to_vec();
    c.sort_unstable();
    let span = c[c.len() - 1].0.saturating_sub(c[0].0) as f64 / 1e6;
    let mut gaps: Vec<f64> = c.windows(2).map(|w| w[1].0.saturating_sub(w[0].0) as f64 / 1e6).collect();
    let (g1, g2, g3) = quartiles(&mut gaps);
    let gmad = mad(&gaps, g2);
    let skew_t = 1.0 - bowley(g1, g2, g3).abs();
    let mad_t = if g2 > 0.0 { 1.0 - (gmad / g2).min(1.0) } else { 0.0 };
    // Steady over the span: the gaps a regular beacon would need to fill
    // it, against the gaps there are.
    let coverage = if g2 > 0.0 { (gaps.len() as f64 / (span / g2)).min(1.0) } else { 0.0 };
    let timing = (skew_t + mad_t + coverage) / 3.0;
    let mut sizes: Vec<f64> = c.iter().map(|x| x.1 as f64).collect();
    let (s1, s2, s3) = quartiles(&mut sizes);
    let smad = mad(&sizes, s2);
    let size = ((1.0 - bowley(s1, s2, s3).abs()) + (1.0 - (smad / s2.max(32.0)).min(1.0))) / 2.0;
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let dev = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
    let bmean = sizes.iter().sum::<f64>() / sizes.len() as f64;
    let bdev = (sizes.iter().map(|b| (b - bmean).powi(2)).sum::<f64>() / sizes.len() as f64).sqrt();
    Some(Score {
        n: c.len(),
        span,
        interval: mean,
        interval_dev: dev,
        bytes: s2,
        bytes_dev: bdev,
        timing,
        size,
        total: (timing + size) / 2.0,
    })
}

impl BeaconModel {
    pub fn state_len(&self) -> usize {
        self.pairs.len() + self.names.len()
    }

    pub fn new(cfg: BeaconConfig, lateness: i64) -> Self {
        BeaconModel { cfg, lateness, pairs: BTreeMap::new(), names: HashMap::new(), scored_at: i64::MIN }
    }

    pub fn observe_dns(&mut self, r: &dyn Fields) {
        let (Some(client), Some(q)) = (r.ip("id.orig_h"), r.text("query")) else { return };
        for a in r.texts("answers") {
            if let Ok(ip) = a.parse::<IpAddr>() {
                if self.names.len() < MAX_NAMES || self.names.contains_key(&(client, ip)) {
                    self.names.insert((client, ip), q.to_string());
                }
            }
        }
    }

    pub fn observe(&mut self, now: Time, ts: Time, r: &dyn Fields, c: &mut ModelCounters, out: &mut Vec<Verdict>) {
        let (Some(src), Some(dst), Some(port)) = (r.ip("id.orig_h"), r.ip("id.resp_h"), r.port("id.resp_p")) else {
            return;
        };
        let proto = r.text("proto").unwrap_or_default();
        if !(proto == "tcp" || proto == "udp")
            || self.cfg.ignore_ports.contains(&port)
            || (!self.cfg.include_local && r.flag("local_resp") == Some(true))
            || self.cfg.ignored.contains(&dst)
            || self.cfg.common.as_ref().is_some_and(|x| x.exclude.contains(&src))
        {
            return;
        }
        let duration = r.num("duration").unwrap_or(0.0);
        let long = self.cfg.long_connection_secs;
        if long > 0 && duration >= long as f64 {
            let name = self.names.get(&(src, dst)).map(|n| n.to_string());
            let (ob, rb) = (r.num("orig_bytes").unwrap_or(0.0), r.num("resp_bytes").unwrap_or(0.0));
            let end = Time(ts.0.saturating_add((duration * 1e6) as i64));
            out.push(Verdict {
                model: "beacon",
                first: ts,
                last: end,
                orig: Some(src),
                resp: Some(dst),
                resp_p: Some(port),
                summary: Summary::en(
                    "model.beacon.long",
                    &[
                        ("src", Some(src.to_string())),
                        ("dst", Some(dst.to_string())),
                        ("port", Some(port.to_string())),
                        ("name", name),
                        ("duration", Some(human_secs(duration))),
                        ("sent", Some(human_bytes(ob))),
                        ("received", Some(human_bytes(rb))),
                    ],
                ),
                matched: vec!["kind=long_connection".into(), format!("duration={duration:.0}")],
                evidence: r.text("uid").map(|u| vec![format!("conn:{u}")]).unwrap_or_default(),
                severity: None,
                count: 1,
            });
        }
        let key = (src, dst, port);
        if !self.pairs.contains_key(&key) && self.pairs.len() >= self.cfg.max_pairs {
            c.state_full += 1;
            return;
        }
        let h = self.pairs.entry(key).or_default();
        if h.alerted {
            return;
        }
        let bytes = r.num("orig_bytes").unwrap_or(0.0).max(0.0) as u64;
        if h.conns.len() >= self.cfg.max_connections {
            h.conns.sort_unstable();
            h.conns.remove(0);
        }
        h.conns.push((ts.0, bytes));
        if let Some(u) = r.text("uid") {
            if h.uids.len() < 10 {
                h.uids.push(format!("conn:{u}"));
            }
        }
        h.dirty = true;
        self.close(now, out);
    }

    fn score_all(&mut self, cut: i64, out: &mut Vec<Verdict>) {
        let cfg = &self.cfg;
        for (&(src, dst, port), h) in self.pairs.iter_mut() {
            if !h.dirty || h.alerted {
                continue;
            }
            let ready: Vec<(i64, u64)> = h.conns.iter().copied().filter(|c| c.0 <= cut).collect();
            if ready.len() == h.conns.len() {
                h.dirty = false;
            }
            if ready.len() < cfg.min_connections {
                continue;
            }
            let Some(s) = score(&ready) else { continue };
            if s.span < cfg.min_span_secs as f64 || s.bytes > cfg.max_median_bytes as f64 || s.total < cfg.threshold {
                continue;
            }
            h.alerted = true;
            h.conns = Vec::new();
            let name = self.names.get(&(src, dst)).map(|n| n.to_string());
            let first = ready.iter().map(|c| c.0).min().unwrap_or(0);
            let last = ready.iter().map(|c| c.0).max().unwrap_or(0);
            let summary = Summary::en(
                "model.beacon.periodic",
                &[
                    ("src", Some(src.to_string())),
                    ("dst", Some(dst.to_string())),
                    ("port", Some(port.to_string())),
                    ("name", name),
                    ("interval", Some(format!("{:.1}", s.interval))),
                    ("interval_dev", Some(format!("{:.1}", s.interval_dev))),
                    ("n", Some(s.n.to_string())),
                    ("span", Some(human_secs(s.span))),
                    ("bytes", Some(human_bytes(s.bytes))),
                    ("bytes_dev", Some(human_bytes(s.bytes_dev))),
                    ("score", Some(format!("{:.2}", s.total))),
                    ("timing", Some(format!("{:.2}", s.timing))),
                    ("size", Some(format!("{:.2}", s.size))),
                ],
            );
            let matched = vec![
                format!("score={:.2}", s.total),
                format!("interval={:.1}", s.interval),
                format!("interval_dev={:.1}", s.interval_dev),
                format!("connections={}", s.n),
                format!("median_bytes={:.0}", s.bytes),
            ];
            out.push(Verdict {
                model: "beacon",
                first: Time(first),
                last: Time(last),
                orig: Some(src),
                resp: Some(dst),
                resp_p: Some(port),
                summary,
                matched,
                evidence: std::mem::take(&mut h.uids),
                severity: None,
                count: s.n as u64,
            });
        }
        // Pairs that cannot reach the minimum are dropped when memory is
        // short: the oldest single connections go first.
        if self.pairs.len() >= cfg.max_pairs {
            self.pairs.retain(|_, h| h.alerted || h.conns.len() > 1);
        }
    }

    /// Scores at each `score_every_secs` boundary of the record clock (and
    /// once more at the end of input, `Time(i64::MAX)`).
    pub fn close(&mut self, now: Time, out: &mut Vec<Verdict>) {
        if now.0 == i64::MAX {
            self.score_all(i64::MAX, out);
            return;
        }
        let every = self.cfg.score_every_secs.max(1) as i64 * 1_000_000;
        let slot = now.0.div_euclid(every) * every;
        if slot > self.scored_at {
            self.scored_at = slot;
            self.score_all(slot.saturating_sub(self.lateness), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_beacons_score_high_and_irregular_traffic_low() {
        let beacon: Vec<(i64, u64)> =
            (0..60).map(|i| (i * 60_000_000 + (i * 7919 % 2000) * 1000, 312 + (i % 3) as u64)).collect();
        let s = score(&beacon).unwrap();
        assert!(s.total > 0.9, "{s:?}");
        assert!((s.interval - 60.0).abs() < 1.0, "{s:?}");
        // Browsing: bursts and long pauses, sizes all over the place.
        let mut t = 0i64;
        let human: Vec<(i64, u64)> = (0..60u64)
            .map(|i| {
                t += if i % 7 == 0 { 900_000_000 } else { ((i * 37) % 11 + 1) as i64 * 2_000_000 };
                (t, 200 + (i * 7333) % 40_000)
            })
            .collect();
        let h = score(&human).unwrap();
        assert!(h.total < 0.7, "{h:?}");
    }
}
