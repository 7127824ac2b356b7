//! Several `aiaudit serve` nodes over one PostgreSQL (docs/scaling.md):
//! load on all of them while the publishing node is killed, PostgreSQL
//! restarted mid-load, one event sent to two nodes at once, and an embedded
//! log migrated with the same tree. Each test runs a PostgreSQL server of its
//! own on loopback (Debian's package; CI installs it).

use crate::harness::*;
use aiaudit_testpg::TempPostgres;
use aiaudit_tlog::{open_note, Checkpoint, Verifier};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// The files nodes of one log share (keys and tokens), copied from the
/// first node's data directory (a search index file, which nodes on
/// PostgreSQL do not keep, would not be copied).
fn copy_identity(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_file() && !name.starts_with("search.sqlite") {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

/// Starts `n` nodes on the database; node 0 creates the log's identity.
fn start_nodes(pg: &TempPostgres, root: &Path, n: usize) -> Vec<Server> {
    let args = ["--storage", pg.url.as_str()];
    let first = root.join("node0");
    init_ledger_with(&first, &args);
    (0..n)
        .map(|i| {
            let dir = root.join(format!("node{i}"));
            if i > 0 {
                copy_identity(&first, &dir);
            }
            Server::start_with(&dir, &args)
        })
        .collect()
}

fn init_ledger_with(dir: &Path, args: &[&str]) {
    Server::start_with(dir, args).stop();
}

fn info(s: &Server) -> Option<Value> {
    let r = s
        .authorized(client().get(format!("{}/v1/info", s.url)))
        .timeout(Duration::from_secs(5))
        .send()
        .ok()?;
    r.status().is_success().then(|| r.json().ok()).flatten()
}

fn is_publisher(s: &Server) -> bool {
    info(s).is_some_and(|i| i["storage"]["publisher"] == true)
}

fn signed(server: &Server, verifier: &Verifier) -> Checkpoint {
    let note = server.get("/checkpoint").text().unwrap();
    Checkpoint::parse_body(open_note(&note, verifier).unwrap()).unwrap()
}

fn verifier(s: &Server) -> Verifier {
    Verifier::parse(s.get_json("/v1/info")["verifier_key"].as_str().unwrap()).unwrap()
}

/// Posts one batch; the acknowledged (id, index) pairs, or the status of a
/// failure (0: no answer).
fn post_batch(url: &str, token: &str, events: &[Value]) -> Result<Vec<(String, u64)>, u16> {
    let r = client()
        .post(format!("{url}/v1/events"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(20))
        .json(events)
        .send()
        .map_err(|_| 0u16)?;
    if r.status() != 200 {
        return Err(r.status().as_u16());
    }
    let body: Value = r.json().map_err(|_| 0u16)?;
    Ok(body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["index"].as_u64().unwrap(),
            )
        })
        .collect())
}

struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashMap<String, u64>>>,
    failures: Arc<Mutex<Vec<u16>>>,
    batches: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Clients posting batches of 50, each to its own node first and to the
    /// next one when that fails, resending a failed batch as an emitter does.
    fn start(urls: Vec<String>, token: String, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let failures: Arc<Mutex<Vec<u16>>> = Arc::default();
        let batches = Arc::new(AtomicUsize::new(0));
        let threads = (0..clients)
            .map(|c| {
                let (stop, acked, failures, batches) = (
                    stop.clone(),
                    acked.clone(),
                    failures.clone(),
                    batches.clone(),
                );
                let (urls, token) = (urls.clone(), token.clone());
                std::thread::spawn(move || {
                    let mut node = c % urls.len();
                    let mut b = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let events: Vec<Value> =
                            (0..50).map(|i| event(&format!("c{c}-b{b}-{i}"))).collect();
                        loop {
                            match post_batch(&urls[node], &token, &events) {
                                Ok(got) => {
                                    let mut a = acked.lock().unwrap();
                                    for (id, index) in got {
                                        if let Some(prev) = a.insert(id.clone(), index) {
                                            assert_eq!(
                                                prev, index,
                                                "{id} acknowledged at two indexes"
                                            );
                                        }
                                    }
                                    batches.fetch_add(1, Ordering::SeqCst);
                                    break;
                                }
                                Err(status) => {
                                    failures.lock().unwrap().push(status);
                                    node = (node + 1) % urls.len();
                                    std::thread::sleep(Duration::from_millis(50));
                                    if stop.load(Ordering::SeqCst) {
                                        return;
                                    }
                                }
                            }
                        }
                        b += 1;
                    }
                })
            })
            .collect();
        Load {
            stop,
            acked,
            failures,
            batches,
            threads,
        }
    }

    /// Waits until `n` batches were acknowledged in all.
    fn wait_batches(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.batches.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < deadline, "the load stalled");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(self) -> (HashMap<String, u64>, Vec<u16>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        let acked = std::mem::take(&mut *self.acked.lock().unwrap());
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        (acked, failures)
    }
}

