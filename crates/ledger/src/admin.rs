//! What admins do: tokens, emitters, keys, erasure; and the HMAC of a known
//! value for readers. Scope-aware throughout: a token never grants more
//! than it holds, an admin of some tenants acts on those tenants only, and
//! what every tenant shares (master key, keyring, data key rotation) is for
//! an admin of all tenants.

use crate::auth::{Principal, Role, TokenRecord};
use crate::emitters::EmitterRecord;
use crate::error::{Error, FieldError, Kind, Result};
use crate::Ledger;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

fn require_admin(who: &Principal) -> Result<()> {
    if !who.is_admin() {
        return Err(Error::forbidden("this needs an admin token"));
    }
    Ok(())
}

fn require_global_admin(who: &Principal) -> Result<()> {
    require_admin(who)?;
    if !who.is_global_admin() {
        return Err(Error::forbidden(
            "this acts on every tenant: it needs an admin token of all tenants (\"*\")",
        ));
    }
    Ok(())
}

/// Runs a keyring operation (it fsyncs) off the async workers.
async fn keyring_op<T: Send + 'static>(
    f: impl FnOnce() -> aiaudit_keyring::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(e.to_string()))?
        .map_err(|e| match e {
            aiaudit_keyring::Error::Unsupported(why) => Error::new(
                Kind::Conflict,
                "unsupported",
                "Not possible with this key provider",
                why,
            ),
            other => Error::unavailable(format!("keyring: {other}")),
        })
}

fn not_a_tenant(slug: &str, title: &str, field: &str) -> Error {
    Error::bad_field(
        slug,
        title,
        field,
        "not a tenant name (1 to 64 letters, digits, '-', '_', '.')",
    )
}

fn beyond_scope(who: &Principal, what: &str) -> Error {
    Error::forbidden(format!(
        "this token holds tenants {:?}: {what}",
        who.tenants
    ))
    .with_errors(vec![FieldError::event(
        None,
        "/tenants",
        "tenants",
        "beyond this token's own tenants",
    )])
}

impl Ledger {
    /// A key operation that failed for a reason other than the provider not
    /// supporting it: a security incident (seed §5), opened at once.
    fn key_operation_failed(&self, what: &str, tenant: Option<&str>, e: &Error) {
        if e.kind == Kind::Conflict {
            return;
        }
        self.detector().detect(crate::incidents::Detection {
            key: format!("keys:{}", what.to_lowercase().replace(' ', "-")),
            title: format!("{what} failed"),
            // The subject of an erasure stays out of the log's incident text.
            detail: format!("{what} failed: {}", e.detail),
            severity: aiaudit_incident::Severity::High,
            tenant: tenant
                .unwrap_or(crate::incidents::LEDGER_TENANT)
                .to_string(),
            origin: "ledger",
            related: Default::default(),
        });
    }

    /// The tokens `who` manages (never secrets).
    pub fn tokens(&self, who: &Principal) -> Result<Vec<TokenRecord>> {
        require_admin(who)?;
        Ok(self
            .tokens
            .list()
            .into_iter()
            .filter(|t| who.can_manage(&t.tenants))
            .collect())
    }

    /// Creates a token of `role` over `tenants` (within `who`'s own) and
    /// returns its record and secret, shown once.
    pub fn create_token(
        &self,
        who: &Principal,
        role: Role,
        tenants: Vec<String>,
        expires_unix: Option<u64>,
    ) -> Result<(TokenRecord, String)> {
        require_admin(who)?;
        let (slug, title) = ("invalid-token-request", "Invalid token request");
        if tenants.is_empty() {
            return Err(Error::bad_field(
                slug,
                title,
                "tenants",
                "required: a non-empty list of tenants (or [\"*\"])",
            ));
        }
        if tenants
            .iter()
            .any(|t| t != "*" && !aiaudit_event::is_valid_tenant(t))
        {
            return Err(not_a_tenant(slug, title, "tenants"));
        }
        if !who.can_manage(&tenants) {
            return Err(beyond_scope(who, &format!("it cannot grant {tenants:?}")));
        }
        let (record, secret) = self
            .tokens
            .create(role, tenants, expires_unix)
            .map_err(|e| Error::unavailable(format!("saving the token failed: {e}")))?;
        tracing::info!(token_id = %record.id, role = ?record.role, by = %who.token_id, "token created");
        Ok((record, secret))
    }

