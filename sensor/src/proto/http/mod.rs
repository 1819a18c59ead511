//! HTTP/1.x: requests and replies with pipelining and keep-alive, bodies
//! framed by length, chunks or the end of the connection, decoded from gzip
//! or deflate with a size cap, and sniffed for their MIME type; Zeek's
//! `http.log`.

pub mod body;
mod state;

pub use body::sniff;
pub use state::HttpState;

/// Zeek's registered HTTP ports.
pub const PORTS: &[u16] = &[80, 81, 631, 1080, 3128, 8000, 8080, 8888];

/// Does this first client payload start like an HTTP/1.x request?
pub fn looks_like_request(p: &[u8]) -> bool {
    let line = p.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or(&[]);
    !method.is_empty()
        && method.len() <= 16
        && method.iter().all(|b| b.is_ascii_uppercase() || *b == b'-')
        && parts.next().is_some_and(|u| !u.is_empty())
        && parts.next().is_some_and(|v| v.starts_with(b"HTTP/1."))
}
