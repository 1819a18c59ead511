//! Packet decoding, from the link layer down to the transport header.
//!
//! Header fields are read through pnet's zero-copy packet views; every offset
//! and length is computed here with checked arithmetic, because the views'
//! variable-length accessors trust header fields that attackers control.

pub mod frag;
pub mod link;

pub use frag::{FragConfig, FragOutcome, Reassembler};
pub use link::{decode_ethernet, decode_link, shard_hash, LinkType, LinkView, L3};

use pnet::packet::icmp::IcmpPacket;
use pnet::packet::icmpv6::Icmpv6Packet;
use pnet::packet::ipv4::Ipv4Packet;
use pnet::packet::ipv6::Ipv6Packet;
use pnet::packet::tcp::TcpPacket;
use pnet::packet::udp::UdpPacket;
use std::net::IpAddr;

/// Why a packet could not be decoded. Each becomes a `weird.log` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    Truncated(&'static str),
    Bad(&'static str),
}

impl Malformed {
    pub fn weird_name(self) -> &'static str {
        match self {
            Malformed::Truncated(n) | Malformed::Bad(n) => n,
        }
    }
}

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_IPIP: u8 = 4;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_IPV6: u8 = 41;
pub const IPPROTO_GRE: u8 = 47;
pub const IPPROTO_ICMPV6: u8 = 58;

/// An IP datagram with its extension headers skipped.
#[derive(Clone, Copy, Debug)]
pub struct IpView<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Upper-layer protocol (after IPv6 extension headers).
    pub proto: u8,
    /// Length of the datagram by its header (IPv4 total length, IPv6 payload
    /// length + 40): what Zeek counts in `*_ip_bytes`.
    pub ip_len: u32,
    /// The upper-layer bytes that were captured.
    pub payload: &'a [u8],
    /// The upper-layer length the header announces (may exceed the capture).
    pub payload_len: u32,
    pub fragment: Option<FragInfo>,
    /// Offset of the upper-layer header from the start of the IP header.
    pub header_len: usize,
}

/// Fragmentation fields of one fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragInfo {
    pub id: u32,
    /// Byte offset of this fragment's data in the original payload.
    pub offset: u32,
    pub more: bool,
    /// IPv6: offset of the Fragment header (the unfragmentable part ends there).
    pub frag_hdr_at: usize,
    /// IPv6: next header value that the Fragment header carries.
    pub next_header: u8,
    /// IPv6: offset of the byte that names the Fragment header (the fixed
    /// header's Next Header field, or the preceding extension header's).
    pub nh_byte_at: usize,
}

pub fn ipv4_header_checksum_ok(hdr: &[u8]) -> bool {
    ones_complement(hdr, 0) == 0xffff
}

/// Internet checksum sum, folded; a correct packet sums to 0xffff.
pub fn ones_complement(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Pseudo-header sum for TCP/UDP/ICMPv6 checksums (RFC 793, RFC 8200 8.1).
pub fn pseudo_header_sum(src: IpAddr, dst: IpAddr, proto: u8, len: u32) -> u32 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            let hi = u32::from(c[0]) << 8;
            let lo = c.get(1).copied().map(u32::from).unwrap_or(0);
            sum = sum.wrapping_add(hi | lo);
        }
    };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            add(&s.octets());
            add(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            add(&s.octets());
            add(&d.octets());
        }
        _ => {}
    }
    sum = sum.wrapping_add(u32::from(proto));
    sum = sum.wrapping_add(len >> 16).wrapping_add(len & 0xffff);
    sum
}

/// Parses an IPv4 header. `data` starts at the IP header.
pub fn parse_ipv4(data: &[u8]) -> Result<IpView<'_>, Malformed> {
    let ip = Ipv4Packet::new(data).ok_or(Malformed::Truncated("truncated_IPv4"))?;
    if ip.get_version() != 4 {
        return Err(Malformed::Bad("IPv4_wrong_version"));
    }
    let hlen = usize::from(ip.get_header_length()) * 4;
    if hlen < 20 {
        return Err(Malformed::Bad("bad_IP_header_len"));
    }
    if data.len() < hlen {
        return Err(Malformed::Truncated("truncated_IP"));
    }
    let total = usize::from(ip.get_total_length());
    if total < hlen {
        return Err(Malformed::Bad("bad_IP_total_len"));
    }
    // Ethernet pads short frames; the IP total length says where the datagram ends.
    let end = total.min(data.len());
    let payload = data.get(hlen..end).ok_or(Malformed::Truncated("truncated_IP"))?;
    let flags = ip.get_flags();
    let more = flags & 0b001 != 0;
    let offset = u32::from(ip.get_fragment_offset()) * 8;
    let fragment = (more || offset != 0).then_some(FragInfo {
        id: u32::from(ip.get_identification()),
        offset,
        more,
        frag_hdr_at: 0,
        next_header: ip.get_next_level_protocol().0,
        nh_byte_at: 9,
    });
    Ok(IpView {
        src: IpAddr::V4(ip.get_source()),
        dst: IpAddr::V4(ip.get_destination()),
        proto: ip.get_next_level_protocol().0,
        ip_len: total as u32,
        payload,
        payload_len: (total - hlen) as u32,
        fragment,
        header_len: hlen,
    })
}

