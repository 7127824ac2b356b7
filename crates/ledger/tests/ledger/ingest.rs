//! The front door's rules beyond roles and tenants: rate limits,
//! validation, reserved names, duplicates, batch size and redaction of
//! sensitive fields.

use crate::common::*;
use aiaudit_ledger::{Kind, LedgerConfig, Role};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_token_is_rate_limited_and_told_when_to_retry() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_with(LedgerConfig {
        rate_limit_events_per_sec: 5,
        ..config(dir.path())
    })
    .await;
    let a = who(Role::Emitter, &["acme"]);
    // A burst of two seconds' worth passes, then the bucket is empty.
    let ten = (0..10).map(|i| event(&format!("r{i}"), "acme")).collect();
    ledger.append(&a, batch(ten)).await.unwrap();
    let five: Vec<_> = (10..15).map(|i| event(&format!("r{i}"), "acme")).collect();
    let e = ledger.append(&a, batch(five.clone())).await.unwrap_err();
    assert_eq!(
        (e.kind, e.slug.as_str()),
        (Kind::RateLimited, "rate-limited")
    );
    assert!(e.retry_after.is_some_and(|s| s >= 1), "{e:?}");
    // Nothing of the refused batch was logged; another token has its own bucket.
    assert_eq!(ledger.status(None)["sequenced_size"], 10);
    let mut b = who(Role::Emitter, &["acme"]);
    b.token_id = "another".into();
    ledger.append(&b, batch(five)).await.unwrap();
    let text = ledger.metrics_text().await.unwrap();
    assert!(
        text.contains("aiaudit_events_failed_total{tenant=\"acme\",reason=\"rate-limited\"} 5"),
        "{text}"
    );
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_events_are_refused_whole_with_every_error_named() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    let mut no_tenant = event("v2", "acme");
    no_tenant.as_object_mut().unwrap().remove("tenant");
    let mut bad_tokens = event("v3", "acme");
    bad_tokens["ai"] = json!({"gen_ai.usage.input_tokens": "many"});
    let e = ledger
        .append(
            &root(),
            batch(vec![event("v1", "acme"), no_tenant, bad_tokens]),
        )
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.slug.as_str()), (Kind::Invalid, "invalid-events"));
    let pointers: Vec<&str> = e.errors.iter().map(|f| f.pointer.as_str()).collect();
    assert_eq!(pointers, ["/1/tenant", "/2/ai/gen_ai.usage.input_tokens"]);
    assert_eq!(e.errors[1].path, "events[2].ai.gen_ai.usage.input_tokens");
    assert!(e.detail.starts_with("2 error(s)"), "{}", e.detail);
    assert_eq!(ledger.status(None)["sequenced_size"], 0);

    // The same rules are there for forwarders that check early.
    assert!(aiaudit_ledger::append::validate_batch(&[event("ok", "acme")]).is_ok());
    let mut reserved = event("x", "acme");
    reserved["source"]["name"] = json!("aiaudit-policy");
    let e = aiaudit_ledger::append::validate_batch(&[reserved.clone()]).unwrap_err();
    assert_eq!(
        (e.kind, e.errors[0].pointer.as_str()),
        (Kind::Forbidden, "/0/source/name")
    );
    for action in [
        "retention.expiry",
        "legal_hold.placed",
        "data.erasure",
        "policy.violation",
    ] {
        assert!(
            aiaudit_ledger::append::is_reserved_action(action),
            "{action}"
        );
    }
    assert!(!aiaudit_ledger::append::is_reserved_action("model.invoke"));
    let e = ledger
        .append(&root(), batch(vec![reserved]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, Kind::Forbidden);
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_sent_again_is_acknowledged_at_its_first_index() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    let emitter = who(Role::Emitter, &["acme"]);
    let first = ledger
        .append(
            &emitter,
            batch(vec![event("d1", "acme"), event("d2", "acme")]),
        )
        .await
        .unwrap();
    let again = ledger
        .append(
            &emitter,
            batch(vec![event("d3", "acme"), event("d1", "acme")]),
        )
        .await
        .unwrap();
    assert_eq!(again.ids, ["d3", "d1"]);
    assert!(!again.appended[0].duplicate);
    assert!(again.appended[1].duplicate);
    assert_eq!(again.appended[1].index, first.appended[0].index);
    assert_eq!(ledger.status(None)["sequenced_size"], 3);
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_max_batch_events_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_with(LedgerConfig {
        max_batch_events: 2,
        ..config(dir.path())
    })
    .await;
    let three = (0..3).map(|i| event(&format!("b{i}"), "acme")).collect();
    let e = ledger.append(&root(), batch(three)).await.unwrap_err();
    assert_eq!(e.kind, Kind::TooLarge);
    assert_eq!(ledger.status(None)["sequenced_size"], 0);
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_fields_are_stored_as_hmacs_that_hash_reproduces() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_with(LedgerConfig {
        sensitive_fields: vec![
            "output.content".into(),
            "attributes.account".into(),
            "input.content".into(),
        ],
        ..config(dir.path())
    })
    .await;
    let mut e = event("p1", "acme");
    e["output"] = json!({"content": "card 4111-1111"});
    e["attributes"] = json!({"account": 123456, "branch": "Ikeja"});
    let ix = append(&ledger, vec![e, event("p2", "acme")]).await;
    let auditor = who(Role::Auditor, &["acme"]);

    let stored = read(&ledger, &auditor, ix[0]).await;
    assert_eq!(stored["content"], "sealed");
    // The paths replaced, sorted; the absent input.content is not among them.
    assert_eq!(
        stored["redacted"],
        json!(["attributes.account", "output.content"])
    );
    let h = |v: &[u8]| ledger.hash(&auditor, "acme", v).unwrap();
    assert_eq!(
        stored["event"]["output"]["content"],
        h(b"card 4111-1111").as_str()
    );
    // Values that are not strings are hashed as canonical JSON.
    assert_eq!(
        stored["event"]["attributes"]["account"],
        h(b"123456").as_str()
    );
    assert_eq!(stored["event"]["attributes"]["branch"], "Ikeja");
    // "card 4111", not "4111": the entry holds hex (HMACs, digests) where
    // four digits turn up by chance in about one run in two hundred.
    assert!(!String::from_utf8_lossy(&unb64(&stored["entry"])).contains("card 4111"));
    // An event without those fields has nothing redacted.
    assert!(read(&ledger, &auditor, ix[1])
        .await
        .get("redacted")
        .is_none());
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_fields_are_redacted_in_plain_entries_too() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_with(LedgerConfig {
        encryption: false,
        sensitive_fields: vec!["output.content".into()],
        ..config(dir.path())
    })
    .await;
    let mut e = event("p1", "acme");
    e["output"] = json!({"content": "card 4111-1111"});
    let ix = append(&ledger, vec![e]).await;
    let auditor = who(Role::Auditor, &["acme"]);
    let stored = read(&ledger, &auditor, ix[0]).await;
    assert_eq!(stored["content"], "plain");
    assert_eq!(
        stored["event"]["output"]["content"],
        ledger
            .hash(&auditor, "acme", b"card 4111-1111")
            .unwrap()
            .as_str()
    );
    // The plain entry holds the event in the clear: the value must not be in it.
    let entry = String::from_utf8_lossy(&unb64(&stored["entry"])).to_string();
    assert!(
        entry.contains("hmac-sha256:") && !entry.contains("card 4111"),
        "{entry}"
    );
    ledger.shutdown().await.unwrap();
}
