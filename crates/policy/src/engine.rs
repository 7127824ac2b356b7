//! Evaluation: each event against every rule, plus the state the windowed
//! kinds need (open follow-up windows, when each source was last heard).
//! Time is always a parameter (milliseconds since the Unix epoch), so the
//! caller decides what "now" is and tests are deterministic.

use crate::cond::Vars;
use crate::rules::{Kind, Policies, Severity};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Open follow-up windows kept at most; beyond, the oldest is dropped (and counted).
pub const MAX_PENDING: usize = 100_000;
/// Sources tracked per heartbeat rule at most.
pub const MAX_SOURCES: usize = 100_000;
/// One tenant's share of [`MAX_PENDING`]: beyond it the tenant's own oldest
/// window is dropped, so no tenant can evict another's windows.
pub const MAX_PENDING_PER_TENANT: usize = 10_000;
/// One tenant's share of [`MAX_SOURCES`]: beyond it its new sources are not tracked.
pub const MAX_SOURCES_PER_TENANT: usize = 10_000;

/// One rule broken.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub rule: String,
    pub severity: Severity,
    pub description: String,
    pub tenant: String,
    /// The event that broke the rule (for heartbeats: none).
    pub event_id: Option<String>,
    pub event_index: Option<u64>,
    /// The source concerned (heartbeats).
    pub source: Option<String>,
    /// What happened, for a person.
    pub detail: String,
}

/// Whether an event is one the policy engine wrote itself: never evaluated,
/// so a rule cannot feed on its own violations.
pub fn is_policy_event(event: &Value) -> bool {
    let action = event.get("action").and_then(Value::as_str).unwrap_or("");
    action == "policy.violation" || action.starts_with("policy.violation.")
}

struct Pending {
    rule: String,
    tenant: String,
    conversation: Option<String>,
    event_id: String,
    event_index: u64,
    deadline_ms: u64,
}

struct Heard {
    count: u64,
    last_ms: u64,
    alerted: bool,
}

/// The rules and the windows they keep open.
pub struct Engine {
    policies: Arc<Policies>,
    registered: Vec<String>,
    pending: VecDeque<Pending>,
    /// (rule, tenant, source name) → what was heard.
    heard: HashMap<(String, String, String), Heard>,
    /// Open windows and tracked sources per tenant (for the per-tenant caps).
    pending_of: HashMap<String, usize>,
    heard_of: HashMap<String, usize>,
    dropped: u64,
}

fn str_at<'a>(event: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(event, |v, k| v.get(*k))
        .and_then(Value::as_str)
}

impl Engine {
    pub fn new(policies: Arc<Policies>) -> Engine {
        Engine {
            policies,
            registered: Vec::new(),
            pending: VecDeque::new(),
            heard: HashMap::new(),
            pending_of: HashMap::new(),
            heard_of: HashMap::new(),
            dropped: 0,
        }
    }

    pub fn policies(&self) -> &Arc<Policies> {
        &self.policies
    }

    /// New rules. Windows of rules that are gone (or changed kind) are
    /// dropped; those of rules that remain keep running.
    pub fn set_policies(&mut self, policies: Arc<Policies>) {
        let followup = |id: &str| {
            matches!(
                policies.get(id).map(|r| &r.kind),
                Some(Kind::MissingFollowup { .. })
            )
        };
        let heartbeat = |id: &str| {
            matches!(
                policies.get(id).map(|r| &r.kind),
                Some(Kind::Heartbeat { .. })
            )
        };
        self.pending.retain(|p| followup(&p.rule));
        self.heard.retain(|(rule, _, _), _| heartbeat(rule));
        self.recount();
        self.policies = policies;
    }

    /// Names of registered emitters, the `registered_emitters` variable.
    pub fn set_registered_emitters(&mut self, names: Vec<String>) {
        self.registered = names;
    }

    /// Open follow-up windows.
    /// Recomputes the per-tenant counts after windows or sources went.
    fn recount(&mut self) {
        self.pending_of.clear();
        for p in &self.pending {
            *self.pending_of.entry(p.tenant.clone()).or_default() += 1;
        }
        self.heard_of.clear();
        for (_, tenant, _) in self.heard.keys() {
            *self.heard_of.entry(tenant.clone()).or_default() += 1;
        }
    }

