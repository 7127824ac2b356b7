//! The search index: event metadata by log index, in SQLite
//! ([`SearchIndex`], a node's own file) or in PostgreSQL ([`PgSearchIndex`],
//! shared by the nodes of a log kept there); [`Index`] is either.
//!
//! Derived from the log and never the source of truth: every row comes from
//! an entry's clear fields (entry v1: the event; v2: its clear index, so no
//! key is needed and erasure leaves search metadata intact), rows are added
//! in log order, and the index records how far it got in the same
//! transaction as the rows. Deleting the file and re-adding every entry
//! (`aiaudit reindex`) rebuilds it exactly.
//!
//! Rows go into one table by log index, with no per-row secondary index:
//! each B-tree insert costs microseconds, and the ten per event of layout
//! version 3 held the indexer far below ingest. Instead the log is cut into
//! blocks of 2^`block_bits` consecutive entries, and when a block fills,
//! its postings are written in the same transaction as its last row: per
//! filter, the block's rows holding each value, keyed by a 64-bit hash of
//! the value and packed into a few rows per block (`posting_id`), always
//! appended at the end of their table. A query walks the blocks newest (or
//! oldest) first, skips those whose time range misses its window, combines
//! the postings of its filters into candidate rows and reads only those,
//! under its full SQL condition: postings narrow, they never decide. The
//! rows after the last full block are scanned.

use rusqlite::types::Value as SqlValue;
use rusqlite::vtab::array::Array;
use rusqlite::{params_from_iter, Connection, OpenFlags, OptionalExtension, ToSql};
use serde::Serialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The index file inside a data directory.
pub const INDEX_FILE: &str = "search.sqlite";
/// Bumped when rows or columns change meaning: an index of another version
/// is rebuilt from the log.
pub const INDEX_VERSION: i64 = 4;
/// The most rows one query returns.
pub const MAX_LIMIT: u32 = 1000;

/// Rows per block of a new index, as a power of two: small enough that the
/// unblocked tail is a quick scan, large enough that a rare value costs few
/// block lookups (8,192: 1,221 blocks per 10 M events).
const BLOCK_BITS: u32 = 13;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("search index: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("search index: {0}")]
    Invalid(String),
    /// The PostgreSQL index could not be reached or refused a statement.
    #[error("search index in PostgreSQL: {0}")]
    Postgres(String),
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

/// The exact-match filters: the events column of each, in the order of
/// `Fields::filters` and `Query::filters`. A filter's postings code is its
/// position here (stored on disk: append only).
const FILTERS: [&str; 11] = [
    "tenant",
    "actor",
    "action",
    "outcome",
    "source",
    "provider",
    "model",
    "risk",
    "subject",
    "trace_id",
    "conversation_id",
];
const TENANT: usize = 0;
const ACTION: usize = 2;
const RISK: usize = 7;

/// One entry's columns, borrowed from the entry when its strings need no
/// unescaping: adding an event allocates nothing per field.
struct Fields<'a> {
    id: &'a str,
    time: &'a str,
    time_ms: Option<i64>,
    /// In `FILTERS` order; tenant and action are always present.
    filters: [Option<&'a str>; 11],
}

impl<'a> Fields<'a> {
    fn of_clear(c: &'a Clear<'a>) -> Fields<'a> {
        let time = c.time.as_deref().unwrap_or_default();
        let ai = c.ai.as_ref();
        Fields {
            id: c.id.as_deref().unwrap_or_default(),
            time,
            time_ms: parse_time_ms(time),
            filters: [
                Some(c.tenant.as_deref().unwrap_or_default()),
                c.actor.as_ref().and_then(|a| a.id.as_deref()),
                Some(c.action.as_deref().unwrap_or_default()),
                c.outcome.as_ref().and_then(|o| o.status.as_deref()),
                c.source.as_ref().and_then(|s| s.name.as_deref()),
                ai.and_then(|a| a.provider.as_deref()),
                ai.and_then(|a| a.request_model.as_deref().or(a.response_model.as_deref())),
                c.risk_level.as_deref(),
                c.subject.as_deref(),
                c.trace_id.as_deref(),
                ai.and_then(|a| a.conversation.as_deref()),
            ],
        }
    }

    fn of_row(r: &'a Row) -> Fields<'a> {
        Fields {
            id: &r.id,
            time: &r.time,
            time_ms: r.time_ms,
            filters: [
                Some(&r.tenant),
                r.actor.as_deref(),
                Some(&r.action),
                r.outcome.as_deref(),
                r.source.as_deref(),
                r.provider.as_deref(),
                r.model.as_deref(),
                r.risk.as_deref(),
                r.subject.as_deref(),
                r.trace_id.as_deref(),
                r.conversation_id.as_deref(),
            ],
        }
    }

    fn to_row(&self, index: u64) -> Row {
        let f = |i: usize| self.filters[i].map(str::to_string);
        Row {
            index,
            id: self.id.to_string(),
            time: self.time.to_string(),
            time_ms: self.time_ms,
            tenant: f(0).unwrap_or_default(),
            actor: f(1),
            action: f(2).unwrap_or_default(),
            outcome: f(3),
            source: f(4),
            provider: f(5),
            model: f(6),
            risk: f(7),
            subject: f(8),
            trace_id: f(9),
            conversation_id: f(10),
        }
    }
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
struct Lean<'a> {
    v: u64,
    #[serde(borrow)]
    index: Option<Clear<'a>>,
    #[serde(borrow)]
    event: Option<Clear<'a>>,
}

#[derive(serde::Deserialize, Default)]
struct Clear<'a> {
    #[serde(borrow, default, deserialize_with = "text_in")]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text_in")]
    time: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text_in")]
    tenant: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text_in")]
    action: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text_in")]
    risk_level: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text_in")]
    subject: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text_in")]
    trace_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    actor: Option<Named<'a>>,
    #[serde(borrow)]
    source: Option<Named<'a>>,
    #[serde(borrow)]
    outcome: Option<Status<'a>>,
    #[serde(borrow)]
    ai: Option<Ai<'a>>,
}

#[derive(serde::Deserialize)]
struct Named<'a> {
    #[serde(borrow, default, deserialize_with = "text_in")]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text_in")]
    name: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct Status<'a> {
    #[serde(borrow, default, deserialize_with = "text_in")]
    status: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct Ai<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "text_in",
        rename = "gen_ai.provider.name"
    )]
    provider: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "text_in",
        rename = "gen_ai.request.model"
    )]
    request_model: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "text_in",
        rename = "gen_ai.response.model"
    )]
    response_model: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "text_in",
        rename = "gen_ai.conversation.id"
    )]
    conversation: Option<Cow<'a, str>>,
}

