//! The PostgreSQL backend against the `Storage` promises, each test on a
//! throwaway PostgreSQL server of its own (`aiaudit-testpg`; skipped outside
//! CI when PostgreSQL is not installed): appends and reads, deduplication
//! within and across batches and across nodes, trees equal to the in-memory
//! reference, checkpoints, publisher election, schema migration, and what a
//! stopped database does to each call.

use aiaudit_store::{
    is_postgres_url, Appended, Error, LeaseConfig, NewEntry, PgStore, Storage, PG_SCHEMA_VERSION,
};
use aiaudit_testpg::TempPostgres;
use aiaudit_tlog::{
    check_record, decode_entry_bundle, prove_record, tree_hash, Checkpoint, Hash, TreeBuilder,
};
use std::collections::HashMap;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::{batch, entry};

fn root_of(leaves: &[Hash]) -> Hash {
    let mut t = TreeBuilder::new();
    for l in leaves {
        t.push(*l, |_, _, _| {});
    }
    t.root()
}

fn open(pg: &TempPostgres) -> PgStore {
    PgStore::open(&pg.url).unwrap().0
}

fn checkpoint_note(size: u64, root: Hash) -> String {
    let cp = Checkpoint {
        origin: "test/log".into(),
        size,
        root,
        extensions: vec![],
    };
    format!("{}\n— test/log AAAA\n", cp.body())
}

/// Runs SQL on the test's database outside the store; the rows' text values.
fn sql(pg: &TempPostgres, statements: &str) -> Vec<Vec<String>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        let rows = client
            .simple_query(statements)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                    (0..r.len())
                        .map(|i| r.get(i).unwrap_or("NULL").to_string())
                        .collect(),
                ),
                _ => None,
            })
            .collect();
        drop(client);
        let _ = conn.await;
        rows
    })
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

fn assert_fresh(out: &[Appended], first: u64) {
    for (i, a) in out.iter().enumerate() {
        assert_eq!((a.index, a.duplicate), (first + i as u64, false), "{i}");
    }
}

#[test]
fn appends_reads_and_deduplicates() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    assert!(is_postgres_url(&pg.url));
    assert!(!is_postgres_url("/var/lib/aiaudit"));
    let (store, rec) = PgStore::open(&pg.url).unwrap();
    assert_eq!((rec.size, rec.checkpoint_size), (0, 0));
    assert_eq!((store.size(), store.integrated_size()), (0, 0));
    assert_eq!(store.backend(), "postgres");
    assert!(store.shared());

    let first = batch(0, 300);
    let out = store.append(&first).unwrap();
    assert_fresh(&out, 0);
    assert_eq!(store.size(), 300);
    assert_eq!(store.read_entry(7).unwrap(), first[7].entry);
    let bundle = store.read_entry_bundle(256, 44).unwrap();
    let entries = decode_entry_bundle(&bundle).unwrap();
    assert_eq!(entries.len(), 44);
    assert_eq!(entries[0], first[256].entry.as_slice());
    assert_eq!(entries[43], first[299].entry.as_slice());
    let leaves: Vec<u8> = first.iter().flat_map(|e| e.leaf).collect();
    assert_eq!(store.read_hashes(0, 0, 300).unwrap(), leaves);
    assert_eq!(store.read_hashes(0, 10, 2).unwrap(), leaves[320..384]);

    // Within a batch and against the log.
    let again = store
        .append(&[entry("e5"), entry("new1"), entry("new1"), entry("e299")])
        .unwrap();
    assert_eq!((again[0].index, again[0].duplicate), (5, true));
    assert_eq!(again[0].leaf, first[5].leaf);
    assert_eq!((again[1].index, again[1].duplicate), (300, false));
    assert_eq!((again[2].index, again[2].duplicate), (300, true));
    assert_eq!((again[3].index, again[3].duplicate), (299, true));
    assert_eq!(store.size(), 301);
    // A batch of duplicates only appends nothing.
    let dups = store.append(&[entry("e1"), entry("new1")]).unwrap();
    assert!(dups.iter().all(|a| a.duplicate));
    assert_eq!((dups[0].index, dups[1].index), (1, 300));
    assert_eq!(store.size(), 301);
    assert_eq!(store.lookup_key(&common::key("new1")).unwrap(), Some(300));
    assert_eq!(store.lookup_key(&common::key("e0")).unwrap(), Some(0));
    assert_eq!(store.lookup_key(&common::key("nope")).unwrap(), None);

    // Out of range reads are refused, not made up.
    for r in [
        store.read_entry(301),
        store.read_entry_bundle(300, 2),
        store.read_hashes(0, 300, 2),
        store.read_hashes(1, 0, 1),
        store.read_hashes(64, 0, 1),
    ] {
        assert!(matches!(r, Err(Error::OutOfRange(_))), "{r:?}");
    }
    store.integrate().unwrap();
    assert_eq!(store.read_hashes(1, 0, 0).unwrap(), Vec::<u8>::new());
    assert_eq!(store.read_hashes(8, 0, 1).unwrap().len(), 32);
    assert!(matches!(
        store.read_hashes(8, 1, 1),
        Err(Error::OutOfRange(_))
    ));
}

