//! Counts over time (`GET /v1/stats`): what a dashboard charts for any time
//! range, from the server's own records rather than what one browser tab
//! happened to sample. Events, failures and denials come from the search
//! index (by event time), violations by severity from the violation records
//! (by the time the ledger logged them).

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::policies::Record;
use crate::reports::rfc3339;
use crate::Ledger;
pub use aiaudit_index::parse_time_ms;
use aiaudit_index::{Query, StatKey, Tally};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// At most this many buckets per answer: a chart has no use for more, and
/// a bound keeps one request from building a huge answer.
pub const MAX_BUCKETS: i64 = 1440;

/// The severities of violations, lowest first (every answer lists each).
pub const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

/// What to count: `[from_ms, to_ms)` in buckets of `step_ms`, optionally
/// one tenant's and one source's events only.
#[derive(Debug, Clone)]
pub struct StatsRequest {
    pub from_ms: i64,
    pub to_ms: i64,
    pub step_ms: i64,
    pub tenant: Option<String>,
    pub source: Option<String>,
}

impl StatsRequest {
    /// How many buckets cover the window (the last one may be partial).
    pub fn buckets(&self) -> i64 {
        (self.to_ms - self.from_ms + self.step_ms - 1) / self.step_ms
    }
}

/// Counts of one group of events (a bucket, a tenant or a source).
#[derive(Default, Clone)]
struct Counts {
    events: u64,
    failures: u64,
    denied: u64,
    violations: BTreeMap<String, u64>,
}

impl Counts {
    fn add_events(&mut self, outcome: Option<&str>, n: u64) {
        self.events += n;
        match outcome {
            Some("failure") => self.failures += n,
            Some("denied") => self.denied += n,
            _ => {}
        }
    }

    fn add_violation(&mut self, severity: &str) {
        *self.violations.entry(severity.to_string()).or_default() += 1;
    }

    fn to_json(&self) -> Map<String, Value> {
        let mut by_severity = Map::new();
        for s in SEVERITIES {
            by_severity.insert(
                s.into(),
                json!(self.violations.get(s).copied().unwrap_or(0)),
            );
        }
        // A severity outside the known five is still counted, not dropped.
        for (s, n) in &self.violations {
            by_severity.entry(s.clone()).or_insert(json!(n));
        }
        let mut out = Map::new();
        out.insert("events".into(), json!(self.events));
        out.insert("failures".into(), json!(self.failures));
        out.insert("denied".into(), json!(self.denied));
        out.insert("violations".into(), Value::Object(by_severity));
        out
    }
}

/// Counts as JSON with what they count (a bucket's start, a tenant, a source).
fn labelled(c: &Counts, name: &str, value: Value) -> Value {
    let mut o = c.to_json();
    o.insert(name.into(), value);
    Value::Object(o)
}

/// Folds index tallies and violation records into the answer's shape: every
/// bucket of the window (empty ones too, so a chart needs no gap filling),
/// totals, and the counts per tenant and per source.
pub fn fold(req: &StatsRequest, tallies: &[Tally<StatKey>], violations: &[Record]) -> Value {
    let n = req.buckets().max(0) as usize;
    let mut buckets = vec![Counts::default(); n];
    let mut totals = Counts::default();
    let mut tenants: BTreeMap<String, Counts> = BTreeMap::new();
    let mut sources: BTreeMap<Option<String>, Counts> = BTreeMap::new();
    for t in tallies {
        let outcome = t.key.outcome.as_deref();
        if let Some(b) = buckets.get_mut(t.key.bucket as usize) {
            b.add_events(outcome, t.count);
        }
        totals.add_events(outcome, t.count);
        tenants
            .entry(t.key.tenant.clone())
            .or_default()
            .add_events(outcome, t.count);
        sources
            .entry(t.key.source.clone())
            .or_default()
            .add_events(outcome, t.count);
    }
    for v in violations {
        let Some(ms) = parse_time_ms(&v.time) else {
            continue;
        };
        if ms < req.from_ms || ms >= req.to_ms {
            continue;
        }
        let severity = v.attributes["severity"].as_str().unwrap_or("unknown");
        if let Some(b) = buckets.get_mut(((ms - req.from_ms) / req.step_ms) as usize) {
            b.add_violation(severity);
        }
        totals.add_violation(severity);
        tenants
            .entry(v.tenant.clone())
            .or_default()
            .add_violation(severity);
        let source = v.attributes["source"].as_str().map(str::to_string);
        sources.entry(source).or_default().add_violation(severity);
    }
    let buckets: Vec<Value> = buckets
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let start = rfc3339(req.from_ms + i as i64 * req.step_ms);
            labelled(c, "start", json!(start))
        })
        .collect();
    let tenants: Vec<Value> = tenants
        .into_iter()
        .map(|(t, c)| labelled(&c, "tenant", json!(t)))
        .collect();
    let sources: Vec<Value> = sources
        .into_iter()
        .map(|(s, c)| labelled(&c, "source", json!(s)))
        .collect();
    json!({
        "from": rfc3339(req.from_ms),
        "to": rfc3339(req.to_ms),
        "step_seconds": req.step_ms / 1000,
        "tenant": req.tenant,
        "source": req.source,
        "buckets": buckets,
        "totals": Value::Object(totals.to_json()),
        "tenants": tenants,
        "sources": sources,
    })
}

