//! DHCP (RFC 2131/2132) and `dhcp.log`. A DHCP exchange spans several
//! connections (broadcasts from 0.0.0.0, unicast replies), so messages are
//! joined by transaction id, as Zeek does: a transaction is logged once no
//! message came for 5 s or after 30 s, checked 10 s after its first message
//! and every 5 s after that. The capture sends every DHCP packet to one
//! worker (see `decode::shard_hash`), so one join table sees them all.

use crate::proto::{zeek_escape, AppOut, FlowCtx};
use schema::{DhcpRecord, Event, FlowUid, Interval, Time};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

/// Zeek registers the analyzer on these (4011 is PXE's proxy DHCP).
pub const PORTS: [u16; 3] = [67, 68, 4011];

const COOKIE: [u8; 4] = [99, 130, 83, 99];
const FIXED: usize = 236;

/// Transactions followed at once; past this the oldest is logged early.
const MAX_JOINS: usize = 65_536;
const MAX_UIDS: usize = 10;
const MAX_MSG_TYPES: usize = 50;
const FIRST_CHECK: Interval = Interval::from_secs(10);
const RECHECK: Interval = Interval::from_secs(5);
const IDLE: Interval = Interval::from_secs(5);
const WATCH: Interval = Interval::from_secs(30);

fn msg_type_name(t: u8) -> &'static str {
    const NAMES: [&str; 18] = [
        "DISCOVER",
        "OFFER",
        "REQUEST",
        "DECLINE",
        "ACK",
        "NAK",
        "RELEASE",
        "INFORM",
        "FORCERENEW",
        "LEASEQUERY",
        "LEASEUNASSIGNED",
        "LEASEUNKNOWN",
        "LEASEACTIVE",
        "BULKLEASEQUERY",
        "LEASEQUERYDONE",
        "ACTIVELEASEQUERY",
        "LEASEQUERYSTATUS",
        "TLS",
    ];
    NAMES.get(usize::from(t).wrapping_sub(1)).copied().unwrap_or("unknown-message-type")
}

/// The parts of one message that dhcp.log uses.
#[derive(Debug, Default, PartialEq)]
pub struct Message {
    pub xid: u32,
    pub msg_type: u8,
    pub yiaddr: Option<Ipv4Addr>,
    pub chaddr: Option<String>,
    pub host_name: Option<String>,
    pub client_fqdn: Option<String>,
    pub domain: Option<String>,
    pub requested_addr: Option<Ipv4Addr>,
    pub lease: Option<Interval>,
    pub message: Option<String>,
    /// The client identifier when it is an Ethernet address (type 1).
    pub client_id_mac: Option<String>,
    /// Vendor class identifier (option 60, RFC 2132 9.13).
    pub vendor_class: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    TooShort,
    NoCookie,
    NoMessageType,
}

fn mac(b: &[u8]) -> String {
    let mut s = String::with_capacity(17);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{x:02x}"));
    }
    s
}

fn addr(b: &[u8]) -> Option<Ipv4Addr> {
    let a: [u8; 4] = b.try_into().ok()?;
    Some(Ipv4Addr::from(a))
}

/// A name in DNS wire format (option 81 with the E flag), dotted.
fn wire_name(mut b: &[u8]) -> String {
    let mut labels = Vec::new();
    while let Some((&len, rest)) = b.split_first() {
        let len = usize::from(len);
        if len == 0 || len > 63 || len > rest.len() {
            break;
        }
        labels.push(zeek_escape(&rest[..len]));
        b = &rest[len..];
    }
    labels.join(".")
}

