//! Application-layer analyzers. Each keeps per-flow state behind one pointer
//! in the flow table, takes payload (UDP datagrams now), and emits typed
//! records; `service` in conn.log names the analyzers that confirmed their
//! protocol, as Zeek does.

pub mod bacnet;
pub mod coap;
pub mod dhcp;
pub mod dnp3;
pub mod dns;
pub mod files;
pub mod ftp;
pub mod http;
pub mod mime;
pub mod modbus;
pub mod mqtt;
pub mod ntp;
pub mod quic;
pub mod smtp;
pub mod snmp;
pub mod ssh;
pub mod stream;
pub mod tap;
pub mod tls;

use schema::{Event, FlowUid, Time};
use std::net::IpAddr;

/// The connection a payload belongs to, as conn.log shows it.
#[derive(Clone, Copy, Debug)]
pub struct FlowCtx {
    pub ts: Time,
    pub uid: FlowUid,
    pub orig: (IpAddr, u16),
    pub resp: (IpAddr, u16),
    /// The payload came from the originator.
    pub is_orig: bool,
    /// Bytes of each file to keep for extraction (0: none).
    pub keep_file_bytes: u64,
    /// The originator is in a local network.
    pub orig_local: bool,
    pub resp_local: bool,
}

/// A context for analyzer tests: time 1, uid 1, both ends local.
#[cfg(test)]
pub(crate) fn test_ctx(orig: (&str, u16), resp: (&str, u16), is_orig: bool) -> FlowCtx {
    let addr = |s: &str| s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
    FlowCtx {
        ts: schema::Time(1),
        uid: FlowUid::new(1),
        orig: (addr(orig.0), orig.1),
        resp: (addr(resp.0), resp.1),
        is_orig,
        keep_file_bytes: 0,
        orig_local: true,
        resp_local: true,
    }
}

/// What an analyzer produced for one payload; owned by the caller.
#[derive(Debug, Default)]
pub struct AppOut {
    pub events: Vec<Event>,
    pub weirds: Vec<&'static str>,
    /// The analyzer confirmed its protocol: the conn.log service name.
    pub confirmed: Option<&'static str>,
}

/// Per-flow analyzer state.
#[derive(Debug)]
pub enum App {
    Dns(dns::DnsState),
    Ssh(Box<ssh::SshState>),
    Http(Box<http::HttpState>),
    Tls(Box<tls::TlsState>),
    Ntp(ntp::NtpState),
    Ftp(Box<ftp::FtpState>),
    FtpData(Box<ftp::FtpData>),
    Smtp(Box<smtp::SmtpState>),
    Dhcp(dhcp::DhcpState),
    Quic(Box<quic::QuicState>),
    Modbus(Box<modbus::ModbusState>),
    Mqtt(Box<mqtt::MqttState>),
    Dnp3(Box<dnp3::Dnp3State>),
    Coap(Box<coap::CoapState>),
    Snmp(Box<snmp::SnmpState>),
    Bacnet(bacnet::BacnetState),
    /// No analyzer: the stream is reassembled only for the payload tap.
    Opaque,
}

impl App {
    /// Picks an analyzer for a UDP flow from its ports and first payload:
    /// the registered ports first, then the content.
    pub fn for_udp(sport: u16, dport: u16, payload: &[u8]) -> Option<App> {
        let is = |p: u16| sport == p || dport == p;
        if dhcp::PORTS.iter().any(|&p| is(p)) {
            return Some(App::Dhcp(dhcp::DhcpState::default()));
        }
        if is(coap::PORT) {
            return Some(App::Coap(Box::default()));
        }
        if snmp::PORTS.iter().any(|&p| is(p)) {
            return Some(App::Snmp(Box::default()));
        }
        if is(bacnet::PORT) {
            return Some(App::Bacnet(bacnet::BacnetState::default()));
        }
        if dns::UDP_PORTS.iter().any(|&p| is(p)) {
            return Some(App::Dns(dns::DnsState::new("udp")));
        }
        // QUIC by content: an Initial this sensor can decrypt, on any port.
        if quic::looks_like_initial(payload) {
            return Some(App::Quic(Box::default()));
        }
        if dns::parser::looks_like_dns(payload) {
            return Some(App::Dns(dns::DnsState::new("udp")));
        }
        if is(ntp::PORT) {
            return Some(App::Ntp(ntp::NtpState::default()));
        }
        None
    }