/// An optional string, borrowed from the entry unless it has escapes (serde's
/// own `Cow` always copies), else like `Option<String>`.
fn text_in<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Cow<'de, str>>, D::Error> {
    struct Text;
    impl<'de> serde::de::Visitor<'de> for Text {
        type Value = Cow<'de, str>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
            Ok(Cow::Borrowed(v))
        }
        fn visit_str<E>(self, v: &str) -> std::result::Result<Self::Value, E> {
            Ok(Cow::Owned(v.to_string()))
        }
        fn visit_string<E>(self, v: String) -> std::result::Result<Self::Value, E> {
            Ok(Cow::Owned(v))
        }
    }
    struct Maybe;
    impl<'de> serde::de::Visitor<'de> for Maybe {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_none<E>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<Self::Value, D::Error> {
            d.deserialize_str(Text).map(Some)
        }
    }
    d.deserialize_option(Maybe)
}

fn lean_clear(entry: &[u8]) -> Option<Clear<'_>> {
    scan::clear_fields(entry).or_else(|| serde_clear(entry))
}

fn serde_clear(entry: &[u8]) -> Option<Clear<'_>> {
    if let Some(index) = aiaudit_event::sealed_v3::index_bytes(entry) {
        return serde_json::from_slice(index).ok();
    }
    let lean: Lean = serde_json::from_slice(entry).ok()?;
    match lean.v {
        1 => lean.event,
        2 => lean.index,
        _ => None,
    }
}

fn lean_row(index: u64, entry: &[u8]) -> Option<Row> {
    let clear = lean_clear(entry)?;
    Some(Fields::of_clear(&clear).to_row(index))
}

/// The row of the entry at `index`, from its clear fields.
pub fn row_from_entry(index: u64, entry: &[u8]) -> std::result::Result<Row, String> {
    if let Some(row) = lean_row(index, entry) {
        return Ok(row);
    }
    // Not the shape validation guarantees: the general decoder says why.
    general_row(index, entry)
}

/// Calls `f` with the fields of `entry`, as `row_from_entry` reads them; an
/// entry that cannot be decoded gives an empty row.
fn with_fields<T>(entry: &[u8], f: impl FnOnce(&Fields<'_>) -> T) -> T {
    if let Some(clear) = lean_clear(entry) {
        return f(&Fields::of_clear(&clear));
    }
    let row = general_row(0, entry).unwrap_or_default();
    f(&Fields::of_row(&row))
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

impl Query {
    /// The exact-match filters that are set, by their query parameter
    /// names (`tenant`, `actor`, ..., `conversation_id`).
    pub fn named_filters(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        FILTERS
            .iter()
            .zip(self.filters())
            .filter_map(|(name, v)| v.as_deref().map(|v| (*name, v)))
    }

    /// The exact-match filters, in `FILTERS` order.
    fn filters(&self) -> [&Option<String>; 11] {
        [
            &self.tenant,
            &self.actor,
            &self.action,
            &self.outcome,
            &self.source,
            &self.provider,
            &self.model,
            &self.risk,
            &self.subject,
            &self.trace_id,
            &self.conversation_id,
        ]
    }

    /// What a row must hold, as postings: per filter, keys any of which will do.
    fn terms(&self) -> Vec<(usize, Vec<i64>)> {
        let mut terms = Vec::new();
        // A long list of tenants would cost more lookups per block than
        // reading the block: the SQL condition alone checks it then.
        if let Some(tenants) = self.tenants.as_ref().filter(|t| t.len() <= 16) {
            terms.push((TENANT, tenants.iter().map(|t| key64(t)).collect()));
        }
        for (field, value) in self.filters().into_iter().enumerate() {
            if let Some(v) = value {
                terms.push((field, vec![key64(v)]));
            }
        }
        terms
    }
}

/// A page of results; `next` continues it.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub rows: Vec<Row>,
    pub next: Option<u64>,
}

const COLUMNS: &str = "idx, id, time, time_ms, tenant, actor, action, outcome, source, provider, \
                       model, risk, subject, trace_id, conversation_id";
/// What a block's postings are made of.
const TERM_COLUMNS: &str = "idx, time_ms, tenant, actor, action, outcome, source, provider, \
                            model, risk, subject, trace_id, conversation_id";

/// A 64-bit key for a value (FNV-1a): postings hold integers, not strings.
/// A collision only adds candidates, which every query checks against the
/// rows themselves, so it costs a row read, never a wrong row.
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
  provider TEXT, model TEXT, risk TEXT, subject TEXT, trace_id TEXT, conversation_id TEXT);
