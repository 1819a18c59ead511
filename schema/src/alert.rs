use crate::summary::SummaryArgs;
use crate::{FlowUid, Time};
use serde::Serialize;
use std::net::IpAddr;

/// Where an alert's rule comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleSource {
    Sigma,
    Yara,
    Model,
    Ioc,
    /// The sensor about itself: its spool full, records lost.
    Sensor,
}

impl RuleSource {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleSource::Sigma => "sigma",
            RuleSource::Yara => "yara",
            RuleSource::Model => "model",
            RuleSource::Ioc => "ioc",
            RuleSource::Sensor => "sensor",
        }
    }
}

/// Sigma's levels, in increasing order of urgency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.to_ascii_lowercase().as_str() {
            "informational" | "info" => Severity::Informational,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

/// A detection: a line of `alerts.log`. Repeats of the same rule on the same
/// key within the aggregation window are folded into one alert (`count`,
/// `first_seen`, `last_seen`); `ts` is when it was first raised.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertRecord {
    pub ts: Time,
    /// Stable identifier: the same input replayed gives the same ids.
    pub id: String,
    pub severity: Severity,
    #[serde(rename = "rule.source")]
    pub rule_source: RuleSource,
    #[serde(rename = "rule.id")]
    pub rule_id: String,
    #[serde(rename = "rule.title")]
    pub rule_title: String,
    /// Content hash of the rule as loaded, so an alert names the exact rule text.
    #[serde(rename = "rule.version")]
    pub rule_version: String,
    /// ATT&CK technique ids (`T1046`, `T1110.001`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mitre_attack: Vec<String>,
    pub sensor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<FlowUid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub community_id: Option<String>,
    #[serde(rename = "id.orig_h", skip_serializing_if = "Option::is_none")]
    pub orig_h: Option<IpAddr>,
    #[serde(rename = "id.orig_p", skip_serializing_if = "Option::is_none")]
    pub orig_p: Option<u16>,
    #[serde(rename = "id.resp_h", skip_serializing_if = "Option::is_none")]
    pub resp_h: Option<IpAddr>,
    #[serde(rename = "id.resp_p", skip_serializing_if = "Option::is_none")]
    pub resp_p: Option<u16>,
    /// English, rendered from `summary_key`'s template when it has one.
    pub summary: String,
    /// The template the summary was rendered from (`model.scan.horizontal`),
    /// so a reader gets it in their own language; see [`crate::summary`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary_key: Option<String>,
    /// The template's arguments.
    #[serde(skip_serializing_if = "SummaryArgs::is_empty")]
    pub summary_args: SummaryArgs,
    /// What matched: `field=value` pairs for Sigma, `$name@offset` for YARA,
    /// the indicator for threat intelligence.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matched: Vec<String>,
    /// The records behind the alert, as `log:uid` (`http:C4fz...`, `files:F2a...`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// Indicator confidence (0-100), for threat-intelligence hits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<u8>,
    pub count: u64,
    pub first_seen: Time,
    pub last_seen: Time,
}
