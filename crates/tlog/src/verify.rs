//! Full audit of a tiled log: recompute everything from the entries and
//! compare it with every tile the log serves.

use crate::builder::TreeBuilder;
use crate::hash::{empty_tree_hash, record_hash, Hash, Result};
use crate::tile::{
    decode_entry_bundle, hashes_at_tile_level, parse_hash_tile, Tile, TileKind, TILE_HEIGHT,
    TILE_WIDTH,
};

/// Source of tile bytes for [`audit_log`], e.g. an HTTP client or a data
/// directory.
pub trait TileReader {
    /// Returns the bytes of a tile (hash tile or entry bundle) of the given path.
    ///
    /// The bytes must be exactly those of `tile` (with its width); a reader
    /// that only has a wider tile must cut it down itself.
    fn read_tile(&mut self, tile: &Tile) -> Result<Vec<u8>>;

    /// What [`audit_log`] shows each entry it decodes, with the entry's log
    /// index: a reader that wants to look inside entries (say, for what else
    /// they name) does it here rather than in [`TileReader::read_tile`],
    /// which runs on the one thread that reads, while this runs on the cores
    /// that hash, with the entry fresh in their cache.
    fn entry_visitor(&self) -> Option<EntryVisitor> {
        None
    }

    /// A way to read entry bundles from any thread, for a reader that has
    /// one (a data directory's files): then the cores that hash a bundle
    /// read it too, straight into their own cache, instead of the audit's
    /// one thread reading every byte for them. [`TileReader::read_tile`]
    /// still reads the hash tiles.
    fn bundle_reader(&self) -> Option<BundleReader> {
        None
    }
}

/// Reads the entry bundle `tile` from any thread (see
/// [`TileReader::bundle_reader`]).
pub type BundleReader = std::sync::Arc<dyn Fn(&Tile) -> Result<Vec<u8>> + Send + Sync>;

/// Called once for every entry of every entry bundle the audit reads and
/// decodes, from any of its threads and in no particular order, and never
/// after [`audit_log`] returns. An audit that stops early (at
/// [`MAX_PROBLEMS`]) reads, and shows, only part of the log.
pub type EntryVisitor = std::sync::Arc<dyn Fn(u64, &[u8]) + Send + Sync>;

impl<T: TileReader + ?Sized> TileReader for &mut T {
    fn read_tile(&mut self, tile: &Tile) -> Result<Vec<u8>> {
        (**self).read_tile(tile)
    }
    fn entry_visitor(&self) -> Option<EntryVisitor> {
        (**self).entry_visitor()
    }
    fn bundle_reader(&self) -> Option<BundleReader> {
        (**self).bundle_reader()
    }
}

impl<T: TileReader + ?Sized> TileReader for Box<T> {
    fn read_tile(&mut self, tile: &Tile) -> Result<Vec<u8>> {
        (**self).read_tile(tile)
    }
    fn entry_visitor(&self) -> Option<EntryVisitor> {
        (**self).entry_visitor()
    }
    fn bundle_reader(&self) -> Option<BundleReader> {
        (**self).bundle_reader()
    }
}

/// One thing wrong with the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The first log index (leaf) the problem affects; the tree size for a
    /// root mismatch.
    pub index: u64,
    /// Human-readable description.
    pub what: String,
}

/// Checks every stored tree node of a log of `size` leaves: each node at
/// level k ≥ 1 must be the hash of its two children at level k − 1.
/// `read(level, start, count)` returns `count` stored hashes of `level` from
/// `start`, concatenated (level 0: the leaf hashes). Tiles carry only levels
/// 0, 8, 16…, so this covers what a tile audit cannot: the nodes between,
/// from which a server computes proofs. Stops after [`MAX_PROBLEMS`].
pub fn check_stored_levels<E: std::fmt::Display>(
    size: u64,
    mut read: impl FnMut(u32, u64, u64) -> std::result::Result<Vec<u8>, E>,
) -> Vec<Problem> {
    const CHUNK: u64 = 1 << 14;
    let mut problems = Vec::new();
    let mut level = 1u32;
    while level < 64 && (size >> level) > 0 && problems.len() < MAX_PROBLEMS {
        let nodes = size >> level;
        let mut start = 0;
        while start < nodes && problems.len() < MAX_PROBLEMS {
            let count = (nodes - start).min(CHUNK);
            let (below, here) = match (
                read(level - 1, 2 * start, 2 * count),
                read(level, start, count),
            ) {
                (Ok(b), Ok(h)) if b.len() as u64 == 64 * count && h.len() as u64 == 32 * count => {
                    (b, h)
                }
                (Err(e), _) | (_, Err(e)) => {
                    problems.push(Problem {
                        index: start << level,
                        what: format!("tree level {level}: cannot be read: {e}"),
                    });
                    break;
                }
                _ => {
                    problems.push(Problem {
                        index: start << level,
                        what: format!("tree level {level}: short read"),
                    });
                    break;
                }
            };
            for i in 0..count as usize {
                let left: &Hash = below[64 * i..64 * i + 32].try_into().expect("32 bytes");
                let right: &Hash = below[64 * i + 32..64 * i + 64]
                    .try_into()
                    .expect("32 bytes");
                if crate::hash::node_hash(left, right)[..] != here[32 * i..32 * i + 32] {
                    let node = start + i as u64;
                    problems.push(Problem {
                        index: node << level,
                        what: format!(
                            "tree level {level} node {node} (leaves {}..{}) does not hash its two children",
                            node << level,
                            (node + 1) << level
                        ),
                    });
                }
            }
            start += count;
        }
        level += 1;
    }
    problems
}

