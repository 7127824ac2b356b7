//! `GET /v1/stats`: counts over time for charts, parameters checked here,
//! counted by the engine (`Ledger::stats`).

use crate::extract::require;
use crate::problem::Problem;
use aiaudit_ledger::stats::{StatsRequest, MAX_BUCKETS};
use aiaudit_ledger::Ledger;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const PARAMETERS: [&str; 5] = ["from", "to", "step", "tenant", "source"];

/// Steps a chart picks from when none is asked for: the smallest that
/// keeps the window within 120 buckets.
const NICE_STEPS_S: [i64; 12] = [
    1,
    5,
    10,
    30,
    60,
    300,
    600,
    1800,
    3600,
    3 * 3600,
    6 * 3600,
    86_400,
];

/// A step: seconds (`300`), or a number with `s`, `m`, `h` or `d`.
pub fn parse_step(v: &str) -> Option<i64> {
    let (digits, unit) = match v.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&v[..i], c),
        _ => (v, 's'),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 9 {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    let unit = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    Some(n * unit).filter(|s| *s > 0)
}

/// The step for a window when the caller gave none.
pub fn default_step_s(window_ms: i64) -> i64 {
    NICE_STEPS_S
        .iter()
        .copied()
        .find(|s| window_ms <= s * 1000 * 120)
        // Longer windows: whole days.
        .unwrap_or_else(|| (window_ms / 1000 / 120 + 86_399) / 86_400 * 86_400)
}

/// `GET /v1/stats?from=&to=&step=&tenant=&source=`: events, failures,
/// denials and violations by severity per bucket, with totals and counts
/// per tenant and per source. `to` defaults to now, `from` to an hour
/// before `to`.
pub async fn stats(
    State(ledger): State<Arc<Ledger>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, Problem> {
    let who = require(&ledger, &headers)?;
    let req = parse(&params, now_ms())?;
    Ok(Json(ledger.stats(&who, req).await?))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The request the parameters ask for, or a problem naming the parameter.
pub fn parse(params: &HashMap<String, String>, now_ms: i64) -> Result<StatsRequest, Problem> {
    for name in params.keys() {
        if !PARAMETERS.contains(&name.as_str()) {
            return Err(Problem::bad_parameter(
                name,
                format!("unknown parameter; stats take {}", PARAMETERS.join(", ")),
            ));
        }
    }
    let get = |n: &str| params.get(n).filter(|v| !v.is_empty());
    let time = |n: &str| -> Result<Option<i64>, Problem> {
        get(n)
            .map(|v| {
                aiaudit_ledger::stats::parse_time_ms(v).ok_or_else(|| {
                    Problem::bad_parameter(n, format!("{v:?} is not an RFC 3339 time"))
                })
            })
            .transpose()
    };
    let to_ms = time("to")?.unwrap_or(now_ms);
    let from_ms = time("from")?.unwrap_or(to_ms - 3_600_000);
    if from_ms >= to_ms {
        return Err(Problem::bad_parameter("from", "must be before to"));
    }
    let step_ms = match get("step") {
        Some(v) => {
            parse_step(v).ok_or_else(|| {
                Problem::bad_parameter(
                    "step",
                    format!("{v:?} is not a duration such as 60, 30s, 5m, 1h or 1d"),
                )
            })? * 1000
        }
        None => default_step_s(to_ms - from_ms) * 1000,
    };
    let req = StatsRequest {
        from_ms,
        to_ms,
        step_ms,
        tenant: get("tenant").cloned(),
        source: get("source").cloned(),
    };
    if req.buckets() > MAX_BUCKETS {
        return Err(Problem::bad_parameter(
            "step",
            format!(
                "{} buckets; at most {MAX_BUCKETS}: choose a longer step or a shorter window",
                req.buckets()
            ),
        ));
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn steps_are_seconds_or_a_number_with_a_unit() {
        assert_eq!(parse_step("300"), Some(300));
        assert_eq!(parse_step("30s"), Some(30));
        assert_eq!(parse_step("5m"), Some(300));
        assert_eq!(parse_step("1h"), Some(3600));
        assert_eq!(parse_step("2d"), Some(172_800));
        for bad in ["", "m", "0", "0m", "-5", "5w", "1.5h", "5 m", "99999999999"] {
            assert_eq!(parse_step(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_default_window_is_the_last_hour_in_120_buckets() {
        let r = parse(&params(&[]), 7_200_000).unwrap();
        assert_eq!(
            (r.from_ms, r.to_ms, r.step_ms),
            (3_600_000, 7_200_000, 30_000)
        );
        assert_eq!(default_step_s(86_400_000), 1800);
        assert_eq!(default_step_s(30 * 86_400_000), 6 * 3600);
        assert_eq!(default_step_s(365 * 86_400_000), 4 * 86_400);
    }

    #[test]
    fn bad_parameters_are_named() {
        let name = |p: &[(&str, &str)]| parse(&params(p), 10_000_000).unwrap_err().0.parameter;
        assert_eq!(name(&[("from", "yesterday")]), Some("from".into()));
        assert_eq!(name(&[("to", "2026-13-01T00:00:00Z")]), Some("to".into()));
        assert_eq!(
            name(&[
                ("from", "2026-12-02T00:00:00Z"),
                ("to", "2026-12-01T00:00:00Z")
            ]),
            Some("from".into())
        );
        assert_eq!(name(&[("step", "fortnight")]), Some("step".into()));
        assert_eq!(
            name(&[("step", "1s")]),
            Some("step".into()),
            "3,600 buckets"
        );
        assert_eq!(name(&[("limit", "5")]), Some("limit".into()));
    }
}
