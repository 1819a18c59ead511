//! The audit trail: every search, change and ingest, who and from where,
//! appended to `<data>/audit.log` as JSON lines chained by SHA-256 (each
//! entry's hash covers the previous hash and the entry), so an edited,
//! removed or reordered line breaks the chain at that line.
//!
//! What is hashed are the bytes written, never values parsed back and
//! written again: a number does not always survive that (serde_json's
//! default float parser is not exact, so `from=1796645682.0149999` read
//! back printed otherwise and broke the chain of a trail nobody had
//! touched). An entry (`"v":2`) is hashed as the line without its
//! `,"hash":"…"` ending; entries written before (no `v`) as they were
//! hashed then, `prev` followed by their fields (in the line's order or
//! sorted, as that writer's build had it), each field's text taken from
//! the line as it is.
//!
//! A broken chain does not stop the server: [`Audit::open`] reports where
//! it breaks and the trail turns read-only. Nothing is appended after a
//! break; the API then carries out reads (logged, not appended) and
//! refuses changes, naming the line (see `AppState::audit_as`).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Format of the entry: 2 (the hash covers the line as written); absent
    /// in entries written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<u32>,
    pub seq: u64,
    /// Epoch seconds.
    pub ts: f64,
    pub who: String,
    /// The caller's address.
    pub from: String,
    /// `search`, `aggregate`, `ingest`, `alert.status`, ...
    pub action: String,
    /// What was asked or changed (a query, an alert id and its new state).
    pub detail: serde_json::Value,
    pub prev: String,
    pub hash: String,
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const FORMAT: u32 = 2;

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// An entry of this format before its hash, as written: the fields in
/// declaration order, compact.
#[derive(Serialize)]
struct Unhashed<'a> {
    v: u32,
    seq: u64,
    ts: f64,
    who: &'a str,
    from: &'a str,
    action: &'a str,
    detail: &'a serde_json::Value,
    prev: &'a str,
}

/// The hash of a line of this format: of its bytes without the
/// `,"hash":"…"` ending, closed again. None when the line does not end so.
fn line_hash(line: &str) -> Option<(String, String)> {
    let body = line.strip_suffix("\"}")?;
    let (body, stated) = body.rsplit_once(",\"hash\":\"")?;
    let mut h = Sha256::new();
    h.update(body.as_bytes());
    h.update(b"}");
    Some((hex(h.finalize()), stated.to_string()))
}

/// The fields of a JSON object in the order of the text, each value's text
/// as it is.
struct InOrder<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for InOrder<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = InOrder<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(InOrder(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// The hash of an entry written before `v` 2: `prev`, then the JSON object
/// of every field but the hash, each value's text as it is in the line.
/// That writer re-serialised the fields through `serde_json::json!`, whose
/// key order depends on a build option (`preserve_order`, which the
/// `citysoc` binary has: the line's own order; without it, sorted), so
/// both orders are tried: either is the writer's own bytes.
fn legacy_hashes(line: &str) -> Result<[String; 2], String> {
    let InOrder(mut fields) = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let prev: String = fields
        .iter()
        .find(|(k, _)| k == "prev")
        .map(|(_, r)| serde_json::from_str(r.get()))
        .transpose()
        .map_err(|e| e.to_string())?
        .ok_or("no prev")?;
    fields.retain(|(k, _)| k != "hash");
    let hash = |fields: &[(String, &RawValue)]| -> Result<String, String> {
        let mut body = String::from("{");
        for (k, v) in fields {
            if body.len() > 1 {
                body.push(',');
            }
            body.push_str(&serde_json::to_string(k).map_err(|e| e.to_string())?);
            body.push(':');
            body.push_str(v.get());
        }
        body.push('}');
        let mut h = Sha256::new();
        h.update(prev.as_bytes());
        h.update(body.as_bytes());
        Ok(hex(h.finalize()))
    };
    let in_line = hash(&fields)?;
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Ok([in_line, hash(&fields)?])
}

/// Where and why a chain breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    /// 1-based line of `audit.log`.
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "audit log line {}: {}", self.line, self.reason)
    }
}

pub struct Audit {
    path: PathBuf,
    state: Mutex<(u64, String)>,
    /// The chain broke here when opened: nothing is appended.
    broken: Option<Broken>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("audit log line {line}: {reason}")]
    Broken { line: usize, reason: String },
}

