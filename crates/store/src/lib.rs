//! Storage for the ledger: the [`Storage`] trait the server talks to, and the
//! embedded file backend ([`FsStore`]), the zero-configuration default, and
//! the PostgreSQL backend ([`PgStore`]) that several nodes share.
//!
//! What a backend promises: `append` returns only once the entries and their
//! leaf hashes are durable (fsync'd), a batch is all-or-nothing, an event id is
//! logged at most once, and after any crash the store reopens at a prefix of
//! what was written that includes everything acknowledged. Tile and bundle
//! path arithmetic is not here: it lives in `aiaudit-tlog`.

mod blobs;
mod error;
mod faulty;
mod fs;
mod id_keys;
#[cfg(feature = "fault-injection")]
mod io_faults;
mod object_blobs;
mod pg;

pub use error::{Error, Result};
pub use faulty::{Faults, FaultyStore};
pub use fs::{parse_checkpoint, write_atomically, FsStore, LogReader, Recovery, FORMAT_LINE};
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub use io_faults::IoFaults;
pub use object_blobs::{ObjectBlobs, WithObjectBlobs};
pub use pg::{
    connector, is_postgres_url, probe, LeaseConfig, LeaseView, PgKeyRecords, PgProbe, PgStore,
    PG_SCHEMA_VERSION,
};

use aiaudit_tlog::{Hash, NodeReader};

/// One event ready to be logged: its dedup key (tenant and id, see
/// `aiaudit_event::dedup_key`), entry bytes and leaf hash.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub key: String,
    pub entry: Vec<u8>,
    pub leaf: Hash,
}

impl NewEntry {
    /// Refuses an empty entry or one too long for an entry bundle (`i`: its
    /// place in the batch, for the message).
    pub(crate) fn check_size(&self, i: usize) -> Result<()> {
        if self.entry.is_empty() || self.entry.len() > aiaudit_tlog::MAX_ENTRY_SIZE {
            return Err(Error::OutOfRange(format!(
                "entry {i} of the batch is {} bytes",
                self.entry.len()
            )));
        }
        Ok(())
    }
}

/// Where an appended event ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub index: u64,
    pub leaf: Hash,
    /// True when the id was already logged (or appeared earlier in the same
    /// batch): nothing was appended for it and `index` is the original one.
    pub duplicate: bool,
}

/// Where a batch written by [`Storage::append_unsynced`] ends, for
/// [`Storage::wait_durable`]: the log size after it, in the run of writes
/// (`generation`) that a failed sync ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub(crate) generation: u64,
    pub(crate) size: u64,
}

/// Writes one blob (out-of-line event content, sealed: docs/format.md
/// "Blobs"). Nothing is readable under its id until `commit` returns, and
/// then all of it is, durably. Dropped without `commit`: nothing stays.
pub trait BlobWriter: Send {
    fn write(&mut self, bytes: &[u8]) -> Result<()>;
    fn commit(self: Box<Self>) -> Result<()>;
}

