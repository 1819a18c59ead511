//! Records as the pages show them: times in the reader's zone, addresses
//! pseudonymised for viewers, values as text with pivot links. Everything
//! here returns plain strings; the templates escape them.

use crate::pseudonym::Pseudonymiser;
use chrono_tz::Tz;
use schema::summary::{self, SummaryArgs};
use serde_json::Value;
use std::net::IpAddr;

/// The reader's view settings.
#[derive(Clone)]
pub struct Lens {
    pub tz: Tz,
    /// Keyed pseudonyms for internal addresses (viewers), or None.
    pub pseudonym_key: Option<[u8; 32]>,
    /// Our rules' titles in the reader's language, when it is not English.
    pub rule_texts: Option<std::sync::Arc<crate::rule_text::RuleTexts>>,
}

impl Lens {
    pub fn time(&self, ts: f64) -> String {
        if !ts.is_finite() {
            return String::new();
        }
        let secs = ts.floor() as i64;
        let nanos = ((ts - ts.floor()) * 1e9) as u32;
        match chrono::DateTime::from_timestamp(secs, nanos) {
            // ISO 8601 with the offset (RFC 3339's space form): one
            // reading in every language, sortable, never wrapped.
            Some(t) => t.with_timezone(&self.tz).format("%Y-%m-%d %H:%M:%S%:z").to_string(),
            None => String::new(),
        }
    }

    /// An address as this reader may see it.
    pub fn addr(&self, s: &str) -> String {
        match (self.pseudonymiser(), s.parse::<IpAddr>()) {
            (Some(p), Ok(ip)) => p.addr(ip).unwrap_or_else(|| s.to_string()),
            _ => s.to_string(),
        }
    }

    fn pseudonymiser(&self) -> Option<Pseudonymiser> {
        self.pseudonym_key.map(Pseudonymiser::new)
    }

    /// Data read for this reader, as they may see it: the one step every
    /// record, alert and incident a page shows passes through.
    pub fn scrub(&self, v: &mut Value) {
        if let Some(p) = self.pseudonymiser() {
            p.value(v);
        }
    }

    /// Values a page shows together, with the names any of them marks.
    pub fn scrub_all(&self, vs: &mut [Value]) {
        if let Some(p) = self.pseudonymiser() {
            p.values(vs);
        }
    }

    /// Free text (a chart label, a note) as this reader may see it.
    pub fn text(&self, s: &str) -> String {
        match self.pseudonymiser() {
            Some(p) => p.text(s),
            None => s.to_string(),
        }
    }

    /// A rule's title in the reader's language.
    pub fn rule_title(&self, en: &str) -> String {
        self.rule_texts.as_ref().and_then(|t| t.title(en)).unwrap_or(en).to_string()
    }

    /// An alert's summary in the reader's language (its title part).
    pub fn rule_summary(&self, title: &str, summary: &str) -> String {
        match &self.rule_texts {
            Some(t) => t.summary(title, summary),
            None => summary.to_string(),
        }
    }

    /// An alert's summary in the reader's language: rendered from its
    /// template when it has one (alerts made before summaries had keys, or
    /// by rules without a template, show their stored text).
    pub fn alert_summary(&self, al: &Value) -> String {
        let title = al["rule.title"].as_str().unwrap_or("");
        let summary = al["summary"].as_str().unwrap_or("");
        self.rendered(al, al["summary_key"].as_str()).unwrap_or_else(|| self.rule_summary(title, summary))
    }

    /// An alert's title in the reader's language; the titles made in code
    /// (threat intelligence) from their template.
    pub fn alert_title(&self, al: &Value) -> String {
        // A model's title names the model ("Network flood"); what it found
        // (which host, how much) is its summary. Not for pseudonymised
        // readers: a summary may quote a name only the alert's records mark
        // as a person's, and lists show no records to scrub it by.
        let model = al["rule.source"].as_str() == Some("model");
        if model && !self.pseudonymised() && al["summary"].as_str().is_some_and(|s| !s.is_empty()) {
            return self.alert_summary(al);
        }
        let key = match al["rule.source"].as_str() {
            Some("ioc") => Some("intel.title".to_string()),
            // The sensor's own alerts: a title per summary.
            Some("sensor") => al["summary_key"].as_str().map(|k| format!("{k}.title")),
            _ => None,
        };
        self.rendered(al, key.as_deref()).unwrap_or_else(|| self.rule_title(al["rule.title"].as_str().unwrap_or("")))
    }

