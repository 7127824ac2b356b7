//! What every handler takes from a request, in one place: the caller (from
//! its bearer token or client certificate), the media type, and bodies read
//! within their limits (JSON and NDJSON events counted while parsed).
//! Handlers depend on this module; it depends on no handler.

use crate::problem::{FieldError, Problem};
use aiaudit_ledger::{Ledger, Principal};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use serde_json::Value;

type ApiResult<T> = Result<T, Problem>;

/// The caller of a request, if it sent a credential (401 for a bad one).
pub fn caller(ledger: &Ledger, headers: &HeaderMap) -> ApiResult<Option<Principal>> {
    Ok(ledger.principal(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()))?)
}

/// The caller, who must send a credential (401 without one).
pub fn require(ledger: &Ledger, headers: &HeaderMap) -> ApiResult<Principal> {
    caller(ledger, headers)?.ok_or_else(|| {
        Problem(aiaudit_ledger::Error::unauthorized(
            "this route needs a bearer token",
        ))
    })
}

/// The caller of an append: a token, or a client certificate mapped to a
/// registered emitter (mutual TLS). Its role is checked by the front door.
pub fn require_appender(
    ledger: &Ledger,
    headers: &HeaderMap,
    cert: Option<&crate::tls::ClientCert>,
) -> ApiResult<Principal> {
    match (caller(ledger, headers)?, cert) {
        (Some(p), _) => Ok(p),
        (None, Some(cert)) => Ok(ledger.certificate_principal(&cert.names)?),
        (None, None) => require(ledger, headers),
    }
}

/// The media type of a request (`Content-Type` without parameters, lowercase);
/// empty when there is none.
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("?"))
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

pub async fn read_body(body: Body, limit: usize) -> ApiResult<Bytes> {
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(e) => {
            let too_big = std::error::Error::source(&e)
                .map(|s| s.is::<http_body_util::LengthLimitError>())
                .unwrap_or(false)
                || e.to_string().contains("length limit");
            if too_big {
                Err(too_large(limit))
            } else {
                Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "unreadable-body",
                    "Unreadable body",
                    e.to_string(),
                ))
            }
        }
    }
}

/// Admission, then the body, for an ingest request: room for the request
/// is reserved from the node's budget for work in flight before any of the
/// body is read (from its declared length; a body without one reserves as
/// it arrives). A request that does not fit is answered at once with 503
/// (429 beyond its credential's share) and `Retry-After`; its body is read
/// and thrown away first, unreparsed, so the client gets the answer rather
/// than a reset connection. Keep the permit until the answer is built.
pub async fn admit_and_read(
    ledger: &Ledger,
    principal: &Principal,
    headers: &HeaderMap,
    body: Body,
    compressed: bool,
) -> ApiResult<(aiaudit_ledger::admission::Permit, Bytes)> {
    let limit = ledger.config().max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut permit = match ledger.admit(principal, declared.unwrap_or(0), compressed) {
        Ok(p) => p,
        Err(e) => {
            discard(body, headers, limit);
            return Err(Problem(e));
        }
    };
    if declared.is_some() {
        // Hyper holds the body to its declared length.
        return Ok((permit, read_body(body, limit).await?));
    }
    use http_body_util::BodyExt;
    let mut body = body;
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "unreadable-body",
                "Unreadable body",
                e.to_string(),
            )
        })?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        if bytes.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        let more = aiaudit_ledger::admission::request_cost(chunk.len() as u64, compressed)
            - aiaudit_ledger::admission::REQUEST_OVERHEAD;
        if let Err(e) = permit.grow(more) {
            discard(body, headers, limit);
            return Err(Problem(e));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((permit, Bytes::from(bytes)))
}

/// Reads and drops a refused request's body in the background (at most
/// `limit` bytes, for at most 10 s) while the answer goes out: the client
/// is answered at once, and the connection is not closed on unread bytes
/// (which would reset it, and could lose the answer). A client that asked
/// `Expect: 100-continue` never sends it.
fn discard(body: Body, headers: &HeaderMap, limit: usize) {
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        return;
    }
    tokio::spawn(async move {
        use http_body_util::BodyExt;
        let mut body = body;
        let mut seen = 0usize;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(chunk) = frame.into_data() {
                    seen += chunk.len();
                    if seen > limit {
                        break;
                    }
                }
            }
        })
        .await;
    });
}

fn too_large(limit: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "Request body too large",
        format!("the body exceeds {limit} bytes; send smaller batches"),
    )
}

fn invalid_events(detail: &str, errors: Vec<FieldError>) -> Problem {
    Problem(aiaudit_ledger::append::invalid_events(detail, errors))
}

