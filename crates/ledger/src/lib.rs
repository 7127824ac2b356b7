//! The ledger engine: the whole life of an event behind one small API, in
//! the order an event travels: [`Ledger::append`] (the front door: every
//! rule once), the sequencer (group commit: dedup by tenant and id, an
//! fsync, then the acknowledgement), the publisher (integration and signed
//! checkpoints), and the readers (tiles, entries, proofs, search, exports,
//! reports). Keys, tokens, emitters, policies, retention and backups hang
//! off the same [`Ledger`]. Its fields are private: every way in goes
//! through its methods.
//!
//! Not here: HTTP (`aiaudit-server` maps [`Error`] to problem+json in one
//! place), tree math and formats (`aiaudit-tlog`), event validation and
//! entry encoding (`aiaudit-event`), files and recovery (`aiaudit-store`).

// Errors are returned on the cold path only; boxing them buys nothing.
#![allow(clippy::result_large_err)]

pub mod access;
mod admin;
pub mod admission;
pub mod append;
pub mod auth;
pub mod backups;
pub mod compliance_checks;
pub mod config;
pub mod emitters;
pub mod entry_format;
pub mod error;
pub mod incidents;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod policies;
pub mod publisher;
mod read;
pub mod registry;
pub mod reports;
pub mod retention;
pub mod scrub;
pub mod sealing;
pub mod search;
pub mod sequencer;
pub mod stats;
pub mod witnessing;

pub use admin::KeyringImage;
pub use append::{Accepted, Batch, BatchSignature, SignatureFormat};
pub use auth::{Principal, Role};
pub use config::LedgerConfig;
pub use error::{invalid_events, Error, FieldError, Kind, Result};
pub use read::{EntryView, Readiness, TileBytes};

use aiaudit_store::{FsStore, PgStore, Storage};
use aiaudit_tlog::{Checkpoint, Signer, Verifier};
use anyhow::Context;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{watch, Notify};

/// A signed checkpoint as served, with when it was published.
#[derive(Debug)]
pub struct Published {
    pub checkpoint: Checkpoint,
    pub note: String,
    pub at: Instant,
}

/// The running ledger.
pub struct Ledger {
    store: Arc<dyn Storage>,
    signer: Arc<Signer>,
    verifier: Verifier,
    config: LedgerConfig,
    sequencer: sequencer::Handle,
    latest: watch::Receiver<Arc<Published>>,
    tokens: auth::Tokens,
    emitters: emitters::Emitters,
    rate_limiter: limits::RateLimiter,
    /// The bound on ingest work in flight (requests shed beyond it).
    admission: Arc<admission::Admission>,
    metrics: Arc<metrics::Metrics>,
    publish_now: Arc<Notify>,
    keyring: Arc<aiaudit_keyring::Keyring>,
    /// The search index (the node's own file, or shared in PostgreSQL),
    /// and how many entries it covers.
    index: Arc<aiaudit_index::Index>,
    indexed: Arc<std::sync::atomic::AtomicU64>,
    backup_status: backups::BackupStatus,
    /// Legal holds in force (they suspend retention expiry).
    holds: retention::Holds,
    /// Policy evaluation and the violations' lifecycle.
    policies: Arc<policies::PolicyService>,
    /// Data keys destroyed (erasures, expiry) as this node knows: answers
    /// carry it (`aiaudit-erasure-epoch`) so the dashboard drops saved
    /// decrypted answers when it moves.
    erasure_epoch: std::sync::atomic::AtomicU64,
    /// The sealed entry format this node writes (2 or 3; see [`entry_format`]).
    entry_format: u8,
    /// The witnesses asked to cosign each checkpoint, when a policy is set.
    witnessing: Option<Arc<witnessing::Witnessing>>,
    /// Incidents, their deadlines and breach clocks.
    incidents: Arc<incidents::IncidentService>,
    /// Reads noted and not yet logged (`trail.access`).
    access: access::AccessLog,
}

