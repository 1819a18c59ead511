//! Reading a TOML configuration file so that every problem is reported at
//! once with its line (`citysoc config check`, `serve --config`), and the
//! configuration reference rendered from the config structs' schemas.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem of a configuration: where (the key, and its line once the
/// file is known) and what.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// Line in the file, from 1; 0 for a problem of no line of it (the
    /// value of a flag).
    pub line: Option<usize>,
    /// Dotted path of the key (`tls.cert`).
    pub key: Option<String>,
    pub msg: String,
}

impl Problem {
    pub fn at(key: &str, msg: impl Into<String>) -> Problem {
        Problem { line: None, key: Some(key.to_string()), msg: msg.into() }
    }
}

/// Every problem of one file.
#[derive(Debug)]
pub struct Problems {
    pub file: PathBuf,
    pub list: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.list.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file.display())?;
            // Line 0: a problem of no line of the file (a flag's value).
            if let Some(l) = p.line.filter(|&l| l > 0) {
                write!(f, ":{l}")?;
            }
            match &p.key {
                Some(k) => write!(f, ": {k}: {}", p.msg)?,
                None => write!(f, ": {}", p.msg)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// A configuration file's text, kept to place problems on their lines.
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

impl Source {
    pub fn read(path: &Path) -> Result<Source, Problems> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Source { path: path.to_path_buf(), text }),
            Err(e) => Err(Problems {
                file: path.to_path_buf(),
                list: vec![Problem { line: None, key: None, msg: format!("cannot read: {e}") }],
            }),
        }
    }

    /// Line of a dotted key (`retention.age.flows`), where the file sets it.
    pub fn line_of_key(&self, key: &str) -> Option<usize> {
        let doc = toml::de::DeTable::parse(&self.text).ok()?;
        let mut table = doc.get_ref();
        let parts: Vec<&str> = key.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let (k, v) = table.get_key_value(*part)?;
            if i + 1 == parts.len() {
                return Some(line_of(&self.text, k.span().start));
            }
            match v.get_ref() {
                toml::de::DeValue::Table(t) => table = t,
                _ => return Some(line_of(&self.text, k.span().start)),
            }
        }
        None
    }

    /// Places problems on the lines of their keys.
    pub fn problems(&self, mut list: Vec<Problem>) -> Problems {
        for p in &mut list {
            if p.line.is_none() {
                // The longest prefix of the key the file sets: a bad
                // `retention.age.flows` is on its line; a class missing
                // from the file, on its table's.
                if let Some(k) = &p.key {
                    let mut k = k.as_str();
                    loop {
                        if let Some(l) = self.line_of_key(k) {
                            p.line = Some(l);
                            break;
                        }
                        match k.rfind('.') {
                            Some(i) => k = &k[..i],
                            None => break,
                        }
                    }
                }
            }
        }
        // In the file's order; problems of no line (flags) last.
        list.sort_by_key(|p| p.line.filter(|&l| l > 0).unwrap_or(usize::MAX));
        Problems { file: self.path.clone(), list }
    }

    /// The file as `T`: syntax errors, every unknown key (each on its line),
    /// and values of the wrong type, all reported together.
    pub fn parse<T: DeserializeOwned + JsonSchema>(&self) -> Result<T, Problems> {
        let (v, unknown) = self.parse_lenient()?;
        if unknown.is_empty() {
            Ok(v)
        } else {
            Err(self.problems(unknown))
        }
    }

    /// The file as `T` with its unknown keys left out, and those keys as
    /// problems (to report with the other problems of the settings); an
    /// error when the file cannot be read as `T` at all.
    pub fn parse_lenient<T: DeserializeOwned + JsonSchema>(&self) -> Result<(T, Vec<Problem>), Problems> {
        let doc = match toml::de::DeTable::parse(&self.text) {
            Ok(d) => d,
            Err(e) => {
                let line = e.span().map(|s| line_of(&self.text, s.start));
                return Err(self.problems(vec![Problem { line, key: None, msg: first_line(e.message()) }]));
            }
        };
        let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null);
        let mut unknown = Vec::new();
        unknown_keys(&schema, &schema, doc.get_ref(), &mut Vec::new(), &mut unknown);
        let mut problems: Vec<Problem> = unknown
            .iter()
            .map(|u| Problem {
                line: Some(line_of(&self.text, u.span.start)),
                key: Some(u.path.join(".")),
                msg: "unknown key (see `citysoc config reference`)".into(),
            })
            .collect();
        // Without the unknown keys, on the same lines, so that the other
        // problems are found and placed too.
        let text = blank(&self.text, &unknown);
        let parsed = match &text {
            Some(t) => toml::from_str::<T>(t).map_err(|e| Problem {
                line: e.span().map(|s| line_of(t, s.start)),
                key: e.span().and_then(|s| key_at(t, s.start)),
                msg: first_line(e.message()),
            }),
            None => {
                let mut table: toml::Table = toml::from_str(&self.text).unwrap_or_default();
                for u in &unknown {
                    remove(&mut table, &u.path);
                }
                toml::Value::Table(table).try_into::<T>().map_err(|e| Problem {
                    line: None,
                    key: None,
                    msg: first_line(e.message()),
                })
            }
        };
        match parsed {
            Ok(v) => Ok((v, problems)),
            Err(p) => {
                problems.push(p);
                Err(self.problems(problems))
            }
        }
    }
}

