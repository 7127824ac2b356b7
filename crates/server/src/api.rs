//! Routes: ingest (`POST /v1/events`), the C2SP read API (`/checkpoint`,
//! `/tile/...`), proofs, events by index, info and health.

use crate::extract::{caller, media_type, parse_events, read_json_body, require, require_appender};
use crate::problem::Problem;
use aiaudit_ledger::append::{EMITTER_HEADER, SIGNATURE_FORMAT_HEADER, SIGNATURE_HEADER};
use aiaudit_ledger::{Ledger, Role};
use aiaudit_tlog::Hash;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::map_response;
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
        .route(
            "/v1/events",
            post(ingest)
                .layer(map_response(crate::coding::advertise))
                .get(crate::search::search)
                .options(crate::coding::options),
        )
        .route("/v1/events/{index}", get(event_by_index))
        .route("/v1/events/{index}/blobs/{n}", get(event_blob))
        .route("/v1/events/{index}/tlog-proof", get(event_tlog_proof))
        .route("/v1/events/{index}/access", get(event_access))
        .route("/v1/export", get(crate::search::export))
        .route(
            "/v1/logs",
            post(crate::otlp::ledger_logs).layer(map_response(crate::coding::advertise)),
        )
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
        .route("/v1/blobs/{id}", get(crate::keys_api::stored_blob))
        .route("/v1/erase", post(crate::keys_api::erase))
        .route("/v1/erase/preview", post(crate::keys_api::erase_preview))
        .route("/v1/hash", post(crate::keys_api::hash))
        .route("/v1/stats", get(crate::stats::stats))
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
        .route(
            "/v1/incidents",
            get(crate::incidents::list).post(crate::incidents::open),
        )
        .route(
            "/v1/incidents/alertmanager",
            post(crate::incidents::alertmanager),
        )
        .route(
            "/v1/incidents/{id}",
            get(crate::incidents::get_one).post(crate::incidents::update),
        )
        .route("/v1/incidents/{id}/breach", post(crate::incidents::breach))
        .route(
            "/v1/incidents/{id}/notified",
            post(crate::incidents::notified),
        )
        .route("/v1/incidents/{id}/notes", post(crate::incidents::note))
        .route("/v1/incidents/{id}/review", get(crate::incidents::review))
        .route("/v1/incidents/{id}/pack", get(crate::incidents::pack))
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

/// One event's acknowledgement. Members in sorted order, as the answer
/// always had them (it was built as a `serde_json::Value` before).
#[derive(Serialize)]
struct Acknowledged {
    duplicate: bool,
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    inclusion_proof: Option<Vec<String>>,
    index: u64,
    leaf_hash: String,
}

