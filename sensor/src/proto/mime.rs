//! MIME messages (RFC 2045, 2046) read line by line: headers of each entity,
//! multipart nesting by boundaries, transfer decoding (base64,
//! quoted-printable), and every leaf entity's content as a file. Entities
//! are numbered in order, containers included, as Zeek's `depth` counts them.

use crate::proto::files::{fuid, FileState};
use crate::proto::FlowCtx;
use base64::Engine;
use schema::FilesRecord;

/// Nesting deeper than this is treated as one opaque part.
const MAX_NESTING: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Plain,
    Base64,
    QuotedPrintable,
}

#[derive(Debug)]
struct Entity {
    in_headers: bool,
    headers: Vec<(String, String)>,
    boundary: Option<String>,
    encoding: Encoding,
    file: Option<FileState>,
    depth: u32,
    /// A line break is owed before the next line of a text body. Like Zeek,
    /// the break before a boundary to the next part is dropped (RFC 2046
    /// 5.1.1), the one before a closing boundary or the end is kept.
    pending_crlf: bool,
    /// Base64 characters not yet a multiple of four.
    b64: Vec<u8>,
    filename: Option<String>,
    /// Container: the first boundary has not been seen yet.
    preamble: bool,
}

impl Entity {
    fn new(depth: u32) -> Entity {
        Entity {
            in_headers: true,
            headers: Vec::new(),
            boundary: None,
            encoding: Encoding::Plain,
            file: None,
            depth,
            pending_crlf: false,
            b64: Vec::new(),
            filename: None,
            preamble: true,
        }
    }
}

#[derive(Debug, Default)]
pub struct Mime {
    stack: Vec<Entity>,
    entities: u32,
    /// The top-level headers, unfolded, in order.
    pub top_headers: Vec<(String, String)>,
    pub files: Vec<FilesRecord>,
}

/// The value of parameter `name` in a header like `multipart/mixed; boundary="x"`.
fn param(v: &str, name: &str) -> Option<String> {
    for part in v.split(';').skip(1) {
        let (k, val) = part.split_once('=')?;
        if k.trim().eq_ignore_ascii_case(name) {
            return Some(val.trim().trim_matches('"').to_string());
        }
    }
    None
}

impl Mime {
    pub fn new() -> Self {
        Mime { entities: 1, stack: vec![Entity::new(1)], ..Mime::default() }
    }

    /// One line of the message, without its CRLF.
    pub fn line(&mut self, ctx: &FlowCtx, line: &[u8]) {
        // A boundary line closes the current leaf or opens the next part.
        let text = String::from_utf8_lossy(line);
        for i in (0..self.stack.len()).rev() {
            let Some(b) = self.stack[i].boundary.clone() else { continue };
            if self.stack[i].in_headers {
                continue;
            }
            let t = text.trim_end();
            if t == format!("--{b}") || t == format!("--{b}--") {
                let closing = t.ends_with("--") && t.len() == b.len() + 4;
                while self.stack.len() > i + 1 {
                    self.close_top(ctx, closing);
                }
                if closing {
                    self.stack[i].boundary = None;
                    self.stack[i].preamble = false;
                } else if self.stack.len() < MAX_NESTING {
                    self.stack[i].preamble = false;
                    self.entities += 1;
                    self.stack.push(Entity::new(self.entities));
                }
                return;
            }
        }
        let is_top = self.stack.len() == 1;
        let Some(e) = self.stack.last_mut() else { return };
        if e.in_headers {
            if line.is_empty() {
                e.in_headers = false;
                let ct = e.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.clone());
                let cte = e
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-transfer-encoding"))
                    .map(|(_, v)| v.to_ascii_lowercase());
                let cd = e
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-disposition"))
                    .map(|(_, v)| v.clone());
                e.encoding = match cte.as_deref().map(str::trim) {
                    Some("base64") => Encoding::Base64,
                    Some("quoted-printable") => Encoding::QuotedPrintable,
                    _ => Encoding::Plain,
                };
                e.filename = cd
                    .as_deref()
                    .and_then(|d| param(d, "filename"))
                    .or_else(|| ct.as_deref().and_then(|c| param(c, "name")));
                match ct.as_deref() {
                    Some(c) if c.trim_start().to_ascii_lowercase().starts_with("multipart/") => {
                        e.boundary = param(c, "boundary");
                    }
                    _ => {}
                }
                if is_top {
                    self.top_headers = e.headers.clone();
                }
                return;
            }
            if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                if let Some((_, v)) = e.headers.last_mut() {
                    v.push(' ');
                    v.push_str(text.trim());
                }
            } else if let Some((k, v)) = text.split_once(':') {
                if e.headers.len() < 256 {
                    e.headers.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
            return;
        }
        if e.boundary.is_some() {
            // Preamble or epilogue of a container: not content.
            return;
        }
        let file =
            e.file.get_or_insert_with(|| FileState::new(fuid(ctx.uid, 1000 + e.depth, true), ctx.keep_file_bytes));
        match e.encoding {
            Encoding::Plain => {
                if e.pending_crlf {
                    file.data(ctx.ts, b"\r\n");
                }
                file.data(ctx.ts, line);
                e.pending_crlf = true;
            }
            Encoding::Base64 => {
                e.b64.extend(line.iter().filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')));
                let whole = e.b64.len() / 4 * 4;
                if whole > 0 {
                    let chunk: Vec<u8> = e.b64.drain(..whole).collect();
                    if let Ok(d) = base64::engine::general_purpose::STANDARD.decode(&chunk) {
                        file.data(ctx.ts, &d);
                    }
                }
            }
            Encoding::QuotedPrintable => {
                if e.pending_crlf {
                    file.data(ctx.ts, b"\r\n");
                }
                let (body, soft) = match line.strip_suffix(b"=") {
                    Some(b) => (b, true),
                    None => (line, false),
                };
                let mut out = Vec::with_capacity(body.len());
                let mut i = 0;
                while i < body.len() {
                    if body[i] == b'=' && i + 2 < body.len() + 1 {
                        let hex = body
                            .get(i + 1..i + 3)
                            .and_then(|h| std::str::from_utf8(h).ok())
                            .and_then(|h| u8::from_str_radix(h, 16).ok());
                        if let Some(v) = hex {
                            out.push(v);
                            i += 3;
                            continue;
                        }
                    }
                    out.push(body[i]);
                    i += 1;
                }
                file.data(ctx.ts, &out);
                e.pending_crlf = !soft;
            }
        }
    }

    fn close_top(&mut self, ctx: &FlowCtx, keep_break: bool) {
        if let Some(mut e) = self.stack.pop() {
            if let Some(mut f) = e.file.take() {
                if keep_break && e.pending_crlf {
                    f.append_owed(b"\r\n");
                }
                if let Some(r) = f.finish(ctx, "SMTP", e.depth, true, e.filename, None) {
                    self.files.push(r);
                }
            }
        }
    }

    /// The message ended: every open entity is complete.
    pub fn finish(&mut self, ctx: &FlowCtx) {
        while !self.stack.is_empty() {
            self.close_top(ctx, true);
        }
    }
}