/// Integration in uneven steps, by the node that appended and by a fresh
/// one resuming from the stored nodes, always gives the in-memory root.
#[test]
fn integrated_roots_equal_the_in_memory_tree() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let store = open(&pg);
    assert_eq!(store.integrate().unwrap(), (0, root_of(&[])));
    let mut leaves = Vec::new();
    let mut at = 0;
    for n in [1, 254, 1, 256, 1000, 7, 513] {
        let b = batch(at, at + n);
        store.append(&b).unwrap();
        leaves.extend(b.iter().map(|e| e.leaf));
        at += n;
        let (size, root) = store.integrate().unwrap();
        assert_eq!(size, at as u64);
        assert_eq!(root, root_of(&leaves), "after {at}");
        assert_eq!(store.integrated_size(), at as u64);
        assert_eq!(tree_hash(size, &store).unwrap(), root);
    }
    // A node that did not append resumes from the stored tree once it
    // holds the lease; until then it only reads the integrated root.
    let other = open(&pg);
    assert_eq!(other.integrated_size(), at as u64);
    let b = batch(at, at + 300);
    other.append(&b).unwrap();
    leaves.extend(b.iter().map(|e| e.leaf));
    let integrated_root = root_of(&leaves[..at]);
    at += 300;
    assert!(!other.is_publisher());
    assert_eq!(other.sync().unwrap(), ((at - 300) as u64, integrated_root));
    store.set_candidate(false);
    store.release_lease().unwrap();
    assert!(other.wait_for_lease(Duration::from_secs(5)));
    let (size, root) = other.sync().unwrap();
    assert_eq!((size, root), (at as u64, root_of(&leaves)));
    // The first node's cached tree is stale now; it notices and re-reads.
    other.set_candidate(false);
    other.release_lease().unwrap();
    store.set_candidate(true);
    assert!(store.wait_for_lease(Duration::from_secs(5)));
    let b = batch(at, at + 3);
    store.append(&b).unwrap();
    leaves.extend(b.iter().map(|e| e.leaf));
    at += 3;
    let (size, root) = store.integrate().unwrap();
    assert_eq!((size, root), (at as u64, root_of(&leaves)));
    for i in [0, 255, 256, 1000, size - 1] {
        let proof = prove_record(size, i, &store).unwrap();
        check_record(&proof, size, &root, i, &leaves[i as usize]).unwrap();
    }
    // Nothing new: the same root, nothing written.
    assert_eq!(store.integrate().unwrap(), (size, root));
}

