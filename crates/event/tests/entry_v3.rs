//! docs/vectors/entry-v3.json: the v3 entry format's test vectors. The
//! uncompressed ones must come out byte for byte; the compressed ones must
//! open (zstd output is not pinned across zstd versions). Two of them hold
//! a member stored out of line as a blob (docs/format.md, "Blobs"), with
//! the blob's stored bytes. Regenerate after a deliberate format change (a
//! new version, never an edit) with
//! `AIAUDIT_WRITE_VECTORS=1 cargo test -p aiaudit-event --test entry_v3`.

use aiaudit_event::blob;
use aiaudit_event::envelope::{decode_stored, DataKey, SEAL_RANDOM_LEN};
use aiaudit_event::sealed_v3::{
    plan_blobs, put_member, seal, take_member, BlobRef, Compression, SealInput, SealedBlob,
    FLAG_DICTIONARY, FLAG_ZSTD,
};
use serde_json::{json, Map, Value};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/vectors/entry-v3.json"
);

/// The ledger's default `blob_threshold`.
const THRESHOLD: usize = 16 << 10;

struct Case {
    name: &'static str,
    compress: Compression,
    event: Value,
    /// `blob_fields`: members stored out of line whatever their size (the
    /// blob vectors' content is a few KB, under the threshold, to keep the
    /// file small).
    blob_fields: &'static [&'static str],
}

fn cases() -> Vec<Case> {
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
    // A conversation of a few KB, with characters JSON escapes and non-ASCII.
    let conversation: String = (1..=30)
        .map(|i| {
            format!(
                "Turn {i}: page {i} of the applicant's file says \"income verified\"; Ọ̀rọ̀ ní èdè Yorùbá.\n"
            )
        })
        .collect();
    let mut repetitive = event(&"The applicant's income covers the repayments. ".repeat(80));
    repetitive["output"] = json!({"content": "Approved: income covers the repayments. ".repeat(6)});
    vec![
        Case {
            name: "uncompressed",
            compress: Compression::Off,
            event: event("Is applicant 42 eligible? Ọ̀rọ̀ ní èdè Yorùbá."),
            blob_fields: &[],
        },
        Case {
            name: "compressed",
            compress: Compression::Zstd,
            event: event(&"The applicant's income covers the repayments. ".repeat(12)),
            blob_fields: &[],
        },
        Case {
            name: "compressed with the openings dictionary",
            compress: Compression::ZstdDictionary,
            event: event("Summarise the applicant's file and say whether the income covers the repayments; Ọ̀rọ̀ ní èdè Yorùbá."),
            blob_fields: &[],
        },
        Case {
            name: "blob",
            compress: Compression::Off,
            event: event(&conversation),
            blob_fields: &["/input/content"],
        },
        Case {
            name: "blob, compressed",
            compress: Compression::Zstd,
            event: repetitive,
            blob_fields: &["/input/content"],
        },
    ]
}

const KEY: [u8; 32] = *b"aiaudit v3 test vector data key!";
const KEY_ID: u64 = 5;

/// Blob `n`'s salt and chunk nonce prefix (random in production).
fn blob_randoms(n: usize) -> ([u8; 32], [u8; 16]) {
    let base = 0x80u8.wrapping_add((n as u8).wrapping_mul(0x30));
    (
        std::array::from_fn(|i| base.wrapping_add(i as u8)),
        std::array::from_fn(|i| base.wrapping_add(0x20 + i as u8)),
    )
}

