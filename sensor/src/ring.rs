//! The packet ring: captured frames kept on disk in pcap segment files
//! within a size and age budget, indexed by flow so that one flow's packets
//! come back without reading the rest.
//!
//! Each worker writes its own segments (`w<worker>-<seq>-<first µs>.pcap`)
//! and beside each an index (`.idx`) of fixed 24-byte entries: the flow uid
//! and the offset of the packet's record in the segment, appended as the
//! packet is written, so the open segment is searchable too. A packet of a
//! tunnelled flow is indexed under the outer and the inner flow.
//!
//! Pinned flows (those an alert names) are copied out of a segment into the
//! evidence store (`evidence/<uid>.pcap` with its `.sha256`) before the
//! segment is deleted, and their packets are kept past the per-flow cap.

use crate::flow::LocalNets;
use schema::{FlowUid, Time};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub struct RingConfig {
    pub dir: PathBuf,
    /// A segment is closed at this size.
    pub segment_bytes: u64,
    /// All segments of all workers together stay under this.
    pub budget_bytes: u64,
    /// Segments older than this (record time of their last packet behind
    /// the newest) are deleted; 0 keeps them until the budget needs room.
    pub max_age_secs: u64,
    /// Bytes of one flow kept in the ring (0: all); pinned flows are kept whole.
    pub flow_bytes: u64,
    /// A segment is kept until its last packet is this far behind the
    /// newest (record time), even past the budget: alerts, and so pins,
    /// come after the flows they name (a flow's record ends it, models wait
    /// out their lateness, repeats fold for a minute).
    pub hold_secs: u64,
    /// Networks whose payloads are never stored: frames to or from them
    /// keep their headers only.
    pub headers_only: Option<LocalNets>,
}

impl RingConfig {
    pub fn evidence_dir(&self) -> PathBuf {
        self.dir.join("evidence")
    }
}

/// Flows whose packets must survive rotation, shared by the output thread
/// (which learns them from alerts) and the workers (which rotate), and how
/// far (record time) detection has come: a segment is deleted only once
/// detection is `hold_secs` past it, so the alerts about its flows have
/// been raised. A replay at full speed runs the workers far ahead of
/// detection; rotation then waits and [`enforce_dir`] finishes the job.
#[derive(Debug)]
pub struct Pins {
    set: Mutex<HashSet<FlowUid>>,
    seen: AtomicI64,
}

impl Default for Pins {
    fn default() -> Self {
        // No detector: nothing to wait for.
        Pins { set: Mutex::default(), seen: AtomicI64::new(i64::MAX) }
    }
}

impl Pins {
    pub fn pin(&self, uid: FlowUid) {
        if let Ok(mut g) = self.set.lock() {
            g.insert(uid);
        }
    }

    pub fn contains(&self, uid: &FlowUid) -> bool {
        self.set.lock().map(|g| g.contains(uid)).unwrap_or(false)
    }

    pub fn len(&self) -> usize {
        self.set.lock().map(|g| g.len()).unwrap_or(0)
    }

    /// A detector will report its progress with [`Pins::seen_until`].
    pub fn track_detection(&self) {
        self.seen.store(i64::MIN, Ordering::Relaxed);
    }

    pub fn seen_until(&self, t: Time) {
        self.seen.fetch_max(t.0, Ordering::Relaxed);
    }

    pub fn seen(&self) -> Time {
        Time(self.seen.load(Ordering::Relaxed))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Debug, Default)]
pub struct RingCounters {
    pub packets: u64,
    pub bytes: u64,
    /// Packets left out because their flow had used its `flow_bytes`.
    pub capped: u64,
    /// Frames cut to their headers (`headers_only`).
    pub headers_only: u64,
    pub segments_deleted: u64,
    pub pinned_carved: u64,
    /// Rotations that left the ring over its budget to keep the last
    /// `hold_secs` (the budget is too small for the traffic).
    pub held_over_budget: u64,
    pub errors: u64,
}

const PCAP_HEADER: usize = 24;
const REC_HEADER: usize = 16;
const IDX_ENTRY: usize = 24;

pub fn pcap_header(dlt: u32) -> [u8; PCAP_HEADER] {
    let mut h = [0u8; PCAP_HEADER];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&262_144u32.to_le_bytes());
    h[20..24].copy_from_slice(&dlt.to_le_bytes());
    h
}

