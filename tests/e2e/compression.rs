//! Compressed ingest (docs/api.md, "Compressed requests"): the ledger and
//! the agent decode `Content-Encoding: zstd` and `gzip` on `/v1/events`
//! and `/v1/logs` within their size limits, say so in `Accept-Encoding`
//! and `/v1/info`, and the agent (the Rust SDK) compresses what it
//! forwards once told.

use crate::harness::*;
use serde_json::{json, Value};
use std::io::Write;

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(bytes, 3).unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// An AI event with a prompt and an answer of natural language.
fn ai_event(id: &str, i: usize) -> Value {
    let mut e = event(id);
    e["input"] = json!({"content": format!(
        "Customer {i} asks whether the loan application submitted on Monday can be \
         approved before the end of the month, given the income documents attached."
    )});
    e["output"] = json!({"content": format!(
        "Application {i}: the income documents are consistent with the declared salary. \
         The debt-to-income ratio is within policy, so the application is recommended \
         for approval, subject to a human underwriter's review."
    )});
    e
}

fn post_coded(
    url: &str,
    token: &str,
    path: &str,
    content_type: &str,
    coding: &str,
    body: Vec<u8>,
) -> reqwest::blocking::Response {
    client()
        .post(format!("{url}{path}"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .header("content-encoding", coding)
        .body(body)
        .send()
        .unwrap()
}

fn accept_encoding(r: &reqwest::blocking::Response) -> String {
    r.headers()
        .get("accept-encoding")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn the_ledger_decodes_zstd_and_gzip_within_its_limits_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--max-body-bytes", "1048576"]);
    assert_eq!(
        server.get_json("/v1/info")["content_encodings"],
        json!(["zstd", "gzip"])
    );
    let (url, token) = (server.url.as_str(), server.token.as_str());

    // A JSON array in zstd, NDJSON in gzip: both land, and each answer
    // says what the next request may use.
    let batch: Vec<Value> = (0..50).map(|i| ai_event(&format!("z{i}"), i)).collect();
    let plain = serde_json::to_vec(&batch).unwrap();
    let r = post_coded(
        url,
        token,
        "/v1/events",
        "application/json",
        "zstd",
        zstd(&plain),
    );
    assert_eq!(accept_encoding(&r), "zstd, gzip");
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let ndjson: Vec<u8> = (0..50)
        .flat_map(|i| {
            let mut line = serde_json::to_vec(&ai_event(&format!("g{i}"), i)).unwrap();
            line.push(b'\n');
            line
        })
        .collect();
    let r = post_coded(
        url,
        token,
        "/v1/events",
        "application/x-ndjson",
        "gzip",
        gzip(&ndjson),
    );
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());

    // Refusals: each names the problem, carries Accept-Encoding, and
    // appends nothing.
    let refused = [
        ("br", plain.clone(), 415, "zstd, gzip or identity"),
        ("zstd", b"not zstd at all".to_vec(), 400, "not valid zstd"),
        ("gzip", zstd(&plain), 400, "not valid gzip"),
        // Two megabytes of one event, 1 MiB allowed: refused while decoding.
        (
            "zstd",
            zstd(&serde_json::to_vec(&vec![event("bomb"); 20_000]).unwrap()),
            413,
            "decodes to more than 1048576 bytes",
        ),
    ];
    for (coding, body, status, says) in refused {
        let r = post_coded(url, token, "/v1/events", "application/json", coding, body);
        assert_eq!(r.status(), status, "{coding}");
        assert_eq!(accept_encoding(&r), "zstd, gzip");
        let p: Value = r.json().unwrap();
        assert!(p["detail"].as_str().unwrap().contains(says), "{p}");
    }
    server.wait_size(100);
    let ids = logged_ids(&server, 100);
    assert_eq!(ids.len(), 100);
    assert!(ids.iter().all(|id| !id.starts_with("bomb")));
    assert_eq!(server.get_json("/v1/info")["sequenced_size"], 100);

    // OTLP/HTTP logs in zstd too.
    let otlp = json!({"resourceLogs": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "loan-assistant"}},
        {"key": "tenant", "value": {"stringValue": "acme"}}]},
      "scopeLogs": [{"logRecords": [{"timeUnixNano": "1764234843120000000",
        "body": {"stringValue": "model answered"},
        "attributes": [{"key": "action", "value": {"stringValue": "model.invoke"}}]}]}]}]});
    let r = post_coded(
        url,
        token,
        "/v1/logs",
        "application/json",
        "zstd",
        zstd(&serde_json::to_vec(&otlp).unwrap()),
    );
    assert_eq!(accept_encoding(&r), "zstd, gzip");
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().unwrap();
    assert!(answer.get("partialSuccess").is_none(), "{answer}");
    server.wait_size(101);
}

