//! The log's signing key: `<data-dir>/log.key` holds it as a signed-note
//! private key string (mode 0600); `<data-dir>/log.vkey` holds the public
//! verifier key for convenience.

use crate::config::DEFAULT_ORIGIN;
use aiaudit_tlog::Signer;
use anyhow::{bail, Context};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

pub const KEY_FILE: &str = "log.key";
pub const VKEY_FILE: &str = "log.vkey";

/// The signing key given in the environment instead of `<data-dir>/log.key`
/// (a signed-note private key string): how a container platform hands a
/// Secret to every node of a shared log without a file whose mode it
/// cannot make 0600 (Kubernetes adds group read to Secret files under an
/// `fsGroup`).
pub const LOG_KEY_ENV: &str = "AIAUDIT_LOG_KEY";

/// Loads the signing key (`AIAUDIT_LOG_KEY`, else `log.key`), or creates
/// one for `origin` on first start. A different `origin` than the stored
/// one is refused: a log's identity never changes.
pub fn load_or_create(dir: &Path, origin: Option<&str>) -> anyhow::Result<Signer> {
    let from_env = std::env::var(LOG_KEY_ENV)
        .ok()
        .filter(|k| !k.trim().is_empty());
    match from_env {
        Some(key) => load_given(dir, origin, &key),
        None => load_or_create_file(dir, origin),
    }
}

/// The key from the environment. A `log.key` in the data directory must be
/// the same key: two identities for one data directory is a mistake to stop
/// at, not to settle silently.
fn load_given(dir: &Path, origin: Option<&str>, key: &str) -> anyhow::Result<Signer> {
    let signer = Signer::parse(key.trim())
        .map_err(|e| anyhow::anyhow!("{LOG_KEY_ENV} holds no valid signing key: {e}"))?;
    check_origin(&signer, origin, LOG_KEY_ENV)?;
    let path = dir.join(KEY_FILE);
    if path.exists() {
        let on_disk = load_or_create_file(dir, None)?;
        if on_disk.to_skey() != signer.to_skey() {
            bail!(
                "{LOG_KEY_ENV} and {} hold different keys: remove one (a log has one identity)",
                path.display()
            );
        }
    }
    // The public key beside it is the given key's, whatever was there:
    // tools (validate, verify) trust this file.
    let vkey = dir.join(VKEY_FILE);
    let wanted = format!("{}\n", signer.verifier().to_vkey());
    if fs::read_to_string(&vkey).ok().as_deref() != Some(wanted.as_str()) {
        fs::write(&vkey, wanted)?;
    }
    Ok(signer)
}

fn check_origin(signer: &Signer, origin: Option<&str>, holder: &str) -> anyhow::Result<()> {
    if let Some(origin) = origin {
        if origin != signer.name() {
            bail!(
                "{holder} holds the key of the log {:?}; --origin {:?} differs (a log's origin cannot change)",
                signer.name(),
                origin
            );
        }
    }
    Ok(())
}

fn load_or_create_file(dir: &Path, origin: Option<&str>) -> anyhow::Result<Signer> {
    let path = dir.join(KEY_FILE);
    if path.exists() {
        check_private(&path)?;
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let signer = Signer::parse(text.trim())
            .with_context(|| format!("{} holds no valid signing key", path.display()))?;
        check_origin(&signer, origin, "the data directory")?;
        return Ok(signer);
    }
    let origin = origin.unwrap_or(DEFAULT_ORIGIN);
    let signer = generate(origin)?;
    let tmp = dir.join(format!(".{KEY_FILE}.tmp"));
    let _ = fs::remove_file(&tmp);
    write_new_key_file(&tmp, &signer)?;
    fs::rename(&tmp, &path)?;
    fs::write(
        dir.join(VKEY_FILE),
        format!("{}\n", signer.verifier().to_vkey()),
    )?;
    fs::File::open(dir)?.sync_all()?;
    eprintln!(
        "aiaudit: created signing key {} for log {:?}",
        path.display(),
        origin
    );
    Ok(signer)
}

