//! Access to the trail is on the trail. Every read of an event's content
//! or of a large member, every search, export, compliance report and
//! incident review or pack a token asks for is itself appended to the log
//! by the ledger, as a `trail.access` event: who, what kind of access, which
//! log indexes or which filters, how many, when. Never the content.
//!
//! Rate-aware: a read only notes what it did (a map insert under a mutex,
//! no I/O); a task merges the notes of each second per (reader, tenant,
//! kind) and appends them as one batch. A dashboard paging through a
//! thousand events costs one access event per second, not a thousand, and
//! reads never wait for the disk. Notes not yet appended when the process
//! dies are lost (at most about a second of them); on a failed append they
//! are kept and retried with the next second's.

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::Ledger;
use aiaudit_index::Query;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The action of access records (reserved: `trail.`).
pub const ACCESS: &str = "trail.access";
/// The source of access records (reserved).
pub const SOURCE_NAME: &str = "aiaudit-access";
/// How often noted accesses are appended.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Log indexes listed per record at most; the rest are counted.
pub const MAX_INDEXES: usize = 1000;
/// Request details (filters, a report's period) kept per record at most.
const MAX_DETAILS: usize = 20;

/// What kind of access a record notes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// An event read with its content (`GET /v1/events/<i>`).
    EventRead,
    /// A large member read (`GET /v1/events/<i>/blobs/<n>`).
    BlobRead,
    /// A search page (`GET /v1/events`): the filters and the indexes shown.
    Search,
    /// An export bundle: the filters and the indexes it holds.
    Export,
    /// A compliance report: framework and period.
    Report,
    /// An incident's review or a regulator's pack.
    Incident,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::EventRead => "event.read",
            Kind::BlobRead => "blob.read",
            Kind::Search => "search",
            Kind::Export => "export",
            Kind::Report => "report",
            Kind::Incident => "incident.document",
        }
    }
}

/// One access as a read notes it.
#[derive(Debug, Clone)]
pub struct Access {
    pub tenant: String,
    pub kind: Kind,
    /// The log indexes whose content was served.
    pub indexes: Vec<u64>,
    /// What was asked (filters, a report's framework and period); never content.
    pub detail: Option<Value>,
}

/// Who read: the token (or client certificate) and its role.
type Reader = (String, String);

/// Accesses of one reader, tenant and kind since the last append.
#[derive(Debug, Default, Clone, PartialEq)]
struct Merged {
    requests: u64,
    indexes: BTreeSet<u64>,
    /// Indexes beyond [`MAX_INDEXES`], counted only.
    more_indexes: u64,
    details: Vec<Value>,
    more_details: u64,
    first_ms: i64,
    last_ms: i64,
}

type Pending = BTreeMap<(Reader, String, Kind), Merged>;

/// Accesses noted and not yet appended.
#[derive(Default)]
pub struct AccessLog {
    pending: Mutex<Pending>,
}

impl AccessLog {
    /// Notes `access` by `who` at `now_ms`: no I/O, never fails.
    pub fn note(&self, who: &Principal, access: Access, now_ms: i64) {
        let reader = (who.provenance(), who.role.as_str().to_string());
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let m = pending
            .entry((reader, access.tenant, access.kind))
            .or_insert_with(|| Merged {
                first_ms: now_ms,
                ..Merged::default()
            });
        m.requests += 1;
        m.last_ms = now_ms;
        for i in access.indexes {
            if m.indexes.len() < MAX_INDEXES || m.indexes.contains(&i) {
                m.indexes.insert(i);
            } else {
                m.more_indexes += 1;
            }
        }
        if let Some(d) = access.detail {
            if m.details.len() < MAX_DETAILS {
                if !m.details.contains(&d) {
                    m.details.push(d);
                }
            } else {
                m.more_details += 1;
            }
        }
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts back what could not be appended, merged with what came since.
    fn put_back(&self, earlier: Pending) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (key, old) in earlier {
            match pending.get_mut(&key) {
                None => {
                    pending.insert(key, old);
                }
                Some(m) => {
                    m.requests += old.requests;
                    m.first_ms = m.first_ms.min(old.first_ms);
                    for i in old.indexes {
                        if m.indexes.len() < MAX_INDEXES {
                            m.indexes.insert(i);
                        } else {
                            m.more_indexes += 1;
                        }
                    }
                    m.more_indexes += old.more_indexes;
                    m.details.extend(old.details);
                    m.details.truncate(MAX_DETAILS);
                    m.more_details += old.more_details;
                }
            }
        }
    }

