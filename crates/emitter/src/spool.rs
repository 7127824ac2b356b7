//! The emitter's offline spool: a local, append-only, checksummed and
//! fsync'd file queue of records (each record is one batch of events).
//!
//! Records are appended durably, read back oldest first with
//! [`Spool::peek`], and removed with [`Spool::ack`] once the ledger has
//! accepted them. The spool is std-only and single-threaded; callers share
//! it behind a `Mutex`.
//!
//! # Guarantees
//!
//! * An [`append`](Spool::append) that returned `Ok` is on stable storage
//!   (file data fsync'd, new segment files' directory entries fsync'd) and
//!   survives `kill -9` and power loss.
//! * An append is all-or-nothing: on error none of its records are visible,
//!   and a crash in the middle of one leaves a torn tail that the next
//!   [`open`](Spool::open) detects (length + CRC-32) and cuts off.
//! * Records are delivered in append order. An [`ack`](Spool::ack) that
//!   returned `Ok` is durable: acknowledged records are never returned again,
//!   even after a restart. Records acknowledged by a call that failed or was
//!   interrupted by a crash may be returned again (at-least-once delivery;
//!   the ledger deduplicates).
//! * Disk use is bounded: appends fail with [`SpoolError::Full`] rather than
//!   let the segment files grow beyond `max_bytes`.
//!
//! Damage that a crash cannot cause (a bad record in a segment that is not
//! the last one, a cursor pointing past its segment, a gap in the segment
//! sequence) is reported as [`SpoolError::Corrupt`] rather than silently
//! dropping records: this is an audit trail.
//!
//! # On-disk format, version 2
//!
//! All files live in one directory:
//!
//! * `FORMAT`: exactly `aiaudit-spool 2\n`. A version 1 spool (the same
//!   layout, records stored as they were given) is read as it is and its
//!   `FORMAT` rewritten to 2 when it is opened; any other content is
//!   refused with [`SpoolError::Corrupt`].
//! * `seg-<seq>.log`, `<seq>` a 20-digit zero-padded decimal sequence number:
//!   the segments, consecutive, oldest first. A segment is a sequence of
//!   records, each one
//!   `u32 LE payload length | u32 LE CRC-32 (IEEE) of the payload | payload`.
//!   In version 2 a payload is the record as one zstd frame (RFC 8878, with
//!   its content size), so a spool of JSON batches takes about a fifth of
//!   the disk; a payload that does not start with the zstd magic number
//!   (`28 B5 2F FD`) is a version 1 record, stored as given (the emitter's
//!   NDJSON, which starts with `{`). Records are 1 byte to 64 MiB before
//!   compression. A new segment is started once the current
//!   one has reached the segment size (8 MiB, or `max_bytes / 8` if smaller,
//!   so that space can be reclaimed in reasonably small steps); the records of
//!   one append always go to a single segment.
//! * `cursor`: `<seq> <offset>\n` (decimal), the segment and byte offset of the
//!   first undelivered record. Written atomically (temporary file `cursor.tmp`,
//!   fsync, rename, fsync of the directory). Missing means "start of the
//!   oldest segment".
//!
//! * `LOCK`: empty; an open spool holds an exclusive `flock` on it, so a
//!   second spool on the same directory (another process, or a child after
//!   `fork` opening its own) is refused with [`SpoolError::InUse`].
//!
//! Segments wholly before the cursor are delivered and deleted; space is
//! reclaimed a segment at a time (and, once everything is delivered, by
//! starting a fresh segment when the space is needed).
//!
//! # Memory
//!
//! The spool keeps O(segments) metadata plus the positions of the records
//! returned by the last `peek`; record payloads are read from disk on demand.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Largest record payload accepted.
const MAX_RECORD_BYTES: usize = 64 << 20;
/// Default size at which a new segment is started.
const SEGMENT_BYTES: u64 = 8 << 20;
/// Record framing: payload length + CRC-32.
const HEADER_BYTES: usize = 8;
const FORMAT_FILE: &str = "FORMAT";
const FORMAT_TMP: &str = "FORMAT.tmp";
/// The first line of `FORMAT` this version writes.
pub const FORMAT_LINE: &[u8] = b"aiaudit-spool 2\n";
/// The version before records were compressed; read, and upgraded at open.
const FORMAT_LINE_V1: &[u8] = b"aiaudit-spool 1\n";
/// The zstd level records are stored at: zstd's default, about 300 MB/s on
/// one core here, a fifth of the bytes for batches of AI events.
const RECORD_ZSTD_LEVEL: i32 = 3;
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
const CURSOR_FILE: &str = "cursor";
const CURSOR_TMP: &str = "cursor.tmp";
const LOCK_FILE: &str = "LOCK";
const READ_BUFFER: usize = 64 << 10;

