//! NTP (RFC 5905 7.3): one `ntp.log` record per standard message (modes 1
//! to 5); control and private messages (modes 6 and 7) are confirmed as NTP
//! but not logged, as in Zeek.

use crate::proto::{AppOut, FlowCtx};
use schema::{Event, Interval, NtpRecord, Time};
use std::net::Ipv4Addr;

pub const PORT: u16 = 123;

/// Seconds from 1900-01-01 (NTP's era 0) to the Unix epoch.
const NTP_UNIX_OFFSET: i64 = 2_208_988_800;

fn ntp_time(b: &[u8]) -> Time {
    let secs = i64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let frac = u64::from(u32::from_be_bytes([b[4], b[5], b[6], b[7]]));
    if secs == 0 && frac == 0 {
        return Time(0);
    }
    Time((secs - NTP_UNIX_OFFSET) * 1_000_000 + ((frac * 1_000_000) >> 32) as i64)
}

fn short(b: &[u8]) -> Interval {
    let v = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    Interval(((v * 1_000_000) >> 16) as i64)
}

fn pow2(e: i8) -> Interval {
    let secs = 2f64.powi(i32::from(e));
    Interval((secs * 1e6).round().min(i64::MAX as f64) as i64)
}

#[derive(Debug, Default)]
pub struct NtpState {
    bad: u8,
}

impl NtpState {
    pub fn failed(&self) -> bool {
        self.bad >= 4
    }

    pub fn message(&mut self, ctx: &FlowCtx, p: &[u8], out: &mut AppOut) {
        let Some(h) = p.get(..48) else {
            out.weirds.push("NTP_message_too_short");
            self.bad += 1;
            return;
        };
        let (version, mode) = ((h[0] >> 3) & 0x07, h[0] & 0x07);
        if !(1..=4).contains(&version) {
            out.weirds.push("NTP_bad_version");
            self.bad += 1;
            return;
        }
        out.confirmed = Some("ntp");
        if !(1..=5).contains(&mode) {
            return;
        }
        let stratum = h[1];
        let ref_id = if stratum <= 1 {
            crate::proto::zeek_escape(h[12..16].split(|&b| b == 0).next().unwrap_or(&[]))
        } else {
            Ipv4Addr::new(h[12], h[13], h[14], h[15]).to_string()
        };
        // Extension fields (RFC 7822) follow the header, each at least 16
        // bytes; a 20-byte MAC may end the message.
        let mut num_exts = 0;
        let mut rest = &p[48..];
        while rest.len() > 20 {
            let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            if len < 16 || len > rest.len() {
                break;
            }
            num_exts += 1;
            rest = &rest[len..];
        }
        out.events.push(Event::Ntp(NtpRecord {
            ts: ctx.ts,
            uid: ctx.uid,
            orig_h: ctx.orig.0,
            orig_p: ctx.orig.1,
            resp_h: ctx.resp.0,
            resp_p: ctx.resp.1,
            version,
            mode,
            stratum,
            poll: pow2(h[2] as i8),
            precision: pow2(h[3] as i8),
            root_delay: short(&h[4..8]),
            root_disp: short(&h[8..12]),
            ref_id,
            ref_time: ntp_time(&h[16..24]),
            org_time: ntp_time(&h[24..32]),
            rec_time: ntp_time(&h[32..40]),
            xmt_time: ntp_time(&h[40..48]),
            num_exts,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::FlowUid;

    #[test]
    fn server_reply() {
        let mut p = vec![0x24, 2, 6, 0xec];
        p.extend_from_slice(&[0, 0, 0x20, 0x00]); // root delay 1/8 s
        p.extend_from_slice(&[0, 0, 0x10, 0x00]);
        p.extend_from_slice(&[10, 0, 0, 1]);
        let t = (1_700_000_000i64 + NTP_UNIX_OFFSET) as u32;
        for _ in 0..4 {
            p.extend_from_slice(&t.to_be_bytes());
            p.extend_from_slice(&0x8000_0000u32.to_be_bytes());
        }
        let ctx = FlowCtx {
            ts: Time(1),
            uid: FlowUid::new(1),
            orig: ("10.0.0.2".parse().unwrap(), 123),
            resp: ("10.0.0.1".parse().unwrap(), 123),
            is_orig: false,
            keep_file_bytes: 0,
            orig_local: false,
            resp_local: false,
        };
        let mut out = AppOut::default();
        let mut st = NtpState::default();
        st.message(&ctx, &p, &mut out);
        let Some(Event::Ntp(r)) = out.events.pop() else { panic!() };
        assert_eq!((r.version, r.mode, r.stratum), (4, 4, 2));
        assert_eq!(r.poll, Interval(64_000_000));
        assert_eq!(r.root_delay, Interval(125_000));
        assert_eq!(r.ref_id, "10.0.0.1");
        assert_eq!(r.xmt_time, Time(1_700_000_000_500_000));
        for n in 0..p.len() {
            st.message(&ctx, &p[..n], &mut out);
        }
    }
}
