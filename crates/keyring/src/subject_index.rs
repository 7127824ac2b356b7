//! The keyring file's index (`keyring.idx`, a redb database beside it): which
//! records are a subject's keys, which are the tenants' (salts and tenant
//! keys), and counts, so that opening the keyring and finding a subject's
//! keys read a few records instead of all of them.
//!
//! The index is derived data. The keyring file stays the truth: every record
//! the index names is read and checked by the caller, and an index that does
//! not belong to the file (another file's id, more records than the file
//! holds) is rebuilt from the file. It is updated after the file's records
//! are durable, and records past what it has durably indexed are indexed
//! again at open, so a crash between the two loses nothing.

use crate::records::{record_kind, record_live, record_subject, Record, SubjectCounts};
use crate::{Error, Result};
use redb::{Database, Durability, ReadableTable, TableDefinition};
use std::path::Path;
use std::time::{Duration, Instant};

/// Every subject-key record, as `first 8 bytes of its tag (u64 BE) << 64 |
/// record number`: a subject's records are one key range, and 16-byte keys
/// keep the tree small. Tags of other subjects (or tenants) that share the
/// 8 bytes only add candidates, which the caller's check of each record
/// drops.
const SUBJECTS: TableDefinition<u128, ()> = TableDefinition::new("subject_keys");
/// Layout version 1's table (`tenant length | tenant | tag | number`),
/// dropped when an index of that version is rebuilt.
const SUBJECTS_V1: TableDefinition<&[u8], ()> = TableDefinition::new("subjects");
/// Numbers of every record that is not a subject key.
const TENANT_RECORDS: TableDefinition<u64, ()> = TableDefinition::new("tenant_records");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// How many records (from number 0) are indexed.
const INDEXED: &str = "indexed";
const LIVE: &str = "subject_keys_live";
const DESTROYED: &str = "subject_keys_destroyed";
/// The keyring file's id (header bytes 32..40) the index was built from.
const FILE_ID: &str = "file_id";
const ROTATION: &str = "rotation_started";
/// Index layout version.
const VERSION: &str = "version";
pub const INDEX_VERSION: u64 = 2;
/// Commits are made durable at most this often (the rest is recovered by
/// indexing the file's tail again at open).
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// The index's page cache: it must not grow with the number of subjects.
const CACHE_BYTES: usize = 16 << 20;

/// The file name beside the keyring file.
pub const INDEX_FILE: &str = "keyring.idx";

pub(crate) struct SubjectIndex {
    db: Database,
    last_sync: std::sync::Mutex<Instant>,
}

fn idx_err(e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("keyring index {INDEX_FILE}: {e}"))
}

/// The index key of a subject's record `number`.
fn subject_key(tag: &[u8; 32], number: u64) -> u128 {
    let prefix = u64::from_be_bytes(tag[..8].try_into().expect("8 bytes"));
    (u128::from(prefix) << 64) | u128::from(number)
}