/// Refuses a secret file other users may read or write.
pub fn check_private(path: &Path) -> anyhow::Result<()> {
    let mode = fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by other users (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(())
}

/// Files whose exposure is a leak, not a mode to fix: refused at start.
pub const SECRET_FILES: &[&str] = &[KEY_FILE, "master.key", "admin.token", "keyring"];

/// From now on this process creates files 0600 and directories 0700.
pub fn private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Makes the data directory private: from now on this process creates
/// files 0600 and directories 0700 (umask 077), and what is already there
/// is narrowed to the same (the log, the search index and the id index hold
/// every event's clear fields). Returns how many modes were narrowed.
pub fn make_private(dir: &Path) -> anyhow::Result<usize> {
    private_umask();
    fn walk(path: &Path, narrowed: &mut usize) -> anyhow::Result<()> {
        let meta = fs::symlink_metadata(path)?;
        let secret = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| SECRET_FILES.contains(&n));
        // A secret others could read may have leaked: its loader refuses
        // to start (check_private) rather than quietly narrow it.
        if meta.file_type().is_symlink() || secret {
            return Ok(());
        }
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o700))
                .with_context(|| format!("narrowing the mode of {}", path.display()))?;
            *narrowed += 1;
        }
        if meta.is_dir() {
            for entry in fs::read_dir(path)? {
                walk(&entry?.path(), narrowed)?;
            }
        }
        Ok(())
    }
    let mut narrowed = 0;
    walk(dir, &mut narrowed)?;
    Ok(narrowed)
}

/// A new Ed25519 key named `name` (a log's origin, or an emitter's name).
pub fn generate(name: &str) -> anyhow::Result<Signer> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)
        .map_err(|e| anyhow::anyhow!("reading randomness for the key: {e}"))?;
    Signer::from_seed(name, seed).with_context(|| format!("key name {name:?}"))
}

/// Writes a private key file (signed-note private key string) that must not
/// exist yet, mode 0600, fsync'd.
pub fn write_new_key_file(path: &Path, signer: &Signer) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    writeln!(f, "{}", signer.to_skey())?;
    f.sync_all()?;
    Ok(())
}

/// The default master key file, when neither `--master-key-file` nor
/// `AIAUDIT_MASTER_KEY` is given.
pub const MASTER_KEY_FILE: &str = "master.key";

/// Subject key families on a keyring file: new subjects' keys come from
/// families if `on`, and the members of entries logged since the member
/// index was last written are noted again in the background (keys handed
/// out since were noted only in memory). Erasures wait until that is done
/// ([`aiaudit_keyring::Keyring::members_ready`]); nothing else does, so a
/// restart after a crash stays fast. Done whether or not families are on
/// now: a log may hold events sealed under families from when they were.
/// The member index is then written every [`MEMBERS_EVERY`] when behind.
pub fn start_families(
    keyring: &Arc<aiaudit_keyring::Keyring>,
    store: &Arc<dyn aiaudit_store::Storage>,
    on: bool,
) -> anyhow::Result<()> {
    keyring.set_families(on)?;
    let size = store.size();
    let from = keyring.members_durable_upto().min(size);
    keyring.set_members_ready(from == size);
    // Weak: the thread must not keep the keyring (and its member index,
    // written when dropped) alive past the ledger.
    let (ring, log) = (Arc::downgrade(keyring), store.clone());
    std::thread::Builder::new()
        .name("members".into())
        .spawn(move || {
            if from < size {
                let Some(keyring) = ring.upgrade() else { return };
                let started = std::time::Instant::now();
                match note_members_again(&keyring, &*log, from, size) {
                    Ok(noted) => {
                        tracing::info!(
                            entries = size - from,
                            subjects = noted,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "keyring members noted again from the log"
                        );
                    }
                    Err(e) => {
                        // Erasures stay refused (they would miss members):
                        // a restart tries again.
                        tracing::error!(error = %e, "noting keyring members from the log failed: erasures are refused until a restart");
                        return;
                    }
                }
            }
            drop(log);
            loop {
                std::thread::sleep(MEMBERS_EVERY);
                let Some(keyring) = ring.upgrade() else { return };
                if let Err(e) = keyring.write_members_if_behind() {
                    tracing::warn!(error = %e, "writing the keyring's member index");
                }
            }
        })
        .context("starting the member index thread")?;
    Ok(())
}

