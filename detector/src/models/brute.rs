//! Brute force and password spraying: failed logins per source and window,
//! from the records that show them (SSH's authentication guess, HTTP 401s,
//! MQTT CONNACK refusals), and bursts of short sessions on interactive
//! services without an analyzer (Telnet, RDP, VNC). FTP's failed logins
//! are not in ftp.log (Zeek logs only file and data-channel commands), so
//! FTP guessing is not seen here.

use super::config::BruteConfig;
use super::window::Windows;
use super::{human_secs, Fields, ModelCounters, Verdict};
use schema::summary::some_of;
use schema::{Severity, Summary, Time};
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Default)]
struct Target {
    failures: u64,
    successes: u64,
    sessions: u64,
    first: i64,
    last: i64,
}

#[derive(Default)]
pub struct BruteState {
    /// (host, port, service) → tries.
    targets: BTreeMap<(IpAddr, u16, &'static str), Target>,
    /// (host, service, account) → failures.
    accounts: BTreeMap<(IpAddr, &'static str, String), u64>,
    /// (host, port) → short sessions.
    short: BTreeMap<(IpAddr, u16), Target>,
    evidence: Vec<String>,
}

pub struct BruteModel {
    cfg: BruteConfig,
    win: Windows<IpAddr, BruteState>,
}

const EVIDENCE: usize = 10;
const MAX_ITEMS: usize = 4096;

/// One login outcome read from a record.
struct Try {
    service: &'static str,
    failures: u64,
    success: bool,
    account: Option<String>,
}

fn read_try(log: &str, r: &dyn Fields) -> Option<Try> {
    match log {
        "ssh" => {
            let ok = r.flag("auth_success")?;
            let n = r.num("auth_attempts").unwrap_or(1.0).max(1.0) as u64;
            Some(Try { service: "SSH", failures: if ok { n - 1 } else { n }, success: ok, account: None })
        }
        "http" => {
            let code = r.num("status_code")? as u16;
            let account = r.text("username").map(std::borrow::Cow::into_owned);
            match code {
                401 => Some(Try { service: "HTTP", failures: 1, success: false, account }),
                _ if account.is_some() && (200..400).contains(&code) => {
                    Some(Try { service: "HTTP", failures: 0, success: true, account })
                }
                _ => None,
            }
        }
        "mqtt_connect" => {
            let status = r.text("connect_status")?;
            let account = r.text("username").map(std::borrow::Cow::into_owned);
            let ok = status == "Connection Accepted" || status == "Success";
            Some(Try { service: "MQTT", failures: u64::from(!ok), success: ok, account })
        }
        _ => None,
    }
}

impl BruteModel {
    pub fn state_len(&self) -> usize {
        self.win.len()
    }

    pub fn new(cfg: BruteConfig, lateness: i64) -> Self {
        let win = Windows::new(cfg.window_secs, 2, lateness, cfg.max_keys);
        BruteModel { cfg, win }
    }

    fn excluded(&self, ip: &IpAddr) -> bool {
        self.cfg.common.as_ref().is_some_and(|x| x.exclude.contains(ip))
    }

    pub fn observe(&mut self, log: &str, now: Time, ts: Time, r: &dyn Fields, c: &mut ModelCounters) {
        let Some(t) = read_try(log, r) else { return };
        let (Some(src), Some(dst)) = (r.ip("id.orig_h"), r.ip("id.resp_h")) else { return };
        if self.excluded(&src) {
            return;
        }
        let port = r.port("id.resp_p").unwrap_or(0);
        let ev = r.text("uid").map(|u| format!("{log}:{u}"));
        self.win.fold(now, ts, &src, c, |s| {
            if s.targets.len() >= MAX_ITEMS {
                return;
            }
            let tg =
                s.targets.entry((dst, port, t.service)).or_insert_with(|| Target { first: ts.0, ..Default::default() });
            tg.first = tg.first.min(ts.0);
            tg.last = tg.last.max(ts.0);
            tg.failures += t.failures;
            tg.successes += u64::from(t.success);
            tg.sessions += 1;
            if let (Some(a), true) = (&t.account, t.failures > 0) {
                if s.accounts.len() < MAX_ITEMS {
                    *s.accounts.entry((dst, t.service, a.clone())).or_default() += t.failures;
                }
            }
            if let Some(e) = &ev {
                if s.evidence.len() < EVIDENCE && !s.evidence.contains(e) {
                    s.evidence.push(e.clone());
                }
            }
        });
    }

    pub fn observe_conn(&mut self, now: Time, ts: Time, r: &dyn Fields, c: &mut ModelCounters) {
        let Some(port) = r.port("id.resp_p") else { return };
        if !self.cfg.short_session_ports.contains(&port) || r.text("proto").as_deref() != Some("tcp") {
            return;
        }
        // A session: the handshake completed and the client said something.
        let history = r.text("history").unwrap_or_default();
        let dur = r.num("duration").unwrap_or(0.0);
        if !history.contains('h') || r.num("orig_bytes").unwrap_or(0.0) == 0.0 || dur >= self.cfg.short_session_secs {
            return;
        }
        let (Some(src), Some(dst)) = (r.ip("id.orig_h"), r.ip("id.resp_h")) else { return };
        if self.excluded(&src) {
            return;
        }
        let ev = r.text("uid").map(|u| format!("conn:{u}"));
        self.win.fold(now, ts, &src, c, |s| {
            if s.short.len() >= MAX_ITEMS {
                return;
            }
            let tg = s.short.entry((dst, port)).or_insert_with(|| Target { first: ts.0, ..Default::default() });
            tg.first = tg.first.min(ts.0);
            tg.last = tg.last.max(ts.0);
            tg.sessions += 1;
            if let Some(e) = &ev {
                if s.evidence.len() < EVIDENCE {
                    s.evidence.push(e.clone());
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

fn judge(cfg: &BruteConfig, src: IpAddr, s: &BruteState, out: &mut Vec<Verdict>) {
    let verdict =
        |first: i64, last: i64, resp: Option<(IpAddr, u16)>, summary: Summary, matched: Vec<String>, n: u64| Verdict {
            model: "brute",
            first: Time(first),
            last: Time(last),
            orig: Some(src),
            resp: resp.map(|r| r.0),
            resp_p: resp.map(|r| r.1),
            summary,
            matched,
            evidence: s.evidence.clone(),
            severity: None,
            count: n,
        };
    for ((dst, port, service), t) in &s.targets {
        if t.failures < cfg.failures {
            continue;
        }
        let took = human_secs(t.last.saturating_sub(t.first) as f64 / 1e6);
        let key = if t.successes > 0 { "model.brute.succeeded" } else { "model.brute.failed" };
        let summary = Summary::en(
            key,
            &[
                ("failures", Some(t.failures.to_string())),
                ("service", Some(service.to_string())),
                ("src", Some(src.to_string())),
                ("dst", Some(dst.to_string())),
                ("port", Some(port.to_string())),
                ("took", Some(took)),
                ("sessions", Some(t.sessions.to_string())),
            ],
        );
        let matched = vec![
            "kind=brute_force".into(),
            format!("service={service}"),
            format!("failures={}", t.failures),
            format!("successes={}", t.successes),
        ];
        let mut v = verdict(t.first, t.last, Some((*dst, *port)), summary, matched, t.failures);
        if t.successes > 0 {
            v.severity = Some(Severity::Critical);
        }
        out.push(v);
    }
    // Spraying: many accounts, few tries each, so no single account trips
    // a lockout.
    let few: Vec<_> = s.accounts.iter().filter(|(_, n)| **n <= 3).collect();
    if few.len() >= cfg.spray_accounts {
        let hosts: std::collections::BTreeSet<IpAddr> = few.iter().map(|((h, _, _), _)| *h).collect();
        let services: std::collections::BTreeSet<&str> = few.iter().map(|((_, sv, _), _)| *sv).collect();
        let names: Vec<&str> = few.iter().map(|((_, _, a), _)| a.as_str()).collect();
        let (first, last) = s.targets.values().fold((i64::MAX, i64::MIN), |(a, b), t| (a.min(t.first), b.max(t.last)));
        let (services, services_more) = some_of(&services, 4);
        let (names, names_more) = some_of(&names, 6);
        let summary = Summary::en(
            "model.brute.spraying",
            &[
                ("src", Some(src.to_string())),
                ("accounts", Some(few.len().to_string())),
                ("hosts", Some(hosts.len().to_string())),
                ("services", Some(services)),
                ("services_more", services_more),
                ("names", Some(names)),
                ("names_more", names_more),
            ],
        );
        let matched = vec!["kind=spraying".into(), format!("accounts={}", few.len()), format!("hosts={}", hosts.len())];
        let resp = if hosts.len() == 1 { hosts.iter().next().map(|h| (*h, 0)) } else { None };
        let mut v = verdict(first, last, resp, summary, matched, few.len() as u64);
        v.resp_p = None;
        out.push(v);
    }
    for ((dst, port), t) in &s.short {
        if t.sessions < cfg.short_sessions {
            continue;
        }
        let took = human_secs(t.last.saturating_sub(t.first) as f64 / 1e6);
        let summary = Summary::en(
            "model.brute.short_sessions",
            &[
                ("sessions", Some(t.sessions.to_string())),
                ("limit", Some(cfg.short_session_secs.to_string())),
                ("src", Some(src.to_string())),
                ("dst", Some(dst.to_string())),
                ("port", Some(port.to_string())),
                ("took", Some(took)),
            ],
        );
        let matched = vec!["kind=short_sessions".into(), format!("port={port}"), format!("sessions={}", t.sessions)];
        out.push(verdict(t.first, t.last, Some((*dst, *port)), summary, matched, t.sessions));
    }
}
