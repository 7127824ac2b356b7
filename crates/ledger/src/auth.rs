//! Bearer API tokens with roles and tenants. A token is a random 256-bit
//! secret shown once; only its SHA-256 is kept (`<data-dir>/tokens.json`,
//! mode 0600, or on a log shared by several nodes a document in the
//! database, so a token made or revoked on one node is made or revoked on
//! all). On first start an admin token is created and written to
//! `<data-dir>/admin.token` (mode 0600).

use crate::error::Error;
use crate::registry::{write_private, Format, Registry};
use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub const TOKENS_FILE: &str = "tokens.json";
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// Every token starts with this, so leaked ones are easy to find in code and logs.
pub const TOKEN_PREFIX: &str = "aat_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Appends events of its tenants.
    Emitter,
    /// Reads, queries, exports and verifies its tenants.
    Auditor,
    /// Everything, including tokens.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Emitter => "emitter",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "emitter" => Ok(Role::Emitter),
            "auditor" => Ok(Role::Auditor),
            "admin" => Ok(Role::Admin),
            other => Err(format!("{other:?} is not one of emitter, auditor, admin")),
        }
    }
}

/// A stored token: everything but the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    /// Hex SHA-256 of the secret.
    pub sha256: String,
    pub role: Role,
    /// Tenants the token may act on; `*` means every tenant.
    pub tenants: Vec<String>,
    pub created_unix: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_unix: Option<u64>,
    #[serde(default)]
    pub revoked: bool,
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: String,
    pub role: Role,
    pub tenants: Vec<String>,
}

impl Principal {
    fn covers(&self, tenant: &str) -> bool {
        self.tenants.iter().any(|t| t == "*" || t == tenant)
    }
    /// Whether this principal's scope includes every one of `tenants` (`*`
    /// only for a principal of every tenant).
    pub fn covers_all(&self, tenants: &[String]) -> bool {
        let global = self.tenants.iter().any(|t| t == "*");
        tenants
            .iter()
            .all(|t| global || (t != "*" && self.covers(t)))
    }
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
    /// An admin of every tenant: the only one who may act on what all
    /// tenants share (master key, keyring, data key rotation, global holds).
    pub fn is_global_admin(&self) -> bool {
        self.role == Role::Admin && self.tenants.iter().any(|t| t == "*")
    }
    /// An admin of `tenant` (erasure, legal holds of that tenant).
    pub fn can_administer(&self, tenant: &str) -> bool {
        self.role == Role::Admin
            && (self.is_global_admin() || (tenant != "*" && self.covers(tenant)))
    }
    /// Whether this principal may create, see or revoke a token (or
    /// register an emitter) over `tenants`: an admin, for tenants within its
    /// own scope. An admin holds every role within its tenants, so a token
    /// never grants more than it holds.
    pub fn can_manage(&self, tenants: &[String]) -> bool {
        self.role == Role::Admin && !tenants.is_empty() && self.covers_all(tenants)
    }
    /// How the log records this principal as an event's `appended_by`.
    pub fn provenance(&self) -> String {
        if self.token_id.starts_with("cert:") {
            self.token_id.clone()
        } else {
            format!("token:{}", self.token_id)
        }
    }
    pub fn can_append(&self, tenant: &str) -> bool {
        matches!(self.role, Role::Admin | Role::Emitter) && self.covers(tenant)
    }
    pub fn can_read(&self, tenant: &str) -> bool {
        matches!(self.role, Role::Admin | Role::Auditor) && self.covers(tenant)
    }
    /// May read entries of any tenant (entry bundles mix tenants).
    pub fn can_read_all(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Auditor) && self.tenants.iter().any(|t| t == "*")
    }
}

#[derive(Serialize, Deserialize, Default)]
struct TokensFile {
    version: u32,
    tokens: Vec<TokenRecord>,
}

/// The token registry of one ledger, by SHA-256 of the secret.
pub struct Tokens {
    registry: Registry<HashMap<String, TokenRecord>>,
}

const TOKENS_DOCUMENT: &str = "tokens";

fn parse_tokens(bytes: &[u8], what: &str) -> anyhow::Result<HashMap<String, TokenRecord>> {
    let file: TokensFile =
        serde_json::from_slice(bytes).with_context(|| format!("{what} is not a token registry"))?;
    if file.version != 1 {
        anyhow::bail!("{what}: unknown version {}", file.version);
    }
    Ok(file
        .tokens
        .into_iter()
        .map(|t| (t.sha256.clone(), t))
        .collect())
}

