//! The engine called directly, without HTTP: the front door's rules, the
//! ledger's own records, scopes, and the readers.

use aiaudit_ledger::{Batch, Kind, Ledger, LedgerConfig, Principal, Role};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

fn config(dir: &std::path::Path) -> LedgerConfig {
    LedgerConfig {
        data_dir: dir.to_path_buf(),
        publish_interval: Duration::from_millis(50),
        ..LedgerConfig::default()
    }
}

fn who(role: Role, tenants: &[&str]) -> Principal {
    Principal {
        token_id: format!("{role:?}-{}", tenants.join("+")).to_lowercase(),
        role,
        tenants: tenants.iter().map(|t| t.to_string()).collect(),
    }
}

fn event(id: &str, tenant: &str) -> Value {
    json!({"id": id, "time": "2026-11-27T09:14:03Z", "tenant": tenant,
           "source": {"name": "app"}, "actor": {"id": "a", "type": "agent"},
           "action": "agent.decision", "subject": "customer-1"})
}

fn batch(events: Vec<Value>) -> Batch {
    Batch {
        events,
        signature: None,
    }
}

async fn open(dir: &std::path::Path) -> Arc<Ledger> {
    Ledger::open(config(dir)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_door_applies_every_rule_and_records_who_appended() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    let emitter = who(Role::Emitter, &["acme"]);
    let auditor = who(Role::Auditor, &["acme"]);

    let ok = ledger
        .append(&emitter, batch(vec![event("e1", "acme")]))
        .await
        .unwrap();
    assert_eq!(ok.ids, ["e1"]);
    assert!(!ok.appended[0].duplicate);

    // Read-only roles never append; other tenants are refused; reserved names too.
    let e = ledger
        .append(&auditor, batch(vec![event("e2", "acme")]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, Kind::Forbidden);
    let e = ledger
        .append(&emitter, batch(vec![event("e3", "globex")]))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.errors[0].pointer.as_str()),
        (Kind::Forbidden, "/0/tenant")
    );
    let mut forged = event("e4", "acme");
    forged["action"] = json!("policy.violation.resolved");
    let e = ledger
        .append(&emitter, batch(vec![forged]))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.errors[0].pointer.as_str()),
        (Kind::Forbidden, "/0/action")
    );
    let e = ledger.append(&emitter, batch(vec![])).await.unwrap_err();
    assert_eq!(e.kind, Kind::Invalid);

    // The ledger's own records say so.
    let own = ledger
        .append_own(vec![
            json!({"id": "own-1", "time": "2026-11-27T09:14:04Z", "tenant": "acme",
            "source": {"name": "aiaudit"}, "actor": {"id": "ledger", "type": "service"},
            "action": "retention.expiry"}),
        ])
        .await
        .unwrap();
    ledger.await_checkpoint(own[0].index + 1).await.unwrap();
    let caller = ledger
        .entry(&auditor, ok.appended[0].index, true)
        .await
        .unwrap()
        .0;
    assert_eq!(caller["appended_by"], "token:emitter-acme");
    assert!(caller["proof"]["inclusion"].is_array());
    let mine = ledger.entry(&auditor, own[0].index, false).await.unwrap().0;
    assert_eq!(mine["appended_by"], "ledger");
    // Readers of another tenant see nothing of it.
    let other = who(Role::Auditor, &["globex"]);
    let e = ledger.entry(&other, 0, false).await.unwrap_err();
    assert_eq!(e.kind, Kind::Forbidden);

    // The same id in another tenant is another event.
    let g = ledger
        .append(
            &who(Role::Emitter, &["globex"]),
            batch(vec![event("e1", "globex")]),
        )
        .await
        .unwrap();
    assert!(!g.appended[0].duplicate);
    assert_ne!(g.appended[0].index, ok.appended[0].index);
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_hold_for_tokens_keys_hashes_and_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    let root = who(Role::Admin, &["*"]);
    let acme_admin = who(Role::Admin, &["acme"]);
    ledger
        .append(&root, batch(vec![event("s1", "acme")]))
        .await
        .unwrap();

    let e = ledger
        .create_token(&acme_admin, Role::Admin, vec!["*".into()], None)
        .unwrap_err();
    assert_eq!(e.kind, Kind::Forbidden);
    let (record, secret) = ledger
        .create_token(&acme_admin, Role::Auditor, vec!["acme".into()], None)
        .unwrap();
    assert!(secret.starts_with("aat_"));
    let p = ledger
        .principal(Some(format!("Bearer {secret}").as_bytes()))
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.role, p.tenants.clone()),
        (Role::Auditor, vec!["acme".to_string()])
    );
    assert!(ledger
        .tokens(&acme_admin)
        .unwrap()
        .iter()
        .all(|t| t.tenants == ["acme"]));
    assert!(ledger
        .tokens(&root)
        .unwrap()
        .iter()
        .any(|t| t.id == record.id));

    for e in [
        ledger.key_stats(&acme_admin).unwrap_err(),
        ledger.rotate_keys(&acme_admin).await.unwrap_err(),
        ledger.keyring_image(&acme_admin).await.err().unwrap(),
        ledger.erase(&acme_admin, "globex", "x").await.unwrap_err(),
    ] {
        assert_eq!(e.kind, Kind::Forbidden, "{e}");
    }
    assert!(ledger.key_stats(&root).is_ok());

    // Hashing is read-only: no salt is made for a tenant that has none.
    let before = ledger.key_stats(&root).unwrap();
    let e = ledger.hash(&p, "acme", b"v");
    assert!(e.is_ok(), "acme has a salt (its event has a subject)");
    let e = ledger.hash(&root, "never-seen", b"v").unwrap_err();
    assert_eq!(e.kind, Kind::NotFound);
    assert_eq!(ledger.key_stats(&root).unwrap(), before);

    // Tile arithmetic never wraps.
    ledger.await_checkpoint(1).await.unwrap();
    let e = ledger
        .tile("tile/0/x072/x057/x594/x037/x927/936.p/1", None)
        .await
        .err()
        .unwrap();
    assert_eq!(e.kind, Kind::NotFound);
    assert!(ledger.tile("tile/0/000.p/1", None).await.is_ok());
    ledger.shutdown().await.unwrap();
}
