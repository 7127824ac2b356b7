//! Export bundles, formats `aiaudit-bundle 1` and `aiaudit-bundle 2`: a set
//! of log entries with everything needed to check them offline, years
//! later, by someone who trusts nothing but the log's verifier key.
//!
//! A bundle is a gzip'd tar of exactly these members, in this order
//! (docs/format.md, "Export bundles"):
//!
//! ```text
//! README.txt      how to check the bundle, for a non-technical recipient
//! log.vkey        the log's verifier key (a convenience: trust your own copy)
//! checkpoint      the signed checkpoint every inclusion proof leads to
//! events.ndjson   one line per event: index, entry, leaf hash, inclusion proof[, opening][, blobs][, event]
//! blobs.bin       format 2 only: the content of every exported blob, back to back
//! manifest.json   format, origin, checkpoint, filters, indexes, SHA-256 and length of the files above
//! manifest.sig    a signed note by the log's key over the SHA-256 of manifest.json
//! ```
//!
//! Format 2 is format 1 plus `blobs.bin`: a bundle holds it exactly when an
//! exported event (a v3 entry with its opening) has members stored out of
//! line. `blobs.bin` is their content (canonical JSON) back to back, lines
//! in order, blobs in their entry's order; each such line's `blobs` field
//! gives every blob's pointer, offset and length, and its `event` lacks
//! those members. A blob checks when SHA-256(salt || content), the salt
//! from the opening, is the commitment its entry lists. The verifier
//! checks every blob so, streaming, and an emitter signature over the
//! whole event once that event's blobs are read. A bundle without blobs is
//! format 1, byte for byte as before.
//!
//! [`BundleWriter`] (or [`write_bundle`]) writes one, streaming the events
//! and the blobs through two spools so a large export does not sit in
//! memory; [`verify_bundle`] checks one, streaming too. Both work on readers
//! and writers only: no files, no network.
//!
//! A bundle is hostile input to the verifier: members, lines and counts are
//! bounded, and nothing in it is trusted that is not recomputed.

mod verify;
mod write;

pub use verify::{verify_bundle, BundleError, BundleReport, Problem, MAX_PROBLEMS};
pub use write::{write_bundle, BuildError, BundleEvent, BundleWriter};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The format name, in `manifest.json` (`"format"`), of a bundle without blobs.
pub const FORMAT: &str = "aiaudit-bundle 1";
/// The format name of a bundle with blobs (`blobs.bin`).
pub const FORMAT_2: &str = "aiaudit-bundle 2";

/// The first line of the signed note in `manifest.sig`. A checkpoint's
/// second line is a decimal tree size, and this note's second line never
/// is, so the log's key signing it can never be taken for a checkpoint.
pub const SIG_HEADER: &str = "aiaudit export bundle v1";

/// Member names, in the order they must appear in the tar.
pub const README: &str = "README.txt";
pub const VKEY: &str = "log.vkey";
pub const CHECKPOINT: &str = "checkpoint";
pub const EVENTS: &str = "events.ndjson";
pub const BLOBS: &str = "blobs.bin";
pub const MANIFEST: &str = "manifest.json";
pub const MANIFEST_SIG: &str = "manifest.sig";
/// The members of format 1.
pub const MEMBERS: [&str; 6] = [README, VKEY, CHECKPOINT, EVENTS, MANIFEST, MANIFEST_SIG];
/// The members of format 2.
pub const MEMBERS_2: [&str; 7] = [
    README,
    VKEY,
    CHECKPOINT,
    EVENTS,
    BLOBS,
    MANIFEST,
    MANIFEST_SIG,
];

/// The largest tar member the verifier reads (events.ndjson), blobs.bin aside.
pub const MAX_MEMBER: u64 = 1 << 30;
/// The largest `blobs.bin`. It is streamed, never held: this bounds work.
pub const MAX_BLOBS: u64 = 64 << 30;
/// The most blob content of one emitter-signed event: the verifier holds
/// it to rebuild the event its signature covers.
pub const MAX_EVENT_BLOBS: u64 = 64 << 20;
/// The most the verifier holds, between events.ndjson and blobs.bin, for
/// the events with blobs: per blob its pointer and 96 bytes, per
/// emitter-signed event the compact JSON of the event without its blobs
/// and of its signature.
pub const MAX_PENDING: u64 = 256 << 20;
/// The largest `manifest.json` (its index list grows with the events).
pub const MAX_MANIFEST: u64 = 256 << 20;
/// The largest of the small members (README, key, checkpoint, signature).
pub const MAX_SMALL_MEMBER: u64 = 64 << 10;
/// The longest line of `events.ndjson`, newline included. An entry is at
/// most 65,535 bytes, its opening about as much; base64 and a proof of 64
/// hashes stay far below this.
pub const MAX_EVENT_LINE: usize = 1 << 20;

/// `manifest.json`. Written compact with members in this order; checked
/// strictly (unknown members are refused: a new member is a new format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The log's origin, as in the checkpoint.
    pub origin: String,
    /// Tree size of the checkpoint the proofs lead to.
    pub checkpoint_size: u64,
    /// Its root hash, base64.
    pub checkpoint_root: String,
    /// When the bundle was made (RFC 3339, as the exporter gave it).
    pub created: String,
    /// The query that selected the events, as the exporter gave it.
    pub filters: serde_json::Value,
    /// Number of lines of events.ndjson.
    pub event_count: u64,
    /// Log index of every event, ascending.
    pub indexes: Vec<u64>,
    /// Every other member but manifest.sig: SHA-256 and length.
    pub files: BTreeMap<String, FileDigest>,
}

