//! The embedded file backend. Layout of a data directory (docs/format.md):
//!
//! ```text
//! FORMAT              "aiaudit-fs 1": refused if unknown
//! checkpoint          latest signed checkpoint (replaced atomically)
//! log/entries         entries, each as u16 BE length + bytes (entry bundle encoding)
//! log/leaves          per entry: 32-byte leaf hash + u64 BE end offset in log/entries
//! log/levels/NN       tree nodes at level NN (1..63), 32 bytes each, in index order
//! ids.redb            dedup key -> log index, and how far it is filled in (`id_keys.rs`)
//! blobs/ab/ab12…      out-of-line content, one file per blob (see `blobs.rs`)
//! ```
//!
//! Only `log/entries` and `log/leaves` are on the acknowledgement path (one
//! fsync each per group commit). Levels and the id index are derived: they
//! are made durable before a checkpoint covers them, and rebuilt from the
//! leaves on recovery.

use crate::id_keys::{self, UuidKeyBytes, TENANT_NUMBERS, UUID_IDS};
use crate::{Appended, Error, NewEntry, Result, Storage, Written};
use aiaudit_tlog::{record_hash, Checkpoint, Hash, NodeReader, TreeBuilder};
use redb::{Durability, TableDefinition};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The first line of `FORMAT` in a data directory this version can open.
pub const FORMAT_LINE: &str = "aiaudit-fs 1";

/// Bytes per record in `log/leaves`: leaf hash, then end offset of the entry.
const LEAF_RECORD: u64 = 40;
const HASH: u64 = 32;
const MAX_LEVEL: u32 = 63;
/// How often the id index is made durable; between those, recovery rebuilds
/// it from the log tail.
const ID_INDEX_SYNC: Duration = Duration::from_secs(2);

/// Memory the id index may use for its page cache.
const ID_INDEX_CACHE_BYTES: usize = 32 << 20;

/// Dedup key (`tenant/id`) -> log index: every id in key format 2; from
/// format 3 only ids that are not canonical UUIDs (see `id_keys`).
const IDS: TableDefinition<&str, u64> = TableDefinition::new("tenant_ids");
/// Key format 1 (before 0.2): bare event id -> log index, across tenants.
const LEGACY_IDS: TableDefinition<&str, u64> = TableDefinition::new("ids");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const INDEXED_SIZE: &str = "indexed_size";
/// Which keys `IDS` holds; absent means format 1 (the legacy table).
const KEY_FORMAT: &str = "key_format";
/// Text keys `tenant/id` for every id.
const KEY_FORMAT_TENANT_ID: u64 = 2;
/// UUID ids under fixed keys (`id_keys`), other ids as in format 2.
const KEY_FORMAT_UUIDS: u64 = 3;
/// The log index from which UUID ids went to `UUID_IDS` (a directory
/// upgraded from format 2 holds the earlier ones in `IDS`); 0 on new logs.
const UUID_IDS_FROM: &str = "uuid_ids_from";
/// Entries re-keyed per transaction when upgrading the id index.
const UPGRADE_CHUNK: u64 = 50_000;

/// Maps keyed by dedup keys (clients choose them): hashed with a random key.
type KeyMap<K, V> = HashMap<K, V, ahash::RandomState>;

/// The write frontier: what the sequencer has written, durable or not.
struct Sequenced {
    size: u64,
    entries_len: u64,
    /// Counts failed syncs: a sync that fails cuts the log back to its
    /// durable size and starts the next generation of writes.
    generation: u64,
}

struct Integrated {
    tree: TreeBuilder,
    last_durable_ids: Instant,
}

/// The embedded, file-based ledger storage.
pub struct FsStore {
    files: LogFiles,
    blobs: crate::blobs::FsBlobs,
    seq: Mutex<Sequenced>,
    /// Durable entries: what readers, integration and checkpoints see.
    size: AtomicU64,
    /// One sync of the log files at a time; it holds where the durable
    /// entries end in `log/entries`.
    syncing: Mutex<u64>,
    /// Per generation that a failed sync ended, the durable size it was
    /// cut back to: its batches beyond it are lost.
    cut_back: Mutex<HashMap<u64, u64>>,
    /// A cut back of the log files after a failed write or sync failed
    /// itself: they may still hold the lost batches' bytes past the
    /// frontier, which a later batch ending at one of their boundaries
    /// would bring back to life at recovery. No batch is written until a
    /// cut succeeds. Read and set holding `seq`.
    uncut: AtomicBool,
    integ: Mutex<Integrated>,
    integrated: AtomicU64,
    /// Ids logged but not yet in `ids`: bounded by the integration lag.
    pending: Mutex<KeyMap<String, u64>>,
    /// How many times `ids` was reopened, which loses its commits that were
    /// not durable. Changed only while holding `pending`, for the whole
    /// reopen: whoever took ids out of `pending` or missed them there, and
    /// then sees this move, must look again (the reopen put back what it
    /// lost).
    ids_reopened: AtomicU64,
    /// `None` only while being reopened after an I/O error (redb refuses
    /// further use of a database that saw one).
    ids: RwLock<Option<redb::Database>>,
    /// The id index's tenant numbers (`id_keys::TENANT_NUMBERS`) as committed.
    tenant_numbers: RwLock<HashMap<String, u32>>,
    /// Whether `IDS` may hold UUID ids too (indexed before key format 3).
    uuids_in_text_keys: AtomicBool,
    ids_path: PathBuf,
    checkpoint_lock: Mutex<()>,
    #[cfg(feature = "fault-injection")]
    io_faults: crate::IoFaults,
}

/// What recovery found and did when opening a store.
#[derive(Debug, Default, Clone)]
pub struct Recovery {
    pub size: u64,
    pub checkpoint_size: u64,
    pub truncated_entries: u64,
    pub rebuilt_levels: bool,
    pub elapsed: Duration,
}

impl FsStore {
    /// Opens (creating if needed) a data directory and recovers it after a crash.
    pub fn open(dir: &Path) -> Result<(FsStore, Recovery)> {
        Self::open_then_recover(dir, |_| ())
    }

