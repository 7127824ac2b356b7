//! Search and export over HTTP: parameters in, the engine's answer out.

use crate::extract::require;
use crate::problem::Problem;
use aiaudit_ledger::search::parse_query;
use aiaudit_ledger::Ledger;
use axum::extract::{Query as UrlQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

type ApiResult<T> = Result<T, Problem>;

/// `GET /v1/events?tenant=&actor=&…&limit=&cursor=&order=`: one page of
/// matching events, newest first by default, each with its full event when
/// its content can be read.
pub async fn search(
    State(ledger): State<Arc<Ledger>>,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let q = parse_query(&params, &["count"])?;
    let count = match params.get("count").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return Err(Problem::bad_parameter(
                "count",
                format!("{v:?} is not true or false"),
            ))
        }
    };
    let who = require(&ledger, &headers)?;
    let found = ledger.search(&who, q.clone()).await?;
    // Counted after the page is read: the total never misses an event the
    // page shows (it may include a few indexed in between).
    let total = if count {
        Some(ledger.count(&who, q).await?)
    } else {
        None
    };
    let mut out = json!({
        "events": found.events,
        "next_cursor": found.next_cursor,
        "indexed_size": found.indexed_size,
        "index_lag_events": found.index_lag_events,
    });
    if let Some(n) = total {
        out["total"] = json!(n);
    }
    Ok(Json(out))
}

/// `GET /v1/export?<search filters>`: the matching events as an export
/// bundle (`aiaudit-bundle 1`, or `2` when it carries blobs) that verifies offline.
pub async fn export(
    State(ledger): State<Arc<Ledger>>,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let q = parse_query(&params, &[])?;
    if params.contains_key("cursor") || params.contains_key("limit") {
        return Err(Problem::bad_parameter(
            "limit",
            "an export holds every matching event: use from/to to split it",
        ));
    }
    let who = require(&ledger, &headers)?;
    let bytes = ledger.export(&who, q, json!(params)).await?;
    let mut resp = bytes.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/gzip"),
    );
    resp.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"aiaudit-export.tar.gz\""),
    );
    Ok(resp)
}