    /// How many (reader, tenant, kind) records wait to be appended.
    pub fn waiting(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The `trail.access` events of the pending records.
fn events(pending: &Pending) -> Vec<Value> {
    pending
        .iter()
        .map(|(((actor, role), tenant, kind), m)| {
            let mut attributes = json!({
                "kind": kind.as_str(),
                "role": role,
                "requests": m.requests,
                "indexes": m.indexes,
                "first": crate::reports::rfc3339(m.first_ms),
                "last": crate::reports::rfc3339(m.last_ms),
            });
            if m.more_indexes > 0 {
                attributes["more_indexes"] = json!(m.more_indexes);
            }
            if !m.details.is_empty() {
                attributes["requested"] = json!(m.details);
            }
            if m.more_details > 0 {
                attributes["more_requested"] = json!(m.more_details);
            }
            json!({
                "id": uuid::Uuid::now_v7().to_string(),
                "time": crate::reports::rfc3339(m.last_ms),
                "tenant": tenant,
                "source": {"name": SOURCE_NAME},
                "actor": {"id": actor, "type": "user"},
                "action": ACCESS,
                "outcome": {"status": "success"},
                "attributes": attributes,
            })
        })
        .collect()
}

/// A search's filters as an access record keeps them: a subject given in
/// the clear is personal data, so only that one was given is kept.
pub fn query_detail(q: &Query) -> Value {
    let mut out = serde_json::Map::new();
    for (name, value) in q.named_filters() {
        // A subject in the clear is not written into the log; its keyed
        // hash (the form the index holds) is.
        let kept = if name != "subject" || value.starts_with(aiaudit_keyring::HMAC_PREFIX) {
            value
        } else {
            "(given)"
        };
        out.insert(name.into(), json!(kept));
    }
    for (name, ms) in [("from", q.from_ms), ("to", q.to_ms)] {
        if let Some(ms) = ms {
            out.insert(name.into(), json!(crate::reports::rfc3339(ms)));
        }
    }
    Value::Object(out)
}

/// What a search or an export asked, as its access records will say: taken
/// from the query once it is scoped to the reader's tenants.
pub struct Asked {
    filters: Value,
    tenant: Option<String>,
}

impl Asked {
    pub fn of(q: &Query) -> Asked {
        Asked {
            filters: query_detail(q),
            tenant: q.tenant.clone(),
        }
    }

    /// Notes the rows served (tenant, index): one access per tenant of the
    /// rows; with no rows, under the tenant asked for (or the ledger's own
    /// when the search spanned tenants).
    pub fn note_rows(self, ledger: &Ledger, who: &Principal, kind: Kind, rows: &[(String, u64)]) {
        let mut by: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for (t, i) in rows {
            by.entry(t.as_str()).or_default().push(*i);
        }
        if by.is_empty() {
            let t = self
                .tenant
                .unwrap_or_else(|| crate::incidents::LEDGER_TENANT.to_string());
            let access = Access {
                tenant: t,
                kind,
                indexes: Vec::new(),
                detail: Some(self.filters),
            };
            ledger.note_access(who, access);
            return;
        }
        for (t, indexes) in by {
            ledger.note_access(
                who,
                Access {
                    tenant: t.to_string(),
                    kind,
                    indexes,
                    detail: Some(self.filters.clone()),
                },
            );
        }
    }
}

impl Ledger {
    /// Notes an access by `who` (appended within about a second).
    pub fn note_access(&self, who: &Principal, access: Access) {
        if !self.config.access_log {
            return;
        }
        self.access.note(who, access, crate::reports::now_ms());
    }

    /// Appends every access noted so far as `trail.access` events, in
    /// batches of at most [`APPEND_CHUNK`]. A batch that fails for a
    /// passing reason (storage unavailable, disk full) is kept for the next
    /// try; one the ledger refuses as invalid would fail forever, so it is
    /// dropped, loudly.
    pub async fn flush_access(self: &Arc<Self>) {
        let pending = self.access.take();
        if pending.is_empty() {
            return;
        }
        let keys: Vec<_> = pending.keys().cloned().collect();
        let mut kept = Pending::new();
        for chunk in keys.chunks(APPEND_CHUNK) {
            let part: Pending = chunk
                .iter()
                .filter_map(|k| pending.get(k).map(|m| (k.clone(), m.clone())))
                .collect();
            match self.append_own(events(&part)).await {
                Ok(done) => {
                    self.metrics.access_records.inc_by(done.len() as u64);
                }
                Err(e) if e.kind == crate::error::Kind::Invalid => {
                    // One at a time: only the records refused are dropped.
                    for (key, m) in part {
                        let one = Pending::from([(key, m)]);
                        match self.append_own(events(&one)).await {
                            Ok(_) => {
                                self.metrics.access_records.inc();
                            }
                            Err(e) if e.kind == crate::error::Kind::Invalid => {
                                tracing::error!(error = %e.detail, "an access record refused as invalid; dropped");
                            }
                            Err(_) => kept.extend(one),
                        };
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e.detail, records = part.len(), "appending access records failed; kept for the next try");
                    kept.extend(part);
                }
            }
        }
        if !kept.is_empty() {
            self.access.put_back(kept);
        }
    }
}

/// Access records appended per batch at most.
const APPEND_CHUNK: usize = 500;

/// Access records read at most to answer who accessed one event.
pub const SCAN_LIMIT: usize = 10_000;

impl Ledger {
    /// Who accessed the event at `index` (its content, a large member, or
    /// in a search page or an export), newest first, from the `trail.access`
    /// records of its tenant: at most [`SCAN_LIMIT`] records are read
    /// (`complete` says whether that was all of them). Accesses of the last
    /// second may not be logged yet.
    pub async fn accesses_of(self: &Arc<Self>, who: &Principal, index: u64) -> Result<Value> {
        let size = self.store.size();
        if index >= size {
            return Err(Error::not_found(format!(
                "no event at index {index}; the log holds {size}"
            )));
        }
        let l = self.clone();
        let reader = who.clone();
        tokio::task::spawn_blocking(move || {
            let (_, tenant) = crate::read::entry_and_tenant_for_reader(&*l.store, &reader, index)?;
            let mut q = Query {
                tenant: Some(tenant.clone()),
                action: Some(ACCESS.into()),
                limit: aiaudit_index::MAX_LIMIT,
                ..Query::default()
            };
            let (mut found, mut scanned, mut complete) = (Vec::new(), 0usize, false);
            while scanned < SCAN_LIMIT {
                let page = l.index.query(&q)?;
                for row in &page.rows {
                    scanned += 1;
                    let Ok(entry) = l.store.read_entry(row.index) else {
                        continue;
                    };
                    let Ok(opened) = crate::sealing::open_entry(
                        &l.keyring,
                        &*l.store,
                        &entry,
                        crate::sealing::BlobMode::Omit,
                    ) else {
                        continue;
                    };
                    let Some(event) = opened.event else { continue };
                    let a = &event["attributes"];
                    let listed = a["indexes"]
                        .as_array()
                        .is_some_and(|ix| ix.iter().any(|v| v.as_u64() == Some(index)));
                    if listed {
                        found.push(json!({
                            "record": row.index,
                            "time": event["time"],
                            "reader": event["actor"]["id"],
                            "role": a["role"],
                            "kind": a["kind"],
                            "requests": a["requests"],
                            "first": a["first"],
                            "last": a["last"],
                        }));
                    }
                }
                match page.next {
                    Some(n) => q.after = Some(n),
                    None => {
                        complete = true;
                        break;
                    }
                }
            }
            Ok(json!({
                "index": index,
                "tenant": tenant,
                "accesses": found,
                "scanned": scanned,
                "complete": complete,
            }))
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))?
    }
}

/// Appends noted accesses every [`FLUSH_EVERY`].
pub fn spawn(ledger: Arc<Ledger>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(FLUSH_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            ledger.flush_access().await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn reader(role: Role, id: &str) -> Principal {
        Principal {
            token_id: id.into(),
            role,
            tenants: vec!["acme".into()],
        }
    }

    fn read(tenant: &str, kind: Kind, indexes: &[u64]) -> Access {
        Access {
            tenant: tenant.into(),
            kind,
            indexes: indexes.to_vec(),
            detail: None,
        }
    }

    #[test]
    fn reads_of_a_second_merge_per_reader_tenant_and_kind() {
        let log = AccessLog::default();
        let a = reader(Role::Auditor, "a1");
        log.note(&a, read("acme", Kind::EventRead, &[3]), 1_000);
        log.note(&a, read("acme", Kind::EventRead, &[3]), 1_200);
        log.note(&a, read("acme", Kind::EventRead, &[7]), 1_500);
        log.note(&a, read("acme", Kind::Search, &[1, 2]), 1_600);
        log.note(
            &reader(Role::Admin, "b2"),
            read("acme", Kind::EventRead, &[3]),
            1_700,
        );
        let out = events(&log.take());
        assert_eq!(out.len(), 3, "{out:?}");
        let reads = out
            .iter()
            .find(|e| e["actor"]["id"] == "token:a1" && e["attributes"]["kind"] == "event.read")
            .unwrap();
        assert_eq!(reads["attributes"]["requests"], 3);
        assert_eq!(reads["attributes"]["indexes"], json!([3, 7]));
        assert_eq!(reads["attributes"]["role"], "auditor");
        assert_eq!(reads["attributes"]["first"], "1970-01-01T00:00:01Z");
        assert_eq!(reads["attributes"]["last"], "1970-01-01T00:00:01.5Z");
        assert_eq!(reads["action"], ACCESS);
        assert_eq!(reads["source"]["name"], SOURCE_NAME);
        assert_eq!(log.waiting(), 0, "taken");
        // Every record is a valid event.
        for e in &out {
            aiaudit_event::prepare(e.clone()).unwrap();
        }
    }

    #[test]
    fn indexes_beyond_the_cap_are_counted_and_put_back_records_merge() {
        let log = AccessLog::default();
        let a = reader(Role::Auditor, "a1");
        let many: Vec<u64> = (0..(MAX_INDEXES as u64 + 5)).collect();
        log.note(&a, read("acme", Kind::Export, &many), 0);
        let first = log.take();
        log.note(&a, read("acme", Kind::Export, &[]), 10);
        log.put_back(first);
        let out = events(&log.take());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["attributes"]["requests"], 2);
        assert_eq!(
            out[0]["attributes"]["indexes"].as_array().unwrap().len(),
            MAX_INDEXES
        );
        assert_eq!(out[0]["attributes"]["more_indexes"], 5);
    }

    #[test]
    fn a_plain_subject_is_not_kept_in_the_filters() {
        let q = Query {
            subject: Some("alice@example.com".into()),
            actor: Some("agent-1".into()),
            from_ms: Some(0),
            ..Query::default()
        };
        let d = query_detail(&q);
        assert_eq!(
            d,
            json!({"subject": "(given)", "actor": "agent-1", "from": "1970-01-01T00:00:00Z"})
        );
        assert!(!d.to_string().contains("alice"));
        let tagged = Query {
            subject: Some(format!("{}abc", aiaudit_keyring::HMAC_PREFIX)),
            ..Query::default()
        };
        assert_eq!(
            query_detail(&tagged)["subject"],
            json!(format!("{}abc", aiaudit_keyring::HMAC_PREFIX))
        );
    }
}