CREATE TABLE IF NOT EXISTS blocks (block INTEGER PRIMARY KEY, min_ms INTEGER, max_ms INTEGER);
CREATE TABLE IF NOT EXISTS postings (id INTEGER PRIMARY KEY, keys BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS minutes (
  time_ms INTEGER NOT NULL, tenant TEXT NOT NULL, source TEXT, outcome TEXT, n INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS minutes_key ON minutes(time_ms, tenant, source, outcome);
";

/// Counts over time read whole minutes from the `minutes` table: how many
/// events each minute (the start of the minute, in ms) holds per tenant,
/// source and outcome, kept as rows are added and deleted. Its columns are
/// named as in `events`, so one `where_clause` serves both.
const MINUTE_MS: i64 = 60_000;

/// The start of the minute `ms` falls in (before 1970 too).
fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// Fills `minutes` from the rows already indexed: for an index made before
/// the table existed.
const MINUTES_FROM_EVENTS: &str = "
INSERT INTO minutes(time_ms, tenant, source, outcome, n)
SELECT time_ms - ((time_ms % 60000) + 60000) % 60000, tenant, source, outcome, count(*)
FROM events WHERE time_ms IS NOT NULL GROUP BY 1, 2, 3, 4;
";

/// A minute of one tenant, source and outcome.
type MinuteKey = (i64, String, Option<String>, Option<String>);

/// Adds `counts` (negative to take away) to the `minutes` table.
fn count_minutes(c: &Connection, counts: &HashMap<MinuteKey, i64>) -> Result<()> {
    let mut update = c.prepare_cached(
        "UPDATE minutes SET n = n + ?5 WHERE time_ms = ?1 AND tenant = ?2 AND source IS ?3 AND outcome IS ?4",
    )?;
    let mut insert = c.prepare_cached(
        "INSERT INTO minutes(time_ms, tenant, source, outcome, n) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut emptied = false;
    for ((minute, tenant, source, outcome), n) in counts {
        let p = rusqlite::params![minute, tenant, source, outcome, n];
        if update.execute(p)? == 0 {
            insert.execute(p)?;
        }
        emptied |= *n < 0;
    }
    if emptied {
        c.prepare_cached("DELETE FROM minutes WHERE n <= 0")?
            .execute([])?;
    }
    Ok(())
}

/// A block's postings of one filter are spread over 2^6 rows by the top bits
/// of their keys: about 200 rows per block instead of one per distinct value
/// (a random trace id is one per event), each small enough to read whole.
const BUCKET_BITS: u32 = 6;

/// The postings row of `key` of filter `field` in `block`. Ids grow with the
/// block, so a block's postings are appended at the end of the table.
fn posting_id(block: u64, field: usize, key: i64) -> i64 {
    let bucket = (key as u64) >> (64 - BUCKET_BITS);
    ((((block << 4) | field as u64) << BUCKET_BITS) | bucket) as i64
}

// Four bits of a postings id name the filter.
const _: () = assert!(FILTERS.len() <= 16);

/// The first postings id of `block`.
fn block_postings(block: u64) -> i64 {
    posting_id(block, 0, 0)
}

/// The size of a block's row bitmap, in bytes.
fn bitmap_len(bits: u32) -> usize {
    (1usize << bits) / 8
}

/// A block's rows holding one value, as offsets in the block: little-endian
/// u16s while that is shorter than the block's bitmap, else the bitmap (so
/// the length tells which).
fn encode_rows(offsets: &[u16], bits: u32, out: &mut Vec<u8>) {
    out.clear();
    if 2 * offsets.len() < bitmap_len(bits) {
        out.extend(offsets.iter().flat_map(|o| o.to_le_bytes()));
    } else {
        out.resize(bitmap_len(bits), 0);
        for &o in offsets {
            out[o as usize / 8] |= 1 << (o % 8);
        }
    }
}

/// A postings row holds, by ascending key (as u64), one entry per value:
/// the key (i64 LE), the length of its rows (u16 LE), the rows (`encode_rows`).
/// ORs the rows of `key` into `words`; says whether the key was there.
fn find_rows(keys: &[u8], key: i64, bits: u32, words: &mut [u64]) -> bool {
    let mut rest = keys;
    while rest.len() >= 10 {
        let k = i64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
        let n = u16::from_le_bytes([rest[8], rest[9]]) as usize;
        let rows = &rest[10..(10 + n).min(rest.len())];
        if k == key {
            decode_rows(rows, bits, words);
            return true;
        }
        if k as u64 > key as u64 {
            break;
        }
        rest = &rest[10 + rows.len()..];
    }
    false
}

/// Adds (ORs) the rows of an encoded posting to a block bitmap of u64 words.
fn decode_rows(blob: &[u8], bits: u32, words: &mut [u64]) {
    if blob.len() == bitmap_len(bits) {
        for (i, b) in blob.iter().enumerate() {
            words[i / 8] |= (*b as u64) << (8 * (i % 8));
        }
    } else {
        for o in blob.chunks_exact(2) {
            let o = u16::from_le_bytes([o[0], o[1]]) as usize;
            if let Some(w) = words.get_mut(o / 64) {
                *w |= 1 << (o % 64);
            }
        }
    }
}

/// The terms of the rows of one block that are not yet postings: the writer
/// keeps them, so a block that fills costs no read-back of its rows.
struct Tail {
    block: u64,
    /// The indexed size these terms reflect.
    end: u64,
    /// (key as u64, offset in the block) of each term, in row order, per
    /// postings row of the block (filter and bucket: the low bits of its id).
    rows: Vec<Vec<(u64, u16)>>,
    min_ms: Option<i64>,
    max_ms: Option<i64>,
}

impl Tail {
    fn new(block: u64, end: u64) -> Tail {
        Tail {
            block,
            end,
            rows: vec![Vec::new(); FILTERS.len() << BUCKET_BITS],
            min_ms: None,
            max_ms: None,
        }
    }

    fn push(&mut self, offset: u16, time_ms: Option<i64>, filters: &[Option<&str>; 11]) {
        for (field, value) in filters.iter().enumerate() {
            if let Some(v) = value {
                let key = key64(v) as u64;
                let row = (field << BUCKET_BITS) | (key >> (64 - BUCKET_BITS)) as usize;
                self.rows[row].push((key, offset));
            }
        }
        if let Some(t) = time_ms {
            self.min_ms = Some(self.min_ms.map_or(t, |m| m.min(t)));
            self.max_ms = Some(self.max_ms.map_or(t, |m| m.max(t)));
        }
    }

    /// Empties it for the next block, keeping its memory.
    fn next_block(&mut self) {
        self.block += 1;
        self.rows.iter_mut().for_each(Vec::clear);
        (self.min_ms, self.max_ms) = (None, None);
    }
}

/// Adds the terms of the stored rows of `tail.block` below `end`.
fn read_terms(c: &Connection, bits: u32, tail: &mut Tail, end: u64) -> Result<()> {
    let lo = tail.block << bits;
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {TERM_COLUMNS} FROM events WHERE idx >= ?1 AND idx < ?2"
    ))?;
    let mut rows = stmt.query([lo as i64, end as i64])?;
    while let Some(r) = rows.next()? {
        let idx: i64 = r.get(0)?;
        let mut filters = [None; 11];
        for (i, f) in filters.iter_mut().enumerate() {
            *f = r
                .get_ref(2 + i)?
                .as_str_or_null()
                .map_err(rusqlite::Error::from)?;
        }
        tail.push((idx as u64 - lo) as u16, r.get(1)?, &filters);
    }
    Ok(())
}

/// Writes the postings and the time range of a full block.
fn write_block(c: &Connection, bits: u32, tail: &mut Tail) -> Result<()> {
    c.prepare_cached("INSERT INTO blocks(block, min_ms, max_ms) VALUES (?1, ?2, ?3)")?
        .execute(rusqlite::params![
            tail.block as i64,
            tail.min_ms,
            tail.max_ms
        ])?;
    let mut insert = c.prepare_cached("INSERT INTO postings(id, keys) VALUES (?1, ?2)")?;
    let (mut offsets, mut rows, mut keys) = (Vec::new(), Vec::new(), Vec::new());
    let first = block_postings(tail.block);
    for (i, terms) in tail.rows.iter_mut().enumerate() {
        if terms.is_empty() {
            continue;
        }
        // Stable: each key's offsets stay ascending.
        terms.sort_by_key(|t| t.0);
        keys.clear();
        for value in terms.chunk_by(|a, b| a.0 == b.0) {
            offsets.clear();
            offsets.extend(value.iter().map(|t| t.1));
            encode_rows(&offsets, bits, &mut rows);
            keys.extend(value[0].0.to_le_bytes());
            keys.extend((rows.len() as u16).to_le_bytes());
            keys.extend(&rows);
        }
        insert.execute(rusqlite::params![first + i as i64, keys])?;
    }
    Ok(())
}

/// Rewrites the postings of block `b` from its remaining rows.
fn rebuild_block(c: &Connection, bits: u32, b: u64) -> Result<()> {
    c.prepare_cached("DELETE FROM postings WHERE id >= ?1 AND id < ?2")?
        .execute([block_postings(b), block_postings(b + 1)])?;
    c.prepare_cached("DELETE FROM blocks WHERE block = ?1")?
        .execute([b as i64])?;
    let mut tail = Tail::new(b, 0);
    read_terms(c, bits, &mut tail, (b + 1) << bits)?;
    write_block(c, bits, &mut tail)
}

fn meta(c: &Connection, key: &str) -> Result<Option<i64>> {
    Ok(c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

fn indexed(c: &Connection) -> Result<u64> {
    let n = meta(c, "indexed_size")?.ok_or_else(|| Error::Invalid("no indexed size".into()))?;
    Ok(n as u64)
}

pub struct SearchIndex {
    path: PathBuf,
    /// log2 of the rows per block, as the index was created with.
    bits: u32,
    // Readers close first: the writer, closing last, checkpoints the WAL.
    readers: Vec<Mutex<Connection>>,
    writer: Mutex<Writer>,
    next_reader: AtomicUsize,
}

struct Writer {
    conn: Connection,
    /// The terms of the rows past the last full block; `None` when they may
    /// not match the committed rows (after a failure or a deletion), to be
    /// read back from the rows.
    tail: Option<Tail>,
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
    // The writer appends (rows, then a block's postings) and reads back at
    // most a block (8,192 rows): 8 MiB holds that several times over, and a
    // larger cache only fills with pages it will not touch again (it grew
    // the ledger's memory with the log). Readers need little.
    c.pragma_update(None, "cache_size", if write { -8_192 } else { -16_384 })?;
    // Queries pass a block's candidate rows as one array parameter.
    rusqlite::vtab::array::load_module(&c)?;
    c.set_prepared_statement_cache_capacity(64);
    Ok(c)
}

/// Where a query looks, in the order it reads: rows scanned with its
/// condition (the unblocked tail, or a block when no filter has postings),
/// or a full block read through its postings.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Rows(u64, u64),
    Block(u64),
}

fn sql_order(o: Order) -> &'static str {
    match o {
        Order::Desc => "DESC",
        Order::Asc => "ASC",
    }
}

fn array(ids: &[i64]) -> Array {
    Rc::new(ids.iter().map(|&i| SqlValue::Integer(i)).collect())
}

/// Per-source rows of a period (day, count, first, last), folded into
/// [`SourceSummary`]s; both backends group the same way.
#[derive(Default)]
pub(crate) struct SourceTally {
    by: BTreeMap<Option<String>, (SourceSummary, BTreeSet<i64>)>,
}

impl SourceTally {
    pub(crate) fn add(
        &mut self,
        source: Option<String>,
        day: i64,
        events: u64,
        first_ms: i64,
        last_ms: i64,
    ) {
        let (s, days) = self.by.entry(source.clone()).or_insert_with(|| {
            let s = SourceSummary {
                source,
                events: 0,
                first_ms: i64::MAX,
                last_ms: i64::MIN,
                days_with_events: 0,
            };
            (s, BTreeSet::new())
        });
        days.insert(day);
        s.events += events;
        s.first_ms = s.first_ms.min(first_ms);
        s.last_ms = s.last_ms.max(last_ms);
    }

    pub(crate) fn finish(self) -> Vec<SourceSummary> {
        self.by
            .into_values()
            .map(|(mut s, days)| {
                s.days_with_events = days.len() as u64;
                s
            })
            .collect()
    }
}

impl SearchIndex {
    /// Opens (creating) the index at `path`. An index of another version is
    /// emptied, to be rebuilt from the log.
    pub fn open(path: &Path) -> Result<SearchIndex> {
        Self::open_with(path, BLOCK_BITS)
    }

    /// `open`, with the block size a new index gets (tests use tiny blocks).
    fn open_with(path: &Path, block_bits: u32) -> Result<SearchIndex> {
        let mut writer = connect(path, true)?;
        writer.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )?;
        if meta(&writer, "version")?.is_some_and(|v| v != INDEX_VERSION) {
            // Another layout: start over (the log rebuilds it), every table
            // at once so that no mix of layouts is ever left behind.
            let tx = writer.transaction()?;
            let tables: Vec<String> = tx
                .prepare(
                    "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                )?
                .query_map([], |r| r.get(0))?
                .collect::<std::result::Result<_, _>>()?;
            for t in tables {
                tx.execute_batch(&format!("DROP TABLE \"{}\"", t.replace('"', "\"\"")))?;
            }
            tx.commit()?;
            // Only gives the old rows' space back (in WAL mode the file
            // shrinks at the checkpoint): an index that another process
            // holds open still works without it.
            let _ = writer.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);");
        }
        let bits = {
            let tx = writer.transaction()?;
            let had_minutes: bool = tx.query_row(
                "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = 'minutes'",
                [],
                |r| r.get(0),
            )?;
            tx.execute_batch(SCHEMA)?;
            if !had_minutes {
                tx.execute_batch(MINUTES_FROM_EVENTS)?;
            }
            if meta(&tx, "version")?.is_none() {
                tx.execute(
                    "INSERT INTO meta(key, value) VALUES ('version', ?1), ('indexed_size', 0), ('block_bits', ?2)",
                    rusqlite::params![INDEX_VERSION, block_bits],
                )?;
            }
            let bits = meta(&tx, "block_bits")?;
            tx.commit()?;
            bits
        };
        let bits = match bits {
            Some(b @ 4..=16) => b as u32,
            other => return Err(Error::Invalid(format!("block size 2^{other:?}"))),
        };
        let readers = (0..4)
            .map(|_| connect(path, false).map(Mutex::new))
            .collect::<Result<Vec<_>>>()?;
        Ok(SearchIndex {
            path: path.to_path_buf(),
            bits,
            writer: Mutex::new(Writer {
                conn: writer,
                tail: None,
            }),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many log entries (from index 0) the index covers.
    pub fn indexed_size(&self) -> Result<u64> {
        let w = self.writer.lock().expect("index writer lock");
        indexed(&w.conn)
    }

    /// Adds the entries at `start..start + entries.len()` in one transaction.
    /// `start` must be the indexed size: rows go in log order, exactly once.
    /// An entry that cannot be decoded is indexed as an empty row so the
    /// index still advances (and `aiaudit verify` is what reports it).
    pub fn add(&self, start: u64, entries: &[&[u8]]) -> Result<()> {
        let bits = self.bits;
        let mut guard = self.writer.lock().expect("index writer lock");
        let w = &mut *guard;
        let tx = w.conn.transaction()?;
        let at = indexed(&tx)?;
        if at != start {
            return Err(Error::Invalid(format!(
                "adding from {start}, but the index covers {at} entries"
            )));
        }
        // Taken for the transaction: if it fails, none is left to go stale.
        let tail = w.tail.take();
        let mut tail = match tail {
            Some(t) if t.end == start => t,
            _ => {
                let mut t = Tail::new(start >> bits, start);
                read_terms(&tx, bits, &mut t, start)?;
                t
            }
        };
        {
            let mut insert = tx.prepare_cached(&format!(
                "INSERT INTO events({COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)"
            ))?;
            let mask = (1u64 << bits) - 1;
            let mut minutes: HashMap<MinuteKey, i64> = HashMap::new();
            for (i, entry) in entries.iter().enumerate() {
                let index = start + i as u64;
                with_fields(entry, |f| -> Result<()> {
                    let [tenant, actor, action, outcome, source, provider, model, risk, subject, trace, conversation] =
                        f.filters;
                    insert.execute(rusqlite::params![
                        index as i64,
                        f.id,
                        f.time,
                        f.time_ms,
                        tenant,
                        actor,
                        action,
                        outcome,
                        source,
                        provider,
                        model,
                        risk,
                        subject,
                        trace,
                        conversation
                    ])?;
                    tail.push((index & mask) as u16, f.time_ms, &f.filters);
                    if let Some(t) = f.time_ms {
                        let key = (
                            minute_of(t),
                            tenant.unwrap_or_default().to_string(),
                            source.map(str::to_string),
                            outcome.map(str::to_string),
                        );
                        *minutes.entry(key).or_default() += 1;
                    }
                    Ok(())
                })?;
                if index & mask == mask {
                    write_block(&tx, bits, &mut tail)?;
                    tail.next_block();
                }
            }
            count_minutes(&tx, &minutes)?;
        }
        let end = start + entries.len() as u64;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'indexed_size'",
            [end as i64],
        )?;
        tx.commit()?;
        tail.end = end;
        w.tail = Some(tail);
        Ok(())
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        let n = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        self.readers[n].lock().expect("index reader lock")
    }

    /// The units that may hold rows of `q` past its cursor, in its order.
    fn units(&self, c: &Connection, q: &Query, postings: bool) -> Result<Vec<Unit>> {
        let bits = self.bits;
        let size = indexed(c)?;
        let (lo, hi) = match (q.after, q.order) {
            (None, _) => (0, size),
            (Some(a), Order::Desc) => (0, a.min(size)),
            (Some(a), Order::Asc) => (a.saturating_add(1), size),
        };
        if lo >= hi {
            return Ok(Vec::new());
        }
        // A block whose time range misses the window holds no match.
        let mut stmt = c.prepare_cached(
            "SELECT block FROM blocks WHERE block BETWEEN ?1 AND ?2
             AND (?3 IS NULL OR max_ms >= ?3) AND (?4 IS NULL OR min_ms < ?4) ORDER BY block",
        )?;
        let blocks = stmt
            .query_map(
                rusqlite::params![
                    (lo >> bits) as i64,
                    ((hi - 1) >> bits) as i64,
                    q.from_ms,
                    q.to_ms
                ],
                |r| r.get::<_, i64>(0),
            )?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut units: Vec<Unit> = blocks
            .into_iter()
            .map(|b| {
                let b = b as u64;
                if postings {
                    Unit::Block(b)
                } else {
                    Unit::Rows(b << bits, (b + 1) << bits)
                }
            })
            .collect();
        let tail = ((size >> bits) << bits).max(lo);
        if tail < hi {
            units.push(Unit::Rows(tail, hi));
        }
        if q.order == Order::Desc {
            units.reverse();
        }
        Ok(units)
    }

    /// Calls `f` with postings row `id`, if the block has one.
    fn with_posting(&self, c: &Connection, id: i64, f: impl FnOnce(&[u8])) -> Result<bool> {
        let mut stmt = c.prepare_cached("SELECT keys FROM postings WHERE id = ?1")?;
        let mut rows = stmt.query([id])?;
        Ok(match rows.next()? {
            Some(r) => {
                f(r.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?);
                true
            }
            None => false,
        })
    }

    /// The rows of block `b` whose postings hold every term, ascending.
    fn candidates(&self, c: &Connection, b: u64, terms: &[(usize, Vec<i64>)]) -> Result<Vec<i64>> {
        let bits = self.bits;
        let words = (1usize << bits).div_ceil(64);
        let mut all: Option<Vec<u64>> = None;
        for (field, keys) in terms {
            let mut any = vec![0u64; words];
            // Keys that share a postings row cost one read.
            let mut keys: Vec<(i64, i64)> = keys
                .iter()
                .map(|&k| (posting_id(b, *field, k), k))
                .collect();
            keys.sort_unstable();
            for row in keys.chunk_by(|x, y| x.0 == y.0) {
                self.with_posting(c, row[0].0, |blob| {
                    for &(_, key) in row {
                        find_rows(blob, key, bits, &mut any);
                    }
                })?;
            }
            if let Some(prev) = &all {
                for (a, p) in any.iter_mut().zip(prev) {
                    *a &= p;
                }
            }
            if any.iter().all(|w| *w == 0) {
                return Ok(Vec::new());
            }
            all = Some(any);
        }
        let base = (b << bits) as i64;
        let mut out = Vec::new();
        for (i, &w) in all.unwrap_or_default().iter().enumerate() {
            let mut w = w;
            while w != 0 {
                out.push(base + 64 * i as i64 + w.trailing_zeros() as i64);
                w &= w - 1;
            }
        }
        Ok(out)
    }

    /// One page of events matching `q`, in log order (newest first by default).
    pub fn query(&self, q: &Query) -> Result<Page> {
        let limit = q.limit.clamp(1, MAX_LIMIT) as usize;
        let want = limit + 1;
        let (clause, params) = where_clause(q);
        let order = sql_order(q.order);
        let terms = q.terms();
        let scan = format!(
            "SELECT {COLUMNS} FROM events WHERE idx >= ? AND idx < ? AND {clause} ORDER BY idx {order} LIMIT ?"
        );
        let pick = format!(
            "SELECT {COLUMNS} FROM events WHERE idx IN rarray(?) AND {clause} ORDER BY idx {order} LIMIT ?"
        );
        let c = self.reader();
        // One snapshot: the indexed size, the postings and the rows agree.
        let snapshot = c.unchecked_transaction()?;
        let mut rows: Vec<Row> = Vec::new();
        for unit in self.units(&snapshot, q, !terms.is_empty())? {
            if rows.len() >= want {
                break;
            }
            match unit {
                Unit::Rows(lo, hi) => {
                    let (lo, hi, left) = (lo as i64, hi as i64, (want - rows.len()) as i64);
                    let mut p: Vec<&dyn ToSql> = vec![&lo, &hi];
                    p.extend(params.iter().map(|x| x.as_ref()));
                    p.push(&left);
                    let mut stmt = snapshot.prepare_cached(&scan)?;
                    for r in stmt.query_map(p.as_slice(), read_row)? {
                        rows.push(r?);
                    }
                }
                Unit::Block(b) => {
                    let mut ids = self.candidates(&snapshot, b, &terms)?;
                    match (q.order, q.after) {
                        (Order::Desc, a) => {
                            ids.retain(|&i| a.is_none_or(|a| (i as u64) < a));
                            ids.reverse();
                        }
                        (Order::Asc, a) => ids.retain(|&i| a.is_none_or(|a| (i as u64) > a)),
                    }
                    // Growing batches: the first usually fills the page, and
                    // a selective time window still reads few at a time.
                    let (mut at, mut batch) = (0, (2 * (want - rows.len())).max(64));
                    while at < ids.len() && rows.len() < want {
                        let end = (at + batch).min(ids.len());
                        let (set, left) = (array(&ids[at..end]), (want - rows.len()) as i64);
                        let mut p: Vec<&dyn ToSql> = vec![&set];
                        p.extend(params.iter().map(|x| x.as_ref()));
                        p.push(&left);
                        let mut stmt = snapshot.prepare_cached(&pick)?;
                        for r in stmt.query_map(p.as_slice(), read_row)? {
                            rows.push(r?);
                        }
                        at = end;
                        batch *= 2;
                    }
                }
            }
        }
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|r| r.index)
        } else {
            None
        };
        Ok(Page { rows, next })
    }

    /// Retention: drops the rows of `tenant` whose event time is before
    /// `cutoff_ms` (the log keeps their hashes). Returns how many.
    pub fn delete_before(&self, tenant: &str, cutoff_ms: i64) -> Result<u64> {
        let bits = self.bits;
        let mut guard = self.writer.lock().expect("index writer lock");
        let w = &mut *guard;
        let tx = w.conn.transaction()?;
        let size = indexed(&tx)?;
        let blocks: Vec<i64> = tx
            .prepare_cached("SELECT block FROM blocks WHERE min_ms < ?1 ORDER BY block")?
            .query_map([cutoff_ms], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        let key = key64(tenant);
        // What leaves the minutes' counts with the rows.
        let mut gone: HashMap<MinuteKey, i64> = HashMap::new();
        let mut delete = |lo: u64, hi: u64| -> Result<u64> {
            let which = rusqlite::params![lo as i64, hi as i64, tenant, cutoff_ms];
            let mut counted = tx.prepare_cached(
                "SELECT time_ms - ((time_ms % 60000) + 60000) % 60000, source, outcome, count(*) FROM events
                 WHERE idx >= ?1 AND idx < ?2 AND tenant = ?3 AND time_ms < ?4 GROUP BY 1, 2, 3",
            )?;
            let mut rows = counted.query(which)?;
            while let Some(r) = rows.next()? {
                let key = (r.get(0)?, tenant.to_string(), r.get(1)?, r.get(2)?);
                *gone.entry(key).or_default() -= r.get::<_, i64>(3)?;
            }
            let n = tx
                .prepare_cached(
                    "DELETE FROM events WHERE idx >= ?1 AND idx < ?2 AND tenant = ?3 AND time_ms < ?4",
                )?
                .execute(which)?;
            Ok(n as u64)
        };
        let mut deleted = 0;
        let mut scratch = vec![0u64; (1usize << bits).div_ceil(64)];
        for b in blocks {
            let b = b as u64;
            // Only blocks that hold the tenant at all.
            let mut has = false;
            self.with_posting(&tx, posting_id(b, TENANT, key), |blob| {
                has = find_rows(blob, key, bits, &mut scratch);
            })?;
            let n = if has {
                delete(b << bits, (b + 1) << bits)?
            } else {
                0
            };
            if n > 0 {
                rebuild_block(&tx, bits, b)?;
                deleted += n;
            }
        }
        let n = delete((size >> bits) << bits, size)?;
        if n > 0 {
            w.tail = None;
            deleted += n;
        }
        count_minutes(&tx, &gone)?;
        tx.commit()?;
        Ok(deleted)
    }

    /// How many events match `q` (limit and cursor ignored), for reports.
    pub fn count(&self, q: &Query) -> Result<u64> {
        let mut count = 0;
        self.over_units(q, "SELECT count(*) FROM events WHERE", "", |r| {
            count += r.get::<_, i64>(0)? as u64;
            Ok(())
        })?;
        Ok(count)
    }

    /// Runs `select` (a `SELECT … FROM events WHERE` to which the unit's
    /// rows and `q`'s condition are added, then `tail`) over every unit `q`
    /// reaches, in one snapshot, handing each result row to `f`. Limit and
    /// cursor are ignored.
    fn over_units(
        &self,
        q: &Query,
        select: &str,
        tail: &str,
        mut f: impl FnMut(&rusqlite::Row<'_>) -> Result<()>,
    ) -> Result<()> {
        let q = Query {
            after: None,
            ..q.clone()
        };
        let (clause, params) = where_clause(&q);
        let terms = q.terms();
        let c = self.reader();
        let snapshot = c.unchecked_transaction()?;
        for unit in self.units(&snapshot, &q, !terms.is_empty())? {
            let (sql, first): (String, Vec<Box<dyn ToSql>>) = match unit {
                Unit::Rows(lo, hi) => (
                    format!("{select} idx >= ? AND idx < ? AND {clause} {tail}"),
                    vec![Box::new(lo as i64), Box::new(hi as i64)],
                ),
                Unit::Block(b) => {
                    let ids = self.candidates(&snapshot, b, &terms)?;
                    if ids.is_empty() {
                        continue;
                    }
                    (
                        format!("{select} idx IN rarray(?) AND {clause} {tail}"),
                        vec![Box::new(array(&ids))],
                    )
                }
            };
            let p = first.iter().chain(&params).map(|x| x.as_ref());
            let mut stmt = snapshot.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(p))?;
            while let Some(r) = rows.next()? {
                f(r)?;
            }
        }
        Ok(())
    }
}

/// Counts over time (`GET /v1/stats`): the events matching a query (its
/// filters and time window; `from_ms` is required) in buckets of `step_ms`
/// counted from `from_ms`, per tenant, source and outcome status.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StatKey {
    /// The bucket: `(time_ms - from_ms) / step_ms`.
    pub bucket: u64,
    pub tenant: String,
    pub source: Option<String>,
    /// `outcome.status` (`success`, `failure`, `denied`), if the event has one.
    pub outcome: Option<String>,
}