/// How often the member index is written when the log grew: a restart
/// after a crash notes again at most this long's entries.
pub const MEMBERS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Notes the family members of entries `from..size`; returns how many.
fn note_members_again(
    keyring: &aiaudit_keyring::Keyring,
    store: &dyn aiaudit_store::Storage,
    from: u64,
    size: u64,
) -> anyhow::Result<u64> {
    let mut noted = 0u64;
    let mut at = from;
    while at < size {
        let end = size.min(at + 4_096);
        let mut pairs: Vec<(u64, String)> = Vec::new();
        store.for_each_entry(at, end, &mut |_, bytes| {
            let Ok(stored) = aiaudit_event::envelope::decode_stored(bytes) else {
                // `aiaudit verify` reports it; it holds no member to note.
                return;
            };
            if let (Some(sealed), Some(tag)) =
                (&stored.sealed, crate::sealing::subject_tag(&stored))
            {
                pairs.push((sealed.key, tag.to_string()));
            }
        })?;
        let borrowed: Vec<(u64, &str)> = pairs.iter().map(|(k, t)| (*k, t.as_str())).collect();
        keyring.note_members(&borrowed)?;
        noted += borrowed.len() as u64;
        at = end;
    }
    // Every member noted: erasures may go on, and the index may say so.
    keyring.set_members_ready(true);
    keyring.members_cover(size);
    // Written now: a crash right after notes nothing twice.
    keyring.flush_members()?;
    Ok(noted)
}

/// Loads the master key (environment, else file) and opens the keyring.
/// A missing master key file is generated only for a keyring that does not
/// exist yet: otherwise its keys would be wrapped by a key that is gone.
///
/// On a shared backend the keyring lives with the log, so every node seals
/// and opens with the same keys; a keyring file left in the data directory
/// (a node that ran before the keyring was shared) is moved into it first.
///
/// `joining`: this node came with the identity of an existing log (its key
/// from `AIAUDIT_LOG_KEY` or a copied `log.key`). On a shared log such a node
/// never makes a master key of its own, even while the keyring is still
/// empty: the other nodes would seal with theirs, and each would then
/// refuse the others' data keys.
pub fn open_keyring(
    config: &crate::LedgerConfig,
    store: &dyn aiaudit_store::Storage,
    joining: bool,
) -> anyhow::Result<aiaudit_keyring::Keyring> {
    use aiaudit_keyring::master::{MASTER_KEY_ENV, PREVIOUS_MASTER_KEY_ENV};
    use aiaudit_keyring::{Keyring, LocalMasterKey, MasterKeySource, KEYRING_FILE};
    let shared = store.key_records();
    let local_ring = config.data_dir.join(KEYRING_FILE);
    let ring_exists = local_ring.exists()
        || match &shared {
            Some(records) => joining || records.count()? > 0,
            None => false,
        };
    let source = match std::env::var(MASTER_KEY_ENV) {
        Ok(current) if !current.is_empty() => MasterKeySource::Env {
            current,
            previous: std::env::var(PREVIOUS_MASTER_KEY_ENV)
                .ok()
                .filter(|s| !s.is_empty()),
        },
        _ => MasterKeySource::File(
            config
                .master_key_file
                .clone()
                .unwrap_or_else(|| config.data_dir.join(MASTER_KEY_FILE)),
        ),
    };
    let (provider, created) =
        LocalMasterKey::load(source.clone(), !ring_exists).with_context(|| match &source {
            MasterKeySource::File(p) if shared.is_some() && joining => format!(
                "loading the master key {}: this node joins an existing shared log (it was given the log's key), so it needs that log's master key ({MASTER_KEY_ENV}, --master-key-file, or a copy of the first node's master.key)",
                p.display()
            ),
            MasterKeySource::File(p) if ring_exists => format!(
                "loading the master key {} (the keyring {} needs the key that wrapped it)",
                p.display(),
                config.data_dir.join(KEYRING_FILE).display()
            ),
            MasterKeySource::File(p) => format!("loading the master key {}", p.display()),
            MasterKeySource::Env { .. } => format!("loading the master key from {MASTER_KEY_ENV}"),
        })?;
    if created {
        if let MasterKeySource::File(p) = &source {
            eprintln!(
                "aiaudit: created master key {} (mode 0600); keep a copy apart from the data and its backups (docs/security.md)",
                p.display()
            );
        }
    }
    let provider = std::sync::Arc::new(provider);
    match shared {
        Some(records) => {
            if local_ring.exists() {
                move_into_shared(&local_ring, &*records)?;
            }
            let what = records.describe();
            Keyring::open_with(records, provider).with_context(|| format!("opening {what}"))
        }
        None => Keyring::open(&config.data_dir, provider)
            .with_context(|| format!("opening the keyring in {}", config.data_dir.display())),
    }
}

