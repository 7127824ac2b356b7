//! Create, verify and restore against an in-memory log, and the damage
//! verification must catch.

use crate::{create, layout, restore, verify, Location, LogSource, Quiet};
use aiaudit_event::envelope::{DataKey, SEAL_RANDOM_LEN};
use aiaudit_event::sealed_v3::{seal, BlobRef, SealInput, SealedBlob};
use aiaudit_store::{FsStore, Storage};
use aiaudit_tlog::{
    encode_entry_bundle, record_hash, sign_note, Checkpoint, Hash, Signer, TreeBuilder, TILE_WIDTH,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

const ORIGIN: &str = "backup.test/log";

/// A log in memory, signing its checkpoints like a ledger.
struct MemLog {
    entries: Mutex<Vec<Vec<u8>>>,
    /// Stored blob bytes by id.
    blobs: Mutex<HashMap<Hash, Vec<u8>>>,
    signer: Signer,
    /// Sign a wrong root (a lying or broken log).
    lie: bool,
    /// The keyring file's bytes.
    keyring: Mutex<Vec<u8>>,
    /// New keys arrive each time the keyring's length is asked.
    keys_keep_coming: bool,
    /// Reading the keyring from this offset on fails.
    keyring_breaks_at: Option<u64>,
}

impl MemLog {
    fn new(n: usize) -> MemLog {
        let log = MemLog {
            entries: Mutex::new(Vec::new()),
            blobs: Mutex::new(HashMap::new()),
            signer: Signer::from_seed(ORIGIN, [7; 32]).unwrap(),
            lie: false,
            keyring: Mutex::new(b"wrapped keys".to_vec()),
            keys_keep_coming: false,
            keyring_breaks_at: None,
        };
        log.add(n);
        log
    }

    fn add(&self, n: usize) {
        let mut e = self.entries.lock().unwrap();
        let start = e.len();
        for i in start..start + n {
            e.push(
                format!(r#"{{"event":{{"id":"ev-{i}","time":"2026-11-27T09:14:03Z"}},"v":1}}"#)
                    .into_bytes(),
            );
        }
    }

    /// Appends a v3 entry whose `input` (`len` bytes of text) is stored out
    /// of line, sealed as the ledger seals it; returns its blob's id.
    fn add_with_blob(&self, len: usize) -> Hash {
        let mut entries = self.entries.lock().unwrap();
        let i = entries.len();
        let input = serde_json::json!({"content": "b".repeat(len)});
        let event = serde_json::json!({
            "id": format!("blob-ev-{i}"), "time": "2026-11-27T09:14:03Z", "tenant": "acme",
            "source": {"name": "test"}, "actor": {"id": "agent-7", "type": "agent"},
            "action": "model.invoke", "input": input,
        });
        let checked = aiaudit_event::check(&event).unwrap();
        let mut content = Vec::new();
        aiaudit_event::write_canonical(&mut content, &input);
        let salt = [i as u8; 32];
        let id = aiaudit_event::blob::commitment(&salt, &content);
        let key = DataKey {
            id: 1,
            key: &[3; 32],
        };
        let mut stored = Vec::new();
        let stored_hash = aiaudit_event::blob::seal::<()>(&content, &id, key, [4; 16], true, |b| {
            stored.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        let mut rest = event.as_object().unwrap().clone();
        rest.remove("input");
        let blob = SealedBlob {
            reference: BlobRef {
                pointer: "/input".into(),
                size: content.len() as u64,
                commitment: id,
                stored: stored_hash,
            },
            salt,
        };
        let prepared = seal(
            &SealInput {
                event: &rest,
                checked: &checked,
                signature: None,
                appended_by: None,
                redacted: &[],
                subject_tag: None,
                compress: aiaudit_event::sealed_v3::Compression::Zstd,
                blobs: &[blob],
            },
            key,
            &[5; SEAL_RANDOM_LEN],
        )
        .unwrap();
        assert_eq!(
            aiaudit_event::sealed_v3::blob_refs(&prepared.entry).len(),
            1
        );
        entries.push(prepared.entry);
        self.blobs.lock().unwrap().insert(id, stored);
        id
    }

    fn root(&self) -> (u64, aiaudit_tlog::Hash) {
        let mut t = TreeBuilder::new();
        for e in self.entries.lock().unwrap().iter() {
            t.push(record_hash(e), |_, _, _| {});
        }
        (t.size(), t.root())
    }
}

impl LogSource for MemLog {
    async fn checkpoint(&self) -> anyhow::Result<String> {
        let (size, mut root) = self.root();
        if self.lie {
            root[0] ^= 1;
        }
        let body = Checkpoint {
            origin: ORIGIN.into(),
            size,
            root,
            extensions: vec![],
        }
        .body();
        Ok(sign_note(&body, &self.signer)?)
    }

    async fn verifier_key(&self) -> anyhow::Result<Option<String>> {
        Ok(Some(self.signer.verifier().to_vkey()))
    }

    async fn entry_bundle(&self, index: u64, width: u16) -> anyhow::Result<Vec<u8>> {
        let e = self.entries.lock().unwrap();
        let start = (index * TILE_WIDTH) as usize;
        let slice = &e[start..start + usize::from(width)];
        Ok(encode_entry_bundle(slice.iter().map(|v| v.as_slice()))?)
    }

    async fn blob(&self, id: &Hash) -> anyhow::Result<Vec<u8>> {
        let blobs = self.blobs.lock().unwrap();
        let b = blobs.get(id);
        b.cloned()
            .ok_or_else(|| anyhow::anyhow!("no blob {}", aiaudit_store::blob_name(id)))
    }

    async fn keyring_len(&self) -> anyhow::Result<Option<u64>> {
        let mut k = self.keyring.lock().unwrap();
        let len = k.len() as u64;
        if self.keys_keep_coming {
            k.extend_from_slice(b"a key made after the backup began");
        }
        Ok(Some(len))
    }

    async fn keyring_range(&self, offset: u64, len: u64) -> anyhow::Result<Vec<u8>> {
        if self.keyring_breaks_at.is_some_and(|at| offset >= at) {
            anyhow::bail!("the disk under the keyring failed");
        }
        let k = self.keyring.lock().unwrap();
        Ok(k[offset as usize..(offset + len) as usize].to_vec())
    }
}

fn dir_location(p: &Path) -> Location {
    Location::parse(p.to_str().unwrap()).unwrap()
}

async fn backup(log: &MemLog, loc: &Location, incremental: bool) -> crate::BackupSummary {
    let mut r = create(log, std::slice::from_ref(loc), incremental, None, &Quiet)
        .await
        .unwrap();
    r.remove(0).unwrap()
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x20;
    std::fs::write(path, b).unwrap();
}

#[tokio::test]
async fn full_and_incremental_verify_and_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let loc = dir_location(&tmp.path().join("b"));
    let log = MemLog::new(600);
    let full = backup(&log, &loc, false).await;
    assert_eq!((full.from, full.size), (0, 600));
    log.add(20_000);
    let incr = backup(&log, &loc, true).await;
    assert_eq!((incr.from, incr.size), (600, 20_600));
    assert_eq!(incr.parent.as_deref(), Some(full.id.as_str()));

    let v = verify(&loc, None, None, &Quiet).await.unwrap();
    assert_eq!(v.chain, [full.id.clone(), incr.id.clone()]);
    assert_eq!(v.size, 20_600);
    assert!(!v.key_pinned);
    let pinned = log.signer.verifier();
    assert!(
        verify(&loc, Some(&full.id), Some(&pinned), &Quiet)
            .await
            .unwrap()
            .key_pinned
    );

    let data = tmp.path().join("data");
    let r = restore(
        &loc,
        None,
        &data,
        Some(&pinned),
        Some(&log.signer.to_skey()),
        &Quiet,
    )
    .await
    .unwrap();
    assert_eq!(r.size, 20_600);
    assert!(r.keyring_written && r.signing_key_written);
    let (store, _) = FsStore::open(&data).unwrap();
    assert_eq!(store.size(), 20_600);
    let (size, root) = store.sync().unwrap();
    assert_eq!((size, root), log.root());
    assert_eq!(store.checkpoint().unwrap().unwrap(), v.checkpoint);
    // The test entries name no tenant: their key is "" and the id.
    let key = aiaudit_event::dedup_key("", "ev-20599");
    assert_eq!(store.lookup_key(&key).unwrap(), Some(20_599));
    assert_eq!(
        std::fs::read(data.join("keyring")).unwrap(),
        b"wrapped keys"
    );
    drop(store);

    // A restore never goes into a directory that holds something.
    let err = restore(&loc, None, &data, None, None, &Quiet)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err:#}");
}

#[tokio::test]
async fn verify_names_a_changed_or_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("b");
    let loc = dir_location(&root);
    let log = MemLog::new(300);
    let full = backup(&log, &loc, false).await;
    let seg = root.join(&full.id).join("entries/00000000000000000000");

    flip_byte(&seg, 10);
    let err = format!("{:#}", verify(&loc, None, None, &Quiet).await.unwrap_err());
    assert!(
        err.contains("entries/00000000000000000000: SHA-256"),
        "{err}"
    );
    // Restore refuses the same backup and leaves nothing behind.
    let data = tmp.path().join("data");
    assert!(restore(&loc, None, &data, None, None, &Quiet)
        .await
        .is_err());
    assert!(!data.exists() || std::fs::read_dir(&data).unwrap().next().is_none());

    std::fs::remove_file(&seg).unwrap();
    let err = format!("{:#}", verify(&loc, None, None, &Quiet).await.unwrap_err());
    assert!(
        err.contains("entries/00000000000000000000: missing"),
        "{err}"
    );
}

#[tokio::test]
async fn verify_catches_a_root_the_entries_do_not_give() {
    let tmp = tempfile::tempdir().unwrap();
    let loc = dir_location(&tmp.path().join("b"));
    let mut log = MemLog::new(300);
    log.lie = true;
    backup(&log, &loc, false).await;
    let err = format!("{:#}", verify(&loc, None, None, &Quiet).await.unwrap_err());
    assert!(err.contains("the entries give root"), "{err}");
}

#[tokio::test]
async fn verify_checks_the_signature_against_a_pinned_key() {
    let tmp = tempfile::tempdir().unwrap();
    let loc = dir_location(&tmp.path().join("b"));
    let log = MemLog::new(10);
    backup(&log, &loc, false).await;
    let other = Signer::from_seed(ORIGIN, [8; 32]).unwrap().verifier();
    let err = format!(
        "{:#}",
        verify(&loc, None, Some(&other), &Quiet).await.unwrap_err()
    );
    assert!(err.contains("checkpoint: signature"), "{err}");
    // Nor is a signing key that does not match accepted.
    let wrong = Signer::from_seed(ORIGIN, [8; 32]).unwrap().to_skey();
    let data = tmp.path().join("data");
    let err = restore(&loc, None, &data, None, Some(&wrong), &Quiet)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("signing key"), "{err:#}");
}

#[tokio::test]
async fn an_incremental_needs_a_backup_to_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let loc = dir_location(&tmp.path().join("b"));
    let log = MemLog::new(10);
    let r = create(&log, &[loc], true, None, &Quiet).await.unwrap();
    let err = format!("{:#}", r.into_iter().next().unwrap().unwrap_err());
    assert!(err.contains("take a full backup first"), "{err}");
}

