//! The composition root's library part: what the `citysoc` binary and the
//! end-to-end tests share.

pub mod backup;
pub mod config_file;
pub mod detection;
pub mod evidence;
pub mod first_start;
pub mod hunt;
pub mod locations;
pub mod privileges;
pub mod reference;
pub mod replay;
pub mod rule_editor;
pub mod sensor_metrics;
pub mod sensor_setup;
pub mod serve_config;
pub mod ship;
pub mod tls;

pub use locations::rules_location;