/// The outcome of [`audit_log`]. The log is fine exactly when `problems` is
/// empty (and `old_root_ok` is `Some(true)` if an old checkpoint was given).
#[derive(Debug, Default, PartialEq)]
pub struct AuditReport {
    /// Entries read from well-formed bundles and hashed.
    pub entries_checked: u64,
    /// Tiles (hash tiles and bundles) that were read successfully.
    pub tiles_checked: u64,
    /// Problems found, sorted by index; at most [`MAX_PROBLEMS`].
    pub problems: Vec<Problem>,
    /// For an old checkpoint: whether its root is the root of the first
    /// old_size entries. `Some(false)` also when that could not be
    /// established (missing entries, audit stopped early, or old_size >
    /// size). `None` when no old checkpoint was given.
    pub old_root_ok: Option<bool>,
}

/// [`audit_log`] stops after finding this many problems: the log is broken
/// and the report is long enough to say how.
pub const MAX_PROBLEMS: usize = 1000;

/// Tile levels whose hashes a u64-sized tree can have (tree levels 0..=56).
const TILE_LEVELS: usize = 8;

/// Audits the whole log of checkpoint (size, root): reads every entry bundle and every hash tile in tiles_for_size(size).
/// Checks: every entry hashes to the leaf hash in its level-0 tile (problem at that index), every hash tile at level k+1
/// equals the hashes computed from level k (problem at the first leaf of the mismatching subtree), tiles have the
/// right length (a missing/short tile or a read error is a problem at its first leaf), and the root recomputed from the
/// ENTRIES (independently of the tiles) equals `root` (problem "root mismatch" at index size if no finer problem was found).
/// If `old` is Some((old_size, old_root)) with old_size <= size, also recompute the root at old_size from entries and
/// set old_root_ok. Every byte of every tile is authenticated; nothing is trusted without being recomputed.
/// Memory: O(size / 256) hashes at most (streaming by bundle). Stops collecting after 1000 problems.
/// `progress(entries_done)` is called after each bundle.
///
/// Details:
/// * A hash at level k+1 is reported only when it matches neither the hash
///   computed from the entries nor the one computed from the level-k tile
///   below it, so that one bad entry or hash is reported once, at the lowest
///   level where it shows. Any tile byte that differs from what the entries
///   imply is still reported somewhere.
/// * When an entry bundle is unusable, its leaf hashes are taken from the
///   level-0 tile (already reported, so the audit can go on); when both are
///   unusable, the nodes above that bundle are not compared.
/// * The audit stops reading at [`MAX_PROBLEMS`] problems; the root is then
///   not compared (the log is known to be broken).
pub fn audit_log(
    size: u64,
    root: &Hash,
    reader: &mut impl TileReader,
    old: Option<(u64, Hash)>,
    mut progress: impl FnMut(u64),
) -> AuditReport {
    let mut audit = Auditor {
        size,
        reader,
        report: AuditReport::default(),
        tiles: std::array::from_fn(|_| None),
        broken: Vec::new(),
    };
    let mut builder = TreeBuilder::new();
    // Whether every leaf pushed so far came from an entry.
    let mut from_entries = true;
    let mut old_ok = match old {
        Some((0, old_root)) => Some(old_root == empty_tree_hash()),
        // Not reached yet, or never (old_size > size): fail closed.
        Some(_) => Some(false),
        None => None,
    };
    let old = old.filter(|&(old_size, _)| old_size > 0 && old_size <= size);

    let bundles = size.div_ceil(TILE_WIDTH);
    let visitor = audit.reader.entry_visitor();
    let shared = audit.reader.bundle_reader();
    let mut completed = true;
    let mut ahead = std::collections::VecDeque::new();
    let (mut hashing, mut read_to): (Option<Hashing>, u64) = (None, 0);
    // Read-ahead doubles while bundles check out, and falls back to one at a
    // time where problems show, so a broken log is not read past its last report.
    let (mut window, mut problems_before) = (1, 0);
    for b in 0..bundles {
        if audit.is_full() {
            completed = false;
            break;
        }
        if ahead.is_empty() {
            let clean = audit.report.problems.len() == problems_before;
            window = if clean {
                (window * 2).min(AHEAD_BUNDLES)
            } else {
                1
            };
            problems_before = audit.report.problems.len();
            let in_flight = match hashing.take() {
                Some(h) => h,
                None => {
                    let (first, raw) = audit.read_window(&mut read_to, bundles, window, &shared);
                    Hashing::start(first, raw, &visitor, &shared)
                }
            };
            // The next window is read while the cores hash this one (or,
            // when the cores read for themselves, hashed as soon as they
            // are done with this one).
            let next = (read_to < bundles)
                .then(|| audit.read_window(&mut read_to, bundles, window, &shared));
            ahead = in_flight.finish();
            hashing = next.map(|(first, raw)| Hashing::start(first, raw, &visitor, &shared));
        }
        let start = b * TILE_WIDTH;
        let width = (size - start).min(TILE_WIDTH) as usize;
        let hashed = ahead.pop_front().expect("read ahead from b");
        let (entry_hashes, subtree) = match audit.check_bundle(b, width, hashed) {
            Some((hashes, root)) => (Some(hashes), root),
            None => (None, None),
        };
        let tile_hashes = audit.read_hash_tile(0, b);
        audit.tiles[0] = Some(LoadedTile {
            index: b,
            hashes: tile_hashes,
        });
        if let Some(hashes) = &entry_hashes {
            audit.report.entries_checked += hashes.len() as u64;
        } else {
            from_entries = false;
        }
        let tile_hashes = audit.tiles[0].as_ref().and_then(|t| t.hashes.clone());
        if entry_hashes.is_none() && tile_hashes.is_none() {
            audit.broken.push((start, start + width as u64));
        }
        for i in 0..width {
            let e = entry_hashes.as_ref().map(|h| h[i]);
            let t = tile_hashes.as_ref().map(|h| h[i]);
            if let (Some(e), Some(t)) = (e, t) {
                if e != t {
                    let tile = audit.tile_at(TileKind::Hash { level: 0 }, b);
                    audit.problem(
                        start + i as u64,
                        format!(
                            "entry {} does not hash to hash {i} of {}",
                            start + i as u64,
                            tile.path()
                        ),
                    );
                }
            }
        }
        // A full bundle's subtree was built on a worker core, unless the old
        // tree ends inside it (its root needs the leaves one by one).
        let old_inside = old.is_some_and(|(o, _)| o > start && o < start + width as u64);
        match subtree.filter(|_| !old_inside) {
            Some(root) => builder
                .push_subtree(TILE_HEIGHT, root, |level, index, hash| {
                    audit.on_node(level, index, hash)
                })
                .expect("full bundles start at multiples of the tile width"),
            None => {
                for i in 0..width {
                    // Placeholder leaves keep the tree shape; nodes above them
                    // are never compared (see `broken`).
                    let e = entry_hashes.as_ref().map(|h| h[i]);
                    let t = tile_hashes.as_ref().map(|h| h[i]);
                    let leaf = e.or(t).unwrap_or_default();
                    builder.push(leaf, |level, index, hash| audit.on_node(level, index, hash));
                    if let Some((old_size, old_root)) = old {
                        if builder.size() == old_size {
                            old_ok = Some(from_entries && builder.root() == old_root);
                        }
                    }
                }
            }
        }
        if let Some((old_size, old_root)) = old {
            if builder.size() == old_size {
                old_ok = Some(from_entries && builder.root() == old_root);
            }
        }
        progress(builder.size());
    }

    // A window still being hashed when the audit stopped early: its
    // workers call the visitor, which must be done when this returns.
    if let Some(hashing) = hashing.take() {
        hashing.finish();
    }
    if completed && audit.report.problems.is_empty() && builder.root() != *root {
        audit.problem(size, "root mismatch".to_string());
    }
    let mut report = audit.report;
    report.old_root_ok = old_ok;
    // Level-k problems are found after the leaves above them; sort for the reader.
    report.problems.sort_by_key(|p| p.index);
    report
}

