//! Admins' changes to the anomaly models' data: accepting a device's new
//! behaviour as normal adds it to `accepted` in `models.toml`'s `[iot]`
//! table, keeping the file's comments and layout.

use crate::error::ConsoleError;
use std::net::IpAddr;
use std::path::Path;

/// What an IoT profile alert says changed, as `models.toml` lists it:
/// `"host kind value"`. Read from the alert's fields, which the model wrote.
pub fn accepted_line(device: &str, matched: &[&str]) -> Option<String> {
    let host: IpAddr = device.parse().ok()?;
    let kind = matched.iter().find_map(|m| m.strip_prefix("kind="))?;
    if !matches!(kind, "peer" | "port" | "function" | "topic") {
        return None;
    }
    let value = matched.iter().find_map(|m| m.strip_prefix("value="))?;
    // A topic or function name comes from traffic: one line of printable
    // text, or it is not accepted from here.
    if value.is_empty() || value.len() > 512 || value.chars().any(char::is_control) {
        return None;
    }
    Some(format!("{host} {kind} {value}"))
}

/// Adds `line` to `[iot] accepted`; false when it was there already.
pub fn accept(models_toml: &Path, line: &str) -> Result<bool, ConsoleError> {
    let io = |e: std::io::Error| ConsoleError::Io(format!("{}: {e}", models_toml.display()));
    let text = std::fs::read_to_string(models_toml).map_err(io)?;
    let mut doc: toml_edit::DocumentMut =
        text.parse().map_err(|e| ConsoleError::Invalid(format!("{}: {e}", models_toml.display())))?;
    let iot = doc
        .get_mut("iot")
        .and_then(|t| t.as_table_mut())
        .ok_or_else(|| ConsoleError::Invalid(format!("{} has no [iot] table", models_toml.display())))?;
    if iot.get("accepted").is_none() {
        iot.insert("accepted", toml_edit::value(toml_edit::Array::new()));
    }
    let arr = iot
        .get_mut("accepted")
        .and_then(|v| v.as_array_mut())
        .ok_or_else(|| ConsoleError::Invalid("[iot] accepted is not a list".into()))?;
    if arr.iter().any(|v| v.as_str() == Some(line)) {
        return Ok(false);
    }
    arr.push(line);
    // Written beside and renamed: a reader never sees half a file.
    let tmp = models_toml.with_extension("toml.tmp");
    std::fs::write(&tmp, doc.to_string()).map_err(io)?;
    std::fs::rename(&tmp, models_toml).map_err(io)?;
    Ok(true)
}

/// Whether `line` is in `[iot] accepted` already.
pub fn is_accepted(models_toml: &Path, line: &str) -> bool {
    let Ok(doc) = load_doc(models_toml) else { return false };
    doc.get("iot")
        .and_then(|t| t.get("accepted"))
        .and_then(|v| v.as_array())
        .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(line)))
}

fn load_doc(path: &Path) -> Result<toml_edit::DocumentMut, ConsoleError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(ConsoleError::Io(format!("{}: {e}", path.display()))),
    };
    text.parse().map_err(|e| ConsoleError::Invalid(format!("{}: {e}", path.display())))
}

fn store_doc(path: &Path, doc: &toml_edit::DocumentMut) -> Result<(), ConsoleError> {
    let io = |e: std::io::Error| ConsoleError::Io(format!("{}: {e}", path.display()));
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, doc.to_string()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// A rule id as `tuning.toml` may name it: what rule ids are made of.
pub fn valid_rule_id(id: &str) -> bool {
    (1..=300).contains(&id.len()) && !id.chars().any(char::is_control)
}

/// Switches a rule off, with why (or on again: `None`), in `tuning.toml`.
pub fn set_disabled(tuning: &Path, rule: &str, off: Option<&str>) -> Result<(), ConsoleError> {
    let doc = with_disabled(load_doc(tuning)?, rule, off)?;
    store_doc(tuning, &doc)
}

/// `tuning.toml`'s new text with a rule switched off, with why, or on
/// (`None`).
pub fn disabled_text(old: &str, rule: &str, off: Option<&str>) -> Result<String, ConsoleError> {
    let doc = old.parse().map_err(|e| ConsoleError::Invalid(format!("tuning.toml: {e}")))?;
    Ok(with_disabled(doc, rule, off)?.to_string())
}

fn with_disabled(
    mut doc: toml_edit::DocumentMut,
    rule: &str,
    off: Option<&str>,
) -> Result<toml_edit::DocumentMut, ConsoleError> {
    if !valid_rule_id(rule) {
        return Err(ConsoleError::Invalid("not a rule id".into()));
    }
    if let Some(why) = off {
        if why.trim().is_empty() || why.len() > 1000 || why.chars().any(char::is_control) {
            return Err(ConsoleError::Invalid("a rule is switched off with a reason, one line".into()));
        }
    }
    // Why each rule is off, beside the list (the detector reads the list).
    if doc.get("disabled_reasons").is_none() {
        if off.is_none() {
            return with_list(doc, rule, off);
        }
        doc.insert("disabled_reasons", toml_edit::Item::Table(toml_edit::Table::new()));
    }
    let reasons = doc
        .get_mut("disabled_reasons")
        .and_then(|v| v.as_table_mut())
        .ok_or_else(|| ConsoleError::Invalid("disabled_reasons is not a table".into()))?;
    match off {
        Some(why) => {
            reasons.insert(rule, toml_edit::value(why.trim()));
        }
        None => {
            reasons.remove(rule);
        }
    }
    with_list(doc, rule, off)
}

fn with_list(
    mut doc: toml_edit::DocumentMut,
    rule: &str,
    off: Option<&str>,
) -> Result<toml_edit::DocumentMut, ConsoleError> {
    if doc.get("disabled").is_none() {
        doc.insert("disabled", toml_edit::value(toml_edit::Array::new()));
    }
    let arr = doc
        .get_mut("disabled")
        .and_then(|v| v.as_array_mut())
        .ok_or_else(|| ConsoleError::Invalid("disabled is not a list".into()))?;
    arr.retain(|v| v.as_str() != Some(rule));
    if off.is_some() {
        arr.push(rule);
    }
    Ok(doc)
}

/// The rules `tuning.toml` switches off.
pub fn disabled(tuning: &Path) -> Vec<String> {
    disabled_with_reasons(tuning).into_iter().map(|(id, _)| id).collect()
}

/// The rules `tuning.toml` switches off, each with why (empty when the
/// file does not say).
pub fn disabled_with_reasons(tuning: &Path) -> Vec<(String, String)> {
    let Ok(d) = load_doc(tuning) else { return Vec::new() };
    let why =
        |id: &str| d.get("disabled_reasons").and_then(|t| t.get(id)).and_then(|v| v.as_str()).unwrap_or("").to_string();
    d.get("disabled")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).map(|id| (id.to_string(), why(id))).collect())
        .unwrap_or_default()
}

