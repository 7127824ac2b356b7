//! Policies at run time: the rule file (reloaded when it changes), the
//! engine fed from ingest, violations appended to the log as
//! `policy.violation` events, counted and posted to a webhook, and their
//! lifecycle (open, acknowledged, resolved), itself logged.
//!
//! The lifecycle state is derived from the log alone: [`Violations::apply`]
//! folds `policy.violation*` events, at start over those already logged
//! (found through the search index), then over each new one.

use crate::auth::{Principal, Role};
use crate::error::{Error, Kind};
use crate::Ledger;
use aiaudit_policy::{Engine, Policies, Violation};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

use crate::error::Result;

pub const SOURCE_NAME: &str = "aiaudit-policy";
pub const VIOLATION: &str = "policy.violation";
pub const ACKNOWLEDGED: &str = "policy.violation.acknowledged";
pub const RESOLVED: &str = "policy.violation.resolved";

/// Batches of logged events waiting for the engine; beyond, events are
/// dropped unevaluated (and counted) rather than slow ingest down.
const QUEUE_BATCHES: usize = 4096;
/// One tenant's share of the queue: a quarter of its batches and at most
/// this many events, so one tenant's flood cannot crowd out the others.
const TENANT_QUEUE_BATCHES: usize = QUEUE_BATCHES / 4;
const TENANT_QUEUE_EVENTS: usize = 100_000;
/// Alerts waiting for the webhook.
const WEBHOOK_QUEUE: usize = 10_000;
const RELOAD_EVERY: Duration = Duration::from_secs(2);
const TICK_EVERY: Duration = Duration::from_secs(1);

/// One event acknowledged by ingest, as stored (after redaction).
pub struct Logged {
    pub event: Value,
    pub index: u64,
}

/// What one tenant has waiting in the engine's queue.
#[derive(Default, Clone, Copy)]
struct Share {
    batches: usize,
    events: usize,
}

/// Each tenant's share of the queue in use.
#[derive(Default)]
pub struct Queued(Mutex<HashMap<String, Share>>);

impl Queued {
    /// Takes room for a batch of `counts` (events per tenant), or refuses it
    /// whole if any of its tenants has used its share.
    fn take(&self, counts: &HashMap<String, usize>) -> bool {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let fits = counts.iter().all(|(t, n)| {
            let s = q.get(t).copied().unwrap_or_default();
            s.batches < TENANT_QUEUE_BATCHES && s.events + n <= TENANT_QUEUE_EVENTS
        });
        if fits {
            for (t, n) in counts {
                let s = q.entry(t.clone()).or_default();
                s.batches += 1;
                s.events += n;
            }
        }
        fits
    }

    /// Gives the room of an evaluated batch back.
    fn give_back(&self, batch: &[Logged]) {
        let counts = tenant_counts(batch);
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (t, n) in counts {
            if let Some(s) = q.get_mut(&t) {
                s.batches = s.batches.saturating_sub(1);
                s.events = s.events.saturating_sub(n);
                if s.batches == 0 && s.events == 0 {
                    q.remove(&t);
                }
            }
        }
    }
}

fn tenant_counts(batch: &[Logged]) -> HashMap<String, usize> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for l in batch {
        let t = l.event.get("tenant").and_then(Value::as_str).unwrap_or("");
        *counts.entry(t.to_string()).or_default() += 1;
    }
    counts
}

/// The policy side of the ledger.
pub struct PolicyService {
    feed: Option<mpsc::Sender<Vec<Logged>>>,
    queued: Arc<Queued>,
    pub violations: Violations,
    /// Serializes lifecycle transitions: check, append and apply as one step.
    transition: tokio::sync::Mutex<()>,
}

impl PolicyService {
    pub fn enabled(&self) -> bool {
        self.feed.is_some()
    }

