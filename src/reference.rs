//! The book's reference chapters, rendered from the sources they describe:
//! the command line (clap's model of it), the API (the OpenAPI document the
//! SIEM serves) and every log and field (the field catalog). Written by
//! `citysoc reference` and held to the committed pages by
//! `tests/reference_docs.rs`, so the reference cannot drift from the code.

use serde_json::Value;
use std::fmt::Write as _;

/// Text for a Markdown table cell or paragraph: `|` would end a cell (even
/// inside a code span, in GFM tables), a bare `<` starts an HTML tag the
/// book would swallow (`<DIR>`), and `*` or `_` could pair into emphasis.
/// Code spans keep their text except for `|`.
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut in_code = false;
    for c in s.chars() {
        match c {
            '`' => {
                in_code = !in_code;
                out.push(c);
            }
            '|' => out.push_str("\\|"),
            '\n' => out.push(' '),
            '<' if !in_code => out.push_str("&lt;"),
            '>' if !in_code => out.push_str("&gt;"),
            '*' | '_' if !in_code => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// Text as a code span, whatever backticks it holds.
fn code(s: &str) -> String {
    let s = s.replace('|', "\\|");
    if s.contains('`') {
        format!("`` {s} ``")
    } else {
        format!("`{s}`")
    }
}

/// The command line, from clap's model of it: every subcommand with its
/// usage, its description and a table of its arguments.
pub fn cli_markdown(cmd: &clap::Command) -> String {
    let mut cmd = cmd.clone();
    cmd.build();
    let mut out = String::new();
    out.push_str(GENERATED);
    out.push_str("# Command line\n\n");
    out.push_str(
        "Every command of the `citysoc` binary, its arguments and their defaults, as `citysoc <command> --help` \
         prints them. Flags given on the command line override the configuration file's keys.\n\n",
    );
    out.push_str("Commands:\n\n");
    let mut all = Vec::new();
    collect(&cmd, &mut Vec::new(), &mut all);
    for (path, sub) in &all {
        if path.len() > 1 {
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            let name = path.join(" ");
            let _ = writeln!(out, "- [`{name}`](#{}): {}", name.replace(' ', "-"), md(first_sentence(&about)));
        }
    }
    out.push('\n');
    for (path, sub) in &all {
        if path.len() == 1 {
            continue;
        }
        let _ = writeln!(out, "## {}\n", path.join(" "));
        let about = sub.get_long_about().or(sub.get_about()).map(|a| a.to_string()).unwrap_or_default();
        if !about.is_empty() {
            let _ = writeln!(out, "{}\n", md(&about));
        }
        let mut usage_cmd = (*sub).clone();
        let usage = usage_cmd.render_usage().to_string();
        let usage = usage.trim_start_matches("Usage: ").trim();
        let _ = writeln!(out, "```text\n{usage}\n```\n");
        let args: Vec<&clap::Arg> = sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version"))
            .collect();
        let subs: Vec<&clap::Command> =
            sub.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help").collect();
        if !args.is_empty() {
            out.push_str("| argument | default | meaning |\n|---|---|---|\n");
            for a in args {
                let _ = writeln!(out, "| {} | {} | {} |", arg_name(a), arg_default(a), arg_help(a));
            }
            out.push('\n');
        }
        if !subs.is_empty() {
            out.push_str("Subcommands: ");
            let names: Vec<String> = subs
                .iter()
                .map(|s| {
                    let name = format!("{} {}", path.join(" "), s.get_name());
                    format!("[`{name}`](#{})", name.replace(' ', "-"))
                })
                .collect();
            out.push_str(&names.join(", "));
            out.push_str(".\n\n");
        }
    }
    out
}

/// Every command in order, depth first, with its path of names.
fn collect<'a>(cmd: &'a clap::Command, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, &'a clap::Command)>) {
    path.push(cmd.get_name().to_string());
    out.push((path.clone(), cmd));
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        collect(sub, path, out);
    }
    path.pop();
}

