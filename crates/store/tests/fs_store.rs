//! The file backend against its promises: durable appends, deduplication,
//! recovery from a torn tail, and reads that match the C2SP encodings.

use aiaudit_store::{
    parse_checkpoint, write_atomically, Error, FsStore, LogReader, Storage, FORMAT_LINE,
};
use aiaudit_tlog::NodeReader;
use aiaudit_tlog::{check_record, decode_entry_bundle, prove_record, tree_hash, Checkpoint};
use std::fs::OpenOptions;
use std::io::Write;

mod common;
use common::{batch, entry};

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
    assert_eq!(store.lookup_key(&common::key("e299")).unwrap(), Some(299));
    assert_eq!(store.lookup_key(&common::key("nope")).unwrap(), None);

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
    // Into a buffer that held more: the same bytes, nothing of before.
    let mut reused = vec![0xAA; bundle.len() * 2];
    store.read_entry_bundle_into(256, 45, &mut reused).unwrap();
    assert_eq!(reused, bundle);
    store.read_entry_bundle_into(256, 0, &mut reused).unwrap();
    assert!(reused.is_empty());
    assert!(matches!(
        store.read_entry_bundle_into(300, 2, &mut reused),
        Err(aiaudit_store::Error::OutOfRange(_))
    ));
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

fn checkpoint_note(size: u64, root: aiaudit_tlog::Hash) -> String {
    let cp = Checkpoint {
        origin: "t/l".into(),
        size,
        root,
        extensions: vec![],
    };
    format!("{}\n— t/l AAAA\n", cp.body())
}

#[test]
fn refuses_a_log_without_its_format_file() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = FsStore::open(dir.path()).unwrap();
        store.append(&batch(0, 3)).unwrap();
    }
    std::fs::remove_file(dir.path().join("FORMAT")).unwrap();
    let err = FsStore::open(dir.path()).err().expect("must refuse");
    assert!(matches!(err, Error::Format(_)), "{err}");
    assert!(err.to_string().contains("FORMAT is missing"), "{err}");
    let err = LogReader::open(dir.path()).err().expect("must refuse");
    assert!(err.is_transient(), "no FORMAT to read: {err}");
    // An empty directory is a new log: it gets one.
    let empty = tempfile::tempdir().unwrap();
    FsStore::open(empty.path()).unwrap();
    let format = std::fs::read_to_string(empty.path().join("FORMAT")).unwrap();
    assert_eq!(format.trim_end(), FORMAT_LINE);
}

#[test]
fn refuses_a_checkpoint_the_entries_do_not_hash_to() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = FsStore::open(dir.path()).unwrap();
        store.append(&batch(0, 40)).unwrap();
        store.integrate().unwrap();
        store
            .save_checkpoint(&checkpoint_note(40, [7u8; 32]))
            .unwrap();
    }
    let err = FsStore::open(dir.path()).err().expect("must refuse");
    assert!(matches!(err, Error::Corrupt { index: 40, .. }), "{err}");
    assert!(err.to_string().contains("do not hash"), "{err}");
    // A checkpoint file that is not a checkpoint.
    std::fs::write(dir.path().join("checkpoint"), "not a checkpoint").unwrap();
    let err = FsStore::open(dir.path()).err().expect("must refuse");
    assert!(err.to_string().contains("checkpoint file"), "{err}");
}

#[test]
fn refuses_an_id_index_ahead_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = FsStore::open(dir.path()).unwrap();
        store.append(&batch(0, 10)).unwrap();
        store.sync().unwrap();
    }
    // No checkpoint, so recovery may cut the log; the id index says 10.
    let f = OpenOptions::new()
        .write(true)
        .open(dir.path().join("log/leaves"))
        .unwrap();
    f.set_len(40 * 6).unwrap();
    let err = FsStore::open(dir.path()).err().expect("must refuse");
    assert!(matches!(err, Error::Corrupt { index: 6, .. }), "{err}");
    assert!(err.to_string().contains("id index covers 10"), "{err}");
}

#[test]
fn rebuilds_tree_levels_that_disagree_with_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let root;
    {
        let (store, _) = FsStore::open(dir.path()).unwrap();
        store.append(&batch(0, 600)).unwrap();
        let (size, r) = store.sync().unwrap();
        root = r;
        store.save_checkpoint(&checkpoint_note(size, root)).unwrap();
    }
    // Same length, one changed bit in the node of level 9 the root is made of.
    let level9 = dir.path().join("log/levels/09");
    let mut bytes = std::fs::read(&level9).unwrap();
    assert_eq!(bytes.len(), 32);
    bytes[5] ^= 1;
    std::fs::write(&level9, &bytes).unwrap();
    let (store, rec) = FsStore::open(dir.path()).unwrap();
    assert!(rec.rebuilt_levels);
    assert_eq!(tree_hash(600, &store).unwrap(), root);
    assert_ne!(std::fs::read(&level9).unwrap(), bytes);
}

