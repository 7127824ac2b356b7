//! OpenTelemetry logs over HTTP: `POST /v1/logs` (OTLP/HTTP, protobuf or
//! JSON, optionally gzip'd) on the ledger and on the agent. Decoding and
//! the mapping to events are `aiaudit-otlp`'s; the valid records take the
//! same front door as `POST /v1/events` (`Ledger::append`), and records
//! that cannot become events are reported through OTLP's `partial_success`.

use crate::agent::Agent;
use crate::extract::read_body;
use crate::problem::Problem;
use aiaudit_ledger::Ledger;
pub use aiaudit_otlp::*;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::Arc;

fn unsupported(detail: String) -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "Unsupported media type",
        detail,
    )
}

/// The one mapping of OTLP decoding errors to problems.
fn problem(e: aiaudit_otlp::Error) -> Problem {
    let detail = e.to_string();
    match e {
        aiaudit_otlp::Error::Undecodable(_) => Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-otlp",
            "Undecodable OTLP request",
            detail,
        ),
        aiaudit_otlp::Error::Gzip(_) => Problem::new(
            StatusCode::BAD_REQUEST,
            "unreadable-body",
            "Unreadable body",
            detail,
        ),
        aiaudit_otlp::Error::TooLarge(_) | aiaudit_otlp::Error::TooManyValues => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            detail,
        ),
        aiaudit_otlp::Error::TooManyRecords(_) => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-many-records",
            "Too many log records",
            detail,
        ),
    }
}

/// The request's encoding from its Content-Type, or 415.
pub fn request_encoding(headers: &HeaderMap) -> Result<Encoding, Problem> {
    let essence = crate::extract::media_type(headers);
    match essence.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(unsupported(format!(
            "Content-Type {essence:?}: OTLP/HTTP takes application/x-protobuf or application/json"
        ))),
    }
}

fn now_unix_nano() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// How much one OTLP request may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes, compressed and decompressed.
    pub body_bytes: usize,
    /// Log records.
    pub records: usize,
}

/// Content type, coding, size limit and decoding: everything before
/// mapping. On the ledger, `admitted` reserves room for the request in the
/// budget for work in flight before its body is read.
async fn receive(
    headers: &HeaderMap,
    body: Body,
    limits: Limits,
    admitted: Option<(&Ledger, &aiaudit_ledger::Principal)>,
) -> Result<
    (
        Encoding,
        ExportLogsServiceRequest,
        Option<aiaudit_ledger::admission::Permit>,
    ),
    Problem,
> {
    let encoding = request_encoding(headers)?;
    let coding = crate::coding::Coding::of(headers)?;
    let (permit, raw) = match admitted {
        Some((ledger, principal)) => {
            let (permit, raw) = crate::extract::admit_and_read(
                ledger,
                principal,
                headers,
                body,
                coding.is_compressed(),
            )
            .await?;
            (Some(permit), raw)
        }
        None => (None, read_body(body, limits.body_bytes).await?),
    };
    let decoded = coding.decode(raw, limits.body_bytes)?;
    let mut request = decode_bounded(encoding, &decoded, limits.records).map_err(problem)?;
    stamp_receive_time(&mut request, now_unix_nano());
    Ok((encoding, request, permit))
}

/// The OTLP answer, in the request's encoding: `partial_success` only when
/// records were rejected.
pub fn export_response(encoding: Encoding, sorted: &Sorted) -> Response {
    if sorted.rejected > 0 {
        tracing::info!(
            rejected = sorted.rejected,
            total = sorted.total,
            first = sorted.first_error.as_deref().unwrap_or(""),
            "OTLP log records rejected"
        );
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, encoding.content_type())],
        response_body(encoding, sorted),
    )
        .into_response()
}

