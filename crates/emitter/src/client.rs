//! The emitter: `emit` hands an event to a bounded in-memory queue and
//! returns; an intake thread batches events by size and time and writes each
//! batch durably to the spool (when there is one); a delivery thread sends
//! spooled batches to the ledger in order, retrying with exponential backoff
//! and jitter, and removes them only once the ledger has acknowledged them.
//! Delivery is at least once; the ledger's deduplication by `id` makes each
//! event land exactly once.

use crate::spool::{Spool, SpoolError};
pub use aiaudit_event::signature::SignatureFormat;
use serde_json::Value;
use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What `emit` does when the queue (or the spool) is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// Fail closed: the caller waits until there is room.
    Block,
    /// Drop the event, count it (`Stats::dropped`) and log it.
    Drop,
}

#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error("the emitter's queue is full; the event was dropped")]
    QueueFull,
    #[error("the emitter is closed")]
    Closed,
    #[error("the spool cannot take the batch: {0}")]
    Spool(#[from] SpoolError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("timed out with {0} event batch(es) not yet delivered")]
    Undelivered(u64),
    /// The emitter signs in format v2 (RFC 8785) and the event holds an
    /// integer that no double holds; nothing was queued.
    #[error("event {index} cannot be signed: {error}")]
    Unsignable {
        index: usize,
        error: aiaudit_event::JcsError,
    },
}

/// Counters since the emitter was built.
#[derive(Debug, Default)]
pub struct Stats {
    pub emitted: AtomicU64,
    /// Events written to the spool (or, without a spool, to the in-memory backlog).
    pub queued: AtomicU64,
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
    /// Events the ledger refused as invalid (written to `rejected.ndjson` in the spool directory).
    pub rejected: AtomicU64,
    pub retries: AtomicU64,
    /// Delivered events the ledger already held: sent again because an
    /// earlier answer was lost (deduplicated by id, logged once).
    pub duplicates: AtomicU64,
}

/// Configures an [`Emitter`]. `endpoint` is required.
#[derive(Debug, Clone)]
pub struct EmitterBuilder {
    endpoint: Option<String>,
    token: Option<String>,
    spool_dir: Option<PathBuf>,
    spool_max_bytes: u64,
    batch_size: usize,
    batch_interval: Duration,
    queue_capacity: usize,
    full_policy: FullPolicy,
    request_max_bytes: usize,
    request_timeout: Duration,
    max_backoff: Duration,
    signer: Option<Arc<aiaudit_tlog::Signer>>,
    signature_format: SignatureFormat,
    ca_cert_pem: Option<Vec<u8>>,
}

impl Default for EmitterBuilder {
    fn default() -> Self {
        EmitterBuilder {
            endpoint: None,
            token: None,
            spool_dir: None,
            spool_max_bytes: 1 << 30,
            batch_size: 500,
            batch_interval: Duration::from_millis(200),
            queue_capacity: 100_000,
            full_policy: FullPolicy::Block,
            request_max_bytes: 1 << 20,
            request_timeout: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30),
            signer: None,
            signature_format: SignatureFormat::V2,
            ca_cert_pem: None,
        }
    }
}

