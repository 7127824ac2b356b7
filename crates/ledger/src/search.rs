//! Forensic search: the indexer that follows the log into the search index,
//! queries over it, and export bundles of what they find.

use crate::auth::Principal;
use crate::error::{Error, Kind};
use crate::Ledger;
use aiaudit_index::{Index, Order, PgSearchIndex, Query, SearchIndex};
use aiaudit_store::Storage;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::Result;

/// Entries indexed per transaction when catching up.
const INDEX_CHUNK: u64 = 16_384;
/// Entries the idle-priority indexer adds per transaction (about 1 ms of
/// work): on a saturated host it may wait long for a core while holding
/// the index's writer, which the catch-up thread then waits for.
const BACKGROUND_CHUNK: u64 = 512;
/// Lag, in entries, beyond which indexing also runs at normal priority:
/// about 2 s of ingest at 100 k events/s (`/readyz` fails at 1 M).
const CATCH_UP_LAG: u64 = 200_000;
/// Entries durable this long and not yet indexed are indexed at normal
/// priority: search never falls further behind on a host whose cores are
/// busy with other work.
const CATCH_UP_AFTER: Duration = Duration::from_secs(1);
/// The largest entry buffer the indexer keeps between reads: about 80 ms
/// of ingest at 100 k events/s.
const KEPT_BUNDLE_BYTES: usize = 8 << 20;

/// Follows the log: every durable entry is added to the index, in order,
/// on threads of their own so ingest never waits for them.
///
/// A node's own index (the embedded default) is followed by [`Follower`].
/// A shared index (PostgreSQL) is added to by the publisher alone; the
/// other nodes only follow how far it got, for their metrics and answers.
/// A node that becomes the publisher goes on from the index's own indexed
/// size, whatever it last added itself.
pub fn spawn_indexer(
    store: Arc<dyn Storage>,
    index: Arc<Index>,
    indexed: Arc<AtomicU64>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    if index.shared() {
        spawn_shared_indexer(store, index, indexed, metrics);
    } else {
        let follower = Arc::new(Follower {
            store,
            index,
            indexed,
            metrics,
            turn: Mutex::new(Vec::new()),
            catching_up: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
        });
        follower.clone().spawn_background();
        follower.spawn_catch_up(CatchUp {
            lag: CATCH_UP_LAG,
            after: CATCH_UP_AFTER,
        });
    }
}