/// Every acknowledged event is in the log once, at its index; no id is
/// logged twice; every checkpoint seen is consistent with the final one;
/// and `aiaudit verify` passes.
fn check_log(server: &Server, acked: &HashMap<String, u64>, seen: &[Checkpoint]) -> u64 {
    let v = verifier(server);
    let size = server.get_json("/v1/info")["sequenced_size"]
        .as_u64()
        .unwrap();
    server.wait_size(size);
    let last = signed(server, &v);
    let ids = logged_ids(server, last.size);
    let mut at: HashMap<&str, u64> = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        assert!(at.insert(id, i as u64).is_none(), "{id} logged twice");
    }
    for (id, index) in acked {
        assert_eq!(
            at.get(id.as_str()),
            Some(index),
            "acknowledged {id} missing"
        );
    }
    for old in seen {
        if old.size == 0 || old.size == last.size {
            if old.size == last.size {
                assert_eq!(old.root, last.root, "two roots at size {}", old.size);
            }
            continue;
        }
        assert!(old.size < last.size, "the log shrank");
        assert_consistent(server, old, &last);
    }
    let out = aiaudit(&[
        "verify",
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--vkey",
        &v.to_vkey(),
    ]);
    assert!(out.status.success(), "verify: {}", stdout(&out));
    last.size
}

