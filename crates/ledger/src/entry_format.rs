//! Which sealed entry format this node writes: the upgrade gate.
//!
//! A build that writes format v3 must not strand a log that older builds
//! still serve (several nodes mid-upgrade) or may have to serve again (a
//! rollback): they cannot read v3. So a log records the newest format its
//! nodes may write, and only an operator raises it (`aiaudit upgrade
//! finalize`, or `--entry-format 3|4`). A new log starts at the latest:
//! there is nothing older to roll back to. The record is a file in the
//! data directory, or a document in the shared database.
//!
//! Format 4 is format 3's entries sealed under subject keys derived from
//! families (`aiaudit_keyring::family`): the entries' bytes are v3's, but a
//! build that knows no families can neither open a subject's events nor
//! erase a subject, so it must not serve the log (it refuses a gate newer
//! than it knows).
//!
//! Format 5 is format 4 whose openings may be compressed with the built-in
//! openings dictionary (`aiaudit_event::sealed_v3::OPENINGS_DICTIONARY`,
//! flags 0x03): a build without the dictionary cannot open those entries.

use aiaudit_store::Storage;
use anyhow::{bail, Context};
use std::path::Path;

/// The gate's name: a file in the data directory, or a shared document.
pub const GATE: &str = "entry-format";
/// The newest sealed format this build writes.
pub const LATEST: u8 = 5;
/// Openings compressed with the openings dictionary.
pub const DICTIONARY: u8 = 5;
/// Subjects' keys derived from subject key families.
pub const FAMILIES: u8 = 4;
/// Entries in format v3, each subject's key a random key of its own.
pub const V3: u8 = 3;
/// The format logs written by builds before v3 keep until finalized.
pub const PREVIOUS: u8 = 2;

/// Where a log keeps its gate.
#[derive(Clone, Copy)]
pub enum Home<'a> {
    /// A file in the data directory (the embedded log).
    Dir(&'a Path),
    /// A document in the database several nodes share.
    Shared(&'a dyn Storage),
}

impl<'a> Home<'a> {
    /// The gate's home for a log opened as `store` with `data_dir`.
    pub fn of(data_dir: &'a Path, store: &'a dyn Storage) -> Home<'a> {
        if store.shared() {
            Home::Shared(store)
        } else {
            Home::Dir(data_dir)
        }
    }
}

/// The format the gate allows, `None` when the log has no gate yet.
pub fn read_gate(home: Home<'_>) -> anyhow::Result<Option<u8>> {
    let body = match home {
        // A shared store answers version 0 (and no body) for a document never saved.
        Home::Shared(store) => store
            .load_document(GATE)?
            .filter(|(_, version)| *version > 0)
            .map(|(b, _)| b),
        Home::Dir(data_dir) => match std::fs::read(data_dir.join(GATE)) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).context("reading the entry-format gate"),
        },
    };
    let Some(body) = body else { return Ok(None) };
    let text = String::from_utf8_lossy(&body);
    let v: u8 = text
        .trim()
        .parse()
        .with_context(|| format!("the entry-format gate holds {:?}", text.trim()))?;
    if v > LATEST {
        bail!(
            "this log's nodes write entry format {v}, newer than this build reads ({LATEST}); \
             run a newer build"
        );
    }
    Ok(Some(v))
}

/// Raises the gate to `format` (durably). Never lowers it: entries already
/// written in a newer format stay unreadable to older builds.
pub fn raise_gate(home: Home<'_>, format: u8) -> anyhow::Result<u8> {
    if let Some(now) = read_gate(home)? {
        if now >= format {
            return Ok(now);
        }
    }
    let body = format!("{format}\n");
    match home {
        Home::Shared(store) => {
            for _ in 0..10 {
                let version = store.load_document(GATE)?.map_or(0, |(_, v)| v);
                if store.save_document(GATE, body.as_bytes(), version)? {
                    return Ok(format);
                }
            }
            bail!("the entry-format gate kept changing under us; try again");
        }
        Home::Dir(data_dir) => {
            crate::registry::write_private(&data_dir.join(GATE), body.as_bytes())?
        }
    }
    Ok(format)
}

/// The sealed format this node writes, given the operator's choice
/// (`--entry-format`) and the log's gate.
pub fn decide(data_dir: &Path, store: &dyn Storage, chosen: Option<u8>) -> anyhow::Result<u8> {
    let home = Home::of(data_dir, store);
    match chosen {
        Some(PREVIOUS) => Ok(PREVIOUS),
        // Never below what the gate already allows.
        Some(f @ V3..=LATEST) => raise_gate(home, f),
        Some(other) => bail!("entry format {other} is not one this build writes (2, 3, 4 or 5)"),
        None => match read_gate(home)? {
            Some(v) => Ok(v),
            None => match last_entry(store)? {
                // A new log: nothing older to roll back to.
                None => raise_gate(home, LATEST),
                // One whose last entry is already format 3 (a restored
                // backup, a lost gate file): no build before v3 can serve
                // it, so nothing is kept by staying at format 2. Gate 5 if
                // its last entry used the openings dictionary, 4 if its
                // keyring holds a family: a build without them must not
                // serve it. (An entry before the last could still use the
                // dictionary; reading them all would make a restart as slow
                // as the log is long.)
                Some(last) if last.first() == Some(&aiaudit_event::sealed_v3::VERSION_BYTE) => {
                    let ring = data_dir.join(aiaudit_keyring::KEYRING_FILE);
                    let families = matches!(home, Home::Dir(_))
                        && ring.exists()
                        && crate::keys::holds_families(&ring)?;
                    let gate = if aiaudit_event::sealed_v3::uses_openings_dictionary(&last) {
                        DICTIONARY
                    } else if families {
                        FAMILIES
                    } else {
                        V3
                    };
                    raise_gate(home, gate)
                }
                Some(_) => Ok(PREVIOUS),
            },
        },
    }
}

/// The log's last entry, if any.
fn last_entry(store: &dyn Storage) -> anyhow::Result<Option<Vec<u8>>> {
    match store.size().checked_sub(1) {
        Some(last) => Ok(Some(store.read_entry(last)?)),
        None => Ok(None),
    }
}
