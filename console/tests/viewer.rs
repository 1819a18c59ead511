//! What a viewer can fetch holds none of the real addresses, MAC
//! addresses, user names or mail addresses behind the data: every console
//! page and every route a viewer may call, over records, alerts, triage
//! notes and incidents that carry known real values in every kind of field.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use serde_json::json;
use siem::api::{AppState, IncidentChange, NewIncident, TriageChange};
use siem::schema::Catalog;
use siem::store::tantivy::{TantivyConfig, TantivyStore};
use siem::store::{Record, Store};
use std::net::SocketAddr;
use std::sync::Arc;
use tower::ServiceExt;

/// The real values: none may reach a viewer, in any case.
const REAL: &[&str] = &[
    "10.35.4.20",
    "10.30.0.80",
    "192.168.7.21",
    "21.7.168.192",
    "fd00:7::21",
    "10.40.1.9",
    "3c:5a:b4:11:22:33",
    "3c-5a-b4-11-22-33",
    "nguyen.van.an",
    "tran.thi.binh",
    "le.hoang",
    "s3cretpass",
    "an-laptop-home",
];

fn record(log: &str, v: serde_json::Value) -> Record {
    Record::validate(&Catalog::new(), log, "district-7", v.as_object().unwrap().clone()).unwrap()
}

fn alert(id: &str, title: &str, summary: &str, orig: &str, matched: &[&str], ts: f64) -> Record {
    record(
        "alerts",
        json!({"ts": ts, "id": id, "severity": "high", "rule.source": "sigma", "rule.id": "r-1", "rule.title": title,
               "rule.version": "v1", "sensor": "district-7", "summary": summary, "uid": "CFLOW1",
               "id.orig_h": orig, "id.orig_p": 43000, "id.resp_h": "10.30.0.80", "id.resp_p": 80,
               "mitre_attack": ["T1190"], "matched": matched, "count": 1, "first_seen": ts, "last_seen": ts,
               "evidence": ["conn:CFLOW1"]}),
    )
}

/// A model's alert: its summary also as a template's arguments, which hold
/// the same addresses, MAC address and names as its text.
fn model_alert(ts: f64) -> Record {
    let s = schema::Summary::en(
        "model.iot.profile",
        &[
            ("dev", Some("10.35.4.20".into())),
            ("kind", Some("peer".into())),
            ("value", Some("3c:5a:b4:11:22:33 as nguyen.van.an".into())),
            ("learned", Some("3.0 h".into())),
            ("known", Some("2".into())),
            ("known_list", Some("10.30.0.80, fd00:7::21".into())),
        ],
    );
    record(
        "alerts",
        json!({"ts": ts, "id": "A00000000000000000004", "severity": "medium", "rule.source": "model",
               "rule.id": "model:iot", "rule.title": "IoT device left its profile", "rule.version": "v1",
               "sensor": "district-7", "summary": s.text, "summary_key": s.key,
               "summary_args": serde_json::to_value(&s.args).unwrap(), "uid": "CFLOW1", "id.orig_h": "10.35.4.20",
               "count": 1, "first_seen": ts, "last_seen": ts, "evidence": ["conn:CFLOW1"]}),
    )
}

