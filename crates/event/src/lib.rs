//! The AI audit event as the ledger stores it: validation at ingest and the
//! canonical entry encoding that the Merkle log hashes.
//!
//! This crate is the single place where an incoming event is judged
//! ([`prepare`]) and turned into log entry bytes ([`encode_entry`]). It knows
//! nothing of storage or HTTP. The full AI event schema (actors, models,
//! outcomes) extends [`validate`]; the entry format is versioned and
//! documented in `docs/format.md`.

pub mod blob;
pub mod bounded;
mod canonical;
pub mod envelope;
pub mod jcs;
pub mod schema;
pub mod sealed_v3;
pub mod signature;

pub use canonical::{canonical_len, write_canonical};
pub use jcs::{check_signable, jcs_object, write_jcs, JcsError};
pub use schema::{is_valid_tenant, validate, EventError, MAX_ID_LEN};

use aiaudit_tlog::{record_hash, Hash, MAX_ENTRY_SIZE};
use serde_json::{Map, Value};

/// The entry format version written by this crate (`"v"` in the entry).
pub const ENTRY_VERSION: u64 = 1;

impl EventError {
    fn new(pointer: &str, detail: impl Into<String>) -> Self {
        EventError {
            pointer: pointer.to_string(),
            path: pointer.trim_start_matches('/').replace('/', "."),
            detail: detail.into(),
        }
    }
}

/// An event that passed validation, with its entry bytes and leaf hash.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    pub id: String,
    /// What the log deduplicates on: [`dedup_key`] of tenant and id.
    pub dedup_key: String,
    pub entry: Vec<u8>,
    pub leaf: Hash,
}

/// The key an event is deduplicated by: its tenant and its id, so one
/// tenant's ids never collide with another's. Tenants hold no `/`
/// (schema), so the key is unambiguous.
pub fn dedup_key(tenant: &str, id: &str) -> String {
    let mut key = String::with_capacity(tenant.len() + 1 + id.len());
    key.push_str(tenant);
    key.push('/');
    key.push_str(id);
    key
}

/// Who appended an entry, as the log records it (`appended_by`, covered by
/// the leaf): `token:<id>`, `cert:<emitter>`, `emitter:<name>` for a
/// signed batch, or [`LEDGER_PRINCIPAL`] for the ledger's own records.
pub const LEDGER_PRINCIPAL: &str = "ledger";

/// An event that passed validation, before it becomes an entry (a signed
/// batch adds each event's signature first). It borrows nothing: the event
/// itself travels beside it, and each entry format writes it its own way.
#[derive(Debug, Clone)]
pub struct CheckedEvent {
    pub id: String,
    /// Bytes of the event's canonical JSON: what `max_event_bytes` and the
    /// blob threshold measure.
    pub canonical_len: usize,
    tenant: String,
    subject: Option<String>,
}

impl CheckedEvent {
    pub fn tenant(&self) -> &str {
        &self.tenant
    }
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
}

/// Validates one event (schema v1) and measures its canonical JSON.
pub fn check(event: &Value) -> Result<CheckedEvent, Vec<EventError>> {
    let Value::Object(fields) = event else {
        return Err(vec![EventError::new("", "an event must be a JSON object")]);
    };
    let id = validate(fields)?;
    let text = |name: &str| fields.get(name).and_then(Value::as_str);
    Ok(CheckedEvent {
        id,
        canonical_len: canonical::object_len(fields),
        tenant: text("tenant").unwrap_or("").to_string(),
        subject: text("subject").map(str::to_string),
    })
}

/// The canonical JSON of an event (docs/format.md, "canonical JSON").
pub fn canonical_event(event: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(canonical::canonical_len(event));
    write_canonical(&mut out, event);
    out
}

/// Validates one event (schema v1) and encodes it as a log entry without
/// provenance (tests, tools); the ledger itself uses [`finish`].
pub fn prepare(event: Value) -> Result<PreparedEvent, Vec<EventError>> {
    let checked = check(&event)?;
    finish(&event, checked, None, None)
}

