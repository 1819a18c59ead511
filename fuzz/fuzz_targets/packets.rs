//! Feeds arbitrary packet sequences through decoding, fragment reassembly,
//! tunnels, the flow table and the analyzers (see `sensor::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sensor::fuzzing::run_packets(data));
