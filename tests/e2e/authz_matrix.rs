//! The authorization matrix: every route the router serves × every kind of
//! credential (none, expired, revoked, tampered; admin, auditor and emitter
//! of every tenant, of the event's own tenant and of another), each with its
//! expected status. The routes come from the router's own tables (the
//! OpenAPI table, which a unit test holds equal to the router, and the
//! dashboard's assets): a route without rows here fails the test.

use crate::harness::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// The credentials, in the column order of the table below.
const WHO: [&str; 13] = [
    "none",
    "expired",
    "revoked",
    "tampered",
    "admin-all",
    "admin-own",
    "admin-other",
    "auditor-own",
    "auditor-other",
    "auditor-all",
    "emitter-own",
    "emitter-other",
    "emitter-all",
];

/// Statuses by who is asking: the four bad credentials, then each role.
#[derive(Clone, Copy)]
struct By {
    bad: [u16; 4],
    admin: [u16; 3],
    auditor: [u16; 3],
    emitter: [u16; 3],
}

impl By {
    fn row(self) -> [u16; 13] {
        let mut out = [0; 13];
        out[..4].copy_from_slice(&self.bad);
        // Scoped columns are (own, other, all) for auditors and emitters;
        // admins are listed (all, own, other) like WHO.
        out[4..7].copy_from_slice(&self.admin);
        out[7..10].copy_from_slice(&self.auditor);
        out[10..13].copy_from_slice(&self.emitter);
        out
    }
}

const NEEDS_TOKEN: [u16; 4] = [401; 4];
const PUBLIC: [u16; 4] = [200, 401, 401, 401];
const OPEN: [u16; 4] = [200; 4];

/// Reads of the acme tenant: its admins and auditors (own and all).
const READ_ACME: By = By {
    bad: NEEDS_TOKEN,
    admin: [200, 200, 403],
    auditor: [200, 403, 200],
    emitter: [403, 403, 403],
};
/// Appends to acme: its admins and emitters (own and all).
const APPEND_ACME: By = By {
    bad: NEEDS_TOKEN,
    admin: [200, 200, 403],
    auditor: [403, 403, 403],
    emitter: [200, 403, 200],
};
/// Open to anyone who holds no bad token.
const PUBLIC_READ: By = By {
    bad: PUBLIC,
    admin: [200; 3],
    auditor: [200; 3],
    emitter: [200; 3],
};
const ALWAYS: By = By {
    bad: OPEN,
    admin: [200; 3],
    auditor: [200; 3],
    emitter: [200; 3],
};
/// What acts on every tenant at once: the admin of all tenants alone.
const GLOBAL_ADMIN: By = By {
    bad: NEEDS_TOKEN,
    admin: [200, 403, 403],
    auditor: [403; 3],
    emitter: [403; 3],
};
/// An admin action on acme (erasure, holds, tokens of acme).
fn admin_acme(ok: u16) -> By {
    By {
        bad: NEEDS_TOKEN,
        admin: [ok, ok, 403],
        auditor: [403; 3],
        emitter: [403; 3],
    }
}
/// Any admin may ask; what it sees is filtered to its tenants.
fn any_admin(ok: u16) -> By {
    By {
        bad: NEEDS_TOKEN,
        admin: [ok; 3],
        auditor: [403; 3],
        emitter: [403; 3],
    }
}
/// Any reader (admin or auditor) may ask; filtered to its tenants.
fn any_reader(ok: u16) -> By {
    By {
        bad: NEEDS_TOKEN,
        admin: [ok; 3],
        auditor: [ok; 3],
        emitter: [403; 3],
    }
}

fn create(server: &Server, tenant: &str, role: &str, extra: &[&str]) -> String {
    create_token(server, tenant, role, extra)
}

fn otlp_record(tenant: &str) -> Value {
    json!({"resourceLogs": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "matrix"}},
        {"key": "tenant", "value": {"stringValue": tenant}}]},
      "scopeLogs": [{"logRecords": [{"timeUnixNano": "1764234843120000000",
        "body": {"stringValue": "x"},
        "attributes": [{"key": "action", "value": {"stringValue": "model.invoke"}}]}]}]}]})
}