fn first_sentence(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

fn arg_name(a: &clap::Arg) -> String {
    let values: Vec<String> = match a.get_value_names() {
        Some(names) => names.iter().map(|n| format!("<{n}>")).collect(),
        None => vec![format!("<{}>", a.get_id().as_str().to_uppercase())],
    };
    let takes_value = a.get_action().takes_values();
    let mut name = String::new();
    if a.is_positional() {
        name.push_str(&values.join(" "));
        if matches!(a.get_action(), clap::ArgAction::Append) {
            name.push_str("...");
        }
    } else {
        if let Some(s) = a.get_short() {
            let _ = write!(name, "-{s}");
            if a.get_long().is_some() {
                name.push_str(", ");
            }
        }
        if let Some(l) = a.get_long() {
            let _ = write!(name, "--{l}");
        }
        if takes_value {
            let _ = write!(name, " {}", values.join(" "));
        }
    }
    let mut cell = code(&name);
    if a.is_required_set() {
        cell.push_str(" (required)");
    }
    cell
}

fn arg_default(a: &clap::Arg) -> String {
    let defaults: Vec<String> = a.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
    if defaults.is_empty() || !a.get_action().takes_values() {
        return String::new();
    }
    // A default inside the source checkout would make the page differ from
    // one checkout to the next.
    code(&defaults.join(",").replace(env!("CARGO_MANIFEST_DIR"), "<source checkout>"))
}

fn arg_help(a: &clap::Arg) -> String {
    let help = a.get_long_help().or(a.get_help()).map(|h| h.to_string()).unwrap_or_default();
    let mut text = md(help.trim());
    let possible: Vec<String> =
        a.get_possible_values().iter().filter(|v| !v.is_hide_set()).map(|v| code(v.get_name())).collect();
    if !possible.is_empty() && a.get_action().takes_values() {
        let sep = if text.is_empty() || text.ends_with('.') { "" } else { "." };
        let _ = write!(text, "{sep} One of {}.", possible.join(", "));
    }
    text
}

const GENERATED: &str = "<!-- Generated by `citysoc reference`; tests/reference_docs.rs holds it to the code \
                         (UPDATE_GOLDENFILES=1 cargo test -p citysoc --test reference_docs rewrites it). -->\n\n";

/// The HTTP API, from the OpenAPI document the SIEM serves: each operation
/// with its parameters, body and answers, then the shared schemas.
pub fn api_markdown(openapi: &str) -> Result<String, serde_json::Error> {
    let doc: Value = serde_json::from_str(openapi)?;
    let mut out = String::new();
    out.push_str(GENERATED);
    out.push_str("# HTTP API\n\n");
    let info = &doc["info"];
    if let Some(d) = info["description"].as_str() {
        let _ = writeln!(out, "{}\n", md(d));
    }
    let _ = writeln!(
        out,
        "{} {}, OpenAPI {}. The document itself is served at `GET /api/v1/openapi.json`; this page is rendered \
         from it. Calls carry `Authorization: Bearer <token>` unless the server runs without `--tokens` (loopback \
         only); which tokens may call what is in the [SIEM chapter](../siem.md#tokens-and-errors). Every error is \
         JSON, `{{\"error\": ...}}` ([`Error`](#error)).\n",
        md(info["title"].as_str().unwrap_or("API")),
        code(info["version"].as_str().unwrap_or("?")),
        doc["openapi"].as_str().unwrap_or("3"),
    );
    let empty = serde_json::Map::new();
    let paths = doc["paths"].as_object().unwrap_or(&empty);
    let mut ops: Vec<(&str, &str, &Value)> = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap_or(&empty) {
            ops.push((path, method, op));
        }
    }
    ops.sort_by(|a, b| a.0.cmp(b.0).then(method_rank(a.1).cmp(&method_rank(b.1))));
    out.push_str("| operation | what |\n|---|---|\n");
    for (path, method, op) in &ops {
        let title = format!("{} {path}", method.to_uppercase());
        let _ =
            writeln!(out, "| [{}](#{}) | {} |", code(&title), anchor(&title), md(op["summary"].as_str().unwrap_or("")));
    }
    out.push('\n');
    for (path, method, op) in &ops {
        // The id is given: a heading ending in `{id}` would be read as
        // heading attributes by the book.
        let title = format!("{} {path}", method.to_uppercase());
        let _ = writeln!(out, "## {title} {{#{}}}\n", anchor(&title));
        if let Some(s) = op["summary"].as_str() {
            let _ = writeln!(out, "{}\n", md(s));
        }
        if let Some(d) = op["description"].as_str() {
            let _ = writeln!(out, "{}\n", md(d));
        }
        if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
            out.push_str("| parameter | in | type | required | meaning |\n|---|---|---|---|---|\n");
            for p in params {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    code(p["name"].as_str().unwrap_or("?")),
                    p["in"].as_str().unwrap_or(""),
                    schema_type(&p["schema"]),
                    if p["required"].as_bool().unwrap_or(false) { "yes" } else { "" },
                    md(p["description"].as_str().unwrap_or("")),
                );
            }
            out.push('\n');
        }
        if let Some(body) = op.get("requestBody") {
            let required = if body["required"].as_bool().unwrap_or(false) { " (required)" } else { "" };
            let _ = writeln!(out, "Request body{required}:\n");
            if let Some(d) = body["description"].as_str() {
                let _ = writeln!(out, "{}\n", md(d));
            }
            for (ctype, media) in sorted(&body["content"]) {
                let _ = writeln!(out, "- {}: {}", code(ctype), schema_type(&media["schema"]));
            }
            out.push('\n');
            for (_, media) in sorted(&body["content"]) {
                properties_table(&media["schema"], &mut out);
            }
        }
        out.push_str("| answer | meaning | body |\n|---|---|---|\n");
        for (status, resp) in sorted(&op["responses"]) {
            let bodies: Vec<String> = sorted(&resp["content"])
                .into_iter()
                .map(|(ctype, media)| format!("{}: {}", code(ctype), schema_type(&media["schema"])))
                .collect();
            let mut meaning = md(resp["description"].as_str().unwrap_or(""));
            for (name, h) in sorted(&resp["headers"]) {
                let _ = write!(meaning, " Header {}: {}.", code(name), md(h["description"].as_str().unwrap_or("")));
            }
            let _ = writeln!(out, "| {status} | {meaning} | {} |", bodies.join("; "));
        }
        out.push('\n');
    }
    let schemas = sorted(&doc["components"]["schemas"]);
    if !schemas.is_empty() {
        out.push_str("## Schemas\n\n");
        for (name, schema) in schemas {
            let _ = writeln!(out, "### {name}\n");
            if let Some(d) = schema["description"].as_str() {
                let _ = writeln!(out, "{}\n", md(d));
            }
            if schema["properties"].is_object() {
                properties_table(schema, &mut out);
            } else {
                let _ = writeln!(out, "{}\n", schema_type(schema));
            }
        }
    }
    Ok(out)
}

