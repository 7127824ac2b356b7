//! The C2SP tlog-tiles layout: tile paths, which tiles a log serves, hash
//! tiles and entry bundles.
//!
//! A hash tile at tile level L holds up to 256 consecutive node hashes at
//! tree level 8 * L; the hash tile with index N covers nodes
//! `[N * 256, N * 256 + width)` of that tree level. An entry bundle with index
//! N holds the entries `[N * 256, N * 256 + width)`.

use crate::hash::{malformed, Error, Hash, Result};

/// Tree levels per tile level: a full tile is a subtree of height 8.
pub const TILE_HEIGHT: u32 = 8;
/// Hashes (or entries) in a full tile.
pub const TILE_WIDTH: u64 = 256;
/// The largest entry an entry bundle can hold (its length is a u16).
pub const MAX_ENTRY_SIZE: usize = 65535;

/// Hash tile levels are 0..=63 in tile paths.
const MAX_TILE_LEVEL: u8 = 63;

/// What a tile holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TileKind {
    /// Node hashes at tree level `8 * level`.
    Hash {
        /// The tile level (0 = leaf hashes).
        level: u8,
    },
    /// Log entries (an entry bundle).
    Entries,
}

/// One tile of a log: which kind, its index at its level, and how many
/// hashes or entries it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tile {
    /// Hash tile (with its level) or entry bundle.
    pub kind: TileKind,
    /// The tile's index within its level.
    pub index: u64,
    /// Number of hashes or entries, 1..=256; 256 is a full tile.
    pub width: u16,
}

impl Tile {
    /// Strict parse of a path such as "tile/0/x001/x234/067.p/8" or "tile/entries/003": only the canonical
    /// encoding is accepted (3-digit groups, "x" on all but the last, no superfluous leading groups, .p/W only with
    /// 1 <= W <= 255, hash level 0..=63 written without leading zeros). Errors are Error::Malformed{what:"tile path",..}.
    ///
    /// Rejecting every other spelling means that each tile has exactly one
    /// path, so caches and file stores cannot be fooled by aliases.
    pub fn parse_path(path: &str) -> Result<Tile> {
        let bad = |detail: &str| malformed("tile path", format!("{path:?}: {detail}"));
        let rest = path
            .strip_prefix("tile/")
            .ok_or_else(|| bad("does not start with \"tile/\""))?;
        let (kind, rest) = match rest.strip_prefix("entries/") {
            Some(rest) => (TileKind::Entries, rest),
            None => {
                let (level, rest) = rest.split_once('/').ok_or_else(|| bad("missing index"))?;
                let level = parse_small_decimal(level)
                    .filter(|&l| l <= u64::from(MAX_TILE_LEVEL))
                    .ok_or_else(|| bad("bad level"))?;
                (TileKind::Hash { level: level as u8 }, rest)
            }
        };
        let (index, width) = match rest.split_once(".p/") {
            Some((index, width)) => {
                let width = parse_small_decimal(width)
                    .filter(|w| (1..TILE_WIDTH).contains(w))
                    .ok_or_else(|| bad("bad partial width"))?;
                (index, width as u16)
            }
            None => (rest, TILE_WIDTH as u16),
        };
        let index = parse_tile_index(index).ok_or_else(|| bad("bad index"))?;
        Ok(Tile { kind, index, width })
    }

    /// Returns the canonical "tile/..." path, with ".p/W" when width < 256.
    ///
    /// The path is only meaningful for a valid tile (width 1..=256, hash
    /// level 0..=63); it is not checked here.
    pub fn path(&self) -> String {
        let mut p = match self.kind {
            TileKind::Hash { level } => format!("tile/{level}/"),
            TileKind::Entries => "tile/entries/".to_string(),
        };
        p.push_str(&encode_tile_index(self.index));
        if u64::from(self.width) < TILE_WIDTH {
            p.push_str(&format!(".p/{}", self.width));
        }
        p
    }

    /// Reports whether the tile holds 256 hashes or entries.
    pub fn is_full(&self) -> bool {
        u64::from(self.width) >= TILE_WIDTH
    }