/// Opens the data directory (recovering it after a crash), loads or creates
/// the signing key, and starts the sequencer and publisher.
pub async fn start(config: LedgerConfig) -> anyhow::Result<Arc<Ledger>> {
    // Private from the first file on: umask 077 before anything is created.
    keys::private_umask();
    let existed = config.data_dir.exists();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let narrowed = keys::make_private(&config.data_dir)?;
    // The admin token is a secret written once: exposed, it may have leaked.
    let admin_token = config.data_dir.join(auth::ADMIN_TOKEN_FILE);
    if admin_token.exists() {
        keys::check_private(&admin_token)?;
    }
    if existed && narrowed > 0 {
        tracing::warn!(
            narrowed,
            data_dir = %config.data_dir.display(),
            "the data directory was readable by other users; narrowed to 0700/0600"
        );
    }
    let (store, recovery) = open_storage(&config).await?;
    start_with_storage(config, store, recovery).await
}

/// [`start`] on a log already opened (tests wrap it to inject faults).
pub async fn start_with_storage(
    config: LedgerConfig,
    store: Arc<dyn Storage>,
    recovery: aiaudit_store::Recovery,
) -> anyhow::Result<Arc<Ledger>> {
    tracing::info!(
        size = recovery.size,
        checkpoint_size = recovery.checkpoint_size,
        truncated_unacknowledged = recovery.truncated_entries,
        rebuilt_levels = recovery.rebuilt_levels,
        recovery_ms = recovery.elapsed.as_millis() as u64,
        "log opened"
    );
    let entry_format = {
        let (dir, store, chosen) = (config.data_dir.clone(), store.clone(), config.entry_format);
        tokio::task::spawn_blocking(move || entry_format::decide(&dir, &*store, chosen)).await??
    };
    tracing::info!(entry_format, "sealed entry format");
    // A node that brings the log's key joins a log someone else created
    // (and, sealing content, needs that log's master key).
    let joining = config.encryption
        && (std::env::var(keys::LOG_KEY_ENV).is_ok_and(|k| !k.trim().is_empty())
            || config.data_dir.join(keys::KEY_FILE).exists());
    let signer = Arc::new(keys::load_or_create(
        &config.data_dir,
        config.origin.as_deref(),
    )?);
    let verifier = signer.verifier();
    let (tokens, new_admin) = {
        let (dir, shared) = (
            config.data_dir.clone(),
            store.shared().then(|| store.clone()),
        );
        tokio::task::spawn_blocking(move || auth::Tokens::open(&dir, shared)).await??
    };
    if new_admin.is_some() {
        eprintln!(
            "aiaudit: created an admin token in {} (mode 0600); use it to create the others",
            config.data_dir.join(auth::ADMIN_TOKEN_FILE).display()
        );
    }
    let emitters =
        emitters::Emitters::open(&config.data_dir, store.shared().then(|| store.clone()))?;
    let keyring = {
        let (config, store) = (config.clone(), store.clone());
        Arc::new(
            tokio::task::spawn_blocking(move || keys::open_keyring(&config, &*store, joining))
                .await??,
        )
    };
    keyring.set_max_key_age(config.data_key_max_age);
    if !keyring.shared() {
        let families = entry_format >= entry_format::FAMILIES && config.subject_key_families;
        keys::start_families(&keyring, &store, families)?;
    }
    let destroyed_keys = keyring.stats().destroyed_keys as u64;
    if keyring.shared() {
        keys::spawn_keyring_refresh(keyring.clone());
    }
    let holds = {
        let (dir, store) = (config.data_dir.clone(), store.clone());
        let shared = store.shared().then_some(store);
        tokio::task::spawn_blocking(move || retention::Holds::open(&dir, shared)).await??
    };
    let initial = publisher::initial(&*store, &signer, &verifier)?;
    let (latest_tx, latest) = watch::channel(Arc::new(initial));
    let publish_now = Arc::new(Notify::new());
    let sequencer = sequencer::spawn(store.clone(), config.group_commit_max_events);
    publisher::spawn(
        store.clone(),
        signer.clone(),
        verifier.clone(),
        config.publish_interval,
        latest_tx,
        publish_now.clone(),
    );
    let rate_limiter = limits::RateLimiter::new(config.rate_limit_events_per_sec);
    let metrics = Arc::new(metrics::Metrics::new());
    let admission = admission::Admission::new(
        config
            .max_inflight_bytes
            .unwrap_or_else(|| admission::default_budget(admission::available_memory())),
        config.credential_inflight_share,
        metrics.admission.clone(),
    );
    let index = {
        let (config, store) = (config.clone(), store.clone());
        Arc::new(
            tokio::task::spawn_blocking(move || search::open(&config, &*store))
                .await?
                .context("opening the search index")?,
        )
    };
    let indexed = Arc::new(std::sync::atomic::AtomicU64::new(index.indexed_size()?));
    let (policy_service, policy_feed) = {
        let (config, store, index, keyring) = (
            config.clone(),
            store.clone(),
            index.clone(),
            keyring.clone(),
        );
        tokio::task::spawn_blocking(move || policies::open(&config, &store, &index, &keyring))
            .await?
            .context("opening policies")?
    };
    let (incident_service, incident_tasks) = {
        let (config, store, index, keyring) = (
            config.clone(),
            store.clone(),
            index.clone(),
            keyring.clone(),
        );
        tokio::task::spawn_blocking(move || incidents::open(&config, &store, &index, &keyring))
            .await?
            .context("opening incidents")?
    };
    search::spawn_indexer(
        store.clone(),
        index.clone(),
        indexed.clone(),
        metrics.clone(),
    );
    metrics.recovery_seconds.set(recovery.elapsed.as_secs_f64());
    let witnessing = match &config.witness_policy {
        Some(path) => {
            let w = Arc::new(witnessing::Witnessing::load(
                path,
                &verifier.to_vkey(),
                config.witness_quorum,
                metrics.clone(),
            )?);
            w.set_detector(incident_service.detector());
            witnessing::spawn(w.clone(), store.clone(), latest.clone());
            Some(w)
        }
        None => None,
    };
    let ledger = Arc::new(Ledger {
        entry_format,
        witnessing,
        store,
        signer,
        verifier,
        config,
        sequencer,
        latest,
        tokens,
        emitters,
        rate_limiter,
        admission,
        metrics,
        publish_now,
        keyring,
        index,
        indexed,
        backup_status: Default::default(),
        holds,
        policies: policy_service,
        incidents: incident_service,
        erasure_epoch: std::sync::atomic::AtomicU64::new(destroyed_keys),
        access: Default::default(),
    });
    if let Some(feed) = policy_feed {
        policies::spawn(ledger.clone(), feed);
    }
    incidents::spawn(ledger.clone(), incident_tasks);
    Ok(ledger)
}

