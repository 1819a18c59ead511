//! The search language: any text a user types, parsed, bounded, and run as
//! a search and an aggregation on a one-record Tantivy store; see
//! `siem::fuzzing::run_query`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| siem::fuzzing::run_query(data));
