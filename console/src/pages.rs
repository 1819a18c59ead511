//! The pages and forms. Reads go through the SIEM's audited operations as
//! the signed-in user; store calls run on the blocking pool.

use crate::error::ConsoleError;
use crate::i18n::Tr;
use crate::users::{Perm, Role};
use crate::view::{attack_href, bytes, enc, quote, search_href, Lens};
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
        .route("/assets/{*file}", get(asset))
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
    search: bool,
    sensors: bool,
    admin: bool,
    notice: String,
    /// This page, encoded for the language and zone switches' `back`.
    back: String,
    here: String,
    /// Admins: the server is read-only, and why.
    audit_broken: String,
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
        search: a.may(Perm::Search),
        sensors: a.may(Perm::Sensors),
        admin: a.may(Perm::Users),
        notice: String::new(),
        back: enc(&a.here),
        here: a.here.clone(),
        audit_broken: a.audit_broken.clone().unwrap_or_default(),
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
/// starts. No choice is "all time", said as such: a control showing one
/// range while another applies is what this type prevents.
struct Range {
    code: String,
    from: Option<f64>,
}

fn range_of(r: &str) -> Result<Range, ConsoleError> {
    let code = if r.is_empty() { "all" } else { r };
    if !RANGES.iter().any(|(v, _)| *v == code) {
        return Err(ConsoleError::Bad(crate::error::Msg::with("error.range", r)));
    }
    Ok(Range { code: code.to_string(), from: range_from(code) })
}

/// What a time filter applies, in words and the reader's times.
fn range_shown(a: &Auth, from: Option<f64>) -> String {
    match from {
        Some(f) => a.t.t("range.shown_since").replace("{}", &a.lens.time(f)),
        None => a.t.t("range.shown_all").to_string(),
    }
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

// ---------------------------------------------------------------- login

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    t: Tr,
    csrf: String,
    error: String,
    /// The name typed, kept when the form comes back with an error.
    user: String,
}

const PRE_CSRF: &str = "citysoc_login";

/// The login form, with a token tied to a cookie (double submit): another
/// site cannot sign a browser in to an account of its choosing.
async fn login_page(State(c): State<Arc<Console>>, headers: HeaderMap) -> Res {
    login_form(&c, &headers, String::new(), String::new(), StatusCode::OK)
}

fn login_form(c: &Console, headers: &HeaderMap, error: String, user: String, status: StatusCode) -> Res {
    let token = crate::users::random_password();
    let html = LoginPage { t: lang_of(headers), csrf: token.clone(), error, user }
        .render()
        .map_err(|e| ConsoleError::Internal(e.to_string()))?;
    let mut resp = (status, Html(html)).into_response();
    resp.headers_mut().append(header::SET_COOKIE, c.cookie(PRE_CSRF, &token, Some(600)));
    Ok(resp)
}

async fn login(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    peer: axum::extract::ConnectInfo<std::net::SocketAddr>,
    body: Bytes,
) -> Res {
    let t = lang_of(&headers);
    let f = Form::parse(&body);
    let pre = cookie_of(&headers, PRE_CSRF).unwrap_or("");
    if pre.is_empty() || !f.get("csrf").is_some_and(|v| crate::session::same(v, pre)) {
        let user = f.get("user").unwrap_or("").trim().to_string();
        return login_form(&c, &headers, t.t("login.stale").to_string(), user, StatusCode::FORBIDDEN);
    }
    let user = f.get("user").unwrap_or("").trim().to_string();
    let password = f.get("password").unwrap_or("").to_string();
    let ip = peer.0.ip().to_string();
    // The source is limited, not the account: failing on purpose from
    // outside must not lock `admin` out for everyone.
    let key = format!("ip:{ip}");
    let keys = [key.as_str()];
    if let Some(wait) = c.limiter.blocked(&keys) {
        c.siem.metrics.login("locked");
        let mut r = login_form(&c, &headers, t.t("login.limited").to_string(), user, StatusCode::TOO_MANY_REQUESTS)?;
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return Ok(r);
    }
    let c2 = Arc::clone(&c);
    let (u2, p2) = (user.clone(), password);
    // argon2 takes tens of milliseconds on purpose: not on the runtime.
    let found = blocking(move || Ok(c2.users.verify(&u2, &p2))).await?;
    let Some((name, u)) = found else {
        c.limiter.failed(&keys);
        c.siem.metrics.login("failure");
        let _ = c.siem.audit_as(&user, &ip, "console.login_failed", json!({}));
        return login_form(&c, &headers, t.t("login.failed").to_string(), user, StatusCode::UNAUTHORIZED);
    };
    // Failures are not forgiven by a success: one account of one's own
    // must not reset the count between guesses at another.
    let start = crate::session::Start {
        must_change: u.must_change,
        second_factor: u.totp.is_some(),
        must_enrol: u.totp.is_none() && u.totp_required,
    };
    if start.second_factor {
        c.siem.audit_as(&name, &ip, "console.login_password", json!({"role": u.role.name()}))?;
    } else {
        c.siem.audit_as(&name, &ip, "console.login", json!({"role": u.role.name()}))?;
        c.siem.metrics.login("success");
    }
    let cookie = c.sessions.start(&name, u.role, start);
    let mut resp = Redirect::to(next_step(&start)).into_response();
    resp.headers_mut().append(header::SET_COOKIE, c.cookie(SESSION_COOKIE, &cookie, None));
    resp.headers_mut().append(header::SET_COOKIE, c.cookie(PRE_CSRF, "", Some(0)));
    Ok(resp)
}

/// Where a session goes next while signing in.
fn next_step(s: &crate::session::Start) -> &'static str {
    if s.second_factor {
        "/login/code"
    } else if s.must_change {
        "/password"
    } else if s.must_enrol {
        "/totp"
    } else {
        "/"
    }
}

#[derive(Template)]
#[template(path = "login_code.html")]
struct CodePage {
    t: Tr,
    csrf: String,
    error: String,
}

/// A session whose password was right and whose code is still to come.
fn pending(c: &Console, headers: &HeaderMap) -> Option<(String, crate::session::Session)> {
    let cookie = cookie_of(headers, SESSION_COOKIE)?.to_string();
    let s = c.sessions.get(&cookie)?;
    s.second_factor.then_some((cookie, s))
}

async fn code_page(State(c): State<Arc<Console>>, headers: HeaderMap) -> Res {
    let Some((_, s)) = pending(&c, &headers) else {
        return Ok(Redirect::to("/login").into_response());
    };
    page(CodePage { t: lang_of(&headers), csrf: s.csrf, error: String::new() })
}

/// The second factor: the authenticator's code, limited per source like
/// passwords.
async fn code(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    peer: axum::extract::ConnectInfo<std::net::SocketAddr>,
    body: Bytes,
) -> Res {
    let t = lang_of(&headers);
    let Some((cookie, s)) = pending(&c, &headers) else {
        return Ok(Redirect::to("/login").into_response());
    };
    let f = Form::parse(&body);
    if !f.get("csrf").is_some_and(|v| crate::session::same(v, &s.csrf)) {
        return Err(ConsoleError::Csrf);
    }
    let ip = peer.0.ip().to_string();
    let key = format!("ip:{ip}");
    let again = |error: &str, status: StatusCode| {
        page(CodePage { t, csrf: s.csrf.clone(), error: t.t(error).to_string() }).map(|r| (status, r).into_response())
    };
    if c.limiter.blocked(&[key.as_str()]).is_some() {
        c.siem.metrics.login("locked");
        return again("login.limited", StatusCode::TOO_MANY_REQUESTS);
    }
    let secret = c.users.get(&s.user).and_then(|u| u.totp);
    let ok = secret.is_some_and(|sec| c.totp.check(&s.user, &sec, f.get("code").unwrap_or("")));
    if !ok {
        c.limiter.failed(&[key.as_str()]);
        c.siem.metrics.login("failure");
        let _ = c.siem.audit_as(&s.user, &ip, "console.login_code_failed", json!({}));
        return again("code.wrong", StatusCode::UNAUTHORIZED);
    }
    c.siem.audit_as(&s.user, &ip, "console.login", json!({"role": s.role.name(), "second_factor": true}))?;
    c.siem.metrics.login("success");
    c.sessions.clear_second_factor(&cookie);
    let next = crate::session::Start { must_change: s.must_change, second_factor: false, must_enrol: s.must_enrol };
    Ok(Redirect::to(next_step(&next)).into_response())
}

#[derive(Template)]
#[template(path = "totp.html")]
struct TotpPage {
    t: Tr,
    nav: Nav,
    enrolled: bool,
    required: bool,
    secret: String,
    uri: String,
    error: String,
}

fn totp_form(a: &Auth, c: &Console, secret: String, error: String) -> Res {
    let u = c.users.get(&a.session.user).ok_or(ConsoleError::NotFound)?;
    let uri = crate::totp::uri("CitySOC", &a.session.user, &secret);
    let status = if error.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    page(TotpPage { t: a.t, nav: nav(a), enrolled: u.totp.is_some(), required: u.totp_required, secret, uri, error })
        .map(|r| (status, r).into_response())
}

/// Enrolling a second factor: a new secret, as an `otpauth://` URI for
/// the authenticator app and as text to type.
async fn totp_page(State(c): State<Arc<Console>>, a: Auth) -> Res {
    let secret = crate::totp::new_secret();
    c.sessions.offer_totp(&a.cookie, &secret);
    totp_form(&a, &c, secret, String::new())
}

/// The secret is kept once a code from it proves the app has it.
async fn totp_enrol(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    // The secret this session was offered, whatever the form says.
    let Some(secret) = a.session.pending_totp.clone() else {
        return Err(ConsoleError::Bad(crate::error::Msg::new("code.bad_secret")));
    };
    c.siem.writable()?;
    if !c.totp.check(&a.session.user, &secret, f.get("code").unwrap_or("")) {
        return totp_form(&a, &c, secret, a.t.t("code.wrong").to_string());
    }
    c.users.set_totp(&a.session.user, Some(secret))?;
    c.siem.audit_as(&a.session.user, &a.peer, "console.totp_enrol", json!({}))?;
    c.sessions.clear_must_enrol(&a.cookie);
    // Other sessions signed in without it: they sign in again.
    c.sessions.end_user(&a.session.user, Some(&a.cookie));
    Ok(Redirect::to("/").into_response())
}

