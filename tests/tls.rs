//! Sensors ship to the SOC over TLS: verified against a CA, with mutual TLS,
//! or with the SOC's certificate pinned. Each wrong certificate is refused
//! with the reason, nothing of that sensor is stored, and the SOC keeps
//! serving the others. Certificates are made by the test with rcgen.

mod common;

use common::{citysoc, root, Server};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(dir: &Path, name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let cert = p.self_signed(&key).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    Ca { cert, key }
}

/// A certificate for `names` signed by `ca` (self-signed without one),
/// written as `<file>.pem` and `<file>.key`; `expired` dates it in 2020.
fn leaf(
    dir: &Path,
    file: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    ca: Option<&Ca>,
    expired: bool,
) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, file);
    p.extended_key_usages = vec![usage];
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = match ca {
        Some(ca) => p.signed_by(&key, &ca.cert, &ca.key).unwrap(),
        None => p.self_signed(&key).unwrap(),
    };
    std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
    cert.der().to_vec()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `citysoc serve` over HTTPS; `client_ca` turns on mutual TLS.
fn serve(dir: &Path, data: &str, cert: &str, client_ca: Option<&str>) -> (Server, String) {
    let port = free_port();
    let mut cmd = citysoc();
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir.join(data))
        .arg("--tokens")
        .arg(dir.join("tokens.toml"))
        .arg("--tls-cert")
        .arg(dir.join(format!("{cert}.pem")))
        .arg("--tls-key")
        .arg(dir.join(format!("{cert}.key")))
        .stderr(std::fs::File::create(dir.join(format!("{data}.stderr"))).unwrap());
    if let Some(ca) = client_ca {
        cmd.arg("--tls-client-ca").arg(dir.join(format!("{ca}.pem")));
    }
    let server = Server(cmd.spawn().unwrap());
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "the SIEM did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, format!("https://127.0.0.1:{port}"))
}

/// Replays a small capture shipping to `url` with the given TLS flags.
fn sensor(dir: &Path, logs: &str, url: &str, tls: &[&str]) -> Output {
    let mut cmd = citysoc();
    cmd.args(["sensor", "--seed", "1", "--ship-wait-secs", "20", "--rules"])
        .arg(root().join("rules"))
        .arg("--read")
        .arg(root().join("replay-pcaps/dns/capture.pcap"))
        .arg("--log-dir")
        .arg(dir.join(logs))
        .args(["--ship", url, "--token-file"])
        .arg(dir.join("token"));
    for a in tls {
        match a.strip_prefix('@') {
            Some(f) => cmd.arg(dir.join(f)),
            None => cmd.arg(a),
        };
    }
    cmd.output().unwrap()
}

/// Records stored under the sensor's name (stats reports aside), read
/// over TLS as a reader.
fn stored(url: &str, pin_or_ca: citysoc::tls::ClientTls) -> u64 {
    let agent = pin_or_ca.agent(Duration::from_secs(20)).unwrap();
    let r: serde_json::Value = agent
        .get(&format!("{url}/api/v1/search"))
        .query("q", "_sensor:edge-1 AND NOT _log:stats")
        .set("Authorization", "Bearer reader-secret")
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    r["total"].as_u64().unwrap()
}

