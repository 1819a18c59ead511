//! The console's rule editor over a rules folder: a candidate file is
//! checked and tested in a scratch copy of the folder, so the live folder
//! changes only on save, and every save keeps the content it replaces.

use crate::detection::DetectSettings;
use console::editor::{Problem, RuleEditor, TestReport, TestRow, Version};
use sha2::{Digest, Sha256};
use std::path::{Component, Path, PathBuf};

pub struct FolderEditor {
    pub rules: PathBuf,
    pub cases: PathBuf,
    /// Where replaced contents are kept (`<data>/rule-versions`).
    pub versions: PathBuf,
}

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
        let (tmp, root) = self.scratch(path, text)?;
        let settings = DetectSettings { rules_dir: Some(root), ..Default::default() };
        let rules = settings.load("sensor").map_err(|e| format!("{e:#}"))?;
        let res =
            crate::replay::test_rules(&rules, &self.cases, &tmp.path().join("logs")).map_err(|e| format!("{e:#}"))?;
        Ok(TestReport {
            rows: res
                .tally
                .into_iter()
                .map(|t| TestRow { rule: t.rule, expected: t.expected, got: t.got, cases: t.cases.join(", ") })
                .collect(),
            failures: res.failures.into_iter().map(|(c, f)| format!("{c}: {}", f.join("; "))).collect(),
            cases: res.cases,
        })
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
        out.sort_by(|a, b| a.ts.total_cmp(&b.ts));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn editor(tmp: &Path) -> FolderEditor {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        copy_dir(&root.join("rules"), &tmp.join("rules")).unwrap();
        FolderEditor { rules: tmp.join("rules"), cases: root.join("replay-pcaps"), versions: tmp.join("versions") }
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
}
