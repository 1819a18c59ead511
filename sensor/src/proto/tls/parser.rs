//! TLS records (RFC 8446 5.1) and the hello messages (4.1.2, 4.1.3), parsed
//! with explicit bounds; extensions are kept raw for the fingerprints.

use nom::bytes::complete::take;
use nom::number::complete::{be_u16, be_u24, be_u8};
use nom::IResult;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hello {
    /// The legacy version field of the hello.
    pub legacy_version: u16,
    pub session_id: Vec<u8>,
    /// ClientHello: offered suites; ServerHello: the chosen one.
    pub ciphers: Vec<u16>,
    /// Extension types and bodies, in order.
    pub extensions: Vec<(u16, Vec<u8>)>,
}

impl Hello {
    pub fn ext(&self, t: u16) -> Option<&[u8]> {
        self.extensions.iter().find(|(x, _)| *x == t).map(|(_, b)| b.as_slice())
    }
}

pub const EXT_SNI: u16 = 0;
pub const EXT_SUPPORTED_GROUPS: u16 = 10;
pub const EXT_EC_POINT_FORMATS: u16 = 11;
pub const EXT_SIGNATURE_ALGORITHMS: u16 = 13;
pub const EXT_ALPN: u16 = 16;
pub const EXT_PRE_SHARED_KEY: u16 = 41;
pub const EXT_SUPPORTED_VERSIONS: u16 = 43;
pub const EXT_KEY_SHARE: u16 = 51;

/// GREASE values (RFC 8701): 0x0a0a, 0x1a1a, ... 0xfafa.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

fn extensions(i: &[u8]) -> IResult<&[u8], Vec<(u16, Vec<u8>)>> {
    if i.is_empty() {
        return Ok((i, Vec::new()));
    }
    let (i, len) = be_u16(i)?;
    let (rest, mut block) = take(len)(i)?;
    let mut out = Vec::new();
    while !block.is_empty() {
        let (b, t) = be_u16(block)?;
        let (b, l) = be_u16(b)?;
        let (b, body) = take(l)(b)?;
        out.push((t, body.to_vec()));
        block = b;
    }
    Ok((rest, out))
}

/// A ClientHello body (after the 4-byte handshake header).
pub fn client_hello(i: &[u8]) -> IResult<&[u8], Hello> {
    let (i, legacy_version) = be_u16(i)?;
    let (i, _random) = take(32usize)(i)?;
    let (i, sid_len) = be_u8(i)?;
    let (i, sid) = take(sid_len)(i)?;
    let (i, cs_len) = be_u16(i)?;
    let (i, cs) = take(cs_len)(i)?;
    let ciphers = cs.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    let (i, comp_len) = be_u8(i)?;
    let (i, _comp) = take(comp_len)(i)?;
    let (i, extensions) = extensions(i)?;
    Ok((i, Hello { legacy_version, session_id: sid.to_vec(), ciphers, extensions }))
}

/// A ServerHello body.
pub fn server_hello(i: &[u8]) -> IResult<&[u8], Hello> {
    let (i, legacy_version) = be_u16(i)?;
    let (i, _random) = take(32usize)(i)?;
    let (i, sid_len) = be_u8(i)?;
    let (i, sid) = take(sid_len)(i)?;
    let (i, cipher) = be_u16(i)?;
    let (i, _comp) = be_u8(i)?;
    let (i, extensions) = extensions(i)?;
    Ok((i, Hello { legacy_version, session_id: sid.to_vec(), ciphers: vec![cipher], extensions }))
}

/// One handshake message from a reassembled handshake stream:
/// `(type, body, bytes used)`, or `None` when incomplete.
pub fn handshake(i: &[u8]) -> Option<(u8, &[u8], usize)> {
    let (rest, t) = be_u8::<_, nom::error::Error<&[u8]>>(i).ok()?;
    let (rest, len) = be_u24::<_, nom::error::Error<&[u8]>>(rest).ok()?;
    let body = rest.get(..len as usize)?;
    Some((t, body, 4 + len as usize))
}