/// Opens the log where the configuration says: the data directory's files
/// (recovering them after a crash) or a shared PostgreSQL database.
async fn open_storage(
    config: &LedgerConfig,
) -> anyhow::Result<(Arc<dyn Storage>, aiaudit_store::Recovery)> {
    let dir = config.data_dir.clone();
    let storage = config.storage.clone();
    let ca = config.storage_ca.clone();
    let lease = aiaudit_store::LeaseConfig::with_length(config.publisher_lease);
    let blob_store = config.blob_store.clone();
    tokio::task::spawn_blocking(move || {
        let (log, recovery) = match storage {
            Some(url) => {
                let (s, r) = PgStore::open_with(&url, ca.as_deref(), lease)
                    .context("opening the PostgreSQL log")?;
                (Arc::new(s) as Arc<dyn Storage>, r)
            }
            None => {
                let (s, r) = FsStore::open(&dir)
                    .with_context(|| format!("opening data directory {}", dir.display()))?;
                (Arc::new(s) as Arc<dyn Storage>, r)
            }
        };
        // Large content in object storage, whatever holds the log.
        let store = match blob_store {
            Some(spec) => {
                let blobs = aiaudit_store::ObjectBlobs::open(&spec)?;
                Arc::new(aiaudit_store::WithObjectBlobs::new(log, blobs)) as Arc<dyn Storage>
            }
            None => log,
        };
        Ok((store, recovery))
    })
    .await?
}

impl Ledger {
    /// Opens the ledger ([`start`]) and starts what runs beside requests:
    /// registry refresh on a shared log, scheduled backups, retention
    /// expiry and the scrub.
    pub async fn open(config: LedgerConfig) -> anyhow::Result<Arc<Ledger>> {
        let ledger = start(config).await?;
        if ledger.tokens.shared() {
            registry::spawn_refresh(ledger.clone());
        }
        backups::spawn(ledger.clone())?;
        retention::spawn(ledger.clone(), ledger.config.retention_check_interval);
        scrub::spawn(ledger.clone(), ledger.config.scrub_interval);
        compliance_checks::spawn(ledger.clone())?;
        access::spawn(ledger.clone());
        Ok(ledger)
    }

