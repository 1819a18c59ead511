//! The bidirectional flow table: Zeek's connection semantics (originator,
//! `conn_state`, `history`, byte and packet counts, timeouts) under a memory cap.

mod community_id;
mod local;
mod ports;
pub mod tcp;

pub use community_id::community_id_v1;
pub use local::is_private;
pub use ports::likely_server_port;

use crate::decode::{IcmpView, TcpView, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use schema::{ConnRecord, FlowUid, Interval, Time};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;
use tcp::{History, TcpConn, TcpEffects};

/// Flow-table settings. Times are Zeek's defaults.
#[derive(Clone, Debug)]
pub struct FlowConfig {
    pub tcp_inactivity: Interval,
    pub udp_inactivity: Interval,
    pub icmp_inactivity: Interval,
    pub other_inactivity: Interval,
    /// Zeek's `tcp_attempt_delay`: an unanswered SYN is logged after this.
    pub tcp_attempt_delay: Interval,
    /// Zeek's `tcp_close_delay`: a closed connection lingers this long.
    pub tcp_close_delay: Interval,
    /// Zeek's `tcp_partial_close_delay`.
    pub tcp_partial_close_delay: Interval,
    /// Flows tracked at once per worker; beyond it the flow closest to its
    /// timeout is evicted (and logged) first.
    pub max_flows: usize,
    /// Seed for uids; `None` draws a random one per run.
    pub uid_seed: Option<u64>,
    /// Seed of the Community ID hash.
    pub community_id_seed: u16,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            tcp_inactivity: Interval::from_secs(300),
            udp_inactivity: Interval::from_secs(60),
            icmp_inactivity: Interval::from_secs(60),
            other_inactivity: Interval::from_secs(60),
            tcp_attempt_delay: Interval::from_secs(5),
            tcp_close_delay: Interval::from_secs(5),
            tcp_partial_close_delay: Interval::from_secs(3),
            max_flows: 1_000_000,
            uid_seed: None,
            community_id_seed: 0,
        }
    }
}

/// A connection key with the endpoints in canonical order, so both
/// directions find the same entry. VLANs and tunnels are not part of it, as in Zeek.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    lo: IpAddr,
    hi: IpAddr,
    lo_port: u16,
    hi_port: u16,
    proto: u8,
}

impl FlowKey {
    /// Returns the key and whether `src` is the low endpoint.
    pub fn new(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, proto: u8) -> (FlowKey, bool) {
        if (src, sport) <= (dst, dport) {
            (
                FlowKey {
                    lo: src,
                    hi: dst,
                    lo_port: sport,
                    hi_port: dport,
                    proto,
                },
                true,
            )
        } else {
            (
                FlowKey {
                    lo: dst,
                    hi: src,
                    lo_port: dport,
                    hi_port: sport,
                    proto,
                },
                false,
            )
        }
    }
}

/// What a packet contributes to its connection.
#[derive(Clone, Copy, Debug)]
pub enum Transport<'a> {
    Tcp(TcpView<'a>),
    Udp {
        src_port: u16,
        dst_port: u16,
        len: u32,
    },
    Icmp(IcmpView),
    Other {
        len: u32,
    },
}

/// Per-packet facts that the flow table records.
#[derive(Clone, Copy, Debug)]
pub struct PacketMeta<'a> {
    pub ts: Time,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ip_proto: u8,
    pub ip_len: u32,
    pub transport: Transport<'a>,
    pub vlan: Option<u16>,
    pub inner_vlan: Option<u16>,
    /// Uid of the innermost tunnel carrying the packet.
    pub tunnel_parent: Option<FlowUid>,
    /// The transport checksum was verified and is wrong.
    pub bad_checksum: bool,
}

/// Zeek's ICMP port mapping: the counterpart type of a request/reply pair,
/// else the code with `one_way` set.
pub fn icmp_ports(typ: u8, code: u8, v6: bool) -> (u16, u16, bool) {
    let counterpart = if v6 {
        match typ {
            128 => Some(129),
            129 => Some(128),
            133 => Some(134),
            134 => Some(133),
            135 => Some(136),
            136 => Some(135),
            130 => Some(131),
            131 => Some(130),
            139 => Some(140),
            140 => Some(139),
            144 => Some(145),
            145 => Some(144),
            _ => None,
        }
    } else {
        match typ {
            8 => Some(0),
            0 => Some(8),
            13 => Some(14),
            14 => Some(13),
            15 => Some(16),
            16 => Some(15),
            10 => Some(9),
            9 => Some(10),
            17 => Some(18),
            18 => Some(17),
            _ => None,
        }
    };
    match counterpart {
        Some(c) => (u16::from(typ), c, false),
        None => (u16::from(typ), u16::from(code), true),
    }
}

