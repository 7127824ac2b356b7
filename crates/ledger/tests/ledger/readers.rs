//! The readers: tiles and entry bundles, one event with and without its
//! proof, inclusion and consistency proofs, status, readiness and metrics.

use crate::common::*;
use aiaudit_ledger::{Error, Kind, LedgerConfig, Role};
use aiaudit_tlog::{check_record, check_tree, node_hash, open_note, record_hash, Checkpoint};
use serde_json::Value;
use std::time::Duration;

fn many(prefix: &str, tenant: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| event(&format!("{prefix}{i}"), tenant))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_tiles_hold_the_leaf_hashes_and_only_full_tiles_are_immutable() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    append(&ledger, many("h", "acme", 257)).await;
    ledger.await_checkpoint(257).await.unwrap();
    let auditor = who(Role::Auditor, &["acme"]);

    let full = ledger.tile("tile/0/000", None).await.unwrap();
    assert!(full.immutable);
    assert_eq!(full.bytes.len(), 256 * 32);
    // Each hash is the leaf hash of the entry at that index.
    for i in [0u64, 17, 255] {
        let e = read(&ledger, &auditor, i).await;
        let leaf = unb64(&e["leaf_hash"]);
        assert_eq!(&full.bytes[i as usize * 32..][..32], &leaf[..], "leaf {i}");
        assert_eq!(hash32(&leaf), record_hash(&unb64(&e["entry"])));
    }

    let partial = ledger.tile("tile/0/001.p/1", None).await.unwrap();
    assert!(!partial.immutable);
    let e = read(&ledger, &auditor, 256).await;
    assert_eq!(partial.bytes, unb64(&e["leaf_hash"]));

    // The level-1 tile holds the root of the first 256 leaves.
    let mut level: Vec<[u8; 32]> = full.bytes.chunks(32).map(hash32).collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| node_hash(&pair[0], &pair[1]))
            .collect();
    }
    let upper = ledger.tile("tile/1/000.p/1", None).await.unwrap();
    assert_eq!(upper.bytes, level[0]);

    // Beyond the checkpoint, or not a tile path: not found.
    for path in [
        "tile/0/001.p/2",
        "tile/0/001",
        "tile/1/000.p/2",
        "tile/x",
        "tiles/0/000",
    ] {
        let e = ledger.tile(path, None).await.err().unwrap();
        assert_eq!(e.kind, Kind::NotFound, "{path}");
    }

    // A full entry bundle is immutable too, and holds the entries in order.
    let bundle = ledger
        .tile("tile/entries/000", Some(&root()))
        .await
        .unwrap();
    assert!(bundle.immutable);
    let entries = aiaudit_tlog::decode_entry_bundle(&bundle.bytes).unwrap();
    assert_eq!(entries.len(), 256);
    assert_eq!(
        entries[17],
        unb64(&read(&ledger, &auditor, 17).await["entry"])
    );
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_bundles_go_only_to_readers_of_every_tenant_in_them() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    append(&ledger, vec![event("a1", "acme"), event("g1", "globex")]).await;
    ledger.await_checkpoint(2).await.unwrap();
    let acme = who(Role::Auditor, &["acme"]);

    // A bundle of acme's events alone is served to acme's auditor.
    let own = ledger
        .tile("tile/entries/000.p/1", Some(&acme))
        .await
        .unwrap();
    assert!(!own.immutable);
    let entries = aiaudit_tlog::decode_entry_bundle(&own.bytes).unwrap();
    assert_eq!(entries, [unb64(&read(&ledger, &acme, 0).await["entry"])]);

    // One that mixes in globex's is not.
    let mixed = "tile/entries/000.p/2";
    let e = ledger.tile(mixed, Some(&acme)).await.err().unwrap();
    assert_eq!(e.kind, Kind::Forbidden);
    let both = who(Role::Auditor, &["acme", "globex"]);
    assert_eq!(
        aiaudit_tlog::decode_entry_bundle(&ledger.tile(mixed, Some(&both)).await.unwrap().bytes)
            .unwrap()
            .len(),
        2
    );
    assert!(ledger.tile(mixed, Some(&root())).await.is_ok());
    // Entry bundles need a reader's token.
    let e = ledger.tile(mixed, None).await.err().unwrap();
    assert_eq!(e.kind, Kind::Unauthorized);
    let e = ledger
        .tile(mixed, Some(&who(Role::Emitter, &["*"])))
        .await
        .err()
        .unwrap();
    assert_eq!(e.kind, Kind::Forbidden);
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_public_reads_hash_tiles_need_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_with(LedgerConfig {
        public_reads: false,
        ..config(dir.path())
    })
    .await;
    append(&ledger, vec![event("p1", "acme")]).await;
    ledger.await_checkpoint(1).await.unwrap();
    let e = ledger.tile("tile/0/000.p/1", None).await.err().unwrap();
    assert_eq!(e.kind, Kind::Unauthorized);
    assert_eq!(
        ledger.public_read(None).unwrap_err().kind,
        Kind::Unauthorized
    );
    // Any valid credential will do, an emitter's too.
    let emitter = who(Role::Emitter, &["acme"]);
    assert!(ledger.public_read(Some(&emitter)).is_ok());
    assert_eq!(
        ledger
            .tile("tile/0/000.p/1", Some(&emitter))
            .await
            .unwrap()
            .bytes
            .len(),
        32
    );
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_gets_its_proof_only_once_a_checkpoint_covers_it() {
    let dir = tempfile::tempdir().unwrap();
    // The publisher waits for its interval (an hour) unless asked.
    let ledger = open_with(LedgerConfig {
        publish_interval: Duration::from_secs(3600),
        checkpoint_wait: Duration::from_millis(300),
        ..config(dir.path())
    })
    .await;
    let auditor = who(Role::Auditor, &["acme"]);
    let ix = append(
        &ledger,
        vec![
            event("x0", "acme"),
            event("x1", "acme"),
            event("x2", "acme"),
        ],
    )
    .await;
    assert_eq!(ix, [0, 1, 2]);
    assert_eq!(ledger.latest().checkpoint.size, 0);

    // Logged and readable, but not yet provable.
    let plain = read(&ledger, &auditor, 1).await;
    assert_eq!(plain["event"]["id"], "x1");
    assert_eq!(plain["content"], "sealed");
    assert!(plain.get("proof").is_none() && plain.get("opening").is_none());
    let e = ledger.entry(&auditor, 1, true).await.unwrap_err();
    assert_eq!((e.kind, e.retry_after), (Kind::Unavailable, Some(1)));
    let e = ledger.entry(&auditor, 3, false).await.unwrap_err();
    assert_eq!(e.kind, Kind::NotFound);

    // Readiness: still ready, one interval is far from stale.
    let r = ledger.readiness().await;
    assert!(r.ready, "{}", r.checks);
    assert_eq!(r.checks["unpublished_entries"], 3);
    assert_eq!(r.checks["storage_writable"], true);
    assert_eq!(r.checks["checkpoints_keep_up"], true);
    assert_eq!(r.checks["keyring_flushes"], true);

    // A checkpoint that never comes is unavailable after checkpoint_wait.
    let e = ledger.await_checkpoint(1000).await.unwrap_err();
    assert_eq!(e.kind, Kind::Unavailable);

    // Asking publishes at once; then the proof verifies against the signed root.
    let published = ledger.await_checkpoint(3).await.unwrap();
    let cp =
        Checkpoint::parse_body(open_note(&published.note, ledger.verifier()).unwrap()).unwrap();
    assert_eq!((cp.size, cp.root), (3, published.checkpoint.root));
    let proved = ledger.entry(&auditor, 1, true).await.unwrap().0;
    assert_eq!(proved["proof"]["size"], 3);
    assert_eq!(proved["proof"]["checkpoint"], published.note.as_str());
    let inclusion: Vec<[u8; 32]> = proved["proof"]["inclusion"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hash32(&unb64(h)))
        .collect();
    assert!(!inclusion.is_empty());
    let leaf = hash32(&unb64(&proved["leaf_hash"]));
    check_record(&inclusion, 3, &cp.root, 1, &leaf).unwrap();
    // The proof is not for just any index.
    assert!(check_record(&inclusion, 3, &cp.root, 2, &leaf).is_err());
    // A sealed entry comes with its opening when proved.
    assert!(!unb64(&proved["opening"]).is_empty());
    assert_eq!(ledger.readiness().await.checks["unpublished_entries"], 0);
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inclusion_and_consistency_proofs_verify_and_bad_parameters_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    append(&ledger, many("a", "acme", 5)).await;
    let old = ledger.await_checkpoint(5).await.unwrap();
    let old_root = old.checkpoint.root;
    append(&ledger, many("b", "acme", 6)).await;
    let new = ledger.await_checkpoint(11).await.unwrap();
    let (size, top) = (new.checkpoint.size, new.checkpoint.root);
    assert_eq!(size, 11);

    assert_eq!(ledger.proof_size(None).unwrap(), 11);
    assert_eq!(ledger.proof_size(Some(5)).unwrap(), 5);
    let e = ledger.proof_size(Some(12)).unwrap_err();
    assert_eq!(
        (e.kind, e.parameter.as_deref()),
        (Kind::Invalid, Some("size"))
    );

    let (proof, leaf) = ledger.prove_record(size, 3).await.unwrap();
    check_record(&proof, size, &top, 3, &leaf).unwrap();
    let entry = unb64(&read(&ledger, &root(), 3).await["entry"]);
    assert_eq!(leaf, record_hash(&entry));
    let e = ledger.prove_record(size, size).await.unwrap_err();
    assert_eq!(e.parameter.as_deref(), Some("index"));

    let indexes = vec![0, 4, 10];
    let proofs = ledger.prove_records(size, indexes.clone()).await.unwrap();
    assert_eq!(proofs.len(), 3);
    for (i, proof) in indexes.into_iter().zip(&proofs) {
        let (_, leaf) = ledger.prove_record(size, i).await.unwrap();
        check_record(proof, size, &top, i, &leaf).unwrap();
    }

    let consistency = ledger.prove_tree(size, 5).await.unwrap();
    check_tree(&consistency, size, &top, 5, &old_root).unwrap();
    // A different old root does not pass.
    assert!(check_tree(&consistency, size, &top, 5, &top).is_err());
    assert!(ledger.prove_tree(size, size).await.unwrap().is_empty());
    for (s, o) in [(size, 0), (5, 11)] {
        let e = ledger.prove_tree(s, o).await.unwrap_err();
        assert_eq!(
            (e.kind, e.parameter.as_deref()),
            (Kind::Invalid, Some("old"))
        );
    }
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_the_log_and_shows_backups_only_to_a_global_admin() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    append(&ledger, many("s", "acme", 2)).await;
    ledger.await_checkpoint(2).await.unwrap();
    indexed(&ledger).await;

    let s = ledger.status(None);
    assert_eq!(s["origin"], ledger.origin());
    assert_eq!(s["origin"], aiaudit_ledger::config::DEFAULT_ORIGIN);
    assert_eq!(s["verifier_key"], ledger.verifier().to_vkey());
    assert_eq!(
        (s["size"].as_u64(), s["sequenced_size"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(s["encryption"], true);
    assert_eq!(s["publish_interval_ms"], 50);
    assert_eq!(s["storage"]["publisher"], true);
    assert_eq!(s["index"]["indexed_size"], 2);
    assert!(s.get("backup").is_none());
    assert!(ledger
        .status(Some(&who(Role::Admin, &["acme"])))
        .get("backup")
        .is_none());
    assert!(ledger
        .status(Some(&who(Role::Auditor, &["*"])))
        .get("backup")
        .is_none());
    assert_eq!(
        ledger.status(Some(&root()))["backup"],
        serde_json::json!({"scheduled": false})
    );
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_are_taken_verified_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let location = backups.path().display().to_string();
    // Something to back up before the schedule starts.
    let first = open(dir.path()).await;
    append(&first, many("k", "acme", 3)).await;
    first.await_checkpoint(3).await.unwrap();
    let copy = restart_copy(&first, dir.path()).await;
    let mut config = config(copy.path());
    config.backup.locations = vec![location.clone()];
    // An incremental backup every second, after the full one.
    config.backup.incremental_every = Duration::from_secs(1);
    let ledger = open_with(config).await;
    let status = eventually("a verified backup", || async {
        let b = ledger.status(Some(&root()))["backup"].clone();
        (!b["locations"][0]["last_verified_unix"].is_null()).then_some(b)
    })
    .await;
    assert_eq!(status["scheduled"], true);
    assert_eq!(status["full_at_utc"], "02:00");
    assert_eq!(status["locations"][0]["location"], location.as_str());
    assert!(status["locations"][0]["last_error"].is_null());
    assert!(status["locations"][0]["last_full_unix"].is_u64());
    // Read back from the location: one backup of the three entries.
    let manifests = eventually("the backup to be listed", || async {
        let b = ledger.status(Some(&root()))["backup"]["locations"][0].clone();
        (b["backups"] == 1).then_some(b)
    })
    .await;
    assert_eq!(manifests["last_size"], 3);

    // What is logged next goes into an incremental backup.
    append(&ledger, many("i", "acme", 2)).await;
    ledger.await_checkpoint(5).await.unwrap();
    let grown = eventually("an incremental backup", || async {
        let b = ledger.status(Some(&root()))["backup"]["locations"][0].clone();
        (b["last_size"] == 5).then_some(b)
    })
    .await;
    assert!(grown["backups"].as_u64().unwrap() >= 2, "{grown}");
    assert_ne!(grown["last_id"], manifests["last_id"]);
    let text = eventually("the backup metrics", || async {
        let t = ledger.metrics_text().await.unwrap();
        t.contains("aiaudit_backup_age_seconds").then_some(t)
    })
    .await;
    assert!(
        text.contains(&format!(
            "aiaudit_backup_last_result_success{{location=\"{location}\"}} 1"
        )),
        "{text}"
    );
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_that_fails_is_reported_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    // A location under a regular file can never be written.
    let file = elsewhere.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let location = file.join("backups").display().to_string();
    let mut config = config(dir.path());
    config.backup.locations = vec![location.clone()];
    let ledger = open_with(config).await;
    append(&ledger, many("f", "acme", 2)).await;
    let text = eventually("the failure to be counted", || async {
        let t = ledger.metrics_text().await.unwrap();
        t.contains("aiaudit_backup_failures_total").then_some(t)
    })
    .await;
    assert!(
        text.contains(&format!(
            "aiaudit_backup_last_result_success{{location=\"{location}\"}} 0"
        )),
        "{text}"
    );
    let status = ledger.status(Some(&root()))["backup"]["locations"][0].clone();
    assert!(status["last_error"].is_string(), "{status}");
    assert!(status["last_success_unix"].is_null());
    ledger.shutdown().await.unwrap();
}

#[test]
fn an_unusable_backup_location_stops_the_start() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.backup.locations = vec!["ftp://example.com/x".into()];
    let e = runtime.block_on(aiaudit_ledger::Ledger::open(config)).err();
    assert!(e.is_some_and(|e| e.to_string().contains("backup location")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_was_appended_refused_and_sent() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    let emitter = who(Role::Emitter, &["acme"]);
    ledger
        .append(&emitter, batch(many("m", "acme", 3)))
        .await
        .unwrap();
    // An invalid event of a tenant the caller may write is counted under it.
    let mut bad = event("m-bad", "acme");
    bad["action"] = "Not An Action".into();
    assert_eq!(
        ledger
            .append(&emitter, batch(vec![bad]))
            .await
            .unwrap_err()
            .kind,
        Kind::Invalid
    );
    // One of a tenant it may not write is not: its name is the caller's input.
    ledger
        .append(&emitter, batch(vec![event("m-x", "globex")]))
        .await
        .unwrap_err();
    ledger.count_bytes(Some(100), Some(50));
    ledger.count_refused(&Error::unauthorized("no token"));
    ledger.await_checkpoint(3).await.unwrap();

    let text = ledger.metrics_text().await.unwrap();
    for needle in [
        "aiaudit_events_processed_total{tenant=\"acme\"} 3",
        "aiaudit_events_failed_total{tenant=\"acme\",reason=\"invalid-events\"} 1",
        "aiaudit_events_failed_total{tenant=\"refused\",reason=\"forbidden\"} 1",
        "aiaudit_events_failed_total{tenant=\"refused\",reason=\"unauthorized\"} 1",
        "aiaudit_network_receive_bytes_total 100",
        "aiaudit_network_transmit_bytes_total 50",
        "aiaudit_publisher 1",
        "aiaudit_tree_size 3",
        "aiaudit_sequenced_size 3",
        "aiaudit_event_processing_latency_seconds_count 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    assert!(!text.contains("globex"));
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrub_of_a_healthy_log_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    append(&ledger, many("c", "acme", 300)).await;
    ledger.await_checkpoint(300).await.unwrap();
    assert!(aiaudit_ledger::scrub::scrub(&ledger).is_empty());
    let text = ledger.metrics_text().await.unwrap();
    assert!(
        text.contains("aiaudit_verification_failures_total 0"),
        "{text}"
    );
    ledger.shutdown().await.unwrap();
}
