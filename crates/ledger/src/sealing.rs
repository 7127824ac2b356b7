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

/// Encodes a checked batch into entries: redaction, then sealing (or the
/// plain v1 entry when encryption is off), each entry recording who
/// appended it. Any error refuses the batch. Also gives back the events as
/// stored (sensitive fields replaced), for whoever looks at them after.
pub(crate) async fn encode_keeping_events(
    ledger: &Arc<Ledger>,
    mut events: Vec<Value>,
    mut checked: Vec<CheckedEvent>,
    sigs: Option<Vec<EventSignature>>,
    appended_by: &str,
) -> Result<(Vec<NewEntry>, Vec<Value>)> {
    let config = &ledger.config;
    if !config.encryption && config.sensitive_fields.is_empty() {
        return Ok((finish_plain(checked, sigs.as_deref(), appended_by)?, events));
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
        return Ok((finish_plain(checked, sigs.as_deref(), appended_by)?, events));
    }
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
        let sealed = match (ledger.entry_format, events[i].as_object()) {
            (3, Some(event)) => sealed_v3::seal(
                &sealed_v3::SealInput {
                    event,
                    checked: c,
                    signature: sigs.as_ref().map(|s| &s[i]),
                    appended_by: Some(appended_by),
                    redacted: &redacted[i],
                    subject_tag: choice.subject_tag.as_deref(),
                    compress: config.compress_content,
                },
                key,
                rand,
            ),
            _ => envelope::seal(
                c,
                sigs.as_ref().map(|s| &s[i]),
                Some(appended_by),
                &redacted[i],
                choice.subject_tag.as_deref(),
                key,
                rand,
            ),
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
    refuse_if_any(errors)?;
    Ok((batch, events))
}

fn finish_plain(
    checked: Vec<CheckedEvent>,
    sigs: Option<&[EventSignature]>,
    appended_by: &str,
) -> Result<Vec<NewEntry>> {
    let mut errors = Vec::new();
    let mut batch = Vec::with_capacity(checked.len());
    for (i, c) in checked.into_iter().enumerate() {
        match aiaudit_event::finish(c, sigs.map(|s| &s[i]), Some(appended_by)) {
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
    /// The whole event when readable (v1, or v2 with its key alive).
    pub event: Option<Map<String, Value>>,
    pub signature: Option<Value>,
    /// v2: `"sealed"` opened, or `"erased"` (key destroyed).
    pub content: &'static str,
    pub opening: Option<Vec<u8>>,
    pub redacted: Vec<String>,
}

/// Decodes an entry and, if it is sealed, opens it with its data key.
pub fn open_entry(keyring: &Keyring, entry: &[u8]) -> Result<Readable, String> {
    let stored = envelope::decode_stored(entry).map_err(|e| e.to_string())?;
    if let Some(plain) = &stored.plain {
        return Ok(Readable {
            event: Some(plain.event.clone()),
            signature: plain.signature.clone(),
            content: "plain",
            opening: None,
            redacted: Vec::new(),
            stored,
        });
    }
    let sealed = stored.sealed.as_ref().expect("v2 entries are sealed");
    match keyring.key(sealed.key) {
        Some(key) => {
            let opened = sealed.open(&key).map_err(|e| e.to_string())?;
            Ok(Readable {
                event: Some(opened.entry.event),
                signature: opened.entry.signature,
                content: "sealed",
                opening: Some(opened.opening),
                redacted: opened.redacted,
                stored,
            })
        }
        None if keyring.destroyed(sealed.key) => Ok(Readable {
            event: None,
            signature: None,
            content: "erased",
            opening: None,
            redacted: Vec::new(),
            stored,
        }),
        None => Err(format!(
            "data key {} is not in the keyring (restored without its keyring?)",
            sealed.key
        )),
    }
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
