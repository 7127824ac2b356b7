//! The rule file: parsing, checking, compiling every condition once.

use crate::cond::Condition;
use serde::Deserialize;
use std::collections::HashSet;
use std::time::Duration;

/// How serious a violation of a rule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// What a rule watches for.
#[derive(Debug)]
pub enum Kind {
    /// One event matching `condition` is a violation.
    Match { condition: Condition },
    /// An event matching `trigger` must be followed, in the same
    /// conversation (`gen_ai.conversation.id`) and tenant, by one matching
    /// `followup` within `within`; otherwise the deadline is a violation.
    MissingFollowup {
        trigger: Condition,
        followup: Condition,
        within: Duration,
    },
    /// A source (tenant and `source.name`) that sent at least `min_events`
    /// events matching `condition` and then nothing for `quiet` is a violation.
    Heartbeat {
        condition: Option<Condition>,
        quiet: Duration,
        min_events: u64,
    },
}

#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub severity: Severity,
    /// Only events of these tenants; `None`: every tenant.
    pub tenants: Option<Vec<String>>,
    pub kind: Kind,
}

impl Rule {
    pub fn applies_to(&self, tenant: &str) -> bool {
        match &self.tenants {
            None => true,
            Some(t) => t.iter().any(|x| x == tenant || x == "*"),
        }
    }
}

/// A loaded, checked rule file.
#[derive(Debug, Default)]
pub struct Policies {
    pub rules: Vec<Rule>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the rule file is not valid TOML: {0}")]
    Toml(String),
    #[error("rule {index} has no id")]
    MissingId { index: usize },
    #[error("rule {id:?} appears twice")]
    DuplicateId { id: String },
    #[error("rule {id:?}: {detail}")]
    Rule { id: String, detail: String },
    #[error("reading {path}: {detail}")]
    Read { path: String, detail: String },
}

fn rule_error(id: &str, detail: impl Into<String>) -> LoadError {
    LoadError::Rule {
        id: id.to_string(),
        detail: detail.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    id: String,
    #[serde(default)]
    description: String,
    severity: Option<Severity>,
    #[serde(default)]
    kind: Option<String>,
    condition: Option<String>,
    tenants: Option<Vec<String>>,
    // missing_followup
    trigger: Option<String>,
    followup: Option<String>,
    within_minutes: Option<u64>,
    // heartbeat
    heartbeat_seconds: Option<u64>,
    min_events: Option<u64>,
}

impl Policies {
    /// Parses and checks a rule file; the first problem is the error, naming
    /// the rule it is in.
    pub fn parse(text: &str) -> Result<Policies, LoadError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| LoadError::Toml(e.to_string()))?;
        let mut seen = HashSet::new();
        let mut rules = Vec::with_capacity(raw.rule.len());
        for (index, r) in raw.rule.into_iter().enumerate() {
            if r.id.trim().is_empty() {
                return Err(LoadError::MissingId { index });
            }
            if !seen.insert(r.id.clone()) {
                return Err(LoadError::DuplicateId { id: r.id });
            }
            rules.push(build_rule(r)?);
        }
        Ok(Policies { rules })
    }

    pub fn load(path: &std::path::Path) -> Result<Policies, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::Read {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        Policies::parse(&text)
    }

    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }
}

fn compile(id: &str, field: &str, source: Option<String>) -> Result<Condition, LoadError> {
    let source = source.ok_or_else(|| rule_error(id, format!("{field} is required")))?;
    Condition::compile(&source).map_err(|e| rule_error(id, format!("{field}: {e}")))
}

/// Refuses a field that the rule's kind does not use: a misplaced
/// setting must not be silently ignored.
fn unused(id: &str, kind: &str, fields: &[(&str, bool)]) -> Result<(), LoadError> {
    match fields.iter().find(|(_, present)| *present) {
        Some((name, _)) => Err(rule_error(
            id,
            format!("{name} does not apply to kind {kind:?}"),
        )),
        None => Ok(()),
    }
}

