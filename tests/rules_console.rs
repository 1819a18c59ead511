//! The rules pages in a real browser (headless Chromium over chromedriver,
//! as the console's own browser tests), with the real rule editor over a
//! copy of the shipped rules folder, back-testing against the bundled
//! captures, and a store holding the alerts a capture raised.

use citysoc::detection::DetectSettings;
use citysoc::replay;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use siem::api::AppState;
use siem::store::tantivy::{TantivyConfig, TantivyStore};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The SQL injection rule, and the capture whose case expects it as "high".
const SQLI: &str = "326927dd-13a5-4e68-bca1-749328569105";
const SQLI_FILE: &str = "sigma/web/web_sqli.yml";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Text of the first element matching `css` once `ok` holds (pages change
/// under us after a submit).
async fn until(c: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    // A back-test replays every bundled capture: slow on a busy machine.
    let deadline = Instant::now() + Duration::from_secs(300);
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{css} never became as expected; last seen: {last:?}");
}

async fn texts(c: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in c.find_all(Locator::Css(css)).await.unwrap() {
        out.push(e.text().await.unwrap());
    }
    out
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
}

/// The rule file's text area set to `text` (typing a whole file is slow).
async fn set_text(c: &Client, text: &str) {
    c.execute("document.getElementById('rule-text').value = arguments[0]", vec![json!(text)]).await.unwrap();
}

fn audit(data: &Path, action: &str) -> Vec<Value> {
    std::fs::read_to_string(data.join("audit.log"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["action"] == action)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_back_test_save_restore_and_switch_off_rules() {
    for (path, pkg) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        assert!(Path::new(path).exists(), "{path} is missing: apt-get install {pkg}");
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let (rules, data, logs) = (tmp.path().join("rules"), tmp.path().join("data"), tmp.path().join("logs"));
    copy_dir(&root.join("rules"), &rules);
    std::fs::create_dir_all(&data).unwrap();
    // The store holds what the web-attacks capture raises.
    let cases = root.join("replay-pcaps");
    let set = DetectSettings { rules_dir: Some(rules.clone()), ..Default::default() }.load("district-7").unwrap();
    let case = replay::load_cases(&cases).unwrap().into_iter().find(|c| c.name == "web-attacks").unwrap();
    replay::run_case(&case, &logs.join("web-attacks"), 1, Some(&set)).unwrap();
    let store = Arc::new(TantivyStore::open(&data, TantivyConfig::default()).unwrap());
    replay::ingest_logs(store.as_ref(), &logs, "district-7").unwrap();
    // The rule edited below is switched off since: a back-test replays it as
    // written all the same.
    std::fs::write(
        rules.join("tuning.toml"),
        format!(
            "disabled = [\"{SQLI}\"]\n\n[disabled_reasons]\n\"{SQLI}\" = \"false positives on the library search\"\n"
        ),
    )
    .unwrap();
    let siem = Arc::new(AppState::open(store, None, &data, 2).unwrap());
    let editor = citysoc::rule_editor::FolderEditor::new(rules.clone(), cases, data.join("rule-versions"));
    let cfg = console::ConsoleConfig {
        tuning_file: Some(rules.join("tuning.toml")),
        rules_dir: Some(rules.clone()),
        editor: console::editor::Editor(Some(Arc::new(editor))),
        ..Default::default()
    };
    let (con, first) = console::Console::open(Arc::clone(&siem), &data, cfg).unwrap();
    let app = siem::api::router(Arc::clone(&siem))
        .merge(console::router(Arc::new(con)))
        .into_make_service_with_connect_info::<SocketAddr>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _driver = Driver(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let profile = tempfile::tempdir().unwrap();
    let caps = json!({"browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM,
        "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.path().display()), "--lang=en-US"]}});
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps.as_object().unwrap().clone())
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session with headless Chromium");

    // Sign in as the first admin and set a password.
    let first = first.unwrap();
    c.goto(&format!("{url}/login")).await.unwrap();
    c.find(Locator::Id("user")).await.unwrap().send_keys("admin").await.unwrap();
    c.find(Locator::Id("password")).await.unwrap().send_keys(&first).await.unwrap();
    click(&c, "#login").await;
    c.wait().at_most(Duration::from_secs(30)).for_element(Locator::Id("must-change")).await.unwrap();
    let pass = "a long admin passphrase";
    for (id, v) in [("current", first.as_str()), ("new", pass), ("repeat", pass)] {
        c.find(Locator::Id(id)).await.unwrap().send_keys(v).await.unwrap();
    }
    click(&c, "#change").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.find(Locator::Id("must-change")).await.is_ok() {
        assert!(Instant::now() < deadline, "the password change never completed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every rule of the folder is listed, fired or not, with hits and the
    // last time from the store; a filter narrows the list.
    c.set_window_size(1366, 768).await.unwrap();
    c.goto(&format!("{url}/rules")).await.unwrap();
    let count = until(&c, "#rules-count", |t| t.contains('/')).await;
    let w = c
        .execute("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]", vec![])
        .await
        .unwrap();
    assert!(w[0].as_f64() <= w[1].as_f64(), "the rules page is {w} wide on a laptop screen");
    let catalog = citysoc::rule_editor::FolderEditor::new(rules.clone(), PathBuf::new(), PathBuf::new());
    let all = console::editor::RuleEditor::rules(&catalog);
    assert!(all.len() >= 30, "{all:?}");
    let shown: usize = count.split('/').next().unwrap().trim().parse().unwrap();
    assert!(shown >= all.len(), "{count} for {} rules", all.len());
    for source in ["sigma", "yara", "model"] {
        assert!(texts(&c, "#rules tr td:first-child").await.iter().any(|s| s == source), "no {source} rule listed");
    }
    let sqli = until(&c, &format!("tr[data-rule='{SQLI}']"), |t| t.contains("SQL injection")).await;
    assert!(sqli.contains(SQLI_FILE), "{sqli}");
    let state = until(&c, &format!("tr[data-rule='{SQLI}'] .rule-state"), |_| true).await;
    assert!(state.contains("switched off") && state.contains("false positives on the library search"), "{state}");
    let hits = until(&c, &format!("tr[data-rule='{SQLI}'] td:nth-child(4)"), |_| true).await;
    let last = until(&c, &format!("tr[data-rule='{SQLI}'] td:nth-child(5)"), |_| true).await;
    assert!(hits.parse::<u64>().unwrap() > 0 && last.len() > 10 && last.contains(':'), "{hits} {last}");
    c.goto(&format!("{url}/rules?q=eicar")).await.unwrap();
    let rows = texts(&c, "#rules tr").await;
    assert!(!rows.is_empty() && rows.iter().all(|r| r.to_lowercase().contains("eicar")), "{rows:?}");
    c.goto(&format!("{url}/rules?state=fired")).await.unwrap();
    let fired = texts(&c, "#rules tr").await;
    assert!(fired.iter().any(|r| r.contains(SQLI)) && fired.len() < all.len(), "{fired:?}");

    // Switching a rule off takes a reason: refused without, shown with.
    c.goto(&format!("{url}/rules?q=model:scan")).await.unwrap();
    let status = c
        .execute(
            "const f = new FormData(document.querySelector(\"tr[data-rule='model:scan'] form\"));
             f.set('reason', '');
             return fetch('/rules/tune', {method: 'POST', body: new URLSearchParams(f)}).then(r => r.status)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(400));
    c.find(Locator::Css("tr[data-rule='model:scan'] .off-reason"))
        .await
        .unwrap()
        .send_keys("the city's vulnerability scanner sweeps nightly")
        .await
        .unwrap();
    click(&c, "tr[data-rule='model:scan'] .rule-disable").await;
    let row = until(&c, "tr[data-rule='model:scan'] .rule-state", |t| t.contains("switched off")).await;
    assert!(row.contains("vulnerability scanner sweeps nightly"), "{row}");
    let tune = audit(&data, "rule.tune");
    assert_eq!(tune.len(), 1);
    assert_eq!(tune[0]["detail"]["reason"], "the city's vulnerability scanner sweeps nightly");
    // The switch-off kept the file it changed: its history shows the diff.
    click(&c, "#tuning-history").await;
    let diff = until(&c, "#history-diff", |t| t.contains("model:scan")).await;
    assert!(diff.lines().any(|l| l.starts_with('+') && l.contains("vulnerability scanner sweeps nightly")), "{diff}");

    // A back-test of a raised severity and a wider pattern: the change and
    // the new alerts, with titles; failing cases highlighted; the rule
    // switched off above fails no case.
    let original = std::fs::read_to_string(rules.join(SQLI_FILE)).unwrap();
    let edited = original
        .replace("level: high", "level: critical")
        .replace("            - 'sleep(5)'\n", "            - 'sleep(5)'\n            - '/'\n");
    assert_ne!(edited, original);
    c.goto(&format!("{url}/rules/edit?path={}", SQLI_FILE.replace('/', "%2F"))).await.unwrap();
    set_text(&c, &edited).await;
    click(&c, "#rule-test").await;
    until(&c, "#rule-test-failing", |t| t.contains("Cases that fail")).await;
    let judged = texts(&c, "#rule-test-rules li").await;
    assert_eq!(judged, [format!("SQL injection attempt in a request URI {SQLI}")]);
    let web = until(&c, "tbody.failing[data-case='web-attacks']", |_| true).await;
    let bg = c
        .execute(
            "return getComputedStyle(document.querySelector(\"tbody.failing[data-case='web-attacks'] td\")).backgroundColor",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(bg, json!("rgb(253, 236, 234)"), "a failing case stands out");
    assert!(
        web.contains("changed") && web.contains("high → critical") && web.contains("SQL injection attempt"),
        "{web}"
    );
    assert!(web.contains("203.0.113.50"), "the alerts' addresses: {web}");
    let new = texts(&c, "tr.alert-new").await;
    assert!(!new.is_empty() && new.iter().all(|r| r.contains("SQL injection attempt in a request URI")), "{new:?}");
    let failing_cases = texts(&c, "tbody.failing .case-name").await;
    for scan_case in ["port-scan", "anomaly-scan"] {
        assert!(!failing_cases.iter().any(|c| c == scan_case), "{failing_cases:?}");
    }

    // Saving it asks first, listing the failures; the audit says so.
    click(&c, "#rule-save").await;
    let listed = until(&c, "#rule-confirm-cases", |t| t.contains("web-attacks")).await;
    assert_eq!(std::fs::read_to_string(rules.join(SQLI_FILE)).unwrap(), original, "saved before the confirmation");
    assert!(audit(&data, "rule.save").is_empty());
    click(&c, "#rule-save-anyway").await;
    until(&c, "#rule-saved", |_| true).await;
    assert_eq!(std::fs::read_to_string(rules.join(SQLI_FILE)).unwrap(), edited);
    let save = audit(&data, "rule.save");
    assert_eq!(save.len(), 1);
    let failing: Vec<&str> =
        save[0]["detail"]["failing"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(failing.contains(&"web-attacks"), "{save:?}");
    assert_eq!(save[0]["detail"]["failed_cases"], json!(failing.len()));
    assert_eq!(failing.len(), listed.lines().count(), "{listed}");

    // The history shows the change as a diff and puts the old text back.
    click(&c, "#rule-history").await;
    let diff = until(&c, "#history-diff", |t| t.contains("+ level: critical")).await;
    assert!(diff.contains("- level: high") && diff.contains("+             - '/'"), "{diff}");
    click(&c, "#history-versions tr:first-child .history-restore").await;
    until(&c, "#history-versions", |t| t.lines().count() >= 3).await;
    assert_eq!(std::fs::read_to_string(rules.join(SQLI_FILE)).unwrap(), original);
    let restore = audit(&data, "rule.restore");
    assert_eq!(restore.len(), 1);
    assert_eq!(restore[0]["detail"]["path"], SQLI_FILE);

    // A narrower rule loses alerts: shown as lost.
    c.goto(&format!("{url}/rules/edit?path={}", SQLI_FILE.replace('/', "%2F"))).await.unwrap();
    let narrowed: Vec<&str> = original
        .lines()
        .filter(|l| !l.starts_with("            - "))
        .flat_map(
            |l| if l.ends_with("uri|contains:") { vec![l, "            - 'no-such-request-text'"] } else { vec![l] },
        )
        .collect();
    let narrowed = narrowed.join("\n");
    set_text(&c, &format!("{narrowed}\n")).await;
    click(&c, "#rule-test").await;
    let lost = until(&c, "tbody.failing[data-case='web-attacks'] tr.alert-lost", |_| true).await;
    assert!(lost.contains("SQL injection attempt in a request URI") && lost.contains("lost"), "{lost}");
    c.close().await.unwrap();
}
