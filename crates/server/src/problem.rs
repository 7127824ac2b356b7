//! RFC 9457 problem details: the one place the engine's [`Error`] becomes
//! an HTTP answer (status, `application/problem+json`, `Retry-After`,
//! `WWW-Authenticate`).

use aiaudit_ledger::{Error, Kind};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub use aiaudit_ledger::FieldError;

/// An error on its way out as a problem document.
#[derive(Debug, Clone)]
pub struct Problem(pub Error);

impl std::ops::Deref for Problem {
    type Target = Error;
    fn deref(&self) -> &Error {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut Error {
        &mut self.0
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        Problem(e)
    }
}

impl From<anyhow::Error> for Problem {
    fn from(e: anyhow::Error) -> Self {
        Problem(Error::from(e))
    }
}

/// The HTTP status of each kind of engine error.
pub fn status_of(kind: Kind) -> StatusCode {
    match kind {
        Kind::Invalid => StatusCode::BAD_REQUEST,
        Kind::Unauthorized => StatusCode::UNAUTHORIZED,
        Kind::Forbidden => StatusCode::FORBIDDEN,
        Kind::NotFound => StatusCode::NOT_FOUND,
        Kind::Gone => StatusCode::GONE,
        Kind::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
        Kind::Conflict => StatusCode::CONFLICT,
        Kind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Kind::UnsupportedMedia => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Kind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn kind_of(status: StatusCode) -> Kind {
    match status.as_u16() {
        401 => Kind::Unauthorized,
        403 => Kind::Forbidden,
        404 => Kind::NotFound,
        409 => Kind::Conflict,
        410 => Kind::Gone,
        416 => Kind::RangeNotSatisfiable,
        413 => Kind::TooLarge,
        415 => Kind::UnsupportedMedia,
        429 => Kind::RateLimited,
        503 => Kind::Unavailable,
        s if (400..500).contains(&s) => Kind::Invalid,
        _ => Kind::Internal,
    }
}

impl Problem {
    /// A problem of the HTTP layer itself (media types, bodies, routes).
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Problem(Error::new(kind_of(status), slug, title, detail))
    }
    pub fn bad_parameter(name: &str, detail: impl Into<String>) -> Self {
        Problem(Error::bad_parameter(name, detail))
    }
    pub fn bad_field(slug: &str, title: &str, name: &str, detail: &str) -> Self {
        Problem(Error::bad_field(slug, title, name, detail))
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem(Error::not_found(detail))
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Problem(Error::unavailable(detail))
    }
    pub fn internal(detail: impl Into<String>) -> Self {
        Problem(Error::internal(detail))
    }
    /// The HTTP status this problem is answered with.
    pub fn status(&self) -> u16 {
        status_of(self.0.kind).as_u16()
    }
}

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameter: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [FieldError],
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let e = &self.0;
        let status = status_of(e.kind);
        let body = serde_json::to_vec(&Document {
            kind: e.type_uri(),
            title: &e.title,
            status: status.as_u16(),
            detail: &e.detail,
            parameter: e.parameter.as_deref(),
            errors: &e.errors,
        })
        .unwrap_or_default();
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if e.kind == Kind::Unauthorized {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = e.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp.extensions_mut().insert(ProblemSlug(e.slug.clone()));
        resp
    }
}

/// The problem a response carries, for middleware (the refused-request
/// burst detector tells a token's own rate limit from shedding).
#[derive(Clone, Debug)]
pub struct ProblemSlug(pub String);