fn encode_tokens(map: &HashMap<String, TokenRecord>) -> anyhow::Result<Vec<u8>> {
    let mut list: Vec<TokenRecord> = map.values().cloned().collect();
    list.sort_by(|a, b| (a.created_unix, &a.id).cmp(&(b.created_unix, &b.id)));
    Ok(serde_json::to_vec_pretty(&TokensFile {
        version: 1,
        tokens: list,
    })?)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| anyhow::anyhow!("reading randomness: {e}"))?;
    Ok(b)
}

impl Tokens {
    /// Loads the registry; on first start creates it with one admin token,
    /// written to `admin.token`. Returns the new admin secret if one was made.
    /// On a shared log the registry is the database's, into which a node's
    /// `tokens.json` from before is merged (a revocation wins) and removed.
    pub fn open(
        dir: &Path,
        shared: Option<Arc<dyn aiaudit_store::Storage>>,
    ) -> anyhow::Result<(Tokens, Option<String>)> {
        let had_file = dir.join(TOKENS_FILE).exists();
        let format = Format {
            parse: parse_tokens,
            encode: encode_tokens,
        };
        let (registry, local) = Registry::open(dir, TOKENS_FILE, TOKENS_DOCUMENT, format, shared)?;
        let tokens = Tokens { registry };
        if !tokens.registry.shared() && had_file {
            return Ok((tokens, None));
        }
        let mine = local.clone().unwrap_or_default();
        let admin = Tokens::make(Role::Admin, vec!["*".into()], None)?;
        let made_admin = tokens.registry.update(|map| {
            for (hash, t) in &mine {
                map.entry(hash.clone())
                    .and_modify(|x| x.revoked |= t.revoked)
                    .or_insert_with(|| t.clone());
            }
            if map.is_empty() {
                map.insert(admin.0.sha256.clone(), admin.0.clone());
                return Ok::<_, anyhow::Error>(true);
            }
            Ok(false)
        })?;
        if local.is_some() {
            tokens.registry.remove_file()?;
        }
        if !made_admin {
            return Ok((tokens, None));
        }
        write_private(
            &dir.join(ADMIN_TOKEN_FILE),
            format!("{}\n", admin.1).as_bytes(),
        )?;
        Ok((tokens, Some(admin.1)))
    }

    /// A new token's record and secret (not yet registered).
    fn make(
        role: Role,
        tenants: Vec<String>,
        expires_unix: Option<u64>,
    ) -> anyhow::Result<(TokenRecord, String)> {
        let secret = format!(
            "{TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)
        );
        let record = TokenRecord {
            id: hex::encode(random_bytes::<8>()?),
            sha256: sha256_hex(&secret),
            role,
            tenants,
            created_unix: now_unix(),
            expires_unix,
            revoked: false,
        };
        Ok((record, secret))
    }

    /// Takes in tokens made or revoked on other nodes (shared log only).
    pub fn refresh(&self) -> anyhow::Result<()> {
        self.registry.refresh()
    }

    /// Whether other nodes share this registry.
    pub fn shared(&self) -> bool {
        self.registry.shared()
    }

    /// Creates a token and returns its record and secret (shown once).
    pub fn create(
        &self,
        role: Role,
        tenants: Vec<String>,
        expires_unix: Option<u64>,
    ) -> anyhow::Result<(TokenRecord, String)> {
        let (record, secret) = Tokens::make(role, tenants, expires_unix)?;
        self.registry.update(|map| {
            map.insert(record.sha256.clone(), record.clone());
            Ok::<_, anyhow::Error>(())
        })?;
        Ok((record, secret))
    }

    pub fn list(&self) -> Vec<TokenRecord> {
        let mut list: Vec<TokenRecord> = self.registry.read(|m| m.values().cloned().collect());
        list.sort_by(|a, b| (a.created_unix, &a.id).cmp(&(b.created_unix, &b.id)));
        list
    }

    /// Revokes a token by id; takes effect for the next request (on other
    /// nodes of a shared log within [`crate::registry::REFRESH`]). False if unknown.
    pub fn revoke(&self, id: &str) -> anyhow::Result<bool> {
        self.registry
            .update(|map| match map.values_mut().find(|t| t.id == id) {
                Some(t) => {
                    t.revoked = true;
                    Ok::<_, anyhow::Error>(true)
                }
                None => Ok(false),
            })
    }

