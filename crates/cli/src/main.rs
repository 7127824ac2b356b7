//! `aiaudit`: a thin layer of subcommands over the library crates.

mod agent;
mod backup;
mod bench;
#[cfg(test)]
mod config_docs;
mod corpus;
mod dr;
mod emit;
mod emitter;
mod incident;
mod keys;
mod migrate;
mod proof;
mod query;
mod report;
mod serve;
mod token;
mod upgrade;
mod validate;
mod verify;
mod version;
mod violations;
mod witness;

use clap::{Parser, Subcommand};

// The ingest path allocates many small JSON values per event; mimalloc
// handles that with less contention than glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "aiaudit",
    version,
    long_version = version::LONG_VERSION.as_str(),
    about = "AI Audit Emitter: a tamper-evident audit ledger for AI systems"
)]
struct Cli {
    /// PEM file of a CA (or self-signed certificate) to trust for https:// URLs, besides the system's roots.
    #[arg(long, global = true, env = "AIAUDIT_CA_CERT")]
    ca_cert: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the ledger (HTTP API on 127.0.0.1:7381, data in ./aiaudit-data).
    Serve(Box<serve::ServeArgs>),
    /// Audit a log: checkpoint signature, every tile and entry, consistency with a saved checkpoint.
    Verify(verify::VerifyArgs),
    /// Local forwarder: accepts events, spools them durably, delivers them to the ledger.
    Agent(agent::AgentArgs),
    /// Send NDJSON events from a file or stdin to the ledger.
    Emit(emit::EmitArgs),
    /// Emitter keys for signed batches: keygen, register, list.
    Emitter(emitter::EmitterArgs),
    /// Manage API tokens of a running ledger (admin).
    Token(token::TokenArgs),
    /// Encryption keys of a running ledger (admin): rotate, rotate-master, status.
    Keys(keys::KeysArgs),
    /// Erase a data subject by destroying its keys (crypto-shredding); the erasure is logged.
    Erase(keys::EraseArgs),
    /// The HMAC a sensitive field holding a known value was replaced by (to search for it).
    Hash(keys::HashArgs),
    /// Search a running ledger's events (auditor): a table, or JSON lines.
    Query(query::QueryArgs),
    /// Export matching events with their proofs as a bundle that verifies offline.
    Export(query::ExportArgs),
    /// Compliance report of one tenant over a period (EU AI Act record keeping, integrity, violations, erasures).
    Report(report::ReportArgs),
    /// Rebuild the search index of a stopped ledger from its log alone.
    Reindex(query::ReindexArgs),
    /// Disaster-recovery rehearsal: restore, serve, verify, compare with live; RTO and RPO.
    Dr(dr::DrArgs),
    /// Pre- and post-deployment checks: config, key files, disk, TLS, health, checkpoint, backups, clock.
    Validate(validate::ValidateArgs),
    /// Policy violations: list, acknowledge, resolve (auditor).
    Violations(violations::ViolationsArgs),
    /// Incidents: open, list, show, ack, mitigate, resolve, review, breach
    /// clocks and regulator packs (auditor or admin).
    Incident(incident::IncidentArgs),
    /// Load generator: events/s and acknowledgement latency against a running ledger.
    Bench(bench::BenchArgs),
    /// Backups of a running ledger: create (to directories and S3), list, verify.
    Backup(backup::BackupArgs),
    /// Restore a backup (a full one and its incrementals) into a new data directory, verified.
    Restore(backup::RestoreArgs),
    /// Move a stopped embedded log into PostgreSQL with the same tree (same root at the same size).
    Migrate(migrate::MigrateArgs),
    /// The log's entry-format gate: status, or finalize an upgrade (no rollback past it).
    Upgrade(upgrade::UpgradeArgs),
    /// Write a C2SP tlog-proof of one event (entry, inclusion proof, cosigned checkpoint).
    Proof(proof::ProofArgs),
    /// Run a witness (C2SP tlog-witness) that cosigns a log's checkpoints only when consistent.
    Witness(witness::WitnessArgs),
}

