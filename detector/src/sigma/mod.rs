//! Sigma rules: loading (files, folders, multi-document files), routing by
//! logsource, filters, correlation, and the compiled engine.
//!
//! `sigma-rust` keeps its parsed modifiers private and lacks `re|i`,
//! `expand`, `neq`, correlations and filters, so rules are parsed here into
//! our own form; `sigma-rust` is kept as the reference evaluator that the
//! differential tests and the benchmark compare against.

pub mod ast;
pub mod condition;
pub mod correlation;
pub mod engine;
pub mod mapping;
pub mod parse;

use crate::error::{Code, RuleError};
use ast::{DocError, Expr};
use engine::{Builder, Engine};
use mapping::Mapping;
use parse::{Body, Correlation, Doc, Meta};
use schema::Severity;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A detection rule as loaded.
#[derive(Clone, Debug)]
pub struct SigmaRule {
    pub meta: Meta,
    pub file: PathBuf,
    pub line: usize,
    /// First 12 hex digits of the SHA-256 of the rule's text.
    pub version: String,
    pub severity: Severity,
    pub attack: Vec<String>,
    /// Mapping entry of its logsource.
    pub entry: usize,
    /// Referenced by a correlation that does not ask for the base rules'
    /// own alerts (`generate: false`, the default).
    pub quiet: bool,
    pub expr: Expr,
}

#[derive(Clone, Debug)]
pub struct CorrelationRule {
    pub meta: Meta,
    pub file: PathBuf,
    pub line: usize,
    pub version: String,
    pub severity: Severity,
    pub attack: Vec<String>,
    pub corr: Correlation,
    /// Indexes into `SigmaSet::rules`, in the order the correlation lists them.
    pub refs: Vec<u32>,
}

/// A rule file's document that loads but does not apply to our logs.
#[derive(Clone, Debug)]
pub struct Skipped {
    pub file: PathBuf,
    pub line: usize,
    pub title: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct LoadReport {
    pub errors: Vec<RuleError>,
    pub skipped: Vec<Skipped>,
    /// Rule fields with no counterpart in the routed log: (file, title, field).
    pub unknown_fields: Vec<(PathBuf, String, String)>,
    pub filters: usize,
}

pub struct SigmaSet {
    pub rules: Vec<SigmaRule>,
    pub correlations: Vec<CorrelationRule>,
    pub engine: Engine,
    pub mapping: Mapping,
}

/// Loading options: the field mapping and the values of `%placeholders%`.
#[derive(Clone, Debug, Default)]
pub struct SigmaOptions {
    pub mapping: Mapping,
    pub placeholders: HashMap<String, Vec<String>>,
}

/// Every `.yml`/`.yaml` file under the paths (files or folders), sorted.
pub fn rule_files(paths: &[PathBuf], exts: &[&str]) -> Result<Vec<PathBuf>, RuleError> {
    let mut out = Vec::new();
    for p in paths {
        walk(p, exts, &mut out)?;
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(p: &Path, exts: &[&str], out: &mut Vec<PathBuf>) -> Result<(), RuleError> {
    let io = |e: std::io::Error| RuleError {
        code: Code::Io,
        file: p.to_path_buf(),
        line: 0,
        column: 0,
        message: e.to_string(),
    };
    let md = std::fs::metadata(p).map_err(io)?;
    if md.is_file() {
        out.push(p.to_path_buf());
        return Ok(());
    }
    for e in std::fs::read_dir(p).map_err(io)? {
        let e = e.map_err(io)?;
        let path = e.path();
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, exts, out)?;
        } else if path.extension().and_then(|x| x.to_str()).is_some_and(|x| exts.contains(&x)) {
            out.push(path);
        }
    }
    Ok(())
}

/// Splits a multi-document YAML file at `---` lines: (first line, text).
fn split_docs(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" {
            if !cur.trim().is_empty() {
                docs.push((start, std::mem::take(&mut cur)));
            }
            cur.clear();
            start = i + 2;
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
    }
    if !cur.trim().is_empty() {
        docs.push((start, cur));
    }
    docs
}

fn locate(doc: &str, near: Option<&str>) -> (usize, usize) {
    let Some(n) = near else { return (1, 1) };
    for (i, line) in doc.lines().enumerate() {
        if let Some(c) = line.find(n) {
            return (i + 1, c + 1);
        }
    }
    (1, 1)
}

pub fn attack_ids(tags: &[String]) -> Vec<String> {
    tags.iter()
        .filter_map(|t| {
            let t = t.to_ascii_lowercase();
            let id = t.strip_prefix("attack.t")?;
            id.chars().next().filter(char::is_ascii_digit)?;
            Some(format!("T{}", id.to_ascii_uppercase()))
        })
        .collect()
}

