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
/// The keyring file's header: bytes before record 0.
pub const HEADER_LEN: u64 = 64;

/// One keyring record.
pub type Record = [u8; RECORD_LEN];

/// Record kinds (byte 5 of a record; layout in docs/format.md).
pub const KIND_TENANT_KEY: u8 = 1;
pub const KIND_SUBJECT_KEY: u8 = 2;
pub const KIND_SALT: u8 = 3;
/// A subject key family's key (see `crate::family`): found by its tag like
/// a subject key, the tag naming (tenant, bucket); counted as one.
pub const KIND_FAMILY: u8 = 4;
/// A key derived from a family, stored on its own when the family was
/// destroyed by an erasure of another of its subjects (bytes
/// [`DERIVED_FROM_AT`].. name the family). Counted as a subject key.
pub const KIND_DERIVED_KEY: u8 = 5;
/// Where a derived key's record names its family's record (u64 BE).
pub const DERIVED_FROM_AT: usize = 193;
/// Where a record's tag (a subject key's HMAC of the subject) sits.
pub const TAG_AT: usize = 89;
const TENANT_LEN_AT: usize = 24;
const MAX_TENANT: usize = 64;

/// Whether a record holds a live key (byte 4: 1 live, 2 destroyed).
pub fn record_live(r: &Record) -> bool {
    r[4] == 1
}

/// A record's kind (whether or not its checksum holds).
pub fn record_kind(r: &Record) -> u8 {
    r[5]
}

/// Whether records of `kind` are found by (tenant, tag): subject keys,
/// families and derived keys. The rest (salts, tenant keys) are the
/// tenants' records, held in memory.
pub fn kind_has_tag(kind: u8) -> bool {
    matches!(kind, KIND_SUBJECT_KEY | KIND_FAMILY | KIND_DERIVED_KEY)
}

/// Whether records of `kind` count as subject keys (in stats and metrics):
/// every key that seals subjects' content, a family's too.
pub fn kind_is_subject_key(kind: u8) -> bool {
    kind_has_tag(kind)
}

/// The tenant and tag of a record found by tag (a subject key, family or
/// derived key); None for the tenants' records.
pub fn record_subject(r: &Record) -> Option<(&[u8], [u8; 32])> {
    let len = r[TENANT_LEN_AT] as usize;
    if !kind_has_tag(record_kind(r)) || len > MAX_TENANT {
        return None;
    }
    let tenant = &r[TENANT_LEN_AT + 1..TENANT_LEN_AT + 1 + len];
    let tag = r[TAG_AT..TAG_AT + 32].try_into().expect("32 bytes");
    Some((tenant, tag))
}

/// Counts of subject keys, kept by the store so that nothing has to read
/// every record to report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubjectCounts {
    pub live: u64,
    pub destroyed: u64,
}

/// What the subject index takes of a record: the tag of a subject key
/// (None for the tenants' records) and whether it is live. The records not
/// indexed yet are held in memory in this form, an eighth of their size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Noted {
    pub(crate) subject: Option<[u8; 32]>,
    pub(crate) live: bool,
    /// Counted as a subject key.
    pub(crate) counted: bool,
}

impl Noted {
    pub(crate) fn of(r: &Record) -> Noted {
        Noted {
            subject: record_subject(r).map(|(_, tag)| tag),
            live: record_live(r),
            counted: kind_is_subject_key(record_kind(r)),
        }
    }
}

