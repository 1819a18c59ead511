use super::Malformed;
use pnet::packet::ethernet::EthernetPacket;
use std::net::IpAddr;

/// libpcap link-layer header types (DLT/LINKTYPE values) that we decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    Null,
    Ethernet,
    Ppp,
    PppHdlc,
    CiscoHdlc,
    Raw,
    Loop,
    LinuxSll,
    LinuxSll2,
    Ipv4,
    Ipv6,
    Other(i32),
}

impl LinkType {
    /// The LINKTYPE_ number written in pcap files.
    pub fn dlt(self) -> u32 {
        match self {
            LinkType::Null => 0,
            LinkType::Ethernet => 1,
            LinkType::Ppp => 9,
            LinkType::PppHdlc => 50,
            LinkType::CiscoHdlc => 104,
            LinkType::Raw => 101,
            LinkType::Loop => 108,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::Other(x) => x as u32,
        }
    }

    pub fn from_dlt(dlt: i32) -> LinkType {
        match dlt {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            9 => LinkType::Ppp,
            50 => LinkType::PppHdlc,
            104 => LinkType::CiscoHdlc,
            // DLT_RAW is 12 on most systems and 14 on OpenBSD; LINKTYPE_RAW is 101.
            12 | 14 | 101 => LinkType::Raw,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            other => LinkType::Other(other),
        }
    }
}

/// What lies under the link layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L3<'a> {
    Ip(&'a [u8]),
    /// Not IP: the ethertype (or link protocol) for the counters.
    NonIp(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkView<'a> {
    /// Outer 802.1Q tag (Zeek's `vlan`).
    pub vlan: Option<u16>,
    /// Second tag of a QinQ stack (Zeek's `inner_vlan`).
    pub inner_vlan: Option<u16>,
    /// Source and destination MAC addresses of an Ethernet frame.
    pub macs: Option<([u8; 6], [u8; 6])>,
    pub l3: L3<'a>,
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const ETH_QINQ_OLD: u16 = 0x9100;
const ETH_MPLS: u16 = 0x8847;
const ETH_MPLS_MC: u16 = 0x8848;
const ETH_PPPOE_SESSION: u16 = 0x8864;
pub const ETH_TEB: u16 = 0x6558;

/// At most this many stacked VLAN/MPLS/PPPoE headers are walked; more is a
/// crafted packet, not a network.
const MAX_LINK_NESTING: usize = 16;

pub fn decode_link(lt: LinkType, data: &[u8]) -> Result<LinkView<'_>, Malformed> {
    let mut view = LinkView { vlan: None, inner_vlan: None, macs: None, l3: L3::NonIp(0) };
    match lt {
        LinkType::Ethernet => return decode_ethernet(data),
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => view.l3 = L3::Ip(data),
        LinkType::Null | LinkType::Loop => {
            let h = data.get(..4).ok_or(Malformed::Truncated("truncated_link_header"))?;
            let af = if lt == LinkType::Loop {
                u32::from_be_bytes([h[0], h[1], h[2], h[3]])
            } else {
                // DLT_NULL stores the family in the capturing host's byte order.
                let le = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
                if le <= 0xffff {
                    le
                } else {
                    u32::from_be_bytes([h[0], h[1], h[2], h[3]])
                }
            };
            // AF_INET is 2 everywhere; AF_INET6 is 10 (Linux), 24 (NetBSD/OpenBSD),
            // 28 (FreeBSD), 30 (macOS).
            view.l3 = match af {
                2 | 10 | 24 | 28 | 30 => L3::Ip(&data[4..]),
                other => L3::NonIp(other as u16),
            };
        }
        LinkType::Ppp | LinkType::PppHdlc => return decode_ppp(data),
        LinkType::CiscoHdlc => {
            let h = data.get(..4).ok_or(Malformed::Truncated("truncated_link_header"))?;
            let et = u16::from_be_bytes([h[2], h[3]]);
            return decode_ethertype(et, &data[4..], view, 0);
        }
        LinkType::LinuxSll => {
            let h = data.get(..16).ok_or(Malformed::Truncated("truncated_link_header"))?;
            let et = u16::from_be_bytes([h[14], h[15]]);
            return decode_ethertype(et, &data[16..], view, 0);
        }
        LinkType::LinuxSll2 => {
            let h = data.get(..20).ok_or(Malformed::Truncated("truncated_link_header"))?;
            let et = u16::from_be_bytes([h[0], h[1]]);
            return decode_ethertype(et, &data[20..], view, 0);
        }
        LinkType::Other(_) => return Err(Malformed::Bad("unknown_link_type")),
    }
    Ok(view)
}

/// Decodes an Ethernet II frame (also used for bridged frames inside tunnels).
pub fn decode_ethernet(data: &[u8]) -> Result<LinkView<'_>, Malformed> {
    let eth = EthernetPacket::new(data).ok_or(Malformed::Truncated("truncated_link_header"))?;
    let et = eth.get_ethertype().0;
    let (src, dst) = (eth.get_source().octets(), eth.get_destination().octets());
    let view = LinkView { vlan: None, inner_vlan: None, macs: Some((src, dst)), l3: L3::NonIp(et) };
    decode_ethertype(et, &data[14..], view, 0)
}