    /// Tests only: [`FsStore::open`] with faults armed before recovery.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn open_with_faults(
        dir: &Path,
        arm: impl FnOnce(&crate::IoFaults),
    ) -> Result<(FsStore, Recovery)> {
        Self::open_then_recover(dir, |store| arm(&store.io_faults))
    }

    fn open_then_recover(
        dir: &Path,
        before_recovery: impl FnOnce(&FsStore),
    ) -> Result<(FsStore, Recovery)> {
        let started = Instant::now();
        fs::create_dir_all(dir.join("log").join("levels"))?;
        check_format(dir)?;
        let files = LogFiles::open(dir, true)?;
        let ids_path = dir.join("ids.redb");
        #[cfg(feature = "fault-injection")]
        let io_faults = crate::IoFaults::default();
        #[cfg(feature = "fault-injection")]
        let ids = open_id_index(&ids_path, &io_faults)?;
        #[cfg(not(feature = "fault-injection"))]
        let ids = open_id_index(&ids_path)?;
        let store = FsStore {
            files,
            blobs: crate::blobs::FsBlobs::open(dir, true)?,
            seq: Mutex::new(Sequenced {
                size: 0,
                entries_len: 0,
                generation: 0,
            }),
            size: AtomicU64::new(0),
            syncing: Mutex::new(0),
            cut_back: Mutex::new(HashMap::new()),
            uncut: AtomicBool::new(false),
            integ: Mutex::new(Integrated {
                tree: TreeBuilder::new(),
                last_durable_ids: Instant::now(),
            }),
            integrated: AtomicU64::new(0),
            pending: Mutex::new(KeyMap::default()),
            ids_reopened: AtomicU64::new(0),
            ids: RwLock::new(Some(ids)),
            tenant_numbers: RwLock::new(HashMap::new()),
            uuids_in_text_keys: AtomicBool::new(false),
            ids_path,
            checkpoint_lock: Mutex::new(()),
            #[cfg(feature = "fault-injection")]
            io_faults,
        };
        before_recovery(&store);
        let mut recovery = store.recover()?;
        recovery.elapsed = started.elapsed();
        Ok((store, recovery))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.files.dir
    }

    /// Tests only: faults to inject into the writes and fsyncs of appends.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn io_faults(&self) -> &crate::IoFaults {
        &self.io_faults
    }

    fn recover(&self) -> Result<Recovery> {
        let checkpoint = self
            .checkpoint()?
            .map(|n| parse_checkpoint(&n))
            .transpose()?;
        let cp_size = checkpoint.as_ref().map_or(0, |c| c.size);
        let mut n = self.files.leaves.metadata()?.len() / LEAF_RECORD;
        if n < cp_size {
            return Err(Error::Corrupt {
                index: n,
                detail: format!(
                    "log/leaves holds {n} entries but the signed checkpoint covers {cp_size}"
                ),
            });
        }
        // Entries past the checkpoint may include a torn, unacknowledged tail:
        // keep the longest prefix whose entries hash to their leaves.
        let mut start = self.files.entry_start(cp_size)?;
        let entries_len = self.files.entries.metadata()?.len();
        let mut valid = cp_size;
        for i in cp_size..n {
            let (leaf, end) = self.files.leaf_record(i)?;
            if end < start + 2 || end > entries_len {
                break;
            }
            let mut buf = vec![0u8; (end - start) as usize];
            self.files.entries.read_exact_at(&mut buf, start)?;
            let len = u16::from_be_bytes([buf[0], buf[1]]) as u64;
            if len + 2 != end - start || record_hash(&buf[2..]) != leaf {
                break;
            }
            valid = i + 1;
            start = end;
        }
        let truncated = n - valid;
        n = valid;
        if self.files.leaves.metadata()?.len() != n * LEAF_RECORD || entries_len != start {
            self.files.leaves.set_len(n * LEAF_RECORD)?;
            self.files.entries.set_len(start)?;
        }
        // Always: the tail kept may have been written and never synced (the
        // process died between a group's write and its fsync, now up to a
        // few groups). From here on it counts as durable, so it must be.
        self.sync_files()?;
        {
            let mut seq = self.seq.lock().unwrap();
            seq.size = n;
            seq.entries_len = start;
        }
        *self.syncing.lock().unwrap() = start;
        self.size.store(n, Ordering::SeqCst);

        // Tree levels up to the checkpoint were made durable before it was
        // signed; check them against its root and rebuild them if they disagree.
        let mut rebuilt = false;
        let mut tree = self.tree_at(cp_size);
        if tree.is_ok() && !self.levels_cover(cp_size)? {
            tree = Err(Error::Corrupt {
                index: cp_size,
                detail: "a tree level file is shorter than the checkpoint needs".into(),
            });
        }
        if let (Some(cp), Ok(t)) = (&checkpoint, &tree) {
            if t.root() != cp.root {
                tree = Err(Error::Corrupt {
                    index: cp_size,
                    detail: "tree levels disagree with the checkpoint".into(),
                });
            }
        }
        let tree = match tree {
            Ok(t) => t,
            Err(_) => {
                tracing::warn!("tree levels do not match the signed checkpoint; rebuilding them from the leaves");
                rebuilt = true;
                TreeBuilder::new()
            }
        };
        self.integ.lock().unwrap().tree = tree;
        self.integrated
            .store(self.integ.lock().unwrap().tree.size(), Ordering::SeqCst);

        self.upgrade_id_index(n)?;
        // Ids logged after the id index was last made durable.
        let indexed = self.indexed_size()?;
        if indexed > n {
            return Err(Error::Corrupt {
                index: n,
                detail: format!("id index covers {indexed} entries but the log holds {n}"),
            });
        }
        let lost = self.logged_keys(indexed, n)?;
        self.pending.lock().unwrap().extend(lost);

        let (_, root) = self.integrate()?;
        if let Some(cp) = &checkpoint {
            // The checkpoint's root must be reproducible from the leaves.
            let r = aiaudit_tlog::tree_hash(cp.size, self).map_err(|e| Error::Corrupt {
                index: cp.size,
                detail: e.to_string(),
            })?;
            if r != cp.root {
                return Err(Error::Corrupt {
                    index: cp.size,
                    detail: "the log's entries do not hash to the signed checkpoint's root; run `aiaudit verify --data-dir` to find where".into(),
                });
            }
        }
        let _ = root;
        // Drop level hashes past the durable size (from a torn tail).
        for level in 1..=MAX_LEVEL {
            let want = (n >> level) * HASH;
            if let Some(f) = self.files.level_file(level, false)? {
                if f.metadata()?.len() > want {
                    f.set_len(want)?;
                }
            }
        }
        Ok(Recovery {
            size: n,
            checkpoint_size: cp_size,
            truncated_entries: truncated,
            rebuilt_levels: rebuilt,
            elapsed: Duration::ZERO,
        })
    }

    /// A tree builder resumed at `size` from stored nodes.
    fn tree_at(&self, size: u64) -> Result<TreeBuilder> {
        let mut edge = Vec::new();
        for (level, index) in TreeBuilder::edge_nodes(size) {
            edge.push(self.files.node_unchecked(level, index)?);
        }
        TreeBuilder::from_edge(size, edge).map_err(|e| Error::Corrupt {
            index: size,
            detail: e.to_string(),
        })
    }

    /// Whether every level file holds at least the nodes a tree of `size` has.
    fn levels_cover(&self, size: u64) -> Result<bool> {
        for level in 1..=MAX_LEVEL {
            let want = size >> level;
            if want == 0 {
                break;
            }
            let have = match self.files.level_file(level, false)? {
                Some(f) => f.metadata()?.len() / HASH,
                None => 0,
            };
            if have < want {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn indexed_size(&self) -> Result<u64> {
        self.with_ids(read_indexed_size)
    }

    /// The dedup keys of entries `[from, to)` with their indexes.
    fn logged_keys(&self, from: u64, to: u64) -> Result<Vec<(String, u64)>> {
        (from..to).map(|i| Ok((self.dedup_key_at(i)?, i))).collect()
    }

    fn dedup_key_at(&self, i: u64) -> Result<String> {
        let entry = self.read_entry(i)?;
        aiaudit_event::entry_dedup_key(&entry).map_err(|e| Error::Corrupt {
            index: i,
            detail: e.to_string(),
        })
    }

    /// Brings the id index to key format 3 (docs/format.md), once per
    /// data directory. Format 1 keyed events by id alone, so one tenant's
    /// id shadowed another's: what it covered is keyed again from the log,
    /// in chunks (a crash part-way starts over). Format 2 keyed every id by
    /// text: its keys stay, and UUID ids from here on get fixed keys.
    fn upgrade_id_index(&self, size: u64) -> Result<()> {
        let (format, covered) = self.with_ids(|db| {
            let tx = db.begin_read()?;
            let meta = tx.open_table(META)?;
            Ok((
                meta.get(KEY_FORMAT)?.map(|v| v.value()),
                meta.get(INDEXED_SIZE)?.map_or(0, |v| v.value()),
            ))
        })?;
        let covered = covered.min(size);
        match format {
            Some(KEY_FORMAT_UUIDS) => {}
            Some(KEY_FORMAT_TENANT_ID) => self.with_ids(|db| {
                let tx = db.begin_write()?;
                // Left by a build of format 3 before a rollback: stale.
                tx.delete_table(UUID_IDS)?;
                tx.delete_table(TENANT_NUMBERS)?;
                tx.open_table(UUID_IDS)?;
                tx.open_table(TENANT_NUMBERS)?;
                {
                    let mut meta = tx.open_table(META)?;
                    meta.insert(UUID_IDS_FROM, covered)?;
                    meta.insert(KEY_FORMAT, KEY_FORMAT_UUIDS)?;
                }
                tx.commit()?;
                Ok(())
            })?,
            Some(newer) if newer > KEY_FORMAT_UUIDS => {
                return Err(Error::IdIndex(format!(
                    "ids.redb has key format {newer}, newer than this build reads ({KEY_FORMAT_UUIDS}); \
                     run a newer aiaudit or delete ids.redb to rebuild it from the log"
                )))
            }
            _ => self.rekey_id_index(covered)?,
        }
        let from = self.with_ids(|db| {
            let tx = db.begin_read()?;
            let meta = tx.open_table(META)?;
            Ok(meta.get(UUID_IDS_FROM)?.map_or(0, |v| v.value()))
        })?;
        self.uuids_in_text_keys.store(from > 0, Ordering::SeqCst);
        self.load_tenant_numbers()
    }

    /// Keys every entry the index covered again, from the log.
    fn rekey_id_index(&self, covered: u64) -> Result<()> {
        if covered > 0 {
            tracing::info!(
                entries = covered,
                "upgrading the id index to per-tenant keys"
            );
        }
        self.with_ids(|db| {
            let tx = db.begin_write()?;
            for table in [IDS, LEGACY_IDS] {
                tx.delete_table(table)?;
            }
            tx.delete_table(UUID_IDS)?;
            tx.delete_table(TENANT_NUMBERS)?;
            tx.open_table(IDS)?;
            tx.open_table(UUID_IDS)?;
            tx.open_table(TENANT_NUMBERS)?;
            tx.commit()?;
            Ok(())
        })?;
        self.tenant_numbers.write().unwrap().clear();
        let mut at = 0;
        while at < covered {
            let end = (at + UPGRADE_CHUNK).min(covered);
            let keys = (at..end)
                .map(|i| Ok((self.dedup_key_at(i)?, i)))
                .collect::<Result<Vec<_>>>()?;
            self.with_ids(|db| {
                let tx = db.begin_write()?;
                let numbered = self.put_ids(&tx, &keys)?;
                tx.commit()?;
                self.tenant_numbers.write().unwrap().extend(numbered);
                Ok(())
            })?;
            at = end;
        }
        self.with_ids(|db| {
            let tx = db.begin_write()?;
            {
                let mut meta = tx.open_table(META)?;
                meta.insert(UUID_IDS_FROM, 0)?;
                meta.insert(KEY_FORMAT, KEY_FORMAT_UUIDS)?;
                meta.insert(INDEXED_SIZE, covered)?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn load_tenant_numbers(&self) -> Result<()> {
        let numbers = self.with_ids(read_tenant_numbers)?;
        *self.tenant_numbers.write().unwrap() = numbers;
        Ok(())
    }

    /// Inserts `keys` into the id index in `tx`, numbering tenants new to
    /// it; returns those numbers, to be known once `tx` commits.
    fn put_ids(
        &self,
        tx: &redb::WriteTransaction,
        keys: &[(String, u64)],
    ) -> Result<Vec<(String, u32)>> {
        let known = self.tenant_numbers.read().unwrap();
        let mut new: Vec<(String, u32)> = Vec::new();
        let mut text = tx.open_table(IDS)?;
        let mut fixed = tx.open_table(UUID_IDS)?;
        let mut numbers = tx.open_table(TENANT_NUMBERS)?;
        for (key, index) in keys {
            let (tenant, id) = id_keys::split(key);
            let Some(uuid) = id_keys::uuid_bytes(id) else {
                text.insert(key.as_str(), *index)?;
                continue;
            };
            let number = match known.get(tenant) {
                Some(&n) => n,
                None => match new.iter().find(|(t, _)| t == tenant) {
                    Some(&(_, n)) => n,
                    None => {
                        let n = u32::try_from(known.len() + new.len()).map_err(|_| {
                            Error::IdIndex("more tenants than the id index numbers".into())
                        })?;
                        numbers.insert(tenant, n)?;
                        new.push((tenant.to_string(), n));
                        n
                    }
                },
            };
            fixed.insert(id_keys::uuid_key(number, &uuid), *index)?;
        }
        Ok(new)
    }

    /// The log index of `key` in the id index (not in `pending`).
    fn find_id(
        &self,
        text: &redb::ReadOnlyTable<&'static str, u64>,
        fixed: &redb::ReadOnlyTable<id_keys::UuidKey, u64>,
        key: &str,
    ) -> Result<Option<u64>> {
        let (tenant, id) = id_keys::split(key);
        if let Some(uuid) = id_keys::uuid_bytes(id) {
            let number = self.tenant_numbers.read().unwrap().get(tenant).copied();
            if let Some(n) = number {
                let k: UuidKeyBytes = id_keys::uuid_key(n, &uuid);
                if let Some(v) = fixed.get(k)? {
                    return Ok(Some(v.value()));
                }
            }
            if !self.uuids_in_text_keys.load(Ordering::SeqCst) {
                return Ok(None);
            }
        }
        Ok(text.get(key)?.map(|v| v.value()))
    }

    /// Runs `f` on the id index; after an id-index failure (e.g. disk full),
    /// reopens it, restores what the reopen rolled back, and tries once more.
    fn with_ids<T>(&self, f: impl Fn(&redb::Database) -> Result<T>) -> Result<T> {
        #[cfg(feature = "fault-injection")]
        let injected = self.io_faults.id_index_fails();
        #[cfg(not(feature = "fault-injection"))]
        let injected = false;
        let reopened = self.ids_reopened.load(Ordering::SeqCst);
        let first = match self.ids.read().unwrap().as_ref() {
            _ if injected => Err(Error::IdIndex("injected fault: the id index failed".into())),
            Some(db) => f(db),
            None => Err(Error::IdIndex("the id index is closed".into())),
        };
        match first {
            Err(Error::IdIndex(e)) => {
                tracing::warn!(error = %e, "id index failed; reopening it");
                self.reopen_ids(reopened)?;
                match self.ids.read().unwrap().as_ref() {
                    Some(db) => f(db),
                    None => Err(Error::IdIndex("the id index is closed".into())),
                }
            }
            r => r,
        }
    }

    /// Reopens the id index after a failure, holding `pending` throughout:
    /// commits that were not durable are gone, so their ids go back into
    /// `pending` (and tenants they numbered are not numbered) before anyone
    /// looks there again. `seen` is `ids_reopened` before the use that
    /// failed: when another thread has reopened the index since, this one
    /// uses that (several threads fail together after one I/O error).
    fn reopen_ids(&self, seen: u64) -> Result<()> {
        let mut pending = self.pending.lock().unwrap();
        if self.ids_reopened.load(Ordering::SeqCst) != seen && self.ids.read().unwrap().is_some() {
            return Ok(());
        }
        // Bumped before the index is swapped: a look-up that ran on the new
        // index sees the bump when it checks afterwards.
        self.ids_reopened.fetch_add(1, Ordering::SeqCst);
        let reopened = (|| -> Result<Vec<(String, u64)>> {
            let mut guard = self.ids.write().unwrap();
            // redb holds a lock on its file: close before opening again.
            *guard = None;
            #[cfg(feature = "fault-injection")]
            let db = open_id_index(&self.ids_path, &self.io_faults)?;
            #[cfg(not(feature = "fault-injection"))]
            let db = open_id_index(&self.ids_path)?;
            let numbers = read_tenant_numbers(&db)?;
            let indexed = read_indexed_size(&db)?;
            let lost = self.logged_keys(indexed, self.size.load(Ordering::SeqCst))?;
            *self.tenant_numbers.write().unwrap() = numbers;
            *guard = Some(db);
            Ok(lost)
        })();
        // On failure the index stays closed, and its next use tries again.
        pending.extend(reopened?);
        Ok(())
    }

    fn write_levels(&self, writes: &HashMap<u32, (u64, Vec<u8>)>) -> Result<()> {
        for (&level, (first, bytes)) in writes {
            let f = self.files.level_file(level, true)?.expect("created");
            f.write_all_at(bytes, first * HASH)?;
        }
        for &level in writes.keys() {
            self.files
                .level_file(level, true)?
                .expect("created")
                .sync_data()?;
        }
        Ok(())
    }

    /// Each entry of `batch` as logged before (`duplicate`, with its
    /// index) or not (index `u64::MAX`): from `pending`, then the id index.
    fn find_logged(&self, batch: &[NewEntry]) -> Result<Vec<Appended>> {
        loop {
            let mut out: Vec<Appended> = Vec::with_capacity(batch.len());
            let mut unresolved: Vec<usize> = Vec::new();
            let reopened = {
                let pending = self.pending.lock().unwrap();
                for (i, e) in batch.iter().enumerate() {
                    let index = pending.get(e.key.as_str()).copied();
                    out.push(Appended {
                        index: index.unwrap_or(u64::MAX),
                        leaf: e.leaf,
                        duplicate: index.is_some(),
                    });
                    if index.is_none() {
                        unresolved.push(i);
                    }
                }
                self.ids_reopened.load(Ordering::SeqCst)
            };
            if unresolved.is_empty() {
                return Ok(out);
            }
            // The id index is read after `pending`: integration inserts ids
            // there before removing them from `pending`, so no logged id
            // slips through, unless a reopen of the index lost them in
            // between (and put them back into `pending`): then look again.
            let found = self.with_ids(|db| {
                let tx = db.begin_read()?;
                let (text, fixed) = (tx.open_table(IDS)?, tx.open_table(UUID_IDS)?);
                let mut found = Vec::new();
                for &i in &unresolved {
                    if let Some(index) = self.find_id(&text, &fixed, &batch[i].key)? {
                        found.push((i, index));
                    }
                }
                Ok(found)
            })?;
            // A reopen bumps the count before it swaps the index: a look-up
            // that ran on the new index sees the bump here.
            if found.len() < unresolved.len()
                && self.ids_reopened.load(Ordering::SeqCst) != reopened
            {
                continue;
            }
            for (i, index) in found {
                out[i].index = index;
                out[i].duplicate = true;
            }
            return Ok(out);
        }
    }

    /// Writes a batch at the frontier (not synced). Its new keys go into
    /// `pending` at once, so the next batch, written before this one is
    /// durable, finds them.
    fn append_locked(
        &self,
        seq: &mut Sequenced,
        batch: &[NewEntry],
    ) -> Result<(Vec<Appended>, Option<Written>)> {
        self.finish_cut(seq)?;
        let mut out = self.find_logged(batch)?;
        let mut in_batch: KeyMap<&str, usize> =
            KeyMap::with_capacity_and_hasher(batch.len(), Default::default());
        let mut entries_buf =
            Vec::with_capacity(batch.iter().map(|e| 2 + e.entry.len()).sum::<usize>());
        let mut leaves_buf = Vec::with_capacity(batch.len() * LEAF_RECORD as usize);
        let mut next = seq.size;
        let mut end = seq.entries_len;
        for (i, e) in batch.iter().enumerate() {
            if out[i].duplicate {
                continue;
            }
            if let Some(&first) = in_batch.get(e.key.as_str()) {
                out[i] = Appended {
                    duplicate: true,
                    ..out[first]
                };
                continue;
            }
            e.check_size(i)?;
            in_batch.insert(&e.key, i);
            entries_buf.extend_from_slice(&(e.entry.len() as u16).to_be_bytes());
            entries_buf.extend_from_slice(&e.entry);
            end += 2 + e.entry.len() as u64;
            leaves_buf.extend_from_slice(&e.leaf);
            leaves_buf.extend_from_slice(&end.to_be_bytes());
            out[i].index = next;
            next += 1;
        }
        for a in out.iter_mut().filter(|a| a.duplicate) {
            if a.index < seq.size {
                a.leaf = self.files.leaf_record(a.index)?.0;
            }
        }
        // Duplicates of a batch written but not yet durable wait for it too.
        let needs = out.iter().map(|a| a.index + 1).max().unwrap_or(0);
        let mark = |size| {
            (needs > self.size.load(Ordering::SeqCst)).then_some(Written {
                generation: seq.generation,
                size,
            })
        };
        if next == seq.size {
            return Ok((out, mark(needs)));
        }
        let written = self.write_batch(seq, &entries_buf, &leaves_buf);
        if let Err(e) = written {
            #[cfg(feature = "fault-injection")]
            if self.io_faults.crashes() {
                // The process "died" here: nothing cleans up.
                return Err(e);
            }
            // Nothing of this batch is acknowledged; cut off what reached the
            // files so the next batch starts clean.
            self.cut_to(seq.entries_len, seq.size);
            return Err(e);
        }
        {
            let mut pending = self.pending.lock().unwrap();
            for (i, e) in batch.iter().enumerate() {
                if !out[i].duplicate {
                    pending.insert(e.key.clone(), out[i].index);
                }
            }
        }
        let mark = mark(next);
        seq.size = next;
        seq.entries_len = end;
        Ok((out, mark))
    }

    /// Cuts the log files back to `entries_len` bytes of entries and `size`
    /// leaf records after a failed write or sync (holding `seq`); when that
    /// fails too, the next batch tries again before it is written.
    fn cut_to(&self, entries_len: u64, size: u64) {
        if let Err(e) = self.cut_files(entries_len, size) {
            tracing::error!(error = %e, "cutting the log back after a failed write failed; the next batch tries again first");
            self.uncut.store(true, Ordering::SeqCst);
        }
    }

    /// Makes the cut back that [`FsStore::cut_to`] could not (holding `seq`).
    fn finish_cut(&self, seq: &Sequenced) -> io::Result<()> {
        if self.uncut.load(Ordering::SeqCst) {
            self.cut_files(seq.entries_len, seq.size)?;
            self.uncut.store(false, Ordering::SeqCst);
        }
        Ok(())
    }

    fn cut_files(&self, entries_len: u64, size: u64) -> io::Result<()> {
        #[cfg(feature = "fault-injection")]
        self.io_faults.cut()?;
        self.files.entries.set_len(entries_len)?;
        self.files.leaves.set_len(size * LEAF_RECORD)
    }

    fn write_batch(&self, seq: &Sequenced, entries_buf: &[u8], leaves_buf: &[u8]) -> Result<()> {
        self.write_at(&self.files.entries, entries_buf, seq.entries_len)?;
        self.write_at(&self.files.leaves, leaves_buf, seq.size * LEAF_RECORD)?;
        #[cfg(feature = "fault-injection")]
        self.io_faults.batch_written();
        Ok(())
    }

    /// Makes everything written so far durable, unless a sync already did:
    /// then the durable size covers `written`. A failed sync cuts the log
    /// back to its durable size (Linux may have dropped the dirty pages it
    /// could not write, so they must not count on a later sync) and ends
    /// the generation.
    fn sync_to(&self, written: Written) -> Result<()> {
        let mut durable_len = self.syncing.lock().unwrap();
        if let Some(&cut) = self.cut_back.lock().unwrap().get(&written.generation) {
            return if written.size <= cut {
                Ok(())
            } else {
                Err(Error::Io(io::Error::other(
                    "a sync of the log failed before this batch was durable",
                )))
            };
        }
        if written.size <= self.size.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (frontier, frontier_len) = {
            let seq = self.seq.lock().unwrap();
            (seq.size, seq.entries_len)
        };
        match self.sync_files() {
            Ok(()) => {
                *durable_len = frontier_len;
                self.size.store(frontier, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => {
                #[cfg(feature = "fault-injection")]
                if self.io_faults.crashes() {
                    // The process "died" here: nothing cleans up.
                    return Err(e);
                }
                let mut seq = self.seq.lock().unwrap();
                let durable = self.size.load(Ordering::SeqCst);
                self.cut_to(*durable_len, durable);
                self.pending.lock().unwrap().retain(|_, i| *i < durable);
                self.cut_back
                    .lock()
                    .unwrap()
                    .insert(seq.generation, durable);
                seq.generation += 1;
                seq.size = durable;
                seq.entries_len = *durable_len;
                Err(e)
            }
        }
    }

    fn sync_files(&self) -> Result<()> {
        // The two fsyncs run side by side: an acknowledgement waits for both.
        let (a, b) = std::thread::scope(|s| {
            let entries = s.spawn(|| self.sync_data(&self.files.entries));
            let b = self.sync_data(&self.files.leaves);
            (
                entries
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("fsync thread panicked"))),
                b,
            )
        });
        a?;
        b?;
        Ok(())
    }

    /// `write_all_at` on the append path; with the `fault-injection`
    /// feature, a torn write a test armed stops it part-way.
    fn write_at(&self, f: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        #[cfg(feature = "fault-injection")]
        if let Some(n) = self.io_faults.write_budget(buf.len()) {
            f.write_all_at(&buf[..n], offset)?;
            return Err(io::Error::other(format!(
                "injected fault: torn write after {n} of {} bytes",
                buf.len()
            )));
        }
        f.write_all_at(buf, offset)
    }

    /// `sync_data` on the append path; with the `fault-injection` feature,
    /// a failure a test armed.
    fn sync_data(&self, f: &File) -> io::Result<()> {
        #[cfg(feature = "fault-injection")]
        self.io_faults.fsync()?;
        f.sync_data()
    }

    fn integrate_to(&self, force_durable: bool) -> Result<(u64, Hash)> {
        let mut integ = self.integ.lock().unwrap();
        let target = self.size.load(Ordering::SeqCst);
        // Work on a copy: if a write fails (disk full), the tree in memory must
        // not run ahead of the level files, or the retry would skip those nodes.
        let mut tree = integ.tree.clone();
        let start = tree.size();
        const CHUNK: u64 = 65536;
        let mut at = start;
        while at < target {
            let count = CHUNK.min(target - at);
            let mut recs = vec![0u8; (count * LEAF_RECORD) as usize];
            self.files
                .leaves
                .read_exact_at(&mut recs, at * LEAF_RECORD)?;
            let mut writes: HashMap<u32, (u64, Vec<u8>)> = HashMap::new();
            for rec in recs.chunks_exact(LEAF_RECORD as usize) {
                let leaf: Hash = rec[..32].try_into().unwrap();
                tree.push(leaf, |level, index, hash| {
                    if level > 0 {
                        let w = writes.entry(level).or_insert_with(|| (index, Vec::new()));
                        w.1.extend_from_slice(hash);
                    }
                });
            }
            self.write_levels(&writes)?;
            at += count;
        }
        let root = tree.root();

        // Move logged ids into the durable index.
        let mut reopens = 0;
        loop {
            let (moved, reopened) = {
                let pending = self.pending.lock().unwrap();
                let moved: Vec<(String, u64)> = pending
                    .iter()
                    .filter(|(_, &i)| i < target)
                    .map(|(k, &i)| (k.clone(), i))
                    .collect();
                (moved, self.ids_reopened.load(Ordering::SeqCst))
            };
            if moved.is_empty() && !force_durable && self.indexed_size()? >= target {
                break;
            }
            let durable = force_durable || integ.last_durable_ids.elapsed() >= ID_INDEX_SYNC;
            let committed = self.with_ids(|db| {
                // A reopen since `moved` was read put ids back into `pending`
                // that `moved` lacks: committing it as covering `target`
                // would leave them out of the index.
                if self.ids_reopened.load(Ordering::SeqCst) != reopened {
                    return Ok(false);
                }
                let mut tx = db.begin_write()?;
                if durable {
                    // The allocator state goes with each durable commit, so
                    // that opening after a crash does not walk (and checksum)
                    // the whole index: that walk grows with the log (1 s at
                    // 10 M events).
                    tx.set_quick_repair(true);
                } else {
                    tx.set_durability(Durability::None);
                }
                let numbered = self.put_ids(&tx, &moved)?;
                tx.open_table(META)?.insert(INDEXED_SIZE, target)?;
                tx.commit()?;
                self.tenant_numbers.write().unwrap().extend(numbered);
                Ok(true)
            })?;
            // Each round that meets a reopen tries again, a few times: a
            // commit that keeps failing is an error for the caller.
            let again = |reopens: &mut u32| {
                *reopens += 1;
                if *reopens > 3 {
                    return Err(Error::IdIndex(
                        "the id index was reopened during each of three commits".into(),
                    ));
                }
                Ok(())
            };
            if !committed {
                again(&mut reopens)?;
                continue;
            }
            if durable {
                integ.last_durable_ids = Instant::now();
            }
            #[cfg(feature = "fault-injection")]
            if self.io_faults.reopens_after_id_commit() {
                self.reopen_ids(self.ids_reopened.load(Ordering::SeqCst))?;
            }
            let mut pending = self.pending.lock().unwrap();
            // A reopen since the commit may have lost it: the ids are in
            // `pending` again, for the next round to commit.
            if self.ids_reopened.load(Ordering::SeqCst) != reopened {
                drop(pending);
                again(&mut reopens)?;
                continue;
            }
            for (id, index) in moved {
                if pending.get(&id) == Some(&index) {
                    pending.remove(&id);
                }
            }
            break;
        }
        integ.tree = tree;
        self.integrated.store(target, Ordering::SeqCst);
        Ok((target, root))
    }

    fn check_readable(&self, what: &str, end: u64, limit: u64) -> Result<()> {
        if end > limit {
            return Err(Error::OutOfRange(format!("{what} {end} is beyond {limit}")));
        }
        Ok(())
    }
}

impl NodeReader for FsStore {
    fn read_node(&self, level: u32, index: u64) -> aiaudit_tlog::Result<Hash> {
        let limit = if level == 0 {
            self.size.load(Ordering::SeqCst)
        } else {
            // checked: a level of 64 or more is refused below, not a shift overflow.
            self.integrated
                .load(Ordering::SeqCst)
                .checked_shr(level)
                .unwrap_or(0)
        };
        if level > MAX_LEVEL || index >= limit {
            return Err(aiaudit_tlog::Error::InvalidArgument(format!(
                "node ({level}, {index}) is not stored"
            )));
        }
        self.files
            .node_unchecked(level, index)
            .map_err(|e| aiaudit_tlog::Error::Read(Box::new(e)))
    }
}

impl Storage for FsStore {
    fn append(&self, batch: &[NewEntry]) -> Result<Vec<Appended>> {
        let (appended, written) = self.append_unsynced(batch)?;
        if let Some(w) = written {
            self.wait_durable(w)?;
        }
        Ok(appended)
    }

    fn append_unsynced(&self, batch: &[NewEntry]) -> Result<(Vec<Appended>, Option<Written>)> {
        let mut seq = self.seq.lock().unwrap();
        self.append_locked(&mut seq, batch)
    }

    fn wait_durable(&self, written: Written) -> Result<()> {
        self.sync_to(written)
    }

    fn size(&self) -> u64 {
        self.size.load(Ordering::SeqCst)
    }

    fn integrated_size(&self) -> u64 {
        self.integrated.load(Ordering::SeqCst)
    }

    fn integrate(&self) -> Result<(u64, Hash)> {
        self.integrate_to(false)
    }

    fn sync(&self) -> Result<(u64, Hash)> {
        {
            // A clean stop leaves no lost batch's bytes for recovery to keep.
            let seq = self.seq.lock().unwrap();
            self.finish_cut(&seq)?;
        }
        self.integrate_to(true)
    }

    fn read_entry(&self, index: u64) -> Result<Vec<u8>> {
        self.check_readable("entry index", index + 1, self.size())?;
        let start = self.files.entry_start(index)?;
        let (_, end) = self.files.leaf_record(index)?;
        if end < start + 2 {
            return Err(Error::Corrupt {
                index,
                detail: "entry offsets out of order".into(),
            });
        }
        let mut buf = vec![0u8; (end - start - 2) as usize];
        self.files.entries.read_exact_at(&mut buf, start + 2)?;
        Ok(buf)
    }

    fn read_entry_bundle(&self, start: u64, count: u64) -> Result<Vec<u8>> {
        self.check_readable("entry index", start + count, self.size())?;
        self.files.bundle(start, count)
    }

    fn read_entry_bundle_into(&self, start: u64, count: u64, buf: &mut Vec<u8>) -> Result<()> {
        self.check_readable("entry index", start + count, self.size())?;
        self.files.bundle_into(start, count, buf)
    }

    fn read_hashes(&self, tree_level: u32, start: u64, count: u64) -> Result<Vec<u8>> {
        let limit = if tree_level == 0 {
            self.size()
        } else {
            self.integrated_size() >> tree_level.min(63)
        };
        self.check_readable("node index", start + count, limit)?;
        self.files.hashes(tree_level, start, count)
    }

    fn lookup_key(&self, key: &str) -> Result<Option<u64>> {
        loop {
            let reopened = {
                let pending = self.pending.lock().unwrap();
                if let Some(&i) = pending.get(key) {
                    // Written but not durable yet: not logged for a reader.
                    return Ok((i < self.size()).then_some(i));
                }
                self.ids_reopened.load(Ordering::SeqCst)
            };
            let found = self.with_ids(|db| {
                let tx = db.begin_read()?;
                let (text, fixed) = (tx.open_table(IDS)?, tx.open_table(UUID_IDS)?);
                self.find_id(&text, &fixed, key)
            })?;
            // As in `find_logged`: a reopen in between may have moved it.
            if found.is_none() && self.ids_reopened.load(Ordering::SeqCst) != reopened {
                continue;
            }
            return Ok(found);
        }
    }

    fn checkpoint(&self) -> Result<Option<String>> {
        read_checkpoint(&self.files.dir)
    }

    fn save_checkpoint(&self, note: &str) -> Result<()> {
        let _g = self.checkpoint_lock.lock().unwrap();
        write_atomically(&self.files.dir, "checkpoint", note.as_bytes())
    }

    fn stores_blobs(&self) -> bool {
        true
    }
    fn blob_writer(&self, id: &Hash) -> Result<Box<dyn crate::BlobWriter>> {
        self.blobs.writer(id)
    }
    fn read_blob(&self, id: &Hash, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.blobs.read(id, offset, len)
    }
    fn blob_len(&self, id: &Hash) -> Result<Option<u64>> {
        self.blobs.len(id)
    }
    fn remove_blob(&self, id: &Hash) -> Result<()> {
        self.blobs.remove(id)
    }
    fn list_blobs(&self, each: &mut dyn FnMut(Hash, u64) -> Result<()>) -> Result<()> {
        self.blobs.list(each)
    }
}

/// Raw access to the files of a log, shared by the store and by read-only
/// auditing of a data directory. No bounds beyond the files' own.
pub(crate) struct LogFiles {
    pub(crate) dir: PathBuf,
    pub(crate) entries: File,
    pub(crate) leaves: File,
    levels: RwLock<Vec<Option<Arc<File>>>>,
    writable: bool,
}

impl LogFiles {
    pub(crate) fn open(dir: &Path, writable: bool) -> Result<LogFiles> {
        let open = |p: &Path| -> Result<File> {
            if writable {
                open_rw(p)
            } else {
                Ok(File::open(p)?)
            }
        };
        Ok(LogFiles {
            dir: dir.to_path_buf(),
            entries: open(&dir.join("log").join("entries"))?,
            leaves: open(&dir.join("log").join("leaves"))?,
            levels: RwLock::new(vec![None; MAX_LEVEL as usize + 1]),
            writable,
        })
    }

    fn leaf_record(&self, index: u64) -> Result<(Hash, u64)> {
        let mut rec = [0u8; LEAF_RECORD as usize];
        self.leaves.read_exact_at(&mut rec, index * LEAF_RECORD)?;
        let mut leaf = [0u8; 32];
        leaf.copy_from_slice(&rec[..32]);
        Ok((leaf, u64::from_be_bytes(rec[32..].try_into().unwrap())))
    }

    /// Offset in `log/entries` where entry `index` starts.
    fn entry_start(&self, index: u64) -> Result<u64> {
        if index == 0 {
            return Ok(0);
        }
        Ok(self.leaf_record(index - 1)?.1)
    }

    fn level_file(&self, level: u32, create: bool) -> Result<Option<Arc<File>>> {
        if let Some(f) = &self.levels.read().unwrap()[level as usize] {
            return Ok(Some(f.clone()));
        }
        let path = self
            .dir
            .join("log")
            .join("levels")
            .join(format!("{level:02}"));
        if !create && !path.exists() {
            return Ok(None);
        }
        let f = Arc::new(if self.writable {
            open_rw(&path)?
        } else {
            File::open(&path)?
        });
        let mut levels = self.levels.write().unwrap();
        Ok(Some(levels[level as usize].get_or_insert(f).clone()))
    }

    fn node_unchecked(&self, level: u32, index: u64) -> Result<Hash> {
        if level == 0 {
            return Ok(self.leaf_record(index)?.0);
        }
        let f = self
            .level_file(level, false)?
            .ok_or_else(|| Error::OutOfRange(format!("no tree level {level}")))?;
        let mut h = [0u8; 32];
        f.read_exact_at(&mut h, index * HASH)?;
        Ok(h)
    }

    /// Entries `[start, start + count)` as an entry bundle, straight from the files.
    pub(crate) fn bundle(&self, start: u64, count: u64) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.bundle_into(start, count, &mut buf)?;
        Ok(buf)
    }

    pub(crate) fn bundle_into(&self, start: u64, count: u64, buf: &mut Vec<u8>) -> Result<()> {
        buf.clear();
        if count == 0 {
            return Ok(());
        }
        let from = self.entry_start(start)?;
        let (_, to) = self.leaf_record(start + count - 1)?;
        if to < from {
            return Err(Error::Corrupt {
                index: start,
                detail: "entry offsets out of order".into(),
            });
        }
        buf.resize((to - from) as usize, 0);
        self.entries.read_exact_at(buf, from)?;
        Ok(())
    }

    /// Checks that the leaf records of entries `[start, start + count)` end
    /// each entry where `bundle` (those entries, as read) says it ends. A
    /// bundle whose lengths do not add up is left to its decoder to report.
    pub(crate) fn check_entry_offsets(&self, start: u64, count: u64, bundle: &[u8]) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        let base = self.entry_start(start)?;
        let mut recs = vec![0u8; (count * LEAF_RECORD) as usize];
        self.leaves.read_exact_at(&mut recs, start * LEAF_RECORD)?;
        let mut at = 0usize;
        for (i, rec) in (start..).zip(recs.chunks_exact(LEAF_RECORD as usize)) {
            let Some(len) = bundle.get(at..at + 2) else {
                return Ok(());
            };
            at += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
            let recorded = u64::from_be_bytes(rec[32..].try_into().expect("8 bytes"));
            if recorded != base + at as u64 {
                return Err(Error::Corrupt {
                    index: i,
                    detail: format!(
                        "its leaf record ends it at byte {recorded} of log/entries, \
                         the entries there end it at {}",
                        base + at as u64
                    ),
                });
            }
        }
        Ok(())
    }

    /// Hashes at a tree level, straight from the files.
    pub(crate) fn hashes(&self, tree_level: u32, start: u64, count: u64) -> Result<Vec<u8>> {
        if tree_level == 0 {
            let mut recs = vec![0u8; (count * LEAF_RECORD) as usize];
            self.leaves.read_exact_at(&mut recs, start * LEAF_RECORD)?;
            let mut out = Vec::with_capacity((count * HASH) as usize);
            for rec in recs.chunks_exact(LEAF_RECORD as usize) {
                out.extend_from_slice(&rec[..32]);
            }
            return Ok(out);
        }
        if tree_level > MAX_LEVEL {
            return Err(Error::OutOfRange(format!("tree level {tree_level}")));
        }
        let f = self
            .level_file(tree_level, false)?
            .ok_or_else(|| Error::OutOfRange(format!("no tree level {tree_level}")))?;
        let mut out = vec![0u8; (count * HASH) as usize];
        f.read_exact_at(&mut out, start * HASH)?;
        Ok(out)
    }
}

/// Read-only view of a data directory for offline audits (`aiaudit verify
/// --data-dir`): no recovery, no writes, nothing trusted.
pub struct LogReader {
    files: LogFiles,
    blobs: crate::blobs::FsBlobs,
}

impl LogReader {
    pub fn open(dir: &Path) -> Result<LogReader> {
        let format = fs::read_to_string(dir.join("FORMAT"))?;
        if format.lines().next() != Some(FORMAT_LINE) {
            return Err(Error::Format(format!(
                "{} is not an aiaudit data directory of format {FORMAT_LINE:?}",
                dir.display()
            )));
        }
        Ok(LogReader {
            files: LogFiles::open(dir, false)?,
            blobs: crate::blobs::FsBlobs::open(dir, false)?,
        })
    }

    /// Exactly `len` bytes of blob `id` from `offset`.
    pub fn read_blob(&self, id: &Hash, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.blobs.read(id, offset, len)
    }

    /// The stored length of blob `id`, None when missing.
    pub fn blob_len(&self, id: &Hash) -> Result<Option<u64>> {
        self.blobs.len(id)
    }

    /// Every stored blob's id and length.
    pub fn list_blobs(&self, each: &mut dyn FnMut(Hash, u64) -> Result<()>) -> Result<()> {
        self.blobs.list(each)
    }

    /// The saved signed checkpoint.
    pub fn checkpoint(&self) -> Result<Option<String>> {
        read_checkpoint(&self.files.dir)
    }

    /// Entries `[start, start + count)` as an entry bundle, each leaf
    /// record's entry offset checked against it: the audit reads the
    /// entries by the records at the bundle's two ends, so a damaged offset
    /// in between would otherwise go unseen (and `GET /v1/events/<i>`
    /// would read entries by it).
    pub fn read_entry_bundle(&self, start: u64, count: u64) -> Result<Vec<u8>> {
        let bundle = self.files.bundle(start, count)?;
        self.files.check_entry_offsets(start, count, &bundle)?;
        Ok(bundle)
    }

    /// Hashes at `tree_level`, `[start, start + count)`.
    pub fn read_hashes(&self, tree_level: u32, start: u64, count: u64) -> Result<Vec<u8>> {
        self.files.hashes(tree_level, start, count)
    }
}

/// The checkpoint inside a signed note (the signature is the caller's business).
pub fn parse_checkpoint(note: &str) -> Result<Checkpoint> {
    let body = match note.rfind("\n\n") {
        Some(i) => &note[..i + 1],
        None => note,
    };
    Checkpoint::parse_body(body).map_err(|e| Error::Format(format!("checkpoint file: {e}")))
}

/// How many of the log's entries the durable id index covers.
fn read_indexed_size(db: &redb::Database) -> Result<u64> {
    let tx = db.begin_read()?;
    let meta = tx.open_table(META)?;
    let size = meta.get(INDEXED_SIZE)?.map_or(0, |v| v.value());
    Ok(size)
}

fn read_tenant_numbers(db: &redb::Database) -> Result<HashMap<String, u32>> {
    use redb::ReadableTable;
    let tx = db.begin_read()?;
    let t = tx.open_table(TENANT_NUMBERS)?;
    let mut out = HashMap::new();
    for row in t.iter()? {
        let (k, v) = row?;
        out.insert(k.value().to_string(), v.value());
    }
    Ok(out)
}

fn open_id_index(
    path: &Path,
    #[cfg(feature = "fault-injection")] faults: &crate::IoFaults,
) -> Result<redb::Database> {
    let mut builder = redb::Builder::new();
    // A bounded cache: the id index must not grow with the log in RAM.
    builder.set_cache_size(ID_INDEX_CACHE_BYTES);
    #[cfg(not(feature = "fault-injection"))]
    let db = builder.create(path)?;
    #[cfg(feature = "fault-injection")]
    let db = builder.create_with_backend(faults.id_index_file(open_rw(path)?)?)?;
    let tx = db.begin_write()?;
    tx.open_table(IDS)?;
    tx.open_table(UUID_IDS)?;
    tx.open_table(TENANT_NUMBERS)?;
    tx.open_table(META)?;
    tx.commit()?;
    Ok(db)
}

fn read_checkpoint(dir: &Path) -> Result<Option<String>> {
    match fs::read_to_string(dir.join("checkpoint")) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn open_rw(path: &Path) -> Result<File> {
    Ok(OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?)
}

fn check_format(dir: &Path) -> Result<()> {
    let path = dir.join("FORMAT");
    match fs::read_to_string(&path) {
        Ok(s) if s.lines().next() == Some(FORMAT_LINE) => Ok(()),
        Ok(s) => Err(Error::Format(format!(
            "{} says {:?}; this version of aiaudit reads only {FORMAT_LINE:?}",
            path.display(),
            s.lines().next().unwrap_or("")
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let leaves = dir.join("log").join("leaves");
            if leaves.exists() && leaves.metadata()?.len() > 0 {
                return Err(Error::Format(format!(
                    "{} is missing but the directory holds a log",
                    path.display()
                )));
            }
            write_atomically(dir, "FORMAT", format!("{FORMAT_LINE}\n").as_bytes())
        }
        Err(e) => Err(e.into()),
    }
}

/// Temp file, fsync, rename, fsync the directory.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let f = File::create(&tmp)?;
        f.write_all_at(bytes, 0)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()?;
    Ok(())
}
