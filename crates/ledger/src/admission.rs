//! Admission control: a bound on the work in flight, so a burst of clients
//! (a region's spools draining at once) meets fast, honest refusals instead
//! of a ledger that grows until the kernel kills it.
//!
//! Every ingest request reserves, before its body is read, an estimate of
//! the memory it will hold while it is decoded, validated, sealed and
//! written ([`request_cost`]). Reservations are taken from one budget per
//! node; a request that does not fit is answered at once (503, or 429 when
//! its own credential already holds its share) with `Retry-After`, and its
//! body is never decoded. A credential may hold at most `share` of the
//! budget, so one noisy emitter cannot starve the others. A body without a
//! declared length reserves as it arrives ([`Permit::grow`]).

use crate::error::{Error, Kind, Result};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Bytes of memory a request holds per byte of body while it is in flight:
/// the body, the parsed JSON tree (most of it), the canonical and sealed
/// entries and the index rows. Measured with 1 KiB AI events in batches of
/// 100 (docs/performance.md, "Overload"); small events cost relatively more.
pub const MEMORY_PER_BODY_BYTE: u64 = 12;
/// What any request holds besides its body (buffers, tasks, the response).
pub const REQUEST_OVERHEAD: u64 = 64 << 10;
/// How much larger than its body a compressed (gzip) request is reckoned.
pub const COMPRESSED_EXPANSION: u64 = 8;

/// The default budget: 1/16 of the memory the process may use (the cgroup
/// limit if there is one, else the machine's), between 32 MiB and 64 MiB.
/// 64 MiB holds about 45 requests of 100 1-KiB events, several times what
/// keeps two cores busy (docs/performance.md, "Overload").
pub fn default_budget(available_memory: u64) -> u64 {
    (available_memory / 16).clamp(32 << 20, 64 << 20)
}

/// Memory this process may use: the cgroup v2 limit (a container's), else
/// the machine's memory, else 1 GiB when neither can be read.
pub fn available_memory() -> u64 {
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let machine = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    });
    match (cgroup, machine) {
        (Some(c), Some(m)) => c.min(m),
        (Some(c), None) => c,
        (None, Some(m)) => m,
        (None, None) => 1 << 30,
    }
}

/// The memory a request with a body of `body_bytes` is reckoned to hold.
pub fn request_cost(body_bytes: u64, compressed: bool) -> u64 {
    let decoded = if compressed {
        body_bytes.saturating_mul(COMPRESSED_EXPANSION)
    } else {
        body_bytes
    };
    decoded
        .saturating_mul(MEMORY_PER_BODY_BYTE)
        .saturating_add(REQUEST_OVERHEAD)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// Why a request was shed, as `aiaudit_requests_shed_total{reason}` says.
pub const SHED_BUDGET: &str = "memory_budget";
pub const SHED_SHARE: &str = "credential_share";

/// The metrics admission keeps (registered by [`crate::metrics::Metrics`]).
#[derive(Clone, Default)]
pub struct AdmissionMetrics {
    pub shed: Family<ReasonLabel, Counter>,
    pub inflight_bytes: Gauge,
    pub inflight_requests: Gauge,
    pub budget_bytes: Gauge,
}

/// The budget of one node and what holds it.
pub struct Admission {
    budget: u64,
    per_credential: u64,
    state: Mutex<State>,
    metrics: AdmissionMetrics,
}

#[derive(Default)]
struct State {
    used: u64,
    requests: u64,
    by_credential: HashMap<String, u64>,
    pace: Pace,
}

/// The `Retry-After` the ledger gives, adapted each second to how many
/// requests it sheds for each it admits: clients that all come back after
/// one second would be shed again many times over, each costing a body
/// sent and thrown away. With `S` shed and `A` admitted in the last second,
/// the next value is the last times sqrt(S / A), between 1 and 30 s, which
/// settles where about as many come back as get in.
struct Pace {
    window: std::time::Instant,
    shed: u64,
    admitted: u64,
    retry_after: f64,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            window: std::time::Instant::now(),
            shed: 0,
            admitted: 0,
            retry_after: 1.0,
        }
    }
}

/// Bounds of the adaptive `Retry-After`, in seconds.
pub const MIN_RETRY_AFTER: f64 = 1.0;
pub const MAX_RETRY_AFTER: f64 = 30.0;