/// Parses a BOOTP/DHCP message: the fixed header, the magic cookie and the
/// options (option overloading into `sname`/`file` is not followed).
pub fn parse(p: &[u8]) -> Result<Message, ParseError> {
    let h = p.get(..FIXED).ok_or(ParseError::TooShort)?;
    if p.get(FIXED..FIXED + 4) != Some(&COOKIE[..]) {
        return Err(ParseError::NoCookie);
    }
    let mut m = Message { xid: u32::from_be_bytes([h[4], h[5], h[6], h[7]]), ..Message::default() };
    let yiaddr = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
    m.yiaddr = (!yiaddr.is_unspecified()).then_some(yiaddr);
    let (htype, hlen) = (h[1], usize::from(h[2]));
    let ch = &h[28..44];
    if htype == 1 && hlen == 6 {
        m.chaddr = Some(mac(&ch[..6]));
    } else if (1..=16).contains(&hlen) {
        m.chaddr = Some(mac(&ch[..hlen]));
    }
    let mut o = &p[FIXED + 4..];
    while let Some((&code, rest)) = o.split_first() {
        match code {
            0 => {
                o = rest;
                continue;
            }
            255 => break,
            _ => {}
        }
        let Some((&len, rest)) = rest.split_first() else { break };
        let len = usize::from(len);
        let Some(v) = rest.get(..len) else { break };
        o = &rest[len..];
        match code {
            53 if len == 1 => m.msg_type = v[0],
            12 => m.host_name = Some(zeek_escape(v)),
            15 => m.domain = Some(zeek_escape(v.strip_suffix(&[0]).unwrap_or(v))),
            50 => m.requested_addr = addr(v),
            51 if len == 4 => {
                m.lease = Some(Interval::from_secs(i64::from(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))))
            }
            56 => m.message = Some(zeek_escape(v)),
            60 => m.vendor_class = Some(zeek_escape(v)),
            61 if len == 7 && v[0] == 1 => m.client_id_mac = Some(mac(&v[1..])),
            81 if len >= 3 => {
                let name = &v[3..];
                m.client_fqdn = Some(if v[0] & 0x04 != 0 { wire_name(name) } else { zeek_escape(name) });
            }
            _ => {}
        }
    }
    if m.msg_type == 0 {
        return Err(ParseError::NoMessageType);
    }
    Ok(m)
}

/// Per-flow state: only whether the flow keeps speaking DHCP.
#[derive(Debug, Default)]
pub struct DhcpState {
    bad: u8,
}

impl DhcpState {
    pub fn failed(&self) -> bool {
        self.bad >= 4
    }

    pub fn message(&mut self, ctx: &FlowCtx, p: &[u8], joins: &mut DhcpJoins, out: &mut AppOut) {
        match parse(p) {
            Ok(m) => {
                out.confirmed = Some("dhcp");
                joins.add(ctx, &m, &mut out.events);
            }
            Err(e) => {
                self.bad += 1;
                out.weirds.push(match e {
                    ParseError::TooShort => "DHCP_message_too_short",
                    ParseError::NoCookie => "DHCP_no_magic_cookie",
                    ParseError::NoMessageType => "DHCP_no_type_option",
                });
            }
        }
    }
}

#[derive(Debug)]
struct Join {
    rec: DhcpRecord,
    last: Time,
    next_check: Time,
    client_chaddr: Option<String>,
}

impl Join {
    fn due(&self, now: Time) -> bool {
        now.since(self.last) > IDLE || now.since(self.rec.ts) > WATCH
    }

    fn into_record(mut self) -> DhcpRecord {
        if self.rec.mac.is_none() {
            self.rec.mac = self.client_chaddr;
        }
        self.rec
    }
}

/// DHCP transactions being joined, by transaction id.
#[derive(Debug, Default)]
pub struct DhcpJoins {
    joins: HashMap<u32, Join>,
}