/// mimalloc's `mi_option_purge_delay`, by its place in `mi_option_e` (the
/// same in its versions 2 and 3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// Freed memory goes back to the system 100 ms after it was freed, not
/// mimalloc's 1 s. With arenas committed as used (.cargo/config.toml) this
/// cut the ledger's peak RSS by a third at the same ingest rate; 0 ms cut
/// more and cost 15 % of ingest (docs/performance.md, "Data subjects at
/// scale").
const PURGE_DELAY_MS: std::os::raw::c_long = 100;

/// Sets the purge delay, unless `MIMALLOC_PURGE_DELAY` chooses otherwise.
fn return_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: a plain setter of an integer option, read at each purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

fn main() -> ExitCode {
    return_freed_memory();
    let cli = Cli::parse();
    if let Some(path) = &cli.ca_cert {
        match std::fs::read(path) {
            Ok(pem) => {
                let _ = CA_CERT.set(pem);
            }
            Err(e) => {
                eprintln!("aiaudit: error: reading --ca-cert {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Verify(args) => verify::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Emit(args) => emit::run(args),
        Command::Token(args) => token::run(args),
        Command::Emitter(args) => emitter::run(args),
        Command::Keys(args) => keys::run_keys(args),
        Command::Query(args) => query::run_query(args),
        Command::Dr(args) => dr::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Violations(args) => violations::run(args),
        Command::Incident(args) => incident::run(args),
        Command::Export(args) => query::run_export(args),
        Command::Reindex(args) => query::run_reindex(args),
        Command::Report(args) => report::run(args),
        Command::Erase(args) => keys::run_erase(args),
        Command::Hash(args) => keys::run_hash(args),
        Command::Backup(args) => backup::run(args),
        Command::Restore(args) => backup::run_restore(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Upgrade(args) => upgrade::run(args),
        Command::Witness(args) => witness::run(args),
        Command::Proof(args) => proof::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("aiaudit: error: {e:#}");
            if refused(&e) {
                eprintln!(
                    "aiaudit: hint: nothing answered at that address: is the ledger running, \
                     and is --url (or AIAUDIT_URL; --ledger-url for the agent) right?"
                );
            }
            ExitCode::from(2)
        }
    }
}

/// Whether `e` is, at bottom, a connection nobody answered.
fn refused(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_connect)
    })
}

/// Default headers carrying a bearer token, marked sensitive so it never
/// shows in debug output.
pub(crate) fn auth_headers(token: Option<&str>) -> anyhow::Result<reqwest::header::HeaderMap> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
            .map_err(|_| anyhow::anyhow!("--token holds characters not allowed in a header"))?;
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    Ok(headers)
}

/// The extra CA certificate from `--ca-cert`, if any.
static CA_CERT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

pub(crate) fn ca_cert_pem() -> Option<Vec<u8>> {
    CA_CERT.get().cloned()
}

fn root_certificate() -> anyhow::Result<Option<reqwest::Certificate>> {
    ca_cert_pem()
        .map(|pem| {
            reqwest::Certificate::from_pem(&pem)
                .map_err(|e| anyhow::anyhow!("--ca-cert is not a PEM certificate: {e}"))
        })
        .transpose()
}

/// A blocking HTTP client with the bearer token and the extra CA, if given.
pub(crate) fn blocking_client(token: Option<&str>) -> anyhow::Result<reqwest::blocking::Client> {
    let mut b = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .default_headers(auth_headers(token)?);
    if let Some(cert) = root_certificate()? {
        b = b.add_root_certificate(cert);
    }
    Ok(b.build()?)
}

/// An async HTTP client with the bearer token and the extra CA, if given.
pub(crate) fn async_client(
    token: Option<&str>,
    connections: usize,
) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .pool_max_idle_per_host(connections)
        .default_headers(auth_headers(token)?);
    if let Some(cert) = root_certificate()? {
        b = b.add_root_certificate(cert);
    }
    Ok(b.build()?)
}

/// A read client of the ledger at `url` (`aiaudit-client`), with the
/// bearer token and the extra CA, if given.
pub(crate) fn ledger_client(
    url: &str,
    token: Option<&str>,
) -> anyhow::Result<aiaudit_client::Client> {
    Ok(aiaudit_client::Client::with_http(
        url,
        blocking_client(token)?,
    ))
}
