//! `aiaudit bench`: a closed-loop load generator. `concurrency` clients each
//! send one batch at a time and wait for its acknowledgement; every event's
//! acknowledgement latency is its request's round trip. A batch the ledger
//! sheds (503 or 429 with `Retry-After`) is sent again, after the
//! `Retry-After` (stretched by up to half, as the SDK does) unless
//! `--ignore-retry-after`; answers are counted by kind, so an overload run
//! shows whether every answer was an acknowledgement or a fast refusal.

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
    /// Run for this many seconds instead of stopping after --events.
    #[arg(long)]
    duration: Option<u64>,
    /// Leave requests sent in the first SECS seconds out of the latency
    /// figures (they are still counted): the steady state after a burst.
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// Send a shed batch again at once instead of after its Retry-After
    /// (a client that ignores the ledger's advice).
    #[arg(long)]
    ignore_retry_after: bool,
    /// What fills each event to --size: `prose`, distinct text of
    /// pseudo-words in every event of a batch (compresses about as English
    /// does); `ai`, AI events as an assistant logs them (prompts and answers
    /// in English composed from a fixed corpus, varied users, traces,
    /// models, token counts and times; the wire-size figures); or `pad`, one
    /// repeated letter (compresses to almost nothing; the content of earlier
    /// measurements).
    #[arg(long, default_value = "prose", value_parser = ["prose", "ai", "pad"])]
    content: String,
    /// Request bodies in this Content-Encoding: none, zstd or gzip. The
    /// bodies are made and compressed before the clock starts (so the
    /// figure is the ledger's, not the load generator's), which needs
    /// --events rather than --duration.
    #[arg(long, default_value = "none", value_parser = ["none", "zstd", "gzip"])]
    compress: String,
    /// Which data subject each event names: `none`, or `distinct`, a new
    /// subject per event (each gets a key of its own: the load of an AI
    /// assistant with millions of users).
    #[arg(long, default_value = "none", value_parser = ["none", "distinct"])]
    subjects: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Send nothing: print the --events events as NDJSON (fresh ids), to
    /// load another emitter with the same events (the slow-link figures).
    #[arg(long)]
    dump: bool,
    /// No ledger: send the same events, batch for batch and over as many
    /// connections, as plain batched INSERTs into this PostgreSQL (one
    /// multi-row INSERT per batch into `aiaudit_bench_events`, a UUID
    /// primary key and the event as jsonb, committed as PostgreSQL commits
    /// by default): the baseline a ledger's figure is compared with
    /// (docs/performance.md). `sslmode=require` in the URL for TLS.
    #[arg(long, value_name = "URL", conflicts_with_all = ["dump", "compress", "ignore_retry_after"])]
    insert_into_postgres: Option<String>,
}

/// A batch body with placeholder ids, and where each id's 36 bytes sit, so
/// that a request costs a copy and fresh UUIDv7s rather than JSON work.
struct Template {
    body: Vec<u8>,
    /// Where each event's JSON starts and ends in `body`.
    spans: Vec<(usize, usize)>,
    id_offsets: Vec<usize>,
    /// Where each event's subject sits (`--subjects distinct`): it gets the
    /// event's id, so every event names a subject never seen before.
    subject_offsets: Vec<usize>,
}

const PLACEHOLDER: &str = "00000000-0000-7000-8000-000000000000";
const SUBJECT_PLACEHOLDER: &str = "11111111-1111-7111-8111-111111111111";

/// Text of `len` bytes made of pseudo-words: 2,048 words of one to four
/// syllables, drawn with a Zipf-like skew, as model prompts and answers
/// repeat common words. `seed` makes each event's text its own.
fn prose(seed: u64, len: usize) -> String {
    const SYLLABLES: [&str; 32] = [
        "ka", "lo", "mi", "ne", "ra", "tu", "so", "vi", "de", "ba", "ge", "hu", "ya", "zo", "pi",
        "ce", "fa", "jo", "wu", "xe", "qi", "or", "an", "el", "st", "tr", "ing", "th", "ou", "ea",
        "ch", "er",
    ];
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let word = |n: u64| {
        let mut w = String::new();
        let mut x = n.wrapping_mul(0x2545_F491_4F6C_DD1D).rotate_left(17);
        for _ in 0..1 + (n % 4) {
            w.push_str(SYLLABLES[(x % 32) as usize]);
            x /= 32;
        }
        w
    };
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        let u = (next() % 1_000_000) as f64 / 1_000_000.0;
        out.push_str(&word((2048.0 * u * u * u) as u64));
        out.push(if next() % 12 == 0 { '.' } else { ' ' });
    }
    out.truncate(len);
    out
}

