//! Checking a bundle offline, in one streaming pass: the members are read
//! in their fixed order, so the key and checkpoint are known before the
//! first event, the blobs (format 2) are checked against the events read
//! before them, and the manifest (last) is compared with what was read.

use crate::{
    describe, hex, pending_cost, sha256, sig_body, BlobLine, Digest, EventLine, FileDigest,
    Manifest, BLOBS, CHECKPOINT, EVENTS, FORMAT, FORMAT_2, MANIFEST, MANIFEST_SIG, MAX_BLOBS,
    MAX_EVENT_BLOBS, MAX_EVENT_LINE, MAX_MANIFEST, MAX_MEMBER, MAX_PENDING, MAX_SMALL_MEMBER,
    MEMBERS, MEMBERS_2, README, VKEY,
};
use aiaudit_event::bounded::{self, MAX_JSON_NODES};
use aiaudit_event::envelope::{decode_stored, index_matches};
use aiaudit_event::sealed_v3::put_member;
use aiaudit_event::signature::verify_entry_signature;
use aiaudit_tlog::{
    check_record, open_note, record_hash, Checkpoint, Hash, Verifier, MAX_ENTRY_SIZE,
};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, ErrorKind, Read};

/// At most this many problems are listed; the rest are only counted.
pub const MAX_PROBLEMS: usize = 100;
/// The longest audit path: a tree of at most 2^64 leaves.
const MAX_PROOF_LEN: usize = 64;
/// The most members a bundle may have, extra ones included: with the size
/// bound, this bounds the work a hostile archive can cause.
const MAX_MEMBERS: usize = 16;
/// Bytes read after the end of the tar, to check the gzip stream ends cleanly.
const MAX_TRAILER: u64 = 1 << 20;
/// Bytes of blobs.bin read at a time.
const BLOB_READ: usize = 64 << 10;

/// One thing wrong with a bundle: the member at fault, the event (by log
/// index) when it is one event, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: String,
    pub index: Option<u64>,
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "{}: event at index {i}: {}", self.file, self.what),
            None => write!(f, "{}: {}", self.file, self.what),
        }
    }
}

/// A bundle that does not verify: every problem found (up to
/// [`MAX_PROBLEMS`]), in the order found. Displays the first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleError {
    pub problems: Vec<Problem>,
    /// Problems found beyond those listed.
    pub more: u64,
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.first() {
            Some(p) => write!(f, "{p}")?,
            None => write!(f, "bundle: does not verify")?,
        }
        let others = self.problems.len().saturating_sub(1) as u64 + self.more;
        if others > 0 {
            write!(f, " (and {others} more problem(s))")?;
        }
        Ok(())
    }
}

impl std::error::Error for BundleError {}

/// What a bundle that verified holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BundleReport {
    /// The log's origin, as the checkpoint names it.
    pub origin: String,
    pub checkpoint_size: u64,
    /// Base64 of the checkpoint's root hash.
    pub checkpoint_root: String,
    /// The checkpoint note as the bundle carries it (witness cosignatures
    /// included), for a caller to check against a witness policy.
    #[serde(skip)]
    pub checkpoint_note: String,
    /// The export time and query, as the manifest states them.
    pub created: String,
    pub filters: Value,
    /// The key the signatures were checked with.
    pub vkey: String,
    /// Whether that key was given by the caller (else it is the bundle's own).
    pub key_trusted: bool,
    /// Events in the bundle, and how many of each kind.
    pub events: u64,
    /// Plain (v1) entries: the content is in the entry itself.
    pub plain: u64,
    /// Sealed (v2) entries with their opening: content proven without a key.
    pub sealed_with_content: u64,
    /// Sealed entries without an opening (erased, or content not exported):
    /// proven in the log, content unknown.
    pub sealed_without_content: u64,
    /// Blobs (format 2) checked against their entries' commitments, and
    /// their bytes.
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Emitter batch signatures verified, and per emitter key how many.
    pub emitter_signatures: u64,
    pub emitters: BTreeMap<String, u64>,
    /// The smallest and largest log index exported.
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    pub warnings: Vec<String>,
}

/// Checks a bundle (format 1 or 2) fully offline: the manifest's
/// signature, every file's SHA-256 and length, that no file is missing or
/// extra, the checkpoint's signature, every event's leaf hash and inclusion
/// proof, openings of sealed entries, every blob against the commitment its
/// entry logs, emitter batch signatures (over the whole event, blobs put
/// back), and that the manifest's index list is exactly the events present.
///
/// `trusted_vkey` is the log's verifier key from a trusted channel. Without
/// it the key inside the bundle is used, which proves only that the bundle
/// is consistent with itself (the report says so in `warnings`).
pub fn verify_bundle<R: Read>(
    input: R,
    trusted_vkey: Option<&str>,
) -> Result<BundleReport, BundleError> {
    verify_within(input, trusted_vkey, MAX_PENDING)
}

