//! The keyring: data keys per tenant and subject, wrapped by the master key,
//! in 256-byte records (layout in docs/format.md) kept by a [`RecordStore`]:
//! the keyring file, or a table the nodes of a shared log all use. A
//! record's number is the key id entries name. New records are appended with
//! one durable write per batch; a record is rewritten in place to re-wrap
//! (master key rotation) or destroy (erasure) its key.

use crate::master::{KeyProvider, Wrapped};
use crate::records::{FileRecords, Record, RecordStore, RECORD_LEN as RECORD};
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

const MAGIC: &[u8; 4] = b"AKR1";
const LIVE: u8 = 1;
const DESTROYED: u8 = 2;
const TENANT_KEY: u8 = 1;
const SUBJECT_KEY: u8 = 2;
const SALT: u8 = 3;
const MAX_TENANT: usize = 64;
/// Prefix of HMAC values (sensitive fields, subject tags).
pub const HMAC_PREFIX: &str = "hmac-sha256:";

#[derive(Debug, Clone)]
struct Meta {
    kind: u8,
    live: bool,
    created: u64,
    tenant: String,
    tag: [u8; 32],
    master: [u8; 8],
}

#[derive(Default)]
struct State {
    records: Vec<Meta>,
    /// Unwrapped secrets of live records (data keys and salts), by record number.
    secrets: HashMap<u64, [u8; 32]>,
    salts: HashMap<String, u64>,
    tenant_current: HashMap<String, u64>,
    subject_current: HashMap<(String, [u8; 32]), u64>,
    /// Where [`RecordStore::changes`] continues from.
    mark: u64,
}

/// The key an event is sealed under, and its subject's tag if it names one.
#[derive(Debug, Clone)]
pub struct KeyChoice {
    pub key_id: u64,
    pub key: [u8; 32],
    pub subject_tag: Option<String>,
}

/// Counts for `/v1/info` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyringStats {
    pub tenant_keys: usize,
    pub subject_keys: usize,
    pub destroyed_keys: usize,
    pub tenants: usize,
}

pub struct Keyring {
    records: Box<dyn RecordStore>,
    provider: Arc<dyn KeyProvider>,
    state: RwLock<State>,
    /// Data keys older than this are replaced on their next use, so a key
    /// seals events of a bounded period and retention can destroy it whole.
    max_key_age_secs: std::sync::atomic::AtomicU64,
}

/// How many times an append may lose the race to another node before
/// giving up (each loss means that node's keys are pulled and reused).
const MAX_APPEND_RACES: usize = 16;

/// Default data key lifetime before it is replaced on use.
pub const DEFAULT_MAX_KEY_AGE_SECS: u64 = 30 * 86_400;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the wrap binds a data key to: its record number and identity.
fn aad(number: u64, m: &Meta) -> Vec<u8> {
    let mut a = Vec::with_capacity(128);
    a.extend_from_slice(b"aiaudit keyring record ");
    a.extend_from_slice(&number.to_be_bytes());
    a.push(m.kind);
    a.extend_from_slice(&m.created.to_be_bytes());
    a.push(m.tenant.len() as u8);
    a.extend_from_slice(m.tenant.as_bytes());
    a.extend_from_slice(&m.tag);
    a
}

fn encode(m: &Meta, wrapped: Option<&Wrapped>) -> Record {
    let mut r = [0u8; RECORD];
    r[0..4].copy_from_slice(MAGIC);
    r[4] = if m.live { LIVE } else { DESTROYED };
    r[5] = m.kind;
    r[8..16].copy_from_slice(&m.created.to_be_bytes());
    r[16..24].copy_from_slice(&m.master);
    r[24] = m.tenant.len() as u8;
    r[25..25 + m.tenant.len()].copy_from_slice(m.tenant.as_bytes());
    r[89..121].copy_from_slice(&m.tag);
    if let Some(w) = wrapped {
        r[121..145].copy_from_slice(&w.nonce);
        r[145..193].copy_from_slice(&w.ct);
    }
    let crc = crc32fast::hash(&r[..252]);
    r[252..].copy_from_slice(&crc.to_be_bytes());
    r
}