/// The files under a running store changed behind its back: reads say
/// which index is corrupt instead of returning garbage.
#[test]
fn reads_refuse_out_of_order_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = FsStore::open(dir.path()).unwrap();
    store.append(&batch(0, 4)).unwrap();
    // Entry 2 ends before it starts.
    let leaves = OpenOptions::new()
        .write(true)
        .open(dir.path().join("log/leaves"))
        .unwrap();
    let start_of_2 = {
        let bytes = std::fs::read(dir.path().join("log/leaves")).unwrap();
        u64::from_be_bytes(bytes[72..80].try_into().unwrap())
    };
    std::os::unix::fs::FileExt::write_all_at(&leaves, &(start_of_2 - 1).to_be_bytes(), 2 * 40 + 32)
        .unwrap();
    let err = store.read_entry(2).unwrap_err();
    assert!(matches!(err, Error::Corrupt { index: 2, .. }), "{err}");
    let err = store.read_entry_bundle(2, 1).unwrap_err();
    assert!(matches!(err, Error::Corrupt { index: 2, .. }), "{err}");
    assert_eq!(store.read_entry(1).unwrap(), entry("e1").entry);
    assert_eq!(store.read_entry_bundle(1, 0).unwrap(), Vec::<u8>::new());
}

#[test]
fn reads_beyond_the_log_are_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = FsStore::open(dir.path()).unwrap();
    store.append(&batch(0, 5)).unwrap();
    assert!(matches!(
        store.read_entry_bundle(3, 3),
        Err(Error::OutOfRange(_))
    ));
    // Level 1 is not integrated yet.
    assert!(matches!(
        store.read_hashes(1, 0, 1),
        Err(Error::OutOfRange(_))
    ));
    assert!(store.read_node(1, 0).is_err());
    assert!(store.read_node(0, 5).is_err());
    assert!(store.read_node(64, 0).is_err());
    assert_eq!(store.read_node(0, 4).unwrap(), entry("e4").leaf);
    store.integrate().unwrap();
    assert_eq!(store.read_hashes(2, 0, 1).unwrap().len(), 32);
    assert!(matches!(
        store.read_hashes(64, 0, 0),
        Err(Error::OutOfRange(_))
    ));
}

/// `aiaudit verify --data-dir` reads through `LogReader`: the same bytes as
/// the store, no bounds of its own beyond the files'.
#[test]
fn the_log_reader_reads_what_the_store_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = FsStore::open(dir.path()).unwrap();
    store.append(&batch(0, 300)).unwrap();
    let (size, root) = store.sync().unwrap();
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.checkpoint().unwrap(), None);
    store.save_checkpoint(&checkpoint_note(size, root)).unwrap();
    assert_eq!(reader.checkpoint().unwrap(), store.checkpoint().unwrap());
    assert_eq!(
        reader.read_entry_bundle(10, 20).unwrap(),
        store.read_entry_bundle(10, 20).unwrap()
    );
    for (level, count) in [(0, 300), (1, 150), (8, 1)] {
        assert_eq!(
            reader.read_hashes(level, 0, count).unwrap(),
            store.read_hashes(level, 0, count).unwrap(),
            "level {level}"
        );
    }
    assert!(reader.read_hashes(9, 0, 1).is_err());
    assert!(reader.read_hashes(64, 0, 1).is_err());
    assert!(reader.read_entry_bundle(300, 1).is_err());

    std::fs::write(dir.path().join("FORMAT"), "something else\n").unwrap();
    let err = LogReader::open(dir.path()).err().expect("must refuse");
    assert!(matches!(err, Error::Format(_)), "{err}");
}

#[test]
fn checkpoints_parse_with_or_without_signatures() {
    let body = checkpoint_note(3, [1u8; 32]);
    let signed = parse_checkpoint(&body).unwrap();
    let (unsigned, _) = body.split_once("\n\n").unwrap();
    let bare = parse_checkpoint(&format!("{unsigned}\n")).unwrap();
    assert_eq!((signed.size, signed.root), (3, [1u8; 32]));
    assert_eq!((bare.size, bare.root), (3, [1u8; 32]));
    assert!(matches!(
        parse_checkpoint("t/l\nten\n"),
        Err(Error::Format(_))
    ));
}