/// (method, route as in the router's table, concrete path, body, expected).
type Row = (&'static str, &'static str, String, Option<Value>, By);

/// `blob`: the id (hex) of the blob of acme's event 0.
fn rows(blob: &str) -> Vec<Row> {
    let ev = |id: &str| {
        let mut e = event(id);
        e["tenant"] = json!("acme");
        json!([e])
    };
    let r = |m: &'static str, route: &'static str, path: &str, body: Option<Value>, by: By| {
        (m, route, path.to_string(), body, by)
    };
    let key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    vec![
        r(
            "post",
            "/v1/events",
            "/v1/events",
            Some(ev("m-1")),
            APPEND_ACME,
        ),
        r(
            "get",
            "/v1/events",
            "/v1/events?tenant=acme",
            None,
            READ_ACME,
        ),
        r("get", "/v1/events/{index}", "/v1/events/0", None, READ_ACME),
        r(
            "get",
            "/v1/events/{index}/blobs/{n}",
            "/v1/events/0/blobs/0",
            None,
            READ_ACME,
        ),
        r(
            "get",
            "/v1/export",
            "/v1/export?tenant=acme",
            None,
            READ_ACME,
        ),
        r(
            "post",
            "/v1/logs",
            "/v1/logs",
            Some(otlp_record("acme")),
            APPEND_ACME,
        ),
        r(
            "get",
            "/v1/events/{index}/tlog-proof",
            "/v1/events/0/tlog-proof",
            None,
            READ_ACME,
        ),
        r("get", "/checkpoint", "/checkpoint", None, PUBLIC_READ),
        r("get", "/tile/{path}", "/tile/0/000.p/2", None, PUBLIC_READ),
        // The entry bundle mixes acme's and globex's events: readers of every tenant only.
        r(
            "get",
            "/tile/{path}",
            "/tile/entries/000.p/2",
            None,
            By {
                bad: NEEDS_TOKEN,
                admin: [200, 403, 403],
                auditor: [403, 403, 200],
                emitter: [403; 3],
            },
        ),
        r("get", "/v1/info", "/v1/info", None, PUBLIC_READ),
        r("get", "/v1/schema/event", "/v1/schema/event", None, ALWAYS),
        r(
            "get",
            "/v1/proof/inclusion",
            "/v1/proof/inclusion?index=0&size=2",
            None,
            PUBLIC_READ,
        ),
        r(
            "get",
            "/v1/proof/consistency",
            "/v1/proof/consistency?old=1&size=2",
            None,
            PUBLIC_READ,
        ),
        r("get", "/v1/tokens", "/v1/tokens", None, any_admin(200)),
        r(
            "post",
            "/v1/tokens",
            "/v1/tokens",
            Some(json!({"role": "auditor", "tenants": ["acme"]})),
            admin_acme(201),
        ),
        // A token of every tenant is more than a scoped admin holds.
        r(
            "post",
            "/v1/tokens",
            "/v1/tokens",
            Some(json!({"role": "auditor", "tenants": ["*"]})),
            By {
                bad: NEEDS_TOKEN,
                admin: [201, 403, 403],
                auditor: [403; 3],
                emitter: [403; 3],
            },
        ),
        r(
            "delete",
            "/v1/tokens/{id}",
            "/v1/tokens/no-such-id",
            None,
            any_admin(404),
        ),
        r("get", "/v1/emitters", "/v1/emitters", None, any_admin(200)),
        r(
            "post",
            "/v1/emitters",
            "/v1/emitters",
            Some(json!({"name": "gw", "public_key": key, "tenants": ["acme"]})),
            admin_acme(201),
        ),
        // An emitter without tenants signs for all of them.
        r(
            "post",
            "/v1/emitters",
            "/v1/emitters",
            Some(json!({"name": "gw-all", "public_key": key})),
            By {
                bad: NEEDS_TOKEN,
                admin: [201, 403, 403],
                auditor: [403; 3],
                emitter: [403; 3],
            },
        ),
        r("get", "/v1/keys", "/v1/keys", None, GLOBAL_ADMIN),
        r(
            "get",
            "/v1/keys/keyring",
            "/v1/keys/keyring",
            None,
            GLOBAL_ADMIN,
        ),
        r(
            "get",
            "/v1/blobs/{id}",
            &format!("/v1/blobs/{blob}"),
            None,
            GLOBAL_ADMIN,
        ),
        r(
            "post",
            "/v1/keys/rotate",
            "/v1/keys/rotate",
            None,
            GLOBAL_ADMIN,
        ),
        r(
            "post",
            "/v1/keys/rotate-master",
            "/v1/keys/rotate-master",
            None,
            GLOBAL_ADMIN,
        ),
        r(
            "post",
            "/v1/erase",
            "/v1/erase",
            Some(json!({"tenant": "acme", "subject": "s"})),
            admin_acme(200),
        ),
        r(
            "post",
            "/v1/erase/preview",
            "/v1/erase/preview",
            Some(json!({"tenant": "acme", "subject": "s"})),
            admin_acme(200),
        ),
        r(
            "post",
            "/v1/hash",
            "/v1/hash",
            Some(json!({"tenant": "acme", "value": "v"})),
            READ_ACME,
        ),
        r(
            "get",
            "/v1/events/{index}/access",
            "/v1/events/0/access",
            None,
            READ_ACME,
        ),
        r("get", "/v1/stats", "/v1/stats?tenant=acme", None, READ_ACME),
        r(
            "get",
            "/v1/violations",
            "/v1/violations",
            None,
            any_reader(200),
        ),
        r(
            "get",
            "/v1/violations/{id}",
            "/v1/violations/no-such-id",
            None,
            any_reader(404),
        ),
        r(
            "post",
            "/v1/violations/{id}",
            "/v1/violations/no-such-id",
            Some(json!({"status": "acknowledged"})),
            any_reader(404),
        ),
        r(
            "get",
            "/v1/incidents",
            "/v1/incidents",
            None,
            any_reader(200),
        ),
        r(
            "post",
            "/v1/incidents",
            "/v1/incidents",
            Some(json!({"tenant": "acme", "title": "matrix", "severity": "low"})),
            By {
                bad: NEEDS_TOKEN,
                admin: [201, 201, 403],
                auditor: [201, 403, 201],
                emitter: [403; 3],
            },
        ),
        r(
            "post",
            "/v1/incidents/alertmanager",
            "/v1/incidents/alertmanager",
            Some(
                json!({"version": "4", "groupKey": "{}:{alertname=\"Matrix\"}", "status": "firing",
                        "commonLabels": {"alertname": "Matrix", "tenant": "acme", "severity": "low"},
                        "alerts": [{"status": "firing", "labels": {"alertname": "Matrix", "severity": "low"},
                                    "startsAt": "2026-03-04T10:00:00Z"}]}),
            ),
            READ_ACME,
        ),
        r(
            "get",
            "/v1/incidents/{id}",
            "/v1/incidents/no-such-id",
            None,
            any_reader(404),
        ),
        r(
            "post",
            "/v1/incidents/{id}",
            "/v1/incidents/no-such-id",
            Some(json!({"status": "acknowledged"})),
            any_reader(404),
        ),
        r(
            "post",
            "/v1/incidents/{id}/breach",
            "/v1/incidents/no-such-id/breach",
            Some(json!({})),
            any_reader(404),
        ),
        r(
            "post",
            "/v1/incidents/{id}/notified",
            "/v1/incidents/no-such-id/notified",
            Some(json!({"clock": "ng:authority"})),
            any_reader(404),
        ),
        r(
            "post",
            "/v1/incidents/{id}/notes",
            "/v1/incidents/no-such-id/notes",
            Some(json!({"text": "x"})),
            any_reader(404),
        ),
        r(
            "get",
            "/v1/incidents/{id}/review",
            "/v1/incidents/no-such-id/review",
            None,
            any_reader(404),
        ),
        r(
            "get",
            "/v1/incidents/{id}/pack",
            "/v1/incidents/no-such-id/pack?jurisdiction=ng",
            None,
            any_reader(404),
        ),
        r("get", "/v1/holds", "/v1/holds", None, any_reader(200)),
        r(
            "post",
            "/v1/holds",
            "/v1/holds",
            Some(json!({"tenant": "acme", "reason": "r"})),
            admin_acme(201),
        ),
        r(
            "post",
            "/v1/holds",
            "/v1/holds",
            Some(json!({"tenant": "*", "reason": "r"})),
            By {
                bad: NEEDS_TOKEN,
                admin: [201, 403, 403],
                auditor: [403; 3],
                emitter: [403; 3],
            },
        ),
        r(
            "delete",
            "/v1/holds/{id}",
            "/v1/holds/no-such-id",
            None,
            any_admin(404),
        ),
        r(
            "get",
            "/v1/reports/compliance",
            "/v1/reports/compliance?tenant=acme",
            None,
            READ_ACME,
        ),
        r("get", "/v1/openapi.json", "/v1/openapi.json", None, ALWAYS),
        r("get", "/metrics", "/metrics", None, PUBLIC_READ),
        r("get", "/healthz", "/healthz", None, ALWAYS),
        r("options", "/v1/events", "/v1/events", None, ALWAYS),
        r("get", "/readyz", "/readyz", None, ALWAYS),
    ]
}