async fn logout(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    a.csrf(&Form::parse(&body))?;
    c.sessions.end(&a.cookie);
    c.siem.audit_as(&a.session.user, &a.peer, "console.logout", json!({}))?;
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(header::SET_COOKIE, c.cookie(SESSION_COOKIE, "", Some(0)));
    Ok(resp)
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    t: Tr,
    nav: Nav,
    must_change: bool,
    error: String,
}

async fn password_page(a: Auth) -> Res {
    page(PasswordPage { t: a.t, nav: nav(&a), must_change: a.session.must_change, error: String::new() })
}

async fn change_password(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    let (current, new, repeat) =
        (f.get("current").unwrap_or("").to_string(), f.get("new").unwrap_or(""), f.get("repeat").unwrap_or(""));
    let fail = |key: &str| {
        let mut p = PasswordPage { t: a.t, nav: nav(&a), must_change: a.session.must_change, error: String::new() };
        p.error = a.t.t(key).to_string();
        page(p).map(|r| (StatusCode::BAD_REQUEST, r).into_response())
    };
    if new != repeat {
        return fail("password.mismatch");
    }
    if new == current {
        return fail("password.same");
    }
    if let Err(m) = crate::users::check_password(&a.session.user, new) {
        let mut p = PasswordPage { t: a.t, nav: nav(&a), must_change: a.session.must_change, error: m.text(a.t) };
        p.error = m.text(a.t);
        return page(p).map(|r| (StatusCode::BAD_REQUEST, r).into_response());
    }
    let c2 = Arc::clone(&c);
    let user = a.session.user.clone();
    let new = new.to_string();
    let ok = blocking(move || {
        if c2.users.verify(&user, &current).is_none() {
            return Ok(false);
        }
        c2.users.set_password(&user, &new, false)?;
        Ok(true)
    })
    .await?;
    if !ok {
        return fail("password.wrong");
    }
    c.siem.audit_as(&a.session.user, &a.peer, "console.password", json!({}))?;
    c.sessions.end_user(&a.session.user, Some(&a.cookie));
    c.sessions.clear_must_change(&a.cookie);
    let next = crate::session::Start { must_change: false, second_factor: false, must_enrol: a.session.must_enrol };
    Ok(Redirect::to(next_step(&next)).into_response())
}

#[derive(Deserialize)]
struct LangParams {
    to: String,
    /// The page the switch was used on, path and query.
    #[serde(default)]
    back: String,
}

/// Where a switch goes back to: a page of this console, never another site
/// (`//host` and `/\host` are other sites to a browser).
fn back_to(back: &str) -> &str {
    let ours = back.starts_with('/') && !back.starts_with("//") && !back.contains('\\') && !back.starts_with("/lang");
    let ours = ours && !back.starts_with("/tz") && !back.chars().any(char::is_control);
    if ours {
        back
    } else {
        "/"
    }
}

/// Stores the language choice and goes back to the page it was made on.
async fn set_lang(State(c): State<Arc<Console>>, Query(p): Query<LangParams>) -> Res {
    let lang = crate::i18n::Lang::parse(&p.to).ok_or_else(|| ConsoleError::Invalid("language is en or vi".into()))?;
    let mut resp = Redirect::to(back_to(&p.back)).into_response();
    resp.headers_mut().append(header::SET_COOKIE, c.cookie("lang", lang.code(), Some(365 * 86_400)));
    Ok(resp)
}

/// Zones offered in the footer; any IANA name works through `?to=`.
pub const ZONES: [&str; 8] = [
    "Asia/Ho_Chi_Minh",
    "UTC",
    "Asia/Bangkok",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Europe/London",
    "Europe/Paris",
    "America/New_York",
];

/// Stores the reader's time zone.
async fn set_tz(State(c): State<Arc<Console>>, Query(p): Query<LangParams>) -> Res {
    let tz: chrono_tz::Tz =
        p.to.parse().map_err(|_| ConsoleError::Bad(crate::error::Msg::with("error.tz", p.to.as_str())))?;
    let mut resp = Redirect::to(back_to(&p.back)).into_response();
    resp.headers_mut().append(header::SET_COOKIE, c.cookie("tz", tz.name(), Some(365 * 86_400)));
    Ok(resp)
}

// ---------------------------------------------------------------- alerts

/// One alert as a row of the queue.
struct AlertRow {
    id: String,
    time: String,
    severity: String,
    title: String,
    count: u64,
    src: String,
    dst: String,
    sensor: String,
    techniques: String,
    status: String,
    assignee: String,
}

const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];
const STATUSES: [&str; 6] =
    ["new", "acknowledged", "in_progress", "closed_true_positive", "closed_false_positive", "closed_benign"];

fn severity_rank(s: &str) -> usize {
    SEVERITIES.iter().position(|x| *x == s).map_or(0, |i| SEVERITIES.len() - i)
}

