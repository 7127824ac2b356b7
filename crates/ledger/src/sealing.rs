//! Ingest's last step before the sequencer, and its inverse for readers:
//! sensitive fields replaced by their per-tenant HMAC, then each event sealed
//! (entry format v3, or v2 until the log's upgrade is finalized) under its
//! data key; and opening sealed entries again.

use crate::error::Error;
use crate::error::{add_event_errors, refuse_if_any};
use crate::Ledger;
use aiaudit_event::envelope::{self, DataKey, Stored, SEAL_RANDOM_LEN};
use aiaudit_event::signature::EventSignature;
use aiaudit_event::{sealed_v3, CheckedEvent};
use aiaudit_keyring::{KeyChoice, Keyring};
use aiaudit_store::NewEntry;
use serde_json::{Map, Value};
use std::sync::Arc;

use crate::error::Result;

/// What sealing made of a batch: the entries, the events as stored
/// (sensitive fields replaced), and the blobs written for each event (so
/// that an event found to be a duplicate can have its blobs removed).
pub(crate) struct Encoded {
    pub entries: Vec<NewEntry>,
    pub events: Vec<Value>,
    pub blobs: Vec<Vec<aiaudit_tlog::Hash>>,
}

/// Encodes a checked batch into entries: redaction, then sealing (or the
/// plain v1 entry when encryption is off), each entry recording who
/// appended it; members too large for an entry are written as blobs first
/// (durably, before any entry lists them). Any error refuses the batch.
pub(crate) async fn encode_keeping_events(
    ledger: &Arc<Ledger>,
    mut events: Vec<Value>,
    mut checked: Vec<CheckedEvent>,
    sigs: Option<Vec<EventSignature>>,
    appended_by: &str,
) -> Result<Encoded> {
    let config = &ledger.config;
    check_event_sizes(&events, &checked, config.max_event_bytes)?;
    let no_blobs = |entries, events: Vec<Value>| Encoded {
        blobs: vec![Vec::new(); events.len()],
        entries,
        events,
    };
    if !config.encryption && config.sensitive_fields.is_empty() {
        let entries = finish_plain(&events, checked, sigs.as_deref(), appended_by)?;
        return Ok(no_blobs(entries, events));
    }
    let keys = choose_keys(&ledger.keyring, &checked).await?;
    let mut redacted: Vec<Vec<String>> = vec![Vec::new(); checked.len()];
    if !config.sensitive_fields.is_empty() {
        for (i, event) in events.iter_mut().enumerate() {
            let tenant = checked[i].tenant().to_string();
            let hmac = |value: &[u8]| {
                ledger
                    .keyring
                    .hmac(&tenant, value)
                    .map_err(|e| Error::unavailable(format!("keyring: {e}")))
            };
            redacted[i] = redact(event, &config.sensitive_fields, hmac)?;
            if !redacted[i].is_empty() {
                checked[i] = aiaudit_event::check(event).map_err(|errs| {
                    let mut errors = Vec::new();
                    add_event_errors(&mut errors, i, errs);
                    refuse_if_any(errors).unwrap_err()
                })?;
            }
        }
    }
    if !config.encryption {
        let entries = finish_plain(&events, checked, sigs.as_deref(), appended_by)?;
        return Ok(no_blobs(entries, events));
    }
    let v3 = ledger.entry_format >= crate::entry_format::V3;
    let compress = match (config.compress_content, ledger.entry_format) {
        (false, _) => sealed_v3::Compression::Off,
        (true, f) if f >= crate::entry_format::DICTIONARY => sealed_v3::Compression::ZstdDictionary,
        (true, _) => sealed_v3::Compression::Zstd,
    };
    let mut taken: Vec<Vec<(String, Value)>> = vec![Vec::new(); events.len()];
    if v3 {
        for (i, event) in events.iter_mut().enumerate() {
            if let Some(obj) = event.as_object_mut() {
                let plan = sealed_v3::plan_blobs(
                    obj,
                    checked[i].canonical_len,
                    config.blob_threshold,
                    &config.blob_fields,
                );
                for pointer in plan {
                    if let Some(v) = sealed_v3::take_member(obj, &pointer) {
                        taken[i].push((pointer, v));
                    }
                }
            }
        }
    }
    let (sealed_blobs, taken) = if taken.iter().any(|t| !t.is_empty()) {
        write_blobs(ledger, taken, &keys).await?
    } else {
        (vec![Vec::new(); events.len()], taken)
    };
    let mut random = vec![0u8; SEAL_RANDOM_LEN * checked.len()];
    getrandom::getrandom(&mut random)
        .map_err(|e| Error::internal(format!("no randomness for sealing: {e}")))?;
    let mut errors = Vec::new();
    let mut batch = Vec::with_capacity(checked.len());
    for (i, c) in checked.iter().enumerate() {
        let choice = &keys[i];
        let rand: &[u8; SEAL_RANDOM_LEN] = random[i * SEAL_RANDOM_LEN..(i + 1) * SEAL_RANDOM_LEN]
            .try_into()
            .expect("slice of SEAL_RANDOM_LEN");
        let key = DataKey {
            id: choice.key_id,
            key: &choice.key,
        };
        let Some(event) = events[i].as_object() else {
            // Unreachable: check() passes only objects.
            return Err(Error::internal("a checked event is not a JSON object"));
        };
        let input = sealed_v3::SealInput {
            event,
            checked: c,
            signature: sigs.as_ref().map(|s| &s[i]),
            appended_by: Some(appended_by),
            redacted: &redacted[i],
            subject_tag: choice.subject_tag.as_deref(),
            compress,
            blobs: &sealed_blobs[i],
        };
        let sealed = if v3 {
            sealed_v3::seal(&input, key, rand)
        } else {
            envelope::seal(&input, key, rand).map_err(too_large_for_v2)
        };
        match sealed {
            Ok(p) => batch.push(NewEntry {
                key: p.dedup_key,
                entry: p.entry,
                leaf: p.leaf,
            }),
            Err(errs) => add_event_errors(&mut errors, i, errs),
        }
    }
    // The events as received, for the policy engine.
    for (event, members) in events.iter_mut().zip(taken) {
        if let Some(obj) = event.as_object_mut() {
            for (pointer, v) in members {
                let _ = sealed_v3::put_member(obj, &pointer, v);
            }
        }
    }
    if !errors.is_empty() {
        remove_blobs(
            ledger,
            sealed_blobs
                .iter()
                .flatten()
                .map(|b| b.reference.commitment)
                .collect(),
        )
        .await;
    }
    refuse_if_any(errors)?;
    let blobs = sealed_blobs
        .iter()
        .map(|bs| bs.iter().map(|b| b.reference.commitment).collect())
        .collect();
    Ok(Encoded {
        entries: batch,
        events,
        blobs,
    })
}

