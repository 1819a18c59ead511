//! Refusal of cross-site requests, one layer for the API and the console.
//!
//! A web page an analyst opens on the SOC workstation can make the browser
//! send requests to the SOC (a form posted to `http://127.0.0.1:8080`, a
//! `fetch` in `no-cors` mode). Such "simple" requests reach the server
//! without a CORS preflight, so the server itself must tell them apart:
//!
//! - a state-changing request (any method but GET, HEAD, OPTIONS) whose
//!   `Sec-Fetch-Site` says `cross-site` or `same-site`, or whose `Origin`
//!   is not the server's own (nor one of the configured extra origins),
//!   is refused with 403 (`Origin: null` passes only with
//!   `Sec-Fetch-Site: same-origin`: the console's own forms under its
//!   `no-referrer` policy);
//! - on the API, a body of a type a page can send without a preflight
//!   (`text/plain`, `application/x-www-form-urlencoded`,
//!   `multipart/form-data`) is refused with 415 before anything reads it;
//! - an open API (no tokens, loopback only) answers only requests that name
//!   a loopback host in `Host`: a page on a name that an attacker's DNS
//!   points at 127.0.0.1 (DNS rebinding) would otherwise be "same-origin".
//!
//! Requests without `Origin` and `Sec-Fetch-*` (curl, sensors, scripts) do
//! not come from a page and go through.

use crate::api::{AppState, Peer};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;

/// Why a request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 403: sent by a page of another site.
    CrossSite { reason: &'static str, detail: String },
    /// 415: a body a cross-site form could send, where JSON is read.
    NotJson(String),
    /// 415: a body the console's own forms never send.
    NotForm(String),
    /// 403: an open API reached under a name that is not a loopback one.
    Host(String),
}

impl Refusal {
    fn reason(&self) -> &'static str {
        match self {
            Refusal::CrossSite { reason, .. } => reason,
            Refusal::NotJson(_) | Refusal::NotForm(_) => "content_type",
            Refusal::Host(_) => "host",
        }
    }

    fn message(&self) -> String {
        match self {
            Refusal::CrossSite { detail, .. } => format!("cross-site request refused: {detail}"),
            Refusal::NotJson(t) => format!(
                "a body of type '{t}' is not read here: JSON routes take application/json, ingest takes \
                 JSON lines (application/x-ndjson, or no Content-Type)"
            ),
            Refusal::NotForm(t) => format!(
                "a body of type '{t}' is not read here: the console's forms send \
                 application/x-www-form-urlencoded"
            ),
            Refusal::Host(h) => format!(
                "host '{h}' refused: the open API (no tokens) answers only under a loopback name \
                 (127.0.0.1, [::1], localhost)"
            ),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Refusal::NotJson(_) | Refusal::NotForm(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::FORBIDDEN,
        }
    }
}

/// `host[:port]` in lowercase, the default port of `scheme` left out.
fn authority(scheme: &str, hostport: &str) -> String {
    let a = hostport.trim().to_ascii_lowercase();
    let default = match scheme {
        "https" => ":443",
        _ => ":80",
    };
    match a.strip_suffix(default) {
        Some(short) => short.to_string(),
        None => a,
    }
}

/// The origin (`scheme://host[:port]`) as compared: lowercase, without a
/// default port.
fn normal_origin(o: &str) -> Option<(String, String)> {
    let (scheme, rest) = o.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https") || rest.is_empty() || rest.contains('/') {
        return None;
    }
    Some((scheme.clone(), authority(&scheme, rest)))
}