    /// Revokes a token `who` manages; others are answered as unknown, so ids do not leak.
    pub fn revoke_token(&self, who: &Principal, id: &str) -> Result<()> {
        require_admin(who)?;
        let in_scope = self
            .tokens
            .list()
            .iter()
            .any(|t| t.id == id && who.can_manage(&t.tenants));
        if !in_scope {
            return Err(Error::not_found(format!("no token with id {id:?}")));
        }
        match self.tokens.revoke(id) {
            Ok(true) => {
                tracing::info!(token_id = %id, by = %who.token_id, "token revoked");
                Ok(())
            }
            Ok(false) => Err(Error::not_found(format!("no token with id {id:?}"))),
            Err(e) => Err(Error::unavailable(format!(
                "saving the revocation failed: {e}"
            ))),
        }
    }

    /// The registered emitters `who` manages.
    pub fn emitters(&self, who: &Principal) -> Result<Vec<EmitterRecord>> {
        require_admin(who)?;
        Ok(self
            .emitters
            .list()
            .into_iter()
            .filter(|e| who.is_global_admin() || who.can_manage(&e.tenants))
            .collect())
    }

    /// Registers (or replaces the key of) an emitter. An emitter without
    /// tenants signs for every tenant: a global admin's call. A scoped
    /// admin registers emitters of its tenants, and cannot replace the key
    /// of one beyond them.
    pub fn register_emitter(
        &self,
        who: &Principal,
        name: &str,
        public_key: &str,
        tenants: Vec<String>,
    ) -> Result<EmitterRecord> {
        require_admin(who)?;
        let existing = self.emitters.record(name);
        let allowed = who.is_global_admin()
            || (who.can_manage(&tenants) && existing.is_none_or(|e| who.can_manage(&e.tenants)));
        if !allowed {
            return Err(beyond_scope(
                who,
                "it may register emitters for those tenants only (give \"tenants\"), and not replace another scope's emitter",
            ));
        }
        let record = self
            .emitters
            .register(name, public_key, tenants)
            .map_err(|e| {
                let (f, d) = e.split_once(": ").unwrap_or(("public_key", e.as_str()));
                Error::bad_field("invalid-emitter", "Invalid emitter", f, d)
            })?;
        tracing::info!(emitter = %record.name, by = %who.token_id, "emitter registered");
        Ok(record)
    }

    /// Key counts (never key material), for an admin of all tenants.
    pub fn key_stats(&self, who: &Principal) -> Result<Value> {
        require_global_admin(who)?;
        Ok(self.key_counts())
    }

    fn key_counts(&self) -> Value {
        let s = self.keyring.stats();
        let mut counts = json!({"tenants": s.tenants, "tenant_keys": s.tenant_keys,
               "subject_keys": s.subject_keys, "destroyed_keys": s.destroyed_keys});
        if let Some(p) = s.pass {
            counts["in_progress"] = json!({"operation": p.operation, "started": p.started,
                "records_done": p.records_done, "records": p.records});
        }
        counts
    }

    /// New data keys for every tenant and subject; returns how many, and the counts.
    pub async fn rotate_keys(&self, who: &Principal) -> Result<(usize, Value)> {
        require_global_admin(who)?;
        let ring = self.keyring.clone();
        let rotated = keyring_op(move || ring.rotate())
            .await
            .inspect_err(|e| self.key_operation_failed("Data key rotation", None, e))?;
        tracing::info!(token_id = %who.token_id, rotated, "data keys rotated");
        Ok((rotated, self.key_counts()))
    }