    fn rendered(&self, al: &Value, key: Option<&str>) -> Option<String> {
        // English readers read the stored text: it was rendered from the
        // same template.
        self.rule_texts.as_ref()?;
        let mut args = SummaryArgs::parse(al["summary_args"].as_str()?)?;
        if let Some(t) = args.0.get_mut("title") {
            *t = self.rule_title(t);
        }
        summary::render(summary::Lang::Vi, key?, &args)
    }

    pub fn pseudonymised(&self) -> bool {
        self.pseudonym_key.is_some()
    }

    /// `addr:port` of a record's originator or responder.
    pub fn endpoint(&self, rec: &Value, side: &str) -> String {
        let h = rec[format!("id.{side}_h")].as_str().unwrap_or("");
        if h.is_empty() {
            return String::new();
        }
        let a = self.addr(h);
        match rec[format!("id.{side}_p")].as_u64() {
            Some(p) if a.contains(':') && !a.starts_with("internal-") => format!("[{a}]:{p}"),
            Some(p) => format!("{a}:{p}"),
            None => a,
        }
    }

    /// A record's fields as (name, text, pivot link), addresses and ids
    /// linked to a search for them (not for pseudonymised values).
    pub fn fields(&self, rec: &Value, skip: &[&str]) -> Vec<(String, String, String)> {
        let Some(m) = rec.as_object() else { return Vec::new() };
        let mut out = Vec::new();
        for (k, v) in m {
            if skip.contains(&k.as_str()) || v.is_null() {
                continue;
            }
            let text = match v {
                Value::String(s) => self.maybe_addr(s),
                Value::Array(items) => items
                    .iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), |s| self.maybe_addr(s)))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            let pivot = PIVOTS.contains(&k.as_str()) && !self.pseudonymised() && !text.is_empty();
            let href = if pivot { pivot_href(k, &text) } else { String::new() };
            out.push((k.clone(), text, href));
        }
        out
    }

    fn maybe_addr(&self, s: &str) -> String {
        self.text(s)
    }
}

/// Fields whose values are worth a click: hosts, flows, names, fingerprints.
const PIVOTS: &[&str] = &[
    "uid",
    "community_id",
    "id.orig_h",
    "id.resp_h",
    "query",
    "host",
    "server_name",
    "ja3",
    "ja4",
    "hassh",
    "md5",
    "sha1",
    "sha256",
    "fuid",
    "rule.id",
];

/// Where a value of a field leads: a flow's or a host's timeline, a rule's
/// line in the rules list, else a search for it.
pub fn pivot_href(field: &str, value: &str) -> String {
    match field {
        "uid" => timeline_href("uid", value),
        "community_id" => timeline_href("community_id", value),
        "id.orig_h" | "id.resp_h" => timeline_href("addr", value),
        "rule.id" => format!("/rules#rule-{}", enc(value)),
        _ => search_href(&format!("{field}:{}", quote(value))),
    }
}

/// The timeline of a flow (`uid`, `community_id`) or a host (`addr`).
pub fn timeline_href(param: &str, value: &str) -> String {
    format!("/timeline?{param}={}", enc(value))
}

