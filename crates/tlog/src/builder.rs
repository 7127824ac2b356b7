//! A streaming Merkle tree builder.

use crate::hash::{empty_tree_hash, node_hash, Error, Hash, Result};

/// The largest size [`TreeBuilder::from_edge`] accepts is below this: like
/// Go's int64 tree sizes, it keeps every later `push` far from overflow.
const MAX_RESUME_SIZE: u64 = 1 << 63;

/// Streaming Merkle tree builder (compact range over [0, size)): O(log n) memory.
///
/// The builder keeps only the hashes of the complete subtrees along the
/// right edge of the tree, one per set bit of `size`. That is enough both to
/// compute the root and to append more leaves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeBuilder {
    size: u64,
    // Complete subtree hashes, largest (leftmost) first.
    edge: Vec<Hash>,
}

impl TreeBuilder {
    /// Returns a builder for the empty tree.
    pub fn new() -> Self {
        TreeBuilder::default()
    }

    /// Resume at `size` from the hashes of the complete subtrees of size's binary decomposition,
    /// ordered left to right (largest first), i.e. one hash per set bit of size. Wrong count -> InvalidArgument.
    ///
    /// The hashes are those of the nodes [`TreeBuilder::edge_nodes`] lists;
    /// they are not (and cannot be) checked here. `size` must be below 2^63.
    pub fn from_edge(size: u64, edge: Vec<Hash>) -> Result<Self> {
        if size >= MAX_RESUME_SIZE {
            return Err(Error::InvalidArgument(format!(
                "tree size {size} is too large"
            )));
        }
        let want = size.count_ones() as usize;
        if edge.len() != want {
            return Err(Error::InvalidArgument(format!(
                "tree of size {size} needs {want} edge hashes, got {}",
                edge.len()
            )));
        }
        Ok(TreeBuilder { size, edge })
    }

    /// Returns the hashes of the complete subtrees that make up the tree,
    /// in the order [`TreeBuilder::from_edge`] takes them.
    pub fn edge(&self) -> &[Hash] {
        &self.edge
    }

