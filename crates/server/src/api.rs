//! Routes: ingest (`POST /v1/events`), the C2SP read API (`/checkpoint`,
//! `/tile/...`), proofs, events by index, info and health.

use crate::problem::{FieldError, Problem};
use aiaudit_ledger::append::{EMITTER_HEADER, SIGNATURE_HEADER};
use aiaudit_ledger::{Ledger, Principal, Role};
use aiaudit_tlog::Hash;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

type ApiResult<T> = Result<T, Problem>;
type Params = Query<HashMap<String, String>>;

pub fn router(ledger: Arc<Ledger>) -> Router {
    Router::new()
        .route("/v1/events", post(ingest).get(crate::search::search))
        .route("/v1/events/{index}", get(event_by_index))
        .route("/v1/export", get(crate::search::export))
        .route("/v1/logs", post(crate::otlp::ledger_logs))
        .route("/checkpoint", get(checkpoint))
        .route("/tile/{*path}", get(tile))
        .route("/v1/info", get(info))
        .route("/v1/schema/event", get(event_schema))
        .route("/v1/proof/inclusion", get(inclusion_proof))
        .route("/v1/proof/consistency", get(consistency_proof))
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/emitters", get(list_emitters).post(register_emitter))
        .route("/v1/tokens/{id}", delete(revoke_token))
        .route("/v1/keys", get(crate::keys_api::info))
        .route("/v1/keys/rotate", post(crate::keys_api::rotate))
        .route(
            "/v1/keys/rotate-master",
            post(crate::keys_api::rotate_master),
        )
        .route("/v1/keys/keyring", get(crate::keys_api::keyring_file))
        .route("/v1/erase", post(crate::keys_api::erase))
        .route("/v1/hash", post(crate::keys_api::hash))
        .route("/v1/violations", get(crate::policies::list))
        .route(
            "/v1/violations/{id}",
            get(crate::policies::get_one).post(crate::policies::transition),
        )
        .route(
            "/v1/holds",
            get(crate::retention::list).post(crate::retention::place),
        )
        .route("/v1/holds/{id}", delete(crate::retention::release))
        .route("/v1/reports/compliance", get(crate::reports::compliance))
        .route("/v1/openapi.json", get(crate::openapi::serve))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(crate::dashboard::routes())
        .fallback(|| async { Problem::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(
            ledger.clone(),
            count_bytes,
        ))
        // Request ids: taken from `x-request-id` or made up, logged with every
        // line of the request, and returned to the client. Only method, path,
        // status and timing are logged: never bodies, never headers.
        .layer(
            tower::ServiceBuilder::new()
                .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
                    tower_http::request_id::MakeRequestUuid,
                ))
                .layer(
                    tower_http::trace::TraceLayer::new_for_http().make_span_with(
                        |req: &axum::http::Request<Body>| {
                            let id = req
                                .headers()
                                .get("x-request-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-");
                            tracing::info_span!(
                                "request",
                                request_id = %id,
                                method = %req.method(),
                                path = %req.uri().path(),
                            )
                        },
                    ),
                )
                .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id()),
        )
        .layer(axum::middleware::from_fn({
            let limit = ledger.config().request_timeout;
            move |req, next| deadline(limit, req, next)
        }))
        .with_state(ledger)
}

fn b64(h: &Hash) -> String {
    B64.encode(h)
}

#[derive(Serialize)]
struct Acknowledged {
    id: String,
    index: u64,
    leaf_hash: String,
    duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    inclusion_proof: Option<Vec<String>>,
}

