//! The backup format, `aiaudit-backup 1` and `2`: every name and every rule
//! about what a backup holds lives here (docs/format.md describes the same).
//!
//! ```text
//! <location>/<id>/manifest.json          written last: a backup without it does not exist
//! <location>/<id>/checkpoint             the signed checkpoint the backup is consistent with
//! <location>/<id>/log.vkey               the log's verifier key as the server announced it
//! <location>/<id>/keyring                the encryption keyring, when the server serves one
//! <location>/<id>/entries/<from:020>     entries [from, from+count) in entry-bundle encoding
//! <location>/<id>/blobs/<hex id>         format 2 only: the stored bytes of a blob an entry
//!                                        of [from, size) lists, exactly as the log stores them
//! ```
//!
//! A backup holding a blob is format 2; one without any is written as
//! format 1, which builds from before blobs restore.
//!
//! Pure: no I/O.

use aiaudit_tlog::Hash;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The manifest's `format` of a backup without blobs.
pub const FORMAT: &str = "aiaudit-backup 1";
/// The manifest's `format` of a backup holding blobs (`blobs/<hex id>`).
pub const FORMAT_2: &str = "aiaudit-backup 2";
pub const MANIFEST: &str = "manifest.json";
pub const CHECKPOINT: &str = "checkpoint";
pub const VKEY: &str = "log.vkey";
pub const KEYRING: &str = "keyring";
/// The folder of a backup's blob files.
pub const BLOBS: &str = "blobs/";
/// Entries per segment file: 64 full tiles, about 16 MiB of 1 KiB events,
/// small enough to hold in memory, large enough to keep object counts low.
pub const SEGMENT_ENTRIES: u64 = 64 * 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Full,
    Incremental,
}

/// One file of a backup, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the backup's directory, e.g. `entries/00000000000000000000`.
    pub name: String,
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// For entry segments: the first log index and the number of entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// `manifest.json`: what a backup is and holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub id: String,
    pub kind: Kind,
    /// The backup this one continues (incrementals only).
    #[serde(default)]
    pub parent: Option<String>,
    pub origin: String,
    /// First log index held (0 for a full backup, the parent's size otherwise).
    pub from: u64,
    /// The checkpoint's tree size: entries `[from, size)` are held.
    pub size: u64,
    /// Base64 root hash of the checkpoint.
    pub root: String,
    /// RFC 3339 time the backup was taken.
    pub created: String,
    /// The signed checkpoint note (also stored as the file `checkpoint`).
    pub checkpoint: String,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// The entry segments, in index order.
    pub fn segments(&self) -> Vec<&FileEntry> {
        let mut segs: Vec<&FileEntry> = self.files.iter().filter(|f| f.from.is_some()).collect();
        segs.sort_by_key(|f| f.from);
        segs
    }

    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    /// The blob files (format 2), in the manifest's order.
    pub fn blobs(&self) -> impl Iterator<Item = &FileEntry> {
        self.files.iter().filter(|f| f.name.starts_with(BLOBS))
    }

    /// The files that are neither entry segments nor blobs: the checkpoint,
    /// the verifier key, the keyring.
    pub fn small_files(&self) -> impl Iterator<Item = &FileEntry> {
        self.files
            .iter()
            .filter(|f| f.from.is_none() && !f.name.starts_with(BLOBS))
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        out.push(b'\n');
        out
    }

    /// Parses and checks a manifest's internal consistency (not its files).
    pub fn parse(bytes: &[u8]) -> anyhow::Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes).context("not a backup manifest")?;
        m.check().with_context(|| format!("manifest of {}", m.id))?;
        Ok(m)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.format != FORMAT && self.format != FORMAT_2 {
            bail!(
                "format {:?}; this version reads only {FORMAT:?} and {FORMAT_2:?}",
                self.format
            );
        }
        check_id(&self.id)?;
        match (self.kind, &self.parent) {
            (Kind::Full, None) if self.from == 0 => {}
            (Kind::Full, _) => bail!("a full backup must start at 0 without a parent"),
            (Kind::Incremental, Some(p)) => check_id(p)?,
            (Kind::Incremental, None) => bail!("an incremental backup names no parent"),
        }
        if self.from > self.size {
            bail!("from {} is beyond size {}", self.from, self.size);
        }
        let mut next = self.from;
        for seg in self.segments() {
            let (from, count) = (seg.from.unwrap_or(0), seg.count.unwrap_or(0));
            if from != next || count == 0 || seg.name != segment_name(from) {
                bail!(
                    "segment {} does not continue at index {next} (or is misnamed or empty)",
                    seg.name
                );
            }
            next = from.checked_add(count).ok_or_else(|| {
                anyhow::anyhow!("segment {} runs past the largest index", seg.name)
            })?;
        }
        if next != self.size {
            bail!(
                "segments end at index {next}, the checkpoint size is {}",
                self.size
            );
        }
        for f in &self.files {
            check_name(&f.name)?;
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("{}: bad sha256 {:?}", f.name, f.sha256);
            }
        }
        for f in self.blobs() {
            if self.format == FORMAT {
                bail!("{}: a backup of {FORMAT:?} holds no blobs", f.name);
            }
            if parse_blob_name(&f.name).is_none() || f.from.is_some() || f.count.is_some() {
                bail!(
                    "{}: a blob file is named {BLOBS}<64 lowercase hex digits> and holds no entries",
                    f.name
                );
            }
        }
        Ok(())
    }
}