#[tokio::test]
async fn a_half_written_backup_is_not_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("b");
    let loc = dir_location(&root);
    let log = MemLog::new(10);
    let full = backup(&log, &loc, false).await;
    std::fs::remove_file(root.join(&full.id).join("manifest.json")).unwrap();
    assert!(loc.manifests().await.unwrap().is_empty());
    assert!(verify(&loc, None, None, &Quiet).await.is_err());
}

#[tokio::test]
async fn each_destination_continues_its_own_latest_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let a = dir_location(&tmp.path().join("a"));
    let b = dir_location(&tmp.path().join("b"));
    let log = MemLog::new(300);
    backup(&log, &a, false).await;
    log.add(300);
    backup(&log, &b, false).await;
    log.add(300);
    let r = create(&log, &[a.clone(), b.clone()], true, None, &Quiet)
        .await
        .unwrap();
    let ranges: Vec<(u64, u64)> = r
        .iter()
        .map(|s| {
            let s = s.as_ref().unwrap();
            (s.from, s.size)
        })
        .collect();
    assert_eq!(ranges, [(300, 900), (600, 900)]);
    for loc in [&a, &b] {
        assert_eq!(verify(loc, None, None, &Quiet).await.unwrap().size, 900);
    }
}

/// The manifest of backup `id` in directory location `root`.
fn manifest(root: &Path, id: &str) -> layout::Manifest {
    let bytes = std::fs::read(root.join(id).join(layout::MANIFEST)).unwrap();
    layout::Manifest::parse(&bytes).unwrap()
}

