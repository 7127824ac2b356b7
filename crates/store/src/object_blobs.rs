//! Blobs in S3-compatible object storage (`aiaudit serve --blob-store
//! s3://bucket/prefix`), whatever backend holds the log: large content
//! then stays out of the database (or the node's disk), in storage made for
//! it. Object `<prefix>/blobs/<id in hex>` holds a blob's stored bytes, the
//! same bytes every backend keeps (docs/format.md, "Blobs"). A PUT is
//! atomic and durable when it returns, so a blob is whole or absent.
//!
//! [`WithObjectBlobs`] wraps a log's storage and sends every blob call to
//! the object store; everything else goes to the log's own backend.

use crate::{Appended, BlobWriter, Error, LeaseView, NewEntry, Result, Storage, Written};
use aiaudit_tlog::{Hash, NodeReader};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The longest one object-store call may take (a 16 MiB PUT on a slow link).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A bucket and prefix where blobs live.
pub struct ObjectBlobs {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    shown: String,
    rt: Option<tokio::runtime::Runtime>,
}

impl ObjectBlobs {
    /// `s3://bucket[/prefix]`; endpoint, region and credentials come from
    /// the standard `AWS_*` environment variables, as for backups.
    pub fn open(spec: &str) -> Result<ObjectBlobs> {
        let bad = |d: String| Error::Format(format!("blob store {spec:?}: {d}"));
        let rest = spec
            .strip_prefix("s3://")
            .ok_or_else(|| bad("give s3://bucket/prefix".into()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket name".into()));
        }
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| {
                bad(format!(
                    "S3 configuration (AWS_* environment variables): {e}"
                ))
            })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("aiaudit-blobs")
            .enable_all()
            .build()?;
        Ok(ObjectBlobs {
            store: Arc::new(store),
            prefix: prefix.trim_matches('/').to_string(),
            shown: spec.to_string(),
            rt: Some(rt),
        })
    }

    fn path(&self, id: &Hash) -> ObjectPath {
        let name = crate::blobs::hex(id);
        if self.prefix.is_empty() {
            ObjectPath::from(format!("blobs/{name}"))
        } else {
            ObjectPath::from(format!("{}/blobs/{name}", self.prefix))
        }
    }

