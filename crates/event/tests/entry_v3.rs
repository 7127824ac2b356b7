//! docs/vectors/entry-v3.json: the v3 entry format's test vectors. The
//! uncompressed one must come out byte for byte; the compressed one must
//! open (zstd output is not pinned across zstd versions). Regenerate after a
//! deliberate format change (a new version, never an edit) with
//! `AIAUDIT_WRITE_VECTORS=1 cargo test -p aiaudit-event --test entry_v3`.

use aiaudit_event::envelope::{decode_stored, DataKey, SEAL_RANDOM_LEN};
use aiaudit_event::sealed_v3::{seal, SealInput};
use serde_json::{json, Value};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/vectors/entry-v3.json"
);

fn cases() -> Vec<(&'static str, bool, Value)> {
    let event = |content: &str| {
        json!({"id": "0190f5a2-7c1e-7000-8000-000000000001", "time": "2026-12-02T08:00:00.000Z",
               "tenant": "acme", "source": {"name": "loan-assistant", "version": "3.2.0"},
               "actor": {"id": "agent-7", "type": "agent"}, "action": "model.invoke",
               "subject": "customer-42",
               "ai": {"gen_ai.request.model": "gpt-x", "gen_ai.usage.input_tokens": 812,
                      "gen_ai.temperature": 0.2},
               "input": {"content": content},
               "outcome": {"status": "success", "reason": "approved"}})
    };
    vec![
        (
            "uncompressed",
            false,
            event("Is applicant 42 eligible? Ọ̀rọ̀ ní èdè Yorùbá."),
        ),
        (
            "compressed",
            true,
            event(&"The applicant's income covers the repayments. ".repeat(12)),
        ),
    ]
}

const KEY: [u8; 32] = *b"aiaudit v3 test vector data key!";
const KEY_ID: u64 = 5;

fn build() -> Value {
    let random: [u8; SEAL_RANDOM_LEN] = std::array::from_fn(|i| i as u8);
    let vectors: Vec<Value> = cases()
        .into_iter()
        .map(|(name, compress, event)| {
            let checked = aiaudit_event::check(&event).unwrap();
            let p = seal(
                &SealInput {
                    event: event.as_object().unwrap(),
                    checked: &checked,
                    signature: None,
                    appended_by: Some("token:0f3a"),
                    redacted: &[],
                    subject_tag: Some("hmac-sha256:5d1e"),
                    compress,
                },
                DataKey {
                    id: KEY_ID,
                    key: &KEY,
                },
                &random,
            )
            .unwrap();
            let opened = decode_stored(&p.entry)
                .unwrap()
                .sealed
                .unwrap()
                .open(&KEY)
                .unwrap();
            json!({
                "name": name,
                "compressed": compress,
                "event": event,
                "event_canonical": String::from_utf8(checked.canonical).unwrap(),
                "entry_hex": hex::encode(&p.entry),
                "leaf_hash_hex": hex::encode(p.leaf),
                "opening_hex": hex::encode(&opened.opening),
            })
        })
        .collect();
    json!({
        "description": "aiaudit entry format v3 (docs/format.md). random_hex = nonce (24 bytes) then salt (32 bytes).",
        "key_hex": hex::encode(KEY),
        "key_id": KEY_ID,
        "random_hex": hex::encode(random),
        "appended_by": "token:0f3a",
        "subject_tag": "hmac-sha256:5d1e",
        "vectors": vectors,
    })
}

#[test]
fn v3_vectors_match_the_documented_file() {
    let built = build();
    if std::env::var_os("AIAUDIT_WRITE_VECTORS").is_some() {
        std::fs::write(
            VECTORS,
            serde_json::to_string_pretty(&built).unwrap() + "\n",
        )
        .unwrap();
    }
    let file: Value = serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    for (got, want) in built["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .zip(file["vectors"].as_array().unwrap())
    {
        let stored_entry = hex::decode(want["entry_hex"].as_str().unwrap()).unwrap();
        // Every vector in the file opens to its event, whatever zstd wrote it.
        let stored = decode_stored(&stored_entry).unwrap();
        assert_eq!(stored.version, 3);
        let opened = stored.sealed.unwrap().open(&KEY).unwrap();
        assert_eq!(Value::Object(opened.entry.event), want["event"]);
        assert_eq!(hex::encode(&opened.opening), want["opening_hex"]);
        if want["compressed"] == false {
            assert_eq!(got, want, "the uncompressed vector changed");
        } else {
            assert_eq!(
                stored_entry[1] & 1,
                1,
                "the compressed vector is compressed"
            );
            assert_eq!(got["opening_hex"], want["opening_hex"]);
        }
    }
}
