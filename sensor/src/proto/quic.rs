//! QUIC (RFC 9000) Initial packets, versions 1 and 2: the Initial keys come
//! from the client's first Destination Connection ID (RFC 9001 5.2, RFC 9369
//! 3.3), so the TLS ClientHello and ServerHello they carry can be read. They
//! go to the TLS analyzer (ssl.log, with a `q` JA4); `quic.log` gets the
//! version, the connection ids, the server name and the first ALPN value.

use crate::proto::tls::parser::{alpn, client_hello, handshake, server_name};
use crate::proto::tls::TlsState;
use crate::proto::{zeek_escape, AppOut, FlowCtx};
use aes::cipher::{BlockEncrypt, KeyInit};
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use schema::{Event, QuicRecord};
use sha2::Sha256;

const V1: u32 = 1;
const V2: u32 = 0x6b33_43cf;
const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f,
    0x0a,
];
const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e,
    0xd9,
];
/// CRYPTO bytes gathered per direction before giving up on a hello.
const MAX_CRYPTO: u64 = 64 << 10;

/// The packet protection keys of one direction.
#[derive(Debug, PartialEq)]
pub struct Keys {
    pub key: [u8; 16],
    pub iv: [u8; 12],
    pub hp: [u8; 16],
}

/// HKDF-Expand-Label of TLS 1.3 (RFC 8446 7.1) with an empty context.
fn expand_label(prk: &[u8], label: &str, out: &mut [u8]) -> Option<()> {
    let hk = Hkdf::<Sha256>::from_prk(prk).ok()?;
    let full = format!("tls13 {label}");
    let mut info = Vec::with_capacity(4 + full.len());
    info.extend_from_slice(&(out.len() as u16).to_be_bytes());
    info.push(full.len() as u8);
    info.extend_from_slice(full.as_bytes());
    info.push(0);
    hk.expand(&info, out).ok()
}

/// The Initial keys for `version` and the client's first DCID.
pub fn initial_keys(version: u32, dcid: &[u8], client: bool) -> Option<Keys> {
    let (salt, prefix) = match version {
        V1 => (&SALT_V1, "quic"),
        V2 => (&SALT_V2, "quicv2"),
        _ => return None,
    };
    let (initial, _) = Hkdf::<Sha256>::extract(Some(salt), dcid);
    let mut secret = [0u8; 32];
    expand_label(&initial, if client { "client in" } else { "server in" }, &mut secret)?;
    let mut k = Keys { key: [0; 16], iv: [0; 12], hp: [0; 16] };
    expand_label(&secret, &format!("{prefix} key"), &mut k.key)?;
    expand_label(&secret, &format!("{prefix} iv"), &mut k.iv)?;
    expand_label(&secret, &format!("{prefix} hp"), &mut k.hp)?;
    Some(k)
}

/// A variable-length integer (RFC 9000 16) and the rest of the input.
fn varint(b: &[u8]) -> Option<(u64, &[u8])> {
    let first = *b.first()?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(..len)?;
    let mut v = u64::from(first & 0x3f);
    for &x in &bytes[1..] {
        v = (v << 8) | u64::from(x);
    }
    Some((v, &b[len..]))
}

fn is_initial(version: u32, first: u8) -> bool {
    let t = (first >> 4) & 0x03;
    match version {
        V1 => t == 0,
        V2 => t == 1,
        _ => false,
    }
}

/// One long-header packet at the start of `d`.
struct Long<'a> {
    version: u32,
    first: u8,
    dcid: &'a [u8],
    scid: &'a [u8],
    /// Offset of the packet number, and the end of the packet.
    pn_at: usize,
    end: usize,
}

