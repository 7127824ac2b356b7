//! `aiaudit agent`: a local forwarder for applications in any language. It
//! accepts the ledger's own `POST /v1/events`, validates the events, writes
//! them durably to its spool (so its answer means "will be delivered", even
//! across kill -9), and forwards them through the emitter SDK.
//!
//! Whatever reaches the agent is signed with its key, so it trusts no one by
//! address alone: applications present the local token (`agent.token` in the
//! spool directory, made 0600 on first start), bodies must be JSON (a web
//! page cannot send that cross-origin without a preflight the agent never
//! answers), and listening beyond loopback needs TLS.

use crate::extract::{parse_events, read_body};
use crate::problem::Problem;
use aiaudit_emitter::{EmitError, Emitter};
use aiaudit_ledger::append::validate_batch;
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
    /// Most events (or OTLP log records) one request may carry.
    pub max_batch_events: usize,
    /// The token applications must present; `None`: `agent.token` in the
    /// spool directory, created on first start.
    pub local_token: Option<String>,
    /// Emitter key that signs every forwarded batch.
    pub signing_key: Option<aiaudit_tlog::Signer>,
    /// The format it signs in (v2, RFC 8785, unless the ledger is older).
    pub signature_format: aiaudit_emitter::SignatureFormat,
    /// How forwarded batches are compressed (zstd once the ledger says so).
    pub compression: aiaudit_emitter::Compression,
    /// Extra CA certificate (PEM) to trust for an https:// ledger.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// PEM certificate and key: serve applications over HTTPS (reloaded on SIGHUP).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

pub const DEFAULT_AGENT_LISTEN: &str = "127.0.0.1:7382";
/// The local token's file in the spool directory (mode 0600).
pub const AGENT_TOKEN_FILE: &str = "agent.token";

pub(crate) struct Agent {
    pub(crate) emitter: Emitter,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_batch_events: usize,
    /// SHA-256 of the local token (compared in constant time).
    token_sha256: [u8; 32],
}

impl Agent {
    /// 401 unless the request carries the local token.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<(), Problem> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                Problem(aiaudit_ledger::Error::unauthorized(format!(
                    "the agent needs its local token: \"Authorization: Bearer <{AGENT_TOKEN_FILE} in the spool directory>\""
                )))
            })?;
        // Digests are compared, not secrets: timing tells nothing of the token.
        let digest = ring::digest::digest(&ring::digest::SHA256, presented.as_bytes());
        if digest.as_ref() != self.token_sha256 {
            return Err(Problem(aiaudit_ledger::Error::unauthorized(
                "wrong agent token",
            )));
        }
        Ok(())
    }
}

