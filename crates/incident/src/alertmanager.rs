//! The body Alertmanager's webhook receiver posts (version 4): parsed and
//! checked field by field, so a malformed one is refused naming the field.

use crate::{Error, Severity};
use serde_json::{Map, Value};

/// Most alerts one notification may carry (Alertmanager's `max_alerts`).
pub const MAX_ALERTS: usize = 1000;
const MAX_TEXT: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub group_key: String,
    /// `firing` or `resolved` (the group's status).
    pub firing: bool,
    pub receiver: String,
    pub group_labels: Map<String, Value>,
    pub common_labels: Map<String, Value>,
    pub common_annotations: Map<String, Value>,
    pub external_url: Option<String>,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub firing: bool,
    pub labels: Map<String, Value>,
    pub annotations: Map<String, Value>,
    pub starts_at: String,
    pub ends_at: Option<String>,
    pub fingerprint: Option<String>,
    pub generator_url: Option<String>,
}

impl Alert {
    /// The alert as the incident keeps it.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "status": if self.firing { "firing" } else { "resolved" },
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_at,
            "endsAt": self.ends_at,
            "fingerprint": self.fingerprint,
            "generatorURL": self.generator_url,
        })
    }
}

/// An alert's `severity` label as an incident severity. Alertmanager
/// setups use several vocabularies; these are the common ones.
pub fn map_severity(label: &str) -> Option<Severity> {
    Some(match label.to_ascii_lowercase().as_str() {
        "critical" | "page" | "emergency" | "fatal" | "p1" => Severity::Critical,
        "high" | "error" | "major" | "p2" => Severity::High,
        "medium" | "warning" | "warn" | "moderate" | "p3" => Severity::Medium,
        "low" | "info" | "minor" | "none" | "p4" => Severity::Low,
        _ => return None,
    })
}

fn labels(v: &Value, field: &str) -> Result<Map<String, Value>, Error> {
    match v {
        Value::Null => Ok(Map::new()),
        Value::Object(m) => {
            for (k, x) in m {
                match x {
                    Value::String(s) if s.len() <= MAX_TEXT && k.len() <= 256 => {}
                    _ => {
                        return Err(Error::field(
                            format!("{field}.{k}"),
                            "must be a string of at most 4096 bytes",
                        ))
                    }
                }
            }
            Ok(m.clone())
        }
        _ => Err(Error::field(field, "must be an object of strings")),
    }
}

fn status(v: &Value, field: &str) -> Result<bool, Error> {
    match v.as_str() {
        Some("firing") => Ok(true),
        Some("resolved") => Ok(false),
        _ => Err(Error::field(field, "required: \"firing\" or \"resolved\"")),
    }
}

fn opt_text(v: &Value, field: &str) -> Result<Option<String>, Error> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.len() <= MAX_TEXT => Ok(Some(s.clone()).filter(|s| !s.is_empty())),
        _ => Err(Error::field(
            field,
            "must be a string of at most 4096 bytes",
        )),
    }
}

/// Parses a webhook body.
pub fn parse(body: &Value) -> Result<Notification, Error> {
    if !body.is_object() {
        return Err(Error::field(
            "",
            "the body must be a JSON object (Alertmanager webhook, version 4)",
        ));
    }
    match body["version"].as_str() {
        Some("4") => {}
        _ => {
            return Err(Error::field(
                "version",
                "required: \"4\" (Alertmanager's webhook format)",
            ))
        }
    }
    let group_key = match body["groupKey"].as_str() {
        Some(s) if !s.is_empty() && s.len() <= MAX_TEXT => s.to_string(),
        _ => {
            return Err(Error::field(
                "groupKey",
                "required: a non-empty string of at most 4096 bytes",
            ))
        }
    };
    let firing = status(&body["status"], "status")?;
    let Some(list) = body["alerts"].as_array() else {
        return Err(Error::field("alerts", "required: an array of alerts"));
    };
    if list.is_empty() || list.len() > MAX_ALERTS {
        return Err(Error::field(
            "alerts",
            format!("must hold 1 to {MAX_ALERTS} alerts"),
        ));
    }
    let mut alerts = Vec::with_capacity(list.len());
    for (n, a) in list.iter().enumerate() {
        let f = |name: &str| format!("alerts[{n}].{name}");
        if !a.is_object() {
            return Err(Error::field(format!("alerts[{n}]"), "must be an object"));
        }
        let starts_at = match a["startsAt"].as_str() {
            Some(s) if crate::time_fmt::parse(s).is_some() => s.to_string(),
            _ => return Err(Error::field(f("startsAt"), "required: an RFC 3339 time")),
        };
        let alert = Alert {
            firing: status(&a["status"], &f("status"))?,
            labels: labels(&a["labels"], &f("labels"))?,
            annotations: labels(&a["annotations"], &f("annotations"))?,
            starts_at,
            ends_at: opt_text(&a["endsAt"], &f("endsAt"))?,
            fingerprint: opt_text(&a["fingerprint"], &f("fingerprint"))?,
            generator_url: opt_text(&a["generatorURL"], &f("generatorURL"))?,
        };
        if let Some(s) = alert.labels.get("severity").and_then(Value::as_str) {
            if map_severity(s).is_none() {
                return Err(Error::field(
                    f("labels.severity"),
                    format!("{s:?} is not a known severity (critical, high, medium, low, or page, error, warning, info)"),
                ));
            }
        }
        alerts.push(alert);
    }
    Ok(Notification {
        group_key,
        firing,
        receiver: opt_text(&body["receiver"], "receiver")?.unwrap_or_default(),
        group_labels: labels(&body["groupLabels"], "groupLabels")?,
        common_labels: labels(&body["commonLabels"], "commonLabels")?,
        common_annotations: labels(&body["commonAnnotations"], "commonAnnotations")?,
        external_url: opt_text(&body["externalURL"], "externalURL")?,
        alerts,
    })
}