fn alert_row(lens: &Lens, a: &Value) -> AlertRow {
    let s = |k: &str| a[k].as_str().unwrap_or("").to_string();
    let techniques = a["mitre_attack"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    let severity = s("severity");
    AlertRow {
        id: s("id"),
        time: lens.time(a["ts"].as_f64().unwrap_or(0.0)),
        severity: if SEVERITIES.contains(&severity.as_str()) { severity } else { "info".into() },
        title: lens.alert_title(a),
        count: a["count"].as_u64().unwrap_or(1),
        src: lens.endpoint(a, "orig"),
        dst: lens.endpoint(a, "resp"),
        sensor: s("sensor"),
        techniques,
        status: a["triage"]["status"].as_str().unwrap_or("new").to_string(),
        assignee: a["triage"]["assignee"].as_str().unwrap_or("").to_string(),
    }
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
struct AlertFilter {
    severity: String,
    status: String,
    rule: String,
    sensor: String,
    src: String,
    dst: String,
    technique: String,
    range: String,
}

impl AlertFilter {
    /// The filter as a query of the search language, every value quoted.
    fn query(&self) -> Result<String, ConsoleError> {
        let mut parts = Vec::new();
        let mut add = |field: &str, v: &str| {
            if !v.trim().is_empty() {
                parts.push(format!("{field}:{}", quote(v.trim())));
            }
        };
        if !self.severity.is_empty() && !SEVERITIES.contains(&self.severity.as_str()) {
            return Err(ConsoleError::Bad(crate::error::Msg::with("error.severity", self.severity.as_str())));
        }
        add("severity", &self.severity);
        add("sensor", &self.sensor);
        add("mitre_attack", &self.technique);
        let mut q = parts.join(" AND ");
        for (field, v) in [("id.orig_h", &self.src), ("id.resp_h", &self.dst)] {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            // An address or a network: anything else is refused here, not
            // passed on as query syntax.
            let ok = v.parse::<std::net::IpAddr>().is_ok() || v.parse::<cidr::IpCidr>().is_ok();
            if !ok {
                return Err(ConsoleError::Bad(crate::error::Msg::with("error.address", v)));
            }
            let term = if v.contains('/') { format!("{field}:{v}") } else { format!("{field}:{}", quote(v)) };
            q = if q.is_empty() { term } else { format!("{q} AND {term}") };
        }
        let rule = self.rule.trim();
        if !rule.is_empty() {
            let term = format!("(rule.title:{} OR rule.id:{})", quote(rule), quote(rule));
            q = if q.is_empty() { term } else { format!("{q} AND {term}") };
        }
        Ok(q)
    }

    fn url_query(&self) -> String {
        [
            ("severity", &self.severity),
            ("status", &self.status),
            ("rule", &self.rule),
            ("sensor", &self.sensor),
            ("src", &self.src),
            ("dst", &self.dst),
            ("technique", &self.technique),
            ("range", &self.range),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
    }
}

/// The queue: most severe first, then newest.
async fn queue(c: &Arc<Console>, a: &Auth, f: &AlertFilter) -> Result<(usize, Vec<AlertRow>), ConsoleError> {
    a.need(Perm::ReadAlerts)?;
    // A filter by a real address would tell a viewer which pseudonym it
    // hides: an oracle, refused.
    if a.lens.pseudonymised() && !(f.src.trim().is_empty() && f.dst.trim().is_empty()) {
        return Err(ConsoleError::Refused(crate::error::Msg::new("error.viewer_address_filter")));
    }
    if !f.status.is_empty() && !STATUSES.contains(&f.status.as_str()) {
        return Err(ConsoleError::Bad(crate::error::Msg::with("error.status", f.status.as_str())));
    }
    let p = AlertsParams {
        q: Some(f.query()?),
        status: (!f.status.is_empty()).then(|| f.status.clone()),
        from: range_of(&f.range)?.from,
        to: None,
        limit: Some(500),
        offset: None,
    };
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let (total, hits) = blocking(move || Ok(siem.list_alerts(&who, &peer, &p)?)).await?;
    let hits: Vec<Value> = hits.into_iter().map(|h| shown(a, h)).collect();
    let mut rows: Vec<AlertRow> = hits.iter().map(|h| alert_row(&a.lens, h)).collect();
    let ts: HashMap<String, f64> =
        hits.iter().map(|h| (h["id"].as_str().unwrap_or("").to_string(), h["ts"].as_f64().unwrap_or(0.0))).collect();
    rows.sort_by(|x, y| {
        severity_rank(&y.severity)
            .cmp(&severity_rank(&x.severity))
            .then(ts.get(&y.id).unwrap_or(&0.0).total_cmp(ts.get(&x.id).unwrap_or(&0.0)))
    });
    Ok((total, rows))
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    t: Tr,
    nav: Nav,
    f: AlertFilter,
    severities: [&'static str; 5],
    statuses: [&'static str; 6],
    ranges: [(&'static str, &'static str); 5],
    rows: Vec<AlertRow>,
    total: usize,
    can_triage: bool,
    /// What the time filter applies.
    range_shown: String,
    /// Filters by address (not for pseudonymised readers).
    address_filters: bool,
    query: String,
    back: String,
}

async fn alerts(State(c): State<Arc<Console>>, a: Auth, Query(mut f): Query<AlertFilter>) -> Res {
    let range = range_of(&f.range)?;
    f.range = range.code;
    let (total, rows) = queue(&c, &a, &f).await?;
    let query = f.url_query();
    page(AlertsPage {
        t: a.t,
        nav: nav(&a),
        severities: SEVERITIES,
        statuses: STATUSES,
        ranges: RANGES,
        rows,
        total,
        can_triage: a.may(Perm::Triage),
        address_filters: !a.lens.pseudonymised(),
        range_shown: range_shown(&a, range.from),
        back: format!("/alerts?{query}"),
        query,
        f,
    })
}

#[derive(Template)]
#[template(path = "alert_rows.html")]
struct AlertRows {
    t: Tr,
    rows: Vec<AlertRow>,
    can_triage: bool,
}

/// The queue's rows alone, for the page's live refresh; the total rides in
/// a header.
async fn alert_rows(State(c): State<Arc<Console>>, a: Auth, Query(f): Query<AlertFilter>) -> Res {
    let (total, rows) = queue(&c, &a, &f).await?;
    let mut r = page(AlertRows { t: a.t, rows, can_triage: a.may(Perm::Triage) })?;
    r.headers_mut().insert("x-total", HeaderValue::from(total));
    Ok(r)
}

/// Acknowledge, assign or close many alerts at once.
async fn bulk(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Triage)?;
    let ids: Vec<String> = f.all("ids").into_iter().map(str::to_string).collect();
    if ids.is_empty() || ids.len() > 500 {
        return Err(ConsoleError::Bad(crate::error::Msg::new("error.bulk_count")));
    }
    let action = f.get("action").unwrap_or("");
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let target = f.get("incident").unwrap_or("").trim().to_string();
    if action == "incident_new" || action == "incident_add" {
        let new = action == "incident_new";
        let id = blocking(move || {
            Ok(if new {
                siem.create_incident(&who, &peer, NewIncident { title: target, alerts: ids })?.id
            } else {
                let change = IncidentChange { add_alerts: ids, ..Default::default() };
                siem.change_incident(&who, &peer, &target, change)?.id
            })
        })
        .await?;
        return Ok(Redirect::to(&format!("/incidents/{}", enc(&id))).into_response());
    }
    let reason = f.get("reason").map(str::to_string).filter(|r| !r.trim().is_empty());
    let change = |id: &str| -> Result<TriageChange, ConsoleError> {
        let _ = id;
        Ok(match action {
            "assign" => TriageChange {
                status: None,
                reason: None,
                assign: Some(f.get("assignee").unwrap_or("").to_string()),
                comment: None,
            },
            s if STATUSES.contains(&s) => {
                TriageChange { status: Some(s.to_string()), reason: reason.clone(), assign: None, comment: None }
            }
            other => return Err(ConsoleError::Invalid(format!("unknown action '{other}'"))),
        })
    };
    let mut changes = Vec::new();
    for id in &ids {
        changes.push((id.clone(), change(id)?));
    }
    blocking(move || {
        for (id, ch) in changes {
            siem.triage_alert(&who, &peer, &id, ch)?;
        }
        Ok(())
    })
    .await?;
    let back = f.get("back").filter(|b| b.starts_with("/alerts") && !b.starts_with("//")).unwrap_or("/alerts");
    Ok(Redirect::to(back).into_response())
}

/// A record as a row of an evidence or results table.
struct RecordRow {
    time: String,
    log: String,
    sensor: String,
    fields: Vec<(String, String, String)>,
}

fn record_row(lens: &Lens, r: &Value) -> RecordRow {
    RecordRow {
        time: lens.time(r["ts"].as_f64().unwrap_or(0.0)),
        log: r["_log"].as_str().unwrap_or("").to_string(),
        sensor: r["_sensor"].as_str().unwrap_or("").to_string(),
        fields: lens.fields(r, &["ts", "_log", "_sensor"]),
    }
}

#[derive(Template)]
#[template(path = "alert.html")]
struct AlertPage {
    t: Tr,
    nav: Nav,
    a: AlertRow,
    summary: String,
    rule_source: String,
    rule_id: String,
    rule_version: String,
    first_last: String,
    techniques: Vec<(String, String)>,
    matched: Vec<(String, String)>,
    reason: String,
    incident: String,
    can_triage: bool,
    can_search: bool,
    statuses: [&'static str; 6],
    comments: Vec<(String, String, String)>,
    trail: Vec<(String, String, String)>,
    uid: String,
    uid_query: String,
    can_packets: bool,
    /// The IoT model's change, as it would be accepted (admins only).
    accept_line: String,
    evidence: Vec<RecordRow>,
    related: Vec<AlertRow>,
    /// The triage form as it was sent, when it was refused.
    kept: TriageKept,
}

/// An admin accepts what an IoT profile alert reported as the device's new
/// normal: it joins `[iot] accepted` in `models.toml` (sensors read it when
/// they start). Audited.
async fn accept_change(State(c): State<Arc<Console>>, a: Auth, Path(id): Path<String>, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Tune)?;
    // Changes audited after they are made wait while the trail is broken.
    c.siem.writable()?;
    let Some(models) = c.cfg.models_file.clone() else {
        return Err(ConsoleError::Invalid("this console was started without a rules folder".into()));
    };
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let id2 = id.clone();
    blocking(move || {
        let al = siem.alert(&who, &peer, &id2)?;
        let line = iot_accept_line(&al).ok_or_else(|| ConsoleError::Invalid("not a device profile alert".into()))?;
        let added = crate::tune::accept(&models, &line)?;
        siem.audit_as(&who, &peer, "model.accept", json!({"id": id2, "accepted": line, "added": added}))?;
        Ok(())
    })
    .await?;
    Ok(Redirect::to(&format!("/alerts/{}", enc(&id))).into_response())
}

fn iot_accept_line(al: &Value) -> Option<String> {
    if al["rule.source"].as_str() != Some("model") || al["rule.id"].as_str() != Some("model:iot") {
        return None;
    }
    let matched: Vec<&str> = al["matched"].as_array()?.iter().filter_map(Value::as_str).collect();
    crate::tune::accepted_line(al["id.orig_h"].as_str()?, &matched)
}

/// Packets and evidence bundles carry the flows as they were: they cannot be
/// pseudonymised faithfully, so a pseudonymised reader is refused them, and
/// told why.
fn need_packets(a: &Auth) -> Result<(), ConsoleError> {
    if a.lens.pseudonymised() {
        return Err(ConsoleError::Refused(crate::error::Msg::new("error.viewer_packets")));
    }
    a.need(Perm::Packets)
}

/// A signed evidence bundle of an alert or an incident, as a download.
async fn evidence_bundle(c: Arc<Console>, a: Auth, p: siem::api::EvidenceParams) -> Res {
    need_packets(&a)?;
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let (name, bytes) = blocking(move || Ok(siem.export_evidence(&who, &peer, p)?)).await?;
    Ok((
        [
            ("content-type", "application/x-tar".to_string()),
            ("content-disposition", format!("attachment; filename=\"{name}\"")),
        ],
        bytes,
    )
        .into_response())
}

async fn alert_evidence(State(c): State<Arc<Console>>, a: Auth, Path(id): Path<String>) -> Res {
    evidence_bundle(c, a, siem::api::EvidenceParams { alert: Some(id), incident: None }).await
}

async fn incident_evidence(State(c): State<Arc<Console>>, a: Auth, Path(id): Path<String>) -> Res {
    evidence_bundle(c, a, siem::api::EvidenceParams { alert: None, incident: Some(id) }).await
}

/// The packets of an alert's flow, from the sensor's ring, as a pcap file.
async fn alert_pcap(State(c): State<Arc<Console>>, a: Auth, Path(id): Path<String>) -> Res {
    need_packets(&a)?;
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let (name, bytes) = blocking(move || {
        let al = siem.alert(&who, &peer, &id)?;
        // The alert's own flow, or the first flow of its evidence.
        let uid = al["uid"].as_str().map(String::from).or_else(|| {
            al["evidence"]
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .find_map(|e| e.strip_prefix("conn:").map(String::from))
        });
        let Some(uid) = uid else {
            return Err(ConsoleError::Missing("this alert names no flow".into()));
        };
        let p = siem::api::PcapParams { uid: Some(uid), ..Default::default() };
        Ok(siem.flow_pcap(&who, &peer, p)?)
    })
    .await?;
    Ok((
        [
            ("content-type", "application/vnd.tcpdump.pcap".to_string()),
            ("content-disposition", format!("attachment; filename=\"{name}\"")),
        ],
        bytes,
    )
        .into_response())
}

/// What the triage form held, given back with the reason it was refused.
#[derive(Default)]
struct TriageKept {
    status: String,
    reason: String,
    assign: String,
    comment: String,
    error: String,
}

async fn alert(State(c): State<Arc<Console>>, a: Auth, Path(id): Path<String>) -> Res {
    alert_page(c, a, id, TriageKept::default()).await
}

async fn alert_page(c: Arc<Console>, a: Auth, id: String, kept: TriageKept) -> Res {
    a.need(Perm::ReadAlerts)?;
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let can_search = a.may(Perm::Search);
    let id2 = id.clone();
    let (al, evidence, related, trail) = blocking(move || {
        let al = siem.alert(&who, &peer, &id2)?;
        let uid = al["uid"].as_str().unwrap_or("").to_string();
        // The flow's records, for those who may see records.
        let evidence = if !uid.is_empty() && can_search {
            siem.flow_timeline(&who, &peer, PivotParams { uid: Some(uid), community_id: None })?
        } else {
            Vec::new()
        };
        let src = al["id.orig_h"].as_str().unwrap_or("").to_string();
        let related = if src.is_empty() {
            Vec::new()
        } else {
            let p = AlertsParams {
                q: Some(format!("id.orig_h:{}", quote(&src))),
                status: None,
                from: None,
                to: None,
                limit: Some(20),
                offset: None,
            };
            siem.list_alerts(&who, &peer, &p)?.1.into_iter().filter(|r| r["id"] != al["id"]).collect()
        };
        let trail: Vec<siem::audit::AuditEntry> = match &siem.audit {
            Some(log) => log
                .read(None, None, 100_000)
                .map_err(|e| ConsoleError::Internal(e.to_string()))?
                .into_iter()
                .filter(|e| e.detail["id"].as_str() == Some(id2.as_str()))
                .collect(),
            None => Vec::new(),
        };
        Ok((al, evidence, related, trail))
    })
    .await?;
    // Scrubbed together: a name the flow's records mark goes everywhere.
    let (n_ev, n_rel) = (evidence.len(), related.len());
    let mut all: Vec<Value> = std::iter::once(al).chain(evidence).chain(related).collect();
    a.lens.scrub_all(&mut all);
    let related: Vec<Value> = all.split_off(1 + n_ev);
    let evidence: Vec<Value> = all.split_off(1);
    let al = all.pop().unwrap_or(Value::Null);
    debug_assert_eq!((evidence.len(), related.len()), (n_ev, n_rel));
    let lens = &a.lens;
    let refused = !kept.error.is_empty();
    let s = |k: &str| al[k].as_str().unwrap_or("").to_string();
    let techniques = al["mitre_attack"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|t| attack_href(t).map(|h| (t.to_string(), h)))
        .collect();
    let matched = al["matched"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| match m.split_once('=') {
            Some((k, v)) if !k.contains(' ') && !k.starts_with('$') => (k.to_string(), v.to_string()),
            _ => (String::new(), m.to_string()),
        })
        .collect();
    let comments = al["triage"]["comments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|cm| {
            (
                cm["by"].as_str().unwrap_or("").to_string(),
                lens.time(cm["ts"].as_f64().unwrap_or(0.0)),
                cm["text"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let trail = trail
        .iter()
        .map(|e| {
            let what = match e.detail["status"].as_str() {
                Some(st) => format!("{} → {}", a.t.action(&e.action), a.t.tk("status", st)),
                None => a.t.action(&e.action),
            };
            (lens.time(e.ts), e.who.clone(), what)
        })
        .collect();
    let uid = s("uid");
    let first_last = format!(
        "{} – {}",
        lens.time(al["first_seen"].as_f64().unwrap_or(0.0)),
        lens.time(al["last_seen"].as_f64().unwrap_or(0.0))
    );
    page(AlertPage {
        t: a.t,
        nav: nav(&a),
        summary: lens.alert_summary(&al),
        rule_source: s("rule.source"),
        rule_id: s("rule.id"),
        rule_version: s("rule.version"),
        first_last,
        techniques,
        matched,
        reason: al["triage"]["reason"].as_str().unwrap_or("").to_string(),
        incident: al["incident"].as_str().unwrap_or("").to_string(),
        can_triage: a.may(Perm::Triage),
        can_search,
        statuses: STATUSES,
        comments,
        trail,
        uid_query: enc(&format!("uid:{}", quote(&uid))),
        can_packets: a.may(Perm::Packets)
            && (!uid.is_empty()
                || al["evidence"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|x| x.as_str().is_some_and(|s| s.starts_with("conn:"))))),
        accept_line: if a.may(Perm::Tune) && c.cfg.models_file.is_some() {
            iot_accept_line(&al).unwrap_or_default()
        } else {
            String::new()
        },
        uid,
        evidence: evidence.iter().map(|r| record_row(lens, r)).collect(),
        related: related.iter().map(|r| alert_row(lens, r)).collect(),
        a: alert_row(lens, &al),
        kept,
    })
    .map(|r| if refused { (StatusCode::BAD_REQUEST, r).into_response() } else { r })
}

async fn triage(State(c): State<Arc<Console>>, a: Auth, Path(id): Path<String>, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Triage)?;
    let nonempty = |k: &str| f.get(k).map(str::to_string).filter(|v| !v.trim().is_empty());
    let change = TriageChange {
        status: nonempty("status"),
        reason: nonempty("reason"),
        assign: nonempty("assign"),
        comment: nonempty("comment"),
    };
    let kept = TriageKept {
        status: f.get("status").unwrap_or("").to_string(),
        reason: f.get("reason").unwrap_or("").to_string(),
        assign: f.get("assign").unwrap_or("").to_string(),
        comment: f.get("comment").unwrap_or("").to_string(),
        error: String::new(),
    };
    // The SIEM refuses it too; asked here first, the reader is told in
    // their language.
    let closing = change.status.as_deref().is_some_and(|s| s.starts_with("closed_"));
    if closing && change.reason.is_none() {
        let error = crate::error::Msg::new("triage.needs_reason").text(a.t);
        return alert_page(c, a, id, TriageKept { error, ..kept }).await;
    }
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let id2 = id.clone();
    match blocking(move || Ok(siem.triage_alert(&who, &peer, &id2, change)?)).await {
        Ok(_) => Ok(Redirect::to(&format!("/alerts/{}", enc(&id))).into_response()),
        // Refused for what was typed: the page again, the typing kept.
        Err(e @ (ConsoleError::Invalid(_) | ConsoleError::Bad(_))) | Err(e @ ConsoleError::Api(_)) if !matches!(&e, ConsoleError::Api(m) if m.status != StatusCode::BAD_REQUEST) =>
        {
            let error = match &e {
                ConsoleError::Bad(m) => m.text(a.t),
                ConsoleError::Api(m) => m.text(a.t),
                other => other.to_string(),
            };
            alert_page(c, a, id, TriageKept { error, ..kept }).await
        }
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------- incidents

struct IncidentRow {
    id: String,
    title: String,
    status: String,
    owner: String,
    alerts: Vec<String>,
    updated: String,
}

#[derive(Template)]
#[template(path = "incidents.html")]
struct IncidentsPage {
    t: Tr,
    nav: Nav,
    rows: Vec<IncidentRow>,
}

async fn incidents(State(c): State<Arc<Console>>, a: Auth) -> Res {
    a.need(Perm::ReadAlerts)?;
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let list = blocking(move || Ok(siem.list_incidents(&who, &peer, None)?)).await?;
    let rows = list.into_iter().map(|i| incident_row(&a.lens, shown_incident(&a, i, &mut Vec::new()))).collect();
    page(IncidentsPage { t: a.t, nav: nav(&a), rows })
}

/// An incident as this reader may see it (titles and notes are free text),
/// with the names its alerts mark as people's.
fn shown_incident(a: &Auth, i: siem::workflow::Incident, alerts: &mut Vec<Value>) -> siem::workflow::Incident {
    if !a.lens.pseudonymised() {
        return i;
    }
    let id = i.id.clone();
    alerts.push(serde_json::to_value(&i).unwrap_or(Value::Null));
    a.lens.scrub_all(alerts);
    let v = alerts.pop().unwrap_or(Value::Null);
    // Alert ids are kept: they are the links to the alerts.
    serde_json::from_value(v)
        .map(|mut x: siem::workflow::Incident| {
            x.id = id;
            x.alerts = i.alerts.clone();
            x
        })
        .unwrap_or_else(|_| siem::workflow::Incident {
            title: String::new(),
            notes: Vec::new(),
            evidence: Vec::new(),
            ..i
        })
}

fn incident_row(lens: &Lens, i: siem::workflow::Incident) -> IncidentRow {
    IncidentRow {
        status: serde_json::to_value(i.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
        owner: i.owner.unwrap_or_default(),
        updated: lens.time(i.updated_ts),
        id: i.id,
        title: i.title,
        alerts: i.alerts,
    }
}

const INCIDENT_STATUSES: [&str; 4] = ["open", "investigating", "contained", "closed"];

#[derive(Template)]
#[template(path = "incident.html")]
struct IncidentPage {
    t: Tr,
    nav: Nav,
    i: IncidentRow,
    created: String,
    auto: String,
    notes: Vec<(String, String, String)>,
    evidence: Vec<String>,
    alerts: Vec<AlertRow>,
    statuses: [&'static str; 4],
    can_change: bool,
    can_export: bool,
}

async fn incident(State(c): State<Arc<Console>>, a: Auth, Path(id): Path<String>) -> Res {
    a.need(Perm::ReadAlerts)?;
    let wf = c.siem.workflow.as_ref().ok_or_else(|| ConsoleError::Invalid("no triage state kept".into()))?;
    let inc = wf.incident(&id).ok_or(ConsoleError::NotFound)?;
    c.siem.audit_as(&a.session.user, &a.peer, "incident.view", json!({"id": id}))?;
    let ids = inc.alerts.clone();
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let alerts = blocking(move || {
        let mut out = Vec::new();
        for chunk in ids.chunks(100) {
            let q = chunk.iter().map(|i| format!("id:{}", quote(i))).collect::<Vec<_>>().join(" OR ");
            let p = AlertsParams { q: Some(q), status: None, from: None, to: None, limit: Some(100), offset: None };
            out.extend(siem.list_alerts(&who, &peer, &p)?.1);
        }
        Ok(out)
    })
    .await?;
    let mut alerts = alerts;
    let inc = shown_incident(&a, inc, &mut alerts);
    let lens = &a.lens;
    let notes = inc.notes.iter().map(|n| (n.by.clone(), lens.time(n.ts), n.text.clone())).collect();
    page(IncidentPage {
        t: a.t,
        nav: nav(&a),
        created: format!("{} · {}", inc.created_by, lens.time(inc.created_ts)),
        auto: inc.auto.clone().unwrap_or_default(),
        notes,
        evidence: inc.evidence.clone(),
        alerts: alerts.iter().map(|x| alert_row(lens, x)).collect(),
        statuses: INCIDENT_STATUSES,
        can_change: a.may(Perm::Triage),
        can_export: a.may(Perm::Packets),
        i: incident_row(lens, inc),
    })
}

/// Status, owner, a note, evidence, alerts removed, another incident merged.
async fn change_incident(State(c): State<Arc<Console>>, a: Auth, Path(id): Path<String>, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Triage)?;
    let nonempty = |k: &str| f.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let change = IncidentChange {
        status: nonempty("status"),
        owner: nonempty("owner"),
        note: nonempty("note"),
        evidence: nonempty("evidence").into_iter().collect(),
        add_alerts: Vec::new(),
        remove_alerts: f.all("remove").into_iter().map(str::to_string).collect(),
        merge: nonempty("merge"),
    };
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let id2 = id.clone();
    blocking(move || Ok(siem.change_incident(&who, &peer, &id2, change)?)).await?;
    Ok(Redirect::to(&format!("/incidents/{}", enc(&id))).into_response())
}

// ---------------------------------------------------------------- search

#[derive(Deserialize, Default)]
#[serde(default)]
struct SearchForm {
    q: String,
    range: String,
    offset: usize,
    /// Columns to show, comma-separated field names (none: every field).
    cols: String,
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    t: Tr,
    nav: Nav,
    q: String,
    range: String,
    range_shown: String,
    ranges: [(&'static str, &'static str); 5],
    fields: Vec<String>,
    searched: bool,
    error: String,
    total: u64,
    hits: Vec<RecordRow>,
    histogram: String,
    export_query: String,
    prev: String,
    next: String,
    /// The reader's saved searches: (name, link).
    saved: Vec<(String, String)>,
    /// The columns chosen (catalog fields only), and each hit's cells in them.
    cols: Vec<String>,
    cols_text: String,
    cells: Vec<Vec<(String, String)>>,
    /// What the loss ledger says about the range (empty without one).
    completeness: String,
    complete: bool,
}

const PAGE: usize = 50;

/// A histogram's interval: about 60 bars over the range.
fn interval_for(from: Option<f64>, span_hint: f64) -> f64 {
    let span = from.map_or(span_hint, |f| now() - f).max(60.0);
    let nice = [60.0, 300.0, 900.0, 3600.0, 3.0 * 3600.0, 6.0 * 3600.0, 86_400.0, 7.0 * 86_400.0];
    nice.into_iter().find(|n| span / n <= 60.0).unwrap_or(30.0 * 86_400.0)
}

fn chart(labels: Vec<String>, sets: Vec<(String, Vec<u64>)>, kind: &str) -> String {
    let datasets: Vec<Value> = sets.into_iter().map(|(label, data)| json!({"label": label, "data": data})).collect();
    json!({"type": kind, "labels": labels, "datasets": datasets}).to_string()
}

fn buckets(r: AggResult) -> Vec<siem::store::Bucket> {
    match r {
        AggResult::Buckets(b) => b,
        _ => Vec::new(),
    }
}

async fn search(State(c): State<Arc<Console>>, a: Auth, Query(f): Query<SearchForm>) -> Res {
    a.need(Perm::Search)?;
    let mut fields: Vec<String> = c.siem.catalog.fields.iter().map(|f| f.path.clone()).collect();
    fields.sort();
    let range = range_of(&f.range)?;
    let range_from_ts = range.from;
    let range = range.code;
    // Only catalog fields become columns: the choice is echoed into links
    // and headers.
    let cols: Vec<String> = f
        .cols
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty() && fields.iter().any(|x| x == c))
        .take(20)
        .map(String::from)
        .collect();
    let cols_text = cols.join(",");
    let mut p = SearchPage {
        t: a.t,
        nav: nav(&a),
        q: f.q.clone(),
        range: range.clone(),
        range_shown: range_shown(&a, range_from_ts),
        ranges: RANGES,
        fields,
        searched: false,
        error: String::new(),
        total: 0,
        hits: Vec::new(),
        histogram: String::new(),
        export_query: format!("q={}&range={}", enc(&f.q), enc(&range)),
        prev: String::new(),
        next: String::new(),
        saved: c
            .saved
            .list(&a.session.user)
            .into_iter()
            .map(|s| {
                let href = format!("/search?q={}&range={}", enc(&s.q), enc(&s.range));
                (s.name, href)
            })
            .collect(),
        cols,
        cols_text,
        cells: Vec::new(),
        completeness: String::new(),
        complete: false,
    };
    if f.q.trim().is_empty() {
        return page(p);
    }
    let from = range_from_ts;
    let sp = SearchParams {
        q: Some(f.q.clone()),
        from,
        to: None,
        sort: None,
        order: None,
        limit: Some(PAGE),
        offset: Some(f.offset.min(10_000)),
        completeness: None,
        cursor: None,
    };
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let q = f.q.clone();
    let r = blocking(move || {
        let res = siem.search_records(&who, &peer, &sp)?;
        let span = siem
            .aggregate_records(
                &who,
                &peer,
                &AggParams {
                    q: Some(q.clone()),
                    from,
                    to: None,
                    agg: "stats".into(),
                    field: Some("ts".into()),
                    size: None,
                    interval: None,
                },
            )
            .ok()
            .and_then(|s| match s {
                AggResult::Stats { min: Some(lo), max: Some(hi), .. } => Some(hi - lo),
                _ => None,
            })
            .unwrap_or(86_400.0);
        let interval = interval_for(from, span);
        let hist = siem.aggregate_records(
            &who,
            &peer,
            &AggParams {
                q: Some(q),
                from,
                to: None,
                agg: "histogram".into(),
                field: None,
                size: None,
                interval: Some(interval),
            },
        )?;
        let verdict = match from {
            Some(from) => {
                Some(siem.loss_ledger(&who, &peer, &LedgerParams { from: Some(from), ..LedgerParams::default() })?.1)
            }
            None => None,
        };
        Ok((res, buckets(hist), verdict))
    })
    .await;
    match r {
        Ok((res, hist, verdict)) => {
            if let Some(v) = verdict {
                p.complete = v.complete;
                p.completeness = if v.complete {
                    a.t.t("search.complete").to_string()
                } else {
                    let silent = if v.unreported.is_empty() {
                        String::new()
                    } else {
                        format!(" · {}: {}", a.t.t("sensors.unreported"), v.unreported.join(", "))
                    };
                    // Lost without a count: only when there are some.
                    let silent = if v.records_unaccounted > 0 {
                        format!(" · {} {}{silent}", v.records_unaccounted, a.t.t("search.unaccounted"))
                    } else {
                        silent
                    };
                    format!(
                        "{}: {} {} · {} {} · {} {}{silent}",
                        a.t.t("search.incomplete"),
                        v.packets_dropped,
                        a.t.t("sensors.dropped"),
                        v.records_spool_dropped,
                        a.t.t("sensors.spool_dropped"),
                        v.pending,
                        a.t.t("sensors.pending"),
                    )
                };
            }
            p.searched = true;
            p.total = res.total;
            p.hits = res.hits.into_iter().map(|h| record_row(&a.lens, &shown(&a, h))).collect();
            if !p.cols.is_empty() {
                p.cells = p
                    .hits
                    .iter()
                    .map(|r| {
                        p.cols
                            .iter()
                            .map(|c| {
                                r.fields
                                    .iter()
                                    .find(|(k, _, _)| k == c)
                                    .map_or((String::new(), String::new()), |(_, v, h)| (v.clone(), h.clone()))
                            })
                            .collect()
                    })
                    .collect();
            }
            let labels = hist.iter().map(|b| a.lens.time(b.key.parse::<f64>().unwrap_or(0.0))).collect();
            p.histogram =
                chart(labels, vec![(a.t.t("search.hits").to_string(), hist.iter().map(|b| b.count).collect())], "bar");
            let base = format!("/search?q={}&range={}&cols={}", enc(&f.q), enc(&range), enc(&p.cols_text));
            if f.offset > 0 {
                p.prev = format!("{base}&offset={}", f.offset.saturating_sub(PAGE));
            }
            if ((f.offset + PAGE) as u64) < res.total && f.offset + PAGE <= 10_000 {
                p.next = format!("{base}&offset={}", f.offset + PAGE);
            }
            page(p)
        }
        Err(ConsoleError::Invalid(m)) => {
            p.error = m;
            page(p).map(|r| (StatusCode::BAD_REQUEST, r).into_response())
        }
        Err(ConsoleError::Api(m)) if m.status == StatusCode::BAD_REQUEST => {
            p.error = m.text(a.t);
            page(p).map(|r| (StatusCode::BAD_REQUEST, r).into_response())
        }
        Err(e) => Err(e),
    }
}

/// Saves the search in the form under a name, for its user.
async fn save_search(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Search)?;
    let s = crate::saved::Saved {
        name: f.get("name").unwrap_or("").to_string(),
        q: f.get("q").unwrap_or("").to_string(),
        range: f.get("range").filter(|r| RANGES.iter().any(|(v, _)| v == r)).unwrap_or("all").to_string(),
    };
    // A search that could not run is not kept (the language's bounds hold
    // when it runs too).
    siem::query::parse(&s.q, &c.siem.catalog).map_err(|e| ConsoleError::Invalid(format!("invalid query: {e}")))?;
    let back = format!("/search?q={}&range={}", enc(&s.q), enc(&s.range));
    c.siem.audit_as(&a.session.user, &a.peer, "console.search_save", json!({"name": s.name, "q": s.q}))?;
    c.saved.save(&a.session.user, s)?;
    Ok(Redirect::to(&back).into_response())
}

async fn delete_search(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Search)?;
    let name = f.get("name").unwrap_or("");
    c.siem.audit_as(&a.session.user, &a.peer, "console.search_delete", json!({"name": name}))?;
    c.saved.delete(&a.session.user, name)?;
    Ok(Redirect::to("/search").into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ExportForm {
    q: String,
    range: String,
    format: String,
}

const EXPORT_MAX: usize = 10_000;

/// The first matches of a search as CSV or JSON lines (at most 10 000).
async fn export(State(c): State<Arc<Console>>, a: Auth, Query(f): Query<ExportForm>) -> Res {
    a.need(Perm::Search)?;
    if f.format != "csv" && f.format != "json" {
        return Err(ConsoleError::Bad(crate::error::Msg::new("error.export_format")));
    }
    let sp = SearchParams {
        q: Some(f.q.clone()),
        from: range_of(&f.range)?.from,
        to: None,
        sort: None,
        order: None,
        limit: Some(EXPORT_MAX),
        offset: None,
        completeness: None,
        cursor: None,
    };
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let res = blocking(move || {
        siem.audit_as(&who, &peer, "export", json!({"q": sp.q, "format": "search"}))?;
        Ok(siem.search_records(&who, &peer, &sp)?)
    })
    .await?;
    let lens = &a.lens;
    let shown: Vec<Value> = res
        .hits
        .into_iter()
        .map(|h| {
            let h = shown(&a, h);
            let mut m = serde_json::Map::new();
            for (k, v, _) in lens.fields(&h, &[]) {
                m.insert(k, Value::String(v));
            }
            Value::Object(m)
        })
        .collect();
    let (body, ctype, ext) = if f.format == "json" {
        let mut out = String::new();
        for h in &shown {
            out.push_str(&h.to_string());
            out.push('\n');
        }
        (out, "application/x-ndjson", "jsonl")
    } else {
        let mut cols: Vec<String> = Vec::new();
        for h in &shown {
            for k in h.as_object().into_iter().flat_map(|m| m.keys()) {
                if !cols.contains(k) {
                    cols.push(k.clone());
                }
            }
        }
        let mut out = cols.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(",");
        out.push('\n');
        for h in &shown {
            let row: Vec<String> = cols.iter().map(|c| csv_cell(h[c].as_str().unwrap_or(""))).collect();
            out.push_str(&row.join(","));
            out.push('\n');
        }
        (out, "text/csv; charset=utf-8", "csv")
    };
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"citysoc-search.{ext}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
    );
    Ok(r)
}

/// A CSV cell, quoted, with a leading formula character neutralised so a
/// spreadsheet does not run what a packet put there.
fn csv_cell(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{v}") } else { v.to_string() };
    format!("\"{}\"", v.replace('"', "\"\""))
}

// ---------------------------------------------------------------- dashboard

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    t: Tr,
    nav: Nav,
    range: String,
    range_shown: String,
    ranges: [(&'static str, &'static str); 5],
    severity_counts: Vec<(&'static str, u64)>,
    records: u64,
    alerts_chart: String,
    rules_chart: String,
    protocols_chart: String,
    talkers: Vec<(String, String, u64)>,
    destinations: Vec<(String, String, u64)>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RangeForm {
    range: String,
}

async fn dashboard(State(c): State<Arc<Console>>, a: Auth, Query(f): Query<RangeForm>) -> Res {
    let range = range_of(&f.range)?;
    let from = range.from;
    let range = range.code;
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let agg = move |siem: &AppState, q: &str, agg: &str, field: Option<&str>, size: usize, interval: Option<f64>| {
        siem.aggregate_records(
            &who,
            &peer,
            &AggParams {
                q: Some(q.into()),
                from,
                to: None,
                agg: agg.into(),
                field: field.map(str::to_string),
                size: Some(size),
                interval,
            },
        )
    };
    let data = blocking(move || {
        let by_sev = buckets(agg(&siem, "_log:alerts", "terms", Some("severity"), 10, None)?);
        let span = match agg(&siem, "_log:alerts", "stats", Some("ts"), 0, None)? {
            AggResult::Stats { min: Some(lo), max: Some(hi), .. } => hi - lo,
            _ => 86_400.0,
        };
        let interval = interval_for(from, span);
        let mut over_time = Vec::new();
        for s in SEVERITIES {
            let q = format!("_log:alerts AND severity:{s}");
            over_time.push((s, buckets(agg(&siem, &q, "histogram", None, 0, Some(interval))?)));
        }
        let rules = buckets(agg(&siem, "_log:alerts", "terms", Some("rule.title"), 10, None)?);
        let protocols = buckets(agg(&siem, "NOT _log:alerts", "terms", Some("_log"), 12, None)?);
        let talkers = buckets(agg(&siem, "_log:conn", "terms", Some("id.orig_h"), 10, None)?);
        let dests = buckets(agg(&siem, "_log:conn", "terms", Some("id.resp_h"), 10, None)?);
        let records = match agg(&siem, "", "stats", Some("ts"), 0, None)? {
            AggResult::Stats { count, .. } => count,
            _ => 0,
        };
        Ok((by_sev, over_time, rules, protocols, talkers, dests, records))
    })
    .await?;
    let (by_sev, over_time, rules, protocols, talkers, dests, records) = data;
    let lens = &a.lens;
    let severity_counts =
        SEVERITIES.iter().map(|s| (*s, by_sev.iter().find(|b| b.key == *s).map_or(0, |b| b.count))).collect();
    // One time axis for every severity.
    let mut keys: Vec<f64> =
        over_time.iter().flat_map(|(_, b)| b.iter().filter_map(|x| x.key.parse::<f64>().ok())).collect();
    keys.sort_by(f64::total_cmp);
    keys.dedup();
    let sets = over_time
        .iter()
        .map(|(s, b)| {
            let data = keys
                .iter()
                .map(|k| b.iter().find(|x| x.key.parse::<f64>().ok() == Some(*k)).map_or(0, |x| x.count))
                .collect();
            (a.t.tk("sev", s), data)
        })
        .collect();
    let alerts_chart = chart(keys.iter().map(|k| lens.time(*k)).collect(), sets, "stacked");
    let rules_chart = chart(
        rules.iter().map(|b| lens.rule_title(&lens.text(&b.key))).collect(),
        vec![(a.t.t("nav.alerts").to_string(), rules.iter().map(|b| b.count).collect())],
        "hbar",
    );
    let protocols_chart = chart(
        protocols.iter().map(|b| b.key.clone()).collect(),
        vec![(a.t.t("dash.records").to_string(), protocols.iter().map(|b| b.count).collect())],
        "doughnut",
    );
    let addr_rows = |b: &[siem::store::Bucket], field: &str| -> Vec<(String, String, u64)> {
        b.iter()
            .map(|x| {
                let shown = lens.text(&x.key);
                let href = if lens.pseudonymised() || !a.may(Perm::Search) {
                    String::new()
                } else {
                    search_href(&format!("{field}:{}", quote(&x.key)))
                };
                (shown, href, x.count)
            })
            .collect()
    };
    page(DashboardPage {
        t: a.t,
        nav: nav(&a),
        range,
        range_shown: range_shown(&a, from),
        ranges: RANGES,
        severity_counts,
        records,
        alerts_chart,
        rules_chart,
        protocols_chart,
        talkers: addr_rows(&talkers, "id.orig_h"),
        destinations: addr_rows(&dests, "id.resp_h"),
    })
}

// ---------------------------------------------------------------- rules

#[derive(Template)]
#[template(path = "rule_edit.html")]
struct RuleEditPage {
    t: Tr,
    nav: Nav,
    files: Vec<String>,
    path: String,
    text: String,
    problems: Vec<crate::editor::Problem>,
    checked: bool,
    report: Option<crate::editor::TestReport>,
    saved: String,
    versions: Vec<(String, String, String)>,
}

#[derive(Deserialize)]
struct RuleEditQuery {
    path: Option<String>,
}

fn editor(c: &Console) -> Result<Arc<dyn crate::editor::RuleEditor>, ConsoleError> {
    c.cfg
        .editor
        .0
        .clone()
        .ok_or_else(|| ConsoleError::Invalid("this console was started without a rules folder".into()))
}

/// The path only if it is one of the editable files: nothing else reaches
/// the file system.
fn known_path(ed: &dyn crate::editor::RuleEditor, path: &str) -> Result<String, ConsoleError> {
    ed.files().into_iter().find(|f| f == path).ok_or(ConsoleError::NotFound)
}

fn versions(a: &Auth, ed: &dyn crate::editor::RuleEditor, path: &str) -> Vec<(String, String, String)> {
    ed.versions(path).into_iter().rev().take(20).map(|v| (v.id, a.lens.time(v.ts), v.sha256)).collect()
}

/// The rules folder's files; one of them open for editing.
async fn rule_edit(State(c): State<Arc<Console>>, a: Auth, Query(q): Query<RuleEditQuery>) -> Res {
    a.need(Perm::Tune)?;
    let ed = editor(&c)?;
    let files = ed.files();
    let (path, text) = match q.path {
        Some(p) => {
            let p = known_path(ed.as_ref(), &p)?;
            let e2 = Arc::clone(&ed);
            let p2 = p.clone();
            let text = blocking(move || e2.read(&p2).map_err(ConsoleError::Io)).await?;
            (p, text)
        }
        None => (String::new(), String::new()),
    };
    let versions = if path.is_empty() { Vec::new() } else { versions(&a, ed.as_ref(), &path) };
    page(RuleEditPage {
        t: a.t,
        nav: nav(&a),
        files,
        path,
        text,
        problems: Vec::new(),
        checked: false,
        report: None,
        saved: String::new(),
        versions,
    })
}

/// Check, test against the bundled captures, or save (only what checks
/// clean). Tests and saves are audited; a save keeps the old content.
async fn rule_edit_post(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Tune)?;
    let ed = editor(&c)?;
    let path = known_path(ed.as_ref(), f.get("path").unwrap_or(""))?;
    // Browsers send CR LF in text areas; the files are LF.
    let text = f.get("text").unwrap_or("").replace("\r\n", "\n");
    if text.len() > 1 << 20 {
        return Err(ConsoleError::Invalid("a rule file is 1 MiB at most".into()));
    }
    let action = f.get("action").unwrap_or("check").to_string();
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let (e2, p2, t2) = (Arc::clone(&ed), path.clone(), text.clone());
    let (problems, report, saved) = blocking(move || {
        let problems = e2.check(&p2, &t2);
        let mut report = None;
        let mut saved = String::new();
        match action.as_str() {
            "test" => {
                let r = e2.test(&p2, &t2).map_err(ConsoleError::Internal)?;
                siem.audit_as(
                    &who,
                    &peer,
                    "rule.test",
                    json!({"path": p2, "failed_cases": r.failures.len(), "cases": r.cases}),
                )?;
                report = Some(r);
            }
            "save" if problems.is_empty() => {
                siem.writable()?;
                let (old, new) = e2.save(&p2, &t2).map_err(ConsoleError::Io)?;
                siem.audit_as(
                    &who,
                    &peer,
                    "rule.save",
                    json!({"path": p2, "sha256_before": old, "sha256_after": new}),
                )?;
                saved = new;
            }
            _ => {}
        }
        Ok((problems, report, saved))
    })
    .await?;
    let versions = versions(&a, ed.as_ref(), &path);
    page(RuleEditPage {
        t: a.t,
        nav: nav(&a),
        files: ed.files(),
        path,
        text,
        problems,
        checked: true,
        report,
        saved,
        versions,
    })
}

/// A rule as the rules page shows it: how often it fired and how its
/// alerts were judged.
struct RuleRow {
    disabled: bool,
    source: String,
    id: String,
    title: String,
    alerts: u64,
    true_positive: u64,
    false_positive: u64,
    benign: u64,
    open: u64,
    fp_ratio: String,
    href: String,
}

#[derive(Template)]
#[template(path = "rules.html")]
struct RulesPage {
    t: Tr,
    nav: Nav,
    rows: Vec<RuleRow>,
    judged_of: usize,
    can_edit: bool,
    can_tune: bool,
}

/// Switch a rule off or on, or suppress its alerts by a field's value for
/// some days: written to `tuning.toml` (sensors read it when they start),
/// audited.
async fn rule_tune(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Tune)?;
    c.siem.writable()?;
    let Some(tuning) = c.cfg.tuning_file.clone() else {
        return Err(ConsoleError::Invalid("this console was started without a rules folder".into()));
    };
    let get = |k: &str| f.get(k).unwrap_or("").trim().to_string();
    let (rule, action) = (get("rule"), get("action"));
    let (field, value, reason) = (get("field"), get("value"), get("reason"));
    let days: Option<u64> = match get("days").as_str() {
        "" => None,
        d => Some(
            d.parse()
                .ok()
                .filter(|d| (1..=3650).contains(d))
                .ok_or_else(|| ConsoleError::Invalid("days: 1 to 3650".into()))?,
        ),
    };
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let editor = c.cfg.editor.0.clone();
    blocking(move || {
        let old = match std::fs::read_to_string(&tuning) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(ConsoleError::Io(e.to_string())),
        };
        let (new, detail) = match action.as_str() {
            "disable" | "enable" => (
                crate::tune::disabled_text(&old, &rule, action == "disable")?,
                json!({"rule": rule, "action": action}),
            ),
            "suppress" => {
                let until = days.map(|d| {
                    let t = std::time::SystemTime::now() + std::time::Duration::from_secs(d * 86_400);
                    humantime::format_rfc3339_seconds(t).to_string()
                });
                let s = crate::tune::Suppression {
                    rule: &rule,
                    field: &field,
                    value: &value,
                    until: until.as_deref(),
                    reason: &reason,
                };
                let new = crate::tune::suppress_text(&old, &s)?;
                (new, json!({"rule": rule, "action": action, "field": field, "value": value, "until": until, "reason": reason}))
            }
            _ => return Err(ConsoleError::Invalid("action is disable, enable or suppress".into())),
        };
        // Through the rule editor when there is one, so the change is
        // versioned like any edit; otherwise written in place.
        match editor.filter(|e| e.files().iter().any(|f| f == "tuning.toml")) {
            Some(e) => {
                e.save("tuning.toml", &new).map_err(ConsoleError::Io)?;
            }
            None => {
                let tmp = tuning.with_extension("toml.tmp");
                std::fs::write(&tmp, &new)
                    .and_then(|_| std::fs::rename(&tmp, &tuning))
                    .map_err(|e| ConsoleError::Io(e.to_string()))?;
            }
        }
        siem.audit_as(&who, &peer, "rule.tune", detail)?;
        Ok(())
    })
    .await?;
    Ok(Redirect::to("/rules").into_response())
}

/// Rules that fired, with hit counts over every stored alert and outcomes
/// from the triage of the newest 10 000 alerts.
async fn rules(State(c): State<Arc<Console>>, a: Auth) -> Res {
    a.need(Perm::Rules)?;
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let (hits, alerts) = blocking(move || {
        let hits = buckets(siem.aggregate_records(
            &who,
            &peer,
            &AggParams {
                q: Some("_log:alerts".into()),
                from: None,
                to: None,
                agg: "terms".into(),
                field: Some("rule.id".into()),
                size: Some(1000),
                interval: None,
            },
        )?);
        let p = AlertsParams {
            q: None,
            status: None,
            from: None,
            to: None,
            limit: Some(siem::store::MAX_LIMIT),
            offset: None,
        };
        Ok((hits, siem.list_alerts(&who, &peer, &p)?.1))
    })
    .await?;
    let mut rows: Vec<RuleRow> = hits
        .into_iter()
        .map(|b| RuleRow {
            href: format!("/alerts?rule={}", enc(&b.key)),
            disabled: false,
            id: b.key,
            source: String::new(),
            title: String::new(),
            alerts: b.count,
            true_positive: 0,
            false_positive: 0,
            benign: 0,
            open: 0,
            fp_ratio: "—".into(),
        })
        .collect();
    for al in &alerts {
        let Some(r) = rows.iter_mut().find(|r| al["rule.id"].as_str() == Some(r.id.as_str())) else { continue };
        if r.title.is_empty() {
            r.title = a.lens.alert_title(al);
            r.source = al["rule.source"].as_str().unwrap_or("").to_string();
        }
        match al["triage"]["status"].as_str().unwrap_or("new") {
            "closed_true_positive" => r.true_positive += 1,
            "closed_false_positive" => r.false_positive += 1,
            "closed_benign" => r.benign += 1,
            _ => r.open += 1,
        }
    }
    for r in &mut rows {
        let judged = r.true_positive + r.false_positive + r.benign;
        if judged > 0 {
            r.fp_ratio = format!("{:.0}%", 100.0 * r.false_positive as f64 / judged as f64);
        }
    }
    let can_edit = a.may(Perm::Tune) && c.cfg.editor.0.is_some();
    let can_tune = a.may(Perm::Tune) && c.cfg.tuning_file.is_some();
    let off = c.cfg.tuning_file.as_deref().map(crate::tune::disabled).unwrap_or_default();
    for r in &mut rows {
        r.disabled = off.contains(&r.id);
    }
    page(RulesPage { t: a.t, nav: nav(&a), rows, judged_of: alerts.len(), can_edit, can_tune })
}

// ---------------------------------------------------------------- sensors

#[derive(Template)]
#[template(path = "sensors.html")]
struct SensorsPage {
    t: Tr,
    nav: Nav,
    sensors: Vec<SensorRow>,
    storage: Vec<(String, u64, String, String, String)>,
}

/// A sensor's health as its records and stats reports tell it.
struct SensorRow {
    name: String,
    records: u64,
    alerts: u64,
    last: String,
    /// Since its last record.
    lag: String,
    packets: u64,
    dropped: u64,
    drop_ratio: String,
    /// Records per hour over the day up to its last record (Chart.js).
    chart: String,
    /// The loss ledger over that day: made by the sensor, stored here,
    /// deleted from its full spool, waiting at its last report.
    made: u64,
    stored: u64,
    spool_dropped: u64,
    pending: String,
    rules: String,
    version: String,
    ledger: Vec<LedgerRow>,
}

struct LedgerRow {
    start: String,
    packets: u64,
    dropped: u64,
    made: u64,
    spool_dropped: u64,
    shipped: u64,
    stored: u64,
    pending: String,
    complete: bool,
}

async fn sensors(State(c): State<Arc<Console>>, a: Auth) -> Res {
    a.need(Perm::Sensors)?;
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let (rows, parts) = blocking(move || {
        let terms = |q: &str| -> Result<Vec<siem::store::Bucket>, ConsoleError> {
            Ok(buckets(siem.aggregate_records(
                &who,
                &peer,
                &AggParams {
                    q: Some(q.into()),
                    from: None,
                    to: None,
                    agg: "terms".into(),
                    field: Some("_sensor".into()),
                    size: Some(200),
                    interval: None,
                },
            )?))
        };
        let all = terms("")?;
        let alerts = terms("_log:alerts")?;
        let mut rows = Vec::new();
        for b in all {
            let last = siem
                .search_records(
                    &who,
                    &peer,
                    &SearchParams {
                        q: Some(format!("_sensor:{}", quote(&b.key))),
                        from: None,
                        to: None,
                        sort: None,
                        order: None,
                        limit: Some(1),
                        offset: None,
                        completeness: None,
                        cursor: None,
                    },
                )?
                .hits
                .first()
                .and_then(|h| h["ts"].as_f64())
                .unwrap_or(0.0);
            let n_alerts = alerts.iter().find(|x| x.key == b.key).map_or(0, |x| x.count);
            let q = |extra: &str| format!("_sensor:{}{extra}", quote(&b.key));
            let agg = |q: String, agg: &str, field: Option<&str>, from: Option<f64>, interval: Option<f64>| {
                siem.aggregate_records(
                    &who,
                    &peer,
                    &AggParams {
                        q: Some(q),
                        from,
                        to: from.map(|_| last + 1.0),
                        agg: agg.into(),
                        field: field.map(String::from),
                        size: None,
                        interval,
                    },
                )
            };
            // Stats reports count from the start of a run: the ledger turns
            // them into what happened in each hour.
            let (windows, _) = siem.loss_ledger(
                &who,
                &peer,
                &LedgerParams {
                    from: Some((last - 86_400.0).max(0.0)),
                    to: Some(last + 1.0),
                    window: Some(3600.0),
                    sensor: Some(b.key.clone()),
                },
            )?;
            let hist = buckets(agg(q(""), "histogram", None, Some(last - 86_400.0), Some(3600.0))?);
            rows.push((b.key, b.count, n_alerts, last, windows, hist));
        }
        let parts = siem.store.partitions().map_err(|e| ConsoleError::Internal(e.to_string()))?;
        Ok((rows, parts))
    })
    .await?;
    let now_s = now();
    let sensors = rows
        .into_iter()
        .map(|(name, records, alerts, last, windows, hist)| {
            let total = |f: fn(&siem::ledger::Window) -> u64| windows.iter().map(f).sum::<u64>();
            let (packets, dropped) = (total(|w| w.packets_read), total(|w| w.packets_dropped));
            let latest = |f: fn(&siem::ledger::Window) -> Option<String>| windows.iter().rev().find_map(f);
            let ledger = windows
                .iter()
                .rev()
                .map(|w| LedgerRow {
                    start: a.lens.time(w.start),
                    packets: w.packets_read,
                    dropped: w.packets_dropped,
                    made: w.records_made,
                    spool_dropped: w.records_spool_dropped,
                    shipped: w.records_shipped,
                    stored: w.records_stored,
                    pending: w.pending.map_or("—".into(), |p| p.to_string()),
                    complete: w.complete(),
                })
                .collect();
            let labels = hist.iter().map(|b| a.lens.time(b.key.parse::<f64>().unwrap_or(0.0))).collect();
            let chart = chart(
                labels,
                vec![(a.t.t("sensors.records").to_string(), hist.iter().map(|b| b.count).collect())],
                "line",
            );
            SensorRow {
                name,
                records,
                alerts,
                last: a.lens.time(last),
                lag: lag_text(now_s - last),
                packets,
                dropped,
                drop_ratio: if packets > 0 {
                    format!("{:.3}%", 100.0 * dropped as f64 / (packets + dropped) as f64)
                } else {
                    "—".into()
                },
                chart,
                made: total(|w| w.records_made),
                stored: total(|w| w.records_stored),
                spool_dropped: total(|w| w.records_spool_dropped),
                pending: latest(|w| w.pending.map(|p| p.to_string())).unwrap_or_else(|| "—".into()),
                rules: latest(|w| w.rules_version.clone()).unwrap_or_else(|| "—".into()),
                version: latest(|w| w.version.clone()).unwrap_or_else(|| "—".into()),
                ledger,
            }
        })
        .collect();
    let storage = siem::retention::status(&parts, &c.siem.retention)
        .into_iter()
        .map(|s| {
            let age = s.policy.max_age.map_or("—".to_string(), |d| format!("{} d", d.as_secs() / 86_400));
            let budget = s.policy.max_bytes.map_or("—".to_string(), bytes);
            (
                s.class.name().to_string(),
                s.records,
                bytes(s.bytes),
                s.oldest.unwrap_or_default(),
                format!("{age} · {budget}"),
            )
        })
        .collect();
    page(SensorsPage { t: a.t, nav: nav(&a), sensors, storage })
}

/// `3 min`, `5 h`, `12 d`: how long a sensor has been silent.
fn lag_text(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.0} h", s / 3600.0)
    } else {
        format!("{:.0} d", s / 86_400.0)
    }
}

// ---------------------------------------------------------------- devices

/// A device as the inventory's latest snapshot (or its first change) shows it.
struct DeviceRow {
    host: String,
    mac: String,
    vendor: String,
    name: String,
    services: String,
    protocols: String,
    peers: String,
    first_seen: String,
    last_seen: String,
    /// Changed within a day of the newest record.
    recent: bool,
}

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    t: Tr,
    nav: Nav,
    rows: Vec<DeviceRow>,
    changes: Vec<(String, String, String, String, String)>,
}

const DEVICE_ROWS: usize = 2000;

/// The passive inventory: every device with its latest snapshot, and the
/// newest changes, devices that changed in the last day first.
async fn devices(State(c): State<Arc<Console>>, a: Auth) -> Res {
    if !(a.may(Perm::Sensors) || a.may(Perm::Search)) {
        return Err(ConsoleError::Forbidden);
    }
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let (snapshots, changes) = blocking(move || {
        let find = |q: &str, limit: usize| -> Result<Vec<Value>, ConsoleError> {
            let p = SearchParams {
                q: Some(q.into()),
                from: None,
                to: None,
                sort: None,
                order: None,
                limit: Some(limit),
                offset: None,
                completeness: None,
                cursor: None,
            };
            Ok(siem.search_records(&who, &peer, &p)?.hits)
        };
        Ok((
            find("_log:known_devices AND change:snapshot", DEVICE_ROWS)?,
            find("_log:known_devices AND NOT change:snapshot", 500)?,
        ))
    })
    .await?;
    let lens = &a.lens;
    let newest = changes.iter().chain(&snapshots).filter_map(|r| r["ts"].as_f64()).fold(0.0, f64::max);
    let recent_hosts: std::collections::HashSet<&str> = changes
        .iter()
        .filter(|r| r["ts"].as_f64().is_some_and(|t| newest - t < 86_400.0))
        .filter_map(|r| r["host"].as_str())
        .collect();
    let list = |v: &Value| {
        v.as_array().map(|x| x.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()
    };
    let mut seen = std::collections::HashSet::new();
    let mut rows = Vec::new();
    // Snapshots newest first: the first of each host is its latest; hosts
    // with no snapshot yet come from their first change.
    for r in snapshots.iter().chain(changes.iter().rev()) {
        let Some(host) = r["host"].as_str() else { continue };
        if !seen.insert(host.to_string()) {
            continue;
        }
        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
        rows.push(DeviceRow {
            host: lens.addr(host),
            mac: if lens.pseudonymised() { String::new() } else { s("mac") },
            vendor: s("vendor"),
            name: s("dhcp_host_name"),
            services: list(&r["services"]),
            protocols: list(&r["protocols"]),
            peers: r["peers"].as_u64().map_or(String::new(), |n| n.to_string()),
            first_seen: r["first_seen"].as_f64().or(r["ts"].as_f64()).map_or(String::new(), |t| lens.time(t)),
            last_seen: r["last_seen"].as_f64().or(r["ts"].as_f64()).map_or(String::new(), |t| lens.time(t)),
            recent: recent_hosts.contains(host),
        });
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.recent));
    let changes = changes
        .iter()
        .take(100)
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
            let what = match (r["proto"].as_str(), r["port"].as_u64(), r["service"].as_str()) {
                (Some(p), Some(port), svc) => format!("{p}/{port} {}", svc.unwrap_or("")),
                (_, _, Some(svc)) => svc.to_string(),
                _ => String::new(),
            };
            let peer = r["peer"].as_str().map(|p| lens.addr(p)).unwrap_or_default();
            (lens.time(r["ts"].as_f64().unwrap_or(0.0)), lens.addr(&s("host")), s("change"), what, peer)
        })
        .collect();
    page(DevicesPage { t: a.t, nav: nav(&a), rows, changes })
}

