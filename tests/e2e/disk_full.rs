//! Disk full: 503 with nothing acknowledged that is not durable, the
//! server recovers by itself once space returns, and every acknowledgement
//! survives a kill -9 and restart afterwards. Uses a small tmpfs, so it
//! needs root (CI runs as root); elsewhere it says it was skipped.

use crate::harness::*;
use serde_json::{json, Value};
use std::process::Command;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn batch(tag: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let mut e = event(&format!("{tag}-{i}"));
            // Random text: sealed content is compressed, and the disk must fill.
            e["attributes"]["pad"] = json!(incompressible(1000));
            e
        })
        .collect()
}

#[test]
fn disk_full_answers_503_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to mount a tmpfs (run as root)"
        );
        skipped("disk_full_answers_503_and_recovers: cannot mount a tmpfs here (not root)");
        return;
    }
    let _mount = Mount(mnt.clone());
    let data = mnt.join("data");
    let server = Server::start_with(&data, NO_ACCESS_LOG);

    // Leave a little room, then write until the disk is full.
    let filler = mnt.join("filler");
    let free = {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&mnt)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    std::fs::write(&filler, vec![0u8; (free - 3_000_000) as usize]).unwrap();

    let mut acked: Vec<(String, u64)> = Vec::new();
    let mut refused = None;
    for b in 0..200 {
        let r = server.post(
            "/v1/events",
            "application/json",
            serde_json::to_vec(&batch(&format!("b{b}"), 100)).unwrap(),
        );
        if r.status() == 503 {
            assert_eq!(r.headers()["content-type"], "application/problem+json");
            assert!(r.headers().contains_key("retry-after"));
            refused = Some(b);
            break;
        }
        assert_eq!(r.status(), 200);
        let v: Value = r.json().unwrap();
        for a in v["events"].as_array().unwrap() {
            acked.push((
                a["id"].as_str().unwrap().to_string(),
                a["index"].as_u64().unwrap(),
            ));
        }
    }
    let refused = refused.expect("the disk never filled up");
    assert!(!acked.is_empty());
    // Still alive and readable while full, but not ready.
    assert_eq!(server.get("/healthz").status(), 200);
    let r = server.get("/readyz");
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<Value>().unwrap()["checks"]["storage_writable"],
        false
    );
    assert_eq!(server.get("/v1/events/0").status(), 200);

    // Stay full for a while: the publisher's integration and the id index hit
    // the full disk too, and must come back from it.
    std::thread::sleep(std::time::Duration::from_millis(1500));

    // Space returns: ready again before any new append (a probe write), and the
    // same batch now goes through, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let r = server.get("/readyz");
    assert_eq!(
        r.json::<Value>().unwrap()["checks"]["storage_writable"],
        true
    );
    let retry = batch(&format!("b{refused}"), 100);
    let mut ok = false;
    for _ in 0..50 {
        let r = server.post(
            "/v1/events",
            "application/json",
            serde_json::to_vec(&retry).unwrap(),
        );
        if r.status() == 200 {
            let v: Value = r.json().unwrap();
            for a in v["events"].as_array().unwrap() {
                acked.push((
                    a["id"].as_str().unwrap().to_string(),
                    a["index"].as_u64().unwrap(),
                ));
            }
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(ok, "ingest did not recover after space returned");
    // Ready again once a checkpoint covers everything.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.get("/readyz").status() != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready again");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let total = acked.len() as u64;
    server.wait_size(total);

    // Killed right after an acknowledgement, before a checkpoint covers it
    // (tried again until the saved checkpoint shows that), then started
    // again on the same disk: every acknowledgement, before the disk filled
    // and after, survived at its index.
    let mut server = server;
    for round in 0.. {
        assert!(round < 20, "a checkpoint always covered the last batch");
        let v = server.post_events(&batch(&format!("last{round}"), 100));
        for a in v["events"].as_array().unwrap() {
            acked.push((
                a["id"].as_str().unwrap().to_string(),
                a["index"].as_u64().unwrap(),
            ));
        }
        server.kill9();
        let note = std::fs::read_to_string(data.join("checkpoint")).unwrap();
        let covered: u64 = note.lines().nth(1).unwrap().parse().unwrap();
        if covered < acked.len() as u64 {
            break;
        }
        server = Server::start_with(&data, NO_ACCESS_LOG);
    }
    let total = acked.len() as u64;
    let server = Server::start_with(&data, NO_ACCESS_LOG);
    server.wait_size(total);
    let mut by_index = acked.clone();
    by_index.sort_by_key(|a| a.1);
    let logged = logged_ids(&server, total);
    assert_eq!(
        logged,
        by_index.iter().map(|a| a.0.clone()).collect::<Vec<_>>(),
        "the log after a kill and restart differs from what was acknowledged"
    );

    // Every acknowledgement holds: same index, no gaps, no duplicates, and the log verifies.
    let resend: Vec<Value> = acked.iter().map(|(id, _)| event(id)).collect();
    for chunk in resend.chunks(500).zip(acked.chunks(500)) {
        let v = server.post_events(chunk.0);
        for (a, (id, index)) in v["events"].as_array().unwrap().iter().zip(chunk.1) {
            assert_eq!(a["duplicate"], true, "{id}");
            assert_eq!(a["index"], *index, "{id}");
        }
    }
    let mut indexes: Vec<u64> = acked.iter().map(|a| a.1).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, (0..total).collect::<Vec<_>>());
    let out = aiaudit(&["verify", "--url", &server.url, "--token", &server.token]);
    assert!(out.status.success(), "{}", stdout(&out));
    server.stop();
    let out = aiaudit(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout(&out));
}
