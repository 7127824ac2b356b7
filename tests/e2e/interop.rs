//! Batch signatures from outside implementations (issue: RFC 8785 batch
//! signatures): an emitter in Python (PyPI rfc8785 + cryptography) and one
//! in Node (npm canonicalize + node:crypto), each holding the vectors'
//! tricky values, sign aiaudit-batch-v2 batches with no code of ours. The
//! ledger must accept both, show every signature valid, and an export
//! bundle of them must verify offline.

use crate::harness::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether both outside emitters can run here; under CI they must.
fn tools_available() -> bool {
    let python = Command::new("python3")
        .args(["-c", "import rfc8785, cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        && root()
            .join("tests/interop/node_modules/canonicalize")
            .exists();
    if python && node {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI needs python3 -m pip install rfc8785 cryptography, node and npm ci --prefix tests/interop"
    );
    skipped("the interop emitters need rfc8785, cryptography (PyPI), node and npm ci --prefix tests/interop");
    false
}

fn run(program: &str, script: &str, server: &Server, emitter: &str) -> Value {
    let out = Command::new(program)
        .arg(root().join("tests/interop").join(script))
        .args([&server.url, &server.token, emitter])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {script}: {}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout(&out).trim()).unwrap()
}

#[test]
fn batches_signed_in_python_and_node_are_accepted_and_verify_offline() {
    if !tools_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Without the access log: reading the events back would otherwise add
    // the ledger's own `trail.access` record to the tenant, before or after
    // the export's checkpoint as timing has it.
    let server = Server::start_with(&data, NO_ACCESS_LOG);
    let mut indexes = Vec::new();
    for (program, script, emitter) in [
        ("python3", "sign_batch.py", "python-emitter"),
        ("node", "sign_batch.mjs", "node-emitter"),
    ] {
        let answer = run(program, script, &server, emitter);
        let events = answer["events"].as_array().unwrap();
        assert_eq!(events.len(), 6, "{answer}");
        for e in events {
            let index = e["index"].as_u64().unwrap();
            let read = server.get_json_when_ready(&format!("/v1/events/{index}"));
            assert_eq!(read["emitter_signature"]["status"], "valid", "{read}");
            assert_eq!(
                read["emitter_signature"]["signature"]["format"], "aiaudit-batch-v2",
                "{read}"
            );
            assert_eq!(read["appended_by"], format!("emitter:{emitter}"));
            indexes.push(index);
        }
    }
    assert_eq!(indexes.len(), 12);
    let size = indexes.iter().max().unwrap() + 1;
    crate::search::wait_indexed(&server, size);

    let bundle = dir.path().join("lagos.tar.gz");
    export_bundle(&server, "lagos-health", &bundle);
    let vkey = std::fs::read_to_string(data.join("log.vkey")).unwrap();
    server.stop();
    // The ledger is gone: the bundle verifies on its own.
    let report = verify_bundle(&bundle, vkey.trim());
    assert_eq!(report["events"], 12, "{report}");
    assert_eq!(report["emitter_signatures"], 12, "{report}");
}

/// Entry format v3 read by a decoder written from docs/format.md alone
/// (tests/interop/entry_v3.py: PyNaCl and zstandard, no code of ours):
/// first the documented vectors with their key (blobs included), then
/// entries this ledger wrote, checked with their openings and no key,
/// compressed and not, and one whose large member is stored as a blob (its
/// content and stored bytes fetched and checked against the entry, the
/// whole event rebuilt).
#[test]
fn v3_entries_open_with_a_decoder_written_from_the_spec() {
    let python = Command::new("python3")
        .args(["-c", "import nacl, zstandard"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !python {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs python3 -m pip install pynacl zstandard"
        );
        skipped("the v3 interop decoder needs pynacl and zstandard (PyPI)");
        return;
    }
    let script = root().join("tests/interop/entry_v3.py");
    let out = Command::new("python3").arg(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut small = event("v3-small");
    small["subject"] = serde_json::json!("customer-9");
    small["ai"] = serde_json::json!({"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 12});
    let mut large = event("v3-large");
    large["input"] = serde_json::json!({"content": "Summarise the applicant's file. ".repeat(400)});
    // 40,000 characters: above the default blob threshold (16,384 bytes).
    let mut blob = event("v3-blob");
    blob["input"] = serde_json::json!({"content": "Summarise the applicant's file. ".repeat(1250), "role": "user"});
    server.post_events(&[small.clone(), large.clone(), blob.clone()]);
    server.wait_size(3);
    let mut flags = Vec::new();
    let mut blobs = Vec::new();
    for (index, posted) in [(0, &small), (1, &large), (2, &blob)] {
        let file = dir.path().join(format!("event{index}.json"));
        std::fs::write(&file, serde_json::to_vec(posted).unwrap()).unwrap();
        let out = Command::new("python3")
            .arg(&script)
            .args([&server.url, &server.token, &index.to_string()])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "entry {index}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        flags.push(report["flags"].as_u64().unwrap());
        blobs.push(report["blobs"].clone());
    }
    // Both compressed with the openings dictionary (flags 0x03; a new log
    // is at gate 5): with it even the small event's opening gets smaller.
    assert_eq!(
        flags[..2],
        [3, 3],
        "both stored compressed with the dictionary"
    );
    assert_eq!(blobs[..2], [serde_json::json!([]), serde_json::json!([])]);
    assert_eq!(
        blobs[2],
        serde_json::json!([{"pointer": "/input/content", "size": 40_002, "chunk_flags": [1]}]),
        "the large member is one blob, its chunk compressed"
    );
}