impl EmitterBuilder {
    /// Base URL of the ledger (or of a local agent), e.g. `http://127.0.0.1:7381`.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }
    /// Bearer token sent with every request.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
    /// Directory of the durable spool. Without one, batches wait in memory
    /// and are lost if the process dies before delivering them.
    pub fn spool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spool_dir = Some(dir.into());
        self
    }
    /// Most bytes the spool may hold on disk (default 1 GiB).
    pub fn spool_max_bytes(mut self, bytes: u64) -> Self {
        self.spool_max_bytes = bytes;
        self
    }
    /// Events per batch (default 500).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
    /// Longest an event waits for its batch to fill (default 200 ms).
    pub fn batch_interval(mut self, d: Duration) -> Self {
        self.batch_interval = d;
        self
    }
    /// Events the in-memory queue holds before `emit` blocks or drops (default 100,000).
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }
    pub fn full_policy(mut self, p: FullPolicy) -> Self {
        self.full_policy = p;
        self
    }
    /// Signs every request with this emitter key (its name is the emitter's
    /// registered name); the ledger then stores a proof of origin with each event.
    pub fn signing_key(mut self, signer: aiaudit_tlog::Signer) -> Self {
        self.signer = Some(Arc::new(signer));
        self
    }
    /// The batch-signature format: v2 (RFC 8785, the default) or v1 for a
    /// ledger older than v2 (docs/format.md, "Emitter batch signatures").
    pub fn signature_format(mut self, format: SignatureFormat) -> Self {
        self.signature_format = format;
        self
    }
    /// Trusts this PEM certificate (a private CA or a self-signed ledger) for
    /// `https://` endpoints, besides the usual roots.
    pub fn ca_cert_pem(mut self, pem: Vec<u8>) -> Self {
        self.ca_cert_pem = Some(pem);
        self
    }
    /// Longest backoff between delivery attempts (default 30 s).
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    pub fn build(self) -> Result<Emitter, EmitError> {
        let endpoint = self
            .endpoint
            .clone()
            .ok_or_else(|| EmitError::Config("an endpoint is required".into()))?;
        let backlog: Box<dyn Backlog> = match &self.spool_dir {
            Some(dir) => Box::new(Spool::open(dir, self.spool_max_bytes)?),
            None => Box::new(MemoryBacklog {
                records: VecDeque::new(),
                bytes: 0,
                max_bytes: self.spool_max_bytes,
            }),
        };
        let shared = Arc::new(Shared {
            backlog: Mutex::new(backlog),
            more: Condvar::new(),
            stats: Stats::default(),
            closing: AtomicBool::new(false),
            spool_dir: self.spool_dir.clone(),
        });
        let (tx, rx) = mpsc::sync_channel(self.queue_capacity);
        let intake = {
            let (shared, config) = (shared.clone(), self.clone());
            std::thread::Builder::new()
                .name("aiaudit-emitter-intake".into())
                .spawn(move || intake_loop(rx, &shared, &config))
                .map_err(|e| EmitError::Config(format!("spawning the intake thread: {e}")))?
        };
        let delivery = {
            let (shared, config) = (shared.clone(), self.clone());
            let url = format!("{}/v1/events", endpoint.trim_end_matches('/'));
            std::thread::Builder::new()
                .name("aiaudit-emitter-delivery".into())
                .spawn(move || delivery_loop(&url, &shared, &config))
                .map_err(|e| EmitError::Config(format!("spawning the delivery thread: {e}")))?
        };
        Ok(Emitter {
            tx: Some(tx),
            shared,
            policy: self.full_policy,
            signs_v2: self.signer.is_some() && self.signature_format == SignatureFormat::V2,
            intake: Some(intake),
            delivery: Some(delivery),
        })
    }
}

/// Sends audit events to the ledger, durably and in order. See the module docs.
pub struct Emitter {
    tx: Option<SyncSender<Msg>>,
    shared: Arc<Shared>,
    policy: FullPolicy,
    /// Events must be representable in RFC 8785 before they are queued.
    signs_v2: bool,
    intake: Option<JoinHandle<()>>,
    delivery: Option<JoinHandle<()>>,
}

enum Msg {
    Event(Value),
    /// Seal the current batch into the backlog, then answer.
    Flush(SyncSender<()>),
    /// Write these events to the backlog as one batch, durably, then answer.
    Durable(Vec<Value>, SyncSender<Result<(), EmitError>>),
}

impl Emitter {
    pub fn builder() -> EmitterBuilder {
        EmitterBuilder::default()
    }

