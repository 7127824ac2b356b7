//! Taking a backup: one signed checkpoint, the entries up to its size and
//! the blobs they list, into one or more locations. Each location continues
//! its own latest backup when incremental, and fails on its own without
//! stopping the others.

use aiaudit_event::sealed_v3::{blob_refs, BlobRef};
use aiaudit_tlog::{decode_entry_bundle, open_note, Checkpoint, Hash, Verifier, TILE_WIDTH};
use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use std::collections::{HashSet, VecDeque};
use time::OffsetDateTime;

use crate::layout::{self, FileEntry, Kind, Manifest};
use crate::{Location, LogSource, Progress};

/// Tiles fetched concurrently from the source.
const IN_FLIGHT: usize = 4;

/// A backup that was written (its manifest included).
#[derive(Debug, Clone)]
pub struct BackupSummary {
    pub location: String,
    pub id: String,
    pub kind: Kind,
    pub parent: Option<String>,
    pub from: u64,
    pub size: u64,
    pub files: usize,
    /// Bytes of every file but the manifest, blobs included.
    pub bytes: u64,
    /// Blob files written (a backup holding any is format 2).
    pub blobs: usize,
    pub blob_bytes: u64,
}

/// Takes a backup of `source` into every location. `vkey` pins the key the
/// checkpoint must be signed with (default: the source's own).
///
/// Returns one result per location, in order; the outer error is for
/// failures that concern all of them (the checkpoint could not be read or
/// verified, the log could not be read). Written backups are not re-read
/// here: call [`crate::verify`] on each location for that.
pub async fn create<S: LogSource>(
    source: &S,
    locations: &[Location],
    incremental: bool,
    vkey: Option<&Verifier>,
    progress: &dyn Progress,
) -> anyhow::Result<Vec<anyhow::Result<BackupSummary>>> {
    let note = source
        .checkpoint()
        .await
        .context("reading the checkpoint")?;
    let vkey_text = match vkey {
        Some(v) => v.to_vkey(),
        None => source
            .verifier_key()
            .await?
            .context("the source announces no verifier key: pass one")?,
    };
    let verifier = Verifier::parse(vkey_text.trim()).context("the log's verifier key")?;
    let body = open_note(&note, &verifier).context("the log's checkpoint signature")?;
    let checkpoint = Checkpoint::parse_body(body).context("the log's checkpoint")?;
    // Taken after the checkpoint: every key its entries were sealed under is in it.
    let keyring_len = source.keyring_len().await.context("reading the keyring")?;
    let kind = if incremental {
        Kind::Incremental
    } else {
        Kind::Full
    };
    let id = layout::backup_id(OffsetDateTime::now_utc(), kind);

    let mut writers = Vec::new();
    for loc in locations {
        let w = Writer::start(loc, &id, kind, &checkpoint, &note, &vkey_text)
            .await
            .with_context(|| format!("{loc}"));
        writers.push(w);
    }
    if let Some(len) = keyring_len {
        copy_keyring(source, len, &mut writers).await?;
    }
    let from = writers
        .iter()
        .filter_map(|w| w.as_ref().ok())
        .map(|w| w.manifest.from)
        .min();
    if let Some(from) = from {
        copy_entries(source, from, checkpoint.size, &mut writers, progress).await?;
    }
    let mut out = Vec::new();
    for w in writers {
        out.push(match w {
            Ok(w) => w.finish().await,
            Err(e) => Err(e),
        });
    }
    Ok(out)
}

/// Bytes of the keyring asked of the source at a time.
const KEYRING_PIECE: u64 = 4 << 20;

/// Copies the first `len` bytes of the source's keyring into every writer,
/// a piece at a time (a keyring of ten million subjects is 2.5 GB). A
/// location that fails is dropped from the backup; a source that fails
/// fails it everywhere.
async fn copy_keyring<S: LogSource>(
    source: &S,
    len: u64,
    writers: &mut [anyhow::Result<Writer>],
) -> anyhow::Result<()> {
    let mut files = Vec::with_capacity(writers.len());
    for slot in writers.iter_mut() {
        let file = match slot {
            Ok(w) => {
                let rel = layout::path(&w.manifest.id, layout::KEYRING);
                match w.location.writer(&rel).await {
                    Ok(f) => Some(f),
                    Err(e) => {
                        let at = w.location.to_string();
                        *slot = Err(e.context(at));
                        None
                    }
                }
            }
            Err(_) => None,
        };
        files.push(file);
    }
    let mut at = 0;
    while at < len && files.iter().any(Option::is_some) {
        let n = KEYRING_PIECE.min(len - at);
        let piece = source.keyring_range(at, n).await.and_then(|p| {
            if p.len() as u64 == n {
                Ok(p)
            } else {
                bail!(
                    "the source gave {} bytes of the keyring from {at}, not {n}",
                    p.len()
                )
            }
        });
        let piece = match piece {
            Ok(p) => p,
            Err(e) => {
                for f in files.into_iter().flatten() {
                    f.abort().await;
                }
                return Err(e.context("reading the keyring"));
            }
        };
        for (slot, file) in writers.iter_mut().zip(files.iter_mut()) {
            let Some(f) = file else { continue };
            if let Err(e) = f.write(piece.clone()).await {
                if let Ok(w) = slot {
                    let at = w.location.to_string();
                    *slot = Err(e.context(at));
                }
                if let Some(f) = file.take() {
                    f.abort().await;
                }
            }
        }
        at += n;
    }
    for (slot, file) in writers.iter_mut().zip(files) {
        let (Ok(w), Some(f)) = (slot.as_mut(), file) else {
            continue;
        };
        match f.finish().await {
            Ok((bytes, sha256)) => w.manifest.files.push(FileEntry {
                name: layout::KEYRING.to_string(),
                bytes,
                sha256,
                from: None,
                count: None,
            }),
            Err(e) => {
                let at = w.location.to_string();
                *slot = Err(e.context(at));
            }
        }
    }
    Ok(())
}

