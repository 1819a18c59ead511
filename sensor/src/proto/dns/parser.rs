//! DNS messages (RFC 1035 4), parsed from attacker-controlled bytes: every
//! offset is checked, compression pointers may only point backwards, and
//! names are capped, so a crafted message can neither loop nor overrun.

use nom::number::complete::{be_u16, be_u32};
use nom::IResult;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub qr: bool,
    pub opcode: u8,
    pub aa: bool,
    pub tc: bool,
    pub rd: bool,
    pub ra: bool,
    pub z: u8,
    pub rcode: u8,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

pub const HEADER_LEN: usize = 12;

fn header(i: &[u8]) -> IResult<&[u8], Header> {
    let (i, id) = be_u16(i)?;
    let (i, flags) = be_u16(i)?;
    let (i, qdcount) = be_u16(i)?;
    let (i, ancount) = be_u16(i)?;
    let (i, nscount) = be_u16(i)?;
    let (i, arcount) = be_u16(i)?;
    Ok((
        i,
        Header {
            id,
            qr: flags & 0x8000 != 0,
            opcode: ((flags >> 11) & 0x0f) as u8,
            aa: flags & 0x0400 != 0,
            tc: flags & 0x0200 != 0,
            rd: flags & 0x0100 != 0,
            ra: flags & 0x0080 != 0,
            z: ((flags >> 4) & 0x07) as u8,
            rcode: (flags & 0x0f) as u8,
            qdcount,
            ancount,
            nscount,
            arcount,
        },
    ))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// Lower-cased, without the trailing dot.
    pub name: Vec<u8>,
    pub qtype: u16,
    pub qclass: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rdata {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// NS, CNAME, PTR, and the name carried by MX, SOA (mname) and SRV.
    Name(Vec<u8>),
    Txt(Vec<Vec<u8>>),
    Spf(Vec<Vec<u8>>),
    Rrsig {
        type_covered: u16,
        signer: Vec<u8>,
    },
    Dnskey {
        algorithm: u8,
    },
    Ds {
        algorithm: u8,
        digest_type: u8,
    },
    Nsec {
        next: Vec<u8>,
    },
    Nsec3,
    Nsec3Param,
    /// Parsed but not logged as an answer (WKS, HINFO, CAA, OPT, ...).
    Silent,
    Unknown(u16),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub name: Vec<u8>,
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: Rdata,
}

#[derive(Clone, Debug, Default)]
pub struct Message {
    pub header: Header,
    pub questions: Vec<Question>,
    /// The answer section only (authority and additional are not logged).
    pub answers: Vec<Answer>,
    /// Questions and answers parsed whole: the message is DNS.
    pub complete: bool,
}

/// Names longer than this are cut (Zeek's buffer holds 512 bytes).
const MAX_NAME: usize = 512;
/// More questions than this is not DNS (Zeek's `dns_max_queries`).
pub const MAX_QUERIES: u16 = 25;
/// Compression pointers followed per name: backward-only pointers cannot
/// loop, this bounds the work on a pathological chain.
const MAX_POINTERS: usize = 64;

/// Reads a possibly compressed name at `pos`; returns it (lower case, no
/// trailing dot) and the position after it.
fn read_name(msg: &[u8], mut pos: usize, weirds: &mut Vec<&'static str>) -> Option<(Vec<u8>, usize)> {
    let mut name = Vec::with_capacity(32);
    let mut end_after: Option<usize> = None;
    let mut pointers = 0;
    loop {
        let len = usize::from(*msg.get(pos)?);
        if len == 0 {
            pos += 1;
            break;
        }
        if len & 0xc0 == 0xc0 {
            let lo = usize::from(*msg.get(pos + 1)?);
            let target = ((len & 0x3f) << 8) | lo;
            if target >= pos {
                weirds.push("DNS_label_forward_compress_offset");
                return None;
            }
            pointers += 1;
            if pointers > MAX_POINTERS {
                weirds.push("DNS_label_too_many_pointers");
                return None;
            }
            end_after.get_or_insert(pos + 2);
            pos = target;
            continue;
        }
        if len > 63 {
            weirds.push("DNS_label_too_long");
            return None;
        }
        let Some(label) = msg.get(pos + 1..pos + 1 + len) else {
            weirds.push("DNS_label_len_gt_pkt");
            return None;
        };
        if name.len() + len + 1 > MAX_NAME {
            weirds.push("DNS_label_len_gt_name_len");
            return None;
        }
        name.extend(label.iter().map(u8::to_ascii_lowercase));
        name.push(b'.');
        pos += 1 + len;
    }
    if name.len() >= 255 {
        weirds.push("DNS_NAME_too_long");
    }
    if name.len() >= 2 {
        name.pop();
    }
    Some((name, end_after.unwrap_or(pos)))
}

fn u16_at(msg: &[u8], pos: usize) -> Option<u16> {
    msg.get(pos..pos + 2).and_then(|b| be_u16::<_, nom::error::Error<&[u8]>>(b).ok()).map(|(_, v)| v)
}

fn u32_at(msg: &[u8], pos: usize) -> Option<u32> {
    msg.get(pos..pos + 4).and_then(|b| be_u32::<_, nom::error::Error<&[u8]>>(b).ok()).map(|(_, v)| v)
}

fn char_strings(rdata: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&len) = rdata.get(i) {
        let len = usize::from(len);
        let end = (i + 1 + len).min(rdata.len());
        out.push(rdata.get(i + 1..end).unwrap_or(&[]).to_vec());
        i = end;
    }
    out
}