    /// Makes room for one more window of `tenant`: past its share, its own
    /// oldest goes; past the whole cap, the oldest of the tenant holding most.
    fn make_room(&mut self, tenant: &str) {
        let mine = self.pending_of.get(tenant).copied().unwrap_or(0);
        let victim = if mine >= MAX_PENDING_PER_TENANT {
            Some(tenant.to_string())
        } else if self.pending.len() >= MAX_PENDING {
            self.pending_of
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(t, _)| t.clone())
        } else {
            None
        };
        if let Some(victim) = victim {
            if let Some(pos) = self.pending.iter().position(|p| p.tenant == victim) {
                self.pending.remove(pos);
                if let Some(n) = self.pending_of.get_mut(&victim) {
                    *n = n.saturating_sub(1);
                }
                self.dropped += 1;
            }
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Windows or sources dropped because the limits were reached.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Evaluates one logged event (at log index `index`), received at `now_ms`.
    pub fn observe(&mut self, event: &Value, index: u64, now_ms: u64) -> Vec<Violation> {
        if is_policy_event(event) || self.policies.rules.is_empty() {
            return Vec::new();
        }
        let tenant = str_at(event, &["tenant"]).unwrap_or("").to_string();
        let event_id = str_at(event, &["id"]).unwrap_or("").to_string();
        let conversation = str_at(event, &["ai", "gen_ai.conversation.id"]).map(str::to_string);
        let vars = Vars::new(event, &self.registered);
        let policies = self.policies.clone();
        let mut out = Vec::new();
        for rule in policies.rules.iter().filter(|r| r.applies_to(&tenant)) {
            match &rule.kind {
                Kind::Match { condition } => {
                    if condition.matches(&vars) {
                        out.push(Violation {
                            rule: rule.id.clone(),
                            severity: rule.severity,
                            description: rule.description.clone(),
                            tenant: tenant.clone(),
                            event_id: Some(event_id.clone()),
                            event_index: Some(index),
                            source: str_at(event, &["source", "name"]).map(str::to_string),
                            detail: format!("event {event_id} matched {}", condition.source),
                        });
                    }
                }
                Kind::MissingFollowup {
                    trigger,
                    followup,
                    within,
                } => {
                    // The follow-up is checked first so that an event never
                    // satisfies the window it opens itself.
                    if conversation.is_some() && followup.matches(&vars) {
                        let before = self.pending.len();
                        self.pending.retain(|p| {
                            !(p.rule == rule.id
                                && p.tenant == tenant
                                && p.conversation == conversation)
                        });
                        if let Some(n) = self.pending_of.get_mut(&tenant) {
                            *n = n.saturating_sub(before - self.pending.len());
                        }
                    }
                    if trigger.matches(&vars) {
                        self.make_room(&tenant);
                        *self.pending_of.entry(tenant.clone()).or_default() += 1;
                        self.pending.push_back(Pending {
                            rule: rule.id.clone(),
                            tenant: tenant.clone(),
                            conversation: conversation.clone(),
                            event_id: event_id.clone(),
                            event_index: index,
                            deadline_ms: now_ms.saturating_add(within.as_millis() as u64),
                        });
                    }
                }
                Kind::Heartbeat { condition, .. } => {
                    if condition.as_ref().is_some_and(|c| !c.matches(&vars)) {
                        continue;
                    }
                    let source = str_at(event, &["source", "name"]).unwrap_or("").to_string();
                    let key = (rule.id.clone(), tenant.clone(), source);
                    if !self.heard.contains_key(&key) {
                        let mine = self.heard_of.get(&tenant).copied().unwrap_or(0);
                        if mine >= MAX_SOURCES_PER_TENANT || self.heard.len() >= MAX_SOURCES {
                            self.dropped += 1;
                            continue;
                        }
                        *self.heard_of.entry(tenant.clone()).or_default() += 1;
                    }
                    let h = self.heard.entry(key).or_insert(Heard {
                        count: 0,
                        last_ms: now_ms,
                        alerted: false,
                    });
                    h.count += 1;
                    h.last_ms = h.last_ms.max(now_ms);
                    h.alerted = false;
                }
            }
        }
        out
    }

    /// The violations that time alone causes: follow-up deadlines passed,
    /// sources gone quiet. Each fires once.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Violation> {
        let policies = self.policies.clone();
        let mut out = Vec::new();
        let mut open = VecDeque::with_capacity(self.pending.len());
        for p in self.pending.drain(..) {
            if p.deadline_ms >= now_ms {
                open.push_back(p);
                continue;
            }
            let Some(rule) = policies.get(&p.rule) else {
                continue;
            };
            let Kind::MissingFollowup {
                followup, within, ..
            } = &rule.kind
            else {
                continue;
            };
            let detail = match &p.conversation {
                Some(c) => format!(
                    "no event matching {} in conversation {c} within {} min of event {}",
                    followup.source,
                    within.as_secs() / 60,
                    p.event_id
                ),
                None => format!(
                    "event {} has no gen_ai.conversation.id, so no follow-up can match it",
                    p.event_id
                ),
            };
            out.push(Violation {
                rule: rule.id.clone(),
                severity: rule.severity,
                description: rule.description.clone(),
                tenant: p.tenant,
                event_id: Some(p.event_id),
                event_index: Some(p.event_index),
                source: None,
                detail,
            });
        }
        self.pending = open;
        self.recount();
        for ((rule_id, tenant, source), h) in self.heard.iter_mut() {
            let Some(rule) = policies.get(rule_id) else {
                continue;
            };
            let Kind::Heartbeat {
                quiet, min_events, ..
            } = &rule.kind
            else {
                continue;
            };
            let silent_ms = now_ms.saturating_sub(h.last_ms);
            if h.alerted || h.count < *min_events || silent_ms <= quiet.as_millis() as u64 {
                continue;
            }
            h.alerted = true;
            out.push(Violation {
                rule: rule.id.clone(),
                severity: rule.severity,
                description: rule.description.clone(),
                tenant: tenant.clone(),
                event_id: None,
                event_index: None,
                source: Some(source.clone()),
                detail: format!(
                    "source {source:?} sent {} events, then nothing for {} s (heartbeat {} s)",
                    h.count,
                    silent_ms / 1000,
                    quiet.as_secs()
                ),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn engine(text: &str) -> Engine {
        Engine::new(Arc::new(Policies::parse(text).unwrap()))
    }

    const ANY_FAILURE: &str = r#"
[[rule]]
id = "fail"
description = "d"
severity = "info"
condition = 'outcome.status == "failure"'
"#;

    #[test]
    fn policy_events_are_never_evaluated() {
        let mut e = engine(ANY_FAILURE);
        let mut ev = json!({"id": "v", "tenant": "t", "action": "policy.violation",
                            "outcome": {"status": "failure"}});
        assert!(e.observe(&ev, 0, 0).is_empty());
        ev["action"] = json!("policy.violation.resolved");
        assert!(e.observe(&ev, 0, 0).is_empty());
        ev["action"] = json!("policy.violations");
        assert_eq!(e.observe(&ev, 0, 0).len(), 1);
    }

    #[test]
    fn missing_fields_are_no_match_not_an_error() {
        let mut e = engine(ANY_FAILURE);
        assert!(e.observe(&json!({"id": "x"}), 0, 0).is_empty());
        assert!(e.observe(&json!("not an object"), 0, 0).is_empty());
    }

    #[test]
    fn reloading_keeps_windows_of_rules_that_remain() {
        let text = r#"
[[rule]]
id = "f"
description = "d"
severity = "high"
kind = "missing_followup"
trigger = 'action == "a.b"'
followup = 'action == "c.d"'
within_minutes = 1
"#;
        let mut e = engine(text);
        e.observe(&json!({"id": "1", "tenant": "t", "action": "a.b"}), 0, 0);
        e.set_policies(Arc::new(Policies::parse(text).unwrap()));
        assert_eq!(e.pending(), 1);
        e.set_policies(Arc::new(Policies::parse(ANY_FAILURE).unwrap()));
        assert_eq!(e.pending(), 0);
        assert!(e.tick(120_000).is_empty());
    }

    #[test]
    fn one_tenant_cannot_evict_another_tenants_windows_or_sources() {
        let text = r#"
[[rule]]
id = "f"
description = "d"
severity = "high"
kind = "missing_followup"
trigger = 'action == "a.b"'
followup = 'action == "c.d"'
within_minutes = 1

[[rule]]
id = "h"
description = "d"
severity = "high"
kind = "heartbeat"
heartbeat_seconds = 60
"#;
        let mut e = engine(text);
        e.observe(
            &json!({"id": "victim", "tenant": "b", "action": "a.b", "source": {"name": "s"},
                          "ai": {"gen_ai.conversation.id": "c"}}),
            0,
            0,
        );
        for i in 0..MAX_PENDING_PER_TENANT + 5_000 {
            let ev = json!({"id": format!("x{i}"), "tenant": "a", "action": "a.b",
                            "source": {"name": format!("src-{i}")}});
            e.observe(&ev, i as u64 + 1, 0);
        }
        // Tenant a holds its share; b's window and source are still there.
        assert_eq!(e.pending(), MAX_PENDING_PER_TENANT + 1);
        assert_eq!(e.heard.len(), MAX_SOURCES_PER_TENANT + 1);
        assert!(e.pending.iter().any(|p| p.tenant == "b"));
        assert!(e.heard.keys().any(|(_, t, _)| t == "b"));
        assert!(e.dropped() >= 5_000);
        // b's window still fires.
        let fired = e.tick(120_000);
        assert!(fired.iter().any(|v| v.tenant == "b" && v.rule == "f"));
    }
}
