//! Entry format v3: the sealed entry in binary (docs/format.md).
//!
//! v2 spent a third of a sealed entry on base64 and stored the clear fields
//! twice (in the index and again inside the sealed event). v3 keeps the
//! same commitment rule and cipher but writes the ciphertext as bytes,
//! keeps the clear fields only in the clear header, may compress the opening
//! before sealing it, and lists the event's out-of-line content (blobs)
//! with their commitments so the leaf commits to every byte of the event.
//!
//! ```text
//! 0x03 | flags u8 | u16 A | appended_by | u16 I | clear index (canonical JSON)
//!      | key u64 | nonce [24] | commitment [32] | u16 B | B × (u16 P | pointer | size u64 | commitment [32])
//!      | ciphertext (the rest): XChaCha20-Poly1305(opening or zstd(opening)), AAD = every byte before it
//! opening = salt [32] || {"event":<event minus clear fields (subject kept), minus blobs>
//!                         [,"blobs":[{"pointer":…,"salt":…}]][,"redacted":[…]][,"signature":{…}],"v":3}
//! commitment = SHA-256(opening)
//! ```

use crate::canonical::{write_canonical, write_members, write_object};
use crate::envelope::{clear_index, sha256, DataKey, CLEAR_FIELDS, SEAL_RANDOM_LEN};
use crate::signature::EventSignature;
use crate::{CheckedEvent, EventError, PreparedEvent};
use aiaudit_tlog::{record_hash, Hash, MAX_ENTRY_SIZE};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::{Map, Value};
use std::cell::RefCell;

/// The first byte of every v3 entry (v1 and v2 entries begin with `{`).
pub const VERSION_BYTE: u8 = 3;
/// Flag bit: the ciphertext seals a zstd frame of the opening.
pub const FLAG_ZSTD: u8 = 1;
/// The most an opening may decompress to: an event's largest size plus room.
pub const MAX_OPENING: usize = 17 << 20;
const SALT_LEN: usize = 32;
/// zstd level for openings. On 1 KiB AI events level 1 compresses as well
/// as zstd's default 3 in three quarters of the time (docs/performance.md);
/// negative levels barely compress events this small.
const ZSTD_LEVEL: i32 = 1;

/// Out-of-line content the entry commits to: the event member at `pointer`
/// (RFC 6901), `size` bytes of canonical JSON, stored as an encrypted blob
/// whose id is `commitment` = SHA-256(salt || those bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub pointer: String,
    pub size: u64,
    pub commitment: Hash,
}

/// The parts of a v3 entry a reader needs beyond [`crate::envelope::Sealed`]'s.
#[derive(Debug, Clone, PartialEq)]
pub struct V3 {
    pub flags: u8,
    /// The clear index without the subject tag, merged back into the opened event.
    pub clear: Map<String, Value>,
    pub blobs: Vec<BlobRef>,
    /// Every byte before the ciphertext: the AEAD's associated data.
    pub header: Vec<u8>,
}

/// A v3 entry split into its fields, without any key.
pub struct Parsed<'a> {
    pub flags: u8,
    pub appended_by: Option<&'a str>,
    pub index: &'a [u8],
    pub key: u64,
    pub nonce: [u8; 24],
    pub commitment: Hash,
    pub blobs: Vec<BlobRef>,
    pub header_len: usize,
}

fn err(pointer: &str, detail: impl Into<String>) -> EventError {
    EventError::new(pointer, detail)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], EventError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| err(what, "entry ends early"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self, what: &str) -> Result<usize, EventError> {
        let s = self.take(2, what)?;
        Ok(u16::from_be_bytes([s[0], s[1]]) as usize)
    }
    fn u64(&mut self, what: &str) -> Result<u64, EventError> {
        let s = self.take(8, what)?;
        Ok(u64::from_be_bytes(s.try_into().expect("8 bytes")))
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], EventError> {
        Ok(self.take(N, what)?.try_into().expect("N bytes"))
    }
    fn text(&mut self, what: &str) -> Result<&'a str, EventError> {
        let n = self.u16(what)?;
        std::str::from_utf8(self.take(n, what)?).map_err(|_| err(what, "not UTF-8"))
    }
}

