//! Faults inside the file backend (feature `fault-injection`): a write of a
//! batch that stops part-way and an fsync that fails. Whatever the failure,
//! the append is refused, nothing of the batch is acknowledged, the next
//! batch lands right after the acknowledged ones, and a reopen (crash
//! recovery) keeps every acknowledged entry with the same root.

use aiaudit_store::{Appended, FsStore, NewEntry, Storage};
use aiaudit_tlog::{tree_hash, Checkpoint, Hash, TreeBuilder};
use std::path::Path;

mod common;
use common::batch;

/// Bytes a batch adds to `log/entries` (each entry: u16 length + bytes).
fn entries_bytes(b: &[NewEntry]) -> u64 {
    b.iter().map(|e| 2 + e.entry.len() as u64).sum()
}

fn file_len(dir: &Path, name: &str) -> u64 {
    std::fs::metadata(dir.join("log").join(name)).unwrap().len()
}

/// The root of the acknowledged leaves, computed in memory.
fn root_of(leaves: &[Hash]) -> Hash {
    let mut t = TreeBuilder::new();
    for l in leaves {
        t.push(*l, |_, _, _| {});
    }
    t.root()
}

fn assert_fresh(out: &[Appended], first: u64) {
    for (i, a) in out.iter().enumerate() {
        assert_eq!((a.index, a.duplicate), (first + i as u64, false), "{i}");
    }
}

/// The store holds exactly `acked` (and their entries), in order.
fn assert_holds(store: &FsStore, acked: &[NewEntry]) {
    assert_eq!(store.size(), acked.len() as u64);
    for (i, e) in acked.iter().enumerate() {
        assert_eq!(store.read_entry(i as u64).unwrap(), e.entry, "entry {i}");
        assert_eq!(store.lookup_key(&e.key).unwrap(), Some(i as u64), "id {i}");
    }
    let leaves: Vec<Hash> = acked.iter().map(|e| e.leaf).collect();
    let (size, root) = store.integrate().unwrap();
    assert_eq!((size, root), (acked.len() as u64, root_of(&leaves)));
    assert_eq!(tree_hash(size, store).unwrap(), root);
}

/// A store holding 20 acknowledged entries.
fn twenty_acknowledged() -> (tempfile::TempDir, FsStore, Vec<NewEntry>) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = FsStore::open(dir.path()).unwrap();
    let acked = batch(0, 20);
    store.append(&acked).unwrap();
    (dir, store, acked)
}

/// After a restart (crash recovery), the store still holds exactly `acked`.
fn assert_reopened_holds(store: FsStore, dir: &Path, acked: &[NewEntry]) {
    drop(store);
    let (store, rec) = FsStore::open(dir).unwrap();
    assert_eq!((rec.size, rec.truncated_entries), (acked.len() as u64, 0));
    assert_holds(&store, acked);
}

/// Torn writes at every interesting place of a batch: nothing written, inside
/// the first entry, in the middle of the entries, all entries and no leaf
/// record, inside the leaf records, all but the last byte.
#[test]
fn a_torn_write_is_refused_and_cut_away() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = FsStore::open(dir.path()).unwrap();
    let mut acked = batch(0, 100);
    assert_fresh(&store.append(&acked).unwrap(), 0);

    let mut next = 100;
    let probe = batch(next, next + 10);
    let e = entries_bytes(&probe);
    let total = e + 40 * 10;
    for tear in [0, 1, e / 2, e, e + 1, e + 40 * 3 + 7, total - 1] {
        let b = batch(next, next + 10);
        let (entries_before, leaves_before) = (
            file_len(dir.path(), "entries"),
            file_len(dir.path(), "leaves"),
        );
        store.io_faults().tear_next_write(tear);
        let err = store
            .append(&b)
            .expect_err("a torn write must not be acknowledged");
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("torn write"), "{err}");
        assert_eq!(store.size(), acked.len() as u64, "tear at {tear}");
        // The torn bytes are gone from both files.
        assert_eq!(file_len(dir.path(), "entries"), entries_before);
        assert_eq!(file_len(dir.path(), "leaves"), leaves_before);
        assert_eq!(store.lookup_key(&b[0].key).unwrap(), None);

        // The same batch again lands right after the acknowledged entries.
        let out = store.append(&b).unwrap();
        assert_fresh(&out, acked.len() as u64);
        acked.extend(b);
        next += 10;
    }
    assert_holds(&store, &acked);
    let (size, root) = store.integrate().unwrap();
    assert_eq!(size, acked.len() as u64);
    drop(store);

    let (store, rec) = FsStore::open(dir.path()).unwrap();
    assert_eq!((rec.size, rec.truncated_entries), (acked.len() as u64, 0));
    assert_holds(&store, &acked);
    assert_eq!(store.integrate().unwrap(), (size, root));
}

