//! Evidence packets: every alert of the replay suite can be answered with
//! exactly the packets of its flows, also after the ring rotated them out
//! (the alert pinned them), and the ring keeps to its budget.

use citysoc::detection::{alert_flows, DetectSettings, MaybeDetecting};
use citysoc::replay::load_cases;
use citysoc::sensor_setup::SensorConfig;
use schema::{FlowUid, Time};
use sensor::capture::SourceSpec;
use sensor::pipeline::{self, Controls, Hooks};
use sensor::ring::{flow_packets, read_pcap, ring_bytes, Packet, Pins, RingConfig};
use sensor::worker::RingSetup;
use serde_json::Value;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (proto, a, pa, b, pb) of an Ethernet/IP TCP or UDP frame, sorted so both
/// directions give the same key.
type FlowKey = (u8, (IpAddr, u16), (IpAddr, u16));

fn five_tuple(frame: &[u8]) -> Option<FlowKey> {
    let mut off = 12;
    let mut et = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
    while et == 0x8100 || et == 0x88a8 {
        off += 4;
        et = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
    }
    let ip = frame.get(off + 2..)?;
    let (proto, src, dst, l4): (u8, IpAddr, IpAddr, &[u8]) = match et {
        0x0800 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let s: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (*ip.get(9)?, s.into(), d.into(), ip.get(ihl..)?)
        }
        0x86dd => {
            let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (*ip.get(6)?, s.into(), d.into(), ip.get(40..)?)
        }
        _ => return None,
    };
    if proto != 6 && proto != 17 {
        return None;
    }
    let sp = u16::from_be_bytes([*l4.first()?, *l4.get(1)?]);
    let dp = u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?]);
    let (a, b) = if (src, sp) <= (dst, dp) { ((src, sp), (dst, dp)) } else { ((dst, dp), (src, sp)) };
    Some((proto, a, b))
}