/// Splits a v3 entry into its fields (no key needed, nothing decrypted).
pub fn parse(entry: &[u8]) -> Result<Parsed<'_>, EventError> {
    let mut r = Reader { b: entry, at: 0 };
    if r.take(1, "/v")?[0] != VERSION_BYTE {
        return Err(err("/v", "not a v3 entry"));
    }
    let flags = r.take(1, "/flags")?[0];
    if flags & !FLAG_ZSTD != 0 {
        return Err(err("/flags", format!("unknown flags {flags:#04x}")));
    }
    let appended_by = r.text("/appended_by")?;
    let index_len = r.u16("/index")?;
    let index = r.take(index_len, "/index")?;
    let key = r.u64("/sealed/key")?;
    let nonce = r.array::<24>("/sealed/nonce")?;
    let commitment = r.array::<32>("/commitment")?;
    let count = r.u16("/blobs")?;
    let mut blobs = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let pointer = r.text("/blobs")?;
        if !pointer.starts_with('/') {
            return Err(err("/blobs", "a blob pointer starts with /"));
        }
        blobs.push(BlobRef {
            pointer: pointer.to_string(),
            size: r.u64("/blobs")?,
            commitment: r.array::<32>("/blobs")?,
        });
    }
    if r.at + 16 > entry.len() {
        return Err(err("/sealed/ct", "no ciphertext"));
    }
    Ok(Parsed {
        flags,
        appended_by: (!appended_by.is_empty()).then_some(appended_by),
        index,
        key,
        nonce,
        commitment,
        blobs,
        header_len: r.at,
    })
}

/// The clear index of a v3 entry, as its bytes (canonical JSON), for
/// readers that scan it without decoding the rest.
pub fn index_bytes(entry: &[u8]) -> Option<&[u8]> {
    if entry.first() != Some(&VERSION_BYTE) {
        return None;
    }
    parse(entry).ok().map(|p| p.index)
}

/// The members of a clear object the remainder keeps.
type Kept<'a> = Vec<(&'a String, &'a Value)>;

/// Writes the canonical JSON of the event minus its clear fields (the
/// subject stays: the clear index holds only its tag); an object emptied by
/// the removal goes too, so [`merge_clear`] restores exactly the original.
/// Written straight from the event, with no copy of it on the ingest path.
pub fn write_remainder(out: &mut Vec<u8>, event: &Map<String, Value>) {
    let top = CLEAR_FIELDS[0].1;
    let members: Vec<(&String, (Option<Kept<'_>>, &Value))> = event
        .iter()
        .filter(|(k, _)| k.as_str() == "subject" || !top.contains(&k.as_str()))
        .filter_map(|(k, v)| {
            let clear = CLEAR_FIELDS
                .iter()
                .find(|(o, _)| !o.is_empty() && o == k)
                .map(|(_, m)| *m);
            match (clear, v) {
                (Some(clear), Value::Object(inner)) => {
                    let kept: Vec<(&String, &Value)> = inner
                        .iter()
                        .filter(|(m, _)| !clear.contains(&m.as_str()))
                        .collect();
                    // Emptied by the removal: gone, as in `remainder`.
                    (!kept.is_empty() || inner.is_empty()).then_some((k, (Some(kept), v)))
                }
                _ => Some((k, (None, v))),
            }
        })
        .collect();
    write_members(out, members, |out, (kept, v)| match kept {
        None => write_canonical(out, v),
        Some(kept) => write_members(out, kept, write_canonical),
    });
}

/// Puts the clear fields back into what [`write_remainder`] wrote. Refuses a remainder that
/// holds a clear field itself (the opening would contradict the index).
pub fn merge_clear(
    mut rest: Map<String, Value>,
    clear: &Map<String, Value>,
) -> Result<Map<String, Value>, EventError> {
    let repeated = || err("/event", "the opening repeats a clear field");
    for (k, v) in clear {
        let nested = CLEAR_FIELDS.iter().any(|(o, _)| !o.is_empty() && o == k);
        match (nested, v) {
            (true, Value::Object(members)) => {
                let slot = rest
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                let Value::Object(target) = slot else {
                    return Err(repeated());
                };
                for (m, mv) in members {
                    if target.insert(m.clone(), mv.clone()).is_some() {
                        return Err(repeated());
                    }
                }
            }
            _ => {
                if rest.insert(k.clone(), v.clone()).is_some() {
                    return Err(repeated());
                }
            }
        }
    }
    Ok(rest)
}

thread_local! {
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

fn compress(opening: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut slot = c.borrow_mut();
        if slot.is_none() {
            *slot = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        slot.as_mut()?.compress(opening).ok()
    })
}

fn decompress(frame: &[u8]) -> Result<Vec<u8>, EventError> {
    let bad = |d: &str| err("/sealed/ct", format!("the compressed opening {d}"));
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(n)) if n as usize <= MAX_OPENING => n as usize,
        Ok(Some(_)) => return Err(bad("is larger than any event")),
        _ => return Err(bad("does not state its size")),
    };
    let out = zstd::bulk::decompress(frame, size).map_err(|_| bad("is not a zstd frame"))?;
    if out.len() != size {
        return Err(bad("is not the size it states"));
    }
    Ok(out)
}

