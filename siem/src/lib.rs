//! The SOC's memory: records and alerts from every sensor, stored in
//! Tantivy (embedded, the default) or ClickHouse (scale-out) on one schema,
//! searched with one query language.

pub mod api;
pub mod audit;
pub mod evidence;
pub mod fuzzing;
pub mod hunts;
pub mod ledger;
pub mod metrics;
pub mod origin;
pub mod query;
pub mod refusals;
pub mod retention;
pub mod schema;
pub mod store;
pub mod timerange;
pub mod workflow;

/// Turns transparent huge pages off for the process, as a SOC server runs.
/// Index writers allocate and free large buffers batch after batch; with
/// huge pages the kernel zeroes a whole 2 MiB page each time the allocator
/// takes fresh memory, which cost Tantivy's ingest about a tenth of its CPU
/// (the book's SIEM benchmarks, docs/src/benchmarks.md). Only speed is at stake: a kernel without the
/// setting is left as it is.
pub fn no_transparent_huge_pages() {
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}