impl Pace {
    fn roll(&mut self, now: std::time::Instant) {
        if now.duration_since(self.window) < std::time::Duration::from_secs(1) {
            return;
        }
        let ratio = self.shed as f64 / self.admitted.max(1) as f64;
        self.retry_after =
            (self.retry_after * ratio.sqrt()).clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER);
        self.window = now;
        self.shed = 0;
        self.admitted = 0;
    }

    fn retry_after_secs(&self) -> u64 {
        self.retry_after.ceil() as u64
    }
}

/// A reservation; released when dropped.
pub struct Permit {
    admission: Arc<Admission>,
    credential: String,
    held: u64,
}

impl Admission {
    /// `budget` bytes in all; one credential holds at most `share` of it.
    pub fn new(budget: u64, share: f64, metrics: AdmissionMetrics) -> Arc<Self> {
        let budget = budget.max(1);
        let per_credential = ((budget as f64) * share.clamp(0.0, 1.0)) as u64;
        metrics.budget_bytes.set(budget as i64);
        Arc::new(Admission {
            budget,
            per_credential: per_credential.max(1),
            state: Mutex::new(State::default()),
            metrics,
        })
    }

    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Reserves `cost` for a request of `credential`, or says why not. A
    /// request larger than a whole share is reckoned at the share, so the
    /// largest body allowed can still go through alone.
    pub fn admit(self: &Arc<Self>, credential: &str, cost: u64) -> Result<Permit> {
        let cost = cost.min(self.per_credential);
        let mut state = self.state.lock().expect("admission lock");
        self.reserve(&mut state, credential, cost)?;
        state.requests += 1;
        self.metrics.inflight_requests.set(state.requests as i64);
        Ok(Permit {
            admission: self.clone(),
            credential: credential.to_string(),
            held: cost,
        })
    }

    fn reserve(&self, state: &mut State, credential: &str, cost: u64) -> Result<()> {
        state.pace.roll(std::time::Instant::now());
        let refused = self.check(state, credential, cost);
        match &refused {
            Ok(()) => state.pace.admitted += 1,
            Err(_) => state.pace.shed += 1,
        }
        refused
    }

    fn check(&self, state: &mut State, credential: &str, cost: u64) -> Result<()> {
        let retry_after = state.pace.retry_after_secs();
        let mine = state.by_credential.get(credential).copied().unwrap_or(0);
        // With a share of the whole budget, only the budget itself limits.
        if self.per_credential < self.budget && mine + cost > self.per_credential {
            self.metrics
                .shed
                .get_or_create(&ReasonLabel {
                    reason: SHED_SHARE.into(),
                })
                .inc();
            let mut e = Error::new(
                Kind::RateLimited,
                "too-much-in-flight",
                "Too much in flight for this credential",
                format!(
                    "this credential already has {} KiB of requests in flight, its share of the \
                     ledger's {} KiB; retry after the Retry-After seconds",
                    mine >> 10,
                    self.budget >> 10
                ),
            );
            e.retry_after = Some(retry_after);
            return Err(e);
        }
        if state.used + cost > self.budget {
            self.metrics
                .shed
                .get_or_create(&ReasonLabel {
                    reason: SHED_BUDGET.into(),
                })
                .inc();
            let mut e = Error::unavailable(format!(
                "the ledger is at its memory budget for requests in flight ({} KiB); \
                 nothing of this request was read; retry after the Retry-After seconds",
                self.budget >> 10
            ));
            e.retry_after = Some(retry_after);
            return Err(e);
        }
        state.used += cost;
        *state
            .by_credential
            .entry(credential.to_string())
            .or_default() += cost;
        self.metrics.inflight_bytes.set(state.used as i64);
        Ok(())
    }

    fn release(&self, credential: &str, held: u64, request: bool) {
        let mut state = self.state.lock().expect("admission lock");
        state.used = state.used.saturating_sub(held);
        if let Some(mine) = state.by_credential.get_mut(credential) {
            *mine = mine.saturating_sub(held);
            if *mine == 0 {
                state.by_credential.remove(credential);
            }
        }
        if request {
            state.requests = state.requests.saturating_sub(1);
            self.metrics.inflight_requests.set(state.requests as i64);
        }
        self.metrics.inflight_bytes.set(state.used as i64);
    }
}

impl Permit {
    /// Reserves `more` for a body that turned out larger than reckoned.
    pub fn grow(&mut self, more: u64) -> Result<()> {
        let admission = self.admission.clone();
        let mut state = admission.state.lock().expect("admission lock");
        admission.reserve(&mut state, &self.credential, more)?;
        self.held += more;
        Ok(())
    }