fn spawn_shared_indexer(
    store: Arc<dyn Storage>,
    index: Arc<Index>,
    indexed: Arc<AtomicU64>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    std::thread::Builder::new()
        .name("indexer".into())
        .spawn(move || {
            // Whether `indexed` must be read from the index before adding:
            // another node may have moved it.
            let mut resync = true;
            let mut bundle = Vec::new();
            loop {
                let size = store.size();
                let adding = store.is_publisher();
                if resync || !adding {
                    match index.indexed_size() {
                        Ok(n) => {
                            indexed.store(n, Ordering::Release);
                            resync = !adding;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "reading the indexed size failed; retrying");
                            std::thread::sleep(Duration::from_secs(1));
                            continue;
                        }
                    }
                }
                let at = indexed.load(Ordering::Acquire);
                metrics.index_lag.set(size.saturating_sub(at) as i64);
                metrics.indexed_size.set(at as i64);
                if !adding {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                if at >= size {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                let n = (size - at).min(INDEX_CHUNK);
                match add_entries(&*store, &index, at, n, &mut bundle) {
                    Ok(()) => indexed.store(at + n, Ordering::Release),
                    Err(e) => {
                        tracing::warn!(error = %e, at, "indexing failed; retrying");
                        // Another node may have added these.
                        resync = true;
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        })
        .expect("starting the indexer thread");
}

/// Adds entries `[at, at + n)` to the index, read into `bundle`.
fn add_entries(
    store: &dyn Storage,
    index: &Index,
    at: u64,
    n: u64,
    bundle: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    let added = store
        .read_entry_bundle_into(at, n, bundle)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            let entries = aiaudit_tlog::decode_entry_bundle(bundle).map_err(|e| e.to_string())?;
            index.add(at, &entries).map_err(|e| e.to_string())
        });
    if bundle.capacity() > KEPT_BUNDLE_BYTES {
        *bundle = Vec::new();
    }
    added
}

/// Follows the log into a node's own index on two threads. The background
/// one runs at idle priority: it adds entries whenever a core would
/// otherwise be idle (between requests waiting on the disk), so ingest has
/// the cores when both want them (docs/performance.md, session 33). When
/// it falls more than a catch-up lag behind (ingest saturating the cores,
/// or a start after a crash), the catch-up thread, at normal priority,
/// brings the lag down to half that.
struct Follower {
    store: Arc<dyn Storage>,
    index: Arc<Index>,
    indexed: Arc<AtomicU64>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Held while adding: the buffer entries are read into.
    turn: Mutex<Vec<u8>>,
    /// The catch-up thread is adding; the background one stays out of
    /// its way (it could be preempted holding `turn`).
    catching_up: AtomicBool,
    /// The catch-up thread's checks so far.
    ticks: AtomicU64,
}

impl Follower {
    /// Durable entries not indexed yet.
    fn lag(&self) -> u64 {
        let size = self.store.size();
        size.saturating_sub(self.indexed.load(Ordering::Acquire))
    }

    /// Sets the index's gauges; called holding `turn`, so that the two
    /// threads never publish out of order.
    fn publish(&self) {
        let at = self.indexed.load(Ordering::Acquire);
        let lag = self.store.size().saturating_sub(at);
        self.metrics.index_lag.set(lag as i64);
        self.metrics.indexed_size.set(at as i64);
    }

    /// Adds up to `max` entries from the indexed size on.
    fn add_next(&self, max: u64) -> std::result::Result<(), String> {
        let mut bundle = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        let (at, size) = (self.indexed.load(Ordering::Acquire), self.store.size());
        if at < size {
            let n = (size - at).min(max);
            add_entries(&*self.store, &self.index, at, n, &mut bundle).inspect_err(|e| {
                tracing::warn!(error = %e, at, "indexing failed; retrying");
            })?;
            self.indexed.store(at + n, Ordering::Release);
        }
        self.publish();
        Ok(())
    }

    fn spawn_background(self: Arc<Self>) {
        std::thread::Builder::new()
            .name("indexer".into())
            .spawn(move || {
                at_idle_priority();
                loop {
                    if self.lag() == 0 {
                        std::thread::sleep(Duration::from_millis(5));
                    } else if self.catching_up.load(Ordering::Acquire) {
                        std::thread::sleep(Duration::from_millis(50));
                    } else if self.add_next(BACKGROUND_CHUNK).is_err() {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            })
            .expect("starting the indexer thread");
    }

    /// Every 100 ms: when the lag is beyond `catch_up.lag`, or entries
    /// durable `catch_up.after` ago are still not indexed (a host whose
    /// cores are busy with other work), adds at normal priority until
    /// neither holds and the lag is at most half `catch_up.lag`.
    fn spawn_catch_up(self: Arc<Self>, catch_up: CatchUp) {
        const TICK: Duration = Duration::from_millis(100);
        let ticks = (catch_up.after.as_millis() / TICK.as_millis()).max(1) as usize;
        std::thread::Builder::new()
            .name("indexer-catch-up".into())
            .spawn(move || {
                // The log's size at each of the last `ticks` ticks.
                let mut sizes = std::collections::VecDeque::with_capacity(ticks + 1);
                loop {
                    std::thread::sleep(TICK);
                    self.ticks.fetch_add(1, Ordering::Release);
                    if let Ok(_turn) = self.turn.try_lock() {
                        // Not while the other thread adds: it publishes after.
                        self.publish();
                    }
                    sizes.push_back(self.store.size());
                    let due = if sizes.len() > ticks {
                        sizes.pop_front().unwrap_or(0)
                    } else {
                        0
                    };
                    let stale = |f: &Self| f.indexed.load(Ordering::Acquire) < due;
                    if self.lag() <= catch_up.lag && !stale(&self) {
                        continue;
                    }
                    // Cleared however this ends, a panic included: the
                    // background thread waits while it is set.
                    let _flag = Flag::raise(&self.catching_up);
                    while self.lag() > catch_up.lag / 2 || stale(&self) {
                        if self.add_next(INDEX_CHUNK).is_err() {
                            std::thread::sleep(Duration::from_secs(1));
                            break;
                        }
                    }
                }
            })
            .expect("starting the indexer catch-up thread");
    }
}

/// A flag set while it lives.
struct Flag<'a>(&'a AtomicBool);

impl<'a> Flag<'a> {
    fn raise(flag: &'a AtomicBool) -> Flag<'a> {
        flag.store(true, Ordering::Release);
        Flag(flag)
    }
}

impl Drop for Flag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// When indexing also runs at normal priority.
#[derive(Clone, Copy)]
struct CatchUp {
    /// Beyond this lag, in entries.
    lag: u64,
    /// When entries durable this long ago are not indexed yet.
    after: Duration,
}

/// Lowers the calling thread to Linux's idle scheduling class: it runs when
/// a core has nothing else to run. Elsewhere (or if refused) it stays at
/// normal priority, and the catch-up thread rarely finds anything to do.
fn at_idle_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: changes the calling thread's own policy (pid 0); `param`
        // lives through the call.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
            tracing::info!(
                error = %std::io::Error::last_os_error(),
                "the indexer stays at normal priority"
            );
        }
    }
}

/// Opens the search index: on a log shared in PostgreSQL, the one index in
/// the same database, which every node reads; otherwise the node's own file.
pub fn open(config: &crate::LedgerConfig, store: &dyn Storage) -> anyhow::Result<Index> {
    match &config.storage {
        Some(url) if store.shared() => {
            let (pg, tls) = aiaudit_store::connector(url, config.storage_ca.as_deref())?;
            Ok(Index::Postgres(PgSearchIndex::open_with(pg, Some(tls))?))
        }
        _ => Ok(Index::File(open_index(&config.data_dir, store.size())?)),
    }
}

/// Opens the index in the data directory; one that is ahead of the log
/// (restored data directory, or a log cut back to its last acknowledgement)
/// is rebuilt from scratch.
pub fn open_index(data_dir: &std::path::Path, log_size: u64) -> anyhow::Result<SearchIndex> {
    let path = data_dir.join(aiaudit_index::INDEX_FILE);
    match SearchIndex::open(&path).and_then(|i| Ok((i.indexed_size()?, i))) {
        Ok((size, index)) if size <= log_size => return Ok(index),
        Ok(_) => tracing::warn!("the search index is ahead of the log: rebuilding it"),
        Err(e) => tracing::warn!(error = %e, "the search index cannot be opened: rebuilding it"),
    }
    remove_index_files(&path)?;
    Ok(SearchIndex::open(&path)?)
}

/// Deletes an index file and its SQLite companions.
pub fn remove_index_files(path: &std::path::Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

const FILTERS: &[&str] = &[
    "tenant",
    "actor",
    "action",
    "model",
    "provider",
    "outcome",
    "risk",
    "trace_id",
    "conversation_id",
    "source",
    "subject",
];

/// Parses the search parameters shared by `GET /v1/events` and exports.
/// Unknown parameters are refused: a typo must not silently widen a search.
pub fn parse_query(params: &HashMap<String, String>, extra: &[&str]) -> Result<Query> {
    for name in params.keys() {
        let known = FILTERS.contains(&name.as_str())
            || ["from", "to", "limit", "cursor", "order"].contains(&name.as_str())
            || extra.contains(&name.as_str());
        if !known {
            return Err(Error::bad_parameter(
                name,
                format!(
                    "unknown parameter; filters are {}, from, to, limit, cursor, order",
                    FILTERS.join(", ")
                ),
            ));
        }
    }
    let get = |n: &str| params.get(n).filter(|v| !v.is_empty()).cloned();
    let time = |n: &str| -> Result<Option<i64>> {
        get(n)
            .map(|v| {
                aiaudit_index::parse_time_ms(&v).ok_or_else(|| {
                    Error::bad_parameter(n, format!("{v:?} is not an RFC 3339 time"))
                })
            })
            .transpose()
    };
    let limit = match get("limit") {
        None => 100,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=aiaudit_index::MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                Error::bad_parameter(
                    "limit",
                    format!("{v:?} is not between 1 and {}", aiaudit_index::MAX_LIMIT),
                )
            })?,
    };
    let after = get("cursor")
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| Error::bad_parameter("cursor", "not a cursor from a previous page"))
        })
        .transpose()?;
    let order = match get("order").as_deref() {
        None | Some("desc") => Order::Desc,
        Some("asc") => Order::Asc,
        Some(o) => {
            return Err(Error::bad_parameter(
                "order",
                format!("{o:?} is not \"asc\" or \"desc\""),
            ))
        }
    };
    Ok(Query {
        tenants: None,
        tenant: get("tenant"),
        actor: get("actor"),
        action: get("action"),
        outcome: get("outcome"),
        source: get("source"),
        provider: get("provider"),
        model: get("model"),
        risk: get("risk"),
        subject: get("subject"),
        trace_id: get("trace_id"),
        conversation_id: get("conversation_id"),
        from_ms: time("from")?,
        to_ms: time("to")?,
        limit,
        after,
        order,
    })
}

