//! Retention per tenant, and legal holds that suspend it.
//!
//! Expiry never touches the log: it destroys the data keys whose whole
//! period of use ended before the cutoff (content crypto-shredded; keys are
//! replaced on use once older than `data_key_max_age`, so a key created at
//! C sealed nothing after C + max age) and drops index rows whose event time
//! is before the cutoff. Hashes, proofs and checkpoints stay, so the log
//! still verifies. Every expiry and every hold is itself logged as an event.

use crate::auth::Principal;
use crate::error::Error;
use crate::registry::{Format, Registry};
use crate::Ledger;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Result;

pub const HOLDS_FILE: &str = "holds.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hold {
    pub id: String,
    /// A tenant, or "*" for every tenant.
    pub tenant: String,
    pub reason: String,
    pub placed_unix: u64,
    pub placed_by: String,
}

#[derive(Serialize, Deserialize, Default)]
struct HoldsFile {
    version: u32,
    holds: Vec<Hold>,
}

/// The legal holds in force: `<data-dir>/holds.json`, or on a shared log a
/// document in the database that is read fresh before every decision, so a
/// hold placed through any node stops expiry on the node that runs it.
pub struct Holds {
    registry: Registry<Vec<Hold>>,
}

const HOLDS_DOCUMENT: &str = "holds";

fn parse_holds(bytes: &[u8], what: &str) -> anyhow::Result<Vec<Hold>> {
    let f: HoldsFile = serde_json::from_slice(bytes).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    if f.version != 1 {
        anyhow::bail!("{what}: unknown version {}", f.version);
    }
    Ok(f.holds)
}

// The registry's format takes `&T`, here `&Vec<Hold>`.
#[allow(clippy::ptr_arg)]
fn encode_holds(holds: &Vec<Hold>) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec_pretty(&HoldsFile {
        version: 1,
        holds: holds.clone(),
    })?)
}

impl Holds {
    /// Opens the holds; on a shared log a `holds.json` left from before is
    /// merged in (holds only ever add protection) and removed.
    pub fn open(
        dir: &std::path::Path,
        shared: Option<Arc<dyn aiaudit_store::Storage>>,
    ) -> anyhow::Result<Holds> {
        let format = Format {
            parse: parse_holds,
            encode: encode_holds,
        };
        let (registry, local) = Registry::open(dir, HOLDS_FILE, HOLDS_DOCUMENT, format, shared)?;
        if let Some(local) = local {
            registry.update(|all| {
                for h in &local {
                    if !all.iter().any(|x| x.id == h.id) {
                        all.push(h.clone());
                    }
                }
                Ok::<_, anyhow::Error>(())
            })?;
            registry.remove_file()?;
        }
        Ok(Holds { registry })
    }

    /// The holds in force, read fresh on a shared log.
    pub fn list(&self) -> anyhow::Result<Vec<Hold>> {
        self.registry.read_fresh(|h| h.clone())
    }

    /// Whether a hold covers `tenant`. On error the caller must act as if
    /// one did (expiry waits).
    pub fn holds(&self, tenant: &str) -> anyhow::Result<bool> {
        Ok(self
            .list()?
            .iter()
            .any(|h| h.tenant == tenant || h.tenant == "*"))
    }

    pub fn refresh(&self) -> anyhow::Result<()> {
        self.registry.refresh()
    }

    fn update<T>(&self, change: impl Fn(&mut Vec<Hold>) -> Result<T>) -> Result<T> {
        self.registry.update(change)
    }
}

/// The retention of a tenant: its own, else the "*" default, else none.
pub fn retention_of(ledger: &Ledger, tenant: &str) -> Option<Duration> {
    let r = &ledger.config.retention;
    r.get(tenant).or_else(|| r.get("*")).copied()
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs expiry every `every` (nothing without a retention configured).
pub fn spawn(ledger: Arc<Ledger>, every: Duration) {
    if ledger.config.retention.is_empty() {
        return;
    }
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            for tenant in ledger.keyring.tenants() {
                if let Err(e) = expire_tenant(&ledger, &tenant).await {
                    tracing::error!(tenant = %tenant, error = %e.detail, "retention expiry failed");
                }
            }
        }
    });
}