/// Takes the planned members out of `event` and seals each into a blob,
/// as the ledger does before sealing the entry.
fn seal_blobs(
    event: &mut Map<String, Value>,
    plan: &[String],
    compress: bool,
) -> (Vec<SealedBlob>, Vec<Value>) {
    let mut sealed = Vec::new();
    let mut recorded = Vec::new();
    for (n, pointer) in plan.iter().enumerate() {
        let member = take_member(event, pointer).unwrap();
        let mut content = Vec::new();
        aiaudit_event::write_canonical(&mut content, &member);
        let (salt, prefix) = blob_randoms(n);
        let id = blob::commitment(&salt, &content);
        let mut stored = Vec::new();
        let stored_sha256 = blob::seal::<()>(
            &content,
            &id,
            DataKey {
                id: KEY_ID,
                key: &KEY,
            },
            prefix,
            compress,
            |b| {
                stored.extend_from_slice(b);
                Ok(())
            },
        )
        .unwrap();
        recorded.push(json!({
            "pointer": pointer,
            "size": content.len(),
            "salt_hex": hex::encode(salt),
            "nonce_prefix_hex": hex::encode(prefix),
            "id_hex": hex::encode(id),
            "stored_hex": hex::encode(&stored),
            "stored_sha256_hex": hex::encode(stored_sha256),
        }));
        sealed.push(SealedBlob {
            reference: BlobRef {
                pointer: pointer.clone(),
                size: content.len() as u64,
                commitment: id,
                stored: stored_sha256,
            },
            salt,
        });
    }
    (sealed, recorded)
}

