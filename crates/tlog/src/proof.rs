//! Merkle tree hashes, inclusion proofs and consistency proofs (RFC 6962
//! section 2.1, RFC 9162 section 2.1).
//!
//! The provers read complete subtree hashes from a [`NodeReader`] and make
//! O(log n) reads. The checkers are pure functions of their arguments.

use crate::hash::{empty_tree_hash, node_hash, Error, Hash, NodeReader, Result};

/// Returns the largest power of two strictly less than `n`. Requires n >= 2.
fn split_point(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Returns the hash of the leaves `[lo, hi)`, where `hi > lo` and `lo` is a
/// multiple of the smallest power of two >= `hi - lo`. This holds for every
/// range that the RFC 6962 recursion visits, and it means that the range
/// splits into the complete subtrees of the binary decomposition of
/// `hi - lo`, largest first: one read per set bit.
fn range_hash(lo: u64, hi: u64, r: &impl NodeReader) -> Result<Hash> {
    let n = hi - lo;
    let mut start = lo;
    let mut nodes = Vec::with_capacity(n.count_ones() as usize);
    for level in (0..64u32).rev() {
        if n >> level & 1 == 1 {
            nodes.push(r.read_node(level, start >> level)?);
            start += 1 << level;
        }
    }
    // MTH combines the smaller right-hand subtrees first.
    let mut acc: Option<Hash> = None;
    for left in nodes.iter().rev() {
        acc = Some(match acc {
            None => *left,
            Some(right) => node_hash(left, &right),
        });
    }
    acc.ok_or_else(|| Error::InvalidArgument("empty range".into()))
}

/// Returns the Merkle tree hash (RFC 6962 MTH) of the first `size` leaves.
///
/// A tree of size 0 has hash [`empty_tree_hash`] and needs no reads.
pub fn tree_hash(size: u64, r: &impl NodeReader) -> Result<Hash> {
    if size == 0 {
        return Ok(empty_tree_hash());
    }
    range_hash(0, size, r)
}

/// Returns the inclusion proof of leaf `index` in the tree of `size` leaves:
/// RFC 6962 `PATH(index, D[size])`, sibling nearest the leaf first (the same
/// order as Go's `tlog.ProveRecord`). A tree of size 1 has an empty proof.
///
/// Errors: [`Error::InvalidArgument`] when `index >= size`; reader errors are
/// passed through.
pub fn prove_record(size: u64, index: u64, r: &impl NodeReader) -> Result<Vec<Hash>> {
    if index >= size {
        return Err(Error::InvalidArgument(format!(
            "index {index} not in tree of size {size}"
        )));
    }
    let mut proof = Vec::new();
    path(index, 0, size, r, &mut proof)?;
    Ok(proof)
}

/// Appends PATH(index - lo, D[lo:hi]) to `out`.
fn path(index: u64, lo: u64, hi: u64, r: &impl NodeReader, out: &mut Vec<Hash>) -> Result<()> {
    if hi - lo <= 1 {
        return Ok(());
    }
    let mid = lo + split_point(hi - lo);
    // Recurse first: the deeper siblings come first in the proof.
    if index < mid {
        path(index, lo, mid, r, out)?;
        out.push(range_hash(mid, hi, r)?);
    } else {
        path(index, mid, hi, r, out)?;
        out.push(range_hash(lo, mid, r)?);
    }
    Ok(())
}

/// Verifies that `proof` proves that `leaf` is the leaf hash at `index` in
/// the tree of `size` leaves whose hash is `root` (RFC 9162 section 2.1.3.2).
///
/// Errors: [`Error::InvalidProof`] when the proof does not verify, including
/// when it has too few or too many hashes, and when `index >= size` (a claim
/// about a leaf outside the tree is false whatever the proof).
pub fn check_record(proof: &[Hash], size: u64, root: &Hash, index: u64, leaf: &Hash) -> Result<()> {
    if index >= size {
        return Err(Error::InvalidProof);
    }
    // fn and sn walk up from the leaf and from the last leaf; where they
    // meet tells which side each sibling is on.
    let mut f = index;
    let mut s = size - 1;
    let mut acc = *leaf;
    for p in proof {
        if s == 0 {
            return Err(Error::InvalidProof);
        }
        if f & 1 == 1 || f == s {
            acc = node_hash(p, &acc);
            // On the right edge, levels where the node has no right sibling
            // are skipped: the tree is not complete there.
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            acc = node_hash(&acc, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s == 0 && acc == *root {
        Ok(())
    } else {
        Err(Error::InvalidProof)
    }
}

/// Returns the consistency proof between the tree of `old_size` leaves and
/// the tree of `size` leaves: RFC 6962 `PROOF(old_size, D[size])`, deepest
/// hash first (the same hashes and order as Go's `tlog.ProveTree(size,
/// old_size)`). As in RFC 6962, the old root itself is left out when the old
/// tree is a complete left subtree (old_size a power of two).
///
/// Returns an empty proof when `old_size == size`, without reading.
/// Errors: [`Error::InvalidArgument`] when `old_size` is 0 or greater than
/// `size`; reader errors are passed through.
pub fn prove_tree(size: u64, old_size: u64, r: &impl NodeReader) -> Result<Vec<Hash>> {
    if old_size == 0 || old_size > size {
        return Err(Error::InvalidArgument(format!(
            "no consistency proof from size {old_size} to size {size}"
        )));
    }
    let mut proof = Vec::new();
    subproof(old_size, 0, size, true, r, &mut proof)?;
    Ok(proof)
}

/// Appends SUBPROOF(m, D[lo:hi], whole) to `out`.
fn subproof(
    m: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    r: &impl NodeReader,
    out: &mut Vec<Hash>,
) -> Result<()> {
    let n = hi - lo;
    if m == n {
        // The verifier knows the old root of the whole old tree already.
        if !whole {
            out.push(range_hash(lo, hi, r)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(m, lo, lo + k, whole, r, out)?;
        out.push(range_hash(lo + k, hi, r)?);
    } else {
        subproof(m - k, lo + k, hi, false, r, out)?;
        out.push(range_hash(lo, lo + k, r)?);
    }
    Ok(())
}

/// Verifies that `proof` proves that the tree of `old_size` leaves with hash
/// `old_root` is a prefix of the tree of `size` leaves with hash `root`
/// (RFC 9162 section 2.1.4.2, with the old root put back when `old_size` is a
/// power of two, as RFC 6962 proofs leave it out).
///
/// When `old_size == size` the proof must be empty and the roots equal.
/// Errors: [`Error::InvalidArgument`] when `old_size` is 0 (RFC 6962 has no
/// proofs from the empty tree, which every tree extends);
/// [`Error::InvalidProof`] when the proof does not verify, and when
/// `old_size > size` (a log never shrinks).
pub fn check_tree(
    proof: &[Hash],
    size: u64,
    root: &Hash,
    old_size: u64,
    old_root: &Hash,
) -> Result<()> {
    if old_size == 0 {
        return Err(Error::InvalidArgument(
            "no consistency proof from the empty tree".into(),
        ));
    }
    if old_size > size {
        return Err(Error::InvalidProof);
    }
    if old_size == size {
        return if proof.is_empty() && old_root == root {
            Ok(())
        } else {
            Err(Error::InvalidProof)
        };
    }
    let (first, rest) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (*first, rest),
            None => return Err(Error::InvalidProof),
        }
    };
    let mut f = old_size - 1;
    let mut s = size - 1;
    // Skip the levels where the old tree's last node is a right child whose
    // left sibling is already inside `first`.
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let mut old_acc = first;
    let mut new_acc = first;
    for c in rest {
        if s == 0 {
            return Err(Error::InvalidProof);
        }
        if f & 1 == 1 || f == s {
            old_acc = node_hash(c, &old_acc);
            new_acc = node_hash(c, &new_acc);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            // Hashes to the right of the old tree only enter the new root.
            new_acc = node_hash(&new_acc, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s == 0 && old_acc == *old_root && new_acc == *root {
        Ok(())
    } else {
        Err(Error::InvalidProof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TreeBuilder;
    use crate::hash::record_hash;
    use proptest::prelude::*;
    use std::cell::Cell;

    /// An in-memory store of the complete nodes of a tree, which refuses
    /// (and counts) every request for a node outside the tree.
    struct Nodes {
        levels: Vec<Vec<Hash>>,
        reads: Cell<u64>,
    }

    impl Nodes {
        fn new(size: u64) -> Nodes {
            let mut levels: Vec<Vec<Hash>> = Vec::new();
            let mut b = TreeBuilder::new();
            for i in 0..size {
                b.push(record_hash(format!("entry {i}").as_bytes()), |l, idx, h| {
                    let l = l as usize;
                    if levels.len() <= l {
                        levels.resize(l + 1, Vec::new());
                    }
                    assert_eq!(levels[l].len() as u64, idx);
                    levels[l].push(*h);
                });
            }
            Nodes {
                levels,
                reads: Cell::new(0),
            }
        }
        fn leaf(&self, i: u64) -> Hash {
            self.levels[0][i as usize]
        }
    }

    impl NodeReader for Nodes {
        fn read_node(&self, level: u32, index: u64) -> Result<Hash> {
            self.reads.set(self.reads.get() + 1);
            self.levels
                .get(level as usize)
                .and_then(|l| l.get(index as usize))
                .copied()
                .ok_or_else(|| Error::InvalidArgument(format!("no node ({level}, {index})")))
        }
    }

    /// MTH straight from the RFC definition, as an oracle.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_tree_hash(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn split_points() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(u64::MAX), 1 << 63);
    }

    #[test]
    fn tree_hash_matches_rfc_definition() {
        let nodes = Nodes::new(300);
        for size in 0..=300u64 {
            let want = mth(&nodes.levels[0][..size as usize]);
            assert_eq!(tree_hash(size, &nodes).unwrap(), want, "size {size}");
        }
    }

    #[test]
    fn read_counts_are_logarithmic() {
        let nodes = Nodes::new(1000);
        for (size, index) in [(1000, 0), (1000, 999), (1000, 500), (999, 767)] {
            nodes.reads.set(0);
            prove_record(size, index, &nodes).unwrap();
            assert!(nodes.reads.get() <= 2 * 10 + 1, "{}", nodes.reads.get());
        }
        for old in [1, 3, 500, 512, 999] {
            nodes.reads.set(0);
            prove_tree(1000, old, &nodes).unwrap();
            assert!(nodes.reads.get() <= 2 * 10 + 2, "{}", nodes.reads.get());
        }
    }

    #[test]
    fn argument_errors() {
        let nodes = Nodes::new(4);
        let h = [0u8; 32];
        assert!(matches!(
            prove_record(4, 4, &nodes),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            prove_record(0, 0, &nodes),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            prove_tree(4, 0, &nodes),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            prove_tree(4, 5, &nodes),
            Err(Error::InvalidArgument(_))
        ));
        assert!(prove_tree(4, 4, &nodes).unwrap().is_empty());
        assert!(matches!(
            check_record(&[], 0, &h, 0, &h),
            Err(Error::InvalidProof)
        ));
        assert!(matches!(
            check_record(&[], 4, &h, 4, &h),
            Err(Error::InvalidProof)
        ));
        assert!(matches!(
            check_tree(&[], 4, &h, 0, &h),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            check_tree(&[], 4, &h, 5, &h),
            Err(Error::InvalidProof)
        ));
        // Reader errors are passed through.
        assert!(prove_record(5, 0, &nodes).is_err());
    }

    #[test]
    fn equal_sizes() {
        let nodes = Nodes::new(7);
        let root = tree_hash(7, &nodes).unwrap();
        check_tree(&[], 7, &root, 7, &root).unwrap();
        assert!(matches!(
            check_tree(&[root], 7, &root, 7, &root),
            Err(Error::InvalidProof)
        ));
        let other = tree_hash(6, &nodes).unwrap();
        assert!(matches!(
            check_tree(&[], 7, &root, 7, &other),
            Err(Error::InvalidProof)
        ));
        // An empty proof between different sizes never verifies.
        assert!(matches!(
            check_tree(&[], 7, &root, 6, &other),
            Err(Error::InvalidProof)
        ));
        let four = tree_hash(4, &nodes).unwrap();
        assert!(matches!(
            check_tree(&[], 7, &root, 4, &four),
            Err(Error::InvalidProof)
        ));
    }

    fn flip(proof: &[Hash], which: usize, bit: usize) -> Vec<Hash> {
        let mut p = proof.to_vec();
        p[which][bit / 8] ^= 1 << (bit % 8);
        p
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn inclusion_proofs(size in 1u64..2000, seed in any::<u64>()) {
            let nodes = Nodes::new(size);
            let root = tree_hash(size, &nodes).unwrap();
            for index in 0..size {
                let leaf = nodes.leaf(index);
                let proof = prove_record(size, index, &nodes).unwrap();
                prop_assert!(check_record(&proof, size, &root, index, &leaf).is_ok());

                let pick = seed.wrapping_add(index).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                if !proof.is_empty() {
                    let which = (pick % proof.len() as u64) as usize;
                    let bit = (pick >> 32) as usize % 256;
                    prop_assert!(check_record(&flip(&proof, which, bit), size, &root, index, &leaf).is_err());
                    prop_assert!(check_record(&proof[1..], size, &root, index, &leaf).is_err());
                    prop_assert!(check_record(&proof[..proof.len() - 1], size, &root, index, &leaf).is_err());
                }
                let mut extra = proof.clone();
                extra.push(leaf);
                prop_assert!(check_record(&extra, size, &root, index, &leaf).is_err());
                let mut extra = proof.clone();
                extra.insert(0, leaf);
                prop_assert!(check_record(&extra, size, &root, index, &leaf).is_err());
                let wrong = (index + 1 + pick % size) % size;
                if wrong != index {
                    prop_assert!(check_record(&proof, size, &root, wrong, &leaf).is_err());
                }
                prop_assert!(check_record(&proof, size, &root, size, &leaf).is_err());
                let mut bad_root = root;
                bad_root[0] ^= 1;
                prop_assert!(check_record(&proof, size, &bad_root, index, &leaf).is_err());
            }
        }

        #[test]
        fn consistency_proofs(size in 1u64..2000, seed in any::<u64>()) {
            let nodes = Nodes::new(size);
            let root = tree_hash(size, &nodes).unwrap();
            for old in 1..=size {
                let old_root = tree_hash(old, &nodes).unwrap();
                let proof = prove_tree(size, old, &nodes).unwrap();
                prop_assert!(check_tree(&proof, size, &root, old, &old_root).is_ok());

                let pick = seed.wrapping_add(old).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                if !proof.is_empty() {
                    let which = (pick % proof.len() as u64) as usize;
                    let bit = (pick >> 32) as usize % 256;
                    prop_assert!(check_tree(&flip(&proof, which, bit), size, &root, old, &old_root).is_err());
                    prop_assert!(check_tree(&proof[1..], size, &root, old, &old_root).is_err());
                    prop_assert!(check_tree(&proof[..proof.len() - 1], size, &root, old, &old_root).is_err());
                }
                let mut extra = proof.clone();
                extra.push(root);
                prop_assert!(check_tree(&extra, size, &root, old, &old_root).is_err());
                let mut extra = proof.clone();
                extra.insert(0, old_root);
                prop_assert!(check_tree(&extra, size, &root, old, &old_root).is_err());
                if old > 1 {
                    prop_assert!(check_tree(&proof, size, &root, old - 1, &old_root).is_err());
                }
                if old < size {
                    prop_assert!(check_tree(&proof, size, &root, old + 1, &old_root).is_err());
                }
                let mut bad = old_root;
                bad[31] ^= 0x80;
                prop_assert!(check_tree(&proof, size, &root, old, &bad).is_err());
                let mut bad = root;
                bad[31] ^= 0x80;
                prop_assert!(check_tree(&proof, size, &bad, old, &old_root).is_err());
            }
        }
    }
}