/// Durable storage of keyring records.
///
/// A keyring only ever holds its tenants' records (salts and tenant keys: a
/// few per tenant) in memory; subject keys, one or more per data subject, are
/// fetched by number or by (tenant, tag) when needed. The methods with
/// defaults read everything through [`RecordStore::load`], which is right
/// only for small stores (tests); real ones answer from an index.
pub trait RecordStore: Send + Sync {
    /// Every record, in number order, and the mark to pass to
    /// [`RecordStore::changes`] next. Whole-keyring copies (migration) only.
    fn load(&self) -> Result<(Vec<Record>, u64)>;
    /// Durably appends `records` as numbers `at, at + 1, …`. Writes nothing
    /// and returns false when the store no longer holds exactly `at` records
    /// (another node appended first).
    fn append(&self, at: u64, records: &[Record]) -> Result<bool>;
    /// Like [`RecordStore::append`], except that the records need only be
    /// durable once [`RecordStore::sync`] returns: a store that flushes
    /// (a file) lets appenders share one flush, made outside the keyring's
    /// lock. By default the records are durable at once.
    fn append_deferred(&self, at: u64, records: &[Record]) -> Result<bool> {
        self.append(at, records)
    }
    /// Makes every record appended so far durable.
    fn sync(&self) -> Result<()> {
        Ok(())
    }
    /// Appends every record `next` yields, a chunk at a time until it
    /// yields None, as numbers `at, at + 1, …`, in one durable step: all of
    /// them or none (an error from `next` writes nothing). False when the
    /// store no longer holds exactly `at` records. A whole keyring file is
    /// copied into a shared store this way, never held in memory whole;
    /// this default, for small stores, collects the chunks first.
    fn append_streamed(
        &self,
        at: u64,
        next: &mut dyn FnMut() -> Result<Option<Vec<Record>>>,
    ) -> Result<bool> {
        let mut all = Vec::new();
        while let Some(chunk) = next()? {
            all.extend(chunk);
        }
        self.append(at, &all)
    }
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
    /// The 64-byte header of the keyring file image (a file keeps its own,
    /// with the id its index knows it by).
    fn image_header(&self) -> Result<[u8; HEADER_LEN as usize]> {
        let mut header = [0u8; HEADER_LEN as usize];
        header[..HEADER.len()].copy_from_slice(HEADER);
        Ok(header)
    }
    /// How many records there are (the next record's number).
    fn count(&self) -> Result<u64> {
        Ok(self.load()?.0.len() as u64)
    }
    /// Record `number`, None past the end.
    fn get(&self, number: u64) -> Result<Option<Record>> {
        Ok(self.load()?.0.get(number as usize).copied())
    }
    /// Every record that is not a subject key (salts and tenant keys), with
    /// its number, and the mark to pass to [`RecordStore::changes`] next.
    fn tenant_records(&self) -> Result<(Vec<(u64, Record)>, u64)> {
        let (records, mark) = self.load()?;
        let numbered = (0..).zip(records);
        Ok((
            numbered
                .filter(|(_, r)| !kind_has_tag(record_kind(r)))
                .collect(),
            mark,
        ))
    }
    /// Every subject-key record (live or destroyed) of `tag` in `tenant`,
    /// with its number, in number order.
    fn subject_records(&self, tenant: &str, tag: &[u8; 32]) -> Result<Vec<(u64, Record)>> {
        let (records, _) = self.load()?;
        Ok((0..)
            .zip(records)
            .filter(|(_, r)| record_subject(r) == Some((tenant.as_bytes(), *tag)))
            .collect())
    }
    /// [`RecordStore::subject_records`] of several (tenant, tag) at once,
    /// in no particular order: an ingest batch naming a hundred new subjects
    /// asks a shared store once, not a hundred times.
    fn subjects_records(&self, wanted: &[(&str, [u8; 32])]) -> Result<Vec<(u64, Record)>> {
        let mut out = Vec::new();
        for (tenant, tag) in wanted {
            out.extend(self.subject_records(tenant, tag)?);
        }
        Ok(out)
    }
    /// Up to `max` records from number `from` on: passes over the whole
    /// keyring (rotation, retention) in bounded memory.
    fn scan(&self, from: u64, max: usize) -> Result<Vec<(u64, Record)>> {
        let (records, _) = self.load()?;
        Ok((0..).zip(records).skip(from as usize).take(max).collect())
    }
    /// When a data key rotation cut short began (unix seconds), so that
    /// running it again finishes it rather than starting over. A store that
    /// cannot keep it answers None: the next rotation starts afresh.
    fn rotation_started(&self) -> Result<Option<u64>> {
        Ok(None)
    }
    /// Records (Some) or clears (None) when a data key rotation began.
    fn set_rotation_started(&self, _started: Option<u64>) -> Result<()> {
        Ok(())
    }
    /// Live and destroyed subject keys.
    fn subject_counts(&self) -> Result<SubjectCounts> {
        let (records, _) = self.load()?;
        let mut c = SubjectCounts::default();
        for r in records
            .iter()
            .filter(|r| kind_is_subject_key(record_kind(r)))
        {
            if record_live(r) {
                c.live += 1;
            } else {
                c.destroyed += 1;
            }
        }
        Ok(c)
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

/// Header bytes holding the keyring file's id (random, written at first
/// open; zero in files written before the index existed), which ties the
/// subject index to its file.
const FILE_ID_AT: usize = 32;
/// Records indexed per write when the index catches up at open.
const CATCH_UP_CHUNK: u64 = 65_536;
/// Records held in [`Tail`] before they are indexed in one write. Each
/// write is a sorted run the index merges later, and every merge into the
/// tree's first level rewrites all of it (new subjects' keys are random):
/// with 32,768 rather than 8,192 the merging thread used a quarter of the
/// CPU per new subject (docs/performance.md, session 26).
pub(crate) const TAIL_MAX: usize = 32_768;
/// The longest records wait in [`Tail`] (checked at each append).
const TAIL_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// Records durable in the file but not yet in the index. They are indexed
/// together, in one sorted run, once there are [`TAIL_MAX`] of them or
/// [`TAIL_AGE`] passed: one index write (a few fsyncs) per many ingest
/// batches rather than one each.
/// Lookups read the tail as well as the index; a crash loses only the tail,
/// which the next open indexes again from the file.
#[derive(Default)]
struct Tail {
    /// The first record number not in the index.
    from: u64,
    records: Vec<Noted>,
    /// Subject-key records in the tail by the first 8 bytes of their tag
    /// (a hint, like the index: callers check each record): the first
    /// record of each, and in `more` any later ones (a key rotated while
    /// the first waits here; rare).
    subjects: std::collections::HashMap<u64, u64>,
    more: std::collections::HashMap<u64, Vec<u64>>,
    since: Option<std::time::Instant>,
    /// What lookups since the last flush read from the index, by tag: the
    /// flush extends these lists without reading them again (a new subject
    /// is looked up just before its key is made).
    known: crate::subject_index::Known,
    /// Flushes so far: a lookup that raced a flush does not fill `known`.
    flushes: u64,
}

impl Tail {
    fn push(&mut self, at: u64, records: &[Record]) {
        let end = self.from + self.records.len() as u64;
        if at < end {
            // The records of an append that failed are replaced.
            self.records.truncate(at.saturating_sub(self.from) as usize);
            self.renote();
        }
        for (n, r) in (at..).zip(records) {
            let r = Noted::of(r);
            self.records.push(r);
            self.note(n, &r);
        }
        self.since.get_or_insert_with(std::time::Instant::now);
    }

    /// Rebuilds `subjects` from the records held (after some were dropped).
    fn renote(&mut self) {
        self.subjects.clear();
        self.more.clear();
        let from = self.from;
        for (n, r) in (from..).zip(std::mem::take(&mut self.records)) {
            self.note(n, &r);
            self.records.push(r);
        }
    }

    fn note(&mut self, number: u64, r: &Noted) {
        if let Some(tag) = r.subject {
            let prefix = crate::subject_index::tag_prefix(&tag);
            match self.subjects.entry(prefix) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(number);
                }
                std::collections::hash_map::Entry::Occupied(_) => {
                    self.more.entry(prefix).or_default().push(number)
                }
            }
        }
    }

