//! Tokens, roles and tenant isolation against the real binary.

use crate::harness::*;
use serde_json::{json, Value};
use std::process::Command;

fn token_cli(server: &Server, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("token")
        .args(args)
        .args(["--url", &server.url, "--token", &server.token])
        .output()
        .unwrap()
}

fn create(server: &Server, tenant: &str, role: &str, extra: &[&str]) -> String {
    let mut args = vec!["create", "--tenant", tenant, "--role", role];
    args.extend_from_slice(extra);
    let out = token_cli(server, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = stdout(&out);
    assert_eq!(token.lines().count(), 1, "the token alone on stdout");
    token.trim().to_string()
}

fn as_token(token: &str, req: reqwest::blocking::RequestBuilder) -> reqwest::blocking::Response {
    req.bearer_auth(token).send().unwrap()
}

fn tenant_event(id: &str, tenant: &str) -> Value {
    let mut e = event(id);
    e["tenant"] = json!(tenant);
    e
}

#[test]
fn tokens_roles_and_tenant_isolation() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), NO_ACCESS_LOG);
    assert!(server.token.starts_with("aat_"));
    let c = client();
    let url = |p: &str| format!("{}{p}", server.url);

    // The admin logs one event of each tenant.
    server.post_events(&[tenant_event("g0", "globex"), tenant_event("a0", "acme")]);
    server.wait_size(2);

    // Without a token: only the public, hash-only routes.
    let r = c
        .post(url("/v1/events"))
        .json(&json!([tenant_event("x", "acme")]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(c.get(url("/v1/events/0")).send().unwrap().status(), 401);
    assert_eq!(
        c.get(url("/tile/entries/000.p/2")).send().unwrap().status(),
        401
    );
    for open in [
        "/checkpoint",
        "/tile/0/000.p/2",
        "/v1/info",
        "/healthz",
        "/v1/proof/inclusion?index=0&size=2",
    ] {
        assert_eq!(c.get(url(open)).send().unwrap().status(), 200, "{open}");
    }
    assert_eq!(
        as_token("aat_wrong", c.get(url("/v1/events/0"))).status(),
        401
    );

    // An emitter of acme writes acme, never globex, and reads nothing.
    let emitter = create(&server, "acme", "emitter", &[]);
    let r = as_token(
        &emitter,
        c.post(url("/v1/events"))
            .json(&json!([tenant_event("a1", "acme")])),
    );
    assert_eq!(r.status(), 200);
    let r = as_token(
        &emitter,
        c.post(url("/v1/events")).json(&json!([
            tenant_event("a2", "acme"),
            tenant_event("g1", "globex")
        ])),
    );
    assert_eq!(r.status(), 403);
    let p: Value = r.json().unwrap();
    assert_eq!(p["errors"][0]["pointer"], "/1/tenant");
    assert_eq!(as_token(&emitter, c.get(url("/v1/events/1"))).status(), 403);

    // An auditor of acme reads acme events only, and no mixed bundle.
    let auditor = create(&server, "acme", "auditor", &[]);
    let r = as_token(&auditor, c.get(url("/v1/events/1?proof=true")));
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["event"]["tenant"], "acme");
    assert_eq!(as_token(&auditor, c.get(url("/v1/events/0"))).status(), 403);
    assert_eq!(
        as_token(&auditor, c.get(url("/tile/entries/000.p/2"))).status(),
        403
    );
    assert_eq!(
        as_token(
            &auditor,
            c.post(url("/v1/events"))
                .json(&json!([tenant_event("a3", "acme")]))
        )
        .status(),
        403
    );
    let all = create(&server, "*", "auditor", &[]);
    assert_eq!(
        as_token(&all, c.get(url("/tile/entries/000.p/2"))).status(),
        200
    );
    // Token management is for admins.
    assert_eq!(as_token(&all, c.get(url("/v1/tokens"))).status(), 403);

    // Listing shows no secrets; revocation is immediate; expiry holds.
    let out = token_cli(&server, &["list", "--json"]);
    let listed = stdout(&out);
    assert_eq!(listed.lines().count(), 4, "{listed}");
    assert!(!listed.contains("aat_"));
    let emitter_id = listed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|t| t["role"] == "emitter")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(token_cli(&server, &["revoke", &emitter_id])
        .status
        .success());
    let r = as_token(
        &emitter,
        c.post(url("/v1/events"))
            .json(&json!([tenant_event("a4", "acme")])),
    );
    assert_eq!(r.status(), 401);
    let brief = create(&server, "acme", "auditor", &["--expires", "1s"]);
    // The table shows expiry as an RFC 3339 time, not epoch seconds.
    let table = stdout(&token_cli(&server, &["list"]));
    let row = table
        .lines()
        .find(|l| l.contains("auditor") && !l.contains("never"));
    let expiry = row
        .and_then(|r| r.split_whitespace().nth(3))
        .unwrap_or_default();
    assert!(
        expiry.len() == 20 && expiry.ends_with('Z') && expiry.as_bytes()[10] == b'T',
        "expiry {expiry:?} in:\n{table}"
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(as_token(&brief, c.get(url("/v1/events/1"))).status(), 401);
    let bad = token_cli(&server, &["create", "--tenant", "acme", "--role", "root"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("role"));

    // Nothing refused was logged.
    assert_eq!(server.get_json("/v1/info")["sequenced_size"], 3);
}

#[test]
fn public_reads_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--public-reads", "false"]);
    let c = client();
    assert_eq!(
        c.get(format!("{}/checkpoint", server.url))
            .send()
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        c.get(format!("{}/healthz", server.url))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(server.get("/checkpoint").status(), 200);
}
