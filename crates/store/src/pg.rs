//! The PostgreSQL backend: several `aiaudit serve` nodes share one log.
//!
//! Sequencing happens in the database: an append is one transaction that
//! drops ids already logged, moves the single `aiaudit_seq` row's size on
//! (which locks it until COMMIT) and inserts the entries at the indexes it
//! freed, contiguous with everything before. An id
//! another node logs in between trips the unique constraint on event ids,
//! and the append starts over. It returns only after COMMIT, so every
//! node's acknowledgement means "durable in PostgreSQL".
//!
//! One node at a time integrates the tree and publishes checkpoints: the
//! holder of the publisher lease ([`lease`]), a row renewed every second
//! on the database's clock, taken over when it expires or when its
//! holder's session is gone, and fencing every write only the publisher
//! makes by its term. Correctness never rested on the election alone:
//! integration locks `aiaudit_tree` and always continues from the
//! integrated size stored there, and a checkpoint is only ever replaced by
//! a larger one; the lease adds liveness when the publisher is cut off or
//! frozen without its connection closing, and the fence keeps a former
//! publisher that wakes up late from writing at all.
//!
//! Tables (schema version 4, docs/format.md):
//!
//! ```text
//! aiaudit_schema   applied migration versions
//! aiaudit_seq      one row: size (entries committed)
//! aiaudit_tree     one row: integrated size, latest checkpoint and its size
//! aiaudit_entries  idx, dedup_key (tenant/id, unique; version 4), entry bytes, leaf hash
//! aiaudit_nodes    tree nodes of levels 1..63 in strips of 256 hashes
//! aiaudit_keyring  keyring records (version 2): number, record, version
//! aiaudit_documents small documents all nodes share, e.g. legal holds (version 3)
//! aiaudit_lease    the publisher lease: holder, term, expiry (version 5);
//!                  aiaudit_tree gains the term of its last writer
//! ```
//!
//! The keyring is shared too ([`PgKeyRecords`]): every node seals and opens
//! content with the same data keys, and an erasure on one node destroys the
//! keys for all.
//!
//! The [`Storage`] trait is blocking; this backend runs tokio-postgres on a
//! small runtime of its own and waits on a channel, so its methods may be
//! called from any thread, async workers included, like the file backend's.

use crate::{Appended, Error, NewEntry, Recovery, Result, Storage};
use aiaudit_tlog::{Hash, NodeReader, TreeBuilder};
use deadpool_postgres::GenericClient;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

mod lease;
pub use lease::{LeaseConfig, LeaseView};

/// Hashes per row of `aiaudit_nodes`.
const STRIP: u64 = 256;
const HASH: usize = 32;
const MAX_LEVEL: u32 = 63;
/// Leaves read per query while integrating.
const INTEGRATE_CHUNK: i64 = 65_536;
/// Advisory lock keys (arbitrary, fixed: part of the format).
const MIGRATION_LOCK: i64 = 0x6169_6175_6469_7401;
// 0x6169_6175_6469_7402 was the publisher's advisory lock before the lease.
/// Held by every write to `aiaudit_keyring`, so versions commit in order.
const KEYRING_LOCK: i64 = 0x6169_6175_6469_7403;
/// A statement that takes longer than this fails (503) rather than hang a request.
const QUERY_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a node refreshes the shared sizes.
const POLL: Duration = Duration::from_millis(50);
/// TCP keepalives on every session: a peer that vanished without a reset
/// is noticed in about idle + interval × retries, not hours; and unacked
/// data is given up on after the user timeout.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_RETRIES: u32 = 3;
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// Server-side settings of every session (libpq `options`): the server
/// probes a silent client the same way, ends a session that sits idle
/// inside a transaction (a frozen node holding a row lock others wait
/// for), and no statement outlives the client's own timeout.
const SESSION_OPTIONS: &str = "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=1 \
     -c tcp_keepalives_count=3 -c tcp_user_timeout=10000 \
     -c idle_in_transaction_session_timeout=5000 -c statement_timeout=15000";

/// The schema, one migration per version; applied in order under an
/// advisory lock, so nodes starting together migrate once.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE aiaudit_seq (id smallint PRIMARY KEY CHECK (id = 1), size bigint NOT NULL);
INSERT INTO aiaudit_seq VALUES (1, 0);
CREATE TABLE aiaudit_tree (
    id smallint PRIMARY KEY CHECK (id = 1),
    integrated bigint NOT NULL,
    checkpoint text,
    checkpoint_size bigint NOT NULL
);
INSERT INTO aiaudit_tree VALUES (1, 0, NULL, 0);
CREATE TABLE aiaudit_entries (
    idx bigint PRIMARY KEY,
    event_id text NOT NULL UNIQUE,
    entry bytea NOT NULL,
    leaf bytea NOT NULL CHECK (length(leaf) = 32)
);
CREATE TABLE aiaudit_nodes (
    level smallint NOT NULL,
    strip bigint NOT NULL,
    hashes bytea NOT NULL,
    PRIMARY KEY (level, strip)
);
",
    "
CREATE TABLE aiaudit_keyring (
    number bigint PRIMARY KEY,
    record bytea NOT NULL CHECK (length(record) = 256),
    version bigint NOT NULL
);
CREATE INDEX aiaudit_keyring_version ON aiaudit_keyring (version);
CREATE SEQUENCE aiaudit_keyring_versions;
",
    "
CREATE TABLE aiaudit_documents (
    name text PRIMARY KEY,
    body bytea NOT NULL,
    version bigint NOT NULL CHECK (version > 0)
);
",
    // Version 4: events are deduplicated per tenant. The key becomes
    // `tenant/id` (tenants hold no '/'), the tenant read from each entry's
    // clear fields (v1: event, v2: index). The constraint is dropped while
    // keys change, since one row's new key may be another's old one.
    "
ALTER TABLE aiaudit_entries DROP CONSTRAINT aiaudit_entries_event_id_key;
ALTER TABLE aiaudit_entries RENAME COLUMN event_id TO dedup_key;
UPDATE aiaudit_entries SET dedup_key = (
    SELECT coalesce(j->'event'->>'tenant', j->'index'->>'tenant')
    FROM (SELECT convert_from(entry, 'UTF8')::jsonb AS j) AS e
) || '/' || dedup_key;
ALTER TABLE aiaudit_entries ADD CONSTRAINT aiaudit_entries_dedup_key UNIQUE (dedup_key);
",
    // Version 5: the publisher lease (pg/lease.rs). `backend_pid` is the
    // holder's renewing session, so others see at once when it is gone.
    "
CREATE TABLE aiaudit_lease (
    name text PRIMARY KEY,
    holder text NOT NULL,
    term bigint NOT NULL,
    backend_pid integer NOT NULL,
    expires_at timestamptz NOT NULL
);
INSERT INTO aiaudit_lease VALUES ('publisher', '', 0, 0, 'epoch');
ALTER TABLE aiaudit_tree ADD COLUMN term bigint NOT NULL DEFAULT 0;
",
    // Version 6: blobs, out-of-line event content (docs/format.md "Blobs"):
    // the stored bytes of each in parts of BLOB_PART bytes.
    "
CREATE TABLE aiaudit_blobs (
    id bytea NOT NULL CHECK (length(id) = 32),
    part integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (id, part)
);
",
    // Version 7: keyring records found without reading them all (ten million
    // data subjects): a subject's records by the record bytes naming it
    // (tenant length, tenant, tag: bytes 24..121), the tenants' records
    // (salts, tenant keys) apart, and subject key counts kept as records are
    // written. Byte 5 is the kind (2: subject key), byte 4 the state (1 live).
    "
CREATE INDEX aiaudit_keyring_subject ON aiaudit_keyring (substring(record FROM 25 FOR 97))
    WHERE get_byte(record, 5) = 2;
CREATE INDEX aiaudit_keyring_tenant ON aiaudit_keyring (number)
    WHERE get_byte(record, 5) <> 2;
