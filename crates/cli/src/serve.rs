//! `aiaudit serve`: config file, then environment, then flags.

use aiaudit_ledger::config::{DEFAULT_DATA_DIR, DEFAULT_LISTEN};
use aiaudit_ledger::LedgerConfig;
use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Config file (TOML) holding any of the options below; flags and env override it.
    #[arg(long, env = "AIAUDIT_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory [default: ./aiaudit-data]
    #[arg(long, env = "AIAUDIT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7381]
    #[arg(long, env = "AIAUDIT_LISTEN")]
    listen: Option<String>,
    /// The log's origin (checkpoint first line), fixed at first start [default: aiaudit.local/log]
    #[arg(long, env = "AIAUDIT_ORIGIN")]
    origin: Option<String>,
    /// Longest delay between an acknowledgement and a checkpoint covering it, in ms [default: 1000]
    #[arg(long, env = "AIAUDIT_PUBLISH_INTERVAL_MS")]
    publish_interval_ms: Option<u64>,
    /// Largest request body in bytes [default: 33554432]
    #[arg(long, env = "AIAUDIT_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Most events (or OTLP log records) one request may carry [default: 10000]
    #[arg(long, env = "AIAUDIT_MAX_BATCH_EVENTS")]
    max_batch_events: Option<usize>,
    /// Memory budget for ingest requests in flight, in bytes; beyond it
    /// requests get a fast 503 with Retry-After [default: 1/16 of memory, 32..64 MiB]
    #[arg(long, env = "AIAUDIT_MAX_INFLIGHT_BYTES")]
    max_inflight_bytes: Option<u64>,
    /// The most of that budget one token or certificate holds (beyond it: 429) [default: 0.5]
    #[arg(long, env = "AIAUDIT_CREDENTIAL_INFLIGHT_SHARE")]
    credential_inflight_share: Option<f64>,
    /// Most events per group commit [default: 20000]
    #[arg(long, env = "AIAUDIT_GROUP_COMMIT_MAX_EVENTS")]
    group_commit_max_events: Option<usize>,
    /// Whether checkpoint, hash tiles, proofs and info answer without a token [default: true]
    #[arg(long, env = "AIAUDIT_PUBLIC_READS")]
    public_reads: Option<bool>,
    /// Events per second each token may append; 0 for no limit [default: 500000]
    #[arg(long, env = "AIAUDIT_RATE_LIMIT_EVENTS_PER_SEC")]
    rate_limit_events_per_sec: Option<u64>,
    /// Longest a request may take, in seconds; key rotations (a pass over every key) aside [default: 60]
    #[arg(long, env = "AIAUDIT_REQUEST_TIMEOUT_SECS")]
    request_timeout_secs: Option<u64>,
    /// PEM certificate chain: serve HTTPS (with --tls-key); reloaded on SIGHUP.
    #[arg(long, env = "AIAUDIT_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "AIAUDIT_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): accept client certificates it issued (mutual TLS); a
    /// certificate whose CN or DNS name is a registered emitter with tenants authenticates as it.
    #[arg(long, env = "AIAUDIT_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// A tenant whose events must come in emitter-signed batches (repeatable).
    #[arg(long = "require-signed-tenant")]
    require_signed_tenants: Vec<String>,
    /// Log format: "json" or "text" [default: text]
    #[arg(long, env = "AIAUDIT_LOG_FORMAT")]
    log_format: Option<String>,
    /// Backup location for the built-in schedule: a directory or s3://bucket/prefix (repeatable).
    #[arg(long = "backup-to")]
    backup_to: Vec<String>,
    /// Daily full backup time, HH:MM UTC [default: 02:00]
    #[arg(long, env = "AIAUDIT_BACKUP_FULL_AT")]
    backup_full_at: Option<String>,
    /// Interval of incremental backups, e.g. 6h [default: 6h]
    #[arg(long, env = "AIAUDIT_BACKUP_INCREMENTAL_EVERY")]
    backup_incremental_every: Option<String>,
    /// Keep a tenant's events this long, e.g. acme=400d or *=3y-as-1095d (repeatable; overrides the config table).
    #[arg(long = "retention")]
    retention: Vec<String>,
    /// Data keys older than this are replaced on use (retention shreds whole keys) [default: 30d]
    #[arg(long)]
    data_key_max_age: Option<String>,
    /// How often retention expiry runs [default: 1h]
    #[arg(long)]
    retention_check_interval: Option<String>,
    /// How often every stored tree node is re-checked; 0s: never [default: 6h]
    #[arg(long)]
    scrub_interval: Option<String>,
    /// Seal event content at rest (entry format v3, or v2 before the upgrade is finalized) [default: true]
    #[arg(long, env = "AIAUDIT_ENCRYPTION")]
    encryption: Option<bool>,
    /// Log every read of content, search, export and report by a token as
    /// a trail.access record (docs/security.md) [default: true]
    #[arg(long, env = "AIAUDIT_ACCESS_LOG")]
    access_log: Option<bool>,
    /// Sealed entry format to write: 2 keeps builds before v3 able to read the
    /// log (roll back); 3 keeps builds before subject key families able to;
    /// 4 keeps builds before the openings dictionary able to; 5 finalizes
    /// the upgrade. Default: the log's upgrade gate (5 on a new log; see
    /// `aiaudit upgrade`).
    #[arg(long, env = "AIAUDIT_ENTRY_FORMAT", value_parser = clap::value_parser!(u8).range(2..=5))]
    entry_format: Option<u8>,
    /// Compress sealed content (zstd; with the openings dictionary from
    /// entry format 5) before encryption [default: true]
    #[arg(long, env = "AIAUDIT_COMPRESS_CONTENT")]
    compress_content: Option<bool>,
    /// Derive data subjects' keys from subject key families (entry format 4
    /// and later, embedded storage): a new subject writes nothing to the
    /// keyring [default: true]
    #[arg(long, env = "AIAUDIT_SUBJECT_KEY_FAMILIES")]
    subject_key_families: Option<bool>,
    /// Largest event taken, in bytes of canonical JSON (413 above) [default: 16 MiB]
    #[arg(long, env = "AIAUDIT_MAX_EVENT_BYTES")]
    max_event_bytes: Option<usize>,
    /// Event members of this many bytes or more are stored out of line, as
    /// sealed blobs beside the log [default: 16384]
    #[arg(long, env = "AIAUDIT_BLOB_THRESHOLD", value_parser = clap::value_parser!(u64).range(1024..))]
    blob_threshold: Option<u64>,
    /// A member always stored out of line, as a JSON Pointer, e.g. /output/content (repeatable).
    #[arg(long = "blob-field")]
    blob_fields: Vec<String>,
    /// Keep blobs in S3-compatible object storage, s3://bucket/prefix (AWS_* variables),
    /// instead of the data directory or the database.
    #[arg(long, env = "AIAUDIT_BLOB_STORE")]
    blob_store: Option<String>,
    /// Master key file (base64, mode 0600); keep it off the data disk and out of backups.
    /// Without it: AIAUDIT_MASTER_KEY, else <data-dir>/master.key (generated).
    #[arg(long, env = "AIAUDIT_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// A field replaced by its per-tenant HMAC before storage, e.g. input.content (repeatable).
    #[arg(long = "sensitive-field")]
    sensitive_fields: Vec<String>,
    /// Policy rule file (TOML, docs/policies.md); reloaded when it changes.
    #[arg(long, env = "AIAUDIT_POLICY_FILE")]
    policy_file: Option<PathBuf>,
    /// Where violations are posted as Alertmanager-compatible alerts (http or https URL).
    #[arg(long, env = "AIAUDIT_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// Where the log lives: omit for files in the data directory; a
    /// postgres://user@host:port/db URL to share one log between several nodes.
    #[arg(long, env = "AIAUDIT_STORAGE")]
    storage: Option<String>,
    /// CA certificate (PEM) for the PostgreSQL server's certificate, with
    /// sslmode=require in --storage (default: the system's roots).
    #[arg(long, env = "AIAUDIT_STORAGE_CA")]
    storage_ca: Option<PathBuf>,
    /// On a shared log: how long the publisher lease lasts without renewal,
    /// so how long a publisher cut off or frozen without its connection
    /// closing holds up checkpoints before another node takes over
    /// (1s to 10m) [default: 5s]
    #[arg(long, env = "AIAUDIT_PUBLISHER_LEASE")]
    publisher_lease: Option<String>,
    /// A C2SP tlog-policy file: each checkpoint is submitted to the
    /// witnesses its `witness <name> <vkey> <url>` lines name, and
    /// /checkpoint carries their cosignatures (docs/witnesses.md).
    #[arg(long, env = "AIAUDIT_WITNESS_POLICY")]
    witness_policy: Option<PathBuf>,
    /// Serve at /checkpoint only checkpoints the policy's quorum cosigned,
    /// waiting at most --witness-quorum-max-wait for a newer one.
    #[arg(long, env = "AIAUDIT_WITNESS_QUORUM", requires = "witness_policy")]
    witness_quorum: bool,
    /// With --witness-quorum: the longest a new checkpoint waits for its
    /// quorum before it is served anyway (1s to 10m) [default: 30s]
    #[arg(long, env = "AIAUDIT_WITNESS_QUORUM_MAX_WAIT")]
    witness_quorum_max_wait: Option<String>,
}