fn build_rule(r: RawRule) -> Result<Rule, LoadError> {
    let id = r.id.clone();
    let severity = r.severity.ok_or_else(|| {
        rule_error(
            &id,
            "severity is required (info, low, medium, high, critical)",
        )
    })?;
    if r.description.trim().is_empty() {
        return Err(rule_error(&id, "description is required"));
    }
    let kind_name = r.kind.as_deref().unwrap_or("match");
    let kind = match kind_name {
        "match" => {
            unused(
                &id,
                kind_name,
                &[
                    ("trigger", r.trigger.is_some()),
                    ("followup", r.followup.is_some()),
                    ("within_minutes", r.within_minutes.is_some()),
                    ("heartbeat_seconds", r.heartbeat_seconds.is_some()),
                    ("min_events", r.min_events.is_some()),
                ],
            )?;
            Kind::Match {
                condition: compile(&id, "condition", r.condition)?,
            }
        }
        "missing_followup" => {
            unused(
                &id,
                kind_name,
                &[
                    ("condition", r.condition.is_some()),
                    ("heartbeat_seconds", r.heartbeat_seconds.is_some()),
                    ("min_events", r.min_events.is_some()),
                ],
            )?;
            let minutes = r
                .within_minutes
                .filter(|m| *m > 0)
                .ok_or_else(|| rule_error(&id, "within_minutes is required (minutes, above 0)"))?;
            Kind::MissingFollowup {
                trigger: compile(&id, "trigger", r.trigger)?,
                followup: compile(&id, "followup", r.followup)?,
                within: Duration::from_secs(minutes.saturating_mul(60)),
            }
        }
        "heartbeat" => {
            unused(
                &id,
                kind_name,
                &[
                    ("trigger", r.trigger.is_some()),
                    ("followup", r.followup.is_some()),
                    ("within_minutes", r.within_minutes.is_some()),
                ],
            )?;
            let secs = r
                .heartbeat_seconds
                .filter(|s| *s > 0)
                .ok_or_else(|| rule_error(&id, "heartbeat_seconds is required (above 0)"))?;
            let condition = match r.condition {
                Some(c) => Some(compile(&id, "condition", Some(c))?),
                None => None,
            };
            Kind::Heartbeat {
                condition,
                quiet: Duration::from_secs(secs),
                min_events: r.min_events.unwrap_or(3).max(1),
            }
        }
        other => {
            return Err(rule_error(
                &id,
                format!("unknown kind {other:?}; kinds are match, missing_followup, heartbeat"),
            ))
        }
    };
    Ok(Rule {
        id,
        description: r.description,
        severity,
        tenants: r.tenants,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Policies::parse(text).unwrap_err().to_string()
    }

    const OK: &str = r#"
[[rule]]
id = "a"
description = "d"
severity = "low"
condition = 'action == "x.y"'
"#;

    #[test]
    fn loads_a_minimal_rule() {
        let p = Policies::parse(OK).unwrap();
        assert_eq!(p.rules.len(), 1);
        assert_eq!(p.rules[0].severity, Severity::Low);
        assert!(Policies::parse("").unwrap().rules.is_empty());
    }

    #[test]
    fn a_bad_expression_names_its_rule() {
        let e = err(&OK.replace(r#"'action == "x.y"'"#, "'action == ('"));
        assert!(e.starts_with("rule \"a\": condition:"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        assert!(err(&format!("{OK}{OK}")).contains("appears twice"));
        assert!(err(&OK.replace("severity = \"low\"", "severity = \"dire\"")).contains("TOML"));
        assert!(err(&OK.replace("severity = \"low\"", "")).contains("severity is required"));
        assert!(err(&OK.replace("id = \"a\"", "")).contains("no id"));
        assert!(err(&OK.replace("description = \"d\"", "")).contains("description"));
        assert!(err(&format!("{OK}colour = 1")).contains("colour"));
        assert!(err(&format!("{OK}within_minutes = 3")).contains("does not apply"));
        assert!(err(&format!("{OK}kind = \"sometimes\"")).contains("unknown kind"));
        let followup = "[[rule]]\nid = \"f\"\ndescription = \"d\"\nseverity = \"high\"\nkind = \"missing_followup\"\ntrigger = 'true'\nfollowup = 'true'\n";
        assert!(err(followup).contains("within_minutes is required"));
        assert!(Policies::parse(&format!("{followup}within_minutes = 5")).is_ok());
        let heartbeat = "[[rule]]\nid = \"h\"\ndescription = \"d\"\nseverity = \"high\"\nkind = \"heartbeat\"\n";
        assert!(err(heartbeat).contains("heartbeat_seconds is required"));
        assert!(err(&format!("{heartbeat}heartbeat_seconds = 0")).contains("above 0"));
    }

    #[test]
    fn tenants_limit_a_rule() {
        let p = Policies::parse(&format!("{OK}tenants = [\"acme\"]")).unwrap();
        assert!(p.rules[0].applies_to("acme"));
        assert!(!p.rules[0].applies_to("globex"));
    }
}
