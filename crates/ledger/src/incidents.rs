//! Incidents in the ledger (docs/incidents.md): every step is an event the
//! ledger appends through its own front door ([`Ledger::append_own`]), so
//! the timeline is in the log and nobody can rewrite it afterwards. The
//! rules (lifecycle, deadlines, breach clocks, Alertmanager bodies) are the
//! pure crate `aiaudit-incident`; here are the appends, the state rebuilt
//! from the log at start, the watcher that escalates missed deadlines and
//! reminds of breach clocks, the ledger's own detections and the webhooks.

use crate::auth::{Principal, Role};
use crate::error::{Error, Kind, Result};
use crate::metrics::{EscalationLabels, JurisdictionLabel, SeverityLabel};
use crate::Ledger;
use aiaudit_incident::breach::{self, Jurisdiction};
use aiaudit_incident::state::{Due, ESCALATION_TIME};
use aiaudit_incident::time_fmt::{parse, rfc3339};
use aiaudit_incident::{action, alertmanager, deadlines, BusinessHours, Incident, Incidents};
use aiaudit_incident::{Severity, Status, SECTIONS, SOURCE_NAME};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// The tenant of the ledger's own incidents (detections, alerts that name
/// no tenant): read by auditors and admins of every tenant.
pub const LEDGER_TENANT: &str = "aiaudit";
const TICK: Duration = Duration::from_secs(1);
const NOTICE_QUEUE: usize = 10_000;
const MAX_TEXT: usize = 4096;
const MAX_DETAILS_BYTES: usize = 16 << 10;

// ---- configuration --------------------------------------------------------

/// `[incidents]` in the serve config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentConfig {
    /// UTC offset of the business day (`+01:00`: Lagos), for low severity.
    pub utc_offset: String,
    /// The hour business starts, for "next business day".
    pub business_day_start: u8,
    /// Jurisdictions whose clocks a breach starts when its tenant names none.
    pub default_jurisdictions: Vec<String>,
    /// How long before each breach deadline a reminder goes out ("24h", ...).
    pub breach_reminders: Vec<String>,
    /// Where incidents are announced (opened, transitions, breaches).
    pub webhooks: Vec<WebhookConfig>,
    /// Where escalations and breach reminders also go.
    pub escalation_webhooks: Vec<WebhookConfig>,
    /// Policy violations of these severities open (or update) an incident.
    pub open_from_violations: Vec<String>,
    /// Refused requests (401, 403, 429) from one credential within
    /// `refused_burst_window` that open an incident (0: never).
    pub refused_burst_threshold: u64,
    pub refused_burst_window: String,
    pub tenants: BTreeMap<String, TenantIncidentConfig>,
    /// Jurisdictions beyond the built-in `ng`, `ke`, `za`, `eu`.
    pub jurisdictions: Vec<Jurisdiction>,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        IncidentConfig {
            utc_offset: "+01:00".into(),
            business_day_start: 9,
            default_jurisdictions: vec!["ng".into()],
            breach_reminders: vec!["24h".into(), "6h".into(), "1h".into()],
            webhooks: Vec::new(),
            escalation_webhooks: Vec::new(),
            open_from_violations: vec!["critical".into(), "high".into()],
            refused_burst_threshold: 100,
            refused_burst_window: "1m".into(),
            tenants: BTreeMap::new(),
            jurisdictions: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// A name for logs and the log's notification records (the URL may
    /// hold a secret, as Slack's do, so it is never logged).
    #[serde(default)]
    pub name: Option<String>,
    /// Severities sent (empty: all).
    #[serde(default)]
    pub severities: Vec<String>,
    /// `json` (the incident) or `slack` (`{"text": ...}`).
    #[serde(default = "default_format")]
    pub format: String,
}

fn default_format() -> String {
    "json".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantIncidentConfig {
    pub jurisdictions: Option<Vec<String>>,
    /// `controller` (default) or `processor`.
    pub role: Option<String>,
    pub organisation: Option<String>,
    pub dpo_contact: Option<String>,
    pub utc_offset: Option<String>,
}

/// The configuration, checked and ready to use.
#[derive(Debug, Clone)]
struct Rules {
    business: BusinessHours,
    tenant_business: HashMap<String, BusinessHours>,
    jurisdictions: Vec<Jurisdiction>,
    leads: Vec<u64>,
    refused_window: Duration,
    config: IncidentConfig,
}

fn parse_duration(what: &str, s: &str) -> std::result::Result<Duration, String> {
    crate::auth::parse_duration_secs(s)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{what}: {s:?} is not a duration such as 24h or 30m"))
}

impl IncidentConfig {
    /// Checks every value, naming the one that is wrong.
    pub fn check(&self) -> std::result::Result<(), String> {
        Rules::new(self.clone()).map(|_| ())
    }
}

impl Rules {
    fn new(config: IncidentConfig) -> std::result::Result<Rules, String> {
        let offset = |what: &str, s: &str| {
            BusinessHours::parse_offset(s)
                .ok_or_else(|| format!("{what}: {s:?} is not a UTC offset such as +01:00"))
        };
        if config.business_day_start > 23 {
            return Err("incidents.business_day_start: an hour from 0 to 23".into());
        }
        let business = BusinessHours {
            utc_offset_minutes: offset("incidents.utc_offset", &config.utc_offset)?,
            start_hour: config.business_day_start,
        };
        let mut jurisdictions = breach::builtin();
        for j in &config.jurisdictions {
            breach::validate(j).map_err(|e| format!("incidents.jurisdictions: {e}"))?;
            jurisdictions.retain(|b| b.code != j.code);
            jurisdictions.push(j.clone());
        }
        let known = |what: &str, codes: &[String]| -> std::result::Result<(), String> {
            for c in codes {
                if !jurisdictions.iter().any(|j| &j.code == c) {
                    return Err(format!("{what}: unknown jurisdiction {c:?}"));
                }
            }
            Ok(())
        };
        known(
            "incidents.default_jurisdictions",
            &config.default_jurisdictions,
        )?;
        let mut tenant_business = HashMap::new();
        for (t, tc) in &config.tenants {
            let what = format!("incidents.tenants.{t}");
            known(&what, tc.jurisdictions.as_deref().unwrap_or(&[]))?;
            if let Some(r) = tc.role.as_deref() {
                if r != "controller" && r != "processor" {
                    return Err(format!("{what}.role: \"controller\" or \"processor\""));
                }
            }
            if let Some(o) = &tc.utc_offset {
                tenant_business.insert(
                    t.clone(),
                    BusinessHours {
                        utc_offset_minutes: offset(&format!("{what}.utc_offset"), o)?,
                        start_hour: config.business_day_start,
                    },
                );
            }
        }
        let mut leads = Vec::new();
        for r in &config.breach_reminders {
            leads.push(parse_duration("incidents.breach_reminders", r)?.as_secs());
        }
        for s in &config.open_from_violations {
            if Severity::parse(s).is_none() {
                return Err(format!(
                    "incidents.open_from_violations: {s:?} is not critical, high, medium or low"
                ));
            }
        }
        for (what, hooks) in [
            ("webhooks", &config.webhooks),
            ("escalation_webhooks", &config.escalation_webhooks),
        ] {
            for h in hooks {
                if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
                    return Err(format!("incidents.{what}: url must be http:// or https://"));
                }
                if h.format != "json" && h.format != "slack" {
                    return Err(format!(
                        "incidents.{what}: format {:?} is not json or slack",
                        h.format
                    ));
                }
                for s in &h.severities {
                    if Severity::parse(s).is_none() {
                        return Err(format!("incidents.{what}: unknown severity {s:?}"));
                    }
                }
            }
        }
        let refused_window = parse_duration(
            "incidents.refused_burst_window",
            &config.refused_burst_window,
        )?;
        Ok(Rules {
            business,
            tenant_business,
            jurisdictions,
            leads,
            refused_window,
            config,
        })
    }

    fn business(&self, tenant: &str) -> BusinessHours {
        self.tenant_business
            .get(tenant)
            .copied()
            .unwrap_or(self.business)
    }

    fn tenant(&self, tenant: &str) -> TenantIncidentConfig {
        self.config.tenants.get(tenant).cloned().unwrap_or_default()
    }

    fn jurisdiction(&self, code: &str) -> Option<&Jurisdiction> {
        self.jurisdictions.iter().find(|j| j.code == code)
    }
}