#[test]
fn checkpoints_only_grow_and_are_checked_at_open() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let store = open(&pg);
    assert_eq!(store.checkpoint().unwrap(), None);
    store.append(&batch(0, 300)).unwrap();
    let (size, root) = store.integrate().unwrap();
    let note = checkpoint_note(size, root);
    store.save_checkpoint(&note).unwrap();
    assert_eq!(store.checkpoint().unwrap().as_deref(), Some(note.as_str()));

    // A smaller one (a slow former publisher) does not replace it, nor one
    // beyond the integrated tree.
    store.save_checkpoint(&checkpoint_note(10, root)).unwrap();
    store.append(&batch(300, 310)).unwrap();
    store.save_checkpoint(&checkpoint_note(310, root)).unwrap();
    assert_eq!(store.checkpoint().unwrap().as_deref(), Some(note.as_str()));
    // Not a checkpoint at all.
    assert!(matches!(
        store.save_checkpoint("hello"),
        Err(Error::Format(_))
    ));
    drop(store);

    let (store, rec) = PgStore::open(&pg.url).unwrap();
    assert_eq!((rec.size, rec.checkpoint_size), (310, 300));
    assert_eq!(store.checkpoint().unwrap().as_deref(), Some(note.as_str()));
    drop(store);

    // A changed tree node under the checkpoint is refused at open.
    let saved = sql(
        &pg,
        "SELECT encode(hashes, 'hex') FROM aiaudit_nodes WHERE level = 8 AND strip = 0",
    );
    sql(
        &pg,
        "UPDATE aiaudit_nodes SET hashes = decode(repeat('00', 32), 'hex') WHERE level = 8 AND strip = 0",
    );
    let err = PgStore::open(&pg.url).err().expect("must refuse");
    assert!(matches!(err, Error::Corrupt { index: 300, .. }), "{err}");
    assert!(err.to_string().contains("does not hash"), "{err}");
    // A missing one too, naming the level.
    sql(&pg, "DELETE FROM aiaudit_nodes WHERE level = 8");
    let err = PgStore::open(&pg.url).err().expect("must refuse");
    assert!(err.to_string().contains("tree level 8"), "{err}");
    // Put back, it opens again.
    sql(
        &pg,
        &format!(
            "INSERT INTO aiaudit_nodes VALUES (8, 0, decode('{}', 'hex'))",
            saved[0][0]
        ),
    );
    PgStore::open(&pg.url).unwrap();
}

/// Two nodes on one database, two threads each, appending at once; in every
/// round all four send one id in common.
#[test]
fn two_nodes_append_concurrently_without_duplicates_or_gaps() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let nodes = [open(&pg), open(&pg)];
    const THREADS: usize = 4;
    const ROUNDS: usize = 20;
    const OWN: usize = 10;
    let barrier = Barrier::new(THREADS);
    let seen: Mutex<Vec<(String, Appended)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (node, barrier, seen) = (&nodes[t % 2], &barrier, &seen);
            s.spawn(move || {
                for round in 0..ROUNDS {
                    let mut b: Vec<NewEntry> = (0..OWN)
                        .map(|i| entry(&format!("t{t}-r{round}-{i}")))
                        .collect();
                    b.insert(t % OWN, entry(&format!("common-{round}")));
                    barrier.wait();
                    let out = node.append(&b).unwrap();
                    let mut seen = seen.lock().unwrap();
                    let ids = b.iter().map(|e| e.key.trim_start_matches("t/").to_string());
                    seen.extend(ids.zip(out));
                }
            });
        }
    });
    let seen = seen.into_inner().unwrap();
    let unique = THREADS * ROUNDS * OWN + ROUNDS;
    let mut index_of: HashMap<String, u64> = HashMap::new();
    let mut fresh: HashMap<String, usize> = HashMap::new();
    for (id, a) in &seen {
        let i = *index_of.entry(id.clone()).or_insert(a.index);
        assert_eq!(i, a.index, "{id} at two indexes");
        if !a.duplicate {
            *fresh.entry(id.clone()).or_default() += 1;
        }
    }
    assert_eq!(index_of.len(), unique);
    // Exactly once: one append of each id was not a duplicate.
    assert!(fresh.values().all(|&n| n == 1), "{fresh:?}");
    assert_eq!(fresh.len(), unique);
    let mut indexes: Vec<u64> = index_of.values().copied().collect();
    indexes.sort_unstable();
    assert_eq!(indexes, (0..unique as u64).collect::<Vec<_>>());

    // Both nodes see the whole log; each index holds the entry of its id.
    for node in &nodes {
        assert!(wait_until(Duration::from_secs(5), || node.size() == unique as u64));
    }
    let mut by_index: Vec<(u64, &String)> = index_of.iter().map(|(id, &i)| (i, id)).collect();
    by_index.sort_unstable();
    for (i, id) in &by_index {
        assert_eq!(nodes[1].read_entry(*i).unwrap(), entry(id).entry);
        assert_eq!(nodes[0].lookup_key(&common::key(id)).unwrap(), Some(*i));
    }
    let leaves: Vec<Hash> = by_index.iter().map(|(_, id)| entry(id).leaf).collect();
    let publisher = nodes
        .iter()
        .find(|n| n.is_publisher())
        .expect("a publisher");
    assert_eq!(publisher.integrate().unwrap().1, root_of(&leaves));
}

