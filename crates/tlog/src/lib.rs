//! Transparency-log primitives for the AI audit log: RFC 6962 Merkle hashing
//! and proofs, the C2SP tlog-tiles layout, C2SP tlog-checkpoint bodies and
//! C2SP signed notes (Ed25519).
//!
//! What it is for: computing and checking everything a log, a monitor or an
//! auditor needs, byte-compatible with Go's `golang.org/x/mod/sumdb/tlog` and
//! `note` packages and with the C2SP specifications:
//!
//! * [`record_hash`], [`node_hash`]: leaf and interior hashes;
//! * [`tree_hash`], [`prove_record`], [`check_record`], [`prove_tree`],
//!   [`check_tree`]: roots, inclusion and consistency proofs over any
//!   [`NodeReader`];
//! * [`TreeBuilder`]: appending leaves with O(log n) memory, reporting each
//!   node it completes so a store can persist hash tiles;
//! * [`Tile`], [`tiles_for_size`], entry bundles and hash tiles;
//! * [`Checkpoint`], [`Signer`], [`Verifier`], [`sign_note`], [`open_note`];
//! * [`audit_log`]: a full recomputation of a tiled log from its entries.
//!
//! What it is not for: it does no I/O, spawns nothing and has no async code.
//! Storage, networking, key management and the format of the entries
//! themselves belong to other crates; they plug in through [`NodeReader`]
//! and [`TileReader`]. Only Ed25519 note signatures are supported (no
//! cosignatures or other algorithms).
//!
//! Sizes and indexes are u64. Functions never panic on bad input; they
//! return an [`Error`]. Unlike Go's `tlog.TreeHash`, the root of the empty
//! tree is SHA-256("") ([`empty_tree_hash`]), as RFC 6962 defines it.

pub mod builder;
pub mod checkpoint;
pub mod hash;
pub mod note;
pub mod proof;
pub mod tile;
pub mod verify;

pub use builder::TreeBuilder;
pub use checkpoint::Checkpoint;
pub use hash::{empty_tree_hash, node_hash, record_hash, Error, Hash, NodeReader, Result};
pub use note::{key_id, open_note, sign_note, Signer, Verifier};
pub use proof::{check_record, check_tree, prove_record, prove_tree, tree_hash};
pub use tile::{
    decode_entry_bundle, encode_entry_bundle, encode_hash_tile, encode_tile_index,
    hashes_at_tile_level, parse_hash_tile, tiles_for_size, Tile, TileKind, MAX_ENTRY_SIZE,
    TILE_HEIGHT, TILE_WIDTH,
};
pub use verify::{audit_log, check_stored_levels, AuditReport, Problem, TileReader, MAX_PROBLEMS};
