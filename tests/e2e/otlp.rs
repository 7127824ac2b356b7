//! OTLP/HTTP log ingestion (`POST /v1/logs`): hand-built protobuf and JSON
//! requests, and the real OpenTelemetry Python SDK, against the ledger and
//! the agent.

use crate::harness::*;
use aiaudit_server::otlp::{
    gzip, AnyValue, ArrayValue, ExportLogsServiceRequest, ExportLogsServiceResponse,
    InstrumentationScope, KeyValue, LogRecord, Message, Resource, ResourceLogs, ScopeLogs,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

/// 2026-11-27T09:14:03.120Z
const T: u64 = 1_795_770_843_120_000_000;
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue::new(key, AnyValue::string(value))
}

/// Two good records (a model call with gen_ai.* and no action, a human
/// review) and one without any service.name.
fn request() -> ExportLogsServiceRequest {
    let model_call = LogRecord {
        time_unix_nano: T,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: Some(AnyValue::string("model answered")),
        attributes: vec![
            kv("tenant", "acme"),
            kv("gen_ai.provider.name", "anthropic"),
            kv("gen_ai.request.model", "claude-x"),
            KeyValue::new("gen_ai.usage.input_tokens", AnyValue::int(812)),
            KeyValue::new(
                "gen_ai.response.finish_reasons",
                AnyValue {
                    value: Some(aiaudit_server::otlp::any_value::Value::ArrayValue(
                        ArrayValue {
                            values: vec![AnyValue::string("stop")],
                        },
                    )),
                },
            ),
        ],
        trace_id: hex(TRACE),
        span_id: hex(SPAN),
        ..Default::default()
    };
    let review = LogRecord {
        time_unix_nano: T + 1_000_000,
        event_name: "review.done".into(),
        attributes: vec![
            kv("action", "human.review"),
            kv("actor.id", "officer-12"),
            kv("actor.type", "user"),
            kv("human_oversight.reviewer", "officer-12"),
            kv("human_oversight.decision", "confirmed"),
            kv("outcome.status", "success"),
        ],
        ..Default::default()
    };
    let anonymous = LogRecord {
        time_unix_nano: T,
        attributes: vec![kv("action", "tool.call")],
        ..Default::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![
            ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", "loan-assistant"),
                        kv("service.version", "3.2.0"),
                        kv("deployment.environment", "test"),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "loan.llm".into(),
                        ..Default::default()
                    }),
                    log_records: vec![model_call, review],
                    ..Default::default()
                }],
                ..Default::default()
            },
            ResourceLogs {
                resource: None,
                scope_logs: vec![ScopeLogs {
                    log_records: vec![anonymous],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    }
}

/// The same request in OTLP/JSON: hex ids, 64-bit integers as strings.
fn json_request() -> Value {
    let s = |v: &str| json!({"stringValue": v});
    let attr = |k: &str, v: Value| json!({"key": k, "value": v});
    json!({"resourceLogs": [
        {"resource": {"attributes": [
            attr("service.name", s("loan-assistant")),
            attr("service.version", s("3.2.0")),
            attr("deployment.environment", s("test"))]},
         "scopeLogs": [{"scope": {"name": "loan.llm"}, "logRecords": [
            {"timeUnixNano": T.to_string(), "severityNumber": 9, "severityText": "INFO",
             "body": s("model answered"), "traceId": TRACE, "spanId": SPAN,
             "attributes": [
                attr("tenant", s("acme")),
                attr("gen_ai.provider.name", s("anthropic")),
                attr("gen_ai.request.model", s("claude-x")),
                attr("gen_ai.usage.input_tokens", json!({"intValue": "812"})),
                attr("gen_ai.response.finish_reasons", json!({"arrayValue": {"values": [s("stop")]}}))]},
            {"timeUnixNano": (T + 1_000_000).to_string(), "eventName": "review.done",
             "attributes": [
                attr("action", s("human.review")),
                attr("actor.id", s("officer-12")),
                attr("actor.type", s("user")),
                attr("human_oversight.reviewer", s("officer-12")),
                attr("human_oversight.decision", s("confirmed")),
                attr("outcome.status", s("success"))]}]}]},
        {"scopeLogs": [{"logRecords": [
            {"timeUnixNano": T.to_string(), "attributes": [attr("action", s("tool.call"))]}]}]}
    ]})
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn post_logs(
    server: &Server,
    content_type: &str,
    body: Vec<u8>,
    gzipped: bool,
) -> reqwest::blocking::Response {
    let mut req = server
        .authorized(client().post(format!("{}/v1/logs", server.url)))
        .header("content-type", content_type);
    if gzipped {
        req = req.header("content-encoding", "gzip");
    }
    req.body(body).send().unwrap()
}

/// Posts the protobuf request and checks the partial success.
fn post_protobuf(server: &Server) {
    let r = post_logs(
        server,
        "application/x-protobuf",
        request().encode_to_vec(),
        false,
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    let resp = ExportLogsServiceResponse::decode(r.bytes().unwrap()).unwrap();
    let partial = resp.partial_success.expect("partial_success");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("service.name"),
        "{}",
        partial.error_message
    );
}

fn sequenced(server: &Server) -> u64 {
    server.get_json("/v1/info")["sequenced_size"]
        .as_u64()
        .unwrap()
}

fn wait_sequenced(server: &Server, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while sequenced(server) < n {
        assert!(
            Instant::now() < deadline,
            "the ledger never reached {n} events"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn event_at(server: &Server, index: u64) -> Value {
    server.get_json(&format!("/v1/events/{index}"))["event"].clone()
}

/// The ledger holds exactly the two mapped events.
fn check_ledger(server: &Server) {
    assert_eq!(sequenced(server), 2);
    let mut model_call = event_at(server, 0);
    let id = model_call["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("otlp-") && id.len() == 37, "{id}");
    model_call.as_object_mut().unwrap().remove("id");
    assert_eq!(
        model_call,
        json!({
            "time": "2026-11-27T09:14:03.120000000Z", "tenant": "acme",
            "source": {"name": "loan-assistant", "version": "3.2.0"},
            "actor": {"id": "loan-assistant", "type": "service"},
            "action": "model.invoke",
            "ai": {"gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-x",
                   "gen_ai.usage.input_tokens": 812, "gen_ai.response.finish_reasons": ["stop"]},
            "trace_id": TRACE, "span_id": SPAN,
            "attributes": {"deployment.environment": "test", "log.body": "model answered",
                           "log.severity": "INFO", "otel.scope.name": "loan.llm"},
        })
    );
    let mut review = event_at(server, 1);
    assert!(review["id"].as_str().unwrap().starts_with("otlp-"));
    review.as_object_mut().unwrap().remove("id");
    assert_eq!(
        review,
        json!({
            "time": "2026-11-27T09:14:03.121000000Z", "tenant": "default",
            "source": {"name": "loan-assistant", "version": "3.2.0"},
            "actor": {"id": "officer-12", "type": "user"},
            "action": "human.review",
            "human_oversight": {"reviewer": "officer-12", "decision": "confirmed"},
            "outcome": {"status": "success"},
            "attributes": {"deployment.environment": "test", "log.event_name": "review.done",
                           "otel.scope.name": "loan.llm"},
        })
    );
}

#[test]
fn otlp_protobuf_logs_reach_the_ledger_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    post_protobuf(&server);
    check_ledger(&server);

    // An exporter's retry: the same records map to the same ids, nothing new.
    post_protobuf(&server);
    assert_eq!(sequenced(&server), 2);

    // Not OTLP at all: 415 and 400, as problem details.
    let r = post_logs(&server, "text/plain", b"hello".to_vec(), false);
    assert_eq!(r.status(), 415);
    let r = post_logs(
        &server,
        "application/x-protobuf",
        b"\xff\xff\xff".to_vec(),
        false,
    );
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: Value = r.json().unwrap();
    assert_eq!(problem["type"], "urn:aiaudit:problem:invalid-otlp");
    let r = post_logs(
        &server,
        "application/x-protobuf",
        b"not gzip".to_vec(),
        true,
    );
    assert_eq!(r.status(), 400);
    assert_eq!(sequenced(&server), 2);

    // Every record rejected is still a 200 with partial_success.
    let mut only_bad = request();
    only_bad.resource_logs.remove(0);
    let r = post_logs(
        &server,
        "application/x-protobuf",
        only_bad.encode_to_vec(),
        false,
    );
    assert_eq!(r.status(), 200);
    let resp = ExportLogsServiceResponse::decode(r.bytes().unwrap()).unwrap();
    assert_eq!(resp.partial_success.unwrap().rejected_log_records, 1);
    // An empty request is a full success: no partial_success.
    let r = post_logs(&server, "application/x-protobuf", Vec::new(), false);
    assert_eq!(r.status(), 200);
    let resp = ExportLogsServiceResponse::decode(r.bytes().unwrap()).unwrap();
    assert_eq!(resp.partial_success, None);
}

#[test]
fn otlp_json_gzip_logs_map_like_protobuf() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let body = gzip(&serde_json::to_vec(&json_request()).unwrap());
    let r = post_logs(&server, "application/json", body.clone(), true);
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let resp: Value = r.json().unwrap();
    let partial = &resp["partialSuccess"];
    assert_eq!(partial["rejectedLogRecords"], "1", "{resp}");
    assert!(partial["errorMessage"]
        .as_str()
        .unwrap()
        .contains("resource_logs[1].scope_logs[0].log_records[0]: no source.name or service.name"));
    check_ledger(&server);

    // Re-sent as JSON, or as protobuf, through the ledger or the agent: the
    // same records are the same events, so nothing is added.
    let r = post_logs(&server, "application/json", body, true);
    assert_eq!(r.status(), 200);
    post_protobuf(&server);
    let agent = start_agent(&server.url, &server.token, &dir.path().join("spool"));
    post_protobuf(&agent);
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent.get_json("/v1/agent/status")["pending_batches"] != 0 {
        assert!(Instant::now() < deadline, "the agent never delivered");
        std::thread::sleep(Duration::from_millis(50));
    }
    check_ledger(&server);
}

/// Whether the OpenTelemetry Python SDK can run here; in CI it must.
fn python_sdk() -> bool {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs the OpenTelemetry Python SDK: \
             python3 -m pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http"
        );
        skipped("OpenTelemetry Python SDK not installed");
    }
    ok
}

/// Runs the real OpenTelemetry Python SDK; `token` goes the standard way,
/// through OTEL_EXPORTER_OTLP_HEADERS.
fn python_send(endpoint: &str, token: &str, run: &str, count: usize, gzipped: bool) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/e2e/otlp_send.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg(format!("{endpoint}/v1/logs"))
        .arg(run)
        .arg(count.to_string());
    if gzipped {
        cmd.arg("--gzip");
    }
    if !token.is_empty() {
        cmd.env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("Authorization=Bearer%20{token}"),
        );
    }
    let out = cmd.output().expect("running python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "otlp_send.py {run}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("sent {count} of {count}")),
        "{stdout}"
    );
}

