//! Payload for later stages (content scanning): each TCP stream's bytes, in
//! order and deduplicated, lent to a tap as the analyzers receive them, so
//! nothing is copied for it. Files reach later stages complete, with their
//! bytes, in files.log records (`FilesRecord::content`, kept when
//! `FlowConfig::keep_file_bytes` is set).

use crate::proto::stream::Chunk;
use schema::{Event, FlowUid, Time};
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

/// One UDP payload.
pub struct Datagram<'a> {
    pub ts: Time,
    pub uid: FlowUid,
    pub orig: (IpAddr, u16),
    pub resp: (IpAddr, u16),
    pub is_orig: bool,
    pub payload: &'a [u8],
}

/// Receives payload on a worker thread; it must not block for long, since
/// the worker waits for it. Records it makes (alerts) go to `out`, which
/// joins the worker's output.
pub trait PayloadTap: Send {
    fn stream(&mut self, chunk: &StreamChunk<'_>, out: &mut Vec<Event>);
    fn datagram(&mut self, _d: &Datagram<'_>, _out: &mut Vec<Event>) {}
    /// The flow ended (expired, closed or flushed): no more payload for it.
    fn end(&mut self, _ts: Time, _uid: FlowUid, _out: &mut Vec<Event>) {}
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