impl Audit {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the trail, checking the chain it holds. A broken chain is not
    /// an error: the trail opens read-only, and [`Audit::broken`] says
    /// where. An unreadable file is.
    pub fn open(data: &Path) -> Result<Audit, AuditError> {
        let path = data.join("audit.log");
        let (state, broken) = match verify(&path) {
            Ok(v) => (v, None),
            Err(AuditError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                ((0, GENESIS.to_string()), None)
            }
            Err(AuditError::Broken { line, reason }) => ((0, GENESIS.to_string()), Some(Broken { line, reason })),
            Err(e) => return Err(e),
        };
        Ok(Audit { path, state: Mutex::new(state), broken })
    }

    /// Where the chain broke, if it did: the trail is read-only then.
    pub fn broken(&self) -> Option<&Broken> {
        self.broken.as_ref()
    }

    /// Appends an entry (synced to disk before returning); refused on a
    /// broken chain.
    pub fn record(&self, who: &str, from: &str, action: &str, detail: serde_json::Value) -> Result<(), AuditError> {
        if let Some(b) = &self.broken {
            return Err(AuditError::Broken {
                line: b.line,
                reason: format!("{}; the trail is read-only until it is repaired", b.reason),
            });
        }
        let io = |source| AuditError::Io { path: self.path.display().to_string(), source };
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let e = Unhashed {
            v: FORMAT,
            seq: st.0 + 1,
            ts: (ts * 1e6).round() / 1e6,
            who,
            from,
            action,
            detail: &detail,
            prev: &st.1,
        };
        let mut line = serde_json::to_string(&e).map_err(|x| io(std::io::Error::other(x)))?;
        // `{…}` → `{…,"hash":"<sha256 of {…}>"}`: the hash is of these bytes.
        let hash = hex(Sha256::digest(line.as_bytes()));
        line.pop();
        line.push_str(&format!(",\"hash\":\"{hash}\"}}\n"));
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(io)?;
        f.write_all(line.as_bytes()).and_then(|_| f.sync_data()).map_err(io)?;
        *st = (st.0 + 1, hash);
        Ok(())
    }

    /// Entries, newest last, optionally filtered by action or caller.
    pub fn read(&self, action: Option<&str>, who: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let mut out: Vec<AuditEntry> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<AuditEntry>(l).ok())
            .filter(|e| action.is_none_or(|a| e.action == a) && who.is_none_or(|w| e.who == w))
            .collect();
        let skip = out.len().saturating_sub(limit);
        out.drain(..skip);
        Ok(out)
    }
}

/// Which entries [`Audit::query`] returns; every field set must match.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub who: Option<String>,
    /// An id the entry concerns ([`AuditEntry::targets`]): an alert, an
    /// incident, a rule, a user, a flow.
    pub target: Option<String>,
    /// Epoch seconds, inclusive.
    pub from: Option<f64>,
    /// Epoch seconds, exclusive.
    pub to: Option<f64>,
}

impl AuditFilter {
    pub fn matches(&self, e: &AuditEntry) -> bool {
        self.action.as_deref().is_none_or(|a| e.action == a)
            && self.who.as_deref().is_none_or(|w| e.who == w)
            && self.from.is_none_or(|f| e.ts >= f)
            && self.to.is_none_or(|t| e.ts < t)
            && self.target.as_deref().is_none_or(|t| e.targets().contains(&t))
    }
}

/// Detail keys that name what an entry is about.
const TARGET_KEYS: [&str; 10] = ["id", "alert", "incident", "subject", "uid", "user", "rule", "merge", "name", "path"];
/// Detail keys that list alerts an entry is about.
const TARGET_LISTS: [&str; 4] = ["alerts", "add_alerts", "remove_alerts", "ids"];

impl AuditEntry {
    /// The ids this entry concerns, from its detail: an alert or incident
    /// id, an evidence bundle's subject, a flow uid, a user, a rule.
    pub fn targets(&self) -> Vec<&str> {
        let mut out = Vec::new();
        let d = &self.detail;
        for k in TARGET_KEYS {
            match &d[k] {
                serde_json::Value::String(s) => out.push(s.as_str()),
                // An evidence bundle names its subject as {"alert": id}.
                serde_json::Value::Object(o) => out.extend(o.values().filter_map(|v| v.as_str())),
                _ => {}
            }
        }
        for k in TARGET_LISTS {
            out.extend(d[k].as_array().into_iter().flatten().filter_map(|v| v.as_str()));
        }
        out
    }
}

impl Audit {
    /// The entries `f` matches, newest first, `limit` of them from `offset`,
    /// and how many match in all.
    pub fn query(&self, f: &AuditFilter, offset: usize, limit: usize) -> (usize, Vec<AuditEntry>) {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let mut matched: Vec<AuditEntry> =
            text.lines().filter_map(|l| serde_json::from_str::<AuditEntry>(l).ok()).filter(|e| f.matches(e)).collect();
        matched.reverse();
        let total = matched.len();
        (total, matched.into_iter().skip(offset).take(limit).collect())
    }
}

