//! The bidirectional flow table: Zeek's connection semantics (originator,
//! `conn_state`, `history`, byte and packet counts, timeouts) under a memory cap.

mod community_id;
mod local;
mod ports;
pub mod tcp;

pub use community_id::community_id_v1;
pub use local::{is_private, LocalNets};
pub use ports::likely_server_port;

use crate::decode::{IcmpView, TcpView, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use crate::proto::stream::{Chunk, Stream};
use crate::proto::tap::{Datagram, StreamChunk};
use crate::proto::{App, AppOut, FlowCtx, Shared};
use hashbrown::HashTable;
use schema::{ConnRecord, Event, FlowUid, Interval, Time};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv6Addr};
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
    /// Run the protocol analyzers; off, the sensor tracks flows only.
    pub analyzers: bool,
    /// Out-of-order TCP bytes all streams of a worker may hold for the
    /// analyzers; past it, holes are declared gaps at once.
    pub stream_memory: usize,
    /// Bytes of each transferred file kept for extraction; 0 keeps none.
    pub keep_file_bytes: u64,
    /// Makes the tap that receives every analyzed TCP stream's payload.
    pub tap: Option<crate::proto::tap::TapFactory>,
    /// Networks that count as local for `local_orig`/`local_resp`.
    pub local_nets: LocalNets,
    /// Log SNMP communities as `<redacted>`.
    pub redact_snmp_community: bool,
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
            analyzers: true,
            stream_memory: 64 << 20,
            keep_file_bytes: 0,
            tap: None,
            local_nets: LocalNets::default(),
            redact_snmp_community: false,
        }
    }
}

/// A connection key with the endpoints in canonical order, so both
/// directions find the same entry. VLANs and tunnels are not part of it, as in
/// Zeek. Addresses are stored as 16 bytes (IPv4 mapped) to keep the key small.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    lo: [u8; 16],
    hi: [u8; 16],
    lo_port: u16,
    hi_port: u16,
    proto: u8,
    v6: bool,
}

fn addr_bytes(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        IpAddr::V6(v) => v.octets(),
    }
}

impl FlowKey {
    /// Returns the key and whether `src` is the low endpoint.
    pub fn new(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, proto: u8) -> (FlowKey, bool) {
        let v6 = src.is_ipv6();
        let (s, d) = (addr_bytes(src), addr_bytes(dst));
        let (sn, dn) = (u128::from_be_bytes(s), u128::from_be_bytes(d));
        if (sn, sport) <= (dn, dport) {
            (FlowKey { lo: s, hi: d, lo_port: sport, hi_port: dport, proto, v6 }, true)
        } else {
            (FlowKey { lo: d, hi: s, lo_port: dport, hi_port: sport, proto, v6 }, false)
        }
    }

    fn addr(&self, b: [u8; 16]) -> IpAddr {
        let a = Ipv6Addr::from(b);
        match (self.v6, a.to_ipv4_mapped()) {
            (false, Some(v4)) => IpAddr::V4(v4),
            _ => IpAddr::V6(a),
        }
    }

    fn lo(&self) -> (IpAddr, u16) {
        (self.addr(self.lo), self.lo_port)
    }

    fn hi(&self) -> (IpAddr, u16) {
        (self.addr(self.hi), self.hi_port)
    }
}

