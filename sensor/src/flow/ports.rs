//! Ports on which a server is likely to listen. When a connection's first
//! packet comes *from* such a port (and not to one), the sender is taken to be
//! the responder: the flip Zeek records as `^` in `history`.
//!
//! The list is the union of the ports Zeek's default scripts register through
//! `likely_server_ports` (one entry per analyzer's well-known ports).

pub fn likely_server_port(port: u16, proto: u8) -> bool {
    match proto {
        6 => TCP.binary_search(&port).is_ok(),
        17 => UDP.binary_search(&port).is_ok(),
        _ => false,
    }
}

/// Sorted for binary search.
const TCP: &[u16] = &[
    21, 22, 23, 25, 53, 80, 81, 88, 102, 110, 135, 139, 143, 389, 443, 445, 502, 563, 585, 587, 614, 623, 631, 636,
    989, 990, 992, 993, 995, 1080, 1433, 1883, 2404, 2811, 3128, 3268, 3306, 3389, 5222, 5223, 5269, 5432, 6379, 6666,
    6667, 6668, 6669, 8000, 8080, 8883, 8888, 20000, 44818,
];

const UDP: &[u16] = &[
    53, 67, 68, 69, 88, 123, 137, 161, 162, 500, 514, 623, 1194, 1812, 2123, 2152, 3478, 3544, 4500, 4789, 5060, 5072,
    5353, 5355, 5683, 6081, 20000, 47808,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted() {
        assert!(TCP.windows(2).all(|w| w[0] < w[1]));
        assert!(UDP.windows(2).all(|w| w[0] < w[1]));
        assert!(likely_server_port(80, 6) && !likely_server_port(80, 17));
    }
}