/// Restricts a query to what the caller may read: auditors and admins,
/// their own tenants only.
pub fn scope(ledger: &Ledger, p: &Principal, q: &mut Query) -> Result<()> {
    if let Some(t) = &q.tenant {
        if !p.can_read(t) {
            return Err(Error::forbidden(format!(
                "this token may not read tenant {t:?}"
            )));
        }
        // Sealed events keep their subject as the tenant's HMAC tag: a plain
        // subject is searched by its tag (`POST /v1/hash` gives the same).
        if let Some(s) = q.subject.as_ref().filter(|_| ledger.config.encryption) {
            if !s.starts_with(aiaudit_keyring::HMAC_PREFIX) {
                if let Some(tag) = ledger.keyring.hmac_if_salted(t, s.as_bytes()) {
                    q.subject = Some(tag);
                }
            }
        }
    } else if !p.can_read_all() {
        if !p.tenants.iter().any(|t| p.can_read(t)) {
            return Err(Error::forbidden(
                "searching needs an auditor or admin token",
            ));
        }
        q.tenants = Some(p.tenants.clone());
    }
    Ok(())
}

/// One page of search results.
pub struct Found {
    /// Each matching event's index row, with its full event when its
    /// content can be read (`content`: plain, sealed, erased or unreadable).
    pub events: Vec<Value>,
    pub next_cursor: Option<String>,
    pub indexed_size: u64,
    pub index_lag_events: u64,
}

