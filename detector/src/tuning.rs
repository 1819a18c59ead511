//! `rules/tuning.toml`: what admins switched off or suppressed, applied to
//! every alert whatever made it (Sigma, YARA, intelligence, models).
//!
//! ```toml
//! disabled = ["2dfdf66b-…"]          # rule ids that raise nothing
//! [disabled_reasons]                  # why, per rule (for the console)
//! "2dfdf66b-…" = "the city's scanner sweeps nightly"
//! [[suppress]]
//! rule = "model:scan"                 # a rule id, or "*" for any
//! field = "id.orig_h"                 # an alert field, or a field in `matched`
//! value = "10.30.0.250"
//! until = "2026-12-31T00:00:00Z"      # optional; record time
//! reason = "the city's scanner"
//! ```

use crate::error::{Code, RuleError};
use schema::{AlertRecord, Time};
use serde::Deserialize;
use std::path::Path;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    #[serde(default)]
    pub disabled: Vec<String>,
    /// Why each rule of `disabled` is off, as the admin wrote it.
    #[serde(default)]
    pub disabled_reasons: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub suppress: Vec<Suppression>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suppression {
    pub rule: String,
    pub field: String,
    pub value: String,
    #[serde(default)]
    pub until: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(skip)]
    pub until_us: Option<i64>,
}

impl Tuning {
    pub fn load(path: &Path) -> (Tuning, Vec<RuleError>) {
        let err =
            |line, message: String| RuleError { code: Code::Structure, file: path.into(), line, column: 0, message };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => return (Tuning::default(), vec![err(0, e.to_string())]),
        };
        let mut t: Tuning = match toml::from_str(&text) {
            Ok(t) => t,
            Err(e) => {
                let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
                return (Tuning::default(), vec![err(line, e.message().to_string())]);
            }
        };
        let mut errors = Vec::new();
        t.suppress.retain_mut(|s| match &s.until {
            None => true,
            Some(u) => match humantime::parse_rfc3339_weak(u) {
                Ok(ts) => {
                    s.until_us = ts.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_micros() as i64);
                    true
                }
                Err(e) => {
                    errors.push(err(0, format!("suppression of {} until {u:?}: {e}", s.rule)));
                    false
                }
            },
        });
        (t, errors)
    }

    pub fn is_empty(&self) -> bool {
        self.disabled.is_empty() && self.suppress.is_empty()
    }

    /// Whether `a` is switched off or suppressed.
    pub fn silences(&self, a: &AlertRecord) -> bool {
        if self.disabled.iter().any(|d| d == &a.rule_id) {
            return true;
        }
        self.suppress.iter().any(|s| {
            (s.rule == "*" || s.rule == a.rule_id)
                && s.until_us.is_none_or(|u| a.ts < Time(u))
                && field_is(a, &s.field, &s.value)
        })
    }
}

fn field_is(a: &AlertRecord, field: &str, value: &str) -> bool {
    let ip = |v: Option<std::net::IpAddr>| v.is_some_and(|x| x.to_string() == value);
    let port = |v: Option<u16>| v.is_some_and(|x| x.to_string() == value);
    match field {
        "id.orig_h" => ip(a.orig_h),
        "id.resp_h" => ip(a.resp_h),
        "id.orig_p" => port(a.orig_p),
        "id.resp_p" => port(a.resp_p),
        "sensor" => a.sensor == value,
        "uid" => a.uid.is_some_and(|u| u.to_string() == value),
        "community_id" => a.community_id.as_deref() == Some(value),
        other => a.matched.iter().any(|m| m.split_once('=').is_some_and(|(k, v)| k == other && v == value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_rules_and_suppressions_until_their_expiry() {
        let dir = std::env::temp_dir().join(format!("citysoc-tuning-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("tuning.toml");
        std::fs::write(
            &p,
            "disabled = [\"r-off\"]\n[disabled_reasons]\n\"r-off\" = \"noisy\"\n[[suppress]]\nrule = \"r-scan\"\nfield = \"id.orig_h\"\nvalue = \"10.30.0.250\"\nuntil = \"2023-11-15T00:00:00Z\"\n",
        )
        .unwrap();
        let (t, errs) = Tuning::load(&p);
        assert_eq!(t.disabled_reasons.get("r-off").map(String::as_str), Some("noisy"));
        assert!(errs.is_empty(), "{errs:?}");
        let mut a = AlertRecord {
            ts: Time(1_700_000_000_000_000),
            id: "A1".into(),
            severity: schema::Severity::High,
            rule_source: schema::RuleSource::Model,
            rule_id: "r-scan".into(),
            rule_title: String::new(),
            rule_version: String::new(),
            mitre_attack: vec![],
            sensor: "s".into(),
            uid: None,
            community_id: None,
            orig_h: Some("10.30.0.250".parse().unwrap()),
            orig_p: None,
            resp_h: None,
            resp_p: None,
            summary: String::new(),
            summary_key: None,
            summary_args: schema::SummaryArgs::default(),
            matched: vec!["kind=vertical".into()],
            evidence: vec![],
            confidence: None,
            count: 1,
            first_seen: Time(0),
            last_seen: Time(0),
        };
        assert!(t.silences(&a));
        // After the expiry the alert is back.
        a.ts = Time(1_700_100_000_000_000);
        assert!(!t.silences(&a));
        a.rule_id = "r-off".into();
        assert!(t.silences(&a));
        std::fs::write(&p, "[[suppress]]\nrule = \"x\"\nfield = \"f\"\nvalue = \"v\"\nuntil = \"someday\"\n").unwrap();
        assert_eq!(Tuning::load(&p).1.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
