//! Payload for later stages (content scanning): each TCP stream's bytes, in
//! order and deduplicated, lent to a tap as the analyzers receive them, so
//! nothing is copied for it. Files reach later stages complete, with their
//! bytes, in files.log records (`FilesRecord::content`, kept when
//! `FlowConfig::keep_file_bytes` is set).

use crate::proto::stream::Chunk;
use schema::{FlowUid, Time};
use std::net::IpAddr;
use std::sync::Arc;

/// A piece of one direction of a TCP stream: data in order, or a gap of
/// bytes never seen.
pub struct StreamChunk<'a> {
    pub ts: Time,
    pub uid: FlowUid,
    pub orig: (IpAddr, u16),
    pub resp: (IpAddr, u16),
    pub is_orig: bool,
    pub chunk: Chunk<'a>,
}

/// Receives stream payload on a worker thread; it must not block for long,
/// since the worker waits for it.
pub trait PayloadTap: Send {
    fn stream(&mut self, chunk: &StreamChunk<'_>);
}

/// Makes one tap for each worker.
#[derive(Clone)]
pub struct TapFactory(pub Arc<dyn Fn() -> Box<dyn PayloadTap> + Send + Sync>);

impl std::fmt::Debug for TapFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TapFactory")
    }
}

/// A worker's tap.
pub struct Tap(pub Box<dyn PayloadTap>);

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tap")
    }
}