    /// Picks an analyzer for a TCP flow from its ports and first payload.
    pub fn for_tcp(resp_port: u16, payload: &[u8]) -> Option<App> {
        let framed_dns = payload.len() > 2
            && usize::from(u16::from_be_bytes([payload[0], payload[1]])) == payload.len() - 2
            && dns::parser::looks_like_dns(&payload[2..]);
        if resp_port == dns::TCP_PORT || framed_dns {
            return Some(App::Dns(dns::DnsState::new("tcp")));
        }
        if resp_port == ssh::PORT || payload.starts_with(b"SSH-") {
            return Some(App::Ssh(Box::default()));
        }
        // TLS is recognised by content before ports: HTTPS on 8080, TLS on
        // 502 and the like are common.
        if tls::looks_like_tls(payload) {
            return Some(App::Tls(Box::default()));
        }
        if smtp::PORTS.contains(&resp_port) {
            return Some(App::Smtp(Box::default()));
        }
        if resp_port == ftp::PORT {
            return Some(App::Ftp(Box::default()));
        }
        if resp_port == modbus::PORT {
            return Some(App::Modbus(Box::default()));
        }
        if resp_port == mqtt::PORT || mqtt::MqttState::looks_like_connect(payload) {
            return Some(App::Mqtt(Box::default()));
        }
        if resp_port == dnp3::PORT || dnp3::Dnp3State::looks_like_dnp3(payload) {
            return Some(App::Dnp3(Box::default()));
        }
        if http::PORTS.contains(&resp_port) || http::looks_like_request(payload) {
            return Some(App::Http(Box::default()));
        }
        None
    }

    /// Reassembled stream content (or a gap) from one side of a TCP flow.
    pub fn stream(&mut self, ctx: &FlowCtx, chunk: stream::Chunk<'_>, shared: &mut Shared, out: &mut AppOut) {
        match self {
            App::Ftp(f) => f.stream(ctx, chunk, shared, out),
            App::FtpData(d) => d.stream(ctx, chunk, shared),
            App::Smtp(m) => m.stream(ctx, chunk, out),
            App::Dns(d) => d.stream(ctx, chunk, out),
            App::Ssh(s) => s.stream(ctx, chunk, out),
            App::Http(h) => h.stream(ctx, chunk, out),
            App::Tls(t) => t.stream(ctx, chunk, out),
            App::Modbus(m) => m.stream(ctx, chunk, out),
            App::Mqtt(m) => m.stream(ctx, chunk, out),
            App::Dnp3(d) => d.stream(ctx, chunk, out),
            App::Ntp(_) | App::Dhcp(_) | App::Quic(_) | App::Coap(_) | App::Snmp(_) | App::Bacnet(_) | App::Opaque => {}
        }
    }

    pub fn datagram(&mut self, ctx: &FlowCtx, payload: &[u8], shared: &mut Shared, out: &mut AppOut) {
        match self {
            App::Dns(d) => d.message(ctx, payload, out),
            App::Ntp(n) => n.message(ctx, payload, out),
            App::Dhcp(d) => d.message(ctx, payload, &mut shared.dhcp, out),
            App::Quic(q) => q.message(ctx, payload, out),
            App::Coap(c) => c.message(ctx, payload, out),
            App::Snmp(s) => s.message(ctx, payload, shared.redact_snmp_community, out),
            App::Bacnet(b) => b.message(ctx, payload, out),
            App::Ssh(_)
            | App::Http(_)
            | App::Tls(_)
            | App::Ftp(_)
            | App::FtpData(_)
            | App::Smtp(_)
            | App::Modbus(_)
            | App::Mqtt(_)
            | App::Dnp3(_)
            | App::Opaque => {}
        }
    }