/// A backup id: `YYYYMMDDTHHMMSSZ-full` or `-incr`. Ids sort by time.
pub fn backup_id(at: OffsetDateTime, kind: Kind) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let suffix = match kind {
        Kind::Full => "full",
        Kind::Incremental => "incr",
    };
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{suffix}",
        at.year(),
        at.month() as u8,
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Ids become directory and object names: only a safe alphabet, never a path.
pub fn check_id(id: &str) -> anyhow::Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !ok {
        bail!("{id:?} is not a backup id");
    }
    Ok(())
}

/// File names inside a backup: relative, no `..`, same alphabet as ids plus `/`.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok =
        !name.is_empty() && name.split('/').all(|part| check_id(part).is_ok()) && name != MANIFEST;
    if !ok {
        bail!("{name:?} is not a valid file name in a backup");
    }
    Ok(())
}

/// The segment file holding entries from index `from`: zero-padded so names sort by index.
pub fn segment_name(from: u64) -> String {
    format!("entries/{from:020}")
}

/// The file holding the stored bytes of blob `id`: `blobs/<64 lowercase hex digits>`.
pub fn blob_name(id: &Hash) -> String {
    format!("{BLOBS}{}", aiaudit_store::blob_name(id))
}

/// The blob id a blob file is named after; None for any other name.
pub fn parse_blob_name(name: &str) -> Option<Hash> {
    let hex_id = name.strip_prefix(BLOBS)?;
    if hex_id.len() != 64
        || !hex_id
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    hex::decode(hex_id).ok()?.try_into().ok()
}

/// The object name of a file of backup `id`, relative to the location.
pub fn path(id: &str, name: &str) -> String {
    format!("{id}/{name}")
}

/// Splits `[from, size)` into segment ranges aligned to [`SEGMENT_ENTRIES`]
/// (the first may be shorter, so increments line up with full backups).
pub fn segment_ranges(from: u64, size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut start = from;
    while start < size {
        let end = ((start / SEGMENT_ENTRIES + 1) * SEGMENT_ENTRIES).min(size);
        out.push((start, end - start));
        start = end;
    }
    out
}

/// Lowercase hex SHA-256 (ring: much faster than `sha2` on CPUs without SHA extensions).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha256(bytes))
}

/// SHA-256, e.g. of a blob's stored bytes (what its entry logs as `stored`).
pub fn sha256(bytes: &[u8]) -> Hash {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// Picks a backup and its ancestors, oldest (the full one) first, from every
/// manifest in a location. `id` None means the latest backup.
pub fn chain<'a>(manifests: &'a [Manifest], id: Option<&str>) -> anyhow::Result<Vec<&'a Manifest>> {
    let find = |id: &str| manifests.iter().find(|m| m.id == id);
    let target = match id {
        Some(id) => find(id).with_context(|| format!("no backup {id:?} here"))?,
        None => latest(manifests).context("no backups here")?,
    };
    let mut chain = vec![target];
    let mut cur = target;
    while let Some(parent) = &cur.parent {
        if chain.len() > manifests.len() {
            bail!("the parents of {} form a cycle", target.id);
        }
        let p = find(parent).with_context(|| {
            format!(
                "{} continues {parent}, which is missing: this chain cannot be restored",
                cur.id
            )
        })?;
        if p.size != cur.from {
            bail!(
                "{} starts at index {} but its parent {} ends at {}",
                cur.id,
                cur.from,
                p.id,
                p.size
            );
        }
        if p.origin != cur.origin {
            bail!(
                "{} is of log {:?}, its parent {} of {:?}",
                cur.id,
                cur.origin,
                p.id,
                p.origin
            );
        }
        chain.push(p);
        cur = p;
    }
    chain.reverse();
    Ok(chain)
}

