//! The compiled rule set and its evaluator.
//!
//! Every field test of every rule becomes a predicate, shared by the rules
//! that use the same test. For each log and field the string predicates are
//! folded into one Aho-Corasick automaton and the regular expressions into
//! one `RegexSet`, so a record costs one pass per field however many rules
//! are loaded. A rule's condition is then evaluated only if one of its
//! predicates hit (or if it can match with none, like `not selection`).

use super::ast::{Expr, Leaf, Match, NumOp, StrKind};
use super::mapping::{log_index, Mapping};
use crate::flat::{FlatRecord, Value};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::RegexSet;
use schema::{Event, CATALOG};
use std::collections::HashMap;
use std::net::IpAddr;

/// A condition over predicate ids.
#[derive(Clone, Debug)]
pub enum CExpr {
    Pred(u32),
    And(Box<[CExpr]>),
    Or(Box<[CExpr]>),
    Not(Box<CExpr>),
    Const(bool),
}

impl CExpr {
    fn eval(&self, hit: &dyn Fn(u32) -> bool) -> bool {
        match self {
            CExpr::Pred(p) => hit(*p),
            CExpr::And(v) => v.iter().all(|e| e.eval(hit)),
            CExpr::Or(v) => v.iter().any(|e| e.eval(hit)),
            CExpr::Not(e) => !e.eval(hit),
            CExpr::Const(b) => *b,
        }
    }

    fn preds(&self, out: &mut Vec<u32>) {
        match self {
            CExpr::Pred(p) => out.push(*p),
            CExpr::And(v) | CExpr::Or(v) => v.iter().for_each(|e| e.preds(out)),
            CExpr::Not(e) => e.preds(out),
            CExpr::Const(_) => {}
        }
    }
}

#[derive(Clone, Debug)]
pub struct PredDef {
    /// The field as the rule wrote it, for explanations.
    pub sigma_field: Option<String>,
    /// Our field (`None`: a keyword, searched in every string).
    pub field: Option<&'static str>,
    pub m: Match,
}

/// One rule as evaluated on one log.
#[derive(Clone, Debug)]
pub struct Program {
    /// Index of the rule in the caller's list.
    pub rule: u32,
    pub log: u16,
    pub expr: CExpr,
}

struct StrIdx {
    ac: AhoCorasick,
    /// Per automaton pattern: which predicates use it, and how.
    pats: Vec<Vec<(StrKind, u32)>>,
}

#[derive(Default)]
struct FieldIdx {
    exists: Vec<u32>,
    ci: Option<StrIdx>,
    cs: Option<StrIdx>,
    empty: Vec<(StrKind, u32)>,
    re: Option<(RegexSet, Vec<u32>)>,
    cidr: Vec<(cidr::IpCidr, u32)>,
    num: Vec<(NumOp, f64, u32)>,
}

#[derive(Default)]
struct LogIdx {
    fields: HashMap<&'static str, FieldIdx>,
    keywords: Option<StrIdx>,
    /// Tests that need two fields at once (`fieldref`).
    residual: Vec<u32>,
    /// Programs that can be true with no predicate hit.
    always: Vec<u32>,
}

pub struct Engine {
    preds: Vec<PredDef>,
    pred_programs: Vec<Vec<u32>>,
    programs: Vec<Program>,
    logs: Vec<LogIdx>,
}

fn catalog_field(log: u16, name: &str) -> Option<&'static str> {
    CATALOG.get(log as usize)?.fields.iter().find(|f| f.path == name).map(|f| f.path)
}

/// Compiles rules (already routed: each with the logs and the field mapping
/// of its logsource) into one engine.
pub struct Builder<'m> {
    mapping: &'m Mapping,
    preds: Vec<PredDef>,
    pred_keys: HashMap<(u16, Option<&'static str>, String), u32>,
    programs: Vec<Program>,
    /// Fields rules name that the routed log lacks: (rule, log, field).
    pub unknown_fields: Vec<(u32, u16, String)>,
}

impl<'m> Builder<'m> {
    pub fn new(mapping: &'m Mapping) -> Self {
        Builder {
            mapping,
            preds: Vec::new(),
            pred_keys: HashMap::new(),
            programs: Vec::new(),
            unknown_fields: Vec::new(),
        }
    }

