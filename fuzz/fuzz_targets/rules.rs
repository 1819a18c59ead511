//! Rule text as an admin might mistype it: any input must load as rules or
//! as reported errors, and whatever loads must evaluate without panicking.
#![no_main]

use detector::sigma::engine::Evaluator;
use detector::sigma::mapping::Mapping;
use detector::sigma::{load_text, SigmaOptions};
use libfuzzer_sys::fuzz_target;
use schema::{ConnRecord, Event, FlowUid, Time};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let opts = SigmaOptions { mapping: Mapping::shipped(), ..Default::default() };
    let (set, _report) = load_text(text, Path::new("fuzz.yml"), &opts);
    let ev = Event::Conn(ConnRecord {
        ts: Time(1),
        uid: FlowUid::new(1),
        orig_h: "10.0.0.1".parse().unwrap(),
        orig_p: 1,
        resp_h: "10.0.0.2".parse().unwrap(),
        resp_p: 80,
        proto: "tcp",
        service: Some("http".into()),
        duration: None,
        orig_bytes: Some(1),
        resp_bytes: None,
        conn_state: "SF",
        local_orig: true,
        local_resp: false,
        missed_bytes: 0,
        history: Some("ShADadFf".into()),
        orig_pkts: 1,
        orig_ip_bytes: 1,
        resp_pkts: 1,
        resp_ip_bytes: 1,
        tunnel_parents: vec![],
        ip_proto: 6,
        vlan: None,
        inner_vlan: None,
        community_id: None,
    });
    let mut s = Evaluator::default();
    let mut out = Vec::new();
    set.engine.eval(&ev, &mut s, &mut out);
});
