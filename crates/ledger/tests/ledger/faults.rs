//! Storage faults injected behind the `Storage` trait: what fails is never
//! acknowledged, reads that fail are transient (retry), checkpoints wait
//! until the tree can be written, and everything goes on once the fault clears.

use crate::common::node::Node;
use crate::common::*;
use aiaudit_ledger::search::parse_query;
use aiaudit_ledger::{start_with_storage, Kind, Ledger, LedgerConfig, Role};
use aiaudit_store::{Faults, FaultyStore, FsStore, Storage};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

async fn faulty(dir: &std::path::Path) -> (Arc<Ledger>, Arc<Faults>) {
    let (fs, recovery) = FsStore::open(dir).unwrap();
    let store = FaultyStore::new(Arc::new(fs));
    let faults = store.faults.clone();
    let config = LedgerConfig {
        checkpoint_wait: Duration::from_millis(300),
        ..config(dir)
    };
    let ledger = start_with_storage(config, Arc::new(store) as Arc<dyn Storage>, recovery)
        .await
        .unwrap();
    (ledger, faults)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_append_is_not_acknowledged_and_the_next_one_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, faults) = faulty(dir.path()).await;
    let emitter = who(Role::Emitter, &["acme"]);
    ledger
        .append(&emitter, batch(vec![event("f0", "acme")]))
        .await
        .unwrap();

    Faults::set(&faults.append, true);
    let e = ledger
        .append(
            &emitter,
            batch(vec![event("f1", "acme"), event("f2", "acme")]),
        )
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.retry_after), (Kind::Unavailable, Some(1)));
    assert_eq!(ledger.status(None)["sequenced_size"], 1);
    // Readiness probes the disk itself after a failed append: this one is fine.
    let r = ledger.readiness().await;
    assert_eq!(r.checks["storage_writable"], true, "{}", r.checks);
    let text = ledger.metrics_text().await.unwrap();
    assert!(
        text.contains("aiaudit_events_failed_total{tenant=\"acme\",reason=\"unavailable\"} 2"),
        "{text}"
    );
    // The ledger's own records fail the same way.
    let own = json!({"id": "own", "time": "2026-11-27T09:14:04Z", "tenant": "acme",
                     "source": {"name": "aiaudit"}, "actor": {"id": "ledger", "type": "service"},
                     "action": "retention.expiry"});
    assert_eq!(
        ledger.append_own(vec![own]).await.unwrap_err().kind,
        Kind::Unavailable
    );

    Faults::set(&faults.append, false);
    let ok = ledger
        .append(
            &emitter,
            batch(vec![event("f1", "acme"), event("f2", "acme")]),
        )
        .await
        .unwrap();
    assert_eq!(
        ok.appended[0].index, 1,
        "nothing of the failed batch was logged"
    );
    assert!(!ok.appended[0].duplicate);
    assert_eq!(ledger.await_checkpoint(3).await.unwrap().checkpoint.size, 3);
    ledger.shutdown().await.unwrap();
}

