//! Small registries a node keeps: API tokens, registered emitters, legal
//! holds. On a log of one node each is a JSON file in the data directory
//! (mode 0600, replaced atomically). On a log shared by several nodes it is
//! a document in the database (`aiaudit_documents`, docs/format.md) that
//! every node re-reads and replaces by compare-and-swap on its version, so
//! a change made through one node holds on all of them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How a registry's value is read from and written to bytes (the file's
/// format, which the shared document uses too).
pub struct Format<T> {
    pub parse: fn(&[u8], &str) -> anyhow::Result<T>,
    pub encode: fn(&T) -> anyhow::Result<Vec<u8>>,
}

pub struct Registry<T> {
    path: PathBuf,
    document: &'static str,
    format: Format<T>,
    shared: Option<Arc<dyn aiaudit_store::Storage>>,
    value: RwLock<T>,
    version: AtomicU64,
    last_miss: Mutex<Option<Instant>>,
}

/// How often nodes of a shared log take in the others' changes; also the
/// longest a change (a revocation) takes to reach every node.
pub const REFRESH: Duration = Duration::from_secs(1);
/// Something unknown here (a brand-new token) re-reads the document at most
/// this often, so unknown input cannot turn into a flood of queries.
const MISS_REFRESH: Duration = Duration::from_millis(250);
/// Tries before giving up when other nodes keep changing the document.
const MAX_RACES: usize = 16;

impl<T: Clone + Default> Registry<T> {
    /// Opens the registry `file` in `dir`, or on a shared log the document
    /// `document`. Also returns what a file left from before holds when the
    /// log is shared: the caller merges it in ([`Registry::update`]) and
    /// then calls [`Registry::remove_file`].
    pub fn open(
        dir: &Path,
        file: &str,
        document: &'static str,
        format: Format<T>,
        shared: Option<Arc<dyn aiaudit_store::Storage>>,
    ) -> anyhow::Result<(Registry<T>, Option<T>)> {
        let path = dir.join(file);
        let local = match std::fs::read(&path) {
            Ok(bytes) => Some((format.parse)(&bytes, &path.display().to_string())?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        };
        let registry = Registry {
            path,
            document,
            format,
            shared,
            value: RwLock::new(T::default()),
            version: AtomicU64::new(0),
            last_miss: Mutex::new(None),
        };
        if registry.shared.is_none() {
            *registry.value.write().expect("registry lock") = local.unwrap_or_default();
            return Ok((registry, None));
        }
        registry.refresh()?;
        Ok((registry, local))
    }

    /// Whether other nodes share this registry.
    pub fn shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Reads the value as this node last saw it.
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.value.read().expect("registry lock"))
    }

    /// Reads the value fresh from the database first on a shared log (for
    /// decisions that must not act on a stale copy, like expiry under a
    /// legal hold).
    pub fn read_fresh<R>(&self, f: impl FnOnce(&T) -> R) -> anyhow::Result<R> {
        self.refresh()?;
        Ok(self.read(f))
    }

    /// Changes the value with `change` and saves it durably before anyone
    /// uses it; on a shared log, again from a fresh read when another node
    /// changed it first. Nothing changes when `change` fails.
    pub fn update<R, E: From<anyhow::Error>>(
        &self,
        change: impl Fn(&mut T) -> Result<R, E>,
    ) -> Result<R, E> {
        let Some(store) = &self.shared else {
            let mut value = self.value.write().expect("registry lock");
            let mut next = value.clone();
            let out = change(&mut next)?;
            write_private(&self.path, &(self.format.encode)(&next)?)?;
            *value = next;
            return Ok(out);
        };
        for _ in 0..MAX_RACES {
            let (mut next, version) = self.load(&**store)?;
            let out = change(&mut next)?;
            let bytes = (self.format.encode)(&next)?;
            let saved = store
                .save_document(self.document, &bytes, version)
                .map_err(anyhow::Error::from)?;
            if saved {
                *self.value.write().expect("registry lock") = next;
                self.version.store(version + 1, Ordering::SeqCst);
                return Ok(out);
            }
        }
        Err(anyhow::anyhow!(
            "other nodes kept changing the {} registry; retry",
            self.document
        )
        .into())
    }

    fn load(&self, store: &dyn aiaudit_store::Storage) -> anyhow::Result<(T, u64)> {
        match store.load_document(self.document)? {
            Some((bytes, _)) if bytes.is_empty() => Ok((T::default(), 0)),
            Some((bytes, version)) => Ok((
                (self.format.parse)(&bytes, &format!("the shared {} registry", self.document))?,
                version,
            )),
            None => anyhow::bail!("the storage backend keeps no shared documents"),
        }
    }

    /// Takes in other nodes' changes (a no-op for a file).
    pub fn refresh(&self) -> anyhow::Result<()> {
        let Some(store) = &self.shared else {
            return Ok(());
        };
        let (value, version) = self.load(&**store)?;
        if version != self.version.load(Ordering::SeqCst) || version == 0 {
            *self.value.write().expect("registry lock") = value;
            self.version.store(version, Ordering::SeqCst);
        }
        Ok(())
    }

    /// [`Registry::refresh`] when something was not found here, at most
    /// every [`MISS_REFRESH`]; false when it did not re-read.
    pub fn refresh_on_miss(&self) -> bool {
        if self.shared.is_none() {
            return false;
        }
        {
            let mut last = self.last_miss.lock().expect("registry lock");
            if last.is_some_and(|t| t.elapsed() < MISS_REFRESH) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match self.refresh() {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, registry = self.document, "re-reading a shared registry");
                false
            }
        }
    }

    /// Removes the file a shared registry was merged from.
    pub fn remove_file(&self) -> anyhow::Result<()> {
        std::fs::remove_file(&self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        tracing::info!(registry = self.document, file = %self.path.display(), "moved into the shared database");
        Ok(())
    }
}

/// Writes `bytes` to `path` (mode 0600) through a temporary file, fsync'd,
/// then renamed over it and the directory fsync'd.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Takes in the other nodes' changes to every shared registry every
/// [`REFRESH`].
pub fn spawn_refresh(ledger: Arc<crate::Ledger>) {
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            tokio::time::sleep(REFRESH).await;
            let l = ledger.clone();
            let r = tokio::task::spawn_blocking(move || {
                l.tokens.refresh()?;
                l.emitters.refresh()?;
                l.holds.refresh()
            })
            .await;
            match r {
                Ok(Ok(())) => failing = false,
                Ok(Err(e)) if !failing => {
                    tracing::warn!(error = %e, "re-reading the shared registries");
                    failing = true;
                }
                _ => {}
            }
        }
    });
}