fn method_rank(m: &str) -> usize {
    ["get", "post", "put", "patch", "delete"].iter().position(|x| *x == m).unwrap_or(9)
}

/// An object's entries sorted by key, so the page does not depend on how
/// the JSON parser orders maps.
fn sorted(v: &Value) -> Vec<(&str, &Value)> {
    let mut entries: Vec<(&str, &Value)> =
        v.as_object().map(|m| m.iter().map(|(k, v)| (k.as_str(), v)).collect()).unwrap_or_default();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// The id the book gives a heading: lower case, spaces to dashes, other
/// punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn properties_table(schema: &Value, out: &mut String) {
    let Some(props) = schema["properties"].as_object().filter(|p| !p.is_empty()) else {
        return;
    };
    let required: Vec<&str> =
        schema["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let mut names: Vec<&String> = props.keys().collect();
    names.sort();
    out.push_str("| field | type | required | meaning |\n|---|---|---|---|\n");
    for name in names {
        let p = &props[name];
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            code(name),
            schema_type(p),
            if required.contains(&name.as_str()) { "yes" } else { "" },
            md(p["description"].as_str().unwrap_or("")),
        );
    }
    if schema["additionalProperties"] == Value::Bool(false) {
        out.push_str("\nOther fields are refused.\n");
    }
    out.push('\n');
}

