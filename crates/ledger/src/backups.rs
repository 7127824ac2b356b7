//! The backup schedule inside `serve`: a full backup daily (02:00 UTC by
//! default) and an incremental one every few hours, to every configured
//! location, each read back and verified on its own, old ones expired by
//! retention; status in metrics and `/v1/info`.

use crate::Ledger;
use aiaudit_backup::{Kind, Location, LogSource, Manifest, Quiet};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;

/// When and where `serve` takes backups (off without locations).
#[derive(Debug, Clone)]
pub struct BackupSchedule {
    pub locations: Vec<String>,
    /// Minutes after midnight UTC of the daily full backup.
    pub full_at_minute: u32,
    pub incremental_every: Duration,
    pub keep_full: Duration,
    pub keep_incremental: Duration,
}

impl Default for BackupSchedule {
    fn default() -> Self {
        BackupSchedule {
            locations: Vec::new(),
            full_at_minute: 2 * 60,
            incremental_every: Duration::from_secs(6 * 3600),
            keep_full: Duration::from_secs(30 * 86400),
            keep_incremental: Duration::from_secs(7 * 86400),
        }
    }
}

impl BackupSchedule {
    /// How old the newest good backup may get before the schedule is late:
    /// one incremental interval plus an hour for the backup itself.
    pub fn max_age(&self) -> Duration {
        self.incremental_every
            .saturating_add(Duration::from_secs(3600))
    }
}

/// Parses `HH:MM` (UTC).
pub fn parse_hh_mm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    // Lazily: `h * 60` of an hour out of range overflows (found by fuzzing).
    (h < 24 && m < 60).then(|| h * 60 + m)
}

/// What the schedule knows about one location.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LocationStatus {
    pub location: String,
    pub last_success_unix: Option<u64>,
    pub last_full_unix: Option<u64>,
    pub last_id: Option<String>,
    pub last_size: Option<u64>,
    pub last_verified_unix: Option<u64>,
    pub last_error: Option<String>,
    pub backups: usize,
}

#[derive(Default)]
pub struct BackupStatus {
    pub locations: Mutex<Vec<LocationStatus>>,
}

