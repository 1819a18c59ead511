//! Per-connection HTTP state: each side alternates between a message head
//! (parsed by `httparse`) and its body; requests wait in order for their
//! replies, so pipelined transactions pair up as Zeek pairs them.

use super::body::{Body, ChunkState, Framing};
use crate::proto::files::{fuid, FileState};
use crate::proto::stream::Chunk;
use crate::proto::{zeek_escape, AppOut, FlowCtx};
use base64::Engine;
use schema::{Event, HttpRecord};
use std::collections::VecDeque;

/// Headers per message, and bytes of one head; beyond them the side stops.
const MAX_HEADERS: usize = 100;
const MAX_HEAD: usize = 64 << 10;
/// Requests waiting for replies; beyond it the oldest is logged as it is.
const MAX_PENDING: usize = 64;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    #[default]
    Head,
    Body,
    /// Framing lost or the connection switched protocols.
    Done,
}

#[derive(Debug, Default)]
struct Side {
    phase: Phase,
    buf: Vec<u8>,
    framing: Option<Framing>,
    body: Option<Body>,
}

#[derive(Debug)]
struct Txn {
    rec: HttpRecord,
    head_request: bool,
    replied: bool,
}

#[derive(Debug, Default)]
pub struct HttpState {
    sides: [Side; 2],
    /// Transactions in request order; the front one gets the next reply.
    txns: VecDeque<Txn>,
    depth: u32,
    bad_heads: u8,
    /// Files (bodies) seen on the connection, for their ids.
    files: u32,
}

fn header<'a>(h: &'a [httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    h.iter().find(|x| x.name.eq_ignore_ascii_case(name)).map(|x| x.value)
}

fn text(b: &[u8]) -> String {
    zeek_escape(b.trim_ascii())
}

/// How the body of a message is delimited (RFC 9112 6.3).
fn framing(h: &[httparse::Header<'_>], is_request: bool, no_body: bool, weirds: &mut Vec<&'static str>) -> Framing {
    if no_body {
        return Framing::None;
    }
    if header(h, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().windows(7).any(|w| w == b"chunked")) {
        return Framing::Chunked(ChunkState::Size);
    }
    if let Some(v) = header(h, "content-length") {
        return match std::str::from_utf8(v).ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
            None => {
                weirds.push("HTTP_bad_content_length");
                Framing::None
            }
        };
    }
    if is_request {
        Framing::None
    } else {
        Framing::UntilClose
    }
}

impl HttpState {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn failed(&self) -> bool {
        self.bad_heads >= 3 && self.txns.is_empty() && self.depth == 0
    }

    fn new_txn(&mut self, ctx: &FlowCtx) -> Txn {
        self.depth += 1;
        Txn {
            rec: HttpRecord {
                ts: ctx.ts,
                uid: ctx.uid,
                orig_h: ctx.orig.0,
                orig_p: ctx.orig.1,
                resp_h: ctx.resp.0,
                resp_p: ctx.resp.1,
                trans_depth: self.depth,
                method: None,
                host: None,
                uri: None,
                referrer: None,
                version: None,
                user_agent: None,
                origin: None,
                request_body_len: 0,
                response_body_len: 0,
                status_code: None,
                status_msg: None,
                info_code: None,
                info_msg: None,
                tags: Vec::new(),
                username: None,
                orig_fuids: None,
                orig_mime_types: None,
                resp_fuids: None,
                resp_mime_types: None,
            },
            head_request: false,
            replied: false,
        }
    }

    pub fn stream(&mut self, ctx: &FlowCtx, chunk: Chunk<'_>, out: &mut AppOut) {
        let s = usize::from(!ctx.is_orig);
        match chunk {
            Chunk::Gap(n) => self.gap(s, n, out),
            Chunk::Data(d) => {
                let Some(side) = self.sides.get_mut(s) else { return };
                if side.phase == Phase::Done {
                    return;
                }
                side.buf.extend_from_slice(d);
                self.run(ctx, s, out);
            }
        }
    }

