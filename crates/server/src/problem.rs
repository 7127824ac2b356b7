//! RFC 9457 problem details: the one way errors leave the HTTP API.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One field-level error inside a problem (RFC 9457 section 3 `errors` extension style).
#[derive(Debug, Clone, Serialize)]
pub struct FieldError {
    /// JSON Pointer into the request body (`/3/ai/gen_ai.usage.input_tokens`).
    pub pointer: String,
    /// The same place for people: `events[3].ai.gen_ai.usage.input_tokens`.
    pub path: String,
    pub detail: String,
}

impl FieldError {
    /// An error about the `index`th event of a batch (or the body, for `None`).
    pub fn event(
        index: Option<usize>,
        pointer: &str,
        path: &str,
        detail: impl Into<String>,
    ) -> Self {
        let (pointer, path) = match index {
            Some(i) if path.is_empty() => (format!("/{i}{pointer}"), format!("events[{i}]")),
            Some(i) => (format!("/{i}{pointer}"), format!("events[{i}].{path}")),
            None => (pointer.to_string(), path.to_string()),
        };
        FieldError {
            pointer,
            path,
            detail: detail.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The query or path parameter at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// The body fields at fault.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(skip)]
    pub retry_after: Option<u64>,
    /// Adds `WWW-Authenticate: Bearer` (401 answers).
    #[serde(skip)]
    pub www_authenticate: bool,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("urn:aiaudit:problem:{slug}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            parameter: None,
            errors: Vec::new(),
            retry_after: None,
            www_authenticate: false,
        }
    }

    pub fn bad_parameter(name: &str, detail: impl Into<String>) -> Self {
        let mut p = Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-parameter",
            "Invalid parameter",
            format!("{name}: {}", detail.into()),
        );
        p.parameter = Some(name.to_string());
        p
    }

    /// 400 naming one field of a JSON request body.
    pub fn bad_field(slug: &str, title: &str, name: &str, detail: &str) -> Self {
        let mut p = Problem::new(
            StatusCode::BAD_REQUEST,
            slug,
            title,
            format!("{name}: {detail}"),
        );
        p.errors = vec![FieldError::event(None, &format!("/{name}"), name, detail)];
        p
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut p = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        );
        p.retry_after = Some(1);
        p
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            detail,
        )
    }

    /// Maps a storage error: transient ones are 503 (nothing was acknowledged).
    /// A proof that could not be computed: 503 when storage could not be
    /// read (it may pass), 500 otherwise.
    pub fn from_proof(what: &str, e: &aiaudit_tlog::Error) -> Self {
        if let aiaudit_tlog::Error::Read(inner) = e {
            if let Some(store) = inner.downcast_ref::<aiaudit_store::Error>() {
                if store.is_transient() {
                    return Problem::from_store(store);
                }
            }
        }
        Problem::internal(format!("{what}: {e}"))
    }

    pub fn from_store(e: &aiaudit_store::Error) -> Self {
        match e {
            aiaudit_store::Error::OutOfRange(d) => Problem::not_found(d.clone()),
            e if e.is_transient() => {
                tracing::error!(error = %e, "storage unavailable");
                Problem::unavailable(
                    "storage is unavailable; nothing was acknowledged; retry later",
                )
            }
            e => {
                tracing::error!(error = %e, "storage error");
                Problem::internal(e.to_string())
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.www_authenticate {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// A search index that cannot answer: a database out of reach is
/// transient (503, retry), anything else is the server's fault.
impl From<aiaudit_index::Error> for Problem {
    fn from(e: aiaudit_index::Error) -> Self {
        match e {
            aiaudit_index::Error::Postgres(_) => {
                tracing::error!(error = %e, "search index unavailable");
                Problem::unavailable("the search index is unavailable; retry shortly")
            }
            other => Problem::internal(other.to_string()),
        }
    }
}

/// A registry or other state that could not be saved or read: transient.
impl From<anyhow::Error> for Problem {
    fn from(e: anyhow::Error) -> Self {
        tracing::error!(error = %format!("{e:#}"), "state unavailable");
        Problem::unavailable(format!("{e:#}"))
    }
}
