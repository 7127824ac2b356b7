//! Writing a bundle: the events and their blobs go through two spools as
//! they come (a member's length must be in its tar header before its data,
//! and whether the bundle has blobs.bin, and so which format it is, is
//! known only at the end); [`BundleWriter::finish`] writes every member.

use crate::{
    pending_cost, readme, sha256, sig_body, BlobLine, Digest, EventLine, FileDigest, Manifest,
    BLOBS, CHECKPOINT, EVENTS, FORMAT, FORMAT_2, MANIFEST, MANIFEST_SIG, MAX_BLOBS,
    MAX_EVENT_BLOBS, MAX_EVENT_LINE, MAX_PENDING, README, VKEY,
};
use aiaudit_event::envelope::{decode_stored, index_matches, Opened};
use aiaudit_event::sealed_v3::BlobRef;
use aiaudit_tlog::{
    check_record, open_note, record_hash, sign_note, Checkpoint, Hash, Signer, MAX_ENTRY_SIZE,
};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use flate2::{write::GzEncoder, Compression};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// One event to export: the entry at `index`, its inclusion proof against
/// the bundle's checkpoint and, for a sealed (v2, v3) entry whose content is
/// exported, its opening (`Sealed::open(..).opening`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEvent {
    pub index: u64,
    pub entry: Vec<u8>,
    pub inclusion_proof: Vec<Hash>,
    pub opening: Option<Vec<u8>>,
    /// The content (the member's canonical JSON) of each blob the entry
    /// lists, in the entry's order: all of them when there is an opening,
    /// none without one.
    pub blobs: Vec<Vec<u8>>,
}

/// Why a bundle could not be written. The writer refuses input that would
/// make a bundle that does not verify, so an exporter never hands one out.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Writing the output or the spool failed.
    #[error("writing the bundle: {0}")]
    Io(#[from] io::Error),
    /// The checkpoint or an event is not what the bundle needs.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> BuildError {
    BuildError::Invalid(msg.into())
}

/// Writes a bundle event by event. `spool` holds events.ndjson and
/// `blob_spool` blobs.bin until [`BundleWriter::finish`] (temporary files
/// for large exports, `Cursor<Vec<u8>>` for small ones); each is written
/// from its current position. Nothing reaches `out` before `finish`.
pub struct BundleWriter<W: Write, S: Read + Write + Seek> {
    tar: tar::Builder<GzEncoder<W>>,
    spool: S,
    spool_start: u64,
    blob_spool: S,
    blob_spool_start: u64,
    signer: Signer,
    checkpoint: Checkpoint,
    checkpoint_note: String,
    filters: Value,
    created: String,
    mtime: u64,
    files: BTreeMap<String, FileDigest>,
    events: Digest,
    blobs: Digest,
    /// Whether some line has blobs: then the bundle is format 2.
    with_blobs: bool,
    /// What the verifier will hold until blobs.bin, and the most it may
    /// ([`MAX_PENDING`]; lower in tests).
    pub(crate) pending: u64,
    pub(crate) max_pending: u64,
    indexes: Vec<u64>,
}

/// Seconds since 1970 of an RFC 3339 time, 0 if it is not one: the tar
/// members' modification time.
fn mtime_of(created: &str) -> u64 {
    time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp().max(0) as u64)
        .unwrap_or(0)
}

