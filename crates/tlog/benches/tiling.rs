//! Benchmarks of the hot paths of appending to a tiled log: hashing entries,
//! building the tree, and encoding entry bundles.

use std::hint::black_box;

use aiaudit_tlog::{encode_entry_bundle, record_hash, Hash, TreeBuilder};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench_record_hash(c: &mut Criterion) {
    let entry = vec![0x5au8; 1024];
    let mut g = c.benchmark_group("record_hash");
    g.throughput(Throughput::Bytes(entry.len() as u64));
    g.bench_function("1KiB", |b| b.iter(|| record_hash(black_box(&entry))));
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
    bench_tree_builder,
    bench_entry_bundle
);
criterion_main!(benches);
