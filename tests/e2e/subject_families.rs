//! Subject key families through the real binary (issue #26, docs/security.md
//! "Subject key families"): subjects that share a family keep their content
//! when one of them is erased, also when the members of the family were only
//! in memory when the ledger was killed or the member index is lost;
//! turning families off keeps every event readable and erasable.

use crate::harness::*;
use serde_json::{json, Value};

fn subject_event(id: &str, subject: &str) -> Value {
    let mut e = event(id);
    e["subject"] = json!(subject);
    e["input"] = json!({"content": format!("the words of {subject}")});
    e
}

/// The first 12 bits of the subject's tag: its family's bucket.
fn bucket(server: &Server, http: &reqwest::blocking::Client, subject: &str) -> String {
    let r = server
        .authorized(http.post(format!("{}/v1/hash", server.url)))
        .json(&json!({"tenant": "acme", "value": subject}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    let tag = v["hmac"].as_str().unwrap().to_string();
    tag.trim_start_matches("hmac-sha256:")[..3].to_string()
}

/// `n` subjects whose tags fall in one bucket (the tenant's salt exists once
/// an event of it was logged).
fn bucket_mates(server: &Server, n: usize) -> Vec<String> {
    // One connection for the few thousand tries.
    let http = client();
    let want = bucket(server, &http, "mate-0");
    let mut found = vec!["mate-0".to_string()];
    let mut i = 1;
    while found.len() < n {
        let s = format!("mate-{i}");
        if bucket(server, &http, &s) == want {
            found.push(s);
        }
        i += 1;
    }
    found
}

fn erase(server: &Server, subject: &str) -> Value {
    let r = server.post(
        "/v1/erase",
        "application/json",
        serde_json::to_vec(&json!({"tenant": "acme", "subject": subject})).unwrap(),
    );
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

/// The indexes an append's answer gives its events.
fn indexes_of(answer: &Value) -> Vec<u64> {
    answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect()
}

fn content(server: &Server, index: u64) -> Value {
    server.get_json_when_ready(&format!("/v1/events/{index}"))
}

#[test]
fn erasing_one_member_after_a_kill_keeps_every_other_members_content() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Gate 4: families without the openings dictionary, so that the lost
    // gate below can only come back from the keyring's families.
    let server = Server::start_with(&data, &["--entry-format", "4", "--access-log", "false"]);
    server.post_events(&[event("salt")]);
    let mates = bucket_mates(&server, 5);
    let events: Vec<Value> = mates[..3]
        .iter()
        .enumerate()
        .map(|(i, s)| subject_event(&format!("m{i}"), s))
        .collect();
    let indexes = indexes_of(&server.post_events(&events));
    // Sealed under one family: one key id for the three.
    let keys: Vec<Value> = indexes
        .iter()
        .map(|i| content(&server, *i)["key_id"].clone())
        .collect();
    assert!(keys.iter().all(|k| *k == keys[0] && k.is_u64()), "{keys:?}");
    // Killed with the family's members noted in memory only.
    server.kill9();
    let server = Server::start_with(&data, NO_ACCESS_LOG);
    let v = erase(&server, &mates[0]);
    assert_eq!(v["keys_destroyed"], 1, "{v}");
    assert_eq!(content(&server, indexes[0])["content"], "erased");
    for (i, s) in indexes.iter().zip(&mates).skip(1) {
        let e = content(&server, *i);
        assert_eq!(e["content"], "sealed", "{s}: {e}");
        assert_eq!(e["event"]["input"]["content"], format!("the words of {s}"));
    }
    // Later events of the bucket get a new family; earlier ones still open.
    let later = server.post_events(&[subject_event("later", &mates[1])]);
    let later = later["events"][0]["index"].as_u64().unwrap();
    assert_ne!(content(&server, later)["key_id"], keys[0]);
    server.stop();

    // Families off: nothing changes for what they sealed, and erasing a
    // member whose key was kept on its own destroys it.
    let server = Server::start_with(
        &data,
        &["--access-log", "false", "--subject-key-families", "false"],
    );
    assert_eq!(content(&server, indexes[1])["content"], "sealed");
    let own = server.post_events(&[subject_event("own", "newcomer")]);
    let own = own["events"][0]["index"].as_u64().unwrap();
    assert_eq!(content(&server, own)["content"], "sealed");
    let v = erase(&server, &mates[1]);
    assert_eq!(
        v["keys_destroyed"], 2,
        "its kept key and the new family: {v}"
    );
    assert_eq!(content(&server, indexes[1])["content"], "erased");
    assert_eq!(content(&server, later)["content"], "erased");
    assert_eq!(content(&server, indexes[2])["content"], "sealed");
    server.stop();

    // A member index lost (as after a restore from backup, which carries
    // none): noted again from the whole log before an erasure goes on.
    let server = Server::start_with(&data, NO_ACCESS_LOG);
    let pair = indexes_of(&server.post_events(&[
        subject_event("p3", &mates[3]),
        subject_event("p4", &mates[4]),
    ]));
    assert_eq!(
        content(&server, pair[0])["key_id"],
        content(&server, pair[1])["key_id"]
    );
    server.stop();
    std::fs::remove_dir_all(data.join("keyring.members")).unwrap();
    let server = Server::start_with(&data, NO_ACCESS_LOG);
    let v = erase(&server, &mates[3]);
    assert_eq!(v["keys_destroyed"], 1, "{v}");
    assert_eq!(content(&server, pair[0])["content"], "erased");
    assert_eq!(content(&server, pair[1])["content"], "sealed");
    assert_eq!(content(&server, indexes[2])["content"], "sealed");
    server.stop();

    // The gate file lost (a restore, a mistake): its keyring holds families,
    // so the gate comes back at 4, not 3, and no build without families
    // may serve the log.
    std::fs::remove_file(data.join("entry-format")).unwrap();
    Server::start_with(&data, NO_ACCESS_LOG).stop();
    assert_eq!(
        std::fs::read_to_string(data.join("entry-format")).unwrap(),
        "4\n"
    );
    let out = aiaudit(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout(&out));
}