/// [`verify_bundle`] holding at most `max_pending` bytes for the events
/// with blobs (a lower bound in tests).
pub(crate) fn verify_within<R: Read>(
    input: R,
    trusted_vkey: Option<&str>,
    max_pending: u64,
) -> Result<BundleReport, BundleError> {
    let mut c = Check {
        max_pending,
        ..Check::default()
    };
    if let Some(k) = trusted_vkey {
        match Verifier::parse(k.trim()) {
            Ok(v) => c.trusted = Some(v),
            Err(e) => {
                c.problem("--vkey", None, format!("not a verifier key: {e}"));
                return Err(c.into_error());
            }
        }
    }
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(input));
    if let Err(fatal) = read_members(&mut archive, &mut c) {
        c.push(fatal);
        return Err(c.into_error());
    }
    check_trailer(archive.into_inner(), &mut c);
    c.conclude()
}

/// Reads the tar's members in order, checking each as it streams by. An
/// `Err` is a problem that ends the reading (a damaged or oversized archive).
fn read_members<R: Read>(archive: &mut tar::Archive<R>, c: &mut Check) -> Result<(), Problem> {
    let damaged = |file: &str, e: std::io::Error| Problem {
        file: file.to_string(),
        index: None,
        what: format!("the archive is damaged or not a gzip'd tar: {e}"),
    };
    // Raw: GNU long names and pax headers are not gathered into memory
    // (their size is the archive's say); a bundle never has them, and here
    // they are extra members, refused like any other.
    let entries = archive
        .entries()
        .map_err(|e| damaged("bundle", e))?
        .raw(true);
    let mut next = 0usize;
    for (count, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| damaged("bundle", e))?;
        let name = printable(&entry.path_bytes());
        if count >= MAX_MEMBERS {
            return Err(Problem {
                file: "bundle".into(),
                index: None,
                what: format!("more than {MAX_MEMBERS} members"),
            });
        }
        let size = entry.size();
        let most = if name == BLOBS { MAX_BLOBS } else { MAX_MEMBER };
        if size > most {
            return Err(Problem {
                file: name,
                index: None,
                what: format!("{size} bytes, more than the {most} this format allows"),
            });
        }
        // Whether blobs.bin belongs (format 2) is settled with the manifest.
        let Some(pos) = MEMBERS_2.iter().position(|m| *m == name) else {
            c.problem(
                &name,
                None,
                format!("an extra file, not part of format {FORMAT} or {FORMAT_2}"),
            );
            continue;
        };
        if pos < next {
            c.problem(&name, None, "appears twice, or out of order");
            continue;
        }
        for m in MEMBERS_2[next..pos].iter().filter(|m| **m != BLOBS) {
            c.problem(m, None, format!("missing, or not before {name}"));
        }
        next = pos + 1;
        if entry.header().entry_type() != tar::EntryType::Regular {
            c.problem(&name, None, "not a regular file");
            continue;
        }
        let limit = match name.as_str() {
            EVENTS => MAX_MEMBER,
            BLOBS => MAX_BLOBS,
            MANIFEST => MAX_MANIFEST,
            _ => MAX_SMALL_MEMBER,
        };
        if size > limit {
            return Err(Problem {
                file: name,
                index: None,
                what: format!("{size} bytes, more than the {limit} this format allows"),
            });
        }
        if name == EVENTS {
            c.read_events(&mut entry)?;
        } else if name == BLOBS {
            c.read_blobs(&mut entry)?;
        } else {
            let mut data = Vec::with_capacity(size.min(MAX_SMALL_MEMBER) as usize);
            (&mut entry)
                .take(limit)
                .read_to_end(&mut data)
                .map_err(|e| damaged(&name, e))?;
            c.small_member(&name, data);
        }
    }
    for m in MEMBERS_2[next..].iter().filter(|m| **m != BLOBS) {
        c.problem(m, None, "missing");
    }
    Ok(())
}

/// After the tar's end only zero padding may follow, and the gzip stream
/// must end cleanly (its CRC is checked on the way).
fn check_trailer<R: Read>(rest: R, c: &mut Check) {
    let mut buf = Vec::new();
    let mut limited = rest.take(MAX_TRAILER + 1);
    match limited.read_to_end(&mut buf) {
        Err(e) => c.problem("bundle", None, format!("the gzip stream is damaged: {e}")),
        Ok(_) if buf.len() as u64 > MAX_TRAILER || buf.iter().any(|&b| b != 0) => {
            c.problem("bundle", None, "data after the end of the archive")
        }
        Ok(_) => {}
    }
}

