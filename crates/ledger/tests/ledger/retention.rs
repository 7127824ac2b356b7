//! Retention expiry and the legal holds that suspend it. Expiry destroys
//! data keys and drops index rows; the log itself, and its proofs, stay.

use crate::common::*;
use aiaudit_ledger::retention::{expire_tenant, retention_of};
use aiaudit_ledger::search::parse_query;
use aiaudit_ledger::{Kind, Ledger, LedgerConfig, Role};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Keys live a second and events a second; expiry runs every 100 ms.
fn short_lived(dir: &std::path::Path) -> LedgerConfig {
    LedgerConfig {
        retention: [("*".to_string(), Duration::from_secs(1))].into(),
        retention_check_interval: Duration::from_millis(100),
        data_key_max_age: Duration::from_secs(1),
        ..config(dir)
    }
}

fn old(id: &str, tenant: &str) -> Value {
    let mut e = event(id, tenant);
    e["time"] = json!("2020-01-01T00:00:00Z");
    e
}

async fn content(ledger: &Arc<Ledger>, index: u64) -> String {
    read(ledger, &root(), index).await["content"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn wait_erased(ledger: &Arc<Ledger>, index: u64) {
    eventually("the event's key to expire", || async {
        (content(ledger, index).await == "erased").then_some(())
    })
    .await
}

async fn search(ledger: &Arc<Ledger>, pairs: &[(&str, &str)]) -> Vec<Value> {
    let p: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ledger
        .search(&root(), parse_query(&p, &[]).unwrap())
        .await
        .unwrap()
        .events
}

/// Runs expiry of `tenant` until it destroys keys; returns what that run did.
async fn expire_until_keys_go(ledger: &Arc<Ledger>, tenant: &str) -> (usize, u64) {
    eventually("a key old enough to expire", || async {
        let done = expire_tenant(ledger, tenant).await.unwrap();
        (done.0 > 0).then_some(done)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_runs_in_the_background_when_a_retention_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_with(short_lived(dir.path())).await;
    let ix = append(&ledger, vec![old("b1", "acme")]).await;
    let epoch = ledger.erasure_epoch();
    wait_erased(&ledger, ix[0]).await;
    // The epoch moves right after the keys are destroyed (never before).
    eventually("the erasure epoch to move", || async {
        (ledger.erasure_epoch() > epoch).then_some(())
    })
    .await;
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_stops_expiry_and_its_release_lets_it_resume() {
    let dir = tempfile::tempdir().unwrap();
    // Expiry is run by hand here: the background run is an hour away.
    let ledger = open_with(LedgerConfig {
        retention_check_interval: Duration::from_secs(3600),
        ..short_lived(dir.path())
    })
    .await;
    let held_admin = who(Role::Admin, &["held"]);
    let hold = ledger
        .place_hold(&held_admin, "held", "litigation 2026-17")
        .await
        .unwrap();
    assert_eq!(
        (hold.tenant.as_str(), hold.placed_by.as_str()),
        ("held", "admin-held")
    );
    let ix = append(&ledger, vec![old("h1", "held"), old("f1", "free")]).await;
    let epoch = ledger.erasure_epoch();

    // The tenant without a hold expires: its key is destroyed, its index rows dropped.
    let (keys, _) = expire_until_keys_go(&ledger, "free").await;
    assert_eq!(content(&ledger, ix[1]).await, "erased");
    assert_eq!(ledger.erasure_epoch(), epoch + keys as u64);
    indexed(&ledger).await;
    let logged = search(
        &ledger,
        &[("tenant", "free"), ("action", "retention.expiry")],
    )
    .await;
    // Newest first: the run that destroyed the keys.
    let last = &logged[0]["event"];
    assert_eq!(last["actor"]["id"], "aiaudit");
    assert_eq!(last["attributes"]["keys_destroyed"], keys);
    assert_eq!(last["attributes"]["retention_seconds"], 1);
    assert!(
        search(&ledger, &[("tenant", "free"), ("action", "agent.decision")])
            .await
            .is_empty()
    );
    assert_eq!(
        read(&ledger, &root(), logged[0]["index"].as_u64().unwrap()).await["appended_by"],
        "ledger"
    );

    // The held tenant's event, as old, keeps its key and its index row.
    assert_eq!(expire_tenant(&ledger, "held").await.unwrap(), (0, 0));
    assert_eq!(content(&ledger, ix[0]).await, "sealed");
    assert_eq!(
        search(&ledger, &[("tenant", "held"), ("action", "agent.decision")])
            .await
            .len(),
        1
    );
    // The log still proves the expired event.
    let cp = ledger.await_checkpoint(ix[1] + 1).await.unwrap();
    let (proof, leaf) = ledger
        .prove_record(cp.checkpoint.size, ix[1])
        .await
        .unwrap();
    aiaudit_tlog::check_record(
        &proof,
        cp.checkpoint.size,
        &cp.checkpoint.root,
        ix[1],
        &leaf,
    )
    .unwrap();

    // Holds are listed to readers of their tenant; others see none of them.
    let held_auditor = who(Role::Auditor, &["held"]);
    let listed = ledger.holds_for(&held_auditor).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].reason, "litigation 2026-17");
    assert!(ledger
        .holds_for(&who(Role::Auditor, &["free"]))
        .unwrap()
        .is_empty());
    let e = ledger
        .holds_for(&who(Role::Emitter, &["held"]))
        .unwrap_err();
    assert_eq!(e.kind, Kind::Forbidden);
    // Only an admin of the tenant releases it.
    let e = ledger
        .release_hold(&held_auditor, &hold.id)
        .await
        .unwrap_err();
    assert_eq!(e.kind, Kind::Forbidden);
    let e = ledger
        .release_hold(&who(Role::Admin, &["free"]), &hold.id)
        .await
        .unwrap_err();
    assert_eq!(e.kind, Kind::NotFound);

    let released = ledger.release_hold(&held_admin, &hold.id).await.unwrap();
    assert_eq!(released.id, hold.id);
    assert!(ledger.holds_for(&held_auditor).unwrap().is_empty());
    // Placing and releasing were logged in the tenant (looked up before
    // expiry drops their index rows too: they are older than a second).
    indexed(&ledger).await;
    let actions: Vec<Value> = search(&ledger, &[("tenant", "held"), ("source", "aiaudit")])
        .await
        .into_iter()
        .map(|e| e["action"].clone())
        .collect();
    assert_eq!(
        actions,
        [json!("legal_hold.released"), json!("legal_hold.placed")]
    );
    expire_until_keys_go(&ledger, "held").await;
    assert_eq!(content(&ledger, ix[0]).await, "erased");
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_on_every_tenant_is_for_an_admin_of_all_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_with(LedgerConfig {
        retention: [("acme".to_string(), Duration::from_secs(1))].into(),
        ..config(dir.path())
    })
    .await;
    let acme_admin = who(Role::Admin, &["acme"]);
    let e = ledger
        .place_hold(&acme_admin, "*", "all")
        .await
        .unwrap_err();
    assert_eq!(e.kind, Kind::Forbidden);
    let e = ledger
        .place_hold(&acme_admin, "globex", "x")
        .await
        .unwrap_err();
    assert_eq!(e.kind, Kind::Forbidden);
    let e = ledger
        .place_hold(&who(Role::Auditor, &["*"]), "acme", "x")
        .await
        .unwrap_err();
    assert_eq!(e.kind, Kind::Forbidden);
    let e = ledger
        .place_hold(&root(), "not a tenant", "x")
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.slug.as_str()), (Kind::Invalid, "invalid-hold"));

    let all = ledger.place_hold(&root(), "*", "regulator").await.unwrap();
    // Every tenant is covered, also one with a retention of a second.
    assert_eq!(retention_of(&ledger, "acme"), Some(Duration::from_secs(1)));
    assert_eq!(retention_of(&ledger, "globex"), None);
    assert_eq!(expire_tenant(&ledger, "acme").await.unwrap(), (0, 0));
    // A scoped reader does not see it; a reader of every tenant does.
    assert!(ledger
        .holds_for(&who(Role::Auditor, &["acme"]))
        .unwrap()
        .is_empty());
    assert_eq!(
        ledger.holds_for(&who(Role::Auditor, &["*"])).unwrap().len(),
        1
    );
    // Nor may a scoped admin release it.
    let e = ledger.release_hold(&acme_admin, &all.id).await.unwrap_err();
    assert_eq!(e.kind, Kind::NotFound);
    ledger.release_hold(&root(), &all.id).await.unwrap();
    let e = ledger.release_hold(&root(), &all.id).await.unwrap_err();
    assert_eq!(e.kind, Kind::NotFound);
    // Both were logged under the ledger's own tenant.
    indexed(&ledger).await;
    assert_eq!(search(&ledger, &[("tenant", "aiaudit")]).await.len(), 2);
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    let hold = ledger.place_hold(&root(), "acme", "audit").await.unwrap();
    let copy = restart_copy(&ledger, dir.path()).await;
    let again = open(copy.path()).await;
    let listed = again.holds_for(&who(Role::Auditor, &["acme"])).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id.as_str(), listed[0].reason.as_str()),
        (hold.id.as_str(), "audit")
    );
    again.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_retention_nothing_expires() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    let ix = append(&ledger, vec![old("n1", "acme")]).await;
    assert_eq!(retention_of(&ledger, "acme"), None);
    assert_eq!(expire_tenant(&ledger, "acme").await.unwrap(), (0, 0));
    assert_eq!(content(&ledger, ix[0]).await, "sealed");
    ledger.shutdown().await.unwrap();
}