/// History letters, stored inline: Zeek's rules bound each letter's
/// repetitions, so real histories are short; a crafted one is cut off.
#[derive(Clone, Copy, Debug, Default)]
struct HistBuf {
    len: u8,
    buf: [u8; 23],
}

impl History for HistBuf {
    fn add(&mut self, c: u8) {
        if let Some(slot) = self.buf.get_mut(usize::from(self.len)) {
            *slot = c;
            self.len += 1;
        }
    }
}

impl HistBuf {
    fn as_str(&self) -> &str {
        std::str::from_utf8(self.buf.get(..usize::from(self.len)).unwrap_or(&[])).unwrap_or("")
    }
}

const NONE: i64 = i64::MAX;

struct Conn {
    uid: FlowUid,
    start: Time,
    last: Time,
    /// Index 0 is the originator.
    pkts: [u64; 2],
    ip_bytes: [u64; 2],
    /// UDP/ICMP/other payload bytes (TCP counts from sequence numbers).
    bytes: [u64; 2],
    missed: u64,
    tcp: Option<Box<TcpConn>>,
    tunnel_parents: Vec<FlowUid>,
    service: Option<&'static str>,
    history: HistBuf,
    /// Deadlines in microseconds, `NONE` when not armed.
    attempt_at: i64,
    delete_at: i64,
    partial_close_at: i64,
    /// The deadline of this flow's live entry in the timer heap.
    heap_at: i64,
    inactivity: Option<Interval>,
    vlan: Option<u16>,
    inner_vlan: Option<u16>,
    /// The originator is the `lo` endpoint of the key.
    orig_is_lo: bool,
    one_way: bool,
    ip_proto: u8,
    seen: [bool; 2],
    /// Names of weirds already reported for this flow (hashed to bits).
    weird_bits: u64,
}

impl Conn {
    fn deadline(&self) -> i64 {
        let mut d = self.delete_at;
        if self.attempt_at != NONE {
            d = d.min(self.attempt_at);
        }
        d = d.min(self.partial_close_at);
        if let Some(t) = self.inactivity {
            d = d.min(self.last.plus(t).micros());
        }
        d
    }

    /// Would Zeek have removed this connection by `now`, given that nothing
    /// happened since its last packet? Disarms timers that fired in vain.
    fn due(&mut self, now: i64) -> bool {
        if self.delete_at <= now {
            return true;
        }
        if let Some(t) = self.inactivity {
            if self.last.plus(t).micros() <= now {
                return true;
            }
        }
        if self.attempt_at <= now {
            if self.tcp.as_ref().is_some_and(|t| t.is_attempt()) {
                return true;
            }
            self.attempt_at = NONE;
        }
        if self.partial_close_at <= now {
            if self.tcp.as_ref().is_some_and(|t| t.partial_close_removes()) {
                return true;
            }
            self.partial_close_at = NONE;
        }
        false
    }
}

/// Why a flow left the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    Expired,
    Evicted,
    Flushed,
    Reused,
}