impl SearchIndex {
    /// Counts of the events matching `q` by [`StatKey`], in key order.
    pub fn stats(&self, q: &Query, step_ms: i64) -> Result<Vec<Tally<StatKey>>> {
        let (from, step) = stat_bounds(q, step_ms)?;
        let mut by: BTreeMap<StatKey, u64> = BTreeMap::new();
        let mut add = |r: &rusqlite::Row<'_>| -> Result<()> {
            let key = StatKey {
                bucket: r.get::<_, i64>(0)? as u64,
                tenant: r.get(1)?,
                source: r.get(2)?,
                outcome: r.get(3)?,
            };
            *by.entry(key).or_default() += r.get::<_, i64>(4)? as u64;
            Ok(())
        };
        // The bucket's bounds are this code's own integers, not the caller's text.
        let bucket = format!("(time_ms - {from}) / {step}");
        let rows = format!("SELECT {bucket}, tenant, source, outcome, count(*) FROM events WHERE");
        let Some((whole, rest)) = by_minutes(q, from, step) else {
            self.over_units(q, &rows, "GROUP BY 1, 2, 3, 4", add)?;
            return Ok(tallies(by));
        };
        let (clause, params) = where_clause(&whole);
        let sql = format!(
            "SELECT {bucket}, tenant, source, outcome, sum(n) FROM minutes WHERE {clause} GROUP BY 1, 2, 3, 4"
        );
        {
            let c = self.reader();
            let mut stmt = c.prepare_cached(&sql)?;
            let mut found = stmt.query(params_from_iter(params.iter().map(|p| p.as_ref())))?;
            while let Some(r) = found.next()? {
                add(r)?;
            }
        }
        if let Some(rest) = rest {
            self.over_units(&rest, &rows, "GROUP BY 1, 2, 3, 4", add)?;
        }
        Ok(tallies(by))
    }
}