    /// After the last request: publishes a last checkpoint and makes the
    /// derived indexes durable, so the next start has nothing to rebuild.
    pub async fn shutdown(self: &Arc<Self>) -> anyhow::Result<()> {
        // The last reads are logged before the last checkpoint.
        self.flush_access().await;
        let (store, signer, keyring) = (
            self.store.clone(),
            self.signer.clone(),
            self.keyring.clone(),
        );
        tokio::task::spawn_blocking(move || {
            if store.is_publisher() {
                publisher::publish(&*store, &signer)?;
            }
            store.sync()?;
            // The next start notes no entry's members again.
            keyring.write_members_if_behind()?;
            // Another node of a shared log takes over at once.
            store.step_down()?;
            Ok::<_, anyhow::Error>(())
        })
        .await??;
        tracing::info!("stopped cleanly");
        Ok(())
    }

    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    /// The sealed entry format this node writes (2 or 3).
    pub fn entry_format(&self) -> u8 {
        self.entry_format
    }

    /// The log's origin (its name in checkpoints).
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The key checkpoints verify with.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Who is calling, from the value of an `Authorization` header (`None`
    /// without one): 401 for a token unknown, revoked or expired.
    pub fn principal(&self, authorization: Option<&[u8]>) -> Result<Option<Principal>> {
        self.tokens.principal(authorization)
    }

    /// The emitter a verified client certificate names (mutual TLS): one
    /// registered with tenants, as an emitter principal of those tenants.
    pub fn certificate_principal(&self, names: &[String]) -> Result<Principal> {
        let e = self.emitters.by_certificate(names).ok_or_else(|| {
            Error::unauthorized(format!(
                "the client certificate ({}) is not mapped to a registered emitter with tenants; send a token or register the emitter with --tenant",
                names.join(", ")
            ))
        })?;
        Ok(Principal {
            token_id: format!("cert:{}", e.name),
            role: Role::Emitter,
            tenants: e.tenants,
        })
    }

    /// Counters and gauges in the OpenMetrics text format.
    pub async fn metrics_text(self: &Arc<Self>) -> Result<String> {
        let latest = self.latest();
        self.count_open_incidents();
        self.metrics.publisher.set(self.store.is_publisher() as i64);
        if let Some(lease) = self.store.publisher_lease() {
            self.metrics.lease_term.set(lease.term as i64);
            self.metrics
                .lease_remaining
                .set(lease.remaining_ms() as f64 / 1000.0);
        }
        self.metrics
            .keyring_flush_failed
            .set(self.keyring.flush_failed() as i64);
        self.metrics.fenced_writes.inner().store(
            self.store.fenced_writes(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let l = self.clone();
        tokio::task::spawn_blocking(move || {
            l.metrics.render(
                &l.config.data_dir,
                latest.checkpoint.size,
                l.store.size(),
                latest.at.elapsed().as_secs_f64(),
            )
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))
    }

    /// Reserves room for an ingest request of `principal` whose body is
    /// `body_bytes` long (compressed or not), before the body is read: the
    /// request is refused at once (503, or 429 beyond the credential's
    /// share, with `Retry-After`) when the budget for work in flight is
    /// spent. Hold the permit until the answer is built.
    pub fn admit(
        &self,
        principal: &Principal,
        body_bytes: u64,
        compressed: bool,
    ) -> Result<admission::Permit> {
        self.admission.admit(
            &principal.token_id,
            admission::request_cost(body_bytes, compressed),
        )
    }

    /// The budget for ingest work in flight, in bytes.
    pub fn inflight_budget(&self) -> u64 {
        self.admission.budget()
    }

    /// Bytes of HTTP bodies, counted by the HTTP layer.
    pub fn count_bytes(&self, received: Option<u64>, sent: Option<u64>) {
        if let Some(n) = received {
            self.metrics.request_bytes.inc_by(n);
        }
        if let Some(n) = sent {
            self.metrics.response_bytes.inc_by(n);
        }
    }

    /// Data keys destroyed as this node knows (erasures, expiry): readers
    /// that keep decrypted answers drop them when it moves.
    pub fn erasure_epoch(&self) -> u64 {
        self.erasure_epoch
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}
