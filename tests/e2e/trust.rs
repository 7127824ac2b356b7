//! Trust from the inside: a hostile tenant, a compromised emitter and a
//! malicious web page next to the agent, each finding of issue 15 as a test
//! against the real binary, and one table holding JSON ingest, OTLP and the
//! agent to the same rules.

use crate::harness::*;
use base64::Engine;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn token(server: &Server, role: &str, tenants: &[&str]) -> String {
    let r = server
        .authorized(client().post(format!("{}/v1/tokens", server.url)))
        .json(&json!({"role": role, "tenants": tenants}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
    r.json::<Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn post_as(server: &Server, bearer: &str, path: &str, body: &Value) -> reqwest::blocking::Response {
    client()
        .post(format!("{}{path}", server.url))
        .bearer_auth(bearer)
        .json(body)
        .send()
        .unwrap()
}

fn acme(id: &str) -> Value {
    event(id)
}

fn sequenced(server: &Server) -> u64 {
    server.get_json("/v1/info")["sequenced_size"]
        .as_u64()
        .unwrap()
}

/// Finding 1: a token scoped to one tenant, with role admin, is an admin of
/// that tenant only: it cannot mint a token beyond its scope nor touch what
/// other tenants or all tenants share.
#[test]
fn a_tenant_scoped_admin_is_not_a_global_admin() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    server.post_events(&[acme("a-1")]);
    let scoped = token(&server, "admin", &["acme"]);
    let refused = [
        ("/v1/tokens", json!({"role": "admin", "tenants": ["*"]})),
        (
            "/v1/tokens",
            json!({"role": "auditor", "tenants": ["globex"]}),
        ),
        (
            "/v1/tokens",
            json!({"role": "emitter", "tenants": ["acme", "globex"]}),
        ),
        ("/v1/erase", json!({"tenant": "globex", "subject": "s"})),
        ("/v1/holds", json!({"tenant": "globex", "reason": "r"})),
        ("/v1/holds", json!({"tenant": "*", "reason": "r"})),
        ("/v1/keys/rotate", json!({})),
        ("/v1/keys/rotate-master", json!({})),
        (
            "/v1/emitters",
            json!({"name": "e", "public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}),
        ),
    ];
    for (path, body) in &refused {
        let r = post_as(&server, &scoped, path, body);
        assert_eq!(r.status(), 403, "POST {path} {body}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    assert_eq!(get_as(&server, &scoped, "/v1/keys/keyring").0, 403);
    // Within its tenant it works, and what it mints is no wider than itself.
    let r = post_as(
        &server,
        &scoped,
        "/v1/tokens",
        &json!({"role": "auditor", "tenants": ["acme"]}),
    );
    assert_eq!(r.status(), 201);
    // It sees only the tokens of its scope.
    let (_, listed) = get_as(&server, &scoped, "/v1/tokens");
    let tokens = listed["tokens"].as_array().unwrap();
    assert!(!tokens.is_empty());
    assert!(
        tokens.iter().all(|t| t["tenants"] == json!(["acme"])),
        "{listed}"
    );
    // It cannot revoke the global admin's token.
    let all: Value = server.get_json("/v1/tokens");
    let root = all["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenants"] == json!(["*"]))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = client()
        .delete(format!("{}/v1/tokens/{root}", server.url))
        .bearer_auth(&scoped)
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        server.get("/v1/keys").status(),
        200,
        "the root token still works"
    );
}

/// Finding 2: the ledger's own records cannot be imitated, and every event
/// records who appended it, covered by its leaf.
#[test]
fn emitters_cannot_forge_the_ledgers_records_and_provenance_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let emitter = token(&server, "emitter", &["acme"]);
    let mut forged = Vec::new();
    for action in [
        "policy.violation",
        "policy.violation.resolved",
        "data.erasure",
        "retention.expiry",
        "legal_hold.released",
    ] {
        let mut e = acme(&format!("forged-{action}"));
        e["action"] = json!(action);
        forged.push((e, "/0/action"));
    }
    for source in ["aiaudit", "aiaudit-policy"] {
        let mut e = acme(&format!("forged-{source}"));
        e["source"]["name"] = json!(source);
        forged.push((e, "/0/source/name"));
    }
    for (e, pointer) in &forged {
        for bearer in [&emitter, &server.token] {
            let r = post_as(&server, bearer, "/v1/events", &json!([e]));
            assert_eq!(r.status(), 403, "{e}");
            let p: Value = r.json().unwrap();
            assert_eq!(p["errors"][0]["pointer"], *pointer, "{p}");
        }
    }
    assert_eq!(sequenced(&server), 0, "nothing forged was logged");

    // Provenance: the caller's token id, or "ledger" for the ledger's own.
    let out: Value = post_as(&server, &emitter, "/v1/events", &json!([acme("p-1")]))
        .json()
        .unwrap();
    let index = out["events"][0]["index"].as_u64().unwrap();
    let ids: Value = server.get_json("/v1/tokens");
    let emitter_id = ids["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "emitter")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post_as(
        &server,
        &server.token,
        "/v1/erase",
        &json!({"tenant": "acme", "subject": "s-1"}),
    );
    assert_eq!(r.status(), 200);
    let erasure = r.json::<Value>().unwrap()["erasure_event"]["index"]
        .as_u64()
        .unwrap();
    let stored = |i: u64| {
        let e = server.get_json_when_ready(&format!("/v1/events/{i}"));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(e["entry"].as_str().unwrap())
            .unwrap();
        aiaudit_event::envelope::decode_stored(&bytes).unwrap()
    };
    assert_eq!(
        stored(index).appended_by.as_deref(),
        Some(format!("token:{emitter_id}").as_str())
    );
    assert_eq!(stored(erasure).appended_by.as_deref(), Some("ledger"));
}

/// Finding 3: ids are per tenant: another tenant's event with an id already
/// used is a new event, not a "duplicate" that answers with the first one.
#[test]
fn the_same_event_id_in_two_tenants_is_two_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let a = server.post_events(&[acme("shared-id")]);
    let mut g = acme("shared-id");
    g["tenant"] = json!("globex");
    let b = server.post_events(&[g.clone()]);
    assert_eq!(a["events"][0]["duplicate"], false);
    assert_eq!(b["events"][0]["duplicate"], false, "{b}");
    assert_ne!(a["events"][0]["index"], b["events"][0]["index"]);
    // Within a tenant it still deduplicates, after a restart too.
    let again = server.post_events(&[g.clone()]);
    assert_eq!(again["events"][0]["duplicate"], true);
    server.stop();
    let server = Server::start(dir.path());
    let again = server.post_events(&[g]);
    assert_eq!(again["events"][0]["duplicate"], true);
    assert_eq!(again["events"][0]["index"], b["events"][0]["index"]);
}

/// An OTLP request of `n` valid records for acme.
fn otlp_records(n: usize, action: &str, service: &str) -> Value {
    let records: Vec<Value> = (0..n)
        .map(|i| json!({"timeUnixNano": format!("{}", 1764234843120000000u64 + i as u64),
            "body": {"stringValue": "x"},
            "attributes": [{"key": "action", "value": {"stringValue": action}},
                           {"key": "id", "value": {"stringValue": format!("{service}-{action}-{i}")}}]}))
        .collect();
    json!({"resourceLogs": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": service}},
        {"key": "tenant", "value": {"stringValue": "acme"}}]},
      "scopeLogs": [{"logRecords": records}]}]})
}