fn rec_header(ts: Time, caplen: usize, wirelen: usize) -> [u8; REC_HEADER] {
    let mut h = [0u8; REC_HEADER];
    let secs = ts.0.div_euclid(1_000_000);
    let us = ts.0.rem_euclid(1_000_000);
    h[0..4].copy_from_slice(&(secs.clamp(0, u32::MAX as i64) as u32).to_le_bytes());
    h[4..8].copy_from_slice(&(us as u32).to_le_bytes());
    h[8..12].copy_from_slice(&(caplen as u32).to_le_bytes());
    h[12..16].copy_from_slice(&(wirelen as u32).to_le_bytes());
    h
}

struct Segment {
    seq: u64,
    path: PathBuf,
    pcap: BufWriter<File>,
    idx: BufWriter<File>,
    /// Bytes of the pcap file (the next record's offset).
    pcap_len: u64,
    /// Bytes on disk, index included.
    size: u64,
    /// Earliest and latest packet times: a capture replayed, a sensor
    /// restarted or a clock stepped back puts packets out of order across
    /// segments and within one.
    first: Time,
    last: Time,
}

/// One worker's writer.
pub struct PacketRing {
    cfg: Arc<RingConfig>,
    pins: Arc<Pins>,
    worker: usize,
    workers: usize,
    dlt: u32,
    cur: Option<Segment>,
    /// Closed segments of this worker, oldest first: (seq, path, size, last packet time).
    closed: Vec<(u64, PathBuf, u64, Time)>,
    flow_used: HashMap<FlowUid, u64>,
    next_seq: u64,
    newest: Time,
    pub counters: RingCounters,
}

/// A segment file name: `w03-0000000012-1700000000123456.pcap`.
fn segment_name(worker: usize, seq: u64, first: Time) -> String {
    format!("w{worker:02}-{seq:010}-{}.pcap", first.0)
}

fn parse_segment_name(name: &str) -> Option<(usize, u64, i64)> {
    let stem = name.strip_suffix(".pcap")?;
    let mut it = stem.splitn(3, '-');
    let w = it.next()?.strip_prefix('w')?.parse().ok()?;
    let seq = it.next()?.parse().ok()?;
    let first = it.next()?.parse().ok()?;
    Some((w, seq, first))
}

fn idx_path(pcap: &Path) -> PathBuf {
    pcap.with_extension("idx")
}

/// A closed segment's span, written when it closes: `<first> <last>` (µs),
/// its earliest and latest packet times.
fn span_path(pcap: &Path) -> PathBuf {
    pcap.with_extension("span")
}

/// Earliest and latest packet times of a segment (µs).
type Span = (i64, i64);

