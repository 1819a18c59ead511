//! The search language: what users of Lucene and KQL type.
//!
//! ```text
//! id.orig_h:10.1.0.0/16 AND (query:*.duckdns.org OR dns.rcode_name:NXDOMAIN)
//! _log:http status_code:[400 TO 499] NOT user_agent:"Mozilla/5.0" evil
//! ```
//!
//! `field:value` (a term; `*` and `?` make it a wildcard), `field:"a phrase"`,
//! ranges `field:[a TO b]` (inclusive), `field:{a TO b}` (exclusive),
//! `field:>=a` and friends, addresses by CIDR, `field:*` (the field exists),
//! free text (words and phrases, matched against every text value), `AND`,
//! `OR`, `NOT` / `-`, parentheses; juxtaposition means AND. Queries are
//! parsed into this AST, checked against the field catalog, and translated
//! per backend; user text never reaches SQL or a query parser as text.

use crate::schema::{Catalog, Kind, IDENTIFIERS};
use std::fmt;
use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq)]
pub enum Query {
    All,
    And(Vec<Query>),
    Or(Vec<Query>),
    Not(Box<Query>),
    /// Exact value of a field (typed by the catalog).
    Term {
        field: String,
        value: String,
    },
    /// A field's text matches a pattern with `*` and `?`.
    Wildcard {
        field: String,
        pattern: String,
    },
    Range {
        field: String,
        lo: Bound,
        hi: Bound,
    },
    Cidr {
        field: String,
        net: cidr::IpCidr,
    },
    Exists {
        field: String,
    },
    /// Words (one, or a phrase of several in order) anywhere in the text.
    Text {
        words: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Bound {
    Unbounded,
    Included(String),
    Excluded(String),
}

/// A query that does not parse or names what does not exist; `position` is
/// the byte offset in the query text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryError {
    pub position: usize,
    pub message: String,
    /// Stable code for clients that show the error in their reader's
    /// language (`query.unknown_field`), with its values.
    pub code: &'static str,
    pub args: Vec<(&'static str, String)>,
}

impl QueryError {
    fn new(position: usize, code: &'static str, message: String) -> QueryError {
        QueryError { position, message, code, args: Vec::new() }
    }

    fn arg(mut self, name: &'static str, value: impl ToString) -> QueryError {
        self.args.push((name, value.to_string()));
        self
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {}: {}", self.position, self.message)
    }
}

impl std::error::Error for QueryError {}

/// Longest query accepted: a bound on the parser's work.
pub const MAX_QUERY_BYTES: usize = 4096;
/// Deepest nesting of the built query (groups and `NOT`s count alike): the
/// parser, each backend's translation and the scorers they build recurse
/// once per level, on a worker's stack.
pub const MAX_DEPTH: usize = 32;
/// Most nodes of the built query, free-text expansion included (a word is
/// also matched against the identifier fields, an address against every
/// address field). ClickHouse repeats the condition in the branch of each
/// log's table and refuses a query of more than 50,000 syntax elements
/// (`max_ast_elements`); 512 nodes stay well inside that, and far above
/// what people type (a query of twenty addresses is about 200).
pub const MAX_NODES: usize = 512;
/// Longest wildcard pattern, and most wildcard terms in one query: Tantivy
/// matches a pattern with an automaton whose construction grows with the
/// pattern's length (up to 1,000 states of 256 transitions each), so both
/// bound the time one search may spend before it reads a record (tens of
/// milliseconds a pattern in a release build).
pub const MAX_WILDCARD_BYTES: usize = 64;
pub const MAX_WILDCARDS: usize = 8;

struct P<'a> {
    s: &'a str,
    pos: usize,
    depth: usize,
    catalog: &'a Catalog,
}

pub fn parse(text: &str, catalog: &Catalog) -> Result<Query, QueryError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(QueryError::new(
            MAX_QUERY_BYTES,
            "query.too_long",
            format!("query longer than {MAX_QUERY_BYTES} bytes"),
        )
        .arg("max", MAX_QUERY_BYTES));
    }
    let mut p = P { s: text, pos: 0, depth: 0, catalog };
    p.ws();
    if p.pos == text.len() {
        return Ok(Query::All);
    }
    let q = p.or()?;
    p.ws();
    if p.pos != text.len() {
        return Err(p.err("query.unexpected_text", "unexpected text"));
    }
    check_size(&q)?;
    Ok(q)
}

