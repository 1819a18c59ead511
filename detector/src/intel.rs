//! Threat intelligence: indicators (addresses, networks, domains with their
//! subdomains, URLs, JA3/JA4, file hashes) from plain lists, STIX 2.1
//! bundles and MISP JSON exports, matched against records.

use crate::error::{Code, RuleError};
use crate::flat::FlatRecord;
use crate::sigma::rule_files;
use schema::Event;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Ip,
    Domain,
    Url,
    Ja3,
    Ja4,
    Md5,
    Sha1,
    Sha256,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ip => "ip",
            Kind::Domain => "domain",
            Kind::Url => "url",
            Kind::Ja3 => "ja3",
            Kind::Ja4 => "ja4",
            Kind::Md5 => "md5",
            Kind::Sha1 => "sha1",
            Kind::Sha256 => "sha256",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Indicator {
    pub kind: Kind,
    pub value: String,
    /// Feed (file name) and, where the format has one, the report or event.
    pub source: String,
    pub confidence: u8,
    pub description: Option<String>,
}

/// Indicators indexed for lookup.
#[derive(Debug, Default)]
pub struct IntelSet {
    pub indicators: Vec<Indicator>,
    exact: HashMap<(Kind, String), u32>,
    nets: Vec<(cidr::IpCidr, u32)>,
}

/// A record matched an indicator.
#[derive(Clone, Debug, PartialEq)]
pub struct IntelHit {
    pub indicator: u32,
    /// The record's field and value that matched.
    pub field: &'static str,
    pub value: String,
}

const DEFAULT_CONFIDENCE: u8 = 50;

impl IntelSet {
    fn add(&mut self, mut ind: Indicator) {
        ind.value = normalise(ind.kind, ind.value.trim());
        if ind.value.is_empty() {
            return;
        }
        let i = self.indicators.len() as u32;
        if ind.kind == Kind::Ip && ind.value.contains('/') {
            match ind.value.parse::<cidr::IpCidr>() {
                Ok(c) => self.nets.push((c, i)),
                Err(_) => return,
            }
        } else {
            if ind.kind == Kind::Ip && ind.value.parse::<IpAddr>().is_err() {
                return;
            }
            self.exact.insert((ind.kind, ind.value.clone()), i);
        }
        self.indicators.push(ind);
    }

    pub fn len(&self) -> usize {
        self.indicators.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indicators.is_empty()
    }

    fn ip(&self, s: &str) -> Option<u32> {
        let ip: IpAddr = s.parse().ok()?;
        if let Some(&i) = self.exact.get(&(Kind::Ip, ip.to_string())) {
            return Some(i);
        }
        self.nets.iter().find(|(c, _)| c.contains(&ip)).map(|(_, i)| *i)
    }

    fn domain(&self, name: &str) -> Option<u32> {
        // A listed domain covers its subdomains: try each parent in turn.
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let mut rest = name.as_str();
        loop {
            if let Some(&i) = self.exact.get(&(Kind::Domain, rest.to_string())) {
                return Some(i);
            }
            match rest.find('.') {
                Some(p) => rest = &rest[p + 1..],
                None => return None,
            }
        }
    }