/// Errors from the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Appending would take the segment files beyond `max_bytes`.
    #[error("spool is full: {used} of {limit} bytes used")]
    Full { used: u64, limit: u64 },
    /// A single record can never fit (over 64 MiB or over `max_bytes`).
    #[error("record of {0} bytes is larger than the spool allows")]
    TooLarge(usize),
    /// An I/O error, or `InvalidInput` for a bad argument (empty record,
    /// acknowledging more records than are pending).
    #[error("spool I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The directory holds something the spool cannot safely use.
    #[error("spool directory {dir}: {detail}")]
    Corrupt { dir: String, detail: String },
    /// Another spool (another process, or another emitter of this one) has
    /// the directory open: two writers would interleave their records.
    #[error("spool directory {dir} is in use by another emitter or agent; give each its own spool directory")]
    InUse { dir: String },
}

/// A position in the spool: segment sequence number and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    seq: u64,
    off: u64,
}

/// A segment file; `len` is the length of its valid records.
#[derive(Debug, Clone, Copy)]
struct Segment {
    seq: u64,
    len: u64,
}

/// A buffered read handle on one segment, remembering its position so that
/// sequential reads need no seeks.
#[derive(Debug)]
struct SegReader {
    seq: u64,
    pos: u64,
    file: BufReader<File>,
}

/// The offline spool. See the [module documentation](self).
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Start a new segment once the current one has this many bytes.
    roll_at: u64,
    /// Consecutive segments; the first one is the cursor's.
    segments: VecDeque<Segment>,
    /// Held for the spool's life: an exclusive lock on `LOCK`.
    lock: File,
    /// Read-write handle on the last segment.
    tail: File,
    /// The tail file may hold bytes past `segments.back().len` (a failed
    /// append whose truncation also failed); fix before writing again.
    tail_dirty: bool,
    /// First undelivered record, as on disk.
    cursor: Pos,
    disk_bytes: u64,
    pending_records: u64,
    /// End positions of the records returned by the last peek, so that ack
    /// needs no reads.
    peeked: VecDeque<Pos>,
    reader: Option<SegReader>,
    /// Test hook: make the next append write this many bytes, then fail.
    #[cfg(test)]
    fail_next_write_after: Option<usize>,
}

