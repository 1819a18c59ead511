//! Every string of the console in English and Vietnamese: one flat table
//! per language (`console/i18n/<lang>.toml`), compiled in. A test holds the
//! two tables to the same keys and every key the templates use to exist.

use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    Vi,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Vi => "vi",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "en" => Some(Lang::En),
            "vi" => Some(Lang::Vi),
            _ => None,
        }
    }

    /// The first of the browser's languages we have (`Accept-Language`,
    /// in its order of preference), English otherwise.
    pub fn from_accept(header: &str) -> Lang {
        let mut langs: Vec<(f32, &str)> = header
            .split(',')
            .filter_map(|part| {
                let mut it = part.trim().split(';');
                let tag = it.next()?.trim();
                let q = it.find_map(|p| p.trim().strip_prefix("q=")).map_or(1.0, |q| q.parse::<f32>().unwrap_or(0.0));
                Some((q, tag))
            })
            .collect();
        langs.sort_by(|a, b| b.0.total_cmp(&a.0));
        langs
            .into_iter()
            .find_map(|(_, tag)| Lang::parse(&tag.split('-').next().unwrap_or("").to_ascii_lowercase()))
            .unwrap_or(Lang::En)
    }
}

const EN: &str = include_str!("../i18n/en.toml");
const VI: &str = include_str!("../i18n/vi.toml");

fn table(lang: Lang) -> &'static HashMap<String, String> {
    static EN_T: OnceLock<HashMap<String, String>> = OnceLock::new();
    static VI_T: OnceLock<HashMap<String, String>> = OnceLock::new();
    let (cell, text) = match lang {
        Lang::En => (&EN_T, EN),
        Lang::Vi => (&VI_T, VI),
    };
    // The tables are compiled in and checked by the tests below.
    cell.get_or_init(|| toml::from_str(text).unwrap_or_default())
}

/// A language's strings, handed to every template as `t`.
#[derive(Clone, Copy, Debug)]
pub struct Tr {
    pub lang: Lang,
}

impl Tr {
    /// The string of a key; the key itself if it is missing (the tests make
    /// sure none is).
    pub fn t<'a>(&self, key: &'a str) -> &'a str
    where
        'static: 'a,
    {
        table(self.lang).get(key).map_or(key, String::as_str)
    }

    /// The string of a key made from data, if the table has it.
    pub fn get(&self, key: &str) -> Option<&'static str> {
        table(self.lang).get(key).map(String::as_str)
    }

    /// The string of `prefix.key`, for keys that come from data (a
    /// severity, a status, a role).
    pub fn tk(&self, prefix: &str, key: &str) -> String {
        let k = format!("{prefix}.{key}");
        table(self.lang).get(&k).cloned().unwrap_or(k)
    }

    /// An audit action's name in this language; an action without a string
    /// (one a newer SIEM records) as it was recorded.
    pub fn action(&self, action: &str) -> String {
        table(self.lang).get(&format!("action.{action}")).cloned().unwrap_or_else(|| action.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn keys(text: &str) -> BTreeSet<String> {
        let t: HashMap<String, String> = toml::from_str(text).expect("valid TOML");
        t.into_keys().collect()
    }

    #[test]
    fn both_languages_have_every_key() {
        let (en, vi) = (keys(EN), keys(VI));
        let only_en: Vec<_> = en.difference(&vi).collect();
        let only_vi: Vec<_> = vi.difference(&en).collect();
        assert!(only_en.is_empty() && only_vi.is_empty(), "only in en: {only_en:?}; only in vi: {only_vi:?}");
    }

    #[test]
    fn every_key_the_code_uses_exists() {
        let en = keys(EN);
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/");
        let mut missing = Vec::new();
        // Modules in folders (`src/sso/`) too.
        let mut files = Vec::new();
        let mut dirs: Vec<std::path::PathBuf> =
            ["templates", "src"].iter().map(|s| format!("{dir}{s}").into()).collect();
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(d).unwrap().flatten() {
                if e.path().is_dir() {
                    dirs.push(e.path());
                } else {
                    files.push(e);
                }
            }
        }
        {
            for e in files {
                let text = std::fs::read_to_string(e.path()).unwrap();
                for call in [".t(\"", "Msg::new(\"", "Msg::with(\""] {
                    for part in text.split(call).skip(1) {
                        let key = part.split('"').next().unwrap_or("");
                        if key.contains('.') && !en.contains(key) {
                            missing.push(format!("{}: {key}", e.path().display()));
                        }
                    }
                }
            }
        }
        assert!(missing.is_empty(), "keys without a string: {missing:?}");
    }

    /// Every action the console, the SIEM API and the binary record in the
    /// audit log has a name in both languages: found at the call sites, the
    /// last string before the detail's `json!`.
    #[test]
    fn every_audit_action_has_a_name() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../");
        let mut actions = Vec::new();
        for file in ["console/src/pages.rs", "console/src/sso/routes.rs", "siem/src/api.rs", "src/serve_cmd.rs"] {
            let text = std::fs::read_to_string(format!("{root}{file}")).unwrap();
            for call in ["audit_as(", "audit(&st,", "audit(st,", "audit_refusal(", ".refused("] {
                for part in text.split(call).skip(1) {
                    let head = part.split("json!").next().unwrap_or("");
                    let head = if head.len() > 300 { &head[..0] } else { head };
                    if let Some(lit) = head.rsplit('"').nth(1) {
                        actions.push(lit.to_string());
                    }
                }
            }
        }
        actions.push("rule.tune".into());
        assert!(actions.len() > 20, "{actions:?}");
        for lang in [Lang::En, Lang::Vi] {
            let t = Tr { lang };
            for a in &actions {
                assert!(table(lang).contains_key(&format!("action.{a}")), "{lang:?} has no name for action {a}");
            }
            assert_ne!(t.action("console.login"), "console.login");
        }
    }

    #[test]
    fn accept_language_picks_the_preferred_one_we_have() {
        assert_eq!(Lang::from_accept("vi-VN,vi;q=0.9,en;q=0.8"), Lang::Vi);
        assert_eq!(Lang::from_accept("fr;q=0.9, en;q=0.5, vi;q=0.7"), Lang::Vi);
        assert_eq!(Lang::from_accept("de"), Lang::En);
        assert_eq!(Lang::from_accept(""), Lang::En);
    }
}