impl<W: Write, S: Read + Write + Seek> BundleWriter<W, S> {
    /// Starts a bundle of the log signed by `signer` (the log's own key),
    /// whose events are proven against `checkpoint_note` (a checkpoint that
    /// key signed). `filters` is the query as given; `created` the time of
    /// export (RFC 3339). `blob_spool` stays untouched unless an event has
    /// blobs.
    pub fn new(
        out: W,
        mut spool: S,
        mut blob_spool: S,
        signer: &Signer,
        checkpoint_note: &str,
        filters: Value,
        created: &str,
    ) -> Result<Self, BuildError> {
        let body = open_note(checkpoint_note, &signer.verifier())
            .map_err(|e| invalid(format!("checkpoint: {e}")))?;
        let checkpoint =
            Checkpoint::parse_body(body).map_err(|e| invalid(format!("checkpoint: {e}")))?;
        if checkpoint.origin != signer.name() {
            return Err(invalid(format!(
                "checkpoint: origin {:?} is not the signer's name {:?}",
                checkpoint.origin,
                signer.name()
            )));
        }
        let spool_start = spool.stream_position()?;
        let blob_spool_start = blob_spool.stream_position()?;
        Ok(BundleWriter {
            tar: tar::Builder::new(GzEncoder::new(out, Compression::default())),
            spool,
            spool_start,
            blob_spool,
            blob_spool_start,
            signer: signer.clone(),
            checkpoint_note: checkpoint_note.to_string(),
            filters,
            created: created.to_string(),
            mtime: mtime_of(created),
            files: BTreeMap::new(),
            events: Digest::new(),
            blobs: Digest::new(),
            with_blobs: false,
            pending: 0,
            max_pending: MAX_PENDING,
            indexes: Vec::new(),
            checkpoint,
        })
    }

    /// Appends one small member and records its digest.
    fn append(&mut self, name: &str, data: &[u8]) -> Result<(), BuildError> {
        let mut d = Digest::new();
        d.update(data);
        self.files.insert(name.to_string(), d.file_digest());
        let mut h = self.header(data.len() as u64);
        self.tar.append_data(&mut h, name, data)?;
        Ok(())
    }

    fn header(&self, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(self.mtime);
        h
    }

    /// Adds one event. Events come in ascending index order; each must
    /// verify against the checkpoint (its opening against its entry, its
    /// blobs against the commitments the entry logs).
    pub fn add(&mut self, event: &BundleEvent) -> Result<(), BuildError> {
        let line = event_line(
            event,
            &self.checkpoint,
            self.indexes.last().copied(),
            self.blobs.len(),
        )?;
        let at = |msg: String| invalid(format!("event at index {}: {msg}", event.index));
        if self.pending + line.pending > self.max_pending {
            return Err(at(format!(
                "with it, the events with blobs would need more than the {} bytes \
                 the verifier holds for them: export fewer events",
                self.max_pending
            )));
        }
        let content: u64 = event.blobs.iter().map(|b| b.len() as u64).sum();
        if self.blobs.len() + content > MAX_BLOBS {
            return Err(at(format!(
                "with its blobs, {BLOBS} would exceed {MAX_BLOBS} bytes: export fewer events"
            )));
        }
        self.spool.write_all(&line.bytes)?;
        self.events.update(&line.bytes);
        for b in &event.blobs {
            self.blob_spool.write_all(b)?;
            self.blobs.update(b);
        }
        self.with_blobs |= !event.blobs.is_empty();
        self.pending += line.pending;
        self.indexes.push(event.index);
        Ok(())
    }

    /// Number of events added so far.
    pub fn len(&self) -> usize {
        self.indexes.len()
    }

    /// Reports whether no event was added.
    pub fn is_empty(&self) -> bool {
        self.indexes.is_empty()
    }

