//! Access to the trail is on the trail, on the real binary: reads of an
//! event's content, searches, exports and reports by a token are appended
//! by the ledger as `trail.access` records (who, what, when; never the
//! content), merged per second; an event's readers are listed; reports
//! count them; nobody else can write such records; a clean stop logs the
//! last reads.

use crate::harness::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SECRET: &str = "prompt text that must never reach an access record";

fn access_records(server: &Server) -> Vec<Value> {
    let body = server.get_json("/v1/events?tenant=acme&action=trail.access&limit=1000");
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].clone())
        .collect()
}

/// Waits until the access records of `reader` hold every kind in `kinds`.
fn wait_for_kinds(server: &Server, reader: &str, kinds: &[&str]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let records: Vec<Value> = access_records(server)
            .into_iter()
            .filter(|r| r["actor"]["id"] == reader)
            .collect();
        if kinds
            .iter()
            .all(|k| records.iter().any(|r| r["attributes"]["kind"] == *k))
        {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "no access records of {kinds:?} by {reader}: {records:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn reads_searches_exports_and_reports_are_logged_as_access_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let mut events: Vec<Value> = (0..3)
        .map(|i| {
            let mut e = event(&format!("a{i}"));
            e["subject"] = json!("alice@example.com");
            e["input"] = json!({"content": SECRET});
            e
        })
        .collect();
    let mut other = event("g0");
    other["tenant"] = json!("globex");
    events.push(other);
    server.post_events(&events);
    server.wait_size(4);

    let auditor = create_token(&server, "acme", "auditor", &[]);
    let tokens = server.get_json("/v1/tokens");
    let id = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "auditor")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reader = format!("token:{id}");

    // Two reads of event 0, a search by a subject given in the clear, an
    // export and a report.
    for _ in 0..2 {
        let (status, e) = get_as(&server, &auditor, "/v1/events/0");
        assert_eq!(status, 200, "{e}");
        assert_eq!(e["event"]["input"]["content"], SECRET);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_as(
        &server,
        &auditor,
        "/v1/events?tenant=acme&subject=alice%40example.com",
    )
    .1["events"]
        .as_array()
        .map_or(0, Vec::len)
        < 3
    {
        assert!(Instant::now() < deadline, "never indexed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let export = client()
        .get(format!("{}/v1/export?tenant=acme", server.url))
        .bearer_auth(&auditor)
        .send()
        .unwrap();
    assert_eq!(export.status(), 200);
    let (status, _) = get_as(&server, &auditor, "/v1/reports/compliance?tenant=acme");
    assert_eq!(status, 200);

    let records = wait_for_kinds(
        &server,
        &reader,
        &["event.read", "search", "export", "report"],
    );
    let text = serde_json::to_string(&records).unwrap();
    assert!(
        !text.contains(SECRET),
        "content in an access record: {text}"
    );
    assert!(
        !text.contains("alice@example.com"),
        "a plain subject in an access record: {text}"
    );
    let reads: Vec<&Value> = records
        .iter()
        .filter(|r| r["attributes"]["kind"] == "event.read")
        .collect();
    // Both reads, whether merged into one record or logged a second apart.
    let requests: u64 = reads
        .iter()
        .map(|r| r["attributes"]["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(requests, 2, "{reads:?}");
    assert!(reads
        .iter()
        .all(|r| r["attributes"]["indexes"] == json!([0])));
    assert!(reads.iter().all(|r| r["attributes"]["role"] == "auditor"));
    assert!(reads
        .iter()
        .all(|r| r["source"]["name"] == "aiaudit-access"));
    let search = records
        .iter()
        .find(|r| r["attributes"]["kind"] == "search")
        .unwrap();
    // A plain subject is searched (and kept) as its tenant's HMAC tag.
    let asked = search["attributes"]["requested"][0]["subject"]
        .as_str()
        .unwrap();
    assert!(asked.starts_with("hmac-sha256:"), "{asked}");
    assert_eq!(search["attributes"]["indexes"], json!([0, 1, 2]));
    let export = records
        .iter()
        .find(|r| r["attributes"]["kind"] == "export")
        .unwrap();
    assert_eq!(
        export["attributes"]["indexes"],
        json!([0, 1, 2]),
        "acme's only"
    );

    // Who accessed event 0: the auditor, by reading it, searching and exporting.
    let who = server.get_json("/v1/events/0/access");
    assert_eq!(who["complete"], true);
    let kinds: Vec<&str> = who["accesses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["reader"] == reader.as_str())
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    for k in ["event.read", "search", "export"] {
        assert!(kinds.contains(&k), "{k} missing in {who}");
    }
    // Globex's event was never read by the auditor of acme.
    let globex_event = server.get_json("/v1/events/3/access");
    assert!(
        globex_event["accesses"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["reader"] != reader.as_str()),
        "{globex_event}"
    );
    let globex = create_token(&server, "globex", "auditor", &[]);
    assert_eq!(get_as(&server, &globex, "/v1/events/0/access").0, 403);
    assert_eq!(get_as(&server, &globex, "/v1/events/99/access").0, 404);

    // The report counts the auditor among the readers.
    let (_, report) = get_as(&server, &auditor, "/v1/reports/compliance?tenant=acme");
    let readers = report["access"]["readers"].as_array().unwrap();
    assert!(
        readers.iter().any(|r| r["reader"] == reader.as_str()),
        "{}",
        report["access"]
    );
    assert!(server.metric("aiaudit_access_records_total") >= Some(4.0));

    // Nobody else writes access records.
    for forged in [
        json!({"action": "trail.access"}),
        json!({"source": {"name": "aiaudit-access"}}),
    ] {
        let mut e = event("forged");
        for (k, v) in forged.as_object().unwrap() {
            e[k] = v.clone();
        }
        let r = server.post(
            "/v1/events",
            "application/json",
            serde_json::to_vec(&json!([e])).unwrap(),
        );
        // Reserved for the ledger: 403, naming the field.
        assert_eq!(r.status(), 403, "{forged}");
    }

    // A read just before a clean stop is logged by the stop.
    let (status, _) = get_as(&server, &auditor, "/v1/events/1");
    assert_eq!(status, 200);
    server.stop();
    let server = Server::start(&data);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let last_read = access_records(&server).into_iter().any(|r| {
            r["actor"]["id"] == reader.as_str()
                && r["attributes"]["kind"] == "event.read"
                && r["attributes"]["indexes"] == json!([1])
        });
        if last_read {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the read before the stop was not logged"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