    /// Queues one event. Never waits on the network; with [`FullPolicy::Block`]
    /// it waits only while the queue is full.
    pub fn emit(&self, event: Value) -> Result<(), EmitError> {
        let tx = self.tx.as_ref().ok_or(EmitError::Closed)?;
        self.check_signable(std::slice::from_ref(&event))?;
        self.shared.stats.emitted.fetch_add(1, Ordering::Relaxed);
        match self.policy {
            FullPolicy::Block => tx.send(Msg::Event(event)).map_err(|_| EmitError::Closed),
            FullPolicy::Drop => match tx.try_send(Msg::Event(event)) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(_)) => {
                    self.shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("emitter queue full: event dropped");
                    Err(EmitError::QueueFull)
                }
                Err(TrySendError::Disconnected(_)) => Err(EmitError::Closed),
            },
        }
    }

    /// Writes `events` to the spool (in records of at most 1,000 events, all
    /// in one fsync) and returns once they are durable, or an error if they
    /// could not be. For forwarders (`aiaudit agent`) that acknowledge their
    /// own clients.
    pub fn emit_durable(&self, events: Vec<Value>) -> Result<(), EmitError> {
        let tx = self.tx.as_ref().ok_or(EmitError::Closed)?;
        self.check_signable(&events)?;
        let n = events.len() as u64;
        let (reply, answer) = mpsc::sync_channel(1);
        tx.send(Msg::Durable(events, reply))
            .map_err(|_| EmitError::Closed)?;
        let result = answer.recv().map_err(|_| EmitError::Closed)?;
        if result.is_ok() {
            self.shared.stats.emitted.fetch_add(n, Ordering::Relaxed);
        }
        result
    }

    /// Refuses, before anything is queued, an event that the batch signature
    /// could not cover (format v2: an integer no double holds), which the
    /// ledger would otherwise refuse after the spool took it.
    pub fn check_signable(&self, events: &[Value]) -> Result<(), EmitError> {
        if !self.signs_v2 {
            return Ok(());
        }
        for (index, event) in events.iter().enumerate() {
            aiaudit_event::check_signable(event)
                .map_err(|error| EmitError::Unsignable { index, error })?;
        }
        Ok(())
    }

    /// Returns once every event emitted before the call is in the backlog
    /// (on disk when there is a spool).
    pub fn flush(&self) -> Result<(), EmitError> {
        let tx = self.tx.as_ref().ok_or(EmitError::Closed)?;
        let (reply, answer) = mpsc::sync_channel(1);
        tx.send(Msg::Flush(reply)).map_err(|_| EmitError::Closed)?;
        answer.recv().map_err(|_| EmitError::Closed)
    }

    /// [`Emitter::flush`], then waits up to `timeout` for the ledger to acknowledge everything.
    pub fn flush_delivered(&self, timeout: Duration) -> Result<(), EmitError> {
        self.flush()?;
        self.wait_delivered(timeout)
    }

    fn wait_delivered(&self, timeout: Duration) -> Result<(), EmitError> {
        let deadline = Instant::now() + timeout;
        let mut backlog = self.shared.backlog.lock().unwrap();
        loop {
            let pending = backlog.pending_records();
            if pending == 0 {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(EmitError::Undelivered(pending));
            }
            self.shared.more.notify_all();
            backlog = self
                .shared
                .more
                .wait_timeout(backlog, (deadline - now).min(Duration::from_millis(50)))
                .unwrap()
                .0;
        }
    }

    /// Batches not yet acknowledged by the ledger.
    pub fn pending_batches(&self) -> u64 {
        self.shared.backlog.lock().unwrap().pending_records()
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Graceful shutdown: seals the queue into the backlog, gives delivery up
    /// to `timeout`, and stops. With a spool nothing is lost: what is not yet
    /// delivered stays on disk for the next start.
    pub fn close(mut self, timeout: Duration) -> Result<(), EmitError> {
        self.shutdown(timeout)
    }

    fn shutdown(&mut self, timeout: Duration) -> Result<(), EmitError> {
        let Some(tx) = self.tx.take() else {
            return Ok(());
        };
        drop(tx);
        if let Some(h) = self.intake.take() {
            let _ = h.join();
        }
        let result = self.wait_delivered(timeout);
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.more.notify_all();
        if let Some(h) = self.delivery.take() {
            let _ = h.join();
        }
        result
    }
}

impl Drop for Emitter {
    fn drop(&mut self) {
        let _ = self.shutdown(Duration::from_secs(1));
    }
}

struct Shared {
    backlog: Mutex<Box<dyn Backlog>>,
    more: Condvar,
    stats: Stats,
    closing: AtomicBool,
    spool_dir: Option<PathBuf>,
}

/// Batches waiting for delivery: the durable spool, or memory.
trait Backlog: Send {
    fn append(&mut self, records: &[&[u8]]) -> Result<(), SpoolError>;
    fn peek(&mut self, max_records: usize, max_bytes: usize) -> Result<Vec<Vec<u8>>, SpoolError>;
    fn ack(&mut self, n: usize) -> Result<(), SpoolError>;
    fn pending_records(&self) -> u64;
}

impl Backlog for Spool {
    fn append(&mut self, records: &[&[u8]]) -> Result<(), SpoolError> {
        Spool::append(self, records)
    }
    fn peek(&mut self, max_records: usize, max_bytes: usize) -> Result<Vec<Vec<u8>>, SpoolError> {
        Spool::peek(self, max_records, max_bytes)
    }
    fn ack(&mut self, n: usize) -> Result<(), SpoolError> {
        Spool::ack(self, n)
    }
    fn pending_records(&self) -> u64 {
        Spool::pending_records(self)
    }
}