impl Notification {
    /// The most severe of the firing alerts' severities (all alerts when
    /// none fires); `medium` when no alert has a severity label.
    pub fn severity(&self) -> Severity {
        let pick = |firing_only: bool| {
            self.alerts
                .iter()
                .filter(|a| !firing_only || a.firing)
                .filter_map(|a| a.labels.get("severity")?.as_str().and_then(map_severity))
                .max()
        };
        pick(true)
            .or_else(|| pick(false))
            .unwrap_or(Severity::Medium)
    }

    /// A title: the summary annotation they share, else the alert name and group labels.
    pub fn title(&self) -> String {
        let get =
            |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
        if let Some(s) = get(&self.common_annotations, "summary") {
            return s;
        }
        let name = get(&self.common_labels, "alertname")
            .or_else(|| get(&self.group_labels, "alertname"))
            .unwrap_or_else(|| "Alertmanager alert".to_string());
        let rest: Vec<String> = self
            .group_labels
            .iter()
            .filter(|(k, _)| *k != "alertname")
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        if rest.is_empty() {
            name
        } else {
            format!("{name} ({})", rest.join(", "))
        }
    }

    /// The tenant the alerts name (`tenant` label shared by all), if any.
    pub fn tenant(&self) -> Option<&str> {
        self.common_labels.get("tenant").and_then(Value::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body() -> Value {
        json!({
            "version": "4", "groupKey": "{}:{alertname=\"AiauditDown\"}", "truncatedAlerts": 0,
            "status": "firing", "receiver": "aiaudit",
            "groupLabels": {"alertname": "AiauditDown"},
            "commonLabels": {"alertname": "AiauditDown", "severity": "critical", "tenant": "acme"},
            "commonAnnotations": {"summary": "The ledger is down"},
            "externalURL": "http://alertmanager:9093",
            "alerts": [{"status": "firing", "labels": {"alertname": "AiauditDown", "severity": "critical"},
                        "annotations": {}, "startsAt": "2026-03-04T10:00:00Z",
                        "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://p/graph", "fingerprint": "abc"}]
        })
    }

    #[test]
    fn parses_what_alertmanager_sends() {
        let n = parse(&body()).unwrap();
        assert!(n.firing);
        assert_eq!(n.severity(), Severity::Critical);
        assert_eq!(n.title(), "The ledger is down");
        assert_eq!(n.tenant(), Some("acme"));
        assert_eq!(n.alerts[0].fingerprint.as_deref(), Some("abc"));
    }

    type Breaker = Box<dyn Fn(&mut Value)>;

    #[test]
    fn malformed_bodies_name_the_field() {
        let cases: Vec<(Breaker, &str)> = vec![
            (Box::new(|b| b["version"] = json!("3")), "version"),
            (Box::new(|b| b["groupKey"] = json!("")), "groupKey"),
            (Box::new(|b| b["status"] = json!("pending")), "status"),
            (Box::new(|b| b["alerts"] = json!([])), "alerts"),
            (
                Box::new(|b| b["alerts"][0]["startsAt"] = json!("soon")),
                "alerts[0].startsAt",
            ),
            (
                Box::new(|b| b["alerts"][0]["labels"]["severity"] = json!("apocalyptic")),
                "alerts[0].labels.severity",
            ),
            (
                Box::new(|b| b["alerts"][0]["labels"]["x"] = json!(1)),
                "alerts[0].labels.x",
            ),
            (Box::new(|b| b["commonLabels"] = json!([])), "commonLabels"),
        ];
        for (break_it, field) in cases {
            let mut b = body();
            break_it(&mut b);
            match parse(&b) {
                Err(Error::Field { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        assert!(parse(&json!([])).is_err());
    }

    #[test]
    fn severity_labels_map() {
        assert_eq!(map_severity("warning"), Some(Severity::Medium));
        assert_eq!(map_severity("HIGH"), Some(Severity::High));
        assert_eq!(map_severity("info"), Some(Severity::Low));
        let mut b = body();
        b["alerts"][0]["labels"] = json!({"alertname": "X"});
        b["commonAnnotations"] = json!({});
        b["groupLabels"] = json!({"alertname": "X", "job": "aiaudit"});
        let n = parse(&b).unwrap();
        assert_eq!(n.severity(), Severity::Medium);
        assert_eq!(n.title(), "AiauditDown (job=aiaudit)");
    }
}