#[test]
fn a_failing_fsync_is_refused_and_cut_away() {
    let (dir, store, mut acked) = twenty_acknowledged();
    let entries_before = file_len(dir.path(), "entries");

    store.io_faults().fail_next_fsync();
    let err = store
        .append(&batch(20, 30))
        .expect_err("a batch whose fsync failed must not be acknowledged");
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("fsync"), "{err}");
    assert_eq!(store.size(), 20);
    assert_eq!(file_len(dir.path(), "entries"), entries_before);
    assert_eq!(file_len(dir.path(), "leaves"), 20 * 40);

    // A different batch next: the failed one left nothing behind, not even ids.
    let b = batch(30, 35);
    assert_fresh(&store.append(&b).unwrap(), 20);
    acked.extend(b);
    let retried = batch(20, 30);
    assert_fresh(&store.append(&retried).unwrap(), 25);
    acked.extend(retried);
    assert_holds(&store, &acked);
    assert_reopened_holds(store, dir.path(), &acked);
}

/// Batches written ahead of a sync (the sequencer writes the next group
/// while the previous one syncs): none counts before its sync; one failed
/// sync loses every batch written since the last durable one, including a
/// duplicate that pointed into them, and leaves no id behind, so each
/// batch lands afresh when sent again.
#[test]
fn a_failing_sync_loses_every_batch_written_ahead_of_it() {
    let (dir, store, mut acked) = twenty_acknowledged();
    let entries_before = file_len(dir.path(), "entries");

    let (first, second) = (batch(20, 30), batch(30, 35));
    let (out, w1) = store.append_unsynced(&first).unwrap();
    assert_fresh(&out, 20);
    let (out, w2) = store.append_unsynced(&second).unwrap();
    assert_fresh(&out, 30);
    // Written, not durable: neither counted nor found by readers yet.
    assert_eq!(store.size(), 20);
    assert_eq!(store.lookup_key(&first[0].key).unwrap(), None);
    // A copy of an event written ahead is its duplicate, and waits for it.
    let (dup, w3) = store.append_unsynced(&first[..1]).unwrap();
    assert_eq!((dup[0].index, dup[0].duplicate), (20, true));
    let (w1, w2, w3) = (w1.unwrap(), w2.unwrap(), w3.expect("the duplicate waits"));

    store.io_faults().fail_next_fsync();
    let err = store.wait_durable(w1).expect_err("its sync failed");
    assert!(err.to_string().contains("fsync"), "{err}");
    for w in [w2, w3] {
        let err = store
            .wait_durable(w)
            .expect_err("written after the last durable batch: lost with it");
        assert!(err.is_transient(), "{err}");
    }
    assert_eq!(store.size(), 20);
    assert_eq!(file_len(dir.path(), "entries"), entries_before);
    assert_eq!(file_len(dir.path(), "leaves"), 20 * 40);

    // Sent again, each lands afresh: the lost batches left no id behind.
    let out = store.append(&second).unwrap();
    assert_fresh(&out, 20);
    acked.extend(second);
    let out = store.append(&first).unwrap();
    assert_fresh(&out, 25);
    acked.extend(first);
    assert_holds(&store, &acked);
    assert_reopened_holds(store, dir.path(), &acked);
}