/// A weird that concerns one flow.
#[derive(Clone, Debug)]
pub struct FlowWeird {
    pub ts: Time,
    pub uid: FlowUid,
    pub orig: (IpAddr, u16),
    pub resp: (IpAddr, u16),
    pub name: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct FlowCounters {
    pub created: u64,
    pub expired: u64,
    pub evicted: u64,
    pub flushed: u64,
    pub pkts: u64,
}

/// Sink for what the table produces, owned by the caller.
#[derive(Default)]
pub struct FlowOutput {
    pub conns: Vec<(ConnRecord, EndReason)>,
    pub weirds: Vec<FlowWeird>,
}

/// Keys come from the network, so the table hashes with a per-process random
/// seed (ahash): an attacker cannot precompute colliding flows.
type Hasher = ahash::RandomState;

pub struct FlowTable {
    cfg: FlowConfig,
    index: HashMap<FlowKey, u32, Hasher>,
    slots: Vec<Option<(FlowKey, Conn)>>,
    free: Vec<u32>,
    heap: BinaryHeap<Reverse<(i64, u32)>>,
    uid_seed: u64,
    pub counters: FlowCounters,
    now: i64,
}

impl FlowTable {
    pub fn new(cfg: FlowConfig) -> Self {
        let uid_seed = cfg.uid_seed.unwrap_or_else(|| Hasher::new().hash_one(0u8));
        FlowTable {
            cfg,
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            heap: BinaryHeap::new(),
            uid_seed,
            counters: FlowCounters::default(),
            now: i64::MIN,
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Uid for a new flow: a hash of the seed, the key and the start time, so
    /// a seeded run gives the same uids whatever the number of workers.
    fn make_uid(&self, key: &FlowKey, ts: Time, salt: u8) -> FlowUid {
        // A fixed, portable mix (not the table's random hasher): seeded runs
        // must give the same uids on every machine.
        let ports = (u64::from(key.lo_port) << 32)
            | (u64::from(key.hi_port) << 16)
            | (u64::from(key.proto) << 8);
        let words = [
            addr_word(key.lo),
            addr_word(key.hi),
            ports | u64::from(salt),
            ts.micros() as u64,
        ];
        let mut a = mix64(self.uid_seed ^ 0x9e37_79b9_7f4a_7c15);
        let mut b = mix64(self.uid_seed.rotate_left(29) ^ 0xc2b2_ae3d_27d4_eb4f);
        for w in words {
            a = mix64(a ^ w);
            b = mix64(b.rotate_left(17) ^ w ^ a);
        }
        FlowUid::new((u128::from(a) << 64) | u128::from(b))
    }

    /// A uid for something that is not a connection (an IP tunnel), drawn
    /// from the same seeded space.
    pub fn make_aux_uid(&self, a: IpAddr, b: IpAddr, ts: Time, kind: u8) -> FlowUid {
        let (key, _) = FlowKey::new(a, 0, b, 0, 0);
        self.make_uid(&key, ts, kind.wrapping_add(1))
    }

    /// Adds one packet. Returns the uid of its connection.
    pub fn observe(&mut self, pkt: &PacketMeta<'_>, out: &mut FlowOutput) -> FlowUid {
        self.counters.pkts += 1;
        let now = pkt.ts.micros();
        if now > self.now {
            self.now = now;
        }
        let (sport, dport, one_way) = match pkt.transport {
            Transport::Tcp(t) => (t.src_port, t.dst_port, false),
            Transport::Udp {
                src_port, dst_port, ..
            } => (src_port, dst_port, false),
            Transport::Icmp(i) => icmp_ports(i.typ, i.code, i.v6),
            Transport::Other { .. } => (0, 0, false),
        };
        let (key, src_is_lo) = FlowKey::new(pkt.src, sport, pkt.dst, dport, pkt.ip_proto);

        let mut slot = self.index.get(&key).copied();
        if let Some(i) = slot {
            let reuse_or_due = {
                let Some((_, c)) = self.slots.get_mut(i as usize).and_then(|s| s.as_mut()) else {
                    unreachable_slot();
                    return FlowUid::new(0);
                };
                if c.due(now) {
                    Some(EndReason::Expired)
                } else if let (Some(t), Transport::Tcp(v)) = (c.tcp.as_ref(), pkt.transport) {
                    let mut w = Vec::new();
                    let r = t.is_reuse(&v, pkt.ts, c.last, &mut w);
                    let orig = if c.orig_is_lo {
                        (key.lo, key.lo_port)
                    } else {
                        (key.hi, key.hi_port)
                    };
                    let resp = if c.orig_is_lo {
                        (key.hi, key.hi_port)
                    } else {
                        (key.lo, key.lo_port)
                    };
                    for name in w {
                        out.weirds.push(FlowWeird {
                            ts: pkt.ts,
                            uid: c.uid,
                            orig,
                            resp,
                            name,
                        });
                    }
                    r.then_some(EndReason::Reused)
                } else {
                    None
                }
            };
            if let Some(reason) = reuse_or_due {
                self.remove(i, reason, out);
                slot = None;
            }
        }
        let i = match slot {
            Some(i) => i,
            None => self.create(key, src_is_lo, pkt, one_way, sport, dport, out),
        };
        let Some((key, c)) = self.slots.get_mut(i as usize).and_then(|s| s.as_mut()) else {
            unreachable_slot();
            return FlowUid::new(0);
        };
        let key = *key;
        let is_orig = c.orig_is_lo == src_is_lo;
        let cfg = &self.cfg;
        let mut weirds: Vec<&'static str> = Vec::new();
        let mut earlier_deadline = false;

        if pkt.bad_checksum {
            // Zeek notes the bad checksum in the history and skips the packet.
            weirds.push(match pkt.transport {
                Transport::Tcp(_) => "bad_TCP_checksum",
                Transport::Udp { .. } => "bad_UDP_checksum",
                _ => "bad_ICMP_checksum",
            });
            if let Some(t) = c.tcp.as_mut() {
                let e = &mut t.ep[usize::from(!is_orig)];
                if bump_scaled(&mut e.chk) {
                    c.history.add(if is_orig { b'C' } else { b'c' });
                }
            } else {
                c.history.add(if is_orig { b'C' } else { b'c' });
            }
        } else {
            let mut dir = usize::from(!is_orig);
            match pkt.transport {
                Transport::Tcp(v) => {
                    let mut fx = TcpEffects::default();
                    if let Some(t) = c.tcp.as_mut() {
                        t.process(&mut c.history, is_orig, &v, &mut fx);
                    }
                    if fx.flip {
                        c.orig_is_lo = !c.orig_is_lo;
                        c.pkts.swap(0, 1);
                        c.ip_bytes.swap(0, 1);
                        c.history.add(b'^');
                        dir = 1 - dir;
                    }
                    if fx.touch {
                        c.last = pkt.ts;
                    }
                    if fx.attempt_started && c.attempt_at == NONE {
                        c.attempt_at = pkt.ts.plus(cfg.tcp_attempt_delay).micros();
                    }
                    if fx.start_inactivity {
                        c.inactivity = Some(cfg.tcp_inactivity);
                    }
                    if fx.close_complete {
                        // Zeek cancels the handshake timers and deletes the
                        // connection after the close delay.
                        c.attempt_at = NONE;
                        c.partial_close_at = NONE;
                        c.delete_at = c.last.plus(cfg.tcp_close_delay).micros();
                        earlier_deadline = true;
                    }
                    if fx.partial_close {
                        c.partial_close_at = c.last.plus(cfg.tcp_partial_close_delay).micros();
                        earlier_deadline = true;
                    }
                    c.missed += fx.missed;
                    weirds.extend(fx.weirds);
                }
                Transport::Udp { len, .. } => {
                    c.last = pkt.ts;
                    c.bytes[dir] += u64::from(len);
                    if !c.seen[dir] {
                        c.history.add(if dir == 0 { b'D' } else { b'd' });
                    }
                }
                Transport::Icmp(i) => {
                    c.last = pkt.ts;
                    c.bytes[dir] += u64::from(i.len);
                }
                Transport::Other { len } => {
                    c.last = pkt.ts;
                    c.bytes[dir] += u64::from(len);
                }
            }
            c.seen[dir] = true;
            c.pkts[dir] += 1;
            c.ip_bytes[dir] += u64::from(pkt.ip_len);
        }
        if c.vlan.is_none() {
            c.vlan = pkt.vlan;
            c.inner_vlan = pkt.inner_vlan;
        }
        if let Some(p) = pkt.tunnel_parent {
            if !c.tunnel_parents.contains(&p) && c.tunnel_parents.len() < 8 {
                c.tunnel_parents.push(p);
            }
        }
        let uid = c.uid;
        if !weirds.is_empty() {
            let orig = if c.orig_is_lo {
                (key.lo, key.lo_port)
            } else {
                (key.hi, key.hi_port)
            };
            let resp = if c.orig_is_lo {
                (key.hi, key.hi_port)
            } else {
                (key.lo, key.lo_port)
            };
            for name in weirds {
                let bit = 1u64 << (name_hash(name) % 64);
                if c.weird_bits & bit == 0 {
                    c.weird_bits |= bit;
                    out.weirds.push(FlowWeird {
                        ts: pkt.ts,
                        uid,
                        orig,
                        resp,
                        name,
                    });
                }
            }
        }
        if earlier_deadline {
            let d = c.deadline();
            if d < c.heap_at {
                c.heap_at = d;
                self.heap.push(Reverse((d, i)));
            }
        }
        uid
    }

    /// Sets the service of a flow (a tunnel's outer UDP connection, or later an
    /// analyzer's confirmation).
    pub fn set_service(
        &mut self,
        uid: FlowUid,
        (src, sport): (IpAddr, u16),
        (dst, dport): (IpAddr, u16),
        proto: u8,
        s: &'static str,
    ) {
        let (key, _) = FlowKey::new(src, sport, dst, dport, proto);
        if let Some(&i) = self.index.get(&key) {
            if let Some(Some((_, c))) = self.slots.get_mut(i as usize) {
                if c.uid == uid {
                    c.service = Some(s);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        key: FlowKey,
        src_is_lo: bool,
        pkt: &PacketMeta<'_>,
        one_way: bool,
        sport: u16,
        dport: u16,
        out: &mut FlowOutput,
    ) -> u32 {
        while self.index.len() >= self.cfg.max_flows.max(1) {
            if !self.evict_one(out) {
                break;
            }
        }
        self.counters.created += 1;
        let mut flip = false;
        let mut tcp = None;
        let inactivity = match pkt.transport {
            Transport::Tcp(v) => {
                tcp = Some(Box::default());
                let (syn, ack) = (
                    v.flags & crate::decode::TH_SYN != 0,
                    v.flags & crate::decode::TH_ACK != 0,
                );
                if !syn || ack {
                    // A partial connection: guess the responder by the ports.
                    if likely_server_port(sport, IPPROTO_TCP) {
                        flip = if likely_server_port(dport, IPPROTO_TCP) {
                            !syn && sport < dport
                        } else {
                            true
                        };
                    }
                }
                None
            }
            Transport::Udp { .. } => {
                flip = likely_server_port(sport, IPPROTO_UDP)
                    && !likely_server_port(dport, IPPROTO_UDP);
                Some(self.cfg.udp_inactivity)
            }
            Transport::Icmp(_) => Some(self.cfg.icmp_inactivity),
            Transport::Other { .. } => Some(self.cfg.other_inactivity),
        };
        let uid = self.make_uid(&key, pkt.ts, 0);
        let mut conn = Conn {
            uid,
            start: pkt.ts,
            last: pkt.ts,
            pkts: [0; 2],
            ip_bytes: [0; 2],
            bytes: [0; 2],
            missed: 0,
            tcp,
            tunnel_parents: Vec::new(),
            service: None,
            history: HistBuf::default(),
            attempt_at: NONE,
            delete_at: NONE,
            partial_close_at: NONE,
            heap_at: NONE,
            inactivity,
            vlan: pkt.vlan,
            inner_vlan: pkt.inner_vlan,
            orig_is_lo: src_is_lo != flip,
            one_way,
            ip_proto: pkt.ip_proto,
            seen: [false; 2],
            weird_bits: 0,
        };
        if flip {
            conn.history.add(b'^');
        }
        // Until the first packet arms a real timer, check back after the
        // longest delay that could apply.
        let first_check = pkt
            .ts
            .plus(self.cfg.tcp_attempt_delay.min(self.cfg.udp_inactivity))
            .micros();
        conn.heap_at = first_check;
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i as usize) {
                    *s = Some((key, conn));
                }
                i
            }
            None => {
                self.slots.push(Some((key, conn)));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, i);
        self.heap.push(Reverse((first_check, i)));
        i
    }

    /// Ends flows whose time has come, in deadline order.
    pub fn expire(&mut self, now: Time, out: &mut FlowOutput) {
        let now = now.micros();
        if now > self.now {
            self.now = now;
        }
        while let Some(&Reverse((at, i))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            let Some(Some((_, c))) = self.slots.get_mut(i as usize) else {
                continue;
            };
            if c.heap_at != at {
                continue; // superseded entry
            }
            if c.due(now) {
                self.remove(i, EndReason::Expired, out);
            } else {
                let d = c.deadline().max(now + 1);
                let d = if d == NONE {
                    now + self.cfg.tcp_inactivity.micros()
                } else {
                    d
                };
                c.heap_at = d;
                self.heap.push(Reverse((d, i)));
            }
        }
    }

    /// Evicts the flow nearest to its own timeout.
    fn evict_one(&mut self, out: &mut FlowOutput) -> bool {
        while let Some(Reverse((at, i))) = self.heap.pop() {
            let Some(Some((_, c))) = self.slots.get_mut(i as usize) else {
                continue;
            };
            if c.heap_at != at {
                continue;
            }
            let d = c.deadline();
            if d > at && d != NONE && self.heap.peek().is_some_and(|Reverse((next, _))| *next < d) {
                c.heap_at = d;
                self.heap.push(Reverse((d, i)));
                continue;
            }
            self.remove(i, EndReason::Evicted, out);
            return true;
        }
        false
    }

    /// Logs every open flow, as at the end of a capture.
    pub fn flush(&mut self, out: &mut FlowOutput) {
        let mut open: Vec<(Time, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|(_, c)| (c.start, i as u32)))
            .collect();
        open.sort_unstable();
        for (_, i) in open {
            self.remove(i, EndReason::Flushed, out);
        }
        self.heap.clear();
    }

    fn remove(&mut self, i: u32, reason: EndReason, out: &mut FlowOutput) {
        let Some((key, c)) = self.slots.get_mut(i as usize).and_then(|s| s.take()) else {
            return;
        };
        self.index.remove(&key);
        self.free.push(i);
        match reason {
            EndReason::Expired | EndReason::Reused => self.counters.expired += 1,
            EndReason::Evicted => self.counters.evicted += 1,
            EndReason::Flushed => self.counters.flushed += 1,
        }
        out.conns.push((self.record(&key, &c), reason));
    }

    fn record(&self, key: &FlowKey, c: &Conn) -> ConnRecord {
        let (orig, resp) = if c.orig_is_lo {
            ((key.lo, key.lo_port), (key.hi, key.hi_port))
        } else {
            ((key.hi, key.hi_port), (key.lo, key.lo_port))
        };
        let duration = c.last.since(c.start);
        let (proto, conn_state, sizes) = match (&c.tcp, key.proto) {
            (Some(t), _) => (
                "tcp",
                t.conn_state(c.history.as_str()),
                (t.orig_size(), t.resp_size()),
            ),
            (None, IPPROTO_UDP) => {
                let st = match c.seen {
                    [true, true] => "SF",
                    [true, false] => "S0",
                    [false, true] => "SHR",
                    [false, false] => "OTH",
                };
                ("udp", st, (c.bytes[0], c.bytes[1]))
            }
            (None, IPPROTO_ICMP | IPPROTO_ICMPV6) => ("icmp", "OTH", (c.bytes[0], c.bytes[1])),
            (None, _) => ("unknown_transport", "OTH", (c.bytes[0], c.bytes[1])),
        };
        let has_ports = matches!(
            key.proto,
            IPPROTO_TCP | IPPROTO_UDP | IPPROTO_ICMP | IPPROTO_ICMPV6
        );
        let community_id = community_id_v1(
            self.cfg.community_id_seed,
            c.ip_proto,
            orig,
            resp,
            c.one_way && has_ports,
        );
        let history = match (&c.tcp, key.proto) {
            (None, IPPROTO_ICMP | IPPROTO_ICMPV6) => None,
            _ if c.history.len == 0 => None,
            _ => Some(c.history.as_str().to_string()),
        };
        ConnRecord {
            ts: c.start,
            uid: c.uid,
            orig_h: orig.0,
            orig_p: orig.1,
            resp_h: resp.0,
            resp_p: resp.1,
            proto,
            service: c.service.map(str::to_string),
            duration: (duration.micros() > 0).then_some(duration),
            orig_bytes: (duration.micros() > 0).then_some(sizes.0),
            resp_bytes: (duration.micros() > 0).then_some(sizes.1),
            conn_state,
            local_orig: is_private(orig.0),
            local_resp: is_private(resp.0),
            missed_bytes: c.missed,
            history,
            orig_pkts: c.pkts[0],
            orig_ip_bytes: c.ip_bytes[0],
            resp_pkts: c.pkts[1],
            resp_ip_bytes: c.ip_bytes[1],
            tunnel_parents: c.tunnel_parents.clone(),
            ip_proto: c.ip_proto,
            vlan: c.vlan,
            inner_vlan: c.inner_vlan,
            community_id: Some(community_id),
        }
    }
}

fn bump_scaled(s: &mut tcp::Scaled) -> bool {
    s.bump()
}

/// Folds an address into 64 bits for uid hashing.
fn addr_word(a: IpAddr) -> u64 {
    match a {
        IpAddr::V4(v) => u64::from(u32::from(v)),
        IpAddr::V6(v) => {
            let x = u128::from(v);
            mix64(x as u64) ^ (x >> 64) as u64
        }
    }
}

/// The 64-bit finaliser of MurmurHash3.
fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn name_hash(s: &str) -> u32 {
    s.bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    })
}

#[cold]
fn unreachable_slot() {
    tracing::error!("flow index points at an empty slot");
}
