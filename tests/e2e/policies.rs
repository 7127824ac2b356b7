//! Policies on the real binary: a violation is logged, alerted to a webhook
//! and counted; an auditor acknowledges and resolves it; the rule file is
//! reloaded without a restart; the lifecycle survives one.

use crate::harness::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RULES: &str = DEEPSEEK_RULE;
const MORE_RULES: &str = TOKEN_BUDGET_RULE;

/// A webhook receiver: records every request body, answers 200.
fn webhook() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}

fn model_call(id: &str, provider: &str, tokens: u64) -> Value {
    let mut e = event(id);
    e["ai"] = json!({"gen_ai.provider.name": provider, "gen_ai.usage.input_tokens": tokens});
    e
}

/// Polls `f` until it returns something, for at most 30 s.
/// `aiaudit violations list --json` against `server`, with `extra` flags.
fn violations_list(server: &Server, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "violations",
        "list",
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--json",
    ];
    args.extend_from_slice(extra);
    aiaudit(&args)
}

fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn logged(server: &Server, action: &str) -> Vec<Value> {
    server.get_json(&format!("/v1/events?tenant=acme&action={action}"))["events"]
        .as_array()
        .unwrap()
        .clone()
}

fn update(server: &Server, id: &str, body: Value) -> (u16, Value) {
    let r = server.post(
        &format!("/v1/violations/{id}"),
        "application/json",
        body.to_string().into_bytes(),
    );
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

#[test]
fn policies_fire_alert_and_follow_their_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let (url, alerts) = webhook();
    let data = dir.path().join("data");
    let args = [
        "--policy-file",
        rules.to_str().unwrap(),
        "--webhook-url",
        &url,
    ];
    let server = Server::start_with(&data, &args);

    // A match and a near miss: exactly one violation.
    server.post_events(&[
        model_call("m1", "deepseek", 10),
        model_call("m2", "deepseek-proxy", 10),
    ]);
    let found = eventually("the violation event", || {
        Some(logged(&server, "policy.violation")).filter(|v| !v.is_empty())
    });
    assert_eq!(found.len(), 1, "{found:?}");
    let list = server.get_json("/v1/violations?tenant=acme");
    let v = &list["violations"][0];
    assert_eq!(list["total"], 1);
    assert_eq!(v["rule"], "disallowed-provider");
    assert_eq!(v["severity"], "high");
    assert_eq!(v["event_id"], "m1");
    assert_eq!(v["status"], "open");
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(found[0]["id"], id.as_str());

    let alert = eventually("the webhook", || alerts.lock().unwrap().first().cloned());
    let alert: Value = serde_json::from_str(&alert).unwrap();
    assert_eq!(alert[0]["labels"]["rule"], "disallowed-provider");
    assert_eq!(alert[0]["labels"]["severity"], "high");
    assert_eq!(alert[0]["labels"]["tenant"], "acme");
    assert_eq!(alert[0]["annotations"]["event_id"], "m1");
    assert!(alert[0]["startsAt"].is_string());

    let metrics = server.get("/metrics").text().unwrap();
    assert!(
        metrics.contains(
            "aiaudit_violations_detected_total{rule=\"disallowed-provider\",severity=\"high\"} 1"
        ),
        "{metrics}"
    );

    // The lifecycle: bad requests, then open → acknowledged → resolved.
    assert_eq!(update(&server, &id, json!({"status": "resolved"})).0, 400);
    let (status, problem) = update(&server, &id, json!({"status": "closed"}));
    assert_eq!(status, 400);
    assert!(problem.to_string().contains("status"), "{problem}");
    assert_eq!(
        update(&server, "nope", json!({"status": "acknowledged"})).0,
        404
    );
    let (status, body) = update(
        &server,
        &id,
        json!({"status": "acknowledged", "note": "looking"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["violation"]["status"], "acknowledged");
    assert_eq!(
        update(&server, &id, json!({"status": "acknowledged"})).0,
        409
    );
    let (status, body) = update(
        &server,
        &id,
        json!({"status": "resolved", "note": "provider blocked"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        update(&server, &id, json!({"status": "acknowledged"})).0,
        409
    );
    eventually("the transitions in the log", || {
        let acks = logged(&server, "policy.violation.acknowledged");
        let done = logged(&server, "policy.violation.resolved");
        (acks.len() == 1 && done.len() == 1).then_some(())
    });
    let metrics = server.get("/metrics").text().unwrap();
    assert!(
        metrics.contains("aiaudit_violations_resolved_total{severity=\"high\"} 1"),
        "{metrics}"
    );
    let resolved = server.get_json("/v1/violations?status=resolved");
    assert_eq!(resolved["total"], 1);
    // The same from the command line.
    let out = violations_list(&server, &["--status", "resolved"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out).lines().count(), 1);
    assert!(stdout(&out).contains("provider blocked"));
    let out = aiaudit(&[
        "violations",
        "ack",
        &id,
        "--url",
        &server.url,
        "--token",
        &server.token,
    ]);
    assert!(
        !out.status.success(),
        "a resolved violation cannot be acknowledged again"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("409"));
    assert_eq!(
        resolved["violations"][0]["history"][1]["note"],
        "provider blocked"
    );

    // A new rule applies without a restart.
    std::fs::write(&rules, format!("{RULES}{MORE_RULES}")).unwrap();
    let mut n = 0;
    eventually("the reloaded rule", || {
        n += 1;
        server.post_events(&[model_call(&format!("big-{n}"), "anthropic", 5000)]);
        std::thread::sleep(Duration::from_millis(400));
        let v = server.get_json("/v1/violations?rule=token-budget");
        (v["total"].as_u64() > Some(0)).then_some(())
    });
    // A broken file keeps the rules in force.
    let failures = server
        .metric("aiaudit_policy_reload_failures_total")
        .unwrap_or(0.0);
    std::fs::write(&rules, "[[rule]]\nid = \"x\"\ncondition = '('\n").unwrap();
    eventually("the broken file was read (and refused)", || {
        (server.metric("aiaudit_policy_reload_failures_total") > Some(failures)).then_some(())
    });
    server.post_events(&[model_call("m3", "deepseek", 1)]);
    eventually("the rule kept", || {
        let v = server.get_json("/v1/violations?rule=disallowed-provider");
        (v["total"] == 2).then_some(())
    });

    // The lifecycle is derived from the log: it survives a restart.
    std::fs::write(&rules, RULES).unwrap();
    server.stop();
    let server = Server::start_with(&data, &args);
    let v = server.get_json(&format!("/v1/violations/{id}"));
    assert_eq!(v["status"], "resolved");
    assert_eq!(v["history"].as_array().unwrap().len(), 2);
}

/// Violations page newest first with a cursor, filter by severity, and the
/// CLI follows pages up to `--limit` and says when more remain (#21).
#[test]
fn violations_page_with_a_cursor_and_filter_by_severity() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, format!("{RULES}{MORE_RULES}")).unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--policy-file", rules.to_str().unwrap()],
    );
    // Five high (provider) and two medium (tokens) violations.
    let mut events: Vec<Value> = (0..5)
        .map(|i| model_call(&format!("p{i}"), "deepseek", 10))
        .collect();
    events.extend((0..2).map(|i| model_call(&format!("t{i}"), "openai", 5000)));
    server.post_events(&events);
    eventually("seven violations", || {
        (server.get_json("/v1/violations")["total"] == 7).then_some(())
    });
    // Pages of 3: 3 + 3 + 1, newest first, each once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/v1/violations?limit=3&cursor={c}"),
            None => "/v1/violations?limit=3".to_string(),
        };
        let page = server.get_json(&q);
        assert_eq!(page["total"], 7);
        seen.extend(
            page["violations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["index"].as_u64().unwrap()),
        );
        cursor = page["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");
    let medium = server.get_json("/v1/violations?severity=medium");
    assert_eq!(medium["total"], 2);
    // Facets: each count applies every filter but its own.
    let sum = |v: &Value| {
        v.as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(medium["counts"]["severity"]["medium"], 2, "{medium}");
    assert_eq!(sum(&medium["counts"]["severity"]), 7, "{medium}");
    assert_eq!(sum(&medium["counts"]["status"]), 2, "{medium}");
    assert_eq!(medium["counts"]["status"]["open"], 2, "{medium}");
    let none = server.get_json("/v1/violations?severity=medium&source=no-such-source");
    assert_eq!(
        (none["total"].clone(), sum(&none["counts"]["severity"])),
        (json!(0), 0)
    );
    for (q, field) in [
        ("severity=urgent", "severity"),
        ("cursor=abc", "cursor"),
        ("sources=x", "sources"),
    ] {
        let r = server.get(&format!("/v1/violations?{q}"));
        assert_eq!(r.status(), 400, "{q}");
        let body: Value = r.json().unwrap();
        assert_eq!(body["parameter"], field, "{body}");
    }
    // The CLI: --limit 4 prints four and says how to go on; --cursor goes on.
    let list = |extra: &[&str]| violations_list(&server, extra);
    let out = list(&["--limit", "4"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).lines().count(), 4);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let next = err
        .split("--cursor ")
        .nth(1)
        .map(str::trim)
        .unwrap_or_else(|| panic!("{err}"));
    assert!(err.contains("4 of 7"), "{err}");
    let out = list(&["--cursor", next]);
    assert_eq!(stdout(&out).lines().count(), 3);
    let out = list(&["--severity", "medium"]);
    assert_eq!(stdout(&out).lines().count(), 2);
}