/// The answer to an ingest, serialized straight from these fields: an
/// intermediate `serde_json::Value` cost 1.5 – 2 % of the server's CPU.
#[derive(Serialize)]
struct Acknowledgements<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint_size: Option<u64>,
    events: &'a [Acknowledged],
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
    // `acks=summary`: counts instead of an entry per event, for emitters on
    // metered links (the per-event answer is about 100 bytes an event,
    // as much as the compressed event itself).
    let summary = match params.get("acks").map(String::as_str) {
        None | Some("") | Some("full") => false,
        Some("summary") if wait => {
            return Err(Problem::bad_parameter(
                "acks",
                "\"summary\" leaves out the inclusion proofs that wait=checkpoint returns",
            ))
        }
        Some("summary") => true,
        Some(other) => {
            return Err(Problem::bad_parameter(
                "acks",
                format!("{other:?} is not one of \"full\", \"summary\""),
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
        let coding = crate::coding::Coding::of(&headers)?;
        let (permit, bytes) = crate::extract::admit_and_read(
            &ledger,
            &principal,
            &headers,
            body,
            coding.is_compressed(),
        )
        .await?;
        let bytes = coding.decode(bytes, ledger.config().max_body_bytes)?;
        let events = parse_events(&bytes, ndjson, ledger.config().max_batch_events)?;
        Ok::<_, Problem>((principal, signature, permit, events))
    }
    .await;
    // The permit is held until the answer is built: it bounds what is in flight.
    let (principal, signature, _permit, events) =
        received.inspect_err(|p| ledger.count_refused(p))?;
    let accepted = ledger
        .append(&principal, aiaudit_ledger::Batch { events, signature })
        .await?;
    if summary {
        let duplicates = accepted.appended.iter().filter(|a| a.duplicate).count();
        return Ok(Json(json!({
            "acknowledged": accepted.appended.len(),
            "duplicates": duplicates,
        }))
        .into_response());
    }
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
        return Ok(Json(Acknowledgements {
            checkpoint: None,
            checkpoint_size: None,
            events: &acks,
        })
        .into_response());
    }
    let published = ledger.await_checkpoint(size).await?;
    let cp_size = published.checkpoint.size;
    let indexes: Vec<u64> = accepted.appended.iter().map(|a| a.index).collect();
    let proofs = ledger.prove_records(cp_size, indexes).await?;
    for (ack, proof) in acks.iter_mut().zip(proofs) {
        ack.inclusion_proof = Some(proof.iter().map(b64).collect());
    }
    Ok(Json(Acknowledgements {
        checkpoint: Some(&published.note),
        checkpoint_size: Some(cp_size),
        events: &acks,
    })
    .into_response())
}

/// The emitter and signature headers of a signed batch, if any.
pub fn batch_signature(headers: &HeaderMap) -> ApiResult<Option<aiaudit_ledger::BatchSignature>> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let format = get(SIGNATURE_FORMAT_HEADER);
    match (get(EMITTER_HEADER), get(SIGNATURE_HEADER)) {
        (None, None) if format.is_some() => Err(Problem::bad_parameter(
            SIGNATURE_FORMAT_HEADER,
            format!("only with {EMITTER_HEADER} and {SIGNATURE_HEADER}"),
        )),
        (None, None) => Ok(None),
        (Some(emitter), Some(sig)) => {
            let sig = B64
                .decode(sig)
                .map_err(|_| Problem::bad_parameter(SIGNATURE_HEADER, "is not base64"))?;
            // Emitters written before v2 send no format header: v1.
            let format = match format {
                None => aiaudit_ledger::SignatureFormat::V1,
                Some(name) => aiaudit_ledger::SignatureFormat::parse(name).ok_or_else(|| {
                    Problem::bad_parameter(
                        SIGNATURE_FORMAT_HEADER,
                        "must be aiaudit-batch-v2 (RFC 8785) or aiaudit-batch-v1",
                    )
                })?,
            };
            Ok(Some(aiaudit_ledger::BatchSignature {
                emitter: emitter.to_string(),
                format,
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

async fn checkpoint(State(ledger): State<Arc<Ledger>>, headers: HeaderMap) -> ApiResult<Response> {
    ledger.public_read(caller(&ledger, &headers)?.as_ref())?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        ledger.checkpoint_note(),
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
    let mut status = ledger.status(who.as_ref());
    // The request codings the ingest routes decode (also in their answers'
    // Accept-Encoding).
    status["content_encodings"] = json!(crate::coding::ACCEPTED_LIST);
    Ok(Json(status))
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
    let blobs = match params.get("blobs").map(String::as_str) {
        None | Some("include") => aiaudit_ledger::sealing::BlobMode::Fill,
        Some("omit") => aiaudit_ledger::sealing::BlobMode::Omit,
        Some(other) => {
            return Err(Problem::bad_parameter(
                "blobs",
                format!("{other:?}: say include (the default) or omit"),
            ))
        }
    };
    Ok(Json(
        ledger.entry_with(&who, index, with_proof, blobs).await?.0,
    ))
}

/// `GET /v1/events/{index}/tlog-proof`: a C2SP tlog-proof of one event
/// (`text/x.tlog-proof`), verifiable offline with a tlog-policy.
async fn event_tlog_proof(
    State(ledger): State<Arc<Ledger>>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = require(&ledger, &headers)?;
    let index: u64 = raw
        .parse()
        .map_err(|_| Problem::bad_parameter("index", format!("{raw:?} is not a log index")))?;
    let proof = ledger.tlog_proof(&who, index).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        proof,
    )
        .into_response())
}

/// `GET /v1/events/{index}/access`: who read the event (the ledger's
/// `trail.access` records that list it), newest first.
async fn event_access(
    State(ledger): State<Arc<Ledger>>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let who = require(&ledger, &headers)?;
    let index: u64 = raw
        .parse()
        .map_err(|_| Problem::bad_parameter("index", format!("{raw:?} is not a log index")))?;
    Ok(Json(ledger.accesses_of(&who, index).await?))
}

/// `GET /v1/events/{index}/blobs/{n}`: the canonical JSON of an event's
/// out-of-line member `n`, whole (checked against its commitment) or the
/// one byte range a `Range: bytes=a-b` header asks for (206).
async fn event_blob(
    State(ledger): State<Arc<Ledger>>,
    Path((raw_index, raw_n)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = require(&ledger, &headers)?;
    let index: u64 = raw_index.parse().map_err(|_| {
        Problem::bad_parameter("index", format!("{raw_index:?} is not a log index"))
    })?;
    let n: usize = raw_n
        .parse()
        .map_err(|_| Problem::bad_parameter("n", format!("{raw_n:?} is not a blob number")))?;
    let range = match headers.get(header::RANGE) {
        None => None,
        Some(v) => Some(parse_range(v.to_str().unwrap_or(""))?),
    };
    let blob = ledger.blob(&who, index, n, range).await?;
    let mut resp = blob.bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some((first, last)) = blob.range {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        let value = format!("bytes {first}-{last}/{}", blob.total);
        resp.headers_mut().insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&value).expect("ASCII"),
        );
    }
    Ok(resp)
}

/// One `bytes=first-[last]` range (suffix and multiple ranges are refused).
pub(crate) fn parse_range(v: &str) -> Result<(u64, Option<u64>), Problem> {
    let bad = || {
        Problem::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "bad-range",
            "Bad range",
            format!("Range {v:?}: give one range, bytes=FIRST-[LAST]"),
        )
    };
    let spec = v.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    let (first, last) = spec.split_once('-').ok_or_else(bad)?;
    let first: u64 = first.trim().parse().map_err(|_| bad())?;
    let last = match last.trim() {
        "" => None,
        l => Some(l.parse::<u64>().map_err(|_| bad())?),
    };
    Ok((first, last))
}

/// Liveness: 503 once the ledger cannot append again without a restart
/// (its log writer stopped), so an orchestrator restarts it.
async fn healthz(State(ledger): State<Arc<Ledger>>) -> Response {
    if ledger.alive() {
        return Json(json!({"status": "ok"})).into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({
            "status": "failed",
            "detail": "the log's writer has stopped; restart the ledger",
        })),
    )
        .into_response()
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
    let authorization = req.headers().get(header::AUTHORIZATION).cloned();
    let mut resp = next.run(req).await;
    ledger.count_bytes(received, resp.body().size_hint().exact());
    note_refused(&ledger, authorization.as_ref(), &resp);
    resp.headers_mut().insert(
        "aiaudit-erasure-epoch",
        HeaderValue::from(ledger.erasure_epoch()),
    );
    resp
}

/// Counts a refused request (401, 403, or 429 of the token's own rate
/// limit, not load shedding) against its credential, for the burst
/// detector: the token's id, `unknown` for any credential that matched
/// none, `anonymous` without one (never the secret).
fn note_refused(ledger: &Ledger, authorization: Option<&HeaderValue>, resp: &Response) {
    let status = resp.status().as_u16();
    let counted = match status {
        401 | 403 => true,
        429 => resp
            .extensions()
            .get::<crate::problem::ProblemSlug>()
            .is_some_and(|s| s.0 == "rate-limited"),
        _ => false,
    };
    if !counted {
        return;
    }
    let credential = match authorization {
        None => "anonymous".to_string(),
        Some(v) => match ledger.principal(Some(v.as_bytes())) {
            Ok(Some(p)) => format!("token:{}", p.token_id),
            // One counter for every credential that matches no token: a
            // guesser changes the token each time, and the counters stay
            // as few as the tokens that exist.
            _ => "unknown".to_string(),
        },
    };
    ledger.note_refused(&credential, status);
}

/// Routes whose work grows with the keyring (a pass over every data
/// subject's key: minutes at ten million subjects). They are for an admin
/// of all tenants only, and the work goes on in the ledger whatever the
/// connection does, so the deadline does not cut them: the admin's client
/// waits for the answer.
const LONG_ROUTES: [&str; 2] = ["/v1/keys/rotate", "/v1/keys/rotate-master"];

/// Ends any request that takes longer than `limit` with a 503 problem
/// (a slow or stalled client must not hold a connection for ever), the
/// [`LONG_ROUTES`] aside.
pub async fn deadline(
    limit: std::time::Duration,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if req.method() == axum::http::Method::POST && LONG_ROUTES.contains(&req.uri().path()) {
        return next.run(req).await;
    }
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

#[cfg(test)]
mod deadline_tests;

#[cfg(test)]
mod acknowledgement_tests {
    use super::*;

    /// The answer keeps the bytes it had when it was built as a JSON value
    /// (members sorted), with and without proofs and checkpoint.
    #[test]
    fn acknowledgements_serialize_as_the_sorted_json_they_always_were() {
        let ack = |proof: Option<Vec<String>>| Acknowledged {
            duplicate: true,
            id: "e-\"1\"".into(),
            inclusion_proof: proof,
            index: 7,
            leaf_hash: "bGVhZg==".into(),
        };
        let plain = [ack(None), ack(None)];
        let got = serde_json::to_string(&Acknowledgements {
            checkpoint: None,
            checkpoint_size: None,
            events: &plain,
        })
        .unwrap();
        let want = json!({ "events": plain }).to_string();
        assert_eq!(got, want);
        let proved = [ack(Some(vec!["cA==".into()]))];
        let got = serde_json::to_string(&Acknowledgements {
            checkpoint: Some("log\n3\nroot\n"),
            checkpoint_size: Some(3),
            events: &proved,
        })
        .unwrap();
        let want = json!({
            "events": proved,
            "checkpoint": "log\n3\nroot\n",
            "checkpoint_size": 3,
        })
        .to_string();
        assert_eq!(got, want);
    }
}
