//! The CitySOC packet sensor: capture, decoding, flows and Zeek-compatible logs.

pub mod capture;
pub mod decode;
mod error;
pub mod flow;
#[doc(hidden)]
pub mod fuzzing;
pub mod inventory;
pub mod output;
pub mod pipeline;
pub mod proto;
pub mod ring;
pub mod worker;

pub use error::SensorError;
