//! The console in a real browser: Debian's Chromium, headless, driven over
//! WebDriver by chromedriver, against a console served on loopback over a
//! store holding hostile records. `.ci/run` installs both; without them the
//! test fails and says what to install.

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use siem::api::AppState;
use siem::schema::Catalog;
use siem::store::tantivy::{TantivyConfig, TantivyStore};
use siem::store::{Record, Store};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The payload a packet could carry into a rule title or a field: if it ever
/// runs, it marks the page.
const XSS: &str = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">";

/// One browser at a time: on a small CI machine, several Chromiums and a
/// sensor replay at once starve each other past any sane timeout.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn record(log: &str, v: serde_json::Value) -> Record {
    Record::validate(&Catalog::new(), log, "district-7", v.as_object().unwrap().clone()).unwrap()
}

fn alert(id: &str, severity: &str, title: &str, ts: f64) -> Record {
    record(
        "alerts",
        json!({"ts": ts, "id": id, "severity": severity, "rule.source": "sigma", "rule.id": "r-1", "rule.title": title,
               "rule.version": "v1", "sensor": "district-7", "summary": format!("summary {XSS}"), "uid": "CFLOW1",
               "id.orig_h": "10.20.0.5", "id.orig_p": 40000, "id.resp_h": "203.0.113.9", "id.resp_p": 80,
               "mitre_attack": ["T1190"], "matched": [format!("uri={XSS}")], "count": 1,
               "first_seen": ts, "last_seen": ts}),
    )
}

struct Harness {
    url: String,
    dir: std::path::PathBuf,
    store: Arc<TantivyStore>,
    password: String,
    _dir: tempfile::TempDir,
    _driver: Driver,
    driver_url: String,
}

async fn start() -> Harness {
    start_with(|_| {}).await
}

/// As `start`, with `prepare` run on the data folder first.
async fn start_with(prepare: fn(&std::path::Path)) -> Harness {
    for (path, pkg) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        assert!(std::path::Path::new(path).exists(), "{path} is missing: apt-get install {pkg}");
    }
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let store = Arc::new(TantivyStore::open(dir.path(), TantivyConfig::default()).unwrap());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    store
        .ingest(&[
            alert("A00000000000000000001", "high", &format!("Injection {XSS}"), now - 60.0),
            alert("A00000000000000000002", "low", "Cleartext FTP login", now - 30.0),
            record(
                "conn",
                json!({"ts": now - 61.0, "uid": "CFLOW1", "id.orig_h": "10.20.0.5", "id.orig_p": 40000,
                       "id.resp_h": "203.0.113.9", "id.resp_p": 80, "proto": "tcp", "service": "http"}),
            ),
            record(
                "known_devices",
                json!({"ts": now - 50.0, "host": "10.33.0.7", "mac": "00:80:f4:00:00:07", "vendor": "TELEMECANIQUE ELECTRIQUE",
                       "change": "new_service", "proto": "tcp", "port": 502, "service": "modbus", "peer": "10.20.0.5"}),
            ),
            record(
                "known_devices",
                json!({"ts": now - 40.0, "host": "10.33.0.7", "mac": "00:80:f4:00:00:07", "vendor": "TELEMECANIQUE ELECTRIQUE",
                       "change": "snapshot", "first_seen": now - 3600.0, "last_seen": now - 40.0, "peers": 2,
                       "services": ["tcp/502"]}),
            ),
            record(
                "http",
                json!({"ts": now - 60.5, "uid": "CFLOW1", "id.orig_h": "10.20.0.5", "host": "portal.city.example",
                       "uri": format!("/search?q={XSS}"), "user_agent": XSS, "method": "GET", "status_code": 200}),
            ),
        ])
        .unwrap();
    let siem = Arc::new(AppState::open(store.clone(), None, dir.path(), 2).unwrap());
    let tuning = dir.path().join("tuning.toml");
    std::fs::write(&tuning, "# switched off by admins\ndisabled = []\n").unwrap();
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    // The anomaly models' file, when the test put one there.
    let models = Some(dir.path().join("models.toml")).filter(|m| m.exists());
    let cfg = console::ConsoleConfig {
        tuning_file: Some(tuning),
        rules_dir: Some(rules),
        models_file: models,
        ..Default::default()
    };
    let (c, first) = console::Console::open(Arc::clone(&siem), dir.path(), cfg).unwrap();
    // As `citysoc serve` serves them: the API and the console on one listener.
    let app = siem::api::router(Arc::clone(&siem))
        .merge(console::router(Arc::new(c)))
        .into_make_service_with_connect_info::<SocketAddr>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver(child);
    let driver_url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Harness {
        url,
        dir: dir.path().to_path_buf(),
        store,
        password: first.unwrap(),
        _dir: dir,
        _driver: driver,
        driver_url,
    }
}

async fn browser(h: &Harness, lang: &str) -> Client {
    let profile = tempfile::tempdir().unwrap().keep();
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            // Without the background-networking flags Chromium keeps trying
            // to reach Google's hosts, which a closed network refuses.
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.display()),
                     format!("--lang={lang}")],
            "prefs": {"intl.accept_languages": lang}
        }
    });
    let caps = caps.as_object().unwrap().clone();
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&h.driver_url)
        .await
        .expect("a WebDriver session with headless Chromium")
}

/// The text of an element once it satisfies `ok`; pages change under us
/// after a submit, so a vanished element is looked up again.
async fn until(c: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if let Ok(t) = e.text().await {
                if ok(&t) {
                    return t;
                }
                last = t;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} never became as expected; last seen: {last:?}");
}

async fn text(c: &Client, css: &str) -> String {
    until(c, css, |_| true).await
}

async fn login(c: &Client, h: &Harness, user: &str, password: &str) {
    c.goto(&format!("{}/login", h.url)).await.unwrap();
    c.find(Locator::Id("user")).await.unwrap().send_keys(user).await.unwrap();
    c.find(Locator::Id("password")).await.unwrap().send_keys(password).await.unwrap();
    c.find(Locator::Id("login")).await.unwrap().click().await.unwrap();
}

