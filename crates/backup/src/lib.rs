//! Backups of an aiaudit log, and restoring them.
//!
//! What it is for: taking a backup that is consistent with a signed
//! checkpoint ([`create`]), checking that a backup would restore
//! ([`verify`]), and restoring one into a new data directory ([`restore`]).
//! Backups go to local directories or S3 ([`Location`]); their format is in
//! [`layout`] and docs/format.md.
//!
//! The log is append-only, so a backup is a range of entries plus the signed
//! checkpoint that commits to everything up to its end: a full backup holds
//! `[0, size)`, an incremental one `[parent size, size)`, each with the blobs
//! (out-of-line event content) its entries list. Verification never trusts
//! a manifest: it rehashes every file, recomputes the RFC 6962 root from the
//! entries and compares it with each signed checkpoint of the chain, and
//! checks every blob against the SHA-256 its entry logs.
//!
//! The log is read through a [`LogSource`] (the CLI's is the server's HTTP
//! read API), so this crate knows no HTTP client. Functions are async and
//! expect a Tokio runtime; restore writes through the blocking
//! [`aiaudit_store::FsStore`] on the calling thread.
//!
//! Keys are never in a backup: the log's signing key and the encryption
//! master key must be kept apart. The public verifier key and the (wrapped)
//! encryption keyring, when the server serves one, are.

pub mod layout;
mod location;
mod restore;
mod verify;

mod create;

pub use create::{create, BackupSummary};
pub use layout::{Kind, Manifest};
pub use location::Location;
pub use restore::{restore, RestoreReport};
pub use verify::{verify, Verified};

use std::future::Future;

/// Where a backup reads the log from.
pub trait LogSource: Sync {
    /// The latest signed checkpoint note.
    fn checkpoint(&self) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// The log's verifier key (`<name>+<id>+<key>`), if the source knows it.
    fn verifier_key(&self) -> impl Future<Output = anyhow::Result<Option<String>>> + Send;
    /// The entry bundle of tile `index` holding `width` entries (1..=256):
    /// entries `[index*256, index*256 + width)`.
    fn entry_bundle(
        &self,
        index: u64,
        width: u16,
    ) -> impl Future<Output = anyhow::Result<Vec<u8>>> + Send;
    /// The stored (sealed) bytes of blob `id`: out-of-line event content an
    /// entry lists (docs/format.md, "Blobs").
    fn blob(&self, id: &aiaudit_tlog::Hash)
        -> impl Future<Output = anyhow::Result<Vec<u8>>> + Send;
    /// The length in bytes of the encryption keyring file now, if the log
    /// has one (`None` when there is none). It only ever grows.
    fn keyring_len(&self) -> impl Future<Output = anyhow::Result<Option<u64>>> + Send;
    /// Bytes `[offset, offset + len)` of the keyring file, within a length
    /// [`LogSource::keyring_len`] gave: a keyring of millions of subjects
    /// is copied a piece at a time.
    fn keyring_range(
        &self,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = anyhow::Result<Vec<u8>>> + Send;
}

/// Progress of a long operation, e.g. a progress bar. All methods default to nothing.
pub trait Progress: Sync {
    /// A new phase of `total` units (entries).
    fn begin(&self, _what: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
    fn end(&self) {}
}

/// No progress reporting.
pub struct Quiet;
impl Progress for Quiet {}

#[cfg(test)]
mod tests;