/// The local token: given, or read from (or created in) the spool directory.
fn local_token(config: &AgentConfig) -> anyhow::Result<String> {
    if let Some(t) = &config.local_token {
        anyhow::ensure!(
            t.len() >= 16,
            "the agent token must be at least 16 characters"
        );
        return Ok(t.clone());
    }
    let path = config.spool_dir.join(AGENT_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => {
            aiaudit_ledger::keys::check_private(&path)?;
            return Ok(t.trim().to_string());
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
    use base64::Engine;
    let token = format!(
        "aag_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    std::fs::create_dir_all(&config.spool_dir)?;
    aiaudit_ledger::registry::write_private(&path, format!("{token}\n").as_bytes())?;
    eprintln!(
        "aiaudit agent: created the local token in {} (mode 0600); applications send it as a bearer token",
        path.display()
    );
    Ok(token)
}

/// Beyond loopback the agent must speak TLS: its token would travel in the clear.
fn check_listen(config: &AgentConfig) -> anyhow::Result<()> {
    let loopback = match config.listen.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => config
            .listen
            .rsplit_once(':')
            .is_some_and(|(host, _)| host == "localhost"),
    };
    if !loopback && config.tls_cert.is_none() {
        anyhow::bail!(
            "the agent listens on {} beyond loopback: give --tls-cert and --tls-key (applications authenticate with its token, which must not travel in the clear)",
            config.listen
        );
    }
    Ok(())
}

/// Runs the agent until `shutdown` resolves, then drains to the ledger or the spool.
pub async fn run(
    config: AgentConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    check_listen(&config)?;
    let token = local_token(&config)?;
    let cfg = config.clone();
    let emitter = tokio::task::spawn_blocking(move || {
        let mut b = Emitter::builder()
            .endpoint(cfg.ledger_url)
            .spool_dir(cfg.spool_dir)
            .spool_max_bytes(cfg.spool_max_bytes)
            .batch_interval(Duration::from_millis(50))
            .compression(cfg.compression);
        if let Some(t) = cfg.token {
            b = b.token(t);
        }
        if let Some(k) = cfg.signing_key {
            b = b.signing_key(k).signature_format(cfg.signature_format);
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
        max_batch_events: config.max_batch_events,
        token_sha256: ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()?,
    });
    let router = Router::new()
        .route(
            "/v1/events",
            post(accept)
                .layer(axum::middleware::map_response(crate::coding::advertise))
                .options(crate::coding::options),
        )
        .route(
            "/v1/logs",
            post(crate::otlp::agent_logs)
                .layer(axum::middleware::map_response(crate::coding::advertise)),
        )
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
    agent.authenticate(&headers)?;
    let ndjson = match crate::extract::media_type(&headers).as_str() {
        "application/json" => false,
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => true,
        other => {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                format!("Content-Type {other:?}: send application/json (an array of events) or application/x-ndjson"),
            ))
        }
    };
    let coding = crate::coding::Coding::of(&headers)?;
    let bytes = read_body(body, agent.max_body_bytes).await?;
    let bytes = coding.decode(bytes, agent.max_body_bytes)?;
    let events = parse_events(&bytes, ndjson, agent.max_batch_events)?;
    validate_batch(&events)?;
    let n = events.len();
    let a = agent.clone();
    match tokio::task::spawn_blocking(move || a.emitter.emit_durable(events)).await {
        Ok(Ok(())) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"accepted": n, "durable": true})),
        )
            .into_response()),
        Ok(Err(e)) => Err(spool_refusal(e)),
        Err(e) => Err(Problem::internal(e.to_string())),
    }
}

/// Why the spool did not take a batch, as the caller is told: nothing was
/// accepted either way.
pub(crate) fn spool_refusal(e: EmitError) -> Problem {
    match e {
        EmitError::Closed => Problem::unavailable("the agent is shutting down"),
        // The agent signs (v2) and an event holds a number the signature
        // cannot cover: the client's mistake, named, never retried.
        EmitError::Unsignable { index, error } => {
            let path = error.pointer.trim_start_matches('/').replace('/', ".");
            Problem(aiaudit_ledger::invalid_events(
                "an event holds a number that the agent's batch signature (RFC 8785) cannot cover; nothing was accepted",
                vec![aiaudit_ledger::FieldError::event(
                    Some(index),
                    &error.pointer,
                    &path,
                    error.detail,
                )],
            ))
        }
        e => Problem::unavailable(format!(
            "the spool cannot take the batch ({e}); nothing was accepted"
        )),
    }
}

async fn status(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
) -> Result<Json<Value>, Problem> {
    agent.authenticate(&headers)?;
    let s = agent.emitter.stats();
    Ok(Json(json!({
        "pending_batches": agent.emitter.pending_batches(),
        "accepted": s.emitted.load(Ordering::Relaxed),
        "delivered": s.delivered.load(Ordering::Relaxed),
        "rejected": s.rejected.load(Ordering::Relaxed),
        "dropped": s.dropped.load(Ordering::Relaxed),
        "retries": s.retries.load(Ordering::Relaxed),
        "duplicates": s.duplicates.load(Ordering::Relaxed),
        // Request bodies forwarded, before and after compression.
        "body_bytes": s.body_bytes.load(Ordering::Relaxed),
        "wire_bytes": s.wire_bytes.load(Ordering::Relaxed),
    })))
}
