//! The witness's HTTP face: `POST /add-checkpoint` (C2SP tlog-witness, at
//! the root of the listener), and read routes for operators and auditors.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aiaudit_tlog::TLOG_SIZE_CONTENT_TYPE;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::state::{Refusal, Witness};

/// The largest request body accepted: a checkpoint with a few signatures
/// and 63 proof lines is a few KiB.
const MAX_BODY: usize = 64 * 1024;

/// The witness's routes.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/", get(info))
        .route("/logs", get(logs))
        .route("/evidence", get(evidence_list))
        .route("/evidence/{id}", get(evidence_one))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(witness)
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1)
        .max(1);
    let w2 = w.clone();
    let result = tokio::task::spawn_blocking(move || w2.add_checkpoint(&body, now))
        .await
        .unwrap_or_else(|e| Err(Refusal::Storage(e.to_string())));
    let resp = match result {
        Ok(line) => text(StatusCode::OK, "text/plain; charset=utf-8", line),
        Err(Refusal::OldSize { held, .. }) => text(
            StatusCode::CONFLICT,
            TLOG_SIZE_CONTENT_TYPE,
            format!("{held}\n"),
        ),
        Err(e) => {
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if status.is_server_error() {
                tracing::error!(error = %e, "add-checkpoint failed");
            } else {
                tracing::info!(status = status.as_u16(), reason = %e, "add-checkpoint refused");
            }
            text(status, "text/plain; charset=utf-8", format!("{e}\n"))
        }
    };
    w.count(resp.status().as_u16());
    resp
}

async fn info(State(w): State<Arc<Witness>>) -> Json<serde_json::Value> {
    Json(json!({
        "vkey": w.vkey(),
        "logs": w.origins(),
        "protocol": "c2sp.org/tlog-witness",
        "submission_prefix": "/",
    }))
}

async fn logs(State(w): State<Arc<Witness>>) -> Json<serde_json::Value> {
    let held: Vec<_> = w.origins().iter().filter_map(|o| w.held(o)).collect();
    Json(json!({ "logs": held }))
}

async fn evidence_list(State(w): State<Arc<Witness>>) -> Response {
    match w.evidence() {
        Ok(list) => Json(json!({
            "evidence": list
                .iter()
                .map(|e| json!({"id": e.id, "reason": e.reason, "origin": e.origin, "time": e.time}))
                .collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("reading evidence: {e}\n"),
        ),
    }
}

async fn evidence_one(State(w): State<Arc<Witness>>, Path(id): Path<String>) -> Response {
    match w.evidence() {
        Ok(list) => match list.into_iter().find(|e| e.id == id) {
            Some(e) => Json(e).into_response(),
            None => text(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "no such evidence\n".into(),
            ),
        },
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("reading evidence: {e}\n"),
        ),
    }
}

async fn metrics(State(w): State<Arc<Witness>>) -> Response {
    text(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        w.metrics_text(),
    )
}