CREATE TABLE aiaudit_keyring_counts (
    id integer PRIMARY KEY CHECK (id = 1),
    live bigint NOT NULL,
    destroyed bigint NOT NULL,
    rotation_started bigint
);
INSERT INTO aiaudit_keyring_counts
    SELECT 1, count(*) FILTER (WHERE get_byte(record, 4) = 1),
              count(*) FILTER (WHERE get_byte(record, 4) <> 1)
    FROM aiaudit_keyring WHERE get_byte(record, 5) = 2;
",
];

/// Bytes of a blob per row of `aiaudit_blobs` (the last row may hold fewer).
const BLOB_PART: usize = 1 << 20;

/// The schema version this build writes and reads.
pub const PG_SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        // The server's message (e.g. "the database system is shutting down")
        // is more useful than tokio-postgres' "db error".
        match e.as_db_error() {
            Some(db) => Error::Database(format!("{}: {}", db.code().code(), db.message())),
            None => Error::Database(with_causes(&e)),
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Error::Database(format!("connecting to PostgreSQL: {}", with_causes(&e)))
    }
}

/// An error and its causes ("error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer"): the outer message alone hides what to fix.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// Ledger storage in PostgreSQL, shared by every node of a cluster.
pub struct PgStore {
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
    shared: Arc<Shared>,
    /// The publisher's tree, kept between integrations; checked against
    /// the database before each use.
    tree: Mutex<Option<TreeBuilder>>,
}

struct Shared {
    size: AtomicU64,
    integrated: AtomicU64,
    stop: AtomicBool,
    /// This node's name in the lease row.
    holder: String,
    lease_config: LeaseConfig,
    held: Mutex<lease::Held>,
    view: Mutex<LeaseView>,
    /// Publisher writes the database refused because a newer term exists.
    fenced: AtomicU64,
    /// Whether this node takes the lease when it is free.
    candidate: AtomicBool,
}

impl Shared {
    fn is_publisher(&self) -> bool {
        self.held.lock().expect("lease lock").valid()
    }

    /// The term this node may write under, if it holds the lease now.
    fn term(&self) -> Option<u64> {
        let h = *self.held.lock().expect("lease lock");
        h.valid().then_some(h.term)
    }
}

/// Whether a storage string names PostgreSQL.
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// Parses a PostgreSQL URL and makes its TLS connector. TLS is used when
/// the URL says `sslmode=require`, and then the server's certificate is
/// always verified (against `ca`, a PEM file, or else the system's roots)
/// and its name checked, as libpq's `verify-full` does; with `disable` or
/// `prefer` (the default) connections are plain, so `prefer` never means
/// an unverified server. The configuration also carries TCP keepalives,
/// a TCP user timeout and the server-side session settings of every node
/// session (a dead peer noticed in seconds on both sides; no statement or
/// idle transaction holding a lock for long); options in the URL come
/// after, so they win.
pub fn connector(
    url: &str,
    ca: Option<&Path>,
) -> Result<(tokio_postgres::Config, MakeRustlsConnect)> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| Error::Format(format!("the PostgreSQL URL is not valid: {e}")))?;
    if config.get_ssl_mode() == SslMode::Prefer {
        config.ssl_mode(SslMode::Disable);
    }
    // Every session of the node (the log's, the lease's, the search
    // index's) notices a dead peer and never holds a lock for long.
    config
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES)
        .tcp_user_timeout(TCP_USER_TIMEOUT)
        .connect_timeout(Duration::from_secs(5));
    let options = match config.get_options() {
        Some(o) if !o.is_empty() => format!("{SESSION_OPTIONS} {o}"),
        _ => SESSION_OPTIONS.to_string(),
    };
    config.options(options);
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            use rustls::pki_types::pem::PemObject;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| Error::Format(format!("reading {}: {e}", path.display())))?;
            for c in certs {
                let c =
                    c.map_err(|e| Error::Format(format!("{} holds bad PEM: {e}", path.display())))?;
                roots.add(c).map_err(|e| {
                    Error::Format(format!(
                        "{}: not a usable CA certificate: {e}",
                        path.display()
                    ))
                })?;
            }
            if roots.is_empty() {
                return Err(Error::Format(format!(
                    "{} holds no CA certificate",
                    path.display()
                )));
            }
        }
        None if config.get_ssl_mode() == SslMode::Require => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(Error::Format(
                    "sslmode=require, but the system has no CA certificates: give the database's CA with --storage-ca".into(),
                ));
            }
        }
        None => {}
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Format(format!("TLS for PostgreSQL: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((config, MakeRustlsConnect::new(tls)))
}

impl PgStore {
    /// Connects, migrates the schema if needed, checks the saved checkpoint
    /// against the stored tree, and starts the size poller and the
    /// publisher election.
    pub fn open(url: &str) -> Result<(PgStore, Recovery)> {
        PgStore::open_with_ca(url, None)
    }

    /// [`PgStore::open`]; with `sslmode=require` in the URL, the server's
    /// certificate is verified against `ca` (PEM) or, without it, the
    /// system's roots. See [`connector`].
    pub fn open_with_ca(url: &str, ca: Option<&Path>) -> Result<(PgStore, Recovery)> {
        PgStore::open_with(url, ca, LeaseConfig::default())
    }

    /// [`PgStore::open_with_ca`] with the publisher lease's timing.
    pub fn open_with(
        url: &str,
        ca: Option<&Path>,
        lease_config: LeaseConfig,
    ) -> Result<(PgStore, Recovery)> {
        let started = Instant::now();
        let (config, tls) = connector(url, ca)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("postgres")
            .enable_all()
            .build()?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(QUERY_TIMEOUT))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| Error::Format(format!("PostgreSQL pool: {e}")))?;
        let store = PgStore {
            rt: Some(rt),
            pool,
            shared: Arc::new(Shared {
                size: AtomicU64::new(0),
                integrated: AtomicU64::new(0),
                stop: AtomicBool::new(false),
                holder: lease::holder_name(),
                lease_config,
                held: Mutex::new(lease::Held::default()),
                view: Mutex::new(LeaseView::default()),
                fenced: AtomicU64::new(0),
                candidate: AtomicBool::new(true),
            }),
            tree: Mutex::new(None),
        };
        let pool = store.pool.clone();
        store.run(async move {
            let mut c = pool.get().await?;
            migrate(&mut c).await
        })?;
        let (size, integrated, checkpoint_size) = store.read_sizes()?;
        store.shared.size.store(size, Ordering::SeqCst);
        store.shared.integrated.store(integrated, Ordering::SeqCst);
        if let Some(note) = store.checkpoint()? {
            let cp = crate::parse_checkpoint(&note)?;
            let root = aiaudit_tlog::tree_hash(cp.size, &store).map_err(|e| Error::Corrupt {
                index: cp.size,
                detail: e.to_string(),
            })?;
            if root != cp.root {
                return Err(Error::Corrupt {
                    index: cp.size,
                    detail: "the stored tree does not hash to the signed checkpoint's root; run `aiaudit verify` to find where".into(),
                });
            }
        }
        let rt = store.rt.as_ref().expect("runtime");
        rt.spawn(poll_sizes(store.pool.clone(), store.shared.clone()));
        rt.spawn(lease::run(config, tls, store.shared.clone()));
        // One round of the lease first, so a lone node (or `aiaudit
        // migrate`) publishes from the start.
        let deadline = Instant::now() + lease_config.length;
        while store
            .shared
            .view
            .lock()
            .expect("lease lock")
            .read_at
            .is_none()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok((
            store,
            Recovery {
                size,
                checkpoint_size,
                truncated_entries: 0,
                rebuilt_levels: false,
                elapsed: started.elapsed(),
            },
        ))
    }

    /// Runs `fut` on the store's runtime and waits for it, with a timeout.
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        block_on(self.rt.as_ref().expect("runtime").handle(), fut)
    }

    /// The keyring records in this database, for [`aiaudit_keyring::Keyring::open_with`].
    pub fn key_records(&self) -> PgKeyRecords {
        PgKeyRecords {
            rt: self.rt.as_ref().expect("runtime").handle().clone(),
            pool: self.pool.clone(),
        }
    }

    fn read_sizes(&self) -> Result<(u64, u64, u64)> {
        let pool = self.pool.clone();
        self.run(async move {
            let c = pool.get().await?;
            sizes(&c).await
        })
    }

    /// Whether this node holds the publisher lease right now.
    pub fn holds_publisher_lease(&self) -> bool {
        self.shared.is_publisher()
    }

    /// The lease as this node last read it (about once a second).
    pub fn lease(&self) -> LeaseView {
        self.shared.view.lock().expect("lease lock").clone()
    }

    /// This node's name in the lease row.
    pub fn holder(&self) -> &str {
        &self.shared.holder
    }

    /// Publisher writes of this node the database refused (fenced).
    pub fn fenced_writes(&self) -> u64 {
        self.shared.fenced.load(Ordering::Relaxed)
    }

    /// Whether this node takes the publisher lease when it is free (by
    /// default it does). A node that does not still appends and serves
    /// reads and the publisher's checkpoints; one that holds the lease
    /// keeps it until it releases it ([`PgStore::release_lease`]).
    pub fn set_candidate(&self, candidate: bool) {
        self.shared.candidate.store(candidate, Ordering::SeqCst);
    }

    /// Waits until this node holds the publisher lease; false after `timeout`.
    pub fn wait_for_lease(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.holds_publisher_lease() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Gives up the publisher lease, if held, so another node takes over at
    /// once (a clean shutdown or a hand-over); this node stops publishing.
    pub fn release_lease(&self) -> Result<()> {
        let held = std::mem::take(&mut *self.shared.held.lock().expect("lease lock"));
        if held.until.is_none() {
            return Ok(());
        }
        let (pool, holder) = (self.pool.clone(), self.shared.holder.clone());
        self.run(async move {
            let released = async {
                let c = pool.get().await?;
                lease::release(&**c, &holder, held.term).await
            };
            tokio::time::timeout(Duration::from_secs(2), released)
                .await
                .map_err(|_| Error::Database("PostgreSQL did not answer in time".into()))?
        })?;
        tracing::info!(term = held.term, "released the publisher lease");
        Ok(())
    }

    /// Counts a fenced write.
    fn note<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(Error::Fenced(why)) = &r {
            self.shared.fenced.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(why, "a publisher write was refused (fenced)");
        }
        r
    }
}

