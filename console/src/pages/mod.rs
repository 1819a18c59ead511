//! The pages and forms. Reads go through the SIEM's audited operations as
//! the signed-in user; store calls run on the blocking pool. One module per
//! page (or group of pages); what several pages share lives here.

use crate::error::ConsoleError;
use crate::i18n::Tr;
use crate::users::{Perm, Role};
use crate::view::{attack_href, bytes, enc, quote, search_href, timeline_href, Lens};
use crate::{cookie_of, lang_of, Auth, Console, Form, SESSION_COOKIE};
use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use siem::api::{
    AggParams, AlertsParams, AppState, IncidentChange, LedgerParams, NewIncident, PivotParams, SearchParams,
    TriageChange,
};
use siem::store::AggResult;
use std::collections::HashMap;
use std::sync::Arc;

mod admin;
mod aggregate;
mod alerts;
mod assets;
mod dashboard;
mod devices;
mod hunts;
mod incidents;
mod investigations;
mod login;
mod rules;
mod search;
mod sensors;
mod timeline;

use admin::*;
use aggregate::*;
use alerts::*;
use assets::*;
use dashboard::*;
use devices::*;
use hunts::*;
use incidents::*;
use investigations::*;
pub(crate) use login::login_form;
use login::*;
use rules::*;
use search::*;
use sensors::*;
use timeline::*;

type Res = Result<Response, ConsoleError>;

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/", get(dashboard))
        .route("/login", get(login_page).post(login))
        .route("/login/code", get(code_page).post(code))
        .route("/totp", get(totp_page).post(totp_enrol))
        .route("/logout", post(logout))
        .route("/password", get(password_page).post(change_password))
        .route("/lang", get(set_lang))
        .route("/tz", get(set_tz))
        .route("/rules", get(rules))
        .route("/alerts", get(alerts))
        .route("/alerts/rows", get(alert_rows))
        .route("/alerts/bulk", post(bulk))
        .route("/alerts/{id}", get(alert))
        .route("/alerts/{id}/pcap", get(alert_pcap))
        .route("/alerts/{id}/evidence", get(alert_evidence))
        .route("/alerts/{id}/accept", post(accept_change))
        .route("/rules/edit", get(rule_edit).post(rule_edit_post))
        .route("/rules/tune", post(rule_tune))
        // Rule history: versions, diffs, restore.
        .route("/rules/history", get(rule_history).post(rule_restore))
        .route("/incidents/{id}/evidence", get(incident_evidence))
        .route("/alerts/{id}/triage", post(triage))
        .route("/incidents", get(incidents))
        .route("/incidents/{id}", get(incident).post(change_incident))
        .route("/search", get(search))
        .route("/search/export", get(export))
        .route("/search/save", post(save_search))
        .route("/search/delete", post(delete_search))
        .route("/sensors", get(sensors))
        .route("/devices", get(devices))
        .route("/users", get(users).post(add_user))
        .route("/users/update", post(update_user))
        .route("/audit", get(audit))
        // Timelines of flows and hosts, and saved investigations.
        .route("/timeline", get(timeline))
        .route("/timeline/pcap", get(timeline_pcap))
        .route("/investigations", get(investigations))
        .route("/investigations/add", post(add_step))
        .route("/investigations/{id}", get(investigation))
        .route("/investigations/{id}/attach", post(attach))
        // Hunts over stored ranges and their findings.
        .route("/hunts", get(hunts).post(start_hunt))
        .route("/hunts/{id}", get(hunt))
        .route("/hunts/{id}/promote", post(promote))
        .route("/assets/{*file}", get(asset))
        // Aggregation: top values, records over time, distinct counts.
        .route("/aggregate", get(aggregate))
}

