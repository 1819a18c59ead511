use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error("cannot open capture {path}: {msg}")]
    OpenFile { path: PathBuf, msg: String },
    #[error("capture {path} is damaged after {packets} packets: {msg}")]
    DamagedFile { path: PathBuf, packets: u64, msg: String },
    #[error("cannot capture on interface {iface}: {msg}")]
    OpenInterface { iface: String, msg: String },
    #[error("invalid capture filter {filter:?}: {msg}")]
    Filter { filter: String, msg: String },
    #[error("capture on {iface} failed: {msg}")]
    Live { iface: String, msg: String },
    // Not a `source`: the reason is in the message, and a chain printed
    // whole (`{:#}`) would say it twice.
    #[error("cannot write log {path}: {error}")]
    Log { path: PathBuf, error: std::io::Error },
    #[error("cannot write the spool {path}: {error}")]
    Spool { path: PathBuf, error: String },
    /// The SIEM refused the sensor (token, certificate, batch): the run's
    /// records are in the spool, and retrying as it is cannot help.
    #[error("shipping to the SIEM at {url} stopped: {reason}")]
    Ship { url: String, reason: String },
    /// The step between opening the source and reading it (the change of
    /// user) failed: nothing was read.
    #[error("{0}")]
    Setup(String),
    /// The IEEE OUI registry could not be read.
    #[error("cannot read the OUI registry {path}: {msg}")]
    Registry { path: PathBuf, msg: String },
    #[error("a sensor thread panicked: {0}")]
    Thread(String),
}
