//! The web console over the SIEM: local accounts with roles, sessions with
//! CSRF tokens, pages rendered on the server (Askama, escaped by default)
//! in English or Vietnamese, times in the reader's zone. The console calls
//! the SIEM's own audited operations; every page checks the role on the
//! server.

pub mod editor;
pub mod error;
pub mod i18n;
pub mod investigations;
mod json_file;
mod pages;
pub mod pseudonym;
pub mod rule_text;
pub mod saved;
pub mod session;
pub mod sso;
pub mod totp;
pub mod tune;
pub mod users;
pub mod view;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Router;
use error::ConsoleError;
use i18n::{Lang, Tr};
use session::{LoginLimiter, Session, Sessions};
use siem::api::AppState;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use users::{Perm, Users};

/// Settings of the console (`[console]` of the server's configuration).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// A session unused this long ends.
    pub idle_timeout_secs: u64,
    /// A session this old ends, however busy (sessions outlive restarts in
    /// `<data>/console-sessions.json`).
    pub session_max_age_secs: u64,
    /// Sessions kept at once; past it the longest idle ends.
    pub max_sessions: usize,
    /// Failed logins (or second-factor codes) allowed per client address
    /// within the window; past it that address waits. Counted per address,
    /// not per account: nobody can lock an account out by failing on purpose.
    pub login_failures: usize,
    /// The window of `login_failures`.
    pub login_window_secs: u64,
    /// Mark cookies `Secure` (set it when the console is served over HTTPS,
    /// directly or behind a proxy).
    pub secure_cookies: bool,
    /// Time zone of readers who chose none.
    pub time_zone: String,
    /// The anomaly models' file, for admins accepting a device's change
    /// as normal (set from `citysoc serve --rules`).
    #[serde(skip)]
    pub models_file: Option<std::path::PathBuf>,
    /// `tuning.toml` of that folder: rules switched off, suppressions.
    #[serde(skip)]
    pub tuning_file: Option<std::path::PathBuf>,
    /// The rules folder, for the Vietnamese titles its files carry
    /// (`rule_text`).
    #[serde(skip)]
    pub rules_dir: Option<std::path::PathBuf>,
    /// Editing of the rules folder (admins), when the binary provides it.
    #[serde(skip)]
    pub editor: editor::Editor,
    /// Signing in through the city's OpenID provider (Keycloak, Entra ID):
    /// a "Sign in with" button naming it on the sign-in page.
    pub oidc: Option<sso::OidcConfig>,
    /// Signing in with directory accounts (OpenLDAP, Active Directory) on
    /// the sign-in form; local accounts are tried first.
    pub ldap: Option<sso::LdapConfig>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            idle_timeout_secs: 30 * 60,
            session_max_age_secs: 12 * 3600,
            max_sessions: 10_000,
            login_failures: 5,
            login_window_secs: 300,
            secure_cookies: false,
            time_zone: "Asia/Ho_Chi_Minh".into(),
            models_file: None,
            tuning_file: None,
            rules_dir: None,
            editor: editor::Editor::default(),
            oidc: None,
            ldap: None,
        }
    }
}

impl ConsoleConfig {
    /// Every problem of the settings, as (key, what is wrong).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        for (key, v) in [
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("session_max_age_secs", self.session_max_age_secs),
            ("login_window_secs", self.login_window_secs),
            ("max_sessions", self.max_sessions as u64),
            ("login_failures", self.login_failures as u64),
        ] {
            if v == 0 {
                errs.push((key.to_string(), "must be more than zero".to_string()));
            }
        }
        if self.time_zone.parse::<chrono_tz::Tz>().is_err() {
            errs.push((
                "time_zone".to_string(),
                format!("unknown time zone '{}' (like Asia/Ho_Chi_Minh or UTC)", self.time_zone),
            ));
        }
        // The sign-in sections, checked as the console checks them at start
        // (no provider or directory is contacted), so that a file that
        // passes the check also starts.
        let mut sso = Vec::new();
        if let Some(c) = &self.oidc {
            sso::oidc::Oidc::new(c, &mut sso);
        }
        if let Some(c) = &self.ldap {
            sso::ldap::Ldap::new(c, &mut sso);
        }
        for e in sso {
            let e = e.strip_prefix("console.").unwrap_or(&e);
            let (key, msg) = e.split_once(": ").unwrap_or((e, ""));
            errs.push((key.to_string(), msg.to_string()));
        }
        errs
    }
}