    /// Numbers of the tail's records whose tag starts as `tag` does.
    fn subject_numbers(&self, tag: &[u8; 32]) -> impl Iterator<Item = u64> + '_ {
        let prefix = crate::subject_index::tag_prefix(tag);
        let more = self.more.get(&prefix).map(Vec::as_slice).unwrap_or(&[]);
        self.subjects
            .get(&prefix)
            .copied()
            .into_iter()
            .chain(more.iter().copied())
    }

    fn due(&self) -> bool {
        self.records.len() >= TAIL_MAX || self.since.is_some_and(|t| t.elapsed() >= TAIL_AGE)
    }
}

/// The keyring file in a data directory (mode 0600): records appended with
/// one fsync per batch, rewritten in place; and its index (`keyring.index/`),
/// so that opening it and finding a subject's keys never read every record.
pub struct FileRecords {
    path: PathBuf,
    file: Mutex<File>,
    /// Records in the file (whole, checked ones).
    count: std::sync::atomic::AtomicU64,
    /// Records known durable: only those are indexed (an index naming
    /// records the file lost would be rebuilt whole at the next open).
    synced: std::sync::atomic::AtomicU64,
    /// The same file, for flushes made without holding `file`'s lock
    /// (appends and reads go on meanwhile).
    sync_handle: File,
    index: crate::subject_index::SubjectIndex,
    tail: Mutex<Tail>,
}

