//! The incidents as the log says they are: [`Incidents::apply`] folds each
//! `incident.*` event (at start over those already logged, then as each is
//! appended). Events that break the lifecycle, or name an incident of
//! another tenant, change nothing: only the ledger writes incident events,
//! and it checks before it appends, so such an event can only come from a
//! race between nodes, and the first one in the log wins.

use crate::action;
use crate::breach::Clock;
use crate::time_fmt::{parse, rfc3339};
use crate::{Severity, Status};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    pub reason: String,
    pub at: u64,
    pub round: u32,
    pub index: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notified {
    pub key: String,
    pub at: u64,
    pub reference: Option<String>,
    pub by: String,
    pub index: u64,
}

/// A personal-data breach and its clocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    pub aware_at: u64,
    pub marked_at: u64,
    pub high_risk: bool,
    pub jurisdictions: Vec<String>,
    pub clocks: Vec<Clock>,
    /// What is known of it (nature, categories, approximate numbers, ...).
    pub details: Map<String, Value>,
    pub notified: Vec<Notified>,
    /// Per clock: the smallest lead (seconds before the deadline) reminded.
    pub reminded: HashMap<String, u64>,
    /// Clocks whose deadline passed before a notification was logged.
    pub missed: Vec<String>,
}

impl Breach {
    pub fn notified(&self, key: &str) -> Option<&Notified> {
        self.notified.iter().find(|n| n.key == key)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub id: String,
    pub index: u64,
    pub tenant: String,
    pub title: String,
    pub description: Option<String>,
    pub severity: Severity,
    pub status: Status,
    /// manual, alertmanager, policy or ledger.
    pub origin: String,
    pub group_key: Option<String>,
    pub opened_at: u64,
    pub respond_by: u64,
    pub escalate_at: u64,
    /// Incremented when reopened: deadlines and escalations start again.
    pub round: u32,
    /// When this round began: opened, or last reopened (deadlines run from it).
    pub round_started_at: u64,
    pub acknowledged_at: Option<u64>,
    pub mitigated_at: Option<u64>,
    pub resolved_at: Option<u64>,
    pub reviewed_at: Option<u64>,
    pub escalations: Vec<Escalation>,
    pub breach: Option<Breach>,
    /// Review sections (impact, root_cause, actions, comment): every entry logged.
    pub sections: BTreeMap<String, Vec<Value>>,
    /// Trace, conversation, violation ids and event indexes it concerns.
    pub related: BTreeMap<String, Vec<Value>>,
    pub alerts: Vec<Value>,
    pub notifications: Vec<Value>,
    /// Every event of the incident, in log order.
    pub transitions: Vec<Value>,
}

/// What the deadline watcher must do now (see [`Incidents::due`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Log an escalation: `response_deadline_missed` or `escalation_time`.
    Escalate {
        id: String,
        reason: &'static str,
        deadline: u64,
    },
    /// Remind that `key`'s deadline is `lead` seconds away or less.
    BreachReminder {
        id: String,
        key: String,
        lead: u64,
        deadline: u64,
    },
    /// `key`'s deadline passed with no notification logged.
    BreachMissed {
        id: String,
        key: String,
        deadline: u64,
    },
}

pub const RESPONSE_MISSED: &str = "response_deadline_missed";
pub const ESCALATION_TIME: &str = "escalation_time";

impl Incident {
    fn escalated(&self, reason: &str) -> bool {
        self.escalations
            .iter()
            .any(|e| e.reason == reason && e.round == self.round)
    }