impl Ledger {
    /// One page of the events matching `q` that `who` may read.
    pub async fn search(self: &Arc<Self>, who: &Principal, mut q: Query) -> Result<Found> {
        scope(self, who, &mut q)?;
        let asked = crate::access::Asked::of(&q);
        let l = self.clone();
        let (page, events) = tokio::task::spawn_blocking(move || {
            let page = l.index.query(&q)?;
            let events: Vec<Value> = page
                .rows
                .iter()
                .map(|row| {
                    let mut out = json!(row);
                    // Search pages leave large members out (each listed with
                    // where to read it): a page of 16 MiB events would not do.
                    let readable = l
                        .store
                        .read_entry(row.index)
                        .map_err(|e| e.to_string())
                        .and_then(|entry| {
                            crate::sealing::open_entry(
                                &l.keyring,
                                &*l.store,
                                &entry,
                                crate::sealing::BlobMode::Omit,
                            )
                            .map_err(String::from)
                        });
                    match readable {
                        Ok(r) => {
                            out["content"] = json!(r.content);
                            if let Some(e) = r.event {
                                out["event"] = Value::Object(e);
                            }
                            if !r.blobs.is_empty() {
                                let views: Vec<Value> = r
                                    .blobs
                                    .iter()
                                    .enumerate()
                                    .map(|(n, b)| b.to_json(row.index, n))
                                    .collect();
                                out["blobs"] = json!(views);
                            }
                        }
                        Err(e) => out["content"] = json!(format!("unreadable: {e}")),
                    }
                    out
                })
                .collect();
            Ok::<_, Error>((page, events))
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
        let shown: Vec<(String, u64)> = page
            .rows
            .iter()
            .map(|r| (r.tenant.clone(), r.index))
            .collect();
        asked.note_rows(self, who, crate::access::Kind::Search, &shown);
        let indexed = self.indexed.load(Ordering::Acquire);
        Ok(Found {
            events,
            next_cursor: page.next.map(|n| n.to_string()),
            indexed_size: indexed,
            index_lag_events: self.store.size().saturating_sub(indexed),
        })
    }

    /// How many events match `q` (its limit and cursor ignored) that `who`
    /// may read: the total a result page is part of.
    pub async fn count(self: &Arc<Self>, who: &Principal, mut q: Query) -> Result<u64> {
        scope(self, who, &mut q)?;
        let l = self.clone();
        tokio::task::spawn_blocking(move || l.index.count(&q))
            .await
            .map_err(|e| Error::internal(e.to_string()))?
            .map_err(Error::from)
    }

    /// Every event matching `q` that `who` may read, as an export bundle
    /// (`aiaudit-bundle 1`, or `2` with blobs; tar.gz): each with its inclusion proof against
    /// the latest checkpoint, and its opening when the content can be read.
    /// `filters` are recorded in the bundle as asked.
    pub async fn export(
        self: &Arc<Self>,
        who: &Principal,
        mut q: Query,
        filters: Value,
    ) -> Result<Vec<u8>> {
        scope(self, who, &mut q)?;
        // The checkpoint served, cosignatures included, so the bundle
        // verifies under a witness policy too.
        let published = self.served_checkpoint();
        let l = self.clone();
        let asked = crate::access::Asked::of(&q);
        let (bytes, exported) =
            tokio::task::spawn_blocking(move || build_export(&l, q, &published, filters))
                .await
                .map_err(|e| Error::internal(e.to_string()))??;
        asked.note_rows(self, who, crate::access::Kind::Export, &exported);
        tracing::info!(token_id = %who.token_id, bytes = bytes.len(), "export bundle built");
        Ok(bytes)
    }
}

/// Most events one export holds (the bundle is built in memory).
pub const MAX_EXPORT_EVENTS: usize = 200_000;
/// The most large content (blob bytes) one export carries: the bundle is
/// built in memory before it is answered.
pub const MAX_EXPORT_BLOB_BYTES: usize = 128 << 20;

/// A bundle's bytes, and the (tenant, index) of every event it holds.
type Exported = (Vec<u8>, Vec<(String, u64)>);

fn build_export(
    ledger: &Ledger,
    mut q: Query,
    published: &crate::Published,
    filters: Value,
) -> Result<Exported> {
    let mut exported = Vec::new();
    let internal = |e: &dyn std::fmt::Display| Error::internal(e.to_string());
    let size = published.checkpoint.size;
    q.order = Order::Asc;
    q.limit = aiaudit_index::MAX_LIMIT;
    let created = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| internal(&e))?;
    let spool = tempfile::tempfile().map_err(|e| internal(&e))?;
    let blob_spool = tempfile::tempfile().map_err(|e| internal(&e))?;
    let mut writer = aiaudit_bundle::BundleWriter::new(
        Vec::new(),
        spool,
        blob_spool,
        &ledger.signer,
        &published.note,
        filters,
        &created,
    )
    .map_err(|e| internal(&e))?;
    let mut blob_bytes = 0usize;
    'pages: loop {
        let page = ledger.index.query(&q)?;
        for row in &page.rows {
            // Only what the checkpoint covers can be proven.
            if row.index >= size {
                break 'pages;
            }
            if writer.len() >= MAX_EXPORT_EVENTS {
                return Err(Error::new(
                    Kind::TooLarge,
                    "export-too-large",
                    "Export too large",
                    format!(
                        "more than {MAX_EXPORT_EVENTS} events match: narrow the export with from/to"
                    ),
                ));
            }
            let entry = ledger
                .store
                .read_entry(row.index)
                .map_err(|e| Error::from_store(&e))?;
            let readable = crate::sealing::open_entry(
                &ledger.keyring,
                &*ledger.store,
                &entry,
                crate::sealing::BlobMode::Raw,
            )
            .map_err(|e| crate::read::open_failed(&ledger.metrics, row.index, e))?;
            blob_bytes += readable.blob_contents.iter().map(Vec::len).sum::<usize>();
            if blob_bytes > MAX_EXPORT_BLOB_BYTES {
                return Err(Error::new(
                    Kind::TooLarge,
                    "export-too-large",
                    "Export too large",
                    format!(
                        "the matching events hold more than {} MiB of large content (blobs), which an export carries whole: narrow the export with from/to",
                        MAX_EXPORT_BLOB_BYTES >> 20
                    ),
                ));
            }
            let proof = aiaudit_tlog::prove_record(size, row.index, &&*ledger.store)
                .map_err(|e| internal(&e))?;
            writer
                .add(&aiaudit_bundle::BundleEvent {
                    index: row.index,
                    entry,
                    inclusion_proof: proof,
                    opening: readable.opening,
                    blobs: readable.blob_contents,
                })
                .map_err(|e| internal(&e))?;
            exported.push((row.tenant.clone(), row.index));
        }
        match page.next {
            Some(n) => q.after = Some(n),
            None => break,
        }
    }
    let bytes = writer.finish().map_err(|e| internal(&e))?;
    Ok((bytes, exported))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiaudit_store::{FsStore, NewEntry};
    use std::time::Instant;

