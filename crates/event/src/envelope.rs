//! Entry format v2: event content encrypted at rest.
//!
//! A v2 entry keeps in the clear only what ordering, search and tenant
//! isolation need ([`CLEAR_FIELDS`]) and seals the rest. The Merkle leaf
//! hashes the v2 bytes, so the log verifies without any key, and destroying
//! a data key (crypto-shredding) leaves every proof intact.
//!
//! ```text
//! {"commitment":"<b64 SHA-256(opening)>","index":{<clear fields>},
//!  "sealed":{"alg":"xchacha20poly1305","ct":"<b64>","key":<key id>,"nonce":"<b64>"},"v":2}
//! opening = 32 random bytes (salt) || v1 entry {"event":…[,"redacted":[…]][,"signature":…],"v":1}
//! ```
//!
//! The commitment binds the ciphertext to one plaintext (AEAD ciphers alone
//! are not committing), so an export bundle can hand a third party the
//! opening and the third party checks it against the logged entry without
//! any key. The salt keeps the commitment from confirming guesses about
//! low-entropy content once the key is gone.

use crate::canonical::{write_canonical, write_members, write_object, write_string};
use crate::sealed_v3::SealInput;
use crate::{EventError, PreparedEvent};
use aiaudit_tlog::{record_hash, Hash, MAX_ENTRY_SIZE};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use serde_json::{Map, Value};

/// The entry format version of sealed entries.
pub const SEALED_ENTRY_VERSION: u64 = 2;
/// The only content cipher of format v2.
pub const ALG: &str = "xchacha20poly1305";
/// Random bytes one seal consumes: a 24-byte nonce, then a 32-byte salt.
pub const SEAL_RANDOM_LEN: usize = 56;
const SALT_LEN: usize = 32;

/// Fields copied into the clear `index` of a v2 entry, as (object, member)
/// paths; `""` is the top level. Everything else is sealed. docs/security.md
/// lists them for auditors.
pub const CLEAR_FIELDS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "id",
            "time",
            "tenant",
            "action",
            "risk_level",
            "subject",
            "trace_id",
            "span_id",
            "parent_span_id",
        ],
    ),
    ("source", &["name", "version"]),
    ("actor", &["id", "type"]),
    ("outcome", &["status"]),
    (
        "ai",
        &[
            "gen_ai.provider.name",
            "gen_ai.request.model",
            "gen_ai.response.model",
            "gen_ai.operation.name",
            "gen_ai.conversation.id",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
        ],
    ),
];

/// A data key and the id the keyring knows it by.
#[derive(Clone, Copy)]
pub struct DataKey<'a> {
    pub id: u64,
    pub key: &'a [u8; 32],
}

