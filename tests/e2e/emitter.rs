//! The emitter side: `aiaudit emit`, the SDK's spool across a ledger outage,
//! and `aiaudit agent` surviving kill -9 while the ledger is down.

use crate::harness::*;
use aiaudit_emitter::Emitter;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Every event id in the log, checking that none appears twice.
fn unique_ids(server: &Server, size: u64) -> HashSet<String> {
    let mut ids = HashSet::new();
    for id in logged_ids(server, size) {
        assert!(ids.insert(id.clone()), "{id} logged twice");
    }
    ids
}

fn wait_sequenced(server: &Server, n: u64, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if server.get_json("/v1/info")["sequenced_size"]
            .as_u64()
            .unwrap()
            >= n
        {
            server.wait_size(n);
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the ledger never reached {n} events");
}

#[test]
fn emit_sends_a_file_and_refuses_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let file = dir.path().join("events.ndjson");
    let lines: String = (0..1200)
        .map(|i| serde_json::to_string(&event(&format!("emit-{i}"))).unwrap() + "\n")
        .collect();
    std::fs::write(&file, &lines).unwrap();
    let out = aiaudit(&[
        "emit",
        "--url",
        &server.url,
        "--token",
        &server.token,
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains("sent 1200 events"));
    server.wait_size(1200);
    assert_eq!(unique_ids(&server, 1200).len(), 1200);

    // One bad line: nothing is sent, and the line and field are named.
    let bad = format!(
        "{}{{\"id\":\"x\"}}\n",
        serde_json::to_string(&event("emit-new")).unwrap() + "\n"
    );
    std::fs::write(&file, bad).unwrap();
    let out = aiaudit(&[
        "emit",
        "--url",
        &server.url,
        "--token",
        &server.token,
        file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2: time: required field is missing"),
        "{err}"
    );
    // `aiaudit emit` has exited: once nothing is in flight the count is final.
    server.wait_idle();
    assert_eq!(server.get_json("/v1/info")["sequenced_size"], 1200);
}

#[test]
fn sdk_spools_through_an_outage_and_delivers_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let spool = dir.path().join("spool");
    let data = dir.path().join("data");
    let token = init_ledger(&data);
    // The ledger is down: events go to the spool, and stay there across a restart of the emitter.
    let emitter = Emitter::builder()
        .endpoint(&url)
        .token(&token)
        .spool_dir(&spool)
        .batch_size(100)
        .max_backoff(Duration::from_millis(200))
        .build()
        .unwrap();
    let t = Instant::now();
    for i in 0..3000 {
        emitter.emit(event(&format!("sdk-{i}"))).unwrap();
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "emit must not wait on the network"
    );
    emitter.flush().unwrap();
    assert!(emitter.pending_batches() >= 30);
    assert!(emitter.close(Duration::from_millis(100)).is_err());

    let server = Server::start_on(&data, port, &[]);
    let emitter = Emitter::builder()
        .endpoint(&url)
        .token(&token)
        .spool_dir(&spool)
        .build()
        .unwrap();
    emitter.emit(event("sdk-after")).unwrap();
    emitter.flush_delivered(Duration::from_secs(30)).unwrap();
    assert_eq!(emitter.pending_batches(), 0);
    emitter.close(Duration::from_secs(1)).unwrap();
    wait_sequenced(&server, 3001, Duration::from_secs(10));
    let ids = unique_ids(&server, 3001);
    assert!((0..3000).all(|i| ids.contains(&format!("sdk-{i}"))));
}

#[test]
fn agent_outage_with_kill_nine_delivers_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let ledger_url = format!("http://127.0.0.1:{port}");
    let spool = dir.path().join("agent-spool");
    let total = 10_000;
    let data = dir.path().join("data");
    let token = init_ledger(&data);
    let mut agent = start_agent(&ledger_url, &token, &spool);
    let c = client();
    for b in 0..total / 100 {
        if b == total / 200 {
            // Half way: the agent dies without warning and comes back.
            agent.kill9();
            agent = start_agent(&ledger_url, &token, &spool);
        }
        let batch: Vec<Value> = (0..100)
            .map(|i| event(&format!("agent-{}", b * 100 + i)))
            .collect();
        let r = agent
            .authorized(c.post(format!("{}/v1/events", agent.url)))
            .json(&batch)
            .send()
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
    }
    // Bad input is refused by the agent itself, naming the field.
    let r = agent
        .authorized(c.post(format!("{}/v1/events", agent.url)))
        .json(&json!([{"id": "x", "time": "2026-01-01T00:00:00Z"}]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let p: Value = r.json().unwrap();
    assert_eq!(p["errors"][0]["path"], "events[0].tenant");

    // Now the ledger comes up.
    let server = Server::start_on(&data, port, &[]);
    wait_sequenced(&server, total, Duration::from_secs(60));
    // Final once the agent has nothing pending and the ledger nothing in flight.
    agent.wait_agent_drained();
    server.wait_idle();
    let size = server.get_json("/v1/info")["sequenced_size"]
        .as_u64()
        .unwrap();
    assert_eq!(size, total, "every event exactly once");
    server.wait_size(total);
    let ids = unique_ids(&server, total);
    assert!((0..total).all(|i| ids.contains(&format!("agent-{i}"))));
    let status = agent.agent_status();
    assert_eq!(status["pending_batches"], 0);
    let out = aiaudit(&["verify", "--url", &server.url, "--token", &server.token]);
    assert!(out.status.success(), "{}", stdout(&out));
}

/// A request to the agent larger than the ledger's batch limit still lands
/// whole: the agent spools it in records the ledger takes, never one the
/// ledger would refuse for good (and set aside).
#[test]
fn an_agent_request_larger_than_the_ledgers_batch_limit_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &["--max-batch-events", "1000"]);
    let agent = start_agent(&server.url, &server.token, &dir.path().join("spool"));
    let batch: Vec<Value> = (0..2500).map(|i| event(&format!("big-{i}"))).collect();
    let r = agent
        .authorized(client().post(format!("{}/v1/events", agent.url)))
        .json(&batch)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
    wait_sequenced(&server, 2500, Duration::from_secs(60));
    let status = agent.get_json("/v1/agent/status");
    assert_eq!(status["rejected"], 0, "{status}");
    // Below the emitters' record size the ledger refuses to start.
    let out = std::process::Command::new(BIN)
        .args(["serve", "--max-batch-events", "999", "--data-dir"])
        .arg(dir.path().join("other"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_batch_events"));
}

/// A batch is all-or-nothing at the ledger: one event this token may not
/// write (another tenant's) must not take the other events of its batch
/// into `rejected.ndjson` with it, nor hold up what follows.
#[test]
fn a_refused_event_is_set_aside_alone_and_its_batch_mates_land() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let token = create_token(&server, "acme", "emitter", &[]);
    let spool = dir.path().join("spool");
    let emitter = Emitter::builder()
        .endpoint(&server.url)
        .token(&token)
        .spool_dir(&spool)
        .batch_size(50)
        .build()
        .unwrap();
    for i in 0..5 {
        let mut e = event(&format!("mate-{i}"));
        if i == 2 {
            e["tenant"] = json!("other");
        }
        emitter.emit(e).unwrap();
    }
    emitter.flush_delivered(Duration::from_secs(30)).unwrap();
    emitter.emit(event("after")).unwrap();
    emitter.flush_delivered(Duration::from_secs(30)).unwrap();
    let stats = emitter.stats();
    assert_eq!(stats.rejected.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(
        stats.delivered.load(std::sync::atomic::Ordering::Relaxed),
        5
    );
    assert!(emitter.last_error().is_none(), "{:?}", emitter.last_error());
    emitter.close(Duration::from_secs(1)).unwrap();

    let set_aside = std::fs::read_to_string(spool.join("rejected.ndjson")).unwrap();
    let lines: Vec<Value> = set_aside
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{set_aside}");
    assert!(
        lines[0]["refused"].as_str().unwrap().contains("403"),
        "{set_aside}"
    );
    assert_eq!(lines[1]["id"], "mate-2");
    let size = server.get_json("/v1/info")["sequenced_size"]
        .as_u64()
        .unwrap();
    server.wait_size(size);
    let ids = unique_ids(&server, size);
    for id in ["mate-0", "mate-1", "mate-3", "mate-4", "after"] {
        assert!(ids.contains(id), "{id} missing");
    }
    assert!(!ids.contains("mate-2"));
}