    /// The flow ends: whatever is pending is logged.
    pub fn finish(&mut self, ctx: &FlowCtx, _shared: &mut Shared, out: &mut AppOut) {
        match self {
            App::Ftp(f) => f.finish(ctx, out),
            App::FtpData(d) => d.finish(ctx, out),
            App::Smtp(m) => m.finish(ctx, out),
            App::Dns(d) => d.finish(ctx, out),
            App::Ssh(s) => s.finish(ctx, out),
            App::Http(h) => h.finish(ctx, out),
            App::Tls(t) => t.finish(ctx, out),
            App::Ntp(_) | App::Dhcp(_) | App::Modbus(_) | App::Bacnet(_) | App::Opaque => {}
            App::Quic(q) => q.finish(ctx, out),
            App::Mqtt(m) => m.finish(ctx, out),
            App::Dnp3(d) => d.finish(ctx, out),
            App::Coap(c) => c.finish(ctx, out),
            App::Snmp(s) => s.finish(ctx, out),
        }
    }

    /// The analyzer saw too much that is not its protocol and gave up.
    pub fn failed(&self) -> bool {
        match self {
            App::Dns(d) => d.failed(),
            App::Ssh(s) => s.failed(),
            App::Http(h) => h.failed(),
            App::Tls(t) => t.failed(),
            App::Ntp(n) => n.failed(),
            App::Ftp(f) => f.failed(),
            App::FtpData(_) | App::Opaque => false,
            App::Smtp(m) => m.failed(),
            App::Dhcp(d) => d.failed(),
            App::Quic(q) => q.failed(),
            App::Modbus(m) => m.failed(),
            App::Mqtt(m) => m.failed(),
            App::Dnp3(d) => d.failed(),
            App::Coap(c) => c.failed(),
            App::Snmp(s) => s.failed(),
            App::Bacnet(b) => b.failed(),
        }
    }
}

/// State analyzers share across the flows of one worker. Related flows (an
/// FTP control connection and its data channels) share an address pair, so
/// they always reach the same worker.
#[derive(Debug, Default)]
pub struct Shared {
    /// Data connections announced on a control connection, by
    /// (originator, responder, responder port).
    pub expected: std::collections::HashMap<(IpAddr, IpAddr, u16), Expected>,
    /// What the latest data channel of a control connection carried.
    pub transfers: std::collections::HashMap<FlowUid, ftp::Transfer>,
    /// Out-of-order bytes held by every TCP stream of the worker.
    pub stream_held: usize,
    /// Gaps declared because a stream or the worker's budget was full.
    pub stream_forced_gaps: u64,
    /// DHCP transactions being joined across connections.
    pub dhcp: dhcp::DhcpJoins,
    /// Bytes of each file kept for extraction (0: none).
    pub keep_file_bytes: u64,
    /// Where stream payload goes for later stages, if anywhere.
    pub tap: Option<tap::Tap>,
    /// Log SNMP communities as `<redacted>`.
    pub redact_snmp_community: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct Expected {
    pub control: FlowUid,
    pub at: Time,
}

/// Announced connections kept at once, and how long each waits.
const MAX_EXPECTED: usize = 4096;
const EXPECT_WINDOW: schema::Interval = schema::Interval::from_secs(300);

impl Shared {
    pub fn expect(&mut self, key: (IpAddr, IpAddr, u16), e: Expected) {
        if self.expected.len() >= MAX_EXPECTED {
            // Forget the stale ones first, then the oldest.
            let now = e.at;
            self.expected.retain(|_, x| now.since(x.at) < EXPECT_WINDOW);
            if self.expected.len() >= MAX_EXPECTED {
                if let Some(k) = self.expected.iter().min_by_key(|(_, x)| x.at).map(|(k, _)| *k) {
                    self.expected.remove(&k);
                }
            }
        }
        self.expected.insert(key, e);
    }

    /// Takes the announcement a new connection fulfils, if any.
    pub fn take_expected(&mut self, key: (IpAddr, IpAddr, u16), now: Time) -> Option<Expected> {
        let e = self.expected.remove(&key)?;
        (now.since(e.at) < EXPECT_WINDOW).then_some(e)
    }
}

/// Renders bytes as Zeek logs strings: printable ASCII as is, anything else as
/// `\xHH`, so that nothing a packet carries can reach a log reader raw.
pub fn zeek_escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        if (0x20..0x7f).contains(&c) && c != b'\\' {
            s.push(c as char);
        } else {
            s.push_str(&format!("\\x{c:02x}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(zeek_escape(b"a.b"), "a.b");
        assert_eq!(zeek_escape(b"a\x00<\\"), "a\\x00<\\x5c");
    }
}