    /// A log of `events` entries and a follower of it that has indexed none.
    fn follower(dir: &std::path::Path, events: usize) -> Arc<Follower> {
        let (store, _) = FsStore::open(dir).unwrap();
        let entries: Vec<NewEntry> = (0..events)
            .map(|i| {
                let entry = format!("entry {i}").into_bytes();
                NewEntry {
                    key: format!("t/e{i}"),
                    leaf: aiaudit_tlog::record_hash(&entry),
                    entry,
                }
            })
            .collect();
        store.append(&entries).unwrap();
        let index = Index::File(open_index(dir, store.size()).unwrap());
        Arc::new(Follower {
            store: Arc::new(store),
            index: Arc::new(index),
            indexed: Arc::new(AtomicU64::new(0)),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            turn: Mutex::new(Vec::new()),
            catching_up: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
        })
    }

    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_idle_priority_indexer_alone_indexes_the_whole_log() {
        let dir = tempfile::tempdir().unwrap();
        let f = follower(dir.path(), 5_000);
        f.clone().spawn_background();
        wait_for("the index and its gauges to cover the log", || {
            f.lag() == 0
                && f.index.indexed_size().unwrap() == 5_000
                && f.metrics.indexed_size.get() == 5_000
                && f.metrics.index_lag.get() == 0
        });
        #[cfg(target_os = "linux")]
        assert_eq!(
            scheduling_policies("indexer"),
            vec![libc::SCHED_IDLE as u64],
            "the indexer thread's scheduling class"
        );
    }