/// Copies a keyring file into a shared keyring: appended when the shared
/// one is empty, accepted when the shared one already starts with the same
/// records. Anything else is refused: entries name keys by record number,
/// so two different keyrings cannot be merged. Returns the record count.
/// The file is read 16,384 records (4 MiB) at a time and appended in one
/// transaction: ten million subjects' keys (2.5 GB) are never held in
/// memory, and a copy cut short leaves nothing.
/// Refuses a keyring file holding a live subject key family: nodes sharing
/// a keyring keep no member index, so an erasure there could not keep a
/// family's other members' keys (docs/scaling.md).
pub fn check_shareable(file: &Path) -> anyhow::Result<()> {
    let mut chunks = FileChunks::open(file, 16_384)?;
    while let Some(records) = chunks.next()? {
        if records.iter().any(|r| {
            aiaudit_keyring::record_kind(r) == aiaudit_keyring::KIND_FAMILY
                && aiaudit_keyring::record_live(r)
        }) {
            bail!(
                "{} derives subjects' keys from subject key families, which a keyring shared by \
                 several nodes cannot erase from yet; see docs/scaling.md (subject key families)",
                file.display()
            );
        }
    }
    Ok(())
}

/// Whether a keyring file holds a family or a key kept from one (any state):
/// only builds with subject key families can serve its log.
pub fn holds_families(file: &Path) -> anyhow::Result<bool> {
    let mut chunks = FileChunks::open(file, 16_384)?;
    while let Some(records) = chunks.next()? {
        if records.iter().any(|r| {
            matches!(
                aiaudit_keyring::record_kind(r),
                aiaudit_keyring::KIND_FAMILY | aiaudit_keyring::KIND_DERIVED_KEY
            )
        }) {
            return Ok(true);
        }
    }
    Ok(false)
}

pub fn copy_into_shared(
    file: &Path,
    shared: &dyn aiaudit_keyring::RecordStore,
) -> anyhow::Result<usize> {
    check_shareable(file)?;
    copy_in_chunks(file, shared, 16_384)
}

