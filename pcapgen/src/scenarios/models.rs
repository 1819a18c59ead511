//! Scenarios for the anomaly models: behaviour that must raise alerts and
//! look-alikes that must not (a periodic backup, a busy resolver, a CDN
//! with many subdomains, steady devices). Addresses as in `attacks.rs`;
//! 10.34.0.0/16 is an IoT segment (`%iot_segments%`).

use super::ics::{conversation, mb, mqtt_login, mqtt_publish};
use super::*;

/// A deterministic spread in `-1.0..1.0` for jitter and sizes.
fn spread(i: u64, salt: u64) -> f64 {
    let x = (i.wrapping_mul(2_654_435_761).wrapping_add(salt.wrapping_mul(40_503))) % 10_007;
    x as f64 / 5_003.5 - 1.0
}

/// A TCP SYN that nobody answers.
fn syn(c: &mut Cap, t: i64, src: &str, sport: u16, dst: &str, dport: u16) {
    let mut s = TcpSession::new(a(src), sport, a(dst), dport, 7_000, 9_000);
    c.ip(t, s.seg(true, SYN, &[]));
}

fn echo(c: &mut Cap, t: i64, src: &str, dst: &str, id: u16, reply: bool) {
    let (s, d) = (a(src), a(dst));
    let mut rest = id.to_be_bytes().to_vec();
    rest.extend_from_slice(&[0, 1]);
    rest.extend_from_slice(b"citysoc-ping-pad");
    c.ip(t, ip(s, d, 1, &icmp(8, 0, &rest)));
    if reply {
        c.ip(t + MS, ip(d, s, 1, &icmp(0, 0, &rest)));
    }
}

fn udp_once(c: &mut Cap, t: i64, src: &str, sport: u16, dst: &str, dport: u16, payload: &[u8]) {
    let (s, d) = (a(src), a(dst));
    c.ip(t, ip(s, d, 17, &udp(s, d, sport, dport, payload)));
}

pub(super) fn anomaly_scan() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // A compromised camera looks for Telnet on 30 neighbours, no answers.
    for i in 0..30u16 {
        let port = if i % 2 == 0 { 23 } else { 2323 };
        syn(&mut c, i64::from(i) * 200 * MS, "10.34.0.21", 40_000 + i, &format!("10.34.1.{}", 10 + i), port);
    }
    // An ICMP sweep from the Internet; every third host answers.
    for i in 0..24u16 {
        echo(
            &mut c,
            10 * S + i64::from(i) * 100 * MS,
            "198.51.100.45",
            &format!("10.30.2.{}", 1 + i),
            0x4000 + i,
            i % 3 == 0,
        );
    }
    // A UDP scan of 25 ports of the city's DNS server.
    for i in 0..25u16 {
        let port = 100 + i * 37;
        udp_once(&mut c, 20 * S + i64::from(i) * 50 * MS, "203.0.113.80", 51_000 + i, "10.30.0.53", port, b"\0\0");
    }
    c
}

pub(super) fn anomaly_scan_benign() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // Monitoring reads a status page of 30 devices: real requests.
    for i in 0..30u16 {
        session(
            &mut c,
            i64::from(i) * 100 * MS,
            "10.31.0.5",
            42_000 + i,
            &format!("10.31.2.{}", 10 + i),
            80,
            120,
            &[300],
        );
    }
    // The city's own vulnerability scanner (%vuln_scanners%) checks 30 ports.
    for i in 0..30u16 {
        syn(&mut c, 5 * S + i64::from(i) * 50 * MS, "10.30.0.250", 43_000 + i, "10.30.0.80", 1 + i * 11);
    }
    // Ping monitoring of 12 hosts, all answering.
    for i in 0..12u16 {
        echo(&mut c, 10 * S + i64::from(i) * 100 * MS, "10.31.0.5", &format!("10.31.2.{}", 10 + i), 0x5000 + i, true);
    }
    // A technician tries six ports of one box.
    for (i, port) in [22u16, 23, 80, 443, 8080, 8443].iter().enumerate() {
        syn(&mut c, 15 * S + i as i64 * 100 * MS, "10.31.0.6", 44_000 + i as u16, "10.31.0.10", *port);
    }
    c
}