/// Collects every checkpoint each node serves while the test runs.
fn watch_checkpoints(
    urls: Vec<String>,
    v: Verifier,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Checkpoint>> {
    std::thread::spawn(move || {
        let mut seen: Vec<Checkpoint> = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            for url in &urls {
                let Ok(r) = client()
                    .get(format!("{url}/checkpoint"))
                    .timeout(Duration::from_secs(2))
                    .send()
                else {
                    continue;
                };
                let Ok(note) = r.text() else { continue };
                if let Ok(body) = open_note(&note, &v) {
                    let cp = Checkpoint::parse_body(body).unwrap();
                    if !seen.iter().any(|s| s.size == cp.size && s.root == cp.root) {
                        seen.push(cp);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        seen
    })
}

#[test]
fn three_nodes_survive_the_publisher_being_killed() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_nodes(&pg, root.path(), 3);
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let token = nodes[0].token.clone();
    let v = verifier(&nodes[0]);
    // One node wins the election.
    let publisher = wait_publisher(&nodes);
    let stop_watch = Arc::new(AtomicBool::new(false));
    let watcher = watch_checkpoints(urls.clone(), v.clone(), stop_watch.clone());
    let load = Load::start(urls.clone(), token.clone(), 6);
    load.wait_batches(60);

    // kill -9 the publisher mid-load. Failover: until a surviving node is
    // the publisher and serves a checkpoint larger than any served before.
    let served_before = nodes
        .iter()
        .filter_map(info)
        .map(|i| i["size"].as_u64().unwrap())
        .max()
        .unwrap();
    let killed = nodes.remove(publisher);
    killed.kill9();
    let killed_at = Instant::now();
    let acked_at_kill = load.acked.lock().unwrap().len();
    let failover = loop {
        let taken_over = nodes.iter().filter_map(info).any(|i| {
            i["storage"]["publisher"] == true && i["size"].as_u64().unwrap() > served_before
        });
        if taken_over {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "no node took over publishing"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("postgres: failover after kill -9 of the publisher took {failover:?}");
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?} (target: under 5 s)"
    );
    // Load goes on through the survivors.
    load.wait_batches(load.batches.load(Ordering::SeqCst) + 40);
    let (acked, failures) = load.finish();
    stop_watch.store(true, Ordering::SeqCst);
    let seen = watcher.join().unwrap();
    assert!(acked.len() > acked_at_kill, "load continued after the kill");
    let size = check_log(&nodes[0], &acked, &seen);
    // Exactly one publisher among the survivors, in the metrics too.
    let publishers: u64 = nodes
        .iter()
        .map(|n| {
            let text = n.get("/metrics").text().unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix("aiaudit_publisher "))
                .unwrap()
                .trim()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(publishers, 1);
    // Every surviving node serves the same tree.
    for n in &nodes {
        n.wait_size(size);
        assert!(signed(n, &v).size >= size);
    }
    eprintln!(
        "postgres: {} acknowledged events, {} checkpoints checked, {} failed posts retried elsewhere",
        acked.len(),
        seen.len(),
        failures.len()
    );
}

#[test]
fn postgres_restart_mid_load_loses_nothing_acknowledged() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let nodes = start_nodes(&pg, root.path(), 2);
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let load = Load::start(urls, nodes[0].token.clone(), 4);
    load.wait_batches(20);
    let term_before = term(&nodes[0]);
    pg.stop();
    // While it is down: not ready, and ingest answers 503 with a problem.
    let down = Instant::now();
    wait_readyz(&nodes[0], 503, down, Duration::from_secs(20));
    let r = nodes[0].post(
        "/v1/events",
        "application/json",
        serde_json::to_vec(&[event("while-down")]).unwrap(),
    );
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    // Down for longer than the lease: the publisher, unable to renew,
    // stops publishing by itself, and nobody publishes.
    loop {
        if !nodes.iter().any(is_publisher) {
            break;
        }
        assert!(
            down.elapsed() < Duration::from_secs(20),
            "a node kept publishing without its database"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    pg.start_again();
    let up = Instant::now();
    let after_restart = load.batches.load(Ordering::SeqCst);
    // The nodes recover on their own and take load again.
    load.wait_batches(after_restart + 20);
    // Ready again by itself, once a node publishes and indexes again.
    wait_readyz(&nodes[0], 200, up, Duration::from_secs(30));
    let (acked, failures) = load.finish();
    assert!(
        failures.iter().all(|&s| s == 503 || s == 0),
        "only 503 (or a cut connection) while PostgreSQL restarts: {failures:?}"
    );
    // Publishing resumed by itself, under a new term.
    let v = verifier(&nodes[0]);
    let last = covering(&Mutex::new(acked.clone()));
    let took = wait_checkpoint(&nodes[1], &v, last, up, Duration::from_secs(30));
    eprintln!("postgres: down for {:?}; after it came back, a checkpoint covering every acknowledged event after {took:?}", up - down);
    assert!(term(&nodes[1]) > term_before);
    check_log(&nodes[1], &acked, &[]);
    eprintln!(
        "postgres restart: {} acknowledged, {} posts refused during the restart",
        acked.len(),
        failures.len()
    );
}

#[test]
fn one_event_sent_to_two_nodes_at_once_lands_once() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let nodes = start_nodes(&pg, root.path(), 2);
    let token = nodes[0].token.clone();
    for round in 0..20 {
        let events = vec![event(&format!("twice-{round}"))];
        let barrier = Arc::new(Barrier::new(2));
        let answers: Vec<_> = nodes
            .iter()
            .map(|n| {
                let (url, token, events, barrier) = (
                    n.url.clone(),
                    token.clone(),
                    events.clone(),
                    barrier.clone(),
                );
                std::thread::spawn(move || {
                    barrier.wait();
                    post_batch(&url, &token, &events).unwrap()
                })
            })
            .collect();
        let answers: Vec<_> = answers.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(answers[0], answers[1], "both nodes name the same index");
    }
    nodes[1].wait_size(20);
    let size = nodes[1].get_json("/v1/info")["sequenced_size"]
        .as_u64()
        .unwrap();
    assert_eq!(size, 20, "20 distinct events, each logged once");
    let ids = logged_ids(&nodes[1], 20);
    for round in 0..20 {
        let id = format!("twice-{round}");
        assert_eq!(ids.iter().filter(|i| **i == id).count(), 1, "{id}");
    }
}

#[test]
fn migrate_moves_an_embedded_log_with_the_same_tree() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fs_node = Server::start_with(&data, NO_ACCESS_LOG);
    for b in 0..3 {
        let mut events: Vec<Value> = (0..100).map(|i| event(&format!("m{b}-{i}"))).collect();
        // One event per batch with a member stored as a blob.
        events[7]["input"] = json!({"content": incompressible(70_000 + b)});
        fs_node.post_events(&events);
    }
    fs_node.wait_size(300);
    let before = fs_node.get_json("/v1/info");
    let large = fs_node.get_json("/v1/events/107");
    fs_node.stop();

    let out = aiaudit(&["migrate", "--from", data.to_str().unwrap(), "--to", &pg.url]);
    assert!(
        out.status.success(),
        "migrate: {}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    // Running it again finds the work done and changes nothing.
    let again = aiaudit(&["migrate", "--from", data.to_str().unwrap(), "--to", &pg.url]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let node = Server::start_with(&data, &["--storage", &pg.url, "--access-log", "false"]);
    let after = node.get_json("/v1/info");
    assert_eq!(after["size"], before["size"]);
    assert_eq!(after["root"], before["root"], "same root at the same size");
    assert_eq!(after["storage"]["backend"], "postgres");
    // The migrated log keeps growing from there, and content still opens.
    node.post_events(&[event("after-migration")]);
    node.wait_size(301);
    let e = node.get_json_when_ready("/v1/events/0");
    assert_eq!(e["event"]["id"], json!("m0-0"), "{e}");
    // Blobs came along, checked on the way: large content still reads whole.
    assert_eq!(node.get_json("/v1/events/107")["event"], large["event"]);
    assert!(stdout(&out).contains("blobs: 3 copied"), "{}", stdout(&out));
    // The upgrade gate came along: the nodes keep writing entry format 3
    // entries (gate 4; none of these events names a subject, so there is no
    // subject key family to refuse).
    let e = node.get_json_when_ready("/v1/events/300");
    assert_eq!(e["entry_version"], 3, "{e}");
    assert!(stdout(&out).contains("entry format: 5"), "{}", stdout(&out));
}

#[test]
fn nodes_share_one_keyring_and_an_erasure_reaches_every_node() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let nodes = start_nodes(&pg, root.path(), 2);
    let token = nodes[0].token.clone();
    let sealed = |id: &str, subject: &str| {
        let mut e = event(id);
        e["subject"] = json!(subject);
        e["input"] = json!({"content": format!("prompt of {id}")});
        e
    };
    // Each node seals events of its own, alice's on both.
    post_batch(
        &nodes[0].url,
        &token,
        &[sealed("k0", "alice"), sealed("k1", "bob")],
    )
    .unwrap();
    post_batch(
        &nodes[1].url,
        &token,
        &[sealed("k2", "alice"), sealed("k3", "carol")],
    )
    .unwrap();
    for n in &nodes {
        n.wait_size(4);
    }
    let mut alice_tags = Vec::new();
    for n in &nodes {
        for i in 0..4 {
            let e = n.get_json_when_ready(&format!("/v1/events/{i}"));
            assert_eq!(e["content"], "sealed", "event {i} on {}: {e}", n.url);
            let id = e["event"]["id"].as_str().unwrap().to_string();
            assert_eq!(e["event"]["input"]["content"], format!("prompt of {id}"));
            if id == "k0" || id == "k2" {
                alice_tags.push(e["event"]["subject"].clone());
            }
        }
    }
    alice_tags.dedup();
    assert_eq!(
        alice_tags.len(),
        1,
        "one salt for the tenant: {alice_tags:?}"
    );
    for (i, n) in nodes.iter().enumerate() {
        assert!(
            !root.path().join(format!("node{i}/keyring")).exists(),
            "no keyring file on {}",
            n.url
        );
    }

    // Erased through node 1: node 0 stops opening alice's events by itself.
    let r = nodes[1]
        .authorized(client().post(format!("{}/v1/erase", nodes[1].url)))
        .json(&json!({"tenant": "acme", "subject": "alice"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
    let report: Value = r.json().unwrap();
    assert_eq!(report["keys_destroyed"], 1, "{report}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let contents: Vec<Value> = (0..4)
            .map(|i| nodes[0].get_json(&format!("/v1/events/{i}"))["content"].clone())
            .collect();
        let erased: Vec<bool> = contents.iter().map(|c| c == "erased").collect();
        if erased == [true, false, true, false] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 0 still opens alice's events: {contents:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // New events for alice get a new key on every node; the others still open.
    // (Its index is the one the ledger gave: the nodes log their reads too.)
    let k4 = post_batch(&nodes[0].url, &token, &[sealed("k4", "alice")]).unwrap()[0].1;
    nodes[1].wait_size(k4 + 1);
    let e = nodes[1].get_json_when_ready(&format!("/v1/events/{k4}"));
    assert_eq!(e["event"]["id"], "k4", "{e}");
    assert_eq!(e["content"], "sealed", "{e}");
    assert_eq!(nodes[1].get_json("/v1/events/3")["content"], "sealed");
}

/// The ids of the events a search returns, on every page.
fn found_ids(server: &Server, token: &str, query: &str, ids: &HashMap<u64, String>) -> Vec<String> {
    crate::search::all_indexes(server, token, query)
        .iter()
        .map(|i| ids.get(i).cloned().unwrap_or_else(|| format!("#{i}")))
        .collect()
}

/// Waits until `server` has indexed everything sequenced so far.
fn wait_all_indexed(server: &Server) {
    let size = info(server).unwrap()["sequenced_size"].as_u64().unwrap();
    crate::search::wait_indexed(server, size);
}

/// The ids of events `f0..f{upto}` that `f` picks, newest first.
fn expected(ids: &HashMap<u64, String>, f: &dyn Fn(usize) -> bool, upto: usize) -> Vec<String> {
    let mut found: Vec<(u64, String)> = ids
        .iter()
        .filter(|(_, id)| {
            id.strip_prefix('f')
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| n < upto && f(n))
        })
        .map(|(i, id)| (*i, id.clone()))
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.into_iter().map(|(_, id)| id).collect()
}

#[test]
fn every_node_searches_one_index_in_postgres() {
    use crate::search::forensic_event;
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_nodes(&pg, root.path(), 2);
    let token = nodes[0].token.clone();
    // Events f0..f119, half through each node.
    let mut ids: HashMap<u64, String> = HashMap::new();
    for (n, range) in [(0, 0..60), (1, 60..120)] {
        let events: Vec<Value> = range.map(forensic_event).collect();
        for chunk in events.chunks(20) {
            let got = post_batch(&nodes[n].url, &token, chunk).unwrap();
            ids.extend(got.into_iter().map(|(id, i)| (i, id)));
        }
    }
    for n in &nodes {
        wait_all_indexed(n);
    }
    // The same complete answers from both nodes, newest first.
    let queries: [(&str, &dyn Fn(usize) -> bool); 4] = [
        ("tenant=acme&action=tool.call", &|i| i % 3 == 1),
        ("tenant=acme&model=claude-x&risk=high", &|i| {
            i % 3 != 0 && i % 2 == 0 && i % 7 == 0
        }),
        ("conversation_id=conv-2&actor=agent-1", &|i| {
            i % 5 == 2 && i % 4 == 1
        }),
        ("tenant=globex&actor=agent-2", &|i| i % 3 == 0 && i % 4 == 2),
    ];
    for (query, f) in &queries {
        let want = expected(&ids, *f, 120);
        assert!(!want.is_empty(), "{query}");
        for n in &nodes {
            assert_eq!(found_ids(n, &token, query, &ids), want, "{query}");
        }
    }
    let asc = "tenant=globex&from=2026-11-27T10:10:00Z&to=2026-11-27T10:20:00Z&order=asc";
    let mut want = expected(&ids, &|i| i % 3 == 0 && (10..20).contains(&(i % 60)), 120);
    want.reverse();
    for n in &nodes {
        assert_eq!(found_ids(n, &token, asc, &ids), want);
    }
    // No node keeps an index of its own.
    for i in 0..2 {
        let file = root.path().join(format!("node{i}/search.sqlite"));
        assert!(!file.exists(), "{} exists", file.display());
    }

    // kill -9 the publisher: the survivor takes over indexing from where
    // the index ends, and new events become searchable through it.
    let publisher = wait_publisher(&nodes);
    nodes.remove(publisher).kill9();
    let survivor = &nodes[0];
    let events: Vec<Value> = (120..150).map(forensic_event).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        match post_batch(&survivor.url, &token, &events) {
            Ok(got) => break got,
            Err(status) => assert!(Instant::now() < deadline, "posting failed: {status}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    ids.extend(got.into_iter().map(|(id, i)| (i, id)));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !is_publisher(survivor) {
        assert!(Instant::now() < deadline, "the survivor never took over");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_all_indexed(survivor);
    for (query, f) in &queries {
        let want = expected(&ids, *f, 150);
        let new = |id: &String| id[1..].parse::<usize>().is_ok_and(|n| n >= 120);
        assert!(want.iter().any(new), "{query}");
        assert_eq!(found_ids(survivor, &token, query, &ids), want, "{query}");
    }
    assert!(!root.path().join("node0/search.sqlite").exists());
    assert!(!root.path().join("node1/search.sqlite").exists());
}

/// A CA and a certificate for 127.0.0.1 it issued, as PEM: (ca, cert, key).
fn test_ca() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "aiaudit test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// Runs `aiaudit serve` expected to fail at start; its stderr.
fn serve_fails(dir: &Path, args: &[&str]) -> String {
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success());
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return err;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve {args:?} did not fail");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn nodes_reach_postgres_over_verified_tls_only() {
    let (ca, cert, key) = test_ca();
    let Some(pg) = TempPostgres::start_with_tls(&cert, &key) else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let ca_file = root.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let tls_url = format!("{}?sslmode=require", pg.url);

    // The database refuses plain connections (pg_hba: hostssl only).
    let plain = serve_fails(&root.path().join("plain"), &["--storage", &pg.url]);
    assert!(plain.contains("PostgreSQL"), "{plain}");
    // A certificate from another CA is refused by the node.
    let (other_ca, _, _) = test_ca();
    let other = root.path().join("other-ca.pem");
    std::fs::write(&other, other_ca).unwrap();
    let wrong = serve_fails(
        &root.path().join("wrong"),
        &[
            "--storage",
            &tls_url,
            "--storage-ca",
            other.to_str().unwrap(),
        ],
    );
    assert!(wrong.to_lowercase().contains("certificate"), "{wrong}");

    let node = Server::start_with(
        &root.path().join("node"),
        &[
            "--storage",
            &tls_url,
            "--storage-ca",
            ca_file.to_str().unwrap(),
        ],
    );
    node.post_events(&[event("over-tls")]);
    node.wait_size(1);
    assert_eq!(node.get_json("/v1/info")["storage"]["backend"], "postgres");

    // validate reads the database without changing it, and sees TLS.
    let out = Command::new(BIN)
        .args(["validate", "--json"])
        .env("AIAUDIT_DATA_DIR", root.path().join("node"))
        .env("AIAUDIT_STORAGE", &tls_url)
        .env("AIAUDIT_STORAGE_CA", &ca_file)
        .output()
        .unwrap();
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .unwrap_or_else(|| panic!("no {name} check: {report}"))
            .clone()
    };
    assert_eq!(check("postgresql")["status"], "ok", "{report}");
    assert!(check("postgresql")["detail"]
        .as_str()
        .unwrap()
        .contains("1 entries"));
    assert_eq!(check("postgresql tls")["status"], "ok");
    assert!(check("postgresql tls")["detail"]
        .as_str()
        .unwrap()
        .contains("encrypted"));
    assert_eq!(
        check("postgresql schema")["detail"],
        format!("version {}", aiaudit_store::PG_SCHEMA_VERSION)
    );
}

#[test]
fn a_legal_hold_placed_on_one_node_holds_on_every_node() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let nodes = start_nodes(&pg, root.path(), 2);
    let ids = |n: &Server| -> Vec<String> {
        n.get_json("/v1/holds")["holds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap().to_string())
            .collect()
    };
    let placed: Value = nodes[1]
        .authorized(client().post(format!("{}/v1/holds", nodes[1].url)))
        .json(&json!({"tenant": "acme", "reason": "litigation 2026-17"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = placed["id"].as_str().unwrap().to_string();
    // Whichever node runs retention reads the same holds.
    assert_eq!(ids(&nodes[0]), vec![id.clone()]);
    assert_eq!(ids(&nodes[1]), vec![id.clone()]);
    for (i, _) in nodes.iter().enumerate() {
        assert!(!root.path().join(format!("node{i}/holds.json")).exists());
    }
    let r = nodes[0]
        .authorized(client().delete(format!("{}/v1/holds/{id}", nodes[0].url)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(ids(&nodes[1]).is_empty());
    let again = nodes[1]
        .authorized(client().delete(format!("{}/v1/holds/{id}", nodes[1].url)))
        .send()
        .unwrap();
    assert_eq!(again.status(), 404, "released once, by either node");
}

#[test]
fn a_token_made_on_one_node_works_on_every_node_and_a_revocation_reaches_them() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let nodes = start_nodes(&pg, root.path(), 2);
    let made: Value = nodes[0]
        .authorized(client().post(format!("{}/v1/tokens", nodes[0].url)))
        .json(&json!({"role": "emitter", "tenants": ["acme"]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let (id, secret) = (
        made["id"].as_str().unwrap().to_string(),
        made["token"].as_str().unwrap().to_string(),
    );
    // At once on the other node: an unknown token makes it re-read the registry.
    let ack = post_batch(&nodes[1].url, &secret, &[event("by-new-token")]).unwrap();
    assert_eq!(ack.len(), 1);
    for (i, _) in nodes.iter().enumerate() {
        assert!(!root.path().join(format!("node{i}/tokens.json")).exists());
    }
    let r = nodes[1]
        .authorized(client().delete(format!("{}/v1/tokens/{id}", nodes[1].url)))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match post_batch(&nodes[0].url, &secret, &[event("after-revocation")]) {
            Err(401) => break,
            other => assert!(
                Instant::now() < deadline,
                "node 0 still takes a revoked token: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_emitter_registered_on_one_node_signs_for_every_node() {
    use crate::signatures::{keygen, post_signed, register, signature_of};
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let nodes = start_nodes(&pg, root.path(), 2);
    let (vkey, key_file) = keygen(root.path(), "edge-gw-9");
    register(&nodes[0], "edge-gw-9", &vkey);
    let signer =
        aiaudit_tlog::Signer::parse(std::fs::read_to_string(&key_file).unwrap().trim()).unwrap();
    // Node 1 never saw the registration: it finds the key in the database.
    let events = vec![event("signed-on-1")];
    let r = post_signed(
        &nodes[1],
        &events,
        "edge-gw-9",
        &signature_of(&signer, &events),
    );
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
    // A wrong signature is still refused there.
    let other = vec![event("forged")];
    let r = post_signed(
        &nodes[1],
        &other,
        "edge-gw-9",
        &signature_of(&signer, &events),
    );
    assert!(r.status().is_client_error(), "{}", r.status());
    let listed = nodes[1].get_json("/v1/emitters");
    assert_eq!(listed["emitters"][0]["name"], "edge-gw-9", "{listed}");
    for (i, _) in nodes.iter().enumerate() {
        assert!(!root.path().join(format!("node{i}/emitters.json")).exists());
    }
}

/// A loopback TCP proxy that can stop forwarding without closing anything:
/// a link that went silently dead (a partition, a dropped route). Bytes
/// already read wait in the proxy until it forwards again.
struct StallProxy {
    port: u16,
    stalled: Arc<AtomicBool>,
}

impl StallProxy {
    fn start(upstream: u16) -> StallProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = Arc::new(AtomicBool::new(false));
        let s = stalled.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let s = s.clone();
                    std::thread::spawn(move || forward(from, to, &s));
                }
            }
        });
        StallProxy { port, stalled }
    }

    fn stall(&self, on: bool) {
        self.stalled.store(on, Ordering::SeqCst);
    }
}

fn forward(mut from: std::net::TcpStream, mut to: std::net::TcpStream, stalled: &AtomicBool) {
    use std::io::{Read, Write};
    let mut buf = [0u8; 16 * 1024];
    let hold = || {
        while stalled.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    loop {
        hold();
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        hold();
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

fn lease(s: &Server) -> Option<Value> {
    info(s).map(|i| i["storage"]["lease"].clone())
}

/// Waits until `node`'s `/readyz` answers `status`, at most `limit` after `since`.
fn wait_readyz(node: &Server, status: u16, since: Instant, limit: Duration) {
    loop {
        let ready = client().get(format!("{}/readyz", node.url)).send().unwrap();
        if ready.status() == status {
            return;
        }
        assert!(
            since.elapsed() < limit,
            "/readyz did not answer {status} within {limit:?}: {}",
            ready.text().unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The publisher lease's term as `s` last read it.
fn term(s: &Server) -> u64 {
    lease(s).unwrap()["term"].as_u64().unwrap()
}

/// Waits until one of `nodes` publishes; its position.
fn wait_publisher(nodes: &[Server]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(i) = nodes.iter().position(is_publisher) {
            return i;
        }
        assert!(Instant::now() < deadline, "no node became the publisher");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `node` serves a signed checkpoint of at least `size`
/// entries; returns how long that took from `since`.
fn wait_checkpoint(
    node: &Server,
    v: &Verifier,
    size: u64,
    since: Instant,
    limit: Duration,
) -> Duration {
    loop {
        let served = client()
            .get(format!("{}/checkpoint", node.url))
            .timeout(Duration::from_secs(2))
            .send()
            .ok()
            .and_then(|r| r.text().ok())
            .and_then(|note| {
                open_note(&note, v)
                    .ok()
                    .map(|b| Checkpoint::parse_body(b).unwrap())
            });
        if served.is_some_and(|cp| cp.size >= size) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "no checkpoint of {size} entries within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The highest index acknowledged so far, plus one: a checkpoint of this
/// size covers every acknowledged event.
fn covering(acked: &Mutex<HashMap<String, u64>>) -> u64 {
    acked.lock().unwrap().values().max().map_or(0, |i| i + 1)
}

/// Two nodes; the publisher's link to PostgreSQL goes silently dead (a
/// proxy that stops forwarding, nothing closed, so the database keeps its
/// session). The other node takes the lease when it expires and publishes
/// checkpoints covering every acknowledged event within 10 s; when the
/// link returns, the former publisher writes nothing (it stepped down by
/// itself, and the database's fence would refuse it), and nothing
/// acknowledged is lost.
#[test]
fn a_publisher_cut_off_silently_is_replaced_and_fenced() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let port: u16 = pg
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let proxy = StallProxy::start(port);
    let proxied = pg
        .url
        .replace(&format!(":{port}/"), &format!(":{}/", proxy.port));
    init_ledger_with(&root.path().join("a"), &["--storage", &pg.url]);
    copy_identity(&root.path().join("a"), &root.path().join("b"));
    let a = Server::start_with(&root.path().join("a"), &["--storage", &proxied]);
    wait_publisher(std::slice::from_ref(&a));
    let b = Server::start_with(&root.path().join("b"), &["--storage", &pg.url]);
    let v = verifier(&a);
    let term_a = term(&a);
    let stop_watch = Arc::new(AtomicBool::new(false));
    let watcher = watch_checkpoints(
        vec![a.url.clone(), b.url.clone()],
        v.clone(),
        stop_watch.clone(),
    );
    let load = Load::start(vec![a.url.clone(), b.url.clone()], a.token.clone(), 4);
    load.wait_batches(20);

    proxy.stall(true);
    let cut = Instant::now();
    let acked_at_cut = covering(&load.acked);
    // The other node takes over and publishes past everything acknowledged.
    let took = wait_checkpoint(&b, &v, acked_at_cut, cut, Duration::from_secs(10));
    eprintln!("postgres: publisher's link silently dead: checkpoint covering every acknowledged event after {took:?}");
    assert!(is_publisher(&b));
    let term_b = term(&b);
    assert!(term_b > term_a, "the takeover moved the term on");
    // Load goes on through the node that can reach the database.
    load.wait_batches(load.batches.load(Ordering::SeqCst) + 20);
    let now_acked = covering(&load.acked);
    wait_checkpoint(&b, &v, now_acked, Instant::now(), Duration::from_secs(10));

    // The link returns: the former publisher reads the new term and stays
    // a follower; the tree and checkpoint rows carry the new term only.
    proxy.stall(false);
    let back = Instant::now();
    loop {
        let l = lease(&a);
        if l.is_some_and(|l| l["term"].as_u64() == Some(term_b)) && !is_publisher(&a) {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "the former publisher never caught up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (acked, _) = load.finish();
    let last = covering(&Mutex::new(acked.clone()));
    wait_checkpoint(&a, &v, last, Instant::now(), Duration::from_secs(10));
    let written_by: u64 = pg
        .psql("SELECT term FROM aiaudit_tree")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(written_by, term_b, "only the new term wrote the tree");
    stop_watch.store(true, Ordering::SeqCst);
    let seen = watcher.join().unwrap();
    check_log(&a, &acked, &seen);
    check_log(&b, &acked, &seen);
    assert!(!is_publisher(&a) && is_publisher(&b));
}

/// The publisher frozen (SIGSTOP) for longer than its lease: the other
/// node takes over within 10 s; resumed, the former publisher knows its
/// lease ran out by its own clock and does not write; nothing is lost.
#[test]
fn a_frozen_publisher_is_replaced_and_steps_down_when_it_wakes() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let nodes = start_nodes(&pg, root.path(), 2);
    let p = wait_publisher(&nodes);
    let (frozen, other) = (&nodes[p], &nodes[1 - p]);
    let v = verifier(other);
    let term_before = term(other);
    let load = Load::start(vec![other.url.clone()], other.token.clone(), 3);
    load.wait_batches(20);
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &frozen.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    };
    signal("-STOP");
    let stopped = Instant::now();
    let acked_at_stop = covering(&load.acked);
    let took = wait_checkpoint(other, &v, acked_at_stop, stopped, Duration::from_secs(10));
    eprintln!("postgres: publisher frozen (SIGSTOP): checkpoint covering every acknowledged event after {took:?}");
    // That checkpoint may be the frozen node's last one (it had covered
    // everything before the stop): the takeover is the term moving on.
    let mut term_after = term(other);
    while term_after <= term_before {
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "no takeover within 10 s of the publisher freezing"
        );
        std::thread::sleep(Duration::from_millis(50));
        term_after = term(other);
    }
    // Frozen for longer than the lease, with the log growing meanwhile.
    load.wait_batches(load.batches.load(Ordering::SeqCst) + 20);
    while stopped.elapsed() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(20));
    }
    signal("-CONT");
    let resumed = Instant::now();
    loop {
        if lease(frozen).is_some_and(|l| l["term"].as_u64() == Some(term_after)) {
            break;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(30),
            "the resumed node never caught up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!is_publisher(frozen), "the resumed node must not publish");
    let (acked, _) = load.finish();
    let written_by: u64 = pg
        .psql("SELECT term FROM aiaudit_tree")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(written_by, term_after, "only the new term wrote the tree");
    check_log(frozen, &acked, &[]);
    check_log(other, &acked, &[]);
}

/// A clean stop (SIGTERM) of the publisher hands the lease over at once:
/// the blue-green path, no waiting for the lease to expire.
#[test]
fn a_clean_stop_hands_the_lease_over_at_once() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    // A long lease, so a hand-over that waited for it would show.
    let args = ["--storage", pg.url.as_str(), "--publisher-lease", "60s"];
    init_ledger_with(&root.path().join("a"), &args);
    copy_identity(&root.path().join("a"), &root.path().join("b"));
    let a = Server::start_with(&root.path().join("a"), &args);
    wait_publisher(std::slice::from_ref(&a));
    let b = Server::start_with(&root.path().join("b"), &args);
    let v = verifier(&b);
    // The holder names a host and process: an admin of every tenant sees
    // it, a tenant's auditor sees the term and expiry only.
    assert!(lease(&b).unwrap()["holder"]
        .as_str()
        .is_some_and(|h| !h.is_empty()));
    let auditor = create_token(&b, "acme", "auditor", &[]);
    let seen: Value = client()
        .get(format!("{}/v1/info", b.url))
        .bearer_auth(&auditor)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let l = &seen["storage"]["lease"];
    assert!(l["term"].as_u64().is_some_and(|t| t > 0), "{seen}");
    assert!(
        l.get("holder").is_none(),
        "a tenant's auditor sees the holder: {seen}"
    );
    post_batch(&a.url, &a.token, &[event("before-stop")]).unwrap();
    let stopped = Instant::now();
    a.stop();
    let got = post_batch(&b.url, &b.token, &[event("after-stop")]).unwrap();
    let took = wait_checkpoint(&b, &v, got[0].1 + 1, stopped, Duration::from_secs(10));
    eprintln!("postgres: clean stop of the publisher: the other node published after {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "hand-over took {took:?} with a 60 s lease"
    );
}

#[test]
fn blobs_live_in_postgres_and_every_node_reads_them() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let nodes = start_nodes(&pg, root.path(), 2);
    let token = nodes[0].token.clone();
    let big = |id: &str, n: usize| {
        let mut e = event(id);
        e["input"] = json!({"content": incompressible(n)});
        e
    };
    let first = big("pg-big-0", 3 << 20);
    let second = big("pg-big-1", 100_000);
    post_batch(&nodes[0].url, &token, std::slice::from_ref(&first)).unwrap();
    post_batch(&nodes[1].url, &token, std::slice::from_ref(&second)).unwrap();
    for n in &nodes {
        n.wait_size(2);
        for (i, want) in [&first, &second].into_iter().enumerate() {
            let got = n.get_json(&format!("/v1/events/{i}"));
            let got = if got["event"]["id"] == want["id"] {
                got
            } else {
                n.get_json(&format!("/v1/events/{}", 1 - i))
            };
            assert_eq!(&got["event"], want, "node {}", n.url);
            assert_eq!(got["blobs"][0]["pointer"], "/input/content");
        }
    }
    // Stored in the database, in 1 MiB parts, nothing on the nodes' disks.
    let parts = pg.psql("SELECT count(DISTINCT id) || ' ' || max(part) FROM aiaudit_blobs");
    assert_eq!(
        parts.trim(),
        "2 1",
        "two blobs, the larger in two parts: {parts}"
    );
    for i in 0..2 {
        let on_disk = root.path().join(format!("node{i}/blobs"));
        assert!(!on_disk.exists(), "{} exists", on_disk.display());
    }
    // A damaged part is caught on every node, never served. (A bit flipped,
    // not a byte overwritten: writing 0x00 changed nothing when the byte
    // was 0x00 already, one blob in 256, and the test failed on CI.)
    pg.psql(
        "UPDATE aiaudit_blobs SET data = set_byte(data, 99, get_byte(data, 99) # 1) WHERE part = 0",
    );
    for n in &nodes {
        for i in 0..2 {
            assert_eq!(
                n.get(&format!("/v1/events/{i}")).status(),
                500,
                "node {}",
                n.url
            );
        }
    }
}

/// `aiaudit bench --insert-into-postgres` (the baseline of
/// docs/performance.md) puts every event it was asked for into the table,
/// each once, under its own id, as the generator made it.
#[test]
fn the_insert_baseline_stores_every_event_once() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let out = aiaudit(&[
        "bench",
        "--insert-into-postgres",
        &pg.url,
        "--events",
        "250",
        "--batch",
        "100",
        "--concurrency",
        "3",
        "--size",
        "512",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["events"], 250);
    assert_eq!(report["target"], "postgres-inserts");
    let counted = pg.psql(
        "SELECT count(*), count(DISTINCT id), \
         count(*) FILTER (WHERE body->>'id' = id::text AND body->>'tenant' = 'bench' \
         AND length(body::text) > 400) FROM aiaudit_bench_events",
    );
    assert_eq!(counted.trim(), "250|250|250", "{counted}");
}