/// Entry bundles read ahead of the audit: at most this many...
const AHEAD_BUNDLES: u64 = 256;
/// ...or this many bytes, whichever comes first (memory stays bounded
/// whatever the entries' sizes). Small enough that a window read is still
/// in the processor's cache when the cores hash it: with 32 MiB the audit
/// fetched every entry from memory twice, and took 5 – 12 % longer in 2.5
/// times the memory (docs/performance.md, "`aiaudit verify` on every core").
const AHEAD_BYTES: usize = 4 << 20;

/// An entry bundle of a window: read already, or to be read by the core
/// that hashes it.
enum Raw {
    Read(Result<Vec<u8>>),
    Later(Tile),
}

/// An entry bundle read ahead: the reader's error, or its entries' leaf
/// hashes and, for a full bundle, the root of their subtree (or why it
/// does not decode).
enum Hashed {
    Unread(crate::Error),
    Read(Result<(Vec<Hash>, Option<Hash>)>),
}

/// Decodes and hashes entry bundles side by side, one share per core: the
/// leaf hashes and the subtrees over them are most of a full audit's work.
/// `bundle` is the bundle's index, for the visitor.
fn hash_bundle(
    bundle: u64,
    raw: Raw,
    visitor: &Option<EntryVisitor>,
    shared: &Option<BundleReader>,
) -> Hashed {
    let r = match (raw, shared) {
        (Raw::Read(r), _) => r,
        (Raw::Later(tile), Some(read)) => read(&tile),
        (Raw::Later(_), None) => unreachable!("bundles are left to the cores only with a reader"),
    };
    match r {
        Err(e) => Hashed::Unread(e),
        Ok(bytes) => Hashed::Read(decode_entry_bundle(&bytes).map(|entries| {
            // Each entry is shown to the visitor right after it is hashed,
            // while it is still in this core's cache.
            let hashes: Vec<Hash> = (bundle * TILE_WIDTH..)
                .zip(entries)
                .map(|(i, entry)| {
                    let hash = record_hash(entry);
                    if let Some(visit) = visitor {
                        visit(i, entry);
                    }
                    hash
                })
                .collect();
            let root = (hashes.len() as u64 == TILE_WIDTH).then(|| subtree_root(&hashes));
            (hashes, root)
        })),
    }
}

/// Entry bundles being hashed, one share per core, while the audit reads
/// the next ones and checks the ones before: the leaf hashes and the
/// subtrees over them are most of a full audit's work.
enum Hashing {
    Done(Vec<Hashed>),
    Running(Vec<std::thread::JoinHandle<Vec<Hashed>>>),
}

impl Hashing {
    /// Starts on bundles `first, first + 1, …` (`raw`, as read).
    fn start(
        first: u64,
        raw: Vec<Raw>,
        visitor: &Option<EntryVisitor>,
        shared: &Option<BundleReader>,
    ) -> Hashing {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cores == 1 || raw.len() < 2 {
            return Hashing::Done(
                (first..)
                    .zip(raw)
                    .map(|(b, r)| hash_bundle(b, r, visitor, shared))
                    .collect(),
            );
        }
        let share = raw.len().div_ceil(cores);
        let mut raw = (first..).zip(raw).peekable();
        let mut workers = Vec::new();
        while raw.peek().is_some() {
            let part: Vec<_> = raw.by_ref().take(share).collect();
            let (visitor, shared) = (visitor.clone(), shared.clone());
            workers.push(std::thread::spawn(move || {
                part.into_iter()
                    .map(|(b, r)| hash_bundle(b, r, &visitor, &shared))
                    .collect()
            }));
        }
        Hashing::Running(workers)
    }