async fn ingest(
    State(ledger): State<Arc<Ledger>>,
    Query(params): Params,
    cert: Option<axum::Extension<crate::tls::ClientCert>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let wait = match params.get("wait").map(String::as_str) {
        None | Some("") | Some("none") => false,
        Some("checkpoint") => true,
        Some(other) => {
            return Err(Problem::bad_parameter(
                "wait",
                format!("{other:?} is not one of \"checkpoint\", \"none\""),
            ))
        }
    };
    let ndjson = match media_type(&headers).as_str() {
        "" | "application/json" => false,
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => true,
        other => {
            let p = Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                format!("Content-Type {other:?}: send application/json (an array of events) or application/x-ndjson"),
            );
            ledger.count_refused(&p);
            return Err(p);
        }
    };
    // Refusals before the batch reaches the front door (credentials, body)
    // are counted too, under the fixed tenant label: no tenant is trusted yet.
    let received = async {
        let principal = require_appender(&ledger, &headers, cert.as_ref().map(|c| &c.0))?;
        let signature = batch_signature(&headers)?;
        let bytes = read_body(body, ledger.config().max_body_bytes).await?;
        let events = parse_events(&bytes, ndjson, ledger.config().max_batch_events)?;
        Ok::<_, Problem>((principal, signature, events))
    }
    .await;
    let (principal, signature, events) = received.inspect_err(|p| ledger.count_refused(p))?;
    let accepted = ledger
        .append(&principal, aiaudit_ledger::Batch { events, signature })
        .await?;
    let size = accepted
        .appended
        .iter()
        .map(|a| a.index + 1)
        .max()
        .unwrap_or(0);
    let mut acks: Vec<Acknowledged> = accepted
        .ids
        .into_iter()
        .zip(&accepted.appended)
        .map(|(id, a)| Acknowledged {
            id,
            index: a.index,
            leaf_hash: b64(&a.leaf),
            duplicate: a.duplicate,
            inclusion_proof: None,
        })
        .collect();
    if !wait {
        return Ok(Json(json!({ "events": acks })).into_response());
    }
    let published = ledger.await_checkpoint(size).await?;
    let cp_size = published.checkpoint.size;
    let indexes: Vec<u64> = accepted.appended.iter().map(|a| a.index).collect();
    let proofs = ledger.prove_records(cp_size, indexes).await?;
    for (ack, proof) in acks.iter_mut().zip(proofs) {
        ack.inclusion_proof = Some(proof.iter().map(b64).collect());
    }
    Ok(Json(json!({
        "events": acks,
        "checkpoint": published.note,
        "checkpoint_size": cp_size,
    }))
    .into_response())
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
                Err(Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body-too-large",
                    "Request body too large",
                    format!("the body exceeds {limit} bytes; send smaller batches"),
                ))
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
        match crate::bounded::events(bytes, max_events) {
            Ok(events) => events,
            Err(crate::bounded::Refused::TooMany) => return Err(too_many()),
            Err(crate::bounded::Refused::TooLarge) => return Err(too_many_values()),
            Err(crate::bounded::Refused::NotAnArray) => {
                return Err(invalid_events(
                    "the body must be a JSON array of event objects",
                    vec![FieldError::event(None, "", "", "expected an array")],
                ))
            }
            Err(crate::bounded::Refused::Json(e)) => {
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

/// 413 for a JSON body of more values than [`crate::bounded::MAX_JSON_NODES`].
pub fn too_many_values() -> Problem {
    let mut p = Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "Request body too large",
        format!(
            "the body holds more than {} JSON values; send smaller batches",
            crate::bounded::MAX_JSON_NODES
        ),
    );
    p.errors = vec![FieldError::event(None, "", "", "too many JSON values")];
    p
}

/// The caller of a request, if it sent a credential (401 for a bad one).
pub(crate) fn caller(ledger: &Ledger, headers: &HeaderMap) -> ApiResult<Option<Principal>> {
    Ok(ledger.principal(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()))?)
}

/// The caller, who must send a credential (401 without one).
pub(crate) fn require(ledger: &Ledger, headers: &HeaderMap) -> ApiResult<Principal> {
    caller(ledger, headers)?.ok_or_else(|| {
        Problem(aiaudit_ledger::Error::unauthorized(
            "this route needs a bearer token",
        ))
    })
}