/// A suppression: alerts of `rule` whose `field` is `value`, until `until`
/// (RFC 3339) if given, with why.
pub struct Suppression<'a> {
    pub rule: &'a str,
    pub field: &'a str,
    pub value: &'a str,
    pub until: Option<&'a str>,
    pub reason: &'a str,
}

/// Adds a suppression to `tuning.toml`.
pub fn suppress(tuning: &Path, s: &Suppression<'_>) -> Result<(), ConsoleError> {
    let doc = with_suppression(load_doc(tuning)?, s)?;
    store_doc(tuning, &doc)
}

/// `tuning.toml`'s new text with one more suppression.
pub fn suppress_text(old: &str, s: &Suppression<'_>) -> Result<String, ConsoleError> {
    let doc = old.parse().map_err(|e| ConsoleError::Invalid(format!("tuning.toml: {e}")))?;
    Ok(with_suppression(doc, s)?.to_string())
}

fn with_suppression(
    mut doc: toml_edit::DocumentMut,
    s: &Suppression<'_>,
) -> Result<toml_edit::DocumentMut, ConsoleError> {
    let ok = |x: &str| !x.is_empty() && x.len() <= 300 && !x.chars().any(char::is_control);
    if !valid_rule_id(s.rule) || !ok(s.field) || !ok(s.value) || (!s.reason.is_empty() && !ok(s.reason)) {
        return Err(ConsoleError::Invalid("a suppression needs a rule, a field and a value, each one line".into()));
    }
    if doc.get("suppress").is_none() {
        doc.insert("suppress", toml_edit::Item::ArrayOfTables(toml_edit::ArrayOfTables::new()));
    }
    let list = doc
        .get_mut("suppress")
        .and_then(|v| v.as_array_of_tables_mut())
        .ok_or_else(|| ConsoleError::Invalid("suppress is not a list of tables".into()))?;
    let mut t = toml_edit::Table::new();
    t.insert("rule", toml_edit::value(s.rule));
    t.insert("field", toml_edit::value(s.field));
    t.insert("value", toml_edit::value(s.value));
    if let Some(u) = s.until {
        t.insert("until", toml_edit::value(u));
    }
    if !s.reason.is_empty() {
        t.insert("reason", toml_edit::value(s.reason));
    }
    list.push(t);
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_accepted_once_and_the_file_keeps_its_comments() {
        let dir = std::env::temp_dir().join(format!("citysoc-tune-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("models.toml");
        std::fs::write(
            &p,
            "# thresholds\n[scan]\nid = \"s\"\n\n[iot]\n# learned for a day\nlearn_secs = 86400\naccepted = []\n",
        )
        .unwrap();
        let line = accepted_line("10.34.0.40", &["kind=peer", "value=203.0.113.99", "known=4"]).unwrap();
        assert_eq!(line, "10.34.0.40 peer 203.0.113.99");
        assert!(accept(&p, &line).unwrap());
        assert!(!accept(&p, &line).unwrap());
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("# learned for a day") && text.contains("\"10.34.0.40 peer 203.0.113.99\""), "{text}");
        assert!(accepted_line("10.34.0.40", &["kind=topic", "value=a\nb"]).is_none());
        assert!(accepted_line("not-an-ip", &["kind=peer", "value=x"]).is_none());
        let t = dir.join("tuning.toml");
        std::fs::write(&t, "# switched off\ndisabled = []\n").unwrap();
        set_disabled(&t, "r-1", Some("noisy")).unwrap();
        set_disabled(&t, "r-2", Some("the city's own scanner")).unwrap();
        set_disabled(&t, "r-1", None).unwrap();
        assert_eq!(disabled(&t), ["r-2"]);
        assert_eq!(disabled_with_reasons(&t), [("r-2".to_string(), "the city's own scanner".to_string())]);
        assert!(set_disabled(&t, "r-3", Some(" ")).is_err());
        let sup = |value| Suppression {
            rule: "model:scan",
            field: "id.orig_h",
            value,
            until: Some("2026-12-31T00:00:00Z"),
            reason: "scanner",
        };
        suppress(&t, &sup("10.30.0.250")).unwrap();
        let text = std::fs::read_to_string(&t).unwrap();
        assert!(
            text.starts_with("# switched off")
                && text.contains("[[suppress]]")
                && text.contains("until = \"2026-12-31"),
            "{text}"
        );
        assert!(suppress(&t, &sup("a\nb")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