/// What [`seal`] needs beyond the event.
pub struct SealInput<'a> {
    pub event: &'a Map<String, Value>,
    pub checked: &'a CheckedEvent,
    pub signature: Option<&'a EventSignature>,
    pub appended_by: Option<&'a str>,
    pub redacted: &'a [String],
    pub subject_tag: Option<&'a str>,
    /// Try compressing the opening (kept only when it is smaller).
    pub compress: bool,
}

/// Seals a checked event into a v3 entry under `key`.
pub fn seal(
    input: &SealInput<'_>,
    key: DataKey<'_>,
    random: &[u8; SEAL_RANDOM_LEN],
) -> Result<PreparedEvent, Vec<EventError>> {
    let (nonce, salt) = random.split_at(24);
    let mut opening = Vec::with_capacity(SALT_LEN + input.checked.canonical.len() + 64);
    opening.extend_from_slice(salt);
    opening.extend_from_slice(b"{\"event\":");
    write_remainder(&mut opening, input.event);
    if !input.redacted.is_empty() {
        let mut sorted = input.redacted.to_vec();
        sorted.sort();
        opening.extend_from_slice(b",\"redacted\":");
        write_canonical(&mut opening, &Value::from(sorted));
    }
    if let Some(sig) = input.signature {
        opening.extend_from_slice(b",\"signature\":");
        write_canonical(&mut opening, &sig.to_json());
    }
    opening.extend_from_slice(b",\"v\":3}");
    let commitment = sha256(&opening);

    let mut flags = 0u8;
    let compressed = if input.compress {
        compress(&opening).filter(|c| c.len() < opening.len())
    } else {
        None
    };
    if compressed.is_some() {
        flags |= FLAG_ZSTD;
    }

    let index = clear_index(input.checked, input.subject_tag);
    let mut index_json = Vec::with_capacity(256);
    write_object(&mut index_json, &index);
    let who = input.appended_by.unwrap_or("").as_bytes();
    let too_long = |what: &str, n: usize| {
        vec![err(
            what,
            format!("{n} bytes; a v3 entry holds at most 65,535"),
        )]
    };
    let who_len = u16::try_from(who.len()).map_err(|_| too_long("/appended_by", who.len()))?;
    let index_len =
        u16::try_from(index_json.len()).map_err(|_| too_long("/index", index_json.len()))?;

    let plain = compressed.as_deref().unwrap_or(&opening);
    let mut entry = Vec::with_capacity(plain.len() + index_json.len() + who.len() + 128);
    entry.push(VERSION_BYTE);
    entry.push(flags);
    entry.extend_from_slice(&who_len.to_be_bytes());
    entry.extend_from_slice(who);
    entry.extend_from_slice(&index_len.to_be_bytes());
    entry.extend_from_slice(&index_json);
    entry.extend_from_slice(&key.id.to_be_bytes());
    entry.extend_from_slice(nonce);
    entry.extend_from_slice(&commitment);
    entry.extend_from_slice(&0u16.to_be_bytes());
    let cipher = XChaCha20Poly1305::new(key.key.into());
    let ct = cipher
        .encrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: plain,
                aad: &entry,
            },
        )
        .map_err(|_| vec![err("", "encryption failed")])?;
    entry.extend_from_slice(&ct);
    if entry.len() > MAX_ENTRY_SIZE {
        return Err(vec![err(
            "",
            format!(
                "the sealed event is {} bytes; the most a log entry holds is {MAX_ENTRY_SIZE}",
                entry.len()
            ),
        )]);
    }
    let leaf = record_hash(&entry);
    Ok(PreparedEvent {
        id: input.checked.id.clone(),
        dedup_key: crate::dedup_key(input.checked.tenant(), &input.checked.id),
        entry,
        leaf,
    })
}

