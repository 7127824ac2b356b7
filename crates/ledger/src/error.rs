//! The engine's one error type. It says what went wrong in the ledger's
//! terms (a [`Kind`], a stable slug, a title, a detail, the fields or
//! parameter at fault); the HTTP layer maps it to an RFC 9457 problem in
//! exactly one place.

/// What kind of failure, which decides how a caller should react.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request is malformed or fails validation; do not retry it as is.
    Invalid,
    /// No valid credential.
    Unauthorized,
    /// The credential may not do this.
    Forbidden,
    NotFound,
    /// Existed, and is gone for good (content whose key was destroyed).
    Gone,
    /// A byte range outside what is there.
    RangeNotSatisfiable,
    /// Conflicts with the ledger's state or configuration.
    Conflict,
    /// Larger than allowed (body, batch, record count).
    TooLarge,
    /// A media type or coding the ledger does not take.
    UnsupportedMedia,
    /// Over the rate limit; retry after `retry_after` seconds.
    RateLimited,
    /// Transient: storage, the database or a dependency is unavailable;
    /// nothing was acknowledged; retry.
    Unavailable,
    /// A bug or damaged data.
    Internal,
}

/// One field-level error (a JSON Pointer into the request body).
#[derive(Debug, Clone, serde::Serialize)]
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

