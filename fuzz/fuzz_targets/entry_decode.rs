//! Stored entry bytes as anyone reading a log gets them (entry bundles,
//! backups, export bundles): v1, v2 and v3 decoding (v3's binary header,
//! decryption and zstd frames under the test vectors' key), the search index's row,
//! emitter batch signatures and sealed openings.
//!
//! Properties: no panic; the two decoders agree on v1 entries; the
//! canonical encoding of a decoded event decodes to the same event and is a
//! fixed point.
#![no_main]

use aiaudit_event::envelope::{decode_stored, Sealed};
use libfuzzer_sys::fuzz_target;

const KEY: [u8; 32] = [7; 32];
/// docs/vectors/entry-v3.json's key: the seeds from its vectors open.
const VECTOR_KEY: [u8; 32] = *b"aiaudit v3 test vector data key!";

fuzz_target!(|data: &[u8]| {
    // The same bytes as the opening of a sealed entry: with its commitment
    // computed here, the check reaches the parsing a forged commitment
    // would otherwise stop.
    let commitment: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes");
    let sealed = Sealed {
        key: 1,
        nonce: [0; 24],
        ct: Vec::new(),
        commitment,
        v3: None,
    };
    if let Ok(opened) = sealed.check_opening(data.to_vec()) {
        assert_eq!(opened.opening, data);
    }
    // And as a v3 opening: clear fields merged back, blob slots read.
    let mut clear = serde_json::Map::new();
    clear.insert("id".into(), "e1".into());
    clear.insert("source".into(), serde_json::json!({"name": "app"}));
    let v3 = Sealed {
        v3: Some(aiaudit_event::sealed_v3::V3 {
            flags: 0,
            clear,
            blobs: Vec::new(),
            header: Vec::new(),
        }),
        ..sealed
    };
    if let Ok(opened) = v3.check_opening(data.to_vec()) {
        assert_eq!(opened.entry.event["id"], "e1");
        assert_eq!(opened.entry.event["source"]["name"], "app");
    }

    let _ = aiaudit_event::entry_id(data);
    let _ = aiaudit_index::row_from_entry(0, data);
    let plain = aiaudit_event::decode_entry(data);
    let Ok(stored) = decode_stored(data) else {
        return;
    };
    if let Ok(plain) = &plain {
        assert_eq!(stored.version, 1);
        assert_eq!(stored.plain.as_ref(), Some(plain));
        assert_eq!(&stored.index, &plain.event);
        // The canonical encoding of any event read back is that event, and
        // encoding it again gives the same bytes (what the leaf hash covers).
        let canonical = aiaudit_event::encode_entry(&plain.event);
        let again = aiaudit_event::decode_entry(&canonical).expect("canonical entry decodes");
        assert_eq!(again.event, plain.event);
        assert_eq!(aiaudit_event::encode_entry(&again.event), canonical);
        if let Some(sig) = &plain.signature {
            let _ = aiaudit_event::signature::verify_entry_signature(&plain.event, sig);
        }
    }
    if let Some(sealed) = &stored.sealed {
        for key in [&KEY, &VECTOR_KEY] {
            if let Ok(opened) = sealed.open(key) {
                let _ = aiaudit_event::envelope::index_matches(&stored.index, &opened.entry.event);
            }
        }
    }
});
