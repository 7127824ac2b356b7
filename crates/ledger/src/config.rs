use std::path::PathBuf;
use std::time::Duration;

/// Settings of `aiaudit serve`, after config file, environment and flags are merged.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    pub data_dir: PathBuf,
    pub listen: String,
    /// The log's origin; `None` keeps the one in the data directory (or the default on first start).
    pub origin: Option<String>,
    /// Longest time between an acknowledgement and a checkpoint covering it.
    pub publish_interval: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Most events one request may carry (JSON, NDJSON or OTLP log records).
    pub max_batch_events: usize,
    /// The memory budget for ingest requests in flight (estimated bytes,
    /// see `admission`); `None`: 1/16 of the memory available, 32..64 MiB.
    pub max_inflight_bytes: Option<u64>,
    /// The most of that budget one credential (token or certificate) holds.
    pub credential_inflight_share: f64,
    /// Most events one group commit (one fsync) takes.
    pub group_commit_max_events: usize,
    /// How long `?wait=checkpoint` waits before answering 503.
    pub checkpoint_wait: Duration,
    /// Whether the checkpoint, hash tiles, proofs and info answer without a token.
    pub public_reads: bool,
    /// Tenants whose events must come in emitter-signed batches.
    pub require_signed_tenants: Vec<String>,
    /// Events per second each token may append (0: unlimited).
    pub rate_limit_events_per_sec: u64,
    /// Longest a request may take before it is answered 503.
    pub request_timeout: Duration,
    /// PEM certificate chain and private key: serve HTTPS (reloaded on SIGHUP).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: verify client certificates (mutual TLS) and map
    /// them to registered emitters.
    pub tls_client_ca: Option<PathBuf>,
    /// Seal event content at rest (entry format v2 or v3). On by default.
    pub encryption: bool,
    /// Log every read of content, search, export and report by a token as
    /// `trail.access` records (docs/security.md). On by default.
    pub access_log: bool,
    /// The sealed entry format to write: `None` follows the log's upgrade
    /// gate (v3 on a new log, v2 until `aiaudit upgrade finalize` on an
    /// older one); `Some(2)` keeps writing v2 (a blue-green upgrade while
    /// older builds still serve the log); `Some(3)` finalizes the upgrade.
    pub entry_format: Option<u8>,
    /// Compress sealed content (zstd) before encryption, in format v3. On by default.
    pub compress_content: bool,
    /// Derive data subjects' keys from subject key families (entry format
    /// 4, a keyring file only) rather than give each subject a random key
    /// of its own: a new subject then writes nothing to the keyring. On by
    /// default; off makes each new subject a key record again.
    pub subject_key_families: bool,
    /// The largest event taken, in bytes of its canonical JSON (413 above).
    pub max_event_bytes: usize,
    /// Event members whose canonical JSON reaches this many bytes are
    /// stored out of line, as blobs beside the log (format v3).
    pub blob_threshold: usize,
    /// Members (JSON Pointers, `/input/content`) stored out of line
    /// whenever present, whatever their size.
    pub blob_fields: Vec<String>,
    /// `s3://bucket/prefix`: blobs in S3-compatible object storage instead
    /// of the log's own backend (`None`: the data directory or the database).
    pub blob_store: Option<String>,
    /// The master key file; `None`: `AIAUDIT_MASTER_KEY`, else `<data-dir>/master.key`.
    pub master_key_file: Option<PathBuf>,
    /// How long each tenant's events are kept ("*": every other tenant);
    /// none: forever. See crates/server/src/retention.rs.
    pub retention: std::collections::BTreeMap<String, Duration>,
    /// Data keys older than this are replaced on their next use.
    pub data_key_max_age: Duration,
    /// How often every stored tree node is re-checked (zero: never).
    pub scrub_interval: Duration,
    /// How often retention expiry runs.
    pub retention_check_interval: Duration,
    /// The backup schedule (off without locations).
    pub backup: crate::backups::BackupSchedule,
    /// Largest search index lag (entries) before /readyz fails.
    pub max_index_lag_events: u64,
    /// Dotted field paths replaced by their per-tenant HMAC before storage.
    pub sensitive_fields: Vec<String>,
    /// Policy rules (TOML), reloaded when the file changes; `None`: no policies.
    pub policy_file: Option<PathBuf>,
    /// Where violations are posted (Alertmanager-compatible JSON).
    pub webhook_url: Option<String>,
    /// Where the log lives: `None` for files in `data_dir` (the default), or
    /// a `postgres://` URL shared by several nodes (docs/scaling.md).
    pub storage: Option<String>,
    /// CA certificate (PEM) the PostgreSQL server's certificate must chain
    /// to, with `sslmode=require`; `None`: the system's roots.
    pub storage_ca: Option<PathBuf>,
    /// How long the publisher lease of a shared log lasts without renewal:
    /// the longest a silently cut-off or frozen publisher holds up
    /// checkpoints before another node takes over (docs/scaling.md).
    pub publisher_lease: std::time::Duration,
    /// A C2SP tlog-policy file whose `witness` lines (with URLs) are the
    /// witnesses each checkpoint is submitted to (docs/witnesses.md).
    pub witness_policy: Option<PathBuf>,
    /// Serve (at `/checkpoint`) only checkpoints the policy's quorum
    /// cosigned, unless the newest has waited longer than this; `None`
    /// serves the newest at once with whatever cosignatures it has.
    pub witness_quorum: Option<std::time::Duration>,
    /// Incidents: business hours, jurisdictions, webhooks, detections
    /// (`[incidents]`, docs/incidents.md).
    pub incidents: crate::incidents::IncidentConfig,
    /// What reports cannot read from the log: DPIA references, DPO,
    /// residency statements (`[compliance]`, docs/reports.md).
    pub compliance: crate::reports::privacy::ComplianceConfig,
}

