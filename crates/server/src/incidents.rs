//! Incidents over HTTP. Who may see and move which is the engine's rule
//! (`Ledger::incidents`); these handlers parse and answer.

use crate::extract::{read_json_body, require, ListParams};
use crate::problem::Problem;
use aiaudit_incident::{Incident, Severity, Status};
use aiaudit_ledger::Ledger;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

type ApiResult<T> = Result<T, Problem>;
type Params = Query<HashMap<String, String>>;

/// `GET /v1/incidents?tenant=&status=&severity=&limit=&cursor=`: newest first.
pub async fn list(
    State(ledger): State<Arc<Ledger>>,
    Query(params): Params,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let p = require(&ledger, &headers)?;
    let list = ListParams::parse(
        &p,
        &params,
        &["tenant", "status", "severity", "limit", "cursor"],
    )?;
    let status = list
        .get("status")
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                Problem::bad_parameter(
                    "status",
                    format!("{s:?} is not open, acknowledged, mitigated, resolved, reviewed or reopened"),
                )
            })
        })
        .transpose()?;
    let severity = list
        .get("severity")
        .map(|s| {
            Severity::parse(s).ok_or_else(|| {
                Problem::bad_parameter(
                    "severity",
                    format!("{s:?} is not critical, high, medium or low"),
                )
            })
        })
        .transpose()?;
    let all = ledger.incidents(&p, |i| {
        list.get("tenant").is_none_or(|t| *t == i.tenant)
            && status.is_none_or(|s| s == i.status)
            && severity.is_none_or(|s| s == i.severity)
    })?;
    let (page, total, next) = list.page(&all, |i: &Incident| i.index);
    let out: Vec<Value> = page.iter().map(|i| ledger.incident_json(i)).collect();
    Ok(Json(
        json!({"incidents": out, "total": total, "next_cursor": next}),
    ))
}

/// `GET /v1/incidents/{id}`.
pub async fn get_one(
    State(ledger): State<Arc<Ledger>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let p = require(&ledger, &headers)?;
    Ok(Json(ledger.incident_json(&ledger.incident(&p, &id)?)))
}

/// Readers only, before a body is read.
fn responder(ledger: &Ledger, headers: &HeaderMap) -> ApiResult<aiaudit_ledger::Principal> {
    let p = require(ledger, headers)?;
    ledger.incidents(&p, |_| false)?;
    Ok(p)
}

/// `POST /v1/incidents`: open one by hand.
pub async fn open(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let p = responder(&ledger, &headers)?;
    let req = read_json_body(body).await?;
    let i = ledger.open_incident(&p, &req).await?;
    Ok((StatusCode::CREATED, Json(ledger.incident_json(&i))))
}

/// What a `POST /v1/incidents/{id}[/...]` asks for.
enum Change {
    Update,
    Breach,
    Notified,
    Note,
}

/// Reads the body (readers only, checked first) and applies `change`.
async fn change(
    ledger: Arc<Ledger>,
    id: String,
    headers: HeaderMap,
    body: Body,
    change: Change,
) -> ApiResult<Json<Value>> {
    let p = responder(&ledger, &headers)?;
    let req = read_json_body(body).await?;
    let i = match change {
        Change::Update => ledger.update_incident(&p, &id, &req).await?,
        Change::Breach => ledger.mark_breach(&p, &id, &req).await?,
        Change::Notified => ledger.record_notified(&p, &id, &req).await?,
        Change::Note => ledger.add_incident_note(&p, &id, &req).await?,
    };
    Ok(Json(ledger.incident_json(&i)))
}

/// `POST /v1/incidents/{id}` `{status, severity, note, skipped_acknowledgement}`.
pub async fn update(
    State(ledger): State<Arc<Ledger>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    change(ledger, id, headers, body, Change::Update).await
}

/// `POST /v1/incidents/{id}/breach`: a personal-data breach; clocks start.
pub async fn breach(
    State(ledger): State<Arc<Ledger>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    change(ledger, id, headers, body, Change::Breach).await
}

/// `POST /v1/incidents/{id}/notified` `{clock, notified_at, reference}`.
pub async fn notified(
    State(ledger): State<Arc<Ledger>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    change(ledger, id, headers, body, Change::Notified).await
}

/// `POST /v1/incidents/{id}/notes` `{section, text, related}`.
pub async fn note(
    State(ledger): State<Arc<Ledger>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    change(ledger, id, headers, body, Change::Note).await
}

/// `POST /v1/incidents/alertmanager`: Alertmanager's webhook (version 4),
/// with the token in `http_config.authorization`.
pub async fn alertmanager(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let p = responder(&ledger, &headers)?;
    // Up to 1000 alerts with their labels and annotations.
    let req = crate::extract::read_json_body_up_to(body, 4 << 20).await?;
    let (what, i) = ledger.alertmanager(&p, &req).await?;
    Ok(Json(
        json!({"result": what, "incident": ledger.incident_json(&i)}),
    ))
}

/// `GET /v1/incidents/{id}/review?format=md|html`: the post-incident review.
pub async fn review(
    State(ledger): State<Arc<Ledger>>,
    Path(id): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let p = require(&ledger, &headers)?;
    let html = match params.get("format").map(String::as_str) {
        None | Some("") | Some("md") | Some("markdown") => false,
        Some("html") => true,
        Some(other) => {
            return Err(Problem::bad_parameter(
                "format",
                format!("{other:?} is not md or html"),
            ))
        }
    };
    let doc = ledger.incident_review(&p, &id, html).await?;
    Ok(crate::reports::document(
        doc,
        if html {
            "text/html; charset=utf-8"
        } else {
            "text/markdown; charset=utf-8"
        },
    ))
}

/// `GET /v1/incidents/{id}/pack?jurisdiction=ng`: the notification draft.
pub async fn pack(
    State(ledger): State<Arc<Ledger>>,
    Path(id): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let p = require(&ledger, &headers)?;
    let Some(j) = params.get("jurisdiction").filter(|j| !j.is_empty()) else {
        return Err(Problem::bad_parameter(
            "jurisdiction",
            "required: ng, ke, za, eu or a configured code",
        ));
    };
    let doc = ledger.incident_pack(&p, &id, j).await?;
    Ok(crate::reports::document(
        doc,
        "text/markdown; charset=utf-8",
    ))
}
