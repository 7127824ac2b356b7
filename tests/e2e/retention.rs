//! Retention per tenant expires content and index rows without breaking
//! verification; legal holds suspend it.

use crate::harness::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn old_event(id: &str, tenant: &str) -> Value {
    let mut e = event(id);
    e["tenant"] = json!(tenant);
    e["time"] = json!("2020-01-01T00:00:00Z");
    e["input"] = json!({"content": "RETENTION-MARKER"});
    e
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn search_count(server: &Server, q: &str) -> usize {
    server.get_json(&format!("/v1/events?{q}"))["events"]
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn retention_expires_content_and_rows_and_holds_stop_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(
        &data,
        &[
            "--retention",
            "acme=3s",
            "--retention",
            "globex=3s",
            "--data-key-max-age",
            "1s",
            "--retention-check-interval",
            "1s",
        ],
    );
    // A legal hold on globex before anything is logged.
    let r = server
        .authorized(client().post(format!("{}/v1/holds", server.url)))
        .json(&json!({"tenant": "globex", "reason": "litigation 2026-114"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let hold: Value = r.json().unwrap();
    let bad = server
        .authorized(client().post(format!("{}/v1/holds", server.url)))
        .json(&json!({"tenant": "globex"}))
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);

    let acked = server.post_events(&[old_event("r-acme", "acme"), old_event("r-globex", "globex")]);
    let index_of = |i: usize| acked["events"][i]["index"].as_u64().unwrap();
    let (acme_i, globex_i) = (index_of(0), index_of(1));
    assert_eq!(
        server.get_json(&format!("/v1/events/{acme_i}"))["content"],
        "sealed"
    );

    // acme expires: content shredded, index rows dropped, the expiry logged.
    wait_for("acme's content to expire", || {
        server.get_json(&format!("/v1/events/{acme_i}"))["content"] == "erased"
    });
    // The expiry record is logged after the keys go, and indexed after that.
    wait_for("the expiry to be logged and searchable", || {
        search_count(&server, "tenant=acme&action=retention.expiry") >= 1
    });
    // Rows the indexer writes after an expiry pass go at the next one.
    wait_for("acme's expired rows to leave the index", || {
        search_count(&server, "tenant=acme&action=model.invoke") == 0
    });
    // globex is on hold: still readable and searchable.
    assert_eq!(
        server.get_json(&format!("/v1/events/{globex_i}"))["content"],
        "sealed"
    );
    assert_eq!(
        search_count(&server, "tenant=globex&action=model.invoke"),
        1
    );
    assert_eq!(
        search_count(&server, "tenant=globex&action=legal_hold.placed"),
        1
    );

    // Releasing the hold lets expiry run.
    let id = hold["id"].as_str().unwrap();
    let r = server
        .authorized(client().delete(format!("{}/v1/holds/{id}", server.url)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_for("globex's content to expire", || {
        server.get_json(&format!("/v1/events/{globex_i}"))["content"] == "erased"
    });
    assert_eq!(
        search_count(&server, "tenant=globex&action=model.invoke"),
        0
    );

    // Nothing of the log changed: it verifies from the entries up.
    let size = server.get_json("/v1/info")["sequenced_size"]
        .as_u64()
        .unwrap();
    server.wait_size(size);
    let out = aiaudit(&["verify", "--url", &server.url, "--token", &server.token]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop();
    assert_eq!(
        crate::encryption::files_containing(&data, "RETENTION-MARKER"),
        Vec::<String>::new()
    );
}
