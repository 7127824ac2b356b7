//! Forensic search and export bundles: parameters, scopes, filters, pages,
//! and bundles that the offline checker accepts.

use crate::common::*;
use aiaudit_ledger::search::{parse_query, Found};
use aiaudit_ledger::{Kind, Ledger, LedgerConfig, Principal, Role};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Three acme events of different kinds and one of globex.
fn sample() -> Vec<Value> {
    vec![
        json!({"id": "a1", "time": "2026-11-01T10:00:00Z", "tenant": "acme",
               "source": {"name": "chat"}, "actor": {"id": "u1", "type": "user"},
               "action": "model.invoke", "outcome": {"status": "success"}, "risk_level": "high",
               "ai": {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-x",
                      "gen_ai.conversation.id": "conv-1"},
               "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}),
        json!({"id": "a2", "time": "2026-11-02T10:00:00Z", "tenant": "acme",
               "source": {"name": "loan"}, "actor": {"id": "agent-7", "type": "agent"},
               "action": "agent.decision", "outcome": {"status": "failure"},
               "subject": "customer-1"}),
        json!({"id": "a3", "time": "2026-11-03T10:00:00Z", "tenant": "acme",
               "source": {"name": "loan"}, "actor": {"id": "officer-1", "type": "user"},
               "action": "human.review"}),
        json!({"id": "g1", "time": "2026-11-02T12:00:00Z", "tenant": "globex",
               "source": {"name": "chat"}, "actor": {"id": "u1", "type": "user"},
               "action": "model.invoke"}),
    ]
}

async fn sampled(config: LedgerConfig) -> Arc<Ledger> {
    let ledger = open_with(config).await;
    append(&ledger, sample()).await;
    ledger.await_checkpoint(4).await.unwrap();
    indexed(&ledger).await;
    ledger
}

async fn ids(ledger: &Arc<Ledger>, p: &Principal, pairs: &[(&str, &str)]) -> Vec<String> {
    let found = ledger
        .search(p, parse_query(&params(pairs), &[]).unwrap())
        .await
        .unwrap();
    found
        .events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn search_parameters_are_checked_and_each_error_names_its_parameter() {
    let bad = |pairs: &[(&str, &str)]| {
        let e = parse_query(&params(pairs), &[]).unwrap_err();
        assert_eq!(e.kind, Kind::Invalid);
        e.parameter.unwrap()
    };
    assert_eq!(bad(&[("tenat", "acme")]), "tenat");
    assert_eq!(bad(&[("limit", "0")]), "limit");
    assert_eq!(bad(&[("limit", "1001")]), "limit");
    assert_eq!(bad(&[("limit", "ten")]), "limit");
    assert_eq!(bad(&[("cursor", "abc")]), "cursor");
    assert_eq!(bad(&[("order", "up")]), "order");
    assert_eq!(bad(&[("from", "yesterday")]), "from");
    assert_eq!(bad(&[("to", "2026-13-01")]), "to");

    let q = parse_query(&params(&[]), &[]).unwrap();
    assert_eq!((q.limit, q.order), (100, aiaudit_index::Order::Desc));
    // Empty values are no filter; callers may allow parameters of their own.
    let q = parse_query(
        &params(&[
            ("actor", ""),
            ("format", "x"),
            ("order", "asc"),
            ("cursor", "7"),
        ]),
        &["format"],
    )
    .unwrap();
    assert_eq!(q.actor, None);
    assert_eq!((q.order, q.after), (aiaudit_index::Order::Asc, Some(7)));
    let q = parse_query(&params(&[("from", "2026-11-02T00:00:00Z")]), &[]).unwrap();
    assert_eq!(
        q.from_ms,
        aiaudit_index::parse_time_ms("2026-11-02T00:00:00Z")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_see_only_the_callers_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = sampled(config(dir.path())).await;
    let acme = who(Role::Auditor, &["acme"]);

    // Latest in the log first by default.
    assert_eq!(ids(&ledger, &acme, &[]).await, ["a3", "a2", "a1"]);
    assert_eq!(ids(&ledger, &acme, &[("tenant", "acme")]).await.len(), 3);
    assert_eq!(
        ids(&ledger, &who(Role::Auditor, &["*"]), &[]).await.len(),
        4
    );
    assert_eq!(
        ids(&ledger, &who(Role::Admin, &["acme", "globex"]), &[]).await,
        ["g1", "a3", "a2", "a1"]
    );
    assert_eq!(
        ids(&ledger, &who(Role::Auditor, &["initech"]), &[])
            .await
            .len(),
        0
    );

    let q = || parse_query(&params(&[("tenant", "globex")]), &[]).unwrap();
    let e = ledger.search(&acme, q()).await.err().unwrap();
    assert_eq!(e.kind, Kind::Forbidden);
    let emitter = who(Role::Emitter, &["acme"]);
    let e = ledger
        .search(&emitter, Default::default())
        .await
        .err()
        .unwrap();
    assert_eq!(e.kind, Kind::Forbidden);
    let e = ledger
        .export(&emitter, Default::default(), json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, Kind::Forbidden);
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_narrows_the_search() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = sampled(config(dir.path())).await;
    let all = who(Role::Auditor, &["*"]);
    for (pairs, expected) in [
        (vec![("action", "model.invoke")], vec!["g1", "a1"]),
        (
            vec![("action", "model.invoke"), ("tenant", "acme")],
            vec!["a1"],
        ),
        (vec![("actor", "agent-7")], vec!["a2"]),
        (vec![("source", "loan")], vec!["a3", "a2"]),
        (vec![("provider", "openai")], vec!["a1"]),
        (vec![("model", "gpt-x")], vec!["a1"]),
        (vec![("risk", "high")], vec!["a1"]),
        (vec![("outcome", "failure")], vec!["a2"]),
        (
            vec![("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")],
            vec!["a1"],
        ),
        (vec![("conversation_id", "conv-1")], vec!["a1"]),
        (
            vec![
                ("from", "2026-11-02T00:00:00Z"),
                ("to", "2026-11-03T00:00:00Z"),
            ],
            vec!["g1", "a2"],
        ),
        (vec![("action", "no.such")], vec![]),
    ] {
        assert_eq!(ids(&ledger, &all, &pairs).await, expected, "{pairs:?}");
    }
    // A plain subject is searched by its tag, which is also accepted as is.
    let acme = who(Role::Auditor, &["acme"]);
    let by_subject = [("tenant", "acme"), ("subject", "customer-1")];
    assert_eq!(ids(&ledger, &acme, &by_subject).await, ["a2"]);
    let tag = ledger.hash(&acme, "acme", b"customer-1").unwrap();
    assert_eq!(
        ids(&ledger, &acme, &[("tenant", "acme"), ("subject", &tag)]).await,
        ["a2"]
    );
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_come_in_pages_with_their_content() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = sampled(config(dir.path())).await;
    let acme = who(Role::Auditor, &["acme"]);
    let page = |pairs: Vec<(&'static str, String)>| {
        let ledger = ledger.clone();
        let acme = acme.clone();
        async move {
            let p: HashMap<String, String> =
                pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            ledger
                .search(&acme, parse_query(&p, &[]).unwrap())
                .await
                .unwrap()
        }
    };
    let Found {
        events,
        next_cursor,
        indexed_size,
        index_lag_events,
    } = page(vec![("limit", "2".into()), ("order", "asc".into())]).await;
    assert_eq!((indexed_size, index_lag_events), (4, 0));
    assert_eq!(events.len(), 2);
    assert_eq!(
        (events[0]["id"].as_str(), events[1]["id"].as_str()),
        (Some("a1"), Some("a2"))
    );
    // Each row comes with its event, opened.
    assert_eq!(events[0]["content"], "sealed");
    assert_eq!(events[0]["event"]["ai"]["gen_ai.request.model"], "gpt-x");
    assert_eq!(events[1]["tenant"], "acme");
    let cursor = next_cursor.expect("a next page");
    let rest = page(vec![
        ("limit", "2".into()),
        ("order", "asc".into()),
        ("cursor", cursor),
    ])
    .await;
    assert_eq!(rest.events.len(), 1);
    assert_eq!(rest.events[0]["id"], "a3");
    assert_eq!(rest.next_cursor, None);
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_is_a_bundle_the_offline_checker_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = sampled(config(dir.path())).await;
    let vkey = ledger.verifier().to_vkey();
    let acme = who(Role::Auditor, &["acme"]);

    let filters = json!({"tenant": "acme"});
    let bytes = ledger
        .export(&acme, Default::default(), filters.clone())
        .await
        .unwrap();
    let report = aiaudit_bundle::verify_bundle(&bytes[..], Some(&vkey)).unwrap();
    assert_eq!(report.origin, ledger.origin());
    assert_eq!(report.checkpoint_size, 4);
    assert_eq!(report.filters, filters);
    assert!(report.key_trusted);
    // acme's three events only, sealed and opened for the checker.
    assert_eq!((report.events, report.sealed_with_content), (3, 3));
    assert_eq!((report.first_index, report.last_index), (Some(0), Some(2)));

    let q = parse_query(&params(&[("action", "model.invoke")]), &[]).unwrap();
    let bytes = ledger
        .export(&who(Role::Auditor, &["*"]), q, json!({}))
        .await
        .unwrap();
    let report = aiaudit_bundle::verify_bundle(&bytes[..], Some(&vkey)).unwrap();
    assert_eq!((report.first_index, report.last_index), (Some(0), Some(3)));
    assert_eq!(report.events, 2);

    // The checker trusts the key it is given, not the one in the bundle.
    let other = aiaudit_tlog::Signer::from_seed("aiaudit.local/log", [9; 32])
        .unwrap()
        .verifier()
        .to_vkey();
    assert!(aiaudit_bundle::verify_bundle(&bytes[..], Some(&other)).is_err());
    // Nor does a damaged bundle pass.
    let mut damaged = bytes.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x55;
    assert!(aiaudit_bundle::verify_bundle(&damaged[..], Some(&vkey)).is_err());
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_holds_only_what_the_checkpoint_covers() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = sampled(LedgerConfig {
        // No checkpoint unless one is awaited.
        publish_interval: Duration::from_secs(3600),
        ..config(dir.path())
    })
    .await;
    append(
        &ledger,
        vec![event("late-1", "acme"), event("late-2", "acme")],
    )
    .await;
    indexed(&ledger).await;
    let acme = who(Role::Auditor, &["acme"]);
    // Search sees the new events; the export cannot prove them yet.
    assert_eq!(ids(&ledger, &acme, &[]).await.len(), 5);
    let bytes = ledger
        .export(&acme, Default::default(), json!({}))
        .await
        .unwrap();
    let report =
        aiaudit_bundle::verify_bundle(&bytes[..], Some(&ledger.verifier().to_vkey())).unwrap();
    assert_eq!((report.checkpoint_size, report.events), (4, 3));
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_event_is_exported_proven_but_without_content() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = sampled(config(dir.path())).await;
    let (_, _, _, erasure) = ledger.erase(&root(), "acme", "customer-1").await.unwrap();
    ledger.await_checkpoint(erasure + 1).await.unwrap();
    indexed(&ledger).await;
    let acme = who(Role::Auditor, &["acme"]);
    let found = ledger
        .search(
            &acme,
            parse_query(&params(&[("actor", "agent-7")]), &[]).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(found.events[0]["content"], "erased");
    assert!(found.events[0].get("event").is_none());

    let bytes = ledger
        .export(&acme, Default::default(), json!({}))
        .await
        .unwrap();
    let report =
        aiaudit_bundle::verify_bundle(&bytes[..], Some(&ledger.verifier().to_vkey())).unwrap();
    // a1, a3 and the erasure record keep their content; a2 is proven only.
    assert_eq!(report.events, 4);
    assert_eq!(
        (report.sealed_with_content, report.sealed_without_content),
        (3, 1)
    );
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_ahead_of_the_log_or_unreadable_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = sampled(config(dir.path())).await;
    // The log as it was with four entries...
    let early = restart_copy(&ledger, dir.path()).await;
    // ...and an index that went on to six.
    append(&ledger, vec![event("x1", "acme"), event("x2", "acme")]).await;
    let late = restart_copy(&ledger, dir.path()).await;
    let index = aiaudit_index::INDEX_FILE;
    for suffix in ["", "-wal", "-shm"] {
        let name = format!("{index}{suffix}");
        let _ = std::fs::remove_file(early.path().join(&name));
        if late.path().join(&name).exists() {
            std::fs::copy(late.path().join(&name), early.path().join(&name)).unwrap();
        }
    }
    let restored = open(early.path()).await;
    indexed(&restored).await;
    let all = who(Role::Auditor, &["*"]);
    assert_eq!(ids(&restored, &all, &[]).await, ["g1", "a3", "a2", "a1"]);
    let restarted = restart_copy(&restored, early.path()).await;

    // An index file that is not one is rebuilt too.
    std::fs::write(restarted.path().join(index), b"not a database").unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(restarted.path().join(format!("{index}{suffix}")));
    }
    let again = open(restarted.path()).await;
    indexed(&again).await;
    assert_eq!(
        ids(&again, &all, &[("tenant", "acme")]).await,
        ["a3", "a2", "a1"]
    );
    again.shutdown().await.unwrap();
}
