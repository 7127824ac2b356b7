//! The member index (`keyring.members/`, an LSM tree beside the keyring
//! file): which data subjects have events sealed under each subject key
//! family, so that an erasure can keep every other member's key before it
//! destroys a family (see `crate::family`).
//!
//! A member is noted when the keyring hands out its key, under the lock an
//! erasure takes to retire the family: so every event sealed under a family
//! has its member noted before the family can be destroyed. Members are held
//! in memory and written as one sorted run at a time, with the log size the
//! ledger last said is covered ([`MemberIndex::durable_upto`]). The log is the
//! truth (each entry names its key id and its subject's tag in the clear):
//! after a crash, the ledger notes the entries from that index on again.

use crate::{Error, Result};
use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use std::path::Path;
use std::sync::Mutex;

/// The directory beside the keyring file.
pub const MEMBERS_DIR: &str = "keyring.members";
const KEYSPACE: &str = "members";
/// `F ‖ family record number (u64 BE) ‖ subject tag (32 bytes)` → empty.
const MEMBER: u8 = b'F';
/// `M ‖ name` → u64 BE.
const META: u8 = b'M';
/// Log entries `0..upto` are noted.
const UPTO: &str = "upto";
const VERSION: &str = "version";
/// Layout version: another is rebuilt from the log.
pub const MEMBERS_VERSION: u64 = 1;
/// Members held in memory before they are written as a run: 40 bytes each,
/// so at most about 1.3 MiB; a run per 32,768 new members keeps the tree's
/// level 0 from filling with small tables.
const RUN_MEMBERS: usize = 32_768;
const CACHE_BYTES: u64 = 4 << 20;
const TABLE_BYTES: u64 = 2 << 20;
const LEVEL0_RUNS: u8 = 8;

fn idx_err(e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("keyring member index {MEMBERS_DIR}: {e}"))
}

fn member_key(family: u64, tag: &[u8; 32]) -> [u8; 41] {
    let mut key = [0u8; 41];
    key[0] = MEMBER;
    key[1..9].copy_from_slice(&family.to_be_bytes());
    key[9..].copy_from_slice(tag);
    key
}

fn meta_key(name: &str) -> Vec<u8> {
    let mut key = vec![META];
    key.extend_from_slice(name.as_bytes());
    key
}

#[derive(Default)]
struct Pending {
    members: Vec<(u64, [u8; 32])>,
    /// Entries `0..upto` are noted (in the tree or here).
    upto: u64,
    /// Of which `0..durable` are in the tree.
    durable: u64,
}

pub(crate) struct MemberIndex {
    _db: Database,
    keys: Keyspace,
    pending: Mutex<Pending>,
}

impl MemberIndex {
    /// Opens (creating, mode 0700) the member index in `dir`. An index of
    /// another layout, or unreadable, is made anew (noted again from entry
    /// 0 by the ledger).
    pub(crate) fn open(dir: &Path) -> Result<MemberIndex> {
        let path = dir.join(MEMBERS_DIR);
        let index = match Self::open_at(&path) {
            Ok(index) if index.meta(VERSION)? == Some(MEMBERS_VERSION) => index,
            Ok(index) if index.meta(VERSION)?.is_none() && index.is_empty()? => {
                index.write_meta(VERSION, MEMBERS_VERSION)?;
                index
            }
            outcome => {
                if let Err(e) = &outcome {
                    tracing::warn!(error = %e, "the keyring's member index is unreadable: noting members again from the log");
                }
                drop(outcome);
                std::fs::remove_dir_all(&path)?;
                let index = Self::open_at(&path)?;
                index.write_meta(VERSION, MEMBERS_VERSION)?;
                index
            }
        };
        let upto = index.meta(UPTO)?.unwrap_or(0);
        *index.pending.lock().expect("members lock") = Pending {
            members: Vec::new(),
            upto,
            durable: upto,
        };
        Ok(index)
    }

