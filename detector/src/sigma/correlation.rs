//! Sigma correlation rules as a streaming engine over base-rule matches,
//! in record time. State is one entry per (correlation, group) with a
//! bounded number of groups and of events per group; what is dropped to
//! stay in bounds is counted.

use super::parse::CorrelationKind;
use super::SigmaSet;
use crate::flat::FlatRecord;
use std::collections::{HashMap, VecDeque};

#[derive(Clone, Debug)]
pub struct CorrelationConfig {
    /// Groups kept across all correlations.
    pub max_groups: usize,
    /// Matches remembered per group.
    pub max_events_per_group: usize,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        CorrelationConfig { max_groups: 100_000, max_events_per_group: 10_000 }
    }
}

#[derive(Debug)]
enum State {
    Count(VecDeque<f64>),
    Values { seen: VecDeque<(f64, String)>, distinct: HashMap<String, u32> },
    Temporal(Vec<Option<f64>>),
    Ordered(Vec<Option<f64>>),
}

#[derive(Debug)]
struct Group {
    state: State,
    last: f64,
    evidence: VecDeque<String>,
}

/// A correlation that fired.
#[derive(Clone, Debug, PartialEq)]
pub struct CorrelationHit {
    pub correlation: u32,
    pub group: Vec<(String, String)>,
    /// Events (or distinct values) counted; rules matched for temporal kinds.
    pub value: f64,
    pub first: f64,
    pub last: f64,
    /// Uids of the records behind it (the most recent ones, bounded).
    pub evidence: Vec<String>,
}

#[derive(Debug, Default)]
pub struct CorrelationCounters {
    pub groups_evicted: u64,
    pub events_dropped: u64,
}

pub struct CorrelationEngine {
    cfg: CorrelationConfig,
    by_rule: HashMap<u32, Vec<u32>>,
    groups: HashMap<(u32, Vec<String>), Group>,
    pub counters: CorrelationCounters,
}

const EVIDENCE_KEPT: usize = 20;

impl CorrelationEngine {
    pub fn new(set: &SigmaSet, cfg: CorrelationConfig) -> Self {
        let mut by_rule: HashMap<u32, Vec<u32>> = HashMap::new();
        for (ci, c) in set.correlations.iter().enumerate() {
            for &r in &c.refs {
                let v = by_rule.entry(r).or_default();
                if !v.contains(&(ci as u32)) {
                    v.push(ci as u32);
                }
            }
        }
        CorrelationEngine { cfg, by_rule, groups: HashMap::new(), counters: CorrelationCounters::default() }
    }

