//! What the store's integration tests share: small entries with their ids.

use aiaudit_store::NewEntry;
use aiaudit_tlog::record_hash;

/// An entry for event `id` of tenant `t`, as the server would log it (a
/// plain v1 entry); its dedup key is [`key`].
pub fn entry(id: &str) -> NewEntry {
    let bytes =
        format!(r#"{{"event":{{"id":"{id}","tenant":"t","time":"2026-01-01T00:00:00Z"}},"v":1}}"#)
            .into_bytes();
    NewEntry {
        key: key(id),
        leaf: record_hash(&bytes),
        entry: bytes,
    }
}

/// Entries for events `e{from}` .. `e{to - 1}`.
pub fn batch(from: usize, to: usize) -> Vec<NewEntry> {
    (from..to).map(|i| entry(&format!("e{i}"))).collect()
}

/// The dedup key of [`entry`]`(id)`.
pub fn key(id: &str) -> String {
    aiaudit_event::dedup_key("t", id)
}