/// Decodes a v3 entry (no key) into the common stored form.
pub(crate) fn decode(entry: &[u8]) -> Result<crate::envelope::Stored, EventError> {
    let p = parse(entry)?;
    let index: Map<String, Value> = match serde_json::from_slice(p.index) {
        Ok(Value::Object(m)) => m,
        _ => return Err(err("/index", "the clear index is not a JSON object")),
    };
    let mut clear = index.clone();
    clear.remove("subject");
    Ok(crate::envelope::Stored {
        version: 3,
        appended_by: p.appended_by.map(str::to_string),
        index,
        plain: None,
        sealed: Some(crate::envelope::Sealed {
            key: p.key,
            nonce: p.nonce,
            ct: entry[p.header_len..].to_vec(),
            commitment: p.commitment,
            v3: Some(V3 {
                flags: p.flags,
                clear,
                blobs: p.blobs,
                header: entry[..p.header_len].to_vec(),
            }),
        }),
    })
}

/// Decrypts a v3 ciphertext into its opening (decompressed).
pub(crate) fn decrypt(
    v3: &V3,
    nonce: &[u8; 24],
    ct: &[u8],
    key: &[u8; 32],
) -> Result<Vec<u8>, EventError> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let plain = cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: &v3.header,
            },
        )
        .map_err(|_| err("/sealed/ct", "does not decrypt under its data key"))?;
    if v3.flags & FLAG_ZSTD != 0 {
        decompress(&plain)
    } else {
        Ok(plain)
    }
}

/// A v3 opening's blob slot: where the content goes and its salt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobSlot {
    pub pointer: String,
    pub salt: [u8; 32],
}