/// The sequencer writes the next group while the previous one syncs (a
/// slow disk's sync is not time in which nothing is written), and neither
/// is acknowledged before its sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_group_is_written_while_the_previous_one_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, faults) = faulty(dir.path()).await;
    let emitter = who(Role::Emitter, &["acme"]);
    let before = faults.written.load(Ordering::SeqCst);
    Faults::set(&faults.hold_syncs, true);
    let send = |id: &'static str| {
        let (ledger, emitter) = (ledger.clone(), emitter.clone());
        tokio::spawn(async move {
            ledger
                .append(&emitter, batch(vec![event(id, "acme")]))
                .await
        })
    };
    let first = send("p1");
    eventually("the first group to be written", || async {
        (faults.written.load(Ordering::SeqCst) == before + 1).then_some(())
    })
    .await;
    let second = send("p2");
    eventually(
        "the second group to be written while the first syncs",
        || async { (faults.written.load(Ordering::SeqCst) == before + 2).then_some(()) },
    )
    .await;
    assert!(
        !first.is_finished() && !second.is_finished(),
        "acknowledged before its sync"
    );
    assert_eq!(ledger.status(None)["sequenced_size"], 0);
    Faults::set(&faults.hold_syncs, false);
    let (a, b) = (
        first.await.unwrap().unwrap(),
        second.await.unwrap().unwrap(),
    );
    assert_eq!((a.appended[0].index, b.appended[0].index), (0, 1));
    assert_eq!(ledger.await_checkpoint(2).await.unwrap().checkpoint.size, 2);
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_that_fail_are_unavailable_not_internal_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, faults) = faulty(dir.path()).await;
    append(&ledger, vec![event("r0", "acme"), event("r1", "acme")]).await;
    ledger.erase(&root(), "acme", "nobody").await.unwrap();
    ledger.await_checkpoint(3).await.unwrap();
    indexed(&ledger).await;
    let auditor = who(Role::Auditor, &["acme"]);

    Faults::set(&faults.reads, true);
    for e in [
        ledger.entry(&auditor, 0, false).await.unwrap_err(),
        ledger.entry(&auditor, 0, true).await.unwrap_err(),
        ledger.prove_record(3, 1).await.unwrap_err(),
        ledger.prove_records(3, vec![0, 1]).await.unwrap_err(),
        ledger.prove_tree(3, 1).await.unwrap_err(),
        ledger.tile("tile/0/000.p/3", None).await.err().unwrap(),
        ledger
            .tile("tile/entries/000.p/3", Some(&root()))
            .await
            .err()
            .unwrap(),
        ledger
            .export(&auditor, Default::default(), json!({}))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.kind, Kind::Unavailable, "{e}");
    }
    // Search answers from the index, marking what it could not open.
    let found = ledger
        .search(&auditor, parse_query(&Default::default(), &[]).unwrap())
        .await
        .unwrap();
    assert_eq!(found.events.len(), 3);
    assert!(found.events[0]["content"]
        .as_str()
        .unwrap()
        .starts_with("unreadable:"));
    // A report still counts the erasure, but cannot sum the keys it destroyed.
    let now = aiaudit_ledger::reports::now_ms();
    let req = aiaudit_ledger::reports::Request {
        framework: aiaudit_ledger::reports::privacy::Framework::EuAiAct,
        tenant: "acme".into(),
        from_ms: now - 86_400_000,
        to_ms: now + 86_400_000,
        format: aiaudit_ledger::reports::Format::Json,
    };
    let r = ledger.report(&auditor, req.clone(), now).await.unwrap();
    assert_eq!(
        (r.data_protection.erasures, r.data_protection.keys_destroyed),
        (1, None)
    );

    // The scrub cannot check what it cannot read: a verification failure,
    // which the report then shows as a finding.
    let problems = aiaudit_ledger::scrub::scrub(&ledger);
    assert!(!problems.is_empty());
    let text = ledger.metrics_text().await.unwrap();
    assert!(
        text.contains("aiaudit_verification_failures_total 1"),
        "{text}"
    );
    let r = ledger.report(&auditor, req.clone(), now).await.unwrap();
    assert_eq!(r.integrity.verification_failures_since_start, 1);
    assert!(
        r.findings
            .iter()
            .any(|f| (f.severity, f.section) == ("high", "integrity")),
        "{:?}",
        r.findings
    );

    Faults::set(&faults.reads, false);
    assert!(aiaudit_ledger::scrub::scrub(&ledger).is_empty());
    assert_eq!(read(&ledger, &auditor, 0).await["event"]["id"], "r0");
    let r = ledger.report(&auditor, req, now).await.unwrap();
    assert_eq!(r.data_protection.keys_destroyed, Some(0));
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_checkpoint_is_served_until_the_tree_is_written_and_saved() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, faults) = faulty(dir.path()).await;
    append(&ledger, vec![event("c0", "acme")]).await;
    ledger.await_checkpoint(1).await.unwrap();
    let auditor = who(Role::Auditor, &["acme"]);

    for flag in [&faults.integrate, &faults.save_checkpoint] {
        Faults::set(flag, true);
        let n = ledger.status(None)["sequenced_size"].as_u64().unwrap();
        let ix = append(&ledger, vec![event(&format!("c{}", n), "acme")]).await;
        // Logged and acknowledged, but no checkpoint covers it yet.
        let e = ledger.await_checkpoint(n + 1).await.unwrap_err();
        assert_eq!(e.kind, Kind::Unavailable);
        assert_eq!(ledger.latest().checkpoint.size, n);
        let e = ledger.entry(&auditor, ix[0], true).await.unwrap_err();
        assert_eq!(e.kind, Kind::Unavailable);
        Faults::set(flag, false);
        assert_eq!(
            ledger
                .await_checkpoint(n + 1)
                .await
                .unwrap()
                .checkpoint
                .size,
            n + 1
        );
    }
    // A shutdown that cannot write the tree says so.
    Faults::set(&faults.integrate, true);
    append(&ledger, vec![event("late", "acme")]).await;
    assert!(ledger.shutdown().await.is_err());
    Faults::set(&faults.integrate, false);
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_whose_tree_nodes_cannot_be_read_are_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let (fs, recovery) = FsStore::open(dir.path()).unwrap();
    let node = Arc::new(Node::alone(Arc::new(fs)));
    let ledger = start_with_storage(config(dir.path()), node.clone(), recovery)
        .await
        .unwrap();
    append(&ledger, vec![event("t0", "acme"), event("t1", "acme")]).await;
    ledger.await_checkpoint(2).await.unwrap();
    node.node_reads_fail.store(true, Ordering::SeqCst);
    for e in [
        ledger.prove_record(2, 1).await.unwrap_err(),
        ledger.prove_tree(2, 1).await.unwrap_err(),
        ledger.tile("tile/0/000.p/2", None).await.err().unwrap(),
    ] {
        assert_eq!(e.kind, Kind::Unavailable, "{e}");
    }
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_whose_tree_nodes_cannot_be_read_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let (fs, recovery) = FsStore::open(dir.path()).unwrap();
    let node = Arc::new(Node::alone(Arc::new(fs)));
    let ledger = start_with_storage(config(dir.path()), node.clone(), recovery)
        .await
        .unwrap();
    append(&ledger, vec![event("t0", "acme"), event("t1", "acme")]).await;
    ledger.await_checkpoint(2).await.unwrap();
    node.node_reads_fail.store(true, Ordering::SeqCst);
    // The entry itself reads fine; its leaf hash and proof do not. Like
    // prove_record, the answer should be "retry", not a server fault.
    for with_proof in [false, true] {
        let e = ledger.entry(&root(), 1, with_proof).await.unwrap_err();
        assert_eq!(e.kind, Kind::Unavailable, "{e}");
    }
    ledger.shutdown().await.unwrap();
}