fn read_span(pcap: &Path) -> Option<Span> {
    let text = fs::read_to_string(span_path(pcap)).ok()?;
    let (a, b) = text.trim().split_once(' ')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Deletes a segment with its index and span.
fn remove_segment(path: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    let _ = fs::remove_file(idx_path(path));
    let _ = fs::remove_file(span_path(path));
    Ok(())
}

impl PacketRing {
    /// Opens the ring for one of `workers` workers; segments this worker
    /// left in the folder on an earlier run count against its budget.
    pub fn open(cfg: Arc<RingConfig>, pins: Arc<Pins>, worker: usize, workers: usize, dlt: u32) -> io::Result<Self> {
        fs::create_dir_all(&cfg.dir)?;
        let mut closed = Vec::new();
        for e in fs::read_dir(&cfg.dir)?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some((w, seq, first)) = parse_segment_name(&name) {
                if w == worker {
                    let size = e.metadata().map(|m| m.len()).unwrap_or(0)
                        + fs::metadata(idx_path(&e.path())).map(|m| m.len()).unwrap_or(0);
                    let last = read_span(&e.path()).map_or(first, |(_, last)| last);
                    closed.push((seq, e.path(), size, Time(last)));
                }
            }
        }
        closed.sort_by_key(|c| c.0);
        let next_seq = closed.last().map_or(0, |c| c.0 + 1);
        Ok(PacketRing {
            cfg,
            pins,
            worker,
            workers: workers.max(1),
            dlt,
            cur: None,
            closed,
            flow_used: HashMap::new(),
            next_seq,
            newest: Time(i64::MIN),
            counters: RingCounters::default(),
        })
    }

    /// Stores one frame for the flows it belongs to. `headers` is the length
    /// of the frame's headers, used when an endpoint is in `headers_only`.
    pub fn write(&mut self, ts: Time, frame: &[u8], uids: &[FlowUid], headers: Option<usize>, private: bool) {
        if uids.is_empty() {
            return;
        }
        let cap = self.cfg.flow_bytes;
        if cap > 0 {
            // Kept while any of its flows has room (or is pinned).
            let mut over = true;
            for u in uids {
                let used = self.flow_used.entry(*u).or_insert(0);
                if *used < cap || self.pins.contains(u) {
                    over = false;
                }
                *used += frame.len() as u64;
            }
            if over {
                self.counters.capped += 1;
                return;
            }
        }
        let keep = if private {
            self.counters.headers_only += 1;
            // Headers not found (a fragment of a reassembled datagram): the
            // link and IPv4 headers only, no payload guessed at.
            headers.unwrap_or(34).min(frame.len())
        } else {
            frame.len()
        };
        if let Err(e) = self.append(ts, &frame[..keep], frame.len(), uids) {
            self.counters.errors += 1;
            tracing::warn!(error = %e, dir = %self.cfg.dir.display(), "packet ring write failed");
        }
    }

    fn append(&mut self, ts: Time, data: &[u8], wire: usize, uids: &[FlowUid]) -> io::Result<()> {
        self.newest = self.newest.max(ts);
        let per_worker = self.cfg.segment_bytes.max(4096);
        if self.cur.as_ref().is_some_and(|s| s.size >= per_worker) {
            self.rotate()?;
        }
        if self.cur.is_none() {
            let seq = self.next_seq;
            self.next_seq += 1;
            let path = self.cfg.dir.join(segment_name(self.worker, seq, ts));
            let mut pcap = BufWriter::with_capacity(1 << 16, File::create(&path)?);
            pcap.write_all(&pcap_header(self.dlt))?;
            let idx = BufWriter::with_capacity(1 << 14, File::create(idx_path(&path))?);
            self.cur = Some(Segment {
                seq,
                path,
                pcap,
                idx,
                pcap_len: PCAP_HEADER as u64,
                size: PCAP_HEADER as u64,
                first: ts,
                last: ts,
            });
        }
        let Some(s) = self.cur.as_mut() else { return Ok(()) };
        let off = s.pcap_len;
        s.pcap.write_all(&rec_header(ts, data.len(), wire))?;
        s.pcap.write_all(data)?;
        for u in uids {
            s.idx.write_all(&u.0.to_le_bytes())?;
            s.idx.write_all(&off.to_le_bytes())?;
            s.size += IDX_ENTRY as u64;
        }
        s.pcap_len += (REC_HEADER + data.len()) as u64;
        s.size += (REC_HEADER + data.len()) as u64;
        s.first = s.first.min(ts);
        s.last = s.last.max(ts);
        self.counters.packets += 1;
        self.counters.bytes += data.len() as u64;
        Ok(())
    }

    pub fn config(&self) -> &RingConfig {
        &self.cfg
    }

    /// The flow ended: its byte count is no longer needed.
    pub fn flow_ended(&mut self, uid: FlowUid) {
        self.flow_used.remove(&uid);
    }

    /// Makes what was written readable by others (the open segment too).
    pub fn sync(&mut self) {
        if let Some(s) = self.cur.as_mut() {
            if s.pcap.flush().and_then(|_| s.idx.flush()).is_err() {
                self.counters.errors += 1;
            }
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut s) = self.cur.take() {
            s.pcap.flush()?;
            s.idx.flush()?;
            fs::write(span_path(&s.path), format!("{} {}\n", s.first.0, s.last.0))?;
            self.closed.push((s.seq, s.path, s.size, s.last));
        }
        self.enforce()
    }

    /// Deletes the oldest closed segments until this worker's share of the
    /// budget holds and none is older than the age limit.
    fn enforce(&mut self) -> io::Result<()> {
        let share = self.cfg.budget_bytes / self.workers as u64;
        // Room is kept for a whole open segment, so the disk never holds
        // more than the budget (give or take the last packet).
        let open = self.cfg.segment_bytes.max(self.cur.as_ref().map_or(0, |s| s.size));
        let age = self.cfg.max_age_secs as i64 * 1_000_000;
        loop {
            let total: u64 = self.closed.iter().map(|c| c.2).sum::<u64>() + open;
            let Some(oldest) = self.closed.first() else { break };
            let behind = self.newest.0.saturating_sub(oldest.3 .0);
            let too_old = age > 0 && behind > age;
            let detected = self.pins.seen().0.min(self.newest.0).saturating_sub(oldest.3 .0);
            if (total <= share && !too_old) || detected < self.cfg.hold_secs as i64 * 1_000_000 {
                if total > share {
                    self.counters.held_over_budget += 1;
                }
                break;
            }
            let (_, path, _, _) = self.closed.remove(0);
            if !self.pins.is_empty() {
                self.counters.pinned_carved += carve_pinned(&path, &self.pins, &self.cfg.evidence_dir())?;
            }
            remove_segment(&path)?;
            self.counters.segments_deleted += 1;
        }
        Ok(())
    }

    /// End of the run: the open segment is closed and the budget enforced.
    pub fn finish(&mut self) {
        if self.rotate().is_err() {
            self.counters.errors += 1;
        }
    }
}

