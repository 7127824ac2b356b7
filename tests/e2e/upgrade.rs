//! The entry-format gate (issue #16, docs/operations.md "Entry format 3: a
//! gated upgrade"): a new log writes format 3 at once; a log its nodes must
//! still be able to read with an older build keeps format 2 until the
//! operator finalizes; `aiaudit upgrade status|finalize` on files and on
//! PostgreSQL. (The rehearsal with the previous build itself is
//! docs/measurements/upgrade-rollback.sh.)

use crate::harness::*;
use aiaudit_event::sealed_v3::{FLAG_DICTIONARY, FLAG_ZSTD};
use aiaudit_testpg::TempPostgres;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn versions(server: &Server, n: u64) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let e = server.get_json_when_ready(&format!("/v1/events/{i}"));
            assert_eq!(e["content"], "sealed", "{e}");
            e["entry_version"].as_u64().unwrap()
        })
        .collect()
}

fn upgrade(args: &[&str]) -> String {
    let out = aiaudit(&[&["upgrade"], args].concat());
    assert!(
        out.status.success(),
        "aiaudit upgrade {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

fn post(server: &Server, ids: &[&str]) {
    let events: Vec<_> = ids.iter().map(|id| event(id)).collect();
    server.post_events(&events);
}

#[test]
fn a_log_keeps_format_2_until_finalized_and_a_new_log_starts_at_3() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();

    // A log written as an older build writes it (format 2, no gate).
    let server = Server::start_with(&data, &["--entry-format", "2", "--access-log", "false"]);
    post(&server, &["a", "b"]);
    server.wait_size(2);
    assert_eq!(versions(&server, 2), [2, 2]);
    server.stop();
    assert!(
        !data.join("entry-format").exists(),
        "--entry-format 2 sets no gate"
    );
    assert!(upgrade(&["status", "--data-dir", d]).contains("not finalized"));

    // This build on it without flags: still format 2 (a rollback stays possible).
    let server = Server::start_with(&data, NO_ACCESS_LOG);
    post(&server, &["c"]);
    server.wait_size(3);
    assert_eq!(versions(&server, 3), [2, 2, 2]);
    server.stop();

    // Finalized: format 3 from the next start, and old entries still read.
    assert!(upgrade(&["finalize", "--data-dir", d]).contains("finalized"));
    assert!(upgrade(&["status", "--data-dir", d]).contains("entry format 5: finalized"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(data.join("entry-format"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let server = Server::start_with(&data, NO_ACCESS_LOG);
    post(&server, &["d"]);
    server.wait_size(4);
    assert_eq!(versions(&server, 4), [2, 2, 2, 3]);
    server.stop();
    let out = aiaudit(&["verify", "--data-dir", d]);
    assert!(out.status.success(), "{}", stdout(&out));

    // Its gate file gone: the last entry was compressed with the openings
    // dictionary, so the gate comes back at 5 (the last entry is all the
    // ledger reads; a restore records the gate from every entry).
    assert_eq!(flags(&data, 3), FLAG_ZSTD | FLAG_DICTIONARY);
    std::fs::remove_file(data.join("entry-format")).unwrap();
    let server = Server::start_with(&data, NO_ACCESS_LOG);
    post(&server, &["d2"]);
    server.wait_size(5);
    assert_eq!(versions(&server, 5), [2, 2, 2, 3, 3]);
    server.stop();
    assert_eq!(
        std::fs::read_to_string(data.join("entry-format")).unwrap(),
        "5\n"
    );

    // A log written at gate 3 whose gate is gone stays at format 3 and
    // records it again (no dictionary, no families).
    let at3 = dir.path().join("at3");
    let server = Server::start_with(&at3, &["--entry-format", "3", "--access-log", "false"]);
    post(&server, &["f"]);
    server.wait_size(1);
    server.stop();
    assert_eq!(flags(&at3, 0) & FLAG_DICTIONARY, 0);
    std::fs::remove_file(at3.join("entry-format")).unwrap();
    Server::start_with(&at3, NO_ACCESS_LOG).stop();
    assert_eq!(
        std::fs::read_to_string(at3.join("entry-format")).unwrap(),
        "3\n"
    );

    // A new log writes format 3 entries at once and records gate 5 (subject
    // key families, the openings dictionary).
    let fresh = dir.path().join("fresh");
    let server = Server::start_with(&fresh, NO_ACCESS_LOG);
    post(&server, &["e"]);
    server.wait_size(1);
    assert_eq!(versions(&server, 1), [3]);
    server.stop();
    assert_eq!(
        std::fs::read_to_string(fresh.join("entry-format")).unwrap(),
        "5\n"
    );
    assert_eq!(flags(&fresh, 0), FLAG_ZSTD | FLAG_DICTIONARY);
}

/// The flags byte of entry `index` of a stopped log (docs/format.md, v3).
fn flags(data: &std::path::Path, index: u64) -> u8 {
    let (store, _) = aiaudit_store::FsStore::open(data).unwrap();
    let entry = aiaudit_store::Storage::read_entry(&store, index).unwrap();
    assert_eq!(entry[0], 3, "entry {index} is v3");
    entry[1]
}

#[test]
fn a_gate_newer_than_this_build_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    Server::start_with(&data, NO_ACCESS_LOG).stop();
    let newer = aiaudit_ledger::entry_format::LATEST + 1;
    std::fs::write(data.join("entry-format"), format!("{newer}\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_aiaudit"))
        .args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("serve started on a log gated at a newer entry format");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("entry format {newer}")), "{err}");
}

#[test]
fn nodes_on_postgres_share_the_gate() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node0");
    let url = pg.url.as_str();
    // A shared log written with format 2 (as older nodes would).
    let server = Server::start_with(
        &node,
        &[
            "--storage",
            url,
            "--entry-format",
            "2",
            "--access-log",
            "false",
        ],
    );
    post(&server, &["a"]);
    server.wait_size(1);
    server.stop();
    assert!(upgrade(&["status", "--storage", url]).contains("not finalized"));
    let server = Server::start_with(&node, &["--storage", url, "--access-log", "false"]);
    post(&server, &["b"]);
    server.wait_size(2);
    assert_eq!(versions(&server, 2), [2, 2]);
    server.stop();
    upgrade(&["finalize", "--storage", url]);
    assert!(upgrade(&["status", "--storage", url]).contains("entry format 5: finalized"));
    // The gate is in the database: no file in the node's directory.
    assert!(!node.join("entry-format").exists());
    let server = Server::start_with(&node, &["--storage", url, "--access-log", "false"]);
    post(&server, &["c"]);
    server.wait_size(3);
    assert_eq!(versions(&server, 3), [2, 2, 3]);
    server.stop();
}
