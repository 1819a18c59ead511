use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{0}")]
    Invalid(String),
    #[error("not found")]
    NotFound,
    /// Not there, with the reason (no packets kept for that flow).
    #[error("{0}")]
    Missing(String),
    #[error("this role may not do that")]
    Forbidden,
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

impl IntoResponse for ConsoleError {
    /// Plain text, never the internals: those go to the log.
    fn into_response(self) -> Response {
        let (status, text) = match &self {
            ConsoleError::Invalid(m) => (StatusCode::BAD_REQUEST, m.clone()),
            ConsoleError::NotFound => (StatusCode::NOT_FOUND, self.to_string()),
            ConsoleError::Missing(m) => (StatusCode::NOT_FOUND, m.clone()),
            ConsoleError::Forbidden => (StatusCode::FORBIDDEN, self.to_string()),
            ConsoleError::Csrf => (StatusCode::FORBIDDEN, self.to_string()),
            ConsoleError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m.clone()),
            ConsoleError::Io(m) | ConsoleError::Internal(m) => {
                tracing::error!(error = %m, "console request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error (logged on the server)".to_string())
            }
        };
        (status, [("content-type", "text/plain; charset=utf-8")], text).into_response()
    }
}
