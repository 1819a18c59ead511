mod attacks;
mod ics;
mod models;

use crate::build::*;
pub use attacks::{BAD_UPDATE, DROPPER, EICAR};
use std::io::{self, Write};
use std::net::IpAddr;

/// Scenario names (the `replay-pcaps/` case directories) and what they hold.
pub const SCENARIOS: &[(&str, &str)] = &[
    ("tcp-basic", "one HTTP-like TCP session over IPv4 and one over IPv6, handshake to teardown"),
    ("tcp-states", "one TCP connection for each Zeek conn_state"),
    ("tcp-flip", "connections whose first captured packet comes from the server"),
    ("tcp-retransmit-gap", "a TCP session with a retransmission, a content gap and a zero window"),
    ("tcp-reuse-timeouts", "SYN retries, an attempt timeout, port reuse after close, TCP inactivity"),
    ("udp-flows", "UDP request/response, unanswered, server-first, inactivity split, IPv6"),
    ("icmp", "ICMP and ICMPv6 echo pairs, unreachables and neighbour discovery"),
    ("vlan-mpls-pppoe", "traffic under 802.1Q, QinQ, MPLS and PPPoE"),
    ("ip-fragments", "fragmented IPv4 and IPv6 datagrams, out of order and overlapping"),
    ("tunnels", "GRE, ERSPAN, PPTP GRE, IP-in-IP, 6in4, VXLAN, Geneve, GTP-U and Teredo"),
    ("other-protocols", "ESP, SCTP and OSPF traffic tracked as flows of their own"),
    ("malformed", "damaged and truncated packets among good ones"),
    ("checksums", "bad IP, UDP and TCP checksums (replayed with --verify-checksums)"),
    ("dns", "DNS over UDP: answers of several types, errors, retransmissions, a high port, malformed names"),
    ("http", "HTTP/1.x: pipelining, chunked and compressed bodies, HEAD, errors, a non-standard port"),
    ("tls", "TLS 1.2 and 1.3 handshakes: SNI, ALPN, GREASE, certificate, key exchange, an alert, a non-standard port"),
    ("ftp", "an FTP session: login, passive and active transfers with their data channels"),
    ("smtp", "SMTP: a multipart message with a base64 attachment, a second transaction, STARTTLS accepted and refused"),
    ("dhcp", "DHCP: a camera's broadcast DORA, a unicast renewal, a refused request, a datagram that is not DHCP"),
    ("quic", "QUIC: a version 1 handshake with shuffled CRYPTO frames, a version 2 ClientHello across two packets, a datagram that is not QUIC"),
    ("ntp", "NTP: client/server, symmetric with an extension field, broadcast, and two datagrams that are not NTP"),
    ("ssh", "SSH sessions: versions, key exchange offers, host key, encrypted traffic, a non-standard port"),
    ("web-attacks", "web attacks on the city portal (SQL injection, traversal, command injection, a GPON exploit, a web shell upload, the EICAR file) and a camera fetching a botnet dropper"),
    ("web-benign", "portal traffic with attack words in harmless places, look-alike files, and the city's authorised scanner"),
    ("port-scan", "a vertical TCP scan of one server and a Mirai-like Telnet sweep across devices"),
    ("scan-benign", "monitoring checks, an operator trying a few ports, a technician's Telnet sessions"),
    ("ssh-bruteforce", "eight SSH sessions from the Internet to a camera, every password refused"),
    ("dns-dyndns", "DNS queries for dynamic DNS names and for city names that contain the same words"),
    ("exposure", "Telnet, MQTT and Modbus reached from the Internet; Modbus from a laptop that is not an engineering station"),
    ("exposure-benign", "the engineering station on Modbus, city hosts on management ports, a refused knock, the public portal"),
    ("tls-self-signed", "a TLS server with a self-signed certificate and one signed by the city CA"),
    ("ftp-cleartext", "an FTP login with an operator's password in cleartext"),
    ("intel-hits", "traffic to a listed address, domain, URL and file, and to their neighbours"),
    ("ics-modbus-write", "a laptop outside the engineering range writes a flood-gate controller's coils and setpoint"),
    ("ics-modbus-benign", "the engineering stations write a setpoint and poll coils and registers"),
    ("ics-dnp3-restart", "a cold restart of a pumping-station outstation from a host that is not an engineering station"),
    ("ics-dnp3-benign", "the SCADA master polls an outstation, which also reports an event unsolicited"),
    ("iot-mqtt-abuse", "password guessing against the sensor broker from the Internet, then a subscription to every topic"),
    ("iot-coap-abuse", "a street light switched off and a controller's firmware deleted over CoAP from the Internet"),
    ("iot-coap-benign", "the lighting gateway dims a light and reads a sensor over CoAP; a city host reads a sensor"),
    ("iot-snmp-abuse", "default SNMP communities from the Internet: a traffic controller identified, then renamed"),
    ("iot-snmp-benign", "the network management station polls and names a traffic controller with the city's communities"),
    ("iot-bacnet-abuse", "a building controller silenced and restarted over BACnet by a host that is not an engineering station"),
    ("iot-bacnet-benign", "the engineering station reads a temperature and writes a setpoint over BACnet"),
    ("iot-mqtt-benign", "water-level sensors publish (one mistypes its password once), a dashboard subscribes to its subtrees"),
    ("anomaly-scan", "a camera sweeping Telnet, an ICMP sweep and a UDP port scan"),
    ("anomaly-scan-benign", "monitoring of 30 devices, the city's own scanner, ping checks, a technician trying six ports"),
    ("anomaly-flood", "a SYN flood on the portal and NTP amplification against another server"),
    ("anomaly-flood-benign", "a busy minute at the portal, the resolver at work, clients of a server that is down"),
    ("anomaly-beacon", "an implant checking in every minute for over an hour, a channel open for two hours"),
    ("anomaly-beacon-benign", "a periodic backup, NTP, polling inside the city, reading the news, long local and short calls"),
    ("anomaly-dns", "data leaving in TXT queries and malware trying generated domains"),
    ("anomaly-dns-benign", "a CDN with many subdomains, the resolver at work with typos, browser probes, DKIM lookups"),
    ("anomaly-bruteforce", "SSH password guessing, password spraying over HTTP, Telnet guessing on a camera"),
    ("anomaly-bruteforce-benign", "an operator mistyping, staff logging in to a portal, a technician's Telnet work"),
    ("anomaly-iot", "a pump controller's steady day, then a new Internet peer, a coil write and a new topic"),
    ("anomaly-iot-benign", "a pump controller's steady day and its usual update check and time afterwards"),
    ("web-hostile", "markup and script in HTTP Host, URI, User-Agent, Referer and DNS names, for the console's escaping"),
    ("linktype-sll", "Linux cooked capture (SLL)"),
    ("linktype-sll2", "Linux cooked capture v2 (SLL2)"),
    ("linktype-null", "BSD loopback (NULL)"),
    ("linktype-raw", "raw IP"),
    ("linktype-ppp", "PPP in HDLC-like framing"),
    ("linktype-chdlc", "Cisco HDLC"),
];

/// Base time of every scenario: 2023-11-14 22:13:20 UTC.
const T0: i64 = 1_700_000_000_000_000;
const MS: i64 = 1_000;
const S: i64 = 1_000_000;

struct Cap {
    linktype: u32,
    pkts: Vec<(i64, Vec<u8>, Option<u32>)>,
}

impl Cap {
    fn new(linktype: u32) -> Cap {
        Cap { linktype, pkts: Vec::new() }
    }
    /// An IP packet framed for this capture's link type.
    fn ip(&mut self, t: i64, ip: Vec<u8>) {
        let v6 = ip.first().map(|b| b >> 4) == Some(6);
        let frame = match self.linktype {
            DLT_EN10MB => eth(if v6 { ETH_IPV6 } else { ETH_IPV4 }, &ip),
            DLT_RAW => ip,
            DLT_NULL => {
                let af: u32 = if v6 { 30 } else { 2 };
                let mut f = af.to_le_bytes().to_vec();
                f.extend_from_slice(&ip);
                f
            }
            DLT_PPP => {
                let mut f = vec![0xff, 0x03];
                f.extend_from_slice(&(if v6 { 0x0057u16 } else { 0x0021 }).to_be_bytes());
                f.extend_from_slice(&ip);
                f
            }
            DLT_C_HDLC => {
                let mut f = vec![0x0f, 0x00];
                f.extend_from_slice(&(if v6 { ETH_IPV6 } else { ETH_IPV4 }).to_be_bytes());
                f.extend_from_slice(&ip);
                f
            }
            DLT_LINUX_SLL => {
                let mut f = vec![0, 0, 0, 1, 0, 6];
                f.extend_from_slice(&MAC_A);
                f.extend_from_slice(&[0, 0]);
                f.extend_from_slice(&(if v6 { ETH_IPV6 } else { ETH_IPV4 }).to_be_bytes());
                f.extend_from_slice(&ip);
                f
            }
            DLT_LINUX_SLL2 => {
                let mut f = (if v6 { ETH_IPV6 } else { ETH_IPV4 }).to_be_bytes().to_vec();
                f.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6]);
                f.extend_from_slice(&MAC_A);
                f.extend_from_slice(&[0, 0]);
                f.extend_from_slice(&ip);
                f
            }
            _ => ip,
        };
        self.pkts.push((T0 + t, frame, None));
    }
    fn raw(&mut self, t: i64, frame: Vec<u8>) {
        self.pkts.push((T0 + t, frame, None));
    }
    fn truncated(&mut self, t: i64, frame: Vec<u8>, keep: usize) {
        let wire = frame.len() as u32;
        let mut f = frame;
        f.truncate(keep);
        self.pkts.push((T0 + t, f, Some(wire)));
    }
    fn write(mut self, w: &mut impl Write) -> io::Result<u64> {
        self.pkts.sort_by_key(|p| p.0);
        let mut pw = PcapWriter::new(w, self.linktype)?;
        for (t, f, wire) in &self.pkts {
            match wire {
                Some(wl) => pw.packet_truncated(*t, f, *wl)?,
                None => pw.packet(*t, f)?,
            }
        }
        Ok(pw.count)
    }
}

fn a(s: &str) -> IpAddr {
    s.parse().expect("address literal")
}

/// An HTTP request of exactly `n` bytes (at least 60), padded in a header.
fn http_request(n: usize, host: &str) -> Vec<u8> {
    let head = format!("GET /status HTTP/1.1\r\nHost: {host}\r\nUser-Agent: citysoc-gen/1\r\nX-Pad: ");
    let pad = n.saturating_sub(head.len() + 4).max(1);
    let mut r = head.into_bytes();
    r.extend(std::iter::repeat_n(b'p', pad));
    r.extend_from_slice(b"\r\n\r\n");
    r
}

/// An HTTP response of exactly `n` bytes (at least 60) with a text body.
fn http_response(n: usize) -> Vec<u8> {
    let mut body_len = n.saturating_sub(60);
    loop {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {body_len}\r\n\r\n");
        if head.len() + body_len == n || body_len == 0 {
            let mut r = head.into_bytes();
            r.extend(std::iter::repeat_n(b'r', body_len));
            return r;
        }
        body_len = n.saturating_sub(head.len());
    }
}

/// A complete session: handshake, request, response in `resp_segs`
/// segments, FIN from the client, FIN from the server, last ACK.
/// History `ShADadFf`. Large enough exchanges are real HTTP.
#[allow(clippy::too_many_arguments)]
fn session(cap: &mut Cap, t: i64, c: &str, cp: u16, s: &str, sp: u16, req: usize, resp: &[usize]) -> i64 {
    let mut x = TcpSession::new(a(c), cp, a(s), sp, 1_000, 50_000);
    let mut t = t;
    let mut step = |cap: &mut Cap, p: Vec<u8>| {
        cap.ip(t, p);
        t += MS;
    };
    step(cap, x.seg(true, SYN, &[]));
    step(cap, x.seg(false, SYN | ACK, &[]));
    step(cap, x.seg(true, ACK, &[]));
    let total: usize = resp.iter().sum();
    let http = req >= 60 && total >= 60;
    let request = if http { http_request(req, s) } else { vec![b'q'; req] };
    step(cap, x.seg(true, PSH | ACK, &request));
    step(cap, x.seg(false, ACK, &[]));
    let response = if http { http_response(total) } else { vec![b'r'; total] };
    let mut off = 0;
    for &n in resp {
        step(cap, x.seg(false, PSH | ACK, &response[off..off + n]));
        off += n;
    }
    step(cap, x.seg(true, ACK, &[]));
    step(cap, x.seg(true, FIN | ACK, &[]));
    step(cap, x.seg(false, FIN | ACK, &[]));
    step(cap, x.seg(true, ACK, &[]));
    t
}