fn run(capture: &Path, logs: &Path, ring: RingSetup, local_nets: Vec<String>) -> Vec<Value> {
    let settings = DetectSettings { rules_dir: Some(root().join("rules")), ..Default::default() };
    let rules = settings.load("sensor").unwrap();
    let cfg = SensorConfig { uid_seed: Some(1), local_nets, ..Default::default() };
    let mut pcfg = cfg.pipeline();
    citysoc::detection::attach(&mut pcfg, &rules);
    let pins = Arc::clone(&ring.pins);
    let ring_cfg = Arc::clone(&ring.cfg);
    pcfg.worker.ring = Some(ring);
    let writer = cfg.log_writer(logs).unwrap();
    let sink = cfg.with_inventory(MaybeDetecting::new(writer, Some(rules)).with_pins(Some(Arc::clone(&pins))));
    let (sum, _) =
        pipeline::run(&SourceSpec::File(capture.to_path_buf()), &pcfg, sink, Controls::default(), Hooks::default())
            .unwrap();
    assert!(sum.source_error.is_none());
    sensor::ring::enforce_dir(&ring_cfg, &pins).unwrap();
    std::fs::read_to_string(logs.join("alerts.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ring(dir: &Path, segment: u64, budget: u64) -> RingSetup {
    RingSetup {
        cfg: Arc::new(RingConfig {
            dir: dir.to_path_buf(),
            segment_bytes: segment,
            budget_bytes: budget,
            max_age_secs: 0,
            flow_bytes: 0,
            hold_secs: 900,
            headers_only: None,
        }),
        pins: Arc::new(Pins::default()),
    }
}

/// The packets of each flow named by alerts, as the original capture has them.
fn check_alerts(case: &str, capture: &Path, logs: &Path, ring_dir: &Path, alerts: &[Value], max_span: f64) -> usize {
    let (_, original) = read_pcap(capture).unwrap();
    let conns: HashMap<String, Value> = std::fs::read_to_string(logs.join("conn.log"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|c| (c["uid"].as_str().unwrap().to_string(), c))
        .collect();
    let mut checked = 0;
    for a in alerts {
        let rec: schema::AlertRecord = alert_record(a);
        for uid in alert_flows(&rec) {
            let Some(c) = conns.get(&uid.to_string()) else { continue };
            let proto = match c["proto"].as_str() {
                Some("tcp") => 6,
                Some("udp") => 17,
                _ => continue,
            };
            if c.get("tunnel_parents").is_some() {
                continue;
            }
            let ep =
                |h: &str, p: &str| (c[h].as_str().unwrap().parse::<IpAddr>().unwrap(), c[p].as_u64().unwrap() as u16);
            let (x, y) = (ep("id.orig_h", "id.orig_p"), ep("id.resp_h", "id.resp_p"));
            let key = if x <= y { (proto, x, y) } else { (proto, y, x) };
            let want: Vec<&Packet> = original.iter().filter(|p| five_tuple(&p.data) == Some(key)).collect();
            let (_, got) = flow_packets(ring_dir, uid, None, None).unwrap();
            // A flow that outlived the ring's span (its alert comes when it
            // ends) keeps its latest packets: a suffix, never a mix.
            let outlived = c["duration"].as_f64().unwrap_or(0.0) > max_span;
            if outlived {
                assert!(!got.is_empty() && got.len() <= want.len(), "{case}: flow {uid}");
            } else {
                assert_eq!(got.len(), want.len(), "{case}: flow {uid} of {}", a["rule.id"]);
            }
            let want = &want[want.len() - got.len()..];
            for (g, w) in got.iter().zip(want) {
                assert_eq!((g.ts, &g.data), (w.ts, &w.data), "{case}: flow {uid}");
            }
            checked += 1;
        }
    }
    checked
}

fn alert_record(a: &Value) -> schema::AlertRecord {
    let uid = a["uid"].as_str().and_then(detector::detect::parse_uid);
    let evidence = a["evidence"].as_array().map(|v| v.iter().filter_map(|e| e.as_str().map(String::from)).collect());
    schema::AlertRecord {
        ts: Time(0),
        id: String::new(),
        severity: schema::Severity::Low,
        rule_source: schema::RuleSource::Sigma,
        rule_id: String::new(),
        rule_title: String::new(),
        rule_version: String::new(),
        mitre_attack: vec![],
        sensor: String::new(),
        uid,
        community_id: None,
        orig_h: None,
        orig_p: None,
        resp_h: None,
        resp_p: None,
        summary: String::new(),
        summary_key: None,
        summary_args: schema::SummaryArgs::default(),
        matched: vec![],
        evidence: evidence.unwrap_or_default(),
        confidence: None,
        count: 1,
        first_seen: Time(0),
        last_seen: Time(0),
    }
}

#[test]
fn every_alerted_flow_comes_back_with_exactly_its_packets() {
    let cases = load_cases(&root().join("replay-pcaps")).unwrap();
    let mut checked = 0;
    for case in cases.iter().filter(|c| !c.spec.alert.is_empty()) {
        let tmp = tempfile::tempdir().unwrap();
        let (logs, ring_dir) = (tmp.path().join("logs"), tmp.path().join("ring"));
        let nets: Vec<String> = case
            .spec
            .sensor
            .get("local_nets")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
            .unwrap_or_default();
        let alerts = run(&case.capture(), &logs, ring(&ring_dir, 64 << 20, 1 << 30), nets);
        checked += check_alerts(&case.name, &case.capture(), &logs, &ring_dir, &alerts, f64::INFINITY);
    }
    assert!(checked >= 40, "{checked} flows checked");
}

#[test]
fn pinned_flows_survive_rotation_and_the_ring_keeps_its_budget() {
    let case = root().join("replay-pcaps/anomaly-beacon");
    let tmp = tempfile::tempdir().unwrap();
    let (logs, ring_dir) = (tmp.path().join("logs"), tmp.path().join("ring"));
    // 8 KiB segments in a 32 KiB budget: the capture is ~90 KiB, so most
    // segments are rotated out while the replay runs.
    let r = ring(&ring_dir, 8 << 10, 32 << 10);
    let alerts = run(&case.join("capture.pcap"), &logs, r, vec!["10.0.0.0/8".into()]);
    assert!(ring_bytes(&ring_dir) <= 32 << 10, "{}", ring_bytes(&ring_dir));
    assert!(ring_dir.join("evidence").is_dir(), "nothing was carved");
    // The ring spans ~40 minutes of this capture; the two-hour connection
    // outlives it.
    let checked = check_alerts("anomaly-beacon", &case.join("capture.pcap"), &logs, &ring_dir, &alerts, 3600.0);
    assert!(checked >= 2, "{checked}");
    // A flow nobody alerted on is gone with its segments.
    let conns = std::fs::read_to_string(logs.join("conn.log")).unwrap();
    let first: Value = serde_json::from_str(conns.lines().next().unwrap()).unwrap();
    let uid: FlowUid = detector::detect::parse_uid(first["uid"].as_str().unwrap()).unwrap();
    let pinned = alerts.iter().any(|a| alert_flows(&alert_record(a)).contains(&uid));
    if !pinned && first["ts"].as_f64().unwrap() < 1_700_000_100.0 {
        assert!(flow_packets(&ring_dir, uid, None, None).unwrap().1.is_empty());
    }
}

#[test]
fn an_alert_exports_as_a_signed_bundle_with_its_packets() {
    use siem::api::{AppState, EvidenceParams, PcapParams};
    let case = root().join("replay-pcaps/web-attacks");
    let tmp = tempfile::tempdir().unwrap();
    let (logs, ring_dir, data) = (tmp.path().join("logs"), tmp.path().join("ring"), tmp.path().join("data"));
    let alerts = run(
        &case.join("capture.pcap"),
        &logs.join("web-attacks"),
        ring(&ring_dir, 64 << 20, 1 << 30),
        vec!["10.0.0.0/8".into()],
    );
    let store = Arc::new(siem::store::tantivy::TantivyStore::open(&data, Default::default()).unwrap());
    citysoc::replay::ingest_logs(store.as_ref(), &logs, "sensor").unwrap();
    let mut st = AppState::open(store, None, &data, 1).unwrap();
    st.packets = Some(Arc::new(citysoc::evidence::RingPackets { dir: ring_dir.clone() }));
    let a = alerts.iter().find(|a| a["uid"].is_string()).unwrap();
    let (id, uid) = (a["id"].as_str().unwrap(), a["uid"].as_str().unwrap());
    // The pcap endpoint's answer is the ring's packets of the flow.
    let (_, pcap) =
        st.flow_pcap("responder1", "127.0.0.1", PcapParams { uid: Some(uid.into()), ..Default::default() }).unwrap();
    let (_, want) = flow_packets(&ring_dir, detector::detect::parse_uid(uid).unwrap(), None, None).unwrap();
    let mut expect = Vec::new();
    sensor::ring::write_pcap(&mut expect, 1, &want).unwrap();
    assert_eq!(pcap, expect);
    // By Community ID: the same flow found through conn.log.
    let conn = std::fs::read_to_string(logs.join("web-attacks/conn.log")).unwrap();
    let c: Value = conn.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|c| c["uid"] == uid).unwrap();
    let cid = c["community_id"].as_str().unwrap().to_string();
    let (_, by_cid) =
        st.flow_pcap("responder1", "127.0.0.1", PcapParams { community_id: Some(cid), ..Default::default() }).unwrap();
    assert_eq!(by_cid, expect);
    // A flow with nothing kept is a clear 404, not an empty file.
    let e = st
        .flow_pcap(
            "responder1",
            "127.0.0.1",
            PcapParams { uid: Some("CAAAAAAAAAAAAAAAA".into()), ..Default::default() },
        )
        .unwrap_err();
    assert!(format!("{e:?}").contains("no packets"), "{e:?}");
    // The bundle verifies against the SOC's key and carries the pcap.
    let (name, bundle) = st
        .export_evidence("responder1", "127.0.0.1", EvidenceParams { alert: Some(id.into()), incident: None })
        .unwrap();
    assert_eq!(name, format!("evidence-{id}.tar"));
    let key = std::fs::read_to_string(data.join("evidence-key.pub")).unwrap();
    let v = siem::evidence::verify(&bundle, Some(&key)).unwrap();
    let names: Vec<&str> =
        v.manifest["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(names.contains(&format!("flows/{uid}.pcap").as_str()) && names.contains(&"records.jsonl"), "{names:?}");
    let at = bundle.windows(expect.len()).position(|w| w == expect.as_slice()).expect("the pcap is in the bundle");
    // Tampered: one byte of the packets.
    let mut t = bundle.clone();
    t[at + expect.len() - 1] ^= 1;
    let path = tmp.path().join("tampered.tar");
    std::fs::write(&path, &t).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_citysoc"))
        .args(["evidence", "verify"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("was changed"), "{}", String::from_utf8_lossy(&out.stdout));
    std::fs::write(&path, &bundle).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_citysoc"))
        .args(["evidence", "verify"])
        .arg(&path)
        .arg("--key")
        .arg(data.join("evidence-key.pub"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    // Every view and export is in the audit trail.
    let trail = st.audit.as_ref().unwrap().read(None, None, 1000).unwrap();
    let actions: Vec<&str> = trail.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"pcap") && actions.contains(&"evidence.export"), "{actions:?}");
}

#[test]
fn a_bpf_filter_over_a_time_range_fetches_from_the_ring() {
    use siem::api::{AppState, PcapParams};
    let case = root().join("replay-pcaps/port-scan");
    let tmp = tempfile::tempdir().unwrap();
    let (logs, ring_dir, data) = (tmp.path().join("logs"), tmp.path().join("ring"), tmp.path().join("data"));
    run(&case.join("capture.pcap"), &logs, ring(&ring_dir, 64 << 20, 1 << 30), vec!["10.0.0.0/8".into()]);
    let store = Arc::new(siem::store::tantivy::TantivyStore::open(&data, Default::default()).unwrap());
    let mut st = AppState::open(store, None, &data, 1).unwrap();
    st.packets = Some(Arc::new(citysoc::evidence::RingPackets { dir: ring_dir.clone() }));
    let p = |f: &str| PcapParams {
        filter: Some(f.into()),
        from: Some(1_699_999_999.0),
        to: Some(1_700_000_100.0),
        ..Default::default()
    };
    let (_, pcap) =
        st.flow_pcap("responder1", "127.0.0.1", p("src host 203.0.113.77 and tcp[tcpflags] & tcp-syn != 0")).unwrap();
    let path = tmp.path().join("f.pcap");
    std::fs::write(&path, &pcap).unwrap();
    // The vertical scan's 40 SYNs, nothing else.
    let (_, pkts) = read_pcap(&path).unwrap();
    assert_eq!(pkts.len(), 40);
    let e = st.flow_pcap("responder1", "127.0.0.1", p("src hots 1.2.3.4")).unwrap_err();
    assert!(format!("{e:?}").contains("filter"), "{e:?}");
    let e = st
        .flow_pcap("responder1", "127.0.0.1", PcapParams { filter: Some("tcp".into()), ..Default::default() })
        .unwrap_err();
    assert!(format!("{e:?}").contains("time range"), "{e:?}");
}

/// The demo's ring: every bundled capture replayed into one ring (each
/// starts at the same time), every record and alert in one store, as
/// `citysoc demo` builds them. Every flow an alert names answers the pcap
/// endpoint with exactly the packets the ring keeps of it, which are the
/// evidence bundle's. Flows of later captures were once "not kept": the
/// ring bounded a segment by the first packet of the next one.
#[test]
fn every_flow_a_demo_alert_names_comes_back_from_the_pcap_endpoint() {
    use siem::api::{AppState, PcapParams};
    use siem::store::Store;
    let tmp = tempfile::tempdir().unwrap();
    let (logs, ring_dir, data) = (tmp.path().join("logs"), tmp.path().join("ring"), tmp.path().join("data"));
    let settings = DetectSettings { rules_dir: Some(root().join("rules")), ..Default::default() };
    let rules = settings.load("demo-sensor").unwrap();
    for case in load_cases(&root().join("replay-pcaps")).unwrap() {
        citysoc::replay::run_case_with_ring(&case, &logs.join(&case.name), 1, Some(&rules), Some(&ring_dir)).unwrap();
    }
    let store = Arc::new(siem::store::tantivy::TantivyStore::open(&data, Default::default()).unwrap());
    citysoc::replay::ingest_logs(store.as_ref(), &logs, "demo-sensor").unwrap();
    let mut req =
        siem::store::SearchRequest::new(siem::query::parse("_log:alerts", &siem::schema::Catalog::new()).unwrap());
    req.limit = 1000;
    let alerts = store.search(&req).unwrap().hits;
    let mut st = AppState::open(store, None, &data, 1).unwrap();
    st.packets = Some(Arc::new(citysoc::evidence::RingPackets { dir: ring_dir.clone() }));
    let mut uids: Vec<String> = Vec::new();
    for a in &alerts {
        uids.extend(a["uid"].as_str().map(String::from));
        for e in a["evidence"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            uids.extend(e.strip_prefix("conn:").map(String::from));
        }
    }
    uids.sort();
    uids.dedup();
    let (mut checked, mut missing) = (0, Vec::new());
    for u in &uids {
        let (dlt, want) = flow_packets(&ring_dir, detector::detect::parse_uid(u).unwrap(), None, None).unwrap();
        if want.is_empty() {
            continue;
        }
        let mut expect = Vec::new();
        sensor::ring::write_pcap(&mut expect, dlt, &want).unwrap();
        match st.flow_pcap("responder1", "127.0.0.1", PcapParams { uid: Some(u.clone()), ..Default::default() }) {
            Ok((_, pcap)) => {
                assert_eq!(pcap, expect, "{u}");
                checked += 1;
            }
            Err(e) => missing.push(format!("{u}: {e:?}")),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} flows answered without their packets: {missing:?}",
        missing.len(),
        checked + missing.len()
    );
    assert!(checked >= 40, "{checked} flows checked of {} named", uids.len());
}
