//! YARA-X over payloads: files carried by HTTP, SMTP and FTP (from
//! files.log records with their bytes), the first bytes of each TCP stream
//! and UDP payloads. Rules compile once into an immutable set shared by
//! every worker; each worker has its own scanner.

use crate::error::{Code, RuleError};
use crate::sigma::{rule_files, version_of};
use schema::Severity;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What a YARA rule's metadata says about its alerts.
#[derive(Clone, Debug)]
pub struct YaraRuleInfo {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub attack: Vec<String>,
    pub version: String,
    pub file: PathBuf,
}

pub struct YaraSet {
    pub rules: yara_x::Rules,
    /// By `namespace:identifier`.
    pub info: HashMap<String, YaraRuleInfo>,
    pub files: usize,
}

/// External variables some public rule sets use (signature-base); defined
/// empty so those rules compile and evaluate as on an unnamed buffer.
const GLOBALS: [&str; 5] = ["filename", "filepath", "extension", "filetype", "owner"];

fn new_compiler<'a>() -> yara_x::Compiler<'a> {
    let mut c = yara_x::Compiler::new();
    c.relaxed_re_syntax(true);
    for g in GLOBALS {
        // Defining a fresh global cannot fail.
        let _ = c.define_global(g, "");
    }
    c
}

fn compile_error(file: &Path, e: &yara_x::errors::CompileError) -> RuleError {
    let (line, column) = e
        .labels()
        .next()
        .and_then(|l| serde_json::to_value(&l).ok())
        .map(|v| (v["line"].as_u64().unwrap_or(0) as usize, v["column"].as_u64().unwrap_or(0) as usize))
        .unwrap_or((0, 0));
    RuleError {
        code: Code::Syntax,
        file: file.to_path_buf(),
        line,
        column,
        message: format!("{}: {}", e.code(), e.title()),
    }
}

fn namespace_of(file: &Path) -> String {
    file.file_stem().map(|s| s.to_string_lossy().replace(|c: char| !c.is_ascii_alphanumeric(), "_")).unwrap_or_default()
}

/// Compiles every `.yar`/`.yara` file under `paths`. A file that fails is
/// reported (file, line, reason) and left out; the others are compiled.
pub fn load(paths: &[PathBuf]) -> (Option<Arc<YaraSet>>, Vec<RuleError>) {
    let mut errors = Vec::new();
    let files = match rule_files(paths, &["yar", "yara"]) {
        Ok(f) => f,
        Err(e) => return (None, vec![e]),
    };
    let mut good = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(RuleError { code: Code::Io, file, line: 0, column: 0, message: e.to_string() });
                continue;
            }
        };
        // Each file is tried alone first, so one broken file cannot take
        // the others down with it.
        let mut c = new_compiler();
        let origin = file.display().to_string();
        match c.add_source(yara_x::SourceCode::from(text.as_str()).with_origin(origin.as_str())) {
            Ok(_) => good.push((file, text)),
            Err(e) => errors.push(compile_error(&file, &e)),
        }
    }
    if good.is_empty() {
        return (None, errors);
    }
    let mut c = new_compiler();
    let mut versions: HashMap<String, (PathBuf, String)> = HashMap::new();
    let n = good.len();
    for (file, text) in &good {
        let ns = namespace_of(file);
        c.new_namespace(&ns);
        let origin = file.display().to_string();
        if let Err(e) = c.add_source(yara_x::SourceCode::from(text.as_str()).with_origin(origin.as_str())) {
            // Alone it compiled: a clash with another file (duplicate rule
            // names in one namespace).
            errors.push(compile_error(file, &e));
            continue;
        }
        versions.insert(ns, (file.clone(), version_of(text)));
    }
    let rules = c.build();
    // Metadata is read from the compiled rules, where it is typed.
    let mut by_rule = HashMap::new();
    for r in rules.iter() {
        let id = format!("{}:{}", r.namespace(), r.identifier());
        let mut title = r.identifier().to_string();
        let mut severity = Severity::High;
        let mut attack = Vec::new();
        for (k, v) in r.metadata() {
            let text = match v {
                yara_x::MetaValue::String(s) => s.to_string(),
                yara_x::MetaValue::Integer(i) => i.to_string(),
                _ => continue,
            };
            match k {
                "description" => title = text,
                "severity" | "level" => severity = Severity::parse(&text).unwrap_or(severity),
                "mitre_attack" | "attack" => {
                    attack = text.split([',', ' ']).filter(|s| !s.is_empty()).map(str::to_string).collect()
                }
                _ => {}
            }
        }
        let (file, version) = versions.get(r.namespace()).cloned().unwrap_or_default();
        by_rule.insert(id.clone(), YaraRuleInfo { id, title, severity, attack, version, file });
    }
    (Some(Arc::new(YaraSet { rules, info: by_rule, files: n })), errors)
}