/// Without a spool: the same queue in memory, bounded like the spool.
struct MemoryBacklog {
    records: VecDeque<Vec<u8>>,
    bytes: u64,
    max_bytes: u64,
}

impl Backlog for MemoryBacklog {
    fn append(&mut self, records: &[&[u8]]) -> Result<(), SpoolError> {
        let add: u64 = records.iter().map(|r| r.len() as u64).sum();
        if self.bytes + add > self.max_bytes {
            return Err(SpoolError::Full {
                used: self.bytes,
                limit: self.max_bytes,
            });
        }
        self.bytes += add;
        self.records.extend(records.iter().map(|r| r.to_vec()));
        Ok(())
    }
    fn peek(&mut self, max_records: usize, max_bytes: usize) -> Result<Vec<Vec<u8>>, SpoolError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for r in self.records.iter().take(max_records) {
            if !out.is_empty() && bytes + r.len() > max_bytes {
                break;
            }
            bytes += r.len();
            out.push(r.clone());
        }
        Ok(out)
    }
    fn ack(&mut self, n: usize) -> Result<(), SpoolError> {
        for r in self.records.drain(..n.min(self.records.len())) {
            self.bytes -= r.len() as u64;
        }
        Ok(())
    }
    fn pending_records(&self) -> u64 {
        self.records.len() as u64
    }
}

