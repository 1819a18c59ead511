//! Detection throughput, our engine against sigma-rust's evaluator in the
//! same run: records/s with 50 and 500 Sigma rules, correlation events/s,
//! YARA-X MB/s over HTTP bodies.
//!
//! `cargo bench -p detector --bench detect` runs the full measurement;
//! without `--bench` (as `cargo test` runs it) it does a quick pass that
//! only checks the harness. `CITYSOC_BENCH_SIGMA=<dir>` adds a run over a
//! folder of real rules (a SigmaHQ checkout), `CITYSOC_BENCH_YARA=<dir>` one
//! over a folder of YARA rules.

use detector::sigma::correlation::{CorrelationConfig, CorrelationEngine};
use detector::sigma::engine::{Evaluator, RuleHit};
use detector::sigma::mapping::Mapping;
use detector::sigma::{load, load_text, SigmaOptions, SigmaSet};
use detector::yara::{YaraHit, YaraScanner};
use schema::{ConnRecord, DnsRecord, Event, FlowUid, HttpRecord, Time};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Instant;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[(self.next() % v.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &[
    "api", "status", "login", "admin", "images", "static", "news", "search", "levels", "camera", "upload", "config",
    "index", "report", "map", "station", "sensor", "gate", "pump", "light", "traffic", "water", "v1", "v2", "data",
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "pump-ctl/2.1",
    "curl/8.5.0",
    "python-requests/2.31",
];

/// A mix shaped like a city's: half conn, a quarter DNS, a quarter HTTP.
fn records(n: usize) -> Vec<Event> {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let orig = format!("10.{}.{}.{}", r.next() % 8, r.next() % 250, r.next() % 250).parse().unwrap();
        let resp = format!("10.{}.0.{}", r.next() % 8, r.next() % 250).parse().unwrap();
        let ts = Time(1_700_000_000_000_000 + i as i64 * 1000);
        let uid = FlowUid::new(r.next() as u128);
        let ev = match i % 4 {
            0 => {
                let uri = format!(
                    "/{}/{}/{}?id={}&q={}",
                    r.pick(WORDS),
                    r.pick(WORDS),
                    r.pick(WORDS),
                    r.next() % 10_000,
                    r.pick(WORDS)
                );
                Event::Http(HttpRecord {
                    ts,
                    uid,
                    orig_h: orig,
                    orig_p: 40000,
                    resp_h: resp,
                    resp_p: 80,
                    trans_depth: 1,
                    method: Some(if r.next().is_multiple_of(5) { "POST" } else { "GET" }.into()),
                    host: Some(format!("{}.city.example", r.pick(WORDS))),
                    uri: Some(uri),
                    referrer: None,
                    version: Some("1.1".into()),
                    user_agent: Some(r.pick(AGENTS).into()),
                    origin: None,
                    request_body_len: 0,
                    response_body_len: r.next() % 50_000,
                    status_code: Some(200),
                    status_msg: Some("OK".into()),
                    info_code: None,
                    info_msg: None,
                    tags: vec![],
                    username: None,
                    orig_fuids: None,
                    orig_mime_types: None,
                    resp_fuids: None,
                    resp_mime_types: None,
                })
            }
            1 => Event::Dns(DnsRecord {
                ts,
                uid,
                orig_h: orig,
                orig_p: 5353,
                resp_h: resp,
                resp_p: 53,
                proto: "udp",
                trans_id: 1,
                rtt: None,
                query: Some(format!("{}.{}.city.example", r.pick(WORDS), r.pick(WORDS))),
                qclass: Some(1),
                qclass_name: Some(Cow::Borrowed("C_INTERNET")),
                qtype: Some(1),
                qtype_name: Some(Cow::Borrowed("A")),
                rcode: Some(0),
                rcode_name: Some(Cow::Borrowed("NOERROR")),
                aa: false,
                tc: false,
                rd: true,
                ra: true,
                z: 0,
                answers: Some(vec!["10.1.2.3".into()]),
                ttls: None,
                rejected: false,
                opcode: 0,
                opcode_name: "query",
            }),
            _ => Event::Conn(ConnRecord {
                ts,
                uid,
                orig_h: orig,
                orig_p: 40000 + (r.next() % 20000) as u16,
                resp_h: resp,
                resp_p: [80, 443, 53, 22, 502, 1883, 8080][(r.next() % 7) as usize],
                proto: "tcp",
                service: None,
                duration: None,
                orig_bytes: Some(r.next() % 5000),
                resp_bytes: Some(r.next() % 50000),
                conn_state: ["SF", "S0", "REJ", "RSTO"][(r.next() % 4) as usize],
                local_orig: true,
                local_resp: true,
                missed_bytes: 0,
                history: Some("ShADadFf".into()),
                orig_pkts: 5,
                orig_ip_bytes: 400,
                resp_pkts: 5,
                resp_ip_bytes: 4000,
                tunnel_parents: vec![],
                ip_proto: 6,
                orig_l2_addr: None,
                resp_l2_addr: None,
                vlan: None,
                inner_vlan: None,
                community_id: None,
            }),
        };
        out.push(ev);
    }
    out
}

/// `n` rules shaped like SigmaHQ's proxy, DNS and firewall rules (several
/// contains/startswith/endswith values, some regexes, a `not` filter),
/// with tokens that rarely occur in the records.
fn synthetic_rules(n: usize) -> String {
    let mut r = Rng(0x1234_5678);
    let mut out = String::new();
    for i in 0..n {
        let tok = |r: &mut Rng| {
            format!("{}{:x}", ["evil", "bad", "xpl", "c2", "drop"][(r.next() % 5) as usize], r.next() % 0xfffff)
        };
        let (svc, det) = match i % 5 {
            0 | 1 => (
                "http",
                format!(
                    "    sel:\n        uri|contains:\n            - '/{}'\n            - '{}.php'\n            - '?{}='\n    ua:\n        user_agent|startswith: '{}'\n    filter:\n        host|endswith: '.{}.example'\n    condition: (sel or ua) and not filter\n",
                    tok(&mut r), tok(&mut r), tok(&mut r), tok(&mut r), tok(&mut r)
                ),
            ),
            2 => (
                "http",
                format!("    sel:\n        uri|re: '^/{}/[0-9]+/{}'\n        method: 'POST'\n    condition: sel\n", tok(&mut r), tok(&mut r)),
            ),
            3 => (
                "dns",
                format!(
                    "    sel:\n        query|endswith:\n            - '.{}.com'\n            - '.{}.net'\n            - '{}.org'\n    condition: sel\n",
                    tok(&mut r), tok(&mut r), tok(&mut r)
                ),
            ),
            _ => (
                "conn",
                format!(
                    "    sel:\n        id.resp_p: {}\n        id.resp_h|cidr: '192.0.{}.0/24'\n    condition: sel\n",
                    1024 + r.next() % 60000,
                    r.next() % 256
                ),
            ),
        };
        out.push_str(&format!(
            "title: synthetic {i}\nid: synth-{i}\nlogsource:\n    product: zeek\n    service: {svc}\ndetection:\n{det}level: medium\n---\n"
        ));
    }
    out
}

fn opts() -> SigmaOptions {
    SigmaOptions { mapping: Mapping::shipped(), ..Default::default() }
}

/// sigma-rust's evaluator over the same rules, given the record as a
/// sigma-rust event (converted from its JSON, as it takes events).
struct Reference {
    by_log: Vec<(String, Vec<sigma_rust::Rule>)>,
    count: usize,
    ids: std::collections::HashSet<String>,
}

fn reference(texts: &[String], set: &SigmaSet) -> Reference {
    let mut by_log: Vec<(String, Vec<sigma_rust::Rule>)> = Vec::new();
    let mut count = 0;
    let mut ids = std::collections::HashSet::new();
    for text in texts {
        for doc in text.split("\n---\n") {
            let Ok(rule) = sigma_rust::rule_from_yaml(doc) else { continue };
            // Route as our engine does, so both see the same rules per record.
            let ls = detector::sigma::parse::Logsource {
                category: rule.logsource.category.clone(),
                product: rule.logsource.product.clone(),
                service: rule.logsource.service.clone(),
            };
            let Some(e) = set.mapping.route(&ls) else { continue };
            for log in &set.mapping.entries[e].logs {
                match by_log.iter_mut().find(|(l, _)| l == log) {
                    Some((_, v)) => v.push(sigma_rust::rule_from_yaml(doc).unwrap()),
                    None => by_log.push((log.clone(), vec![sigma_rust::rule_from_yaml(doc).unwrap()])),
                }
            }
            count += 1;
            ids.extend(rule.id.clone());
        }
    }
    Reference { by_log, count, ids }
}

/// Records/s, and the hits of the rules `only` names (all when `None`).
fn run_ours(set: &SigmaSet, recs: &[Event], only: Option<&std::collections::HashSet<String>>) -> (f64, usize) {
    let mut s = Evaluator::default();
    let mut out: Vec<RuleHit> = Vec::new();
    let mut hits = 0;
    let t = Instant::now();
    for ev in recs {
        out.clear();
        set.engine.eval(ev, &mut s, &mut out);
        hits += match only {
            None => out.len(),
            Some(ids) => out
                .iter()
                .filter(|h| set.rules[h.rule as usize].meta.id.as_ref().is_some_and(|i| ids.contains(i)))
                .count(),
        };
    }
    (recs.len() as f64 / t.elapsed().as_secs_f64(), hits)
}

fn run_reference(r: &Reference, recs: &[Event]) -> (f64, usize) {
    let mut hits = 0;
    let t = Instant::now();
    for ev in recs {
        let Some((_, rules)) = r.by_log.iter().find(|(l, _)| l == ev.log_name()) else { continue };
        let json = serde_json::to_string(ev).unwrap();
        let e = sigma_rust::event_from_json(&json).unwrap();
        hits += rules.iter().filter(|rule| sigma_rust::check_rule(rule, &e)).count();
    }
    (recs.len() as f64 / t.elapsed().as_secs_f64(), hits)
}

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = !args.iter().any(|a| a == "--bench");
    let n = if quick { 2_000 } else { 400_000 };
    let n_ref = if quick { 500 } else { 20_000 };
    let recs = records(n);
    println!("records: {n} (conn 50%, dns 25%, http 25%); sigma-rust on the first {n_ref}");
    println!("{:<46} {:>8} {:>14} {:>14} {:>8}", "rule set", "rules", "ours rec/s", "sigma-rust", "ratio");

    let shipped_text: Vec<String> = detector::sigma::rule_files(&[rules_dir().join("sigma")], &["yml"])
        .unwrap()
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let mut sets: Vec<(String, Vec<String>)> = Vec::new();
    for k in [50usize, 500] {
        let mut texts = shipped_text.clone();
        texts.push(synthetic_rules(k.saturating_sub(14)));
        sets.push((format!("shipped + synthetic ({k})"), texts));
    }
    if let Ok(dir) = std::env::var("CITYSOC_BENCH_SIGMA") {
        let files = detector::sigma::rule_files(&[PathBuf::from(&dir)], &["yml", "yaml"]).unwrap();
        let mut texts = shipped_text.clone();
        texts.extend(files.iter().filter_map(|p| std::fs::read_to_string(p).ok()));
        // Loading twice would duplicate ids; fine for throughput.
        let mut big = texts.clone();
        big.push(synthetic_rules(500usize.saturating_sub(180)));
        sets.push((format!("shipped + {dir}"), texts));
        sets.push(("shipped + that + synthetic (~500)".to_string(), big));
    }
    let placeholders = {
        let ph: toml::Table =
            toml::from_str(&std::fs::read_to_string(rules_dir().join("placeholders.toml")).unwrap()).unwrap();
        ph["placeholders"]
            .as_table()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()))
            .collect()
    };
    for (name, texts) in &sets {
        let joined = texts.join("\n---\n");
        let o = SigmaOptions { placeholders: std::collections::HashMap::clone(&placeholders), ..opts() };
        let (set, rep) = load_text(&joined, Path::new("bench"), &o);
        let loaded = set.rules.len();
        let (ours, _) = run_ours(&set, &recs, None);
        let r = reference(texts, &set);
        let (theirs, _) = run_reference(&r, &recs[..n_ref]);
        // Both engines must agree on the records where both run.
        let (_, h1) = run_ours(&set, &recs[..n_ref], Some(&r.ids));
        let (_, h2) = run_reference(&r, &recs[..n_ref]);
        println!(
            "{:<46} {:>8} {:>14.0} {:>14.0} {:>7.0}x   (sigma-rust parsed {}, {} load errors, hits {h1}/{h2})",
            name,
            loaded,
            ours,
            theirs,
            ours / theirs,
            r.count,
            rep.errors.len()
        );
    }

    // Correlation: refused connections through the port-scan and telnet
    // correlations, many sources.
    let (set, _) = load(&[rules_dir().join("sigma")], &SigmaOptions { placeholders, ..opts() });
    let mut eng = CorrelationEngine::new(&set, CorrelationConfig::default());
    let mut s = Evaluator::default();
    let mut hs = Vec::new();
    let mut fired = 0;
    let mut fed = 0;
    let t = Instant::now();
    for ev in &recs {
        hs.clear();
        set.engine.eval(ev, &mut s, &mut hs);
        let ts = match ev {
            Event::Conn(c) => c.ts.as_secs_f64(),
            _ => continue,
        };
        for h in &hs {
            let mut out = Vec::new();
            eng.observe(&set, h.rule, ts, &s.flat, None, &mut out);
            fed += 1;
            fired += out.len();
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "correlation: {fed} base matches into {} correlations: {:.0} matches/s (records incl. matching {:.0}/s), {fired} fired, {} groups",
        set.correlations.len(),
        fed as f64 / secs,
        recs.len() as f64 / secs,
        eng.groups()
    );

    // YARA-X over HTTP bodies.
    let mut yara_sets = vec![("shipped".to_string(), vec![rules_dir().join("yara")])];
    if let Ok(dir) = std::env::var("CITYSOC_BENCH_YARA") {
        yara_sets.push((dir.clone(), vec![PathBuf::from(dir)]));
    }
    let mut r = Rng(42);
    let bodies: Vec<Vec<u8>> = (0..if quick { 20 } else { 2000 })
        .map(|i| {
            let len = 4096 + (r.next() % 60_000) as usize;
            let mut b = Vec::with_capacity(len);
            while b.len() < len {
                b.extend_from_slice(
                    format!("<div class=\"{}\">{} {}</div>\n", r.pick(WORDS), r.pick(WORDS), i).as_bytes(),
                );
            }
            b
        })
        .collect();
    let total: usize = bodies.iter().map(Vec::len).sum();
    for (name, paths) in yara_sets {
        let (Some(y), errs) = detector::yara::load(&paths) else { continue };
        let mut sc = YaraScanner::new(y.clone());
        let mut out: Vec<YaraHit> = Vec::new();
        sc.scan(&bodies[0], &mut out);
        let t = Instant::now();
        for b in &bodies {
            sc.scan(b, &mut out);
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "yara {name}: {} rules, {:.1} MB/s over {} bodies of 4-64 KiB ({} hits, {} files failed)",
            y.info.len(),
            total as f64 / secs / 1e6,
            bodies.len(),
            out.len(),
            errs.len()
        );
    }
}
