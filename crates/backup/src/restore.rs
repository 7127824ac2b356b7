//! Restoring a backup chain into a new data directory: entries appended in
//! order through the store (which fsyncs them), each blob committed durably
//! before the first entry that lists it, the root checked against the
//! signed checkpoint, then the whole directory audited as `aiaudit verify
//! --data-dir` would, blobs included. Nothing is left behind when any step
//! fails.

use aiaudit_store::{FsStore, LogReader, NewEntry, Storage};
use aiaudit_tlog::{
    audit_log, decode_entry_bundle, Hash, Signer, Tile, TileKind, TileReader, Verifier,
    TILE_HEIGHT, TILE_WIDTH,
};
use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::verify::{open_chain, walk, Sink};
use crate::{Location, Progress};

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub chain: Vec<String>,
    pub origin: String,
    pub size: u64,
    pub root: String,
    pub vkey: String,
    pub key_pinned: bool,
    pub keyring_written: bool,
    pub signing_key_written: bool,
    /// Blobs written into the data directory (each once) and their bytes.
    pub blobs: usize,
    pub blob_bytes: u64,
    /// Some restored entry's opening is compressed with the openings
    /// dictionary: builds without it cannot open the log, so whoever serves
    /// it must record the entry-format gate that says so (backups do not
    /// carry the gate file).
    pub openings_dictionary: bool,
}

/// Restores backup `id` (default: the latest) with its ancestors from
/// `location` into `data_dir`, which must be empty or absent. `signing_key`
/// is the text of the log's `log.key`, if the caller has it: it is checked
/// against the verifier key and written with mode 0600.
pub async fn restore(
    location: &Location,
    id: Option<&str>,
    data_dir: &Path,
    vkey: Option<&Verifier>,
    signing_key: Option<&str>,
    progress: &dyn Progress,
) -> anyhow::Result<RestoreReport> {
    ensure_empty(data_dir)?;
    let chain = open_chain(location, id, vkey).await?;
    let signer = signing_key
        .map(|k| check_signing_key(k, &chain.verifier))
        .transpose()?;
    let result = restore_into(location, &chain, data_dir, signer.as_ref(), progress).await;
    if result.is_err() {
        // Never leave a half-restored log a server could start on.
        clear_dir(data_dir);
    }
    result
}

async fn restore_into(
    location: &Location,
    chain: &crate::verify::Chain,
    data_dir: &Path,
    signer: Option<&Signer>,
    progress: &dyn Progress,
) -> anyhow::Result<RestoreReport> {
    fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let (store, _) = FsStore::open(data_dir)
        .with_context(|| format!("creating a log in {}", data_dir.display()))?;
    let mut into = NewLog {
        store: &store,
        blobs: 0,
        blob_bytes: 0,
        openings_dictionary: false,
    };
    let verified = walk(location, chain, progress, &mut into).await?;
    let (blobs, blob_bytes) = (into.blobs, into.blob_bytes);
    let openings_dictionary = into.openings_dictionary;
    let (size, root) = store.sync().context("writing the tree")?;
    if size != verified.size || B64.encode(root) != verified.root {
        bail!(
            "the restored log has root {} at size {size}, the checkpoint says {} at size {}",
            B64.encode(root),
            verified.root,
            verified.size
        );
    }
    store
        .save_checkpoint(&verified.checkpoint)
        .context("saving the checkpoint")?;
    drop(store);

    write_file(
        data_dir,
        "log.vkey",
        format!("{}\n", verified.vkey).as_bytes(),
        0o644,
    )?;
    if let Some(id) = &verified.keyring {
        copy_keyring(location, chain, id, data_dir).await?;
    }
    if let Some(s) = signer {
        write_file(
            data_dir,
            "log.key",
            format!("{}\n", s.to_skey()).as_bytes(),
            0o600,
        )?;
    }
    audit_dir(data_dir, &verified, progress)?;
    Ok(RestoreReport {
        chain: verified.chain,
        origin: verified.origin,
        size: verified.size,
        root: verified.root,
        vkey: verified.vkey,
        key_pinned: verified.key_pinned,
        keyring_written: verified.keyring.is_some(),
        signing_key_written: signer.is_some(),
        blobs,
        blob_bytes,
        openings_dictionary,
    })
}