fn tcp_basic() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    session(&mut c, 0, "10.1.0.10", 49152, "10.1.0.80", 80, 100, &[1000, 500]);
    session(&mut c, 100 * MS, "fd00:1::10", 49153, "fd00:1::80", 8080, 100, &[1200]);
    c
}

fn tcp_states() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let (cl, sv) = ("10.2.0.1", "10.2.0.2");
    // S0: an unanswered SYN.
    let mut x = TcpSession::new(a(cl), 40001, a(sv), 22, 100, 9000);
    c.ip(0, x.seg(true, SYN, &[]));
    // REJ: SYN answered by RST.
    let mut x = TcpSession::new(a(cl), 40002, a(sv), 23, 100, 9000);
    c.ip(10 * MS, x.seg(true, SYN, &[]));
    let rst = x.seg_at(false, 0, RST | ACK, &[]);
    c.ip(11 * MS, rst);
    // RSTO: established, then the originator resets.
    let mut x = TcpSession::new(a(cl), 40003, a(sv), 25, 100, 9000);
    c.ip(20 * MS, x.seg(true, SYN, &[]));
    c.ip(21 * MS, x.seg(false, SYN | ACK, &[]));
    c.ip(22 * MS, x.seg(true, ACK, &[]));
    c.ip(23 * MS, x.seg(true, RST | ACK, &[]));
    // RSTR: established, data, then the responder resets.
    let mut x = TcpSession::new(a(cl), 40004, a(sv), 80, 100, 9000);
    c.ip(30 * MS, x.seg(true, SYN, &[]));
    c.ip(31 * MS, x.seg(false, SYN | ACK, &[]));
    c.ip(32 * MS, x.seg(true, ACK, &[]));
    c.ip(33 * MS, x.seg(true, PSH | ACK, b"hello"));
    c.ip(34 * MS, x.seg(false, RST | ACK, &[]));
    // S1: established with data, never closed.
    let mut x = TcpSession::new(a(cl), 40005, a(sv), 443, 100, 9000);
    c.ip(40 * MS, x.seg(true, SYN, &[]));
    c.ip(41 * MS, x.seg(false, SYN | ACK, &[]));
    c.ip(42 * MS, x.seg(true, ACK, &[]));
    c.ip(43 * MS, x.seg(true, PSH | ACK, &[1; 30]));
    c.ip(44 * MS, x.seg(false, PSH | ACK, &[2; 40]));
    // S2: the originator closes, the responder never does.
    let mut x = TcpSession::new(a(cl), 40006, a(sv), 110, 100, 9000);
    c.ip(50 * MS, x.seg(true, SYN, &[]));
    c.ip(51 * MS, x.seg(false, SYN | ACK, &[]));
    c.ip(52 * MS, x.seg(true, ACK, &[]));
    c.ip(53 * MS, x.seg(true, FIN | ACK, &[]));
    // S3: the responder closes, the originator never does.
    let mut x = TcpSession::new(a(cl), 40007, a(sv), 143, 100, 9000);
    c.ip(60 * MS, x.seg(true, SYN, &[]));
    c.ip(61 * MS, x.seg(false, SYN | ACK, &[]));
    c.ip(62 * MS, x.seg(true, ACK, &[]));
    c.ip(63 * MS, x.seg(false, FIN | ACK, &[]));
    // SH: SYN then FIN from the originator, no answer.
    let mut x = TcpSession::new(a(cl), 40008, a(sv), 21, 100, 9000);
    c.ip(70 * MS, x.seg(true, SYN, &[]));
    c.ip(71 * MS, x.seg(true, FIN, &[]));
    // SHR: SYN-ACK then FIN from the responder, no SYN seen.
    let mut x = TcpSession::new(a(cl), 40009, a(sv), 993, 100, 9000);
    c.ip(80 * MS, x.seg(false, SYN | ACK, &[]));
    c.ip(81 * MS, x.seg(false, FIN | ACK, &[]));
    // RSTOS0: SYN then RST from the originator, responder silent.
    let mut x = TcpSession::new(a(cl), 40010, a(sv), 3389, 100, 9000);
    c.ip(90 * MS, x.seg(true, SYN, &[]));
    c.ip(91 * MS, x.seg(true, RST, &[]));
    // RSTRH: SYN-ACK then RST from the responder, no SYN seen.
    let mut x = TcpSession::new(a(cl), 40011, a(sv), 445, 100, 9000);
    c.ip(100 * MS, x.seg(false, SYN | ACK, &[]));
    c.ip(101 * MS, x.seg(false, RST, &[]));
    // OTH: mid-stream data between two high ports.
    let mut x = TcpSession::new(a(cl), 40012, a(sv), 50000, 100, 9000);
    c.ip(110 * MS, x.seg(true, PSH | ACK, &[3; 10]));
    c.ip(111 * MS, x.seg(false, PSH | ACK, &[4; 20]));
    c
}

fn tcp_flip() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // The SYN was not captured: the SYN-ACK from port 80 comes first.
    let mut x = TcpSession::new(a("10.3.0.1"), 51000, a("10.3.0.80"), 80, 7000, 3000);
    x.cseq += 1; // the lost SYN consumed one sequence number
    let mut t = 0;
    for (from_client, flags, n) in [
        (false, SYN | ACK, 0),
        (true, ACK, 0),
        (true, PSH | ACK, 90),
        (false, ACK, 0),
        (false, PSH | ACK, 700),
        (false, FIN | ACK, 0),
        (true, ACK, 0),
        (true, FIN | ACK, 0),
        (false, ACK, 0),
    ] {
        c.ip(t, x.seg(from_client, flags, &vec![0x41; n]));
        t += MS;
    }
    // Mid-stream: the first packet is data from the server's port 443.
    let mut x = TcpSession::new(a("10.3.0.2"), 52000, a("10.3.0.43"), 443, 7000, 3000);
    c.ip(50 * MS, x.seg(false, PSH | ACK, &[7; 100]));
    c.ip(51 * MS, x.seg(true, ACK, &[]));
    // Both ports are likely server ports: no flip for a SYN-ACK.
    let mut x = TcpSession::new(a("10.3.0.3"), 22, a("10.3.0.4"), 80, 7000, 3000);
    c.ip(60 * MS, x.seg(false, SYN | ACK, &[]));
    c
}

fn tcp_retransmit_gap() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let mut x = TcpSession::new(a("10.4.0.1"), 53000, a("10.4.0.2"), 8000, 1000, 20000);
    c.ip(0, x.seg(true, SYN, &[]));
    c.ip(MS, x.seg(false, SYN | ACK, &[]));
    c.ip(2 * MS, x.seg(true, ACK, &[]));
    let first = x.cseq;
    c.ip(3 * MS, x.seg(true, PSH | ACK, &[1; 100]));
    // Bytes 101..200 were sent but not captured.
    let _lost = x.seg(true, PSH | ACK, &[2; 100]);
    c.ip(5 * MS, x.seg(true, PSH | ACK, &[3; 100]));
    c.ip(6 * MS, x.seg(false, ACK, &[]));
    // The first segment again: a retransmission.
    c.ip(7 * MS, x.seg_at(true, first, PSH | ACK, &[1; 100]));
    // The server advertises a zero window, then reopens it.
    x.window = 0;
    c.ip(8 * MS, x.seg(false, ACK, &[]));
    x.window = 65535;
    c.ip(9 * MS, x.seg(false, PSH | ACK, &[9; 50]));
    c.ip(10 * MS, x.seg(true, FIN | ACK, &[]));
    c.ip(11 * MS, x.seg(false, FIN | ACK, &[]));
    c.ip(12 * MS, x.seg(true, ACK, &[]));
    c
}

fn tcp_reuse_timeouts() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // A SYN retried at 1 s and 3 s is one attempt; the retry at 10 s comes
    // after the 5 s attempt timeout and starts a new connection.
    let mut x = TcpSession::new(a("10.5.0.1"), 41000, a("10.5.0.2"), 22, 500, 0);
    let syn = x.seg(true, SYN, &[]);
    for t in [0, S, 3 * S, 10 * S] {
        c.ip(t, syn.clone());
    }
    // A finished session, then a new SYN on the same ports 2 s later.
    session(&mut c, 20 * S, "10.5.0.3", 41001, "10.5.0.4", 9000, 10, &[20]);
    let mut y = TcpSession::new(a("10.5.0.3"), 41001, a("10.5.0.4"), 9000, 777_777, 88_888);
    c.ip(22 * S, y.seg(true, SYN, &[]));
    c.ip(22 * S + MS, y.seg(false, SYN | ACK, &[]));
    c.ip(22 * S + 2 * MS, y.seg(true, ACK, &[]));
    // An established connection idle for more than 5 minutes is two.
    let mut z = TcpSession::new(a("10.5.0.5"), 41002, a("10.5.0.6"), 5432, 10, 20);
    c.ip(30 * S, z.seg(true, SYN, &[]));
    c.ip(30 * S + MS, z.seg(false, SYN | ACK, &[]));
    c.ip(30 * S + 2 * MS, z.seg(true, ACK, &[]));
    c.ip(400 * S, z.seg(true, PSH | ACK, &[5; 10]));
    c
}

fn udp_flows() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let (cl, dns) = (a("10.6.0.9"), a("10.6.0.53"));
    // Request and response.
    c.ip(0, ip(cl, dns, 17, &udp(cl, dns, 33000, 53, &[0x11; 30])));
    c.ip(2 * MS, ip(dns, cl, 17, &udp(dns, cl, 53, 33000, &[0x22; 80])));
    // A request nobody answers, sent twice.
    c.ip(10 * MS, ip(cl, dns, 17, &udp(cl, dns, 33001, 53, &[0x33; 30])));
    c.ip(1010 * MS, ip(cl, dns, 17, &udp(cl, dns, 33001, 53, &[0x33; 30])));
    // Only the response was captured: the flow is flipped.
    c.ip(20 * MS, ip(dns, cl, 17, &udp(dns, cl, 53, 33002, &[0x44; 60])));
    // Two high ports: the first sender is the originator.
    let (p, q) = (a("10.6.0.20"), a("10.6.0.21"));
    c.ip(30 * MS, ip(p, q, 17, &udp(p, q, 40000, 40001, &[5; 12])));
    c.ip(31 * MS, ip(q, p, 17, &udp(q, p, 40001, 40000, &[6; 14])));
    // 70 s of silence ends a UDP flow (60 s timeout): two connections.
    c.ip(2 * S, ip(p, q, 17, &udp(p, q, 40002, 40003, &[7; 10])));
    c.ip(72 * S, ip(p, q, 17, &udp(p, q, 40002, 40003, &[8; 10])));
    // IPv6, and an empty datagram.
    let (x, y) = (a("fd00:6::1"), a("fd00:6::2"));
    c.ip(40 * MS, ip(x, y, 17, &udp(x, y, 5000, 5001, &[9; 100])));
    c.ip(41 * MS, ip(y, x, 17, &udp(y, x, 5001, 5000, &[])));
    c
}

