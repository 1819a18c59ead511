//! Saved searches, per user, in `<data>/console-searches.json` (written
//! whole to a temporary file, then renamed).

use crate::error::ConsoleError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub name: String,
    pub q: String,
    pub range: String,
    /// Typed ends of a custom range, as typed (a span stays relative).
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
}

/// Searches one user keeps at most.
pub const MAX_PER_USER: usize = 50;
const MAX_NAME: usize = 100;
const MAX_QUERY: usize = 4000;

pub struct SavedSearches {
    path: PathBuf,
    by_user: Mutex<BTreeMap<String, Vec<Saved>>>,
}

impl SavedSearches {
    pub fn open(data: &Path) -> Result<SavedSearches, ConsoleError> {
        let path = data.join("console-searches.json");
        let by_user = crate::json_file::load(&path)?;
        Ok(SavedSearches { path, by_user: Mutex::new(by_user) })
    }

    pub fn list(&self, user: &str) -> Vec<Saved> {
        self.by_user.lock().unwrap_or_else(|p| p.into_inner()).get(user).cloned().unwrap_or_default()
    }

    /// Saves (or replaces, by name) a search of `user`.
    pub fn save(&self, user: &str, s: Saved) -> Result<(), ConsoleError> {
        let name = s.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME {
            return Err(ConsoleError::Invalid(format!("a name of 1 to {MAX_NAME} characters is needed")));
        }
        if s.q.trim().is_empty() || s.q.len() > MAX_QUERY {
            return Err(ConsoleError::Invalid(format!("a query of 1 to {MAX_QUERY} bytes is needed")));
        }
        let s = Saved { name: name.to_string(), ..s };
        let mut all = self.by_user.lock().unwrap_or_else(|p| p.into_inner());
        let mine = all.entry(user.to_string()).or_default();
        mine.retain(|x| x.name != s.name);
        if mine.len() >= MAX_PER_USER {
            return Err(ConsoleError::Invalid(format!("at most {MAX_PER_USER} saved searches; delete one first")));
        }
        mine.push(s);
        self.write(&all)
    }

    pub fn delete(&self, user: &str, name: &str) -> Result<(), ConsoleError> {
        let mut all = self.by_user.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mine) = all.get_mut(user) {
            mine.retain(|x| x.name != name);
        }
        self.write(&all)
    }

    fn write(&self, all: &BTreeMap<String, Vec<Saved>>) -> Result<(), ConsoleError> {
        crate::json_file::store(&self.path, all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_per_user_replaced_by_name_kept_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let s = SavedSearches::open(dir.path()).unwrap();
        let q = |name: &str, q: &str| Saved {
            name: name.into(),
            q: q.into(),
            range: "24h".into(),
            from: String::new(),
            to: String::new(),
        };
        s.save("lan", q("modbus writes", "_log:modbus_detailed func:WRITE_*")).unwrap();
        s.save("lan", q("modbus writes", "_log:modbus_detailed")).unwrap();
        s.save("minh", q("ssh", "_log:ssh")).unwrap();
        assert!(s.save("lan", q(" ", "x")).is_err());
        assert!(s.save("lan", q("empty", "")).is_err());
        drop(s);
        let s = SavedSearches::open(dir.path()).unwrap();
        assert_eq!(s.list("lan"), [q("modbus writes", "_log:modbus_detailed")]);
        s.delete("lan", "modbus writes").unwrap();
        assert!(s.list("lan").is_empty());
        assert_eq!(s.list("minh").len(), 1);
    }
}
