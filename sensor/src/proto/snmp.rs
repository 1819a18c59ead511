//! SNMP v1, v2c (RFC 1157, RFC 3416) and v3 (RFC 3412, USM RFC 3414) over
//! UDP: BER-encoded messages read with a small TLV reader. One `snmp.log`
//! line per conversation, with its PDU counts, the community or user, and
//! the agent's sysDescr and boot time when a response carries them.

use crate::proto::{zeek_escape, AppOut, FlowCtx};
use schema::{Event, Interval, SnmpRecord, Time};

pub const PORTS: [u16; 2] = [161, 162];

/// sysDescr.0 and sysUpTime.0 (RFC 1213), as encoded OIDs.
const SYS_DESCR: &[u8] = &[0x2b, 6, 1, 2, 1, 1, 1, 0];
const SYS_UPTIME: &[u8] = &[0x2b, 6, 1, 2, 1, 1, 3, 0];
/// Varbinds looked at per PDU.
const MAX_VARBINDS: usize = 64;

/// One BER element from the front of `b`: tag, contents, and the rest.
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    // High tag numbers are not used by SNMP.
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first & 0x80 == 0 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = rest.get(..n)?;
        (bytes.iter().fold(0usize, |acc, &x| acc << 8 | usize::from(x)), rest.get(n..)?)
    };
    let body = rest.get(..len)?;
    Some((tag, body, rest.get(len..)?))
}

fn int(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 8 {
        return None;
    }
    let neg = b.first().is_some_and(|x| x & 0x80 != 0);
    Some(b.iter().fold(if neg { -1i64 } else { 0 }, |acc, &x| acc << 8 | i64::from(x)))
}

#[derive(Debug, Default, PartialEq)]
struct Parsed {
    version: &'static str,
    community: Option<String>,
    user: Option<String>,
    /// The PDU's tag, when the message is not encrypted.
    pdu: Option<u8>,
    display_string: Option<String>,
    uptime_ticks: Option<u64>,
}

fn parse(b: &[u8]) -> Option<Parsed> {
    let (0x30, msg, _) = tlv(b)? else { return None };
    let (0x02, ver, rest) = tlv(msg)? else { return None };
    let mut p = Parsed::default();
    let pdu_bytes = match int(ver)? {
        0 | 1 => {
            p.version = if int(ver)? == 0 { "1" } else { "2c" };
            let (0x04, community, rest) = tlv(rest)? else { return None };
            p.community = Some(zeek_escape(community));
            rest
        }
        3 => {
            p.version = "3";
            let (0x30, _global, rest) = tlv(rest)? else { return None };
            let (0x04, sec, rest) = tlv(rest)? else { return None };
            // USM parameters: engine id, boots, time, user name, ...
            if let Some((0x30, usm, _)) = tlv(sec) {
                let user =
                    tlv(usm).and_then(|(_, _, r)| tlv(r)).and_then(|(_, _, r)| tlv(r)).and_then(|(_, _, r)| tlv(r));
                if let Some((0x04, name, _)) = user {
                    p.user = Some(zeek_escape(name));
                }
            }
            match tlv(rest)? {
                // A scoped PDU: context engine id, context name, PDU.
                (0x30, scoped, _) => {
                    let (_, _, r) = tlv(scoped)?;
                    let (_, _, r) = tlv(r)?;
                    r
                }
                // Encrypted: nothing more to read.
                (0x04, ..) => return Some(p),
                _ => return None,
            }
        }
        _ => return None,
    };
    let (tag, pdu, _) = tlv(pdu_bytes)?;
    if !(0xa0..=0xa8).contains(&tag) {
        return None;
    }
    p.pdu = Some(tag);
    if tag == 0xa2 {
        // request-id, error-status, error-index, then the varbinds.
        let (_, _, r) = tlv(pdu)?;
        let (_, _, r) = tlv(r)?;
        let (_, _, r) = tlv(r)?;
        let (0x30, mut binds, _) = tlv(r)? else { return Some(p) };
        for _ in 0..MAX_VARBINDS {
            let Some((0x30, bind, rest)) = tlv(binds) else { break };
            binds = rest;
            let Some((0x06, oid, r)) = tlv(bind) else { continue };
            let Some((vtag, value, _)) = tlv(r) else { continue };
            match (oid, vtag) {
                (SYS_DESCR, 0x04) => p.display_string = Some(zeek_escape(value)),
                // TimeTicks, hundredths of a second.
                (SYS_UPTIME, 0x43) => p.uptime_ticks = int(value).and_then(|v| u64::try_from(v).ok()),
                _ => {}
            }
        }
    }
    Some(p)
}

#[derive(Debug, Default)]
pub struct SnmpState {
    rec: Option<SnmpRecord>,
    last: Option<Time>,
    failed: bool,
}

impl SnmpState {
    pub fn failed(&self) -> bool {
        self.failed
    }

