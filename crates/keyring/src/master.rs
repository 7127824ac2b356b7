//! The master key: it wraps every data key and is kept apart from the data.
//!
//! [`KeyProvider`] is the seam for a cloud KMS or Vault Transit: the keyring
//! only ever asks it to wrap and unwrap 32-byte data keys. [`LocalMasterKey`]
//! is the built-in provider, reading the key from a file or an environment
//! variable.

use crate::{Error, Result};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use sha2::{Digest, Sha256};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// A data key wrapped by a master key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wrapped {
    /// Which master key wrapped it ([`master_key_id`]).
    pub master: [u8; 8],
    pub nonce: [u8; 24],
    pub ct: [u8; 48],
}

/// Wraps and unwraps data keys. `aad` binds a wrapped key to the keyring
/// record holding it, so wrapped keys cannot be swapped between records.
pub trait KeyProvider: Send + Sync {
    /// The id of the master key new wraps use.
    fn current_id(&self) -> [u8; 8];
    fn wrap(&self, key: &[u8; 32], aad: &[u8]) -> Result<Wrapped>;
    fn unwrap(&self, wrapped: &Wrapped, aad: &[u8]) -> Result<[u8; 32]>;
    /// Starts a rotation: a new master key becomes current; the old one still unwraps.
    fn begin_rotation(&self) -> Result<()>;
    /// Ends a rotation once nothing is wrapped by the old key any more.
    fn finish_rotation(&self) -> Result<()>;
    /// Whether a rotation is under way (an old key still unwraps), so that
    /// opening the keyring must finish re-wrapping. Providers that cannot
    /// tell say true: the keyring then checks every record.
    fn rotating(&self) -> bool {
        true
    }
}

/// First 8 bytes of SHA-256("aiaudit master key" || key): names a master
/// key in keyring records without revealing anything about it.
pub fn master_key_id(key: &[u8; 32]) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(b"aiaudit master key");
    h.update(key);
    h.finalize()[..8].try_into().expect("8 bytes")
}

/// The environment variable holding a base64 master key.
pub const MASTER_KEY_ENV: &str = "AIAUDIT_MASTER_KEY";
/// The previous master key during a rotation by environment.
pub const PREVIOUS_MASTER_KEY_ENV: &str = "AIAUDIT_MASTER_KEY_PREVIOUS";

/// Where the built-in provider's key lives.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    /// A file holding the base64 key (mode 0600). `PATH.next` holds the new
    /// key while a rotation is under way.
    File(PathBuf),
    /// Base64 keys from the environment: the current one, and optionally the
    /// previous one (still unwraps, so the keyring re-wraps under the new one).
    Env {
        current: String,
        previous: Option<String>,
    },
}

struct Keys {
    current: [u8; 32],
    previous: Option<[u8; 32]>,
    /// `master_key_id(current)`, named in every record it wraps: a hash
    /// per wrap or unwrap saved.
    current_id: [u8; 8],
}

impl Keys {
    fn new(current: [u8; 32], previous: Option<[u8; 32]>) -> Keys {
        Keys {
            current,
            previous,
            current_id: master_key_id(&current),
        }
    }
}

/// The built-in master key provider.
pub struct LocalMasterKey {
    source: MasterKeySource,
    keys: RwLock<Keys>,
}

fn decode_key(text: &str, what: &str) -> Result<[u8; 32]> {
    B64.decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| Error::Key(format!("{what} is not a base64 32-byte key")))
}

fn random_key() -> Result<[u8; 32]> {
    let mut k = [0u8; 32];
    getrandom::getrandom(&mut k).map_err(|e| Error::Key(format!("no randomness: {e}")))?;
    Ok(k)
}

/// Reads a key file, refusing one that other users may read.
fn read_key_file(path: &Path) -> Result<[u8; 32]> {
    crate::check_private(path, fs::metadata(path)?.permissions().mode())?;
    decode_key(&fs::read_to_string(path)?, &path.display().to_string())
}

/// Writes a new key file (must not exist), mode 0600, fsync'd with its directory.
fn write_key_file(path: &Path, key: &[u8; 32]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{}", B64.encode(key))?;
    f.sync_all()?;
    sync_parent(path)
}

fn sync_parent(path: &Path) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()?;
    Ok(())
}

fn next_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".next");
    PathBuf::from(p)
}

impl LocalMasterKey {
    /// Loads the master key; with `create`, a missing key file is generated
    /// (0600). Returns the provider and whether a key was created.
    pub fn load(source: MasterKeySource, create: bool) -> Result<(LocalMasterKey, bool)> {
        let mut created = false;
        let keys = match &source {
            MasterKeySource::Env { current, previous } => Keys::new(
                decode_key(current, MASTER_KEY_ENV)?,
                previous
                    .as_deref()
                    .map(|p| decode_key(p, PREVIOUS_MASTER_KEY_ENV))
                    .transpose()?,
            ),
            MasterKeySource::File(path) => {
                if !path.exists() {
                    if !create {
                        return Err(Error::Key(format!("no master key at {}", path.display())));
                    }
                    write_key_file(path, &random_key()?)?;
                    created = true;
                }
                let stored = read_key_file(path)?;
                let next = next_path(path);
                if next.exists() {
                    Keys::new(read_key_file(&next)?, Some(stored))
                } else {
                    Keys::new(stored, None)
                }
            }
        };
        Ok((
            LocalMasterKey {
                source,
                keys: RwLock::new(keys),
            },
            created,
        ))
    }

