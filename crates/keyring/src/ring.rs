//! The keyring: data keys per tenant and subject, wrapped by the master key,
//! in 256-byte records (layout in docs/format.md) kept by a [`RecordStore`]:
//! the keyring file, or a table the nodes of a shared log all use. A
//! record's number is the key id entries name. New records are appended with
//! one durable write per batch; a record is rewritten in place to re-wrap
//! (master key rotation) or destroy (erasure) its key.
//!
//! Memory is bounded by the number of tenants, not of data subjects: the
//! tenants' records (salts and tenant keys) are held, while subject keys are
//! read from the store by number or by (tenant, tag) when needed and kept in
//! a cache of [`SUBJECT_CACHE`] entries.

use crate::family::{bucket, family_tag, FamilyKey};
use crate::master::{KeyProvider, Wrapped};
use crate::members::MemberIndex;
use crate::records::{
    kind_has_tag, kind_is_subject_key, FileRecords, Record, RecordStore, SubjectCounts,
    DERIVED_FROM_AT, HEADER_LEN, KIND_DERIVED_KEY as DERIVED, KIND_FAMILY as FAMILY,
    KIND_SALT as SALT, KIND_SUBJECT_KEY as SUBJECT_KEY, KIND_TENANT_KEY as TENANT_KEY,
    RECORD_LEN as RECORD,
};
use crate::{Error, Result};
use hashlink::LruCache;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

const MAGIC: &[u8; 4] = b"AKR1";
const LIVE: u8 = 1;
const DESTROYED: u8 = 2;
const MAX_TENANT: usize = 64;
/// Prefix of HMAC values (sensitive fields, subject tags).
pub const HMAC_PREFIX: &str = "hmac-sha256:";
/// Subject keys kept unwrapped in memory, and as many subjects' newest key
/// numbers: about 350 bytes each (49,152 more held about 17 MiB, measured), and
/// ten million subjects' ingest peaks within a few MiB of its 200 MiB
/// budget. A subject's key that left the cache is read back from the index
/// and the keyring file (docs/performance.md, "Data subjects at scale").
pub const SUBJECT_CACHE: usize = 8_192;
/// Records read or rewritten at a time by passes over the whole keyring
/// (1 MiB of them). A chunk is held two or three times over while it is
/// re-wrapped or given new keys, on top of what ingest leaves in the
/// allocator; 16,384 put both rotations 12 to 21 MiB over the 200 MiB that
/// ten million subjects' ingest keeps to.
const PASS_CHUNK: usize = 4_096;

#[derive(Debug, Clone)]
struct Meta {
    kind: u8,
    live: bool,
    created: u64,
    tenant: String,
    tag: [u8; 32],
    master: [u8; 8],
    /// A derived key's family (its record number); 0 for other kinds.
    from: u64,
}

struct State {
    /// Salts and tenant keys (a few per tenant), live or destroyed.
    tenant_records: BTreeMap<u64, Meta>,
    /// Unwrapped secrets of the live ones.
    secrets: HashMap<u64, [u8; 32]>,
    salts: HashMap<String, u64>,
    tenant_current: HashMap<String, u64>,
    /// Live subject keys recently used: record number to (meta, key).
    subject_keys: LruCache<u64, (Meta, [u8; 32])>,
    /// The newest subject key of a tag recently looked up. By tag alone, so
    /// that a lookup allocates nothing: tags are HMACs under each tenant's
    /// own salt, and the record it names is checked for the tenant too.
    subject_current: LruCache<[u8; 32], u64>,
    /// How many records exist: the next record's number.
    count: u64,
    subjects: SubjectCounts,
    /// Bumped by every destruction, so that a key read from the store while
    /// one ran is not cached live afterwards.
    epoch: u64,
    /// Where [`RecordStore::changes`] continues from.
    mark: u64,
    /// Families an erasure under way is about to destroy: no new event is
    /// sealed under them (the next one of their bucket gets a new family).
    retired: std::collections::HashSet<u64>,
    /// Family keys ready to derive from, by record number.
    family_keys: LruCache<u64, FamilyKey>,
}

impl Default for State {
    fn default() -> State {
        State {
            tenant_records: BTreeMap::new(),
            secrets: HashMap::new(),
            salts: HashMap::new(),
            tenant_current: HashMap::new(),
            subject_keys: LruCache::new(SUBJECT_CACHE),
            subject_current: LruCache::new(SUBJECT_CACHE),
            count: 0,
            subjects: SubjectCounts::default(),
            epoch: 0,
            mark: 0,
            retired: std::collections::HashSet::new(),
            family_keys: LruCache::new(FAMILY_CACHE),
        }
    }
}

/// A data key and its record number.
type NumberedKey = (u64, [u8; 32]);

/// Stored records of subjects, by (tenant, tag).
type StoredBySubject<'a> = HashMap<(&'a [u8], [u8; 32]), Vec<(u64, Record)>>;

/// Family keys held ready to derive from: all of one tenant's 4,096
/// buckets, about 0.5 KiB each.
const FAMILY_CACHE: usize = 4_096;

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
    /// The pass over every record under way, if one is (at ten million
    /// subjects a rotation takes minutes: operators watch it here).
    pub pass: Option<PassProgress>,
}

/// How far a pass over the whole keyring has got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassProgress {
    /// `rotate` (new data keys), `rotate-master` (re-wrapping every
    /// record) or `expire` (retention destroying old keys).
    pub operation: &'static str,
    /// Unix seconds.
    pub started: u64,
    /// Records gone over, of `records` (those that existed when it began).
    pub records_done: u64,
    pub records: u64,
}

pub struct Keyring {
    records: Box<dyn RecordStore>,
    provider: Arc<dyn KeyProvider>,
    state: Mutex<State>,
    /// Data keys older than this are replaced on their next use, so a key
    /// seals events of a bounded period and retention can destroy it whole.
    max_key_age_secs: std::sync::atomic::AtomicU64,
    /// When a shared store's subject key counts were last read.
    counted_at: Mutex<Option<std::time::Instant>>,
    /// The pass under way (its own number, so that only it clears it).
    pass: Mutex<Option<(u64, PassProgress)>>,
    passes: std::sync::atomic::AtomicU64,
    /// Every record numbered below this is durable. Keys are handed out
    /// only once it passes them: records are appended under the lock and
    /// flushed after it is released, one flush serving every append made
    /// before it began.
    durable: std::sync::atomic::AtomicU64,
    /// Held through a flush, so that appenders queue for the next one.
    flushing: Mutex<()>,
    /// A flush failed: what it covered may be lost whatever a later one
    /// says (the kernel forgets the failure), so no new key is handed out
    /// until the keyring is opened again.
    flush_failed: std::sync::atomic::AtomicBool,
    /// Which subjects belong to which family (a keyring file's; None for a
    /// shared store, which makes no families).
    members: Option<MemberIndex>,
    /// New subjects' keys are derived from families (see `crate::family`).
    families: std::sync::atomic::AtomicBool,
    /// Held through an erasure or a retention pass: each decides which keys
    /// to keep before it destroys a family, and another destroying meanwhile
    /// could have it keep a key just destroyed (an erased subject's).
    destroying: Mutex<()>,
    /// False while the members of entries logged since the member index was
    /// last written are noted again (see [`Keyring::set_members_ready`]):
    /// no erasure until then.
    members_ready: std::sync::atomic::AtomicBool,
}

/// How often a shared store's subject key counts are read again.
const COUNTS_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

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

/// What the wrap binds a data key to: its record number and identity (and
/// a derived key's family).
fn aad(number: u64, m: &Meta) -> Vec<u8> {
    let mut a = Vec::with_capacity(136);
    a.extend_from_slice(b"aiaudit keyring record ");
    a.extend_from_slice(&number.to_be_bytes());
    a.push(m.kind);
    a.extend_from_slice(&m.created.to_be_bytes());
    a.push(m.tenant.len() as u8);
    a.extend_from_slice(m.tenant.as_bytes());
    a.extend_from_slice(&m.tag);
    if m.kind == DERIVED {
        a.extend_from_slice(&m.from.to_be_bytes());
    }
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
    if m.kind == DERIVED {
        r[DERIVED_FROM_AT..DERIVED_FROM_AT + 8].copy_from_slice(&m.from.to_be_bytes());
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
        from: if r[5] == DERIVED {
            u64::from_be_bytes(r[DERIVED_FROM_AT..DERIVED_FROM_AT + 8].try_into().ok()?)
        } else {
            0
        },
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
    // One allocation: every event naming a subject carries its tag.
    let mut hex = [0u8; 64];
    hex::encode_to_slice(tag, &mut hex).expect("64 hex digits for 32 bytes");
    let mut s = String::with_capacity(HMAC_PREFIX.len() + hex.len());
    s.push_str(HMAC_PREFIX);
    s.push_str(std::str::from_utf8(&hex).expect("hex is ASCII"));
    s
}

/// The record numbers at or past `from` among `numbers` (collected, so that
/// the cache they come from can then be changed).
fn numbers_from(numbers: impl Iterator<Item = u64>, from: u64) -> Vec<u64> {
    numbers.filter(|n| *n >= from).collect()
}

/// (family, subject tag) of keys chosen from families.
fn family_members(chosen: &[KeyChoice]) -> impl Iterator<Item = (u64, [u8; 32])> + '_ {
    chosen.iter().filter_map(|c| {
        let tag = crate::family::parse_tag(c.subject_tag.as_deref()?)?;
        Some((c.key_id, tag))
    })
}

fn random32() -> Result<[u8; 32]> {
    let mut k = [0u8; 32];
    crate::random::fill(&mut k)?;
    Ok(k)
}

impl Keyring {
    /// Opens (creating if missing, mode 0600) the keyring file in `dir` and
    /// its subject index, unwraps the tenants' keys, and finishes a master
    /// key rotation cut short.
    pub fn open(dir: &Path, provider: Arc<dyn KeyProvider>) -> Result<Keyring> {
        let records = FileRecords::open(dir, |r| decode(r).is_some())?;
        let members = MemberIndex::open(dir)?;
        Keyring::open_from(Box::new(records), provider, Some(members))
    }

    /// Opens the keyring kept in `records` (the keyring file, or a store the
    /// nodes of a shared log all use).
    pub fn open_with(
        records: Box<dyn RecordStore>,
        provider: Arc<dyn KeyProvider>,
    ) -> Result<Keyring> {
        Keyring::open_from(records, provider, None)
    }

    fn open_from(
        records: Box<dyn RecordStore>,
        provider: Arc<dyn KeyProvider>,
        members: Option<MemberIndex>,
    ) -> Result<Keyring> {
        let ring = Keyring {
            members,
            families: std::sync::atomic::AtomicBool::new(false),
            destroying: Mutex::new(()),
            members_ready: std::sync::atomic::AtomicBool::new(true),
            records,
            provider,
            state: Mutex::new(State::default()),
            max_key_age_secs: std::sync::atomic::AtomicU64::new(DEFAULT_MAX_KEY_AGE_SECS),
            counted_at: Mutex::new(Some(std::time::Instant::now())),
            pass: Mutex::new(None),
            passes: std::sync::atomic::AtomicU64::new(0),
            durable: std::sync::atomic::AtomicU64::new(0),
            flushing: Mutex::new(()),
            flush_failed: std::sync::atomic::AtomicBool::new(false),
        };
        {
            let mut state = ring.lock();
            ring.reload(&mut state)?;
            // A store flushes what it holds when it is opened.
            ring.durable
                .store(state.count, std::sync::atomic::Ordering::SeqCst);
        }
        if ring.provider.rotating() {
            ring.rewrap_all()?;
        }
        Ok(ring)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("keyring lock")
    }

    /// Where the records are kept, for messages.
    pub fn describe(&self) -> String {
        self.records.describe()
    }

    /// Whether other nodes share these keys.
    pub fn shared(&self) -> bool {
        self.records.shared()
    }

