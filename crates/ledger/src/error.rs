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

/// Every problem type the API answers with, as the slug of its URI
/// (`urn:aiaudit:problem:<slug>`): clients may switch on them, so they only
/// ever grow. docs/troubleshooting.md has a section for each (tests check
/// both ways, and that no code makes an error with a slug missing here).
pub const PROBLEM_TYPES: &[&str] = &[
    "bad-range",
    "body-too-large",
    "content-erased",
    "encryption-off",
    "event-too-large",
    "export-too-large",
    "forbidden",
    "integrity-error",
    "internal",
    "invalid-alertmanager-payload",
    "invalid-body",
    "invalid-emitter",
    "invalid-erasure",
    "invalid-events",
    "invalid-hash-request",
    "invalid-hold",
    "invalid-incident",
    "invalid-otlp",
    "invalid-parameter",
    "invalid-token-request",
    "invalid-transition",
    "not-found",
    "range-not-satisfiable",
    "rate-limited",
    "timeout",
    "too-many-events",
    "too-many-records",
    "too-much-in-flight",
    "unauthorized",
    "unavailable",
    "unreadable-body",
    "unsupported",
    "unsupported-content-encoding",
    "unsupported-media-type",
];

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
        debug_assert!(
            PROBLEM_TYPES.contains(&slug),
            "problem type {slug:?} is not in PROBLEM_TYPES (and docs/troubleshooting.md)"
        );
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
        let e = Error::bad_field("invalid-body", "Invalid body", "name", "too long");
        assert_eq!(e.errors[0].pointer, "/name");
        assert_eq!(e.detail, "name: too long");
        assert_eq!(e.type_uri(), "urn:aiaudit:problem:invalid-body");
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

    /// Every Rust source file of the workspace's crates, with its text.
    fn rust_sources() -> Vec<(std::path::PathBuf, String)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .canonicalize()
            .unwrap();
        let mut files = Vec::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    files.push((path, text));
                }
            }
        }
        files
    }

    /// The slugs passed as string literals where errors are made: after a
    /// `Kind::X,` (`Error::new`), a `StatusCode::X,` (`Problem::new`) or an
    /// opening `bad_field(`, in every crate's sources.
    fn slugs_in_sources(sources: &[(std::path::PathBuf, String)]) -> Vec<(String, String)> {
        let mut found = Vec::new();
        for (path, text) in sources {
            for (at, _) in text.match_indices('"') {
                let before = text[..at].trim_end();
                let made_here = before.ends_with("bad_field(")
                    || (before.ends_with(',')
                        && ["Kind::", "StatusCode::"].iter().any(|p| {
                            before[..before.len() - 1]
                                .rsplit(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                                .next()
                                .is_some_and(|w| w.starts_with(p))
                        }));
                if !made_here {
                    continue;
                }
                let rest = &text[at + 1..];
                let slug = &rest[..rest.find('"').unwrap()];
                // `(StatusCode::OK, "text/plain")` is a response, not an error.
                if slug.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
                    found.push((slug.to_string(), path.display().to_string()));
                }
            }
        }
        found
    }

    #[test]
    fn every_slug_made_in_the_code_is_a_registered_problem_type() {
        let sources = rust_sources();
        let found = slugs_in_sources(&sources);
        assert!(found.len() > 50, "the scan found only {found:?}");
        for (slug, file) in &found {
            assert!(
                PROBLEM_TYPES.contains(&slug.as_str()),
                "{file} makes an error of type {slug:?}, which PROBLEM_TYPES and docs/troubleshooting.md lack"
            );
        }
        // And the registry holds nothing the code no longer answers with
        // (the registry itself, which names every slug, left out).
        let mut all = String::new();
        for (_, text) in &sources {
            match text.split_once("pub const PROBLEM_TYPES") {
                Some((before, after)) => {
                    all.push_str(before);
                    all.push_str(&after[after.find("];").unwrap()..]);
                }
                None => all.push_str(text),
            }
        }
        for slug in PROBLEM_TYPES {
            assert!(
                all.contains(&format!("\"{slug}\"")),
                "PROBLEM_TYPES lists {slug:?}, which no code makes any more"
            );
        }
    }

    #[test]
    fn troubleshooting_has_a_section_for_each_problem_type_and_no_other() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/troubleshooting.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let documented: std::collections::BTreeSet<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("### urn:aiaudit:problem:"))
            .map(str::trim)
            .collect();
        let registered: std::collections::BTreeSet<&str> = PROBLEM_TYPES.iter().copied().collect();
        let missing: Vec<_> = registered.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&registered).collect();
        assert!(
            missing.is_empty() && stale.is_empty(),
            "docs/troubleshooting.md: no section for {missing:?}; sections for unknown types {stale:?}"
        );
        assert_eq!(
            registered.len(),
            PROBLEM_TYPES.len(),
            "PROBLEM_TYPES lists a slug twice"
        );
    }
}