struct Fixture {
    app: axum::Router,
    cookie: String,
    alerts: Vec<&'static str>,
    incident: String,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(TantivyStore::open(dir.path(), TantivyConfig::default()).unwrap());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let flow = json!({"uid": "CFLOW1", "id.orig_h": "10.35.4.20", "id.orig_p": 43000, "id.resp_h": "10.30.0.80",
                      "id.resp_p": 80});
    let with = |extra: serde_json::Value| {
        let mut m = flow.as_object().unwrap().clone();
        m.extend(extra.as_object().unwrap().clone());
        serde_json::Value::Object(m)
    };
    store
        .ingest(&[
            alert(
                "A00000000000000000001",
                "Web scan",
                "10.35.4.20:43000 -> 10.30.0.80:80",
                "10.35.4.20",
                &["uri=/admin?user=tran.thi.binh&from=10.40.1.9"],
                now - 60.0,
            ),
            alert(
                "A00000000000000000002",
                "Cleartext FTP login",
                "FTP login as nguyen.van.an (password S3cretPass!) from 10.35.4.20",
                "10.35.4.20",
                &["user=nguyen.van.an", "password=S3cretPass!"],
                now - 50.0,
            ),
            alert(
                "A00000000000000000003",
                "Lookup of an internal name",
                "[fd00:7::21]:5353 asked for 21.7.168.192.in-addr.arpa, answered 192.168.7.21; device 3C:5A:B4:11:22:33",
                "fd00:7::21",
                &["answers=192.168.7.21", "mail from le.hoang@city.example.vn", "mac 3c-5a-b4-11-22-33"],
                now - 40.0,
            ),
            model_alert(now - 30.0),
            record("conn", with(json!({"ts": now - 61.0, "proto": "tcp", "service": "http",
                                       "orig_l2_addr": "3c:5a:b4:11:22:33"}))),
            record("http", with(json!({"ts": now - 60.5, "host": "portal.city.example", "method": "GET",
                                       "uri": "/admin?user=tran.thi.binh&from=10.40.1.9", "username": "tran.thi.binh"}))),
            record("ftp", with(json!({"ts": now - 50.5, "user": "nguyen.van.an", "password": "S3cretPass!"}))),
            record("dns", with(json!({"ts": now - 40.5, "query": "21.7.168.192.in-addr.arpa",
                                      "answers": ["192.168.7.21", "an-laptop-home.city.lan"]}))),
            record("dhcp", json!({"ts": now - 30.0, "mac": "3c:5a:b4:11:22:33", "host_name": "an-laptop-home"})),
            record("smtp", with(json!({"ts": now - 20.0, "mailfrom": "le.hoang@city.example.vn"}))),
        ])
        .unwrap();
    let siem = Arc::new(AppState::open(store, None, dir.path(), 2).unwrap());
    // Analysts write real values into notes and titles too.
    let change = TriageChange {
        status: Some("acknowledged".into()),
        reason: None,
        assign: None,
        comment: Some("seen from 10.35.4.20, user nguyen.van.an".into()),
    };
    siem.triage_alert("lan", "127.0.0.1", "A00000000000000000001", change).unwrap();
    let inc = siem
        .create_incident(
            "lan",
            "127.0.0.1",
            NewIncident {
                title: "Portal attack from 10.35.4.20".into(),
                alerts: vec!["A00000000000000000001".into(), "A00000000000000000002".into()],
            },
        )
        .unwrap();
    let note = IncidentChange {
        note: Some("tran.thi.binh's account used from 10.40.1.9".into()),
        evidence: vec!["pcap of 10.30.0.80".into()],
        ..Default::default()
    };
    siem.change_incident("lan", "127.0.0.1", &inc.id, note).unwrap();
    let (c, _) = console::Console::open(siem, dir.path(), console::ConsoleConfig::default()).unwrap();
    c.users.add("mayor-office", console::users::Role::Viewer, "the viewer's passphrase").unwrap();
    let cookie = c.sessions.start("mayor-office", console::users::Role::Viewer, Default::default());
    Fixture {
        app: console::router(Arc::new(c)),
        cookie,
        alerts: vec![
            "A00000000000000000001",
            "A00000000000000000002",
            "A00000000000000000003",
            "A00000000000000000004",
        ],
        incident: inc.id,
        _dir: dir,
    }
}

async fn get(f: &Fixture, path: &str, accept: &str) -> (StatusCode, String) {
    get_in(f, path, accept, "en").await
}

