//! DNS over UDP (and, with stream framing, TCP): Zeek's `dns.log`.

pub mod parser;
mod state;

pub use state::DnsState;

/// Zeek's registered DNS port on TCP.
pub const TCP_PORT: u16 = 53;

/// Zeek's registered DNS ports on UDP.
pub const UDP_PORTS: &[u16] = &[53, 137, 5353, 5355];