pub struct Console {
    pub siem: Arc<AppState>,
    pub users: Users,
    pub sessions: Sessions,
    pub limiter: LoginLimiter,
    pub totp: totp::Verifier,
    /// Our rules' titles in Vietnamese, read again by
    /// [`Console::reload_rule_texts`] (the server's SIGHUP).
    rule_texts: std::sync::RwLock<Arc<rule_text::RuleTexts>>,
    pub saved: saved::SavedSearches,
    pub investigations: investigations::Investigations,
    /// The provider and directory users sign in through, if any.
    pub sso: sso::Sso,
    pub cfg: ConsoleConfig,
    tz: chrono_tz::Tz,
    /// Per start: pseudonyms cannot be joined across restarts or installs.
    pseudonym_key: [u8; 32],
    /// Alert queue views (user, filter) whose opening was audited: their
    /// live refresh is not audited again.
    pub(crate) queue_views: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

impl Console {
    /// Our rules' titles in Vietnamese, as last read.
    pub fn rule_texts(&self) -> Arc<rule_text::RuleTexts> {
        match self.rule_texts.read() {
            Ok(t) => Arc::clone(&t),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Reads the rules folder's translations again (rules added or edited
    /// on disk since the start). Returns how many titles are translated.
    pub fn reload_rule_texts(&self) -> usize {
        let t = self.cfg.rules_dir.as_deref().map(rule_text::RuleTexts::load).unwrap_or_default();
        let n = t.len();
        let mut g = match self.rule_texts.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = Arc::new(t);
        n
    }

    /// Opens the accounts under `data`. On first run the `admin` account is
    /// created and its one-time password returned, for the caller to print.
    pub fn open(
        siem: Arc<AppState>,
        data: &Path,
        cfg: ConsoleConfig,
    ) -> Result<(Console, Option<String>), ConsoleError> {
        let tz: chrono_tz::Tz = cfg
            .time_zone
            .parse()
            .map_err(|_| ConsoleError::Invalid(format!("unknown time zone '{}'", cfg.time_zone)))?;
        let sso = sso::Sso::new(cfg.oidc.as_ref(), cfg.ldap.as_ref())?;
        let (users, first) = Users::open(data)?;
        let saved = saved::SavedSearches::open(data)?;
        let investigations = investigations::Investigations::open(data)?;
        let mut pseudonym_key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut pseudonym_key);
        let c = Console {
            siem,
            users,
            sessions: Sessions::open(
                data.join("console-sessions.json"),
                Duration::from_secs(cfg.idle_timeout_secs.max(60)),
                Duration::from_secs(cfg.session_max_age_secs.max(60)),
                cfg.max_sessions.max(1),
            ),
            totp: totp::Verifier::default(),
            rule_texts: std::sync::RwLock::new(Arc::new(
                cfg.rules_dir.as_deref().map(rule_text::RuleTexts::load).unwrap_or_default(),
            )),
            limiter: LoginLimiter::new(cfg.login_failures.max(1), Duration::from_secs(cfg.login_window_secs.max(1))),
            saved,
            investigations,
            sso,
            tz,
            pseudonym_key,
            queue_views: Default::default(),
            cfg,
        };
        Ok((c, first))
    }

    fn cookie(&self, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
        let secure = if self.cfg.secure_cookies { "; Secure" } else { "" };
        let age = max_age.map_or(String::new(), |a| format!("; Max-Age={a}"));
        // Values are hex tokens or fixed words: nothing to escape.
        HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}{age}"))
            .unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
    }
}

pub const SESSION_COOKIE: &str = "citysoc_session";

pub fn cookie_of<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(name).and_then(|r| r.strip_prefix('=')))
}

/// The reader's language: their choice (cookie), else the browser's.
pub fn lang_of(headers: &HeaderMap) -> Tr {
    let lang = cookie_of(headers, "lang").and_then(Lang::parse).unwrap_or_else(|| {
        Lang::from_accept(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or(""))
    });
    Tr { lang }
}

/// A signed-in reader: their session, language, and where they call from.
pub struct Auth {
    pub session: Session,
    pub cookie: String,
    pub t: Tr,
    pub peer: String,
    pub lens: view::Lens,
    /// The page asked for, path and query: where a language or zone switch
    /// comes back to.
    pub here: String,
    /// For admins: where the audit trail breaks (the server is read-only).
    pub audit_broken: Option<String>,
}

impl Auth {
    pub fn need(&self, p: Perm) -> Result<(), ConsoleError> {
        if self.session.role.may(p) {
            Ok(())
        } else {
            Err(ConsoleError::Forbidden)
        }
    }

    pub fn may(&self, p: Perm) -> bool {
        self.session.role.may(p)
    }