    /// Runs `fut` on this store's runtime and waits (from any thread, a
    /// Tokio worker's blocking section included).
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = std::result::Result<T, object_store::Error>> + Send + 'static,
    ) -> Result<T> {
        wait_on(
            self.rt.as_ref().expect("runtime").handle(),
            &self.shown,
            fut,
        )
    }

    fn writer(&self, id: &Hash) -> Box<dyn BlobWriter> {
        Box::new(ObjectWriter {
            blobs: ObjectHandle {
                store: self.store.clone(),
                rt: self.rt.as_ref().expect("runtime").handle().clone(),
                shown: self.shown.clone(),
            },
            path: self.path(id),
            bytes: Vec::new(),
        })
    }

    fn read(&self, id: &Hash, offset: u64, len: usize) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let (store, path) = (self.store.clone(), self.path(id));
        let bytes = self.run(async move {
            store
                .get_range(&path, offset..offset + len as u64)
                .await
                .map(|b| b.to_vec())
        })?;
        if bytes.len() != len {
            return Err(Error::Format(format!(
                "blob {} ends early",
                crate::blobs::hex(id)
            )));
        }
        Ok(bytes)
    }

    fn len(&self, id: &Hash) -> Result<Option<u64>> {
        let (store, path) = (self.store.clone(), self.path(id));
        match self.run(async move { store.head(&path).await.map(|m| m.size) }) {
            Ok(n) => Ok(Some(n)),
            Err(Error::Format(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn remove(&self, id: &Hash) -> Result<()> {
        let (store, path) = (self.store.clone(), self.path(id));
        match self.run(async move { store.delete(&path).await }) {
            Ok(()) | Err(Error::Format(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn list(&self, each: &mut dyn FnMut(Hash, u64) -> Result<()>) -> Result<()> {
        let store = self.store.clone();
        let base = if self.prefix.is_empty() {
            ObjectPath::from("blobs")
        } else {
            ObjectPath::from(format!("{}/blobs", self.prefix))
        };
        let found = self.run(async move {
            store
                .list(Some(&base))
                .map_ok(|m| (m.location.filename().map(str::to_string), m.size))
                .try_collect::<Vec<_>>()
                .await
        })?;
        for (name, size) in found {
            if let Some(id) = name.as_deref().and_then(crate::blobs::unhex) {
                each(id, size)?;
            }
        }
        Ok(())
    }
}

impl Drop for ObjectBlobs {
    fn drop(&mut self) {
        // Dropping a runtime from async code panics; this never blocks.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs an object-store call on `rt` and waits for it, bounded by
/// [`CALL_TIMEOUT`]. A missing object is `Error::Format`; anything else
/// failing is `Error::Io` (transient: nothing is acknowledged, retry).
fn wait_on<T: Send + 'static>(
    rt: &tokio::runtime::Handle,
    shown: &str,
    fut: impl Future<Output = std::result::Result<T, object_store::Error>> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let shown = shown.to_string();
    rt.spawn(async move {
        let r = match tokio::time::timeout(CALL_TIMEOUT, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(object_store::Error::NotFound { .. })) => {
                Err(Error::Format(format!("{shown}: no such blob")))
            }
            Ok(Err(e)) => Err(Error::Io(std::io::Error::other(format!("{shown}: {e}")))),
            Err(_) => Err(Error::Io(std::io::Error::other(format!(
                "{shown} did not answer within {CALL_TIMEOUT:?}"
            )))),
        };
        let _ = tx.send(r);
    });
    rx.recv()
        .map_err(|_| Error::Io(std::io::Error::other("the blob store task stopped")))?
}

/// What a writer needs of the store, without owning its runtime.
struct ObjectHandle {
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Handle,
    shown: String,
}

/// Collects a blob's bytes (at most an event's size) and PUTs them at once
/// on commit: the object appears whole, or not at all.
struct ObjectWriter {
    blobs: ObjectHandle,
    path: ObjectPath,
    bytes: Vec<u8>,
}

impl BlobWriter for ObjectWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<()> {
        let ObjectWriter { blobs, path, bytes } = *self;
        let store = blobs.store.clone();
        let put = async move { store.put(&path, PutPayload::from(bytes)).await.map(|_| ()) };
        wait_on(&blobs.rt, &blobs.shown, put)
    }
}

/// A log's storage with its blobs in an object store.
pub struct WithObjectBlobs {
    inner: Arc<dyn Storage>,
    blobs: ObjectBlobs,
}

impl WithObjectBlobs {
    pub fn new(inner: Arc<dyn Storage>, blobs: ObjectBlobs) -> WithObjectBlobs {
        WithObjectBlobs { inner, blobs }
    }
}

impl NodeReader for WithObjectBlobs {
    fn read_node(&self, level: u32, index: u64) -> aiaudit_tlog::Result<Hash> {
        self.inner.read_node(level, index)
    }
}

impl Storage for WithObjectBlobs {
    fn append(&self, batch: &[NewEntry]) -> Result<Vec<Appended>> {
        self.inner.append(batch)
    }
    fn append_unsynced(&self, batch: &[NewEntry]) -> Result<(Vec<Appended>, Option<Written>)> {
        self.inner.append_unsynced(batch)
    }
    fn wait_durable(&self, written: Written) -> Result<()> {
        self.inner.wait_durable(written)
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn integrated_size(&self) -> u64 {
        self.inner.integrated_size()
    }
    fn integrate(&self) -> Result<(u64, Hash)> {
        self.inner.integrate()
    }
    fn sync(&self) -> Result<(u64, Hash)> {
        self.inner.sync()
    }
    fn read_entry(&self, index: u64) -> Result<Vec<u8>> {
        self.inner.read_entry(index)
    }
    fn read_entry_bundle(&self, start: u64, count: u64) -> Result<Vec<u8>> {
        self.inner.read_entry_bundle(start, count)
    }
    fn read_entry_bundle_into(&self, start: u64, count: u64, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.read_entry_bundle_into(start, count, buf)
    }
    fn read_hashes(&self, tree_level: u32, start: u64, count: u64) -> Result<Vec<u8>> {
        self.inner.read_hashes(tree_level, start, count)
    }
    fn lookup_key(&self, key: &str) -> Result<Option<u64>> {
        self.inner.lookup_key(key)
    }
    fn checkpoint(&self) -> Result<Option<String>> {
        self.inner.checkpoint()
    }
    fn save_checkpoint(&self, note: &str) -> Result<()> {
        self.inner.save_checkpoint(note)
    }
    fn publisher_lease(&self) -> Option<LeaseView> {
        self.inner.publisher_lease()
    }
    fn fenced_writes(&self) -> u64 {
        self.inner.fenced_writes()
    }
    fn step_down(&self) -> Result<()> {
        self.inner.step_down()
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
        true
    }
    fn blob_writer(&self, id: &Hash) -> Result<Box<dyn BlobWriter>> {
        Ok(self.blobs.writer(id))
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

/// Reads of an object store's blobs for offline checks (`aiaudit verify
/// --data-dir … --blob-store …`).
impl ObjectBlobs {
    pub fn read_blob(&self, id: &Hash, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.read(id, offset, len)
    }
    pub fn blob_len(&self, id: &Hash) -> Result<Option<u64>> {
        self.len(id)
    }
    pub fn list_blobs(&self, each: &mut dyn FnMut(Hash, u64) -> Result<()>) -> Result<()> {
        self.list(each)
    }
}