/// One batch as NDJSON: one event per line.
fn encode_batch(events: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 512);
    for e in events {
        if serde_json::to_writer(&mut out, e).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

fn count_lines(record: &[u8]) -> u64 {
    record.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Events to make durable as one batch, and where to say whether it worked.
type DurableRequest = (Vec<Value>, SyncSender<Result<(), EmitError>>);

fn intake_loop(rx: Receiver<Msg>, shared: &Shared, config: &EmitterBuilder) {
    let mut batch: Vec<Value> = Vec::with_capacity(config.batch_size);
    let mut batch_started = Instant::now();
    let mut disconnected = false;
    while !disconnected {
        let wait = if batch.is_empty() {
            Duration::from_secs(3600)
        } else {
            config
                .batch_interval
                .saturating_sub(batch_started.elapsed())
        };
        let mut flushes = Vec::new();
        let mut durable: Vec<DurableRequest> = Vec::new();
        let mut take = |msg: Msg, batch: &mut Vec<Value>, durable: &mut Vec<_>| match msg {
            Msg::Event(v) => {
                if batch.is_empty() {
                    batch_started = Instant::now();
                }
                batch.push(v);
            }
            Msg::Flush(reply) => flushes.push(reply),
            Msg::Durable(events, reply) => durable.push((events, reply)),
        };
        match rx.recv_timeout(wait) {
            Ok(msg) => take(msg, &mut batch, &mut durable),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => disconnected = true,
        }
        // Take whatever else is waiting, up to a batch, so that one fsync covers it all.
        while batch.len() < config.batch_size && durable.len() < 256 {
            match rx.try_recv() {
                Ok(msg) => take(msg, &mut batch, &mut durable),
                Err(_) => break,
            }
        }
        let due = batch.len() >= config.batch_size
            || batch_started.elapsed() >= config.batch_interval
            || !flushes.is_empty()
            || !durable.is_empty()
            || disconnected;
        if !due {
            continue;
        }
        let mut records: Vec<Vec<u8>> = Vec::new();
        let mut counts = Vec::new();
        if !batch.is_empty() {
            records.push(encode_batch(&batch));
            counts.push(batch.len() as u64);
            batch.clear();
        }
        let own = records.len();
        for (events, _) in &durable {
            for part in events.chunks(RECORD_MAX_EVENTS) {
                records.push(encode_batch(part));
                counts.push(part.len() as u64);
            }
        }
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let written = loop {
            let r = shared.backlog.lock().unwrap().append(&refs);
            match r {
                Err(SpoolError::Full { .. })
                    if config.full_policy == FullPolicy::Block && durable.is_empty() =>
                {
                    // Fail closed: hold the batch (and so the queue) until delivery frees room.
                    shared.more.notify_all();
                    std::thread::sleep(Duration::from_millis(50));
                }
                r => break r,
            }
        };
        match written {
            Ok(()) => {
                let n: u64 = counts.iter().sum();
                shared.stats.queued.fetch_add(n, Ordering::Relaxed);
                shared.more.notify_all();
                for (_, reply) in durable {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) => {
                let lost: u64 = counts[..own].iter().sum();
                if lost > 0 {
                    shared.stats.dropped.fetch_add(lost, Ordering::Relaxed);
                    tracing::error!(error = %e, events = lost, "spool refused a batch: events dropped");
                }
                let msg = e.to_string();
                for (_, reply) in durable {
                    let _ = reply.send(Err(EmitError::Config(msg.clone())));
                }
            }
        }
        for reply in flushes {
            let _ = reply.send(());
        }
    }
}

/// Exponential backoff with jitter: 100 ms doubling up to `max`, each wait
/// drawn from [half, full] so that many emitters do not retry in step.
fn backoff(attempt: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(100).saturating_mul(1u32 << attempt.min(16));
    base.min(max).mul_f64(0.5 + 0.5 * jitter())
}

/// A fraction in [0, 1) that differs from emitter to emitter and call to call.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos % 1000) as f64 / 1000.0
}

/// The longest `Retry-After` honoured, whatever a server says.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How long to wait before the next attempt: the backoff, and never less
/// than the ledger's `Retry-After` stretched by up to half again, so that a
/// region's worth of spools told "1 s" do not all come back in the same
/// millisecond.
fn retry_wait(attempt: u32, max: Duration, retry_after: Option<Duration>) -> Duration {
    let own = backoff(attempt, max);
    match retry_after {
        Some(after) => own.max(after.min(MAX_RETRY_AFTER).mul_f64(1.0 + 0.5 * jitter())),
        None => own,
    }
}

/// `Retry-After` in seconds (the form the ledger sends), if any.
fn retry_after(resp: &reqwest::blocking::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

enum Sent {
    /// Logged; how many of the events the ledger already held.
    Accepted(u64),
    /// The ledger refused the batch as invalid: retrying cannot help.
    Refused(String),
    /// Not now: why, and the ledger's `Retry-After` if it sent one.
    Retry(String, Option<Duration>),
}

/// How many events of an accepted batch the ledger already held (its
/// answer marks them `"duplicate": true`); 0 when the answer says nothing.
fn duplicates_in(resp: reqwest::blocking::Response) -> u64 {
    let Ok(body) = resp.bytes() else { return 0 };
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return 0;
    };
    answer["events"].as_array().map_or(0, |events| {
        events.iter().filter(|e| e["duplicate"] == true).count() as u64
    })
}

/// The batch signature of an NDJSON body: over each event's canonical form
/// in `format`, in order (docs/format.md, "Emitter batch signatures").
fn sign_body(signer: &aiaudit_tlog::Signer, format: SignatureFormat, body: &[u8]) -> String {
    use base64::Engine;
    let canonical: Vec<Vec<u8>> = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(|line| match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(event)) => {
                format.event_bytes(&event).unwrap_or_else(|_| line.to_vec())
            }
            // Not an event: the ledger refuses it anyway; sign the bytes as they are.
            _ => line.to_vec(),
        })
        .collect();
    base64::engine::general_purpose::STANDARD.encode(aiaudit_event::signature::sign_batch(
        signer, format, &canonical,
    ))
}

fn send(
    client: &reqwest::blocking::Client,
    url: &str,
    config: &EmitterBuilder,
    body: Vec<u8>,
) -> Sent {
    let mut req = client
        .post(url)
        .header("content-type", "application/x-ndjson");
    if let Some(signer) = &config.signer {
        req = req
            .header("aiaudit-emitter", signer.name())
            .header("aiaudit-signature-format", config.signature_format.name())
            .header(
                "aiaudit-signature",
                sign_body(signer, config.signature_format, &body),
            );
    }
    let mut req = req.body(body);
    if let Some(t) = config.token.as_deref() {
        req = req.bearer_auth(t);
    }
    match req.send() {
        Ok(resp) => {
            let status = resp.status();
            if status.is_success() {
                Sent::Accepted(duplicates_in(resp))
            } else if matches!(status.as_u16(), 400 | 403 | 413 | 415 | 422) {
                // 403: this token (or emitter key) may never write these
                // events (another tenant's, a reserved action); retrying
                // would hold the spool for ever. 401 stays retryable: a
                // token can be replaced.
                Sent::Refused(format!(
                    "HTTP {status}: {}",
                    resp.text().unwrap_or_default()
                ))
            } else {
                // 503 (the ledger at its budget, or storage trouble) and
                // 429 (this credential's share or rate): come back later.
                Sent::Retry(format!("HTTP {status}"), retry_after(&resp))
            }
        }
        Err(e) => Sent::Retry(e.to_string(), None),
    }
}

