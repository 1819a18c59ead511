//! DNS messages, alone and through the query/reply pairing, over UDP and
//! over TCP framing split at an arbitrary point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schema::{FlowUid, Time};
use sensor::proto::dns::{parser, DnsState};
use sensor::proto::stream::Chunk;
use sensor::proto::{AppOut, FlowCtx};

fuzz_target!(|data: &[u8]| {
    let mut w = Vec::new();
    let _ = parser::parse_message(data, &mut w);
    let _ = parser::looks_like_dns(data);
    let ctx = |is_orig| FlowCtx {
        ts: Time(1),
        uid: FlowUid::new(1),
        orig: ("10.0.0.1".parse().unwrap(), 1000),
        resp: ("10.0.0.2".parse().unwrap(), 53),
        is_orig,
        keep_file_bytes: 0,
        orig_local: true,
        resp_local: true,
    };
    let mut out = AppOut::default();
    let mut udp = DnsState::new("udp");
    udp.message(&ctx(true), data, &mut out);
    udp.message(&ctx(false), data, &mut out);
    udp.finish(&ctx(true), &mut out);
    let mut tcp = DnsState::new("tcp");
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    tcp.stream(&ctx(true), Chunk::Data(&data[..cut]), &mut out);
    tcp.stream(&ctx(true), Chunk::Gap(3), &mut out);
    tcp.stream(&ctx(true), Chunk::Data(&data[cut..]), &mut out);
    tcp.finish(&ctx(true), &mut out);
});