/// A member name fit for a message: lossy UTF-8, at most 200 characters.
fn printable(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut out: String = s
        .chars()
        .take(200)
        .collect::<String>()
        .escape_debug()
        .to_string();
    if s.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// The running state of one verification.
#[derive(Default)]
struct Check {
    problems: Vec<Problem>,
    more: u64,
    trusted: Option<Verifier>,
    bundle_key: Option<Verifier>,
    checkpoint: Option<Checkpoint>,
    checkpoint_note: String,
    digests: BTreeMap<String, FileDigest>,
    manifest: Option<(Manifest, [u8; 32])>,
    manifest_sig: Option<String>,
    indexes: Vec<u64>,
    plain: u64,
    sealed_with_content: u64,
    sealed_without_content: u64,
    emitters: BTreeMap<String, u64>,
    warnings: Vec<String>,
    /// Format 2: the lines with a "blobs" field (and the first one's
    /// index), where blobs.bin ends as the lines lay it out, what waits for
    /// blobs.bin and its cost ([`MAX_PENDING`]), whether it was read, and
    /// the blobs checked.
    blob_lines: u64,
    first_blob_line: Option<u64>,
    blobs_end: u64,
    pending: Vec<Pending>,
    pending_cost: u64,
    max_pending: u64,
    blobs_read: bool,
    blobs: u64,
    blob_bytes: u64,
}

/// What one verified event line was.
enum Kind {
    Plain,
    SealedWithContent,
    SealedWithoutContent,
}

/// An event whose blobs are in blobs.bin, in the order of its lines.
enum Pending {
    /// Its line verified: each blob is checked, then its signature.
    Check(BlobEvent),
    /// Its line did not verify (already a problem): its blobs' bytes, as
    /// the line states them, are passed over.
    Skip(u64),
}

/// What checking one event's blobs needs, from its proven entry and opening.
struct BlobEvent {
    index: u64,
    blobs: Vec<ExpectedBlob>,
    /// For an emitter-signed event: the compact JSON of the event without
    /// its blobs and of its signature, checked once the blobs are put back.
    signed: Option<(Vec<u8>, Vec<u8>)>,
}

/// One blob as its entry logs it and its opening salts it.
struct ExpectedBlob {
    pointer: String,
    size: u64,
    commitment: Hash,
    salt: [u8; 32],
}

/// blobs.bin as it streams by, hashed whole for the manifest.
struct BlobStream<R> {
    member: R,
    digest: Digest,
    buf: Vec<u8>,
}

impl<R: Read> BlobStream<R> {
    /// Reads up to `n` bytes, handing them to `f` a piece at a time, and
    /// returns how many there were: fewer than `n` when the member ends.
    fn take(&mut self, n: u64, mut f: impl FnMut(&[u8])) -> Result<u64, Problem> {
        let mut done = 0u64;
        while done < n {
            let want = (n - done).min(self.buf.len() as u64) as usize;
            let got = match self.member.read(&mut self.buf[..want]) {
                Ok(0) => break,
                Ok(got) => got,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Problem {
                        file: BLOBS.into(),
                        index: None,
                        what: format!("the archive is damaged: {e}"),
                    })
                }
            };
            self.digest.update(&self.buf[..got]);
            f(&self.buf[..got]);
            done += got as u64;
        }
        Ok(done)
    }
}

