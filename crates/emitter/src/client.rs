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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
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
    /// Request bodies sent, before compression (NDJSON bytes).
    pub body_bytes: AtomicU64,
    /// Request bodies sent, as they crossed the link (after compression).
    pub wire_bytes: AtomicU64,
}

/// How request bodies are compressed (`Content-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// zstd (else gzip) when the ledger or agent says it decodes it: the
    /// emitter asks once with `OPTIONS /v1/events` before its first batch,
    /// and every answer of `POST /v1/events` says so too (`Accept-Encoding`,
    /// RFC 7694). A server that does not say (an older ledger) is sent
    /// uncompressed bodies. The default.
    Auto,
    /// Always zstd (RFC 8878); uncompressed again after a 415.
    Zstd,
    /// Always gzip; uncompressed again after a 415.
    Gzip,
    /// Never compressed.
    Off,
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
    compression: Compression,
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
            // The ledger reckons a request's memory at about 12x its body
            // (admission control); 4 requests of 256 KiB stay well inside
            // one credential's default share (half of 32-64 MiB).
            request_max_bytes: 256 << 10,
            request_timeout: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30),
            signer: None,
            signature_format: SignatureFormat::V2,
            ca_cert_pem: None,
            compression: Compression::Auto,
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
    /// How request bodies are compressed: [`Compression::Auto`] (zstd once
    /// the server advertises it) unless set.
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
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
        let mut spool_lock_fd = None;
        let backlog: Box<dyn Backlog> = match &self.spool_dir {
            Some(dir) => {
                let spool = Spool::open(dir, self.spool_max_bytes)?;
                #[cfg(unix)]
                {
                    spool_lock_fd = Some(spool.lock_fd());
                }
                Box::new(spool)
            }
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
            last_error: Mutex::new(None),
            coding: AtomicU8::new(match self.compression {
                Compression::Zstd => CODING_ZSTD,
                Compression::Gzip => CODING_GZIP,
                Compression::Auto => CODING_UNKNOWN,
                Compression::Off => CODING_IDENTITY,
            }),
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
            // Counts, not an entry per event: the answer crosses the link
            // too. A ledger older than `acks` ignores it and answers in full.
            let url = format!("{}/v1/events?acks=summary", endpoint.trim_end_matches('/'));
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
            spool_lock_fd,
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
    /// The spool's lock, for [`Emitter::abandon_after_fork`].
    #[cfg_attr(not(unix), allow(dead_code))]
    spool_lock_fd: Option<i32>,
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

    /// Queues one event if the queue has room now, without waiting; gives
    /// the event back when it is full, for the caller to [`emit`](Self::emit)
    /// after releasing what it holds (the Python binding's GIL).
    pub fn try_emit(&self, event: Value) -> Result<Option<Value>, EmitError> {
        let tx = self.tx.as_ref().ok_or(EmitError::Closed)?;
        self.check_signable(std::slice::from_ref(&event))?;
        match tx.try_send(Msg::Event(event)) {
            Ok(()) => {
                self.shared.stats.emitted.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            Err(TrySendError::Full(Msg::Event(event))) => Ok(Some(event)),
            Err(_) => Err(EmitError::Closed),
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

    /// Why the last delivery attempt failed (connection, TLS, 401, a
    /// refusal), or `None` once a later one succeeded: what an application
    /// shows its operator while events wait in the spool.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().unwrap().clone()
    }

    /// For a child process after `fork`: the emitter's threads stayed in
    /// the parent, and its spool is the parent's. This gives up the child's
    /// share of the spool's lock (so the parent can restart on its spool even
    /// while the child lives) and forgets the emitter without running its
    /// shutdown (which would wait on threads that do not exist here) or
    /// touching the spool's files. Create a new emitter with its own spool
    /// directory in the child.
    pub fn abandon_after_fork(self) {
        #[cfg(unix)]
        if let Some(fd) = self.spool_lock_fd {
            // SAFETY: the descriptor is the spool's lock file, which this
            // process never uses again (the spool is forgotten below).
            // Closing it drops only this process's reference to the lock;
            // unlocking it would also release the parent's.
            drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
        }
        std::mem::forget(self);
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
    /// See [`Emitter::last_error`].
    last_error: Mutex<Option<String>>,
    /// The request coding in use (`CODING_*`): learned from the server's
    /// `Accept-Encoding` under [`Compression::Auto`].
    coding: AtomicU8,
}

const CODING_IDENTITY: u8 = 0;
const CODING_ZSTD: u8 = 1;
const CODING_GZIP: u8 = 2;
/// Uncompressed for good: the server answered a compressed request with 415.
const CODING_REFUSED: u8 = 3;
/// [`Compression::Auto`] before the server has said what it decodes.
const CODING_UNKNOWN: u8 = 4;
/// zstd's default level: about a fifth of the bytes for batches of AI
/// events at a few hundred MB/s (docs/performance.md, "Compression").
const WIRE_ZSTD_LEVEL: i32 = 3;

/// The coding a server's `Accept-Encoding` allows, zstd first.
fn advertised(resp: &reqwest::blocking::Response) -> Option<u8> {
    let accepted = resp.headers().get("accept-encoding")?.to_str().ok()?;
    let has = |name: &str| {
        accepted.split(',').any(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(name)
        })
    };
    if has("zstd") {
        Some(CODING_ZSTD)
    } else if has("gzip") {
        Some(CODING_GZIP)
    } else {
        None
    }
}

/// `body` in `coding`, with its `Content-Encoding` name.
fn encode_body(coding: u8, body: &[u8]) -> std::io::Result<(Vec<u8>, Option<&'static str>)> {
    match coding {
        CODING_ZSTD => Ok((zstd::bulk::compress(body, WIRE_ZSTD_LEVEL)?, Some("zstd"))),
        CODING_GZIP => {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::fast(),
            );
            gz.write_all(body)?;
            Ok((gz.finish()?, Some("gzip")))
        }
        _ => Ok((body.to_vec(), None)),
    }
}

/// Batches waiting for delivery: the durable spool, or memory.
trait Backlog: Send {
    fn append(&mut self, records: &[&[u8]]) -> Result<(), SpoolError>;
    /// Records past the `skip` oldest (already in flight), at most
    /// `max_records` and `max_bytes` (but always one when there is one).
    fn peek_after(
        &mut self,
        skip: usize,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, SpoolError>;
    fn ack(&mut self, n: usize) -> Result<(), SpoolError>;
    fn pending_records(&self) -> u64;
}

impl Backlog for Spool {
    fn append(&mut self, records: &[&[u8]]) -> Result<(), SpoolError> {
        Spool::append(self, records)
    }
    fn peek_after(
        &mut self,
        skip: usize,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, SpoolError> {
        Spool::peek_after(self, skip, max_records, max_bytes)
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
    fn peek_after(
        &mut self,
        skip: usize,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, SpoolError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for r in self.records.iter().skip(skip).take(max_records) {
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

/// How long the intake thread lets a filling batch gather before it looks
/// again: the most a flush or durable write waits behind a filling batch.
const FILL_SLICE: Duration = Duration::from_millis(2);

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
        if batch.is_empty() {
            match rx.recv_timeout(wait) {
                Ok(msg) => take(msg, &mut batch, &mut durable),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => disconnected = true,
            }
        } else {
            // A batch is filling: let events gather for a moment rather than
            // park on the channel, where every `emit` would have to wake
            // this thread (a system call on the caller's side, per event).
            std::thread::sleep(wait.min(FILL_SLICE));
        }
        // Take whatever else is waiting, up to a batch, so that one fsync covers it all.
        while batch.len() < config.batch_size && durable.len() < 256 {
            match rx.try_recv() {
                Ok(msg) => take(msg, &mut batch, &mut durable),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
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
    /// Not now: why, the ledger's `Retry-After` if it sent one, and
    /// whether the ledger said it is at its budget (429/503).
    Retry(String, Option<Duration>, bool),
}

/// How many events of an accepted batch the ledger already held: the
/// count of an `acks=summary` answer, or the events a full answer marks
/// `"duplicate": true` (a ledger older than `acks`); 0 when it says nothing.
fn duplicates_in(resp: reqwest::blocking::Response) -> u64 {
    let Ok(body) = resp.bytes() else { return 0 };
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return 0;
    };
    if let Some(n) = answer["duplicates"].as_u64() {
        return n;
    }
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
    shared: &Shared,
    body: Vec<u8>,
) -> Sent {
    let signature = config
        .signer
        .as_ref()
        .map(|signer| (signer, sign_body(signer, config.signature_format, &body)));
    let mut coding = shared.coding.load(Ordering::Relaxed);
    if coding == CODING_UNKNOWN {
        // Ask before the first batch: a few hundred bytes, where an
        // uncompressed first batch could cost a slow link a minute.
        let answer = client.request(reqwest::Method::OPTIONS, url).send();
        let learned = match answer {
            // A proxy's 502 or a busy server says nothing about what the
            // ledger decodes: ask again before sending, rather than send
            // the first batches uncompressed.
            Ok(resp) if resp.status().is_server_error() || resp.status().as_u16() == 429 => {
                let status = resp.status();
                return Sent::Retry(
                    format!("OPTIONS {url}: HTTP {status}"),
                    retry_after(&resp),
                    false,
                );
            }
            Ok(resp) => advertised(&resp).unwrap_or(CODING_IDENTITY),
            Err(e) => return Sent::Retry(error_chain(&e), None, false),
        };
        let _ = shared.coding.compare_exchange(
            CODING_UNKNOWN,
            learned,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        coding = shared.coding.load(Ordering::Relaxed);
    }
    loop {
        let (wire, content_encoding) =
            encode_body(coding, &body).unwrap_or_else(|_| (body.clone(), None));
        let mut req = client
            .post(url)
            .header("content-type", "application/x-ndjson");
        if let Some(name) = content_encoding {
            req = req.header("content-encoding", name);
        }
        if let Some((signer, signature)) = &signature {
            req = req
                .header("aiaudit-emitter", signer.name())
                .header("aiaudit-signature-format", config.signature_format.name())
                .header("aiaudit-signature", signature.as_str());
        }
        if let Some(t) = config.token.as_deref() {
            req = req.bearer_auth(t);
        }
        let wire_len = wire.len() as u64;
        let resp = match req.body(wire).send() {
            Ok(resp) => {
                // Counted once answered: what crossed the link for certain.
                let stats = &shared.stats;
                stats
                    .body_bytes
                    .fetch_add(body.len() as u64, Ordering::Relaxed);
                stats.wire_bytes.fetch_add(wire_len, Ordering::Relaxed);
                resp
            }
            // The whole chain: a TLS failure is only named in the sources.
            Err(e) => return Sent::Retry(error_chain(&e), None, false),
        };
        if config.compression == Compression::Auto {
            if let Some(c) = advertised(&resp) {
                let _ = shared.coding.compare_exchange(
                    CODING_IDENTITY,
                    c,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
        }
        let status = resp.status();
        if status.as_u16() == 415 && content_encoding.is_some() {
            // Something on the way does not decode it after all (a proxy,
            // an older ledger): uncompressed from now on, and at once.
            tracing::warn!(
                coding = content_encoding.unwrap_or(""),
                "the server refused a compressed request (415); sending uncompressed"
            );
            shared.coding.store(CODING_REFUSED, Ordering::Relaxed);
            coding = CODING_REFUSED;
            continue;
        }
        return if status.is_success() {
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
            let after = retry_after(&resp);
            let detail = problem_detail(resp);
            let overloaded = matches!(status.as_u16(), 429 | 503);
            Sent::Retry(format!("HTTP {status}{detail}"), after, overloaded)
        };
    }
}

/// `: <detail>` of a problem+json answer, or nothing.
fn problem_detail(resp: reqwest::blocking::Response) -> String {
    let Ok(body) = resp.bytes() else {
        return String::new();
    };
    match serde_json::from_slice::<Value>(&body) {
        Ok(v) => v["detail"]
            .as_str()
            .map(|d| format!(": {}", d.chars().take(300).collect::<String>()))
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// An error and its sources, `outer: inner: innermost`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn delivery_loop(url: &str, shared: &Arc<Shared>, config: &EmitterBuilder) {
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
    let config = Arc::new(config.clone());
    let url: Arc<str> = Arc::from(url);
    let mut attempt: u32 = 0;
    // After a refusal, records go one at a time to find the bad one.
    let mut one_at_a_time = 0usize;
    // Requests in flight: halved when the ledger says it is at its budget
    // (or this credential at its share), grown back by one after a window's
    // worth of acceptances, so a drain settles at what the ledger takes
    // instead of meeting a 429 (and a Retry-After pause) again and again.
    let mut window = PARALLEL;
    let mut accepted_run = 0usize;
    // Sent and not yet answered, oldest first. The window slides: a new
    // request goes out as soon as the oldest is answered, and the spool
    // loses records only in order (the oldest request's, once accepted).
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    // Accepted by the ledger, not yet removed from the spool: removed after
    // the window is topped up, so that the cursor's fsyncs overlap requests
    // in flight instead of leaving the window short.
    let mut accepted: usize = 0;
    loop {
        let limit = if one_at_a_time > 0 { 1 } else { window };
        while in_flight.len() < limit {
            let skip = accepted + in_flight.iter().map(|f| f.records).sum::<usize>();
            let max_records = if one_at_a_time > 0 {
                1
            } else {
                RECORDS_PER_REQUEST
            };
            let peeked = {
                let mut backlog = shared.backlog.lock().unwrap();
                if in_flight.is_empty() {
                    while backlog.pending_records() == 0 && !shared.closing.load(Ordering::SeqCst) {
                        backlog = shared.more.wait(backlog).unwrap();
                    }
                    if shared.closing.load(Ordering::SeqCst) && backlog.pending_records() == 0 {
                        return;
                    }
                }
                backlog.peek_after(skip, max_records, config.request_max_bytes)
            };
            match peeked {
                Ok(records) if records.is_empty() => break,
                Ok(records) => {
                    in_flight.push_back(start_send(&client, &url, &config, shared, records))
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading the spool failed");
                    if in_flight.is_empty() {
                        std::thread::sleep(backoff(attempt, config.max_backoff));
                    }
                    break;
                }
            }
        }
        if accepted > 0 {
            if let Err(e) = shared.backlog.lock().unwrap().ack(accepted) {
                tracing::error!(error = %e, "acknowledging spooled batches failed; they may be sent again");
            }
            accepted = 0;
            shared.more.notify_all();
        }
        let Some(oldest) = in_flight.pop_front() else {
            continue;
        };
        let result = oldest
            .answer
            .recv()
            .unwrap_or_else(|_| Sent::Retry("the sender thread could not run".into(), None, false));
        if let Sent::Accepted(duplicates) = result {
            attempt = 0;
            *shared.last_error.lock().unwrap() = None;
            shared
                .stats
                .duplicates
                .fetch_add(duplicates, Ordering::Relaxed);
            one_at_a_time = one_at_a_time.saturating_sub(oldest.records);
            accepted += oldest.records;
            shared
                .stats
                .delivered
                .fetch_add(oldest.events, Ordering::Relaxed);
            accepted_run += 1;
            if accepted_run >= window {
                window = (window + 1).min(PARALLEL);
                accepted_run = 0;
            }
            continue;
        }
        // Not accepted: what went out after it goes again later, in order
        // (the ledger deduplicates whatever of it was taken meanwhile).
        accepted_run = 0;
        let mut overloaded = matches!(result, Sent::Retry(_, _, true));
        for later in in_flight.drain(..) {
            if let Ok(Sent::Retry(_, _, true)) = later.answer.recv() {
                overloaded = true;
            }
        }
        if overloaded {
            window = (window / 2).max(1);
        }
        match result {
            Sent::Refused(why) if oldest.records > 1 => {
                *shared.last_error.lock().unwrap() = Some(why.clone());
                tracing::warn!(%why, "the ledger refused a request; retrying its batches one by one");
                one_at_a_time = oldest.records;
            }
            Sent::Refused(why) => {
                *shared.last_error.lock().unwrap() = Some(why.clone());
                let record = {
                    let mut backlog = shared.backlog.lock().unwrap();
                    match backlog.peek_after(0, 1, usize::MAX) {
                        Ok(mut r) if !r.is_empty() => r.swap_remove(0),
                        _ => continue,
                    }
                };
                let events = oldest.events;
                let (delivered, rejected) = if events > 1 {
                    // Batches are all-or-nothing: find the refused events
                    // so that only they are set aside.
                    tracing::warn!(%why, events, "the ledger refused a batch; sending its events one by one");
                    match deliver_one_by_one(&client, &url, &config, shared, &record) {
                        Ok(counts) => counts,
                        Err((why, after)) => {
                            // Not now; the record goes again whole later
                            // (what landed meanwhile is deduplicated).
                            if !pause_before_retry(shared, &config, &mut attempt, why, after) {
                                return;
                            }
                            continue;
                        }
                    }
                } else {
                    tracing::error!(%why, events, "the ledger refused an event; set aside in rejected.ndjson");
                    set_aside(shared, &record, &why);
                    (0, events)
                };
                one_at_a_time = one_at_a_time.saturating_sub(1);
                let _ = shared.backlog.lock().unwrap().ack(1);
                shared
                    .stats
                    .delivered
                    .fetch_add(delivered, Ordering::Relaxed);
                shared.stats.rejected.fetch_add(rejected, Ordering::Relaxed);
                shared.more.notify_all();
            }
            Sent::Retry(why, after, _) => {
                if !pause_before_retry(shared, &config, &mut attempt, why, after) {
                    return;
                }
            }
            Sent::Accepted(_) => unreachable!("handled above"),
        }
    }
}

/// One request on its way: how many spooled records (and events) it
/// carries, and where its sender thread puts the answer.
struct InFlight {
    records: usize,
    events: u64,
    answer: Receiver<Sent>,
}

/// Sends `records` as one request on a thread of its own.
fn start_send(
    client: &reqwest::blocking::Client,
    url: &Arc<str>,
    config: &Arc<EmitterBuilder>,
    shared: &Arc<Shared>,
    records: Vec<Vec<u8>>,
) -> InFlight {
    let (tx, answer) = mpsc::sync_channel(1);
    let events = records.iter().map(|r| count_lines(r)).sum();
    let n = records.len();
    let (client, url, config, shared) =
        (client.clone(), url.clone(), config.clone(), shared.clone());
    let body = records.concat();
    // If the thread cannot start, the answer channel closes unanswered,
    // which the delivery loop treats as "retry later".
    let _ = std::thread::Builder::new()
        .name("aiaudit-emitter-send".into())
        .spawn(move || {
            let _ = tx.send(send(&client, &url, &config, &shared, body));
        });
    InFlight {
        records: n,
        events,
        answer,
    }
}

/// After a failed attempt: records why, then waits the backoff (at least
/// the ledger's `Retry-After`) unless the emitter is closing. Returns false
/// when it is closing: delivery stops, the spool keeps the rest.
fn pause_before_retry(
    shared: &Shared,
    config: &EmitterBuilder,
    attempt: &mut u32,
    why: String,
    retry_after: Option<Duration>,
) -> bool {
    *shared.last_error.lock().unwrap() = Some(why.clone());
    if shared.closing.load(Ordering::SeqCst) {
        return false;
    }
    shared.stats.retries.fetch_add(1, Ordering::Relaxed);
    let wait = retry_wait(*attempt, config.max_backoff, retry_after);
    *attempt = attempt.saturating_add(1);
    tracing::debug!(%why, ?wait, "ledger unavailable; will retry");
    let backlog = shared.backlog.lock().unwrap();
    let _ = shared
        .more
        .wait_timeout_while(backlog, wait, |_| !shared.closing.load(Ordering::SeqCst));
    true
}

/// Sends the events of a refused record one request each: the accepted
/// ones land, the refused ones are set aside in `rejected.ndjson`. Returns
/// (delivered, rejected), or the reason to come back later when the ledger
/// stops answering part way (nothing is set aside twice: the record is
/// acknowledged only once every event was answered).
fn deliver_one_by_one(
    client: &reqwest::blocking::Client,
    url: &str,
    config: &EmitterBuilder,
    shared: &Shared,
    record: &[u8],
) -> Result<(u64, u64), (String, Option<Duration>)> {
    let lines: Vec<&[u8]> = record
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    let mut refused: Vec<(&[u8], String)> = Vec::new();
    let mut delivered = 0;
    for line in &lines {
        match send(client, url, config, shared, line.to_vec()) {
            Sent::Accepted(duplicates) => {
                delivered += 1;
                shared
                    .stats
                    .duplicates
                    .fetch_add(duplicates, Ordering::Relaxed);
            }
            Sent::Refused(why) => refused.push((line, why)),
            Sent::Retry(why, after, _) => return Err((why, after)),
        }
    }
    for (line, why) in &refused {
        tracing::error!(why = %why, "the ledger refused an event; set aside in rejected.ndjson");
        set_aside(shared, line, why);
    }
    Ok((delivered, refused.len() as u64))
}

/// Requests sent at once by the delivery thread.
const PARALLEL: usize = 4;
/// Events per spooled record at most. A record is sent whole, and a ledger
/// takes at most `max_batch_events` per request (10,000 by default): a
/// larger record would be refused for good.
pub const RECORD_MAX_EVENTS: usize = 1000;
/// Spooled batches per request at most.
const RECORDS_PER_REQUEST: usize = 64;

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
    fn needs_an_endpoint() {
        assert!(matches!(
            Emitter::builder().build(),
            Err(EmitError::Config(_))
        ));
    }

    /// A request as the fake server saw it: its `Content-Encoding` and
    /// its body decoded.
    #[derive(Debug, Clone)]
    struct Seen {
        coding: Option<String>,
        body: Vec<u8>,
    }

    /// How the fake server answers.
    #[derive(Clone, Copy)]
    enum Server {
        /// 200 with `Accept-Encoding: zstd, gzip` (this ledger).
        Advertising,
        /// 200 without `Accept-Encoding` (an older ledger).
        Silent,
        /// 415 to any compressed request (a proxy that will not pass it).
        RefusingCompressed,
        /// [`Server::Advertising`], but the first OPTIONS gets a proxy's 502.
        BadGatewayFirst,
    }

    /// A minimal HTTP/1.1 server on loopback that accepts every batch and
    /// records each request; returns its URL and what it saw.
    fn fake_ledger(kind: Server) -> (String, Arc<Mutex<Vec<Seen>>>) {
        use std::io::{BufRead, BufReader, Read};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let first_options = Arc::new(AtomicBool::new(true));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let log = log.clone();
                let first_options = first_options.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut conn = conn;
                    loop {
                        let (mut length, mut coding) = (0usize, None);
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let options = line.starts_with("OPTIONS");
                        loop {
                            line.clear();
                            reader.read_line(&mut line).unwrap();
                            let l = line.trim_end();
                            if l.is_empty() {
                                break;
                            }
                            let (name, value) = l.split_once(':').unwrap();
                            match name.to_ascii_lowercase().as_str() {
                                "content-length" => length = value.trim().parse().unwrap(),
                                "content-encoding" => coding = Some(value.trim().to_string()),
                                _ => {}
                            }
                        }
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).unwrap();
                        let refuse = matches!(kind, Server::RefusingCompressed) && coding.is_some();
                        let body = match coding.as_deref() {
                            Some("zstd") => zstd::bulk::decompress(&body, 1 << 24).unwrap(),
                            Some("gzip") => {
                                let mut out = Vec::new();
                                flate2::read::GzDecoder::new(&body[..])
                                    .read_to_end(&mut out)
                                    .unwrap();
                                out
                            }
                            _ => body,
                        };
                        if !options {
                            log.lock().unwrap().push(Seen { coding, body });
                        }
                        let bad_gateway = options
                            && matches!(kind, Server::BadGatewayFirst)
                            && first_options.swap(false, Ordering::SeqCst);
                        let (status, extra) = match kind {
                            _ if refuse => ("415 Unsupported Media Type", ""),
                            _ if bad_gateway => ("502 Bad Gateway", ""),
                            Server::BadGatewayFirst => {
                                ("200 OK", "accept-encoding: zstd, gzip\r\n")
                            }
                            Server::Advertising => ("200 OK", "accept-encoding: zstd, gzip\r\n"),
                            _ => ("200 OK", ""),
                        };
                        let answer = b"{\"events\":[]}";
                        let head = format!(
                            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n",
                            answer.len()
                        );
                        if conn
                            .write_all(head.as_bytes())
                            .and_then(|()| conn.write_all(answer))
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        (url, seen)
    }

    /// Emits `n` events one flush at a time (one request each) and returns
    /// what the server saw and the emitter's stats.
    fn run(kind: Server, compression: Compression, n: usize) -> (Vec<Seen>, u64, u64) {
        let (url, seen) = fake_ledger(kind);
        let em = Emitter::builder()
            .endpoint(url)
            .compression(compression)
            .build()
            .unwrap();
        for i in 0..n {
            let text =
                "the applicant's income was verified against the bank statement. ".repeat(20);
            em.emit(serde_json::json!({"id": format!("e{i}"), "output": {"content": text}}))
                .unwrap();
            em.flush_delivered(Duration::from_secs(10)).unwrap();
        }
        let (body, wire) = (
            em.stats().body_bytes.load(Ordering::Relaxed),
            em.stats().wire_bytes.load(Ordering::Relaxed),
        );
        em.close(Duration::from_secs(5)).unwrap();
        let seen = seen.lock().unwrap().clone();
        for (i, s) in seen.iter().enumerate() {
            let v: Value = serde_json::from_slice(&s.body).unwrap();
            assert_eq!(v["id"], format!("e{i}"), "request {i} decoded to its batch");
        }
        (seen, body, wire)
    }

    fn codings(seen: &[Seen]) -> Vec<Option<&str>> {
        seen.iter().map(|s| s.coding.as_deref()).collect()
    }

    #[test]
    fn auto_compresses_once_the_server_advertises_zstd() {
        // Asked before the first batch (OPTIONS), so even that one is.
        let (seen, body, wire) = run(Server::Advertising, Compression::Auto, 3);
        assert_eq!(codings(&seen), [Some("zstd"), Some("zstd"), Some("zstd")]);
        assert!(wire * 3 < body * 2, "{wire} of {body}");
    }

    #[test]
    fn a_failed_probe_is_asked_again_before_the_first_batch() {
        // A 502 to the OPTIONS (a proxy whose link dropped) says nothing:
        // the emitter asks again instead of sending uncompressed.
        let (seen, _, _) = run(Server::BadGatewayFirst, Compression::Auto, 2);
        assert_eq!(codings(&seen), [Some("zstd"), Some("zstd")]);
    }

    #[test]
    fn auto_stays_uncompressed_for_a_server_that_does_not_say() {
        let (seen, body, wire) = run(Server::Silent, Compression::Auto, 3);
        assert_eq!(codings(&seen), [None, None, None]);
        assert_eq!(body, wire);
        let (seen, _, _) = run(Server::Advertising, Compression::Off, 2);
        assert_eq!(codings(&seen), [None, None]);
        let (seen, _, _) = run(Server::Silent, Compression::Gzip, 2);
        assert_eq!(codings(&seen), [Some("gzip"), Some("gzip")]);
    }

    #[test]
    fn a_415_to_a_compressed_request_falls_back_to_uncompressed_at_once() {
        // The refused request is seen, then sent again uncompressed; the
        // second batch is never compressed, and nothing is set aside.
        let (url, seen) = fake_ledger(Server::RefusingCompressed);
        let em = Emitter::builder()
            .endpoint(url)
            .compression(Compression::Zstd)
            .build()
            .unwrap();
        for i in 0..2 {
            em.emit(serde_json::json!({"id": format!("e{i}")})).unwrap();
            em.flush_delivered(Duration::from_secs(10)).unwrap();
        }
        assert_eq!(em.stats().delivered.load(Ordering::Relaxed), 2);
        assert_eq!(em.stats().rejected.load(Ordering::Relaxed), 0);
        em.close(Duration::from_secs(5)).unwrap();
        assert_eq!(codings(&seen.lock().unwrap()), [Some("zstd"), None, None]);
    }
}
