//! Scheduled compliance checks (seed §9.2, daily automated checks).
//!
//! Every `check_every` (`[compliance]`, default 1 day) the node holding the
//! publisher lease builds each tenant's compliance report for the period
//! since its last check and logs the result as a `compliance.check` record
//! through the engine's one append path: findings by severity, the high
//! ones in full, the checkpoint the report is anchored to and the SHA-256
//! of the report. Each high finding raises a policy violation (rule
//! `compliance_check.<section>`, once while it stays unresolved), which
//! opens an incident under `[incidents] open_from_violations`. Every
//! `archive_every` (default 30 days) the full reports (JSON and HTML) are
//! written to the backup locations as evidence and their SHA-256 logged
//! (`compliance.archived`). The schedule is rebuilt from those records at
//! start, so a restart neither repeats nor skips a check.

use crate::reports::privacy::{Framework, Schedule};
use crate::reports::{self, Format, Request};
use crate::{Error, Ledger, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The record of one check.
pub const CHECK: &str = "compliance.check";
/// The record of one archive of full reports.
pub const ARCHIVED: &str = "compliance.archived";
const ACTIONS: &[&str] = &[CHECK, ARCHIVED];
/// The actor of the records.
pub const ACTOR: &str = "aiaudit-compliance";
/// Longest period one check covers (a ledger that was down for a year
/// checks the last 90 days, not the whole gap).
const MAX_PERIOD_MS: i64 = 90 * 86_400_000;

/// When each (tenant, framework) was last checked and archived, as the log
/// says (period ends, in ms).
#[derive(Default)]
struct Done {
    checked: HashMap<(String, String), i64>,
    archived: HashMap<(String, String), i64>,
    /// Log size read up to.
    folded: u64,
}

impl Done {
    fn apply(&mut self, event: &Value) {
        let tenant = event["tenant"].as_str().unwrap_or_default().to_string();
        let a = &event["attributes"];
        let framework = a["framework"].as_str().unwrap_or_default().to_string();
        let Some(to) = a["period_to_ms"].as_i64() else {
            return;
        };
        let map = match event["action"].as_str() {
            Some(CHECK) => &mut self.checked,
            Some(ARCHIVED) => &mut self.archived,
            _ => return,
        };
        let slot = map.entry((tenant, framework)).or_insert(to);
        *slot = (*slot).max(to);
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Starts the schedule (nothing when `check_every` is 0s).
pub fn spawn(ledger: Arc<Ledger>) -> anyhow::Result<()> {
    let schedule = ledger
        .config
        .compliance
        .schedule()
        .map_err(|e| anyhow::anyhow!(e))?;
    if schedule.check_every_secs == 0 {
        return Ok(());
    }
    let tick = Duration::from_secs((schedule.check_every_secs / 5).clamp(1, 60));
    // A tenant never checked is first checked `check_every` after this
    // node started, over the period since: not at every start, which would
    // check (and log) on each restart.
    let started = now_ms();
    tokio::spawn(async move {
        let mut done = Done::default();
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            // One node checks: the one holding the lease. It first reads
            // what any node logged since it last looked.
            if !ledger.store.is_publisher() {
                continue;
            }
            if let Err(e) = fold(&ledger, &mut done).await {
                tracing::error!(error = %e, "compliance checks: reading earlier checks failed");
                continue;
            }
            run_due(&ledger, &schedule, &mut done, started).await;
        }
    });
    Ok(())
}

async fn fold(ledger: &Arc<Ledger>, done: &mut Done) -> anyhow::Result<()> {
    let l = ledger.clone();
    let from = done.folded;
    let (size, found) = tokio::task::spawn_blocking(move || {
        let size = l.store.size();
        crate::policies::logged_own(&l.store, &l.index, &l.keyring, ACTIONS, "compliance.", from)
            .map(|found| (size, found))
    })
    .await??;
    for (_, event) in found {
        done.apply(&event);
    }
    done.folded = size;
    Ok(())
}

/// The tenants to check: those with keys (every tenant that has logged
/// an event) and those configured under `[compliance.tenants]`.
fn tenants(ledger: &Ledger) -> Vec<String> {
    let mut t = ledger.keyring.tenants();
    t.extend(ledger.config.compliance.tenants.keys().cloned());
    t.sort();
    t.dedup();
    t
}

async fn run_due(ledger: &Arc<Ledger>, schedule: &Schedule, done: &mut Done, started: i64) {
    let now = now_ms();
    let every = schedule.check_every_secs as i64 * 1000;
    let archive_every = schedule.archive_every_secs as i64 * 1000;
    for tenant in tenants(ledger) {
        for framework in &schedule.frameworks {
            let key = (tenant.clone(), framework.as_str().to_string());
            // The period a task due now covers: from its last run (or
            // this node's start) to now, at most MAX_PERIOD_MS.
            let due = |last: Option<&i64>, every: i64| {
                let last = last.copied().unwrap_or(started);
                (now - last >= every).then(|| last.max(now - MAX_PERIOD_MS))
            };
            let Some(from) = due(done.checked.get(&key), every) else {
                continue;
            };
            match check(ledger, &tenant, *framework, from, now).await {
                Ok(event) => done.apply(&event),
                Err(e) => {
                    ledger.metrics.compliance.failed.inc();
                    tracing::error!(tenant = %tenant, framework = framework.as_str(), error = %e.detail, "compliance check failed");
                }
            }
            if archive_every == 0 || ledger.config.backup.locations.is_empty() {
                continue;
            }
            let Some(from) = due(done.archived.get(&key), archive_every) else {
                continue;
            };
            match archive(ledger, &tenant, *framework, from, now).await {
                Ok(event) => done.apply(&event),
                Err(e) => {
                    ledger.metrics.compliance.failed.inc();
                    tracing::error!(tenant = %tenant, framework = framework.as_str(), error = %e.detail, "archiving compliance reports failed");
                }
            }
        }
    }
}

/// `20261203T180636Z`: a time for file names (seconds: two archives of one
/// tenant are never less than a second apart).
fn compact_time(ms: i64) -> String {
    reports::rfc3339(ms)
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .take_while(|c| *c != '.' && *c != 'Z')
        .chain(std::iter::once('Z'))
        .collect()
}

fn request(tenant: &str, framework: Framework, from_ms: i64, to_ms: i64) -> Request {
    Request {
        tenant: tenant.to_string(),
        framework,
        from_ms,
        to_ms,
        format: Format::Json,
    }
}

async fn gather(ledger: &Arc<Ledger>, req: Request, now: i64) -> Result<reports::Report> {
    let l = ledger.clone();
    tokio::task::spawn_blocking(move || reports::gather(&l, &req, now))
        .await
        .map_err(|e| Error::internal(e.to_string()))?
}

fn record(tenant: &str, action: &str, failed: Option<String>, attributes: Value) -> Value {
    let outcome = match failed {
        Some(reason) => json!({"status": "failure", "reason": reason}),
        None => json!({"status": "success"}),
    };
    json!({
        "id": uuid::Uuid::now_v7().to_string(),
        "time": reports::rfc3339(now_ms()),
        "tenant": tenant,
        "source": {"name": "aiaudit"},
        "actor": {"id": ACTOR, "type": "service"},
        "action": action,
        "outcome": outcome,
        "attributes": attributes,
    })
}

/// Checks one tenant now: logs `compliance.check`, raises a violation for
/// each new high finding, sets the metrics. Returns the record.
pub async fn check(
    ledger: &Arc<Ledger>,
    tenant: &str,
    framework: Framework,
    from_ms: i64,
    to_ms: i64,
) -> Result<Value> {
    let report = gather(ledger, request(tenant, framework, from_ms, to_ms), to_ms).await?;
    let json_bytes = serde_json::to_vec(&report).map_err(|e| Error::internal(e.to_string()))?;
    let count = |s: &str| report.findings.iter().filter(|f| f.severity == s).count();
    let high: Vec<&reports::Finding> = report
        .findings
        .iter()
        .filter(|f| f.severity == "high")
        .collect();
    let attributes = json!({
        "framework": framework.as_str(),
        "period_from": report.period.from,
        "period_to": report.period.to,
        "period_from_ms": from_ms,
        "period_to_ms": to_ms,
        "findings": {"high": count("high"), "medium": count("medium"), "info": count("info")},
        "high_findings": high.iter().map(|f| json!({"section": f.section, "text": f.text})).collect::<Vec<_>>(),
        "checkpoint_size": report.log.checkpoint_size,
        "checkpoint_root": report.log.root,
        "report_sha256": hex::encode(Sha256::digest(&json_bytes)),
    });
    let failed = (!high.is_empty()).then(|| format!("{} high finding(s)", high.len()));
    let event = record(tenant, CHECK, failed, attributes);
    let appended = ledger.append_own(vec![event.clone()]).await?;
    let index = appended.first().map(|a| a.index);
    let m = &ledger.metrics.compliance;
    let label = ledger.metrics.tenant_label(tenant);
    m.checks.inc();
    for severity in ["high", "medium", "info"] {
        m.set_findings(&label, framework.as_str(), severity, count(severity) as i64);
    }
    m.set_last_check(&label, framework.as_str(), to_ms / 1000);
    raise_violations(ledger, tenant, &event, index, &high).await;
    tracing::info!(
        tenant,
        framework = framework.as_str(),
        high = high.len(),
        "compliance check logged"
    );
    Ok(event)
}

/// A violation per high finding whose rule has none unresolved (findings
/// about violations are violations already).
async fn raise_violations(
    ledger: &Arc<Ledger>,
    tenant: &str,
    event: &Value,
    index: Option<u64>,
    high: &[&reports::Finding],
) {
    let open = ledger
        .policies
        .violations
        .list(|r| r.tenant == tenant && r.status != crate::policies::Status::Resolved);
    let mut found = Vec::new();
    for f in high.iter().filter(|f| f.section != "violations") {
        let rule = format!("compliance_check.{}", f.section);
        if open.iter().any(|r| r.rule() == rule)
            || found
                .iter()
                .any(|v: &aiaudit_policy::Violation| v.rule == rule)
        {
            continue;
        }
        found.push(aiaudit_policy::Violation {
            rule,
            severity: aiaudit_policy::Severity::High,
            description: "A scheduled compliance check found a high finding".into(),
            tenant: tenant.to_string(),
            event_id: event["id"].as_str().map(str::to_string),
            event_index: index,
            source: None,
            detail: f.text.clone(),
        });
    }
    if !found.is_empty() {
        crate::policies::raise(ledger, found).await;
    }
}

/// Archives one tenant's full reports for a period to every backup
/// location, then logs `compliance.archived` with their SHA-256.
pub async fn archive(
    ledger: &Arc<Ledger>,
    tenant: &str,
    framework: Framework,
    from_ms: i64,
    to_ms: i64,
) -> Result<Value> {
    let report = gather(ledger, request(tenant, framework, from_ms, to_ms), to_ms).await?;
    let json_bytes =
        serde_json::to_vec_pretty(&report).map_err(|e| Error::internal(e.to_string()))?;
    let html_bytes = reports::render::html(&report).into_bytes();
    let stem = format!(
        "evidence/compliance/{tenant}/{}-{}-{}",
        framework.as_str(),
        compact_time(from_ms),
        compact_time(to_ms)
    );
    let mut files = Vec::new();
    for (ext, bytes) in [("json", json_bytes), ("html", html_bytes)] {
        let name = format!("{stem}.{ext}");
        let sha = hex::encode(Sha256::digest(&bytes));
        for spec in &ledger.config.backup.locations {
            let location = aiaudit_backup::Location::parse(spec)
                .map_err(|e| Error::internal(format!("backup location {spec}: {e}")))?;
            location
                .put(&name, bytes.clone())
                .await
                .map_err(|e| Error::unavailable(format!("{location}: writing {name}: {e:#}")))?;
        }
        files.push(json!({"name": name, "sha256": sha, "bytes": bytes.len()}));
    }
    let locations: Vec<String> = ledger
        .config
        .backup
        .locations
        .iter()
        .map(|s| {
            aiaudit_backup::Location::parse(s)
                .map(|l| l.to_string())
                .unwrap_or_else(|_| s.clone())
        })
        .collect();
    let event = record(
        tenant,
        ARCHIVED,
        None,
        json!({
            "framework": framework.as_str(),
            "period_from": report.period.from,
            "period_to": report.period.to,
            "period_from_ms": from_ms,
            "period_to_ms": to_ms,
            "files": files,
            "locations": locations,
        }),
    );
    ledger.append_own(vec![event.clone()]).await?;
    ledger.metrics.compliance.archives.inc();
    tracing::info!(
        tenant,
        framework = framework.as_str(),
        "compliance reports archived"
    );
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_carry_the_time_to_the_second() {
        assert_eq!(compact_time(1_796_320_000_123), "20261203T174640Z");
        assert_eq!(compact_time(0), "19700101T000000Z");
    }

    #[test]
    fn done_keeps_the_latest_period_end_per_tenant_and_framework() {
        let mut d = Done::default();
        let ev = |action: &str, tenant: &str, to: i64| {
            json!({"action": action, "tenant": tenant,
                   "attributes": {"framework": "eu-ai-act", "period_to_ms": to}})
        };
        d.apply(&ev(CHECK, "acme", 200));
        d.apply(&ev(CHECK, "acme", 100));
        d.apply(&ev(ARCHIVED, "acme", 50));
        d.apply(&ev("policy.violation", "acme", 999));
        let key = ("acme".to_string(), "eu-ai-act".to_string());
        assert_eq!(d.checked.get(&key), Some(&200));
        assert_eq!(d.archived.get(&key), Some(&50));
        assert_eq!(d.checked.len(), 1);
    }
}
