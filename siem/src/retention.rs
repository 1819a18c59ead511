//! Retention: each class of record (alerts, protocol records, flows) has a
//! maximum age and a disk budget, enforced by dropping whole partitions,
//! oldest first. The newest day of a class is never dropped for its budget,
//! since that is where ingest writes; a class whose newest day alone is over
//! budget is reported as such.
//!
//! A day's age counts from when it ended or from when records were last
//! written to it, whichever is later. A replayed capture (a seized 2023
//! recording analysed today) is history ingested now: aged by its records'
//! times alone it would be dropped minutes after it came, before anyone
//! looked at it. Aged by its ingest time it is kept as long as the class's
//! retention says, from the day it came, and goes by itself afterwards;
//! holding imported cases until an analyst releases them would keep them
//! forever whenever nobody does.

use crate::store::{day_of, day_start, Class, Partition, Result, Store};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ClassPolicy {
    /// Partitions whose day ended, and that were last written to, more than
    /// this long ago are dropped.
    #[serde(rename = "max_age_secs", serialize_with = "secs")]
    pub max_age: Option<Duration>,
    pub max_bytes: Option<u64>,
}

fn secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs()),
        None => s.serialize_none(),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Policy(pub BTreeMap<Class, ClassPolicy>);

const DAY: u64 = 86_400;

impl Default for Policy {
    /// A year of alerts, 90 days of protocol records, 30 days of flows; no
    /// disk budget until one is set.
    fn default() -> Policy {
        let age = |days: u64| ClassPolicy { max_age: Some(Duration::from_secs(days * DAY)), max_bytes: None };
        Policy(BTreeMap::from([(Class::Alerts, age(365)), (Class::Records, age(90)), (Class::Flows, age(30))]))
    }
}

impl Policy {
    pub fn get(&self, class: Class) -> ClassPolicy {
        self.0.get(&class).copied().unwrap_or(ClassPolicy { max_age: None, max_bytes: None })
    }

    /// `CLASS=AGE` (`flows=30d`, `alerts=1y`, `records=none`).
    pub fn set_age(&mut self, spec: &str) -> std::result::Result<(), String> {
        let (class, v) = split(spec)?;
        let age = if v == "none" {
            None
        } else {
            let d = humantime::parse_duration(v).map_err(|e| format!("'{v}' is not a duration (like 30d): {e}"))?;
            if d.is_zero() {
                return Err("a maximum age of zero would drop everything; use a duration or 'none'".into());
            }
            Some(d)
        };
        self.0.entry(class).or_insert(ClassPolicy { max_age: None, max_bytes: None }).max_age = age;
        Ok(())
    }

    /// `CLASS=SIZE` (`flows=50GiB`, `records=none`).
    pub fn set_budget(&mut self, spec: &str) -> std::result::Result<(), String> {
        let (class, v) = split(spec)?;
        let bytes = if v == "none" {
            None
        } else {
            Some(v.parse::<bytesize::ByteSize>().map_err(|e| format!("'{v}' is not a size (like 50GiB): {e}"))?.0)
        };
        self.0.entry(class).or_insert(ClassPolicy { max_age: None, max_bytes: None }).max_bytes = bytes;
        Ok(())
    }
}

fn split(spec: &str) -> std::result::Result<(Class, &str), String> {
    let (c, v) = spec.split_once('=').ok_or_else(|| format!("'{spec}': expected CLASS=VALUE"))?;
    let class = Class::parse(c.trim()).ok_or_else(|| format!("unknown class '{c}': one of alerts, records, flows"))?;
    Ok((class, v.trim()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    Age,
    Budget,
}

/// One partition retention removed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Dropped {
    pub class: Class,
    pub day: String,
    pub records: u64,
    pub bytes: u64,
    pub reason: Reason,
}

/// When a partition's age starts: the end of its day, or when it was last
/// written to if later.
pub fn aged_from(p: &Partition) -> f64 {
    let end = day_start(&p.day).map_or(0.0, |s| s + DAY as f64);
    p.ingested.map_or(end, |t| t.max(end))
}

/// Whether a record of this time, ingested now, is older than its class's
/// retention: it is kept that long from now (see the module's note).
pub fn older_than_retention(policy: &Policy, class: Class, ts: f64, now: f64) -> bool {
    policy.get(class).max_age.is_some_and(|age| day_of(ts) < day_of(now - age.as_secs_f64()))
}

/// What to drop, given the partitions present, the policy and the time.
pub fn plan(parts: &[Partition], policy: &Policy, now: f64) -> Vec<Dropped> {
    let mut out = Vec::new();
    for class in Class::ALL {
        let p = policy.get(class);
        let mut mine: Vec<&Partition> = parts.iter().filter(|x| x.class == class).collect();
        mine.sort_by(|a, b| aged_from(a).total_cmp(&aged_from(b)).then_with(|| a.day.cmp(&b.day)));
        if let Some(age) = p.max_age {
            // A day is kept while any of it is younger than the age, and
            // for the age after it was last written to.
            let cutoff = day_of(now - age.as_secs_f64());
            let written = now - age.as_secs_f64();
            mine.retain(|x| {
                let old = x.day < cutoff && x.ingested.is_none_or(|t| t < written);
                if old {
                    out.push(Dropped {
                        class,
                        day: x.day.clone(),
                        records: x.records,
                        bytes: x.bytes,
                        reason: Reason::Age,
                    });
                }
                !old
            });
        }
        if let Some(budget) = p.max_bytes {
            let mut total: u64 = mine.iter().map(|x| x.bytes).sum();
            while total > budget && mine.len() > 1 {
                let x = mine.remove(0);
                total -= x.bytes;
                out.push(Dropped {
                    class,
                    day: x.day.clone(),
                    records: x.records,
                    bytes: x.bytes,
                    reason: Reason::Budget,
                });
            }
        }
    }
    out
}

/// Drops what the plan says; returns what was dropped.
pub fn enforce(store: &dyn Store, policy: &Policy, now: f64) -> Result<Vec<Dropped>> {
    let parts = store.partitions()?;
    let mut done = Vec::new();
    for d in plan(&parts, policy, now) {
        if store.drop_partition(d.class, &d.day)? {
            done.push(d);
        }
    }
    Ok(done)
}

/// Per class: policy, what is kept, and whether it is over its budget.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassStatus {
    pub class: Class,
    pub policy: ClassPolicy,
    pub partitions: usize,
    pub records: u64,
    pub bytes: u64,
    pub oldest: Option<String>,
    pub newest: Option<String>,
    pub over_budget: bool,
}

