//! A storage wrapper standing in for a node of a log shared by several
//! (what PostgreSQL is in production): one log underneath, documents and
//! keyring records kept in memory and shared between the nodes, and
//! whether this node publishes. It can also fail reads of tree nodes only.

use aiaudit_keyring::{Record, RecordStore};
use aiaudit_store::{Appended, NewEntry, Result, Storage};
use aiaudit_tlog::{Hash, NodeReader};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What the nodes of one shared log hold in common besides the log.
#[derive(Default)]
pub struct Database {
    documents: Mutex<HashMap<String, (Vec<u8>, u64)>>,
    keys: Arc<Keys>,
}

impl Database {
    pub fn document(&self, name: &str) -> Option<Vec<u8>> {
        self.documents
            .lock()
            .unwrap()
            .get(name)
            .map(|d| d.0.clone())
    }
}

/// Keyring records with the version of their last write.
#[derive(Default)]
pub struct Keys {
    rows: Mutex<(Vec<(Record, u64)>, u64)>,
}

struct SharedKeys(Arc<Keys>);

impl RecordStore for SharedKeys {
    fn load(&self) -> aiaudit_keyring::Result<(Vec<Record>, u64)> {
        let rows = self.0.rows.lock().unwrap();
        Ok((rows.0.iter().map(|(r, _)| *r).collect(), rows.1))
    }
    fn append(&self, at: u64, records: &[Record]) -> aiaudit_keyring::Result<bool> {
        let mut rows = self.0.rows.lock().unwrap();
        if rows.0.len() as u64 != at {
            return Ok(false);
        }
        for r in records {
            rows.1 += 1;
            let v = rows.1;
            rows.0.push((*r, v));
        }
        Ok(true)
    }
    fn overwrite(&self, records: &[(u64, Record)]) -> aiaudit_keyring::Result<()> {
        let mut rows = self.0.rows.lock().unwrap();
        for (n, r) in records {
            rows.1 += 1;
            let v = rows.1;
            rows.0[*n as usize] = (*r, v);
        }
        Ok(())
    }
    fn changes(&self, mark: u64) -> aiaudit_keyring::Result<(Vec<(u64, Record)>, u64)> {
        let rows = self.0.rows.lock().unwrap();
        let changed = rows
            .0
            .iter()
            .enumerate()
            .filter(|(_, (_, v))| *v > mark)
            .map(|(n, (r, _))| (n as u64, *r))
            .collect();
        Ok((changed, rows.1))
    }
    fn shared(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        "the test database's keyring".into()
    }
}

pub struct Node {
    pub log: Arc<dyn Storage>,
    /// `None`: a log of one node (only the node-read fault applies).
    pub database: Option<Arc<Database>>,
    pub publisher: bool,
    /// Reads of tree nodes fail (entries still read).
    pub node_reads_fail: AtomicBool,
}

impl Node {
    pub fn alone(log: Arc<dyn Storage>) -> Node {
        Node {
            log,
            database: None,
            publisher: true,
            node_reads_fail: AtomicBool::new(false),
        }
    }

    pub fn shared(log: Arc<dyn Storage>, database: Arc<Database>, publisher: bool) -> Node {
        Node {
            log,
            database: Some(database),
            publisher,
            node_reads_fail: AtomicBool::new(false),
        }
    }

    fn fail(&self) -> bool {
        self.node_reads_fail.load(Ordering::SeqCst)
    }
}

fn eio() -> aiaudit_store::Error {
    aiaudit_store::Error::Io(std::io::Error::other("injected: reading tree nodes"))
}

impl NodeReader for Node {
    fn read_node(&self, level: u32, index: u64) -> aiaudit_tlog::Result<Hash> {
        if self.fail() {
            return Err(aiaudit_tlog::Error::Read(Box::new(eio())));
        }
        self.log.read_node(level, index)
    }
}

impl Storage for Node {
    fn append(&self, batch: &[NewEntry]) -> Result<Vec<Appended>> {
        self.log.append(batch)
    }
    fn size(&self) -> u64 {
        self.log.size()
    }
    fn integrated_size(&self) -> u64 {
        self.log.integrated_size()
    }
    fn integrate(&self) -> Result<(u64, Hash)> {
        self.log.integrate()
    }
    fn sync(&self) -> Result<(u64, Hash)> {
        self.log.sync()
    }
    fn read_entry(&self, index: u64) -> Result<Vec<u8>> {
        self.log.read_entry(index)
    }
    fn read_entry_bundle(&self, start: u64, count: u64) -> Result<Vec<u8>> {
        self.log.read_entry_bundle(start, count)
    }
    fn read_hashes(&self, tree_level: u32, start: u64, count: u64) -> Result<Vec<u8>> {
        if self.fail() {
            return Err(eio());
        }
        self.log.read_hashes(tree_level, start, count)
    }
    fn lookup_key(&self, key: &str) -> Result<Option<u64>> {
        self.log.lookup_key(key)
    }
    fn checkpoint(&self) -> Result<Option<String>> {
        self.log.checkpoint()
    }
    fn save_checkpoint(&self, note: &str) -> Result<()> {
        self.log.save_checkpoint(note)
    }
    fn is_publisher(&self) -> bool {
        self.publisher
    }
    fn shared(&self) -> bool {
        self.database.is_some()
    }
    fn backend(&self) -> &'static str {
        if self.database.is_some() {
            "test-shared"
        } else {
            self.log.backend()
        }
    }
    fn key_records(&self) -> Option<Box<dyn RecordStore>> {
        let db = self.database.as_ref()?;
        Some(Box::new(SharedKeys(db.keys.clone())))
    }
    fn load_document(&self, name: &str) -> Result<Option<(Vec<u8>, u64)>> {
        let Some(db) = &self.database else {
            return self.log.load_document(name);
        };
        let docs = db.documents.lock().unwrap();
        Ok(Some(docs.get(name).cloned().unwrap_or_default()))
    }
    fn save_document(&self, name: &str, body: &[u8], expected: u64) -> Result<bool> {
        let Some(db) = &self.database else {
            return self.log.save_document(name, body, expected);
        };
        let mut docs = db.documents.lock().unwrap();
        let version = docs.get(name).map_or(0, |d| d.1);
        if version != expected {
            return Ok(false);
        }
        docs.insert(name.to_string(), (body.to_vec(), version + 1));
        Ok(true)
    }
    fn stores_blobs(&self) -> bool {
        self.log.stores_blobs()
    }
    fn blob_writer(&self, id: &Hash) -> Result<Box<dyn aiaudit_store::BlobWriter>> {
        self.log.blob_writer(id)
    }
    fn read_blob(&self, id: &Hash, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.log.read_blob(id, offset, len)
    }
    fn blob_len(&self, id: &Hash) -> Result<Option<u64>> {
        self.log.blob_len(id)
    }
    fn remove_blob(&self, id: &Hash) -> Result<()> {
        self.log.remove_blob(id)
    }
    fn list_blobs(&self, each: &mut dyn FnMut(Hash, u64) -> Result<()>) -> Result<()> {
        self.log.list_blobs(each)
    }
}
