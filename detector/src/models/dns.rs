//! DNS tunnelling and DGAs. Tunnels: one client asking many unique, long,
//! high-entropy subdomains of one registered domain, or a stream of TXT/NULL
//! queries. DGAs: one client told NXDOMAIN for many registered domains
//! whose names look machine-made; plain NXDOMAIN bursts too.

use super::config::DnsConfig;
use super::window::Windows;
use super::{Fields, ModelCounters, Verdict};
use publicsuffix::{List, Psl};
use schema::summary::some_of;
use schema::Summary;
use schema::Time;
use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read;
use std::net::IpAddr;

const SUFFIX_LIST_GZ: &[u8] = include_bytes!("../../data/public_suffix_list.dat.gz");

/// The shipped Public Suffix List, parsed.
pub fn shipped_suffix_list() -> List {
    let mut text = String::new();
    let mut gz = flate2::read::GzDecoder::new(SUFFIX_LIST_GZ);
    // The file is part of the build and checked by a test.
    if gz.read_to_string(&mut text).is_err() {
        return List::default();
    }
    text.parse().unwrap_or_default()
}

#[derive(Default)]
pub struct TunnelState {
    domain: String,
    first: i64,
    last: i64,
    unique: BTreeSet<u64>,
    len_sum: f64,
    entropy_sum: f64,
    queries: u64,
    txt: u64,
    examples: Vec<String>,
    evidence: Vec<String>,
}

#[derive(Default)]
pub struct NxState {
    first: i64,
    last: i64,
    nx: u64,
    domains: BTreeSet<String>,
    random: usize,
    examples: Vec<String>,
    evidence: Vec<String>,
}

pub struct DnsModel {
    cfg: DnsConfig,
    psl: List,
    /// Keyed by client and a hash of the registered domain (kept in the state).
    tunnels: Windows<(IpAddr, u64), TunnelState>,
    nx: Windows<IpAddr, NxState>,
    /// Recent names already split: resolvers ask the same names over and
    /// over, and the suffix lookup is the model's largest cost.
    splits: ahash::AHashMap<String, Option<(String, String, bool)>>,
}

const SPLIT_CACHE: usize = 8192;

const EVIDENCE: usize = 10;

/// Shannon entropy in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in s.bytes().filter(|b| *b != b'.') {
        counts[b as usize] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    counts.iter().filter(|c| **c > 0).map(|c| f64::from(*c) / n).map(|p| -p * p.log2()).sum()
}

