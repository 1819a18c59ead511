//! The console's rule editor over a rules folder: a candidate file is
//! checked and tested in a scratch copy of the folder, so the live folder
//! changes only on save, and every save keeps the content it replaces.
//!
//! A back-test replays the bundled captures twice, with the folder as saved
//! and with the candidate, and judges the cases only on the rules the
//! edited file defines (for `tuning.toml`, the rules whose entries change).
//! Each case lists every alert it raises, so judging every rule would blame
//! an edit for whatever else differs from the cases, such as a rule an
//! admin switched off. The rules under test are back-tested as written even
//! when `tuning.toml` switches them off: the point is what they would do.

use crate::detection::DetectSettings;
use console::editor::{AlertLine, CaseResult, Problem, RuleEditor, RuleInfo, TestReport, Version};
use detector::detect::RuleSet;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

pub struct FolderEditor {
    pub rules: PathBuf,
    pub cases: PathBuf,
    /// Where replaced contents are kept (`<data>/rule-versions`: in the
    /// data directory, so they outlive restarts and go into backups).
    pub versions: PathBuf,
    /// The suite's alerts with the folder as saved, keyed by what they were
    /// computed from: back-tests of one edit after another replay it once.
    baseline: Mutex<Option<(String, Arc<SuiteAlerts>)>>,
    /// The last back-test, keyed by the baseline's key and the candidate:
    /// a save right after its test (or its confirmation) does not replay
    /// the captures again.
    last: Mutex<Option<(String, TestReport)>>,
    /// The folder's rules, keyed by its digest: the rules page lists them
    /// on every view, and loading compiles every rule.
    catalog: Mutex<Option<(String, Vec<RuleInfo>)>>,
}

/// Alerts per case, in case order.
type SuiteAlerts = Vec<Vec<Json>>;

const EDITABLE: &[&str] = &["yml", "yaml", "yar", "yara", "toml"];

