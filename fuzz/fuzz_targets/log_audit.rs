//! `aiaudit verify`'s full audit of a log served by someone else
//! (`audit_log` over tiles from a TileReader): an honest log of up to 700
//! entries whose tiles the input then tampers with (flip, cut, extend, fail
//! to read), audited against the honest checkpoint.
//!
//! Properties: no panic; the honest log passes with no problem and the old
//! root confirmed; any tile that differs from the honest one, or a wrong
//! root, is reported.
#![no_main]

use aiaudit_tlog::{
    audit_log, encode_entry_bundle, tiles_for_size, tree_hash, Error, Tile, TileKind, TileReader,
    TILE_HEIGHT, TILE_WIDTH,
};
use libfuzzer_sys::fuzz_target;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

#[path = "mem_tree.rs"]
mod mem_tree;

/// Log sizes are taken below this.
const MAX_SIZE: u64 = 700;

fn full_tree() -> &'static mem_tree::MemTree {
    static TREE: OnceLock<mem_tree::MemTree> = OnceLock::new();
    TREE.get_or_init(|| mem_tree::MemTree::new(MAX_SIZE))
}

struct Served {
    tiles: HashMap<Tile, Vec<u8>>,
    failing: HashSet<Tile>,
}

impl TileReader for Served {
    fn read_tile(&mut self, tile: &Tile) -> aiaudit_tlog::Result<Vec<u8>> {
        if self.failing.contains(tile) {
            return Err(Error::Read("connection reset".into()));
        }
        self.tiles
            .get(tile)
            .cloned()
            .ok_or_else(|| Error::Read(format!("404 {}", tile.path()).into()))
    }
}

fuzz_target!(|data: &[u8]| {
    let [a, b, c, d, flags, edits @ ..] = data else {
        return;
    };
    // At most three bundles and a level-1 tile: enough for every code path,
    // small enough for thousands of runs a second.
    let size = u64::from(u16::from_le_bytes([*a, *b])) % MAX_SIZE;
    let old_size = u64::from(u16::from_le_bytes([*c, *d])) % (MAX_SIZE + 1);
    let full = full_tree();
    let tree = full.prefix(size);
    let mut honest = HashMap::new();
    for tile in tiles_for_size(size) {
        let start = (tile.index * TILE_WIDTH) as usize;
        let end = start + usize::from(tile.width);
        let bytes = match tile.kind {
            TileKind::Entries => {
                encode_entry_bundle(full.entries[start..end].iter().map(Vec::as_slice)).unwrap()
            }
            TileKind::Hash { level } => {
                full.levels[(TILE_HEIGHT * u32::from(level)) as usize][start..end].concat()
            }
        };
        honest.insert(tile, bytes);
    }

    let mut served = Served {
        tiles: honest.clone(),
        failing: HashSet::new(),
    };
    let list: Vec<Tile> = tiles_for_size(size);
    for edit in edits.chunks_exact(4) {
        let Some(tile) = list.get(usize::from(edit[0]) % list.len().max(1)) else {
            break;
        };
        // A tile removed by an earlier edit stays removed.
        let Some(bytes) = served.tiles.get_mut(tile) else {
            continue;
        };
        let at = usize::from(u16::from_le_bytes([edit[2], edit[3]]));
        match edit[1] % 5 {
            0 if !bytes.is_empty() => {
                let i = at % bytes.len();
                bytes[i] ^= edit[3] | 1;
            }
            1 => bytes.truncate(at % (bytes.len() + 1)),
            2 => bytes.push(edit[3]),
            3 => {
                served.failing.insert(*tile);
            }
            4 => {
                served.tiles.remove(tile);
            }
            _ => {}
        }
    }

    let mut root = tree_hash(size, &tree).expect("honest nodes are all there");
    if flags & 1 == 1 {
        root[usize::from(flags >> 3)] ^= 0x80;
    }
    let old_root = tree_hash(old_size.min(size), &tree).expect("honest nodes are all there");
    let report = audit_log(size, &root, &mut served, Some((old_size, old_root)), |_| {});

    let tampered = flags & 1 == 1
        || !served.failing.is_empty()
        || served.tiles.len() != honest.len()
        || honest.iter().any(|(t, b)| served.tiles.get(t) != Some(b));
    if tampered {
        assert!(
            !report.problems.is_empty(),
            "a tampered log passed the audit"
        );
    } else {
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.entries_checked, size);
        assert_eq!(report.old_root_ok, Some(old_size <= size));
    }
});
