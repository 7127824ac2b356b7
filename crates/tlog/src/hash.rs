//! RFC 6962 hashing, the crate's error type and the [`NodeReader`] abstraction.

use ring::digest::{Context, SHA256};
use sha2::Digest;

/// SHA-256 of the concatenated parts, by whichever implementation is the
/// faster on this CPU (docs/performance.md, "Picking SHA-256 by the CPU"):
/// with x86's SHA extensions the `sha2` crate's, which hashes a block as
/// fast as ring's and spends a third less per call (an interior node is
/// one call of 65 bytes); without them ring's, 1.6× the `sha2` crate's on
/// 1 KiB. Both compute the same function, so the choice is never visible.
fn sha256(parts: &[&[u8]]) -> Hash {
    if sha_extensions() {
        sha256_by_sha2(parts)
    } else {
        sha256_by_ring(parts)
    }
}

fn sha_extensions() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // Detected once and cached by the standard library.
        std::arch::is_x86_feature_detected!("sha")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn sha256_by_ring(parts: &[&[u8]]) -> Hash {
    let mut c = Context::new(&SHA256);
    for p in parts {
        c.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(c.finish().as_ref());
    out
}

fn sha256_by_sha2(parts: &[&[u8]]) -> Hash {
    let mut c = sha2::Sha256::new();
    for p in parts {
        c.update(p);
    }
    c.finalize().into()
}

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// Returns the RFC 6962 leaf hash of a log entry: SHA-256(0x00 || entry).
///
/// The 0x00 prefix separates leaf hashes from interior node hashes, so that
/// no leaf can be passed off as a subtree (second-preimage protection).
pub fn record_hash(entry: &[u8]) -> Hash {
    sha256(&[&[0x00], entry])
}

/// Returns the RFC 6962 interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

/// Returns the RFC 6962 hash of the empty tree, SHA-256("").
///
/// Note that Go's `tlog.TreeHash(0, ...)` returns 32 zero bytes instead; this
/// crate follows the RFC.
pub fn empty_tree_hash() -> Hash {
    sha256(&[])
}

/// Errors returned by this crate. No function of the crate panics on bad
/// input; it returns one of these instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller asked for something that does not exist or makes no sense,
    /// such as a proof for an index outside the tree.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A Merkle proof did not verify.
    #[error("invalid proof")]
    InvalidProof,
    /// Some encoded data (tile path, bundle, checkpoint, key, note) is not in
    /// its canonical format.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// The kind of data, e.g. "tile path" or "checkpoint".
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A signed note carries no valid signature by the expected key.
    #[error("signature verification failed: {0}")]
    BadSignature(String),
    /// A checkpoint is not cosigned by the witnesses a policy's quorum needs.
    #[error("quorum not met: {0}")]
    Quorum(String),
    /// A [`NodeReader`] or tile reader failed.
    #[error("reading hashes: {0}")]
    Read(Box<dyn std::error::Error + Send + Sync>),
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn malformed(what: &'static str, detail: impl Into<String>) -> Error {
    Error::Malformed {
        what,
        detail: detail.into(),
    }
}

/// Reads the hash of a complete subtree: node (level, index) covers leaves
/// `[index << level, (index + 1) << level)`. Level 0 is the leaf hashes.
///
/// The proof functions of this crate only ask for nodes that are complete
/// subtrees of the tree they work on, so a store that keeps only complete
/// nodes (such as a tile store) can answer every request.
pub trait NodeReader {
    /// Returns the hash of node (level, index), or an error (typically
    /// [`Error::Read`]) when it is not available.
    fn read_node(&self, level: u32, index: u64) -> Result<Hash>;
}

impl<T: NodeReader + ?Sized> NodeReader for &T {
    fn read_node(&self, level: u32, index: u64) -> Result<Hash> {
        (**self).read_node(level, index)
    }
}

impl<T: NodeReader + ?Sized> NodeReader for Box<T> {
    fn read_node(&self, level: u32, index: u64) -> Result<Hash> {
        (**self).read_node(level, index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn both_implementations_compute_the_same_hashes() {
        // Lengths around SHA-256's 64-byte blocks and its 55/56-byte padding edge.
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for len in (0..200).chain([447, 448, 860, 1024, 2999]) {
            for split in [0, len / 3, len] {
                let (a, b) = data[..len].split_at(split);
                let parts: [&[u8]; 3] = [&[0x00], a, b];
                assert_eq!(
                    sha256_by_ring(&parts),
                    sha256_by_sha2(&parts),
                    "{len} split at {split}"
                );
            }
        }
        assert_eq!(sha256(&[b"abc"]), sha256_by_ring(&[b"abc"]));
    }

    #[test]
    fn empty_tree() {
        assert_eq!(
            hex(&empty_tree_hash()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn leaf_and_node() {
        // Sample leaf from testdata/roots.json.
        assert_eq!(
            hex(&record_hash(b"entry 0")),
            "773885a613489e24ce2cf76199d6a423f042e4bbf12d7eecee912ef276c65701"
        );
        let l = record_hash(b"entry 0");
        let r = record_hash(b"entry 1");
        assert_eq!(
            hex(&node_hash(&l, &r)),
            "5a47662fd8a317d96049a3f9f47c55dc67ca66051baa3683dbb19b2fe09a07b0"
        );
        // Domain separation: a leaf over 64 bytes differs from the node over them.
        let mut both = l.to_vec();
        both.extend_from_slice(&r);
        assert_ne!(record_hash(&both), node_hash(&l, &r));
    }

    #[test]
    fn error_messages() {
        assert_eq!(Error::InvalidProof.to_string(), "invalid proof");
        assert_eq!(
            malformed("tile path", "x").to_string(),
            "malformed tile path: x"
        );
    }
}
