//! Horizontal and vertical scans and ICMP sweeps: per source and window,
//! the distinct targets of probes, connections that carried no payload
//! either way (refused, unanswered, or opened and dropped).

use super::config::ScanConfig;
use super::window::Windows;
use super::{human_secs, Fields, ModelCounters, Verdict};
use schema::summary::some_of;
use schema::{Summary, Time};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

#[derive(Default)]
pub struct ScanState {
    first: i64,
    last: i64,
    /// (host, proto, port) probed.
    probes: BTreeSet<(IpAddr, &'static str, u16)>,
    /// Probes that found the port open (a SYN-ACK or a UDP reply).
    open: BTreeSet<(IpAddr, &'static str, u16)>,
    icmp: BTreeSet<IpAddr>,
    evidence: Vec<String>,
    full: bool,
}

pub struct ScanModel {
    cfg: ScanConfig,
    win: Windows<IpAddr, ScanState>,
}

const EVIDENCE: usize = 10;

fn proto_of(p: &str) -> &'static str {
    match p {
        "tcp" => "tcp",
        "udp" => "udp",
        _ => "icmp",
    }
}

impl ScanModel {
    pub fn state_len(&self) -> usize {
        self.win.len()
    }

    pub fn new(cfg: ScanConfig, lateness: i64) -> Self {
        let win = Windows::new(cfg.window_secs, 2, lateness, cfg.max_sources);
        ScanModel { cfg, win }
    }

    pub fn observe(&mut self, now: Time, ts: Time, r: &dyn Fields, c: &mut ModelCounters) {
        let Some(proto) = r.text("proto") else { return };
        // A flow whose originator sent nothing was turned around by a
        // service port (replies flooding a victim): not a probe by it.
        if r.num("orig_pkts") == Some(0.0) {
            return;
        }
        let ob = r.num("orig_bytes").unwrap_or(0.0);
        let rb = r.num("resp_bytes").unwrap_or(0.0);
        let state = r.text("conn_state").unwrap_or_default();
        let history = r.text("history").unwrap_or_default();
        let port = r.port("id.resp_p").unwrap_or(0);
        let proto = proto_of(&proto);
        // What a probe is, per protocol: no payload on TCP; a small datagram
        // nobody answered on UDP (closed ports answer with ICMP, a flow of
        // its own); an echo request on ICMP (v4 type 8, v6 type 128).
        let (probe, open, echo) = match proto {
            "tcp" => (ob == 0.0 && rb == 0.0, history.contains('h'), false),
            "udp" => (ob <= 64.0 && state == "S0", false, false),
            _ => (false, false, matches!(r.port("id.orig_p"), Some(8 | 128))),
        };
        if !probe && !echo {
            return;
        }
        let (Some(src), Some(dst)) = (r.ip("id.orig_h"), r.ip("id.resp_h")) else { return };
        if self.cfg.common.as_ref().is_some_and(|x| x.exclude.contains(&src)) {
            return;
        }
        let max = self.cfg.max_probes;
        let uid = r.text("uid");
        self.win.fold(now, ts, &src, c, |s| {
            if s.first == 0 || ts.0 < s.first {
                s.first = ts.0;
            }
            s.last = s.last.max(ts.0);
            if echo {
                if s.icmp.len() < max {
                    s.icmp.insert(dst);
                }
            } else if s.probes.len() < max {
                s.probes.insert((dst, proto, port));
                if open {
                    s.open.insert((dst, proto, port));
                }
            } else {
                s.full = true;
            }
            if let Some(u) = &uid {
                if s.evidence.len() < EVIDENCE {
                    s.evidence.push(format!("conn:{u}"));
                }
            }
        });
    }