    fn finish(self) -> std::collections::VecDeque<Hashed> {
        match self {
            Hashing::Done(done) => done.into(),
            Hashing::Running(workers) => workers
                .into_iter()
                .flat_map(|w| w.join().expect("hashing entry bundles does not panic"))
                .collect(),
        }
    }
}

/// A hash tile held in memory while its hashes are compared.
struct LoadedTile {
    index: u64,
    /// None when the tile could not be read or had the wrong length.
    hashes: Option<Vec<Hash>>,
}

struct Auditor<'r, R> {
    size: u64,
    reader: &'r mut R,
    report: AuditReport,
    /// The current hash tile of each tile level: one per level is enough,
    /// because nodes complete in index order.
    tiles: [Option<LoadedTile>; TILE_LEVELS],
    /// Leaf ranges [start, end) with neither entries nor leaf hashes.
    broken: Vec<(u64, u64)>,
}

impl<R: TileReader> Auditor<'_, R> {
    fn is_full(&self) -> bool {
        self.report.problems.len() >= MAX_PROBLEMS
    }

    fn problem(&mut self, index: u64, what: String) {
        if !self.is_full() {
            self.report.problems.push(Problem { index, what });
        }
    }

    /// Returns tile `index` of `kind` with the width the log of `size` has.
    fn tile_at(&self, kind: TileKind, index: u64) -> Tile {
        let count = match kind {
            TileKind::Hash { level } => hashes_at_tile_level(self.size, level),
            TileKind::Entries => self.size,
        };
        let width = count
            .saturating_sub(index.saturating_mul(TILE_WIDTH))
            .min(TILE_WIDTH);
        Tile {
            kind,
            index,
            width: width as u16,
        }
    }

    /// Returns the first leaf that `tile` covers.
    fn first_leaf(tile: &Tile) -> u64 {
        let level = match tile.kind {
            TileKind::Hash { level } => u32::from(level),
            TileKind::Entries => 0,
        };
        // Tiles at tile level 7 and up cover 2^64 leaves or more, and a
        // u64-sized log only has the one at index 0.
        tile.index
            .checked_shl(TILE_HEIGHT * (level + 1))
            .filter(|_| TILE_HEIGHT * (level + 1) < 64)
            .unwrap_or(0)
    }

    /// Reads a tile, recording a problem when that fails.
    fn read(&mut self, tile: &Tile) -> Option<Vec<u8>> {
        match self.reader.read_tile(tile) {
            Ok(bytes) => {
                self.report.tiles_checked += 1;
                Some(bytes)
            }
            Err(e) => {
                self.problem(
                    Self::first_leaf(tile),
                    format!("reading {}: {e}", tile.path()),
                );
                None
            }
        }
    }

    /// Reads the entry bundles `first..end` (one reader, in order; fewer
    /// past [`AHEAD_BYTES`]). Problems are reported later, bundle by bundle,
    /// by [`Self::check_bundle`].
    /// Reads up to `window` entry bundles from `*read_to` (short of
    /// `bundles`) and moves `*read_to` past them. Returns the first one's
    /// index and what was read.
    fn read_window(
        &mut self,
        read_to: &mut u64,
        bundles: u64,
        window: u64,
        shared: &Option<BundleReader>,
    ) -> (u64, Vec<Raw>) {
        let first = *read_to;
        let end = bundles.min(first + window);
        let raw = match shared {
            // Each core holds one bundle at a time: no bound in bytes.
            Some(_) => (first..end)
                .map(|b| Raw::Later(self.tile_at(TileKind::Entries, b)))
                .collect(),
            None => self.read_raw(first, end),
        };
        *read_to += raw.len() as u64;
        (first, raw)
    }

    fn read_raw(&mut self, first: u64, end: u64) -> Vec<Raw> {
        let mut raw = Vec::new();
        let mut bytes = 0;
        for b in first..end {
            let tile = self.tile_at(TileKind::Entries, b);
            let read = self.reader.read_tile(&tile);
            bytes += read.as_ref().map_or(0, Vec::len);
            raw.push(Raw::Read(read));
            // Two bundles at least, so that two cores share even the
            // largest ones.
            if bytes >= AHEAD_BYTES && raw.len() >= 2 {
                break;
            }
        }
        raw
    }

    /// Reports what reading and decoding entry bundle `index` found and
    /// returns the leaf hashes of its entries.
    fn check_bundle(
        &mut self,
        index: u64,
        width: usize,
        hashed: Hashed,
    ) -> Option<(Vec<Hash>, Option<Hash>)> {
        let tile = self.tile_at(TileKind::Entries, index);
        let first = Self::first_leaf(&tile);
        let decoded = match hashed {
            Hashed::Unread(e) => {
                self.problem(first, format!("reading {}: {e}", tile.path()));
                return None;
            }
            Hashed::Read(decoded) => decoded,
        };
        self.report.tiles_checked += 1;
        match decoded {
            Ok((hashes, root)) if hashes.len() == width => Some((hashes, root)),
            Ok((hashes, _)) => {
                self.problem(
                    first,
                    format!("{}: {} entries, want {width}", tile.path(), hashes.len()),
                );
                None
            }
            Err(e) => {
                self.problem(first, format!("{}: {e}", tile.path()));
                None
            }
        }
    }

    /// Reads hash tile `index` at tile level `level` and checks its length.
    fn read_hash_tile(&mut self, level: u8, index: u64) -> Option<Vec<Hash>> {
        let tile = self.tile_at(TileKind::Hash { level }, index);
        let bytes = self.read(&tile)?;
        let want = usize::from(tile.width) * 32;
        if bytes.len() != want {
            self.problem(
                Self::first_leaf(&tile),
                format!("{}: {} bytes, want {want}", tile.path(), bytes.len()),
            );
            return None;
        }
        parse_hash_tile(&bytes).ok()
    }

    /// Called for every node the entry-derived tree completes. Compares the
    /// nodes at tile levels 1 and up (level 0 is compared by the caller)
    /// with their hash tiles.
    fn on_node(&mut self, level: u32, index: u64, hash: &Hash) {
        let (t, below_top) = ((level / TILE_HEIGHT) as usize, level % TILE_HEIGHT);
        // Tiles above level 0 hold the nodes at tree levels 8, 16, ...; the
        // leaves are compared by the caller.
        if t == 0 || below_top != 0 || t >= TILE_LEVELS || self.is_full() {
            return;
        }
        let tile_index = index / TILE_WIDTH;
        if self.tiles[t].as_ref().map(|l| l.index) != Some(tile_index) {
            let hashes = self.read_hash_tile(t as u8, tile_index);
            self.tiles[t] = Some(LoadedTile {
                index: tile_index,
                hashes,
            });
        }
        // Nodes over leaves that could not be read at all are unknown; the
        // tile holding them was still read and its length checked above.
        let first = index.checked_shl(level).filter(|_| level < 64).unwrap_or(0);
        let last = u128::from(index + 1) << level;
        if self
            .broken
            .iter()
            .any(|&(s, e)| u128::from(s) < last && first < e)
        {
            return;
        }
        let pos = (index % TILE_WIDTH) as usize;
        let Some(stored) = self.tiles[t]
            .as_ref()
            .and_then(|l| l.hashes.as_ref())
            .and_then(|h| h.get(pos))
            .copied()
        else {
            return; // unreadable tile: already reported
        };
        if stored == *hash {
            return;
        }
        // The entries disagree with this tile. If the full tile below agrees
        // with it, the disagreement was reported at that lower level.
        let below = self.tiles[t - 1]
            .as_ref()
            .filter(|l| l.index == index)
            .and_then(|l| l.hashes.as_ref())
            .filter(|h| h.len() as u64 == TILE_WIDTH)
            .map(|h| subtree_root(h));
        if below == Some(stored) {
            return;
        }
        let tile = self.tile_at(TileKind::Hash { level: t as u8 }, tile_index);
        self.problem(
            first,
            format!(
                "hash {pos} of {} does not match the level-{} hashes below it",
                tile.path(),
                t - 1
            ),
        );
    }
}

