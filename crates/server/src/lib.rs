//! The ledger's HTTP face: routes, the caller's principal from its token
//! or client certificate, body decoding (JSON, NDJSON, OTLP), problem+json
//! (the one mapping from the engine's error), TLS, the dashboard's assets,
//! the OpenAPI description, and the local agent's front. No engine logic:
//! every event goes through `aiaudit_ledger::Ledger::append`.

// Problems are returned on the cold path only; boxing them buys nothing.
#![allow(clippy::result_large_err)]

pub mod agent;
pub mod api;
pub mod coding;

pub mod dashboard;
pub mod extract;
pub mod incidents;
pub mod keys_api;
pub mod openapi;
pub mod otlp;
pub mod policies;
pub mod problem;
pub mod reports;
pub mod retention;
pub mod search;
pub mod stats;
pub mod tls;

pub use aiaudit_ledger::{self as ledger, Ledger, LedgerConfig};

use anyhow::Context;
use std::sync::Arc;

/// Runs `aiaudit serve` until `shutdown` resolves.
pub async fn serve(
    config: LedgerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listen = config.listen.clone();
    let ledger: Arc<Ledger> = Ledger::open(config).await?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        origin = ledger.origin(),
        verifier_key = %ledger.verifier().to_vkey(),
        "serving"
    );
    eprintln!(
        "aiaudit: serving log {} on {}://{} (verifier key {})",
        ledger.origin(),
        if ledger.config().tls_cert.is_some() {
            "https"
        } else {
            "http"
        },
        listener.local_addr()?,
        ledger.verifier().to_vkey()
    );
    let config = ledger.config().clone();
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let cert = tls::ReloadingCert::load(cert, key)?;
            cert.reload_on_sighup()?;
            tls::serve(
                listener,
                api::router(ledger.clone()),
                tls::acceptor(cert, config.tls_client_ca.as_deref())?,
                shutdown,
            )
            .await?;
        }
        (None, None) => tls::serve_plain(listener, api::router(ledger.clone()), shutdown).await?,
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    }
    // Every request has been answered.
    ledger.shutdown().await
}
