//! Benchmarks of the hot paths of appending to a tiled log: hashing entries,
//! building the tree, and encoding entry bundles.

use std::hint::black_box;

use aiaudit_tlog::{encode_entry_bundle, node_hash, record_hash, Hash, TreeBuilder};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench_record_hash(c: &mut Criterion) {
    let entry = vec![0x5au8; 1024];
    let mut g = c.benchmark_group("record_hash");
    g.throughput(Throughput::Bytes(entry.len() as u64));
    g.bench_function("1KiB", |b| b.iter(|| record_hash(black_box(&entry))));
    g.finish();
}

/// The crate's pick (docs/performance.md, "Picking SHA-256 by the CPU")
/// against each implementation on its own, on a leaf and an interior node.
fn bench_sha256_pick(c: &mut Criterion) {
    use sha2::Digest;
    let entry = vec![0x5au8; 860];
    let (l, r) = ([1u8; 32], [2u8; 32]);
    let ring = |parts: &[&[u8]]| {
        let mut c = ring::digest::Context::new(&ring::digest::SHA256);
        parts.iter().for_each(|p| c.update(p));
        c.finish()
    };
    let sha2 = |parts: &[&[u8]]| {
        let mut c = sha2::Sha256::new();
        parts.iter().for_each(|p| c.update(p));
        c.finalize()
    };
    let mut g = c.benchmark_group("sha256_pick");
    g.bench_function("leaf_860B/picked", |b| {
        b.iter(|| record_hash(black_box(&entry)))
    });
    g.bench_function("leaf_860B/ring", |b| {
        b.iter(|| ring(&[&[0], black_box(&entry)]))
    });
    g.bench_function("leaf_860B/sha2", |b| {
        b.iter(|| sha2(&[&[0], black_box(&entry)]))
    });
    g.bench_function("node_65B/picked", |b| {
        b.iter(|| node_hash(black_box(&l), &r))
    });
    g.bench_function("node_65B/ring", |b| {
        b.iter(|| ring(&[&[1], black_box(&l), &r]))
    });
    g.bench_function("node_65B/sha2", |b| {
        b.iter(|| sha2(&[&[1], black_box(&l), &r]))
    });
    g.finish();
}

fn bench_tree_builder(c: &mut Criterion) {
    const LEAVES: u64 = 100_000;
    let leaves: Vec<Hash> = (0..LEAVES).map(|i| record_hash(&i.to_be_bytes())).collect();
    let mut g = c.benchmark_group("tree_builder");
    g.throughput(Throughput::Elements(LEAVES));
    g.sample_size(20);
    g.bench_function("push_100k", |b| {
        b.iter(|| {
            let mut tb = TreeBuilder::new();
            let mut nodes = 0u64;
            for leaf in &leaves {
                // Count the callbacks so the node reporting is not optimized away.
                tb.push(*leaf, |_, _, _| nodes += 1);
            }
            black_box(nodes);
            tb.root()
        })
    });
    g.finish();
}

fn bench_entry_bundle(c: &mut Criterion) {
    let entries: Vec<Vec<u8>> = (0..256u32).map(|i| vec![(i % 251) as u8; 1024]).collect();
    let mut g = c.benchmark_group("entry_bundle");
    g.throughput(Throughput::Bytes(256 * 1024));
    g.bench_function("encode_256x1KiB", |b| {
        b.iter(|| encode_entry_bundle(black_box(&entries).iter().map(Vec::as_slice)))
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_record_hash,
    bench_sha256_pick,
    bench_tree_builder,
    bench_entry_bundle
);
criterion_main!(benches);