fn save_manifest(root: &Path, m: &layout::Manifest) {
    std::fs::write(root.join(&m.id).join(layout::MANIFEST), m.to_json()).unwrap();
}

fn blob_path(root: &Path, backup: &str, id: &Hash) -> std::path::PathBuf {
    root.join(backup).join(layout::blob_name(id))
}

#[tokio::test]
async fn blobs_are_backed_up_verified_and_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("b");
    let loc = dir_location(&root);
    let log = MemLog::new(300);
    // Three blobs at the end of the first tile, one of several chunks.
    let mut first = vec![log.add_with_blob(100), log.add_with_blob(1_500_000)];
    first.push(log.add_with_blob(10));
    let full = backup(&log, &loc, false).await;
    assert_eq!((full.size, full.blobs), (303, 3));
    let m = manifest(&root, &full.id);
    assert_eq!(m.format, layout::FORMAT_2);
    assert_eq!(m.blobs().count(), 3);
    for id in &first {
        let stored = log.blobs.lock().unwrap()[id].clone();
        assert_eq!(
            std::fs::read(blob_path(&root, &full.id, id)).unwrap(),
            stored
        );
        let listed = m.file(&layout::blob_name(id)).unwrap();
        assert_eq!(
            (listed.bytes, &listed.sha256),
            (stored.len() as u64, &layout::sha256_hex(&stored))
        );
    }

    // The incremental reads the first tile again but holds only its own blobs.
    log.add(20_000);
    let second = [log.add_with_blob(50), log.add_with_blob(60)];
    log.add(5);
    let incr = backup(&log, &loc, true).await;
    assert_eq!((incr.from, incr.size, incr.blobs), (303, 20_310, 2));
    let m = manifest(&root, &incr.id);
    assert_eq!(m.format, layout::FORMAT_2);
    let mut held: Vec<Hash> = m
        .blobs()
        .filter_map(|f| layout::parse_blob_name(&f.name))
        .collect();
    held.sort();
    let mut want = second.to_vec();
    want.sort();
    assert_eq!(held, want);

    let v = verify(&loc, None, None, &Quiet).await.unwrap();
    assert_eq!(v.chain.len(), 2);
    assert_eq!(v.blobs, 5);

    let data = tmp.path().join("data");
    let r = restore(&loc, None, &data, None, None, &Quiet)
        .await
        .unwrap();
    assert_eq!(r.size, 20_310);
    let all: Vec<Hash> = first.iter().chain(&second).copied().collect();
    let bytes: u64 = all
        .iter()
        .map(|id| log.blobs.lock().unwrap()[id].len() as u64)
        .sum();
    assert_eq!((r.blobs, r.blob_bytes), (5, bytes));
    assert_eq!(v.blob_bytes, bytes);
    let (store, _) = FsStore::open(&data).unwrap();
    assert_eq!(store.sync().unwrap(), log.root());
    let mut listed = 0;
    store
        .list_blobs(&mut |_, _| {
            listed += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(listed, 5);
    for id in &all {
        let stored = log.blobs.lock().unwrap()[id].clone();
        let len = store.blob_len(id).unwrap().unwrap();
        assert_eq!(store.read_blob(id, 0, len as usize).unwrap(), stored);
    }
    let key = aiaudit_event::dedup_key("acme", "blob-ev-300");
    assert_eq!(store.lookup_key(&key).unwrap(), Some(300));
}

#[tokio::test]
async fn a_backup_without_blobs_is_format_1() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("b");
    let loc = dir_location(&root);
    let log = MemLog::new(10);
    let plain = backup(&log, &dir_location(&tmp.path().join("plain")), false).await;
    assert_eq!((plain.blobs, plain.blob_bytes), (0, 0));
    let at = tmp.path().join("plain").join(&plain.id);
    let json = std::fs::read_to_string(at.join(layout::MANIFEST)).unwrap();
    assert!(json.contains(r#""format": "aiaudit-backup 1""#), "{json}");
    assert!(!json.contains("blobs/"), "{json}");
    assert!(!at.join("blobs").exists());

    // An incremental without blobs of a log with some: format 1 after format 2.
    log.add_with_blob(30);
    let full = backup(&log, &loc, false).await;
    log.add(3);
    let incr = backup(&log, &loc, true).await;
    assert_eq!((full.blobs, incr.blobs), (1, 0));
    assert_eq!(manifest(&root, &full.id).format, layout::FORMAT_2);
    assert_eq!(manifest(&root, &incr.id).format, layout::FORMAT);
    assert_eq!(verify(&loc, None, None, &Quiet).await.unwrap().blobs, 1);
    let data = tmp.path().join("data");
    let r = restore(&loc, None, &data, None, None, &Quiet)
        .await
        .unwrap();
    assert_eq!((r.size, r.blobs), (14, 1));
}

#[tokio::test]
async fn verify_names_a_changed_missing_or_unlisted_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("b");
    let loc = dir_location(&root);
    let log = MemLog::new(5);
    let id = log.add_with_blob(2_000);
    let full = backup(&log, &loc, false).await;
    let path = blob_path(&root, &full.id, &id);
    let name = aiaudit_store::blob_name(&id);
    let good = std::fs::read(&path).unwrap();
    let data = tmp.path().join("data");

    // A flipped byte: the manifest's SHA-256 no longer matches.
    flip_byte(&path, 50);
    let err = format!("{:#}", verify(&loc, None, None, &Quiet).await.unwrap_err());
    assert!(err.contains(&format!("entry 5 lists blob {name}")), "{err}");
    assert!(err.contains(&format!("blobs/{name}: SHA-256")), "{err}");
    // Restore refuses it too, and leaves nothing behind.
    assert!(restore(&loc, None, &data, None, None, &Quiet)
        .await
        .is_err());
    assert!(!data.exists() || std::fs::read_dir(&data).unwrap().next().is_none());

    // Deleted.
    std::fs::remove_file(&path).unwrap();
    let err = format!("{:#}", verify(&loc, None, None, &Quiet).await.unwrap_err());
    assert!(err.contains(&format!("entry 5 lists blob {name}")), "{err}");
    assert!(err.contains(&format!("blobs/{name}: missing")), "{err}");

    // Other bytes with a manifest rewritten to match: not what the entry logs.
    let mut other = good.clone();
    other[50] ^= 1;
    std::fs::write(&path, &other).unwrap();
    let mut m = manifest(&root, &full.id);
    let f = m
        .files
        .iter_mut()
        .find(|f| f.name == layout::blob_name(&id))
        .unwrap();
    f.sha256 = layout::sha256_hex(&other);
    save_manifest(&root, &m);
    let err = format!("{:#}", verify(&loc, None, None, &Quiet).await.unwrap_err());
    assert!(
        err.contains(&format!("not the bytes entry 5 logs for blob {name}")),
        "{err}"
    );

    // Intact again, plus a blob file no entry lists.
    std::fs::write(&path, &good).unwrap();
    let mut m = manifest(&root, &full.id);
    m.files
        .iter_mut()
        .find(|f| f.name == layout::blob_name(&id))
        .unwrap()
        .sha256 = layout::sha256_hex(&good);
    save_manifest(&root, &m);
    assert_eq!(verify(&loc, None, None, &Quiet).await.unwrap().blobs, 1);
    let stray = [0x5a; 32];
    std::fs::write(blob_path(&root, &full.id, &stray), b"stray").unwrap();
    m.files.push(layout::FileEntry {
        name: layout::blob_name(&stray),
        bytes: 5,
        sha256: layout::sha256_hex(b"stray"),
        from: None,
        count: None,
    });
    save_manifest(&root, &m);
    let err = format!("{:#}", verify(&loc, None, None, &Quiet).await.unwrap_err());
    assert!(
        err.contains(&format!(
            "blobs/{}: no entry of this backup lists this blob",
            "5a".repeat(32)
        )),
        "{err}"
    );
}

#[tokio::test]
async fn create_refuses_a_corrupt_or_missing_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let loc = dir_location(&tmp.path().join("b"));
    let log = MemLog::new(5);
    let id = log.add_with_blob(2_000);
    log.add(3);
    let name = aiaudit_store::blob_name(&id);
    log.blobs.lock().unwrap().get_mut(&id).unwrap()[60] ^= 1;
    let err = create(&log, std::slice::from_ref(&loc), false, None, &Quiet)
        .await
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains(&format!("entry 5: blob {name}")), "{err}");
    assert!(err.contains("refusing to back up a corrupt blob"), "{err}");
    assert!(loc.manifests().await.unwrap().is_empty());

    log.blobs.lock().unwrap().clear();
    let err = create(&log, std::slice::from_ref(&loc), false, None, &Quiet)
        .await
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains(&format!("entry 5: reading blob {name}")),
        "{err}"
    );
    assert!(loc.manifests().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_restore_audit_checks_the_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let loc = dir_location(&tmp.path().join("b"));
    let log = MemLog::new(5);
    let id = log.add_with_blob(2_000);
    backup(&log, &loc, false).await;
    let data = tmp.path().join("data");
    restore(&loc, None, &data, None, None, &Quiet)
        .await
        .unwrap();
    let verified = verify(&loc, None, None, &Quiet).await.unwrap();
    crate::restore::audit_dir(&data, &verified, &Quiet).unwrap();

    let name = aiaudit_store::blob_name(&id);
    let path = data.join("blobs").join(&name[..2]).join(&name);
    flip_byte(&path, 70);
    let err = format!(
        "{:#}",
        crate::restore::audit_dir(&data, &verified, &Quiet).unwrap_err()
    );
    assert!(
        err.contains(&format!(
            "at index 5: blob {name} (at /input) is not the bytes"
        )),
        "{err}"
    );
    std::fs::remove_file(&path).unwrap();
    let err = format!(
        "{:#}",
        crate::restore::audit_dir(&data, &verified, &Quiet).unwrap_err()
    );
    assert!(
        err.contains(&format!("at index 5: blob {name} (at /input) is missing")),
        "{err}"
    );
}