fn delivery_loop(url: &str, shared: &Shared, config: &EmitterBuilder) {
    let mut builder = reqwest::blocking::Client::builder().timeout(config.request_timeout);
    if let Some(pem) = &config.ca_cert_pem {
        match reqwest::Certificate::from_pem(pem) {
            Ok(cert) => builder = builder.add_root_certificate(cert),
            Err(e) => {
                tracing::error!(error = %e, "the CA certificate is not valid PEM; ignoring it")
            }
        }
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client; nothing will be delivered");
            return;
        }
    };
    let mut attempt: u32 = 0;
    // After a refusal, records go one at a time to find the bad one.
    let mut one_at_a_time = 0usize;
    loop {
        let records = {
            let mut backlog = shared.backlog.lock().unwrap();
            while backlog.pending_records() == 0 && !shared.closing.load(Ordering::SeqCst) {
                backlog = shared.more.wait(backlog).unwrap();
            }
            if shared.closing.load(Ordering::SeqCst) && backlog.pending_records() == 0 {
                return;
            }
            let (max, bytes) = if one_at_a_time > 0 {
                (1, config.request_max_bytes)
            } else {
                (
                    PARALLEL * RECORDS_PER_REQUEST,
                    PARALLEL * config.request_max_bytes,
                )
            };
            match backlog.peek(max, bytes) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "reading the spool failed");
                    drop(backlog);
                    std::thread::sleep(backoff(attempt, config.max_backoff));
                    continue;
                }
            }
        };
        if records.is_empty() {
            continue;
        }
        let chunks = split_requests(&records, config.request_max_bytes);
        // Requests go out side by side (the ledger works on them in parallel);
        // acknowledgements still follow spool order: only the accepted prefix is removed.
        let results: Vec<Sent> = if chunks.len() == 1 {
            vec![send(&client, url, config, chunks[0].concat())]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = chunks
                    .iter()
                    .map(|c| {
                        let client = &client;
                        scope.spawn(move || send(client, url, config, c.concat()))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Sent::Retry("sender panicked".into(), None))
                    })
                    .collect()
            })
        };
        for (chunk, result) in chunks.iter().zip(results) {
            let events: u64 = chunk.iter().map(|r| count_lines(r)).sum();
            match result {
                Sent::Accepted(duplicates) => {
                    attempt = 0;
                    shared
                        .stats
                        .duplicates
                        .fetch_add(duplicates, Ordering::Relaxed);
                    one_at_a_time = one_at_a_time.saturating_sub(chunk.len());
                    if let Err(e) = shared.backlog.lock().unwrap().ack(chunk.len()) {
                        tracing::error!(error = %e, "acknowledging spooled batches failed; they may be sent again");
                    }
                    shared.stats.delivered.fetch_add(events, Ordering::Relaxed);
                    shared.more.notify_all();
                    continue;
                }
                Sent::Refused(why) if chunk.len() > 1 => {
                    tracing::warn!(%why, "the ledger refused a request; retrying its batches one by one");
                    one_at_a_time = chunk.len();
                }
                Sent::Refused(why) => {
                    tracing::error!(%why, events, "the ledger refused a batch as invalid; set aside in rejected.ndjson");
                    set_aside(shared, chunk[0], &why);
                    one_at_a_time = one_at_a_time.saturating_sub(1);
                    let _ = shared.backlog.lock().unwrap().ack(1);
                    shared.stats.rejected.fetch_add(events, Ordering::Relaxed);
                    shared.more.notify_all();
                }
                Sent::Retry(why, after) => {
                    if shared.closing.load(Ordering::SeqCst) {
                        return;
                    }
                    shared.stats.retries.fetch_add(1, Ordering::Relaxed);
                    let wait = retry_wait(attempt, config.max_backoff, after);
                    attempt = attempt.saturating_add(1);
                    tracing::debug!(%why, ?wait, "ledger unavailable; will retry");
                    let backlog = shared.backlog.lock().unwrap();
                    let _ = shared.more.wait_timeout_while(backlog, wait, |_| {
                        !shared.closing.load(Ordering::SeqCst)
                    });
                }
            }
            // Anything after a chunk that was not accepted goes again later, in order.
            break;
        }
    }
}