/// Recovery makes the tail it keeps durable: batches written but never
/// synced before the process died count from the next start on, so that
/// start must sync them first (a failure there stops it).
#[test]
fn recovery_syncs_the_tail_it_keeps() {
    let (dir, store, _) = twenty_acknowledged();
    let (_, written) = store.append_unsynced(&batch(20, 25)).unwrap();
    assert!(written.is_some());
    drop(store); // the process dies before the sync
    let err = FsStore::open_with_faults(dir.path(), |f| f.fail_next_fsync())
        .err()
        .expect("recovery syncs the kept tail, and that sync failed");
    assert!(err.to_string().contains("fsync"), "{err}");
    let (store, rec) = FsStore::open(dir.path()).unwrap();
    assert_eq!((rec.size, store.size()), (25, 25));
}

/// One sync makes every batch written before it durable; a batch of
/// duplicates of durable events needs no sync at all.
#[test]
fn one_sync_covers_every_batch_written_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = FsStore::open(dir.path()).unwrap();
    let (a, b) = (batch(0, 10), batch(10, 15));
    let (_, wa) = store.append_unsynced(&a).unwrap();
    let (_, wb) = store.append_unsynced(&b).unwrap();
    store.wait_durable(wb.unwrap()).unwrap();
    assert_eq!(store.size(), 15);
    // Already covered: a sync failing now is not this batch's.
    store.io_faults().fail_next_fsync();
    store.wait_durable(wa.unwrap()).unwrap();
    let (dups, w) = store.append_unsynced(&a).unwrap();
    assert!(dups.iter().all(|d| d.duplicate));
    assert_eq!(w, None);
    let mut acked = a;
    acked.extend(b);
    assert_holds(&store, &acked);
}

/// A disarmed fault does not fire: a torn write armed for more bytes than
/// the batch has is dropped with that batch, not carried into the next.
#[test]
fn a_fault_fires_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = FsStore::open(dir.path()).unwrap();
    let first = batch(0, 3);
    store
        .io_faults()
        .tear_next_write(entries_bytes(&first) + 3 * 40 + 10);
    assert_fresh(&store.append(&first).unwrap(), 0);
    assert_fresh(&store.append(&batch(3, 6)).unwrap(), 3);
    store.io_faults().fail_next_fsync();
    assert!(store.append(&batch(6, 8)).is_err());
    assert_fresh(&store.append(&batch(6, 600)).unwrap(), 6);
    store.io_faults().tear_next_write(5);
    assert!(store.append(&batch(600, 601)).is_err());
    assert_fresh(&store.append(&batch(600, 601)).unwrap(), 600);
}

/// A signed checkpoint over `store` as it is (the signature is not checked by the store).
fn save_checkpoint(store: &FsStore) -> (u64, Hash) {
    let (size, root) = store.integrate().unwrap();
    let cp = Checkpoint {
        origin: "test/log".into(),
        size,
        root,
        extensions: vec![],
    };
    store
        .save_checkpoint(&format!("{}\n— test/log AAAA\n", cp.body()))
        .unwrap();
    (size, root)
}

