//! Per-connection TLS state: records reassembled from the stream, handshake
//! messages reassembled from records, and nothing read once a side encrypts.

use super::fingerprint::{ja3, ja3s, ja4, ja4s, server_version};
use super::names;
use super::parser::{
    alpn, client_hello, handshake, server_hello, server_name, Hello, EXT_ALPN, EXT_KEY_SHARE, EXT_PRE_SHARED_KEY,
    EXT_SNI,
};
use crate::proto::stream::Chunk;
use crate::proto::{zeek_escape, AppOut, FlowCtx};
use schema::{Event, SslRecord};

/// RFC 8446 5.1: a record is at most 2^14 bytes, plus 2048 of expansion.
const MAX_RECORD: usize = (1 << 14) + 2048;
/// Handshake bytes held per side (certificate chains can be long).
const MAX_HANDSHAKE: usize = 256 << 10;

#[derive(Debug, Default)]
struct Side {
    buf: Vec<u8>,
    hs: Vec<u8>,
    /// This side's handshake is encrypted from here on.
    encrypted: bool,
    /// ChangeCipherSpec or application data seen: its part of the handshake is done.
    finished: bool,
    done: bool,
}

#[derive(Debug, Default)]
pub struct TlsState {
    rec: Option<SslRecord>,
    sides: [Side; 2],
    client_session: Vec<u8>,
    server_version: Option<u16>,
    saw_server_hello: bool,
    records: u32,
    failed: bool,
    /// The handshake travels in QUIC: JA4 starts with `q`.
    quic: bool,
}

impl TlsState {
    pub fn new() -> Self {
        Self::default()
    }

    /// For a handshake carried by QUIC CRYPTO frames.
    pub fn quic() -> Self {
        TlsState { quic: true, ..Self::default() }
    }

    /// Handshake messages that arrived outside TLS records (QUIC).
    pub fn handshake(&mut self, ctx: &FlowCtx, msgs: &[u8], out: &mut AppOut) {
        let s = usize::from(!ctx.is_orig);
        self.on_record(ctx, s, 22, msgs, out);
    }

    pub fn failed(&self) -> bool {
        self.failed
    }

    fn record(&mut self, ctx: &FlowCtx) -> &mut SslRecord {
        self.rec.get_or_insert(SslRecord {
            ts: ctx.ts,
            uid: ctx.uid,
            orig_h: ctx.orig.0,
            orig_p: ctx.orig.1,
            resp_h: ctx.resp.0,
            resp_p: ctx.resp.1,
            version: None,
            cipher: None,
            curve: None,
            server_name: None,
            resumed: false,
            last_alert: None,
            next_protocol: None,
            established: false,
            subject: None,
            issuer: None,
            ja3: None,
            ja3s: None,
            ja4: None,
            ja4s: None,
        })
    }

    pub fn stream(&mut self, ctx: &FlowCtx, chunk: Chunk<'_>, out: &mut AppOut) {
        let s = usize::from(!ctx.is_orig);
        let data = match chunk {
            Chunk::Data(d) => d,
            Chunk::Gap(_) => {
                // Record boundaries are lost for this side.
                self.sides[s].done = true;
                self.sides[s].buf = Vec::new();
                return;
            }
        };
        if self.sides[s].done {
            return;
        }
        self.sides[s].buf.extend_from_slice(data);
        loop {
            let side = &mut self.sides[s];
            let Some(h) = side.buf.get(..5) else { return };
            let (ctype, major, len) = (h[0], h[1], usize::from(u16::from_be_bytes([h[3], h[4]])));
            if !(20..=24).contains(&ctype) || major != 3 || len > MAX_RECORD {
                out.weirds.push("SSL_bad_record");
                side.done = true;
                side.buf = Vec::new();
                self.failed = self.rec.is_none();
                return;
            }
            let Some(body) = side.buf.get(5..5 + len) else { return };
            let body = body.to_vec();
            side.buf.drain(..5 + len);
            self.records += 1;
            self.on_record(ctx, s, ctype, &body, out);
        }
    }

