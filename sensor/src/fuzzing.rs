//! The input format of the `packets` fuzz target, shared with the tests that
//! replay the inputs the fuzzer once found crashing.

use crate::decode::LinkType;
use crate::proto::dhcp::DhcpState;
use crate::proto::dns::DnsState;
use crate::proto::ntp::NtpState;
use crate::proto::stream::Chunk;
use crate::proto::{App, AppOut, FlowCtx, Shared};
use crate::worker::{Worker, WorkerConfig};
use schema::{FlowUid, Time};
use std::net::IpAddr;

const LINKS: [i32; 11] = [1, 0, 9, 50, 104, 101, 108, 113, 276, 228, 229];

/// Feeds one fuzz input through decoding, reassembly, tunnels, the flow table
/// and the analyzers: a byte choosing the link type (its top bit turns
/// checksum verification on), then records of `[len: u16 le][delta_ms: u8]
/// [bytes]`. Caps are small so that eviction paths run too.
pub fn run_packets(data: &[u8]) {
    let Some((&sel, mut rest)) = data.split_first() else { return };
    let lt = LinkType::from_dlt(LINKS[usize::from(sel) % LINKS.len()]);
    let mut cfg = WorkerConfig::default();
    cfg.flow.max_flows = 8;
    cfg.frag.max_datagrams = 4;
    cfg.max_ip_tunnels = 4;
    cfg.verify_checksums = sel & 0x80 != 0;
    let mut w = Worker::new(cfg);
    let mut out = Vec::new();
    let mut ts = Time(1_700_000_000_000_000);
    while rest.len() >= 3 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        ts = Time(ts.0 + i64::from(rest[2]) * 997_000);
        rest = &rest[3..];
        let n = len.min(rest.len());
        w.process(ts, lt, &rest[..n], &mut out);
        w.tick(ts, &mut out);
        rest = &rest[n..];
        out.clear();
    }
    w.finish(&mut out);
}

/// The analyzers the `streams` target drives directly, in the order its first
/// input byte selects them.
const STREAM_APPS: usize = 15;

fn stream_app(sel: u8) -> App {
    match usize::from(sel) % STREAM_APPS {
        0 => App::Http(Box::default()),
        1 => App::Tls(Box::default()),
        2 => App::Ssh(Box::default()),
        3 => App::Ftp(Box::default()),
        4 => App::Smtp(Box::default()),
        5 => App::Dns(DnsState::new("tcp")),
        6 => App::Ntp(NtpState::default()),
        7 => App::Dhcp(DhcpState::default()),
        8 => App::Quic(Box::default()),
        9 => App::Modbus(Box::default()),
        10 => App::Mqtt(Box::default()),
        11 => App::Dnp3(Box::default()),
        12 => App::Coap(Box::default()),
        13 => App::Snmp(Box::default()),
        _ => App::Bacnet(crate::proto::bacnet::BacnetState::default()),
    }
}

/// Feeds one fuzz input to one analyzer as the two sides of a conversation,
/// skipping decoding and the flow table so that every input byte reaches the
/// parser: a byte choosing the analyzer, then records of `[control: u8]
/// [len: u8][bytes]`. The control byte's low bit names the side; with its
/// second bit set the record is a gap of `len * 97` bytes instead of data.
/// Datagram analyzers (NTP, DHCP, QUIC, CoAP, SNMP, BACnet) take each record as one message.
pub fn run_streams(data: &[u8]) {
    let Some((&sel, mut rest)) = data.split_first() else { return };
    let mut app = stream_app(sel);
    let mut shared = Shared::default();
    let mut out = AppOut::default();
    let mut ctx = FlowCtx {
        ts: Time(1_700_000_000_000_000),
        uid: FlowUid::new(1),
        orig: (IpAddr::from([10, 0, 0, 1]), 40000),
        resp: (IpAddr::from([10, 0, 0, 2]), 80),
        is_orig: true,
        keep_file_bytes: 0,
        orig_local: false,
        resp_local: false,
    };
    while rest.len() >= 2 {
        let (control, len) = (rest[0], usize::from(rest[1]));
        rest = &rest[2..];
        ctx.is_orig = control & 1 == 0;
        ctx.ts = Time(ctx.ts.0 + 1000);
        if control & 2 != 0 {
            app.stream(&ctx, Chunk::Gap(len as u64 * 97), &mut shared, &mut out);
            continue;
        }
        let n = len.min(rest.len());
        if matches!(app, App::Ntp(_) | App::Dhcp(_) | App::Quic(_) | App::Coap(_) | App::Snmp(_) | App::Bacnet(_)) {
            app.datagram(&ctx, &rest[..n], &mut shared, &mut out);
        } else {
            app.stream(&ctx, Chunk::Data(&rest[..n]), &mut shared, &mut out);
        }
        rest = &rest[n..];
        out.events.clear();
        if app.failed() {
            return;
        }
    }
    app.finish(&ctx, &mut shared, &mut out);
}
