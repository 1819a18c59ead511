//! The SOC's memory: records and alerts from every sensor, stored in
//! Tantivy (embedded, the default) or ClickHouse (scale-out) on one schema,
//! searched with one query language.

pub mod api;
pub mod audit;
pub mod evidence;
pub mod ledger;
pub mod query;
pub mod retention;
pub mod schema;
pub mod store;
pub mod workflow;
