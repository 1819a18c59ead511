//! Routing of Sigma logsources to our logs and the taxonomy's field names
//! to Zeek's, read from data (`rules/sigma-mapping.toml`).

use super::parse::Logsource;
use crate::error::DetectorError;
use schema::CATALOG;
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub category: Option<String>,
    pub product: Option<String>,
    pub service: Option<String>,
    /// Our logs the rules read.
    pub logs: Vec<String>,
    /// Sigma field name → our field name.
    #[serde(default)]
    pub fields: HashMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    #[serde(rename = "logsource", default)]
    pub entries: Vec<Entry>,
    /// Logs the file names that this build does not have (a mapping from a
    /// newer release, or a typo): left out of their entries and reported,
    /// while every other entry keeps working.
    #[serde(skip)]
    pub unknown_logs: Vec<String>,
}

/// The mapping CitySOC ships.
pub const DEFAULT_MAPPING: &str = include_str!("../../../rules/sigma-mapping.toml");

impl Mapping {
    pub fn parse(text: &str, path: &str) -> Result<Mapping, DetectorError> {
        let mut m: Mapping =
            toml::from_str(text).map_err(|e| DetectorError::Mapping { path: path.into(), message: e.to_string() })?;
        let mut unknown = Vec::new();
        for e in &mut m.entries {
            e.logs.retain(|l| {
                let known = log_index(l).is_some();
                if !known && !unknown.contains(l) {
                    unknown.push(l.clone());
                }
                known
            });
        }
        m.unknown_logs = unknown;
        Ok(m)
    }

    pub fn shipped() -> Mapping {
        // The shipped file is checked by a test; an error here is a build defect.
        Mapping::parse(DEFAULT_MAPPING, "rules/sigma-mapping.toml").unwrap_or_default()
    }

    /// The entry for a logsource: the keys it sets must be exactly the
    /// entry's (a Windows `dns_query` rule is not a network DNS rule).
    pub fn route(&self, ls: &Logsource) -> Option<usize> {
        let eq = |a: &Option<String>, b: &Option<String>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        };
        self.entries
            .iter()
            .position(|e| eq(&e.category, &ls.category) && eq(&e.product, &ls.product) && eq(&e.service, &ls.service))
    }
}

/// The catalog's index of a log, which is how programs name logs.
pub fn log_index(name: &str) -> Option<u16> {
    CATALOG.iter().position(|l| l.name == name).map(|i| i as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_mapping_parses_and_names_real_fields() {
        let m = Mapping::parse(DEFAULT_MAPPING, "shipped").unwrap();
        assert!(m.unknown_logs.is_empty(), "{:?}", m.unknown_logs);
        for e in &m.entries {
            for l in &e.logs {
                let def = schema::CATALOG.iter().find(|d| d.name == l).unwrap();
                for ours in e.fields.values() {
                    assert!(def.fields.iter().any(|f| f.path == ours), "{l} has no field {ours}");
                }
            }
        }
        let proxy = Logsource { category: Some("proxy".into()), ..Default::default() };
        assert!(m.route(&proxy).is_some());
        let win = Logsource { category: Some("dns_query".into()), product: Some("windows".into()), service: None };
        assert!(m.route(&win).is_none());
    }

    #[test]
    fn an_unknown_log_is_reported_and_the_rest_kept() {
        let text = "[[logsource]]\nproduct = \"zeek\"\nservice = \"http\"\nlogs = [\"http\", \"http2\"]\n";
        let m = Mapping::parse(text, "t").unwrap();
        assert_eq!(m.unknown_logs, ["http2"]);
        assert_eq!(m.entries[0].logs, ["http"]);
    }
}
