//! A storage wrapper that fails on demand: write, fsync and read errors
//! injected behind the [`Storage`] trait, so tests can check what the server
//! does with them (never acknowledge, never publish what is not durable,
//! answer 503, recover when the fault clears).

use crate::{Appended, Error, NewEntry, Result, Storage, Written};
use aiaudit_tlog::{Hash, NodeReader};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Which operations fail while set.
#[derive(Default, Debug)]
pub struct Faults {
    /// `append` (and `append_unsynced`) fails as if writing the batch or
    /// its fsync failed, before anything of it is written.
    pub append: AtomicBool,
    /// `integrate` and `sync` fail as if writing tree nodes failed.
    pub integrate: AtomicBool,
    /// `save_checkpoint` fails as if the rename or its fsync failed.
    pub save_checkpoint: AtomicBool,
    /// Reads of entries and hashes fail as if the disk returned EIO.
    pub reads: AtomicBool,
    /// `wait_durable` waits while set (a slow disk), so a test can see what
    /// is written meanwhile.
    pub hold_syncs: AtomicBool,
    /// `append_unsynced` panics, as a bug in storage code would: the
    /// thread that called it (the ledger's sequencer) unwinds.
    pub panic_append: AtomicBool,
    /// `wait_durable` panics (on the ledger's syncer thread).
    pub panic_sync: AtomicBool,
    /// Batches written by `append_unsynced` so far.
    pub written: AtomicU64,
}

impl Faults {
    pub fn set(flag: &AtomicBool, on: bool) {
        flag.store(on, Ordering::SeqCst);
    }
}

pub struct FaultyStore {
    inner: Arc<dyn Storage>,
    pub faults: Arc<Faults>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Storage>) -> FaultyStore {
        FaultyStore {
            inner,
            faults: Arc::default(),
        }
    }
}

fn injected(flag: &AtomicBool, what: &str) -> Result<()> {
    if flag.load(Ordering::SeqCst) {
        return Err(Error::Io(io::Error::other(format!(
            "injected fault: {what}"
        ))));
    }
    Ok(())
}

impl NodeReader for FaultyStore {
    fn read_node(&self, level: u32, index: u64) -> aiaudit_tlog::Result<Hash> {
        injected(&self.faults.reads, "read").map_err(|e| aiaudit_tlog::Error::Read(Box::new(e)))?;
        self.inner.read_node(level, index)
    }
}

impl Storage for FaultyStore {
    fn append(&self, batch: &[NewEntry]) -> Result<Vec<Appended>> {
        injected(&self.faults.append, "fsync of the batch")?;
        self.inner.append(batch)
    }
    fn append_unsynced(&self, batch: &[NewEntry]) -> Result<(Vec<Appended>, Option<Written>)> {
        if self.faults.panic_append.load(Ordering::SeqCst) {
            panic!("injected panic: appending a batch");
        }
        injected(&self.faults.append, "fsync of the batch")?;
        let written = self.inner.append_unsynced(batch)?;
        self.faults.written.fetch_add(1, Ordering::SeqCst);
        Ok(written)
    }
    fn wait_durable(&self, written: Written) -> Result<()> {
        if self.faults.panic_sync.load(Ordering::SeqCst) {
            panic!("injected panic: syncing a batch");
        }
        while self.faults.hold_syncs.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.inner.wait_durable(written)
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn integrated_size(&self) -> u64 {
        self.inner.integrated_size()
    }
    fn integrate(&self) -> Result<(u64, Hash)> {
        injected(&self.faults.integrate, "writing tree nodes")?;
        self.inner.integrate()
    }
    fn sync(&self) -> Result<(u64, Hash)> {
        injected(&self.faults.integrate, "writing tree nodes")?;
        self.inner.sync()
    }
    fn read_entry(&self, index: u64) -> Result<Vec<u8>> {
        injected(&self.faults.reads, "read")?;
        self.inner.read_entry(index)
    }
    fn read_entry_bundle(&self, start: u64, count: u64) -> Result<Vec<u8>> {
        injected(&self.faults.reads, "read")?;
        self.inner.read_entry_bundle(start, count)
    }
    fn read_hashes(&self, tree_level: u32, start: u64, count: u64) -> Result<Vec<u8>> {
        injected(&self.faults.reads, "read")?;
        self.inner.read_hashes(tree_level, start, count)
    }
    fn lookup_key(&self, key: &str) -> Result<Option<u64>> {
        injected(&self.faults.reads, "read")?;
        self.inner.lookup_key(key)
    }
    fn checkpoint(&self) -> Result<Option<String>> {
        self.inner.checkpoint()
    }
    fn save_checkpoint(&self, note: &str) -> Result<()> {
        injected(&self.faults.save_checkpoint, "saving the checkpoint")?;
        self.inner.save_checkpoint(note)
    }
    fn is_publisher(&self) -> bool {
        self.inner.is_publisher()
    }
    fn shared(&self) -> bool {
        self.inner.shared()
    }
    fn ping(&self) -> Result<()> {
        self.inner.ping()
    }
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn key_records(&self) -> Option<Box<dyn aiaudit_keyring::RecordStore>> {
        self.inner.key_records()
    }
    fn load_document(&self, name: &str) -> Result<Option<(Vec<u8>, u64)>> {
        self.inner.load_document(name)
    }
    fn save_document(&self, name: &str, body: &[u8], expected: u64) -> Result<bool> {
        self.inner.save_document(name, body, expected)
    }
    fn stores_blobs(&self) -> bool {
        self.inner.stores_blobs()
    }
    fn blob_writer(&self, id: &Hash) -> Result<Box<dyn crate::BlobWriter>> {
        injected(&self.faults.append, "writing a blob")?;
        self.inner.blob_writer(id)
    }
    fn read_blob(&self, id: &Hash, offset: u64, len: usize) -> Result<Vec<u8>> {
        injected(&self.faults.reads, "read")?;
        self.inner.read_blob(id, offset, len)
    }
    fn blob_len(&self, id: &Hash) -> Result<Option<u64>> {
        self.inner.blob_len(id)
    }
    fn remove_blob(&self, id: &Hash) -> Result<()> {
        self.inner.remove_blob(id)
    }
    fn list_blobs(&self, each: &mut dyn FnMut(Hash, u64) -> Result<()>) -> Result<()> {
        self.inner.list_blobs(each)
    }
}