    /// Whether an old key is still loaded (a rotation to finish).
    pub fn rotating(&self) -> bool {
        self.keys
            .read()
            .expect("master key lock")
            .previous
            .is_some()
    }
}

impl KeyProvider for LocalMasterKey {
    fn current_id(&self) -> [u8; 8] {
        self.keys.read().expect("master key lock").current_id
    }

    fn wrap(&self, key: &[u8; 32], aad: &[u8]) -> Result<Wrapped> {
        let keys = self.keys.read().expect("master key lock");
        let mut nonce = [0u8; 24];
        crate::random::fill(&mut nonce)?;
        let ct = aiaudit_xchacha::seal(&keys.current, &nonce, aad, key)
            .map_err(|_| Error::Key("wrapping failed".into()))?;
        Ok(Wrapped {
            master: keys.current_id,
            nonce,
            ct: ct.try_into().expect("32-byte key + 16-byte tag"),
        })
    }

    fn unwrap(&self, wrapped: &Wrapped, aad: &[u8]) -> Result<[u8; 32]> {
        let keys = self.keys.read().expect("master key lock");
        let master = if wrapped.master == keys.current_id {
            Some(keys.current)
        } else {
            keys.previous.filter(|k| master_key_id(k) == wrapped.master)
        };
        let master = master.ok_or_else(|| {
            Error::Key(format!(
                "a data key is wrapped by master key {} which is not loaded",
                hex::encode(wrapped.master)
            ))
        })?;
        let plain = aiaudit_xchacha::open(&master, &wrapped.nonce, aad, &wrapped.ct)
            .map_err(|_| Error::Key("a wrapped data key does not unwrap (tampered?)".into()))?;
        Ok(plain.try_into().expect("a data key is 32 bytes"))
    }

    fn begin_rotation(&self) -> Result<()> {
        let MasterKeySource::File(path) = &self.source else {
            return Err(Error::Unsupported(format!(
                "the master key comes from {MASTER_KEY_ENV}: rotate it by restarting with the new key in \
                 {MASTER_KEY_ENV} and the old one in {PREVIOUS_MASTER_KEY_ENV}; the keyring re-wraps at start"
            )));
        };
        let mut keys = self.keys.write().expect("master key lock");
        if keys.previous.is_some() {
            return Ok(()); // a rotation is already under way: finish it
        }
        let new = random_key()?;
        write_key_file(&next_path(path), &new)?;
        *keys = Keys::new(new, Some(keys.current));
        Ok(())
    }

    fn finish_rotation(&self) -> Result<()> {
        let mut keys = self.keys.write().expect("master key lock");
        if let MasterKeySource::File(path) = &self.source {
            let next = next_path(path);
            if next.exists() {
                fs::rename(&next, path)?;
                sync_parent(path)?;
            }
        }
        keys.previous = None;
        Ok(())
    }

    fn rotating(&self) -> bool {
        LocalMasterKey::rotating(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_private_key_file_and_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (m, created) = LocalMasterKey::load(MasterKeySource::File(path.clone()), true).unwrap();
        assert!(created);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let w = m.wrap(&[5; 32], b"r1").unwrap();
        assert_eq!(m.unwrap(&w, b"r1").unwrap(), [5; 32]);
        assert!(m.unwrap(&w, b"r2").is_err(), "aad binds the record");
        let (again, created) = LocalMasterKey::load(MasterKeySource::File(path), false).unwrap();
        assert!(!created);
        assert_eq!(again.unwrap(&w, b"r1").unwrap(), [5; 32]);
    }

    #[test]
    fn refuses_a_key_file_others_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        LocalMasterKey::load(MasterKeySource::File(path.clone()), true).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = LocalMasterKey::load(MasterKeySource::File(path), false)
            .err()
            .unwrap();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn rotation_keeps_the_old_key_until_finished_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (m, _) = LocalMasterKey::load(MasterKeySource::File(path.clone()), true).unwrap();
        let old = m.wrap(&[1; 32], b"").unwrap();
        m.begin_rotation().unwrap();
        assert_ne!(m.current_id(), old.master);
        assert_eq!(m.unwrap(&old, b"").unwrap(), [1; 32]);
        // A crash here: the next start loads both keys and knows to finish.
        let (reloaded, _) =
            LocalMasterKey::load(MasterKeySource::File(path.clone()), false).unwrap();
        assert!(reloaded.rotating());
        assert_eq!(reloaded.unwrap(&old, b"").unwrap(), [1; 32]);
        let new = reloaded.wrap(&[2; 32], b"").unwrap();
        reloaded.finish_rotation().unwrap();
        assert!(reloaded.unwrap(&old, b"").is_err());
        let (last, _) = LocalMasterKey::load(MasterKeySource::File(path), false).unwrap();
        assert!(!last.rotating());
        assert_eq!(last.unwrap(&new, b"").unwrap(), [2; 32]);
    }

    #[test]
    fn env_keys_rotate_by_restart_only() {
        let k = B64.encode([9u8; 32]);
        let (m, _) = LocalMasterKey::load(
            MasterKeySource::Env {
                current: k,
                previous: None,
            },
            false,
        )
        .unwrap();
        assert!(matches!(m.begin_rotation(), Err(Error::Unsupported(_))));
        assert!(LocalMasterKey::load(
            MasterKeySource::Env {
                current: "short".into(),
                previous: None
            },
            false
        )
        .is_err());
    }
}
