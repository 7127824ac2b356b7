//! Forensic search (`GET /v1/events`, `aiaudit query`), the index rebuilt
//! from the log alone (`aiaudit reindex`), and export bundles that verify
//! offline (`aiaudit export`, `aiaudit verify --bundle`).
#![allow(clippy::manual_is_multiple_of)] // the filters read best as remainders

use crate::harness::*;
use serde_json::{json, Value};

pub fn forensic_event(i: usize) -> Value {
    let mut e = event(&format!("f{i}"));
    e["tenant"] = json!(if i % 3 == 0 { "globex" } else { "acme" });
    e["action"] = json!(["model.invoke", "tool.call", "agent.decision"][i % 3]);
    e["actor"]["id"] = json!(format!("agent-{}", i % 4));
    e["ai"] = json!({"gen_ai.provider.name": "anthropic",
                     "gen_ai.request.model": if i % 2 == 0 { "claude-x" } else { "claude-y" },
                     "gen_ai.conversation.id": format!("conv-{}", i % 5)});
    e["risk_level"] = json!(if i % 7 == 0 { "high" } else { "low" });
    e["time"] = json!(format!("2026-11-27T10:{:02}:00Z", i % 60));
    e["input"] = json!({"content": format!("prompt {i}")});
    if i % 10 == 0 {
        e["subject"] = json!("subject-zed");
    }
    e
}

pub fn search(server: &Server, token: &str, query: &str) -> (u16, Value) {
    get_as(server, token, &format!("/v1/events?{query}"))
}

/// Every index a query returns, following cursors to the end.
pub fn all_indexes(server: &Server, token: &str, query: &str) -> Vec<u64> {
    let mut out = Vec::new();
    // The first page also asks for the total, which must match the pages.
    let mut cursor = "&count=true".to_string();
    let mut total = None;
    loop {
        let (status, body) = search(server, token, &format!("{query}&limit=7{cursor}"));
        assert_eq!(status, 200, "{body}");
        if total.is_none() {
            total = Some(body["total"].as_u64().expect("a total with count=true"));
        } else {
            assert!(body.get("total").is_none(), "a total only when asked");
        }
        out.extend(
            body["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["index"].as_u64().unwrap()),
        );
        match body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => {
                assert_eq!(total, Some(out.len() as u64), "{query}");
                return out;
            }
        }
    }
}

