use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const DLT_NULL: u32 = 0;
pub const DLT_EN10MB: u32 = 1;
pub const DLT_PPP: u32 = 9;
pub const DLT_RAW: u32 = 101;
pub const DLT_C_HDLC: u32 = 104;
pub const DLT_LINUX_SLL: u32 = 113;
pub const DLT_LINUX_SLL2: u32 = 276;

/// A classic pcap file (microsecond timestamps).
pub struct PcapWriter<W: Write> {
    w: W,
    pub count: u64,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    pub fn new(mut w: W, linktype: u32) -> io::Result<Self> {
        let snaplen = 262_144u32;
        w.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        w.write_all(&2u16.to_le_bytes())?;
        w.write_all(&4u16.to_le_bytes())?;
        w.write_all(&0i32.to_le_bytes())?;
        w.write_all(&0u32.to_le_bytes())?;
        w.write_all(&snaplen.to_le_bytes())?;
        w.write_all(&linktype.to_le_bytes())?;
        Ok(PcapWriter { w, count: 0, snaplen })
    }

    /// Writes a packet captured whole.
    pub fn packet(&mut self, ts_us: i64, data: &[u8]) -> io::Result<()> {
        self.packet_truncated(ts_us, data, data.len() as u32)
    }

    /// Writes the bytes `data` of a packet that was `wire_len` long.
    pub fn packet_truncated(&mut self, ts_us: i64, data: &[u8], wire_len: u32) -> io::Result<()> {
        let caplen = (data.len() as u32).min(self.snaplen);
        self.w.write_all(&((ts_us / 1_000_000) as u32).to_le_bytes())?;
        self.w.write_all(&((ts_us % 1_000_000) as u32).to_le_bytes())?;
        self.w.write_all(&caplen.to_le_bytes())?;
        self.w.write_all(&wire_len.to_le_bytes())?;
        self.w.write_all(&data[..caplen as usize])?;
        self.count += 1;
        Ok(())
    }

    pub fn into_inner(self) -> W {
        self.w
    }
}

pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_IPV6: u16 = 0x86dd;
pub const ETH_ARP: u16 = 0x0806;

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

pub fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    eth_macs(MAC_B, MAC_A, ethertype, payload)
}

pub fn eth_macs(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Ethernet with 802.1Q tags, outermost first (0x88a8 for the outer tag of a
/// QinQ stack, as IEEE 802.1ad says).
pub fn eth_vlans(tags: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut inner = Vec::new();
    for (i, t) in tags.iter().enumerate() {
        let tpid: u16 = if i == 0 && tags.len() > 1 { 0x88a8 } else { 0x8100 };
        if i == 0 {
            inner.extend_from_slice(&MAC_B);
            inner.extend_from_slice(&MAC_A);
        }
        inner.extend_from_slice(&tpid.to_be_bytes());
        inner.extend_from_slice(&(t & 0x0fff).to_be_bytes());
    }
    inner.extend_from_slice(&ethertype.to_be_bytes());
    inner.extend_from_slice(payload);
    inner
}

pub fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for c in data.chunks(2) {
        let v = if c.len() == 2 { u16::from_be_bytes([c[0], c[1]]) } else { u16::from(c[0]) << 8 };
        sum = sum.wrapping_add(u32::from(v));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let mut b = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            b.extend_from_slice(&s.octets());
            b.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            b.extend_from_slice(&s.octets());
            b.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed address families"),
    }
    let mut sum: u32 = 0;
    for c in b.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    sum + u32::from(proto) + (len as u32 >> 16) + (len as u32 & 0xffff)
}

#[derive(Clone, Copy, Debug)]
pub struct V4Opts {
    pub id: u16,
    pub ttl: u8,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: u16,
    /// Total length to write instead of the real one (for malformed packets).
    pub total_len_override: Option<u16>,
    pub bad_checksum: bool,
}

impl Default for V4Opts {
    fn default() -> Self {
        V4Opts {
            id: 1,
            ttl: 64,
            dont_fragment: true,
            more_fragments: false,
            frag_offset: 0,
            total_len_override: None,
            bad_checksum: false,
        }
    }
}

pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8], o: V4Opts) -> Vec<u8> {
    let total = o.total_len_override.unwrap_or((20 + payload.len()) as u16);
    let mut flags_off = o.frag_offset / 8;
    if o.dont_fragment {
        flags_off |= 0x4000;
    }
    if o.more_fragments {
        flags_off |= 0x2000;
    }
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&o.id.to_be_bytes());
    h.extend_from_slice(&flags_off.to_be_bytes());
    h.extend_from_slice(&[o.ttl, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let mut c = checksum(&h, 0);
    if o.bad_checksum {
        c ^= 0x5a5a;
    }
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// IPv6 with optional extension headers, each given as (type, body without
/// its next-header byte).
pub fn ipv6_ext(src: Ipv6Addr, dst: Ipv6Addr, exts: &[(u8, Vec<u8>)], proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut chain = Vec::new();
    for (i, (_, body)) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map(|e| e.0).unwrap_or(proto);
        chain.push(next);
        chain.extend_from_slice(body);
    }
    let first = exts.first().map(|e| e.0).unwrap_or(proto);
    let plen = (chain.len() + payload.len()) as u16;
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&plen.to_be_bytes());
    h.extend_from_slice(&[first, 64]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(&chain);
    h.extend_from_slice(payload);
    h
}

pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv6_ext(src, dst, &[], proto, payload)
}

