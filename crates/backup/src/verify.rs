//! Checking a backup chain end to end: every file against its manifest
//! hash, every entry rehashed, the RFC 6962 root at each backup's size
//! against that backup's signed checkpoint, every blob an entry lists
//! present in the entry's backup with the SHA-256 the entry logs for it.
//! Restore walks the same path.

use aiaudit_event::sealed_v3::{blob_refs, BlobRef};
use aiaudit_tlog::{
    decode_entry_bundle, open_note, record_hash, Checkpoint, Hash, TreeBuilder, Verifier,
};
use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::collections::HashMap;

use crate::layout::{self, FileEntry, Manifest, CHECKPOINT, VKEY};
use crate::{Location, Progress};

/// A chain that verified.
#[derive(Debug, Clone)]
pub struct Verified {
    pub location: String,
    /// The backups restored in order: the full one, then its incrementals.
    pub chain: Vec<String>,
    pub origin: String,
    pub size: u64,
    pub root: String,
    /// The signed checkpoint of the last backup of the chain.
    pub checkpoint: String,
    /// The verifier key the checkpoints were checked with.
    pub vkey: String,
    /// False when the key came from the backup itself (which proves nothing
    /// against whoever could rewrite the backup).
    pub key_pinned: bool,
    /// Files checked (the manifests aside) and their bytes, blobs included.
    pub files: usize,
    pub bytes: u64,
    /// Blob files checked against the entries that list them.
    pub blobs: usize,
    pub blob_bytes: u64,
    /// The backup (the last of the chain) whose encryption keyring, checked
    /// against its manifest, restores, if it holds one. Not read into
    /// memory: it may be gigabytes.
    pub keyring: Option<String>,
}