// ---------------------------------------------------------------- admin

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    t: Tr,
    nav: Nav,
    users: Vec<(String, &'static str, bool, bool, bool, bool)>,
    roles: Vec<&'static str>,
    error: String,
    created: String,
    form: UserForm,
}

/// What the add form held, given back with an error.
#[derive(Default)]
struct UserForm {
    name: String,
    role: String,
}

fn users_page(c: &Console, a: &Auth, error: Option<crate::error::Msg>, created: String, form: UserForm) -> Res {
    let users = c
        .users
        .list()
        .into_iter()
        .map(|(n, u)| (n, u.role.name(), u.disabled, u.must_change, u.totp.is_some(), u.totp_required))
        .collect();
    let status = if error.is_none() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let error = error.map(|m| m.text(a.t)).unwrap_or_default();
    page(UsersPage {
        t: a.t,
        nav: nav(a),
        users,
        roles: Role::ALL.iter().map(|r| r.name()).collect(),
        error,
        created,
        form,
    })
    .map(|r| (status, r).into_response())
}

async fn users(State(c): State<Arc<Console>>, a: Auth) -> Res {
    a.need(Perm::Users)?;
    users_page(&c, &a, None, String::new(), UserForm::default())
}

/// A role the form names: none, one of ours, or an error saying which.
fn role_field(f: &Form) -> Result<Option<Role>, crate::error::Msg> {
    match f.get("role").map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(r) => Role::parse(r).map(Some).ok_or_else(|| crate::error::Msg::with("users.bad_role", r)),
    }
}

