//! C2SP tlog-tiles data from outside: tile paths (GET /tile/{*path}, and the
//! paths a verifier asks a mirror for), entry bundles and hash tiles.
//!
//! Properties: no panic; a path that parses is the one canonical spelling
//! of its tile; bundles and hash tiles that parse re-encode to the same
//! bytes.
#![no_main]

use aiaudit_tlog::{
    decode_entry_bundle, encode_entry_bundle, encode_hash_tile, encode_tile_index,
    hashes_at_tile_level, parse_hash_tile, Tile, TileKind, TILE_WIDTH,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data) {
        if let Ok(tile) = Tile::parse_path(path) {
            // One spelling per tile, so caches cannot be fooled by aliases.
            assert_eq!(tile.path(), path);
            assert!(tile.width >= 1 && u64::from(tile.width) <= TILE_WIDTH);
            assert_eq!(tile.is_full(), u64::from(tile.width) == TILE_WIDTH);
            if let TileKind::Hash { level } = tile.kind {
                let _ = hashes_at_tile_level(tile.index.wrapping_mul(TILE_WIDTH), level);
                assert!(tile.tree_level().is_some());
            }
            assert!(path.contains(&encode_tile_index(tile.index)));
        }
    }
    if let Ok(entries) = decode_entry_bundle(data) {
        let again = encode_entry_bundle(entries.iter().copied()).expect("decoded entries fit");
        assert_eq!(again, data);
        for entry in entries {
            let _ = aiaudit_event::envelope::decode_stored(entry);
        }
    }
    if let Ok(hashes) = parse_hash_tile(data) {
        assert_eq!(encode_hash_tile(&hashes), data);
    }
});