fn make_template(n: u64, size: usize, content: &str, subjects: bool, seed: u64) -> Template {
    let started = time::OffsetDateTime::now_utc();
    let now = started
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut rng = crate::corpus::Rng::new(seed);
    let mut body = Vec::with_capacity((n as usize) * (size + 2) + 2);
    let mut id_offsets = Vec::with_capacity(n as usize);
    let mut spans = Vec::with_capacity(n as usize);
    let mut subject_offsets = Vec::new();
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
        if subjects {
            event["subject"] = json!(SUBJECT_PLACEHOLDER);
        }
        if content == "ai" {
            // Events a few hundred milliseconds apart, as a busy assistant logs them.
            let at = started - time::Duration::milliseconds(((n - i) * 37) as i64);
            let time = at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let subject = event.get("subject").cloned();
            event = crate::corpus::ai_event(&mut rng, PLACEHOLDER, &time, size);
            if let Some(s) = subject {
                event["subject"] = s;
            }
        } else {
            let base = serde_json::to_vec(&event).unwrap_or_default().len();
            let fill = size.saturating_sub(base);
            event["attributes"]["pad"] = json!(match content {
                "pad" => "x".repeat(fill),
                // Seed 1 is the text of earlier measurements.
                _ => prose((seed - 1) * n + i + 1, fill),
            });
        }
        let text = serde_json::to_vec(&event).unwrap_or_default();
        let at = text
            .windows(PLACEHOLDER.len())
            .position(|w| w == PLACEHOLDER.as_bytes())
            .expect("the placeholder id is in the event");
        id_offsets.push(body.len() + at);
        if subjects {
            let at = text
                .windows(SUBJECT_PLACEHOLDER.len())
                .position(|w| w == SUBJECT_PLACEHOLDER.as_bytes())
                .expect("the placeholder subject is in the event");
            subject_offsets.push(body.len() + at);
        }
        spans.push((body.len(), body.len() + text.len()));
        body.extend(text);
    }
    body.push(b']');
    Template {
        body,
        spans,
        id_offsets,
        subject_offsets,
    }
}