impl FileRecords {
    /// Opens (creating if missing, mode 0600) the keyring file in `dir` and
    /// its index. Records the index has not durably seen (appended since its
    /// last durable commit, or every record of a file it never saw) are
    /// checked with `valid` and indexed; the first that fails is a record
    /// torn by a crash (its append never returned) and is cut away with
    /// everything after it.
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
        let mut header = [0u8; HEADER_LEN as usize];
        let len = file.metadata()?.len();
        if len == 0 {
            header[..HEADER.len()].copy_from_slice(HEADER);
            file.write_all(&header)?;
            file.sync_all()?;
            fs::File::open(dir)?.sync_all()?;
        } else {
            let n = file.read(&mut header)?;
            if n < HEADER_LEN as usize && len >= HEADER_LEN {
                file.read_exact_at(&mut header, 0)?;
            }
        }
        if len != 0 && (len < HEADER_LEN || !header.starts_with(HEADER)) {
            return Err(Error::Corrupt(format!(
                "{} does not start with {:?}",
                path.display(),
                String::from_utf8_lossy(HEADER).trim()
            )));
        }
        let mut id = u64::from_be_bytes(header[FILE_ID_AT..FILE_ID_AT + 8].try_into().expect("8"));
        if id == 0 {
            // A file from before the index (or a new one): give it an id.
            let mut bytes = [0u8; 8];
            getrandom::getrandom(&mut bytes)
                .map_err(|e| Error::Key(format!("no randomness: {e}")))?;
            bytes[0] |= 1;
            file.write_all_at(&bytes, FILE_ID_AT as u64)?;
            file.sync_all()?;
            id = u64::from_be_bytes(bytes);
        }
        let whole = (file.metadata()?.len() - HEADER_LEN) / RECORD_LEN as u64;
        // An index that knows records the file lacks is not this file's.
        let (index, indexed) = crate::subject_index::SubjectIndex::open(dir, id, whole)?;
        // Index the tail the index has not durably seen.
        let mut count = indexed;
        'tail: while count < whole {
            let n = CATCH_UP_CHUNK.min(whole - count);
            let mut bytes = vec![0u8; n as usize * RECORD_LEN];
            file.read_exact_at(&mut bytes, offset(count))?;
            let mut records = Vec::with_capacity(n as usize);
            let mut torn = false;
            for chunk in bytes.chunks(RECORD_LEN) {
                let r: Record = chunk.try_into().expect("whole records");
                if !valid(&r) {
                    torn = true;
                    break;
                }
                records.push(Noted::of(&r));
            }
            index.add(count, &records, &Default::default())?;
            count += records.len() as u64;
            if torn {
                let last = count + 1 == whole;
                if !last && !tail_is_torn(&file, count, whole, &valid)? {
                    return Err(Error::Corrupt(format!(
                        "record {count} of {} fails its checksum",
                        path.display()
                    )));
                }
                break 'tail;
            }
        }
        let keep = offset(count);
        if keep < file.metadata()?.len() {
            tracing::warn!(
                records = count,
                "the keyring file ends in a record torn by a crash: cut away"
            );
            file.set_len(keep)?;
        }
        // Records a killed process appended but never flushed may still be
        // in the page cache only: flushed now, before any key is used again.
        file.sync_all()?;
        Ok(FileRecords {
            path,
            sync_handle: file.try_clone()?,
            file: Mutex::new(file),
            count: std::sync::atomic::AtomicU64::new(count),
            synced: std::sync::atomic::AtomicU64::new(count),
            index,
            tail: Mutex::new(Tail {
                from: count,
                ..Tail::default()
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Indexes the tail's durable records in one transaction.
    fn flush(&self, tail: &mut Tail) -> Result<()> {
        let synced = self.synced.load(std::sync::atomic::Ordering::SeqCst);
        let n = (synced.saturating_sub(tail.from) as usize).min(tail.records.len());
        if n == 0 {
            return Ok(());
        }
        self.index.add(tail.from, &tail.records[..n], &tail.known)?;
        tail.from += n as u64;
        tail.records.drain(..n);
        tail.renote();
        tail.known.clear();
        tail.flushes += 1;
        tail.since = (!tail.records.is_empty()).then(std::time::Instant::now);
        Ok(())
    }

    fn read_at(&self, number: u64, records: u64) -> Result<Vec<u8>> {
        let file = self.file.lock().expect("keyring file lock");
        let mut bytes = vec![0u8; records as usize * RECORD_LEN];
        file.read_exact_at(&mut bytes, offset(number))?;
        Ok(bytes)
    }
}

/// Whether every record from `from` to the end fails its check: what a torn
/// append leaves (records written in one call, none of them acknowledged).
/// A bad record followed by good ones is damage instead.
fn tail_is_torn(
    file: &File,
    from: u64,
    whole: u64,
    valid: &impl Fn(&Record) -> bool,
) -> Result<bool> {
    // A good record after the bad one cannot be told from damage (the pages
    // of a torn append may reach the disk in any order), so it is refused,
    // for an operator to look at. Read what follows in bounded chunks.
    let mut at = from + 1;
    while at < whole {
        let n = CATCH_UP_CHUNK.min(whole - at);
        let mut bytes = vec![0u8; n as usize * RECORD_LEN];
        file.read_exact_at(&mut bytes, offset(at))?;
        for chunk in bytes.chunks(RECORD_LEN) {
            if valid(&chunk.try_into().expect("whole records")) {
                return Ok(false);
            }
        }
        at += n;
    }
    Ok(true)
}

pub(crate) fn offset(number: u64) -> u64 {
    HEADER_LEN + number * RECORD_LEN as u64
}

impl RecordStore for FileRecords {
    fn load(&self) -> Result<(Vec<Record>, u64)> {
        let bytes = self.snapshot()?;
        Ok((parse_image(&bytes, &self.describe(), false, |_| true)?, 0))
    }

    fn append(&self, at: u64, records: &[Record]) -> Result<bool> {
        let appended = self.append_deferred(at, records)?;
        self.sync()?;
        Ok(appended)
    }

    fn append_deferred(&self, at: u64, records: &[Record]) -> Result<bool> {
        {
            // Only this process writes the file, so `at` is right by
            // construction; bytes past it are what a failed append left.
            let file = self.file.lock().expect("keyring file lock");
            // Records of a failed append written over are not durable.
            self.synced
                .fetch_min(at, std::sync::atomic::Ordering::SeqCst);
            let bytes: Vec<u8> = records.iter().flatten().copied().collect();
            let end = offset(at) + bytes.len() as u64;
            file.write_all_at(&bytes, offset(at))?;
            if file.metadata()?.len() > end {
                file.set_len(end)?;
            }
            self.count.store(
                at + records.len() as u64,
                std::sync::atomic::Ordering::SeqCst,
            );
        }
        // Once durable, the index follows, in a while (a crash before its
        // commit is made good at the next open).
        let mut tail = self.tail.lock().expect("keyring tail lock");
        tail.push(at, records);
        if tail.due() {
            self.flush(&mut tail)?;
        }
        Ok(true)
    }

    fn sync(&self) -> Result<()> {
        let written = self.count.load(std::sync::atomic::Ordering::SeqCst);
        #[cfg(feature = "fault-injection")]
        if crate::io_faults::sync_fails(&self.path) {
            return Err(std::io::Error::other("injected fault: flushing the keyring file").into());
        }
        self.sync_handle.sync_data()?;
        self.synced
            .fetch_max(written, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    fn overwrite(&self, records: &[(u64, Record)]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut changes = Vec::with_capacity(records.len());
        {
            let file = self.file.lock().expect("keyring file lock");
            for (number, r) in records {
                let mut old = [0u8; RECORD_LEN];
                file.read_exact_at(&mut old, offset(*number))?;
                file.write_all_at(r, offset(*number))?;
                changes.push((old, *r));
            }
            file.sync_data()?;
        }
        // Records still in the tail are counted when it is indexed.
        let mut tail = self.tail.lock().expect("keyring tail lock");
        let from = tail.from;
        for ((number, r), _) in records.iter().zip(&changes) {
            if *number >= from {
                if let Some(held) = tail.records.get_mut((number - from) as usize) {
                    *held = Noted::of(r);
                }
            }
        }
        let indexed: Vec<(Record, Record)> = records
            .iter()
            .zip(changes)
            .filter(|((number, _), _)| *number < from)
            .map(|(_, change)| change)
            .collect();
        self.index.overwritten(&indexed)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        let file = self.file.lock().expect("keyring file lock");
        let len = offset(self.count.load(std::sync::atomic::Ordering::SeqCst));
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, 0)?;
        Ok(bytes)
    }

    fn count(&self) -> Result<u64> {
        Ok(self.count.load(std::sync::atomic::Ordering::SeqCst))
    }

    fn image_header(&self) -> Result<[u8; HEADER_LEN as usize]> {
        let file = self.file.lock().expect("keyring file lock");
        let mut header = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut header, 0)?;
        Ok(header)
    }

    fn get(&self, number: u64) -> Result<Option<Record>> {
        if number >= self.count()? {
            return Ok(None);
        }
        let bytes = self.read_at(number, 1)?;
        Ok(Some(bytes.try_into().expect("one record")))
    }

    fn tenant_records(&self) -> Result<(Vec<(u64, Record)>, u64)> {
        let mut out = Vec::new();
        let mut numbers = self.index.tenant_numbers()?;
        {
            let tail = self.tail.lock().expect("keyring tail lock");
            numbers.extend(
                (tail.from..)
                    .zip(&tail.records)
                    .filter(|(_, r)| r.subject.is_none())
                    .map(|(n, _)| n),
            );
        }
        for n in numbers {
            if let Some(r) = self.get(n)? {
                out.push((n, r));
            }
        }
        Ok((out, 0))
    }

    fn subject_records(&self, tenant: &str, tag: &[u8; 32]) -> Result<Vec<(u64, Record)>> {
        let mut out = Vec::new();
        let flushes = self.tail.lock().expect("keyring tail lock").flushes;
        let mut numbers = self.index.subject_numbers(tag)?;
        {
            let mut tail = self.tail.lock().expect("keyring tail lock");
            if tail.flushes == flushes {
                tail.known.remember(tag, &numbers);
            }
            numbers.extend(tail.subject_numbers(tag));
        }
        numbers.sort_unstable();
        numbers.dedup();
        for n in numbers {
            if let Some(r) = self.get(n)? {
                if record_subject(&r) == Some((tenant.as_bytes(), *tag)) {
                    out.push((n, r));
                }
            }
        }
        Ok(out)
    }

    fn scan(&self, from: u64, max: usize) -> Result<Vec<(u64, Record)>> {
        let count = self.count()?;
        if from >= count {
            return Ok(Vec::new());
        }
        let n = (max as u64).min(count - from);
        let bytes = self.read_at(from, n)?;
        Ok((from..)
            .zip(bytes.chunks(RECORD_LEN))
            .map(|(i, c)| (i, c.try_into().expect("whole records")))
            .collect())
    }

    fn subject_counts(&self) -> Result<SubjectCounts> {
        let mut counts = self.index.counts()?;
        let tail = self.tail.lock().expect("keyring tail lock");
        for r in tail.records.iter().filter(|r| r.counted) {
            if r.live {
                counts.live += 1;
            } else {
                counts.destroyed += 1;
            }
        }
        Ok(counts)
    }

    fn rotation_started(&self) -> Result<Option<u64>> {
        self.index.rotation_started()
    }

    fn set_rotation_started(&self, started: Option<u64>) -> Result<()> {
        self.index.set_rotation_started(started)
    }
}

impl Drop for FileRecords {
    fn drop(&mut self) {
        // Saves the next open re-reading the tail; losing it loses nothing.
        if let Err(e) = self.sync() {
            tracing::warn!(error = %e, "flushing the keyring file at close");
            return;
        }
        if let Ok(mut tail) = self.tail.lock() {
            let tail = &mut *tail;
            let mut taken = std::mem::take(tail);
            if let Err(e) = self.flush(&mut taken) {
                tracing::warn!(error = %e, "indexing the keyring's last records at close");
            }
        }
    }
}