/// The text with the whole lines of each unknown key turned to blanks;
/// `None` when one of them does not stand on lines of its own (inside an
/// inline table, a table header).
fn blank(text: &str, unknown: &[Unknown]) -> Option<String> {
    let mut bytes = text.as_bytes().to_vec();
    for u in unknown {
        if u.is_table {
            return None;
        }
        let start = text.get(..u.span.start)?.rfind('\n').map_or(0, |i| i + 1);
        let before = text.get(start..u.span.start)?;
        if !before
            .chars()
            .all(|c| c.is_whitespace() || c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '"' | '\''))
        {
            return None;
        }
        let end = text.get(u.end..)?.find('\n').map_or(text.len(), |i| u.end + i);
        for b in bytes.get_mut(start..end)? {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
    String::from_utf8(bytes).ok()
}

/// The dotted key whose value holds the byte at `offset`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut path = Vec::new();
    'down: loop {
        for (k, v) in table {
            if v.span().contains(&offset) || k.span().contains(&offset) {
                path.push(k.get_ref().to_string());
                if let toml::de::DeValue::Table(t) = v.get_ref() {
                    table = t;
                    continue 'down;
                }
                break 'down;
            }
        }
        break;
    }
    (!path.is_empty()).then(|| path.join("."))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}

fn remove(table: &mut toml::Table, path: &[String]) {
    match path {
        [] => {}
        [last] => {
            table.remove(last);
        }
        [first, rest @ ..] => {
            if let Some(toml::Value::Table(t)) = table.get_mut(first) {
                remove(t, rest);
            }
        }
    }
}

/// The schema `s` stands for: a `$ref` followed, an optional one
/// (`anyOf`/`oneOf` with `null`) unwrapped.
fn resolve<'a>(root: &'a Value, s: &'a Value) -> &'a Value {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        if let Some(def) = r.strip_prefix("#/$defs/").and_then(|n| root.get("$defs")?.get(n)) {
            return resolve(root, def);
        }
    }
    for k in ["anyOf", "oneOf", "allOf"] {
        if let Some(list) = s.get(k).and_then(Value::as_array) {
            if let Some(sub) = list.iter().find(|x| x.get("type").and_then(Value::as_str) != Some("null")) {
                return resolve(root, sub);
            }
        }
    }
    s
}

/// A key the schema does not know: its path, the span of its name, where
/// its value ends.
struct Unknown {
    path: Vec<String>,
    span: std::ops::Range<usize>,
    end: usize,
    is_table: bool,
}

fn unknown_keys(
    root: &Value,
    schema: &Value,
    table: &toml::de::DeTable<'_>,
    path: &mut Vec<String>,
    out: &mut Vec<Unknown>,
) {
    let s = resolve(root, schema);
    let props = s.get("properties").and_then(Value::as_object);
    let closed = s.get("additionalProperties") == Some(&Value::Bool(false));
    for (k, v) in table {
        path.push(k.get_ref().to_string());
        match props.and_then(|p| p.get(k.get_ref().as_ref())) {
            Some(sub) => {
                if let toml::de::DeValue::Table(t) = v.get_ref() {
                    unknown_keys(root, sub, t, path, out);
                }
            }
            None if closed => out.push(Unknown {
                path: path.clone(),
                span: k.span(),
                end: v.span().end,
                is_table: matches!(v.get_ref(), toml::de::DeValue::Table(_)),
            }),
            None => {}
        }
        path.pop();
    }
}

/// The configuration reference: one section per file, one table per TOML
/// table, every key with its type, default and meaning, as the structs'
/// doc comments say.
pub fn reference() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         <!-- Generated from the configuration structs by `citysoc config reference`; do not edit by hand. -->\n\n\
         Each process reads one TOML file. Every key is optional unless marked *required*; a key the\n\
         program does not know is an error, reported with its line. `citysoc config check FILE` checks\n\
         a file without starting anything (`--kind serve` or `--kind sensor` when its name does not say).\n\n",
    );
    let files: [(&str, &str, Value); 2] = [
        (
            "serve.toml",
            "`citysoc serve --config /etc/citysoc/serve.toml`: the SIEM's API, the console and `/metrics`. \
             Flags given on the command line override the file.",
            serde_json::to_value(schemars::schema_for!(crate::serve_config::ServeConfig)).unwrap_or(Value::Null),
        ),
        (
            "sensor.toml",
            "`citysoc sensor --config /etc/citysoc/sensor.toml`: capture, decoding, detection and shipping. \
             Flags given on the command line override the file.",
            serde_json::to_value(schemars::schema_for!(crate::sensor_setup::SensorConfig)).unwrap_or(Value::Null),
        ),
    ];
    for (name, intro, schema) in &files {
        out.push_str(&format!("## {name}\n\n{intro}\n\n"));
        render_table(&mut out, schema, schema, "", None);
    }
    out
}