    /// Resolves a rule's field name for a log: the logsource's mapping first,
    /// then the name itself.
    pub fn resolve(&self, entry: usize, log: u16, name: &str) -> Option<&'static str> {
        let mapped = self.mapping.entries.get(entry).and_then(|e| e.fields.get(name)).map(String::as_str);
        catalog_field(log, mapped.unwrap_or(name))
    }

    pub fn add(&mut self, rule: u32, entry: usize, log: u16, expr: &Expr) {
        let c = self.compile(rule, entry, log, expr);
        self.programs.push(Program { rule, log, expr: c });
    }

    /// Compiles an expression without making it a program (filters are
    /// folded into the programs of the rules they apply to).
    pub fn compile(&mut self, rule: u32, entry: usize, log: u16, e: &Expr) -> CExpr {
        simplify(match e {
            Expr::Const(b) => CExpr::Const(*b),
            Expr::Not(x) => CExpr::Not(Box::new(self.compile(rule, entry, log, x))),
            Expr::And(v) => CExpr::And(v.iter().map(|x| self.compile(rule, entry, log, x)).collect()),
            Expr::Or(v) => CExpr::Or(v.iter().map(|x| self.compile(rule, entry, log, x)).collect()),
            Expr::Leaf(l) => self.leaf(rule, entry, log, l),
        })
    }

    fn leaf(&mut self, rule: u32, entry: usize, log: u16, l: &Leaf) -> CExpr {
        let field = match &l.field {
            None => None,
            Some(name) => match self.resolve(entry, log, name) {
                Some(f) => Some(f),
                None => {
                    self.unknown_fields.push((rule, log, name.clone()));
                    // A field the log does not have is absent: every test
                    // on it is false (and `not exists` is true).
                    return CExpr::Const(false);
                }
            },
        };
        let mut m = l.m.clone();
        if let Match::FieldRef { other, kind, cased } = &m {
            match self.resolve(entry, log, other) {
                Some(o) => m = Match::FieldRef { other: o.to_string(), kind: *kind, cased: *cased },
                None => return CExpr::Const(false),
            }
        }
        let key = (log, field, m.key());
        if let Some(&p) = self.pred_keys.get(&key) {
            return CExpr::Pred(p);
        }
        let p = self.preds.len() as u32;
        self.preds.push(PredDef { sigma_field: l.field.clone(), field, m });
        self.pred_keys.insert(key, p);
        CExpr::Pred(p)
    }

    pub fn push_program(&mut self, p: Program) {
        self.programs.push(p);
    }

    pub fn build(self) -> Result<Engine, String> {
        let n_logs = CATALOG.len();
        let mut logs: Vec<LogIdx> = (0..n_logs).map(|_| LogIdx::default()).collect();
        let mut pred_programs = vec![Vec::new(); self.preds.len()];
        let mut pred_log = vec![0u16; self.preds.len()];
        for (i, prog) in self.programs.iter().enumerate() {
            let mut ps = Vec::new();
            prog.expr.preds(&mut ps);
            ps.sort_unstable();
            ps.dedup();
            for p in ps {
                pred_programs[p as usize].push(i as u32);
                pred_log[p as usize] = prog.log;
            }
            if prog.expr.eval(&|_| false) {
                if let Some(l) = logs.get_mut(prog.log as usize) {
                    l.always.push(i as u32);
                }
            }
        }
        // Gather the tests per log and field.
        type Pats = HashMap<String, Vec<(StrKind, u32)>>;
        #[derive(Default)]
        struct Acc {
            ci: Pats,
            cs: Pats,
            re: Vec<(String, u32)>,
        }
        let mut acc: HashMap<(u16, Option<&'static str>), Acc> = HashMap::new();
        for (i, pd) in self.preds.iter().enumerate() {
            let i = i as u32;
            let log = pred_log[i as usize];
            let Some(li) = logs.get_mut(log as usize) else { continue };
            let a = acc.entry((log, pd.field)).or_default();
            match (&pd.m, pd.field) {
                (Match::FieldRef { .. }, _) => li.residual.push(i),
                (Match::Str { kind, pat, cased }, f) => {
                    if pat.is_empty() {
                        if let Some(f) = f {
                            li.fields.entry(f).or_default().empty.push((*kind, i));
                        }
                    } else if *cased {
                        a.cs.entry(pat.clone()).or_default().push((*kind, i));
                    } else {
                        a.ci.entry(pat.to_lowercase()).or_default().push((*kind, i));
                    }
                }
                (Match::Re(r), _) => a.re.push((r.clone(), i)),
                (Match::Exists, Some(f)) => li.fields.entry(f).or_default().exists.push(i),
                (Match::Cidr(c), Some(f)) => li.fields.entry(f).or_default().cidr.push((*c, i)),
                (Match::Num(op, n), Some(f)) => li.fields.entry(f).or_default().num.push((*op, *n, i)),
                // Keywords with exists/cidr/num cannot be written in Sigma.
                (_, None) => {}
            }
        }
        for ((log, field), a) in acc {
            let Some(li) = logs.get_mut(log as usize) else { continue };
            let ci = str_idx(a.ci, true)?;
            let cs = str_idx(a.cs, false)?;
            let re = if a.re.is_empty() {
                None
            } else {
                let set = RegexSet::new(a.re.iter().map(|(r, _)| r.as_str())).map_err(|e| e.to_string())?;
                Some((set, a.re.iter().map(|(_, p)| *p).collect()))
            };
            match field {
                Some(f) => {
                    let fi = li.fields.entry(f).or_default();
                    fi.ci = ci;
                    fi.cs = cs;
                    fi.re = re;
                }
                None => {
                    // Keywords: case-insensitive literals; regexes from
                    // wildcard keywords join the case-insensitive set.
                    li.keywords = ci;
                    if let Some((set, ps)) = re {
                        li.fields.entry("\0keywords").or_default().re = Some((set, ps));
                    }
                }
            }
        }
        Ok(Engine { preds: self.preds, pred_programs, programs: self.programs, logs })
    }
}