/// Expires one tenant now: returns (keys destroyed, index rows dropped).
pub async fn expire_tenant(ledger: &Arc<Ledger>, tenant: &str) -> Result<(usize, u64)> {
    let Some(keep) = retention_of(ledger, tenant) else {
        return Ok((0, 0));
    };
    match ledger.holds.holds(tenant) {
        Ok(false) => {}
        Ok(true) => return Ok((0, 0)),
        Err(e) => {
            // Unknown holds: nothing may expire until they can be read.
            return Err(Error::unavailable(format!("reading legal holds: {e}")));
        }
    }
    let cutoff = now_unix().saturating_sub(keep.as_secs());
    let key_cutoff = cutoff.saturating_sub(ledger.keyring.max_key_age().as_secs());
    let (ring, index, t) = (
        ledger.keyring.clone(),
        ledger.index.clone(),
        tenant.to_string(),
    );
    // On a shared log the keyring and the search index are shared too: the
    // publisher destroys expired keys and drops index rows (and logs it)
    // for every node.
    let keys_here = !ledger.store.shared() || ledger.store.is_publisher();
    let rows_here = !index.shared() || ledger.store.is_publisher();
    let (keys, rows) = tokio::task::spawn_blocking(move || {
        let keys = if keys_here {
            ring.expire(&t, key_cutoff)?
        } else {
            0
        };
        let rows = if rows_here {
            index
                .delete_before(&t, (cutoff as i64).saturating_mul(1000))
                .map_err(|e| aiaudit_keyring::Error::Invalid(e.to_string()))?
        } else {
            0
        };
        Ok::<_, aiaudit_keyring::Error>((keys, rows))
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?
    .map_err(|e| Error::unavailable(format!("retention: {e}")))?;
    if keys > 0 {
        ledger
            .erasure_epoch
            .fetch_add(keys as u64, std::sync::atomic::Ordering::Relaxed);
    }
    if keys_here && (keys > 0 || rows > 0) {
        tracing::info!(tenant, keys, rows, "retention expiry");
        log_event(
            ledger,
            tenant,
            "retention.expiry",
            "aiaudit",
            json!({"keys_destroyed": keys, "index_rows_dropped": rows,
                   "retention_seconds": keep.as_secs(), "cutoff_unix": cutoff}),
        )
        .await?;
    }
    Ok((keys, rows))
}

/// Logs what retention and holds do, as an event of the ledger's own.
async fn log_event(
    ledger: &Arc<Ledger>,
    tenant: &str,
    action: &str,
    actor: &str,
    attributes: Value,
) -> Result<u64> {
    let (_, index) =
        crate::sealing::append_own_event(ledger, tenant, action, (actor, "service"), attributes)
            .await?;
    Ok(index)
}

/// Legal holds through [`Ledger`]: scoped like everything else.
impl Ledger {
    /// The holds `who` may see: those of its tenants (every one, for a
    /// reader of all tenants).
    pub fn holds_for(&self, who: &Principal) -> Result<Vec<Hold>> {
        let holds: Vec<Hold> = self
            .holds
            .list()
            .map_err(|e| Error::unavailable(format!("reading legal holds: {e}")))?
            .into_iter()
            .filter(|h| who.can_read_all() || (h.tenant != "*" && who.can_read(&h.tenant)))
            .collect();
        if holds.is_empty() && !who.tenants.iter().any(|t| who.can_read(t)) {
            return Err(Error::forbidden(
                "listing holds needs an auditor or admin token",
            ));
        }
        Ok(holds)
    }

    /// Places a hold on `tenant` (`*`: every tenant, for an admin of all):
    /// expiry stops for it until released. Logged.
    pub async fn place_hold(
        self: &Arc<Self>,
        who: &Principal,
        tenant: &str,
        reason: &str,
    ) -> Result<Hold> {
        if !who.is_admin() {
            return Err(Error::forbidden("legal holds are placed by admin tokens"));
        }
        if tenant != "*" && !aiaudit_event::is_valid_tenant(tenant) {
            return Err(Error::bad_field(
                "invalid-hold",
                "Invalid legal hold",
                "tenant",
                "not a tenant name (1 to 64 letters, digits, '-', '_', '.'), nor \"*\"",
            ));
        }
        if !who.can_administer(tenant) {
            return Err(Error::forbidden(format!(
                "this token may not place holds on tenant {tenant:?}{}",
                if tenant == "*" {
                    " (every tenant: an admin of all tenants only)"
                } else {
                    ""
                }
            )));
        }
        let hold = Hold {
            id: uuid::Uuid::now_v7().to_string(),
            tenant: tenant.to_string(),
            reason: reason.to_string(),
            placed_unix: now_unix(),
            placed_by: who.token_id.clone(),
        };
        self.holds.update(|holds| {
            holds.push(hold.clone());
            Ok(())
        })?;
        let log_tenant = if tenant == "*" { "aiaudit" } else { tenant };
        log_event(
            self,
            log_tenant,
            "legal_hold.placed",
            &who.provenance(),
            json!({"hold_id": hold.id, "hold_tenant": tenant, "reason": reason}),
        )
        .await?;
        Ok(hold)
    }

    /// Releases a hold; expiry resumes. Holds beyond `who`'s tenants are
    /// answered as unknown. Logged.
    pub async fn release_hold(self: &Arc<Self>, who: &Principal, id: &str) -> Result<Hold> {
        if !who.is_admin() {
            return Err(Error::forbidden("legal holds are released by admin tokens"));
        }
        let released = self.holds.update(|holds| {
            let Some(pos) = holds
                .iter()
                .position(|h| h.id == id && who.can_administer(&h.tenant))
            else {
                return Err(Error::not_found(format!("no legal hold with id {id:?}")));
            };
            Ok(holds.remove(pos))
        })?;
        let log_tenant = if released.tenant == "*" {
            "aiaudit".to_string()
        } else {
            released.tenant.clone()
        };
        log_event(
            self,
            &log_tenant,
            "legal_hold.released",
            &who.provenance(),
            json!({"hold_id": released.id, "hold_tenant": released.tenant}),
        )
        .await?;
        Ok(released)
    }
}