/// Walks the chain of an audit log: the number of entries and the last hash,
/// or the first line that breaks it.
pub fn verify(path: &Path) -> Result<(u64, String), AuditError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| AuditError::Io { path: path.display().to_string(), source })?;
    let mut prev = GENESIS.to_string();
    let mut seq = 0;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let broken = |reason: String| AuditError::Broken { line: n, reason };
        let e: AuditEntry = serde_json::from_str(line).map_err(|x| broken(format!("not an entry: {x}")))?;
        if e.seq != seq + 1 {
            return Err(broken(format!("sequence {} after {seq}", e.seq)));
        }
        if e.prev != prev {
            return Err(broken("does not follow the previous entry".into()));
        }
        let hash = match e.v {
            Some(FORMAT) => match line_hash(line) {
                Some((h, stated)) if stated == e.hash => h,
                _ => return Err(broken("the line does not end with its hash".into())),
            },
            Some(v) => return Err(broken(format!("entry format {v}, this version reads up to {FORMAT}"))),
            None => {
                let [a, b] = legacy_hashes(line).map_err(|x| broken(format!("not an entry: {x}")))?;
                if b == e.hash {
                    b
                } else {
                    a
                }
            }
        };
        if hash != e.hash {
            return Err(broken("content does not match its hash".into()));
        }
        prev = e.hash;
        seq = e.seq;
    }
    Ok((seq, prev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_by_what_they_concern_and_when_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let a = Audit::open(dir.path()).unwrap();
        a.record("lan", "10.0.0.1", "alert.triage", serde_json::json!({"id": "A1", "reason": "lab scanner"})).unwrap();
        a.record("lan", "10.0.0.1", "evidence.export", serde_json::json!({"subject": {"alert": "A1"}, "files": []}))
            .unwrap();
        a.record("lan", "10.0.0.1", "pcap", serde_json::json!({"uid": "CFLOW1", "community_id": null})).unwrap();
        a.record(
            "mai",
            "10.0.0.2",
            "incident.create",
            serde_json::json!({"id": "I1", "title": "t", "alerts": ["A1", "A2"]}),
        )
        .unwrap();
        a.record("mai", "10.0.0.2", "search", serde_json::json!({"q": "A1"})).unwrap();
        let seqs = |f: &AuditFilter| a.query(f, 0, 100).1.iter().map(|e| e.seq).collect::<Vec<_>>();
        let about = |t: &str| AuditFilter { target: Some(t.into()), ..Default::default() };
        assert_eq!(seqs(&about("A1")), [4, 2, 1], "a query's text is not a target");
        assert_eq!(seqs(&about("CFLOW1")), [3]);
        assert_eq!(seqs(&about("A2")), [4]);
        let all = a.query(&AuditFilter::default(), 0, 100).1;
        let cut = all.iter().find(|e| e.seq == 3).unwrap().ts;
        let since = AuditFilter { from: Some(cut), who: Some("mai".into()), ..Default::default() };
        assert_eq!(seqs(&since), [5, 4]);
        let before = AuditFilter { to: Some(cut), ..Default::default() };
        assert!(seqs(&before).iter().all(|s| *s < 3));
        // Pages: newest first, the total with them.
        let (total, page) = a.query(&AuditFilter::default(), 2, 2);
        assert_eq!((total, page.iter().map(|e| e.seq).collect::<Vec<_>>()), (5, vec![3, 2]));
    }

    #[test]
    fn the_chain_catches_edits_removals_and_reordering() {
        let dir = tempfile::tempdir().unwrap();
        let a = Audit::open(dir.path()).unwrap();
        for i in 0..4 {
            a.record("analyst", "127.0.0.1", "search", serde_json::json!({"q": format!("uid:C{i}")})).unwrap();
        }
        let path = dir.path().join("audit.log");
        assert_eq!(verify(&path).unwrap().0, 4);
        // Reopening continues the chain.
        let a = Audit::open(dir.path()).unwrap();
        a.record("admin", "127.0.0.1", "alert.status", serde_json::json!({"id": "A1"})).unwrap();
        assert_eq!(verify(&path).unwrap().0, 5);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let edited = text.replace("uid:C2", "uid:C9");
        std::fs::write(&path, &edited).unwrap();
        assert!(matches!(verify(&path), Err(AuditError::Broken { line: 3, .. })));
        let removed: Vec<&str> = lines.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, l)| *l).collect();
        std::fs::write(&path, removed.join("\n")).unwrap();
        assert!(matches!(verify(&path), Err(AuditError::Broken { line: 2, .. })));
        let a = Audit::open(dir.path()).expect("a broken trail opens, read-only");
        assert_eq!(a.broken().map(|b| b.line), Some(2));
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(
            a.record("admin", "::1", "alert.status", serde_json::json!({})),
            Err(AuditError::Broken { line: 2, .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), before, "a broken trail is not appended to");
    }

    /// Numbers that do not survive serde_json's parse and print (its
    /// default float parser is not exact) once broke a chain nobody had
    /// touched.
    const AWKWARD: [f64; 4] = [1796645682.0149999, 0.1 + 0.2, 1e-7, 4102444799.9999995];

    #[test]
    fn awkward_numbers_keep_the_chain_whole() {
        let dir = tempfile::tempdir().unwrap();
        let a = Audit::open(dir.path()).unwrap();
        for f in AWKWARD {
            a.record("analyst", "::1", "search", serde_json::json!({"q": "_log:conn", "from": f, "to": f * 1.0000001}))
                .unwrap();
        }
        assert_eq!(verify(&dir.path().join("audit.log")).unwrap().0, 4);
        let a = Audit::open(dir.path()).unwrap();
        assert!(a.broken().is_none());
        a.record("analyst", "::1", "search", serde_json::json!({})).unwrap();
        let text = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
        assert!(text.lines().all(|l| l.starts_with("{\"v\":2,")), "{text}");
        // The hash is of the bytes written: any change of them breaks it.
        let edited = text.replacen("_log:conn", "_log:dns", 1);
        assert_ne!(edited, text);
        std::fs::write(dir.path().join("audit.log"), edited).unwrap();
        assert!(matches!(verify(&dir.path().join("audit.log")), Err(AuditError::Broken { line: 1, .. })));
    }

    /// The writer of the first format, as it was: a hash of `prev` and the
    /// entry's fields re-serialised in key order.
    fn legacy_line(seq: u64, ts: f64, detail: serde_json::Value, prev: &str) -> (String, String) {
        let body = serde_json::json!({
            "seq": seq, "ts": ts, "who": "analyst", "from": "127.0.0.1", "action": "search", "detail": detail, "prev": prev,
        });
        let mut h = Sha256::new();
        h.update(prev.as_bytes());
        h.update(body.to_string().as_bytes());
        let hash = hex(h.finalize());
        let e = AuditEntry {
            v: None,
            seq,
            ts,
            who: "analyst".into(),
            from: "127.0.0.1".into(),
            action: "search".into(),
            detail,
            prev: prev.into(),
            hash: hash.clone(),
        };
        (serde_json::to_string(&e).unwrap(), hash)
    }

    #[test]
    fn trails_of_the_first_format_still_verify_and_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut prev = GENESIS.to_string();
        let mut text = String::new();
        // Those with awkward numbers too, which the first format's own
        // check refused.
        for (i, f) in AWKWARD.into_iter().enumerate() {
            let (line, hash) = legacy_line(i as u64 + 1, 1.7e9 + f, serde_json::json!({"q": "a\"b", "from": f}), &prev);
            text.push_str(&line);
            text.push('\n');
            prev = hash;
        }
        // As the `citysoc` binary wrote them, whose serde_json keeps keys in
        // the order given: the hash of `prev` and the line without its hash,
        // whatever this test's build does with `json!`.
        let mut e = AuditEntry {
            v: None,
            seq: 5,
            ts: 1796645682.0149999,
            who: "analyst".into(),
            from: "::1".into(),
            action: "search".into(),
            detail: serde_json::json!({"q": "_log:conn", "from": 1796645682.0149999}),
            prev: prev.clone(),
            hash: String::new(),
        };
        let unhashed = serde_json::to_string(&e).unwrap().replace(",\"hash\":\"\"", "");
        let mut h = Sha256::new();
        h.update(prev.as_bytes());
        h.update(unhashed.as_bytes());
        e.hash = hex(h.finalize());
        text.push_str(&serde_json::to_string(&e).unwrap());
        text.push('\n');
        std::fs::write(&path, &text).unwrap();
        assert_eq!(verify(&path).unwrap(), (5, e.hash.clone()));
        let a = Audit::open(dir.path()).unwrap();
        assert!(a.broken().is_none());
        a.record("admin", "::1", "alert.status", serde_json::json!({"id": "A1"})).unwrap();
        assert_eq!(verify(&path).unwrap().0, 6);
        std::fs::write(&path, text.replacen("a\\\"b", "a\\\"c", 1)).unwrap();
        assert!(matches!(verify(&path), Err(AuditError::Broken { line: 1, .. })));
    }
}
