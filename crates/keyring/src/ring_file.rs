//! The keyring file: a 64-byte header, then 256-byte records, one per key.
//! A record's number is the key id entries name. Records are appended with
//! one fsync per batch of new keys, and rewritten in place to re-wrap
//! (master key rotation) or destroy (erasure) a key. Layout in docs/format.md.

use crate::master::{KeyProvider, Wrapped};
use crate::{Error, Result};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

pub const KEYRING_FILE: &str = "keyring";
const HEADER: &[u8] = b"aiaudit-keyring 1\n";
const HEADER_LEN: u64 = 64;
const RECORD: usize = 256;
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
    path: PathBuf,
    provider: Arc<dyn KeyProvider>,
    file: Mutex<File>,
    state: RwLock<State>,
    /// Data keys older than this are replaced on their next use, so a key
    /// seals events of a bounded period and retention can destroy it whole.
    max_key_age_secs: std::sync::atomic::AtomicU64,
}

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

fn encode(m: &Meta, wrapped: Option<&Wrapped>) -> [u8; RECORD] {
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
    /// Opens (creating if missing, mode 0600) the keyring in `dir`, unwraps
    /// every live key, and finishes a master key rotation cut short.
    pub fn open(dir: &Path, provider: Arc<dyn KeyProvider>) -> Result<Keyring> {
        let path = dir.join(KEYRING_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)?;
        crate::check_private(&path, file.metadata()?.permissions().mode())?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        if bytes.is_empty() {
            let mut header = [0u8; HEADER_LEN as usize];
            header[..HEADER.len()].copy_from_slice(HEADER);
            file.write_all(&header)?;
            file.sync_all()?;
            fs::File::open(dir)?.sync_all()?;
            bytes = header.to_vec();
        }
        if bytes.len() < HEADER_LEN as usize || !bytes.starts_with(HEADER) {
            return Err(Error::Corrupt(format!(
                "{} does not start with {:?}",
                path.display(),
                String::from_utf8_lossy(HEADER).trim()
            )));
        }
        let body = &bytes[HEADER_LEN as usize..];
        let mut state = State::default();
        let mut good = 0;
        for (i, r) in body.chunks(RECORD).enumerate() {
            let last = (i + 1) * RECORD >= body.len();
            let decoded = (r.len() == RECORD).then(|| decode(r)).flatten();
            let Some((meta, wrapped)) = decoded else {
                if last {
                    // A record torn by a crash while it was appended: its
                    // fsync never returned, so no entry uses it.
                    break;
                }
                return Err(Error::Corrupt(format!("record {i} fails its checksum")));
            };
            let number = i as u64;
            if meta.live {
                let secret = provider.unwrap(&wrapped, &aad(number, &meta))?;
                state.secrets.insert(number, secret);
            }
            state.index(number, &meta);
            state.records.push(meta);
            good += 1;
        }
        let keep = HEADER_LEN + (good * RECORD) as u64;
        if keep < bytes.len() as u64 {
            file.set_len(keep)?;
            file.sync_all()?;
        }
        let ring = Keyring {
            path,
            provider,
            file: Mutex::new(file),
            state: RwLock::new(state),
            max_key_age_secs: std::sync::atomic::AtomicU64::new(DEFAULT_MAX_KEY_AGE_SECS),
        };
        ring.rewrap_all()?;
        Ok(ring)
    }

    /// The keyring file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Picks (creating as needed, durably, before returning) the data key for
    /// each (tenant, subject): the subject's own key when there is a subject,
    /// else the tenant's.
    pub fn choose(&self, wants: &[(&str, Option<&str>)]) -> Result<Vec<KeyChoice>> {
        let fresh = self.fresh_after();
        if let Some(found) = self
            .state
            .read()
            .expect("keyring lock")
            .choose(wants, fresh)
        {
            return Ok(found);
        }
        let mut state = self.state.write().expect("keyring lock");
        let mut new = Vec::new();
        for (tenant, _) in wants {
            if !state.salts.contains_key(*tenant) {
                self.create(&mut state, &mut new, SALT, tenant, [0; 32])?;
            }
        }
        for (tenant, subject) in wants {
            match subject {
                None => {
                    if state.current(tenant, None, fresh).is_none() {
                        self.create(&mut state, &mut new, TENANT_KEY, tenant, [0; 32])?;
                    }
                }
                Some(s) => {
                    let tag = state.tag(tenant, s).expect("salt created above");
                    if state.current(tenant, Some(tag), fresh).is_none() {
                        self.create(&mut state, &mut new, SUBJECT_KEY, tenant, tag)?;
                    }
                }
            }
        }
        self.append(&mut state, &new)?;
        Ok(state.choose(wants, fresh).expect("every key exists now"))
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
        let file = self.file.lock().expect("keyring file lock");
        let mut destroyed = 0;
        for number in 0..state.records.len() {
            let m = &state.records[number];
            if m.live && m.kind != SALT && m.tenant == tenant && m.created < created_before {
                let mut gone = m.clone();
                gone.live = false;
                file.write_all_at(&encode(&gone, None), offset(number as u64))?;
                state.secrets.remove(&(number as u64));
                state.records[number] = gone;
                destroyed += 1;
            }
        }
        if destroyed > 0 {
            file.sync_data()?;
            let live = |s: &State, n: &u64| s.records[*n as usize].live;
            let keep_t: Vec<(String, u64)> = state
                .tenant_current
                .iter()
                .filter(|(_, n)| live(&state, n))
                .map(|(t, n)| (t.clone(), *n))
                .collect();
            state.tenant_current = keep_t.into_iter().collect();
            let keep_s: Vec<((String, [u8; 32]), u64)> = state
                .subject_current
                .iter()
                .filter(|(_, n)| live(&state, n))
                .map(|(k, n)| (k.clone(), *n))
                .collect();
            state.subject_current = keep_s.into_iter().collect();
        }
        Ok(destroyed)
    }

    /// A data key by id, if it exists and was not destroyed.
    pub fn key(&self, id: u64) -> Option<[u8; 32]> {
        let state = self.state.read().expect("keyring lock");
        let meta = state.records.get(id as usize)?;
        if meta.kind == SALT {
            return None;
        }
        state.secrets.get(&id).copied()
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

    /// Crypto-shredding: destroys every key (current and rotated) of the
    /// subject. Returns how many keys were destroyed and the subject's tag.
    pub fn erase(&self, tenant: &str, subject: &str) -> Result<(usize, Option<String>)> {
        let mut state = self.state.write().expect("keyring lock");
        let Some(tag) = state.tag(tenant, subject) else {
            return Ok((0, None));
        };
        let destroyed = self.destroy_where(&mut state, |m| {
            m.kind == SUBJECT_KEY && m.tenant == tenant && m.tag == tag
        })?;
        state.subject_current.remove(&(tenant.to_string(), tag));
        Ok((destroyed, Some(tag_string(&tag))))
    }

    /// Crypto-shredding: every live record `doomed` picks gets its wrapped
    /// key overwritten with zeros in place, then one fsync.
    fn destroy_where(&self, state: &mut State, doomed: impl Fn(&Meta) -> bool) -> Result<usize> {
        let file = self.file.lock().expect("keyring file lock");
        let mut destroyed = 0;
        for number in 0..state.records.len() {
            let m = &state.records[number];
            if m.live && doomed(m) {
                let mut gone = m.clone();
                gone.live = false;
                file.write_all_at(&encode(&gone, None), offset(number as u64))?;
                state.secrets.remove(&(number as u64));
                state.records[number] = gone;
                destroyed += 1;
            }
        }
        if destroyed > 0 {
            file.sync_data()?;
        }
        Ok(destroyed)
    }

    /// New current data keys for every tenant and subject; old ones keep
    /// decrypting what they sealed. Salts never rotate. Returns the count.
    pub fn rotate(&self) -> Result<usize> {
        let mut state = self.state.write().expect("keyring lock");
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
        let mut new = Vec::new();
        for (kind, tenant, tag) in &todo {
            self.create(&mut state, &mut new, *kind, tenant, *tag)?;
        }
        self.append(&mut state, &new)?;
        Ok(todo.len())
    }

    /// Master key rotation: a new master key, then every live record
    /// re-wrapped under it in place. Returns how many were re-wrapped.
    pub fn rotate_master(&self) -> Result<usize> {
        self.provider.begin_rotation()?;
        self.rewrap_all()
    }

    /// Re-wraps every record not under the current master key, then lets the
    /// provider retire the old one.
    fn rewrap_all(&self) -> Result<usize> {
        let mut state = self.state.write().expect("keyring lock");
        let current = self.provider.current_id();
        let file = self.file.lock().expect("keyring file lock");
        let mut count = 0;
        for number in 0..state.records.len() {
            let n = number as u64;
            if !state.records[number].live || state.records[number].master == current {
                continue;
            }
            let secret = state.secrets[&n];
            let wrapped = self
                .provider
                .wrap(&secret, &aad(n, &state.records[number]))?;
            state.records[number].master = wrapped.master;
            file.write_all_at(&encode(&state.records[number], Some(&wrapped)), offset(n))?;
            count += 1;
        }
        file.sync_data()?;
        drop(file);
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

    /// The keyring file as it is now (wrapped keys only: useless without the
    /// master key), for backups.
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let _state = self.state.read().expect("keyring lock");
        let file = self.file.lock().expect("keyring file lock");
        let len = file.metadata()?.len();
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, 0)?;
        Ok(bytes)
    }

    /// Makes a new live record (not yet written: see [`Keyring::append`]).
    fn create(
        &self,
        state: &mut State,
        new: &mut Vec<[u8; RECORD]>,
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

    /// Appends new records with one fsync. On failure they are forgotten
    /// again: nothing may be sealed under a key that is not durable.
    fn append(&self, state: &mut State, new: &[[u8; RECORD]]) -> Result<()> {
        if new.is_empty() {
            return Ok(());
        }
        let before = state.records.len() - new.len();
        let file = self.file.lock().expect("keyring file lock");
        let result = (|| {
            let end = file.metadata()?.len();
            let at = end - (end - HEADER_LEN) % RECORD as u64;
            let bytes: Vec<u8> = new.iter().flatten().copied().collect();
            file.write_all_at(&bytes, at)?;
            file.sync_data()?;
            Ok::<_, std::io::Error>(())
        })();
        if let Err(e) = result {
            state.forget_from(before);
            return Err(Error::Io(e));
        }
        Ok(())
    }
}

fn offset(number: u64) -> u64 {
    HEADER_LEN + number * RECORD as u64
}

impl State {
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
        let mode = fs::metadata(ring.path()).unwrap().permissions().mode();
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
        let before = fs::read(ring.path()).unwrap();
        let (n, tag) = ring.erase("a", "alice").unwrap();
        assert_eq!(n, 2);
        assert_eq!(tag, first.subject_tag);
        assert_eq!(ring.key(first.key_id), None);
        assert!(ring.destroyed(second.key_id));
        assert_eq!(ring.key(bob.key_id), Some(bob.key));
        let after = fs::read(ring.path()).unwrap();
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
        let path = ring.path().to_path_buf();
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
        let a = ring.hmac("a", b"alice@example.com").unwrap();
        assert_eq!(a, ring.hmac("a", b"alice@example.com").unwrap());
        assert_ne!(a, ring.hmac("b", b"alice@example.com").unwrap());
        let tag = ring.choose(&[("a", Some("alice@example.com"))]).unwrap()[0]
            .subject_tag
            .clone();
        assert_eq!(tag, Some(a));
    }
}