    /// Indicators the record matches.
    pub fn check(&self, ev: &Event, flat: &FlatRecord, out: &mut Vec<IntelHit>) {
        if self.indicators.is_empty() {
            return;
        }
        let mut buf = String::new();
        let mut push = |i: Option<u32>, field: &'static str, value: &str| {
            if let Some(i) = i {
                if !out.iter().any(|h| h.indicator == i) {
                    out.push(IntelHit { indicator: i, field, value: value.to_string() });
                }
            }
        };
        let fields: &[(&'static str, Kind)] = match ev {
            // Addresses are checked once per connection, on conn.log.
            Event::Conn(_) => &[("id.orig_h", Kind::Ip), ("id.resp_h", Kind::Ip)],
            Event::Dns(_) => &[("query", Kind::Domain), ("answers", Kind::Ip), ("answers", Kind::Domain)],
            Event::Http(_) => &[("host", Kind::Domain)],
            Event::Ssl(_) => &[
                ("server_name", Kind::Domain),
                ("ja3", Kind::Ja3),
                ("ja3s", Kind::Ja3),
                ("ja4", Kind::Ja4),
                ("ja4s", Kind::Ja4),
            ],
            Event::Quic(_) => &[("server_name", Kind::Domain)],
            Event::Files(_) => &[("md5", Kind::Md5), ("sha1", Kind::Sha1), ("sha256", Kind::Sha256)],
            Event::Smtp(_) => &[("mailfrom", Kind::Domain)],
            _ => &[],
        };
        for &(field, kind) in fields {
            for v in flat.get(field) {
                let text = flat.text_of(v, &mut buf).to_string();
                let hit = match kind {
                    Kind::Ip => self.ip(&text),
                    Kind::Domain => {
                        let t = text.rsplit('@').next().unwrap_or(&text).trim_end_matches('>');
                        if t.parse::<IpAddr>().is_ok() {
                            None
                        } else {
                            self.domain(t)
                        }
                    }
                    k => self.exact.get(&(k, text.to_ascii_lowercase())).copied(),
                };
                push(hit, field, &text);
            }
        }
        if let Event::Http(h) = ev {
            if let (Some(host), Some(uri)) = (&h.host, &h.uri) {
                let url = normalise(Kind::Url, &format!("{host}{uri}"));
                push(self.exact.get(&(Kind::Url, url.clone())).copied(), "uri", &url);
            }
        }
    }
}

fn normalise(kind: Kind, v: &str) -> String {
    match kind {
        Kind::Url => {
            let v = v.trim();
            let v = v.split_once("://").map_or(v, |(_, r)| r);
            match v.split_once('/') {
                Some((host, path)) => format!("{}/{}", host.to_ascii_lowercase(), path),
                None => format!("{}/", v.to_ascii_lowercase()),
            }
        }
        Kind::Domain => v.trim_end_matches('.').to_ascii_lowercase(),
        Kind::Ip => match v.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => v.to_string(),
        },
        _ => v.to_ascii_lowercase(),
    }
}

fn guess(v: &str) -> Option<Kind> {
    let hex = |n| v.len() == n && v.bytes().all(|b| b.is_ascii_hexdigit());
    if v.parse::<IpAddr>().is_ok() || v.parse::<cidr::IpCidr>().is_ok() {
        Some(Kind::Ip)
    } else if v.contains("://") {
        Some(Kind::Url)
    } else if hex(64) {
        Some(Kind::Sha256)
    } else if hex(40) {
        Some(Kind::Sha1)
    } else if hex(32) {
        Some(Kind::Md5)
    } else if v.starts_with('t') && v.matches('_').count() == 2 && v.len() == 36 {
        Some(Kind::Ja4)
    } else if v.contains('.') && !v.contains('/') && !v.contains(' ') {
        Some(Kind::Domain)
    } else {
        None
    }
}

fn kind_named(s: &str) -> Option<Kind> {
    Some(match s.to_ascii_lowercase().as_str() {
        "ip" | "ip-src" | "ip-dst" | "ipv4-addr" | "ipv6-addr" | "cidr" => Kind::Ip,
        "domain" | "hostname" | "domain-name" => Kind::Domain,
        "url" | "uri" => Kind::Url,
        "ja3" | "ja3-fingerprint-md5" => Kind::Ja3,
        "ja4" | "ja4-fingerprint" => Kind::Ja4,
        "md5" => Kind::Md5,
        "sha1" | "sha-1" => Kind::Sha1,
        "sha256" | "sha-256" => Kind::Sha256,
        _ => return None,
    })
}

/// A plain list: one indicator per line, optionally `type:value`, `#`
/// comments; `# confidence: N` sets the confidence of the lines after it.
fn parse_plain(text: &str, source: &str, set: &mut IntelSet) {
    let mut confidence = DEFAULT_CONFIDENCE;
    for line in text.lines() {
        let line = line.trim();
        if let Some(c) = line.strip_prefix('#') {
            if let Some(n) = c.trim().strip_prefix("confidence:") {
                confidence = n.trim().parse().unwrap_or(confidence).min(100);
            }
            continue;
        }
        let (body, description) = match line.split_once(" #") {
            Some((a, b)) => (a.trim(), Some(b.trim().to_string())),
            None => (line, None),
        };
        if body.is_empty() {
            continue;
        }
        let (kind, value) = match body.split_once(':') {
            Some((k, v)) if kind_named(k).is_some() && !body.contains("://") && k.len() < 12 => {
                (kind_named(k), v.to_string())
            }
            _ => (guess(body), body.to_string()),
        };
        if let Some(kind) = kind {
            set.add(Indicator { kind, value, source: source.to_string(), confidence, description });
        }
    }
}

