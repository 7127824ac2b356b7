//! Bad input: RFC 9457 problems naming the field, nothing partially written.

use crate::harness::*;
use serde_json::{json, Value};

fn problem(r: reqwest::blocking::Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: Value = r.json().unwrap();
    assert_eq!(p["status"], status);
    assert!(p["title"].is_string() && p["detail"].is_string() && p["type"].is_string());
    p
}

#[test]
fn bad_requests_get_problems_and_log_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &["--max-body-bytes", "200000", "--max-event-bytes", "100000"],
    );
    server.post_events(&[event("first")]);
    server.wait_size(1);

    let p = problem(
        server.post("/v1/events", "application/json", b"[{\"id\":".to_vec()),
        400,
    );
    assert!(p["detail"].as_str().unwrap().contains("not valid JSON"));

    // One bad event refuses the whole batch, naming it.
    let mut no_id = event("x1");
    no_id.as_object_mut().unwrap().remove("id");
    let mut bad_time = event("x3");
    bad_time["time"] = json!("noon");
    let mut bad_tokens = event("x4");
    bad_tokens["ai"] = json!({"gen_ai.usage.input_tokens": "many"});
    let batch = json!([event("ok1"), no_id, event("ok2"), bad_time, bad_tokens]);
    let p = problem(
        server.post(
            "/v1/events",
            "application/json",
            serde_json::to_vec(&batch).unwrap(),
        ),
        400,
    );
    assert_eq!(p["errors"][0]["pointer"], "/1/id");
    assert_eq!(p["errors"][0]["path"], "events[1].id");
    assert_eq!(p["errors"][1]["pointer"], "/3/time");
    assert_eq!(
        p["errors"][2]["path"],
        "events[4].ai.gen_ai.usage.input_tokens"
    );
    assert_eq!(
        p["errors"][2]["detail"],
        "expected non-negative integer, got string"
    );
    assert_eq!(p["errors"].as_array().unwrap().len(), 3);
    let p = problem(
        server.post(
            "/v1/events",
            "application/x-ndjson",
            format!("{}\n{{bad\n", event("nd1")).into_bytes(),
        ),
        400,
    );
    assert_eq!(p["errors"][0]["pointer"], "/1");
    problem(
        server.post("/v1/events", "application/json", b"[]".to_vec()),
        400,
    );
    problem(
        server.post("/v1/events", "application/json", b"42".to_vec()),
        400,
    );
    problem(server.post("/v1/events", "text/csv", b"a,b".to_vec()), 415);
    problem(
        server.post(
            "/v1/events?wait=forever",
            "application/json",
            b"[]".to_vec(),
        ),
        400,
    );

    // An event over max_event_bytes, and an oversized body. (Large members
    // of smaller events are stored out of line: tests/e2e/large_events.rs.)
    let mut big = event("big");
    big["attributes"]["pad"] = json!(incompressible(150_000));
    let big = json!([event("fits"), big]);
    let p = problem(
        server.post(
            "/v1/events",
            "application/json",
            serde_json::to_vec(&big).unwrap(),
        ),
        413,
    );
    assert_eq!(p["errors"][0]["pointer"], "/1/attributes/pad", "{p}");
    let mut huge = event("huge");
    huge["attributes"]["pad"] = json!("x".repeat(300_000));
    let huge = json!([huge]);
    problem(
        server.post(
            "/v1/events",
            "application/json",
            serde_json::to_vec(&huge).unwrap(),
        ),
        413,
    );

    // Unknown tile paths, bad proof queries, unknown routes.
    for path in [
        "/tile/0/1",
        "/tile/0/x000/001",
        "/tile/0/000.p/0",
        "/tile/0/000.p/256",
        "/tile/x/000",
        "/tile/entries/000.p/x",
    ] {
        problem(server.get(path), 404);
    }
    let p = problem(server.get("/v1/proof/inclusion?index=5&size=1"), 400);
    assert_eq!(p["parameter"], "index");
    let p = problem(server.get("/v1/proof/inclusion?index=0&size=999"), 400);
    assert_eq!(p["parameter"], "size");
    let p = problem(server.get("/v1/proof/inclusion?index=abc"), 400);
    assert_eq!(p["parameter"], "index");
    let p = problem(server.get("/v1/proof/consistency?old=0&size=1"), 400);
    assert_eq!(p["parameter"], "old");
    let p = problem(server.get("/v1/proof/consistency"), 400);
    assert_eq!(p["parameter"], "old");
    problem(server.get("/v1/events/99"), 404);
    let p = problem(server.get("/v1/events/-1"), 400);
    assert_eq!(p["parameter"], "index");
    problem(server.get("/nope"), 404);

    // Refusals are counted by reason, for the error-rate alert.
    let metrics = server.get("/metrics").text().unwrap();
    assert!(
        metrics.contains("aiaudit_events_failed_total{tenant=\"acme\",reason=\"invalid-events\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("reason=\"body-too-large\""), "{metrics}");

    // Nothing of the refused batches was logged.
    let next = server.post_events(&[event("second")]);
    assert_eq!(next["events"][0]["index"], 1);
    assert_eq!(
        server.get("/v1/events/1").json::<Value>().unwrap()["event"]["id"],
        "second"
    );
}

#[test]
fn per_token_rate_limit_and_request_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &[
            "--rate-limit-events-per-sec",
            "10",
            "--request-timeout-secs",
            "1",
        ],
    );
    let batch = |tag: &str, n: usize| -> Vec<u8> {
        let events: Vec<Value> = (0..n).map(|i| event(&format!("{tag}-{i}"))).collect();
        serde_json::to_vec(&events).unwrap()
    };
    // A batch larger than the burst (two seconds' worth) passes on a full
    // bucket and leaves it 40 events short: the next 10 wait 5 s, a margin
    // no slow CI machine eats (with 0.5 s it could, in principle).
    assert_eq!(
        server
            .post("/v1/events", "application/json", batch("a", 60))
            .status(),
        200
    );
    let r = server.post("/v1/events", "application/json", batch("b", 10));
    assert!(r.headers().contains_key("retry-after"));
    let p = problem(r, 429);
    assert!(p["detail"]
        .as_str()
        .unwrap()
        .contains("10 events per second"));
    assert_eq!(server.get_json("/v1/info")["sequenced_size"], 60);

    // A client that stalls mid-body is cut off, with a problem, not held for ever.
    use std::io::{Read, Write};
    let addr = server.url.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{{",
        server.token
    )
    .unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("urn:aiaudit:problem:timeout"), "{answer}");
}

/// A command pointed at an address where nothing listens says so and names
/// the option that sets the address (#21), for the commands that talk to
/// the ledger over HTTP.
#[test]
fn a_refused_connection_names_the_url_option() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    for args in [
        vec!["query", "--url", closed.as_str(), "--token", "x"],
        vec!["token", "list", "--url", closed.as_str(), "--token", "x"],
        vec![
            "violations",
            "list",
            "--url",
            closed.as_str(),
            "--token",
            "x",
        ],
    ] {
        let out = aiaudit(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--url") && err.contains("AIAUDIT_URL"),
            "{args:?}: {err}"
        );
    }
}