fn build() -> Value {
    let random: [u8; SEAL_RANDOM_LEN] = std::array::from_fn(|i| i as u8);
    let vectors: Vec<Value> = cases()
        .into_iter()
        .map(|case| {
            let checked = aiaudit_event::check(&case.event).unwrap();
            let mut rest = case.event.as_object().unwrap().clone();
            let fields: Vec<String> = case.blob_fields.iter().map(|f| f.to_string()).collect();
            let plan = plan_blobs(&rest, checked.canonical_len, THRESHOLD, &fields);
            assert_eq!(plan, fields, "{}: the planned blobs", case.name);
            let compressed = case.compress != Compression::Off;
            let (blobs, recorded) = seal_blobs(&mut rest, &plan, compressed);
            let p = seal(
                &SealInput {
                    event: &rest,
                    checked: &checked,
                    signature: None,
                    appended_by: Some("token:0f3a"),
                    redacted: &[],
                    subject_tag: Some("hmac-sha256:5d1e"),
                    compress: case.compress,
                    blobs: &blobs,
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
            let mut v = json!({
                "name": case.name,
                "compressed": compressed,
                "event": case.event,
                "event_canonical": String::from_utf8(aiaudit_event::canonical_event(&case.event)).unwrap(),
                "entry_hex": hex::encode(&p.entry),
                "leaf_hash_hex": hex::encode(p.leaf),
                "opening_hex": hex::encode(&opened.opening),
            });
            if !recorded.is_empty() {
                v["blobs"] = Value::Array(recorded);
            }
            if case.compress == Compression::ZstdDictionary {
                v["dictionary"] = json!("openings-1");
            }
            v
        })
        .collect();
    json!({
        "description": "aiaudit entry format v3 and its blobs (docs/format.md). random_hex = nonce (24 bytes) then salt (32 bytes), the same for every vector. A vector with blobs lists, per blob in the entry's order: its pointer, size (bytes of the member's canonical JSON), salt, chunk nonce prefix, id (the commitment SHA-256(salt || content)), stored bytes and their SHA-256; its event is whole, the blob content put back. A vector with \"dictionary\": \"openings-1\" was compressed with the openings dictionary (flags 0x03; crates/event/dictionaries/openings-1.zdict).",
        "key_hex": hex::encode(KEY),
        "key_id": KEY_ID,
        "random_hex": hex::encode(random),
        "appended_by": "token:0f3a",
        "subject_tag": "hmac-sha256:5d1e",
        "vectors": vectors,
    })
}

fn hex_field(v: &Value, name: &str) -> Vec<u8> {
    hex::decode(v[name].as_str().unwrap()).unwrap()
}

/// Opens a vector of the file as a reader would: the entry with the key,
/// then each blob it lists from the file's stored bytes (their SHA-256
/// against the entry's, then the chunks with the key, then the content
/// against the commitment), put back into the event.
fn open_vector(want: &Value) -> (Map<String, Value>, Vec<u8>) {
    let entry = hex_field(want, "entry_hex");
    let stored = decode_stored(&entry).unwrap();
    assert_eq!(stored.version, 3);
    let sealed = stored.sealed.unwrap();
    let opened = sealed.open(&KEY).unwrap();
    let refs = sealed.v3.as_ref().unwrap().blobs.clone();
    let listed = want["blobs"].as_array().cloned().unwrap_or_default();
    assert_eq!(refs.len(), listed.len(), "{}: blobs listed", want["name"]);
    assert_eq!(opened.blobs.len(), refs.len());
    let mut event = opened.entry.event;
    for ((r, slot), b) in refs.iter().zip(&opened.blobs).zip(&listed) {
        assert_eq!(r.pointer, b["pointer"].as_str().unwrap());
        assert_eq!(slot.pointer, r.pointer);
        assert_eq!(r.size, b["size"].as_u64().unwrap());
        assert_eq!(hex::encode(r.commitment), b["id_hex"]);
        assert_eq!(hex::encode(r.stored), b["stored_sha256_hex"]);
        assert_eq!(hex::encode(slot.salt), b["salt_hex"]);
        let bytes = hex_field(b, "stored_hex");
        let header = blob::Header::parse(&bytes).unwrap();
        assert_eq!(hex::encode(header.nonce_prefix), b["nonce_prefix_hex"]);
        assert_eq!(
            bytes[blob::HEADER_LEN] & blob::CHUNK_ZSTD != 0,
            want["compressed"] == true,
            "{}: the chunk's compression flag",
            want["name"]
        );
        let source = |at: u64, len: usize| -> Result<Vec<u8>, String> {
            let at = at as usize;
            bytes
                .get(at..at + len)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| "ends early".to_string())
        };
        let len = bytes.len() as u64;
        // With no key: the stored bytes are the ones the entry logs.
        assert_eq!(blob::stored_hash(&source, len).unwrap(), r.stored);
        let key = DataKey {
            id: sealed.key,
            key: &KEY,
        };
        let content = blob::open_verified(
            &source,
            len,
            &r.stored,
            &r.commitment,
            &slot.salt,
            key,
            r.size,
        )
        .unwrap();
        put_member(
            &mut event,
            &r.pointer,
            serde_json::from_slice(&content).unwrap(),
        )
        .unwrap();
    }
    (event, opened.opening)
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
    for (name, value) in built.as_object().unwrap() {
        if name != "vectors" {
            assert_eq!(value, &file[name], "{name} changed");
        }
    }
    let (built, file) = (
        built["vectors"].as_array().unwrap(),
        file["vectors"].as_array().unwrap(),
    );
    assert_eq!(built.len(), file.len(), "the number of vectors");
    for (got, want) in built.iter().zip(file) {
        assert_eq!(got["name"], want["name"]);
        // Every vector in the file opens to its event, whatever zstd wrote it.
        let (event, opening) = open_vector(want);
        assert_eq!(Value::Object(event), want["event"], "{}", want["name"]);
        assert_eq!(hex::encode(&opening), want["opening_hex"]);
        if want["compressed"] == false {
            assert_eq!(got, want, "the {} vector changed", want["name"]);
        } else {
            let entry = hex_field(want, "entry_hex");
            let dictionary = want["dictionary"] == "openings-1";
            let flags = FLAG_ZSTD | if dictionary { FLAG_DICTIONARY } else { 0 };
            assert_eq!(entry[1], flags, "the {} vector's flags", want["name"]);
            assert_eq!(got["opening_hex"], want["opening_hex"]);
            assert_eq!(got["event"], want["event"]);
            // All of a blob but its stored bytes is pinned: they hold zstd output.
            let pinned = |v: &Value| -> Vec<Value> {
                let mut blobs = v["blobs"].as_array().cloned().unwrap_or_default();
                for b in &mut blobs {
                    let b = b.as_object_mut().unwrap();
                    b.remove("stored_hex");
                    b.remove("stored_sha256_hex");
                }
                blobs
            };
            assert_eq!(pinned(got), pinned(want), "{}", want["name"]);
        }
    }
}