/// A value quoted for the query language when it needs it.
pub fn quote(v: &str) -> String {
    if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c)) {
        v.to_string()
    } else {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn search_href(q: &str) -> String {
    format!("/search?q={}", enc(q))
}

/// ATT&CK technique pages: `T1059.001` is `/techniques/T1059/001/`.
pub fn attack_href(t: &str) -> Option<String> {
    let ok = t.len() <= 16 && t.starts_with('T') && t[1..].chars().all(|c| c.is_ascii_digit() || c == '.');
    ok.then(|| format!("https://attack.mitre.org/techniques/{}/", t.replace('.', "/")))
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_the_readers_zone() {
        let l = Lens { tz: chrono_tz::Asia::Ho_Chi_Minh, pseudonym_key: None, rule_texts: None };
        assert_eq!(l.time(1_700_000_000.0), "2023-11-15 05:13:20+07:00");
        assert_eq!(l.time(f64::NAN), "");
    }

    #[test]
    fn viewers_see_pseudonyms_for_internal_addresses_only() {
        let l = Lens { tz: chrono_tz::UTC, pseudonym_key: Some([7; 32]), rule_texts: None };
        let p = l.addr("10.1.2.3");
        assert!(p.starts_with("internal-") && p != l.addr("10.1.2.4"));
        assert_eq!(p, l.addr("10.1.2.3"));
        assert_eq!(l.addr("203.0.113.9"), "203.0.113.9");
        assert!(l.addr("fd00::1").starts_with("internal-"));
        let rec = serde_json::json!({"id.orig_h": "192.168.1.5", "id.orig_p": 4000, "uid": "C1"});
        assert!(l.endpoint(&rec, "orig").starts_with("internal-"));
        let f = l.fields(&rec, &[]);
        let orig = f.iter().find(|(k, ..)| k == "id.orig_h").unwrap();
        assert!(orig.1.starts_with("internal-") && orig.2.is_empty(), "no pivot on a pseudonym");
    }

    #[test]
    fn quoting_and_links() {
        assert_eq!(quote("10.0.0.1"), "10.0.0.1");
        assert_eq!(quote("a \"b\""), "\"a \\\"b\\\"\"");
        assert_eq!(search_href("uid:C1 x"), "/search?q=uid%3AC1+x");
        assert_eq!(pivot_href("uid", "CFLOW1"), "/timeline?uid=CFLOW1");
        assert_eq!(pivot_href("community_id", "1:ab+/="), "/timeline?community_id=1%3Aab%2B%2F%3D");
        assert_eq!(pivot_href("id.resp_h", "10.0.0.1"), "/timeline?addr=10.0.0.1");
        assert_eq!(pivot_href("rule.id", "r 1"), "/rules#rule-r+1");
        assert_eq!(pivot_href("query", "a.example"), "/search?q=query%3Aa.example");
        assert_eq!(attack_href("T1059.001").unwrap(), "https://attack.mitre.org/techniques/T1059/001/");
        assert!(attack_href("javascript:alert(1)").is_none());
    }

    /// Summaries and titles made in code read in Vietnamese; an alert
    /// without a key keeps its stored text.
    #[test]
    fn alert_summaries_in_the_readers_language() {
        let vi = Lens {
            tz: chrono_tz::UTC,
            pseudonym_key: None,
            rule_texts: Some(std::sync::Arc::new(crate::rule_text::RuleTexts::default())),
        };
        let en = Lens { rule_texts: None, ..vi.clone() };
        let scan = schema::Summary::en(
            "model.scan.vertical",
            &[
                ("src", Some("10.0.0.5".into())),
                ("ports", Some("120".into())),
                ("host", Some("10.0.0.9".into())),
                ("took", Some("4.0 s".into())),
                ("lo", Some("1".into())),
                ("hi", Some("1024".into())),
                ("none", Some(String::new())),
            ],
        );
        let al = serde_json::json!({
            "rule.title": "Port scan", "rule.source": "model", "summary": scan.text,
            "summary_key": scan.key, "summary_args": serde_json::to_value(&scan.args).unwrap(),
        });
        assert_eq!(
            vi.alert_summary(&al),
            "Quét dọc: 10.0.0.5 dò 120 cổng của 10.0.0.9 trong 4.0 s (cổng 1-1024; mở: không có)"
        );
        assert_eq!(en.alert_summary(&al), scan.text);
        let old = serde_json::json!({"rule.title": "Port scan", "summary": "Vertical scan: old text"});
        assert_eq!(vi.alert_summary(&old), "Vertical scan: old text");
        let intel = serde_json::json!({
            "rule.title": "Threat intelligence: domain evil.example listed by feed", "rule.source": "ioc",
            "summary_key": "intel.match",
            "summary_args": r#"{"field":"query","kind":"domain","value":"evil.example","endpoints":"","source":"feed"}"#,
        });
        assert_eq!(vi.alert_title(&intel), "Tình báo mối đe dọa: domain evil.example do feed liệt kê");
        assert_eq!(vi.alert_summary(&intel), "query khớp domain evil.example");
        assert_eq!(en.alert_title(&intel), "Threat intelligence: domain evil.example listed by feed");
        let spool = schema::Summary::en(
            "sensor.spool_paused",
            &[("sensor", Some("district-7".into())), ("secs", Some("2.5".into())), ("cap", Some("512".into()))],
        );
        let health = serde_json::json!({
            "rule.title": "Spool full: capture held back", "rule.source": "sensor", "summary": spool.text,
            "summary_key": spool.key, "summary_args": serde_json::to_value(&spool.args).unwrap(),
        });
        assert_eq!(vi.alert_title(&health), "Bộ đệm đầy: tạm giữ việc bắt gói");
        assert!(
            vi.alert_summary(&health).starts_with("cảm biến district-7 đã tạm giữ"),
            "{}",
            vi.alert_summary(&health)
        );
    }
}
