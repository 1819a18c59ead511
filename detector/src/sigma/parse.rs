//! Sigma documents into an intermediate form: detection rules (selections
//! and a condition, as a boolean tree of field tests), correlation rules and
//! filters. Field names stay as the rule wrote them; the engine maps them to
//! our logs.

use super::ast::{err, DocError, Expr, Leaf, Match, NumOp, StrKind};
use super::condition;
use crate::error::Code;
use base64::Engine as _;
use serde_norway::{Mapping, Value};
use std::collections::HashMap;

#[derive(Clone, Debug, Default)]
pub struct Logsource {
    pub category: Option<String>,
    pub product: Option<String>,
    pub service: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Meta {
    pub title: String,
    pub id: Option<String>,
    pub name: Option<String>,
    pub level: Option<String>,
    pub tags: Vec<String>,
    pub description: Option<String>,
    pub status: Option<String>,
    pub logsource: Logsource,
}

#[derive(Clone, Debug)]
pub struct Detection {
    pub expr: Expr,
}

#[derive(Clone, Debug, PartialEq)]
pub enum CorrelationKind {
    EventCount,
    ValueCount,
    Temporal,
    TemporalOrdered,
}

#[derive(Clone, Debug)]
pub struct Correlation {
    pub kind: CorrelationKind,
    pub rules: Vec<String>,
    pub group_by: Vec<String>,
    pub timespan_secs: f64,
    /// Test on the count (event or distinct values); temporal kinds have none.
    pub condition: Vec<(CmpOp, f64)>,
    pub field: Option<String>,
    /// Alias name → (rule reference → field in that rule's events).
    pub aliases: HashMap<String, HashMap<String, String>>,
    pub generate: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
    Eq,
    Neq,
}

impl CmpOp {
    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Gt => a > b,
            CmpOp::Gte => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Lte => a <= b,
            CmpOp::Eq => a == b,
            CmpOp::Neq => a != b,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Filter {
    pub rules: Vec<String>,
    pub expr: Expr,
}

#[derive(Clone, Debug)]
pub enum Body {
    Detection(Detection),
    Correlation(Correlation),
    Filter(Filter),
}

#[derive(Clone, Debug)]
pub struct Doc {
    pub meta: Meta,
    pub body: Body,
}

fn get<'a>(m: &'a Mapping, k: &str) -> Option<&'a Value> {
    m.get(Value::String(k.to_string()))
}

fn get_str(m: &Mapping, k: &str) -> Option<String> {
    match get(m, k)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Sequence(s)) => s.iter().filter_map(scalar_string).collect(),
        Some(v) => scalar_string(v).into_iter().collect(),
        None => Vec::new(),
    }
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parses one YAML document. `placeholders` feeds the `expand` modifier.
pub fn parse_doc(v: &Value, placeholders: &HashMap<String, Vec<String>>) -> Result<Doc, DocError> {
    let Value::Mapping(m) = v else {
        return Err(err(Code::Structure, "a rule must be a YAML mapping", None));
    };
    let title = get_str(m, "title").ok_or_else(|| err(Code::Structure, "missing title", None))?;
    let ls = match get(m, "logsource") {
        Some(Value::Mapping(l)) => Logsource {
            category: get_str(l, "category").map(|s| s.to_lowercase()),
            product: get_str(l, "product").map(|s| s.to_lowercase()),
            service: get_str(l, "service").map(|s| s.to_lowercase()),
        },
        _ => Logsource::default(),
    };
    let meta = Meta {
        title,
        id: get_str(m, "id"),
        name: get_str(m, "name"),
        level: get_str(m, "level"),
        tags: str_list(get(m, "tags")),
        description: get_str(m, "description"),
        status: get_str(m, "status"),
        logsource: ls,
    };
    if let Some(c) = get(m, "correlation") {
        let Value::Mapping(c) = c else {
            return Err(err(Code::Structure, "correlation must be a mapping", Some("correlation")));
        };
        return Ok(Doc { meta, body: Body::Correlation(parse_correlation(c)?) });
    }
    if let Some(f) = get(m, "filter") {
        let Value::Mapping(f) = f else {
            return Err(err(Code::Structure, "filter must be a mapping", Some("filter")));
        };
        let rules = str_list(get(f, "rules"));
        let expr = parse_detection(f, placeholders)?;
        return Ok(Doc { meta, body: Body::Filter(Filter { rules, expr }) });
    }
    if get(m, "logsource").is_none() {
        return Err(err(Code::Structure, "missing logsource", None));
    }
    let Some(Value::Mapping(d)) = get(m, "detection") else {
        return Err(err(Code::Structure, "missing detection", None));
    };
    let expr = parse_detection(d, placeholders)?;
    Ok(Doc { meta, body: Body::Detection(Detection { expr }) })
}

