//! `FaultyStore`: each fault fails exactly the operations it names, with a
//! transient error, and everything passes through untouched once cleared.

use aiaudit_store::{Faults, FaultyStore, FsStore, Storage};
use aiaudit_tlog::{tree_hash, Checkpoint, NodeReader};
use std::sync::Arc;

mod common;
use common::{batch, entry};

fn assert_injected<T: std::fmt::Debug>(r: aiaudit_store::Result<T>, what: &str) {
    let err = r.expect_err(what);
    assert!(err.is_transient(), "{what}: {err}");
    assert!(err.to_string().contains("injected fault"), "{what}: {err}");
}

fn checkpoint_note(size: u64, root: aiaudit_tlog::Hash) -> String {
    let cp = Checkpoint {
        origin: "test/log".into(),
        size,
        root,
        extensions: vec![],
    };
    format!("{}\n— test/log AAAA\n", cp.body())
}

#[test]
fn each_fault_fails_what_it_names_and_clears() {
    let dir = tempfile::tempdir().unwrap();
    let (inner, _) = FsStore::open(dir.path()).unwrap();
    let store = FaultyStore::new(Arc::new(inner));
    let faults: Arc<Faults> = store.faults.clone();
    store.append(&batch(0, 10)).unwrap();
    let (size, root) = store.integrate().unwrap();
    assert_eq!(size, 10);

    // Appends: refused, nothing logged.
    Faults::set(&faults.append, true);
    assert_injected(store.append(&batch(10, 12)), "append");
    assert_eq!(store.size(), 10);
    store.read_entry(0).unwrap();
    Faults::set(&faults.append, false);
    assert_eq!(store.append(&batch(10, 12)).unwrap()[0].index, 10);

    // Integration and sync: refused, the integrated size stays.
    Faults::set(&faults.integrate, true);
    assert_injected(store.integrate(), "integrate");
    assert_injected(store.sync(), "sync");
    assert_eq!(store.integrated_size(), 10);
    store.save_checkpoint(&checkpoint_note(size, root)).unwrap();
    Faults::set(&faults.integrate, false);
    let (size, root) = store.sync().unwrap();
    assert_eq!((size, store.integrated_size()), (12, 12));

    // Saving a checkpoint: refused, the old one stays.
    let old = store.checkpoint().unwrap().unwrap();
    Faults::set(&faults.save_checkpoint, true);
    assert_injected(store.save_checkpoint(&checkpoint_note(size, root)), "save");
    assert_eq!(store.checkpoint().unwrap().unwrap(), old);
    Faults::set(&faults.save_checkpoint, false);
    store.save_checkpoint(&checkpoint_note(size, root)).unwrap();
    assert!(store.checkpoint().unwrap().unwrap().contains("\n12\n"));

    // Reads: every kind refused, appends still work.
    Faults::set(&faults.reads, true);
    assert_injected(store.read_entry(0), "read_entry");
    assert_injected(store.read_entry_bundle(0, 2), "read_entry_bundle");
    assert_injected(store.read_hashes(0, 0, 2), "read_hashes");
    assert_injected(store.lookup_key(&common::key("e1")), "lookup_key");
    let err = store.read_node(0, 0).expect_err("read_node");
    assert!(err.to_string().contains("injected fault"), "{err}");
    assert!(tree_hash(12, &store).is_err());
    store.append(&batch(12, 13)).unwrap();
    Faults::set(&faults.reads, false);
    assert_eq!(store.read_entry(12).unwrap(), entry("e12").entry);
    assert_eq!(store.lookup_key(&common::key("e1")).unwrap(), Some(1));
    assert_eq!(store.read_hashes(0, 0, 2).unwrap().len(), 64);
    assert!(!store.read_entry_bundle(0, 2).unwrap().is_empty());
    assert_eq!(tree_hash(12, &store).unwrap(), root);
}

#[test]
fn passes_through_what_it_does_not_fault() {
    let dir = tempfile::tempdir().unwrap();
    let (inner, _) = FsStore::open(dir.path()).unwrap();
    let store = FaultyStore::new(Arc::new(inner));
    assert_eq!(store.checkpoint().unwrap(), None);
    assert!(store.is_publisher());
    assert!(!store.shared());
    store.ping().unwrap();
    assert_eq!(store.backend(), "fs");
    assert_eq!((store.size(), store.integrated_size()), (0, 0));
    // Faults are off by default.
    store.append(&batch(0, 1)).unwrap();
    assert_eq!(store.read_node(0, 0).unwrap(), entry("e0").leaf);
}

/// Blobs pass through a `FaultyStore` untouched; a failing disk (the append
/// fault) fails a blob write too, and a read fault its reads.
#[test]
fn blobs_pass_through_and_fail_with_their_faults() {
    let dir = tempfile::tempdir().unwrap();
    let (inner, _) = FsStore::open(dir.path()).unwrap();
    let store = FaultyStore::new(Arc::new(inner));
    let faults: Arc<Faults> = store.faults.clone();
    assert!(store.stores_blobs());
    let id = [7u8; 32];
    let mut w = store.blob_writer(&id).unwrap();
    w.write(b"sealed bytes").unwrap();
    w.commit().unwrap();
    assert_eq!(store.blob_len(&id).unwrap(), Some(12));
    assert_eq!(store.read_blob(&id, 7, 5).unwrap(), b"bytes");
    let mut listed = Vec::new();
    store
        .list_blobs(&mut |id, n| {
            listed.push((id, n));
            Ok(())
        })
        .unwrap();
    assert_eq!(listed, vec![(id, 12)]);
    Faults::set(&faults.append, true);
    assert_injected(store.blob_writer(&[8; 32]).map(|_| ()), "blob write");
    Faults::set(&faults.append, false);
    Faults::set(&faults.reads, true);
    assert_injected(store.read_blob(&id, 0, 1), "blob read");
    Faults::set(&faults.reads, false);
    store.remove_blob(&id).unwrap();
    assert_eq!(store.blob_len(&id).unwrap(), None);
    store.remove_blob(&id).unwrap();
}
