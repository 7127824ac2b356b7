use std::io;

/// Storage errors. `Io` means "try again later" (503); `Corrupt` names the log
/// index that cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("corrupt data at log index {index}: {detail}")]
    Corrupt { index: u64, detail: String },
    #[error("{0}")]
    Format(String),
    #[error("out of range: {0}")]
    OutOfRange(String),
    #[error("id index: {0}")]
    IdIndex(String),
    /// PostgreSQL unreachable, restarting or failing a statement.
    #[error("database: {0}")]
    Database(String),
    /// A write only the publisher makes, refused because this node no
    /// longer holds the publisher lease (another node took it over).
    #[error("fenced: {0}")]
    Fenced(String),
}

pub type Result<T> = std::result::Result<T, Error>;

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::IdIndex(e.to_string())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl Error {
    /// True for failures that may pass (disk full, failed fsync): the caller
    /// should answer "unavailable" and retry later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Io(_) | Error::IdIndex(_) | Error::Database(_) | Error::Fenced(_)
        )
    }
}
