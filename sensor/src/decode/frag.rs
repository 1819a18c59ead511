//! IPv4 and IPv6 fragment reassembly with caps on memory and fragment count.
//!
//! Overlaps keep the bytes that arrived first (the BSD/Linux-like policy most
//! IDSs default to); differing overlapping bytes are reported, since they are
//! the signature of an evasion attempt.

use super::{FragInfo, IpView};
use schema::{Interval, Time};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

#[derive(Clone, Debug)]
pub struct FragConfig {
    /// Datagrams under reassembly at once, per worker.
    pub max_datagrams: usize,
    /// Bytes buffered for reassembly, per worker.
    pub max_bytes: usize,
    /// Fragments accepted for one datagram.
    pub max_fragments_per_datagram: u16,
    /// Time after the first fragment when an incomplete datagram is dropped.
    pub timeout: Interval,
}

impl Default for FragConfig {
    fn default() -> Self {
        FragConfig {
            max_datagrams: 8192,
            max_bytes: 32 << 20,
            max_fragments_per_datagram: 128,
            timeout: Interval::from_secs(60),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
}

struct Datagram {
    first_seen: Time,
    /// Header to rebuild the datagram with: the IPv4 header of the first
    /// fragment, or the unfragmentable part of the IPv6 packet (fixed header
    /// and the extension headers before the Fragment header).
    header: Vec<u8>,
    /// IPv6: where in `header` the Next Header byte to patch sits.
    nh_byte_at: usize,
    data: Vec<u8>,
    /// Received byte ranges, sorted and disjoint.
    have: Vec<(u32, u32)>,
    total: Option<u32>,
    fragments: u16,
    v6: bool,
    next_header: u8,
}

#[derive(Debug, PartialEq, Eq)]
pub enum FragOutcome {
    /// Stored; the datagram is not complete yet.
    Held,
    /// The rebuilt datagram, starting at its IP header.
    Complete(Vec<u8>),
    /// Dropped; the name goes to `weird.log`.
    Dropped(&'static str),
}

/// What one fragment did besides its outcome, for `weird.log`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FragNotes {
    pub overlap: bool,
    pub inconsistent: bool,
    /// Fragments dropped from other datagrams to honour the caps.
    pub evicted: u64,
}

pub struct Reassembler {
    cfg: FragConfig,
    pending: HashMap<Key, Datagram>,
    order: VecDeque<(Time, Key)>,
    bytes: usize,
    pub dropped_fragments: u64,
}

const MAX_DATAGRAM: u32 = 65_535;

impl Reassembler {
    pub fn new(cfg: FragConfig) -> Self {
        Reassembler { cfg, pending: HashMap::new(), order: VecDeque::new(), bytes: 0, dropped_fragments: 0 }
    }

    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Drops datagrams whose first fragment is older than the timeout.
    pub fn expire(&mut self, now: Time) -> u64 {
        let mut dropped = 0;
        while let Some(&(t, key)) = self.order.front() {
            if now.since(t) < self.cfg.timeout {
                break;
            }
            self.order.pop_front();
            if let Some(d) = self.pending.get(&key) {
                if d.first_seen == t {
                    dropped += self.remove(&key);
                }
            }
        }
        dropped
    }

    fn remove(&mut self, key: &Key) -> u64 {
        match self.pending.remove(key) {
            Some(d) => {
                self.bytes -= d.data.capacity() + d.header.capacity();
                self.dropped_fragments += u64::from(d.fragments);
                u64::from(d.fragments)
            }
            None => 0,
        }
    }

    /// Takes one fragment. `raw` is the whole IP packet `ip` was parsed from.
    pub fn push(
        &mut self,
        now: Time,
        ip: &IpView<'_>,
        frag: &FragInfo,
        raw: &[u8],
        notes: &mut FragNotes,
    ) -> FragOutcome {
        let v6 = matches!(ip.src, IpAddr::V6(_));
        let key = Key { src: ip.src, dst: ip.dst, id: frag.id, proto: if v6 { 0 } else { ip.proto } };
        let data = ip.payload;
        if data.len() < ip.payload_len as usize {
            return FragOutcome::Dropped("truncated_fragment");
        }
        let start = frag.offset;
        let end = start + data.len() as u32;
        if end > MAX_DATAGRAM {
            self.remove(&key);
            return FragOutcome::Dropped("fragment_size_too_large");
        }
        if frag.more && !data.len().is_multiple_of(8) {
            return FragOutcome::Dropped("fragment_size_not_multiple_of_8");
        }
        if !self.pending.contains_key(&key) {
            while self.pending.len() >= self.cfg.max_datagrams || self.bytes + 2048 > self.cfg.max_bytes {
                let Some((t, old)) = self.order.pop_front() else {
                    break;
                };
                if self.pending.get(&old).is_some_and(|d| d.first_seen == t) {
                    notes.evicted += self.remove(&old);
                }
            }
            self.order.push_back((now, key));
            self.pending.insert(
                key,
                Datagram {
                    first_seen: now,
                    header: Vec::new(),
                    data: Vec::new(),
                    have: Vec::new(),
                    total: None,
                    fragments: 0,
                    v6,
                    next_header: frag.next_header,
                    nh_byte_at: frag.nh_byte_at,
                },
            );
        }
        let Some(d) = self.pending.get_mut(&key) else {
            return FragOutcome::Dropped("fragment_buffer_full");
        };
        d.fragments += 1;
        if d.fragments > self.cfg.max_fragments_per_datagram {
            self.remove(&key);
            return FragOutcome::Dropped("excessive_fragments");
        }
        if !frag.more {
            if d.total.is_some_and(|t| t != end) {
                notes.inconsistent = true;
            }
            d.total.get_or_insert(end);
        }
        if start == 0 && d.header.is_empty() {
            let hdr = if v6 { raw.get(..frag.frag_hdr_at) } else { raw.get(..ip.header_len) };
            if let Some(h) = hdr {
                d.header.extend_from_slice(h);
                self.bytes += d.header.capacity();
            }
            d.next_header = frag.next_header;
            d.nh_byte_at = frag.nh_byte_at;
        }
        let before = d.data.capacity();
        if d.data.len() < end as usize {
            d.data.resize(end as usize, 0);
        }
        // First-wins: copy only the gaps between ranges already held.
        let mut pos = start;
        let mut i = 0;
        while pos < end {
            let next_have = d.have.get(i).copied();
            match next_have {
                Some((_, he)) if he <= pos => {
                    i += 1;
                }
                Some((hs, he)) if hs <= pos => {
                    let upto = he.min(end);
                    notes.overlap = true;
                    let (a, b) = ((pos - start) as usize, (upto - start) as usize);
                    if d.data.get(pos as usize..upto as usize) != data.get(a..b) {
                        notes.inconsistent = true;
                    }
                    pos = upto;
                    i += 1;
                }
                other => {
                    let upto = other.map_or(end, |(hs, _)| hs.min(end));
                    let (a, b) = ((pos - start) as usize, (upto - start) as usize);
                    if let (Some(dst), Some(src)) = (d.data.get_mut(pos as usize..upto as usize), data.get(a..b)) {
                        dst.copy_from_slice(src);
                    }
                    pos = upto;
                }
            }
        }
        insert_range(&mut d.have, start, end);
        self.bytes = self.bytes + d.data.capacity() - before;
        let complete = match (d.total, d.have.first()) {
            (Some(t), Some(&(0, he))) => d.have.len() == 1 && he >= t && !d.header.is_empty(),
            _ => false,
        };
        if !complete {
            if self.bytes > self.cfg.max_bytes {
                self.remove(&key);
                return FragOutcome::Dropped("fragment_buffer_full");
            }
            return FragOutcome::Held;
        }
        let Some(d) = self.pending.remove(&key) else {
            return FragOutcome::Held;
        };
        self.bytes -= d.data.capacity() + d.header.capacity();
        let total = d.total.unwrap_or(0) as usize;
        let mut out = d.header;
        out.extend_from_slice(d.data.get(..total).unwrap_or(&d.data));
        if d.v6 {
            let plen = (out.len() - 40) as u16;
            if let Some(h) = out.get_mut(4..6) {
                h.copy_from_slice(&plen.to_be_bytes());
            }
            if let Some(b) = out.get_mut(d.nh_byte_at) {
                *b = d.next_header;
            }
        } else {
            let tot = out.len() as u16;
            if let Some(h) = out.get_mut(2..8) {
                h[0..2].copy_from_slice(&tot.to_be_bytes());
                // Clear MF and the offset; keep DF.
                h[4] &= 0x40;
                h[5] = 0;
            }
        }
        FragOutcome::Complete(out)
    }
}

fn insert_range(have: &mut Vec<(u32, u32)>, s: u32, e: u32) {
    have.push((s, e));
    have.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(have.len());
    for &(s, e) in have.iter() {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    *have = merged;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::parse_ipv4;

    fn frag4(id: u16, off: u16, more: bool, payload: &[u8]) -> Vec<u8> {
        let total = 20 + payload.len() as u16;
        let fl = (off / 8) | if more { 0x2000 } else { 0 };
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[4..6].copy_from_slice(&id.to_be_bytes());
        p[6..8].copy_from_slice(&fl.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn push(r: &mut Reassembler, p: &[u8]) -> (FragOutcome, FragNotes) {
        let ip = parse_ipv4(p).unwrap();
        let f = ip.fragment.unwrap();
        let mut notes = FragNotes::default();
        (r.push(Time(0), &ip, &f, p, &mut notes), notes)
    }

    #[test]
    fn out_of_order_and_first_wins() {
        let mut r = Reassembler::new(FragConfig::default());
        let b = frag4(7, 8, false, b"BBBBBBBB");
        let a = frag4(7, 0, true, b"AAAAAAAA");
        let a2 = frag4(7, 0, true, b"XXXXXXXX");
        assert_eq!(push(&mut r, &b).0, FragOutcome::Held);
        assert_eq!(push(&mut r, &b).0, FragOutcome::Held);
        let (out, _) = push(&mut r, &a);
        let FragOutcome::Complete(d) = out else { panic!("{out:?}") };
        assert_eq!(&d[20..], b"AAAAAAAABBBBBBBB");
        assert_eq!(u16::from_be_bytes([d[2], d[3]]), 36);
        // A late conflicting duplicate starts a new datagram and is held.
        assert_eq!(push(&mut r, &a2).0, FragOutcome::Held);
    }

    #[test]
    fn conflicting_overlap_is_noted() {
        let mut r = Reassembler::new(FragConfig::default());
        push(&mut r, &frag4(9, 0, true, b"AAAAAAAAAAAAAAAA"));
        let (_, notes) = push(&mut r, &frag4(9, 8, true, b"ZZZZZZZZ"));
        assert!(notes.overlap && notes.inconsistent);
    }

    #[test]
    fn caps_hold() {
        let cfg = FragConfig { max_datagrams: 4, ..FragConfig::default() };
        let mut r = Reassembler::new(cfg);
        let mut evicted = 0;
        for id in 0..100u16 {
            let (o, n) = push(&mut r, &frag4(id, 0, true, b"AAAAAAAA"));
            assert_eq!(o, FragOutcome::Held);
            evicted += n.evicted;
        }
        assert!(r.in_flight() <= 4);
        assert_eq!(evicted, 96);
        assert_eq!(r.expire(Time(61_000_000)), 4);
        assert_eq!(r.in_flight(), 0);
    }
}