#[test]
fn one_publisher_and_a_takeover_when_it_goes() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let a = open(&pg);
    let b = open(&pg);
    assert!(
        wait_until(Duration::from_secs(5), || a.is_publisher()
            || b.is_publisher()),
        "nobody was elected"
    );
    // Never both, over a few lock checks.
    for _ in 0..30 {
        assert!(a.is_publisher() != b.is_publisher());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(a.holds_publisher_lease(), a.is_publisher());
    let (gone, stays) = if a.is_publisher() { (a, b) } else { (b, a) };
    let started = Instant::now();
    drop(gone);
    assert!(
        wait_until(Duration::from_secs(5), || stays.is_publisher()),
        "no takeover within 5 s"
    );
    eprintln!("takeover after {:?}", started.elapsed());
}

/// A publisher that missed its lease's expiry (frozen, cut off) and wakes
/// up believing it still publishes: the database refuses its integration
/// and its checkpoint, and the node that took over writes both.
#[test]
fn a_former_publisher_is_fenced_by_the_newer_term() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    // Renews every 30 s, so between renewals it goes on believing.
    let slow = LeaseConfig {
        length: Duration::from_secs(60),
        renew_every: Duration::from_secs(30),
    };
    let (old, _) = PgStore::open_with(&pg.url, None, slow).unwrap();
    assert!(old.wait_for_lease(Duration::from_secs(5)));
    let term = old.lease().term;
    let new = open(&pg);
    new.append(&batch(0, 10)).unwrap();
    assert!(!new.is_publisher(), "the lease is held for a minute");
    // The lease runs out (as it would while the holder was frozen).
    let sql = "UPDATE aiaudit_lease SET expires_at = now() - interval '1 second'";
    pg.psql(sql);
    assert!(new.wait_for_lease(Duration::from_secs(5)), "no takeover");
    assert!(wait_until(Duration::from_secs(5), || new.lease().term == term + 1));
    assert!(old.is_publisher(), "the old holder has not renewed yet");
    let before = old.fenced_writes();
    let refused = old.integrate();
    assert!(matches!(refused, Err(Error::Fenced(_))), "{refused:?}");
    let note = checkpoint_note(0, root_of(&[]));
    let refused = old.save_checkpoint(&note);
    assert!(matches!(refused, Err(Error::Fenced(_))), "{refused:?}");
    assert_eq!(old.fenced_writes(), before + 2);
    // The new publisher writes; the old one's refusals left nothing behind.
    let leaves: Vec<Hash> = batch(0, 10).iter().map(|e| e.leaf).collect();
    assert_eq!(new.integrate().unwrap(), (10, root_of(&leaves)));
    new.save_checkpoint(&checkpoint_note(10, root_of(&leaves)))
        .unwrap();
    assert!(new.checkpoint().unwrap().unwrap().contains("\n10\n"));
    assert_eq!(new.lease().holder, new.holder());
}

