//! The file backend against its promises: durable appends, deduplication,
//! recovery from a torn tail, and reads that match the C2SP encodings.

use aiaudit_store::{FsStore, NewEntry, Storage};
use aiaudit_tlog::{
    check_record, decode_entry_bundle, prove_record, record_hash, tree_hash, Checkpoint,
};
use std::fs::OpenOptions;
use std::io::Write;

fn entry(id: &str) -> NewEntry {
    let bytes =
        format!(r#"{{"event":{{"id":"{id}","time":"2026-01-01T00:00:00Z"}},"v":1}}"#).into_bytes();
    NewEntry {
        id: id.to_string(),
        leaf: record_hash(&bytes),
        entry: bytes,
    }
}

fn batch(from: usize, to: usize) -> Vec<NewEntry> {
    (from..to).map(|i| entry(&format!("e{i}"))).collect()
}

#[test]
fn appends_dedups_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, rec) = FsStore::open(dir.path()).unwrap();
    assert_eq!(rec.size, 0);
    let out = store.append(&batch(0, 300)).unwrap();
    assert_eq!(out.len(), 300);
    assert!(out
        .iter()
        .enumerate()
        .all(|(i, a)| a.index == i as u64 && !a.duplicate));
    assert_eq!(store.size(), 300);

    // Duplicates: of logged ids (pending, then indexed) and within one batch.
    let again = store
        .append(&[entry("e5"), entry("new1"), entry("new1")])
        .unwrap();
    assert_eq!((again[0].index, again[0].duplicate), (5, true));
    assert_eq!(again[0].leaf, out[5].leaf);
    assert_eq!((again[1].index, again[1].duplicate), (300, false));
    assert_eq!((again[2].index, again[2].duplicate), (300, true));
    let (size, root) = store.integrate().unwrap();
    assert_eq!(size, 301);
    let after = store.append(&[entry("e7")]).unwrap();
    assert_eq!((after[0].index, after[0].duplicate), (7, true));
    assert_eq!(store.size(), 301);
    assert_eq!(store.lookup_id("e299").unwrap(), Some(299));
    assert_eq!(store.lookup_id("nope").unwrap(), None);

    // Tree and proofs from stored nodes agree with a fresh computation.
    assert_eq!(tree_hash(301, &store).unwrap(), root);
    for i in [0, 1, 255, 256, 300] {
        let proof = prove_record(301, i, &store).unwrap();
        check_record(
            &proof,
            301,
            &root,
            i,
            &out.get(i as usize).map_or(again[1].leaf, |a| a.leaf),
        )
        .unwrap();
    }

    // Bundles and hash tiles use the C2SP encodings.
    let bundle = store.read_entry_bundle(256, 45).unwrap();
    let entries = decode_entry_bundle(&bundle).unwrap();
    assert_eq!(entries.len(), 45);
    assert_eq!(entries[0], entry("e256").entry.as_slice());
    let level0 = store.read_hashes(0, 0, 256).unwrap();
    assert_eq!(&level0[32..64], &out[1].leaf);
    let level8 = store.read_hashes(8, 0, 1).unwrap();
    assert_eq!(level8.len(), 32);
    assert!(store.read_hashes(8, 0, 2).is_err());
    assert!(store.read_entry(301).is_err());
}

#[test]
fn reopens_where_it_left_off_and_drops_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let root;
    {
        let (store, _) = FsStore::open(dir.path()).unwrap();
        store.append(&batch(0, 1000)).unwrap();
        let (size, r) = store.integrate().unwrap();
        root = r;
        let cp = Checkpoint {
            origin: "test/log".into(),
            size,
            root,
            extensions: vec![],
        };
        store
            .save_checkpoint(&format!("{}\n— test/log AAAA\n", cp.body()))
            .unwrap();
        store.append(&batch(1000, 1010)).unwrap();
    }
    // A crash mid-write: half an entry and a leaf record that does not match it.
    let log = dir.path().join("log");
    OpenOptions::new()
        .append(true)
        .open(log.join("entries"))
        .unwrap()
        .write_all(&[0, 50, b'{', b'"'])
        .unwrap();
    OpenOptions::new()
        .append(true)
        .open(log.join("leaves"))
        .unwrap()
        .write_all(&[7u8; 40])
        .unwrap();
    let (store, rec) = FsStore::open(dir.path()).unwrap();
    assert_eq!(rec.size, 1010);
    assert_eq!(rec.truncated_entries, 1);
    assert_eq!(store.size(), 1010);
    assert_eq!(tree_hash(1000, &store).unwrap(), root);
    // Ids from before the crash still deduplicate, including the unindexed tail.
    let dup = store.append(&[entry("e1005"), entry("e3")]).unwrap();
    assert!(dup.iter().all(|a| a.duplicate));
    assert_eq!((dup[0].index, dup[1].index), (1005, 3));
    let fresh = store.append(&[entry("x")]).unwrap();
    assert_eq!(fresh[0].index, 1010);
}

#[test]
fn rebuilds_lost_tree_levels_from_the_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let root;
    {
        let (store, _) = FsStore::open(dir.path()).unwrap();
        store.append(&batch(0, 700)).unwrap();
        let (size, r) = store.integrate().unwrap();
        root = r;
        let cp = Checkpoint {
            origin: "t/l".into(),
            size,
            root,
            extensions: vec![],
        };
        store
            .save_checkpoint(&format!("{}\n— t/l AAAA\n", cp.body()))
            .unwrap();
    }
    std::fs::write(dir.path().join("log/levels/01"), [0u8; 64]).unwrap();
    let (store, rec) = FsStore::open(dir.path()).unwrap();
    assert!(rec.rebuilt_levels);
    assert_eq!(tree_hash(700, &store).unwrap(), root);
    assert_eq!(store.read_hashes(1, 0, 350).unwrap().len(), 350 * 32);
}

#[test]
fn refuses_a_log_shorter_than_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = FsStore::open(dir.path()).unwrap();
        store.append(&batch(0, 10)).unwrap();
        let (size, root) = store.integrate().unwrap();
        let cp = Checkpoint {
            origin: "t/l".into(),
            size,
            root,
            extensions: vec![],
        };
        store
            .save_checkpoint(&format!("{}\n— t/l AAAA\n", cp.body()))
            .unwrap();
    }
    let leaves = dir.path().join("log/leaves");
    let f = OpenOptions::new().write(true).open(&leaves).unwrap();
    f.set_len(40 * 5).unwrap();
    let err = FsStore::open(dir.path()).err().expect("must refuse");
    assert!(err.to_string().contains("index 5"), "{err}");
}

#[test]
fn refuses_an_unknown_format() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("FORMAT"), "aiaudit-fs 99\n").unwrap();
    let err = FsStore::open(dir.path()).err().expect("must refuse");
    assert!(err.to_string().contains("aiaudit-fs 1"), "{err}");
}
