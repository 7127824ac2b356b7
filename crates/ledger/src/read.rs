//! The readers: the latest checkpoint, tiles and entry bundles (C2SP
//! tlog-tiles), proofs (RFC 6962), one event by index, the ledger's status
//! and readiness. Hashes and the log's identity are public unless the
//! configuration says otherwise; entries only to readers of their tenants.

use crate::auth::{Principal, Role};
use crate::error::{Error, Result};
use crate::{Ledger, Published};
use aiaudit_tlog::{prove_record, prove_tree, Hash, Tile, TileKind, TILE_WIDTH};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A tile's bytes and whether they can be cached for ever (a full tile
/// never changes).
#[derive(Debug)]
pub struct TileBytes {
    pub bytes: Vec<u8>,
    pub immutable: bool,
}

/// One event as its readers see it.
#[derive(Debug)]
pub struct EntryView(pub Value);

/// What `/readyz` reports: ready or not, and each check.
pub struct Readiness {
    pub ready: bool,
    pub checks: Value,
}

/// The stored entry at `index`, if `reader` may read its tenant's events.
/// The tenant is in the clear: refused before any content (or blob) of an
/// event this token may not read is touched.
fn entry_for_reader(
    store: &dyn aiaudit_store::Storage,
    reader: &Principal,
    index: u64,
) -> Result<Vec<u8>> {
    entry_and_tenant_for_reader(store, reader, index).map(|(entry, _)| entry)
}

/// [`entry_for_reader`], with the entry's tenant.
pub(crate) fn entry_and_tenant_for_reader(
    store: &dyn aiaudit_store::Storage,
    reader: &Principal,
    index: u64,
) -> Result<(Vec<u8>, String)> {
    let entry = store.read_entry(index).map_err(|e| Error::from_store(&e))?;
    let tenant = aiaudit_event::envelope::decode_stored(&entry)
        .map(|s| s.tenant().to_string())
        .map_err(|e| Error::internal(format!("entry {index} cannot be read: {e}")))?;
    if !reader.can_read(&tenant) {
        return Err(Error::forbidden(format!(
            "this token may not read events of tenant {tenant:?}"
        )));
    }
    Ok((entry, tenant))
}

fn b64(h: &Hash) -> String {
    B64.encode(h)
}

/// A stored entry that cannot be opened: a blob that fails its checks is
/// an integrity error (counted, never served); anything else is internal.
pub(crate) fn open_failed(
    metrics: &crate::metrics::Metrics,
    index: u64,
    e: crate::sealing::OpenError,
) -> Error {
    match e {
        crate::sealing::OpenError::Blob(detail) => {
            metrics.blob_integrity_failures.inc();
            // The detail names the member (its pointer): the event's, not the log's.
            tracing::error!(index, "a blob failed its integrity check");
            Error::new(
                crate::error::Kind::Internal,
                "integrity-error",
                "Integrity error",
                format!("event {index}: {detail}; run `aiaudit verify` and restore the blob from a backup"),
            )
        }
        crate::sealing::OpenError::Entry(detail) => {
            Error::internal(format!("entry {index} cannot be read: {detail}"))
        }
    }
}

/// A blob's content, or the range of it asked for (first and last byte).
pub struct BlobBytes {
    pub bytes: Vec<u8>,
    pub total: u64,
    pub range: Option<(u64, u64)>,
    /// The event's tenant (for the access record).
    pub tenant: String,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(e.to_string()))?
}

impl Ledger {
    /// Reads that reveal only hashes and the log's identity: open unless
    /// `public_reads` is off, then any valid credential.
    pub fn public_read(&self, who: Option<&Principal>) -> Result<()> {
        if !self.config.public_reads && who.is_none() {
            return Err(Error::unauthorized("this route needs a bearer token"));
        }
        Ok(())
    }

    /// The latest signed checkpoint.
    pub fn latest(&self) -> Arc<Published> {
        self.latest.borrow().clone()
    }