    /// The incident as the API answers it, with deadlines judged at `now`.
    pub fn to_json(&self, now: u64) -> Value {
        let t = |ms: Option<u64>| ms.map(rfc3339);
        let breach = self.breach.as_ref().map(|b| {
            let clocks: Vec<Value> = b
                .clocks
                .iter()
                .map(|c| {
                    let notified = b.notified(&c.key).map(|n| {
                        json!({"at": rfc3339(n.at), "reference": n.reference, "by": n.by, "index": n.index,
                               "on_time": c.deadline.as_deref().and_then(parse).is_none_or(|d| n.at <= d)})
                    });
                    let deadline = c.deadline.as_deref().and_then(parse);
                    json!({
                        "key": c.key, "jurisdiction": c.jurisdiction, "recipient": c.recipient.as_str(),
                        "notify": c.notify, "deadline": c.deadline, "reference": c.reference,
                        "wording": c.wording, "notified": notified,
                        "overdue": notified.is_none() && deadline.is_some_and(|d| now > d),
                        "seconds_left": deadline.filter(|_| notified.is_none()).map(|d| (d as i64 - now as i64) / 1000),
                    })
                })
                .collect();
            json!({
                "aware_at": rfc3339(b.aware_at), "marked_at": rfc3339(b.marked_at),
                "high_risk": b.high_risk, "jurisdictions": b.jurisdictions,
                "clocks": clocks, "details": b.details,
            })
        });
        json!({
            "id": self.id,
            "index": self.index,
            "tenant": self.tenant,
            "title": self.title,
            "description": self.description,
            "severity": self.severity.as_str(),
            "status": self.status.as_str(),
            "origin": self.origin,
            "group_key": self.group_key,
            "opened_at": rfc3339(self.opened_at),
            "respond_by": rfc3339(self.respond_by),
            "escalate_at": rfc3339(self.escalate_at),
            "response_overdue": self.status.unacknowledged() && now > self.respond_by,
            "escalated": !self.escalations.is_empty(),
            "escalations": self.escalations.iter().map(|e| json!({
                "reason": e.reason, "at": rfc3339(e.at), "index": e.index})).collect::<Vec<_>>(),
            "acknowledged_at": t(self.acknowledged_at),
            "mitigated_at": t(self.mitigated_at),
            "resolved_at": t(self.resolved_at),
            "reviewed_at": t(self.reviewed_at),
            "breach": breach,
            "sections": self.sections,
            "related": self.related,
            "alerts": self.alerts,
            "notifications": self.notifications,
            "transitions": self.transitions,
        })
    }
}

/// Every incident, folded from the log.
#[derive(Default)]
pub struct Incidents {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Incident>,
    /// (tenant, Alertmanager group key) → the newest incident of that group.
    by_group: HashMap<(String, String), String>,
    /// Log indexes folded (each event counts once, whichever way it came).
    seen: HashSet<u64>,
}

fn text(event: &Value, pointer: &str) -> String {
    event
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn time_of(event: &Value, pointer: &str) -> Option<u64> {
    event
        .pointer(pointer)
        .and_then(Value::as_str)
        .and_then(parse)
}

impl Incidents {
    /// Folds one logged event (at `index`); others are ignored. Returns
    /// whether it changed anything.
    pub fn apply(&self, event: &Value, index: u64) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !inner.seen.insert(index) {
            return false;
        }
        let applied = fold(&mut inner, event, index);
        if !applied {
            inner.seen.remove(&index);
        }
        applied
    }

    pub fn get(&self, id: &str) -> Option<Incident> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.by_id.get(id).cloned()
    }

    /// The incidents `keep` selects, newest first.
    pub fn list(&self, keep: impl Fn(&Incident) -> bool) -> Vec<Incident> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Incident> = inner.by_id.values().filter(|i| keep(i)).cloned().collect();
        out.sort_by_key(|i| std::cmp::Reverse(i.index));
        out
    }

    /// The newest incident of an Alertmanager group in `tenant`.
    pub fn by_group(&self, tenant: &str, group_key: &str) -> Option<Incident> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = inner
            .by_group
            .get(&(tenant.to_string(), group_key.to_string()))?;
        inner.by_id.get(id).cloned()
    }

    /// What is due at `now`: escalations of deadlines missed, breach
    /// reminders at `leads` (seconds before a deadline) and breach
    /// deadlines missed. Each is due once: logging it stops it being due.
    pub fn due(&self, now: u64, leads: &[u64]) -> Vec<Due> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        let mut ids: Vec<&Incident> = inner.by_id.values().collect();
        ids.sort_by_key(|i| i.index);
        for i in ids {
            if i.status.unacknowledged() && now >= i.respond_by && !i.escalated(RESPONSE_MISSED) {
                out.push(Due::Escalate {
                    id: i.id.clone(),
                    reason: RESPONSE_MISSED,
                    deadline: i.respond_by,
                });
            }
            if i.status.active() && now >= i.escalate_at && !i.escalated(ESCALATION_TIME) {
                out.push(Due::Escalate {
                    id: i.id.clone(),
                    reason: ESCALATION_TIME,
                    deadline: i.escalate_at,
                });
            }
            let Some(b) = &i.breach else { continue };
            for c in &b.clocks {
                let Some(deadline) = c.deadline.as_deref().and_then(parse) else {
                    continue;
                };
                if b.notified(&c.key).is_some() {
                    continue;
                }
                if now >= deadline {
                    if !b.missed.contains(&c.key) {
                        out.push(Due::BreachMissed {
                            id: i.id.clone(),
                            key: c.key.clone(),
                            deadline,
                        });
                    }
                    continue;
                }
                let reminded = b.reminded.get(&c.key).copied().unwrap_or(u64::MAX);
                let lead = leads
                    .iter()
                    .copied()
                    .filter(|&l| l < reminded && now + l * 1000 >= deadline)
                    .min();
                if let Some(lead) = lead {
                    out.push(Due::BreachReminder {
                        id: i.id.clone(),
                        key: c.key.clone(),
                        lead,
                        deadline,
                    });
                }
            }
        }
        out
    }
}