/// The caller of an append: a token, or a client certificate mapped to a
/// registered emitter (mutual TLS). Its role is checked by the front door.
pub(crate) fn require_appender(
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
pub(crate) fn media_type(headers: &HeaderMap) -> String {
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

/// The emitter and signature headers of a signed batch, if any.
pub(crate) fn batch_signature(
    headers: &HeaderMap,
) -> ApiResult<Option<aiaudit_ledger::BatchSignature>> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    match (get(EMITTER_HEADER), get(SIGNATURE_HEADER)) {
        (None, None) => Ok(None),
        (Some(emitter), Some(sig)) => {
            let sig = B64
                .decode(sig)
                .map_err(|_| Problem::bad_parameter(SIGNATURE_HEADER, "is not base64"))?;
            Ok(Some(aiaudit_ledger::BatchSignature {
                emitter: emitter.to_string(),
                signature: sig,
            }))
        }
        (Some(_), None) => Err(Problem::bad_parameter(
            SIGNATURE_HEADER,
            format!("required with {EMITTER_HEADER}"),
        )),
        (None, Some(_)) => Err(Problem::bad_parameter(
            EMITTER_HEADER,
            format!("required with {SIGNATURE_HEADER}"),
        )),
    }
}

/// The published JSON Schema of events (docs/schema/event.v1.json).
pub const EVENT_SCHEMA: &str = include_str!("../../../docs/schema/event.v1.json");

async fn event_schema() -> Response {
    (
        [(header::CONTENT_TYPE, "application/schema+json")],
        EVENT_SCHEMA,
    )
        .into_response()
}

/// A small JSON request body (admin requests), or a 400 saying why not.
pub(crate) async fn read_json_body(body: Body) -> ApiResult<Value> {
    let bytes = read_body(body, 64 << 10).await?;
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

async fn checkpoint(State(ledger): State<Arc<Ledger>>, headers: HeaderMap) -> ApiResult<Response> {
    ledger.public_read(caller(&ledger, &headers)?.as_ref())?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        ledger.latest().note.clone(),
    )
        .into_response())
}

async fn tile(
    State(ledger): State<Arc<Ledger>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = caller(&ledger, &headers)?;
    let tile = ledger.tile(&format!("tile/{path}"), who.as_ref()).await?;
    let cache = if tile.immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut resp = tile.bytes.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok(resp)
}

async fn info(State(ledger): State<Arc<Ledger>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let who = caller(&ledger, &headers)?;
    ledger.public_read(who.as_ref())?;
    Ok(Json(ledger.status(who.as_ref())))
}

fn param_u64(params: &HashMap<String, String>, name: &str) -> ApiResult<u64> {
    let raw = params
        .get(name)
        .ok_or_else(|| Problem::bad_parameter(name, "required"))?;
    raw.parse::<u64>()
        .map_err(|_| Problem::bad_parameter(name, format!("{raw:?} is not a non-negative integer")))
}

/// `size` defaults to the latest checkpoint and must not exceed it.
fn param_size(params: &HashMap<String, String>, ledger: &Ledger) -> ApiResult<u64> {
    let asked = match params.contains_key("size") {
        true => Some(param_u64(params, "size")?),
        false => None,
    };
    Ok(ledger.proof_size(asked)?)
}

async fn inclusion_proof(
    State(ledger): State<Arc<Ledger>>,
    Query(params): Params,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    ledger.public_read(caller(&ledger, &headers)?.as_ref())?;
    let index = param_u64(&params, "index")?;
    let size = param_size(&params, &ledger)?;
    let (proof, leaf) = ledger.prove_record(size, index).await?;
    Ok(Json(json!({
        "index": index,
        "size": size,
        "leaf_hash": b64(&leaf),
        "proof": proof.iter().map(b64).collect::<Vec<_>>(),
    })))
}

async fn consistency_proof(
    State(ledger): State<Arc<Ledger>>,
    Query(params): Params,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    ledger.public_read(caller(&ledger, &headers)?.as_ref())?;
    let old = param_u64(&params, "old")?;
    let size = param_size(&params, &ledger)?;
    let proof = ledger.prove_tree(size, old).await?;
    Ok(Json(json!({
        "old": old,
        "size": size,
        "proof": proof.iter().map(b64).collect::<Vec<_>>(),
    })))
}

