//! BACnet/IP (ASHRAE 135 Annex J and clauses 6 and 20): the BVLC header,
//! the NPDU (network addresses skipped, network-layer messages noted), and
//! the APDU header with its service; for property reads and writes, the
//! object and property. One `bacnet.log` line per message, as CISA ICSNPP's.

use crate::proto::{AppOut, FlowCtx};
use schema::{BacnetRecord, Event};

pub const PORT: u16 = 47808;

fn bvlc_name(f: u8) -> String {
    match f {
        0x00 => "bvlc-result".into(),
        0x01 => "write-broadcast-distribution-table".into(),
        0x02 => "read-broadcast-distribution-table".into(),
        0x03 => "read-broadcast-distribution-table-ack".into(),
        0x04 => "forwarded-npdu".into(),
        0x05 => "register-foreign-device".into(),
        0x06 => "read-foreign-device-table".into(),
        0x07 => "read-foreign-device-table-ack".into(),
        0x08 => "delete-foreign-device-table-entry".into(),
        0x09 => "distribute-broadcast-to-network".into(),
        0x0a => "original-unicast-npdu".into(),
        0x0b => "original-broadcast-npdu".into(),
        0x0c => "secure-bvll".into(),
        n => format!("unknown-{n}"),
    }
}

fn confirmed_name(s: u8) -> String {
    let n = match s {
        0 => "acknowledge-alarm",
        1 => "confirmed-cov-notification",
        2 => "confirmed-event-notification",
        3 => "get-alarm-summary",
        4 => "get-enrollment-summary",
        5 => "subscribe-cov",
        6 => "atomic-read-file",
        7 => "atomic-write-file",
        8 => "add-list-element",
        9 => "remove-list-element",
        10 => "create-object",
        11 => "delete-object",
        12 => "read-property",
        14 => "read-property-multiple",
        15 => "write-property",
        16 => "write-property-multiple",
        17 => "device-communication-control",
        18 => "confirmed-private-transfer",
        19 => "confirmed-text-message",
        20 => "reinitialize-device",
        21 => "vt-open",
        22 => "vt-close",
        23 => "vt-data",
        26 => "read-range",
        27 => "life-safety-operation",
        28 => "subscribe-cov-property",
        29 => "get-event-information",
        _ => return format!("unknown-{s}"),
    };
    n.into()
}

fn unconfirmed_name(s: u8) -> String {
    let n = match s {
        0 => "i-am",
        1 => "i-have",
        2 => "unconfirmed-cov-notification",
        3 => "unconfirmed-event-notification",
        4 => "unconfirmed-private-transfer",
        5 => "unconfirmed-text-message",
        6 => "time-synchronization",
        7 => "who-has",
        8 => "who-is",
        9 => "utc-time-synchronization",
        10 => "write-group",
        _ => return format!("unknown-{s}"),
    };
    n.into()
}

fn object_type(t: u32) -> String {
    let n = match t {
        0 => "analog-input",
        1 => "analog-output",
        2 => "analog-value",
        3 => "binary-input",
        4 => "binary-output",
        5 => "binary-value",
        6 => "calendar",
        7 => "command",
        8 => "device",
        10 => "file",
        13 => "multi-state-input",
        14 => "multi-state-output",
        15 => "notification-class",
        17 => "schedule",
        19 => "multi-state-value",
        20 => "trend-log",
        _ => return t.to_string(),
    };
    n.into()
}

fn property_name(p: u32) -> String {
    let n = match p {
        28 => "description",
        36 => "event-state",
        75 => "object-identifier",
        76 => "object-list",
        77 => "object-name",
        79 => "object-type",
        81 => "out-of-service",
        85 => "present-value",
        87 => "priority-array",
        103 => "reliability",
        104 => "relinquish-default",
        111 => "status-flags",
        112 => "system-status",
        117 => "units",
        _ => return p.to_string(),
    };
    n.into()
}

