//! The audit trail: every search, change and ingest, who and from where,
//! appended to `<data>/audit.log` as JSON lines chained by SHA-256 (each
//! entry's hash covers the previous hash and the entry), so an edited,
//! removed or reordered line breaks the chain at that line.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    /// Epoch seconds.
    pub ts: f64,
    pub who: String,
    /// The caller's address.
    pub from: String,
    /// `search`, `aggregate`, `ingest`, `alert.status`, ...
    pub action: String,
    /// What was asked or changed (a query, an alert id and its new state).
    pub detail: serde_json::Value,
    pub prev: String,
    pub hash: String,
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn entry_hash(e: &AuditEntry) -> String {
    let body = serde_json::json!({
        "seq": e.seq, "ts": e.ts, "who": e.who, "from": e.from, "action": e.action, "detail": e.detail, "prev": e.prev,
    });
    let mut h = Sha256::new();
    h.update(e.prev.as_bytes());
    h.update(body.to_string().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub struct Audit {
    path: PathBuf,
    state: Mutex<(u64, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("audit log line {line}: {reason}")]
    Broken { line: usize, reason: String },
}

impl Audit {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the trail, checking the chain it holds.
    pub fn open(data: &Path) -> Result<Audit, AuditError> {
        let path = data.join("audit.log");
        let (seq, last) = match verify(&path) {
            Ok(v) => v,
            Err(AuditError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                (0, GENESIS.to_string())
            }
            Err(e) => return Err(e),
        };
        Ok(Audit { path, state: Mutex::new((seq, last)) })
    }

    /// Appends an entry (synced to disk before returning).
    pub fn record(&self, who: &str, from: &str, action: &str, detail: serde_json::Value) -> Result<(), AuditError> {
        let io = |source| AuditError::Io { path: self.path.display().to_string(), source };
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let mut e = AuditEntry {
            seq: st.0 + 1,
            ts: (ts * 1e6).round() / 1e6,
            who: who.into(),
            from: from.into(),
            action: action.into(),
            detail,
            prev: st.1.clone(),
            hash: String::new(),
        };
        e.hash = entry_hash(&e);
        let mut line = serde_json::to_string(&e).map_err(|x| io(std::io::Error::other(x)))?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(io)?;
        f.write_all(line.as_bytes()).and_then(|_| f.sync_data()).map_err(io)?;
        *st = (e.seq, e.hash);
        Ok(())
    }

    /// Entries, newest last, optionally filtered by action or caller.
    pub fn read(&self, action: Option<&str>, who: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let mut out: Vec<AuditEntry> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<AuditEntry>(l).ok())
            .filter(|e| action.is_none_or(|a| e.action == a) && who.is_none_or(|w| e.who == w))
            .collect();
        let skip = out.len().saturating_sub(limit);
        out.drain(..skip);
        Ok(out)
    }
}

/// Walks the chain of an audit log: the number of entries and the last hash,
/// or the first line that breaks it.
pub fn verify(path: &Path) -> Result<(u64, String), AuditError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| AuditError::Io { path: path.display().to_string(), source })?;
    let mut prev = GENESIS.to_string();
    let mut seq = 0;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let e: AuditEntry = serde_json::from_str(line)
            .map_err(|x| AuditError::Broken { line: n, reason: format!("not an entry: {x}") })?;
        if e.seq != seq + 1 {
            return Err(AuditError::Broken { line: n, reason: format!("sequence {} after {seq}", e.seq) });
        }
        if e.prev != prev {
            return Err(AuditError::Broken { line: n, reason: "does not follow the previous entry".into() });
        }
        if entry_hash(&e) != e.hash {
            return Err(AuditError::Broken { line: n, reason: "content does not match its hash".into() });
        }
        prev = e.hash;
        seq = e.seq;
    }
    Ok((seq, prev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_catches_edits_removals_and_reordering() {
        let dir = tempfile::tempdir().unwrap();
        let a = Audit::open(dir.path()).unwrap();
        for i in 0..4 {
            a.record("analyst", "127.0.0.1", "search", serde_json::json!({"q": format!("uid:C{i}")})).unwrap();
        }
        let path = dir.path().join("audit.log");
        assert_eq!(verify(&path).unwrap().0, 4);
        // Reopening continues the chain.
        let a = Audit::open(dir.path()).unwrap();
        a.record("admin", "127.0.0.1", "alert.status", serde_json::json!({"id": "A1"})).unwrap();
        assert_eq!(verify(&path).unwrap().0, 5);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let edited = text.replace("uid:C2", "uid:C9");
        std::fs::write(&path, &edited).unwrap();
        assert!(matches!(verify(&path), Err(AuditError::Broken { line: 3, .. })));
        let removed: Vec<&str> = lines.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, l)| *l).collect();
        std::fs::write(&path, removed.join("\n")).unwrap();
        assert!(matches!(verify(&path), Err(AuditError::Broken { line: 2, .. })));
        assert!(Audit::open(dir.path()).is_err(), "a broken trail is not appended to");
    }
}