impl SubjectIndex {
    /// Opens (creating, mode 0600) the index in `dir`. Returns it and how
    /// many records it has indexed; an index of another keyring file, of an
    /// unknown version or unreadable is emptied (it is rebuilt by indexing
    /// from record 0).
    pub(crate) fn open(dir: &Path, file_id: u64) -> Result<(SubjectIndex, u64)> {
        let path = dir.join(INDEX_FILE);
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)?;
        }
        let db = match redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
        {
            Ok(db) => db,
            Err(e) => {
                tracing::warn!(error = %e, "the keyring index is unreadable: rebuilding it");
                std::fs::remove_file(&path)?;
                redb::Builder::new()
                    .set_cache_size(CACHE_BYTES)
                    .create(&path)
                    .map_err(idx_err)?
            }
        };
        let index = SubjectIndex {
            db,
            last_sync: std::sync::Mutex::new(Instant::now()),
        };
        let (indexed, id, version) = index.read(|meta| {
            Ok((
                meta.get(INDEXED).map_err(idx_err)?.map(|v| v.value()),
                meta.get(FILE_ID).map_err(idx_err)?.map(|v| v.value()),
                meta.get(VERSION).map_err(idx_err)?.map(|v| v.value()),
            ))
        })?;
        let indexed = match (indexed, id, version) {
            (Some(n), Some(id), Some(INDEX_VERSION)) if id == file_id => n,
            _ => {
                index.reset(file_id)?;
                0
            }
        };
        Ok((index, indexed))
    }

    fn read<T>(&self, f: impl FnOnce(&redb::ReadOnlyTable<&str, u64>) -> Result<T>) -> Result<T> {
        let tx = self.db.begin_read().map_err(idx_err)?;
        match tx.open_table(META) {
            Ok(meta) => f(&meta),
            Err(redb::TableError::TableDoesNotExist(_)) => {
                drop(tx);
                let w = self.db.begin_write().map_err(idx_err)?;
                w.open_table(META).map_err(idx_err)?;
                w.commit().map_err(idx_err)?;
                let tx = self.db.begin_read().map_err(idx_err)?;
                f(&tx.open_table(META).map_err(idx_err)?)
            }
            Err(e) => Err(idx_err(e)),
        }
    }

    /// Empties the index for the keyring file `file_id`.
    pub(crate) fn reset(&self, file_id: u64) -> Result<()> {
        let tx = self.db.begin_write().map_err(idx_err)?;
        tx.delete_table(SUBJECTS).map_err(idx_err)?;
        tx.delete_table(SUBJECTS_V1).map_err(idx_err)?;
        tx.delete_table(TENANT_RECORDS).map_err(idx_err)?;
        tx.delete_table(META).map_err(idx_err)?;
        {
            tx.open_table(SUBJECTS).map_err(idx_err)?;
            tx.open_table(TENANT_RECORDS).map_err(idx_err)?;
            let mut meta = tx.open_table(META).map_err(idx_err)?;
            meta.insert(VERSION, INDEX_VERSION).map_err(idx_err)?;
            meta.insert(FILE_ID, file_id).map_err(idx_err)?;
            meta.insert(INDEXED, 0).map_err(idx_err)?;
        }
        tx.commit().map_err(idx_err)
    }

    /// Indexes records `at, at + 1, …` (already durable in the file).
    /// `durable` forces the commit to disk now.
    pub(crate) fn add(&self, at: u64, records: &[Record], durable: bool) -> Result<()> {
        let mut tx = self.db.begin_write().map_err(idx_err)?;
        let durable = self.durable_now(&mut tx, durable);
        {
            let mut subjects = tx.open_table(SUBJECTS).map_err(idx_err)?;
            let mut tenants = tx.open_table(TENANT_RECORDS).map_err(idx_err)?;
            let mut meta = tx.open_table(META).map_err(idx_err)?;
            let mut counts = counts_in(&meta)?;
            let mut keys = Vec::with_capacity(records.len());
            for (number, r) in (at..).zip(records) {
                match record_subject(r) {
                    Some((_, tag)) => {
                        keys.push(subject_key(&tag, number));
                        if record_live(r) {
                            counts.live += 1;
                        } else {
                            counts.destroyed += 1;
                        }
                    }
                    None => {
                        tenants.insert(number, ()).map_err(idx_err)?;
                    }
                }
            }
            // In key order: neighbouring inserts share leaves.
            keys.sort_unstable();
            for k in keys {
                subjects.insert(k, ()).map_err(idx_err)?;
            }
            meta.insert(LIVE, counts.live).map_err(idx_err)?;
            meta.insert(DESTROYED, counts.destroyed).map_err(idx_err)?;
            meta.insert(INDEXED, at + records.len() as u64)
                .map_err(idx_err)?;
        }
        tx.commit().map_err(idx_err)?;
        if durable {
            *self.last_sync.lock().expect("index lock") = Instant::now();
        }
        Ok(())
    }

    /// Counts subject keys that an overwrite destroyed (`old` → `new`).
    pub(crate) fn overwritten(&self, changes: &[(Record, Record)]) -> Result<()> {
        let destroyed = changes
            .iter()
            .filter(|(old, new)| {
                record_kind(old) == crate::records::KIND_SUBJECT_KEY
                    && record_live(old)
                    && !record_live(new)
            })
            .count() as u64;
        if destroyed == 0 {
            return Ok(());
        }
        let mut tx = self.db.begin_write().map_err(idx_err)?;
        self.durable_now(&mut tx, true);
        {
            let mut meta = tx.open_table(META).map_err(idx_err)?;
            let mut counts = counts_in(&meta)?;
            counts.live = counts.live.saturating_sub(destroyed);
            counts.destroyed += destroyed;
            meta.insert(LIVE, counts.live).map_err(idx_err)?;
            meta.insert(DESTROYED, counts.destroyed).map_err(idx_err)?;
        }
        tx.commit().map_err(idx_err)
    }

    fn durable_now(&self, tx: &mut redb::WriteTransaction, force: bool) -> bool {
        let durable = force || self.last_sync.lock().expect("index lock").elapsed() >= SYNC_EVERY;
        if durable {
            // The allocator state goes with a durable commit, so that opening
            // after a crash does not walk the whole index.
            tx.set_quick_repair(true);
        } else {
            tx.set_durability(Durability::None);
        }
        durable
    }

    /// Numbers of every record whose tag starts as `tag` does, in order
    /// (candidates: the caller checks each record).
    pub(crate) fn subject_numbers(&self, tag: &[u8; 32]) -> Result<Vec<u64>> {
        let tx = self.db.begin_read().map_err(idx_err)?;
        let table = tx.open_table(SUBJECTS).map_err(idx_err)?;
        let mut numbers = Vec::new();
        for item in table
            .range(subject_key(tag, 0)..=subject_key(tag, u64::MAX))
            .map_err(idx_err)?
        {
            numbers.push(item.map_err(idx_err)?.0.value() as u64);
        }
        Ok(numbers)
    }

    /// Numbers of every record that is not a subject key.
    pub(crate) fn tenant_numbers(&self) -> Result<Vec<u64>> {
        let tx = self.db.begin_read().map_err(idx_err)?;
        let table = tx.open_table(TENANT_RECORDS).map_err(idx_err)?;
        let mut numbers = Vec::new();
        for item in table.iter().map_err(idx_err)? {
            numbers.push(item.map_err(idx_err)?.0.value());
        }
        Ok(numbers)
    }

    pub(crate) fn counts(&self) -> Result<SubjectCounts> {
        let tx = self.db.begin_read().map_err(idx_err)?;
        let meta = tx.open_table(META).map_err(idx_err)?;
        counts_in(&meta)
    }

    pub(crate) fn rotation_started(&self) -> Result<Option<u64>> {
        let tx = self.db.begin_read().map_err(idx_err)?;
        let meta = tx.open_table(META).map_err(idx_err)?;
        let started = meta.get(ROTATION).map_err(idx_err)?.map(|v| v.value());
        Ok(started)
    }

    pub(crate) fn set_rotation_started(&self, started: Option<u64>) -> Result<()> {
        let tx = self.db.begin_write().map_err(idx_err)?;
        {
            let mut meta = tx.open_table(META).map_err(idx_err)?;
            match started {
                Some(t) => meta.insert(ROTATION, t).map_err(idx_err)?,
                None => meta.remove(ROTATION).map_err(idx_err)?,
            };
        }
        tx.commit().map_err(idx_err)
    }
}

fn counts_in(meta: &impl redb::ReadableTable<&'static str, u64>) -> Result<SubjectCounts> {
    let get = |k| -> Result<u64> { Ok(meta.get(k).map_err(idx_err)?.map_or(0, |v| v.value())) };
    Ok(SubjectCounts {
        live: get(LIVE)?,
        destroyed: get(DESTROYED)?,
    })
}