/// The SNI host name (RFC 6066 3).
pub fn server_name(ext: &[u8]) -> Option<&[u8]> {
    let list = ext.get(2..)?;
    let mut i = 0;
    while let (Some(&t), Some(l)) = (list.get(i), list.get(i + 1..i + 3)) {
        let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
        let name = list.get(i + 3..i + 3 + len)?;
        if t == 0 {
            return Some(name);
        }
        i += 3 + len;
    }
    None
}

/// The protocol names of an ALPN extension (RFC 7301 3.1).
pub fn alpn(ext: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let list = ext.get(2..).unwrap_or(&[]);
    let mut i = 0;
    while let Some(&l) = list.get(i) {
        let Some(p) = list.get(i + 1..i + 1 + usize::from(l)) else { break };
        out.push(p);
        i += 1 + usize::from(l);
    }
    out
}

/// A list of 16-bit values behind a length of `len_bytes` bytes.
pub fn u16_list(ext: &[u8], len_bytes: usize) -> Vec<u16> {
    ext.get(len_bytes..).unwrap_or(&[]).chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect()
}

/// A list of 8-bit values behind a one-byte length.
pub fn u8_list(ext: &[u8]) -> Vec<u8> {
    ext.get(1..).unwrap_or(&[]).to_vec()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ClientHello handshake message (type and length included).
    pub fn client_hello_msg(
        sni: Option<&str>,
        alpn_list: &[&str],
        ciphers: &[u16],
        exts: &[(u16, Vec<u8>)],
    ) -> Vec<u8> {
        let mut b = vec![0x03, 0x03];
        b.extend_from_slice(&[0x11; 32]);
        b.push(0);
        b.extend_from_slice(&((ciphers.len() * 2) as u16).to_be_bytes());
        for c in ciphers {
            b.extend_from_slice(&c.to_be_bytes());
        }
        b.extend_from_slice(&[1, 0]);
        let mut e = Vec::new();
        let mut all: Vec<(u16, Vec<u8>)> = Vec::new();
        if let Some(n) = sni {
            let mut v = ((n.len() + 3) as u16).to_be_bytes().to_vec();
            v.push(0);
            v.extend_from_slice(&(n.len() as u16).to_be_bytes());
            v.extend_from_slice(n.as_bytes());
            all.push((0, v));
        }
        all.extend(exts.iter().cloned());
        if !alpn_list.is_empty() {
            let mut l = Vec::new();
            for p in alpn_list {
                l.push(p.len() as u8);
                l.extend_from_slice(p.as_bytes());
            }
            let mut v = (l.len() as u16).to_be_bytes().to_vec();
            v.extend_from_slice(&l);
            all.push((16, v));
        }
        for (t, body) in all {
            e.extend_from_slice(&t.to_be_bytes());
            e.extend_from_slice(&(body.len() as u16).to_be_bytes());
            e.extend_from_slice(&body);
        }
        b.extend_from_slice(&(e.len() as u16).to_be_bytes());
        b.extend_from_slice(&e);
        let mut m = vec![1];
        m.extend_from_slice(&(b.len() as u32).to_be_bytes()[1..]);
        m.extend_from_slice(&b);
        m
    }

    #[test]
    fn hello_fields() {
        let m = client_hello_msg(Some("Portal.City.example"), &["h2", "http/1.1"], &[0x1301, 0x0a0a], &[]);
        let (t, body, used) = handshake(&m).unwrap();
        assert_eq!((t, used), (1, m.len()));
        let (_, h) = client_hello(body).unwrap();
        assert_eq!(h.ciphers, vec![0x1301, 0x0a0a]);
        assert_eq!(server_name(h.ext(EXT_SNI).unwrap()), Some(&b"Portal.City.example"[..]));
        assert_eq!(alpn(h.ext(EXT_ALPN).unwrap()), vec![&b"h2"[..], b"http/1.1"]);
        for n in 0..m.len() {
            if let Some((_, b, _)) = handshake(&m[..n]) {
                let _ = client_hello(b);
            }
        }
        assert!(is_grease(0x0a0a) && is_grease(0xfafa) && !is_grease(0x0a0b));
    }
}