fn parse_detection(d: &Mapping, placeholders: &HashMap<String, Vec<String>>) -> Result<Expr, DocError> {
    let cond = match get(d, "condition") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Sequence(list)) => {
            // A list of conditions is their disjunction (Sigma 1.0).
            let parts: Vec<String> = list.iter().filter_map(scalar_string).map(|s| format!("({s})")).collect();
            parts.join(" or ")
        }
        _ => return Err(err(Code::Structure, "missing condition", Some("detection"))),
    };
    let mut selections: Vec<(String, Expr)> = Vec::new();
    for (k, v) in d {
        let Value::String(name) = k else { continue };
        if name == "condition" || name == "timeframe" || name == "rules" {
            continue;
        }
        selections.push((name.clone(), parse_selection(name, v, placeholders)?));
    }
    condition::parse(&cond, &selections)
}

fn parse_selection(name: &str, v: &Value, ph: &HashMap<String, Vec<String>>) -> Result<Expr, DocError> {
    match v {
        Value::Mapping(m) => parse_field_map(m, ph),
        Value::Sequence(seq) if seq.iter().all(|x| matches!(x, Value::Mapping(_))) && !seq.is_empty() => {
            let mut any = Vec::new();
            for x in seq {
                if let Value::Mapping(m) = x {
                    any.push(parse_field_map(m, ph)?);
                }
            }
            Ok(Expr::Or(any))
        }
        Value::Sequence(seq) => {
            let mut any = Vec::new();
            for x in seq {
                let Some(s) = scalar_string(x) else {
                    return Err(err(Code::Structure, format!("selection {name}: mixed keywords and maps"), Some(name)));
                };
                any.push(keyword(&s));
            }
            Ok(Expr::Or(any))
        }
        Value::String(s) => Ok(keyword(s)),
        _ => Err(err(Code::Structure, format!("selection {name} is neither a map, a list nor a keyword"), Some(name))),
    }
}

/// Keywords are searched anywhere in the record's text (Sigma's full-text
/// search), case-insensitively.
fn keyword(s: &str) -> Expr {
    let tokens = wildcard_tokens(s);
    let m = str_match(tokens, StrKind::Contains, false);
    Expr::Leaf(Leaf { field: None, m })
}

#[derive(Default)]
struct Mods {
    kind: Option<StrKind>,
    all: bool,
    cased: bool,
    re: bool,
    re_flags: String,
    cidr: bool,
    num: Option<NumOp>,
    exists: bool,
    fieldref: bool,
    expand: bool,
    neq: bool,
    base64: bool,
    base64offset: bool,
    utf16: Option<&'static str>,
    windash: bool,
}

