//! Restoring a backup chain into a new data directory: entries appended in
//! order through the store (which fsyncs them), the root checked against
//! the signed checkpoint, then the whole directory audited as `aiaudit
//! verify --data-dir` would. Nothing is left behind when any step fails.

use aiaudit_store::{FsStore, LogReader, NewEntry, Storage};
use aiaudit_tlog::{
    audit_log, Signer, Tile, TileKind, TileReader, Verifier, TILE_HEIGHT, TILE_WIDTH,
};
use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::verify::{open_chain, walk};
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
    let verified = walk(location, chain, progress, &mut |from, entries, leaves| {
        append(&store, from, entries, leaves)
    })
    .await?;
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
    if let Some(k) = &verified.keyring {
        write_file(data_dir, "keyring", k, 0o600)?;
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
    })
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

/// The same full audit as `aiaudit verify --data-dir`: every entry, tile and the root.
fn audit_dir(
    dir: &Path,
    verified: &crate::Verified,
    progress: &dyn Progress,
) -> anyhow::Result<()> {
    let root: aiaudit_tlog::Hash = B64
        .decode(&verified.root)
        .ok()
        .and_then(|r| r.try_into().ok())
        .context("the checkpoint root is not 32 bytes of base64")?;
    let mut tiles =
        DirTiles(LogReader::open(dir).with_context(|| format!("reading {}", dir.display()))?);
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
    Ok(())
}

struct DirTiles(LogReader);

impl TileReader for DirTiles {
    fn read_tile(&mut self, tile: &Tile) -> aiaudit_tlog::Result<Vec<u8>> {
        let start = tile.index * TILE_WIDTH;
        let count = u64::from(tile.width);
        let r = match tile.kind {
            TileKind::Entries => self.0.read_entry_bundle(start, count),
            TileKind::Hash { level } => {
                self.0
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