/// What the layout needs: who is signed in and what they may open.
struct Nav {
    zones: [&'static str; 8],
    tz_listed: bool,
    rules: bool,
    user: String,
    role_key: &'static str,
    csrf: String,
    tz: String,
    alerts: bool,
    hunts: bool,
    search: bool,
    sensors: bool,
    admin: bool,
    notice: String,
    /// This page, encoded for the language and zone switches' `back`.
    back: String,
    here: String,
    /// Admins: the server is read-only, and why.
    audit_broken: String,
    /// A local account (a password and second factor of the console's own).
    local: bool,
}

fn nav(a: &Auth) -> Nav {
    let role_key = match a.session.role {
        Role::Analyst => "role.analyst",
        Role::Responder => "role.responder",
        Role::Admin => "role.admin",
        Role::Operator => "role.operator",
        Role::Viewer => "role.viewer",
    };
    Nav {
        zones: ZONES,
        tz_listed: ZONES.contains(&a.lens.tz.name()),
        rules: a.may(Perm::Rules),
        user: a.session.user.clone(),
        role_key,
        csrf: a.session.csrf.clone(),
        tz: a.lens.tz.name().to_string(),
        alerts: a.may(Perm::ReadAlerts),
        hunts: a.may(Perm::Triage),
        search: a.may(Perm::Search),
        sensors: a.may(Perm::Sensors),
        admin: a.may(Perm::Users),
        notice: String::new(),
        back: enc(&a.here),
        here: a.here.clone(),
        audit_broken: a.audit_broken.clone().unwrap_or_default(),
        local: a.session.source.is_none(),
    }
}

/// Data as this reader may see it (pseudonymised for viewers): every value
/// a page shows from the SIEM goes through here first.
fn shown(a: &Auth, mut v: Value) -> Value {
    a.lens.scrub(&mut v);
    v
}

fn page(t: impl Template) -> Res {
    let html = t.render().map_err(|e| ConsoleError::Internal(format!("template: {e}")))?;
    Ok(Html(html).into_response())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ConsoleError> + Send + 'static,
) -> Result<T, ConsoleError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ConsoleError::Internal(e.to_string()))?
}

const RANGES: [(&str, &str); 5] =
    [("1h", "range.1h"), ("24h", "range.24h"), ("7d", "range.7d"), ("30d", "range.30d"), ("all", "range.all")];

fn range_from(r: &str) -> Option<f64> {
    let secs = match r {
        "1h" => 3600.0,
        "24h" => 86_400.0,
        "7d" => 7.0 * 86_400.0,
        "30d" => 30.0 * 86_400.0,
        _ => return None,
    };
    Some(now() - secs)
}

/// A time filter as it is applied: the choice the form shows, and where it
/// starts and ends. No choice is "all time", said as such: a control
/// showing one range while another applies is what this type prevents.
/// Typed ends (`from`/`to`: ISO 8601 in the reader's zone, or a span
/// before now such as `15m`) win over the list, which then says "custom".
#[derive(Clone, Default)]
struct Range {
    code: String,
    from: Option<f64>,
    to: Option<f64>,
    from_text: String,
    to_text: String,
}

impl Range {
    /// The range as URL parameters (`range=..&from=..&to=..`).
    fn url_query(&self) -> String {
        let mut q = format!("range={}", enc(&self.code));
        for (k, v) in [("from", &self.from_text), ("to", &self.to_text)] {
            if !v.is_empty() {
                q.push_str(&format!("&{k}={}", enc(v)));
            }
        }
        q
    }

    /// The range to keep (a saved search, an investigation's step): spans
    /// before now as typed, typed times with the offset of the zone they
    /// were read in, so that another reader, or this one in another zone,
    /// gets the same times back.
    fn kept(&self, lens: &Lens) -> Range {
        let keep = |text: &str, t: Option<f64>| match t {
            Some(t) if !siem::timerange::is_relative(text) => lens.time(t),
            _ => text.to_string(),
        };
        Range { from_text: keep(&self.from_text, self.from), to_text: keep(&self.to_text, self.to), ..self.clone() }
    }
}

/// The range a page was asked for: a choice of the list, or typed ends
/// read in the reader's time zone (with [`siem::timerange::parse_range`],
/// as the API reads them).
fn range_in(a: &Auth, code: &str, from: &str, to: &str) -> Result<Range, ConsoleError> {
    let (from_text, to_text) = (from.trim().to_string(), to.trim().to_string());
    if !from_text.is_empty() || !to_text.is_empty() {
        let r = siem::timerange::parse_range(&from_text, &to_text, &a.lens.tz, now()).map_err(|e| {
            let key = match e.param {
                "from" => "error.range_from",
                _ if e.message == "is before from" => "error.range_order",
                _ => "error.range_to",
            };
            ConsoleError::Bad(crate::error::Msg::with(key, if e.param == "from" { from } else { to }))
        })?;
        return Ok(Range { code: "custom".into(), from: r.from, to: r.to, from_text, to_text });
    }
    range_of(code)
}

fn range_of(r: &str) -> Result<Range, ConsoleError> {
    let code = if r.is_empty() || r == "custom" { "all" } else { r };
    if !RANGES.iter().any(|(v, _)| *v == code) {
        return Err(ConsoleError::Bad(crate::error::Msg::with("error.range", r)));
    }
    Ok(Range { code: code.to_string(), from: range_from(code), ..Range::default() })
}

