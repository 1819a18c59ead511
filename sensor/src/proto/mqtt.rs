//! MQTT 3.1, 3.1.1 and 5.0 (OASIS MQTT v3.1.1 and v5.0): control packets
//! framed by a fixed header and a variable-length remaining length. CONNECT
//! and its CONNACK make an `mqtt_connect.log` line, PUBLISH a
//! `mqtt_publish.log` line once its QoS handshake ends, SUBSCRIBE and
//! UNSUBSCRIBE with their acknowledgement an `mqtt_subscribe.log` line.

use crate::proto::stream::Chunk;
use crate::proto::{zeek_escape, AppOut, FlowCtx};
use nom::bytes::complete::take;
use nom::number::complete::{be_u16, be_u8};
use nom::IResult;
use schema::{Event, MqttConnectRecord, MqttPublishRecord, MqttSubscribeRecord, Time};
use std::collections::HashMap;

pub const PORT: u16 = 1883;

/// Bytes of a packet kept to parse it; the rest of a larger one (a firmware
/// image published) is counted and skipped.
const MAX_KEEP: usize = 64 << 10;
/// Payload bytes shown in the log (Zeek's `MQTT::max_payload_size`).
const PAYLOAD_SHOWN: usize = 100;
/// Publishes and subscriptions awaiting their acknowledgement.
const MAX_PENDING: usize = 1024;
/// Topic filters kept per SUBSCRIBE.
const MAX_TOPICS: usize = 256;

const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBCOMP: u8 = 7;
const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;
const UNSUBSCRIBE: u8 = 10;
const UNSUBACK: u8 = 11;

/// A fixed header: type, flags, remaining length, and its own size.
fn fixed_header(b: &[u8]) -> Result<Option<(u8, u8, usize, usize)>, ()> {
    let Some(&first) = b.first() else { return Ok(None) };
    let mut len = 0usize;
    // At most four bytes of remaining length (2.2.3).
    for i in 0..4 {
        let Some(&byte) = b.get(1 + i) else { return Ok(None) };
        len |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((first >> 4, first & 0x0f, len, 2 + i)));
        }
    }
    Err(())
}

fn string(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let (i, n) = be_u16(i)?;
    take(n)(i)
}

/// A v5 variable byte integer.
fn varint(i: &[u8]) -> IResult<&[u8], usize> {
    let mut n = 0usize;
    let mut rest = i;
    for k in 0..4 {
        let (r, b) = be_u8(rest)?;
        rest = r;
        n |= usize::from(b & 0x7f) << (7 * k);
        if b & 0x80 == 0 {
            return Ok((rest, n));
        }
    }
    Err(nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::TooLarge)))
}

/// Skips v5 properties.
fn properties(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let (i, n) = varint(i)?;
    take(n)(i)
}

fn text(b: &[u8]) -> String {
    zeek_escape(b)
}

#[derive(Debug)]
struct Connect {
    ts: Time,
    proto_name: String,
    proto_version: String,
    client_id: String,
    will_topic: Option<String>,
    will_payload: Option<String>,
    username: Option<String>,
}

fn connect(body: &[u8]) -> Option<(Connect, u8)> {
    fn parse(i: &[u8]) -> IResult<&[u8], (Connect, u8)> {
        let (i, name) = string(i)?;
        let (i, level) = be_u8(i)?;
        let (i, flags) = be_u8(i)?;
        let (i, _keepalive) = be_u16(i)?;
        let (i, _) = if level == 5 { properties(i)? } else { (i, &[][..]) };
        let (mut i, client) = string(i)?;
        let (mut will_topic, mut will_payload, mut username) = (None, None, None);
        if flags & 0x04 != 0 {
            if level == 5 {
                i = properties(i)?.0;
            }
            let (r, t) = string(i)?;
            let (r, p) = string(r)?;
            will_topic = Some(text(t));
            will_payload = Some(text(p.get(..PAYLOAD_SHOWN).unwrap_or(p)));
            i = r;
        }
        if flags & 0x80 != 0 {
            let (r, u) = string(i)?;
            username = Some(text(u));
            i = r;
        }
        let version = match level {
            3 => "3.1",
            4 => "3.1.1",
            5 => "5.0",
            _ => "unknown",
        };
        let c = Connect {
            ts: Time(0),
            proto_name: text(name),
            proto_version: version.into(),
            client_id: text(client),
            will_topic,
            will_payload,
            username,
        };
        Ok((i, (c, level)))
    }
    let (c, level) = parse(body).ok()?.1;
    matches!(c.proto_name.as_str(), "MQTT" | "MQIsdp").then_some((c, level))
}

