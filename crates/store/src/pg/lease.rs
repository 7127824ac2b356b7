//! The publisher lease: which node of a shared log integrates the tree and
//! publishes checkpoints, decided by a row in `aiaudit_lease` and the
//! database's clock, and fenced by its term.
//!
//! - The holder renews the lease every [`LeaseConfig::renew_every`]; the row
//!   says until when (`expires_at`, PostgreSQL's `now()` plus the lease
//!   length), so nodes' clocks never have to agree.
//! - Another node takes the lease, with the term moved on by one, when it
//!   has expired, or at once when the holder's renewing session no longer
//!   exists on the server (the holder died and its connection closed: the
//!   fast path of a kill -9 or a crashed machine whose kernel reset the
//!   connection).
//! - A holder that cannot renew stops publishing on its own, a margin
//!   before the lease could expire, measured on its own monotonic clock
//!   from the moment it sent the last renewal that succeeded.
//! - Every write only the publisher makes (integration, the checkpoint)
//!   checks in its transaction that the lease row still names this holder
//!   and term and has not expired, holding the row `FOR SHARE` until
//!   COMMIT, so a takeover waits for it to end and a former publisher that
//!   wakes up late is refused ([`Error::Fenced`]); it also stamps its term
//!   on `aiaudit_tree` and is refused where a newer term has written.

use super::Shared;
use crate::{Error, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::GenericClient;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The row's name in `aiaudit_lease`.
pub(super) const PUBLISHER: &str = "publisher";

/// The lease's timing.
#[derive(Debug, Clone, Copy)]
pub struct LeaseConfig {
    /// How long a renewal holds the lease: the longest another node waits
    /// to take over from a holder it cannot see fail.
    pub length: Duration,
    /// How often the holder renews (and others look at the lease).
    pub renew_every: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig::with_length(Duration::from_secs(5))
    }
}

impl LeaseConfig {
    /// A lease of `length`, renewed five times per length (at most every
    /// second, at least every 100 ms).
    pub fn with_length(length: Duration) -> LeaseConfig {
        LeaseConfig {
            length,
            renew_every: (length / 5).clamp(Duration::from_millis(100), Duration::from_secs(1)),
        }
    }

    /// How long before the lease's expiry a holder that could not renew
    /// stops: one renewal period, so it stops before any other node may
    /// start even if its clock runs a little slow against the server's.
    fn margin(&self) -> Duration {
        self.renew_every.min(self.length / 2)
    }

    /// How long one renewal may take before it counts as failed.
    fn statement_timeout(&self) -> Duration {
        self.renew_every.max(Duration::from_millis(500))
    }
}

/// The lease as this node last read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseView {
    /// The node that holds (or last held) the lease; empty when none ever did.
    pub holder: String,
    pub term: u64,
    /// Milliseconds until the lease expires as the database saw it when it
    /// was read (negative: expired).
    pub expires_in_ms: i64,
    /// When this node read it.
    pub read_at: Option<Instant>,
}

impl LeaseView {
    /// Milliseconds until expiry now, counting the time since it was read.
    pub fn remaining_ms(&self) -> i64 {
        let since = self
            .read_at
            .map(|t| t.elapsed().as_millis() as i64)
            .unwrap_or(0);
        self.expires_in_ms - since
    }
}

/// This node's hold on the lease.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Held {
    pub term: u64,
    /// Until when this node may act as the publisher (monotonic clock).
    pub until: Option<Instant>,
}

impl Held {
    pub fn valid(&self) -> bool {
        self.until.is_some_and(|u| Instant::now() < u)
    }
}

/// Takes the lease when it is free, renews it while held, on a session of
/// its own with short timeouts, and keeps [`Shared`]'s view of it fresh.
pub(super) async fn run(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    shared: Arc<Shared>,
) {
    let lease = shared.lease_config;
    while !shared.stop.load(Ordering::SeqCst) {
        let connected = tokio::time::timeout(lease.length, config.connect(tls.clone())).await;
        if let Ok(Ok((client, conn))) = connected {
            let conn = tokio::spawn(conn);
            while !shared.stop.load(Ordering::SeqCst) {
                let sent = Instant::now();
                let step = tokio::time::timeout(lease.statement_timeout(), round(&client, &shared));
                match step.await {
                    Ok(Ok((held, view))) => {
                        note_round(&shared, held, sent);
                        *shared.view.lock().expect("lease lock") = view;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "the publisher lease could not be read or renewed");
                        break;
                    }
                    Err(_) => {
                        tracing::warn!(
                            "PostgreSQL did not answer the lease renewal in time; reconnecting"
                        );
                        break;
                    }
                }
                tokio::time::sleep(lease.renew_every).await;
            }
            drop(client);
            conn.abort();
        }
        if shared.held.lock().expect("lease lock").until.is_some() && !shared.is_publisher() {
            step_down_locally(&shared, "the lease could not be renewed in time");
        }
        tokio::time::sleep(lease.renew_every).await;
    }
}