fn long_header(d: &[u8]) -> Option<Long<'_>> {
    let first = *d.first()?;
    if first & 0xc0 != 0xc0 {
        return None;
    }
    let version = u32::from_be_bytes(d.get(1..5)?.try_into().ok()?);
    let dl = usize::from(*d.get(5)?);
    if dl > 20 {
        return None;
    }
    let dcid = d.get(6..6 + dl)?;
    let sl = usize::from(*d.get(6 + dl)?);
    if sl > 20 {
        return None;
    }
    let scid = d.get(7 + dl..7 + dl + sl)?;
    let mut rest = &d[7 + dl + sl..];
    if is_initial(version, first) {
        let (tl, r) = varint(rest)?;
        rest = r.get(usize::try_from(tl).ok()?..)?;
    }
    let (len, r) = varint(rest)?;
    let pn_at = d.len() - r.len();
    let end = pn_at.checked_add(usize::try_from(len).ok()?)?;
    (end <= d.len()).then_some(Long { version, first, dcid, scid, pn_at, end })
}

/// Removes header protection and decrypts one Initial packet.
fn open(d: &[u8], p: &Long<'_>, keys: &Keys) -> Option<Vec<u8>> {
    let sample = d.get(p.pn_at + 4..p.pn_at + 20)?;
    let hp = aes::Aes128::new_from_slice(&keys.hp).ok()?;
    let mut mask = aes::Block::clone_from_slice(sample);
    hp.encrypt_block(&mut mask);
    let first = p.first ^ (mask[0] & 0x0f);
    let pn_len = usize::from(first & 0x03) + 1;
    let mut header = d.get(..p.pn_at + pn_len)?.to_vec();
    header[0] = first;
    let mut pn: u64 = 0;
    for i in 0..pn_len {
        header[p.pn_at + i] ^= mask[1 + i];
        pn = (pn << 8) | u64::from(header[p.pn_at + i]);
    }
    let mut nonce = keys.iv;
    for (i, b) in pn.to_be_bytes().iter().enumerate() {
        nonce[4 + i] ^= b;
    }
    let cipher = Aes128Gcm::new_from_slice(&keys.key).ok()?;
    let msg = d.get(p.pn_at + pn_len..p.end)?;
    cipher.decrypt(Nonce::from_slice(&nonce), Payload { msg, aad: &header }).ok()
}

/// CRYPTO frames of one direction, put back in order.
#[derive(Debug, Default)]
struct Crypto {
    pieces: Vec<(u64, Vec<u8>)>,
    contiguous: Vec<u8>,
    done: bool,
}

impl Crypto {
    fn add(&mut self, offset: u64, data: &[u8]) {
        if self.done || offset.saturating_add(data.len() as u64) > MAX_CRYPTO {
            return;
        }
        // Repeated or overlapping frames must not pile up: what is held
        // out of order is capped like the offsets.
        let held: usize = self.pieces.iter().map(|p| p.1.len()).sum();
        if (held + data.len()) as u64 > MAX_CRYPTO {
            self.done = true;
            self.pieces = Vec::new();
            return;
        }
        self.pieces.push((offset, data.to_vec()));
        self.pieces.sort_by_key(|p| p.0);
        let mut progressed = true;
        while progressed {
            progressed = false;
            let have = self.contiguous.len() as u64;
            for (off, d) in &self.pieces {
                let end = off + d.len() as u64;
                if *off <= have && end > have {
                    self.contiguous.extend_from_slice(&d[(have - off) as usize..]);
                    progressed = true;
                    break;
                }
            }
        }
        let have = self.contiguous.len() as u64;
        self.pieces.retain(|(off, d)| off + d.len() as u64 > have);
    }

    /// The first handshake message once it is complete.
    fn message(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        let (_, _, used) = handshake(&self.contiguous)?;
        self.done = true;
        let m = self.contiguous[..used].to_vec();
        self.pieces = Vec::new();
        self.contiguous = Vec::new();
        Some(m)
    }
}