/// STIX 2.1: `indicator` objects whose pattern compares an observable's
/// value with `=` (one or several, joined by OR/AND).
fn parse_stix(doc: &Json, source: &str, set: &mut IntelSet) {
    let Some(objs) = doc["objects"].as_array() else { return };
    for o in objs {
        if o["type"] != "indicator" {
            continue;
        }
        let Some(pattern) = o["pattern"].as_str() else { continue };
        let confidence = o["confidence"].as_u64().map_or(DEFAULT_CONFIDENCE, |c| c.min(100) as u8);
        let name = o["name"].as_str().unwrap_or("");
        let src = if name.is_empty() { source.to_string() } else { format!("{source}: {name}") };
        for comp in pattern.split(['[', ']']).flat_map(|p| p.split(" OR ")).flat_map(|p| p.split(" AND ")) {
            let Some((lhs, rhs)) = comp.split_once('=') else { continue };
            let lhs = lhs.trim().trim_end_matches('!');
            let value = rhs.trim().trim_matches('\'').replace("\\'", "'");
            let kind = if lhs.starts_with("ipv4-addr:") || lhs.starts_with("ipv6-addr:") {
                Some(Kind::Ip)
            } else if lhs.starts_with("domain-name:") {
                Some(Kind::Domain)
            } else if lhs.starts_with("url:") {
                Some(Kind::Url)
            } else if lhs.starts_with("file:hashes") {
                let l = lhs.to_ascii_uppercase();
                if l.contains("SHA-256") || l.contains("SHA256") {
                    Some(Kind::Sha256)
                } else if l.contains("SHA-1") || l.contains("SHA1") {
                    Some(Kind::Sha1)
                } else if l.contains("MD5") {
                    Some(Kind::Md5)
                } else {
                    None
                }
            } else {
                None
            };
            if let Some(kind) = kind {
                set.add(Indicator {
                    kind,
                    value,
                    source: src.clone(),
                    confidence,
                    description: o["description"].as_str().map(str::to_string),
                });
            }
        }
    }
}