/// After a round: holding (with the term) or not.
fn note_round(shared: &Shared, held: Option<u64>, sent: Instant) {
    let lease = shared.lease_config;
    match held {
        Some(term) => {
            let mut h = shared.held.lock().expect("lease lock");
            let new = h.term != term || !h.valid();
            *h = Held {
                term,
                until: Some(sent + lease.length - lease.margin()),
            };
            drop(h);
            if new {
                tracing::info!(
                    term,
                    "this node holds the publisher lease: it integrates and publishes checkpoints"
                );
            }
        }
        None => {
            if shared.held.lock().expect("lease lock").until.is_some() {
                step_down_locally(shared, "another node holds the publisher lease now");
            }
        }
    }
}

fn step_down_locally(shared: &Shared, why: &str) {
    let mut h = shared.held.lock().expect("lease lock");
    if h.until.take().is_some() {
        tracing::warn!(term = h.term, why, "this node stopped publishing");
    }
}

/// One round on the lease session: renew it if held, else take it if it is
/// free; then read the row. Returns the term held, if any, and the row.
async fn round(
    client: &tokio_postgres::Client,
    shared: &Shared,
) -> Result<(Option<u64>, LeaseView)> {
    let length_ms = shared.lease_config.length.as_millis() as i64;
    let held = *shared.held.lock().expect("lease lock");
    let mut term = None;
    if held.until.is_some() {
        let row = client
            .query_opt(
                "UPDATE aiaudit_lease SET expires_at = now() + $3::int8 * interval '1 millisecond', \
                 backend_pid = pg_backend_pid() \
                 WHERE name = $4 AND holder = $1 AND term = $2 RETURNING term",
                &[&shared.holder, &(held.term as i64), &length_ms, &PUBLISHER],
            )
            .await?;
        term = row.map(|r| r.get::<_, i64>(0) as u64);
    }
    if term.is_none() && shared.candidate.load(Ordering::SeqCst) {
        // Free when expired, never held, or when the session that renewed
        // it is gone from the server (its node died).
        let row = client
            .query_opt(
                "UPDATE aiaudit_lease l SET holder = $1, term = l.term + 1, \
                 backend_pid = pg_backend_pid(), \
                 expires_at = now() + $2::int8 * interval '1 millisecond' \
                 WHERE l.name = $3 AND (l.expires_at <= now() OR l.holder = '' OR NOT EXISTS \
                   (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.backend_pid)) \
                 RETURNING l.term",
                &[&shared.holder, &length_ms, &PUBLISHER],
            )
            .await?;
        term = row.map(|r| r.get::<_, i64>(0) as u64);
    }
    Ok((term, read(client).await?))
}

/// The lease row as it is now.
pub(super) async fn read(c: &impl GenericClient) -> Result<LeaseView> {
    let row = c
        .query_one(
            "SELECT holder, term, \
             (extract(epoch FROM expires_at - now()) * 1000)::int8 \
             FROM aiaudit_lease WHERE name = $1",
            &[&PUBLISHER],
        )
        .await?;
    Ok(LeaseView {
        holder: row.get(0),
        term: row.get::<_, i64>(1) as u64,
        expires_in_ms: row.get(2),
        read_at: Some(Instant::now()),
    })
}

/// In a publisher's transaction: refuses unless the lease still names
/// `holder` at `term` and has not expired, and holds the row until COMMIT
/// so no takeover can happen in between.
pub(super) async fn fence(c: &impl GenericClient, holder: &str, term: u64) -> Result<()> {
    let row = c
        .query_opt(
            "SELECT holder, term, expires_at > now() FROM aiaudit_lease WHERE name = $1 FOR SHARE",
            &[&PUBLISHER],
        )
        .await?;
    match row {
        Some(r)
            if r.get::<_, &str>(0) == holder
                && r.get::<_, i64>(1) as u64 == term
                && r.get::<_, bool>(2) =>
        {
            Ok(())
        }
        Some(r) => Err(Error::Fenced(format!(
            "the publisher lease is at term {} held by {:?}; this node held term {term}",
            r.get::<_, i64>(1),
            r.get::<_, &str>(0)
        ))),
        None => Err(Error::Fenced("the publisher lease row is missing".into())),
    }
}

/// Gives the lease up at once (a clean shutdown), so another node takes
/// over without waiting for it to expire.
pub(super) async fn release(c: &impl GenericClient, holder: &str, term: u64) -> Result<()> {
    c.execute(
        "UPDATE aiaudit_lease SET expires_at = now() \
         WHERE name = $1 AND holder = $2 AND term = $3",
        &[&PUBLISHER, &holder, &(term as i64)],
    )
    .await?;
    Ok(())
}

/// A name for this node in the lease row: host, process and a random part,
/// so a restarted process never renews its predecessor's lease.
pub(super) fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "node".into());
    // Not a secret: only has to differ between processes on one host.
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{host}/{}/{:08x}", std::process::id(), h.finish() as u32)
}
