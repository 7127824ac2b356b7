//! Registered emitters: each has its own Ed25519 key, with which it may sign
//! batches (`<data-dir>/emitters.json`). Registration is an admin action.

use aiaudit_tlog::Verifier;
use anyhow::Context;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

pub const EMITTERS_FILE: &str = "emitters.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmitterRecord {
    pub name: String,
    /// Verifier key `<name>+<hex id>+<base64(0x01 || key)>`.
    pub verifier_key: String,
    pub registered_unix: u64,
    /// Tenants this emitter may append to when it authenticates by client
    /// certificate (mutual TLS) instead of a token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
}

#[derive(Serialize, Deserialize, Default)]
struct EmittersFile {
    version: u32,
    emitters: Vec<EmitterRecord>,
}

pub struct Emitters {
    path: PathBuf,
    by_name: RwLock<BTreeMap<String, EmitterRecord>>,
}

impl Emitters {
    pub fn open(dir: &Path) -> anyhow::Result<Emitters> {
        let path = dir.join(EMITTERS_FILE);
        let mut by_name = BTreeMap::new();
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let file: EmittersFile = serde_json::from_str(&text)
                .with_context(|| format!("{} is not an emitter registry", path.display()))?;
            if file.version != 1 {
                anyhow::bail!("{}: unknown version {}", path.display(), file.version);
            }
            for e in file.emitters {
                Verifier::parse(&e.verifier_key)
                    .with_context(|| format!("{}: emitter {:?}", path.display(), e.name))?;
                by_name.insert(e.name.clone(), e);
            }
        }
        Ok(Emitters {
            path,
            by_name: RwLock::new(by_name),
        })
    }

    /// Registers (or replaces the key of) an emitter. `public_key` is a
    /// verifier key string for `name`, or the base64 of a 32-byte Ed25519 key.
    pub fn register(
        &self,
        name: &str,
        public_key: &str,
        tenants: Vec<String>,
    ) -> Result<EmitterRecord, String> {
        let verifier = if public_key.contains('+') {
            let v = Verifier::parse(public_key).map_err(|e| format!("public_key: {e}"))?;
            if v.name() != name {
                return Err(format!("public_key is for {:?}, not {name:?}", v.name()));
            }
            v
        } else {
            let bytes = B64
                .decode(public_key)
                .map_err(|_| "public_key: neither a verifier key nor base64".to_string())?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| "public_key: an Ed25519 key is 32 bytes".to_string())?;
            Verifier::new(name, &key).map_err(|e| format!("name: {e}"))?
        };
        let record = EmitterRecord {
            name: name.to_string(),
            verifier_key: verifier.to_vkey(),
            registered_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            tenants,
        };
        let mut map = self.by_name.write().unwrap();
        let previous = map.insert(name.to_string(), record.clone());
        if let Err(e) = self.save(&map) {
            match previous {
                Some(p) => map.insert(name.to_string(), p),
                None => map.remove(name),
            };
            return Err(format!("saving the registry failed: {e}"));
        }
        Ok(record)
    }

    fn save(&self, map: &BTreeMap<String, EmitterRecord>) -> anyhow::Result<()> {
        let file = EmittersFile {
            version: 1,
            emitters: map.values().cloned().collect(),
        };
        let dir = self.path.parent().context("registry path")?;
        aiaudit_store::write_atomically(dir, EMITTERS_FILE, &serde_json::to_vec_pretty(&file)?)?;
        Ok(())
    }

    pub fn list(&self) -> Vec<EmitterRecord> {
        self.by_name.read().unwrap().values().cloned().collect()
    }

    /// The first of `names` that is a registered emitter allowed tenants.
    pub fn by_certificate(&self, names: &[String]) -> Option<EmitterRecord> {
        let map = self.by_name.read().unwrap();
        names
            .iter()
            .filter_map(|n| map.get(n))
            .find(|e| !e.tenants.is_empty())
            .cloned()
    }

    pub fn verifier(&self, name: &str) -> Option<Verifier> {
        let map = self.by_name.read().unwrap();
        map.get(name)
            .and_then(|e| Verifier::parse(&e.verifier_key).ok())
    }
}