pub fn status(parts: &[Partition], policy: &Policy) -> Vec<ClassStatus> {
    Class::ALL
        .into_iter()
        .map(|class| {
            let mine: Vec<&Partition> = parts.iter().filter(|x| x.class == class).collect();
            let bytes = mine.iter().map(|x| x.bytes).sum();
            let p = policy.get(class);
            ClassStatus {
                class,
                policy: p,
                partitions: mine.len(),
                records: mine.iter().map(|x| x.records).sum(),
                bytes,
                oldest: mine.iter().map(|x| x.day.clone()).min(),
                newest: mine.iter().map(|x| x.day.clone()).max(),
                over_budget: p.max_bytes.is_some_and(|b| bytes > b),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(class: Class, day: &str, bytes: u64) -> Partition {
        Partition { class, day: day.into(), records: 10, bytes, ingested: None }
    }

    /// A 2023 capture replayed today is kept for the age from today, and
    /// goes once that has passed; the budget takes the days written longest
    /// ago first.
    #[test]
    fn replayed_history_ages_from_when_it_was_ingested() {
        let now = 1_799_963_200.0; // 2027-01-15
        let replayed =
            |day: &str, ingested: f64| Partition { ingested: Some(ingested), ..part(Class::Flows, day, 100) };
        let parts = vec![
            replayed("2023-11-14", now - 600.0),
            replayed("2023-11-15", now - 31.0 * 86_400.0),
            part(Class::Flows, "2023-11-16", 100),
        ];
        let p = Policy::default();
        let got: Vec<String> = plan(&parts, &p, now).into_iter().map(|d| d.day).collect();
        assert_eq!(got, ["2023-11-16", "2023-11-15"], "only what was written more than 30 days ago goes");
        assert!(older_than_retention(&p, Class::Flows, 1_700_000_000.0, now));
        assert!(!older_than_retention(&p, Class::Flows, now - 86_400.0, now));
        assert!(!older_than_retention(&p, Class::Alerts, now - 300.0 * 86_400.0, now));
        let mut p = Policy(Default::default());
        p.set_budget("flows=250B").unwrap();
        let got: Vec<String> = plan(&parts, &p, now).into_iter().map(|d| d.day).collect();
        assert_eq!(got, ["2023-11-16"], "the day written longest ago goes first, the one written last stays");
    }

    #[test]
    fn age_and_budget_drop_oldest_first_per_class() {
        let parts = vec![
            part(Class::Flows, "2023-11-10", 100),
            part(Class::Flows, "2023-11-13", 100),
            part(Class::Flows, "2023-11-14", 100),
            part(Class::Alerts, "2023-11-10", 100),
            part(Class::Records, "2023-11-12", 500),
            part(Class::Records, "2023-11-13", 500),
            part(Class::Records, "2023-11-14", 500),
        ];
        let mut p = Policy::default();
        p.set_age("flows=2d").unwrap();
        p.set_budget("records=900B").unwrap();
        // 2023-11-14 12:00 UTC.
        let now = 1_699_963_200.0;
        let got: Vec<(Class, String, Reason)> =
            plan(&parts, &p, now).into_iter().map(|d| (d.class, d.day, d.reason)).collect();
        assert_eq!(
            got,
            [
                (Class::Records, "2023-11-12".to_string(), Reason::Budget),
                (Class::Records, "2023-11-13".to_string(), Reason::Budget),
                (Class::Flows, "2023-11-10".to_string(), Reason::Age),
            ]
        );
        let st = status(&parts, &p);
        assert!(st.iter().find(|s| s.class == Class::Records).unwrap().over_budget);
        assert_eq!(st.iter().find(|s| s.class == Class::Alerts).unwrap().oldest.as_deref(), Some("2023-11-10"));
    }

    #[test]
    fn the_newest_day_survives_its_budget() {
        let parts = vec![part(Class::Flows, "2023-11-14", 5000)];
        let mut p = Policy::default();
        p.set_budget("flows=1KiB").unwrap();
        assert!(plan(&parts, &p, 1_699_963_200.0).is_empty());
    }

    #[test]
    fn bad_specs_say_why() {
        let mut p = Policy::default();
        assert!(p.set_age("packets=3d").unwrap_err().contains("unknown class"));
        assert!(p.set_age("flows=soon").unwrap_err().contains("not a duration"));
        assert!(p.set_age("flows=0s").unwrap_err().contains("zero"));
        assert!(p.set_budget("flows=lots").unwrap_err().contains("not a size"));
        assert!(p.set_budget("flows").unwrap_err().contains("CLASS=VALUE"));
        p.set_age("alerts=none").unwrap();
        assert_eq!(p.get(Class::Alerts).max_age, None);
    }
}