async fn event_by_index(
    State(ledger): State<Arc<Ledger>>,
    Path(raw): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let who = require(&ledger, &headers)?;
    let index: u64 = raw
        .parse()
        .map_err(|_| Problem::bad_parameter("index", format!("{raw:?} is not a log index")))?;
    let with_proof = matches!(params.get("proof").map(String::as_str), Some("true" | "1"));
    Ok(Json(ledger.entry(&who, index, with_proof).await?.0))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(ledger): State<Arc<Ledger>>) -> Response {
    let r = ledger.readiness().await;
    let body = json!({
        "status": if r.ready { "ready" } else { "not ready" },
        "checks": r.checks,
    });
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn list_tokens(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let who = require(&ledger, &headers)?;
    let tokens: Vec<Value> = ledger
        .tokens(&who)?
        .into_iter()
        .map(|t| {
            json!({"id": t.id, "role": t.role, "tenants": t.tenants, "created_unix": t.created_unix,
                   "expires_unix": t.expires_unix, "revoked": t.revoked})
        })
        .collect();
    Ok(Json(json!({ "tokens": tokens })))
}

async fn create_token(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let who = require(&ledger, &headers)?;
    if !who.is_admin() {
        return Err(Problem(aiaudit_ledger::Error::forbidden(
            "token management needs an admin token",
        )));
    }
    let req = read_json_body(body).await?;
    let field = |name: &str, detail: &str| {
        Problem::bad_field(
            "invalid-token-request",
            "Invalid token request",
            name,
            detail,
        )
    };
    let role: Role = req["role"]
        .as_str()
        .ok_or_else(|| field("role", "required: emitter, auditor or admin"))?
        .parse()
        .map_err(|e: String| field("role", &e))?;
    let tenants: Vec<String> = match &req["tenants"] {
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|t| t.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| field("tenants", "must be strings"))?,
        _ => {
            return Err(field(
                "tenants",
                "required: a non-empty list of tenants (or [\"*\"])",
            ))
        }
    };
    let expires_unix = match req.get("expires").and_then(Value::as_str) {
        None => None,
        Some(d) => {
            let secs = aiaudit_ledger::auth::parse_duration_secs(d)
                .ok_or_else(|| field("expires", "expected a duration such as 30d, 12h or 45m"))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            Some(
                now.checked_add(secs)
                    .ok_or_else(|| field("expires", "is too far in the future"))?,
            )
        }
    };
    let (record, secret) = ledger.create_token(&who, role, tenants, expires_unix)?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"id": record.id, "token": secret, "role": record.role,
                    "tenants": record.tenants, "expires_unix": record.expires_unix}),
        ),
    )
        .into_response())
}

async fn revoke_token(
    State(ledger): State<Arc<Ledger>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let who = require(&ledger, &headers)?;
    ledger.revoke_token(&who, &id)?;
    Ok(Json(json!({"id": id, "revoked": true})))
}

async fn list_emitters(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let who = require(&ledger, &headers)?;
    Ok(Json(json!({ "emitters": ledger.emitters(&who)? })))
}

async fn register_emitter(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let who = require(&ledger, &headers)?;
    if !who.is_admin() {
        return Err(Problem(aiaudit_ledger::Error::forbidden(
            "registering emitters needs an admin token",
        )));
    }
    let req = read_json_body(body).await?;
    let field = |name: &str, detail: &str| {
        Problem::bad_field("invalid-emitter", "Invalid emitter", name, detail)
    };
    let name = req["name"]
        .as_str()
        .ok_or_else(|| field("name", "required"))?;
    let key = req["public_key"]
        .as_str()
        .ok_or_else(|| field("public_key", "required"))?;
    let tenants: Vec<String> = match req.get("tenants") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| t.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| field("tenants", "must be a list of strings"))?,
        Some(_) => return Err(field("tenants", "must be a list of strings")),
    };
    let record = ledger.register_emitter(&who, name, key, tenants)?;
    Ok((StatusCode::CREATED, Json(json!(record))).into_response())
}

/// Counts request and response body bytes (from their sizes where known),
/// and tells readers that keep decrypted answers when keys were destroyed.
async fn count_bytes(
    State(ledger): State<Arc<Ledger>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::body::HttpBody;
    let received = req.body().size_hint().exact().or_else(|| {
        req.headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    });
    let mut resp = next.run(req).await;
    ledger.count_bytes(received, resp.body().size_hint().exact());
    resp.headers_mut().insert(
        "aiaudit-erasure-epoch",
        HeaderValue::from(ledger.erasure_epoch()),
    );
    resp
}

/// Ends any request that takes longer than `limit` with a 503 problem
/// (a slow or stalled client must not hold a connection for ever).
pub async fn deadline(
    limit: std::time::Duration,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            let mut p = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "Request timed out",
                format!("the request took longer than {} s", limit.as_secs()),
            );
            p.retry_after = Some(1);
            p.into_response()
        }
    }
}

async fn metrics(State(ledger): State<Arc<Ledger>>, headers: HeaderMap) -> ApiResult<Response> {
    ledger.public_read(caller(&ledger, &headers)?.as_ref())?;
    let text = ledger.metrics_text().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