    /// Looks a secret up; one unknown here may be brand new on another node.
    fn find(&self, secret: &str) -> Option<TokenRecord> {
        let hash = sha256_hex(secret);
        let found = self.registry.read(|m| m.get(&hash).cloned());
        if found.is_some() || !self.registry.refresh_on_miss() {
            return found;
        }
        self.registry.read(|m| m.get(&hash).cloned())
    }

    /// The caller of a request from its `Authorization` value (`None`
    /// without one; bytes that are not text are refused): 401 for a token
    /// that is unknown, revoked or expired.
    pub fn principal(&self, authorization: Option<&[u8]>) -> Result<Option<Principal>, Error> {
        let Some(value) = authorization else {
            return Ok(None);
        };
        let secret = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                Error::unauthorized("the Authorization header must be \"Bearer <token>\"")
            })?;
        let record = self
            .find(secret)
            .ok_or_else(|| Error::unauthorized("unknown token"))?;
        if record.revoked {
            return Err(Error::unauthorized("this token was revoked"));
        }
        if record.expires_unix.is_some_and(|e| e <= now_unix()) {
            return Err(Error::unauthorized("this token has expired"));
        }
        Ok(Some(Principal {
            token_id: record.id.clone(),
            role: record.role,
            tenants: record.tenants.clone(),
        }))
    }
}

/// A token is required: 401 without one.
pub fn require(p: Option<Principal>) -> Result<Principal, Error> {
    p.ok_or_else(|| Error::unauthorized("this route needs a bearer token"))
}

