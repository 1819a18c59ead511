//! Triage of alerts: status, assignee and comments, kept as an append-only
//! log of changes (`<data>/workflow.log`, synced before a change is
//! acknowledged) and replayed into memory at start. Alerts themselves stay
//! in the store, unchanged; their triage state is joined to them on read.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    New,
    Acknowledged,
    InProgress,
    ClosedTruePositive,
    ClosedFalsePositive,
    ClosedBenign,
}

impl Status {
    pub fn parse(s: &str) -> Option<Status> {
        serde_json::from_value(serde_json::Value::String(s.into())).ok()
    }

    pub fn is_closed(self) -> bool {
        matches!(self, Status::ClosedTruePositive | Status::ClosedFalsePositive | Status::ClosedBenign)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    pub by: String,
    pub ts: f64,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Triage {
    pub status: Status,
    pub assignee: Option<String>,
    pub comments: Vec<Comment>,
    /// Why it was last closed or reopened.
    pub reason: Option<String>,
    pub updated_by: Option<String>,
    pub updated_ts: Option<f64>,
}

impl Default for Triage {
    fn default() -> Self {
        Triage {
            status: Status::New,
            assignee: None,
            comments: Vec::new(),
            reason: None,
            updated_by: None,
            updated_ts: None,
        }
    }
}

/// One change, as logged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Status {
        alert: String,
        status: Status,
        reason: Option<String>,
        by: String,
        ts: f64,
    },
    Assign {
        alert: String,
        to: Option<String>,
        by: String,
        ts: f64,
    },
    Comment {
        alert: String,
        text: String,
        by: String,
        ts: f64,
    },
    /// A new incident grouping alerts (`auto` names the grouping key when
    /// the SIEM made it).
    IncidentCreate {
        id: String,
        title: String,
        alerts: Vec<String>,
        auto: Option<String>,
        by: String,
        ts: f64,
    },
    IncidentUpdate {
        id: String,
        status: Option<IncidentStatus>,
        owner: Option<String>,
        note: Option<String>,
        evidence: Vec<String>,
        add_alerts: Vec<String>,
        remove_alerts: Vec<String>,
        by: String,
        ts: f64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Open,
    Investigating,
    Contained,
    Closed,
    /// Folded into another incident.
    Merged,
}

impl IncidentStatus {
    pub fn parse(s: &str) -> Option<IncidentStatus> {
        serde_json::from_value(serde_json::Value::String(s.into())).ok()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub title: String,
    pub status: IncidentStatus,
    pub owner: Option<String>,
    pub alerts: Vec<String>,
    pub notes: Vec<Comment>,
    /// References to evidence (record uids, pcap names, exports).
    pub evidence: Vec<String>,
    /// The grouping key of an incident the SIEM opened by itself.
    pub auto: Option<String>,
    pub created_by: String,
    pub created_ts: f64,
    pub updated_ts: f64,
}

#[derive(Default)]
struct State {
    alerts: HashMap<String, Triage>,
    incidents: std::collections::BTreeMap<String, Incident>,
    /// Open automatic incidents by grouping key, with the time of their
    /// last alert.
    auto: HashMap<String, (String, f64)>,
    next: u64,
}

/// Longest comment or reason kept.
pub const MAX_TEXT: usize = 4000;

pub struct Workflow {
    path: PathBuf,
    state: Mutex<State>,
}

fn apply(st: &mut State, c: &Change) {
    let state = &mut st.alerts;
    match c {
        Change::Status { alert, status, reason, by, ts } => {
            let t = state.entry(alert.clone()).or_default();
            t.status = *status;
            t.reason = reason.clone();
            t.updated_by = Some(by.clone());
            t.updated_ts = Some(*ts);
        }
        Change::Assign { alert, to, by, ts } => {
            let t = state.entry(alert.clone()).or_default();
            t.assignee = to.clone();
            t.updated_by = Some(by.clone());
            t.updated_ts = Some(*ts);
        }
        Change::Comment { alert, text, by, ts } => {
            let t = state.entry(alert.clone()).or_default();
            t.comments.push(Comment { by: by.clone(), ts: *ts, text: text.clone() });
            t.updated_by = Some(by.clone());
            t.updated_ts = Some(*ts);
        }
        Change::IncidentCreate { id, title, alerts, auto, by, ts } => {
            if let Some(n) = id.strip_prefix('I').and_then(|n| n.parse::<u64>().ok()) {
                st.next = st.next.max(n);
            }
            if let Some(k) = auto {
                st.auto.insert(k.clone(), (id.clone(), *ts));
            }
            st.incidents.insert(
                id.clone(),
                Incident {
                    id: id.clone(),
                    title: title.clone(),
                    status: IncidentStatus::Open,
                    owner: None,
                    alerts: alerts.clone(),
                    notes: Vec::new(),
                    evidence: Vec::new(),
                    auto: auto.clone(),
                    created_by: by.clone(),
                    created_ts: *ts,
                    updated_ts: *ts,
                },
            );
        }
        Change::IncidentUpdate { id, status, owner, note, evidence, add_alerts, remove_alerts, by, ts } => {
            let Some(inc) = st.incidents.get_mut(id) else { return };
            if let Some(s) = status {
                inc.status = *s;
                if matches!(s, IncidentStatus::Closed | IncidentStatus::Merged) {
                    if let Some(k) = &inc.auto {
                        st.auto.remove(k);
                    }
                }
            }
            if let Some(o) = owner {
                inc.owner = if o.is_empty() { None } else { Some(o.clone()) };
            }
            if let Some(n) = note {
                inc.notes.push(Comment { by: by.clone(), ts: *ts, text: n.clone() });
            }
            for e in evidence {
                if !inc.evidence.contains(e) {
                    inc.evidence.push(e.clone());
                }
            }
            for a in add_alerts {
                if !inc.alerts.contains(a) {
                    inc.alerts.push(a.clone());
                }
            }
            inc.alerts.retain(|a| !remove_alerts.contains(a));
            inc.updated_ts = *ts;
            if let Some(k) = &inc.auto {
                if let Some(e) = st.auto.get_mut(k) {
                    e.1 = e.1.max(*ts);
                }
            }
        }
    }
}

impl Workflow {
    pub fn open(data: &Path) -> std::io::Result<Workflow> {
        let path = data.join("workflow.log");
        let mut state = State::default();
        // A torn last line (a crash mid-write) held a change that was never
        // acknowledged: cut it, so the next change starts a line of its own.
        if let Ok(bytes) = std::fs::read(&path) {
            if !bytes.is_empty() && !bytes.ends_with(b"\n") {
                let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                std::fs::OpenOptions::new().write(true).open(&path)?.set_len(keep as u64)?;
            }
        }
        if let Ok(text) = std::fs::read_to_string(&path) {
            for (i, line) in text.lines().enumerate() {
                match serde_json::from_str::<Change>(line) {
                    Ok(c) => apply(&mut state, &c),
                    Err(e) => tracing::warn!(line = i + 1, error = %e, "workflow log line skipped"),
                }
            }
        }
        Ok(Workflow { path, state: Mutex::new(state) })
    }

