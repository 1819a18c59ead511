//! DNP3 over TCP (IEEE 1815-2012): link frames (start bytes 0x05 0x64,
//! length, header with CRC, then 16-byte data blocks each with a CRC),
//! transport segments (FIN, FIR, sequence) reassembled into application
//! fragments, and the application header (control, function code, and for
//! responses the internal indications). One `dnp3.log` line per request and
//! its response, as Zeek's: an unanswered request is logged when the next
//! one replaces it or the connection ends.

use crate::proto::stream::Chunk;
use crate::proto::{AppOut, FlowCtx};
use crc::{Crc, CRC_16_DNP};
use schema::{Dnp3ObjectRecord, Dnp3Record, Event};

pub const PORT: u16 = 20000;

const DNP: Crc<u16> = Crc::<u16>::new(&CRC_16_DNP);
/// Application fragments are at most 2048 bytes in practice (the default
/// fragment size); more is held for no one.
const MAX_FRAGMENT: usize = 8 << 10;

pub fn func_name(code: u8) -> Option<&'static str> {
    Some(match code {
        0 => "CONFIRM",
        1 => "READ",
        2 => "WRITE",
        3 => "SELECT",
        4 => "OPERATE",
        5 => "DIRECT_OPERATE",
        6 => "DIRECT_OPERATE_NR",
        7 => "IMMED_FREEZE",
        8 => "IMMED_FREEZE_NR",
        9 => "FREEZE_CLEAR",
        10 => "FREEZE_CLEAR_NR",
        11 => "FREEZE_AT_TIME",
        12 => "FREEZE_AT_TIME_NR",
        13 => "COLD_RESTART",
        14 => "WARM_RESTART",
        15 => "INITIALIZE_DATA",
        16 => "INITIALIZE_APPL",
        17 => "START_APPL",
        18 => "STOP_APPL",
        19 => "SAVE_CONFIG",
        20 => "ENABLE_UNSOLICITED",
        21 => "DISABLE_UNSOLICITED",
        22 => "ASSIGN_CLASS",
        23 => "DELAY_MEASURE",
        24 => "RECORD_CURRENT_TIME",
        25 => "OPEN_FILE",
        26 => "CLOSE_FILE",
        27 => "DELETE_FILE",
        28 => "GET_FILE_INFO",
        29 => "AUTHENTICATE_FILE",
        30 => "ABORT_FILE",
        31 => "ACTIVATE_CONFIG",
        32 => "AUTHENTICATE_REQ",
        33 => "AUTHENTICATE_REQ_NR",
        129 => "RESPONSE",
        130 => "UNSOLICITED_RESPONSE",
        131 => "AUTHENTICATE_RESPONSE",
        _ => return None,
    })
}

/// Object headers read per fragment.
const MAX_HEADERS: usize = 32;

/// Size in bytes of one object of a group and variation, for the fixed-size
/// objects of IEEE 1815 Annex A that traffic commonly carries; `Some(0)`
/// for bit-packed objects (sized by count), None when unknown.
fn object_size(group: u8, var: u8) -> Option<usize> {
    Some(match (group, var) {
        (_, 0) | (60, _) => 0,
        (1, 1) | (10, 1) | (12, 3) | (80, 1) => 0,
        (1, 2) | (2, 1) | (10, 2) | (3, 2) | (4, 1) => 1,
        (2, 2) | (4, 2) => 7,
        (2, 3) | (4, 3) => 3,
        (12, 1) | (12, 2) => 11,
        (20, 1) | (21, 1) | (22, 1) | (23, 1) | (30, 1) | (30, 5) | (32, 1) | (32, 5) | (40, 1) | (41, 1) | (41, 3) => {
            5
        }
        (20, 2) | (21, 2) | (22, 2) | (23, 2) | (30, 2) | (32, 2) | (40, 2) | (41, 2) => 3,
        (20, 5) | (21, 9) | (30, 3) => 4,
        (20, 6) | (21, 10) | (30, 4) | (52, 1) | (52, 2) => 2,
        (30, 6) | (32, 4) | (41, 4) => 9,
        (32, 3) | (32, 7) => 11,
        (50, 1) | (50, 3) | (51, 1) | (51, 2) => 6,
        _ => return None,
    })
}

/// An object header: group, variation, qualifier, count, low, high.
type Header = (u8, u8, u8, Option<u32>, Option<u32>, Option<u32>);

