//! Checking a bundle offline, in one streaming pass: the members are read
//! in their fixed order, so the key and checkpoint are known before the
//! first event, and the manifest (last) is compared with what was read.

use crate::{
    describe, hex, sha256, sig_body, Digest, EventLine, FileDigest, Manifest, CHECKPOINT, EVENTS,
    FORMAT, MANIFEST, MANIFEST_SIG, MAX_EVENT_LINE, MAX_MANIFEST, MAX_MEMBER, MAX_SMALL_MEMBER,
    MEMBERS, README, VKEY,
};
use aiaudit_event::envelope::{decode_stored, index_matches};
use aiaudit_event::signature::verify_entry_signature;
use aiaudit_tlog::{
    check_record, open_note, record_hash, Checkpoint, Hash, Verifier, MAX_ENTRY_SIZE,
};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read};

/// At most this many problems are listed; the rest are only counted.
pub const MAX_PROBLEMS: usize = 100;
/// The longest audit path: a tree of at most 2^64 leaves.
const MAX_PROOF_LEN: usize = 64;
/// The most members a bundle may have, extra ones included: with the size
/// bound, this bounds the work a hostile archive can cause.
const MAX_MEMBERS: usize = 16;
/// Bytes read after the end of the tar, to check the gzip stream ends cleanly.
const MAX_TRAILER: u64 = 1 << 20;

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
    /// Emitter batch signatures verified, and per emitter key how many.
    pub emitter_signatures: u64,
    pub emitters: BTreeMap<String, u64>,
    /// The smallest and largest log index exported.
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    pub warnings: Vec<String>,
}

/// Checks a bundle fully offline: the manifest's signature, every file's
/// SHA-256 and length, that no file is missing or extra, the checkpoint's
/// signature, every event's leaf hash and inclusion proof, openings of
/// sealed entries, emitter batch signatures, and that the manifest's index
/// list is exactly the events present.
///
/// `trusted_vkey` is the log's verifier key from a trusted channel. Without
/// it the key inside the bundle is used, which proves only that the bundle
/// is consistent with itself (the report says so in `warnings`).
pub fn verify_bundle<R: Read>(
    input: R,
    trusted_vkey: Option<&str>,
) -> Result<BundleReport, BundleError> {
    let mut c = Check::default();
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
        if size > MAX_MEMBER {
            return Err(Problem {
                file: name,
                index: None,
                what: format!("{size} bytes, more than the {MAX_MEMBER} this format allows"),
            });
        }
        let Some(pos) = MEMBERS.iter().position(|m| *m == name) else {
            c.problem(
                &name,
                None,
                format!("an extra file, not part of format {FORMAT}"),
            );
            continue;
        };
        if pos < next {
            c.problem(&name, None, "appears twice, or out of order");
            continue;
        }
        for m in &MEMBERS[next..pos] {
            c.problem(m, None, format!("missing, or not before {name}"));
        }
        next = pos + 1;
        if entry.header().entry_type() != tar::EntryType::Regular {
            c.problem(&name, None, "not a regular file");
            continue;
        }
        let limit = match name.as_str() {
            EVENTS => MAX_MEMBER,
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
        } else {
            let mut data = Vec::with_capacity(size.min(MAX_SMALL_MEMBER) as usize);
            (&mut entry)
                .take(limit)
                .read_to_end(&mut data)
                .map_err(|e| damaged(&name, e))?;
            c.small_member(&name, data);
        }
    }
    for m in &MEMBERS[next..] {
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
    digests: BTreeMap<String, FileDigest>,
    manifest: Option<(Manifest, [u8; 32])>,
    manifest_sig: Option<String>,
    indexes: Vec<u64>,
    plain: u64,
    sealed_with_content: u64,
    sealed_without_content: u64,
    emitters: BTreeMap<String, u64>,
    warnings: Vec<String>,
}