/// Whether a domain label looks machine-made: long, few vowels or many
/// digits, or long consonant runs, and not repetitive. Dictionary-word
/// DGAs pass as human; the book says so (docs/src/detection/models.md).
pub fn looks_random(label: &str) -> bool {
    let l = label.to_ascii_lowercase();
    let n = l.len();
    if n < 8 {
        return false;
    }
    let vowels = l.bytes().filter(|b| b"aeiou".contains(b)).count() as f64 / n as f64;
    let digits = l.bytes().filter(u8::is_ascii_digit).count() as f64 / n as f64;
    let mut run = 0usize;
    let mut longest = 0usize;
    for b in l.bytes() {
        if b.is_ascii_alphabetic() && !b"aeiouy".contains(&b) {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    entropy(&l) >= 2.8 && (vowels < 0.22 || (digits > 0.25 && digits < 0.8) || longest >= 5)
}

impl DnsModel {
    pub fn state_len(&self) -> usize {
        self.tunnels.len() + self.nx.len()
    }

    pub fn new(cfg: DnsConfig, lateness: i64) -> Self {
        DnsModel {
            tunnels: Windows::new(cfg.window_secs, 2, lateness, cfg.max_keys),
            nx: Windows::new(cfg.window_secs, 2, lateness, cfg.max_keys),
            psl: shipped_suffix_list(),
            splits: ahash::AHashMap::new(),
            cfg,
        }
    }

    /// `(registered domain, the labels in front of it, whether the suffix
    /// is one the list names)`. Unlisted suffixes follow the list's `*`
    /// rule (the last label); single labels (`wpad`) have none.
    pub fn split(&self, name: &str) -> Option<(String, String, bool)> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let d = self.psl.domain(name.as_bytes())?;
        let reg = std::str::from_utf8(d.as_bytes()).ok()?.to_string();
        let sub = name.strip_suffix(&reg).unwrap_or("").trim_end_matches('.').to_string();
        Some((reg, sub, d.suffix().is_known()))
    }

    pub fn observe(&mut self, now: Time, ts: Time, r: &dyn Fields, c: &mut ModelCounters) {
        let (Some(client), Some(q)) = (r.ip("id.orig_h"), r.text("query")) else { return };
        if self.cfg.common.as_ref().is_some_and(|x| x.exclude.contains(&client)) {
            return;
        }
        let split = match self.splits.get(q.as_ref()) {
            Some(s) => s.clone(),
            None => {
                let s = self.split(&q);
                if self.splits.len() >= SPLIT_CACHE {
                    self.splits.clear();
                }
                self.splits.insert(q.to_string(), s.clone());
                s
            }
        };
        let Some((reg, sub, listed)) = split else { return };
        let txt = matches!(r.text("qtype_name").as_deref(), Some("TXT" | "NULL"));
        let uid = r.text("uid").map(|u| format!("dns:{u}"));
        let max = self.cfg.max_names;
        if !sub.is_empty() || txt {
            let mut h = DefaultHasher::new();
            sub.hash(&mut h);
            let hash = h.finish();
            let mut h = DefaultHasher::new();
            reg.hash(&mut h);
            self.tunnels.fold(now, ts, &(client, h.finish()), c, |s| {
                if s.domain.is_empty() {
                    s.domain.clone_from(&reg);
                }
                if s.first == 0 || ts.0 < s.first {
                    s.first = ts.0;
                }
                s.last = s.last.max(ts.0);
                s.queries += 1;
                s.txt += u64::from(txt);
                if !sub.is_empty() && s.unique.len() < max && s.unique.insert(hash) {
                    s.len_sum += sub.len() as f64;
                    s.entropy_sum += entropy(&sub);
                    if s.examples.len() < 3 {
                        s.examples.push(q.to_string());
                    }
                }
                if let Some(u) = &uid {
                    if s.evidence.len() < EVIDENCE {
                        s.evidence.push(u.clone());
                    }
                }
            });
        }
        if r.text("rcode_name").as_deref() == Some("NXDOMAIN") {
            // A generated name must look random under a real suffix;
            // anything else (a typo under `.local`) only counts as NXDOMAIN.
            let label = reg.split('.').next().unwrap_or("").to_string();
            let random = listed && looks_random(&label);
            self.nx.fold(now, ts, &client, c, |s| {
                if s.first == 0 || ts.0 < s.first {
                    s.first = ts.0;
                }
                s.last = s.last.max(ts.0);
                s.nx += 1;
                if s.domains.len() < max && s.domains.insert(reg.clone()) {
                    s.random += usize::from(random);
                    if random && s.examples.len() < 5 {
                        s.examples.push(reg.clone());
                    }
                }
                if let Some(u) = &uid {
                    if s.evidence.len() < EVIDENCE {
                        s.evidence.push(u.clone());
                    }
                }
            });
        }
    }

    pub fn close(&mut self, now: Time, out: &mut Vec<Verdict>) {
        let cfg = &self.cfg;
        self.tunnels.close(now, |_, _, (client, _), s| {
            let reg = &s.domain;
            let n = s.unique.len();
            let mean_len = if n > 0 { s.len_sum / n as f64 } else { 0.0 };
            let mean_ent = if n > 0 { s.entropy_sum / n as f64 } else { 0.0 };
            let tunnel =
                n >= cfg.tunnel_subdomains && mean_len >= cfg.tunnel_min_length && mean_ent >= cfg.tunnel_min_entropy;
            let txt = s.txt >= cfg.txt_queries;
            if !tunnel && !txt {
                return false;
            }
            let secs = s.last.saturating_sub(s.first) as f64 / 1e6;
            let (examples, examples_more) = some_of(&s.examples, 2);
            let summary = Summary::en(
                "model.dns.tunnel",
                &[
                    ("client", Some(client.to_string())),
                    ("n", Some(n.to_string())),
                    ("domain", Some(reg.to_string())),
                    ("took", Some(super::human_secs(secs))),
                    ("length", Some(format!("{mean_len:.0}"))),
                    ("entropy", Some(format!("{mean_ent:.1}"))),
                    ("txt", Some(s.txt.to_string())),
                    ("queries", Some(s.queries.to_string())),
                    ("examples", Some(examples)),
                    ("examples_more", examples_more),
                ],
            );
            let matched = vec![
                format!("kind={}", if tunnel { "tunnel" } else { "txt_volume" }),
                format!("domain={reg}"),
                format!("unique_subdomains={n}"),
                format!("mean_length={mean_len:.1}"),
                format!("mean_entropy={mean_ent:.2}"),
                format!("txt_null={}", s.txt),
            ];
            out.push(Verdict {
                model: "dns",
                first: Time(s.first),
                last: Time(s.last),
                orig: Some(*client),
                resp: None,
                resp_p: None,
                summary,
                matched,
                evidence: s.evidence,
                severity: None,
                count: s.queries,
            });
            true
        });
        self.nx.close(now, |_, _, client, s| {
            let d = s.domains.len();
            let share = if d > 0 { s.random as f64 / d as f64 } else { 0.0 };
            let dga = d >= cfg.dga_nx_domains && share >= cfg.dga_random_share;
            let burst = s.nx >= cfg.nx_burst;
            if !dga && !burst {
                return false;
            }
            let secs = s.last.saturating_sub(s.first) as f64 / 1e6;
            let summary = if dga {
                let (examples, examples_more) = some_of(&s.examples, 3);
                Summary::en(
                    "model.dns.dga",
                    &[
                        ("client", Some(client.to_string())),
                        ("domains", Some(d.to_string())),
                        ("took", Some(super::human_secs(secs))),
                        ("share", Some(format!("{:.0}", share * 100.0))),
                        ("examples", Some(examples)),
                        ("examples_more", examples_more),
                    ],
                )
            } else {
                Summary::en(
                    "model.dns.nxdomain_burst",
                    &[
                        ("client", Some(client.to_string())),
                        ("nx", Some(s.nx.to_string())),
                        ("domains", Some(d.to_string())),
                        ("took", Some(super::human_secs(secs))),
                    ],
                )
            };
            let matched = vec![
                format!("kind={}", if dga { "dga" } else { "nxdomain_burst" }),
                format!("nxdomain={}", s.nx),
                format!("domains={d}"),
                format!("random_share={share:.2}"),
            ];
            out.push(Verdict {
                model: "dns",
                first: Time(s.first),
                last: Time(s.last),
                orig: Some(*client),
                resp: None,
                resp_p: None,
                summary,
                matched,
                evidence: s.evidence,
                severity: None,
                count: s.nx,
            });
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_domains_and_randomness() {
        let m = DnsModel::new(DnsConfig::default(), 0);
        assert_eq!(m.split("a1b2.t.exfil.example.co.uk."), Some(("example.co.uk".into(), "a1b2.t.exfil".into(), true)));
        assert_eq!(m.split("www.city.gov.vn"), Some(("city.gov.vn".into(), "www".into(), true)));
        assert_eq!(m.split("x.t.exfil.example"), Some(("exfil.example".into(), "x.t".into(), false)));
        assert_eq!(m.split("wpad"), None);
        for r in ["xkqjwzplmv", "kqlxtqptsmys", "a8f3k2m9q1z7"] {
            assert!(looks_random(r), "{r}");
        }
        for h in ["facebook", "wikipedia", "hochiminhcity", "google", "thanhphohcm", "weatherforecast"] {
            assert!(!looks_random(h), "{h}");
        }
        assert!(entropy("aaaa") < 0.01 && entropy("abcd") > 1.99);
    }
}