    /// Hands acknowledged events to the engine without ever waiting.
    /// Duplicates were evaluated when first logged.
    pub fn observe(
        &self,
        metrics: &crate::metrics::Metrics,
        events: Vec<Value>,
        appended: &[aiaudit_store::Appended],
    ) {
        let Some(feed) = &self.feed else { return };
        let batch: Vec<Logged> = events
            .into_iter()
            .zip(appended)
            .filter(|(_, a)| !a.duplicate)
            .map(|(event, a)| Logged {
                event,
                index: a.index,
            })
            .collect();
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        if !self.queued.take(&tenant_counts(&batch)) {
            metrics.policy_events_dropped.inc_by(n);
            return;
        }
        if let Err(e) = feed.try_send(batch) {
            let batch = match e {
                mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b) => b,
            };
            self.queued.give_back(&batch);
            metrics.policy_events_dropped.inc_by(n);
        }
    }
}

/// What the engine task reads: batches of logged events.
pub type Feed = mpsc::Receiver<Vec<Logged>>;

/// Opens the policy side: the rule file must load at start (a typo should
/// stop the server, not silently disable every rule), and the lifecycle
/// state is rebuilt from the log.
pub fn open(
    config: &crate::LedgerConfig,
    store: &Arc<dyn aiaudit_store::Storage>,
    index: &aiaudit_index::Index,
    keyring: &aiaudit_keyring::Keyring,
) -> anyhow::Result<(Arc<PolicyService>, Option<Feed>)> {
    let violations = Violations::default();
    rebuild(&violations, store, index, keyring)?;
    let (feed, rx) = match &config.policy_file {
        Some(path) => {
            Policies::load(path).map_err(|e| anyhow::anyhow!("policy file: {e}"))?;
            let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let service = Arc::new(PolicyService {
        feed,
        queued: Arc::default(),
        violations,
        transition: tokio::sync::Mutex::new(()),
    });
    Ok((service, rx))
}

/// Starts the engine task (and the webhook sender) once the ledger runs.
pub fn spawn(ledger: Arc<Ledger>, rx: mpsc::Receiver<Vec<Logged>>) {
    let Some(path) = ledger.config.policy_file.clone() else {
        return;
    };
    let webhook = ledger.config.webhook_url.clone().map(|url| {
        let (tx, rx) = mpsc::channel(WEBHOOK_QUEUE);
        tokio::spawn(send_alerts(url, rx));
        tx
    });
    tokio::spawn(run_engine(ledger, rx, path, webhook));
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn mtime(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

async fn run_engine(
    ledger: Arc<Ledger>,
    mut rx: mpsc::Receiver<Vec<Logged>>,
    path: std::path::PathBuf,
    webhook: Option<mpsc::Sender<Value>>,
) {
    let mut seen = mtime(&path);
    let initial = Policies::load(&path).unwrap_or_default();
    tracing::info!(rules = initial.rules.len(), file = %path.display(), "policies loaded");
    let mut engine = Engine::new(Arc::new(initial));
    engine.set_registered_emitters(emitter_names(&ledger));
    let mut tick = tokio::time::interval(TICK_EVERY);
    let mut reload = tokio::time::interval(RELOAD_EVERY);
    loop {
        let found = tokio::select! {
            batch = rx.recv() => match batch {
                Some(batch) => {
                    let now = now_ms();
                    let found = batch.iter().flat_map(|l| engine.observe(&l.event, l.index, now)).collect();
                    ledger.policies.queued.give_back(&batch);
                    found
                }
                None => return,
            },
            _ = tick.tick() => engine.tick(now_ms()),
            _ = reload.tick() => {
                engine.set_registered_emitters(emitter_names(&ledger));
                let current = mtime(&path);
                if current != seen {
                    seen = current;
                    match Policies::load(&path) {
                        Ok(p) => {
                            tracing::info!(rules = p.rules.len(), file = %path.display(), "policies reloaded");
                            engine.set_policies(Arc::new(p));
                        }
                        Err(e) => {
                            ledger.metrics.policy_reload_failures.inc();
                            tracing::error!(error = %e, file = %path.display(), "policy file not reloaded; the previous rules stay in force");
                        }
                    }
                }
                Vec::new()
            }
        };
        if !found.is_empty() {
            record(&ledger, found, webhook.as_ref()).await;
        }
    }
}

fn emitter_names(ledger: &Ledger) -> Vec<String> {
    ledger.emitters.list().into_iter().map(|e| e.name).collect()
}

/// The `policy.violation` event that records `v`.
pub fn violation_event(v: &Violation) -> Value {
    let mut attributes = json!({
        "rule": v.rule,
        "severity": v.severity.as_str(),
        "description": v.description,
        "detail": v.detail,
    });
    if let Some(id) = &v.event_id {
        attributes["event_id"] = json!(id);
    }
    if let Some(i) = v.event_index {
        attributes["event_index"] = json!(i);
    }
    if let Some(s) = &v.source {
        attributes["source"] = json!(s);
    }
    json!({
        "id": uuid::Uuid::now_v7().to_string(),
        "time": now_rfc3339(),
        "tenant": v.tenant,
        "source": {"name": SOURCE_NAME},
        "actor": {"id": format!("policy:{}", v.rule), "type": "service"},
        "action": VIOLATION,
        "outcome": {"status": "failure", "reason": v.detail},
        "attributes": attributes,
    })
}

/// Appends server-made events as one batch; returns their log indexes.
async fn append(ledger: &Arc<Ledger>, events: Vec<Value>) -> Result<Vec<u64>> {
    let appended = ledger.append_own(events).await?;
    Ok(appended.iter().map(|a| a.index).collect())
}

/// Logs violations found outside the rule engine (scheduled compliance
/// checks), counted and turned into incidents like the engine's own.
pub(crate) async fn raise(ledger: &Arc<Ledger>, found: Vec<Violation>) {
    record(ledger, found, None).await;
}

/// Logs, counts and alerts violations. Appending is retried: a violation
/// must not be lost to a momentarily full disk.
async fn record(
    ledger: &Arc<Ledger>,
    found: Vec<Violation>,
    webhook: Option<&mpsc::Sender<Value>>,
) {
    let events: Vec<Value> = found.iter().map(violation_event).collect();
    let mut wait = Duration::from_secs(1);
    let indexes = loop {
        match append(ledger, events.clone()).await {
            Ok(ix) => break ix,
            Err(p) if wait <= Duration::from_secs(30) => {
                tracing::warn!(error = %p.detail, "appending violations failed; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(p) => {
                tracing::error!(error = %p.detail, violations = found.len(), "violations could not be logged");
                return;
            }
        }
    };
    let to_incidents: Vec<(String, String, String, String)> = found
        .iter()
        .zip(&events)
        .map(|(v, e)| {
            (
                v.tenant.clone(),
                v.rule.clone(),
                v.severity.as_str().to_string(),
                e["id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    ledger.violations_to_incidents(&to_incidents);
    for ((v, event), index) in found.iter().zip(&events).zip(indexes) {
        ledger
            .metrics
            .violations
            .get_or_create(&crate::metrics::ViolationLabels {
                rule: v.rule.clone(),
                severity: v.severity.as_str().to_string(),
            })
            .inc();
        ledger.policies.violations.apply(event, index);
        tracing::info!(rule = %v.rule, severity = v.severity.as_str(), tenant = %v.tenant, index, "policy violation");
        if let Some(tx) = webhook {
            if tx.try_send(alert(ledger, v, event)).is_err() {
                tracing::warn!(rule = %v.rule, "webhook queue full; alert dropped (the violation is logged)");
            }
        }
    }
}

/// One Alertmanager alert (the webhook body is an array of them, as
/// `POST /api/v2/alerts` takes).
fn alert(ledger: &Ledger, v: &Violation, event: &Value) -> Value {
    let id = event["id"].as_str().unwrap_or_default();
    let mut annotations = json!({
        "summary": v.description,
        "description": v.detail,
        "violation_id": id,
    });
    if let Some(e) = &v.event_id {
        annotations["event_id"] = json!(e);
    }
    json!({
        "labels": {
            "alertname": "AiauditPolicyViolation",
            "rule": v.rule,
            "severity": v.severity.as_str(),
            "tenant": v.tenant,
        },
        "annotations": annotations,
        "startsAt": event["time"],
        "generatorURL": format!("http://{}/v1/violations/{id}", ledger.config.listen),
    })
}

/// Posts alerts in batches, retrying with backoff; gives a batch up after
/// about a minute so one dead receiver cannot hold the queue for ever.
async fn send_alerts(url: String, mut rx: mpsc::Receiver<Value>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook client");
            return;
        }
    };
    while let Some(first) = rx.recv().await {
        let mut alerts = vec![first];
        while alerts.len() < 100 {
            match rx.try_recv() {
                Ok(a) => alerts.push(a),
                Err(_) => break,
            }
        }
        let mut wait = Duration::from_millis(500);
        for attempt in 1..=8 {
            let sent = client.post(&url).json(&alerts).send().await;
            match sent.map(|r| r.status()) {
                Ok(s) if s.is_success() => break,
                outcome => {
                    let why = match outcome {
                        Ok(s) => format!("status {s}"),
                        Err(e) => e.to_string(),
                    };
                    if attempt == 8 {
                        tracing::error!(error = %why, alerts = alerts.len(), "webhook gave up; the violations stay in the log");
                        break;
                    }
                    tracing::warn!(error = %why, attempt, "webhook failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(15));
                }
            }
        }
    }
}

// ---- lifecycle ------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    Acknowledged,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Acknowledged => "acknowledged",
            Status::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "open" => Some(Status::Open),
            "acknowledged" => Some(Status::Acknowledged),
            "resolved" => Some(Status::Resolved),
            _ => None,
        }
    }

    /// Open → acknowledged → resolved, or open → resolved; nothing leaves resolved.
    pub fn may_become(self, next: Status) -> bool {
        matches!(
            (self, next),
            (Status::Open, Status::Acknowledged | Status::Resolved)
                | (Status::Acknowledged, Status::Resolved)
        )
    }
}

#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub index: u64,
    pub time: String,
    pub tenant: String,
    pub status: Status,
    /// The violation event's attributes (rule, severity, description, ...).
    pub attributes: Value,
    pub history: Vec<Value>,
}

impl Record {
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "id": self.id,
            "index": self.index,
            "time": self.time,
            "tenant": self.tenant,
            "status": self.status.as_str(),
            "history": self.history,
        });
        if let Value::Object(attrs) = &self.attributes {
            for (k, v) in attrs {
                out[k] = v.clone();
            }
        }
        out
    }

    pub fn rule(&self) -> &str {
        self.attributes["rule"].as_str().unwrap_or("")
    }
}

/// Every violation and its status, folded from the log.
#[derive(Default)]
pub struct Violations {
    by_id: Mutex<HashMap<String, Record>>,
}

impl Violations {
    /// Folds one logged event (at `index`) into the state; others are ignored.
    pub fn apply(&self, event: &Value, index: u64) {
        let action = event["action"].as_str().unwrap_or("");
        let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        let text = |p: &str| {
            event
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        match action {
            VIOLATION => {
                let id = text("/id");
                map.insert(
                    id.clone(),
                    Record {
                        id,
                        index,
                        time: text("/time"),
                        tenant: text("/tenant"),
                        status: Status::Open,
                        attributes: event["attributes"].clone(),
                        history: Vec::new(),
                    },
                );
            }
            ACKNOWLEDGED | RESOLVED => {
                let Some(r) = map.get_mut(&text("/attributes/violation_id")) else {
                    return;
                };
                // A transition from another tenant cannot touch this one.
                if r.tenant != text("/tenant") {
                    return;
                }
                let next = if action == RESOLVED {
                    Status::Resolved
                } else {
                    Status::Acknowledged
                };
                if !r.status.may_become(next) {
                    return;
                }
                r.status = next;
                r.history.push(json!({
                    "status": next.as_str(),
                    "note": event.pointer("/attributes/note").cloned().unwrap_or(Value::Null),
                    "by": text("/actor/id"),
                    "time": text("/time"),
                    "event_id": text("/id"),
                    "index": index,
                }));
            }
            _ => {}
        }
    }

    pub fn get(&self, id: &str) -> Option<Record> {
        self.by_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// The violations `keep` selects, newest first.
    pub fn list(&self, keep: impl Fn(&Record) -> bool) -> Vec<Record> {
        let map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Record> = map.values().filter(|r| keep(r)).cloned().collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.index));
        out
    }
}

/// Folds every `policy.violation*` event already logged.
fn rebuild(
    violations: &Violations,
    store: &Arc<dyn aiaudit_store::Storage>,
    index: &aiaudit_index::Index,
    keyring: &aiaudit_keyring::Keyring,
) -> anyhow::Result<()> {
    let actions = [VIOLATION, ACKNOWLEDGED, RESOLVED];
    for (i, event) in logged_own(store, index, keyring, &actions, VIOLATION, 0)? {
        violations.apply(&event, i);
    }
    Ok(())
}

/// The ledger's own events with one of `actions` at log index `from` or
/// beyond, in log order: those the search index knows, then the entries it
/// has not reached yet (whose action starts with `prefix`). State is
/// rebuilt from these alone.
pub(crate) fn logged_own(
    store: &Arc<dyn aiaudit_store::Storage>,
    index: &aiaudit_index::Index,
    keyring: &aiaudit_keyring::Keyring,
    actions: &[&str],
    prefix: &str,
    from: u64,
) -> anyhow::Result<Vec<(u64, Value)>> {
    let indexed = index.indexed_size()?;
    let mut found = Vec::new();
    for action in actions {
        let mut q = aiaudit_index::Query {
            action: Some(action.to_string()),
            limit: aiaudit_index::MAX_LIMIT,
            order: aiaudit_index::Order::Asc,
            after: from.checked_sub(1),
            ..Default::default()
        };
        loop {
            let page = index.query(&q)?;
            // A shared index may have grown since: those come below.
            found.extend(
                page.rows
                    .iter()
                    .map(|r| r.index)
                    .filter(|&i| i < indexed && i >= from),
            );
            match page.next {
                Some(next) => q.after = Some(next),
                None => break,
            }
        }
    }
    // The entries the index has not reached (this runs every second on
    // every node, behind a search index that lags under load).
    store.for_each_entry(indexed.max(from), store.size(), &mut |i, entry| {
        let wanted = aiaudit_index::row_from_entry(i, entry)
            .map(|r| r.action.starts_with(prefix) && actions.contains(&r.action.as_str()))
            .unwrap_or(false);
        if wanted {
            found.push(i);
        }
    })?;
    found.sort_unstable();
    found.dedup();
    let mut out = Vec::with_capacity(found.len());
    for i in found {
        let entry = store.read_entry(i)?;
        match crate::sealing::open_entry(keyring, &**store, &entry, crate::sealing::BlobMode::Omit)
        {
            // Only the ledger's own records count: an event that merely looks
            // like one (written before ingest refused them) changes nothing.
            Ok(r) if r.stored.appended_by.as_deref() != Some(aiaudit_event::LEDGER_PRINCIPAL) => {
                tracing::warn!(index = i, "event not appended by the ledger; ignored");
            }
            Ok(r) => match r.event {
                Some(event) => out.push((i, Value::Object(event))),
                None => tracing::warn!(index = i, "ledger record cannot be opened (key erased)"),
            },
            Err(e) => tracing::warn!(index = i, error = %e, "ledger record unreadable"),
        }
    }
    Ok(out)
}

/// The caller, who must be an auditor or admin.
/// The violations side of [`Ledger`]: reading them and moving them through
/// their lifecycle, each step logged. Only auditors and admins, and only of
/// their tenants: others' violations are reported missing, so their
/// existence does not leak across tenants.
impl Ledger {
    fn require_reader(who: &Principal) -> Result<()> {
        if !matches!(who.role, Role::Auditor | Role::Admin) {
            return Err(Error::forbidden(
                "violations are for auditor and admin tokens",
            ));
        }
        Ok(())
    }

    /// The violations `who` may read that pass `filter`, newest first.
    pub fn violations(
        &self,
        who: &Principal,
        filter: impl Fn(&Record) -> bool,
    ) -> Result<Vec<Record>> {
        Self::require_reader(who)?;
        Ok(self
            .policies
            .violations
            .list(|r| who.can_read(&r.tenant) && filter(r)))
    }

    /// One violation `who` may read.
    pub fn violation(&self, who: &Principal, id: &str) -> Result<Record> {
        Self::require_reader(who)?;
        self.policies
            .violations
            .get(id)
            .filter(|r| who.can_read(&r.tenant))
            .ok_or_else(|| Error::not_found(format!("no violation with id {id:?}")))
    }

    /// Acknowledges or resolves a violation: the transition is logged as an
    /// event of the ledger's own, then applied. Returns the updated record,
    /// and the logged event's id and index.
    pub async fn transition_violation(
        self: &Arc<Self>,
        who: &Principal,
        id: &str,
        next: Status,
        note: Option<String>,
    ) -> Result<(Record, String, u64)> {
        let _one_at_a_time = self.policies.transition.lock().await;
        let record = self.violation(who, id)?;
        if !record.status.may_become(next) {
            return Err(Error::new(
                Kind::Conflict,
                "invalid-transition",
                "Invalid transition",
                format!(
                    "violation {id} is {}; it cannot become {}",
                    record.status.as_str(),
                    next.as_str()
                ),
            ));
        }
        let action = if next == Status::Resolved {
            RESOLVED
        } else {
            ACKNOWLEDGED
        };
        let event_id = uuid::Uuid::now_v7().to_string();
        let event = json!({
            "id": event_id,
            "time": now_rfc3339(),
            "tenant": record.tenant,
            "source": {"name": SOURCE_NAME},
            "actor": {"id": who.provenance(), "type": "user"},
            "action": action,
            "outcome": {"status": "success"},
            "attributes": {"violation_id": id, "rule": record.rule(), "note": note,
                           "previous_status": record.status.as_str()},
        });
        let index = append(self, vec![event.clone()])
            .await?
            .first()
            .copied()
            .unwrap_or_default();
        self.policies.violations.apply(&event, index);
        if next == Status::Resolved {
            self.metrics
                .violations_resolved
                .get_or_create(&crate::metrics::SeverityLabel {
                    severity: record.attributes["severity"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                })
                .inc();
        }
        tracing::info!(violation = %id, status = next.as_str(), token_id = %who.token_id, "violation updated");
        Ok((self.violation(who, id)?, event_id, index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(id: &str, tenant: &str) -> Value {
        json!({"id": id, "time": "t", "tenant": tenant, "action": VIOLATION,
               "attributes": {"rule": "r", "severity": "high"}})
    }

    fn change(action: &str, id: &str, tenant: &str) -> Value {
        json!({"id": "x", "time": "t", "tenant": tenant, "action": action,
               "actor": {"id": "token:a"}, "attributes": {"violation_id": id, "note": "n"}})
    }

    #[test]
    fn state_is_folded_from_the_log() {
        let v = Violations::default();
        v.apply(&violation("v1", "acme"), 1);
        assert_eq!(v.get("v1").unwrap().status, Status::Open);
        v.apply(&change(ACKNOWLEDGED, "v1", "acme"), 2);
        assert_eq!(v.get("v1").unwrap().status, Status::Acknowledged);
        // Out of order, or from another tenant: ignored.
        v.apply(&change(ACKNOWLEDGED, "v1", "acme"), 3);
        v.apply(&change(RESOLVED, "v1", "globex"), 4);
        assert_eq!(v.get("v1").unwrap().history.len(), 1);
        v.apply(&change(RESOLVED, "v1", "acme"), 5);
        let r = v.get("v1").unwrap();
        assert_eq!(r.status, Status::Resolved);
        assert_eq!(r.history.len(), 2);
        assert_eq!(r.to_json()["rule"], "r");
        v.apply(&change(ACKNOWLEDGED, "v1", "acme"), 6);
        assert_eq!(v.get("v1").unwrap().status, Status::Resolved);
    }

    #[test]
    fn transitions() {
        assert!(Status::Open.may_become(Status::Acknowledged));
        assert!(Status::Open.may_become(Status::Resolved));
        assert!(Status::Acknowledged.may_become(Status::Resolved));
        assert!(!Status::Resolved.may_become(Status::Acknowledged));
        assert!(!Status::Acknowledged.may_become(Status::Acknowledged));
    }
}
