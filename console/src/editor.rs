//! Editing the rules folder from the console. The console knows nothing
//! of rule formats: the binary hands it a [`RuleEditor`] that checks a
//! file as the detector would load it and replays the bundled captures with
//! the candidate file in place, before anything is saved.

use std::sync::Arc;

/// A problem in a candidate file, where an admin can find it.
#[derive(Clone, Debug)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub code: String,
    pub message: String,
}

/// One rule's alerts over the bundled captures.
#[derive(Clone, Debug)]
pub struct TestRow {
    pub rule: String,
    pub expected: usize,
    pub got: usize,
    pub cases: String,
}

#[derive(Clone, Debug, Default)]
pub struct TestReport {
    pub rows: Vec<TestRow>,
    /// Cases whose expectations the candidate breaks, with why.
    pub failures: Vec<String>,
    pub cases: usize,
}

/// A saved earlier content of a file.
#[derive(Clone, Debug)]
pub struct Version {
    pub id: String,
    pub ts: f64,
    pub sha256: String,
}

pub trait RuleEditor: Send + Sync {
    /// The editable files, as paths relative to the rules folder.
    fn files(&self) -> Vec<String>;
    fn read(&self, path: &str) -> Result<String, String>;
    /// What the detector would report on loading the folder with `text` as `path`.
    fn check(&self, path: &str, text: &str) -> Vec<Problem>;
    /// The bundled captures replayed with `text` as `path`.
    fn test(&self, path: &str, text: &str) -> Result<TestReport, String>;
    /// Writes `text` as `path`, keeping the content it replaces as a
    /// version; returns the SHA-256 of the old and of the new content.
    fn save(&self, path: &str, text: &str) -> Result<(String, String), String>;
    fn versions(&self, path: &str) -> Vec<Version>;
}

/// The editor the console was given, if any.
#[derive(Clone, Default)]
pub struct Editor(pub Option<Arc<dyn RuleEditor>>);

impl std::fmt::Debug for Editor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Editor(rules folder)" } else { "Editor(none)" })
    }
}