fn icmp_scenario() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let (h, g) = (v4("10.7.0.1"), v4("10.7.0.2"));
    for i in 0..3u16 {
        let mut rest = vec![0, 1];
        rest.extend_from_slice(&i.to_be_bytes());
        rest.extend_from_slice(&[0x61; 56]);
        c.ip(i64::from(i) * S, ipv4(h, g, 1, &icmp(8, 0, &rest), V4Opts::default()));
        c.ip(i64::from(i) * S + MS, ipv4(g, h, 1, &icmp(0, 0, &rest), V4Opts::default()));
    }
    // Port unreachable quoting a UDP datagram: one-way, type 3 code 3.
    let quoted = ipv4(h, g, 17, &udp(IpAddr::V4(h), IpAddr::V4(g), 5555, 9999, &[1; 4]), V4Opts::default());
    let mut rest = vec![0; 4];
    rest.extend_from_slice(&quoted);
    c.ip(5 * S, ipv4(g, h, 1, &icmp(3, 3, &rest), V4Opts::default()));
    // ICMPv6 echo, and a neighbour solicitation with its advertisement.
    let (x, y) = (v6("fd00:7::1"), v6("fd00:7::2"));
    let echo = [0, 9, 0, 1, 0x62, 0x62, 0x62, 0x62];
    c.ip(6 * S, ipv6(x, y, 58, &icmpv6(x, y, 128, 0, &echo)));
    c.ip(6 * S + MS, ipv6(y, x, 58, &icmpv6(y, x, 129, 0, &echo)));
    let mut ns = vec![0; 4];
    ns.extend_from_slice(&y.octets());
    c.ip(7 * S, ipv6(x, y, 58, &icmpv6(x, y, 135, 0, &ns)));
    c.ip(7 * S + MS, ipv6(y, x, 58, &icmpv6(y, x, 136, 0, &ns)));
    c
}

fn vlan_mpls_pppoe() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let (p, q) = (a("10.8.0.1"), a("10.8.0.2"));
    // QinQ: outer tag 100, inner 200.
    let d = ip(p, q, 17, &udp(p, q, 6000, 6001, &[1; 20]));
    c.raw(0, eth_vlans(&[100, 200], ETH_IPV4, &d));
    let d = ip(q, p, 17, &udp(q, p, 6001, 6000, &[2; 20]));
    c.raw(MS, eth_vlans(&[100, 200], ETH_IPV4, &d));
    // One 802.1Q tag on a TCP SYN.
    let mut x = TcpSession::new(p, 6002, q, 80, 1, 2);
    c.raw(2 * MS, eth_vlans(&[42], ETH_IPV4, &x.seg(true, SYN, &[])));
    // Two MPLS labels over IPv4.
    let d = ip(p, q, 17, &udp(p, q, 6003, 6004, &[3; 20]));
    let mut m = vec![0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40];
    m.extend_from_slice(&d);
    c.raw(3 * MS, eth(0x8847, &m));
    // PPPoE session carrying IPv4.
    let d = ip(p, q, 17, &udp(p, q, 6005, 6006, &[4; 20]));
    let mut pp = vec![0x11, 0x00, 0x12, 0x34];
    pp.extend_from_slice(&((d.len() + 2) as u16).to_be_bytes());
    pp.extend_from_slice(&[0x00, 0x21]);
    pp.extend_from_slice(&d);
    c.raw(4 * MS, eth(0x8864, &pp));
    // An ARP request: not IP, counted and skipped.
    c.raw(
        5 * MS,
        eth(ETH_ARP, &[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 10, 10, 8, 0, 1, 0, 0, 0, 0, 0, 0, 10, 8, 0, 2]),
    );
    c
}

fn ip_fragments() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let (p, q) = (v4("10.9.0.1"), v4("10.9.0.2"));
    // A 3000-byte UDP datagram in three fragments, sent last-first.
    let dgram = udp(IpAddr::V4(p), IpAddr::V4(q), 7000, 7001, &[0x5a; 3000]);
    let parts = [(0usize, 1480usize, true), (1480, 2960, true), (2960, dgram.len(), false)];
    for (i, &(s, e, more)) in parts.iter().enumerate().rev() {
        let o = V4Opts {
            id: 0x1234,
            dont_fragment: false,
            more_fragments: more,
            frag_offset: s as u16,
            ..V4Opts::default()
        };
        c.ip((2 - i as i64) * MS, ipv4(p, q, 17, &dgram[s..e], o));
    }
    // Overlapping fragments that disagree: the first copy wins, and a weird
    // reports the inconsistency.
    let dgram = udp(IpAddr::V4(p), IpAddr::V4(q), 7002, 7003, &[0x61; 40]);
    let f1 = ipv4(
        p,
        q,
        17,
        &dgram[..24],
        V4Opts { id: 0x2222, dont_fragment: false, more_fragments: true, ..Default::default() },
    );
    let mut evil = dgram[16..].to_vec();
    evil[0] ^= 0xff;
    let f2 = ipv4(p, q, 17, &evil, V4Opts { id: 0x2222, dont_fragment: false, frag_offset: 16, ..Default::default() });
    c.ip(10 * MS, f1);
    c.ip(11 * MS, f2);
    // A first fragment whose rest never comes: held, then dropped by timeout
    // when later traffic advances the clock past 60 s.
    let lone = udp(IpAddr::V4(p), IpAddr::V4(q), 7004, 7005, &[1; 100]);
    c.ip(
        20 * MS,
        ipv4(
            p,
            q,
            17,
            &lone[..64],
            V4Opts { id: 0x3333, dont_fragment: false, more_fragments: true, ..Default::default() },
        ),
    );
    c.ip(70 * S, ip(IpAddr::V4(q), IpAddr::V4(p), 17, &udp(IpAddr::V4(q), IpAddr::V4(p), 7010, 7011, &[2; 8])));
    // IPv6 with Hop-by-Hop and Destination Options before a Fragment header.
    let (x, y) = (v6("fd00:9::1"), v6("fd00:9::2"));
    let dgram = udp(IpAddr::V6(x), IpAddr::V6(y), 8000, 53, &[0x42; 1800]);
    let hbh = (0u8, vec![0, 1, 4, 0, 0, 0, 0]);
    let dst = (60u8, vec![0, 1, 4, 0, 0, 0, 0]);
    for (i, &(s, e, more)) in [(0usize, 1232usize, true), (1232, dgram.len(), false)].iter().enumerate() {
        let off_field = ((s / 8) as u16) << 3 | u16::from(more);
        let mut frag = vec![0u8];
        frag.extend_from_slice(&off_field.to_be_bytes());
        frag.extend_from_slice(&0xabcd_0001u32.to_be_bytes());
        let pkt = ipv6_ext(x, y, &[hbh.clone(), dst.clone(), (44, frag)], 17, &dgram[s..e]);
        c.ip(30 * MS + i as i64 * MS, pkt);
    }
    c
}

fn gre(proto: u16, flags: u8, version: u8, extra: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut g = vec![flags, version];
    g.extend_from_slice(&proto.to_be_bytes());
    g.extend_from_slice(extra);
    g.extend_from_slice(payload);
    g
}

fn tunnels() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let (o1, o2) = (v4("192.0.2.1"), v4("192.0.2.2"));
    let gre_ip = |inner: &[u8], flags: u8, extra: &[u8]| {
        ipv4(o1, o2, 47, &gre(0x0800, flags, 0, extra, inner), V4Opts::default())
    };
    // GRE carrying a whole TCP session.
    let mut x = TcpSession::new(a("10.10.0.1"), 45000, a("10.10.0.2"), 22, 10, 20);
    let mut t = 0;
    for (fc, fl, n) in
        [(true, SYN, 0), (false, SYN | ACK, 0), (true, ACK, 0), (true, PSH | ACK, 40), (false, PSH | ACK, 60)]
    {
        c.ip(t, gre_ip(&x.seg(fc, fl, &vec![0x55; n]), 0, &[]));
        t += MS;
    }
    // GRE with key and sequence number, carrying UDP (same tunnel).
    let (i1, i2) = (a("10.10.0.3"), a("10.10.0.4"));
    c.ip(10 * MS, gre_ip(&ip(i1, i2, 17, &udp(i1, i2, 123, 123, &[0; 48])), 0x30, &[0, 0, 0, 7, 0, 0, 0, 1]));
    // ERSPAN type II: Ethernet frames of a mirrored port.
    let (e1, e2) = (v4("192.0.2.3"), v4("192.0.2.4"));
    let inner = eth(
        ETH_IPV4,
        &ip(a("10.11.0.1"), a("10.11.0.2"), 17, &udp(a("10.11.0.1"), a("10.11.0.2"), 514, 514, &[1; 30])),
    );
    let mut er = vec![0x10, 0x01, 0x00, 0x05, 0, 0, 0, 0];
    er.extend_from_slice(&inner);
    c.ip(20 * MS, ipv4(e1, e2, 47, &gre(0x88be, 0x10, 0, &[0, 0, 0, 1], &er), V4Opts::default()));
    // PPTP's enhanced GRE (version 1) with PPP inside.
    let (p1, p2) = (v4("192.0.2.5"), v4("192.0.2.6"));
    let inner = ipv4(v4("10.12.0.1"), v4("10.12.0.2"), 1, &icmp(8, 0, &[0, 1, 0, 1, 9, 9]), V4Opts::default());
    let mut ppp = vec![0xff, 0x03, 0x00, 0x21];
    ppp.extend_from_slice(&inner);
    let key = [((ppp.len() >> 8) as u8), ppp.len() as u8, 0, 9, 0, 0, 0, 1];
    c.ip(30 * MS, ipv4(p1, p2, 47, &gre(0x880b, 0x30, 1, &key, &ppp), V4Opts::default()));
    // IPv4 in IPv4.
    let (j1, j2) = (v4("192.0.2.7"), v4("192.0.2.8"));
    let inner = ip(a("10.13.0.1"), a("10.13.0.2"), 17, &udp(a("10.13.0.1"), a("10.13.0.2"), 1000, 2000, &[2; 10]));
    c.ip(40 * MS, ipv4(j1, j2, 4, &inner, V4Opts::default()));
    // IPv6 in IPv4 (6in4).
    let inner = ip(a("fd00:14::1"), a("fd00:14::2"), 17, &udp(a("fd00:14::1"), a("fd00:14::2"), 1000, 2000, &[3; 10]));
    c.ip(50 * MS, ipv4(j1, j2, 41, &inner, V4Opts::default()));
    // VXLAN: Ethernet inside UDP/4789.
    let (v1, v2) = (a("192.0.2.9"), a("192.0.2.10"));
    let mut y = TcpSession::new(a("10.15.0.1"), 46000, a("10.15.0.2"), 80, 1, 2);
    for (k, (fc, fl)) in [(true, SYN), (false, SYN | ACK), (true, ACK)].into_iter().enumerate() {
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 0x2a, 0];
        vx.extend_from_slice(&eth(ETH_IPV4, &y.seg(fc, fl, &[])));
        c.ip(60 * MS + k as i64 * MS, ip(v1, v2, 17, &udp(v1, v2, 50000, 4789, &vx)));
    }
    // Geneve: Ethernet inside UDP/6081, with one option word.
    let inner = eth(
        ETH_IPV4,
        &ip(a("10.16.0.1"), a("10.16.0.2"), 17, &udp(a("10.16.0.1"), a("10.16.0.2"), 3000, 3001, &[4; 16])),
    );
    let mut gv = vec![0x01, 0x00, 0x65, 0x58, 0, 0, 0x10, 0, 0x01, 0x02, 0x80, 0x00];
    gv.extend_from_slice(&inner);
    c.ip(70 * MS, ip(v1, v2, 17, &udp(v1, v2, 50001, 6081, &gv)));
    // GTP-U: a user's IPv4 packet inside UDP/2152.
    let inner = ip(a("10.17.0.1"), a("10.17.0.2"), 17, &udp(a("10.17.0.1"), a("10.17.0.2"), 4000, 4001, &[5; 16]));
    let mut gt = vec![0x30, 0xff];
    gt.extend_from_slice(&(inner.len() as u16).to_be_bytes());
    gt.extend_from_slice(&[0, 0, 0, 1]);
    gt.extend_from_slice(&inner);
    c.ip(80 * MS, ip(v1, v2, 17, &udp(v1, v2, 2152, 2152, &gt)));
    // Teredo: IPv6 inside UDP/3544.
    let inner = ip(
        a("2001:0:4136:e378::1"),
        a("2001:0:4136:e378::2"),
        17,
        &udp(a("2001:0:4136:e378::1"), a("2001:0:4136:e378::2"), 5000, 5001, &[6; 8]),
    );
    c.ip(90 * MS, ip(v1, v2, 17, &udp(v1, v2, 50002, 3544, &inner)));
    c
}