// ---- the service ----------------------------------------------------------

/// What the ledger itself noticed (seed §5, security incidents).
#[derive(Debug, Clone)]
pub struct Detection {
    /// Groups repeats into one incident while it is active
    /// (`verification`, `witness:<name>`, `refused:<credential>`, ...).
    pub key: String,
    pub title: String,
    pub detail: String,
    pub severity: Severity,
    pub tenant: String,
    pub origin: &'static str,
    pub related: Map<String, Value>,
}

/// Sends detections to the incident task; never blocks the caller.
#[derive(Clone)]
pub struct Detector(mpsc::UnboundedSender<Detection>);

impl Detector {
    pub fn detect(&self, d: Detection) {
        tracing::warn!(key = %d.key, title = %d.title, "detected: opening an incident");
        let _ = self.0.send(d);
    }
}

/// Something to announce on the webhooks.
pub(crate) struct Notice {
    kind: &'static str,
    incident: Incident,
    detail: Value,
}

pub struct IncidentService {
    state: Incidents,
    rules: Rules,
    /// One change at a time, so a check and its append cannot interleave.
    changes: tokio::sync::Mutex<()>,
    notices: mpsc::Sender<Notice>,
    detector: Detector,
    refused: Mutex<HashMap<String, (std::time::Instant, u64)>>,
    /// Log size up to which incident events of other nodes were folded.
    folded: std::sync::atomic::AtomicU64,
}

pub(crate) type Receivers = (mpsc::Receiver<Notice>, mpsc::UnboundedReceiver<Detection>);

/// Builds the service and folds every incident event already logged.
pub(crate) fn open(
    config: &crate::LedgerConfig,
    store: &Arc<dyn aiaudit_store::Storage>,
    index: &aiaudit_index::Index,
    keyring: &aiaudit_keyring::Keyring,
) -> anyhow::Result<(Arc<IncidentService>, Receivers)> {
    let rules = Rules::new(config.incidents.clone()).map_err(|e| anyhow::anyhow!(e))?;
    let (notices, notice_rx) = mpsc::channel(NOTICE_QUEUE);
    let (detect_tx, detect_rx) = mpsc::unbounded_channel();
    let service = IncidentService {
        state: Incidents::default(),
        rules,
        changes: Default::default(),
        notices,
        detector: Detector(detect_tx),
        refused: Default::default(),
        folded: Default::default(),
    };
    let size = store.size();
    let found = crate::policies::logged_own(store, index, keyring, action::ALL, "incident.", 0)?;
    for (i, event) in found {
        service.state.apply(&event, i);
    }
    service
        .folded
        .store(size, std::sync::atomic::Ordering::Relaxed);
    Ok((Arc::new(service), (notice_rx, detect_rx)))
}

/// Starts the watcher (deadlines, detections, other nodes' events) and the
/// webhook sender.
pub(crate) fn spawn(ledger: Arc<Ledger>, (notice_rx, detect_rx): Receivers) {
    tokio::spawn(send_notices(ledger.clone(), notice_rx));
    tokio::spawn(watch(ledger, detect_rx));
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn watch(ledger: Arc<Ledger>, mut detections: mpsc::UnboundedReceiver<Detection>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            d = detections.recv() => match d {
                Some(d) => {
                    if let Err(e) = ledger.open_detected(d).await {
                        tracing::error!(error = %e.detail, "a detection could not be logged as an incident");
                    }
                }
                None => return,
            },
            _ = tick.tick() => {
                if ledger.store.shared() {
                    ledger.fold_others().await;
                }
                // One node acts on deadlines: the one holding the lease.
                if ledger.store.is_publisher() {
                    ledger.act_on_deadlines(now_ms()).await;
                }
            }
        }
    }
}

fn event(tenant: &str, act: &str, actor: (&str, &str), attributes: Value) -> Value {
    json!({
        "id": uuid::Uuid::now_v7().to_string(),
        "time": rfc3339(now_ms()),
        "tenant": tenant,
        "source": {"name": SOURCE_NAME},
        "actor": {"id": actor.0, "type": actor.1},
        "action": act,
        "outcome": {"status": "success"},
        "attributes": attributes,
    })
}

const SYSTEM: (&str, &str) = ("aiaudit:incidents", "service");

fn field(name: &str, detail: impl Into<String>) -> Error {
    Error::bad_field(
        "invalid-incident",
        "Invalid incident request",
        name,
        &detail.into(),
    )
}

fn text_field(req: &Value, name: &str, required: bool) -> Result<Option<String>> {
    match req.get(name) {
        None | Some(Value::Null) if !required => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_TEXT => {
            Ok(Some(s.clone()))
        }
        Some(Value::String(s)) if s.trim().is_empty() && !required => Ok(None),
        _ => Err(field(
            name,
            format!(
                "{}a string of 1 to {MAX_TEXT} bytes",
                if required { "required: " } else { "must be " }
            ),
        )),
    }
}

fn severity_field(req: &Value, name: &str) -> Result<Option<Severity>> {
    match req.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Severity::parse(s)
            .map(Some)
            .ok_or_else(|| field(name, format!("{s:?} is not critical, high, medium or low"))),
        Some(_) => Err(field(name, "must be critical, high, medium or low")),
    }
}

fn time_field(req: &Value, name: &str) -> Result<Option<u64>> {
    match req.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse(s)
            .map(Some)
            .ok_or_else(|| field(name, format!("{s:?} is not an RFC 3339 time"))),
        Some(_) => Err(field(name, "must be an RFC 3339 time")),
    }
}

/// `related`: lists of trace, conversation and violation ids and event indexes.
fn related_field(req: &Value) -> Result<Map<String, Value>> {
    let Some(v) = req.get("related").filter(|v| !v.is_null()) else {
        return Ok(Map::new());
    };
    let Value::Object(m) = v else {
        return Err(field("related", "must be an object of lists"));
    };
    for (k, list) in m {
        let name = format!("related.{k}");
        let Some(items) = list.as_array().filter(|a| a.len() <= 100) else {
            return Err(field(&name, "must be a list of at most 100 items"));
        };
        let ok = match k.as_str() {
            "trace_ids" | "conversation_ids" | "violation_ids" => items
                .iter()
                .all(|x| x.as_str().is_some_and(|s| !s.is_empty() && s.len() <= 256)),
            "event_indexes" => items.iter().all(Value::is_u64),
            _ => {
                return Err(field(
                    &name,
                    "unknown: trace_ids, conversation_ids, violation_ids or event_indexes",
                ))
            }
        };
        if !ok {
            return Err(field(
                &name,
                "items must be ids (strings of 1 to 256 bytes) or, for event_indexes, log indexes",
            ));
        }
    }
    Ok(m.clone())
}