pub fn wait_indexed(server: &Server, size: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.get_json("/v1/info")["index"]["indexed_size"]
        .as_u64()
        .unwrap()
        < size
    {
        assert!(
            std::time::Instant::now() < deadline,
            "index never caught up"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn search_filters_pages_and_rebuilds_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let events: Vec<Value> = (0..120).map(forensic_event).collect();
    server.post_events(&events);
    wait_indexed(&server, 120);
    let t = server.token.clone();

    // Filters against a scan of what was sent (index i holds event f{i}).
    let expect = |f: &dyn Fn(usize) -> bool| -> Vec<u64> {
        (0..120).rev().filter(|&i| f(i)).map(|i| i as u64).collect()
    };
    assert_eq!(
        all_indexes(&server, &t, "tenant=acme&action=tool.call"),
        expect(&|i| i % 3 == 1)
    );
    assert_eq!(
        all_indexes(&server, &t, "tenant=acme&model=claude-x&risk=high"),
        expect(&|i| i % 3 != 0 && i % 2 == 0 && i % 7 == 0)
    );
    assert_eq!(
        all_indexes(&server, &t, "conversation_id=conv-2&actor=agent-1"),
        expect(&|i| i % 5 == 2 && i % 4 == 1)
    );
    let mut asc = expect(&|i| i % 3 == 0 && (10..20).contains(&(i % 60)));
    asc.reverse();
    assert_eq!(
        all_indexes(
            &server,
            &t,
            "tenant=globex&from=2026-11-27T10:10:00Z&to=2026-11-27T10:20:00Z&order=asc"
        ),
        asc
    );
    // A subject is stored as the tenant's HMAC tag; its plain name finds
    // the same events as the tag does.
    let zed = expect(&|i| i % 10 == 0 && i % 3 != 0);
    assert!(!zed.is_empty());
    assert_eq!(
        all_indexes(&server, &t, "tenant=acme&subject=subject-zed"),
        zed
    );
    let tag: Value = server
        .authorized(client().post(format!("{}/v1/hash", server.url)))
        .json(&json!({"tenant": "acme", "value": "subject-zed"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let tag = tag["hmac"].as_str().unwrap().to_string();
    assert_eq!(
        all_indexes(&server, &t, &format!("tenant=acme&subject={tag}")),
        zed
    );
    // Full events come back, decrypted for a reader of the tenant.
    let (_, page) = search(&server, &t, "tenant=acme&limit=1");
    assert_eq!(page["events"][0]["event"]["input"]["content"], "prompt 119");
    assert_eq!(page["events"][0]["content"], "sealed");

    // Tenant isolation: an auditor of globex sees only globex, and is refused acme.
    let out = aiaudit(&[
        "token",
        "create",
        "--url",
        &server.url,
        "--token",
        &t,
        "--tenant",
        "globex",
        "--role",
        "auditor",
    ]);
    let globex = stdout(&out).trim().to_string();
    assert_eq!(
        all_indexes(&server, &globex, "action=model.invoke"),
        expect(&|i| i % 3 == 0)
    );
    assert_eq!(search(&server, &globex, "tenant=acme").0, 403);
    // Bad parameters are named.
    let (status, body) = search(&server, &t, "tenant=acme&modle=x");
    assert_eq!((status, body["parameter"].as_str()), (400, Some("modle")));
    assert_eq!(search(&server, &t, "from=yesterday").1["parameter"], "from");
    assert_eq!(search(&server, &t, "count=maybe").1["parameter"], "count");

    // The CLI: JSON lines, and a table.
    let out = aiaudit(&[
        "query",
        "--url",
        &server.url,
        "--token",
        &t,
        "--tenant",
        "acme",
        "--action",
        "tool.call",
        "--limit",
        "1000",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out).lines().count(), 40);
    let out = aiaudit(&[
        "query",
        "--url",
        &server.url,
        "--token",
        &t,
        "--trace-id",
        "0".repeat(32).as_str(),
    ]);
    assert_eq!(
        stdout(&out).lines().count(),
        1,
        "only the header: {}",
        stdout(&out)
    );

    // Rebuilt from the log alone, the index answers the same.
    let before = all_indexes(&server, &t, "tenant=acme&model=claude-y");
    server.stop();
    std::fs::remove_file(data.join("search.sqlite")).unwrap();
    let out = aiaudit(&["reindex", "--data-dir", data.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start(&data);
    assert_eq!(
        all_indexes(&server, &server.token.clone(), "tenant=acme&model=claude-y"),
        before
    );
}

#[test]
fn export_bundles_verify_offline_and_fail_when_changed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let vkey = server.get_json("/v1/info")["verifier_key"]
        .as_str()
        .unwrap()
        .to_string();
    let events: Vec<Value> = (0..60).map(forensic_event).collect();
    server.post_events(&events);
    // One subject erased before the export: its events travel without content.
    let r = server
        .authorized(client().post(format!("{}/v1/erase", server.url)))
        .json(&json!({"tenant": "acme", "subject": "subject-zed"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    server.wait_size(61);
    wait_indexed(&server, 61);

    let bundle = dir.path().join("acme.tar.gz");
    export_bundle(&server, "acme", &bundle);
    // The ledger is gone: the bundle verifies on its own, with the trusted key.
    server.stop();
    let report = verify_bundle(&bundle, &vkey);
    let acme = (0..60).filter(|i| i % 3 != 0).count() as u64 + 1; // + the erasure event
    assert_eq!(report["events"], acme, "{report}");
    let erased = (0..60).filter(|i| i % 3 != 0 && i % 10 == 0).count() as u64;
    assert_eq!(report["sealed_without_content"], erased, "{report}");
    assert_eq!(report["sealed_with_content"], acme - erased, "{report}");

    // Another key: refused. A changed byte: refused.
    let other = "other.example/log+00000000+AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let out = aiaudit(&[
        "verify",
        "--bundle",
        bundle.to_str().unwrap(),
        "--vkey",
        other,
    ]);
    assert!(!out.status.success());
    let mut bytes = std::fs::read(&bundle).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x01;
    let changed = dir.path().join("changed.tar.gz");
    std::fs::write(&changed, bytes).unwrap();
    let out = aiaudit(&[
        "verify",
        "--bundle",
        changed.to_str().unwrap(),
        "--vkey",
        &vkey,
    ]);
    assert!(!out.status.success(), "{}", stdout(&out));
}

/// `aiaudit query` (#21): a refused token prints no table header, the
/// columns stay aligned whatever the values' lengths, and `--source` and
/// `--subject` filter as the API does.
#[test]
fn query_prints_aligned_columns_and_filters_by_source_and_subject() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut long = event("q-long");
    long["actor"]["id"] = json!("an-actor-name-much-wider-than-sixteen-columns");
    long["source"]["name"] = json!("loan-assistant");
    long["subject"] = json!("customer-42");
    server.post_events(&[event("q-short"), long]);
    server.wait_size(2);
    // The index catches up with the log.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.get_json("/v1/info")["index"]["lag_events"] != 0 {
        assert!(std::time::Instant::now() < deadline, "index lag");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let query = |extra: &[&str]| {
        let mut args = vec!["query", "--url", &server.url, "--token", &server.token];
        args.extend_from_slice(extra);
        aiaudit(&args)
    };
    let out = query(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    let id_at = lines[0].find("ID").unwrap();
    for l in &lines[1..] {
        let id = l.split_whitespace().last().unwrap();
        assert_eq!(l.len() - id.len(), id_at, "misaligned:\n{table}");
    }
    // A plain subject is searched by its tag within a tenant.
    for filter in [
        &["--source", "loan-assistant"][..],
        &["--tenant", "acme", "--subject", "customer-42"][..],
    ] {
        let t = stdout(&query(filter));
        assert_eq!(t.lines().count(), 2, "{filter:?}: {t}");
        assert!(
            t.lines().nth(1).unwrap().ends_with("q-long"),
            "{filter:?}: {t}"
        );
    }
    let refused = aiaudit(&["query", "--url", &server.url, "--token", "aat_wrong"]);
    assert!(!refused.status.success());
    assert_eq!(stdout(&refused), "", "a header before the error");
}