#[test]
fn otlp_from_the_opentelemetry_python_sdk() {
    if !python_sdk() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let agent = start_agent(&server.url, &server.token, &dir.path().join("spool"));
    python_send(&server.url, &server.token, "direct", 5, false);
    // The ledger answered after the records were durable.
    assert_eq!(sequenced(&server), 5);
    python_send(&agent.url, &agent.token, "via-agent", 5, true);
    wait_sequenced(&server, 10);
    agent.wait_agent_drained();
    server.wait_idle();
    assert_eq!(sequenced(&server), 10);

    for run in ["direct", "via-agent"] {
        let events: Vec<Value> = (0..10)
            .map(|i| event_at(&server, i))
            .filter(|e| e["attributes"]["run"] == run)
            .collect();
        assert_eq!(events.len(), 5, "{run}");
        let seqs: BTreeSet<i64> = events
            .iter()
            .map(|e| e["attributes"]["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(seqs, (0..5).collect());
        for e in &events {
            let seq = e["attributes"]["seq"].as_u64().unwrap();
            assert_eq!(e["action"], "model.invoke");
            assert_eq!(e["tenant"], "default");
            assert_eq!(
                e["source"],
                json!({"name": "py-otel-e2e", "version": "1.0.0"})
            );
            assert_eq!(e["actor"], json!({"id": "py-otel-e2e", "type": "service"}));
            assert_eq!(e["ai"]["gen_ai.provider.name"], "openai");
            assert_eq!(e["ai"]["gen_ai.usage.input_tokens"], 100 + seq);
            assert_eq!(e["ai"]["gen_ai.response.finish_reasons"], json!(["stop"]));
            assert_eq!(e["attributes"]["log.body"], format!("inference {seq}"));
            assert_eq!(e["attributes"]["log.severity"], "INFO");
            assert_eq!(e["attributes"]["otel.scope.name"], "e2e.otlp_send");
            assert_eq!(e["attributes"]["telemetry.sdk.language"], "python");
            assert!(e["id"].as_str().unwrap().starts_with("otlp-"));
        }
    }
}