fn local_records(dir: &Path, logs: &str) -> u64 {
    std::fs::read_dir(dir.join(logs))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .filter(|e| {
            // Stats reports ship too but are stored in their own class.
            let n = e.file_name().to_string_lossy().to_string();
            n != "stats.log"
        })
        .map(|e| std::fs::read_to_string(e.path()).unwrap().lines().count() as u64)
        .sum()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn sensors_ship_over_tls_and_wrong_certificates_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(
        d.join("tokens.toml"),
        format!(
            "[sensors]\nedge-1 = \"{}\"\n[readers]\nanalyst = \"{}\"\n[admins]\nchief = \"{}\"\n",
            common::sha256_hex("sensor-secret"),
            common::sha256_hex("reader-secret"),
            common::sha256_hex("admin-secret")
        ),
    )
    .unwrap();
    std::fs::write(d.join("token"), "sensor-secret\n").unwrap();
    let city = ca(d, "city-ca");
    let stranger = ca(d, "stranger-ca");
    let soc_der = leaf(d, "soc", &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth, Some(&city), false);
    leaf(d, "edge-1", &["edge-1"], ExtendedKeyUsagePurpose::ClientAuth, Some(&city), false);
    leaf(d, "edge-old", &["edge-1"], ExtendedKeyUsagePurpose::ClientAuth, Some(&city), true);
    leaf(d, "edge-fake", &["edge-1"], ExtendedKeyUsagePurpose::ClientAuth, Some(&stranger), false);
    let reader_tls = citysoc::tls::ClientTls {
        ca: Some(d.join("city-ca.pem")),
        cert: Some(d.join("edge-1.pem")),
        key: Some(d.join("edge-1.key")),
        ..Default::default()
    };

    // Mutual TLS: the sensor trusts the city's CA and presents its own.
    let (_soc, url) = serve(d, "data", "soc", Some("city-ca"));
    let mtls = ["--ship-ca", "@city-ca.pem", "--ship-cert", "@edge-1.pem", "--ship-key", "@edge-1.key"];
    let out = sensor(d, "ok", &url, &mtls);
    assert!(out.status.success(), "{}", stderr(&out));
    let want = local_records(d, "ok");
    assert!(want > 10);
    assert_eq!(stored(&url, reader_tls.clone()), want, "every record stored once over TLS");

    // Each wrong certificate: refused, the reason said, nothing stored.
    let cases: [(&str, Vec<&str>, &[&str]); 4] = [
        ("no-cert", vec!["--ship-ca", "@city-ca.pem"], &["CertificateRequired", "HandshakeFailure"]),
        (
            "expired",
            vec!["--ship-ca", "@city-ca.pem", "--ship-cert", "@edge-old.pem", "--ship-key", "@edge-old.key"],
            &["CertificateExpired", "expired"],
        ),
        (
            "stranger",
            vec!["--ship-ca", "@city-ca.pem", "--ship-cert", "@edge-fake.pem", "--ship-key", "@edge-fake.key"],
            &["UnknownCA", "BadCertificate"],
        ),
        (
            "untrusting",
            vec!["--ship-ca", "@stranger-ca.pem", "--ship-cert", "@edge-1.pem", "--ship-key", "@edge-1.key"],
            &["UnknownIssuer"],
        ),
    ];
    for (name, flags, why) in cases {
        let out = sensor(d, name, &url, &flags);
        let err = stderr(&out);
        assert!(!out.status.success(), "{name}: accepted");
        assert!(err.contains("TLS with the SIEM"), "{name}: {err}");
        assert!(why.iter().any(|w| err.contains(w)), "{name}: {err}");
        // The batches stay spooled for when the certificate is fixed.
        assert!(std::fs::read_dir(d.join(name).join("spool")).unwrap().count() > 0, "{name}: spool emptied");
        assert_eq!(stored(&url, reader_tls.clone()), want, "{name}: stored something");
    }
    // A good certificate with a wrong token: refused with the SIEM's reason.
    std::fs::write(d.join("token"), "wrong\n").unwrap();
    let out = sensor(d, "wrong-token", &url, &mtls);
    std::fs::write(d.join("token"), "sensor-secret\n").unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("refused the sensor's token (401"), "{}", stderr(&out));
    // The SOC saw each refusal too: in its log with the peer's address, and
    // in its audit trail.
    let log = std::fs::read_to_string(d.join("data.stderr")).unwrap();
    let refused: Vec<&str> = log.lines().filter(|l| l.contains("refused 127.0.0.1: ")).collect();
    for want in [
        "TLS handshake failed: peer sent no certificates",
        "TLS handshake failed: invalid peer certificate: certificate expired",
        "TLS handshake failed: invalid peer certificate: UnknownIssuer",
        "401 on /api/v1/ingest: unknown bearer token",
    ] {
        assert!(refused.iter().any(|l| l.contains(want)), "{want}: {log}");
    }
    let trail = |action: &str| -> Vec<serde_json::Value> {
        let r: serde_json::Value = reader_tls
            .agent(Duration::from_secs(20))
            .unwrap()
            .get(&format!("{url}/api/v1/audit"))
            .query("action", action)
            .set("Authorization", "Bearer admin-secret")
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        r["entries"].as_array().unwrap().clone()
    };
    let tls_refused = trail("tls.refused");
    assert!(tls_refused.len() >= 3 && tls_refused.iter().all(|e| e["from"] == "127.0.0.1"), "{tls_refused:?}");
    assert_eq!(trail("auth.refused").len(), 1);
    // The SOC still serves the good sensor.
    let out = sensor(d, "ok-again", &url, &mtls);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stored(&url, reader_tls.clone()), 2 * want);
    // The CA-signed SOC certificate pinned, the CA not given: the pin alone
    // is the trust.
    let soc_pin = citysoc::tls::fingerprint(&soc_der);
    let pinned_ca_signed = ["--ship-pin", &soc_pin, "--ship-cert", "@edge-1.pem", "--ship-key", "@edge-1.key"];
    let out = sensor(d, "pinned-ca-signed", &url, &pinned_ca_signed);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stored(&url, reader_tls), 3 * want);

    // A self-signed SOC certificate pinned by its SHA-256.
    let der = leaf(d, "soc-self", &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth, None, false);
    let (_soc2, url2) = serve(d, "data2", "soc-self", None);
    let pin = citysoc::tls::fingerprint(&der);
    let colons: String =
        pin.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).to_uppercase()).collect::<Vec<_>>().join(":");
    let out = sensor(d, "pinned", &url2, &["--ship-pin", &colons]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pinned = citysoc::tls::ClientTls { pin: Some(pin.clone()), ..Default::default() };
    assert_eq!(stored(&url2, pinned), local_records(d, "pinned"));
    let wrong = format!("{}00", &pin[..62]);
    let out = sensor(d, "mispinned", &url2, &["--ship-pin", &wrong]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is not the pinned one"), "{}", stderr(&out));
    // Without a pin or CA the self-signed certificate is not trusted.
    let out = sensor(d, "unpinned", &url2, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("UnknownIssuer"), "{}", stderr(&out));
}

/// Every shipping setting is checked before the first packet: a bad one
/// stops the sensor at once, non-zero, naming the problem, with no record
/// made.
#[test]
fn shipping_settings_are_checked_before_the_first_packet() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("token"), "sensor-secret\n").unwrap();
    std::fs::write(d.join("garbage.pem"), "not a certificate\n").unwrap();
    ca(d, "city-ca");
    leaf(d, "edge-1", &["edge-1"], ExtendedKeyUsagePurpose::ClientAuth, None, false);
    std::fs::write(d.join("empty-token"), "\n").unwrap();
    let https = "https://127.0.0.1:9";
    let good_pin = "ab".repeat(32);
    let cases: [(&str, &str, Vec<&str>, &str); 8] = [
        ("pin", https, vec!["--ship-pin", "12:34:zz"], "the pin '12:34:zz' is not a SHA-256 in hex"),
        ("scheme", "ftp://soc:21", vec![], "an http:// or https:// URL"),
        ("url", "soc:8443", vec![], "an http:// or https:// URL"),
        ("http-pin", "http://127.0.0.1:9", vec!["--ship-pin", &good_pin], "need an https:// URL"),
        ("no-ca", https, vec!["--ship-ca", "@missing.pem"], "missing.pem"),
        ("bad-ca", https, vec!["--ship-ca", "@garbage.pem"], "garbage.pem: no certificate in the file"),
        (
            "bad-key",
            https,
            vec!["--ship-ca", "@city-ca.pem", "--ship-cert", "@edge-1.pem", "--ship-key", "@garbage.pem"],
            "garbage.pem: no PEM private key",
        ),
        ("no-key", https, vec!["--ship-cert", "@edge-1.pem", "--ship-key", "@nowhere.key"], "nowhere.key"),
    ];
    for (name, url, flags, why) in cases {
        let out = sensor(d, name, url, &flags);
        let err = stderr(&out);
        assert!(!out.status.success(), "{name}: accepted");
        assert!(err.contains(why), "{name}: {err}");
        assert!(!d.join(name).join("conn.log").exists(), "{name}: the capture was read");
    }
    // An empty token file, the same.
    std::fs::rename(d.join("empty-token"), d.join("token")).unwrap();
    let out = sensor(d, "empty-token-logs", "http://127.0.0.1:9", &[]);
    assert!(!out.status.success() && stderr(&out).contains("is empty"), "{}", stderr(&out));
    assert!(!d.join("empty-token-logs").join("conn.log").exists());
}