/// Brings a whole ring folder within its budget once every alert is known
/// (after a run): the oldest segments go first, their pinned flows copied
/// to the evidence store.
pub fn enforce_dir(cfg: &RingConfig, pins: &Pins) -> io::Result<RingCounters> {
    let mut c = RingCounters::default();
    let mut segs = segments(&cfg.dir)?;
    segs.sort_by_key(|s| s.1);
    let evidence = cfg.evidence_dir();
    for (path, _, _) in segs {
        if ring_bytes(&cfg.dir) <= cfg.budget_bytes {
            break;
        }
        if !pins.is_empty() {
            c.pinned_carved += carve_pinned(&path, pins, &evidence)?;
        }
        remove_segment(&path)?;
        c.segments_deleted += 1;
    }
    Ok(c)
}

/// One packet as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub ts: Time,
    pub wire_len: u32,
    pub data: Vec<u8>,
    /// The link type of the segment it was kept in: one ring can hold
    /// captures of several (a replay of Ethernet and Linux SLL files).
    pub dlt: u32,
}

fn read_idx(path: &Path) -> io::Result<Vec<(FlowUid, u64)>> {
    let mut buf = Vec::new();
    File::open(path)?.read_to_end(&mut buf)?;
    Ok(buf
        .chunks_exact(IDX_ENTRY)
        .map(|c| {
            let mut u = [0u8; 16];
            u.copy_from_slice(&c[..16]);
            let mut o = [0u8; 8];
            o.copy_from_slice(&c[16..24]);
            (FlowUid::new(u128::from_le_bytes(u)), u64::from_le_bytes(o))
        })
        .collect())
}

/// Reads the records at `offsets` of a pcap file (bounds-checked: a
/// damaged file gives an error, not a panic).
fn read_at(path: &Path, offsets: &[u64]) -> io::Result<(u32, Vec<Packet>)> {
    let mut f = File::open(path)?;
    let mut head = [0u8; PCAP_HEADER];
    f.read_exact(&mut head)?;
    let dlt = u32::from_le_bytes([head[20], head[21], head[22], head[23]]);
    let mut out = Vec::with_capacity(offsets.len());
    for &off in offsets {
        f.seek(SeekFrom::Start(off))?;
        let mut h = [0u8; REC_HEADER];
        f.read_exact(&mut h)?;
        let secs = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let us = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let cap = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
        let wire = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
        if cap > 262_144 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{}: bad record at {off}", path.display())));
        }
        let mut data = vec![0u8; cap as usize];
        f.read_exact(&mut data)?;
        out.push(Packet { ts: Time(i64::from(secs) * 1_000_000 + i64::from(us)), wire_len: wire, data, dlt });
    }
    Ok((dlt, out))
}

/// Reads every record of a pcap file.
pub fn read_pcap(path: &Path) -> io::Result<(u32, Vec<Packet>)> {
    let data = fs::read(path)?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("{}: not a pcap file we wrote", path.display()));
    let head = data.get(..PCAP_HEADER).ok_or_else(bad)?;
    if head[..4] != 0xa1b2_c3d4u32.to_le_bytes() {
        return Err(bad());
    }
    let dlt = u32::from_le_bytes([head[20], head[21], head[22], head[23]]);
    let mut out = Vec::new();
    let mut at = PCAP_HEADER;
    while at < data.len() {
        let h = data.get(at..at + REC_HEADER).ok_or_else(bad)?;
        let r = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let cap = r(8) as usize;
        let body = data.get(at + REC_HEADER..at + REC_HEADER + cap).ok_or_else(bad)?;
        out.push(Packet {
            ts: Time(i64::from(r(0)) * 1_000_000 + i64::from(r(4))),
            wire_len: r(12),
            data: body.to_vec(),
            dlt,
        });
        at += REC_HEADER + cap;
    }
    Ok((dlt, out))
}