/// Turns a checked event into its entry (format v1), with its batch
/// signature if any and who appended it (`appended_by`, see
/// [`LEDGER_PRINCIPAL`]).
pub fn finish(
    event: &Value,
    checked: CheckedEvent,
    signature: Option<&signature::EventSignature>,
    appended_by: Option<&str>,
) -> Result<PreparedEvent, Vec<EventError>> {
    let entry = entry_bytes(&canonical_event(event), signature, appended_by);
    let dedup_key = dedup_key(checked.tenant(), &checked.id);
    let id = checked.id;
    if entry.len() > MAX_ENTRY_SIZE {
        return Err(vec![EventError::new(
            "",
            format!(
                "the encoded event is {} bytes; the most a log entry holds is {MAX_ENTRY_SIZE}",
                entry.len()
            ),
        )]);
    }
    let leaf = record_hash(&entry);
    Ok(PreparedEvent {
        id,
        dedup_key,
        entry,
        leaf,
    })
}

/// The canonical entry bytes of an event (format v1, see docs/format.md):
/// the canonical JSON of `{"event": <event>, "v": 1}`.
pub fn encode_entry(event: &Map<String, Value>) -> Vec<u8> {
    let mut canonical = Vec::with_capacity(256);
    canonical::write_object(&mut canonical, event);
    entry_bytes(&canonical, None, None)
}

/// `{["appended_by":<principal>,]"event":<canonical event>[,"signature":<canonical signature>],"v":1}`:
/// members in canonical (sorted) order, so the entry is canonical JSON too.
fn entry_bytes(
    canonical_event: &[u8],
    signature: Option<&signature::EventSignature>,
    appended_by: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(canonical_event.len() + 64);
    out.push(b'{');
    write_appended_by(&mut out, appended_by);
    out.extend_from_slice(b"\"event\":");
    out.extend_from_slice(canonical_event);
    if let Some(sig) = signature {
        out.extend_from_slice(b",\"signature\":");
        write_canonical(&mut out, &sig.to_json());
    }
    out.extend_from_slice(b",\"v\":1}");
    out
}

/// `"appended_by":<principal>,` when there is one: the first member of an
/// entry of any version, since it sorts before every other.
pub(crate) fn write_appended_by(out: &mut Vec<u8>, appended_by: Option<&str>) {
    if let Some(who) = appended_by {
        out.extend_from_slice(b"\"appended_by\":");
        write_canonical(out, &Value::String(who.to_string()));
        out.push(b',');
    }
}

/// A decoded log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub version: u64,
    pub event: Map<String, Value>,
    /// The emitter's batch signature, for events that came in a signed batch.
    pub signature: Option<Value>,
    /// Who appended it; `None` in entries written before provenance was recorded.
    pub appended_by: Option<String>,
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
    let signature = obj.remove("signature");
    let appended_by = appended_by_of(&obj)?;
    Ok(Entry {
        version,
        event,
        signature,
        appended_by,
    })
}

/// The `appended_by` member of an entry object, if present (a string).
pub(crate) fn appended_by_of(obj: &Map<String, Value>) -> Result<Option<String>, EventError> {
    match obj.get("appended_by") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(EventError::new("/appended_by", "must be a string")),
    }
}

/// The dedup key ([`dedup_key`]) of a stored entry (tenant and id are clear
/// in every entry version).
pub fn entry_dedup_key(entry: &[u8]) -> Result<String, EventError> {
    if let Some((tenant, id)) = lean_ids(entry) {
        return Ok(dedup_key(&tenant, &id));
    }
    let stored = envelope::decode_stored(entry)?;
    match stored.id() {
        Some(id) => Ok(dedup_key(stored.tenant(), id)),
        None => Err(EventError::new("/event/id", "entry has no event id")),
    }
}