/// Adds an account with a one-time password shown once to the admin.
async fn add_user(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Users)?;
    let name = f.get("name").unwrap_or("").trim().to_string();
    let form = UserForm { name: name.clone(), role: f.get("role").unwrap_or("").to_string() };
    let role = match role_field(&f) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return users_page(&c, &a, Some(crate::error::Msg::with("users.bad_role", "")), String::new(), form)
        }
        Err(m) => return users_page(&c, &a, Some(m), String::new(), form),
    };
    c.siem.writable()?;
    let password = crate::users::random_password();
    let (c2, n2, p2) = (Arc::clone(&c), name.clone(), password.clone());
    match blocking(move || c2.users.add(&n2, role, &p2)).await {
        Ok(stored) => {
            c.siem.audit_as(
                &a.session.user,
                &a.peer,
                "console.user_add",
                json!({"user": stored, "role": role.name()}),
            )?;
            users_page(&c, &a, None, password, UserForm::default())
        }
        Err(ConsoleError::Bad(m)) => users_page(&c, &a, Some(m), String::new(), form),
        Err(e) => Err(e),
    }
}

async fn update_user(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Users)?;
    let name = f.get("name").unwrap_or("").to_string();
    let role = match role_field(&f) {
        Ok(r) => r,
        Err(m) => return users_page(&c, &a, Some(m), String::new(), UserForm::default()),
    };
    let flag = |k: &str| -> Result<Option<bool>, crate::error::Msg> {
        match f.get(k) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(crate::error::Msg::with("users.bad_value", other)),
        }
    };
    let (disabled, totp_required) = match (flag("disabled"), flag("totp_required")) {
        (Ok(d), Ok(t)) => (d, t),
        (Err(m), _) | (_, Err(m)) => return users_page(&c, &a, Some(m), String::new(), UserForm::default()),
    };
    c.siem.writable()?;
    let change = crate::users::Change { role, disabled, totp_required, totp_reset: f.get("totp_reset") == Some("1") };
    let name = match c.users.update(&name, change.clone()) {
        Ok(stored) => stored,
        Err(ConsoleError::Bad(m)) => return users_page(&c, &a, Some(m), String::new(), UserForm::default()),
        Err(other) => return Err(other),
    };
    let mut created = String::new();
    if f.get("reset") == Some("1") {
        created = crate::users::random_password();
        let (c2, n2, p2) = (Arc::clone(&c), name.clone(), created.clone());
        blocking(move || c2.users.set_password(&n2, &p2, true)).await?;
    }
    c.siem.audit_as(
        &a.session.user,
        &a.peer,
        "console.user_update",
        json!({"user": name, "role": role.map(Role::name), "disabled": disabled, "reset": !created.is_empty(),
               "totp_required": totp_required, "totp_reset": change.totp_reset}),
    )?;
    // Whatever changed, the user signs in again under the new terms.
    if name != a.session.user {
        c.sessions.end_user(&name, None);
    }
    users_page(&c, &a, None, created, UserForm::default())
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    t: Tr,
    nav: Nav,
    chain: String,
    action: String,
    who: String,
    entries: Vec<(u64, String, String, String, String, String)>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AuditForm {
    action: String,
    who: String,
}

