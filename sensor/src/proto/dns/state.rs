//! Pairing queries with replies, as Zeek's `dns/main.zeek` does: by
//! transaction id, first in first out, a record logged once both halves are
//! seen, and whatever is unmatched logged when the connection ends.

use super::parser::{parse_message, Message, Rdata};
use crate::proto::stream::Chunk;
use crate::proto::{zeek_escape, AppOut, FlowCtx};
use schema::{DnsRecord, Event, Interval};
use std::borrow::Cow;
use std::collections::VecDeque;

/// Unmatched messages kept per connection (Zeek's `max_pending_msgs`);
/// beyond it the oldest are logged as they are.
const MAX_PENDING: usize = 50;
/// Messages that are not DNS before the analyzer gives up on a flow.
const MAX_VIOLATIONS: u8 = 8;

#[derive(Debug)]
struct Pending {
    rec: DnsRecord,
    saw_query: bool,
    saw_reply: bool,
}

#[derive(Debug)]
pub struct DnsState {
    proto: &'static str,
    queries: VecDeque<Pending>,
    replies: VecDeque<Pending>,
    violations: u8,
    /// TCP: bytes of a length-prefixed message still incomplete, per side.
    framing: [Vec<u8>; 2],
}

/// A DNS message over TCP is at most this long, plus its 2-byte length.
const MAX_TCP_MESSAGE: usize = 65_535 + 2;

impl DnsState {
    pub fn new(proto: &'static str) -> Self {
        DnsState {
            proto,
            queries: VecDeque::new(),
            replies: VecDeque::new(),
            violations: 0,
            framing: [Vec::new(), Vec::new()],
        }
    }

    /// TCP: messages framed by a 2-byte length (RFC 1035 4.2.2). After a gap
    /// the side's partial message is dropped and framing restarts with the
    /// next segment.
    pub fn stream(&mut self, ctx: &FlowCtx, chunk: Chunk<'_>, out: &mut AppOut) {
        let side = usize::from(!ctx.is_orig);
        let data = match chunk {
            Chunk::Data(d) => d,
            Chunk::Gap(_) => {
                if let Some(b) = self.framing.get_mut(side) {
                    b.clear();
                }
                out.weirds.push("DNS_content_gap");
                return;
            }
        };
        let mut buf = std::mem::take(&mut self.framing[side]);
        buf.extend_from_slice(data);
        let mut off = 0;
        while let Some(h) = buf.get(off..off + 2) {
            let len = usize::from(u16::from_be_bytes([h[0], h[1]]));
            let Some(msg) = buf.get(off + 2..off + 2 + len) else { break };
            let msg = msg.to_vec();
            self.message(ctx, &msg, out);
            off += 2 + len;
        }
        buf.drain(..off.min(buf.len()));
        if buf.len() > MAX_TCP_MESSAGE {
            buf.clear();
        }
        self.framing[side] = buf;
    }

    pub fn failed(&self) -> bool {
        self.violations >= MAX_VIOLATIONS
    }

    fn new_record(&self, ctx: &FlowCtx, m: &Message) -> DnsRecord {
        DnsRecord {
            ts: ctx.ts,
            uid: ctx.uid,
            orig_h: ctx.orig.0,
            orig_p: ctx.orig.1,
            resp_h: ctx.resp.0,
            resp_p: ctx.resp.1,
            proto: self.proto,
            trans_id: m.header.id,
            rtt: None,
            query: None,
            qclass: None,
            qclass_name: None,
            qtype: None,
            qtype_name: None,
            rcode: None,
            rcode_name: None,
            aa: false,
            tc: false,
            rd: false,
            ra: false,
            z: 0,
            answers: None,
            ttls: None,
            rejected: false,
            opcode: m.header.opcode,
            opcode_name: opcode_name(m.header.opcode),
        }
    }