/// Copies the packets of pinned flows out of a segment into the evidence
/// store; returns how many packets were copied.
fn carve_pinned(segment: &Path, pins: &Pins, evidence: &Path) -> io::Result<u64> {
    let idx = read_idx(&idx_path(segment))?;
    let mut per_flow: HashMap<FlowUid, Vec<u64>> = HashMap::new();
    for (u, off) in idx {
        if pins.contains(&u) {
            per_flow.entry(u).or_default().push(off);
        }
    }
    let mut n = 0;
    for (uid, offs) in per_flow {
        let (dlt, pkts) = read_at(segment, &offs)?;
        append_evidence(evidence, uid, dlt, &pkts)?;
        n += pkts.len() as u64;
    }
    Ok(n)
}

fn append_evidence(dir: &Path, uid: FlowUid, dlt: u32, pkts: &[Packet]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let path = dir.join(format!("{uid}.pcap"));
    let new = !path.exists();
    let mut f = BufWriter::new(OpenOptions::new().create(true).append(true).open(&path)?);
    if new {
        f.write_all(&pcap_header(dlt))?;
    }
    for p in pkts {
        f.write_all(&rec_header(p.ts, p.data.len(), p.wire_len as usize))?;
        f.write_all(&p.data)?;
    }
    f.flush()?;
    drop(f);
    let digest = Sha256::digest(fs::read(&path)?);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    fs::write(path.with_extension("pcap.sha256"), format!("{hex}  {uid}.pcap\n"))
}

/// Segments in the folder: (path, time of its first packet, its span
/// `(earliest, latest)` when known).
///
/// The span is known once a segment is closed (its `.span` file). Nothing
/// else bounds it: the next segment's first packet once stood for this
/// one's end, but a ring that takes several replayed captures (each
/// starting at the same time, as the demo's do), a restarted sensor or a
/// stepped clock breaks that order, and flows were then reported as not
/// kept. A segment without a span (the open one, or one closed by an
/// earlier version) is always read.
fn segments(dir: &Path) -> io::Result<Vec<(PathBuf, i64, Option<Span>)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some((_, _, first)) = parse_segment_name(&name) {
            let path = e.path();
            let span = read_span(&path);
            out.push((path, first, span));
        }
    }
    Ok(out)
}

/// Whether a segment's packets can fall within `[from, to]`.
fn meets(span: Option<Span>, from: Option<Time>, to: Option<Time>) -> bool {
    span.is_none_or(|(lo, hi)| from.is_none_or(|f| hi >= f.0) && to.is_none_or(|t| lo <= t.0))
}

/// The packets of one flow within `[from, to]` (µs; `None`: unbounded), from
/// the evidence store and the ring, in time order. Only segments whose
/// span meets the range are read, and of those only the index and the
/// flow's own records.
pub fn flow_packets(dir: &Path, uid: FlowUid, from: Option<Time>, to: Option<Time>) -> io::Result<(u32, Vec<Packet>)> {
    let mut dlt = 1;
    let mut pkts = Vec::new();
    let ev = dir.join("evidence").join(format!("{uid}.pcap"));
    if ev.exists() {
        let (d, p) = read_pcap(&ev)?;
        dlt = d;
        pkts.extend(p);
    }
    if dir.exists() {
        for (path, _, span) in segments(dir)? {
            if !meets(span, from, to) {
                continue;
            }
            let offs: Vec<u64> = match read_idx(&idx_path(&path)) {
                Ok(i) => i.into_iter().filter(|(u, _)| *u == uid).map(|(_, o)| o).collect(),
                // Deleted by rotation between the listing and the read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if offs.is_empty() {
                continue;
            }
            let (d, p) = read_at(&path, &offs)?;
            dlt = d;
            pkts.extend(p);
        }
    }
    pkts.retain(|p| from.is_none_or(|f| p.ts >= f) && to.is_none_or(|t| p.ts <= t));
    pkts.sort_by_key(|p| p.ts);
    Ok((dlt, pkts))
}

