//! `citysoc backup` of a SIEM that keeps ingesting, and `citysoc restore`:
//! everything acknowledged before the backup began comes back (records,
//! triage, users, the audit trail with its chain whole); a restore does not
//! overwrite a data directory unasked, nor one a server runs on, and a
//! damaged archive is refused before anything is written.

mod common;

use common::{citysoc, free_port, sha256_hex, Server};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RECORDS: usize = 20;

fn tokens(dir: &Path) -> PathBuf {
    let path = dir.join("tokens.toml");
    std::fs::write(
        &path,
        format!(
            "[sensors]\ns = \"{}\"\n[readers]\nr = \"{}\"\n[admins]\na = \"{}\"\n",
            sha256_hex("sensor"),
            sha256_hex("reader"),
            sha256_hex("admin")
        ),
    )
    .unwrap();
    path
}

fn serve(port: u16, data: &Path, tokens: &Path) -> Server {
    let s = Server(
        citysoc()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data)
            .arg("--tokens")
            .arg(tokens)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while ureq::get(&format!("http://127.0.0.1:{port}/api/v1/fields")).call().is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "the SIEM did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

/// Within every class's default retention (which runs when a server starts).
fn t0() -> f64 {
    (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 86_400) as f64
}

fn alert_id(b: usize) -> String {
    format!("A{b:016x}")
}

/// Batch `b`: its conn records and one alert.
fn batch(t0: f64, b: usize) -> String {
    let mut body: String = (0..RECORDS)
        .map(|i| {
            let ts = t0 + (b * RECORDS + i) as f64;
            format!("{{\"_log\":\"conn\",\"ts\":{ts},\"uid\":\"B{b}R{i}\",\"orig_bytes\":{b},\"resp_bytes\":{i}}}\n")
        })
        .collect();
    let ts = t0 + (b * RECORDS) as f64;
    body.push_str(&format!(
        "{{\"_log\":\"alerts\",\"ts\":{ts},\"id\":\"{}\",\"severity\":\"high\",\"rule.source\":\"sigma\",\
         \"rule.id\":\"r{b}\",\"rule.title\":\"Rule {b}\",\"rule.version\":\"v\",\"sensor\":\"s\",\
         \"id.orig_h\":\"10.0.0.1\",\"summary\":\"x\",\"count\":1,\"first_seen\":{ts},\"last_seen\":{ts}}}\n",
        alert_id(b)
    ));
    body
}

fn post_batch(port: u16, t0: f64, b: usize) -> bool {
    let r = ureq::post(&format!("http://127.0.0.1:{port}/api/v1/ingest"))
        .set("Authorization", "Bearer sensor")
        .set("X-Batch-Id", &format!("run1-{b}"))
        .timeout(Duration::from_secs(20))
        .send_string(&batch(t0, b));
    match r {
        Ok(resp) => {
            let v: Value = resp.into_json().unwrap();
            assert!(v["rejected"].as_array().unwrap().is_empty(), "{v}");
            true
        }
        Err(_) => false,
    }
}

fn get(port: u16, token: &str, path_and_query: &str) -> Value {
    ureq::get(&format!("http://127.0.0.1:{port}{path_and_query}"))
        .set("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap_or_else(|e| panic!("{path_and_query}: {e}"))
        .into_json()
        .unwrap()
}

fn triage(port: u16, b: usize) {
    ureq::post(&format!("http://127.0.0.1:{port}/api/v1/alerts/{}/triage", alert_id(b)))
        .set("Authorization", "Bearer reader")
        .send_json(serde_json::json!({"status": "in_progress", "comment": format!("looked at {b}")}))
        .unwrap();
}

/// Every conn record of the store, by uid (each seen once).
fn conn_records(port: u16) -> BTreeMap<String, Value> {
    let v = get(port, "reader", "/api/v1/search?q=_log:conn&limit=10000&sort=ts&order=asc");
    let hits = v["hits"].as_array().unwrap();
    assert_eq!(v["total"].as_u64().unwrap() as usize, hits.len(), "more than one page");
    let mut out = BTreeMap::new();
    for h in hits {
        let uid = h["uid"].as_str().unwrap().to_string();
        assert!(out.insert(uid.clone(), h.clone()).is_none(), "{uid} stored twice");
    }
    out
}

fn run(cmd: &mut std::process::Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn a_backup_of_a_busy_siem_restores_everything_acknowledged_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let tokens = tokens(tmp.path());
    let data = tmp.path().join("data");
    let port = free_port();
    let server = serve(port, &data, &tokens);
    let t0 = t0();

    // A sensor-like client ships batch after batch until told to stop.
    let acked = Arc::new(Mutex::new(Vec::<usize>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (acked, stop) = (Arc::clone(&acked), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut b = 0;
            while !stop.load(Ordering::Relaxed) {
                if post_batch(port, t0, b) {
                    acked.lock().unwrap().push(b);
                    b += 1;
                }
            }
        })
    };
    let start = Instant::now();
    while acked.lock().unwrap().len() < 30 {
        assert!(start.elapsed() < Duration::from_secs(60), "ingest too slow");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Triage (audited) on a few stored alerts, while ingest goes on.
    let triaged = [0, 3, 7, 11];
    for b in triaged {
        triage(port, b);
    }
    // What is acknowledged when a backup starts must be in it. Backups are
    // taken until one ran while a batch was acknowledged: that one is
    // restored.
    let mut n = 0;
    let (archive, acked_before, audit_before, users_before) = loop {
        n += 1;
        assert!(n <= 50, "no backup overlapped an acknowledged batch");
        let acked_before: Vec<usize> = acked.lock().unwrap().clone();
        let audit_before = std::fs::read_to_string(data.join("audit.log")).unwrap();
        let users_before: Value =
            serde_json::from_str(&std::fs::read_to_string(data.join("console-users.json")).unwrap()).unwrap();
        let archive = tmp.path().join(format!("soc-{n}.tar"));
        let (ok, err) = run(citysoc().args(["backup", "--data"]).arg(&data).arg("--to").arg(&archive));
        assert!(ok, "{err}");
        assert!(err.contains("saved"), "{err}");
        // The server was not paused: ingest went on while the backup ran.
        if acked.lock().unwrap().len() > acked_before.len() {
            eprintln!("backup {n} overlapped ingest ({} batches acknowledged before it)", acked_before.len());
            break (archive, acked_before, audit_before, users_before);
        }
    };
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    drop(server);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the archive holds keys and password hashes");
    }

    let restored = tmp.path().join("restored");
    let (ok, err) = run(citysoc().args(["restore", "--from"]).arg(&archive).arg("--data").arg(&restored));
    assert!(ok, "{err}");
    assert!(err.contains("the chain verifies"), "{err}");

    // The audit trail: whole, and holding every entry written before.
    let audit_after = std::fs::read_to_string(restored.join("audit.log")).unwrap();
    assert!(audit_after.starts_with(&audit_before), "entries acknowledged before the backup are missing");
    let (entries, _) = siem::audit::verify(&restored.join("audit.log")).unwrap();
    assert!(entries as usize >= audit_before.lines().count());
    // Users as they were.
    let users_after: Value =
        serde_json::from_str(&std::fs::read_to_string(restored.join("console-users.json")).unwrap()).unwrap();
    assert_eq!(users_after, users_before);

    // The restored directory served: every acknowledged record, as sent.
    let port2 = free_port();
    let _server2 = serve(port2, &restored, &tokens);
    let records = conn_records(port2);
    for &b in &acked_before {
        for i in 0..RECORDS {
            let r = records.get(&format!("B{b}R{i}")).unwrap_or_else(|| panic!("record B{b}R{i} lost"));
            assert_eq!(r["orig_bytes"], b, "{r}");
            assert_eq!(r["resp_bytes"], i, "{r}");
            assert_eq!(r["ts"].as_f64().unwrap(), t0 + (b * RECORDS + i) as f64);
        }
    }
    // Batches are whole: a batch is in the backup with all its records or not at all.
    let mut per_batch: BTreeMap<usize, usize> = BTreeMap::new();
    for uid in records.keys() {
        let b: usize = uid[1..uid.find('R').unwrap()].parse().unwrap();
        *per_batch.entry(b).or_default() += 1;
    }
    assert!(per_batch.values().all(|&n| n == RECORDS), "{per_batch:?}");
    let sent: BTreeSet<usize> = acked.lock().unwrap().iter().copied().collect();
    assert!(per_batch.keys().all(|b| sent.contains(b) || *b == sent.len()), "records of batches never sent");
    // Alerts and their triage.
    let alerts = get(port2, "reader", "/api/v1/search?q=_log:alerts&limit=10000");
    let ids: BTreeSet<&str> = alerts["hits"].as_array().unwrap().iter().filter_map(|a| a["id"].as_str()).collect();
    for &b in &acked_before {
        assert!(ids.contains(alert_id(b).as_str()), "alert of batch {b} lost");
    }
    let in_progress = get(port2, "reader", "/api/v1/alerts?status=in_progress&limit=1000");
    let mut got: Vec<String> =
        in_progress["hits"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()).collect();
    got.sort();
    let mut want: Vec<String> = triaged.iter().map(|&b| alert_id(b)).collect();
    want.sort();
    assert_eq!(got, want);
    // The restored server writes on: a new batch is stored and audited.
    assert!(post_batch(port2, t0, 100_000));
    assert_eq!(conn_records(port2).len(), records.len() + RECORDS);
    siem::audit::verify(&restored.join("audit.log")).unwrap();
}

/// A stopped SIEM's data directory with some of everything in it.
fn stopped_siem(dir: &Path) -> PathBuf {
    let tokens = tokens(dir);
    let data = dir.join("data");
    let port = free_port();
    let _s = serve(port, &data, &tokens);
    let t0 = t0();
    for b in 0..3 {
        assert!(post_batch(port, t0, b));
    }
    triage(port, 1);
    data
}

#[test]
fn a_restore_replaces_a_data_directory_only_when_told_and_never_under_a_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = stopped_siem(tmp.path());
    // An earlier version of a rule file the console kept.
    let version = Path::new("rule-versions/sigma__web__web_sqli.yml/1765000000000-0123456789abcdef");
    std::fs::create_dir_all(data.join(version).parent().unwrap()).unwrap();
    std::fs::write(data.join(version), "title: as it was\n").unwrap();
    let archive = tmp.path().join("soc.tar");
    let (ok, err) = run(citysoc().args(["backup", "--data"]).arg(&data).arg("--to").arg(&archive));
    assert!(ok, "{err}");
    // Not over an existing archive.
    let (ok, err) = run(citysoc().args(["backup", "--data"]).arg(&data).arg("--to").arg(&archive));
    assert!(!ok && err.contains("exists already"), "{err}");
    // Nor inside the folder it saves.
    let (ok, err) = run(citysoc().args(["backup", "--data"]).arg(&data).arg("--to").arg(data.join("soc.tar")));
    assert!(!ok && err.contains("inside the data directory"), "{err}");

    let target = tmp.path().join("other");
    std::fs::create_dir(&target).unwrap();
    // The data directory named by the server's configuration.
    let serve_toml = tmp.path().join("serve.toml");
    std::fs::write(&serve_toml, format!("data = {:?}\n", target.display().to_string())).unwrap();
    std::fs::write(target.join("keep.txt"), "precious").unwrap();
    let (ok, err) = run(citysoc().args(["restore", "--from"]).arg(&archive).arg("--config").arg(&serve_toml));
    assert!(!ok && err.contains("is not empty") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(target.join("keep.txt")).unwrap(), "precious");

    // A server running on the target: refused even with --force.
    let port = free_port();
    let server = serve(port, &target, &tokens(tmp.path()));
    // A partition exists (and is locked) once something is stored.
    assert!(post_batch(port, t0(), 0));
    let (ok, err) = run(citysoc().args(["restore", "--force", "--from"]).arg(&archive).arg("--data").arg(&target));
    assert!(!ok && err.contains("in use by a running server"), "{err}");
    drop(server);

    let (ok, err) =
        run(citysoc().args(["restore", "--force", "--from"]).arg(&archive).arg("--config").arg(&serve_toml));
    assert!(ok, "{err}");
    assert!(!target.join("keep.txt").exists(), "the old contents were not replaced");
    assert_eq!(std::fs::read_to_string(target.join(version)).unwrap(), "title: as it was\n");
    assert_eq!(
        std::fs::read(target.join("console-users.json")).unwrap(),
        std::fs::read(data.join("console-users.json")).unwrap()
    );
    assert_eq!(std::fs::read(target.join("audit.log")).unwrap(), std::fs::read(data.join("audit.log")).unwrap());
    let leftovers: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".restore"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn a_damaged_archive_is_refused_naming_the_file_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let data = stopped_siem(tmp.path());
    let archive = tmp.path().join("soc.tar");
    let (ok, err) = run(citysoc().args(["backup", "--data"]).arg(&data).arg("--to").arg(&archive));
    assert!(ok, "{err}");
    // One byte of the users file changed inside the archive.
    let users = std::fs::read(data.join("console-users.json")).unwrap();
    let mut bytes = std::fs::read(&archive).unwrap();
    let at = bytes.windows(users.len()).position(|w| w == users.as_slice()).expect("the users file in the archive");
    bytes[at + users.len() / 2] ^= 0x20;
    let damaged = tmp.path().join("damaged.tar");
    std::fs::write(&damaged, &bytes).unwrap();
    let target = tmp.path().join("restored");
    let (ok, err) = run(citysoc().args(["restore", "--from"]).arg(&damaged).arg("--data").arg(&target));
    assert!(!ok, "{err}");
    assert!(err.contains("console-users.json") && err.contains("checksum"), "{err}");
    assert!(err.contains("nothing was restored"), "{err}");
    assert!(!target.exists() || std::fs::read_dir(&target).unwrap().next().is_none(), "files written");

    // Cut short: the manifest is missing.
    let cut = tmp.path().join("cut.tar");
    std::fs::write(&cut, &std::fs::read(&archive).unwrap()[..at + 512]).unwrap();
    let (ok, err) = run(citysoc().args(["restore", "--from"]).arg(&cut).arg("--data").arg(&target));
    assert!(!ok && err.contains("nothing was restored"), "{err}");
    assert!(!target.exists() || std::fs::read_dir(&target).unwrap().next().is_none(), "files written");

    // The archive as written restores.
    let (ok, err) = run(citysoc().args(["restore", "--from"]).arg(&archive).arg("--data").arg(&target));
    assert!(ok, "{err}");
}
