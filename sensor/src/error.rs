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
    #[error("cannot write log {path}: {source}")]
    Log { path: PathBuf, source: std::io::Error },
    #[error("a sensor thread panicked: {0}")]
    Thread(String),
}
