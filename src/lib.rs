//! The composition root's library part: what the `citysoc` binary and the
//! end-to-end tests share.

pub mod detection;
pub mod evidence;
pub mod first_start;
pub mod hunt;
pub mod locations;
pub mod privileges;
pub mod replay;
pub mod rule_editor;
pub mod sensor_setup;
pub mod ship;
pub mod tls;

pub use locations::rules_location;