fn connack_text(code: u8, v5: bool) -> String {
    let s = match (code, v5) {
        (0, _) => "Connection Accepted",
        (1, false) => "Refused: unacceptable protocol version",
        (2, false) => "Refused: identifier rejected",
        (3, false) => "Refused: server unavailable",
        (4, false) => "Refused: bad user name or password",
        (5, false) => "Refused: not authorized",
        (0x80, true) => "Refused: unspecified error",
        (0x81, true) => "Refused: malformed packet",
        (0x82, true) => "Refused: protocol error",
        (0x84, true) => "Refused: unsupported protocol version",
        (0x85, true) => "Refused: client identifier not valid",
        (0x86, true) => "Refused: bad user name or password",
        (0x87, true) => "Refused: not authorized",
        (0x88, true) => "Refused: server unavailable",
        (0x89, true) => "Refused: server busy",
        (0x8a, true) => "Refused: banned",
        (0x8c, true) => "Refused: bad authentication method",
        _ => return format!("Refused: code {code}"),
    };
    s.into()
}

fn qos_text(q: u8) -> &'static str {
    match q {
        0 => "at most once",
        1 => "at least once",
        _ => "exactly once",
    }
}

#[derive(Debug)]
struct Subscribe {
    ts: Time,
    action: &'static str,
    topics: Vec<String>,
    qos_levels: Vec<u8>,
}

#[derive(Debug, Default)]
struct Side {
    buf: Vec<u8>,
    /// Bytes of an oversized packet still to skip.
    skip: usize,
    done: bool,
}

#[derive(Debug, Default)]
pub struct MqttState {
    sides: [Side; 2],
    v5: bool,
    confirmed: bool,
    failed: bool,
    connect: Option<Connect>,
    /// Publishes awaiting PUBACK/PUBCOMP, by (publisher is the client,
    /// packet id).
    publishes: HashMap<(bool, u16), MqttPublishRecord>,
    subscribes: HashMap<u16, Subscribe>,
}

impl MqttState {
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// A client's first bytes look like an MQTT CONNECT.
    pub fn looks_like_connect(payload: &[u8]) -> bool {
        match fixed_header(payload) {
            Ok(Some((CONNECT, 0, _, hl))) => {
                let name = payload.get(hl + 2..hl + 6);
                name == Some(b"MQTT") || (name == Some(b"MQIs") && payload.get(hl + 6..hl + 8) == Some(b"dp"))
            }
            _ => false,
        }
    }