/// The process dies right after the torn write (no clean-up, no sync):
/// recovery keeps the acknowledged prefix and the same root. Torn inside the
/// entries, exactly that prefix; torn inside the leaf records, whole entries
/// of the batch whose records made it may survive (never acknowledged, so
/// allowed), and the retried batch finds them as duplicates.
#[test]
fn a_crash_right_after_a_torn_write_recovers_the_acknowledged_prefix() {
    let probe = batch(100, 110);
    let e = entries_bytes(&probe);
    // (tear at, entries of the batch that survive the crash)
    for (tear, survive) in [
        (0, 0),
        (e / 3, 0),
        (e, 0),
        (e + 39, 0),
        (e + 40 * 2 + 20, 2),
        (e + 40 * 10 - 1, 9),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let acked = batch(0, 100);
        let (size, root) = {
            let (store, _) = FsStore::open(dir.path()).unwrap();
            store.append(&acked[..60]).unwrap();
            let cp = save_checkpoint(&store);
            store.append(&acked[60..]).unwrap();
            store.io_faults().crash_on_fault(true);
            store.io_faults().tear_next_write(tear);
            assert!(store.append(&batch(100, 110)).is_err(), "tear at {tear}");
            assert_eq!(store.size(), 100);
            // The torn bytes are still there, as after a crash.
            assert_eq!(
                file_len(dir.path(), "entries"),
                entries_bytes(&acked) + tear.min(e)
            );
            cp
        };
        let (store, rec) = FsStore::open(dir.path()).unwrap();
        assert_eq!(rec.size, 100 + survive, "tear at {tear}");
        assert_eq!(rec.checkpoint_size, 60);
        assert_eq!(tree_hash(60, &store).unwrap(), root);
        assert_eq!(size, 60);
        let mut expect = acked.clone();
        expect.extend(batch(100, 100 + survive as usize));
        assert_holds(&store, &expect);

        // The client retries the batch it never heard back about.
        let out = store.append(&batch(100, 110)).unwrap();
        for (i, a) in out.iter().enumerate() {
            assert_eq!(a.index, 100 + i as u64);
            assert_eq!(
                a.duplicate,
                (i as u64) < survive,
                "tear at {tear}, entry {i}"
            );
        }
        let mut all = acked;
        all.extend(batch(100, 110));
        assert_holds(&store, &all);
    }
}

/// The process dies after writing a whole batch whose fsync failed: the batch
/// may be there after recovery (never acknowledged, so either way is right);
/// what was acknowledged is, and a retry logs nothing twice.
#[test]
fn a_crash_after_a_failing_fsync_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let acked = batch(0, 50);
    {
        let (store, _) = FsStore::open(dir.path()).unwrap();
        store.append(&acked).unwrap();
        store.io_faults().crash_on_fault(true);
        store.io_faults().fail_next_fsync();
        assert!(store.append(&batch(50, 60)).is_err());
        assert_eq!(store.size(), 50);
    }
    let (store, rec) = FsStore::open(dir.path()).unwrap();
    assert!(rec.size == 50 || rec.size == 60, "{}", rec.size);
    let out = store.append(&batch(50, 60)).unwrap();
    for (i, a) in out.iter().enumerate() {
        assert_eq!(a.index, 50 + i as u64);
        assert_eq!(a.duplicate, rec.size == 60);
    }
    let mut all = acked;
    all.extend(batch(50, 60));
    assert_holds(&store, &all);
}

/// Every entry of `out` points at the logged copy: `acked[i]` at index `i`.
fn assert_found(out: &[Appended], acked: &[NewEntry]) {
    for (i, a) in out.iter().enumerate() {
        assert_eq!((a.index, a.duplicate), (i as u64, true), "{i}");
        assert_eq!(a.leaf, acked[i].leaf, "{i}");
    }
}

/// An id-index failure makes the store reopen the index, which loses its
/// commits that were not durable yet. Events sent again after that are
/// still found, when the reopen falls between the two places an append
/// looks (the ids waiting to be indexed, then the index): the reopen puts
/// what it lost back among the waiting ids, and the append looks again.
#[test]
fn a_retry_is_found_when_the_id_index_reopens_while_it_is_looked_up() {
    let (dir, store, acked) = twenty_acknowledged();
    // The ids move into the index, in a commit that is not durable yet.
    store.integrate().unwrap();
    store.io_faults().fail_next_id_index_use();
    assert_found(&store.append(&acked).unwrap(), &acked);
    assert_holds(&store, &acked);
    assert_reopened_holds(store, dir.path(), &acked);
}