    /// The scheduling policy of each of this process's threads named `name`.
    #[cfg(target_os = "linux")]
    fn scheduling_policies(name: &str) -> Vec<u64> {
        let mut found = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let task = task.unwrap().path();
            let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            if comm.trim_end() != name {
                continue;
            }
            let stat = std::fs::read_to_string(task.join("stat")).unwrap();
            // Fields after the command's closing parenthesis start at the
            // third; the policy is the 41st (proc(5)).
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            found.push(rest.split(' ').nth(41 - 3).unwrap().parse().unwrap());
        }
        found
    }

    #[test]
    fn the_catch_up_indexer_takes_over_beyond_its_lag() {
        let dir = tempfile::tempdir().unwrap();
        let f = follower(dir.path(), 5_000);
        // No background thread: as if ingest kept it from ever running.
        f.clone().spawn_catch_up(CatchUp {
            lag: 1_000,
            after: Duration::from_secs(3_600),
        });
        wait_for("the lag to come down to half the catch-up lag", || {
            f.lag() <= 500
        });
        assert!(f.index.indexed_size().unwrap() >= 4_500);
    }

    #[test]
    fn the_catch_up_indexer_leaves_a_lag_below_its_own_alone() {
        let dir = tempfile::tempdir().unwrap();
        // Over half the catch-up lag, under all of it, and nothing stale.
        let f = follower(dir.path(), 700);
        f.clone().spawn_catch_up(CatchUp {
            lag: 1_000,
            after: Duration::from_secs(3_600),
        });
        wait_for("five checks", || f.ticks.load(Ordering::Acquire) >= 5);
        assert_eq!(f.index.indexed_size().unwrap(), 0);
        assert_eq!(f.lag(), 700);
        assert_eq!(f.metrics.index_lag.get(), 700, "published at each check");
    }

    #[test]
    fn the_catch_up_indexer_adds_what_waited_too_long() {
        let dir = tempfile::tempdir().unwrap();
        // Far below the catch-up lag, and no background thread.
        let f = follower(dir.path(), 100);
        f.clone().spawn_catch_up(CatchUp {
            lag: 1_000_000,
            after: Duration::from_millis(300),
        });
        wait_for("the entries waiting to be indexed", || {
            f.index.indexed_size().unwrap() == 100
        });
    }
}