pub fn version_of(text: &str) -> String {
    let d = Sha256::digest(text.as_bytes());
    d.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

struct Parsed {
    doc: Doc,
    file: PathBuf,
    line: usize,
    version: String,
}

/// Loads every rule under `paths`. Rules that fail are reported with file,
/// line and reason; everything else loads.
pub fn load(paths: &[PathBuf], opts: &SigmaOptions) -> (SigmaSet, LoadReport) {
    let mut report = LoadReport::default();
    let files = match rule_files(paths, &["yml", "yaml"]) {
        Ok(f) => f,
        Err(e) => {
            report.errors.push(e);
            Vec::new()
        }
    };
    let mut parsed = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                report.errors.push(RuleError { code: Code::Io, file, line: 0, column: 0, message: e.to_string() });
                continue;
            }
        };
        parse_text(&text, &file, opts, &mut parsed, &mut report);
    }
    let set = build(parsed, opts, &mut report);
    (set, report)
}

/// Loads rules from text (rule editors test a rule before saving it).
pub fn load_text(text: &str, name: &Path, opts: &SigmaOptions) -> (SigmaSet, LoadReport) {
    let mut report = LoadReport::default();
    let mut parsed = Vec::new();
    parse_text(text, name, opts, &mut parsed, &mut report);
    let set = build(parsed, opts, &mut report);
    (set, report)
}

fn parse_text(text: &str, file: &Path, opts: &SigmaOptions, parsed: &mut Vec<Parsed>, report: &mut LoadReport) {
    for (start, doc_text) in split_docs(text) {
        let v: serde_norway::Value = match serde_norway::from_str(&doc_text) {
            Ok(v) => v,
            Err(e) => {
                let (l, c) = e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
                report.errors.push(RuleError {
                    code: Code::Syntax,
                    file: file.to_path_buf(),
                    line: start + l - 1,
                    column: c,
                    message: format!("invalid YAML: {e}"),
                });
                continue;
            }
        };
        // Sigma 1.0 rule collections: `action: global` documents are
        // templates merged into the following ones; not supported.
        if let serde_norway::Value::Mapping(m) = &v {
            if m.get(serde_norway::Value::String("action".into())).is_some() {
                report.errors.push(RuleError {
                    code: Code::Unsupported,
                    file: file.to_path_buf(),
                    line: start,
                    column: 1,
                    message: "rule collections (`action:`) are Sigma 1.0 syntax".into(),
                });
                continue;
            }
        }
        // A rule for a log we do not have is skipped before its detection is
        // compiled: Windows rules use modifiers and fields we never see.
        if let serde_norway::Value::Mapping(m) = &v {
            let k = |s: &str| serde_norway::Value::String(s.into());
            let is_rule = m.get(k("detection")).is_some() && m.get(k("correlation")).is_none();
            if let (true, Some(serde_norway::Value::Mapping(ls))) = (is_rule, m.get(k("logsource"))) {
                let f = |n: &str| ls.get(k(n)).and_then(|v| v.as_str()).map(str::to_lowercase);
                let ls = parse::Logsource { category: f("category"), product: f("product"), service: f("service") };
                if opts.mapping.route(&ls).is_none() {
                    let title = m.get(k("title")).and_then(|v| v.as_str()).unwrap_or("").to_string();
                    report.skipped.push(Skipped {
                        file: file.to_path_buf(),
                        line: start,
                        title,
                        reason: format!(
                            "logsource (category {}, product {}, service {}) is not one of our logs",
                            ls.category.as_deref().unwrap_or("-"),
                            ls.product.as_deref().unwrap_or("-"),
                            ls.service.as_deref().unwrap_or("-")
                        ),
                    });
                    continue;
                }
            }
        }
        match parse::parse_doc(&v, &opts.placeholders) {
            Ok(doc) => {
                parsed.push(Parsed { doc, file: file.to_path_buf(), line: start, version: version_of(&doc_text) })
            }
            Err(DocError { code, message, near }) => {
                let (l, c) = locate(&doc_text, near.as_deref());
                report.errors.push(RuleError {
                    code,
                    file: file.to_path_buf(),
                    line: start + l - 1,
                    column: c,
                    message,
                });
            }
        }
    }
}

fn severity(meta: &Meta) -> Severity {
    meta.level.as_deref().and_then(Severity::parse).unwrap_or(Severity::Medium)
}

