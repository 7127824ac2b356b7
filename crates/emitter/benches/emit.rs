//! What `emit` costs the caller: the time to hand one event to the queue.
//! The ledger is unreachable on purpose, so nothing but the queue is measured
//! (batches beyond the 64 MiB in-memory backlog are dropped by the intake thread);
//! the intake thread batches on the other core meanwhile.

use aiaudit_emitter::{Emitter, FullPolicy};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use std::time::{Duration, Instant};

fn emit_overhead(c: &mut Criterion) {
    let emitter = Emitter::builder()
        .endpoint("http://127.0.0.1:9")
        .queue_capacity(2_000_000)
        .spool_max_bytes(64 << 20)
        .full_policy(FullPolicy::Drop)
        .max_backoff(Duration::from_secs(60))
        .build()
        .unwrap();
    let event = json!({
        "id": "0192f3a4-6b1c-7d2e-9f00-1a2b3c4d5e6f", "time": "2026-11-27T09:14:03.120Z",
        "tenant": "acme", "source": {"name": "loan-assistant"}, "actor": {"id": "agent-7", "type": "agent"},
        "action": "model.invoke", "ai": {"gen_ai.request.model": "claude-x", "gen_ai.usage.input_tokens": 812}
    });
    c.bench_function("emit/one_event", |b| {
        b.iter_custom(|iters| {
            let events: Vec<_> = (0..iters).map(|_| event.clone()).collect();
            let start = Instant::now();
            for e in events {
                emitter.emit(e).unwrap();
            }
            let elapsed = start.elapsed();
            // Let the intake thread catch up so every sample starts with an empty queue.
            emitter.flush().unwrap();
            elapsed
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = emit_overhead
}
criterion_main!(benches);
