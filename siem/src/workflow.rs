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
    Status { alert: String, status: Status, reason: Option<String>, by: String, ts: f64 },
    Assign { alert: String, to: Option<String>, by: String, ts: f64 },
    Comment { alert: String, text: String, by: String, ts: f64 },
}

/// Longest comment or reason kept.
pub const MAX_TEXT: usize = 4000;

pub struct Workflow {
    path: PathBuf,
    state: Mutex<HashMap<String, Triage>>,
}

fn apply(state: &mut HashMap<String, Triage>, c: &Change) {
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
    }
}

impl Workflow {
    pub fn open(data: &Path) -> std::io::Result<Workflow> {
        let path = data.join("workflow.log");
        let mut state = HashMap::new();
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
        };
        Ok(st.get(id).cloned().unwrap_or_default())
    }

    pub fn get(&self, alert: &str) -> Triage {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).get(alert).cloned().unwrap_or_default()
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
}