/// The same when the reopen comes right after integration committed ids to
/// the index and before it forgot them among the waiting ones.
#[test]
fn a_retry_is_found_when_the_id_index_reopens_right_after_integration_commits() {
    let (dir, store, acked) = twenty_acknowledged();
    store.io_faults().reopen_after_next_id_commit();
    store.integrate().unwrap();
    assert_found(&store.append(&acked).unwrap(), &acked);
    assert_holds(&store, &acked);
    assert_reopened_holds(store, dir.path(), &acked);
}

/// The same when the reopen comes as integration makes the index durable:
/// integration commits what the reopen put back too, so the durable index
/// never claims entries whose ids it lacks (a restart would not put those
/// back among the waiting ids).
#[test]
fn a_retry_is_found_after_a_restart_when_the_id_index_reopened_as_it_was_made_durable() {
    let (dir, store, mut acked) = twenty_acknowledged();
    store.integrate().unwrap();
    let more = batch(20, 30);
    assert_fresh(&store.append(&more).unwrap(), 20);
    acked.extend(more);
    store.io_faults().fail_next_id_index_use();
    store.sync().unwrap();
    drop(store);
    let (store, _) = FsStore::open(dir.path()).unwrap();
    assert_found(&store.append(&acked).unwrap(), &acked);
    assert_holds(&store, &acked);
}

/// When cutting the log back after a failed fsync fails too, the lost
/// batch's bytes stay in the files past the frontier. The next batch cuts
/// again before it is written: otherwise a batch ending exactly where one
/// of the lost entries ended (here the first five of the lost batch, sent
/// again) would let recovery take the lost entries after it for logged.
#[test]
fn a_failed_cut_back_is_done_before_the_next_batch() {
    let (dir, store, mut acked) = twenty_acknowledged();
    store.io_faults().fail_next_fsync();
    store.io_faults().fail_next_cut();
    store
        .append(&batch(20, 30))
        .expect_err("a batch whose fsync failed must not be acknowledged");
    assert_eq!(store.size(), 20);
    let again = batch(20, 25);
    assert_fresh(&store.append(&again).unwrap(), 20);
    acked.extend(again);
    assert_eq!(file_len(dir.path(), "leaves"), 25 * 40);
    assert_eq!(file_len(dir.path(), "entries"), entries_bytes(&acked));
    assert_holds(&store, &acked);
    assert_reopened_holds(store, dir.path(), &acked);
}

/// An id index that fails on every commit makes integration give up with
/// an error after a few reopens instead of reopening it for ever; once it
/// works again, integration moves every id and events sent again are found.
#[test]
fn integration_gives_up_on_an_id_index_that_keeps_failing() {
    let (dir, store, acked) = twenty_acknowledged();
    store.io_faults().fail_id_index_uses(10);
    let err = store
        .integrate()
        .expect_err("an id index failing on each use is an error");
    assert!(err.to_string().contains("reopened"), "{err}");
    store.io_faults().fail_id_index_uses(0);
    assert_eq!(store.integrate().unwrap().0, 20);
    assert_found(&store.append(&acked).unwrap(), &acked);
    assert_holds(&store, &acked);
    assert_reopened_holds(store, dir.path(), &acked);
}

/// A clean stop (`sync`) after a cut back that failed cuts the files first:
/// recovery at the next start would otherwise keep the lost batch, whose
/// entries hash to their leaves, as logged.
#[test]
fn a_clean_stop_does_the_cut_back_that_failed() {
    let (dir, store, acked) = twenty_acknowledged();
    store.io_faults().fail_next_fsync();
    store.io_faults().fail_next_cut();
    store
        .append(&batch(20, 30))
        .expect_err("a batch whose fsync failed must not be acknowledged");
    store.sync().unwrap();
    assert_eq!(file_len(dir.path(), "leaves"), 20 * 40);
    assert_eq!(file_len(dir.path(), "entries"), entries_bytes(&acked));
    assert_reopened_holds(store, dir.path(), &acked);
}