fn decode(r: &[u8]) -> Option<(Meta, Wrapped)> {
    if &r[0..4] != MAGIC || crc32fast::hash(&r[..252]).to_be_bytes() != r[252..256] {
        return None;
    }
    let tenant_len = r[24] as usize;
    if tenant_len > MAX_TENANT || !matches!(r[4], LIVE | DESTROYED) {
        return None;
    }
    let meta = Meta {
        kind: r[5],
        live: r[4] == LIVE,
        created: u64::from_be_bytes(r[8..16].try_into().ok()?),
        master: r[16..24].try_into().ok()?,
        tenant: String::from_utf8(r[25..25 + tenant_len].to_vec()).ok()?,
        tag: r[89..121].try_into().ok()?,
    };
    let wrapped = Wrapped {
        master: meta.master,
        nonce: r[121..145].try_into().ok()?,
        ct: r[145..193].try_into().ok()?,
    };
    Some((meta, wrapped))
}

fn hmac_raw(salt: &[u8; 32], value: &[u8]) -> [u8; 32] {
    let key = ::ring::hmac::Key::new(::ring::hmac::HMAC_SHA256, salt);
    ::ring::hmac::sign(&key, value)
        .as_ref()
        .try_into()
        .expect("HMAC-SHA256 is 32 bytes")
}

fn tag_string(tag: &[u8; 32]) -> String {
    format!("{HMAC_PREFIX}{}", hex::encode(tag))
}

fn random32() -> Result<[u8; 32]> {
    let mut k = [0u8; 32];
    getrandom::getrandom(&mut k).map_err(|e| Error::Key(format!("no randomness: {e}")))?;
    Ok(k)
}

impl Keyring {
    /// Opens (creating if missing, mode 0600) the keyring file in `dir`,
    /// unwraps every live key, and finishes a master key rotation cut short.
    pub fn open(dir: &Path, provider: Arc<dyn KeyProvider>) -> Result<Keyring> {
        let records = FileRecords::open(dir, |r| decode(r).is_some())?;
        Keyring::open_with(Box::new(records), provider)
    }

    /// Opens the keyring kept in `records` (the keyring file, or a store the
    /// nodes of a shared log all use).
    pub fn open_with(
        records: Box<dyn RecordStore>,
        provider: Arc<dyn KeyProvider>,
    ) -> Result<Keyring> {
        let ring = Keyring {
            records,
            provider,
            state: RwLock::new(State::default()),
            max_key_age_secs: std::sync::atomic::AtomicU64::new(DEFAULT_MAX_KEY_AGE_SECS),
        };
        {
            let mut state = ring.state.write().expect("keyring lock");
            ring.reload(&mut state)?;
        }
        ring.rewrap_all()?;
        Ok(ring)
    }

    /// Where the records are kept, for messages.
    pub fn describe(&self) -> String {
        self.records.describe()
    }

    /// Whether other nodes share these keys.
    pub fn shared(&self) -> bool {
        self.records.shared()
    }

    /// Reads every record again and unwraps the live ones.
    fn reload(&self, state: &mut State) -> Result<()> {
        let (records, mark) = self.records.load()?;
        let mut fresh = State {
            mark,
            ..State::default()
        };
        for (number, r) in records.iter().enumerate() {
            self.add_record(&mut fresh, number as u64, r)?;
        }
        *state = fresh;
        Ok(())
    }

    fn add_record(&self, state: &mut State, number: u64, r: &Record) -> Result<()> {
        let (meta, wrapped) = decode(r).ok_or_else(|| {
            Error::Corrupt(format!(
                "record {number} of {} fails its checksum",
                self.records.describe()
            ))
        })?;
        if meta.live {
            let secret = self.provider.unwrap(&wrapped, &aad(number, &meta))?;
            state.secrets.insert(number, secret);
        }
        state.index(number, &meta);
        state.records.push(meta);
        Ok(())
    }

    /// Takes in what other nodes appended or changed since the last pull.
    fn pull(&self, state: &mut State) -> Result<()> {
        if !self.records.shared() {
            return Ok(());
        }
        let (mut changes, mark) = self.records.changes(state.mark)?;
        changes.sort_by_key(|(n, _)| *n);
        for (number, r) in &changes {
            let known = state.records.len() as u64;
            if *number == known {
                self.add_record(state, *number, r)?;
            } else if *number > known {
                // Never expected (appends are contiguous); start over.
                return self.reload(state);
            } else {
                let (meta, _) = decode(r).ok_or_else(|| {
                    Error::Corrupt(format!(
                        "record {number} of {} fails its checksum",
                        self.records.describe()
                    ))
                })?;
                let n = *number as usize;
                if state.records[n].live && !meta.live {
                    state.destroyed(*number);
                }
                state.records[n].master = meta.master;
            }
        }
        state.mark = mark;
        Ok(())
    }

    /// Takes in keys other nodes of a shared log created or destroyed
    /// (a no-op on a keyring file). Servers call it every second or so.
    pub fn refresh(&self) -> Result<()> {
        if !self.records.shared() {
            return Ok(());
        }
        let mut state = self.state.write().expect("keyring lock");
        self.pull(&mut state)
    }

