//! SSH (RFC 4253): version strings, the key exchange offers of both sides,
//! the negotiated algorithms, the server's host key, and the HASSH
//! fingerprints; Zeek's `ssh.log` plus the hassh package's fields.
//! Everything after NEWKEYS is encrypted and not looked at.

pub mod parser;
mod state;

pub use state::SshState;

/// Zeek's registered SSH port.
pub const PORT: u16 = 22;
