//! `aiaudit bench`: a closed-loop load generator. `concurrency` clients each
//! send one batch at a time and wait for its acknowledgement; every event's
//! acknowledgement latency is its request's round trip.

use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Base URL of a running ledger; repeat it to spread the clients over
    /// several nodes of one log (client i sends to URL i mod n).
    #[arg(long = "url", default_value = "http://127.0.0.1:7381")]
    urls: Vec<String>,
    /// Bearer token (an emitter token of tenant "bench", or an admin token).
    #[arg(long, env = "AIAUDIT_TOKEN")]
    token: Option<String>,
    /// Total events to send.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Events per request.
    #[arg(long, default_value_t = 100)]
    batch: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Approximate size of each event's JSON, in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Target rate in events/s (0: as fast as acknowledgements allow).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// A batch body with placeholder ids, and where each id's 36 bytes sit, so
/// that a request costs a copy and fresh UUIDv7s rather than JSON work.
struct Template {
    body: Vec<u8>,
    id_offsets: Vec<usize>,
}

const PLACEHOLDER: &str = "00000000-0000-7000-8000-000000000000";

fn make_template(n: u64, size: usize) -> Template {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut body = Vec::with_capacity((n as usize) * (size + 2) + 2);
    let mut id_offsets = Vec::with_capacity(n as usize);
    body.push(b'[');
    for i in 0..n {
        if i > 0 {
            body.push(b',');
        }
        let mut event = json!({
            "id": PLACEHOLDER,
            "time": now,
            "tenant": "bench",
            "source": {"name": "aiaudit-bench"},
            "action": "model.invoke",
            "actor": {"id": "bench", "type": "agent"},
            "attributes": {"pad": ""},
        });
        let base = serde_json::to_vec(&event).unwrap_or_default().len();
        event["attributes"]["pad"] = json!("x".repeat(size.saturating_sub(base)));
        let text = serde_json::to_vec(&event).unwrap_or_default();
        let at = text
            .windows(PLACEHOLDER.len())
            .position(|w| w == PLACEHOLDER.as_bytes())
            .expect("the placeholder id is in the event");
        id_offsets.push(body.len() + at);
        body.extend(text);
    }
    body.push(b']');
    Template { body, id_offsets }
}

impl Template {
    fn instantiate(&self) -> Vec<u8> {
        let mut body = self.body.clone();
        for &at in &self.id_offsets {
            let id = uuid::Uuid::now_v7();
            id.hyphenated()
                .encode_lower(&mut body[at..at + PLACEHOLDER.len()]);
        }
        body
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.batch == 0 || args.concurrency == 0 || args.events == 0 {
        bail!("--events, --batch and --concurrency must be at least 1");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench(args))
}

async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let client = crate::async_client(args.token.as_deref(), args.concurrency)?;
    let urls: Vec<String> = args
        .urls
        .iter()
        .map(|u| format!("{}/v1/events", u.trim_end_matches('/')))
        .collect();
    let batches = args.events.div_ceil(args.batch);
    let full = Arc::new(make_template(args.batch, args.size));
    let last = args.events % args.batch;
    let tail = Arc::new(make_template(
        if last == 0 { args.batch } else { last },
        args.size,
    ));
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let interval = if args.rate > 0 {
        Some(Duration::from_secs_f64(
            args.batch as f64 / args.rate as f64,
        ))
    } else {
        None
    };
    let mut tasks = Vec::new();
    for c in 0..args.concurrency {
        let (client, url, full, tail, next, failures) = (
            client.clone(),
            urls[c % urls.len()].clone(),
            full.clone(),
            tail.clone(),
            next.clone(),
            failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    break;
                }
                if let Some(iv) = interval {
                    let due = started + iv * b as u32;
                    tokio::time::sleep_until(due.into()).await;
                }
                let body = if b + 1 == batches {
                    tail.instantiate()
                } else {
                    full.instantiate()
                };
                let t = Instant::now();
                let resp = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let ok = matches!(&resp, Ok(r) if r.status().is_success());
                if let Ok(r) = resp {
                    let _ = r.bytes().await;
                }
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                if ok {
                    latencies.push(ms);
                } else {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.context("bench client")?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let acked_batches = latencies.len() as u64;
    let acked_events = (acked_batches * args.batch).min(args.events);
    let eps = acked_events as f64 / elapsed;
    let (p50, p99, max) = (
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(0.0),
    );
    let failed = failures.load(Ordering::Relaxed);
    if args.json {
        println!(
            "{}",
            json!({
                "events_per_sec": eps, "p50_ms": p50, "p99_ms": p99, "max_ms": max,
                "events": acked_events, "failed_requests": failed, "seconds": elapsed,
                "batch": args.batch, "concurrency": args.concurrency, "size": args.size,
            })
        );
    } else {
        println!(
            "{acked_events} events in {elapsed:.2} s: {eps:.0} events/s; ack latency p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms; {failed} failed requests"
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