    /// One DNS message from either side.
    pub fn message(&mut self, ctx: &FlowCtx, data: &[u8], out: &mut AppOut) {
        let Some(m) = parse_message(data, &mut out.weirds) else {
            self.violations = self.violations.saturating_add(1);
            return;
        };
        if m.complete {
            out.confirmed = Some("dns");
        } else {
            self.violations = self.violations.saturating_add(1);
        }
        // Zeek tracks standard queries only.
        if m.header.opcode != 0 {
            return;
        }
        let id = m.header.id;
        let is_query = !m.header.qr;
        let mut p = if is_query {
            match take(&mut self.replies, id) {
                Some(p) => p,
                None => Pending { rec: self.new_record(ctx, &m), saw_query: false, saw_reply: false },
            }
        } else {
            match take(&mut self.queries, id) {
                Some(p) => p,
                None => Pending { rec: self.new_record(ctx, &m), saw_query: false, saw_reply: false },
            }
        };
        let r = &mut p.rec;
        if is_query {
            p.saw_query = true;
            r.rd = m.header.rd;
            r.tc = m.header.tc;
            r.z = m.header.z;
            if let Some(q) = m.questions.last() {
                r.qclass = Some(q.qclass);
                r.qclass_name = Some(class_name(q.qclass));
                r.qtype = Some(q.qtype);
                r.qtype_name = Some(type_name(q.qtype));
                r.query = Some(zeek_escape(&q.name));
            }
        } else {
            p.saw_reply = true;
            r.rcode = Some(m.header.rcode);
            r.rcode_name = Some(rcode_name(m.header.rcode));
            let h = m.header;
            if (h.rcode != 0 && h.qdcount == 0) || (h.qdcount > 0 && h.ancount == 0 && h.nscount == 0 && h.arcount == 0)
            {
                r.rejected = true;
            }
            for a in &m.answers {
                if r.query.is_none() {
                    r.query = Some(zeek_escape(&a.name));
                }
                r.aa = h.aa;
                r.ra = h.ra;
                if r.rtt.is_none() {
                    let rtt = ctx.ts.since(r.ts);
                    if rtt.micros() != 0 {
                        r.rtt = Some(rtt);
                    }
                }
                let text = answer_text(&a.name, &a.rdata);
                if !text.is_empty() {
                    r.answers.get_or_insert_with(Vec::new).push(text);
                    r.ttls.get_or_insert_with(Vec::new).push(Interval(i64::from(a.ttl) * 1_000_000));
                }
            }
        }
        if p.saw_query && p.saw_reply {
            out.events.push(Event::Dns(p.rec));
        } else if is_query {
            push_bounded(&mut self.queries, p, out);
        } else {
            push_bounded(&mut self.replies, p, out);
        }
    }

    /// The connection ends: unmatched queries, then unmatched replies.
    pub fn finish(&mut self, _ctx: &FlowCtx, out: &mut AppOut) {
        for p in self.queries.drain(..).chain(self.replies.drain(..)) {
            out.events.push(Event::Dns(p.rec));
        }
    }
}

fn take(q: &mut VecDeque<Pending>, id: u16) -> Option<Pending> {
    let i = q.iter().position(|p| p.rec.trans_id == id)?;
    q.remove(i)
}

fn push_bounded(q: &mut VecDeque<Pending>, p: Pending, out: &mut AppOut) {
    // Most flows hold one pending query: do not let the first push reserve
    // room for four records.
    if q.capacity() == 0 {
        q.reserve_exact(1);
    }
    if q.len() >= MAX_PENDING {
        if let Some(old) = q.pop_front() {
            out.events.push(Event::Dns(old.rec));
        }
    }
    q.push_back(p);
}

fn strings(tag: &str, parts: &[Vec<u8>]) -> String {
    parts.iter().map(|s| format!("{tag} {} {}", s.len(), zeek_escape(s))).collect::<Vec<_>>().join(" ")
}

/// The `answers` entry for one record, in Zeek's wording.
fn answer_text(owner: &[u8], rd: &Rdata) -> String {
    match rd {
        Rdata::A(a) => a.to_string(),
        Rdata::Aaaa(a) => a.to_string(),
        Rdata::Name(n) => zeek_escape(n),
        Rdata::Txt(t) => strings("TXT", t),
        Rdata::Spf(t) => strings("SPF", t),
        Rdata::Rrsig { type_covered, signer } => {
            let signer = if signer.is_empty() { "<Root>".to_string() } else { zeek_escape(signer) };
            format!("RRSIG {type_covered} {signer}")
        }
        Rdata::Dnskey { algorithm } => format!("DNSKEY {algorithm}"),
        Rdata::Ds { algorithm, digest_type } => format!("DS {algorithm} {digest_type}"),
        Rdata::Nsec { next } => format!("NSEC {} {}", zeek_escape(owner), zeek_escape(next)),
        Rdata::Nsec3 => "NSEC3".into(),
        Rdata::Nsec3Param => "NSEC3PARAM".into(),
        Rdata::Silent => String::new(),
        Rdata::Unknown(t) => format!("<unknown type={t}>"),
    }
}