/// Parses `30d`, `12h`, `45m`, `90s` into seconds.
pub fn parse_duration_secs(s: &str) -> Option<u64> {
    // The unit is one ASCII letter: splitting elsewhere could cut a
    // multi-byte character (found by fuzzing).
    if !s.is_char_boundary(s.len().checked_sub(1)?) {
        return None;
    }
    let (num, unit) = s.split_at(s.len() - 1);
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;

    #[test]
    fn durations_ending_in_a_multibyte_character_are_refused() {
        // Found by fuzzing: used to panic in split_at.
        assert_eq!(parse_duration_secs("1é"), None);
        assert_eq!(parse_duration_secs("é"), None);
        assert_eq!(parse_duration_secs("90s"), Some(90));
        assert_eq!(parse_duration_secs("2d"), Some(172_800));
    }

    fn bearer(secret: &str) -> Option<Vec<u8>> {
        Some(format!("Bearer {secret}").into_bytes())
    }

    #[test]
    fn first_start_makes_an_admin_token_and_later_starts_reuse_it() {
        let dir = tempfile::tempdir().unwrap();
        let (tokens, admin) = Tokens::open(dir.path(), None).unwrap();
        let admin = admin.unwrap();
        assert!(admin.starts_with(TOKEN_PREFIX));
        let on_disk = std::fs::read_to_string(dir.path().join(ADMIN_TOKEN_FILE)).unwrap();
        assert_eq!(on_disk.trim(), admin);
        use std::os::unix::fs::PermissionsExt;
        for f in [ADMIN_TOKEN_FILE, TOKENS_FILE] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        // Only the hash is stored.
        assert!(!std::fs::read_to_string(dir.path().join(TOKENS_FILE))
            .unwrap()
            .contains(&admin));
        assert!(tokens
            .principal(bearer(&admin).as_deref())
            .unwrap()
            .unwrap()
            .is_admin());
        drop(tokens);
        let (again, none) = Tokens::open(dir.path(), None).unwrap();
        assert!(none.is_none());
        assert!(again
            .principal(bearer(&admin).as_deref())
            .unwrap()
            .is_some());
    }

    #[test]
    fn roles_tenants_revocation_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let (tokens, _) = Tokens::open(dir.path(), None).unwrap();
        let (rec, secret) = tokens
            .create(Role::Emitter, vec!["acme".into()], None)
            .unwrap();
        let p = tokens
            .principal(bearer(&secret).as_deref())
            .unwrap()
            .unwrap();
        assert!(p.can_append("acme") && !p.can_append("globex"));
        assert!(!p.can_read("acme") && !p.is_admin() && !p.can_read_all());
        let (_, auditor) = tokens
            .create(Role::Auditor, vec!["*".into()], None)
            .unwrap();
        let a = tokens
            .principal(bearer(&auditor).as_deref())
            .unwrap()
            .unwrap();
        assert!(a.can_read("globex") && a.can_read_all() && !a.can_append("acme"));
        assert!(tokens.revoke(&rec.id).unwrap());
        assert_eq!(
            tokens
                .principal(bearer(&secret).as_deref())
                .unwrap_err()
                .kind,
            Kind::Unauthorized
        );
        let (_, old) = tokens
            .create(Role::Auditor, vec!["acme".into()], Some(1))
            .unwrap();
        assert_eq!(
            tokens.principal(bearer(&old).as_deref()).unwrap_err().kind,
            Kind::Unauthorized
        );
        assert_eq!(
            tokens
                .principal(bearer("aat_nope").as_deref())
                .unwrap_err()
                .kind,
            Kind::Unauthorized
        );
        assert!(tokens.principal(None).unwrap().is_none());
        assert!(!tokens.revoke("missing").unwrap());
    }

    fn principal(role: Role, tenants: &[&str], token_id: &str) -> Principal {
        Principal {
            token_id: token_id.into(),
            role,
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn scopes_never_grant_more_than_they_hold() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let acme = principal(Role::Admin, &["acme", "initech"], "a");
        assert!(acme.can_manage(&t(&["acme"])) && acme.can_manage(&t(&["acme", "initech"])));
        // Not beyond its tenants, not "*", and never nothing.
        for asked in [t(&["globex"]), t(&["*"]), t(&["acme", "globex"]), t(&[])] {
            assert!(!acme.can_manage(&asked), "{asked:?}");
        }
        assert!(acme.can_administer("acme") && !acme.can_administer("*"));
        assert!(!acme.is_global_admin() && !acme.can_read_all());
        let global = principal(Role::Admin, &["*"], "g");
        assert!(global.can_manage(&t(&["*"])) && global.can_administer("*"));
        // Another role holds no admin power, whatever its tenants.
        let auditor = principal(Role::Auditor, &["*"], "r");
        assert!(!auditor.can_manage(&t(&["acme"])) && !auditor.can_administer("acme"));
        assert!(auditor.covers_all(&t(&["acme", "*"])));
        assert!(!principal(Role::Auditor, &["acme"], "s").covers_all(&t(&["*"])));
    }

    #[test]
    fn provenance_names_the_token_or_the_certificate() {
        assert_eq!(
            principal(Role::Emitter, &["acme"], "ab12").provenance(),
            "token:ab12"
        );
        assert_eq!(
            principal(Role::Emitter, &["acme"], "cert:edge").provenance(),
            "cert:edge"
        );
    }

    #[test]
    fn roles_parse_by_name_and_a_token_is_required() {
        assert_eq!("auditor".parse::<Role>(), Ok(Role::Auditor));
        assert_eq!("emitter".parse::<Role>(), Ok(Role::Emitter));
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert!("root".parse::<Role>().unwrap_err().contains("root"));
        assert_eq!(require(None).unwrap_err().kind, Kind::Unauthorized);
        let p = principal(Role::Admin, &["*"], "x");
        assert_eq!(require(Some(p)).unwrap().token_id, "x");
    }

    #[test]
    fn a_registry_of_another_version_or_not_json_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(TOKENS_FILE),
            br#"{"version": 2, "tokens": []}"#,
        )
        .unwrap();
        let e = Tokens::open(dir.path(), None).err().unwrap();
        assert!(format!("{e:#}").contains("unknown version 2"), "{e:#}");
        std::fs::write(dir.path().join(TOKENS_FILE), b"[1, 2").unwrap();
        assert!(Tokens::open(dir.path(), None).is_err());
        // Bytes that are not text never authenticate.
        let (tokens, _) = Tokens::open(tempfile::tempdir().unwrap().path(), None).unwrap();
        assert_eq!(
            tokens.principal(Some(b"Bearer \xff\xfe")).unwrap_err().kind,
            Kind::Unauthorized
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("30d"), Some(30 * 86400));
        assert_eq!(parse_duration_secs("90s"), Some(90));
        assert_eq!(parse_duration_secs("1w"), None);
        assert_eq!(parse_duration_secs(""), None);
    }
}