fn parse_mods(key: &str) -> Result<(String, Mods), DocError> {
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or("").to_string();
    let mut m = Mods::default();
    for p in parts {
        let p = p.to_ascii_lowercase();
        let set_kind = |m: &mut Mods, k| {
            if m.kind.is_some() {
                return Err(err(Code::UnknownModifier, format!("conflicting modifiers in {key}"), Some(key)));
            }
            m.kind = Some(k);
            Ok(())
        };
        match p.as_str() {
            "contains" => set_kind(&mut m, StrKind::Contains)?,
            "startswith" => set_kind(&mut m, StrKind::Starts)?,
            "endswith" => set_kind(&mut m, StrKind::Ends)?,
            "all" => m.all = true,
            "cased" => m.cased = true,
            "re" => m.re = true,
            // Regex flags only make sense after `re`.
            "i" | "m" | "s" if m.re => {
                let f = p.chars().next().unwrap_or('i');
                if !m.re_flags.contains(f) {
                    m.re_flags.push(f);
                }
            }
            "ignorecase" if m.re => m.re_flags.push('i'),
            "multiline" if m.re => m.re_flags.push('m'),
            "dotall" if m.re => m.re_flags.push('s'),
            "cidr" => m.cidr = true,
            "gt" => m.num = Some(NumOp::Gt),
            "gte" => m.num = Some(NumOp::Gte),
            "lt" => m.num = Some(NumOp::Lt),
            "lte" => m.num = Some(NumOp::Lte),
            "exists" => m.exists = true,
            "fieldref" => m.fieldref = true,
            "expand" => m.expand = true,
            "neq" => m.neq = true,
            "base64" => m.base64 = true,
            "base64offset" => m.base64offset = true,
            "utf16le" | "wide" => m.utf16 = Some("le"),
            "utf16be" => m.utf16 = Some("be"),
            "utf16" => m.utf16 = Some("bom"),
            "windash" => m.windash = true,
            other => {
                return Err(err(Code::UnknownModifier, format!("unknown modifier '{other}' in '{key}'"), Some(key)))
            }
        }
    }
    Ok((field, m))
}

fn parse_field_map(map: &Mapping, ph: &HashMap<String, Vec<String>>) -> Result<Expr, DocError> {
    let mut all = Vec::new();
    for (k, v) in map {
        let Some(key) = scalar_string(k) else {
            return Err(err(Code::Structure, "field names must be strings", None));
        };
        all.push(parse_field(&key, v, ph)?);
    }
    Ok(Expr::And(all))
}

/// Sigma values in their textual form (`null` is `None`).
fn values_of(v: &Value) -> Vec<Option<String>> {
    match v {
        Value::Sequence(s) => s.iter().map(|x| if x.is_null() { None } else { scalar_string(x) }).collect(),
        Value::Null => vec![None],
        other => vec![scalar_string(other)],
    }
}

fn parse_field(key: &str, v: &Value, ph: &HashMap<String, Vec<String>>) -> Result<Expr, DocError> {
    let (field, mods) = parse_mods(key)?;
    let mut values = values_of(v);
    if values.is_empty() {
        return Err(err(Code::Structure, format!("{key}: empty value list"), Some(key)));
    }
    if mods.exists {
        let want = match v {
            Value::Bool(b) => *b,
            Value::String(s) if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") => {
                s.eq_ignore_ascii_case("true")
            }
            _ => return Err(err(Code::Structure, format!("{key}: exists takes true or false"), Some(key))),
        };
        let leaf = Expr::Leaf(Leaf { field: Some(field), m: Match::Exists });
        return Ok(if want { leaf } else { Expr::Not(Box::new(leaf)) });
    }
    if mods.expand {
        let mut out = Vec::new();
        for v in values {
            let Some(s) = v else { continue };
            let mut expanded = false;
            for (name, list) in ph {
                let token = format!("%{name}%");
                if s.contains(&token) {
                    out.extend(list.iter().map(|x| Some(s.replace(&token, x))));
                    expanded = true;
                }
            }
            if !expanded {
                if let (Some(a), Some(b)) = (s.find('%'), s.rfind('%')) {
                    if a < b {
                        let name = s.get(a + 1..b).unwrap_or("");
                        return Err(err(
                            Code::UnknownPlaceholder,
                            format!("placeholder %{name}% is not configured"),
                            Some(key),
                        ));
                    }
                }
                out.push(Some(s));
            }
        }
        values = out;
        if values.is_empty() {
            // An empty placeholder list matches nothing, like an empty set.
            return Ok(Expr::Const(false));
        }
    }
    let mut leaves = Vec::new();
    for val in values {
        let leaf = match val {
            None => Expr::Not(Box::new(Expr::Leaf(Leaf { field: Some(field.clone()), m: Match::Exists }))),
            Some(s) => {
                let mut variants: Vec<Expr> = value_match(key, &s, &mods)?
                    .into_iter()
                    .map(|m| Expr::Leaf(Leaf { field: Some(field.clone()), m }))
                    .collect();
                if variants.len() == 1 {
                    variants.remove(0)
                } else {
                    Expr::Or(variants)
                }
            }
        };
        leaves.push(leaf);
    }
    // Transformations (windash, base64offset) turn one value into several
    // variants: any variant may match, whatever `all` says about the values.
    let combined = if mods.all || mods.neq { Expr::And(leaves) } else { Expr::Or(leaves) };
    if mods.neq {
        // `neq`: the field exists and equals none of the values.
        let exists = Expr::Leaf(Leaf { field: Some(field), m: Match::Exists });
        let Expr::And(eqs) = combined else { unreachable!("neq builds a conjunction") };
        let mut all = vec![exists];
        all.extend(eqs.into_iter().map(|e| Expr::Not(Box::new(e))));
        return Ok(Expr::And(all));
    }
    Ok(combined)
}

