//! TCP endpoint tracking with Zeek's semantics, so that `conn_state`,
//! `history`, `orig_bytes`/`resp_bytes` and `missed_bytes` agree with Zeek's
//! `conn.log` field for field. Names follow Zeek's TCP analyzer where the
//! logic mirrors it, which keeps the two easy to compare.

use crate::decode::{TcpView, TH_ACK, TH_FIN, TH_RST, TH_SYN};
use schema::{Interval, Time};

/// Sequence deltas beyond this are treated as bogus on SYN/RST (Zeek's
/// `TOO_LARGE_SEQ_DELTA`).
const TOO_LARGE_SEQ_DELTA: i32 = 1_048_576;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EpState {
    #[default]
    Inactive,
    SynSent,
    SynAckSent,
    Partial,
    Established,
    Closed,
    Reset,
}

fn is_handshake(s: EpState) -> bool {
    matches!(s, EpState::Inactive | EpState::SynSent | EpState::SynAckSent)
}

/// History letter groups, one bit each per side (Zeek's `HIST_*`).
pub mod hist {
    pub const SYN: u32 = 0x1;
    pub const FIN: u32 = 0x2;
    pub const RST: u32 = 0x4;
    pub const FIN_RST: u32 = 0x8;
    pub const DATA: u32 = 0x10;
    pub const ACK: u32 = 0x20;
    pub const MULTI_FLAG: u32 = 0x40;
}

/// A scaled history entry: the letter is recorded at the 1st, 10th, 100th...
/// occurrence. Counting saturates at 65535, so a sixth letter (Zeek's
/// 100000th occurrence) is never written.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scaled(u16);

impl Scaled {
    /// Returns true when this occurrence earns a history letter.
    pub(crate) fn bump(&mut self) -> bool {
        if self.0 == u16::MAX {
            return false;
        }
        self.0 += 1;
        matches!(self.0, 1 | 10 | 100 | 1000 | 10000)
    }
}