async fn get_in(f: &Fixture, path: &str, accept: &str, lang: &str) -> (StatusCode, String) {
    let mut req = Request::get(path)
        .header(header::COOKIE, format!("citysoc_session={}; lang={lang}", f.cookie))
        .header(header::ACCEPT, accept)
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let resp = f.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 64 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The GET routes the console declares, from its source: a new page joins
/// this test or the test fails.
fn declared_get_routes() -> Vec<String> {
    let src = include_str!("../src/pages/mod.rs");
    src.split(".route(\"")
        .skip(1)
        .filter_map(|r| {
            let (path, rest) = r.split_once('"')?;
            rest.trim_start_matches(", ").starts_with("get(").then(|| path.to_string())
        })
        .collect()
}

#[tokio::test]
async fn nothing_a_viewer_fetches_holds_a_real_value() {
    let f = fixture();
    let a1 = f.alerts[0];
    let inc = f.incident.clone();
    // Every GET route, with its ids filled in and its filters used.
    let mut paths: Vec<(String, String)> = vec![
        ("/".into(), "/?range=all".into()),
        ("/".into(), "/".into()),
        ("/login".into(), "/login".into()),
        ("/login/code".into(), "/login/code".into()),
        ("/totp".into(), "/totp".into()),
        ("/password".into(), "/password".into()),
        ("/lang".into(), "/lang?to=vi".into()),
        ("/tz".into(), "/tz?to=UTC".into()),
        ("/rules".into(), "/rules".into()),
        ("/alerts".into(), "/alerts".into()),
        ("/alerts".into(), "/alerts?range=all&status=acknowledged".into()),
        ("/alerts/rows".into(), "/alerts/rows?range=all".into()),
        ("/alerts/{id}/pcap".into(), format!("/alerts/{a1}/pcap")),
        ("/alerts/{id}/evidence".into(), format!("/alerts/{a1}/evidence")),
        ("/incidents/{id}/evidence".into(), format!("/incidents/{inc}/evidence")),
        ("/rules/edit".into(), "/rules/edit".into()),
        ("/rules/history".into(), "/rules/history?path=tuning.toml".into()),
        ("/incidents".into(), "/incidents".into()),
        ("/incidents/{id}".into(), format!("/incidents/{inc}")),
        ("/search".into(), "/search?q=*&range=all".into()),
        ("/search/export".into(), "/search/export?q=*&format=json".into()),
        ("/sensors".into(), "/sensors".into()),
        ("/devices".into(), "/devices".into()),
        ("/users".into(), "/users".into()),
        ("/audit".into(), "/audit".into()),
        ("/hunts".into(), "/hunts".into()),
        ("/hunts/{id}".into(), "/hunts/H000000000000".into()),
        ("/assets/{*file}".into(), "/assets/app.js".into()),
        ("/aggregate".into(), "/aggregate?q=*&range=all&agg=terms&field=id.orig_h&by=bytes".into()),
        ("/aggregate".into(), "/aggregate?q=*&range=all&agg=histogram".into()),
        ("/timeline".into(), "/timeline?addr=10.35.4.20&from=7d".into()),
        ("/timeline/pcap".into(), "/timeline/pcap?addr=10.35.4.20&from=2h&to=1h".into()),
        ("/investigations".into(), "/investigations".into()),
        ("/investigations/{id}".into(), "/investigations/V1".into()),
        ("/alerts".into(), "/alerts?rule=ftp&from=2020-01-01&to=now".into()),
    ];
    for id in &f.alerts {
        paths.push(("/alerts/{id}".into(), format!("/alerts/{id}")));
    }
    let covered: Vec<&str> = paths.iter().map(|(r, _)| r.as_str()).collect();
    for r in declared_get_routes() {
        assert!(covered.contains(&r.as_str()), "route {r} is not fetched by this test");
    }
    let mut seen = String::new();
    for (_, path) in &paths {
        // Vietnamese pages too: they render summaries from their arguments.
        for (accept, lang) in [("text/html", "en"), ("*/*", "en"), ("text/html", "vi")] {
            let (status, body) = get_in(&f, path, accept, lang).await;
            assert!(status != StatusCode::INTERNAL_SERVER_ERROR, "{path}: {body}");
            let lower = body.to_lowercase();
            for real in REAL {
                assert!(!lower.contains(real), "{path} ({accept}) shows {real}: {body}");
            }
            seen.push_str(&body);
        }
    }
    // Not vacuous: the viewer saw the alerts, their summaries and the
    // incident, with pseudonyms where the real values were.
    for want in ["Web scan", "Cleartext FTP login", "Portal attack from internal-", "internal-", "user-"] {
        assert!(seen.contains(want), "{want} not shown to the viewer");
    }
    assert!(seen.contains("mac-") && seen.contains("@city.example.vn"));
    // The model's summary, rendered from its arguments for a Vietnamese
    // reader, with the same pseudonyms.
    assert!(seen.contains("Thiết bị internal-"), "the Vietnamese summary is shown");
    let summary = regex_free_find(&seen, ":43000 -");
    assert!(summary.contains("internal-"), "the summary's addresses are pseudonyms: {summary}");
}

/// The 40 characters after `needle`'s first occurrence.
fn regex_free_find(hay: &str, needle: &str) -> String {
    let at = hay.find(needle).unwrap_or_else(|| panic!("{needle} not shown"));
    hay[at..].chars().take(40).collect()
}

#[tokio::test]
async fn packets_and_evidence_are_refused_to_viewers_with_the_reason() {
    let f = fixture();
    let inc = f.incident.clone();
    for path in [
        format!("/alerts/{}/pcap", f.alerts[0]),
        format!("/alerts/{}/evidence", f.alerts[0]),
        format!("/incidents/{inc}/evidence"),
    ] {
        let (status, body) = get(&f, &path, "*/*").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(body.contains("pseudonyms cannot cover"), "{path}: {body}");
    }
    // Filtering by a real address would reveal which pseudonym it hides.
    for path in ["/alerts?src=10.35.4.20", "/alerts/rows?dst=10.30.0.0/16"] {
        let (status, body) = get(&f, path, "*/*").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(body.contains("by address"), "{path}: {body}");
    }
}
