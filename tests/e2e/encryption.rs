//! Encryption at rest, crypto-shredding erasure, key rotation and
//! sensitive-field HMACs, through the real binary.

use crate::harness::*;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const MARKER: &str = "MARKER-7f3a-do-not-store-in-clear";
const SUBJECT: &str = "subject-alice-3c1d";

fn secret_event(id: &str, subject: Option<&str>) -> Value {
    let mut e = event(id);
    e["input"] = json!({"content": format!("prompt {MARKER} {id}")});
    e["output"] = json!({"content": format!("answer {MARKER}")});
    e["attributes"]["note"] = json!(MARKER);
    if let Some(s) = subject {
        e["subject"] = json!(s);
    }
    e
}

/// Every file under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    hits.push(path.display().to_string());
                }
            }
        }
    }
    hits
}

fn admin_post(server: &Server, path: &str, body: Value) -> reqwest::blocking::Response {
    server
        .authorized(client().post(format!("{}{path}", server.url)))
        .json(&body)
        .send()
        .unwrap()
}

#[test]
fn content_is_sealed_erasure_shreds_it_and_the_log_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let mode = std::fs::metadata(data.join("master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let events = vec![
        secret_event("s0", Some(SUBJECT)),
        secret_event("s1", Some("subject-bob")),
        secret_event("s2", None),
        secret_event("s3", Some(SUBJECT)),
    ];
    server.post_events(&events);
    server.wait_size(4);
    server.stop();
    // Stopped cleanly, every derived index written: no file holds the content or the subject.
    assert_eq!(files_containing(&data, MARKER), Vec::<String>::new());
    assert_eq!(files_containing(&data, SUBJECT), Vec::<String>::new());

    let server = Server::start(&data);
    let e0 = server.get_json("/v1/events/0");
    assert_eq!(
        e0["entry_version"], 3,
        "a new log writes sealed entries in format 3"
    );
    assert_eq!(e0["content"], "sealed");
    assert_eq!(e0["event"]["subject"], SUBJECT);
    assert!(e0["event"]["input"]["content"]
        .as_str()
        .unwrap()
        .contains(MARKER));

    // Erase alice through the CLI.
    let out = aiaudit(&[
        "erase",
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--tenant",
        "acme",
        "--subject",
        SUBJECT,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["keys_destroyed"], 1);
    let erasure_index = report["erasure_event"]["index"].as_u64().unwrap();

    // The same subject again, or a typo: no live keys. Said, and without a
    // terminal to confirm on, refused unless --yes: nothing logged.
    let erase = |subject: &str, extra: &[&str]| {
        let mut args = vec![
            "erase",
            "--url",
            &server.url,
            "--token",
            &server.token,
            "--tenant",
            "acme",
            "--subject",
            subject,
        ];
        args.extend_from_slice(extra);
        aiaudit(&args)
    };
    let size_before = server.get_json("/v1/info")["sequenced_size"].clone();
    for subject in [SUBJECT, "alice-typo"] {
        let out = erase(subject, &[]);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(
            said.contains("has no live keys in tenant \"acme\""),
            "{said}"
        );
        assert!(said.contains("nothing erased or logged"), "{said}");
    }
    assert_eq!(server.get_json("/v1/info")["sequenced_size"], size_before);
    // A preview says what an erasure would do and does nothing.
    let out = erase("subject-bob", &["--dry-run"]);
    assert!(out.status.success());
    let preview: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(preview["live_keys"], 1, "{preview}");
    let out = erase(SUBJECT, &["--dry-run"]);
    let preview: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        (
            preview["live_keys"].clone(),
            preview["destroyed_keys"].clone()
        ),
        (json!(0), json!(1))
    );
    assert_eq!(server.get_json("/v1/info")["sequenced_size"], size_before);
    // With --yes the request is logged all the same (0 keys destroyed).
    let out = erase("alice-typo", &["--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logged: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(logged["keys_destroyed"], 0);

    for i in [0, 3] {
        let e = server.get_json(&format!("/v1/events/{i}"));
        assert_eq!(e["content"], "erased", "{e}");
        assert!(!e.to_string().contains(MARKER));
        assert!(!e.to_string().contains(SUBJECT));
        // What remains: the clear index (id, time, tenant, action...), the hash.
        assert_eq!(e["event"]["id"], format!("s{i}"));
        assert!(e["event"]["subject"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:"));
    }
    let bob = server.get_json("/v1/events/1");
    assert_eq!(bob["content"], "sealed");
    assert!(bob.to_string().contains(MARKER));
    let erasure = server.get_json(&format!("/v1/events/{erasure_index}"));
    assert_eq!(erasure["event"]["action"], "data.erasure");
    assert_eq!(erasure["event"]["attributes"]["keys_destroyed"], 1);
    assert!(!erasure.to_string().contains(SUBJECT));

    // The log verifies without any key, erased entries included.
    server.wait_size(erasure_index + 1);
    let out = aiaudit(&["verify", "--url", &server.url, "--token", &server.token]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The erased subject's key is gone from the keyring file for good.
    server.stop();
    let server = Server::start(&data);
    assert_eq!(server.get_json("/v1/events/0")["content"], "erased");
    assert_eq!(server.get_json("/v1/events/2")["content"], "sealed");
}

#[test]
fn keys_rotate_without_downtime_and_old_content_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    server.post_events(&[secret_event("r0", None), secret_event("r1", Some("carol"))]);
    let key_of = |i: u64| {
        let e = server.get_json(&format!("/v1/events/{i}"));
        let entry = base64_decode(e["entry"].as_str().unwrap());
        aiaudit_event::envelope::decode_stored(&entry)
            .unwrap()
            .sealed
            .unwrap()
            .key
    };
    let before = (key_of(0), key_of(1));

    let out = aiaudit(&[
        "keys",
        "rotate",
        "--url",
        &server.url,
        "--token",
        &server.token,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.post_events(&[secret_event("r2", None), secret_event("r3", Some("carol"))]);
    assert_ne!(key_of(2), before.0);
    assert_ne!(key_of(3), before.1);

    let master_before = std::fs::read(data.join("master.key")).unwrap();
    let out = aiaudit(&[
        "keys",
        "rotate-master",
        "--url",
        &server.url,
        "--token",
        &server.token,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(
        std::fs::read(data.join("master.key")).unwrap(),
        master_before
    );
    server.post_events(&[secret_event("r4", None)]);
    for i in 0..5 {
        let e = server.get_json(&format!("/v1/events/{i}"));
        assert!(e.to_string().contains(MARKER), "{e}");
    }
    // After a restart, only the new master key exists, and it opens everything.
    server.stop();
    let server = Server::start(&data);
    for i in 0..5 {
        assert_eq!(
            server.get_json(&format!("/v1/events/{i}"))["content"],
            "sealed"
        );
    }
    let status = aiaudit(&[
        "keys",
        "status",
        "--url",
        &server.url,
        "--token",
        &server.token,
    ]);
    let status: Value = serde_json::from_str(stdout(&status).trim()).unwrap();
    assert_eq!(status["keys"]["tenant_keys"], 2);
    assert_eq!(status["keys"]["subject_keys"], 2);

    // A master key others may read stops the server from starting.
    server.stop();
    std::fs::set_permissions(
        data.join("master.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn sensitive_fields_are_stored_as_hmacs_an_auditor_can_compute() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(
        &data,
        &[
            "--sensitive-field",
            "input.content",
            "--sensitive-field",
            "actor.email",
        ],
    );
    let mut e = secret_event("h0", None);
    e["actor"]["email"] = json!("alice@example.com");
    server.post_events(&[e]);
    let stored = server.get_json("/v1/events/0");
    let hmac = stored["event"]["input"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(hmac.starts_with("hmac-sha256:"), "{stored}");
    assert_eq!(stored["redacted"], json!(["actor.email", "input.content"]));
    let email = stored["event"]["actor"]["email"].as_str().unwrap();
    // The auditor computes the HMAC of a known value and finds the match.
    let r = admin_post(
        &server,
        "/v1/hash",
        json!({"tenant": "acme", "value": "prompt MARKER-7f3a-do-not-store-in-clear h0"}),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["hmac"], hmac);
    let out = aiaudit(&[
        "hash",
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--tenant",
        "acme",
        "--value",
        "alice@example.com",
    ]);
    assert_eq!(stdout(&out).trim(), email);
    // Another tenant's salt gives another HMAC; a tenant with no salt yet
    // gets none made by asking (404); a bad request names its field.
    let r = admin_post(
        &server,
        "/v1/hash",
        json!({"tenant": "other", "value": "alice@example.com"}),
    );
    assert_eq!(r.status(), 404);
    let mut o = secret_event("h1", Some("bob"));
    o["tenant"] = json!("other");
    server.post_events(&[o]);
    let r = admin_post(
        &server,
        "/v1/hash",
        json!({"tenant": "other", "value": "alice@example.com"}),
    );
    assert_ne!(r.json::<Value>().unwrap()["hmac"].as_str().unwrap(), email);
    let r = admin_post(&server, "/v1/hash", json!({"tenant": "acme"}));
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().unwrap()["errors"][0]["pointer"], "/value");
    let r = admin_post(&server, "/v1/erase", json!({"subject": "x"}));
    assert_eq!(r.status(), 400);
}
