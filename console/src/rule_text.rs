//! Vietnamese titles of our shipped rules, read from the rule files
//! themselves so a rule and its translation are written, reviewed and
//! versioned together:
//!
//! - Sigma (`*.yml`): a top-level `vi:` block, `vi: {title: ...}` (Sigma
//!   leaves unknown top-level keys to the rule's author; the detector
//!   ignores it).
//! - YARA (`*.yar`): a meta string `description_vi` beside `description`.
//! - Models (`models.toml`): `title_vi` beside each model's `title`.
//!
//! Alerts carry the English title they were raised with; the console shows
//! the translation of that title, and of the title a summary starts with
//! (a Sigma summary is the title followed by the flow's endpoints).

use std::collections::HashMap;
use std::path::Path;

/// English title → Vietnamese title.
#[derive(Debug, Default)]
pub struct RuleTexts {
    vi: HashMap<String, String>,
}

impl RuleTexts {
    /// Every translation under a rules folder; files that cannot be read
    /// are skipped (the detector reports them; a missing translation shows
    /// the English title).
    pub fn load(dir: &Path) -> RuleTexts {
        let mut t = RuleTexts::default();
        let mut stack = vec![dir.to_path_buf()];
        let mut seen = 0usize;
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                seen += 1;
                // A rules folder holds some hundreds of files, not more.
                if seen > 100_000 {
                    return t;
                }
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&p) else { continue };
                match p.extension().and_then(|x| x.to_str()) {
                    Some("yml" | "yaml") => t.sigma(&text),
                    Some("yar" | "yara") => t.yara(&text),
                    Some("toml") if p.file_name().is_some_and(|n| n == "models.toml") => t.models(&text),
                    _ => {}
                }
            }
        }
        t
    }

    fn add(&mut self, en: &str, vi: &str) {
        if !en.trim().is_empty() && !vi.trim().is_empty() {
            self.vi.insert(en.trim().to_string(), vi.trim().to_string());
        }
    }

    fn sigma(&mut self, text: &str) {
        // A file may hold several documents (a correlation and its rules).
        for doc in text.split("\n---") {
            let Ok(v) = serde_norway::from_str::<serde_norway::Value>(doc) else { continue };
            let en = v.get("title").and_then(|x| x.as_str());
            let vi = v.get("vi").and_then(|x| x.get("title")).and_then(|x| x.as_str());
            if let (Some(en), Some(vi)) = (en, vi) {
                self.add(en, vi);
            }
        }
    }

    fn yara(&mut self, text: &str) {
        for rule in text.split("\nrule ").skip(1).chain(text.strip_prefix("rule ")) {
            let meta = |key: &str| {
                rule.lines().find_map(|l| {
                    let (k, v) = l.trim().split_once('=')?;
                    (k.trim() == key).then(|| v.trim().trim_matches('"').replace("\\\"", "\""))
                })
            };
            if let (Some(en), Some(vi)) = (meta("description"), meta("description_vi")) {
                self.add(&en, &vi);
            }
        }
    }

    fn models(&mut self, text: &str) {
        let Ok(v) = text.parse::<toml::Table>() else { return };
        for section in v.values().filter_map(toml::Value::as_table) {
            let s = |k: &str| section.get(k).and_then(toml::Value::as_str);
            if let (Some(en), Some(vi)) = (s("title"), s("title_vi")) {
                self.add(en, vi);
            }
        }
    }

    /// A title in Vietnamese, when we have it.
    pub fn title(&self, en: &str) -> Option<&str> {
        self.vi.get(en.trim()).map(String::as_str)
    }

    /// A summary whose English title prefix is translated.
    pub fn summary(&self, title: &str, summary: &str) -> String {
        match (self.title(title), summary.strip_prefix(title)) {
            (Some(vi), Some(rest)) if !title.is_empty() => format!("{vi}{rest}"),
            _ => summary.to_string(),
        }
    }

    pub fn len(&self) -> usize {
        self.vi.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vi.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translations_from_each_kind_of_rule_file() {
        let mut t = RuleTexts::default();
        t.sigma("title: Cleartext FTP login\nid: x\nvi:\n    title: Đăng nhập FTP không mã hóa\ndetection: {}\n");
        t.yara("rule a\n{\n    meta:\n        description = \"EICAR test file\"\n        description_vi = \"Tệp thử EICAR\"\n    condition: true\n}\n");
        t.models("[scan]\nid = \"model:scan\"\ntitle = \"Network scan\"\ntitle_vi = \"Quét mạng\"\n");
        assert_eq!(t.title("Cleartext FTP login"), Some("Đăng nhập FTP không mã hóa"));
        assert_eq!(t.title("EICAR test file"), Some("Tệp thử EICAR"));
        assert_eq!(t.title("Network scan"), Some("Quét mạng"));
        assert_eq!(t.summary("Network scan", "Network scan: 10.0.0.1 -> 10.0.0.2"), "Quét mạng: 10.0.0.1 -> 10.0.0.2");
        assert_eq!(t.summary("Other", "Other thing"), "Other thing");
    }

    /// Every rule we ship has its Vietnamese title.
    #[test]
    fn every_shipped_rule_has_a_vietnamese_title() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
        let t = RuleTexts::load(&root);
        let mut missing = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let titles: Vec<String> = match p.extension().and_then(|x| x.to_str()) {
                    Some("yml") => text
                        .split("\n---")
                        .filter_map(|d| serde_norway::from_str::<serde_norway::Value>(d).ok())
                        .filter_map(|v| v.get("title").and_then(|x| x.as_str()).map(String::from))
                        .collect(),
                    Some("yar") => text
                        .lines()
                        .filter_map(|l| {
                            l.trim().strip_prefix("description = ").map(|v| v.trim_matches('"').to_string())
                        })
                        .collect(),
                    Some("toml") if p.ends_with("models.toml") => text
                        .lines()
                        .filter_map(|l| l.strip_prefix("title = ").map(|v| v.trim_matches('"').to_string()))
                        .collect(),
                    _ => Vec::new(),
                };
                for title in titles {
                    if t.title(&title).is_none() {
                        missing.push(format!("{}: {title}", p.display()));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "rules without a Vietnamese title: {missing:#?}");
        assert!(t.len() >= 30);
    }
}
