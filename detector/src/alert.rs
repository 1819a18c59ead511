//! An alert as every engine raises it: what it is about (the record's flow
//! and endpoints) and what the rule says, with an id stable across runs.

use crate::flat::FlatRecord;
use schema::{AlertRecord, FlowUid, RuleSource, Severity, Summary, Time};
use sha2::{Digest, Sha256};
use std::net::IpAddr;

fn alert_id(rule: &str, ts: Time, key: &str) -> String {
    let mut h = Sha256::new();
    h.update(rule.as_bytes());
    h.update(ts.0.to_le_bytes());
    h.update(key.as_bytes());
    let d = h.finalize();
    let hex: String = d.iter().take(10).map(|b| format!("{b:02x}")).collect();
    format!("A{hex}")
}

/// What an alert is about, taken from the record that raised it.
#[derive(Clone, Debug, Default)]
pub struct Subject {
    pub ts: Time,
    pub uid: Option<FlowUid>,
    pub community_id: Option<String>,
    pub orig: Option<(IpAddr, u16)>,
    pub resp: Option<(IpAddr, u16)>,
}

impl Subject {
    pub fn from_flat(flat: &FlatRecord) -> Subject {
        let mut buf = String::new();
        let s = |k: &str, buf: &mut String| flat.get(k).next().map(|v| flat.text_of(v, buf).to_string());
        let ts = flat.get("ts").next().and_then(|v| flat.num_of(v)).map_or(Time(0), |f| Time((f * 1e6).round() as i64));
        let uid = s("uid", &mut buf).and_then(|u| parse_uid(&u));
        let ep = |h: &str, p: &str, buf: &mut String| {
            let ip = s(h, buf)?.parse().ok()?;
            let port = s(p, buf).and_then(|p| p.parse().ok()).unwrap_or(0);
            Some((ip, port))
        };
        Subject {
            ts,
            uid,
            community_id: s("community_id", &mut buf),
            orig: ep("id.orig_h", "id.orig_p", &mut buf),
            resp: ep("id.resp_h", "id.resp_p", &mut buf),
        }
    }
}

/// Parses a rendered `C...` uid back (base 62).
pub fn parse_uid(s: &str) -> Option<FlowUid> {
    let body = s.strip_prefix('C')?;
    let mut n: u128 = 0;
    for c in body.bytes() {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'Z' => c - b'A' + 10,
            b'a'..=b'z' => c - b'a' + 36,
            _ => return None,
        };
        n = n.checked_mul(62)?.checked_add(u128::from(d))?;
    }
    Some(FlowUid::new(n))
}

pub struct AlertSpec<'a> {
    pub source: RuleSource,
    pub rule_id: &'a str,
    pub title: &'a str,
    pub version: &'a str,
    pub severity: Severity,
    pub attack: &'a [String],
    pub summary: Summary,
    pub matched: Vec<String>,
    pub evidence: Vec<String>,
    pub confidence: Option<u8>,
}

pub fn make_alert(sensor: &str, subj: &Subject, spec: AlertSpec<'_>, first: Time, count: u64) -> AlertRecord {
    let key = format!("{:?}{:?}{:?}", subj.uid, subj.orig, subj.resp);
    AlertRecord {
        ts: first,
        id: alert_id(spec.rule_id, first, &key),
        severity: spec.severity,
        rule_source: spec.source,
        rule_id: spec.rule_id.to_string(),
        rule_title: spec.title.to_string(),
        rule_version: spec.version.to_string(),
        mitre_attack: spec.attack.to_vec(),
        sensor: sensor.to_string(),
        uid: subj.uid,
        community_id: subj.community_id.clone(),
        orig_h: subj.orig.map(|o| o.0),
        orig_p: subj.orig.map(|o| o.1),
        resp_h: subj.resp.map(|o| o.0),
        resp_p: subj.resp.map(|o| o.1),
        summary: spec.summary.text,
        summary_key: spec.summary.key.map(String::from),
        summary_args: spec.summary.args,
        matched: spec.matched,
        evidence: spec.evidence,
        confidence: spec.confidence,
        count,
        first_seen: first,
        last_seen: subj.ts.max(first),
    }
}
