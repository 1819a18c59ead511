//! TCP stream reassembly for the analyzers: bytes delivered in order, once.
//!
//! Overlaps keep the bytes that arrived first (the policy most IDSs use by
//! default: a retransmission cannot rewrite what an analyzer already judged).
//! Holes are announced as gaps when the peer's acknowledgement shows the data
//! will never come, or when the per-stream buffer cap is reached.

use std::collections::BTreeMap;

/// What a stream hands to its analyzer, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    Data(&'a [u8]),
    /// This many bytes were never seen.
    Gap(u64),
}

#[derive(Debug)]
pub struct Stream {
    /// Relative sequence number of the next byte to deliver. Relative
    /// numbers start at 1 for the first byte after the SYN (or, for a flow
    /// picked up mid-stream, after the first sequence number seen).
    next: u64,
    /// Out-of-order data, keyed by relative sequence number, disjoint.
    held: BTreeMap<u64, Vec<u8>>,
    held_bytes: usize,
}

impl Default for Stream {
    fn default() -> Self {
        Stream { next: 1, held: BTreeMap::new(), held_bytes: 0 }
    }
}

impl Stream {
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Takes a segment at relative sequence `seq`; calls `deliver` for
    /// everything that became contiguous. `cap` bounds what is held; past
    /// it, the lowest hole is declared a gap. Returns the change in held
    /// bytes.
    pub fn segment(&mut self, seq: u64, data: &[u8], cap: usize, deliver: &mut impl FnMut(Chunk<'_>)) -> isize {
        let before = self.held_bytes as isize;
        let end = seq + data.len() as u64;
        if end <= self.next || data.is_empty() {
            return 0;
        }
        let (seq, data) = if seq < self.next {
            (self.next, data.get((self.next - seq) as usize..).unwrap_or(&[]))
        } else {
            (seq, data)
        };
        if seq == self.next {
            // Held data that overlaps this segment arrived first and wins.
            let limit = self.held.range(seq..).next().map(|(&s, _)| s).unwrap_or(u64::MAX);
            let take = ((limit - seq) as usize).min(data.len());
            if let Some(d) = data.get(..take) {
                deliver(Chunk::Data(d));
                self.next += take as u64;
            }
            if take < data.len() {
                self.hold(self.next, data.get(take..).unwrap_or(&[]));
            }
            self.drain(deliver);
        } else {
            self.hold(seq, data);
            while self.held_bytes > cap {
                let Some((&s, _)) = self.held.iter().next() else { break };
                deliver(Chunk::Gap(s - self.next));
                self.next = s;
                self.drain(deliver);
            }
        }
        self.held_bytes as isize - before
    }

    /// The peer acknowledged everything below `upto`: whatever is still
    /// missing there is a gap. Returns the change in held bytes.
    pub fn acked(&mut self, upto: u64, deliver: &mut impl FnMut(Chunk<'_>)) -> isize {
        let before = self.held_bytes as isize;
        while upto > self.next {
            let hole_end = self.held.keys().next().copied().filter(|&s| s < upto).unwrap_or(upto);
            if hole_end > self.next {
                deliver(Chunk::Gap(hole_end - self.next));
                self.next = hole_end;
            }
            let was = self.next;
            self.drain(deliver);
            if self.next == was {
                break;
            }
        }
        self.held_bytes as isize - before
    }

    /// Stores `data` at `seq`, keeping bytes already held where they overlap.
    fn hold(&mut self, seq: u64, data: &[u8]) {
        let mut pos = seq;
        let end = seq + data.len() as u64;
        let overlapping: Vec<(u64, u64)> = self
            .held
            .range(..end)
            .filter(|(&s, d)| s + d.len() as u64 > seq)
            .map(|(&s, d)| (s, s + d.len() as u64))
            .collect();
        for (s, e) in overlapping.into_iter().chain(std::iter::once((end, end))) {
            if s > pos {
                let piece = data.get((pos - seq) as usize..(s.min(end) - seq) as usize).unwrap_or(&[]);
                if !piece.is_empty() {
                    self.held_bytes += piece.len();
                    self.held.insert(pos, piece.to_vec());
                }
            }
            pos = pos.max(e);
            if pos >= end {
                break;
            }
        }
    }

    fn drain(&mut self, deliver: &mut impl FnMut(Chunk<'_>)) {
        while let Some(entry) = self.held.first_entry() {
            let s = *entry.key();
            if s > self.next {
                break;
            }
            let d = entry.remove();
            self.held_bytes -= d.len();
            let skip = (self.next - s) as usize;
            if let Some(rest) = d.get(skip..) {
                if !rest.is_empty() {
                    deliver(Chunk::Data(rest));
                    self.next += rest.len() as u64;
                }
            }
        }
    }
}

/// Splits one direction of a line-based protocol (FTP, SMTP) into lines,
/// without their CR LF, across any chunking.
#[derive(Debug, Default)]
pub struct Lines {
    buf: Vec<u8>,
}

impl Lines {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete line.
    pub fn next_line(&mut self) -> Option<Vec<u8>> {
        let nl = self.buf.iter().position(|&b| b == b'\n')?;
        let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Some(line)
    }

    /// Drops an unfinished line longer than `max`; says whether it did.
    pub fn overflowed(&mut self, max: usize) -> bool {
        let over = self.buf.len() > max;
        if over {
            self.buf.clear();
        }
        over
    }

    /// Forgets what is buffered (after a gap), returning it.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(segs: &[(u64, &[u8])], ack: Option<u64>) -> (Vec<u8>, u64) {
        let mut s = Stream::default();
        let mut out = Vec::new();
        let mut gaps = 0;
        let mut f = |c: Chunk<'_>| match c {
            Chunk::Data(d) => out.extend_from_slice(d),
            Chunk::Gap(n) => gaps += n,
        };
        for (seq, d) in segs {
            s.segment(*seq, d, 1 << 20, &mut f);
        }
        if let Some(a) = ack {
            s.acked(a, &mut f);
        }
        (out, gaps)
    }

    #[test]
    fn in_order_out_of_order_and_retransmitted() {
        assert_eq!(run(&[(1, b"abc"), (4, b"def")], None).0, b"abcdef");
        assert_eq!(run(&[(1, b"abc"), (7, b"ghi"), (4, b"def")], None).0, b"abcdefghi");
        assert_eq!(run(&[(1, b"abc"), (1, b"abc"), (2, b"bcd")], None).0, b"abcd");
    }

    #[test]
    fn first_copy_wins_on_overlap() {
        // "XYZ" arrives first for 4..7; a later overlapping copy cannot change it.
        assert_eq!(run(&[(1, b"abc"), (4, b"XYZ"), (3, b"c123456")], None).0, b"abcXYZ456");
        assert_eq!(run(&[(1, b"a"), (5, b"EF"), (2, b"bcdefgh")], None).0, b"abcdEFgh");
    }

    #[test]
    fn acknowledged_holes_become_gaps() {
        let (out, gaps) = run(&[(1, b"abc"), (10, b"jkl")], Some(13));
        assert_eq!(out, b"abcjkl");
        assert_eq!(gaps, 6);
    }

    #[test]
    fn the_cap_forces_a_gap() {
        let mut s = Stream::default();
        let mut out = Vec::new();
        let mut gaps = 0;
        let mut f = |c: Chunk<'_>| match c {
            Chunk::Data(d) => out.extend_from_slice(d),
            Chunk::Gap(n) => gaps += n,
        };
        s.segment(1, b"a", 4, &mut f);
        s.segment(10, b"0123456789", 4, &mut f);
        assert_eq!(gaps, 8);
        assert_eq!(out, b"a0123456789");
        assert_eq!(s.held_bytes(), 0);
    }
}
