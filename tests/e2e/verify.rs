//! `aiaudit verify` online and offline, and the damage it must find.

use crate::harness::*;
use serde_json::Value;
use std::os::unix::fs::FileExt;
use std::path::Path;

fn verify_json(args: &[&str]) -> (bool, Value) {
    let mut all = vec!["verify", "--json"];
    all.extend_from_slice(args);
    let out = aiaudit(&all);
    let v: Value = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert_eq!(out.status.success(), v["ok"].as_bool().unwrap());
    (out.status.success(), v)
}

fn flip(path: &Path, offset: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x20;
    f.write_all_at(&b, offset).unwrap();
}

fn entry_start(data: &Path, index: u64) -> u64 {
    let leaves = std::fs::read(data.join("log/leaves")).unwrap();
    if index == 0 {
        return 0;
    }
    let rec = &leaves[(index as usize - 1) * 40..index as usize * 40];
    u64::from_be_bytes(rec[32..40].try_into().unwrap())
}

fn fill(server: &Server, from: usize, to: usize) {
    let events: Vec<Value> = (from..to).map(|i| event(&format!("v{i}"))).collect();
    server.post_events(&events);
    server.wait_size(to as u64);
}

#[test]
fn verifies_online_and_offline_and_pinpoints_damage() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let saved = dir.path().join("cp");
    let server = Server::start(&data);
    let vkey = server.get_json("/v1/info")["verifier_key"]
        .as_str()
        .unwrap()
        .to_string();
    fill(&server, 0, 600);

    let out = aiaudit(&[
        "verify",
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--vkey",
        &vkey,
        "--checkpoint-file",
        saved.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).starts_with("OK: aiaudit.local/log verified at size 600"),
        "{}",
        stdout(&out)
    );
    assert!(saved.exists());

    // A snapshot of the log at 600, for the truncation check below.
    let snapshot = dir.path().join("snapshot");
    copy_dir(&data, &snapshot);

    fill(&server, 600, 900);
    let (ok, v) = verify_json(&[
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--vkey",
        &vkey,
        "--checkpoint-file",
        saved.to_str().unwrap(),
    ]);
    assert!(ok, "{v}");
    assert_eq!(v["size"], 900);
    assert_eq!(v["consistent_with_size"], 600);
    assert_eq!(v["entries_checked"], 900);

    // Another log's key fails the signature.
    let other = tempfile::tempdir().unwrap();
    let other_server = Server::start_with(other.path(), &["--origin", "aiaudit.local/log"]);
    let other_key = other_server.get_json("/v1/info")["verifier_key"]
        .as_str()
        .unwrap()
        .to_string();
    drop(other_server);
    let (ok, v) = verify_json(&[
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--vkey",
        &other_key,
    ]);
    assert!(!ok);
    assert!(
        v["problems"][0]["what"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{v}"
    );
    server.stop();

    // Offline on the data directory.
    let (ok, v) = verify_json(&["--data-dir", data.to_str().unwrap(), "--vkey", &vkey]);
    assert!(ok, "{v}");
    assert_eq!(v["size"], 900);

    // A truncated log (an old copy) against the newer saved checkpoint.
    let (ok, v) = verify_json(&[
        "--data-dir",
        snapshot.to_str().unwrap(),
        "--vkey",
        &vkey,
        "--checkpoint-file",
        saved.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        v["problems"][0]["what"]
            .as_str()
            .unwrap()
            .contains("shrank"),
        "{v}"
    );

    // One changed byte in entry 300.
    flip(&data.join("log/entries"), entry_start(&data, 300) + 12);
    let (ok, v) = verify_json(&["--data-dir", data.to_str().unwrap(), "--vkey", &vkey]);
    assert!(!ok);
    assert_eq!(v["problems"][0]["index"], 300, "{v}");

    // The server still starts on it (the damage is below the checkpoint) and the online audit finds it too.
    let server = Server::start(&data);
    let (ok, v) = verify_json(&[
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--vkey",
        &vkey,
    ]);
    assert!(!ok);
    assert_eq!(v["problems"][0]["index"], 300, "{v}");
    server.stop();
    flip(&data.join("log/entries"), entry_start(&data, 300) + 12);

    // A changed leaf hash (level-0 tile) at index 5, and a changed tree node above index 512.
    flip(&data.join("log/leaves"), 5 * 40 + 3);
    let (ok, v) = verify_json(&["--data-dir", data.to_str().unwrap(), "--vkey", &vkey]);
    assert!(!ok);
    assert_eq!(v["problems"][0]["index"], 5, "{v}");
    flip(&data.join("log/leaves"), 5 * 40 + 3);
    flip(&data.join("log/levels/08"), 2 * 32 + 1);
    let (ok, v) = verify_json(&["--data-dir", data.to_str().unwrap(), "--vkey", &vkey]);
    assert!(!ok);
    assert_eq!(v["problems"][0]["index"], 512, "{v}");
    flip(&data.join("log/levels/08"), 2 * 32 + 1);

    // A leaf record's entry offset in the middle of a bundle (index 200):
    // the audit reads entries by the records at a bundle's ends, and now
    // checks the ones between against the entries.
    flip(&data.join("log/leaves"), 200 * 40 + 37);
    let (ok, v) = verify_json(&["--data-dir", data.to_str().unwrap(), "--vkey", &vkey]);
    assert!(!ok);
    let what = v["problems"][0]["what"].as_str().unwrap_or_default();
    assert!(
        what.contains("log index 200") && what.contains("leaf record"),
        "{v}"
    );
    flip(&data.join("log/leaves"), 200 * 40 + 37);

    // Two entries of equal length swapped: reported at the first of them.
    // (Compressed with the openings dictionary, an entry's length varies
    // by a byte or so with its random salt: take the first equal pair.)
    let at = (100..600)
        .find(|&i| {
            let (a, b, c) = (
                entry_start(&data, i),
                entry_start(&data, i + 1),
                entry_start(&data, i + 2),
            );
            b - a == c - b
        })
        .expect("two neighbours of equal length");
    let (a, b, c) = (
        entry_start(&data, at),
        entry_start(&data, at + 1),
        entry_start(&data, at + 2),
    );
    let entries = data.join("log/entries");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&entries)
        .unwrap();
    let mut first = vec![0u8; (b - a) as usize];
    let mut second = vec![0u8; (c - b) as usize];
    f.read_exact_at(&mut first, a).unwrap();
    f.read_exact_at(&mut second, b).unwrap();
    f.write_all_at(&second, a).unwrap();
    f.write_all_at(&first, b).unwrap();
    let (ok, v) = verify_json(&["--data-dir", data.to_str().unwrap(), "--vkey", &vkey]);
    assert!(!ok);
    assert_eq!(v["problems"][0]["index"], at, "{v}");
    assert_eq!(v["problems"][1]["index"], at + 1, "{v}");
}

