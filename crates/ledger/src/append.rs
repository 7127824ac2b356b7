//! The front door: every event enters the log through [`Ledger::append`]
//! (a caller's batch: JSON ingest, OTLP logs, the agent's forwarding, SDK
//! batches) or [`Ledger::append_own`] (the ledger's own records). The rules
//! live here once, so no entry point can skip one: the principal's role and
//! tenants, the rate limit, reserved namespaces, batch signature rules,
//! schema, provenance, redaction and sealing, metrics and the policy feed.

use crate::auth::{Principal, Role};
pub use crate::error::invalid_events;
use crate::error::{add_event_errors, refuse_if_any, Error, FieldError, Kind, MAX_ERRORS};
use crate::Ledger;
use aiaudit_event::signature::EventSignature;
pub use aiaudit_event::signature::SignatureFormat;
use aiaudit_event::{CheckedEvent, LEDGER_PRINCIPAL};
use aiaudit_store::Appended;
use serde_json::Value;
use std::sync::Arc;

use crate::error::Result;

/// Headers of an emitter-signed batch (docs/format.md, "Emitter batch signatures").
pub const EMITTER_HEADER: &str = "aiaudit-emitter";
pub const SIGNATURE_HEADER: &str = "aiaudit-signature";
/// The batch-signature format (`aiaudit-batch-v2`); absent means v1, as
/// emitters written before v2 send.
pub const SIGNATURE_FORMAT_HEADER: &str = "aiaudit-signature-format";

/// Actions only the ledger writes: an event of a caller naming one is
/// refused, so state rebuilt from the log cannot be forged.
pub const RESERVED_ACTION_PREFIXES: &[&str] = &[
    "policy.",
    "retention.",
    "legal_hold.",
    "data.",
    "incident.",
    "compliance.",
    "trail.",
];
/// Source names only the ledger writes.
pub const RESERVED_SOURCES: &[&str] = &[
    "aiaudit",
    crate::policies::SOURCE_NAME,
    aiaudit_incident::SOURCE_NAME,
    crate::access::SOURCE_NAME,
];

/// A batch of events as a caller sent it.
pub struct Batch {
    pub events: Vec<Value>,
    /// The emitter's signature over the batch, if it was signed.
    pub signature: Option<BatchSignature>,
}

/// An emitter's batch signature (docs/format.md).
pub struct BatchSignature {
    pub emitter: String,
    /// How the emitter canonicalised its events before signing.
    pub format: SignatureFormat,
    pub signature: Vec<u8>,
}

/// What a batch became.
#[derive(Debug)]
pub struct Accepted {
    /// Each event's id, in batch order.
    pub ids: Vec<String>,
    /// Where each event is (or already was) in the log.
    pub appended: Vec<Appended>,
}

impl Ledger {
    /// Appends a caller's batch: all or nothing, acknowledged once durable.
    pub async fn append(self: &Arc<Self>, who: &Principal, batch: Batch) -> Result<Accepted> {
        let received = std::time::Instant::now();
        let n = batch.events.len() as u64;
        let label = failure_tenant(who, &batch.events).map(str::to_string);
        let result = self.append_checked(who, batch).await;
        match &result {
            Ok(_) => self
                .metrics
                .latency
                .observe(received.elapsed().as_secs_f64()),
            Err(p) => {
                self.metrics.fail(label.as_deref(), &p.slug, n);
            }
        }
        result
    }

    /// Counts a request refused before its batch reached [`Ledger::append`]
    /// (credentials, media type, body), under the fixed `refused` label.
    pub fn count_refused(&self, p: &Error) {
        self.metrics.fail(None, &p.slug, 1);
    }