#[tokio::test]
async fn a_keyring_of_many_pieces_is_copied_checked_and_restored_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let loc = dir_location(&tmp.path().join("b"));
    let mut log = MemLog::new(300);
    // Three pieces of the copy (4 MiB each) and a bit; every byte differs
    // from its neighbours so a piece out of place shows.
    let big: Vec<u8> = (0..9u64 * 1024 * 1024 + 4321)
        .map(|i| (i % 251) as u8)
        .collect();
    *log.keyring.lock().unwrap() = big.clone();
    log.keys_keep_coming = true;
    let full = backup(&log, &loc, false).await;
    let file = tmp.path().join("b").join(&full.id).join(layout::KEYRING);
    // The keyring as it was when the backup began, not what came after.
    assert_eq!(std::fs::read(&file).unwrap(), big);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let v = verify(&loc, None, None, &Quiet).await.unwrap();
    assert_eq!(v.keyring.as_deref(), Some(full.id.as_str()));

    let data = tmp.path().join("data");
    let r = restore(&loc, None, &data, None, None, &Quiet)
        .await
        .unwrap();
    assert!(r.keyring_written);
    assert_eq!(std::fs::read(data.join("keyring")).unwrap(), big);
    assert!(!data.join(".keyring.tmp").exists());

    // A byte changed deep inside, or the file cut short, fails verification
    // and restore, naming the keyring.
    let saved = std::fs::read(&file).unwrap();
    flip_byte(&file, 6 * 1024 * 1024 + 7);
    for err in [
        verify(&loc, None, None, &Quiet).await.unwrap_err(),
        restore(&loc, None, &tmp.path().join("data2"), None, None, &Quiet)
            .await
            .unwrap_err(),
    ] {
        let msg = format!("{err:#}");
        assert!(msg.contains("keyring") && msg.contains("SHA-256"), "{msg}");
    }
    assert!(!tmp.path().join("data2").join("keyring").exists());
    std::fs::write(&file, &saved[..saved.len() - 1]).unwrap();
    let msg = format!("{:#}", verify(&loc, None, None, &Quiet).await.unwrap_err());
    assert!(msg.contains("keyring") && msg.contains("bytes"), "{msg}");
    std::fs::write(&file, [&saved[..], b"x"].concat()).unwrap();
    let msg = format!("{:#}", verify(&loc, None, None, &Quiet).await.unwrap_err());
    assert!(msg.contains("keyring") && msg.contains("bytes"), "{msg}");
}

#[tokio::test]
async fn a_keyring_that_cannot_be_read_to_its_end_leaves_no_backup_and_no_temp_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("b");
    let loc = dir_location(&root);
    let mut log = MemLog::new(10);
    *log.keyring.lock().unwrap() = vec![7u8; 9 * 1024 * 1024];
    log.keyring_breaks_at = Some(4 * 1024 * 1024);
    let err = create(&log, std::slice::from_ref(&loc), false, None, &Quiet)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("keyring"), "{err:#}");
    assert!(loc.backup_ids().await.unwrap().is_empty());
    // Whatever the backup had written, no piece of a keyring is left.
    let mut left = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            left.push(f.unwrap().file_name().to_string_lossy().into_owned());
        }
    }
    assert!(left.iter().all(|f| !f.contains("keyring")), "{left:?}");
}