/// Streams tiles `[from, size)` from the source into every writer that
/// wants them, with the blobs their entries list. A blob whose bytes are not
/// the ones its entry logs fails the whole backup: it would not restore.
async fn copy_entries<S: LogSource>(
    source: &S,
    from: u64,
    size: u64,
    writers: &mut [anyhow::Result<Writer>],
    progress: &dyn Progress,
) -> anyhow::Result<()> {
    progress.begin("backing up", size - from);
    let first_tile = from / TILE_WIDTH;
    let tiles = size.div_ceil(TILE_WIDTH);
    let mut bundles = futures::stream::iter(first_tile..tiles)
        .map(|index| {
            let width = (size - index * TILE_WIDTH).min(TILE_WIDTH) as u16;
            async move {
                let bytes = source
                    .entry_bundle(index, width)
                    .await
                    .with_context(|| format!("reading entry bundle {index} (width {width})"))?;
                anyhow::Ok((index, width, bytes))
            }
        })
        .buffered(IN_FLIGHT);
    while let Some((index, width, bytes)) = bundles.try_next().await? {
        let entries = decode_entry_bundle(&bytes)
            .with_context(|| format!("entry bundle {index} from the log"))?;
        if entries.len() != usize::from(width) {
            bail!(
                "entry bundle {index} from the log holds {} entries, not {width}",
                entries.len()
            );
        }
        let start = index * TILE_WIDTH;
        for (i, entry) in entries.iter().enumerate() {
            let index = start + i as u64;
            for r in blob_refs(entry) {
                copy_blob(source, index, &r, writers).await?;
            }
        }
        for slot in writers.iter_mut() {
            let Ok(w) = slot else { continue };
            if let Err(e) = w.add(start, &entries).await {
                *slot = Err(e.context(format!("{}", w.location)));
            }
        }
        progress.advance((start + u64::from(width)).min(size) - start.max(from));
    }
    progress.end();
    Ok(())
}

/// Fetches blob `r` of entry `index` once, checks it against the SHA-256 the
/// entry logs, and writes it into every backup that holds the entry and
/// does not hold the blob yet. One blob is in memory at a time.
async fn copy_blob<S: LogSource>(
    source: &S,
    index: u64,
    r: &BlobRef,
    writers: &mut [anyhow::Result<Writer>],
) -> anyhow::Result<()> {
    let wants = |w: &Writer| w.holds(index) && !w.blobs.contains(&r.commitment);
    let wanted = writers.iter().flatten().filter(|w| wants(w)).count();
    if wanted == 0 {
        return Ok(());
    }
    let name = aiaudit_store::blob_name(&r.commitment);
    let bytes = source
        .blob(&r.commitment)
        .await
        .with_context(|| format!("entry {index}: reading blob {name}"))?;
    let stored = layout::sha256(&bytes);
    if stored != r.stored {
        bail!(
            "entry {index}: blob {name} (at {}) is not the bytes the entry logs (SHA-256 {}, the entry says {}): \
             refusing to back up a corrupt blob",
            r.pointer,
            hex::encode(stored),
            hex::encode(r.stored)
        );
    }
    let (mut left, mut bytes) = (wanted, bytes);
    for slot in writers.iter_mut() {
        let Ok(w) = slot else { continue };
        if !wants(w) {
            continue;
        }
        left -= 1;
        // The last writer takes the bytes, the others a copy.
        let b = if left == 0 {
            std::mem::take(&mut bytes)
        } else {
            bytes.clone()
        };
        if let Err(e) = w.put_blob(&r.commitment, b).await {
            *slot = Err(e.context(format!("{}", w.location)));
        }
    }
    Ok(())
}

/// One location's backup in the making.
struct Writer {
    location: Location,
    manifest: Manifest,
    /// Segment ranges still to fill, in order.
    ranges: VecDeque<(u64, u64)>,
    buf: Vec<u8>,
    /// Entries in `buf`.
    buffered: u64,
    /// The blobs written (each once, however many entries list it).
    blobs: HashSet<Hash>,
}