/// Merkle root of a full tile's 256 hashes.
fn subtree_root(hashes: &[Hash]) -> Hash {
    let mut b = TreeBuilder::new();
    for h in hashes {
        b.push(*h, |_, _, _| {});
    }
    b.root()
}

#[cfg(test)]
mod level_tests {
    use super::*;
    use crate::builder::TreeBuilder;

    /// Stored levels as a server writes them, from `n` leaves.
    fn levels(n: u64) -> Vec<Vec<u8>> {
        let mut out = vec![Vec::new(); 64];
        let mut tree = TreeBuilder::new();
        for i in 0..n {
            let leaf = record_hash(&i.to_be_bytes());
            tree.push(leaf, |level, _, hash| {
                out[level as usize].extend_from_slice(hash)
            });
        }
        out
    }

    fn read(
        l: &[Vec<u8>],
    ) -> impl FnMut(u32, u64, u64) -> std::result::Result<Vec<u8>, String> + '_ {
        |level, start, count| {
            let v = &l[level as usize];
            v.get(32 * start as usize..32 * (start + count) as usize)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| "beyond the end".to_string())
        }
    }

    #[test]
    fn finds_every_damaged_node_and_nothing_else() {
        let n = 1000;
        let mut l = levels(n);
        assert!(check_stored_levels(n, read(&l)).is_empty());
        for level in 1..10 {
            if l[level].is_empty() {
                continue;
            }
            let mut damaged = l.clone();
            damaged[level][5] ^= 1;
            let p = check_stored_levels(n, read(&damaged));
            assert!(!p.is_empty(), "level {level}");
            assert!(
                p[0].what.contains(&format!("level {level}"))
                    || p[0].what.contains(&format!("level {}", level + 1))
            );
        }
        l[3].truncate(32);
        assert!(check_stored_levels(n, read(&l))[0]
            .what
            .contains("cannot be read"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Error;
    use crate::tile::{encode_entry_bundle, encode_hash_tile, tiles_for_size};
    use std::collections::HashMap;

    /// An in-memory tile server built from entries.
    #[derive(Clone, Default)]
    struct Tiles {
        files: HashMap<String, Vec<u8>>,
        reads: Vec<String>,
    }

    impl TileReader for Tiles {
        fn read_tile(&mut self, tile: &Tile) -> Result<Vec<u8>> {
            let path = tile.path();
            self.reads.push(path.clone());
            self.files
                .get(&path)
                .cloned()
                .ok_or_else(|| Error::Read(format!("{path} not found").into()))
        }
    }

    fn entries(size: u64, tag: &str) -> Vec<Vec<u8>> {
        (0..size)
            .map(|i| format!("{tag} {i}").into_bytes())
            .collect()
    }

    fn build(entries: &[Vec<u8>]) -> (Tiles, Hash) {
        let size = entries.len() as u64;
        let mut levels: Vec<Vec<Hash>> = vec![Vec::new(); TILE_LEVELS];
        let mut b = TreeBuilder::new();
        for e in entries {
            b.push(record_hash(e), |l, _, h| {
                if l % TILE_HEIGHT == 0 {
                    levels[(l / TILE_HEIGHT) as usize].push(*h);
                }
            });
        }
        let mut files = HashMap::new();
        for tile in tiles_for_size(size) {
            let lo = (tile.index * TILE_WIDTH) as usize;
            let hi = lo + usize::from(tile.width);
            let bytes = match tile.kind {
                TileKind::Hash { level } => encode_hash_tile(&levels[level as usize][lo..hi]),
                TileKind::Entries => {
                    encode_entry_bundle(entries[lo..hi].iter().map(Vec::as_slice)).unwrap()
                }
            };
            files.insert(tile.path(), bytes);
        }
        (
            Tiles {
                files,
                reads: Vec::new(),
            },
            b.root(),
        )
    }

    fn audit(tiles: &mut Tiles, size: u64, root: &Hash, old: Option<(u64, Hash)>) -> AuditReport {
        audit_log(size, root, tiles, old, |_| {})
    }

    fn indexes(r: &AuditReport) -> Vec<u64> {
        r.problems.iter().map(|p| p.index).collect()
    }

    fn root_at(size: u64, tag: &str) -> Hash {
        build(&entries(size, tag)).1
    }

    #[test]
    fn clean_logs() {
        for size in [1u64, 2, 255, 256, 257, 1000, 65536 + 300] {
            let (mut tiles, root) = build(&entries(size, "entry"));
            let mut seen = Vec::new();
            let old = (size / 2, root_at(size / 2, "entry"));
            let r = audit_log(size, &root, &mut tiles, Some(old), |n| seen.push(n));
            assert!(r.problems.is_empty(), "{size}: {:?}", r.problems);
            assert_eq!(r.entries_checked, size);
            assert_eq!(r.old_root_ok, Some(true));
            let all: Vec<String> = tiles_for_size(size).iter().map(Tile::path).collect();
            assert_eq!(r.tiles_checked, all.len() as u64);
            let mut reads = tiles.reads.clone();
            reads.sort();
            let mut all = all;
            all.sort();
            assert_eq!(reads, all, "every tile read exactly once");
            assert_eq!(seen.last(), Some(&size));
            assert_eq!(seen.len() as u64, size.div_ceil(256));
        }
    }

    #[test]
    fn empty_log() {
        let mut tiles = Tiles::default();
        let r = audit(
            &mut tiles,
            0,
            &empty_tree_hash(),
            Some((0, empty_tree_hash())),
        );
        assert!(r.problems.is_empty());
        assert!(tiles.reads.is_empty());
        assert_eq!(r.old_root_ok, Some(true));
        let r = audit(&mut tiles, 0, &[0; 32], Some((0, [0; 32])));
        assert_eq!(indexes(&r), [0]);
        assert_eq!(r.problems[0].what, "root mismatch");
        assert_eq!(r.old_root_ok, Some(false));
    }

    #[test]
    fn wrong_roots() {
        let (mut tiles, root) = build(&entries(700, "entry"));
        let mut bad = root;
        bad[0] ^= 1;
        let r = audit(&mut tiles, 700, &bad, Some((3, [0; 32])));
        assert_eq!(indexes(&r), [700]);
        assert_eq!(r.problems[0].what, "root mismatch");
        assert_eq!(r.old_root_ok, Some(false));
        // An old checkpoint larger than the log is never consistent with it.
        let r = audit(&mut tiles, 700, &root, Some((701, root)));
        assert!(r.problems.is_empty());
        assert_eq!(r.old_root_ok, Some(false));
        let r = audit(&mut tiles, 700, &root, Some((700, root)));
        assert_eq!(r.old_root_ok, Some(true));
        let r = audit(&mut tiles, 700, &root, None);
        assert_eq!(r.old_root_ok, None);
    }

    #[test]
    fn rewritten_log_is_a_root_mismatch() {
        // Self-consistent tiles for different entries.
        let (_, root) = build(&entries(600, "entry"));
        let (mut tiles, _) = build(&entries(600, "other"));
        let r = audit(&mut tiles, 600, &root, None);
        assert_eq!(indexes(&r), [600]);
    }

    #[test]
    fn tampered_entry() {
        let size = 1000;
        let (mut tiles, root) = build(&entries(size, "entry"));
        let mut changed = entries(size, "entry");
        changed[300] = b"evil".to_vec();
        let bundle = encode_entry_bundle(changed[256..512].iter().map(Vec::as_slice)).unwrap();
        tiles.files.insert("tile/entries/001".into(), bundle);
        let r = audit(&mut tiles, size, &root, Some((301, root_at(301, "entry"))));
        assert_eq!(indexes(&r), [300], "{:?}", r.problems);
        assert_eq!(r.old_root_ok, Some(false));
        // Entries before the change still give the right old root.
        let r = audit(&mut tiles, size, &root, Some((300, root_at(300, "entry"))));
        assert_eq!(r.old_root_ok, Some(true));
    }

    #[test]
    fn tampered_hashes() {
        let size = 1000;
        let (clean, root) = build(&entries(size, "entry"));
        for (path, byte, want) in [
            ("tile/0/001", 32 * 5 + 7, 256 + 5),
            ("tile/0/003.p/232", 32 * 231 + 31, 768 + 231),
            ("tile/1/000.p/3", 32 * 2, 512),
            ("tile/1/000.p/3", 0, 0),
        ] {
            let mut tiles = clean.clone();
            tiles.files.get_mut(path).unwrap()[byte] ^= 0x40;
            let r = audit(&mut tiles, size, &root, Some((size, root)));
            assert_eq!(indexes(&r), [want], "{path}: {:?}", r.problems);
            assert!(r.problems[0].what.contains(path), "{:?}", r.problems);
            // The entries are intact, so the roots still check out.
            assert_eq!(r.old_root_ok, Some(true));
        }
    }

    #[test]
    fn higher_levels() {
        let size = 65536 * 2 + 1;
        let (clean, root) = build(&entries(size, "entry"));
        let mut tiles = clean.clone();
        tiles.files.get_mut("tile/2/000.p/2").unwrap()[40] ^= 1;
        let r = audit(&mut tiles, size, &root, None);
        assert_eq!(indexes(&r), [65536]);
        let mut tiles = clean.clone();
        tiles.files.get_mut("tile/1/000").unwrap()[32 * 17] ^= 1;
        let r = audit(&mut tiles, size, &root, None);
        assert_eq!(indexes(&r), [17 * 256]);
    }

    #[test]
    fn missing_and_short_tiles() {
        let size = 1000;
        let (clean, root) = build(&entries(size, "entry"));
        for (path, want) in [
            ("tile/0/002", 512),
            ("tile/entries/003.p/232", 768),
            ("tile/1/000.p/3", 0),
        ] {
            let mut tiles = clean.clone();
            tiles.files.remove(path);
            let r = audit(&mut tiles, size, &root, None);
            assert_eq!(indexes(&r), [want], "{path}: {:?}", r.problems);
            assert!(
                r.problems[0].what.starts_with("reading"),
                "{:?}",
                r.problems
            );

            let mut tiles = clean.clone();
            tiles.files.get_mut(path).unwrap().pop();
            let r = audit(&mut tiles, size, &root, None);
            assert_eq!(indexes(&r), [want], "{path}: {:?}", r.problems);

            let mut tiles = clean.clone();
            tiles
                .files
                .get_mut(path)
                .unwrap()
                .extend_from_slice(&[0; 32]);
            let r = audit(&mut tiles, size, &root, None);
            assert_eq!(indexes(&r), [want], "{path}: {:?}", r.problems);
        }
    }

    #[test]
    fn bundle_with_wrong_count() {
        let size = 600;
        let (mut tiles, root) = build(&entries(size, "entry"));
        let e = entries(size, "entry");
        let bundle = encode_entry_bundle(e[256..511].iter().map(Vec::as_slice)).unwrap();
        tiles.files.insert("tile/entries/001".into(), bundle);
        let r = audit(&mut tiles, size, &root, Some((size, root)));
        assert_eq!(indexes(&r), [256]);
        assert_eq!(r.entries_checked, size - 256);
        // The root cannot be recomputed from entries any more.
        assert_eq!(r.old_root_ok, Some(false));
    }

    #[test]
    fn bundle_and_leaf_tile_missing() {
        let size = 65536 + 10;
        let (mut tiles, root) = build(&entries(size, "entry"));
        tiles.files.remove("tile/entries/005");
        tiles.files.remove("tile/0/005");
        let r = audit(&mut tiles, size, &root, None);
        // Nothing above the hole is blamed.
        assert_eq!(indexes(&r), [5 * 256, 5 * 256]);

        // Tiles above a hole are still read.
        let (mut tiles, root) = build(&entries(300, "entry"));
        tiles.files.remove("tile/entries/000");
        tiles.files.remove("tile/0/000");
        let r = audit(&mut tiles, 300, &root, None);
        assert_eq!(indexes(&r), [0, 0]);
        assert!(tiles.reads.contains(&"tile/1/000.p/1".to_string()));
        assert_eq!(r.tiles_checked, 3);
        assert_eq!(r.entries_checked, 44);
    }

    /// Entries a visitor was shown, with their indexes.
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<(u64, Vec<u8>)>>>;

    /// Tiles whose reader shows every decoded entry to a visitor.
    struct Visited {
        tiles: Tiles,
        seen: Seen,
    }

    impl TileReader for Visited {
        fn read_tile(&mut self, tile: &Tile) -> Result<Vec<u8>> {
            self.tiles.read_tile(tile)
        }
        fn entry_visitor(&self) -> Option<EntryVisitor> {
            let seen = self.seen.clone();
            Some(std::sync::Arc::new(move |i, e| {
                seen.lock().unwrap().push((i, e.to_vec()));
            }))
        }
    }

    #[test]
    fn the_visitor_sees_every_entry_once_at_its_index_across_windows_and_cores() {
        // Many windows (they double from one bundle), a partial last bundle,
        // and one bundle that does not decode: its entries are not shown.
        let size = 256 * 40 + 5;
        let logged = entries(size, "entry");
        let (mut tiles, root) = build(&logged);
        tiles
            .files
            .insert("tile/entries/017".into(), b"\xff\xff".to_vec());
        let mut reader = Visited {
            tiles,
            seen: Default::default(),
        };
        let r = audit_log(size, &root, &mut reader, None, |_| {});
        assert!(!r.problems.is_empty());
        let mut seen = std::mem::take(&mut *reader.seen.lock().unwrap());
        seen.sort();
        let expected: Vec<(u64, Vec<u8>)> = (0..size)
            .zip(logged)
            .filter(|(i, _)| i / TILE_WIDTH != 17)
            .collect();
        assert_eq!(seen.len(), expected.len());
        assert!(
            seen == expected,
            "an entry shown twice, at the wrong index or not at all"
        );
    }

    #[test]
    fn an_audit_stopped_early_has_shown_every_entry_it_read_when_it_returns() {
        // Four whole bundles changed (1,024 problems, past MAX_PROBLEMS)
        // in a window checked while the next, of 32 bundles, is being hashed
        // on worker threads when the audit stops.
        let size = 256 * 100;
        let logged = entries(size, "entry");
        let (mut tiles, root) = build(&logged);
        for b in 16..20u64 {
            let lo = (b * TILE_WIDTH) as usize;
            let changed: Vec<Vec<u8>> = (lo..lo + 256)
                .map(|i| format!("evil {i}").into_bytes())
                .collect();
            let bundle = encode_entry_bundle(changed.iter().map(Vec::as_slice)).unwrap();
            tiles.files.insert(format!("tile/entries/{b:03}"), bundle);
        }
        let mut reader = Visited {
            tiles,
            seen: Default::default(),
        };
        let r = audit_log(size, &root, &mut reader, None, |_| {});
        assert!(r.problems.len() >= MAX_PROBLEMS);
        let mut seen: Vec<u64> = reader
            .seen
            .lock()
            .unwrap()
            .iter()
            .map(|(i, _)| *i)
            .collect();
        seen.sort();
        let read: Vec<u64> = reader
            .tiles
            .reads
            .iter()
            .filter_map(|p| p.strip_prefix("tile/entries/"))
            .map(|b| b.parse::<u64>().unwrap())
            .flat_map(|b| b * TILE_WIDTH..(b + 1) * TILE_WIDTH)
            .collect();
        assert!(read.len() < size as usize, "the audit should stop early");
        assert_eq!(
            seen.len(),
            read.len(),
            "entries read but not shown before the audit returned"
        );
        assert_eq!(seen, read);
    }

    #[test]
    fn a_tampered_entry_deep_in_a_read_ahead_window_is_found_at_its_index() {
        let size = 256 * 40;
        let (mut tiles, root) = build(&entries(size, "entry"));
        let mut changed = entries(size, "entry");
        let at = 256 * 30 + 7;
        changed[at] = b"evil".to_vec();
        let bundle =
            encode_entry_bundle(changed[256 * 30..256 * 31].iter().map(Vec::as_slice)).unwrap();
        tiles.files.insert("tile/entries/030".into(), bundle);
        let r = audit(&mut tiles, size, &root, None);
        assert_eq!(indexes(&r), [at as u64], "{:?}", r.problems);
        assert_eq!(r.entries_checked, size);
    }

    /// Tiles whose entry bundles the hashing cores read themselves.
    struct SharedTiles(Tiles, std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl TileReader for SharedTiles {
        fn read_tile(&mut self, tile: &Tile) -> Result<Vec<u8>> {
            self.0.read_tile(tile)
        }
        fn bundle_reader(&self) -> Option<BundleReader> {
            let (files, reads) = (self.0.files.clone(), self.1.clone());
            Some(std::sync::Arc::new(move |tile: &Tile| {
                let path = tile.path();
                reads.lock().unwrap().push(path.clone());
                files
                    .get(&path)
                    .cloned()
                    .ok_or_else(|| Error::Read(format!("{path} not found").into()))
            }))
        }
    }

    #[test]
    fn cores_that_read_their_own_bundles_find_what_one_reader_finds() {
        let size = 256 * 40 + 9;
        let (tiles, root) = build(&entries(size, "entry"));
        let mut changed = entries(size, "entry");
        changed[256 * 30 + 7] = b"evil".to_vec();
        let evil =
            encode_entry_bundle(changed[256 * 30..256 * 31].iter().map(Vec::as_slice)).unwrap();
        type Damage = Box<dyn Fn(&mut Tiles)>;
        let logs: [(&str, Damage); 4] = [
            ("clean", Box::new(|_| {})),
            (
                "tampered",
                Box::new(move |t| {
                    t.files.insert("tile/entries/030".into(), evil.clone());
                }),
            ),
            (
                "bundle missing",
                Box::new(|t| {
                    t.files.remove("tile/entries/012");
                }),
            ),
            (
                "partial bundle missing",
                Box::new(|t| {
                    t.files.remove("tile/entries/040.p/9");
                }),
            ),
        ];
        for (name, damage) in logs {
            let mut alone = tiles.clone();
            damage(&mut alone);
            let by_one = audit(&mut alone.clone(), size, &root, None);
            let reads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let mut shared = SharedTiles(alone, reads.clone());
            let by_cores = audit_log(size, &root, &mut shared, None, |_| {});
            assert_eq!(by_cores, by_one, "{name}");
            if name == "tampered" {
                assert_eq!(indexes(&by_cores), [256 * 30 + 7]);
            }
            assert!(
                !shared.0.reads.iter().any(|p| p.starts_with("tile/entries")),
                "{name}: the audit's own thread read an entry bundle"
            );
            let mut read = reads.lock().unwrap().clone();
            read.sort();
            read.dedup();
            assert_eq!(read.len() as u64, size.div_ceil(TILE_WIDTH), "{name}");
        }
    }

    #[test]
    fn stops_after_max_problems() {
        let size = 1u64 << 40;
        let mut tiles = Tiles::default();
        let r = audit(&mut tiles, size, &[0; 32], Some((size, [0; 32])));
        assert_eq!(r.problems.len(), MAX_PROBLEMS);
        assert_eq!(r.old_root_ok, Some(false));
        assert!(tiles.reads.len() <= MAX_PROBLEMS + 2);
    }

    #[test]
    fn huge_sizes_do_not_panic() {
        let mut tiles = Tiles::default();
        let r = audit(&mut tiles, u64::MAX, &[0; 32], Some((u64::MAX, [0; 32])));
        assert_eq!(r.problems.len(), MAX_PROBLEMS);
    }
}