/// The event id stored in an entry (clear in every entry version).
pub fn entry_id(entry: &[u8]) -> Result<String, EventError> {
    if let Some((_, id)) = lean_ids(entry) {
        return Ok(id.into_owned());
    }
    let stored = envelope::decode_stored(entry)?;
    match stored.id() {
        Some(s) => Ok(s.to_string()),
        None => Err(EventError::new("/event/id", "entry has no event id")),
    }
}

/// Tenant and id of a well-formed entry, read without decoding the rest
/// (recovery re-reads the ids logged since the id index was last made
/// durable, hundreds of thousands of them). `None` for anything unusual:
/// the full decoder then answers, with its errors.
fn lean_ids(entry: &[u8]) -> Option<(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> {
    use std::borrow::Cow;
    #[derive(serde::Deserialize)]
    struct Ids<'a> {
        #[serde(borrow)]
        id: Cow<'a, str>,
        #[serde(borrow, default)]
        tenant: Cow<'a, str>,
    }
    /// v1 keeps them in `event`, v2 in `index` (aiaudit-index reads its
    /// own wider set of clear fields the same way).
    #[derive(serde::Deserialize)]
    struct Lean<'a> {
        v: u64,
        #[serde(borrow)]
        event: Option<Ids<'a>>,
        #[serde(borrow)]
        index: Option<Ids<'a>>,
    }
    let ids = if let Some(index) = sealed_v3::index_bytes(entry) {
        serde_json::from_slice::<Ids>(index).ok()?
    } else {
        match serde_json::from_slice::<Lean>(entry).ok()? {
            Lean {
                v: ENTRY_VERSION,
                event: Some(ids),
                ..
            } => ids,
            Lean {
                v: envelope::SEALED_ENTRY_VERSION,
                index: Some(ids),
                ..
            } => ids,
            _ => return None,
        }
    };
    Some((ids.tenant, ids.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal(id: &str) -> Value {
        json!({"time": "2026-11-27T09:14:03.120Z", "id": id, "tenant": "acme",
               "source": {"name": "app"}, "actor": {"id": "u1"}, "action": "model.invoke",
               "attributes": {"b": [1, 2.5, "x"]}})
    }

    #[test]
    fn lean_ids_agree_with_the_full_decoder() {
        let plain = prepare(minimal("a1")).unwrap().entry;
        let key = envelope::DataKey {
            id: 1,
            key: &[7; 32],
        };
        let random = [1; envelope::SEAL_RANDOM_LEN];
        let checked = check(&minimal("s1")).unwrap();
        let v2_event = minimal("s1");
        let v2 = envelope::seal(
            &sealed_v3::SealInput::new(v2_event.as_object().unwrap(), &checked),
            key,
            &random,
        );
        let event = minimal("s3");
        let checked = check(&event).unwrap();
        let input = sealed_v3::SealInput {
            event: event.as_object().unwrap(),
            checked: &checked,
            signature: None,
            appended_by: None,
            redacted: &[],
            subject_tag: None,
            compress: sealed_v3::Compression::ZstdDictionary,
            blobs: &[],
        };
        let v3 = sealed_v3::seal(&input, key, &random);
        let (v2, v3) = (v2.unwrap().entry, v3.unwrap().entry);
        for (entry, id) in [(plain, "a1"), (v2, "s1"), (v3, "s3")] {
            let (tenant, lean) = lean_ids(&entry).expect("the lean path reads it");
            assert_eq!((tenant.as_ref(), lean.as_ref()), ("acme", id));
            let stored = envelope::decode_stored(&entry).unwrap();
            assert_eq!(
                entry_dedup_key(&entry).unwrap(),
                dedup_key(stored.tenant(), id)
            );
            assert_eq!(entry_id(&entry).unwrap(), stored.id().unwrap());
        }
        // Anything unusual goes to the full decoder and its errors.
        assert!(lean_ids(br#"{"v":9,"event":{"id":"x"}}"#).is_none());
        assert!(entry_id(br#"{"v":9,"event":{"id":"x"}}"#).is_err());
        assert!(lean_ids(br#"{"v":1,"event":{"id":7}}"#).is_none());
    }

    #[test]
    fn prepares_a_minimal_event() {
        let e = prepare(minimal("a1")).unwrap();
        assert_eq!(e.id, "a1");
        assert_eq!(
            std::str::from_utf8(&e.entry).unwrap(),
            r#"{"event":{"action":"model.invoke","actor":{"id":"u1"},"attributes":{"b":[1,2.5,"x"]},"id":"a1","source":{"name":"app"},"tenant":"acme","time":"2026-11-27T09:14:03.120Z"},"v":1}"#
        );
        assert_eq!(e.leaf, record_hash(&e.entry));
        let back = decode_entry(&e.entry).unwrap();
        assert_eq!(back.event.get("id"), Some(&json!("a1")));
        assert_eq!(entry_id(&e.entry).unwrap(), "a1");
    }

    #[test]
    fn key_order_and_whitespace_do_not_change_the_entry() {
        let a: Value = serde_json::from_str(
            r#"{"id":"x","time":"2026-01-01T00:00:00Z","tenant":"t","source":{"name":"s"},"actor":{"id":"a"},"action":"a.b","attributes":{"b":1,"a":2}}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str(
            r#"{ "attributes" : { "a" : 2, "b" : 1 }, "action":"a.b", "actor":{"id":"a"}, "source":{"name":"s"}, "tenant":"t", "time":"2026-01-01T00:00:00Z", "id":"x" }"#,
        )
        .unwrap();
        assert_eq!(prepare(a).unwrap().entry, prepare(b).unwrap().entry);
    }

    #[test]
    fn refuses_non_objects_and_entries_over_the_tile_limit() {
        assert_eq!(prepare(json!([1])).unwrap_err()[0].pointer, "");
        let mut e = minimal("a");
        e["attributes"]["pad"] = json!("x".repeat(MAX_ENTRY_SIZE));
        let err = &prepare(e).unwrap_err()[0];
        assert_eq!(err.pointer, "");
        assert!(err.detail.contains("65535"));
    }

    #[test]
    fn provenance_is_the_first_member_and_covered_by_the_leaf() {
        let e = minimal("a1");
        let c = check(&e).unwrap();
        let by_token = finish(&e, c.clone(), None, Some("token:ab12")).unwrap();
        let by_ledger = finish(&e, c.clone(), None, Some(LEDGER_PRINCIPAL)).unwrap();
        let text = std::str::from_utf8(&by_token.entry).unwrap();
        assert!(
            text.starts_with(r#"{"appended_by":"token:ab12","event":{"#),
            "{text}"
        );
        // Canonical: what decodes and encodes again is the same JSON.
        let v: Value = serde_json::from_slice(&by_token.entry).unwrap();
        let mut again = Vec::new();
        write_canonical(&mut again, &v);
        assert_eq!(again, by_token.entry);
        assert_ne!(by_token.leaf, by_ledger.leaf);
        let back = decode_entry(&by_token.entry).unwrap();
        assert_eq!(back.appended_by.as_deref(), Some("token:ab12"));
        assert_eq!(
            decode_entry(&prepare(minimal("a1")).unwrap().entry)
                .unwrap()
                .appended_by,
            None
        );
        assert!(decode_entry(br#"{"appended_by":7,"event":{},"v":1}"#).is_err());
    }

    #[test]
    fn dedup_keys_separate_tenants() {
        let mut other = minimal("a1");
        other["tenant"] = json!("globex");
        let a = prepare(minimal("a1")).unwrap();
        let b = prepare(other).unwrap();
        assert_eq!(a.dedup_key, "acme/a1");
        assert_eq!(b.dedup_key, "globex/a1");
        assert_eq!(entry_dedup_key(&b.entry).unwrap(), "globex/a1");
    }

    #[test]
    fn refuses_unknown_entry_versions() {
        assert!(decode_entry(br#"{"event":{},"v":2}"#).is_err());
        assert!(decode_entry(b"not json").is_err());
    }
}