/// Runs `fut` on `rt` and waits for it, with a timeout; callable from any
/// thread (the runtime is the store's own, never the caller's).
fn block_on<T: Send + 'static>(
    rt: &tokio::runtime::Handle,
    fut: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let r = match tokio::time::timeout(QUERY_TIMEOUT, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::Database(format!(
                "PostgreSQL did not answer within {QUERY_TIMEOUT:?}"
            ))),
        };
        let _ = tx.send(r);
    });
    rx.recv()
        .map_err(|_| Error::Database("the PostgreSQL task stopped".into()))?
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.release_lease() {
            tracing::warn!(error = %e, "releasing the publisher lease failed; it expires by itself");
        }
        // Dropping a runtime from async code panics; this never blocks.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Takes a transaction-level advisory lock: held until COMMIT or ROLLBACK.
async fn xact_lock(tx: &deadpool_postgres::Transaction<'_>, key: i64) -> Result<()> {
    tx.execute(
        &tx.prepare_cached("SELECT pg_advisory_xact_lock($1)")
            .await?,
        &[&key],
    )
    .await?;
    Ok(())
}

async fn migrate(c: &mut deadpool_postgres::Object) -> Result<()> {
    let tx = c.transaction().await?;
    // A migration may rewrite every entry (version 4): no session timeout.
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    xact_lock(&tx, MIGRATION_LOCK).await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS aiaudit_schema (version integer PRIMARY KEY)")
        .await?;
    let have: i32 = tx
        .query_one(
            &tx.prepare_cached("SELECT coalesce(max(version), 0) FROM aiaudit_schema")
                .await?,
            &[],
        )
        .await?
        .get(0);
    if have > PG_SCHEMA_VERSION {
        return Err(Error::Format(format!(
            "the database has schema version {have}; this build knows up to {PG_SCHEMA_VERSION}: upgrade aiaudit"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(have as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql).await?;
        tx.execute(
            &tx.prepare_cached("INSERT INTO aiaudit_schema VALUES ($1)")
                .await?,
            &[&version],
        )
        .await?;
        tracing::info!(version, "PostgreSQL schema migrated");
    }
    tx.commit().await?;
    Ok(())
}

async fn sizes(c: &impl GenericClient) -> Result<(u64, u64, u64)> {
    let row = c
        .query_one(
            &c.prepare_cached(
                "SELECT s.size, t.integrated, t.checkpoint_size FROM aiaudit_seq s, aiaudit_tree t",
            )
            .await?,
            &[],
        )
        .await?;
    Ok((
        row.get::<_, i64>(0) as u64,
        row.get::<_, i64>(1) as u64,
        row.get::<_, i64>(2) as u64,
    ))
}

/// Keeps this node's view of the shared sizes fresh (only ever growing).
async fn poll_sizes(pool: Pool, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        if let Ok(c) = pool.get().await {
            if let Ok(Ok((size, integrated, _))) =
                tokio::time::timeout(QUERY_TIMEOUT, sizes(&c)).await
            {
                shared.size.fetch_max(size, Ordering::SeqCst);
                shared.integrated.fetch_max(integrated, Ordering::SeqCst);
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One append attempt; `None` when another node logged one of the batch's
/// ids between the lookup and the insert (the caller tries again).
async fn append_tx(
    c: &mut deadpool_postgres::Object,
    batch: &[NewEntry],
) -> Result<Option<(Vec<Appended>, u64)>> {
    let tx = c.transaction().await?;
    let ids: Vec<&str> = batch.iter().map(|e| e.key.as_str()).collect();
    // Looked up before taking the sequencing lock, to keep it short; an id
    // another node commits meanwhile trips the unique constraint below.
    let mut logged: HashMap<String, (u64, Hash)> = HashMap::new();
    for row in tx
        .query(
            &tx.prepare_cached(
                "SELECT dedup_key, idx, leaf FROM aiaudit_entries WHERE dedup_key = ANY($1)",
            )
            .await?,
            &[&ids],
        )
        .await?
    {
        let leaf: &[u8] = row.get(2);
        let index: i64 = row.get(1);
        let leaf: Hash = leaf.try_into().map_err(|_| Error::Corrupt {
            index: index as u64,
            detail: "stored leaf hash is not 32 bytes".into(),
        })?;
        logged.insert(row.get(0), (index as u64, leaf));
    }
    // Indexes are relative to the batch's start until the size row is
    // locked and moved on, as late as possible to keep that lock short.
    let mut out = Vec::with_capacity(batch.len());
    let mut relative = Vec::with_capacity(batch.len());
    let mut in_batch: HashMap<&str, usize> = HashMap::new();
    let (mut new_ids, mut entries, mut leaves) = (Vec::new(), Vec::new(), Vec::new());
    for (i, e) in batch.iter().enumerate() {
        if let Some(&(index, leaf)) = logged.get(&e.key) {
            out.push(Appended {
                index,
                leaf,
                duplicate: true,
            });
            relative.push(false);
            continue;
        }
        if let Some(&first) = in_batch.get(e.key.as_str()) {
            let a: Appended = out[first];
            out.push(Appended {
                duplicate: true,
                ..a
            });
            relative.push(true);
            continue;
        }
        e.check_size(i)?;
        in_batch.insert(&e.key, i);
        out.push(Appended {
            index: new_ids.len() as u64,
            leaf: e.leaf,
            duplicate: false,
        });
        relative.push(true);
        new_ids.push(e.key.as_str());
        entries.push(e.entry.as_slice());
        leaves.push(&e.leaf[..]);
    }
    let count = new_ids.len() as i64;
    if count == 0 {
        tx.commit().await?;
        return Ok(Some((out, 0)));
    }
    // Indexes taken and entries inserted in one statement: the sequencing
    // row is locked from here to the commit, and every other node's append
    // waits for it, so no round trip back to this node in between.
    let sequenced = tx
        .query_one(
            &tx.prepare_cached(
                "WITH seq AS (UPDATE aiaudit_seq SET size = size + $1 WHERE id = 1 RETURNING size), \
                 logged AS (INSERT INTO aiaudit_entries (idx, dedup_key, entry, leaf) \
                   SELECT seq.size - $1 + e.n - 1, e.k, e.b, e.l FROM seq, \
                   unnest($2::text[], $3::bytea[], $4::bytea[]) WITH ORDINALITY AS e(k, b, l, n)) \
                 SELECT size FROM seq",
            )
            .await?,
            &[&count, &new_ids, &entries, &leaves],
        )
        .await;
    let end: i64 = match sequenced {
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
            return Ok(None)
        }
        r => r?.get(0),
    };
    let start = end - count;
    for (a, rel) in out.iter_mut().zip(&relative) {
        if *rel {
            a.index += start as u64;
        }
    }
    tx.commit().await?;
    Ok(Some((out, end as u64)))
}

async fn read_leaves(c: &impl GenericClient, start: u64, count: u64) -> Result<Vec<u8>> {
    let rows = c
        .query(
            &c.prepare_cached(
                "SELECT leaf FROM aiaudit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
            )
            .await?,
            &[&(start as i64), &((start + count) as i64)],
        )
        .await?;
    if rows.len() as u64 != count {
        return Err(Error::OutOfRange(format!(
            "leaves [{start}, {}) are not all logged",
            start + count
        )));
    }
    let mut out = Vec::with_capacity(rows.len() * HASH);
    for r in rows {
        out.extend_from_slice(r.get::<_, &[u8]>(0));
    }
    Ok(out)
}

async fn read_nodes(c: &impl GenericClient, level: u32, start: u64, count: u64) -> Result<Vec<u8>> {
    if level == 0 {
        return read_leaves(c, start, count).await;
    }
    if count == 0 {
        return Ok(Vec::new());
    }
    let (first, last) = (start / STRIP, (start + count - 1) / STRIP);
    let rows = c
        .query(
            &c.prepare_cached("SELECT strip, hashes FROM aiaudit_nodes WHERE level = $1 AND strip >= $2 AND strip <= $3 ORDER BY strip").await?,
            &[&(level as i16), &(first as i64), &(last as i64)],
        )
        .await?;
    let mut all = Vec::with_capacity(((last - first + 1) * STRIP) as usize * HASH);
    for (want, r) in (first..=last).zip(rows.iter()) {
        if r.get::<_, i64>(0) as u64 != want {
            break;
        }
        all.extend_from_slice(r.get::<_, &[u8]>(1));
    }
    let from = ((start - first * STRIP) as usize) * HASH;
    let to = from + count as usize * HASH;
    if all.len() < to {
        return Err(Error::Corrupt {
            index: start << level,
            detail: format!(
                "tree level {level} is missing nodes [{start}, {})",
                start + count
            ),
        });
    }
    Ok(all[from..to].to_vec())
}

/// The stored tree of `size` leaves, ready to take more.
async fn tree_at(c: &impl GenericClient, size: u64) -> Result<TreeBuilder> {
    let mut edge = Vec::new();
    for (level, index) in TreeBuilder::edge_nodes(size) {
        let h = read_nodes(c, level, index, 1).await?;
        edge.push(h[..].try_into().expect("32 bytes"));
    }
    TreeBuilder::from_edge(size, edge).map_err(|e| Error::Corrupt {
        index: size,
        detail: e.to_string(),
    })
}

/// Brings the stored tree up to the committed size; returns the new
/// integrated size, its root and the tree to keep.
async fn integrate_tx(
    c: &mut deadpool_postgres::Object,
    cached: Option<TreeBuilder>,
    holder: &str,
    term: u64,
) -> Result<(u64, Hash, TreeBuilder)> {
    let tx = c.transaction().await?;
    lease::fence(&*tx, holder, term).await?;
    let row = tx
        .query_one(
            &tx.prepare_cached("SELECT integrated, term FROM aiaudit_tree WHERE id = 1 FOR UPDATE")
                .await?,
            &[],
        )
        .await?;
    let integrated = row.get::<_, i64>(0) as u64;
    let written_by = row.get::<_, i64>(1) as u64;
    if written_by > term {
        return Err(Error::Fenced(format!(
            "the tree was written at term {written_by}; this node holds term {term}"
        )));
    }
    let size = tx
        .query_one(
            &tx.prepare_cached("SELECT size FROM aiaudit_seq WHERE id = 1")
                .await?,
            &[],
        )
        .await?
        .get::<_, i64>(0) as u64;
    let mut tree = match cached {
        Some(t) if t.size() == integrated => t,
        _ => tree_at(&tx, integrated).await?,
    };
    let mut at = integrated;
    while at < size {
        let count = (INTEGRATE_CHUNK as u64).min(size - at);
        let leaves = read_leaves(&tx, at, count).await?;
        let mut writes: HashMap<u32, (u64, Vec<u8>)> = HashMap::new();
        for leaf in leaves.chunks_exact(HASH) {
            tree.push(leaf.try_into().expect("32 bytes"), |level, index, hash| {
                if level > 0 {
                    let w = writes.entry(level).or_insert_with(|| (index, Vec::new()));
                    w.1.extend_from_slice(hash);
                }
            });
        }
        for (level, (start, hashes)) in writes {
            write_level(&tx, level, start, hashes).await?;
        }
        at += count;
    }
    if size > integrated {
        tx.execute(
            &tx.prepare_cached("UPDATE aiaudit_tree SET integrated = $1, term = $2 WHERE id = 1")
                .await?,
            &[&(size as i64), &(term as i64)],
        )
        .await?;
    }
    tx.commit().await?;
    Ok((size, tree.root(), tree))
}

/// Stores nodes `[start, start + n)` of `level`, completing a partial strip.
async fn write_level(
    tx: &deadpool_postgres::Transaction<'_>,
    level: u32,
    start: u64,
    hashes: Vec<u8>,
) -> Result<()> {
    let first = start / STRIP;
    let offset = ((start % STRIP) as usize) * HASH;
    let mut data = Vec::with_capacity(offset + hashes.len());
    if offset > 0 {
        let row = tx
            .query_opt(
                &tx.prepare_cached(
                    "SELECT hashes FROM aiaudit_nodes WHERE level = $1 AND strip = $2",
                )
                .await?,
                &[&(level as i16), &(first as i64)],
            )
            .await?;
        let have: &[u8] = row.as_ref().map_or(&[], |r| r.get(0));
        if have.len() < offset {
            return Err(Error::Corrupt {
                index: start << level,
                detail: format!("tree level {level} has a gap before node {start}"),
            });
        }
        data.extend_from_slice(&have[..offset]);
    }
    data.extend_from_slice(&hashes);
    let strip_bytes = STRIP as usize * HASH;
    let strips: Vec<i64> = (0..data.len().div_ceil(strip_bytes))
        .map(|i| (first + i as u64) as i64)
        .collect();
    let chunks: Vec<&[u8]> = data.chunks(strip_bytes).collect();
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO aiaudit_nodes (level, strip, hashes) \
         SELECT $1, * FROM unnest($2::int8[], $3::bytea[]) \
         ON CONFLICT (level, strip) DO UPDATE SET hashes = EXCLUDED.hashes",
        )
        .await?,
        &[&(level as i16), &strips, &chunks],
    )
    .await?;
    Ok(())
}

fn encode_bundle(entries: Vec<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.len() + 2).sum());
    for e in entries {
        out.extend_from_slice(&(e.len() as u16).to_be_bytes());
        out.extend_from_slice(&e);
    }
    out
}

impl PgStore {
    fn read_entries(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>> {
        let pool = self.pool.clone();
        self.run(async move {
            let c = pool.get().await?;
            let rows = c
                .query(
            &c.prepare_cached("SELECT entry FROM aiaudit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx").await?,
                    &[&(start as i64), &((start + count) as i64)],
                )
                .await?;
            if rows.len() as u64 != count {
                return Err(Error::OutOfRange(format!(
                    "entries [{start}, {}) are not all logged",
                    start + count
                )));
            }
            Ok(rows.into_iter().map(|r| r.get(0)).collect())
        })
    }

    /// Integrates as the publisher (fenced by the lease's term); on any
    /// other node, only reads the integrated size and its root.
    fn integrate_now(&self) -> Result<(u64, Hash)> {
        let pool = self.pool.clone();
        let Some(term) = self.shared.term() else {
            return self.run(async move {
                let c = pool.get().await?;
                let (_, integrated, _) = sizes(&c).await?;
                Ok((integrated, tree_at(&c, integrated).await?.root()))
            });
        };
        let cached = self.tree.lock().unwrap().take();
        let holder = self.shared.holder.clone();
        let (size, root, tree) = self.note(self.run(async move {
            let mut c = pool.get().await?;
            integrate_tx(&mut c, cached, &holder, term).await
        }))?;
        *self.tree.lock().unwrap() = Some(tree);
        self.shared.integrated.fetch_max(size, Ordering::SeqCst);
        self.shared.size.fetch_max(size, Ordering::SeqCst);
        Ok((size, root))
    }
}

impl NodeReader for PgStore {
    fn read_node(&self, level: u32, index: u64) -> aiaudit_tlog::Result<Hash> {
        let h = self
            .read_hashes(level, index, 1)
            .map_err(|e| aiaudit_tlog::Error::Read(Box::new(e)))?;
        Ok(h[..].try_into().expect("32 bytes"))
    }
}

impl Storage for PgStore {
    fn append(&self, batch: &[NewEntry]) -> Result<Vec<Appended>> {
        let pool = self.pool.clone();
        let batch = batch.to_vec();
        let (out, size) = self.run(async move {
            let mut c = pool.get().await?;
            for _ in 0..5 {
                if let Some(done) = append_tx(&mut c, &batch).await? {
                    return Ok(done);
                }
            }
            Err(Error::Database(
                "the batch kept racing other nodes for the same event ids".into(),
            ))
        })?;
        self.shared.size.fetch_max(size, Ordering::SeqCst);
        Ok(out)
    }

    fn size(&self) -> u64 {
        self.shared.size.load(Ordering::SeqCst)
    }

    fn integrated_size(&self) -> u64 {
        self.shared.integrated.load(Ordering::SeqCst)
    }

    fn integrate(&self) -> Result<(u64, Hash)> {
        self.integrate_now()
    }

    fn sync(&self) -> Result<(u64, Hash)> {
        // Everything committed is already durable in PostgreSQL.
        self.integrate_now()
    }

    fn read_entry(&self, index: u64) -> Result<Vec<u8>> {
        Ok(self.read_entries(index, 1)?.remove(0))
    }

    fn read_entry_bundle(&self, start: u64, count: u64) -> Result<Vec<u8>> {
        Ok(encode_bundle(self.read_entries(start, count)?))
    }

    fn read_hashes(&self, tree_level: u32, start: u64, count: u64) -> Result<Vec<u8>> {
        if tree_level > MAX_LEVEL {
            return Err(Error::OutOfRange(format!("tree level {tree_level}")));
        }
        if tree_level > 0 {
            let limit = self.integrated_size() >> tree_level;
            if start + count > limit {
                return Err(Error::OutOfRange(format!(
                    "node index {} is beyond {limit}",
                    start + count
                )));
            }
        }
        let pool = self.pool.clone();
        self.run(async move {
            let c = pool.get().await?;
            read_nodes(&c, tree_level, start, count).await
        })
    }

    fn lookup_key(&self, key: &str) -> Result<Option<u64>> {
        let pool = self.pool.clone();
        let id = key.to_string();
        self.run(async move {
            let c = pool.get().await?;
            let row = c
                .query_opt(
                    &c.prepare_cached("SELECT idx FROM aiaudit_entries WHERE dedup_key = $1")
                        .await?,
                    &[&id],
                )
                .await?;
            Ok(row.map(|r| r.get::<_, i64>(0) as u64))
        })
    }

    fn checkpoint(&self) -> Result<Option<String>> {
        let pool = self.pool.clone();
        self.run(async move {
            let c = pool.get().await?;
            Ok(c.query_one(
                &c.prepare_cached("SELECT checkpoint FROM aiaudit_tree WHERE id = 1")
                    .await?,
                &[],
            )
            .await?
            .get(0))
        })
    }

    fn save_checkpoint(&self, note: &str) -> Result<()> {
        let size = crate::parse_checkpoint(note)?.size as i64;
        let Some(term) = self.shared.term() else {
            return self.note(Err(Error::Fenced(
                "this node does not hold the publisher lease".into(),
            )));
        };
        let (pool, holder) = (self.pool.clone(), self.shared.holder.clone());
        let note = note.to_string();
        self.note(self.run(async move {
            let mut c = pool.get().await?;
            let tx = c.transaction().await?;
            lease::fence(&*tx, &holder, term).await?;
            // Never replace a checkpoint with a smaller one, nor one a newer
            // term wrote.
            let changed = tx
                .execute(
                    &tx.prepare_cached(
                        "UPDATE aiaudit_tree SET checkpoint = $1, checkpoint_size = $2, term = $3 \
                         WHERE id = 1 AND checkpoint_size <= $2 AND integrated >= $2 AND term <= $3",
                    )
                    .await?,
                    &[&note, &size, &(term as i64)],
                )
                .await?;
            if changed == 0 {
                let written_by: i64 = tx
                    .query_one("SELECT term FROM aiaudit_tree WHERE id = 1", &[])
                    .await?
                    .get(0);
                if written_by as u64 > term {
                    return Err(Error::Fenced(format!(
                        "the checkpoint was written at term {written_by}; this node holds term {term}"
                    )));
                }
            }
            tx.commit().await?;
            Ok(())
        }))
    }

    fn is_publisher(&self) -> bool {
        self.holds_publisher_lease()
    }

    fn publisher_lease(&self) -> Option<LeaseView> {
        Some(self.lease())
    }

    fn fenced_writes(&self) -> u64 {
        PgStore::fenced_writes(self)
    }

    fn step_down(&self) -> Result<()> {
        self.set_candidate(false);
        self.release_lease()
    }

    fn shared(&self) -> bool {
        true
    }

    fn ping(&self) -> Result<()> {
        let pool = self.pool.clone();
        self.run(async move {
            pool.get().await?.simple_query("SELECT 1").await?;
            Ok(())
        })
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn key_records(&self) -> Option<Box<dyn aiaudit_keyring::RecordStore>> {
        Some(Box::new(PgStore::key_records(self)))
    }

    fn load_document(&self, name: &str) -> Result<Option<(Vec<u8>, u64)>> {
        let pool = self.pool.clone();
        let name = name.to_string();
        self.run(async move {
            let c = pool.get().await?;
            let row = c
                .query_opt(
                    &c.prepare_cached(
                        "SELECT body, version FROM aiaudit_documents WHERE name = $1",
                    )
                    .await?,
                    &[&name],
                )
                .await?;
            Ok(Some(match row {
                Some(r) => (r.get(0), r.get::<_, i64>(1) as u64),
                None => (Vec::new(), 0),
            }))
        })
    }

    fn save_document(&self, name: &str, body: &[u8], expected: u64) -> Result<bool> {
        let pool = self.pool.clone();
        let (name, body) = (name.to_string(), body.to_vec());
        self.run(async move {
            let c = pool.get().await?;
            let changed = if expected == 0 {
                c.execute(
                    &c.prepare_cached(
                        "INSERT INTO aiaudit_documents (name, body, version) VALUES ($1, $2, 1) \
                         ON CONFLICT (name) DO NOTHING",
                    )
                    .await?,
                    &[&name, &body],
                )
                .await?
            } else {
                c.execute(
                    &c.prepare_cached(
                        "UPDATE aiaudit_documents SET body = $2, version = version + 1 \
                         WHERE name = $1 AND version = $3",
                    )
                    .await?,
                    &[&name, &body, &(expected as i64)],
                )
                .await?
            };
            Ok(changed == 1)
        })
    }

    fn stores_blobs(&self) -> bool {
        true
    }

    fn blob_writer(&self, id: &Hash) -> Result<Box<dyn crate::BlobWriter>> {
        Ok(Box::new(PgBlobWriter {
            rt: self.rt.as_ref().expect("runtime").handle().clone(),
            pool: self.pool.clone(),
            id: id.to_vec(),
            parts: Vec::new(),
        }))
    }

    fn read_blob(&self, id: &Hash, offset: u64, len: usize) -> Result<Vec<u8>> {
        let pool = self.pool.clone();
        let id = id.to_vec();
        let name = crate::blobs::hex(id.as_slice().try_into().expect("32"));
        if len == 0 {
            return Ok(Vec::new());
        }
        let first = (offset / BLOB_PART as u64) as i32;
        let last = ((offset + len as u64 - 1) / BLOB_PART as u64) as i32;
        let rows = self.run(async move {
            let c = pool.get().await?;
            let rows = c
                .query(
                    &c.prepare_cached(
                        "SELECT part, data FROM aiaudit_blobs WHERE id = $1 \
                         AND part BETWEEN $2 AND $3 ORDER BY part",
                    )
                    .await?,
                    &[&id, &first, &last],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, i32>(0), r.get::<_, Vec<u8>>(1)))
                .collect::<Vec<_>>())
        })?;
        // Consecutive parts from the first, then the range within them.
        let mut joined = Vec::with_capacity(len + BLOB_PART);
        for (expect, (part, data)) in (first..).zip(rows) {
            if part != expect {
                break;
            }
            joined.extend_from_slice(&data);
        }
        let from = (offset - first as u64 * BLOB_PART as u64) as usize;
        if joined.len() < from + len {
            return Err(Error::Format(format!(
                "blob {name} ends early or is missing"
            )));
        }
        joined.truncate(from + len);
        let out = joined.split_off(from);
        Ok(out)
    }

    fn blob_len(&self, id: &Hash) -> Result<Option<u64>> {
        let pool = self.pool.clone();
        let id = id.to_vec();
        self.run(async move {
            let c = pool.get().await?;
            let row = c
                .query_one(
                    &c.prepare_cached(
                        "SELECT count(*), coalesce(sum(length(data)), 0)::bigint \
                         FROM aiaudit_blobs WHERE id = $1",
                    )
                    .await?,
                    &[&id],
                )
                .await?;
            let parts: i64 = row.get(0);
            Ok((parts > 0).then(|| row.get::<_, i64>(1) as u64))
        })
    }

    fn remove_blob(&self, id: &Hash) -> Result<()> {
        let pool = self.pool.clone();
        let id = id.to_vec();
        self.run(async move {
            let c = pool.get().await?;
            c.execute("DELETE FROM aiaudit_blobs WHERE id = $1", &[&id])
                .await?;
            Ok(())
        })
    }

    fn list_blobs(&self, each: &mut dyn FnMut(Hash, u64) -> Result<()>) -> Result<()> {
        let pool = self.pool.clone();
        let rows = self.run(async move {
            let c = pool.get().await?;
            let rows = c
                .query(
                    "SELECT id, sum(length(data))::bigint FROM aiaudit_blobs GROUP BY id",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, i64>(1)))
                .collect::<Vec<_>>())
        })?;
        for (id, len) in rows {
            if let Ok(id) = <Hash>::try_from(id.as_slice()) {
                each(id, len as u64)?;
            }
        }
        Ok(())
    }
}

