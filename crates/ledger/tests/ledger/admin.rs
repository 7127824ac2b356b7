//! What admins do: tokens, emitters, keys and erasure, each within the
//! caller's scope; and the HMAC readers search sealed values by.

use crate::common::*;
use aiaudit_ledger::search::parse_query;
use aiaudit_ledger::{Kind, LedgerConfig, Role};
use aiaudit_tlog::Signer;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::json;
use std::collections::HashMap;

fn bearer(secret: &str) -> Vec<u8> {
    format!("Bearer {secret}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_created_listed_and_revoked_within_the_callers_scope() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    let acme_admin = who(Role::Admin, &["acme"]);

    // The first start wrote an admin token of every tenant.
    let secret = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let first = ledger
        .principal(Some(&bearer(secret.trim())))
        .unwrap()
        .unwrap();
    assert!(first.is_global_admin());

    let (acme_rec, acme_secret) = ledger
        .create_token(&acme_admin, Role::Emitter, vec!["acme".into()], None)
        .unwrap();
    let (globex_rec, globex_secret) = ledger
        .create_token(&root(), Role::Auditor, vec!["globex".into()], None)
        .unwrap();
    assert_ne!(acme_secret, globex_secret);

    // Each admin lists what it manages, never a secret.
    let mine: Vec<String> = ledger
        .tokens(&acme_admin)
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(mine, [acme_rec.id.as_str()]);
    let all = ledger.tokens(&root()).unwrap();
    assert_eq!(all.len(), 3, "the first admin token and the two made here");
    assert!(all.iter().all(|t| t.sha256 != acme_secret));

    // Another scope's token is answered as unknown; revoking one's own works at once.
    let e = ledger
        .revoke_token(&acme_admin, &globex_rec.id)
        .unwrap_err();
    assert_eq!(e.kind, Kind::NotFound);
    assert!(ledger
        .principal(Some(&bearer(&globex_secret)))
        .unwrap()
        .is_some());
    ledger.revoke_token(&acme_admin, &acme_rec.id).unwrap();
    let e = ledger.principal(Some(&bearer(&acme_secret))).unwrap_err();
    assert_eq!(e.kind, Kind::Unauthorized);
    assert!(ledger.tokens(&root()).unwrap().iter().any(|t| t.revoked));
    let e = ledger.revoke_token(&root(), "no-such-id").unwrap_err();
    assert_eq!(e.kind, Kind::NotFound);

    // What may not be asked at all.
    let auditor = who(Role::Auditor, &["*"]);
    for e in [
        ledger.tokens(&auditor).unwrap_err(),
        ledger
            .create_token(&auditor, Role::Auditor, vec!["acme".into()], None)
            .unwrap_err(),
        ledger.revoke_token(&auditor, &globex_rec.id).unwrap_err(),
        ledger
            .create_token(&acme_admin, Role::Auditor, vec!["globex".into()], None)
            .unwrap_err(),
    ] {
        assert_eq!(e.kind, Kind::Forbidden, "{e}");
    }
    let e = ledger
        .create_token(
            &acme_admin,
            Role::Auditor,
            vec!["acme".into(), "globex".into()],
            None,
        )
        .unwrap_err();
    assert_eq!(e.errors[0].pointer, "/tenants");
    for tenants in [vec![], vec!["not a tenant".to_string()]] {
        let e = ledger
            .create_token(&root(), Role::Auditor, tenants, None)
            .unwrap_err();
        assert_eq!(
            (e.kind, e.slug.as_str(), e.errors[0].pointer.as_str()),
            (Kind::Invalid, "invalid-token-request", "/tenants")
        );
    }

    // Tokens that expired, headers that are not bearer tokens.
    let (_, old) = ledger
        .create_token(&root(), Role::Auditor, vec!["acme".into()], Some(1))
        .unwrap();
    assert_eq!(
        ledger.principal(Some(&bearer(&old))).unwrap_err().kind,
        Kind::Unauthorized
    );
    assert_eq!(
        ledger.principal(Some(b"Basic abc")).unwrap_err().kind,
        Kind::Unauthorized
    );
    assert!(ledger.principal(None).unwrap().is_none());
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emitters_are_registered_within_scope_and_replaced_only_by_their_scope() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    let acme_admin = who(Role::Admin, &["acme"]);
    let key = |name: &str, seed: u8| Signer::from_seed(name, [seed; 32]).unwrap().verifier();

    // A scoped admin registers emitters of its tenants only, never tenantless ones.
    let rec = ledger
        .register_emitter(
            &acme_admin,
            "edge",
            &key("edge", 1).to_vkey(),
            vec!["acme".into()],
        )
        .unwrap();
    assert_eq!(
        (rec.name.as_str(), rec.tenants.clone()),
        ("edge", vec!["acme".to_string()])
    );
    assert_eq!(rec.verifier_key, key("edge", 1).to_vkey());
    for tenants in [vec![], vec!["globex".to_string()], vec!["*".to_string()]] {
        let e = ledger
            .register_emitter(&acme_admin, "other", &key("other", 2).to_vkey(), tenants)
            .unwrap_err();
        assert_eq!(e.kind, Kind::Forbidden, "{e}");
    }
    let e = ledger
        .register_emitter(
            &who(Role::Auditor, &["*"]),
            "a",
            &key("a", 3).to_vkey(),
            vec!["acme".into()],
        )
        .unwrap_err();
    assert_eq!(e.kind, Kind::Forbidden);

    // A global admin's emitters, tenantless or of another tenant, are beyond acme's admin.
    ledger
        .register_emitter(&root(), "global", &key("global", 4).to_vkey(), vec![])
        .unwrap();
    ledger
        .register_emitter(
            &root(),
            "g-edge",
            &key("g-edge", 5).to_vkey(),
            vec!["globex".into()],
        )
        .unwrap();
    for name in ["global", "g-edge"] {
        let e = ledger
            .register_emitter(
                &acme_admin,
                name,
                &key(name, 6).to_vkey(),
                vec!["acme".into()],
            )
            .unwrap_err();
        assert_eq!(e.kind, Kind::Forbidden, "{name}");
    }
    // Its own it may re-key, here with a raw base64 Ed25519 key (one
    // without '+': see raw_base64_keys_with_a_plus_sign_are_accepted).
    let (seed, raw) = raw_key("edge", |b64| !b64.contains('+'));
    let rec = ledger
        .register_emitter(&acme_admin, "edge", &raw, vec!["acme".into()])
        .unwrap();
    assert_eq!(rec.verifier_key, key("edge", seed).to_vkey());

    let names = |p| -> Vec<String> {
        ledger
            .emitters(p)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect()
    };
    assert_eq!(names(&acme_admin), ["edge"]);
    assert_eq!(names(&root()), ["edge", "g-edge", "global"]);
    assert_eq!(
        ledger
            .emitters(&who(Role::Auditor, &["*"]))
            .unwrap_err()
            .kind,
        Kind::Forbidden
    );

    // Keys that are not keys, or not this emitter's.
    for (name, public_key, field) in [
        ("x", key("y", 8).to_vkey(), "/public_key"),
        ("x", "not base64!".to_string(), "/public_key"),
        ("x", B64.encode([1u8; 31]), "/public_key"),
        ("x", "x+00000000+AAAA".to_string(), "/public_key"),
    ] {
        let e = ledger
            .register_emitter(&root(), name, &public_key, vec![])
            .unwrap_err();
        assert_eq!(
            (e.kind, e.slug.as_str(), e.errors[0].pointer.as_str()),
            (Kind::Invalid, "invalid-emitter", field),
            "{public_key}"
        );
    }
    let e = ledger
        .register_emitter(&root(), "bad name!", &B64.encode([1u8; 32]), vec![])
        .unwrap_err();
    assert_eq!(
        (e.kind, e.errors[0].pointer.as_str()),
        (Kind::Invalid, "/name")
    );
    ledger.shutdown().await.unwrap();
}

/// The first seed whose public key, in standard base64, passes `want`.
fn raw_key(name: &str, want: impl Fn(&str) -> bool) -> (u8, String) {
    (1..=255u8)
        .map(|seed| {
            let v = Signer::from_seed(name, [seed; 32]).unwrap().verifier();
            (seed, B64.encode(v.public_key()))
        })
        .find(|(_, b64)| want(b64))
        .expect("some seed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_base64_keys_with_a_plus_sign_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    // About half of all Ed25519 keys have a '+' in standard base64.
    let (seed, raw) = raw_key("edge", |b64| b64.contains('+'));
    let rec = ledger
        .register_emitter(&root(), "edge", &raw, vec!["acme".into()])
        .unwrap();
    let expected = Signer::from_seed("edge", [seed; 32]).unwrap().verifier();
    assert_eq!(rec.verifier_key, expected.to_vkey());
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_data_and_master_keys_keeps_sealed_content_readable() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    let auditor = who(Role::Auditor, &["acme"]);
    let before = append(&ledger, vec![event("r1", "acme"), event("r2", "acme")]).await;
    let stats = ledger.key_stats(&root()).unwrap();
    assert_eq!(stats["tenants"], 1);
    assert_eq!(stats["destroyed_keys"], 0);

    let (rotated, counts) = ledger.rotate_keys(&root()).await.unwrap();
    // One new key per current key: here the one subject's.
    let live = |c: &serde_json::Value| {
        c["tenant_keys"].as_u64().unwrap() + c["subject_keys"].as_u64().unwrap()
    };
    assert_eq!(rotated, 1);
    assert_eq!(live(&counts), live(&stats) + rotated as u64);
    let after = append(&ledger, vec![event("r3", "acme")]).await;
    // New events are sealed under the new key; old ones still open with theirs.
    let key_of = |e: &serde_json::Value| {
        aiaudit_event::envelope::decode_stored(&unb64(&e["entry"]))
            .unwrap()
            .sealed
            .unwrap()
            .key
    };
    let old_key = key_of(&read(&ledger, &auditor, before[0]).await);
    assert_eq!(old_key, key_of(&read(&ledger, &auditor, before[1]).await));
    assert_ne!(old_key, key_of(&read(&ledger, &auditor, after[0]).await));
    for i in before.iter().chain(&after) {
        let e = read(&ledger, &auditor, *i).await;
        assert_eq!(e["content"], "sealed", "{e}");
        assert!(e["event"]["id"].as_str().unwrap().starts_with('r'));
    }

    let master = std::fs::read(dir.path().join("master.key")).unwrap();
    let (rewrapped, counts) = ledger.rotate_master_key(&root()).await.unwrap();
    // Every live record is re-wrapped: the tenant's salt and its data keys.
    assert_eq!(
        rewrapped as u64,
        counts["tenants"].as_u64().unwrap() + live(&counts)
    );
    assert_ne!(
        std::fs::read(dir.path().join("master.key")).unwrap(),
        master
    );
    for i in before.iter().chain(&after) {
        assert_eq!(read(&ledger, &auditor, *i).await["content"], "sealed");
    }

    // The snapshot is the keyring file as it stands: wrapped keys only.
    let image = ledger.keyring_image(&root()).await.unwrap();
    let snapshot = image.read(0, image.len()).await.unwrap();
    assert!(image.read(1, image.len()).await.is_err());
    assert_eq!(
        snapshot,
        std::fs::read(dir.path().join(aiaudit_keyring::KEYRING_FILE)).unwrap()
    );
    assert!(snapshot.starts_with(b"aiaudit-keyring 1\n"));

    // After a restart with the rotated master key, everything still opens.
    let copy = restart_copy(&ledger, dir.path()).await;
    let again = open(copy.path()).await;
    for i in before.iter().chain(&after) {
        assert_eq!(read(&again, &auditor, *i).await["content"], "sealed");
    }
    for e in [
        again
            .rotate_master_key(&who(Role::Admin, &["acme"]))
            .await
            .unwrap_err(),
        again.key_stats(&who(Role::Auditor, &["*"])).unwrap_err(),
    ] {
        assert_eq!(e.kind, Kind::Forbidden);
    }
    again.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_destroys_the_subjects_keys_and_logs_it() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    let auditor = who(Role::Auditor, &["acme"]);
    let mut other = event("keep", "acme");
    other["subject"] = json!("customer-2");
    let ix = append(&ledger, vec![event("gone", "acme"), other]).await;
    let epoch = ledger.erasure_epoch();

    let (destroyed, tag, id, index) = ledger
        .erase(&who(Role::Admin, &["acme"]), "acme", "customer-1")
        .await
        .unwrap();
    assert!(destroyed >= 1);
    assert!(ledger.erasure_epoch() > epoch);
    // The tag is what a reader computes for the subject.
    assert_eq!(ledger.hash(&auditor, "acme", b"customer-1").unwrap(), tag);

    let erased = read(&ledger, &auditor, ix[0]).await;
    assert_eq!(erased["content"], "erased");
    assert!(erased["event"]
        .get("subject")
        .is_none_or(|s| s != "customer-1"));
    assert_eq!(read(&ledger, &auditor, ix[1]).await["content"], "sealed");
    let stats = ledger.key_stats(&root()).unwrap();
    assert_eq!(stats["destroyed_keys"], destroyed);

    // The erasure is logged by the ledger, naming the subject by its tag only.
    let logged = read(&ledger, &auditor, index).await;
    assert_eq!(logged["appended_by"], "ledger");
    assert_eq!(logged["event"]["id"], id.as_str());
    assert_eq!(logged["event"]["action"], "data.erasure");
    assert_eq!(logged["event"]["actor"]["id"], "token:admin-acme");
    assert_eq!(logged["event"]["attributes"]["subject_tag"], tag.as_str());
    assert_eq!(logged["event"]["attributes"]["keys_destroyed"], destroyed);
    assert!(!logged.to_string().contains("customer-1"));

    // A search by the plain subject finds the erased event through its tag.
    indexed(&ledger).await;
    let q = parse_query(
        &HashMap::from([
            ("tenant".to_string(), "acme".to_string()),
            ("subject".to_string(), "customer-1".to_string()),
        ]),
        &[],
    )
    .unwrap();
    let found = ledger.search(&auditor, q).await.unwrap();
    assert_eq!(found.events.len(), 1);
    assert_eq!(found.events[0]["index"], ix[0]);
    assert_eq!(found.events[0]["content"], "erased");

    // Erasing again finds nothing left to destroy, and is logged all the same.
    let (again, tag2, _, index2) = ledger.erase(&root(), "acme", "customer-1").await.unwrap();
    assert_eq!((again, tag2), (0, tag));
    assert!(index2 > index);
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_is_refused_without_encryption_or_beyond_scope() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_with(LedgerConfig {
        encryption: false,
        ..config(dir.path())
    })
    .await;
    let ix = append(&ledger, vec![event("clear", "acme")]).await;
    let e = ledger
        .erase(&root(), "acme", "customer-1")
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.slug.as_str()),
        (Kind::Conflict, "encryption-off")
    );
    // Nothing was destroyed or logged: the event is there in the clear.
    let auditor = who(Role::Auditor, &["acme"]);
    let e0 = read(&ledger, &auditor, ix[0]).await;
    assert_eq!(
        (e0["content"].as_str(), e0["entry_version"].as_u64()),
        (Some("plain"), Some(1))
    );
    assert_eq!(e0["event"]["subject"], "customer-1");
    assert_eq!(ledger.status(None)["sequenced_size"], 1);

    let bad = ledger
        .erase(&root(), "not a tenant", "s")
        .await
        .unwrap_err();
    assert_eq!(
        (bad.kind, bad.errors[0].pointer.as_str()),
        (Kind::Invalid, "/tenant")
    );
    for p in [who(Role::Admin, &["globex"]), who(Role::Auditor, &["*"])] {
        let e = ledger.erase(&p, "acme", "customer-1").await.unwrap_err();
        assert_eq!(e.kind, Kind::Forbidden);
    }
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_are_for_readers_of_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    append(&ledger, vec![event("h1", "acme"), event("h2", "globex")]).await;
    let acme = who(Role::Auditor, &["acme"]);
    let a = ledger.hash(&acme, "acme", b"v").unwrap();
    assert!(a.starts_with("hmac-sha256:"));
    // Deterministic per tenant, different across tenants (each has its own salt).
    assert_eq!(ledger.hash(&root(), "acme", b"v").unwrap(), a);
    assert_ne!(ledger.hash(&root(), "globex", b"v").unwrap(), a);
    assert_ne!(ledger.hash(&acme, "acme", b"w").unwrap(), a);
    let e = ledger.hash(&acme, "globex", b"v").unwrap_err();
    assert_eq!(e.kind, Kind::Forbidden);
    let e = ledger
        .hash(&who(Role::Emitter, &["acme"]), "acme", b"v")
        .unwrap_err();
    assert_eq!(e.kind, Kind::Forbidden);
    let e = ledger.hash(&acme, "../acme", b"v").unwrap_err();
    assert_eq!(
        (e.kind, e.slug.as_str()),
        (Kind::Invalid, "invalid-hash-request")
    );
    ledger.shutdown().await.unwrap();
}