    /// What this permit holds.
    pub fn held(&self) -> u64 {
        self.held
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(&self.credential, self.held, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(budget: u64, share: f64) -> Arc<Admission> {
        Admission::new(budget, share, AdmissionMetrics::default())
    }

    #[test]
    fn requests_beyond_the_budget_are_refused_and_released_ones_make_room() {
        let a = admission(1000, 1.0);
        let p1 = a.admit("t1", 600).unwrap();
        let e = a.admit("t2", 600).err().unwrap();
        assert_eq!((e.kind, e.retry_after), (Kind::Unavailable, Some(1)));
        let p2 = a.admit("t2", 400).unwrap();
        assert!(a.admit("t3", 1).is_err());
        drop(p1);
        let _p3 = a.admit("t3", 600).unwrap();
        drop(p2);
        assert_eq!(a.state.lock().unwrap().used, 600);
        assert_eq!(a.metrics.inflight_requests.get(), 1);
    }

    #[test]
    fn one_credential_holds_at_most_its_share() {
        let a = admission(1000, 0.5);
        let _p1 = a.admit("noisy", 300).unwrap();
        let e = a.admit("noisy", 300).err().unwrap();
        assert_eq!((e.kind, e.retry_after), (Kind::RateLimited, Some(1)));
        // Others still get in.
        let _p2 = a.admit("quiet", 400).unwrap();
        let shed = |r: &str| {
            a.metrics
                .shed
                .get_or_create(&ReasonLabel { reason: r.into() })
                .get()
        };
        assert_eq!((shed(SHED_SHARE), shed(SHED_BUDGET)), (1, 0));
    }

    #[test]
    fn retry_after_grows_while_many_are_shed_and_falls_back_when_they_are_not() {
        let mut pace = Pace::default();
        let t0 = pace.window;
        let second = std::time::Duration::from_secs(1);
        // 100 shed for each admitted: the wait grows tenfold a second, to the cap.
        pace.shed = 1000;
        pace.admitted = 10;
        pace.roll(t0 + second);
        assert_eq!(pace.retry_after_secs(), 10);
        pace.shed = 1000;
        pace.admitted = 10;
        pace.roll(t0 + 2 * second);
        assert_eq!(pace.retry_after_secs(), 30);
        // Within the second nothing changes.
        pace.shed = 5;
        pace.roll(t0 + 2 * second + second / 2);
        assert_eq!(pace.retry_after_secs(), 30);
        // As many back as get in: it holds; none shed: back to 1 s.
        pace.shed = 10;
        pace.admitted = 10;
        pace.roll(t0 + 3 * second);
        assert_eq!(pace.retry_after_secs(), 30);
        pace.shed = 0;
        pace.roll(t0 + 4 * second);
        assert_eq!(pace.retry_after_secs(), 1);
    }

    #[test]
    fn with_the_whole_budget_as_share_a_full_budget_is_a_503() {
        let a = admission(1000, 1.0);
        let _p = a.admit("t", 900).unwrap();
        let e = a.admit("t", 200).err().unwrap();
        assert_eq!(e.kind, Kind::Unavailable);
    }

    #[test]
    fn a_request_larger_than_a_share_goes_through_alone() {
        let a = admission(1000, 0.5);
        let p = a.admit("t", 10_000).unwrap();
        assert_eq!(p.held(), 500);
        assert!(a.admit("t", 1).is_err());
        drop(p);
        assert!(a.admit("t", 1).is_ok());
    }

    #[test]
    fn a_growing_body_reserves_as_it_arrives_and_gives_everything_back() {
        let a = admission(1000, 1.0);
        let mut p = a.admit("t", 100).unwrap();
        p.grow(500).unwrap();
        assert!(p.grow(500).is_err());
        assert_eq!(p.held(), 600);
        drop(p);
        let s = a.state.lock().unwrap();
        assert_eq!((s.used, s.requests, s.by_credential.len()), (0, 0, 0));
    }

    #[test]
    fn the_default_budget_follows_the_memory_available() {
        assert_eq!(default_budget(256 << 20), 32 << 20);
        assert_eq!(default_budget(768 << 20), 48 << 20);
        assert_eq!(default_budget(64 << 30), 64 << 20);
        assert!(available_memory() > 0);
        assert_eq!(request_cost(0, false), REQUEST_OVERHEAD);
        assert_eq!(
            request_cost(1000, true),
            1000 * COMPRESSED_EXPANSION * MEMORY_PER_BODY_BYTE + REQUEST_OVERHEAD
        );
    }
}