impl BackupStatus {
    pub fn to_json(&self, schedule: &BackupSchedule) -> Value {
        if schedule.locations.is_empty() {
            return json!({"scheduled": false});
        }
        json!({
            "scheduled": true,
            "full_at_utc": format!("{:02}:{:02}", schedule.full_at_minute / 60, schedule.full_at_minute % 60),
            "incremental_every_seconds": schedule.incremental_every.as_secs(),
            "max_age_seconds": schedule.max_age().as_secs(),
            "locations": *self.locations.lock().expect("backup status lock"),
        })
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn created_unix(m: &Manifest) -> Option<u64> {
    let t =
        OffsetDateTime::parse(&m.created, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp()).ok()
}

/// The ledger itself as the source of its backups (no HTTP round trips).
struct LocalSource(Arc<Ledger>);

impl LogSource for LocalSource {
    async fn checkpoint(&self) -> anyhow::Result<String> {
        Ok(self.0.latest.borrow().note.clone())
    }
    async fn verifier_key(&self) -> anyhow::Result<Option<String>> {
        Ok(Some(self.0.verifier.to_vkey()))
    }
    async fn entry_bundle(&self, index: u64, width: u16) -> anyhow::Result<Vec<u8>> {
        let store = self.0.store.clone();
        Ok(tokio::task::spawn_blocking(move || {
            store.read_entry_bundle(index * aiaudit_tlog::TILE_WIDTH, width as u64)
        })
        .await??)
    }
    async fn blob(&self, id: &aiaudit_tlog::Hash) -> anyhow::Result<Vec<u8>> {
        let store = self.0.store.clone();
        let id = *id;
        Ok(tokio::task::spawn_blocking(move || {
            let len = store.blob_len(&id)?.ok_or_else(|| {
                aiaudit_store::Error::Format(format!("no blob {}", aiaudit_store::blob_name(&id)))
            })?;
            store.read_blob(&id, 0, len as usize)
        })
        .await??)
    }
    async fn keyring_len(&self) -> anyhow::Result<Option<u64>> {
        let ring = self.0.keyring.clone();
        Ok(Some(
            tokio::task::spawn_blocking(move || ring.image_len()).await??,
        ))
    }
    async fn keyring_range(&self, offset: u64, len: u64) -> anyhow::Result<Vec<u8>> {
        let ring = self.0.keyring.clone();
        Ok(tokio::task::spawn_blocking(move || ring.image_range(offset, len)).await??)
    }
}

/// Starts the schedule (nothing without locations).
pub fn spawn(ledger: Arc<Ledger>) -> anyhow::Result<()> {
    let schedule = ledger.config.backup.clone();
    if schedule.locations.is_empty() {
        return Ok(());
    }
    let locations = schedule
        .locations
        .iter()
        .map(|l| Location::parse(l))
        .collect::<anyhow::Result<Vec<_>>>()?;
    *ledger
        .backup_status
        .locations
        .lock()
        .expect("backup status lock") = locations
        .iter()
        .map(|l| LocationStatus {
            location: l.to_string(),
            ..Default::default()
        })
        .collect();
    // A thread and runtime of its own: backups read the whole log and must
    // not compete with request handling for the server's workers.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("backups".into())
        .spawn(move || {
            runtime.block_on(async move {
                let started = now_unix();
                for (i, loc) in locations.iter().enumerate() {
                    refresh(&ledger, i, loc).await;
                }
                loop {
                    // On a shared log only the publishing node backs it up,
                    // after reading what the others may have written.
                    let shared = ledger.store.shared();
                    for (i, loc) in locations.iter().enumerate() {
                        if shared {
                            if !ledger.store.is_publisher() {
                                continue;
                            }
                            refresh(&ledger, i, loc).await;
                        }
                        let st = ledger
                            .backup_status
                            .locations
                            .lock()
                            .expect("backup status lock")[i]
                            .clone();
                        if let Some(kind) = due(&st, &schedule, now_unix()) {
                            run_one(&ledger, i, loc, kind, &schedule).await;
                        }
                    }
                    update_metrics(&ledger, &schedule, started);
                    let tick = (schedule.incremental_every / 4)
                        .clamp(Duration::from_secs(1), Duration::from_secs(30));
                    tokio::time::sleep(tick).await;
                }
            })
        })?;
    Ok(())
}

/// Reads what a location holds into the status (at start and after each run).
async fn refresh(ledger: &Ledger, i: usize, loc: &Location) {
    let manifests = loc.manifests().await;
    let mut all = ledger
        .backup_status
        .locations
        .lock()
        .expect("backup status lock");
    let st = &mut all[i];
    match manifests {
        Ok(ms) => {
            st.backups = ms.len();
            if let Some(last) = aiaudit_backup::layout::latest(&ms) {
                st.last_id = Some(last.id.clone());
                st.last_size = Some(last.size);
                st.last_success_unix = st.last_success_unix.max(created_unix(last));
            }
            st.last_full_unix = ms
                .iter()
                .filter(|m| m.kind == Kind::Full)
                .filter_map(created_unix)
                .max();
        }
        Err(e) => st.last_error = Some(format!("{e:#}")),
    }
}

/// Which backup (if any) location `i` needs at `now`: a full one when it
/// has none or the daily full time has passed since the last; else an
/// incremental one when the interval has passed.
pub fn due(st: &LocationStatus, s: &BackupSchedule, now: u64) -> Option<Kind> {
    let Some(last_full) = st.last_full_unix else {
        return Some(Kind::Full);
    };
    let day = 86_400;
    let today_full = now - now % day + s.full_at_minute as u64 * 60;
    let last_slot = if now >= today_full {
        today_full
    } else {
        today_full - day
    };
    if last_full < last_slot {
        return Some(Kind::Full);
    }
    let last = st.last_success_unix.unwrap_or(0);
    (now >= last.saturating_add(s.incremental_every.as_secs())).then_some(Kind::Incremental)
}

async fn run_one(ledger: &Arc<Ledger>, i: usize, loc: &Location, kind: Kind, s: &BackupSchedule) {
    let source = LocalSource(ledger.clone());
    let incremental = kind == Kind::Incremental;
    let result = async {
        let mut results = aiaudit_backup::create(
            &source,
            std::slice::from_ref(loc),
            incremental,
            Some(&ledger.verifier),
            &Quiet,
        )
        .await?;
        let summary = results.remove(0)?;
        // A backup counts only once it is read back and would restore.
        aiaudit_backup::verify(loc, Some(&summary.id), Some(&ledger.verifier), &Quiet).await?;
        Ok::<_, anyhow::Error>(summary)
    }
    .await;
    let now = now_unix();
    match &result {
        Ok(summary) => {
            tracing::info!(location = %loc, id = %summary.id, size = summary.size, "backup taken and verified");
            let mut all = ledger
                .backup_status
                .locations
                .lock()
                .expect("backup status lock");
            let st = &mut all[i];
            st.last_success_unix = Some(now);
            st.last_verified_unix = Some(now);
            if !incremental {
                st.last_full_unix = Some(now);
            }
            st.last_error = None;
            ledger.metrics.backup_result(&loc.to_string(), true);
        }
        Err(e) => {
            tracing::error!(location = %loc, error = %format!("{e:#}"), "backup failed");
            let mut all = ledger
                .backup_status
                .locations
                .lock()
                .expect("backup status lock");
            all[i].last_error = Some(format!("{e:#}"));
            // Retry at the next tick rather than wait a whole interval.
            ledger.metrics.backup_result(&loc.to_string(), false);
        }
    }
    if result.is_ok() {
        expire(loc, s).await;
        refresh(ledger, i, loc).await;
    }
}

/// Retention: full backups older than `keep_full` (never the newest full),
/// incremental ones older than `keep_incremental`.
async fn expire(loc: &Location, s: &BackupSchedule) {
    let Ok(manifests) = loc.manifests().await else {
        return;
    };
    let now = now_unix();
    let newest_full = manifests
        .iter()
        .filter(|m| m.kind == Kind::Full)
        .map(|m| m.id.clone())
        .max();
    for m in &manifests {
        let age = now.saturating_sub(created_unix(m).unwrap_or(now));
        let keep = match m.kind {
            Kind::Full => s.keep_full,
            Kind::Incremental => s.keep_incremental,
        };
        if age > keep.as_secs() && Some(&m.id) != newest_full.as_ref() {
            match loc.delete_backup(&m.id).await {
                Ok(()) => tracing::info!(location = %loc, id = %m.id, "expired backup deleted"),
                Err(e) => {
                    tracing::warn!(location = %loc, id = %m.id, error = %format!("{e:#}"), "deleting an expired backup failed")
                }
            }
        }
    }
}

fn update_metrics(ledger: &Ledger, s: &BackupSchedule, started: u64) {
    let now = now_unix();
    let all = ledger
        .backup_status
        .locations
        .lock()
        .expect("backup status lock");
    for st in all.iter() {
        let since = st.last_success_unix.unwrap_or(started);
        ledger.metrics.backup_age(
            &st.location,
            now.saturating_sub(since) as f64,
            s.max_age().as_secs_f64(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_values_neither_panic_nor_wrap() {
        // Found by fuzzing: hours times 60 overflowed before the range check.
        assert_eq!(parse_hh_mm("4108410001:4"), None);
        let s = BackupSchedule {
            incremental_every: Duration::from_secs(u64::MAX),
            ..Default::default()
        };
        assert_eq!(s.max_age(), Duration::MAX);
        let st = LocationStatus {
            last_success_unix: Some(1_000),
            ..Default::default()
        };
        // An incremental backup is never due, rather than due at every check.
        assert_ne!(due(&st, &s, 2_000), Some(Kind::Incremental));
    }

    #[test]
    fn parses_times_of_day() {
        assert_eq!(parse_hh_mm("02:00"), Some(120));
        assert_eq!(parse_hh_mm("23:59"), Some(1439));
        assert_eq!(parse_hh_mm("24:00"), None);
        assert_eq!(parse_hh_mm("2"), None);
    }

    #[test]
    fn a_full_backup_daily_and_incrementals_between() {
        let s = BackupSchedule::default();
        let day = 86_400;
        let t = 100 * day; // midnight UTC
        let mut st = LocationStatus::default();
        assert_eq!(due(&st, &s, t), Some(Kind::Full), "none yet: full");
        st.last_full_unix = Some(t + 2 * 3600);
        st.last_success_unix = Some(t + 2 * 3600);
        assert_eq!(due(&st, &s, t + 3 * 3600), None);
        assert_eq!(due(&st, &s, t + 8 * 3600), Some(Kind::Incremental));
        st.last_success_unix = Some(t + 8 * 3600);
        assert_eq!(due(&st, &s, t + 9 * 3600), None);
        // Past 02:00 the next day: the daily full.
        assert_eq!(due(&st, &s, t + day + 2 * 3600 + 60), Some(Kind::Full));
        assert_eq!(
            due(&st, &s, t + day + 3600),
            Some(Kind::Incremental),
            "before 02:00 an incremental, not yet the full"
        );
    }
}