/// A sealed v2 entry has no room for large content: say what would.
fn too_large_for_v2(errs: Vec<aiaudit_event::EventError>) -> Vec<aiaudit_event::EventError> {
    errs.into_iter()
        .map(|mut e| {
            if e.detail.contains("the most a log entry holds") {
                e.detail.push_str(
                    "; this log still writes entry format 2, which keeps no content out of line \
                     (finalize the upgrade to format 3: docs/operations.md)",
                );
            }
            e
        })
        .collect()
}

/// Refuses (413) a batch holding an event larger than `max` bytes of
/// canonical JSON, naming the event and the member that makes it so.
fn check_event_sizes(events: &[Value], checked: &[CheckedEvent], max: usize) -> Result<()> {
    let mut errors = Vec::new();
    for (i, c) in checked.iter().enumerate() {
        let n = c.canonical_len;
        if n > max && errors.len() < crate::error::MAX_ERRORS {
            let (pointer, largest) = largest_member(&events[i]);
            errors.push(crate::error::FieldError::event(
                Some(i),
                &pointer,
                &pointer.trim_start_matches('/').replace('/', "."),
                format!(
                    "the event is {n} bytes of canonical JSON, more than the {max} this ledger takes \
                     (max_event_bytes); this member alone is {largest} bytes"
                ),
            ));
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    let mut p = Error::new(
        crate::error::Kind::TooLarge,
        "event-too-large",
        "Event too large",
        format!(
            "{} event(s) exceed max_event_bytes ({max}); nothing of the batch was logged",
            errors.len()
        ),
    );
    p.errors = errors;
    Err(p)
}

/// The member that holds most of an event: from the top, into the largest
/// member of each object while it holds at least half of it.
fn largest_member(event: &Value) -> (String, usize) {
    let size = |v: &Value| {
        let mut out = Vec::new();
        aiaudit_event::write_canonical(&mut out, v);
        out.len()
    };
    let mut at = String::new();
    let mut v = event;
    let mut n = size(v);
    while let Value::Object(obj) = v {
        let Some((k, child, m)) = obj
            .iter()
            .map(|(k, c)| (k, c, size(c)))
            .max_by_key(|(_, _, m)| *m)
        else {
            break;
        };
        if m * 2 < n {
            break;
        }
        at.push('/');
        at.push_str(&k.replace('~', "~0").replace('/', "~1"));
        v = child;
        n = m;
    }
    (at, n)
}

type Taken = Vec<Vec<(String, Value)>>;

/// Seals and writes every blob of the batch, each durable before this
/// returns; gives back the members taken out (for the policy engine).
async fn write_blobs(
    ledger: &Arc<Ledger>,
    taken: Taken,
    keys: &[KeyChoice],
) -> Result<(Vec<Vec<sealed_v3::SealedBlob>>, Taken)> {
    let store = ledger.store.clone();
    if !store.stores_blobs() {
        return Err(Error::unavailable(
            "this storage backend keeps no blobs, so no event member can go out of line",
        ));
    }
    let keys: Vec<(u64, [u8; 32])> = keys.iter().map(|k| (k.key_id, k.key)).collect();
    let compress = ledger.config.compress_content;
    let (result, taken) = tokio::task::spawn_blocking(move || {
        let mut written: Vec<aiaudit_tlog::Hash> = Vec::new();
        let result = (|| -> Result<Vec<Vec<sealed_v3::SealedBlob>>> {
            let mut all = Vec::with_capacity(taken.len());
            for (i, members) in taken.iter().enumerate() {
                let mut sealed = Vec::with_capacity(members.len());
                for (pointer, value) in members {
                    let mut content = Vec::new();
                    aiaudit_event::write_canonical(&mut content, value);
                    let mut random = [0u8; 48];
                    getrandom::getrandom(&mut random)
                        .map_err(|e| Error::internal(format!("no randomness for sealing: {e}")))?;
                    let salt: [u8; 32] = random[..32].try_into().expect("32");
                    let prefix: [u8; 16] = random[32..].try_into().expect("16");
                    let id = aiaudit_event::blob::commitment(&salt, &content);
                    let key = DataKey {
                        id: keys[i].0,
                        key: &keys[i].1,
                    };
                    let mut writer = store.blob_writer(&id).map_err(|e| Error::from_store(&e))?;
                    let stored =
                        aiaudit_event::blob::seal(&content, &id, key, prefix, compress, |b| {
                            writer.write(b)
                        })
                        .map_err(|e| Error::from_store(&e))?;
                    writer.commit().map_err(|e| Error::from_store(&e))?;
                    written.push(id);
                    sealed.push(sealed_v3::SealedBlob {
                        reference: sealed_v3::BlobRef {
                            pointer: pointer.clone(),
                            size: content.len() as u64,
                            commitment: id,
                            stored,
                        },
                        salt,
                    });
                }
                all.push(sealed);
            }
            Ok(all)
        })();
        if result.is_err() {
            // Nothing lists them: the batch is refused.
            for id in &written {
                let _ = store.remove_blob(id);
            }
        }
        (result, taken)
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?;
    let sealed = result?;
    let n: usize = sealed.iter().map(Vec::len).sum();
    let bytes: u64 = sealed.iter().flatten().map(|b| b.reference.size).sum();
    ledger.metrics.blobs_written(n as u64, bytes);
    Ok((sealed, taken))
}

/// Removes blobs no entry lists (a refused batch, a duplicate event).
/// Best effort: one left behind is an orphan, which `aiaudit verify`
/// reports and never calls corruption.
pub(crate) async fn remove_blobs(ledger: &Arc<Ledger>, ids: Vec<aiaudit_tlog::Hash>) {
    if ids.is_empty() {
        return;
    }
    let store = ledger.store.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for id in ids {
            if let Err(e) = store.remove_blob(&id) {
                tracing::warn!(blob = %aiaudit_store::blob_name(&id), error = %e, "an unlisted blob was not removed");
            }
        }
    })
    .await;
}

fn finish_plain(
    events: &[Value],
    checked: Vec<CheckedEvent>,
    sigs: Option<&[EventSignature]>,
    appended_by: &str,
) -> Result<Vec<NewEntry>> {
    let mut errors = Vec::new();
    let mut batch = Vec::with_capacity(checked.len());
    for (i, c) in checked.into_iter().enumerate() {
        match aiaudit_event::finish(&events[i], c, sigs.map(|s| &s[i]), Some(appended_by)) {
            Ok(p) => batch.push(NewEntry {
                key: p.dedup_key,
                entry: p.entry,
                leaf: p.leaf,
            }),
            Err(errs) => add_event_errors(&mut errors, i, errs),
        }
    }
    refuse_if_any(errors)?;
    Ok(batch)
}

/// The data key of every event. Keys that do not exist yet are created
/// durably (one fsync for the batch) off the async workers.
async fn choose_keys(keyring: &Arc<Keyring>, checked: &[CheckedEvent]) -> Result<Vec<KeyChoice>> {
    let wants: Vec<(&str, Option<&str>)> =
        checked.iter().map(|c| (c.tenant(), c.subject())).collect();
    if let Some(found) = keyring.lookup(&wants) {
        return Ok(found);
    }
    let owned: Vec<(String, Option<String>)> = wants
        .iter()
        .map(|(t, s)| (t.to_string(), s.map(str::to_string)))
        .collect();
    let keyring = keyring.clone();
    tokio::task::spawn_blocking(move || {
        let wants: Vec<(&str, Option<&str>)> = owned
            .iter()
            .map(|(t, s)| (t.as_str(), s.as_deref()))
            .collect();
        keyring.choose(&wants)
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?
    .map_err(|e| Error::unavailable(format!("keyring: {e}")))
}

/// Replaces each sensitive field present in `event` by its HMAC
/// (`hmac-sha256:<hex>`; strings hash their UTF-8, other values their
/// canonical JSON). Returns the paths replaced.
pub fn redact(
    event: &mut Value,
    paths: &[String],
    hmac: impl Fn(&[u8]) -> Result<String>,
) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for path in paths {
        if let Some(slot) = find_field(event, path) {
            let bytes = match &*slot {
                Value::String(s) => s.as_bytes().to_vec(),
                other => {
                    let mut out = Vec::new();
                    aiaudit_event::write_canonical(&mut out, other);
                    out
                }
            };
            *slot = Value::String(hmac(&bytes)?);
            done.push(path.clone());
        }
    }
    Ok(done)
}

/// The field at a dotted path. Member names may contain dots themselves
/// (`ai.gen_ai.prompt`): at each object the longest matching name wins.
fn find_field<'a>(value: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let obj = value.as_object_mut()?;
    if obj.contains_key(path) {
        return obj.get_mut(path);
    }
    let (head, rest) = path
        .match_indices('.')
        .map(|(i, _)| (&path[..i], &path[i + 1..]))
        .rev()
        .find(|(head, _)| obj.contains_key(*head))?;
    find_field(obj.get_mut(head)?, rest)
}

/// Appends an event the ledger writes itself (an erasure, an expiry, a
/// legal hold), through the same validation and sealing as any other.
/// Returns its id and log index.
pub async fn append_own_event(
    ledger: &Arc<Ledger>,
    tenant: &str,
    action: &str,
    actor: (&str, &str),
    attributes: Value,
) -> Result<(String, u64)> {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| Error::internal(e.to_string()))?;
    let id = uuid::Uuid::now_v7().to_string();
    let event = serde_json::json!({
        "id": id,
        "time": now,
        "tenant": tenant,
        "source": {"name": "aiaudit"},
        "actor": {"id": actor.0, "type": actor.1},
        "action": action,
        "outcome": {"status": "success"},
        "attributes": attributes,
    });
    let appended = ledger.append_own(vec![event]).await?;
    Ok((id, appended.first().map_or(0, |a| a.index)))
}

/// What a reader gets from a stored entry.
pub struct Readable {
    pub stored: Stored,
    /// The whole event when readable (v1, or v2/v3 with its key alive);
    /// without its blob members when they were not asked for.
    pub event: Option<Map<String, Value>>,
    pub signature: Option<Value>,
    /// v2/v3: `"sealed"` opened, or `"erased"` (key destroyed).
    pub content: &'static str,
    pub opening: Option<Vec<u8>>,
    pub redacted: Vec<String>,
    /// The event's out-of-line members (v3), in the entry's order.
    pub blobs: Vec<BlobView>,
    /// [`BlobMode::Raw`]: each blob's content (canonical JSON), checked.
    pub blob_contents: Vec<Vec<u8>>,
}

/// An out-of-line member as readers are told of it.
pub struct BlobView {
    pub reference: sealed_v3::BlobRef,
    /// Whether `event` holds it.
    pub included: bool,
}

impl BlobView {
    pub fn to_json(&self, index: u64, n: usize) -> Value {
        let r = &self.reference;
        let b64 = |h: &[u8]| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(h)
        };
        serde_json::json!({
            "pointer": r.pointer,
            "bytes": r.size,
            "commitment": b64(&r.commitment),
            "stored_sha256": b64(&r.stored),
            "included": self.included,
            "href": format!("/v1/events/{index}/blobs/{n}"),
        })
    }
}

