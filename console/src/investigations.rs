//! Saved investigations, in `<data>/console-investigations.json` (written
//! whole to a temporary file, then renamed): what a responder looked at and
//! why, step by step (searches, flows and hosts over a range, notes), kept
//! under a title and attached to an incident.

use crate::error::ConsoleError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What one step of an investigation looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A search (`value`: the query).
    Search,
    /// A flow's timeline by uid.
    Uid,
    /// A flow's timeline across sensors by Community ID.
    CommunityId,
    /// A host's timeline (`value`: the address).
    Addr,
    /// A note alone.
    Note,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "search" => Kind::Search,
            "uid" => Kind::Uid,
            "community_id" => Kind::CommunityId,
            "addr" => Kind::Addr,
            "note" => Kind::Note,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Search => "search",
            Kind::Uid => "uid",
            Kind::CommunityId => "community_id",
            Kind::Addr => "addr",
            Kind::Note => "note",
        }
    }
}

/// One step: what was looked at, over which range (as typed: `24h` stays
/// relative, a typed time stays that time), and the note kept with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub ts: f64,
    pub by: String,
    pub kind: Kind,
    pub value: String,
    pub range: String,
    pub from: String,
    pub to: String,
    pub note: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Investigation {
    pub id: String,
    pub title: String,
    pub owner: String,
    pub created_ts: f64,
    pub updated_ts: f64,
    /// The incident it is attached to.
    pub incident: Option<String>,
    pub steps: Vec<Step>,
}

/// Investigations kept at most, and steps in one: bounds on the file.
pub const MAX_INVESTIGATIONS: usize = 2000;
pub const MAX_STEPS: usize = 200;
pub const MAX_TITLE: usize = 200;
pub const MAX_VALUE: usize = 4000;
pub const MAX_NOTE: usize = 4000;

pub struct Investigations {
    path: PathBuf,
    all: Mutex<Vec<Investigation>>,
}

fn invalid(m: String) -> ConsoleError {
    ConsoleError::Invalid(m)
}

impl Investigations {
    pub fn open(data: &Path) -> Result<Investigations, ConsoleError> {
        let path = data.join("console-investigations.json");
        let all = crate::json_file::load(&path)?;
        Ok(Investigations { path, all: Mutex::new(all) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Investigation>> {
        self.all.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every investigation, most recently changed first.
    pub fn list(&self) -> Vec<Investigation> {
        let mut v = self.lock().clone();
        v.sort_by(|a, b| b.updated_ts.total_cmp(&a.updated_ts));
        v
    }

    pub fn get(&self, id: &str) -> Option<Investigation> {
        self.lock().iter().find(|i| i.id == id).cloned()
    }

    /// The investigations attached to an incident, oldest first.
    pub fn of_incident(&self, incident: &str) -> Vec<Investigation> {
        self.lock().iter().filter(|i| i.incident.as_deref() == Some(incident)).cloned().collect()
    }

    /// A new investigation of `owner`; its id.
    pub fn create(&self, owner: &str, title: &str, now: f64) -> Result<Investigation, ConsoleError> {
        let title = title.trim();
        if title.is_empty() || title.chars().count() > MAX_TITLE {
            return Err(invalid(format!("a title of 1 to {MAX_TITLE} characters is needed")));
        }
        let mut all = self.lock();
        if all.len() >= MAX_INVESTIGATIONS {
            return Err(invalid(format!("at most {MAX_INVESTIGATIONS} investigations are kept")));
        }
        // Ids count up and are never reused (the largest so far, plus one).
        let next = all.iter().filter_map(|i| i.id.strip_prefix("V")?.parse::<u64>().ok()).max().unwrap_or(0) + 1;
        let inv = Investigation {
            id: format!("V{next}"),
            title: title.to_string(),
            owner: owner.to_string(),
            created_ts: now,
            updated_ts: now,
            incident: None,
            steps: Vec::new(),
        };
        all.push(inv.clone());
        self.write(&all)?;
        Ok(inv)
    }

    /// Adds a step to an investigation.
    pub fn add(&self, id: &str, step: Step) -> Result<(), ConsoleError> {
        if step.value.len() > MAX_VALUE || step.note.len() > MAX_NOTE {
            return Err(invalid(format!("a value or note of at most {MAX_NOTE} bytes")));
        }
        if step.kind == Kind::Note && step.note.trim().is_empty() {
            return Err(invalid("a note needs its text".into()));
        }
        if step.kind != Kind::Note && step.value.trim().is_empty() {
            return Err(invalid("nothing to keep: no query, flow or address".into()));
        }
        let mut all = self.lock();
        let inv = all.iter_mut().find(|i| i.id == id).ok_or(ConsoleError::NotFound)?;
        if inv.steps.len() >= MAX_STEPS {
            return Err(invalid(format!("at most {MAX_STEPS} steps in one investigation")));
        }
        inv.updated_ts = step.ts;
        inv.steps.push(step);
        self.write(&all)
    }

    /// Attaches an investigation to an incident (one at a time: attaching
    /// again moves it).
    pub fn attach(&self, id: &str, incident: &str, now: f64) -> Result<(), ConsoleError> {
        let mut all = self.lock();
        let inv = all.iter_mut().find(|i| i.id == id).ok_or(ConsoleError::NotFound)?;
        inv.incident = Some(incident.to_string());
        inv.updated_ts = now;
        self.write(&all)
    }

    fn write(&self, all: &[Investigation]) -> Result<(), ConsoleError> {
        crate::json_file::store(&self.path, all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(kind: Kind, value: &str, note: &str) -> Step {
        Step {
            ts: 2.0,
            by: "lan".into(),
            kind,
            value: value.into(),
            range: "custom".into(),
            from: "2026-12-07 08:00".into(),
            to: String::new(),
            note: note.into(),
        }
    }

    #[test]
    fn steps_kept_attached_and_kept_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let s = Investigations::open(dir.path()).unwrap();
        let a = s.create("lan", " Beacon from 10.20.0.5 ", 1.0).unwrap();
        assert_eq!((a.id.as_str(), a.title.as_str()), ("V1", "Beacon from 10.20.0.5"));
        assert!(s.create("lan", "  ", 1.0).is_err());
        s.add(&a.id, step(Kind::Search, "id.orig_h:10.20.0.5", "starts here")).unwrap();
        s.add(&a.id, step(Kind::Uid, "CFLOW1", "")).unwrap();
        assert!(s.add(&a.id, step(Kind::Note, "", " ")).is_err());
        assert!(s.add(&a.id, step(Kind::Search, "", "no query")).is_err());
        assert!(matches!(s.add("V9", step(Kind::Uid, "C", "")), Err(ConsoleError::NotFound)));
        s.attach(&a.id, "I3", 3.0).unwrap();
        let b = s.create("minh", "Other", 4.0).unwrap();
        assert_eq!(b.id, "V2");
        drop(s);
        let s = Investigations::open(dir.path()).unwrap();
        let got = s.get("V1").unwrap();
        assert_eq!(got.steps.len(), 2);
        assert_eq!(got.steps[1].kind, Kind::Uid);
        assert_eq!(s.of_incident("I3").iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["V1"]);
        assert!(s.of_incident("I4").is_empty());
        assert_eq!(s.list()[0].id, "V2", "most recently changed first");
        assert_eq!(Kind::parse("community_id").map(Kind::name), Some("community_id"));
    }
}