/// Requests sent at once by the delivery thread.
const PARALLEL: usize = 4;
/// Events per spooled record at most. A record is sent whole, and a ledger
/// takes at most `max_batch_events` per request (10,000 by default): a
/// larger record would be refused for good.
pub const RECORD_MAX_EVENTS: usize = 1000;
/// Spooled batches per request at most.
const RECORDS_PER_REQUEST: usize = 64;

/// Groups records, in order, into request bodies of at most `max_bytes`
/// (a single larger record goes alone) and `RECORDS_PER_REQUEST` records.
fn split_requests(records: &[Vec<u8>], max_bytes: usize) -> Vec<Vec<&[u8]>> {
    let mut out: Vec<Vec<&[u8]>> = Vec::new();
    let mut bytes = 0;
    for r in records {
        let fits = out
            .last()
            .is_some_and(|c| c.len() < RECORDS_PER_REQUEST && bytes + r.len() <= max_bytes);
        if !fits {
            out.push(Vec::new());
            bytes = 0;
        }
        out.last_mut().expect("pushed above").push(r);
        bytes += r.len();
    }
    out
}

/// Keeps a refused batch where an operator can look at it, instead of retrying it forever.
fn set_aside(shared: &Shared, record: &[u8], why: &str) {
    let Some(dir) = &shared.spool_dir else { return };
    let path = dir.join("rejected.ndjson");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        writeln!(f, "{}", serde_json::json!({"refused": why}))?;
        f.write_all(record)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        tracing::error!(error = %e, path = %path.display(), "could not keep a refused batch");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_a_floor_with_jitter_and_has_a_ceiling() {
        let max = Duration::from_secs(30);
        for _ in 0..50 {
            let w = retry_wait(0, max, Some(Duration::from_secs(2)));
            assert!(
                w >= Duration::from_secs(2) && w <= Duration::from_secs(3),
                "{w:?}"
            );
            // The own backoff wins when it is longer.
            let w = retry_wait(20, max, Some(Duration::from_secs(1)));
            assert!(w >= Duration::from_secs(15), "{w:?}");
            let w = retry_wait(0, max, Some(Duration::from_secs(86_400)));
            assert!(w <= MAX_RETRY_AFTER.mul_f64(1.5), "{w:?}");
            assert!(retry_wait(0, max, None) <= Duration::from_millis(100));
        }
    }

    #[test]
    fn backoff_grows_and_stays_capped() {
        let max = Duration::from_secs(30);
        assert!(backoff(0, max) <= Duration::from_millis(100));
        assert!(backoff(0, max) >= Duration::from_millis(50));
        assert!(backoff(5, max) >= Duration::from_millis(1600));
        assert!(backoff(30, max) <= max);
    }

    #[test]
    fn batches_are_ndjson() {
        let b = encode_batch(&[
            serde_json::json!({"a": 1}),
            serde_json::json!({"b": "x\ny"}),
        ]);
        assert_eq!(b, b"{\"a\":1}\n{\"b\":\"x\\ny\"}\n");
        assert_eq!(count_lines(&b), 2);
    }

    #[test]
    fn requests_keep_spool_order_and_size_limits() {
        let records: Vec<Vec<u8>> = [5, 5, 5, 20, 1, 1].iter().map(|&n| vec![b'x'; n]).collect();
        let chunks = split_requests(&records, 10);
        let sizes: Vec<Vec<usize>> = chunks
            .iter()
            .map(|c| c.iter().map(|r| r.len()).collect())
            .collect();
        assert_eq!(sizes, vec![vec![5, 5], vec![5], vec![20], vec![1, 1]]);
        let many: Vec<Vec<u8>> = (0..130).map(|_| vec![b'y'; 1]).collect();
        let lens: Vec<usize> = split_requests(&many, 1 << 20)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(lens, vec![64, 64, 2]);
    }

    #[test]
    fn needs_an_endpoint() {
        assert!(matches!(
            Emitter::builder().build(),
            Err(EmitError::Config(_))
        ));
    }
}