/// A clean release hands the lease over at once, and a node that is not
/// a candidate never takes it.
#[test]
fn a_released_lease_is_taken_over_at_once_by_a_candidate_only() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let a = open(&pg);
    assert!(a.wait_for_lease(Duration::from_secs(5)));
    let b = open(&pg);
    b.set_candidate(false);
    let c = open(&pg);
    c.set_candidate(false);
    a.set_candidate(false);
    let started = Instant::now();
    a.release_lease().unwrap();
    assert!(!a.is_publisher());
    // Two rounds of each node's lease task after the release, all of them
    // reading a free lease that nobody takes.
    for n in [&a, &b, &c] {
        let seen_free = |n: &PgStore| {
            let v = n.lease();
            v.read_at.is_some_and(|t| t > started) && v.remaining_ms() <= 0
        };
        assert!(wait_until(Duration::from_secs(5), || seen_free(n)));
        let first = n.lease().read_at;
        assert!(wait_until(Duration::from_secs(5), || n.lease().read_at
            != first
            && seen_free(n)));
    }
    assert!(!b.is_publisher() && !c.is_publisher() && !a.is_publisher());
    c.set_candidate(true);
    assert!(c.wait_for_lease(Duration::from_secs(3)));
    eprintln!("hand-over after {:?}", started.elapsed());
    assert!(!b.is_publisher());
}

#[test]
fn concurrent_opens_migrate_once() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let barrier = Barrier::new(4);
    std::thread::scope(|s| {
        let opened: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    PgStore::open(&pg.url).map(|(store, _)| store.size())
                })
            })
            .collect();
        for o in opened {
            assert_eq!(o.join().unwrap().unwrap(), 0);
        }
    });
    let versions = sql(&pg, "SELECT version FROM aiaudit_schema ORDER BY version");
    let want: Vec<Vec<String>> = (1..=PG_SCHEMA_VERSION)
        .map(|v| vec![v.to_string()])
        .collect();
    assert_eq!(versions, want);
    assert_eq!(sql(&pg, "SELECT size FROM aiaudit_seq"), [["0"]]);
}

/// A database of schema 3 keyed events by id alone; version 4 re-keys the
/// entries it holds by tenant, so the same id in another tenant is a new event.
#[test]
fn schema_4_rekeys_existing_entries_by_tenant() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let store = open(&pg);
    let entries: Vec<NewEntry> = (0..5).map(|i| entry(&format!("old{i}"))).collect();
    store.append(&entries).unwrap();
    drop(store);
    // Put the database back as schema 3 left it.
    sql(
        &pg,
        "DROP TABLE aiaudit_keyring_counts;
         DROP INDEX aiaudit_keyring_subject;
         DROP INDEX aiaudit_keyring_tenant;
         DELETE FROM aiaudit_schema WHERE version = 7;
         DROP TABLE aiaudit_blobs;
         DELETE FROM aiaudit_schema WHERE version = 6;
         DROP TABLE aiaudit_lease;
         ALTER TABLE aiaudit_tree DROP COLUMN term;
         DELETE FROM aiaudit_schema WHERE version = 5;
         ALTER TABLE aiaudit_entries DROP CONSTRAINT aiaudit_entries_dedup_key;
         UPDATE aiaudit_entries SET dedup_key = substr(dedup_key, 3);
         ALTER TABLE aiaudit_entries RENAME COLUMN dedup_key TO event_id;
         ALTER TABLE aiaudit_entries ADD CONSTRAINT aiaudit_entries_event_id_key UNIQUE (event_id);
         DELETE FROM aiaudit_schema WHERE version = 4;",
    );
    assert_eq!(
        sql(&pg, "SELECT event_id FROM aiaudit_entries WHERE idx = 2"),
        [["old2"]]
    );
    let store = open(&pg);
    assert_eq!(
        sql(&pg, "SELECT dedup_key FROM aiaudit_entries WHERE idx = 2"),
        [["t/old2"]]
    );
    assert_eq!(store.lookup_key(&common::key("old2")).unwrap(), Some(2));
    let again = store.append(&[entry("old3")]).unwrap();
    assert_eq!((again[0].index, again[0].duplicate), (3, true));
}