    fn corrupt(&self, number: u64) -> Error {
        Error::Corrupt(format!(
            "record {number} of {} fails its checksum",
            self.records.describe()
        ))
    }

    /// Reads the tenants' records again and unwraps the live ones; subject
    /// keys are read when used.
    fn reload(&self, state: &mut State) -> Result<()> {
        let (records, mark) = self.records.tenant_records()?;
        let mut fresh = State {
            mark,
            count: self.records.count()?,
            subjects: self.records.subject_counts()?,
            epoch: state.epoch + 1,
            ..State::default()
        };
        for (number, r) in &records {
            let (meta, wrapped) = decode(r).ok_or_else(|| self.corrupt(*number))?;
            if kind_has_tag(meta.kind) {
                continue;
            }
            if meta.live {
                let secret = self.provider.unwrap(&wrapped, &aad(*number, &meta))?;
                fresh.secrets.insert(*number, secret);
            }
            fresh.index(*number, &meta);
            fresh.tenant_records.insert(*number, meta);
        }
        *state = fresh;
        Ok(())
    }

    /// Takes in what other nodes appended or changed since the last pull:
    /// their tenant records, and destructions of subject keys held here.
    fn pull(&self, state: &mut State) -> Result<()> {
        if !self.records.shared() {
            return Ok(());
        }
        let (mut changes, mark) = self.records.changes(state.mark)?;
        changes.sort_by_key(|(n, _)| *n);
        // Records other nodes appended are committed: when every record
        // held before was durable, so is every record held after, and the
        // lock-free lookup may go on using the keys already cached.
        let held_durable = self.durable.load(std::sync::atomic::Ordering::SeqCst) >= state.count;
        for (number, r) in &changes {
            let (meta, wrapped) = decode(r).ok_or_else(|| self.corrupt(*number))?;
            let number = *number;
            if number > state.count {
                // Never expected (appends are contiguous); start over.
                return self.reload(state);
            }
            let new = number == state.count;
            if new {
                state.count += 1;
            }
            if kind_has_tag(meta.kind) {
                let counted = kind_is_subject_key(meta.kind);
                match (new, meta.live) {
                    (true, true) if counted => state.subjects.live += 1,
                    (true, false) if counted => state.subjects.destroyed += 1,
                    (true, _) => {}
                    (false, false) => {
                        // Counted by the node that destroyed it; the counts
                        // are re-read now and then (see `refresh`).
                        state.epoch += 1;
                        state.forget_subject_key(number);
                    }
                    (false, true) => {
                        if let Some((m, _)) = state.subject_keys.get_mut(&number) {
                            m.master = meta.master;
                        }
                    }
                }
                continue;
            }
            match state.tenant_records.get_mut(&number) {
                Some(held) => {
                    held.master = meta.master;
                    if held.live && !meta.live {
                        state.destroyed_tenant_record(number);
                    }
                }
                // New, or appended between the reads that opened the keyring.
                None => {
                    if meta.live {
                        let secret = self.provider.unwrap(&wrapped, &aad(number, &meta))?;
                        state.secrets.insert(number, secret);
                    }
                    state.index(number, &meta);
                    state.tenant_records.insert(number, meta);
                }
            }
        }
        state.mark = mark;
        if held_durable {
            self.durable
                .fetch_max(state.count, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }

    /// Takes in keys other nodes of a shared log created or destroyed
    /// (a no-op on a keyring file). Servers call it every second or so.
    /// Subject key counts are re-read from the store every minute (other
    /// nodes' erasures are not counted as they arrive).
    pub fn refresh(&self) -> Result<()> {
        if !self.records.shared() {
            return Ok(());
        }
        let recount = {
            let mut at = self.counted_at.lock().expect("count lock");
            let due = at.is_none_or(|t| t.elapsed() >= COUNTS_EVERY);
            if due {
                *at = Some(std::time::Instant::now());
            }
            due
        };
        let counts = if recount {
            Some(self.records.subject_counts()?)
        } else {
            None
        };
        let mut state = self.lock();
        self.pull(&mut state)?;
        if let Some(c) = counts {
            state.subjects = c;
        }
        Ok(())
    }

    /// Plans new records with `plan` and appends them durably. When another
    /// node appended first, its records are pulled and the plan runs again,
    /// so that nodes reuse each other's tenant keys and salts.
    fn add_durably<T>(
        &self,
        plan: impl Fn(&Keyring, &mut State, &mut Vec<Record>) -> Result<T>,
    ) -> Result<T> {
        for _ in 0..MAX_APPEND_RACES {
            let mut state = self.lock();
            self.pull(&mut state)?;
            let before = state.count;
            let mut new = Vec::new();
            let planned = plan(self, &mut state, &mut new);
            let appended = match &planned {
                Ok(_) if new.is_empty() => Ok(true),
                Ok(_) => self.records.append_deferred(before, &new),
                Err(_) => Ok(false),
            };
            match appended {
                Ok(true) => {
                    // Keys made by this plan, or by another whose flush is
                    // under way, are durable before they are returned.
                    let upto = state.count;
                    drop(state);
                    self.make_durable(upto)?;
                    return planned;
                }
                Ok(false) => {
                    // Nothing may be sealed under a key that is not durable.
                    state.forget_from(before, &new);
                    planned?;
                }
                Err(e) => {
                    state.forget_from(before, &new);
                    return Err(e);
                }
            }
        }
        Err(Error::Key(format!(
            "could not add keys to {}: other nodes kept adding first",
            self.records.describe()
        )))
    }

    /// Whether a flush of the store failed: no new key is made until the
    /// keyring is opened again (readiness reports it).
    pub fn flush_failed(&self) -> bool {
        self.flush_failed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Returns once every record numbered below `upto` is durable, flushing
    /// the store unless a flush begun since they were appended did.
    fn make_durable(&self, upto: u64) -> Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.durable.load(SeqCst) >= upto {
            return Ok(());
        }
        let _flushing = self.flushing.lock().expect("keyring flush lock");
        if self.flush_failed.load(SeqCst) {
            return Err(Error::Key(format!(
                "{} could not be flushed earlier: open the keyring again",
                self.records.describe()
            )));
        }
        if self.durable.load(SeqCst) >= upto {
            return Ok(());
        }
        // Everything appended so far: at least `upto` records.
        let written = self.lock().count.max(upto);
        if let Err(e) = self.records.sync() {
            self.flush_failed.store(true, SeqCst);
            tracing::error!(
                error = %e,
                "flushing the keyring failed: no new data key until the ledger is restarted"
            );
            return Err(e);
        }
        self.durable.fetch_max(written, SeqCst);
        Ok(())
    }

    /// Picks (creating as needed, durably, before returning) the data key for
    /// each (tenant, subject): the subject's own key when there is a subject,
    /// else the tenant's.
    pub fn choose(&self, wants: &[(&str, Option<&str>)]) -> Result<Vec<KeyChoice>> {
        if let Some(found) = self.lookup(wants) {
            return Ok(found);
        }
        let fresh = self.fresh_after();
        let kind = self.subject_kind();
        self.add_durably(|ring, state, new| {
            for (tenant, _) in wants {
                if !state.salts.contains_key(*tenant) {
                    ring.create(state, new, SALT, tenant, [0; 32])?;
                }
            }
            // Each subject's tag once (an HMAC each).
            let subjects: Vec<Option<[u8; 32]>> = wants
                .iter()
                .map(|(tenant, subject)| {
                    subject.map(|s| state.tag(tenant, s).expect("salt created above"))
                })
                .collect();
            // What is looked up and made: the subject's own key, or its
            // family's.
            let tagged: Vec<(&str, Option<[u8; 32]>)> = wants
                .iter()
                .zip(&subjects)
                .map(|((tenant, _), tag)| (*tenant, tag.map(|t| ring.key_tag(tenant, &t, kind))))
                .collect();
            let mut stored = ring.stored_subject_records(state, &tagged, fresh, kind)?;
            let mut chosen = Vec::with_capacity(wants.len());
            // Subjects named twice in one batch share the key made for the first.
            let mut made: HashMap<(&str, [u8; 32]), NumberedKey> =
                HashMap::with_capacity(wants.len());
            for ((tenant, looked_up), subject) in tagged.iter().zip(&subjects) {
                let choice = match looked_up {
                    None => {
                        let number = match state.current(tenant, fresh) {
                            Some(n) => n,
                            None => ring.create(state, new, TENANT_KEY, tenant, [0; 32])?.0,
                        };
                        KeyChoice {
                            key_id: number,
                            key: state.secrets[&number],
                            subject_tag: None,
                        }
                    }
                    Some(tag) => {
                        let tag = *tag;
                        let found = match made.get(&(*tenant, tag)) {
                            Some(m) => Some(*m),
                            None => match state.cached_subject_key(tenant, tag, fresh, kind) {
                                Some(cached) => Some(cached),
                                None => {
                                    let records = stored
                                        .remove(&(tenant.as_bytes(), tag))
                                        .unwrap_or_default();
                                    ring.newest_subject_key(
                                        state, tenant, tag, fresh, records, kind,
                                    )?
                                }
                            },
                        };
                        let (number, key) = match found {
                            Some(f) => f,
                            None => {
                                let made_now = ring.create(state, new, kind, tenant, tag)?;
                                made.insert((*tenant, tag), made_now);
                                made_now
                            }
                        };
                        let subject = subject.expect("a subject's key or family");
                        state.subject_choice(number, key, tenant, subject, kind)
                    }
                };
                chosen.push(choice);
            }
            ring.note_handed_out(kind, &chosen)?;
            Ok(chosen)
        })
    }

    /// Notes the members of the families `chosen` keys come from. Called
    /// under the keyring's lock, before the keys are handed out: an erasure
    /// retires a family under the same lock, so every key it ever gave has
    /// its member noted by then (a key whose event is never logged only
    /// makes one member too many).
    fn note_handed_out(&self, kind: u8, chosen: &[KeyChoice]) -> Result<()> {
        let (FAMILY, Some(members)) = (kind, &self.members) else {
            return Ok(());
        };
        members.note(family_members(chosen))
    }

    /// Like [`Keyring::choose`] when every key is known already; never
    /// writes, never reads the store and never waits (it runs on async
    /// workers). None also when the keyring is busy: a [`Keyring::choose`]
    /// holds it while new keys are made durable, and an async worker
    /// waiting out that fsync would leave its core idle.
    pub fn lookup(&self, wants: &[(&str, Option<&str>)]) -> Option<Vec<KeyChoice>> {
        let fresh = self.fresh_after();
        let kind = self.subject_kind();
        let mut state = match self.state.try_lock() {
            Ok(state) => state,
            Err(std::sync::TryLockError::WouldBlock) => return None,
            // As `lock` does. (Locking again here, with the poisoned guard
            // still alive in the match, would deadlock.)
            Err(std::sync::TryLockError::Poisoned(e)) => panic!("keyring lock: {e}"),
        };
        // Keys whose records are not durable yet are for `choose`, which
        // waits for them.
        if self.durable.load(std::sync::atomic::Ordering::SeqCst) < state.count {
            return None;
        }
        let chosen: Vec<KeyChoice> = wants
            .iter()
            .map(|(tenant, subject)| match subject {
                None => {
                    let number = state.current(tenant, fresh)?;
                    Some(KeyChoice {
                        key_id: number,
                        key: *state.secrets.get(&number)?,
                        subject_tag: None,
                    })
                }
                Some(s) => {
                    let tag = state.tag(tenant, s)?;
                    let looked_up = self.key_tag(tenant, &tag, kind);
                    let (number, key) = state.cached_subject_key(tenant, looked_up, fresh, kind)?;
                    Some(state.subject_choice(number, key, tenant, tag, kind))
                }
            })
            .collect::<Option<_>>()?;
        // Still under the lock (see `note_handed_out`). Never a write here:
        // once a run's worth of members is held, `choose` notes them.
        if let (FAMILY, Some(members)) = (kind, &self.members) {
            if !members.note_held(family_members(&chosen)) {
                return None;
            }
        }
        Some(chosen)
    }

    /// The newest live subject key of (tenant, tag) created at or after
    /// `fresh_after`: from the cache, else from the store (and cached).
    fn current_subject_key(
        &self,
        state: &mut State,
        tenant: &str,
        tag: [u8; 32],
        fresh_after: u64,
        kind: u8,
    ) -> Result<Option<(u64, [u8; 32])>> {
        if let Some(found) = state.cached_subject_key(tenant, tag, fresh_after, kind) {
            return Ok(Some(found));
        }
        let records = self.records.subject_records(tenant, &tag)?;
        self.newest_subject_key(state, tenant, tag, fresh_after, records, kind)
    }

    /// The stored records of every subject in `wants` whose current key is
    /// not cached, read from the store at once, by (tenant, tag).
    fn stored_subject_records<'w>(
        &self,
        state: &mut State,
        tagged: &[(&'w str, Option<[u8; 32]>)],
        fresh_after: u64,
        kind: u8,
    ) -> Result<StoredBySubject<'w>> {
        let mut missing: Vec<(&'w str, [u8; 32])> = Vec::with_capacity(tagged.len());
        let mut asked: StoredBySubject<'w> = HashMap::with_capacity(tagged.len());
        for (tenant, tag) in tagged {
            let Some(tag) = *tag else { continue };
            if state
                .cached_subject_key(tenant, tag, fresh_after, kind)
                .is_none()
                && asked.insert((tenant.as_bytes(), tag), Vec::new()).is_none()
            {
                missing.push((*tenant, tag));
            }
        }
        if missing.is_empty() {
            return Ok(asked);
        }
        let mut found = self.records.subjects_records(&missing)?;
        if found.is_empty() {
            // New subjects, all of them: no map of who asked to build.
            return Ok(asked);
        }
        found.sort_by_key(|(number, _)| *number);
        // Which subject asked for has this tag (tags differ per tenant, so
        // the tenant is compared only to be sure).
        let by_tag: HashMap<[u8; 32], Vec<&'w str>> =
            missing.iter().fold(HashMap::new(), |mut m, (t, tag)| {
                m.entry(*tag).or_default().push(*t);
                m
            });
        for (number, r) in found {
            let Some((tenant, tag)) = crate::records::record_subject(&r) else {
                continue;
            };
            // The store's index is a hint: a record of a subject not asked
            // for is ignored (and the caller checks each record again).
            let Some(t) = by_tag
                .get(&tag)
                .and_then(|ts| ts.iter().find(|t| t.as_bytes() == tenant))
            else {
                continue;
            };
            if let Some(held) = asked.get_mut(&(t.as_bytes(), tag)) {
                held.push((number, r));
            }
        }
        Ok(asked)
    }

    /// The newest live subject key of (tenant, tag) among its stored
    /// `records`, if created at or after `fresh_after` (and cached).
    fn newest_subject_key(
        &self,
        state: &mut State,
        tenant: &str,
        tag: [u8; 32],
        fresh_after: u64,
        records: Vec<(u64, Record)>,
        kind: u8,
    ) -> Result<Option<(u64, [u8; 32])>> {
        let mut newest = None;
        for (number, r) in records {
            // The store's index is a hint: the record itself must say so.
            let (meta, wrapped) = decode(&r).ok_or_else(|| self.corrupt(number))?;
            if meta.live
                && meta.kind == kind
                && meta.tenant == tenant
                && meta.tag == tag
                && !state.retired.contains(&number)
            {
                newest = Some((number, meta, wrapped));
            }
        }
        let Some((number, meta, wrapped)) = newest else {
            return Ok(None);
        };
        if meta.created < fresh_after {
            // To be replaced: not worth unwrapping (a rotation asks this of
            // every subject).
            return Ok(None);
        }
        let key = self.provider.unwrap(&wrapped, &aad(number, &meta))?;
        state.remember_subject_key(number, meta, key);
        Ok(Some((number, key)))
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
        let mut t: Vec<String> = self.lock().salts.keys().cloned().collect();
        t.sort();
        t
    }

    /// Retention: destroys every data key (tenant and subject keys, not the
    /// salt) of `tenant` created before `created_before` (unix seconds).
    /// Returns how many were destroyed. Subject keys are found by one pass
    /// over the store in bounded chunks.
    pub fn expire(&self, tenant: &str, created_before: u64) -> Result<usize> {
        let _destroying = self.destroying.lock().expect("keyring destroying lock");
        let doomed = |m: &Meta| m.kind != SALT && m.tenant == tenant && m.created < created_before;
        let mut destroyed = {
            let mut state = self.lock();
            self.pull(&mut state)?;
            let held: Vec<(u64, Meta)> = state
                .tenant_records
                .iter()
                .filter(|(_, m)| m.live && doomed(m))
                .map(|(n, m)| (*n, m.clone()))
                .collect();
            self.destroy(&mut state, held)?
        };
        destroyed += self.pass(
            "expire",
            |chunk| {
                Ok(chunk
                    .into_iter()
                    .filter(|(_, m)| kind_has_tag(m.kind) && m.live && doomed(m))
                    .collect())
            },
            |found| self.destroy(&mut self.lock(), found),
        )?;
        Ok(destroyed)
    }

    /// One pass over every record in chunks: `pick` chooses from each
    /// chunk, `act` handles the choice (taking the lock itself). Records
    /// appended meanwhile (by `act` too) are not part of the pass.
    fn pass(
        &self,
        operation: &'static str,
        pick: impl Fn(Vec<(u64, Meta)>) -> Result<Vec<(u64, Meta)>>,
        act: impl Fn(Vec<(u64, Meta)>) -> Result<usize>,
    ) -> Result<usize> {
        let mut from = 0;
        let mut done = 0;
        let end = self.lock().count;
        let shown = PassShown::new(self, operation, end);
        loop {
            shown.at(from);
            let max = PASS_CHUNK.min(end.saturating_sub(from) as usize);
            let chunk = if max == 0 {
                Vec::new()
            } else {
                self.records.scan(from, max)?
            };
            let Some((last, _)) = chunk.last() else {
                return Ok(done);
            };
            from = last + 1;
            let mut metas = Vec::with_capacity(chunk.len());
            for (number, r) in &chunk {
                let (meta, _) = decode(r).ok_or_else(|| self.corrupt(*number))?;
                metas.push((*number, meta));
            }
            let picked = pick(metas)?;
            if !picked.is_empty() {
                done += act(picked)?;
            }
        }
    }

    /// A data key by id, if it exists and was not destroyed. An id this node
    /// has not seen yet (another node of a shared log made it) is pulled.
    pub fn key(&self, id: u64) -> Option<[u8; 32]> {
        let (known, epoch) = {
            let mut state = self.lock();
            if let Some(found) = state.held_key(id) {
                return found;
            }
            (state.count, state.epoch)
        };
        if id >= known && self.records.shared() {
            if let Err(e) = self.refresh() {
                tracing::warn!(error = %e, key_id = id, "pulling keyring records");
            }
        }
        let record = match self.records.get(id) {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(error = %e, key_id = id, "reading a keyring record");
                return None;
            }
        };
        let Some((meta, wrapped)) = decode(&record) else {
            tracing::error!(key_id = id, "a keyring record fails its checksum");
            return None;
        };
        if !meta.live || meta.kind == SALT || meta.kind == FAMILY {
            return None;
        }
        let key = match self.provider.unwrap(&wrapped, &aad(id, &meta)) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, key_id = id, "unwrapping a data key");
                return None;
            }
        };
        let mut state = self.lock();
        if meta.kind == SUBJECT_KEY && state.epoch == epoch {
            state.remember_subject_key(id, meta, key);
        }
        Some(key)
    }

    /// The data key of an entry sealed under key `id` naming subject
    /// `subject_tag` (`hmac-sha256:…`, as the entry carries it): for a
    /// family, the subject's key derived from it, or once the family is
    /// destroyed, the subject's own record of it (none: erased).
    pub fn key_for(&self, id: u64, subject_tag: Option<&str>) -> Option<[u8; 32]> {
        let family = {
            let mut state = self.lock();
            match state.subject_keys.get(&id) {
                Some((m, _)) if m.kind == FAMILY => {
                    let tenant = m.tenant.clone();
                    Some(state.family_key(id).map(|f| (tenant, f)))
                }
                _ => None,
            }
        };
        let (tenant, family) = match family {
            Some(Some((tenant, family))) => (tenant, Some(family)),
            // Another kind: what `key` answers.
            None if !self.is_family(id) => return self.key(id),
            _ => match self.read_family(id) {
                Ok(Some(read)) => read,
                Ok(None) => return None,
                Err(e) => {
                    tracing::error!(error = %e, key_id = id, "reading a family key");
                    return None;
                }
            },
        };
        let tag = crate::family::parse_tag(subject_tag?)?;
        match family {
            Some(f) => Some(f.derive(id, &tenant, &tag)),
            None => match self.derived_record(id, &tenant, &tag) {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(error = %e, key_id = id, "reading a derived key");
                    None
                }
            },
        }
    }

    /// Whether record `id` is a family's (read from the store when not held).
    fn is_family(&self, id: u64) -> bool {
        if let Some((m, _)) = self.lock().subject_keys.peek(&id) {
            return m.kind == FAMILY;
        }
        if self.lock().tenant_records.contains_key(&id) {
            return false;
        }
        matches!(self.records.get(id), Ok(Some(r)) if crate::records::record_kind(&r) == FAMILY)
    }

    /// Family record `id`: its tenant, and its key unless destroyed (None
    /// when the record is not a family).
    fn read_family(&self, id: u64) -> Result<Option<(String, Option<FamilyKey>)>> {
        let (epoch, retired) = {
            let state = self.lock();
            (state.epoch, state.retired.contains(&id))
        };
        let Some(r) = self.records.get(id)? else {
            return Ok(None);
        };
        let (meta, wrapped) = decode(&r).ok_or_else(|| self.corrupt(id))?;
        if meta.kind != FAMILY {
            return Ok(None);
        }
        if !meta.live {
            return Ok(Some((meta.tenant, None)));
        }
        let secret = self.provider.unwrap(&wrapped, &aad(id, &meta))?;
        let tenant = meta.tenant.clone();
        let mut state = self.lock();
        if state.epoch == epoch && !retired {
            state.remember_subject_key(id, meta, secret);
        }
        let family = state
            .family_key(id)
            .unwrap_or_else(|| FamilyKey::new(&secret));
        Ok(Some((tenant, Some(family))))
    }

    /// The live record of the key `tag` had in destroyed family `family`.
    fn derived_record(
        &self,
        family: u64,
        tenant: &str,
        tag: &[u8; 32],
    ) -> Result<Option<[u8; 32]>> {
        for (number, r) in self.records.subject_records(tenant, tag)? {
            let (meta, wrapped) = decode(&r).ok_or_else(|| self.corrupt(number))?;
            if meta.kind == DERIVED && meta.live && meta.from == family && meta.tag == *tag {
                return Ok(Some(self.provider.unwrap(&wrapped, &aad(number, &meta))?));
            }
        }
        Ok(None)
    }

    /// Whether key `id` existed and was destroyed (erased content).
    pub fn destroyed(&self, id: u64) -> bool {
        {
            let state = self.lock();
            if let Some(m) = state.tenant_records.get(&id) {
                return !m.live;
            }
            if state.subject_keys.contains_key(&id) {
                return false;
            }
        }
        matches!(self.records.get(id), Ok(Some(r)) if decode(&r).is_some_and(|(m, _)| !m.live))
    }

    /// HMAC-SHA256 of `value` under the tenant's salt, as `hmac-sha256:<hex>`
    /// (creates the salt on first use).
    pub fn hmac(&self, tenant: &str, value: &[u8]) -> Result<String> {
        let salt = self.lock().salt(tenant);
        let salt = match salt {
            Some(s) => s,
            None => {
                self.choose(&[(tenant, None)])?;
                self.lock().salt(tenant).expect("salt just created")
            }
        };
        Ok(tag_string(&hmac_raw(&salt, value)))
    }

    /// Like [`Keyring::hmac`], but never creates the salt: None for a tenant
    /// that has none yet (so nothing of it was ever tagged).
    pub fn hmac_if_salted(&self, tenant: &str, value: &[u8]) -> Option<String> {
        let salt = self.lock().salt(tenant)?;
        Some(tag_string(&hmac_raw(&salt, value)))
    }

    /// Crypto-shredding: destroys every key (current and rotated) of the
    /// subject. Returns how many keys were destroyed and the subject's tag.
    ///
    /// A family the subject belongs to is destroyed too, once every other
    /// member's key has a record of its own. Its members must be noted up to
    /// Members are noted as their keys are handed out; after a restart, the
    /// ledger notes again the entries logged since
    /// [`Keyring::members_durable_upto`] before it takes requests.
    pub fn erase(&self, tenant: &str, subject: &str) -> Result<(usize, Option<String>)> {
        if !self.members_ready() {
            return Err(Error::Key(
                "the keyring is still noting subject key family members from the log: try the erasure again in a moment".into(),
            ));
        }
        let _destroying = self.destroying.lock().expect("keyring destroying lock");
        let mut state = self.lock();
        // Keys other nodes made for this subject are destroyed too.
        self.pull(&mut state)?;
        let Some(tag) = state.tag(tenant, subject) else {
            return Ok((0, None));
        };
        let mut doomed = Vec::new();
        for (number, r) in self.records.subject_records(tenant, &tag)? {
            let (meta, _) = decode(&r).ok_or_else(|| self.corrupt(number))?;
            if meta.live
                && kind_is_subject_key(meta.kind)
                && meta.tenant == tenant
                && meta.tag == tag
            {
                doomed.push((number, meta));
            }
        }
        // (family, its creation time, member tag, member key)
        let mut keep: Vec<(u64, u64, [u8; 32], [u8; 32])> = Vec::new();
        let families = match &self.members {
            Some(_) => self.families_of(&mut state, tenant, &tag)?,
            None => Vec::new(),
        };
        let mut retired = Vec::new();
        let planned = (|| -> Result<()> {
            for (number, meta, secret) in families {
                let members = self.members.as_ref().expect("families only with members");
                if !members.contains(number, &tag)? {
                    continue;
                }
                // From now on, no new event is sealed under it.
                state.retire(number, &meta.tag);
                retired.push(number);
                let family = FamilyKey::new(&secret);
                for other in members.members(number)? {
                    if other != tag && !self.has_derived_record(number, tenant, &other)? {
                        let key = family.derive(number, tenant, &other);
                        keep.push((number, meta.created, other, key));
                    }
                }
                doomed.push((number, meta));
            }
            Ok(())
        })();
        if let Err(e) = planned {
            state.unretire(&retired);
            return Err(e);
        }
        drop(state);
        let done = (|| -> Result<usize> {
            if !keep.is_empty() {
                // Durable before the family goes: a crash in between leaves
                // both, and the erasure, asked again, finds the records made.
                self.add_durably(|ring, state, new| {
                    for (family, created, other, key) in &keep {
                        let from = Some((*family, *created));
                        ring.create_with(state, new, DERIVED, tenant, *other, *key, from)?;
                    }
                    Ok(())
                })?;
            }
            // Every kept key durable, also those an erasure cut short wrote
            // (found again above): after a failed flush this refuses, as
            // adding keys does, rather than destroy a family whose members'
            // keys may be lost.
            let count = self.lock().count;
            self.make_durable(count)?;
            self.destroy(&mut self.lock(), doomed)
        })();
        let destroyed = match done {
            Ok(n) => n,
            Err(e) => {
                // Not erased: the families seal again (one that was zeroed
                // after all is found destroyed when next read).
                self.lock().unretire(&retired);
                return Err(e);
            }
        };
        Ok((destroyed, Some(tag_string(&tag))))
    }

    /// The live families of the bucket `tag` falls in (every period's),
    /// with their keys.
    fn families_of(
        &self,
        state: &mut State,
        tenant: &str,
        tag: &[u8; 32],
    ) -> Result<Vec<(u64, Meta, [u8; 32])>> {
        let ft = family_tag(tenant, bucket(tag));
        let mut out = Vec::new();
        for (number, r) in self.records.subject_records(tenant, &ft)? {
            let (meta, wrapped) = decode(&r).ok_or_else(|| self.corrupt(number))?;
            if meta.live && meta.kind == FAMILY && meta.tenant == tenant && meta.tag == ft {
                let secret = match state.subject_keys.peek(&number) {
                    Some((_, k)) => *k,
                    None => self.provider.unwrap(&wrapped, &aad(number, &meta))?,
                };
                out.push((number, meta, secret));
            }
        }
        Ok(out)
    }

    fn has_derived_record(&self, family: u64, tenant: &str, tag: &[u8; 32]) -> Result<bool> {
        for (number, r) in self.records.subject_records(tenant, tag)? {
            let (meta, _) = decode(&r).ok_or_else(|| self.corrupt(number))?;
            if meta.kind == DERIVED && meta.live && meta.from == family && meta.tag == *tag {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Notes that subjects (tags) have events sealed under families (key
    /// ids): what the ledger does for the entries logged since
    /// [`Keyring::members_durable_upto`] when it starts (keys handed out
    /// since were noted as they were, but only in memory). Pairs whose key
    /// is not a family's are ignored.
    pub fn note_members(&self, members: &[(u64, &str)]) -> Result<()> {
        let Some(index) = &self.members else {
            return Ok(());
        };
        let mut noted = Vec::with_capacity(members.len());
        // Few distinct keys among many entries: each record read once.
        let mut families: HashMap<u64, bool> = HashMap::new();
        for (id, tag) in members {
            if let Some(tag) = crate::family::parse_tag(tag) {
                if *families.entry(*id).or_insert_with(|| self.is_family(*id)) {
                    noted.push((*id, tag));
                }
            }
        }
        index.note(noted)
    }

    /// Every log entry below `log_size` was sealed under a key handed out
    /// (and so its member noted) before now: the ledger says so of its
    /// log's size from time to time, and a restart notes entries again from
    /// the last size said before members were written.
    ///
    /// Ignored while members are being noted again (the index must not say
    /// it holds entries it has not been shown yet).
    pub fn members_cover(&self, log_size: u64) {
        if let (Some(index), true) = (&self.members, self.members_ready()) {
            index.cover(log_size);
        }
    }

    /// Where noting members starts again after a restart: entries
    /// `0..members_durable_upto()` are noted durably.
    pub fn members_durable_upto(&self) -> u64 {
        self.members.as_ref().map_or(0, MemberIndex::durable_upto)
    }

    /// Writes the members held in memory (at shutdown, so that a restart
    /// notes fewer entries again).
    pub fn flush_members(&self) -> Result<()> {
        match &self.members {
            Some(m) => m.flush(),
            None => Ok(()),
        }
    }

    /// Whether every member of every family is noted (false while the
    /// ledger notes again, at start, the entries logged since the member
    /// index was last written; erasures wait for it).
    pub fn members_ready(&self) -> bool {
        self.members_ready.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// See [`Keyring::members_ready`].
    pub fn set_members_ready(&self, ready: bool) {
        self.members_ready
            .store(ready, std::sync::atomic::Ordering::SeqCst);
    }

    /// Writes the member index if the log grew since it was last written
    /// (what a restart would note again), or members wait in memory.
    pub fn write_members_if_behind(&self) -> Result<()> {
        match &self.members {
            Some(m) => m.write_if_behind(),
            None => Ok(()),
        }
    }

    /// Whether key `id` is a family's, whose members are noted.
    pub fn is_family_key(&self, id: u64) -> bool {
        self.members.is_some() && self.is_family(id)
    }

    /// Derive new subjects' keys from families (`true`) or give each
    /// subject a random key of its own. Only a keyring file keeps families:
    /// a store shared by several nodes refuses (each node would have to see
    /// every other's members before an erasure).
    pub fn set_families(&self, on: bool) -> Result<()> {
        if on && self.members.is_none() {
            return Err(Error::Unsupported(format!(
                "{} is shared by several nodes: subject key families need a keyring file",
                self.records.describe()
            )));
        }
        self.families
            .store(on, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The kind of key a new subject's events are sealed under.
    fn subject_kind(&self) -> u8 {
        if self.families.load(std::sync::atomic::Ordering::Relaxed) {
            FAMILY
        } else {
            SUBJECT_KEY
        }
    }

    /// The tag the key of `kind` for a subject tagged `tag` is found by.
    fn key_tag(&self, tenant: &str, tag: &[u8; 32], kind: u8) -> [u8; 32] {
        if kind == FAMILY {
            family_tag(tenant, bucket(tag))
        } else {
            *tag
        }
    }

    /// How many keys of `subject` are live and how many already destroyed,
    /// changing nothing (what an erasure would destroy, for a preview).
    pub fn subject_keys(&self, tenant: &str, subject: &str) -> Result<(usize, usize)> {
        let mut state = self.lock();
        self.pull(&mut state)?;
        let Some(tag) = state.tag(tenant, subject) else {
            return Ok((0, 0));
        };
        let (mut live, mut destroyed) = (0, 0);
        for (number, r) in self.records.subject_records(tenant, &tag)? {
            let (meta, _) = decode(&r).ok_or_else(|| self.corrupt(number))?;
            if kind_is_subject_key(meta.kind) && meta.tenant == tenant && meta.tag == tag {
                if meta.live {
                    live += 1;
                } else {
                    destroyed += 1;
                }
            }
        }
        // The families it belongs to (live ones are destroyed with it).
        if let Some(members) = &self.members {
            let ft = family_tag(tenant, bucket(&tag));
            for (number, r) in self.records.subject_records(tenant, &ft)? {
                let (meta, _) = decode(&r).ok_or_else(|| self.corrupt(number))?;
                if meta.kind == FAMILY && meta.tag == ft && members.contains(number, &tag)? {
                    if meta.live {
                        live += 1;
                    } else {
                        destroyed += 1;
                    }
                }
            }
        }
        Ok((live, destroyed))
    }

    /// Crypto-shredding: each record's wrapped key is overwritten with zeros
    /// in place, durably, then forgotten here.
    fn destroy(&self, state: &mut State, doomed: Vec<(u64, Meta)>) -> Result<usize> {
        let writes: Vec<(u64, Record)> = doomed
            .iter()
            .map(|(number, m)| {
                let mut gone = m.clone();
                gone.live = false;
                (*number, encode(&gone, None))
            })
            .collect();
        // Whatever happens to the write, nothing cached may outlive it.
        state.epoch += 1;
        for (number, m) in &doomed {
            if kind_has_tag(m.kind) {
                state.forget_subject_key(*number);
            }
        }
        self.records.overwrite(&writes)?;
        for (number, m) in &doomed {
            if kind_is_subject_key(m.kind) {
                state.subjects.live = state.subjects.live.saturating_sub(1);
                state.subjects.destroyed += 1;
                state.retired.remove(number);
            } else {
                state.destroyed_tenant_record(*number);
            }
        }
        Ok(writes.len())
    }

    /// New current data keys for every tenant and subject; old ones keep
    /// decrypting what they sealed. Salts never rotate. Returns the count.
    ///
    /// Keys created up to the second the rotation began are replaced.
    /// Subjects are rotated chunk by chunk in one pass over the store: a
    /// subject whose newest key is younger than the rotation is skipped, so a
    /// rotation cut short is finished by running it again (it starts from
    /// the moment the store recorded for the one cut short).
    pub fn rotate(&self) -> Result<usize> {
        let since = match self.records.rotation_started()? {
            Some(t) => t,
            None => {
                let t = now();
                self.records.set_rotation_started(Some(t))?;
                t
            }
        };
        let tenants = self.add_durably(|ring, state, new| {
            let mut todo: Vec<String> = state
                .tenant_current
                .iter()
                .filter(|(_, n)| state.tenant_records[n].created <= since)
                .map(|(t, _)| t.clone())
                .collect();
            todo.sort();
            for tenant in &todo {
                ring.create(state, new, TENANT_KEY, tenant, [0; 32])?;
            }
            Ok(todo.len())
        })?;
        let subjects = self.pass(
            "rotate",
            |chunk| {
                Ok(chunk
                    .into_iter()
                    .filter(|(_, m)| {
                        matches!(m.kind, SUBJECT_KEY | FAMILY) && m.live && m.created <= since
                    })
                    .collect())
            },
            |found| {
                let mut tags: Vec<(String, [u8; 32], u8)> = found
                    .into_iter()
                    .map(|(_, m)| (m.tenant, m.tag, m.kind))
                    .collect();
                tags.sort();
                tags.dedup();
                self.add_durably(|ring, state, new| {
                    let mut made = 0;
                    for (tenant, tag, kind) in &tags {
                        // Only a subject (or family) with no key younger
                        // than the rotation.
                        if ring
                            .current_subject_key(state, tenant, *tag, since + 1, *kind)?
                            .is_none()
                        {
                            ring.create(state, new, *kind, tenant, *tag)?;
                            made += 1;
                        }
                    }
                    Ok(made)
                })
            },
        )?;
        self.records.set_rotation_started(None)?;
        Ok(tenants + subjects)
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

    /// Re-wraps every record not under the current master key, chunk by
    /// chunk (a pass cut short is finished at the next start, while the
    /// provider still holds the old key), then lets the provider retire it.
    fn rewrap_all(&self) -> Result<usize> {
        let current = self.provider.current_id();
        let count = self.pass(
            "rotate-master",
            |chunk| {
                Ok(chunk
                    .into_iter()
                    .filter(|(_, m)| m.live && m.master != current)
                    .collect())
            },
            |found| {
                let ring = self;
                let mut state = self.lock();
                let mut writes = Vec::with_capacity(found.len());
                for (n, _) in found {
                    // Re-read under the lock: an erasure may have come between.
                    let Some(r) = ring.records.get(n)? else {
                        continue;
                    };
                    let (m2, wrapped) = decode(&r).ok_or_else(|| ring.corrupt(n))?;
                    if !m2.live || m2.master == current {
                        continue;
                    }
                    let secret = ring.provider.unwrap(&wrapped, &aad(n, &m2))?;
                    let w = ring.provider.wrap(&secret, &aad(n, &m2))?;
                    let mut rewrapped = m2;
                    rewrapped.master = w.master;
                    writes.push((n, encode(&rewrapped, Some(&w)), rewrapped));
                }
                let records: Vec<(u64, Record)> = writes.iter().map(|(n, r, _)| (*n, *r)).collect();
                ring.records.overwrite(&records)?;
                for (n, _, m) in &writes {
                    if let Some(held) = state.tenant_records.get_mut(n) {
                        held.master = m.master;
                    }
                    if let Some((held, _)) = state.subject_keys.get_mut(n) {
                        held.master = m.master;
                    }
                }
                Ok(writes.len())
            },
        )?;
        self.provider.finish_rotation()?;
        Ok(count)
    }

    pub fn stats(&self) -> KeyringStats {
        let pass = ring_pass(self).as_ref().map(|(_, p)| p.clone());
        let state = self.lock();
        let mut s = KeyringStats {
            tenants: state.salts.len(),
            subject_keys: state.subjects.live as usize,
            destroyed_keys: state.subjects.destroyed as usize,
            pass,
            ..Default::default()
        };
        for m in state.tenant_records.values() {
            match (m.live, m.kind) {
                (false, _) => s.destroyed_keys += 1,
                (true, TENANT_KEY) => s.tenant_keys += 1,
                _ => {}
            }
        }
        s
    }

    /// The length in bytes of the keyring's file image now (its header and
    /// every record). A backup takes it once, then copies that many bytes
    /// with [`Keyring::image_range`]: records added meanwhile are not its
    /// business, and the length never shrinks.
    pub fn image_len(&self) -> Result<u64> {
        Ok(HEADER_LEN + self.records.count()? * RECORD as u64)
    }

    /// Bytes `[offset, offset + len)` of the keyring's file image (wrapped
    /// keys only: useless without the master key), so that a keyring of
    /// millions of subjects is copied a piece at a time, never held whole.
    /// Records are read whole, each as it was before or after an overwrite
    /// (an erasure, a re-wrap), never half of each. Not under the keyring's
    /// lock: a backup must not stall ingest.
    pub fn image_range(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let have = self.image_len()?;
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= have)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "bytes {offset}..+{len} are past the end of the keyring's image"
                ))
            })?;
        let mut out = Vec::with_capacity(len as usize);
        if offset < HEADER_LEN {
            let header = self.records.image_header()?;
            out.extend_from_slice(&header[offset as usize..end.min(HEADER_LEN) as usize]);
        }
        if end > HEADER_LEN {
            let first = offset.max(HEADER_LEN) - HEADER_LEN;
            let last = end - HEADER_LEN;
            let (from, to) = (first / RECORD as u64, last.div_ceil(RECORD as u64));
            let records = self.records.scan(from, (to - from) as usize)?;
            let contiguous = records.len() as u64 == to - from
                && records.iter().zip(from..).all(|((n, _), want)| *n == want);
            if !contiguous {
                return Err(Error::Corrupt(format!(
                    "{}: records {from}..{to} are not all there",
                    self.records.describe()
                )));
            }
            let skip = (first - from * RECORD as u64) as usize;
            let bytes = records.iter().flat_map(|(_, r)| r.iter().copied());
            out.extend(bytes.skip(skip).take((last - first) as usize));
        }
        Ok(out)
    }

    /// Makes a new live record (not yet written: see [`Keyring::add_durably`]).
    fn create(
        &self,
        state: &mut State,
        new: &mut Vec<Record>,
        kind: u8,
        tenant: &str,
        tag: [u8; 32],
    ) -> Result<(u64, [u8; 32])> {
        if tenant.is_empty() || tenant.len() > MAX_TENANT {
            return Err(Error::Invalid(format!(
                "tenant {tenant:?} must be 1 to {MAX_TENANT} bytes"
            )));
        }
        let secret = random32()?;
        self.create_with(state, new, kind, tenant, tag, secret, None)
    }

    /// Makes a new live record of `secret`. A derived key's comes `from` its
    /// family (number, creation time), whose creation time it takes: what
    /// retention goes by is when the key began sealing, and a family's
    /// members' keys began with it.
    #[allow(clippy::too_many_arguments)]
    fn create_with(
        &self,
        state: &mut State,
        new: &mut Vec<Record>,
        kind: u8,
        tenant: &str,
        tag: [u8; 32],
        secret: [u8; 32],
        from: Option<(u64, u64)>,
    ) -> Result<(u64, [u8; 32])> {
        let number = state.count;
        let (from, created) = from.unwrap_or((0, now()));
        let mut meta = Meta {
            kind,
            live: true,
            created,
            tenant: tenant.to_string(),
            tag,
            master: [0; 8],
            from,
        };
        let wrapped = self.provider.wrap(&secret, &aad(number, &meta))?;
        meta.master = wrapped.master;
        new.push(encode(&meta, Some(&wrapped)));
        state.count += 1;
        if kind_has_tag(kind) {
            if kind_is_subject_key(kind) {
                state.subjects.live += 1;
            }
            if kind != DERIVED {
                // (A derived key is read back only once its family is gone.)
                state.remember_subject_key(number, meta, secret);
            }
        } else {
            state.secrets.insert(number, secret);
            state.index(number, &meta);
            state.tenant_records.insert(number, meta);
        }
        Ok((number, secret))
    }
}

/// Shows a pass in [`Keyring::stats`] while it runs, however it ends.
struct PassShown<'a> {
    ring: &'a Keyring,
    id: u64,
}

impl<'a> PassShown<'a> {
    fn new(ring: &'a Keyring, operation: &'static str, records: u64) -> PassShown<'a> {
        let id = ring
            .passes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *ring_pass(ring) = Some((
            id,
            PassProgress {
                operation,
                started: now(),
                records_done: 0,
                records,
            },
        ));
        PassShown { ring, id }
    }

    fn at(&self, records_done: u64) {
        if let Some((id, p)) = ring_pass(self.ring).as_mut() {
            if *id == self.id {
                p.records_done = records_done.min(p.records);
            }
        }
    }
}