/// An NTP mode-7 style reply: big, unrequested.
fn ntp_reply(n: usize) -> Vec<u8> {
    let mut v = vec![0x97, 0x00, 0x03, 0x2a];
    v.resize(n, 0);
    v
}

pub(super) fn anomaly_flood() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // A SYN flood on the portal: 400 spoofed sources, one SYN each, 4 s.
    for i in 0..400u32 {
        let src = format!("198.18.{}.{}", i / 200, 1 + i % 200);
        syn(&mut c, i64::from(i) * 10 * MS, &src, 1024 + i as u16, "10.30.0.80", 443);
    }
    // NTP amplification against the e-government portal: 40 reflectors,
    // 30 replies of 468 bytes each (kept as the first 64 bytes of each
    // frame; the lengths in the headers say how big they were).
    for r in 0..40u32 {
        let refl = format!("203.0.113.{}", 100 + r);
        for k in 0..30u32 {
            let t = 6 * S + i64::from(r * 30 + k) * 5 * MS;
            let (s, d) = (a(&refl), a("10.30.0.81"));
            let frame = eth(ETH_IPV4, &ip(s, d, 17, &udp(s, d, 123, 40_000, &ntp_reply(468))));
            c.truncated(t, frame, 64);
        }
    }
    c
}

pub(super) fn anomaly_flood_benign() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // A busy minute at the portal: 360 complete connections from 180 clients.
    for i in 0..360u32 {
        let src = format!("10.35.{}.{}", 10 + i % 4, 1 + (i / 4) % 180);
        let mut s = TcpSession::new(a(&src), 20_000 + i as u16, a("10.30.0.80"), 443, 3_000, 8_000);
        let t = i64::from(i) * 20 * MS;
        c.ip(t, s.seg(true, SYN, &[]));
        c.ip(t + 200, s.seg(false, SYN | ACK, &[]));
        c.ip(t + 400, s.seg(true, ACK, &[]));
        c.ip(t + 600, s.seg(true, FIN | ACK, &[]));
        c.ip(t + 800, s.seg(false, FIN | ACK, &[]));
        c.ip(t + 1000, s.seg(true, ACK, &[]));
    }
    // The city's resolver answers 300 queries, one with a large signed answer.
    for i in 0..300u16 {
        let client = format!("10.35.20.{}", 1 + i % 200);
        let (cl, ns) = (a(&client), a("10.30.0.53"));
        let name = format!("host{}.city.example", i % 50);
        let q = dns_msg(i, 0x0100, name.as_bytes(), 1, &[], 0);
        let big = i == 7;
        let rdata = if big { vec![0u8; 1200] } else { vec![10, 30, 0, (i % 250) as u8] };
        let r =
            dns_msg(i, 0x8180, name.as_bytes(), if big { 46 } else { 1 }, &[(if big { 46 } else { 1 }, 300, rdata)], 0);
        let t = 8 * S + i64::from(i) * 20 * MS;
        c.ip(t, ip(cl, ns, 17, &udp(cl, ns, 30_000 + i, 53, &q)));
        c.ip(t + MS, ip(ns, cl, 17, &udp(ns, cl, 53, 30_000 + i, &r)));
    }
    // A server that is down: 50 unanswered SYNs from its clients.
    for i in 0..50u16 {
        syn(&mut c, 15 * S + i64::from(i) * 50 * MS, &format!("10.35.30.{}", 1 + i), 45_000 + i, "10.30.0.90", 8443);
    }
    c
}