impl Spool {
    /// Opens or creates the spool in `dir` (created if missing). `max_bytes`:
    /// limit on total segment bytes on disk (undelivered data); appends that
    /// would exceed it fail with Full. Recovers: reads the cursor, scans the
    /// tail of the last segment and truncates a torn record, removes segments
    /// entirely before the cursor.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        Self::open_with_segment_size(dir, max_bytes, SEGMENT_BYTES)
    }

    /// [`open`](Self::open) with another segment size, for tests.
    #[doc(hidden)]
    pub fn open_with_segment_size(
        dir: &Path,
        max_bytes: u64,
        segment_bytes: u64,
    ) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir)?;
        let lock = lock_dir(dir)?;
        let corrupt = |detail: String| SpoolError::Corrupt {
            dir: dir.display().to_string(),
            detail,
        };

        let mut seqs = list_segments(dir)?;
        let has_data = !seqs.is_empty() || dir.join(CURSOR_FILE).exists();
        check_format(dir, has_data).map_err(|e| match e {
            FormatError::Io(e) => SpoolError::Io(e),
            FormatError::Bad(detail) => corrupt(detail),
        })?;
        let saved_cursor = read_cursor(dir).map_err(|e| match e {
            CursorError::Io(e) => SpoolError::Io(e),
            CursorError::Bad(text) => corrupt(format!("unreadable cursor file {text:?}")),
        })?;
        // Leftovers of writes interrupted before their rename.
        remove_if_exists(&dir.join(CURSOR_TMP))?;
        remove_if_exists(&dir.join(FORMAT_TMP))?;

        let cursor = saved_cursor.unwrap_or(Pos {
            seq: seqs.first().copied().unwrap_or(0),
            off: 0,
        });
        // Wholly delivered segments whose deletion a crash interrupted.
        for &seq in seqs.iter().filter(|&&s| s < cursor.seq) {
            remove_if_exists(&segment_path(dir, seq))?;
        }
        seqs.retain(|&s| s >= cursor.seq);

        let mut segments = VecDeque::with_capacity(seqs.len().max(1));
        let mut pending_records = 0;
        let mut cursor = cursor;
        if seqs.is_empty() {
            // Fresh spool, or (only if someone removed files) a cursor whose
            // segment is gone: nothing is left to deliver either way.
            let seq = match saved_cursor {
                Some(c) => {
                    tracing::warn!(dir = %dir.display(), seq = c.seq, "spool: the cursor's segment is missing; starting empty");
                    c.seq + 1
                }
                None => cursor.seq,
            };
            create_segment(dir, seq)?;
            cursor = Pos { seq, off: 0 };
            if saved_cursor.is_some() {
                write_cursor(dir, cursor)?;
            }
            segments.push_back(Segment { seq, len: 0 });
        } else {
            if seqs[0] != cursor.seq {
                return Err(corrupt(format!(
                    "segment {} named by the cursor is missing",
                    cursor.seq
                )));
            }
            if let Some(w) = seqs.windows(2).find(|w| w[1] != w[0] + 1) {
                return Err(corrupt(format!(
                    "segments {} and {} are not consecutive",
                    w[0], w[1]
                )));
            }
            let last = seqs.len() - 1;
            for (i, &seq) in seqs.iter().enumerate() {
                let file = File::open(segment_path(dir, seq))?;
                let len = file.metadata()?.len();
                let start = if i == 0 { cursor.off } else { 0 };
                if start > len {
                    return Err(corrupt(format!(
                        "cursor offset {start} is past the end of segment {seq} ({len} bytes)"
                    )));
                }
                let (count, end) = scan_segment(file, start, len)?;
                if end < len {
                    if i != last {
                        // Segments are fsync'd before the next one is
                        // started, so a crash cannot damage them.
                        return Err(corrupt(format!(
                            "segment {seq} has a damaged record at byte {end}"
                        )));
                    }
                    // A torn tail from a crash mid-append: that append never
                    // returned Ok, so cutting it off loses nothing promised.
                    tracing::warn!(
                        dir = %dir.display(), seq, offset = end, dropped = len - end,
                        "spool: cutting off a torn record at the end of the last segment"
                    );
                    let f = OpenOptions::new()
                        .write(true)
                        .open(segment_path(dir, seq))?;
                    f.set_len(end)?;
                    f.sync_all()?;
                }
                pending_records += count;
                segments.push_back(Segment { seq, len: end });
            }
        }

        let last = *segments.back().expect("at least one segment");
        let tail = OpenOptions::new()
            .read(true)
            .write(true)
            .open(segment_path(dir, last.seq))?;
        let disk_bytes = segments.iter().map(|s| s.len).sum();
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            roll_at: segment_bytes.min(max_bytes / 8).max(1),
            segments,
            lock,
            tail,
            tail_dirty: false,
            cursor,
            disk_bytes,
            pending_records,
            peeked: VecDeque::new(),
            reader: None,
            #[cfg(test)]
            fail_next_write_after: None,
        };
        // A cursor at the end of a segment (a crash while starting the next
        // one) moves to the next segment, and the delivered one goes.
        spool.commit_cursor(cursor)?;
        Ok(spool)
    }

    /// Appends records durably (one write + one fsync for all of them) and
    /// returns only after fsync. All-or-nothing: on error nothing of them is
    /// visible (truncate back to the previous length).
    ///
    /// Records must be 1 byte to 64 MiB (an empty record would be
    /// indistinguishable from zero-filled garbage after a crash): empty ones
    /// fail with `Io(InvalidInput)`, too large ones with `TooLarge`. A batch
    /// that does not fit in `max_bytes` fails with `Full`.
    pub fn append(&mut self, records: &[&[u8]]) -> Result<(), SpoolError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut total: u64 = 0;
        let mut stored = Vec::with_capacity(records.len());
        for r in records {
            if r.is_empty() {
                return Err(invalid_input("empty records cannot be spooled").into());
            }
            if r.len() > MAX_RECORD_BYTES {
                return Err(SpoolError::TooLarge(r.len()));
            }
            let z = zstd::bulk::compress(r, RECORD_ZSTD_LEVEL)?;
            let framed = (z.len() + HEADER_BYTES) as u64;
            if framed > self.max_bytes {
                return Err(SpoolError::TooLarge(r.len()));
            }
            total += framed;
            stored.push(z);
        }
        if self.tail_dirty {
            self.repair_tail()?;
        }
        self.maybe_roll(total)?;
        if self.disk_bytes + total > self.max_bytes {
            return Err(SpoolError::Full {
                used: self.disk_bytes,
                limit: self.max_bytes,
            });
        }

        let mut buf = Vec::with_capacity(total as usize);
        for r in &stored {
            buf.extend_from_slice(&(r.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(r).to_le_bytes());
            buf.extend_from_slice(r);
        }
        let tail = *self.segments.back().expect("at least one segment");
        // A read buffer on the tail could hold bytes we are about to replace.
        if self.reader.as_ref().is_some_and(|r| r.seq == tail.seq) {
            self.reader = None;
        }
        if let Err(e) = self.write_tail(tail.len, &buf) {
            if self
                .tail
                .set_len(tail.len)
                .and_then(|()| self.tail.sync_all())
                .is_err()
            {
                self.tail_dirty = true;
            }
            return Err(e.into());
        }
        self.segments.back_mut().expect("at least one segment").len += total;
        self.disk_bytes += total;
        self.pending_records += records.len() as u64;
        Ok(())
    }

    /// Up to `max_records` oldest undelivered records whose total size stays
    /// within `max_bytes` (but always at least one record if any exists),
    /// without removing them. Calling it again returns the same records until
    /// ack.
    ///
    /// Sizes are the records' own (uncompressed) sizes. `max_records == 0`
    /// returns nothing.
    pub fn peek(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, SpoolError> {
        self.peek_after(0, max_records, max_bytes)
    }

    /// [`peek`](Self::peek) past the `skip` oldest undelivered records
    /// (those a sender already has in flight), reading only their headers.
    /// A later [`ack`](Self::ack) still counts from the oldest.
    pub fn peek_after(
        &mut self,
        skip: usize,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, SpoolError> {
        let mut out = Vec::new();
        let mut ends = VecDeque::new();
        let mut bytes = 0usize;
        let mut pos = self.cursor;
        for _ in 0..skip {
            let Some((at, len, _)) = self.header_at(pos)? else {
                self.peeked = ends;
                return Ok(out);
            };
            pos = Pos {
                seq: at.seq,
                off: at.off + (HEADER_BYTES + len) as u64,
            };
            ends.push_back(pos);
        }
        while out.len() < max_records {
            let Some((at, len, crc)) = self.header_at(pos)? else {
                break;
            };
            let payload = self.read_payload(at, len, crc)?;
            let record = self.decompress(at, payload)?;
            if !out.is_empty() && bytes.saturating_add(record.len()) > max_bytes {
                // Read again by the next peek (the reader seeks back).
                break;
            }
            bytes += record.len();
            out.push(record);
            pos = Pos {
                seq: at.seq,
                off: at.off + (HEADER_BYTES + len) as u64,
            };
            ends.push_back(pos);
        }
        self.peeked = ends;
        Ok(out)
    }

    /// Marks the `n` oldest undelivered records as delivered: durably
    /// advances the cursor (temp file, fsync, rename, fsync dir) and deletes
    /// segment files that are wholly delivered. n larger than pending ->
    /// Err(Io InvalidInput).
    pub fn ack(&mut self, n: usize) -> Result<(), SpoolError> {
        if n as u64 > self.pending_records {
            return Err(invalid_input(format!(
                "cannot acknowledge {n} records: only {} are pending",
                self.pending_records
            ))
            .into());
        }
        if n == 0 {
            return Ok(());
        }
        let new = if n <= self.peeked.len() {
            self.peeked[n - 1]
        } else {
            // More than the last peek returned: walk the headers.
            let mut pos = self.peeked.back().copied().unwrap_or(self.cursor);
            for _ in self.peeked.len()..n {
                let (at, len, _) = self
                    .header_at(pos)?
                    .ok_or_else(|| self.corrupt("fewer records on disk than counted"))?;
                pos = Pos {
                    seq: at.seq,
                    off: at.off + (HEADER_BYTES + len) as u64,
                };
            }
            pos
        };
        self.commit_cursor(new)?;
        self.pending_records -= n as u64;
        if n <= self.peeked.len() {
            self.peeked.drain(..n);
        } else {
            self.peeked.clear();
        }
        Ok(())
    }

    /// The descriptor that holds the directory's lock, for
    /// [`Emitter::abandon_after_fork`](crate::Emitter::abandon_after_fork).
    #[cfg(unix)]
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.lock)
    }

    /// Undelivered records right now.
    pub fn pending_records(&self) -> u64 {
        self.pending_records
    }

    /// Undelivered bytes (record payload + framing) right now.
    pub fn pending_bytes(&self) -> u64 {
        // The first segment is the cursor's; everything from the cursor on
        // is undelivered.
        self.disk_bytes - self.cursor.off
    }

    /// Bytes the spool's segment files take on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    fn corrupt(&self, detail: impl Into<String>) -> SpoolError {
        SpoolError::Corrupt {
            dir: self.dir.display().to_string(),
            detail: detail.into(),
        }
    }

    fn segment(&self, seq: u64) -> Segment {
        let first = self.segments.front().expect("at least one segment").seq;
        self.segments[(seq - first) as usize]
    }

    /// Moves a position at the end of a segment to the start of the next one.
    fn normalize(&self, mut pos: Pos) -> Pos {
        let last = self.segments.back().expect("at least one segment").seq;
        while pos.seq < last && pos.off == self.segment(pos.seq).len {
            pos = Pos {
                seq: pos.seq + 1,
                off: 0,
            };
        }
        pos
    }

    /// Writes `buf` at `at` in the tail segment and fsyncs it.
    fn write_tail(&mut self, at: u64, buf: &[u8]) -> io::Result<()> {
        self.tail.seek(SeekFrom::Start(at))?;
        #[cfg(test)]
        if let Some(n) = self.fail_next_write_after.take() {
            self.tail.write_all(&buf[..n.min(buf.len())])?;
            return Err(io::Error::other("injected write failure"));
        }
        self.tail.write_all(buf)?;
        self.tail.sync_data()
    }

    fn repair_tail(&mut self) -> io::Result<()> {
        let len = self.segments.back().expect("at least one segment").len;
        self.tail.set_len(len)?;
        self.tail.sync_all()?;
        self.tail_dirty = false;
        Ok(())
    }

    /// Starts a new segment when the tail is big enough, or when everything
    /// is delivered and the space the delivered tail holds is needed.
    fn maybe_roll(&mut self, incoming: u64) -> Result<(), SpoolError> {
        let tail = *self.segments.back().expect("at least one segment");
        let reclaim = self.pending_records == 0
            && tail.len > 0
            && self.disk_bytes + incoming > self.max_bytes;
        if tail.len < self.roll_at && !reclaim {
            return Ok(());
        }
        let seq = tail.seq + 1;
        // The segment must exist durably before records in it are promised.
        self.tail = create_segment(&self.dir, seq)?;
        self.segments.push_back(Segment { seq, len: 0 });
        if self.pending_records == 0 {
            // Move the cursor onto the new segment so the old ones can go.
            self.commit_cursor(Pos { seq, off: 0 })?;
        }
        Ok(())
    }

    /// Durably moves the cursor to `new`, then deletes segments before it.
    fn commit_cursor(&mut self, new: Pos) -> Result<(), SpoolError> {
        let new = self.normalize(new);
        if new != self.cursor {
            write_cursor(&self.dir, new)?;
            self.cursor = new;
        }
        while let Some(front) = self.segments.front().copied() {
            if front.seq >= new.seq {
                break;
            }
            self.segments.pop_front();
            self.disk_bytes -= front.len;
            if self.reader.as_ref().is_some_and(|r| r.seq == front.seq) {
                self.reader = None;
            }
            // Failing here loses nothing: open removes segments before the
            // cursor.
            if let Err(e) = remove_if_exists(&segment_path(&self.dir, front.seq)) {
                tracing::warn!(dir = %self.dir.display(), seq = front.seq, error = %e,
                    "spool: cannot remove a delivered segment");
            }
        }
        Ok(())
    }

    /// Reads the header of the record at `pos` (or at the start of the next
    /// segment if `pos` is at the end of one): its position, payload length
    /// and CRC. None at the end of the spool. Leaves the reader just after
    /// the header.
    fn header_at(&mut self, pos: Pos) -> Result<Option<(Pos, usize, u32)>, SpoolError> {
        let pos = self.normalize(pos);
        let seg = self.segment(pos.seq);
        if pos.off >= seg.len {
            return Ok(None);
        }
        let mut header = [0u8; HEADER_BYTES];
        let read = self
            .reader_at(pos)
            .and_then(|r| r.file.read_exact(&mut header).map(|()| r.pos += 8));
        if let Err(e) = read {
            self.reader = None;
            return Err(e.into());
        }
        let (len, crc) = decode_header(&header);
        if len == 0 || len > MAX_RECORD_BYTES || pos.off + (HEADER_BYTES + len) as u64 > seg.len {
            self.reader = None;
            return Err(self.corrupt(format!(
                "bad record length {len} at byte {} of segment {}",
                pos.off, pos.seq
            )));
        }
        Ok(Some((pos, len, crc)))
    }

    /// Reads the payload following the header just read by `header_at`.
    fn read_payload(&mut self, at: Pos, len: usize, crc: u32) -> Result<Vec<u8>, SpoolError> {
        let mut payload = vec![0u8; len];
        let r = self
            .reader
            .as_mut()
            .expect("header_at positioned the reader");
        if let Err(e) = r.file.read_exact(&mut payload) {
            self.reader = None;
            return Err(e.into());
        }
        r.pos += len as u64;
        if crc32fast::hash(&payload) != crc {
            self.reader = None;
            return Err(self.corrupt(format!(
                "checksum mismatch in the record at byte {} of segment {}",
                at.off, at.seq
            )));
        }
        Ok(payload)
    }

    /// A stored payload as the record that was appended: a zstd frame
    /// decompressed, a version 1 payload as it is.
    fn decompress(&self, at: Pos, payload: Vec<u8>) -> Result<Vec<u8>, SpoolError> {
        if !payload.starts_with(&ZSTD_MAGIC) {
            return Ok(payload);
        }
        zstd::bulk::decompress(&payload, MAX_RECORD_BYTES).map_err(|e| {
            self.corrupt(format!(
                "the record at byte {} of segment {} does not decompress: {e}",
                at.off, at.seq
            ))
        })
    }

    /// The reader, opened on `pos.seq` and positioned at `pos.off`.
    fn reader_at(&mut self, pos: Pos) -> io::Result<&mut SegReader> {
        // (`is_none_or` would need Rust 1.82.)
        let open = matches!(&self.reader, Some(r) if r.seq == pos.seq);
        if !open {
            let file = File::open(segment_path(&self.dir, pos.seq))?;
            self.reader = Some(SegReader {
                seq: pos.seq,
                pos: 0,
                file: BufReader::with_capacity(READ_BUFFER, file),
            });
        }
        let r = self.reader.as_mut().expect("just set");
        if r.pos != pos.off {
            // Relative seeks keep the buffer when the target is inside it.
            r.file.seek_relative(pos.off as i64 - r.pos as i64)?;
            r.pos = pos.off;
        }
        Ok(r)
    }
}