/// A flush of the keyring file that fails inside a running ledger: what it
/// held may be lost, so the batch that made the key is refused, and so is
/// every batch after it (no key may be used until the file is known
/// durable again), with readiness and a metric saying why; a restart
/// flushes the file again and ingest carries on, without the refused events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_keyring_flush_stops_ingest_until_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let emitter = who(Role::Emitter, &["acme"]);
    let about = |id: &str, subject: &str| {
        let mut e = event(id, "acme");
        e["subject"] = json!(subject);
        e
    };
    let ledger = open(dir.path()).await;
    ledger
        .append(&emitter, batch(vec![about("k0", "known")]))
        .await
        .unwrap();

    aiaudit_keyring::io_faults::fail_next_sync(dir.path());
    let e = ledger
        .append(&emitter, batch(vec![about("k1", "new-1")]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, Kind::Unavailable, "{}", e.detail);
    // Flushes work again, but the lost pages are not written twice.
    for (id, subject) in [("k2", "new-2"), ("k3", "known")] {
        let e = ledger
            .append(&emitter, batch(vec![about(id, subject)]))
            .await
            .unwrap_err();
        assert_eq!(e.kind, Kind::Unavailable, "{id}: {}", e.detail);
    }
    let r = ledger.readiness().await;
    assert!(!r.ready, "{}", r.checks);
    assert_eq!(r.checks["keyring_flushes"], false);
    assert_eq!(r.checks["storage_writable"], true);
    let text = ledger.metrics_text().await.unwrap();
    assert!(text.contains("aiaudit_keyring_flush_failed 1"), "{text}");
    assert_eq!(ledger.status(None)["sequenced_size"], 1);
    // A copy of the directory as it stands (the refused batch's key record
    // may or may not have reached the disk; here the copy has it).
    let copy = restart_copy(&ledger, dir.path()).await;

    let again = open(copy.path()).await;
    let r = again.readiness().await;
    assert_eq!(r.checks["keyring_flushes"], true, "{}", r.checks);
    let text = again.metrics_text().await.unwrap();
    assert!(text.contains("aiaudit_keyring_flush_failed 0"), "{text}");
    let ix = append(&again, vec![about("k1", "new-1"), about("k3", "known")]).await;
    assert_eq!(ix, [1, 2]);
    // Each opens under its subject's key (made again for new-1).
    for (i, id, subject) in [(0, "k0", "known"), (1, "k1", "new-1"), (2, "k3", "known")] {
        let v = read(&again, &root(), i).await;
        assert_eq!(v["event"]["id"], id, "{v}");
        assert_eq!(v["event"]["subject"], subject, "{v}");
        assert_eq!(v["content"], "sealed", "{v}");
    }
    again.shutdown().await.unwrap();
}

/// The log's writer threads end only on a panic, and nothing restarts
/// them: every append after it fails, unacknowledged, and liveness and
/// readiness say so (an orchestrator restarts the process), whichever of
/// the two threads it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_thread_that_panicked_fails_liveness_and_readiness() {
    for thread in ["sequencer", "syncer"] {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, faults) = faulty(dir.path()).await;
        let emitter = who(Role::Emitter, &["acme"]);
        ledger
            .append(&emitter, batch(vec![event("p0", "acme")]))
            .await
            .unwrap();
        assert!(ledger.alive());
        assert!(ledger.readiness().await.ready);

        let flag = match thread {
            "sequencer" => &faults.panic_append,
            _ => &faults.panic_sync,
        };
        Faults::set(flag, true);
        let e = ledger
            .append(&emitter, batch(vec![event("p1", "acme")]))
            .await
            .unwrap_err();
        assert_eq!(e.kind, Kind::Unavailable, "{thread}: {e}");
        Faults::set(flag, false);
        // The panic is over, the thread is not back: still refused.
        let e = ledger
            .append(&emitter, batch(vec![event("p2", "acme")]))
            .await
            .unwrap_err();
        assert_eq!(e.kind, Kind::Unavailable, "{thread}: {e}");

        assert!(!ledger.alive(), "{thread}");
        let r = ledger.readiness().await;
        assert!(!r.ready, "{thread}: {}", r.checks);
        assert_eq!(r.checks["sequencer_running"], false, "{thread}");
        if thread == "sequencer" {
            // It panicked before writing anything of the batch.
            assert_eq!(ledger.status(None)["sequenced_size"], 1);
        }
    }
}