/// Copies the keyring of backup `id` into the data directory a piece at a
/// time (mode 0600, fsync'd, renamed into place only once its length and
/// SHA-256 match the manifest again: it is read anew, not trusted from the
/// walk).
async fn copy_keyring(
    location: &Location,
    chain: &crate::verify::Chain,
    id: &str,
    data_dir: &Path,
) -> anyhow::Result<()> {
    let m = chain
        .manifests
        .iter()
        .find(|m| m.id == id)
        .context("the keyring's backup left the chain")?;
    let tmp = data_dir.join(".keyring.tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let mut each = |piece: &[u8]| -> anyhow::Result<()> {
        file.write_all(piece)
            .with_context(|| format!("writing {}", tmp.display()))
    };
    crate::verify::stream_checked(location, m, crate::layout::KEYRING, &mut each).await?;
    file.sync_all()
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, data_dir.join("keyring"))
        .with_context(|| format!("writing {}", data_dir.join("keyring").display()))?;
    fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", data_dir.display()))
}

/// The new data directory, receiving what the walk checked.
struct NewLog<'a> {
    store: &'a FsStore,
    blobs: usize,
    blob_bytes: u64,
    openings_dictionary: bool,
}

impl Sink for NewLog<'_> {
    /// Commits the blob (durably) before the segment listing it is appended,
    /// as the store requires. A blob an earlier backup of the chain held is
    /// there already.
    fn blob(&mut self, id: &Hash, bytes: &[u8]) -> anyhow::Result<()> {
        if self.store.blob_len(id)?.is_some() {
            return Ok(());
        }
        let mut w = self.store.blob_writer(id)?;
        w.write(bytes)?;
        w.commit()?;
        self.blobs += 1;
        self.blob_bytes += bytes.len() as u64;
        Ok(())
    }

    fn segment(&mut self, from: u64, entries: &[&[u8]], leaves: &[Hash]) -> anyhow::Result<()> {
        self.openings_dictionary |= entries
            .iter()
            .any(|e| aiaudit_event::sealed_v3::uses_openings_dictionary(e));
        append(self.store, from, entries, leaves)
    }
}

/// Appends one verified segment, refusing an entry the store would drop as a repeated id.
fn append(
    store: &FsStore,
    from: u64,
    entries: &[&[u8]],
    leaves: &[aiaudit_tlog::Hash],
) -> anyhow::Result<()> {
    let mut batch = Vec::with_capacity(entries.len());
    for (i, (entry, leaf)) in entries.iter().zip(leaves).enumerate() {
        let index = from + i as u64;
        let key = aiaudit_event::entry_dedup_key(entry)
            .with_context(|| format!("entry {index}: no event id"))?;
        batch.push(NewEntry {
            key,
            entry: entry.to_vec(),
            leaf: *leaf,
        });
    }
    let appended = store.append(&batch).context("appending to the new log")?;
    if let Some((i, a)) = appended.iter().enumerate().find(|(_, a)| a.duplicate) {
        bail!(
            "entry {} repeats the event id {:?} of entry {}",
            from + i as u64,
            batch[i].key,
            a.index
        );
    }
    Ok(())
}

/// The same full audit as `aiaudit verify --data-dir`: every entry, tile and
/// the root, and every blob an entry lists (present, its stored bytes
/// hashing to what the entry logs).
pub(crate) fn audit_dir(
    dir: &Path,
    verified: &crate::Verified,
    progress: &dyn Progress,
) -> anyhow::Result<()> {
    let root: aiaudit_tlog::Hash = B64
        .decode(&verified.root)
        .ok()
        .and_then(|r| r.try_into().ok())
        .context("the checkpoint root is not 32 bytes of base64")?;
    let mut tiles = DirTiles {
        log: LogReader::open(dir).with_context(|| format!("reading {}", dir.display()))?,
        blobs_checked_to: 0,
        blob_problem: None,
    };
    progress.begin("auditing the restored log", verified.size);
    let mut shown = 0;
    let report = audit_log(verified.size, &root, &mut tiles, None, |done| {
        progress.advance(done.saturating_sub(shown));
        shown = shown.max(done);
    });
    progress.end();
    if let Some(p) = report.problems.first() {
        bail!(
            "the restored log in {} fails its audit at index {}: {}",
            dir.display(),
            p.index,
            p.what
        );
    }
    if let Some((index, what)) = tiles.blob_problem {
        bail!(
            "the restored log in {} fails its audit at index {index}: {what}",
            dir.display()
        );
    }
    Ok(())
}