    /// Plans new records with `plan` and appends them durably. When another
    /// node appended first, its records are pulled and the plan runs again,
    /// so that nodes reuse each other's tenant keys and salts.
    fn add_durably<T>(
        &self,
        plan: impl Fn(&Keyring, &mut State, &mut Vec<Record>) -> Result<T>,
    ) -> Result<T> {
        for _ in 0..MAX_APPEND_RACES {
            let mut state = self.state.write().expect("keyring lock");
            self.pull(&mut state)?;
            let before = state.records.len();
            let mut new = Vec::new();
            let planned = plan(self, &mut state, &mut new);
            let appended = match &planned {
                Ok(_) if new.is_empty() => Ok(true),
                Ok(_) => self.records.append(before as u64, &new),
                Err(_) => Ok(false),
            };
            match appended {
                Ok(true) => return planned,
                Ok(false) => {
                    // Nothing may be sealed under a key that is not durable.
                    state.forget_from(before);
                    planned?;
                }
                Err(e) => {
                    state.forget_from(before);
                    return Err(e);
                }
            }
        }
        Err(Error::Key(format!(
            "could not add keys to {}: other nodes kept adding first",
            self.records.describe()
        )))
    }

    /// Picks (creating as needed, durably, before returning) the data key for
    /// each (tenant, subject): the subject's own key when there is a subject,
    /// else the tenant's.
    pub fn choose(&self, wants: &[(&str, Option<&str>)]) -> Result<Vec<KeyChoice>> {
        if let Some(found) = self.lookup(wants) {
            return Ok(found);
        }
        let fresh = self.fresh_after();
        self.add_durably(|ring, state, new| {
            for (tenant, _) in wants {
                if !state.salts.contains_key(*tenant) {
                    ring.create(state, new, SALT, tenant, [0; 32])?;
                }
            }
            for (tenant, subject) in wants {
                match subject {
                    None => {
                        if state.current(tenant, None, fresh).is_none() {
                            ring.create(state, new, TENANT_KEY, tenant, [0; 32])?;
                        }
                    }
                    Some(s) => {
                        let tag = state.tag(tenant, s).expect("salt created above");
                        if state.current(tenant, Some(tag), fresh).is_none() {
                            ring.create(state, new, SUBJECT_KEY, tenant, tag)?;
                        }
                    }
                }
            }
            Ok(state.choose(wants, fresh).expect("every key exists now"))
        })
    }

    /// Like [`Keyring::choose`] when every key exists already; never writes.
    pub fn lookup(&self, wants: &[(&str, Option<&str>)]) -> Option<Vec<KeyChoice>> {
        let fresh = self.fresh_after();
        self.state
            .read()
            .expect("keyring lock")
            .choose(wants, fresh)
    }