/// Finding 4: OTLP goes through the same front door (rate limit, metrics),
/// and a tiny body of empty records is refused before it is decoded.
#[test]
fn otlp_is_rate_limited_counted_and_bounded_like_json_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--rate-limit-events-per-sec", "20"]);
    let emitter = token(&server, "emitter", &["acme"]);
    let first = post_as(
        &server,
        &emitter,
        "/v1/logs",
        &otlp_records(40, "model.invoke", "svc-a"),
    );
    assert_eq!(first.status(), 200, "{}", first.text().unwrap_or_default());
    let second = post_as(
        &server,
        &emitter,
        "/v1/logs",
        &otlp_records(40, "tool.call", "svc-b"),
    );
    assert_eq!(
        second.status(),
        429,
        "the token's bucket is shared with /v1/events"
    );
    assert!(second.headers().contains_key("retry-after"));
    let metrics = server.get("/metrics").text().unwrap();
    assert!(
        metrics.contains("aiaudit_events_processed_total{tenant=\"acme\"} 40"),
        "{metrics}"
    );
    // 1,000,000 empty log records: 2 MB of protobuf, gzip'd to a few KB.
    let mut scope = Vec::new();
    for _ in 0..1_000_000 {
        scope.extend_from_slice(&[0x12, 0]);
    }
    let mut rl = vec![0x12];
    prost::encoding::encode_varint(scope.len() as u64, &mut rl);
    rl.extend_from_slice(&scope);
    let mut body = vec![0x0a];
    prost::encoding::encode_varint(rl.len() as u64, &mut body);
    body.extend_from_slice(&rl);
    let gz = aiaudit_server::otlp::gzip(&body);
    assert!(gz.len() < 16 << 10, "{} bytes", gz.len());
    let r = server
        .authorized(client().post(format!("{}/v1/logs", server.url)))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gz.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 413, "{}", r.text().unwrap_or_default());
    let spool = dir.path().join("spool");
    let agent = start_agent(&server.url, &server.token, &spool);
    let r = agent
        .authorized(client().post(format!("{}/v1/logs", agent.url)))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gz)
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
}