    fn on_record(&mut self, ctx: &FlowCtx, s: usize, ctype: u8, body: &[u8], out: &mut AppOut) {
        match ctype {
            // change_cipher_spec: this side encrypts from here (TLS 1.2 and
            // older; TLS 1.3 sends it only for middlebox compatibility).
            20 => {
                let side = &mut self.sides[s];
                side.encrypted = true;
                side.finished = true;
            }
            21 if !self.sides[s].encrypted => {
                if let Some(&d) = body.get(1) {
                    self.record(ctx).last_alert = Some(names::alert(d));
                }
            }
            22 => {
                let side = &mut self.sides[s];
                if side.encrypted {
                    return;
                }
                if side.hs.len() + body.len() > MAX_HANDSHAKE {
                    out.weirds.push("SSL_handshake_too_large");
                    side.encrypted = true;
                    side.hs = Vec::new();
                    return;
                }
                side.hs.extend_from_slice(body);
                while let Some((t, msg, used)) = handshake(&self.sides[s].hs) {
                    let msg = msg.to_vec();
                    self.sides[s].hs.drain(..used);
                    self.on_handshake(ctx, s, t, &msg, out);
                    if self.sides[s].encrypted {
                        self.sides[s].hs = Vec::new();
                        break;
                    }
                }
            }
            23 => {
                self.sides[s].finished = true;
            }
            _ => {}
        }
        self.update_established(ctx);
    }

    fn on_handshake(&mut self, ctx: &FlowCtx, s: usize, t: u8, msg: &[u8], out: &mut AppOut) {
        match (s, t) {
            (0, 1) => match client_hello(msg) {
                Ok((_, h)) => {
                    out.confirmed = Some("ssl");
                    self.client_hello(ctx, &h);
                }
                Err(_) => out.weirds.push("SSL_bad_client_hello"),
            },
            (1, 2) => match server_hello(msg) {
                Ok((_, h)) => {
                    out.confirmed = Some("ssl");
                    self.server_hello(ctx, &h);
                }
                Err(_) => out.weirds.push("SSL_bad_server_hello"),
            },
            // ServerKeyExchange of an ECDHE suite: curve_type 3 (named_curve)
            // then the group (RFC 8422 5.4).
            (1, 12) => {
                if let [3, a, b, ..] = msg {
                    self.record(ctx).curve = Some(names::group(u16::from_be_bytes([*a, *b])));
                }
            }
            (1, 11) => {
                if let Some((subject, issuer)) = super::cert::leaf_names(msg) {
                    let r = self.record(ctx);
                    r.subject = Some(subject);
                    r.issuer = Some(issuer);
                }
            }
            _ => {}
        }
    }

    fn client_hello(&mut self, ctx: &FlowCtx, h: &Hello) {
        self.client_session = h.session_id.clone();
        let transport = if self.quic { 'q' } else { 't' };
        let r = self.record(ctx);
        r.ts = ctx.ts;
        r.server_name = h.ext(EXT_SNI).and_then(server_name).map(zeek_escape);
        r.ja3 = Some(ja3(h));
        r.ja4 = Some(ja4(h, transport));
    }

    fn server_hello(&mut self, ctx: &FlowCtx, h: &Hello) {
        let v = server_version(h);
        self.server_version = Some(v);
        self.saw_server_hello = true;
        let resumed_12 = !h.session_id.is_empty() && h.session_id == self.client_session;
        let transport = if self.quic { 'q' } else { 't' };
        let r = self.record(ctx);
        r.version = Some(names::version(v));
        r.cipher = h.ciphers.first().map(|&c| names::cipher(c));
        r.next_protocol = h.ext(EXT_ALPN).and_then(|e| alpn(e).first().map(|p| zeek_escape(p)));
        r.ja3s = Some(ja3s(h));
        r.ja4s = Some(ja4s(h, transport));
        if v == 0x0304 {
            if let Some([a, b, ..]) = h.ext(EXT_KEY_SHARE) {
                r.curve = Some(names::group(u16::from_be_bytes([*a, *b])));
            }
            r.resumed = h.ext(EXT_PRE_SHARED_KEY).is_some();
            // Everything the server sends after its hello is encrypted.
            self.sides[1].encrypted = true;
        } else {
            r.resumed = resumed_12;
        }
    }

    fn update_established(&mut self, ctx: &FlowCtx) {
        if self.saw_server_hello && self.sides[0].finished && self.sides[1].finished {
            self.record(ctx).established = true;
        }
    }

    pub fn finish(&mut self, _ctx: &FlowCtx, out: &mut AppOut) {
        if let Some(r) = self.rec.take() {
            out.events.push(Event::Ssl(r));
        }
    }
}
