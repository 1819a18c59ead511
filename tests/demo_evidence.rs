//! The demo as a responder and an analyst meet it: `citysoc demo` replays
//! every bundled capture into its store and ring and serves. Every alert's
//! bundle and packets are whole (each flow its evidence names, with its
//! records and its packets from the ring), and a hunt runs over the stored
//! range while the server serves: through its API (the CLI's `--server`),
//! its findings kept by the SIEM, one promoted to the alert queue.

mod common;

use common::{citysoc, free_port, root, Server};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn get(base: &str, path: &str) -> (u16, Vec<u8>) {
    match ureq::get(&format!("{base}{path}")).timeout(Duration::from_secs(120)).call() {
        Ok(r) => {
            let mut b = Vec::new();
            r.into_reader().read_to_end(&mut b).unwrap();
            (200, b)
        }
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default().into_bytes()),
        Err(e) => panic!("{path}: {e}"),
    }
}

fn get_json(base: &str, path: &str) -> Value {
    let (code, b) = get(base, path);
    assert_eq!(code, 200, "{path}: {}", String::from_utf8_lossy(&b));
    serde_json::from_slice(&b).unwrap()
}

fn post_json(base: &str, path: &str, body: Value) -> (u16, Value) {
    match ureq::post(&format!("{base}{path}")).send_json(body) {
        Ok(r) => (200, r.into_json().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or_default()),
        Err(e) => panic!("{path}: {e}"),
    }
}