/// The number of nodes and the depth of a query.
pub fn size(q: &Query) -> (usize, usize) {
    // Iterative: this is what checks the depth, so it must not recurse
    // on what it checks.
    let (nodes, depth, _) = measure(q);
    (nodes, depth)
}

/// Nodes, depth and wildcard terms.
fn measure(q: &Query) -> (usize, usize, usize) {
    let (mut nodes, mut depth, mut wildcards) = (0, 0, 0);
    let mut todo = vec![(q, 1)];
    while let Some((q, d)) = todo.pop() {
        nodes += 1;
        depth = depth.max(d);
        match q {
            Query::And(v) | Query::Or(v) => todo.extend(v.iter().map(|x| (x, d + 1))),
            Query::Not(x) => todo.push((x, d + 1)),
            Query::Wildcard { .. } => wildcards += 1,
            _ => {}
        }
    }
    (nodes, depth, wildcards)
}

/// Refuses a query larger or deeper than a search may be, naming the limit.
pub fn check_size(q: &Query) -> Result<(), QueryError> {
    let (nodes, depth, wildcards) = measure(q);
    if wildcards > MAX_WILDCARDS {
        let m = format!("query of {wildcards} wildcard terms; at most {MAX_WILDCARDS}");
        return Err(QueryError::new(0, "query.too_many_wildcards", m)
            .arg("count", wildcards)
            .arg("max", MAX_WILDCARDS));
    }
    if depth > MAX_DEPTH {
        let m = format!("query nested more than {MAX_DEPTH} levels deep");
        return Err(QueryError::new(0, "query.too_deep_built", m).arg("max", MAX_DEPTH));
    }
    if nodes > MAX_NODES {
        let m = format!(
            "query of {nodes} terms (free text counts once per field it is matched against); at most {MAX_NODES}"
        );
        return Err(QueryError::new(0, "query.too_many_terms", m).arg("count", nodes).arg("max", MAX_NODES));
    }
    Ok(())
}

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '(' | ')' | '"' | ':' | '[' | ']' | '{' | '}')
}

impl<'a> P<'a> {
    /// An error where the parser stands, with the text that follows it.
    fn err(&self, code: &'static str, m: &str) -> QueryError {
        let near: String = self.s[self.pos..].chars().take(12).collect();
        if near.is_empty() {
            QueryError::new(self.pos, code, format!("{m} at the end")).arg("end", "")
        } else {
            QueryError::new(self.pos, code, format!("{m} near '{near}'")).arg("near", near)
        }
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn ws(&mut self) {
        while let Some(c) = self.rest().chars().next() {
            if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
    }

    /// A keyword (AND, OR, NOT, TO) followed by a separator.
    fn keyword(&mut self, k: &str) -> bool {
        let r = self.rest();
        if r.len() >= k.len() && r.is_char_boundary(k.len()) && &r[..k.len()] == k {
            let after = r[k.len()..].chars().next();
            if after.is_none_or(|c| c.is_whitespace() || c == '(') {
                self.pos += k.len();
                return true;
            }
        }
        false
    }

    fn symbol(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            return true;
        }
        false
    }

    fn enter(&mut self) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self
                .err("query.too_deep", &format!("query nested more than {MAX_DEPTH} levels deep"))
                .arg("max", MAX_DEPTH));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Query, QueryError> {
        self.enter()?;
        let mut parts = vec![self.and()?];
        loop {
            self.ws();
            if self.keyword("OR") || self.symbol("||") {
                self.ws();
                parts.push(self.and()?);
            } else {
                break;
            }
        }
        self.depth -= 1;
        Ok(if parts.len() == 1 { parts.remove(0) } else { Query::Or(parts) })
    }