/// Receives what a walk checked, in log order: the blobs a segment's
/// entries list, then the segment itself.
pub(crate) trait Sink {
    /// The stored bytes of blob `id`, checked against the SHA-256 the entry
    /// listing it logs. Once per backup and blob.
    fn blob(&mut self, _id: &Hash, _bytes: &[u8]) -> anyhow::Result<()> {
        Ok(())
    }
    /// A segment: its first log index, entries and their leaf hashes.
    fn segment(&mut self, _from: u64, _entries: &[&[u8]], _leaves: &[Hash]) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Verification keeps nothing.
impl Sink for () {}

/// A chain chosen for verification or restore, with the key to check it.
pub(crate) struct Chain {
    pub manifests: Vec<Manifest>,
    pub verifier: Verifier,
    pub key_pinned: bool,
}

/// Verifies backup `id` (default: the latest) and its ancestors in `location`.
/// `vkey` None uses the verifier key stored in the backup.
pub async fn verify(
    location: &Location,
    id: Option<&str>,
    vkey: Option<&Verifier>,
    progress: &dyn Progress,
) -> anyhow::Result<Verified> {
    let chain = open_chain(location, id, vkey).await?;
    walk(location, &chain, progress, &mut ()).await
}

/// Finds the chain ending at `id` and the verifier key to check it with.
pub(crate) async fn open_chain(
    location: &Location,
    id: Option<&str>,
    vkey: Option<&Verifier>,
) -> anyhow::Result<Chain> {
    let all = location.manifests().await?;
    let manifests: Vec<Manifest> = layout::chain(&all, id)
        .with_context(|| format!("{location}"))?
        .into_iter()
        .cloned()
        .collect();
    let last = manifests.last().expect("a chain is never empty");
    let (verifier, key_pinned) = match vkey {
        Some(v) => (v.clone(), true),
        None => {
            let bytes = read_checked(location, last, VKEY).await?;
            let text = String::from_utf8_lossy(&bytes);
            let v = Verifier::parse(text.trim())
                .with_context(|| format!("{location}/{}/{VKEY}: not a verifier key", last.id))?;
            (v, false)
        }
    };
    Ok(Chain {
        manifests,
        verifier,
        key_pinned,
    })
}

/// Rehashes and checks the whole chain, handing each segment's blobs and
/// then its entries (with their leaf hashes) to `sink` once they checked out.
pub(crate) async fn walk(
    location: &Location,
    chain: &Chain,
    progress: &dyn Progress,
    sink: &mut dyn Sink,
) -> anyhow::Result<Verified> {
    let last = chain.manifests.last().expect("a chain is never empty");
    progress.begin("verifying", last.size);
    let mut tree = TreeBuilder::new();
    let (mut files, mut bytes) = (0usize, 0u64);
    let (mut blob_files, mut blob_bytes) = (0usize, 0u64);
    let mut keyring = None;
    for m in &chain.manifests {
        let checkpoint = check_checkpoint(location, m, &chain.verifier).await?;
        // The blobs of this backup checked so far: id -> their stored SHA-256.
        let mut blobs: HashMap<Hash, Hash> = HashMap::new();
        for f in m.small_files() {
            if f.name == layout::KEYRING {
                stream_checked(location, m, &f.name, &mut |_| Ok(())).await?;
                // It grows with new keys: the newest backup's is the one to restore.
                if m.id == last.id {
                    keyring = Some(m.id.clone());
                }
            } else {
                read_checked(location, m, &f.name).await?;
            }
            files += 1;
            bytes += f.bytes;
        }
        for seg in m.segments() {
            let data = read_checked(location, m, &seg.name).await?;
            let at = || format!("{location}/{}/{}", m.id, seg.name);
            let entries = decode_entry_bundle(&data).with_context(at)?;
            let (from, count) = (seg.from.unwrap_or(0), seg.count.unwrap_or(0));
            if entries.len() as u64 != count {
                bail!(
                    "{}: holds {} entries, the manifest says {count}",
                    at(),
                    entries.len()
                );
            }
            let leaves: Vec<Hash> = entries.iter().map(|e| record_hash(e)).collect();
            for leaf in &leaves {
                tree.push(*leaf, |_, _, _| {});
            }
            for (i, entry) in entries.iter().enumerate() {
                for r in blob_refs(entry) {
                    let index = from + i as u64;
                    check_blob(location, m, index, &r, &mut blobs, sink).await?;
                }
            }
            sink.segment(from, &entries, &leaves).with_context(at)?;
            progress.advance(count);
            files += 1;
            bytes += seg.bytes;
        }
        for f in m.blobs() {
            let listed = layout::parse_blob_name(&f.name).is_some_and(|id| blobs.contains_key(&id));
            if !listed {
                bail!(
                    "{location}/{}/{}: no entry of this backup lists this blob: it is not what was backed up",
                    m.id,
                    f.name
                );
            }
            files += 1;
            bytes += f.bytes;
            blob_files += 1;
            blob_bytes += f.bytes;
        }
        if tree.size() != checkpoint.size || tree.root() != checkpoint.root {
            bail!(
                "{location}/{}: the entries give root {} at size {}, but the signed checkpoint says {} at size {}",
                m.id,
                B64.encode(tree.root()),
                tree.size(),
                B64.encode(checkpoint.root),
                checkpoint.size
            );
        }
    }
    progress.end();
    Ok(Verified {
        location: location.to_string(),
        chain: chain.manifests.iter().map(|m| m.id.clone()).collect(),
        origin: last.origin.clone(),
        size: last.size,
        root: last.root.clone(),
        checkpoint: last.checkpoint.clone(),
        vkey: chain.verifier.to_vkey(),
        key_pinned: chain.key_pinned,
        files,
        bytes,
        blobs: blob_files,
        blob_bytes,
        keyring,
    })
}

/// Blob `r` of entry `index` in backup `m`: listed, intact, and the bytes
/// the entry logs (its SHA-256 is `r.stored`). Read once per backup; a
/// later entry listing the same id must log the same SHA-256.
async fn check_blob(
    location: &Location,
    m: &Manifest,
    index: u64,
    r: &BlobRef,
    checked: &mut HashMap<Hash, Hash>,
    sink: &mut dyn Sink,
) -> anyhow::Result<()> {
    let name = layout::blob_name(&r.commitment);
    let at = || format!("{location}/{}/{name}", m.id);
    let stored = match checked.get(&r.commitment) {
        Some(stored) => *stored,
        None => {
            let bytes = read_checked(location, m, &name).await.with_context(|| {
                format!(
                    "entry {index} lists blob {} (at {})",
                    aiaudit_store::blob_name(&r.commitment),
                    r.pointer
                )
            })?;
            let stored = layout::sha256(&bytes);
            if stored == r.stored {
                sink.blob(&r.commitment, &bytes).with_context(at)?;
                checked.insert(r.commitment, stored);
            }
            stored
        }
    };
    if stored != r.stored {
        bail!(
            "{}: not the bytes entry {index} logs for blob {} (SHA-256 {}, the entry says {})",
            at(),
            aiaudit_store::blob_name(&r.commitment),
            hex::encode(stored),
            hex::encode(r.stored)
        );
    }
    Ok(())
}

/// The backup's checkpoint file: listed, intact, equal to the manifest's,
/// signed by the key, and saying what the manifest says.
async fn check_checkpoint(
    location: &Location,
    m: &Manifest,
    verifier: &Verifier,
) -> anyhow::Result<Checkpoint> {
    let at = format!("{location}/{}/{CHECKPOINT}", m.id);
    let bytes = read_checked(location, m, CHECKPOINT).await?;
    if bytes != m.checkpoint.as_bytes() {
        bail!("{at}: differs from the checkpoint in the manifest");
    }
    let body = open_note(&m.checkpoint, verifier)
        .with_context(|| format!("{at}: signature by {}", verifier.name()))?;
    let cp = Checkpoint::parse_body(body).with_context(|| at.clone())?;
    if cp.origin != verifier.name() {
        bail!(
            "{at}: the checkpoint's origin {:?} differs from the key name {:?}",
            cp.origin,
            verifier.name()
        );
    }
    if cp.origin != m.origin || cp.size != m.size || B64.encode(cp.root) != m.root {
        bail!(
            "{at}: the checkpoint ({}, size {}) does not match the manifest ({}, size {})",
            cp.origin,
            cp.size,
            m.origin,
            m.size
        );
    }
    Ok(cp)
}

/// Reads file `name` of backup `m` a piece at a time, handing each piece to
/// `each`, and checks its length and SHA-256 against the manifest at the
/// end: whatever `each` did with the pieces counts only if this returns Ok.
pub(crate) async fn stream_checked(
    location: &Location,
    m: &Manifest,
    name: &str,
    each: &mut (dyn FnMut(&[u8]) -> anyhow::Result<()> + Send),
) -> anyhow::Result<()> {
    let at = format!("{location}/{}/{name}", m.id);
    let entry: &FileEntry = m
        .file(name)
        .with_context(|| format!("{at}: not listed in the manifest"))?;
    let mut reader = location
        .reader(&layout::path(&m.id, name))
        .await?
        .with_context(|| format!("{at}: missing"))?;
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut len = 0u64;
    while let Some(piece) = reader.next().await? {
        len += piece.len() as u64;
        if len > entry.bytes {
            bail!(
                "{at}: more than the {} bytes the manifest says",
                entry.bytes
            );
        }
        hash.update(&piece);
        each(&piece)?;
    }
    if len != entry.bytes {
        bail!("{at}: {len} bytes, the manifest says {}", entry.bytes);
    }
    let sha = hex::encode(hash.finish());
    if sha != entry.sha256 {
        bail!(
            "{at}: SHA-256 {sha} differs from the manifest's {}",
            entry.sha256
        );
    }
    Ok(())
}

/// A file of backup `m`, checked against the manifest's length and SHA-256.
async fn read_checked(location: &Location, m: &Manifest, name: &str) -> anyhow::Result<Vec<u8>> {
    let at = format!("{location}/{}/{name}", m.id);
    let entry: &FileEntry = m
        .file(name)
        .with_context(|| format!("{at}: not listed in the manifest"))?;
    let bytes = location
        .get(&layout::path(&m.id, name))
        .await?
        .with_context(|| format!("{at}: missing"))?;
    if bytes.len() as u64 != entry.bytes {
        bail!(
            "{at}: {} bytes, the manifest says {}",
            bytes.len(),
            entry.bytes
        );
    }
    let sha = layout::sha256_hex(&bytes);
    if sha != entry.sha256 {
        bail!(
            "{at}: SHA-256 {sha} differs from the manifest's {}",
            entry.sha256
        );
    }
    Ok(bytes)
}