fn is_loopback_host(host: &str) -> bool {
    // host[:port], [v6]:port or v6 alone.
    let h = host.trim().to_ascii_lowercase();
    let name = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else if h.matches(':').count() > 1 {
        h.as_str()
    } else {
        h.split(':').next().unwrap_or("")
    };
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The check itself, on a request's method, path and headers.
/// `extra_origins` are origins a reverse proxy presents the server under.
pub fn check(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    open: bool,
    extra_origins: &[String],
) -> Result<(), Refusal> {
    check_at(method, path, None, headers, open, extra_origins)
}

/// [`check`], with the request's URI authority: HTTP/2 (which browsers
/// speak over TLS) names the host there, in `:authority`, and sends no
/// `Host`.
pub fn check_at(
    method: &Method,
    path: &str,
    uri_authority: Option<&str>,
    headers: &HeaderMap,
    open: bool,
    extra_origins: &[String],
) -> Result<(), Refusal> {
    let get = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    let host = get(header::HOST).or(uri_authority);
    if open {
        if let Some(h) = host.filter(|h| !is_loopback_host(h)) {
            return Err(Refusal::Host(h.chars().take(100).collect()));
        }
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if let Some(s @ ("cross-site" | "same-site")) = fetch_site {
        return Err(Refusal::CrossSite { reason: "sec_fetch_site", detail: format!("Sec-Fetch-Site: {s}") });
    }
    // A page whose referrer policy is `no-referrer` (the console's) sends
    // `Origin: null` with its own forms; the browser's `Sec-Fetch-Site`
    // (which no page can set) vouches for those.
    let vouched_null = fetch_site == Some("same-origin");
    if let Some(origin) = headers.get(header::ORIGIN).filter(|o| !(vouched_null && o.as_bytes() == b"null")) {
        let text = origin.to_str().unwrap_or("");
        let shown: String = text.chars().take(100).collect();
        let theirs = normal_origin(text);
        let ours = host.map(|h| h.trim().to_ascii_lowercase());
        let same = match (&theirs, &ours) {
            (Some((scheme, a)), Some(h)) => authority(scheme, h) == *a,
            _ => false,
        };
        let listed = theirs.as_ref().is_some_and(|(s, a)| {
            extra_origins.iter().filter_map(|e| normal_origin(e)).any(|(es, ea)| es == *s && ea == *a)
        });
        if !same && !listed {
            return Err(Refusal::CrossSite {
                reason: "origin",
                detail: format!("Origin '{shown}' is not this server's"),
            });
        }
    }
    if path.starts_with("/api/") {
        if let Some(ct) = get(header::CONTENT_TYPE) {
            let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            if matches!(essence.as_str(), "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data") {
                return Err(Refusal::NotJson(essence));
            }
        }
    } else if let Some(ct) = get(header::CONTENT_TYPE) {
        // The console's forms are url-encoded; the other two kinds a page of
        // any site can send without asking are refused outright.
        let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if matches!(essence.as_str(), "text/plain" | "multipart/form-data") {
            return Err(Refusal::NotForm(essence));
        }
    }
    Ok(())
}

/// The layer: refuses what [`check`] refuses, counts it, and logs and
/// audits it at the bounded rate of refusals.
pub async fn refuse_cross_site(State(st): State<Arc<AppState>>, peer: Peer, req: Request, next: Next) -> Response {
    let authority = req.uri().authority().map(|a| a.as_str());
    let refusal = check_at(req.method(), req.uri().path(), authority, req.headers(), st.open, &st.extra_origins);
    let Err(r) = refusal else {
        return next.run(req).await;
    };
    st.metrics.cross_site(r.reason());
    let message = r.message();
    let path = req.uri().path().to_string();
    let method = req.method().to_string();
    let (st2, why) = (Arc::clone(&st), message.clone());
    let reason = r.reason();
    let _ = tokio::task::spawn_blocking(move || {
        st2.refused(
            &peer.0,
            "-",
            "cross_site.refused",
            &why,
            json!({"method": method, "path": path, "reason": reason}),
        );
    })
    .await;
    (r.status(), Json(json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn tools_without_origin_pass() {
        let p = "/api/v1/retention/run";
        assert_eq!(check(&Method::POST, p, &h(&[("host", "127.0.0.1:8080")]), true, &[]), Ok(()));
        assert_eq!(check(&Method::POST, p, &HeaderMap::new(), false, &[]), Ok(()));
        let ndjson = h(&[("host", "soc:8443"), ("content-type", "application/x-ndjson")]);
        assert_eq!(check(&Method::POST, "/api/v1/ingest", &ndjson, false, &[]), Ok(()));
    }

    #[test]
    fn pages_of_other_sites_are_refused() {
        let p = "/api/v1/retention/run";
        let evil = h(&[("host", "127.0.0.1:8080"), ("origin", "http://evil.example")]);
        assert!(matches!(check(&Method::POST, p, &evil, true, &[]), Err(Refusal::CrossSite { reason: "origin", .. })));
        let other_port = h(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:9090")]);
        assert!(check(&Method::POST, p, &other_port, true, &[]).is_err());
        let null = h(&[("host", "127.0.0.1:8080"), ("origin", "null")]);
        assert!(check(&Method::POST, p, &null, true, &[]).is_err());
        // Only the browser can say same-origin: a form of the console's own
        // (sent with `Origin: null` under its no-referrer policy).
        let own_null = h(&[("host", "127.0.0.1:8080"), ("origin", "null"), ("sec-fetch-site", "same-origin")]);
        assert_eq!(check(&Method::POST, p, &own_null, true, &[]), Ok(()));
        let evil_claims =
            h(&[("host", "127.0.0.1:8080"), ("origin", "http://evil.example"), ("sec-fetch-site", "same-origin")]);
        assert!(check(&Method::POST, p, &evil_claims, true, &[]).is_err());
        for site in ["cross-site", "same-site"] {
            let f = h(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", site)]);
            assert!(matches!(
                check(&Method::POST, p, &f, true, &[]),
                Err(Refusal::CrossSite { reason: "sec_fetch_site", .. })
            ));
        }
        // Reads are not refused for their origin (they change nothing, and
        // a page cannot read the answer without CORS).
        assert_eq!(check(&Method::GET, "/api/v1/search", &evil, true, &[]), Ok(()));
    }

    #[test]
    fn own_origin_and_listed_ones_pass() {
        let p = "/api/v1/incidents";
        let own =
            h(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080"), ("sec-fetch-site", "same-origin")]);
        assert_eq!(check(&Method::POST, p, &own, true, &[]), Ok(()));
        let default_port = h(&[("host", "SOC.city.vn"), ("origin", "https://soc.city.vn:443")]);
        assert_eq!(check(&Method::POST, p, &default_port, false, &[]), Ok(()));
        let proxied = h(&[("host", "10.0.0.5:8080"), ("origin", "https://soc.city.vn")]);
        assert!(check(&Method::POST, p, &proxied, false, &[]).is_err());
        assert_eq!(check(&Method::POST, p, &proxied, false, &["https://soc.city.vn".into()]), Ok(()));
    }

    #[test]
    fn bodies_a_form_can_send_are_refused_where_they_are_not_read() {
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "Text/Plain;charset=utf-8",
        ] {
            let hd = h(&[("content-type", ct)]);
            assert!(
                matches!(check(&Method::POST, "/api/v1/ingest", &hd, false, &[]), Err(Refusal::NotJson(_))),
                "{ct}"
            );
            // The console reads url-encoded forms, its forms' only kind.
            let console = check(&Method::POST, "/alerts/triage", &hd, false, &[]);
            if ct.starts_with("application/x-www-form-urlencoded") {
                assert_eq!(console, Ok(()));
            } else {
                assert!(matches!(console, Err(Refusal::NotForm(_))), "{ct}");
            }
        }
    }

    #[test]
    fn http2_names_the_host_in_its_authority() {
        let p = "/api/v1/incidents";
        let own = h(&[("origin", "https://soc.city.vn:8443"), ("sec-fetch-site", "same-origin")]);
        assert_eq!(check_at(&Method::POST, p, Some("soc.city.vn:8443"), &own, false, &[]), Ok(()));
        let evil = h(&[("origin", "https://evil.example")]);
        assert!(check_at(&Method::POST, p, Some("soc.city.vn:8443"), &evil, false, &[]).is_err());
    }

    #[test]
    fn an_open_api_answers_loopback_names_only() {
        for host in ["127.0.0.1:8080", "localhost:8080", "[::1]:8080", "127.0.0.2", "LOCALHOST"] {
            assert_eq!(check(&Method::GET, "/api/v1/search", &h(&[("host", host)]), true, &[]), Ok(()), "{host}");
        }
        let rebound = h(&[("host", "evil.example:8080"), ("origin", "http://evil.example:8080")]);
        assert!(matches!(check(&Method::GET, "/api/v1/search", &rebound, true, &[]), Err(Refusal::Host(_))));
        // With tokens the names are the admin's business.
        assert_eq!(check(&Method::GET, "/api/v1/search", &rebound, false, &[]), Ok(()));
    }
}
