//! CoAP over UDP (RFC 7252, block-wise transfers RFC 7959, Observe RFC
//! 7641): a 4-byte header, a token, delta-encoded options, then the payload
//! after 0xFF. One `coap.log` line per request, joined to its response by
//! token (a piggybacked ACK or a separate response).

use crate::proto::{zeek_escape, AppOut, FlowCtx};
use schema::{CoapRecord, Event};

pub const PORT: u16 = 5683;

/// Requests awaiting their response, per flow.
const MAX_PENDING: usize = 256;
/// Path and query text kept per request.
const MAX_URI: usize = 1024;

#[derive(Debug, PartialEq)]
struct Message<'a> {
    msg_type: u8,
    code: u8,
    message_id: u16,
    token: &'a [u8],
    options: Vec<(u16, &'a [u8])>,
    payload: &'a [u8],
}

/// A nibble's extended value (RFC 7252 3.1): 13 and 14 take one or two more
/// bytes; 15 is reserved.
fn extended(nibble: u8, b: &[u8], at: &mut usize) -> Option<u16> {
    match nibble {
        0..=12 => Some(u16::from(nibble)),
        13 => {
            let v = *b.get(*at)?;
            *at += 1;
            Some(u16::from(v) + 13)
        }
        14 => {
            let v = u16::from_be_bytes([*b.get(*at)?, *b.get(*at + 1)?]);
            *at += 2;
            v.checked_add(269)
        }
        _ => None,
    }
}

fn parse(b: &[u8]) -> Option<Message<'_>> {
    let (&first, &code) = (b.first()?, b.get(1)?);
    let message_id = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    if first >> 6 != 1 {
        return None;
    }
    let tkl = usize::from(first & 0x0f);
    if tkl > 8 {
        return None;
    }
    // Classes 1, 6 and 7 are reserved.
    if matches!(code >> 5, 1 | 6 | 7) {
        return None;
    }
    let token = b.get(4..4 + tkl)?;
    let mut at = 4 + tkl;
    let mut options = Vec::new();
    let mut number: u16 = 0;
    let mut payload: &[u8] = &[];
    while let Some(&head) = b.get(at) {
        at += 1;
        if head == 0xff {
            payload = b.get(at..)?;
            if payload.is_empty() {
                return None;
            }
            break;
        }
        let delta = extended(head >> 4, b, &mut at)?;
        let len = usize::from(extended(head & 0x0f, b, &mut at)?);
        number = number.checked_add(delta)?;
        options.push((number, b.get(at..at + len)?));
        at += len;
    }
    Some(Message { msg_type: first >> 4 & 3, code, message_id, token, options, payload })
}

fn uint(v: &[u8]) -> u32 {
    v.iter().take(4).fold(0u32, |acc, &b| acc << 8 | u32::from(b))
}

fn method(code: u8) -> String {
    match code {
        1 => "GET".into(),
        2 => "POST".into(),
        3 => "PUT".into(),
        4 => "DELETE".into(),
        5 => "FETCH".into(),
        6 => "PATCH".into(),
        7 => "iPATCH".into(),
        c => format!("{}.{:02}", c >> 5, c & 0x1f),
    }
}

fn response(code: u8) -> String {
    let name = match code {
        0x41 => "Created",
        0x42 => "Deleted",
        0x43 => "Valid",
        0x44 => "Changed",
        0x45 => "Content",
        0x5f => "Continue",
        0x80 => "Bad Request",
        0x81 => "Unauthorized",
        0x82 => "Bad Option",
        0x83 => "Forbidden",
        0x84 => "Not Found",
        0x85 => "Method Not Allowed",
        0x86 => "Not Acceptable",
        0x88 => "Request Entity Incomplete",
        0x8c => "Precondition Failed",
        0x8d => "Request Entity Too Large",
        0x8f => "Unsupported Content-Format",
        0xa0 => "Internal Server Error",
        0xa1 => "Not Implemented",
        0xa2 => "Bad Gateway",
        0xa3 => "Service Unavailable",
        0xa4 => "Gateway Timeout",
        0xa5 => "Proxying Not Supported",
        _ => "",
    };
    let num = format!("{}.{:02}", code >> 5, code & 0x1f);
    if name.is_empty() {
        num
    } else {
        format!("{num} {name}")
    }
}

/// Content-Format names of the IANA registry's common entries.
fn format_name(v: &[u8]) -> String {
    let n = uint(v);
    match n {
        0 => "text/plain".into(),
        40 => "application/link-format".into(),
        41 => "application/xml".into(),
        42 => "application/octet-stream".into(),
        47 => "application/exi".into(),
        50 => "application/json".into(),
        60 => "application/cbor".into(),
        110 => "application/senml+json".into(),
        112 => "application/senml+cbor".into(),
        11542 => "application/vnd.oma.lwm2m+tlv".into(),
        11543 => "application/vnd.oma.lwm2m+json".into(),
        n => n.to_string(),
    }
}

fn block(name: &str, v: &[u8]) -> String {
    let n = uint(v);
    format!("{name} {}/{}/{}", n >> 4, n >> 3 & 1, 16u32 << (n & 7).min(6))
}

#[derive(Debug, Default)]
pub struct CoapState {
    pending: Vec<(Vec<u8>, u16, CoapRecord)>,
    confirmed: bool,
    failed: bool,
}

impl CoapState {
    pub fn failed(&self) -> bool {
        self.failed
    }

