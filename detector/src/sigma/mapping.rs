//! Routing of Sigma logsources to our logs and the taxonomy's field names
//! to Zeek's, read from data (`rules/sigma-mapping.toml`).

use super::parse::Logsource;
use crate::error::DetectorError;
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
}

/// The mapping CitySOC ships.
pub const DEFAULT_MAPPING: &str = include_str!("../../../rules/sigma-mapping.toml");

impl Mapping {
    pub fn parse(text: &str, path: &str) -> Result<Mapping, DetectorError> {
        let m: Mapping =
            toml::from_str(text).map_err(|e| DetectorError::Mapping { path: path.into(), message: e.to_string() })?;
        for e in &m.entries {
            for l in &e.logs {
                if super::engine::log_index(l).is_none() {
                    return Err(DetectorError::Mapping { path: path.into(), message: format!("unknown log '{l}'") });
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_mapping_parses_and_names_real_fields() {
        let m = Mapping::parse(DEFAULT_MAPPING, "shipped").unwrap();
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
}