fn copy_in_chunks(
    file: &Path,
    shared: &dyn aiaudit_keyring::RecordStore,
    chunk: u64,
) -> anyhow::Result<usize> {
    let mut mine = FileChunks::open(file, chunk)?;
    let theirs = shared.count()?;
    if theirs == 0 {
        let mut next = || mine.next();
        if !shared.append_streamed(0, &mut next)? {
            bail!(
                "another node added keys to {} while {} was being copied into it; run it again",
                shared.describe(),
                file.display()
            );
        }
        return Ok(mine.read as usize);
    }
    let differ = |mine: u64| {
        anyhow::anyhow!(
            "{} holds {mine} or more keyring records that differ from {} ({theirs} records): \
             content sealed under them would not open on other nodes; \
             see docs/scaling.md (one keyring per log)",
            file.display(),
            shared.describe(),
        )
    };
    loop {
        let from = mine.read;
        let Some(records) = mine.next()? else { break };
        if from + records.len() as u64 > theirs {
            return Err(differ(from + records.len() as u64));
        }
        let held = shared.scan(from, records.len())?;
        let same = held.len() == records.len()
            && held
                .iter()
                .zip(&records)
                .zip(from..)
                .all(|(((number, a), b), want)| *number == want && a == b);
        if !same {
            return Err(differ(mine.read));
        }
    }
    Ok(mine.read as usize)
}

/// A keyring file's records, a chunk at a time: checked (a torn last
/// record, whose append never returned, is left out; any other damage is
/// an error).
struct FileChunks {
    file: fs::File,
    what: String,
    /// Whole records in the file, and how many were handed out.
    whole: u64,
    read: u64,
    chunk: u64,
    done: bool,
}

impl FileChunks {
    fn open(path: &Path, chunk: u64) -> anyhow::Result<FileChunks> {
        use std::os::unix::fs::FileExt;
        let what = path.display().to_string();
        let file = fs::File::open(path).with_context(|| format!("reading {what}"))?;
        let len = file.metadata()?.len();
        let header_len = aiaudit_keyring::records::HEADER_LEN;
        let mut header = vec![0u8; header_len.min(len) as usize];
        file.read_exact_at(&mut header, 0)
            .with_context(|| format!("reading {what}"))?;
        // The header alone: is this a keyring file at all?
        aiaudit_keyring::records::parse_image(&header, &what, true, aiaudit_keyring::valid_record)?;
        Ok(FileChunks {
            file,
            what,
            whole: len.saturating_sub(header_len) / aiaudit_keyring::RECORD_LEN as u64,
            read: 0,
            chunk,
            done: false,
        })
    }

    fn next(&mut self) -> aiaudit_keyring::Result<Option<Vec<aiaudit_keyring::Record>>> {
        use aiaudit_keyring::RECORD_LEN;
        use std::os::unix::fs::FileExt;
        if self.done || self.read == self.whole {
            return Ok(None);
        }
        let n = self.chunk.min(self.whole - self.read);
        let mut bytes = vec![0u8; n as usize * RECORD_LEN];
        self.file.read_exact_at(
            &mut bytes,
            aiaudit_keyring::records::HEADER_LEN + self.read * RECORD_LEN as u64,
        )?;
        let mut records = Vec::with_capacity(n as usize);
        for r in bytes.chunks(RECORD_LEN) {
            let r: aiaudit_keyring::Record = r.try_into().expect("whole records");
            let number = self.read + records.len() as u64;
            if aiaudit_keyring::valid_record(&r) {
                records.push(r);
            } else if number + 1 == self.whole {
                self.done = true;
            } else {
                return Err(aiaudit_keyring::Error::Corrupt(format!(
                    "record {number} of {} fails its checksum",
                    self.what
                )));
            }
        }
        self.read += records.len() as u64;
        Ok((!records.is_empty()).then_some(records))
    }
}

