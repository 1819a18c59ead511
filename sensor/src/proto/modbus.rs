//! Modbus/TCP (Modbus Application Protocol v1.1b3 and the Messaging on
//! TCP/IP guide): each ADU is an MBAP header (transaction, protocol 0,
//! length, unit) and a PDU (function code, data). One `modbus.log` line per
//! message, and a `modbus_detailed.log` line for the reads and writes whose
//! addresses and values the PDU carries.

use crate::proto::stream::Chunk;
use crate::proto::{AppOut, FlowCtx};
use nom::bytes::complete::take;
use nom::number::complete::{be_u16, be_u8};
use nom::IResult;
use schema::{Event, ModbusDetailRecord, ModbusRecord};
use std::collections::HashMap;

pub const PORT: u16 = 502;

/// The MBAP length covers the unit byte and the PDU: at most 253 bytes of
/// PDU (section 4.1 of the application protocol), so 254.
const MAX_LEN: u16 = 254;
/// Requests awaiting their response, per connection.
const MAX_PENDING: usize = 256;

#[derive(Debug, PartialEq)]
struct Adu<'a> {
    tid: u16,
    unit: u8,
    func: u8,
    data: &'a [u8],
}

/// One ADU from the front of `input`; `Ok(None)` when more bytes are needed.
fn adu(input: &[u8]) -> Result<Option<(Adu<'_>, usize)>, ()> {
    fn header(i: &[u8]) -> IResult<&[u8], (u16, u16, u16, u8)> {
        let (i, tid) = be_u16(i)?;
        let (i, proto) = be_u16(i)?;
        let (i, len) = be_u16(i)?;
        let (i, unit) = be_u8(i)?;
        Ok((i, (tid, proto, len, unit)))
    }
    if input.len() < 8 {
        return Ok(None);
    }
    let (rest, (tid, proto, len, unit)) = header(input).map_err(|_| ())?;
    if proto != 0 || !(2..=MAX_LEN).contains(&len) {
        return Err(());
    }
    let pdu_len = usize::from(len) - 1;
    if rest.len() < pdu_len {
        return Ok(None);
    }
    let (_, pdu) = take::<_, _, nom::error::Error<&[u8]>>(pdu_len)(rest).map_err(|_| ())?;
    let (func, data) = pdu.split_first().ok_or(())?;
    Ok(Some((Adu { tid, unit, func: *func, data }, 6 + usize::from(len))))
}

pub fn func_name(code: u8) -> Option<&'static str> {
    Some(match code {
        1 => "READ_COILS",
        2 => "READ_DISCRETE_INPUTS",
        3 => "READ_HOLDING_REGISTERS",
        4 => "READ_INPUT_REGISTERS",
        5 => "WRITE_SINGLE_COIL",
        6 => "WRITE_SINGLE_REGISTER",
        7 => "READ_EXCEPTION_STATUS",
        8 => "DIAGNOSTICS",
        11 => "GET_COMM_EVENT_COUNTER",
        12 => "GET_COMM_EVENT_LOG",
        15 => "WRITE_MULTIPLE_COILS",
        16 => "WRITE_MULTIPLE_REGISTERS",
        17 => "REPORT_SLAVE_ID",
        20 => "READ_FILE_RECORD",
        21 => "WRITE_FILE_RECORD",
        22 => "MASK_WRITE_REGISTER",
        23 => "READ_WRITE_MULTIPLE_REGISTERS",
        24 => "READ_FIFO_QUEUE",
        43 => "ENCAP_INTERFACE_TRANSPORT",
        _ => return None,
    })
}

fn exception_name(code: u8) -> String {
    match code {
        1 => "ILLEGAL_FUNCTION".into(),
        2 => "ILLEGAL_DATA_ADDRESS".into(),
        3 => "ILLEGAL_DATA_VALUE".into(),
        4 => "SLAVE_DEVICE_FAILURE".into(),
        5 => "ACKNOWLEDGE".into(),
        6 => "SLAVE_DEVICE_BUSY".into(),
        8 => "MEMORY_PARITY_ERROR".into(),
        10 => "GATEWAY_PATH_UNAVAILABLE".into(),
        11 => "GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND".into(),
        n => format!("unknown-{n}"),
    }
}

fn func_text(code: u8) -> String {
    func_name(code).map_or_else(|| format!("unknown-{code}"), str::to_string)
}

/// Address, quantity and values a PDU carries, for the detail log.
#[derive(Debug, Default, PartialEq)]
struct Detail {
    address: Option<u16>,
    quantity: Option<u16>,
    values: Option<String>,
}

fn u16s(b: &[u8], n: usize) -> String {
    b.chunks_exact(2).take(n).map(|c| u16::from_be_bytes([c[0], c[1]]).to_string()).collect::<Vec<_>>().join(",")
}