/// The clear projection of an event: its [`CLEAR_FIELDS`] that are present.
pub fn clear_fields(event: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (object, members) in CLEAR_FIELDS {
        let (source, target) = if object.is_empty() {
            (Some(event), &mut out)
        } else {
            let src = event.get(*object).and_then(Value::as_object);
            if src.is_none() {
                continue;
            }
            let t = out
                .entry(object.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            (src, t.as_object_mut().expect("just inserted an object"))
        };
        let Some(source) = source else { continue };
        for m in *members {
            if let Some(v) = source.get(*m) {
                target.insert(m.to_string(), v.clone());
            }
        }
        if !object.is_empty() && out[*object].as_object().is_some_and(Map::is_empty) {
            out.remove(*object);
        }
    }
    out
}

/// Seals a checked event into a v2 entry under `key`. `subject_tag`
/// replaces the subject in the clear index (a keyed hash, so the index
/// names no one); `redacted` lists fields already replaced by their HMAC at
/// ingest. A v2 entry keeps nothing out of line: `input.blobs` must be
/// empty, and `input.compress` is not used.
pub fn seal(
    input: &SealInput<'_>,
    key: DataKey<'_>,
    random: &[u8; SEAL_RANDOM_LEN],
) -> Result<PreparedEvent, Vec<EventError>> {
    let SealInput {
        event,
        checked,
        signature,
        appended_by,
        redacted,
        subject_tag,
        ..
    } = *input;
    if !input.blobs.is_empty() {
        return Err(vec![EventError::new(
            "",
            "entry format 2 keeps no content out of line",
        )]);
    }
    let (nonce, salt) = random.split_at(24);
    let mut opening = Vec::with_capacity(SALT_LEN + checked.canonical_len + 64);
    opening.extend_from_slice(salt);
    opening.extend_from_slice(b"{\"event\":");
    write_object(&mut opening, event);
    if !redacted.is_empty() {
        let mut sorted = redacted.to_vec();
        sorted.sort();
        opening.extend_from_slice(b",\"redacted\":");
        write_canonical(&mut opening, &Value::from(sorted));
    }
    if let Some(sig) = signature {
        opening.extend_from_slice(b",\"signature\":");
        write_canonical(&mut opening, &sig.to_json());
    }
    opening.extend_from_slice(b",\"v\":1}");
    let commitment = sha256(&opening);
    let nonce: &[u8; 24] = nonce.try_into().expect("24-byte nonce");
    let ct = aiaudit_xchacha::seal(key.key, nonce, &aad(key.id), &opening)
        .map_err(|_| vec![EventError::new("", "encryption failed")])?;

    let mut entry = Vec::with_capacity(ct.len() * 4 / 3 + 256);
    entry.push(b'{');
    crate::write_appended_by(&mut entry, appended_by);
    entry.extend_from_slice(b"\"commitment\":\"");
    entry.extend_from_slice(B64.encode(commitment).as_bytes());
    entry.extend_from_slice(b"\",\"index\":");
    write_clear_index(&mut entry, event, subject_tag);
    entry.extend_from_slice(b",\"sealed\":{\"alg\":\"");
    entry.extend_from_slice(ALG.as_bytes());
    entry.extend_from_slice(b"\",\"ct\":\"");
    entry.extend_from_slice(B64.encode(&ct).as_bytes());
    entry.extend_from_slice(format!("\",\"key\":{},\"nonce\":\"", key.id).as_bytes());
    entry.extend_from_slice(B64.encode(nonce).as_bytes());
    entry.extend_from_slice(b"\"},\"v\":2}");
    if entry.len() > MAX_ENTRY_SIZE {
        return Err(vec![EventError::new(
            "",
            format!(
                "the encrypted event is {} bytes; the most a log entry holds is {MAX_ENTRY_SIZE} \
                 (encryption adds about a third to the event's size)",
                entry.len()
            ),
        )]);
    }
    let leaf = record_hash(&entry);
    Ok(PreparedEvent {
        id: checked.id.clone(),
        dedup_key: crate::dedup_key(checked.tenant(), &checked.id),
        entry,
        leaf,
    })
}

/// A member of the clear index, borrowed from the event.
enum ClearMember<'a> {
    Value(&'a Value),
    Tag(&'a str),
    Object(Vec<(&'a String, &'a Value)>),
}

/// Writes the clear index a sealed entry (v2 or v3) keeps: the event's
/// [`CLEAR_FIELDS`] with the subject replaced by its keyed tag, or left
/// out. The same bytes as the canonical JSON of [`clear_fields`] so
/// altered, written straight from the event without copying any of it.
pub(crate) fn write_clear_index(
    out: &mut Vec<u8>,
    event: &Map<String, Value>,
    subject_tag: Option<&str>,
) {
    let top = CLEAR_FIELDS[0].1;
    let mut members: Vec<(&str, ClearMember<'_>)> = Vec::with_capacity(16);
    for (key, value) in event {
        if key == "subject" {
            continue;
        }
        if top.contains(&key.as_str()) {
            members.push((key.as_str(), ClearMember::Value(value)));
            continue;
        }
        let Some((_, wanted)) = CLEAR_FIELDS[1..].iter().find(|(o, _)| o == key) else {
            continue;
        };
        let Value::Object(inner) = value else {
            continue;
        };
        let kept: Vec<(&String, &Value)> = inner
            .iter()
            .filter(|(m, _)| wanted.contains(&m.as_str()))
            .collect();
        if !kept.is_empty() {
            members.push((key.as_str(), ClearMember::Object(kept)));
        }
    }
    if let Some(tag) = subject_tag {
        members.push(("subject", ClearMember::Tag(tag)));
    }
    write_members(out, members, |out, member| match member {
        ClearMember::Value(v) => write_canonical(out, v),
        ClearMember::Tag(tag) => write_string(out, tag),
        ClearMember::Object(kept) => write_members(out, kept, write_canonical),
    });
}

/// SHA-256 through ring: on CPUs without SHA extensions it is about 1.6x
/// faster than the `sha2` crate, and sealing hashes every event's content.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// Binds a ciphertext to its key id, so a swapped key id fails to decrypt.
fn aad(key_id: u64) -> Vec<u8> {
    let mut a = b"aiaudit entry v2 key ".to_vec();
    a.extend_from_slice(&key_id.to_be_bytes());
    a
}

/// The sealed part of a v2 entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Sealed {
    pub key: u64,
    pub nonce: [u8; 24],
    pub ct: Vec<u8>,
    pub commitment: Hash,
    /// Format v3's header parts; `None` for v2.
    pub v3: Option<crate::sealed_v3::V3>,
}

/// A stored entry of any version, decoded without keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub version: u64,
    /// v1: the whole event; v2: its clear fields.
    pub index: Map<String, Value>,
    /// v1: the entry itself; v2: `None` until opened.
    pub plain: Option<crate::Entry>,
    pub sealed: Option<Sealed>,
    /// Who appended it (clear in every version); `None` before provenance was recorded.
    pub appended_by: Option<String>,
}

impl Stored {
    /// The event's tenant (clear in every version).
    pub fn tenant(&self) -> &str {
        self.index
            .get("tenant")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    /// The event's id (clear in every version).
    pub fn id(&self) -> Option<&str> {
        self.index.get("id").and_then(Value::as_str)
    }
}

/// A sealed entry opened: the v1 entry inside and the raw opening that proves it.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    pub entry: crate::Entry,
    pub redacted: Vec<String>,
    pub opening: Vec<u8>,
    /// v3: content stored out of line, missing from `entry.event` until
    /// filled from its blob (checked against [`Stored`]'s blob refs).
    pub blobs: Vec<crate::sealed_v3::BlobSlot>,
}

fn err(pointer: &str, detail: impl Into<String>) -> EventError {
    EventError::new(pointer, detail)
}

/// Decodes entry bytes of format v1, v2 or v3 without any key.
pub fn decode_stored(entry: &[u8]) -> Result<Stored, EventError> {
    if entry.first() == Some(&crate::sealed_v3::VERSION_BYTE) {
        return crate::sealed_v3::decode(entry);
    }
    let value: Value =
        serde_json::from_slice(entry).map_err(|e| err("", format!("entry is not JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(err("", "entry is not a JSON object"));
    };
    match obj.get("v").and_then(Value::as_u64) {
        Some(crate::ENTRY_VERSION) => {
            let plain = crate::decode_entry(entry)?;
            Ok(Stored {
                version: 1,
                appended_by: plain.appended_by.clone(),
                index: plain.event.clone(),
                plain: Some(plain),
                sealed: None,
            })
        }
        Some(SEALED_ENTRY_VERSION) => {
            let Some(Value::Object(index)) = obj.remove("index") else {
                return Err(err("/index", "entry has no index object"));
            };
            let b64 = |v: Option<&Value>, what: &str| {
                v.and_then(Value::as_str)
                    .and_then(|s| B64.decode(s).ok())
                    .ok_or_else(|| err(what, "missing or not base64"))
            };
            let sealed = obj
                .get("sealed")
                .and_then(Value::as_object)
                .ok_or_else(|| err("/sealed", "entry has no sealed object"))?;
            if sealed.get("alg").and_then(Value::as_str) != Some(ALG) {
                return Err(err(
                    "/sealed/alg",
                    format!("unknown cipher; expected {ALG}"),
                ));
            }
            let key = sealed
                .get("key")
                .and_then(Value::as_u64)
                .ok_or_else(|| err("/sealed/key", "missing key id"))?;
            let nonce = b64(sealed.get("nonce"), "/sealed/nonce")?
                .try_into()
                .map_err(|_| err("/sealed/nonce", "a nonce is 24 bytes"))?;
            let ct = b64(sealed.get("ct"), "/sealed/ct")?;
            let commitment = b64(obj.get("commitment"), "/commitment")?
                .try_into()
                .map_err(|_| err("/commitment", "a commitment is 32 bytes"))?;
            Ok(Stored {
                version: 2,
                appended_by: crate::appended_by_of(&obj)?,
                index,
                plain: None,
                sealed: Some(Sealed {
                    key,
                    nonce,
                    ct,
                    commitment,
                    v3: None,
                }),
            })
        }
        Some(v) => Err(err("/v", format!("unknown entry format version {v}"))),
        None => Err(err("/v", "entry has no format version")),
    }
}

impl Sealed {
    /// Decrypts with the data key and checks the result against the commitment.
    pub fn open(&self, key: &[u8; 32]) -> Result<Opened, EventError> {
        if let Some(v3) = &self.v3 {
            let opening = crate::sealed_v3::decrypt(v3, &self.nonce, &self.ct, key)?;
            return self.check_opening(opening);
        }
        let opening = aiaudit_xchacha::open(key, &self.nonce, &aad(self.key), &self.ct)
            .map_err(|_| err("/sealed/ct", "does not decrypt under its data key"))?;
        self.check_opening(opening)
    }

    /// Checks an opening handed over without a key (an export bundle's):
    /// its SHA-256 must be the logged commitment.
    pub fn check_opening(&self, opening: Vec<u8>) -> Result<Opened, EventError> {
        if sha256(&opening) != self.commitment {
            return Err(err(
                "/commitment",
                "the opening does not match the commitment",
            ));
        }
        if opening.len() < SALT_LEN {
            return Err(err("/commitment", "the opening is too short"));
        }
        if let Some(v3) = &self.v3 {
            let (entry, redacted, blobs) =
                crate::sealed_v3::read_opening(v3, &opening[SALT_LEN..])?;
            return Ok(Opened {
                entry,
                redacted,
                opening,
                blobs,
            });
        }
        let entry = crate::decode_entry(&opening[SALT_LEN..])?;
        let redacted = serde_json::from_slice::<Value>(&opening[SALT_LEN..])
            .ok()
            .and_then(|v| v.get("redacted").cloned())
            .and_then(|r| serde_json::from_value(r).ok())
            .unwrap_or_default();
        Ok(Opened {
            entry,
            redacted,
            opening,
            blobs: Vec::new(),
        })
    }
}

/// Checks that a v2 entry's clear index agrees with the event it seals (all
/// but the subject, which the index holds only as a keyed tag).
pub fn index_matches(index: &Map<String, Value>, event: &Map<String, Value>) -> bool {
    let mut expected = clear_fields(event);
    let mut got = index.clone();
    expected.remove("subject");
    got.remove("subject");
    expected == got
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Map<String, Value> {
        let e = json!({"time": "2026-11-27T09:14:03.120Z", "id": "e1", "tenant": "acme",
            "source": {"name": "app"}, "actor": {"id": "u1", "type": "user"}, "action": "model.invoke",
            "subject": "customer-1", "ai": {"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 3},
            "input": {"content": "SECRET-MARKER"}, "outcome": {"status": "success", "reason": "why"}});
        e.as_object().unwrap().clone()
    }

    fn checked(event: &Map<String, Value>) -> crate::CheckedEvent {
        crate::check(&Value::Object(event.clone())).unwrap()
    }

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn seals_and_opens() {
        let e = event();
        let c = checked(&e);
        let input = SealInput {
            appended_by: Some("token:t1"),
            subject_tag: Some("tag1"),
            ..SealInput::new(&e, &c)
        };
        let p = seal(&input, DataKey { id: 9, key: &KEY }, &[1; 56]).unwrap();
        let text = std::str::from_utf8(&p.entry).unwrap();
        assert!(!text.contains("SECRET-MARKER") && !text.contains("customer-1"));
        assert!(!text.contains("why"));
        assert_eq!(p.leaf, record_hash(&p.entry));
        let stored = decode_stored(&p.entry).unwrap();
        assert_eq!(stored.version, 2);
        assert!(text.starts_with(r#"{"appended_by":"token:t1","commitment":"#));
        assert_eq!(stored.appended_by.as_deref(), Some("token:t1"));
        assert_eq!(stored.id(), Some("e1"));
        assert_eq!(stored.tenant(), "acme");
        assert_eq!(stored.index["subject"], "tag1");
        assert_eq!(stored.index["ai"]["gen_ai.request.model"], "m");
        assert_eq!(stored.index["outcome"], json!({"status": "success"}));
        let sealed = stored.sealed.unwrap();
        assert_eq!(sealed.key, 9);
        let opened = sealed.open(&KEY).unwrap();
        assert_eq!(opened.entry.event["input"]["content"], "SECRET-MARKER");
        assert!(index_matches(&stored.index, &opened.entry.event));
        // A third party with the opening alone (no key) gets the same event.
        let again = sealed.check_opening(opened.opening.clone()).unwrap();
        assert_eq!(again.entry, opened.entry);
    }

    #[test]
    fn wrong_key_changed_ct_or_forged_opening_fail() {
        let e = event();
        let c = checked(&e);
        let p = seal(
            &SealInput::new(&e, &c),
            DataKey { id: 1, key: &KEY },
            &[2; 56],
        )
        .unwrap();
        let sealed = decode_stored(&p.entry).unwrap().sealed.unwrap();
        assert!(sealed.open(&[8; 32]).is_err());
        let mut bad = sealed.clone();
        bad.ct[3] ^= 1;
        assert!(bad.open(&KEY).is_err());
        let mut other_id = sealed.clone();
        other_id.key = 2;
        assert!(other_id.open(&KEY).is_err());
        let mut opening = sealed.open(&KEY).unwrap().opening;
        let n = opening.len();
        opening[n - 3] ^= 1;
        assert!(sealed.check_opening(opening).is_err());
    }

    #[test]
    fn records_redactions_and_signatures_inside_the_seal() {
        let e = event();
        let c = checked(&e);
        let redacted = ["input.content".to_string()];
        let input = SealInput {
            redacted: &redacted,
            ..SealInput::new(&e, &c)
        };
        let p = seal(&input, DataKey { id: 1, key: &KEY }, &[3; 56]).unwrap();
        let stored = decode_stored(&p.entry).unwrap();
        assert!(!stored.index.contains_key("subject"));
        let opened = stored.sealed.unwrap().open(&KEY).unwrap();
        assert_eq!(opened.redacted, vec!["input.content".to_string()]);
    }

    /// The clear index is written straight from the event: the same bytes
    /// as the canonical JSON of the clear projection with the subject
    /// replaced by its tag (or left out), which v2 entries always held.
    #[test]
    fn the_clear_index_is_the_canonical_clear_projection() {
        let mut odd = event();
        odd.insert("source".into(), json!("not an object"));
        odd.insert("actor".into(), json!({"name": "no clear member"}));
        odd.insert("ai".into(), json!({}));
        odd.insert("risk_level".into(), json!(["any", {"value": 1.5}]));
        let mut bare = event();
        bare.remove("subject");
        bare.remove("outcome");
        for e in [event(), odd, bare] {
            for tag in [None, Some("tag-\"1\"")] {
                let mut expected = clear_fields(&e);
                match tag {
                    Some(t) => expected.insert("subject".into(), Value::from(t)),
                    None => expected.remove("subject"),
                };
                let mut want = Vec::new();
                write_canonical(&mut want, &Value::Object(expected));
                let mut got = Vec::new();
                write_clear_index(&mut got, &e, tag);
                assert_eq!(
                    String::from_utf8(got).unwrap(),
                    String::from_utf8(want).unwrap()
                );
            }
        }
    }

    #[test]
    fn v1_entries_decode_as_stored_too() {
        let p = crate::prepare(
            json!({"time": "2026-11-27T09:14:03Z", "id": "a", "tenant": "t",
            "source": {"name": "s"}, "actor": {"id": "u"}, "action": "a.b"}),
        )
        .unwrap();
        let stored = decode_stored(&p.entry).unwrap();
        assert_eq!(stored.version, 1);
        assert_eq!(stored.id(), Some("a"));
        assert!(stored.plain.is_some() && stored.sealed.is_none());
        assert!(decode_stored(br#"{"v":3}"#).is_err());
    }
}