/// Walks the frames of a decrypted Initial, collecting CRYPTO data.
fn frames(mut b: &[u8], crypto: &mut Crypto) -> Option<()> {
    while let Some((t, rest)) = varint(b) {
        b = rest;
        match t {
            0x00 | 0x01 => {}
            0x02 | 0x03 => {
                let (_, r) = varint(b)?;
                let (_, r) = varint(r)?;
                let (n, r) = varint(r)?;
                let (_, mut r) = varint(r)?;
                for _ in 0..n.min(1 << 16) {
                    r = varint(varint(r)?.1)?.1;
                }
                if t == 0x03 {
                    r = varint(varint(varint(r)?.1)?.1)?.1;
                }
                b = r;
            }
            0x06 => {
                let (off, r) = varint(b)?;
                let (len, r) = varint(r)?;
                let data = r.get(..usize::try_from(len).ok()?)?;
                crypto.add(off, data);
                b = &r[data.len()..];
            }
            0x1c | 0x1d => {
                let (_, mut r) = varint(b)?;
                if t == 0x1c {
                    r = varint(r)?.1;
                }
                let (len, r) = varint(r)?;
                b = r.get(usize::try_from(len).ok()?..)?;
            }
            _ => return None,
        }
    }
    Some(())
}

fn version_name(v: u32) -> String {
    match v {
        V1 => "1".into(),
        V2 => "quicv2".into(),
        v if v >> 8 == 0xff_0000 => format!("draft-{}", v & 0xff),
        v => format!("{v:#x}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether a UDP payload starts with a QUIC Initial this sensor can read.
pub fn looks_like_initial(p: &[u8]) -> bool {
    long_header(p).is_some_and(|h| is_initial(h.version, h.first) && h.dcid.len() >= 8 && p.len() >= 1200)
}

#[derive(Debug, Default)]
pub struct QuicState {
    rec: Option<QuicRecord>,
    /// The client's first DCID, which keys both directions' Initials.
    odcid: Option<Vec<u8>>,
    version: u32,
    crypto: [Crypto; 2],
    tls: TlsState,
    bad: u8,
}

impl QuicState {
    pub fn failed(&self) -> bool {
        self.bad >= 4 && self.rec.is_none()
    }

    pub fn message(&mut self, ctx: &FlowCtx, p: &[u8], out: &mut AppOut) {
        let mut d = p;
        while !d.is_empty() {
            let Some(h) = long_header(d) else {
                if self.rec.is_none() {
                    self.bad += 1;
                }
                return;
            };
            let end = h.end;
            self.packet(ctx, d, &h, out);
            d = &d[end..];
        }
    }

    fn packet(&mut self, ctx: &FlowCtx, d: &[u8], h: &Long<'_>, out: &mut AppOut) {
        let s = usize::from(!ctx.is_orig);
        if self.rec.is_none() {
            if !ctx.is_orig || !is_initial(h.version, h.first) {
                return;
            }
            self.odcid = Some(h.dcid.to_vec());
            self.tls = TlsState::quic();
            self.version = h.version;
            self.rec = Some(QuicRecord {
                ts: ctx.ts,
                uid: ctx.uid,
                orig_h: ctx.orig.0,
                orig_p: ctx.orig.1,
                resp_h: ctx.resp.0,
                resp_p: ctx.resp.1,
                version: version_name(h.version),
                client_initial_dcid: hex(h.dcid),
                client_scid: (!h.scid.is_empty()).then(|| hex(h.scid)),
                server_scid: None,
                server_name: None,
                client_protocol: None,
            });
        }
        if !is_initial(h.version, h.first) || h.version != self.version {
            return;
        }
        if let Some(r) = self.rec.as_mut() {
            if !ctx.is_orig && r.server_scid.is_none() && !h.scid.is_empty() {
                r.server_scid = Some(hex(h.scid));
            }
        }
        if self.crypto[s].done {
            return;
        }
        let Some(keys) = self.odcid.as_deref().and_then(|dc| initial_keys(self.version, dc, ctx.is_orig)) else {
            return;
        };
        let Some(plain) = open(d, h, &keys) else {
            out.weirds.push("QUIC_initial_decryption_failed");
            return;
        };
        if frames(&plain, &mut self.crypto[s]).is_none() {
            out.weirds.push("QUIC_bad_frame");
        }
        let Some(msg) = self.crypto[s].message() else { return };
        out.confirmed = Some("quic,ssl");
        if ctx.is_orig {
            if let Some((_, body, _)) = handshake(&msg) {
                if let Ok((_, hello)) = client_hello(body) {
                    if let Some(r) = self.rec.as_mut() {
                        r.server_name = hello.ext(0).and_then(server_name).map(zeek_escape);
                        r.client_protocol = hello.ext(16).and_then(|e| alpn(e).first().map(|p| zeek_escape(p)));
                    }
                }
            }
        }
        let mut inner = AppOut::default();
        self.tls.handshake(ctx, &msg, &mut inner);
        out.events.append(&mut inner.events);
        out.weirds.append(&mut inner.weirds);
    }

    pub fn finish(&mut self, ctx: &FlowCtx, out: &mut AppOut) {
        if let Some(r) = self.rec.take() {
            out.events.push(Event::Quic(r));
        }
        self.tls.finish(ctx, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// RFC 9001 Appendix A.1 and RFC 9369 Appendix A.1.
    #[test]
    fn initial_keys_match_the_rfcs() {
        let dcid = unhex("8394c8f03e515708");
        let k = initial_keys(V1, &dcid, true).unwrap();
        assert_eq!(k.key.to_vec(), unhex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(k.iv.to_vec(), unhex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(k.hp.to_vec(), unhex("9f50449e04a0e810283a1e9933adedd2"));
        let s = initial_keys(V1, &dcid, false).unwrap();
        assert_eq!(s.key.to_vec(), unhex("cf3a5331653c364c88f0f379b6067e37"));
        let k2 = initial_keys(V2, &dcid, true).unwrap();
        assert_eq!(k2.key.to_vec(), unhex("8b1a0bc121284290a29e0971b5cd045d"));
        assert_eq!(k2.hp.to_vec(), unhex("45b95e15235d6f45a6b19cbcb0294ba9"));
    }

    #[test]
    fn varints() {
        assert_eq!(varint(&unhex("c2197c5eff14e88c")).unwrap().0, 151_288_809_941_952_652);
        assert_eq!(varint(&unhex("9d7f3e7d")).unwrap().0, 494_878_333);
        assert_eq!(varint(&unhex("7bbd")).unwrap().0, 15_293);
        assert_eq!(varint(&unhex("25")).unwrap().0, 37);
        assert!(varint(&unhex("c2197c")).is_none());
    }

    #[test]
    fn crypto_frames_reassemble_in_any_order() {
        // A handshake message of type 1 and 6 body bytes, cut in three.
        let msg = [1u8, 0, 0, 6, 10, 11, 12, 13, 14, 15];
        let frame = |off: u8, d: &[u8]| {
            let mut f = vec![0x06, off, d.len() as u8];
            f.extend_from_slice(d);
            f
        };
        let mut pkt = vec![0x02, 0, 0, 0, 0, 0x01];
        pkt.extend(frame(7, &msg[7..]));
        pkt.extend(frame(0, &msg[..3]));
        let mut rest = frame(3, &msg[3..7]);
        rest.extend([0u8; 20]);
        let mut c = Crypto::default();
        assert!(frames(&pkt, &mut c).is_some());
        assert!(c.message().is_none());
        assert!(frames(&rest, &mut c).is_some());
        assert_eq!(c.message().as_deref(), Some(&msg[..]));
        for n in 0..pkt.len() {
            let _ = frames(&pkt[..n], &mut Crypto::default());
        }
        assert!(frames(&[0x30], &mut Crypto::default()).is_none());
    }

    #[test]
    fn repeated_crypto_frames_stay_bounded() {
        let mut c = Crypto::default();
        for _ in 0..10_000 {
            c.add(100, &[7; 1000]);
        }
        assert!(c.pieces.len() <= 66);
    }
}