    pub fn stream(&mut self, ctx: &FlowCtx, chunk: Chunk<'_>, out: &mut AppOut) {
        let s = usize::from(!ctx.is_orig);
        let data = match chunk {
            Chunk::Data(d) => d,
            Chunk::Gap(_) => {
                out.weirds.push("mqtt_content_gap");
                if let Some(side) = self.sides.get_mut(s) {
                    side.done = true;
                }
                return;
            }
        };
        let Some(side) = self.sides.get_mut(s) else { return };
        if side.done || self.failed {
            return;
        }
        let data = if side.skip > 0 {
            let n = side.skip.min(data.len());
            side.skip -= n;
            data.get(n..).unwrap_or(&[])
        } else {
            data
        };
        side.buf.extend_from_slice(data);
        // Before the CONNECT, anything else is another protocol.
        if !self.confirmed && side.buf.first().is_some_and(|&b| !ctx.is_orig || b != CONNECT << 4) {
            self.failed = true;
            return;
        }
        let mut buf = std::mem::take(&mut side.buf);
        let mut used = 0;
        loop {
            let rest = buf.get(used..).unwrap_or(&[]);
            let (typ, flags, len, hl) = match fixed_header(rest) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(()) => {
                    self.bad(s, out);
                    used = buf.len();
                    break;
                }
            };
            let total = hl + len;
            if rest.len() < total && total <= MAX_KEEP {
                break;
            }
            let body = rest.get(hl..total.min(rest.len())).unwrap_or(&[]);
            if rest.len() < total {
                // Oversized: parse what is kept, skip the rest as it comes.
                if body.len() < MAX_KEEP - hl {
                    break;
                }
                self.packet(ctx, typ, flags, body, len, out);
                if let Some(side) = self.sides.get_mut(s) {
                    side.skip = total - rest.len();
                }
                used = buf.len();
                break;
            }
            self.packet(ctx, typ, flags, body, len, out);
            used += total;
            if self.failed {
                used = buf.len();
                break;
            }
        }
        buf.drain(..used.min(buf.len()));
        if let Some(side) = self.sides.get_mut(s) {
            side.buf = buf;
        }
    }

    fn bad(&mut self, s: usize, out: &mut AppOut) {
        if self.confirmed {
            out.weirds.push("mqtt_bad_packet");
            if let Some(side) = self.sides.get_mut(s) {
                side.done = true;
            }
        } else {
            self.failed = true;
        }
    }

    fn packet(&mut self, ctx: &FlowCtx, typ: u8, flags: u8, body: &[u8], len: usize, out: &mut AppOut) {
        let from_client = ctx.is_orig;
        if !self.confirmed {
            // The conversation must open with the client's CONNECT.
            match (from_client, typ, connect(body)) {
                (true, CONNECT, Some(_)) => {}
                _ => {
                    self.failed = true;
                    return;
                }
            }
        }
        let s = usize::from(!from_client);
        let id = |b: &[u8]| b.get(..2).map(|x| u16::from_be_bytes([x[0], x[1]]));
        match (typ, from_client) {
            (CONNECT, true) => match connect(body) {
                Some((mut c, level)) => {
                    self.v5 = level == 5;
                    c.ts = ctx.ts;
                    if let Some(prev) = self.connect.replace(c) {
                        self.log_connect(ctx, prev, None, out);
                    }
                    if !self.confirmed {
                        self.confirmed = true;
                        out.confirmed = Some("mqtt");
                    }
                }
                None => self.bad(s, out),
            },
            (CONNACK, false) => {
                let code = body.get(1).copied().unwrap_or(0xff);
                if let Some(c) = self.connect.take() {
                    let status = connack_text(code, self.v5);
                    self.log_connect(ctx, c, Some(status), out);
                }
            }
            (PUBLISH, _) => self.publish(ctx, flags, body, len, out),
            (PUBACK, _) | (PUBCOMP, _) => {
                // Completes the other side's publish of that id.
                if let Some(pid) = id(body) {
                    if let Some(mut p) = self.publishes.remove(&(!from_client, pid)) {
                        let want_comp = p.qos == "exactly once";
                        if (typ == PUBCOMP) == want_comp {
                            p.status = "ok";
                            out.events.push(Event::MqttPublish(p));
                        } else {
                            self.publishes.insert((!from_client, pid), p);
                        }
                    }
                }
            }
            (PUBREC, _) => {}
            (SUBSCRIBE, true) | (UNSUBSCRIBE, true) => {
                let sub = typ == SUBSCRIBE;
                match self.subscribe(ctx, sub, body) {
                    Some((pid, rec)) => {
                        if self.subscribes.len() >= MAX_PENDING {
                            self.flush_subscribes(ctx, out);
                        }
                        self.subscribes.insert(pid, rec);
                    }
                    None => self.bad(s, out),
                }
            }
            (SUBACK, false) | (UNSUBACK, false) => {
                let Some(pid) = id(body) else { return };
                let Some(sub) = self.subscribes.remove(&pid) else { return };
                let mut rest = body.get(2..).unwrap_or(&[]);
                if self.v5 {
                    rest = properties(rest).map(|(r, _)| r).unwrap_or(&[]);
                }
                let granted = (typ == SUBACK).then(|| rest.first().copied()).flatten();
                self.log_subscribe(ctx, sub, granted, true, out);
            }
            _ => {}
        }
    }

    fn publish(&mut self, ctx: &FlowCtx, flags: u8, body: &[u8], len: usize, out: &mut AppOut) {
        let qos = (flags >> 1) & 3;
        let parsed = (|| -> IResult<&[u8], (&[u8], Option<u16>)> {
            let (i, topic) = string(body)?;
            let (i, pid) = if qos > 0 { be_u16(i).map(|(r, p)| (r, Some(p)))? } else { (i, None) };
            let (i, _) = if self.v5 { properties(i)? } else { (i, &[][..]) };
            Ok((i, (topic, pid)))
        })();
        let Ok((payload, (topic, pid))) = parsed else {
            self.bad(usize::from(!ctx.is_orig), out);
            return;
        };
        let header_bytes = body.len() - payload.len();
        let rec = MqttPublishRecord {
            ts: ctx.ts,
            uid: ctx.uid,
            orig_h: ctx.orig.0,
            orig_p: ctx.orig.1,
            resp_h: ctx.resp.0,
            resp_p: ctx.resp.1,
            from_client: ctx.is_orig,
            retain: flags & 1 == 1,
            qos: qos_text(qos),
            status: "ok",
            topic: text(topic),
            payload: text(payload.get(..PAYLOAD_SHOWN).unwrap_or(payload)),
            payload_len: len.saturating_sub(header_bytes) as u64,
        };
        match pid {
            Some(p) if qos > 0 => {
                if self.publishes.len() >= MAX_PENDING {
                    self.flush_publishes(out);
                }
                let mut rec = rec;
                rec.status = "incomplete_qos";
                self.publishes.insert((ctx.is_orig, p), rec);
            }
            _ => out.events.push(Event::MqttPublish(rec)),
        }
    }

    fn subscribe(&self, ctx: &FlowCtx, sub: bool, body: &[u8]) -> Option<(u16, Subscribe)> {
        let (mut i, pid) = be_u16::<_, nom::error::Error<&[u8]>>(body).ok()?;
        if self.v5 {
            i = properties(i).ok()?.0;
        }
        let mut rec = Subscribe {
            ts: ctx.ts,
            action: if sub { "MQTT::SUBSCRIBE" } else { "MQTT::UNSUBSCRIBE" },
            topics: Vec::new(),
            qos_levels: Vec::new(),
        };
        while !i.is_empty() {
            let (r, t) = string(i).ok()?;
            i = r;
            let opts = if sub {
                let (r, o) = be_u8::<_, nom::error::Error<&[u8]>>(i).ok()?;
                i = r;
                Some(o & 3)
            } else {
                None
            };
            if rec.topics.len() < MAX_TOPICS {
                rec.topics.push(text(t));
                rec.qos_levels.extend(opts);
            }
        }
        (!rec.topics.is_empty()).then_some((pid, rec))
    }

    fn log_connect(&self, ctx: &FlowCtx, c: Connect, status: Option<String>, out: &mut AppOut) {
        out.events.push(Event::MqttConnect(MqttConnectRecord {
            ts: c.ts,
            uid: ctx.uid,
            orig_h: ctx.orig.0,
            orig_p: ctx.orig.1,
            resp_h: ctx.resp.0,
            resp_p: ctx.resp.1,
            proto_name: c.proto_name,
            proto_version: c.proto_version,
            client_id: c.client_id,
            connect_status: status,
            will_topic: c.will_topic,
            will_payload: c.will_payload,
            username: c.username,
        }));
    }

    fn log_subscribe(&self, ctx: &FlowCtx, s: Subscribe, granted: Option<u8>, ack: bool, out: &mut AppOut) {
        out.events.push(Event::MqttSubscribe(MqttSubscribeRecord {
            ts: s.ts,
            uid: ctx.uid,
            orig_h: ctx.orig.0,
            orig_p: ctx.orig.1,
            resp_h: ctx.resp.0,
            resp_p: ctx.resp.1,
            action: s.action,
            topics: s.topics,
            qos_levels: s.qos_levels,
            granted_qos_level: granted,
            ack,
        }));
    }

    fn flush_publishes(&mut self, out: &mut AppOut) {
        let mut left: Vec<MqttPublishRecord> = self.publishes.drain().map(|(_, p)| p).collect();
        left.sort_by_key(|p| p.ts);
        out.events.extend(left.into_iter().map(Event::MqttPublish));
    }

    fn flush_subscribes(&mut self, ctx: &FlowCtx, out: &mut AppOut) {
        let mut left: Vec<Subscribe> = self.subscribes.drain().map(|(_, s)| s).collect();
        left.sort_by_key(|s| s.ts);
        for s in left {
            self.log_subscribe(ctx, s, None, false, out);
        }
    }

    /// The connection ends: what still waits for an answer is logged.
    pub fn finish(&mut self, ctx: &FlowCtx, out: &mut AppOut) {
        if let Some(c) = self.connect.take() {
            self.log_connect(ctx, c, None, out);
        }
        self.flush_publishes(out);
        self.flush_subscribes(ctx, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(is_orig: bool) -> FlowCtx {
        crate::proto::test_ctx(("10.0.1.4", 49327), ("198.41.30.241", 1883), is_orig)
    }

    fn pkt(first: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![first];
        let mut n = body.len();
        loop {
            let mut b = (n & 0x7f) as u8;
            n >>= 7;
            if n > 0 {
                b |= 0x80;
            }
            v.push(b);
            if n == 0 {
                break;
            }
        }
        v.extend_from_slice(body);
        v
    }

    fn s(t: &str) -> Vec<u8> {
        let mut v = (t.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(t.as_bytes());
        v
    }

    fn session() -> Vec<(bool, Vec<u8>)> {
        // CONNECT 3.1.1 with user name, CONNACK refused (bad credentials),
        // then a SUBSCRIBE to '#' and its SUBACK, and a QoS 1 PUBLISH.
        let mut connect = s("MQTT");
        connect.extend_from_slice(&[4, 0x80 | 0x02, 0, 60]);
        connect.extend(s("cam-7"));
        connect.extend(s("admin"));
        let mut sub = vec![0, 9];
        sub.extend(s("#"));
        sub.push(1);
        let mut publish = s("city/flood/level");
        publish.extend_from_slice(&[0, 3]);
        publish.extend_from_slice(b"1.42");
        vec![
            (true, pkt(0x10, &connect)),
            (false, pkt(0x20, &[0, 4])),
            (true, pkt(0x82, &sub)),
            (false, pkt(0x90, &[0, 9, 1])),
            (true, pkt(0x32, &publish)),
            (false, pkt(0x40, &[0, 3])),
        ]
    }

    fn run(split: usize) -> AppOut {
        let mut m = MqttState::default();
        let mut out = AppOut::default();
        for (orig, bytes) in session() {
            let cut = split.min(bytes.len());
            m.stream(&ctx(orig), Chunk::Data(&bytes[..cut]), &mut out);
            m.stream(&ctx(orig), Chunk::Data(&bytes[cut..]), &mut out);
        }
        m.finish(&ctx(true), &mut out);
        out
    }

    #[test]
    fn a_session_at_every_split() {
        for split in 0..12 {
            let out = run(split);
            assert_eq!(out.confirmed, Some("mqtt"));
            let mut seen = Vec::new();
            for e in &out.events {
                match e {
                    Event::MqttConnect(c) => {
                        assert_eq!(c.client_id, "cam-7");
                        assert_eq!(c.username.as_deref(), Some("admin"));
                        assert_eq!(c.connect_status.as_deref(), Some("Refused: bad user name or password"));
                        seen.push("connect");
                    }
                    Event::MqttSubscribe(x) => {
                        assert_eq!(
                            (x.topics.clone(), x.qos_levels.clone(), x.granted_qos_level),
                            (vec!["#".into()], vec![1], Some(1))
                        );
                        seen.push("subscribe");
                    }
                    Event::MqttPublish(p) => {
                        assert_eq!(
                            (p.topic.as_str(), p.payload.as_str(), p.payload_len, p.status),
                            ("city/flood/level", "1.42", 4, "ok")
                        );
                        seen.push("publish");
                    }
                    _ => {}
                }
            }
            assert_eq!(seen, ["connect", "subscribe", "publish"], "split {split}");
        }
    }

    #[test]
    fn not_mqtt_and_hostile_lengths() {
        let mut m = MqttState::default();
        m.stream(&ctx(true), Chunk::Data(b"GET / HTTP/1.1\r\n\r\n"), &mut AppOut::default());
        assert!(m.failed());
        let mut m = MqttState::default();
        let mut out = AppOut::default();
        m.stream(&ctx(true), Chunk::Data(&session()[0].1), &mut out);
        m.stream(&ctx(true), Chunk::Data(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), &mut out);
        m.stream(&ctx(true), Chunk::Data(&[0x30, 0xff, 0xff, 0xff, 0x7f, 0, 200]), &mut out);
        assert!(MqttState::looks_like_connect(&session()[0].1));
    }
}