#[test]
fn refuses_a_newer_schema() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    drop(open(&pg));
    let newer = PG_SCHEMA_VERSION + 1;
    sql(&pg, &format!("INSERT INTO aiaudit_schema VALUES ({newer})"));
    let err = PgStore::open(&pg.url).err().expect("must refuse");
    assert!(matches!(err, Error::Format(_)), "{err}");
    assert!(!err.is_transient());
    assert!(
        err.to_string().contains(&format!("schema version {newer}")),
        "{err}"
    );
}

#[test]
fn a_stopped_database_is_a_transient_error_and_recovers() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let store = open(&pg);
    store.ping().unwrap();
    store.append(&batch(0, 10)).unwrap();
    let (_, root) = store.integrate().unwrap();
    store.save_checkpoint(&checkpoint_note(10, root)).unwrap();

    pg.stop();
    let failed: Vec<(&str, Result<(), Error>)> = vec![
        ("ping", store.ping()),
        ("append", store.append(&batch(10, 12)).map(drop)),
        ("integrate", store.integrate().map(drop)),
        ("read_entry", store.read_entry(0).map(drop)),
        ("read_hashes", store.read_hashes(0, 0, 1).map(drop)),
        ("lookup_key", store.lookup_key(&common::key("e1")).map(drop)),
        ("checkpoint", store.checkpoint().map(drop)),
        (
            "save_checkpoint",
            store.save_checkpoint(&checkpoint_note(10, root)),
        ),
    ];
    for (what, r) in failed {
        let err = r.expect_err(what);
        assert!(err.is_transient(), "{what}: {err}");
        assert!(matches!(err, Error::Database(_)), "{what}: {err}");
    }
    assert!(PgStore::open(&pg.url)
        .err()
        .expect("no database")
        .is_transient());
    // What the node knew stays.
    assert_eq!((store.size(), store.integrated_size()), (10, 10));

    pg.start_again();
    assert!(
        wait_until(Duration::from_secs(10), || store.ping().is_ok()),
        "no recovery after the restart"
    );
    assert_fresh(&store.append(&batch(10, 12)).unwrap(), 10);
    assert_eq!(store.read_entry(3).unwrap(), entry("e3").entry);
    let mut leaves: Vec<Hash> = batch(0, 12).iter().map(|e| e.leaf).collect();
    leaves.truncate(12);
    assert_eq!(store.integrate().unwrap(), (12, root_of(&leaves)));
}

#[test]
fn refuses_empty_and_oversize_entries_and_logs_nothing_of_the_batch() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let store = open(&pg);
    let mut empty = entry("empty");
    empty.entry.clear();
    let mut big = entry("big");
    big.entry = vec![b'x'; aiaudit_tlog::MAX_ENTRY_SIZE + 1];
    for (bad, size) in [(empty, 0), (big, aiaudit_tlog::MAX_ENTRY_SIZE + 1)] {
        let b = vec![entry("fine"), bad];
        let err = store.append(&b).expect_err("must refuse");
        assert!(matches!(err, Error::OutOfRange(_)), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("entry 1 of the batch is {size} bytes")),
            "{err}"
        );
        assert_eq!(store.size(), 0);
        assert_eq!(store.lookup_key(&common::key("fine")).unwrap(), None);
    }
    let mut largest = entry("largest");
    largest.entry = vec![b'x'; aiaudit_tlog::MAX_ENTRY_SIZE];
    assert_fresh(&store.append(&[largest.clone()]).unwrap(), 0);
    assert_eq!(store.read_entry(0).unwrap(), largest.entry);
}