impl Check {
    fn push(&mut self, p: Problem) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        } else {
            self.more += 1;
        }
    }

    fn problem(&mut self, file: &str, index: Option<u64>, what: impl Into<String>) {
        self.push(Problem {
            file: file.to_string(),
            index,
            what: what.into(),
        });
    }

    fn into_error(self) -> BundleError {
        BundleError {
            problems: self.problems,
            more: self.more,
        }
    }

    /// The key signatures are checked with: the trusted one, else the bundle's.
    fn key(&self) -> Option<&Verifier> {
        self.trusted.as_ref().or(self.bundle_key.as_ref())
    }

    fn key_label(&self) -> &'static str {
        if self.trusted.is_some() {
            "the trusted key"
        } else {
            "the bundle's own key (log.vkey)"
        }
    }

    fn small_member(&mut self, name: &str, data: Vec<u8>) {
        let mut d = Digest::new();
        d.update(&data);
        self.digests.insert(name.to_string(), d.file_digest());
        let Ok(text) = String::from_utf8(data) else {
            if name != README {
                self.problem(name, None, "not UTF-8 text");
            }
            return;
        };
        match name {
            VKEY => self.read_vkey(&text),
            CHECKPOINT => self.read_checkpoint(&text),
            MANIFEST => match serde_json::from_str::<Manifest>(&text) {
                Ok(m) => self.manifest = Some((m, sha256(text.as_bytes()))),
                Err(e) => self.problem(MANIFEST, None, format!("not a valid manifest: {e}")),
            },
            MANIFEST_SIG => self.manifest_sig = Some(text),
            _ => {}
        }
    }

    fn read_vkey(&mut self, text: &str) {
        let Some(line) = text.strip_suffix('\n').filter(|l| !l.contains('\n')) else {
            self.problem(VKEY, None, "not one line ending in a newline");
            return;
        };
        match Verifier::parse(line) {
            Ok(v) => self.bundle_key = Some(v),
            Err(e) => self.problem(VKEY, None, e.to_string()),
        }
        match (&self.trusted, &self.bundle_key) {
            (Some(t), Some(b)) if t != b => {
                let what = format!(
                    "the bundle's key {} is not the trusted key {}",
                    b.to_vkey(),
                    t.to_vkey()
                );
                self.problem(VKEY, None, what);
            }
            (None, Some(b)) => self.warnings.push(format!(
                "no trusted key given: checked with the key inside the bundle ({}), which proves \
                 only that the bundle is consistent with itself, not who made it; pass --vkey with \
                 the log's key from a trusted channel",
                b.to_vkey()
            )),
            _ => {}
        }
    }

    fn read_checkpoint(&mut self, note: &str) {
        self.checkpoint_note = note.to_string();
        let Some(key) = self.key().cloned() else {
            self.problem(CHECKPOINT, None, "no key to check its signature with");
            return;
        };
        // Parse the body even when the signature fails, so the events can
        // still be checked against it and every problem gets listed.
        let body = match open_note(note, &key) {
            Ok(body) => body,
            Err(e) => {
                let what = format!("signature does not verify with {}: {e}", self.key_label());
                self.problem(CHECKPOINT, None, what);
                match note.rfind("\n\n") {
                    Some(split) => &note[..split + 1],
                    None => return,
                }
            }
        };
        match Checkpoint::parse_body(body) {
            Ok(cp) => {
                if cp.origin != key.name() {
                    let what = format!(
                        "origin {:?} is not the key's name {:?}",
                        cp.origin,
                        key.name()
                    );
                    self.problem(CHECKPOINT, None, what);
                }
                self.checkpoint = Some(cp);
            }
            Err(e) => self.problem(CHECKPOINT, None, e.to_string()),
        }
    }

    /// Streams events.ndjson: hashes it and checks every line.
    fn read_events<R: Read>(&mut self, member: R) -> Result<(), Problem> {
        let mut reader = BufReader::new(member);
        let mut digest = Digest::new();
        let mut line = Vec::new();
        for number in 1u64.. {
            line.clear();
            let n = (&mut reader)
                .take(MAX_EVENT_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
                .map_err(|e| Problem {
                    file: EVENTS.into(),
                    index: None,
                    what: format!("the archive is damaged: {e}"),
                })?;
            if n == 0 {
                break;
            }
            if line.len() > MAX_EVENT_LINE {
                return Err(Problem {
                    file: EVENTS.into(),
                    index: None,
                    what: format!("line {number} is longer than {MAX_EVENT_LINE} bytes"),
                });
            }
            digest.update(&line);
            let Some(text) = line.strip_suffix(b"\n") else {
                self.problem(
                    EVENTS,
                    None,
                    format!("line {number} lacks its final newline"),
                );
                continue;
            };
            let line: EventLine = match serde_json::from_slice(text) {
                Ok(line) => line,
                Err(e) => {
                    let what = format!("line {number}: not a valid event line: {e}");
                    self.problem(EVENTS, None, what);
                    continue;
                }
            };
            let index = line.index;
            let stated = line.blobs.as_deref().map(|b| self.lay_out(index, b));
            let Some(cp) = &self.checkpoint else {
                continue; // the missing checkpoint is already a problem
            };
            match check_line(line, cp, &mut self.emitters) {
                Ok((kind, blob_event)) => {
                    if self.indexes.last().is_some_and(|&last| index <= last) {
                        let what = "not in ascending index order, or listed twice";
                        self.problem(EVENTS, Some(index), what);
                    }
                    self.indexes.push(index);
                    match kind {
                        Kind::Plain => self.plain += 1,
                        Kind::SealedWithContent => self.sealed_with_content += 1,
                        Kind::SealedWithoutContent => self.sealed_without_content += 1,
                    }
                    if let Some(e) = blob_event {
                        self.wait_for_blobs(e)?;
                    }
                }
                Err(what) => {
                    self.indexes.push(index);
                    self.problem(EVENTS, Some(index), what);
                    if let Some(bytes) = stated {
                        self.pending.push(Pending::Skip(bytes));
                    }
                }
            }
        }
        self.digests.insert(EVENTS.into(), digest.file_digest());
        Ok(())
    }

    /// Follows a line's `blobs` through blobs.bin: they must lie back to
    /// back, where the previous line's end. Returns their bytes as stated
    /// (the line's check compares them with the entry).
    fn lay_out(&mut self, index: u64, blobs: &[BlobLine]) -> u64 {
        self.blob_lines += 1;
        self.first_blob_line.get_or_insert(index);
        let mut bytes = 0u64;
        let mut misplaced = None;
        for b in blobs {
            if b.offset != self.blobs_end && misplaced.is_none() {
                misplaced = Some(format!(
                    "\"blobs\": {} is at offset {} of {BLOBS}, but the blob before it ends at {}",
                    printable(b.pointer.as_bytes()),
                    b.offset,
                    self.blobs_end
                ));
            }
            self.blobs_end = self.blobs_end.saturating_add(b.bytes);
            bytes = bytes.saturating_add(b.bytes);
        }
        if let Some(what) = misplaced {
            self.problem(EVENTS, Some(index), what);
        }
        bytes
    }

    /// Keeps what checking an event's blobs needs until blobs.bin, within
    /// [`MAX_PENDING`].
    fn wait_for_blobs(&mut self, e: BlobEvent) -> Result<(), Problem> {
        let signed = e
            .signed
            .as_ref()
            .map_or(0, |(ev, sig)| ev.len() + sig.len());
        let pointers = e.blobs.iter().map(|b| b.pointer.as_str());
        self.pending_cost += pending_cost(pointers, signed);
        if self.pending_cost > self.max_pending {
            return Err(Problem {
                file: EVENTS.into(),
                index: Some(e.index),
                what: format!(
                    "the events with blobs so far need more than the {} bytes \
                     this format allows to hold until {BLOBS}",
                    self.max_pending
                ),
            });
        }
        self.pending.push(Pending::Check(e));
        Ok(())
    }

    /// Streams blobs.bin: each event's blobs, in the order of the lines,
    /// against their commitments; then each signed event's signature.
    fn read_blobs<R: Read>(&mut self, member: R) -> Result<(), Problem> {
        self.blobs_read = true;
        let mut stream = BlobStream {
            member,
            digest: Digest::new(),
            buf: vec![0; BLOB_READ],
        };
        let mut ended = false;
        for p in std::mem::take(&mut self.pending) {
            match p {
                Pending::Skip(bytes) if !ended => ended = stream.take(bytes, |_| {})? < bytes,
                Pending::Skip(_) => {}
                Pending::Check(e) if ended => {
                    let what = format!("missing: {BLOBS} ends before this event's blobs");
                    self.problem(BLOBS, Some(e.index), what);
                }
                Pending::Check(e) => ended = !self.check_blobs(&mut stream, e)?,
            }
        }
        self.pending_cost = 0;
        let extra = stream.take(u64::MAX, |_| {})?;
        if extra > 0 {
            let what = format!("{extra} byte(s) after the last blob the events list");
            self.problem(BLOBS, None, what);
        }
        self.digests
            .insert(BLOBS.into(), stream.digest.file_digest());
        Ok(())
    }

    /// Reads one event's blobs from the stream and checks each against its
    /// commitment, SHA-256(salt || content); for a signed event, puts them
    /// back into the event and checks the signature. Returns false when
    /// blobs.bin ended before them.
    fn check_blobs<R: Read>(
        &mut self,
        stream: &mut BlobStream<R>,
        e: BlobEvent,
    ) -> Result<bool, Problem> {
        let mut held = Vec::new();
        let mut wrong = None;
        for b in &e.blobs {
            let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
            hash.update(&b.salt);
            // A signed event's blobs are within MAX_EVENT_BLOBS (check_line).
            let mut content = Vec::new();
            let keep = e.signed.is_some();
            let got = stream.take(b.size, |piece| {
                hash.update(piece);
                if keep {
                    content.extend_from_slice(piece);
                }
            })?;
            if got < b.size {
                let what = format!(
                    "ends early: blob {} of this event has {got} of its {} bytes",
                    printable(b.pointer.as_bytes()),
                    b.size
                );
                self.problem(BLOBS, Some(e.index), what);
                return Ok(false);
            }
            if hash.finish().as_ref() != b.commitment && wrong.is_none() {
                wrong = Some(format!(
                    "blob {}: its content does not match the commitment its entry logs",
                    printable(b.pointer.as_bytes())
                ));
            }
            held.push(content);
        }
        if let Some(what) = wrong {
            self.problem(BLOBS, Some(e.index), what);
            return Ok(true);
        }
        self.blobs += e.blobs.len() as u64;
        self.blob_bytes += e.blobs.iter().map(|b| b.size).sum::<u64>();
        if let Some((event, signature)) = &e.signed {
            match signed_event(event, &e.blobs, held) {
                Err(what) => self.problem(BLOBS, Some(e.index), what),
                Ok(event) => match verify_entry_signature(
                    &event,
                    &serde_json::from_slice(signature).unwrap_or(Value::Null),
                ) {
                    Ok(key) => *self.emitters.entry(key).or_default() += 1,
                    Err(err) => {
                        let what = format!("emitter signature: {err}");
                        self.problem(EVENTS, Some(e.index), what);
                    }
                },
            }
        }
        Ok(true)
    }

    /// Checks the manifest and its signature against what was read.
    fn conclude(mut self) -> Result<BundleReport, BundleError> {
        self.check_manifest_sig();
        self.check_manifest();
        if self.problems.is_empty() && !self.pending.is_empty() {
            // Unreachable: without blobs.bin, check_format finds a problem.
            let what = format!(
                "the blobs of {} event(s) went unchecked",
                self.pending.len()
            );
            self.problem(BLOBS, None, what);
        }
        if !self.problems.is_empty() {
            return Err(self.into_error());
        }
        let key = self.key().cloned();
        let (Some(cp), Some(key), Some((manifest, _))) = (self.checkpoint, key, self.manifest)
        else {
            // Unreachable: each missing piece is a problem.
            return Err(BundleError {
                problems: vec![Problem {
                    file: "bundle".into(),
                    index: None,
                    what: "incomplete".into(),
                }],
                more: 0,
            });
        };
        Ok(BundleReport {
            origin: cp.origin,
            checkpoint_size: cp.size,
            checkpoint_root: B64.encode(cp.root),
            checkpoint_note: self.checkpoint_note,
            created: manifest.created,
            filters: manifest.filters,
            vkey: key.to_vkey(),
            key_trusted: self.trusted.is_some(),
            events: self.indexes.len() as u64,
            plain: self.plain,
            sealed_with_content: self.sealed_with_content,
            sealed_without_content: self.sealed_without_content,
            blobs: self.blobs,
            blob_bytes: self.blob_bytes,
            emitter_signatures: self.emitters.values().sum(),
            emitters: self.emitters,
            first_index: self.indexes.first().copied(),
            last_index: self.indexes.last().copied(),
            warnings: self.warnings,
        })
    }

    fn check_manifest_sig(&mut self) {
        let (Some(note), Some((_, sha)), Some(key)) =
            (&self.manifest_sig, &self.manifest, self.key())
        else {
            return; // each missing piece is already a problem
        };
        let header = format!("{}\n", crate::SIG_HEADER);
        let what = match open_note(note, key) {
            Err(e) => format!("signature does not verify with {}: {e}", self.key_label()),
            Ok(body) if body == sig_body(sha) => return,
            Ok(body) => match body.strip_prefix(&header) {
                Some(rest) => format!(
                    "signs another manifest.json ({}), not this one (sha256 {}): the manifest was changed",
                    rest.trim_end(),
                    hex(sha)
                ),
                None => format!("does not start with the line {:?}", crate::SIG_HEADER),
            },
        };
        self.problem(MANIFEST_SIG, None, what);
    }

    fn check_manifest(&mut self) {
        let found = match &self.manifest {
            Some((m, _)) => self.manifest_differences(m),
            None => return,
        };
        for what in found {
            self.problem(MANIFEST, None, what);
        }
        if let Some((m, _)) = &self.manifest {
            let format = m.format.clone();
            self.check_format(&format);
        }
    }

    /// Format 1 has no blobs; format 2 has blobs.bin and at least one line
    /// with blobs (a bundle without blobs has one form only: format 1).
    fn check_format(&mut self, format: &str) {
        let first = self.first_blob_line;
        match format {
            FORMAT if self.blobs_read || first.is_some() => {
                if self.blobs_read {
                    let what = format!("an extra file, not part of format {FORMAT}");
                    self.problem(BLOBS, None, what);
                }
                if first.is_some() {
                    let what = format!(
                        "a \"blobs\" field, not part of format {FORMAT} ({} line(s) have one)",
                        self.blob_lines
                    );
                    self.problem(EVENTS, first, what);
                }
            }
            FORMAT_2 if !self.blobs_read => self.problem(BLOBS, None, "missing"),
            FORMAT_2 if first.is_none() => {
                let what = format!(
                    "no line has blobs: a bundle without blobs is format {FORMAT}, without {BLOBS}"
                );
                self.problem(EVENTS, None, what);
            }
            _ => {}
        }
    }

    /// Everything in which the manifest disagrees with the bundle.
    fn manifest_differences(&self, m: &Manifest) -> Vec<String> {
        let mut found = Vec::new();
        // The files the manifest must list: the members but the manifest
        // and its signature.
        let files = match m.format.as_str() {
            FORMAT => &MEMBERS[..4],
            FORMAT_2 => &MEMBERS_2[..5],
            _ => {
                found.push(format!(
                    "format {:?} is not {FORMAT:?} nor {FORMAT_2:?}",
                    m.format
                ));
                if self.blobs_read {
                    &MEMBERS_2[..5]
                } else {
                    &MEMBERS[..4]
                }
            }
        };
        if let Some(cp) = &self.checkpoint {
            if m.origin != cp.origin {
                found.push(format!("origin {:?} is not the checkpoint's", m.origin));
            }
            if m.checkpoint_size != cp.size || m.checkpoint_root != B64.encode(cp.root) {
                found.push(format!(
                    "names the checkpoint at size {} (root {}), not the bundle's",
                    m.checkpoint_size, m.checkpoint_root
                ));
            }
        }
        for name in files {
            match (m.files.get(*name), self.digests.get(*name)) {
                (None, _) => found.push(format!("does not list {name}")),
                (Some(_), None) => {} // the missing file is already a problem
                (Some(want), Some(got)) if want.sha256 != got.sha256 => found.push(format!(
                    "{name} sha256 mismatch: the file was changed (manifest {}, file {})",
                    want.sha256, got.sha256
                )),
                (Some(want), Some(got)) if want.bytes != got.bytes => found.push(format!(
                    "{name} length mismatch (manifest {}, file {})",
                    want.bytes, got.bytes
                )),
                _ => {}
            }
        }
        for name in m.files.keys() {
            if !files.contains(&name.as_str()) {
                found.push(format!(
                    "lists {}, which has no digest in this format",
                    printable(name.as_bytes())
                ));
            }
        }
        if m.event_count != m.indexes.len() as u64 {
            found.push(format!(
                "event_count {} but {} indexes listed",
                m.event_count,
                m.indexes.len()
            ));
        }
        if m.indexes.windows(2).any(|w| w[0] >= w[1]) {
            found.push("the index list is not strictly ascending".into());
        }
        found.extend(index_differences(&m.indexes, &self.indexes));
        found
    }
}