    fn open_at(path: &Path) -> Result<MemberIndex> {
        crate::create_private_dir(path)?;
        let db = Database::builder(path)
            .cache_size(CACHE_BYTES)
            .worker_threads(1)
            .open()
            .map_err(idx_err)?;
        let keys = db
            .keyspace(KEYSPACE, || {
                use fjall::config::{FilterPolicy, FilterPolicyEntry, PartitioningPolicy};
                KeyspaceCreateOptions::default()
                    // Read by erasures only (a prefix scan, a point read or
                    // two): no Bloom filters to build for every member.
                    .filter_policy(FilterPolicy::all(FilterPolicyEntry::None))
                    .index_block_partitioning_policy(PartitioningPolicy::all(true))
                    // As the keyring index (members arrive at random places
                    // too): small tables, 8 runs before a merge.
                    .compaction_strategy(std::sync::Arc::new(
                        fjall::compaction::Leveled::default()
                            .with_table_target_size(TABLE_BYTES)
                            .with_l0_threshold(LEVEL0_RUNS),
                    ))
            })
            .map_err(idx_err)?;
        Ok(MemberIndex {
            _db: db,
            keys,
            pending: Mutex::new(Pending::default()),
        })
    }

    fn is_empty(&self) -> Result<bool> {
        Ok(self.keys.first_key_value().is_none())
    }

    fn meta(&self, name: &str) -> Result<Option<u64>> {
        match self.keys.get(meta_key(name)).map_err(idx_err)? {
            Some(v) => Ok(Some(u64::from_be_bytes(
                v[..]
                    .try_into()
                    .map_err(|_| idx_err("a counter of the wrong size"))?,
            ))),
            None => Ok(None),
        }
    }

    fn write_meta(&self, name: &str, value: u64) -> Result<()> {
        let mut ingestion = self.keys.start_ingestion().map_err(idx_err)?;
        ingestion
            .write(meta_key(name), value.to_be_bytes().to_vec())
            .map_err(idx_err)?;
        ingestion.finish().map_err(idx_err)
    }

    /// Entries `0..durable_upto` are noted in the tree: where noting starts
    /// again after a restart.
    pub(crate) fn durable_upto(&self) -> u64 {
        self.pending.lock().expect("members lock").durable
    }

    /// Notes `members` (family, subject tag), writing a run once enough
    /// are held.
    pub(crate) fn note(&self, members: impl IntoIterator<Item = (u64, [u8; 32])>) -> Result<()> {
        let mut p = self.pending.lock().expect("members lock");
        p.members.extend(members);
        if p.members.len() >= RUN_MEMBERS {
            self.write(&mut p)?;
        }
        Ok(())
    }

    /// Notes `members` without writing: false (nothing noted) once a run's
    /// worth is held, for the caller to note them with [`MemberIndex::note`]
    /// where it may wait for a write.
    pub(crate) fn note_held(&self, members: impl IntoIterator<Item = (u64, [u8; 32])>) -> bool {
        let mut members = members.into_iter().peekable();
        if members.peek().is_none() {
            return true;
        }
        let mut p = self.pending.lock().expect("members lock");
        if p.members.len() >= RUN_MEMBERS {
            return false;
        }
        p.members.extend(members);
        true
    }

    /// Every entry of the log below `upto` has its member noted (the ledger
    /// says so of its log's size: each of those entries was sealed under a
    /// key handed out, and so noted, before).
    pub(crate) fn cover(&self, upto: u64) {
        let mut p = self.pending.lock().expect("members lock");
        p.upto = p.upto.max(upto);
    }

    /// Writes a run when there is anything a restart would note again.
    pub(crate) fn write_if_behind(&self) -> Result<()> {
        let mut p = self.pending.lock().expect("members lock");
        if p.upto > p.durable || !p.members.is_empty() {
            self.write(&mut p)?;
        }
        Ok(())
    }

    /// Writes what is held as one durable run.
    pub(crate) fn flush(&self) -> Result<()> {
        let mut p = self.pending.lock().expect("members lock");
        self.write(&mut p)
    }

    fn write(&self, p: &mut Pending) -> Result<()> {
        if p.members.is_empty() && p.upto == p.durable {
            return Ok(());
        }
        let mut keys: Vec<[u8; 41]> = p
            .members
            .iter()
            .map(|(family, tag)| member_key(*family, tag))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let mut ingestion = self.keys.start_ingestion().map_err(idx_err)?;
        // `F` sorts before `M`: the run's keys in order.
        for key in keys {
            ingestion.write(&key[..], b"").map_err(idx_err)?;
        }
        ingestion
            .write(meta_key(UPTO), p.upto.to_be_bytes().to_vec())
            .map_err(idx_err)?;
        ingestion.finish().map_err(idx_err)?;
        p.members.clear();
        p.members.shrink_to(RUN_MEMBERS);
        p.durable = p.upto;
        Ok(())
    }

