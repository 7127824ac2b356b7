//! Export bundles, format `aiaudit-bundle 1`: a set of log entries with
//! everything needed to check them offline, years later, by someone who
//! trusts nothing but the log's verifier key.
//!
//! A bundle is a gzip'd tar of exactly these members, in this order
//! (docs/format.md, "Export bundles"):
//!
//! ```text
//! README.txt      how to check the bundle, for a non-technical recipient
//! log.vkey        the log's verifier key (a convenience: trust your own copy)
//! checkpoint      the signed checkpoint every inclusion proof leads to
//! events.ndjson   one line per event: index, entry, leaf hash, inclusion proof[, opening][, event]
//! manifest.json   format, origin, checkpoint, filters, indexes, SHA-256 and length of the files above
//! manifest.sig    a signed note by the log's key over the SHA-256 of manifest.json
//! ```
//!
//! [`BundleWriter`] (or [`write_bundle`]) writes one, streaming the events
//! through a spool so a large export does not sit in memory;
//! [`verify_bundle`] checks one, streaming too. Both work on readers and
//! writers only: no files, no network.
//!
//! A bundle is hostile input to the verifier: members, lines and counts are
//! bounded, and nothing in it is trusted that is not recomputed.

mod verify;
mod write;

pub use verify::{verify_bundle, BundleError, BundleReport, Problem, MAX_PROBLEMS};
pub use write::{write_bundle, BuildError, BundleEvent, BundleWriter};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The format name, in `manifest.json` (`"format"`).
pub const FORMAT: &str = "aiaudit-bundle 1";

/// The first line of the signed note in `manifest.sig`. A checkpoint's
/// second line is a decimal tree size, and this note's second line never
/// is, so the log's key signing it can never be taken for a checkpoint.
pub const SIG_HEADER: &str = "aiaudit export bundle v1";

/// Member names, in the order they must appear in the tar.
pub const README: &str = "README.txt";
pub const VKEY: &str = "log.vkey";
pub const CHECKPOINT: &str = "checkpoint";
pub const EVENTS: &str = "events.ndjson";
pub const MANIFEST: &str = "manifest.json";
pub const MANIFEST_SIG: &str = "manifest.sig";
pub const MEMBERS: [&str; 6] = [README, VKEY, CHECKPOINT, EVENTS, MANIFEST, MANIFEST_SIG];

/// The largest tar member the verifier reads (events.ndjson).
pub const MAX_MEMBER: u64 = 1 << 30;
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
    /// Base64 of the opening of a sealed (v2) entry, when content was exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    opening: Option<String>,
    /// For readers: the event the entry (and opening) prove. The verifier
    /// recomputes it and refuses a line where it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<serde_json::Value>,
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

/// The README.txt of a bundle of the log `origin` at tree size `size`.
pub(crate) fn readme(origin: &str, size: u64) -> String {
    format!(
        "\
AI audit log export bundle (format {FORMAT})
=============================================

This file is one of six in this archive. Together they prove that the
events in events.ndjson are recorded in the tamper-evident audit log
{origin:?}, at the positions given, in the log as it stood at {size}
entries (the signed 'checkpoint').

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