/// The config file: every option of `serve`.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    origin: Option<String>,
    publish_interval_ms: Option<u64>,
    max_body_bytes: Option<usize>,
    max_batch_events: Option<usize>,
    max_inflight_bytes: Option<u64>,
    credential_inflight_share: Option<f64>,
    group_commit_max_events: Option<usize>,
    public_reads: Option<bool>,
    require_signed_tenants: Option<Vec<String>>,
    rate_limit_events_per_sec: Option<u64>,
    request_timeout_secs: Option<u64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    log_format: Option<String>,
    encryption: Option<bool>,
    access_log: Option<bool>,
    entry_format: Option<u8>,
    compress_content: Option<bool>,
    subject_key_families: Option<bool>,
    max_event_bytes: Option<usize>,
    blob_threshold: Option<usize>,
    blob_fields: Option<Vec<String>>,
    blob_store: Option<String>,
    master_key_file: Option<PathBuf>,
    sensitive_fields: Option<Vec<String>>,
    storage: Option<String>,
    storage_ca: Option<PathBuf>,
    publisher_lease: Option<String>,
    witness_policy: Option<PathBuf>,
    witness_quorum: Option<bool>,
    witness_quorum_max_wait: Option<String>,
    max_index_lag_events: Option<u64>,
    /// Tenant (or "*") → how long its events are kept, e.g. "400d".
    retention: Option<std::collections::BTreeMap<String, String>>,
    data_key_max_age: Option<String>,
    retention_check_interval: Option<String>,
    scrub_interval: Option<String>,
    backup_to: Option<Vec<String>>,
    backup_full_at: Option<String>,
    backup_incremental_every: Option<String>,
    backup_keep_full: Option<String>,
    backup_keep_incremental: Option<String>,
    policy_file: Option<PathBuf>,
    webhook_url: Option<String>,
    /// `[incidents]`: business hours, jurisdictions, webhooks, detections.
    incidents: Option<aiaudit_ledger::incidents::IncidentConfig>,
    /// `[compliance]`: DPIA references, DPO, residency, per tenant.
    compliance: Option<aiaudit_ledger::reports::privacy::ComplianceConfig>,
}

