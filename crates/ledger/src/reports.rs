//! Compliance reports: `GET /v1/reports/compliance`, one tenant over a
//! period, as JSON, Markdown or a self-contained HTML page with charts.
//!
//! Every number comes from the search index (pure SQL aggregates), the
//! latest signed checkpoint, the server's configuration and metrics, and the
//! violations' lifecycle folded from the log. What each section attests,
//! and what it cannot, is in docs/reports.md.

pub mod privacy;
pub mod render;

use crate::auth::Principal;
use crate::error::Error;
use crate::Ledger;
use aiaudit_index::{Period, Tally, DAY_MS};
use base64::Engine;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;

/// Art. 19(1) and 26(6): logs kept for at least six months.
pub const REQUIRED_RETENTION_DAYS: u64 = 183;
/// The period when `from` is not given.
const DEFAULT_DAYS: i64 = 30;
/// The longest period one report covers (the charts have a point per day).
const MAX_DAYS: i64 = 3660;
/// Erasure events opened to sum the keys they destroyed; beyond, the sum is left out.
const MAX_ERASURES_OPENED: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Html,
    Markdown,
}

/// A parsed report request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub tenant: String,
    /// eu-ai-act (default), ndpa, popia or kenya-dpa.
    pub framework: privacy::Framework,
    pub from_ms: i64,
    pub to_ms: i64,
    pub format: Format,
}

/// Parses the query parameters; `now_ms` supplies the default period (the
/// last 30 days). Each error names its parameter.
pub fn parse_request(params: &HashMap<String, String>, now_ms: i64) -> Result<Request> {
    if let Some(name) = params
        .keys()
        .find(|k| !["tenant", "from", "to", "format", "framework"].contains(&k.as_str()))
    {
        return Err(Error::bad_parameter(
            name,
            "unknown parameter; a report takes tenant, from, to, format and framework",
        ));
    }
    let get = |n: &str| params.get(n).map(|v| v.trim()).filter(|v| !v.is_empty());
    let tenant = get("tenant")
        .ok_or_else(|| Error::bad_parameter("tenant", "required: the tenant to report on"))?
        .to_string();
    let time = |n: &str| -> Result<Option<i64>> {
        get(n)
            .map(|v| {
                aiaudit_index::parse_time_ms(v).ok_or_else(|| {
                    Error::bad_parameter(n, format!("{v:?} is not an RFC 3339 time"))
                })
            })
            .transpose()
    };
    let to_ms = time("to")?.unwrap_or(now_ms);
    let from_ms = time("from")?.unwrap_or(to_ms.saturating_sub(DEFAULT_DAYS * DAY_MS));
    if from_ms >= to_ms {
        return Err(Error::bad_parameter("to", "must be later than from"));
    }
    if to_ms - from_ms > MAX_DAYS * DAY_MS {
        return Err(Error::bad_parameter(
            "from",
            format!("a report covers at most {MAX_DAYS} days: split the period"),
        ));
    }
    let format = match get("format") {
        None | Some("json") => Format::Json,
        Some("html") => Format::Html,
        Some("md" | "markdown") => Format::Markdown,
        Some(f) => {
            return Err(Error::bad_parameter(
                "format",
                format!("{f:?} is not json, html or md"),
            ))
        }
    };
    let framework = match get("framework") {
        None => privacy::Framework::EuAiAct,
        Some(f) => privacy::Framework::parse(f).ok_or_else(|| {
            Error::bad_parameter(
                "framework",
                format!("{f:?} is not eu-ai-act, ndpa, popia or kenya-dpa"),
            )
        })?,
    };
    Ok(Request {
        tenant,
        framework,
        from_ms,
        to_ms,
        format,
    })
}