    pub fn message(&mut self, ctx: &FlowCtx, payload: &[u8], redact: bool, out: &mut AppOut) {
        let Some(p) = parse(payload) else {
            if self.rec.is_some() {
                out.weirds.push("snmp_bad_message");
            } else {
                self.failed = true;
            }
            return;
        };
        if self.rec.is_none() {
            out.confirmed = Some("snmp");
        }
        let rec = self.rec.get_or_insert(SnmpRecord {
            ts: ctx.ts,
            uid: ctx.uid,
            orig_h: ctx.orig.0,
            orig_p: ctx.orig.1,
            resp_h: ctx.resp.0,
            resp_p: ctx.resp.1,
            duration: Interval(0),
            version: p.version,
            community: None,
            user: None,
            get_requests: 0,
            get_bulk_requests: 0,
            get_responses: 0,
            set_requests: 0,
            traps: 0,
            display_string: None,
            up_since: None,
        });
        if rec.community.is_none() {
            rec.community = p.community.map(|c| if redact { "<redacted>".into() } else { c });
        }
        if rec.user.is_none() {
            rec.user = p.user;
        }
        match p.pdu {
            Some(0xa0 | 0xa1) => rec.get_requests += 1,
            Some(0xa5) => rec.get_bulk_requests += 1,
            Some(0xa2) => rec.get_responses += 1,
            Some(0xa3) => rec.set_requests += 1,
            Some(0xa4 | 0xa6 | 0xa7) => rec.traps += 1,
            _ => {}
        }
        if p.display_string.is_some() {
            rec.display_string = p.display_string;
        }
        if let Some(t) = p.uptime_ticks {
            rec.up_since = Some(Time(ctx.ts.0 - (t as i64).saturating_mul(10_000)));
        }
        self.last = Some(ctx.ts);
    }

    pub fn finish(&mut self, _ctx: &FlowCtx, out: &mut AppOut) {
        if let Some(mut r) = self.rec.take() {
            r.duration = Interval(self.last.map_or(0, |l| l.0 - r.ts.0));
            out.events.push(Event::Snmp(r));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn ctx(is_orig: bool, ts: i64) -> FlowCtx {
        FlowCtx { ts: Time(ts), ..crate::proto::test_ctx(("10.33.1.50", 40000), ("10.33.3.12", 161), is_orig) }
    }

    fn el(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        if body.len() < 128 {
            v.push(body.len() as u8);
        } else {
            v.push(0x82);
            v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(body);
        v
    }

    /// A v2c message with the community and one PDU whose varbinds are
    /// (oid, tag, value).
    pub fn v2c(community: &str, pdu: u8, binds: &[(&[u8], u8, &[u8])]) -> Vec<u8> {
        let mut vb = Vec::new();
        for (oid, tag, val) in binds {
            vb.extend(el(0x30, &[el(0x06, oid), el(*tag, val)].concat()));
        }
        let body = [el(0x02, &[1]), el(0x02, &[0]), el(0x02, &[0]), el(0x30, &vb)].concat();
        el(0x30, &[el(0x02, &[1]), el(0x04, community.as_bytes()), el(pdu, &body)].concat())
    }

    #[test]
    fn a_get_and_its_response() {
        let mut s = SnmpState::default();
        let mut out = AppOut::default();
        s.message(&ctx(true, 1_000_000), &v2c("public", 0xa0, &[(SYS_DESCR, 0x05, &[])]), false, &mut out);
        let resp = v2c("public", 0xa2, &[(SYS_DESCR, 0x04, b"StreetLight OS 2.1"), (SYS_UPTIME, 0x43, &[0x01, 0x00])]);
        s.message(&ctx(false, 1_500_000), &resp, false, &mut out);
        s.finish(&ctx(true, 0), &mut out);
        assert_eq!(out.confirmed, Some("snmp"));
        let [Event::Snmp(r)] = &out.events[..] else { panic!("{:?}", out.events) };
        assert_eq!((r.version, r.community.as_deref()), ("2c", Some("public")));
        assert_eq!((r.get_requests, r.get_responses), (1, 1));
        assert_eq!(r.display_string.as_deref(), Some("StreetLight OS 2.1"));
        // 256 ticks = 2.56 s before the response.
        assert_eq!(r.up_since, Some(Time(1_500_000 - 2_560_000)));
        assert_eq!(r.duration, Interval(500_000));
    }

    #[test]
    fn redaction_v3_users_and_hostile_bytes() {
        let mut s = SnmpState::default();
        let mut out = AppOut::default();
        s.message(&ctx(true, 1), &v2c("s3cr3t", 0xa3, &[]), true, &mut out);
        s.finish(&ctx(true, 1), &mut out);
        let [Event::Snmp(r)] = &out.events[..] else { panic!() };
        assert_eq!((r.community.as_deref(), r.set_requests), (Some("<redacted>"), 1));
        // v3 with a USM user and an encrypted PDU.
        let usm = el(
            0x30,
            &[el(0x04, b"\x80\0"), el(0x02, &[0]), el(0x02, &[0]), el(0x04, b"ops"), el(0x04, b""), el(0x04, b"")]
                .concat(),
        );
        let v3 = el(
            0x30,
            &[el(0x02, &[3]), el(0x30, &[el(0x02, &[1])].concat()), el(0x04, &usm), el(0x04, b"\x01\x02")].concat(),
        );
        assert_eq!(parse(&v3).map(|p| (p.version, p.user)), Some(("3", Some("ops".into()))));
        let msg = v2c("public", 0xa2, &[(SYS_DESCR, 0x04, b"x")]);
        for cut in 0..msg.len() {
            let _ = parse(&msg[..cut]);
        }
        assert!(parse(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        let mut s = SnmpState::default();
        s.message(&ctx(true, 1), b"not snmp at all", false, &mut AppOut::default());
        assert!(s.failed());
    }
}
