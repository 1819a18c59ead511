use std::fmt;
use std::path::PathBuf;

/// Why a rule did not load. Codes are stable so that tools and tests can
/// rely on them; messages name what to fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// The file is not valid YAML (or not valid YARA).
    Syntax,
    /// A required key is missing or has the wrong shape.
    Structure,
    UnknownModifier,
    Condition,
    Regex,
    Cidr,
    /// Valid Sigma that this engine does not evaluate (listed in the book, docs/src/detection/sigma.md).
    Unsupported,
    UnknownPlaceholder,
    /// A correlation or filter names a rule that is not loaded.
    UnknownRule,
    Io,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "E100",
            Code::Structure => "E101",
            Code::UnknownModifier => "E102",
            Code::Condition => "E103",
            Code::Regex => "E104",
            Code::Cidr => "E105",
            Code::Unsupported => "E106",
            Code::UnknownPlaceholder => "E107",
            Code::UnknownRule => "E108",
            Code::Io => "E109",
        }
    }
}

/// A rule that failed to load: where, and why. Every other rule keeps running.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RuleError {
    pub code: Code,
    pub file: PathBuf,
    /// 1-based; 0 when the position is not known.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}: {}", self.file.display(), self.line, self.column, self.code.as_str(), self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("field mapping {path}: {message}")]
    Mapping { path: String, message: String },
}