/// The packets within `[from, to]` that a BPF filter (tcpdump's language)
/// accepts, at most `max` of them; only the segments whose span meets the
/// range are read. Returns the link type, the packets, and whether `max`
/// cut the answer short.
pub fn filter_packets(
    dir: &Path,
    filter: &str,
    from: Time,
    to: Time,
    max: usize,
) -> Result<(u32, Vec<Packet>, bool), String> {
    let mut segs = segments(dir).map_err(|e| e.to_string())?;
    segs.retain(|(_, _, span)| meets(*span, Some(from), Some(to)));
    segs.sort_by_key(|s| s.1);
    // The filter is compiled for each link type the segments hold (`tcp`
    // means other offsets on Ethernet and on Linux SLL); a link type it
    // cannot apply to (`ether` on raw IP) is passed over, and if none
    // takes it, its error is the answer.
    let mut programs: HashMap<u32, Result<pcap::BpfProgram, String>> = HashMap::new();
    let mut out = Vec::new();
    for (path, _, _) in segs {
        let (dlt, pkts) = match read_pcap(&path) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.to_string()),
        };
        let program = programs.entry(dlt).or_insert_with(|| {
            let dead = pcap::Capture::dead(pcap::Linktype(dlt as i32)).map_err(|e| e.to_string())?;
            dead.compile(filter, true).map_err(|e| format!("filter {filter:?}: {e}"))
        });
        let Ok(bpf) = program else { continue };
        for p in pkts {
            if p.ts < from || p.ts > to || !bpf.filter(&p.data) {
                continue;
            }
            if out.len() >= max {
                out.sort_by_key(|p: &Packet| p.ts);
                return Ok((out.first().map_or(1, |p| p.dlt), out, true));
            }
            out.push(p);
        }
    }
    if programs.is_empty() {
        // Nothing to read: the filter is still checked, as for Ethernet.
        let dead = pcap::Capture::dead(pcap::Linktype(1)).map_err(|e| e.to_string())?;
        dead.compile(filter, true).map_err(|e| format!("filter {filter:?}: {e}"))?;
    } else if programs.values().all(Result::is_err) {
        if let Some(Err(e)) = programs.into_values().next() {
            return Err(e);
        }
    }
    out.sort_by_key(|p| p.ts);
    Ok((out.first().map_or(1, |p| p.dlt), out, false))
}

/// Writes packets as a pcap file, or as pcapng (one interface per link
/// type) when they come from segments of different link types: a pcap
/// file has one link type, and frames under another's header are garbage
/// to every reader. `dlt` is the link type of an empty answer.
pub fn write_pcap(w: &mut impl Write, dlt: u32, pkts: &[Packet]) -> io::Result<()> {
    let first = pkts.first().map_or(dlt, |p| p.dlt);
    if pkts.iter().any(|p| p.dlt != first) {
        return write_pcapng(w, pkts);
    }
    w.write_all(&pcap_header(first))?;
    for p in pkts {
        w.write_all(&rec_header(p.ts, p.data.len(), p.wire_len as usize))?;
        w.write_all(&p.data)?;
    }
    Ok(())
}

/// pcapng (draft-ietf-opsawg-pcapng): a section header, an interface
/// description per link type (microsecond timestamps, the default), an
/// enhanced packet block per packet.
fn write_pcapng(w: &mut impl Write, pkts: &[Packet]) -> io::Result<()> {
    let block = |w: &mut dyn Write, kind: u32, body: &[u8]| -> io::Result<()> {
        let pad = (4 - body.len() % 4) % 4;
        let len = (12 + body.len() + pad) as u32;
        w.write_all(&kind.to_le_bytes())?;
        w.write_all(&len.to_le_bytes())?;
        w.write_all(body)?;
        w.write_all(&[0u8; 3][..pad])?;
        w.write_all(&len.to_le_bytes())
    };
    let mut shb = Vec::with_capacity(16);
    shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(w, 0x0a0d_0d0a, &shb)?;
    let mut interfaces: Vec<u32> = Vec::new();
    for p in pkts {
        if !interfaces.contains(&p.dlt) {
            interfaces.push(p.dlt);
            let mut idb = Vec::with_capacity(8);
            idb.extend_from_slice(&(p.dlt as u16).to_le_bytes());
            idb.extend_from_slice(&0u16.to_le_bytes());
            idb.extend_from_slice(&262_144u32.to_le_bytes());
            block(w, 1, &idb)?;
        }
    }
    let mut epb = Vec::new();
    for p in pkts {
        let iface = interfaces.iter().position(|d| *d == p.dlt).unwrap_or(0) as u32;
        let ts = p.ts.0.max(0) as u64;
        epb.clear();
        epb.extend_from_slice(&iface.to_le_bytes());
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&p.wire_len.to_le_bytes());
        epb.extend_from_slice(&p.data);
        block(w, 6, &epb)?;
    }
    Ok(())
}