fn other_protocols() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let (p, q) = (v4("10.18.0.1"), v4("10.18.0.2"));
    // ESP (50): two packets one way, one back.
    for (t, s, d) in [(0, p, q), (MS, p, q), (2 * MS, q, p)] {
        c.ip(t, ipv4(s, d, 50, &[0, 0, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef], V4Opts::default()));
    }
    // SCTP (132) INIT.
    c.ip(10 * MS, ipv4(p, q, 132, &[0x0b, 0x59, 0x0b, 0x59, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 20], V4Opts::default()));
    // OSPF hello (89) to 224.0.0.5.
    c.ip(20 * MS, ipv4(p, v4("224.0.0.5"), 89, &[2, 1, 0, 44, 10, 18, 0, 1, 0, 0, 0, 0], V4Opts::default()));
    c
}

fn malformed() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let (p, q) = (v4("10.19.0.1"), v4("10.19.0.2"));
    let good = |t: i64, c: &mut Cap| {
        c.ip(t, ipv4(p, q, 17, &udp(IpAddr::V4(p), IpAddr::V4(q), 9000, 9001, &[1; 10]), V4Opts::default()));
    };
    good(0, &mut c);
    // A frame shorter than an Ethernet header.
    c.raw(MS, vec![0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0]);
    // A zero-length packet.
    c.raw(2 * MS, vec![]);
    // IPv4 with a header length of 12 bytes.
    let mut bad = ipv4(p, q, 17, &[0; 8], V4Opts::default());
    bad[0] = 0x43;
    c.ip(3 * MS, bad);
    // IPv4 whose total length is smaller than its header.
    c.ip(4 * MS, ipv4(p, q, 17, &[0; 8], V4Opts { total_len_override: Some(10), ..Default::default() }));
    // A TCP header cut short.
    c.ip(5 * MS, ipv4(p, q, 6, &[0x23, 0x28, 0x00, 0x50, 0, 0], V4Opts::default()));
    // UDP whose length field exceeds the datagram.
    let mut u = udp(IpAddr::V4(p), IpAddr::V4(q), 9000, 9002, &[1; 4]);
    u[4..6].copy_from_slice(&500u16.to_be_bytes());
    c.ip(6 * MS, ipv4(p, q, 17, &u, V4Opts::default()));
    // IPv6 announcing a Routing header that is not there.
    let mut v = ipv6(v6("fd00:19::1"), v6("fd00:19::2"), 43, &[]);
    v[4..6].copy_from_slice(&0u16.to_be_bytes());
    c.ip(7 * MS, v);
    // An unknown IP version.
    let mut w = ipv4(p, q, 17, &[0; 8], V4Opts::default());
    w[0] = 0x95;
    c.raw(8 * MS, eth(ETH_IPV4, &w));
    // GRE with the routing bit (unsupported source routing).
    c.ip(9 * MS, ipv4(p, q, 47, &gre(0x0800, 0x40, 0, &[0, 0, 0, 0], &[0; 20]), V4Opts::default()));
    // A TCP segment cut by the snap length inside its payload: still a flow,
    // counted with the length on the wire.
    let mut x = TcpSession::new(IpAddr::V4(p), 9100, IpAddr::V4(q), 80, 1, 2);
    c.truncated(10 * MS, eth(ETH_IPV4, &x.seg(true, PSH | ACK, &[7; 200])), 60);
    good(11 * MS, &mut c);
    // An IPv4 header cut by the snap length.
    c.truncated(12 * MS, eth(ETH_IPV4, &ipv4(p, q, 17, &[0; 40], V4Opts::default())), 24);
    c
}

fn checksums() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let (p, q) = (v4("10.20.0.1"), v4("10.20.0.2"));
    let ok = ipv4(p, q, 17, &udp(IpAddr::V4(p), IpAddr::V4(q), 1111, 2222, &[1; 10]), V4Opts::default());
    c.ip(0, ok.clone());
    // Bad IP header checksum: the packet is dropped before any flow.
    c.ip(
        MS,
        ipv4(
            p,
            q,
            17,
            &udp(IpAddr::V4(p), IpAddr::V4(q), 1111, 2222, &[1; 10]),
            V4Opts { bad_checksum: true, ..Default::default() },
        ),
    );
    // Bad UDP checksum: the flow notes it, the packet is not counted.
    let mut u = udp(IpAddr::V4(q), IpAddr::V4(p), 2222, 1111, &[2; 10]);
    u[6] ^= 0x11;
    c.ip(2 * MS, ipv4(q, p, 17, &u, V4Opts::default()));
    c.ip(3 * MS, ok);
    // Bad TCP checksum on a SYN.
    let mut t = tcp(IpAddr::V4(p), IpAddr::V4(q), 3333, 80, 1, 0, SYN, 1024, &[]);
    t[16] ^= 0x01;
    c.ip(4 * MS, ipv4(p, q, 6, &t, V4Opts::default()));
    c
}

