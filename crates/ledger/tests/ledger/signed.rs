//! Emitter-signed batches: checked against the registered key, limited to
//! the emitter's tenants, required where configured; and emitters that
//! authenticate by client certificate.

use crate::common::*;
use aiaudit_event::signature::sign_batch;
use aiaudit_ledger::{Batch, BatchSignature, Kind, Ledger, LedgerConfig, Role, SignatureFormat};
use aiaudit_tlog::Signer;
use serde_json::{json, Value};
use std::sync::Arc;

fn signer(name: &str, seed: u8) -> Signer {
    Signer::from_seed(name, [seed; 32]).unwrap()
}

/// `events` signed by `by` as emitter `emitter` (format v2, RFC 8785).
fn signed(by: &Signer, emitter: &str, events: Vec<Value>) -> Batch {
    signed_as(
        SignatureFormat::V2,
        SignatureFormat::V2,
        by,
        emitter,
        events,
    )
}

/// `events` signed in format `signed_in`, sent as if signed in `declared`.
fn signed_as(
    signed_in: SignatureFormat,
    declared: SignatureFormat,
    by: &Signer,
    emitter: &str,
    events: Vec<Value>,
) -> Batch {
    let bytes: Vec<Vec<u8>> = events
        .iter()
        .map(|e| signed_in.event_bytes(e.as_object().unwrap()).unwrap())
        .collect();
    Batch {
        signature: Some(BatchSignature {
            emitter: emitter.to_string(),
            format: declared,
            signature: sign_batch(by, signed_in, &bytes).to_vec(),
        }),
        events,
    }
}