/// Parses an IPv6 header and walks its extension headers (RFC 8200 4).
pub fn parse_ipv6(data: &[u8]) -> Result<IpView<'_>, Malformed> {
    let ip = Ipv6Packet::new(data).ok_or(Malformed::Truncated("truncated_IPv6"))?;
    if ip.get_version() != 6 {
        return Err(Malformed::Bad("IPv6_wrong_version"));
    }
    let plen = usize::from(ip.get_payload_length());
    // A zero payload length with a Hop-by-Hop jumbo option (RFC 2675) is not
    // supported; such packets are judged by what was captured.
    let total = 40 + plen;
    let end = total.min(data.len());
    let mut next = ip.get_next_header().0;
    let mut off = 40usize;
    let mut fragment = None;
    let mut nh_byte_at = 6usize;
    // Bounded: each header advances by at least 8 bytes within 64 KiB.
    loop {
        match next {
            0 | 43 | 60 => {
                // Hop-by-Hop, Routing, Destination Options: (len + 1) * 8 bytes.
                let h = data.get(off..off + 2).ok_or(Malformed::Truncated("truncated_IPv6_ext"))?;
                let len = (usize::from(h[1]) + 1) * 8;
                next = h[0];
                nh_byte_at = off;
                off += len;
                if off > end {
                    return Err(Malformed::Truncated("truncated_IPv6_ext"));
                }
            }
            44 => {
                let h = data.get(off..off + 8).ok_or(Malformed::Truncated("truncated_IPv6_frag"))?;
                let offset_field = u16::from_be_bytes([h[2], h[3]]);
                let info = FragInfo {
                    id: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                    offset: u32::from(offset_field >> 3) * 8,
                    more: offset_field & 1 != 0,
                    frag_hdr_at: off,
                    next_header: h[0],
                    nh_byte_at,
                };
                next = h[0];
                nh_byte_at = off;
                off += 8;
                if info.more || info.offset != 0 {
                    fragment = Some(info);
                    break;
                }
                // An atomic fragment (RFC 6946): no reassembly, keep walking.
            }
            51 => {
                // Authentication Header: (len + 2) * 4 bytes (RFC 4302 2.2).
                let h = data.get(off..off + 2).ok_or(Malformed::Truncated("truncated_IPv6_ext"))?;
                let len = (usize::from(h[1]) + 2) * 4;
                next = h[0];
                nh_byte_at = off;
                off += len;
                if off > end {
                    return Err(Malformed::Truncated("truncated_IPv6_ext"));
                }
            }
            _ => break,
        }
    }
    let payload = data.get(off..end).unwrap_or(&[]);
    if off > total {
        return Err(Malformed::Bad("bad_IPv6_ext_len"));
    }
    Ok(IpView {
        src: IpAddr::V6(ip.get_source()),
        dst: IpAddr::V6(ip.get_destination()),
        proto: next,
        ip_len: total as u32,
        payload,
        payload_len: (total - off) as u32,
        fragment,
        header_len: off,
    })
}

/// Parses IPv4 or IPv6 by the version nibble.
pub fn parse_ip(data: &[u8]) -> Result<IpView<'_>, Malformed> {
    match data.first().map(|b| b >> 4) {
        Some(4) => parse_ipv4(data),
        Some(6) => parse_ipv6(data),
        Some(_) => Err(Malformed::Bad("unknown_IP_version")),
        None => Err(Malformed::Truncated("truncated_IP")),
    }
}