    fn gap(&mut self, s: usize, n: u64, out: &mut AppOut) {
        let Some(side) = self.sides.get_mut(s) else { return };
        out.weirds.push("HTTP_content_gap");
        // A gap inside a body of known length only shortens what is seen;
        // anywhere else the message boundaries are lost.
        if let (Phase::Body, Some(Framing::Length(rem))) = (side.phase, side.framing.as_mut()) {
            if side.buf.is_empty() && n < *rem {
                *rem -= n;
                return;
            }
        }
        side.phase = Phase::Done;
        side.buf = Vec::new();
    }

    fn run(&mut self, ctx: &FlowCtx, s: usize, out: &mut AppOut) {
        loop {
            let phase = match self.sides.get(s) {
                Some(side) => side.phase,
                None => return,
            };
            let progressed = match phase {
                Phase::Done => {
                    if let Some(side) = self.sides.get_mut(s) {
                        side.buf = Vec::new();
                    }
                    return;
                }
                Phase::Head => self.head(ctx, s, out),
                Phase::Body => self.body(ctx, s, out),
            };
            if !progressed {
                return;
            }
        }
    }

    /// Parses one message head if complete; returns whether it did.
    fn head(&mut self, ctx: &FlowCtx, s: usize, out: &mut AppOut) -> bool {
        let buf = std::mem::take(&mut self.sides[s].buf);
        // Stray line ends between messages are tolerated (RFC 9112 2.2).
        let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
        let data = buf.get(start..).unwrap_or(&[]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let result = if s == 0 {
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(data) {
                Ok(httparse::Status::Complete(n)) => {
                    let h = req.headers.iter().take_while(|h| !h.name.is_empty()).cloned().collect::<Vec<_>>();
                    self.request(ctx, &req, &h, out);
                    Ok(Some(n))
                }
                Ok(httparse::Status::Partial) => Ok(None),
                Err(e) => Err(e),
            }
        } else {
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(data) {
                Ok(httparse::Status::Complete(n)) => {
                    let h = resp.headers.iter().take_while(|h| !h.name.is_empty()).cloned().collect::<Vec<_>>();
                    self.reply(ctx, &resp, &h, out);
                    Ok(Some(n))
                }
                Ok(httparse::Status::Partial) => Ok(None),
                Err(e) => Err(e),
            }
        };
        let side = &mut self.sides[s];
        match result {
            Ok(Some(n)) => {
                side.buf = data.get(n..).unwrap_or(&[]).to_vec();
                true
            }
            Ok(None) => {
                if data.len() > MAX_HEAD {
                    out.weirds.push("HTTP_header_too_large");
                    side.phase = Phase::Done;
                } else {
                    side.buf = data.to_vec();
                }
                false
            }
            Err(e) => {
                out.weirds.push(match (s, e) {
                    (_, httparse::Error::TooManyHeaders) => "HTTP_too_many_headers",
                    (0, _) => "bad_HTTP_request",
                    _ => "bad_HTTP_reply",
                });
                self.bad_heads = self.bad_heads.saturating_add(1);
                side.phase = Phase::Done;
                false
            }
        }
    }

    fn request(
        &mut self,
        ctx: &FlowCtx,
        req: &httparse::Request<'_, '_>,
        h: &[httparse::Header<'_>],
        out: &mut AppOut,
    ) {
        out.confirmed = Some("http");
        let mut t = self.new_txn(ctx);
        let method = req.method.unwrap_or("");
        t.head_request = method.eq_ignore_ascii_case("HEAD");
        t.rec.method = Some(zeek_escape(method.as_bytes()));
        t.rec.uri = req.path.map(|p| zeek_escape(p.as_bytes()));
        t.rec.version = req.version.map(|v| format!("1.{v}"));
        t.rec.host = header(h, "host").map(text);
        t.rec.referrer = header(h, "referer").map(text);
        t.rec.user_agent = header(h, "user-agent").map(text);
        t.rec.origin = header(h, "origin").map(text);
        if let Some(auth) = header(h, "authorization") {
            let a = auth.trim_ascii();
            if a.len() > 6 && a[..6].eq_ignore_ascii_case(b"basic ") {
                if let Ok(dec) = base64::engine::general_purpose::STANDARD.decode(a[6..].trim_ascii()) {
                    let user = dec.split(|&b| b == b':').next().unwrap_or(&[]);
                    t.rec.username = Some(zeek_escape(user));
                }
            } else {
                t.rec.username = Some("<unknown>".into());
            }
        }
        let fr = framing(h, true, false, &mut out.weirds);
        self.start_body(ctx, 0, fr, header(h, "content-encoding"));
        if self.txns.len() >= MAX_PENDING {
            if let Some(old) = self.txns.pop_front() {
                out.events.push(Event::Http(old.rec));
            }
        }
        if self.txns.capacity() == 0 {
            // Most connections carry one transaction at a time.
            self.txns.reserve_exact(1);
        }
        self.txns.push_back(t);
    }

    fn reply(
        &mut self,
        ctx: &FlowCtx,
        resp: &httparse::Response<'_, '_>,
        h: &[httparse::Header<'_>],
        out: &mut AppOut,
    ) {
        out.confirmed = Some("http");
        let code = resp.code.unwrap_or(0);
        let msg = resp.reason.map(|r| zeek_escape(r.as_bytes()));
        let version = resp.version.map(|v| format!("1.{v}"));
        if !self.txns.iter().any(|t| !t.replied) {
            // A reply without a request (its request was not captured).
            let t = self.new_txn(ctx);
            self.txns.push_back(t);
        }
        let Some(t) = self.txns.iter_mut().find(|t| !t.replied) else { return };
        if (100..200).contains(&code) && code != 101 {
            t.rec.info_code = Some(code);
            t.rec.info_msg = msg;
            return;
        }
        t.replied = true;
        t.rec.status_code = Some(code);
        t.rec.status_msg = msg;
        t.rec.version = version;
        let no_body = t.head_request || code == 204 || code == 304;
        if code == 101 {
            // Switching protocols (WebSocket, h2c): what follows is not HTTP/1.
            self.sides[0].phase = Phase::Done;
            self.sides[1].phase = Phase::Done;
            self.finish_reply(out);
            return;
        }
        let fr = framing(h, false, no_body, &mut out.weirds);
        self.start_body(ctx, 1, fr, header(h, "content-encoding"));
        if self.sides[1].phase == Phase::Head {
            self.finish_reply(out);
        }
    }

    fn start_body(&mut self, ctx: &FlowCtx, s: usize, fr: Framing, encoding: Option<&[u8]>) {
        if matches!(fr, Framing::None) {
            let side = &mut self.sides[s];
            side.phase = Phase::Head;
            side.framing = None;
            side.body = None;
        } else {
            self.files += 1;
            let file = FileState::new(fuid(ctx.uid, self.files, s == 0), ctx.keep_file_bytes);
            let side = &mut self.sides[s];
            side.phase = Phase::Body;
            side.framing = Some(fr);
            side.body = Some(Body::with_file(encoding, Some(file)));
        }
    }

    /// Consumes body bytes; returns whether the body ended (so parsing goes on).
    fn body(&mut self, ctx: &FlowCtx, s: usize, out: &mut AppOut) -> bool {
        let side = &mut self.sides[s];
        let mut buf = std::mem::take(&mut side.buf);
        let mut off = 0;
        let mut ended = false;
        while off < buf.len() && !ended {
            let rest = buf.get(off..).unwrap_or(&[]);
            match side.framing.as_mut() {
                None | Some(Framing::None) => {
                    ended = true;
                }
                Some(Framing::UntilClose) => {
                    if let Some(b) = side.body.as_mut() {
                        b.data_at(ctx.ts, rest);
                    }
                    off = buf.len();
                }
                Some(Framing::Length(rem)) => {
                    let take = (*rem).min(rest.len() as u64) as usize;
                    if let (Some(b), Some(d)) = (side.body.as_mut(), rest.get(..take)) {
                        b.data_at(ctx.ts, d);
                    }
                    *rem -= take as u64;
                    off += take;
                    ended = *rem == 0;
                }
                Some(Framing::Chunked(st)) => match *st {
                    ChunkState::Size | ChunkState::Trailer | ChunkState::DataEnd => {
                        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                            if rest.len() > 1024 {
                                out.weirds.push("HTTP_bad_chunk_size");
                                side.phase = Phase::Done;
                                return false;
                            }
                            break;
                        };
                        let line = rest.get(..nl).unwrap_or(&[]);
                        let line = line.strip_suffix(b"\r").unwrap_or(line);
                        off += nl + 1;
                        match *st {
                            ChunkState::DataEnd => *st = ChunkState::Size,
                            ChunkState::Trailer => {
                                if line.is_empty() {
                                    ended = true;
                                }
                            }
                            _ => {
                                let hex = line.split(|&b| b == b';').next().unwrap_or(&[]).trim_ascii();
                                match std::str::from_utf8(hex).ok().and_then(|h| u64::from_str_radix(h, 16).ok()) {
                                    Some(0) => *st = ChunkState::Trailer,
                                    Some(n) => *st = ChunkState::Data(n),
                                    None => {
                                        out.weirds.push("HTTP_bad_chunk_size");
                                        side.phase = Phase::Done;
                                        return false;
                                    }
                                }
                            }
                        }
                    }
                    ChunkState::Data(rem) => {
                        let take = rem.min(rest.len() as u64) as usize;
                        if let (Some(b), Some(d)) = (side.body.as_mut(), rest.get(..take)) {
                            b.data_at(ctx.ts, d);
                        }
                        off += take;
                        let left = rem - take as u64;
                        *st = if left == 0 { ChunkState::DataEnd } else { ChunkState::Data(left) };
                    }
                },
            }
        }
        buf.drain(..off.min(buf.len()));
        side.buf = buf;
        if ended || matches!(side.framing, Some(Framing::None)) {
            side.phase = Phase::Head;
            side.framing = None;
            let body = side.body.take();
            self.body_done(ctx, s, body, out);
            if s == 1 {
                self.finish_reply(out);
            }
            return true;
        }
        false
    }

    fn body_done(&mut self, ctx: &FlowCtx, s: usize, body: Option<Body>, out: &mut AppOut) {
        let Some(body) = body else { return };
        if let Some(w) = body.weird {
            out.weirds.push(w);
        }
        let (len, mime, file) = body.finish_file();
        let t = if s == 0 {
            self.txns.back_mut()
        } else {
            self.txns.iter_mut().find(|t| t.replied && t.rec.status_code.is_some())
        };
        let Some(t) = t else { return };
        let depth = t.rec.trans_depth;
        let record = file.and_then(|f| f.finish(ctx, "HTTP", depth, s == 0, None, None));
        let fuid = record.as_ref().map(|r| r.fuid.clone());
        if let Some(r) = record {
            out.events.push(Event::Files(r));
        }
        let (fuids, mimes, body_len) = if s == 0 {
            (&mut t.rec.orig_fuids, &mut t.rec.orig_mime_types, &mut t.rec.request_body_len)
        } else {
            (&mut t.rec.resp_fuids, &mut t.rec.resp_mime_types, &mut t.rec.response_body_len)
        };
        *body_len += len;
        if let Some(f) = fuid {
            fuids.get_or_insert_with(Vec::new).push(f);
        }
        if let Some(m) = mime {
            mimes.get_or_insert_with(Vec::new).push(m.to_string());
        }
    }

    /// The front transaction's reply is complete: log it.
    fn finish_reply(&mut self, out: &mut AppOut) {
        if let Some(i) = self.txns.iter().position(|t| t.replied) {
            if let Some(t) = self.txns.remove(i) {
                out.events.push(Event::Http(t.rec));
            }
        }
    }

    /// The connection ends: a body that ran to the close is complete, and
    /// every transaction still open is logged as it is.
    pub fn finish(&mut self, ctx: &FlowCtx, out: &mut AppOut) {
        for s in 0..2 {
            let side = &mut self.sides[s];
            if side.phase == Phase::Body {
                side.phase = Phase::Done;
                let body = side.body.take();
                self.body_done(ctx, s, body, out);
            }
        }
        for t in self.txns.drain(..) {
            out.events.push(Event::Http(t.rec));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::{FlowUid, Time};
    use std::io::Write;

    fn ctx(is_orig: bool) -> FlowCtx {
        FlowCtx {
            ts: Time(1),
            uid: FlowUid::new(9),
            orig: ("10.0.0.1".parse().unwrap(), 40000),
            resp: ("10.0.0.80".parse().unwrap(), 80),
            is_orig,
            keep_file_bytes: 0,
            orig_local: false,
            resp_local: false,
        }
    }

    fn records(msgs: &[(bool, Vec<u8>)], split: usize) -> (Vec<HttpRecord>, Vec<&'static str>) {
        let mut st = HttpState::new();
        let mut out = AppOut::default();
        for (is_orig, m) in msgs {
            let cut = split.min(m.len());
            st.stream(&ctx(*is_orig), Chunk::Data(&m[..cut]), &mut out);
            st.stream(&ctx(*is_orig), Chunk::Data(&m[cut..]), &mut out);
        }
        st.finish(&ctx(true), &mut out);
        let recs = out.events.into_iter().filter_map(|e| if let Event::Http(h) = e { Some(h) } else { None }).collect();
        (recs, out.weirds)
    }

    fn conversation() -> Vec<(bool, Vec<u8>)> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&[b'x'; 3000]).unwrap();
        let gz = gz.finish().unwrap();
        let mut r2 =
            format!("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n", gz.len()).into_bytes();
        r2.extend_from_slice(&gz);
        vec![
            // Two pipelined requests, the second with a chunked body.
            (
                true,
                b"GET /a HTTP/1.1\r\nHost: city.example\r\nUser-Agent: t/1\r\nAuthorization: Basic YWRtaW46c2VjcmV0\r\n\r\nPOST /b HTTP/1.1\r\nHost: city.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec(),
            ),
            (false, b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n<html></html>".to_vec()),
            (false, r2),
        ]
    }

    #[test]
    fn pipelining_chunked_and_gzip_at_every_split() {
        let (whole, weirds) = records(&conversation(), usize::MAX);
        assert!(weirds.is_empty(), "{weirds:?}");
        assert_eq!(whole.len(), 2);
        let (a, b) = (&whole[0], &whole[1]);
        assert_eq!((a.trans_depth, a.method.as_deref(), a.uri.as_deref()), (1, Some("GET"), Some("/a")));
        assert_eq!(a.username.as_deref(), Some("admin"));
        assert_eq!(a.response_body_len, 13);
        assert_eq!(a.resp_mime_types.as_deref(), Some(&["text/html".to_string()][..]));
        assert_eq!((b.trans_depth, b.request_body_len, b.response_body_len), (2, 11, 3000));
        assert_eq!(b.status_code, Some(200));
        for split in 0..120 {
            assert_eq!(records(&conversation(), split).0, whole, "split {split}");
        }
    }

    #[test]
    fn head_replies_have_no_body_and_close_delimits() {
        let msgs = vec![
            (true, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.0\r\n\r\n".to_vec()),
            (false, b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\nHTTP/1.0 404 Not Found\r\n\r\ngone".to_vec()),
        ];
        let (r, _) = records(&msgs, usize::MAX);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].response_body_len, 0);
        assert_eq!((r[1].status_code, r[1].response_body_len, r[1].version.as_deref()), (Some(404), 4, Some("1.0")));
    }

    #[test]
    fn garbage_is_a_weird() {
        let (r, w) = records(&[(true, b"\x16\x03\x01\x02\x00garbage\r\n\r\n".to_vec())], usize::MAX);
        assert!(r.is_empty());
        assert_eq!(w, vec!["bad_HTTP_request"]);
    }
}