    fn and(&mut self) -> Result<Query, QueryError> {
        let mut parts = vec![self.not()?];
        loop {
            self.ws();
            let save = self.pos;
            if self.keyword("AND") || self.symbol("&&") {
                self.ws();
                parts.push(self.not()?);
                continue;
            }
            // Juxtaposition is AND, unless what follows ends this group.
            let r = self.rest();
            if r.is_empty() || r.starts_with(')') || self.keyword("OR") || r.starts_with("||") {
                self.pos = save;
                break;
            }
            parts.push(self.not()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Query::And(parts) })
    }

    fn not(&mut self) -> Result<Query, QueryError> {
        self.ws();
        if self.keyword("NOT") {
            // A level like a group: `NOT NOT … x` recurses once per NOT.
            self.enter()?;
            self.ws();
            let q = Query::Not(Box::new(self.not()?));
            self.depth -= 1;
            return Ok(q);
        }
        if self.rest().starts_with('-') && self.rest()[1..].chars().next().is_some_and(|c| !c.is_whitespace()) {
            self.pos += 1;
            return Ok(Query::Not(Box::new(self.atom()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Query, QueryError> {
        self.ws();
        let r = self.rest();
        if r.starts_with('(') {
            self.pos += 1;
            let q = self.or()?;
            self.ws();
            if !self.rest().starts_with(')') {
                return Err(self.err("query.missing_paren", "missing ')'"));
            }
            self.pos += 1;
            return Ok(q);
        }
        if r.starts_with('"') {
            let start = self.pos;
            let words = self.phrase()?;
            no_words(&words.concat(), start)?;
            return Ok(self.free_text(words));
        }
        let start = self.pos;
        let word = self.word();
        if word.is_empty() {
            return Err(self.err("query.expected_term", "expected a term"));
        }
        if self.rest().starts_with(':') {
            self.pos += 1;
            return self.field_value(word, start);
        }
        if word == "*" {
            return Ok(Query::All);
        }
        // Free text is searched by its words; punctuation alone has none.
        // Dropping it, as an analyzer does, made `'` match every record;
        // matching nothing would silently empty `evil '`. Neither is what
        // was asked, so the term is refused, by name.
        no_words(&word, start)?;
        Ok(self.free_text(vec![word]))
    }

    /// Free text, and where the text is one address or one identifier, the
    /// fields that hold those: they are not in the free-text index (one
    /// value per record, or nearly, costs more to index than it helps), so
    /// the word is matched against them whole.
    fn free_text(&self, words: Vec<String>) -> Query {
        let fields: Vec<&str> = match words.as_slice() {
            [w] if w.parse::<IpAddr>().is_ok() => {
                self.catalog.fields.iter().filter(|f| f.kind == Kind::Addr).map(|f| f.path.as_str()).collect()
            }
            // A community ID is never one word (`1:...=`): searched by field.
            [w] if w.chars().all(char::is_alphanumeric) => {
                IDENTIFIERS.iter().copied().filter(|f| *f != "community_id").collect()
            }
            _ => return Query::Text { words },
        };
        let terms: Vec<Query> =
            fields.into_iter().map(|f| Query::Term { field: f.to_string(), value: words[0].clone() }).collect();
        Query::Or(std::iter::once(Query::Text { words }).chain(terms).collect())
    }

    fn word(&mut self) -> String {
        self.word_with(false)
    }

    /// A word; with `colons`, `:` belongs to it (IPv6 addresses).
    fn word_with(&mut self, colons: bool) -> String {
        let mut out = String::new();
        let mut chars = self.rest().char_indices().peekable();
        let mut end = 0;
        while let Some((i, c)) = chars.next() {
            if c == '\\' {
                if let Some(&(j, n)) = chars.peek() {
                    out.push('\\');
                    out.push(n);
                    chars.next();
                    end = j + n.len_utf8();
                    continue;
                }
            }
            if !(is_word_char(c) || colons && c == ':') {
                break;
            }
            out.push(c);
            end = i + c.len_utf8();
        }
        self.pos += end;
        out
    }

    fn phrase(&mut self) -> Result<Vec<String>, QueryError> {
        let start = self.pos;
        self.pos += 1;
        let mut text = String::new();
        loop {
            let Some(c) = self.rest().chars().next() else {
                return Err(QueryError::new(start, "query.unclosed_quote", "unclosed '\"'".into()));
            };
            self.pos += c.len_utf8();
            match c {
                '"' => break,
                '\\' => {
                    if let Some(n) = self.rest().chars().next() {
                        text.push(n);
                        self.pos += n.len_utf8();
                    }
                }
                c => text.push(c),
            }
        }
        Ok(vec![text])
    }

    fn field_value(&mut self, field: String, start: usize) -> Result<Query, QueryError> {
        let Some(kind) = self.catalog.kind(&field) else {
            return Err(
                QueryError::new(start, "query.unknown_field", format!("unknown field '{field}'")).arg("field", &field)
            );
        };
        let at = self.pos;
        let bad = |v: &str| bad_value(at, kind, v);
        let r = self.rest();
        if r.starts_with('"') {
            let text = self.phrase()?.remove(0);
            check_value(kind, &text).map_err(|_| bad(&text))?;
            return Ok(Query::Term { field, value: text });
        }
        if r.starts_with('[') || r.starts_with('{') {
            let inclusive_lo = r.starts_with('[');
            self.pos += 1;
            self.ws();
            let lo = self.word_with(kind == Kind::Addr);
            self.ws();
            if !self.keyword("TO") {
                return Err(self.err("query.expected_to", "expected TO in a range"));
            }
            self.ws();
            let hi = self.word_with(kind == Kind::Addr);
            self.ws();
            let close = self.rest().chars().next();
            let inclusive_hi = match close {
                Some(']') => true,
                Some('}') => false,
                _ => return Err(self.err("query.expected_close", "expected ']' or '}'")),
            };
            self.pos += 1;
            let b = |v: String, inc: bool| -> Result<Bound, QueryError> {
                if v == "*" {
                    return Ok(Bound::Unbounded);
                }
                check_value(kind, &v).map_err(|_| bad(&v))?;
                Ok(if inc { Bound::Included(v) } else { Bound::Excluded(v) })
            };
            let (lo, hi) = (b(lo, inclusive_lo)?, b(hi, inclusive_hi)?);
            return Ok(Query::Range { field, lo, hi });
        }
        for (op, mk) in [(">=", 0), ("<=", 1), (">", 2), ("<", 3)] {
            if let Some(rest) = r.strip_prefix(op) {
                let _ = rest;
                self.pos += op.len();
                let v = self.word_with(kind == Kind::Addr);
                check_value(kind, &v).map_err(|_| bad(&v))?;
                let (lo, hi) = match mk {
                    0 => (Bound::Included(v), Bound::Unbounded),
                    1 => (Bound::Unbounded, Bound::Included(v)),
                    2 => (Bound::Excluded(v), Bound::Unbounded),
                    _ => (Bound::Unbounded, Bound::Excluded(v)),
                };
                return Ok(Query::Range { field, lo, hi });
            }
        }
        let v = self.word_with(kind == Kind::Addr);
        if v.is_empty() {
            return Err(self.err("query.expected_value", "expected a value"));
        }
        if v == "*" {
            return Ok(Query::Exists { field });
        }
        if kind == Kind::Addr && v.contains('/') {
            let net: cidr::IpCidr = v.parse().map_err(|e| {
                QueryError::new(at, "query.bad_network", format!("'{v}' is not a network: {e}")).arg("value", &v)
            })?;
            return Ok(Query::Cidr { field, net });
        }
        let unescaped = unescape(&v);
        if has_wildcard(&v) {
            if !matches!(kind, Kind::Str | Kind::StrSet | Kind::Addr) {
                return Err(QueryError::new(
                    at,
                    "query.wildcard_field",
                    format!("wildcards apply to text fields; {field} is {}", kind.name()),
                )
                .arg("field", &field)
                .arg("kind", kind.name()));
            }
            if v.len() > MAX_WILDCARD_BYTES {
                let m = format!("a wildcard pattern is at most {MAX_WILDCARD_BYTES} bytes");
                return Err(QueryError::new(at, "query.wildcard_too_long", m).arg("max", MAX_WILDCARD_BYTES));
            }
            return Ok(Query::Wildcard { field, pattern: collapse_wildcards(&v) });
        }
        check_value(kind, &unescaped).map_err(|_| bad(&unescaped))?;
        Ok(Query::Term { field, value: unescaped })
    }
}

/// Refuses free text without a letter or digit, naming it.
fn no_words(text: &str, position: usize) -> Result<(), QueryError> {
    if tokens(text).is_empty() {
        let shown: String = text.chars().take(32).collect();
        let m = format!(
            "'{shown}' has no letter or digit to search for; search a field for it (field:\"{shown}\") or leave it out"
        );
        return Err(QueryError::new(position, "query.no_words", m).arg("text", shown));
    }
    Ok(())
}

/// Unescaped `*` or `?` in a word.
fn has_wildcard(v: &str) -> bool {
    let mut esc = false;
    for c in v.chars() {
        if esc {
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if c == '*' || c == '?' {
            return true;
        }
    }
    false
}

fn unescape(v: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in v.chars() {
        if esc {
            out.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else {
            out.push(c);
        }
    }
    out
}

fn bad_value(at: usize, kind: Kind, v: &str) -> QueryError {
    let message = check_value(kind, v).err().unwrap_or_default();
    QueryError::new(at, "query.bad_value", message).arg("value", v).arg("kind", kind.name())
}

fn check_value(kind: Kind, v: &str) -> Result<(), String> {
    let ok = match kind {
        Kind::Str | Kind::StrSet => true,
        Kind::Addr => v.parse::<IpAddr>().is_ok(),
        Kind::Count => v.parse::<u64>().is_ok(),
        Kind::Float => v.parse::<f64>().is_ok_and(f64::is_finite),
        Kind::Bool => v == "true" || v == "false",
    };
    if ok {
        Ok(())
    } else {
        Err(format!("'{v}' is not a valid {}", kind.name()))
    }
}

/// The words of a text, as both backends split text for free-text search:
/// runs of letters and digits, lower-cased.
pub fn tokens(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Pattern (`*`, `?`, `\` escapes) as an anchored regular expression.
/// The same pattern with each run of unescaped `*` and `?` written as its
/// `?`s then one `*` (`*?*?` is `??*`): it matches the same texts, and a
/// run of alternating stars is what makes an automaton (Tantivy's) or a
/// backtracking matcher slow, seconds per segment for a 64-byte pattern.
pub fn collapse_wildcards(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    let (mut ones, mut star, mut esc) = (0usize, false, false);
    let flush = |out: &mut String, ones: &mut usize, star: &mut bool| {
        out.extend(std::iter::repeat_n('?', *ones));
        if *star {
            out.push('*');
        }
        (*ones, *star) = (0, false);
    };
    for c in p.chars() {
        if esc {
            out.push(c);
            esc = false;
            continue;
        }
        match c {
            '*' => star = true,
            '?' => ones += 1,
            c => {
                flush(&mut out, &mut ones, &mut star);
                out.push(c);
                esc = c == '\\';
            }
        }
    }
    flush(&mut out, &mut ones, &mut star);
    out
}

pub fn wildcard_regex(p: &str) -> String {
    let mut re = String::from("^");
    let mut esc = false;
    for c in p.chars() {
        if esc {
            re.push_str(&regex_syntax::escape(&c.to_string()));
            esc = false;
            continue;
        }
        match c {
            '\\' => esc = true,
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex_syntax::escape(&c.to_string())),
        }
    }
    re.push('$');
    re
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Query, QueryError> {
        parse(s, &Catalog::new())
    }

    #[test]
    fn runs_of_wildcards_collapse_to_the_same_matches() {
        assert_eq!(collapse_wildcards("*?*?*?x"), "???*x");
        assert_eq!(collapse_wildcards("a**b"), "a*b");
        assert_eq!(collapse_wildcards("??"), "??");
        assert_eq!(collapse_wildcards("a\\**?\\?*"), "a\\*?*\\?*");
        assert_eq!(collapse_wildcards("x*"), "x*");
        // A plain glob matcher (no escapes), only for the check.
        fn glob(p: &[u8], t: &[u8]) -> bool {
            match (p.first(), t.first()) {
                (None, None) => true,
                (Some(b'*'), _) => glob(&p[1..], t) || (!t.is_empty() && glob(p, &t[1..])),
                (Some(b'?'), Some(_)) => glob(&p[1..], &t[1..]),
                (Some(a), Some(b)) if a == b => glob(&p[1..], &t[1..]),
                _ => false,
            }
        }
        for pattern in ["*?*?x", "a*?b", "?*?", "*a*?*b?"] {
            for text in ["", "x", "abx", "ab", "axb", "aab", "a_b_", "ba"] {
                let (p1, p2) = (pattern.as_bytes(), collapse_wildcards(pattern));
                assert_eq!(glob(p1, text.as_bytes()), glob(p2.as_bytes(), text.as_bytes()), "{pattern} on {text}");
            }
        }
        match p("uri:*?*?*?*?/x").unwrap() {
            Query::Wildcard { pattern, .. } => assert_eq!(pattern, "????*/x"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn forms() {
        let c = Catalog::new();
        assert_eq!(p("").unwrap(), Query::All);
        assert_eq!(
            p("id.orig_h:10.1.0.0/16").unwrap(),
            Query::Cidr { field: "id.orig_h".into(), net: "10.1.0.0/16".parse().unwrap() }
        );
        assert!(matches!(p("a b OR c").unwrap(), Query::Or(v) if matches!(&v[0], Query::And(a) if a.len() == 2)));
        assert!(matches!(p("status_code:[400 TO 499]").unwrap(), Query::Range { .. }));
        assert!(matches!(p("status_code:>=400").unwrap(), Query::Range { lo: Bound::Included(_), .. }));
        assert!(matches!(p("query:*.duckdns.org").unwrap(), Query::Wildcard { .. }));
        assert!(matches!(p("-_log:conn").unwrap(), Query::Not(_)));
        assert!(matches!(p("NOT (a OR b)").unwrap(), Query::Not(_)));
        assert_eq!(p("\"Evil Corp\"").unwrap(), Query::Text { words: vec!["Evil Corp".into()] });
        assert_eq!(p("uid:*").unwrap(), Query::Exists { field: "uid".into() });
        // An address or an identifier as free text is also matched whole
        // against the fields that hold them, which the free-text index
        // leaves out.
        let Query::Or(any) = p("10.1.2.3").unwrap() else { panic!("an address is also a term") };
        assert_eq!(any[0], Query::Text { words: vec!["10.1.2.3".into()] });
        assert!(any.contains(&Query::Term { field: "id.resp_h".into(), value: "10.1.2.3".into() }));
        assert!(any[1..].iter().all(|t| matches!(t, Query::Term { field, .. } if c.kind(field) == Some(Kind::Addr))));
        let Query::Or(any) = p("CHhAvVGS1DHFjwGM9").unwrap() else { panic!("a word is also an identifier") };
        assert!(any.contains(&Query::Term { field: "uid".into(), value: "CHhAvVGS1DHFjwGM9".into() }));
        assert!(matches!(p("/index.html").unwrap(), Query::Text { .. }), "not one word: free text only");
        assert_eq!(p("uri:\"/a b\"").unwrap(), Query::Term { field: "uri".into(), value: "/a b".into() });
    }

    #[test]
    fn errors_have_positions() {
        let e = p("query:x AND nosuch:1").unwrap_err();
        assert_eq!(e.position, 12);
        assert!(e.message.contains("unknown field 'nosuch'"));
        assert_eq!(p("id.resp_p:http").unwrap_err().position, 10);
        assert_eq!(p("(a OR b").unwrap_err().message, "missing ')' at the end");
        assert!(p("id.orig_h:10.0.0.0/99").is_err());
        assert!(p("\"open").is_err());
        assert!(p(&"(".repeat(100)).is_err());
        assert!(p("DROP TABLE events; --x").is_ok(), "only text: searched, never executed");
    }

    #[test]
    fn punctuation_alone_is_refused_by_name() {
        for (q, term, at) in [("'", "'", 0), ("@@@", "@@@", 0), ("evil '", "'", 5), ("\"--\"", "--", 0)] {
            let e = p(q).unwrap_err();
            assert_eq!(e.position, at, "{q}");
            assert!(e.message.starts_with(&format!("'{term}' has no letter or digit")), "{q}: {}", e.message);
        }
        // As a field's value it is an exact value, not free text.
        assert!(p("uri:\"'\"").is_ok());
        assert!(p("uri:@@@").is_ok());
    }

    #[test]
    fn nesting_counts_not_as_well_as_groups() {
        // 250 NOTs once overflowed a worker's stack.
        let e = p(&format!("{}uid:x", "NOT ".repeat(250))).unwrap_err();
        assert!(e.message.contains(&format!("nested more than {MAX_DEPTH} levels")), "{}", e.message);
        let e = p(&format!("{}uid:x", "NOT (".repeat(20))).unwrap_err();
        assert!(e.message.contains("nested more than"), "{}", e.message);
        assert!(p(&format!("{}uid:x", "NOT ".repeat(20))).is_ok());
        assert!(p(&format!("{}a{}", "(".repeat(20), ")".repeat(20))).is_ok());
    }

    #[test]
    fn the_built_query_is_bounded_in_nodes_and_depth() {
        // Each address expands to every address field: the limit counts
        // the built query, not the text.
        let ips: Vec<String> = (0..200).map(|i| format!("10.0.{}.{}", i / 250, i % 250)).collect();
        let e = p(&ips.join(" OR ")).unwrap_err();
        assert!(e.message.contains(&format!("at most {MAX_NODES}")), "{}", e.message);
        let (nodes, depth) = size(&p(&ips[..10].join(" OR ")).unwrap());
        assert!(nodes <= MAX_NODES && depth <= 3, "{nodes} {depth}");
        // Deep ASTs built by code are checked the same way, without
        // recursing.
        let mut deep = Query::All;
        for _ in 0..1000 {
            deep = Query::Not(Box::new(deep));
        }
        assert_eq!(size(&deep), (1001, 1001));
        assert!(check_size(&deep).unwrap_err().message.contains("nested"));
        let e = p(&format!("query:*{}*", "a".repeat(MAX_WILDCARD_BYTES))).unwrap_err();
        assert!(e.message.contains(&format!("at most {MAX_WILDCARD_BYTES} bytes")), "{}", e.message);
        let many: Vec<String> = (0..=MAX_WILDCARDS).map(|i| format!("query:*{i}*")).collect();
        let e = p(&many.join(" OR ")).unwrap_err();
        assert!(e.message.contains(&format!("at most {MAX_WILDCARDS}")), "{}", e.message);
        assert!(p(&many[..MAX_WILDCARDS].join(" OR ")).is_ok());
    }
}
