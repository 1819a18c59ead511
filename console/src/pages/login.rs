//! Signing in and out, second factors, passwords, language and time zone.

use super::*;

#[derive(Template)]
#[template(path = "login.html")]
pub(super) struct LoginPage {
    pub(super) t: Tr,
    pub(super) csrf: String,
    pub(super) error: String,
    /// The name typed, kept when the form comes back with an error.
    pub(super) user: String,
    /// The OpenID provider's name, for its button; empty without one.
    pub(super) oidc: String,
}

pub(super) const PRE_CSRF: &str = "citysoc_login";

/// The login form, with a token tied to a cookie (double submit): another
/// site cannot sign a browser in to an account of its choosing.
pub(super) async fn login_page(State(c): State<Arc<Console>>, headers: HeaderMap) -> Res {
    login_form(&c, &headers, String::new(), String::new(), StatusCode::OK)
}

pub(crate) fn login_form(c: &Console, headers: &HeaderMap, error: String, user: String, status: StatusCode) -> Res {
    let token = crate::users::random_password();
    let oidc = c.sso.oidc.as_ref().map_or(String::new(), |o| o.name.clone());
    let html = LoginPage { t: lang_of(headers), csrf: token.clone(), error, user, oidc }
        .render()
        .map_err(|e| ConsoleError::Internal(e.to_string()))?;
    let mut resp = (status, Html(html)).into_response();
    resp.headers_mut().append(header::SET_COOKIE, c.cookie(PRE_CSRF, &token, Some(600)));
    Ok(resp)
}

pub(super) async fn login(
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
    let (u2, p2) = (user.clone(), password.clone());
    // argon2 takes tens of milliseconds on purpose: not on the runtime.
    let (found, local) = blocking(move || Ok((c2.users.verify(&u2, &p2), c2.users.get(&u2).is_some()))).await?;
    // Local accounts first: the break-glass admin signs in with the
    // directory down, and a local name is never sent to the directory.
    if found.is_none() && !local && c.sso.ldap.is_some() {
        return crate::sso::password_login(&c, &headers, user, password, &ip).await;
    }
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
pub(super) fn next_step(s: &crate::session::Start) -> &'static str {
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
pub(super) struct CodePage {
    pub(super) t: Tr,
    pub(super) csrf: String,
    pub(super) error: String,
}

/// A session whose password was right and whose code is still to come.
pub(super) fn pending(c: &Console, headers: &HeaderMap) -> Option<(String, crate::session::Session)> {
    let cookie = cookie_of(headers, SESSION_COOKIE)?.to_string();
    let s = c.sessions.get(&cookie)?;
    s.second_factor.then_some((cookie, s))
}

pub(super) async fn code_page(State(c): State<Arc<Console>>, headers: HeaderMap) -> Res {
    let Some((_, s)) = pending(&c, &headers) else {
        return Ok(Redirect::to("/login").into_response());
    };
    page(CodePage { t: lang_of(&headers), csrf: s.csrf, error: String::new() })
}

/// The second factor: the authenticator's code, limited per source like
/// passwords.
pub(super) async fn code(
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
pub(super) struct TotpPage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) enrolled: bool,
    pub(super) required: bool,
    pub(super) secret: String,
    pub(super) uri: String,
    pub(super) error: String,
}

pub(super) fn totp_form(a: &Auth, c: &Console, secret: String, error: String) -> Res {
    let u = c.users.get(&a.session.user).ok_or(ConsoleError::NotFound)?;
    let uri = crate::totp::uri("CitySOC", &a.session.user, &secret);
    let status = if error.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    page(TotpPage { t: a.t, nav: nav(a), enrolled: u.totp.is_some(), required: u.totp_required, secret, uri, error })
        .map(|r| (status, r).into_response())
}

/// Enrolling a second factor: a new secret, as an `otpauth://` URI for
/// the authenticator app and as text to type.
pub(super) async fn totp_page(State(c): State<Arc<Console>>, a: Auth) -> Res {
    let secret = crate::totp::new_secret();
    c.sessions.offer_totp(&a.cookie, &secret);
    totp_form(&a, &c, secret, String::new())
}

/// The secret is kept once a code from it proves the app has it.
pub(super) async fn totp_enrol(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
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

pub(super) async fn logout(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    a.csrf(&Form::parse(&body))?;
    c.sessions.end(&a.cookie);
    c.siem.audit_as(&a.session.user, &a.peer, "console.logout", json!({}))?;
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(header::SET_COOKIE, c.cookie(SESSION_COOKIE, "", Some(0)));
    Ok(resp)
}

#[derive(Template)]
#[template(path = "password.html")]
pub(super) struct PasswordPage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) must_change: bool,
    pub(super) error: String,
}

pub(super) async fn password_page(a: Auth) -> Res {
    page(PasswordPage { t: a.t, nav: nav(&a), must_change: a.session.must_change, error: String::new() })
}

pub(super) async fn change_password(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
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
pub(super) struct LangParams {
    pub(super) to: String,
    /// The page the switch was used on, path and query.
    #[serde(default)]
    pub(super) back: String,
}

/// Where a switch goes back to: a page of this console, never another site
/// (`//host` and `/\host` are other sites to a browser).
pub(super) fn back_to(back: &str) -> &str {
    let ours = back.starts_with('/') && !back.starts_with("//") && !back.contains('\\') && !back.starts_with("/lang");
    let ours = ours && !back.starts_with("/tz") && !back.chars().any(char::is_control);
    if ours {
        back
    } else {
        "/"
    }
}

/// Stores the language choice and goes back to the page it was made on.
pub(super) async fn set_lang(State(c): State<Arc<Console>>, Query(p): Query<LangParams>) -> Res {
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
pub(super) async fn set_tz(State(c): State<Arc<Console>>, Query(p): Query<LangParams>) -> Res {
    let tz: chrono_tz::Tz =
        p.to.parse().map_err(|_| ConsoleError::Bad(crate::error::Msg::with("error.tz", p.to.as_str())))?;
    let mut resp = Redirect::to(back_to(&p.back)).into_response();
    resp.headers_mut().append(header::SET_COOKIE, c.cookie("tz", tz.name(), Some(365 * 86_400)));
    Ok(resp)
}