    async fn append_checked(self: &Arc<Self>, who: &Principal, batch: Batch) -> Result<Accepted> {
        if !matches!(who.role, Role::Emitter | Role::Admin) {
            return Err(Error::forbidden(
                "only emitter and admin tokens may append events",
            ));
        }
        let events = batch.events;
        if events.is_empty() {
            return Err(invalid_events(
                "the batch holds no events",
                vec![FieldError::event(None, "", "", "empty batch")],
            ));
        }
        if events.len() > self.config.max_batch_events {
            // HTTP bodies are counted while parsed; this holds for every caller.
            return Err(Error::new(
                Kind::TooLarge,
                "too-many-events",
                "Too many events",
                format!(
                    "a batch holds at most {} events; send smaller batches",
                    self.config.max_batch_events
                ),
            ));
        }
        self.rate_limiter
            .take(&who.token_id, events.len())
            .map_err(|wait| crate::limits::too_many(wait, self.config.rate_limit_events_per_sec))?;
        check_tenants(who, &events)?;
        check_reserved(&events)?;
        let (checked, sigs, appended_by) = match &batch.signature {
            Some(sig) => {
                let (checked, sigs) = self.check_signed_batch(sig, &events)?;
                (checked, Some(sigs), format!("emitter:{}", sig.emitter))
            }
            None => {
                self.check_unsigned_allowed(&events)?;
                (check_batch(&events)?, None, who.provenance())
            }
        };
        let ids: Vec<String> = checked.iter().map(|c| c.id.clone()).collect();
        let mut tenants: std::collections::HashMap<String, u64> = Default::default();
        for c in &checked {
            *tenants.entry(c.tenant().to_string()).or_default() += 1;
        }
        let mut encoded =
            crate::sealing::encode_keeping_events(self, events, checked, sigs, &appended_by)
                .await?;
        if !self.policies.enabled() {
            // No reader: freed now rather than held through the fsync
            // (and likely freed on the thread that allocated them).
            encoded.events = Vec::new();
        }
        let appended = self.sequencer.append(encoded.entries).await?;
        self.keyring.members_cover(self.store.size());
        // Durable from here on: the policy engine may see them (never waited for).
        self.policies
            .observe(&self.metrics, encoded.events, &appended);
        // A duplicate's blobs are listed by no entry (its first copy has its
        // own): removed off the answer's path, best effort.
        let unlisted: Vec<_> = appended
            .iter()
            .zip(&encoded.blobs)
            .filter(|(a, _)| a.duplicate)
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect();
        if !unlisted.is_empty() {
            let ledger = self.clone();
            tokio::spawn(async move { crate::sealing::remove_blobs(&ledger, unlisted).await });
        }
        for (tenant, n) in &tenants {
            // Validated tenants only; the metrics cap how many they label.
            self.metrics.processed(tenant, *n);
        }
        Ok(Accepted { ids, appended })
    }

    /// Appends records the ledger writes itself (violations, erasures,
    /// expiries, holds), through the same validation and sealing as any
    /// other, marked `appended_by: "ledger"`: the only events state is
    /// rebuilt from.
    pub async fn append_own(self: &Arc<Self>, events: Vec<Value>) -> Result<Vec<Appended>> {
        let checked = check_batch(&events)?;
        let encoded =
            crate::sealing::encode_keeping_events(self, events, checked, None, LEDGER_PRINCIPAL)
                .await?;
        let appended = self.sequencer.append(encoded.entries).await?;
        self.keyring.members_cover(self.store.size());
        Ok(appended)
    }

    /// Validates a signed batch and checks the signature against the
    /// emitter's registered key; an emitter registered for tenants signs
    /// only for those.
    fn check_signed_batch(
        &self,
        sig: &BatchSignature,
        events: &[Value],
    ) -> Result<(Vec<CheckedEvent>, Vec<EventSignature>)> {
        let record = self.emitters.record(&sig.emitter).ok_or_else(|| {
            Error::forbidden(format!(
                "unknown emitter {:?}: register its key first (aiaudit emitter register)",
                sig.emitter
            ))
        })?;
        let verifier = aiaudit_tlog::Verifier::parse(&record.verifier_key)
            .map_err(|e| Error::internal(format!("emitter registry: {e}")))?;
        if !record.tenants.is_empty() {
            let mut errors = Vec::new();
            for (i, e) in events.iter().enumerate() {
                let tenant = e.get("tenant").and_then(Value::as_str).unwrap_or("");
                if !record.tenants.iter().any(|t| t == "*" || t == tenant)
                    && errors.len() < MAX_ERRORS
                {
                    errors.push(FieldError::event(
                        Some(i),
                        "/tenant",
                        "tenant",
                        format!(
                            "emitter {:?} may not sign events of tenant {tenant:?}",
                            sig.emitter
                        ),
                    ));
                }
            }
            if !errors.is_empty() {
                let mut p = Error::forbidden(format!(
                    "emitter {:?} is registered for tenants {:?} only; nothing of the batch was logged",
                    sig.emitter, record.tenants
                ));
                p.errors = errors;
                return Err(p);
            }
        }
        let checked = check_batch(events)?;
        let signed = signed_bytes(sig.format, events)?;
        let sigs =
            aiaudit_event::signature::verify_batch(&verifier, sig.format, &signed, &sig.signature)
                .map_err(|e| Error::unauthorized(e.to_string()))?;
        Ok((checked, sigs))
    }

    /// Tenants configured to require signed batches refuse unsigned events.
    fn check_unsigned_allowed(&self, events: &[Value]) -> Result<()> {
        let required = &self.config.require_signed_tenants;
        if required.is_empty() {
            return Ok(());
        }
        for (i, e) in events.iter().enumerate() {
            if let Some(tenant) = e.get("tenant").and_then(Value::as_str) {
                if required.iter().any(|t| t == tenant) {
                    let mut p = Error::unauthorized(format!(
                        "tenant {tenant:?} accepts only emitter-signed batches ({EMITTER_HEADER} and {SIGNATURE_HEADER} headers)"
                    ));
                    p.errors = vec![FieldError::event(
                        Some(i),
                        "/tenant",
                        "tenant",
                        "unsigned event",
                    )];
                    return Err(p);
                }
            }
        }
        Ok(())
    }
}