/// MISP JSON export: an event (or a list of them) with attributes, also
/// inside objects; only attributes marked for detection (`to_ids`).
fn parse_misp(doc: &Json, source: &str, set: &mut IntelSet) {
    let events: Vec<&Json> = if let Some(r) = doc["response"].as_array() {
        r.iter().map(|e| &e["Event"]).collect()
    } else if doc["Event"].is_object() {
        vec![&doc["Event"]]
    } else {
        Vec::new()
    };
    for ev in events {
        let info = ev["info"].as_str().unwrap_or("");
        // threat_level_id: 1 high ... 4 undefined.
        let confidence = match ev["threat_level_id"].as_str().or(ev["threat_level_id"].as_u64().map(|_| "")) {
            Some("1") => 90,
            Some("2") => 70,
            Some("3") => 50,
            _ => DEFAULT_CONFIDENCE,
        };
        let src = if info.is_empty() { source.to_string() } else { format!("{source}: {info}") };
        let mut attrs: Vec<&Json> = ev["Attribute"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
        for o in ev["Object"].as_array().into_iter().flatten() {
            attrs.extend(o["Attribute"].as_array().into_iter().flatten());
        }
        for a in attrs {
            if a["to_ids"] == Json::Bool(false) {
                continue;
            }
            let (Some(t), Some(v)) = (a["type"].as_str(), a["value"].as_str()) else { continue };
            // Composite types (`domain|ip`, `filename|sha256`) carry two values.
            let ts: Vec<&str> = t.split('|').collect();
            let vs: Vec<&str> = v.split('|').collect();
            for (t, v) in ts.iter().zip(vs.iter()) {
                if let Some(kind) = kind_named(t) {
                    set.add(Indicator {
                        kind,
                        value: v.to_string(),
                        source: src.clone(),
                        confidence,
                        description: a["comment"].as_str().filter(|c| !c.is_empty()).map(str::to_string),
                    });
                }
            }
        }
    }
}

/// Loads every indicator file under the paths: `.json` as STIX or MISP
/// (by content), anything else (`.txt`, `.csv`, `.list`) as a plain list.
pub fn load(paths: &[PathBuf]) -> (IntelSet, Vec<RuleError>) {
    let mut set = IntelSet::default();
    let mut errors = Vec::new();
    let files = match rule_files(paths, &["txt", "list", "csv", "json"]) {
        Ok(f) => f,
        Err(e) => return (set, vec![e]),
    };
    for f in files {
        if let Err(e) = load_file(&f, &mut set) {
            errors.push(e);
        }
    }
    (set, errors)
}

fn load_file(f: &Path, set: &mut IntelSet) -> Result<(), RuleError> {
    let source = f.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let text = std::fs::read_to_string(f).map_err(|e| RuleError {
        code: Code::Io,
        file: f.to_path_buf(),
        line: 0,
        column: 0,
        message: e.to_string(),
    })?;
    if f.extension().is_some_and(|e| e == "json") {
        let doc: Json = serde_json::from_str(&text).map_err(|e| RuleError {
            code: Code::Syntax,
            file: f.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: format!("invalid JSON: {e}"),
        })?;
        if doc["type"] == "bundle" {
            parse_stix(&doc, &source, set);
        } else if doc["Event"].is_object() || doc["response"].is_array() {
            parse_misp(&doc, &source, set);
        } else {
            return Err(RuleError {
                code: Code::Structure,
                file: f.to_path_buf(),
                line: 1,
                column: 1,
                message: "neither a STIX 2.1 bundle nor a MISP event export".into(),
            });
        }
    } else {
        parse_plain(&text, &source, set);
    }
    Ok(())
}

/// Modification times of the indicator files, to reload when they change.
pub fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, Option<SystemTime>)> {
    rule_files(paths, &["txt", "list", "csv", "json"])
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
            (p, m)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_subdomains() {
        let mut s = IntelSet::default();
        parse_plain(
            "# confidence: 80\n203.0.113.7\n198.51.100.0/24\nevil.example\nja3:e7d705a3286e19ea42f587b344ee6865\n",
            "list.txt",
            &mut s,
        );
        let stix = serde_json::json!({"type": "bundle", "objects": [
            {"type": "indicator", "name": "c2", "confidence": 90,
             "pattern": "[domain-name:value = 'c2.example'] OR [ipv4-addr:value = '192.0.2.9']"},
            {"type": "indicator", "pattern": "[file:hashes.'SHA-256' = 'AB00000000000000000000000000000000000000000000000000000000000000']"}]});
        parse_stix(&stix, "feed.json", &mut s);
        let misp = serde_json::json!({"Event": {"info": "phish", "threat_level_id": "1", "Attribute": [
            {"type": "domain|ip", "value": "bad.example|192.0.2.44", "to_ids": true},
            {"type": "url", "value": "http://bad.example/x.php", "to_ids": true},
            {"type": "ip-dst", "value": "192.0.2.45", "to_ids": false}]}});
        parse_misp(&misp, "misp.json", &mut s);
        assert_eq!(s.len(), 10);
        assert!(s.domain("a.b.evil.example").is_some());
        assert!(s.domain("notevil.example").is_none());
        assert!(s.ip("198.51.100.200").is_some());
        assert!(s.ip("192.0.2.45").is_none());
        let c2 = s.domain("C2.example.").unwrap();
        assert_eq!(s.indicators[c2 as usize].confidence, 90);
        let bad = s.ip("192.0.2.44").unwrap();
        assert_eq!(s.indicators[bad as usize].confidence, 90);
        assert!(s.exact.contains_key(&(Kind::Url, "bad.example/x.php".into())));
        assert!(s
            .exact
            .contains_key(&(Kind::Sha256, "ab00000000000000000000000000000000000000000000000000000000000000".into())));
    }
}