fn opaque(n: usize, seed: u64) -> Vec<u8> {
    (0..n).map(|i| (spread(i as u64, seed) * 127.0 + 128.0) as u8 | 0x80).collect()
}

/// A short exchange of opaque bytes on a fresh connection.
#[allow(clippy::too_many_arguments)]
fn opaque_exchange(
    c: &mut Cap,
    t: i64,
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
    up: usize,
    down: usize,
    seed: u64,
) {
    conversation(c, t, src, sport, dst, dport, &[(true, opaque(up, seed)), (false, opaque(down, seed + 1))]);
}

fn dns_a(c: &mut Cap, t: i64, client: &str, id: u16, name: &str, addr: [u8; 4]) {
    let (cl, ns) = (a(client), a("10.33.0.53"));
    let q = dns_msg(id, 0x0100, name.as_bytes(), 1, &[], 0);
    let r = dns_msg(id, 0x8180, name.as_bytes(), 1, &[(1, 300, addr.to_vec())], 0);
    c.ip(t, ip(cl, ns, 17, &udp(cl, ns, 33_000 + id, 53, &q)));
    c.ip(t + 2 * MS, ip(ns, cl, 17, &udp(ns, cl, 53, 33_000 + id, &r)));
}

pub(super) fn anomaly_beacon() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    dns_a(&mut c, 0, "10.35.2.40", 1, "update.metrics-cdn.example", [203, 0, 113, 200]);
    // Implant check-ins every 60 s (+/- 1.5 s) for 72 minutes, ~310 bytes up.
    for i in 0..72u64 {
        let t = S + i as i64 * 60 * S + (spread(i, 1) * 1.5e6) as i64;
        let up = 300 + (spread(i, 2) * 10.0) as i64;
        opaque_exchange(&mut c, t, "10.35.2.40", 50_000 + i as u16, "203.0.113.200", 443, up as usize, 190, i);
    }
    // A channel that stays open: 2 h 10 min with a few bytes every 4 min.
    long_session(&mut c, 0, "10.35.2.41", 50_500, "198.51.100.250", 8443, 130);
    c
}

/// A connection kept open `minutes` long, a small exchange every 4 minutes.
fn long_session(c: &mut Cap, t: i64, src: &str, sport: u16, dst: &str, dport: u16, minutes: i64) {
    let mut s = TcpSession::new(a(src), sport, a(dst), dport, 13_000, 17_000);
    c.ip(t, s.seg(true, SYN, &[]));
    c.ip(t + 100, s.seg(false, SYN | ACK, &[]));
    c.ip(t + 200, s.seg(true, ACK, &[]));
    let mut k = 0;
    while k * 4 < minutes {
        let tt = t + S + k * 240 * S;
        c.ip(tt, s.seg(true, PSH | ACK, b"ping"));
        c.ip(tt + 20 * MS, s.seg(false, PSH | ACK, b"pong"));
        k += 1;
    }
    let end = t + minutes * 60 * S;
    c.ip(end, s.seg(true, FIN | ACK, &[]));
    c.ip(end + 100, s.seg(false, FIN | ACK, &[]));
    c.ip(end + 200, s.seg(true, ACK, &[]));
}

