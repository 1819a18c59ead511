use crate::i18n::{Lang, Tr};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A message for the reader in their language: a key of the string tables
/// and the one value it names (`{}` in the string).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    pub key: &'static str,
    pub arg: String,
}

impl Msg {
    pub fn new(key: &'static str) -> Msg {
        Msg { key, arg: String::new() }
    }

    pub fn with(key: &'static str, arg: impl Into<String>) -> Msg {
        Msg { key, arg: arg.into() }
    }

    pub fn text(&self, t: Tr) -> String {
        t.t(self.key).replace("{}", &self.arg)
    }
}

impl std::fmt::Display for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text(Tr { lang: Lang::En }))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{0}")]
    Invalid(String),
    /// A request refused for a reason the reader can read in their language.
    #[error("{0}")]
    Bad(Msg),
    #[error("not found")]
    NotFound,
    /// Not there, with the reason (no packets kept for that flow).
    #[error("{0}")]
    Missing(String),
    #[error("this role may not do that")]
    Forbidden,
    /// Forbidden, and why.
    #[error("{0}")]
    Refused(Msg),
    /// The server is read-only (its audit trail is broken), with the reason.
    #[error("{0}")]
    Unavailable(String),
    #[error("the form is stale or forged: reload the page and try again")]
    Csrf,
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Internal(String),
}

impl From<siem::api::ApiError> for ConsoleError {
    fn from(e: siem::api::ApiError) -> Self {
        use siem::api::ApiError as A;
        match e {
            A::BadRequest(m) => ConsoleError::Invalid(m),
            A::BadQuery(q) => ConsoleError::Invalid(q.to_string()),
            A::NotFound => ConsoleError::NotFound,
            A::Missing(m) => ConsoleError::Missing(m),
            A::Forbidden | A::Unauthorized => ConsoleError::Forbidden,
            A::ReadOnly(b) => ConsoleError::Unavailable(siem::api::read_only_message(&b)),
            other => ConsoleError::Internal(format!("{other:?}")),
        }
    }
}

/// An error on its way out: the layer that knows the reader's language
/// (`error_pages` in the crate root) turns it into a page in that language.
#[derive(Clone, Debug)]
pub struct ErrorNote {
    /// Set when the message has a translation.
    pub msg: Option<Msg>,
    /// The message as it stands (English, or a value from the SIEM).
    pub text: String,
}

impl ConsoleError {
    fn msg(&self) -> Option<Msg> {
        match self {
            ConsoleError::Bad(m) | ConsoleError::Refused(m) => Some(m.clone()),
            ConsoleError::NotFound => Some(Msg::new("error.not_found")),
            ConsoleError::Forbidden => Some(Msg::new("error.forbidden")),
            ConsoleError::Csrf => Some(Msg::new("error.csrf")),
            ConsoleError::Io(_) | ConsoleError::Internal(_) => Some(Msg::new("error.internal")),
            ConsoleError::Invalid(_) | ConsoleError::Missing(_) | ConsoleError::Unavailable(_) => None,
        }
    }
}

impl IntoResponse for ConsoleError {
    /// Plain text, never the internals: those go to the log.
    fn into_response(self) -> Response {
        let (status, text) = match &self {
            ConsoleError::Invalid(m) => (StatusCode::BAD_REQUEST, m.clone()),
            ConsoleError::Bad(m) => (StatusCode::BAD_REQUEST, m.to_string()),
            ConsoleError::NotFound => (StatusCode::NOT_FOUND, self.to_string()),
            ConsoleError::Missing(m) => (StatusCode::NOT_FOUND, m.clone()),
            ConsoleError::Forbidden | ConsoleError::Csrf => (StatusCode::FORBIDDEN, self.to_string()),
            ConsoleError::Refused(m) => (StatusCode::FORBIDDEN, m.to_string()),
            ConsoleError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m.clone()),
            ConsoleError::Io(m) | ConsoleError::Internal(m) => {
                tracing::error!(error = %m, "console request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, Msg::new("error.internal").to_string())
            }
        };
        let note = ErrorNote { msg: self.msg(), text: text.clone() };
        let mut r = (status, [("content-type", "text/plain; charset=utf-8")], text).into_response();
        r.extensions_mut().insert(note);
        r
    }
}