    /// Writes the bundle: format 2 (with blobs.bin) when some event has
    /// blobs, else format 1. Ends the archive and returns the output.
    pub fn finish(mut self) -> Result<W, BuildError> {
        let readme = readme(
            &self.checkpoint.origin,
            self.checkpoint.size,
            self.with_blobs,
        );
        self.append(README, readme.as_bytes())?;
        let vkey = format!("{}\n", self.signer.verifier().to_vkey());
        self.append(VKEY, vkey.as_bytes())?;
        let note = std::mem::take(&mut self.checkpoint_note);
        self.append(CHECKPOINT, note.as_bytes())?;

        let events = std::mem::replace(&mut self.events, Digest::new()).file_digest();
        let h = self.header(events.bytes);
        copy_spool(&mut self.tar, h, EVENTS, &mut self.spool, self.spool_start)?;
        self.files.insert(EVENTS.to_string(), events);
        if self.with_blobs {
            let blobs = std::mem::replace(&mut self.blobs, Digest::new()).file_digest();
            let h = self.header(blobs.bytes);
            let start = self.blob_spool_start;
            copy_spool(&mut self.tar, h, BLOBS, &mut self.blob_spool, start)?;
            self.files.insert(BLOBS.to_string(), blobs);
        }

        let manifest = Manifest {
            format: if self.with_blobs { FORMAT_2 } else { FORMAT }.to_string(),
            origin: self.checkpoint.origin.clone(),
            checkpoint_size: self.checkpoint.size,
            checkpoint_root: B64.encode(self.checkpoint.root),
            created: self.created.clone(),
            filters: self.filters.clone(),
            event_count: self.indexes.len() as u64,
            indexes: std::mem::take(&mut self.indexes),
            files: std::mem::take(&mut self.files),
        };
        let mut json = serde_json::to_vec(&manifest)
            .map_err(|e| invalid(format!("encoding the manifest: {e}")))?;
        json.push(b'\n');
        let note = sign_note(&sig_body(&sha256(&json)), &self.signer)
            .map_err(|e| invalid(format!("signing the manifest: {e}")))?;
        let mut h = self.header(json.len() as u64);
        self.tar.append_data(&mut h, MANIFEST, json.as_slice())?;
        let mut h = self.header(note.len() as u64);
        self.tar
            .append_data(&mut h, MANIFEST_SIG, note.as_bytes())?;
        let gz = self.tar.into_inner()?;
        Ok(gz.finish()?)
    }
}

/// Streams a spool, from `start` for the length in `header`, into the tar.
fn copy_spool<W: Write, S: Read + Seek>(
    tar: &mut tar::Builder<GzEncoder<W>>,
    mut header: tar::Header,
    name: &str,
    spool: &mut S,
    start: u64,
) -> Result<(), BuildError> {
    let len = header.size()?;
    spool.seek(SeekFrom::Start(start))?;
    tar.append_data(&mut header, name, spool.take(len))?;
    Ok(())
}

/// An event's line of events.ndjson (newline included), and what the
/// verifier will hold for it until blobs.bin (0 without blobs).
struct Line {
    bytes: Vec<u8>,
    pending: u64,
}

/// The events.ndjson line of one event, after checking it against the
/// checkpoint, the previous index and the entry's blobs; its blobs start
/// at `blobs_at` in blobs.bin.
fn event_line(
    e: &BundleEvent,
    checkpoint: &Checkpoint,
    previous: Option<u64>,
    blobs_at: u64,
) -> Result<Line, BuildError> {
    let at = |msg: &str| invalid(format!("event at index {}: {msg}", e.index));
    if previous.is_some_and(|p| e.index <= p) {
        return Err(at("events must come in ascending index order, once each"));
    }
    if e.index >= checkpoint.size {
        return Err(at("not covered by the checkpoint"));
    }
    if e.entry.len() > MAX_ENTRY_SIZE {
        return Err(at("entry longer than 65535 bytes"));
    }
    let leaf = record_hash(&e.entry);
    check_record(
        &e.inclusion_proof,
        checkpoint.size,
        &checkpoint.root,
        e.index,
        &leaf,
    )
    .map_err(|_| at("inclusion proof does not lead to the checkpoint root"))?;
    let stored =
        decode_stored(&e.entry).map_err(|err| at(&format!("entry: {}", crate::describe(&err))))?;
    let refs = stored
        .sealed
        .as_ref()
        .and_then(|s| s.v3.as_ref())
        .map_or(&[][..], |v3| v3.blobs.as_slice());
    let (event, blobs, pending) = match (&stored.sealed, &e.opening, &stored.plain) {
        (Some(sealed), Some(opening), _) => {
            let opened = sealed
                .check_opening(opening.clone())
                .map_err(|err| at(&format!("opening: {}", crate::describe(&err))))?;
            if !index_matches(&stored.index, &opened.entry.event) {
                return Err(at(
                    "opening: the event's clear fields differ from the entry's index",
                ));
            }
            let (blobs, pending) = blob_lines(e, refs, &opened, blobs_at).map_err(|m| at(&m))?;
            (Some(opened.entry.event), blobs, pending)
        }
        (None, Some(_), _) => return Err(at("an opening for an entry that is not sealed")),
        (_, None, _) if !e.blobs.is_empty() => {
            return Err(at(
                "blob content without an opening: blobs are exported with their opening only",
            ))
        }
        (_, None, Some(plain)) => (Some(plain.event.clone()), None, 0),
        (_, None, None) => (None, None, 0),
    };
    let line = EventLine {
        index: e.index,
        entry: B64.encode(&e.entry),
        leaf_hash: B64.encode(leaf),
        inclusion_proof: e.inclusion_proof.iter().map(|h| B64.encode(h)).collect(),
        opening: e.opening.as_ref().map(|o| B64.encode(o)),
        blobs,
        event: event.map(Value::Object),
    };
    let mut out = serde_json::to_vec(&line).map_err(|err| at(&err.to_string()))?;
    out.push(b'\n');
    if out.len() > MAX_EVENT_LINE {
        return Err(at("its line would exceed 1 MiB"));
    }
    Ok(Line {
        bytes: out,
        pending,
    })
}