#[test]
fn the_agent_spools_compressed_and_forwards_compressed_once_told() {
    // The agent first, with its ledger down: everything waits in the spool.
    let ledger_dir = tempfile::tempdir().unwrap();
    let token = init_ledger(ledger_dir.path());
    let port = free_port();
    let spool = tempfile::tempdir().unwrap();
    let agent = start_agent(&format!("http://127.0.0.1:{port}"), &token, spool.path());

    // 20 requests of 50 events, zstd from the application to the agent.
    let mut json_bytes = 0;
    for r in 0..20 {
        let batch: Vec<Value> = (0..50)
            .map(|i| ai_event(&format!("a{r}-{i}"), r * 50 + i))
            .collect();
        let plain = serde_json::to_vec(&batch).unwrap();
        json_bytes += plain.len();
        let resp = post_coded(
            &agent.url,
            &agent.token,
            "/v1/events",
            "application/json",
            "zstd",
            zstd(&plain),
        );
        assert_eq!(accept_encoding(&resp), "zstd, gzip");
        assert_eq!(resp.status(), 202, "{}", resp.text().unwrap());
    }
    // The spool holds them compressed: its segments take a small part of
    // the JSON.
    let on_disk: u64 = std::fs::read_dir(spool.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("seg-"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(
        on_disk * 4 < json_bytes as u64,
        "{on_disk} bytes of segments for {json_bytes} of JSON"
    );
    assert_eq!(
        std::fs::read_to_string(spool.path().join("FORMAT")).unwrap(),
        "aiaudit-spool 2\n"
    );

    // The ledger comes up: everything lands once, and after the first
    // answer said zstd, the link carried a small part of the JSON.
    let ledger = Server::start_on(ledger_dir.path(), port, &[]);
    agent.wait_agent_drained();
    ledger.wait_size(1000);
    let ids = logged_ids(&ledger, 1000);
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 1000);
    let status = agent.agent_status();
    let (body, wire) = (
        status["body_bytes"].as_u64().unwrap(),
        status["wire_bytes"].as_u64().unwrap(),
    );
    assert!(body as usize >= json_bytes * 8 / 10, "{status}");
    assert!(wire * 3 < body, "{status}");
}

#[test]
fn a_summary_answer_counts_instead_of_listing_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let batch: Vec<Value> = (0..50).map(|i| ai_event(&format!("s{i}"), i)).collect();
    let body = serde_json::to_vec(&batch).unwrap();
    let post = |query: &str| {
        server.post(
            &format!("/v1/events{query}"),
            "application/json",
            body.clone(),
        )
    };

    let r = post("?acks=summary");
    assert_eq!(r.status(), 200);
    let text = r.text().unwrap();
    assert!(text.len() < 60, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"acknowledged": 50, "duplicates": 0})
    );
    // Sent again (an answer lost on the way): all of them duplicates.
    let again: Value = post("?acks=summary").json().unwrap();
    assert_eq!(again, json!({"acknowledged": 50, "duplicates": 50}));
    // The full answer, for comparison: an entry per event.
    let full = post("").text().unwrap();
    assert!(full.len() > 50 * 80, "{}", full.len());

    for bad in ["?acks=some", "?acks=summary&wait=checkpoint"] {
        let r = post(bad);
        assert_eq!(r.status(), 400, "{bad}");
        let p: Value = r.json().unwrap();
        assert_eq!(p["parameter"], "acks", "{p}");
    }
    assert_eq!(server.get_json("/v1/info")["sequenced_size"], 50);
}