    /// For hash tiles: the tree level of the hashes it holds (8 * level).
    /// None for entry bundles.
    pub fn tree_level(&self) -> Option<u32> {
        match self.kind {
            TileKind::Hash { level } => Some(TILE_HEIGHT * u32::from(level)),
            TileKind::Entries => None,
        }
    }
}

/// Parses a decimal number of 1 to 3 digits without leading zeros.
fn parse_small_decimal(s: &str) -> Option<u64> {
    let canonical = !s.is_empty()
        && s.len() <= 3
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if canonical {
        s.parse().ok()
    } else {
        None
    }
}

/// Parses the canonical index encoding of [`encode_tile_index`].
fn parse_tile_index(s: &str) -> Option<u64> {
    let groups: Vec<&str> = s.split('/').collect();
    let last = groups.len() - 1;
    let mut n: u64 = 0;
    for (i, group) in groups.iter().enumerate() {
        let digits = if i < last {
            group.strip_prefix('x')?
        } else {
            group
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value: u64 = digits.parse().ok()?;
        // A leading "x000/" group adds nothing and would be an alias.
        if i == 0 && i < last && value == 0 {
            return None;
        }
        n = n.checked_mul(1000)?.checked_add(value)?;
    }
    Some(n)
}

/// Encodes a tile index as in C2SP tlog-tiles: 3-digit groups, the ones
/// before the last prefixed with "x". "x001/x234/067" for 1234067, "000" for 0.
pub fn encode_tile_index(n: u64) -> String {
    let mut s = format!("{:03}", n % 1000);
    let mut rest = n / 1000;
    while rest > 0 {
        s = format!("x{:03}/{s}", rest % 1000);
        rest /= 1000;
    }
    s
}

/// Number of hashes stored at hash-tile level `level` for a tree of `size`: size >> (8*level).
///
/// These are the complete subtrees of height 8 * level; 0 for levels that no
/// u64 tree size reaches.
pub fn hashes_at_tile_level(size: u64, level: u8) -> u64 {
    size.checked_shr(TILE_HEIGHT * u32::from(level))
        .unwrap_or(0)
}

/// Appends the full tiles and the one partial tile (if any) of a level
/// holding `count` hashes or entries.
fn push_level(tiles: &mut Vec<Tile>, kind: TileKind, count: u64) {
    let full = count / TILE_WIDTH;
    tiles.extend((0..full).map(|index| Tile {
        kind,
        index,
        width: TILE_WIDTH as u16,
    }));
    let partial = count % TILE_WIDTH;
    if partial > 0 {
        tiles.push(Tile {
            kind,
            index: full,
            width: partial as u16,
        });
    }
}

/// All tiles (hash tiles at every level, and entry bundles) a log of `size` serves: full ones and the one partial
/// per level. Like the log-1000 directory listing.
///
/// Order: hash tiles by level, then entry bundles; by index within each.
/// The list has about `size / 128` elements, so callers handling untrusted
/// sizes should bound `size` first.
pub fn tiles_for_size(size: u64) -> Vec<Tile> {
    let mut tiles = Vec::new();
    for level in 0..=MAX_TILE_LEVEL {
        let count = hashes_at_tile_level(size, level);
        if count == 0 {
            break;
        }
        push_level(&mut tiles, TileKind::Hash { level }, count);
    }
    push_level(&mut tiles, TileKind::Entries, size);
    tiles
}

/// Encodes entries as an entry bundle: each entry as a big-endian u16 length
/// followed by its bytes.
///
/// Errors: [`Error::InvalidArgument`] for an entry longer than
/// [`MAX_ENTRY_SIZE`]. Empty entries are allowed by the encoding.
pub fn encode_entry_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let len = u16::try_from(entry.len()).map_err(|_| {
            Error::InvalidArgument(format!(
                "entry {i} is {} bytes, more than {MAX_ENTRY_SIZE}",
                entry.len()
            ))
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(entry);
    }
    Ok(out)
}

/// Splits an entry bundle into its entries, borrowing from `bundle`.
///
/// Errors: [`Error::Malformed`] when the bundle ends inside a length or an
/// entry. An empty bundle has no entries; checking the count is up to the
/// caller.
pub fn decode_entry_bundle(bundle: &[u8]) -> Result<Vec<&[u8]>> {
    let mut entries = Vec::new();
    let mut rest = bundle;
    while !rest.is_empty() {
        let bad = |detail: String| malformed("entry bundle", detail);
        let at = bundle.len() - rest.len();
        let [hi, lo, tail @ ..] = rest else {
            return Err(bad(format!("truncated length at byte {at}")));
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        if tail.len() < len {
            return Err(bad(format!(
                "entry {} at byte {at} needs {len} bytes, {} left",
                entries.len(),
                tail.len()
            )));
        }
        let (entry, tail) = tail.split_at(len);
        entries.push(entry);
        rest = tail;
    }
    Ok(entries)
}

/// Splits a hash tile into its hashes.
///
/// Errors: [`Error::Malformed`] when the length is not a multiple of 32. The
/// width is not checked: that is up to the caller, who knows the tile.
pub fn parse_hash_tile(bytes: &[u8]) -> Result<Vec<Hash>> {
    let chunks = bytes.chunks_exact(32);
    if !chunks.remainder().is_empty() {
        return Err(malformed(
            "hash tile",
            format!("length {} is not a multiple of 32", bytes.len()),
        ));
    }
    Ok(chunks
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

/// Encodes hashes as a hash tile: their concatenation. The inverse of
/// [`parse_hash_tile`]; a valid tile holds 1 to 256 hashes.
pub fn encode_hash_tile(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_tile(level: u8, index: u64, width: u16) -> Tile {
        Tile {
            kind: TileKind::Hash { level },
            index,
            width,
        }
    }

    #[test]
    fn index_encoding() {
        assert_eq!(encode_tile_index(0), "000");
        assert_eq!(encode_tile_index(7), "007");
        assert_eq!(encode_tile_index(999), "999");
        assert_eq!(encode_tile_index(1000), "x001/000");
        assert_eq!(encode_tile_index(1234067), "x001/x234/067");
        assert_eq!(
            encode_tile_index(u64::MAX),
            "x018/x446/x744/x073/x709/x551/615"
        );
    }

    #[test]
    fn paths_round_trip() {
        let cases = [
            ("tile/0/000", hash_tile(0, 0, 256)),
            ("tile/0/003.p/232", hash_tile(0, 3, 232)),
            ("tile/1/000.p/3", hash_tile(1, 0, 3)),
            ("tile/0/x001/x234/067.p/8", hash_tile(0, 1234067, 8)),
            (
                "tile/63/x018/x446/x744/x073/x709/x551/615",
                hash_tile(63, u64::MAX, 256),
            ),
            ("tile/10/x001/000.p/1", hash_tile(10, 1000, 1)),
            (
                "tile/entries/003",
                Tile {
                    kind: TileKind::Entries,
                    index: 3,
                    width: 256,
                },
            ),
            (
                "tile/entries/x002/999.p/255",
                Tile {
                    kind: TileKind::Entries,
                    index: 2999,
                    width: 255,
                },
            ),
        ];
        for (path, tile) in cases {
            assert_eq!(Tile::parse_path(path).unwrap(), tile, "{path}");
            assert_eq!(tile.path(), path);
        }
    }

    #[test]
    fn non_canonical_paths_rejected() {
        for path in [
            "",
            "tile",
            "tile/",
            "tile/0",
            "tile/0/",
            "/tile/0/000",
            "tiles/0/000",
            "tile/0/000/",
            "tile/0/00",
            "tile/0/0000",
            "tile/0/1",
            "tile/0/x000/001",
            "tile/0/x001",
            "tile/0/001/002",
            "tile/0/X001/002",
            "tile/0/x01/002",
            "tile/0/x001/x002",
            "tile/0/+01",
            "tile/0/-01",
            "tile/0/ 01",
            "tile/00/000",
            "tile/01/000",
            "tile/64/000",
            "tile/100/000",
            "tile/-1/000",
            "tile/a/000",
            "tile//000",
            "tile/0/000.p",
            "tile/0/000.p/",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/08",
            "tile/0/000.p/1000",
            "tile/0/000.p/8/",
            "tile/0/000.p/8.p/8",
            "tile/0/000.P/8",
            "tile/0/000.q/8",
            "tile/entries/000.p/256",
            "tile/entries/x000/000",
            "tile/entries/",
            "tile/entries",
            "tile/data/000",
            // 2^64 does not fit.
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "tile/0/x001/x018/x446/x744/x073/x709/x551/615",
        ] {
            match Tile::parse_path(path) {
                Err(Error::Malformed { what, .. }) => assert_eq!(what, "tile path"),
                other => panic!("{path:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn tile_properties() {
        let t = hash_tile(2, 5, 256);
        assert!(t.is_full());
        assert_eq!(t.tree_level(), Some(16));
        let e = Tile {
            kind: TileKind::Entries,
            index: 0,
            width: 9,
        };
        assert!(!e.is_full());
        assert_eq!(e.tree_level(), None);
    }

    #[test]
    fn tiles_for_sizes() {
        assert!(tiles_for_size(0).is_empty());
        let paths = |size| -> Vec<String> { tiles_for_size(size).iter().map(Tile::path).collect() };
        assert_eq!(paths(1), ["tile/0/000.p/1", "tile/entries/000.p/1"]);
        assert_eq!(
            paths(256),
            ["tile/0/000", "tile/1/000.p/1", "tile/entries/000"]
        );
        assert_eq!(
            paths(1000),
            [
                "tile/0/000",
                "tile/0/001",
                "tile/0/002",
                "tile/0/003.p/232",
                "tile/1/000.p/3",
                "tile/entries/000",
                "tile/entries/001",
                "tile/entries/002",
                "tile/entries/003.p/232"
            ]
        );
        assert_eq!(
            paths(65536),
            [
                vec!["tile/0/000".to_string()],
                (1..256).map(|i| format!("tile/0/{i:03}")).collect(),
                vec!["tile/1/000".into(), "tile/2/000.p/1".into()],
                (0..256).map(|i| format!("tile/entries/{i:03}")).collect(),
            ]
            .concat()
        );
    }

    #[test]
    fn hashes_per_level() {
        assert_eq!(hashes_at_tile_level(1000, 0), 1000);
        assert_eq!(hashes_at_tile_level(1000, 1), 3);
        assert_eq!(hashes_at_tile_level(1000, 2), 0);
        assert_eq!(hashes_at_tile_level(u64::MAX, 7), 255);
        assert_eq!(hashes_at_tile_level(u64::MAX, 8), 0);
        assert_eq!(hashes_at_tile_level(u64::MAX, 255), 0);
    }

    #[test]
    fn entry_bundles() {
        let entries: [&[u8]; 3] = [b"entry 0", b"", b"x"];
        let bundle = encode_entry_bundle(entries).unwrap();
        assert_eq!(bundle, b"\x00\x07entry 0\x00\x00\x00\x01x");
        assert_eq!(decode_entry_bundle(&bundle).unwrap(), entries);
        assert!(decode_entry_bundle(&[]).unwrap().is_empty());
        for cut in 1..bundle.len() {
            if [9, 11].contains(&cut) {
                continue; // entry boundaries
            }
            assert!(
                matches!(
                    decode_entry_bundle(&bundle[..cut]),
                    Err(Error::Malformed { .. })
                ),
                "{cut}"
            );
        }
        let max = vec![7u8; MAX_ENTRY_SIZE];
        let bundle = encode_entry_bundle([max.as_slice()]).unwrap();
        assert_eq!(decode_entry_bundle(&bundle).unwrap(), [max.as_slice()]);
        let too_big = vec![7u8; MAX_ENTRY_SIZE + 1];
        assert!(matches!(
            encode_entry_bundle([too_big.as_slice()]),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn hash_tiles() {
        let hashes = [[1u8; 32], [2u8; 32]];
        let bytes = encode_hash_tile(&hashes);
        assert_eq!(bytes.len(), 64);
        assert_eq!(parse_hash_tile(&bytes).unwrap(), hashes);
        assert!(parse_hash_tile(&[]).unwrap().is_empty());
        assert!(matches!(
            parse_hash_tile(&bytes[..63]),
            Err(Error::Malformed { .. })
        ));
    }
}
