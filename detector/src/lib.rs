//! Detection over the sensor's records and payloads: Sigma rules (with
//! correlation and filters), YARA-X over payloads and files, threat
//! intelligence indicators, anomaly models, and the alert aggregation they
//! all feed.

pub mod alert;
pub mod detect;
pub mod error;
pub mod flat;
pub mod intel;
pub mod models;
pub mod sigma;
pub mod tuning;
pub mod yara;