fn step(event: &Value, index: u64) -> Value {
    let mut s = json!({
        "action": text(event, "/action"),
        "time": text(event, "/time"),
        "by": text(event, "/actor/id"),
        "event_id": text(event, "/id"),
        "index": index,
    });
    if let Value::Object(attrs) = &event["attributes"] {
        for (k, v) in attrs {
            if k != "incident_id" {
                s[k] = v.clone();
            }
        }
    }
    s
}

fn fold(inner: &mut Inner, event: &Value, index: u64) -> bool {
    let act = text(event, "/action");
    if act == action::OPENED {
        return open(inner, event, index);
    }
    if !action::ALL.contains(&act.as_str()) {
        return false;
    }
    let id = text(event, "/attributes/incident_id");
    let Some(i) = inner.by_id.get_mut(&id) else {
        return false;
    };
    // An event of another tenant cannot touch this incident.
    if i.tenant != text(event, "/tenant") {
        return false;
    }
    let at = time_of(event, "/time").unwrap_or(0);
    let a = &event["attributes"];
    if let Some(next) = Status::ALL
        .into_iter()
        .find(|s| s.action() == act && *s != Status::Open)
    {
        let skipped = a["skipped_acknowledgement"]
            .as_str()
            .is_some_and(|s| !s.is_empty());
        if i.status.check(next, skipped).is_err() {
            return false;
        }
        i.status = next;
        match next {
            Status::Acknowledged => i.acknowledged_at = Some(at),
            Status::Mitigated => i.mitigated_at = Some(at),
            Status::Resolved => i.resolved_at = Some(at),
            Status::Reviewed => i.reviewed_at = Some(at),
            Status::Reopened => {
                i.round += 1;
                i.round_started_at = at;
                i.acknowledged_at = None;
                i.mitigated_at = None;
                i.resolved_at = None;
                i.reviewed_at = None;
                if let (Some(r), Some(e)) = (time_of(a, "/respond_by"), time_of(a, "/escalate_at"))
                {
                    i.respond_by = r;
                    i.escalate_at = e;
                }
            }
            Status::Open => {}
        }
        i.transitions.push(step(event, index));
        return true;
    }
    match act.as_str() {
        action::SEVERITY_CHANGED => {
            let Some(to) = a["to"].as_str().and_then(Severity::parse) else {
                return false;
            };
            i.severity = to;
            if let (Some(r), Some(e)) = (time_of(a, "/respond_by"), time_of(a, "/escalate_at")) {
                i.respond_by = r;
                i.escalate_at = e;
            }
        }
        action::ESCALATED => i.escalations.push(Escalation {
            reason: a["reason"].as_str().unwrap_or("").to_string(),
            at,
            round: a["round"].as_u64().unwrap_or(i.round as u64) as u32,
            index,
        }),
        action::ALERT => {
            let mut alert = step(event, index);
            alert.as_object_mut().map(|o| o.remove("action"));
            i.alerts.push(alert);
        }
        action::BREACH => {
            if i.breach.is_some() {
                return false;
            }
            let clocks: Vec<Clock> =
                serde_json::from_value(a["clocks"].clone()).unwrap_or_default();
            i.breach = Some(Breach {
                aware_at: time_of(a, "/aware_at").unwrap_or(at),
                marked_at: at,
                high_risk: a["high_risk"].as_bool().unwrap_or(false),
                jurisdictions: serde_json::from_value(a["jurisdictions"].clone())
                    .unwrap_or_default(),
                clocks,
                details: a["details"].as_object().cloned().unwrap_or_default(),
                notified: Vec::new(),
                reminded: HashMap::new(),
                missed: Vec::new(),
            });
        }
        action::BREACH_DETAILS => {
            let Some(b) = &mut i.breach else { return false };
            let Some(details) = a["details"].as_object() else {
                return false;
            };
            for (k, v) in details {
                b.details.insert(k.clone(), v.clone());
            }
        }
        action::NOTIFIED => {
            let Some(b) = &mut i.breach else { return false };
            let key = a["clock"].as_str().unwrap_or("").to_string();
            if !b.clocks.iter().any(|c| c.key == key) || b.notified(&key).is_some() {
                return false;
            }
            b.notified.push(Notified {
                key,
                at: time_of(a, "/notified_at").unwrap_or(at),
                reference: a["reference"].as_str().map(str::to_string),
                by: text(event, "/actor/id"),
                index,
            });
        }
        action::BREACH_REMINDER => {
            let Some(b) = &mut i.breach else { return false };
            let key = a["clock"].as_str().unwrap_or("").to_string();
            let lead = a["lead_seconds"].as_u64().unwrap_or(0);
            let e = b.reminded.entry(key).or_insert(u64::MAX);
            *e = (*e).min(lead);
        }
        action::BREACH_DEADLINE_MISSED => {
            let Some(b) = &mut i.breach else { return false };
            let key = a["clock"].as_str().unwrap_or("").to_string();
            if !b.missed.contains(&key) {
                b.missed.push(key);
            }
        }
        action::NOTIFICATION => {
            let mut n = step(event, index);
            n.as_object_mut().map(|o| o.remove("action"));
            i.notifications.push(n);
            // Attempts are in `notifications`, not among the transitions.
            return true;
        }
        action::NOTE => {
            let section = a["section"].as_str().unwrap_or("comment").to_string();
            i.sections.entry(section).or_default().push(json!({
                "text": a["text"], "by": text(event, "/actor/id"),
                "time": text(event, "/time"), "index": index,
            }));
            if let Value::Object(rel) = &a["related"] {
                merge_related(&mut i.related, rel);
            }
        }
        _ => return false,
    }
    i.transitions.push(step(event, index));
    true
}

