//! Two nodes of one shared log (the shared database stood in for by
//! memory, see common/node.rs): a node's registries move into the
//! database, tokens, emitters, holds and keys made on one node hold on the
//! other, and only the publisher publishes.

use crate::common::node::{Database, Node};
use crate::common::*;
use aiaudit_ledger::{start_with_storage, Kind, Ledger, LedgerConfig, Role};
use aiaudit_store::{FsStore, Storage};
use serde_json::json;
use std::sync::Arc;

fn bearer(secret: &str) -> Vec<u8> {
    format!("Bearer {}", secret.trim()).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_registries_keys_and_checkpoints() {
    // A node that ran alone first: its registries are files. Its subjects'
    // keys are its own (no families): a keyring holding a family cannot move
    // into a shared database (docs/scaling.md).
    let first_dir = tempfile::tempdir().unwrap();
    let first = open_with(LedgerConfig {
        subject_key_families: false,
        ..config(first_dir.path())
    })
    .await;
    let (_, auditor_secret) = first
        .create_token(&root(), Role::Auditor, vec!["acme".into()], None)
        .unwrap();
    let edge = aiaudit_tlog::Signer::from_seed("edge", [1; 32]).unwrap();
    first
        .register_emitter(
            &root(),
            "edge",
            &edge.verifier().to_vkey(),
            vec!["acme".into()],
        )
        .unwrap();
    let hold = first.place_hold(&root(), "acme", "audit").await.unwrap();
    let e1 = append(&first, vec![event("e1", "acme")]).await[0];
    let a_dir = restart_copy(&first, first_dir.path()).await;
    let admin_secret = std::fs::read_to_string(a_dir.path().join("admin.token")).unwrap();

    // The same log, now shared by a publishing node A and a node B.
    let (log, recovery) = FsStore::open(a_dir.path()).unwrap();
    let log: Arc<dyn Storage> = Arc::new(log);
    let db = Arc::new(Database::default());
    let a = start_with_storage(
        config(a_dir.path()),
        Arc::new(Node::shared(log.clone(), db.clone(), true)),
        recovery.clone(),
    )
    .await
    .unwrap();
    for moved in ["tokens.json", "emitters.json", "holds.json", "keyring"] {
        assert!(
            !a_dir.path().join(moved).exists(),
            "{moved} moved into the database"
        );
    }
    for doc in ["tokens", "emitters", "holds"] {
        assert!(db.document(doc).is_some_and(|d| !d.is_empty()), "{doc}");
    }
    // B has the log's signing key and master key, nothing else of A's.
    let b_dir = tempfile::tempdir().unwrap();
    std::fs::copy(a_dir.path().join("log.key"), b_dir.path().join("log.key")).unwrap();
    let b = start_with_storage(
        LedgerConfig {
            master_key_file: Some(a_dir.path().join("master.key")),
            ..config(b_dir.path())
        },
        Arc::new(Node::shared(log.clone(), db.clone(), false)),
        recovery,
    )
    .await
    .unwrap();
    // The shared registry had tokens: B made no admin token of its own.
    assert!(!b_dir.path().join("admin.token").exists());
    assert_eq!(b.origin(), a.origin());

    // Tokens: the old ones hold on B; one made on B holds on A.
    for s in [&admin_secret, &auditor_secret] {
        assert!(b.principal(Some(&bearer(s))).unwrap().is_some());
    }
    let (made_on_b, b_secret) = b
        .create_token(&root(), Role::Emitter, vec!["acme".into()], None)
        .unwrap();
    let p = a.principal(Some(&bearer(&b_secret))).unwrap().unwrap();
    assert_eq!(p.token_id, made_on_b.id);
    // A revocation on A reaches B once B takes in the others' changes.
    aiaudit_ledger::registry::spawn_refresh(b.clone());
    a.revoke_token(&root(), &made_on_b.id).unwrap();
    eventually("B to see the revocation", || async {
        b.principal(Some(&bearer(&b_secret)))
            .is_err_and(|e| e.kind == Kind::Unauthorized)
            .then_some(())
    })
    .await;

    // Emitters: A's is known on B; one registered on B maps on A.
    assert_eq!(b.emitters(&root()).unwrap()[0].name, "edge");
    let edge2 = aiaudit_tlog::Signer::from_seed("edge2", [2; 32]).unwrap();
    b.register_emitter(
        &root(),
        "edge2",
        &edge2.verifier().to_vkey(),
        vec!["globex".into()],
    )
    .unwrap();
    let p = a.certificate_principal(&["edge2".to_string()]).unwrap();
    assert_eq!(p.tenants, ["globex"]);

    // Holds are read fresh on every node.
    let acme = who(Role::Auditor, &["acme"]);
    assert_eq!(b.holds_for(&acme).unwrap()[0].id, hold.id);
    let placed = b.place_hold(&root(), "globex", "regulator").await.unwrap();
    assert!(a
        .holds_for(&root())
        .unwrap()
        .iter()
        .any(|h| h.id == placed.id));
    a.release_hold(&root(), &placed.id).await.unwrap();
    assert!(b
        .holds_for(&root())
        .unwrap()
        .iter()
        .all(|h| h.id != placed.id));

    // The log: B appends, A publishes, B serves A's checkpoint.
    let ix = append(&b, vec![event("e2", "acme"), event("g1", "globex")]).await;
    let cp = b.await_checkpoint(ix[1] + 1).await.unwrap();
    // A saves a checkpoint before its own `latest` shows it, so B may serve
    // it first: wait for A to show it too (nothing else is appended here).
    let held = eventually("A to show the checkpoint B served", || async {
        let held = a.latest();
        (held.checkpoint.size >= cp.checkpoint.size).then_some(held)
    })
    .await;
    assert_eq!(cp.note, held.note);
    let status = b.status(None);
    assert_eq!(
        status["storage"],
        json!({"backend": "test-shared", "publisher": false})
    );
    assert!(b.readiness().await.ready);
    let text = b.metrics_text().await.unwrap();
    assert!(text.contains("aiaudit_publisher 0"), "{text}");

    // Keys: globex's, made on B, open on A.
    let g = read(&a, &root(), ix[1]).await;
    assert_eq!(
        (g["content"].as_str(), g["event"]["id"].as_str()),
        (Some("sealed"), Some("g1"))
    );
    // An erasure on A reaches B's keyring.
    assert_eq!(read(&b, &acme, e1).await["content"], "sealed");
    a.erase(&root(), "acme", "customer-1").await.unwrap();
    assert_eq!(read(&a, &acme, e1).await["content"], "erased");
    eventually("B to see the erasure", || async {
        (read(&b, &acme, e1).await["content"] == "erased").then_some(())
    })
    .await;
    // A shared keyring's master key is rotated offline, not by a node.
    let e = a.rotate_master_key(&root()).await.unwrap_err();
    assert_eq!((e.kind, e.slug.as_str()), (Kind::Conflict, "unsupported"));

    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_a_new_shared_log_makes_the_one_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let (log, recovery) = FsStore::open(dir.path()).unwrap();
    let db = Arc::new(Database::default());
    let ledger: Arc<Ledger> = start_with_storage(
        config(dir.path()),
        Arc::new(Node::shared(Arc::new(log), db.clone(), true)),
        recovery,
    )
    .await
    .unwrap();
    let secret = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let p = ledger.principal(Some(&bearer(&secret))).unwrap().unwrap();
    assert!(p.is_global_admin());
    // Kept in the database, not in a file.
    assert!(!dir.path().join("tokens.json").exists());
    assert!(db.document("tokens").is_some());
    ledger.shutdown().await.unwrap();
}
