//! Measures indexing speed and first-page query latency over a large index.
//!
//! `cargo run --release -p aiaudit-index --example search_bench -- 10000000 /tmp/search-bench.sqlite`
//! builds an index of N generated events (5 tenants, 20 actors, 12 actions,
//! 6 models, 4 risk levels, 1,000 conversations, one month of times), then
//! times the first page (100 rows) of typical filtered queries and one
//! report aggregate. With a `postgres://…` URL instead of a path, the same
//! into the PostgreSQL index (`PgSearchIndex`, in that database).

use aiaudit_index::{Index, Order, Period, PgSearchIndex, Query, SearchIndex};
use serde_json::json;
use std::time::Instant;

const TENANTS: [&str; 5] = ["acme", "globex", "initech", "umbrella", "hooli"];
const ACTIONS: [&str; 12] = [
    "model.invoke",
    "tool.call",
    "agent.decision",
    "human.review",
    "human.override",
    "data.access",
    "policy.violation",
    "system.start",
    "model.embed",
    "tool.result",
    "agent.plan",
    "data.write",
];
const MODELS: [&str; 6] = [
    "claude-x",
    "claude-y",
    "gpt-z",
    "llama-4",
    "mistral-l",
    "gemini-p",
];
const RISKS: [&str; 4] = ["minimal", "low", "high", "critical"];

/// A cheap deterministic mix so fields are independent of each other.
fn mix(i: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn trace_id(i: u64) -> String {
    format!("{:032x}", mix(i) as u128 | 1)
}

fn entry(i: u64) -> Vec<u8> {
    let h = mix(i);
    let pick = |shift: u32, n: usize| ((h >> shift) as usize) % n;
    let second = i % (30 * 86_400);
    let e = json!({
        "id": format!("bench-{i}"),
        "time": format!("2026-11-{:02}T{:02}:{:02}:{:02}Z", 1 + second / 86_400, (second / 3600) % 24, (second / 60) % 60, second % 60),
        "tenant": TENANTS[pick(3, 5)],
        "source": {"name": format!("system-{}", pick(9, 8))},
        "actor": {"id": format!("agent-{}", pick(13, 20))},
        "action": ACTIONS[pick(19, 12)],
        "outcome": {"status": if pick(25, 10) == 0 { "failure" } else { "success" }},
        "risk_level": RISKS[pick(29, 4)],
        "ai": {"gen_ai.provider.name": "p", "gen_ai.request.model": MODELS[pick(33, 6)],
               "gen_ai.conversation.id": format!("conv-{}", pick(37, 1000))},
        "trace_id": trace_id(i),
    });
    aiaudit_event::prepare(e).unwrap().entry
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let path = args
        .next()
        .unwrap_or_else(|| "/tmp/search-bench.sqlite".into());
    let index = if path.starts_with("postgres://") || path.starts_with("postgresql://") {
        Index::Postgres(PgSearchIndex::open(&path).unwrap())
    } else {
        Index::File(SearchIndex::open(std::path::Path::new(&path)).unwrap())
    };
    let have = index.indexed_size().unwrap();
    if have < n {
        let started = Instant::now();
        let mut adding = std::time::Duration::ZERO;
        let mut at = have;
        while at < n {
            let count = (n - at).min(16_384);
            let entries: Vec<Vec<u8>> = (at..at + count).map(entry).collect();
            let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
            let t = Instant::now();
            index.add(at, &refs).unwrap();
            adding += t.elapsed();
            at += count;
            if at % 1_000_000 < 16_384 {
                eprintln!(
                    "{at} indexed, {:.0} events/s",
                    (at - have) as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
        println!(
            "indexed {} events in {:.1} s: {:.0} events/s (generation included); add alone: {:.1} s, {:.0} events/s",
            n - have,
            started.elapsed().as_secs_f64(),
            (n - have) as f64 / started.elapsed().as_secs_f64(),
            adding.as_secs_f64(),
            (n - have) as f64 / adding.as_secs_f64()
        );
    }
    let q = |f: &dyn Fn(&mut Query)| {
        let mut q = Query {
            limit: 100,
            order: Order::Desc,
            ..Query::default()
        };
        f(&mut q);
        q
    };
    let cases: Vec<(&str, Query)> = vec![
        ("tenant", q(&|q| q.tenant = Some("acme".into()))),
        (
            "tenant+action",
            q(&|q| {
                q.tenant = Some("acme".into());
                q.action = Some("agent.decision".into())
            }),
        ),
        (
            "tenant+model+risk",
            q(&|q| {
                q.tenant = Some("globex".into());
                q.model = Some("gpt-z".into());
                q.risk = Some("critical".into())
            }),
        ),
        (
            "tenant+actor+outcome",
            q(&|q| {
                q.tenant = Some("initech".into());
                q.actor = Some("agent-7".into());
                q.outcome = Some("failure".into())
            }),
        ),
        (
            "conversation",
            q(&|q| q.conversation_id = Some("conv-421".into())),
        ),
        (
            "tenant+time window",
            q(&|q| {
                q.tenant = Some("hooli".into());
                q.from_ms = aiaudit_index::parse_time_ms("2026-11-10T00:00:00Z");
                q.to_ms = aiaudit_index::parse_time_ms("2026-11-11T00:00:00Z")
            }),
        ),
        ("trace_id", q(&|q| q.trace_id = Some(trace_id(n / 2)))),
        (
            "auditor of 2 tenants, action",
            q(&|q| {
                q.tenants = Some(vec!["acme".into(), "umbrella".into()]);
                q.action = Some("human.override".into())
            }),
        ),
    ];
    println!("first page (100 rows) over {n} events, best and median of 9 runs:");
    for (name, query) in cases {
        let mut times: Vec<f64> = (0..9)
            .map(|_| {
                let t = Instant::now();
                let page = index.query(&query).unwrap();
                assert!(!page.rows.is_empty(), "{name}: no rows");
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!("  {name:<30} {:7.2} ms  {:7.2} ms", times[0], times[4]);
    }
    // Counting every match reads every matching row.
    let t = Instant::now();
    let n_acme = index
        .count(&q(&|q| q.tenant = Some("acme".into())))
        .unwrap();
    println!(
        "count of one tenant's events ({n_acme}): {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    // A report's aggregates: a month of one tenant (a fifth of the events).
    let month = Period {
        tenant: "acme".into(),
        from_ms: aiaudit_index::parse_time_ms("2026-11-01T00:00:00Z").unwrap(),
        to_ms: aiaudit_index::parse_time_ms("2026-12-01T00:00:00Z").unwrap(),
    };
    let t = Instant::now();
    let sources = index.sources(&month).unwrap();
    let events: u64 = sources.iter().map(|s| s.events).sum();
    println!(
        "report aggregate (events per source, one tenant, 30 days: {events} events): {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
}
