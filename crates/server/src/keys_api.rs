//! Key management over HTTP: data key rotation, master key rotation,
//! crypto-shredding erasure, the HMAC of a known value, the keyring for backups.

use crate::api::{read_json_body, require_admin, require_global_admin};
use crate::auth::{self, forbidden};
use crate::problem::Problem;
use crate::Ledger;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

type ApiResult<T> = Result<T, Problem>;

fn keyring_failed(e: impl std::fmt::Display) -> Problem {
    Problem::unavailable(format!("keyring: {e}"))
}

/// Runs a keyring operation (it fsyncs) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> aiaudit_keyring::Result<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Problem::internal(e.to_string()))?
        .map_err(|e| match e {
            aiaudit_keyring::Error::Unsupported(why) => Problem::new(
                axum::http::StatusCode::CONFLICT,
                "unsupported",
                "Not possible with this key provider",
                why,
            ),
            other => keyring_failed(other),
        })
}

/// `POST /v1/keys/rotate`: new data keys for every tenant and subject.
pub async fn rotate(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let p = require_global_admin(&ledger, &headers)?;
    let ring = ledger.keyring.clone();
    let rotated = blocking(move || ring.rotate()).await?;
    tracing::info!(token_id = %p.token_id, rotated, "data keys rotated");
    Ok(Json(json!({"rotated": rotated, "keys": stats(&ledger)})))
}

/// `POST /v1/keys/rotate-master`: a new master key, every data key re-wrapped.
pub async fn rotate_master(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let p = require_global_admin(&ledger, &headers)?;
    let ring = ledger.keyring.clone();
    let rewrapped = blocking(move || ring.rotate_master()).await?;
    tracing::info!(token_id = %p.token_id, rewrapped, "master key rotated");
    Ok(Json(
        json!({"rewrapped": rewrapped, "keys": stats(&ledger)}),
    ))
}

/// `GET /v1/keys`: key counts (never key material).
pub async fn info(State(ledger): State<Arc<Ledger>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    require_global_admin(&ledger, &headers)?;
    Ok(Json(
        json!({"encryption": ledger.config.encryption, "keys": stats(&ledger)}),
    ))
}

pub fn stats(ledger: &Ledger) -> Value {
    let s = ledger.keyring.stats();
    json!({"tenants": s.tenants, "tenant_keys": s.tenant_keys,
           "subject_keys": s.subject_keys, "destroyed_keys": s.destroyed_keys})
}

/// `GET /v1/keys/keyring`: the keyring file (wrapped keys, useless without
/// the master key) for backups.
pub async fn keyring_file(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    require_global_admin(&ledger, &headers)?;
    let ring = ledger.keyring.clone();
    let bytes = blocking(move || ring.snapshot()).await?;
    let mut resp = bytes.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

/// The `tenant` member: a well-formed tenant name (400 naming it otherwise).
fn tenant_field(req: &Value, slug: &str, title: &str) -> ApiResult<String> {
    let tenant = string_field(req, "tenant", slug, title)?;
    if !aiaudit_event::is_valid_tenant(&tenant) {
        return Err(Problem::bad_field(
            slug,
            title,
            "tenant",
            "not a tenant name (1 to 64 letters, digits, '-', '_', '.')",
        ));
    }
    Ok(tenant)
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

/// `POST /v1/erase` `{"tenant", "subject"}` (admin of the tenant): destroys the subject's data keys
/// (crypto-shredding) and logs the erasure as a `data.erasure` event.
pub async fn erase(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let p = require_admin(&ledger, &headers)?;
    let req = read_json_body(body).await?;
    let (slug, title) = ("invalid-erasure", "Invalid erasure request");
    let tenant = tenant_field(&req, slug, title)?;
    let subject = string_field(&req, "subject", slug, title)?;
    if !p.can_administer(&tenant) {
        return Err(forbidden(format!(
            "this token may not erase data of tenant {tenant:?}"
        )));
    }
    if !ledger.config.encryption {
        return Err(Problem::new(
            axum::http::StatusCode::CONFLICT,
            "encryption-off",
            "Erasure needs encryption at rest",
            "this ledger stores content in the clear (encryption = false): nothing can be crypto-shredded",
        ));
    }
    let ring = ledger.keyring.clone();
    let (t, s) = (tenant.clone(), subject.clone());
    let (destroyed, tag) = blocking(move || ring.erase(&t, &s)).await?;
    ledger
        .erasure_epoch
        .fetch_add(destroyed as u64 + 1, std::sync::atomic::Ordering::Relaxed);
    // The erasure names the subject only by its keyed tag: logging the
    // subject itself would store again what was just erased.
    let tag = match tag {
        Some(tag) => tag,
        None => ledger
            .keyring
            .hmac(&tenant, subject.as_bytes())
            .map_err(keyring_failed)?,
    };
    let (id, index) = crate::sealing::append_own_event(
        &ledger,
        &tenant,
        "data.erasure",
        (&format!("token:{}", p.token_id), "user"),
        json!({"subject_tag": tag, "keys_destroyed": destroyed}),
    )
    .await?;
    tracing::info!(token_id = %p.token_id, tenant = %tenant, keys_destroyed = destroyed, "subject erased");
    Ok(Json(json!({
        "tenant": tenant,
        "subject_tag": tag,
        "keys_destroyed": destroyed,
        "erasure_event": {"id": id, "index": index},
    })))
}

/// `POST /v1/hash` `{"tenant", "value"}`: the HMAC a sensitive field or a
/// subject tag would hold for `value`, so an auditor can search for it.
pub async fn hash(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let p = auth::require(ledger.tokens.principal(&headers)?)?;
    let req = read_json_body(body).await?;
    let (slug, title) = ("invalid-hash-request", "Invalid hash request");
    let tenant = tenant_field(&req, slug, title)?;
    if !p.can_read(&tenant) {
        return Err(forbidden(format!(
            "this token may not read tenant {tenant:?}"
        )));
    }
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
    // Read-only: a tenant without a salt gets none made for it (a reader
    // never writes); none of its values was ever tagged.
    match ledger.keyring.hmac_if_salted(&tenant, &value) {
        Some(hmac) => Ok(Json(json!({"tenant": tenant, "hmac": hmac}))),
        None => Err(Problem::not_found(format!(
            "tenant {tenant:?} has no HMAC salt yet: no value of it was ever tagged"
        ))),
    }
}
