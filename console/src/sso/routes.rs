//! The sign-in routes of the provider (`/login/oidc`, its callback) and
//! the directory's turn on the password form.

use super::{Identity, Refusal};
use crate::error::ConsoleError;
use crate::{cookie_of, lang_of, Console, SESSION_COOKIE};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use std::sync::Arc;

type Res = Result<Response, ConsoleError>;

#[derive(askama::Template)]
#[template(path = "sso_continue.html")]
struct ContinuePage {
    t: crate::i18n::Tr,
}

/// Binds a begun sign-in to the browser that began it. `SameSite=Lax`,
/// not `Strict`: it must come back with the provider's redirect, a
/// navigation from another site.
const STATE_COOKIE: &str = "citysoc_oidc";

pub fn routes() -> Router<Arc<Console>> {
    Router::new().route("/login/oidc", get(begin)).route("/login/oidc/callback", get(callback))
}

fn status_of(key: &str) -> StatusCode {
    match key {
        "sso.unreachable" | "sso.ldap_down" => StatusCode::SERVICE_UNAVAILABLE,
        "sso.no_role" | "sso.denied" => StatusCode::FORBIDDEN,
        "login.failed" => StatusCode::UNAUTHORIZED,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn state_cookie(c: &Console, value: &str, max_age: u64) -> HeaderValue {
    let secure = if c.cfg.secure_cookies { "; Secure" } else { "" };
    // The value is the flow's random state (URL-safe base64): nothing to escape.
    HeaderValue::from_str(&format!(
        "{STATE_COOKIE}={value}; Path=/login/oidc; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// A refused sign-in: counted against the source, audited, and the sign-in
/// page again with the reason.
fn refuse(c: &Console, headers: &HeaderMap, ip: &str, source: &str, who: &str, r: Refusal) -> Res {
    tracing::warn!(source, user = who, reason = %r.detail, "sign-in refused");
    c.limiter.failed(&[format!("ip:{ip}").as_str()]);
    c.siem.metrics.login(if r.key == "login.limited" { "locked" } else { "failure" });
    let _ = c.siem.audit_as(who, ip, "console.login_failed", json!({"source": source, "reason": r.detail}));
    let t = lang_of(headers);
    crate::pages::login_form(c, headers, t.t(r.key).to_string(), String::new(), status_of(r.key))
}

/// A directory user's session begins: audited with where they came from.
fn start(c: &Console, ip: &str, source: &str, provider: &str, id: &Identity) -> Result<String, ConsoleError> {
    c.siem.audit_as(
        &id.user,
        ip,
        "console.login",
        json!({"role": id.role.name(), "source": source, "provider": provider, "subject": id.subject,
               "groups": id.groups}),
    )?;
    c.siem.metrics.login("success");
    Ok(c.sessions.start_from(&id.user, id.role, source))
}

/// Sends the browser to the provider.
async fn begin(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    peer: axum::extract::ConnectInfo<std::net::SocketAddr>,
) -> Res {
    if c.sso.oidc.is_none() {
        return Err(ConsoleError::NotFound);
    }
    let ip = peer.0.ip().to_string();
    if let Some(wait) = c.limiter.blocked(&[format!("ip:{ip}").as_str()]) {
        c.siem.metrics.login("locked");
        let t = lang_of(&headers);
        let mut r = crate::pages::login_form(
            &c,
            &headers,
            t.t("login.limited").into(),
            String::new(),
            StatusCode::TOO_MANY_REQUESTS,
        )?;
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return Ok(r);
    }
    let c2 = Arc::clone(&c);
    let begun = tokio::task::spawn_blocking(move || c2.sso.oidc.as_ref().map(|o| o.begin()))
        .await
        .map_err(|e| ConsoleError::Internal(e.to_string()))?;
    match begun {
        Some(Ok((url, state))) => {
            let mut resp = Redirect::to(&url).into_response();
            resp.headers_mut().append(header::SET_COOKIE, state_cookie(&c, &state, 600));
            Ok(resp)
        }
        Some(Err(r)) => {
            // Nobody was refused, the provider could not be asked: logged,
            // not counted against the reader.
            tracing::error!(reason = %r.detail, "identity provider unreachable");
            let t = lang_of(&headers);
            crate::pages::login_form(&c, &headers, t.t(r.key).to_string(), String::new(), status_of(r.key))
        }
        None => Err(ConsoleError::NotFound),
    }
}

#[derive(serde::Deserialize)]
struct Callback {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
    /// The provider's refusal (RFC 6749 §4.1.2.1), e.g. `access_denied`.
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// The provider's answer: the code is exchanged, the ID token checked, the
/// groups mapped to a role.
async fn callback(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    peer: axum::extract::ConnectInfo<std::net::SocketAddr>,
    Query(q): Query<Callback>,
) -> Res {
    let Some(provider) = c.sso.oidc.as_ref().map(|o| o.name.clone()) else {
        return Err(ConsoleError::NotFound);
    };
    let ip = peer.0.ip().to_string();
    let bound = cookie_of(&headers, STATE_COOKIE).unwrap_or("").to_string();
    let finished = if let Some(err) = q.error {
        let desc = q.error_description.unwrap_or_default();
        Err(Refusal::new("sso.denied", format!("the provider answered {err}: {desc}")))
    } else if c.limiter.blocked(&[format!("ip:{ip}").as_str()]).is_some() {
        Err(Refusal::new("login.limited", "too many failed sign-ins from this address"))
    } else {
        let c2 = Arc::clone(&c);
        tokio::task::spawn_blocking(move || match c2.sso.oidc.as_ref() {
            Some(o) => o.finish(&q.state, &bound, &q.code),
            None => Err(Refusal::new("sso.unreachable", "not configured")),
        })
        .await
        .map_err(|e| ConsoleError::Internal(e.to_string()))?
    };
    let id = match finished {
        Ok(id) => id,
        Err(r) => {
            let mut resp = refuse(&c, &headers, &ip, "oidc", "-", r)?;
            resp.headers_mut().append(header::SET_COOKIE, state_cookie(&c, "", 0));
            return Ok(resp);
        }
    };
    let cookie = start(&c, &ip, "oidc", &provider, &id)?;
    // The session cookie is `SameSite=Strict`: a browser does not send it on
    // a redirect that began on the provider's site. A page of our own moves
    // on to the dashboard, a navigation from this site.
    let html = ContinuePage { t: lang_of(&headers) }.render().map_err(|e| ConsoleError::Internal(e.to_string()))?;
    let mut resp = Html(html).into_response();
    resp.headers_mut().append(header::SET_COOKIE, c.cookie(SESSION_COOKIE, &cookie, None));
    resp.headers_mut().append(header::SET_COOKIE, state_cookie(&c, "", 0));
    Ok(resp)
}

/// The directory's turn on the password form, for a name that is no local
/// account.
pub async fn password_login(c: &Arc<Console>, headers: &HeaderMap, user: String, password: String, ip: &str) -> Res {
    let Some(ldap) = c.sso.ldap.as_ref() else {
        return Err(ConsoleError::NotFound);
    };
    match ldap.authenticate(&user, &password).await {
        Ok(id) => {
            let cookie = start(c, ip, "ldap", "ldap", &id)?;
            let mut resp = Redirect::to("/").into_response();
            resp.headers_mut().append(header::SET_COOKIE, c.cookie(SESSION_COOKIE, &cookie, None));
            resp.headers_mut().append(header::SET_COOKIE, c.cookie("citysoc_login", "", Some(0)));
            Ok(resp)
        }
        Err(r) => {
            let t = lang_of(headers);
            tracing::warn!(source = "ldap", user = %user, reason = %r.detail, "sign-in refused");
            c.limiter.failed(&[format!("ip:{ip}").as_str()]);
            c.siem.metrics.login(if r.key == "login.limited" { "locked" } else { "failure" });
            let _ = c.siem.audit_as(&user, ip, "console.login_failed", json!({"source": "ldap", "reason": r.detail}));
            crate::pages::login_form(c, headers, t.t(r.key).to_string(), user, status_of(r.key))
        }
    }
}
