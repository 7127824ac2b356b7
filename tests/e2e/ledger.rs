//! Ingest, the C2SP read API, proofs and restarts.

use crate::harness::*;
use aiaudit_tlog::{
    check_record, check_tree, decode_entry_bundle, open_note, parse_hash_tile, record_hash,
    Checkpoint, Verifier,
};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;

fn hash(v: &Value) -> [u8; 32] {
    B64.decode(v.as_str().unwrap()).unwrap().try_into().unwrap()
}

fn hashes(v: &Value) -> Vec<[u8; 32]> {
    v.as_array().unwrap().iter().map(hash).collect()
}

fn checkpoint(server: &Server, verifier: &Verifier) -> Checkpoint {
    let note = server.get("/checkpoint").text().unwrap();
    Checkpoint::parse_body(open_note(&note, verifier).unwrap()).unwrap()
}

#[test]
fn ingest_reads_and_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), NO_ACCESS_LOG);
    let info = server.get_json("/v1/info");
    assert_eq!(info["origin"], "aiaudit.local/log");
    assert_eq!(info["size"], 0);
    assert!(info["version"].is_string());
    let verifier = Verifier::parse(info["verifier_key"].as_str().unwrap()).unwrap();
    let schema = server.get("/v1/schema/event");
    assert_eq!(schema.headers()["content-type"], "application/schema+json");
    let schema: Value = schema.json().unwrap();
    assert_eq!(
        schema["required"],
        json!(["id", "time", "tenant", "source", "actor", "action"])
    );
    let key = dir.path().join("log.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A JSON array, then NDJSON.
    let events: Vec<Value> = (0..300).map(|i| event(&format!("a{i}"))).collect();
    let resp = server.post_events(&events);
    let acks = resp["events"].as_array().unwrap();
    assert_eq!(acks.len(), 300);
    for (i, a) in acks.iter().enumerate() {
        assert_eq!(a["index"], i as u64);
        assert_eq!(a["id"], format!("a{i}"));
        assert_eq!(a["duplicate"], false);
    }
    let ndjson: String = (0..5)
        .map(|i| serde_json::to_string(&event(&format!("n{i}"))).unwrap() + "\n")
        .collect();
    let r = server.post("/v1/events", "application/x-ndjson", ndjson.into_bytes());
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["events"][4]["index"], 304);

    // Re-sending a logged id returns its original index and appends nothing.
    let again = server.post_events(&[event("a7"), event("fresh")]);
    assert_eq!(again["events"][0]["index"], 7);
    assert_eq!(again["events"][0]["duplicate"], true);
    assert_eq!(again["events"][0]["leaf_hash"], acks[7]["leaf_hash"]);
    assert_eq!(again["events"][1]["index"], 305);

    // wait=checkpoint answers with a signed checkpoint and proofs against it.
    let r = server.post(
        "/v1/events?wait=checkpoint",
        "application/json",
        serde_json::to_vec(&json!([event("w1"), event("w2")])).unwrap(),
    );
    assert_eq!(r.status(), 200);
    let w: Value = r.json().unwrap();
    let cp =
        Checkpoint::parse_body(open_note(w["checkpoint"].as_str().unwrap(), &verifier).unwrap())
            .unwrap();
    assert!(cp.size >= 308);
    for a in w["events"].as_array().unwrap() {
        check_record(
            &hashes(&a["inclusion_proof"]),
            cp.size,
            &cp.root,
            a["index"].as_u64().unwrap(),
            &hash(&a["leaf_hash"]),
        )
        .unwrap();
    }

    // The event by index, with its proof; the entry hashes to the leaf.
    let e = server.get_json("/v1/events/42?proof=true");
    assert_eq!(e["event"]["id"], "a42");
    let entry = B64.decode(e["entry"].as_str().unwrap()).unwrap();
    assert_eq!(record_hash(&entry), hash(&e["leaf_hash"]));
    let size = e["proof"]["size"].as_u64().unwrap();
    let root = checkpoint(&server, &verifier).root;
    check_record(
        &hashes(&e["proof"]["inclusion"]),
        size,
        &root,
        42,
        &record_hash(&entry),
    )
    .unwrap();

    // Inclusion and consistency proofs from the proof API.
    let p = server.get_json(&format!("/v1/proof/inclusion?index=299&size={}", cp.size));
    check_record(
        &hashes(&p["proof"]),
        cp.size,
        &cp.root,
        299,
        &hash(&acks[299]["leaf_hash"]),
    )
    .unwrap();
    let old_root = {
        let r = server.post_events(&[event("later")]);
        assert_eq!(r["events"][0]["index"], 308);
        cp.root
    };
    server.wait_size(309);
    let now = checkpoint(&server, &verifier);
    let c = server.get_json(&format!(
        "/v1/proof/consistency?old={}&size={}",
        cp.size, now.size
    ));
    check_tree(
        &hashes(&c["proof"]),
        now.size,
        &now.root,
        cp.size,
        &old_root,
    )
    .unwrap();

    // Tiles: the level-0 tile and the entry bundle for the first 256 entries.
    let r = server.get("/tile/0/000");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let tile = parse_hash_tile(&r.bytes().unwrap()).unwrap();
    assert_eq!(tile.len(), 256);
    assert_eq!(tile[7], hash(&acks[7]["leaf_hash"]));
    let bundle = server.get("/tile/entries/000").bytes().unwrap();
    let entries = decode_entry_bundle(&bundle).unwrap();
    assert_eq!(entries.len(), 256);
    assert!(entries.iter().zip(&tile).all(|(e, h)| record_hash(e) == *h));
    let w = now.size - 256;
    let r = server.get(&format!("/tile/0/001.p/{w}"));
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-cache");
    assert_eq!(r.bytes().unwrap().len() as u64, 32 * w);
    assert_eq!(server.get("/tile/1/000.p/1").bytes().unwrap().len(), 32);
    // Beyond the checkpoint: not found.
    assert_eq!(
        server.get(&format!("/tile/0/001.p/{}", w + 1)).status(),
        404
    );
    assert_eq!(server.get("/tile/0/002").status(), 404);

    // Metrics: throughput by tenant, ack latency, the log's own gauges.
    let metrics = server.get("/metrics").text().unwrap();
    for needle in [
        "aiaudit_events_processed_total{tenant=\"acme\"} 310",
        "aiaudit_event_processing_latency_seconds_count 5",
        "aiaudit_tree_size 309",
        "aiaudit_recovery_time_seconds",
        "process_resident_memory_bytes",
        "aiaudit_data_dir_free_bytes",
    ] {
        assert!(metrics.contains(needle), "missing {needle}:\n{metrics}");
    }

    // Request ids: echoed when given, made up otherwise.
    let r = client()
        .get(format!("{}/healthz", server.url))
        .header("x-request-id", "req-42")
        .send()
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-42");
    let r = server.get("/healthz");
    assert_eq!(r.headers()["x-request-id"].to_str().unwrap().len(), 36);

    // A restart keeps the key, the origin and the tree.
    server.stop();
    let server = Server::start_with(dir.path(), NO_ACCESS_LOG);
    let info2 = server.get_json("/v1/info");
    assert_eq!(info2["verifier_key"], info["verifier_key"]);
    assert_eq!(info2["size"], now.size);
    let e = server.post_events(&[event("a1"), event("after-restart")]);
    assert_eq!(e["events"][0]["index"], 1);
    assert_eq!(e["events"][1]["index"], now.size);
}

#[test]
fn origin_is_fixed_at_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--origin", "example.com/audit"]);
    assert_eq!(server.get_json("/v1/info")["origin"], "example.com/audit");
    let note = server.get("/checkpoint").text().unwrap();
    assert!(note.starts_with("example.com/audit\n0\n"));
    assert!(note.contains("\n\n— example.com/audit "));
    server.stop();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args([
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--origin",
            "other/log",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot change"));
}

#[test]
fn config_file_and_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-config");
    let port = free_port();
    let cfg = dir.path().join("aiaudit.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:{port}\"\norigin = \"cfg.example/log\"\npublish_interval_ms = 100\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("AIAUDIT_LOG", "warn")
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/info");
    let mut info = None;
    for _ in 0..600 {
        if let Ok(r) = client().get(&url).send() {
            info = Some(r.json::<Value>().unwrap());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        info.expect("server from config file")["origin"],
        "cfg.example/log"
    );
    assert!(data.join("log.key").exists());

    // Unknown keys in the config file are an error, not ignored.
    std::fs::write(&cfg, "listn = \"x\"\n").unwrap();
    let out = aiaudit(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listn"));
}