/// A data directory's tiles, checking on the way the blobs each entry lists.
struct DirTiles {
    log: LogReader,
    /// Entries below this index had their blobs checked (the audit reads
    /// bundles in order, and again only around problems).
    blobs_checked_to: u64,
    /// The first blob that is missing or not the bytes its entry logs.
    blob_problem: Option<(u64, String)>,
}

impl DirTiles {
    fn check_blobs(&mut self, start: u64, bundle: &[u8]) {
        let Ok(entries) = decode_entry_bundle(bundle) else {
            return; // The audit reports the bundle.
        };
        for (i, entry) in entries.iter().enumerate() {
            let index = start + i as u64;
            if index < self.blobs_checked_to || self.blob_problem.is_some() {
                continue;
            }
            for r in aiaudit_event::sealed_v3::blob_refs(entry) {
                if let Err(what) = self.check_blob(&r) {
                    self.blob_problem = Some((index, what));
                    return;
                }
            }
            self.blobs_checked_to = index + 1;
        }
    }

    fn check_blob(&self, r: &aiaudit_event::sealed_v3::BlobRef) -> Result<(), String> {
        let name = aiaudit_store::blob_name(&r.commitment);
        let fail = |e: &dyn std::fmt::Display| format!("blob {name}: {e}");
        let len = match self.log.blob_len(&r.commitment) {
            Ok(Some(n)) => n,
            Ok(None) => return Err(format!("blob {name} (at {}) is missing", r.pointer)),
            Err(e) => return Err(fail(&e)),
        };
        let read = |offset: u64, n: usize| -> Result<Vec<u8>, String> {
            self.log
                .read_blob(&r.commitment, offset, n)
                .map_err(|e| e.to_string())
        };
        match aiaudit_event::blob::stored_hash(&read, len) {
            Ok(h) if h == r.stored => Ok(()),
            Ok(_) => Err(format!(
                "blob {name} (at {}) is not the bytes its entry logs",
                r.pointer
            )),
            Err(e) => Err(fail(&e)),
        }
    }
}

impl TileReader for DirTiles {
    fn read_tile(&mut self, tile: &Tile) -> aiaudit_tlog::Result<Vec<u8>> {
        let start = tile.index * TILE_WIDTH;
        let count = u64::from(tile.width);
        let r = match tile.kind {
            TileKind::Entries => self
                .log
                .read_entry_bundle(start, count)
                .inspect(|bundle| self.check_blobs(start, bundle)),
            TileKind::Hash { level } => {
                self.log
                    .read_hashes(u32::from(level) * TILE_HEIGHT, start, count)
            }
        };
        r.map_err(|e| aiaudit_tlog::Error::Read(Box::new(e)))
    }
}

fn check_signing_key(text: &str, verifier: &Verifier) -> anyhow::Result<Signer> {
    let signer = Signer::parse(text.trim()).context("--signing-key holds no signing key")?;
    let v = signer.verifier();
    if v.name() != verifier.name() || v.public_key() != verifier.public_key() {
        bail!(
            "the signing key is for {} ({:08x}), the backup's checkpoints are signed by {} ({:08x})",
            v.name(),
            v.key_id(),
            verifier.name(),
            verifier.key_id()
        );
    }
    Ok(signer)
}

fn ensure_empty(dir: &Path) -> anyhow::Result<()> {
    match fs::read_dir(dir) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                bail!(
                    "{} is not empty: restore only into a new or empty directory",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

/// Removes what a failed restore wrote (the directory was empty before).
fn clear_dir(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            let _ = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
        }
    }
}

/// A new file, fsync'd, then its directory.
fn write_file(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let path = dir.join(name);
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("writing {}", path.display()))
}
