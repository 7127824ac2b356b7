//! The authorization matrix: every route × every kind of credential (none,
//! expired, revoked, tampered; admin, auditor and emitter of the event's own
//! tenant or of another, auditor of all tenants), each with its expected status.

use crate::harness::*;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

/// The credentials, in the column order of the table below.
const WHO: [&str; 10] = [
    "none",
    "expired",
    "revoked",
    "tampered",
    "admin",
    "auditor-own",
    "auditor-other",
    "emitter-own",
    "emitter-other",
    "auditor-all",
];

fn create(server: &Server, tenant: &str, role: &str, extra: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["token", "create", "--tenant", tenant, "--role", role])
        .args(extra)
        .args(["--url", &server.url, "--token", &server.token])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out).trim().to_string()
}

fn otlp_record(tenant: &str) -> Value {
    json!({"resourceLogs": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "matrix"}},
        {"key": "tenant", "value": {"stringValue": tenant}}]},
      "scopeLogs": [{"logRecords": [{"timeUnixNano": "1764234843120000000",
        "body": {"stringValue": "x"},
        "attributes": [{"key": "action", "value": {"stringValue": "model.invoke"}}]}]}]}]})
}

#[test]
fn every_route_every_role_every_token_state() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    // Index 0 is acme's, index 1 globex's: the entry bundle mixes tenants.
    let mut acme = event("own-0");
    acme["tenant"] = json!("acme");
    let mut globex = event("other-0");
    globex["tenant"] = json!("globex");
    server.post_events(&[acme, globex]);
    server.wait_size(2);

    let expired = create(&server, "acme", "auditor", &["--expires", "1s"]);
    // Created through the API, which also answers the new token's id.
    let created: Value = server
        .authorized(client().post(format!("{}/v1/tokens", server.url)))
        .json(&json!({"role": "auditor", "tenants": ["acme"]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let revoked = created["token"].as_str().unwrap().to_string();
    let revoked_id = created["id"].as_str().unwrap().to_string();
    let r = server
        .authorized(client().delete(format!("{}/v1/tokens/{revoked_id}", server.url)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut tampered = create(&server, "acme", "admin", &[]);
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let tokens: Vec<Option<String>> = vec![
        None,
        Some(expired),
        Some(revoked),
        Some(tampered),
        Some(server.token.clone()),
        Some(create(&server, "acme", "auditor", &[])),
        Some(create(&server, "globex", "auditor", &[])),
        Some(create(&server, "acme", "emitter", &[])),
        Some(create(&server, "globex", "emitter", &[])),
        Some(create(&server, "*", "auditor", &[])),
    ];
    std::thread::sleep(Duration::from_millis(1100)); // the 1 s token expires

    let ev = |id: &str| {
        let mut e = event(id);
        e["tenant"] = json!("acme");
        json!([e])
    };
    // (method, path, body, expected status per credential, in WHO order)
    type Row = (&'static str, &'static str, Option<Value>, [u16; 10]);
    let rows: Vec<Row> = vec![
        (
            "POST",
            "/v1/events",
            Some(ev("m-1")),
            [401, 401, 401, 401, 200, 403, 403, 200, 403, 403],
        ),
        (
            "POST",
            "/v1/logs",
            Some(otlp_record("acme")),
            [401, 401, 401, 401, 200, 403, 403, 200, 403, 403],
        ),
        (
            "GET",
            "/v1/events/0",
            None,
            [401, 401, 401, 401, 200, 200, 403, 403, 403, 200],
        ),
        (
            "GET",
            "/tile/entries/000.p/2",
            None,
            [401, 401, 401, 401, 200, 403, 403, 403, 403, 200],
        ),
        (
            "POST",
            "/v1/hash",
            Some(json!({"tenant": "acme", "value": "v"})),
            [401, 401, 401, 401, 200, 200, 403, 403, 403, 200],
        ),
        (
            "GET",
            "/checkpoint",
            None,
            [200, 401, 401, 401, 200, 200, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/tile/0/000.p/2",
            None,
            [200, 401, 401, 401, 200, 200, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/v1/proof/inclusion?index=0&size=2",
            None,
            [200, 401, 401, 401, 200, 200, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/v1/proof/consistency?old=1&size=2",
            None,
            [200, 401, 401, 401, 200, 200, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/v1/info",
            None,
            [200, 401, 401, 401, 200, 200, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/metrics",
            None,
            [200, 401, 401, 401, 200, 200, 200, 200, 200, 200],
        ),
        ("GET", "/healthz", None, [200; 10]),
        // The dashboard's files hold no data: served whatever the credential.
        ("GET", "/", None, [200; 10]),
        ("GET", "/sw.js", None, [200; 10]),
        ("GET", "/readyz", None, [200; 10]),
        (
            "GET",
            "/v1/tokens",
            None,
            [401, 401, 401, 401, 200, 403, 403, 403, 403, 403],
        ),
        (
            "POST",
            "/v1/tokens",
            Some(json!({"role": "auditor", "tenants": ["acme"]})),
            [401, 401, 401, 401, 201, 403, 403, 403, 403, 403],
        ),
        (
            "DELETE",
            "/v1/tokens/no-such-id",
            None,
            [401, 401, 401, 401, 404, 403, 403, 403, 403, 403],
        ),
        (
            "GET",
            "/v1/emitters",
            None,
            [401, 401, 401, 401, 200, 403, 403, 403, 403, 403],
        ),
        (
            "POST",
            "/v1/emitters",
            Some(
                json!({"name": "gw", "public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}),
            ),
            [401, 401, 401, 401, 201, 403, 403, 403, 403, 403],
        ),
        (
            "GET",
            "/v1/keys",
            None,
            [401, 401, 401, 401, 200, 403, 403, 403, 403, 403],
        ),
        (
            "GET",
            "/v1/keys/keyring",
            None,
            [401, 401, 401, 401, 200, 403, 403, 403, 403, 403],
        ),
        (
            "POST",
            "/v1/keys/rotate",
            None,
            [401, 401, 401, 401, 200, 403, 403, 403, 403, 403],
        ),
        (
            "POST",
            "/v1/keys/rotate-master",
            None,
            [401, 401, 401, 401, 200, 403, 403, 403, 403, 403],
        ),
        (
            "POST",
            "/v1/erase",
            Some(json!({"tenant": "acme", "subject": "s"})),
            [401, 401, 401, 401, 200, 403, 403, 403, 403, 403],
        ),
    ];
    let c = client();
    let mut failures = Vec::new();
    for (method, path, body, expected) in &rows {
        for (i, token) in tokens.iter().enumerate() {
            let url = format!("{}{path}", server.url);
            let mut req = match *method {
                "GET" => c.get(&url),
                "POST" => c.post(&url),
                "DELETE" => c.delete(&url),
                m => panic!("method {m}"),
            };
            if let Some(b) = body {
                req = req.json(b);
            }
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let got = req.send().unwrap().status().as_u16();
            if got != expected[i] {
                failures.push(format!(
                    "{method} {path} as {}: got {got}, expected {}",
                    WHO[i], expected[i]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