/// The SHA-256 (lowercase hex) and length of one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    pub sha256: String,
    pub bytes: u64,
}

/// One line of events.ndjson.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventLine {
    /// Position in the log.
    index: u64,
    /// Base64 of the exact entry bytes the leaf hashes.
    entry: String,
    /// Base64 of SHA-256(0x00 || entry).
    leaf_hash: String,
    /// Base64 hashes of the RFC 6962 audit path to the checkpoint root.
    inclusion_proof: Vec<String>,
    /// Base64 of the opening of a sealed (v2, v3) entry, when content was exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    opening: Option<String>,
    /// Format 2: where the content of each blob the entry lists lies in
    /// blobs.bin, in the entry's order. Only with an opening, never empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blobs: Option<Vec<BlobLine>>,
    /// For readers: the event the entry (and opening) prove. The verifier
    /// recomputes it and refuses a line where it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<serde_json::Value>,
}

/// One blob of an event line: the pointer its entry lists, and the range
/// of blobs.bin that holds its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlobLine {
    pointer: String,
    offset: u64,
    bytes: u64,
}

/// What the verifier holds for one event with blobs from its line until
/// its blobs are read, counted against [`MAX_PENDING`]: per blob its
/// pointer and 96 bytes (size, commitment, salt, offset); for an
/// emitter-signed event also the compact JSON of the event without its
/// blobs and of its signature. The writer counts the same way, so it never
/// makes a bundle the verifier refuses for it.
pub(crate) fn pending_cost<'a>(
    pointers: impl IntoIterator<Item = &'a str>,
    signed_json: usize,
) -> u64 {
    let blobs: u64 = pointers.into_iter().map(|p| p.len() as u64 + 96).sum();
    blobs + signed_json as u64
}

/// The body of the note in manifest.sig, for a manifest with this SHA-256.
pub fn sig_body(manifest_sha256: &[u8; 32]) -> String {
    format!("{SIG_HEADER}\n{MANIFEST} sha256 {}\n", hex(manifest_sha256))
}

/// An entry or opening error as one phrase: the field (when there is one) and what is wrong.
pub(crate) fn describe(e: &aiaudit_event::EventError) -> String {
    if e.pointer.is_empty() {
        e.detail.clone()
    } else {
        format!("{} {}", e.pointer, e.detail)
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An incremental SHA-256 with a byte count: one per member.
#[derive(Clone)]
pub(crate) struct Digest {
    ctx: ring::digest::Context,
    bytes: u64,
}

impl Digest {
    pub(crate) fn new() -> Self {
        Digest {
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            bytes: 0,
        }
    }
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
        self.bytes += data.len() as u64;
    }
    /// Bytes hashed so far.
    pub(crate) fn len(&self) -> u64 {
        self.bytes
    }
    pub(crate) fn finish(self) -> ([u8; 32], u64) {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.ctx.finish().as_ref());
        (out, self.bytes)
    }
    pub(crate) fn file_digest(self) -> FileDigest {
        let (h, bytes) = self.finish();
        FileDigest {
            sha256: hex(&h),
            bytes,
        }
    }
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let mut d = Digest::new();
    d.update(data);
    d.finish().0
}

/// The README.txt of a bundle of the log `origin` at tree size `size`,
/// of format 2 (with blobs.bin) or 1.
pub(crate) fn readme(origin: &str, size: u64, with_blobs: bool) -> String {
    let intro = if with_blobs {
        format!(
            "\
AI audit log export bundle (format {FORMAT_2})
=============================================

This file is one of seven in this archive. Together they prove that the
events in events.ndjson, with their large content in blobs.bin, are
recorded in the tamper-evident audit log {origin:?}, at the positions
given, in the log as it stood at {size} entries (the signed 'checkpoint')."
        )
    } else {
        format!(
            "\
AI audit log export bundle (format {FORMAT})
=============================================

This file is one of six in this archive. Together they prove that the
events in events.ndjson are recorded in the tamper-evident audit log
{origin:?}, at the positions given, in the log as it stood at {size}
entries (the signed 'checkpoint')."
        )
    };
    format!(
        "\
{intro}

How to check it
---------------
1. Get the log's verifier key from a channel you trust: from the log's
   operator in person, a signed letter, their published documentation,
   NOT from this archive. It looks like
       {origin}+<8 hex digits>+<base64>
2. Install the aiaudit tool and run, without any network access needed:
       aiaudit verify --bundle <this file> --vkey '<the key>'
3. 'OK' means: every file is intact and listed in the manifest, the
   manifest and the checkpoint are signed by that key, every event is
   proven to be in the log, and sealed content and emitter signatures
   match what was logged. 'FAILED' names the file and event at fault:
   then this archive is not what the log signed.

What it proves, and what not
----------------------------
It proves these entries are in the log at these positions under that
checkpoint, and that the log's operator issued this set of events for
the query in manifest.json. It does not prove the log holds no other
events about the matter, nor that what was logged was true.

log.vkey inside the archive is only a convenience: checking with it
alone proves the archive is consistent with itself, not who made it.
"
    )
}

#[cfg(test)]
mod tests;