#[test]
fn write_atomically_replaces_the_file_or_fails() {
    let dir = tempfile::tempdir().unwrap();
    write_atomically(dir.path(), "note", b"one").unwrap();
    write_atomically(dir.path(), "note", b"two").unwrap();
    assert_eq!(std::fs::read(dir.path().join("note")).unwrap(), b"two");
    assert!(!dir.path().join(".note.tmp").exists());
    let missing = dir.path().join("no/such/dir");
    assert!(write_atomically(&missing, "note", b"x")
        .unwrap_err()
        .is_transient());
}

/// An entry of event `id` in `tenant`, keyed as the ledger keys it.
fn tenant_entry(tenant: &str, id: &str) -> aiaudit_store::NewEntry {
    let bytes = format!(
        r#"{{"event":{{"id":"{id}","tenant":"{tenant}","time":"2026-01-01T00:00:00Z"}},"v":1}}"#
    )
    .into_bytes();
    aiaudit_store::NewEntry {
        key: aiaudit_event::dedup_key(tenant, id),
        leaf: aiaudit_tlog::record_hash(&bytes),
        entry: bytes,
    }
}

#[test]
fn the_same_id_in_two_tenants_is_two_events_before_and_after_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = FsStore::open(dir.path()).unwrap();
    let a = store.append(&[tenant_entry("acme", "x1")]).unwrap();
    let b = store.append(&[tenant_entry("globex", "x1")]).unwrap();
    assert_eq!((a[0].index, a[0].duplicate), (0, false));
    assert_eq!((b[0].index, b[0].duplicate), (1, false));
    store.integrate().unwrap();
    drop(store);
    let (store, _) = FsStore::open(dir.path()).unwrap();
    let again = store
        .append(&[tenant_entry("globex", "x1"), tenant_entry("initech", "x1")])
        .unwrap();
    assert_eq!((again[0].index, again[0].duplicate), (1, true));
    assert_eq!((again[1].index, again[1].duplicate), (2, false));
}

/// A data directory holding `entries`, synced and closed.
fn logged_and_closed(entries: &[aiaudit_store::NewEntry]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = FsStore::open(dir.path()).unwrap();
    store.append(entries).unwrap();
    store.sync().unwrap();
    dir
}

/// Edits the closed store's `ids.redb` in one transaction (to make it look
/// as an older build left it).
fn rewrite_id_index(dir: &std::path::Path, edit: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::open(dir.join("ids.redb")).unwrap();
    let tx = db.begin_write().unwrap();
    edit(&tx);
    tx.commit().unwrap();
}

/// A data directory whose id index was written by 0.1 (bare event ids,
/// table `ids`, no key format) is re-keyed by tenant on open.
#[test]
fn a_legacy_id_index_is_rekeyed_by_tenant_on_open() {
    let entries: Vec<_> = (0..20)
        .map(|i| tenant_entry("acme", &format!("id{i}")))
        .collect();
    let dir = logged_and_closed(&entries);
    // Rewrite the index as 0.1 left it.
    rewrite_id_index(dir.path(), |tx| {
        use redb::ReadableTable;
        let ids: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("ids");
        let new: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("tenant_ids");
        let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
        tx.delete_table(new).unwrap();
        {
            let mut t = tx.open_table(ids).unwrap();
            for i in 0..20u64 {
                t.insert(format!("id{i}").as_str(), i).unwrap();
            }
            let mut m = tx.open_table(meta).unwrap();
            m.remove("key_format").unwrap();
            assert_eq!(m.get("indexed_size").unwrap().unwrap().value(), 20);
        }
    });
    let (store, _) = FsStore::open(dir.path()).unwrap();
    for i in 0..20u64 {
        let key = aiaudit_event::dedup_key("acme", &format!("id{i}"));
        assert_eq!(store.lookup_key(&key).unwrap(), Some(i));
    }
    let out = store
        .append(&[tenant_entry("acme", "id3"), tenant_entry("globex", "id3")])
        .unwrap();
    assert_eq!((out[0].index, out[0].duplicate), (3, true));
    assert_eq!((out[1].index, out[1].duplicate), (20, false));
}