/// Object and property of a ReadProperty/WriteProperty request: context
/// tag 0 (object identifier, 4 bytes) then context tag 1 (1 to 4 bytes).
fn object_property(b: &[u8]) -> Option<(String, String)> {
    if *b.first()? != 0x0c {
        return None;
    }
    let id = u32::from_be_bytes([*b.get(1)?, *b.get(2)?, *b.get(3)?, *b.get(4)?]);
    let tag = *b.get(5)?;
    if tag & 0xf8 != 0x18 {
        return None;
    }
    let len = usize::from(tag & 7);
    if !(1..=4).contains(&len) {
        return None;
    }
    let prop = b.get(6..6 + len)?.iter().fold(0u32, |acc, &x| acc << 8 | u32::from(x));
    Some((format!("{}:{}", object_type(id >> 22), id & 0x3f_ffff), property_name(prop)))
}

#[derive(Debug, Default)]
struct Apdu {
    pdu_type: Option<&'static str>,
    service: Option<String>,
    invoke_id: Option<u8>,
    result: Option<String>,
    object: Option<(String, String)>,
}

fn apdu(b: &[u8]) -> Option<Apdu> {
    let first = *b.first()?;
    let mut a = Apdu::default();
    match first >> 4 {
        0 => {
            a.pdu_type = Some("confirmed-request");
            a.invoke_id = Some(*b.get(2)?);
            // Segmented requests carry a sequence number and window size.
            let at = if first & 0x08 != 0 { 5 } else { 3 };
            let svc = *b.get(at)?;
            a.service = Some(confirmed_name(svc));
            if matches!(svc, 12 | 15) {
                a.object = object_property(b.get(at + 1..)?);
            }
        }
        1 => {
            a.pdu_type = Some("unconfirmed-request");
            a.service = Some(unconfirmed_name(*b.get(1)?));
        }
        2 => {
            a.pdu_type = Some("simple-ack");
            a.invoke_id = Some(*b.get(1)?);
            a.service = Some(confirmed_name(*b.get(2)?));
            a.result = Some("ack".into());
        }
        3 => {
            a.pdu_type = Some("complex-ack");
            a.invoke_id = Some(*b.get(1)?);
            let at = if first & 0x08 != 0 { 4 } else { 2 };
            let svc = *b.get(at)?;
            a.service = Some(confirmed_name(svc));
            if svc == 12 {
                a.object = object_property(b.get(at + 1..)?);
            }
            a.result = Some("ack".into());
        }
        4 => {
            a.pdu_type = Some("segment-ack");
            a.invoke_id = Some(*b.get(1)?);
        }
        5 => {
            a.pdu_type = Some("error");
            a.invoke_id = Some(*b.get(1)?);
            a.service = Some(confirmed_name(*b.get(2)?));
            // Error class and code, each an application-tagged enumerated.
            let class = b.get(4).copied().unwrap_or(0);
            let code = b.get(6).copied().unwrap_or(0);
            a.result = Some(format!("error:{class}/{code}"));
        }
        6 => {
            a.pdu_type = Some("reject");
            a.invoke_id = Some(*b.get(1)?);
            a.result = Some(format!("reject:{}", b.get(2)?));
        }
        7 => {
            a.pdu_type = Some("abort");
            a.invoke_id = Some(*b.get(1)?);
            a.result = Some(format!("abort:{}", b.get(2)?));
        }
        _ => return None,
    }
    Some(a)
}

/// The APDU of an NPDU, or None for a network-layer message.
fn npdu(b: &[u8]) -> Result<Option<&[u8]>, ()> {
    if b.first() != Some(&1) {
        return Err(());
    }
    let ctrl = *b.get(1).ok_or(())?;
    let mut at = 2;
    if ctrl & 0x20 != 0 {
        let dlen = usize::from(*b.get(at + 2).ok_or(())?);
        at += 3 + dlen;
    }
    if ctrl & 0x08 != 0 {
        let slen = usize::from(*b.get(at + 2).ok_or(())?);
        at += 3 + slen;
    }
    if ctrl & 0x20 != 0 {
        at += 1;
    }
    if ctrl & 0x80 != 0 {
        return Ok(None);
    }
    b.get(at..).filter(|r| !r.is_empty()).map(Some).ok_or(())
}

#[derive(Debug, Default)]
pub struct BacnetState {
    confirmed: bool,
    failed: bool,
}

impl BacnetState {
    pub fn failed(&self) -> bool {
        self.failed
    }

