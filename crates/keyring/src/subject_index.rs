//! The keyring file's index (`keyring.index/`, an LSM tree beside it): which
//! records are a subject's keys, which are the tenants' (salts and tenant
//! keys), and counts, so that opening the keyring and finding a subject's
//! keys read a few records instead of all of them.
//!
//! An LSM tree because every new data subject inserts a key at a random
//! place: a B-tree (layout 2 used redb) rewrites a page per new subject once
//! the tree outgrows its cache, which at millions of subjects cost more than
//! the ingest itself. An LSM tree writes sorted runs sequentially and merges
//! them in the background.
//!
//! The index is derived data. The keyring file stays the truth: every record
//! the index names is read and checked by the caller, and an index that does
//! not belong to the file (another file's id, more records than the file
//! holds) is rebuilt from the file. It is updated after the file's records
//! are durable, and records past what it has durably indexed are indexed
//! again at open, so a crash between the two loses nothing.

use crate::records::{record_kind, record_live, Noted, Record, SubjectCounts};
use crate::{Error, Result};
use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use std::path::Path;
use std::sync::Mutex;

/// The one keyspace, its keys starting with one of three bytes. One
/// keyspace, not three, so that the journal is released whenever its
/// memtable is flushed: a keyspace written rarely (the counters) would pin
/// every journal since its last flush, and all of them are replayed at open.
const KEYSPACE: &str = "index";
/// `S ‖ first 8 bytes of the record's tag` → the numbers (u64 BE each, in
/// order) of every subject-key record with that tag prefix, live or
/// destroyed. Tags of other subjects (or tenants) that share the 8 bytes only
/// add candidates, which the caller's check of each record drops. One key
/// per subject, not one per record, so that finding a subject is a point
/// read, which the tree's Bloom filters answer without reading a block when
/// the subject is new (a prefix scan cost a fifth of ingest's CPU).
const SUBJECT: u8 = b'S';
/// `T ‖ record number (u64 BE)`: every record that is not a subject key.
const TENANT: u8 = b'T';
/// `M ‖ name`: the counters below (values u64 BE).
const META: u8 = b'M';
/// How many records (from number 0) are indexed.
const INDEXED: &str = "indexed";
const LIVE: &str = "subject_keys_live";
const DESTROYED: &str = "subject_keys_destroyed";
/// The keyring file's id (header bytes 32..40) the index was built from.
const FILE_ID: &str = "file_id";
const ROTATION: &str = "rotation_started";
/// Index layout version. 4: layout 3's keys in smaller tables (below); an
/// index of another version is rebuilt from the keyring file at open, since
/// a tree keeps the table sizes it was created with.
const VERSION: &str = "version";
pub const INDEX_VERSION: u64 = 4;
/// Block cache: it must not grow with the number of subjects.
const CACHE_BYTES: u64 = 8 << 20;
/// The memtable's limit. Writes bypass it (they are ingested as sorted
/// runs); the limit only keeps the default of 64 MiB from ever applying.
const MEMTABLE_BYTES: u64 = 4 << 20;

/// Tables of the tree's levels. New subjects' keys are random, so every
/// merge of level 0 into level 1 rewrites all of level 1: with the default
/// 64 MiB tables (a 256 MiB level 1) that rewrote up to 256 MiB for every
/// few hundred KiB indexed. With 2 MiB tables and 8 runs in level 0 before
/// a merge, level 1 is 16 MiB and the deeper levels take one table at a
/// time; the merging thread then used a third of the CPU it did, and ingest
/// of new subjects rose 17 % at 2 M subjects (docs/performance.md).
const TABLE_BYTES: u64 = 2 << 20;
const LEVEL0_RUNS: u8 = 8;

/// The directory beside the keyring file.
pub const INDEX_DIR: &str = "keyring.index";
/// Layout 2's file (a redb database), removed when layout 3 is built.
pub const OLD_INDEX_FILE: &str = "keyring.idx";

/// Lists of record numbers read from the index since its last write, by
/// the first 8 bytes of the tag (the index key's), so that the next write
/// need not read them again.
#[derive(Default)]
pub(crate) struct Known {
    /// Tags the index held nothing for: new subjects, nearly every lookup
    /// of a write's worth (8 bytes each rather than a list each).
    none: std::collections::HashSet<u64>,
    lists: std::collections::HashMap<u64, Vec<u64>>,
}

/// Lookups remembered between two writes at most (a log read heavily
/// between appends would otherwise grow the maps): twice the records a
/// write takes, so that a write of new subjects reads none of them again.
const KNOWN_MAX: usize = 2 * crate::records::TAIL_MAX;