fn enc(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// Packets in a pcap file's bytes.
fn packets(pcap: &[u8], dir: &Path) -> usize {
    let p = dir.join("x.pcap");
    std::fs::write(&p, pcap).unwrap();
    sensor::ring::read_pcap(&p).unwrap().1.len()
}

#[test]
fn demo_evidence_is_whole_and_hunts_run_while_it_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ring) = (tmp.path().join("data"), tmp.path().join("ring"));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = citysoc()
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--cases")
        .arg(root().join("replay-pcaps"))
        .arg("--rules")
        .arg(root().join("rules"))
        .arg("--log-dir")
        .arg(tmp.path().join("logs"))
        .arg("--data")
        .arg(&data)
        .arg("--ring")
        .arg(&ring)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The scenarios' verdicts on standard output, the server's on its error.
    let out = BufReader::new(child.stdout.take().unwrap());
    let failed =
        std::thread::spawn(move || out.lines().map_while(Result::ok).filter(|l| l.starts_with("FAIL")).count());
    let err = BufReader::new(child.stderr.take().unwrap());
    let _server = Server(child);
    let mut lines = err.lines();
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut password = String::new();
    loop {
        assert!(Instant::now() < deadline, "the demo never served");
        let Some(Ok(l)) = lines.next() else {
            panic!("the demo ended before serving ({} scenarios failed)", failed.join().unwrap());
        };
        if let Some((_, p)) = l.split_once("one-time password") {
            password = p.split_whitespace().next().unwrap().to_string();
        }
        if l.contains("serving the console") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));

    // Every alert: its bundle against the store and the ring.
    let alerts = get_json(&base, "/api/v1/search?q=_log:alerts&limit=1000")["hits"].as_array().unwrap().clone();
    assert!(alerts.len() >= 60, "{}", alerts.len());
    let (mut flows, mut with_records, mut with_packets, mut model_flows) = (0, 0, 0, 0);
    for a in &alerts {
        let id = a["id"].as_str().unwrap();
        let (code, tar) = get(&base, &format!("/api/v1/evidence?alert={id}"));
        assert_eq!(code, 200, "{id}");
        siem::evidence::verify(&tar, None).unwrap();
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for e in tar::Archive::new(&tar[..]).entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().to_string();
            let mut b = Vec::new();
            e.read_to_end(&mut b).unwrap();
            files.insert(name, b);
        }
        let records: Vec<Value> = String::from_utf8(files["records.jsonl"].clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let named = siem::api::alert_flow_uids(a);
        assert!(
            !named.is_empty() || a["evidence"].as_array().is_none_or(|e| e.is_empty()),
            "{id} names evidence but no flow: {}",
            a["evidence"]
        );
        let mut want_packets = 0;
        for u in &named {
            flows += 1;
            if a["rule.source"] == "model" {
                model_flows += 1;
            }
            let stored = get_json(&base, &format!("/api/v1/search?q=uid:{}&limit=1000", enc(&format!("\"{u}\""))));
            let n_stored = stored["hits"].as_array().unwrap().len();
            let n_bundled = records.iter().filter(|r| r["uid"] == u.as_str()).count();
            assert_eq!(n_bundled, n_stored, "{id} ({}): records of {u}", a["rule.id"]);
            if n_stored > 0 {
                with_records += 1;
            }
            let uid = detector::detect::parse_uid(u).unwrap();
            let kept = sensor::ring::flow_packets(&ring, uid, None, None).unwrap().1.len();
            let pcap = files.get(&format!("flows/{u}.pcap"));
            assert_eq!(pcap.map_or(0, |p| packets(p, tmp.path())), kept, "{id} ({}): packets of {u}", a["rule.id"]);
            if kept > 0 {
                with_packets += 1;
                // The evidence item as the alert names it fetches the flow.
                let item = a["evidence"]
                    .as_array()
                    .and_then(|e| e.iter().filter_map(Value::as_str).find(|e| e.ends_with(u.as_str())))
                    .unwrap_or(u);
                let (code, _) = get(&base, &format!("/api/v1/pcap?uid={}", enc(item)));
                assert_eq!(code, 200, "{id}: /api/v1/pcap?uid={item}");
            }
            want_packets += kept;
        }
        // One fetch by the alert gives every flow it names.
        let (code, pcap) = get(&base, &format!("/api/v1/pcap?alert={id}"));
        if want_packets > 0 {
            assert_eq!(code, 200, "{id}");
            assert_eq!(packets(&pcap, tmp.path()), want_packets, "{id}: /api/v1/pcap?alert");
        } else {
            assert_eq!(code, 404, "{id}");
        }
    }
    println!(
        "{} alerts name {flows} flows ({model_flows} of model alerts): {with_records} with records, \
         {with_packets} with packets, each whole in its bundle and in /api/v1/pcap",
        alerts.len()
    );
    assert!(model_flows > 50 && with_records > 200 && with_packets > 200, "too little was checked");

    // Hunting beside the server: the store is the server's, so a second
    // writer is refused with the way round it; through the server it runs.
    let (from, to) = ("1699990000", "1700300000");
    let direct = citysoc().args(["hunt", "--from", from, "--to", to]).arg("--data").arg(&data).output().unwrap();
    assert!(!direct.status.success());
    let said = String::from_utf8_lossy(&direct.stderr);
    assert!(said.contains("--server"), "{said}");
    let hunt_cli = |models: &[&str], out: &Path| {
        let mut cmd = citysoc();
        cmd.args(["hunt", "--server", &base, "--from", from, "--to", to]).arg("--out").arg(out);
        for m in models {
            cmd.args(["--model", m]);
        }
        let r = cmd.env("CITYSOC_TOKEN", "").output().unwrap();
        let said = String::from_utf8_lossy(&r.stderr).to_string();
        assert!(r.status.success() && !said.contains("LockBusy"), "{said}");
        std::fs::read_to_string(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let hunted = hunt_cli(&[], &tmp.path().join("all.jsonl"));
    // Over what the demo stored, the hunt finds what detection raised live:
    // every model alert, and the Sigma alerts again.
    let source = |v: &[Value], s: &str| v.iter().filter(|a| a["rule.source"] == s).count();
    assert_eq!(source(&hunted, "model"), source(&alerts, "model"));
    assert!(source(&hunted, "sigma") > 0, "no Sigma alert hunted");
    let live = hunted.len();
    let list = get_json(&base, "/api/v1/hunts");
    let choices = list["choices"].as_array().unwrap();
    assert!(choices.iter().any(|c| c["id"] == "model:flood") && choices.iter().any(|c| c["id"] == "sigma"), "{list}");
    let h = &list["hunts"][0];
    assert_eq!((h["state"].as_str(), h["found"].as_u64()), (Some("done"), Some(live as u64)), "{h}");
    let hunt = get_json(&base, &format!("/api/v1/hunts/{}", h["id"].as_str().unwrap()));
    assert!(hunt["records"].as_u64().unwrap() > 1000, "{}", hunt["records"]);
    let findings = hunt["findings"].as_array().unwrap();
    assert!(findings.iter().all(|f| f["in_queue"] == true), "{hunt}");
    let (code, e) = post_json(
        &base,
        &format!("/api/v1/hunts/{}/findings/1/promote", h["id"].as_str().unwrap()),
        json!({"reason": "x"}),
    );
    assert_eq!((code, e["code"].as_str()), (400, Some("hunt.in_queue")), "{e}");
    for f in findings {
        // A flood's summary counts the sources of that flood.
        let s = f["alert"]["summary"].as_str().unwrap_or_default();
        if let Some(rest) = s.strip_prefix("SYN flood: ") {
            let n: u64 = rest.split(' ').next().unwrap().parse().unwrap();
            let from = rest.split(" from ").nth(1).unwrap().trim_start_matches("over ");
            let sources: u64 = from.split(' ').next().unwrap().parse().unwrap();
            assert!(sources <= n, "{s}");
        }
    }

    // Records a sensor shipped without detection (two days later, another
    // sensor): the hunt finds the scan in them, and an analyst promotes it.
    let archive: Vec<String> = std::fs::read_to_string(tmp.path().join("logs/anomaly-scan/conn.log"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut r: Value = serde_json::from_str(l).unwrap();
            r["ts"] = json!(r["ts"].as_f64().unwrap() + 2.0 * 86_400.0);
            let u = r["uid"].as_str().unwrap();
            r["uid"] = json!(format!("C{}", u[1..].chars().rev().collect::<String>()));
            r.to_string()
        })
        .collect();
    ureq::post(&format!("{base}/api/v1/ingest?log=conn")).send_string(&archive.join("\n")).unwrap();
    let hunted = hunt_cli(&["model:scan"], &tmp.path().join("scan.jsonl"));
    assert!(hunted.iter().all(|a| a["rule.id"] == "model:scan"));
    let id = get_json(&base, "/api/v1/hunts")["hunts"][0]["id"].as_str().unwrap().to_string();
    let hunt = get_json(&base, &format!("/api/v1/hunts/{id}"));
    assert_eq!(hunt["chosen"], json!(["model:scan"]));
    let findings = hunt["findings"].as_array().unwrap();
    let f = findings.iter().find(|f| f["in_queue"] == false).expect("a scan in the archive");
    let reason = "the archive of district 9 shows the same scan two days later";
    let (code, r) =
        post_json(&base, &format!("/api/v1/hunts/{id}/findings/{}/promote", f["n"]), json!({"reason": reason}));
    assert_eq!(code, 200, "{r}");
    let alert = r["alert"].as_str().unwrap().to_string();
    assert_eq!(alert, f["alert"]["id"].as_str().unwrap());
    // In the queue with its evidence: the archive's flows, whole in its bundle.
    let queued = get_json(&base, &format!("/api/v1/alerts?q=id:{alert}"));
    assert_eq!(queued["total"], 1, "{queued}");
    assert_eq!(queued["hits"][0]["evidence"], f["alert"]["evidence"]);
    let (code, tar) = get(&base, &format!("/api/v1/evidence?alert={alert}"));
    assert_eq!(code, 200);
    let mut n_records = 0;
    for e in tar::Archive::new(&tar[..]).entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == "records.jsonl" {
            let mut t = String::new();
            e.read_to_string(&mut t).unwrap();
            n_records = t.lines().count();
        }
    }
    assert_eq!(n_records, siem::api::alert_flow_uids(&f["alert"]).len(), "one conn record per flow");
    let again = get_json(&base, &format!("/api/v1/hunts/{id}"));
    assert_eq!(again["findings"][f["n"].as_u64().unwrap() as usize - 1]["in_queue"], true);
    let trail = get_json(&base, "/api/v1/audit?limit=1000");
    let entries = trail["entries"].as_array().unwrap();
    let promoted: Vec<&Value> = entries.iter().filter(|e| e["action"] == "hunt.promote").collect();
    assert_eq!(promoted.len(), 1, "{trail}");
    assert_eq!(promoted[0]["detail"]["reason"].as_str(), Some(reason));
    assert_eq!(promoted[0]["detail"]["id"].as_str(), Some(alert.as_str()));
    assert_eq!(entries.iter().filter(|e| e["action"] == "hunt.start").count(), 2);

    // The same in the console, as an analyst works it: choose the range and
    // a model, start, watch it finish, promote a finding with a reason.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(hunt_in_the_console(&base, &password, tmp.path()));
}

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