    /// Sets how old a data key may get before its next use replaces it.
    pub fn set_max_key_age(&self, age: std::time::Duration) {
        self.max_key_age_secs
            .store(age.as_secs(), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn max_key_age(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.max_key_age_secs
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Keys created before this (unix seconds) are too old to seal with.
    fn fresh_after(&self) -> u64 {
        now().saturating_sub(
            self.max_key_age_secs
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Every tenant the keyring knows.
    pub fn tenants(&self) -> Vec<String> {
        let mut t: Vec<String> = self
            .state
            .read()
            .expect("keyring lock")
            .salts
            .keys()
            .cloned()
            .collect();
        t.sort();
        t
    }

    /// Retention: destroys every data key (tenant and subject keys, not the
    /// salt) of `tenant` created before `created_before` (unix seconds).
    /// Returns how many were destroyed.
    pub fn expire(&self, tenant: &str, created_before: u64) -> Result<usize> {
        let mut state = self.state.write().expect("keyring lock");
        self.pull(&mut state)?;
        self.destroy_where(&mut state, |m| {
            m.kind != SALT && m.tenant == tenant && m.created < created_before
        })
    }

    /// A data key by id, if it exists and was not destroyed. An id this node
    /// has not seen yet (another node of a shared log made it) is pulled.
    pub fn key(&self, id: u64) -> Option<[u8; 32]> {
        let (found, known) = {
            let state = self.state.read().expect("keyring lock");
            (state.key(id), state.records.len() as u64)
        };
        if found.is_some() || id < known || !self.records.shared() {
            return found;
        }
        if let Err(e) = self.refresh() {
            tracing::warn!(error = %e, key_id = id, "pulling keyring records");
        }
        self.state.read().expect("keyring lock").key(id)
    }

    /// Whether key `id` existed and was destroyed (erased content).
    pub fn destroyed(&self, id: u64) -> bool {
        let state = self.state.read().expect("keyring lock");
        state.records.get(id as usize).is_some_and(|m| !m.live)
    }

    /// HMAC-SHA256 of `value` under the tenant's salt, as `hmac-sha256:<hex>`
    /// (creates the salt on first use).
    pub fn hmac(&self, tenant: &str, value: &[u8]) -> Result<String> {
        let salt = {
            let state = self.state.read().expect("keyring lock");
            state.salt(tenant)
        };
        let salt = match salt {
            Some(s) => s,
            None => {
                self.choose(&[(tenant, None)])?;
                self.state
                    .read()
                    .expect("keyring lock")
                    .salt(tenant)
                    .expect("salt just created")
            }
        };
        Ok(tag_string(&hmac_raw(&salt, value)))
    }

    /// Like [`Keyring::hmac`], but never creates the salt: None for a tenant
    /// that has none yet (so nothing of it was ever tagged).
    pub fn hmac_if_salted(&self, tenant: &str, value: &[u8]) -> Option<String> {
        let salt = self.state.read().expect("keyring lock").salt(tenant)?;
        Some(tag_string(&hmac_raw(&salt, value)))
    }

    /// Crypto-shredding: destroys every key (current and rotated) of the
    /// subject. Returns how many keys were destroyed and the subject's tag.
    pub fn erase(&self, tenant: &str, subject: &str) -> Result<(usize, Option<String>)> {
        let mut state = self.state.write().expect("keyring lock");
        // Keys other nodes made for this subject are destroyed too.
        self.pull(&mut state)?;
        let Some(tag) = state.tag(tenant, subject) else {
            return Ok((0, None));
        };
        let destroyed = self.destroy_where(&mut state, |m| {
            m.kind == SUBJECT_KEY && m.tenant == tenant && m.tag == tag
        })?;
        Ok((destroyed, Some(tag_string(&tag))))
    }

    /// Crypto-shredding: every live record `doomed` picks gets its wrapped
    /// key overwritten with zeros in place, durably, then is forgotten here.
    fn destroy_where(&self, state: &mut State, doomed: impl Fn(&Meta) -> bool) -> Result<usize> {
        let mut writes = Vec::new();
        for (number, m) in state.records.iter().enumerate() {
            if m.live && doomed(m) {
                let mut gone = m.clone();
                gone.live = false;
                writes.push((number as u64, encode(&gone, None)));
            }
        }
        self.records.overwrite(&writes)?;
        for (number, _) in &writes {
            state.destroyed(*number);
        }
        Ok(writes.len())
    }

    /// New current data keys for every tenant and subject; old ones keep
    /// decrypting what they sealed. Salts never rotate. Returns the count.
    pub fn rotate(&self) -> Result<usize> {
        self.add_durably(|ring, state, new| {
            let mut todo: Vec<(u8, String, [u8; 32])> = state
                .tenant_current
                .keys()
                .map(|t| (TENANT_KEY, t.clone(), [0; 32]))
                .collect();
            todo.extend(
                state
                    .subject_current
                    .keys()
                    .map(|(t, tag)| (SUBJECT_KEY, t.clone(), *tag)),
            );
            todo.sort();
            for (kind, tenant, tag) in &todo {
                ring.create(state, new, *kind, tenant, *tag)?;
            }
            Ok(todo.len())
        })
    }

    /// Master key rotation: a new master key, then every live record
    /// re-wrapped under it in place. Returns how many were re-wrapped.
    pub fn rotate_master(&self) -> Result<usize> {
        if self.records.shared() {
            // The other nodes would not hold the new master key.
            return Err(Error::Unsupported(
                "a keyring shared by several nodes is re-wrapped offline: see docs/scaling.md (master key rotation)".into(),
            ));
        }
        self.provider.begin_rotation()?;
        self.rewrap_all()
    }

    /// Re-wraps every record not under the current master key, then lets the
    /// provider retire the old one.
    fn rewrap_all(&self) -> Result<usize> {
        let mut state = self.state.write().expect("keyring lock");
        let current = self.provider.current_id();
        let mut writes = Vec::new();
        for number in 0..state.records.len() {
            let n = number as u64;
            let m = &state.records[number];
            if !m.live || m.master == current {
                continue;
            }
            let wrapped = self.provider.wrap(&state.secrets[&n], &aad(n, m))?;
            let mut rewrapped = m.clone();
            rewrapped.master = wrapped.master;
            writes.push((n, encode(&rewrapped, Some(&wrapped)), rewrapped));
        }
        let records: Vec<(u64, Record)> = writes.iter().map(|(n, r, _)| (*n, *r)).collect();
        self.records.overwrite(&records)?;
        let count = writes.len();
        for (n, _, m) in writes {
            state.records[n as usize] = m;
        }
        drop(state);
        self.provider.finish_rotation()?;
        Ok(count)
    }

    pub fn stats(&self) -> KeyringStats {
        let state = self.state.read().expect("keyring lock");
        let mut s = KeyringStats {
            tenants: state.salts.len(),
            ..Default::default()
        };
        for m in &state.records {
            match (m.live, m.kind) {
                (false, _) => s.destroyed_keys += 1,
                (true, TENANT_KEY) => s.tenant_keys += 1,
                (true, SUBJECT_KEY) => s.subject_keys += 1,
                _ => {}
            }
        }
        s
    }

    /// The keyring in the keyring file format (wrapped keys only: useless
    /// without the master key), for backups.
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let _state = self.state.read().expect("keyring lock");
        self.records.snapshot()
    }

    /// Makes a new live record (not yet written: see [`Keyring::add_durably`]).
    fn create(
        &self,
        state: &mut State,
        new: &mut Vec<Record>,
        kind: u8,
        tenant: &str,
        tag: [u8; 32],
    ) -> Result<()> {
        if tenant.is_empty() || tenant.len() > MAX_TENANT {
            return Err(Error::Invalid(format!(
                "tenant {tenant:?} must be 1 to {MAX_TENANT} bytes"
            )));
        }
        let number = state.records.len() as u64;
        let mut meta = Meta {
            kind,
            live: true,
            created: now(),
            tenant: tenant.to_string(),
            tag,
            master: [0; 8],
        };
        let secret = random32()?;
        let wrapped = self.provider.wrap(&secret, &aad(number, &meta))?;
        meta.master = wrapped.master;
        new.push(encode(&meta, Some(&wrapped)));
        state.secrets.insert(number, secret);
        state.index(number, &meta);
        state.records.push(meta);
        Ok(())
    }
}

/// Whether `r` is a well-formed keyring record (its checksum holds).
pub fn valid_record(r: &Record) -> bool {
    decode(r).is_some()
}

impl State {
    fn key(&self, id: u64) -> Option<[u8; 32]> {
        let meta = self.records.get(id as usize)?;
        if meta.kind == SALT {
            return None;
        }
        self.secrets.get(&id).copied()
    }

    /// Record `number` was destroyed: its secret is forgotten, and it is no
    /// longer anyone's current key.
    fn destroyed(&mut self, number: u64) {
        let Some(m) = self.records.get_mut(number as usize) else {
            return;
        };
        m.live = false;
        self.secrets.remove(&number);
        self.tenant_current.retain(|_, n| *n != number);
        self.subject_current.retain(|_, n| *n != number);
    }

    /// Drops records `from..` (never written) and rebuilds the lookups.
    fn forget_from(&mut self, from: usize) {
        for n in from..self.records.len() {
            self.secrets.remove(&(n as u64));
        }
        self.records.truncate(from);
        self.salts.clear();
        self.tenant_current.clear();
        self.subject_current.clear();
        let records = std::mem::take(&mut self.records);
        for (n, m) in records.iter().enumerate() {
            self.index(n as u64, m);
        }
        self.records = records;
    }

    fn index(&mut self, number: u64, m: &Meta) {
        if !m.live {
            return;
        }
        match m.kind {
            SALT => {
                self.salts.insert(m.tenant.clone(), number);
            }
            TENANT_KEY => {
                self.tenant_current.insert(m.tenant.clone(), number);
            }
            SUBJECT_KEY => {
                self.subject_current
                    .insert((m.tenant.clone(), m.tag), number);
            }
            _ => {}
        }
    }

    fn salt(&self, tenant: &str) -> Option<[u8; 32]> {
        self.salts
            .get(tenant)
            .and_then(|n| self.secrets.get(n))
            .copied()
    }

    fn tag(&self, tenant: &str, subject: &str) -> Option<[u8; 32]> {
        Some(hmac_raw(&self.salt(tenant)?, subject.as_bytes()))
    }

    /// The current key of a tenant (or of a subject, by tag), if it is
    /// live and was created at or after `fresh_after`.
    fn current(&self, tenant: &str, tag: Option<[u8; 32]>, fresh_after: u64) -> Option<u64> {
        let n = match tag {
            None => *self.tenant_current.get(tenant)?,
            Some(tag) => *self.subject_current.get(&(tenant.to_string(), tag))?,
        };
        let m = &self.records[n as usize];
        (m.live && m.created >= fresh_after).then_some(n)
    }

    fn choose(&self, wants: &[(&str, Option<&str>)], fresh_after: u64) -> Option<Vec<KeyChoice>> {
        wants
            .iter()
            .map(|(tenant, subject)| {
                let (number, tag) = match subject {
                    None => (self.current(tenant, None, fresh_after)?, None),
                    Some(s) => {
                        let tag = self.tag(tenant, s)?;
                        (
                            self.current(tenant, Some(tag), fresh_after)?,
                            Some(tag_string(&tag)),
                        )
                    }
                };
                Some(KeyChoice {
                    key_id: number,
                    key: *self.secrets.get(&number)?,
                    subject_tag: tag,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::{LocalMasterKey, MasterKeySource};
    use crate::records::{offset, HEADER_LEN, KEYRING_FILE};
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn open(dir: &Path) -> Keyring {
        let (m, _) =
            LocalMasterKey::load(MasterKeySource::File(dir.join("master.key")), true).unwrap();
        Keyring::open(dir, Arc::new(m)).unwrap()
    }

    #[test]
    fn keys_are_per_tenant_and_subject_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let ring = open(dir.path());
        let c = ring
            .choose(&[("a", None), ("a", Some("alice")), ("b", None), ("a", None)])
            .unwrap();
        assert_eq!(c[0].key_id, c[3].key_id);
        assert_ne!(c[0].key_id, c[1].key_id);
        assert_ne!(c[0].key, c[2].key);
        assert!(c[1].subject_tag.as_ref().unwrap().starts_with(HMAC_PREFIX));
        let mode = fs::metadata(dir.path().join(KEYRING_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(ring);
        let again = open(dir.path());
        let d = again.choose(&[("a", Some("alice")), ("b", None)]).unwrap();
        assert_eq!((d[0].key_id, d[0].key), (c[1].key_id, c[1].key));
        assert_eq!(d[1].key, c[2].key);
        assert_eq!(again.key(c[0].key_id), Some(c[0].key));
    }

    #[test]
    fn erasure_destroys_the_subject_keys_on_disk_too() {
        let dir = tempfile::tempdir().unwrap();
        let ring = open(dir.path());
        let first = ring.choose(&[("a", Some("alice"))]).unwrap()[0].clone();
        ring.rotate().unwrap();
        let second = ring.choose(&[("a", Some("alice"))]).unwrap()[0].clone();
        assert_ne!(first.key_id, second.key_id);
        let bob = ring.choose(&[("a", Some("bob"))]).unwrap()[0].clone();
        let before = fs::read(dir.path().join(KEYRING_FILE)).unwrap();
        let (n, tag) = ring.erase("a", "alice").unwrap();
        assert_eq!(n, 2);
        assert_eq!(tag, first.subject_tag);
        assert_eq!(ring.key(first.key_id), None);
        assert!(ring.destroyed(second.key_id));
        assert_eq!(ring.key(bob.key_id), Some(bob.key));
        let after = fs::read(dir.path().join(KEYRING_FILE)).unwrap();
        assert_eq!(before.len(), after.len());
        let r = offset(first.key_id) as usize;
        assert_ne!(before[r + 121..r + 193], after[r + 121..r + 193]);
        assert!(after[r + 121..r + 193].iter().all(|&b| b == 0));
        drop(ring);
        let again = open(dir.path());
        assert_eq!(again.key(second.key_id), None);
        // New events about the subject get a fresh key.
        let fresh = again.choose(&[("a", Some("alice"))]).unwrap()[0].clone();
        assert!(fresh.key_id > bob.key_id);
        assert_eq!(again.stats().destroyed_keys, 2);
    }

    #[test]
    fn master_rotation_rewraps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let ring = open(dir.path());
        let c = ring.choose(&[("a", None), ("a", Some("s"))]).unwrap();
        let old_master = fs::read(dir.path().join("master.key")).unwrap();
        assert_eq!(ring.rotate_master().unwrap(), 3); // salt + two keys
        assert_ne!(fs::read(dir.path().join("master.key")).unwrap(), old_master);
        drop(ring);
        let again = open(dir.path());
        assert_eq!(again.key(c[1].key_id), Some(c[1].key));
        assert_eq!(
            again.hmac("a", b"x").unwrap(),
            again.hmac("a", b"x").unwrap()
        );
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_a_damaged_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ring = open(dir.path());
        ring.choose(&[("a", None), ("b", None)]).unwrap();
        let path = dir.path().join(KEYRING_FILE);
        drop(ring);
        let full = fs::read(&path).unwrap();
        fs::write(&path, &full[..full.len() - 10]).unwrap();
        let ring = open(dir.path());
        assert_eq!(ring.stats().tenant_keys, 1);
        drop(ring);
        let mut bad = full.clone();
        bad[HEADER_LEN as usize + 30] ^= 1;
        fs::write(&path, &bad).unwrap();
        let (m, _) =
            LocalMasterKey::load(MasterKeySource::File(dir.path().join("master.key")), false)
                .unwrap();
        assert!(matches!(
            Keyring::open(dir.path(), Arc::new(m)),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn old_keys_are_replaced_on_use_and_retention_destroys_them() {
        let dir = tempfile::tempdir().unwrap();
        let ring = open(dir.path());
        let first = ring.choose(&[("a", None), ("a", Some("s"))]).unwrap();
        let other = ring.choose(&[("b", None)]).unwrap()[0].clone();
        // Young keys are reused.
        assert_eq!(
            ring.choose(&[("a", None)]).unwrap()[0].key_id,
            first[0].key_id
        );
        ring.set_max_key_age(std::time::Duration::ZERO);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let second = ring.choose(&[("a", None), ("a", Some("s"))]).unwrap();
        assert_ne!(
            second[0].key_id, first[0].key_id,
            "an old key is replaced on use"
        );
        assert_ne!(second[1].key_id, first[1].key_id);
        // Expiry destroys the old generation of tenant a only.
        let cutoff = second
            .iter()
            .map(|c| ring.state.read().unwrap().records[c.key_id as usize].created)
            .min()
            .unwrap();
        assert_eq!(ring.expire("a", cutoff).unwrap(), 2);
        assert_eq!(ring.key(first[0].key_id), None);
        assert_eq!(ring.key(first[1].key_id), None);
        assert_eq!(ring.key(second[0].key_id), Some(second[0].key));
        assert_eq!(ring.key(other.key_id), Some(other.key));
        assert_eq!(ring.tenants(), vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn hmac_is_per_tenant_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let ring = open(dir.path());
        assert_eq!(ring.hmac_if_salted("a", b"alice@example.com"), None);
        let a = ring.hmac("a", b"alice@example.com").unwrap();
        assert_eq!(a, ring.hmac("a", b"alice@example.com").unwrap());
        assert_eq!(
            ring.hmac_if_salted("a", b"alice@example.com"),
            Some(a.clone())
        );
        assert_ne!(a, ring.hmac("b", b"alice@example.com").unwrap());
        let tag = ring.choose(&[("a", Some("alice@example.com"))]).unwrap()[0]
            .subject_tag
            .clone();
        assert_eq!(tag, Some(a));
    }

    /// A store several keyrings share, like the PostgreSQL table: records
    /// with the version of their last write.
    #[derive(Default)]
    struct SharedRecords {
        rows: std::sync::Mutex<(Vec<(Record, u64)>, u64)>,
    }

    impl RecordStore for Arc<SharedRecords> {
        fn load(&self) -> Result<(Vec<Record>, u64)> {
            let rows = self.rows.lock().unwrap();
            Ok((rows.0.iter().map(|(r, _)| *r).collect(), rows.1))
        }
        fn append(&self, at: u64, records: &[Record]) -> Result<bool> {
            let mut rows = self.rows.lock().unwrap();
            if rows.0.len() as u64 != at {
                return Ok(false);
            }
            for r in records {
                rows.1 += 1;
                let v = rows.1;
                rows.0.push((*r, v));
            }
            Ok(true)
        }
        fn overwrite(&self, records: &[(u64, Record)]) -> Result<()> {
            let mut rows = self.rows.lock().unwrap();
            for (n, r) in records {
                rows.1 += 1;
                let v = rows.1;
                rows.0[*n as usize] = (*r, v);
            }
            Ok(())
        }
        fn changes(&self, mark: u64) -> Result<(Vec<(u64, Record)>, u64)> {
            let rows = self.rows.lock().unwrap();
            let changed = rows
                .0
                .iter()
                .enumerate()
                .filter(|(_, (_, v))| *v > mark)
                .map(|(n, (r, _))| (n as u64, *r))
                .collect();
            Ok((changed, rows.1))
        }
        fn shared(&self) -> bool {
            true
        }
        fn describe(&self) -> String {
            "the shared test store".into()
        }
    }

    fn two_nodes() -> (tempfile::TempDir, Arc<SharedRecords>, Keyring, Keyring) {
        let dir = tempfile::tempdir().unwrap();
        let (m, _) =
            LocalMasterKey::load(MasterKeySource::File(dir.path().join("master.key")), true)
                .unwrap();
        let m: Arc<dyn KeyProvider> = Arc::new(m);
        let shared = Arc::new(SharedRecords::default());
        let a = Keyring::open_with(Box::new(shared.clone()), m.clone()).unwrap();
        let b = Keyring::open_with(Box::new(shared.clone()), m).unwrap();
        (dir, shared, a, b)
    }

    #[test]
    fn nodes_sharing_records_agree_on_salts_and_keys() {
        let (_dir, shared, a, b) = two_nodes();
        let from_a = a.choose(&[("t", None), ("t", Some("alice"))]).unwrap();
        // b has not pulled yet: it must find a's salt and keys, not make its own.
        let from_b = b.choose(&[("t", None), ("t", Some("alice"))]).unwrap();
        assert_eq!(from_a[0].key_id, from_b[0].key_id);
        assert_eq!(from_a[1].key, from_b[1].key);
        assert_eq!(from_a[1].subject_tag, from_b[1].subject_tag);
        assert_eq!(a.hmac("t", b"x").unwrap(), b.hmac("t", b"x").unwrap());
        assert_eq!(shared.rows.lock().unwrap().0.len(), 3, "one salt, two keys");
        // A key b makes later is opened by a on first sight.
        let later = b.choose(&[("u", None)]).unwrap()[0].clone();
        assert_eq!(a.key(later.key_id), Some(later.key));
        assert_eq!(a.key(later.key_id + 100), None);
    }

    #[test]
    fn a_node_that_loses_the_race_renumbers_its_keys() {
        let (_dir, shared, a, b) = two_nodes();
        a.choose(&[("x", None)]).unwrap();
        b.refresh().unwrap();
        // Both plan record 2 next; b appends first, a must not clobber it.
        let by_b_meanwhile = {
            let mut state = a.state.write().unwrap();
            let before = state.records.len();
            let mut new = Vec::new();
            a.create(&mut state, &mut new, TENANT_KEY, "y", [0; 32])
                .unwrap();
            let by_b = b.choose(&[("z", None)]).unwrap();
            assert!(!a.records.append(before as u64, &new).unwrap());
            state.forget_from(before);
            by_b
        };
        let y = a.choose(&[("y", None)]).unwrap()[0].clone();
        assert!(y.key_id > by_b_meanwhile[0].key_id);
        let rows = shared.rows.lock().unwrap().0.len() as u64;
        assert_eq!(y.key_id + 1, rows, "a's key went after b's");
        assert_eq!(a.key(by_b_meanwhile[0].key_id), Some(by_b_meanwhile[0].key));
        assert_eq!(b.key(y.key_id), Some(y.key));
    }

    #[test]
    fn erasure_on_one_node_reaches_the_others() {
        let (_dir, _shared, a, b) = two_nodes();
        let alice = a.choose(&[("t", Some("alice"))]).unwrap()[0].clone();
        // b made a newer key for alice that a has not seen: erased too.
        b.set_max_key_age(std::time::Duration::ZERO);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let newer = b.choose(&[("t", Some("alice"))]).unwrap()[0].clone();
        assert_ne!(newer.key_id, alice.key_id);
        let (n, _) = a.erase("t", "alice").unwrap();
        assert_eq!(n, 2);
        assert_eq!(b.key(alice.key_id), Some(alice.key), "until b pulls");
        b.refresh().unwrap();
        assert_eq!(b.key(alice.key_id), None);
        assert_eq!(b.key(newer.key_id), None);
        assert!(b.destroyed(newer.key_id));
        // b's next event for alice gets a fresh key, not the destroyed one.
        b.set_max_key_age(std::time::Duration::from_secs(3600));
        let after = b.choose(&[("t", Some("alice"))]).unwrap()[0].clone();
        assert!(after.key_id > newer.key_id);
        assert!(matches!(a.rotate_master(), Err(Error::Unsupported(_))));
        // The snapshot is a keyring file that opens like one.
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEYRING_FILE), a.snapshot().unwrap()).unwrap();
        fs::set_permissions(
            dir.path().join(KEYRING_FILE),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let (m, _) =
            LocalMasterKey::load(MasterKeySource::File(_dir.path().join("master.key")), false)
                .unwrap();
        let copy = Keyring::open(dir.path(), Arc::new(m)).unwrap();
        assert_eq!(copy.key(after.key_id), Some(after.key));
        assert_eq!(copy.key(alice.key_id), None);
    }
}