/// The tenant a refused batch is counted under: its one tenant when that
/// is a well-formed tenant the principal may write, else a fixed label, so
/// a caller's raw input never becomes a metrics label.
fn failure_tenant<'a>(who: &Principal, events: &'a [Value]) -> Option<&'a str> {
    let mut tenants = events
        .iter()
        .map(|e| e.get("tenant").and_then(Value::as_str));
    let first = tenants.next()??;
    if tenants.any(|t| t != Some(first)) {
        return None;
    }
    (aiaudit_event::schema::is_valid_tenant(first) && who.can_append(first)).then_some(first)
}

/// Every event's tenant must be one the principal may append to (403
/// otherwise, naming each event). Events without a tenant are left to validation.
pub(crate) fn check_tenants(principal: &Principal, events: &[Value]) -> Result<()> {
    let mut errors = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if let Some(tenant) = e.get("tenant").and_then(Value::as_str) {
            if !principal.can_append(tenant) && errors.len() < MAX_ERRORS {
                errors.push(FieldError::event(
                    Some(i),
                    "/tenant",
                    "tenant",
                    format!("this token may not append events of tenant {tenant:?}"),
                ));
            }
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    let mut p = Error::forbidden(format!(
        "{} event(s) belong to tenants this token may not write; nothing of the batch was logged",
        errors.len()
    ));
    p.errors = errors;
    Err(p)
}

/// Whether `action` is one only the ledger writes.
pub fn is_reserved_action(action: &str) -> bool {
    RESERVED_ACTION_PREFIXES
        .iter()
        .any(|p| action.starts_with(p))
}

/// Refuses (403) events that name an action or source the ledger reserves
/// for its own records.
pub fn check_reserved(events: &[Value]) -> Result<()> {
    let mut errors = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if errors.len() >= MAX_ERRORS {
            break;
        }
        if let Some(action) = e.get("action").and_then(Value::as_str) {
            if is_reserved_action(action) {
                errors.push(FieldError::event(
                    Some(i),
                    "/action",
                    "action",
                    format!(
                        "{action:?} is reserved for the ledger's own records ({} …)",
                        RESERVED_ACTION_PREFIXES.join(", ")
                    ),
                ));
            }
        }
        let source = e
            .get("source")
            .and_then(|s| s.get("name"))
            .and_then(Value::as_str);
        if let Some(source) = source {
            if RESERVED_SOURCES.contains(&source) {
                errors.push(FieldError::event(
                    Some(i),
                    "/source/name",
                    "source.name",
                    format!("{source:?} is reserved for the ledger itself"),
                ));
            }
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    let mut p = Error::forbidden(format!(
        "{} field(s) name actions or sources reserved for the ledger; nothing of the batch was logged",
        errors.len()
    ));
    p.errors = errors;
    Err(p)
}

/// Validates every event (schema v1) into canonical form, listing every error.
pub(crate) fn check_batch(events: &[Value]) -> Result<Vec<CheckedEvent>> {
    let mut errors = Vec::new();
    let mut checked = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        match aiaudit_event::check(event) {
            Ok(c) => checked.push(c),
            Err(errs) => add_event_errors(&mut errors, i, errs),
        }
    }
    refuse_if_any(errors)?;
    Ok(checked)
}

/// Validates every event without storing it, with the rules a caller's
/// batch meets at the ledger (forwarders check early so they spool only
/// what the ledger will take).
pub fn validate_batch(events: &[Value]) -> Result<()> {
    check_reserved(events)?;
    check_batch(events).map(|_| ())
}

/// The bytes each event's batch leaf hashes in `format`: v1 is the event's
/// canonical JSON (entry format v1's); v2 is RFC 8785, which
/// refuses (400, naming the field) an integer no double holds.
fn signed_bytes(format: SignatureFormat, events: &[Value]) -> Result<Vec<Vec<u8>>> {
    if format == SignatureFormat::V1 {
        return Ok(events.iter().map(aiaudit_event::canonical_event).collect());
    }
    let mut errors = Vec::new();
    let mut signed = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let mut out = Vec::with_capacity(256);
        match aiaudit_event::write_jcs(&mut out, event) {
            Ok(()) => signed.push(out),
            Err(e) if errors.len() < MAX_ERRORS => {
                let path = e.pointer.trim_start_matches('/').replace('/', ".");
                errors.push(FieldError::event(Some(i), &e.pointer, &path, e.detail));
            }
            Err(_) => {}
        }
    }
    if !errors.is_empty() {
        return Err(invalid_events(
            "an event holds a number that an RFC 8785 batch signature (aiaudit-batch-v2) cannot cover; nothing of the batch was logged",
            errors,
        ));
    }
    Ok(signed)
}