    /// A new master key, every data key re-wrapped; returns how many, and the counts.
    pub async fn rotate_master_key(&self, who: &Principal) -> Result<(usize, Value)> {
        require_global_admin(who)?;
        let ring = self.keyring.clone();
        let rewrapped = keyring_op(move || ring.rotate_master())
            .await
            .inspect_err(|e| self.key_operation_failed("Master key rotation", None, e))?;
        tracing::info!(token_id = %who.token_id, rewrapped, "master key rotated");
        Ok((rewrapped, self.key_counts()))
    }

    /// The keyring's file image (wrapped keys, useless without the master
    /// key) for backups, with its length fixed now: read it in pieces with
    /// [`KeyringImage::read`], so a keyring of millions of subjects is never
    /// held in memory whole.
    pub async fn keyring_image(&self, who: &Principal) -> Result<KeyringImage> {
        require_global_admin(who)?;
        let ring = self.keyring.clone();
        let len = keyring_op(move || ring.image_len()).await?;
        Ok(KeyringImage {
            ring: self.keyring.clone(),
            len,
        })
    }

    /// A blob's stored (sealed) bytes, for backups: the operator's, like the
    /// keyring, so an admin of every tenant only. Nothing is decrypted.
    pub async fn stored_blob(&self, who: &Principal, id: &str) -> Result<Vec<u8>> {
        require_global_admin(who)?;
        let bytes = hex::decode(id).ok().filter(|b| b.len() == 32);
        let Some(id) = bytes.map(|b| <aiaudit_tlog::Hash>::try_from(b.as_slice()).expect("32"))
        else {
            return Err(crate::error::Error::bad_parameter(
                "id",
                format!("{id:?} is not a blob id (64 hex digits)"),
            ));
        };
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let len = store
                .blob_len(&id)
                .map_err(|e| crate::error::Error::from_store(&e))?
                .ok_or_else(|| {
                    crate::error::Error::not_found(format!(
                        "no blob {}",
                        aiaudit_store::blob_name(&id)
                    ))
                })?;
            let len = usize::try_from(len)
                .map_err(|_| crate::error::Error::internal("a blob larger than memory"))?;
            store
                .read_blob(&id, 0, len)
                .map_err(|e| crate::error::Error::from_store(&e))
        })
        .await
        .map_err(|e| crate::error::Error::internal(e.to_string()))?
    }

    /// Crypto-shredding: destroys the subject's data keys and logs the
    /// erasure (naming the subject only by its keyed tag: logging the
    /// subject itself would store again what was just erased). Returns the
    /// keys destroyed, the tag, and the erasure event's id and index.
    pub async fn erase(
        self: &Arc<Self>,
        who: &Principal,
        tenant: &str,
        subject: &str,
    ) -> Result<(usize, String, String, u64)> {
        self.erasure_allowed(who, tenant)?;
        self.members_noted().await?;
        let ring = self.keyring.clone();
        let (t, s) = (tenant.to_string(), subject.to_string());
        let (destroyed, tag) = keyring_op(move || ring.erase(&t, &s))
            .await
            .inspect_err(|e| self.key_operation_failed("Crypto-shredding", Some(tenant), e))?;
        self.erasure_epoch
            .fetch_add(destroyed as u64 + 1, Ordering::Relaxed);
        let tag = match tag {
            Some(tag) => tag,
            None => self
                .keyring
                .hmac(tenant, subject.as_bytes())
                .map_err(|e| Error::unavailable(format!("keyring: {e}")))?,
        };
        let (id, index) = crate::sealing::append_own_event(
            self,
            tenant,
            "data.erasure",
            (&who.provenance(), "user"),
            json!({"subject_tag": tag, "keys_destroyed": destroyed}),
        )
        .await?;
        tracing::info!(token_id = %who.token_id, tenant = %tenant, keys_destroyed = destroyed, "subject erased");
        Ok((destroyed, tag, id, index))
    }

    /// Who may erase (an admin of the tenant) and whether anything can be
    /// (content sealed at rest): the checks of an erasure and its preview.
    /// Waits (up to 30 s, then 503) while the keyring notes again, after a
    /// start, which subjects belong to which key family: an erasure before
    /// that could miss some. A restart after a crash notes a few seconds of
    /// entries at most; after a restore from backup, the whole log.
    async fn members_noted(&self) -> Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !self.keyring.members_ready() {
            if std::time::Instant::now() >= deadline {
                return Err(Self::members_not_noted());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(())
    }

    fn members_not_noted() -> Error {
        let mut e = Error::unavailable(
            "the keyring is noting subject key family members from the log after a start; erasures resume once it is done",
        );
        e.retry_after = Some(5);
        e
    }

    fn erasure_allowed(&self, who: &Principal, tenant: &str) -> Result<()> {
        require_admin(who)?;
        let (slug, title) = ("invalid-erasure", "Invalid erasure request");
        if !aiaudit_event::is_valid_tenant(tenant) {
            return Err(not_a_tenant(slug, title, "tenant"));
        }
        if !who.can_administer(tenant) {
            return Err(Error::forbidden(format!(
                "this token may not erase data of tenant {tenant:?}"
            )));
        }
        if !self.config.encryption {
            return Err(Error::new(
                Kind::Conflict,
                "encryption-off",
                "Erasure needs encryption at rest",
                "this ledger stores content in the clear (encryption = false): nothing can be crypto-shredded",
            ));
        }
        Ok(())
    }

    /// What [`Ledger::erase`] would do, without doing it or logging
    /// anything: the subject's live and already destroyed keys. The same
    /// checks as an erasure (an admin of the tenant, encryption on).
    pub async fn erase_preview(
        self: &Arc<Self>,
        who: &Principal,
        tenant: &str,
        subject: &str,
    ) -> Result<(usize, usize)> {
        self.erasure_allowed(who, tenant)?;
        self.members_noted().await?;
        let ring = self.keyring.clone();
        let (t, s) = (tenant.to_string(), subject.to_string());
        keyring_op(move || ring.subject_keys(&t, &s)).await
    }

    /// The HMAC a sensitive field or a subject tag holds for `value`, so a
    /// reader of the tenant can search for it. Read-only: a tenant without
    /// a salt gets none made for it (none of its values was ever tagged).
    pub fn hash(&self, who: &Principal, tenant: &str, value: &[u8]) -> Result<String> {
        if !aiaudit_event::is_valid_tenant(tenant) {
            return Err(not_a_tenant(
                "invalid-hash-request",
                "Invalid hash request",
                "tenant",
            ));
        }
        if !who.can_read(tenant) {
            return Err(Error::forbidden(format!(
                "this token may not read tenant {tenant:?}"
            )));
        }
        self.keyring.hmac_if_salted(tenant, value).ok_or_else(|| {
            Error::not_found(format!(
                "tenant {tenant:?} has no HMAC salt yet: no value of it was ever tagged"
            ))
        })
    }
}

/// The keyring's file image as it was when [`Ledger::keyring_image`] was
/// asked (records added since are past its length), read in pieces.
#[derive(Clone)]
pub struct KeyringImage {
    ring: Arc<aiaudit_keyring::Keyring>,
    len: u64,
}

impl KeyringImage {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Never: the image holds its header at least.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes `[offset, offset + len)`, which must lie within [`KeyringImage::len`].
    pub async fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(Error::internal(format!(
                "bytes {offset}..+{len} of a keyring image of {} bytes",
                self.len
            )));
        }
        let ring = self.ring.clone();
        keyring_op(move || ring.image_range(offset, len)).await
    }
}