    pub fn message(&mut self, ctx: &FlowCtx, payload: &[u8], out: &mut AppOut) {
        let Some(m) = parse(payload) else {
            if self.confirmed {
                out.weirds.push("coap_bad_message");
            } else {
                self.failed = true;
            }
            return;
        };
        if !self.confirmed {
            self.confirmed = true;
            out.confirmed = Some("coap");
        }
        match m.code >> 5 {
            0 if m.code != 0 => self.request(ctx, &m, out),
            2..=5 => self.response(&m, out),
            // An empty message: ping, reset or bare ACK.
            _ => {}
        }
    }

    fn request(&mut self, ctx: &FlowCtx, m: &Message<'_>, out: &mut AppOut) {
        let mut path = Vec::new();
        let mut query = Vec::new();
        let (mut host, mut format, mut blk, mut observe) = (None, None, None, false);
        for (n, v) in &m.options {
            match n {
                3 => host = Some(zeek_escape(v)),
                6 => observe = true,
                11 => path.push(zeek_escape(v)),
                12 => format = Some(format_name(v)),
                15 => query.push(zeek_escape(v)),
                23 => blk = Some(block("block2", v)),
                27 => blk = Some(block("block1", v)),
                _ => {}
            }
        }
        let mut uri_path = format!("/{}", path.join("/"));
        uri_path.truncate(MAX_URI);
        let mut uri_query = query.join("&");
        uri_query.truncate(MAX_URI);
        let rec = CoapRecord {
            ts: ctx.ts,
            uid: ctx.uid,
            orig_h: ctx.orig.0,
            orig_p: ctx.orig.1,
            resp_h: ctx.resp.0,
            resp_p: ctx.resp.1,
            msg_type: if m.msg_type == 0 { "CON" } else { "NON" },
            method: method(m.code),
            message_id: m.message_id,
            token: (!m.token.is_empty()).then(|| m.token.iter().map(|b| format!("{b:02x}")).collect()),
            uri_host: host,
            uri_path,
            uri_query: (!uri_query.is_empty()).then_some(uri_query),
            content_format: format,
            request_len: m.payload.len() as u64,
            response_code: None,
            response_format: None,
            response_len: None,
            block: blk,
            observe,
        };
        if self.pending.len() >= MAX_PENDING {
            let (_, _, old) = self.pending.remove(0);
            out.events.push(Event::Coap(old));
        }
        self.pending.push((m.token.to_vec(), m.message_id, rec));
    }

    fn response(&mut self, m: &Message<'_>, out: &mut AppOut) {
        // A piggybacked response shares the token and the message id; a
        // separate one only the token.
        let at = self
            .pending
            .iter()
            .position(|(t, id, _)| t == m.token && (*id == m.message_id || m.msg_type != 2))
            .or_else(|| self.pending.iter().position(|(t, ..)| t == m.token));
        let Some(i) = at else { return };
        let (_, _, mut rec) = self.pending.remove(i);
        rec.response_code = Some(response(m.code));
        rec.response_len = Some(m.payload.len() as u64);
        for (n, v) in &m.options {
            match n {
                12 => rec.response_format = Some(format_name(v)),
                23 if rec.block.is_none() => rec.block = Some(block("block2", v)),
                _ => {}
            }
        }
        out.events.push(Event::Coap(rec));
    }

    pub fn finish(&mut self, _ctx: &FlowCtx, out: &mut AppOut) {
        out.events.extend(self.pending.drain(..).map(|(_, _, r)| Event::Coap(r)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(is_orig: bool) -> FlowCtx {
        crate::proto::test_ctx(("10.33.1.50", 40000), ("10.33.3.12", 5683), is_orig)
    }

    /// PUT /lights/12/state?force=1, Content-Format text/plain, "off";
    /// token 0xbeef, message id 0x1234.
    pub fn put() -> Vec<u8> {
        let mut v = vec![0x42, 0x03, 0x12, 0x34, 0xbe, 0xef];
        v.extend_from_slice(&[0xb6]);
        v.extend_from_slice(b"lights");
        v.extend_from_slice(&[0x02]);
        v.extend_from_slice(b"12");
        v.extend_from_slice(&[0x05]);
        v.extend_from_slice(b"state");
        v.extend_from_slice(&[0x10]);
        v.extend_from_slice(&[0x37]);
        v.extend_from_slice(b"force=1");
        v.push(0xff);
        v.extend_from_slice(b"off");
        v
    }

    #[test]
    fn a_put_and_its_piggybacked_answer() {
        let mut c = CoapState::default();
        let mut out = AppOut::default();
        c.message(&ctx(true), &put(), &mut out);
        c.message(&ctx(false), &[0x62, 0x44, 0x12, 0x34, 0xbe, 0xef], &mut out);
        assert_eq!(out.confirmed, Some("coap"));
        let [Event::Coap(r)] = &out.events[..] else { panic!("{:?}", out.events) };
        assert_eq!(r.method, "PUT");
        assert_eq!(r.uri_path, "/lights/12/state");
        assert_eq!(r.uri_query.as_deref(), Some("force=1"));
        assert_eq!(r.content_format.as_deref(), Some("text/plain"));
        assert_eq!(r.response_code.as_deref(), Some("2.04 Changed"));
        assert_eq!((r.request_len, r.token.as_deref()), (3, Some("beef")));
    }

    #[test]
    fn not_coap_and_hostile_options() {
        let mut c = CoapState::default();
        c.message(&ctx(true), b"\x00\x01\x02\x03 not coap", &mut AppOut::default());
        assert!(c.failed());
        let p = put();
        for cut in 0..p.len() {
            let _ = parse(&p[..cut]);
        }
        // Extended deltas past 65535, a reserved nibble, a token longer than 8.
        for b in [&[0x40, 1, 0, 1, 0xe0, 0xff, 0xff][..], &[0x40, 1, 0, 1, 0xf0], &[0x49, 1, 0, 1]] {
            assert!(parse(b).is_none(), "{b:?}");
        }
    }
}
