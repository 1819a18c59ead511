//! Metrics and health of running processes: `citysoc serve`'s `/metrics`
//! after an ingest and a failed sign-in, and a sensor's `/metrics` at the
//! end of a replay, against its own `stats.log`. Both expositions pass
//! `promtool check metrics` (Debian's `prometheus` package).

mod common;

use common::{citysoc, free_port, Server};
use std::io::Write;
use std::process::{Command, Stdio};

/// `promtool check metrics` on an exposition: it must find nothing wrong.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package, see scripts/install-deps)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One sample's value (0 when the series is absent).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// The sum of a counter family's samples whose line starts so.
fn sum_of(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

fn status_of(r: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    match r {
        Ok(resp) => (resp.status(), resp.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap_or_default()),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn serve_metrics_pass_promtool_and_follow_an_ingest_and_a_failed_sign_in() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Server(
        citysoc()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(tmp.path().join("data"))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = common::stderr_lines(&mut server.0);
    common::wait_for(&lines, "serving the console");
    let scrape = || {
        let resp = ureq::get(&format!("{base}/metrics")).call().unwrap();
        assert_eq!(resp.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
        resp.into_string().unwrap()
    };
    // Prometheus asks for OpenMetrics, and gets it.
    let om = ureq::get(&format!("{base}/metrics"))
        .set("accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
        .call()
        .unwrap();
    assert!(om.content_type().starts_with("application/openmetrics-text"));
    assert!(om.into_string().unwrap().ends_with("# EOF\n"));
    let before = scrape();
    promtool_check(&before);
    assert_eq!(status_of(ureq::get(&format!("{base}/healthz")).call()).0, 200);
    assert_eq!(status_of(ureq::get(&format!("{base}/readyz")).call()), (200, "ready\n".to_string()));

    let body = "{\"_log\":\"conn\",\"ts\":1700000000.5,\"uid\":\"C1\"}\n{\"_log\":\"dns\",\"ts\":1700000001,\"uid\":\"C1\"}\nnot json\n";
    let (s, r) = status_of(ureq::post(&format!("{base}/api/v1/ingest")).send_string(body));
    assert_eq!(s, 200, "{r}");

    // A failed sign-in, as a browser makes it: the form's token and cookie
    // first.
    let page = ureq::get(&format!("{base}/login")).call().unwrap();
    let cookie = page.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let html = page.into_string().unwrap();
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let (s, _) = status_of(ureq::post(&format!("{base}/login")).set("cookie", &cookie).send_form(&[
        ("csrf", &csrf),
        ("user", "admin"),
        ("password", "not the password"),
    ]));
    assert_eq!(s, 401);

    let after = scrape();
    promtool_check(&after);
    let m = |s: &str| sample(&after, s) - sample(&before, s);
    assert_eq!(m("citysoc_siem_ingest_records_total{outcome=\"accepted\"}"), 2.0, "{after}");
    assert_eq!(m("citysoc_siem_ingest_records_total{outcome=\"rejected\"}"), 1.0);
    assert_eq!(m("citysoc_siem_ingest_batches_total{outcome=\"accepted\"}"), 1.0);
    assert_eq!(m("citysoc_siem_console_logins_total{outcome=\"failure\"}"), 1.0);
    assert_eq!(m("citysoc_siem_console_logins_total{outcome=\"success\"}"), 0.0);
    assert_eq!(sample(&after, "citysoc_siem_store_records{class=\"flows\"}"), 1.0);
    assert_eq!(sample(&after, "citysoc_siem_store_records{class=\"records\"}"), 1.0);
    // Retention ran at start.
    assert_eq!(sample(&after, "citysoc_siem_retention_runs_total{outcome=\"ok\"}"), 1.0);

    // The hole this closes: a page elsewhere posting to the open API.
    let (s, r) =
        status_of(ureq::post(&format!("{base}/api/v1/retention/run")).set("origin", "http://evil.example").call());
    assert_eq!(s, 403, "{r}");
    let (s, r) = status_of(ureq::post(&format!("{base}/api/v1/retention/run")).call());
    assert_eq!(s, 200, "{r}");
}

#[test]
fn a_sensor_s_metrics_agree_with_its_stats_log() {
    let tmp = tempfile::tempdir().unwrap();
    let root = common::root();
    let logs = tmp.path().join("logs");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut sensor = Server(
        citysoc()
            .args(["sensor", "--seed", "1", "--read"])
            .arg(root.join("replay-pcaps/intel-hits/capture.pcap"))
            .arg("--rules")
            .arg(root.join("rules"))
            .arg("--log-dir")
            .arg(&logs)
            .args(["--metrics", &addr, "--metrics-linger-secs", "120"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = common::stderr_lines(&mut sensor.0);
    // Past this line the run is over and its logs are written: nothing
    // moves between the scrape and the reading of stats.log.
    common::wait_for(&lines, "run finished; its final counters stay");
    let text = ureq::get(&format!("http://{addr}/metrics")).call().unwrap().into_string().unwrap();
    promtool_check(&text);
    let (s, why) = status_of(ureq::get(&format!("http://{addr}/readyz")).call());
    assert_eq!((s, why.as_str()), (503, "not ready: the capture ended\n"));
    assert_eq!(status_of(ureq::get(&format!("http://{addr}/healthz")).call()).0, 200);

    let stats_log = std::fs::read_to_string(logs.join("stats.log")).unwrap();
    let last: serde_json::Value = serde_json::from_str(stats_log.lines().last().unwrap()).unwrap();
    let st = |k: &str| last[k].as_f64().unwrap();
    let m = |s: &str| sample(&text, s);
    assert!(st("pkts_read") > 0.0);
    assert_eq!(m("citysoc_sensor_packets_total"), st("pkts_read"), "{text}");
    assert_eq!(m("citysoc_sensor_wire_bytes_total"), st("bytes_read"));
    assert_eq!(m("citysoc_sensor_kernel_dropped_packets_total"), st("pkts_dropped_kernel"));
    assert_eq!(m("citysoc_sensor_packets_by_kind_total{kind=\"flow\"}"), st("pkts_flow"));
    assert_eq!(m("citysoc_sensor_packets_by_kind_total{kind=\"malformed\"}"), st("pkts_malformed"));
    assert_eq!(m("citysoc_sensor_flows_created_total"), st("flows_created"));
    assert_eq!(m("citysoc_sensor_flows_ended_total{reason=\"expired\"}"), st("flows_expired"));
    assert_eq!(m("citysoc_sensor_flows_ended_total{reason=\"evicted\"}"), st("flows_evicted"));
    assert_eq!(m("citysoc_sensor_flows_ended_total{reason=\"flushed\"}"), st("flows_flushed"));
    assert_eq!(m("citysoc_sensor_flows_open"), st("flows_active"));
    assert_eq!(m("citysoc_sensor_weirds_total"), st("weirds"));
    assert_eq!(m("citysoc_sensor_capturing"), 0.0);

    // What stats.log does not split, against the logs themselves.
    let count = |log: &str| std::fs::read_to_string(logs.join(format!("{log}.log"))).map_or(0, |t| t.lines().count());
    for log in ["conn", "dns", "weird", "alerts"] {
        assert_eq!(m(&format!("citysoc_sensor_records_total{{log=\"{log}\"}}")), count(log) as f64, "{log}: {text}");
    }
    assert!(count("alerts") > 0, "the case raises alerts");
    assert_eq!(sum_of(&text, "citysoc_sensor_alerts_total{"), count("alerts") as f64);
    assert!(text.contains("citysoc_sensor_rules_info{version=\""), "{text}");
    drop(sensor);
}

/// Every metric family both processes expose, by its name in the text
/// format (counters with their `_total`).
/// A family shows once it has a sample: each is given one here.
fn families() -> Vec<String> {
    let siem = siem::metrics::SiemMetrics::new();
    siem.query("search", 0.01);
    siem.cross_site("origin");
    siem.sensor_stored("d7");
    siem.set_store(&[]);
    let dropped = siem::retention::Dropped {
        class: siem::store::Class::Flows,
        day: "2026-01-01".into(),
        records: 1,
        bytes: 1,
        reason: siem::retention::Reason::Age,
    };
    siem.retention(Some(&[dropped]));
    let sensor = citysoc::sensor_metrics::SensorMetrics::new();
    sensor.observe(&schema::sample_events());
    let live = sensor::pipeline::LiveState { stats: Some(Default::default()), ..Default::default() };
    let ship = citysoc::ship::ShipState::default();
    let texts = [
        siem::metrics::to_text_format(&siem.render()),
        siem::metrics::to_text_format(&sensor.render(&live, Some("v1"), Some(&ship))),
    ];
    texts
        .iter()
        .flat_map(|t| t.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next().map(String::from)))
        .collect()
}

/// The chapter names every metric, and the dashboard asks only for metrics
/// that exist.
#[test]
fn the_chapter_and_the_dashboard_name_the_metrics_exposed() {
    let root = common::root();
    let families = families();
    assert!(families.len() > 40, "{families:?}");
    let chapter = std::fs::read_to_string(root.join("docs/src/operations/metrics.md")).unwrap();
    for f in &families {
        assert!(chapter.contains(&format!("`{f}`")), "docs/src/operations/metrics.md does not describe {f}");
    }
    let text = std::fs::read_to_string(root.join("docs/grafana/citysoc.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() > 10));
    let mut used = 0;
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("citysoc_")) {
        let family = ["_bucket", "_count", "_sum"].iter().find_map(|s| word.strip_suffix(s)).unwrap_or(word);
        assert!(families.iter().any(|f| f == family), "the dashboard asks for {word}, which nothing exposes");
        used += 1;
    }
    assert!(used > 30);
}

/// A shipping sensor's spool and shipping figures, against the SIEM's view
/// of the same batches; the SIEM's `/metrics` takes a reader's token.
#[test]
fn shipping_figures_agree_between_the_sensor_and_the_siem() {
    let tmp = tempfile::tempdir().unwrap();
    let root = common::root();
    let tokens = tmp.path().join("tokens.toml");
    let text = format!(
        "[sensors]\nd7 = \"{}\"\n[readers]\nprometheus = \"{}\"\n",
        common::sha256_hex("sensor-token"),
        common::sha256_hex("scrape-token")
    );
    std::fs::write(&tokens, text).unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, "sensor-token\n").unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut siem = Server(
        citysoc()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(tmp.path().join("data"))
            .arg("--tokens")
            .arg(&tokens)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    common::wait_for(&common::stderr_lines(&mut siem.0), "serving the console");
    let scrape_siem = |token: Option<&str>| {
        let mut r = ureq::get(&format!("{base}/metrics"));
        if let Some(t) = token {
            r = r.set("authorization", &format!("Bearer {t}"));
        }
        status_of(r.call())
    };
    assert_eq!(scrape_siem(None).0, 401);
    assert_eq!(scrape_siem(Some("sensor-token")).0, 403);

    let maddr = format!("127.0.0.1:{}", free_port());
    let mut sensor = Server(
        citysoc()
            .args(["sensor", "--seed", "1", "--rules"])
            .arg(root.join("rules"))
            .arg("--read")
            .arg(root.join("replay-pcaps/web-attacks/capture.pcap"))
            .arg("--log-dir")
            .arg(tmp.path().join("logs"))
            .args(["--ship", &base, "--token-file"])
            .arg(&token_file)
            .args(["--metrics", &maddr, "--metrics-linger-secs", "120"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    common::wait_for(&common::stderr_lines(&mut sensor.0), "run finished; its final counters stay");
    let s = ureq::get(&format!("http://{maddr}/metrics")).call().unwrap().into_string().unwrap();
    promtool_check(&s);
    let (code, siem_text) = scrape_siem(Some("scrape-token"));
    assert_eq!(code, 200);
    let shipped = sample(&s, "citysoc_sensor_shipped_records_total");
    assert!(shipped > 0.0, "{s}");
    // The run waited for its spool to drain.
    assert_eq!(sample(&s, "citysoc_sensor_spooled_records_total"), shipped);
    assert_eq!(sample(&s, "citysoc_sensor_spool_records"), 0.0);
    assert_eq!(sample(&s, "citysoc_sensor_spool_batches"), 0.0);
    assert_eq!(sample(&s, "citysoc_sensor_ship_lag_seconds"), 0.0);
    assert_eq!(sample(&s, "citysoc_sensor_ship_refused"), 0.0);
    // Each batch one ingest request; the SIEM also stores the sensor's
    // stats reports, which the sensor does not count as records.
    assert_eq!(
        sample(&siem_text, "citysoc_siem_ingest_batches_total{outcome=\"accepted\"}"),
        sample(&s, "citysoc_sensor_shipped_batches_total"),
        "{siem_text}"
    );
    assert!(sample(&siem_text, "citysoc_siem_ingest_records_total{outcome=\"accepted\"}") >= shipped);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let last = sample(&siem_text, "citysoc_siem_sensor_last_ingest_timestamp_seconds{sensor=\"d7\"}");
    assert!(now - last < 600.0, "the sensor's last batch is recent: {siem_text}");
    drop(sensor);
}