/// A byte-flip campaign: every single-bit flip anywhere in the logged data
/// (entries, leaf records, tree levels, the signed checkpoint) of a stopped
/// ledger is found by `aiaudit verify --data-dir`.
#[test]
fn every_flip_in_logged_data_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let vkey = server.get_json("/v1/info")["verifier_key"]
        .as_str()
        .unwrap()
        .to_string();
    fill(&server, 0, 700);
    server.stop();
    let mut files: Vec<(std::path::PathBuf, u64)> = Vec::new();
    for rel in ["log/entries", "log/leaves", "checkpoint"] {
        let p = data.join(rel);
        files.push((p.clone(), std::fs::metadata(&p).unwrap().len()));
    }
    for e in std::fs::read_dir(data.join("log/levels")).unwrap() {
        let p = e.unwrap().path();
        let len = std::fs::metadata(&p).unwrap().len();
        if len > 0 {
            files.push((p, len));
        }
    }
    let total: u64 = files.iter().map(|f| f.1).sum();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const FLIPS: usize = 40;
    let mut missed = Vec::new();
    for n in 0..FLIPS {
        // A byte anywhere in the logged data, files weighted by size; the
        // first flips go to each file once so small files are covered too.
        let (path, offset) = if n < files.len() {
            (files[n].0.clone(), next() % files[n].1)
        } else {
            let mut at = next() % total;
            let f = files
                .iter()
                .find(|f| {
                    if at < f.1 {
                        true
                    } else {
                        at -= f.1;
                        false
                    }
                })
                .unwrap();
            (f.0.clone(), at)
        };
        let copy = dir.path().join(format!("flip{n}"));
        copy_dir(&data, &copy);
        let target = copy.join(path.strip_prefix(&data).unwrap());
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&target)
            .unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, offset).unwrap();
        b[0] ^= 1 << (next() % 8);
        f.write_all_at(&b, offset).unwrap();
        let (ok, v) = verify_json(&["--data-dir", copy.to_str().unwrap(), "--vkey", &vkey]);
        if ok {
            missed.push(format!("{} @ {offset}: {v}", target.display()));
        }
        std::fs::remove_dir_all(&copy).unwrap();
    }
    assert!(
        missed.is_empty(),
        "undetected flips:\n{}",
        missed.join("\n")
    );
    println!("byte-flip campaign: {FLIPS} flips, all detected");
}

/// The running ledger scrubs its stored tree: a damaged intermediate node
/// (which a tile audit cannot see) becomes a verification failure metric.
#[test]
fn the_running_ledger_finds_a_damaged_tree_node() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &["--scrub-interval", "1s"]);
    fill(&server, 0, 600);
    // -1 when not exported, so that an absent series never passes as 0.
    let metric = |server: &Server, name: &str| server.metric(name).unwrap_or(-1.0);
    let failures = |server: &Server| metric(server, "aiaudit_verification_failures_total");
    // Wait for a scrub that covered the whole filled log, then look.
    server.wait_size(600);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while metric(&server, "aiaudit_scrubbed_size") < 600.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no scrub covered the log"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(failures(&server), 0.0, "a sound log scrubs clean");
    flip(&data.join("log/levels/03"), 100);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while failures(&server) < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the scrub never noticed"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