fn value_match(key: &str, s: &str, mods: &Mods) -> Result<Vec<Match>, DocError> {
    Ok(vec![match value_match1(key, s, mods)? {
        One::M(m) => m,
        One::Many(v) => return Ok(v),
    }])
}

enum One {
    M(Match),
    Many(Vec<Match>),
}

fn value_match1(key: &str, s: &str, mods: &Mods) -> Result<One, DocError> {
    if mods.fieldref {
        return Ok(One::M(Match::FieldRef {
            other: s.to_string(),
            kind: mods.kind.unwrap_or(StrKind::Eq),
            cased: mods.cased,
        }));
    }
    if mods.re {
        let flags = &mods.re_flags;
        let pat = if flags.is_empty() { s.to_string() } else { format!("(?{flags}){s}") };
        regex::Regex::new(&pat)
            .map_err(|e| err(Code::Regex, format!("{key}: invalid regular expression: {e}"), Some(key)))?;
        return Ok(One::M(Match::Re(pat)));
    }
    if mods.cidr {
        let c: cidr::IpCidr = s
            .trim()
            .parse()
            .or_else(|_| s.trim().parse::<cidr::IpInet>().map(|i| i.network()))
            .map_err(|e| err(Code::Cidr, format!("{key}: invalid CIDR '{s}': {e}"), Some(s)))?;
        return Ok(One::M(Match::Cidr(c)));
    }
    if let Some(op) = mods.num {
        let n: f64 =
            s.trim().parse().map_err(|_| err(Code::Structure, format!("{key}: '{s}' is not a number"), Some(key)))?;
        return Ok(One::M(Match::Num(op, n)));
    }
    if mods.windash {
        // Windows accepts these dashes (and a slash) for a command-line flag.
        let dashes = ["-", "/", "\u{2013}", "\u{2014}", "\u{2015}"];
        let kind = mods.kind.unwrap_or(StrKind::Eq);
        let mut v: Vec<Match> = Vec::new();
        for d in dashes {
            let m = str_match(wildcard_tokens(&s.replace('-', d)), kind, mods.cased);
            if !v.contains(&m) {
                v.push(m);
            }
        }
        return Ok(One::Many(v));
    }
    if mods.base64 || mods.base64offset {
        let bytes = utf16(s, mods.utf16);
        let variants = if mods.base64offset { base64_offsets(&bytes) } else { vec![b64(&bytes)] };
        let kind = mods.kind.unwrap_or(StrKind::Eq);
        return Ok(One::Many(variants.into_iter().map(|pat| Match::Str { kind, pat, cased: true }).collect()));
    }
    let tokens = wildcard_tokens(s);
    Ok(One::M(str_match(tokens, mods.kind.unwrap_or(StrKind::Eq), mods.cased)))
}

fn utf16(s: &str, enc: Option<&str>) -> Vec<u8> {
    match enc {
        Some("le") => s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
        Some("be") => s.encode_utf16().flat_map(|u| u.to_be_bytes()).collect(),
        Some(_) => [0xff, 0xfe].into_iter().chain(s.encode_utf16().flat_map(|u| u.to_le_bytes())).collect(),
        None => s.as_bytes().to_vec(),
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b).trim_end_matches('=').to_string()
}