fn ring_pass(ring: &Keyring) -> std::sync::MutexGuard<'_, Option<(u64, PassProgress)>> {
    ring.pass.lock().expect("pass lock")
}

impl Drop for PassShown<'_> {
    fn drop(&mut self) {
        let mut held = ring_pass(self.ring);
        if held.as_ref().is_some_and(|(id, _)| *id == self.id) {
            *held = None;
        }
    }
}

/// Whether `r` is a well-formed keyring record (its checksum holds).
pub fn valid_record(r: &Record) -> bool {
    decode(r).is_some()
}

impl State {
    /// A key this state answers for without the store: Some(None) for a
    /// salt or a destroyed tenant key, None when the store must be asked.
    fn held_key(&mut self, id: u64) -> Option<Option<[u8; 32]>> {
        if let Some(m) = self.tenant_records.get(&id) {
            return Some(if m.kind == SALT {
                None
            } else {
                self.secrets.get(&id).copied()
            });
        }
        // A family's key seals nothing itself: see `Keyring::key_for`.
        self.subject_keys
            .get(&id)
            .map(|(m, k)| (m.kind != FAMILY).then_some(*k))
    }

    fn remember_subject_key(&mut self, number: u64, meta: Meta, key: [u8; 32]) {
        let newer = self
            .subject_current
            .peek(&meta.tag)
            .is_none_or(|held| *held <= number);
        if newer {
            self.subject_current.insert(meta.tag, number);
        }
        self.subject_keys.insert(number, (meta, key));
    }