async fn change_password(c: &Client, old: &str, new: &str) {
    c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id("must-change")).await.unwrap();
    c.find(Locator::Id("current")).await.unwrap().send_keys(old).await.unwrap();
    c.find(Locator::Id("new")).await.unwrap().send_keys(new).await.unwrap();
    c.find(Locator::Id("repeat")).await.unwrap().send_keys(new).await.unwrap();
    c.find(Locator::Id("change")).await.unwrap().click().await.unwrap();
    // The change is done once the form has gone (the password is hashed on
    // the server, slow on a busy machine); navigating before that would
    // abandon the submission.
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.find(Locator::Id("must-change")).await.is_ok() {
        assert!(Instant::now() < deadline, "the password change never completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn pwned(c: &Client) -> bool {
    c.execute("return document.body.getAttribute('data-pwned')", vec![]).await.unwrap() != serde_json::Value::Null
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysts_triage_viewers_see_pseudonyms_and_nothing_hostile_runs() {
    let _one = ONE_BROWSER.lock().await;
    let h = start().await;
    let c = browser(&h, "en-US").await;

    // Signed out: every page leads to the login form; a wrong password is refused.
    c.goto(&format!("{}/alerts", h.url)).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/login"));
    login(&c, &h, "admin", "not the password").await;
    until(&c, "#login-error", |t| t.contains("Wrong")).await;

    // First sign-in: the one-time password must be changed first.
    login(&c, &h, "admin", &h.password).await;
    change_password(&c, &h.password, "a long admin passphrase").await;
    c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("canvas[data-drawn]")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/");

    // The queue: most severe first, hostile text shown as text.
    c.goto(&format!("{}/alerts", h.url)).await.unwrap();
    let first = text(&c, "#alert-rows tr:first-child a.rule").await;
    assert!(first.starts_with("Injection <img"), "{first}");
    assert!(c.find_all(Locator::Css("#alert-rows img")).await.unwrap().is_empty());
    assert!(!pwned(&c).await);

    // Bulk: acknowledge both.
    c.find(Locator::Id("select-all")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("#bulk-action option[value=acknowledged]")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("bulk-apply")).await.unwrap().click().await.unwrap();
    until(&c, "#alert-rows", |t| t.matches("Acknowledged").count() == 2).await;

    // A state-changing request without the session's CSRF token is refused.
    let status = c
        .execute(
            "return fetch('/alerts/bulk', {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded'}, \
             body: 'ids=A00000000000000000001&action=closed_benign&reason=x'}).then(r => r.status)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403));

    // Group both into an incident, then work it.
    c.find(Locator::Id("select-all")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("#bulk-action option[value=incident_new]")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("bulk-incident")).await.unwrap().send_keys("Web attack on the portal").await.unwrap();
    c.find(Locator::Id("bulk-apply")).await.unwrap().click().await.unwrap();
    until(&c, "#incident-title", |t| t == "Web attack on the portal").await;
    assert_eq!(c.find_all(Locator::Css("#incident-alerts tr")).await.unwrap().len(), 2);
    c.find(Locator::Css("#incident-status-select option[value=investigating]")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("incident-note")).await.unwrap().send_keys("Blocked at the firewall <b>now</b>").await.unwrap();
    c.find(Locator::Id("incident-save")).await.unwrap().click().await.unwrap();
    until(&c, "#incident-status", |t| t == "Investigating").await;
    assert!(text(&c, "#incident-notes").await.contains("Blocked at the firewall <b>now</b>"));
    c.goto(&format!("{}/alerts", h.url)).await.unwrap();

    // Live: a new alert appears without a reload.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    h.store.ingest(&[alert("A00000000000000000003", "critical", "Modbus write from outside", now)]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if text(&c, "#alert-rows").await.contains("Modbus write from outside") {
            break;
        }
        assert!(Instant::now() < deadline, "the queue did not refresh itself");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Detail: matched values and evidence escaped, the flow's records shown.
    c.goto(&format!("{}/alerts/A00000000000000000001", h.url)).await.unwrap();
    assert!(text(&c, "#matched").await.contains("<img src=x"));
    assert!(text(&c, "#evidence").await.contains("portal.city.example"));
    assert!(!pwned(&c).await);

    // Search, with the hostile user agent as a result.
    c.goto(&format!("{}/search?q=_log:http", h.url)).await.unwrap();
    assert_eq!(text(&c, "#hit-total").await, "1");
    assert!(text(&c, "#hits").await.contains("onerror"));
    assert!(!pwned(&c).await);
    // Saved for later, listed on the search page.
    c.find(Locator::Id("save-name")).await.unwrap().send_keys("portal requests").await.unwrap();
    c.find(Locator::Id("save")).await.unwrap().click().await.unwrap();
    until(&c, "#saved-searches", |t| t.contains("portal requests")).await;
    c.goto(&format!("{}/search?q=uid:(", h.url)).await.unwrap();
    assert!(!text(&c, "#search-error").await.is_empty());

    // Vietnamese, chosen in the console.
    c.goto(&format!("{}/lang?to=vi", h.url)).await.unwrap();
    until(&c, "header nav", |t| t.contains("Cảnh báo")).await;
    c.goto(&format!("{}/lang?to=en", h.url)).await.unwrap();

    // Rules that fired, with their alerts' outcomes.
    c.goto(&format!("{}/rules", h.url)).await.unwrap();
    let rules = text(&c, "tr[data-rule=r-1]").await;
    assert!(
        rules.contains("r-1 on 3 ") && rules.contains(" 0 0 0 3 —"),
        "three alerts of r-1, none judged yet: {rules}"
    );
    // Tuned: the admin switches r-1 off, saying why; tuning.toml says so,
    // comments kept.
    c.find(Locator::Css("tr[data-rule=r-1] .off-reason")).await.unwrap().send_keys("noisy").await.unwrap();
    c.find(Locator::Css("tr[data-rule=r-1] .rule-disable")).await.unwrap().click().await.unwrap();
    until(&c, "#rules", |t| t.contains("switched off")).await;
    let tuning = std::fs::read_to_string(h.dir.join("tuning.toml")).unwrap();
    assert!(
        tuning.contains("# switched off by admins") && tuning.contains("\"r-1\"") && tuning.contains("noisy"),
        "{tuning}"
    );

    // Search with chosen columns: hostile values stay text in their cells.
    c.goto(&format!("{}/search?q=_log:http&cols=host,user_agent,nope", h.url)).await.unwrap();
    let head = text(&c, "table.records thead").await;
    assert!(head.contains("host") && head.contains("user_agent") && !head.contains("nope"), "{head}");
    assert!(text(&c, "#hits").await.contains("portal.city.example"));
    assert!(!pwned(&c).await);

    // Sensors: health and a chart per sensor.
    c.goto(&format!("{}/sensors", h.url)).await.unwrap();
    assert!(text(&c, "#sensors").await.contains("district-7"));
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("canvas.sensor-chart[data-drawn]"))
        .await
        .unwrap();

    // The reader's time zone.
    c.goto(&format!("{}/tz?to=UTC", h.url)).await.unwrap();
    c.goto(&format!("{}/alerts", h.url)).await.unwrap();
    assert!(text(&c, "#alert-rows tr:first-child td:nth-child(2)").await.ends_with("+00:00"));

    // The device inventory, the changed controller first and marked.
    c.goto(&format!("{}/devices", h.url)).await.unwrap();
    let devices = text(&c, "#devices tr:first-child").await;
    assert!(
        devices.contains("10.33.0.7") && devices.contains("tcp/502") && devices.contains("TELEMECANIQUE"),
        "{devices}"
    );
    assert!(text(&c, "#device-changes").await.contains("tcp/502 modbus"));

    // The admin adds a viewer.
    c.goto(&format!("{}/users", h.url)).await.unwrap();
    c.find(Locator::Id("new-name")).await.unwrap().send_keys("mayor-office").await.unwrap();
    c.find(Locator::Css("#new-role option[value=viewer]")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("add")).await.unwrap().click().await.unwrap();
    let viewer_pw = text(&c, "#new-password").await;
    c.find(Locator::Id("logout")).await.unwrap().click().await.unwrap();
    c.close().await.unwrap();

    // A viewer: read-only queue, internal addresses pseudonymised, no admin pages.
    let v = browser(&h, "vi-VN").await;
    login(&v, &h, "mayor-office", &viewer_pw).await;
    change_password(&v, &viewer_pw, "the viewer's passphrase").await;
    v.goto(&format!("{}/alerts", h.url)).await.unwrap();
    let rows = text(&v, "#alert-rows").await;
    assert!(rows.contains("internal-") && !rows.contains("10.20.0.5"), "{rows}");
    assert!(v.find_all(Locator::Css("input[name=ids]")).await.unwrap().is_empty());
    assert!(text(&v, "header nav").await.contains("Cảnh báo"), "the browser's language is the default");
    let status = v.execute("return fetch('/users').then(r => r.status)", vec![]).await.unwrap();
    assert_eq!(status, json!(403));
    let status = v.execute("return fetch('/search?q=_log:http').then(r => r.status)", vec![]).await.unwrap();
    assert_eq!(status, json!(403));
    let status = v.execute("return fetch('/devices').then(r => r.status)", vec![]).await.unwrap();
    assert_eq!(status, json!(403));
    // Packets and evidence are not for viewers, nor is tuning.
    let status =
        v.execute("return fetch('/alerts/A00000000000000000001/pcap').then(r => r.status)", vec![]).await.unwrap();
    assert_eq!(status, json!(403));
    let status =
        v.execute("return fetch('/alerts/A00000000000000000001/evidence').then(r => r.status)", vec![]).await.unwrap();
    assert_eq!(status, json!(403));
    let status = v.execute("return fetch('/rules/edit').then(r => r.status)", vec![]).await.unwrap();
    assert_eq!(status, json!(403));
    v.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_logins_are_held_off() {
    let _one = ONE_BROWSER.lock().await;
    let h = start().await;
    let c = browser(&h, "en-US").await;
    for _ in 0..5 {
        login(&c, &h, "admin", "wrong password again").await;
        until(&c, "#login-error", |t| t.contains("Wrong")).await;
    }
    // Even the right password waits now.
    login(&c, &h, "admin", &h.password).await;
    until(&c, "#login-error", |t| t.contains("Too many")).await;
    c.close().await.unwrap();
}

/// A page of another site, open in the analyst's browser while they are
/// signed in to the console, tries to drive the SOC: a form posted to the
/// open API, `no-cors` fetches to the API and to a console action. Every one
/// is refused (and audited); the console's own forms go on working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_another_site_cannot_post_to_the_soc() {
    let _one = ONE_BROWSER.lock().await;
    let h = start().await;
    let c = browser(&h, "en-US").await;
    login(&c, &h, "admin", &h.password).await;
    change_password(&c, &h.password, "a long admin passphrase").await;

    // The other site: same machine, another port (another origin).
    let soc = h.url.clone();
    let form = format!(
        "<!doctype html><form id=f method=post enctype=text/plain action='{soc}/api/v1/incidents'>\
         <input name='{{\"title\":\"planted\",\"x\":\"' value='\"}}'></form><script>f.submit()</script>"
    );
    let fetches = format!(
        "<!doctype html><script>Promise.all([\
         fetch('{soc}/api/v1/retention/run', {{method: 'POST', mode: 'no-cors'}}),\
         fetch('{soc}/alerts/bulk', {{method: 'POST', mode: 'no-cors', credentials: 'include',\
           body: new URLSearchParams('ids=A00000000000000000001&action=closed_benign&reason=x')}})\
         ]).finally(() => document.title = 'sent')</script>"
    );
    let evil = axum::Router::new()
        .route("/form", axum::routing::get(move || async move { axum::response::Html(form) }))
        .route("/fetch", axum::routing::get(move || async move { axum::response::Html(fetches) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, evil).await.unwrap() });

    // The form posts and the browser follows it to the SOC: the answer is
    // the refusal.
    c.goto(&format!("{evil_url}/form")).await.unwrap();
    let refused = until(&c, "body", |t| t.contains("cross-site request refused")).await;
    assert!(refused.contains("Sec-Fetch-Site") || refused.contains("Origin"), "{refused}");
    c.goto(&format!("{evil_url}/fetch")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.title().await.unwrap() != "sent" {
        assert!(Instant::now() < deadline, "the other site's requests never completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let audit = siem::audit::Audit::open(&h.dir).unwrap();
    let refusals = audit.read(Some("cross_site.refused"), None, 100).unwrap();
    let paths: Vec<&str> = refusals.iter().filter_map(|e| e.detail["path"].as_str()).collect();
    for p in ["/api/v1/incidents", "/api/v1/retention/run", "/alerts/bulk"] {
        assert!(paths.contains(&p), "{p} not refused: {paths:?}");
    }
    assert!(audit.read(Some("incident.create"), None, 10).unwrap().is_empty(), "no incident was planted");
    assert!(audit.read(Some("retention.run"), None, 10).unwrap().is_empty(), "retention was not run");
    assert!(audit.read(Some("alert.triage"), None, 10).unwrap().is_empty(), "no alert was closed");

    // The console's own forms (same origin) still change things.
    c.goto(&format!("{}/alerts", h.url)).await.unwrap();
    c.find(Locator::Id("select-all")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("#bulk-action option[value=acknowledged]")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("bulk-apply")).await.unwrap().click().await.unwrap();
    until(&c, "#alert-rows", |t| t.matches("Acknowledged").count() == 2).await;
    c.close().await.unwrap();
}

/// A broken audit trail: the console still serves, admins see why it is
/// read-only on every page, other roles do not, and changes are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_see_a_broken_audit_trail_on_every_page() {
    let _one = ONE_BROWSER.lock().await;
    let h = start_with(|d| std::fs::write(d.join("audit.log"), "{\"seq\":1,\"edited\":true}\n").unwrap()).await;
    let c = browser(&h, "en-US").await;
    login(&c, &h, "admin", &h.password).await;
    change_password(&c, &h.password, "a long enough passphrase 1").await;
    for page in ["/", "/alerts", "/search"] {
        c.goto(&format!("{}{page}", h.url)).await.unwrap();
        let t = text(&c, "#audit-broken").await;
        assert!(t.contains("read-only") && t.contains("line 1"), "{page}: {t}");
    }
    // A change is refused, naming the line.
    c.goto(&format!("{}/users", h.url)).await.unwrap();
    let before = std::fs::read(h.dir.join("audit.log")).unwrap();
    let save = |q: String| {
        let c = c.clone();
        async move {
            c.execute(
                "const f = new FormData(); f.append('csrf', document.querySelector('main').dataset.csrf); \
                 f.append('name', 'x'); f.append('q', arguments[0]); f.append('range', 'all'); \
                 return fetch('/search/save', {method: 'POST', body: new URLSearchParams(f)}).then(r => r.status);",
                vec![json!(q)],
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(save("uid:C1".into()).await, 503);
    // A search that could not run is not saved, whatever the trail.
    assert_eq!(save(format!("{}uid:x", "NOT ".repeat(250))).await, 400);
    assert_eq!(std::fs::read(h.dir.join("audit.log")).unwrap(), before, "nothing extends a broken chain");
    c.close().await.unwrap();
}

/// The hostile scenario capture through the real sensor and detector into
/// a store: every record and alert it makes.
fn replay_hostile(store: &TantivyStore) {
    use sensor::output::EventSink;
    struct Collect(Vec<schema::Event>);
    impl EventSink for Collect {
        fn write(&mut self, ev: &mut [schema::Event]) -> Result<(), sensor::SensorError> {
            self.0.extend(ev.iter().cloned());
            Ok(())
        }
        fn flush(&mut self) -> Result<(), sensor::SensorError> {
            Ok(())
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cap = root.join("replay-pcaps/web-hostile/capture.pcap");
    let mut pcfg = sensor::pipeline::PipelineConfig::default();
    pcfg.worker.flow.uid_seed = Some(1);
    let (_, sink) = sensor::pipeline::run(
        &sensor::capture::SourceSpec::File(cap),
        &pcfg,
        Collect(Vec::new()),
        Default::default(),
        Default::default(),
    )
    .unwrap();
    let cfg = detector::detect::DetectorConfig {
        sigma_paths: vec![root.join("rules/sigma")],
        sensor_name: "district-9".into(),
        ..Default::default()
    };
    let mut d = detector::detect::Detector::new(Arc::new(detector::detect::RuleSet::load(cfg)));
    let mut alerts = Vec::new();
    for ev in &sink.0 {
        d.observe(ev, &mut alerts);
    }
    d.flush(&mut alerts);
    assert!(!alerts.is_empty(), "the capture raises its alert");
    let events = sink.0.into_iter().filter(|e| !matches!(e, schema::Event::Stats(_)));
    let records: Vec<Record> = events
        .chain(alerts.into_iter().map(|a| schema::Event::Alert(Box::new(a))))
        .map(|e| {
            let v = serde_json::to_value(&e).unwrap();
            Record::validate(&Catalog::new(), e.log_name(), "district-9", v.as_object().unwrap().clone()).unwrap()
        })
        .collect();
    store.ingest(&records).unwrap();
}

/// A replayed capture carrying markup in every field: an analyst triages
/// its alert and searches its records, and nothing the traffic carried
/// runs; admin pages stay closed to the analyst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_hostile_capture_is_shown_as_text_and_triaged() {
    let _one = ONE_BROWSER.lock().await;
    let h = start().await;
    replay_hostile(&h.store);
    let c = browser(&h, "en-US").await;
    login(&c, &h, "admin", &h.password).await;
    change_password(&c, &h.password, "a long admin passphrase").await;
    c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("canvas[data-drawn]")).await.unwrap();
    c.goto(&format!("{}/users", h.url)).await.unwrap();
    c.find(Locator::Id("new-name")).await.unwrap().send_keys("analyst-1").await.unwrap();
    c.find(Locator::Css("#new-role option[value=analyst]")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("add")).await.unwrap().click().await.unwrap();
    let pw = text(&c, "#new-password").await;
    c.find(Locator::Id("logout")).await.unwrap().click().await.unwrap();

    login(&c, &h, "analyst-1", &pw).await;
    change_password(&c, &pw, "the analyst's passphrase").await;
    c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("canvas[data-drawn]")).await.unwrap();
    c.goto(&format!("{}/alerts", h.url)).await.unwrap();
    until(&c, "#alert-rows", |t| t.contains("Script injection attempt")).await;
    assert!(!pwned(&c).await);
    // The detail: the URI's markup as text; triaged from here.
    let link = c.find(Locator::XPath("//a[contains(., 'Script injection attempt')]")).await.unwrap();
    link.click().await.unwrap();
    until(&c, "#matched", |t| t.contains("<img/src=x/onerror=")).await;
    assert!(text(&c, "#evidence").await.contains("<script>document.body"));
    assert!(!pwned(&c).await);
    c.find(Locator::Css("#triage-select option[value=closed_true_positive]")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("triage-reason")).await.unwrap().send_keys("XSS probe <b>logged</b>").await.unwrap();
    c.find(Locator::Id("triage-save")).await.unwrap().click().await.unwrap();
    until(&c, "#triage-status", |t| t.contains("true positive")).await;
    // The records: HTTP headers and DNS names as text, in the list and in columns.
    for (q, want) in [
        ("_log:http", "<svg onload="),
        ("_log:dns", "<img src=x onerror=alert(1)>"),
        ("_log:dns&cols=query,id.orig_h", "<script>alert(2)</script>"),
    ] {
        c.goto(&format!("{}/search?q={q}", h.url)).await.unwrap();
        until(&c, "#hits", |t| t.contains(want)).await;
        assert!(!pwned(&c).await, "{q}");
    }
    // Admin pages and APIs stay closed to an analyst.
    for path in ["/users", "/audit", "/rules/edit"] {
        let s = c.execute(&format!("return fetch('{path}').then(r => r.status)"), vec![]).await.unwrap();
        assert_eq!(s, json!(403), "{path}");
    }
    let s = c
        .execute(
            "const f = new URLSearchParams({csrf: document.querySelector('main').dataset.csrf, rule: 'r-1', action: 'disable'}); \
             return fetch('/rules/tune', {method: 'POST', body: f}).then(r => r.status)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(s, json!(403));
    c.close().await.unwrap();
}

/// Signs in as admin with the one-time password, changing it.
async fn admin(h: &Harness, lang: &str) -> Client {
    let c = browser(h, lang).await;
    login(&c, h, "admin", &h.password).await;
    change_password(&c, &h.password, "a long admin passphrase").await;
    c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("canvas[data-drawn]")).await.unwrap();
    c
}

async fn value_of(c: &Client, css: &str) -> serde_json::Value {
    c.execute(&format!("return document.querySelector('{css}').value"), vec![]).await.unwrap()
}

/// A time filter's control says what applies: no choice is "all time" and
/// is shown as such, and applying the form unchanged changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_filters_show_what_they_apply() {
    let _one = ONE_BROWSER.lock().await;
    let h = start().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    // Two days old: outside the last hour, inside all time.
    h.store.ingest(&[alert("A00000000000000000009", "medium", "Old beacon", now - 2.0 * 86_400.0)]).unwrap();
    let c = admin(&h, "en-US").await;

    c.goto(&format!("{}/alerts", h.url)).await.unwrap();
    assert_eq!(text(&c, "#alert-total").await, "3");
    assert_eq!(value_of(&c, "#alert-filters select[name=range]").await, json!("all"));
    assert!(text(&c, "#range-shown").await.contains("all time"));
    // Apply, unchanged: the same alerts.
    c.find(Locator::Css("#alert-filters button[type=submit]")).await.unwrap().click().await.unwrap();
    until(&c, "#range-shown", |_| true).await;
    assert!(c.current_url().await.unwrap().query().unwrap_or("").contains("range=all"));
    assert_eq!(text(&c, "#alert-total").await, "3");
    // The last hour: the old alert goes, and the page says from when.
    c.find(Locator::Css("#alert-filters select[name=range] option[value='1h']")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("#alert-filters button[type=submit]")).await.unwrap().click().await.unwrap();
    until(&c, "#alert-total", |t| t == "2").await;
    let shown = text(&c, "#range-shown").await;
    assert!(shown.starts_with("Showing: since 20"), "{shown}");
    assert_eq!(value_of(&c, "#alert-filters select[name=range]").await, json!("1h"));

    // The dashboard and the search say it the same way.
    for (page, form) in [("/", "form.filters"), ("/search?q=_log:alerts", "#search-form")] {
        c.goto(&format!("{}{page}", h.url)).await.unwrap();
        assert_eq!(value_of(&c, &format!("{form} select[name=range]")).await, json!("all"), "{page}");
        assert!(text(&c, "#range-shown").await.contains("all time"), "{page}");
    }
    assert_eq!(text(&c, "#hit-total").await, "3");
    // A range the list does not have is refused, not read as "all time".
    let s = c.execute("return fetch('/alerts?range=2h').then(r => r.status)", vec![]).await.unwrap();
    assert_eq!(s, json!(400));
    c.close().await.unwrap();
}

/// `2026-12-07 14:43:04+07:00`: ISO 8601 with the offset (or `2026-12-07`).
fn iso_time(t: &str) -> bool {
    let b = t.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let date = digits(0..4) && b.get(4) == Some(&b'-') && digits(5..7) && b.get(7) == Some(&b'-') && digits(8..10);
    // A day alone (a storage partition) is a date.
    if b.len() == 10 {
        return date;
    }
    b.len() == 25
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b' '
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && (b[19] == b'+' || b[19] == b'-')
        && digits(20..22)
        && b[22] == b':'
        && digits(23..25)
}

/// Every page fits a 1,366 px screen with its times on one line in ISO
/// form; in Vietnamese our rule titles, summaries, audit actions and error
/// pages are Vietnamese, the language switch stays on the page, and a form
/// sent back with an error keeps what was typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_fit_a_small_screen_and_speak_vietnamese() {
    let _one = ONE_BROWSER.lock().await;
    let h = start().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let title = "FTP login with a cleartext password";
    let long = "fd00:1234:5678:9abc:def0:1234:5678:9abc";
    h.store
        .ingest(&[record(
            "alerts",
            json!({"ts": now - 10.0, "id": "A00000000000000000077", "severity": "high", "rule.source": "sigma",
                   "rule.id": "ftp-cleartext", "rule.title": title, "rule.version": "v1",
                   "sensor": "district-7-water-treatment-plant-north", "summary": format!("{title} [{long}]:40000 -> [{long}]:21"),
                   "uid": "CFLOW9", "id.orig_h": long, "id.orig_p": 40000, "id.resp_h": long, "id.resp_p": 21,
                   "mitre_attack": ["T1552", "T1078.001", "T1021.004"], "count": 3, "first_seen": now - 100.0,
                   "last_seen": now - 10.0, "matched": [format!("uri=/{}", "very-long-path-segment/".repeat(12))]}),
        )])
        .unwrap();
    let c = admin(&h, "en-US").await;
    c.set_window_size(1366, 768).await.unwrap();
    let pages = [
        "/",
        "/alerts",
        "/alerts/A00000000000000000077",
        "/incidents",
        "/search?q=*",
        "/rules",
        "/sensors",
        "/devices",
        "/users",
        "/audit",
    ];
    for lang in ["en", "vi"] {
        c.goto(&format!("{}/lang?to={lang}&back=%2F", h.url)).await.unwrap();
        for page in pages {
            c.goto(&format!("{}{page}", h.url)).await.unwrap();
            until(&c, "main", |_| true).await;
            let w = c
                .execute("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]", vec![])
                .await
                .unwrap();
            let (scroll, client) = (w[0].as_f64().unwrap(), w[1].as_f64().unwrap());
            assert!(scroll <= client, "{lang} {page}: {scroll} px wide on a {client} px screen");
            let times = c
                .execute(
                    "return [...document.querySelectorAll('.time')].map(e => { \
                     const r = document.createRange(); r.selectNodeContents(e); \
                     return [e.textContent.trim(), r.getClientRects().length]; })",
                    vec![],
                )
                .await
                .unwrap();
            for t in times.as_array().unwrap() {
                let (text, lines) = (t[0].as_str().unwrap(), t[1].as_u64().unwrap());
                assert!(iso_time(text), "{lang} {page}: time {text:?}");
                // None when folded away (a closed <details>).
                assert!(lines <= 1, "{lang} {page}: {text} wraps over {lines} lines");
            }
        }
    }

    // Vietnamese: the switch keeps the page and its query.
    c.goto(&format!("{}/lang?to=en&back=%2F", h.url)).await.unwrap();
    c.goto(&format!("{}/alerts?severity=high&range=all", h.url)).await.unwrap();
    c.find(Locator::Id("lang-vi")).await.unwrap().click().await.unwrap();
    until(&c, "header nav", |t| t.contains("Cảnh báo")).await;
    let url = c.current_url().await.unwrap();
    assert_eq!((url.path(), url.query()), ("/alerts", Some("severity=high&range=all")));
    // Our rule's title and summary in Vietnamese.
    let rows = text(&c, "#alert-rows").await;
    assert!(rows.contains("Đăng nhập FTP với mật khẩu dạng rõ") && !rows.contains(title), "{rows}");
    c.goto(&format!("{}/alerts/A00000000000000000077", h.url)).await.unwrap();
    let summary = text(&c, "#alert-summary").await;
    assert!(summary.starts_with("Đăng nhập FTP với mật khẩu dạng rõ [fd00:"), "{summary}");
    // Audit actions by their Vietnamese names.
    c.goto(&format!("{}/audit?action=console.login", h.url)).await.unwrap();
    let audit = text(&c, "#audit").await;
    assert!(audit.contains("Đăng nhập") && !audit.contains("console.login"), "{audit}");
    // A refused filter says why in Vietnamese, on its page, the filter kept.
    c.goto(&format!("{}/alerts?range=bogus", h.url)).await.unwrap();
    let error = text(&c, "#filter-error").await;
    assert!(error.contains("khoảng thời gian 'bogus' không hợp lệ"), "{error}");
    // Any other error is a page in Vietnamese.
    c.goto(&format!("{}/alerts/not-an-alert", h.url)).await.unwrap();
    let error = text(&c, "#error-text").await;
    assert!(!error.is_empty() && c.find(Locator::Id("filter-error")).await.is_err(), "{error}");
    assert_eq!(c.find(Locator::Css("html")).await.unwrap().attr("lang").await.unwrap().as_deref(), Some("vi"));
    // A form sent back with an error keeps what was typed, and says why in Vietnamese.
    c.goto(&format!("{}/users", h.url)).await.unwrap();
    c.find(Locator::Id("new-name")).await.unwrap().send_keys("tên sai!").await.unwrap();
    c.find(Locator::Css("#new-role option[value=responder]")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("add")).await.unwrap().click().await.unwrap();
    assert!(text(&c, "#users-error").await.contains("Tên người dùng gồm"));
    assert_eq!(value_of(&c, "#new-name").await, json!("tên sai!"));
    assert_eq!(value_of(&c, "#new-role").await, json!("responder"));
    // So does the triage form: closing without a reason is refused, the
    // comment typed is still there.
    c.goto(&format!("{}/alerts/A00000000000000000077", h.url)).await.unwrap();
    c.find(Locator::Css("#triage-select option[value=closed_benign]")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("triage-comment")).await.unwrap().send_keys("máy quét của phòng CNTT").await.unwrap();
    c.find(Locator::Id("triage-save")).await.unwrap().click().await.unwrap();
    assert!(text(&c, "#triage-error").await.contains("Đóng cảnh báo cần có lý do"));
    assert_eq!(value_of(&c, "#triage-comment").await, json!("máy quét của phòng CNTT"));
    assert_eq!(value_of(&c, "#triage-select").await, json!("closed_benign"));
    c.close().await.unwrap();
}

/// A model's alert reads in Vietnamese, summary included, and so does the
/// SIEM's refusal of a malformed query, with its position.
#[tokio::test]
async fn model_summaries_and_query_errors_speak_vietnamese() {
    let _one = ONE_BROWSER.lock().await;
    let h = start().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    // The summary exactly as the scan model writes it.
    let s = schema::Summary::en(
        "model.scan.horizontal",
        &[
            ("src", Some("10.20.0.5".into())),
            ("capped", Some(String::new())),
            ("hosts", Some("40".into())),
            ("took", Some("12.0 s".into())),
            ("ports", Some("tcp/22 (40 hosts), tcp/23 (12 hosts)".into())),
            ("ports_more", Some("3".into())),
            ("answered", Some("2".into())),
        ],
    );
    h.store
        .ingest(&[record(
            "alerts",
            json!({"ts": now - 5.0, "id": "A00000000000000000088", "severity": "medium", "rule.source": "model",
                   "rule.id": "model:scan", "rule.title": "Network scan", "rule.version": "v1",
                   "sensor": "district-7", "summary": s.text, "summary_key": s.key,
                   "summary_args": serde_json::to_value(&s.args).unwrap(), "id.orig_h": "10.20.0.5",
                   "count": 40, "first_seen": now - 17.0, "last_seen": now - 5.0}),
        )])
        .unwrap();
    let c = admin(&h, "vi-VN").await;
    c.goto(&format!("{}/alerts/A00000000000000000088", h.url)).await.unwrap();
    let summary = text(&c, "#alert-summary").await;
    assert_eq!(
        summary,
        "Quét ngang: 10.20.0.5 dò ít nhất 40 máy trong 12.0 s trên tcp/22 (40 hosts), tcp/23 (12 hosts) và 3 khác; \
         2 máy trả lời mở"
    );
    assert!(s.text.starts_with("Horizontal scan: 10.20.0.5 probed at least 40 hosts"), "{}", s.text);
    // A query error on the search page, where it was made.
    c.goto(&format!("{}/search?q=id.resp_p%3Ahttp&range=all", h.url)).await.unwrap();
    let error = text(&c, "#search-error").await;
    assert_eq!(error, "tại vị trí 10: 'http' không phải là số đếm hợp lệ");
    // A refusal on a page of its own: this SIEM keeps no packets.
    c.goto(&format!("{}/alerts/A00000000000000000001/pcap", h.url)).await.unwrap();
    let error = text(&c, "#error-text").await;
    assert_eq!(error, "SIEM này không lưu gói tin");
    // English readers get the SIEM's own words.
    c.goto(&format!("{}/lang?to=en&back=%2F", h.url)).await.unwrap();
    c.goto(&format!("{}/alerts/A00000000000000000088", h.url)).await.unwrap();
    assert_eq!(text(&c, "#alert-summary").await, s.text);
    c.goto(&format!("{}/search?q=id.resp_p%3Ahttp&range=all", h.url)).await.unwrap();
    assert_eq!(text(&c, "#search-error").await, "at 10: 'http' is not a valid count");
    c.close().await.unwrap();
}

/// The aggregation workflow: the dashboard's top talkers by flows and by
/// bytes and its top DNS names, on to the aggregation page, each bar's
/// search; a histogram too fine for its range widened and said so; an
/// exact distinct count; a bad field refused with the form kept; the page
/// fits a small screen in both languages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregations_answer_and_lead_to_their_records() {
    let _one = ONE_BROWSER.lock().await;
    let h = start().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let flow = |i: u64, src: &str, bytes: u64, ts: f64| {
        record(
            "conn",
            json!({"ts": ts, "uid": format!("CAGG{i}"), "id.orig_h": src, "id.resp_h": "198.51.100.7", "id.resp_p": 443,
                   "proto": "tcp", "orig_ip_bytes": bytes, "resp_ip_bytes": bytes / 2}),
        )
    };
    let mut recs = Vec::new();
    // Many small flows from one address, two big ones from another.
    for i in 0..5 {
        recs.push(flow(i, "10.50.0.1", 100, now - 100.0 - i as f64));
    }
    recs.push(flow(5, "10.50.0.2", 1_000_000, now - 90.0));
    // Twenty days back: a 1-second histogram would need 1.7 million bars.
    recs.push(flow(6, "10.50.0.2", 1_000_000, now - 20.0 * 86_400.0));
    for (i, name) in
        ["updates.city.example", "updates.city.example", "updates.city.example", "mail.city.example"].iter().enumerate()
    {
        recs.push(record("dns", json!({"ts": now - 80.0 - i as f64, "uid": format!("CDNS{i}"), "query": name})));
    }
    h.store.ingest(&recs).unwrap();
    let c = admin(&h, "en-US").await;
    c.set_window_size(1366, 768).await.unwrap();

    // The dashboard: by flows one address leads, by bytes the other.
    c.goto(&format!("{}/", h.url)).await.unwrap();
    let flows = text(&c, "#talkers-flows tbody tr:first-child").await;
    assert!(flows.starts_with("10.50.0.1") && flows.ends_with('5'), "{flows}");
    let by_bytes = text(&c, "#talkers-bytes tbody tr:first-child").await;
    assert!(by_bytes.starts_with("10.50.0.2") && by_bytes.contains("2.9 MiB") && by_bytes.ends_with('2'), "{by_bytes}");
    let dns = text(&c, "#dns-names tbody tr:first-child").await;
    assert!(dns.starts_with("updates.city.example") && dns.ends_with('3'), "{dns}");

    // On to the aggregation page by bytes, then the leader's flows.
    c.find(Locator::Css("#talkers-bytes"))
        .await
        .unwrap()
        .find(Locator::XPath("./ancestor::div[1]//a[@class='more']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let first = until(&c, "#agg-rows tbody tr:first-child", |_| true).await;
    assert!(first.starts_with("10.50.0.2 2 2.9 MiB"), "{first}");
    assert_eq!(value_of(&c, "#by").await, json!("bytes"));
    assert_eq!(value_of(&c, "#q").await, json!("_log:conn"));
    c.find(Locator::Css("#agg-rows tbody tr:first-child a")).await.unwrap().click().await.unwrap();
    until(&c, "#hit-total", |t| t == "2").await;
    assert_eq!(value_of(&c, "#q").await, json!("(_log:conn) AND id.orig_h:10.50.0.2"));
    // And back from the search to the aggregation of its records.
    c.find(Locator::Id("to-aggregate")).await.unwrap().click().await.unwrap();
    until(&c, "#agg-rows tbody", |t| t.starts_with("10.50.0.2 2")).await;

    // Records over time at one second: widened, and the page says so.
    c.goto(&format!("{}/aggregate?q=_log%3Aconn&range=all", h.url)).await.unwrap();
    c.find(Locator::Css("#agg option[value=histogram]")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("interval")).await.unwrap().send_keys("1").await.unwrap();
    c.find(Locator::Id("run")).await.unwrap().click().await.unwrap();
    let widened = text(&c, "#agg-widened").await;
    assert!(widened.contains("1s") && widened.contains("5m"), "{widened}");
    assert_eq!(text(&c, "#agg-interval").await, "Interval: 5m");
    let rows = text(&c, "#agg-rows tbody").await;
    assert_eq!(rows.lines().count(), 2, "{rows}");
    // The old flow's bar leads to that one flow.
    c.find(Locator::Css("#agg-rows tbody tr:first-child a")).await.unwrap().click().await.unwrap();
    until(&c, "#hit-total", |t| t == "1").await;
    assert!(text(&c, "#hits").await.contains("CAGG6"));

    // A distinct count, exact.
    c.goto(&format!("{}/aggregate?q=_log%3Aconn&range=all&agg=cardinality&field=id.orig_h", h.url)).await.unwrap();
    assert_eq!(text(&c, "#agg-value b").await, "3");
    assert_eq!(text(&c, "#agg-exactness").await, "exact count");

    // The form as a browser sends it: an empty number box is no choice.
    c.goto(&format!("{}/aggregate?range=all", h.url)).await.unwrap();
    c.find(Locator::Id("q")).await.unwrap().send_keys("_log:conn").await.unwrap();
    c.find(Locator::Id("run")).await.unwrap().click().await.unwrap();
    until(&c, "#agg-rows tbody", |t| t.contains("10.50.0.2")).await;
    c.goto(&format!("{}/aggregate?q=_log%3Aconn&range=all&agg=terms&size=ten", h.url)).await.unwrap();
    assert!(text(&c, "#error-text").await.contains("'ten' is not a number"));

    // A field that is not one: the reason, and the form as typed.
    c.goto(&format!("{}/aggregate?q=_log%3Adns&range=all&agg=terms&field=nosuch", h.url)).await.unwrap();
    assert!(text(&c, "#agg-error").await.contains("nosuch"));
    assert_eq!(value_of(&c, "#field").await, json!("nosuch"));

    // Fits a small screen, in both languages.
    for lang in ["vi", "en"] {
        c.goto(&format!("{}/lang?to={lang}&back=%2F", h.url)).await.unwrap();
        c.goto(&format!("{}/aggregate?q=_log%3Adns&range=all&agg=terms&field=query", h.url)).await.unwrap();
        until(&c, "#agg-rows", |t| t.contains("updates.city.example")).await;
        let w = c
            .execute("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]", vec![])
            .await
            .unwrap();
        assert!(w[0].as_f64() <= w[1].as_f64(), "{lang}: {w}");
    }
    assert!(!pwned(&c).await);
    c.close().await.unwrap();
}

/// A responder's investigation: a search over an absolute range typed in
/// their own time zone, a flow's timeline from a uid, an alert opened from
/// a search row, and the investigation kept and attached to an incident
/// (audited once, with the texts), listed on the incident's page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responder_keeps_an_investigation_and_attaches_it_to_an_incident() {
    let _one = ONE_BROWSER.lock().await;
    let h = start().await;
    // 2026-01-01T03:00:00Z is 10:00 in Ho Chi Minh City (+07:00).
    h.store
        .ingest(&[record(
            "conn",
            json!({"ts": 1_767_236_400.0, "uid": "COLD1", "id.orig_h": "10.20.0.8", "id.orig_p": 50000,
                   "id.resp_h": "203.0.113.50", "id.resp_p": 443, "proto": "tcp", "service": "ssl"}),
        )])
        .unwrap();
    let c = admin(&h, "en-US").await;
    // An incident to attach to, and a responder.
    let s = c
        .execute(
            "const f = new URLSearchParams({csrf: document.querySelector('main').dataset.csrf, action: 'incident_new', \
             ids: 'A00000000000000000001', incident: 'Portal injection'}); \
             return fetch('/alerts/bulk', {method: 'POST', body: f}).then(r => r.url)",
            vec![],
        )
        .await
        .unwrap();
    let incident = s.as_str().unwrap().rsplit('/').next().unwrap().to_string();
    c.goto(&format!("{}/users", h.url)).await.unwrap();
    c.find(Locator::Id("new-name")).await.unwrap().send_keys("responder-1").await.unwrap();
    c.find(Locator::Css("#new-role option[value=responder]")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("add")).await.unwrap().click().await.unwrap();
    let pw = text(&c, "#new-password").await;
    c.find(Locator::Id("logout")).await.unwrap().click().await.unwrap();
    login(&c, &h, "responder-1", &pw).await;
    change_password(&c, &pw, "the responder's passphrase").await;
    c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("canvas[data-drawn]")).await.unwrap();

    // An absolute range typed in the reader's zone: 09:30-10:30 in Ho Chi
    // Minh City holds the 03:00 UTC flow (read as UTC it would not).
    c.goto(&format!("{}/tz?to=Asia/Ho_Chi_Minh&back=/search", h.url)).await.unwrap();
    c.find(Locator::Id("q")).await.unwrap().send_keys("_log:conn").await.unwrap();
    c.find(Locator::Css("#search-form input[name=from]")).await.unwrap().send_keys("2026-01-01 09:30").await.unwrap();
    c.find(Locator::Css("#search-form input[name=to]")).await.unwrap().send_keys("2026-01-01T10:30").await.unwrap();
    assert_eq!(value_of(&c, "#search-form select[name=range]").await, json!("custom"));
    c.find(Locator::Id("search")).await.unwrap().click().await.unwrap();
    until(&c, "#hit-total", |t| t == "1").await;
    assert!(text(&c, "#hits").await.contains("COLD1"));
    assert_eq!(text(&c, "#range-shown").await, "Showing: 2026-01-01 09:30:00+07:00 to 2026-01-01 10:30:00+07:00");
    assert!(text(&c, "#hits .time").await.starts_with("2026-01-01 10:00:00+07:00"));
    // The same range with an offset, and one that does not read.
    c.goto(&format!("{}/search?q=_log:conn&from=2026-01-01T02:30Z&to=2026-01-01T03:30%2B00:00", h.url)).await.unwrap();
    until(&c, "#hit-total", |t| t == "1").await;
    c.goto(&format!("{}/search?q=_log:conn&from=soon", h.url)).await.unwrap();
    assert!(text(&c, "#search-error").await.contains("'From' is not a time: 'soon'"));
    assert_eq!(value_of(&c, "#search-form input[name=from]").await, json!("soon"));

    // An alert row of a search leads to the alert.
    c.goto(&format!("{}/search?q=_log:alerts&from=1h", h.url)).await.unwrap();
    until(&c, "#hit-total", |t| t == "2").await;
    c.find(Locator::Css("#hits a.record-link")).await.unwrap().click().await.unwrap();
    until(&c, "#alert-title", |t| !t.is_empty()).await;
    assert!(c.current_url().await.unwrap().path().starts_with("/alerts/A0000000000000000000"));

    // A uid leads to its flow's timeline: records and alerts in time order.
    c.goto(&format!("{}/search?q=_log:http", h.url)).await.unwrap();
    c.find(Locator::Css("#hits a[href='/timeline?uid=CFLOW1']")).await.unwrap().click().await.unwrap();
    until(&c, "#timeline-subject", |t| t.contains("CFLOW1")).await;
    assert_eq!(text(&c, "#timeline-total").await, "4");
    assert_eq!(text(&c, "#timeline-alerts").await, "2");
    let order = c
        .execute(
            "return [...document.querySelectorAll('#timeline tr')].map(r => r.className + ':' + r.cells[1].textContent.trim())",
            vec![],
        )
        .await
        .unwrap();
    let order: Vec<String> = serde_json::from_value(order).unwrap();
    assert_eq!(order[0], "record-row:conn");
    assert_eq!(order[1], "record-row:http");
    assert!(order[2].starts_with("alert-row:") && order[3].contains("Cleartext FTP login"), "{order:?}");
    assert!(!pwned(&c).await);
    let alert_href = c.find(Locator::Css("#timeline a.alert-link")).await.unwrap().attr("href").await.unwrap();
    assert_eq!(alert_href.as_deref(), Some("/alerts/A00000000000000000001"));
    let pcap = c.find(Locator::Id("timeline-pcap")).await.unwrap().attr("href").await.unwrap().unwrap();
    assert!(pcap.starts_with("/timeline/pcap?uid=CFLOW1"), "{pcap}");
    let search = c.find(Locator::Id("timeline-search")).await.unwrap().attr("href").await.unwrap().unwrap();
    assert!(search.starts_with("/search?q=uid%3ACFLOW1"), "{search}");

    // Kept in a new investigation, with a note; then attached.
    c.find(Locator::Css("#investigate summary")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("investigate-title")).await.unwrap().send_keys("Portal probe from 10.20.0.5").await.unwrap();
    c.find(Locator::Id("investigate-note")).await.unwrap().send_keys("injection then FTP in one flow").await.unwrap();
    c.find(Locator::Id("investigate-save")).await.unwrap().click().await.unwrap();
    until(&c, "#investigation-title", |t| t == "Portal probe from 10.20.0.5").await;
    let steps = text(&c, "#investigation-steps").await;
    assert!(steps.contains("CFLOW1") && steps.contains("injection then FTP in one flow"), "{steps}");
    c.find(Locator::Css(&format!("#attach-incident option[value='{incident}']"))).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("attach-note")).await.unwrap().send_keys("the flow behind the alert").await.unwrap();
    c.find(Locator::Id("attach")).await.unwrap().click().await.unwrap();
    until(&c, "#investigation-incident", |t| t.contains(&incident)).await;
    // The incident lists it, and it opens again with its steps' links.
    c.goto(&format!("{}/incidents/{incident}", h.url)).await.unwrap();
    until(&c, "#incident-investigations", |t| t.contains("Portal probe from 10.20.0.5")).await;
    c.find(Locator::Css("#incident-investigations a")).await.unwrap().click().await.unwrap();
    until(&c, "#investigation-steps", |t| t.contains("the flow behind the alert")).await;
    c.find(Locator::Css("#investigation-steps a.step-link")).await.unwrap().click().await.unwrap();
    until(&c, "#timeline-subject", |t| t.contains("CFLOW1")).await;
    // An alert's flow kept in the same investigation, from the alert's page.
    c.goto(&format!("{}/alerts/A00000000000000000002", h.url)).await.unwrap();
    c.find(Locator::Css("#investigate summary")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("#investigate-into option[value=V1]")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("investigate-note")).await.unwrap().send_keys("the FTP login's flow").await.unwrap();
    c.find(Locator::Id("investigate-save")).await.unwrap().click().await.unwrap();
    until(&c, "#investigation-steps", |t| t.contains("the FTP login's flow")).await;
    assert_eq!(c.find_all(Locator::Css("#investigation-steps li")).await.unwrap().len(), 3);
    c.close().await.unwrap();

    // One audit entry for the attachment, with what was typed.
    let trail = std::fs::read_to_string(h.dir.join("audit.log")).unwrap();
    let attached: Vec<&str> = trail.lines().filter(|l| l.contains("\"investigation.attach\"")).collect();
    assert_eq!(attached.len(), 1, "{trail}");
    assert!(attached[0].contains("the flow behind the alert") && attached[0].contains(&incident), "{}", attached[0]);
    assert!(trail.contains("injection then FTP in one flow"));
}

fn audit_lines(h: &Harness) -> Vec<serde_json::Value> {
    std::fs::read_to_string(h.dir.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The inventory a page at a time, searched and by type, shared MACs
/// flagged; an accepted device change says so; the queue's refresh writes
/// no audit entry while reasons and notes are recorded as typed; the audit
/// page filters by target and time; refused forms keep what was typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_pages_accepted_changes_and_an_audit_trail_worth_reading() {
    let _one = ONE_BROWSER.lock().await;
    let h = start_with(|d| std::fs::write(d.join("models.toml"), "[iot]\naccepted = []\n").unwrap()).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    // 130 devices: every tenth a camera, the rest behind one router's MAC;
    // the same change written twice (a capture replayed).
    let mut recs = Vec::new();
    for i in 0..130u32 {
        let host = format!("10.40.{}.{}", i / 100, i % 100 + 1);
        let camera = i % 10 == 0;
        let mut snap = json!({"ts": now - 100.0, "host": host, "change": "snapshot", "first_seen": now - 900.0,
                              "last_seen": now - 100.0, "peers": 1});
        if camera {
            snap["mac"] = json!(format!("02:00:00:00:00:{:02x}", i));
            snap["device_type"] = json!("camera");
            snap["type_evidence"] = json!("serves tcp/554 (rtsp)");
            snap["services"] = json!(["tcp/554 (rtsp)"]);
        } else {
            snap["mac"] = json!("00:1b:63:00:00:01");
            snap["mac_shared"] = json!(129);
        }
        recs.push(record("known_devices", snap));
    }
    for _ in 0..2 {
        recs.push(record(
            "known_devices",
            json!({"ts": now - 200.0, "host": "10.40.0.1", "change": "new_service", "proto": "tcp", "port": 554,
                   "service": "(rtsp)", "peer": "10.20.0.5"}),
        ));
    }
    recs.push(record(
        "alerts",
        json!({"ts": now - 20.0, "id": "A00000000000000000042", "severity": "medium", "rule.source": "model",
               "rule.id": "model:iot", "rule.title": "IoT device profile", "rule.version": "v1", "sensor": "district-7",
               "summary": "10.40.0.11 talks to a new peer 198.51.100.7", "id.orig_h": "10.40.0.11",
               "matched": ["kind=peer", "value=198.51.100.7"], "count": 1, "first_seen": now - 20.0, "last_seen": now - 20.0}),
    ));
    h.store.ingest(&recs).unwrap();
    let c = admin(&h, "en-US").await;

    // The inventory: 100 rows a page, types with their evidence, the
    // router's MAC flagged, each change once.
    c.goto(&format!("{}/devices", h.url)).await.unwrap();
    assert!(text(&c, "#device-count").await.starts_with("131 devices"), "{}", text(&c, "#device-count").await);
    assert_eq!(c.find_all(Locator::Css("#devices tr")).await.unwrap().len(), 100);
    let shared = text(&c, "#devices .shared-mac").await;
    assert!(shared.contains("129"), "{shared}");
    assert_eq!(
        c.find_all(Locator::Css("#device-changes tr")).await.unwrap().len(),
        2,
        "the change once, and the PLC's"
    );
    c.find(Locator::Id("device-next")).await.unwrap().click().await.unwrap();
    until(&c, "#device-count", |t| t.contains("page 2/2")).await;
    assert_eq!(c.find_all(Locator::Css("#devices tr")).await.unwrap().len(), 31);
    // Searched, then by type.
    c.find(Locator::Id("device-q")).await.unwrap().send_keys("rtsp").await.unwrap();
    c.find(Locator::Css("#device-filters button[type=submit]")).await.unwrap().click().await.unwrap();
    until(&c, "#device-count", |t| t.starts_with("13 devices")).await;
    let cam = text(&c, "#devices tr:first-child .device-type").await;
    assert!(cam.contains("Camera") && cam.contains("serves tcp/554 (rtsp)"), "{cam}");
    c.goto(&format!("{}/devices?kind=camera", h.url)).await.unwrap();
    assert!(text(&c, "#device-count").await.starts_with("13 devices"));
    assert_eq!(value_of(&c, "#device-kind").await, json!("camera"));
    // A search that finds nothing says so, not that nothing was ever seen.
    c.goto(&format!("{}/devices?q=no-such-device-anywhere", h.url)).await.unwrap();
    assert_eq!(text(&c, "#devices-empty").await, "No device matches this search.");

    // An IoT change accepted: the page says so, the button is gone, the
    // alert is closed as benign, one audit entry.
    c.goto(&format!("{}/alerts/A00000000000000000042", h.url)).await.unwrap();
    let before = audit_lines(&h).len();
    c.find(Locator::Id("accept-change")).await.unwrap().click().await.unwrap();
    until(&c, "#accepted-change", |t| t.contains("10.40.0.11 peer 198.51.100.7")).await;
    assert!(c.find(Locator::Id("accept-change")).await.is_err());
    assert_eq!(text(&c, "#triage-status").await, "Closed: benign");
    let models = std::fs::read_to_string(h.dir.join("models.toml")).unwrap();
    assert!(models.contains("10.40.0.11 peer 198.51.100.7"), "{models}");
    let after = audit_lines(&h);
    let accepted: Vec<_> = after.iter().skip(before).filter(|e| e["action"] == "model.accept").collect();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0]["detail"]["status"], "closed_benign");
    // Besides it, only the page shown again after it.
    let others: Vec<_> = after.iter().skip(before).map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(others, ["model.accept", "alert.view"]);

    // One look is one entry: the dashboard (all its charts), an alert's
    // page (its flow as other sensors saw it included), its packets.
    for (path, css, action) in
        [("/", "#talkers-flows", "dashboard"), ("/alerts/A00000000000000000002", "#alert-title", "alert.view")]
    {
        let before = audit_lines(&h).len();
        c.goto(&format!("{}{path}", h.url)).await.unwrap();
        until(&c, css, |_| true).await;
        let new: Vec<String> =
            audit_lines(&h).iter().skip(before).map(|e| e["action"].as_str().unwrap().to_string()).collect();
        assert_eq!(new, [action], "{path}");
    }

    // The queue refreshes every 5 s: no audit entry for it.
    c.goto(&format!("{}/alerts", h.url)).await.unwrap();
    until(&c, "#alert-total", |_| true).await;
    let before = audit_lines(&h).len();
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(audit_lines(&h).len(), before, "two refreshes, nothing audited");

    // A close reason and a comment are in the trail as typed.
    c.goto(&format!("{}/alerts/A00000000000000000002", h.url)).await.unwrap();
    c.find(Locator::Css("#triage-select option[value='closed_false_positive']")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("triage-reason")).await.unwrap().send_keys("the lab's test FTP server").await.unwrap();
    c.find(Locator::Id("triage-comment")).await.unwrap().send_keys("checked with the lab").await.unwrap();
    c.find(Locator::Id("triage-save")).await.unwrap().click().await.unwrap();
    until(&c, "#triage-status", |t| t.contains("false positive")).await;
    let last = audit_lines(&h).into_iter().rev().find(|e| e["action"] == "alert.triage").unwrap();
    assert_eq!(last["detail"]["reason"], "the lab's test FTP server");
    assert_eq!(last["detail"]["comment"], "checked with the lab");

    // The alert's own trail holds the download of its evidence bundle.
    let s =
        c.execute("return fetch('/alerts/A00000000000000000001/evidence').then(r => r.status)", vec![]).await.unwrap();
    assert_eq!(s, json!(200));
    c.goto(&format!("{}/alerts/A00000000000000000001", h.url)).await.unwrap();
    let trail = text(&c, "ul.audit").await;
    assert!(trail.contains("Exported evidence"), "{trail}");

    // The audit page by target, by time, a bad time refused with the form kept.
    c.goto(&format!("{}/audit?target=A00000000000000000002", h.url)).await.unwrap();
    let rows = text(&c, "#audit").await;
    assert!(rows.contains("the lab's test FTP server") && !rows.contains("A00000000000000000042"), "{rows}");
    c.goto(&format!("{}/audit?target=A00000000000000000002&from=2099-01-01T00:00", h.url)).await.unwrap();
    assert!(text(&c, "#audit-count").await.starts_with("0 entries"));
    assert_eq!(value_of(&c, "#audit-from").await, json!("2099-01-01T00:00"));
    c.goto(&format!("{}/audit?who=admin&from=yesterday", h.url)).await.unwrap();
    assert!(text(&c, "#audit-error").await.contains("'yesterday' is not a time"));
    assert_eq!(value_of(&c, "#audit-who").await, json!("admin"));

    // A queue filter refused: the queue again, the filter kept.
    c.goto(&format!("{}/alerts?src=not-an-address&rule=FTP", h.url)).await.unwrap();
    assert!(text(&c, "#filter-error").await.contains("not-an-address"));
    assert_eq!(value_of(&c, "#alert-filters input[name=rule]").await, json!("FTP"));
    c.close().await.unwrap();
}