fn parse_rdata(msg: &[u8], rtype: u16, start: usize, rdlen: usize, weirds: &mut Vec<&'static str>) -> Option<Rdata> {
    let rd = msg.get(start..start + rdlen)?;
    let named = |pos: usize, weirds: &mut Vec<&'static str>| -> Option<Vec<u8>> {
        let (n, end) = read_name(msg, pos, weirds)?;
        if end != start + rdlen {
            weirds.push("DNS_RR_length_mismatch");
        }
        Some(n)
    };
    Some(match rtype {
        1 => match <[u8; 4]>::try_from(rd) {
            Ok(b) => Rdata::A(Ipv4Addr::from(b)),
            Err(_) => {
                weirds.push("DNS_RR_bad_length");
                return None;
            }
        },
        28 | 38 => match <[u8; 16]>::try_from(rd) {
            Ok(b) => Rdata::Aaaa(Ipv6Addr::from(b)),
            Err(_) => {
                weirds.push("DNS_RR_bad_length");
                return None;
            }
        },
        2 | 5 | 12 => Rdata::Name(named(start, weirds)?),
        15 => Rdata::Name(named(start + 2, weirds)?),
        6 => {
            let (mname, _) = read_name(msg, start, weirds)?;
            Rdata::Name(mname)
        }
        33 => Rdata::Name(named(start + 6, weirds)?),
        16 => Rdata::Txt(char_strings(rd)),
        99 => Rdata::Spf(char_strings(rd)),
        46 => {
            let type_covered = u16_at(msg, start)?;
            let (signer, _) = read_name(msg, start + 18, weirds)?;
            Rdata::Rrsig { type_covered, signer }
        }
        48 => Rdata::Dnskey { algorithm: *rd.get(3)? },
        43 => Rdata::Ds { algorithm: *rd.get(2)?, digest_type: *rd.get(3)? },
        47 => {
            let (next, _) = read_name(msg, start, weirds)?;
            Rdata::Nsec { next }
        }
        50 => Rdata::Nsec3,
        51 => Rdata::Nsec3Param,
        11 | 13 | 41 | 250 | 257 => Rdata::Silent,
        other => {
            weirds.push("DNS_RR_unknown_type");
            Rdata::Unknown(other)
        }
    })
}