/// What a packet contributes to its connection.
#[derive(Clone, Copy, Debug)]
pub enum Transport<'a> {
    Tcp(TcpView<'a>),
    Udp { src_port: u16, dst_port: u16, len: u32 },
    Icmp(IcmpView),
    Other { len: u32 },
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
    /// Source and destination MAC addresses, when the frame was Ethernet.
    pub macs: Option<([u8; 6], [u8; 6])>,
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
    buf: [u8; 19],
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

/// Per-connection state other than TCP's, laid out for size: the table
/// holds up to `max_flows` of these.
struct Conn {
    uid_lo: u64,
    start: Time,
    last: Time,
    /// Index 0 is the originator.
    pkts: [u64; 2],
    ip_bytes: [u64; 2],
    proto: ProtoState,
    tunnel_parents: Option<Box<Parents>>,
    /// Deadlines in microseconds, `NONE` when not armed.
    delete_at: i64,
    /// The deadline of this flow's live entry in the timer heap.
    heap_at: i64,
    uid_hi: u32,
    /// Handshake timers as microsecond offsets from `start`, `OFF_NONE` when
    /// not armed; they fire within seconds of the packets that arm them, so
    /// 32 bits suffice (a flow older than 71 minutes simply never arms them).
    attempt_off: u32,
    partial_close_off: u32,
    history: HistBuf,
    /// `NO_VLAN` when untagged.
    vlan: u16,
    inner_vlan: u16,
    /// Originator's and responder's MAC addresses, from the first frame of
    /// each direction; all zero when unknown.
    macs: [[u8; 6]; 2],
    /// Names of weirds already reported for this flow (hashed to bits).
    weird_bits: u16,
    /// Index into `SERVICES`, 0 for none.
    service: u8,
    ip_proto: u8,
    flags: u8,
    /// The application analyzer, once one is chosen.
    app: Option<Box<AppSlot>>,
}

/// An analyzer and, for TCP, the two reassembled streams feeding it.
struct AppSlot {
    app: App,
    /// TCP only: the originator's and the responder's streams.
    streams: Option<Box<[Stream; 2]>>,
}

/// Out-of-order bytes one TCP stream may hold for its analyzer; past it the
/// lowest hole is declared a gap.
const STREAM_HOLD_CAP: usize = 256 << 10;

/// Uids of the tunnels that carried a flow; boxed behind one pointer because
/// most flows have none.
#[derive(Default)]
struct Parents(Vec<FlowUid>);

enum ProtoState {
    Tcp(Box<TcpConn>),
    /// UDP, ICMP and other protocols: payload bytes per direction.
    Counted([u64; 2]),
}

const OFF_NONE: u32 = u32::MAX;
const NO_VLAN: u16 = u16::MAX;

/// `Conn::flags` bits.
const F_ORIG_IS_LO: u8 = 1;
const F_ONE_WAY: u8 = 2;
const F_SEEN_ORIG: u8 = 4;
const F_SEEN_RESP: u8 = 8;
/// The inactivity timeout applies (always for UDP/ICMP, once established for TCP).
const F_INACTIVITY: u8 = 16;
/// An analyzer was chosen for the flow, or none fits: do not look again.
const F_APP_DECIDED: u8 = 32;

/// Service names a flow can carry; index 0 means none.
pub const SERVICES: &[&str] = &[
    "", "vxlan", "geneve", "gtpv1", "teredo", "dns", "ssh", "http", "ssl", "ntp", "ftp", "ftp-data", "smtp", "dhcp",
    "smtp,ssl", "quic,ssl", "modbus", "mqtt", "dnp3", "coap", "snmp", "bacnet",
];

impl Conn {
    fn tcp(&self) -> Option<&TcpConn> {
        match &self.proto {
            ProtoState::Tcp(t) => Some(t),
            ProtoState::Counted(_) => None,
        }
    }

    fn uid(&self) -> FlowUid {
        FlowUid::new((u128::from(self.uid_hi) << 64) | u128::from(self.uid_lo))
    }

    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    fn set(&mut self, f: u8, on: bool) {
        if on {
            self.flags |= f;
        } else {
            self.flags &= !f;
        }
    }

    fn abs(&self, off: u32) -> i64 {
        if off == OFF_NONE {
            NONE
        } else {
            self.start.micros().saturating_add(i64::from(off))
        }
    }

    fn off(&self, at: i64) -> u32 {
        let d = at.saturating_sub(self.start.micros());
        if d < 0 {
            0
        } else if d >= i64::from(OFF_NONE) {
            OFF_NONE
        } else {
            d as u32
        }
    }

    fn deadline(&self, inactivity: Interval) -> i64 {
        let mut d = self.delete_at.min(self.abs(self.attempt_off)).min(self.abs(self.partial_close_off));
        if self.has(F_INACTIVITY) {
            d = d.min(self.last.plus(inactivity).micros());
        }
        d
    }

    /// Would Zeek have removed this connection by `now`, given that nothing
    /// happened since its last packet? Disarms timers that fired in vain.
    fn due(&mut self, now: i64, inactivity: Interval) -> bool {
        if self.delete_at <= now {
            return true;
        }
        if self.has(F_INACTIVITY) && self.last.plus(inactivity).micros() <= now {
            return true;
        }
        if self.abs(self.attempt_off) <= now {
            if self.tcp().is_some_and(|t| t.is_attempt()) {
                return true;
            }
            self.attempt_off = OFF_NONE;
        }
        if self.abs(self.partial_close_off) <= now {
            if self.tcp().is_some_and(|t| t.partial_close_removes()) {
                return true;
            }
            self.partial_close_off = OFF_NONE;
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
    /// Records of the application analyzers.
    pub events: Vec<Event>,
}

/// Where a packet went: its connection and direction, for the analyzers.
#[derive(Clone, Copy, Debug)]
pub struct Observed {
    pub uid: FlowUid,
    pub slot: u32,
    /// The packet came from the originator (after any flip it caused).
    pub is_orig: bool,
}

/// Keys come from the network, so the table hashes with a per-process random
/// seed (ahash): an attacker cannot precompute colliding flows.
type Hasher = ahash::RandomState;

pub struct FlowTable {
    cfg: FlowConfig,
    hasher: Hasher,
    /// Slot numbers with 32 bits of their key's hash, found by that hash: 8
    /// bytes per entry instead of a copy of the key, and growing the table
    /// never has to read the slots.
    index: HashTable<(u32, u32)>,
    slots: Vec<Option<(FlowKey, Conn)>>,
    free: Vec<u32>,
    heap: BinaryHeap<Reverse<(i64, u32)>>,
    uid_seed: u64,
    pub counters: FlowCounters,
    now: i64,
    /// Slots left to log at the end of a run, newest first.
    flush_queue: Vec<u32>,
    /// What analyzers share across flows (expected data channels, ...).
    shared: Shared,
}

impl FlowTable {
    pub fn new(cfg: FlowConfig) -> Self {
        let hasher = Hasher::new();
        let uid_seed = cfg.uid_seed.unwrap_or_else(|| hasher.hash_one(0x5eed_u32));
        let keep_file_bytes = cfg.keep_file_bytes;
        let redact_snmp_community = cfg.redact_snmp_community;
        let tap = cfg.tap.as_ref().map(|f| crate::proto::tap::Tap((f.0)()));
        FlowTable {
            cfg,
            hasher,
            index: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            heap: BinaryHeap::new(),
            uid_seed,
            counters: FlowCounters::default(),
            now: i64::MIN,
            flush_queue: Vec::new(),
            shared: Shared { keep_file_bytes, tap, redact_snmp_community, ..Shared::default() },
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Out-of-order bytes held for the analyzers now, and gaps declared
    /// because a stream or the worker's budget was full.
    pub fn reassembly(&self) -> (usize, u64) {
        (self.shared.stream_held, self.shared.stream_forced_gaps)
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn inactivity(&self, proto: u8) -> Interval {
        match proto {
            IPPROTO_TCP => self.cfg.tcp_inactivity,
            IPPROTO_UDP => self.cfg.udp_inactivity,
            IPPROTO_ICMP | IPPROTO_ICMPV6 => self.cfg.icmp_inactivity,
            _ => self.cfg.other_inactivity,
        }
    }

    fn hash(&self, key: &FlowKey) -> u32 {
        let h = self.hasher.hash_one(key);
        (h ^ (h >> 32)) as u32
    }

    fn find(&self, key: &FlowKey) -> Option<u32> {
        let h = self.hash(key);
        let slots = &self.slots;
        self.index
            .find(widen(h), |&(i, hi)| {
                hi == h && slots.get(i as usize).and_then(|s| s.as_ref()).is_some_and(|(k, _)| k == key)
            })
            .map(|&(i, _)| i)
    }

    fn conn_mut(&mut self, i: u32) -> Option<(&FlowKey, &mut Conn)> {
        self.slots.get_mut(i as usize).and_then(|s| s.as_mut()).map(|(k, c)| (&*k, c))
    }

    /// Uid for a new flow: a hash of the seed, the key and the start time, so
    /// a seeded run gives the same uids whatever the number of workers.
    fn make_uid(&self, key: &FlowKey, ts: Time, salt: u8) -> FlowUid {
        // A fixed, portable mix (not the table's random hasher): seeded runs
        // must give the same uids on every machine.
        let ports = (u64::from(key.lo_port) << 32) | (u64::from(key.hi_port) << 16) | (u64::from(key.proto) << 8);
        let words = [addr_word(&key.lo), addr_word(&key.hi), ports | u64::from(salt), ts.micros() as u64];
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
    pub fn observe(&mut self, pkt: &PacketMeta<'_>, out: &mut FlowOutput) -> Observed {
        self.counters.pkts += 1;
        let now = pkt.ts.micros();
        if now > self.now {
            self.now = now;
        }
        let (sport, dport, one_way) = match pkt.transport {
            Transport::Tcp(t) => (t.src_port, t.dst_port, false),
            Transport::Udp { src_port, dst_port, .. } => (src_port, dst_port, false),
            Transport::Icmp(i) => icmp_ports(i.typ, i.code, i.v6),
            Transport::Other { .. } => (0, 0, false),
        };
        let (key, src_is_lo) = FlowKey::new(pkt.src, sport, pkt.dst, dport, pkt.ip_proto);
        let inactivity = self.inactivity(pkt.ip_proto);

        let mut slot = self.find(&key);
        if let Some(i) = slot {
            let Some((_, c)) = self.conn_mut(i) else {
                unreachable_slot();
                return Observed { uid: FlowUid::new(0), slot: u32::MAX, is_orig: true };
            };
            let end = if c.due(now, inactivity) {
                Some(EndReason::Expired)
            } else if let (Some(t), Transport::Tcp(v)) = (c.tcp(), pkt.transport) {
                let mut w = Vec::new();
                let r = t.is_reuse(&v, pkt.ts, c.last, &mut w);
                if !w.is_empty() {
                    let (orig, resp) = endpoints(&key, c);
                    for name in w {
                        out.weirds.push(FlowWeird { ts: pkt.ts, uid: c.uid(), orig, resp, name });
                    }
                }
                r.then_some(EndReason::Reused)
            } else {
                None
            };
            if let Some(reason) = end {
                self.remove(i, reason, out);
                slot = None;
            }
        }
        let i = match slot {
            Some(i) => i,
            None => self.create(key, src_is_lo, pkt, one_way, sport, dport, out),
        };
        let cfg = self.cfg.clone_timers();
        let Some(Some((key, c))) = self.slots.get_mut(i as usize) else {
            unreachable_slot();
            return Observed { uid: FlowUid::new(0), slot: u32::MAX, is_orig: true };
        };
        let key = *key;
        let is_orig = c.has(F_ORIG_IS_LO) == src_is_lo;
        let mut weirds: Vec<&'static str> = Vec::new();
        let mut earlier_deadline = false;
        let mut tcp_feed = None;

        if pkt.bad_checksum {
            // Zeek notes the bad checksum in the history and skips the packet.
            weirds.push(match pkt.transport {
                Transport::Tcp(_) => "bad_TCP_checksum",
                Transport::Udp { .. } => "bad_UDP_checksum",
                _ => "bad_ICMP_checksum",
            });
            let letter = if is_orig { b'C' } else { b'c' };
            match &mut c.proto {
                ProtoState::Tcp(t) => {
                    if bump_scaled(&mut t.ep[usize::from(!is_orig)].chk) {
                        c.history.add(letter);
                    }
                }
                ProtoState::Counted(_) => c.history.add(letter),
            }
        } else {
            let mut dir = usize::from(!is_orig);
            match (&mut c.proto, pkt.transport) {
                (ProtoState::Tcp(t), Transport::Tcp(v)) => {
                    let mut fx = TcpEffects::default();
                    t.process(&mut c.history, is_orig, &v, &mut fx);
                    if fx.flip {
                        c.flags ^= F_ORIG_IS_LO;
                        c.pkts.swap(0, 1);
                        c.ip_bytes.swap(0, 1);
                        c.history.add(b'^');
                        dir = 1 - dir;
                    }
                    if fx.touch {
                        c.last = pkt.ts;
                    }
                    if fx.attempt_started && c.attempt_off == OFF_NONE {
                        c.attempt_off = c.off(pkt.ts.plus(cfg.tcp_attempt_delay).micros());
                    }
                    if fx.start_inactivity {
                        c.set(F_INACTIVITY, true);
                    }
                    if fx.close_complete {
                        // Zeek cancels the handshake timers and deletes the
                        // connection after the close delay.
                        c.attempt_off = OFF_NONE;
                        c.partial_close_off = OFF_NONE;
                        c.delete_at = c.last.plus(cfg.tcp_close_delay).micros();
                        earlier_deadline = true;
                    }
                    if fx.partial_close {
                        c.partial_close_off = c.off(c.last.plus(cfg.tcp_partial_close_delay).micros());
                        earlier_deadline = true;
                    }
                    weirds.extend(fx.weirds);
                    let captured = v.payload.get(..(v.len as usize).min(v.payload.len())).unwrap_or(&[]);
                    tcp_feed = Some((fx.data_seq.map(|s| (s, captured)), fx.peer_acked, dir == 0));
                }
                (ProtoState::Counted(bytes), Transport::Udp { len, .. }) => {
                    c.last = pkt.ts;
                    bytes[dir] += u64::from(len);
                    let seen = if dir == 0 { F_SEEN_ORIG } else { F_SEEN_RESP };
                    if c.flags & seen == 0 {
                        c.history.add(if dir == 0 { b'D' } else { b'd' });
                    }
                }
                (ProtoState::Counted(bytes), Transport::Icmp(ic)) => {
                    c.last = pkt.ts;
                    bytes[dir] += u64::from(ic.len);
                }
                (ProtoState::Counted(bytes), Transport::Other { len }) => {
                    c.last = pkt.ts;
                    bytes[dir] += u64::from(len);
                }
                // The key includes the protocol, so a flow never changes kind.
                _ => {}
            }
            c.flags |= if dir == 0 { F_SEEN_ORIG } else { F_SEEN_RESP };
            c.pkts[dir] += 1;
            c.ip_bytes[dir] += u64::from(pkt.ip_len);
            if let (Some((src, dst)), Some(m)) = (pkt.macs, c.macs.get_mut(dir)) {
                if *m == [0; 6] {
                    *m = src;
                    if let Some(other) = c.macs.get_mut(1 - dir) {
                        if *other == [0; 6] {
                            *other = dst;
                        }
                    }
                }
            }
        }
        if let (Some((data, ack, from_orig)), true) = (tcp_feed, self.cfg.analyzers) {
            tcp_app(c, &key, pkt.ts, from_orig, data, ack, &mut self.shared, &self.cfg, out);
        }
        if c.vlan == NO_VLAN {
            c.vlan = pkt.vlan.unwrap_or(NO_VLAN);
            c.inner_vlan = pkt.inner_vlan.unwrap_or(NO_VLAN);
        }
        if let Some(p) = pkt.tunnel_parent {
            let tp = &mut c.tunnel_parents.get_or_insert_with(Default::default).0;
            if !tp.contains(&p) && tp.len() < 8 {
                tp.push(p);
            }
        }
        let uid = c.uid();
        let now_orig = c.has(F_ORIG_IS_LO) == src_is_lo;
        if !weirds.is_empty() {
            let (orig, resp) = endpoints(&key, c);
            for name in weirds {
                let bit = 1u16 << (name_hash(name) % 16);
                if c.weird_bits & bit == 0 {
                    c.weird_bits |= bit;
                    out.weirds.push(FlowWeird { ts: pkt.ts, uid, orig, resp, name });
                }
            }
        }
        if earlier_deadline {
            let d = c.deadline(inactivity);
            if d < c.heap_at {
                c.heap_at = d;
                self.heap.push(Reverse((d, i)));
            }
        }
        Observed { uid, slot: i, is_orig: now_orig }
    }

    /// Hands a UDP datagram's payload to the flow's analyzer, choosing one on
    /// the first payload.
    pub fn udp_payload(&mut self, obs: &Observed, ts: Time, ports: (u16, u16), payload: &[u8], out: &mut FlowOutput) {
        let Some(Some((key, c))) = self.slots.get_mut(obs.slot as usize) else { return };
        if c.uid() != obs.uid {
            return;
        }
        if !self.cfg.analyzers {
            return;
        }
        if !c.has(F_APP_DECIDED) {
            c.set(F_APP_DECIDED, true);
            c.app = App::for_udp(ports.0, ports.1, payload).map(|app| Box::new(AppSlot { app, streams: None }));
        }
        if let Some(tap) = self.shared.tap.as_mut() {
            let (orig, resp) = endpoints(key, c);
            let d = Datagram { ts, uid: c.uid(), orig, resp, is_orig: obs.is_orig, payload };
            tap.0.datagram(&d, &mut out.events);
        }
        if c.app.is_none() {
            return;
        }
        let key = *key;
        let keep = self.shared.keep_file_bytes;
        app_call(c, &key, ts, obs.is_orig, (keep, &self.cfg.local_nets), out, |app, ctx, ao| {
            app.datagram(ctx, payload, &mut self.shared, ao)
        });
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
        let Some(idx) = SERVICES.iter().position(|x| *x == s) else {
            return;
        };
        if let Some(i) = self.find(&key) {
            if let Some((_, c)) = self.conn_mut(i) {
                if c.uid() == uid {
                    c.service = idx as u8;
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
        let (proto, inactive_timer) = match pkt.transport {
            Transport::Tcp(v) => {
                let (syn, ack) = (v.flags & crate::decode::TH_SYN != 0, v.flags & crate::decode::TH_ACK != 0);
                if !syn || ack {
                    // A partial connection: guess the responder by the ports.
                    if likely_server_port(sport, IPPROTO_TCP) {
                        flip = if likely_server_port(dport, IPPROTO_TCP) { !syn && sport < dport } else { true };
                    }
                }
                (ProtoState::Tcp(Box::default()), false)
            }
            Transport::Udp { .. } => {
                flip = likely_server_port(sport, IPPROTO_UDP) && !likely_server_port(dport, IPPROTO_UDP);
                (ProtoState::Counted([0; 2]), true)
            }
            Transport::Icmp(_) | Transport::Other { .. } => (ProtoState::Counted([0; 2]), true),
        };
        let uid = self.make_uid(&key, pkt.ts, 0).0;
        let mut flags = 0;
        if src_is_lo != flip {
            flags |= F_ORIG_IS_LO;
        }
        if one_way {
            flags |= F_ONE_WAY;
        }
        if inactive_timer {
            flags |= F_INACTIVITY;
        }
        // Until a packet arms a real timer, check back after the shortest
        // delay that could apply.
        let first_check = pkt.ts.plus(self.cfg.tcp_attempt_delay.min(self.cfg.udp_inactivity)).micros();
        let mut conn = Conn {
            uid_lo: uid as u64,
            start: pkt.ts,
            last: pkt.ts,
            pkts: [0; 2],
            ip_bytes: [0; 2],
            proto,
            tunnel_parents: None,
            delete_at: NONE,
            heap_at: first_check,
            uid_hi: (uid >> 64) as u32,
            attempt_off: OFF_NONE,
            partial_close_off: OFF_NONE,
            history: HistBuf::default(),
            vlan: pkt.vlan.unwrap_or(NO_VLAN),
            inner_vlan: pkt.inner_vlan.unwrap_or(NO_VLAN),
            macs: [[0; 6]; 2],
            weird_bits: 0,
            service: 0,
            ip_proto: pkt.ip_proto,
            flags,
            app: None,
        };
        if flip {
            conn.history.add(b'^');
        }
        if let Transport::Tcp(_) = pkt.transport {
            // A data channel announced on a control connection.
            if let Some(e) = self.shared.take_expected((pkt.src, pkt.dst, dport), pkt.ts) {
                conn.flags |= F_APP_DECIDED;
                conn.service = SERVICES.iter().position(|s| *s == "ftp-data").unwrap_or(0) as u8;
                conn.app = Some(Box::new(AppSlot {
                    app: App::FtpData(Box::new(crate::proto::ftp::FtpData::new(e.control))),
                    streams: Some(Box::default()),
                }));
            }
        }
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
        let h = self.hash(&key);
        self.index.insert_unique(widen(h), (i, h), |&(_, hj)| widen(hj));
        self.heap.push(Reverse((first_check, i)));
        i
    }

    /// Ends flows whose time has come, in deadline order.
    pub fn expire(&mut self, now: Time, out: &mut FlowOutput) {
        self.shared.dhcp.expire(now, &mut out.events);
        let now = now.micros();
        if now > self.now {
            self.now = now;
        }
        while let Some(&Reverse((at, i))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            let tcp_inactivity = self.cfg.tcp_inactivity;
            let Some(proto) = self.slots.get(i as usize).and_then(|s| s.as_ref()).map(|(k, _)| k.proto) else {
                continue;
            };
            let inactivity = self.inactivity(proto);
            let Some((_, c)) = self.conn_mut(i) else {
                continue;
            };
            if c.heap_at != at {
                continue; // superseded entry
            }
            if c.due(now, inactivity) {
                self.remove(i, EndReason::Expired, out);
            } else {
                let d = c.deadline(inactivity);
                let d = if d == NONE { now + tcp_inactivity.micros() } else { d.max(now + 1) };
                c.heap_at = d;
                self.heap.push(Reverse((d, i)));
            }
        }
    }

    /// Evicts the flow nearest to its own timeout.
    fn evict_one(&mut self, out: &mut FlowOutput) -> bool {
        while let Some(Reverse((at, i))) = self.heap.pop() {
            let Some(proto) = self.slots.get(i as usize).and_then(|s| s.as_ref()).map(|(k, _)| k.proto) else {
                continue;
            };
            let inactivity = self.inactivity(proto);
            let next = self.heap.peek().map(|Reverse((n, _))| *n);
            let Some((_, c)) = self.conn_mut(i) else {
                continue;
            };
            if c.heap_at != at {
                continue;
            }
            let d = c.deadline(inactivity);
            if d > at && d != NONE && next.is_some_and(|n| n < d) {
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
        while self.flush_some(usize::MAX, out) > 0 {}
    }

    /// Logs up to `max` open flows, oldest first; returns how many. Lets the
    /// caller hand records on in bounded batches at the end of a large run.
    pub fn flush_some(&mut self, max: usize, out: &mut FlowOutput) -> usize {
        if self.flush_queue.is_empty() {
            let mut open: Vec<(Time, u32)> = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.as_ref().map(|(_, c)| (c.start, i as u32)))
                .collect();
            // Newest first, so that popping yields the oldest.
            open.sort_unstable_by(|a, b| b.cmp(a));
            self.flush_queue = open.into_iter().map(|(_, i)| i).collect();
        }
        let mut n = 0;
        while n < max {
            let Some(i) = self.flush_queue.pop() else { break };
            self.remove(i, EndReason::Flushed, out);
            n += 1;
        }
        if self.index.is_empty() {
            self.shared.dhcp.flush(&mut out.events);
            self.heap.clear();
            self.flush_queue = Vec::new();
        }
        n
    }

    fn remove(&mut self, i: u32, reason: EndReason, out: &mut FlowOutput) {
        let Some((key, c)) = self.slots.get_mut(i as usize).and_then(|s| s.take()) else {
            return;
        };
        let h = self.hash(&key);
        if let Ok(entry) = self.index.find_entry(widen(h), |&(j, _)| j == i) {
            entry.remove();
        }
        self.free.push(i);
        match reason {
            EndReason::Expired | EndReason::Reused => self.counters.expired += 1,
            EndReason::Evicted => self.counters.evicted += 1,
            EndReason::Flushed => self.counters.flushed += 1,
        }
        let mut c = c;
        if let Some(mut slot) = c.app.take() {
            if let Some(st) = &slot.streams {
                let held: usize = st.iter().map(Stream::held_bytes).sum();
                self.shared.stream_held = self.shared.stream_held.saturating_sub(held);
            }
            let (orig, resp) = endpoints(&key, &c);
            let keep_file_bytes = self.shared.keep_file_bytes;
            let (orig_local, resp_local) = (self.cfg.local_nets.contains(orig.0), self.cfg.local_nets.contains(resp.0));
            let ctx = FlowCtx {
                ts: c.last,
                uid: c.uid(),
                orig,
                resp,
                is_orig: true,
                keep_file_bytes,
                orig_local,
                resp_local,
            };
            let mut ao = AppOut::default();
            slot.app.finish(&ctx, &mut self.shared, &mut ao);
            out.events.append(&mut ao.events);
            if let Some(tap) = self.shared.tap.as_mut() {
                tap.0.end(c.last, c.uid(), &mut out.events);
            }
        }
        out.conns.push((self.record(&key, &c), reason));
    }

    fn record(&self, key: &FlowKey, c: &Conn) -> ConnRecord {
        let (orig, resp) = endpoints(key, c);
        let duration = c.last.since(c.start);
        let (proto, conn_state, sizes, missed) = match (&c.proto, key.proto) {
            (ProtoState::Tcp(t), _) => {
                ("tcp", t.conn_state(c.history.as_str()), (t.orig_size(), t.resp_size()), t.missed)
            }
            (ProtoState::Counted(b), IPPROTO_UDP) => {
                let st = match (c.has(F_SEEN_ORIG), c.has(F_SEEN_RESP)) {
                    (true, true) => "SF",
                    (true, false) => "S0",
                    (false, true) => "SHR",
                    (false, false) => "OTH",
                };
                ("udp", st, (b[0], b[1]), 0)
            }
            (ProtoState::Counted(b), IPPROTO_ICMP | IPPROTO_ICMPV6) => ("icmp", "OTH", (b[0], b[1]), 0),
            (ProtoState::Counted(b), _) => ("unknown_transport", "OTH", (b[0], b[1]), 0),
        };
        let has_ports = matches!(key.proto, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_ICMP | IPPROTO_ICMPV6);
        let community_id =
            community_id_v1(self.cfg.community_id_seed, c.ip_proto, orig, resp, c.has(F_ONE_WAY) && has_ports);
        let history = match (&c.proto, key.proto) {
            (ProtoState::Counted(_), IPPROTO_ICMP | IPPROTO_ICMPV6) => None,
            _ if c.history.len == 0 => None,
            _ => Some(c.history.as_str().to_string()),
        };
        let some_vlan = |v: u16| (v != NO_VLAN).then_some(v);
        ConnRecord {
            ts: c.start,
            uid: c.uid(),
            orig_h: orig.0,
            orig_p: orig.1,
            resp_h: resp.0,
            resp_p: resp.1,
            proto,
            service: SERVICES.get(usize::from(c.service)).filter(|s| !s.is_empty()).map(|s| s.to_string()),
            duration: (duration.micros() > 0).then_some(duration),
            orig_bytes: (duration.micros() > 0).then_some(sizes.0),
            resp_bytes: (duration.micros() > 0).then_some(sizes.1),
            conn_state,
            local_orig: self.cfg.local_nets.contains(orig.0),
            local_resp: self.cfg.local_nets.contains(resp.0),
            missed_bytes: missed,
            history,
            orig_pkts: c.pkts[0],
            orig_ip_bytes: c.ip_bytes[0],
            resp_pkts: c.pkts[1],
            resp_ip_bytes: c.ip_bytes[1],
            tunnel_parents: c.tunnel_parents.as_ref().map(|p| p.0.clone()).unwrap_or_default(),
            ip_proto: c.ip_proto,
            orig_l2_addr: mac_text(c.macs[0]),
            resp_l2_addr: mac_text(c.macs[1]),
            vlan: some_vlan(c.vlan),
            inner_vlan: some_vlan(c.inner_vlan).filter(|_| c.vlan != NO_VLAN),
            community_id: Some(community_id),
        }
    }
}

/// `aa:bb:cc:dd:ee:ff`, or nothing for an unknown (all-zero) address.
fn mac_text(m: [u8; 6]) -> Option<String> {
    (m != [0; 6]).then(|| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
}

/// Runs `f` on the flow's analyzer and applies what it produced: records,
/// weirds (once per flow), the service it confirmed, and its removal if it
/// gave up.
fn app_call(
    c: &mut Conn,
    key: &FlowKey,
    ts: Time,
    is_orig: bool,
    (keep_file_bytes, nets): (u64, &LocalNets),
    out: &mut FlowOutput,
    f: impl FnOnce(&mut App, &FlowCtx, &mut AppOut),
) {
    let (orig, resp) = endpoints(key, c);
    let uid = c.uid();
    let Some(slot) = c.app.as_mut() else { return };
    let (orig_local, resp_local) = (nets.contains(orig.0), nets.contains(resp.0));
    let ctx = FlowCtx { ts, uid, orig, resp, is_orig, keep_file_bytes, orig_local, resp_local };
    let mut ao = AppOut::default();
    f(&mut slot.app, &ctx, &mut ao);
    if slot.app.failed() {
        c.app = None;
    }
    if let Some(s) = ao.confirmed {
        // A composite name ("smtp,ssl") refines the one already set.
        if c.service == 0 || s.contains(',') {
            c.service = SERVICES.iter().position(|x| *x == s).unwrap_or(0) as u8;
        }
    }
    for name in ao.weirds {
        let bit = 1u16 << (name_hash(name) % 16);
        if c.weird_bits & bit == 0 {
            c.weird_bits |= bit;
            out.weirds.push(FlowWeird { ts, uid, orig, resp, name });
        }
    }
    out.events.append(&mut ao.events);
}

/// Feeds one TCP segment's payload and acknowledgement to the flow's
/// streams and analyzer, choosing the analyzer on the first payload.
#[allow(clippy::too_many_arguments)]
fn tcp_app(
    c: &mut Conn,
    key: &FlowKey,
    ts: Time,
    is_orig: bool,
    data: Option<(u64, &[u8])>,
    ack: Option<u64>,
    shared: &mut Shared,
    cfg: &FlowConfig,
    out: &mut FlowOutput,
) {
    let budget = cfg.stream_memory;
    if !c.has(F_APP_DECIDED) {
        let Some((_, payload)) = data.filter(|(_, d)| !d.is_empty()) else { return };
        c.set(F_APP_DECIDED, true);
        let resp_port = endpoints(key, c).1 .1;
        // With a tap, streams no analyzer claims are still reassembled for it.
        let app = App::for_tcp(resp_port, payload).or(shared.tap.is_some().then_some(App::Opaque));
        c.app = app.map(|app| Box::new(AppSlot { app, streams: Some(Box::default()) }));
    }
    if c.app.is_none() {
        return;
    }
    let side = usize::from(!is_orig);
    let mut chunks: Vec<(bool, Vec<u8>, u64)> = Vec::new();
    let cap = if shared.stream_held >= budget { 0 } else { STREAM_HOLD_CAP };
    if let Some(slot) = c.app.as_mut() {
        // Chunks are copied out so the analyzer can run with the flow's
        // bookkeeping at hand; a segment is at most a packet long.
        let Some(streams) = slot.streams.as_mut() else { return };
        if let (Some((seq, payload)), Some(stream)) = (data, streams.get_mut(side)) {
            let mut forced = 0;
            let delta = stream.segment(seq, payload, cap, &mut |ch: Chunk<'_>| match ch {
                Chunk::Data(d) => chunks.push((is_orig, d.to_vec(), 0)),
                Chunk::Gap(n) => {
                    forced += 1;
                    chunks.push((is_orig, Vec::new(), n))
                }
            });
            shared.stream_held = shared.stream_held.saturating_add_signed(delta);
            shared.stream_forced_gaps += forced;
        }
        if let (Some(upto), Some(stream)) = (ack, streams.get_mut(1 - side)) {
            let delta = stream.acked(upto, &mut |ch: Chunk<'_>| match ch {
                Chunk::Data(d) => chunks.push((!is_orig, d.to_vec(), 0)),
                Chunk::Gap(n) => chunks.push((!is_orig, Vec::new(), n)),
            });
            shared.stream_held = shared.stream_held.saturating_add_signed(delta);
        }
    }
    for (from_orig, bytes, gap) in chunks {
        if let Some(tap) = shared.tap.as_mut() {
            let (orig, resp) = endpoints(key, c);
            let chunk = if gap > 0 { Chunk::Gap(gap) } else { Chunk::Data(&bytes) };
            tap.0.stream(&StreamChunk { ts, uid: c.uid(), orig, resp, is_orig: from_orig, chunk }, &mut out.events);
        }
        let keep = shared.keep_file_bytes;
        app_call(c, key, ts, from_orig, (keep, &cfg.local_nets), out, |app, ctx, ao| {
            let ch = if gap > 0 { Chunk::Gap(gap) } else { Chunk::Data(&bytes) };
            app.stream(ctx, ch, shared, ao)
        });
    }
}

/// Spreads a 32-bit hash over the 64 bits hashbrown reads: the low bits
/// pick the bucket, the top seven are the tag.
fn widen(h: u32) -> u64 {
    u64::from(h) | (u64::from(h) << 32)
}

fn endpoints(key: &FlowKey, c: &Conn) -> ((IpAddr, u16), (IpAddr, u16)) {
    if c.has(F_ORIG_IS_LO) {
        (key.lo(), key.hi())
    } else {
        (key.hi(), key.lo())
    }
}

/// The timer settings the per-packet path needs, copied out so the table can
/// be borrowed mutably at the same time.
#[derive(Clone, Copy)]
struct Timers {
    tcp_attempt_delay: Interval,
    tcp_close_delay: Interval,
    tcp_partial_close_delay: Interval,
}

impl FlowConfig {
    fn clone_timers(&self) -> Timers {
        Timers {
            tcp_attempt_delay: self.tcp_attempt_delay,
            tcp_close_delay: self.tcp_close_delay,
            tcp_partial_close_delay: self.tcp_partial_close_delay,
        }
    }
}

fn bump_scaled(s: &mut tcp::Scaled) -> bool {
    s.bump()
}

/// Folds an address into 64 bits for uid hashing.
fn addr_word(a: &[u8; 16]) -> u64 {
    let x = u128::from_be_bytes(*a);
    mix64(x as u64) ^ (x >> 64) as u64
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
    s.bytes().fold(2_166_136_261u32, |h, b| (h ^ u32::from(b)).wrapping_mul(16_777_619))
}

#[cold]
fn unreachable_slot() {
    tracing::error!("flow index points at an empty slot");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-flow footprint is a budget (see the book's benchmarks, docs/src/benchmarks.md): these
    /// sizes change only on purpose.
    #[test]
    fn flow_state_stays_small() {
        assert_eq!(std::mem::size_of::<FlowKey>(), 38);
        assert!(
            std::mem::size_of::<Option<(FlowKey, Conn)>>() <= 208,
            "{}",
            std::mem::size_of::<Option<(FlowKey, Conn)>>()
        );
        assert!(std::mem::size_of::<TcpConn>() <= 128, "{}", std::mem::size_of::<TcpConn>());
    }

    #[test]
    fn keys_are_canonical_and_round_trip() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        let (k1, lo1) = FlowKey::new(a, 5, "10.0.0.2".parse().unwrap(), 6, 17);
        let (k2, lo2) = FlowKey::new("10.0.0.2".parse().unwrap(), 6, a, 5, 17);
        assert_eq!(k1, k2);
        assert_ne!(lo1, lo2);
        assert_eq!(k1.lo(), (a, 5));
        // A real IPv6 packet with a v4-mapped address stays IPv6.
        let (k3, _) = FlowKey::new(b, 1, "::1".parse().unwrap(), 2, 17);
        assert!(k3.lo().0.is_ipv6() && k3.hi().0.is_ipv6());
        assert_ne!(k3, FlowKey::new("10.0.0.2".parse().unwrap(), 1, "0.0.0.1".parse().unwrap(), 2, 17).0);
    }
}
