//! Emitter keys and signed batches: proof of origin for every event, checked
//! by the ledger and verifiable offline afterwards.

use crate::harness::*;
use aiaudit_event::signature::{sign_batch, verify_entry_signature};
use aiaudit_tlog::Signer;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub fn keygen(dir: &Path, name: &str) -> (String, std::path::PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let out = aiaudit(&[
        "emitter",
        "keygen",
        "--name",
        name,
        "--out",
        key.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    (stdout(&out).trim().to_string(), key)
}

pub fn register(server: &Server, name: &str, vkey: &str) {
    let out = aiaudit(&[
        "emitter",
        "register",
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--name",
        name,
        "--public-key",
        vkey,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Posts a batch signed (or not) the way the SDK does.
pub fn post_signed(
    server: &Server,
    events: &[Value],
    emitter: &str,
    sig: &str,
) -> reqwest::blocking::Response {
    let body: String = events.iter().map(|e| e.to_string() + "\n").collect();
    server
        .authorized(client().post(format!("{}/v1/events", server.url)))
        .header("content-type", "application/x-ndjson")
        .header("aiaudit-emitter", emitter)
        .header("aiaudit-signature", sig)
        .body(body)
        .send()
        .unwrap()
}

pub fn signature_of(signer: &Signer, events: &[Value]) -> String {
    let canonical: Vec<Vec<u8>> = events
        .iter()
        .map(|e| {
            let mut out = Vec::new();
            aiaudit_event::write_canonical(&mut out, e);
            out
        })
        .collect();
    // No format header: what emitters written before v2 send (v1).
    B64.encode(sign_batch(
        signer,
        aiaudit_event::signature::SignatureFormat::V1,
        &canonical,
    ))
}

#[test]
fn signed_batches_prove_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--require-signed-tenant", "bank"],
    );
    let (vkey, key_file) = keygen(dir.path(), "edge-gw-7");
    assert!(vkey.starts_with("edge-gw-7+"));
    register(&server, "edge-gw-7", &vkey);
    let signer = Signer::parse(std::fs::read_to_string(&key_file).unwrap().trim()).unwrap();

    // Through `aiaudit emit --signing-key`: every stored event carries a valid proof of origin.
    let file = dir.path().join("events.ndjson");
    let lines: String = (0..10)
        .map(|i| serde_json::to_string(&event(&format!("signed-{i}"))).unwrap() + "\n")
        .collect();
    std::fs::write(&file, lines).unwrap();
    let out = aiaudit(&[
        "emit",
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--signing-key",
        key_file.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..10 {
        let e = server.get_json_when_ready(&format!("/v1/events/{i}?proof=true"));
        assert_eq!(e["emitter_signature"]["status"], "valid", "{e}");
        // The SDK signs in format v2 (RFC 8785).
        assert_eq!(
            e["emitter_signature"]["signature"]["format"],
            "aiaudit-batch-v2"
        );
        // Offline: from the entry bytes, the opening the ledger handed out
        // (no key needed) and the emitter's public key.
        let entry = B64.decode(e["entry"].as_str().unwrap()).unwrap();
        let sealed = aiaudit_event::envelope::decode_stored(&entry)
            .unwrap()
            .sealed
            .unwrap();
        let opening = B64.decode(e["opening"].as_str().unwrap()).unwrap();
        let decoded = sealed.check_opening(opening).unwrap().entry;
        let key =
            verify_entry_signature(&decoded.event, decoded.signature.as_ref().unwrap()).unwrap();
        assert_eq!(key, vkey);
    }

    // A tampered signature, an unknown emitter, a missing header: refused, nothing stored.
    let batch: Vec<Value> = (0..3).map(|i| event(&format!("t-{i}"))).collect();
    let good = signature_of(&signer, &batch);
    let mut bad_sig = B64.decode(&good).unwrap();
    bad_sig[0] ^= 1;
    let r = post_signed(&server, &batch, "edge-gw-7", &B64.encode(&bad_sig));
    assert_eq!(r.status(), 401);
    assert!(r.json::<Value>().unwrap()["detail"]
        .as_str()
        .unwrap()
        .contains("does not verify"));
    let mut changed = batch.clone();
    changed[1]["attributes"]["n"] = json!("changed in transit");
    assert_eq!(
        post_signed(&server, &changed, "edge-gw-7", &good).status(),
        401
    );
    let r = post_signed(&server, &batch, "nobody", &good);
    assert_eq!(r.status(), 403);
    assert!(r.json::<Value>().unwrap()["detail"]
        .as_str()
        .unwrap()
        .contains("unknown emitter"));
    let r = server
        .authorized(client().post(format!("{}/v1/events", server.url)))
        .header("aiaudit-emitter", "edge-gw-7")
        .json(&batch)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(server.get_json("/v1/info")["sequenced_size"], 10);

    // The genuine batch lands; replayed, it appends nothing.
    let r = post_signed(&server, &batch, "edge-gw-7", &good);
    assert_eq!(r.status(), 200);
    let replay: Value = post_signed(&server, &batch, "edge-gw-7", &good)
        .json()
        .unwrap();
    assert!(replay["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["duplicate"] == true));
    assert_eq!(server.get_json("/v1/info")["sequenced_size"], 13);

    // A tenant that requires signed batches refuses unsigned events.
    let mut bank = event("bank-1");
    bank["tenant"] = json!("bank");
    let r = server.post(
        "/v1/events",
        "application/json",
        serde_json::to_vec(&json!([bank])).unwrap(),
    );
    assert_eq!(r.status(), 401);
    let sig = signature_of(&signer, std::slice::from_ref(&bank));
    assert_eq!(
        post_signed(&server, &[bank], "edge-gw-7", &sig).status(),
        200
    );

    // The agent signs what it forwards.
    let spool = dir.path().join("spool2");
    let agent = start_agent_with(
        &server.url,
        &server.token,
        &spool,
        &["--signing-key", key_file.to_str().unwrap()],
    );
    let r = agent
        .authorized(client().post(format!("{}/v1/events", agent.url)))
        .json(&json!([event("via-agent-1"), {"tenant": "bank", "id": "bank-2", "time": "2026-11-27T00:00:00Z",
                       "source": {"name": "a"}, "actor": {"id": "b"}, "action": "model.invoke"}]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.get_json("/v1/info")["sequenced_size"]
        .as_u64()
        .unwrap()
        < 16
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent never delivered"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    server.wait_size(16);
    let e = server.get_json("/v1/events/15");
    assert_eq!(e["emitter_signature"]["status"], "valid");
    assert_eq!(
        e["emitter_signature"]["signature"]["format"],
        "aiaudit-batch-v2"
    );

    // An integer no double holds cannot be covered by the agent's RFC 8785
    // signature: refused at the agent's door, naming it, nothing spooled.
    let mut big = event("via-agent-big");
    big["attributes"] = serde_json::from_str(r#"{"tokens":9007199254740993}"#).unwrap();
    let r = agent
        .authorized(client().post(format!("{}/v1/events", agent.url)))
        .json(&json!([event("via-agent-2"), big]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let problem: Value = r.json().unwrap();
    assert_eq!(
        problem["errors"][0]["pointer"], "/1/attributes/tokens",
        "{problem}"
    );
    let status = agent
        .authorized(client().get(format!("{}/v1/agent/status", agent.url)))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert_eq!(status["accepted"], 2, "{status}");
}

#[test]
fn hostile_bodies_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    // Not UTF-8.
    let r = server.post(
        "/v1/events",
        "application/json",
        b"[{\"id\": \"\xff\xfe\"}]".to_vec(),
    );
    assert_eq!(r.status(), 400);
    // Nested deeper than the schema allows, and deeper than the parser allows.
    let mut deep = json!("x");
    for _ in 0..20 {
        deep = json!({ "a": deep });
    }
    let mut e = event("deep");
    e["attributes"] = deep;
    let r = server.post(
        "/v1/events",
        "application/json",
        serde_json::to_vec(&json!([e])).unwrap(),
    );
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().unwrap()["errors"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("levels deep"));
    let very_deep = "[".repeat(5000) + &"]".repeat(5000);
    assert_eq!(
        server
            .post("/v1/events", "application/json", very_deep.into_bytes())
            .status(),
        400
    );
    assert_eq!(server.get_json("/v1/info")["sequenced_size"], 0);
}