/// Wraps a transport segment in IPv4 or IPv6 according to the addresses.
pub fn ip(src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4(s, d, proto, payload, V4Opts::default()),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6(s, d, proto, payload),
        _ => panic!("mixed address families"),
    }
}

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

#[allow(clippy::too_many_arguments)]
pub fn tcp(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[0x50, flags]);
    t.extend_from_slice(&window.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(payload);
    let c = checksum(&t, pseudo(src, dst, 6, t.len()));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut u = Vec::with_capacity(len as usize);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let mut c = checksum(&u, pseudo(src, dst, 17, u.len()));
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

/// ICMP (v4) message; `rest` follows the type, code and checksum.
pub fn icmp(typ: u8, code: u8, rest: &[u8]) -> Vec<u8> {
    let mut m = vec![typ, code, 0, 0];
    m.extend_from_slice(rest);
    let c = checksum(&m, 0);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

pub fn icmpv6(src: Ipv6Addr, dst: Ipv6Addr, typ: u8, code: u8, rest: &[u8]) -> Vec<u8> {
    let mut m = vec![typ, code, 0, 0];
    m.extend_from_slice(rest);
    let c = checksum(&m, pseudo(IpAddr::V6(src), IpAddr::V6(dst), 58, m.len()));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

pub fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("address literal")
}

pub fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("address literal")
}

/// One TCP connection whose sequence numbers advance as packets are made.
pub struct TcpSession {
    pub client: IpAddr,
    pub server: IpAddr,
    pub cport: u16,
    pub sport: u16,
    pub cseq: u32,
    pub sseq: u32,
    pub window: u16,
}

impl TcpSession {
    pub fn new(client: IpAddr, cport: u16, server: IpAddr, sport: u16, cisn: u32, sisn: u32) -> Self {
        TcpSession { client, server, cport, sport, cseq: cisn, sseq: sisn, window: 65_535 }
    }

    /// A segment from the client (`from_client`) or the server. SYN and FIN
    /// consume a sequence number, as on the wire.
    pub fn seg(&mut self, from_client: bool, flags: u8, payload: &[u8]) -> Vec<u8> {
        let (src, dst, sp, dp) = if from_client {
            (self.client, self.server, self.cport, self.sport)
        } else {
            (self.server, self.client, self.sport, self.cport)
        };
        let (seq, ack) = if from_client { (self.cseq, self.sseq) } else { (self.sseq, self.cseq) };
        let ack = if flags & ACK != 0 { ack } else { 0 };
        let t = tcp(src, dst, sp, dp, seq, ack, flags, self.window, payload);
        let adv = payload.len() as u32 + u32::from(flags & SYN != 0) + u32::from(flags & FIN != 0);
        if from_client {
            self.cseq = self.cseq.wrapping_add(adv);
        } else {
            self.sseq = self.sseq.wrapping_add(adv);
        }
        ip(src, dst, 6, &t)
    }

    /// A segment from the client at an explicit sequence offset, without
    /// advancing the session (retransmissions, gaps).
    pub fn seg_at(&self, from_client: bool, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let (src, dst, sp, dp) = if from_client {
            (self.client, self.server, self.cport, self.sport)
        } else {
            (self.server, self.client, self.sport, self.cport)
        };
        let ack = if from_client { self.sseq } else { self.cseq };
        let t = tcp(src, dst, sp, dp, seq, ack, flags, self.window, payload);
        ip(src, dst, 6, &t)
    }
}