pub(super) fn anomaly_beacon_benign() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // A nightly-style backup every 5 minutes to a cloud store: periodic, but
    // 40-120 KB each (frames kept to their first 80 bytes).
    for i in 0..16u64 {
        let t = i as i64 * 300 * S;
        let size = 80_000 + (spread(i, 3) * 40_000.0) as usize;
        let mut s = TcpSession::new(a("10.35.2.50"), 51_000 + i as u16, a("198.51.100.70"), 443, 9_000, 19_000);
        let mut tt = t;
        c.ip(tt, s.seg(true, SYN, &[]));
        c.ip(tt + 100, s.seg(false, SYN | ACK, &[]));
        c.ip(tt + 200, s.seg(true, ACK, &[]));
        tt += MS;
        // Jumbo frames, so the capture stays small.
        for chunk in opaque(size, i).chunks(8960) {
            let f = eth(ETH_IPV4, &s.seg(true, PSH | ACK, chunk));
            c.truncated(tt, f, 80);
            c.ip(tt + 100, s.seg(false, ACK, &[]));
            tt += MS;
        }
        c.ip(tt, s.seg(false, PSH | ACK, b"stored"));
        c.ip(tt + 100, s.seg(true, FIN | ACK, &[]));
        c.ip(tt + 200, s.seg(false, FIN | ACK, &[]));
        c.ip(tt + 300, s.seg(true, ACK, &[]));
    }
    // NTP every 64 s: periodic by design (its port is ignored).
    for i in 0..70u64 {
        let t = i as i64 * 64 * S;
        let (cl, srv) = (a("10.35.2.51"), a("198.51.100.123"));
        let mut m = vec![0x23];
        m.resize(48, 0);
        let mut r = vec![0x24];
        r.resize(48, 0);
        c.ip(t, ip(cl, srv, 17, &udp(cl, srv, 123, 123, &m)));
        c.ip(t + 20 * MS, ip(srv, cl, 17, &udp(srv, cl, 123, 123, &r)));
    }
    // An administrator's SSH session inside the city, two hours long, and
    // a 50-minute video call to the Internet: long, but local or not long
    // enough.
    long_session(&mut c, 0, "10.35.2.54", 54_000, "10.35.9.22", 22, 125);
    long_session(&mut c, 0, "10.35.2.55", 54_001, "198.51.100.81", 443, 50);
    // Polling inside the city every 60 s (local destination).
    for i in 0..70u64 {
        opaque_exchange(&mut c, i as i64 * 60 * S, "10.35.2.52", 52_000 + i as u16, "10.35.9.9", 8080, 200, 200, i);
    }
    // A person reading a news site: bursts and pauses, sizes all over.
    let mut t = 0i64;
    for i in 0..30u64 {
        t += if i % 6 == 0 { 600 * S } else { (2 + (spread(i, 4).abs() * 40.0) as i64) * S };
        let up = 400 + (spread(i, 5).abs() * 1500.0) as usize;
        opaque_exchange(&mut c, t, "10.35.2.53", 53_000 + i as u16, "198.51.100.80", 443, up, 3000, i);
    }
    c
}

#[allow(clippy::too_many_arguments)]
fn dns_exchange(
    c: &mut Cap,
    t: i64,
    client: &str,
    server: &str,
    id: u16,
    name: &str,
    qtype: u16,
    rcode: u16,
    ans: &[(u16, u32, Vec<u8>)],
) {
    let (cl, ns) = (a(client), a(server));
    let q = dns_msg(id, 0x0100, name.as_bytes(), qtype, &[], 0);
    let r = dns_msg(id, 0x8180 | rcode, name.as_bytes(), qtype, ans, u16::from(rcode == 3));
    c.ip(t, ip(cl, ns, 17, &udp(cl, ns, 34_000 + (id % 20_000), 53, &q)));
    c.ip(t + 3 * MS, ip(ns, cl, 17, &udp(ns, cl, 53, 34_000 + (id % 20_000), &r)));
}

fn base32ish(i: u64, n: usize) -> String {
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..n).map(|k| ALPHA[((spread(i * 131 + k as u64, 9) + 1.0) * 15.99) as usize % 32] as char).collect()
}