/// A schema in a few words: its type, format, values and bounds.
fn schema_type(s: &Value) -> String {
    if let Some(r) = s["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("[`{name}`](#{})", anchor(name));
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = s[key].as_array() {
            return alts.iter().map(schema_type).collect::<Vec<_>>().join(" or ");
        }
    }
    let mut t = match &s["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" or "),
        _ if s.is_object() && s.as_object().is_some_and(|o| o.is_empty()) => "any".into(),
        _ => String::new(),
    };
    if t == "array" {
        t = format!("array of {}", schema_type(&s["items"]));
    }
    if let Some(f) = s["format"].as_str() {
        let _ = write!(t, " ({f})");
    }
    if let Some(e) = s["enum"].as_array() {
        let values: Vec<String> = e.iter().map(|v| code(&json_text(v))).collect();
        let _ = write!(t, ": {}", values.join(", "));
    }
    let bounds: Vec<String> = [
        ("minimum", ">= "),
        ("maximum", "<= "),
        ("exclusiveMinimum", "> "),
        ("exclusiveMaximum", "< "),
        ("minLength", "length >= "),
        ("maxLength", "length <= "),
        ("minItems", "items >= "),
        ("maxItems", "items <= "),
    ]
    .iter()
    .filter_map(|(k, label)| s.get(*k).map(|v| format!("{label}{}", json_text(v))))
    .collect();
    if !bounds.is_empty() {
        let _ = write!(t, ", {}", md(&bounds.join(", ")));
    }
    if let Some(p) = s["pattern"].as_str() {
        let _ = write!(t, ", matching {}", code(p));
    }
    if let Some(d) = s.get("default") {
        let _ = write!(t, ", default {}", code(&json_text(d)));
    }
    t
}

fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every log and its fields, from the catalog: type, how search treats the
/// field, and what it means.
pub fn fields_markdown() -> String {
    use schema::FieldType;
    use siem::schema::{Catalog, EXTRA_FIELD, LOG_FIELD, SENSOR_FIELD};
    use siem::store::Class;

    let catalog = Catalog::new();
    let mut out = String::new();
    out.push_str(GENERATED);
    out.push_str("# Logs and fields\n\n");
    out.push_str(
        "Every log the sensor writes and the SIEM stores, with every field of each, from the field catalog \
         (`schema/src/catalog.rs`). The Tantivy schema, the ClickHouse tables, the Sigma field mapping and the \
         console's columns are derived from the same catalog. Field names are Zeek's; a log's file is \
         `<log>.log` in the sensor's log folder, and its records carry `_log:<log>` in the SIEM.\n\n",
    );
    out.push_str("Fields every stored record has:\n\n| field | type | meaning |\n|---|---|---|\n");
    for path in [LOG_FIELD, SENSOR_FIELD, EXTRA_FIELD] {
        if let Some(f) = catalog.field(path) {
            let _ = writeln!(out, "| {} | {} | {} |", code(path), f.kind.name(), md(f.doc));
        }
    }
    out.push_str(
        "\nTypes: `time` is epoch seconds with microseconds, `interval` seconds; in searches both are numbers \
         (ranges, `>=`). An `address` takes CIDR (`id.orig_h:10.30.0.0/16`) and ranges. A `port` or `count` takes \
         numbers and ranges. A `string list` matches when any element does. **Free text** marks the fields whose \
         words a query without a field name searches; identifiers (uids, Community IDs) are matched whole \
         instead, and a bare address matches every address field.\n\n\
         Retention classes: `alerts` for alerts.log, `flows` for conn.log, `records` for every other log \
         (see [Retention](../siem.md#retention)).\n\n",
    );
    out.push_str("Logs: ");
    let names: Vec<String> = schema::CATALOG.iter().map(|l| format!("[{}](#{})", l.name, anchor(l.name))).collect();
    out.push_str(&names.join(", "));
    out.push_str(".\n\n");
    for log in schema::CATALOG {
        let _ = writeln!(out, "## {}\n", log.name);
        let _ = writeln!(
            out,
            "`{}.log`, retention class `{}`, {} fields.\n",
            log.name,
            Class::of_log(log.name).name(),
            log.fields.len()
        );
        out.push_str("| field | type | free text | meaning |\n|---|---|---|---|\n");
        for f in log.fields {
            let ty = match f.ty {
                FieldType::Time => "time",
                FieldType::Interval => "interval",
                FieldType::String => "string",
                FieldType::Addr => "address",
                FieldType::Port => "port",
                FieldType::Count => "count",
                FieldType::Bool => "bool",
                FieldType::StringSet => "string list",
            };
            let stored = catalog.field(f.path);
            // A name with another type in another log is stored as text.
            let note = match stored {
                Some(s) if s.kind == siem::schema::Kind::Str && !matches!(f.ty, FieldType::String) => {
                    " (stored as text: another log gives this name another type)"
                }
                _ => "",
            };
            let free = if catalog.free_text(f.path) { "yes" } else { "" };
            let _ = writeln!(out, "| {} | {ty}{note} | {free} | {} |", code(f.path), md(f.doc));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_text_is_escaped_outside_code() {
        assert_eq!(md("a <DIR> *.yml `<x>|*` b|c"), "a &lt;DIR&gt; \\*.yml `<x>\\|*` b\\|c");
    }

    #[test]
    fn anchors_follow_the_book() {
        assert_eq!(anchor("GET /api/v1/alerts/{id}/triage"), "get-apiv1alertsidtriage");
        assert_eq!(anchor("mqtt_connect"), "mqtt_connect");
    }

    #[test]
    fn schema_types_read_in_words() {
        let s: Value = serde_json::json!({"type": "integer", "minimum": 0, "maximum": 10});
        assert_eq!(schema_type(&s), "integer, &gt;= 0, &lt;= 10");
        let s: Value = serde_json::json!({"$ref": "#/components/schemas/SearchResult"});
        assert_eq!(schema_type(&s), "[`SearchResult`](#searchresult)");
    }
}