    /// An erasure that failed gives its families back.
    fn unretire(&mut self, numbers: &[u64]) {
        for n in numbers {
            self.retired.remove(n);
        }
    }

    /// Family `number` (tagged `ft`) seals no new event.
    fn retire(&mut self, number: u64, ft: &[u8; 32]) {
        self.retired.insert(number);
        if self.subject_current.peek(ft) == Some(&number) {
            self.subject_current.remove(ft);
        }
    }

    /// Family `id`'s key ready to derive from, if its key is held.
    fn family_key(&mut self, id: u64) -> Option<FamilyKey> {
        if let Some(f) = self.family_keys.get(&id) {
            return Some(f.clone());
        }
        let (m, secret) = self.subject_keys.get(&id)?;
        if m.kind != FAMILY || !m.live {
            return None;
        }
        let f = FamilyKey::new(secret);
        self.family_keys.insert(id, f.clone());
        Some(f)
    }

    fn forget_subject_key(&mut self, number: u64) {
        self.family_keys.remove(&number);
        if let Some((m, _)) = self.subject_keys.remove(&number) {
            if self.subject_current.peek(&m.tag) == Some(&number) {
                self.subject_current.remove(&m.tag);
            }
        }
    }

    /// The cached newest key of `kind` (a subject key or a family) of
    /// (tenant, tag), if it is fresh enough.
    fn cached_subject_key(
        &mut self,
        tenant: &str,
        tag: [u8; 32],
        fresh_after: u64,
        kind: u8,
    ) -> Option<(u64, [u8; 32])> {
        let number = *self.subject_current.get(&tag)?;
        if self.retired.contains(&number) {
            return None;
        }
        let (m, key) = self.subject_keys.get(&number)?;
        (m.live && m.kind == kind && m.tag == tag && m.tenant == tenant && m.created >= fresh_after)
            .then_some((number, *key))
    }