/// The three encodings of a string at each offset modulo 3, with the
/// characters that depend on neighbouring bytes cut off (Sigma's
/// `base64offset`).
fn base64_offsets(b: &[u8]) -> Vec<String> {
    let starts = [0usize, 2, 3];
    let ends = [None, Some(3usize), Some(2usize)];
    let mut out = Vec::new();
    for i in 0..3 {
        let mut padded = vec![b' '; i];
        padded.extend_from_slice(b);
        let enc = base64::engine::general_purpose::STANDARD.encode(&padded);
        let start = starts[i];
        let cut = match ends[(b.len() + i) % 3] {
            None => enc.len(),
            Some(n) => enc.len().saturating_sub(n),
        };
        out.push(enc.get(start..cut).unwrap_or("").to_string());
    }
    out
}

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Lit(String),
    Star,
    Any,
}

/// Splits a Sigma value into literal text and wildcards; `\*`, `\?` and
/// `\\` are escapes, a lone backslash is literal.
pub fn wildcard_tokens(s: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&n @ ('*' | '?' | '\\')) => {
                    lit.push(n);
                    chars.next();
                }
                _ => lit.push('\\'),
            },
            '*' | '?' => {
                if !lit.is_empty() {
                    out.push(Tok::Lit(std::mem::take(&mut lit)));
                }
                out.push(if c == '*' { Tok::Star } else { Tok::Any });
            }
            _ => lit.push(c),
        }
    }
    if !lit.is_empty() {
        out.push(Tok::Lit(lit));
    }
    out
}

/// The cheapest test equivalent to a wildcard pattern under a modifier.
fn str_match(mut t: Vec<Tok>, kind: StrKind, cased: bool) -> Match {
    match kind {
        StrKind::Contains => {
            t.insert(0, Tok::Star);
            t.push(Tok::Star);
        }
        StrKind::Starts => t.push(Tok::Star),
        StrKind::Ends => t.insert(0, Tok::Star),
        StrKind::Eq => {}
    }
    t.dedup_by(|a, b| *a == Tok::Star && *b == Tok::Star);
    let lead = t.first() == Some(&Tok::Star);
    let trail = t.len() > 1 && t.last() == Some(&Tok::Star);
    let inner: Vec<&Tok> =
        t.iter().skip(usize::from(lead)).take(t.len() - usize::from(lead) - usize::from(trail)).collect();
    match inner.as_slice() {
        [] if lead || trail => Match::Exists,
        [] => Match::Str { kind: StrKind::Eq, pat: String::new(), cased },
        [Tok::Lit(l)] => {
            let kind = match (lead, trail) {
                (false, false) => StrKind::Eq,
                (false, true) => StrKind::Starts,
                (true, false) => StrKind::Ends,
                (true, true) => StrKind::Contains,
            };
            Match::Str { kind, pat: l.clone(), cased }
        }
        _ => {
            let mut re = String::from(if cased { "(?s)" } else { "(?si)" });
            if !lead {
                re.push('^');
            }
            for tok in inner {
                match tok {
                    Tok::Lit(l) => re.push_str(&regex::escape(l)),
                    Tok::Star => re.push_str(".*"),
                    Tok::Any => re.push('.'),
                }
            }
            if !trail {
                re.push('$');
            }
            Match::Re(re)
        }
    }
}

