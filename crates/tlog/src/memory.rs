//! A whole tree kept in memory: every complete node by level. For tests,
//! tools and small logs that want proofs without a store.

use crate::builder::TreeBuilder;
use crate::hash::{record_hash, Error, Hash, NodeReader, Result};

/// Every complete node of a tree, level by level (level 0: leaf hashes).
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
    builder: TreeBuilder,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> MemoryTree {
        MemoryTree::default()
    }

    /// The tree of these entries (each hashed as an RFC 6962 leaf).
    pub fn of_entries<E: AsRef<[u8]>>(entries: impl IntoIterator<Item = E>) -> MemoryTree {
        let mut t = MemoryTree::new();
        for e in entries {
            t.push_leaf(record_hash(e.as_ref()));
        }
        t
    }

    /// Appends one leaf hash.
    pub fn push_leaf(&mut self, leaf: Hash) {
        let levels = &mut self.levels;
        self.builder.push(leaf, |l, _, h| {
            if levels.len() <= l as usize {
                levels.push(Vec::new());
            }
            levels[l as usize].push(*h);
        });
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.builder.size()
    }

    /// The root hash of the whole tree.
    pub fn root(&self) -> Hash {
        self.builder.root()
    }
}

impl NodeReader for MemoryTree {
    fn read_node(&self, level: u32, index: u64) -> Result<Hash> {
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(index as usize))
            .copied()
            .ok_or_else(|| {
                Error::InvalidArgument(format!("node ({level}, {index}) not in the tree"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_and_proofs_match_the_builder() {
        let t = MemoryTree::of_entries((0..300).map(|i| format!("entry {i}")));
        assert_eq!(t.size(), 300);
        assert_eq!(crate::tree_hash(300, &t).unwrap(), t.root());
        assert_eq!(
            crate::tree_hash(7, &t).unwrap(),
            MemoryTree::of_entries((0..7).map(|i| format!("entry {i}"))).root()
        );
        let p = crate::prove_record(300, 42, &t).unwrap();
        crate::check_record(&p, 300, &t.root(), 42, &record_hash(b"entry 42")).unwrap();
        assert!(t.read_node(0, 300).is_err());
    }
}