// ---- the report -------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// eu-ai-act, ndpa, popia or kenya-dpa.
    pub framework: &'static str,
    pub period: PeriodInfo,
    pub tenant: String,
    pub generated_at: String,
    pub log: LogInfo,
    pub art12: Art12,
    pub art19_26_retention: Retention,
    pub art14_oversight: Oversight,
    pub integrity: Integrity,
    pub violations: ViolationSummary,
    pub data_protection: DataProtection,
    /// Who read the tenant's records in the period (`trail.access`).
    pub access: AccessSummary,
    /// NDPA, POPIA or Kenya DPA: processing records, erasures, breaches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privacy: Option<privacy::Privacy>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeriodInfo {
    #[serde(skip)]
    pub from_ms: i64,
    pub from: String,
    pub to: String,
    pub days: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogInfo {
    pub origin: String,
    pub checkpoint_size: u64,
    /// Base64 root hash of the checkpoint.
    pub root: String,
    /// The signed checkpoint (a signed note), verifiable with `verifier_key`.
    pub checkpoint: String,
    pub verifier_key: String,
    /// The witnesses of the log's witness policy that cosigned `checkpoint`
    /// (vouching that the period's history is the one everyone sees).
    pub witnesses: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Art12 {
    /// The AI systems' events (the ledger's own records not included).
    pub total_events: u64,
    pub systems: Vec<System>,
    /// The ledger's own records in the period, per source (violations,
    /// erasures, incidents, compliance checks): not AI systems.
    pub ledger_records: std::collections::BTreeMap<String, u64>,
}

/// One AI system (`source.name`) in the period.
#[derive(Debug, Clone, Serialize)]
pub struct System {
    /// `None` for events without a source name.
    pub system: Option<String>,
    pub events: u64,
    pub first: String,
    pub last: String,
    pub days_with_events: u64,
    pub days_in_period: u64,
    pub actions: BTreeMap<String, u64>,
    /// Events per day of the period, from its start.
    pub per_day: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Retention {
    /// "forever", or "<n> days".
    pub configured: String,
    pub configured_days: Option<u64>,
    /// Where the setting comes from: "tenant", "*" or "default".
    pub configured_by: &'static str,
    pub required_days: u64,
    pub configured_ok: bool,
    pub oldest_record: Option<String>,
    pub actual_days: Option<u64>,
    /// `None` when it cannot be shown yet (the tenant's records are younger
    /// than the requirement): not a failure.
    pub actual_ok: Option<bool>,
    /// "ok", "not yet demonstrable" or "no records".
    pub actual_status: &'static str,
    pub findings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Oversight {
    pub reviews: u64,
    pub overrides: u64,
    /// Events with risk_level high or critical.
    pub high_risk_events: u64,
    pub agent_decisions: u64,
    pub high_risk_agent_decisions: u64,
    /// (reviews + overrides) / high-risk events; `None` without high-risk events.
    pub review_ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Integrity {
    pub checkpoint_size: u64,
    pub checkpoint_root: String,
    pub checkpoint_age_seconds: f64,
    pub verification_failures_since_start: u64,
    pub indexed_size: u64,
    pub index_lag_events: u64,
    /// Command lines that check the log independently of this server.
    pub verify: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RuleStat {
    pub rule: String,
    pub count: u64,
    /// From the violation events; "unknown" when none could be read.
    pub severity: String,
    pub resolved: u64,
    pub unresolved: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ViolationSummary {
    pub total: u64,
    pub rules: Vec<RuleStat>,
    /// `policy.violation.resolved` events logged in the period.
    pub resolutions_logged: u64,
}

/// Access to the trail in the period: the `trail.access` records the
/// ledger logged for this tenant, per reader (each merges up to a second of
/// that reader's reads, searches, exports and reports).
#[derive(Debug, Clone, Serialize)]
pub struct AccessSummary {
    pub records: u64,
    pub readers: Vec<ReaderAccess>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReaderAccess {
    /// `token:<id>` or `cert:<name>`.
    pub reader: String,
    pub records: u64,
}

fn access(ledger: &Ledger, p: &Period) -> aiaudit_index::Result<AccessSummary> {
    let readers: Vec<ReaderAccess> = ledger
        .index
        .actors_of(p, crate::access::ACCESS)?
        .into_iter()
        .map(|t| ReaderAccess {
            reader: t.key.unwrap_or_default(),
            records: t.count,
        })
        .collect();
    Ok(AccessSummary {
        records: readers.iter().map(|r| r.records).sum(),
        readers,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct DataProtection {
    /// `data.erasure` events in the period.
    pub erasures: u64,
    /// Keys destroyed by them; `None` when their content could not all be read.
    pub keys_destroyed: Option<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// "high", "medium" or "info".
    pub severity: &'static str,
    pub section: &'static str,
    pub text: String,
}

// ---- pure pieces ------------------------------------------------------------

/// RFC 3339 (UTC) of a time in milliseconds; the number itself if out of range.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// The date (YYYY-MM-DD, UTC) of a time in milliseconds.
pub fn date(ms: i64) -> String {
    let s = rfc3339(ms);
    s.get(..10).unwrap_or(&s).to_string()
}

fn days_in(from_ms: i64, to_ms: i64) -> u64 {
    ((to_ms - from_ms + DAY_MS - 1) / DAY_MS).max(0) as u64
}

/// The per-day series of one source, zero on days without events.
fn per_day(
    daily: &[Tally<aiaudit_index::DaySource>],
    source: &Option<String>,
    days: u64,
) -> Vec<u64> {
    let mut out = vec![0; days as usize];
    for t in daily.iter().filter(|t| &t.key.1 == source) {
        if let Some(slot) = out.get_mut(t.key.0 as usize) {
            *slot = t.count;
        }
    }
    out
}

/// The retention section: the configured setting against the requirement,
/// and how far back the tenant's records actually go.
pub fn retention(
    configured: Option<(Duration, &'static str)>,
    oldest_ms: Option<i64>,
    now_ms: i64,
) -> Retention {
    let required = REQUIRED_RETENTION_DAYS;
    let configured_days = configured.map(|(d, _)| d.as_secs() / 86_400);
    let configured_ok = configured_days.is_none_or(|d| d >= required);
    let actual_days = oldest_ms.map(|o| (now_ms.saturating_sub(o).max(0) / DAY_MS) as u64);
    let (actual_ok, actual_status) = match actual_days {
        None => (None, "no records"),
        Some(d) if d >= required => (Some(true), "ok"),
        Some(_) => (None, "not yet demonstrable"),
    };
    let mut findings = Vec::new();
    if let Some(d) = configured_days.filter(|d| *d < required) {
        findings.push(format!(
            "retention is configured to {d} days: Art. 19 and 26 require at least six months ({required} days)"
        ));
    }
    if let Some(d) = actual_days.filter(|d| *d < required) {
        findings.push(format!(
            "the oldest record is {d} days old: six months of retention cannot be shown yet"
        ));
    }
    Retention {
        configured: configured_days.map_or("forever".to_string(), |d| format!("{d} days")),
        configured_days,
        configured_by: configured.map_or("default", |(_, by)| by),
        required_days: required,
        configured_ok,
        oldest_record: oldest_ms.map(rfc3339),
        actual_days,
        actual_ok,
        actual_status,
        findings,
    }
}

fn oversight(
    reviews: u64,
    overrides: u64,
    high: u64,
    decisions: u64,
    high_decisions: u64,
) -> Oversight {
    Oversight {
        reviews,
        overrides,
        high_risk_events: high,
        agent_decisions: decisions,
        high_risk_agent_decisions: high_decisions,
        review_ratio: (high > 0).then(|| (reviews + overrides) as f64 / high as f64),
    }
}

/// The rule of a violation's actor (`policy:<rule>`).
fn rule_of(actor: Option<&str>) -> String {
    match actor {
        Some(a) => a.strip_prefix("policy:").unwrap_or(a).to_string(),
        None => "(unknown)".to_string(),
    }
}

/// The findings a reader should act on, most severe first.
pub fn findings(r: &Report) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut add = |severity, section, text: String| {
        out.push(Finding {
            severity,
            section,
            text,
        })
    };
    if r.art12.total_events == 0 {
        add(
            "high",
            "art12",
            format!(
                "no events were logged for tenant {} in the period",
                r.tenant
            ),
        );
    }
    // (The ledger's own records are not among the systems: gaps in them,
    // which come when there is something to record, say nothing.)
    for s in &r.art12.systems {
        if s.days_with_events < s.days_in_period {
            add(
                "info",
                "art12",
                format!(
                    "system {} logged events on {} of {} days",
                    s.system.as_deref().unwrap_or("(unnamed)"),
                    s.days_with_events,
                    s.days_in_period
                ),
            );
        }
    }
    let ret = &r.art19_26_retention;
    if !ret.configured_ok {
        add("high", "art19_26_retention", ret.findings[0].clone());
    }
    if ret.actual_status == "not yet demonstrable" {
        add(
            "info",
            "art19_26_retention",
            ret.findings.last().cloned().unwrap_or_default(),
        );
    }
    let o = &r.art14_oversight;
    if o.high_risk_events > 0 && o.reviews + o.overrides == 0 {
        add(
            "medium",
            "art14_oversight",
            format!(
                "{} high-risk events and no human review or override recorded",
                o.high_risk_events
            ),
        );
    }
    if r.integrity.verification_failures_since_start > 0 {
        add(
            "high",
            "integrity",
            format!(
                "{} integrity checks failed since the server started",
                r.integrity.verification_failures_since_start
            ),
        );
    }
    if r.integrity.index_lag_events > 0 {
        add(
            "info",
            "integrity",
            format!(
                "the search index lags the log by {} entries: the newest events may be missing",
                r.integrity.index_lag_events
            ),
        );
    }
    for v in r.violations.rules.iter().filter(|v| v.unresolved > 0) {
        let severity = if matches!(v.severity.as_str(), "high" | "critical") {
            "high"
        } else {
            "medium"
        };
        add(
            severity,
            "violations",
            format!(
                "{} of {} violations of rule {} ({}) are not resolved",
                v.unresolved, v.count, v.rule, v.severity
            ),
        );
    }
    // A data-protection report shows neither the AI Act's sections nor its
    // six-month minimum (those laws limit storage instead): only what its
    // own sections and the integrity section explain.
    if r.privacy.is_some() {
        out.retain(|f| f.section == "integrity" || (f.section == "art12" && f.severity == "high"));
    }
    {
        let mut add = |severity, section, text: String| {
            out.push(Finding {
                severity,
                section,
                text,
            })
        };
        privacy::findings(r, &mut add);
    }
    let rank = |s: &str| match s {
        "high" => 0,
        "medium" => 1,
        _ => 2,
    };
    out.sort_by_key(|f| rank(f.severity));
    out
}

// ---- gathering --------------------------------------------------------------

pub fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

/// The tenant's retention setting, else the default one ("*").
fn configured_retention(ledger: &Ledger, tenant: &str) -> Option<(Duration, &'static str)> {
    let r = &ledger.config.retention;
    r.get(tenant)
        .map(|d| (*d, "tenant"))
        .or_else(|| r.get("*").map(|d| (*d, "*")))
}

fn systems(ledger: &Ledger, p: &Period, days: u64) -> Result<Art12, aiaudit_index::Error> {
    let sources = ledger.index.sources(p)?;
    let daily = ledger.index.daily_by_source(p)?;
    let actions = ledger.index.actions_by_source(p)?;
    // The ledger's own records (erasures, violations, incidents, checks)
    // are not an AI system's; their sources are reserved, so no caller's
    // events hide among them.
    let (own, sources): (Vec<_>, Vec<_>) = sources.into_iter().partition(|s| {
        s.source
            .as_deref()
            .is_some_and(|n| crate::append::RESERVED_SOURCES.contains(&n))
    });
    let ledger_records = own
        .into_iter()
        .map(|s| (s.source.unwrap_or_default(), s.events))
        .collect();
    let systems: Vec<System> = sources
        .into_iter()
        .map(|s| System {
            actions: actions
                .iter()
                .filter(|t| t.key.0 == s.source)
                .map(|t| (t.key.1.clone(), t.count))
                .collect(),
            per_day: per_day(&daily, &s.source, days),
            events: s.events,
            first: rfc3339(s.first_ms),
            last: rfc3339(s.last_ms),
            days_with_events: s.days_with_events,
            days_in_period: days,
            system: s.source,
        })
        .collect();
    Ok(Art12 {
        total_events: systems.iter().map(|s| s.events).sum(),
        systems,
        ledger_records,
    })
}

fn violations(ledger: &Ledger, p: &Period) -> Result<ViolationSummary, aiaudit_index::Error> {
    let counts = ledger.index.actors_of(p, crate::policies::VIOLATION)?;
    // Severity and status come from the lifecycle folded from the log.
    let records = ledger.policies.violations.list(|r| {
        r.tenant == p.tenant
            && aiaudit_index::parse_time_ms(&r.time).is_some_and(|t| t >= p.from_ms && t < p.to_ms)
    });
    let rules: Vec<RuleStat> = counts
        .iter()
        .map(|t| {
            let rule = rule_of(t.key.as_deref());
            let mine: Vec<_> = records
                .iter()
                .filter(|r| r.attributes["rule"].as_str() == Some(rule.as_str()))
                .collect();
            let resolved = mine
                .iter()
                .filter(|r| r.status == crate::policies::Status::Resolved)
                .count() as u64;
            RuleStat {
                severity: mine
                    .first()
                    .and_then(|r| r.attributes["severity"].as_str())
                    .unwrap_or("unknown")
                    .to_string(),
                resolved,
                unresolved: t.count.saturating_sub(resolved),
                count: t.count,
                rule,
            }
        })
        .collect();
    Ok(ViolationSummary {
        total: rules.iter().map(|r| r.count).sum(),
        rules,
        resolutions_logged: ledger
            .index
            .count_in(p, &[crate::policies::RESOLVED], &[])?,
    })
}

/// Sums `keys_destroyed` over the period's erasure events; `None` when one
/// cannot be read or there are too many to open.
fn keys_destroyed(ledger: &Ledger, p: &Period, erasures: u64) -> Option<u64> {
    if erasures as usize > MAX_ERASURES_OPENED {
        return None;
    }
    let mut q = aiaudit_index::Query {
        tenant: Some(p.tenant.clone()),
        action: Some("data.erasure".into()),
        from_ms: Some(p.from_ms),
        to_ms: Some(p.to_ms),
        limit: aiaudit_index::MAX_LIMIT,
        order: aiaudit_index::Order::Asc,
        ..Default::default()
    };
    let mut sum = 0u64;
    loop {
        let page = ledger.index.query(&q).ok()?;
        for row in &page.rows {
            let entry = ledger.store.read_entry(row.index).ok()?;
            let event = crate::sealing::open_entry(
                &ledger.keyring,
                &*ledger.store,
                &entry,
                crate::sealing::BlobMode::Omit,
            )
            .ok()?
            .event?;
            sum += event.get("attributes")?.get("keys_destroyed")?.as_u64()?;
        }
        match page.next {
            Some(n) => q.after = Some(n),
            None => return Some(sum),
        }
    }
}

fn integrity(ledger: &Ledger, published: &crate::Published, req: &Request) -> Integrity {
    let indexed = ledger.indexed.load(Ordering::Acquire);
    let scheme = if ledger.config.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{}", ledger.config.listen);
    let vkey = ledger.verifier.to_vkey();
    Integrity {
        checkpoint_size: published.checkpoint.size,
        checkpoint_root: base64::engine::general_purpose::STANDARD.encode(published.checkpoint.root),
        checkpoint_age_seconds: published.at.elapsed().as_secs_f64(),
        verification_failures_since_start: ledger.metrics.verification_failures.get(),
        indexed_size: indexed,
        index_lag_events: ledger.store.size().saturating_sub(indexed),
        verify: vec![
            format!(
                "aiaudit verify --url {url} --token <auditor token of every tenant> --vkey '{vkey}' --checkpoint-file saved.checkpoint"
            ),
            format!(
                "aiaudit export --url {url} --token <auditor token> --tenant '{}' --from {} --to {} --out period.tar.gz && aiaudit verify --bundle period.tar.gz --vkey '{vkey}'",
                req.tenant.replace('\'', ""),
                rfc3339(req.from_ms),
                rfc3339(req.to_ms)
            ),
        ],
    }
}

/// Builds the report (blocking: SQLite and the log).
pub fn gather(ledger: &Ledger, req: &Request, now_ms: i64) -> Result<Report> {
    let internal = Error::from;
    let published = ledger.served_checkpoint();
    let p = Period {
        tenant: req.tenant.clone(),
        from_ms: req.from_ms,
        to_ms: req.to_ms,
    };
    let days = days_in(req.from_ms, req.to_ms);
    let count = |actions: &[&str], risks: &[&str]| ledger.index.count_in(&p, actions, risks);
    const HIGH: &[&str] = &["high", "critical"];
    let oversight = oversight(
        count(&["human.review"], &[]).map_err(internal)?,
        count(&["human.override"], &[]).map_err(internal)?,
        count(&[], HIGH).map_err(internal)?,
        count(&["agent.decision"], &[]).map_err(internal)?,
        count(&["agent.decision"], HIGH).map_err(internal)?,
    );
    let erasures = count(&["data.erasure"], &[]).map_err(internal)?;
    let art12 = systems(ledger, &p, days).map_err(internal)?;
    let privacy =
        privacy::gather(ledger, req.framework, &p, &art12.systems, now_ms).map_err(internal)?;
    let mut report = Report {
        framework: req.framework.as_str(),
        period: PeriodInfo {
            from_ms: req.from_ms,
            from: rfc3339(req.from_ms),
            to: rfc3339(req.to_ms),
            days,
        },
        tenant: req.tenant.clone(),
        generated_at: rfc3339(now_ms),
        log: LogInfo {
            origin: ledger.signer.name().to_string(),
            checkpoint_size: published.checkpoint.size,
            root: base64::engine::general_purpose::STANDARD.encode(published.checkpoint.root),
            checkpoint: published.note.clone(),
            verifier_key: ledger.verifier.to_vkey(),
            witnesses: ledger.cosigners(&published.note),
        },
        art12,
        art19_26_retention: retention(
            configured_retention(ledger, &req.tenant),
            ledger.index.oldest_ms(&req.tenant).map_err(internal)?,
            now_ms,
        ),
        art14_oversight: oversight,
        integrity: integrity(ledger, &published, req),
        violations: violations(ledger, &p).map_err(internal)?,
        data_protection: DataProtection {
            erasures,
            keys_destroyed: keys_destroyed(ledger, &p, erasures),
        },
        access: access(ledger, &p).map_err(internal)?,
        privacy,
        findings: Vec::new(),
    };
    report.findings = findings(&report);
    Ok(report)
}

impl Ledger {
    /// The compliance report of one tenant over a period, for its auditors
    /// and admins.
    pub async fn report(
        self: &Arc<Self>,
        who: &Principal,
        req: Request,
        now_ms: i64,
    ) -> Result<Report> {
        if !who.can_read(&req.tenant) {
            return Err(Error::forbidden(format!(
                "this token may not read tenant {:?}",
                req.tenant
            )));
        }
        let l = self.clone();
        let tenant = req.tenant.clone();
        self.note_access(
            who,
            crate::access::Access {
                tenant: tenant.clone(),
                kind: crate::access::Kind::Report,
                indexes: Vec::new(),
                detail: Some(serde_json::json!({
                    "framework": req.framework.as_str(),
                    "from": rfc3339(req.from_ms),
                    "to": rfc3339(req.to_ms),
                })),
            },
        );
        let report = tokio::task::spawn_blocking(move || gather(&l, &req, now_ms))
            .await
            .map_err(|e| Error::internal(e.to_string()))??;
        tracing::info!(token_id = %who.token_id, tenant = %tenant, "compliance report built");
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