/// The latest backup: the one covering the most entries, the newest id
/// (ids sort by time) among equals. Sizes never go back in an append-only
/// log, so this holds even if a clock did.
pub fn latest(manifests: &[Manifest]) -> Option<&Manifest> {
    manifests
        .iter()
        .max_by(|a, b| (a.size, &a.id).cmp(&(b.size, &b.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_running_past_u64_is_refused() {
        // Found by fuzzing: from + count overflowed.
        let mut m = manifest("20261127T020000Z-full", None, 0, 4);
        m.files[0].count = Some(5);
        m.files.push(FileEntry {
            name: segment_name(5),
            bytes: 1,
            sha256: "c".repeat(64),
            from: Some(5),
            count: Some(u64::MAX),
        });
        let bytes = serde_json::to_vec(&m).unwrap();
        let err = format!("{:#}", Manifest::parse(&bytes).unwrap_err());
        assert!(
            err.contains("largest index") || err.contains("continue"),
            "{err}"
        );
    }

    pub(crate) fn manifest(id: &str, parent: Option<&str>, from: u64, size: u64) -> Manifest {
        let files = segment_ranges(from, size)
            .into_iter()
            .map(|(f, c)| FileEntry {
                name: segment_name(f),
                bytes: 1,
                sha256: "0".repeat(64),
                from: Some(f),
                count: Some(c),
            })
            .collect();
        Manifest {
            format: FORMAT.into(),
            id: id.into(),
            kind: if parent.is_some() {
                Kind::Incremental
            } else {
                Kind::Full
            },
            parent: parent.map(str::to_string),
            origin: "o".into(),
            from,
            size,
            root: String::new(),
            created: String::new(),
            checkpoint: String::new(),
            files,
        }
    }

    #[test]
    fn ids_sort_by_time_and_say_their_kind() {
        let t = OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
        let a = backup_id(t, Kind::Full);
        let b = backup_id(t + time::Duration::seconds(1), Kind::Incremental);
        assert_eq!(a, "20261118T110640Z-full");
        assert!(a < b && b.ends_with("-incr"));
        assert!(check_id(&a).is_ok());
        for bad in ["", "..", "a/b", ".hidden", "a b"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn manifest_round_trips_and_is_checked() {
        let m = manifest("b1-incr", Some("b0-full"), 600, 40_000);
        assert_eq!(Manifest::parse(&m.to_json()).unwrap(), m);
        assert_eq!(m.segments().len(), 3);

        let mut gap = m.clone();
        gap.files.remove(1);
        let err = Manifest::parse(&gap.to_json()).unwrap_err();
        assert!(format!("{err:#}").contains("does not continue"), "{err:#}");

        let mut short = m.clone();
        short.size += 1;
        assert!(Manifest::parse(&short.to_json()).is_err());

        let mut escape = m.clone();
        escape.files[0].name = "../x".into();
        assert!(Manifest::parse(&escape.to_json()).is_err());

        let mut future = m.clone();
        future.format = "aiaudit-backup 3".into();
        assert!(Manifest::parse(&future.to_json()).is_err());

        let mut orphan = m;
        orphan.parent = None;
        assert!(Manifest::parse(&orphan.to_json()).is_err());
    }

    #[test]
    fn only_format_2_lists_blobs_each_named_by_its_id() {
        let id = [0xab; 32];
        let name = blob_name(&id);
        assert_eq!(name, format!("blobs/{}", "ab".repeat(32)));
        assert_eq!(parse_blob_name(&name), Some(id));
        for bad in ["blobs/AB", "blobs/", "entries/0", &name.to_uppercase()] {
            assert_eq!(parse_blob_name(bad), None, "{bad}");
        }
        let blob = FileEntry {
            name,
            bytes: 1,
            sha256: "0".repeat(64),
            from: None,
            count: None,
        };
        let mut m = manifest("b0-full", None, 0, 10);
        m.files.push(blob);
        m.format = FORMAT_2.into();
        assert_eq!(Manifest::parse(&m.to_json()).unwrap().blobs().count(), 1);
        assert_eq!(m.small_files().count(), 0);

        let mut old = m.clone();
        old.format = FORMAT.into();
        let err = format!("{:#}", Manifest::parse(&old.to_json()).unwrap_err());
        assert!(err.contains("holds no blobs"), "{err}");

        let mut upper = m.clone();
        upper.files[1].name = upper.files[1].name.to_uppercase().replace("BLOBS", "blobs");
        assert!(Manifest::parse(&upper.to_json()).is_err());

        let mut with_entries = m;
        with_entries.files[1].count = Some(1);
        assert!(Manifest::parse(&with_entries.to_json()).is_err());
    }

    #[test]
    fn segments_align_to_fixed_boundaries() {
        assert_eq!(segment_ranges(0, 0), vec![]);
        assert_eq!(segment_ranges(0, 10), vec![(0, 10)]);
        let s = SEGMENT_ENTRIES;
        assert_eq!(
            segment_ranges(10, 2 * s + 5),
            vec![(10, s - 10), (s, s), (2 * s, 5)]
        );
        assert_eq!(segment_name(7), "entries/00000000000000000007");
    }

    #[test]
    fn chains_follow_parents_and_refuse_gaps() {
        let all = vec![
            manifest("a-full", None, 0, 10),
            manifest("b-incr", Some("a-full"), 10, 20),
            manifest("c-incr", Some("b-incr"), 20, 25),
        ];
        let ids = |c: Vec<&Manifest>| c.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
        assert_eq!(
            ids(chain(&all, None).unwrap()),
            ["a-full", "b-incr", "c-incr"]
        );
        assert_eq!(
            ids(chain(&all, Some("b-incr")).unwrap()),
            ["a-full", "b-incr"]
        );
        assert!(chain(&all, Some("zzz")).is_err());

        let missing = vec![all[0].clone(), all[2].clone()];
        let err = chain(&missing, None).unwrap_err().to_string();
        assert!(err.contains("b-incr, which is missing"), "{err}");

        let mut gap = all.clone();
        gap[2] = manifest("c-incr", Some("b-incr"), 21, 25);
        assert!(chain(&gap, None).is_err());
    }
}
