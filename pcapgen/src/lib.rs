//! Synthetic captures for the replay scenarios and the benchmarks.
//!
//! Every packet is built here byte by byte with correct checksums, private
//! addresses (RFC 1918, RFC 4193, RFC 5737 documentation ranges) and fixed
//! timestamps, so the captures are small, reproducible and free of real data.

mod build;
mod quic;
mod scenarios;

pub use build::*;
pub use scenarios::{bench_mix, bench_mix_with, scenario, BAD_UPDATE, DROPPER, EICAR, SCENARIOS};
