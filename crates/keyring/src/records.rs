//! Where keyring records are kept: the keyring file of one node
//! ([`FileRecords`]), or a table every node of a shared log reads and writes
//! (the PostgreSQL backend implements [`RecordStore`] in `aiaudit-store`).
//!
//! A record is [`RECORD_LEN`] opaque bytes (layout in docs/format.md); its
//! number is the key id entries name, so numbers are handed out once, in
//! order, by whoever appends first.

use crate::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Bytes per keyring record.
pub const RECORD_LEN: usize = 256;
/// The keyring file's name in the data directory.
pub const KEYRING_FILE: &str = "keyring";
pub(crate) const HEADER: &[u8] = b"aiaudit-keyring 1\n";
pub(crate) const HEADER_LEN: u64 = 64;

/// One keyring record.
pub type Record = [u8; RECORD_LEN];

/// Durable storage of keyring records.
pub trait RecordStore: Send + Sync {
    /// Every record, in number order, and the mark to pass to
    /// [`RecordStore::changes`] next.
    fn load(&self) -> Result<(Vec<Record>, u64)>;
    /// Durably appends `records` as numbers `at, at + 1, …`. Writes nothing
    /// and returns false when the store no longer holds exactly `at` records
    /// (another node appended first).
    fn append(&self, at: u64, records: &[Record]) -> Result<bool>;
    /// Durably overwrites records in place (crypto-shredding, re-wrapping).
    fn overwrite(&self, records: &[(u64, Record)]) -> Result<()>;
    /// Records appended or overwritten since `mark`, with their numbers,
    /// and the next mark. A store only this process writes has none.
    fn changes(&self, mark: u64) -> Result<(Vec<(u64, Record)>, u64)> {
        Ok((Vec::new(), mark))
    }
    /// Whether other nodes write to this store too.
    fn shared(&self) -> bool {
        false
    }
    /// Where the records are, for messages.
    fn describe(&self) -> String;
    /// The records in the keyring file format (header, then records), for
    /// backups: wrapped keys only, useless without the master key.
    fn snapshot(&self) -> Result<Vec<u8>> {
        let (records, _) = self.load()?;
        Ok(file_image(&records))
    }
}

/// The keyring file format: a 64-byte header, then the records.
pub fn file_image(records: &[Record]) -> Vec<u8> {
    let mut bytes = vec![0u8; HEADER_LEN as usize];
    bytes[..HEADER.len()].copy_from_slice(HEADER);
    for r in records {
        bytes.extend_from_slice(r);
    }
    bytes
}

/// Splits a keyring file image into its records. A torn last record (its
/// append's fsync never returned, so no entry uses it) is dropped when
/// `torn_ok`; any other damage is refused. `valid` checks one record.
pub fn parse_image(
    bytes: &[u8],
    what: &str,
    torn_ok: bool,
    valid: impl Fn(&Record) -> bool,
) -> Result<Vec<Record>> {
    if bytes.len() < HEADER_LEN as usize || !bytes.starts_with(HEADER) {
        return Err(Error::Corrupt(format!(
            "{what} does not start with {:?}",
            String::from_utf8_lossy(HEADER).trim()
        )));
    }
    let body = &bytes[HEADER_LEN as usize..];
    let mut records = Vec::with_capacity(body.len() / RECORD_LEN);
    for (i, chunk) in body.chunks(RECORD_LEN).enumerate() {
        let last = (i + 1) * RECORD_LEN >= body.len();
        let record: Option<Record> = chunk.try_into().ok().filter(|r| valid(r));
        match record {
            Some(r) => records.push(r),
            None if last && torn_ok => break,
            None => {
                return Err(Error::Corrupt(format!(
                    "record {i} of {what} fails its checksum"
                )))
            }
        }
    }
    Ok(records)
}

/// The keyring file in a data directory (mode 0600): records appended with
/// one fsync per batch, rewritten in place.
pub struct FileRecords {
    path: PathBuf,
    file: Mutex<File>,
    /// The records found at open (torn tail cut away); `load` returns them.
    opened: Mutex<Option<Vec<Record>>>,
}

impl FileRecords {
    /// Opens (creating if missing, mode 0600) the keyring file in `dir`, and
    /// cuts a record torn by a crash. `valid` checks one record.
    pub fn open(dir: &Path, valid: impl Fn(&Record) -> bool) -> Result<FileRecords> {
        let path = dir.join(KEYRING_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)?;
        crate::check_private(&path, file.metadata()?.permissions().mode())?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        if bytes.is_empty() {
            bytes = file_image(&[]);
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::File::open(dir)?.sync_all()?;
        }
        let records = parse_image(&bytes, &path.display().to_string(), true, valid)?;
        let keep = HEADER_LEN + (records.len() * RECORD_LEN) as u64;
        if keep < bytes.len() as u64 {
            file.set_len(keep)?;
            file.sync_all()?;
        }
        Ok(FileRecords {
            path,
            file: Mutex::new(file),
            opened: Mutex::new(Some(records)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

pub(crate) fn offset(number: u64) -> u64 {
    HEADER_LEN + number * RECORD_LEN as u64
}

impl RecordStore for FileRecords {
    fn load(&self) -> Result<(Vec<Record>, u64)> {
        if let Some(records) = self.opened.lock().expect("keyring lock").take() {
            return Ok((records, 0));
        }
        let bytes = self.snapshot()?;
        Ok((parse_image(&bytes, &self.describe(), false, |_| true)?, 0))
    }

    fn append(&self, at: u64, records: &[Record]) -> Result<bool> {
        // Only this process writes the file, so `at` is right by
        // construction; bytes past it are what a failed append left.
        let file = self.file.lock().expect("keyring file lock");
        let bytes: Vec<u8> = records.iter().flatten().copied().collect();
        let end = offset(at) + bytes.len() as u64;
        file.write_all_at(&bytes, offset(at))?;
        if file.metadata()?.len() > end {
            file.set_len(end)?;
        }
        file.sync_data()?;
        Ok(true)
    }

    fn overwrite(&self, records: &[(u64, Record)]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let file = self.file.lock().expect("keyring file lock");
        for (number, r) in records {
            file.write_all_at(r, offset(*number))?;
        }
        file.sync_data()?;
        Ok(())
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        let file = self.file.lock().expect("keyring file lock");
        let len = file.metadata()?.len();
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, 0)?;
        Ok(bytes)
    }
}
