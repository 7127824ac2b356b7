//! Routes: ingest (`POST /v1/events`), the C2SP read API (`/checkpoint`,
//! `/tile/...`), proofs, events by index, info and health.

use crate::append::{invalid_events, EMITTER_HEADER, SIGNATURE_HEADER};
use crate::auth::{self, forbidden, Principal, Role};
use crate::problem::{FieldError, Problem};
use crate::Ledger;
use aiaudit_store::Appended;
use aiaudit_tlog::{prove_record, prove_tree, Hash, Tile, TileKind, TILE_WIDTH};
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
            let limit = ledger.config.request_timeout;
            move |req, next| crate::limits::deadline(limit, req, next)
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
        let bytes = read_body(body, ledger.config.max_body_bytes).await?;
        let events = parse_events(&bytes, ndjson, ledger.config.max_batch_events)?;
        Ok::<_, Problem>((principal, signature, events))
    }
    .await;
    let (principal, signature, events) = received.inspect_err(|p| ledger.count_refused(p))?;
    let accepted = ledger
        .append(&principal, crate::append::Batch { events, signature })
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
    let published = wait_for_checkpoint(&ledger, size).await?;
    let cp_size = published.checkpoint.size;
    let store = ledger.store.clone();
    let indexes: Vec<u64> = accepted
        .appended
        .iter()
        .map(|a: &Appended| a.index)
        .collect();
    let proofs = tokio::task::spawn_blocking(move || {
        indexes
            .into_iter()
            .map(|i| prove_record(cp_size, i, &&*store))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| Problem::internal(e.to_string()))?
    .map_err(|e| Problem::from_proof("proving inclusion", &e))?;
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

/// The caller, who must hold an emitter or admin token.
pub(crate) fn require_appender(
    ledger: &Ledger,
    headers: &HeaderMap,
    cert: Option<&crate::tls::ClientCert>,
) -> ApiResult<Principal> {
    let principal = match (ledger.tokens.principal(headers)?, cert) {
        (Some(p), _) => p,
        // Mutual TLS: a client certificate mapped to a registered emitter.
        (None, Some(cert)) => {
            let e = ledger.emitters.by_certificate(&cert.names).ok_or_else(|| {
                auth::unauthorized(&format!(
                    "the client certificate ({}) is not mapped to a registered emitter with tenants; send a token or register the emitter with --tenant",
                    cert.names.join(", ")
                ))
            })?;
            Principal {
                token_id: format!("cert:{}", e.name),
                role: Role::Emitter,
                tenants: e.tenants,
            }
        }
        (None, None) => auth::require(None)?,
    };
    if !matches!(principal.role, Role::Emitter | Role::Admin) {
        return Err(forbidden("only emitter and admin tokens may append events"));
    }
    Ok(principal)
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
) -> ApiResult<Option<crate::append::BatchSignature>> {
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
            Ok(Some(crate::append::BatchSignature {
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

async fn wait_for_checkpoint(ledger: &Ledger, size: u64) -> ApiResult<Arc<crate::Published>> {
    let mut rx = ledger.latest.clone();
    ledger.publish_now.notify_one();
    let wait = async move {
        rx.wait_for(|p| p.checkpoint.size >= size)
            .await
            .map(|p| p.clone())
    };
    match tokio::time::timeout(ledger.config.checkpoint_wait, wait).await {
        Ok(Ok(p)) => Ok(p),
        _ => Err(Problem::unavailable(
            "the events are durably logged but no checkpoint covering them was published in time",
        )),
    }
}

/// Routes that reveal only hashes and the log's identity: open unless
/// `public_reads` is off, then any valid token.
fn public_read(ledger: &Ledger, headers: &HeaderMap) -> ApiResult<()> {
    let p = ledger.tokens.principal(headers)?;
    if !ledger.config.public_reads {
        auth::require(p)?;
    }
    Ok(())
}

async fn checkpoint(State(ledger): State<Arc<Ledger>>, headers: HeaderMap) -> ApiResult<Response> {
    public_read(&ledger, &headers)?;
    let note = ledger.latest.borrow().note.clone();
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        note,
    )
        .into_response())
}

async fn tile(
    State(ledger): State<Arc<Ledger>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let principal = ledger.tokens.principal(&headers)?;
    let full_path = format!("tile/{path}");
    let tile = Tile::parse_path(&full_path)
        .map_err(|e| Problem::not_found(format!("{full_path}: {e}")))?;
    let size = ledger.latest.borrow().checkpoint.size;
    // Checked: an absurd index must be a 404, not wrap around to tile 0.
    let beyond = || {
        Problem::not_found(format!(
            "{full_path} is beyond the latest checkpoint (size {size})"
        ))
    };
    let start = tile.index.checked_mul(TILE_WIDTH).ok_or_else(beyond)?;
    let end = start.checked_add(tile.width as u64).ok_or_else(beyond)?;
    let available = match tile.kind {
        TileKind::Entries => size,
        TileKind::Hash { level } => aiaudit_tlog::hashes_at_tile_level(size, level),
    };
    if end > available {
        return Err(beyond());
    }
    let entry_reader = match tile.kind {
        TileKind::Entries => {
            let p = auth::require(principal)?;
            if !matches!(p.role, Role::Auditor | Role::Admin) {
                return Err(forbidden("entry bundles are for auditor and admin tokens"));
            }
            Some(p)
        }
        TileKind::Hash { .. } => {
            if !ledger.config.public_reads {
                auth::require(principal)?;
            }
            None
        }
    };
    let store = ledger.store.clone();
    let bytes = tokio::task::spawn_blocking(move || match tile.kind {
        TileKind::Entries => store.read_entry_bundle(start, tile.width as u64),
        TileKind::Hash { level } => store.read_hashes(
            level as u32 * aiaudit_tlog::TILE_HEIGHT,
            start,
            tile.width as u64,
        ),
    })
    .await
    .map_err(|e| Problem::internal(e.to_string()))?
    .map_err(|e| Problem::from_store(&e))?;
    if let Some(p) = entry_reader.filter(|p| !p.can_read_all()) {
        // A bundle mixes tenants: serve it only if this token reads every one in it.
        let entries = aiaudit_tlog::decode_entry_bundle(&bytes)
            .map_err(|e| Problem::internal(format!("stored bundle: {e}")))?;
        for entry in entries {
            let tenant = aiaudit_event::envelope::decode_stored(entry)
                .map(|d| d.tenant().to_string())
                .unwrap_or_default();
            if !p.can_read(&tenant) {
                return Err(forbidden(
                    "this bundle holds events of tenants this token may not read; read your events with GET /v1/events/<index>?proof=true",
                ));
            }
        }
    }
    let cache = if tile.is_full() {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut resp = bytes.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok(resp)
}

async fn info(State(ledger): State<Arc<Ledger>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    public_read(&ledger, &headers)?;
    // Backup locations and their errors are the operator's: admins only.
    let operator = ledger
        .tokens
        .principal(&headers)?
        .is_some_and(|p| p.is_global_admin());
    let latest = ledger.latest.borrow().clone();
    let mut info = json!({
        "origin": ledger.signer.name(),
        "verifier_key": ledger.verifier.to_vkey(),
        "size": latest.checkpoint.size,
        "root": b64(&latest.checkpoint.root),
        "version": env!("CARGO_PKG_VERSION"),
        "sequenced_size": ledger.store.size(),
        "integrated_size": ledger.store.integrated_size(),
        "checkpoint_age_seconds": latest.at.elapsed().as_secs_f64(),
        "publish_interval_ms": ledger.config.publish_interval.as_millis() as u64,
        "encryption": ledger.config.encryption,
        "storage": {
            "backend": ledger.store.backend(),
            // On a shared log: whether this node integrates and publishes.
            "publisher": ledger.store.is_publisher(),
        },
        "index": {
            "indexed_size": ledger.indexed.load(std::sync::atomic::Ordering::Acquire),
            "lag_events": ledger.store.size().saturating_sub(ledger.indexed.load(std::sync::atomic::Ordering::Acquire)),
        },
    });
    if operator {
        info["backup"] = ledger.backup_status.to_json(&ledger.config.backup);
    }
    Ok(Json(info))
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
    let latest = ledger.latest.borrow().checkpoint.size;
    if !params.contains_key("size") {
        return Ok(latest);
    }
    let size = param_u64(params, "size")?;
    if size > latest {
        return Err(Problem::bad_parameter(
            "size",
            format!("{size} is beyond the latest checkpoint size {latest}"),
        ));
    }
    Ok(size)
}

async fn inclusion_proof(
    State(ledger): State<Arc<Ledger>>,
    Query(params): Params,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    public_read(&ledger, &headers)?;
    let index = param_u64(&params, "index")?;
    let size = param_size(&params, &ledger)?;
    if index >= size {
        return Err(Problem::bad_parameter(
            "index",
            format!("{index} is not below size {size}"),
        ));
    }
    let store = ledger.store.clone();
    let (proof, leaf) = tokio::task::spawn_blocking(move || {
        let proof = prove_record(size, index, &&*store)?;
        let leaf = store.read_node(0, index)?;
        Ok::<_, aiaudit_tlog::Error>((proof, leaf))
    })
    .await
    .map_err(|e| Problem::internal(e.to_string()))?
    .map_err(|e| Problem::from_proof("proving inclusion", &e))?;
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
    public_read(&ledger, &headers)?;
    let old = param_u64(&params, "old")?;
    let size = param_size(&params, &ledger)?;
    if old == 0 || old > size {
        return Err(Problem::bad_parameter(
            "old",
            format!("{old} must be between 1 and size {size}"),
        ));
    }
    let store = ledger.store.clone();
    let proof = tokio::task::spawn_blocking(move || prove_tree(size, old, &&*store))
        .await
        .map_err(|e| Problem::internal(e.to_string()))?
        .map_err(|e| Problem::from_proof("proving consistency", &e))?;
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
    let principal = auth::require(ledger.tokens.principal(&headers)?)?;
    let index: u64 = raw
        .parse()
        .map_err(|_| Problem::bad_parameter("index", format!("{raw:?} is not a log index")))?;
    let with_proof = matches!(params.get("proof").map(String::as_str), Some("true" | "1"));
    let published = ledger.latest.borrow().clone();
    let size = ledger.store.size();
    if index >= size {
        return Err(Problem::not_found(format!(
            "no event at index {index}; the log holds {size}"
        )));
    }
    if with_proof && index >= published.checkpoint.size {
        return Err(Problem::unavailable(format!(
            "event {index} is logged but not yet in a checkpoint (size {}); retry shortly",
            published.checkpoint.size
        )));
    }
    let store = ledger.store.clone();
    let cp_size = published.checkpoint.size;
    let (entry, leaf, proof) = tokio::task::spawn_blocking(move || {
        let entry = store
            .read_entry(index)
            .map_err(|e| Problem::from_store(&e))?;
        let leaf = store
            .read_node(0, index)
            .map_err(|e| Problem::internal(e.to_string()))?;
        let proof = if with_proof {
            Some(
                prove_record(cp_size, index, &&*store)
                    .map_err(|e| Problem::internal(e.to_string()))?,
            )
        } else {
            None
        };
        Ok::<_, Problem>((entry, leaf, proof))
    })
    .await
    .map_err(|e| Problem::internal(e.to_string()))??;
    let readable = crate::sealing::open_entry(&ledger.keyring, &entry)
        .map_err(|e| Problem::internal(format!("entry {index} cannot be read: {e}")))?;
    let tenant = readable.stored.tenant();
    if !principal.can_read(tenant) {
        return Err(forbidden(format!(
            "this token may not read events of tenant {tenant:?}"
        )));
    }
    let mut out = json!({
        "index": index,
        "leaf_hash": b64(&leaf),
        "entry": B64.encode(&entry),
        "entry_version": readable.stored.version,
        "content": readable.content,
        "event": readable.event.clone().unwrap_or_else(|| readable.stored.index.clone()),
    });
    if !readable.redacted.is_empty() {
        out["redacted"] = json!(readable.redacted);
    }
    if let (Some(opening), true) = (&readable.opening, with_proof) {
        // Lets a third party check the content against the logged commitment without any key.
        out["opening"] = json!(B64.encode(opening));
    }
    if let (Some(sig), Some(event)) = (&readable.signature, &readable.event) {
        let status = match aiaudit_event::signature::verify_entry_signature(event, sig) {
            Ok(key) => {
                let name = key.split('+').next().unwrap_or("");
                let registered = ledger.emitters.verifier(name).map(|v| v.to_vkey());
                if !readable.redacted.is_empty() {
                    "valid before redaction (checked at ingest)"
                } else if registered.as_deref() == Some(key.as_str()) {
                    "valid"
                } else {
                    "valid, key not registered now"
                }
            }
            Err(_) if !readable.redacted.is_empty() => "valid before redaction (checked at ingest)",
            Err(_) => "invalid",
        };
        out["emitter_signature"] = json!({"status": status, "signature": sig});
    }
    if let Some(proof) = proof {
        out["proof"] = json!({
            "size": cp_size,
            "inclusion": proof.iter().map(b64).collect::<Vec<_>>(),
            "checkpoint": published.note,
        });
    }
    Ok(Json(out))
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

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(ledger): State<Arc<Ledger>>) -> Response {
    let latest = ledger.latest.borrow().clone();
    let lag = ledger.store.size().saturating_sub(latest.checkpoint.size);
    let age = latest.at.elapsed();
    let stale = lag > 0 && age > ledger.config.publish_interval * 10;
    // After a failed append, probe the disk (1 MiB, fsync'd) rather than wait for the next
    // append: a load balancer that trusts /readyz would never send one.
    let writable = if ledger.store.shared() {
        let store = ledger.store.clone();
        tokio::task::spawn_blocking(move || store.ping().is_ok())
            .await
            .unwrap_or(false)
    } else {
        ledger.sequencer.storage_writable() || {
            let probe = ledger.config.data_dir.join(".readyz-probe");
            tokio::task::spawn_blocking(move || {
                let written = std::fs::File::create(&probe).and_then(|mut f| {
                    use std::io::Write;
                    f.write_all(&vec![0u8; 1 << 20])?;
                    f.sync_all()
                });
                let _ = std::fs::remove_file(&probe);
                written.is_ok()
            })
            .await
            .unwrap_or(false)
        }
    };
    let index_lag = ledger
        .store
        .size()
        .saturating_sub(ledger.indexed.load(std::sync::atomic::Ordering::Acquire));
    let index_ok = index_lag <= ledger.config.max_index_lag_events;
    let ready = writable && !stale && index_ok;
    // Keys are loaded and recovery has finished before the server listens at all.
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": {
            "storage_writable": writable,
            "keys_loaded": true,
            "recovery_finished": true,
            "checkpoint_age_seconds": age.as_secs_f64(),
            "unpublished_entries": lag,
            "checkpoints_keep_up": !stale,
            "index_lag_events": index_lag,
            "index_keeps_up": index_ok,
        }
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
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

pub(crate) fn require_admin(ledger: &Ledger, headers: &HeaderMap) -> ApiResult<Principal> {
    let p = auth::require(ledger.tokens.principal(headers)?)?;
    if !p.is_admin() {
        return Err(forbidden("token management needs an admin token"));
    }
    Ok(p)
}

/// A global admin's token (every tenant): for what all tenants share.
pub(crate) fn require_global_admin(ledger: &Ledger, headers: &HeaderMap) -> ApiResult<Principal> {
    let p = require_admin(ledger, headers)?;
    if !p.is_global_admin() {
        return Err(forbidden(
            "this acts on every tenant: it needs an admin token of all tenants (\"*\")",
        ));
    }
    Ok(p)
}

async fn list_tokens(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let p = require_admin(&ledger, &headers)?;
    let tokens: Vec<Value> = ledger
        .tokens
        .list()
        .into_iter()
        .filter(|t| p.can_manage(&t.tenants))
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
    let p = require_admin(&ledger, &headers)?;
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
    if let Some(bad) = tenants
        .iter()
        .find(|t| *t != "*" && !aiaudit_event::is_valid_tenant(t))
    {
        return Err(field(
            "tenants",
            &format!("{bad:?} is not a tenant name (1 to 64 letters, digits, '-', '_', '.')"),
        ));
    }
    if !p.can_manage(&tenants) {
        let mut e = forbidden(format!(
            "this token holds tenants {:?}; it cannot grant {:?}",
            p.tenants, tenants
        ));
        e.errors = vec![FieldError::event(
            None,
            "/tenants",
            "tenants",
            "beyond this token's own tenants",
        )];
        return Err(e);
    }
    let expires_unix = match req.get("expires").and_then(Value::as_str) {
        None => None,
        Some(d) => {
            let secs = auth::parse_duration_secs(d)
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
    let (record, secret) = ledger
        .tokens
        .create(role, tenants, expires_unix)
        .map_err(|e| Problem::unavailable(format!("saving the token failed: {e}")))?;
    tracing::info!(token_id = %record.id, role = ?record.role, "token created");
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
    let p = require_admin(&ledger, &headers)?;
    // Tokens beyond the caller's scope are answered as unknown: ids do not leak.
    let in_scope = ledger
        .tokens
        .list()
        .iter()
        .any(|t| t.id == id && p.can_manage(&t.tenants));
    if !in_scope {
        return Err(Problem::not_found(format!("no token with id {id:?}")));
    }
    match ledger.tokens.revoke(&id) {
        Ok(true) => {
            tracing::info!(token_id = %id, "token revoked");
            Ok(Json(json!({"id": id, "revoked": true})))
        }
        Ok(false) => Err(Problem::not_found(format!("no token with id {id:?}"))),
        Err(e) => Err(Problem::unavailable(format!(
            "saving the revocation failed: {e}"
        ))),
    }
}

async fn list_emitters(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let p = require_admin(&ledger, &headers)?;
    let emitters: Vec<_> = ledger
        .emitters
        .list()
        .into_iter()
        .filter(|e| p.is_global_admin() || p.can_manage(&e.tenants))
        .collect();
    Ok(Json(json!({ "emitters": emitters })))
}

async fn register_emitter(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let p = require_admin(&ledger, &headers)?;
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
    // An emitter without tenants signs for every tenant: a global admin's
    // call. A scoped admin registers emitters of its tenants, and cannot
    // replace the key of one beyond them.
    let existing = ledger.emitters.record(name);
    let allowed = p.is_global_admin()
        || (p.can_manage(&tenants) && existing.is_none_or(|e| p.can_manage(&e.tenants)));
    if !allowed {
        let mut e = forbidden(format!(
            "this token holds tenants {:?}: it may register emitters for those tenants only (give \"tenants\"), and not replace another scope's emitter",
            p.tenants
        ));
        e.errors = vec![FieldError::event(
            None,
            "/tenants",
            "tenants",
            "beyond this token's own tenants",
        )];
        return Err(e);
    }
    let record = ledger.emitters.register(name, key, tenants).map_err(|e| {
        let (f, d) = e.split_once(": ").unwrap_or(("public_key", e.as_str()));
        field(f, d)
    })?;
    tracing::info!(emitter = %record.name, "emitter registered");
    Ok((StatusCode::CREATED, Json(json!(record))).into_response())
}

/// Counts request and response body bytes (from their sizes where known).
async fn count_bytes(
    State(ledger): State<Arc<Ledger>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::body::HttpBody;
    if let Some(n) = req.body().size_hint().exact() {
        ledger.metrics.request_bytes.inc_by(n);
    } else if let Some(n) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        ledger.metrics.request_bytes.inc_by(n);
    }
    let mut resp = next.run(req).await;
    if let Some(n) = resp.body().size_hint().exact() {
        ledger.metrics.response_bytes.inc_by(n);
    }
    // Lets the dashboard drop decrypted answers it saved once keys are destroyed.
    let epoch = ledger
        .erasure_epoch
        .load(std::sync::atomic::Ordering::Relaxed);
    resp.headers_mut()
        .insert("aiaudit-erasure-epoch", HeaderValue::from(epoch));
    resp
}

async fn metrics(State(ledger): State<Arc<Ledger>>, headers: HeaderMap) -> ApiResult<Response> {
    public_read(&ledger, &headers)?;
    let latest = ledger.latest.borrow().clone();
    let store = ledger.store.clone();
    let l = ledger.clone();
    ledger
        .metrics
        .publisher
        .set(ledger.store.is_publisher() as i64);
    let text = tokio::task::spawn_blocking(move || {
        l.metrics.render(
            &l.config.data_dir,
            latest.checkpoint.size,
            store.size(),
            latest.at.elapsed().as_secs_f64(),
        )
    })
    .await
    .map_err(|e| Problem::internal(e.to_string()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