fn str_idx(pats: HashMap<String, Vec<(StrKind, u32)>>, ci: bool) -> Result<Option<StrIdx>, String> {
    if pats.is_empty() {
        return Ok(None);
    }
    let (keys, uses): (Vec<String>, Vec<Vec<(StrKind, u32)>>) = pats.into_iter().unzip();
    let ac = AhoCorasickBuilder::new()
        .ascii_case_insensitive(ci)
        .match_kind(MatchKind::Standard)
        .build(&keys)
        .map_err(|e| e.to_string())?;
    Ok(Some(StrIdx { ac, pats: uses }))
}

fn simplify(e: CExpr) -> CExpr {
    match e {
        CExpr::And(v) => {
            let mut out = Vec::new();
            for x in v.into_vec() {
                match x {
                    CExpr::Const(true) => {}
                    CExpr::Const(false) => return CExpr::Const(false),
                    x => out.push(x),
                }
            }
            match out.len() {
                0 => CExpr::Const(true),
                1 => out.pop().unwrap_or(CExpr::Const(true)),
                _ => CExpr::And(out.into()),
            }
        }
        CExpr::Or(v) => {
            let mut out = Vec::new();
            for x in v.into_vec() {
                match x {
                    CExpr::Const(false) => {}
                    CExpr::Const(true) => return CExpr::Const(true),
                    x => out.push(x),
                }
            }
            match out.len() {
                0 => CExpr::Const(false),
                1 => out.pop().unwrap_or(CExpr::Const(false)),
                _ => CExpr::Or(out.into()),
            }
        }
        CExpr::Not(x) => match *x {
            CExpr::Const(b) => CExpr::Const(!b),
            x => CExpr::Not(Box::new(x)),
        },
        e => e,
    }
}

/// A rule that matched, with the tests that hit: (rule's field name, value).
#[derive(Clone, Debug, PartialEq)]
pub struct RuleHit {
    pub rule: u32,
    pub matched: Vec<(String, String)>,
}

/// Per-thread scratch for evaluating records; reused, so evaluation does
/// not allocate once warm.
#[derive(Default)]
pub struct Evaluator {
    hit: Vec<bool>,
    /// Index in `flat.fields` of the value that made each predicate true.
    hit_at: Vec<u32>,
    set: Vec<u32>,
    mark: Vec<u32>,
    gen: u32,
    cands: Vec<u32>,
    pub flat: FlatRecord,
    buf: String,
    seen: Vec<u32>,
}