impl Known {
    pub(crate) fn remember(&mut self, tag: &[u8; 32], numbers: &[u64]) {
        if self.none.len() + self.lists.len() >= KNOWN_MAX {
            return;
        }
        let prefix = tag_prefix(tag);
        if numbers.is_empty() {
            self.none.insert(prefix);
        } else {
            self.lists.insert(prefix, numbers.to_vec());
        }
    }

    fn get(&self, prefix: u64) -> Option<&[u64]> {
        if self.none.contains(&prefix) {
            return Some(&[]);
        }
        self.lists.get(&prefix).map(Vec::as_slice)
    }

    pub(crate) fn clear(&mut self) {
        // The set keeps its room (8 bytes a tag) for the next write's lookups.
        self.none.clear();
        self.lists.clear();
        self.lists.shrink_to(1024);
    }
}

/// The first 8 bytes of a tag: what the index keys a subject by.
pub(crate) fn tag_prefix(tag: &[u8; 32]) -> u64 {
    u64::from_be_bytes(tag[..8].try_into().expect("8 bytes"))
}

pub(crate) struct SubjectIndex {
    // Kept open for as long as its keyspace is used (workers, lock file).
    _db: Database,
    keys: Keyspace,
    /// Counts as last written (one writer: the keyring file's owner).
    counts: Mutex<SubjectCounts>,
}

fn idx_err(e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("keyring index {INDEX_DIR}: {e}"))
}

/// The index key of a subject's records.
fn subject_key(tag: &[u8; 32]) -> [u8; 9] {
    subject_key_of(tag_prefix(tag))
}

/// The index key of the subjects whose tags start with `prefix`.
fn subject_key_of(prefix: u64) -> [u8; 9] {
    let mut key = [SUBJECT; 9];
    key[1..].copy_from_slice(&prefix.to_be_bytes());
    key
}

fn tenant_key(number: u64) -> [u8; 9] {
    let mut key = [TENANT; 9];
    key[1..].copy_from_slice(&number.to_be_bytes());
    key
}

fn meta_key(name: &str) -> Vec<u8> {
    let mut key = vec![META];
    key.extend_from_slice(name.as_bytes());
    key
}

fn be(bytes: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(bytes.try_into().map_err(|_| {
        idx_err(format!("a value of {} bytes", bytes.len()))
    })?))
}

fn open_db(path: &Path) -> fjall::Result<(Database, Keyspace)> {
    crate::create_private_dir(path)?;
    let db = Database::builder(path)
        .cache_size(CACHE_BYTES)
        // Merging runs in one background thread: the machines this runs on
        // may have two cores, and ingest needs them.
        .worker_threads(1)
        .open()?;
    let keys = db.keyspace(KEYSPACE, || {
        use fjall::config::PartitioningPolicy;
        KeyspaceCreateOptions::default()
            .max_memtable_size(MEMTABLE_BYTES)
            // Filters and indexes in small partitions at every level: a
            // point read then loads a few KiB through the bounded cache.
            // Whole per-table filters (the default below level 3) were read
            // and checksummed from the file on every read once a table
            // outgrew the cache: 8x slower from 800,000 subjects on.
            .filter_block_partitioning_policy(PartitioningPolicy::all(true))
            .index_block_partitioning_policy(PartitioningPolicy::all(true))
            .compaction_strategy(std::sync::Arc::new(
                fjall::compaction::Leveled::default()
                    .with_table_target_size(TABLE_BYTES)
                    .with_l0_threshold(LEVEL0_RUNS),
            ))
    })?;
    Ok((db, keys))
}

/// Keys and values to write together, in key order (what an ingestion needs).
type Writes = std::collections::BTreeMap<Vec<u8>, Vec<u8>>;

impl SubjectIndex {
    /// Writes `writes` as one new sorted run of the tree, durably, without
    /// the tree's journal: the keyring file already is the log these are
    /// derived from, and a journal would be replayed (up to 64 MB of it)
    /// at every open. The pairs must come in key order.
    fn ingest<K: Into<fjall::UserKey>, V: Into<fjall::UserValue>>(
        &self,
        writes: impl IntoIterator<Item = (K, V)>,
    ) -> Result<()> {
        let mut ingestion = self.keys.start_ingestion().map_err(idx_err)?;
        for (key, value) in writes {
            ingestion.write(key, value).map_err(idx_err)?;
        }
        ingestion.finish().map_err(idx_err)
    }

