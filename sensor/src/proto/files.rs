//! Files carried by protocols (HTTP bodies, FTP transfers): hashed as they
//! stream by, sniffed from their first bytes, and logged to `files.log`.

use crate::proto::http::sniff;
use crate::proto::FlowCtx;
use md5::{Digest, Md5};
use schema::{FilesRecord, FlowUid, Time};
use sha1::Sha1;
use sha2::Sha256;

const HEAD: usize = 512;

/// A file identifier: `F` and 96 bits derived from the connection and the
/// file's position in it, so seeded runs give the same fuids.
pub fn fuid(conn: FlowUid, n: u32, is_orig: bool) -> String {
    let mut h = Sha256::new();
    h.update(conn.0.to_le_bytes());
    h.update(n.to_le_bytes());
    h.update([u8::from(is_orig)]);
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    FlowUid::new(u128::from_le_bytes(b)).render('F')
}

pub struct FileState {
    pub fuid: String,
    first: Option<Time>,
    last: Time,
    seen: u64,
    missing: u64,
    head: Vec<u8>,
    md5: Md5,
    sha1: Sha1,
    sha256: Sha256,
    /// Bytes kept for extraction, and how many may be.
    content: Vec<u8>,
    keep: u64,
    extracting: bool,
    cutoff: bool,
}

impl std::fmt::Debug for FileState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileState").field("fuid", &self.fuid).field("seen", &self.seen).finish()
    }
}

impl FileState {
    /// `keep` bytes of the file are kept for extraction (0: none).
    pub fn new(fuid: String, keep: u64) -> Self {
        FileState {
            fuid,
            first: None,
            last: Time(0),
            seen: 0,
            missing: 0,
            head: Vec::new(),
            md5: Md5::new(),
            sha1: Sha1::new(),
            sha256: Sha256::new(),
            content: Vec::new(),
            keep,
            extracting: keep > 0,
            cutoff: false,
        }
    }

    pub fn data(&mut self, ts: Time, d: &[u8]) {
        if d.is_empty() {
            return;
        }
        self.first.get_or_insert(ts);
        self.last = ts;
        self.seen += d.len() as u64;
        if self.head.len() < HEAD {
            let take = (HEAD - self.head.len()).min(d.len());
            self.head.extend_from_slice(&d[..take]);
        }
        if self.extracting {
            let room = usize::try_from(self.keep.saturating_sub(self.content.len() as u64)).unwrap_or(usize::MAX);
            self.content.extend_from_slice(&d[..room.min(d.len())]);
            self.cutoff |= room < d.len();
        }
        self.md5.update(d);
        self.sha1.update(d);
        self.sha256.update(d);
    }

    /// Bytes owed to the file from data already seen (a line break kept at
    /// its end): counted and hashed without moving its time.
    pub fn append_owed(&mut self, d: &[u8]) {
        let last = self.last;
        self.data(last, d);
        self.last = last;
    }

    pub fn gap(&mut self, n: u64) {
        self.missing += n;
        // A copy with a hole would misrepresent the file; it ends here.
        if self.extracting && n > 0 {
            self.cutoff = true;
            self.keep = self.content.len() as u64;
        }
    }

    pub fn seen(&self) -> u64 {
        self.seen
    }

    pub fn mime(&self) -> Option<&'static str> {
        (self.seen > 0).then(|| sniff(&self.head)).flatten()
    }

    /// The files.log record; `None` for a file that carried nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        self,
        ctx: &FlowCtx,
        source: &'static str,
        depth: u32,
        is_orig: bool,
        filename: Option<String>,
        total: Option<u64>,
    ) -> Option<FilesRecord> {
        let first = self.first?;
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let mime = self.mime().map(str::to_string);
        Some(FilesRecord {
            ts: first,
            fuid: self.fuid,
            uid: ctx.uid,
            orig_h: ctx.orig.0,
            orig_p: ctx.orig.1,
            resp_h: ctx.resp.0,
            resp_p: ctx.resp.1,
            source,
            depth,
            analyzers: vec!["MD5", "SHA1", "SHA256"],
            mime_type: mime,
            filename,
            duration: self.last.since(first),
            local_orig: ctx.orig_local,
            is_orig,
            seen_bytes: self.seen,
            total_bytes: total,
            missing_bytes: self.missing,
            overflow_bytes: 0,
            timedout: false,
            md5: Some(hex(&self.md5.finalize())),
            sha1: Some(hex(&self.sha1.finalize())),
            sha256: Some(hex(&self.sha256.finalize())),
            extracted: None,
            extracted_cutoff: self.extracting.then_some(self.cutoff),
            extracted_size: None,
            content: self.extracting.then_some(self.content),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_ids() {
        let mut f = FileState::new(fuid(FlowUid::new(5), 1, false), 0);
        f.data(Time(10), b"hello ");
        f.data(Time(30), b"world");
        let ctx = FlowCtx {
            ts: Time(30),
            uid: FlowUid::new(5),
            orig: ("10.0.0.1".parse().unwrap(), 1),
            resp: ("8.8.8.8".parse().unwrap(), 80),
            is_orig: false,
            keep_file_bytes: 0,
            orig_local: false,
            resp_local: false,
        };
        let r = f.finish(&ctx, "HTTP", 1, false, None, Some(11)).unwrap();
        assert_eq!(r.md5.as_deref(), Some("5eb63bbbe01eeed093cb22bb8f5acdc3"));
        assert_eq!(r.seen_bytes, 11);
        assert_eq!(r.duration.micros(), 20);
        assert!(r.fuid.starts_with('F'));
        assert_ne!(fuid(FlowUid::new(5), 1, false), fuid(FlowUid::new(5), 2, false));
    }

    #[test]
    fn kept_content_stops_at_the_cap_and_at_a_gap() {
        let ctx = FlowCtx {
            ts: Time(30),
            uid: FlowUid::new(5),
            orig: ("10.0.0.1".parse().unwrap(), 1),
            resp: ("8.8.8.8".parse().unwrap(), 80),
            is_orig: false,
            keep_file_bytes: 4,
            orig_local: false,
            resp_local: false,
        };
        let mut f = FileState::new(fuid(FlowUid::new(5), 1, false), 4);
        f.data(Time(10), b"abc");
        f.data(Time(11), b"def");
        let r = f.finish(&ctx, "HTTP", 1, false, None, None).unwrap();
        assert_eq!((r.content.as_deref(), r.extracted_cutoff), (Some(&b"abcd"[..]), Some(true)));
        let mut f = FileState::new(fuid(FlowUid::new(5), 2, false), 100);
        f.data(Time(10), b"ab");
        f.gap(3);
        f.data(Time(11), b"cd");
        let r = f.finish(&ctx, "HTTP", 1, false, None, None).unwrap();
        assert_eq!((r.content.as_deref(), r.extracted_cutoff), (Some(&b"ab"[..]), Some(true)));
        let mut f = FileState::new(fuid(FlowUid::new(5), 3, false), 100);
        f.data(Time(10), b"whole");
        let r = f.finish(&ctx, "HTTP", 1, false, None, None).unwrap();
        assert_eq!((r.content.as_deref(), r.extracted_cutoff), (Some(&b"whole"[..]), Some(false)));
    }
}