fn invalid_input(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

fn decode_header(h: &[u8; HEADER_BYTES]) -> (usize, u32) {
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    (len, crc)
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("seg-{seq:020}.log"))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Sequence numbers of the segment files in `dir`, ascending.
fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Creates (or empties: a leftover of a roll that failed before its
/// directory fsync) a segment file and makes its directory entry durable.
fn create_segment(dir: &Path, seq: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(segment_path(dir, seq))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Scans records from `start` to `len`, checking lengths and checksums.
/// Returns the number of valid records and where they end.
fn scan_segment(file: File, start: u64, len: u64) -> io::Result<(u64, u64)> {
    let mut r = BufReader::with_capacity(READ_BUFFER, file);
    r.seek(SeekFrom::Start(start))?;
    let (mut off, mut count) = (start, 0u64);
    let mut payload = Vec::new();
    while len - off >= HEADER_BYTES as u64 {
        let mut header = [0u8; HEADER_BYTES];
        r.read_exact(&mut header)?;
        let (n, crc) = decode_header(&header);
        // Length 0 is refused on append, so zero-filled garbage (file size
        // updated, data not) never passes for records.
        if n == 0 || n > MAX_RECORD_BYTES || n as u64 > len - off - HEADER_BYTES as u64 {
            break;
        }
        payload.resize(n, 0);
        r.read_exact(&mut payload)?;
        if crc32fast::hash(&payload) != crc {
            break;
        }
        off += (HEADER_BYTES + n) as u64;
        count += 1;
    }
    Ok((count, off))
}

enum FormatError {
    Io(io::Error),
    Bad(String),
}

/// Checks `FORMAT`, writing it for a new spool.
fn check_format(dir: &Path, has_data: bool) -> Result<(), FormatError> {
    match fs::read(dir.join(FORMAT_FILE)) {
        Ok(content) if content == FORMAT_LINE => Ok(()),
        // Version 1 records stay readable (see the module docs); records
        // appended from now on are compressed, which a version 1 reader
        // would not understand.
        Ok(content) if content == FORMAT_LINE_V1 => {
            write_atomically(dir, FORMAT_TMP, FORMAT_FILE, FORMAT_LINE).map_err(FormatError::Io)
        }
        Ok(content) => Err(FormatError::Bad(format!(
            "unsupported FORMAT {:?} (expected {:?})",
            String::from_utf8_lossy(&content),
            String::from_utf8_lossy(FORMAT_LINE)
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if has_data {
                // FORMAT is written before anything else, so data without it
                // was not written by this spool.
                return Err(FormatError::Bad(
                    "spool files present but no FORMAT file".into(),
                ));
            }
            write_atomically(dir, FORMAT_TMP, FORMAT_FILE, FORMAT_LINE).map_err(FormatError::Io)
        }
        Err(e) => Err(FormatError::Io(e)),
    }
}

enum CursorError {
    Io(io::Error),
    Bad(String),
}

fn read_cursor(dir: &Path) -> Result<Option<Pos>, CursorError> {
    let text = match fs::read(dir.join(CURSOR_FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CursorError::Io(e)),
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    let parsed = text
        .strip_suffix('\n')
        .and_then(|t| t.split_once(' '))
        .and_then(|(s, o)| Some((digits(s)?, digits(o)?)));
    match parsed {
        Some((seq, off)) => Ok(Some(Pos { seq, off })),
        None => Err(CursorError::Bad(text)),
    }
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn write_cursor(dir: &Path, pos: Pos) -> io::Result<()> {
    let text = format!("{} {}\n", pos.seq, pos.off);
    write_atomically(dir, CURSOR_TMP, CURSOR_FILE, text.as_bytes())
}

/// Temporary file, fsync, rename, fsync of the directory: after a crash the
/// file has either its old or its new content, and the new one once this
/// returned.
fn write_atomically(dir: &Path, tmp: &str, name: &str, content: &[u8]) -> io::Result<()> {
    let tmp = dir.join(tmp);
    let mut f = File::create(&tmp)?;
    f.write_all(content)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Takes the directory's exclusive lock (`flock` on `LOCK`, released when
/// the spool is dropped or its process dies), or says who holds it.
fn lock_dir(dir: &Path) -> Result<File, SpoolError> {
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).read(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(dir.join(LOCK_FILE))?;
    // A process that forks (to run a subprocess, say) lends the child every
    // descriptor until the child execs, so a spool just dropped may stay
    // locked for a moment: only a lock held for a whole second is "in use".
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(SpoolError::InUse {
                    dir: dir.display().to_string(),
                })
            }
            Err(fs::TryLockError::Error(e)) => return Err(SpoolError::Io(e)),
        }
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Makes directory entries (created, renamed files) durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Windows cannot open directories as files; NTFS journals metadata.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> Vec<u8> {
        format!("record-{i}-").repeat(1 + i % 4).into_bytes()
    }

    /// `len` bytes that do not compress.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// What a record takes on disk: its header and its zstd frame.
    fn framed(record: &[u8]) -> u64 {
        (zstd::bulk::compress(record, RECORD_ZSTD_LEVEL)
            .unwrap()
            .len()
            + HEADER_BYTES) as u64
    }

    fn disk_sum(dir: &Path) -> u64 {
        list_segments(dir)
            .unwrap()
            .into_iter()
            .map(|s| fs::metadata(segment_path(dir, s)).unwrap().len())
            .sum()
    }

    fn all(spool: &mut Spool) -> Vec<Vec<u8>> {
        spool.peek(usize::MAX, usize::MAX).unwrap()
    }

    #[test]
    fn roundtrip_across_segments_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open_with_segment_size(dir.path(), 1 << 20, 64).unwrap();
        for i in 0..20 {
            s.append(&[&rec(i)]).unwrap();
        }
        assert!(list_segments(dir.path()).unwrap().len() > 3);
        assert_eq!(s.disk_bytes(), disk_sum(dir.path()));
        assert_eq!(all(&mut s), (0..20).map(rec).collect::<Vec<_>>());
        s.ack(7).unwrap();
        assert_eq!(s.disk_bytes(), disk_sum(dir.path()));
        drop(s);
        let mut s = Spool::open_with_segment_size(dir.path(), 1 << 20, 64).unwrap();
        assert_eq!(s.pending_records(), 13);
        assert_eq!(all(&mut s), (7..20).map(rec).collect::<Vec<_>>());
        assert_eq!(
            s.pending_bytes(),
            (7..20).map(|i| framed(&rec(i))).sum::<u64>()
        );
        assert_eq!(s.disk_bytes(), disk_sum(dir.path()));
    }

    #[test]
    fn empty_and_oversized_records_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 100).unwrap();
        let e = s.append(&[b"ok", b""]).unwrap_err();
        assert!(matches!(e, SpoolError::Io(ref e) if e.kind() == io::ErrorKind::InvalidInput));
        // What counts is the size on disk, after compression.
        let big = noise(93, 1);
        assert!(framed(&big) > 100);
        assert!(matches!(s.append(&[&big]), Err(SpoolError::TooLarge(93))));
        assert_eq!(s.pending_records(), 0);
        assert_eq!(s.disk_bytes(), 0);
        let compressible = vec![1u8; 93];
        s.append(&[&compressible]).unwrap();
        assert_eq!(s.disk_bytes(), framed(&compressible));
        assert!(s.disk_bytes() < 40);
    }

    #[test]
    fn failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&[b"first"]).unwrap();
        let before = s.disk_bytes();
        s.fail_next_write_after = Some(10);
        assert!(matches!(
            s.append(&[b"second", b"third"]),
            Err(SpoolError::Io(_))
        ));
        assert_eq!(s.disk_bytes(), before);
        assert_eq!(disk_sum(dir.path()), before);
        assert_eq!(s.pending_records(), 1);
        assert_eq!(all(&mut s), vec![b"first".to_vec()]);
        s.append(&[b"fourth"]).unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(all(&mut s), vec![b"first".to_vec(), b"fourth".to_vec()]);
    }

    #[test]
    fn ack_validates_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&[b"a", b"b"]).unwrap();
        let e = s.ack(3).unwrap_err();
        assert!(matches!(e, SpoolError::Io(ref e) if e.kind() == io::ErrorKind::InvalidInput));
        s.ack(0).unwrap();
        // Acking without a peek walks the headers.
        s.ack(1).unwrap();
        assert_eq!(all(&mut s), vec![b"b".to_vec()]);
        assert_eq!(s.pending_bytes(), framed(b"b"));
    }

    #[test]
    fn unknown_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Spool::open(dir.path(), 1 << 20).unwrap());
        fs::write(dir.path().join(FORMAT_FILE), "aiaudit-spool 3\n").unwrap();
        assert!(matches!(
            Spool::open(dir.path(), 1 << 20),
            Err(SpoolError::Corrupt { .. })
        ));
    }

    #[test]
    fn bad_cursor_and_missing_format_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Spool::open(dir.path(), 1 << 20).unwrap());
        fs::write(dir.path().join(CURSOR_FILE), "x 1\n").unwrap();
        assert!(matches!(
            Spool::open(dir.path(), 1 << 20),
            Err(SpoolError::Corrupt { .. })
        ));
        fs::remove_file(dir.path().join(CURSOR_FILE)).unwrap();
        fs::remove_file(dir.path().join(FORMAT_FILE)).unwrap();
        assert!(matches!(
            Spool::open(dir.path(), 1 << 20),
            Err(SpoolError::Corrupt { .. })
        ));
    }

    #[test]
    fn damage_in_an_earlier_segment_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open_with_segment_size(dir.path(), 1 << 20, 32).unwrap();
        for i in 0..10 {
            s.append(&[&rec(i)]).unwrap();
        }
        drop(s);
        let first = segment_path(dir.path(), list_segments(dir.path()).unwrap()[0]);
        let mut bytes = fs::read(&first).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(&first, bytes).unwrap();
        assert!(matches!(
            Spool::open_with_segment_size(dir.path(), 1 << 20, 32),
            Err(SpoolError::Corrupt { .. })
        ));
    }

    #[test]
    fn leftover_delivered_segment_is_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open_with_segment_size(dir.path(), 1 << 20, 32).unwrap();
        for i in 0..6 {
            s.append(&[&rec(i)]).unwrap();
        }
        let first = segment_path(dir.path(), 0);
        let saved = fs::read(&first).unwrap();
        s.ack(3).unwrap();
        assert!(!first.exists());
        drop(s);
        // As if the crash came between the cursor write and the deletion.
        fs::write(&first, saved).unwrap();
        let mut s = Spool::open_with_segment_size(dir.path(), 1 << 20, 32).unwrap();
        assert!(!first.exists());
        assert_eq!(all(&mut s), (3..6).map(rec).collect::<Vec<_>>());
        assert_eq!(s.disk_bytes(), disk_sum(dir.path()));
    }

    #[test]
    fn cursor_at_end_of_segment_before_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&[b"a", b"b"]).unwrap();
        s.ack(2).unwrap();
        drop(s);
        // As if a crash came right after a roll created the next segment.
        fs::write(segment_path(dir.path(), 1), b"").unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.pending_records(), 0);
        assert_eq!(s.pending_bytes(), 0);
        assert_eq!(s.disk_bytes(), 0);
        assert_eq!(list_segments(dir.path()).unwrap(), vec![1]);
        s.append(&[b"c"]).unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(all(&mut s), vec![b"c".to_vec()]);
    }

    #[test]
    fn delivered_tail_is_reclaimed_when_space_is_needed() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open_with_segment_size(dir.path(), 1000, 1 << 20).unwrap();
        let small = noise(92, 2);
        s.append(&[&small]).unwrap();
        let big = noise(900, 3);
        let (used, needed) = (framed(&small), framed(&big));
        assert!(used + needed > 1000 && needed <= 1000);
        assert!(matches!(
            s.append(&[&big]),
            Err(SpoolError::Full { used: u, limit: 1000 }) if u == used
        ));
        s.peek(1, usize::MAX).unwrap();
        s.ack(1).unwrap();
        // Everything delivered: a fresh segment replaces the old one.
        s.append(&[&big]).unwrap();
        assert_eq!(s.disk_bytes(), needed);
        assert_eq!(disk_sum(dir.path()), needed);
        assert_eq!(list_segments(dir.path()).unwrap(), vec![1]);
        drop(s);
        let mut s = Spool::open_with_segment_size(dir.path(), 1000, 1 << 20).unwrap();
        assert_eq!(all(&mut s), vec![big.to_vec()]);
        assert_eq!(s.pending_bytes(), needed);
    }

    /// An NDJSON batch of `n` events of prose, as the emitter spools them.
    fn json_batch(n: usize, seed: usize) -> Vec<u8> {
        let words = [
            "the",
            "loan",
            "applicant",
            "model",
            "answer",
            "risk",
            "income",
            "Lagos",
        ];
        (0..n)
            .map(|i| {
                let text: Vec<&str> = (0..150).map(|w| words[(w * 7 + i + seed) % 8]).collect();
                format!(
                    "{{\"id\":\"e-{seed}-{i}\",\"output\":{{\"content\":\"{}\"}}}}\n",
                    text.join(" ")
                )
            })
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn records_are_stored_compressed_and_read_back_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        let batches: Vec<Vec<u8>> = (0..3).map(|i| json_batch(100, i)).collect();
        let given: usize = batches.iter().map(Vec::len).sum();
        s.append(&batches.iter().map(Vec::as_slice).collect::<Vec<_>>())
            .unwrap();
        assert!(
            s.disk_bytes() * 5 < given as u64,
            "{} on disk for {given}",
            s.disk_bytes()
        );
        // The segment holds zstd frames, not the JSON.
        let segment = fs::read(segment_path(dir.path(), 0)).unwrap();
        assert_eq!(segment[HEADER_BYTES..HEADER_BYTES + 4], ZSTD_MAGIC);
        assert_eq!(all(&mut s), batches);
        // Peeking limits bytes as the records' own sizes: two batches do not
        // fit in the size of one and a half.
        let limit = batches[0].len() * 3 / 2;
        assert_eq!(s.peek(10, limit).unwrap(), batches[..1].to_vec());
        assert_eq!(
            s.peek_after(1, 10, usize::MAX).unwrap(),
            batches[1..].to_vec()
        );
        assert_eq!(fs::read(dir.path().join(FORMAT_FILE)).unwrap(), FORMAT_LINE);
    }

    #[test]
    fn a_version_1_spool_is_read_and_upgraded() {
        // A spool as version 1 wrote it: records stored as given.
        let dir = tempfile::tempdir().unwrap();
        let old: Vec<Vec<u8>> = (0..2).map(|i| json_batch(3, i)).collect();
        let mut segment = Vec::new();
        for r in &old {
            segment.extend_from_slice(&(r.len() as u32).to_le_bytes());
            segment.extend_from_slice(&crc32fast::hash(r).to_le_bytes());
            segment.extend_from_slice(r);
        }
        fs::write(dir.path().join(FORMAT_FILE), FORMAT_LINE_V1).unwrap();
        fs::write(segment_path(dir.path(), 0), &segment).unwrap();
        fs::write(dir.path().join(CURSOR_FILE), "0 0\n").unwrap();

        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(fs::read(dir.path().join(FORMAT_FILE)).unwrap(), FORMAT_LINE);
        let new = json_batch(3, 9);
        s.append(&[&new]).unwrap();
        let mut expected = old.clone();
        expected.push(new.clone());
        assert_eq!(all(&mut s), expected);
        s.ack(1).unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(all(&mut s), vec![old[1].clone(), new]);
    }

    #[test]
    fn a_frame_that_does_not_decompress_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&[&json_batch(10, 0)]).unwrap();
        drop(s);
        // Damage inside the frame, with a matching CRC: only the frame
        // check can tell.
        let path = segment_path(dir.path(), 0);
        let mut seg = fs::read(&path).unwrap();
        let end = seg.len();
        seg[end - 3] ^= 0xFF;
        let crc = crc32fast::hash(&seg[HEADER_BYTES..]);
        seg[4..8].copy_from_slice(&crc.to_le_bytes());
        fs::write(&path, &seg).unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        let e = s.peek(1, usize::MAX).unwrap_err();
        assert!(matches!(e, SpoolError::Corrupt { .. }), "{e}");
    }
}
