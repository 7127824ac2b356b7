//! Violations over HTTP: listing, one, and lifecycle transitions. Who may
//! see and change which is the engine's rule (`Ledger::violations`).

use crate::extract::{read_json_body, require, ListParams};
use crate::problem::Problem;
use aiaudit_ledger::policies::{Record, Status};
use aiaudit_ledger::Ledger;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

type ApiResult<T> = Result<T, Problem>;

/// `GET /v1/violations?tenant=&status=&rule=&limit=`: newest first.
pub async fn list(
    State(ledger): State<Arc<Ledger>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let p = require(&ledger, &headers)?;
    let list = ListParams::parse(
        &p,
        &params,
        &[
            "tenant", "status", "rule", "severity", "source", "limit", "cursor",
        ],
    )?;
    let get = |n: &str| list.get(n);
    let status = get("status")
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                Problem::bad_parameter(
                    "status",
                    format!("{s:?} is not open, acknowledged or resolved"),
                )
            })
        })
        .transpose()?;
    const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];
    if let Some(s) = get("severity").filter(|s| !SEVERITIES.contains(&s.as_str())) {
        return Err(Problem::bad_parameter(
            "severity",
            format!("{s:?} is not one of {}", SEVERITIES.join(", ")),
        ));
    }
    let source = |r: &Record| get("source").is_none_or(|s| r.attributes["source"] == s.as_str());
    let status_ok = |r: &Record| status.is_none_or(|s| s == r.status);
    let severity_ok =
        |r: &Record| get("severity").is_none_or(|s| r.attributes["severity"] == s.as_str());
    let base = ledger.violations(&p, |r| {
        get("tenant").is_none_or(|t| *t == r.tenant)
            && get("rule").is_none_or(|x| x == r.rule())
            && source(r)
    })?;
    // Facet counts: each over every other filter, so a triage page can
    // show how many each status and severity choice would list.
    let mut by_status: BTreeMap<&str, u64> = ["open", "acknowledged", "resolved"]
        .into_iter()
        .map(|s| (s, 0))
        .collect();
    let mut by_severity: BTreeMap<String, u64> =
        SEVERITIES.into_iter().map(|s| (s.to_string(), 0)).collect();
    for r in &base {
        if severity_ok(r) {
            *by_status.entry(r.status.as_str()).or_default() += 1;
        }
        if status_ok(r) {
            let s = r.attributes["severity"].as_str().unwrap_or("unknown");
            *by_severity.entry(s.to_string()).or_default() += 1;
        }
    }
    let mut records: Vec<Record> = base
        .into_iter()
        .filter(|r| status_ok(r) && severity_ok(r))
        .collect();
    records.sort_by_key(|r| std::cmp::Reverse(r.index));
    let (page, total, next) = list.page(&records, |r: &Record| r.index);
    let out: Vec<Value> = page.iter().map(|r| r.to_json()).collect();
    Ok(Json(json!({
        "violations": out,
        "total": total,
        "next_cursor": next,
        "counts": {"status": by_status, "severity": by_severity},
    })))
}

/// `GET /v1/violations/{id}`.
pub async fn get_one(
    State(ledger): State<Arc<Ledger>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let p = require(&ledger, &headers)?;
    Ok(Json(ledger.violation(&p, &id)?.to_json()))
}

/// `POST /v1/violations/{id}` `{"status": "acknowledged"|"resolved", "note"}`:
/// the transition is logged as an event, then applied.
pub async fn transition(
    State(ledger): State<Arc<Ledger>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let p = require(&ledger, &headers)?;
    // Readers only, before the body is even read.
    ledger.violations(&p, |_| false)?;
    let req = read_json_body(body).await?;
    let field = |name: &str, detail: &str| {
        Problem::bad_field(
            "invalid-transition",
            "Invalid violation update",
            name,
            detail,
        )
    };
    let next = match req.get("status").and_then(Value::as_str) {
        Some("acknowledged") => Status::Acknowledged,
        Some("resolved") => Status::Resolved,
        _ => {
            return Err(field(
                "status",
                "required: \"acknowledged\" or \"resolved\"",
            ))
        }
    };
    let note = match req.get("note") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= 4096 => {
            Some(s.clone()).filter(|s| !s.trim().is_empty())
        }
        Some(_) => return Err(field("note", "must be a string of at most 4096 bytes")),
    };
    if next == Status::Resolved && note.is_none() {
        return Err(field(
            "note",
            "required to resolve: say how it was resolved",
        ));
    }
    if let Some(extra) = req
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "status" && *k != "note"))
    {
        return Err(field(extra, "unknown field; send status and note"));
    }
    let (updated, event_id, index) = ledger.transition_violation(&p, &id, next, note).await?;
    Ok((
        StatusCode::OK,
        Json(json!({"violation": updated.to_json(), "event": {"id": event_id, "index": index}})),
    ))
}