fn bits(b: &[u8], n: usize) -> String {
    (0..n)
        .map(|i| b.get(i / 8).map_or("?", |byte| if byte >> (i % 8) & 1 == 1 { "1" } else { "0" }))
        .collect::<Vec<_>>()
        .join(",")
}

fn be(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// What a request or response says about addresses and values; `asked` is
/// the request's (address, quantity) for responses that omit them.
fn detail(func: u8, is_req: bool, d: &[u8], asked: Option<(u16, u16)>) -> Option<Detail> {
    let mut x = Detail::default();
    match (func, is_req) {
        (1..=4, true) => {
            x.address = be(d, 0);
            x.quantity = be(d, 2);
        }
        (1 | 2, false) => {
            let (addr, qty) = asked.unwrap_or((0, 0));
            let n = usize::from(*d.first()?);
            let payload = d.get(1..1 + n)?;
            let qty = if asked.is_some() { usize::from(qty) } else { n * 8 };
            x.address = asked.map(|_| addr);
            x.quantity = u16::try_from(qty).ok();
            x.values = Some(bits(payload, qty));
        }
        (3 | 4, false) => {
            let n = usize::from(*d.first()?);
            let payload = d.get(1..1 + n)?;
            x.address = asked.map(|a| a.0);
            x.quantity = u16::try_from(n / 2).ok();
            x.values = Some(u16s(payload, n / 2));
        }
        (5, _) => {
            x.address = be(d, 0);
            x.quantity = Some(1);
            // 0xFF00 is ON, 0x0000 OFF (6.5).
            x.values = be(d, 2).map(|v| if v == 0xff00 { "1".into() } else { "0".into() });
        }
        (6, _) => {
            x.address = be(d, 0);
            x.quantity = Some(1);
            x.values = be(d, 2).map(|v| v.to_string());
        }
        (15, true) => {
            x.address = be(d, 0);
            x.quantity = be(d, 2);
            let n = usize::from(*d.get(4)?);
            x.values = Some(bits(d.get(5..5 + n)?, usize::from(x.quantity?)));
        }
        (16, true) => {
            x.address = be(d, 0);
            x.quantity = be(d, 2);
            let n = usize::from(*d.get(4)?);
            x.values = Some(u16s(d.get(5..5 + n)?, usize::from(x.quantity?)));
        }
        (15 | 16, false) => {
            x.address = be(d, 0);
            x.quantity = be(d, 2);
        }
        _ => return None,
    }
    Some(x)
}

#[derive(Debug, Default)]
pub struct ModbusState {
    bufs: [Vec<u8>; 2],
    /// (tid, function) -> (address, quantity) of outstanding reads.
    pending: HashMap<(u16, u8), (u16, u16)>,
    confirmed: bool,
    failed: bool,
    done: [bool; 2],
}

impl ModbusState {
    pub fn failed(&self) -> bool {
        self.failed
    }

    pub fn stream(&mut self, ctx: &FlowCtx, chunk: Chunk<'_>, out: &mut AppOut) {
        let s = usize::from(!ctx.is_orig);
        if self.failed || self.done.get(s).copied().unwrap_or(true) {
            return;
        }
        let data = match chunk {
            Chunk::Data(d) => d,
            Chunk::Gap(_) => {
                // Without the lengths in between, framing cannot be found
                // again with certainty: this side is over.
                out.weirds.push("modbus_content_gap");
                if let Some(d) = self.done.get_mut(s) {
                    *d = true;
                }
                return;
            }
        };
        let Some(buf) = self.bufs.get_mut(s) else { return };
        buf.extend_from_slice(data);
        let mut used = 0;
        while let Some(rest) = buf.get(used..) {
            match adu(rest) {
                Ok(None) => break,
                Ok(Some((a, n))) => {
                    used += n;
                    if !self.confirmed {
                        self.confirmed = true;
                        out.confirmed = Some("modbus");
                    }
                    Self::emit(&mut self.pending, ctx, &a, out);
                }
                Err(()) => {
                    if self.confirmed {
                        out.weirds.push("modbus_bad_header");
                        if let Some(d) = self.done.get_mut(s) {
                            *d = true;
                        }
                    } else {
                        // Something else on port 502.
                        self.failed = true;
                    }
                    used = buf.len();
                    break;
                }
            }
        }
        buf.drain(..used.min(buf.len()));
    }

    fn emit(pending: &mut HashMap<(u16, u8), (u16, u16)>, ctx: &FlowCtx, a: &Adu<'_>, out: &mut AppOut) {
        let is_req = ctx.is_orig;
        let base = a.func & 0x7f;
        let exception = (!is_req && a.func & 0x80 != 0).then(|| exception_name(a.data.first().copied().unwrap_or(0)));
        out.events.push(Event::Modbus(ModbusRecord {
            ts: ctx.ts,
            uid: ctx.uid,
            orig_h: ctx.orig.0,
            orig_p: ctx.orig.1,
            resp_h: ctx.resp.0,
            resp_p: ctx.resp.1,
            tid: a.tid,
            unit: a.unit,
            func: func_text(base),
            pdu_type: if is_req { "REQ" } else { "RESP" },
            exception: exception.clone(),
        }));
        let asked = if is_req {
            if let (1..=4, Some(addr), Some(qty)) = (a.func, be(a.data, 0), be(a.data, 2)) {
                if pending.len() >= MAX_PENDING {
                    pending.clear();
                }
                pending.insert((a.tid, a.func), (addr, qty));
            }
            None
        } else {
            pending.remove(&(a.tid, base))
        };
        if exception.is_some() {
            return;
        }
        if let Some(d) = detail(a.func, is_req, a.data, asked) {
            out.events.push(Event::ModbusDetail(ModbusDetailRecord {
                ts: ctx.ts,
                uid: ctx.uid,
                orig_h: ctx.orig.0,
                orig_p: ctx.orig.1,
                resp_h: ctx.resp.0,
                resp_p: ctx.resp.1,
                is_orig: is_req,
                tid: a.tid,
                unit: a.unit,
                func: func_text(base),
                request_response: if is_req { "REQUEST" } else { "RESPONSE" },
                address: d.address,
                quantity: d.quantity,
                values: d.values,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(is_orig: bool) -> FlowCtx {
        crate::proto::test_ctx(("10.0.0.9", 3082), ("10.0.0.3", 502), is_orig)
    }

    // Read 2 holding registers from 100, unit 10; the answer 7 and 8.
    const READ: &[u8] = &[0, 1, 0, 0, 0, 6, 10, 3, 0, 100, 0, 2];
    const ANSWER: &[u8] = &[0, 1, 0, 0, 0, 7, 10, 3, 4, 0, 7, 0, 8];

    #[test]
    fn a_read_and_its_answer_at_every_split() {
        for cut in 0..=READ.len() {
            let mut m = ModbusState::default();
            let mut out = AppOut::default();
            m.stream(&ctx(true), Chunk::Data(&READ[..cut]), &mut out);
            m.stream(&ctx(true), Chunk::Data(&READ[cut..]), &mut out);
            m.stream(&ctx(false), Chunk::Data(ANSWER), &mut out);
            assert_eq!(out.confirmed, Some("modbus"));
            let detail: Vec<_> = out
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::ModbusDetail(d) => Some((d.address, d.quantity, d.values.clone())),
                    _ => None,
                })
                .collect();
            assert_eq!(detail, [(Some(100), Some(2), None), (Some(100), Some(2), Some("7,8".into()))], "cut {cut}");
        }
    }

    #[test]
    fn writes_exceptions_and_other_protocols() {
        let mut m = ModbusState::default();
        let mut out = AppOut::default();
        // Write coil 5 ON; the answer is an exception (illegal address).
        m.stream(&ctx(true), Chunk::Data(&[0, 2, 0, 0, 0, 6, 1, 5, 0, 5, 0xff, 0]), &mut out);
        m.stream(&ctx(false), Chunk::Data(&[0, 2, 0, 0, 0, 3, 1, 0x85, 2]), &mut out);
        let recs: Vec<_> = out
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Modbus(r) => Some((r.func.clone(), r.pdu_type, r.exception.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            recs,
            [
                ("WRITE_SINGLE_COIL".to_string(), "REQ", None),
                ("WRITE_SINGLE_COIL".to_string(), "RESP", Some("ILLEGAL_DATA_ADDRESS".into()))
            ]
        );
        // TLS on 502 is not Modbus.
        let mut m = ModbusState::default();
        m.stream(&ctx(true), Chunk::Data(&[0x16, 3, 1, 0, 0x50, 1, 0, 0]), &mut AppOut::default());
        assert!(m.failed());
    }

    #[test]
    fn hostile_lengths_do_not_panic() {
        for len in [0u16, 1, 2, 255, 0xffff] {
            let mut m = ModbusState::default();
            let mut out = AppOut::default();
            let mut b = vec![0, 1, 0, 0];
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(&[1, 16, 0, 0, 0xff, 0xff, 0xff]);
            m.stream(&ctx(true), Chunk::Data(&b), &mut out);
            m.stream(&ctx(false), Chunk::Data(&[0, 1, 0, 0, 0, 3, 1, 1, 200]), &mut out);
        }
    }
}
