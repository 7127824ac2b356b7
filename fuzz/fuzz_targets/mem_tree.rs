//! An honest in-memory Merkle tree of the entries "entry 0", "entry 1", …
//! (as in the C2SP conformance vectors), built once per process; targets
//! look at a prefix of it, serve exact tiles and proofs from it and compare
//! what the code under test says with the truth.

use aiaudit_tlog::{record_hash, Error, Hash, NodeReader, Result, TreeBuilder};

pub struct MemTree {
    #[allow(dead_code)] // proofs needs only the hashes
    pub entries: Vec<Vec<u8>>,
    /// Every complete node: `levels[l][i]` covers leaves `[i << l, (i + 1) << l)`.
    pub levels: Vec<Vec<Hash>>,
}

impl MemTree {
    pub fn new(size: u64) -> Self {
        let entries: Vec<Vec<u8>> = (0..size)
            .map(|i| format!("entry {i}").into_bytes())
            .collect();
        let mut levels = vec![Vec::new(); 64];
        let mut builder = TreeBuilder::new();
        for e in &entries {
            builder.push(record_hash(e), |level, _, hash| {
                levels[level as usize].push(*hash)
            });
        }
        MemTree { entries, levels }
    }

    /// The tree of the first `size` entries: it refuses every node that is
    /// not complete within them, as a store of that size would.
    pub fn prefix(&self, size: u64) -> Prefix<'_> {
        Prefix { tree: self, size }
    }
}

pub struct Prefix<'a> {
    pub tree: &'a MemTree,
    pub size: u64,
}

impl NodeReader for Prefix<'_> {
    fn read_node(&self, level: u32, index: u64) -> Result<Hash> {
        let end = (u128::from(index) + 1) << level.min(64);
        if level >= 64 || end > u128::from(self.size) {
            return Err(Error::InvalidArgument(format!(
                "no node ({level}, {index})"
            )));
        }
        Ok(self.tree.levels[level as usize][index as usize])
    }
}