impl DhcpJoins {
    fn add(&mut self, ctx: &FlowCtx, m: &Message, out: &mut Vec<Event>) {
        let now = ctx.ts;
        // Zeek's timers fire before the packet that moved time past them.
        if self.joins.get(&m.xid).is_some_and(|j| j.next_check <= now && j.due(now)) {
            if let Some(j) = self.joins.remove(&m.xid) {
                out.push(Event::Dhcp(j.into_record()));
            }
        }
        if !self.joins.contains_key(&m.xid) && self.joins.len() >= MAX_JOINS {
            let oldest = self.joins.iter().min_by_key(|(_, j)| j.rec.ts).map(|(k, _)| *k);
            if let Some(j) = oldest.and_then(|k| self.joins.remove(&k)) {
                out.push(Event::Dhcp(j.into_record()));
            }
        }
        let j = self.joins.entry(m.xid).or_insert_with(|| Join {
            rec: DhcpRecord {
                ts: now,
                uids: Vec::new(),
                client_addr: None,
                server_addr: None,
                mac: None,
                host_name: None,
                client_software: None,
                client_fqdn: None,
                domain: None,
                requested_addr: None,
                assigned_addr: None,
                lease_time: None,
                client_message: None,
                server_message: None,
                msg_types: Vec::new(),
                duration: Interval(0),
            },
            last: now,
            next_check: Time(now.micros() + FIRST_CHECK.micros()),
            client_chaddr: None,
        });
        let r = &mut j.rec;
        r.duration = now.since(r.ts);
        j.last = now;
        if !r.uids.contains(&ctx.uid) {
            r.uids.push(ctx.uid);
        }
        r.msg_types.push(msg_type_name(m.msg_type));
        let (orig, resp) = (ctx.orig, ctx.resp);
        let zero = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let broadcast = IpAddr::V4(Ipv4Addr::BROADCAST);
        let is_client = ctx.is_orig && (orig.0 == zero || orig.1 == 68 || resp.1 == 67);
        if let Some(msg) = &m.message {
            if is_client {
                r.client_message = Some(msg.clone());
            } else {
                r.server_message = Some(msg.clone());
            }
        }
        if is_client {
            if orig.0 != zero && orig.0 != broadcast {
                r.client_addr = Some(orig.0);
            }
            if m.host_name.is_some() {
                r.host_name.clone_from(&m.host_name);
            }
            if m.vendor_class.is_some() {
                r.client_software.clone_from(&m.vendor_class);
            }
            if m.client_fqdn.is_some() {
                r.client_fqdn.clone_from(&m.client_fqdn);
            }
            if m.client_id_mac.is_some() {
                r.mac.clone_from(&m.client_id_mac);
            } else {
                j.client_chaddr.clone_from(&m.chaddr);
            }
            if let Some(a) = m.requested_addr {
                r.requested_addr = Some(IpAddr::V4(a));
            }
        } else {
            if m.yiaddr.is_some() {
                // A reply the server broadcast makes it the originator; a
                // unicast reply leaves it the responder.
                r.server_addr = Some(if ctx.is_orig { orig.0 } else { resp.0 });
            }
            if r.mac.is_none() {
                r.mac.clone_from(&m.chaddr);
            }
            if let Some(a) = m.yiaddr {
                r.assigned_addr = Some(IpAddr::V4(a));
            }
            if r.client_addr.is_none() {
                r.client_addr = r.assigned_addr;
            }
            if m.domain.is_some() {
                r.domain.clone_from(&m.domain);
            }
            if m.lease.is_some() {
                r.lease_time = m.lease;
            }
        }
        if r.uids.len() >= MAX_UIDS || r.msg_types.len() >= MAX_MSG_TYPES {
            if let Some(j) = self.joins.remove(&m.xid) {
                out.push(Event::Dhcp(j.into_record()));
            }
        }
    }

    /// Logs the transactions whose time has come.
    pub fn expire(&mut self, now: Time, out: &mut Vec<Event>) {
        if self.joins.is_empty() {
            return;
        }
        let mut done: Vec<u32> = Vec::new();
        for (xid, j) in self.joins.iter_mut() {
            if j.next_check > now {
                continue;
            }
            if j.due(now) {
                done.push(*xid);
            } else {
                j.next_check = Time(now.micros() + RECHECK.micros());
            }
        }
        self.emit(done, out);
    }

    /// Logs every open transaction, as at the end of a capture.
    pub fn flush(&mut self, out: &mut Vec<Event>) {
        let all: Vec<u32> = self.joins.keys().copied().collect();
        self.emit(all, out);
    }