/// A parsed `POST /v1/incidents/{id}/breach` body.
struct BreachRequest {
    aware_at: Option<u64>,
    jurisdictions: Option<Vec<String>>,
    high_risk: bool,
    details: Map<String, Value>,
}

fn breach_request(req: &Value) -> Result<BreachRequest> {
    if !req.is_object() {
        return Err(field("", "the body must be a JSON object"));
    }
    let jurisdictions = match req.get("jurisdictions") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => Some(
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        ),
        Some(_) => return Err(field("jurisdictions", "must be a non-empty list of codes")),
    };
    let high_risk = match req.get("high_risk") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(field("high_risk", "must be true or false")),
    };
    let details = match req.get("details") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => {
            if serde_json::to_vec(m).map(|b| b.len()).unwrap_or(usize::MAX) > MAX_DETAILS_BYTES {
                return Err(field("details", "at most 16 KiB"));
            }
            for (k, v) in m {
                if !matches!(v, Value::String(_) | Value::Number(_) | Value::Array(_)) {
                    return Err(field(
                        &format!("details.{k}"),
                        "must be text, a number or a list",
                    ));
                }
            }
            m.clone()
        }
        Some(_) => return Err(field("details", "must be an object")),
    };
    Ok(BreachRequest {
        aware_at: time_field(req, "aware_at")?,
        jurisdictions,
        high_risk,
        details,
    })
}

fn conflict(detail: String) -> Error {
    Error::new(
        Kind::Conflict,
        "invalid-transition",
        "Invalid incident transition",
        detail,
    )
}

impl IncidentService {
    pub fn detector(&self) -> Detector {
        self.detector.clone()
    }

    fn announce(&self, kind: &'static str, incident: Incident, detail: Value) {
        let wanted = |hooks: &[WebhookConfig]| {
            hooks.iter().any(|h| {
                h.severities.is_empty()
                    || h.severities.iter().any(|s| s == incident.severity.as_str())
            })
        };
        let escalation = matches!(
            kind,
            "escalated" | "breach_reminder" | "breach_deadline_missed"
        );
        let wanted_by_any = wanted(&self.rules.config.webhooks)
            || (escalation && wanted(&self.rules.config.escalation_webhooks));
        if !wanted_by_any {
            return;
        }
        let notice = Notice {
            kind,
            incident,
            detail,
        };
        if self.notices.try_send(notice).is_err() {
            tracing::warn!(
                kind,
                "incident webhook queue full; notice dropped (the incident is logged)"
            );
        }
    }
}

/// The incidents side of [`Ledger`]: auditors and admins of an incident's
/// tenant read and move it; others' incidents are reported missing.
impl Ledger {
    fn require_responder(who: &Principal) -> Result<()> {
        if !matches!(who.role, Role::Auditor | Role::Admin) {
            return Err(Error::forbidden(
                "incidents are for auditor and admin tokens",
            ));
        }
        Ok(())
    }

    /// The detector the ledger's own checks report to.
    pub fn detector(&self) -> Detector {
        self.incidents.detector()
    }

    /// Incidents `who` may read that pass `keep`, newest first.
    pub fn incidents(
        &self,
        who: &Principal,
        keep: impl Fn(&Incident) -> bool,
    ) -> Result<Vec<Incident>> {
        Self::require_responder(who)?;
        Ok(self
            .incidents
            .state
            .list(|i| who.can_read(&i.tenant) && keep(i)))
    }

    pub fn incident(&self, who: &Principal, id: &str) -> Result<Incident> {
        Self::require_responder(who)?;
        self.incidents
            .state
            .get(id)
            .filter(|i| who.can_read(&i.tenant))
            .ok_or_else(|| Error::not_found(format!("no incident with id {id:?}")))
    }

    /// An incident as the API answers it.
    pub fn incident_json(&self, i: &Incident) -> Value {
        i.to_json(now_ms())
    }

    /// Appends incident events as one batch and folds them in.
    async fn append_incident_events(self: &Arc<Self>, events: Vec<Value>) -> Result<()> {
        let appended = self.append_own(events.clone()).await?;
        for (e, a) in events.iter().zip(&appended) {
            self.incidents.state.apply(e, a.index);
        }
        Ok(())
    }

    fn opened_event(
        &self,
        tenant: &str,
        actor: (&str, &str),
        title: &str,
        severity: Severity,
        origin: &str,
        extra: Map<String, Value>,
    ) -> Value {
        let now = now_ms();
        let d = deadlines(severity, now, &self.incidents.rules.business(tenant));
        let mut attributes = json!({
            "title": title,
            "severity": severity.as_str(),
            "origin": origin,
            "respond_by": rfc3339(d.respond_by),
            "escalate_at": rfc3339(d.escalate_at),
        });
        for (k, v) in extra {
            attributes[k] = v;
        }
        let mut e = event(tenant, action::OPENED, actor, attributes);
        e["time"] = json!(rfc3339(now));
        e
    }

    /// `POST /v1/incidents`: opens an incident by hand (and marks it a
    /// breach at once when the body says so).
    pub async fn open_incident(self: &Arc<Self>, who: &Principal, req: &Value) -> Result<Incident> {
        Self::require_responder(who)?;
        if !req.is_object() {
            return Err(field("", "the body must be a JSON object"));
        }
        let tenant = text_field(req, "tenant", true)?.unwrap_or_default();
        if tenant != LEDGER_TENANT && !aiaudit_event::is_valid_tenant(&tenant) {
            return Err(field("tenant", "not a tenant name"));
        }
        if !who.can_read(&tenant) {
            return Err(Error::forbidden(format!(
                "this token may not open incidents of tenant {tenant:?}"
            )));
        }
        let title = text_field(req, "title", true)?.unwrap_or_default();
        let severity = severity_field(req, "severity")?
            .ok_or_else(|| field("severity", "required: critical, high, medium or low"))?;
        let mut extra = Map::new();
        if let Some(d) = text_field(req, "description", false)? {
            extra.insert("description".into(), json!(d));
        }
        let related = related_field(req)?;
        if !related.is_empty() {
            extra.insert("related".into(), Value::Object(related));
        }
        let breach = match req.get("breach") {
            None | Some(Value::Null) => None,
            Some(b) => Some(breach_request(b).map_err(|e| prefix_field(e, "breach"))?),
        };
        let _one = self.incidents.changes.lock().await;
        let actor = who.provenance();
        let opened =
            self.opened_event(&tenant, (&actor, "user"), &title, severity, "manual", extra);
        let id = opened["id"].as_str().unwrap_or_default().to_string();
        let mut events = vec![opened];
        if let Some(b) = breach {
            events.push(
                self.breach_event(&tenant, &id, (&actor, "user"), b)
                    .map_err(|e| prefix_field(e, "breach"))?,
            );
        }
        self.append_incident_events(events).await?;
        let incident = self.incident(who, &id)?;
        tracing::info!(incident = %id, severity = severity.as_str(), token_id = %who.token_id, "incident opened");
        self.incidents
            .announce("opened", incident.clone(), Value::Null);
        Ok(incident)
    }