/// Collects a blob's parts and inserts them in one transaction on commit:
/// all of the blob becomes visible at once, or none of it.
struct PgBlobWriter {
    rt: tokio::runtime::Handle,
    pool: deadpool_postgres::Pool,
    id: Vec<u8>,
    parts: Vec<Vec<u8>>,
}

impl crate::BlobWriter for PgBlobWriter {
    fn write(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            if self.parts.last().is_none_or(|p| p.len() == BLOB_PART) {
                self.parts
                    .push(Vec::with_capacity(BLOB_PART.min(bytes.len().max(4096))));
            }
            let part = self.parts.last_mut().expect("just pushed");
            let n = (BLOB_PART - part.len()).min(bytes.len());
            part.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<()> {
        let PgBlobWriter {
            rt,
            pool,
            id,
            parts,
        } = *self;
        block_on(&rt, async move {
            let mut c = pool.get().await?;
            let tx = c.transaction().await?;
            let insert = tx
                .prepare_cached(
                    "INSERT INTO aiaudit_blobs (id, part, data) VALUES ($1, $2, $3) \
                     ON CONFLICT (id, part) DO NOTHING",
                )
                .await?;
            for (i, data) in parts.iter().enumerate() {
                tx.execute(&insert, &[&id, &(i as i32), data]).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

/// The keyring records of a log in PostgreSQL (table `aiaudit_keyring`).
/// Every write takes a transaction-level advisory lock and a new version
/// from a sequence, so versions commit in order and a node that asks for
/// what changed since version `v` misses nothing.
pub struct PgKeyRecords {
    rt: tokio::runtime::Handle,
    pool: Pool,
}

/// A keyring record as read: its number and bytes.
type NumberedBytes = (i64, Vec<u8>);

/// Inserts keyring records: `$1` their numbers, `$2` their bytes.
const KEYRING_INSERT: &str = "INSERT INTO aiaudit_keyring (number, record, version) \
     SELECT n, r, nextval('aiaudit_keyring_versions') \
     FROM unnest($1::int8[], $2::bytea[]) AS u(n, r) ORDER BY n";

/// How many keyring records there are, in a transaction holding the
/// keyring's lock. The primary key answers this without counting every row.
async fn keyring_count(tx: &deadpool_postgres::Transaction<'_>) -> Result<u64> {
    let row = tx
        .query_one(
            &tx.prepare_cached("SELECT coalesce(max(number) + 1, 0) FROM aiaudit_keyring")
                .await?,
            &[],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// Counts `n` new live subject keys, in the transaction that inserts them.
async fn add_live_subjects(tx: &deadpool_postgres::Transaction<'_>, n: i64) -> Result<()> {
    if n > 0 {
        tx.execute(
            &tx.prepare_cached("UPDATE aiaudit_keyring_counts SET live = live + $1 WHERE id = 1")
                .await?,
            &[&n],
        )
        .await?;
    }
    Ok(())
}

fn keyring_err(e: Error) -> aiaudit_keyring::Error {
    aiaudit_keyring::Error::Key(format!("the shared keyring in PostgreSQL: {e}"))
}

fn to_record(number: i64, bytes: &[u8]) -> aiaudit_keyring::Result<aiaudit_keyring::Record> {
    bytes.try_into().map_err(|_| {
        aiaudit_keyring::Error::Corrupt(format!(
            "keyring record {number} in PostgreSQL is {} bytes",
            bytes.len()
        ))
    })
}

/// Rows of (number, record) as read.
fn numbered_bytes(rows: Vec<tokio_postgres::Row>) -> Vec<NumberedBytes> {
    rows.into_iter()
        .map(|r| (r.get::<_, i64>(0), r.get::<_, Vec<u8>>(1)))
        .collect()
}

/// Numbered rows as keyring records (each checked to be one record long).
fn to_numbered(
    rows: Vec<NumberedBytes>,
) -> aiaudit_keyring::Result<Vec<(u64, aiaudit_keyring::Record)>> {
    rows.into_iter()
        .map(|(n, b)| Ok((n as u64, to_record(n, &b)?)))
        .collect()
}

/// What the subject index holds of a subject-key record: its bytes 24..121,
/// the tenant's length, the tenant (zero padded to 64 bytes), the tag.
fn subject_key(tenant: &str, tag: &[u8; 32]) -> Vec<u8> {
    let mut key = vec![0u8; 97];
    key[0] = tenant.len() as u8;
    let len = tenant.len().min(64);
    key[1..1 + len].copy_from_slice(&tenant.as_bytes()[..len]);
    key[65..].copy_from_slice(tag);
    key
}

/// A query parameter owned by the query's future.
type OwnedParam = Box<dyn tokio_postgres::types::ToSql + Sync + Send>;

impl PgKeyRecords {
    /// The (number, record) rows `sql` selects.
    fn numbered(
        &self,
        sql: &'static str,
        params: Vec<OwnedParam>,
    ) -> aiaudit_keyring::Result<Vec<(u64, aiaudit_keyring::Record)>> {
        let pool = self.pool.clone();
        let rows = self.run(async move {
            let c = pool.get().await?;
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            Ok(numbered_bytes(
                c.query(&c.prepare_cached(sql).await?, &refs).await?,
            ))
        })?;
        to_numbered(rows)
    }

    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> aiaudit_keyring::Result<T> {
        block_on(&self.rt, fut).map_err(keyring_err)
    }

    /// Records with a version above `mark` (all of them for 0), and the
    /// highest version seen.
    fn since(&self, mark: u64) -> aiaudit_keyring::Result<(Vec<NumberedBytes>, u64)> {
        let pool = self.pool.clone();
        self.run(async move {
            let c = pool.get().await?;
            let rows = c
                .query(
                    &c.prepare_cached(
                        "SELECT number, record, version FROM aiaudit_keyring \
                         WHERE version > $1 ORDER BY number",
                    )
                    .await?,
                    &[&(mark as i64)],
                )
                .await?;
            let mut top = mark;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                top = top.max(r.get::<_, i64>(2) as u64);
                out.push((r.get::<_, i64>(0), r.get::<_, Vec<u8>>(1)));
            }
            Ok((out, top))
        })
    }
}

impl aiaudit_keyring::RecordStore for PgKeyRecords {
    fn load(&self) -> aiaudit_keyring::Result<(Vec<aiaudit_keyring::Record>, u64)> {
        let (rows, mark) = self.since(0)?;
        let mut records = Vec::with_capacity(rows.len());
        for (i, (number, bytes)) in rows.iter().enumerate() {
            if *number != i as i64 {
                return Err(aiaudit_keyring::Error::Corrupt(format!(
                    "keyring record {i} is missing from PostgreSQL"
                )));
            }
            records.push(to_record(*number, bytes)?);
        }
        Ok((records, mark))
    }

    fn append(
        &self,
        at: u64,
        records: &[aiaudit_keyring::Record],
    ) -> aiaudit_keyring::Result<bool> {
        let pool = self.pool.clone();
        let subjects = records
            .iter()
            .filter(|r| aiaudit_keyring::record_kind(r) == aiaudit_keyring::KIND_SUBJECT_KEY)
            .count() as i64;
        let records: Vec<Vec<u8>> = records.iter().map(|r| r.to_vec()).collect();
        self.run(async move {
            let mut c = pool.get().await?;
            let tx = c.transaction().await?;
            xact_lock(&tx, KEYRING_LOCK).await?;
            if keyring_count(&tx).await? != at {
                return Ok(false);
            }
            let numbers: Vec<i64> = (0..records.len() as i64).map(|i| at as i64 + i).collect();
            tx.execute(
                &tx.prepare_cached(KEYRING_INSERT).await?,
                &[&numbers, &records],
            )
            .await?;
            add_live_subjects(&tx, subjects).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    fn append_streamed(
        &self,
        at: u64,
        next: &mut dyn FnMut() -> aiaudit_keyring::Result<Option<Vec<aiaudit_keyring::Record>>>,
    ) -> aiaudit_keyring::Result<bool> {
        // One transaction, fed a chunk at a time from this thread: a
        // keyring of millions of subjects is never held whole, and a copy
        // that fails midway leaves nothing.
        enum Piece {
            Records(Vec<Vec<u8>>, i64),
            End,
        }
        let (feed, mut pieces) = tokio::sync::mpsc::channel::<Piece>(2);
        let pool = self.pool.clone();
        let (done, outcome) = std::sync::mpsc::sync_channel(1);
        self.rt.spawn(async move {
            let result: Result<bool> = async {
                let timed = |what: &'static str| {
                    move |_: tokio::time::error::Elapsed| {
                        Error::Database(format!(
                            "PostgreSQL did not answer {what} within {QUERY_TIMEOUT:?}"
                        ))
                    }
                };
                let mut c = tokio::time::timeout(QUERY_TIMEOUT, pool.get())
                    .await
                    .map_err(timed("a connection"))??;
                let tx = c.transaction().await?;
                xact_lock(&tx, KEYRING_LOCK).await?;
                if keyring_count(&tx).await? != at {
                    return Ok(false);
                }
                let insert = tx.prepare_cached(KEYRING_INSERT).await?;
                let (mut number, mut subjects) = (at as i64, 0i64);
                loop {
                    match pieces.recv().await {
                        Some(Piece::Records(records, s)) => {
                            let numbers: Vec<i64> =
                                (0..records.len() as i64).map(|i| number + i).collect();
                            tokio::time::timeout(
                                QUERY_TIMEOUT,
                                tx.execute(&insert, &[&numbers, &records]),
                            )
                            .await
                            .map_err(timed("an insert"))??;
                            number += records.len() as i64;
                            subjects += s;
                        }
                        Some(Piece::End) => break,
                        // The feeder failed: roll back.
                        None => {
                            return Err(Error::Database(
                                "the keyring copy was given up midway".into(),
                            ))
                        }
                    }
                }
                add_live_subjects(&tx, subjects).await?;
                tx.commit().await?;
                Ok(true)
            }
            .await;
            let _ = done.send(result);
        });
        let fed = loop {
            match next() {
                Ok(Some(chunk)) => {
                    let subjects = chunk
                        .iter()
                        .filter(|r| {
                            aiaudit_keyring::record_kind(r) == aiaudit_keyring::KIND_SUBJECT_KEY
                        })
                        .count() as i64;
                    let bytes = chunk.iter().map(|r| r.to_vec()).collect();
                    // A closed channel: the transaction ended early (its
                    // outcome says why).
                    if feed.blocking_send(Piece::Records(bytes, subjects)).is_err() {
                        break Ok(());
                    }
                }
                Ok(None) => {
                    let _ = feed.blocking_send(Piece::End);
                    break Ok(());
                }
                Err(e) => break Err(e),
            }
        };
        drop(feed);
        let outcome = outcome
            .recv()
            .map_err(|_| Error::Database("the PostgreSQL task stopped".into()))
            .and_then(|r| r)
            .map_err(keyring_err);
        fed?;
        outcome
    }

    fn overwrite(&self, records: &[(u64, aiaudit_keyring::Record)]) -> aiaudit_keyring::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let numbers: Vec<i64> = records.iter().map(|(n, _)| *n as i64).collect();
        let bytes: Vec<Vec<u8>> = records.iter().map(|(_, r)| r.to_vec()).collect();
        let pool = self.pool.clone();
        self.run(async move {
            let mut c = pool.get().await?;
            let tx = c.transaction().await?;
            xact_lock(&tx, KEYRING_LOCK).await?;
            // Subject keys this write destroys, for the counts.
            let destroyed: i64 = tx
                .query_one(
                    &tx.prepare_cached(
                        "SELECT count(*) FROM aiaudit_keyring k \
                         JOIN unnest($1::int8[], $2::bytea[]) AS u(n, r) ON k.number = u.n \
                         WHERE get_byte(k.record, 5) = 2 AND get_byte(k.record, 4) = 1 \
                         AND get_byte(u.r, 4) <> 1",
                    )
                    .await?,
                    &[&numbers, &bytes],
                )
                .await?
                .get(0);
            if destroyed > 0 {
                tx.execute(
                    &tx.prepare_cached(
                        "UPDATE aiaudit_keyring_counts \
                         SET live = live - $1, destroyed = destroyed + $1 WHERE id = 1",
                    )
                    .await?,
                    &[&destroyed],
                )
                .await?;
            }
            let changed = tx
                .execute(
                    &tx.prepare_cached(
                        "UPDATE aiaudit_keyring k SET record = u.r, \
                         version = nextval('aiaudit_keyring_versions') \
                         FROM unnest($1::int8[], $2::bytea[]) AS u(n, r) WHERE k.number = u.n",
                    )
                    .await?,
                    &[&numbers, &bytes],
                )
                .await?;
            if changed != numbers.len() as u64 {
                return Err(Error::Database(format!(
                    "{} of {} keyring records to overwrite are missing",
                    numbers.len() as u64 - changed,
                    numbers.len()
                )));
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn changes(
        &self,
        mark: u64,
    ) -> aiaudit_keyring::Result<(Vec<(u64, aiaudit_keyring::Record)>, u64)> {
        let (rows, mark) = self.since(mark)?;
        let mut out = Vec::with_capacity(rows.len());
        for (number, bytes) in rows {
            out.push((number as u64, to_record(number, &bytes)?));
        }
        Ok((out, mark))
    }

    fn shared(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        "the keyring in PostgreSQL (aiaudit_keyring)".into()
    }

    fn count(&self) -> aiaudit_keyring::Result<u64> {
        let pool = self.pool.clone();
        self.run(async move {
            let c = pool.get().await?;
            let row = c
                .query_one(
                    &c.prepare_cached("SELECT coalesce(max(number) + 1, 0) FROM aiaudit_keyring")
                        .await?,
                    &[],
                )
                .await?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    fn get(&self, number: u64) -> aiaudit_keyring::Result<Option<aiaudit_keyring::Record>> {
        let pool = self.pool.clone();
        let rows = self.run(async move {
            let c = pool.get().await?;
            Ok(c.query(
                &c.prepare_cached("SELECT record FROM aiaudit_keyring WHERE number = $1")
                    .await?,
                &[&(number as i64)],
            )
            .await?
            .into_iter()
            .map(|r| r.get::<_, Vec<u8>>(0))
            .collect::<Vec<_>>())
        })?;
        rows.first()
            .map(|b| to_record(number as i64, b))
            .transpose()
    }

    fn tenant_records(
        &self,
    ) -> aiaudit_keyring::Result<(Vec<(u64, aiaudit_keyring::Record)>, u64)> {
        let pool = self.pool.clone();
        let (rows, mark) = self.run(async move {
            let mut c = pool.get().await?;
            // One snapshot: the mark covers exactly what the rows show.
            let tx = c
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let mark: i64 = tx
                .query_one("SELECT coalesce(max(version), 0) FROM aiaudit_keyring", &[])
                .await?
                .get(0);
            let rows = tx
                .query(
                    "SELECT number, record FROM aiaudit_keyring \
                     WHERE get_byte(record, 5) <> 2 ORDER BY number",
                    &[],
                )
                .await?;
            tx.commit().await?;
            Ok((numbered_bytes(rows), mark as u64))
        })?;
        Ok((to_numbered(rows)?, mark))
    }

    fn subject_records(
        &self,
        tenant: &str,
        tag: &[u8; 32],
    ) -> aiaudit_keyring::Result<Vec<(u64, aiaudit_keyring::Record)>> {
        let key = subject_key(tenant, tag);
        self.numbered(
            "SELECT number, record FROM aiaudit_keyring \
             WHERE get_byte(record, 5) = 2 AND substring(record FROM 25 FOR 97) = $1 \
             ORDER BY number",
            vec![Box::new(key)],
        )
    }

    fn subjects_records(
        &self,
        wanted: &[(&str, [u8; 32])],
    ) -> aiaudit_keyring::Result<Vec<(u64, aiaudit_keyring::Record)>> {
        // One round trip for a whole batch; the expression index answers
        // `= ANY` as it answers `=`.
        let keys: Vec<Vec<u8>> = wanted
            .iter()
            .map(|(tenant, tag)| subject_key(tenant, tag))
            .collect();
        self.numbered(
            "SELECT number, record FROM aiaudit_keyring \
             WHERE get_byte(record, 5) = 2 AND substring(record FROM 25 FOR 97) = ANY($1::bytea[]) \
             ORDER BY number",
            vec![Box::new(keys)],
        )
    }

    fn scan(
        &self,
        from: u64,
        max: usize,
    ) -> aiaudit_keyring::Result<Vec<(u64, aiaudit_keyring::Record)>> {
        self.numbered(
            "SELECT number, record FROM aiaudit_keyring \
             WHERE number >= $1 ORDER BY number LIMIT $2",
            vec![Box::new(from as i64), Box::new(max as i64)],
        )
    }

    fn subject_counts(&self) -> aiaudit_keyring::Result<aiaudit_keyring::SubjectCounts> {
        let pool = self.pool.clone();
        self.run(async move {
            let c = pool.get().await?;
            let row = c
                .query_one(
                    &c.prepare_cached(
                        "SELECT live, destroyed FROM aiaudit_keyring_counts WHERE id = 1",
                    )
                    .await?,
                    &[],
                )
                .await?;
            Ok(aiaudit_keyring::SubjectCounts {
                live: row.get::<_, i64>(0).max(0) as u64,
                destroyed: row.get::<_, i64>(1).max(0) as u64,
            })
        })
    }

    fn rotation_started(&self) -> aiaudit_keyring::Result<Option<u64>> {
        let pool = self.pool.clone();
        self.run(async move {
            let c = pool.get().await?;
            let row = c
                .query_one(
                    "SELECT rotation_started FROM aiaudit_keyring_counts WHERE id = 1",
                    &[],
                )
                .await?;
            Ok(row.get::<_, Option<i64>>(0).map(|t| t as u64))
        })
    }

    fn set_rotation_started(&self, started: Option<u64>) -> aiaudit_keyring::Result<()> {
        let pool = self.pool.clone();
        self.run(async move {
            let c = pool.get().await?;
            c.execute(
                "UPDATE aiaudit_keyring_counts SET rotation_started = $1 WHERE id = 1",
                &[&started.map(|t| t as i64)],
            )
            .await?;
            Ok(())
        })
    }
}

/// What `aiaudit validate` reports about a PostgreSQL log, read without
/// changing anything (no migration, no lock).
#[derive(Debug, Clone)]
pub struct PgProbe {
    pub server_version: String,
    /// The schema version applied (0: not created yet).
    pub schema: i32,
    /// Whether this connection is encrypted.
    pub tls: bool,
    /// Entries committed, and keyring records (0 before the schema exists).
    pub size: u64,
    pub keyring_records: u64,
}

/// Connects once and reads [`PgProbe`].
pub fn probe(url: &str, ca: Option<&Path>) -> Result<PgProbe> {
    let (config, tls) = connector(url, ca)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (client, conn) = tokio::time::timeout(Duration::from_secs(10), config.connect(tls))
            .await
            .map_err(|_| Error::Database("PostgreSQL did not answer within 10 s".into()))??;
        let conn = tokio::spawn(conn);
        let row = client
            .query_one(
                "SELECT current_setting('server_version'), \
                 coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false), \
                 to_regclass('aiaudit_schema') IS NOT NULL, \
                 to_regclass('aiaudit_keyring') IS NOT NULL",
                &[],
            )
            .await?;
        let (has_schema, has_keyring): (bool, bool) = (row.get(2), row.get(3));
        let mut p = PgProbe {
            server_version: row.get(0),
            tls: row.get(1),
            schema: 0,
            size: 0,
            keyring_records: 0,
        };
        if has_schema {
            p.schema = client
                .query_one("SELECT coalesce(max(version), 0) FROM aiaudit_schema", &[])
                .await?
                .get(0);
            if p.schema >= 1 {
                p.size = client
                    .query_one("SELECT size FROM aiaudit_seq", &[])
                    .await?
                    .get::<_, i64>(0) as u64;
            }
        }
        if has_keyring {
            p.keyring_records = client
                .query_one("SELECT count(*) FROM aiaudit_keyring", &[])
                .await?
                .get::<_, i64>(0) as u64;
        }
        drop(client);
        conn.abort();
        Ok(p)
    })
}