#[test]
fn every_route_every_role_every_scope_every_token_state() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    // Index 0 is acme's (with a subject, so acme has an HMAC salt, and a
    // member large enough to be stored as a blob), index 1 globex's: the
    // entry bundle mixes tenants.
    let mut acme = event("own-0");
    acme["tenant"] = json!("acme");
    acme["subject"] = json!("customer-1");
    acme["input"] = json!({"content": "a long retrieved document ".repeat(1000)});
    let mut globex = event("other-0");
    globex["tenant"] = json!("globex");
    server.post_events(&[acme, globex]);
    server.wait_size(2);

    let expired = create(&server, "acme", "auditor", &["--expires", "1s"]);
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
        Some(create(&server, "acme", "admin", &[])),
        Some(create(&server, "globex", "admin", &[])),
        Some(create(&server, "acme", "auditor", &[])),
        Some(create(&server, "globex", "auditor", &[])),
        Some(create(&server, "*", "auditor", &[])),
        Some(create(&server, "acme", "emitter", &[])),
        Some(create(&server, "globex", "emitter", &[])),
        Some(create(&server, "*", "emitter", &[])),
    ];
    // The 1 s token expires.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client()
        .get(format!("{}/checkpoint", server.url))
        .bearer_auth(tokens[1].as_ref().unwrap())
        .send()
        .unwrap()
        .status()
        != 401
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the token never expired"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let first = server.get_json("/v1/events/0?blobs=omit");
    let commitment = first["blobs"][0]["commitment"]
        .as_str()
        .expect("event 0 has a blob");
    let blob: String = {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(commitment)
            .unwrap();
        raw.iter().map(|b| format!("{b:02x}")).collect()
    };
    let rows = rows(&blob);
    // Every route the router serves has rows, and every row is a route.
    let routed: BTreeSet<(String, String)> = aiaudit_server::openapi::ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let covered: BTreeSet<(String, String)> = rows
        .iter()
        .map(|(m, route, ..)| (m.to_string(), route.to_string()))
        .collect();
    let missing: Vec<_> = routed.difference(&covered).collect();
    let unknown: Vec<_> = covered.difference(&routed).collect();
    assert!(
        missing.is_empty(),
        "routes without matrix rows: {missing:?}"
    );
    assert!(unknown.is_empty(), "matrix rows for no route: {unknown:?}");

    let c = client();
    let mut failures = Vec::new();
    let mut check = |method: &str, path: &str, body: &Option<Value>, expected: [u16; 13]| {
        for (i, token) in tokens.iter().enumerate() {
            let url = format!("{}{path}", server.url);
            let mut req = match method {
                "get" => c.get(&url),
                "post" => c.post(&url),
                "delete" => c.delete(&url),
                "options" => c.request(reqwest::Method::OPTIONS, &url),
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
                    "{} {path} as {}: got {got}, expected {}",
                    method.to_uppercase(),
                    WHO[i],
                    expected[i]
                ));
            }
        }
    };
    for (method, _, path, body, by) in &rows {
        check(method, path, body, by.row());
    }
    // The dashboard's files hold no data: served whatever the credential.
    for (path, _, _) in aiaudit_server::dashboard::asset_sizes() {
        check("get", path, &None, ALWAYS.row());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