    fn emit(&mut self, xids: Vec<u32>, out: &mut Vec<Event>) {
        let mut recs: Vec<DhcpRecord> =
            xids.into_iter().filter_map(|x| self.joins.remove(&x)).map(Join::into_record).collect();
        recs.sort_by_key(|r| (r.ts, r.uids.first().map(|u: &FlowUid| u.0)));
        out.extend(recs.into_iter().map(Event::Dhcp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(op: u8, xid: u32, yiaddr: [u8; 4], opts: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; FIXED];
        p[0] = op;
        p[1] = 1;
        p[2] = 6;
        p[4..8].copy_from_slice(&xid.to_be_bytes());
        p[16..20].copy_from_slice(&yiaddr);
        p[28..34].copy_from_slice(&[0x00, 0x1b, 0x63, 0x84, 0x45, 0xe6]);
        p.extend_from_slice(&COOKIE);
        p.extend_from_slice(opts);
        p.push(255);
        p
    }

    fn ctx(ts: i64, uid: u128, orig: (&str, u16), resp: (&str, u16), is_orig: bool) -> FlowCtx {
        FlowCtx {
            ts: Time(ts * 1_000_000),
            uid: FlowUid::new(uid),
            orig: (orig.0.parse().unwrap(), orig.1),
            resp: (resp.0.parse().unwrap(), resp.1),
            is_orig,
            keep_file_bytes: 0,
            orig_local: false,
            resp_local: false,
        }
    }

    #[test]
    fn parses_options_and_survives_every_prefix() {
        let p = msg(
            1,
            7,
            [0; 4],
            &[
                53, 1, 3, 12, 4, b'c', b'a', b'm', b'7', 50, 4, 10, 0, 0, 9, 81, 8, 0x04, 0, 0, 3, b'c', b'a', b'm', 0,
                60, 5, b'I', b'P', b'C', b'-', b'2',
            ],
        );
        let m = parse(&p).unwrap();
        assert_eq!(m.msg_type, 3);
        assert_eq!(m.vendor_class.as_deref(), Some("IPC-2"));
        assert_eq!(m.host_name.as_deref(), Some("cam7"));
        assert_eq!(m.client_fqdn.as_deref(), Some("cam"));
        assert_eq!(m.requested_addr, Some(Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(m.chaddr.as_deref(), Some("00:1b:63:84:45:e6"));
        for n in 0..p.len() {
            let _ = parse(&p[..n]);
        }
        assert_eq!(parse(&p[..100]), Err(ParseError::TooShort));
    }

    #[test]
    fn joins_a_dora_over_two_connections() {
        let mut j = DhcpJoins::default();
        let mut out = Vec::new();
        let disc = parse(&msg(1, 9, [0; 4], &[53, 1, 1, 12, 3, b'c', b'a', b'm'])).unwrap();
        let offer =
            parse(&msg(2, 9, [10, 0, 0, 9], &[53, 1, 2, 51, 4, 0, 0, 0x0e, 0x10, 15, 4, b'c', b'i', b't', b'y']))
                .unwrap();
        let client = ctx(100, 1, ("0.0.0.0", 68), ("255.255.255.255", 67), true);
        let server = ctx(100, 2, ("10.0.0.1", 67), ("255.255.255.255", 68), true);
        j.add(&client, &disc, &mut out);
        j.add(&FlowCtx { ts: Time(100_500_000), ..server }, &offer, &mut out);
        j.expire(Time(109_000_000), &mut out);
        assert!(out.is_empty());
        j.expire(Time(110_000_000), &mut out);
        let Some(Event::Dhcp(r)) = out.pop() else { panic!("not logged") };
        assert_eq!(r.msg_types, ["DISCOVER", "OFFER"]);
        assert_eq!(r.uids.len(), 2);
        assert_eq!(r.host_name.as_deref(), Some("cam"));
        assert_eq!(r.assigned_addr, Some("10.0.0.9".parse().unwrap()));
        assert_eq!(r.client_addr, r.assigned_addr);
        assert_eq!(r.server_addr, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(r.lease_time, Some(Interval::from_secs(3600)));
        assert_eq!(r.domain.as_deref(), Some("city"));
        assert_eq!(r.mac.as_deref(), Some("00:1b:63:84:45:e6"));
        assert_eq!(r.duration, Interval(500_000));
    }
}