    /// The checkpoint note `/checkpoint` serves: the log's signature and
    /// the witnesses' cosignatures gathered so far (with a quorum wait, the
    /// newest checkpoint the quorum cosigned; docs/witnesses.md).
    pub fn checkpoint_note(&self) -> String {
        self.served_checkpoint().note.clone()
    }

    /// The checkpoint served, with its cosignatures (see [`Ledger::checkpoint_note`]).
    pub fn served_checkpoint(&self) -> Arc<Published> {
        let latest = self.latest();
        match &self.witnessing {
            Some(w) => w.served(&latest),
            None => latest,
        }
    }

    /// The witnesses of the policy that cosigned `note` (empty without a policy).
    pub fn cosigners(&self, note: &str) -> Vec<String> {
        self.witnessing
            .as_ref()
            .map(|w| w.cosigners(note))
            .unwrap_or_default()
    }

    /// Waits (up to the configured time) for a checkpoint covering `size`
    /// entries, asking the publisher not to wait for its interval.
    pub async fn await_checkpoint(&self, size: u64) -> Result<Arc<Published>> {
        let mut rx = self.latest.clone();
        self.publish_now.notify_one();
        let wait = async move {
            rx.wait_for(|p| p.checkpoint.size >= size)
                .await
                .map(|p| p.clone())
        };
        match tokio::time::timeout(self.config.checkpoint_wait, wait).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(Error::unavailable(
                "the events are durably logged but no checkpoint covering them was published in time",
            )),
        }
    }

    /// `size` as asked (default: the latest checkpoint's), never beyond it.
    pub fn proof_size(&self, asked: Option<u64>) -> Result<u64> {
        let latest = self.latest.borrow().checkpoint.size;
        match asked {
            None => Ok(latest),
            Some(size) if size > latest => Err(Error::bad_parameter(
                "size",
                format!("{size} is beyond the latest checkpoint size {latest}"),
            )),
            Some(size) => Ok(size),
        }
    }

    /// RFC 6962 inclusion proof of entry `index` in the tree of `size`, and its leaf hash.
    pub async fn prove_record(&self, size: u64, index: u64) -> Result<(Vec<Hash>, Hash)> {
        if index >= size {
            return Err(Error::bad_parameter(
                "index",
                format!("{index} is not below size {size}"),
            ));
        }
        let store = self.store.clone();
        blocking(move || {
            let proof = prove_record(size, index, &&*store)
                .map_err(|e| Error::from_proof("proving inclusion", &e))?;
            let leaf = store
                .read_node(0, index)
                .map_err(|e| Error::from_proof("reading the leaf", &e))?;
            Ok((proof, leaf))
        })
        .await
    }

    /// Inclusion proofs of several entries in the tree of `size`.
    pub async fn prove_records(&self, size: u64, indexes: Vec<u64>) -> Result<Vec<Vec<Hash>>> {
        let store = self.store.clone();
        blocking(move || {
            indexes
                .into_iter()
                .map(|i| prove_record(size, i, &&*store))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::from_proof("proving inclusion", &e))
        })
        .await
    }

    /// RFC 6962 consistency proof from the tree of `old` to that of `size`.
    pub async fn prove_tree(&self, size: u64, old: u64) -> Result<Vec<Hash>> {
        if old == 0 || old > size {
            return Err(Error::bad_parameter(
                "old",
                format!("{old} must be between 1 and size {size}"),
            ));
        }
        let store = self.store.clone();
        blocking(move || {
            prove_tree(size, old, &&*store)
                .map_err(|e| Error::from_proof("proving consistency", &e))
        })
        .await
    }

    /// A C2SP tile or entry bundle within the latest checkpoint. Hash tiles
    /// are public reads; entry bundles go to readers of every tenant in them.
    pub async fn tile(&self, path: &str, who: Option<&Principal>) -> Result<TileBytes> {
        let tile = Tile::parse_path(path).map_err(|e| Error::not_found(format!("{path}: {e}")))?;
        let size = self.latest.borrow().checkpoint.size;
        // Checked: an absurd index must be a 404, not wrap around to tile 0.
        let beyond = || {
            Error::not_found(format!(
                "{path} is beyond the latest checkpoint (size {size})"
            ))
        };
        let start = tile.index.checked_mul(TILE_WIDTH).ok_or_else(beyond)?;
        let end = start.checked_add(tile.width as u64).ok_or_else(beyond)?;
        let available = match tile.kind {
            TileKind::Entries => size,
            TileKind::Hash { level } => aiaudit_tlog::hashes_at_tile_level(size, level),
        };
        if end > available {
            return Err(beyond());
        }
        let entry_reader = match tile.kind {
            TileKind::Entries => {
                let p =
                    who.ok_or_else(|| Error::unauthorized("this route needs a bearer token"))?;
                if !matches!(p.role, Role::Auditor | Role::Admin) {
                    return Err(Error::forbidden(
                        "entry bundles are for auditor and admin tokens",
                    ));
                }
                Some(p.clone())
            }
            TileKind::Hash { .. } => {
                self.public_read(who)?;
                None
            }
        };
        let store = self.store.clone();
        let bytes = blocking(move || {
            match tile.kind {
                TileKind::Entries => store.read_entry_bundle(start, tile.width as u64),
                TileKind::Hash { level } => store.read_hashes(
                    level as u32 * aiaudit_tlog::TILE_HEIGHT,
                    start,
                    tile.width as u64,
                ),
            }
            .map_err(|e| Error::from_store(&e))
        })
        .await?;
        if let Some(p) = entry_reader.filter(|p| !p.can_read_all()) {
            // A bundle mixes tenants: serve it only if this token reads every one in it.
            let entries = aiaudit_tlog::decode_entry_bundle(&bytes)
                .map_err(|e| Error::internal(format!("stored bundle: {e}")))?;
            for entry in entries {
                let tenant = aiaudit_event::envelope::decode_stored(entry)
                    .map(|d| d.tenant().to_string())
                    .unwrap_or_default();
                if !p.can_read(&tenant) {
                    return Err(Error::forbidden(
                        "this bundle holds events of tenants this token may not read; read your events with GET /v1/events/<index>?proof=true",
                    ));
                }
            }
        }
        Ok(TileBytes {
            bytes,
            immutable: tile.is_full(),
        })
    }

    /// One event by log index, opened for a reader of its tenant; with its
    /// inclusion proof (and the opening of sealed content) when asked.
    pub async fn entry(&self, who: &Principal, index: u64, with_proof: bool) -> Result<EntryView> {
        self.entry_with(who, index, with_proof, crate::sealing::BlobMode::Fill)
            .await
    }

    /// A C2SP tlog-proof of the event at `index` against the checkpoint
    /// `/checkpoint` serves (cosignatures included), with the stored entry
    /// as its `extra` data so a verifier recomputes the leaf hash offline.
    /// Readers of the event's tenant only: the entry names its tenant.
    pub async fn tlog_proof(&self, who: &Principal, index: u64) -> Result<String> {
        let note = self.checkpoint_note();
        let size = aiaudit_tlog::split_note(&note)
            .ok()
            .and_then(|(body, _)| aiaudit_tlog::Checkpoint::parse_body(body).ok())
            .map(|c| c.size)
            .ok_or_else(|| Error::internal("the served checkpoint does not parse"))?;
        if index >= self.store.size() {
            return Err(Error::not_found(format!(
                "no event at index {index}; the log holds {}",
                self.store.size()
            )));
        }
        if index >= size {
            return Err(Error::unavailable(format!(
                "event {index} is logged but not yet in the checkpoint served (size {size}); retry shortly"
            )));
        }
        let store = self.store.clone();
        let reader = who.clone();
        blocking(move || {
            let entry = entry_for_reader(&*store, &reader, index)?;
            let proof = prove_record(size, index, &&*store)
                .map_err(|e| Error::from_proof("proving inclusion", &e))?;
            Ok(aiaudit_tlog::TlogProof {
                extra: Some(entry),
                index,
                proof,
                checkpoint: note,
            }
            .format())
        })
        .await
    }

    /// [`Ledger::entry`], with the event's blobs read and checked (`Fill`)
    /// or left out and listed (`Omit`).
    pub async fn entry_with(
        &self,
        who: &Principal,
        index: u64,
        with_proof: bool,
        blobs: crate::sealing::BlobMode,
    ) -> Result<EntryView> {
        let published = self.latest();
        let size = self.store.size();
        if index >= size {
            return Err(Error::not_found(format!(
                "no event at index {index}; the log holds {size}"
            )));
        }
        if with_proof && index >= published.checkpoint.size {
            return Err(Error::unavailable(format!(
                "event {index} is logged but not yet in a checkpoint (size {}); retry shortly",
                published.checkpoint.size
            )));
        }
        let store = self.store.clone();
        let keyring = self.keyring.clone();
        let reader = who.clone();
        let cp_size = published.checkpoint.size;
        let metrics = self.metrics.clone();
        let (entry, leaf, proof, readable) = blocking(move || {
            let entry = entry_for_reader(&*store, &reader, index)?;
            let readable = crate::sealing::open_entry(&keyring, &*store, &entry, blobs)
                .map_err(|e| open_failed(&metrics, index, e))?;
            // Unreadable storage is transient (503), like every other read.
            let leaf = store
                .read_node(0, index)
                .map_err(|e| Error::from_proof("reading the leaf", &e))?;
            let proof = if with_proof {
                Some(
                    prove_record(cp_size, index, &&*store)
                        .map_err(|e| Error::from_proof("proving inclusion", &e))?,
                )
            } else {
                None
            };
            Ok((entry, leaf, proof, readable))
        })
        .await?;
        self.note_access(
            who,
            crate::access::Access {
                tenant: readable.stored.tenant().to_string(),
                kind: crate::access::Kind::EventRead,
                indexes: vec![index],
                detail: None,
            },
        );
        let mut out = json!({
            "index": index,
            "leaf_hash": b64(&leaf),
            "entry": B64.encode(&entry),
            "entry_version": readable.stored.version,
            "content": readable.content,
            "event": readable.event.clone().unwrap_or_else(|| readable.stored.index.clone()),
        });
        if let Some(by) = &readable.stored.appended_by {
            out["appended_by"] = json!(by);
        }
        if let Some(sealed) = &readable.stored.sealed {
            // The data key (or subject key family) it is sealed under: what
            // an erasure or retention destroys.
            out["key_id"] = json!(sealed.key);
        }
        if !readable.redacted.is_empty() {
            out["redacted"] = json!(readable.redacted);
        }
        if !readable.blobs.is_empty() {
            let views: Vec<Value> = readable
                .blobs
                .iter()
                .enumerate()
                .map(|(n, b)| b.to_json(index, n))
                .collect();
            out["blobs"] = json!(views);
        }
        if let (Some(opening), true) = (&readable.opening, with_proof) {
            // Lets a third party check the content against the logged commitment without any key.
            out["opening"] = json!(B64.encode(opening));
        }
        if let (Some(sig), Some(event)) = (&readable.signature, &readable.event) {
            let status = match aiaudit_event::signature::verify_entry_signature(event, sig) {
                Ok(key) => {
                    let name = key.split('+').next().unwrap_or("");
                    let registered = self.emitters.verifier(name).map(|v| v.to_vkey());
                    if !readable.redacted.is_empty() {
                        "valid before redaction (checked at ingest)"
                    } else if registered.as_deref() == Some(key.as_str()) {
                        "valid"
                    } else {
                        "valid, key not registered now"
                    }
                }
                Err(_) if !readable.redacted.is_empty() => {
                    "valid before redaction (checked at ingest)"
                }
                Err(_) => "invalid",
            };
            out["emitter_signature"] = json!({"status": status, "signature": sig});
        }
        if let Some(proof) = proof {
            out["proof"] = json!({
                "size": cp_size,
                "inclusion": proof.iter().map(b64).collect::<Vec<_>>(),
                "checkpoint": published.note,
            });
        }
        Ok(EntryView(out))
    }

    /// The content of an event's blob `n` (the member's canonical JSON),
    /// whole or a byte range of it. Whole: checked against the stored
    /// bytes' SHA-256 and the commitment its entry logs. A range: only the
    /// chunks it covers are read, each authenticated by its AEAD tag, which
    /// binds it to this blob, its place and the data key.
    pub async fn blob(
        &self,
        who: &Principal,
        index: u64,
        n: usize,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<BlobBytes> {
        let size = self.store.size();
        if index >= size {
            return Err(Error::not_found(format!(
                "no event at index {index}; the log holds {size}"
            )));
        }
        let store = self.store.clone();
        let keyring = self.keyring.clone();
        let reader = who.clone();
        let metrics = self.metrics.clone();
        let out = blocking(move || {
            let entry = store.read_entry(index).map_err(|e| Error::from_store(&e))?;
            let stored = aiaudit_event::envelope::decode_stored(&entry)
                .map_err(|e| Error::internal(format!("entry {index} cannot be read: {e}")))?;
            if !reader.can_read(stored.tenant()) {
                return Err(Error::forbidden(format!(
                    "this token may not read events of tenant {:?}",
                    stored.tenant()
                )));
            }
            let sealed = stored.sealed.as_ref();
            let refs = sealed.and_then(|s| s.v3.as_ref()).map(|v| &v.blobs);
            let Some(r) = refs.and_then(|refs| refs.get(n)) else {
                return Err(Error::not_found(format!(
                    "event {index} has {} blob(s); there is no blob {n}",
                    refs.map_or(0, Vec::len)
                )));
            };
            let sealed = sealed.expect("v3 entries are sealed");
            let Some(key) = keyring.key_for(sealed.key, crate::sealing::subject_tag(&stored))
            else {
                return Err(Error::new(
                    crate::error::Kind::Gone,
                    "content-erased",
                    "Content erased",
                    format!("the data key of event {index} was destroyed (erasure or expiry); its content cannot be read"),
                ));
            };
            let data_key = aiaudit_event::envelope::DataKey {
                id: sealed.key,
                key: &key,
            };
            let total = r.size;
            // Opening the entry authenticates its header (the AEAD's associated
            // data): the tenant, key and blob reference used below are the
            // ones sealed with the content, never a forged header's.
            let opened = sealed
                .open(&key)
                .map_err(|e| Error::internal(format!("entry {index} cannot be read: {e}")))?;
            let opened_tenant = stored.tenant().to_string();
            let Some((first, last)) = range else {
                let slot = opened.blobs.get(n).ok_or_else(|| {
                    Error::internal(format!("entry {index}: its opening lacks blob {n}"))
                })?;
                let bytes = crate::sealing::read_blob(&*store, r, &slot.salt, data_key)
                    .map_err(|e| open_failed(&metrics, index, e))?;
                return Ok(BlobBytes {
                    bytes,
                    total,
                    range: None,
                    tenant: opened_tenant,
                });
            };
            let last = last.unwrap_or(total.saturating_sub(1)).min(total.saturating_sub(1));
            if first >= total || first > last {
                return Err(Error::new(
                    crate::error::Kind::RangeNotSatisfiable,
                    "range-not-satisfiable",
                    "Range not satisfiable",
                    format!("blob {n} of event {index} holds {total} bytes"),
                ));
            }
            let source = |offset: u64, len: usize| -> std::result::Result<Vec<u8>, String> {
                store
                    .read_blob(&r.commitment, offset, len)
                    .map_err(|e| e.to_string())
            };
            let blob_err = |e: aiaudit_event::blob::BlobError| {
                open_failed(&metrics, index, crate::sealing::OpenError::Blob(e.to_string()))
            };
            let mut opener = aiaudit_event::blob::Opener::new(&source, &r.commitment, data_key, total)
                .map_err(blob_err)?;
            let chunk = opener.header.chunk as u64;
            let mut at = first / chunk * chunk;
            opener.seek_chunk((first / chunk) as u32).map_err(blob_err)?;
            drop(opened);
            let wanted = (last - first + 1).min(aiaudit_event::blob::CHUNK as u64 * 2);
            let mut bytes = Vec::with_capacity(wanted as usize);
            while at <= last {
                let Some(c) = opener.next_chunk().map_err(blob_err)? else {
                    break;
                };
                let from = first.saturating_sub(at) as usize;
                let to = ((last + 1 - at) as usize).min(c.len());
                bytes.extend_from_slice(&c[from..to]);
                at += c.len() as u64;
            }
            Ok(BlobBytes {
                bytes,
                total,
                range: Some((first, last)),
                tenant: opened_tenant,
            })
        })
        .await?;
        self.note_access(
            who,
            crate::access::Access {
                tenant: out.tenant.clone(),
                kind: crate::access::Kind::BlobRead,
                indexes: vec![index],
                detail: Some(json!({"blob": n})),
            },
        );
        Ok(out)
    }

    /// The log's identity, size and health; backup locations and their
    /// errors only for an admin of every tenant (they are the operator's).
    pub fn status(&self, who: Option<&Principal>) -> Value {
        let latest = self.latest();
        let indexed = self.indexed.load(Ordering::Acquire);
        let mut info = json!({
            "origin": self.signer.name(),
            "verifier_key": self.verifier.to_vkey(),
            "size": latest.checkpoint.size,
            "root": b64(&latest.checkpoint.root),
            "version": env!("CARGO_PKG_VERSION"),
            "sequenced_size": self.store.size(),
            "integrated_size": self.store.integrated_size(),
            "checkpoint_age_seconds": latest.at.elapsed().as_secs_f64(),
            "publish_interval_ms": self.config.publish_interval.as_millis() as u64,
            "encryption": self.config.encryption,
            // What this node writes: a deployment checks it before switching
            // traffic (an older build must still read the log until the
            // upgrade is finalized).
            "entry_format": self.entry_format,
            "storage": {
                "backend": self.store.backend(),
                // On a shared log: whether this node integrates and publishes.
                "publisher": self.store.is_publisher(),
            },
            "index": {
                "indexed_size": indexed,
                "lag_events": self.store.size().saturating_sub(indexed),
            },
        });
        if let Some(lease) = self.store.publisher_lease() {
            // Who publishes, under which term, and for how much longer as
            // this node last read it (about once a second).
            info["storage"]["lease"] = json!({
                "term": lease.term,
                "expires_in_ms": lease.remaining_ms(),
                "fenced_writes": self.store.fenced_writes(),
            });
            // The holder names a host and process: the operator's to see.
            if who.is_some_and(Principal::is_global_admin) {
                info["storage"]["lease"]["holder"] = json!(lease.holder);
            }
        }
        if who.is_some_and(Principal::is_global_admin) {
            info["backup"] = self.backup_status.to_json(&self.config.backup);
            info["settings"] = self.settings();
        }
        if let Some(w) = &self.witnessing {
            // Witness URLs and keys are in the public policy; errors may
            // name hosts, so they are the operator's.
            let admin = who.is_some_and(Principal::is_global_admin);
            info["witnesses"] = w
                .status()
                .into_iter()
                .map(|s| {
                    let mut v = json!({
                        "name": s.name,
                        "cosigned_size": s.cosigned_size,
                        "cosigned_at": s.cosigned_at,
                        "failures": s.failures,
                    });
                    if admin {
                        v["url"] = json!(s.url);
                        v["last_error"] = json!(s.last_error);
                    }
                    v
                })
                .collect();
        }
        info
    }

    /// The settings `aiaudit validate` checks before and after a deployment
    /// (security and compliance): names and durations, never secrets.
    fn settings(&self) -> Value {
        let c = &self.config;
        json!({
            "tls": c.tls_cert.is_some(),
            "mutual_tls": c.tls_client_ca.is_some(),
            "public_reads": c.public_reads,
            "require_signed_tenants": c.require_signed_tenants,
            "rate_limit_events_per_sec": c.rate_limit_events_per_sec,
            "sensitive_fields": c.sensitive_fields.len(),
            "retention_days": c
                .retention
                .iter()
                .map(|(tenant, d)| (tenant.clone(), json!(d.as_secs() / 86_400)))
                .collect::<serde_json::Map<_, _>>(),
            "policies": c.policy_file.is_some(),
            "witness_policy": c.witness_policy.is_some(),
            "compliance_check_every": c.compliance.check_every,
            "compliance_frameworks": c.compliance.check_frameworks,
        })
    }

    /// Whether the process can still do its job without a restart: false
    /// once the log's writer (the sequencer or its syncer) has stopped, which
    /// only a panic does and nothing but a restart undoes. `/healthz`.
    pub fn alive(&self) -> bool {
        self.sequencer.running()
    }

    /// Whether this node should take traffic: storage writable, checkpoints
    /// and the search index keeping up.
    pub async fn readiness(&self) -> Readiness {
        let latest = self.latest();
        let lag = self.store.size().saturating_sub(latest.checkpoint.size);
        let age = latest.at.elapsed();
        let stale = lag > 0 && age > self.config.publish_interval * 10;
        // After a failed append, probe the disk (1 MiB, fsync'd) rather than wait for the next
        // append: a load balancer that trusts /readyz would never send one.
        let writable = if self.store.shared() {
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || store.ping().is_ok())
                .await
                .unwrap_or(false)
        } else {
            self.sequencer.storage_writable() || {
                let probe = self.config.data_dir.join(".readyz-probe");
                tokio::task::spawn_blocking(move || {
                    let written = std::fs::File::create(&probe).and_then(|mut f| {
                        use std::io::Write;
                        f.write_all(&vec![0u8; 1 << 20])?;
                        f.sync_all()
                    });
                    let _ = std::fs::remove_file(&probe);
                    written.is_ok()
                })
                .await
                .unwrap_or(false)
            }
        };
        let index_lag = self
            .store
            .size()
            .saturating_sub(self.indexed.load(Ordering::Acquire));
        let index_ok = index_lag <= self.config.max_index_lag_events;
        // After a failed flush of the keyring no data key is used until a
        // restart: every sealed event would fail.
        let keyring_flushes = !self.keyring.flush_failed();
        // A writer thread that stopped (a panic) acknowledges nothing again.
        let sequencer_running = self.sequencer.running();
        let ready = writable && !stale && index_ok && keyring_flushes && sequencer_running;
        // Keys are loaded and recovery has finished before the server listens at all.
        Readiness {
            ready,
            checks: json!({
                "storage_writable": writable,
                "keys_loaded": true,
                "recovery_finished": true,
                "checkpoint_age_seconds": age.as_secs_f64(),
                "unpublished_entries": lag,
                "checkpoints_keep_up": !stale,
                "index_lag_events": index_lag,
                "index_keeps_up": index_ok,
                "keyring_flushes": keyring_flushes,
                "sequencer_running": sequencer_running,
            }),
        }
    }
}
