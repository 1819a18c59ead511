//! The HTTP API: authentication by role, ingest with per-line errors,
//! idempotent batches, compression, limits, and search errors that say
//! where the query is wrong.

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use serde_json::Value;
use siem::api::{hash_token, router, AppState, Tokens};
use siem::store::tantivy::{TantivyConfig, TantivyStore};
use std::sync::Arc;
use tower::ServiceExt;

fn app(dir: &std::path::Path, concurrency: usize) -> axum::Router {
    let store = Arc::new(TantivyStore::open(dir, TantivyConfig::default()).unwrap());
    let mut tokens = Tokens::default();
    tokens.sensors.insert("district-7".into(), hash_token("sensor-secret"));
    tokens.readers.insert("analyst".into(), hash_token("reader-secret"));
    router(Arc::new(AppState::new(store, Some(tokens), Some(dir), concurrency)))
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = to_bytes(resp.into_body(), 1 << 24).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn ingest(token: Option<&str>, batch: Option<&str>, body: Vec<u8>, zstd: bool) -> Request<Body> {
    let mut b = Request::post("/api/v1/ingest");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if let Some(id) = batch {
        b = b.header("x-batch-id", id);
    }
    if zstd {
        b = b.header("content-encoding", "zstd");
    }
    b.body(Body::from(body)).unwrap()
}

fn get(uri: &str, token: &str) -> Request<Body> {
    Request::get(uri).header("authorization", format!("Bearer {token}")).body(Body::empty()).unwrap()
}

const LINES: &str = concat!(
    "{\"_log\":\"conn\",\"ts\":1700000000.5,\"uid\":\"C1\",\"id.orig_h\":\"10.1.0.5\",\"id.resp_p\":502,\"_sensor\":\"spoofed\"}\n",
    "{\"_log\":\"conn\",\"ts\":1700000001.5,\"uid\":\"C2\",\"id.orig_h\":\"10.2.0.5\",\"id.resp_p\":80}\n",
    "not json\n",
    "{\"_log\":\"conn\",\"ts\":1700000002.5,\"uid\":\"C3\",\"bogus\":1}\n",
    "{\"_log\":\"dns\",\"ts\":1700000003.5,\"uid\":\"C4\",\"query\":\"cam.duckdns.org\"}\n",
);

#[tokio::test]
async fn roles_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), 4);
    assert_eq!(call(&app, ingest(None, None, LINES.into(), false)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, ingest(Some("wrong"), None, LINES.into(), false)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, ingest(Some("reader-secret"), None, LINES.into(), false)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&app, get("/api/v1/search?q=*", "sensor-secret")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        call(&app, Request::get("/api/v1/search").body(Body::empty()).unwrap()).await.0,
        StatusCode::UNAUTHORIZED
    );
    // The catalog and the contract are public.
    assert_eq!(call(&app, Request::get("/api/v1/openapi.json").body(Body::empty()).unwrap()).await.0, StatusCode::OK);
    assert_eq!(call(&app, get("/api/v1/nothing", "reader-secret")).await.0, StatusCode::NOT_FOUND);
}

/// Refused callers are in the audit trail (who, from where, on what), up to
/// a rate per address: a flood of bad tokens cannot flood the trail.
#[tokio::test]
async fn refused_callers_are_audited_at_a_bounded_rate() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(TantivyStore::open(dir.path(), TantivyConfig::default()).unwrap());
    let mut tokens = Tokens::default();
    tokens.readers.insert("lan".into(), hash_token("reader-secret"));
    tokens.admins.insert("chief".into(), hash_token("admin-secret"));
    let app = router(Arc::new(AppState::open(store, Some(tokens), dir.path(), 4).unwrap()));
    assert_eq!(call(&app, ingest(Some("wrong"), None, LINES.into(), false)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, ingest(Some("reader-secret"), None, LINES.into(), false)).await.0, StatusCode::FORBIDDEN);
    for _ in 0..200 {
        assert_eq!(call(&app, get("/api/v1/search?q=*", "guess")).await.0, StatusCode::UNAUTHORIZED);
    }
    let (s, r) = call(&app, get("/api/v1/audit?action=auth.refused", "admin-secret")).await;
    assert_eq!(s, StatusCode::OK);
    let e = r["entries"].as_array().unwrap();
    assert_eq!(e.len(), siem::refusals::PER_PEER as usize, "{r}");
    assert_eq!((e[0]["who"].as_str(), e[0]["detail"]["status"].as_u64()), (Some("-"), Some(401)));
    assert_eq!(e[0]["detail"]["path"], "/api/v1/ingest");
    assert_eq!((e[1]["who"].as_str(), e[1]["detail"]["status"].as_u64()), (Some("lan"), Some(403)));
    assert_eq!(e[2]["detail"]["path"], "/api/v1/search");
    assert!(e.iter().all(|e| e["from"].is_string()), "{r}");
    assert!(siem::audit::verify(&dir.path().join("audit.log")).is_ok());
}

