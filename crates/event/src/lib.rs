//! The AI audit event as the ledger stores it: validation at ingest and the
//! canonical entry encoding that the Merkle log hashes.
//!
//! This crate is the single place where an incoming event is judged
//! ([`prepare`]) and turned into log entry bytes ([`encode_entry`]). It knows
//! nothing of storage or HTTP. The full AI event schema (actors, models,
//! outcomes) extends [`validate`]; the entry format is versioned and
//! documented in `docs/format.md`.

mod canonical;

pub use canonical::write_canonical;

use aiaudit_tlog::{record_hash, Hash, MAX_ENTRY_SIZE};
use serde_json::{Map, Value};

/// The entry format version written by this crate (`"v"` in the entry).
pub const ENTRY_VERSION: u64 = 1;

/// Longest accepted event id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Why an event was refused, with a JSON Pointer (RFC 6901) to the field at fault,
/// relative to the event itself (e.g. `/id`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {detail}")]
pub struct EventError {
    pub pointer: String,
    pub detail: String,
}

impl EventError {
    fn new(pointer: &str, detail: impl Into<String>) -> Self {
        EventError {
            pointer: pointer.to_string(),
            detail: detail.into(),
        }
    }
}

/// An event that passed validation, with its entry bytes and leaf hash.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    pub id: String,
    pub entry: Vec<u8>,
    pub leaf: Hash,
}

/// Validates one event and encodes it as a log entry. The one entry point for
/// everything that accepts events.
pub fn prepare(event: Value) -> Result<PreparedEvent, EventError> {
    let Value::Object(fields) = event else {
        return Err(EventError::new("", "an event must be a JSON object"));
    };
    let id = validate(&fields)?;
    let entry = encode_entry(&fields);
    if entry.len() > MAX_ENTRY_SIZE {
        return Err(EventError::new(
            "",
            format!(
                "the encoded event is {} bytes; the most a log entry holds is {MAX_ENTRY_SIZE}",
                entry.len()
            ),
        ));
    }
    let leaf = record_hash(&entry);
    Ok(PreparedEvent { id, entry, leaf })
}

/// Checks the fields the ledger itself relies on and returns the event id.
pub fn validate(fields: &Map<String, Value>) -> Result<String, EventError> {
    let id = match fields.get("id") {
        None => return Err(EventError::new("/id", "required field is missing")),
        Some(Value::String(s)) => s,
        Some(_) => return Err(EventError::new("/id", "must be a string")),
    };
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(EventError::new(
            "/id",
            format!("must be 1 to {MAX_ID_LEN} bytes long"),
        ));
    }
    if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(EventError::new(
            "/id",
            "must not contain whitespace or control characters",
        ));
    }
    match fields.get("time") {
        None => return Err(EventError::new("/time", "required field is missing")),
        Some(Value::String(s)) => {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|e| {
                    EventError::new("/time", format!("must be an RFC 3339 timestamp: {e}"))
                })?;
        }
        Some(_) => {
            return Err(EventError::new(
                "/time",
                "must be an RFC 3339 timestamp string",
            ))
        }
    }
    Ok(id.clone())
}

/// The canonical entry bytes of an event (format v1, see docs/format.md):
/// the canonical JSON of `{"event": <event>, "v": 1}`.
pub fn encode_entry(event: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"event\":");
    canonical::write_object(&mut out, event);
    out.extend_from_slice(b",\"v\":1}");
    out
}

/// A decoded log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub version: u64,
    pub event: Map<String, Value>,
}

/// Decodes entry bytes written by [`encode_entry`]. Refuses versions it does not know.
pub fn decode_entry(entry: &[u8]) -> Result<Entry, EventError> {
    let value: Value = serde_json::from_slice(entry)
        .map_err(|e| EventError::new("", format!("entry is not JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(EventError::new("", "entry is not a JSON object"));
    };
    let version = obj
        .get("v")
        .and_then(Value::as_u64)
        .ok_or_else(|| EventError::new("/v", "entry has no format version"))?;
    if version != ENTRY_VERSION {
        return Err(EventError::new(
            "/v",
            format!("unknown entry format version {version}"),
        ));
    }
    let Some(Value::Object(event)) = obj.remove("event") else {
        return Err(EventError::new("/event", "entry has no event object"));
    };
    Ok(Entry { version, event })
}

/// The event id stored in an entry.
pub fn entry_id(entry: &[u8]) -> Result<String, EventError> {
    let decoded = decode_entry(entry)?;
    match decoded.event.get("id") {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(EventError::new("/event/id", "entry has no event id")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prepares_a_minimal_event() {
        let e =
            prepare(json!({"time": "2026-11-27T09:14:03.120Z", "id": "a1", "b": [1, 2.5, "x"]}))
                .unwrap();
        assert_eq!(e.id, "a1");
        assert_eq!(
            std::str::from_utf8(&e.entry).unwrap(),
            r#"{"event":{"b":[1,2.5,"x"],"id":"a1","time":"2026-11-27T09:14:03.120Z"},"v":1}"#
        );
        assert_eq!(e.leaf, record_hash(&e.entry));
        let back = decode_entry(&e.entry).unwrap();
        assert_eq!(back.event.get("id"), Some(&json!("a1")));
        assert_eq!(entry_id(&e.entry).unwrap(), "a1");
    }

    #[test]
    fn key_order_and_whitespace_do_not_change_the_entry() {
        let a: Value =
            serde_json::from_str(r#"{"id":"x","time":"2026-01-01T00:00:00Z","z":{"b":1,"a":2}}"#)
                .unwrap();
        let b: Value = serde_json::from_str(
            r#"{ "z" : { "a" : 2, "b" : 1 }, "time":"2026-01-01T00:00:00Z", "id":"x" }"#,
        )
        .unwrap();
        assert_eq!(prepare(a).unwrap().entry, prepare(b).unwrap().entry);
    }

    #[test]
    fn names_the_field_at_fault() {
        let cases = [
            (json!({"time": "2026-01-01T00:00:00Z"}), "/id"),
            (json!({"id": 5, "time": "2026-01-01T00:00:00Z"}), "/id"),
            (json!({"id": "", "time": "2026-01-01T00:00:00Z"}), "/id"),
            (json!({"id": "a b", "time": "2026-01-01T00:00:00Z"}), "/id"),
            (
                json!({"id": "x".repeat(129), "time": "2026-01-01T00:00:00Z"}),
                "/id",
            ),
            (json!({"id": "a"}), "/time"),
            (json!({"id": "a", "time": "yesterday"}), "/time"),
            (json!({"id": "a", "time": 17}), "/time"),
            (json!(["not", "an", "object"]), ""),
        ];
        for (event, pointer) in cases {
            let err = prepare(event.clone()).unwrap_err();
            assert_eq!(err.pointer, pointer, "{event}");
        }
    }

    #[test]
    fn refuses_entries_over_the_tile_limit() {
        let big = "x".repeat(MAX_ENTRY_SIZE);
        let err =
            prepare(json!({"id": "a", "time": "2026-01-01T00:00:00Z", "pad": big})).unwrap_err();
        assert_eq!(err.pointer, "");
        assert!(err.detail.contains("65535"));
    }

    #[test]
    fn refuses_unknown_entry_versions() {
        assert!(decode_entry(br#"{"event":{},"v":2}"#).is_err());
        assert!(decode_entry(b"not json").is_err());
    }
}