fn render_table(out: &mut String, root: &Value, schema: &Value, prefix: &str, doc: Option<&str>) {
    let s = resolve(root, schema);
    let Some(props) = s.get("properties").and_then(Value::as_object) else { return };
    let required: Vec<&str> =
        s.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    if !prefix.is_empty() {
        out.push_str(&format!("### `[{prefix}]`\n\n"));
        if let Some(d) = doc.or_else(|| s.get("description").and_then(Value::as_str)) {
            out.push_str(&format!("{}\n\n", one_line(d)));
        }
    }
    let mut tables = Vec::new();
    out.push_str("| Key | Type | Default | Meaning |\n| --- | --- | --- | --- |\n");
    for (k, sub) in props {
        let r = resolve(root, sub);
        let doc = sub.get("description").or_else(|| r.get("description")).and_then(Value::as_str).unwrap_or("");
        let is_table = r.get("properties").is_some();
        let ty = if is_table { format!("table `[{}]`", join(prefix, k)) } else { type_of(root, sub) };
        let default = if required.contains(&k.as_str()) {
            "*required*".to_string()
        } else if is_table {
            "see below".to_string()
        } else {
            sub.get("default").map(toml_of).unwrap_or_else(|| "unset".into())
        };
        out.push_str(&format!("| `{k}` | {} | {} | {} |\n", cell(&ty), cell(&default), cell(&one_line(doc))));
        if is_table {
            tables.push((join(prefix, k), sub, sub.get("description").and_then(Value::as_str)));
        }
    }
    out.push('\n');
    for (p, sub, doc) in tables {
        render_table(out, root, sub, &p, doc);
    }
}

fn join(prefix: &str, k: &str) -> String {
    if prefix.is_empty() {
        k.to_string()
    } else {
        format!("{prefix}.{k}")
    }
}

fn type_of(root: &Value, s: &Value) -> String {
    let r = resolve(root, s);
    if let Some(vals) = r.get("enum").and_then(Value::as_array) {
        return vals.iter().map(|v| format!("`{}`", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(" or ");
    }
    if let Some(alts) = r.get("oneOf").and_then(Value::as_array) {
        let c: Vec<String> = alts
            .iter()
            .filter_map(|a| a.get("const").or_else(|| a.get("enum")?.get(0)).and_then(Value::as_str))
            .map(|v| format!("`{v}`"))
            .collect();
        if !c.is_empty() {
            return c.join(" or ");
        }
    }
    let types: Vec<&str> = match r.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect(),
        _ => vec![],
    };
    match types.first().copied() {
        Some("array") => format!("list of {}", r.get("items").map(|i| type_of(root, i)).unwrap_or("values".into())),
        Some("object") => format!(
            "table of {}",
            r.get("additionalProperties").map(|i| type_of(root, i)).unwrap_or_else(|| "values".into())
        ),
        Some("integer") => "integer".into(),
        Some(t) => t.to_string(),
        None => "value".into(),
    }
}

/// A default as it would be written in the file.
fn toml_of(v: &Value) -> String {
    match v {
        Value::Null => "unset".into(),
        Value::String(s) => format!("`\"{s}\"`"),
        Value::Object(m) if m.is_empty() => "empty".into(),
        Value::Array(a) if a.is_empty() => "empty".into(),
        other => match toml::Value::try_from(other) {
            Ok(t) => format!("`{}`", inline(&t)),
            Err(_) => format!("`{other}`"),
        },
    }
}

fn inline(v: &toml::Value) -> String {
    match v {
        toml::Value::Table(t) => {
            let parts: Vec<String> = t.iter().map(|(k, v)| format!("{k} = {}", inline(v))).collect();
            format!("{{ {} }}", parts.join(", "))
        }
        toml::Value::Array(a) => format!("[{}]", a.iter().map(inline).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The book's reference is this function's output: changed structs
    /// show here (`UPDATE_GOLDENFILES=1` writes the new one).
    #[test]
    fn the_reference_in_the_book_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src/reference/config.md");
        let now = reference();
        if std::env::var_os("UPDATE_GOLDENFILES").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &now).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == now,
            "{} is not what the config structs say; run UPDATE_GOLDENFILES=1 cargo test -p citysoc --lib reference",
            path.display()
        );
    }

    #[test]
    fn problems_of_the_rest_of_the_file_are_found_past_unknown_keys() {
        let s =
            Source { path: "serve.toml".into(), text: "a = 1\nwriter_heap_mb = 'x'\n[console]\nnope = true\n".into() };
        let e = s.parse::<crate::serve_config::ServeConfig>().unwrap_err().to_string();
        assert_eq!(
            e,
            "serve.toml:1: a: unknown key (see `citysoc config reference`)\n\
             serve.toml:2: writer_heap_mb: invalid type: string \"x\", expected usize\n\
             serve.toml:4: console.nope: unknown key (see `citysoc config reference`)"
        );
    }
}