/// The differences between the manifest's index list and the events
/// present, both ascending (out-of-order lists are reported elsewhere).
fn index_differences(listed: &[u64], present: &[u64]) -> Vec<String> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while out.len() < MAX_PROBLEMS && (i < listed.len() || j < present.len()) {
        match (listed.get(i), present.get(j)) {
            (Some(a), Some(b)) if a == b => (i, j) = (i + 1, j + 1),
            (Some(a), Some(b)) if a < b => {
                out.push(format!("lists index {a} but events.ndjson lacks it"));
                i += 1;
            }
            (Some(a), None) => {
                out.push(format!("lists index {a} but events.ndjson lacks it"));
                i += 1;
            }
            (_, Some(b)) => {
                out.push(format!(
                    "does not list index {b}, which events.ndjson holds"
                ));
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

fn b64_hash(s: &str) -> Option<Hash> {
    B64.decode(s).ok()?.try_into().ok()
}

/// Checks one line of events.ndjson against the checkpoint; counts emitter
/// signatures into `emitters`, but for an event with blobs returns what
/// checking its blobs and signature needs, for when blobs.bin is read.
fn check_line(
    line: EventLine,
    cp: &Checkpoint,
    emitters: &mut BTreeMap<String, u64>,
) -> Result<(Kind, Option<BlobEvent>), String> {
    let index = line.index;
    if index >= cp.size {
        return Err(format!(
            "index is beyond the checkpoint's tree size {}",
            cp.size
        ));
    }
    let entry = B64
        .decode(&line.entry)
        .map_err(|_| "entry is not base64".to_string())?;
    if entry.len() > MAX_ENTRY_SIZE {
        return Err("entry is longer than 65535 bytes".into());
    }
    let leaf = record_hash(&entry);
    if b64_hash(&line.leaf_hash) != Some(leaf) {
        return Err("leaf_hash is not the hash of the entry".into());
    }
    if line.inclusion_proof.len() > MAX_PROOF_LEN {
        return Err("inclusion proof is too long".into());
    }
    let proof = line
        .inclusion_proof
        .iter()
        .map(|h| b64_hash(h))
        .collect::<Option<Vec<Hash>>>()
        .ok_or_else(|| "inclusion proof holds a hash that is not base64 of 32 bytes".to_string())?;
    check_record(&proof, cp.size, &cp.root, index, &leaf)
        .map_err(|_| "inclusion proof does not lead to the checkpoint root".to_string())?;
    let stored = decode_stored(&entry).map_err(|e| format!("entry: {}", describe(&e)))?;

    let (kind, event, signature, slots) = match (&stored.sealed, &line.opening, stored.plain) {
        (Some(sealed), Some(opening), _) => {
            let opening = B64
                .decode(opening)
                .map_err(|_| "opening is not base64".to_string())?;
            let opened = sealed
                .check_opening(opening)
                .map_err(|e| format!("opening: {}", describe(&e)))?;
            if !index_matches(&stored.index, &opened.entry.event) {
                return Err(
                    "opening: the event's clear fields differ from the entry's index".into(),
                );
            }
            let e = opened.entry;
            (
                Kind::SealedWithContent,
                Some(e.event),
                e.signature,
                opened.blobs,
            )
        }
        (None, Some(_), _) => return Err("opening given for an entry that is not sealed".into()),
        (_, None, Some(plain)) => (Kind::Plain, Some(plain.event), plain.signature, vec![]),
        (_, None, None) => (Kind::SealedWithoutContent, None, None, vec![]),
    };
    match (&line.event, &event) {
        (None, _) => {}
        (Some(given), Some(proven)) if given.as_object() == Some(proven) => {}
        (Some(_), Some(_)) => {
            return Err("the \"event\" field differs from the event the entry proves".into())
        }
        (Some(_), None) => {
            return Err("an \"event\" field for a sealed entry without its opening".into())
        }
    }
    // The opening's slots name the entry's blobs (check_opening): with an
    // opening, the line lists them all; without one, none.
    let refs = stored
        .sealed
        .as_ref()
        .and_then(|s| s.v3.as_ref())
        .map_or(&[][..], |v3| v3.blobs.as_slice());
    let blobs: Vec<ExpectedBlob> = match &line.blobs {
        None if slots.is_empty() => vec![],
        None => {
            return Err(format!(
                "the entry lists {} blob(s) but the line has no \"blobs\" field",
                refs.len()
            ))
        }
        Some(_) if slots.is_empty() => {
            return Err(
                "a \"blobs\" field for an entry without blobs, or without its opening".into(),
            )
        }
        Some(listed) => {
            if listed.len() != refs.len() {
                return Err(format!(
                    "\"blobs\" lists {} blob(s), the entry {}",
                    listed.len(),
                    refs.len()
                ));
            }
            let mut blobs = Vec::with_capacity(refs.len());
            for ((l, r), slot) in listed.iter().zip(refs).zip(slots) {
                if l.pointer != r.pointer || l.bytes != r.size {
                    return Err(format!(
                        "\"blobs\": {} of {} bytes, but the entry lists {} of {} bytes there",
                        printable(l.pointer.as_bytes()),
                        l.bytes,
                        printable(r.pointer.as_bytes()),
                        r.size
                    ));
                }
                blobs.push(ExpectedBlob {
                    pointer: slot.pointer,
                    size: r.size,
                    commitment: r.commitment,
                    salt: slot.salt,
                });
            }
            blobs
        }
    };
    let (Some(sig), Some(event)) = (&signature, &event) else {
        let waits = (!blobs.is_empty()).then_some(BlobEvent {
            index,
            blobs,
            signed: None,
        });
        return Ok((kind, waits));
    };
    if blobs.is_empty() {
        let key =
            verify_entry_signature(event, sig).map_err(|e| format!("emitter signature: {e}"))?;
        *emitters.entry(key).or_default() += 1;
        return Ok((kind, None));
    }
    // The signature covers the whole event: checked once the blobs are read.
    let total = blobs
        .iter()
        .try_fold(0u64, |sum, b| sum.checked_add(b.size));
    if total.is_none_or(|t| t > MAX_EVENT_BLOBS) {
        return Err(format!(
            "an emitter-signed event with more than {MAX_EVENT_BLOBS} bytes of blobs, \
             the most this format holds to check a signature"
        ));
    }
    let signed = (
        serde_json::to_vec(event).map_err(|e| e.to_string())?,
        serde_json::to_vec(sig).map_err(|e| e.to_string())?,
    );
    Ok((
        kind,
        Some(BlobEvent {
            index,
            blobs,
            signed: Some(signed),
        }),
    ))
}

/// The event a signature covers: the event without its blobs, with each
/// blob's content put back at its pointer, in the entry's order. Its
/// values are bounded as an ingested batch's are.
fn signed_event(
    event: &[u8],
    blobs: &[ExpectedBlob],
    held: Vec<Vec<u8>>,
) -> Result<Map<String, Value>, String> {
    let mut event: Map<String, Value> =
        serde_json::from_slice(event).map_err(|e| format!("the event: {e}"))?;
    let mut values = 0usize;
    for (b, content) in blobs.iter().zip(held) {
        let name = printable(b.pointer.as_bytes());
        let value = bounded::value(&content).map_err(|e| match e {
            bounded::Refused::TooLarge => {
                format!("blob {name}: more than {MAX_JSON_NODES} JSON values")
            }
            bounded::Refused::Json(e) => format!("blob {name}: its content is not JSON: {e}"),
            _ => format!("blob {name}: its content is not JSON"),
        })?;
        values += json_values(&value);
        if values > MAX_JSON_NODES {
            return Err(format!(
                "its blobs hold more than {MAX_JSON_NODES} JSON values in all"
            ));
        }
        put_member(&mut event, &b.pointer, value)
            .map_err(|e| format!("blob {name}: {}", describe(&e)))?;
    }
    Ok(event)
}

/// The number of JSON values in `v`, itself included.
fn json_values(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(json_values).sum(),
        Value::Object(o) => o.values().map(json_values).sum(),
        _ => 0,
    }
}