impl Engine {
    pub fn programs(&self) -> &[Program] {
        &self.programs
    }

    pub fn pred(&self, p: u32) -> Option<&PredDef> {
        self.preds.get(p as usize)
    }

    /// Rules that match `ev`, appended to `out` (a program per rule and log,
    /// so a rule appears at most once per record).
    pub fn eval(&self, ev: &Event, s: &mut Evaluator, out: &mut Vec<RuleHit>) {
        // Filled even when no rule reads this log: the caller's other
        // checks (intelligence, subjects of alerts) use the same record.
        s.flat.fill(ev);
        self.eval_filled(ev.log_name(), s, out);
    }

    /// As [`Engine::eval`], for a stored record of `log` (hunting).
    pub fn eval_stored(
        &self,
        log: &str,
        rec: &serde_json::Map<String, serde_json::Value>,
        s: &mut Evaluator,
        out: &mut Vec<RuleHit>,
    ) {
        s.flat.fill_json(log, rec);
        self.eval_filled(log, s, out);
    }

    fn eval_filled(&self, log_name: &str, s: &mut Evaluator, out: &mut Vec<RuleHit>) {
        let Some(log) = log_index(log_name) else { return };
        let Some(li) = self.logs.get(log as usize) else { return };
        if li.fields.is_empty() && li.keywords.is_none() && li.always.is_empty() && li.residual.is_empty() {
            return;
        }
        if s.hit.len() != self.preds.len() {
            s.hit = vec![false; self.preds.len()];
            s.hit_at = vec![0; self.preds.len()];
            s.mark = vec![0; self.programs.len()];
        }
        self.scan(li, s);
        // Candidates: programs of hit predicates, and those true on no hit.
        s.gen = s.gen.wrapping_add(1);
        if s.gen == 0 {
            s.mark.iter_mut().for_each(|m| *m = 0);
            s.gen = 1;
        }
        s.cands.clear();
        for &p in &s.set {
            for &prog in self.pred_programs.get(p as usize).map(Vec::as_slice).unwrap_or(&[]) {
                if let Some(m) = s.mark.get_mut(prog as usize) {
                    if *m != s.gen {
                        *m = s.gen;
                        s.cands.push(prog);
                    }
                }
            }
        }
        for &prog in &li.always {
            if let Some(m) = s.mark.get_mut(prog as usize) {
                if *m != s.gen {
                    *m = s.gen;
                    s.cands.push(prog);
                }
            }
        }
        s.cands.sort_unstable();
        for &prog in &s.cands {
            let Some(pr) = self.programs.get(prog as usize) else { continue };
            let hit = &s.hit;
            if pr.expr.eval(&|p| hit.get(p as usize).copied().unwrap_or(false)) {
                let mut ps = Vec::new();
                pr.expr.preds(&mut ps);
                ps.dedup();
                let mut matched = Vec::new();
                for p in ps {
                    if !s.hit.get(p as usize).copied().unwrap_or(false) {
                        continue;
                    }
                    let Some(pd) = self.preds.get(p as usize) else { continue };
                    let at = s.hit_at.get(p as usize).copied().unwrap_or(0) as usize;
                    let val = match s.flat.fields.get(at) {
                        Some((_, v)) => {
                            let mut b = String::new();
                            s.flat.text_of(*v, &mut b).to_string()
                        }
                        None => String::new(),
                    };
                    let name = pd.sigma_field.clone().unwrap_or_else(|| "keyword".into());
                    if !matched.iter().any(|(n, v)| *n == name && *v == val) {
                        matched.push((name, val));
                    }
                }
                out.push(RuleHit { rule: pr.rule, matched });
            }
        }
        for &p in &s.set {
            if let Some(h) = s.hit.get_mut(p as usize) {
                *h = false;
            }
        }
        s.set.clear();
    }