/// [`copy_into_shared`], then the file is removed: a copy of wrapped keys
/// would outlive their erasure.
pub fn move_into_shared(
    file: &Path,
    shared: &dyn aiaudit_keyring::RecordStore,
) -> anyhow::Result<usize> {
    let records = copy_into_shared(file, shared)?;
    fs::remove_file(file).with_context(|| format!("removing {}", file.display()))?;
    if let Some(dir) = file.parent() {
        let old = dir.join(aiaudit_keyring::OLD_INDEX_FILE);
        if old.exists() {
            fs::remove_file(&old).with_context(|| format!("removing {}", old.display()))?;
        }
        let index = dir.join(aiaudit_keyring::INDEX_DIR);
        if index.exists() {
            fs::remove_dir_all(&index).with_context(|| format!("removing {}", index.display()))?;
        }
    }
    if let Some(dir) = file.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    tracing::info!(
        records,
        file = %file.display(),
        "keyring file moved into the shared keyring"
    );
    Ok(records)
}

/// How often a node of a shared log takes in keys other nodes created or
/// destroyed; also the longest an erasure on one node leaves the key usable
/// on another (docs/scaling.md).
pub const KEYRING_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// Pulls the shared keyring's changes every [`KEYRING_REFRESH`].
pub fn spawn_keyring_refresh(ring: std::sync::Arc<aiaudit_keyring::Keyring>) {
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            tokio::time::sleep(KEYRING_REFRESH).await;
            let r = ring.clone();
            match tokio::task::spawn_blocking(move || r.refresh()).await {
                Ok(Ok(())) => {
                    if failing {
                        tracing::info!("shared keyring reachable again");
                    }
                    failing = false;
                }
                Ok(Err(e)) if !failing => {
                    tracing::warn!(error = %e, "pulling the shared keyring");
                    failing = true;
                }
                _ => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiaudit_keyring::{Keyring, LocalMasterKey, MasterKeySource, Record, RecordStore};
    use std::sync::Mutex;

    /// A shared keyring held in memory; `race` makes the next append lose
    /// to another node.
    #[derive(Default)]
    struct Shared {
        records: Mutex<Vec<Record>>,
        race: std::sync::atomic::AtomicBool,
    }

    impl RecordStore for Shared {
        fn load(&self) -> aiaudit_keyring::Result<(Vec<Record>, u64)> {
            Ok((self.records.lock().unwrap().clone(), 0))
        }
        fn append(&self, at: u64, records: &[Record]) -> aiaudit_keyring::Result<bool> {
            let mut mine = self.records.lock().unwrap();
            if self.race.swap(false, std::sync::atomic::Ordering::SeqCst) || at != mine.len() as u64
            {
                return Ok(false);
            }
            mine.extend_from_slice(records);
            Ok(true)
        }
        fn overwrite(&self, records: &[(u64, Record)]) -> aiaudit_keyring::Result<()> {
            let mut mine = self.records.lock().unwrap();
            for (n, r) in records {
                mine[*n as usize] = *r;
            }
            Ok(())
        }
        fn describe(&self) -> String {
            "the shared keyring".into()
        }
    }

    /// A keyring file in `dir` holding keys of `tenants`.
    fn keyring_file(dir: &Path, tenants: &[&str]) -> std::path::PathBuf {
        let (master, _) =
            LocalMasterKey::load(MasterKeySource::File(dir.join(MASTER_KEY_FILE)), true).unwrap();
        let ring = Keyring::open(dir, std::sync::Arc::new(master)).unwrap();
        let wants: Vec<(&str, Option<&str>)> = tenants.iter().map(|t| (*t, None)).collect();
        ring.choose(&wants).unwrap();
        dir.join(aiaudit_keyring::KEYRING_FILE)
    }

    #[test]
    fn a_keyring_file_is_copied_into_an_empty_shared_keyring_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = keyring_file(dir.path(), &["acme", "globex"]);
        let shared = Shared::default();
        let n = copy_into_shared(&file, &shared).unwrap();
        // A salt and a tenant key for each tenant.
        assert_eq!(n, 4);
        assert_eq!(shared.load().unwrap().0.len(), 4);
        // The same records again are accepted without appending twice.
        assert_eq!(copy_into_shared(&file, &shared).unwrap(), 4);
        assert_eq!(shared.load().unwrap().0.len(), 4);
        // A shared keyring that has grown since still starts with them.
        let extra = shared.load().unwrap().0[0];
        shared.records.lock().unwrap().push(extra);
        assert_eq!(copy_into_shared(&file, &shared).unwrap(), 4);
    }

    #[test]
    fn a_keyring_file_is_copied_in_chunks_and_checked_record_by_record() {
        let dir = tempfile::tempdir().unwrap();
        let tenants: Vec<String> = (0..9).map(|i| format!("t{i}")).collect();
        let names: Vec<&str> = tenants.iter().map(String::as_str).collect();
        let file = keyring_file(dir.path(), &names);
        let whole = Shared::default();
        assert_eq!(copy_in_chunks(&file, &whole, 1000).unwrap(), 18);
        let by_fours = Shared::default();
        assert_eq!(copy_in_chunks(&file, &by_fours, 4).unwrap(), 18);
        assert_eq!(by_fours.load().unwrap().0, whole.load().unwrap().0);
        // Compared chunk by chunk against what the shared keyring holds.
        assert_eq!(copy_in_chunks(&file, &by_fours, 4).unwrap(), 18);
        by_fours.records.lock().unwrap()[13][100] ^= 1;
        let e = copy_in_chunks(&file, &by_fours, 4).unwrap_err();
        assert!(e.to_string().contains("differ"), "{e}");
        // A shared keyring holding only the first records is not this one.
        let part = Shared::default();
        let first: Vec<Record> = whole.load().unwrap().0[..7].to_vec();
        part.records.lock().unwrap().extend(first);
        let e = copy_in_chunks(&file, &part, 4).unwrap_err();
        assert!(e.to_string().contains("differ"), "{e}");
        // A damaged record in the middle copies nothing at all; a torn
        // last one is left out.
        let mut bytes = fs::read(&file).unwrap();
        bytes[64 + 9 * 256 + 30] ^= 1;
        fs::write(&file, &bytes).unwrap();
        let empty = Shared::default();
        let e = copy_in_chunks(&file, &empty, 4).unwrap_err();
        assert!(e.to_string().contains("record 9"), "{e}");
        assert!(empty.load().unwrap().0.is_empty());
        bytes[64 + 9 * 256 + 30] ^= 1;
        let last = bytes.len() - 100;
        bytes[last] ^= 1;
        fs::write(&file, &bytes).unwrap();
        assert_eq!(copy_in_chunks(&file, &empty, 4).unwrap(), 17);
    }

    #[test]
    fn different_keyrings_are_never_merged() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let shared = Shared::default();
        copy_into_shared(&keyring_file(a.path(), &["acme"]), &shared).unwrap();
        let other = keyring_file(b.path(), &["acme"]);
        let e = copy_into_shared(&other, &shared).unwrap_err();
        assert!(e.to_string().contains("differ"), "{e}");
        // Refused, the file stays where it was.
        assert!(move_into_shared(&other, &shared).is_err());
        assert!(other.exists());
    }

    #[test]
    fn a_copy_that_loses_a_race_is_refused_and_a_move_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = keyring_file(dir.path(), &["acme"]);
        let shared = Shared::default();
        shared.race.store(true, std::sync::atomic::Ordering::SeqCst);
        let e = copy_into_shared(&file, &shared).unwrap_err();
        assert!(e.to_string().contains("run it again"), "{e}");
        assert!(shared.load().unwrap().0.is_empty());
        // A copy of wrapped keys must not outlive the move.
        assert_eq!(move_into_shared(&file, &shared).unwrap(), 2);
        assert!(!file.exists());
        assert!(copy_into_shared(&dir.path().join("missing"), &shared).is_err());
    }

    #[test]
    fn a_log_keeps_its_key_and_origin() {
        let dir = tempfile::tempdir().unwrap();
        let made = load_or_create(dir.path(), Some("example.com/log")).unwrap();
        assert_eq!(made.name(), "example.com/log");
        let vkey = fs::read_to_string(dir.path().join(VKEY_FILE)).unwrap();
        assert_eq!(vkey.trim(), made.verifier().to_vkey());
        // Loaded again, with or without naming the origin: the same key.
        for origin in [None, Some("example.com/log")] {
            let again = load_or_create(dir.path(), origin).unwrap();
            assert_eq!(again.verifier().to_vkey(), made.verifier().to_vkey());
        }
        let e = load_or_create(dir.path(), Some("other.example/log")).unwrap_err();
        assert!(e.to_string().contains("cannot change"), "{e}");
        // A key file that is not one is refused, not replaced.
        fs::write(dir.path().join(KEY_FILE), "garbage").unwrap();
        assert!(load_or_create(dir.path(), None).is_err());
        // And a new key file is never written over an existing one.
        assert!(write_new_key_file(&dir.path().join(KEY_FILE), &made).is_err());
    }

    #[test]
    fn a_key_given_in_the_environment_is_the_logs_and_must_agree_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let given = generate("example.com/log").unwrap();
        let skey = given.to_skey();
        let loaded = load_given(dir.path(), Some("example.com/log"), &skey).unwrap();
        assert_eq!(loaded.verifier().to_vkey(), given.verifier().to_vkey());
        // No private key file is written; the public one is, for tools.
        assert!(!dir.path().join(KEY_FILE).exists());
        let vkey = fs::read_to_string(dir.path().join(VKEY_FILE)).unwrap();
        assert_eq!(vkey.trim(), given.verifier().to_vkey());
        // A stale public key file beside it is replaced.
        fs::write(dir.path().join(VKEY_FILE), "another log+00000000+AAAA\n").unwrap();
        load_given(dir.path(), None, &skey).unwrap();
        let vkey = fs::read_to_string(dir.path().join(VKEY_FILE)).unwrap();
        assert_eq!(vkey.trim(), given.verifier().to_vkey());
        // Another origin, a malformed key, a different key file: refused.
        let e = load_given(dir.path(), Some("other.example/log"), &skey).unwrap_err();
        assert!(e.to_string().contains("cannot change"), "{e}");
        assert!(load_given(dir.path(), None, "not a key").is_err());
        let other = generate("example.com/log").unwrap();
        write_new_key_file(&dir.path().join(KEY_FILE), &other).unwrap();
        let e = load_given(dir.path(), None, &skey).unwrap_err();
        assert!(e.to_string().contains("different keys"), "{e}");
        // The same key in both places is fine.
        assert!(load_given(dir.path(), None, &other.to_skey()).is_ok());
    }

    #[test]
    fn secrets_others_can_read_are_refused_and_other_files_narrowed() {
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let set = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
        load_or_create(dir.path(), None).unwrap();
        let key = dir.path().join(KEY_FILE);
        assert_eq!(mode(&key), 0o600);
        check_private(&key).unwrap();
        set(&key, 0o644);
        assert!(check_private(&key).is_err());
        assert!(load_or_create(dir.path(), None).is_err());

        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("index"), b"x").unwrap();
        set(&sub.join("index"), 0o664);
        set(&sub, 0o755);
        // Known modes for the rest, whatever the umask was when they were made.
        set(dir.path(), 0o700);
        set(&dir.path().join(VKEY_FILE), 0o600);
        // The exposed secret is left for its loader to refuse; the rest is narrowed.
        assert_eq!(make_private(dir.path()).unwrap(), 2);
        assert_eq!((mode(&sub), mode(&sub.join("index"))), (0o700, 0o600));
        assert_eq!(mode(&key), 0o644);
        assert_eq!(make_private(dir.path()).unwrap(), 0);
    }
}
