//! `GET /v1/stats` on the real binary: counts over time come from the
//! server's own records (the index and the violation records), bucketed by
//! event time, scoped to what the token may read, with bad parameters named.

use crate::harness::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn at(id: &str, tenant: &str, ms: i64, outcome: &str) -> Value {
    let mut e = event(id);
    e["tenant"] = json!(tenant);
    e["time"] = json!(rfc3339(ms));
    e["outcome"] = json!({"status": outcome});
    e
}

fn column(stats: &Value, f: impl Fn(&Value) -> u64) -> Vec<u64> {
    stats["buckets"].as_array().unwrap().iter().map(f).collect()
}

#[test]
fn stats_count_events_failures_and_violations_over_time() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, DEEPSEEK_RULE).unwrap();
    // Without the access log: each search below would add a `trail.access`
    // record inside the window.
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--policy-file",
            rules.to_str().unwrap(),
            "--access-log",
            "false",
        ],
    );

    // Buckets of ten minutes: the window starts 30 minutes before the
    // current ten-minute mark and ends 20 minutes after it.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mark = now - now % 600_000;
    let from = mark - 1_800_000;
    let to = mark + 1_200_000;
    let mut deepseek = at("v1", "acme", from + 1_000, "success");
    deepseek["ai"] = json!({"gen_ai.provider.name": "deepseek"});
    server.post_events(&[
        deepseek,
        at("a1", "acme", from + 60_000, "failure"),
        at("a2", "acme", from + 599_999, "denied"),
        at("a3", "acme", from + 600_000, "success"),
        at("g1", "globex", from + 1_500_000, "failure"),
        // Outside the window on both sides.
        at("early", "acme", from - 1, "success"),
        at("late", "acme", to, "success"),
    ]);

    let path = format!(
        "/v1/stats?from={}&to={}&step=10m",
        rfc3339(from).replace('+', "%2B"),
        rfc3339(to).replace('+', "%2B")
    );
    // Wait for the index (the violation's own event included) and the
    // violation record.
    let deadline = Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let s = server.get_json(&path);
        if s["index_lag_events"] == 0
            && s["indexed_size"].as_u64() >= Some(8)
            && s["totals"]["violations"]["high"] == 1
        {
            break s;
        }
        assert!(Instant::now() < deadline, "stats never caught up: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(stats["step_seconds"], 600);
    assert_eq!(stats["buckets"][0]["start"], rfc3339(from).as_str());
    // Every event of the window counted once: as many as a search finds
    // (the ledger's own records, such as the violation, included).
    let window = format!(
        "from={}&to={}",
        rfc3339(from).replace('+', "%2B"),
        rfc3339(to).replace('+', "%2B")
    );
    // The violation's incident record follows the violation by a moment:
    // compare once the two answers agree, or fail at the deadline.
    let mut stats = stats;
    loop {
        let found = server.get_json(&format!("/v1/events?{window}&count=true&limit=1"));
        if stats["totals"]["events"] == found["total"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stats and search disagree: {stats} against {found}"
        );
        std::thread::sleep(Duration::from_millis(100));
        stats = server.get_json(&path);
    }
    let sum: u64 = column(&stats, |b| b["events"].as_u64().unwrap())
        .iter()
        .sum();
    assert_eq!(stats["totals"]["events"], sum);
    assert!(
        stats["totals"]["failures"].as_u64() >= Some(3),
        "the violation event is a failure too"
    );
    let violation_source = stats["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "aiaudit-policy")
        .expect("the ledger's own source is listed");
    assert!(violation_source["events"].as_u64() >= Some(1));

    // One source: the events sent, in their buckets by event time.
    let only = server.get_json(&format!("{path}&source=e2e"));
    let events = column(&only, |b| b["events"].as_u64().unwrap());
    assert_eq!(events, [3, 1, 1, 0, 0], "{only}");
    assert_eq!(
        column(&only, |b| b["failures"].as_u64().unwrap()),
        [1, 0, 1, 0, 0]
    );
    assert_eq!(
        column(&only, |b| b["denied"].as_u64().unwrap()),
        [1, 0, 0, 0, 0]
    );
    // The violation: by the time the ledger logged it (bucket 3 or 4),
    // under the violating event's source.
    let high = column(&only, |b| b["violations"]["high"].as_u64().unwrap());
    assert_eq!(high[..3], [0, 0, 0]);
    assert_eq!(high[3] + high[4], 1, "{only}");
    assert_eq!(only["totals"]["events"], 5);
    let tenants: Vec<(&str, u64)> = only["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["tenant"].as_str().unwrap(), t["events"].as_u64().unwrap()))
        .collect();
    assert_eq!(tenants, [("acme", 4), ("globex", 1)]);
    assert_eq!(only["tenants"][0]["violations"]["high"], 1);

    // Scope: globex's auditor sees globex only, and may not ask for acme.
    let globex = create_token(&server, "globex", "auditor", &[]);
    // (By source: the ledger logs the searches above as globex's too.)
    let (status, mine) = get_as(&server, &globex, &format!("{path}&source=e2e"));
    assert_eq!(status, 200, "{mine}");
    assert_eq!(
        mine["totals"]["events"], 1,
        "globex's one event only: {mine}"
    );
    assert_eq!(mine["totals"]["violations"]["high"], 0);
    assert_eq!(mine["tenants"].as_array().unwrap().len(), 1);
    let (status, problem) = get_as(&server, &globex, &format!("{path}&tenant=acme"));
    assert_eq!(status, 403, "{problem}");
    let emitter = create_token(&server, "acme", "emitter", &[]);
    assert_eq!(get_as(&server, &emitter, &path).0, 403);

    // Bad parameters: 400 problem+json naming the parameter.
    for (query, name) in [
        (
            "step=1s&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z",
            "step",
        ),
        ("step=fortnight", "step"),
        ("from=yesterday", "from"),
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("tenants=acme", "tenants"),
    ] {
        let r = server.get(&format!("/v1/stats?{query}"));
        assert_eq!(r.status(), 400, "{query}");
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "application/problem+json"
        );
        let p: Value = r.json().unwrap();
        assert!(
            p["detail"].as_str().unwrap().starts_with(name),
            "{query}: {p}"
        );
    }
}
