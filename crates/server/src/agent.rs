//! `aiaudit agent`: a local forwarder for applications in any language. It
//! accepts the ledger's own `POST /v1/events`, validates the events, writes
//! them durably to its spool (so its answer means "will be delivered", even
//! across kill -9), and forwards them through the emitter SDK.

use crate::api::{parse_events, read_body, validate_batch};
use crate::problem::Problem;
use aiaudit_emitter::{EmitError, Emitter};
use anyhow::Context;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub listen: String,
    pub ledger_url: String,
    pub token: Option<String>,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub max_body_bytes: usize,
    /// Emitter key that signs every forwarded batch.
    pub signing_key: Option<aiaudit_tlog::Signer>,
    /// Extra CA certificate (PEM) to trust for an https:// ledger.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// PEM certificate and key: serve applications over HTTPS (reloaded on SIGHUP).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

pub const DEFAULT_AGENT_LISTEN: &str = "127.0.0.1:7382";

pub(crate) struct Agent {
    pub(crate) emitter: Emitter,
    pub(crate) max_body_bytes: usize,
}

/// Runs the agent until `shutdown` resolves, then drains to the ledger or the spool.
pub async fn run(
    config: AgentConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let cfg = config.clone();
    let emitter = tokio::task::spawn_blocking(move || {
        let mut b = Emitter::builder()
            .endpoint(cfg.ledger_url)
            .spool_dir(cfg.spool_dir)
            .spool_max_bytes(cfg.spool_max_bytes)
            .batch_interval(Duration::from_millis(50));
        if let Some(t) = cfg.token {
            b = b.token(t);
        }
        if let Some(k) = cfg.signing_key {
            b = b.signing_key(k);
        }
        if let Some(pem) = cfg.ca_cert_pem {
            b = b.ca_cert_pem(pem);
        }
        b.build()
    })
    .await?
    .with_context(|| format!("opening the spool in {}", config.spool_dir.display()))?;
    eprintln!(
        "aiaudit agent: {} pending batch(es) in {}",
        emitter.pending_batches(),
        config.spool_dir.display()
    );
    let agent = Arc::new(Agent {
        emitter,
        max_body_bytes: config.max_body_bytes,
    });
    let router = Router::new()
        .route("/v1/events", post(accept))
        .route("/v1/logs", post(crate::otlp::agent_logs))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/v1/agent/status", get(status))
        .fallback(|| async { Problem::not_found("no such route") })
        .with_state(agent.clone());
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    eprintln!(
        "aiaudit agent: listening on http://{}, forwarding to {}",
        listener.local_addr()?,
        config.ledger_url
    );
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let cert = crate::tls::ReloadingCert::load(cert, key)?;
            cert.reload_on_sighup()?;
            crate::tls::serve(
                listener,
                router,
                crate::tls::acceptor(cert, None)?,
                shutdown,
            )
            .await?;
        }
        (None, None) => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await?
        }
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    }
    let agent = Arc::try_unwrap(agent)
        .map_err(|_| anyhow::anyhow!("requests still running at shutdown"))?;
    tokio::task::spawn_blocking(move || match agent.emitter.close(Duration::from_secs(5)) {
        Ok(()) => eprintln!("aiaudit agent: everything delivered"),
        Err(e) => eprintln!("aiaudit agent: {e}; kept in the spool for the next start"),
    })
    .await?;
    Ok(())
}

async fn accept(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| ct.to_ascii_lowercase().contains("ndjson"))
        .unwrap_or(false);
    let bytes = read_body(body, agent.max_body_bytes).await?;
    let events = parse_events(&bytes, ndjson)?;
    validate_batch(&events)?;
    let n = events.len();
    let a = agent.clone();
    match tokio::task::spawn_blocking(move || a.emitter.emit_durable(events)).await {
        Ok(Ok(())) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"accepted": n, "durable": true})),
        )
            .into_response()),
        Ok(Err(EmitError::Closed)) => Err(Problem::unavailable("the agent is shutting down")),
        Ok(Err(e)) => Err(Problem::unavailable(format!(
            "the spool cannot take the batch ({e}); nothing was accepted"
        ))),
        Err(e) => Err(Problem::internal(e.to_string())),
    }
}

async fn status(State(agent): State<Arc<Agent>>) -> Json<Value> {
    let s = agent.emitter.stats();
    Json(json!({
        "pending_batches": agent.emitter.pending_batches(),
        "accepted": s.emitted.load(Ordering::Relaxed),
        "delivered": s.delivered.load(Ordering::Relaxed),
        "rejected": s.rejected.load(Ordering::Relaxed),
        "dropped": s.dropped.load(Ordering::Relaxed),
        "retries": s.retries.load(Ordering::Relaxed),
    }))
}