impl Writer {
    /// Picks the range this location needs and writes the small files.
    async fn start(
        location: &Location,
        id: &str,
        kind: Kind,
        checkpoint: &Checkpoint,
        note: &str,
        vkey: &str,
    ) -> anyhow::Result<Writer> {
        let existing = location.manifests().await?;
        if existing.iter().any(|m| m.id == id) {
            bail!("a backup {id} exists already");
        }
        let parent = match kind {
            Kind::Full => None,
            Kind::Incremental => Some(
                layout::latest(&existing)
                    .context("no backup here to continue: take a full backup first")?,
            ),
        };
        let from = match parent {
            None => 0,
            Some(p) if p.origin != checkpoint.origin => {
                bail!("the latest backup {} is of another log ({:?})", p.id, p.origin)
            }
            Some(p) if p.size > checkpoint.size => bail!(
                "the latest backup {} holds {} entries, more than the log's checkpoint ({}): is this the same log?",
                p.id,
                p.size,
                checkpoint.size
            ),
            Some(p) => p.size,
        };
        let mut w = Writer {
            location: location.clone(),
            manifest: Manifest {
                format: layout::FORMAT.into(),
                id: id.into(),
                kind,
                parent: parent.map(|p| p.id.clone()),
                origin: checkpoint.origin.clone(),
                from,
                size: checkpoint.size,
                root: B64.encode(checkpoint.root),
                created: OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                checkpoint: note.to_string(),
                files: Vec::new(),
            },
            ranges: layout::segment_ranges(from, checkpoint.size).into(),
            buf: Vec::new(),
            buffered: 0,
            blobs: HashSet::new(),
        };
        w.put(layout::CHECKPOINT, note.as_bytes().to_vec(), None)
            .await?;
        w.put(
            layout::VKEY,
            format!("{}\n", vkey.trim()).into_bytes(),
            None,
        )
        .await?;
        Ok(w)
    }

    /// Takes the entries of a bundle starting at log index `start`, keeping
    /// those in this backup's range and writing each segment once it is full.
    async fn add(&mut self, start: u64, entries: &[&[u8]]) -> anyhow::Result<()> {
        for (i, entry) in entries.iter().enumerate() {
            let index = start + i as u64;
            let Some(&(seg_from, seg_count)) = self.ranges.front() else {
                return Ok(());
            };
            if index < seg_from + self.buffered {
                continue;
            }
            let len = u16::try_from(entry.len())
                .with_context(|| format!("entry {index} is too long for a bundle"))?;
            self.buf.extend_from_slice(&len.to_be_bytes());
            self.buf.extend_from_slice(entry);
            self.buffered += 1;
            if self.buffered == seg_count {
                let bytes = std::mem::take(&mut self.buf);
                self.put(
                    &layout::segment_name(seg_from),
                    bytes,
                    Some((seg_from, seg_count)),
                )
                .await?;
                self.ranges.pop_front();
                self.buffered = 0;
            }
        }
        Ok(())
    }

    /// Whether log index `index` is in this backup's range.
    fn holds(&self, index: u64) -> bool {
        (self.manifest.from..self.manifest.size).contains(&index)
    }

    /// Writes the stored bytes of blob `id` (already checked) as `blobs/<hex id>`.
    async fn put_blob(&mut self, id: &Hash, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.put(&layout::blob_name(id), bytes, None).await?;
        self.blobs.insert(*id);
        Ok(())
    }

    async fn put(
        &mut self,
        name: &str,
        bytes: Vec<u8>,
        range: Option<(u64, u64)>,
    ) -> anyhow::Result<()> {
        let entry = FileEntry {
            name: name.to_string(),
            bytes: bytes.len() as u64,
            sha256: layout::sha256_hex(&bytes),
            from: range.map(|r| r.0),
            count: range.map(|r| r.1),
        };
        self.location
            .put(&layout::path(&self.manifest.id, name), bytes)
            .await?;
        self.manifest.files.push(entry);
        Ok(())
    }

    /// Writes the manifest, last: only now does the backup exist.
    async fn finish(mut self) -> anyhow::Result<BackupSummary> {
        let at = self.location.to_string();
        if let Some((from, _)) = self.ranges.front() {
            bail!("{at}: the log ended before entry {}", from + self.buffered);
        }
        // Without blobs, format 1: builds from before blobs still restore it.
        if !self.blobs.is_empty() {
            self.manifest.format = layout::FORMAT_2.into();
        }
        let m = &self.manifest;
        let json = m.to_json();
        // Check what we wrote with the same rules a reader applies.
        Manifest::parse(&json).with_context(|| format!("{at}: the new manifest"))?;
        self.location
            .put(&layout::path(&m.id, layout::MANIFEST), json)
            .await
            .with_context(|| format!("{at}: writing the manifest"))?;
        Ok(BackupSummary {
            location: at,
            id: m.id.clone(),
            kind: m.kind,
            parent: m.parent.clone(),
            from: m.from,
            size: m.size,
            files: m.files.len() + 1,
            bytes: m.files.iter().map(|f| f.bytes).sum(),
            blobs: m.blobs().count(),
            blob_bytes: m.blobs().map(|f| f.bytes).sum(),
        })
    }
}
