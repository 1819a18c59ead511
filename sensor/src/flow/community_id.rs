//! Community ID v1 (<https://github.com/corelight/community-id-spec>).

use base64::Engine;
use sha1::{Digest, Sha1};
use std::net::IpAddr;

/// Computes the Community ID of a flow given in its logged orientation.
/// `one_way` is for ICMP messages without a counterpart, whose tuple is hashed
/// in the original direction rather than ordered.
pub fn community_id_v1(seed: u16, proto: u8, (a, ap): (IpAddr, u16), (b, bp): (IpAddr, u16), one_way: bool) -> String {
    let swap = !one_way && (ip_bytes(&b), bp) < (ip_bytes(&a), ap);
    let ((a, ap), (b, bp)) = if swap { ((b, bp), (a, ap)) } else { ((a, ap), (b, bp)) };
    let mut h = Sha1::new();
    h.update(seed.to_be_bytes());
    h.update(ip_bytes(&a));
    h.update(ip_bytes(&b));
    h.update([proto, 0]);
    // Ports only where the flow key has them (TCP, UDP, ICMP/ICMPv6); SCTP
    // is tracked without ports, so it is hashed without them too.
    if matches!(proto, 1 | 6 | 17 | 58) {
        h.update(ap.to_be_bytes());
        h.update(bp.to_be_bytes());
    }
    let digest = h.finalize();
    format!("1:{}", base64::engine::general_purpose::STANDARD.encode(digest))
}

fn ip_bytes(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        // From the zeek-http-get reference conn.log.
        let id = community_id_v1(
            0,
            6,
            ("141.142.228.5".parse().unwrap(), 59856),
            ("192.150.187.43".parse().unwrap(), 80),
            false,
        );
        assert_eq!(id, "1:yvyB8h+3dnggTZW0UEITWCst97w=");
        // Order does not matter for two-way flows.
        let rev = community_id_v1(
            0,
            6,
            ("192.150.187.43".parse().unwrap(), 80),
            ("141.142.228.5".parse().unwrap(), 59856),
            false,
        );
        assert_eq!(id, rev);
    }
}