/// A pattern match: `$name` at an offset, with a printable excerpt.
#[derive(Clone, Debug, PartialEq)]
pub struct PatternHit {
    pub pattern: String,
    pub offset: usize,
    pub excerpt: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct YaraHit {
    pub rule: String,
    pub patterns: Vec<PatternHit>,
}

/// One thread's scanner. yara-x scanners hold `Rc`s and cannot move
/// between threads, while our sinks and taps are built on one thread and
/// run on another; so the scanner itself lives in a thread-local slot, made
/// on first use by the thread that scans, one per rule set.
pub struct YaraScanner {
    set: Arc<YaraSet>,
    pub scans: u64,
    pub scanned_bytes: u64,
    pub errors: u64,
}

type Scanner<'r> = yara_x::Scanner<'r>;

self_cell::self_cell!(
    /// A scanner together with the rule set it borrows: the slot holds the
    /// set alive while the scanner lives, and both go when the slot does.
    struct OwnedScanner {
        owner: Arc<YaraSet>,
        #[not_covariant]
        dependent: Scanner,
    }
);

thread_local! {
    static SCANNERS: std::cell::RefCell<Vec<OwnedScanner>> = const { std::cell::RefCell::new(Vec::new()) };
}

const MAX_PATTERNS_REPORTED: usize = 8;
const EXCERPT_BYTES: usize = 32;

impl YaraScanner {
    pub fn new(set: Arc<YaraSet>) -> Self {
        YaraScanner { set, scans: 0, scanned_bytes: 0, errors: 0 }
    }

    pub fn set(&self) -> &YaraSet {
        &self.set
    }

    pub fn scan(&mut self, data: &[u8], out: &mut Vec<YaraHit>) {
        self.scans += 1;
        self.scanned_bytes += data.len() as u64;
        let ok = SCANNERS.with(|cell| {
            let mut slots = cell.borrow_mut();
            let i = match slots.iter().position(|s| Arc::ptr_eq(s.borrow_owner(), &self.set)) {
                Some(i) => i,
                None => {
                    // A set only the slots still hold was replaced by a
                    // reload: its scanner and rules go now.
                    slots.retain(|s| Arc::strong_count(s.borrow_owner()) > 1);
                    slots.push(OwnedScanner::new(Arc::clone(&self.set), |set| {
                        let mut sc = yara_x::Scanner::new(&set.rules);
                        sc.set_timeout(Duration::from_secs(2));
                        sc.max_matches_per_pattern(64);
                        sc
                    }));
                    slots.len() - 1
                }
            };
            let Some(slot) = slots.get_mut(i) else { return false };
            slot.with_dependent_mut(|_, scanner| {
                let Ok(res) = scanner.scan(data) else {
                    // A timeout on hostile data: counted, not retried.
                    return false;
                };
                for r in res.matching_rules() {
                    let mut patterns = Vec::new();
                    for p in r.patterns() {
                        for m in p.matches() {
                            if patterns.len() >= MAX_PATTERNS_REPORTED {
                                break;
                            }
                            let ex: String = m
                                .data()
                                .iter()
                                .take(EXCERPT_BYTES)
                                .map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' })
                                .collect();
                            patterns.push(PatternHit {
                                pattern: p.identifier().to_string(),
                                offset: m.range().start,
                                excerpt: ex,
                            });
                        }
                    }
                    out.push(YaraHit { rule: format!("{}:{}", r.namespace(), r.identifier()), patterns });
                }
                true
            })
        });
        if !ok {
            self.errors += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(dir: &Path, text: &str) -> Arc<YaraSet> {
        std::fs::write(dir.join("r.yar"), text).unwrap();
        let (set, errors) = load(&[dir.to_path_buf()]);
        assert!(errors.is_empty(), "{errors:?}");
        set.unwrap()
    }

    #[test]
    fn a_replaced_rule_set_is_freed_by_the_next_scan_with_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let old = set(dir.path(), "rule a { strings: $x = \"camera\" condition: $x }");
        let weak = Arc::downgrade(&old);
        let mut hits = Vec::new();
        let mut sc = YaraScanner::new(old);
        sc.scan(b"a camera feed", &mut hits);
        assert_eq!(hits.len(), 1);
        drop(sc);
        assert!(weak.upgrade().is_some(), "the thread's scanner still holds it");

        let new = set(dir.path(), "rule b { strings: $x = \"sensor\" condition: $x }");
        let mut sc = YaraScanner::new(new);
        hits.clear();
        sc.scan(b"a camera feed", &mut hits);
        assert!(hits.is_empty());
        assert!(weak.upgrade().is_none(), "the replaced set and its scanner are gone");
        sc.scan(b"a water-level sensor", &mut hits);
        assert_eq!(hits.len(), 1);
        assert_eq!(sc.errors, 0);
    }
}