impl Template {
    fn instantiate(&self) -> Vec<u8> {
        let mut body = self.body.clone();
        for (i, &at) in self.id_offsets.iter().enumerate() {
            let id = uuid::Uuid::now_v7();
            id.hyphenated()
                .encode_lower(&mut body[at..at + PLACEHOLDER.len()]);
            if let Some(&s) = self.subject_offsets.get(i) {
                id.hyphenated()
                    .encode_lower(&mut body[s..s + SUBJECT_PLACEHOLDER.len()]);
            }
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
    if args.dump {
        return dump(&args);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.insert_into_postgres.clone() {
        Some(url) => rt.block_on(insert_baseline(args, url)),
        None => rt.block_on(bench(args)),
    }
}

/// `--dump`: the events as NDJSON on stdout, batch by batch.
fn dump(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let subjects = args.subjects == "distinct";
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut left = args.events;
    let mut seed = 1;
    while left > 0 {
        // Every batch its own text: nothing repeats across batches.
        let template = make_template(args.batch, args.size, &args.content, subjects, seed);
        seed += 1;
        let body = template.instantiate();
        let events: Vec<serde_json::Value> = serde_json::from_slice(&body)?;
        for e in events.iter().take(left as usize) {
            serde_json::to_writer(&mut out, e)?;
            out.write_all(b"\n")?;
        }
        left = left.saturating_sub(args.batch);
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The template of a full batch, and of the last one (shorter when
/// --events is not a multiple of --batch and the run is not `timed`).
fn templates(args: &BenchArgs, timed: bool) -> (Arc<Template>, Arc<Template>) {
    let subjects = args.subjects == "distinct";
    let full = make_template(args.batch, args.size, &args.content, subjects, 1);
    let last = args.events % args.batch;
    let n = if last == 0 || timed { args.batch } else { last };
    let tail = make_template(n, args.size, &args.content, subjects, 2);
    (Arc::new(full), Arc::new(tail))
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    acked_batches: u64,
    /// Round trips of acknowledged batches (after the warm-up), in ms.
    acked: Vec<f64>,
    /// Round trips of shed batches (503 or 429), in ms.
    shed: Vec<f64>,
    shed_503: u64,
    shed_429: u64,
    /// Sheds without a Retry-After header.
    shed_without_retry_after: u64,
    /// Any other HTTP status.
    other_status: u64,
    /// No answer at all: timeouts, resets, refused connections.
    transport_errors: u64,
}

async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let client = crate::async_client(args.token.as_deref(), args.concurrency)?;
    let urls: Vec<String> = args
        .urls
        .iter()
        .map(|u| format!("{}/v1/events", u.trim_end_matches('/')))
        .collect();
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs(s));
    let batches = if deadline.is_some() {
        u64::MAX
    } else {
        args.events.div_ceil(args.batch)
    };
    let (full, tail) = templates(&args, deadline.is_some());
    // Compressed bodies, made before the clock starts.
    let coding = match args.compress.as_str() {
        "none" => None,
        other => Some(other.to_string()),
    };
    let made: Arc<Vec<Vec<u8>>> = Arc::new(match &coding {
        None => Vec::new(),
        Some(_) if deadline.is_some() => bail!("--compress needs --events, not --duration"),
        Some(c) => (0..batches)
            .map(|b| {
                let body = if b + 1 == batches {
                    tail.instantiate()
                } else {
                    full.instantiate()
                };
                compress(c, &body)
            })
            .collect::<anyhow::Result<_>>()?,
    });
    let json_bytes = Arc::new(AtomicU64::new(0));
    let wire_bytes = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let interval = if args.rate > 0 {
        Some(Duration::from_secs_f64(
            args.batch as f64 / args.rate as f64,
        ))
    } else {
        None
    };
    let honour_retry_after = !args.ignore_retry_after;
    let measured_from = started + Duration::from_secs(args.warmup);
    let mut tasks = Vec::new();
    for c in 0..args.concurrency {
        let (client, url, full, tail, next) = (
            client.clone(),
            urls[c % urls.len()].clone(),
            full.clone(),
            tail.clone(),
            next.clone(),
        );
        let (made, coding, json_bytes, wire_bytes) = (
            made.clone(),
            coding.clone(),
            json_bytes.clone(),
            wire_bytes.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            'batches: loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if let Some(iv) = interval {
                    let due = started + iv.mul_f64(b as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let plain_len = if b + 1 == batches {
                    tail.body.len()
                } else {
                    full.body.len()
                };
                let body = match made.get(b as usize) {
                    Some(made) => made.clone(),
                    None if b + 1 == batches => tail.instantiate(),
                    None => full.instantiate(),
                };
                // The same batch until it is acknowledged (or fails for good).
                loop {
                    let t = Instant::now();
                    json_bytes.fetch_add(plain_len as u64, Ordering::Relaxed);
                    wire_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    let mut req = client.post(&url).header("content-type", "application/json");
                    if let Some(c) = &coding {
                        req = req.header("content-encoding", c.as_str());
                    }
                    let resp = req.body(body.clone()).send().await;
                    let Ok(resp) = resp else {
                        seen.transport_errors += 1;
                        continue 'batches;
                    };
                    let status = resp.status().as_u16();
                    let after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    if resp.bytes().await.is_err() {
                        seen.transport_errors += 1;
                        continue 'batches;
                    }
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    let timed = t >= measured_from;
                    match status {
                        200..=299 => {
                            seen.acked_batches += 1;
                            if timed {
                                seen.acked.push(ms);
                            }
                            continue 'batches;
                        }
                        503 | 429 => {
                            if timed {
                                seen.shed.push(ms);
                            }
                            if status == 503 {
                                seen.shed_503 += 1;
                            } else {
                                seen.shed_429 += 1;
                            }
                            if after.is_none() {
                                seen.shed_without_retry_after += 1;
                            }
                            if deadline.is_some_and(|d| Instant::now() >= d) {
                                break 'batches;
                            }
                            if honour_retry_after {
                                let wait = Duration::from_secs(after.unwrap_or(1))
                                    .mul_f64(1.0 + 0.5 * rand_fraction());
                                // A timed run ends on time, not after a client's last wait.
                                let until = deadline.map_or(Instant::now() + wait, |d| {
                                    d.min(Instant::now() + wait)
                                });
                                tokio::time::sleep_until(until.into()).await;
                            }
                        }
                        _ => {
                            seen.other_status += 1;
                            continue 'batches;
                        }
                    }
                }
            }
            seen
        }));
    }
    let mut all = Seen::default();
    for t in tasks {
        let s = t.await.context("bench client")?;
        all.acked_batches += s.acked_batches;
        all.acked.extend(s.acked);
        all.shed.extend(s.shed);
        all.shed_503 += s.shed_503;
        all.shed_429 += s.shed_429;
        all.shed_without_retry_after += s.shed_without_retry_after;
        all.other_status += s.other_status;
        all.transport_errors += s.transport_errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.acked.sort_by(|a, b| a.total_cmp(b));
    all.shed.sort_by(|a, b| a.total_cmp(b));
    let acked_batches = all.acked_batches;
    let acked_events = if deadline.is_some() {
        acked_batches * args.batch
    } else {
        (acked_batches * args.batch).min(args.events)
    };
    let eps = acked_events as f64 / elapsed;
    let (p50, p99, max) = (
        percentile(&all.acked, 50.0),
        percentile(&all.acked, 99.0),
        all.acked.last().copied().unwrap_or(0.0),
    );
    let shed_p99 = percentile(&all.shed, 99.0);
    let failed = all.other_status + all.transport_errors;
    let (json_total, wire_total) = (
        json_bytes.load(Ordering::Relaxed),
        wire_bytes.load(Ordering::Relaxed),
    );
    let wire_ratio = wire_total as f64 / json_total.max(1) as f64;
    if args.json {
        println!(
            "{}",
            json!({
                "events_per_sec": eps, "p50_ms": p50, "p99_ms": p99, "max_ms": max,
                "events": acked_events, "failed_requests": failed, "seconds": elapsed,
                "batch": args.batch, "concurrency": args.concurrency, "size": args.size, "content": args.content,
                "compress": args.compress, "json_bytes": json_total, "wire_bytes": wire_total, "wire_ratio": wire_ratio,
                "warmup_seconds": args.warmup,
                "shed_503": all.shed_503, "shed_429": all.shed_429, "shed_p99_ms": shed_p99,
                "shed_without_retry_after": all.shed_without_retry_after,
                "other_status": all.other_status, "transport_errors": all.transport_errors,
            })
        );
    } else {
        println!(
            "{acked_events} events in {elapsed:.2} s: {eps:.0} events/s; ack latency p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms; \
             shed {} (503) + {} (429), p99 {shed_p99:.2} ms, {} without Retry-After; \
             {} other statuses, {} transport errors; {wire_total} bytes sent for {json_total} of JSON ({:.1} %, {})",
            all.shed_503, all.shed_429, all.shed_without_retry_after, all.other_status, all.transport_errors,
            wire_ratio * 100.0, args.compress
        );
    }
    Ok(if failed == 0 && all.shed_without_retry_after == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The table `--insert-into-postgres` fills: what an application that keeps
/// its events in PostgreSQL, with no tamper evidence, would have.
const BASELINE_TABLE: &str = "CREATE TABLE IF NOT EXISTS aiaudit_bench_events \
     (id uuid PRIMARY KEY, body jsonb NOT NULL)";

/// One INSERT of `n` rows, every value sent as text and cast by the server.
fn insert_statement(n: usize) -> String {
    let mut sql = String::from("INSERT INTO aiaudit_bench_events (id, body) VALUES ");
    for i in 0..n {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&format!(
            "(${}::text::uuid, ${}::text::jsonb)",
            2 * i + 1,
            2 * i + 2
        ));
    }
    sql
}

/// `--insert-into-postgres`: the same closed loop as [`bench`], each batch
/// one multi-row INSERT on a connection of its own client.
async fn insert_baseline(args: BenchArgs, url: String) -> anyhow::Result<ExitCode> {
    if args.duration.is_some() || args.rate > 0 || args.warmup > 0 {
        bail!("--insert-into-postgres runs --events as fast as PostgreSQL commits (no --duration, --rate or --warmup)");
    }
    // Two parameters a row, and a statement takes at most 65,535.
    if args.batch > 32_767 {
        bail!("--insert-into-postgres takes at most 32767 events per --batch");
    }
    let (config, tls) = aiaudit_store::connector(&url, None)?;
    let batches = args.events.div_ceil(args.batch);
    let (full, tail) = templates(&args, false);
    let mut clients = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let (client, connection) = config
            .connect(tls.clone())
            .await
            .context("connecting to PostgreSQL")?;
        tokio::spawn(connection);
        clients.push(client);
    }
    clients[0].batch_execute(BASELINE_TABLE).await?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in clients {
        let (full, tail, next) = (full.clone(), tail.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let whole = client.prepare(&insert_statement(full.spans.len())).await?;
            let short = client.prepare(&insert_statement(tail.spans.len())).await?;
            let mut acked = Vec::new();
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    break;
                }
                let (template, statement) = if b + 1 == batches {
                    (&tail, &short)
                } else {
                    (&full, &whole)
                };
                let body = template.instantiate();
                let text = std::str::from_utf8(&body)?;
                let mut values: Vec<&str> = Vec::with_capacity(2 * template.spans.len());
                for (&(from, to), &at) in template.spans.iter().zip(&template.id_offsets) {
                    values.push(&text[at..at + PLACEHOLDER.len()]);
                    values.push(&text[from..to]);
                }
                let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
                    .iter()
                    .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                let t = Instant::now();
                let rows = client.execute(statement, &params).await?;
                if rows != template.spans.len() as u64 {
                    bail!("an INSERT of {} rows stored {rows}", template.spans.len());
                }
                acked.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(acked)
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.context("baseline client")??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    acked.sort_by(|a, b| a.total_cmp(b));
    let events = args.events;
    let eps = events as f64 / elapsed;
    let (p50, p99, max) = (
        percentile(&acked, 50.0),
        percentile(&acked, 99.0),
        acked.last().copied().unwrap_or(0.0),
    );
    if args.json {
        println!(
            "{}",
            json!({
                "target": "postgres-inserts", "events_per_sec": eps, "p50_ms": p50, "p99_ms": p99,
                "max_ms": max, "events": events, "seconds": elapsed, "batch": args.batch,
                "concurrency": args.concurrency, "size": args.size, "content": args.content,
            })
        );
    } else {
        println!(
            "{events} events as plain batched INSERTs in {elapsed:.2} s: {eps:.0} events/s; \
             commit latency p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `body` in the Content-Encoding `coding` (zstd at its default level 3,
/// gzip at the default level 6: what the SDK and a browser send).
fn compress(coding: &str, body: &[u8]) -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    Ok(match coding {
        "zstd" => zstd::bulk::compress(body, 3)?,
        _ => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(body)?;
            gz.finish()?
        }
    })
}

/// A fraction in [0, 1) for jitter (not for anything secret).
fn rand_fraction() -> f64 {
    // The low bits of a UUIDv7 are random.
    (uuid::Uuid::now_v7().as_u128() % 1_000_000) as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiaudit_policy::{Engine, Policies};
    use std::sync::Arc;

    /// `aiaudit bench` under the shipped example policy: the README runs
    /// it, and a violation per event would drown a real one.
    #[test]
    fn bench_events_break_no_rule_of_the_example_policy() {
        let example = include_str!("../../../deploy/policies/example.toml");
        for content in ["prose", "pad", "ai"] {
            let mut engine = Engine::new(Arc::new(Policies::parse(example).unwrap()));
            let body = make_template(20, 1024, content, true, 1).instantiate();
            let events: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
            assert_eq!(events.len(), 20);
            let fired: Vec<String> = events
                .iter()
                .enumerate()
                .flat_map(|(i, e)| engine.observe(e, i as u64, 0))
                .map(|v| v.rule)
                .collect();
            assert!(fired.is_empty(), "{content}: {fired:?}");
        }
    }
}