pub const DEFAULT_MAX_BATCH_EVENTS: usize = 10_000;
/// Events up to 16 MiB: an AI conversation with its retrieved documents.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 << 20;
/// Members of 16 KiB or more go out of line: an entry stays small enough
/// for entry bundles (and what auditors download to check the log), while
/// ordinary events (about 1 KiB) never pay for a blob.
pub const DEFAULT_BLOB_THRESHOLD: usize = 16 << 10;
/// The least `max_batch_events` a ledger may set: emitters (the SDK, so the
/// agent) spool records of up to this many events and send each whole.
pub const MIN_MAX_BATCH_EVENTS: usize = 1_000;
pub const DEFAULT_ORIGIN: &str = "aiaudit.local/log";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7381";
pub const DEFAULT_DATA_DIR: &str = "./aiaudit-data";

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: DEFAULT_LISTEN.to_string(),
            origin: None,
            publish_interval: Duration::from_millis(1000),
            max_body_bytes: 32 << 20,
            max_batch_events: DEFAULT_MAX_BATCH_EVENTS,
            max_inflight_bytes: None,
            credential_inflight_share: 0.5,
            group_commit_max_events: 20_000,
            checkpoint_wait: Duration::from_secs(10),
            public_reads: true,
            require_signed_tenants: Vec::new(),
            rate_limit_events_per_sec: 500_000,
            request_timeout: Duration::from_secs(60),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            encryption: true,
            access_log: true,
            entry_format: None,
            compress_content: true,
            subject_key_families: true,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            blob_threshold: DEFAULT_BLOB_THRESHOLD,
            blob_fields: Vec::new(),
            blob_store: None,
            master_key_file: None,
            sensitive_fields: Vec::new(),
            max_index_lag_events: 1_000_000,
            backup: Default::default(),
            retention: Default::default(),
            data_key_max_age: Duration::from_secs(aiaudit_keyring::DEFAULT_MAX_KEY_AGE_SECS),
            retention_check_interval: Duration::from_secs(3600),
            scrub_interval: Duration::from_secs(6 * 3600),
            policy_file: None,
            webhook_url: None,
            storage: None,
            storage_ca: None,
            publisher_lease: std::time::Duration::from_secs(5),
            witness_policy: None,
            witness_quorum: None,
            incidents: Default::default(),
            compliance: Default::default(),
        }
    }
}
