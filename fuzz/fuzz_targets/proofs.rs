//! Inclusion and consistency proofs as a client gets them (GET
//! /v1/proof/inclusion and /v1/proof/consistency, bundle events, batch
//! signatures): `check_record` and `check_tree` on proofs from the input,
//! and the provers on any (size, index) a query can name.
//!
//! Properties: no panic or overflow for any u64 sizes; an honest proof of a
//! valid query always verifies; a proof that verifies against the honest
//! root is the honest proof (a verifier accepting anything else would
//! accept a forgery).
#![no_main]

use aiaudit_tlog::{
    check_record, check_tree, prove_record, prove_tree, record_hash, tree_hash, Hash, NodeReader,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[path = "mem_tree.rs"]
mod mem_tree;

/// Tree sizes are taken below this.
const MAX_SIZE: u64 = 1100;

fn full_tree() -> &'static mem_tree::MemTree {
    static TREE: OnceLock<mem_tree::MemTree> = OnceLock::new();
    TREE.get_or_init(|| mem_tree::MemTree::new(MAX_SIZE))
}

fn leaf(i: u64) -> Hash {
    record_hash(format!("entry {i}").as_bytes())
}

/// A candidate proof: the honest one edited (bit 1 of `flags`), or hashes
/// taken from the input.
fn candidate(honest: Option<&Vec<Hash>>, flags: u8, rest: &[u8]) -> Vec<Hash> {
    match honest {
        Some(h) if flags & 2 == 2 => {
            let mut p = h.clone();
            for op in rest.chunks_exact(2) {
                let i = usize::from(op[1]);
                match op[0] % 4 {
                    0 => {
                        if !p.is_empty() {
                            p.remove(i % p.len());
                        }
                    }
                    1 => {
                        let dup = p.get(i % p.len().max(1)).copied().unwrap_or([op[1]; 32]);
                        p.insert(i % (p.len() + 1), dup);
                    }
                    2 => {
                        let len = p.len();
                        if len > 1 {
                            p.swap(i % len, (i + 1) % len);
                        }
                    }
                    _ => {
                        if !p.is_empty() {
                            let k = i % p.len();
                            p[k][i % 32] ^= 1;
                        }
                    }
                }
            }
            p
        }
        _ => rest
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32 bytes"))
            .collect(),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 19 {
        return;
    }
    let n = u64::from(u16::from_le_bytes([data[0], data[1]])) % MAX_SIZE;
    let flags = data[2];
    let mut a = u64::from_le_bytes(data[3..11].try_into().unwrap());
    let mut b = u64::from_le_bytes(data[11..19].try_into().unwrap());
    let rest = &data[19..];
    // Mostly queries about the tree at hand; sometimes any u64 at all.
    if flags & 1 == 0 {
        a %= n + 1;
        b %= n + 1;
    }
    let tree = full_tree().prefix(n);
    let root_a = tree_hash(a, &tree).ok();
    let root_b = tree_hash(b, &tree).ok();
    if a <= n {
        assert!(root_a.is_some(), "every node of the tree is there");
    }
    let outside = record_hash(rest);

    // Inclusion of leaf b in the tree of size a.
    let honest = prove_record(a, b, &tree);
    if b < a && a <= n {
        let p = honest.as_ref().expect("a valid query is provable");
        let root = root_a.expect("size within the tree");
        check_record(p, a, &root, b, &leaf(b)).expect("honest inclusion proof verifies");
        assert_eq!(tree.read_node(0, b).ok(), Some(leaf(b)));
    }
    let cand = candidate(honest.as_ref().ok(), flags, rest);
    let root = root_a.unwrap_or(outside);
    if check_record(&cand, a, &root, b, &leaf(b)).is_ok() {
        assert_eq!(
            Some(&cand),
            honest.as_ref().ok(),
            "a forged inclusion proof verified"
        );
    }

    // Consistency of the tree of size b with the tree of size a.
    let honest = prove_tree(a, b, &tree);
    if b >= 1 && b <= a && a <= n {
        let p = honest.as_ref().expect("a valid query is provable");
        let (ra, rb) = (root_a.unwrap(), root_b.unwrap());
        check_tree(p, a, &ra, b, &rb).expect("honest consistency proof verifies");
    }
    let cand = candidate(honest.as_ref().ok(), flags, rest);
    let old_root = root_b.unwrap_or(outside);
    if check_tree(&cand, a, &root, b, &old_root).is_ok() {
        assert_eq!(
            Some(&cand),
            honest.as_ref().ok(),
            "a forged consistency proof verified"
        );
    }
});
