//! Emitter-signed batches as the ledger receives them: the
//! `AIAudit-Signature-Format` and `AIAudit-Signature` headers
//! (`api::batch_signature`), an NDJSON body, each event's bytes in the
//! declared format (v1 canonical JSON or RFC 8785), and batch verification.
//!
//! Input: line 1 is the format header's value, line 2 the signature
//! header's, the rest the body.
//!
//! Properties: no panic on any headers, body or signature; a signature the
//! fuzzer made up never verifies; a real signature over the same events in
//! the declared format verifies, and so does every event alone offline
//! (`verify_entry_signature`), as an export bundle checks it.
#![no_main]

use aiaudit_event::signature::{sign_batch, verify_batch, verify_entry_signature};
use aiaudit_tlog::{Signer, Verifier};
use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::OnceLock;

fn keys() -> &'static (Signer, Verifier) {
    static KEYS: OnceLock<(Signer, Verifier)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let s = Signer::from_seed("fuzz-emitter", [5; 32]).expect("a seed makes a key");
        let v = s.verifier();
        (s, v)
    })
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let (Some(format), Some(signature), Some(body)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert("aiaudit-emitter", HeaderValue::from_static("fuzz-emitter"));
    for (name, value) in [
        ("aiaudit-signature-format", format),
        ("aiaudit-signature", signature),
    ] {
        if value.is_empty() {
            continue;
        }
        let Ok(value) = HeaderValue::from_bytes(value) else {
            return;
        };
        headers.insert(name, value);
    }
    let Ok(Some(declared)) = aiaudit_server::api::batch_signature(&headers) else {
        return;
    };
    let Ok(events) = aiaudit_server::extract::parse_events(body, true, 10_000) else {
        return;
    };
    let mut bytes = Vec::with_capacity(events.len());
    for event in &events {
        let Value::Object(map) = event else {
            return;
        };
        let Ok(b) = declared.format.event_bytes(map) else {
            return;
        };
        bytes.push(b);
    }
    if bytes.is_empty() {
        return;
    }
    let (signer, verifier) = keys();
    let made_up = verify_batch(verifier, declared.format, &bytes, &declared.signature);
    let real = sign_batch(signer, declared.format, &bytes);
    assert!(
        made_up.is_err() || declared.signature == real,
        "a made-up signature verified"
    );
    let per_event =
        verify_batch(verifier, declared.format, &bytes, &real).expect("a real signature verifies");
    for (event, sig) in events.iter().zip(per_event) {
        let Value::Object(map) = event else {
            unreachable!("checked above")
        };
        let key = verify_entry_signature(map, &sig.to_json()).expect("each event verifies alone");
        assert_eq!(key, verifier.to_vkey());
    }
});