/// Parses one message. What parsed before a problem is kept; `complete`
/// says whether the question and answer sections parsed whole.
pub fn parse_message(msg: &[u8], weirds: &mut Vec<&'static str>) -> Option<Message> {
    let Ok((_, h)) = header(msg) else {
        weirds.push("DNS_truncated_len_lt_hdr_len");
        return None;
    };
    let mut m = Message { header: h, ..Message::default() };
    if h.qdcount > MAX_QUERIES {
        weirds.push("DNS_Conn_count_too_large");
        return Some(m);
    }
    let mut pos = HEADER_LEN;
    for _ in 0..h.qdcount {
        let Some((name, end)) = read_name(msg, pos, weirds) else { return Some(m) };
        let (Some(qtype), Some(qclass)) = (u16_at(msg, end), u16_at(msg, end + 2)) else {
            weirds.push("DNS_truncated_quest_too_short");
            return Some(m);
        };
        m.questions.push(Question { name, qtype, qclass });
        pos = end + 4;
    }
    for _ in 0..h.ancount {
        let Some((name, end)) = read_name(msg, pos, weirds) else { return Some(m) };
        let (Some(rtype), Some(ttl), Some(rdlen)) = (u16_at(msg, end), u32_at(msg, end + 4), u16_at(msg, end + 8))
        else {
            weirds.push("DNS_truncated_ans_too_short");
            return Some(m);
        };
        let start = end + 10;
        let rdlen = usize::from(rdlen);
        if start + rdlen > msg.len() {
            weirds.push("DNS_truncated_RR_rdlength_lt_len");
            return Some(m);
        }
        if let Some(rdata) = parse_rdata(msg, rtype, start, rdlen, weirds) {
            m.answers.push(Answer { name, rtype, ttl, rdata });
        }
        pos = start + rdlen;
    }
    m.complete = true;
    Some(m)
}

/// A strict look at a first datagram on a port not registered for DNS: one
/// question, a standard opcode, a known class, and nothing left over.
pub fn looks_like_dns(msg: &[u8]) -> bool {
    let mut w = Vec::new();
    let Some(m) = parse_message(msg, &mut w) else { return false };
    if !m.complete || !w.is_empty() || m.header.qdcount != 1 || m.header.opcode > 5 {
        return false;
    }
    m.questions.first().is_some_and(|q| matches!(q.qclass, 1 | 3 | 4 | 254 | 255) && !q.name.is_empty())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A response for `www.Example.com A` with a CNAME and an A record,
    /// using compression, built as a resolver would send it.
    pub fn sample_response() -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        m.extend_from_slice(b"\x03www\x07Example\x03com\x00\x00\x01\x00\x01");
        // CNAME www.example.com -> web.example.com (pointer to "example.com" at 16)
        m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0x0e, 0x10, 0, 6]);
        m.extend_from_slice(b"\x03web\xc0\x10");
        // A web.example.com -> 192.0.2.7
        let web = 12 + 17 + 12;
        m.extend_from_slice(&[0xc0, web as u8, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
        m
    }

    #[test]
    fn response_with_compression() {
        let mut w = Vec::new();
        let m = parse_message(&sample_response(), &mut w).unwrap();
        assert!(m.complete, "{w:?}");
        assert_eq!(m.questions[0].name, b"www.example.com");
        assert_eq!(m.answers.len(), 2);
        assert_eq!(m.answers[0].rdata, Rdata::Name(b"web.example.com".to_vec()));
        assert_eq!(m.answers[1].rdata, Rdata::A(Ipv4Addr::new(192, 0, 2, 7)));
        assert_eq!(m.answers[1].ttl, 60);
        assert!(w.is_empty());
    }

    #[test]
    fn every_prefix_is_safe() {
        let full = sample_response();
        for n in 0..full.len() {
            let mut w = Vec::new();
            if let Some(m) = parse_message(&full[..n], &mut w) {
                assert!(!m.complete || n == full.len());
            }
        }
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_refused() {
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        let mut w = Vec::new();
        let msg = parse_message(&m, &mut w).unwrap();
        assert!(!msg.complete);
        assert_eq!(w, vec!["DNS_label_forward_compress_offset"]);
    }

    #[test]
    fn strict_detection() {
        let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x04city\x02vn\x00\x00\x01\x00\x01");
        assert!(looks_like_dns(&q));
        assert!(!looks_like_dns(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!looks_like_dns(&[0u8; 12]));
    }
}