/// What one verified event line was.
enum Kind {
    Plain,
    SealedWithContent,
    SealedWithoutContent,
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
            let Some(cp) = &self.checkpoint else {
                continue; // the missing checkpoint is already a problem
            };
            match check_line(text, cp, &mut self.emitters) {
                Ok((index, kind)) => {
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
                }
                Err((Some(index), what)) => {
                    self.indexes.push(index);
                    self.problem(EVENTS, Some(index), what);
                }
                Err((None, what)) => self.problem(EVENTS, None, format!("line {number}: {what}")),
            }
        }
        self.digests.insert(EVENTS.into(), digest.file_digest());
        Ok(())
    }

    /// Checks the manifest and its signature against what was read.
    fn conclude(mut self) -> Result<BundleReport, BundleError> {
        self.check_manifest_sig();
        self.check_manifest();
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
            created: manifest.created,
            filters: manifest.filters,
            vkey: key.to_vkey(),
            key_trusted: self.trusted.is_some(),
            events: self.indexes.len() as u64,
            plain: self.plain,
            sealed_with_content: self.sealed_with_content,
            sealed_without_content: self.sealed_without_content,
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
    }

    /// Everything in which the manifest disagrees with the bundle.
    fn manifest_differences(&self, m: &Manifest) -> Vec<String> {
        let mut found = Vec::new();
        if m.format != FORMAT {
            found.push(format!("format {:?} is not {FORMAT:?}", m.format));
        }
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
        for name in &MEMBERS[..4] {
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
            if !MEMBERS[..4].contains(&name.as_str()) {
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

/// Checks one line of events.ndjson (without its newline) against the
/// checkpoint; counts emitter signatures into `emitters`. The error carries
/// the event's index when the line got that far.
fn check_line(
    text: &[u8],
    cp: &Checkpoint,
    emitters: &mut BTreeMap<String, u64>,
) -> Result<(u64, Kind), (Option<u64>, String)> {
    let line: EventLine =
        serde_json::from_slice(text).map_err(|e| (None, format!("not a valid event line: {e}")))?;
    let index = line.index;
    let fail = |what: String| (Some(index), what);
    if index >= cp.size {
        return Err(fail(format!(
            "index is beyond the checkpoint's tree size {}",
            cp.size
        )));
    }
    let entry = B64
        .decode(&line.entry)
        .map_err(|_| fail("entry is not base64".into()))?;
    if entry.len() > MAX_ENTRY_SIZE {
        return Err(fail("entry is longer than 65535 bytes".into()));
    }
    let leaf = record_hash(&entry);
    if b64_hash(&line.leaf_hash) != Some(leaf) {
        return Err(fail("leaf_hash is not the hash of the entry".into()));
    }
    if line.inclusion_proof.len() > MAX_PROOF_LEN {
        return Err(fail("inclusion proof is too long".into()));
    }
    let proof = line
        .inclusion_proof
        .iter()
        .map(|h| b64_hash(h))
        .collect::<Option<Vec<Hash>>>()
        .ok_or_else(|| {
            fail("inclusion proof holds a hash that is not base64 of 32 bytes".into())
        })?;
    check_record(&proof, cp.size, &cp.root, index, &leaf)
        .map_err(|_| fail("inclusion proof does not lead to the checkpoint root".into()))?;
    let stored = decode_stored(&entry).map_err(|e| fail(format!("entry: {}", describe(&e))))?;

    let (kind, event, signature) = match (&stored.sealed, &line.opening, stored.plain) {
        (Some(sealed), Some(opening), _) => {
            let opening = B64
                .decode(opening)
                .map_err(|_| fail("opening is not base64".into()))?;
            let opened = sealed
                .check_opening(opening)
                .map_err(|e| fail(format!("opening: {}", describe(&e))))?;
            if !index_matches(&stored.index, &opened.entry.event) {
                return Err(fail(
                    "opening: the event's clear fields differ from the entry's index".into(),
                ));
            }
            let e = opened.entry;
            (Kind::SealedWithContent, Some(e.event), e.signature)
        }
        (None, Some(_), _) => {
            return Err(fail("opening given for an entry that is not sealed".into()))
        }
        (_, None, Some(plain)) => (Kind::Plain, Some(plain.event), plain.signature),
        (_, None, None) => (Kind::SealedWithoutContent, None, None),
    };
    match (&line.event, &event) {
        (None, _) => {}
        (Some(given), Some(proven)) if given.as_object() == Some(proven) => {}
        (Some(_), Some(_)) => {
            return Err(fail(
                "the \"event\" field differs from the event the entry proves".into(),
            ))
        }
        (Some(_), None) => {
            return Err(fail(
                "an \"event\" field for a sealed entry without its opening".into(),
            ))
        }
    }
    if let (Some(sig), Some(event)) = (&signature, &event) {
        let key = verify_entry_signature(event, sig)
            .map_err(|e| fail(format!("emitter signature: {e}")))?;
        *emitters.entry(key).or_default() += 1;
    }
    Ok((index, kind))
}