fn le(b: &[u8]) -> u32 {
    b.iter().rev().take(4).fold(0u32, |acc, &x| acc << 8 | u32::from(x))
}

/// The object headers of an application fragment's object part, as far as
/// they can be followed (data of an unknown size ends the walk).
fn object_headers(mut b: &[u8], request_without_data: bool) -> Vec<Header> {
    let mut out = Vec::new();
    while out.len() < MAX_HEADERS {
        let (Some(&group), Some(&var), Some(&q)) = (b.first(), b.get(1), b.get(2)) else { break };
        let rest = b.get(3..).unwrap_or(&[]);
        let (range_len, is_count) = match q & 0x0f {
            0 | 3 => (1, false),
            1 | 4 => (2, false),
            2 | 5 => (4, false),
            6 => (0, false),
            7 | 0x0b => (1, true),
            8 => (2, true),
            9 => (4, true),
            _ => break,
        };
        let (low, high, count) = if range_len == 0 {
            (None, None, None)
        } else if is_count {
            let Some(c) = rest.get(..range_len) else { break };
            (None, None, Some(le(c)))
        } else {
            let (Some(lo), Some(hi)) = (rest.get(..range_len), rest.get(range_len..2 * range_len)) else { break };
            let (lo, hi) = (le(lo), le(hi));
            (Some(lo), Some(hi), hi.checked_sub(lo).map(|d| d.saturating_add(1)))
        };
        out.push((group, var, q, count, low, high));
        let used = if is_count { range_len } else { 2 * range_len };
        let Some(after) = rest.get(used..) else { break };
        b = after;
        if request_without_data || q & 0x0f == 6 {
            continue;
        }
        // Skip the objects: a prefix per object, then its data.
        let prefix = match q >> 4 & 7 {
            0 => 0,
            1 | 4 => 1,
            2 | 5 => 2,
            3 | 6 => 4,
            _ => break,
        };
        let n = count.unwrap_or(0) as usize;
        let Some(size) = object_size(group, var) else { break };
        let data = if size == 0 && !(group == 60 || var == 0) {
            // Packed bits, without prefixes.
            if prefix != 0 {
                break;
            }
            n.div_ceil(8)
        } else {
            n.saturating_mul(prefix + size)
        };
        match b.get(data..) {
            Some(r) => b = r,
            None => break,
        }
    }
    out
}

fn func_text(code: u8) -> String {
    func_name(code).map_or_else(|| format!("unknown-{code}"), str::to_string)
}