pub(super) fn anomaly_dns() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // Data leaving as TXT queries: 60 unique 40-character labels.
    for i in 0..60u64 {
        let name = format!("{}.{}.t.exfil-data.example", base32ish(i, 40), i);
        let txt = {
            let mut v = vec![8u8];
            v.extend_from_slice(b"ok-ack-1");
            v
        };
        dns_exchange(
            &mut c,
            i as i64 * 1500 * MS,
            "10.35.3.20",
            "10.33.0.53",
            i as u16 + 1,
            &name,
            16,
            0,
            &[(16, 0, txt)],
        );
    }
    // Malware trying its generated domains: 15 answered NXDOMAIN.
    let tlds = ["com", "net", "org"];
    for i in 0..15u64 {
        let label: String = base32ish(1000 + i, 12).chars().filter(|c| c.is_ascii_alphabetic()).collect();
        let name = format!("{label}.{}", tlds[i as usize % 3]);
        dns_exchange(
            &mut c,
            100 * S + i as i64 * 1300 * MS,
            "10.35.3.21",
            "10.33.0.53",
            500 + i as u16,
            &name,
            1,
            3,
            &[],
        );
    }
    c
}

pub(super) fn anomaly_dns_benign() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // A page full of images from a CDN: 80 short, numbered subdomains.
    for i in 0..80u16 {
        let name = format!("img{i:03}.static.cdn-city.example");
        dns_exchange(
            &mut c,
            i64::from(i) * 200 * MS,
            "10.35.3.22",
            "10.33.0.53",
            1 + i,
            &name,
            1,
            0,
            &[(1, 60, vec![198, 51, 100, 10])],
        );
    }
    // The city's resolver asking upstream for its clients: many domains,
    // some typos that do not exist.
    let words = [
        "weather",
        "transport",
        "library",
        "hospital",
        "school",
        "market",
        "police",
        "water",
        "power",
        "news",
        "bank",
        "post",
        "museum",
        "stadium",
        "airport",
        "harbour",
        "metro",
        "taxi",
        "parking",
        "tourism",
    ];
    let mut id = 1000u16;
    for (k, w) in words.iter().enumerate() {
        for host in ["www", "api", "mail"] {
            id += 1;
            let name = format!("{host}.{w}-city.com");
            let t = 20 * S + i64::from(id - 1000) * 150 * MS;
            dns_exchange(
                &mut c,
                t,
                "10.33.0.53",
                "198.51.100.53",
                id,
                &name,
                1,
                0,
                &[(1, 300, vec![198, 51, 100, k as u8])],
            );
        }
    }
    for typo in ["gooogle.com", "facebok.com", "wikipeda.org", "yuotube.com", "hospitel-city.com", "weathr-city.com"] {
        id += 1;
        dns_exchange(
            &mut c,
            30 * S + i64::from(id - 1000) * 100 * MS,
            "10.33.0.53",
            "198.51.100.53",
            id,
            typo,
            1,
            3,
            &[],
        );
    }
    // A browser's random single-label probes (no public suffix).
    for (k, probe) in ["xkqjwzplmv", "qwpzrtkvbn", "mzxqkvtrpl"].iter().enumerate() {
        dns_exchange(&mut c, 40 * S + k as i64 * S, "10.35.3.23", "10.33.0.53", 3000 + k as u16, probe, 1, 3, &[]);
    }
    // A mail server checking SPF and DKIM records: TXT, a few dozen.
    for i in 0..30u16 {
        let name = format!("sel{}._domainkey.partner{}.com", i % 3, i % 10);
        dns_exchange(
            &mut c,
            45 * S + i64::from(i) * 300 * MS,
            "10.30.0.25",
            "10.33.0.53",
            4000 + i,
            &name,
            16,
            0,
            &[(16, 300, b"\x0bv=DKIM1; p=".to_vec())],
        );
    }
    c
}

fn basic_get(user: Option<&str>, host: &str) -> Vec<u8> {
    use base64::Engine as _;
    let auth = user
        .map(|u| {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:Spring2026!"));
            format!("Authorization: Basic {token}\r\n")
        })
        .unwrap_or_default();
    format!("GET /admin/ HTTP/1.1\r\nHost: {host}\r\n{auth}User-Agent: Mozilla/5.0\r\n\r\n").into_bytes()
}