    /// `POST /v1/incidents/{id}`: a status and/or severity change, logged.
    pub async fn update_incident(
        self: &Arc<Self>,
        who: &Principal,
        id: &str,
        req: &Value,
    ) -> Result<Incident> {
        Self::require_responder(who)?;
        if !req.is_object() {
            return Err(field("", "the body must be a JSON object"));
        }
        let status = match req.get("status") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                Status::parse(s)
                    .filter(|s| *s != Status::Open)
                    .ok_or_else(|| field("status", format!("{s:?} is not acknowledged, mitigated, resolved, reviewed or reopened")))?,
            ),
            Some(_) => return Err(field("status", "must be a string")),
        };
        let severity = severity_field(req, "severity")?;
        if status.is_none() && severity.is_none() {
            return Err(field(
                "status",
                "required: a status or a severity to change",
            ));
        }
        let note = text_field(req, "note", false)?;
        let skipped = text_field(req, "skipped_acknowledgement", false)?;
        if status == Some(Status::Resolved) && note.is_none() {
            return Err(field(
                "note",
                "required to resolve: say how it was resolved",
            ));
        }
        let _one = self.incidents.changes.lock().await;
        let incident = self.incident(who, id)?;
        let actor = who.provenance();
        let events =
            self.change_events(&incident, (&actor, "user"), status, severity, note, skipped)?;
        if events.is_empty() {
            return Ok(incident);
        }
        self.append_incident_events(events).await?;
        let after = self.incident(who, id)?;
        self.after_change(&incident, &after);
        tracing::info!(incident = %id, status = after.status.as_str(), severity = after.severity.as_str(), token_id = %who.token_id, "incident updated");
        Ok(after)
    }

    /// The events that move `incident` (checked against the lifecycle).
    fn change_events(
        &self,
        incident: &Incident,
        actor: (&str, &str),
        status: Option<Status>,
        severity: Option<Severity>,
        note: Option<String>,
        skipped: Option<String>,
    ) -> Result<Vec<Value>> {
        let mut events = Vec::new();
        let tenant = incident.tenant.as_str();
        if let Some(to) = severity.filter(|s| *s != incident.severity) {
            let d = deadlines(
                to,
                incident.round_started_at,
                &self.incidents.rules.business(tenant),
            );
            events.push(event(
                tenant,
                action::SEVERITY_CHANGED,
                actor,
                json!({"incident_id": incident.id, "from": incident.severity.as_str(), "to": to.as_str(),
                       "respond_by": rfc3339(d.respond_by), "escalate_at": rfc3339(d.escalate_at),
                       "note": note}),
            ));
        }
        if let Some(next) = status {
            incident
                .status
                .check(next, skipped.is_some())
                .map_err(|e| conflict(format!("incident {}: {e}", incident.id)))?;
            let mut attributes = json!({"incident_id": incident.id, "from": incident.status.as_str(),
                                        "note": note});
            if incident.status.unacknowledged() && next != Status::Acknowledged {
                attributes["skipped_acknowledgement"] = json!(skipped);
            }
            if next == Status::Reopened {
                let sev = severity.unwrap_or(incident.severity);
                let d = deadlines(sev, now_ms(), &self.incidents.rules.business(tenant));
                attributes["respond_by"] = json!(rfc3339(d.respond_by));
                attributes["escalate_at"] = json!(rfc3339(d.escalate_at));
            }
            events.push(event(tenant, next.action(), actor, attributes));
        }
        Ok(events)
    }

    /// Metrics and announcements after a change from `before` to `after`.
    fn after_change(&self, before: &Incident, after: &Incident) {
        let sev = SeverityLabel {
            severity: after.severity.as_str().into(),
        };
        let m = &self.metrics.incidents;
        if before.acknowledged_at.is_none() {
            if let Some(at) = after.acknowledged_at {
                m.time_to_acknowledge
                    .get_or_create(&sev)
                    .observe(at.saturating_sub(after.opened_at) as f64 / 1000.0);
            }
        }
        if before.status != Status::Resolved && after.status == Status::Resolved {
            m.resolved.get_or_create(&sev).inc();
            if let Some(at) = after.resolved_at {
                m.time_to_resolve
                    .get_or_create(&sev)
                    .observe(at.saturating_sub(after.opened_at) as f64 / 1000.0);
            }
        }
        if before.status != after.status || before.severity != after.severity {
            self.incidents.announce(
                "updated",
                after.clone(),
                json!({"from": before.status.as_str()}),
            );
        }
    }

    fn breach_event(
        &self,
        tenant: &str,
        id: &str,
        actor: (&str, &str),
        b: BreachRequest,
    ) -> Result<Value> {
        let rules = &self.incidents.rules;
        let tc = rules.tenant(tenant);
        let codes = b
            .jurisdictions
            .or(tc.jurisdictions.clone())
            .unwrap_or_else(|| rules.config.default_jurisdictions.clone());
        let processor = tc.role.as_deref() == Some("processor");
        let now = now_ms();
        let aware = b.aware_at.unwrap_or(now);
        if aware > now + 60_000 {
            return Err(field("aware_at", "is in the future"));
        }
        let mut clocks = Vec::new();
        for code in &codes {
            let j = rules.jurisdiction(code).ok_or_else(|| {
                field(
                    "jurisdictions",
                    format!(
                        "unknown jurisdiction {code:?}; known: {}",
                        rules
                            .jurisdictions
                            .iter()
                            .map(|j| j.code.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
            clocks.extend(breach::clocks(j, aware, b.high_risk, processor));
        }
        Ok(event(
            tenant,
            action::BREACH,
            actor,
            json!({"incident_id": id, "aware_at": rfc3339(aware), "jurisdictions": codes,
                   "high_risk": b.high_risk, "clocks": clocks, "details": b.details}),
        ))
    }

    /// `POST /v1/incidents/{id}/breach`: a personal-data breach; the
    /// clocks of the tenant's jurisdictions start at the time of awareness.
    pub async fn mark_breach(
        self: &Arc<Self>,
        who: &Principal,
        id: &str,
        req: &Value,
    ) -> Result<Incident> {
        Self::require_responder(who)?;
        let b = breach_request(req)?;
        let _one = self.incidents.changes.lock().await;
        let incident = self.incident(who, id)?;
        let actor = who.provenance();
        if incident.breach.is_some() {
            // Marked already: only what became known since may be added.
            let only_details = req
                .as_object()
                .is_some_and(|o| o.keys().all(|k| k == "details"));
            if !only_details || b.details.is_empty() {
                return Err(conflict(format!(
                    "incident {id} is already marked a breach; send {{\"details\": {{...}}}} alone to add what became known since"
                )));
            }
            let e = event(
                &incident.tenant,
                action::BREACH_DETAILS,
                (&actor, "user"),
                json!({"incident_id": id, "details": b.details}),
            );
            self.append_incident_events(vec![e]).await?;
            return self.incident(who, id);
        }
        let e = self.breach_event(&incident.tenant, id, (&actor, "user"), b)?;
        self.append_incident_events(vec![e]).await?;
        let after = self.incident(who, id)?;
        tracing::info!(incident = %id, token_id = %who.token_id, "incident marked a personal-data breach");
        self.incidents
            .announce("breach", after.clone(), Value::Null);
        Ok(after)
    }

    /// `POST /v1/incidents/{id}/notified`: an authority (or the data
    /// subjects, or the controller) was told; which clock, when, reference.
    pub async fn record_notified(
        self: &Arc<Self>,
        who: &Principal,
        id: &str,
        req: &Value,
    ) -> Result<Incident> {
        Self::require_responder(who)?;
        let clock = text_field(req, "clock", true)?.unwrap_or_default();
        let at = time_field(req, "notified_at")?;
        let reference = text_field(req, "reference", false)?;
        let _one = self.incidents.changes.lock().await;
        let incident = self.incident(who, id)?;
        let Some(b) = &incident.breach else {
            return Err(conflict(format!("incident {id} is not marked a breach")));
        };
        if !b.clocks.iter().any(|c| c.key == clock) {
            let keys: Vec<&str> = b.clocks.iter().map(|c| c.key.as_str()).collect();
            return Err(field(
                "clock",
                format!(
                    "{clock:?} is not one of this breach's clocks: {}",
                    keys.join(", ")
                ),
            ));
        }
        if b.notified(&clock).is_some() {
            return Err(conflict(format!("{clock} is already recorded as notified")));
        }
        let now = now_ms();
        let at = at.unwrap_or(now);
        if at > now + 60_000 || at < b.aware_at {
            return Err(field(
                "notified_at",
                "must be between the time of awareness and now",
            ));
        }
        let actor = who.provenance();
        let e = event(
            &incident.tenant,
            action::NOTIFIED,
            (&actor, "user"),
            json!({"incident_id": id, "clock": clock, "notified_at": rfc3339(at), "reference": reference}),
        );
        self.append_incident_events(vec![e]).await?;
        self.incident(who, id)
    }

    /// `POST /v1/incidents/{id}/notes`: a review section (impact, root
    /// cause, actions) or a comment, and related ids; logged.
    pub async fn add_incident_note(
        self: &Arc<Self>,
        who: &Principal,
        id: &str,
        req: &Value,
    ) -> Result<Incident> {
        Self::require_responder(who)?;
        let section = text_field(req, "section", false)?.unwrap_or_else(|| "comment".into());
        if !SECTIONS.contains(&section.as_str()) {
            return Err(field(
                "section",
                format!("{section:?} is not one of {}", SECTIONS.join(", ")),
            ));
        }
        let text = text_field(req, "text", true)?;
        let related = related_field(req)?;
        let _one = self.incidents.changes.lock().await;
        let incident = self.incident(who, id)?;
        let actor = who.provenance();
        let e = event(
            &incident.tenant,
            action::NOTE,
            (&actor, "user"),
            json!({"incident_id": id, "section": section, "text": text, "related": related}),
        );
        self.append_incident_events(vec![e]).await?;
        self.incident(who, id)
    }

    /// `POST /v1/incidents/alertmanager`: firing alerts open or update the
    /// incident of their group; resolved ones mark it mitigated. Returns
    /// what was done and the incident.
    pub async fn alertmanager(
        self: &Arc<Self>,
        who: &Principal,
        body: &Value,
    ) -> Result<(String, Incident)> {
        Self::require_responder(who)?;
        let n = alertmanager::parse(body).map_err(
            |aiaudit_incident::Error::Field { field: f, detail }| {
                Error::bad_field(
                    "invalid-alertmanager-payload",
                    "Invalid Alertmanager webhook body",
                    &f,
                    &detail,
                )
            },
        )?;
        let tenant = match n.tenant() {
            Some(t) => t.to_string(),
            None => match who.tenants.as_slice() {
                [only] if only != "*" => only.clone(),
                _ => LEDGER_TENANT.to_string(),
            },
        };
        if tenant != LEDGER_TENANT && !aiaudit_event::is_valid_tenant(&tenant) {
            return Err(field("commonLabels.tenant", "not a tenant name"));
        }
        if !who.can_read(&tenant) {
            return Err(Error::forbidden(format!(
                "this token may not open incidents of tenant {tenant:?}"
            )));
        }
        let actor = who.provenance();
        let actor = (actor.as_str(), "service");
        let alerts: Vec<Value> = n.alerts.iter().map(|a| a.to_json()).collect();
        let alert_event = |id: &str| {
            event(
                &tenant,
                action::ALERT,
                actor,
                json!({"incident_id": id, "status": if n.firing { "firing" } else { "resolved" },
                       "receiver": n.receiver, "group_key": n.group_key, "alerts": alerts,
                       "external_url": n.external_url}),
            )
        };
        let _one = self.incidents.changes.lock().await;
        let existing = self.incidents.state.by_group(&tenant, &n.group_key);
        let severity = n.severity();
        let (what, id, before, events) = match existing {
            Some(i) if n.firing && i.status.active() => {
                let mut ev = vec![alert_event(&i.id)];
                if severity > i.severity {
                    ev.splice(
                        0..0,
                        self.change_events(
                            &i,
                            actor,
                            None,
                            Some(severity),
                            Some("raised by the alert's severity".into()),
                            None,
                        )?,
                    );
                }
                ("updated", i.id.clone(), Some(i), ev)
            }
            Some(i) if n.firing && i.status == Status::Mitigated => {
                let mut ev = self.change_events(
                    &i,
                    actor,
                    Some(Status::Reopened),
                    Some(severity.max(i.severity)),
                    Some("the alert fires again".into()),
                    None,
                )?;
                ev.push(alert_event(&i.id));
                ("reopened", i.id.clone(), Some(i), ev)
            }
            Some(i) if !n.firing && i.status.active() => {
                let skipped = i
                    .status
                    .unacknowledged()
                    .then(|| "the alert resolved before anyone acknowledged it".to_string());
                let mut ev = vec![alert_event(&i.id)];
                ev.extend(self.change_events(
                    &i,
                    actor,
                    Some(Status::Mitigated),
                    None,
                    Some("Alertmanager: the alert resolved".into()),
                    skipped,
                )?);
                ("mitigated", i.id.clone(), Some(i), ev)
            }
            Some(i) if !n.firing => (
                "noted",
                i.id.clone(),
                Some(i.clone()),
                vec![alert_event(&i.id)],
            ),
            _ if !n.firing => {
                return Err(Error::new(
                    Kind::NotFound,
                    "not-found",
                    "Not found",
                    format!(
                        "no incident of alert group {:?} in tenant {tenant:?} to resolve",
                        n.group_key
                    ),
                ));
            }
            _ => {
                let mut extra = Map::new();
                extra.insert("group_key".into(), json!(n.group_key));
                let desc = n.common_annotations.get("description").cloned();
                if let Some(d) = desc {
                    extra.insert("description".into(), d);
                }
                extra.insert("labels".into(), Value::Object(n.common_labels.clone()));
                let opened =
                    self.opened_event(&tenant, actor, &n.title(), severity, "alertmanager", extra);
                let id = opened["id"].as_str().unwrap_or_default().to_string();
                let alert = alert_event(&id);
                ("opened", id, None, vec![opened, alert])
            }
        };
        self.append_incident_events(events).await?;
        let after = self
            .incidents
            .state
            .get(&id)
            .ok_or_else(|| Error::internal("incident vanished"))?;
        match &before {
            Some(b) => self.after_change(b, &after),
            None => self
                .incidents
                .announce("opened", after.clone(), Value::Null),
        }
        tracing::info!(incident = %id, what, severity = after.severity.as_str(), "alertmanager notification");
        Ok((what.to_string(), after))
    }

    /// A detection of the ledger's own: opens an incident, or notes the
    /// repeat on the one already open for the same key.
    async fn open_detected(self: &Arc<Self>, d: Detection) -> Result<()> {
        let _one = self.incidents.changes.lock().await;
        let key = format!("ledger:{}", d.key);
        let existing = self
            .incidents
            .state
            .by_group(&d.tenant, &key)
            .filter(|i| i.status.is_open());
        let note = |id: &str| {
            event(
                &d.tenant,
                action::NOTE,
                SYSTEM,
                json!({"incident_id": id, "section": "comment", "text": format!("detected again: {}", d.detail),
                       "related": d.related}),
            )
        };
        if let Some(i) = existing {
            let mut events = vec![note(&i.id)];
            if d.severity > i.severity {
                events.extend(self.change_events(
                    &i,
                    SYSTEM,
                    None,
                    Some(d.severity),
                    Some("raised by a detection".into()),
                    None,
                )?);
            }
            self.append_incident_events(events).await?;
            return Ok(());
        }
        let mut extra = Map::new();
        extra.insert("group_key".into(), json!(key));
        extra.insert("description".into(), json!(d.detail));
        if !d.related.is_empty() {
            extra.insert("related".into(), Value::Object(d.related.clone()));
        }
        let opened = self.opened_event(&d.tenant, SYSTEM, &d.title, d.severity, d.origin, extra);
        let id = opened["id"].as_str().unwrap_or_default().to_string();
        self.append_incident_events(vec![opened]).await?;
        if let Some(i) = self.incidents.state.get(&id) {
            self.incidents.announce("opened", i, Value::Null);
        }
        Ok(())
    }

    /// Counts a refused request (401, 403, 429) of `credential` (a token
    /// id, or a hash of a credential that matched none); a burst above the
    /// threshold within the window opens an incident.
    pub fn note_refused(&self, credential: &str, status: u16) {
        self.metrics.incidents.refused_requests.inc();
        let rules = &self.incidents.rules;
        let threshold = rules.config.refused_burst_threshold;
        if threshold == 0 {
            return;
        }
        let now = std::time::Instant::now();
        let burst = {
            let mut map = self
                .incidents
                .refused
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if map.len() > 10_000 {
                map.retain(|_, (start, _)| now.duration_since(*start) < rules.refused_window);
            }
            let e = map.entry(credential.to_string()).or_insert((now, 0));
            if now.duration_since(e.0) >= rules.refused_window {
                *e = (now, 0);
            }
            e.1 += 1;
            e.1 == threshold
        };
        if burst {
            self.incidents.detector.detect(Detection {
                key: format!("refused:{credential}"),
                title: format!("A burst of refused requests from credential {credential}"),
                detail: format!(
                    "{threshold} requests refused within {} s (the last with status {status}): a guessed or stolen token, or a misconfigured client",
                    rules.refused_window.as_secs()
                ),
                severity: Severity::High,
                tenant: LEDGER_TENANT.into(),
                origin: "ledger",
                related: Map::new(),
            });
        }
    }

    /// Opens (or updates) an incident for policy violations of the
    /// severities configured (`open_from_violations`).
    pub(crate) fn violations_to_incidents(&self, found: &[(String, String, String, String)]) {
        // (tenant, rule, severity, violation id)
        for (tenant, rule, severity, id) in found {
            let Some(sev) = Severity::parse(severity) else {
                continue;
            };
            if !self
                .incidents
                .rules
                .config
                .open_from_violations
                .iter()
                .any(|s| s == severity)
            {
                continue;
            }
            let mut related = Map::new();
            related.insert("violation_ids".into(), json!([id]));
            self.incidents.detector.detect(Detection {
                key: format!("policy:{rule}"),
                title: format!("Policy violation: {rule}"),
                detail: format!("a {severity} violation of rule {rule} ({id})"),
                severity: sev,
                tenant: tenant.clone(),
                origin: "policy",
                related,
            });
        }
    }

    /// Folds incident events other nodes of a shared log appended.
    async fn fold_others(self: &Arc<Self>) {
        let from = self
            .incidents
            .folded
            .load(std::sync::atomic::Ordering::Relaxed);
        let size = self.store.size();
        if size <= from {
            return;
        }
        let (store, index, keyring) =
            (self.store.clone(), self.index.clone(), self.keyring.clone());
        let found = tokio::task::spawn_blocking(move || {
            crate::policies::logged_own(&store, &index, &keyring, action::ALL, "incident.", from)
        })
        .await;
        match found {
            Ok(Ok(found)) => {
                for (i, e) in found {
                    self.incidents.state.apply(&e, i);
                }
                self.incidents
                    .folded
                    .store(size, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "reading other nodes' incident events"),
            Err(e) => tracing::warn!(error = %e, "reading other nodes' incident events"),
        }
    }

    /// Logs what is due at `now`: escalations, breach reminders, breach
    /// deadlines missed; each announced.
    pub async fn act_on_deadlines(self: &Arc<Self>, now: u64) {
        let due = self.incidents.state.due(now, &self.incidents.rules.leads);
        if due.is_empty() {
            return;
        }
        let _one = self.incidents.changes.lock().await;
        for d in due {
            let (id, kind, attributes) = match &d {
                Due::Escalate {
                    id,
                    reason,
                    deadline,
                } => (
                    id,
                    "escalated",
                    json!({
                    "incident_id": id, "reason": reason, "deadline": rfc3339(*deadline)}),
                ),
                Due::BreachReminder {
                    id,
                    key,
                    lead,
                    deadline,
                } => (
                    id,
                    "breach_reminder",
                    json!({
                    "incident_id": id, "clock": key, "lead_seconds": lead, "deadline": rfc3339(*deadline)}),
                ),
                Due::BreachMissed { id, key, deadline } => (
                    id,
                    "breach_deadline_missed",
                    json!({
                    "incident_id": id, "clock": key, "deadline": rfc3339(*deadline)}),
                ),
            };
            let Some(incident) = self.incidents.state.get(id) else {
                continue;
            };
            let mut attributes = attributes;
            if let Due::Escalate { .. } = d {
                attributes["round"] = json!(incident.round);
                attributes["severity"] = json!(incident.severity.as_str());
            }
            let act = match kind {
                "escalated" => action::ESCALATED,
                "breach_reminder" => action::BREACH_REMINDER,
                _ => action::BREACH_DEADLINE_MISSED,
            };
            let e = event(&incident.tenant, act, SYSTEM, attributes.clone());
            if let Err(err) = self.append_incident_events(vec![e]).await {
                tracing::error!(incident = %id, error = %err.detail, "logging a deadline failed; retried next tick");
                return;
            }
            match &d {
                Due::Escalate { reason, .. } => {
                    self.metrics
                        .incidents
                        .escalations
                        .get_or_create(&EscalationLabels {
                            severity: incident.severity.as_str().into(),
                            reason: reason.to_string(),
                        })
                        .inc();
                    let level = if *reason == ESCALATION_TIME {
                        "escalation time reached"
                    } else {
                        "response deadline missed"
                    };
                    tracing::warn!(incident = %id, severity = incident.severity.as_str(), level, "incident escalated");
                }
                Due::BreachMissed { key, .. } => {
                    let jurisdiction = key.split(':').next().unwrap_or("").to_string();
                    self.metrics
                        .incidents
                        .breach_deadlines_missed
                        .get_or_create(&JurisdictionLabel { jurisdiction })
                        .inc();
                    tracing::error!(incident = %id, clock = %key, "breach notification deadline missed");
                }
                Due::BreachReminder { key, .. } => {
                    tracing::warn!(incident = %id, clock = %key, "breach notification deadline approaching");
                }
            }
            if let Some(after) = self.incidents.state.get(id) {
                self.incidents.announce(kind, after, attributes);
            }
        }
    }

    /// Sets `aiaudit_incidents_open{severity}` (at scrape time).
    pub(crate) fn count_open_incidents(&self) {
        let mut counts: HashMap<Severity, i64> = Severity::ALL.iter().map(|s| (*s, 0)).collect();
        for i in self.incidents.state.list(|i| i.status.is_open()) {
            *counts.entry(i.severity).or_default() += 1;
        }
        for (s, n) in counts {
            self.metrics
                .incidents
                .open
                .get_or_create(&SeverityLabel {
                    severity: s.as_str().into(),
                })
                .set(n);
        }
    }

    /// Notes a review or a regulator's pack of an incident as an access.
    fn note_incident_document(&self, who: &Principal, tenant: &str, id: &str, document: &str) {
        self.note_access(
            who,
            crate::access::Access {
                tenant: tenant.to_string(),
                kind: crate::access::Kind::Incident,
                indexes: Vec::new(),
                detail: Some(serde_json::json!({"incident": id, "document": document})),
            },
        );
    }

    /// The post-incident review (markdown or HTML), straight from the log:
    /// the incident's events, related events (by trace and conversation id
    /// and index, within its tenant), related violations, and the checkpoint
    /// and inclusion proofs that anchor them.
    pub async fn incident_review(
        self: &Arc<Self>,
        who: &Principal,
        id: &str,
        html: bool,
    ) -> Result<String> {
        let incident = self.incident(who, id)?;
        self.note_incident_document(who, &incident.tenant, id, "review");
        // A checkpoint that covers every event of the incident (the next
        // one, if the newest was published before the last event).
        let last = incident
            .transitions
            .iter()
            .chain(&incident.alerts)
            .chain(&incident.notifications)
            .filter_map(|t| t["index"].as_u64())
            .max()
            .unwrap_or(0);
        let mut published = self.served_checkpoint();
        if published.checkpoint.size <= last {
            published = self.await_checkpoint(last + 1).await?;
        }
        let size = published.checkpoint.size;
        let mut indexes: Vec<u64> = incident
            .transitions
            .iter()
            .chain(&incident.alerts)
            .chain(&incident.notifications)
            .filter_map(|t| t["index"].as_u64())
            .filter(|&i| i < size)
            .collect();
        indexes.sort_unstable();
        indexes.dedup();
        indexes.truncate(1000);
        let proofs = self.prove_records(size, indexes.clone()).await?;
        // The leaves are stored hashes: read them, not whole proofs again.
        let leaves = {
            let (store, wanted) = (self.store.clone(), indexes.clone());
            tokio::task::spawn_blocking(move || {
                wanted
                    .into_iter()
                    .map(|i| store.read_node(0, i))
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .await
            .map_err(|e| Error::internal(e.to_string()))?
            .map_err(|e| Error::from_proof("reading the leaves", &e))?
        };
        let proof_rows: Vec<Value> = indexes
            .iter()
            .zip(proofs)
            .zip(leaves)
            .map(|((i, p), leaf)| {
                json!({"index": i, "leaf_hash": hex::encode(leaf),
                       "proof": p.iter().map(hex::encode).collect::<Vec<_>>()})
            })
            .collect();
        let related_events = self.related_events(&incident).await?;
        let violations: Vec<Value> = incident
            .related
            .get("violation_ids")
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .filter_map(|v| self.violation(who, v).ok())
            .map(|r| r.to_json())
            .collect();
        let input = aiaudit_incident::review::ReviewInput {
            incident: &incident,
            now: now_ms(),
            log_origin: self.origin(),
            checkpoint_note: &published.note,
            proofs: &proof_rows,
            related_events: &related_events,
            violations: &violations,
        };
        Ok(if html {
            aiaudit_incident::review::html(&input)
        } else {
            aiaudit_incident::review::markdown(&input)
        })
    }

    /// Index rows of the events an incident names (trace and conversation
    /// ids, indexes), within its tenant; at most 200 per id.
    async fn related_events(self: &Arc<Self>, incident: &Incident) -> Result<Vec<Value>> {
        let ids = |k: &str| -> Vec<String> {
            incident
                .related
                .get(k)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        let mut queries = Vec::new();
        for t in ids("trace_ids") {
            queries.push(aiaudit_index::Query {
                tenant: Some(incident.tenant.clone()),
                trace_id: Some(t),
                limit: 200,
                order: aiaudit_index::Order::Asc,
                ..Default::default()
            });
        }
        for c in ids("conversation_ids") {
            queries.push(aiaudit_index::Query {
                tenant: Some(incident.tenant.clone()),
                conversation_id: Some(c),
                limit: 200,
                order: aiaudit_index::Order::Asc,
                ..Default::default()
            });
        }
        let wanted: Vec<u64> = incident
            .related
            .get("event_indexes")
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .collect();
        let (index, store, tenant) = (
            self.index.clone(),
            self.store.clone(),
            incident.tenant.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let mut rows = Vec::new();
            for q in queries {
                rows.extend(index.query(&q)?.rows);
            }
            for i in wanted.into_iter().filter(|&i| i < store.size()) {
                let entry = store.read_entry(i)?;
                if let Ok(r) = aiaudit_index::row_from_entry(i, &entry) {
                    // Another tenant's event is not this incident's to show.
                    if r.tenant == tenant {
                        rows.push(r);
                    }
                }
            }
            rows.sort_by_key(|r| r.index);
            rows.dedup_by_key(|r| r.index);
            Ok::<_, anyhow::Error>(
                rows.into_iter()
                    .filter_map(|r| serde_json::to_value(r).ok())
                    .collect(),
            )
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))?
        .map_err(|e| Error::unavailable(format!("reading related events: {e}")))
    }

    /// The notification draft for one jurisdiction's authority.
    pub async fn incident_pack(
        self: &Arc<Self>,
        who: &Principal,
        id: &str,
        jurisdiction: &str,
    ) -> Result<String> {
        let incident = self.incident(who, id)?;
        self.note_incident_document(who, &incident.tenant, id, jurisdiction);
        let j = self
            .incidents
            .rules
            .jurisdiction(jurisdiction)
            .ok_or_else(|| {
                Error::bad_parameter(
                    "jurisdiction",
                    format!(
                        "unknown jurisdiction {jurisdiction:?}; known: {}",
                        self.incidents
                            .rules
                            .jurisdictions
                            .iter()
                            .map(|j| j.code.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
        let tc = self.incidents.rules.tenant(&incident.tenant);
        let published = self.served_checkpoint();
        let input = aiaudit_incident::pack::PackInput {
            incident: &incident,
            jurisdiction: j,
            organisation: aiaudit_incident::pack::Organisation {
                name: tc.organisation.as_deref(),
                dpo_contact: tc.dpo_contact.as_deref(),
                role: tc.role.as_deref().unwrap_or("controller"),
            },
            now: now_ms(),
            checkpoint_note: &published.note,
        };
        aiaudit_incident::pack::markdown(&input)
            .map_err(|e| conflict(format!("incident {id}: {e}")))
    }

    /// Every incident of `tenant` (for reports, already authorized).
    pub(crate) fn incidents_of(&self, tenant: &str) -> Vec<Incident> {
        self.incidents.state.list(|i| i.tenant == tenant)
    }

    /// The organisation details of `tenant` for regulator packs.
    pub fn incident_tenant_config(&self, tenant: &str) -> TenantIncidentConfig {
        self.incidents.rules.tenant(tenant)
    }

    /// A jurisdiction by code (built in or configured).
    pub fn jurisdiction(&self, code: &str) -> Option<Jurisdiction> {
        self.incidents.rules.jurisdiction(code).cloned()
    }
}

/// Names fields of a nested object (`breach.aware_at`).
fn prefix_field(e: Error, prefix: &str) -> Error {
    let mut e = e;
    for f in &mut e.errors {
        f.path = if f.path.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{}", f.path)
        };
        f.pointer = format!("/{prefix}{}", f.pointer.trim_end_matches('/'));
    }
    e.detail = format!("{prefix}.{}", e.detail);
    e
}

// ---- webhooks -------------------------------------------------------------

fn slack_text(n: &Notice) -> String {
    let i = &n.incident;
    let what = match n.kind {
        "opened" => "opened".to_string(),
        "escalated" => format!("ESCALATED ({})", n.detail["reason"].as_str().unwrap_or("")),
        "breach" => "marked a personal-data breach: regulators' clocks started".to_string(),
        "breach_reminder" => format!(
            "breach notification to {} due {}",
            n.detail["clock"].as_str().unwrap_or(""),
            n.detail["deadline"].as_str().unwrap_or("")
        ),
        "breach_deadline_missed" => format!(
            "breach notification deadline MISSED: {}",
            n.detail["clock"].as_str().unwrap_or("")
        ),
        _ => format!("now {}", i.status.as_str()),
    };
    format!(
        "[{}] Incident {what}: {} (tenant {}, id {}). Respond by {}.",
        i.severity.as_str().to_uppercase(),
        i.title,
        i.tenant,
        i.id,
        rfc3339(i.respond_by)
    )
}

fn hook_name(h: &WebhookConfig, n: usize) -> String {
    h.name.clone().unwrap_or_else(|| {
        let host = h
            .url
            .split("://")
            .nth(1)
            .and_then(|r| r.split(['/', '?']).next())
            .unwrap_or("");
        format!("webhook-{n}@{host}")
    })
}

/// Posts notices to the webhooks that want them. Each delivery runs on its
/// own (a dead receiver delays nothing else), retrying with backoff; every
/// attempt is logged on the incident (`incident.notification`).
async fn send_notices(ledger: Arc<Ledger>, mut rx: mpsc::Receiver<Notice>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "incident webhook client");
            return;
        }
    };
    let rules = ledger.incidents.rules.config.clone();
    while let Some(n) = rx.recv().await {
        let escalation = matches!(
            n.kind,
            "escalated" | "breach_reminder" | "breach_deadline_missed"
        );
        let mut hooks: Vec<(String, &WebhookConfig)> = rules
            .webhooks
            .iter()
            .enumerate()
            .map(|(i, h)| (hook_name(h, i), h))
            .collect();
        if escalation {
            hooks.extend(
                rules
                    .escalation_webhooks
                    .iter()
                    .enumerate()
                    .map(|(i, h)| (format!("escalation-{}", hook_name(h, i)), h)),
            );
        }
        for (name, hook) in hooks {
            if !hook.severities.is_empty()
                && !hook
                    .severities
                    .iter()
                    .any(|s| s == n.incident.severity.as_str())
            {
                continue;
            }
            let body = if hook.format == "slack" {
                json!({"text": slack_text(&n)})
            } else {
                json!({"kind": n.kind, "detail": n.detail, "log": ledger.origin(),
                       "incident": n.incident.to_json(now_ms())})
            };
            let delivery = Delivery {
                channel: name,
                url: hook.url.clone(),
                format: hook.format.clone(),
                kind: n.kind,
                tenant: n.incident.tenant.clone(),
                incident_id: n.incident.id.clone(),
            };
            tokio::spawn(deliver(ledger.clone(), client.clone(), delivery, body));
        }
    }
}

struct Delivery {
    channel: String,
    url: String,
    format: String,
    kind: &'static str,
    tenant: String,
    incident_id: String,
}

async fn deliver(ledger: Arc<Ledger>, client: reqwest::Client, d: Delivery, body: Value) {
    let mut wait = Duration::from_millis(500);
    for attempt in 1..=5u32 {
        let outcome = client.post(&d.url).json(&body).send().await;
        let (ok, result) = match outcome.map(|r| r.status()) {
            Ok(s) if s.is_success() => (true, format!("status {}", s.as_u16())),
            Ok(s) => (false, format!("status {}", s.as_u16())),
            // Never the error's text: it may hold the URL, a secret for Slack.
            Err(e) if e.is_timeout() => (false, "timed out".to_string()),
            Err(_) => (false, "connection failed".to_string()),
        };
        let record = event(
            &d.tenant,
            action::NOTIFICATION,
            SYSTEM,
            json!({"incident_id": d.incident_id, "channel": d.channel, "kind": d.kind,
                   "format": d.format, "attempt": attempt, "ok": ok, "result": result}),
        );
        if let Err(e) = ledger.append_incident_events(vec![record]).await {
            tracing::warn!(error = %e.detail, "logging a notification attempt failed");
        }
        if ok {
            return;
        }
        if attempt == 5 {
            ledger.metrics.incidents.notifications_failed.inc();
            tracing::error!(channel = %d.channel, incident = %d.incident_id, "incident webhook gave up after 5 attempts");
            return;
        }
        tracing::warn!(channel = %d.channel, attempt, result = %result, "incident webhook failed; retrying");
        tokio::time::sleep(wait).await;
        wait = (wait * 3).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_is_checked_naming_the_value() {
        IncidentConfig::default().check().unwrap();
        let bad = |f: &dyn Fn(&mut IncidentConfig), needle: &str| {
            let mut c = IncidentConfig::default();
            f(&mut c);
            let e = c.check().unwrap_err();
            assert!(e.contains(needle), "{e}");
        };
        bad(&|c| c.utc_offset = "WAT".into(), "incidents.utc_offset");
        bad(
            &|c| c.default_jurisdictions = vec!["xx".into()],
            "unknown jurisdiction \"xx\"",
        );
        bad(
            &|c| c.breach_reminders = vec!["soon".into()],
            "breach_reminders",
        );
        bad(
            &|c| c.open_from_violations = vec!["urgent".into()],
            "open_from_violations",
        );
        bad(
            &|c| {
                c.webhooks.push(WebhookConfig {
                    url: "ftp://x".into(),
                    name: None,
                    severities: vec![],
                    format: "json".into(),
                })
            },
            "http",
        );
        bad(
            &|c| {
                c.tenants.insert(
                    "acme".into(),
                    TenantIncidentConfig {
                        role: Some("owner".into()),
                        ..Default::default()
                    },
                );
            },
            "incidents.tenants.acme.role",
        );
        // A configured jurisdiction can be named once it is defined.
        let mut c = IncidentConfig::default();
        c.jurisdictions.push(
            serde_json::from_value(json!({"code": "gh", "name": "Ghana", "law": "Act 843",
                "obligations": [{"recipient": "authority", "notify": "DPC", "within_hours": 72,
                                 "reference": "s. 31", "wording": "promptly"}]}))
            .unwrap(),
        );
        c.default_jurisdictions = vec!["gh".into(), "ng".into()];
        c.check().unwrap();
    }

    #[test]
    fn slack_bodies_say_what_happened_without_the_url() {
        let hook = WebhookConfig {
            url: "https://hooks.slack.com/services/T000/B000/SECRET".into(),
            name: None,
            severities: vec![],
            format: "slack".into(),
        };
        assert_eq!(hook_name(&hook, 0), "webhook-0@hooks.slack.com");
    }
}