/// Checks an opened event's blob content against its entry's refs (count,
/// size, commitment with the opening's salts) and returns its line's
/// `blobs` (None when the entry lists none) and what the verifier will
/// hold for it until blobs.bin.
fn blob_lines(
    e: &BundleEvent,
    refs: &[BlobRef],
    opened: &Opened,
    mut offset: u64,
) -> Result<(Option<Vec<BlobLine>>, u64), String> {
    if e.blobs.len() != refs.len() {
        return Err(format!(
            "the entry lists {} blob(s), {} given",
            refs.len(),
            e.blobs.len()
        ));
    }
    if refs.is_empty() {
        return Ok((None, 0));
    }
    // check_opening has checked that the slots name the refs' pointers.
    let mut lines = Vec::with_capacity(refs.len());
    let mut total = 0u64;
    for ((r, slot), content) in refs.iter().zip(&opened.blobs).zip(&e.blobs) {
        if content.len() as u64 != r.size {
            return Err(format!(
                "blob {:?}: {} bytes given, the entry logs {}",
                r.pointer,
                content.len(),
                r.size
            ));
        }
        if aiaudit_event::blob::commitment(&slot.salt, content) != r.commitment {
            return Err(format!(
                "blob {:?}: the content given does not match the commitment the entry logs",
                r.pointer
            ));
        }
        lines.push(BlobLine {
            pointer: r.pointer.clone(),
            offset,
            bytes: r.size,
        });
        offset += r.size;
        total += r.size;
    }
    let signed_json = match &opened.entry.signature {
        None => 0,
        Some(sig) => {
            if total > MAX_EVENT_BLOBS {
                return Err(format!(
                    "an emitter-signed event with {total} bytes of blobs, more than the \
                     {MAX_EVENT_BLOBS} the verifier holds to check its signature"
                ));
            }
            serde_json::to_vec(&opened.entry.event)
                .map_err(|err| err.to_string())?
                .len()
                + serde_json::to_vec(sig)
                    .map_err(|err| err.to_string())?
                    .len()
        }
    };
    let pending = pending_cost(refs.iter().map(|r| r.pointer.as_str()), signed_json);
    Ok((Some(lines), pending))
}

/// Writes a whole bundle of `events` (in ascending index order) to `out`,
/// spooling events and blobs in memory; see [`BundleWriter`] to stream a large export.
pub fn write_bundle<W: Write>(
    out: W,
    signer: &Signer,
    checkpoint_note: &str,
    events: &[BundleEvent],
    filters: Value,
    created: &str,
) -> Result<W, BuildError> {
    let spool = io::Cursor::new(Vec::new());
    let blob_spool = io::Cursor::new(Vec::new());
    let mut w = BundleWriter::new(
        out,
        spool,
        blob_spool,
        signer,
        checkpoint_note,
        filters,
        created,
    )?;
    for e in events {
        w.add(e)?;
    }
    w.finish()
}