/// A stats query split into what the `minutes` table answers (the whole
/// minutes of the window) and what is left (the part of the window's last
/// minute before its end), or `None` when the table cannot answer: a start
/// or a step that is not whole minutes (a minute would span two buckets), or
/// a filter the table does not keep.
fn by_minutes(q: &Query, from: i64, step: i64) -> Option<(Query, Option<Query>)> {
    let kept = Query {
        tenants: q.tenants.clone(),
        tenant: q.tenant.clone(),
        source: q.source.clone(),
        outcome: q.outcome.clone(),
        from_ms: q.from_ms,
        to_ms: q.to_ms,
        ..Query::default()
    };
    let only_kept = q.named_filters().count() == kept.named_filters().count();
    if from % MINUTE_MS != 0 || step % MINUTE_MS != 0 || !only_kept || q.after.is_some() {
        return None;
    }
    let Some(to) = q.to_ms else {
        return Some((kept, None));
    };
    let whole_to = minute_of(to).max(from);
    let rest = (whole_to < to).then(|| Query {
        from_ms: Some(whole_to),
        ..kept.clone()
    });
    let whole = Query {
        to_ms: Some(whole_to),
        ..kept
    };
    Some((whole, rest))
}

/// The start and step of a stats query, checked: buckets need a start and
/// a positive step.
pub(crate) fn stat_bounds(q: &Query, step_ms: i64) -> Result<(i64, i64)> {
    match q.from_ms {
        Some(from) if step_ms > 0 => Ok((from, step_ms)),
        _ => Err(Error::Invalid(
            "stats need a start time and a positive step".into(),
        )),
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

fn tallies<K: Ord>(m: BTreeMap<K, u64>) -> Vec<Tally<K>> {
    m.into_iter()
        .map(|(key, count)| Tally { key, count })
        .collect()
}

/// Aggregates for reports. Every value is a bound parameter; column names
/// come from this code only. Each runs per set of candidate rows (a block's
/// postings of the tenant, or the tail) and sums up the parts.
impl SearchIndex {
    /// Calls `f` with each set of rows of `p.tenant` that may lie in the
    /// period and hold the `more` terms: a block's postings, or the tail.
    fn period_sets(
        &self,
        c: &Connection,
        p: &Period,
        more: &[(usize, Vec<i64>)],
        mut f: impl FnMut(&Array) -> Result<()>,
    ) -> Result<()> {
        let q = Query {
            tenant: Some(p.tenant.clone()),
            from_ms: Some(p.from_ms),
            to_ms: Some(p.to_ms),
            order: Order::Asc,
            ..Query::default()
        };
        let mut terms = q.terms();
        terms.extend_from_slice(more);
        for unit in self.units(c, &q, true)? {
            let ids = match unit {
                Unit::Block(b) => self.candidates(c, b, &terms)?,
                Unit::Rows(lo, hi) => (lo as i64..hi as i64).collect(),
            };
            if !ids.is_empty() {
                f(&array(&ids))?;
            }
        }
        Ok(())
    }

    /// Runs `sql` (parameters: rows, tenant, from, to, `extra`) over every
    /// set of the period (narrowed by the `more` terms, which `sql` checks
    /// too), handing each result row to `f`.
    fn over_period(
        &self,
        p: &Period,
        more: &[(usize, Vec<i64>)],
        sql: &str,
        extra: &[&dyn ToSql],
        mut f: impl FnMut(&rusqlite::Row<'_>) -> Result<()>,
    ) -> Result<()> {
        let c = self.reader();
        let snapshot = c.unchecked_transaction()?;
        self.period_sets(&snapshot, p, more, |set| {
            let mut params: Vec<&dyn ToSql> = vec![set, &p.tenant, &p.from_ms, &p.to_ms];
            params.extend_from_slice(extra);
            let mut stmt = snapshot.prepare_cached(sql)?;
            let mut rows = stmt.query(params.as_slice())?;
            while let Some(r) = rows.next()? {
                f(r)?;
            }
            Ok(())
        })
    }

    /// Per source: events, first and last event time, days with events.
    pub fn sources(&self, p: &Period) -> Result<Vec<SourceSummary>> {
        let mut by = SourceTally::default();
        self.over_period(
            p,
            &[],
            "SELECT source, (time_ms - ?3) / 86400000, count(*), min(time_ms), max(time_ms)
             FROM events WHERE idx IN rarray(?1) AND tenant = ?2 AND time_ms >= ?3 AND time_ms < ?4
             GROUP BY 1, 2",
            &[],
            |r| {
                by.add(
                    r.get(0)?,
                    r.get(1)?,
                    r.get::<_, i64>(2)? as u64,
                    r.get(3)?,
                    r.get(4)?,
                );
                Ok(())
            },
        )?;
        Ok(by.finish())
    }

    /// Per (day of the period, source): events over time per AI system.
    pub fn daily_by_source(&self, p: &Period) -> Result<Vec<Tally<DaySource>>> {
        let mut by: BTreeMap<DaySource, u64> = BTreeMap::new();
        self.over_period(
            p,
            &[],
            "SELECT (time_ms - ?3) / 86400000, source, count(*)
             FROM events WHERE idx IN rarray(?1) AND tenant = ?2 AND time_ms >= ?3 AND time_ms < ?4
             GROUP BY 1, 2",
            &[],
            |r| {
                let key = (r.get::<_, i64>(0)? as u64, r.get(1)?);
                *by.entry(key).or_default() += r.get::<_, i64>(2)? as u64;
                Ok(())
            },
        )?;
        Ok(tallies(by))
    }

    /// Per (source, action).
    pub fn actions_by_source(&self, p: &Period) -> Result<Vec<Tally<SourceAction>>> {
        let mut by: BTreeMap<SourceAction, u64> = BTreeMap::new();
        self.over_period(
            p,
            &[],
            "SELECT source, action, count(*)
             FROM events WHERE idx IN rarray(?1) AND tenant = ?2 AND time_ms >= ?3 AND time_ms < ?4
             GROUP BY 1, 2",
            &[],
            |r| {
                *by.entry((r.get(0)?, r.get(1)?)).or_default() += r.get::<_, i64>(2)? as u64;
                Ok(())
            },
        )?;
        Ok(tallies(by))
    }

    /// Per actor, for one action: violations per rule (`policy:<rule>`).
    pub fn actors_of(&self, p: &Period, action: &str) -> Result<Vec<Tally<Option<String>>>> {
        let mut by: BTreeMap<Option<String>, u64> = BTreeMap::new();
        self.over_period(
            p,
            &[(ACTION, vec![key64(action)])],
            "SELECT actor, count(*)
             FROM events WHERE idx IN rarray(?1) AND tenant = ?2 AND time_ms >= ?3 AND time_ms < ?4
             AND action = ?5 GROUP BY 1",
            &[&action],
            |r| {
                *by.entry(r.get(0)?).or_default() += r.get::<_, i64>(1)? as u64;
                Ok(())
            },
        )?;
        Ok(tallies(by))
    }

    /// Events whose action is one of `actions` and, when `risks` is not
    /// empty, whose risk level is one of `risks`.
    pub fn count_in(&self, p: &Period, actions: &[&str], risks: &[&str]) -> Result<u64> {
        let mut sql = String::from(
            "SELECT count(*) FROM events WHERE idx IN rarray(?) AND tenant = ? AND time_ms >= ? AND time_ms < ?",
        );
        let mut extra: Vec<&dyn ToSql> = Vec::new();
        for (column, values) in [("action", actions), ("risk", risks)] {
            if !values.is_empty() {
                sql.push_str(&format!(
                    " AND {column} IN ({})",
                    vec!["?"; values.len()].join(",")
                ));
                extra.extend(values.iter().map(|v| v as &dyn ToSql));
            }
        }
        // The postings narrow to the actions and risks too (few, as reports ask).
        let mut more = Vec::new();
        for (field, values) in [(ACTION, actions), (RISK, risks)] {
            if !values.is_empty() && values.len() <= 16 {
                more.push((field, values.iter().map(|v| key64(v)).collect()));
            }
        }
        let mut n = 0;
        self.over_period(p, &more, &sql, &extra, |r| {
            n += r.get::<_, i64>(0)? as u64;
            Ok(())
        })?;
        Ok(n)
    }

    /// The earliest event time the index holds for `tenant`, whatever the
    /// period: how far back the ledger actually keeps its records.
    pub fn oldest_ms(&self, tenant: &str) -> Result<Option<i64>> {
        let bits = self.bits;
        let c = self.reader();
        let snapshot = c.unchecked_transaction()?;
        let size = indexed(&snapshot)?;
        let mut oldest: Option<i64> = snapshot
            .prepare_cached(
                "SELECT min(time_ms) FROM events WHERE idx >= ?1 AND idx < ?2 AND tenant = ?3",
            )?
            .query_row(
                rusqlite::params![((size >> bits) << bits) as i64, size as i64, tenant],
                |r| r.get(0),
            )?;
        // Blocks by their earliest time: once that is no earlier than the
        // oldest found, no later block can hold an older one.
        let blocks: Vec<(i64, i64)> = snapshot
            .prepare_cached(
                "SELECT block, min_ms FROM blocks WHERE min_ms IS NOT NULL ORDER BY min_ms",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<std::result::Result<_, _>>()?;
        let terms = [(TENANT, vec![key64(tenant)])];
        for (b, min_ms) in blocks {
            if oldest.is_some_and(|o| min_ms >= o) {
                break;
            }
            let ids = self.candidates(&snapshot, b as u64, &terms)?;
            if ids.is_empty() {
                continue;
            }
            let t: Option<i64> = snapshot
                .prepare_cached(
                    "SELECT min(time_ms) FROM events WHERE idx IN rarray(?1) AND tenant = ?2",
                )?
                .query_row(rusqlite::params![array(&ids), tenant], |r| r.get(0))?;
            if let Some(t) = t {
                oldest = Some(oldest.map_or(t, |o| o.min(t)));
            }
        }
        Ok(oldest)
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
    for (column, value) in FILTERS.iter().zip(q.filters()) {
        if let Some(v) = value {
            parts.push(format!("{column} = ?"));
            params.push(Box::new(v.clone()));
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

mod index;
mod pg;
mod scan;
#[cfg(test)]
mod tests;

pub use index::Index;
pub use pg::{PgSearchIndex, PG_INDEX_VERSION};