    pub fn change(&self, c: Change) -> std::io::Result<Triage> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut line = serde_json::to_string(&c).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        f.write_all(line.as_bytes())?;
        f.sync_data()?;
        apply(&mut st, &c);
        let id = match &c {
            Change::Status { alert, .. } | Change::Assign { alert, .. } | Change::Comment { alert, .. } => alert,
            _ => return Ok(Triage::default()),
        };
        Ok(st.alerts.get(id).cloned().unwrap_or_default())
    }

    pub fn get(&self, alert: &str) -> Triage {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).alerts.get(alert).cloned().unwrap_or_default()
    }

    pub fn incident(&self, id: &str) -> Option<Incident> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).incidents.get(id).cloned()
    }

    pub fn incidents(&self) -> Vec<Incident> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).incidents.values().cloned().collect()
    }

    /// The incident an alert belongs to, if any (the first that lists it).
    pub fn incident_of(&self, alert: &str) -> Option<String> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.incidents
            .values()
            .find(|i| i.status != IncidentStatus::Merged && i.alerts.iter().any(|a| a == alert))
            .map(|i| i.id.clone())
    }

    /// A fresh incident id (`I` and a number).
    pub fn next_incident_id(&self) -> String {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        format!("I{}", st.next + 1)
    }

    /// Groups a new alert automatically: alerts of one rule from one source
    /// within `window_secs` of the group's last one share an incident.
    pub fn group_alert(
        &self,
        alert: &str,
        key: &str,
        title: &str,
        ts: f64,
        window_secs: f64,
    ) -> std::io::Result<String> {
        let existing = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.auto.get(key).filter(|(_, last)| ts - last <= window_secs).map(|(id, _)| id.clone())
        };
        match existing {
            Some(id) => {
                self.change(Change::IncidentUpdate {
                    id: id.clone(),
                    status: None,
                    owner: None,
                    note: None,
                    evidence: Vec::new(),
                    add_alerts: vec![alert.to_string()],
                    remove_alerts: Vec::new(),
                    by: "siem".into(),
                    ts,
                })?;
                Ok(id)
            }
            None => {
                let id = self.next_incident_id();
                self.change(Change::IncidentCreate {
                    id: id.clone(),
                    title: title.to_string(),
                    alerts: vec![alert.to_string()],
                    auto: Some(key.to_string()),
                    by: "siem".into(),
                    ts,
                })?;
                Ok(id)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let w = Workflow::open(dir.path()).unwrap();
        assert_eq!(w.get("A1").status, Status::New);
        w.change(Change::Assign { alert: "A1".into(), to: Some("lan".into()), by: "admin".into(), ts: 1.0 }).unwrap();
        w.change(Change::Comment {
            alert: "A1".into(),
            text: "scanner of the vendor".into(),
            by: "lan".into(),
            ts: 2.0,
        })
        .unwrap();
        let t = w
            .change(Change::Status {
                alert: "A1".into(),
                status: Status::ClosedFalsePositive,
                reason: Some("authorised scan".into()),
                by: "lan".into(),
                ts: 3.0,
            })
            .unwrap();
        assert!(t.status.is_closed());
        drop(w);
        // A torn line at the end is skipped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("workflow.log"))
            .unwrap()
            .write_all(b"{\"chan")
            .unwrap();
        let w = Workflow::open(dir.path()).unwrap();
        w.change(Change::Comment { alert: "A2".into(), text: "after the tear".into(), by: "lan".into(), ts: 4.0 })
            .unwrap();
        drop(w);
        let w = Workflow::open(dir.path()).unwrap();
        assert_eq!(w.get("A2").comments.len(), 1);
        let t = w.get("A1");
        assert_eq!(t.status, Status::ClosedFalsePositive);
        assert_eq!(t.assignee.as_deref(), Some("lan"));
        assert_eq!(t.comments.len(), 1);
        assert_eq!(Status::parse("in_progress"), Some(Status::InProgress));
        assert_eq!(Status::parse("done"), None);
    }

    #[test]
    fn alerts_group_into_incidents_by_rule_source_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let w = Workflow::open(dir.path()).unwrap();
        let a = w.group_alert("A1", "r1|10.0.0.1", "SQL injection from 10.0.0.1", 100.0, 3600.0).unwrap();
        let b = w.group_alert("A2", "r1|10.0.0.1", "SQL injection from 10.0.0.1", 200.0, 3600.0).unwrap();
        let c = w.group_alert("A3", "r1|10.0.0.2", "SQL injection from 10.0.0.2", 200.0, 3600.0).unwrap();
        let d = w.group_alert("A4", "r1|10.0.0.1", "SQL injection from 10.0.0.1", 9000.0, 3600.0).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d, "past the window a new incident starts");
        assert_eq!(w.incident(&a).unwrap().alerts, ["A1", "A2"]);
        drop(w);
        let w = Workflow::open(dir.path()).unwrap();
        assert_eq!(w.incidents().len(), 3);
        assert_eq!(w.next_incident_id(), "I4");
        assert_eq!(w.incident_of("A2").as_deref(), Some(a.as_str()));
    }
}