fn decode_ethertype<'a>(
    mut et: u16,
    mut data: &'a [u8],
    mut view: LinkView<'a>,
    mut depth: usize,
) -> Result<LinkView<'a>, Malformed> {
    loop {
        depth += 1;
        if depth > MAX_LINK_NESTING {
            return Err(Malformed::Bad("excessive_link_nesting"));
        }
        match et {
            ETH_IPV4 | ETH_IPV6 => {
                view.l3 = L3::Ip(data);
                return Ok(view);
            }
            ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD => {
                let h = data.get(..4).ok_or(Malformed::Truncated("truncated_VLAN_header"))?;
                let id = u16::from_be_bytes([h[0], h[1]]) & 0x0fff;
                if view.vlan.is_none() {
                    view.vlan = Some(id);
                } else if view.inner_vlan.is_none() {
                    view.inner_vlan = Some(id);
                }
                et = u16::from_be_bytes([h[2], h[3]]);
                data = &data[4..];
            }
            ETH_MPLS | ETH_MPLS_MC => {
                // Walk labels to the bottom of the stack (RFC 3032 2.1), then
                // guess the payload by its version nibble, as Zeek does.
                loop {
                    let h = data.get(..4).ok_or(Malformed::Truncated("truncated_MPLS_header"))?;
                    data = &data[4..];
                    if h[2] & 0x01 != 0 {
                        break;
                    }
                    depth += 1;
                    if depth > MAX_LINK_NESTING {
                        return Err(Malformed::Bad("excessive_link_nesting"));
                    }
                }
                view.l3 = match data.first().map(|b| b >> 4) {
                    Some(4) | Some(6) => L3::Ip(data),
                    _ => L3::NonIp(ETH_MPLS),
                };
                return Ok(view);
            }
            ETH_PPPOE_SESSION => {
                // 6-byte PPPoE header (RFC 2516 4), then a 2-byte PPP protocol.
                let h = data.get(..8).ok_or(Malformed::Truncated("truncated_PPPoE_header"))?;
                let proto = u16::from_be_bytes([h[6], h[7]]);
                data = &data[8..];
                view.l3 = ppp_l3(proto, data);
                return Ok(view);
            }
            other => {
                view.l3 = L3::NonIp(other);
                return Ok(view);
            }
        }
    }
}

fn ppp_l3(proto: u16, data: &[u8]) -> L3<'_> {
    match proto {
        0x0021 | 0x0057 => L3::Ip(data),
        other => L3::NonIp(other),
    }
}

/// PPP in HDLC-like framing (RFC 1662): optional 0xff 0x03, then a protocol
/// field of one byte (if odd) or two.
pub fn decode_ppp(data: &[u8]) -> Result<LinkView<'_>, Malformed> {
    let mut d = data;
    if d.starts_with(&[0xff, 0x03]) {
        d = &d[2..];
    }
    let first = *d.first().ok_or(Malformed::Truncated("truncated_link_header"))?;
    let (proto, rest) = if first & 1 == 1 {
        (u16::from(first), &d[1..])
    } else {
        let h = d.get(..2).ok_or(Malformed::Truncated("truncated_link_header"))?;
        (u16::from_be_bytes([h[0], h[1]]), &d[2..])
    };
    Ok(LinkView { vlan: None, inner_vlan: None, macs: None, l3: ppp_l3(proto, rest) })
}