/// What to do with an event's blobs when opening it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobMode {
    /// Leave them out of the event (listed in [`Readable::blobs`]).
    Omit,
    /// Read each, check it against its commitment, put it back in the event.
    Fill,
    /// Read and check each, keep the content apart (export bundles).
    Raw,
}

/// Why an entry cannot be read.
#[derive(Debug)]
pub enum OpenError {
    /// The entry itself does not decode or open.
    Entry(String),
    /// A blob is missing, unreadable, or does not match its commitment.
    Blob(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Entry(e) => f.write_str(e),
            OpenError::Blob(e) => write!(f, "integrity error: {e}"),
        }
    }
}

impl From<OpenError> for String {
    fn from(e: OpenError) -> String {
        e.to_string()
    }
}

/// Decodes an entry and, if it is sealed, opens it with its data key,
/// handling its blobs as `mode` says. Blocks on storage: call it from a
/// blocking context.
pub fn open_entry(
    keyring: &Keyring,
    store: &dyn aiaudit_store::Storage,
    entry: &[u8],
    mode: BlobMode,
) -> Result<Readable, OpenError> {
    let stored = envelope::decode_stored(entry).map_err(|e| OpenError::Entry(e.to_string()))?;
    let refs: Vec<sealed_v3::BlobRef> = stored
        .sealed
        .as_ref()
        .and_then(|s| s.v3.as_ref())
        .map(|v3| v3.blobs.clone())
        .unwrap_or_default();
    let views = |included: bool| -> Vec<BlobView> {
        refs.iter()
            .map(|r| BlobView {
                reference: r.clone(),
                included,
            })
            .collect()
    };
    if let Some(plain) = &stored.plain {
        return Ok(Readable {
            event: Some(plain.event.clone()),
            signature: plain.signature.clone(),
            content: "plain",
            opening: None,
            redacted: Vec::new(),
            blobs: Vec::new(),
            blob_contents: Vec::new(),
            stored,
        });
    }
    let sealed = stored.sealed.as_ref().expect("v2 entries are sealed");
    match keyring.key_for(sealed.key, subject_tag(&stored)) {
        Some(key) => {
            let opened = sealed
                .open(&key)
                .map_err(|e| OpenError::Entry(e.to_string()))?;
            let mut event = opened.entry.event;
            let mut contents = Vec::new();
            if mode != BlobMode::Omit {
                let data_key = DataKey {
                    id: sealed.key,
                    key: &key,
                };
                for (r, slot) in refs.iter().zip(&opened.blobs) {
                    let content = read_blob(store, r, &slot.salt, data_key)?;
                    if mode == BlobMode::Fill {
                        let value: Value = serde_json::from_slice(&content).map_err(|e| {
                            OpenError::Blob(format!("blob at {} is not JSON: {e}", r.pointer))
                        })?;
                        sealed_v3::put_member(&mut event, &r.pointer, value)
                            .map_err(|e| OpenError::Blob(e.to_string()))?;
                    } else {
                        contents.push(content);
                    }
                }
            }
            Ok(Readable {
                event: Some(event),
                signature: opened.entry.signature,
                content: "sealed",
                opening: Some(opened.opening),
                redacted: opened.redacted,
                blobs: views(mode == BlobMode::Fill),
                blob_contents: contents,
                stored,
            })
        }
        None if keyring.destroyed(sealed.key) => Ok(Readable {
            event: None,
            signature: None,
            content: "erased",
            opening: None,
            redacted: Vec::new(),
            blobs: views(false),
            blob_contents: Vec::new(),
            stored,
        }),
        None => Err(OpenError::Entry(format!(
            "data key {} is not in the keyring (restored without its keyring?)",
            sealed.key
        ))),
    }
}

