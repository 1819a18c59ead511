//! Zeek's `Site::private_address_space`: with no local networks configured,
//! `local_orig`/`local_resp` are true exactly for these IANA special-purpose
//! ranges (RFC 6890 and its successors).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const V4: &[(u32, u8)] = &[
    (0x0000_0000, 8),  // 0.0.0.0/8
    (0x0a00_0000, 8),  // 10.0.0.0/8
    (0x6440_0000, 10), // 100.64.0.0/10
    (0x7f00_0000, 8),  // 127.0.0.0/8
    (0xa9fe_0000, 16), // 169.254.0.0/16
    (0xac10_0000, 12), // 172.16.0.0/12
    (0xc000_0000, 24), // 192.0.0.0/24
    (0xc000_0200, 24), // 192.0.2.0/24
    (0xc0a8_0000, 16), // 192.168.0.0/16
    (0xc612_0000, 15), // 198.18.0.0/15
    (0xc633_6400, 24), // 198.51.100.0/24
    (0xcb00_7100, 24), // 203.0.113.0/24
    (0xf000_0000, 4),  // 240.0.0.0/4
    (0xffff_ffff, 32), // 255.255.255.255/32
];

const V6: &[(u128, u8)] = &[
    (0, 128),                          // ::/128
    (1, 128),                          // ::1/128
    (0x0064_ff9b_0001_u128 << 80, 48), // 64:ff9b:1::/48
    (0x0100_u128 << 112, 64),          // 100::/64
    (0x2001_u128 << 112, 23),          // 2001::/23
    (0x2001_0db8_u128 << 96, 32),      // 2001:db8::/32
    (0xfc00_u128 << 112, 7),           // fc00::/7
    (0xfe80_u128 << 112, 10),          // fe80::/10
];

fn in_v4(a: Ipv4Addr) -> bool {
    let x = u32::from(a);
    V4.iter().any(|&(net, len)| {
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
        x & mask == net
    })
}

fn in_v6(a: Ipv6Addr) -> bool {
    let x = u128::from(a);
    let direct = V6.iter().any(|&(net, len)| {
        let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
        x & mask == net
    });
    // 6to4 (2002::/16) forms of the private IPv4 ranges.
    direct || ((x >> 112) == 0x2002 && in_v4(Ipv4Addr::from(((x >> 80) & 0xffff_ffff) as u32)))
}

/// The networks that count as local (Zeek's `Site::local_nets`); with none
/// configured, the private address space does.
#[derive(Clone, Debug, Default)]
pub struct LocalNets(Vec<(IpAddr, u8)>);

impl LocalNets {
    /// Parses `10.0.0.0/8`-style networks (a bare address is one host).
    pub fn parse(nets: &[String]) -> Result<LocalNets, String> {
        let mut out = Vec::new();
        for n in nets {
            let (addr, len) = match n.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (n.as_str(), None),
            };
            let ip: IpAddr = addr.trim().parse().map_err(|_| format!("local network '{n}': bad address"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len: u8 = match len {
                Some(l) => {
                    l.trim().parse().ok().filter(|&l| l <= max).ok_or(format!("local network '{n}': bad prefix"))?
                }
                None => max,
            };
            out.push((ip, len));
        }
        Ok(LocalNets(out))
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        if self.0.is_empty() {
            return is_private(a);
        }
        self.0.iter().any(|&(net, len)| match (net, a) {
            (IpAddr::V4(n), IpAddr::V4(x)) => {
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
                u32::from(x) & mask == u32::from(n) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(x)) => {
                let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
                u128::from(x) & mask == u128::from(n) & mask
            }
            _ => false,
        })
    }
}

pub fn is_private(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => in_v4(v),
        IpAddr::V6(v) => in_v6(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        for a in ["10.1.2.3", "172.28.2.3", "192.168.10.111", "127.0.0.1", "fe80::1", "2002:c0a8:101::1", "::1"] {
            assert!(is_private(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "224.2.127.254", "172.32.0.1", "2a00::1", "ff02::1"] {
            assert!(!is_private(a.parse().unwrap()), "{a}");
        }
    }
}