/// A JSON array of events (or one event object), or NDJSON: one event per
/// line; at most `max_events`, counted while parsing, so a body of many
/// tiny events is refused before it grows in memory.
pub fn parse_events(bytes: &[u8], ndjson: bool, max_events: usize) -> ApiResult<Vec<Value>> {
    let too_many = || {
        let mut p = Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-many-events",
            "Too many events",
            format!("a batch holds at most {max_events} events; send smaller batches"),
        );
        p.errors = vec![FieldError::event(
            None,
            "",
            "",
            format!("more than {max_events} events"),
        )];
        p
    };
    let events = if ndjson {
        let mut events = Vec::new();
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if events.len() >= max_events {
                return Err(too_many());
            }
            let v: Value = serde_json::from_slice(line).map_err(|e| {
                invalid_events(
                    &format!("line {} is not valid JSON", i + 1),
                    vec![FieldError::event(
                        Some(events.len()),
                        "",
                        "",
                        format!("line {}: {e}", i + 1),
                    )],
                )
            })?;
            events.push(v);
        }
        events
    } else {
        match aiaudit_event::bounded::events(bytes, max_events) {
            Ok(events) => events,
            Err(aiaudit_event::bounded::Refused::TooMany) => return Err(too_many()),
            Err(aiaudit_event::bounded::Refused::TooLarge) => return Err(too_many_values()),
            Err(aiaudit_event::bounded::Refused::NotAnArray) => {
                return Err(invalid_events(
                    "the body must be a JSON array of event objects",
                    vec![FieldError::event(None, "", "", "expected an array")],
                ))
            }
            Err(aiaudit_event::bounded::Refused::Json(e)) => {
                return Err(invalid_events(
                    &format!("the body is not valid JSON: {e}"),
                    vec![FieldError::event(None, "", "", e)],
                ))
            }
        }
    };
    if events.is_empty() {
        return Err(invalid_events(
            "the batch holds no events",
            vec![FieldError::event(None, "", "", "empty batch")],
        ));
    }
    Ok(events)
}

/// 413 for a JSON body of more values than [`aiaudit_event::bounded::MAX_JSON_NODES`].
pub fn too_many_values() -> Problem {
    let mut p = Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "Request body too large",
        format!(
            "the body holds more than {} JSON values; send smaller batches",
            aiaudit_event::bounded::MAX_JSON_NODES
        ),
    );
    p.errors = vec![FieldError::event(None, "", "", "too many JSON values")];
    p
}

/// A small JSON request body (admin requests), or a 400 saying why not.
pub async fn read_json_body(body: Body) -> ApiResult<Value> {
    read_json_body_up_to(body, 64 << 10).await
}

/// A JSON request body of at most `limit` bytes (413 beyond).
pub async fn read_json_body_up_to(body: Body, limit: usize) -> ApiResult<Value> {
    let bytes = read_body(body, limit).await?;
    serde_json::from_slice::<Value>(&bytes).map_err(|e| {
        let mut p = Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "Invalid body",
            format!("the body is not valid JSON: {e}"),
        );
        p.errors = vec![FieldError::event(None, "", "", e.to_string())];
        p
    })
}

/// The parameters shared by the lifecycle lists (violations, incidents):
/// only `allowed` names, a `tenant` the caller may read, `limit` (1 to
/// 1000, default 100) and a `cursor` (the log index of the last item of
/// the previous page, newest first).
pub struct ListParams<'a> {
    params: &'a std::collections::HashMap<String, String>,
    pub limit: usize,
    pub after: Option<u64>,
}

impl<'a> ListParams<'a> {
    pub fn parse(
        who: &Principal,
        params: &'a std::collections::HashMap<String, String>,
        allowed: &[&str],
    ) -> ApiResult<ListParams<'a>> {
        for name in params.keys() {
            if !allowed.contains(&name.as_str()) {
                return Err(Problem::bad_parameter(
                    name,
                    format!("unknown parameter; filters are {}", allowed.join(", ")),
                ));
            }
        }
        let list = ListParams {
            params,
            limit: 100,
            after: None,
        };
        if let Some(t) = list.get("tenant") {
            if !who.can_read(t) {
                return Err(Problem(aiaudit_ledger::Error::forbidden(format!(
                    "this token may not read tenant {t:?}"
                ))));
            }
        }
        let limit = match list.get("limit") {
            None => 100,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    Problem::bad_parameter("limit", format!("{v:?} is not between 1 and 1000"))
                })?,
        };
        let after = list
            .get("cursor")
            .map(|c| {
                c.parse::<u64>().map_err(|_| {
                    Problem::bad_parameter(
                        "cursor",
                        format!("{c:?} is not a cursor this route gave"),
                    )
                })
            })
            .transpose()?;
        Ok(ListParams {
            limit,
            after,
            ..list
        })
    }

    /// A parameter, when given and not empty.
    pub fn get(&self, name: &str) -> Option<&'a String> {
        self.params.get(name).filter(|v| !v.is_empty())
    }

    /// One page of `items` (newest first by `index`): the page, the total
    /// and the cursor of the next page, if any.
    pub fn page<'i, T>(
        &self,
        items: &'i [T],
        index: impl Fn(&T) -> u64,
    ) -> (Vec<&'i T>, usize, Option<String>) {
        let rest: Vec<&T> = items
            .iter()
            .filter(|i| self.after.is_none_or(|a| index(i) < a))
            .collect();
        let take = rest.len().min(self.limit);
        let next = (rest.len() > take)
            .then(|| rest[take - 1])
            .map(|i| index(i).to_string());
        let mut page = rest;
        page.truncate(take);
        (page, items.len(), next)
    }
}
