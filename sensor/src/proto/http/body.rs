//! Message bodies: framing (RFC 9112 6), content decoding with a cap, and
//! MIME sniffing of the first bytes.

use crate::proto::files::FileState;
use flate2::write::{GzDecoder, ZlibDecoder};
use schema::Time;
use std::io::Write;

/// Decoded body bytes counted and sniffed per message; past it decoding
/// stops (a decompression bomb costs no more than this).
pub const MAX_DECODED: u64 = 64 << 20;
const SNIFF: usize = 512;

#[derive(Debug)]
pub enum Framing {
    None,
    Length(u64),
    Chunked(ChunkState),
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkState {
    /// Reading a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// The CRLF after chunk data.
    DataEnd,
    /// Trailer lines after the last chunk, until an empty one.
    Trailer,
}

/// Collects the decoded size and the first bytes of a body, and hashes it.
struct Sink {
    len: u64,
    head: Vec<u8>,
    file: Option<FileState>,
    now: Time,
}

impl Default for Sink {
    fn default() -> Self {
        Sink { len: 0, head: Vec::new(), file: None, now: Time(0) }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.len >= MAX_DECODED {
            return Err(std::io::Error::other("decoded body over the cap"));
        }
        self.len += buf.len() as u64;
        if let Some(f) = self.file.as_mut() {
            f.data(self.now, buf);
        }
        if self.head.len() < SNIFF {
            let take = (SNIFF - self.head.len()).min(buf.len());
            self.head.extend_from_slice(buf.get(..take).unwrap_or(&[]));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Decoder {
    Identity(Sink),
    Gzip(Box<GzDecoder<Sink>>),
    Deflate(Box<ZlibDecoder<Sink>>),
    /// Decoding failed or hit the cap: counting stops here.
    Broken(Sink),
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decoder::Identity(_) => "identity",
            Decoder::Gzip(_) => "gzip",
            Decoder::Deflate(_) => "deflate",
            Decoder::Broken(_) => "broken",
        })
    }
}

/// One body being received.
#[derive(Debug)]
pub struct Body {
    dec: Decoder,
    pub weird: Option<&'static str>,
}

impl Body {
    pub fn new(content_encoding: Option<&[u8]>) -> Body {
        Self::with_file(content_encoding, None)
    }

    /// A body whose decoded content is also hashed as a file.
    pub fn with_file(content_encoding: Option<&[u8]>, file: Option<FileState>) -> Body {
        let enc = content_encoding.map(|e| e.trim_ascii().to_ascii_lowercase());
        let sink = Sink { file, ..Sink::default() };
        let dec = match enc.as_deref() {
            Some(b"gzip") | Some(b"x-gzip") => Decoder::Gzip(Box::new(GzDecoder::new(sink))),
            Some(b"deflate") => Decoder::Deflate(Box::new(ZlibDecoder::new(sink))),
            _ => Decoder::Identity(sink),
        };
        Body { dec, weird: None }
    }

    fn sink_mut(&mut self) -> &mut Sink {
        match &mut self.dec {
            Decoder::Identity(s) | Decoder::Broken(s) => s,
            Decoder::Gzip(g) => g.get_mut(),
            Decoder::Deflate(z) => z.get_mut(),
        }
    }

    /// Data of the body as captured at `now`.
    pub fn data_at(&mut self, now: Time, d: &[u8]) {
        self.sink_mut().now = now;
        self.data(d);
    }

    pub fn data(&mut self, d: &[u8]) {
        let res = match &mut self.dec {
            Decoder::Identity(s) | Decoder::Broken(s) => {
                let _ = s.write(d);
                Ok(())
            }
            Decoder::Gzip(g) => g.write_all(d),
            Decoder::Deflate(z) => z.write_all(d),
        };
        if res.is_err() {
            self.weird = Some("HTTP_decompression_failed_or_capped");
            let sink = match std::mem::replace(&mut self.dec, Decoder::Broken(Sink::default())) {
                Decoder::Gzip(mut g) => std::mem::take(g.get_mut()),
                Decoder::Deflate(mut z) => std::mem::take(z.get_mut()),
                Decoder::Identity(s) | Decoder::Broken(s) => s,
            };
            self.dec = Decoder::Broken(sink);
        }
    }

    /// The decoded length and the sniffed MIME type.
    pub fn finish(self) -> (u64, Option<&'static str>) {
        let (len, mime, _) = self.finish_file();
        (len, mime)
    }

    /// The decoded length, the MIME type, and the file when one was kept.
    pub fn finish_file(self) -> (u64, Option<&'static str>, Option<FileState>) {
        let mut sink = match self.dec {
            Decoder::Identity(s) | Decoder::Broken(s) => s,
            Decoder::Gzip(g) => g.finish().unwrap_or_default(),
            Decoder::Deflate(z) => z.finish().unwrap_or_default(),
        };
        let mime = (sink.len > 0).then(|| sniff(&sink.head)).flatten();
        (sink.len, mime, sink.file.take())
    }
}

/// A few unambiguous signatures, then text; nothing for unknown binary.
pub fn sniff(b: &[u8]) -> Option<&'static str> {
    let lower: Vec<u8> = b.iter().take(64).map(u8::to_ascii_lowercase).collect();
    let trimmed = lower.trim_ascii_start();
    Some(if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        "image/gif"
    } else if b.starts_with(&[0xff, 0xd8, 0xff]) {
        "image/jpeg"
    } else if b.starts_with(b"%PDF-") {
        "application/pdf"
    } else if b.starts_with(b"PK\x03\x04") {
        "application/zip"
    } else if b.starts_with(&[0x1f, 0x8b]) {
        "application/x-gzip"
    } else if b.starts_with(b"MZ") {
        "application/x-dosexec"
    } else if b.starts_with(b"\x7fELF") {
        "application/x-executable"
    } else if trimmed.starts_with(b"<!doctype html") || trimmed.starts_with(b"<html") {
        "text/html"
    } else if trimmed.starts_with(b"<?xml") || trimmed.starts_with(b"<svg") {
        if lower.windows(4).any(|w| w == b"<svg") {
            "image/svg+xml"
        } else {
            "application/xml"
        }
    } else if trimmed.starts_with(b"{") || trimmed.starts_with(b"[") {
        "application/json"
    } else if b.iter().all(|&c| c == b'\t' || c == b'\n' || c == b'\r' || (0x20..0x7f).contains(&c) || c >= 0x80) {
        "text/plain"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_bodies_are_measured_decoded() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"<html>hello city</html>").unwrap();
        let gz = enc.finish().unwrap();
        let mut b = Body::new(Some(b"gzip"));
        for c in gz.chunks(3) {
            b.data(c);
        }
        assert_eq!(b.finish(), (23, Some("text/html")));
    }

    #[test]
    fn broken_gzip_is_reported_not_fatal() {
        let mut b = Body::new(Some(b"gzip"));
        b.data(b"definitely not gzip");
        assert!(b.weird.is_some());
        let _ = b.finish();
    }
}