/// Disk used by the ring's segments and indexes (the evidence store apart).
pub fn ring_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "pcap" || x == "idx" || x == "span"))
                .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path, budget: u64) -> Arc<RingConfig> {
        Arc::new(RingConfig {
            dir: dir.to_path_buf(),
            segment_bytes: 4096,
            budget_bytes: budget,
            max_age_secs: 0,
            flow_bytes: 0,
            hold_secs: 0,
            headers_only: None,
        })
    }

    #[test]
    fn flows_come_back_and_pinned_flows_survive_rotation() {
        let tmp = std::env::temp_dir().join(format!("citysoc-ring-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let pins = Arc::new(Pins::default());
        let mut r = PacketRing::open(cfg(&tmp, 20_000), Arc::clone(&pins), 0, 1, 1).unwrap();
        let (a, b) = (FlowUid::new(1), FlowUid::new(2));
        pins.pin(a);
        for i in 0..400i64 {
            let uid = if i % 2 == 0 { a } else { b };
            r.write(Time(i * 1000), &[i as u8; 100], &[uid], None, false);
        }
        r.finish();
        assert!(r.counters.segments_deleted > 0 && ring_bytes(&tmp) <= 20_000, "{:?}", r.counters);
        // The pinned flow is whole; the other lost its oldest packets.
        let (dlt, pa) = flow_packets(&tmp, a, None, None).unwrap();
        assert_eq!((dlt, pa.len()), (1, 200));
        assert!(pa.windows(2).all(|w| w[0].ts < w[1].ts));
        assert_eq!(pa[3].data, vec![6u8; 100]);
        let (_, pb) = flow_packets(&tmp, b, None, None).unwrap();
        assert!(pb.len() < 200 && !pb.is_empty());
        let (_, ranged) = flow_packets(&tmp, a, Some(Time(10_000)), Some(Time(20_000))).unwrap();
        assert_eq!(ranged.len(), 6);
        // A BPF filter over a time range: every other packet of flow b
        // has an odd first byte.
        let (_, odd, cut) = filter_packets(&tmp, "ether[0] & 1 = 1", Time(0), Time(400_000), 1000).unwrap();
        assert!(!cut && !odd.is_empty() && odd.iter().all(|p| p.data[0] % 2 == 1));
        assert!(filter_packets(&tmp, "not a filter (", Time(0), Time(1), 10).unwrap_err().contains("filter"));
        let sha = fs::read_to_string(tmp.join("evidence").join(format!("{a}.pcap.sha256"))).unwrap();
        assert_eq!(sha.len(), 64 + 2 + format!("{a}.pcap\n").len());
        fs::remove_dir_all(&tmp).unwrap();
    }

    /// IPv4 + TCP from 10.0.0.1:1024 to 10.0.0.2:80 behind a link header.
    fn tcp_frame(link: &[u8]) -> Vec<u8> {
        let mut f = link.to_vec();
        f.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&[4, 0, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        f
    }

    /// A ring holding Ethernet and Linux SLL segments: a filter reads both,
    /// each with its own offsets, and the answer is pcapng with an
    /// interface per link type, not frames under another's header.
    #[test]
    fn a_ring_of_several_link_types_is_filtered_and_written_whole() {
        let dir = std::env::temp_dir().join(format!("citysoc-ring-links-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let tmp = TmpDir(dir);
        let pins = Arc::new(Pins::default());
        let ether = [[0u8; 12].as_slice(), &[0x08, 0x00]].concat();
        let sll = [[0u8, 0, 0, 1, 0, 6].as_slice(), &[0u8; 8], &[0x08, 0x00]].concat();
        for (dlt, link) in [(1u32, &ether), (113, &sll)] {
            let mut r = PacketRing::open(cfg(tmp.path(), 1 << 30), Arc::clone(&pins), 0, 1, dlt).unwrap();
            for i in 0..5i64 {
                r.write(
                    Time(i * 1000 + i64::from(dlt)),
                    &tcp_frame(link),
                    &[FlowUid::new(u128::from(dlt))],
                    None,
                    false,
                );
            }
            r.finish();
        }
        let (_, pkts, cut) = filter_packets(tmp.path(), "tcp port 80", Time(0), Time(1_000_000), 100).unwrap();
        assert!(!cut);
        assert_eq!(pkts.iter().filter(|p| p.dlt == 1).count(), 5);
        assert_eq!(pkts.iter().filter(|p| p.dlt == 113).count(), 5);
        let mut out = Vec::new();
        write_pcap(&mut out, 1, &pkts).unwrap();
        assert_eq!(out[..4], 0x0a0d_0d0au32.to_le_bytes(), "pcapng");
        // Blocks: a section header, two interfaces, ten packets.
        let mut kinds = Vec::new();
        let mut at = 0;
        while at + 8 <= out.len() {
            let word = |i: usize| u32::from_le_bytes([out[i], out[i + 1], out[i + 2], out[i + 3]]);
            kinds.push(word(at));
            at += word(at + 4) as usize;
        }
        assert_eq!(at, out.len());
        assert_eq!(kinds, [[0x0a0d_0d0a, 1, 1].as_slice(), &[6; 10]].concat());
        // One link type alone stays a pcap file.
        let eth: Vec<Packet> = pkts.iter().filter(|p| p.dlt == 1).cloned().collect();
        let mut one = Vec::new();
        write_pcap(&mut one, 1, &eth).unwrap();
        assert_eq!(one[..4], 0xa1b2_c3d4u32.to_le_bytes());
        assert!(filter_packets(tmp.path(), "not a filter (", Time(0), Time(1), 10).unwrap_err().contains("filter"));
    }

    struct TmpDir(PathBuf);

    impl TmpDir {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TmpDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Captures replayed one after another into one ring all start at the
    /// same time: a later segment's first packet says nothing of where an
    /// earlier one ends.
    #[test]
    fn flows_of_replayed_captures_are_found_within_their_time() {
        let dir = std::env::temp_dir().join(format!("citysoc-ring-replayed-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let tmp = TmpDir(dir);
        let pins = Arc::new(Pins::default());
        let t0 = 1_700_000_000_000_000;
        for run in 0..3u128 {
            let mut r = PacketRing::open(cfg(tmp.path(), 1 << 30), Arc::clone(&pins), 0, 1, 1).unwrap();
            for i in 0..60i64 {
                r.write(
                    Time(t0 + i * 1_000_000),
                    &[i as u8; 100],
                    &[FlowUid::new(run * 100 + (i % 3) as u128)],
                    None,
                    false,
                );
            }
            r.finish();
        }
        // A flow 50 s into the first run: its window is well past the
        // first packet of every later segment.
        let uid = FlowUid::new(2);
        let (_, all) = flow_packets(tmp.path(), uid, None, None).unwrap();
        assert_eq!(all.len(), 20);
        let (_, late) =
            flow_packets(tmp.path(), uid, Some(Time(t0 + 49_000_000)), Some(Time(t0 + 60_000_000))).unwrap();
        assert_eq!(late.len(), 4, "the window's packets, from whichever segment holds them");
        let (_, none) = flow_packets(tmp.path(), uid, Some(Time(t0 + 61_000_000)), None).unwrap();
        assert!(none.is_empty());
        let (_, f, _) =
            filter_packets(tmp.path(), "ether[0] = 50", Time(t0 + 49_000_000), Time(t0 + 51_000_000), 10).unwrap();
        assert_eq!(f.len(), 3, "one packet of each run at 50 s");
        // A segment with no span (the open one, or one an earlier version
        // closed) is read whatever the window.
        for e in fs::read_dir(tmp.path()).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "span") {
                fs::remove_file(e.path()).unwrap();
            }
        }
        let (_, late) =
            flow_packets(tmp.path(), uid, Some(Time(t0 + 49_000_000)), Some(Time(t0 + 60_000_000))).unwrap();
        assert_eq!(late.len(), 4);
    }
}