fn merge_related(into: &mut BTreeMap<String, Vec<Value>>, rel: &Map<String, Value>) {
    for (k, v) in rel {
        let list = into.entry(k.clone()).or_default();
        for x in v.as_array().into_iter().flatten() {
            if !list.contains(x) {
                list.push(x.clone());
            }
        }
    }
}

fn open(inner: &mut Inner, event: &Value, index: u64) -> bool {
    let id = text(event, "/id");
    let a = &event["attributes"];
    let (Some(severity), Some(opened_at)) = (
        a["severity"].as_str().and_then(Severity::parse),
        time_of(event, "/time"),
    ) else {
        return false;
    };
    if id.is_empty() || inner.by_id.contains_key(&id) {
        return false;
    }
    let tenant = text(event, "/tenant");
    let group_key = a["group_key"].as_str().map(str::to_string);
    let mut related = BTreeMap::new();
    if let Value::Object(rel) = &a["related"] {
        merge_related(&mut related, rel);
    }
    let incident = Incident {
        id: id.clone(),
        index,
        tenant: tenant.clone(),
        title: a["title"].as_str().unwrap_or("").to_string(),
        description: a["description"].as_str().map(str::to_string),
        severity,
        status: Status::Open,
        origin: a["origin"].as_str().unwrap_or("manual").to_string(),
        group_key: group_key.clone(),
        opened_at,
        respond_by: time_of(a, "/respond_by").unwrap_or(opened_at),
        escalate_at: time_of(a, "/escalate_at").unwrap_or(opened_at),
        round: 0,
        round_started_at: opened_at,
        acknowledged_at: None,
        mitigated_at: None,
        resolved_at: None,
        reviewed_at: None,
        escalations: Vec::new(),
        breach: None,
        sections: BTreeMap::new(),
        related,
        alerts: Vec::new(),
        notifications: Vec::new(),
        transitions: vec![step(event, index)],
    };
    if let Some(g) = group_key {
        inner.by_group.insert((tenant, g), id.clone());
    }
    inner.by_id.insert(id, incident);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{deadlines, BusinessHours};

    const T0: &str = "2026-03-04T10:00:00Z";

    fn opened(id: &str, tenant: &str, severity: Severity) -> Value {
        let at = parse(T0).unwrap();
        let d = deadlines(severity, at, &BusinessHours::default());
        json!({"id": id, "time": T0, "tenant": tenant, "action": action::OPENED,
               "actor": {"id": "token:a"},
               "attributes": {"title": "t", "severity": severity.as_str(), "origin": "manual",
                              "respond_by": rfc3339(d.respond_by), "escalate_at": rfc3339(d.escalate_at),
                              "group_key": "g1"}})
    }

    fn ev(act: &str, id: &str, tenant: &str, time: &str, attrs: Value) -> Value {
        let mut a = attrs;
        a["incident_id"] = json!(id);
        json!({"id": format!("e-{act}-{time}"), "time": time, "tenant": tenant, "action": act,
               "actor": {"id": "token:b"}, "attributes": a})
    }

    fn ms(s: &str) -> u64 {
        parse(s).unwrap()
    }

    #[test]
    fn the_lifecycle_is_folded_from_the_log() {
        let s = Incidents::default();
        assert!(s.apply(&opened("i1", "acme", Severity::High), 1));
        assert!(
            !s.apply(&opened("i1", "acme", Severity::High), 1),
            "each index once"
        );
        // Out of order: resolved before acknowledged, without saying why.
        assert!(!s.apply(
            &ev(
                action::RESOLVED,
                "i1",
                "acme",
                "2026-03-04T10:01:00Z",
                json!({})
            ),
            2
        ));
        // Another tenant's event cannot touch it.
        assert!(!s.apply(
            &ev(
                action::ACKNOWLEDGED,
                "i1",
                "globex",
                "2026-03-04T10:01:00Z",
                json!({})
            ),
            3
        ));
        assert!(s.apply(
            &ev(
                action::ACKNOWLEDGED,
                "i1",
                "acme",
                "2026-03-04T10:02:00Z",
                json!({"note": "on it"})
            ),
            4
        ));
        assert!(s.apply(
            &ev(
                action::MITIGATED,
                "i1",
                "acme",
                "2026-03-04T10:20:00Z",
                json!({})
            ),
            5
        ));
        assert!(s.apply(
            &ev(
                action::RESOLVED,
                "i1",
                "acme",
                "2026-03-04T11:00:00Z",
                json!({"note": "fixed"})
            ),
            6
        ));
        assert!(s.apply(
            &ev(
                action::REVIEWED,
                "i1",
                "acme",
                "2026-03-05T11:00:00Z",
                json!({})
            ),
            7
        ));
        assert!(!s.apply(
            &ev(
                action::RESOLVED,
                "i1",
                "acme",
                "2026-03-05T12:00:00Z",
                json!({})
            ),
            8
        ));
        let i = s.get("i1").unwrap();
        assert_eq!(i.status, Status::Reviewed);
        assert_eq!(i.transitions.len(), 5);
        let j = i.to_json(ms("2026-03-06T00:00:00Z"));
        assert_eq!(j["respond_by"], "2026-03-04T10:15:00Z");
        assert_eq!(j["escalate_at"], "2026-03-04T10:30:00Z");
        assert_eq!(j["acknowledged_at"], "2026-03-04T10:02:00Z");
        assert_eq!(j["transitions"][1]["note"], "on it");
        assert_eq!(j["transitions"][1]["by"], "token:b");
        assert_eq!(s.by_group("acme", "g1").unwrap().id, "i1");
        assert!(s.by_group("globex", "g1").is_none());
        // Reopened: deadlines start again from the reopening.
        let re = ev(
            action::REOPENED,
            "i1",
            "acme",
            "2026-03-06T09:00:00Z",
            json!({"respond_by": "2026-03-06T09:15:00Z", "escalate_at": "2026-03-06T09:30:00Z"}),
        );
        assert!(s.apply(&re, 9));
        let i = s.get("i1").unwrap();
        assert_eq!((i.status, i.round), (Status::Reopened, 1));
        assert_eq!(rfc3339(i.respond_by), "2026-03-06T09:15:00Z");
        assert_eq!(i.acknowledged_at, None);
    }

    #[test]
    fn deadlines_escalate_once_each_with_a_controllable_clock() {
        let s = Incidents::default();
        s.apply(&opened("i1", "acme", Severity::High), 1);
        assert!(s.due(ms("2026-03-04T10:14:59Z"), &[]).is_empty());
        let due = s.due(ms("2026-03-04T10:15:00Z"), &[]);
        assert_eq!(
            due,
            [Due::Escalate {
                id: "i1".into(),
                reason: RESPONSE_MISSED,
                deadline: ms("2026-03-04T10:15:00Z")
            }]
        );
        s.apply(
            &ev(
                action::ESCALATED,
                "i1",
                "acme",
                "2026-03-04T10:15:00Z",
                json!({"reason": RESPONSE_MISSED, "round": 0}),
            ),
            2,
        );
        assert!(s.due(ms("2026-03-04T10:29:00Z"), &[]).is_empty());
        // Acknowledged but not mitigated at 30 minutes: escalated again.
        s.apply(
            &ev(
                action::ACKNOWLEDGED,
                "i1",
                "acme",
                "2026-03-04T10:20:00Z",
                json!({}),
            ),
            3,
        );
        let due = s.due(ms("2026-03-04T10:30:00Z"), &[]);
        assert!(
            matches!(
                &due[..],
                [Due::Escalate {
                    reason: ESCALATION_TIME,
                    ..
                }]
            ),
            "{due:?}"
        );
        s.apply(
            &ev(
                action::MITIGATED,
                "i1",
                "acme",
                "2026-03-04T10:25:00Z",
                json!({}),
            ),
            4,
        );
        assert!(
            s.due(ms("2026-03-04T10:30:00Z"), &[]).is_empty(),
            "mitigated in time"
        );
        // A critical incident escalates the moment it opens.
        s.apply(&opened("i2", "acme", Severity::Critical), 5);
        let due = s.due(ms(T0), &[]);
        assert!(
            matches!(
                &due[..],
                [Due::Escalate {
                    reason: ESCALATION_TIME,
                    ..
                }]
            ),
            "{due:?}"
        );
        // Raising the severity moves the deadlines (logged with the change).
        s.apply(&opened("i3", "acme", Severity::Low), 6);
        s.apply(&ev(action::SEVERITY_CHANGED, "i3", "acme", "2026-03-04T10:01:00Z",
            json!({"from": "low", "to": "high", "respond_by": "2026-03-04T10:15:00Z", "escalate_at": "2026-03-04T10:30:00Z"})), 7);
        assert_eq!(s.get("i3").unwrap().severity, Severity::High);
        let due = s.due(ms("2026-03-04T10:16:00Z"), &[]);
        assert!(due
            .iter()
            .any(|d| matches!(d, Due::Escalate { id, reason: RESPONSE_MISSED, .. } if id == "i3")));
    }

    #[test]
    fn breach_clocks_remind_then_miss() {
        let s = Incidents::default();
        s.apply(&opened("i1", "acme", Severity::High), 1);
        s.apply(
            &ev(
                action::ACKNOWLEDGED,
                "i1",
                "acme",
                "2026-03-04T10:01:00Z",
                json!({}),
            ),
            2,
        );
        s.apply(
            &ev(
                action::MITIGATED,
                "i1",
                "acme",
                "2026-03-04T10:02:00Z",
                json!({}),
            ),
            3,
        );
        let ng = crate::breach::builtin()
            .into_iter()
            .find(|j| j.code == "ng")
            .unwrap();
        let clocks = crate::breach::clocks(&ng, ms(T0), false, false);
        s.apply(&ev(action::BREACH, "i1", "acme", "2026-03-04T12:00:00Z",
            json!({"aware_at": T0, "jurisdictions": ["ng"], "clocks": clocks, "high_risk": false})), 4);
        let leads = [24 * 3600, 6 * 3600, 3600];
        assert!(s.due(ms("2026-03-06T09:59:59Z"), &leads).is_empty());
        let due = s.due(ms("2026-03-06T10:00:00Z"), &leads);
        assert_eq!(
            due,
            [Due::BreachReminder {
                id: "i1".into(),
                key: "ng:authority".into(),
                lead: 24 * 3600,
                deadline: ms("2026-03-07T10:00:00Z")
            }]
        );
        s.apply(
            &ev(
                action::BREACH_REMINDER,
                "i1",
                "acme",
                "2026-03-06T10:00:00Z",
                json!({"clock": "ng:authority", "lead_seconds": 24 * 3600}),
            ),
            5,
        );
        assert!(s.due(ms("2026-03-06T10:00:00Z"), &leads).is_empty());
        // Asleep past two lead times: one reminder, the nearest.
        let due = s.due(ms("2026-03-07T09:30:00Z"), &leads);
        assert!(
            matches!(&due[..], [Due::BreachReminder { lead: 3600, .. }]),
            "{due:?}"
        );
        let due = s.due(ms("2026-03-07T10:00:00Z"), &leads);
        assert!(matches!(&due[..], [Due::BreachMissed { .. }]), "{due:?}");
        s.apply(
            &ev(
                action::BREACH_DEADLINE_MISSED,
                "i1",
                "acme",
                "2026-03-07T10:00:00Z",
                json!({"clock": "ng:authority"}),
            ),
            6,
        );
        assert!(s.due(ms("2026-03-08T10:00:00Z"), &leads).is_empty());
        // Notified late: recorded, and judged late.
        s.apply(
            &ev(
                action::NOTIFIED,
                "i1",
                "acme",
                "2026-03-07T15:00:00Z",
                json!({"clock": "ng:authority", "reference": "NDPC/2026/001"}),
            ),
            7,
        );
        let j = s.get("i1").unwrap().to_json(ms("2026-03-08T00:00:00Z"));
        let c = &j["breach"]["clocks"][0];
        assert_eq!(c["deadline"], "2026-03-07T10:00:00Z");
        assert_eq!(c["notified"]["reference"], "NDPC/2026/001");
        assert_eq!(c["notified"]["on_time"], false);
        assert_eq!(c["overdue"], false);
        // Details learnt later are added, the first ones kept.
        s.apply(
            &ev(
                action::BREACH_DETAILS,
                "i1",
                "acme",
                "2026-03-07T16:00:00Z",
                json!({"details": {"delay_reasons": "the processor told us late"}}),
            ),
            9,
        );
        let b = s.get("i1").unwrap().breach.unwrap();
        assert_eq!(b.details["delay_reasons"], "the processor told us late");
        assert_eq!(b.aware_at, ms(T0));
        // A clock the breach did not start cannot be notified.
        assert!(!s.apply(
            &ev(
                action::NOTIFIED,
                "i1",
                "acme",
                "2026-03-07T15:00:00Z",
                json!({"clock": "ke:authority"})
            ),
            8
        ));
    }
}