/// `POST /v1/logs` on the ledger: the valid records are appended through the
/// sequencer like `POST /v1/events`, and the answer comes once they are durable.
pub async fn ledger_logs(
    State(ledger): State<Arc<Ledger>>,
    cert: Option<axum::Extension<crate::tls::ClientCert>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let limits = Limits {
        body_bytes: ledger.config().max_body_bytes,
        records: ledger.config().max_batch_events,
    };
    let received = async {
        let principal =
            crate::extract::require_appender(&ledger, &headers, cert.as_ref().map(|c| &c.0))?;
        let (encoding, request, permit) =
            receive(&headers, body, limits, Some((&ledger, &principal))).await?;
        Ok::<_, Problem>((principal, encoding, request, permit))
    }
    .await;
    // The permit is held until the answer is built: it bounds what is in flight.
    let (principal, encoding, mut request, _permit) =
        received.inspect_err(|p| ledger.count_refused(p))?;
    if let Some(tenant) = token_tenant(&principal) {
        default_tenant(&mut request, &tenant);
    }
    let mut sorted = sort_records(&request, true);
    drop(request);
    let events: Vec<Value> = sorted
        .valid
        .iter_mut()
        .filter_map(|(ev, _)| ev.take())
        .collect();
    if !events.is_empty() {
        // The same front door as POST /v1/events: scope, rate limit,
        // reserved names, signature rules, provenance, metrics, policies.
        let batch = aiaudit_ledger::Batch {
            events,
            signature: None,
        };
        ledger.append(&principal, batch).await?;
    }
    Ok(export_response(encoding, &sorted))
}

/// A token of exactly one tenant supplies that tenant to records that name none.
fn token_tenant(principal: &aiaudit_ledger::Principal) -> Option<String> {
    match principal.tenants.as_slice() {
        [t] if t != "*" => Some(t.clone()),
        _ => None,
    }
}

/// `POST /v1/logs` on the agent: the valid records are written to the spool
/// (durably) before the answer, then forwarded like `POST /v1/events`.
pub(crate) async fn agent_logs(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    agent.authenticate(&headers)?;
    let limits = Limits {
        body_bytes: agent.max_body_bytes,
        records: agent.max_batch_events,
    };
    let (encoding, request, _) = receive(&headers, body, limits, None).await?;
    let mut sorted = sort_records(&request, true);
    drop(request);
    let events: Vec<Value> = sorted
        .valid
        .iter_mut()
        .filter_map(|(ev, _)| ev.take())
        .collect();
    // The ledger would refuse these; the spool must not hold what never lands.
    aiaudit_ledger::append::check_reserved(&events)?;
    if !events.is_empty() {
        let a = agent.clone();
        match tokio::task::spawn_blocking(move || a.emitter.emit_durable(events)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(crate::agent::spool_refusal(e)),
            Err(e) => return Err(Problem::internal(e.to_string())),
        }
    }
    Ok(export_response(encoding, &sorted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_and_codings() {
        let mut h = HeaderMap::new();
        assert_eq!(request_encoding(&h).unwrap_err().status(), 415);
        h.insert(
            header::CONTENT_TYPE,
            "application/x-protobuf".parse().unwrap(),
        );
        assert_eq!(request_encoding(&h).unwrap(), Encoding::Protobuf);
        h.insert(
            header::CONTENT_TYPE,
            "Application/JSON; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(request_encoding(&h).unwrap(), Encoding::Json);
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert_eq!(request_encoding(&h).unwrap_err().status(), 415);
    }

    #[test]
    fn answers_carry_the_request_encoding() {
        let sorted = Sorted {
            valid: Vec::new(),
            total: 2,
            rejected: 1,
            first_error: Some("x".into()),
        };
        let resp = export_response(Encoding::Protobuf, &sorted);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "application/x-protobuf"
        );
        let resp = export_response(Encoding::Json, &sorted);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(problem(aiaudit_otlp::Error::TooManyValues).status(), 413);
        assert_eq!(problem(aiaudit_otlp::Error::Gzip("x".into())).status(), 400);
    }
}