/// One link frame from the front of `b`: its user data (CRCs checked and
/// removed) and its size; `Ok(None)` when more bytes are needed.
fn frame(b: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ()> {
    if b.len() < 10 {
        return Ok(None);
    }
    if b.get(..2) != Some(&[0x05, 0x64]) {
        return Err(());
    }
    let len = usize::from(*b.get(2).ok_or(())?);
    if len < 5 {
        return Err(());
    }
    let header = b.get(..8).ok_or(())?;
    let crc = b.get(8..10).ok_or(())?;
    if DNP.checksum(header).to_le_bytes() != [crc[0], crc[1]] {
        return Err(());
    }
    let data_len = len - 5;
    let total = 10 + data_len + 2 * data_len.div_ceil(16);
    if b.len() < total {
        return Ok(None);
    }
    let mut data = Vec::with_capacity(data_len);
    let mut at = 10;
    let mut left = data_len;
    while left > 0 {
        let n = left.min(16);
        let block = b.get(at..at + n).ok_or(())?;
        let c = b.get(at + n..at + n + 2).ok_or(())?;
        if DNP.checksum(block).to_le_bytes() != [c[0], c[1]] {
            return Err(());
        }
        data.extend_from_slice(block);
        at += n + 2;
        left -= n;
    }
    Ok(Some((data, total)))
}

#[derive(Debug, Default)]
struct Side {
    buf: Vec<u8>,
    fragment: Vec<u8>,
    in_fragment: bool,
    done: bool,
}

#[derive(Debug, Default)]
pub struct Dnp3State {
    sides: [Side; 2],
    pending: Option<Dnp3Record>,
    confirmed: bool,
    failed: bool,
}

impl Dnp3State {
    pub fn failed(&self) -> bool {
        self.failed
    }

    pub fn looks_like_dnp3(payload: &[u8]) -> bool {
        matches!(frame(payload), Ok(Some(_)))
    }

    pub fn stream(&mut self, ctx: &FlowCtx, chunk: Chunk<'_>, out: &mut AppOut) {
        let s = usize::from(!ctx.is_orig);
        let data = match chunk {
            Chunk::Data(d) => d,
            Chunk::Gap(_) => {
                out.weirds.push("dnp3_content_gap");
                if let Some(side) = self.sides.get_mut(s) {
                    side.done = true;
                }
                return;
            }
        };
        let Some(side) = self.sides.get_mut(s) else { return };
        if side.done || self.failed {
            return;
        }
        side.buf.extend_from_slice(data);
        let mut used = 0;
        let mut fragments = Vec::new();
        loop {
            let rest = side.buf.get(used..).unwrap_or(&[]);
            match frame(rest) {
                Ok(None) => break,
                Ok(Some((user, n))) => {
                    used += n;
                    if !self.confirmed {
                        self.confirmed = true;
                        out.confirmed = Some("dnp3");
                    }
                    // Transport header: FIN 0x80, FIR 0x40, sequence.
                    let Some((&th, seg)) = user.split_first() else { continue };
                    if th & 0x40 != 0 {
                        side.fragment.clear();
                        side.in_fragment = true;
                    }
                    if !side.in_fragment {
                        continue;
                    }
                    if side.fragment.len() + seg.len() > MAX_FRAGMENT {
                        out.weirds.push("dnp3_fragment_too_large");
                        side.in_fragment = false;
                        side.fragment.clear();
                        continue;
                    }
                    side.fragment.extend_from_slice(seg);
                    if th & 0x80 != 0 {
                        side.in_fragment = false;
                        fragments.push(std::mem::take(&mut side.fragment));
                    }
                }
                Err(()) => {
                    if self.confirmed {
                        out.weirds.push("dnp3_bad_frame");
                        side.done = true;
                    } else {
                        self.failed = true;
                    }
                    used = side.buf.len();
                    break;
                }
            }
        }
        side.buf.drain(..used.min(side.buf.len()));
        for f in fragments {
            self.application(ctx, &f, out);
        }
    }

    fn application(&mut self, ctx: &FlowCtx, f: &[u8], out: &mut AppOut) {
        let (Some(_control), Some(&fc)) = (f.first(), f.get(1)) else {
            out.weirds.push("dnp3_short_fragment");
            return;
        };
        // Responses carry two bytes of internal indications before objects.
        let objects = f.get(if fc >= 129 { 4 } else { 2 }..).unwrap_or(&[]);
        for (g, v, q, count, low, high) in object_headers(objects, fc == 1) {
            out.events.push(Event::Dnp3Object(Dnp3ObjectRecord {
                ts: ctx.ts,
                uid: ctx.uid,
                orig_h: ctx.orig.0,
                orig_p: ctx.orig.1,
                resp_h: ctx.resp.0,
                resp_p: ctx.resp.1,
                is_orig: ctx.is_orig,
                function: func_text(fc),
                object_type: format!("g{g}v{v}"),
                qualifier: format!("0x{q:02x}"),
                object_count: count,
                range_low: low,
                range_high: high,
            }));
        }
        let blank = || Dnp3Record {
            ts: ctx.ts,
            uid: ctx.uid,
            orig_h: ctx.orig.0,
            orig_p: ctx.orig.1,
            resp_h: ctx.resp.0,
            resp_p: ctx.resp.1,
            fc_request: None,
            fc_reply: None,
            iin: None,
        };
        if fc < 128 {
            self.pending.get_or_insert_with(blank).fc_request = Some(func_text(fc));
        } else {
            let mut r = self.pending.take().unwrap_or_else(blank);
            r.fc_reply = Some(func_text(fc));
            r.iin = match (f.get(2), f.get(3)) {
                (Some(&a), Some(&b)) => Some(u16::from_be_bytes([a, b])),
                _ => None,
            };
            out.events.push(Event::Dnp3(r));
        }
    }

    pub fn finish(&mut self, _ctx: &FlowCtx, out: &mut AppOut) {
        if let Some(r) = self.pending.take() {
            out.events.push(Event::Dnp3(r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(is_orig: bool) -> FlowCtx {
        crate::proto::test_ctx(("10.33.0.2", 59602), ("10.33.0.7", 20000), is_orig)
    }

    /// A link frame around one transport segment carrying `app`.
    fn frame_of(app: &[u8], dst: u16, src: u16) -> Vec<u8> {
        let mut user = vec![0xc0];
        user.extend_from_slice(app);
        let mut header = vec![0x05, 0x64, (5 + user.len()) as u8, 0xc4];
        header.extend_from_slice(&dst.to_le_bytes());
        header.extend_from_slice(&src.to_le_bytes());
        let mut out = header.clone();
        out.extend_from_slice(&DNP.checksum(&header).to_le_bytes());
        for block in user.chunks(16) {
            out.extend_from_slice(block);
            out.extend_from_slice(&DNP.checksum(block).to_le_bytes());
        }
        out
    }

    #[test]
    fn cold_restart_and_its_response_at_every_split() {
        let req = frame_of(&[0xc0, 13], 10, 1);
        let resp = frame_of(&[0xc0, 129, 0x80, 0x00], 1, 10);
        for cut in 0..=req.len() {
            let mut d = Dnp3State::default();
            let mut out = AppOut::default();
            d.stream(&ctx(true), Chunk::Data(&req[..cut]), &mut out);
            d.stream(&ctx(true), Chunk::Data(&req[cut..]), &mut out);
            d.stream(&ctx(false), Chunk::Data(&resp), &mut out);
            d.finish(&ctx(true), &mut out);
            assert_eq!(out.confirmed, Some("dnp3"));
            let recs: Vec<_> = out
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::Dnp3(r) => Some((r.fc_request.clone(), r.fc_reply.clone(), r.iin)),
                    _ => None,
                })
                .collect();
            assert_eq!(recs, [(Some("COLD_RESTART".into()), Some("RESPONSE".into()), Some(0x8000))], "cut {cut}");
        }
    }

    #[test]
    fn object_headers_are_walked_past_known_data() {
        // A class 1/2/3/0 poll: four g60 headers with no data.
        let poll = [60, 2, 6, 60, 3, 6, 60, 4, 6, 60, 1, 6];
        let h = object_headers(&poll, true);
        assert_eq!(h.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(), [(60, 2), (60, 3), (60, 4), (60, 1)]);
        // OPERATE on one CROB (g12v1, 2-byte index prefix, 1-byte count),
        // then an unknown object.
        let mut op = vec![12, 1, 0x28, 1, 0, 0x03, 0x00];
        op.extend_from_slice(&[0x41, 1, 0xe8, 3, 0, 0, 0, 0, 0, 0, 0]);
        op.extend_from_slice(&[99, 9, 0x06]);
        let h = object_headers(&op, false);
        assert_eq!(h, [(12, 1, 0x28, Some(1), None, None), (99, 9, 0x06, None, None, None)]);
        // Start/stop ranges; hostile bytes end the walk quietly.
        assert_eq!(object_headers(&[30, 1, 0x00, 2, 5], true), [(30, 1, 0, Some(4), Some(2), Some(5))]);
        for b in [&[30u8, 1, 0x00, 9, 1][..], &[1, 2, 0x0f], &[12, 1, 0x28, 0xff, 0xff]] {
            let _ = object_headers(b, false);
        }
    }

    #[test]
    fn long_fragments_cross_blocks_and_bad_crcs_are_refused() {
        let mut app = vec![0xc0, 2];
        app.extend_from_slice(&[0x50, 0x01, 0x00, 0x07, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let f = frame_of(&app, 10, 1);
        assert!(Dnp3State::looks_like_dnp3(&f));
        let mut d = Dnp3State::default();
        let mut out = AppOut::default();
        d.stream(&ctx(true), Chunk::Data(&f), &mut out);
        d.finish(&ctx(true), &mut out);
        let dnp3: Vec<_> = out.events.iter().filter(|e| matches!(e, Event::Dnp3(_))).collect();
        assert!(matches!(&dnp3[..], [Event::Dnp3(r)] if r.fc_request.as_deref() == Some("WRITE")));
        assert!(out.events.iter().any(|e| matches!(e, Event::Dnp3Object(o) if o.object_type == "g80v1")));
        let mut bad = f.clone();
        bad[12] ^= 1;
        let mut d = Dnp3State::default();
        d.stream(&ctx(true), Chunk::Data(&bad), &mut AppOut::default());
        assert!(d.failed());
    }
}