    /// Whether `tag` is a member of `family`.
    pub(crate) fn contains(&self, family: u64, tag: &[u8; 32]) -> Result<bool> {
        {
            let p = self.pending.lock().expect("members lock");
            if p.members.iter().any(|(f, t)| *f == family && t == tag) {
                return Ok(true);
            }
        }
        self.keys
            .contains_key(member_key(family, tag))
            .map_err(idx_err)
    }

    /// Every member of `family`, each once, in tag order.
    pub(crate) fn members(&self, family: u64) -> Result<Vec<[u8; 32]>> {
        let mut prefix = [0u8; 9];
        prefix[0] = MEMBER;
        prefix[1..].copy_from_slice(&family.to_be_bytes());
        // Held through the scan: a write moving held members into the tree
        // between the scan and the look at what is held would hide them
        // from both.
        let p = self.pending.lock().expect("members lock");
        let mut tags: Vec<[u8; 32]> = p
            .members
            .iter()
            .filter(|(f, _)| *f == family)
            .map(|(_, t)| *t)
            .collect();
        for item in self.keys.prefix(prefix) {
            let (key, _) = item.into_inner().map_err(idx_err)?;
            let tag: [u8; 32] = key[9..]
                .try_into()
                .map_err(|_| idx_err("a member key of the wrong size"))?;
            tags.push(tag);
        }
        drop(p);
        tags.sort_unstable();
        tags.dedup();
        Ok(tags)
    }
}

impl Drop for MemberIndex {
    fn drop(&mut self) {
        // Fewer entries to note again at the next start; nothing is lost
        // if this fails (they are noted again from the log).
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "writing the keyring's member index at close");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_found_in_memory_and_after_a_run_and_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let idx = MemberIndex::open(dir.path()).unwrap();
        assert_eq!(idx.durable_upto(), 0);
        idx.note([(3, [1; 32]), (3, [2; 32]), (4, [1; 32])])
            .unwrap();
        idx.cover(10);
        assert_eq!(idx.members(3).unwrap(), vec![[1; 32], [2; 32]]);
        assert!(idx.contains(4, &[1; 32]).unwrap());
        assert!(!idx.contains(4, &[2; 32]).unwrap());
        assert_eq!(idx.durable_upto(), 0);
        idx.flush().unwrap();
        assert_eq!(idx.durable_upto(), 10);
        idx.note([(3, [2; 32]), (3, [0; 32])]).unwrap();
        idx.cover(12);
        // Once each, from the tree and memory together.
        assert_eq!(idx.members(3).unwrap(), vec![[0; 32], [1; 32], [2; 32]]);
        // A crash: what was only in memory is gone, noted again from entry 10.
        {
            let mut p = idx.pending.lock().unwrap();
            p.members.clear();
            p.upto = p.durable;
        }
        drop(idx);
        let idx = MemberIndex::open(dir.path()).unwrap();
        assert_eq!(idx.durable_upto(), 10);
        assert_eq!(idx.members(3).unwrap(), vec![[1; 32], [2; 32]]);
        assert_eq!(idx.members(5).unwrap(), Vec::<[u8; 32]>::new());
    }

    #[test]
    fn a_write_never_hides_held_members_from_a_reader() {
        let dir = tempfile::tempdir().unwrap();
        let idx = std::sync::Arc::new(MemberIndex::open(dir.path()).unwrap());
        let writer = {
            let idx = idx.clone();
            std::thread::spawn(move || {
                for i in 0..200u8 {
                    idx.note([(7, [i; 32])]).unwrap();
                    idx.flush().unwrap();
                }
            })
        };
        // Every reader sees at least what was noted before it began.
        let mut seen = 0;
        while !writer.is_finished() {
            let now = idx.members(7).unwrap().len();
            assert!(now >= seen, "{now} members after {seen}");
            seen = now;
        }
        writer.join().unwrap();
        assert_eq!(idx.members(7).unwrap().len(), 200);
    }

    #[test]
    fn an_index_of_another_layout_is_made_anew() {
        let dir = tempfile::tempdir().unwrap();
        let idx = MemberIndex::open(dir.path()).unwrap();
        idx.note([(3, [1; 32])]).unwrap();
        idx.cover(5);
        idx.flush().unwrap();
        idx.write_meta(VERSION, MEMBERS_VERSION + 1).unwrap();
        drop(idx);
        let idx = MemberIndex::open(dir.path()).unwrap();
        assert_eq!(idx.durable_upto(), 0);
        assert!(idx.members(3).unwrap().is_empty());
    }
}