/// Decodes a payload that a GRE header announces with `proto`.
pub fn decode_gre_payload(proto: u16, data: &[u8]) -> Result<LinkView<'_>, Malformed> {
    let view = LinkView { vlan: None, inner_vlan: None, macs: None, l3: L3::NonIp(proto) };
    match proto {
        ETH_TEB => decode_ethernet(data),
        // PPTP's enhanced GRE carries PPP (RFC 2637 4.1).
        0x880b => decode_ppp(data),
        _ => decode_ethertype(proto, data, view, 0),
    }
}

/// A symmetric hash of the outermost IP address pair, so that both directions
/// of a flow (and every fragment of a datagram, and every flow inside one
/// tunnel) land on the same worker, as RSS does with a symmetric key.
pub fn shard_hash(lt: LinkType, data: &[u8]) -> u64 {
    let Ok(LinkView { l3: L3::Ip(ip), .. }) = decode_link(lt, data) else {
        return 0;
    };
    if is_dhcp(ip) {
        return 0;
    }
    let (a, b): (u128, u128) = match ip.first().map(|b| b >> 4) {
        Some(4) => match (ip.get(12..16), ip.get(16..20)) {
            (Some(s), Some(d)) => (
                u128::from(u32::from_be_bytes([s[0], s[1], s[2], s[3]])),
                u128::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]])),
            ),
            _ => return 0,
        },
        Some(6) => match (ip.get(8..24), ip.get(24..40)) {
            (Some(s), Some(d)) => {
                let mut sb = [0u8; 16];
                let mut db = [0u8; 16];
                sb.copy_from_slice(s);
                db.copy_from_slice(d);
                (u128::from_be_bytes(sb), u128::from_be_bytes(db))
            }
            _ => return 0,
        },
        _ => return 0,
    };
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    mix(mix(lo as u64 ^ (lo >> 64) as u64) ^ hi as u64 ^ (hi >> 64) as u64)
}

/// An unfragmented IPv4 UDP datagram to or from a DHCP port. A DHCP
/// transaction crosses address pairs (a broadcast from 0.0.0.0, a reply to
/// the offered address), so all of DHCP goes to one worker, which joins the
/// messages by transaction id; DHCP's volume makes that cheap.
fn is_dhcp(ip: &[u8]) -> bool {
    let Some(h) = ip.get(..20) else { return false };
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let fragmented = h[6] & 0x3f != 0 || h[7] != 0;
    if h[0] >> 4 != 4 || h[9] != 17 || fragmented {
        return false;
    }
    let Some(u) = ip.get(ihl..ihl + 4) else { return false };
    let (sport, dport) = (u16::from_be_bytes([u[0], u[1]]), u16::from_be_bytes([u[2], u[3]]));
    [sport, dport].iter().any(|p| crate::proto::dhcp::PORTS.contains(p))
}

/// The 64-bit finaliser of MurmurHash3: cheap and well spread.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Used by tests and the flow table to name addresses.
pub fn ip_pair(ip: &[u8]) -> Option<(IpAddr, IpAddr)> {
    super::parse_ip(ip).ok().map(|v| (v.src, v.dst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qinq_tags_in_order() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x81, 0x00, 0x00, 13, 0x81, 0x00, 0x00, 10, 0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 20]);
        let v = decode_link(LinkType::Ethernet, &f).unwrap();
        assert_eq!((v.vlan, v.inner_vlan), (Some(13), Some(10)));
        assert!(matches!(v.l3, L3::Ip(_)));
    }

    #[test]
    fn every_prefix_of_a_frame_is_safe() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x88, 0x47, 0, 0, 0, 0, 0, 0, 1, 0, 0x45]);
        for n in 0..=f.len() {
            let _ = decode_link(LinkType::Ethernet, &f[..n]);
            let _ = shard_hash(LinkType::Ethernet, &f[..n]);
        }
    }
}