    /// Returns the (level, index) of the complete subtrees of the binary
    /// decomposition of `size`, left to right (largest first). Empty for 0.
    pub fn edge_nodes(size: u64) -> Vec<(u32, u64)> {
        let mut nodes = Vec::with_capacity(size.count_ones() as usize);
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if size >> level & 1 == 1 {
                nodes.push((level, start >> level));
                start += 1 << level;
            }
        }
        nodes
    }

    /// Returns the number of leaves pushed (or resumed from).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append one leaf hash; calls `on_node(level, index, hash)` for every complete node that the push
    /// completes, starting with the leaf itself at level 0, then its parents at levels 1, 2, ... (in that order).
    ///
    /// Pushing leaf n completes one node per trailing one bit of n, plus the
    /// leaf: on average two calls per push.
    pub fn push(&mut self, leaf: Hash, mut on_node: impl FnMut(u32, u64, &Hash)) {
        let index = self.size;
        on_node(0, index, &leaf);
        let mut hash = leaf;
        let mut level = 0u32;
        // Each trailing one bit of the old size is a complete subtree that now
        // gets a right sibling of the same size and merges with it.
        while level < 64 && index >> level & 1 == 1 {
            let Some(left) = self.edge.pop() else {
                // Unreachable: the edge has one hash per set bit of size.
                break;
            };
            hash = node_hash(&left, &hash);
            level += 1;
            on_node(level, index.checked_shr(level).unwrap_or(0), &hash);
        }
        self.edge.push(hash);
        self.size += 1;
    }

    /// Appends a complete subtree of `2^level` leaves whose root is `hash`
    /// (computed elsewhere, e.g. on another core), as if its leaves were
    /// pushed one by one, except that `on_node` is called only for the
    /// subtree's root and the nodes it completes above it. The size must be
    /// a multiple of `2^level`.
    pub fn push_subtree(
        &mut self,
        level: u32,
        hash: Hash,
        mut on_node: impl FnMut(u32, u64, &Hash),
    ) -> Result<()> {
        let width = 1u64.checked_shl(level).filter(|_| level < 63);
        let Some(width) = width.filter(|w| self.size.is_multiple_of(*w)) else {
            return Err(Error::InvalidArgument(format!(
                "a subtree of level {level} cannot start at size {}",
                self.size
            )));
        };
        let index = self.size >> level;
        on_node(level, index, &hash);
        let (mut hash, mut level, mut at) = (hash, level, index);
        while level < 63 && at & 1 == 1 {
            let Some(left) = self.edge.pop() else { break };
            hash = node_hash(&left, &hash);
            level += 1;
            at >>= 1;
            on_node(level, at, &hash);
        }
        self.edge.push(hash);
        self.size += width;
        Ok(())
    }

    /// Returns the Merkle tree hash of the leaves pushed so far;
    /// [`empty_tree_hash`] for size 0.
    pub fn root(&self) -> Hash {
        let mut nodes = self.edge.iter().rev();
        let Some(last) = nodes.next() else {
            return empty_tree_hash();
        };
        // Smaller subtrees sit on the right and are combined first.
        nodes.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::record_hash;

    fn leaf(i: u64) -> Hash {
        record_hash(format!("entry {i}").as_bytes())
    }

    #[test]
    fn pushing_subtrees_is_pushing_their_leaves() {
        for (level, count) in [(0u32, 7u64), (1, 5), (3, 9), (8, 6)] {
            let width = 1u64 << level;
            let (mut leaves, mut subtrees) = (TreeBuilder::new(), TreeBuilder::new());
            let (mut seen_leaves, mut seen_subtrees) = (Vec::new(), Vec::new());
            for t in 0..count {
                let mut sub = TreeBuilder::new();
                for i in t * width..(t + 1) * width {
                    sub.push(leaf(i), |_, _, _| {});
                    leaves.push(leaf(i), |l, i, h| {
                        if l >= level {
                            seen_leaves.push((l, i, *h))
                        }
                    });
                }
                subtrees
                    .push_subtree(level, sub.root(), |l, i, h| seen_subtrees.push((l, i, *h)))
                    .unwrap();
                assert_eq!(subtrees.root(), leaves.root());
                assert_eq!(subtrees.size(), leaves.size());
                assert_eq!(subtrees.edge(), leaves.edge());
            }
            assert_eq!(seen_subtrees, seen_leaves);
        }
        let mut b = TreeBuilder::new();
        b.push(leaf(0), |_, _, _| {});
        assert!(b.push_subtree(1, leaf(1), |_, _, _| {}).is_err());
        assert!(b.push_subtree(64, leaf(1), |_, _, _| {}).is_err());
    }

    #[test]
    fn empty() {
        let b = TreeBuilder::new();
        assert_eq!(b.size(), 0);
        assert!(b.edge().is_empty());
        assert_eq!(b.root(), empty_tree_hash());
        assert!(TreeBuilder::edge_nodes(0).is_empty());
    }

    #[test]
    fn small_roots() {
        let mut b = TreeBuilder::new();
        b.push(leaf(0), |_, _, _| {});
        assert_eq!(b.root(), leaf(0));
        b.push(leaf(1), |_, _, _| {});
        let n01 = node_hash(&leaf(0), &leaf(1));
        assert_eq!(b.root(), n01);
        b.push(leaf(2), |_, _, _| {});
        assert_eq!(b.root(), node_hash(&n01, &leaf(2)));
        assert_eq!(b.edge(), &[n01, leaf(2)]);
    }

    #[test]
    fn push_reports_completed_nodes_in_order() {
        let mut b = TreeBuilder::new();
        for i in 0..7 {
            b.push(leaf(i), |_, _, _| {});
        }
        let mut seen = Vec::new();
        b.push(leaf(7), |l, i, _| seen.push((l, i)));
        assert_eq!(seen, vec![(0, 7), (1, 3), (2, 1), (3, 0)]);
        let mut seen = Vec::new();
        b.push(leaf(8), |l, i, _| seen.push((l, i)));
        assert_eq!(seen, vec![(0, 8)]);
    }

    #[test]
    fn edge_nodes_layout() {
        assert_eq!(TreeBuilder::edge_nodes(1), vec![(0, 0)]);
        assert_eq!(TreeBuilder::edge_nodes(6), vec![(2, 0), (1, 2)]);
        assert_eq!(
            TreeBuilder::edge_nodes(1000),
            vec![(9, 0), (8, 2), (7, 6), (6, 14), (5, 30), (3, 124)]
        );
        assert_eq!(TreeBuilder::edge_nodes(u64::MAX).len(), 64);
    }

    #[test]
    fn resume_from_edge() {
        // Keep every node, then resume at every size and compare.
        let mut nodes: Vec<Vec<Hash>> = vec![Vec::new(); 12];
        let mut full = TreeBuilder::new();
        let mut roots = vec![full.root()];
        for i in 0..600 {
            full.push(leaf(i), |l, _, h| nodes[l as usize].push(*h));
            roots.push(full.root());
        }
        for size in [0u64, 1, 5, 255, 256, 257, 511, 599] {
            let edge: Vec<Hash> = TreeBuilder::edge_nodes(size)
                .iter()
                .map(|&(l, i)| nodes[l as usize][i as usize])
                .collect();
            let mut b = TreeBuilder::from_edge(size, edge).unwrap();
            assert_eq!(b.root(), roots[size as usize]);
            for i in size..600 {
                b.push(leaf(i), |_, _, _| {});
            }
            assert_eq!(b, full);
        }
    }

    #[test]
    fn from_edge_errors() {
        assert!(matches!(
            TreeBuilder::from_edge(3, vec![[0; 32]]),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            TreeBuilder::from_edge(0, vec![[0; 32]]),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            TreeBuilder::from_edge(1 << 63, vec![[0; 32]]),
            Err(Error::InvalidArgument(_))
        ));
        let b = TreeBuilder::from_edge((1 << 63) - 1, vec![[0; 32]; 63]).unwrap();
        let mut b2 = b.clone();
        let mut top = 0;
        b2.push([1; 32], |l, i, _| {
            top = l;
            assert_eq!(i, ((1u64 << 63) - 1) >> l);
        });
        assert_eq!(top, 63);
        assert_eq!(b2.edge().len(), 1);
    }
}