fn sha(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else if p.extension().and_then(|x| x.to_str()).is_some_and(|x| EDITABLE.contains(&x)) {
            if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
}

fn every_file(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            every_file(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)?.flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

impl FolderEditor {
    /// The SHA-256 of every file of the folder with its path.
    fn digest(&self) -> String {
        let mut h = Sha256::new();
        let mut all = Vec::new();
        every_file(&self.rules, &mut all);
        all.sort();
        for f in all {
            h.update(f.to_string_lossy().as_bytes());
            h.update(std::fs::read(&f).unwrap_or_default());
        }
        hex(&h.finalize())
    }

    pub fn new(rules: PathBuf, cases: PathBuf, versions: PathBuf) -> FolderEditor {
        FolderEditor {
            rules,
            cases,
            versions,
            baseline: Mutex::new(None),
            last: Mutex::new(None),
            catalog: Mutex::new(None),
        }
    }

    /// The file under the folder; only plain relative paths listed by
    /// `files` get here, checked again so no path leaves the folder.
    fn file(&self, root: &Path, path: &str) -> Result<PathBuf, String> {
        let rel = Path::new(path);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) || !self.files().iter().any(|f| f == path) {
            return Err(format!("{path} is not a rule file of this folder"));
        }
        Ok(root.join(rel))
    }

    /// A scratch copy of the folder with `text` as `path`.
    fn scratch(&self, path: &str, text: &str) -> Result<(tempfile::TempDir, PathBuf), String> {
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let root = tmp.path().join("rules");
        copy_dir(&self.rules, &root).map_err(|e| e.to_string())?;
        let f = self.file(&root, path)?;
        std::fs::write(&f, text).map_err(|e| e.to_string())?;
        Ok((tmp, root))
    }
}

impl RuleEditor for FolderEditor {
    fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.rules, &self.rules, &mut out);
        out.sort();
        out
    }

    fn read(&self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(self.file(&self.rules, path)?).map_err(|e| e.to_string())
    }

    fn check(&self, path: &str, text: &str) -> Vec<Problem> {
        let problem = |message: String| Problem { file: path.into(), line: 0, column: 0, code: "E109".into(), message };
        let (_tmp, root) = match self.scratch(path, text) {
            Ok(x) => x,
            Err(e) => return vec![problem(e)],
        };
        let settings = DetectSettings { rules_dir: Some(root.clone()), ..Default::default() };
        let rules = match settings.load("check") {
            Ok(r) => r,
            // The mapping or placeholders file itself did not parse.
            Err(e) => return vec![problem(format!("{e:#}").replace(&root.display().to_string(), "rules"))],
        };
        rules
            .errors
            .iter()
            .map(|e| Problem {
                file: e
                    .file
                    .strip_prefix(&root)
                    .map_or_else(|_| e.file.display().to_string(), |p| p.display().to_string()),
                line: e.line,
                column: e.column,
                code: e.code.as_str().into(),
                message: e.message.clone(),
            })
            .collect()
    }

    fn test(&self, path: &str, text: &str) -> Result<TestReport, String> {
        let old = self.read(path)?;
        let (base_tmp, base_root) = self.scratch(path, &old)?;
        let (cand_tmp, cand_root) = self.scratch(path, text)?;
        let load = |root: &Path| {
            DetectSettings { rules_dir: Some(root.to_path_buf()), ..Default::default() }
                .load("sensor")
                .map_err(|e| format!("{e:#}"))
        };
        let (base_rules, cand_rules) = (load(&base_root)?, load(&cand_root)?);
        let under_test: BTreeSet<String> = if path == "tuning.toml" {
            tuning_changes(&old, text)
        } else {
            let mut ids: BTreeSet<String> = catalog(&base_rules, &base_root)
                .into_iter()
                .chain(catalog(&cand_rules, &cand_root))
                .filter(|r| r.file == path)
                .map(|r| r.id)
                .collect();
            // A file of no rules (the mapping, placeholders, intelligence)
            // bears on every rule.
            if ids.is_empty() {
                ids.insert("*".into());
            }
            ids
        };
        let mut titles: BTreeMap<String, String> = BTreeMap::new();
        for r in catalog(&base_rules, &base_root).into_iter().chain(catalog(&cand_rules, &cand_root)) {
            titles.insert(r.id, r.title);
        }
        let (base_rules, cand_rules) = if path == "tuning.toml" {
            (base_rules, cand_rules)
        } else {
            (
                switched_on(&base_root, &under_test).and_then(|_| load(&base_root))?,
                switched_on(&cand_root, &under_test).and_then(|_| load(&cand_root))?,
            )
        };
        let cases = crate::replay::load_cases(&self.cases).map_err(|e| format!("{e:#}"))?;
        let key = format!("{} {under_test:?}", self.digest());
        let candidate_key = format!("{key} {}", sha(&format!("{path}\n{text}")));
        if let Some((_, r)) = self.last.lock().ok().and_then(|g| g.clone()).filter(|(k, _)| *k == candidate_key) {
            return Ok(r);
        }
        let cached =
            self.baseline.lock().ok().and_then(|g| g.as_ref().filter(|(k, _)| *k == key).map(|(_, v)| Arc::clone(v)));
        let before = match cached {
            Some(b) => b,
            None => {
                let b = Arc::new(
                    crate::replay::suite_alerts(&cases, &base_rules, &base_tmp.path().join("logs"))
                        .map_err(|e| format!("{e:#}"))?,
                );
                if let Ok(mut g) = self.baseline.lock() {
                    *g = Some((key, Arc::clone(&b)));
                }
                b
            }
        };
        let after: SuiteAlerts = if text == old {
            before.as_ref().clone()
        } else {
            crate::replay::suite_alerts(&cases, &cand_rules, &cand_tmp.path().join("logs"))
                .map_err(|e| format!("{e:#}"))?
        };
        // Rules switched off before and after an edit of tuning.toml raise
        // nothing either way: not the edit's doing.
        let off_both: BTreeSet<String> = if path == "tuning.toml" {
            let (a, b) = (switched_off(&old), switched_off(text));
            a.intersection(&b).cloned().collect()
        } else {
            BTreeSet::new()
        };
        let judged = |r: &str| !off_both.contains(r) && (under_test.contains("*") || under_test.contains(r));
        let mut results = Vec::new();
        for ((case, b), a) in cases.iter().zip(before.iter()).zip(&after) {
            let mut res = diff(&case.name, b, a);
            res.failures = crate::replay::alert_failures(case, a, &judged);
            res.failed_before = !crate::replay::alert_failures(case, b, &judged).is_empty();
            if !(res.failures.is_empty() && res.new.is_empty() && res.lost.is_empty() && res.changed.is_empty()) {
                results.push(res);
            }
        }
        let report = TestReport {
            rules: under_test
                .into_iter()
                .map(|id| (titles.get(&id).cloned().unwrap_or_default(), id))
                .map(|(t, id)| (id, t))
                .collect(),
            results,
            cases: cases.len(),
        };
        if let Ok(mut g) = self.last.lock() {
            *g = Some((candidate_key, report.clone()));
        }
        Ok(report)
    }

    fn save(&self, path: &str, text: &str) -> Result<(String, String), String> {
        let f = self.file(&self.rules, path)?;
        let old = std::fs::read_to_string(&f).map_err(|e| e.to_string())?;
        let (before, after) = (sha(&old), sha(text));
        let vdir = self.versions.join(path.replace('/', "__"));
        std::fs::create_dir_all(&vdir).map_err(|e| e.to_string())?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        std::fs::write(vdir.join(format!("{now}-{}", &before[..16])), &old).map_err(|e| e.to_string())?;
        let tmp = f.with_extension("edit.tmp");
        std::fs::write(&tmp, text).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &f).map_err(|e| e.to_string())?;
        Ok((before, after))
    }

    fn versions(&self, path: &str) -> Vec<Version> {
        let vdir = self.versions.join(path.replace('/', "__"));
        let mut out: Vec<Version> = std::fs::read_dir(vdir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let (ms, hash) = name.split_once('-')?;
                Some(Version { ts: ms.parse::<f64>().ok()? / 1000.0, sha256: hash.to_string(), id: name })
            })
            .collect();
        out.sort_by(|a, b| a.ts.total_cmp(&b.ts).then_with(|| a.id.cmp(&b.id)));
        out
    }

    fn version_text(&self, path: &str, id: &str) -> Result<String, String> {
        self.file(&self.rules, path)?;
        if !self.versions(path).iter().any(|v| v.id == id) {
            return Err(format!("{path} has no version {id}"));
        }
        std::fs::read_to_string(self.versions.join(path.replace('/', "__")).join(id)).map_err(|e| e.to_string())
    }

    fn rules(&self) -> Vec<RuleInfo> {
        let key = self.digest();
        if let Some((_, c)) = self.catalog.lock().ok().and_then(|g| g.clone()).filter(|(k, _)| *k == key) {
            return c;
        }
        let settings = DetectSettings { rules_dir: Some(self.rules.clone()), ..Default::default() };
        let c = match settings.load("console") {
            Ok(r) => catalog(&r, &self.rules),
            Err(_) => Vec::new(),
        };
        if let Ok(mut g) = self.catalog.lock() {
            *g = Some((key, c.clone()));
        }
        c
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn sev(s: schema::Severity) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

/// Every rule a loaded folder defines, with the file it is in.
fn catalog(rules: &RuleSet, root: &Path) -> Vec<RuleInfo> {
    let rel = |f: &Path| f.strip_prefix(root).map_or_else(|_| f.display().to_string(), |p| p.display().to_string());
    let mut out = Vec::new();
    for r in &rules.sigma.rules {
        out.push(RuleInfo {
            id: r.meta.id.clone().unwrap_or_else(|| r.meta.title.clone()),
            title: r.meta.title.clone(),
            source: "sigma".into(),
            file: rel(&r.file),
            severity: sev(r.severity),
        });
    }
    for c in &rules.sigma.correlations {
        out.push(RuleInfo {
            id: c.meta.id.clone().unwrap_or_else(|| c.meta.title.clone()),
            title: c.meta.title.clone(),
            source: "sigma".into(),
            file: rel(&c.file),
            severity: sev(c.severity),
        });
    }
    if let Some(y) = &rules.yara {
        for i in y.info.values() {
            out.push(RuleInfo {
                id: i.id.clone(),
                title: i.title.clone(),
                source: "yara".into(),
                file: rel(&i.file),
                severity: sev(i.severity),
            });
        }
    }
    let m = &rules.models;
    let commons = [
        m.scan.as_ref().and_then(|c| c.common.as_ref()),
        m.flood.as_ref().and_then(|c| c.common.as_ref()),
        m.beacon.as_ref().and_then(|c| c.common.as_ref()),
        m.dns.as_ref().and_then(|c| c.common.as_ref()),
        m.brute.as_ref().and_then(|c| c.common.as_ref()),
        m.iot.as_ref().and_then(|c| c.common.as_ref()),
    ];
    for c in commons.into_iter().flatten() {
        out.push(RuleInfo {
            id: c.id.clone(),
            title: c.title.clone(),
            source: "model".into(),
            file: "models.toml".into(),
            severity: sev(c.severity),
        });
    }
    out.sort_by(|a, b| (&a.source, &a.title).cmp(&(&b.source, &b.title)));
    out
}

/// The rules an edit of `tuning.toml` bears on: those whose switch or
/// suppressions differ ("*" when a suppression of any rule does).
fn tuning_changes(old: &str, new: &str) -> BTreeSet<String> {
    // (rule, the entry as written): an entry that is in one text only
    // names its rule.
    let entries = |text: &str| -> BTreeSet<(String, String)> {
        let Ok(t) = text.parse::<toml::Table>() else { return BTreeSet::new() };
        let mut out = BTreeSet::new();
        for d in t.get("disabled").and_then(|v| v.as_array()).into_iter().flatten() {
            let id = d.as_str().unwrap_or("").to_string();
            out.insert((id.clone(), format!("off {id}")));
        }
        for s in t.get("suppress").and_then(|v| v.as_array()).into_iter().flatten() {
            let id = s.get("rule").and_then(|v| v.as_str()).unwrap_or("*").to_string();
            out.insert((id, format!("suppress {s}")));
        }
        out
    };
    let (a, b) = (entries(old), entries(new));
    let mut ids: BTreeSet<String> = a.symmetric_difference(&b).map(|(id, _)| id.clone()).collect();
    // A comment or the layout changed: no rule is the edit's concern.
    if ids.contains("*") {
        ids = BTreeSet::from(["*".to_string()]);
    }
    ids
}

/// The rules a `tuning.toml` text switches off.
fn switched_off(text: &str) -> BTreeSet<String> {
    let Ok(t) = text.parse::<toml::Table>() else { return BTreeSet::new() };
    t.get("disabled")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

/// Takes the rules under test off the scratch folder's `disabled` list.
fn switched_on(root: &Path, ids: &BTreeSet<String>) -> Result<(), String> {
    let p = root.join("tuning.toml");
    let Ok(text) = std::fs::read_to_string(&p) else { return Ok(()) };
    // A scratch copy: its comments need not survive.
    let Ok(mut doc) = text.parse::<toml::Table>() else { return Ok(()) };
    if let Some(arr) = doc.get_mut("disabled").and_then(|v| v.as_array_mut()) {
        arr.retain(|v| !v.as_str().is_some_and(|id| ids.contains(id) || ids.contains("*")));
    }
    std::fs::write(&p, toml::to_string(&doc).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

fn line(a: &Json) -> AlertLine {
    let s = |k: &str| a.get(k).map(|v| v.as_str().map_or_else(|| v.to_string(), String::from)).unwrap_or_default();
    let host = |h: &str, p: &str| match (a.get(h).and_then(Json::as_str), a.get(p).and_then(Json::as_u64)) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    };
    AlertLine {
        rule: s("rule.id"),
        title: s("rule.title"),
        ts: a.get("ts").and_then(Json::as_f64).unwrap_or(0.0),
        orig: host("id.orig_h", "id.orig_p"),
        resp: host("id.resp_h", "id.resp_p"),
        severity: s("severity"),
        summary: s("summary"),
    }
}

/// One case's alerts with the saved rules against the candidate's, matched
/// by the alert's stable id (rule, endpoints, first time).
fn diff(case: &str, before: &[Json], after: &[Json]) -> CaseResult {
    let by_id = |v: &[Json]| -> BTreeMap<String, Json> {
        v.iter().map(|a| (a.get("id").and_then(Json::as_str).unwrap_or("").to_string(), a.clone())).collect()
    };
    let (b, a) = (by_id(before), by_id(after));
    let mut res = CaseResult { case: case.to_string(), ..Default::default() };
    for (id, x) in &b {
        match a.get(id) {
            None => res.lost.push(line(x)),
            Some(y) => {
                let (lx, ly) = (line(x), line(y));
                if lx != ly || x.get("count") != y.get("count") {
                    res.changed.push((lx, ly));
                }
            }
        }
    }
    res.new = a.iter().filter(|(id, _)| !b.contains_key(*id)).map(|(_, y)| line(y)).collect();
    let max = console::editor::MAX_LISTED;
    res.not_listed =
        res.new.len().saturating_sub(max) + res.lost.len().saturating_sub(max) + res.changed.len().saturating_sub(max);
    res.new.truncate(max);
    res.lost.truncate(max);
    res.changed.truncate(max);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn editor(tmp: &Path) -> FolderEditor {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        copy_dir(&root.join("rules"), &tmp.join("rules")).unwrap();
        FolderEditor::new(tmp.join("rules"), root.join("replay-pcaps"), tmp.join("versions"))
    }

    #[test]
    fn a_broken_rule_is_reported_at_its_line_and_not_saved_elsewhere() {
        let tmp = tempfile::tempdir().unwrap();
        let ed = editor(tmp.path());
        let files = ed.files();
        assert!(files.iter().any(|f| f == "models.toml") && files.iter().any(|f| f.starts_with("sigma/")), "{files:?}");
        let path = files.iter().find(|f| f.ends_with("telnet_sweep.yml")).unwrap().clone();
        let good = ed.read(&path).unwrap();
        assert!(ed.check(&path, &good).is_empty());
        let bad = good.replacen("condition: selection", "condition: selection and nothere", 1);
        let p = ed.check(&path, &bad);
        assert!(!p.is_empty() && p[0].file == path && p[0].line > 1, "{p:?}");
        // Paths outside the folder are refused.
        assert!(ed.read("../Cargo.toml").is_err() && ed.save("/etc/passwd", "x").is_err());
        // A save keeps the old content as a version.
        let (before, after) = ed.save(&path, &format!("{good}\n")).unwrap();
        assert_ne!(before, after);
        assert_eq!(ed.versions(&path).len(), 1);
    }

    /// The folder's rules with their files, and the rules an edit of
    /// `tuning.toml` bears on (the back-test itself is driven in
    /// tests/rules_console.rs).
    #[test]
    fn rules_are_listed_with_their_files_and_tuning_edits_name_their_rules() {
        let tmp = tempfile::tempdir().unwrap();
        let ed = editor(tmp.path());
        let rules = ed.rules();
        let sqli = rules.iter().find(|r| r.id == "326927dd-13a5-4e68-bca1-749328569105").unwrap();
        assert_eq!(
            (sqli.file.as_str(), sqli.source.as_str(), sqli.severity.as_str()),
            ("sigma/web/web_sqli.yml", "sigma", "high")
        );
        assert!(rules.iter().any(|r| r.source == "yara" && r.file.starts_with("yara/")), "{rules:?}");
        assert!(rules.iter().any(|r| r.id == "model:scan" && r.file == "models.toml"), "{rules:?}");
        let old = "disabled = [\"a\"]\n";
        let ids = |new: &str| tuning_changes(old, new).into_iter().collect::<Vec<_>>();
        assert_eq!(ids("disabled = [\"a\", \"b\"]\n"), ["b"]);
        assert_eq!(ids("disabled = []\n"), ["a"]);
        assert_eq!(ids("disabled = [\"a\"]\n[[suppress]]\nrule = \"c\"\nfield = \"f\"\nvalue = \"v\"\n"), ["c"]);
        // A comment changes no rule: none is judged.
        assert!(ids("# why\ndisabled = [\"a\"]\n").is_empty());
        assert_eq!(switched_off("disabled = [\"a\", \"b\"]\n").len(), 2);
    }
}
