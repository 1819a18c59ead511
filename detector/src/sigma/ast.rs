//! The boolean tree a Sigma detection becomes: what the document parser
//! and the condition parser build and the engine compiles.

use crate::error::Code;

/// A failure inside one document; the loader adds the file and line.
#[derive(Debug)]
pub struct DocError {
    pub code: Code,
    pub message: String,
    /// Text to look for in the document to place the error (a key, a value).
    pub near: Option<String>,
}

pub fn err(code: Code, message: impl Into<String>, near: Option<&str>) -> DocError {
    DocError { code, message: message.into(), near: near.map(str::to_string) }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StrKind {
    Eq,
    Starts,
    Ends,
    Contains,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NumOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Match {
    Str {
        kind: StrKind,
        pat: String,
        cased: bool,
    },
    /// A regular expression, flags already inlined.
    Re(String),
    Cidr(cidr::IpCidr),
    Num(NumOp, f64),
    /// `|exists: true` (false is a `Not` around it); `null` is "does not exist".
    Exists,
    /// `|fieldref`: equal to (or contains...) the value of another field.
    FieldRef {
        other: String,
        kind: StrKind,
        cased: bool,
    },
}

impl Match {
    /// A key under which identical tests are shared between rules.
    pub fn key(&self) -> String {
        format!("{self:?}")
    }
}

/// One test; `field: None` is a keyword (searched in every string field).
#[derive(Clone, Debug, PartialEq)]
pub struct Leaf {
    pub field: Option<String>,
    pub m: Match,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Leaf(Leaf),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Const(bool),
}
