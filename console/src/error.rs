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

/// A refusal from the SIEM with its stable code and values: shown in the
/// reader's language when the string tables have the code (`api.<code>`),
/// as the SIEM wrote it otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiMsg {
    pub status: StatusCode,
    pub code: &'static str,
    pub args: Vec<(&'static str, String)>,
    /// The SIEM's English text.
    pub text: String,
}

impl ApiMsg {
    pub fn text(&self, t: Tr) -> String {
        if t.lang == Lang::En {
            return self.text.clone();
        }
        let Some(template) = t.get(&format!("api.{}", self.code)) else { return self.text.clone() };
        let args = self
            .args
            .iter()
            .map(|(k, v)| {
                // A field's type is a word of the SIEM's: translated too.
                let v = if *k == "kind" { t.get(&format!("api.kind.{v}")).unwrap_or(v).to_string() } else { v.clone() };
                (k.to_string(), v)
            })
            .collect();
        schema::summary::fill(template, &args).unwrap_or_else(|| self.text.clone())
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
    /// Refused by the SIEM, with its code.
    #[error("{}", .0.text)]
    Api(ApiMsg),
}

impl From<siem::api::ApiError> for ConsoleError {
    fn from(e: siem::api::ApiError) -> Self {
        use siem::api::ApiError as A;
        let coded = |status, c: siem::api::Coded| {
            ConsoleError::Api(ApiMsg { status, code: c.code, args: c.args, text: c.message })
        };
        match e {
            A::BadRequest(m) => ConsoleError::Invalid(m),
            A::BadQuery(q) => {
                let text = q.to_string();
                let mut args = q.args;
                args.push(("position", q.position.to_string()));
                ConsoleError::Api(ApiMsg { status: StatusCode::BAD_REQUEST, code: q.code, args, text })
            }
            A::Invalid(c) => coded(StatusCode::BAD_REQUEST, c),
            A::Absent(c) => coded(StatusCode::NOT_FOUND, c),
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
    /// Set for the SIEM's coded refusals.
    pub api: Option<ApiMsg>,
}

impl ConsoleError {
    fn msg(&self) -> Option<Msg> {
        match self {
            ConsoleError::Bad(m) | ConsoleError::Refused(m) => Some(m.clone()),
            ConsoleError::NotFound => Some(Msg::new("error.not_found")),
            ConsoleError::Forbidden => Some(Msg::new("error.forbidden")),
            ConsoleError::Csrf => Some(Msg::new("error.csrf")),
            ConsoleError::Io(_) | ConsoleError::Internal(_) => Some(Msg::new("error.internal")),
            ConsoleError::Invalid(_)
            | ConsoleError::Missing(_)
            | ConsoleError::Unavailable(_)
            | ConsoleError::Api(_) => None,
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
            ConsoleError::Api(m) => (m.status, m.text.clone()),
            ConsoleError::Io(m) | ConsoleError::Internal(m) => {
                tracing::error!(error = %m, "console request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, Msg::new("error.internal").to_string())
            }
        };
        let api = match &self {
            ConsoleError::Api(m) => Some(m.clone()),
            _ => None,
        };
        let note = ErrorNote { msg: self.msg(), text: text.clone(), api };
        let mut r = (status, [("content-type", "text/plain; charset=utf-8")], text).into_response();
        r.extensions_mut().insert(note);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes_in(text: &str, out: &mut std::collections::BTreeSet<String>) {
        for call in ["Coded::new(", "invalid(", "absent(", "QueryError::new(", ".err("] {
            for part in text.split(call).skip(1) {
                // The call's first literal is its code: one before the call
                // ends or a block opens.
                let Some((before, rest)) = part.split_once('"') else { continue };
                let lit = rest.split('"').next().unwrap_or("");
                if !before.contains([';', '{', ')']) && lit.contains('.') && !lit.contains(' ') {
                    out.insert(lit.to_string());
                }
            }
        }
    }

    /// Every code the SIEM sends has a string in both tables, with the
    /// same placeholders.
    #[test]
    fn every_siem_code_has_both_strings() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../siem/src/");
        let mut codes = std::collections::BTreeSet::new();
        for f in ["api.rs", "query.rs"] {
            codes_in(&std::fs::read_to_string(format!("{root}{f}")).unwrap(), &mut codes);
        }
        assert!(codes.len() > 35 && codes.contains("incident.merge_by_name"), "{codes:?}");
        let (en, vi) = (Tr { lang: Lang::En }, Tr { lang: Lang::Vi });
        for c in &codes {
            let key = format!("api.{c}");
            let (e, v) = (en.get(&key), vi.get(&key));
            assert!(e.is_some() && v.is_some(), "no strings for {c}");
            let (e, v) = (e.unwrap_or(""), v.unwrap_or(""));
            assert_eq!(schema::summary::placeholders(e), schema::summary::placeholders(v), "placeholders of {c}");
        }
    }

    fn query_error(q: &str) -> ApiMsg {
        let e = siem::query::parse(q, &siem::schema::Catalog::new()).unwrap_err();
        match ConsoleError::from(siem::api::ApiError::BadQuery(e)) {
            ConsoleError::Api(m) => m,
            other => panic!("{other:?}"),
        }
    }

    /// The English strings say what the SIEM says; the Vietnamese ones
    /// name the same place and values.
    #[test]
    fn query_errors_in_the_readers_language() {
        let (en, vi) = (Tr { lang: Lang::En }, Tr { lang: Lang::Vi });
        for q in ["(uid:C1", "id.resp_p:http", "nosuch:1", "uid:C1 )", "\"open", "id.orig_h:10.0.0.0/99"] {
            let m = query_error(q);
            let args = m.args.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
            let english = schema::summary::fill(en.get(&format!("api.{}", m.code)).unwrap(), &args).unwrap();
            if m.code != "query.bad_network" {
                assert_eq!(english, m.text, "{q}");
            }
            assert_eq!(m.text(en), m.text);
            assert_ne!(m.text(vi), m.text, "{q}");
        }
        assert_eq!(query_error("(uid:C1").text(vi), "tại vị trí 7: thiếu ')' ở cuối");
        assert_eq!(query_error("id.resp_p:http").text(vi), "tại vị trí 10: 'http' không phải là số đếm hợp lệ");
        assert_eq!(query_error("uid:C1 )").text(vi), "tại vị trí 7: có văn bản thừa gần ')'");
        let unknown = ApiMsg { code: "no.such", ..query_error("nosuch:1") };
        assert_eq!(unknown.text(vi), unknown.text, "a code without a string reads as the SIEM wrote it");
    }
}