    pub fn is_empty(&self) -> bool {
        self.by_rule.is_empty()
    }

    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// A base rule matched a record at `ts` (seconds).
    pub fn observe(
        &mut self,
        set: &SigmaSet,
        rule: u32,
        ts: f64,
        flat: &FlatRecord,
        uid: Option<&str>,
        out: &mut Vec<CorrelationHit>,
    ) {
        let Some(corrs) = self.by_rule.get(&rule).cloned() else { return };
        for ci in corrs {
            let Some(cr) = set.correlations.get(ci as usize) else { continue };
            let c = &cr.corr;
            let Some(pos) = cr.refs.iter().position(|&r| r == rule) else { continue };
            let base = set.rules.get(rule as usize);
            let rule_ref = c.rules.get(pos).cloned().unwrap_or_default();
            let field_value = |name: &str| -> String {
                let name = c.aliases.get(name).and_then(|m| m.get(&rule_ref)).map(String::as_str).unwrap_or(name);
                let ours = base
                    .and_then(|b| set.mapping.entries.get(b.entry))
                    .and_then(|e| e.fields.get(name))
                    .map(String::as_str)
                    .unwrap_or(name);
                let mut buf = String::new();
                flat.get(ours).next().map(|v| flat.text_of(v, &mut buf).to_string()).unwrap_or_default()
            };
            let key: Vec<String> = c.group_by.iter().map(|g| field_value(g)).collect();
            let value = c.field.as_deref().map(field_value);
            let gkey = (ci, key);
            if !self.groups.contains_key(&gkey) && self.groups.len() >= self.cfg.max_groups {
                self.make_room(set, ts);
            }
            let n = cr.refs.len();
            let g = self.groups.entry(gkey.clone()).or_insert_with(|| Group {
                state: match c.kind {
                    CorrelationKind::EventCount => State::Count(VecDeque::new()),
                    CorrelationKind::ValueCount => State::Values { seen: VecDeque::new(), distinct: HashMap::new() },
                    CorrelationKind::Temporal => State::Temporal(vec![None; n]),
                    CorrelationKind::TemporalOrdered => State::Ordered(vec![None; n]),
                },
                last: ts,
                evidence: VecDeque::new(),
            });
            g.last = ts;
            if let Some(u) = uid {
                if g.evidence.back().map(String::as_str) != Some(u) {
                    g.evidence.push_back(u.to_string());
                    if g.evidence.len() > EVIDENCE_KEPT {
                        g.evidence.pop_front();
                    }
                }
            }
            let lo = ts - c.timespan_secs;
            let cap = self.cfg.max_events_per_group;
            let fired: Option<(f64, f64)> = match &mut g.state {
                State::Count(times) => {
                    times.push_back(ts);
                    while times.front().is_some_and(|&t| t < lo) {
                        times.pop_front();
                    }
                    if times.len() > cap {
                        times.pop_front();
                        self.counters.events_dropped += 1;
                    }
                    let v = times.len() as f64;
                    c.condition.iter().all(|(op, x)| op.holds(v, *x)).then(|| (v, times.front().copied().unwrap_or(ts)))
                }
                State::Values { seen, distinct } => {
                    if let Some(v) = value {
                        seen.push_back((ts, v.clone()));
                        *distinct.entry(v).or_default() += 1;
                    }
                    let mut evict = |seen: &mut VecDeque<(f64, String)>| {
                        if let Some((_, v)) = seen.pop_front() {
                            if let Some(k) = distinct.get_mut(&v) {
                                *k -= 1;
                                if *k == 0 {
                                    distinct.remove(&v);
                                }
                            }
                        }
                    };
                    while seen.front().is_some_and(|(t, _)| *t < lo) {
                        evict(seen);
                    }
                    if seen.len() > cap {
                        evict(seen);
                        self.counters.events_dropped += 1;
                    }
                    let v = distinct.len() as f64;
                    c.condition.iter().all(|(op, x)| op.holds(v, *x)).then(|| (v, seen.front().map_or(ts, |s| s.0)))
                }
                State::Temporal(last) => {
                    if let Some(slot) = last.get_mut(pos) {
                        *slot = Some(ts);
                    }
                    let all = last.iter().all(|t| t.is_some_and(|t| t >= lo));
                    let first = last.iter().flatten().copied().fold(ts, f64::min);
                    all.then_some((n as f64, first))
                }
                State::Ordered(times) => {
                    if pos == 0 {
                        times.iter_mut().for_each(|t| *t = None);
                        times[0] = Some(ts);
                    } else if times.get(pos - 1).copied().flatten().is_some()
                        && times.first().copied().flatten().is_some_and(|t0| t0 >= lo)
                    {
                        times[pos] = Some(ts);
                    }
                    let done = times.last().copied().flatten().is_some();
                    done.then(|| (n as f64, times.first().copied().flatten().unwrap_or(ts)))
                }
            };
            if let Some((v, first)) = fired {
                let group = c.group_by.iter().cloned().zip(gkey.1.iter().cloned()).collect();
                out.push(CorrelationHit {
                    correlation: ci,
                    group,
                    value: v,
                    first,
                    last: ts,
                    evidence: g.evidence.iter().cloned().collect(),
                });
                // Start over: the next alert needs a fresh set of matches.
                self.groups.remove(&gkey);
            }
        }
    }

    fn make_room(&mut self, set: &SigmaSet, now: f64) {
        let before = self.groups.len();
        self.groups.retain(|(ci, _), g| {
            let span = set.correlations.get(*ci as usize).map_or(0.0, |c| c.corr.timespan_secs);
            g.last >= now - span
        });
        if self.groups.len() >= self.cfg.max_groups {
            // Still full of live groups: drop the least recently updated
            // tenth at once, so that a flood of new groups costs one scan
            // per tenth of the table rather than one per group.
            let mut lasts: Vec<f64> = self.groups.values().map(|g| g.last).collect();
            let k = (self.cfg.max_groups / 10).max(1).min(lasts.len() - 1);
            lasts.select_nth_unstable_by(k, f64::total_cmp);
            let cut = lasts[k];
            let mut budget = k;
            self.groups.retain(|_, g| {
                if budget > 0 && g.last <= cut {
                    budget -= 1;
                    false
                } else {
                    true
                }
            });
        }
        self.counters.groups_evicted += (before - self.groups.len()) as u64;
    }
}