/// The TCP fields the flow table needs.
#[derive(Clone, Copy, Debug)]
pub struct TcpView<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Payload length by the IP header (bytes on the wire, captured or not).
    pub len: u32,
    /// The captured part of the payload.
    pub payload: &'a [u8],
}

pub const TH_FIN: u8 = 0x01;
pub const TH_SYN: u8 = 0x02;
pub const TH_RST: u8 = 0x04;
pub const TH_PUSH: u8 = 0x08;
pub const TH_ACK: u8 = 0x10;
pub const TH_URG: u8 = 0x20;

pub fn parse_tcp<'a>(ip: &IpView<'a>) -> Result<TcpView<'a>, Malformed> {
    let tcp = TcpPacket::new(ip.payload).ok_or(Malformed::Truncated("truncated_header"))?;
    let off = usize::from(tcp.get_data_offset()) * 4;
    if off < 20 {
        return Err(Malformed::Bad("bad_TCP_header_len"));
    }
    if ip.payload_len < off as u32 {
        return Err(Malformed::Bad("bad_TCP_header_len"));
    }
    if ip.payload.len() < off {
        return Err(Malformed::Truncated("truncated_header"));
    }
    let payload = ip.payload.get(off..).unwrap_or(&[]);
    Ok(TcpView {
        src_port: tcp.get_source(),
        dst_port: tcp.get_destination(),
        seq: tcp.get_sequence(),
        ack: tcp.get_acknowledgement(),
        flags: tcp.get_flags(),
        window: tcp.get_window(),
        len: ip.payload_len - off as u32,
        payload,
    })
}

#[derive(Clone, Copy, Debug)]
pub struct UdpView<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    /// Payload length by the UDP header.
    pub len: u32,
    pub payload: &'a [u8],
}

pub fn parse_udp<'a>(ip: &IpView<'a>) -> Result<UdpView<'a>, Malformed> {
    let udp = UdpPacket::new(ip.payload).ok_or(Malformed::Truncated("truncated_header"))?;
    let ulen = u32::from(udp.get_length());
    // Zeek trusts the UDP length unless it disagrees with the IP length.
    if ulen < 8 || ulen > ip.payload_len {
        return Err(Malformed::Bad("bad_UDP_len"));
    }
    let end = (ulen as usize).min(ip.payload.len());
    let payload = ip.payload.get(8..end).unwrap_or(&[]);
    Ok(UdpView { src_port: udp.get_source(), dst_port: udp.get_destination(), len: ulen - 8, payload })
}

#[derive(Clone, Copy, Debug)]
pub struct IcmpView {
    pub typ: u8,
    pub code: u8,
    pub v6: bool,
    /// Bytes after the 8-byte ICMP header, by the IP length.
    pub len: u32,
}

pub fn parse_icmp(ip: &IpView<'_>, v6: bool) -> Result<IcmpView, Malformed> {
    let (typ, code) = if v6 {
        let p = Icmpv6Packet::new(ip.payload).ok_or(Malformed::Truncated("truncated_ICMPv6"))?;
        (p.get_icmpv6_type().0, p.get_icmpv6_code().0)
    } else {
        let p = IcmpPacket::new(ip.payload).ok_or(Malformed::Truncated("truncated_ICMP"))?;
        (p.get_icmp_type().0, p.get_icmp_code().0)
    };
    if ip.payload.len() < 8 && ip.payload_len < 8 {
        return Err(Malformed::Truncated(if v6 { "truncated_ICMPv6" } else { "truncated_ICMP" }));
    }
    Ok(IcmpView { typ, code, v6, len: ip.payload_len.saturating_sub(8) })
}

/// Verifies the TCP/UDP/ICMPv6 checksum over the captured segment; returns
/// `None` when the segment was not captured in full (cannot be checked).
pub fn transport_checksum_ok(ip: &IpView<'_>) -> Option<bool> {
    if ip.payload.len() < ip.payload_len as usize {
        return None;
    }
    let seg = ip.payload;
    let init = match ip.proto {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_ICMPV6 => pseudo_header_sum(ip.src, ip.dst, ip.proto, seg.len() as u32),
        IPPROTO_ICMP => 0,
        _ => return None,
    };
    if ip.proto == IPPROTO_UDP && matches!(ip.src, IpAddr::V4(_)) && seg.get(6..8) == Some(&[0, 0]) {
        // RFC 768: a zero UDP checksum over IPv4 means "not computed".
        return Some(true);
    }
    Some(ones_complement(seg, init) == 0xffff)
}
