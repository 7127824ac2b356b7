//! Per-token rate limits: a token bucket of events per second for each
//! token; over it, a rate-limited error saying when to retry.

use crate::error::{Error, Kind};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Events per second allowed to each API token (0: no limit).
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `per_second` events on average, bursts of up to two seconds' worth.
    pub fn new(per_second: u64) -> Self {
        RateLimiter {
            per_second: per_second as f64,
            burst: (per_second as f64 * 2.0).max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `events` from the token's bucket, or says how many seconds to wait.
    pub fn take(&self, token_id: &str, events: usize) -> Result<(), u64> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap();
        let b = buckets.entry(token_id.to_string()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        b.tokens =
            (b.tokens + now.duration_since(b.last).as_secs_f64() * self.per_second).min(self.burst);
        b.last = now;
        let need = events as f64;
        // A batch larger than the whole burst may pass when the bucket is full,
        // so that no single batch is refused for ever.
        if b.tokens >= need || (b.tokens >= self.burst && need > self.burst) {
            b.tokens -= need;
            return Ok(());
        }
        Err(((need.min(self.burst) - b.tokens) / self.per_second)
            .ceil()
            .max(1.0) as u64)
    }
}

pub fn too_many(retry_after: u64, per_second: u64) -> Error {
    let mut p = Error::new(
        Kind::RateLimited,
        "rate-limited",
        "Too many events",
        format!("this token may send {per_second} events per second; nothing of the batch was logged; retry after {retry_after} s"),
    );
    p.retry_after = Some(retry_after);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_refill_and_are_per_token() {
        let l = RateLimiter::new(100);
        assert!(l.take("a", 150).is_ok());
        assert!(l.take("a", 100).is_err());
        assert!(l.take("b", 100).is_ok());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(l.take("a", 100).is_ok());
        // Larger than a whole burst: allowed once the bucket is full.
        let l = RateLimiter::new(10);
        assert!(l.take("c", 500).is_ok());
        assert!(l.take("c", 500).is_err());
        assert!(RateLimiter::new(0).take("d", 1_000_000).is_ok());
    }
}