pub(crate) fn merge(args: ServeArgs) -> anyhow::Result<(LedgerConfig, String)> {
    let mut file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("config file {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let d = LedgerConfig::default();
    let backup = backup_schedule(
        args.backup_to,
        args.backup_full_at,
        args.backup_incremental_every,
        &file,
    )?;
    let mut raw_retention = file.retention.take().unwrap_or_default();
    for r in &args.retention {
        let (tenant, d) = r.split_once('=').with_context(|| {
            format!("--retention {r:?}: expected TENANT=DURATION, e.g. acme=400d")
        })?;
        raw_retention.insert(tenant.to_string(), d.to_string());
    }
    let retention = retention_config(raw_retention)?;
    let secs = |name: &str, v: Option<String>, default: Duration| -> anyhow::Result<Duration> {
        match v {
            None => Ok(default),
            Some(s) => aiaudit_ledger::auth::parse_duration_secs(&s)
                .map(Duration::from_secs)
                .with_context(|| format!("{name}: {s:?} is not a duration such as 30d or 1h")),
        }
    };
    let data_key_max_age = secs(
        "data_key_max_age",
        args.data_key_max_age
            .clone()
            .or(file.data_key_max_age.clone()),
        d.data_key_max_age,
    )?;
    let retention_check_interval = secs(
        "retention_check_interval",
        args.retention_check_interval
            .clone()
            .or(file.retention_check_interval.clone()),
        d.retention_check_interval,
    )?
    .max(Duration::from_secs(1));
    let scrub_interval = secs(
        "scrub_interval",
        args.scrub_interval.clone().or(file.scrub_interval.clone()),
        d.scrub_interval,
    )?;
    let publisher_lease = secs(
        "publisher_lease",
        args.publisher_lease
            .clone()
            .or(file.publisher_lease.clone()),
        d.publisher_lease,
    )?;
    if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&publisher_lease) {
        anyhow::bail!("publisher_lease: {publisher_lease:?} is outside 1s..10m");
    }
    let quorum_wait = secs(
        "witness_quorum_max_wait",
        args.witness_quorum_max_wait
            .clone()
            .or(file.witness_quorum_max_wait.clone()),
        Duration::from_secs(30),
    )?;
    if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&quorum_wait) {
        anyhow::bail!("witness_quorum_max_wait: {quorum_wait:?} is outside 1s..10m");
    }
    let witness_policy = args.witness_policy.clone().or(file.witness_policy.clone());
    let witness_quorum =
        (args.witness_quorum || file.witness_quorum.unwrap_or(false)).then_some(quorum_wait);
    if witness_quorum.is_some() && witness_policy.is_none() {
        anyhow::bail!("witness_quorum needs witness_policy");
    }
    let config = LedgerConfig {
        data_dir: args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        listen: args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string()),
        origin: args.origin.or(file.origin),
        publish_interval: args
            .publish_interval_ms
            .or(file.publish_interval_ms)
            .map(Duration::from_millis)
            .unwrap_or(d.publish_interval),
        max_body_bytes: args
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(d.max_body_bytes),
        max_batch_events: args
            .max_batch_events
            .or(file.max_batch_events)
            .unwrap_or(d.max_batch_events),
        max_inflight_bytes: args.max_inflight_bytes.or(file.max_inflight_bytes),
        credential_inflight_share: args
            .credential_inflight_share
            .or(file.credential_inflight_share)
            .unwrap_or(d.credential_inflight_share),
        group_commit_max_events: args
            .group_commit_max_events
            .or(file.group_commit_max_events)
            .unwrap_or(d.group_commit_max_events)
            .max(1),
        checkpoint_wait: d.checkpoint_wait,
        public_reads: args
            .public_reads
            .or(file.public_reads)
            .unwrap_or(d.public_reads),
        rate_limit_events_per_sec: args
            .rate_limit_events_per_sec
            .or(file.rate_limit_events_per_sec)
            .unwrap_or(d.rate_limit_events_per_sec),
        request_timeout: args
            .request_timeout_secs
            .or(file.request_timeout_secs)
            .map(Duration::from_secs)
            .unwrap_or(d.request_timeout),
        tls_cert: args.tls_cert.or(file.tls_cert),
        tls_key: args.tls_key.or(file.tls_key),
        tls_client_ca: args.tls_client_ca.or(file.tls_client_ca),
        require_signed_tenants: if args.require_signed_tenants.is_empty() {
            file.require_signed_tenants.unwrap_or_default()
        } else {
            args.require_signed_tenants
        },
        encryption: args.encryption.or(file.encryption).unwrap_or(d.encryption),
        access_log: args.access_log.or(file.access_log).unwrap_or(d.access_log),
        entry_format: args.entry_format.or(file.entry_format),
        compress_content: args
            .compress_content
            .or(file.compress_content)
            .unwrap_or(d.compress_content),
        subject_key_families: args
            .subject_key_families
            .or(file.subject_key_families)
            .unwrap_or(d.subject_key_families),
        max_event_bytes: args
            .max_event_bytes
            .or(file.max_event_bytes)
            .unwrap_or(d.max_event_bytes),
        blob_threshold: args
            .blob_threshold
            .map(|n| n as usize)
            .or(file.blob_threshold)
            .unwrap_or(d.blob_threshold),
        blob_fields: if args.blob_fields.is_empty() {
            file.blob_fields.unwrap_or_default()
        } else {
            args.blob_fields
        },
        blob_store: args.blob_store.or(file.blob_store),
        master_key_file: args.master_key_file.or(file.master_key_file),
        sensitive_fields: if args.sensitive_fields.is_empty() {
            file.sensitive_fields.unwrap_or_default()
        } else {
            args.sensitive_fields
        },
        max_index_lag_events: file.max_index_lag_events.unwrap_or(d.max_index_lag_events),
        backup,
        retention,
        data_key_max_age,
        retention_check_interval,
        scrub_interval,
        policy_file: args.policy_file.or(file.policy_file),
        webhook_url: args.webhook_url.or(file.webhook_url),
        storage: args.storage.or(file.storage),
        storage_ca: args.storage_ca.or(file.storage_ca),
        publisher_lease,
        witness_policy,
        witness_quorum,
        incidents: file.incidents.take().unwrap_or_default(),
        compliance: file.compliance.take().unwrap_or_default(),
    };
    config
        .incidents
        .check()
        .map_err(|e| anyhow::anyhow!("config file: {e}"))?;
    config
        .compliance
        .schedule()
        .map_err(|e| anyhow::anyhow!("config file: {e}"))?;
    if let Some(s) = &config.storage {
        if !aiaudit_store::is_postgres_url(s) {
            anyhow::bail!("--storage must be a postgres:// URL (omit it for files in the data directory), got {s:?}");
        }
    }
    if config.publish_interval.is_zero() {
        anyhow::bail!("publish_interval_ms must be at least 1");
    }
    // An entry holds at most 64 KiB: what stays inline must fit.
    if !(1024..=(48 << 10)).contains(&config.blob_threshold) {
        anyhow::bail!(
            "blob_threshold must be between 1024 and 49152 bytes, got {}",
            config.blob_threshold
        );
    }
    if let Some(s) = config
        .blob_store
        .as_deref()
        .filter(|s| !s.starts_with("s3://"))
    {
        anyhow::bail!("--blob-store must be s3://bucket/prefix, got {s:?}");
    }
    if let Some(f) = config.blob_fields.iter().find(|f| !f.starts_with('/')) {
        anyhow::bail!("blob field {f:?} is not a JSON Pointer (say /output/content)");
    }
    if !((64 << 10)..=(1 << 30)).contains(&config.max_event_bytes) {
        anyhow::bail!(
            "max_event_bytes must be between 65536 and 1073741824, got {}",
            config.max_event_bytes
        );
    }
    if !(config.credential_inflight_share > 0.0 && config.credential_inflight_share <= 1.0) {
        anyhow::bail!("credential_inflight_share must be above 0 and at most 1");
    }
    if config.max_inflight_bytes == Some(0) {
        anyhow::bail!("max_inflight_bytes must be at least 1");
    }
    if config.max_batch_events < aiaudit_ledger::config::MIN_MAX_BATCH_EVENTS {
        anyhow::bail!(
            "max_batch_events must be at least {} (emitters and the agent send spooled records of up to that many events)",
            aiaudit_ledger::config::MIN_MAX_BATCH_EVENTS
        );
    }
    let log_format = args
        .log_format
        .or(file.log_format)
        .unwrap_or_else(|| "text".into());
    Ok((config, log_format))
}