async fn hunt_in_the_console(base: &str, password: &str, tmp: &Path) {
    use fantoccini::{ClientBuilder, Locator};
    for (path, pkg) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        assert!(Path::new(path).exists(), "{path} is missing: apt-get install {pkg}");
    }
    let port = free_port();
    let _driver = Server(
        std::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let profile = tmp.join("chromium-profile");
    let caps = json!({"browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM,
        "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.display()), "--lang=en-US"]}});
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps.as_object().unwrap().clone())
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session with headless Chromium");
    let wait = Duration::from_secs(60);
    let by_id = |id: &'static str| Locator::Id(id);
    c.goto(&format!("{base}/login")).await.unwrap();
    c.find(by_id("user")).await.unwrap().send_keys("admin").await.unwrap();
    c.find(by_id("password")).await.unwrap().send_keys(password).await.unwrap();
    c.find(by_id("login")).await.unwrap().click().await.unwrap();
    c.wait().at_most(wait).for_element(by_id("must-change")).await.unwrap();
    let new = "a long analyst passphrase";
    c.find(by_id("current")).await.unwrap().send_keys(password).await.unwrap();
    c.find(by_id("new")).await.unwrap().send_keys(new).await.unwrap();
    c.find(by_id("repeat")).await.unwrap().send_keys(new).await.unwrap();
    c.find(by_id("change")).await.unwrap().click().await.unwrap();
    let deadline = Instant::now() + wait;
    while c.find(by_id("must-change")).await.is_ok() {
        assert!(Instant::now() < deadline, "the password change never completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The hunts page lists the two hunts already run, and starts a third.
    c.goto(&format!("{base}/hunts")).await.unwrap();
    let listed = c.wait().at_most(wait).for_element(by_id("hunts")).await.unwrap().text().await.unwrap();
    assert_eq!(listed.matches("Done").count(), 2, "{listed}");
    for (id, v) in [("hunt-from", "1699990000"), ("hunt-to", "1700300000")] {
        let e = c.find(by_id(id)).await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(v).await.unwrap();
    }
    c.find(Locator::Css("input[name=model][value='model:scan']")).await.unwrap().click().await.unwrap();
    c.find(by_id("hunt-start")).await.unwrap().click().await.unwrap();
    // Its page follows the hunt until it is done.
    let deadline = Instant::now() + wait;
    loop {
        // The page reloads itself while the hunt runs: an element may go stale.
        if let Ok(e) = c.find(by_id("hunt-state")).await {
            if let Ok(Some(state)) = e.attr("data-state").await {
                assert_ne!(state, "failed");
                if state == "done" {
                    break;
                }
            }
        }
        assert!(Instant::now() < deadline, "the hunt never finished in the console");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let rows = c.find(by_id("findings")).await.unwrap().text().await.unwrap();
    assert!(rows.contains("Vertical scan") || rows.contains("Horizontal scan"), "{rows}");
    assert!(rows.contains("In the queue"), "{rows}");
    // Promote the first finding not in the queue, with a reason.
    let form = c.find(Locator::Css("#findings form.promote")).await.unwrap();
    let reason = "the console's hunt: same scanner, another day";
    form.find(Locator::Css("input[name=reason]")).await.unwrap().send_keys(reason).await.unwrap();
    form.find(Locator::Css("button")).await.unwrap().click().await.unwrap();
    // The alert's page: in the queue, its evidence shown, the promotion in its trail.
    let title = c.wait().at_most(wait).for_element(by_id("alert-title")).await.unwrap().text().await.unwrap();
    // A model's alert is titled by its summary: a scan or a sweep here.
    let lower = title.to_lowercase();
    assert!(lower.contains("scan") || lower.contains("sweep"), "{title}");
    assert!(c.current_url().await.unwrap().path().starts_with("/alerts/A"));
    let evidence = c.find(by_id("evidence")).await.unwrap().text().await.unwrap();
    assert!(evidence.contains("conn") && !evidence.contains("No records"), "{evidence}");
    let trail = c.find(Locator::Css("ul.audit")).await.unwrap().text().await.unwrap();
    assert!(trail.contains("Promoted a hunt finding to an alert"), "{trail}");
    c.close().await.unwrap();
}