#[test]
fn refuses_a_malformed_url() {
    let err = PgStore::open("postgres://u@h:notaport/db")
        .err()
        .expect("must refuse");
    assert!(matches!(err, Error::Format(_)), "{err}");
    assert!(err.to_string().contains("URL"), "{err}");
}

/// A statement PostgreSQL refuses is a transient error carrying the
/// server's code and message, not tokio-postgres' bare "db error".
#[test]
fn a_failing_statement_carries_the_servers_message() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let store = open(&pg);
    let note = checkpoint_note(0, root_of(&[]));
    sql(
        &pg,
        "ALTER TABLE aiaudit_tree ADD CONSTRAINT no_checkpoint CHECK (checkpoint IS NULL)",
    );
    let err = store.save_checkpoint(&note).expect_err("constraint");
    assert!(matches!(err, Error::Database(_)), "{err}");
    assert!(err.is_transient());
    // 23514: check_violation.
    assert!(err.to_string().contains("23514"), "{err}");
    assert!(err.to_string().contains("no_checkpoint"), "{err}");
    assert_eq!(store.checkpoint().unwrap(), None);
    sql(
        &pg,
        "ALTER TABLE aiaudit_tree DROP CONSTRAINT no_checkpoint",
    );
    store.save_checkpoint(&note).unwrap();
    assert_eq!(store.checkpoint().unwrap(), Some(note));
}

/// Blobs in the database: written in 1 MiB parts in one transaction,
/// readable across parts, listed, removed.
#[test]
fn blobs_round_trip_in_parts() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let store = open(&pg);
    assert!(store.stores_blobs());
    let id = [3u8; 32];
    let bytes: Vec<u8> = (0..(5u32 << 19) + 77).map(|i| (i % 251) as u8).collect();
    let mut w = store.blob_writer(&id).unwrap();
    for piece in bytes.chunks(300_000) {
        w.write(piece).unwrap();
    }
    assert_eq!(store.blob_len(&id).unwrap(), None, "visible before commit");
    w.commit().unwrap();
    assert_eq!(store.blob_len(&id).unwrap(), Some(bytes.len() as u64));
    assert_eq!(
        sql(&pg, "SELECT count(*) FROM aiaudit_blobs"),
        [["3"]],
        "2.5 MiB in 1 MiB parts"
    );
    // A range across a part boundary, the very end, and past it.
    let at = (1 << 20) - 5;
    assert_eq!(
        store.read_blob(&id, at, 10).unwrap(),
        &bytes[at as usize..at as usize + 10]
    );
    let end = bytes.len() as u64 - 3;
    assert_eq!(
        store.read_blob(&id, end, 3).unwrap(),
        &bytes[end as usize..]
    );
    assert!(store.read_blob(&id, end, 4).is_err());
    assert!(store.read_blob(&[4; 32], 0, 1).is_err());
    let mut listed = Vec::new();
    store
        .list_blobs(&mut |id, n| {
            listed.push((id, n));
            Ok(())
        })
        .unwrap();
    assert_eq!(listed, vec![(id, bytes.len() as u64)]);
    store.remove_blob(&id).unwrap();
    assert_eq!(store.blob_len(&id).unwrap(), None);
}

/// A new master key in `dir`.
fn master_key_in(dir: &std::path::Path) -> aiaudit_keyring::LocalMasterKey {
    use aiaudit_keyring::{LocalMasterKey, MasterKeySource};
    let (master, _) =
        LocalMasterKey::load(MasterKeySource::File(dir.join("master.key")), true).unwrap();
    master
}

