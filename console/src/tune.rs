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
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