/// A DNS message: header fields, one question, and answer records given as
/// (type, ttl, rdata) owned by the question name (a compression pointer).
fn dns_msg(id: u16, flags: u16, qname: &[u8], qtype: u16, answers: &[(u16, u32, Vec<u8>)], nscount: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    m.extend_from_slice(&nscount.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    for label in qname.split(|&b| b == b'.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label);
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    for (t, ttl, rdata) in answers {
        m.extend_from_slice(&[0xc0, 12]);
        m.extend_from_slice(&t.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m.extend_from_slice(&ttl.to_be_bytes());
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(rdata);
    }
    if nscount > 0 {
        // One SOA record in the authority section.
        m.extend_from_slice(&[0xc0, 12, 0, 6, 0, 1, 0, 0, 0x0e, 0x10, 0, 24]);
        m.extend_from_slice(b"\x02ns\xc0\x0c\x02hm\xc0\x0c");
        m.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5][..12]);
    }
    m
}

fn name_rdata(n: &str) -> Vec<u8> {
    let mut r = Vec::new();
    for label in n.split('.') {
        r.push(label.len() as u8);
        r.extend_from_slice(label.as_bytes());
    }
    r.push(0);
    r
}

fn dns_scenario() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let (cl, ns) = (a("10.22.0.10"), a("10.22.0.53"));
    let mut t = 0;
    let exchange = |c: &mut Cap, sport: u16, dport: u16, q: Vec<u8>, r: Option<Vec<u8>>, t: &mut i64| {
        c.ip(*t, ip(cl, ns, 17, &udp(cl, ns, sport, dport, &q)));
        if let Some(r) = r {
            c.ip(*t + 3 * MS, ip(ns, cl, 17, &udp(ns, cl, dport, sport, &r)));
        }
        *t += 100 * MS;
    };
    // A with a CNAME: two answers, RD/RA, mixed-case name logged lower case.
    let q = dns_msg(0x0101, 0x0100, b"WWW.City.example", 1, &[], 0);
    let r = dns_msg(
        0x0101,
        0x8180,
        b"WWW.City.example",
        1,
        &[(5, 300, name_rdata("web.city.example")), (1, 60, vec![192, 0, 2, 80])],
        0,
    );
    exchange(&mut c, 41000, 53, q, Some(r), &mut t);
    // AAAA answered by NXDOMAIN with an SOA in the authority section.
    let q = dns_msg(0x0202, 0x0100, b"missing.city.example", 28, &[], 0);
    let r = dns_msg(0x0202, 0x8583, b"missing.city.example", 28, &[], 1);
    exchange(&mut c, 41001, 53, q, Some(r), &mut t);
    // REFUSED with no records at all: rejected.
    let q = dns_msg(0x0303, 0x0100, b"internal.city.example", 1, &[], 0);
    let r = dns_msg(0x0303, 0x8185, b"internal.city.example", 1, &[], 0);
    exchange(&mut c, 41002, 53, q, Some(r), &mut t);
    // TXT with two strings, authoritative.
    let mut txt = vec![5];
    txt.extend_from_slice(b"v=abc");
    txt.push(3);
    txt.extend_from_slice(b"x y");
    let q = dns_msg(0x0404, 0x0100, b"city.example", 16, &[], 0);
    let r = dns_msg(0x0404, 0x8580, b"city.example", 16, &[(16, 3600, txt)], 0);
    exchange(&mut c, 41003, 53, q, Some(r), &mut t);
    // A query sent twice and never answered: two records.
    let q = dns_msg(0x0505, 0x0100, b"slow.city.example", 1, &[], 0);
    exchange(&mut c, 41004, 53, q.clone(), None, &mut t);
    exchange(&mut c, 41004, 53, q, None, &mut t);
    // DNS on a port registered for nothing: found by its content.
    let q = dns_msg(0x0606, 0x0100, b"sensor-17.water.city.example", 1, &[], 0);
    let r = dns_msg(0x0606, 0x8180, b"sensor-17.water.city.example", 1, &[(1, 30, vec![10, 22, 1, 17])], 0);
    exchange(&mut c, 41005, 5300, q, Some(r), &mut t);
    // A reply whose answer points forward: a weird, no answers.
    let q = dns_msg(0x0707, 0x0100, b"bad.city.example", 1, &[], 0);
    let mut r = dns_msg(0x0707, 0x8180, b"bad.city.example", 1, &[(1, 30, vec![10, 0, 0, 1])], 0);
    let at = 12 + 18 + 4;
    r[at] = 0xc0;
    r[at + 1] = 0xff;
    exchange(&mut c, 41006, 53, q, Some(r), &mut t);
    // Not DNS at all on port 53.
    exchange(&mut c, 41007, 53, b"\x01hello".to_vec(), None, &mut t);
    // A label with a control byte and a NUL: logged escaped.
    let q = dns_msg(0x0808, 0x0100, b"a\x01b\x00c.city.example", 1, &[], 0);
    exchange(&mut c, 41008, 53, q, None, &mut t);
    // DNS over TCP: the query split over two segments sent in reverse
    // order, the response in one segment, framed by 2-byte lengths.
    let framed = |m: Vec<u8>| {
        let mut f = (m.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(&m);
        f
    };
    let q = framed(dns_msg(0x0909, 0x0100, b"big.city.example", 16, &[], 0));
    let r = framed(dns_msg(0x0909, 0x8180, b"big.city.example", 16, &[(16, 120, vec![4, b'b', b'i', b'g', b'!'])], 0));
    let mut s = TcpSession::new(cl, 41009, ns, 53, 5000, 9000);
    c.ip(t, s.seg(true, SYN, &[]));
    c.ip(t + MS, s.seg(false, SYN | ACK, &[]));
    c.ip(t + 2 * MS, s.seg(true, ACK, &[]));
    let start = s.cseq;
    let (q1, q2) = q.split_at(7);
    let second = s.seg_at(true, start.wrapping_add(7), PSH | ACK, q2);
    c.ip(t + 3 * MS, second);
    c.ip(t + 4 * MS, s.seg_at(true, start, PSH | ACK, q1));
    s.cseq = start.wrapping_add(q.len() as u32);
    c.ip(t + 6 * MS, s.seg(false, PSH | ACK, &r));
    c.ip(t + 7 * MS, s.seg(true, FIN | ACK, &[]));
    c.ip(t + 8 * MS, s.seg(false, FIN | ACK, &[]));
    c.ip(t + 9 * MS, s.seg(true, ACK, &[]));
    c
}

/// An unencrypted SSH binary packet (RFC 4253 6) around `payload`.
fn ssh_packet(payload: &[u8]) -> Vec<u8> {
    let pad = 8 - (payload.len() + 5) % 8 + 4;
    let len = (payload.len() + pad + 1) as u32;
    let mut v = len.to_be_bytes().to_vec();
    v.push(pad as u8);
    v.extend_from_slice(payload);
    v.extend(std::iter::repeat_n(0u8, pad));
    v
}

fn ssh_kexinit(kex: &str, hk: &str, enc: &str, mac: &str, comp: &str) -> Vec<u8> {
    let mut p = vec![20];
    p.extend_from_slice(&[0x5a; 16]);
    for s in [kex, hk, enc, enc, mac, mac, comp, comp, "", ""] {
        p.extend_from_slice(&(s.len() as u32).to_be_bytes());
        p.extend_from_slice(s.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 0, 0, 0]);
    ssh_packet(&p)
}

/// One SSH session over TCP: the server's version first (as servers do),
/// the client's, both KEXINITs, the server's ECDH reply with its host key,
/// NEWKEYS both ways, then encrypted bytes and a clean close.
/// An SSH-2 session to NEWKEYS, then encrypted traffic: SERVICE_REQUEST and
/// SERVICE_ACCEPT (96 bytes), then one authentication request per entry of
/// `server_auth`, answered by a server packet of that size.
#[allow(clippy::too_many_arguments)]
fn ssh_session(
    c: &mut Cap,
    t: i64,
    client: &str,
    cport: u16,
    server: &str,
    sport: u16,
    client_banner: &[u8],
    server_auth: &[usize],
) {
    let mut s = TcpSession::new(a(client), cport, a(server), sport, 11_000, 77_000);
    let mut t = t;
    let mut send = |c: &mut Cap, from_client: bool, flags: u8, data: &[u8]| {
        c.ip(t, s.seg(from_client, flags, data));
        t += MS;
    };
    send(c, true, SYN, &[]);
    send(c, false, SYN | ACK, &[]);
    send(c, true, ACK, &[]);
    send(c, false, PSH | ACK, b"SSH-2.0-OpenSSH_9.6 CityGW\r\n");
    send(c, true, PSH | ACK, client_banner);
    send(
        c,
        true,
        PSH | ACK,
        &ssh_kexinit(
            "curve25519-sha256,ecdh-sha2-nistp256,diffie-hellman-group14-sha256",
            "ssh-ed25519,rsa-sha2-512",
            "chacha20-poly1305@openssh.com,aes128-ctr",
            "hmac-sha2-256-etm@openssh.com,hmac-sha2-256",
            "none,zlib@openssh.com",
        ),
    );
    send(
        c,
        false,
        PSH | ACK,
        &ssh_kexinit(
            "curve25519-sha256,ecdh-sha2-nistp256",
            "rsa-sha2-512,ssh-ed25519",
            "aes128-ctr,chacha20-poly1305@openssh.com",
            "hmac-sha2-256",
            "none",
        ),
    );
    let mut ecdh_init = vec![30, 0, 0, 0, 32];
    ecdh_init.extend_from_slice(&[0x11; 32]);
    send(c, true, PSH | ACK, &ssh_packet(&ecdh_init));
    // KEX_ECDH_REPLY: K_S (an ssh-ed25519 key blob), Q_S, signature.
    let mut ks = Vec::new();
    for part in [b"ssh-ed25519".as_slice(), &[0x42; 32]] {
        ks.extend_from_slice(&(part.len() as u32).to_be_bytes());
        ks.extend_from_slice(part);
    }
    let mut reply = vec![31];
    reply.extend_from_slice(&(ks.len() as u32).to_be_bytes());
    reply.extend_from_slice(&ks);
    reply.extend_from_slice(&[0, 0, 0, 32]);
    reply.extend_from_slice(&[0x22; 32]);
    reply.extend_from_slice(&[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
    let mut both = ssh_packet(&reply);
    both.extend_from_slice(&ssh_packet(&[21]));
    send(c, false, PSH | ACK, &both);
    send(c, true, PSH | ACK, &ssh_packet(&[21]));
    send(c, true, PSH | ACK, &[0x9c; 64]);
    send(c, false, PSH | ACK, &[0x3e; 96]);
    for &n in server_auth {
        send(c, true, PSH | ACK, &[0x9d; 128]);
        send(c, false, PSH | ACK, &vec![0x3f; n]);
    }
    send(c, true, FIN | ACK, &[]);
    send(c, false, FIN | ACK, &[]);
    send(c, true, ACK, &[]);
}

/// Sends `data` from one side in segments of at most `mss` bytes, each
/// acknowledged by the other side.
fn stream_send(c: &mut Cap, s: &mut TcpSession, t: &mut i64, from_client: bool, data: &[u8], mss: usize) {
    for part in data.chunks(mss) {
        c.ip(*t, s.seg(from_client, PSH | ACK, part));
        c.ip(*t + 100, s.seg(!from_client, ACK, &[]));
        *t += MS;
    }
}

#[allow(clippy::too_many_arguments)]
fn http_conversation(
    c: &mut Cap,
    t0: i64,
    client: &str,
    cport: u16,
    server: &str,
    sport: u16,
    req: &[u8],
    resp: &[u8],
) {
    let mut s = TcpSession::new(a(client), cport, a(server), sport, 21_000, 61_000);
    let mut t = t0;
    c.ip(t, s.seg(true, SYN, &[]));
    c.ip(t + 100, s.seg(false, SYN | ACK, &[]));
    c.ip(t + 200, s.seg(true, ACK, &[]));
    t += MS;
    stream_send(c, &mut s, &mut t, true, req, 536);
    stream_send(c, &mut s, &mut t, false, resp, 700);
    c.ip(t, s.seg(true, FIN | ACK, &[]));
    c.ip(t + 100, s.seg(false, FIN | ACK, &[]));
    c.ip(t + 200, s.seg(true, ACK, &[]));
}

fn http_scenario() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // Two pipelined requests (the second a chunked upload) and their replies,
    // the second compressed with gzip.
    let req = b"GET /api/levels?station=7 HTTP/1.1\r\nHost: water.city.example\r\nUser-Agent: pump-ctl/2.1\r\n\
Referer: http://portal.city.example/\r\nAuthorization: Basic b3BlcmF0b3I6aHVuVGVyMg==\r\n\r\n\
POST /api/readings HTTP/1.1\r\nHost: water.city.example\r\nTransfer-Encoding: chunked\r\n\r\n\
a\r\n{\"lvl\":1.5\r\n1\r\n}\r\n0\r\n\r\n";
    let body = br#"{"station":7,"level_cm":152,"status":"normal","history":[150,151,152]}"#;
    let mut gz = Vec::new();
    {
        // A stored (uncompressed) gzip member: valid gzip without a
        // compressor in the generator.
        gz.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        gz.push(1);
        gz.extend_from_slice(&(body.len() as u16).to_le_bytes());
        gz.extend_from_slice(&(!(body.len() as u16)).to_le_bytes());
        gz.extend_from_slice(body);
        gz.extend_from_slice(&crc32(body).to_le_bytes());
        gz.extend_from_slice(&(body.len() as u32).to_le_bytes());
    }
    let mut resp =
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len())
            .into_bytes();
    resp.extend_from_slice(body);
    resp.extend_from_slice(
        format!("HTTP/1.1 201 Created\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n", gz.len()).as_bytes(),
    );
    resp.extend_from_slice(&gz);
    http_conversation(&mut c, 0, "10.24.0.10", 53000, "10.24.0.80", 80, req, &resp);
    // HEAD then a 404 whose body runs to the close (HTTP/1.0).
    let req = b"HEAD /index.html HTTP/1.1\r\nHost: portal.city.example\r\n\r\nGET /old HTTP/1.0\r\nHost: portal.city.example\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5120\r\nContent-Type: text/html\r\n\r\nHTTP/1.0 404 Not Found\r\n\r\n<html><body>gone</body></html>";
    http_conversation(&mut c, S, "10.24.0.11", 53001, "10.24.0.80", 80, req, resp);
    // HTTP on port 9999, found by its request line.
    let req = b"GET /camera/3/snapshot.png HTTP/1.1\r\nHost: cam3.traffic.city.example:9999\r\n\r\n";
    let mut resp = b"HTTP/1.1 200 OK\r\nContent-Length: 24\r\n\r\n".to_vec();
    resp.extend_from_slice(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01");
    http_conversation(&mut c, 2 * S, "10.24.0.12", 53002, "10.24.0.93", 9999, req, &resp);
    // Not HTTP on port 80.
    http_conversation(
        &mut c,
        3 * S,
        "10.24.0.13",
        53003,
        "10.24.0.80",
        80,
        b"\x16\x03\x01\x00\x05hello",
        b"\x15\x03\x01\x00\x02\x02\x28",
    );
    c
}

fn ftp_scenario() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let (client, server) = ("10.26.0.10", "10.26.0.21");
    let mut ctl = TcpSession::new(a(client), 55000, a(server), 21, 1_000, 2_000);
    let mut t = 0;
    c.ip(t, ctl.seg(true, SYN, &[]));
    c.ip(t + 100, ctl.seg(false, SYN | ACK, &[]));
    c.ip(t + 200, ctl.seg(true, ACK, &[]));
    t += MS;
    let say = |c: &mut Cap, ctl: &mut TcpSession, t: &mut i64, from_client: bool, line: &str| {
        c.ip(*t, ctl.seg(from_client, PSH | ACK, line.as_bytes()));
        *t += MS;
    };
    say(&mut c, &mut ctl, &mut t, false, "220-City file exchange\r\n220 Ready.\r\n");
    say(&mut c, &mut ctl, &mut t, true, "USER anonymous\r\n");
    say(&mut c, &mut ctl, &mut t, false, "331 Guest login ok, send your e-mail as password.\r\n");
    say(&mut c, &mut ctl, &mut t, true, "PASS ops@city.example\r\n");
    say(&mut c, &mut ctl, &mut t, false, "230 Guest login ok.\r\n");
    say(&mut c, &mut ctl, &mut t, true, "CWD reports\r\n");
    say(&mut c, &mut ctl, &mut t, false, "250 CWD command successful.\r\n");
    say(&mut c, &mut ctl, &mut t, true, "PASV\r\n");
    say(&mut c, &mut ctl, &mut t, false, "227 Entering Passive Mode (10,26,0,21,195,80).\r\n");
    say(&mut c, &mut ctl, &mut t, true, "RETR levels.csv\r\n");
    say(&mut c, &mut ctl, &mut t, false, "150 Opening BINARY mode data connection.\r\n");
    // The passive data channel: client to 10.26.0.21:50000.
    let csv = b"station,level_cm\n7,152\n8,149\n9,160\n";
    let mut d = TcpSession::new(a(client), 55001, a(server), 50000, 7_000, 8_000);
    c.ip(t, d.seg(true, SYN, &[]));
    c.ip(t + 100, d.seg(false, SYN | ACK, &[]));
    c.ip(t + 200, d.seg(true, ACK, &[]));
    c.ip(t + 300, d.seg(false, PSH | ACK, csv));
    c.ip(t + 400, d.seg(false, FIN | ACK, &[]));
    c.ip(t + 500, d.seg(true, FIN | ACK, &[]));
    c.ip(t + 600, d.seg(false, ACK, &[]));
    t += MS;
    say(&mut c, &mut ctl, &mut t, false, "226 Transfer complete.\r\n");
    say(&mut c, &mut ctl, &mut t, true, "PORT 10,26,0,10,214,216\r\n");
    say(&mut c, &mut ctl, &mut t, false, "200 PORT command successful.\r\n");
    say(&mut c, &mut ctl, &mut t, true, "STOR /upload/plan.pdf\r\n");
    say(&mut c, &mut ctl, &mut t, false, "150 Opening data connection.\r\n");
    // The active data channel: server port 20 to the client's port 55000.
    let mut d = TcpSession::new(a(server), 20, a(client), 55000, 3_000, 4_000);
    c.ip(t, d.seg(true, SYN, &[]));
    c.ip(t + 100, d.seg(false, SYN | ACK, &[]));
    c.ip(t + 200, d.seg(true, ACK, &[]));
    let mut pdf = b"%PDF-1.4\n".to_vec();
    pdf.extend_from_slice(&[b'z'; 300]);
    c.ip(t + 300, d.seg(false, PSH | ACK, &pdf));
    c.ip(t + 400, d.seg(false, FIN | ACK, &[]));
    c.ip(t + 500, d.seg(true, FIN | ACK, &[]));
    c.ip(t + 600, d.seg(false, ACK, &[]));
    t += MS;
    say(&mut c, &mut ctl, &mut t, false, "226 Transfer complete.\r\n");
    say(&mut c, &mut ctl, &mut t, true, "QUIT\r\n");
    say(&mut c, &mut ctl, &mut t, false, "221 Goodbye.\r\n");
    c.ip(t, ctl.seg(true, FIN | ACK, &[]));
    c.ip(t + 100, ctl.seg(false, FIN | ACK, &[]));
    c.ip(t + 200, ctl.seg(true, ACK, &[]));
    c
}

/// An NTP header: version/mode, stratum, poll and precision exponents, root
/// delay and dispersion (16.16 seconds), reference id, and the four
/// timestamps given as Unix seconds with a fraction (0 leaves one unset).
#[allow(clippy::too_many_arguments)]
fn ntp_msg(
    vm: u8,
    stratum: u8,
    poll: i8,
    precision: i8,
    root: (u32, u32),
    ref_id: [u8; 4],
    times: [f64; 4],
) -> Vec<u8> {
    let mut p = vec![vm, stratum, poll as u8, precision as u8];
    p.extend_from_slice(&root.0.to_be_bytes());
    p.extend_from_slice(&root.1.to_be_bytes());
    p.extend_from_slice(&ref_id);
    for t in times {
        if t == 0.0 {
            p.extend_from_slice(&[0; 8]);
        } else {
            let secs = t.trunc() as u64 + 2_208_988_800;
            let frac = (t.fract() * 4_294_967_296.0) as u64;
            p.extend_from_slice(&(secs as u32).to_be_bytes());
            p.extend_from_slice(&(frac as u32).to_be_bytes());
        }
    }
    p
}

fn ntp_scenario() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let (cl, srv, gps, bc) = (a("10.28.0.40"), a("10.28.0.123"), a("10.28.0.1"), a("10.28.0.255"));
    let t0 = 1_700_000_000.0;
    // A client (version 4, mode 3) asks the city's time server, which syncs
    // from a stratum-1 GPS clock, and gets a mode-4 reply.
    let q = ntp_msg(0x23, 0, 6, -20, (0, 0), [0; 4], [0.0, 0.0, 0.0, t0 + 0.25]);
    let r = ntp_msg(
        0x24,
        2,
        6,
        -23,
        (0x0000_2000, 0x0000_1000),
        [10, 28, 0, 1],
        [t0 - 30.0, t0 + 0.25, t0 + 0.5, t0 + 0.5],
    );
    c.ip(0, ip(cl, srv, 17, &udp(cl, srv, 42123, 123, &q)));
    c.ip(2 * MS, ip(srv, cl, 17, &udp(srv, cl, 123, 42123, &r)));
    // The time server polls the GPS clock (symmetric active, mode 1), which
    // answers as stratum 1 with its reference name and an extension field.
    let q = ntp_msg(0x21, 2, 10, -23, (0x0000_2000, 0x0000_1000), [10, 28, 0, 1], [t0 - 30.0, 0.0, 0.0, t0 + 1.0]);
    let mut r = ntp_msg(0x1a, 1, 10, -20, (0, 0x0000_0100), *b"GPS\0", [t0, t0 + 1.0, t0 + 1.001, t0 + 1.001]);
    r.extend_from_slice(&[0x01, 0x04, 0x00, 0x18]);
    r.extend_from_slice(&[0; 20]);
    c.ip(S, ip(srv, gps, 17, &udp(srv, gps, 123, 123, &q)));
    c.ip(S + MS, ip(gps, srv, 17, &udp(gps, srv, 123, 123, &r)));
    // A broadcast (mode 5) to the segment.
    let b = ntp_msg(0x25, 2, 6, -23, (0x0000_2000, 0x0000_1000), [10, 28, 0, 1], [t0 - 30.0, 0.0, 0.0, t0 + 2.0]);
    c.ip(2 * S, ip(srv, bc, 17, &udp(srv, bc, 123, 123, &b)));
    // Not NTP: a short datagram and one claiming version 7 on port 123.
    c.ip(3 * S, ip(cl, srv, 17, &udp(cl, srv, 42124, 123, b"time?")));
    let bad = ntp_msg(0x3b, 0, 6, -20, (0, 0), [0; 4], [0.0, 0.0, 0.0, t0 + 3.0]);
    c.ip(3 * S + MS, ip(cl, srv, 17, &udp(cl, srv, 42125, 123, &bad)));
    c
}

