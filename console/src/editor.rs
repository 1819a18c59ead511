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

/// A rule of the folder as the detector loads it.
#[derive(Clone, Debug)]
pub struct RuleInfo {
    /// `rule.id` of its alerts.
    pub id: String,
    pub title: String,
    /// `sigma`, `yara` or `model`.
    pub source: String,
    /// The file it is written in, relative to the rules folder.
    pub file: String,
    pub severity: String,
}

/// One alert of a back-test, as an analyst reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertLine {
    pub rule: String,
    pub title: String,
    pub ts: f64,
    pub orig: String,
    pub resp: String,
    pub severity: String,
    pub summary: String,
}

/// What one case raises with the candidate compared with the rules as
/// saved, and whether the case's expectations of the rules under test hold.
#[derive(Clone, Debug, Default)]
pub struct CaseResult {
    pub case: String,
    pub new: Vec<AlertLine>,
    pub lost: Vec<AlertLine>,
    /// Same alert (rule, flow, first time), something else about it
    /// changed: (as saved, candidate).
    pub changed: Vec<(AlertLine, AlertLine)>,
    /// Expectations of the case the candidate breaks.
    pub failures: Vec<String>,
    /// Expectations of the case the rules as saved break already.
    pub failed_before: bool,
    /// Alerts that changed beyond those listed (each list is cut at
    /// [`MAX_LISTED`]).
    pub not_listed: usize,
}

/// Alerts listed per case and kind of change: a rule that matches
/// everything would otherwise make a page of every alert of the suite.
pub const MAX_LISTED: usize = 100;

/// A back-test: the bundled captures replayed with the rules as saved and
/// with the candidate file, judged on the rules the file defines.
#[derive(Clone, Debug, Default)]
pub struct TestReport {
    /// The rules under test: (id, title).
    pub rules: Vec<(String, String)>,
    /// Cases with a change or a failure; cases where nothing changed and
    /// everything holds are only counted.
    pub results: Vec<CaseResult>,
    pub cases: usize,
}

impl TestReport {
    /// The cases whose expectations the candidate breaks.
    pub fn failing(&self) -> Vec<&str> {
        self.results.iter().filter(|r| !r.failures.is_empty()).map(|r| r.case.as_str()).collect()
    }
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
    /// The bundled captures replayed with the saved folder and with `text`
    /// as `path`, compared.
    fn test(&self, path: &str, text: &str) -> Result<TestReport, String>;
    /// Writes `text` as `path`, keeping the content it replaces as a
    /// version; returns the SHA-256 of the old and of the new content.
    fn save(&self, path: &str, text: &str) -> Result<(String, String), String>;
    /// Earlier contents of `path`, oldest first.
    fn versions(&self, path: &str) -> Vec<Version>;
    /// The content of one earlier version.
    fn version_text(&self, path: &str, id: &str) -> Result<String, String>;
    /// Every rule of the folder as saved.
    fn rules(&self) -> Vec<RuleInfo>;
}

/// The editor the console was given, if any.
#[derive(Clone, Default)]
pub struct Editor(pub Option<Arc<dyn RuleEditor>>);

impl std::fmt::Debug for Editor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Editor(rules folder)" } else { "Editor(none)" })
    }
}
