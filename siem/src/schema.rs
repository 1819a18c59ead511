//! The SIEM's view of the field catalog: every field of every log, typed
//! for storage and search. The Tantivy schema and the ClickHouse DDL are
//! both derived from this, so the two stores cannot drift apart.

use schema::{FieldType, CATALOG, OVERFLOW};
use std::collections::HashMap;

/// How a field is stored and searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Str,
    /// A list of strings (`tunnel_parents`, `answers`...).
    StrSet,
    /// An IPv4 or IPv6 address (CIDR search).
    Addr,
    Count,
    /// Times and intervals, in seconds.
    Float,
    Bool,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Str => "string",
            Kind::StrSet => "string list",
            Kind::Addr => "address",
            Kind::Count => "count",
            Kind::Float => "number",
            Kind::Bool => "boolean",
        }
    }

    fn of(t: FieldType) -> Kind {
        match t {
            FieldType::Time | FieldType::Interval => Kind::Float,
            FieldType::String => Kind::Str,
            FieldType::Addr => Kind::Addr,
            FieldType::Port | FieldType::Count => Kind::Count,
            FieldType::Bool => Kind::Bool,
            FieldType::StringSet => Kind::StrSet,
        }
    }
}

/// Fields that name a connection, file or flow: unique or nearly to each
/// record, meaningless as words. Free text leaves them out of its index
/// and matches a word against them whole instead (see `query`), so a pasted
/// uid still finds its records.
pub const IDENTIFIERS: &[&str] =
    &["uid", "fuid", "uids", "fuids", "orig_fuids", "resp_fuids", "tunnel_parents", "community_id"];

/// Fields every stored record has besides its log's own.
pub const LOG_FIELD: &str = "_log";
pub const SENSOR_FIELD: &str = "_sensor";
/// Fields a record's log does not have, kept as one JSON object in text.
pub const EXTRA_FIELD: &str = OVERFLOW.path;

#[derive(Clone, Debug)]
pub struct Field {
    pub path: String,
    pub kind: Kind,
    /// Logs that have the field.
    pub logs: Vec<&'static str>,
    pub doc: &'static str,
    /// Whether its words go into the free-text index: text that is not an
    /// identifier. Addresses are matched by free text through their
    /// columns.
    pub free_text: bool,
}

#[derive(Clone, Debug)]
pub struct Catalog {
    pub fields: Vec<Field>,
    /// Looked up for every field of every record stored: a fast hash.
    by_path: HashMap<String, usize, foldhash::fast::FixedState>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new()
    }
}

impl Catalog {
    /// The union of every log's fields. A name with different types in
    /// different logs (`version`: a number in ssh.log, text in ssl.log) is
    /// stored as text.
    pub fn new() -> Catalog {
        let mut fields: Vec<Field> = vec![
            Field {
                path: LOG_FIELD.into(),
                kind: Kind::Str,
                logs: vec![],
                doc: "the log the record belongs to",
                free_text: false,
            },
            Field {
                path: SENSOR_FIELD.into(),
                kind: Kind::Str,
                logs: vec![],
                doc: "the sensor that sent the record",
                free_text: false,
            },
        ];
        let mut by_path: HashMap<String, usize, foldhash::fast::FixedState> =
            fields.iter().enumerate().map(|(i, f)| (f.path.clone(), i)).collect();
        for log in CATALOG {
            for f in log.fields {
                let kind = Kind::of(f.ty);
                match by_path.get(f.path) {
                    Some(&i) => {
                        let e = &mut fields[i];
                        if e.kind != kind {
                            e.kind = Kind::Str;
                        }
                        e.logs.push(log.name);
                    }
                    None => {
                        by_path.insert(f.path.to_string(), fields.len());
                        fields.push(Field {
                            path: f.path.to_string(),
                            kind,
                            logs: vec![log.name],
                            doc: f.doc,
                            free_text: false,
                        });
                    }
                }
            }
        }
        // Every log has the overflow field.
        by_path.insert(OVERFLOW.path.to_string(), fields.len());
        fields.push(Field {
            path: OVERFLOW.path.to_string(),
            kind: Kind::of(OVERFLOW.ty),
            logs: CATALOG.iter().map(|l| l.name).collect(),
            doc: OVERFLOW.doc,
            free_text: false,
        });
        for f in &mut fields[2..] {
            f.free_text = matches!(f.kind, Kind::Str | Kind::StrSet) && !IDENTIFIERS.contains(&f.path.as_str());
        }
        Catalog { fields, by_path }
    }

    pub fn kind(&self, path: &str) -> Option<Kind> {
        self.by_path.get(path).map(|&i| self.fields[i].kind)
    }

    /// Whether a field's words go into the free-text index.
    pub fn free_text(&self, path: &str) -> bool {
        self.field(path).is_some_and(|f| f.free_text)
    }

    pub fn field(&self, path: &str) -> Option<&Field> {
        self.by_path.get(path).map(|&i| &self.fields[i])
    }

    pub fn is_log(&self, name: &str) -> bool {
        CATALOG.iter().any(|l| l.name == name)
    }
}

/// A catalog path as a column name: dots become underscores, since
/// ClickHouse reads dotted names as nested columns.
pub fn column(path: &str) -> String {
    path.replace('.', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_of_logs() {
        let c = Catalog::new();
        assert_eq!(c.kind("id.orig_h"), Some(Kind::Addr));
        assert_eq!(c.kind("ts"), Some(Kind::Float));
        assert_eq!(c.kind("version"), Some(Kind::Str), "number in ssh.log, text in ssl.log");
        assert_eq!(c.kind("tunnel_parents"), Some(Kind::StrSet));
        assert!(c.free_text("query") && c.free_text("answers"));
        assert!(!c.free_text("uid") && !c.free_text("id.orig_h") && !c.free_text("orig_bytes"));
        assert!(IDENTIFIERS.iter().all(|f| c.field(f).is_some()), "every identifier is a catalog field");
        assert!(c.field("uid").unwrap().logs.len() > 10);
        let extra = c.field(EXTRA_FIELD).unwrap();
        assert!(extra.free_text && extra.logs.len() == CATALOG.len(), "every log keeps its unknown fields");
        // Column names are unique after the dot mapping.
        let mut cols: Vec<String> = c.fields.iter().map(|f| column(&f.path)).collect();
        cols.sort();
        let n = cols.len();
        cols.dedup();
        assert_eq!(cols.len(), n);
    }
}
