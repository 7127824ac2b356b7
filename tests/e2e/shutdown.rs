//! SIGTERM under load: every request answered before the exit, a final
//! checkpoint covering everything acknowledged, nothing lost after a restart.
//! And a backup taken while ingest goes on restores to a verified prefix.

use crate::harness::*;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What one load thread saw: id → acknowledged index, and the ids of the
/// batches that got no acknowledgement (a transport error or a refusal).
#[derive(Default)]
struct Seen {
    acked: HashMap<String, u64>,
    unanswered: Vec<String>,
    refused: Vec<String>,
}

/// Posts batches from `clients` threads until `stop` (or the server is gone).
fn load(
    url: String,
    token: String,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Seen>> {
    let counter = Arc::new(AtomicUsize::new(0));
    (0..clients)
        .map(|c| {
            let (url, token, stop, counter) =
                (url.clone(), token.clone(), stop.clone(), counter.clone());
            std::thread::spawn(move || {
                let client = client();
                let mut seen = Seen::default();
                while !stop.load(Ordering::Relaxed) {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let ids: Vec<String> = (0..50).map(|i| format!("t{c}-{n}-{i}")).collect();
                    let batch: Vec<Value> = ids.iter().map(|id| event(id)).collect();
                    let answer = client
                        .post(format!("{url}/v1/events"))
                        .bearer_auth(&token)
                        .json(&batch)
                        .send();
                    let r = match answer {
                        Ok(r) => r,
                        Err(_) => {
                            // The server is gone: nothing more is acknowledged.
                            seen.unanswered.extend(ids);
                            break;
                        }
                    };
                    if r.status() != 200 {
                        seen.refused.extend(ids);
                        continue;
                    }
                    let Ok(body) = r.json::<Value>() else {
                        seen.unanswered.extend(ids);
                        break;
                    };
                    for e in body["events"].as_array().unwrap() {
                        seen.acked.insert(
                            e["id"].as_str().unwrap().to_string(),
                            e["index"].as_u64().unwrap(),
                        );
                    }
                }
                seen
            })
        })
        .collect()
}

#[test]
fn sigterm_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(server.url.clone(), server.token.clone(), 4, stop.clone());
    std::thread::sleep(Duration::from_millis(1500));
    // SIGTERM while requests are in flight; the load keeps going until it fails.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    let status = server.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(status.success(), "a graceful exit: {status}");
    let (mut acked, mut unanswered, mut refused) = (HashMap::new(), Vec::new(), Vec::new());
    for w in workers {
        let seen = w.join().unwrap();
        acked.extend(seen.acked);
        unanswered.extend(seen.unanswered);
        refused.extend(seen.refused);
    }
    assert!(
        acked.len() > 500,
        "the load ran: {} acknowledged",
        acked.len()
    );
    std::mem::forget(server);

    let server = Server::start(&data);
    let info = server.get_json("/v1/info");
    // The final checkpoint was published at shutdown: it covers every acknowledgement.
    let size = info["size"].as_u64().unwrap();
    assert_eq!(size, info["sequenced_size"].as_u64().unwrap(), "{info}");
    let ids = logged_ids(&server, size);
    let mut seen = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        assert!(seen.insert(id.clone(), i as u64).is_none(), "{id} twice");
    }
    for (id, index) in &acked {
        assert_eq!(seen.get(id), Some(index), "acknowledged {id} lost or moved");
    }
    // Every request the server took in was answered before it exited: a
    // batch that got no answer (its connection closed first) was never
    // logged, and neither was one refused.
    for id in unanswered.iter().chain(&refused) {
        assert!(
            !seen.contains_key(id),
            "{id} was logged but its request got no acknowledgement"
        );
    }
}

#[test]
fn a_backup_taken_during_ingest_restores_to_a_verified_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backups = dir.path().join("backups");
    let server = Server::start(&data);
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(server.url.clone(), server.token.clone(), 2, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    let out = aiaudit(&[
        "backup",
        "create",
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--to",
        backups.to_str().unwrap(),
        "--json",
    ]);
    let mid = server.get_json("/v1/info")["sequenced_size"]
        .as_u64()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<HashMap<String, u64>> = workers
        .into_iter()
        .map(|w| w.join().unwrap().acked)
        .collect();
    assert!(out.status.success(), "{}", stdout(&out));
    let restored = dir.path().join("restored");
    let out = aiaudit(&[
        "restore",
        "--from",
        backups.to_str().unwrap(),
        "--data-dir",
        restored.to_str().unwrap(),
        "--signing-key",
        data.join("log.key").to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let size = report["size"].as_u64().unwrap();
    assert!(size > 0 && size <= mid, "a prefix: {size} of {mid}");
    // The restored log is exactly the live log's prefix of that size.
    let out = aiaudit(&["verify", "--data-dir", restored.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stdout(&out));
    // The restored log holds the live log's first `size` events, in order
    // (read from its `log/entries` file: the entry bundles, concatenated).
    let live = logged_ids(&server, size);
    let entries = std::fs::read(restored.join("log/entries")).unwrap();
    let restored_ids: Vec<String> = aiaudit_tlog::decode_entry_bundle(&entries)
        .unwrap()
        .into_iter()
        .map(|e| aiaudit_event::entry_id(e).unwrap())
        .collect();
    assert_eq!(restored_ids.len() as u64, size);
    assert_eq!(restored_ids, live);
    let acked_in_prefix = acked.iter().flatten().filter(|(_, &i)| i < size).count();
    assert!(acked_in_prefix > 0);
    // Consistency proof from the restored root to the live checkpoint.
    let info = server.get_json("/v1/info");
    let live_size = info["size"].as_u64().unwrap();
    let b64 = |s: &str| -> [u8; 32] {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .unwrap()
            .try_into()
            .unwrap()
    };
    let root = b64(report["root"].as_str().unwrap());
    if live_size > size {
        let proof = server.get_json(&format!(
            "/v1/proof/consistency?old={size}&size={live_size}"
        ));
        let hashes: Vec<[u8; 32]> = proof["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| b64(h.as_str().unwrap()))
            .collect();
        aiaudit_tlog::check_tree(
            &hashes,
            live_size,
            &b64(info["root"].as_str().unwrap()),
            size,
            &root,
        )
        .expect("the restored log is a prefix of the live one");
    } else {
        // Nothing arrived after the backup: the same tree, the same root.
        assert_eq!(info["root"].as_str(), report["root"].as_str(), "{info}");
    }
}