    /// Opens (creating) the index in `dir` for the keyring file `file_id`
    /// holding `records`. Returns it and how many records it has indexed. An
    /// index of another keyring file, of an unknown version, naming more
    /// records than the file holds, or unreadable is deleted and made anew
    /// (then rebuilt by indexing from record 0).
    pub(crate) fn open(dir: &Path, file_id: u64, records: u64) -> Result<(SubjectIndex, u64)> {
        let old = dir.join(OLD_INDEX_FILE);
        let path = dir.join(INDEX_DIR);
        if old.exists() {
            tracing::info!(
                "the keyring index moves to layout {INDEX_VERSION}: building it from the keyring file"
            );
            // A layout-3 index beside it predates a rollback to a build that
            // wrote layout 2 since (and may have erased keys): built anew.
            if path.exists() {
                std::fs::remove_dir_all(&path)?;
            }
            std::fs::remove_file(&old)?;
        }
        let held = match open_db(&path) {
            Ok((db, keys)) => {
                let index = SubjectIndex {
                    _db: db,
                    keys,
                    counts: Mutex::new(SubjectCounts::default()),
                };
                match (index.get(INDEXED), index.get(FILE_ID), index.get(VERSION)) {
                    (Ok(Some(n)), Ok(Some(id)), Ok(Some(INDEX_VERSION)))
                        if id == file_id && n <= records =>
                    {
                        Some((index, n))
                    }
                    (_, _, Ok(Some(v))) if v != INDEX_VERSION => {
                        tracing::info!(
                            "the keyring index moves from layout {v} to {INDEX_VERSION}: building it from the keyring file"
                        );
                        None
                    }
                    _ => None,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the keyring index is unreadable: rebuilding it");
                None
            }
        };
        let (index, indexed) = match held {
            Some(held) => held,
            None => {
                // Emptied by making it anew: a tree's own clearing goes
                // through its journal, and is replayed at every open after.
                std::fs::remove_dir_all(&path)?;
                let (db, keys) = open_db(&path).map_err(idx_err)?;
                let index = SubjectIndex {
                    _db: db,
                    keys,
                    counts: Mutex::new(SubjectCounts::default()),
                };
                let mut writes = Writes::new();
                for (name, value) in [(VERSION, INDEX_VERSION), (FILE_ID, file_id), (INDEXED, 0)] {
                    writes.insert(meta_key(name), value.to_be_bytes().to_vec());
                }
                index.ingest(writes)?;
                (index, 0)
            }
        };
        *index.counts.lock().expect("index lock") = SubjectCounts {
            live: index.get(LIVE)?.unwrap_or(0),
            destroyed: index.get(DESTROYED)?.unwrap_or(0),
        };
        Ok((index, indexed))
    }

    fn get(&self, name: &str) -> Result<Option<u64>> {
        match self.keys.get(meta_key(name)).map_err(idx_err)? {
            Some(v) => Ok(Some(be(&v)?)),
            None => Ok(None),
        }
    }

    /// Indexes records `at, at + 1, …` (already durable in the file),
    /// durably, in one sorted run with the new `indexed` mark. `known` holds
    /// lists read from the index since its last write (the rest are read).
    pub(crate) fn add(&self, at: u64, records: &[Noted], known: &Known) -> Result<()> {
        let mut counts = self.counts.lock().expect("index lock");
        let mut next = *counts;
        // One entry per subject (its list of numbers) and per tenant record,
        // sorted by key for the run: fixed-size keys, one allocation each.
        let mut lists: std::collections::HashMap<u64, Vec<u8>> =
            std::collections::HashMap::with_capacity(records.len());
        let mut tenants = Vec::new();
        for (number, r) in (at..).zip(records) {
            match r.subject {
                Some(tag) => {
                    let prefix = tag_prefix(&tag);
                    let list = match lists.entry(prefix) {
                        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::hash_map::Entry::Vacant(e) => {
                            let held = match known.get(prefix) {
                                Some(numbers) => {
                                    numbers.iter().flat_map(|n| n.to_be_bytes()).collect()
                                }
                                None => self
                                    .keys
                                    .get(subject_key(&tag))
                                    .map_err(idx_err)?
                                    .map(|v| v.to_vec())
                                    .unwrap_or_default(),
                            };
                            e.insert(held)
                        }
                    };
                    // An index caught up again after a crash may hold it.
                    if !list.chunks(8).any(|n| n == number.to_be_bytes()) {
                        list.extend_from_slice(&number.to_be_bytes());
                    }
                    if !r.counted {
                    } else if r.live {
                        next.live += 1;
                    } else {
                        next.destroyed += 1;
                    }
                }
                None => tenants.push(tenant_key(number)),
            }
        }
        let mut run: Vec<([u8; 9], Vec<u8>)> = lists
            .into_iter()
            .map(|(prefix, list)| (subject_key_of(prefix), list))
            .chain(tenants.into_iter().map(|key| (key, Vec::new())))
            .collect();
        run.sort_unstable_by_key(|a| a.0);
        let mut meta = Writes::new();
        meta.insert(meta_key(LIVE), next.live.to_be_bytes().to_vec());
        meta.insert(meta_key(DESTROYED), next.destroyed.to_be_bytes().to_vec());
        meta.insert(
            meta_key(INDEXED),
            (at + records.len() as u64).to_be_bytes().to_vec(),
        );
        // Counters sort first (`M` < `S` < `T`): one run in key order.
        self.ingest(
            meta.into_iter()
                .map(|(key, value)| (fjall::Slice::from(key), value))
                .chain(
                    run.into_iter()
                        .map(|(key, value)| (fjall::Slice::from(&key[..]), value)),
                ),
        )?;
        *counts = next;
        Ok(())
    }

    /// Counts subject keys that an overwrite destroyed (`old` → `new`),
    /// durably at once (an erasure's count is not left to a crash).
    pub(crate) fn overwritten(&self, changes: &[(Record, Record)]) -> Result<()> {
        let destroyed = changes
            .iter()
            .filter(|(old, new)| {
                crate::records::kind_is_subject_key(record_kind(old))
                    && record_live(old)
                    && !record_live(new)
            })
            .count() as u64;
        if destroyed == 0 {
            return Ok(());
        }
        let mut counts = self.counts.lock().expect("index lock");
        let next = SubjectCounts {
            live: counts.live.saturating_sub(destroyed),
            destroyed: counts.destroyed + destroyed,
        };
        let mut writes = Writes::new();
        writes.insert(meta_key(LIVE), next.live.to_be_bytes().to_vec());
        writes.insert(meta_key(DESTROYED), next.destroyed.to_be_bytes().to_vec());
        self.ingest(writes)?;
        *counts = next;
        Ok(())
    }

    /// Numbers of every record whose tag starts as `tag` does, in order
    /// (candidates: the caller checks each record).
    pub(crate) fn subject_numbers(&self, tag: &[u8; 32]) -> Result<Vec<u64>> {
        match self.keys.get(subject_key(tag)).map_err(idx_err)? {
            Some(list) if list.len() % 8 == 0 => list.chunks(8).map(be).collect(),
            Some(list) => Err(idx_err(format!("a list of {} bytes", list.len()))),
            None => Ok(Vec::new()),
        }
    }

    /// Numbers of every record that is not a subject key.
    pub(crate) fn tenant_numbers(&self) -> Result<Vec<u64>> {
        let mut numbers = Vec::new();
        for item in self.keys.prefix([TENANT]) {
            let (key, _) = item.into_inner().map_err(idx_err)?;
            numbers.push(be(&key[1..])?);
        }
        Ok(numbers)
    }

    pub(crate) fn counts(&self) -> Result<SubjectCounts> {
        Ok(*self.counts.lock().expect("index lock"))
    }

    pub(crate) fn rotation_started(&self) -> Result<Option<u64>> {
        self.get(ROTATION)
    }

    pub(crate) fn set_rotation_started(&self, started: Option<u64>) -> Result<()> {
        match started {
            Some(t) => {
                let mut writes = Writes::new();
                writes.insert(meta_key(ROTATION), t.to_be_bytes().to_vec());
                self.ingest(writes)
            }
            None => {
                let mut ingestion = self.keys.start_ingestion().map_err(idx_err)?;
                ingestion
                    .write_tombstone(meta_key(ROTATION))
                    .map_err(idx_err)?;
                ingestion.finish().map_err(idx_err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{KIND_SUBJECT_KEY, KIND_TENANT_KEY, RECORD_LEN, TAG_AT};

    fn record(kind: u8, tag: u8) -> Record {
        let mut r = [0u8; RECORD_LEN];
        r[4] = 1;
        r[5] = kind;
        r[24] = 1;
        r[25] = b't';
        r[TAG_AT..TAG_AT + 32].fill(tag);
        r
    }

    fn noted(records: &[Record]) -> Vec<Noted> {
        records.iter().map(Noted::of).collect()
    }

    /// What opening says it has indexed, across reopenings: the index is
    /// kept (never silently emptied by something replayed at open), and made
    /// anew for another file.
    #[test]
    fn an_index_keeps_what_it_indexed_across_opens_and_restarts_for_another_file() {
        let dir = tempfile::tempdir().unwrap();
        let records = [
            record(KIND_TENANT_KEY, 0),
            record(KIND_SUBJECT_KEY, 7),
            record(KIND_SUBJECT_KEY, 9),
            record(KIND_SUBJECT_KEY, 7),
        ];
        let (index, indexed) = SubjectIndex::open(dir.path(), 1, 4).unwrap();
        assert_eq!(indexed, 0);
        index
            .add(0, &noted(&records[..2]), &Known::default())
            .unwrap();
        index
            .add(2, &noted(&records[2..]), &Known::default())
            .unwrap();
        drop(index);
        for _ in 0..2 {
            let (index, indexed) = SubjectIndex::open(dir.path(), 1, 4).unwrap();
            assert_eq!(indexed, 4);
            assert_eq!(index.subject_numbers(&[7; 32]).unwrap(), [1, 3]);
            assert_eq!(index.subject_numbers(&[9; 32]).unwrap(), [2]);
            assert_eq!(index.tenant_numbers().unwrap(), [0]);
            assert_eq!(index.counts().unwrap().live, 3);
        }
        // Fewer records in the file than indexed: another file's index.
        let (index, indexed) = SubjectIndex::open(dir.path(), 1, 3).unwrap();
        assert_eq!(indexed, 0);
        assert!(index.subject_numbers(&[7; 32]).unwrap().is_empty());
        index
            .add(0, &noted(&records[..1]), &Known::default())
            .unwrap();
        drop(index);
        // Another file id, then the same id again: made anew once, kept after.
        let (index, indexed) = SubjectIndex::open(dir.path(), 2, 1).unwrap();
        assert_eq!(indexed, 0);
        index
            .add(0, &noted(&records[..2]), &Known::default())
            .unwrap();
        drop(index);
        let (index, indexed) = SubjectIndex::open(dir.path(), 2, 2).unwrap();
        assert_eq!(indexed, 2);
        assert_eq!(index.subject_numbers(&[7; 32]).unwrap(), [1]);
        assert_eq!(index.counts().unwrap().live, 1);
    }

    /// An index of an earlier layout (3: the same keys in the tree's default
    /// 64 MiB tables) is made anew in this layout, then kept.
    #[test]
    fn an_index_of_an_earlier_layout_is_rebuilt_in_this_one() {
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = SubjectIndex::open(dir.path(), 1, 2).unwrap();
        index
            .add(
                0,
                &noted(&[record(KIND_TENANT_KEY, 0), record(KIND_SUBJECT_KEY, 7)]),
                &Known::default(),
            )
            .unwrap();
        let mut writes = Writes::new();
        writes.insert(meta_key(VERSION), 3u64.to_be_bytes().to_vec());
        index.ingest(writes).unwrap();
        drop(index);
        let (index, indexed) = SubjectIndex::open(dir.path(), 1, 2).unwrap();
        assert_eq!(indexed, 0, "a layout-3 index is not kept");
        assert!(index.subject_numbers(&[7; 32]).unwrap().is_empty());
        assert_eq!(index.get(VERSION).unwrap(), Some(INDEX_VERSION));
        index
            .add(
                0,
                &noted(&[record(KIND_TENANT_KEY, 0), record(KIND_SUBJECT_KEY, 7)]),
                &Known::default(),
            )
            .unwrap();
        drop(index);
        let (index, indexed) = SubjectIndex::open(dir.path(), 1, 2).unwrap();
        assert_eq!(indexed, 2);
        assert_eq!(index.subject_numbers(&[7; 32]).unwrap(), [1]);
    }

    /// A flush extends the list a lookup read; a list it was not given is
    /// read from the index.
    #[test]
    fn known_lists_and_read_lists_give_the_same_index() {
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = SubjectIndex::open(dir.path(), 1, 0).unwrap();
        index
            .add(0, &noted(&[record(KIND_SUBJECT_KEY, 5)]), &Known::default())
            .unwrap();
        let mut known = Known::default();
        known.remember(&[5; 32], &index.subject_numbers(&[5; 32]).unwrap());
        index
            .add(1, &noted(&[record(KIND_SUBJECT_KEY, 5)]), &known)
            .unwrap();
        index
            .add(2, &noted(&[record(KIND_SUBJECT_KEY, 5)]), &Known::default())
            .unwrap();
        assert_eq!(index.subject_numbers(&[5; 32]).unwrap(), [0, 1, 2]);
    }
}