/// Rows of one table of `ids.redb` (the store closed; 0 if it has none).
fn id_index_rows(dir: &std::path::Path, table: &str) -> u64 {
    use redb::ReadableTableMetadata;
    let db = redb::Database::open(dir.join("ids.redb")).unwrap();
    let tx = db.begin_read().unwrap();
    tx.open_untyped_table(redb::TableDefinition::<&str, u64>::new(table))
        .map_or(0, |t| t.len().unwrap())
}

const UUID_A: &str = "0190f3a2-7b1c-7def-8a9b-0123456789ab";
const UUID_B: &str = "0190f3a2-7b1d-7000-8000-00000000000b";

/// Key format 3: canonical lowercase UUID ids under fixed keys (per tenant),
/// every other id under its text key; deduplication is exact either way,
/// across tenants and across a restart.
#[test]
fn uuid_ids_get_fixed_keys_and_other_ids_text_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = FsStore::open(dir.path()).unwrap();
    let first = [
        tenant_entry("acme", UUID_A),
        tenant_entry("globex", UUID_A),
        tenant_entry("acme", &UUID_A.to_uppercase()),
        tenant_entry("acme", "order-17"),
    ];
    let out = store.append(&first).unwrap();
    assert!(out.iter().all(|a| !a.duplicate), "{out:?}");
    store.sync().unwrap();
    drop(store);
    assert_eq!(id_index_rows(dir.path(), "tenant_uuid_ids"), 2);
    assert_eq!(id_index_rows(dir.path(), "tenant_ids"), 2);
    assert_eq!(id_index_rows(dir.path(), "tenant_numbers"), 2);

    let (store, _) = FsStore::open(dir.path()).unwrap();
    let again = store
        .append(&[
            tenant_entry("globex", UUID_A),
            tenant_entry("acme", &UUID_A.to_uppercase()),
            tenant_entry("acme", "order-17"),
            tenant_entry("acme", UUID_A),
            tenant_entry("initech", UUID_A),
            tenant_entry("acme", UUID_B),
        ])
        .unwrap();
    let got: Vec<_> = again.iter().map(|a| (a.index, a.duplicate)).collect();
    assert_eq!(
        got,
        [
            (1, true),
            (2, true),
            (3, true),
            (0, true),
            (4, false),
            (5, false)
        ]
    );
    // A tenant new to the index gets a number of its own.
    store.sync().unwrap();
    for (i, e) in first.iter().enumerate() {
        assert_eq!(store.lookup_key(&e.key).unwrap(), Some(i as u64));
    }
    let initech = aiaudit_event::dedup_key("initech", UUID_A);
    assert_eq!(store.lookup_key(&initech).unwrap(), Some(4));
}

/// A data directory whose id index has key format 2 (every id under its
/// text key) keeps those keys: its UUID ids are still found, and new ones
/// get fixed keys.
#[test]
fn an_id_index_of_format_2_keeps_its_text_keys() {
    let old: Vec<_> = ["acme", "globex"]
        .iter()
        .map(|t| tenant_entry(t, UUID_A))
        .collect();
    let dir = logged_and_closed(&old);
    // Rewrite the index as format 2 left it.
    rewrite_id_index(dir.path(), |tx| {
        let text: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("tenant_ids");
        let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
        for t in ["tenant_uuid_ids", "tenant_numbers"] {
            tx.delete_table(redb::TableDefinition::<&str, u64>::new(t))
                .unwrap();
        }
        {
            let mut t = tx.open_table(text).unwrap();
            for (i, e) in old.iter().enumerate() {
                t.insert(e.key.as_str(), i as u64).unwrap();
            }
            let mut m = tx.open_table(meta).unwrap();
            m.insert("key_format", 2).unwrap();
            m.remove("uuid_ids_from").unwrap();
        }
    });
    let (store, _) = FsStore::open(dir.path()).unwrap();
    let out = store
        .append(&[tenant_entry("globex", UUID_A), tenant_entry("acme", UUID_B)])
        .unwrap();
    assert_eq!((out[0].index, out[0].duplicate), (1, true));
    assert_eq!((out[1].index, out[1].duplicate), (2, false));
    store.sync().unwrap();
    drop(store);
    assert_eq!(id_index_rows(dir.path(), "tenant_uuid_ids"), 1);
    let (store, _) = FsStore::open(dir.path()).unwrap();
    for (key, index) in [(&old[0].key, 0), (&old[1].key, 1)] {
        assert_eq!(store.lookup_key(key).unwrap(), Some(index));
    }
    let key = aiaudit_event::dedup_key("acme", UUID_B);
    assert_eq!(store.lookup_key(&key).unwrap(), Some(2));
}
