//! The ledger's HTTP API and the pipeline behind it, in the order an event
//! travels: [`api`] (ingest and readers), [`sequencer`] (group commit),
//! [`publisher`] (integration and signed checkpoints).
//!
//! Not here: tree math and formats (`aiaudit-tlog`), event validation and
//! entry encoding (`aiaudit-event`), files and recovery (`aiaudit-store`).

// Problems are returned on the cold path only; boxing them buys nothing.
#![allow(clippy::result_large_err)]

pub mod agent;
pub mod api;
pub mod append;
pub mod auth;
pub mod backups;
pub mod bounded;
pub mod config;
pub mod dashboard;
pub mod emitters;
pub mod keys;
pub mod keys_api;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod otlp;
pub mod policies;
pub mod problem;
pub mod publisher;
pub mod registry;
pub mod reports;
pub mod retention;
pub mod scrub;
pub mod sealing;
pub mod search;
pub mod sequencer;
pub mod tls;

pub use config::ServerConfig;

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

/// Everything a request handler needs: the running ledger.
pub struct Ledger {
    pub store: Arc<dyn Storage>,
    pub signer: Arc<Signer>,
    pub verifier: Verifier,
    pub config: ServerConfig,
    pub sequencer: sequencer::Handle,
    pub latest: watch::Receiver<Arc<Published>>,
    pub tokens: auth::Tokens,
    pub emitters: emitters::Emitters,
    pub rate_limiter: limits::RateLimiter,
    pub metrics: Arc<metrics::Metrics>,
    pub publish_now: Arc<Notify>,
    pub keyring: Arc<aiaudit_keyring::Keyring>,
    /// The search index (the node's own file, or shared in PostgreSQL),
    /// and how many entries it covers.
    pub index: Arc<aiaudit_index::Index>,
    pub indexed: Arc<std::sync::atomic::AtomicU64>,
    pub backup_status: backups::BackupStatus,
    /// Legal holds in force (they suspend retention expiry).
    pub holds: retention::Holds,
    /// Policy evaluation and the violations' lifecycle.
    pub policies: Arc<policies::PolicyService>,
    /// Data keys destroyed (erasures, expiry) as this node knows: answers
    /// carry it (`aiaudit-erasure-epoch`) so the dashboard drops saved
    /// decrypted answers when it moves.
    pub erasure_epoch: std::sync::atomic::AtomicU64,
}

/// Opens the data directory (recovering it after a crash), loads or creates
/// the signing key, and starts the sequencer and publisher.
pub async fn start(config: ServerConfig) -> anyhow::Result<Arc<Ledger>> {
    // Private from the first file on: umask 077 before anything is created.
    keys::private_umask();
    let existed = config.data_dir.exists();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let narrowed = keys::make_private(&config.data_dir)?;
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
    config: ServerConfig,
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
        Arc::new(tokio::task::spawn_blocking(move || keys::open_keyring(&config, &*store)).await??)
    };
    keyring.set_max_key_age(config.data_key_max_age);
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
    search::spawn_indexer(
        store.clone(),
        index.clone(),
        indexed.clone(),
        metrics.clone(),
    );
    metrics.recovery_seconds.set(recovery.elapsed.as_secs_f64());
    let ledger = Arc::new(Ledger {
        store,
        signer,
        verifier,
        config,
        sequencer,
        latest,
        tokens,
        emitters,
        rate_limiter,
        metrics,
        publish_now,
        keyring,
        index,
        indexed,
        backup_status: Default::default(),
        holds,
        policies: policy_service,
        erasure_epoch: std::sync::atomic::AtomicU64::new(destroyed_keys),
    });
    if let Some(feed) = policy_feed {
        policies::spawn(ledger.clone(), feed);
    }
    Ok(ledger)
}

/// Opens the log where the configuration says: the data directory's files
/// (recovering them after a crash) or a shared PostgreSQL database.
async fn open_storage(
    config: &ServerConfig,
) -> anyhow::Result<(Arc<dyn Storage>, aiaudit_store::Recovery)> {
    let dir = config.data_dir.clone();
    let storage = config.storage.clone();
    let ca = config.storage_ca.clone();
    tokio::task::spawn_blocking(move || match storage {
        Some(url) => {
            let (s, r) =
                PgStore::open_with_ca(&url, ca.as_deref()).context("opening the PostgreSQL log")?;
            Ok((Arc::new(s) as Arc<dyn Storage>, r))
        }
        None => {
            let (s, r) = FsStore::open(&dir)
                .with_context(|| format!("opening data directory {}", dir.display()))?;
            Ok((Arc::new(s) as Arc<dyn Storage>, r))
        }
    })
    .await?
}

/// Runs `aiaudit serve` until `shutdown` resolves.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listen = config.listen.clone();
    let ledger = start(config).await?;
    if ledger.tokens.shared() {
        registry::spawn_refresh(ledger.clone());
    }
    backups::spawn(ledger.clone())?;
    retention::spawn(ledger.clone(), ledger.config.retention_check_interval);
    scrub::spawn(ledger.clone(), ledger.config.scrub_interval);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        origin = ledger.signer.name(),
        verifier_key = %ledger.verifier.to_vkey(),
        "serving"
    );
    eprintln!(
        "aiaudit: serving log {} on {}://{} (verifier key {})",
        ledger.signer.name(),
        if ledger.config.tls_cert.is_some() {
            "https"
        } else {
            "http"
        },
        listener.local_addr()?,
        ledger.verifier.to_vkey()
    );
    match (&ledger.config.tls_cert, &ledger.config.tls_key) {
        (Some(cert), Some(key)) => {
            let cert = tls::ReloadingCert::load(cert, key)?;
            cert.reload_on_sighup()?;
            tls::serve(
                listener,
                api::router(ledger.clone()),
                tls::acceptor(cert, ledger.config.tls_client_ca.as_deref())?,
                shutdown,
            )
            .await?;
        }
        (None, None) => {
            axum::serve(listener, api::router(ledger.clone()))
                .with_graceful_shutdown(shutdown)
                .await?
        }
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    }
    // Every request has been answered: publish a last checkpoint and make the
    // derived indexes durable so the next start has nothing to rebuild.
    let (store, signer) = (ledger.store.clone(), ledger.signer.clone());
    tokio::task::spawn_blocking(move || {
        if store.is_publisher() {
            publisher::publish(&*store, &signer)?;
        }
        store.sync()?;
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    tracing::info!("stopped cleanly");
    Ok(())
}