/// An error of the ledger.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{title}: {detail}")]
pub struct Error {
    pub kind: Kind,
    /// A stable identifier (`urn:aiaudit:problem:<slug>`).
    pub slug: String,
    pub title: String,
    pub detail: String,
    /// The query or path parameter at fault.
    pub parameter: Option<String>,
    /// The body fields at fault.
    pub errors: Vec<FieldError>,
    /// Seconds to wait before retrying (rate limits, unavailability).
    pub retry_after: Option<u64>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Most field errors listed in one error.
pub const MAX_ERRORS: usize = 1000;

impl Error {
    pub fn new(kind: Kind, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Error {
            kind,
            slug: slug.to_string(),
            title: title.to_string(),
            detail: detail.into(),
            parameter: None,
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// The problem type URI of this error.
    pub fn type_uri(&self) -> String {
        format!("urn:aiaudit:problem:{}", self.slug)
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn bad_parameter(name: &str, detail: impl Into<String>) -> Self {
        let mut e = Error::new(
            Kind::Invalid,
            "invalid-parameter",
            "Invalid parameter",
            format!("{name}: {}", detail.into()),
        );
        e.parameter = Some(name.to_string());
        e
    }

    /// Invalid, naming one field of a JSON request body.
    pub fn bad_field(slug: &str, title: &str, name: &str, detail: &str) -> Self {
        Error::new(Kind::Invalid, slug, title, format!("{name}: {detail}")).with_errors(vec![
            FieldError::event(None, &format!("/{name}"), name, detail),
        ])
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Error::new(Kind::NotFound, "not-found", "Not found", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Error::new(Kind::Unauthorized, "unauthorized", "Unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Error::new(Kind::Forbidden, "forbidden", "Forbidden", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut e = Error::new(
            Kind::Unavailable,
            "unavailable",
            "Service unavailable",
            detail,
        );
        e.retry_after = Some(1);
        e
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Error::new(Kind::Internal, "internal", "Internal error", detail)
    }

    /// A proof that could not be computed: unavailable when storage could
    /// not be read (it may pass), internal otherwise.
    pub fn from_proof(what: &str, e: &aiaudit_tlog::Error) -> Self {
        if let aiaudit_tlog::Error::Read(inner) = e {
            if let Some(store) = inner.downcast_ref::<aiaudit_store::Error>() {
                if store.is_transient() {
                    return Error::from_store(store);
                }
            }
        }
        Error::internal(format!("{what}: {e}"))
    }

    /// Maps a storage error: transient ones are unavailable (nothing was acknowledged).
    pub fn from_store(e: &aiaudit_store::Error) -> Self {
        match e {
            aiaudit_store::Error::OutOfRange(d) => Error::not_found(d.clone()),
            e if e.is_transient() => {
                tracing::error!(error = %e, "storage unavailable");
                Error::unavailable("storage is unavailable; nothing was acknowledged; retry later")
            }
            e => {
                tracing::error!(error = %e, "storage error");
                Error::internal(e.to_string())
            }
        }
    }
}

/// A search index that cannot answer: a database out of reach is
/// transient, anything else is the server's fault.
impl From<aiaudit_index::Error> for Error {
    fn from(e: aiaudit_index::Error) -> Self {
        match e {
            aiaudit_index::Error::Postgres(_) => {
                tracing::error!(error = %e, "search index unavailable");
                Error::unavailable("the search index is unavailable; retry shortly")
            }
            other => Error::internal(other.to_string()),
        }
    }
}

/// A registry or other state that could not be saved or read: transient.
impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        tracing::error!(error = %format!("{e:#}"), "state unavailable");
        Error::unavailable(format!("{e:#}"))
    }
}

/// A batch refused as invalid, listing its field errors.
pub fn invalid_events(detail: &str, errors: Vec<FieldError>) -> Error {
    let mut p = Error::new(
        Kind::Invalid,
        "invalid-events",
        "Invalid events",
        detail.to_string(),
    );
    p.errors = errors;
    p
}

/// Adds an event's validation errors to a batch's (at most 1000 in all).
pub(crate) fn add_event_errors(
    errors: &mut Vec<FieldError>,
    i: usize,
    errs: Vec<aiaudit_event::EventError>,
) {
    for e in errs {
        if errors.len() < MAX_ERRORS {
            errors.push(FieldError::event(Some(i), &e.pointer, &e.path, e.detail));
        }
    }
}

pub(crate) fn refuse_if_any(errors: Vec<FieldError>) -> Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    let first = format!("{}: {}", errors[0].path, errors[0].detail);
    Err(invalid_events(
        &format!(
            "{} error(s) in the batch, first {first}; nothing of the batch was logged",
            errors.len()
        ),
        errors,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_point_into_the_batch_or_the_body() {
        let e = FieldError::event(Some(3), "/ai/x", "ai.x", "bad");
        assert_eq!(
            (e.pointer.as_str(), e.path.as_str()),
            ("/3/ai/x", "events[3].ai.x")
        );
        // An error about a whole event names the event.
        let e = FieldError::event(Some(2), "", "", "empty");
        assert_eq!((e.pointer.as_str(), e.path.as_str()), ("/2", "events[2]"));
        let e = FieldError::event(None, "/tenants", "tenants", "missing");
        assert_eq!(
            (e.pointer.as_str(), e.path.as_str()),
            ("/tenants", "tenants")
        );
        let e = Error::bad_field("invalid-x", "Invalid x", "name", "too long");
        assert_eq!(e.errors[0].pointer, "/name");
        assert_eq!(e.detail, "name: too long");
        assert_eq!(e.type_uri(), "urn:aiaudit:problem:invalid-x");
        let e = Error::bad_parameter("limit", "too big");
        assert_eq!(
            (e.kind, e.parameter.as_deref()),
            (Kind::Invalid, Some("limit"))
        );
    }

    #[test]
    fn storage_errors_are_transient_missing_or_internal() {
        let io = aiaudit_store::Error::Io(std::io::Error::other("eio"));
        let e = Error::from_store(&io);
        assert_eq!((e.kind, e.retry_after), (Kind::Unavailable, Some(1)));
        let e = Error::from_store(&aiaudit_store::Error::OutOfRange("index 9".into()));
        assert_eq!((e.kind, e.detail.as_str()), (Kind::NotFound, "index 9"));
        let corrupt = aiaudit_store::Error::Corrupt {
            index: 4,
            detail: "bad crc".into(),
        };
        assert_eq!(Error::from_store(&corrupt).kind, Kind::Internal);

        // Proofs: a read that failed may pass; anything else is a fault.
        let read = aiaudit_tlog::Error::Read(Box::new(io));
        assert_eq!(Error::from_proof("proving", &read).kind, Kind::Unavailable);
        let other = aiaudit_tlog::Error::InvalidArgument("size".into());
        let e = Error::from_proof("proving", &other);
        assert_eq!(e.kind, Kind::Internal);
        assert!(e.detail.starts_with("proving: "), "{}", e.detail);
        let foreign = aiaudit_tlog::Error::Read(Box::new(std::io::Error::other("x")));
        assert_eq!(Error::from_proof("proving", &foreign).kind, Kind::Internal);
    }

    #[test]
    fn index_and_state_errors_map_to_retry_or_fault() {
        let pg: Error = aiaudit_index::Error::Postgres("down".into()).into();
        assert_eq!(pg.kind, Kind::Unavailable);
        let bad: Error = aiaudit_index::Error::Invalid("row".into()).into();
        assert_eq!(bad.kind, Kind::Internal);
        let state: Error = anyhow::anyhow!("saving tokens.json").into();
        assert_eq!(state.kind, Kind::Unavailable);
        assert!(state.detail.contains("tokens.json"));
    }

    #[test]
    fn a_batch_lists_at_most_a_thousand_errors_and_names_the_first() {
        let errs = |n: usize| {
            (0..n)
                .map(|k| aiaudit_event::EventError {
                    pointer: format!("/f{k}"),
                    path: format!("f{k}"),
                    detail: "bad".into(),
                })
                .collect::<Vec<_>>()
        };
        let mut all = Vec::new();
        add_event_errors(&mut all, 0, errs(600));
        add_event_errors(&mut all, 1, errs(600));
        assert_eq!(all.len(), 1000);
        assert_eq!(all[999].pointer, "/1/f399");
        let e = refuse_if_any(all).unwrap_err();
        assert_eq!((e.kind, e.slug.as_str()), (Kind::Invalid, "invalid-events"));
        assert!(e
            .detail
            .starts_with("1000 error(s) in the batch, first events[0].f0: bad"));
        assert!(refuse_if_any(Vec::new()).is_ok());
    }
}