    fn scan(&self, li: &LogIdx, s: &mut Evaluator) {
        let Evaluator { hit, hit_at, set, flat, buf, seen, .. } = s;
        let mut mark = |p: u32, at: usize| {
            if let Some(h) = hit.get_mut(p as usize) {
                if !*h {
                    *h = true;
                    if let Some(a) = hit_at.get_mut(p as usize) {
                        *a = at as u32;
                    }
                    set.push(p);
                }
            }
        };
        for (at, &(name, v)) in flat.fields.iter().enumerate() {
            if let Some(fi) = li.fields.get(name) {
                for &p in &fi.exists {
                    mark(p, at);
                }
                let need_text = fi.ci.is_some() || fi.cs.is_some() || fi.re.is_some() || !fi.empty.is_empty();
                if need_text {
                    let text = flat.text_of(v, buf);
                    if text.is_empty() {
                        for &(kind, p) in &fi.empty {
                            if kind == StrKind::Eq || text.is_empty() {
                                mark(p, at);
                            }
                        }
                    } else {
                        for &(kind, p) in &fi.empty {
                            if kind != StrKind::Eq {
                                mark(p, at);
                            }
                        }
                    }
                    for idx in [&fi.ci, &fi.cs].into_iter().flatten() {
                        str_scan(idx, text, &mut |p| mark(p, at));
                    }
                    if let Some((set_re, ps)) = &fi.re {
                        for i in set_re.matches(text).iter() {
                            if let Some(&p) = ps.get(i) {
                                mark(p, at);
                            }
                        }
                    }
                }
                if !fi.cidr.is_empty() {
                    if let Some(ip) = flat.str(v).and_then(|t| t.parse::<IpAddr>().ok()) {
                        for (c, p) in &fi.cidr {
                            if c.contains(&ip) {
                                mark(*p, at);
                            }
                        }
                    }
                }
                if !fi.num.is_empty() {
                    if let Some(x) = flat.num_of(v) {
                        for &(op, n, p) in &fi.num {
                            let ok = match op {
                                NumOp::Gt => x > n,
                                NumOp::Gte => x >= n,
                                NumOp::Lt => x < n,
                                NumOp::Lte => x <= n,
                            };
                            if ok {
                                mark(p, at);
                            }
                        }
                    }
                }
            }
            if let (Some(kw), Value::Str(..)) = (&li.keywords, v) {
                let text = flat.text_of(v, buf);
                str_scan(kw, text, &mut |p| mark(p, at));
            }
            if let (Some(fi), Value::Str(..)) = (li.fields.get("\0keywords"), v) {
                if let Some((set_re, ps)) = &fi.re {
                    let text = flat.text_of(v, buf);
                    for i in set_re.matches(text).iter() {
                        if let Some(&p) = ps.get(i) {
                            mark(p, at);
                        }
                    }
                }
            }
        }
        for &p in &li.residual {
            let Some(PredDef { field: Some(f), m: Match::FieldRef { other, kind, cased }, .. }) =
                self.preds.get(p as usize)
            else {
                continue;
            };
            seen.clear();
            let found = flat.fields.iter().enumerate().find_map(|(at, (n, v))| {
                if n != f {
                    return None;
                }
                let mut b1 = String::new();
                let a = flat.text_of(*v, &mut b1).to_string();
                let any = flat.fields.iter().filter(|(n2, _)| *n2 == other.as_str()).any(|(_, v2)| {
                    let mut b2 = String::new();
                    let b = flat.text_of(*v2, &mut b2);
                    let (a, b) = if *cased { (a.clone(), b.to_string()) } else { (a.to_lowercase(), b.to_lowercase()) };
                    match kind {
                        StrKind::Eq => a == b,
                        StrKind::Contains => a.contains(&b),
                        StrKind::Starts => a.starts_with(&b),
                        StrKind::Ends => a.ends_with(&b),
                    }
                });
                any.then_some(at)
            });
            if let Some(at) = found {
                mark(p, at);
            }
        }
    }
}

fn str_scan(idx: &StrIdx, text: &str, mark: &mut dyn FnMut(u32)) {
    let len = text.len();
    for m in idx.ac.find_overlapping_iter(text) {
        let Some(uses) = idx.pats.get(m.pattern().as_usize()) else { continue };
        for &(kind, p) in uses {
            let ok = match kind {
                StrKind::Contains => true,
                StrKind::Starts => m.start() == 0,
                StrKind::Ends => m.end() == len,
                StrKind::Eq => m.start() == 0 && m.end() == len,
            };
            if ok {
                mark(p);
            }
        }
    }
}
