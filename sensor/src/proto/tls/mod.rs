//! TLS (and SSLv3): the clear part of the handshake: ClientHello and
//! ServerHello with their fingerprints (JA3, JA3S, FoxIO's JA4 and JA4S),
//! SNI, ALPN, the negotiated version, cipher and group, resumption, the
//! leaf certificate's names when TLS 1.2 or older sends it in clear, alerts,
//! and whether the handshake completed; Zeek's `ssl.log`.

mod cert;
pub mod fingerprint;
mod names;
pub mod parser;
mod state;

pub use state::TlsState;

/// Ports Zeek registers for its SSL analyzer.
pub const PORTS: &[u16] = &[443, 563, 585, 614, 636, 989, 990, 992, 993, 995, 5223];

/// Does this first payload start like a TLS handshake record?
pub fn looks_like_tls(p: &[u8]) -> bool {
    matches!(p, [0x16, 0x03, 0x00..=0x04, _, _, 0x01, ..])
}
