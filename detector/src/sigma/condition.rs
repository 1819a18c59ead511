//! Sigma's `condition`: `and`, `or`, `not`, parentheses, selection names,
//! and `1 of` / `all of` over `them` or a name pattern. Precedence is
//! `not` > `and` > `or`, as in the specification.

use super::ast::{err, DocError, Expr};
use crate::error::Code;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    And,
    Or,
    Not,
    One,
    All,
    Of,
    Pipe,
    Ident(String),
}

fn lex(s: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut word = String::new();
    let flush = |w: &mut String, out: &mut Vec<Tok>| {
        if w.is_empty() {
            return;
        }
        let t = match w.to_ascii_lowercase().as_str() {
            "and" => Tok::And,
            "or" => Tok::Or,
            "not" => Tok::Not,
            "1" | "any" => Tok::One,
            "all" => Tok::All,
            "of" => Tok::Of,
            _ => Tok::Ident(w.clone()),
        };
        out.push(t);
        w.clear();
    };
    for c in s.chars() {
        match c {
            '(' | ')' | '|' => {
                flush(&mut word, &mut out);
                out.push(match c {
                    '(' => Tok::Open,
                    ')' => Tok::Close,
                    _ => Tok::Pipe,
                });
            }
            c if c.is_whitespace() => flush(&mut word, &mut out),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out);
    out
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    sels: &'a [(String, Expr)],
    text: &'a str,
}

pub fn parse(cond: &str, sels: &[(String, Expr)]) -> Result<Expr, DocError> {
    let toks = lex(cond);
    if toks.contains(&Tok::Pipe) {
        return Err(err(
            Code::Unsupported,
            "aggregation in the condition (`| count() ...`) is Sigma 1.0 syntax; write a correlation rule",
            Some("condition:"),
        ));
    }
    let mut p = Parser { toks, pos: 0, sels, text: cond };
    let e = p.or()?;
    if p.pos != p.toks.len() {
        return Err(p.fail("unexpected token"));
    }
    Ok(e)
}

impl Parser<'_> {
    fn fail(&self, what: &str) -> DocError {
        let at = self.toks.get(self.pos).map(|t| format!("{t:?}")).unwrap_or_else(|| "end".into());
        err(Code::Condition, format!("condition '{}': {what} at {at}", self.text), Some("condition:"))
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn or(&mut self) -> Result<Expr, DocError> {
        let mut parts = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Expr::Or(parts) })
    }

    fn and(&mut self) -> Result<Expr, DocError> {
        let mut parts = vec![self.not()?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            parts.push(self.not()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Expr::And(parts) })
    }

    fn not(&mut self) -> Result<Expr, DocError> {
        if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, DocError> {
        match self.peek().cloned() {
            Some(Tok::Open) => {
                self.pos += 1;
                let e = self.or()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(self.fail("missing ')'"));
                }
                self.pos += 1;
                Ok(e)
            }
            Some(q @ (Tok::One | Tok::All)) => {
                self.pos += 1;
                if self.peek() != Some(&Tok::Of) {
                    return Err(self.fail("expected 'of'"));
                }
                self.pos += 1;
                let Some(Tok::Ident(target)) = self.peek().cloned() else {
                    return Err(self.fail("expected 'them' or a selection pattern"));
                };
                self.pos += 1;
                let picked: Vec<Expr> = self
                    .sels
                    .iter()
                    .filter(|(name, _)| {
                        if target == "them" {
                            // Names starting with `_` are helpers, left out of `them`.
                            !name.starts_with('_')
                        } else {
                            glob_match(&target, name)
                        }
                    })
                    .map(|(_, e)| e.clone())
                    .collect();
                if picked.is_empty() {
                    return Err(err(
                        Code::Condition,
                        format!("condition '{}': no selection matches '{target}'", self.text),
                        Some("condition:"),
                    ));
                }
                Ok(if q == Tok::All { Expr::And(picked) } else { Expr::Or(picked) })
            }
            Some(Tok::Ident(name)) => {
                self.pos += 1;
                self.sels.iter().find(|(n, _)| *n == name).map(|(_, e)| e.clone()).ok_or_else(|| {
                    err(
                        Code::Condition,
                        format!("condition '{}': unknown selection '{name}'", self.text),
                        Some("condition:"),
                    )
                })
            }
            _ => Err(self.fail("expected a selection")),
        }
    }
}

/// `*` matches any run of characters (selection name patterns).
fn glob_match(pat: &str, s: &str) -> bool {
    let parts: Vec<&str> = pat.split('*').collect();
    if parts.len() == 1 {
        return pat == s;
    }
    let mut rest = s;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(p) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else if let Some(at) = rest.find(p) {
            rest = &rest[at + p.len()..];
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sels() -> Vec<(String, Expr)> {
        ["sel_a", "sel_b", "filter", "_helper"].iter().map(|n| (n.to_string(), Expr::Const(n.len() % 2 == 0))).collect()
    }

    #[test]
    fn precedence_and_quantifiers() {
        let s = sels();
        let e = parse("sel_a or sel_b and not filter", &s).unwrap();
        assert!(matches!(e, Expr::Or(ref v) if v.len() == 2));
        let e = parse("1 of sel_* and not filter", &s).unwrap();
        assert!(matches!(e, Expr::And(ref v) if matches!(v[0], Expr::Or(ref o) if o.len() == 2)));
        let e = parse("all of them", &s).unwrap();
        assert!(matches!(e, Expr::And(ref v) if v.len() == 3));
        assert!(parse("sel_a and (sel_b", &s).is_err());
        assert!(parse("sel_x", &s).is_err());
        assert_eq!(parse("selection | count() > 5", &s).unwrap_err().code, Code::Unsupported);
    }
}