fn http_status(code: u16) -> Vec<u8> {
    let msg = if code == 401 { "Unauthorized\r\nWWW-Authenticate: Basic realm=\"admin\"" } else { "OK" };
    format!("HTTP/1.1 {code} {msg}\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

fn telnet_session(c: &mut Cap, t: i64, src: &str, sport: u16, dst: &str, secs: i64) {
    conversation(
        c,
        t,
        src,
        sport,
        dst,
        23,
        &[
            (false, b"\xff\xfd\x18login: ".to_vec()),
            (true, b"admin\r\n".to_vec()),
            (false, b"Password: ".to_vec()),
            (true, b"12345\r\n".to_vec()),
        ],
    );
    if secs > 1 {
        // A working session keeps talking.
        let mut s = TcpSession::new(a(src), sport.wrapping_add(1000), a(dst), 23, 3_000, 4_000);
        c.ip(t, s.seg(true, SYN, &[]));
        c.ip(t + 100, s.seg(false, SYN | ACK, &[]));
        c.ip(t + 200, s.seg(true, ACK, &[]));
        for k in 1..secs {
            c.ip(t + k * S, s.seg(true, PSH | ACK, b"show status\r\n"));
            c.ip(t + k * S + 100, s.seg(false, PSH | ACK, b"ok\r\n"));
        }
        c.ip(t + secs * S, s.seg(true, FIN | ACK, &[]));
        c.ip(t + secs * S + 100, s.seg(false, FIN | ACK, &[]));
        c.ip(t + secs * S + 200, s.seg(true, ACK, &[]));
    }
}

pub(super) fn anomaly_bruteforce() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // Password guessing on the water board's SSH gateway: five sessions of
    // wrong passwords (the first failure of each sets its size).
    for i in 0..5u16 {
        ssh_session(
            &mut c,
            i64::from(i) * 3 * S,
            "198.51.100.60",
            55_000 + i,
            "10.30.0.21",
            22,
            b"SSH-2.0-Go\r\n",
            &[112; 4],
        );
    }
    // Spraying one password over nine accounts on three portals.
    let users =
        ["an.nguyen", "binh.tran", "chi.le", "dung.pham", "giang.hoang", "hai.vu", "khanh.do", "lan.bui", "minh.dang"];
    for (i, u) in users.iter().enumerate() {
        let host = format!("10.30.0.8{}", i % 3);
        http_conversation(
            &mut c,
            20 * S + i as i64 * 2 * S,
            "203.0.113.90",
            56_000 + i as u16,
            &host,
            80,
            &basic_get(Some(u), &host),
            &http_status(401),
        );
    }
    // Telnet guessing on a camera: 16 short sessions.
    for i in 0..16u16 {
        telnet_session(&mut c, 50 * S + i64::from(i) * 2 * S, "198.51.100.23", 57_000 + i, "10.34.0.30", 0);
    }
    c
}

pub(super) fn anomaly_bruteforce_benign() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // An operator mistypes twice, then logs in; a second session logs in
    // at the first try.
    ssh_session(&mut c, 0, "10.35.0.10", 55_100, "10.30.0.21", 22, b"SSH-2.0-OpenSSH_9.6\r\n", &[112, 112, 112, 80]);
    ssh_session(&mut c, 5 * S, "10.35.0.10", 55_101, "10.30.0.21", 22, b"SSH-2.0-OpenSSH_9.6\r\n", &[80]);
    // Staff open the admin page: the browser's first request is answered
    // 401, then it sends the credentials; one person mistypes.
    let users = ["an.nguyen", "binh.tran", "chi.le", "dung.pham", "giang.hoang"];
    for (i, u) in users.iter().enumerate() {
        let t = 10 * S + i as i64 * 3 * S;
        http_conversation(
            &mut c,
            t,
            "10.35.1.30",
            58_000 + i as u16 * 2,
            "10.30.0.80",
            80,
            &basic_get(None, "10.30.0.80"),
            &http_status(401),
        );
        http_conversation(
            &mut c,
            t + S,
            "10.35.1.30",
            58_001 + i as u16 * 2,
            "10.30.0.80",
            80,
            &basic_get(Some(u), "10.30.0.80"),
            &http_status(if i == 2 { 401 } else { 200 }),
        );
    }
    // A technician's Telnet work on three devices: short checks and a long session.
    for i in 0..3u16 {
        telnet_session(
            &mut c,
            40 * S + i64::from(i) * 10 * S,
            "10.31.0.7",
            59_000 + i,
            &format!("10.34.0.{}", 30 + i),
            if i == 0 { 30 } else { 0 },
        );
    }
    c
}

