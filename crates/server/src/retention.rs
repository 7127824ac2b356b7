//! Legal holds over HTTP; the rules are the engine's (`Ledger::place_hold`).

use crate::extract::{read_json_body, require};
use crate::problem::Problem;
use aiaudit_ledger::Ledger;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

type ApiResult<T> = Result<T, Problem>;

/// `GET /v1/holds`: holds in force (auditors see those of their tenants).
pub async fn list(State(ledger): State<Arc<Ledger>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let who = require(&ledger, &headers)?;
    Ok(Json(json!({ "holds": ledger.holds_for(&who)? })))
}

/// `POST /v1/holds` `{"tenant", "reason"}` (admin of the tenant): suspends expiry for it.
pub async fn place(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let who = require(&ledger, &headers)?;
    if !who.is_admin() {
        return Err(Problem(aiaudit_ledger::Error::forbidden(
            "legal holds are placed by admin tokens",
        )));
    }
    let req = read_json_body(body).await?;
    let field = |name: &str| {
        req.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                Problem::bad_field(
                    "invalid-hold",
                    "Invalid legal hold",
                    name,
                    "required: a non-empty string",
                )
            })
    };
    let (tenant, reason) = (field("tenant")?, field("reason")?);
    let hold = ledger.place_hold(&who, &tenant, &reason).await?;
    Ok((StatusCode::CREATED, Json(json!(hold))).into_response())
}

/// `DELETE /v1/holds/{id}` (admin of the hold's tenant): releases a hold; expiry resumes.
pub async fn release(
    State(ledger): State<Arc<Ledger>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let who = require(&ledger, &headers)?;
    ledger.release_hold(&who, &id).await?;
    Ok(Json(json!({"id": id, "released": true})))
}