impl Ledger {
    /// Counts over time of what `who` may read (its tenants only).
    pub async fn stats(self: &Arc<Self>, who: &Principal, req: StatsRequest) -> Result<Value> {
        if req.step_ms < 1000 || req.from_ms >= req.to_ms || req.buckets() > MAX_BUCKETS {
            return Err(Error::bad_parameter(
                "step",
                format!("a window of at most {MAX_BUCKETS} buckets of at least a second is needed"),
            ));
        }
        let mut q = Query {
            tenant: req.tenant.clone(),
            source: req.source.clone(),
            from_ms: Some(req.from_ms),
            to_ms: Some(req.to_ms),
            ..Query::default()
        };
        crate::search::scope(self, who, &mut q)?;
        let violations = self.violations(who, |r| {
            req.tenant.as_ref().is_none_or(|t| *t == r.tenant)
                && req
                    .source
                    .as_ref()
                    .is_none_or(|s| r.attributes["source"].as_str() == Some(s))
        })?;
        let l = self.clone();
        let step = req.step_ms;
        let tallies = tokio::task::spawn_blocking(move || l.index.stats(&q, step))
            .await
            .map_err(|e| Error::internal(e.to_string()))??;
        let mut out = fold(&req, &tallies, &violations);
        let indexed = self.indexed.load(Ordering::Acquire);
        out["indexed_size"] = json!(indexed);
        out["index_lag_events"] = json!(self.store.size().saturating_sub(indexed));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::Status;

    fn req(from_ms: i64, to_ms: i64, step_ms: i64) -> StatsRequest {
        StatsRequest {
            from_ms,
            to_ms,
            step_ms,
            tenant: None,
            source: None,
        }
    }

    fn tally(
        bucket: u64,
        tenant: &str,
        source: Option<&str>,
        outcome: Option<&str>,
        count: u64,
    ) -> Tally<StatKey> {
        Tally {
            key: StatKey {
                bucket,
                tenant: tenant.into(),
                source: source.map(Into::into),
                outcome: outcome.map(Into::into),
            },
            count,
        }
    }

    fn violation(time: &str, tenant: &str, severity: &str, source: Option<&str>) -> Record {
        Record {
            id: format!("v-{time}"),
            index: 0,
            time: time.into(),
            tenant: tenant.into(),
            status: Status::Open,
            attributes: json!({"rule": "r", "severity": severity, "source": source}),
            history: vec![],
        }
    }

    #[test]
    fn every_bucket_is_listed_and_the_last_may_be_partial() {
        assert_eq!(req(0, 10_000, 3_000).buckets(), 4);
        assert_eq!(req(0, 9_000, 3_000).buckets(), 3);
        let out = fold(&req(0, 10_000, 3_000), &[], &[]);
        let b = out["buckets"].as_array().unwrap();
        assert_eq!(b.len(), 4);
        assert_eq!(b[3]["start"], "1970-01-01T00:00:09Z");
        assert_eq!(b[3]["events"], 0);
        assert_eq!(b[3]["violations"]["critical"], 0);
    }

    #[test]
    fn events_and_violations_land_in_their_buckets_tenants_and_sources() {
        let base = parse_time_ms("2026-12-04T10:00:00Z").unwrap();
        let r = req(base, base + 3_600_000, 600_000);
        let tallies = [
            tally(0, "acme", Some("app"), Some("success"), 5),
            tally(0, "acme", Some("app"), Some("failure"), 2),
            tally(5, "globex", None, Some("denied"), 1),
            tally(5, "globex", None, None, 3),
        ];
        let violations = [
            violation("2026-12-04T10:05:00Z", "acme", "high", Some("app")),
            violation("2026-12-04T10:59:59.999Z", "acme", "low", None),
            // Outside the window: not counted.
            violation("2026-12-04T11:00:00Z", "acme", "high", Some("app")),
            violation("2026-12-04T09:59:59Z", "acme", "high", Some("app")),
        ];
        let out = fold(&r, &tallies, &violations);
        let b = &out["buckets"];
        assert_eq!(b[0]["events"], 7);
        assert_eq!(b[0]["failures"], 2);
        assert_eq!(b[0]["violations"]["high"], 1);
        assert_eq!(b[5]["events"], 4);
        assert_eq!(b[5]["denied"], 1);
        assert_eq!(b[5]["violations"]["low"], 1);
        assert_eq!(out["totals"]["events"], 11);
        assert_eq!(out["totals"]["violations"]["high"], 1);
        assert_eq!(out["tenants"][0]["tenant"], "acme");
        assert_eq!(out["tenants"][0]["events"], 7);
        assert_eq!(out["tenants"][0]["violations"]["low"], 1);
        assert_eq!(out["tenants"][1]["tenant"], "globex");
        // Sources in order: none first, then by name.
        assert_eq!(out["sources"][0]["source"], Value::Null);
        assert_eq!(out["sources"][0]["events"], 4);
        assert_eq!(out["sources"][1]["source"], "app");
        assert_eq!(out["sources"][1]["violations"]["high"], 1);
    }
}
