//! Faults inside the file backend's append path, for tests only: a write of
//! a batch that stops part-way (a torn write), an fsync that fails, and a
//! failure of the id index that makes the store reopen it.
//!
//! Compiled only with the cargo feature `fault-injection`, which nothing but
//! dev-dependencies enable: a release build has neither this type nor a
//! single extra instruction on the append path. [`crate::FaultyStore`] fails
//! whole calls at the `Storage` boundary; this reaches under it, into the
//! `write_all_at` and `sync_data` calls of `FsStore`.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Faults armed for the next batch an [`crate::FsStore`] writes. Each fires
/// once and then disarms itself.
#[derive(Debug, Default)]
pub struct IoFaults {
    /// Bytes of the next batch (entries first, then leaf records) that reach
    /// the files before the write fails.
    torn_after: Mutex<Option<u64>>,
    fail_fsync: AtomicBool,
    /// The next cut back of the log files after a failure fails too.
    fail_cut: AtomicBool,
    /// When a fault fires, leave the files as a crash at that moment would:
    /// the store does not cut the batch's bytes away. Drop the store then.
    crash: AtomicBool,
    /// How many of the id index's next uses fail as an I/O error would.
    fail_id_index: AtomicU32,
    /// Right after integration's next commit to the id index, the index is
    /// reopened, as another thread's failed use would make it.
    reopen_after_id_commit: AtomicBool,
    /// Set when a failure is injected into the id index as it is open now.
    id_index_broken: Mutex<Arc<AtomicBool>>,
}

/// The id index's file as the store's redb database sees it under this
/// feature. Once a failure is injected into the index it refuses every
/// write, so dropping the database cannot save the commits that were not
/// durable: as after a real I/O error, when redb drops a database without
/// writing anything.
#[derive(Debug)]
pub(crate) struct IdIndexFile {
    file: redb::backends::FileBackend,
    broken: Arc<AtomicBool>,
}

impl IdIndexFile {
    fn check(&self) -> io::Result<()> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fault: the id index failed"));
        }
        Ok(())
    }
}

impl redb::StorageBackend for IdIndexFile {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }
    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.file.read(offset, len)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check()?;
        self.file.set_len(len)
    }
    fn sync_data(&self, eventual: bool) -> io::Result<()> {
        self.check()?;
        self.file.sync_data(eventual)
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check()?;
        self.file.write(offset, data)
    }
}

impl IoFaults {
    /// The next batch's write stops after `bytes` bytes and fails.
    pub fn tear_next_write(&self, bytes: u64) {
        *self.torn_after.lock().unwrap_or_else(|e| e.into_inner()) = Some(bytes);
    }

    /// The next fsync of a log file fails (after the write went through).
    pub fn fail_next_fsync(&self) {
        self.fail_fsync.store(true, Ordering::SeqCst);
    }

    /// The next cut back of the log files (after a failed write or sync)
    /// fails, leaving the lost batches' bytes in the files.
    pub fn fail_next_cut(&self) {
        self.fail_cut.store(true, Ordering::SeqCst);
    }

    pub(crate) fn cut(&self) -> io::Result<()> {
        if self.fail_cut.swap(false, Ordering::SeqCst) {
            return Err(io::Error::other(
                "injected fault: cutting the log back failed",
            ));
        }
        Ok(())
    }

    /// Whether a fired fault leaves the batch's bytes in the files (a crash)
    /// instead of letting the store clean up after the failed append.
    pub fn crash_on_fault(&self, on: bool) {
        self.crash.store(on, Ordering::SeqCst);
    }

    /// The id index's next use fails, so the store reopens it (redb refuses
    /// a database that saw an I/O error), losing its commits that were not
    /// durable yet.
    pub fn fail_next_id_index_use(&self) {
        self.fail_id_index_uses(1);
    }

    /// The id index's next `n` uses fail, each once reopened.
    pub fn fail_id_index_uses(&self, n: u32) {
        self.fail_id_index.store(n, Ordering::SeqCst);
    }

    /// The id index is reopened right after integration's next commit to
    /// it, before integration forgets the ids it moved there: the moment
    /// another thread's failure would be most costly.
    pub fn reopen_after_next_id_commit(&self) {
        self.reopen_after_id_commit.store(true, Ordering::SeqCst);
    }

    /// Whether this use of the id index fails (each armed failure fires
    /// once); the index as it is open now then refuses every write.
    pub(crate) fn id_index_fails(&self) -> bool {
        let fails = self
            .fail_id_index
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fails {
            self.break_id_index();
        }
        fails
    }

    /// Whether to reopen the id index right after integration's commit (it
    /// fires once); the index as it is open now then refuses every write.
    pub(crate) fn reopens_after_id_commit(&self) -> bool {
        let reopens = self.reopen_after_id_commit.swap(false, Ordering::SeqCst);
        if reopens {
            self.break_id_index();
        }
        reopens
    }

    fn break_id_index(&self) {
        let broken = self
            .id_index_broken
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        broken.store(true, Ordering::SeqCst);
    }

    /// The file of an id index being opened, failing once a fault is
    /// injected into it.
    pub(crate) fn id_index_file(&self, file: File) -> Result<IdIndexFile, redb::DatabaseError> {
        let broken = Arc::new(AtomicBool::new(false));
        *self
            .id_index_broken
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = broken.clone();
        Ok(IdIndexFile {
            file: redb::backends::FileBackend::new(file)?,
            broken,
        })
    }

    pub(crate) fn crashes(&self) -> bool {
        self.crash.load(Ordering::SeqCst)
    }

    /// How much of a write of `len` bytes goes through: `None` for all of
    /// it, `Some(n)` for a torn write of `n` bytes that then fails.
    pub(crate) fn write_budget(&self, len: usize) -> Option<usize> {
        let mut torn = self.torn_after.lock().unwrap_or_else(|e| e.into_inner());
        let left = (*torn)?;
        if left >= len as u64 {
            *torn = Some(left - len as u64);
            return None;
        }
        *torn = None;
        Some(left as usize)
    }

    /// A batch is written: a torn write armed for more bytes than it had
    /// does not carry over to the next one.
    pub(crate) fn batch_written(&self) {
        *self.torn_after.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub(crate) fn fsync(&self) -> io::Result<()> {
        if self.fail_fsync.swap(false, Ordering::SeqCst) {
            return Err(io::Error::other("injected fault: fsync failed"));
        }
        Ok(())
    }
}
