//! Encryption keys at rest.
//!
//! Event content is sealed under data keys (see `aiaudit_event::envelope`):
//! one current key per tenant, and one per (tenant, subject) for events that
//! name a data subject. Data keys are stored wrapped by the master key (see
//! [`master`]) in the keyring file (or a [`RecordStore`] the nodes of a
//! shared log all use), fixed-size records written in place so
//! that destroying a key (crypto-shredding) overwrites its wrapped bytes.
//! Each tenant also has an HMAC salt, used for sensitive fields and subject
//! tags, which never rotates (so searching by HMAC keeps working).

pub mod family;
#[cfg(feature = "fault-injection")]
pub mod io_faults;
pub mod master;
mod members;
mod random;
pub mod records;
mod ring;
mod subject_index;

pub use master::{KeyProvider, LocalMasterKey, MasterKeySource, Wrapped};
pub use members::{MEMBERS_DIR, MEMBERS_VERSION};
pub use records::{
    record_kind, record_live, record_subject, FileRecords, Record, RecordStore, SubjectCounts,
    KEYRING_FILE, KIND_DERIVED_KEY, KIND_FAMILY, KIND_SALT, KIND_SUBJECT_KEY, KIND_TENANT_KEY,
    RECORD_LEN, TAG_AT,
};
pub use ring::{
    valid_record, KeyChoice, Keyring, KeyringStats, PassProgress, DEFAULT_MAX_KEY_AGE_SECS,
    HMAC_PREFIX, SUBJECT_CACHE,
};
pub use subject_index::{INDEX_DIR, INDEX_VERSION as SUBJECT_INDEX_VERSION, OLD_INDEX_FILE};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("keyring I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Key(String),
    #[error("keyring file is damaged: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Creates directory `path` (if missing) readable by its owner only, like
/// the rest of the data directory, whatever the umask.
pub(crate) fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// Refuses a file holding keys that other users may read.
pub(crate) fn check_private(path: &std::path::Path, mode: u32) -> Result<()> {
    if mode & 0o077 != 0 {
        return Err(Error::Key(format!(
            "{} is readable by other users (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}
