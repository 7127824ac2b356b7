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
//! * [`MemoryTree`]: a whole tree in memory, for proofs without a store;
//! * [`TreeBuilder`]: appending leaves with O(log n) memory, reporting each
//!   node it completes so a store can persist hash tiles;
//! * [`Tile`], [`tiles_for_size`], entry bundles and hash tiles;
//! * [`Checkpoint`], [`Signer`], [`Verifier`], [`sign_note`], [`open_note`];
//! * [`audit_log`]: a full recomputation of a tiled log from its entries;
//! * [`CosignatureSigner`], [`CosignatureVerifier`]: C2SP tlog-cosignature
//!   `cosignature/v1` witness keys and lines;
//! * [`AddCheckpoint`]: C2SP tlog-witness `add-checkpoint` bodies;
//! * [`Policy`]: C2SP tlog-policy files and quorum checks;
//! * [`TlogProof`]: C2SP tlog-proof, one entry's offline proof.
//!
//! What it is not for: it does no I/O, spawns nothing and has no async code.
//! Storage, networking, key management and the format of the entries
//! themselves belong to other crates; they plug in through [`NodeReader`]
//! and [`TileReader`]. Only Ed25519 keys are supported: log signatures
//! (type 0x01) and `cosignature/v1` (type 0x04).
//!
//! Sizes and indexes are u64. Functions never panic on bad input; they
//! return an [`Error`]. Unlike Go's `tlog.TreeHash`, the root of the empty
//! tree is SHA-256("") ([`empty_tree_hash`]), as RFC 6962 defines it.

pub mod builder;
pub mod checkpoint;
pub mod cosignature;
pub mod hash;
pub mod memory;
pub mod note;
pub mod policy;
pub mod proof;
pub mod tile;
pub mod tlog_proof;
pub mod verify;
pub mod witness;

pub use builder::TreeBuilder;
pub use checkpoint::Checkpoint;
pub use cosignature::{
    cosignature_key_id, cosigned_message, CosignatureSigner, CosignatureVerifier,
    ALG_COSIGNATURE_V1,
};
pub use hash::{empty_tree_hash, node_hash, record_hash, Error, Hash, NodeReader, Result};
pub use memory::MemoryTree;
pub use note::{
    key_id, open_note, parse_signature_line, sign_note, split_note, NoteSignature, Signer, Verifier,
};
pub use policy::{Policy, PolicyCheck, PolicyWitness};
pub use proof::{check_record, check_tree, prove_record, prove_tree, tree_hash};
pub use tile::{
    decode_entry_bundle, encode_entry_bundle, encode_hash_tile, encode_tile_index,
    hashes_at_tile_level, parse_hash_tile, tiles_for_size, Tile, TileKind, MAX_ENTRY_SIZE,
    TILE_HEIGHT, TILE_WIDTH,
};
pub use tlog_proof::{TlogProof, TLOG_PROOF_HEADER};
pub use verify::{
    audit_log, check_stored_levels, AuditReport, BundleReader, EntryVisitor, Problem, TileReader,
    MAX_PROBLEMS,
};
pub use witness::{
    parse_tlog_size, AddCheckpoint, MAX_CONSISTENCY_PROOF_LINES, TLOG_SIZE_CONTENT_TYPE,
};