fn build(parsed: Vec<Parsed>, opts: &SigmaOptions, report: &mut LoadReport) -> SigmaSet {
    let mapping = &opts.mapping;
    let mut rules: Vec<SigmaRule> = Vec::new();
    let mut filters = Vec::new();
    let mut corrs = Vec::new();
    for p in parsed {
        match p.doc.body {
            Body::Detection(d) => {
                let Some(entry) = mapping.route(&p.doc.meta.logsource) else {
                    let ls = &p.doc.meta.logsource;
                    report.skipped.push(Skipped {
                        file: p.file,
                        line: p.line,
                        title: p.doc.meta.title.clone(),
                        reason: format!(
                            "logsource (category {}, product {}, service {}) is not one of our logs",
                            ls.category.as_deref().unwrap_or("-"),
                            ls.product.as_deref().unwrap_or("-"),
                            ls.service.as_deref().unwrap_or("-")
                        ),
                    });
                    continue;
                };
                rules.push(SigmaRule {
                    severity: severity(&p.doc.meta),
                    attack: attack_ids(&p.doc.meta.tags),
                    meta: p.doc.meta,
                    file: p.file,
                    line: p.line,
                    version: p.version,
                    entry,
                    quiet: false,
                    expr: d.expr,
                });
            }
            Body::Filter(f) => filters.push((p.doc.meta, p.file, p.line, f)),
            Body::Correlation(c) => corrs.push((p.doc.meta, p.file, p.line, p.version, c)),
        }
    }
    let find = |rules: &[SigmaRule], r: &str| {
        rules.iter().position(|x| x.meta.id.as_deref() == Some(r) || x.meta.name.as_deref() == Some(r))
    };
    // Filters: each becomes `and not filter` in the rules it names.
    let mut rule_filters: Vec<Vec<(usize, Expr)>> = vec![Vec::new(); rules.len()];
    for (meta, file, line, f) in filters {
        let entry = mapping.route(&meta.logsource);
        let mut targets = Vec::new();
        if f.rules.is_empty() {
            targets.extend((0..rules.len()).filter(|&i| Some(rules[i].entry) == entry));
        }
        let mut bad = None;
        for r in &f.rules {
            match find(&rules, r) {
                Some(i) => targets.push(i),
                None => bad = Some(r.clone()),
            }
        }
        if let Some(r) = bad.filter(|_| targets.is_empty()) {
            report.errors.push(RuleError {
                code: Code::UnknownRule,
                file,
                line,
                column: 1,
                message: format!("filter '{}' names rule {r}, which is not loaded", meta.title),
            });
            continue;
        }
        report.filters += 1;
        for i in targets {
            let e = entry.unwrap_or(rules[i].entry);
            rule_filters[i].push((e, f.expr.clone()));
        }
    }
    let mut correlations = Vec::new();
    for (meta, file, line, version, c) in corrs {
        let mut refs = Vec::new();
        let mut missing = None;
        for r in &c.rules {
            match find(&rules, r) {
                Some(i) => refs.push(i as u32),
                None => missing = Some(r.clone()),
            }
        }
        if let Some(r) = missing {
            report.errors.push(RuleError {
                code: Code::UnknownRule,
                file,
                line,
                column: 1,
                message: format!("correlation '{}' names rule {r}, which is not loaded", meta.title),
            });
            continue;
        }
        if !c.generate {
            for &i in &refs {
                rules[i as usize].quiet = true;
            }
        }
        correlations.push(CorrelationRule {
            severity: severity(&meta),
            attack: attack_ids(&meta.tags),
            meta,
            file,
            line,
            version,
            corr: c,
            refs,
        });
    }
    let mut b = Builder::new(mapping);
    for (i, r) in rules.iter().enumerate() {
        let Some(e) = mapping.entries.get(r.entry) else { continue };
        for log in &e.logs {
            let Some(log) = mapping::log_index(log) else { continue };
            let mut expr = b.compile(i as u32, r.entry, log, &r.expr);
            for (fe, f) in &rule_filters[i] {
                let fx = b.compile(i as u32, *fe, log, f);
                expr = engine::CExpr::And(vec![expr, engine::CExpr::Not(Box::new(fx))].into());
            }
            b.push_program(engine::Program { rule: i as u32, log, expr });
        }
    }
    // A field is reported when none of the logs a rule reads has it (a
    // logsource can cover several logs, each with fields of its own).
    let mut missing: std::collections::BTreeMap<(u32, String), std::collections::BTreeSet<u16>> = Default::default();
    for (rule, log, field) in std::mem::take(&mut b.unknown_fields) {
        missing.entry((rule, field)).or_default().insert(log);
    }
    for ((rule, field), logs) in missing {
        let Some(r) = rules.get(rule as usize) else { continue };
        let read = mapping
            .entries
            .get(r.entry)
            .map_or(0, |e| e.logs.iter().filter(|l| mapping::log_index(l).is_some()).count());
        let item = (r.file.clone(), r.meta.title.clone(), field);
        if logs.len() >= read && !report.unknown_fields.contains(&item) {
            report.unknown_fields.push(item);
        }
    }
    let engine = match b.build() {
        Ok(e) => e,
        Err(msg) => {
            // Patterns were validated one by one; a set that fails to build
            // (size limits) disables Sigma rather than the process.
            report.errors.push(RuleError {
                code: Code::Regex,
                file: PathBuf::new(),
                line: 0,
                column: 0,
                message: format!("rule set does not compile: {msg}"),
            });
            Builder::new(mapping).build().unwrap_or_else(|_| unreachable!("an empty rule set compiles"))
        }
    };
    SigmaSet { rules, correlations, engine, mapping: mapping.clone() }
}