fn parse_correlation(c: &Mapping) -> Result<Correlation, DocError> {
    let kind = match get_str(c, "type").as_deref() {
        Some("event_count") => CorrelationKind::EventCount,
        Some("value_count") => CorrelationKind::ValueCount,
        Some("temporal") => CorrelationKind::Temporal,
        Some("temporal_ordered") => CorrelationKind::TemporalOrdered,
        Some(other) => {
            return Err(err(Code::Unsupported, format!("correlation type {other} is not supported"), Some(other)))
        }
        None => return Err(err(Code::Structure, "correlation without type", Some("correlation"))),
    };
    let rules = str_list(get(c, "rules"));
    if rules.is_empty() {
        return Err(err(Code::Structure, "correlation without rules", Some("correlation")));
    }
    let group_by = str_list(get(c, "group-by"));
    let span = get_str(c, "timespan").ok_or_else(|| err(Code::Structure, "correlation without timespan", None))?;
    let timespan_secs = parse_timespan(&span)
        .ok_or_else(|| err(Code::Structure, format!("invalid timespan '{span}'"), Some("timespan")))?;
    let mut condition = Vec::new();
    let mut field = None;
    if let Some(Value::Mapping(cm)) = get(c, "condition") {
        for (k, v) in cm {
            let k = scalar_string(k).unwrap_or_default();
            if k == "field" {
                field = scalar_string(v);
                continue;
            }
            let op = match k.as_str() {
                "gt" => CmpOp::Gt,
                "gte" => CmpOp::Gte,
                "lt" => CmpOp::Lt,
                "lte" => CmpOp::Lte,
                "eq" => CmpOp::Eq,
                "neq" => CmpOp::Neq,
                other => {
                    return Err(err(Code::Condition, format!("unknown correlation condition '{other}'"), Some(other)))
                }
            };
            let n = scalar_string(v)
                .and_then(|s| s.parse::<f64>().ok())
                .ok_or_else(|| err(Code::Condition, format!("condition {k} needs a number"), Some(&k)))?;
            condition.push((op, n));
        }
    }
    match kind {
        CorrelationKind::EventCount | CorrelationKind::ValueCount if condition.is_empty() => {
            return Err(err(Code::Condition, "count correlation without a condition", Some("condition")));
        }
        CorrelationKind::ValueCount if field.is_none() => {
            return Err(err(Code::Condition, "value_count needs condition.field", Some("condition")));
        }
        _ => {}
    }
    let mut aliases = HashMap::new();
    if let Some(Value::Mapping(am)) = get(c, "aliases") {
        for (k, v) in am {
            let (Some(name), Value::Mapping(per_rule)) = (scalar_string(k), v) else { continue };
            let m: HashMap<String, String> =
                per_rule.iter().filter_map(|(r, f)| Some((scalar_string(r)?, scalar_string(f)?))).collect();
            aliases.insert(name, m);
        }
    }
    let generate = matches!(get(c, "generate"), Some(Value::Bool(true)));
    Ok(Correlation { kind, rules, group_by, timespan_secs, condition, field, aliases, generate })
}

/// `30s`, `5m`, `1h`, `2d` (Sigma's timespan units; `M` and `y` are too
/// long to keep state for and are refused).
pub fn parse_timespan(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: f64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        "w" => 7.0 * 86400.0,
        _ => return None,
    };
    Some(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str, kind: StrKind) -> Match {
        str_match(wildcard_tokens(s), kind, false)
    }

    #[test]
    fn wildcards_reduce_to_the_cheapest_test() {
        assert_eq!(m("abc", StrKind::Eq), Match::Str { kind: StrKind::Eq, pat: "abc".into(), cased: false });
        assert_eq!(m("abc*", StrKind::Eq), Match::Str { kind: StrKind::Starts, pat: "abc".into(), cased: false });
        assert_eq!(m("*abc", StrKind::Eq), Match::Str { kind: StrKind::Ends, pat: "abc".into(), cased: false });
        assert_eq!(
            m("abc", StrKind::Contains),
            Match::Str { kind: StrKind::Contains, pat: "abc".into(), cased: false }
        );
        assert_eq!(m("*", StrKind::Eq), Match::Exists);
        assert_eq!(m("a\\*b", StrKind::Eq), Match::Str { kind: StrKind::Eq, pat: "a*b".into(), cased: false });
        assert_eq!(
            m("C:\\Windows", StrKind::Eq),
            Match::Str { kind: StrKind::Eq, pat: "C:\\Windows".into(), cased: false }
        );
        assert_eq!(m("a*b", StrKind::Eq), Match::Re("(?si)^a.*b$".into()));
        assert_eq!(m("a?b", StrKind::Contains), Match::Re("(?si)a.b".into()));
    }

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("5m"), Some(300.0));
        assert_eq!(parse_timespan("1h"), Some(3600.0));
        assert_eq!(parse_timespan("1y"), None);
        assert_eq!(parse_timespan("m"), None);
    }

    #[test]
    fn base64offset_matches_the_spec_example() {
        // The specification's example for "/bin/bash".
        let v = base64_offsets(b"/bin/bash");
        assert_eq!(v, ["L2Jpbi9iYXNo", "9iaW4vYmFza", "vYmluL2Jhc2"]);
    }
}