/// An event whose v1 and v2 canonical forms differ (numbers, key order).
fn tricky(id: &str) -> Value {
    let mut e = event(id, "acme");
    e["attributes"] = serde_json::from_str(
        r#"{"big":1e21,"two":2.0,"small":0.000001,"exact":18014398509481984,"😀":1,"דּ":2}"#,
    )
    .unwrap();
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_signature_formats_are_accepted_stored_and_checked_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, key) = with_emitter(config(dir.path()), &["acme"]).await;
    let token = who(Role::Emitter, &["acme"]);
    let auditor = who(Role::Auditor, &["acme"]);
    for (i, format) in SignatureFormat::ALL.into_iter().enumerate() {
        let ok = ledger
            .append(
                &token,
                signed_as(format, format, &key, "edge", vec![tricky(&format!("t{i}"))]),
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", format.name()));
        let e = read(&ledger, &auditor, ok.appended[0].index).await;
        assert_eq!(e["emitter_signature"]["status"], "valid", "{e}");
        assert_eq!(e["emitter_signature"]["signature"]["format"], format.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_declared_in_the_other_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, key) = with_emitter(config(dir.path()), &["acme"]).await;
    let token = who(Role::Emitter, &["acme"]);
    for (signed_in, declared) in [
        (SignatureFormat::V2, SignatureFormat::V1),
        (SignatureFormat::V1, SignatureFormat::V2),
    ] {
        let batch = signed_as(signed_in, declared, &key, "edge", vec![tricky("x")]);
        let err = ledger.append(&token, batch).await.unwrap_err();
        assert_eq!(err.kind, Kind::Unauthorized, "{err:?}");
        assert!(err.detail.contains(declared.name()), "{}", err.detail);
    }
    assert_eq!(ledger.status(None)["sequenced_size"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_batch_with_an_integer_no_double_holds_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, key) = with_emitter(config(dir.path()), &["acme"]).await;
    let token = who(Role::Emitter, &["acme"]);
    let mut bad = event("b1", "acme");
    bad["attributes"] = serde_json::from_str(r#"{"tokens":9007199254740993}"#).unwrap();
    let events = vec![event("ok", "acme"), bad];
    // Signed over what the emitter's JCS library would print for it.
    let bytes: Vec<Vec<u8>> = events
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if let Some(u) = e.get_mut("attributes") {
                u["tokens"] = serde_json::json!(9007199254740992u64);
            }
            SignatureFormat::V2
                .event_bytes(e.as_object().unwrap())
                .unwrap()
        })
        .collect();
    let batch = Batch {
        signature: Some(BatchSignature {
            emitter: "edge".into(),
            format: SignatureFormat::V2,
            signature: sign_batch(&key, SignatureFormat::V2, &bytes).to_vec(),
        }),
        events,
    };
    let err = ledger.append(&token, batch).await.unwrap_err();
    assert_eq!(err.kind, Kind::Invalid, "{err:?}");
    assert_eq!(err.errors.len(), 1, "{err:?}");
    assert_eq!(err.errors[0].pointer, "/1/attributes/tokens");
    assert_eq!(err.errors[0].path, "events[1].attributes.tokens");
    assert!(err.errors[0].detail.contains("as a string"), "{err:?}");
    assert_eq!(ledger.status(None)["sequenced_size"], 0);
}

async fn with_emitter(config: LedgerConfig, tenants: &[&str]) -> (Arc<Ledger>, Signer) {
    let ledger = open_with(config).await;
    let key = signer("edge", 1);
    ledger
        .register_emitter(
            &root(),
            "edge",
            &key.verifier().to_vkey(),
            tenants.iter().map(|t| t.to_string()).collect(),
        )
        .unwrap();
    (ledger, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validly_signed_batch_is_logged_as_the_emitters() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, key) = with_emitter(config(dir.path()), &["acme"]).await;
    let token = who(Role::Emitter, &["acme"]);
    let ok = ledger
        .append(
            &token,
            signed(&key, "edge", vec![event("s1", "acme"), event("s2", "acme")]),
        )
        .await
        .unwrap();
    let auditor = who(Role::Auditor, &["acme"]);
    let e = read(&ledger, &auditor, ok.appended[1].index).await;
    assert_eq!(e["appended_by"], "emitter:edge");
    assert_eq!(e["emitter_signature"]["status"], "valid");
    assert_eq!(e["event"]["id"], "s2");

    // Once the emitter's key is replaced, the old signature still checks,
    // but against a key no longer registered.
    ledger
        .register_emitter(
            &root(),
            "edge",
            &signer("edge", 2).verifier().to_vkey(),
            vec!["acme".into()],
        )
        .unwrap();
    let e = read(&ledger, &auditor, ok.appended[0].index).await;
    assert_eq!(
        e["emitter_signature"]["status"],
        "valid, key not registered now"
    );
    // The new key signs from now on; the old one no longer does.
    let e = ledger
        .append(&token, signed(&key, "edge", vec![event("s3", "acme")]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, Kind::Unauthorized);
    ledger
        .append(
            &token,
            signed(&signer("edge", 2), "edge", vec![event("s3", "acme")]),
        )
        .await
        .unwrap();

    // The bundle checker accepts the signatures offline.
    let published = ledger.await_checkpoint(3).await.unwrap();
    indexed(&ledger).await;
    let q = aiaudit_ledger::search::parse_query(&Default::default(), &[]).unwrap();
    let bundle = ledger.export(&auditor, q, json!({})).await.unwrap();
    let vkey = ledger.verifier().to_vkey();
    let report = aiaudit_bundle::verify_bundle(&bundle[..], Some(&vkey)).unwrap();
    assert_eq!((report.events, report.emitter_signatures), (3, 3));
    assert_eq!(report.checkpoint_size, published.checkpoint.size);
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_signature_or_an_unknown_emitter_is_refused_and_nothing_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, key) = with_emitter(config(dir.path()), &["acme"]).await;
    let token = who(Role::Emitter, &["acme"]);

    // Signed by another key under the registered name.
    let e = ledger
        .append(
            &token,
            signed(&signer("edge", 9), "edge", vec![event("w1", "acme")]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, Kind::Unauthorized);
    // Signed, then changed.
    let mut batch = signed(&key, "edge", vec![event("w2", "acme")]);
    batch.events[0]["actor"]["id"] = json!("someone-else");
    let e = ledger.append(&token, batch).await.unwrap_err();
    assert_eq!(e.kind, Kind::Unauthorized);
    // A signature that is not 64 bytes.
    let mut batch = signed(&key, "edge", vec![event("w3", "acme")]);
    batch.signature.as_mut().unwrap().signature.truncate(10);
    let e = ledger.append(&token, batch).await.unwrap_err();
    assert_eq!(e.kind, Kind::Unauthorized);
    // An emitter nobody registered.
    let e = ledger
        .append(
            &token,
            signed(&signer("ghost", 3), "ghost", vec![event("w4", "acme")]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, Kind::Forbidden);
    assert!(e.detail.contains("ghost"));
    assert_eq!(ledger.status(None)["sequenced_size"], 0);
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emitter_signs_only_for_its_own_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, key) = with_emitter(config(dir.path()), &["globex"]).await;
    // The token may write acme, but the emitter is registered for globex.
    let token = who(Role::Emitter, &["acme", "globex"]);
    let e = ledger
        .append(
            &token,
            signed(
                &key,
                "edge",
                vec![event("t1", "globex"), event("t2", "acme")],
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, Kind::Forbidden);
    assert_eq!(e.errors.len(), 1);
    assert_eq!(e.errors[0].pointer, "/1/tenant");
    ledger
        .append(&token, signed(&key, "edge", vec![event("t1", "globex")]))
        .await
        .unwrap();
    assert_eq!(ledger.status(None)["sequenced_size"], 1);
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_that_requires_signatures_refuses_unsigned_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, key) = with_emitter(
        LedgerConfig {
            require_signed_tenants: vec!["acme".into()],
            ..config(dir.path())
        },
        &[],
    )
    .await;
    let token = who(Role::Emitter, &["acme", "globex"]);
    let e = ledger
        .append(
            &token,
            batch(vec![event("u1", "globex"), event("u2", "acme")]),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.errors[0].pointer.as_str()),
        (Kind::Unauthorized, "/1/tenant")
    );
    // Other tenants are not concerned; a signed batch passes, signed by a
    // tenantless emitter (one that signs for every tenant).
    ledger
        .append(&token, batch(vec![event("u1", "globex")]))
        .await
        .unwrap();
    let ok = ledger
        .append(&token, signed(&key, "edge", vec![event("u2", "acme")]))
        .await
        .unwrap();
    let e = read(&ledger, &root(), ok.appended[0].index).await;
    assert_eq!(e["appended_by"], "emitter:edge");
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_over_redacted_fields_was_checked_at_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, key) = with_emitter(
        LedgerConfig {
            sensitive_fields: vec!["output.content".into()],
            ..config(dir.path())
        },
        &["acme"],
    )
    .await;
    let mut e = event("r1", "acme");
    e["output"] = json!({"content": "the secret answer"});
    let ok = ledger
        .append(
            &who(Role::Emitter, &["acme"]),
            signed(&key, "edge", vec![e]),
        )
        .await
        .unwrap();
    let stored = read(&ledger, &root(), ok.appended[0].index).await;
    // What was signed is no longer what is stored: the signature was checked before.
    assert_eq!(
        stored["emitter_signature"]["status"],
        "valid before redaction (checked at ingest)"
    );
    assert_eq!(stored["redacted"], json!(["output.content"]));
    assert_eq!(
        stored["event"]["output"]["content"],
        ledger
            .hash(&root(), "acme", b"the secret answer")
            .unwrap()
            .as_str()
    );
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_maps_to_an_emitter_registered_with_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = with_emitter(config(dir.path()), &["acme"]).await;
    ledger
        .register_emitter(
            &root(),
            "anywhere",
            &signer("anywhere", 4).verifier().to_vkey(),
            vec![],
        )
        .unwrap();

    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let p = ledger
        .certificate_principal(&names(&["unknown.example", "edge"]))
        .unwrap();
    assert_eq!(
        (p.token_id.as_str(), p.role, p.tenants.clone()),
        ("cert:edge", Role::Emitter, vec!["acme".to_string()])
    );
    // An emitter without tenants cannot be mapped (it would write everywhere).
    for n in [names(&["anywhere"]), names(&["nobody"])] {
        let e = ledger.certificate_principal(&n).unwrap_err();
        assert_eq!(e.kind, Kind::Unauthorized);
    }
    // What it appends is recorded under the certificate.
    let ok = ledger
        .append(&p, batch(vec![event("c1", "acme")]))
        .await
        .unwrap();
    assert_eq!(
        read(&ledger, &root(), ok.appended[0].index).await["appended_by"],
        "cert:edge"
    );
    let e = ledger
        .append(&p, batch(vec![event("c2", "globex")]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, Kind::Forbidden);
    ledger.shutdown().await.unwrap();
}