async fn audit(State(c): State<Arc<Console>>, a: Auth, Query(f): Query<AuditForm>) -> Res {
    a.need(Perm::Audit)?;
    if c.siem.audit.is_none() {
        return Err(ConsoleError::Invalid("no audit trail kept".into()));
    }
    c.siem.audit_as(&a.session.user, &a.peer, "audit.read", json!({"action": f.action, "who": f.who}))?;
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let (action, who) = (nonempty(&f.action), nonempty(&f.who));
    let c2 = Arc::clone(&c);
    let (entries, chain) = blocking(move || {
        let log = c2.siem.audit.as_ref().ok_or(ConsoleError::NotFound)?;
        let e = log.read(action.as_deref(), who.as_deref(), 500).map_err(|e| ConsoleError::Internal(e.to_string()))?;
        Ok((e, log.path().to_path_buf()))
    })
    .await?;
    let chain = match siem::audit::verify(&chain) {
        Ok((n, _)) => format!("{} {n}", a.t.t("audit.chain_ok")),
        Err(e) => format!("{}: {e}", a.t.t("audit.chain_broken")),
    };
    let entries = entries
        .into_iter()
        .rev()
        .map(|e| (e.seq, a.lens.time(e.ts), e.who, e.from, a.t.action(&e.action), e.detail.to_string()))
        .collect();
    page(AuditPage { t: a.t, nav: nav(&a), chain, action: f.action, who: f.who, entries })
}

// ---------------------------------------------------------------- assets

const ASSETS: [(&str, &str, &str); 3] = [
    ("app.css", "text/css; charset=utf-8", include_str!("../assets/app.css")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../assets/app.js")),
    (
        "vendor/chart-4.6.1.umd.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/vendor/chart-4.6.1.umd.min.js"),
    ),
];

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, ..)| *name == file) {
        Some((_, ctype, body)) => {
            ([(header::CONTENT_TYPE, *ctype), (header::CACHE_CONTROL, "public, max-age=3600")], *body).into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
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
        let bad = AlertFilter { src: "1.2.3.4 OR x:y".into(), ..Default::default() };
        assert!(bad.query().is_err());
        let bad = AlertFilter { severity: "severe".into(), ..Default::default() };
        assert!(bad.query().is_err());
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
