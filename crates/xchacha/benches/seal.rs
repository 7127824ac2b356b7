//! Sealing a wrapped key (32 bytes) and an event (1 KiB) with this crate
//! and with the `chacha20poly1305` crate it replaced (docs/performance.md):
//!
//!   cargo bench -p aiaudit-xchacha
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn seal(c: &mut Criterion) {
    let (key, nonce, aad) = ([7u8; 32], [9u8; 24], [1u8; 48]);
    for size in [32usize, 1024] {
        let msg = vec![3u8; size];
        c.bench_function(&format!("aiaudit_xchacha {size} B"), |b| {
            b.iter(|| {
                let mut buf = msg.clone();
                aiaudit_xchacha::seal_in_place(&key, &nonce, &aad, black_box(&mut buf)).unwrap()
            })
        });
        c.bench_function(&format!("chacha20poly1305 {size} B"), |b| {
            b.iter(|| {
                let mut buf = msg.clone();
                XChaCha20Poly1305::new((&key).into())
                    .encrypt_in_place_detached(
                        XNonce::from_slice(&nonce),
                        &aad,
                        black_box(&mut buf),
                    )
                    .unwrap()
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(3));
    targets = seal
}
criterion_main!(benches);
