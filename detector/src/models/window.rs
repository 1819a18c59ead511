//! Keyed windows over record time. A record counts in every window that
//! holds its `ts` as long as the record clock has not passed that window's
//! end by the lateness bound; windows are judged once the clock has. The
//! verdicts thus depend on which records fall in a window, not on the
//! order they came in.

use super::ModelCounters;
use ahash::AHashMap;
use schema::Time;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

pub struct Windows<K, S> {
    width: i64,
    hop: i64,
    lateness: i64,
    cap: usize,
    /// Window start → the keys' states: ordered by start for closing,
    /// hashed within a window for the per-record lookup.
    open: BTreeMap<i64, AHashMap<K, S>>,
    entries: usize,
    /// End of the last window that alerted, per key: an overlapping
    /// window of the same key tells the same story and stays quiet.
    alerted: HashMap<K, i64>,
}

impl<K: Ord + Clone + Hash, S: Default> Windows<K, S> {
    /// Windows `width_secs` long starting every `width_secs / hops`.
    pub fn new(width_secs: u64, hops: i64, lateness_us: i64, cap: usize) -> Self {
        let width = (width_secs.clamp(1, 86_400 * 7) as i64) * 1_000_000;
        Windows {
            width,
            hop: (width / hops.max(1)).max(1),
            lateness: lateness_us,
            cap: cap.max(1),
            open: BTreeMap::new(),
            entries: 0,
            alerted: HashMap::new(),
        }
    }

    pub fn width_us(&self) -> i64 {
        self.width
    }

    /// Folds a record at `ts` into the windows of `key` that hold it;
    /// `now` is the record clock.
    pub fn fold(&mut self, now: Time, ts: Time, key: &K, c: &mut ModelCounters, mut f: impl FnMut(&mut S)) {
        let last = ts.0.div_euclid(self.hop) * self.hop;
        let mut w = last;
        let mut late = false;
        while w > ts.0.saturating_sub(self.width) {
            if w.saturating_add(self.width).saturating_add(self.lateness) < now.0 {
                late = true;
            } else {
                let full = self.entries >= self.cap;
                let group = self.open.entry(w).or_default();
                match group.get_mut(key) {
                    Some(s) => f(s),
                    None if full => c.state_full += 1,
                    None => {
                        self.entries += 1;
                        f(group.entry(key.clone()).or_default())
                    }
                }
            }
            w = w.saturating_sub(self.hop);
            if w == i64::MIN {
                break;
            }
        }
        if late {
            c.late += 1;
        }
    }

    /// Hands over every window the clock has passed (all of them with
    /// `Time(i64::MAX)`), oldest first: `(start, end, key, state)`.
    pub fn close(&mut self, now: Time, mut judge: impl FnMut(i64, i64, &K, S) -> bool) {
        while let Some((&w, _)) = self.open.first_key_value() {
            let end = w.saturating_add(self.width);
            if now.0 != i64::MAX && end.saturating_add(self.lateness) >= now.0 {
                break;
            }
            let Some((w, group)) = self.open.pop_first() else { break };
            self.entries -= group.len();
            // Keys in order, so verdicts come out the same on every run.
            let mut group: Vec<(K, S)> = group.into_iter().collect();
            group.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, s) in group {
                // Quiet when an overlapping window of this key already alerted.
                if self.alerted.get(&k).is_some_and(|e| *e > w) {
                    continue;
                }
                if judge(w, end, &k, s) {
                    self.alerted.insert(k, end);
                }
            }
        }
        if self.alerted.len() > self.cap {
            let oldest = self.open.first_key_value().map_or(i64::MAX, |(w, _)| *w);
            self.alerted.retain(|_, e| *e > oldest);
        }
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(order: &[i64]) -> Vec<(i64, u32)> {
        let mut w: Windows<u8, u32> = Windows::new(10, 2, 5_000_000, 100);
        let mut c = ModelCounters::default();
        let mut now = Time(i64::MIN);
        let mut out = Vec::new();
        for &t in order {
            let ts = Time(t * 1_000_000);
            now = now.max(ts);
            w.fold(now, ts, &0, &mut c, |s| *s += 1);
            w.close(now, |start, _, _, s| {
                out.push((start / 1_000_000, s));
                false
            });
        }
        w.close(Time(i64::MAX), |start, _, _, s| {
            out.push((start / 1_000_000, s));
            false
        });
        out
    }

    #[test]
    fn windows_overlap_and_do_not_depend_on_arrival_order() {
        let sorted = run(&[1, 2, 6, 7, 12, 14, 30]);
        assert_eq!(sorted, [(-5, 2), (0, 4), (5, 4), (10, 2), (25, 1), (30, 1)]);
        // The same records, each up to the lateness bound out of order.
        assert_eq!(run(&[6, 2, 1, 12, 7, 14, 30]), sorted);
    }

    #[test]
    fn state_is_capped() {
        let mut w: Windows<u32, u32> = Windows::new(10, 1, 0, 50);
        let mut c = ModelCounters::default();
        for k in 0..1000u32 {
            w.fold(Time(0), Time(0), &k, &mut c, |s| *s += 1);
        }
        assert_eq!(w.len(), 50);
        assert_eq!(c.state_full, 950);
    }
}