/// A day and more of a pump controller (10.34.0.40): polled by the SCADA
/// master over Modbus and publishing its level to the broker every 30
/// minutes. `departures` adds what a compromised controller does after
/// the learning day.
fn pump_day(departures: bool) -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let half_hour = 1800 * S;
    let mut tid = 1u16;
    for i in 0..52i64 {
        let t = i * half_hour;
        conversation(
            &mut c,
            t,
            "10.33.9.2",
            40_000 + i as u16,
            "10.34.0.40",
            502,
            &[(true, mb(tid, 3, &[0, 40, 0, 2])), (false, mb(tid, 3, &[4, 0, 0, 0, 152]))],
        );
        tid = tid.wrapping_add(1);
        let mut msgs = mqtt_login("pump-4", "pump4", "s3cret-pump4", 0);
        msgs.push(mqtt_publish("city/pumps/4/level", format!("{}", 150 + i % 7).as_bytes()));
        conversation(&mut c, t + 60 * S, "10.34.0.40", 41_000 + i as u16, "10.34.0.5", 1883, &msgs);
    }
    // Within the learning day: time from the city's NTP server and a check
    // at the vendor's update server.
    let (cl, ntp) = (a("10.34.0.40"), a("10.34.0.1"));
    let mut m = vec![0x23];
    m.resize(48, 0);
    c.ip(3600 * S, ip(cl, ntp, 17, &udp(cl, ntp, 123, 123, &m)));
    opaque_exchange(&mut c, 7200 * S, "10.34.0.40", 42_000, "198.51.100.99", 443, 300, 900, 1);
    let day = 86_400 * S;
    if departures {
        // After the day: a connection to an unknown host on the Internet,
        // a coil write, and a topic it never used.
        opaque_exchange(
            &mut c,
            day + 2 * half_hour + 300 * S,
            "10.34.0.40",
            42_001,
            "203.0.113.99",
            443,
            2000,
            64_000,
            2,
        );
        conversation(
            &mut c,
            day + 3 * half_hour + 300 * S,
            "10.33.9.2",
            43_000,
            "10.34.0.40",
            502,
            &[(true, mb(900, 5, &[0, 3, 0xff, 0])), (false, mb(900, 5, &[0, 3, 0xff, 0]))],
        );
        let mut msgs = mqtt_login("pump-4", "pump4", "s3cret-pump4", 0);
        msgs.push(mqtt_publish("city/pumps/4/firmware", b"v9.9-unsigned"));
        conversation(&mut c, day + 4 * half_hour + 300 * S, "10.34.0.40", 43_001, "10.34.0.5", 1883, &msgs);
    } else {
        // The same update check again, and time: nothing new.
        opaque_exchange(&mut c, day + 2 * half_hour + 300 * S, "10.34.0.40", 42_002, "198.51.100.99", 443, 300, 900, 3);
        c.ip(day + 3 * half_hour, ip(cl, ntp, 17, &udp(cl, ntp, 123, 123, &m)));
    }
    c
}

pub(super) fn anomaly_iot() -> Cap {
    pump_day(true)
}

pub(super) fn anomaly_iot_benign() -> Cap {
    pump_day(false)
}
