//! The search index: event metadata by log index, in SQLite.
//!
//! Derived from the log and never the source of truth: every row comes from
//! an entry's clear fields (entry v1: the event; v2: its clear index, so no
//! key is needed and erasure leaves search metadata intact), rows are added
//! in log order, and the index records how far it got in the same
//! transaction as the rows. Deleting the file and re-adding every entry
//! (`aiaudit reindex`) rebuilds it exactly.

use rusqlite::{params_from_iter, Connection, OpenFlags, OptionalExtension, ToSql};
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The index file inside a data directory.
pub const INDEX_FILE: &str = "search.sqlite";
/// Bumped when rows or columns change meaning: an index of another version
/// is rebuilt from the log.
pub const INDEX_VERSION: i64 = 3;
/// The most rows one query returns.
pub const MAX_LIMIT: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("search index: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("search index: {0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// One event's searchable metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Row {
    pub index: u64,
    pub id: String,
    pub time: String,
    #[serde(skip)]
    pub time_ms: Option<i64>,
    pub tenant: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
}

fn text(m: &Map<String, Value>, path: &[&str]) -> Option<String> {
    let mut v = m.get(path[0])?;
    for p in &path[1..] {
        v = v.get(*p)?;
    }
    v.as_str().map(str::to_string)
}

/// Milliseconds since the Unix epoch of an RFC 3339 time.
pub fn parse_time_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Only the clear fields, typed: parsing skips everything else (the sealed
/// ciphertext above all) without allocating or decoding it, which keeps the
/// indexer well ahead of ingest.
#[derive(serde::Deserialize)]
struct Lean {
    v: u64,
    index: Option<Clear>,
    event: Option<Clear>,
}

#[derive(serde::Deserialize, Default)]
struct Clear {
    id: Option<String>,
    time: Option<String>,
    tenant: Option<String>,
    action: Option<String>,
    risk_level: Option<String>,
    subject: Option<String>,
    trace_id: Option<String>,
    actor: Option<Named>,
    source: Option<Named>,
    outcome: Option<Status>,
    ai: Option<Ai>,
}

#[derive(serde::Deserialize)]
struct Named {
    id: Option<String>,
    name: Option<String>,
}

#[derive(serde::Deserialize)]
struct Status {
    status: Option<String>,
}

#[derive(serde::Deserialize)]
struct Ai {
    #[serde(rename = "gen_ai.provider.name")]
    provider: Option<String>,
    #[serde(rename = "gen_ai.request.model")]
    request_model: Option<String>,
    #[serde(rename = "gen_ai.response.model")]
    response_model: Option<String>,
    #[serde(rename = "gen_ai.conversation.id")]
    conversation: Option<String>,
}

fn lean_row(index: u64, entry: &[u8]) -> Option<Row> {
    let lean: Lean = serde_json::from_slice(entry).ok()?;
    let c = match lean.v {
        1 => lean.event?,
        2 => lean.index?,
        _ => return None,
    };
    let time = c.time.unwrap_or_default();
    let ai = c.ai;
    Some(Row {
        index,
        id: c.id.unwrap_or_default(),
        time_ms: parse_time_ms(&time),
        time,
        tenant: c.tenant.unwrap_or_default(),
        actor: c.actor.and_then(|a| a.id),
        action: c.action.unwrap_or_default(),
        outcome: c.outcome.and_then(|o| o.status),
        source: c.source.and_then(|s| s.name),
        provider: ai.as_ref().and_then(|a| a.provider.clone()),
        model: ai
            .as_ref()
            .and_then(|a| a.request_model.clone().or_else(|| a.response_model.clone())),
        risk: c.risk_level,
        subject: c.subject,
        trace_id: c.trace_id,
        conversation_id: ai.and_then(|a| a.conversation),
    })
}

/// The row of the entry at `index`, from its clear fields.
pub fn row_from_entry(index: u64, entry: &[u8]) -> std::result::Result<Row, String> {
    if let Some(row) = lean_row(index, entry) {
        return Ok(row);
    }
    // Not the shape validation guarantees: the general decoder says why.
    general_row(index, entry)
}

fn general_row(index: u64, entry: &[u8]) -> std::result::Result<Row, String> {
    let stored = aiaudit_event::envelope::decode_stored(entry).map_err(|e| e.to_string())?;
    let m = &stored.index;
    let time = text(m, &["time"]).unwrap_or_default();
    Ok(Row {
        index,
        id: text(m, &["id"]).unwrap_or_default(),
        time_ms: parse_time_ms(&time),
        time,
        tenant: text(m, &["tenant"]).unwrap_or_default(),
        actor: text(m, &["actor", "id"]),
        action: text(m, &["action"]).unwrap_or_default(),
        outcome: text(m, &["outcome", "status"]),
        source: text(m, &["source", "name"]),
        provider: text(m, &["ai", "gen_ai.provider.name"]),
        model: text(m, &["ai", "gen_ai.request.model"])
            .or_else(|| text(m, &["ai", "gen_ai.response.model"])),
        risk: text(m, &["risk_level"]),
        subject: text(m, &["subject"]),
        trace_id: text(m, &["trace_id"]),
        conversation_id: text(m, &["ai", "gen_ai.conversation.id"]),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Newest (highest log index) first.
    #[default]
    Desc,
    Asc,
}

/// A search. Every filter is an exact match; `from`/`to` bound the event
/// time (inclusive, exclusive). `tenants` restricts to what the caller may read.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub tenants: Option<Vec<String>>,
    pub tenant: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub source: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub risk: Option<String>,
    pub subject: Option<String>,
    pub trace_id: Option<String>,
    pub conversation_id: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub limit: u32,
    /// Continue after this log index (the previous page's cursor).
    pub after: Option<u64>,
    pub order: Order,
}

/// A page of results; `next` continues it.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub rows: Vec<Row>,
    pub next: Option<u64>,
}

const COLUMNS: &str = "idx, id, time, time_ms, tenant, actor, action, outcome, source, provider, \
                       model, risk, subject, trace_id, conversation_id";
const INSERT_COLUMNS: &str = "idx, id, time, time_ms, tenant, actor, action, outcome, source, provider, \
                       model, risk, subject, trace_id, conversation_id, trace_key, conversation_key";

/// A 64-bit key for a long random string (FNV-1a): an integer B-tree takes
/// random inserts far faster than one of 32-character strings; the string
/// itself is still compared, so a collision costs a row read, never a wrong row.
fn key64(s: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
  idx INTEGER PRIMARY KEY, id TEXT NOT NULL, time TEXT NOT NULL, time_ms INTEGER,
  tenant TEXT NOT NULL, actor TEXT, action TEXT NOT NULL, outcome TEXT, source TEXT,
  provider TEXT, model TEXT, risk TEXT, subject TEXT, trace_id TEXT, conversation_id TEXT,
  trace_key INTEGER, conversation_key INTEGER);
CREATE INDEX IF NOT EXISTS ev_tenant ON events(tenant, idx);
CREATE INDEX IF NOT EXISTS ev_action ON events(tenant, action, idx);
CREATE INDEX IF NOT EXISTS ev_actor ON events(tenant, actor, idx);
CREATE INDEX IF NOT EXISTS ev_model ON events(tenant, model, idx);
CREATE INDEX IF NOT EXISTS ev_risk ON events(tenant, risk, idx);
CREATE INDEX IF NOT EXISTS ev_subject ON events(tenant, subject, idx) WHERE subject IS NOT NULL;
CREATE INDEX IF NOT EXISTS ev_time ON events(tenant, time_ms);
CREATE INDEX IF NOT EXISTS ev_trace ON events(trace_key) WHERE trace_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS ev_conversation ON events(conversation_key) WHERE conversation_key IS NOT NULL;
";

pub struct SearchIndex {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

fn connect(path: &Path, write: bool) -> Result<Connection> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let c = Connection::open_with_flags(path, flags)?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    // A derived index: WAL with NORMAL sync never corrupts it (fsync only at
    // WAL checkpoints), and a tail lost to a power cut is re-added from the log.
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "NORMAL")?;
    // The writer touches a dozen B-trees per row: a large cache keeps their
    // hot pages in memory (readers need little).
    c.pragma_update(None, "cache_size", if write { -262_144 } else { -16_384 })?;
    Ok(c)
}

impl SearchIndex {
    /// Opens (creating) the index at `path`. An index of another version is
    /// emptied, to be rebuilt from the log.
    pub fn open(path: &Path) -> Result<SearchIndex> {
        let writer = connect(path, true)?;
        writer.execute_batch(SCHEMA)?;
        let mut version: Option<i64> = writer
            .query_row("SELECT value FROM meta WHERE key = 'version'", [], |r| {
                r.get(0)
            })
            .optional()?;
        if version.is_some_and(|v| v != INDEX_VERSION) {
            // Another layout: start over (the log rebuilds it).
            writer.execute_batch("DROP TABLE events; DROP TABLE meta;")?;
            writer.execute_batch(SCHEMA)?;
            version = None;
        }
        if version.is_none() {
            writer.execute(
                "INSERT INTO meta(key, value) VALUES ('version', ?1), ('indexed_size', 0)",
                [INDEX_VERSION],
            )?;
        }
        let readers = (0..4)
            .map(|_| connect(path, false).map(Mutex::new))
            .collect::<Result<Vec<_>>>()?;
        Ok(SearchIndex {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many log entries (from index 0) the index covers.
    pub fn indexed_size(&self) -> Result<u64> {
        let c = self.writer.lock().expect("index writer lock");
        let n: i64 = c.query_row(
            "SELECT value FROM meta WHERE key = 'indexed_size'",
            [],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Adds the entries at `start..start + entries.len()` in one transaction.
    /// `start` must be the indexed size: rows go in log order, exactly once.
    /// An entry that cannot be decoded is indexed as an empty row so the
    /// index still advances (and `aiaudit verify` is what reports it).
    pub fn add(&self, start: u64, entries: &[&[u8]]) -> Result<()> {
        let mut c = self.writer.lock().expect("index writer lock");
        let tx = c.transaction()?;
        let at: i64 = tx.query_row(
            "SELECT value FROM meta WHERE key = 'indexed_size'",
            [],
            |r| r.get(0),
        )?;
        if at as u64 != start {
            return Err(Error::Invalid(format!(
                "adding from {start}, but the index covers {at} entries"
            )));
        }
        {
            let mut insert = tx.prepare_cached(&format!(
                "INSERT INTO events({INSERT_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)"
            ))?;
            for (i, entry) in entries.iter().enumerate() {
                let index = start + i as u64;
                let row = row_from_entry(index, entry).unwrap_or(Row {
                    index,
                    ..Row::default()
                });
                insert.execute(rusqlite::params![
                    index as i64,
                    row.id,
                    row.time,
                    row.time_ms,
                    row.tenant,
                    row.actor,
                    row.action,
                    row.outcome,
                    row.source,
                    row.provider,
                    row.model,
                    row.risk,
                    row.subject,
                    row.trace_id,
                    row.conversation_id,
                    row.trace_id.as_deref().map(key64),
                    row.conversation_id.as_deref().map(key64)
                ])?;
            }
        }
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'indexed_size'",
            [(start + entries.len() as u64) as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// One page of events matching `q`, in log order (newest first by default).
    pub fn query(&self, q: &Query) -> Result<Page> {
        let limit = q.limit.clamp(1, MAX_LIMIT);
        let (clause, params) = where_clause(q);
        let order = match q.order {
            Order::Desc => "DESC",
            Order::Asc => "ASC",
        };
        // Choose the page's log indexes first (an index-only scan when an
        // index covers the filters), then fetch just those rows: a wide
        // time window no longer drags every candidate row through the sort.
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE idx IN \
             (SELECT idx FROM events WHERE {clause} ORDER BY idx {order} LIMIT {}) \
             ORDER BY idx {order}",
            limit + 1
        );
        let n = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let c = self.readers[n].lock().expect("index reader lock");
        let mut stmt = c.prepare_cached(&sql)?;
        let mut rows = stmt
            .query_map(
                params_from_iter(params.iter().map(|p| p.as_ref())),
                read_row,
            )?
            .collect::<std::result::Result<Vec<Row>, _>>()?;
        let next = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|r| r.index)
        } else {
            None
        };
        Ok(Page { rows, next })
    }

    /// Retention: drops the rows of `tenant` whose event time is before
    /// `cutoff_ms` (the log keeps their hashes). Returns how many.
    pub fn delete_before(&self, tenant: &str, cutoff_ms: i64) -> Result<u64> {
        let c = self.writer.lock().expect("index writer lock");
        let n = c.execute(
            "DELETE FROM events WHERE tenant = ?1 AND time_ms < ?2",
            rusqlite::params![tenant, cutoff_ms],
        )?;
        Ok(n as u64)
    }

    /// How many events match `q` (limit and cursor ignored), for reports.
    pub fn count(&self, q: &Query) -> Result<u64> {
        let (clause, params) = where_clause(&Query {
            after: None,
            ..q.clone()
        });
        let n = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let c = self.readers[n].lock().expect("index reader lock");
        let mut stmt = c.prepare_cached(&format!("SELECT count(*) FROM events WHERE {clause}"))?;
        let count: i64 = stmt
            .query_row(params_from_iter(params.iter().map(|p| p.as_ref())), |r| {
                r.get(0)
            })?;
        Ok(count as u64)
    }
}

/// Milliseconds in a day: report days are counted from the period's start.
pub const DAY_MS: i64 = 86_400_000;

/// One tenant's events with an event time in `[from_ms, to_ms)`: what a
/// report aggregates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub tenant: String,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// The events of one source (an AI system) in a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSummary {
    /// `source.name`; `None` for events without one.
    pub source: Option<String>,
    pub events: u64,
    pub first_ms: i64,
    pub last_ms: i64,
    /// Days of the period (counted from its start) with at least one event.
    pub days_with_events: u64,
}

/// A count for a group of events (the key depends on the aggregate).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tally<K> {
    pub key: K,
    pub count: u64,
}

/// A day of a period (counted from its start) and a source.
pub type DaySource = (u64, Option<String>);
/// A source and an action.
pub type SourceAction = (Option<String>, String);

/// Aggregates for reports. Every value is a bound parameter; column names
/// come from this code only.
impl SearchIndex {
    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        let n = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        self.readers[n].lock().expect("index reader lock")
    }

    /// Per source: events, first and last event time, days with events.
    pub fn sources(&self, p: &Period) -> Result<Vec<SourceSummary>> {
        let c = self.reader();
        let mut stmt = c.prepare_cached(
            "SELECT source, count(*), min(time_ms), max(time_ms),
                    count(DISTINCT (time_ms - ?2) / 86400000)
             FROM events WHERE tenant = ?1 AND time_ms >= ?2 AND time_ms < ?3
             GROUP BY source ORDER BY source",
        )?;
        let rows = stmt.query_map(rusqlite::params![p.tenant, p.from_ms, p.to_ms], |r| {
            Ok(SourceSummary {
                source: r.get(0)?,
                events: r.get::<_, i64>(1)? as u64,
                first_ms: r.get(2)?,
                last_ms: r.get(3)?,
                days_with_events: r.get::<_, i64>(4)? as u64,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Per (day of the period, source): events over time per AI system.
    pub fn daily_by_source(&self, p: &Period) -> Result<Vec<Tally<DaySource>>> {
        let c = self.reader();
        let mut stmt = c.prepare_cached(
            "SELECT (time_ms - ?2) / 86400000 AS day, source, count(*)
             FROM events WHERE tenant = ?1 AND time_ms >= ?2 AND time_ms < ?3
             GROUP BY day, source ORDER BY day, source",
        )?;
        let rows = stmt.query_map(rusqlite::params![p.tenant, p.from_ms, p.to_ms], |r| {
            Ok(Tally {
                key: (r.get::<_, i64>(0)? as u64, r.get(1)?),
                count: r.get::<_, i64>(2)? as u64,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Per (source, action).
    pub fn actions_by_source(&self, p: &Period) -> Result<Vec<Tally<SourceAction>>> {
        let c = self.reader();
        let mut stmt = c.prepare_cached(
            "SELECT source, action, count(*)
             FROM events WHERE tenant = ?1 AND time_ms >= ?2 AND time_ms < ?3
             GROUP BY source, action ORDER BY source, action",
        )?;
        let rows = stmt.query_map(rusqlite::params![p.tenant, p.from_ms, p.to_ms], |r| {
            Ok(Tally {
                key: (r.get(0)?, r.get(1)?),
                count: r.get::<_, i64>(2)? as u64,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Per actor, for one action: violations per rule (`policy:<rule>`).
    pub fn actors_of(&self, p: &Period, action: &str) -> Result<Vec<Tally<Option<String>>>> {
        let c = self.reader();
        let mut stmt = c.prepare_cached(
            "SELECT actor, count(*)
             FROM events WHERE tenant = ?1 AND action = ?4 AND time_ms >= ?2 AND time_ms < ?3
             GROUP BY actor ORDER BY actor",
        )?;
        let rows = stmt.query_map(
            rusqlite::params![p.tenant, p.from_ms, p.to_ms, action],
            |r| {
                Ok(Tally {
                    key: r.get(0)?,
                    count: r.get::<_, i64>(1)? as u64,
                })
            },
        )?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Events whose action is one of `actions` and, when `risks` is not
    /// empty, whose risk level is one of `risks`.
    pub fn count_in(&self, p: &Period, actions: &[&str], risks: &[&str]) -> Result<u64> {
        let mut sql = String::from(
            "SELECT count(*) FROM events WHERE tenant = ? AND time_ms >= ? AND time_ms < ?",
        );
        let mut params: Vec<&dyn ToSql> = vec![&p.tenant, &p.from_ms, &p.to_ms];
        for (column, values) in [("action", actions), ("risk", risks)] {
            if !values.is_empty() {
                sql.push_str(&format!(
                    " AND {column} IN ({})",
                    vec!["?"; values.len()].join(",")
                ));
                params.extend(values.iter().map(|v| v as &dyn ToSql));
            }
        }
        let c = self.reader();
        let mut stmt = c.prepare_cached(&sql)?;
        let n: i64 = stmt.query_row(params.as_slice(), |r| r.get(0))?;
        Ok(n as u64)
    }

    /// The earliest event time the index holds for `tenant`, whatever the
    /// period: how far back the ledger actually keeps its records.
    pub fn oldest_ms(&self, tenant: &str) -> Result<Option<i64>> {
        let c = self.reader();
        let mut stmt = c.prepare_cached("SELECT min(time_ms) FROM events WHERE tenant = ?1")?;
        Ok(stmt.query_row([tenant], |r| r.get(0))?)
    }
}

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        index: r.get::<_, i64>(0)? as u64,
        id: r.get(1)?,
        time: r.get(2)?,
        time_ms: r.get(3)?,
        tenant: r.get(4)?,
        actor: r.get(5)?,
        action: r.get(6)?,
        outcome: r.get(7)?,
        source: r.get(8)?,
        provider: r.get(9)?,
        model: r.get(10)?,
        risk: r.get(11)?,
        subject: r.get(12)?,
        trace_id: r.get(13)?,
        conversation_id: r.get(14)?,
    })
}

/// The SQL condition of a query and its parameters (never spliced into SQL).
fn where_clause(q: &Query) -> (String, Vec<Box<dyn ToSql>>) {
    let mut parts: Vec<String> = vec!["1 = 1".into()];
    let mut params: Vec<Box<dyn ToSql>> = Vec::new();
    if let Some(tenants) = &q.tenants {
        if tenants.is_empty() {
            parts.push("0 = 1".into());
        } else {
            parts.push(format!(
                "tenant IN ({})",
                vec!["?"; tenants.len()].join(",")
            ));
            for t in tenants {
                params.push(Box::new(t.clone()));
            }
        }
    }
    let exact = [
        ("tenant", &q.tenant),
        ("actor", &q.actor),
        ("action", &q.action),
        ("outcome", &q.outcome),
        ("source", &q.source),
        ("provider", &q.provider),
        ("model", &q.model),
        ("risk", &q.risk),
        ("subject", &q.subject),
        ("trace_id", &q.trace_id),
        ("conversation_id", &q.conversation_id),
    ];
    for (column, value) in exact {
        if let Some(v) = value {
            parts.push(format!("{column} = ?"));
            params.push(Box::new(v.clone()));
        }
    }
    for (column, value) in [
        ("trace_key", &q.trace_id),
        ("conversation_key", &q.conversation_id),
    ] {
        if let Some(v) = value {
            parts.push(format!("{column} = ?"));
            params.push(Box::new(key64(v)));
        }
    }
    if let Some(from) = q.from_ms {
        parts.push("time_ms >= ?".into());
        params.push(Box::new(from));
    }
    if let Some(to) = q.to_ms {
        parts.push("time_ms < ?".into());
        params.push(Box::new(to));
    }
    if let Some(after) = q.after {
        parts.push(match q.order {
            Order::Desc => "idx < ?".into(),
            Order::Asc => "idx > ?".into(),
        });
        params.push(Box::new(after as i64));
    }
    (parts.join(" AND "), params)
}

#[cfg(test)]
mod tests;
