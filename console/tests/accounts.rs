//! Accounts as a police unit needs them, over the console's HTTP routes:
//! sign-in limits that an outsider cannot turn against an account,
//! sessions that outlive a restart, a TOTP second factor, names without
//! case, a password policy, and forms that refuse what they do not know.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use console::users::Role;
use siem::api::AppState;
use siem::store::tantivy::{TantivyConfig, TantivyStore};
use std::path::Path;
use std::sync::Arc;

mod common;
use common::{cookie_value, enc, get, login, send, Reply};

fn console(dir: &Path) -> (Arc<console::Console>, Option<String>) {
    let store = Arc::new(TantivyStore::open(dir, TantivyConfig::default()).unwrap());
    let siem = Arc::new(AppState::open(store, None, dir, 2).unwrap());
    let (c, first) = console::Console::open(siem, dir, console::ConsoleConfig::default()).unwrap();
    (Arc::new(c), first)
}

async fn post(c: &Arc<console::Console>, session: &str, path: &str, form: &[(&str, &str)]) -> Reply {
    let csrf = c.sessions.get(session).unwrap().csrf;
    let mut body = format!("csrf={csrf}");
    for (k, v) in form {
        body.push_str(&format!("&{k}={}", enc(v)));
    }
    let req = Request::post(path)
        .header(header::COOKIE, format!("citysoc_session={session}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "text/html")
        .body(Body::from(body))
        .unwrap();
    send(c, [127, 0, 0, 1], req).await
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn an_outsider_failing_on_purpose_does_not_lock_the_account_out() {
    let dir = tempfile::tempdir().unwrap();
    let (c, first) = console(dir.path());
    let pw = first.unwrap();
    let outsider = [203, 0, 113, 66];
    for _ in 0..5 {
        assert_eq!(login(&c, outsider, "admin", "guessing at the password").await.status, StatusCode::UNAUTHORIZED);
    }
    // The outsider's address waits, even with the right password...
    let r = login(&c, outsider, "admin", &pw).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(cookie_value(&r, "citysoc_session").is_none());
    // ...and the admin, from their own desk, signs in as usual.
    let r = login(&c, [10, 0, 0, 7], "admin", &pw).await;
    assert_eq!((r.status, r.location.as_str()), (StatusCode::SEE_OTHER, "/password"));
    assert!(cookie_value(&r, "citysoc_session").is_some());
}

#[tokio::test]
async fn sessions_outlive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = console(dir.path());
    c.users.add("lan", Role::Analyst, "a long enough passphrase").unwrap();
    c.users.set_password("lan", "the analyst's passphrase", false).unwrap();
    let r = login(&c, [10, 0, 0, 7], "lan", "the analyst's passphrase").await;
    let session = cookie_value(&r, "citysoc_session").unwrap();
    assert_eq!(get(&c, &session, "/").await.status, StatusCode::OK);
    drop(c);
    let (c, _) = console(dir.path());
    let r = get(&c, &session, "/").await;
    assert_eq!(r.status, StatusCode::OK, "still signed in after the restart");
    assert!(r.body.contains("lan"));
    // Signing out ends it for good, restart or not.
    assert_eq!(post(&c, &session, "/logout", &[]).await.status, StatusCode::SEE_OTHER);
    drop(c);
    let (c, _) = console(dir.path());
    assert_eq!(get(&c, &session, "/").await.location, "/login");
}

#[tokio::test]
async fn a_totp_second_factor_is_enrolled_required_and_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = console(dir.path());
    c.users.add("lan", Role::Analyst, "a long enough passphrase").unwrap();
    c.users.set_password("lan", "the analyst's passphrase", false).unwrap();
    c.users.add("minh", Role::Responder, "a long enough passphrase").unwrap();
    c.users.set_password("minh", "the responder's passphrase", false).unwrap();
    let admin = c.sessions.start("admin", Role::Admin, Default::default());

    // The admin requires a second factor of lan: lan's sign-in leads to enrolling.
    let r = post(&c, &admin, "/users/update", &[("name", "lan"), ("totp_required", "true")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = login(&c, [10, 0, 0, 7], "lan", "the analyst's passphrase").await;
    assert_eq!(r.location, "/totp");
    let session = cookie_value(&r, "citysoc_session").unwrap();
    assert_eq!(get(&c, &session, "/alerts").await.location, "/totp", "nothing else opens before enrolling");
    let page = get(&c, &session, "/totp").await;
    let secret = page.body.split("id=\"totp-secret\">").nth(1).unwrap().split('<').next().unwrap().to_string();
    let uri = page.body.split("id=\"totp-uri\"").next().unwrap_or("");
    assert!(uri.contains(&format!("otpauth://totp/CitySOC:lan?secret={secret}")), "{}", page.body);
    // A secret of the sender's choosing (here all zeros) with its own code
    // is not what this session was offered: nothing is enrolled.
    let forged = "A".repeat(32);
    let forged_code = console::totp::code_at(&forged, now()).unwrap();
    let r = post(&c, &session, "/totp", &[("secret", &forged), ("code", &forged_code)]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(c.users.get("lan").unwrap().totp.is_none());
    // A wrong code is refused; the app's code turns it on.
    let r = post(&c, &session, "/totp", &[("secret", &secret), ("code", "000000")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let code = console::totp::code_at(&secret, now()).unwrap();
    let r = post(&c, &session, "/totp", &[("secret", &secret), ("code", &code)]).await;
    assert_eq!((r.status, r.location.as_str()), (StatusCode::SEE_OTHER, "/"));
    assert_eq!(get(&c, &session, "/alerts").await.status, StatusCode::OK);

    // Next sign-in: the password alone opens nothing.
    let r = login(&c, [10, 0, 0, 8], "lan", "the analyst's passphrase").await;
    assert_eq!(r.location, "/login/code");
    let pending = cookie_value(&r, "citysoc_session").unwrap();
    assert_eq!(get(&c, &pending, "/alerts").await.location, "/login/code");
    let code_form = get(&c, &pending, "/login/code").await;
    assert!(code_form.body.contains("id=\"code\""));
    let r = post(&c, &pending, "/login/code", &[("code", "123456")]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The code of the next step (a phone's clock a little ahead) is taken
    // once: the enrolment's code cannot be used again.
    assert_eq!(post(&c, &pending, "/login/code", &[("code", &code)]).await.status, StatusCode::UNAUTHORIZED);
    let next = console::totp::code_at(&secret, now() + 30).unwrap();
    let r = post(&c, &pending, "/login/code", &[("code", &next)]).await;
    assert_eq!((r.status, r.location.as_str()), (StatusCode::SEE_OTHER, "/"));
    assert_eq!(get(&c, &pending, "/alerts").await.status, StatusCode::OK);

    // Accounts without a second factor sign in with the password alone.
    let r = login(&c, [10, 0, 0, 9], "minh", "the responder's passphrase").await;
    assert_eq!(r.location, "/");
}

#[tokio::test]
async fn forms_refuse_bad_roles_duplicate_names_and_weak_passwords_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = console(dir.path());
    c.users.add("lan", Role::Analyst, "a long enough passphrase").unwrap();
    let admin = c.sessions.start("admin", Role::Admin, Default::default());

    let r = post(&c, &admin, "/users/update", &[("name", "lan"), ("role", "superuser")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("&#39;superuser&#39; is not a role"), "{}", r.body);
    assert_eq!(c.users.get("lan").unwrap().role, Role::Analyst);
    // Adding: the name typed stays in the form.
    let r = post(&c, &admin, "/users", &[("name", "new-person"), ("role", "root")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("value=\"new-person\""), "{}", r.body);
    assert!(c.users.get("new-person").is_none());
    // Names do not differ by case.
    let r = post(&c, &admin, "/users", &[("name", "ADMIN"), ("role", "viewer")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("exists already"), "{}", r.body);
    assert_eq!(c.users.list().len(), 2);

    // Twelve spaces, or the user name, are not passwords.
    c.users.set_password("lan", "the analyst's passphrase", false).unwrap();
    let s = c.sessions.start("lan", Role::Analyst, Default::default());
    for (bad, why) in [("            ", "only spaces"), ("LAN         ", "only spaces"), ("Lan", "at least 12")] {
        let r =
            post(&c, &s, "/password", &[("current", "the analyst's passphrase"), ("new", bad), ("repeat", bad)]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert!(r.body.contains(why) || r.body.contains("user name"), "{bad:?}: {}", r.body);
    }
    c.users.add("longname.person", Role::Viewer, "a long enough passphrase").unwrap();
    c.users.set_password("longname.person", "a long enough passphrase", false).unwrap();
    let s = c.sessions.start("longname.person", Role::Viewer, Default::default());
    let same = "LongName.Person";
    let r =
        post(&c, &s, "/password", &[("current", "a long enough passphrase"), ("new", same), ("repeat", same)]).await;
    assert!(r.body.contains("cannot be the user name"), "{}", r.body);
}

/// A broken audit trail leaves the server read-only, and signing in is a
/// read: an account with a second factor still gets through both steps,
/// while enrolling one (a change) waits for the repair.
#[tokio::test]
async fn a_second_factor_signs_in_while_the_audit_trail_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let secret = {
        let (c, _) = console(dir.path());
        c.users.add("lan", Role::Analyst, "a long enough passphrase").unwrap();
        c.users.set_password("lan", "the analyst's passphrase", false).unwrap();
        c.users.add("minh", Role::Responder, "a long enough passphrase").unwrap();
        c.users.set_password("minh", "the responder's passphrase", false).unwrap();
        let secret = console::totp::new_secret();
        c.users.set_totp("lan", Some(secret.clone())).unwrap();
        secret
    };
    std::fs::write(dir.path().join("audit.log"), "{\"seq\":1,\"edited\":true}\n").unwrap();
    let (c, _) = console(dir.path());
    let r = login(&c, [10, 0, 0, 7], "lan", "the analyst's passphrase").await;
    assert_eq!(r.location, "/login/code", "{} {}", r.status, r.body);
    let pending = cookie_value(&r, "citysoc_session").unwrap();
    let code = console::totp::code_at(&secret, now()).unwrap();
    let r = post(&c, &pending, "/login/code", &[("code", &code)]).await;
    assert_eq!((r.status, r.location.as_str()), (StatusCode::SEE_OTHER, "/"), "{}", r.body);
    // Enrolling is a change: refused, and nothing is kept.
    let r = login(&c, [10, 0, 0, 8], "minh", "the responder's passphrase").await;
    let session = cookie_value(&r, "citysoc_session").unwrap();
    let page = get(&c, &session, "/totp").await;
    let offered = page.body.split("id=\"totp-secret\">").nth(1).unwrap().split('<').next().unwrap().to_string();
    let code = console::totp::code_at(&offered, now()).unwrap();
    let r = post(&c, &session, "/totp", &[("secret", &offered), ("code", &code)]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(c.users.get("minh").unwrap().totp.is_none());
}