    pub fn message(&mut self, ctx: &FlowCtx, payload: &[u8], out: &mut AppOut) {
        let Some(rec) = Self::parse(ctx, payload) else {
            if self.confirmed {
                out.weirds.push("bacnet_bad_message");
            } else {
                self.failed = true;
            }
            return;
        };
        if !self.confirmed {
            self.confirmed = true;
            out.confirmed = Some("bacnet");
        }
        out.events.push(Event::Bacnet(rec));
    }

    fn parse(ctx: &FlowCtx, b: &[u8]) -> Option<BacnetRecord> {
        // BVLC: type 0x81, function, length of the whole message.
        if *b.first()? != 0x81 {
            return None;
        }
        let func = *b.get(1)?;
        let len = usize::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?]));
        if len < 4 || len > b.len() {
            return None;
        }
        let body = b.get(4..len)?;
        let mut rec = BacnetRecord {
            ts: ctx.ts,
            uid: ctx.uid,
            orig_h: ctx.orig.0,
            orig_p: ctx.orig.1,
            resp_h: ctx.resp.0,
            resp_p: ctx.resp.1,
            is_orig: ctx.is_orig,
            bvlc_function: bvlc_name(func),
            pdu_type: None,
            pdu_service: None,
            invoke_id: None,
            result_code: None,
            object: None,
            property: None,
        };
        let npdu_bytes = match func {
            0x09..=0x0b => body,
            // Forwarded: the original source's address and port first.
            0x04 => body.get(6..)?,
            0x00 => {
                rec.result_code = Some(format!("bvlc:{}", u16::from_be_bytes([*body.first()?, *body.get(1)?])));
                return Some(rec);
            }
            _ => return Some(rec),
        };
        let Some(apdu_bytes) = npdu(npdu_bytes).ok()? else { return Some(rec) };
        let a = apdu(apdu_bytes)?;
        rec.pdu_type = a.pdu_type;
        rec.pdu_service = a.service;
        rec.invoke_id = a.invoke_id;
        rec.result_code = a.result;
        if let Some((o, p)) = a.object {
            rec.object = Some(o);
            rec.property = Some(p);
        }
        Some(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> FlowCtx {
        crate::proto::test_ctx(("10.33.9.5", 47808), ("10.33.5.20", 47808), true)
    }

    fn bvlc(apdu: &[u8]) -> Vec<u8> {
        let mut v = vec![0x81, 0x0a, 0, 0, 0x01, 0x04];
        v.extend_from_slice(apdu);
        let n = v.len() as u16;
        v[2..4].copy_from_slice(&n.to_be_bytes());
        v
    }

    #[test]
    fn read_property_and_device_control() {
        let mut s = BacnetState::default();
        let mut out = AppOut::default();
        // ReadProperty analog-value 3, present-value; invoke id 7.
        s.message(&ctx(), &bvlc(&[0x00, 0x05, 0x07, 0x0c, 0x0c, 0x00, 0x80, 0x00, 0x03, 0x19, 0x55]), &mut out);
        // DeviceCommunicationControl, disable.
        s.message(&ctx(), &bvlc(&[0x00, 0x05, 0x08, 0x11, 0x19, 0x01]), &mut out);
        assert_eq!(out.confirmed, Some("bacnet"));
        let recs: Vec<_> = out
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Bacnet(r) => Some((r.pdu_service.clone(), r.object.clone(), r.property.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            recs,
            [
                (Some("read-property".into()), Some("analog-value:3".into()), Some("present-value".into())),
                (Some("device-communication-control".into()), None, None)
            ]
        );
    }

    #[test]
    fn not_bacnet_and_truncations() {
        let mut s = BacnetState::default();
        s.message(&ctx(), b"\x00\x01 not bacnet", &mut AppOut::default());
        assert!(s.failed());
        let m = bvlc(&[0x00, 0x05, 0x07, 0x0c, 0x0c, 0x00, 0x80, 0x00, 0x03, 0x19, 0x55]);
        for cut in 0..m.len() {
            let _ = BacnetState::parse(&ctx(), &m[..cut]);
        }
        // An NPDU announcing more address bytes than it has.
        let _ = BacnetState::parse(&ctx(), &[0x81, 0x0a, 0, 8, 0x01, 0x28, 0xff, 0xff]);
    }
}
