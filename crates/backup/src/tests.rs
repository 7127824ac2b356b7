//! Create, verify and restore against an in-memory log, and the damage
//! verification must catch.

use crate::{create, restore, verify, Location, LogSource, Quiet};
use aiaudit_store::{FsStore, Storage};
use aiaudit_tlog::{
    encode_entry_bundle, record_hash, sign_note, Checkpoint, Signer, TreeBuilder, TILE_WIDTH,
};
use std::path::Path;
use std::sync::Mutex;

const ORIGIN: &str = "backup.test/log";

/// A log in memory, signing its checkpoints like a ledger.
struct MemLog {
    entries: Mutex<Vec<Vec<u8>>>,
    signer: Signer,
    /// Sign a wrong root (a lying or broken log).
    lie: bool,
}

impl MemLog {
    fn new(n: usize) -> MemLog {
        let log = MemLog {
            entries: Mutex::new(Vec::new()),
            signer: Signer::from_seed(ORIGIN, [7; 32]).unwrap(),
            lie: false,
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

    async fn keyring(&self) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(Some(b"wrapped keys".to_vec()))
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
