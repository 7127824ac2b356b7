//! `aiaudit agent`: the local forwarder (see `aiaudit_server::agent`).

use aiaudit_server::agent::{AgentConfig, DEFAULT_AGENT_LISTEN};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The ledger to forward to, e.g. http://127.0.0.1:7381
    #[arg(long, env = "AIAUDIT_LEDGER_URL")]
    ledger_url: String,
    /// Bearer token for the ledger.
    #[arg(long, env = "AIAUDIT_TOKEN")]
    token: Option<String>,
    /// Address applications send events to.
    #[arg(long, env = "AIAUDIT_AGENT_LISTEN", default_value = DEFAULT_AGENT_LISTEN)]
    listen: String,
    /// The durable spool: accepted events wait here until the ledger has them.
    #[arg(long, env = "AIAUDIT_SPOOL_DIR", default_value = "./aiaudit-spool")]
    spool_dir: PathBuf,
    /// Most bytes the spool may hold; beyond it new events get 503.
    #[arg(long, default_value_t = 1 << 30)]
    spool_max_bytes: u64,
    /// Sign every batch forwarded to the ledger with this emitter key.
    #[arg(long)]
    signing_key: Option<PathBuf>,
    /// Batch-signature format: aiaudit-batch-v2 (RFC 8785) or, for a ledger
    /// older than v2, aiaudit-batch-v1.
    #[arg(long, default_value = "aiaudit-batch-v2", value_parser = crate::emitter::parse_signature_format)]
    signature_format: aiaudit_emitter::SignatureFormat,
    /// How batches forwarded to the ledger are compressed: auto (zstd once
    /// the ledger's answers advertise it), zstd, gzip or off.
    #[arg(long, default_value = "auto", value_parser = crate::emitter::parse_compression)]
    compression: aiaudit_emitter::Compression,
    /// PEM certificate chain: accept applications over HTTPS (with --tls-key); reloaded on SIGHUP.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Largest request body accepted from applications.
    #[arg(long, default_value_t = 32 << 20)]
    max_body_bytes: usize,
    /// Most events (or OTLP log records) one request may carry.
    #[arg(long, default_value_t = aiaudit_ledger::config::DEFAULT_MAX_BATCH_EVENTS)]
    max_batch_events: usize,
    /// The token applications must send (`Authorization: Bearer …`); by
    /// default `agent.token` in the spool directory, created 0600 on first start.
    #[arg(long, env = "AIAUDIT_AGENT_TOKEN", hide_env_values = true)]
    local_token: Option<String>,
}

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    crate::serve::init_logging("text")?;
    let config = AgentConfig {
        listen: args.listen,
        ledger_url: args.ledger_url,
        token: args.token,
        spool_dir: args.spool_dir,
        spool_max_bytes: args.spool_max_bytes,
        max_body_bytes: args.max_body_bytes,
        max_batch_events: args.max_batch_events,
        local_token: args.local_token,
        signing_key: args
            .signing_key
            .as_deref()
            .map(crate::emitter::load_signing_key)
            .transpose()?,
        signature_format: args.signature_format,
        compression: args.compression,
        ca_cert_pem: crate::ca_cert_pem(),
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(aiaudit_server::agent::run(
        config,
        crate::serve::shutdown_signal(),
    ))?;
    Ok(ExitCode::SUCCESS)
}