#[test]
fn subject_keys_of_a_whole_batch_are_found_in_one_query() {
    use aiaudit_keyring::{Keyring, RecordStore};
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let store = open(&pg);
    let dir = tempfile::tempdir().unwrap();
    let master: std::sync::Arc<dyn aiaudit_keyring::KeyProvider> =
        std::sync::Arc::new(master_key_in(dir.path()));
    let a = Keyring::open_with(Box::new(store.key_records()), master.clone()).unwrap();
    let first = a
        .choose(&[
            ("t", Some("alice")),
            ("t", Some("bob")),
            ("u", Some("alice")),
        ])
        .unwrap();
    // A second node, nothing cached: it must find the three keys, not make
    // new ones, and make one for the subject never seen.
    let b = Keyring::open_with(Box::new(store.key_records()), master).unwrap();
    let second = b
        .choose(&[
            ("u", Some("alice")),
            ("t", Some("carol")),
            ("t", Some("alice")),
            ("t", Some("bob")),
        ])
        .unwrap();
    assert_eq!(second[0].key_id, first[2].key_id);
    assert_eq!(second[2].key_id, first[0].key_id);
    assert_eq!(second[3].key_id, first[1].key_id);
    assert_eq!(second[2].key, first[0].key);
    assert!(![first[0].key_id, first[1].key_id, first[2].key_id].contains(&second[1].key_id));
    // The store's batch read returns exactly the records asked for.
    let records = store.key_records();
    let tag = |s: &Option<String>| -> [u8; 32] {
        let hex = s.as_deref().unwrap().trim_start_matches("hmac-sha256:");
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    };
    let found = records
        .subjects_records(&[
            ("t", tag(&first[0].subject_tag)),
            ("u", tag(&first[2].subject_tag)),
        ])
        .unwrap();
    let mut numbers: Vec<u64> = found.iter().map(|(n, _)| *n).collect();
    numbers.sort();
    let mut expected = vec![first[0].key_id, first[2].key_id];
    expected.sort();
    assert_eq!(numbers, expected);
    assert!(records.subjects_records(&[]).unwrap().is_empty());
}

#[test]
fn a_keyring_is_appended_in_chunks_in_one_transaction_or_not_at_all() {
    use aiaudit_keyring::{Keyring, Record, RecordStore};
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let store = open(&pg);
    // Real records: a keyring file with a tenant and eight subjects.
    let dir = tempfile::tempdir().unwrap();
    let ring = Keyring::open(dir.path(), std::sync::Arc::new(master_key_in(dir.path()))).unwrap();
    let subjects: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
    let wants: Vec<(&str, Option<&str>)> =
        subjects.iter().map(|s| ("t", Some(s.as_str()))).collect();
    ring.choose(&wants).unwrap();
    let image = std::fs::read(dir.path().join(aiaudit_keyring::KEYRING_FILE)).unwrap();
    let records: Vec<Record> =
        aiaudit_keyring::records::parse_image(&image, "test", false, |_| true).unwrap();
    assert_eq!(records.len(), 9);
    let chunks = |fail_after: Option<usize>| {
        let mut at = 0;
        let records = records.clone();
        move || -> aiaudit_keyring::Result<Option<Vec<Record>>> {
            if fail_after.is_some_and(|n| at >= n) {
                return Err(aiaudit_keyring::Error::Corrupt("the file went bad".into()));
            }
            let next = records[at..].iter().take(3).copied().collect::<Vec<_>>();
            at += next.len();
            Ok((!next.is_empty()).then_some(next))
        }
    };
    let shared = store.key_records();
    // Not where the table ends: refused, nothing written.
    assert!(!shared.append_streamed(5, &mut chunks(None)).unwrap());
    // The feeder fails after two chunks went in: the transaction rolls back.
    assert!(shared.append_streamed(0, &mut chunks(Some(6))).is_err());
    assert_eq!(shared.count().unwrap(), 0);
    assert_eq!(shared.subject_counts().unwrap().live, 0);
    // Whole, in three chunks.
    assert!(shared.append_streamed(0, &mut chunks(None)).unwrap());
    let held: Vec<Record> = shared
        .scan(0, 100)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(held, records);
    assert_eq!(shared.subject_counts().unwrap().live, 8);
}