#[tokio::test]
async fn ingest_keeps_good_lines_reports_bad_ones_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), 4);
    let (s, r) = call(&app, ingest(Some("sensor-secret"), Some("b-1"), LINES.into(), false)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["accepted"], 4);
    // The record with a field conn.log does not list is kept, and said so.
    assert_eq!(r["with_unknown_fields"], 1, "{r}");
    let rejected: Vec<(u64, String)> = r["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["error"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].0, 3);
    // A retried batch is not stored twice.
    let (_, r) = call(&app, ingest(Some("sensor-secret"), Some("b-1"), LINES.into(), false)).await;
    assert_eq!(r["duplicate"], true);
    // Compressed bodies.
    let z = zstd::encode_all(LINES.as_bytes(), 3).unwrap();
    let (s, r) = call(&app, ingest(Some("sensor-secret"), Some("b-2"), z, true)).await;
    assert_eq!((s, r["accepted"].as_u64()), (StatusCode::OK, Some(4)));
    let (s, r) = call(&app, ingest(Some("sensor-secret"), Some("b-3"), b"garbage".to_vec(), true)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
    let (s, _) = call(&app, ingest(Some("sensor-secret"), Some("bad id!"), LINES.into(), false)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Stored: once per batch, under the authenticated sensor's name.
    let (s, r) = call(&app, get("/api/v1/search?q=_log:conn&sort=ts&order=asc", "reader-secret")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["total"], 6);
    assert_eq!(r["hits"][0]["_sensor"], "district-7");
    // The batch ledger survives a restart.
    drop(app);
    let app = self::app(dir.path(), 4);
    let (_, r) = call(&app, ingest(Some("sensor-secret"), Some("b-1"), LINES.into(), false)).await;
    assert_eq!(r["duplicate"], true);
}

#[tokio::test]
async fn bad_queries_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), 4);
    call(&app, ingest(Some("sensor-secret"), None, LINES.into(), false)).await;
    let (s, r) = call(&app, get("/api/v1/search?q=uid:C1%20AND%20id.resp_p:http", "reader-secret")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(r["position"], 21);
    assert!(r["error"].as_str().unwrap().contains("not a valid count"), "{r}");
    // A stable code and its values, for clients in other languages.
    assert_eq!(r["code"], "query.bad_value");
    assert_eq!(r["args"], serde_json::json!({"value": "http", "kind": "count", "position": "21"}));
    let (_, r) = call(&app, get("/api/v1/search?from=200&to=100", "reader-secret")).await;
    assert_eq!((r["code"].as_str(), r["error"].as_str()), (Some("range.reversed"), Some("from is after to")));
    let (_, r) = call(&app, get("/api/v1/search?q=(uid:C1", "reader-secret")).await;
    assert_eq!((r["code"].as_str(), &r["args"]["end"]), (Some("query.missing_paren"), &serde_json::json!("")));
    for bad in [
        "/api/v1/search?q=(uid:C1",
        "/api/v1/search?sort=uid",
        "/api/v1/search?order=sideways",
        "/api/v1/search?limit=999999",
        "/api/v1/search?nonsense=1",
        "/api/v1/aggregate?agg=terms",
        "/api/v1/aggregate?agg=median&field=ts",
        "/api/v1/aggregate?agg=stats&field=uid",
        "/api/v1/search?to=1.51253520208906e%2B308&from=1.7976931348623157e%2B308",
        "/api/v1/search?from=-5",
        "/api/v1/search?from=200&to=100",
        "/api/v1/aggregate?agg=histogram&from=1e300",
        "/api/v1/alerts?to=1e300",
    ] {
        let (s, r) = call(&app, get(bad, "reader-secret")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {r}");
        assert!(r["error"].is_string(), "{bad}");
    }
    let (s, r) = call(&app, get("/api/v1/aggregate?q=_log:conn&agg=terms&field=id.resp_p", "reader-secret")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r.as_array().unwrap().len(), 2);
    let (s, r) = call(&app, get("/api/v1/search?q=id.orig_h:10.1.0.0/16%20OR%20duckdns", "reader-secret")).await;
    assert_eq!((s, r["total"].as_u64()), (StatusCode::OK, Some(2)));
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(TantivyStore::open(dir.path(), TantivyConfig::default()).unwrap());
    let state = AppState::new(store, None, None, 1);
    let app = router(Arc::new(state));
    let big = vec![b'x'; siem::api::MAX_BODY_BYTES + 10];
    let resp = app.clone().oneshot(ingest(None, None, big, false)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Announced too large: refused before the body is read at all (a body
    // that never comes would otherwise hold the answer back forever).
    let never = futures::stream::pending::<Result<Vec<u8>, std::io::Error>>();
    let req = Request::post("/api/v1/ingest")
        .header("content-length", (siem::api::MAX_BODY_BYTES + 1).to_string())
        .body(Body::from_stream(never))
        .unwrap();
    let resp = tokio::time::timeout(std::time::Duration::from_secs(10), app.clone().oneshot(req)).await;
    assert_eq!(resp.expect("answered without reading the body").unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
}

fn json_post(uri: &str, token: &str, body: serde_json::Value) -> Request<Body> {
    Request::post(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn alerts_are_triaged_and_every_action_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(TantivyStore::open(dir.path(), TantivyConfig::default()).unwrap());
    let mut tokens = Tokens::default();
    tokens.sensors.insert("district-7".into(), hash_token("sensor-secret"));
    tokens.readers.insert("lan".into(), hash_token("reader-secret"));
    tokens.admins.insert("chief".into(), hash_token("admin-secret"));
    let app = router(Arc::new(AppState::open(store, Some(tokens), dir.path(), 4).unwrap()));
    let alert = r#"{"_log":"alerts","ts":1700000000.5,"id":"A0123456789abcdef0123","severity":"high","rule.source":"sigma","rule.id":"r1","rule.title":"t","rule.version":"v","sensor":"s","summary":"x","count":1,"first_seen":1700000000.5,"last_seen":1700000000.5}"#;
    let (s, _) = call(&app, ingest(Some("sensor-secret"), None, format!("{alert}\n").into(), false)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, r) = call(&app, get("/api/v1/alerts?status=new", "reader-secret")).await;
    assert_eq!((s, r["total"].as_u64()), (StatusCode::OK, Some(1)));
    assert_eq!(r["hits"][0]["triage"]["status"], "new");
    let url = "/api/v1/alerts/A0123456789abcdef0123/triage";
    let (s, r) =
        call(&app, json_post(url, "reader-secret", serde_json::json!({"status": "closed_false_positive"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "closing needs a reason: {r}");
    assert_eq!(r["code"], "triage.needs_reason");
    let (s, _) = call(&app, json_post(url, "reader-secret", serde_json::json!({"status": "finished"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) =
        call(&app, json_post("/api/v1/alerts/A99/triage", "reader-secret", serde_json::json!({"comment": "x"}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A well-formed id of no alert is named as such, not as a missing endpoint.
    let unknown = "/api/v1/alerts/A00000000000000000000/triage";
    let (s, r) = call(&app, json_post(unknown, "reader-secret", serde_json::json!({"comment": "x"}))).await;
    assert_eq!((s, r["code"].as_str()), (StatusCode::NOT_FOUND, Some("alert.unknown")), "{r}");
    let (s, r) =
        call(&app, json_post("/api/v1/incidents/999999", "reader-secret", serde_json::json!({"note": "x"}))).await;
    assert_eq!((s, r["code"].as_str()), (StatusCode::NOT_FOUND, Some("incident.unknown")), "{r}");
    let (s, _) =
        call(&app, json_post("/api/v1/alerts/..%2Fetc/triage", "reader-secret", serde_json::json!({"comment": "x"})))
            .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, r) = call(
        &app,
        json_post(url, "reader-secret", serde_json::json!({"assign": "lan", "comment": "the vendor's scanner", "status": "closed_false_positive", "reason": "authorised"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "closed_false_positive");
    let (_, r) = call(&app, get("/api/v1/alerts?status=new", "reader-secret")).await;
    assert_eq!(r["total"], 0);
    let (_, r) = call(&app, get("/api/v1/alerts?status=closed_false_positive", "reader-secret")).await;
    assert_eq!(r["hits"][0]["triage"]["assignee"], "lan");
    // The audit trail: admins only, and it holds who did what.
    assert_eq!(call(&app, get("/api/v1/audit", "reader-secret")).await.0, StatusCode::FORBIDDEN);
    let (s, r) = call(&app, get("/api/v1/audit?action=alert.triage", "admin-secret")).await;
    assert_eq!(s, StatusCode::OK);
    let e = &r["entries"].as_array().unwrap()[0];
    assert_eq!((e["who"].as_str(), e["detail"]["status"].as_str()), (Some("lan"), Some("closed_false_positive")));
    // What was typed, as typed.
    assert_eq!(
        (e["detail"]["reason"].as_str(), e["detail"]["comment"].as_str()),
        (Some("authorised"), Some("the vendor's scanner"))
    );
    let (_, r) = call(&app, get("/api/v1/audit", "admin-secret")).await;
    let actions: Vec<&str> = r["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["ingest", "alerts", "alert.triage", "alerts", "alerts", "auth.refused", "audit.read", "audit.read"]
    );
    assert!(siem::audit::verify(&dir.path().join("audit.log")).is_ok());
}

fn alert_line(id: &str, rule: &str, src: &str, ts: f64) -> String {
    format!(
        r#"{{"_log":"alerts","ts":{ts},"id":"{id}","severity":"high","rule.source":"sigma","rule.id":"{rule}","rule.title":"Rule {rule}","rule.version":"v","sensor":"s","id.orig_h":"{src}","summary":"x","count":1,"first_seen":{ts},"last_seen":{ts}}}"#
    )
}

#[tokio::test]
async fn incidents_group_alerts_and_follow_a_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(TantivyStore::open(dir.path(), TantivyConfig::default()).unwrap());
    let app = router(Arc::new(AppState::open(store, None, dir.path(), 4).unwrap()));
    let t0 = 1_700_000_000.0;
    let lines = [
        alert_line("A01", "r1", "203.0.113.5", t0),
        alert_line("A02", "r1", "203.0.113.5", t0 + 600.0),
        alert_line("A03", "r2", "203.0.113.5", t0 + 700.0),
        alert_line("A04", "r1", "203.0.113.9", t0 + 800.0),
        alert_line("A05", "r1", "203.0.113.5", t0 + 90_000.0),
    ]
    .join("\n");
    let (s, r) = call(&app, ingest(None, None, lines.into(), false)).await;
    assert_eq!((s, r["accepted"].as_u64()), (StatusCode::OK, Some(5)), "{r}");
    // Same rule and source within the hour: one incident; others apart.
    let (_, r) = call(&app, get("/api/v1/incidents?status=open", "x")).await;
    let list = r["incidents"].as_array().unwrap();
    assert_eq!(list.len(), 4, "{r}");
    let first = list.iter().find(|i| i["alerts"] == serde_json::json!(["A01", "A02"])).expect("A01 and A02 together");
    assert_eq!(first["title"], "Rule r1 from 203.0.113.5");
    let id = first["id"].as_str().unwrap().to_string();
    let other =
        list.iter().find(|i| i["alerts"] == serde_json::json!(["A03"])).unwrap()["id"].as_str().unwrap().to_string();
    // Merge, own, note, evidence, close.
    let url = format!("/api/v1/incidents/{id}");
    let (s, r) = call(
        &app,
        json_post(&url, "x", serde_json::json!({"merge": other, "owner": "lan", "note": "same campaign", "evidence": ["http:C4J", "pcap:C4J.pcap"], "status": "investigating"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["alerts"], serde_json::json!(["A01", "A02", "A03"]));
    assert_eq!((r["owner"].as_str(), r["status"].as_str()), (Some("lan"), Some("investigating")));
    let (_, r) = call(&app, get("/api/v1/incidents?status=merged", "x")).await;
    assert_eq!(r["incidents"][0]["id"], other.as_str());
    // Split an alert out into an incident of its own.
    let (s, _) = call(&app, json_post(&url, "x", serde_json::json!({"remove_alerts": ["A03"]}))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, r) =
        call(&app, json_post("/api/v1/incidents", "x", serde_json::json!({"title": "Recon", "alerts": ["A03"]}))).await;
    assert_eq!((s, r["alerts"].clone()), (StatusCode::OK, serde_json::json!(["A03"])));
    let (s, _) =
        call(&app, json_post("/api/v1/incidents", "x", serde_json::json!({"title": "Ghost", "alerts": ["A77"]}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "alerts must exist");
    let (s, _) = call(&app, json_post("/api/v1/incidents/I999", "x", serde_json::json!({"note": "?"}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(&app, json_post(&url, "x", serde_json::json!({"status": "solved"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, r) = call(&app, json_post(&url, "x", serde_json::json!({"status": "closed"}))).await;
    assert_eq!((s, r["status"].as_str()), (StatusCode::OK, Some("closed")));
    // The alerts say which incident they are in.
    let (_, r) = call(&app, get("/api/v1/alerts?q=id:A01", "x")).await;
    assert_eq!(r["hits"][0]["incident"], id.as_str());
}

#[tokio::test]
async fn a_pivot_follows_a_flow_across_logs_and_sensors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(TantivyStore::open(dir.path(), TantivyConfig::default()).unwrap());
    let app = router(Arc::new(AppState::open(store, None, dir.path(), 4).unwrap()));
    let lines = [
        r#"{"_log":"conn","ts":1700000000.0,"uid":"CA","community_id":"1:abc+/=","id.orig_h":"10.0.0.1"}"#,
        r#"{"_log":"http","ts":1700000000.1,"uid":"CA","uri":"/x"}"#,
        r#"{"_log":"files","ts":1700000000.2,"uid":"CA","fuid":"F1"}"#,
        r#"{"_log":"conn","ts":1700000000.05,"uid":"CB","community_id":"1:abc+/=","id.orig_h":"10.0.0.1"}"#,
        r#"{"_log":"dns","ts":1700000000.3,"uid":"CB","query":"x.example"}"#,
        r#"{"_log":"conn","ts":1700000001.0,"uid":"CC","community_id":"1:other","id.orig_h":"10.0.0.2"}"#,
    ]
    .join("\n");
    let (s, r) = call(&app, ingest(None, None, lines.into(), false)).await;
    assert_eq!((s, r["accepted"].as_u64()), (StatusCode::OK, Some(6)), "{r}");
    let (s, r) = call(&app, get("/api/v1/pivot?uid=CA", "x")).await;
    assert_eq!(s, StatusCode::OK);
    let logs: Vec<(&str, &str)> = r["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["_log"].as_str().unwrap(), h["uid"].as_str().unwrap()))
        .collect();
    assert_eq!(logs, [("conn", "CA"), ("conn", "CB"), ("http", "CA"), ("files", "CA"), ("dns", "CB")]);
    let (_, r) = call(&app, get("/api/v1/pivot?community_id=1%3Aabc%2B%2F%3D", "x")).await;
    assert_eq!(r["total"], 5);
    for bad in ["/api/v1/pivot", "/api/v1/pivot?uid=CA&community_id=x", "/api/v1/pivot?uid=C%20A%22"] {
        assert_eq!(call(&app, get(bad, "x")).await.0, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn retention_runs_for_admins_and_shows_in_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(TantivyStore::open(dir.path(), TantivyConfig::default()).unwrap());
    let mut tokens = Tokens::default();
    tokens.sensors.insert("district-7".into(), hash_token("sensor-secret"));
    tokens.readers.insert("lan".into(), hash_token("reader-secret"));
    tokens.admins.insert("chief".into(), hash_token("admin-secret"));
    let mut state = AppState::open(store, Some(tokens), dir.path(), 4).unwrap();
    // Protocol records kept for ever; flows 30 days (the default), so the
    // 2023 flows are past it, and a budget of flows no day fits.
    state.retention.set_age("records=none").unwrap();
    state.retention.set_budget("flows=1B").unwrap();
    let app = router(Arc::new(state));
    let day_before = "{\"_log\":\"conn\",\"ts\":1699913000,\"uid\":\"C0\"}\n";
    let (s, _) = call(&app, ingest(Some("sensor-secret"), None, day_before.into(), false)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, r) = call(&app, ingest(Some("sensor-secret"), None, LINES.into(), false)).await;
    assert_eq!(s, StatusCode::OK);
    // The sender is told: the flows are older than their retention, and
    // are kept that long from now; the DNS record has none.
    assert_eq!(r["older_than_retention"], 3, "{r}");
    assert!(r["warnings"].to_string().contains("3 flows from as early as 2023-11-14"), "{r}");
    let (s, r) = call(&app, get("/api/v1/status", "reader-secret")).await;
    assert_eq!(s, StatusCode::OK);
    let classes = r["retention"]["classes"].as_array().unwrap();
    let flows = classes.iter().find(|c| c["class"] == "flows").unwrap();
    assert_eq!((flows["records"].as_u64(), flows["policy"]["max_age_secs"].as_u64()), (Some(4), Some(30 * 86_400)));
    assert!(flows["bytes"].as_u64().unwrap() > 0);
    let post = |token: &str| {
        Request::post("/api/v1/retention/run")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(call(&app, post("reader-secret")).await.0, StatusCode::FORBIDDEN);
    let (s, r) = call(&app, post("admin-secret")).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    // Nothing goes for its age minutes after it came; the budget takes
    // the day written first.
    let dropped = r["dropped"].as_array().unwrap();
    assert_eq!(dropped.len(), 1, "{r}");
    assert_eq!((dropped[0]["class"].as_str(), dropped[0]["reason"].as_str()), (Some("flows"), Some("budget")));
    let (_, r) = call(&app, get("/api/v1/search?q=*", "reader-secret")).await;
    assert_eq!(r["total"], 4, "what came last stays: {r}");
    let (_, r) = call(&app, get("/api/v1/status", "reader-secret")).await;
    assert_eq!(r["retention"]["runs"]["recent"][0]["day"], "2023-11-13");
    let (_, r) = call(&app, get("/api/v1/audit?action=retention.drop", "admin-secret")).await;
    assert_eq!(r["entries"][0]["who"], "retention");
}

/// A batch cut short on the way (a truncated zstd frame) is refused with
/// the reason, stores nothing, does not burn its batch id, and the server
/// takes the whole batch when it comes again.
#[tokio::test]
async fn a_truncated_batch_is_refused_and_its_id_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), 4);
    let z = zstd::encode_all(LINES.as_bytes(), 3).unwrap();
    let cut = z[..z.len() / 2].to_vec();
    let (s, r) = call(&app, ingest(Some("sensor-secret"), Some("b-cut"), cut, true)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
    assert!(r.to_string().contains("zstd"), "{r}");
    let (_, found) = call(&app, get("/api/v1/search?q=*", "reader-secret")).await;
    assert_eq!(found["total"], 0);
    let (s, r) = call(&app, ingest(Some("sensor-secret"), Some("b-cut"), z, true)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["accepted"], 4);
    assert_eq!(r["duplicate"], false);
}

/// The server stops after a batch's records are stored but before its
/// acknowledgement (its ledger line): many batches later, after a restart,
/// the retry undoes what the first attempt stored and stores it again, so
/// its records are there once (no window of recent batches to fall out of).
#[tokio::test]
async fn a_batch_stored_but_never_acknowledged_is_stored_once_however_late_it_comes_again() {
    let dir = tempfile::tempdir().unwrap();
    let (s, r) = call(&app(dir.path(), 4), ingest(Some("sensor-secret"), Some("run1-7"), LINES.into(), false)).await;
    assert_eq!((s, r["accepted"].as_u64()), (StatusCode::OK, Some(4)));
    // As if the server had died before writing the ledger's last line.
    let done = dir.path().join("ingest-batches.log");
    let text = std::fs::read_to_string(&done).unwrap();
    std::fs::write(&done, text.replace("district-7 run1-7\n", "")).unwrap();
    let app = app(dir.path(), 4);
    // More batches than any window of recent ids a commit could name, in
    // the partitions the batch went to.
    for i in 0..300 {
        let line = format!(
            "{{\"_log\":\"dns\",\"ts\":1700000100,\"uid\":\"D{i}\",\"query\":\"q{i}.example\"}}\n\
             {{\"_log\":\"conn\",\"ts\":1700000100,\"uid\":\"E{i}\"}}\n"
        );
        let (s, _) = call(&app, ingest(Some("sensor-secret"), Some(&format!("run1-n{i}")), line.into(), false)).await;
        assert_eq!(s, StatusCode::OK);
    }
    drop(app);
    let app = self::app(dir.path(), 4);
    let (s, r) = call(&app, ingest(Some("sensor-secret"), Some("run1-7"), LINES.into(), false)).await;
    assert_eq!((s, r["accepted"].as_u64()), (StatusCode::OK, Some(4)), "{r}");
    let (_, found) =
        call(&app, get("/api/v1/search?q=uid:C1%20OR%20uid:C2%20OR%20uid:C3%20OR%20uid:C4", "reader-secret")).await;
    assert_eq!(found["total"], 4, "every record of the batch once");
    // Acknowledged now: the next retry is a duplicate, also after a restart.
    drop(app);
    let app = self::app(dir.path(), 4);
    let (_, r) = call(&app, ingest(Some("sensor-secret"), Some("run1-7"), LINES.into(), false)).await;
    assert_eq!(r["duplicate"], true, "{r}");
    let (_, found) = call(&app, get("/api/v1/search?q=*", "reader-secret")).await;
    assert_eq!(found["total"], 604);
}

/// Every error is JSON, axum's own rejections included.
#[tokio::test]
async fn every_error_is_json() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), 4);
    let big = vec![b'x'; 50 << 20];
    let mut cases = vec![
        ("too large", ingest(Some("sensor-secret"), None, big, false), StatusCode::PAYLOAD_TOO_LARGE),
        (
            "no content type",
            Request::post("/api/v1/incidents")
                .header("authorization", "Bearer reader-secret")
                .body(Body::from("{}"))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "bad json",
            Request::post("/api/v1/incidents")
                .header("authorization", "Bearer reader-secret")
                .header("content-type", "application/json")
                .body(Body::from("{not json"))
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "wrong method",
            Request::delete("/api/v1/search")
                .header("authorization", "Bearer reader-secret")
                .body(Body::empty())
                .unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    let mut br = ingest(Some("sensor-secret"), None, LINES.into(), false);
    br.headers_mut().insert("content-encoding", "br".parse().unwrap());
    cases.push(("unknown encoding", br, StatusCode::UNSUPPORTED_MEDIA_TYPE));
    for (what, req, want) in cases {
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        let v: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| panic!("{what}: not JSON: {}", String::from_utf8_lossy(&body)));
        assert_eq!(status, want, "{what}: {v}");
        assert_eq!(ct.as_deref(), Some("application/json"), "{what}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {v}");
    }
}

/// Shippers send gzip (Beats, Fluent Bit, Vector) or deflate as well as
/// zstd; a small body that would decompress past the limit is refused
/// with 413 at the limit, not read into memory.
#[tokio::test]
async fn gzip_and_deflate_bodies_are_read_and_a_bomb_is_refused() {
    use flate2::write::{GzEncoder, ZlibEncoder};
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), 4);
    let post = |body: Vec<u8>, encoding: &str| {
        let mut r = ingest(Some("sensor-secret"), None, body, false);
        r.headers_mut().insert("content-encoding", encoding.parse().unwrap());
        r
    };
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(LINES.as_bytes()).unwrap();
    let (s, r) = call(&app, post(gz.finish().unwrap(), "gzip")).await;
    assert_eq!((s, r["accepted"].as_u64()), (StatusCode::OK, Some(4)), "{r}");
    let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(LINES.as_bytes()).unwrap();
    let (s, r) = call(&app, post(z.finish().unwrap(), "deflate")).await;
    assert_eq!((s, r["accepted"].as_u64()), (StatusCode::OK, Some(4)), "{r}");
    let (s, r) = call(&app, post(b"not gzip".to_vec(), "gzip")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
    // 1 GiB of newlines in about a megabyte.
    let mut bomb = GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![b'\n'; 1 << 20];
    for _ in 0..1024 {
        bomb.write_all(&chunk).unwrap();
    }
    let bomb = bomb.finish().unwrap();
    assert!(bomb.len() < siem::api::MAX_BODY_BYTES);
    let (s, r) = call(&app, post(bomb, "gzip")).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{r}");
    assert!(r["error"].as_str().unwrap().contains("decompressed"), "{r}");
}

/// A Zeek log with a site's own fields: the records are kept, the unknown
/// fields in `_extra`, found by free text, and the reply counts them.
#[tokio::test]
async fn unknown_fields_are_kept_and_searchable() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), 4);
    let lines = concat!(
        "{\"_path\":\"conn\",\"ts\":1700000000.5,\"uid\":\"CZ1\",\"site_zone\":\"northwardlane\",\"vlan_name\":[\"cams\"]}\n",
        "{\"_path\":\"conn\",\"ts\":1700000001.5,\"uid\":\"CZ2\"}\n",
    );
    let (s, r) = call(&app, ingest(Some("sensor-secret"), Some("z-1"), lines.into(), false)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!((r["accepted"].as_u64(), r["with_unknown_fields"].as_u64()), (Some(2), Some(1)), "{r}");
    assert!(r["warnings"].to_string().contains("_extra"), "{r}");
    let (_, found) = call(&app, get("/api/v1/search?q=northwardlane", "reader-secret")).await;
    assert_eq!(found["total"], 1, "{found}");
    let extra: Value = serde_json::from_str(found["hits"][0]["_extra"].as_str().unwrap()).unwrap();
    assert_eq!(extra, serde_json::json!({"site_zone": "northwardlane", "vlan_name": ["cams"]}));
}

/// A ledger line cut short (a power loss while it was written) names no
/// batch: `run1-12` cut to `run1-1` does not make batch `run1-1` a
/// duplicate, and the next line written stands on its own.
#[tokio::test]
async fn a_ledger_line_cut_short_names_no_batch() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ingest-batches.log"), "district-7 run1-0\ndistrict-7 run1-1").unwrap();
    let app = app(dir.path(), 4);
    let (_, r) = call(&app, ingest(Some("sensor-secret"), Some("run1-0"), LINES.into(), false)).await;
    assert_eq!(r["duplicate"], true, "{r}");
    let (_, r) = call(&app, ingest(Some("sensor-secret"), Some("run1-1"), LINES.into(), false)).await;
    assert_eq!((r["duplicate"].as_bool(), r["accepted"].as_u64()), (Some(false), Some(4)), "{r}");
    let ledger = std::fs::read_to_string(dir.path().join("ingest-batches.log")).unwrap();
    assert_eq!(ledger, "district-7 run1-0\ndistrict-7 run1-1\ndistrict-7 run1-1\n");
    drop(app);
    let app = self::app(dir.path(), 4);
    let (_, r) = call(&app, ingest(Some("sensor-secret"), Some("run1-1"), LINES.into(), false)).await;
    assert_eq!(r["duplicate"], true, "{r}");
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn audited_app(dir: &std::path::Path) -> axum::Router {
    let store = Arc::new(TantivyStore::open(dir, TantivyConfig::default()).unwrap());
    let mut tokens = Tokens::default();
    tokens.sensors.insert("district-7".into(), hash_token("sensor-secret"));
    tokens.readers.insert("analyst".into(), hash_token("reader-secret"));
    tokens.admins.insert("chief".into(), hash_token("admin-secret"));
    router(Arc::new(AppState::open(store, Some(tokens), dir, 4).unwrap()))
}

/// A search's range once went into the audit trail as a number that did
/// not survive being read back: the next start refused to run.
#[tokio::test]
async fn a_search_cannot_stop_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let app = audited_app(dir.path());
    let (s, r) =
        call(&app, get("/api/v1/search?q=_log:conn&from=1796645682.0149999&to=1796645700.5", "reader-secret")).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    drop(app);
    assert!(siem::audit::verify(&dir.path().join("audit.log")).is_ok());
    let app = audited_app(dir.path());
    let (s, _) = call(&app, ingest(Some("sensor-secret"), None, LINES.into(), false)).await;
    assert_eq!(s, StatusCode::OK, "the trail is whole: changes go on");
}

/// A broken trail: the server starts, serves reads, refuses changes with
/// a 503 naming the line, and appends nothing.
#[tokio::test]
async fn a_broken_audit_trail_leaves_the_server_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let app = audited_app(dir.path());
    assert_eq!(call(&app, ingest(Some("sensor-secret"), None, LINES.into(), false)).await.0, StatusCode::OK);
    assert_eq!(call(&app, get("/api/v1/search?q=uid:C1", "reader-secret")).await.0, StatusCode::OK);
    assert_eq!(call(&app, get("/api/v1/search?q=uid:C2", "reader-secret")).await.0, StatusCode::OK);
    drop(app);
    let path = dir.path().join("audit.log");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("uid:C1", "uid:C9", 1)).unwrap();
    let before = std::fs::read(&path).unwrap();
    let app = audited_app(dir.path());
    // The three lines of LINES, the one with a field outside the catalog
    // kept with it aside.
    let (s, r) = call(&app, get("/api/v1/search?q=_log:conn", "reader-secret")).await;
    assert_eq!((s, r["total"].as_u64()), (StatusCode::OK, Some(3)), "{r}");
    let (s, r) = call(&app, get("/api/v1/audit", "admin-secret")).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, r) = call(&app, ingest(Some("sensor-secret"), Some("b-9"), LINES.into(), false)).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{r}");
    assert_eq!(r["audit_broken_line"], 2);
    assert!(r["error"].as_str().unwrap().contains("audit trail is broken at line 2"), "{r}");
    let (s, r) = call(
        &app,
        json_post("/api/v1/incidents", "reader-secret", serde_json::json!({"title": "outbreak", "alerts": []})),
    )
    .await;
    assert_eq!((s, r["audit_broken_line"].as_u64()), (StatusCode::SERVICE_UNAVAILABLE, Some(2)), "{r}");
    let (s, _) = call(
        &app,
        Request::post("/api/v1/retention/run")
            .header("authorization", "Bearer admin-secret")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing extends a broken chain");
    let (_, r) = call(&app, get("/api/v1/search?q=uid:C1", "reader-secret")).await;
    assert_eq!(r["total"], 1, "nothing was stored either");
}

/// What once overflowed a worker's stack, and what the bounds are for:
/// each a 400 naming the limit, on every endpoint that takes a query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_queries_are_refused_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let app = audited_app(dir.path());
    assert_eq!(call(&app, ingest(Some("sensor-secret"), None, LINES.into(), false)).await.0, StatusCode::OK);
    let ips: Vec<String> = (0..100).map(|i| format!("10.9.0.{i}")).collect();
    let cases = [
        (format!("{}uid:x", "NOT ".repeat(250)), "nested more than 32"),
        (format!("{}uid:x", "NOT ".repeat(500)), "nested more than 32"),
        (format!("{}uid:x", "-(".repeat(300)), "nested more than 32"),
        (ips.join(" OR "), "at most 512"),
        (format!("query:*{}*", "a".repeat(100)), "at most 64 bytes"),
        ("@@@".to_string(), "'@@@' has no letter or digit"),
    ];
    for (q, want) in &cases {
        for ep in ["/api/v1/search?q=", "/api/v1/aggregate?agg=terms&field=uid&q=", "/api/v1/alerts?q="] {
            let (s, r) = call(&app, get(&format!("{ep}{}", enc(q)), "reader-secret")).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{ep} {}: {r}", &q[..20.min(q.len())]);
            assert!(r["error"].as_str().unwrap_or("").contains(want), "{ep}: {r}");
        }
    }
}

/// A histogram's buckets are bounded: an interval too fine for the range
/// its records span is widened to a round one, and the answer says which.
#[tokio::test]
async fn a_histogram_too_fine_for_its_range_is_widened() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), 4);
    let lines =
        "{\"_log\":\"conn\",\"ts\":1000.5,\"uid\":\"C1\"}\n{\"_log\":\"conn\",\"ts\":4000000000.5,\"uid\":\"C2\"}\n";
    assert_eq!(call(&app, ingest(Some("sensor-secret"), None, lines.into(), false)).await.0, StatusCode::OK);
    for url in [
        "/api/v1/aggregate?agg=histogram&interval=1",
        "/api/v1/aggregate?agg=histogram&interval=1&from=0&to=4100000000",
    ] {
        let (s, r) = call(&app, get(url, "reader-secret")).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        // 127 years in whole weeks: 6,613 buckets.
        assert_eq!((r["interval_secs"].as_f64(), r["requested_interval_secs"].as_f64()), (Some(604_800.0), Some(1.0)));
        let buckets = r["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), 2, "{r}");
        assert_eq!(buckets[0]["time"], "1970-01-01T00:00:00Z", "{r}");
    }
    let (s, r) = call(&app, get("/api/v1/aggregate?agg=histogram&interval=86400000", "reader-secret")).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["interval_secs"].as_f64(), Some(86_400_000.0), "{r}");
    assert_eq!(r["buckets"].as_array().map(Vec::len), Some(2), "{r}");
}

/// `from`/`to` take what people paste (ISO 8601 / RFC 3339) as well as
/// epoch seconds, on every endpoint that has them; answers say the range
/// in ISO 8601.
#[tokio::test]
async fn ranges_take_iso_8601_as_well_as_epoch_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let app = audited_app(dir.path());
    assert_eq!(call(&app, ingest(Some("sensor-secret"), None, LINES.into(), false)).await.0, StatusCode::OK);
    // 1700000001 is 2023-11-14T22:13:21Z.
    let epoch = "from=1700000001&to=1700000003";
    // C2 and C3 (whose field outside the catalog is kept aside).
    let (s, want) = call(&app, get(&format!("/api/v1/search?q=_log:conn&{epoch}"), "reader-secret")).await;
    assert_eq!((s, want["total"].as_u64()), (StatusCode::OK, Some(2)), "{want}");
    assert_eq!(want["range"]["from"], "2023-11-14T22:13:21Z");
    for iso in [
        "from=2023-11-14T22:13:21Z&to=2023-11-14T22:13:23Z",
        "from=2023-11-15T05:13:21%2B07:00&to=2023-11-15T05:13:23%2B07:00",
        "from=2023-11-15T05:13:21+07:00&to=2023-11-14%2022:13:23",
    ] {
        let (s, r) = call(&app, get(&format!("/api/v1/search?q=_log:conn&{iso}"), "reader-secret")).await;
        assert_eq!(s, StatusCode::OK, "{iso}: {r}");
        assert_eq!((&r["total"], &r["hits"], &r["range"]), (&want["total"], &want["hits"], &want["range"]), "{iso}");
    }
    let iso = "from=2023-11-14T22:13:21Z&to=2023-11-14T22:13:23Z";
    for ep in [
        "/api/v1/aggregate?agg=terms&field=uid&",
        "/api/v1/aggregate?agg=histogram&interval=60&",
        "/api/v1/alerts?",
        "/api/v1/ledger?",
    ] {
        let (s, r) = call(&app, get(&format!("{ep}{iso}"), "reader-secret")).await;
        assert_eq!(s, StatusCode::OK, "{ep}: {r}");
    }
    let (_, r) = call(&app, get(&format!("/api/v1/aggregate?agg=histogram&interval=60&{iso}"), "reader-secret")).await;
    assert_eq!(r["buckets"][0]["time"], "2023-11-14T22:13:00Z", "{r}");
    let (s, r) = call(&app, get("/api/v1/search?from=yesterday", "reader-secret")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(r["error"].as_str().unwrap().contains("'yesterday' is not a time"), "{r}");
}

/// `from`/`to` also take a span before now (`15m`, `24h`, `7d`, `now-2h`,
/// `now`) on every endpoint that has them; a bad one is a 400 naming it.
#[tokio::test]
async fn ranges_take_spans_before_now_and_errors_name_the_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let app = audited_app(dir.path());
    assert_eq!(call(&app, ingest(Some("sensor-secret"), None, LINES.into(), false)).await.0, StatusCode::OK);
    let (_, all) = call(&app, get("/api/v1/search?q=_log:conn", "reader-secret")).await;
    assert!(all["total"].as_u64().unwrap() > 0, "{all}");
    // The records are of 2023: within the last 10000 days, not the last 15
    // minutes.
    let (s, r) = call(&app, get("/api/v1/search?q=_log:conn&from=10000d&to=now", "reader-secret")).await;
    assert_eq!((s, &r["total"]), (StatusCode::OK, &all["total"]), "{r}");
    let (s, r) = call(&app, get("/api/v1/search?q=_log:conn&from=15m", "reader-secret")).await;
    assert_eq!((s, r["total"].as_u64()), (StatusCode::OK, Some(0)), "{r}");
    // The range said back is the absolute one applied: about 15 minutes ago.
    let from = r["range"]["from"].as_str().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let t = siem::store::parse_time(from).unwrap();
    assert!((now - 900.0 - t).abs() < 60.0, "{from}");
    for ep in [
        "/api/v1/aggregate?agg=terms&field=uid&from=7d",
        "/api/v1/aggregate?agg=histogram&interval=3600&from=now-2h&to=now",
        "/api/v1/alerts?from=24h",
        "/api/v1/ledger?from=24h",
    ] {
        let (s, r) = call(&app, get(ep, "reader-secret")).await;
        assert_eq!(s, StatusCode::OK, "{ep}: {r}");
    }
    for (q, param) in [("from=15x", "from"), ("to=later", "to"), ("from=2h&to=now-5q", "to")] {
        let (s, r) = call(&app, get(&format!("/api/v1/search?{q}"), "reader-secret")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {r}");
        let e = r["error"].as_str().unwrap();
        assert!(e.contains(&format!("{param}: '")) && e.contains("is not a time"), "{q}: {e}");
    }
    // In the wrong order: refused as such.
    let (s, r) = call(&app, get("/api/v1/search?from=1h&to=2h", "reader-secret")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
    assert!(r["error"].as_str().unwrap().contains("from is after to"), "{r}");
}

struct OnePacketFlow;

impl siem::api::PacketSource for OnePacketFlow {
    fn pcap(&self, uids: &[String], _: Option<f64>, _: Option<f64>) -> Result<Option<Vec<u8>>, String> {
        Ok((uids == ["C1"]).then(|| b"\xd4\xc3\xb2\xa1 a pcap".to_vec()))
    }

    fn filtered(&self, _: &str, _: f64, _: f64, _: usize) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }
}

/// `curl -o flow.pcap` once saved an error as the pcap file: an error is
/// JSON, and says so, whatever the endpoint serves when it succeeds.
#[tokio::test]
async fn pcap_errors_are_never_served_as_pcap() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(TantivyStore::open(dir.path(), TantivyConfig::default()).unwrap());
    let mut st = AppState::open(store, None, dir.path(), 4).unwrap();
    st.packets = Some(Arc::new(OnePacketFlow));
    let app = router(Arc::new(st));
    let fetch = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
    let resp = app.clone().oneshot(fetch("/api/v1/pcap?uid=C1")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/vnd.tcpdump.pcap");
    for uri in ["/api/v1/pcap?uid=C2", "/api/v1/pcap?uid=../x", "/api/v1/pcap?from=nope", "/api/v1/evidence?alert=A00"]
    {
        let resp = app.clone().oneshot(fetch(uri)).await.unwrap();
        assert!(resp.status().is_client_error(), "{uri}: {}", resp.status());
        assert_eq!(resp.headers()["content-type"], "application/json", "{uri}");
    }
}

/// Past the deepest offset (10,000 + a page of 10,000) a search once
/// stopped; its cursor goes on to the last record, each once.
#[tokio::test]
async fn a_cursor_exports_a_whole_range_past_the_deepest_offset() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), 4);
    let n = 20_050;
    let mut body = String::new();
    for i in 0..n {
        // Ten records to a second: times are shared, only text parts them.
        body.push_str(&format!("{{\"_log\":\"conn\",\"ts\":{}.5,\"uid\":\"C{i}\"}}\n", 1_700_000_000 + i / 10));
    }
    let (s, r) = call(&app, ingest(Some("sensor-secret"), None, body.into(), false)).await;
    assert_eq!((s, r["accepted"].as_u64()), (StatusCode::OK, Some(n as u64)), "{r}");
    let (s, r) = call(&app, get("/api/v1/search?q=_log:conn&limit=10&offset=20000", "reader-secret")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(r["error"].as_str().unwrap().contains("cursor"), "{r}");
    let mut seen = std::collections::HashSet::new();
    let mut uri = "/api/v1/search?q=_log:conn&order=asc&limit=10000&from=2023-11-14T22:13:20Z".to_string();
    let mut pages = 0;
    loop {
        let (s, r) = call(&app, get(&uri, "reader-secret")).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["total"], n);
        for h in r["hits"].as_array().unwrap() {
            assert!(seen.insert(h["uid"].as_str().unwrap().to_string()), "{h} twice");
        }
        pages += 1;
        let Some(next) = r["next_cursor"].as_str() else { break };
        uri =
            format!("/api/v1/search?q=_log:conn&order=asc&limit=10000&from=2023-11-14T22:13:20Z&cursor={}", enc(next));
    }
    assert_eq!((seen.len(), pages), (n, 3));
    let (s, r) = call(&app, get("/api/v1/search?cursor=c1.ts.d.1.5.x.1", "reader-secret")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
    let (s, _) = call(&app, get("/api/v1/search?order=asc&cursor=c1.ts.d.1.5.5.1", "reader-secret")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a cursor of another order");
}

/// The open API (no tokens, as `citysoc demo` serves it): a page of another
/// site cannot drive a change through the analyst's browser, tools that send
/// no `Origin` still can, and each refusal is audited and counted.
#[tokio::test]
async fn cross_site_changes_are_refused_and_tools_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(TantivyStore::open(dir.path(), TantivyConfig::default()).unwrap());
    let app = router(Arc::new(AppState::open(store, None, dir.path(), 4).unwrap()));
    let post = |uri: &str, headers: &[(&str, &str)], body: &str| {
        let mut b = Request::post(uri).header("host", "127.0.0.1:8080");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::from(body.to_string())).unwrap()
    };
    let run = "/api/v1/retention/run";
    let (s, r) = call(&app, post(run, &[("origin", "http://evil.example")], "")).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{r}");
    assert!(r["error"].as_str().unwrap().contains("Origin 'http://evil.example' is not this server's"), "{r}");
    let (s, _) = call(&app, post(run, &[("sec-fetch-site", "cross-site")], "")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) =
        call(&app, post(run, &[("sec-fetch-site", "same-site"), ("origin", "http://127.0.0.1:8080")], "")).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a sibling site is another site");
    // curl, a sensor, a script: no Origin, no Sec-Fetch-*.
    let (s, r) = call(&app, post(run, &[], "")).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    // The server's own pages.
    let own = [("origin", "http://127.0.0.1:8080"), ("sec-fetch-site", "same-origin")];
    assert_eq!(call(&app, post(run, &own, "")).await.0, StatusCode::OK);

    // Bodies a form or a no-cors fetch sends without a preflight.
    for ct in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b"] {
        let (s, r) = call(&app, post("/api/v1/ingest", &[("content-type", ct)], LINES)).await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}: {r}");
        let (s, _) = call(&app, post("/api/v1/incidents", &[("content-type", ct)], "{\"title\":\"x\"}")).await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}");
    }
    let (_, r) = call(&app, get("/api/v1/search?q=*", "-")).await;
    assert_eq!(r["total"], 0, "nothing of the refused bodies was stored: {r}");
    // JSON lines as sensors send them (no type) and as tools label them.
    for ct in [None, Some("application/x-ndjson")] {
        let h: Vec<(&str, &str)> = ct.map(|c| ("content-type", c)).into_iter().collect();
        let (s, r) = call(&app, post("/api/v1/ingest", &h, LINES)).await;
        assert_eq!(s, StatusCode::OK, "{ct:?}: {r}");
    }
    let (s, r) = call(
        &app,
        post("/api/v1/incidents", &[("content-type", "application/json")], "{\"title\":\"outbreak\",\"alerts\":[]}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");

    // Under a name that is not a loopback one (DNS rebinding), the open API
    // answers nothing, reads included.
    let rebound = Request::get("/api/v1/search?q=*").header("host", "evil.example:8080").body(Body::empty()).unwrap();
    let (s, r) = call(&app, rebound).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{r}");

    let entries = siem::audit::Audit::open(dir.path()).unwrap().read(Some("cross_site.refused"), None, 100).unwrap();
    assert!(entries.len() >= 3, "{entries:?}");
    let (s, text) = {
        let resp = app.clone().oneshot(get("/metrics", "-")).await.unwrap();
        let s = resp.status();
        (s, String::from_utf8(to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap())
    };
    assert_eq!(s, StatusCode::OK);
    assert!(text.contains("citysoc_siem_cross_site_refused_total{reason=\"origin\"} 1\n"), "{text}");
    assert!(text.contains("citysoc_siem_cross_site_refused_total{reason=\"content_type\"} 6\n"), "{text}");
}

/// One sample's value in an exposition (0 when absent).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

async fn scrape(app: &axum::Router, token: &str) -> (StatusCode, String) {
    let resp = app.clone().oneshot(get("/metrics", token)).await.unwrap();
    let s = resp.status();
    (s, String::from_utf8(to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap())
}

/// `/metrics` follows ingest (records and batches by outcome, the store's
/// size), queries and 503s; it takes a reader's token like the rest of the
/// API; `/healthz` and `/readyz` answer without one.
#[tokio::test]
async fn metrics_follow_ingest_queries_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let app = audited_app(dir.path());
    assert_eq!(scrape(&app, "wrong").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(scrape(&app, "sensor-secret").await.0, StatusCode::FORBIDDEN);
    let (s, before) = scrape(&app, "reader-secret").await;
    assert_eq!(s, StatusCode::OK);
    assert!(before.contains("citysoc_siem_build_info{version=\""), "{before}");
    assert_eq!(sample(&before, "citysoc_siem_audit_chain_ok"), 1.0);
    assert_eq!(sample(&before, "citysoc_siem_store_records{class=\"flows\"}"), 0.0);
    let (s, r) = call(&app, ingest(Some("sensor-secret"), Some("m-1"), LINES.into(), false)).await;
    assert_eq!(s, StatusCode::OK);
    let (accepted, rejected) = (r["accepted"].as_f64().unwrap(), r["rejected"].as_array().unwrap().len() as f64);
    call(&app, ingest(Some("sensor-secret"), Some("m-1"), LINES.into(), false)).await;
    call(&app, ingest(Some("reader-secret"), None, LINES.into(), false)).await;
    assert_eq!(call(&app, get("/api/v1/search?q=_log:conn", "reader-secret")).await.0, StatusCode::OK);
    assert_eq!(call(&app, get("/api/v1/aggregate?agg=terms&field=uid", "reader-secret")).await.0, StatusCode::OK);
    let (_, after) = scrape(&app, "reader-secret").await;
    let m = |s: &str| sample(&after, s);
    assert_eq!(m("citysoc_siem_ingest_records_total{outcome=\"accepted\"}"), accepted, "{after}");
    assert_eq!(m("citysoc_siem_ingest_records_total{outcome=\"rejected\"}"), rejected);
    assert_eq!(m("citysoc_siem_ingest_batches_total{outcome=\"accepted\"}"), 1.0);
    assert_eq!(m("citysoc_siem_ingest_batches_total{outcome=\"duplicate\"}"), 1.0);
    assert_eq!(m("citysoc_siem_ingest_batches_total{outcome=\"forbidden\"}"), 1.0);
    assert_eq!(m("citysoc_siem_ingest_in_flight"), 0.0);
    assert_eq!(m("citysoc_siem_ingest_slots"), 4.0);
    assert_eq!(m("citysoc_siem_query_duration_seconds_count{kind=\"search\"}"), 1.0);
    assert_eq!(m("citysoc_siem_query_duration_seconds_count{kind=\"aggregate\"}"), 1.0);
    assert!(m("citysoc_siem_store_records{class=\"flows\"}") >= 3.0, "{after}");
    assert!(m("citysoc_siem_store_size_bytes{class=\"flows\"}") > 0.0);

    for path in ["/healthz", "/readyz"] {
        let resp = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    // A broken audit trail: not ready, read-only, and a refused ingest is
    // a 503 counted as such.
    drop(app);
    let path = dir.path().join("audit.log");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"ingest\"", "\"ingezt\"", 1)).unwrap();
    let app = audited_app(dir.path());
    let resp = app.clone().oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let why = String::from_utf8(to_bytes(resp.into_body(), 4096).await.unwrap().to_vec()).unwrap();
    assert!(why.contains("audit trail broken at line"), "{why}");
    assert_eq!(
        call(&app, ingest(Some("sensor-secret"), None, LINES.into(), false)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (_, broken) = scrape(&app, "reader-secret").await;
    assert_eq!(sample(&broken, "citysoc_siem_audit_chain_ok"), 0.0, "{broken}");
    assert_eq!(sample(&broken, "citysoc_siem_read_only"), 1.0);
    assert_eq!(sample(&broken, "citysoc_siem_unavailable_responses_total{reason=\"read_only\"}"), 1.0);
    assert_eq!(sample(&broken, "citysoc_siem_ingest_batches_total{outcome=\"read_only\"}"), 1.0);
}

/// A sensor that goes away while its batch is being stored (killed, or the
/// link drops) must be able to send that batch again: the id is not left in
/// flight, and the retry finds it stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_sender_went_away_can_be_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), 4);
    // Large enough that storing it outlasts the sender's patience.
    let mut body = String::new();
    for i in 0..20_000 {
        body.push_str(&format!(
            "{{\"_log\":\"conn\",\"ts\":1700000000.{i:05},\"uid\":\"C{i}\",\"id.orig_h\":\"10.1.{}.{}\"}}\n",
            i / 250,
            i % 250
        ));
    }
    let gone = tokio::time::timeout(
        std::time::Duration::from_millis(5),
        app.clone().oneshot(ingest(Some("sensor-secret"), Some("b-gone"), body.clone().into_bytes(), false)),
    )
    .await;
    assert!(gone.is_err(), "the first attempt was to be abandoned before its answer");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let r = loop {
        let (s, r) = call(&app, ingest(Some("sensor-secret"), Some("b-gone"), body.clone().into_bytes(), false)).await;
        if s == StatusCode::OK {
            break r;
        }
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{r}");
        assert!(std::time::Instant::now() < deadline, "the batch id stayed busy after its sender went away");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(r["duplicate"] == true || r["accepted"] == 20_000, "{r}");
    let (_, found) = call(&app, get("/api/v1/search?q=_log:conn&limit=1", "reader-secret")).await;
    assert_eq!(found["total"], 20_000, "stored once");
}
