//! Registered emitters: each has its own Ed25519 key, with which it may sign
//! batches (`<data-dir>/emitters.json`, or on a shared log a document in the
//! database: see `crate::registry`). Registration is an admin action.

use crate::registry::{Format, Registry};
use aiaudit_tlog::Verifier;
use anyhow::Context;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

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
    registry: Registry<BTreeMap<String, EmitterRecord>>,
}

const EMITTERS_DOCUMENT: &str = "emitters";

fn parse_emitters(bytes: &[u8], what: &str) -> anyhow::Result<BTreeMap<String, EmitterRecord>> {
    let file: EmittersFile = serde_json::from_slice(bytes)
        .with_context(|| format!("{what} is not an emitter registry"))?;
    if file.version != 1 {
        anyhow::bail!("{what}: unknown version {}", file.version);
    }
    let mut by_name = BTreeMap::new();
    for e in file.emitters {
        Verifier::parse(&e.verifier_key)
            .with_context(|| format!("{what}: emitter {:?}", e.name))?;
        by_name.insert(e.name.clone(), e);
    }
    Ok(by_name)
}

fn encode_emitters(map: &BTreeMap<String, EmitterRecord>) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec_pretty(&EmittersFile {
        version: 1,
        emitters: map.values().cloned().collect(),
    })?)
}

impl Emitters {
    /// Opens the registry; on a shared log an `emitters.json` left from
    /// before is merged in (the database's entry wins for a name in both)
    /// and removed.
    pub fn open(
        dir: &Path,
        shared: Option<Arc<dyn aiaudit_store::Storage>>,
    ) -> anyhow::Result<Emitters> {
        let format = Format {
            parse: parse_emitters,
            encode: encode_emitters,
        };
        let (registry, local) =
            Registry::open(dir, EMITTERS_FILE, EMITTERS_DOCUMENT, format, shared)?;
        if let Some(local) = local {
            registry.update(|map| {
                for (name, e) in &local {
                    map.entry(name.clone()).or_insert_with(|| e.clone());
                }
                Ok::<_, anyhow::Error>(())
            })?;
            registry.remove_file()?;
        }
        Ok(Emitters { registry })
    }

    /// Takes in emitters registered on other nodes (shared log only).
    pub fn refresh(&self) -> anyhow::Result<()> {
        self.registry.refresh()
    }

    /// Registers (or replaces the key of) an emitter. `public_key` is a
    /// verifier key string for `name`, or the base64 of a 32-byte Ed25519 key.
    pub fn register(
        &self,
        name: &str,
        public_key: &str,
        tenants: Vec<String>,
    ) -> Result<EmitterRecord, String> {
        // Raw base64 may hold '+' too: a 32-byte key decodes, a verifier
        // key string (`name+id+key`) never does.
        let raw: Option<[u8; 32]> = B64
            .decode(public_key.trim())
            .ok()
            .and_then(|b| b.try_into().ok());
        let verifier =
            match raw {
                Some(key) => Verifier::new(name, &key).map_err(|e| format!("name: {e}"))?,
                None if public_key.contains('+') => {
                    let v = Verifier::parse(public_key).map_err(|e| format!("public_key: {e}"))?;
                    if v.name() != name {
                        return Err(format!("public_key is for {:?}, not {name:?}", v.name()));
                    }
                    v
                }
                None => return Err(
                    "public_key: neither a verifier key nor the base64 of a 32-byte Ed25519 key"
                        .to_string(),
                ),
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
        self.registry
            .update(|map| {
                map.insert(name.to_string(), record.clone());
                Ok::<_, anyhow::Error>(())
            })
            .map_err(|e| format!("saving the registry failed: {e:#}"))?;
        Ok(record)
    }

    pub fn list(&self) -> Vec<EmitterRecord> {
        self.registry.read(|m| m.values().cloned().collect())
    }

    /// The first of `names` that is a registered emitter allowed tenants.
    pub fn by_certificate(&self, names: &[String]) -> Option<EmitterRecord> {
        let find = |m: &BTreeMap<String, EmitterRecord>| {
            names
                .iter()
                .filter_map(|n| m.get(n))
                .find(|e| !e.tenants.is_empty())
                .cloned()
        };
        let found = self.registry.read(find);
        if found.is_some() || !self.registry.refresh_on_miss() {
            return found;
        }
        self.registry.read(find)
    }

    /// An emitter's record; one unknown here may be brand new on another node.
    pub fn record(&self, name: &str) -> Option<EmitterRecord> {
        let find = |m: &BTreeMap<String, EmitterRecord>| m.get(name).cloned();
        let found = self.registry.read(find);
        if found.is_some() || !self.registry.refresh_on_miss() {
            return found;
        }
        self.registry.read(find)
    }

    /// An emitter's key; one unknown here may be brand new on another node.
    pub fn verifier(&self, name: &str) -> Option<Verifier> {
        let find = |m: &BTreeMap<String, EmitterRecord>| {
            m.get(name)
                .and_then(|e| Verifier::parse(&e.verifier_key).ok())
        };
        let found = self.registry.read(find);
        if found.is_some() || !self.registry.refresh_on_miss() {
            return found;
        }
        self.registry.read(find)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vkey(name: &str) -> String {
        aiaudit_tlog::Signer::from_seed(name, [5; 32])
            .unwrap()
            .verifier()
            .to_vkey()
    }

    #[test]
    fn registrations_are_kept_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let emitters = Emitters::open(dir.path(), None).unwrap();
        emitters
            .register("edge", &vkey("edge"), vec!["acme".into()])
            .unwrap();
        emitters.register("any", &vkey("any"), vec![]).unwrap();
        drop(emitters);
        let again = Emitters::open(dir.path(), None).unwrap();
        assert_eq!(again.list().len(), 2);
        assert_eq!(again.verifier("edge").unwrap().to_vkey(), vkey("edge"));
        assert!(again.verifier("nobody").is_none() && again.record("nobody").is_none());
        // A certificate maps to the first of its names registered with tenants.
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            again.by_certificate(&names(&["any", "edge"])).unwrap().name,
            "edge"
        );
        assert!(again.by_certificate(&names(&["any"])).is_none());
    }

    #[test]
    fn a_registry_that_does_not_check_out_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(EMITTERS_FILE);
        std::fs::write(&file, br#"{"version": 3, "emitters": []}"#).unwrap();
        assert!(Emitters::open(dir.path(), None).is_err());
        let forged = format!(
            r#"{{"version": 1, "emitters": [{{"name": "edge", "verifier_key": "{}x", "registered_unix": 0}}]}}"#,
            vkey("edge")
        );
        std::fs::write(&file, forged).unwrap();
        let e = Emitters::open(dir.path(), None).err().unwrap();
        assert!(format!("{e:#}").contains("edge"), "{e:#}");
    }
}