/// `a < b` in 32-bit sequence space (RFC 1982 serial arithmetic).
fn lt32(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn le32(a: u32, b: u32) -> bool {
    !lt32(b, a)
}

/// Content seen from one endpoint, in relative sequence numbers truncated to
/// 32 bits and compared with wrap-around (exact while windows stay under
/// 2 GiB). One out-of-order range is remembered above the contiguous part;
/// a second disjoint one declares the lower hole a gap.
#[derive(Clone, Copy, Debug, Default)]
struct Content {
    delivered: u32,
    pend_start: u32,
    pend_end: u32,
}

impl Content {
    fn reset(&mut self) {
        *self = Content { delivered: 1, pend_start: 0, pend_end: 0 };
    }

    fn has_pending(&self) -> bool {
        self.pend_start != self.pend_end
    }

    fn absorb_pending(&mut self) {
        if self.has_pending() && le32(self.pend_start, self.delivered) {
            if lt32(self.delivered, self.pend_end) {
                self.delivered = self.pend_end;
            }
            self.pend_start = 0;
            self.pend_end = 0;
        }
    }

    /// Notes `[seq, seq+len)`; returns bytes declared missing to stay bounded.
    fn data(&mut self, seq: u32, len: u32) -> u64 {
        let end = seq.wrapping_add(len);
        if le32(end, self.delivered) {
            return 0;
        }
        if le32(seq, self.delivered) {
            self.delivered = end;
            self.absorb_pending();
            return 0;
        }
        if !self.has_pending() {
            self.pend_start = seq;
            self.pend_end = end;
            return 0;
        }
        if le32(seq, self.pend_end) && le32(self.pend_start, end) {
            // Overlaps or touches the held range: merge.
            if lt32(seq, self.pend_start) {
                self.pend_start = seq;
            }
            if lt32(self.pend_end, end) {
                self.pend_end = end;
            }
            return 0;
        }
        // Two disjoint holes: the lower one is given up as a gap.
        let (lo_start, hi) = if lt32(seq, self.pend_start) {
            (seq, (self.pend_start, self.pend_end))
        } else {
            (self.pend_start, (seq, end))
        };
        let missed = u64::from(lo_start.wrapping_sub(self.delivered));
        let lo_end = if lt32(seq, self.pend_start) { end } else { self.pend_end };
        self.delivered = lo_end;
        self.pend_start = hi.0;
        self.pend_end = hi.1;
        self.absorb_pending();
        missed
    }

    /// The peer acknowledged up to `upto`: whatever was never seen below it
    /// is a content gap. Returns the missing bytes.
    fn acked(&mut self, upto: u32) -> u64 {
        if le32(upto, self.delivered) {
            return 0;
        }
        let mut missed = u64::from(upto.wrapping_sub(self.delivered));
        if self.has_pending() && lt32(self.pend_start, upto) {
            let covered_end = if lt32(self.pend_end, upto) { self.pend_end } else { upto };
            missed = missed.saturating_sub(u64::from(covered_end.wrapping_sub(self.pend_start)));
        }
        self.delivered = upto;
        self.absorb_pending();
        if self.has_pending() && le32(self.pend_end, self.delivered) {
            self.pend_start = 0;
            self.pend_end = 0;
        }
        missed
    }
}

/// One side of a TCP connection. Field order packs the struct tightly: a
/// flow table holds a million of these.
#[derive(Clone, Debug, Default)]
pub struct Endpoint {
    start_seq: u32,
    last_seq: u32,
    ack_seq: u32,
    /// Relative sequence number just past this side's FIN.
    fin_seq: u32,
    hist_last_syn: u32,
    hist_last_fin: u32,
    hist_last_rst: u32,
    content: Content,
    seq_wraps: u16,
    ack_wraps: u16,
    rxmt: Scaled,
    win0: Scaled,
    gap: Scaled,
    pub chk: Scaled,
    pub state: EpState,
    pub prev_state: EpState,
    fin_cnt: u8,
    pub did_close: bool,
}

fn seq_delta(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

impl Endpoint {
    fn set_state(&mut self, new: EpState, peer_state: EpState, inactivity: &mut bool) {
        if new != self.state {
            if !is_handshake(new) && is_handshake(self.state) && is_handshake(peer_state) {
                *inactivity = true;
            }
            self.prev_state = self.state;
            self.state = new;
        }
    }

    fn to_full(seq: u32, wraps: u16) -> u64 {
        (u64::from(wraps) << 32) | u64::from(seq)
    }

    fn to_relative(&self, seq: u32, wraps: u16) -> u64 {
        Self::to_full(seq, wraps).wrapping_sub(u64::from(self.start_seq))
    }

    fn update_last_seq_raw(&mut self, seq: u32) {
        if seq < self.last_seq {
            self.seq_wraps = self.seq_wraps.wrapping_add(1);
        }
        self.last_seq = seq;
    }

    fn update_ack_seq_raw(&mut self, seq: u32) {
        if seq < self.ack_seq {
            self.ack_wraps = self.ack_wraps.wrapping_add(1);
        }
        self.ack_seq = seq;
    }

    fn init_seqs(&mut self, start: u32, last: u32) {
        self.start_seq = start;
        self.ack_seq = start;
        self.last_seq = last;
    }

    fn no_data_acked(&self) -> bool {
        let ack = Self::to_full(self.ack_seq, self.ack_wraps);
        let start = u64::from(self.start_seq);
        ack == start || ack == start + 1
    }

    /// Payload bytes this endpoint sent, from sequence numbers (Zeek's `Size`).
    pub fn size(&self, peer_state: EpState) -> u64 {
        if self.prev_state == EpState::SynSent
            && self.state == EpState::Reset
            && peer_state == EpState::Inactive
            && !self.no_data_acked()
        {
            return 0;
        }
        let last = Self::to_full(self.last_seq, self.seq_wraps);
        let ack = Self::to_full(self.ack_seq, self.ack_wraps);
        let start = u64::from(self.start_seq);
        let mut size = if last > ack { last.wrapping_sub(start) } else { ack.wrapping_sub(start) };
        size = size.saturating_sub(1);
        if self.fin_cnt > 0 && size != 0 {
            size -= 1;
        }
        size
    }

    fn is_active(&self) -> bool {
        self.state != EpState::Inactive && !self.did_close
    }
}

/// Outcome of one packet for the connection that owns the endpoints.
#[derive(Debug, Default)]
pub struct TcpEffects {
    /// The SYN/SYN-ACK reversal Zeek repairs by flipping roles.
    pub flip: bool,
    /// The handshake finished: the inactivity timeout applies from now.
    pub start_inactivity: bool,
    /// A close completed: remove the connection after the close delay.
    pub close_complete: bool,
    /// One side closed first; check again after the partial-close delay.
    pub partial_close: bool,
    /// The connection's last-activity time advances with this packet.
    pub touch: bool,
    /// An originator SYN started the attempt timer.
    pub attempt_started: bool,
    pub weirds: Vec<&'static str>,
    /// Relative sequence number of this packet's payload, when it carries
    /// content for the stream (not on a RST, not before the initial sequence).
    pub data_seq: Option<u64>,
    /// The peer's content is acknowledged below this relative sequence
    /// number (FIN excluded).
    pub peer_acked: Option<u64>,
    /// Zeek's `do_close`/`gen_event` out-parameters of the state machine.
    pub do_close: bool,
    pub gen_event: bool,
}

/// Both endpoints of a TCP connection plus its history bookkeeping.
#[derive(Clone, Debug, Default)]
pub struct TcpConn {
    /// `[originator, responder]`.
    pub ep: [Endpoint; 2],
    pub hist_seen: u32,
    /// Bytes lost in content gaps (`missed_bytes`).
    pub missed: u64,
}

/// Something that appends history letters; implemented by the connection.
pub trait History {
    fn add(&mut self, c: u8);
}

impl TcpConn {
    fn check_history(&mut self, h: &mut impl History, is_orig: bool, mask: u32, code: u8) -> bool {
        let (mask, code) = if is_orig { (mask, code) } else { (mask << 16, code.to_ascii_lowercase()) };
        if self.hist_seen & mask == 0 {
            self.hist_seen |= mask;
            h.add(code);
            false
        } else {
            true
        }
    }

    fn add_history(h: &mut impl History, is_orig: bool, code: u8) {
        h.add(if is_orig { code } else { code.to_ascii_lowercase() });
    }

    /// Swaps the roles of the endpoints (Zeek's `FlipRoles`).
    pub fn flip(&mut self) {
        self.ep.swap(0, 1);
        self.hist_seen = self.hist_seen.rotate_left(16);
    }

    /// Zeek's `IsReuse`: does this packet start a new connection on the key?
    pub fn is_reuse(&self, tcp: &TcpView<'_>, now: Time, last_time: Time, weirds: &mut Vec<&'static str>) -> bool {
        let [orig, resp] = &self.ep;
        if tcp.flags & TH_SYN == 0 {
            return false;
        }
        let mut conn_orig = orig;
        if tcp.flags & TH_ACK != 0 {
            if orig.state != EpState::Inactive {
                return false;
            }
            conn_orig = resp;
        }
        let is_closed = orig.did_close || resp.did_close;
        if !is_closed {
            if tcp.seq == conn_orig.start_seq {
                return false;
            }
            if tcp.flags & TH_ACK == 0
                && conn_orig.state == EpState::SynAckSent
                && resp.state == EpState::Inactive
                && tcp.seq == resp.start_seq
            {
                return false;
            }
            weirds.push(if conn_orig.state == EpState::SynSent { "SYN_seq_jump" } else { "active_connection_reuse" });
        } else if (orig.is_active() || resp.is_active()) && orig.state != EpState::Reset && resp.state != EpState::Reset
        {
            weirds.push("active_connection_reuse");
        } else if now.since(last_time) < LINGER && orig.state != EpState::Reset && resp.state != EpState::Reset {
            weirds.push("premature_connection_reuse");
        }
        true
    }

    /// Processes one segment from the originator (`is_orig`) or responder.
    pub fn process(&mut self, h: &mut impl History, is_orig: bool, tcp: &TcpView<'_>, fx: &mut TcpEffects) {
        let flags = tcp.flags;
        let (syn, fin, rst, ack) = (flags & TH_SYN != 0, flags & TH_FIN != 0, flags & TH_RST != 0, flags & TH_ACK != 0);
        let len = tcp.len;
        let base_seq = tcp.seq;
        let ack_seq = tcp.ack;
        let mut s = usize::from(!is_orig);
        let mut p = 1 - s;

        let mut seg_len = len as i64 + i64::from(syn) + i64::from(fin);
        if rst {
            seg_len -= i64::from(len);
        }
        let seq_one_past = base_seq.wrapping_add(seg_len as u32);

        // init_endpoint
        {
            let e = &mut self.ep[s];
            match e.state {
                EpState::Inactive => {
                    if syn {
                        e.init_seqs(base_seq, seq_one_past);
                    } else {
                        // A partial connection: number as though a SYN was seen.
                        e.init_seqs(base_seq.wrapping_sub(1), base_seq);
                    }
                    e.content.reset();
                }
                EpState::SynSent | EpState::SynAckSent => {
                    if syn && base_seq != e.start_seq {
                        fx.weirds.push("SYN_seq_jump");
                        e.init_seqs(base_seq, seq_one_past);
                        e.content.reset();
                    }
                }
                EpState::Established | EpState::Partial => {
                    if syn {
                        if e.size(EpState::Inactive) > 0 {
                            fx.weirds.push("SYN_inside_connection");
                        }
                        if base_seq != e.start_seq {
                            fx.weirds.push("SYN_seq_jump");
                        }
                        e.init_seqs(base_seq, seq_one_past);
                        e.content.reset();
                    }
                }
                EpState::Reset => {
                    if syn && e.prev_state == EpState::Inactive {
                        e.init_seqs(base_seq, seq_one_past);
                        e.content.reset();
                    }
                }
                EpState::Closed => {}
            }
        }

        let (rel_seq, seq_underflow) = {
            let e = &self.ep[s];
            relative_seq(e, base_seq, e.last_seq, e.seq_wraps)
        };
        if seq_underflow && !rst {
            fx.weirds.push("TCP_seq_underflow_or_misorder");
        }

        self.update_history(h, is_orig, s, flags, rel_seq, len);

        // update_window: only the zero-window history matters for conn.log.
        if tcp.window == 0 && !rst && self.ep[p].state != EpState::Closed && self.ep[s].state != EpState::Reset {
            let e = &mut self.ep[s];
            if e.win0.bump() {
                Self::add_history(h, is_orig, b'W');
            }
        }

        fx.touch = !(self.ep[0].did_close && self.ep[1].did_close);

        if syn {
            if rst {
                fx.weirds.push("TCP_christmas");
            }
            if len > 0 {
                fx.weirds.push("SYN_with_data");
            }
        }
        if fin {
            let e = &mut self.ep[s];
            e.fin_cnt = e.fin_cnt.saturating_add(1);
            e.fin_seq = rel_seq.wrapping_add(seg_len as u64) as u32;
        }

        let mut rel_ack = 0u64;
        if ack {
            if self.ep[p].state == EpState::Inactive {
                rel_ack = 1;
                if !syn
                    && !fin
                    && !rst
                    && matches!(self.ep[s].state, EpState::SynSent | EpState::SynAckSent | EpState::Established)
                {
                    fx.weirds.push("possible_split_routing");
                }
                let peer = &mut self.ep[p];
                let a = ack_seq.wrapping_sub(1);
                peer.start_seq = a;
                peer.ack_seq = a;
                peer.last_seq = a;
                peer.content.reset();
            } else {
                let peer = &self.ep[p];
                let (r, under) = relative_seq(peer, ack_seq, peer.ack_seq, peer.ack_wraps);
                if under {
                    rel_ack = 0;
                    fx.weirds.push("TCP_ack_underflow_or_misorder");
                } else {
                    rel_ack = r;
                    if !rst {
                        let peer = &mut self.ep[p];
                        let delta = seq_delta(ack_seq, peer.ack_seq);
                        if ack_seq == 0 && delta > TOO_LARGE_SEQ_DELTA {
                            // More likely a broken ack than a wrap landing on 0.
                        } else if delta > 0 {
                            peer.update_ack_seq_raw(ack_seq);
                        }
                    }
                }
            }
        }

        // update_last_seq
        let delta_last = {
            let e = &mut self.ep[s];
            let delta = seq_delta(seq_one_past, e.last_seq);
            if (syn || rst) && !(-TOO_LARGE_SEQ_DELTA..=TOO_LARGE_SEQ_DELTA).contains(&delta) {
                // Untrusted jump on a SYN or RST.
            } else if fin && e.last_seq == e.start_seq.wrapping_add(1) {
                e.update_last_seq_raw(seq_one_past);
            } else if e.state == EpState::Reset {
                // Nothing after a reset is trusted.
            } else if delta > 0 {
                e.update_last_seq_raw(seq_one_past);
            } else if len > 0 && e.rxmt.bump() {
                Self::add_history(h, is_orig, b'T');
            }
            delta
        };

        self.update_state_machine(is_orig, s, base_seq, ack_seq, len, delta_last, flags, fx);
        if fx.flip {
            self.flip();
            s = 1 - s;
            p = 1 - p;
        }
        let is_orig = s == 0;

        // Content gaps: the peer acknowledged data we never saw. Gaps revealed
        // by a RST are not reliable and are not counted, as in Zeek. For
        // partial connections, acks of 1 or 2 are artefacts of the sequence
        // numbering faked for the missing SYN.
        if ack && !rst && rel_ack > 2 {
            let peer = &mut self.ep[p];
            let mut upto = rel_ack as u32;
            if peer.fin_cnt > 0 && le32(peer.fin_seq, upto) {
                upto = peer.fin_seq.wrapping_sub(1);
            }
            fx.peer_acked = Some(rel_ack.saturating_sub(u64::from((rel_ack as u32).wrapping_sub(upto))));
            let missed = peer.content.acked(upto);
            if missed > 0 {
                self.missed += missed;
                let peer = &mut self.ep[p];
                let closed = matches!(peer.state, EpState::Closed | EpState::Reset);
                if !closed && peer.gap.bump() {
                    Self::add_history(h, !is_orig, b'G');
                }
            }
        }

        let rel_data_seq = if syn { rel_seq.wrapping_add(1) } else { rel_seq };
        if len > 0 && !rst && !seq_underflow {
            fx.data_seq = Some(rel_data_seq);
            let e = &mut self.ep[s];
            let missed = e.content.data(rel_data_seq as u32, len);
            if missed > 0 {
                self.missed += missed;
                if e.gap.bump() {
                    Self::add_history(h, is_orig, b'G');
                }
            }
        }

        if fx.do_close {
            self.connection_closed(s, fx);
        }
    }

    fn update_history(&mut self, h: &mut impl History, is_orig: bool, s: usize, flags: u8, rel_seq: u64, len: u32) {
        let (syn, fin, rst, ack) = (flags & TH_SYN != 0, flags & TH_FIN != 0, flags & TH_RST != 0, flags & TH_ACK != 0);
        let bits = u8::from(syn) + u8::from(fin) + u8::from(rst);
        if bits > 1 {
            if fin && rst {
                self.check_history(h, is_orig, hist::FIN_RST, b'I');
            } else {
                self.check_history(h, is_orig, hist::MULTI_FLAG, b'Q');
            }
        } else if bits == 1 {
            if syn {
                let code = if ack { b'H' } else { b'S' };
                if self.check_history(h, is_orig, hist::SYN, code) && rel_seq as u32 != self.ep[s].hist_last_syn {
                    Self::add_history(h, is_orig, code);
                }
                self.ep[s].hist_last_syn = rel_seq as u32;
            }
            if fin {
                let at = rel_seq.wrapping_add(u64::from(len)) as u32;
                if self.check_history(h, is_orig, hist::FIN, b'F') && at != self.ep[s].hist_last_fin {
                    Self::add_history(h, is_orig, b'F');
                }
                self.ep[s].hist_last_fin = at;
            }
            if rst {
                if self.check_history(h, is_orig, hist::RST, b'R') && rel_seq as u32 != self.ep[s].hist_last_rst {
                    Self::add_history(h, is_orig, b'R');
                }
                self.ep[s].hist_last_rst = rel_seq as u32;
            }
        } else if len > 0 {
            self.check_history(h, is_orig, hist::DATA, b'D');
        } else if ack {
            self.check_history(h, is_orig, hist::ACK, b'A');
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn update_state_machine(
        &mut self,
        is_orig: bool,
        s: usize,
        base_seq: u32,
        ack_seq: u32,
        len: u32,
        delta_last: i32,
        flags: u8,
        fx: &mut TcpEffects,
    ) {
        let p = 1 - s;
        let (syn, fin, rst, ack) = (flags & TH_SYN != 0, flags & TH_FIN != 0, flags & TH_RST != 0, flags & TH_ACK != 0);
        let mut inact = false;
        fx.do_close = false;
        fx.gen_event = false;
        match self.ep[s].state {
            EpState::Inactive => {
                if syn {
                    if is_orig {
                        let peer_state = self.ep[p].state;
                        if ack {
                            fx.weirds.push("connection_originator_SYN_ack");
                            self.ep[s].set_state(EpState::SynAckSent, peer_state, &mut inact);
                        } else {
                            self.ep[s].set_state(EpState::SynSent, peer_state, &mut inact);
                        }
                        fx.attempt_started = true;
                    } else {
                        if ack {
                            let peer = &self.ep[p];
                            if peer.state != EpState::Inactive
                                && peer.state != EpState::Partial
                                && !seq_between(ack_seq, peer.start_seq, peer.last_seq)
                            {
                                fx.weirds.push("bad_SYN_ack");
                            }
                        } else if self.ep[p].state == EpState::SynAckSent && base_seq == self.ep[s].start_seq {
                            // SYN and SYN-ACK seen in reverse order: flip and establish.
                            fx.flip = true;
                            let st = self.ep[s].state;
                            self.ep[p].set_state(EpState::Established, st, &mut inact);
                        } else {
                            fx.weirds.push("simultaneous_open");
                        }
                        if self.ep[p].state == EpState::SynSent {
                            let st = self.ep[s].state;
                            self.ep[p].set_state(EpState::Established, st, &mut inact);
                        } else if self.ep[p].state == EpState::Inactive {
                            fx.weirds.push("unsolicited_SYN_response");
                        }
                        let ps = self.ep[p].state;
                        self.ep[s].set_state(EpState::Established, ps, &mut inact);
                    }
                }
                if fin {
                    let ps = self.ep[p].state;
                    self.ep[s].set_state(EpState::Closed, ps, &mut inact);
                    fx.do_close = true;
                    fx.gen_event = true;
                    if ps != EpState::Partial && !syn {
                        fx.weirds.push("spontaneous_FIN");
                    }
                }
                if rst {
                    let ps = self.ep[p].state;
                    self.ep[s].set_state(EpState::Reset, ps, &mut inact);
                    let is_reject = if is_orig {
                        ps == EpState::Established
                    } else {
                        matches!(ps, EpState::SynSent | EpState::SynAckSent)
                    };
                    fx.do_close = true;
                    fx.gen_event = !is_reject;
                    if !is_reject && ps == EpState::Inactive {
                        fx.weirds.push("spontaneous_RST");
                    }
                }
                if self.ep[s].state == EpState::Inactive {
                    if !is_orig && len == 0 && self.ep[0].state == EpState::SynSent {
                        // Some stacks ack a SYN before replying with SYN-ACK.
                    } else if ack && self.ep[p].state == EpState::Established {
                        let ps = self.ep[p].state;
                        self.ep[s].set_state(EpState::Established, ps, &mut inact);
                    } else {
                        let ps = self.ep[p].state;
                        self.ep[s].set_state(EpState::Partial, ps, &mut inact);
                    }
                }
            }
            EpState::SynSent | EpState::SynAckSent => {
                if syn {
                    if is_orig {
                        if ack && !fin && !rst && self.ep[s].state != EpState::SynAckSent {
                            fx.weirds.push("repeated_SYN_with_ack");
                        }
                    } else if !ack && self.ep[s].state != EpState::SynSent {
                        fx.weirds.push("repeated_SYN_reply_wo_ack");
                    }
                }
                if fin {
                    let ps = self.ep[p].state;
                    if matches!(ps, EpState::Inactive | EpState::SynSent) {
                        fx.weirds.push("inappropriate_FIN");
                    }
                    self.ep[s].set_state(EpState::Closed, ps, &mut inact);
                    fx.do_close = true;
                    fx.gen_event = true;
                }
                if rst {
                    let ps = self.ep[p].state;
                    self.ep[s].set_state(EpState::Reset, ps, &mut inact);
                    fx.do_close = true;
                } else if len > 0 {
                    fx.weirds.push("data_before_established");
                }
            }
            EpState::Established | EpState::Partial => {
                if syn && self.ep[s].state == EpState::Partial && self.ep[p].state == EpState::Inactive && !ack {
                    fx.weirds.push("SYN_after_partial");
                    let ps = self.ep[p].state;
                    self.ep[s].set_state(EpState::SynSent, ps, &mut inact);
                }
                if fin && !rst {
                    let ps = self.ep[p].state;
                    self.ep[s].set_state(EpState::Closed, ps, &mut inact);
                    if self.ep[p].state == EpState::Reset && self.ep[p].prev_state == EpState::Closed {
                        let ss = self.ep[s].state;
                        self.ep[p].set_state(EpState::Closed, ss, &mut inact);
                    }
                    fx.do_close = true;
                    fx.gen_event = true;
                }
                if rst {
                    let ps = self.ep[p].state;
                    self.ep[s].set_state(EpState::Reset, ps, &mut inact);
                    fx.do_close = true;
                }
            }
            EpState::Closed => {
                if syn {
                    fx.weirds.push("SYN_after_close");
                }
                if fin && delta_last > 0 {
                    fx.weirds.push("FIN_advanced_last_seq");
                }
                if rst && self.ep[p].state != EpState::Closed {
                    let ps = self.ep[p].state;
                    self.ep[s].set_state(EpState::Reset, ps, &mut inact);
                    if !self.ep[s].did_close {
                        fx.do_close = true;
                    }
                }
            }
            EpState::Reset => {
                if syn {
                    fx.weirds.push("SYN_after_reset");
                }
                if fin {
                    fx.weirds.push("FIN_after_reset");
                }
                if len > 0 && !rst {
                    fx.weirds.push("data_after_reset");
                }
            }
        }
        if inact {
            fx.start_inactivity = true;
        }
    }

    /// Zeek's `ConnectionClosed` for the endpoint at index `s`.
    fn connection_closed(&mut self, s: usize, fx: &mut TcpEffects) {
        let p = 1 - s;
        if self.ep[s].did_close {
            return;
        }
        self.ep[s].did_close = true;
        let complete =
            self.ep[s].state == EpState::Reset || self.ep[p].did_close || self.ep[p].state == EpState::Inactive;
        if complete {
            fx.close_complete = true;
        } else if self.ep[s].prev_state == EpState::Inactive {
            fx.partial_close = true;
        }
    }

    /// Zeek's `conn_state` for a TCP connection.
    pub fn conn_state(&self, history: &str) -> &'static str {
        let os = self.ep[0].state;
        let rs = self.ep[1].state;
        let o_inactive = matches!(os, EpState::Inactive | EpState::Partial);
        let r_inactive = matches!(rs, EpState::Inactive | EpState::Partial);
        if rs == EpState::Reset {
            if matches!(os, EpState::SynSent | EpState::SynAckSent)
                || (os == EpState::Reset && self.orig_size() == 0 && self.resp_size() == 0)
            {
                "REJ"
            } else if o_inactive {
                "RSTRH"
            } else {
                "RSTR"
            }
        } else if os == EpState::Reset {
            if r_inactive {
                if rstos0_history(history) {
                    "RSTOS0"
                } else {
                    "OTH"
                }
            } else {
                "RSTO"
            }
        } else if rs == EpState::Closed && os == EpState::Closed {
            "SF"
        } else if os == EpState::Closed {
            if r_inactive {
                "SH"
            } else {
                "S2"
            }
        } else if rs == EpState::Closed {
            if o_inactive {
                "SHR"
            } else {
                "S3"
            }
        } else if os == EpState::SynSent && rs == EpState::Inactive {
            "S0"
        } else if os == EpState::Established && rs == EpState::Established {
            "S1"
        } else {
            "OTH"
        }
    }

    pub fn orig_size(&self) -> u64 {
        self.ep[0].size(self.ep[1].state)
    }

    pub fn resp_size(&self) -> u64 {
        self.ep[1].size(self.ep[0].state)
    }

    /// Zeek's `AttemptTimer` condition: a SYN that nobody answered.
    pub fn is_attempt(&self) -> bool {
        matches!(self.ep[0].state, EpState::SynSent | EpState::SynAckSent) && self.ep[1].state == EpState::Inactive
    }

    /// Zeek's `PartialCloseTimer` condition.
    pub fn partial_close_removes(&self) -> bool {
        let [o, r] = &self.ep;
        o.state != EpState::Inactive
            && r.state != EpState::Inactive
            && (!o.did_close || !r.did_close)
            && o.state != EpState::Reset
            && r.state != EpState::Reset
    }
}

/// Zeek's `tcp_connection_linger`.
pub const LINGER: Interval = Interval::from_secs(5);

/// `/^\^?S[^HAFGIQ]*R.*/`: an originator SYN answered by nothing but its own RST.
fn rstos0_history(h: &str) -> bool {
    let b = h.as_bytes();
    let b = b.strip_prefix(b"^").unwrap_or(b);
    let Some(rest) = b.strip_prefix(b"S") else {
        return false;
    };
    for &c in rest {
        if c == b'R' {
            return true;
        }
        if b"HAFGIQ".contains(&c) {
            return false;
        }
    }
    false
}

fn seq_between(seq: u32, low: u32, high: u32) -> bool {
    if low <= high {
        seq >= low && seq <= high
    } else {
        seq >= low || seq <= high
    }
}

/// Zeek's `get_relative_seq`: the sequence number relative to the
/// endpoint's initial one, and whether it fell before it.
fn relative_seq(e: &Endpoint, cur: u32, last: u32, wraps: u16) -> (u64, bool) {
    let delta = seq_delta(cur, last);
    let mut wraps = wraps;
    if delta < 0 {
        if wraps > 0 && cur > last {
            wraps -= 1;
        }
    } else if delta > 0 && cur < last {
        wraps = wraps.wrapping_add(1);
    }
    if wraps == 0 {
        let d = seq_delta(cur, e.start_seq);
        return (d as i64 as u64, d < 0);
    }
    (e.to_relative(cur, wraps), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rstos0_pattern() {
        assert!(rstos0_history("SR"));
        assert!(rstos0_history("^SdR"));
        // Zeek's pattern is case-sensitive: responder letters do not stop it.
        assert!(rstos0_history("ShR"));
        assert!(!rstos0_history("SFR"));
        assert!(!rstos0_history("SAR"));
        assert!(!rstos0_history("R"));
    }

    #[test]
    fn scaled_history_thresholds() {
        let mut s = Scaled::default();
        let hits: Vec<u32> = (1..=1000).filter(|_| s.bump()).collect();
        assert_eq!(hits, vec![1, 10, 100, 1000]);
    }
}