/// A DHCP message: op (1 request, 2 reply), transaction id, client address,
/// offered address, the client's Ethernet address and the options after the
/// message type.
fn dhcp_msg(
    op: u8,
    xid: u32,
    ciaddr: [u8; 4],
    yiaddr: [u8; 4],
    mac: [u8; 6],
    kind: u8,
    opts: &[(u8, &[u8])],
) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[..4].copy_from_slice(&[op, 1, 6, 0]);
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[12..16].copy_from_slice(&ciaddr);
    p[16..20].copy_from_slice(&yiaddr);
    p[28..34].copy_from_slice(&mac);
    p.extend_from_slice(&[99, 130, 83, 99, 53, 1, kind]);
    for (code, v) in opts {
        p.push(*code);
        p.push(v.len() as u8);
        p.extend_from_slice(v);
    }
    p.push(255);
    // Padded to BOOTP's minimum size, as clients do.
    p.resize(p.len().max(300), 0);
    p
}

fn dhcp_scenario() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let (any, bcast, srv) = (a("0.0.0.0"), a("255.255.255.255"), a("10.29.0.1"));
    let cam = [0x00, 0x1b, 0x63, 0x84, 0x45, 0xe6];
    let light = [0x3c, 0x71, 0xbf, 0x10, 0x20, 0x30];
    let client_id = [1, 0x00, 0x1b, 0x63, 0x84, 0x45, 0xe6];
    let sid: &[u8] = &[10, 29, 0, 1];
    let lease: &[u8] = &86_400u32.to_be_bytes();
    let domain: &[u8] = b"cameras.city.example";
    let bc = |c: &mut Cap, t: i64, from: IpAddr, sport: u16, dport: u16, m: &[u8]| {
        c.ip(t, ip(from, bcast, 17, &udp(from, bcast, sport, dport, m)));
    };
    // A traffic camera boots: DISCOVER, OFFER, REQUEST, ACK, all broadcast.
    let x = 0x3903_f326;
    let name: &[u8] = b"cam-junction-12";
    let fqdn: &[u8] = b"\x04\x00\x00\x0fcam-junction-12\x07cameras\x04city\x07example\x00";
    let d = dhcp_msg(1, x, [0; 4], [0; 4], cam, 1, &[(61, &client_id), (12, name), (55, &[1, 3, 6, 15, 42])]);
    bc(&mut c, 0, any, 68, 67, &d);
    let o = dhcp_msg(
        2,
        x,
        [0; 4],
        [10, 29, 0, 57],
        cam,
        2,
        &[(54, sid), (51, lease), (15, domain), (1, &[255, 255, 255, 0])],
    );
    bc(&mut c, 3 * MS, srv, 67, 68, &o);
    let r = dhcp_msg(
        1,
        x,
        [0; 4],
        [0; 4],
        cam,
        3,
        &[(61, &client_id), (50, &[10, 29, 0, 57]), (54, sid), (12, name), (81, fqdn)],
    );
    bc(&mut c, 500 * MS, any, 68, 67, &r);
    let k = dhcp_msg(2, x, [0; 4], [10, 29, 0, 57], cam, 5, &[(54, sid), (51, lease), (15, domain)]);
    bc(&mut c, 503 * MS, srv, 67, 68, &k);
    // Twelve hours later the camera renews by unicast.
    let x = 0x5a11_0001;
    let t = 60 * S;
    let me = a("10.29.0.57");
    let r = dhcp_msg(1, x, [10, 29, 0, 57], [0; 4], cam, 3, &[(61, &client_id), (12, name)]);
    c.ip(t, ip(me, srv, 17, &udp(me, srv, 68, 67, &r)));
    let k = dhcp_msg(2, x, [10, 29, 0, 57], [10, 29, 0, 57], cam, 5, &[(54, sid), (51, lease)]);
    c.ip(t + 2 * MS, ip(srv, me, 17, &udp(srv, me, 67, 68, &k)));
    // A street light asks for an address from another subnet and is refused;
    // it sends no client identifier, so its MAC comes from the header.
    let x = 0x00c0_ffee;
    let t = 120 * S;
    let r = dhcp_msg(1, x, [0; 4], [0; 4], light, 3, &[(50, &[192, 168, 1, 50]), (12, b"light-0412")]);
    bc(&mut c, t, any, 68, 67, &r);
    let n = dhcp_msg(2, x, [0; 4], [0; 4], light, 6, &[(54, sid), (56, b"requested address not on this subnet")]);
    bc(&mut c, t + 2 * MS, srv, 67, 68, &n);
    // Not DHCP: a short datagram to the server port.
    c.ip(180 * S, ip(me, srv, 17, &udp(me, srv, 40000, 67, b"hello?")));
    c
}

fn quic_scenario() -> Cap {
    use crate::quic::{ack0, crypto, initial, V1, V2};
    let mut c = Cap::new(DLT_EN10MB);
    let (cl, srv, portal) = (a("10.30.0.20"), a("10.30.0.80"), a("10.30.0.81"));
    // Version 1 on 443: the ClientHello's CRYPTO data in two frames, the
    // second half first (browsers shuffle them), and the server's Initial
    // with its ServerHello.
    let odcid = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
    let (cscid, sscid) = ([0xc1, 0x01, 0x02, 0x03], [0x5e, 0x01, 0x02, 0x03, 0x04]);
    let hello = client_hello(Some("traffic.city.example"), &["h3"], true);
    let half = hello.len() / 2;
    let mut frames = crypto(half as u64, &hello[half..]);
    frames.extend(crypto(0, &hello[..half]));
    let p = initial(V1, &odcid, &odcid, &cscid, true, 0, &frames, 1200);
    c.ip(0, ip(cl, srv, 17, &udp(cl, srv, 51000, 443, &p)));
    let mut frames = ack0();
    frames.extend(crypto(0, &server_hello(0x1301, None, true)));
    let p = initial(V1, &odcid, &cscid, &sscid, false, 0, &frames, 0);
    c.ip(5 * MS, ip(srv, cl, 17, &udp(srv, cl, 443, 51000, &p)));
    // Version 2 on a non-standard port: the ClientHello spans two Initial
    // packets in two datagrams.
    let odcid = [0x0a, 0xc5, 0x03, 0xe9, 0x80, 0x8e, 0xff, 0x1c, 0xa8, 0xa3];
    let hello = client_hello(Some("portal.city.example"), &["h3", "h3-29"], true);
    let half = hello.len() / 2;
    let p = initial(V2, &odcid, &odcid, &[], true, 0, &crypto(0, &hello[..half]), 1200);
    c.ip(S, ip(cl, portal, 17, &udp(cl, portal, 51001, 4433, &p)));
    let p = initial(V2, &odcid, &odcid, &[], true, 1, &crypto(half as u64, &hello[half..]), 1200);
    c.ip(S + MS, ip(cl, portal, 17, &udp(cl, portal, 51001, 4433, &p)));
    // Not QUIC: a short datagram to 443.
    c.ip(2 * S, ip(cl, srv, 17, &udp(cl, srv, 51002, 443, b"\xc0hello")));
    c
}