fn retention_config(
    raw: std::collections::BTreeMap<String, String>,
) -> anyhow::Result<std::collections::BTreeMap<String, Duration>> {
    raw.into_iter()
        .map(|(tenant, d)| {
            let secs = aiaudit_ledger::auth::parse_duration_secs(&d)
                .filter(|&s| s > 0)
                .with_context(|| {
                    format!("retention.{tenant}: {d:?} is not a duration such as 400d")
                })?;
            Ok((tenant, Duration::from_secs(secs)))
        })
        .collect()
}

fn backup_schedule(
    to: Vec<String>,
    full_at: Option<String>,
    every: Option<String>,
    file: &FileConfig,
) -> anyhow::Result<aiaudit_ledger::backups::BackupSchedule> {
    use aiaudit_ledger::backups::{parse_hh_mm, BackupSchedule};
    let d = BackupSchedule::default();
    let duration =
        |name: &str, v: &Option<String>, default: Duration| -> anyhow::Result<Duration> {
            match v {
                None => Ok(default),
                Some(s) => aiaudit_ledger::auth::parse_duration_secs(s)
                    .filter(|&n| n > 0)
                    .map(Duration::from_secs)
                    .with_context(|| format!("{name}: {s:?} is not a duration such as 6h or 30d")),
            }
        };
    let full_at = full_at.or(file.backup_full_at.clone());
    Ok(BackupSchedule {
        locations: if to.is_empty() {
            file.backup_to.clone().unwrap_or_default()
        } else {
            to
        },
        full_at_minute: match &full_at {
            None => d.full_at_minute,
            Some(s) => parse_hh_mm(s)
                .with_context(|| format!("backup_full_at: {s:?} is not HH:MM (UTC)"))?,
        },
        incremental_every: duration(
            "backup_incremental_every",
            &every.or(file.backup_incremental_every.clone()),
            d.incremental_every,
        )?,
        keep_full: duration("backup_keep_full", &file.backup_keep_full, d.keep_full)?,
        keep_incremental: duration(
            "backup_keep_incremental",
            &file.backup_keep_incremental,
            d.keep_incremental,
        )?,
    })
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let (config, log_format) = merge(args)?;
    init_logging(&log_format)?;
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(aiaudit_server::serve(config, shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

/// Thousands of clients mean thousands of sockets: the soft limit on open
/// files (often 1,024) is raised to the hard one, so a burst of connections
/// meets admission control (a fast 503) rather than failed accepts.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "could not raise the open-file limit");
        }
    }
}

pub fn init_logging(format: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIAUDIT_LOG")
        // The keyring index's storage engine narrates its recovery at info.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fjall=warn,lsm_tree=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => anyhow::bail!("log format {other:?} is not \"json\" or \"text\""),
    }
    Ok(())
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

/// The configuration `serve` would run with from this config file (and the
/// environment), without starting anything: for `aiaudit validate`.
pub fn load_config(
    config: Option<&std::path::Path>,
    data_dir: Option<&std::path::Path>,
) -> anyhow::Result<LedgerConfig> {
    #[derive(clap::Parser)]
    struct Only {
        #[command(flatten)]
        serve: ServeArgs,
    }
    let mut argv = vec!["serve".to_string()];
    if let Some(c) = config {
        argv.push("--config".into());
        argv.push(c.display().to_string());
    }
    if let Some(d) = data_dir {
        argv.push("--data-dir".into());
        argv.push(d.display().to_string());
    }
    let only = <Only as clap::Parser>::try_parse_from(argv)?;
    Ok(merge(only.serve)?.0)
}
