//! Key management over HTTP: data key rotation, master key rotation,
//! crypto-shredding erasure, the HMAC of a known value, the keyring for
//! backups. The rules (who may, on which tenants) are the engine's.

use crate::extract::{read_json_body, require};
use crate::problem::Problem;
use aiaudit_ledger::Ledger;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

type ApiResult<T> = Result<T, Problem>;

/// `POST /v1/keys/rotate`: new data keys for every tenant and subject.
pub async fn rotate(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let who = require(&ledger, &headers)?;
    let (rotated, keys) = ledger.rotate_keys(&who).await?;
    Ok(Json(json!({"rotated": rotated, "keys": keys})))
}

/// `POST /v1/keys/rotate-master`: a new master key, every data key re-wrapped.
pub async fn rotate_master(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let who = require(&ledger, &headers)?;
    let (rewrapped, keys) = ledger.rotate_master_key(&who).await?;
    Ok(Json(json!({"rewrapped": rewrapped, "keys": keys})))
}

/// `GET /v1/keys`: key counts (never key material).
pub async fn info(State(ledger): State<Arc<Ledger>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let who = require(&ledger, &headers)?;
    let keys = ledger.key_stats(&who)?;
    Ok(Json(
        json!({"encryption": ledger.config().encryption, "keys": keys}),
    ))
}

/// Bytes of the keyring read at a time while it is sent: 16,384 records.
const KEYRING_PIECE: u64 = 4 << 20;

/// `GET /v1/keys/keyring`: the keyring file (wrapped keys, useless without
/// the master key) for backups, whole or the one byte range a `Range:
/// bytes=a-b` header asks for (206, with its `Content-Range` giving the
/// whole length). Its length is fixed when the request arrives; it is read
/// and sent a piece at a time, so millions of subjects' keys are never held
/// in memory.
pub async fn keyring_file(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = require(&ledger, &headers)?;
    // Who may comes first: a bad range from anyone else is a 403.
    let image = ledger.keyring_image(&who).await?;
    let range = match headers.get(header::RANGE) {
        None => None,
        Some(v) => Some(crate::api::parse_range(v.to_str().unwrap_or(""))?),
    };
    let total = image.len();
    let (first, end) = match range {
        None => (0, total),
        Some((first, last)) => {
            let last = last.unwrap_or(u64::MAX).min(total.saturating_sub(1));
            if first >= total || first > last {
                let mut resp = Problem::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range-not-satisfiable",
                    "Range not satisfiable",
                    format!("the keyring holds {total} bytes"),
                )
                .into_response();
                resp.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{total}")).expect("ASCII"),
                );
                return Ok(resp);
            }
            (first, last + 1)
        }
    };
    let pieces = futures::stream::try_unfold(first, move |at| {
        let image = image.clone();
        async move {
            if at >= end {
                return Ok(None);
            }
            let n = (end - at).min(KEYRING_PIECE);
            // A failed read cuts the body short of its Content-Length: the
            // client sees an error, never a shorter keyring.
            let bytes = image
                .read(at, n)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            Ok::<_, std::io::Error>(Some((bytes, at + n)))
        }
    });
    let mut resp = Body::from_stream(pieces).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - first));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if range.is_some() {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        resp.headers_mut().insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {first}-{}/{total}", end - 1)).expect("ASCII"),
        );
    }
    Ok(resp)
}

/// `GET /v1/blobs/{id}`: a blob's stored, sealed bytes (backups copy them).
pub async fn stored_blob(
    State(ledger): State<Arc<Ledger>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = require(&ledger, &headers)?;
    let bytes = ledger.stored_blob(&who, &id).await?;
    let mut resp = bytes.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

fn string_field(req: &Value, name: &str, slug: &str, title: &str) -> ApiResult<String> {
    match req.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(Problem::bad_field(
            slug,
            title,
            name,
            "required: a non-empty string",
        )),
    }
}

/// The admin and the `{"tenant", "subject"}` of an erasure or its preview.
async fn erasure_request(
    ledger: &Ledger,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<(aiaudit_ledger::auth::Principal, String, String)> {
    let who = require(ledger, headers)?;
    if !who.is_admin() {
        return Err(Problem(aiaudit_ledger::Error::forbidden(
            "erasure needs an admin token",
        )));
    }
    let req = read_json_body(body).await?;
    let (slug, title) = ("invalid-erasure", "Invalid erasure request");
    let tenant = string_field(&req, "tenant", slug, title)?;
    let subject = string_field(&req, "subject", slug, title)?;
    Ok((who, tenant, subject))
}

/// `POST /v1/erase` `{"tenant", "subject"}` (an admin of the tenant):
/// destroys the subject's data keys and logs the erasure.
pub async fn erase(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let (who, tenant, subject) = erasure_request(&ledger, &headers, body).await?;
    let (destroyed, tag, id, index) = ledger.erase(&who, &tenant, &subject).await?;
    Ok(Json(json!({
        "tenant": tenant,
        "subject_tag": tag,
        "keys_destroyed": destroyed,
        "erasure_event": {"id": id, "index": index},
    })))
}

/// `POST /v1/erase/preview` `{"tenant", "subject"}` (an admin of the
/// tenant): the keys an erasure would destroy, changing and logging
/// nothing. A POST so the subject stays out of URLs and access logs.
pub async fn erase_preview(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let (who, tenant, subject) = erasure_request(&ledger, &headers, body).await?;
    let (live, destroyed) = ledger.erase_preview(&who, &tenant, &subject).await?;
    Ok(Json(json!({
        "tenant": tenant,
        "live_keys": live,
        "destroyed_keys": destroyed,
    })))
}

/// `POST /v1/hash` `{"tenant", "value"}`: the HMAC a sensitive field or a
/// subject tag would hold for `value`, so an auditor can search for it.
pub async fn hash(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let who = require(&ledger, &headers)?;
    let req = read_json_body(body).await?;
    let (slug, title) = ("invalid-hash-request", "Invalid hash request");
    let tenant = string_field(&req, "tenant", slug, title)?;
    let value = match req.get("value") {
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        Some(v) if !v.is_null() => {
            let mut out = Vec::new();
            aiaudit_event::write_canonical(&mut out, v);
            out
        }
        _ => {
            return Err(Problem::bad_field(
                slug,
                title,
                "value",
                "required: the value to hash",
            ))
        }
    };
    let hmac = ledger.hash(&who, &tenant, &value)?;
    Ok(Json(json!({"tenant": tenant, "hmac": hmac})))
}