/// Zeek's `DNS::query_types`.
pub fn type_name(t: u16) -> Cow<'static, str> {
    let n = match t {
        1 => "A",
        2 => "NS",
        3 => "MD",
        4 => "MF",
        5 => "CNAME",
        6 => "SOA",
        7 => "MB",
        8 => "MG",
        9 => "MR",
        10 => "NULL",
        11 => "WKS",
        12 => "PTR",
        13 => "HINFO",
        14 => "MINFO",
        15 => "MX",
        16 => "TXT",
        17 => "RP",
        18 => "AFSDB",
        19 => "X25",
        20 => "ISDN",
        21 => "RT",
        22 => "NSAP",
        23 => "NSAP-PTR",
        24 => "SIG",
        25 => "KEY",
        26 => "PX",
        27 => "GPOS",
        28 => "AAAA",
        29 => "LOC",
        30 => "EID",
        31 => "NIMLOC",
        32 => "NB",
        33 => "SRV",
        34 => "ATMA",
        35 => "NAPTR",
        36 => "KX",
        37 => "CERT",
        38 => "A6",
        39 => "DNAME",
        40 => "SINK",
        41 => "OPT",
        42 => "APL",
        43 => "DS",
        44 => "SSHFP",
        45 => "IPSECKEY",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        49 => "DHCID",
        50 => "NSEC3",
        51 => "NSEC3PARAM",
        52 => "TLSA",
        53 => "SMIMEA",
        55 => "HIP",
        59 => "CDS",
        60 => "CDNSKEY",
        61 => "OPENPGPKEY",
        62 => "CSYNC",
        63 => "ZONEMD",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        100 => "UINFO",
        101 => "UID",
        102 => "GID",
        103 => "UNSPEC",
        249 => "TKEY",
        250 => "TSIG",
        251 => "IXFR",
        252 => "AXFR",
        253 => "MAILB",
        254 => "MAILA",
        255 => "*",
        256 => "URI",
        257 => "CAA",
        32768 => "TA",
        32769 => "DLV",
        65281 => "WINS",
        65282 => "WINS-R",
        65521 => "INTEGRITY",
        _ => return Cow::Owned(format!("query-{t}")),
    };
    Cow::Borrowed(n)
}

/// Zeek's `DNS::classes`.
pub fn class_name(c: u16) -> Cow<'static, str> {
    let n = match c {
        1 => "C_INTERNET",
        2 => "C_CSNET",
        3 => "C_CHAOS",
        4 => "C_HESIOD",
        254 => "C_NONE",
        255 => "C_ANY",
        _ => return Cow::Owned(format!("qclass-{c}")),
    };
    Cow::Borrowed(n)
}

/// Zeek's `DNS::base_errors`.
pub fn rcode_name(r: u8) -> Cow<'static, str> {
    let n = match r {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSet",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        _ => return Cow::Owned(format!("unknown-{r}")),
    };
    Cow::Borrowed(n)
}

fn opcode_name(o: u8) -> &'static str {
    match o {
        0 => "query",
        1 => "iquery",
        2 => "status",
        4 => "notify",
        5 => "update",
        6 => "dso",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::dns::parser::tests::sample_response;
    use schema::{FlowUid, Time};

    fn ctx(ts: i64, is_orig: bool) -> FlowCtx {
        FlowCtx {
            ts: Time(ts),
            uid: FlowUid::new(7),
            orig: ("10.0.0.1".parse().unwrap(), 5555),
            resp: ("10.0.0.53".parse().unwrap(), 53),
            is_orig,
            keep_file_bytes: 0,
            orig_local: false,
            resp_local: false,
        }
    }

    fn query(id: u16) -> Vec<u8> {
        let mut q = vec![(id >> 8) as u8, id as u8, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x03www\x07Example\x03com\x00\x00\x01\x00\x01");
        q
    }

    fn records(out: &AppOut) -> Vec<&DnsRecord> {
        out.events.iter().filter_map(|e| if let Event::Dns(d) = e { Some(d) } else { None }).collect()
    }

    #[test]
    fn query_and_reply_pair() {
        let mut s = DnsState::new("udp");
        let mut out = AppOut::default();
        s.message(&ctx(1_000_000, true), &query(0x1234), &mut out);
        assert!(out.events.is_empty());
        s.message(&ctx(1_020_000, false), &sample_response(), &mut out);
        let r = records(&out);
        assert_eq!(r.len(), 1);
        let r = r[0];
        assert_eq!(r.query.as_deref(), Some("www.example.com"));
        assert_eq!(r.qtype_name.as_deref(), Some("A"));
        assert_eq!(r.rcode_name.as_deref(), Some("NOERROR"));
        assert_eq!(r.answers.as_ref().unwrap(), &vec!["web.example.com".to_string(), "192.0.2.7".to_string()]);
        assert_eq!(r.rtt, Some(Interval(20_000)));
        assert!(r.rd && r.ra && !r.aa && !r.rejected);
        assert_eq!(out.confirmed, Some("dns"));
    }

    #[test]
    fn unanswered_and_retransmitted_queries_are_logged_at_the_end() {
        let mut s = DnsState::new("udp");
        let mut out = AppOut::default();
        s.message(&ctx(1, true), &query(9), &mut out);
        s.message(&ctx(2, true), &query(9), &mut out);
        let mut resp = sample_response();
        resp[0] = 0;
        resp[1] = 9;
        s.message(&ctx(3, false), &resp, &mut out);
        assert_eq!(records(&out).len(), 1);
        s.finish(&ctx(4, true), &mut out);
        let r = records(&out);
        assert_eq!(r.len(), 2);
        assert!(r[1].rcode.is_none() && r[1].answers.is_none());
    }

    #[test]
    fn split_points_never_panic() {
        let full = sample_response();
        for n in 0..=full.len() {
            let mut s = DnsState::new("udp");
            let mut out = AppOut::default();
            s.message(&ctx(1, false), &full[..n], &mut out);
            s.finish(&ctx(2, false), &mut out);
        }
    }
}