/// What a time filter applies, in words and the reader's times.
fn range_shown_to(a: &Auth, from: Option<f64>, to: Option<f64>) -> String {
    match (from, to) {
        (Some(f), Some(t)) => {
            a.t.t("range.shown_between").replace("{from}", &a.lens.time(f)).replace("{to}", &a.lens.time(t))
        }
        (Some(f), None) => a.t.t("range.shown_since").replace("{}", &a.lens.time(f)),
        (None, Some(t)) => a.t.t("range.shown_until").replace("{}", &a.lens.time(t)),
        (None, None) => a.t.t("range.shown_all").to_string(),
    }
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::Lang;

    #[test]
    fn every_data_driven_key_has_both_strings() {
        let incident = ["open", "investigating", "contained", "closed", "merged"];
        for lang in [Lang::En, Lang::Vi] {
            let t = Tr { lang };
            let mut keys: Vec<(&str, &str)> = SEVERITIES.iter().map(|s| ("sev", *s)).collect();
            keys.extend(STATUSES.iter().map(|s| ("status", *s)));
            keys.extend(Role::ALL.iter().map(|r| ("role", r.name())));
            keys.extend(incident.iter().map(|s| ("incident", *s)));
            let changes = ["new_device", "new_address", "new_service", "new_protocol", "snapshot"];
            keys.extend(changes.iter().map(|s| ("change", *s)));
            let steps = ["search", "uid", "community_id", "addr", "note"];
            keys.extend(steps.iter().map(|s| ("inv.kind", *s)));
            assert!(steps.iter().all(|s| crate::investigations::Kind::parse(s).is_some()));
            for (p, k) in keys {
                assert_ne!(t.tk(p, k), format!("{p}.{k}"), "{lang:?} lacks {p}.{k}");
            }
        }
        for s in incident {
            assert!(siem::workflow::IncidentStatus::parse(s).is_some(), "{s}");
        }
    }

    #[test]
    fn filters_become_quoted_queries_or_errors() {
        let f = AlertFilter {
            severity: "high".into(),
            rule: "a \" OR *".into(),
            src: "10.0.0.0/8".into(),
            ..Default::default()
        };
        let q = f.query().unwrap();
        assert_eq!(
            q,
            "severity:high AND id.orig_h:10.0.0.0/8 AND (rule.title:\"a \\\" OR *\" OR rule.id:\"a \\\" OR *\")"
        );
        assert!(siem::query::parse(&q, &siem::schema::Catalog::new()).is_ok());
        // A part of titles: every title it is a part of, the text itself, or a rule id.
        let f = AlertFilter {
            rule: "ftp".into(),
            rule_titles: vec!["Cleartext FTP login".into(), "FTP brute force".into()],
            ..Default::default()
        };
        assert_eq!(
            f.query().unwrap(),
            "(rule.title:\"Cleartext FTP login\" OR rule.title:\"FTP brute force\" OR rule.title:ftp OR rule.id:ftp)"
        );
        let bad = AlertFilter { src: "1.2.3.4 OR x:y".into(), ..Default::default() };
        assert!(bad.query().is_err());
        let bad = AlertFilter { severity: "severe".into(), ..Default::default() };
        assert!(bad.query().is_err());
    }

    #[test]
    fn kept_ranges_keep_spans_and_give_times_their_offset() {
        let lens = Lens { tz: chrono_tz::Asia::Ho_Chi_Minh, pseudonym_key: None, rule_texts: None };
        let now = 1_767_240_000.0;
        let r = siem::timerange::parse_range("2026-01-01 09:30", "15m", &lens.tz, now).unwrap();
        let typed = Range {
            code: "custom".into(),
            from: r.from,
            to: r.to,
            from_text: "2026-01-01 09:30".into(),
            to_text: "15m".into(),
        };
        let kept = typed.kept(&lens);
        assert_eq!((kept.from_text.as_str(), kept.to_text.as_str()), ("2026-01-01 09:30:00+07:00", "15m"));
        // Read back in another zone: the same time.
        assert_eq!(siem::timerange::parse_time(&kept.from_text, &chrono_tz::UTC, now).ok(), r.from);
    }

    #[test]
    fn switches_come_back_to_this_console_only() {
        assert_eq!(back_to("/alerts?severity=high&range=24h"), "/alerts?severity=high&range=24h");
        for other in
            ["//evil.example/", "/\\evil.example", "https://evil.example/", "", "/lang?to=en", "/x\r\nSet-Cookie: a"]
        {
            assert_eq!(back_to(other), "/", "{other:?}");
        }
    }

    #[test]
    fn csv_cells_do_not_become_formulas() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("plain"), "\"plain\"");
    }
}