/// The ledger's storage. Methods block on I/O; call them from a blocking context.
pub trait Storage: NodeReader + Send + Sync + 'static {
    /// Appends a batch durably, deduplicating by key (tenant and event id:
    /// one tenant's ids never shadow another's). All-or-nothing: on error
    /// nothing of the batch is logged or acknowledged.
    fn append(&self, batch: &[NewEntry]) -> Result<Vec<Appended>>;
    /// [`Storage::append`] in two steps, so that a caller can write the next
    /// batch while this one is made durable: writes the batch and returns
    /// what `append` would, and, when it is not durable yet, the mark to
    /// pass to [`Storage::wait_durable`]. Nothing of the answer may be
    /// acknowledged before that returns `Ok`. Backends that make every
    /// append durable at once (PostgreSQL: one transaction) keep the default.
    fn append_unsynced(&self, batch: &[NewEntry]) -> Result<(Vec<Appended>, Option<Written>)> {
        Ok((self.append(batch)?, None))
    }
    /// Returns once the batch `written` marks is durable, or the error that
    /// made it lost (then nothing of it is logged, and it must not be
    /// acknowledged). One wait may make several written batches durable.
    fn wait_durable(&self, written: Written) -> Result<()> {
        let _ = written;
        Ok(())
    }
    /// Number of durable entries (the sequenced size).
    fn size(&self) -> u64;
    /// Number of entries whose tree nodes are written (see [`Storage::integrate`]).
    fn integrated_size(&self) -> u64;
    /// Writes the tree nodes and id index for every durable entry, makes them
    /// durable and returns the new integrated size and its root.
    fn integrate(&self) -> Result<(u64, Hash)>;
    /// Like [`Storage::integrate`], and also makes every derived index
    /// durable, so the next start has nothing to rebuild. Called at shutdown.
    fn sync(&self) -> Result<(u64, Hash)>;
    /// The entry at `index` (< size).
    fn read_entry(&self, index: u64) -> Result<Vec<u8>>;
    /// Entries `[start, start + count)` in C2SP entry bundle encoding.
    fn read_entry_bundle(&self, start: u64, count: u64) -> Result<Vec<u8>>;
    /// [`Storage::read_entry_bundle`] into `buf`, replacing what it held: a
    /// caller that reads all the time (the search indexer) keeps one buffer
    /// instead of faulting in fresh pages for every read.
    fn read_entry_bundle_into(&self, start: u64, count: u64, buf: &mut Vec<u8>) -> Result<()> {
        *buf = self.read_entry_bundle(start, count)?;
        Ok(())
    }
    /// Calls `each` with every entry of `[from, to)` in order, read a
    /// bundle (one tile's width) at a time: on PostgreSQL one query per 256
    /// entries, not one per entry.
    fn for_each_entry(&self, from: u64, to: u64, each: &mut dyn FnMut(u64, &[u8])) -> Result<()> {
        let mut at = from;
        while at < to {
            let n = (to - at).min(aiaudit_tlog::TILE_WIDTH);
            let bundle = self.read_entry_bundle(at, n)?;
            let corrupt = |detail: String| Error::Corrupt { index: at, detail };
            let entries =
                aiaudit_tlog::decode_entry_bundle(&bundle).map_err(|e| corrupt(e.to_string()))?;
            if entries.len() as u64 != n {
                return Err(corrupt(format!(
                    "the bundle of entries {at}..{} holds {} entries",
                    at + n,
                    entries.len()
                )));
            }
            for (i, entry) in (at..).zip(entries) {
                each(i, entry);
            }
            at += n;
        }
        Ok(())
    }
    /// Hashes at `tree_level`, indexes `[start, start + count)`, concatenated.
    /// Only integrated nodes (level 0: durable leaves) can be read.
    fn read_hashes(&self, tree_level: u32, start: u64, count: u64) -> Result<Vec<u8>>;
    /// The index of the event logged under a dedup key, if any.
    fn lookup_key(&self, key: &str) -> Result<Option<u64>>;
    /// The latest signed checkpoint, if one was saved.
    fn checkpoint(&self) -> Result<Option<String>>;
    /// Durably replaces the latest signed checkpoint.
    fn save_checkpoint(&self, note: &str) -> Result<()>;
    /// Whether this node integrates and publishes checkpoints now. Always
    /// for a log of one node; on a shared backend, only the elected node:
    /// the others serve the checkpoints it saves.
    /// The publisher lease of a shared log, as this node last read it.
    fn publisher_lease(&self) -> Option<LeaseView> {
        None
    }
    /// Publisher writes the database refused because another node holds a
    /// newer term of the lease (always 0 for a log of one node).
    fn fenced_writes(&self) -> u64 {
        0
    }
    /// Stops publishing and gives the publisher lease up at once, so another
    /// node takes over without waiting for it to expire (a clean shutdown).
    fn step_down(&self) -> Result<()> {
        Ok(())
    }
    fn is_publisher(&self) -> bool {
        true
    }
    /// Whether other nodes share this log (then only the publisher runs
    /// jobs that must run once, and readiness asks the backend).
    fn shared(&self) -> bool {
        false
    }
    /// Checks the backend answers (readiness); the file backend's disk is
    /// probed by the server itself.
    fn ping(&self) -> Result<()> {
        Ok(())
    }
    /// The backend's name, for `/v1/info` and metrics.
    fn backend(&self) -> &'static str {
        "fs"
    }
    /// Where a shared backend keeps the keyring, so that every node seals
    /// and opens content with the same keys; None: the data directory's
    /// keyring file.
    fn key_records(&self) -> Option<Box<dyn aiaudit_keyring::RecordStore>> {
        None
    }
    /// A small document every node of a shared log reads and writes (legal
    /// holds), with its version (0: never written); None when the backend
    /// is not shared, and the node keeps such state in its data directory.
    fn load_document(&self, _name: &str) -> Result<Option<(Vec<u8>, u64)>> {
        Ok(None)
    }
    /// Replaces a shared document if its version is still `expected`;
    /// false, changing nothing, when another node changed it first.
    fn save_document(&self, _name: &str, _body: &[u8], _expected: u64) -> Result<bool> {
        Err(Error::Format(
            "shared documents need a shared backend".into(),
        ))
    }
    /// Whether this backend stores blobs (events larger than an entry).
    fn stores_blobs(&self) -> bool {
        false
    }
    /// Starts writing the blob `id`; it must be committed before any entry
    /// that lists it is appended.
    fn blob_writer(&self, _id: &Hash) -> Result<Box<dyn BlobWriter>> {
        Err(Error::Format("this storage backend keeps no blobs".into()))
    }
    /// Exactly `len` bytes of blob `id` from `offset` (an error if it ends first).
    fn read_blob(&self, id: &Hash, _offset: u64, _len: usize) -> Result<Vec<u8>> {
        Err(Error::Format(format!("no blob {}", blobs::hex(id))))
    }
    /// The stored length of blob `id`, None when there is no such blob.
    fn blob_len(&self, _id: &Hash) -> Result<Option<u64>> {
        Ok(None)
    }
    /// Removes blob `id` (an event that turned out to be a duplicate, so
    /// no entry lists it). Removing a missing blob is not an error.
    fn remove_blob(&self, _id: &Hash) -> Result<()> {
        Ok(())
    }
    /// Calls `each` with every stored blob's id and length.
    fn list_blobs(&self, _each: &mut dyn FnMut(Hash, u64) -> Result<()>) -> Result<()> {
        Ok(())
    }
}

/// Hex of a blob id, as blob files and messages name it.
pub fn blob_name(id: &Hash) -> String {
    blobs::hex(id)
}
