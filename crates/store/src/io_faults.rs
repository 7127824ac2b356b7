//! Faults inside the file backend's append path, for tests only: a write of
//! a batch that stops part-way (a torn write) and an fsync that fails.
//!
//! Compiled only with the cargo feature `fault-injection`, which nothing but
//! dev-dependencies enable: a release build has neither this type nor a
//! single extra instruction on the append path. [`crate::FaultyStore`] fails
//! whole calls at the `Storage` boundary; this reaches under it, into the
//! `write_all_at` and `sync_data` calls of `FsStore`.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Faults armed for the next batch an [`crate::FsStore`] writes. Each fires
/// once and then disarms itself.
#[derive(Debug, Default)]
pub struct IoFaults {
    /// Bytes of the next batch (entries first, then leaf records) that reach
    /// the files before the write fails.
    torn_after: Mutex<Option<u64>>,
    fail_fsync: AtomicBool,
    /// When a fault fires, leave the files as a crash at that moment would:
    /// the store does not cut the batch's bytes away. Drop the store then.
    crash: AtomicBool,
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

    /// Whether a fired fault leaves the batch's bytes in the files (a crash)
    /// instead of letting the store clean up after the failed append.
    pub fn crash_on_fault(&self, on: bool) {
        self.crash.store(on, Ordering::SeqCst);
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
