//! Writing a bundle: README, key and checkpoint first, the events through a
//! spool (their length must be in the tar header before they are), the
//! manifest and its signature last.

use crate::{
    readme, sha256, sig_body, Digest, EventLine, FileDigest, Manifest, CHECKPOINT, EVENTS, FORMAT,
    MANIFEST, MANIFEST_SIG, MAX_EVENT_LINE, README, VKEY,
};
use aiaudit_event::envelope::{decode_stored, index_matches};
use aiaudit_tlog::{
    check_record, open_note, record_hash, sign_note, Checkpoint, Hash, Signer, MAX_ENTRY_SIZE,
};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use flate2::{write::GzEncoder, Compression};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// One event to export: the entry at `index`, its inclusion proof against
/// the bundle's checkpoint and, for a sealed (v2) entry whose content is
/// exported, its opening (`Sealed::open(..).opening`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEvent {
    pub index: u64,
    pub entry: Vec<u8>,
    pub inclusion_proof: Vec<Hash>,
    pub opening: Option<Vec<u8>>,
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

/// Writes a bundle event by event. `spool` holds events.ndjson until
/// [`BundleWriter::finish`] (a temporary file for large exports, a
/// `Cursor<Vec<u8>>` for small ones); it is written from its current position.
pub struct BundleWriter<W: Write, S: Read + Write + Seek> {
    tar: tar::Builder<GzEncoder<W>>,
    spool: S,
    spool_start: u64,
    signer: Signer,
    checkpoint: Checkpoint,
    filters: Value,
    created: String,
    mtime: u64,
    files: BTreeMap<String, FileDigest>,
    events: Digest,
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
    /// export (RFC 3339).
    pub fn new(
        out: W,
        mut spool: S,
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
        let mut w = BundleWriter {
            tar: tar::Builder::new(GzEncoder::new(out, Compression::default())),
            spool,
            spool_start,
            signer: signer.clone(),
            filters,
            created: created.to_string(),
            mtime: mtime_of(created),
            files: BTreeMap::new(),
            events: Digest::new(),
            indexes: Vec::new(),
            checkpoint,
        };
        let readme = readme(&w.checkpoint.origin, w.checkpoint.size);
        w.append(README, readme.as_bytes())?;
        let vkey = format!("{}\n", w.signer.verifier().to_vkey());
        w.append(VKEY, vkey.as_bytes())?;
        w.append(CHECKPOINT, checkpoint_note.as_bytes())?;
        Ok(w)
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
    /// verify against the checkpoint (and its opening against its entry).
    pub fn add(&mut self, event: &BundleEvent) -> Result<(), BuildError> {
        let line = event_line(event, &self.checkpoint, self.indexes.last().copied())?;
        self.spool.write_all(&line)?;
        self.events.update(&line);
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

    /// Writes events.ndjson, the manifest and its signature, ends the
    /// archive and returns the output.
    pub fn finish(mut self) -> Result<W, BuildError> {
        let events = std::mem::replace(&mut self.events, Digest::new()).file_digest();
        let len = events.bytes;
        self.files.insert(EVENTS.to_string(), events);
        self.spool.seek(SeekFrom::Start(self.spool_start))?;
        let mut h = self.header(len);
        let spool = (&mut self.spool).take(len);
        self.tar.append_data(&mut h, EVENTS, spool)?;

        let manifest = Manifest {
            format: FORMAT.to_string(),
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

/// The events.ndjson line of one event (newline included), after checking
/// it against the checkpoint and the previous index.
fn event_line(
    e: &BundleEvent,
    checkpoint: &Checkpoint,
    previous: Option<u64>,
) -> Result<Vec<u8>, BuildError> {
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
    let event = match (&stored.sealed, &e.opening, &stored.plain) {
        (Some(sealed), Some(opening), _) => {
            let opened = sealed
                .check_opening(opening.clone())
                .map_err(|err| at(&format!("opening: {}", crate::describe(&err))))?;
            if !index_matches(&stored.index, &opened.entry.event) {
                return Err(at(
                    "opening: the event's clear fields differ from the entry's index",
                ));
            }
            Some(opened.entry.event)
        }
        (None, Some(_), _) => return Err(at("an opening for an entry that is not sealed")),
        (_, None, Some(plain)) => Some(plain.event.clone()),
        (_, None, None) => None,
    };
    let line = EventLine {
        index: e.index,
        entry: B64.encode(&e.entry),
        leaf_hash: B64.encode(leaf),
        inclusion_proof: e.inclusion_proof.iter().map(|h| B64.encode(h)).collect(),
        opening: e.opening.as_ref().map(|o| B64.encode(o)),
        event: event.map(Value::Object),
    };
    let mut out = serde_json::to_vec(&line).map_err(|err| at(&err.to_string()))?;
    out.push(b'\n');
    if out.len() > MAX_EVENT_LINE {
        return Err(at("its line would exceed 1 MiB"));
    }
    Ok(out)
}

/// Writes a whole bundle of `events` (in ascending index order) to `out`,
/// spooling in memory; see [`BundleWriter`] to stream a large export.
pub fn write_bundle<W: Write>(
    out: W,
    signer: &Signer,
    checkpoint_note: &str,
    events: &[BundleEvent],
    filters: Value,
    created: &str,
) -> Result<W, BuildError> {
    let spool = io::Cursor::new(Vec::new());
    let mut w = BundleWriter::new(out, spool, signer, checkpoint_note, filters, created)?;
    for e in events {
        w.add(e)?;
    }
    w.finish()
}
