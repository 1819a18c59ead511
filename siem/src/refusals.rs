//! Callers the SIEM refuses (no or an unknown token, a token in the wrong
//! role, a TLS handshake that failed) are logged with their address and
//! audited, up to a rate: a hostile peer must not be able to flood the log
//! or the audit trail. Past the rate, refusals are counted, and the count
//! is logged and audited once the minute is over (with the next refusal).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refusals written one by one per address and minute.
pub const PER_PEER: u32 = 10;
/// And over all addresses together (one attacker, many addresses).
pub const OVERALL: u32 = 100;
/// Addresses tracked in a minute; past it, refusals are only counted.
const PEERS: usize = 10_000;
const WINDOW: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Refusals(Mutex<Window>);

#[derive(Default)]
struct Window {
    start: Option<Instant>,
    per_peer: HashMap<String, u32>,
    written: u32,
    suppressed: u64,
}

/// What to do with one refusal.
#[derive(Debug, PartialEq, Eq)]
pub struct Admit {
    /// Log and audit this one.
    pub write: bool,
    /// The minute before ended with this many refusals not written one by
    /// one, from this many addresses: say so once.
    pub suppressed: Option<(u64, usize)>,
}

impl Refusals {
    pub fn admit(&self, peer: &str) -> Admit {
        self.admit_at(peer, Instant::now())
    }

    fn admit_at(&self, peer: &str, now: Instant) -> Admit {
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut suppressed = None;
        if w.start.is_none_or(|s| now.duration_since(s) >= WINDOW) {
            if w.suppressed > 0 {
                suppressed = Some((w.suppressed, w.per_peer.len()));
            }
            *w = Window { start: Some(now), ..Window::default() };
        }
        let n = if w.per_peer.len() < PEERS || w.per_peer.contains_key(peer) {
            let c = w.per_peer.entry(peer.to_string()).or_insert(0);
            *c += 1;
            *c
        } else {
            u32::MAX
        };
        let write = n <= PER_PEER && w.written < OVERALL;
        if write {
            w.written += 1;
        } else {
            w.suppressed += 1;
        }
        Admit { write, suppressed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_written_up_to_the_rate_then_counted_once() {
        let r = Refusals::default();
        let t0 = Instant::now();
        let written = (0..1000).filter(|_| r.admit_at("10.0.0.9", t0).write).count();
        assert_eq!(written, PER_PEER as usize);
        // Another address still gets its own lines.
        assert!(r.admit_at("10.0.0.7", t0).write);
        // Many addresses together stop at the overall rate.
        let many = (0..500).filter(|i| r.admit_at(&format!("10.1.{}.{}", i / 256, i % 256), t0).write).count();
        assert_eq!(many + PER_PEER as usize + 1, OVERALL as usize);
        // The next minute: the count of the one before, once.
        let next = r.admit_at("10.0.0.9", t0 + WINDOW);
        assert_eq!(
            next,
            Admit { write: true, suppressed: Some((1000 - u64::from(PER_PEER) + 500 - many as u64, 502)) }
        );
        assert_eq!(r.admit_at("10.0.0.9", t0 + WINDOW).suppressed, None);
    }
}