/// Finding 5: the agent signs what it forwards, so it takes events only from
/// applications holding its local token, only as JSON (a web page cannot
/// send that cross-origin), and listens beyond loopback only over TLS.
#[test]
fn the_agent_trusts_only_holders_of_its_local_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let spool = dir.path().join("spool");
    let agent = start_agent(&server.url, &server.token, &spool);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(spool.join("agent.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(agent.token.starts_with("aag_"));
    let body = serde_json::to_vec(&json!([acme("agent-1")])).unwrap();
    let c = client();
    let send = |bearer: Option<&str>, content_type: &str, path: &str| {
        let mut req = c
            .post(format!("{}{path}", agent.url))
            .header("content-type", content_type)
            .body(body.clone());
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        req.send().unwrap().status().as_u16()
    };
    // What a page in the user's browser can send without a preflight.
    assert_eq!(send(None, "text/plain", "/v1/events"), 401);
    assert_eq!(send(None, "application/json", "/v1/events"), 401);
    assert_eq!(
        send(Some("aag_wrong"), "application/json", "/v1/events"),
        401
    );
    assert_eq!(send(Some(&agent.token), "text/plain", "/v1/events"), 415);
    assert_eq!(
        send(
            Some(&agent.token),
            "application/x-www-form-urlencoded",
            "/v1/events"
        ),
        415
    );
    assert_eq!(send(None, "application/json", "/v1/logs"), 401);
    let r = c
        .get(format!("{}/v1/agent/status", agent.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        send(Some(&agent.token), "application/json", "/v1/events"),
        202
    );

    // Beyond loopback without TLS: refused at start.
    let out = std::process::Command::new(BIN)
        .args([
            "agent",
            "--ledger-url",
            &server.url,
            "--listen",
            "0.0.0.0:0",
            "--spool-dir",
        ])
        .arg(dir.path().join("spool2"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-cert"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Finding 6: a refused batch's raw tenant never becomes a metrics label.
#[test]
fn refused_input_cannot_write_metrics_series() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut e = acme("inject-1");
    e["tenant"] = json!("x\"} 1\naiaudit_fake_alert{severity=\"critical");
    let r = server.post(
        "/v1/events",
        "application/json",
        serde_json::to_vec(&json!([e])).unwrap(),
    );
    assert_eq!(r.status(), 400);
    let metrics = server.get("/metrics").text().unwrap();
    assert!(!metrics.contains("aiaudit_fake_alert"), "{metrics}");
    assert!(
        metrics.contains(
            "aiaudit_events_failed_total{tenant=\"refused\",reason=\"invalid-events\"} 1"
        ),
        "{metrics}"
    );
}

/// Finding 7: a read-only role never writes: hashing a value of a tenant
/// without a salt creates none; an over-long tenant is a 400.
#[test]
fn hashing_as_an_auditor_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let auditor = token(&server, "auditor", &["*"]);
    let before = server.get_json("/v1/keys")["keys"].clone();
    let keyring = std::fs::read(dir.path().join("keyring")).ok();
    for tenant in ["never-seen-1", "never-seen-2"] {
        let r = post_as(
            &server,
            &auditor,
            "/v1/hash",
            &json!({"tenant": tenant, "value": "v"}),
        );
        assert_eq!(r.status(), 404, "{}", r.text().unwrap_or_default());
    }
    assert_eq!(server.get_json("/v1/keys")["keys"], before);
    assert_eq!(std::fs::read(dir.path().join("keyring")).ok(), keyring);
    let r = post_as(
        &server,
        &auditor,
        "/v1/hash",
        &json!({"tenant": "t".repeat(65), "value": "v"}),
    );
    assert_eq!(r.status(), 400);
    let p: Value = r.json().unwrap();
    assert_eq!(p["errors"][0]["pointer"], "/tenant");
}

/// Finding 8, smaller: tile arithmetic, signatures across tenants, info for
/// anonymous callers, and a data directory private to its owner.
#[test]
fn tiles_signatures_info_and_file_modes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &["--require-signed-tenant", "bank"]);
    server.post_events(&[acme("t-1"), acme("t-2")]);
    server.wait_size(2);
    // Tile index 2^56: its first entry would be 2^64, which wraps to 0.
    let r = client()
        .get(format!(
            "{}/tile/0/x072/x057/x594/x037/x927/936.p/2",
            server.url
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);

    // An emitter registered for acme cannot sign for bank.
    let key = aiaudit_tlog::Signer::from_seed("acme-gw", [7; 32]).unwrap();
    let r = post_as(
        &server,
        &server.token,
        "/v1/emitters",
        &json!({
        "name": "acme-gw", "public_key": key.verifier().to_vkey(), "tenants": ["acme"]}),
    );
    assert_eq!(r.status(), 201);
    let mut e = acme("bank-1");
    e["tenant"] = json!("bank");
    let canonical = vec![aiaudit_event::canonical_event(&e)];
    let sig = aiaudit_event::signature::sign_batch(
        &key,
        aiaudit_event::signature::SignatureFormat::V1,
        &canonical,
    );
    let r = server
        .authorized(client().post(format!("{}/v1/events", server.url)))
        .header("aiaudit-emitter", "acme-gw")
        .header(
            "aiaudit-signature",
            base64::engine::general_purpose::STANDARD.encode(sig),
        )
        .json(&json!([e]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403, "{}", r.text().unwrap_or_default());

    // Anonymous callers see the log, not the operator's backups.
    let info: Value = client()
        .get(format!("{}/v1/info", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(info.get("backup").is_none(), "{info}");
    assert!(server.get_json("/v1/info").get("backup").is_some());

    // Every file 0600, every directory 0700.
    server.stop();
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![data.clone()];
    let mut files = 0;
    while let Some(p) = stack.pop() {
        let meta = std::fs::metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", p.display());
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            files += 1;
        }
    }
    assert!(files > 5);
    // A directory widened by hand is narrowed at the next start.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(data.join("log"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Server::start(&data);
    for p in [&data, &data.join("log")] {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", p.display());
    }
    server.stop();
    // A secret others could read may have leaked: no quiet narrowing, no start.
    for secret in ["admin.token", "keyring"] {
        let path = data.join(secret);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = std::process::Command::new(BIN)
            .args(["serve", "--data-dir"])
            .arg(&data)
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{secret}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("chmod 600"),
            "{secret}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// How a batch reaches the ledger.
#[derive(Clone, Copy, Debug)]
enum Path {
    Json,
    Otlp,
    AgentJson,
    AgentOtlp,
}

/// One event as JSON, and as an OTLP request mapping to the same event.
fn as_otlp(e: &Value) -> Value {
    let s = |v: &Value| json!({"stringValue": v.as_str().unwrap_or_default()});
    json!({"resourceLogs": [{"resource": {"attributes": [
        {"key": "service.name", "value": s(&e["source"]["name"])},
        {"key": "tenant", "value": s(&e["tenant"])}]},
      "scopeLogs": [{"logRecords": [{"timeUnixNano": "1764234843120000000",
        "body": {"stringValue": "x"},
        "attributes": [{"key": "action", "value": s(&e["action"])},
                       {"key": "id", "value": s(&e["id"])}]}]}]}]})
}

/// The rules of the front door hold on every way in: a reserved action, a
/// reserved source and another tenant's event are refused and never
/// logged, whichever path they take.
#[test]
fn every_ingest_path_is_held_to_the_same_rules() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let emitter = token(&server, "emitter", &["acme"]);
    let agent = start_agent(&server.url, &emitter, &dir.path().join("spool"));
    let send = |path: Path, e: &Value| -> u16 {
        let (target, bearer, route, body) = match path {
            Path::Json => (&server.url, &emitter, "/v1/events", json!([e])),
            Path::Otlp => (&server.url, &emitter, "/v1/logs", as_otlp(e)),
            Path::AgentJson => (&agent.url, &agent.token, "/v1/events", json!([e])),
            Path::AgentOtlp => (&agent.url, &agent.token, "/v1/logs", as_otlp(e)),
        };
        client()
            .post(format!("{target}{route}"))
            .bearer_auth(bearer)
            .json(&body)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let case = |name: &str, f: &dyn Fn(&mut Value)| {
        let mut e = acme(name);
        f(&mut e);
        e
    };
    // (case, event, status per path: JSON, OTLP, agent JSON, agent OTLP).
    // The agent cannot know the ledger token's tenants: it spools, and the
    // ledger refuses (the agent drops what the ledger refuses as final).
    let cases: Vec<(&str, Value, [u16; 4])> = vec![
        (
            "reserved action",
            case("r-act", &|e| {
                e["action"] = json!("policy.violation.resolved")
            }),
            [403, 403, 403, 403],
        ),
        (
            "reserved source",
            case("r-src", &|e| e["source"]["name"] = json!("aiaudit")),
            [403, 403, 403, 403],
        ),
        (
            "other tenant",
            case("o-ten", &|e| e["tenant"] = json!("globex")),
            [403, 403, 202, 200],
        ),
    ];
    let mut failures = Vec::new();
    for (name, e, expected) in &cases {
        for (i, path) in [Path::Json, Path::Otlp, Path::AgentJson, Path::AgentOtlp]
            .into_iter()
            .enumerate()
        {
            let mut e = e.clone();
            e["id"] = json!(format!("{}-{i}", e["id"].as_str().unwrap()));
            let got = send(path, &e);
            if got != expected[i] {
                failures.push(format!(
                    "{name} via {path:?}: got {got}, expected {}",
                    expected[i]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The agent spooled the other tenant's events; the ledger refuses them
    // for good, so they leave the spool without being logged.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = |a: &Server| a.get_json("/v1/agent/status");
    while status(&agent)["pending_batches"] != 0 {
        assert!(Instant::now() < deadline, "the agent never drained");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(status(&agent)["rejected"].as_u64().unwrap() >= 1);
    assert_eq!(sequenced(&server), 0, "nothing refused was logged");
    // A good event through each path: the rules refuse only what they should.
    for (i, path) in [Path::Json, Path::Otlp, Path::AgentJson, Path::AgentOtlp]
        .into_iter()
        .enumerate()
    {
        let ok = send(path, &acme(&format!("good-{i}")));
        assert!(matches!(ok, 200 | 202), "{path:?}: {ok}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while sequenced(&server) < 4 {
        assert!(Instant::now() < deadline, "good events never arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sequenced(&server), 4);
}