    pub fn close(&mut self, now: Time, out: &mut Vec<Verdict>) {
        let cfg = &self.cfg;
        self.win.close(now, |_, _, src, s| {
            let n = out.len();
            judge(cfg, *src, &s, out);
            out.len() > n
        });
    }
}

fn judge(cfg: &ScanConfig, src: IpAddr, s: &ScanState, out: &mut Vec<Verdict>) {
    let took = human_secs(s.last.saturating_sub(s.first) as f64 / 1e6);
    let capped = s.full.then(String::new);
    let base = |summary: Summary, resp: Option<IpAddr>, matched: Vec<String>, count: usize| Verdict {
        model: "scan",
        first: Time(s.first),
        last: Time(s.last),
        orig: Some(src),
        resp,
        resp_p: None,
        summary,
        matched,
        evidence: s.evidence.clone(),
        severity: None,
        count: count as u64,
    };
    let mut per_host: BTreeMap<IpAddr, Vec<(&str, u16)>> = BTreeMap::new();
    for (h, p, port) in &s.probes {
        per_host.entry(*h).or_default().push((p, *port));
    }
    if let Some((host, ports)) = per_host.iter().max_by_key(|(h, v)| (v.len(), std::cmp::Reverse(**h))) {
        if ports.len() >= cfg.vertical_ports {
            let open: Vec<String> =
                s.open.iter().filter(|(h, _, _)| h == host).map(|(_, p, port)| format!("{p}/{port}")).collect();
            let lo = ports.iter().map(|x| x.1).min().unwrap_or(0);
            let hi = ports.iter().map(|x| x.1).max().unwrap_or(0);
            let (open_list, open_more) = some_of(&open, 10);
            let summary = Summary::en(
                "model.scan.vertical",
                &[
                    ("src", Some(src.to_string())),
                    ("capped", capped.clone()),
                    ("ports", Some(ports.len().to_string())),
                    ("host", Some(host.to_string())),
                    ("took", Some(took.clone())),
                    ("lo", Some(lo.to_string())),
                    ("hi", Some(hi.to_string())),
                    ("none", open.is_empty().then(String::new)),
                    ("open", (!open.is_empty()).then_some(open_list)),
                    ("open_more", open_more),
                ],
            );
            let matched =
                vec!["kind=vertical".into(), format!("ports={}", ports.len()), format!("open={}", open.len())];
            out.push(base(summary, Some(*host), matched, ports.len()));
        }
    }
    if per_host.len() >= cfg.horizontal_hosts {
        let mut by_port: BTreeMap<(&str, u16), usize> = BTreeMap::new();
        for (_, p, port) in &s.probes {
            *by_port.entry((p, *port)).or_default() += 1;
        }
        let mut top: Vec<_> = by_port.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let ports: Vec<String> = top.iter().map(|((p, port), n)| format!("{p}/{port} ({n} hosts)")).collect();
        let answered = s.open.iter().map(|x| x.0).collect::<BTreeSet<_>>().len();
        let (ports, ports_more) = some_of(&ports, 5);
        let summary = Summary::en(
            "model.scan.horizontal",
            &[
                ("src", Some(src.to_string())),
                ("capped", capped.clone()),
                ("hosts", Some(per_host.len().to_string())),
                ("took", Some(took.clone())),
                ("ports", Some(ports)),
                ("ports_more", ports_more),
                ("answered", Some(answered.to_string())),
            ],
        );
        let matched = vec!["kind=horizontal".into(), format!("hosts={}", per_host.len()), format!("open={answered}")];
        out.push(base(summary, None, matched, per_host.len()));
    }
    if s.icmp.len() >= cfg.sweep_hosts {
        let lo = s.icmp.iter().next().map(|h| h.to_string()).unwrap_or_default();
        let hi = s.icmp.iter().next_back().map(|h| h.to_string()).unwrap_or_default();
        let summary = Summary::en(
            "model.scan.icmp_sweep",
            &[
                ("src", Some(src.to_string())),
                ("capped", capped),
                ("hosts", Some(s.icmp.len().to_string())),
                ("lo", Some(lo)),
                ("hi", Some(hi)),
                ("took", Some(took)),
            ],
        );
        let matched = vec!["kind=icmp_sweep".into(), format!("hosts={}", s.icmp.len())];
        out.push(base(summary, None, matched, s.icmp.len()));
    }
}