/// Reads a v3 opening (already checked against the commitment): the whole
/// event but its blobs, the blob slots, redactions and signature.
pub(crate) fn read_opening(
    v3: &V3,
    body: &[u8],
) -> Result<(crate::Entry, Vec<String>, Vec<BlobSlot>), EventError> {
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body) else {
        return Err(err("/commitment", "the opening is not a JSON object"));
    };
    if obj.get("v").and_then(Value::as_u64) != Some(3) {
        return Err(err("/v", "the opening of a v3 entry is not version 3"));
    }
    let Some(Value::Object(rest)) = obj.remove("event") else {
        return Err(err("/event", "the opening has no event object"));
    };
    let event = merge_clear(rest, &v3.clear)?;
    let redacted = match obj.remove("redacted") {
        None => Vec::new(),
        Some(r) => {
            serde_json::from_value(r).map_err(|_| err("/redacted", "not a list of field paths"))?
        }
    };
    let mut slots = Vec::new();
    if let Some(list) = obj.remove("blobs") {
        let list = list.as_array().ok_or_else(|| err("/blobs", "not a list"))?;
        for b in list {
            let pointer = b.get("pointer").and_then(Value::as_str);
            let salt = b
                .get("salt")
                .and_then(Value::as_str)
                .and_then(|s| B64.decode(s).ok())
                .and_then(|s| <[u8; 32]>::try_from(s).ok());
            match (pointer, salt) {
                (Some(p), Some(s)) => slots.push(BlobSlot {
                    pointer: p.to_string(),
                    salt: s,
                }),
                _ => {
                    return Err(err(
                        "/blobs",
                        "a blob slot needs a pointer and a 32-byte salt",
                    ))
                }
            }
        }
    }
    let listed: Vec<&str> = v3.blobs.iter().map(|b| b.pointer.as_str()).collect();
    let slotted: Vec<&str> = slots.iter().map(|s| s.pointer.as_str()).collect();
    if listed != slotted {
        return Err(err("/blobs", "the opening's blobs differ from the entry's"));
    }
    let entry = crate::Entry {
        version: 3,
        event,
        signature: obj.remove("signature"),
        appended_by: None,
    };
    Ok((entry, redacted, slots))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{decode_stored, index_matches};
    use proptest::prelude::*;
    use serde_json::json;

    const KEY: [u8; 32] = [7; 32];

    /// [`write_remainder`]'s output built as a map, the plain way, to check it.
    fn remainder(event: &Map<String, Value>) -> Map<String, Value> {
        let mut rest = event.clone();
        for (object, members) in CLEAR_FIELDS {
            if object.is_empty() {
                for m in *members {
                    if *m != "subject" {
                        rest.remove(*m);
                    }
                }
            } else if let Some(Value::Object(inner)) = rest.get_mut(*object) {
                let had = !inner.is_empty();
                for m in *members {
                    inner.remove(*m);
                }
                if had && inner.is_empty() {
                    rest.remove(*object);
                }
            }
        }
        rest
    }

    fn event(content: &str) -> Value {
        json!({"time": "2026-11-27T09:14:03.120Z", "id": "e1", "tenant": "acme",
            "source": {"name": "app", "build": 7}, "actor": {"id": "u1", "type": "user"},
            "action": "model.invoke", "subject": "customer-1",
            "ai": {"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 3},
            "input": {"content": content}, "outcome": {"status": "success", "reason": "why"}})
    }

    fn sealed(e: &Value, compress: bool, who: Option<&str>) -> PreparedEvent {
        let checked = crate::check(e).unwrap();
        seal(
            &SealInput {
                event: e.as_object().unwrap(),
                checked: &checked,
                signature: None,
                appended_by: who,
                redacted: &[],
                subject_tag: Some("hmac-sha256:ab"),
                compress,
            },
            DataKey { id: 9, key: &KEY },
            &[1; SEAL_RANDOM_LEN],
        )
        .unwrap()
    }

    #[test]
    fn seals_opens_and_restores_the_exact_event() {
        for compress in [false, true] {
            let e = event(&"the model said something long ".repeat(20));
            let p = sealed(&e, compress, Some("token:t1"));
            assert_eq!(p.entry[0], VERSION_BYTE);
            assert_eq!(p.entry[1] & FLAG_ZSTD != 0, compress);
            let stored = decode_stored(&p.entry).unwrap();
            assert_eq!(stored.version, 3);
            assert_eq!(stored.appended_by.as_deref(), Some("token:t1"));
            assert_eq!(stored.id(), Some("e1"));
            assert_eq!(stored.index["subject"], "hmac-sha256:ab");
            assert_eq!(stored.index["outcome"], json!({"status": "success"}));
            let s = stored.sealed.as_ref().unwrap();
            let opened = s.open(&KEY).unwrap();
            assert_eq!(&opened.entry.event, e.as_object().unwrap());
            assert!(index_matches(&stored.index, &opened.entry.event));
            // Clear fields are stored once: the opening lacks them.
            let body = std::str::from_utf8(&opened.opening[32..]).unwrap();
            assert!(!body.contains("model.invoke") && body.contains("customer-1"));
            // The opening alone (no key) proves the same event.
            let again = s.check_opening(opened.opening.clone()).unwrap();
            assert_eq!(again.entry, opened.entry);
            let mut canonical = Vec::new();
            write_object(&mut canonical, &opened.entry.event);
            assert_eq!(canonical, crate::check(&e).unwrap().canonical);
        }
    }

    #[test]
    fn compression_shrinks_repetitive_content() {
        let e = event(&"the model said something long ".repeat(20));
        let plain = sealed(&e, false, None).entry.len();
        let small = sealed(&e, true, None).entry.len();
        assert!(small * 2 < plain, "{small} vs {plain}");
    }

    #[test]
    fn any_changed_byte_fails_to_open() {
        let p = sealed(&event("short"), true, Some("token:t1"));
        for i in 0..p.entry.len() {
            let mut bad = p.entry.clone();
            bad[i] ^= 0x20;
            let opened = decode_stored(&bad).and_then(|s| {
                let s2 = s.sealed.clone().unwrap();
                let o = s2.open(&KEY)?;
                if !index_matches(&s.index, &o.entry.event) {
                    return Err(err("/index", "differs"));
                }
                if s.appended_by.as_deref() != Some("token:t1") {
                    return Err(err("/appended_by", "differs"));
                }
                Ok(o)
            });
            assert!(opened.is_err(), "byte {i} changed and still opened");
        }
        assert!(decode_stored(&p.entry)
            .unwrap()
            .sealed
            .unwrap()
            .open(&[8; 32])
            .is_err());
    }

    #[test]
    fn refuses_truncated_and_unknown_entries() {
        let p = sealed(&event("short"), false, None);
        let header = parse(&p.entry).unwrap().header_len;
        for n in 0..header + 16 {
            assert!(parse(&p.entry[..n]).is_err(), "{n} bytes parsed");
        }
        // A cut ciphertext parses but never opens.
        let cut = decode_stored(&p.entry[..p.entry.len() - 1]).unwrap();
        assert!(cut.sealed.unwrap().open(&KEY).is_err());
        let mut flags = p.entry.clone();
        flags[1] = 0x80;
        assert!(decode_stored(&flags).is_err());
    }

    #[test]
    fn an_opening_that_repeats_a_clear_field_is_refused() {
        let clear = json!({"id": "e1", "source": {"name": "a"}});
        let clear = clear.as_object().unwrap();
        let rest = json!({"id": "e2"}).as_object().unwrap().clone();
        assert!(merge_clear(rest, clear).is_err());
        let rest = json!({"source": {"name": "b"}})
            .as_object()
            .unwrap()
            .clone();
        assert!(merge_clear(rest, clear).is_err());
        let rest = json!({"source": {"x": 1}}).as_object().unwrap().clone();
        assert_eq!(
            Value::Object(merge_clear(rest, clear).unwrap()),
            json!({"id": "e1", "source": {"name": "a", "x": 1}})
        );
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z ]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop::collection::btree_map("(name|id|type|status|version|x)", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
        })
    }

    proptest! {
        #[test]
        fn remainder_and_clear_fields_make_the_event_again(
            members in prop::collection::btree_map(
                "(id|time|tenant|subject|source|actor|outcome|ai|input|risk_level|other)",
                arb_value(), 0..8)
        ) {
            let event: Map<String, Value> = members.into_iter().collect();
            let mut clear = crate::envelope::clear_fields(&event);
            clear.remove("subject");
            let rest = remainder(&event);
            let (mut direct, mut built) = (Vec::new(), Vec::new());
            write_remainder(&mut direct, &event);
            write_object(&mut built, &rest);
            prop_assert_eq!(direct, built);
            let back = merge_clear(rest, &clear).unwrap();
            prop_assert_eq!(back, event);
        }
    }
}