    /// What an event of `subject` is sealed under, given the key found for
    /// it: that key, or when it is a family's, the key derived from it.
    fn subject_choice(
        &mut self,
        number: u64,
        key: [u8; 32],
        tenant: &str,
        subject: [u8; 32],
        kind: u8,
    ) -> KeyChoice {
        if kind != FAMILY {
            return KeyChoice {
                key_id: number,
                key,
                subject_tag: Some(tag_string(&subject)),
            };
        }
        let family = match self.family_keys.get(&number) {
            Some(f) => f.clone(),
            None => {
                let f = FamilyKey::new(&key);
                self.family_keys.insert(number, f.clone());
                f
            }
        };
        KeyChoice {
            key_id: number,
            key: family.derive(number, tenant, &subject),
            subject_tag: Some(tag_string(&subject)),
        }
    }

    /// Tenant record `number` was destroyed: its secret is forgotten, and it
    /// is no longer anyone's current key.
    fn destroyed_tenant_record(&mut self, number: u64) {
        let Some(m) = self.tenant_records.get_mut(&number) else {
            return;
        };
        m.live = false;
        self.secrets.remove(&number);
        self.tenant_current.retain(|_, n| *n != number);
        self.salts.retain(|_, n| *n != number);
    }

    /// Drops records `from..` (`unwritten`, never written) and rebuilds the lookups.
    fn forget_from(&mut self, from: u64, unwritten: &[Record]) {
        let subjects = unwritten
            .iter()
            .filter(|r| kind_is_subject_key(crate::records::record_kind(r)))
            .count();
        self.subjects.live = self.subjects.live.saturating_sub(subjects as u64);
        for n in numbers_from(self.subject_keys.iter().map(|(n, _)| *n), from) {
            self.forget_subject_key(n);
        }
        // Also what was cached of them after they left the key cache: their
        // numbers go to the next records.
        for n in numbers_from(self.family_keys.iter().map(|(n, _)| *n), from) {
            self.family_keys.remove(&n);
        }
        let stale: Vec<[u8; 32]> = self
            .subject_current
            .iter()
            .filter(|(_, n)| **n >= from)
            .map(|(t, _)| *t)
            .collect();
        for t in stale {
            self.subject_current.remove(&t);
        }
        self.tenant_records.retain(|n, _| *n < from);
        self.secrets.retain(|n, _| *n < from);
        self.count = from;
        self.salts.clear();
        self.tenant_current.clear();
        let records = std::mem::take(&mut self.tenant_records);
        for (n, m) in &records {
            self.index(*n, m);
        }
        self.tenant_records = records;
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
                // The newest is current, whatever order records arrive in.
                let current = self
                    .tenant_current
                    .entry(m.tenant.clone())
                    .or_insert(number);
                *current = (*current).max(number);
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

    /// The current key of a tenant, if it is live and was created at or
    /// after `fresh_after`.
    fn current(&self, tenant: &str, fresh_after: u64) -> Option<u64> {
        let n = *self.tenant_current.get(tenant)?;
        let m = &self.tenant_records[&n];
        (m.live && m.tenant == tenant && m.created >= fresh_after).then_some(n)
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
    fn the_image_is_copied_in_pieces_that_are_the_file_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let ring = open(dir.path());
        let subjects: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
        let wants: Vec<(&str, Option<&str>)> =
            subjects.iter().map(|s| ("t", Some(s.as_str()))).collect();
        ring.choose(&wants).unwrap();
        ring.erase("t", "s7").unwrap();
        let file = fs::read(dir.path().join(KEYRING_FILE)).unwrap();
        let len = ring.image_len().unwrap();
        assert_eq!(len, file.len() as u64);
        // Pieces that start and end inside the header and inside records.
        for piece in [1, 7, 64, 100, 256, 1000] {
            let mut copy = Vec::new();
            let mut at = 0;
            while at < len {
                let n = piece.min(len - at);
                copy.extend(ring.image_range(at, n).unwrap());
                at += n;
            }
            assert_eq!(copy, file, "pieces of {piece} bytes");
        }
        assert!(ring.image_range(len - 1, 2).is_err());
        assert!(ring.image_range(u64::MAX, 2).is_err());
        assert!(ring.image_range(len, 0).unwrap().is_empty());
        // A store without a file of its own gives the same records.
        let (_dir, _shared, a, _b) = two_nodes();
        a.choose(&wants).unwrap();
        let whole = a.records.snapshot().unwrap();
        let len = a.image_len().unwrap();
        assert_eq!(len, whole.len() as u64);
        assert_eq!(a.image_range(0, len).unwrap(), whole);
        assert_eq!(a.image_range(70, 300).unwrap(), whole[70..370]);
    }

    /// The subject-key cache is keyed by tag alone. Tags differ per tenant
    /// (each has its own salt), but a tag that came up under another tenant
    /// must still not hand out this tenant's key.
    #[test]
    fn a_cached_subject_key_is_never_handed_to_another_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let ring = open(dir.path());
        ring.choose(&[("a", Some("alice")), ("b", None)]).unwrap();
        let mut state = ring.lock();
        let tag = state.tag("a", "alice").unwrap();
        assert!(state.cached_subject_key("a", tag, 0, SUBJECT_KEY).is_some());
        assert_eq!(state.cached_subject_key("b", tag, 0, SUBJECT_KEY), None);
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
        // A preview counts what an erasure would destroy, and changes nothing.
        assert_eq!(ring.subject_keys("a", "alice").unwrap(), (2, 0));
        assert_eq!(ring.subject_keys("a", "nobody").unwrap(), (0, 0));
        assert_eq!(
            ring.subject_keys("no-such-tenant", "alice").unwrap(),
            (0, 0)
        );
        assert_eq!(fs::read(dir.path().join(KEYRING_FILE)).unwrap(), before);
        let (n, tag) = ring.erase("a", "alice").unwrap();
        assert_eq!(ring.subject_keys("a", "alice").unwrap(), (0, 2));
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

    /// `stats` shows a pass over every record while it runs, however it
    /// ends, and nothing once it has.
    #[test]
    fn a_pass_over_the_keyring_is_shown_while_it_runs_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let ring = open(dir.path());
        ring.choose(&[("t", Some("a")), ("t", Some("b"))]).unwrap();
        assert_eq!(ring.stats().pass, None);
        let seen = std::sync::Mutex::new(Vec::new());
        ring.pass("rotate", Ok, |found| {
            seen.lock().unwrap().push(ring.stats().pass);
            Ok(found.len())
        })
        .unwrap();
        let seen = seen.into_inner().unwrap();
        let records = ring.lock().count;
        assert_eq!(
            seen,
            [Some(PassProgress {
                operation: "rotate",
                started: seen[0].as_ref().map_or(0, |p| p.started),
                records_done: 0,
                records,
            })]
        );
        assert!(seen[0].as_ref().unwrap().started > 0);
        assert_eq!(ring.stats().pass, None);
        let failed = ring.pass("expire", |_| Err(Error::Key("no".into())), |_| Ok(0));
        assert!(failed.is_err());
        assert_eq!(ring.stats().pass, None, "a pass that failed is not shown");
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
            .map(|c| {
                decode(&ring.records.get(c.key_id).unwrap().unwrap())
                    .unwrap()
                    .0
                    .created
            })
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

    /// A shared store that counts how it is asked for subjects' records.
    #[derive(Default)]
    struct CountedRecords {
        inner: Arc<SharedRecords>,
        one_by_one: std::sync::atomic::AtomicUsize,
        batched: std::sync::atomic::AtomicUsize,
    }

    impl RecordStore for Arc<CountedRecords> {
        fn load(&self) -> Result<(Vec<Record>, u64)> {
            self.inner.load()
        }
        fn append(&self, at: u64, records: &[Record]) -> Result<bool> {
            self.inner.append(at, records)
        }
        fn overwrite(&self, records: &[(u64, Record)]) -> Result<()> {
            self.inner.overwrite(records)
        }
        fn changes(&self, mark: u64) -> Result<(Vec<(u64, Record)>, u64)> {
            self.inner.changes(mark)
        }
        fn shared(&self) -> bool {
            true
        }
        fn describe(&self) -> String {
            "the counted test store".into()
        }
        fn subject_records(&self, tenant: &str, tag: &[u8; 32]) -> Result<Vec<(u64, Record)>> {
            self.one_by_one
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.subject_records(tenant, tag)
        }
        fn subjects_records(&self, wanted: &[(&str, [u8; 32])]) -> Result<Vec<(u64, Record)>> {
            self.batched
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut out = Vec::new();
            for (tenant, tag) in wanted {
                out.extend(self.inner.subject_records(tenant, tag)?);
            }
            Ok(out)
        }
    }

    #[test]
    fn a_batch_of_subjects_asks_the_store_once() {
        let dir = tempfile::tempdir().unwrap();
        let m = master_in(dir.path());
        let store = Arc::new(CountedRecords::default());
        let a = Keyring::open_with(Box::new(store.clone()), m.clone()).unwrap();
        let names: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();
        let wants: Vec<(&str, Option<&str>)> =
            names.iter().map(|n| ("t", Some(n.as_str()))).collect();
        let made = a.choose(&wants).unwrap();
        // Another node sees half of them again, and half new ones.
        let b = Keyring::open_with(Box::new(store.clone()), m).unwrap();
        let more: Vec<String> = (50..150).map(|i| format!("s{i}")).collect();
        let wants: Vec<(&str, Option<&str>)> =
            more.iter().map(|n| ("t", Some(n.as_str()))).collect();
        let seen = b.choose(&wants).unwrap();
        for i in 0..50 {
            assert_eq!(seen[i].key_id, made[50 + i].key_id, "found, not made again");
        }
        assert_eq!(
            store.one_by_one.load(std::sync::atomic::Ordering::SeqCst),
            0
        );
        assert_eq!(store.batched.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(b.stats().subject_keys, 150);
    }

    /// The keyring file, with what has been made durable of it tracked
    /// apart, flushes slowed down and failed on request.
    struct Flushed {
        inner: FileRecords,
        written: std::sync::atomic::AtomicU64,
        durable: std::sync::atomic::AtomicU64,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Flushed {
        fn open(dir: &Path) -> Arc<Flushed> {
            let inner = FileRecords::open(dir, |r| decode(r).is_some()).unwrap();
            let n = inner.count().unwrap();
            Arc::new(Flushed {
                inner,
                written: n.into(),
                durable: n.into(),
                fail: false.into(),
            })
        }
    }

    impl RecordStore for Arc<Flushed> {
        fn load(&self) -> Result<(Vec<Record>, u64)> {
            self.inner.load()
        }
        fn append(&self, at: u64, records: &[Record]) -> Result<bool> {
            self.append_deferred(at, records)?;
            self.sync()?;
            Ok(true)
        }
        fn append_deferred(&self, at: u64, records: &[Record]) -> Result<bool> {
            let done = self.inner.append_deferred(at, records)?;
            self.written.store(
                at + records.len() as u64,
                std::sync::atomic::Ordering::SeqCst,
            );
            Ok(done)
        }
        fn sync(&self) -> Result<()> {
            use std::sync::atomic::Ordering::SeqCst;
            let written = self.written.load(SeqCst);
            // A slow disk: a wide window for a key to be used too early.
            std::thread::sleep(std::time::Duration::from_millis(2));
            if self.fail.load(SeqCst) {
                return Err(Error::Io(std::io::Error::other("injected flush failure")));
            }
            self.inner.sync()?;
            self.durable.fetch_max(written, SeqCst);
            Ok(())
        }
        fn overwrite(&self, records: &[(u64, Record)]) -> Result<()> {
            self.inner.overwrite(records)
        }
        fn describe(&self) -> String {
            self.inner.describe()
        }
        fn count(&self) -> Result<u64> {
            self.inner.count()
        }
        fn get(&self, number: u64) -> Result<Option<Record>> {
            self.inner.get(number)
        }
    }

    /// Records are flushed outside the keyring's lock, so a batch can find
    /// a key another batch made whose flush is still under way: no key is
    /// returned before its record is durable, whoever made it.
    #[test]
    fn no_key_is_handed_out_before_its_record_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Flushed::open(dir.path());
        let ring = Keyring::open_with(Box::new(store.clone()), master_in(dir.path())).unwrap();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (ring, store) = (&ring, &store);
                s.spawn(move || {
                    for i in 0..40u64 {
                        // Subjects the threads share, and one new each time.
                        // Every other batch only names subjects that may
                        // have keys already (found without a write).
                        let mut names = vec![format!("shared-{i}"), format!("shared-{}", i + 1)];
                        if i % 2 == 0 {
                            names.push(format!("own-{t}-{i}"));
                        }
                        let mut wants: Vec<(&str, Option<&str>)> =
                            names.iter().map(|n| ("t", Some(n.as_str()))).collect();
                        wants.push(("t", None));
                        for chosen in ring.choose(&wants).unwrap() {
                            let durable = store.durable.load(std::sync::atomic::Ordering::SeqCst);
                            assert!(
                                chosen.key_id < durable,
                                "key {} handed out with {durable} records durable",
                                chosen.key_id
                            );
                        }
                    }
                });
            }
        });
        assert_eq!(ring.stats().subject_keys, 41 + 4 * 20);
    }

    /// After a failed flush no new key is handed out (what it covered may be
    /// lost even if a later flush succeeds); opening the keyring again
    /// flushes the file and goes on.
    #[test]
    fn after_a_failed_flush_no_new_key_is_handed_out_until_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let store = Flushed::open(dir.path());
        let ring = Keyring::open_with(Box::new(store.clone()), master_in(dir.path())).unwrap();
        let first = ring.choose(&[("t", Some("a"))]).unwrap();
        assert!(!ring.flush_failed());
        store.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(ring.choose(&[("t", Some("b"))]).is_err());
        assert!(ring.flush_failed());
        store.fail.store(false, std::sync::atomic::Ordering::SeqCst);
        let again = ring.choose(&[("t", Some("c"))]);
        assert!(again.is_err(), "a flush after a failed one is not trusted");
        assert!(ring.lookup(&[("t", Some("b"))]).is_none());
        drop(ring);
        let store = Flushed::open(dir.path());
        let ring = Keyring::open_with(Box::new(store.clone()), master_in(dir.path())).unwrap();
        assert!(!ring.flush_failed());
        let seen = ring.choose(&[("t", Some("a")), ("t", Some("c"))]).unwrap();
        assert_eq!(seen[0].key_id, first[0].key_id);
        assert!(seen[1].key_id < store.durable.load(std::sync::atomic::Ordering::SeqCst));
    }

    /// A master key made in `dir`.
    fn master_in(dir: &Path) -> Arc<dyn KeyProvider> {
        let (m, _) =
            LocalMasterKey::load(MasterKeySource::File(dir.join("master.key")), true).unwrap();
        Arc::new(m)
    }

    fn two_nodes() -> (tempfile::TempDir, Arc<SharedRecords>, Keyring, Keyring) {
        let dir = tempfile::tempdir().unwrap();
        let m = master_in(dir.path());
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
    fn keys_pulled_from_other_nodes_leave_the_lookup_lock_free() {
        let (_dir, _shared, a, b) = two_nodes();
        let wants = [("t", None), ("t", Some("alice"))];
        let from_b = b.choose(&wants).unwrap();
        assert!(b.lookup(&wants).is_some());
        // Another node's records are committed when pulled: b's keys stay
        // usable without a trip through `choose`.
        a.choose(&[("u", None), ("u", Some("bob"))]).unwrap();
        b.refresh().unwrap();
        let found = b.lookup(&wants).expect("cached keys after a refresh");
        assert_eq!(found[1].key, from_b[1].key);
        assert!(b.lookup(&[("u", None)]).is_some());
    }

    #[test]
    fn a_node_that_loses_the_race_renumbers_its_keys() {
        let (_dir, shared, a, b) = two_nodes();
        a.choose(&[("x", None)]).unwrap();
        b.refresh().unwrap();
        // Both plan record 2 next; b appends first, a must not clobber it.
        let by_b_meanwhile = {
            let mut state = a.lock();
            let before = state.count;
            let mut new = Vec::new();
            a.create(&mut state, &mut new, TENANT_KEY, "y", [0; 32])
                .unwrap();
            let by_b = b.choose(&[("z", None)]).unwrap();
            assert!(!a.records.append(before, &new).unwrap());
            state.forget_from(before, &new);
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
        // (b never held alice's first key: too old to use, it was not
        // unwrapped, so nothing of it is cached there to outlive the erasure.)
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
        fs::write(dir.path().join(KEYRING_FILE), a.records.snapshot().unwrap()).unwrap();
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

    /// A keyring file as versions before the index wrote it: no id in the
    /// header, no index (or layout 2's `keyring.idx`, which is dropped).
    fn make_pre_index(dir: &Path) {
        fs::remove_dir_all(dir.join(crate::INDEX_DIR)).unwrap();
        fs::write(dir.join(crate::OLD_INDEX_FILE), b"redb layout 2").unwrap();
        let path = dir.join(KEYRING_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[32..40].fill(0);
        assert!(bytes[18..64].iter().all(|&b| b == 0), "the old header");
        fs::write(&path, &bytes).unwrap();
    }

    #[test]
    fn a_keyring_from_before_the_index_is_indexed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let ring = open(dir.path());
        let subjects: Vec<String> = (0..300).map(|i| format!("subject-{i}")).collect();
        let wants: Vec<(&str, Option<&str>)> = subjects
            .iter()
            .map(|s| ("t", Some(s.as_str())))
            .chain([("t", None), ("u", Some("subject-0"))])
            .collect();
        let before = ring.choose(&wants).unwrap();
        ring.erase("t", "subject-7").unwrap();
        let stats = ring.stats();
        assert_eq!(stats.subject_keys, 300);
        assert_eq!(stats.destroyed_keys, 1);
        drop(ring);
        make_pre_index(dir.path());

        let again = open(dir.path());
        assert_eq!(again.stats(), stats, "counts rebuilt from the file");
        let after = again.choose(&wants).unwrap();
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            if i == 7 {
                assert!(a.key_id > b.key_id, "an erased subject gets a new key");
                assert!(again.destroyed(b.key_id));
            } else {
                assert_eq!((a.key_id, a.key), (b.key_id, b.key), "want {i}");
            }
        }
        // Erasure finds a subject's keys through the rebuilt index.
        assert_eq!(again.erase("t", "subject-8").unwrap().0, 1);
        assert_eq!(again.erase("u", "subject-0").unwrap().0, 1);
        assert_eq!(again.key(before[8].key_id), None);
        assert_eq!(again.key(before[9].key_id), Some(before[9].key));
        assert!(!dir.path().join(crate::OLD_INDEX_FILE).exists());
        let mode = fs::metadata(dir.path().join(crate::INDEX_DIR))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    fn copy_dir(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    #[test]
    fn an_index_left_from_before_a_rollback_is_built_anew() {
        let dir = tempfile::tempdir().unwrap();
        let saved = tempfile::tempdir().unwrap();
        let ring = open(dir.path());
        ring.choose(&[("t", Some("a")), ("t", Some("b"))]).unwrap();
        drop(ring);
        copy_dir(
            &dir.path().join(crate::INDEX_DIR),
            &saved.path().join(crate::INDEX_DIR),
        );
        // What a build writing layout 2 did after a rollback: an erasure
        // and a new key, which this index never saw.
        let ring = open(dir.path());
        assert_eq!(ring.erase("t", "a").unwrap().0, 1);
        ring.choose(&[("t", Some("c"))]).unwrap();
        let stats = ring.stats();
        drop(ring);
        fs::remove_dir_all(dir.path().join(crate::INDEX_DIR)).unwrap();
        copy_dir(
            &saved.path().join(crate::INDEX_DIR),
            &dir.path().join(crate::INDEX_DIR),
        );
        fs::write(dir.path().join(crate::OLD_INDEX_FILE), b"redb layout 2").unwrap();

        let again = open(dir.path());
        assert_eq!(again.stats(), stats, "counts include the erasure");
        assert!(!dir.path().join(crate::OLD_INDEX_FILE).exists());
        assert_eq!(again.erase("t", "c").unwrap().0, 1);
    }

    #[test]
    fn an_index_of_another_keyring_file_is_rebuilt() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        let a = open(one.path());
        a.choose(&[("t", Some("alice")), ("t", Some("bob"))])
            .unwrap();
        let b = open(two.path());
        // More records than the other index names, so only its id tells.
        let carol = b
            .choose(&[
                ("t", Some("carol")),
                ("t", Some("dave")),
                ("t", Some("erin")),
            ])
            .unwrap()[0]
            .clone();
        drop((a, b));
        fs::remove_dir_all(two.path().join(crate::INDEX_DIR)).unwrap();
        copy_dir(
            &one.path().join(crate::INDEX_DIR),
            &two.path().join(crate::INDEX_DIR),
        );
        let b = open(two.path());
        assert_eq!(b.stats().subject_keys, 3);
        assert_eq!(b.erase("t", "carol").unwrap().0, 1);
        assert_eq!(b.key(carol.key_id), None);
    }

    #[test]
    fn subject_keys_beyond_the_cache_are_read_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let ring = open(dir.path());
        let n = SUBJECT_CACHE + 1000;
        let subjects: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        let wants: Vec<(&str, Option<&str>)> =
            subjects.iter().map(|s| ("t", Some(s.as_str()))).collect();
        let chosen = ring.choose(&wants).unwrap();
        assert_eq!(ring.lock().subject_keys.len(), SUBJECT_CACHE);
        // The first ones were evicted: found again in the file, same keys.
        let again = ring.choose(&wants[..10]).unwrap();
        for (a, b) in again.iter().zip(&chosen) {
            assert_eq!((a.key_id, a.key), (b.key_id, b.key));
        }
        assert_eq!(ring.key(chosen[5].key_id), Some(chosen[5].key));
        assert_eq!(ring.stats().subject_keys, n);
        // An evicted subject is erased on disk too, and stays erased.
        ring.lock().subject_keys.clear();
        assert_eq!(ring.erase("t", "s3").unwrap().0, 1);
        assert_eq!(ring.key(chosen[3].key_id), None);
        drop(ring);
        let ring = open(dir.path());
        assert_eq!(ring.key(chosen[3].key_id), None);
        assert_eq!(ring.stats().subject_keys, n - 1);
    }

    #[test]
    fn a_rotation_cut_short_is_finished_by_running_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let ring = open(dir.path());
        let first = ring
            .choose(&[("t", None), ("t", Some("a")), ("t", Some("b"))])
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        // A rotation began (after the first keys) and got as far as subject
        // a before a crash.
        ring.records.set_rotation_started(Some(now() - 1)).unwrap();
        ring.set_max_key_age(std::time::Duration::ZERO);
        let a = ring.choose(&[("t", Some("a"))]).unwrap()[0].clone();
        ring.set_max_key_age(std::time::Duration::from_secs(3600));
        assert_ne!(a.key_id, first[1].key_id);
        drop(ring);
        let ring = open(dir.path());
        assert_eq!(ring.rotate().unwrap(), 2, "the tenant key and b only");
        let now_keys = ring
            .choose(&[("t", None), ("t", Some("a")), ("t", Some("b"))])
            .unwrap();
        assert_ne!(now_keys[0].key_id, first[0].key_id);
        assert_eq!(now_keys[1].key_id, a.key_id);
        assert_ne!(now_keys[2].key_id, first[2].key_id);
        assert_eq!(ring.records.rotation_started().unwrap(), None);
        // A full rotation from scratch replaces all three.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(ring.rotate().unwrap(), 3);
    }

    #[test]
    fn tenant_records_appended_while_a_node_opened_are_taken_in() {
        let (_dir, _shared, a, b) = two_nodes();
        let from_a = a.choose(&[("t", None)]).unwrap()[0].clone();
        {
            // b read the tenants' records before a appended and the count
            // after: it knows the numbers but not the records.
            let mut st = b.lock();
            *st = State {
                count: 2,
                ..State::default()
            };
        }
        b.refresh().unwrap();
        assert_eq!(b.hmac_if_salted("t", b"x"), a.hmac_if_salted("t", b"x"));
        assert_eq!(b.choose(&[("t", None)]).unwrap()[0].key_id, from_a.key_id);
    }

    #[test]
    fn keys_not_yet_indexed_are_found_erased_and_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let ring = open(dir.path());
        let c = ring
            .choose(&[("t", Some("a")), ("t", Some("b")), ("t", Some("c"))])
            .unwrap();
        // Still in the file's unindexed tail: found through it.
        ring.lock().subject_keys.clear();
        ring.lock().subject_current.clear();
        assert_eq!(ring.erase("t", "b").unwrap().0, 1);
        let again = ring.choose(&[("t", Some("a"))]).unwrap();
        assert_eq!(again[0].key_id, c[0].key_id);
        let stats = ring.stats();
        assert_eq!((stats.subject_keys, stats.destroyed_keys), (2, 1));
        drop(ring);
        let ring = open(dir.path());
        assert_eq!(ring.stats(), stats);
        assert_eq!(ring.key(c[1].key_id), None);
        assert_eq!(ring.erase("t", "c").unwrap().0, 1);
        drop(ring);
        let ring = open(dir.path());
        assert_eq!(ring.stats().destroyed_keys, 2);
    }

    fn with_families(dir: &Path) -> Keyring {
        let ring = open(dir);
        ring.set_families(true).unwrap();
        ring
    }

    /// `n` subjects of tenant `t` whose tags share one bucket.
    fn bucket_mates(ring: &Keyring, n: usize) -> Vec<String> {
        let bucket_of = |s: &str| {
            let tag = ring.hmac("t", s.as_bytes()).unwrap();
            crate::family::bucket(&crate::family::parse_tag(&tag).unwrap())
        };
        let want = bucket_of("s0");
        (0..)
            .map(|i| format!("s{i}"))
            .filter(|s| bucket_of(s) == want)
            .take(n)
            .collect()
    }

    /// Keys for events of every one of `subjects` (tenant `t`), in one batch.
    fn choose_all<'a>(
        ring: &Keyring,
        subjects: &'a [String],
    ) -> (Vec<(&'static str, Option<&'a str>)>, Vec<KeyChoice>) {
        let wants: Vec<(&str, Option<&str>)> =
            subjects.iter().map(|s| ("t", Some(s.as_str()))).collect();
        let chosen = ring.choose(&wants).unwrap();
        (wants, chosen)
    }

    fn key_of(ring: &Keyring, c: &KeyChoice) -> Option<[u8; 32]> {
        ring.key_for(c.key_id, c.subject_tag.as_deref())
    }

    #[test]
    fn family_keys_are_derived_per_subject_and_make_no_record_per_subject() {
        let dir = tempfile::tempdir().unwrap();
        let ring = with_families(dir.path());
        let names: Vec<String> = (0..300).map(|i| format!("user-{i}")).collect();
        let wants: Vec<(&str, Option<&str>)> =
            names.iter().map(|s| ("t", Some(s.as_str()))).collect();
        let c = ring.choose(&wants).unwrap();
        let records = ring.lock().count;
        let buckets: std::collections::HashSet<u64> = c.iter().map(|c| c.key_id).collect();
        // The salt and one family per bucket used: no record per subject.
        assert_eq!(records, 1 + buckets.len() as u64);
        assert!(
            buckets.len() < 300,
            "300 subjects in 4,096 buckets share some"
        );
        let keys: std::collections::HashSet<[u8; 32]> = c.iter().map(|c| c.key).collect();
        assert_eq!(keys.len(), 300, "a key per subject");
        for choice in &c {
            assert_eq!(key_of(&ring, choice), Some(choice.key));
            // A family's own key opens nothing.
            assert_eq!(ring.key(choice.key_id), None);
            assert_eq!(ring.key_for(choice.key_id, None), None);
        }
        // The same subject again: the same key, from the lock-free lookup too.
        let again = ring.choose(&wants[..1]).unwrap();
        assert_eq!((again[0].key_id, again[0].key), (c[0].key_id, c[0].key));
        let looked = ring.lookup(&wants[..1]).unwrap();
        assert_eq!(looked[0].key, c[0].key);
        assert_eq!(ring.stats().subject_keys, buckets.len(), "a key per family");
        drop(ring);
        // Nothing cached: derived again from the stored family.
        let ring = open(dir.path());
        for choice in &c {
            assert_eq!(key_of(&ring, choice), Some(choice.key));
        }
        // Families off again: the subjects' events stay readable, and a new
        // subject gets a key of its own.
        let own = ring.choose(&[("t", Some("newcomer"))]).unwrap();
        assert!(ring.key(own[0].key_id).is_some());
        assert_eq!(ring.key(own[0].key_id), Some(own[0].key));
    }

    #[test]
    fn erasing_a_member_destroys_its_family_and_keeps_every_other_members_key() {
        let dir = tempfile::tempdir().unwrap();
        let ring = with_families(dir.path());
        let mates = bucket_mates(&ring, 3);
        let (wants, c) = choose_all(&ring, &mates);
        let family = c[0].key_id;
        assert!(c.iter().all(|c| c.key_id == family));
        let (destroyed, tag) = ring.erase("t", &mates[0]).unwrap();
        assert_eq!(tag.as_deref(), c[0].subject_tag.as_deref());
        assert_eq!(destroyed, 1, "the family");
        assert_eq!(key_of(&ring, &c[0]), None);
        assert_eq!(key_of(&ring, &c[1]), Some(c[1].key));
        assert_eq!(key_of(&ring, &c[2]), Some(c[2].key));
        // The family's wrapped key is zeroed on disk.
        let file = fs::read(dir.path().join(KEYRING_FILE)).unwrap();
        let at = offset(family) as usize;
        assert_eq!(file[at + 4], DESTROYED);
        assert!(file[at + 121..at + 193].iter().all(|b| *b == 0));
        let stats = ring.stats();
        assert_eq!(
            (stats.subject_keys, stats.destroyed_keys),
            (2, 1),
            "two keys kept on their own, the family destroyed"
        );
        // Later events of the bucket get a new family.
        let later = ring.choose(&wants[1..2]).unwrap();
        assert_ne!(later[0].key_id, family);
        assert_ne!(later[0].key, c[1].key);
        drop(ring);
        let ring = open(dir.path());
        assert_eq!(key_of(&ring, &c[0]), None);
        assert_eq!(key_of(&ring, &c[1]), Some(c[1].key));
        assert_eq!(key_of(&ring, &later[0]), Some(later[0].key));
        // Erasing a member whose key was kept destroys that record.
        // Live: its key kept on its own and the bucket's new family; destroyed:
        // the first family.
        assert_eq!(ring.subject_keys("t", &mates[1]).unwrap(), (2, 1));
        assert_eq!(ring.erase("t", &mates[1]).unwrap().0, 2);
        assert_eq!(key_of(&ring, &c[1]), None);
        assert_eq!(key_of(&ring, &later[0]), None);
        assert_eq!(key_of(&ring, &c[2]), Some(c[2].key));
        assert_eq!(ring.subject_keys("t", &mates[1]).unwrap(), (0, 3));
    }

    #[test]
    fn a_kept_key_is_as_old_as_its_family_for_retention() {
        let dir = tempfile::tempdir().unwrap();
        let ring = with_families(dir.path());
        let mates = bucket_mates(&ring, 2);
        let (_, c) = choose_all(&ring, &mates);
        let family_created = {
            let r = ring.records.get(c[0].key_id).unwrap().unwrap();
            decode(&r).unwrap().0.created
        };
        // The erasure comes in a later second than the family was made.
        while now() <= family_created {
            std::thread::yield_now();
        }
        ring.erase("t", &mates[0]).unwrap();
        let tag1 = crate::family::parse_tag(c[1].subject_tag.as_deref().unwrap()).unwrap();
        let kept = ring.records.subject_records("t", &tag1).unwrap();
        let (meta, _) = decode(&kept[0].1).unwrap();
        assert_eq!((meta.kind, meta.from), (DERIVED, c[0].key_id));
        assert_eq!(meta.created, family_created);
        // So retention that takes the family's period takes the kept key.
        assert_eq!(
            ring.expire("t", family_created + 1).unwrap(),
            2,
            "the tenant key and the kept key"
        );
        assert_eq!(key_of(&ring, &c[1]), None);
    }

    #[test]
    fn an_erasure_leaves_families_the_subject_is_not_in() {
        let dir = tempfile::tempdir().unwrap();
        let ring = with_families(dir.path());
        let mates = bucket_mates(&ring, 2);
        let c = ring.choose(&[("t", Some(mates[0].as_str()))]).unwrap();
        // mates[1] has no events (none noted): nothing of mates[0]'s goes.
        assert_eq!(ring.erase("t", &mates[1]).unwrap().0, 0);
        assert_eq!(key_of(&ring, &c[0]), Some(c[0].key));
    }

    #[test]
    fn an_erasure_cut_short_after_keeping_keys_finishes_when_asked_again() {
        let dir = tempfile::tempdir().unwrap();
        let ring = with_families(dir.path());
        let mates = bucket_mates(&ring, 2);
        let (_, c) = choose_all(&ring, &mates);
        // The keys kept, as the first step of the erasure writes them, and
        // then the process dies before the family is destroyed.
        let family = c[0].key_id;
        let tag1 = crate::family::parse_tag(c[1].subject_tag.as_deref().unwrap()).unwrap();
        let key1 = c[1].key;
        ring.add_durably(|ring, state, new| {
            ring.create_with(state, new, DERIVED, "t", tag1, key1, Some((family, now())))
        })
        .unwrap();
        drop(ring);
        let ring = with_families(dir.path());
        // As the ledger does at start: members noted again from the log.
        let logged: Vec<(u64, &str)> = c
            .iter()
            .map(|c| (c.key_id, c.subject_tag.as_deref().unwrap()))
            .collect();
        ring.note_members(&logged).unwrap();
        assert_eq!(key_of(&ring, &c[0]), Some(c[0].key), "not erased yet");
        assert_eq!(ring.erase("t", &mates[0]).unwrap().0, 1);
        assert_eq!(key_of(&ring, &c[0]), None);
        assert_eq!(key_of(&ring, &c[1]), Some(c[1].key));
        // The key kept before is not kept twice.
        assert_eq!(ring.stats().subject_keys, 1);
        assert_eq!(ring.stats().destroyed_keys, 1);
    }

    #[test]
    fn families_rotate_and_expire_like_subject_keys() {
        let dir = tempfile::tempdir().unwrap();
        let ring = with_families(dir.path());
        let old = ring.choose(&[("t", Some("alice"))]).unwrap();
        ring.records.set_rotation_started(Some(now() + 1)).unwrap();
        ring.rotate().unwrap();
        let new = ring.choose(&[("t", Some("alice"))]).unwrap();
        assert_ne!(new[0].key_id, old[0].key_id, "a new family");
        assert_eq!(key_of(&ring, &old[0]), Some(old[0].key));
        ring.expire("t", now() + 10).unwrap();
        assert_eq!(key_of(&ring, &old[0]), None);
        assert_eq!(key_of(&ring, &new[0]), None);
    }

    #[test]
    fn a_shared_store_keeps_no_families() {
        let (_dir, _shared, a, _b) = two_nodes();
        assert!(matches!(a.set_families(true), Err(Error::Unsupported(_))));
    }
}
