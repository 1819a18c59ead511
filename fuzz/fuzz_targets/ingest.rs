//! An ingest request as any sender may post it: the first byte picks the
//! content encoding, the rest is the body, decoded within the body limit,
//! parsed into records and stored; see `siem::fuzzing::run_ingest`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| siem::fuzzing::run_ingest(data));