    /// Checks the form's CSRF token against the session's.
    pub fn csrf(&self, form: &Form) -> Result<(), ConsoleError> {
        match form.get("csrf") {
            Some(t) if session::same(t, &self.session.csrf) => Ok(()),
            _ => Err(ConsoleError::Csrf),
        }
    }
}

/// Where a request without a valid session goes.
pub enum AuthRejection {
    Login,
    ChangePassword,
    SecondFactor,
    Enrol,
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        match self {
            AuthRejection::Login => Redirect::to("/login").into_response(),
            AuthRejection::ChangePassword => Redirect::to("/password").into_response(),
            AuthRejection::SecondFactor => Redirect::to("/login/code").into_response(),
            AuthRejection::Enrol => Redirect::to("/totp").into_response(),
        }
    }
}

fn peer_of(parts: &Parts) -> String {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".into(), |c| c.0.ip().to_string())
}

impl FromRequestParts<Arc<Console>> for Auth {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, c: &Arc<Console>) -> Result<Self, Self::Rejection> {
        let cookie = cookie_of(&parts.headers, SESSION_COOKIE).ok_or(AuthRejection::Login)?.to_string();
        let session = c.sessions.get(&cookie).ok_or(AuthRejection::Login)?;
        // An account disabled or changed since sign-in loses its session; a
        // directory user's session, when their directory is no longer
        // configured (their role is the directory's until they sign in again).
        let live = match &session.source {
            Some(source) => c.sso.knows(source),
            None => c.users.get(&session.user).is_some_and(|u| !u.disabled && u.role == session.role),
        };
        if !live {
            c.sessions.end(&cookie);
            return Err(AuthRejection::Login);
        }
        let path = parts.uri.path();
        // In order: the second factor, then a new password, then enrolling
        // a second factor an admin requires; only the step's own page (and
        // signing out) opens before.
        if session.second_factor {
            return Err(AuthRejection::SecondFactor);
        }
        if session.must_change && path != "/password" && path != "/logout" {
            return Err(AuthRejection::ChangePassword);
        }
        if !session.must_change && session.must_enrol && path != "/totp" && path != "/logout" {
            return Err(AuthRejection::Enrol);
        }
        let tz = cookie_of(&parts.headers, "tz").and_then(|z| z.replace("%2F", "/").parse().ok()).unwrap_or(c.tz);
        let t = lang_of(&parts.headers);
        let lens = view::Lens {
            tz,
            pseudonym_key: session.role.pseudonymised().then_some(c.pseudonym_key),
            rule_texts: (t.lang == Lang::Vi).then(|| c.rule_texts()),
        };
        let here = parts.uri.path_and_query().map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
        let audit_broken = session
            .role
            .may(Perm::Users)
            .then(|| c.siem.audit_broken().map(|b| format!("{b}; changes are refused until audit.log is repaired")))
            .flatten();
        Ok(Auth { t, peer: peer_of(parts), session, cookie, lens, here, audit_broken })
    }
}

/// A URL-encoded form body, repeated keys kept (`ids=a&ids=b`).
pub struct Form(pub Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Form {
        Form(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }
}

/// Headers on every console response: no framing, no sniffing, no
/// referrer leaking queries, and scripts only from the console itself.
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

#[derive(askama::Template)]
#[template(path = "error.html")]
struct ErrorPage {
    t: Tr,
    message: String,
}

/// Errors as pages in the reader's language for a browser's navigation;
/// plain text for scripts and tools that did not ask for HTML.
async fn error_pages(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let t = lang_of(req.headers());
    let html = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/html"));
    let resp = next.run(req).await;
    let Some(note) = resp.extensions().get::<error::ErrorNote>().cloned() else {
        return resp;
    };
    if !html {
        return resp;
    }
    let message = match (note.api, note.msg) {
        (Some(a), _) => a.text(t),
        (None, Some(m)) => m.text(t),
        (None, None) => note.text,
    };
    match askama::Template::render(&ErrorPage { t, message }) {
        Ok(page) => (resp.status(), axum::response::Html(page)).into_response(),
        Err(_) => resp,
    }
}

/// The console's routes; merge them with the SIEM's API router.
/// Cross-site requests are refused by the SIEM's layer, the same one the
/// API has ([`siem::origin`]); the per-session CSRF token of every form
/// stays, for a browser that sends neither `Origin` nor `Sec-Fetch-Site`.
pub fn router(console: Arc<Console>) -> Router {
    let siem = Arc::clone(&console.siem);
    pages::routes()
        .merge(sso::routes())
        .with_state(console)
        .layer(axum::middleware::from_fn(error_pages))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::middleware::from_fn_with_state(siem, siem::origin::refuse_cross_site))
}
