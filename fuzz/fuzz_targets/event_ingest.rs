//! POST /v1/events bodies: a JSON array (or one object) or NDJSON, then
//! schema validation and the entry encoding, as ingest does them.
//!
//! Properties: no panic; every accepted event's canonical length is measured
//! right, its entry decodes back to the same canonical bytes, names the same id, and seals and opens (format v2)
//! to the same event.
#![no_main]

use aiaudit_event::envelope::{decode_stored, index_matches, seal, DataKey, SEAL_RANDOM_LEN};
use aiaudit_event::sealed_v3::SealInput;
use libfuzzer_sys::fuzz_target;

const KEY: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    // First byte: the Content-Type (NDJSON or JSON); the rest is the body.
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let Ok(events) = aiaudit_server::extract::parse_events(body, mode & 1 == 1, 10_000) else {
        return;
    };
    let _ = aiaudit_ledger::append::validate_batch(&events);
    for event in events {
        let Ok(checked) = aiaudit_event::check(&event) else {
            continue;
        };
        // The length ingest measures without writing is the written one.
        assert_eq!(
            checked.canonical_len,
            aiaudit_event::canonical_event(&event).len()
        );
        let Ok(prepared) = aiaudit_event::finish(&event, checked.clone(), None, None) else {
            continue;
        };
        let entry = aiaudit_event::decode_entry(&prepared.entry).expect("own entry decodes");
        // Canonical JSON is a fixed point: encoding the decoded event again
        // must give the very bytes the leaf hash covers.
        assert_eq!(aiaudit_event::encode_entry(&entry.event), prepared.entry);
        assert_eq!(
            aiaudit_event::entry_id(&prepared.entry).expect("own entry has an id"),
            prepared.id
        );
        aiaudit_index::row_from_entry(0, &prepared.entry).expect("own entry indexes");

        let random = [3u8; SEAL_RANDOM_LEN];
        let key = DataKey { id: 1, key: &KEY };
        let Some(object) = event.as_object() else {
            continue;
        };
        let input = SealInput {
            appended_by: Some("token:fuzz"),
            ..SealInput::new(object, &checked)
        };
        let Ok(sealed) = seal(&input, key, &random) else {
            continue;
        };
        let stored = decode_stored(&sealed.entry).expect("own sealed entry decodes");
        assert_eq!(stored.id(), Some(prepared.id.as_str()));
        let opened = stored
            .sealed
            .as_ref()
            .expect("a v2 entry is sealed")
            .open(&KEY)
            .expect("opens with its own key");
        assert_eq!(opened.entry.event, entry.event);
        assert!(index_matches(&stored.index, &entry.event));
        aiaudit_index::row_from_entry(0, &sealed.entry).expect("own sealed entry indexes");
    }
});