/// Reads one blob whole and checks it: its stored bytes against the
/// SHA-256 the entry logs, its content against the commitment.
pub fn read_blob(
    store: &dyn aiaudit_store::Storage,
    r: &sealed_v3::BlobRef,
    salt: &[u8; 32],
    key: DataKey<'_>,
) -> Result<Vec<u8>, OpenError> {
    let name = aiaudit_store::blob_name(&r.commitment);
    let source = |offset: u64, len: usize| -> std::result::Result<Vec<u8>, String> {
        store
            .read_blob(&r.commitment, offset, len)
            .map_err(|e| e.to_string())
    };
    let len = store
        .blob_len(&r.commitment)
        .map_err(|e| OpenError::Blob(format!("blob {name}: {e}")))?
        .ok_or_else(|| OpenError::Blob(format!("blob {name} (at {}) is missing", r.pointer)))?;
    aiaudit_event::blob::open_verified(&source, len, &r.stored, &r.commitment, salt, key, r.size)
        .map_err(|e| OpenError::Blob(e.to_string()))
}

/// The subject tag a stored entry carries in the clear (a key derived from a
/// family is found with it).
pub(crate) fn subject_tag(stored: &aiaudit_event::envelope::Stored) -> Option<&str> {
    stored.index.get("subject").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_nested_and_dotted_fields() {
        let mut e = json!({"input": {"content": "hello"}, "ai": {"gen_ai.prompt": {"a": 1}},
                           "actor": {"id": "u"}});
        let fields = vec![
            "input.content".to_string(),
            "ai.gen_ai.prompt".to_string(),
            "actor.email".to_string(),
        ];
        let done = redact(&mut e, &fields, |b| Ok(format!("h:{}", b.len()))).unwrap();
        assert_eq!(done, vec!["input.content", "ai.gen_ai.prompt"]);
        assert_eq!(e["input"]["content"], "h:5");
        assert_eq!(e["ai"]["gen_ai.prompt"], "h:7");
        assert_eq!(e["actor"], json!({"id": "u"}));
    }
}