fn smtp_scenario() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let dialog = |c: &mut Cap, t0: i64, cport: u16, lines: &[(bool, &[u8])]| {
        let mut s = TcpSession::new(a("10.27.0.5"), cport, a("10.27.0.25"), 25, 40_000, 50_000);
        let mut t = t0;
        c.ip(t, s.seg(true, SYN, &[]));
        c.ip(t + 100, s.seg(false, SYN | ACK, &[]));
        c.ip(t + 200, s.seg(true, ACK, &[]));
        t += MS;
        for (from_client, data) in lines {
            stream_send(c, &mut s, &mut t, *from_client, data, 536);
        }
        c.ip(t, s.seg(true, FIN | ACK, &[]));
        c.ip(t + 100, s.seg(false, FIN | ACK, &[]));
        c.ip(t + 200, s.seg(true, ACK, &[]));
    };
    let message = b"Received: from ws17.city.example ([10.27.3.17]) by relay.city.example\r\n\
Date: Tue, 14 Nov 2023 22:13:20 +0700\r\nFrom: Water Ops <ops@water.city.example>\r\n\
To: chief@police.city.example, desk@police.city.example\r\nCc: audit@city.example\r\n\
Subject: Pump station 7 readings\r\nMessage-ID: <7.1700000000@water.city.example>\r\n\
X-Mailer: CityMail 3.2\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"==b1==\"\r\n\r\n\
This is a multi-part message.\r\n--==b1==\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\nLevels attached =E2=80=94 station 7 is norm=\r\nal.\r\n\r\n\
--==b1==\r\nContent-Type: text/csv; name=\"levels.csv\"\r\nContent-Disposition: attachment; filename=\"levels.csv\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nc3RhdGlvbixsZXZlbF9jbQo3LDE1Mgo4LDE0OQo5LDE2MAo=\r\n--==b1==--\r\n.\r\n";
    dialog(
        &mut c,
        0,
        56000,
        &[
            (false, b"220 relay.city.example ESMTP\r\n"),
            (true, b"EHLO ws17.city.example\r\n"),
            (false, b"250-relay.city.example\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"),
            (true, b"MAIL FROM:<ops@water.city.example>\r\n"),
            (false, b"250 2.1.0 Ok\r\n"),
            (true, b"RCPT TO:<chief@police.city.example>\r\n"),
            (false, b"250 2.1.5 Ok\r\n"),
            (true, b"RCPT TO:<desk@police.city.example>\r\n"),
            (false, b"250 2.1.5 Ok\r\n"),
            (true, b"DATA\r\n"),
            (false, b"354 End data with <CR><LF>.<CR><LF>\r\n"),
            (true, message),
            (false, b"250 2.0.0 Ok: queued as 7A1B2\r\n"),
            (true, b"MAIL FROM:<ops@water.city.example>\r\n"),
            (false, b"250 2.1.0 Ok\r\n"),
            (true, b"RCPT TO:<audit@city.example>\r\n"),
            (false, b"250 2.1.5 Ok\r\n"),
            (true, b"DATA\r\n"),
            (false, b"354 go ahead\r\n"),
            (true, b"Subject: heartbeat\r\n\r\nok\r\n.\r\n"),
            (false, b"250 2.0.0 Ok: queued as 7A1B3\r\n"),
            (true, b"QUIT\r\n"),
            (false, b"221 2.0.0 Bye\r\n"),
        ],
    );
    // STARTTLS accepted: the rest is a TLS handshake.
    dialog(
        &mut c,
        S,
        56001,
        &[
            (false, b"220 relay.city.example ESMTP\r\n"),
            (true, b"EHLO ws18.city.example\r\n"),
            (false, b"250-relay.city.example\r\n250 STARTTLS\r\n"),
            (true, b"MAIL FROM:<a@city.example>\r\n"),
            (false, b"250 Ok\r\n"),
            (true, b"STARTTLS\r\n"),
            (false, b"220 Ready to start TLS\r\n"),
            (true, &tls_record(22, &client_hello(Some("relay.city.example"), &[], false))),
        ],
    );
    // STARTTLS refused: the session goes on in the clear.
    dialog(
        &mut c,
        2 * S,
        56002,
        &[
            (false, b"220 relay.city.example ESMTP\r\n"),
            (true, b"EHLO ws19.city.example\r\n"),
            (false, b"250 relay.city.example\r\n"),
            (true, b"STARTTLS\r\n"),
            (false, b"454 4.7.0 TLS not available due to temporary reason\r\n"),
            (true, b"MAIL FROM:<b@city.example>\r\n"),
            (false, b"250 Ok\r\n"),
            (true, b"RCPT TO:<c@city.example>\r\n"),
            (false, b"250 Ok\r\n"),
            (true, b"DATA\r\n"),
            (false, b"354 go ahead\r\n"),
            (true, b"Subject: plain\r\n\r\nx\r\n.\r\n"),
            (false, b"250 Ok: queued as 7A1B4\r\n"),
            (true, b"QUIT\r\n"),
            (false, b"221 Bye\r\n"),
        ],
    );
    c
}

fn tls_record(ctype: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![ctype, 3, 3];
    r.extend_from_slice(&(body.len() as u16).to_be_bytes());
    r.extend_from_slice(body);
    r
}

fn tls_handshake(t: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![t];
    m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    m.extend_from_slice(body);
    m
}

fn tls_ext(t: u16, body: &[u8]) -> Vec<u8> {
    let mut e = t.to_be_bytes().to_vec();
    e.extend_from_slice(&(body.len() as u16).to_be_bytes());
    e.extend_from_slice(body);
    e
}

fn u16s(len_bytes: usize, v: &[u16]) -> Vec<u8> {
    let n = v.len() * 2;
    let mut b = if len_bytes == 1 { vec![n as u8] } else { (n as u16).to_be_bytes().to_vec() };
    for x in v {
        b.extend_from_slice(&x.to_be_bytes());
    }
    b
}

fn client_hello(sni: Option<&str>, alpn: &[&str], tls13: bool) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[0x21; 32]);
    b.push(32);
    b.extend_from_slice(&[0x44; 32]);
    let ciphers = [0x2a2a, 0x1301, 0x1302, 0xc02b, 0xc02f, 0xc030, 0xcca9, 0x009c, 0x002f];
    b.extend_from_slice(&u16s(2, &ciphers));
    b.extend_from_slice(&[1, 0]);
    let mut e = tls_ext(0x3a3a, &[]);
    if let Some(n) = sni {
        let mut v = ((n.len() + 3) as u16).to_be_bytes().to_vec();
        v.push(0);
        v.extend_from_slice(&(n.len() as u16).to_be_bytes());
        v.extend_from_slice(n.as_bytes());
        e.extend_from_slice(&tls_ext(0, &v));
    }
    e.extend_from_slice(&tls_ext(23, &[]));
    e.extend_from_slice(&tls_ext(0xff01, &[0]));
    e.extend_from_slice(&tls_ext(10, &u16s(2, &[0x4a4a, 29, 23, 24])));
    e.extend_from_slice(&tls_ext(11, &[1, 0]));
    e.extend_from_slice(&tls_ext(35, &[]));
    if !alpn.is_empty() {
        let mut l = Vec::new();
        for p in alpn {
            l.push(p.len() as u8);
            l.extend_from_slice(p.as_bytes());
        }
        let mut v = (l.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(&l);
        e.extend_from_slice(&tls_ext(16, &v));
    }
    e.extend_from_slice(&tls_ext(13, &u16s(2, &[0x0403, 0x0804, 0x0401, 0x0503])));
    if tls13 {
        e.extend_from_slice(&tls_ext(43, &u16s(1, &[0x5a5a, 0x0304, 0x0303])));
        let mut ks = vec![0, 36, 0, 29, 0, 32];
        ks.extend_from_slice(&[0x55; 32]);
        e.extend_from_slice(&tls_ext(51, &ks));
        e.extend_from_slice(&tls_ext(45, &[1, 1]));
    }
    b.extend_from_slice(&(e.len() as u16).to_be_bytes());
    b.extend_from_slice(&e);
    tls_handshake(1, &b)
}

fn server_hello(cipher: u16, alpn: Option<&str>, tls13: bool) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[0x31; 32]);
    b.push(32);
    b.extend_from_slice(&[0x66; 32]);
    b.extend_from_slice(&cipher.to_be_bytes());
    b.push(0);
    let mut e = Vec::new();
    if tls13 {
        e.extend_from_slice(&tls_ext(43, &[3, 4]));
        let mut ks = vec![0, 29, 0, 32];
        ks.extend_from_slice(&[0x77; 32]);
        e.extend_from_slice(&tls_ext(51, &ks));
    } else {
        e.extend_from_slice(&tls_ext(0xff01, &[0]));
        e.extend_from_slice(&tls_ext(11, &[1, 0]));
    }
    if let Some(p) = alpn {
        let mut v = ((p.len() + 1) as u16).to_be_bytes().to_vec();
        v.push(p.len() as u8);
        v.extend_from_slice(p.as_bytes());
        e.extend_from_slice(&tls_ext(16, &v));
    }
    b.extend_from_slice(&(e.len() as u16).to_be_bytes());
    b.extend_from_slice(&e);
    tls_handshake(2, &b)
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    if content.len() < 128 {
        v.push(content.len() as u8);
    } else {
        v.push(0x82);
        v.extend_from_slice(&(content.len() as u16).to_be_bytes());
    }
    v.extend_from_slice(content);
    v
}

fn der_name(parts: &[(&[u8], &str)]) -> Vec<u8> {
    let mut seq = Vec::new();
    for (oid, val) in parts {
        let mut atv = der(0x06, oid);
        atv.extend_from_slice(&der(0x0c, val.as_bytes()));
        seq.extend_from_slice(&der(0x31, &der(0x30, &atv)));
    }
    der(0x30, &seq)
}

/// A Certificate message with one certificate whose names are set (the key
/// and signature are placeholders: the sensor reads names only).
fn certificate(subject_cn: &str) -> Vec<u8> {
    certificate_from(subject_cn, "City Issuing CA")
}

fn certificate_from(subject_cn: &str, issuer_cn: &str) -> Vec<u8> {
    let mut tbs = der(0xa0, &der(0x02, &[2]));
    tbs.extend_from_slice(&der(0x02, &[0x10, 0x20]));
    tbs.extend_from_slice(&der(0x30, &der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 2])));
    tbs.extend_from_slice(&der_name(&[(&[0x55, 4, 6], "VN"), (&[0x55, 4, 10], "City"), (&[0x55, 4, 3], issuer_cn)]));
    tbs.extend_from_slice(&der(0x30, &[]));
    tbs.extend_from_slice(&der_name(&[(&[0x55, 4, 6], "VN"), (&[0x55, 4, 10], "City"), (&[0x55, 4, 3], subject_cn)]));
    tbs.extend_from_slice(&der(0x30, &[0x05, 0x00]));
    let mut cert = der(0x30, &tbs);
    cert.extend_from_slice(&der(0x30, &der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 2])));
    cert.extend_from_slice(&der(0x03, &[0, 1, 2, 3]));
    let cert = der(0x30, &cert);
    let mut body = ((cert.len() + 3) as u32).to_be_bytes()[1..].to_vec();
    body.extend_from_slice(&(cert.len() as u32).to_be_bytes()[1..]);
    body.extend_from_slice(&cert);
    tls_handshake(11, &body)
}

fn tls_scenario() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    let conv = |c: &mut Cap, t0: i64, cport: u16, server: &str, sport: u16, flights: &[(bool, Vec<u8>)]| {
        let mut s = TcpSession::new(a("10.25.0.10"), cport, a(server), sport, 31_000, 91_000);
        let mut t = t0;
        c.ip(t, s.seg(true, SYN, &[]));
        c.ip(t + 100, s.seg(false, SYN | ACK, &[]));
        c.ip(t + 200, s.seg(true, ACK, &[]));
        t += MS;
        for (from_client, data) in flights {
            stream_send(c, &mut s, &mut t, *from_client, data, 1200);
        }
        c.ip(t, s.seg(true, FIN | ACK, &[]));
        c.ip(t + 100, s.seg(false, FIN | ACK, &[]));
        c.ip(t + 200, s.seg(true, ACK, &[]));
    };
    // TLS 1.2 with ECDHE: certificate and key exchange in clear.
    let mut server_flight = tls_record(22, &server_hello(0xc02f, Some("http/1.1"), false));
    server_flight.extend_from_slice(&tls_record(22, &certificate("portal.city.example")));
    let mut ske = vec![3, 0, 23, 65, 4];
    ske.extend_from_slice(&[0x99; 64]);
    ske.extend_from_slice(&[4, 3, 0, 4, 1, 2, 3, 4]);
    let mut hs = tls_handshake(12, &ske);
    hs.extend_from_slice(&tls_handshake(14, &[]));
    server_flight.extend_from_slice(&tls_record(22, &hs));
    let mut client_fin = tls_record(22, &tls_handshake(16, &[65; 66]));
    client_fin.extend_from_slice(&tls_record(20, &[1]));
    client_fin.extend_from_slice(&tls_record(22, &[0xab; 40]));
    let mut server_fin = tls_record(20, &[1]);
    server_fin.extend_from_slice(&tls_record(22, &[0xcd; 40]));
    conv(
        &mut c,
        0,
        54000,
        "10.25.0.43",
        443,
        &[
            (true, tls_record(22, &client_hello(Some("portal.city.example"), &["h2", "http/1.1"], false))),
            (false, server_flight),
            (true, client_fin),
            (false, server_fin),
            (true, tls_record(23, &[0x17; 120])),
            (false, tls_record(23, &[0x18; 900])),
        ],
    );
    // TLS 1.3: everything after the ServerHello is encrypted.
    let mut sh = tls_record(22, &server_hello(0x1301, None, true));
    sh.extend_from_slice(&tls_record(20, &[1]));
    sh.extend_from_slice(&tls_record(23, &[0x2e; 700]));
    let mut cf = tls_record(20, &[1]);
    cf.extend_from_slice(&tls_record(23, &[0x2f; 60]));
    conv(
        &mut c,
        S,
        54001,
        "10.25.0.44",
        8443,
        &[
            (true, tls_record(22, &client_hello(Some("api.traffic.city.example"), &["h2"], true))),
            (false, sh),
            (true, cf),
        ],
    );
    // No SNI, refused with a handshake_failure alert.
    conv(
        &mut c,
        2 * S,
        54002,
        "10.25.0.45",
        443,
        &[(true, tls_record(22, &client_hello(None, &[], false))), (false, tls_record(21, &[2, 40]))],
    );
    c
}

