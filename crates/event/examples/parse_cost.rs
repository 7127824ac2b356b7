//! What parsing a batch into `serde_json::Value`s costs, against the least
//! any JSON parser must do (serde_json checking the same bytes without
//! building anything), and what the canonical writer then adds: the bound
//! on what parsing "straight into the canonical form" could save
//! (docs/performance.md, issue #16's closing status).
//!
//! ```sh
//! aiaudit bench --dump --events 100 --batch 100 --size 1024 --content prose > /tmp/prose.ndjson
//! cargo run --release -p aiaudit-event --example parse_cost -- /tmp/prose.ndjson
//! ```
//!
//! Each file is NDJSON, one event per line; the lines become one JSON array,
//! parsed as the ledger parses a request body. Times are per event.

use std::time::Instant;

// The allocator the ledger runs with (crates/cli/src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 3;
const REPEAT: usize = 2000;

fn per_event(started: Instant, events: usize) -> f64 {
    started.elapsed().as_secs_f64() * 1e6 / (REPEAT * events) as f64
}

fn main() {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: parse_cost <events.ndjson>…");
        std::process::exit(2);
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let body = format!("[{}]", lines.join(","));
        let body = body.as_bytes();
        let n = lines.len();
        let events = aiaudit_event::bounded::events(body, n).expect("a batch of events");
        for round in 1..=ROUNDS {
            let t = Instant::now();
            for _ in 0..REPEAT {
                std::hint::black_box(aiaudit_event::bounded::events(body, n).ok());
            }
            let values = per_event(t, n);
            let t = Instant::now();
            for _ in 0..REPEAT {
                let checked: Result<serde::de::IgnoredAny, _> = serde_json::from_slice(body);
                std::hint::black_box(checked.ok());
            }
            let scan = per_event(t, n);
            let t = Instant::now();
            for _ in 0..REPEAT {
                for e in &events {
                    std::hint::black_box(aiaudit_event::canonical_event(e));
                }
            }
            let canonical = per_event(t, n);
            println!(
                "{file} ({n} events, {} bytes) round {round}: into values (built and freed) {values:.2} µs, \
                 checked only {scan:.2} µs, canonical form of the values {canonical:.2} µs",
                body.len()
            );
        }
    }
}