/// CRC-32 (IEEE 802.3), for the gzip trailer.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn ssh_scenario() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // From the Internet to a city gateway: INBOUND.
    // Two failed passwords (112-byte USERAUTH_FAILUREs), then a success (80
    // bytes, 16 fewer than SERVICE_ACCEPT).
    ssh_session(&mut c, 0, "198.100.7.9", 52000, "10.23.0.22", 22, b"SSH-2.0-libssh_0.10.6\r\n", &[112, 112, 80]);
    // Between two city hosts on port 2222: found by content, no direction.
    // Only failures: the first sets the failure size, the second counts.
    ssh_session(&mut c, S, "10.23.0.5", 52001, "10.23.0.6", 2222, b"SSH-2.0-PuTTY_Release_0.81\r\n", &[112, 112]);
    // A client that speaks something else to port 22.
    let mut x = TcpSession::new(a("10.23.0.7"), 52002, a("10.23.0.22"), 22, 1, 2);
    c.ip(2 * S, x.seg(true, SYN, &[]));
    c.ip(2 * S + MS, x.seg(false, SYN | ACK, &[]));
    c.ip(2 * S + 2 * MS, x.seg(true, ACK, &[]));
    c.ip(2 * S + 3 * MS, x.seg(true, PSH | ACK, b"GET / HTTP/1.0\r\n\r\n"));
    c
}

fn linktype(lt: u32) -> Cap {
    let mut c = Cap::new(lt);
    session(&mut c, 0, "10.21.0.1", 47000, "10.21.0.2", 9000, 20, &[30]);
    let (x, y) = (a("fd00:21::1"), a("fd00:21::2"));
    c.ip(50 * MS, ip(x, y, 17, &udp(x, y, 5353, 5353, &[1; 20])));
    c
}

/// Writes the named scenario as a pcap file; returns the packet count.
pub fn scenario(name: &str, w: &mut impl Write) -> io::Result<u64> {
    let cap = match name {
        "tcp-basic" => tcp_basic(),
        "tcp-states" => tcp_states(),
        "tcp-flip" => tcp_flip(),
        "tcp-retransmit-gap" => tcp_retransmit_gap(),
        "tcp-reuse-timeouts" => tcp_reuse_timeouts(),
        "udp-flows" => udp_flows(),
        "icmp" => icmp_scenario(),
        "vlan-mpls-pppoe" => vlan_mpls_pppoe(),
        "ip-fragments" => ip_fragments(),
        "tunnels" => tunnels(),
        "other-protocols" => other_protocols(),
        "malformed" => malformed(),
        "checksums" => checksums(),
        "dns" => dns_scenario(),
        "ssh" => ssh_scenario(),
        "http" => http_scenario(),
        "tls" => tls_scenario(),
        "ftp" => ftp_scenario(),
        "smtp" => smtp_scenario(),
        "ntp" => ntp_scenario(),
        "dhcp" => dhcp_scenario(),
        "quic" => quic_scenario(),
        "web-attacks" => attacks::web_attacks(),
        "web-benign" => attacks::web_benign(),
        "web-hostile" => attacks::web_hostile(),
        "port-scan" => attacks::port_scan(),
        "scan-benign" => attacks::scan_benign(),
        "ssh-bruteforce" => attacks::ssh_bruteforce(),
        "dns-dyndns" => attacks::dns_dyndns(),
        "exposure" => attacks::exposure(),
        "exposure-benign" => attacks::exposure_benign(),
        "tls-self-signed" => attacks::tls_self_signed(),
        "ftp-cleartext" => attacks::ftp_cleartext(),
        "intel-hits" => attacks::intel_hits(),
        "ics-modbus-write" => ics::ics_modbus_write(),
        "ics-modbus-benign" => ics::ics_modbus_benign(),
        "ics-dnp3-restart" => ics::ics_dnp3_restart(),
        "ics-dnp3-benign" => ics::ics_dnp3_benign(),
        "iot-mqtt-abuse" => ics::iot_mqtt_abuse(),
        "iot-mqtt-benign" => ics::iot_mqtt_benign(),
        "iot-coap-abuse" => ics::iot_coap_abuse(),
        "iot-coap-benign" => ics::iot_coap_benign(),
        "iot-snmp-abuse" => ics::iot_snmp_abuse(),
        "iot-snmp-benign" => ics::iot_snmp_benign(),
        "iot-bacnet-abuse" => ics::iot_bacnet_abuse(),
        "iot-bacnet-benign" => ics::iot_bacnet_benign(),
        "anomaly-scan" => models::anomaly_scan(),
        "anomaly-scan-benign" => models::anomaly_scan_benign(),
        "anomaly-flood" => models::anomaly_flood(),
        "anomaly-flood-benign" => models::anomaly_flood_benign(),
        "anomaly-beacon" => models::anomaly_beacon(),
        "anomaly-beacon-benign" => models::anomaly_beacon_benign(),
        "anomaly-dns" => models::anomaly_dns(),
        "anomaly-dns-benign" => models::anomaly_dns_benign(),
        "anomaly-bruteforce" => models::anomaly_bruteforce(),
        "anomaly-bruteforce-benign" => models::anomaly_bruteforce_benign(),
        "anomaly-iot" => models::anomaly_iot(),
        "anomaly-iot-benign" => models::anomaly_iot_benign(),
        "linktype-sll" => linktype(DLT_LINUX_SLL),
        "linktype-sll2" => linktype(DLT_LINUX_SLL2),
        "linktype-null" => linktype(DLT_NULL),
        "linktype-raw" => linktype(DLT_RAW),
        "linktype-ppp" => linktype(DLT_PPP),
        "linktype-chdlc" => linktype(DLT_C_HDLC),
        other => return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("unknown scenario {other:?}"))),
    };
    cap.write(w)
}

/// A deterministic xorshift generator: the benchmark capture must be the same
/// on every machine, and needs no cryptographic quality.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A flow in progress in the benchmark mix.
struct MixFlow {
    sess: TcpSession,
    step: u32,
    data_pkts: u32,
    small: bool,
}

/// A realistic mix for the benchmark: interleaved TCP sessions (handshake,
/// data of mixed sizes, teardown), DNS-like UDP exchanges and pings across
/// many hosts, `target_bytes` of capture in all. With `small`, payloads stay
/// under 100 bytes to stress the per-packet cost.
pub fn bench_mix_with(w: &mut impl Write, target_bytes: u64, small: bool) -> io::Result<u64> {
    let mut pw = PcapWriter::new(w, DLT_EN10MB)?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut active: Vec<MixFlow> = Vec::new();
    let mut written: u64 = 24;
    let mut t = T0;
    let mut next_port: u32 = 0;
    let concurrency = 20_000usize;
    let payload = vec![0x78u8; 1460];
    while written < target_bytes {
        t += 1 + rng.below(4) as i64;
        let roll = rng.below(100);
        let frame = if active.len() < concurrency && roll < 3 {
            next_port = next_port.wrapping_add(1);
            let client = IpAddr::V4(std::net::Ipv4Addr::new(
                10,
                (next_port >> 16) as u8 & 0x3f,
                (next_port >> 8) as u8,
                next_port as u8,
            ));
            let server = IpAddr::V4(std::net::Ipv4Addr::new(172, 16, rng.below(16) as u8, 1 + rng.below(250) as u8));
            let cport = 1024 + (next_port % 60000) as u16;
            let sport = [80u16, 443, 8080, 443, 1883, 502][rng.below(6) as usize];
            let mut f = MixFlow {
                sess: TcpSession::new(client, cport, server, sport, rng.next() as u32, rng.next() as u32),
                step: 0,
                data_pkts: 4 + rng.below(24) as u32,
                small,
            };
            let p = f.sess.seg(true, SYN, &[]);
            f.step = 1;
            active.push(f);
            eth(ETH_IPV4, &p)
        } else if roll < 10 {
            // A DNS-like exchange or a ping, as a single packet of a short flow.
            let n = rng.next();
            let c = IpAddr::V4(std::net::Ipv4Addr::new(10, 64 + (n >> 8) as u8 % 64, (n >> 16) as u8, (n >> 24) as u8));
            let s = IpAddr::V4(std::net::Ipv4Addr::new(172, 17, 0, 53));
            let d = if roll < 8 {
                {
                    // A real DNS query, so the DNS analyzer does real work.
                    let name = format!("host-{}.district-{}.city.example", n % 100_000, (n >> 20) % 12);
                    let q = dns_msg((n >> 40) as u16, 0x0100, name.as_bytes(), 1, &[], 0);
                    ip(c, s, 17, &udp(c, s, 1024 + (n >> 32) as u16 % 60000, 53, &q))
                }
            } else {
                ipv4(
                    match c {
                        IpAddr::V4(v) => v,
                        IpAddr::V6(_) => std::net::Ipv4Addr::LOCALHOST,
                    },
                    std::net::Ipv4Addr::new(172, 17, 0, 1),
                    1,
                    &icmp(8, 0, &payload[..60]),
                    V4Opts::default(),
                )
            };
            eth(ETH_IPV4, &d)
        } else if !active.is_empty() {
            let i = rng.below(active.len() as u64) as usize;
            let f = &mut active[i];
            let p = match f.step {
                1 => f.sess.seg(false, SYN | ACK, &[]),
                2 => f.sess.seg(true, ACK, &[]),
                // The first exchange speaks the port's protocol, so the
                // analyzers do the work they would on real traffic.
                3 => match f.sess.sport {
                    80 | 8080 => f.sess.seg(
                        true,
                        PSH | ACK,
                        b"GET /api/v1/status HTTP/1.1\r\nHost: svc.city.example\r\nUser-Agent: bench/1\r\n\r\n",
                    ),
                    443 => f.sess.seg(
                        true,
                        PSH | ACK,
                        &tls_record(22, &client_hello(Some("svc.city.example"), &["h2"], true)),
                    ),
                    _ => f.sess.seg(true, PSH | ACK, &payload[..40]),
                },
                4 => match f.sess.sport {
                    80 | 8080 => f.sess.seg(
                        false,
                        PSH | ACK,
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{}",
                    ),
                    443 => f.sess.seg(false, PSH | ACK, &tls_record(22, &server_hello(0x1301, Some("h2"), true))),
                    _ => f.sess.seg(false, PSH | ACK, &payload[..40]),
                },
                s if s < 3 + f.data_pkts => {
                    let n = if f.small {
                        10 + rng.below(80) as usize
                    } else {
                        [60usize, 200, 576, 1460, 1460][rng.below(5) as usize]
                    };
                    // HTTP bodies flow from the server; TLS carries records.
                    let from_client = f.sess.sport != 80 && f.sess.sport != 8080 && rng.below(4) == 0;
                    if rng.below(3) == 0 {
                        f.sess.seg(!from_client, ACK, &[])
                    } else if f.sess.sport == 443 {
                        let mut r = vec![23, 3, 3];
                        r.extend_from_slice(&((n.max(6) - 5) as u16).to_be_bytes());
                        r.extend_from_slice(&payload[..n.max(6) - 5]);
                        f.sess.seg(from_client, PSH | ACK, &r)
                    } else {
                        f.sess.seg(from_client, PSH | ACK, &payload[..n])
                    }
                }
                s if s == 3 + f.data_pkts => f.sess.seg(true, FIN | ACK, &[]),
                s if s == 4 + f.data_pkts => f.sess.seg(false, FIN | ACK, &[]),
                _ => f.sess.seg(true, ACK, &[]),
            };
            f.step += 1;
            if f.step > 5 + f.data_pkts {
                active.swap_remove(i);
            }
            eth(ETH_IPV4, &p)
        } else {
            continue;
        };
        pw.packet(t, &frame)?;
        written += 16 + frame.len() as u64;
    }
    Ok(pw.count)
}

pub fn bench_mix(w: &mut impl Write, target_bytes: u64) -> io::Result<u64> {
    bench_mix_with(w, target_bytes, false)
}
