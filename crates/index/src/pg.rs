//! The search index in PostgreSQL, for nodes that share a log there.
//!
//! The same rows as the SQLite index (each entry's clear fields, read by the
//! same code), kept in the log's own database so that every node searches
//! one index: one node (the publisher) adds rows, all of them query. Where
//! the file index builds postings by hand, this one leaves the work to
//! PostgreSQL's planner: one table by log index with a B-tree per filter
//! (partial where the field is optional) and one on (tenant, event time)
//! for reports and retention.
//!
//! Exactly once: `add` locks the one row of `aiaudit_search_state`, checks
//! that rows start where the index ends and moves that end in the same
//! transaction as the rows, so two nodes adding at once (a publisher
//! takeover) cannot both succeed.
//!
//! Tables (layout version [`PG_INDEX_VERSION`], docs/format.md): created
//! under an advisory lock by the first node that opens the index, apart
//! from the log's own migrations, so that a change of layout only rebuilds
//! the index from the log and leaves the ledger's schema alone.
//!
//! ```text
//! aiaudit_search_state  one row: layout version, indexed size
//! aiaudit_search        one row per indexed entry (strings as bytea)
//! ```
//!
//! Strings are stored as `bytea`, not `text`: an event's fields may hold
//! U+0000, which PostgreSQL text refuses, and exact bytes compare exactly as
//! SQLite does, whatever the database's collation.
//!
//! The API is blocking, as `SearchIndex`'s: a small runtime of its own runs
//! tokio-postgres, so methods may be called from any thread.

use crate::{
    with_fields, Error, Order, Page, Period, Query, Result, Row, SourceSummary, StatKey, Tally,
    ACTION, FILTERS, MAX_LIMIT, RISK,
};
use crate::{DaySource, SourceAction};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Bumped when rows or columns change meaning: an index of an older layout
/// is emptied and rebuilt from the log; a newer one is refused.
pub const PG_INDEX_VERSION: i32 = 1;
/// Held while the tables are created or replaced (fixed: part of the format).
const SEARCH_LOCK: i64 = 0x6169_6175_6469_7404;
/// Server-side limit of one statement of a search or a report: a request
/// fails rather than hang.
const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Adding a chunk of rows and deleting expired ones may take longer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(120);
/// Rows dropped per transaction by retention: no long lock, no huge WAL.
const DELETE_CHUNK: i64 = 50_000;

const SCHEMA: &str = "
CREATE TABLE aiaudit_search (
    idx bigint PRIMARY KEY,
    id bytea NOT NULL,
    time bytea NOT NULL,
    time_ms bigint,
    tenant bytea NOT NULL,
    actor bytea,
    action bytea NOT NULL,
    outcome bytea,
    source bytea,
    provider bytea,
    model bytea,
    risk bytea,
    subject bytea,
    trace_id bytea,
    conversation_id bytea
);
CREATE INDEX aiaudit_search_tenant ON aiaudit_search (tenant, idx);
CREATE INDEX aiaudit_search_tenant_time ON aiaudit_search (tenant, time_ms);
CREATE INDEX aiaudit_search_action ON aiaudit_search (action, idx);
CREATE INDEX aiaudit_search_actor ON aiaudit_search (actor, idx) WHERE actor IS NOT NULL;
CREATE INDEX aiaudit_search_outcome ON aiaudit_search (outcome, idx) WHERE outcome IS NOT NULL;
CREATE INDEX aiaudit_search_source ON aiaudit_search (source, idx) WHERE source IS NOT NULL;
CREATE INDEX aiaudit_search_provider ON aiaudit_search (provider, idx) WHERE provider IS NOT NULL;
CREATE INDEX aiaudit_search_model ON aiaudit_search (model, idx) WHERE model IS NOT NULL;
CREATE INDEX aiaudit_search_risk ON aiaudit_search (risk, idx) WHERE risk IS NOT NULL;
CREATE INDEX aiaudit_search_subject ON aiaudit_search (subject, idx) WHERE subject IS NOT NULL;
CREATE INDEX aiaudit_search_trace ON aiaudit_search (trace_id, idx) WHERE trace_id IS NOT NULL;
CREATE INDEX aiaudit_search_conversation ON aiaudit_search (conversation_id, idx)
    WHERE conversation_id IS NOT NULL;
CREATE INDEX aiaudit_search_time ON aiaudit_search USING brin (time_ms);
";

const COLUMNS: &str = "idx, id, time, time_ms, tenant, actor, action, outcome, source, provider, \
                       model, risk, subject, trace_id, conversation_id";

type Param = Box<dyn ToSql + Sync + Send>;

/// The search index in a PostgreSQL database (usually the log's own).
pub struct PgSearchIndex {
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => Error::Postgres(format!("{}: {}", db.code().code(), db.message())),
            None => Error::Postgres(e.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Error::Postgres(format!("connecting to PostgreSQL: {e}"))
    }
}

impl PgSearchIndex {
    /// Connects to the database at `url` and creates the index's tables if
    /// they are missing; an index of an older layout is emptied (to be
    /// rebuilt from the log), one of a newer layout refused.
    pub fn open(url: &str) -> Result<PgSearchIndex> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| Error::Invalid(format!("the PostgreSQL URL is not valid: {e}")))?;
        PgSearchIndex::open_with(config, None)
    }

    /// [`PgSearchIndex::open`] on a parsed configuration, over TLS when
    /// `tls` is given (the store's connector, so both verify the server the
    /// same way).
    pub fn open_with(
        mut config: tokio_postgres::Config,
        tls: Option<MakeRustlsConnect>,
    ) -> Result<PgSearchIndex> {
        // Server-side, so a slow search stops in the database too; writes
        // raise it for their own transaction.
        let options = format!(
            "{} -c statement_timeout={}",
            config.get_options().unwrap_or_default(),
            READ_TIMEOUT.as_millis()
        );
        config.options(options.trim_start());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("search-postgres")
            .enable_all()
            .build()
            .map_err(|e| Error::Postgres(format!("starting the PostgreSQL runtime: {e}")))?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match tls {
            Some(tls) => Manager::from_config(config, tls, manager_config),
            None => Manager::from_config(config, NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(8)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(READ_TIMEOUT))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| Error::Postgres(format!("PostgreSQL pool: {e}")))?;
        let index = PgSearchIndex { rt: Some(rt), pool };
        index.run(WRITE_TIMEOUT, |mut c| async move { create(&mut c).await })?;
        Ok(index)
    }

    /// Runs `f` with a pooled connection on the index's runtime and waits
    /// for it, at most `timeout` (plus a little: the server's own timeout
    /// should speak first).
    fn run<T, F, Fut>(&self, timeout: Duration, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send,
    {
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| Error::Postgres("the index is closing".into()))?;
        let pool = self.pool.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let work = async move { f(pool.get().await?).await };
            let r = match tokio::time::timeout(timeout + Duration::from_secs(5), work).await {
                Ok(r) => r,
                Err(_) => Err(Error::Postgres(format!(
                    "PostgreSQL did not answer within {timeout:?}"
                ))),
            };
            let _ = tx.send(r);
        });
        rx.recv()
            .map_err(|_| Error::Postgres("the PostgreSQL task stopped".into()))?
    }

    /// How many log entries (from index 0) the index covers.
    pub fn indexed_size(&self) -> Result<u64> {
        self.run(READ_TIMEOUT, |c| async move { indexed(&c, false).await })
    }

    /// Adds the entries at `start..start + entries.len()` in one transaction.
    /// `start` must be the indexed size: rows go in log order, exactly once,
    /// whichever node adds them. An entry that cannot be decoded is indexed
    /// as an empty row, as by `SearchIndex::add`.
    pub fn add(&self, start: u64, entries: &[&[u8]]) -> Result<()> {
        let rows: Vec<Row> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| with_fields(e, |f| f.to_row(start + i as u64)))
            .collect();
        self.run(WRITE_TIMEOUT, move |mut c| async move {
            let tx = c.transaction().await?;
            tx.batch_execute(&format!(
                "SET LOCAL statement_timeout = {}",
                WRITE_TIMEOUT.as_millis()
            ))
            .await?;
            let at = indexed(&tx, true).await?;
            if at != start {
                return Err(Error::Invalid(format!(
                    "adding from {start}, but the index covers {at} entries"
                )));
            }
            if !rows.is_empty() {
                insert_rows(&tx, &rows).await?;
            }
            let end = start + rows.len() as u64;
            tx.execute(
                &tx.prepare_cached("UPDATE aiaudit_search_state SET indexed = $1 WHERE id = 1")
                    .await?,
                &[&(end as i64)],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// One page of events matching `q`, in log order (newest first by default).
    pub fn query(&self, q: &Query) -> Result<Page> {
        let limit = q.limit.clamp(1, MAX_LIMIT) as usize;
        let (clause, mut params) = where_clause(q);
        let order = match q.order {
            Order::Desc => "DESC",
            Order::Asc => "ASC",
        };
        params.push(Box::new((limit + 1) as i64));
        let sql = format!(
            "SELECT {COLUMNS} FROM aiaudit_search WHERE {clause} ORDER BY idx {order} LIMIT ${}",
            params.len()
        );
        let mut rows = self.run(READ_TIMEOUT, move |c| async move {
            // Not a cached statement: planned with the values themselves.
            let p: Vec<&(dyn ToSql + Sync)> = params.iter().map(as_param).collect();
            let found = c.query(&sql, &p).await?;
            found.iter().map(read_row).collect::<Result<Vec<Row>>>()
        })?;
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|r| r.index)
        } else {
            None
        };
        Ok(Page { rows, next })
    }

    /// How many events match `q` (limit and cursor ignored), for reports.
    pub fn count(&self, q: &Query) -> Result<u64> {
        let q = Query {
            after: None,
            ..q.clone()
        };
        let (clause, params) = where_clause(&q);
        let sql = format!("SELECT count(*) FROM aiaudit_search WHERE {clause}");
        self.run(READ_TIMEOUT, move |c| async move {
            let p: Vec<&(dyn ToSql + Sync)> = params.iter().map(as_param).collect();
            let n: i64 = c.query_one(&sql, &p).await?.get(0);
            Ok(n as u64)
        })
    }

    /// Counts of the events matching `q` over time, as
    /// [`SearchIndex::stats`](crate::SearchIndex::stats).
    pub fn stats(&self, q: &Query, step_ms: i64) -> Result<Vec<Tally<StatKey>>> {
        let (from, step) = crate::stat_bounds(q, step_ms)?;
        let q = Query {
            after: None,
            ..q.clone()
        };
        let (clause, params) = where_clause(&q);
        let sql = format!(
            "SELECT (time_ms - {from}) / {step}, tenant, source, outcome, count(*)
             FROM aiaudit_search WHERE {clause} GROUP BY 1, 2, 3, 4"
        );
        self.run(READ_TIMEOUT, move |c| async move {
            let p: Vec<&(dyn ToSql + Sync)> = params.iter().map(as_param).collect();
            let mut by: BTreeMap<StatKey, u64> = BTreeMap::new();
            for r in c.query(&sql, &p).await? {
                let key = StatKey {
                    bucket: r.try_get::<_, i64>(0)? as u64,
                    tenant: text(&r, 1)?,
                    source: opt_text(&r, 2)?,
                    outcome: opt_text(&r, 3)?,
                };
                *by.entry(key).or_default() += r.try_get::<_, i64>(4)? as u64;
            }
            Ok(crate::tallies(by))
        })
    }

    /// Retention: drops the rows of `tenant` whose event time is before
    /// `cutoff_ms` (the log keeps their hashes). Returns how many. Runs in
    /// chunks of its own transactions: rows stop matching for good, so a
    /// failure part way leaves nothing a later run will not finish.
    pub fn delete_before(&self, tenant: &str, cutoff_ms: i64) -> Result<u64> {
        let tenant = tenant.as_bytes().to_vec();
        self.run(WRITE_TIMEOUT, move |c| async move {
            let delete = c
                .prepare_cached(
                    "DELETE FROM aiaudit_search WHERE idx IN (
                         SELECT idx FROM aiaudit_search
                         WHERE tenant = $1 AND time_ms < $2 LIMIT $3)",
                )
                .await?;
            let mut deleted = 0;
            loop {
                let n = c
                    .execute(&delete, &[&tenant, &cutoff_ms, &DELETE_CHUNK])
                    .await?;
                deleted += n;
                if n < DELETE_CHUNK as u64 {
                    return Ok(deleted);
                }
            }
        })
    }

    /// Runs an aggregate over one tenant's period: `sql` gets the tenant,
    /// from and to as $1..$3, then `extra`.
    fn over_period<T: Send + 'static>(
        &self,
        p: &Period,
        sql: String,
        extra: Vec<Param>,
        fold: impl FnOnce(Vec<tokio_postgres::Row>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let mut params: Vec<Param> = vec![
            Box::new(p.tenant.as_bytes().to_vec()),
            Box::new(p.from_ms),
            Box::new(p.to_ms),
        ];
        params.extend(extra);
        self.run(READ_TIMEOUT, move |c| async move {
            let p: Vec<&(dyn ToSql + Sync)> = params.iter().map(as_param).collect();
            fold(c.query(&sql, &p).await?)
        })
    }

    /// Per source: events, first and last event time, days with events.
    pub fn sources(&self, p: &Period) -> Result<Vec<SourceSummary>> {
        self.over_period(
            p,
            format!(
                "SELECT source, (time_ms - $2) / {}, count(*), min(time_ms), max(time_ms)
                 FROM aiaudit_search WHERE tenant = $1 AND time_ms >= $2 AND time_ms < $3
                 GROUP BY 1, 2",
                crate::DAY_MS
            ),
            Vec::new(),
            |rows| {
                let mut by = crate::SourceTally::default();
                for r in rows {
                    by.add(
                        opt_text(&r, 0)?,
                        r.try_get(1)?,
                        r.try_get::<_, i64>(2)? as u64,
                        r.try_get(3)?,
                        r.try_get(4)?,
                    );
                }
                Ok(by.finish())
            },
        )
    }

    /// Per (day of the period, source): events over time per AI system.
    pub fn daily_by_source(&self, p: &Period) -> Result<Vec<Tally<DaySource>>> {
        self.over_period(
            p,
            format!(
                "SELECT (time_ms - $2) / {}, source, count(*)
                 FROM aiaudit_search WHERE tenant = $1 AND time_ms >= $2 AND time_ms < $3
                 GROUP BY 1, 2",
                crate::DAY_MS
            ),
            Vec::new(),
            |rows| {
                let mut by: BTreeMap<DaySource, u64> = BTreeMap::new();
                for r in rows {
                    let key = (r.try_get::<_, i64>(0)? as u64, opt_text(&r, 1)?);
                    *by.entry(key).or_default() += r.try_get::<_, i64>(2)? as u64;
                }
                Ok(crate::tallies(by))
            },
        )
    }

    /// Per (source, action).
    pub fn actions_by_source(&self, p: &Period) -> Result<Vec<Tally<SourceAction>>> {
        self.over_period(
            p,
            "SELECT source, action, count(*)
             FROM aiaudit_search WHERE tenant = $1 AND time_ms >= $2 AND time_ms < $3
             GROUP BY 1, 2"
                .into(),
            Vec::new(),
            |rows| {
                let mut by: BTreeMap<SourceAction, u64> = BTreeMap::new();
                for r in rows {
                    let key = (opt_text(&r, 0)?, text(&r, 1)?);
                    *by.entry(key).or_default() += r.try_get::<_, i64>(2)? as u64;
                }
                Ok(crate::tallies(by))
            },
        )
    }

    /// Per actor, for one action: violations per rule (`policy:<rule>`).
    pub fn actors_of(&self, p: &Period, action: &str) -> Result<Vec<Tally<Option<String>>>> {
        self.over_period(
            p,
            "SELECT actor, count(*)
             FROM aiaudit_search WHERE tenant = $1 AND time_ms >= $2 AND time_ms < $3
             AND action = $4 GROUP BY 1"
                .into(),
            vec![Box::new(action.as_bytes().to_vec())],
            |rows| {
                let mut by: BTreeMap<Option<String>, u64> = BTreeMap::new();
                for r in rows {
                    *by.entry(opt_text(&r, 0)?).or_default() += r.try_get::<_, i64>(1)? as u64;
                }
                Ok(crate::tallies(by))
            },
        )
    }

    /// Events whose action is one of `actions` and, when `risks` is not
    /// empty, whose risk level is one of `risks`.
    pub fn count_in(&self, p: &Period, actions: &[&str], risks: &[&str]) -> Result<u64> {
        let mut sql = String::from(
            "SELECT count(*) FROM aiaudit_search
             WHERE tenant = $1 AND time_ms >= $2 AND time_ms < $3",
        );
        let mut extra: Vec<Param> = Vec::new();
        for (field, values) in [(ACTION, actions), (RISK, risks)] {
            if !values.is_empty() {
                sql.push_str(&format!(
                    " AND {} = ANY(${})",
                    FILTERS[field],
                    4 + extra.len()
                ));
                extra.push(Box::new(bytes_of(values)));
            }
        }
        self.over_period(p, sql, extra, |rows| {
            let n: i64 = match rows.first() {
                Some(r) => r.try_get(0)?,
                None => 0,
            };
            Ok(n as u64)
        })
    }

    /// The earliest event time the index holds for `tenant`, whatever the
    /// period: how far back the ledger actually keeps its records.
    pub fn oldest_ms(&self, tenant: &str) -> Result<Option<i64>> {
        let tenant = tenant.as_bytes().to_vec();
        self.run(READ_TIMEOUT, move |c| async move {
            let row = c
                .query_one(
                    &c.prepare_cached("SELECT min(time_ms) FROM aiaudit_search WHERE tenant = $1")
                        .await?,
                    &[&tenant],
                )
                .await?;
            Ok(row.try_get(0)?)
        })
    }
}

impl Drop for PgSearchIndex {
    fn drop(&mut self) {
        // Dropping a runtime from async code panics; this never blocks.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Creates the tables, or replaces those of an older layout, under the
/// index's advisory lock: nodes starting together create them once.
async fn create(c: &mut deadpool_postgres::Object) -> Result<()> {
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SEARCH_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS aiaudit_search_state (
             id smallint PRIMARY KEY CHECK (id = 1),
             version integer NOT NULL,
             indexed bigint NOT NULL)",
    )
    .await?;
    let version: Option<i32> = tx
        .query_opt("SELECT version FROM aiaudit_search_state WHERE id = 1", &[])
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    match version {
        Some(v) if v == PG_INDEX_VERSION => {}
        Some(v) if v > PG_INDEX_VERSION => {
            return Err(Error::Invalid(format!(
                "the search index in PostgreSQL has layout {v}; this build knows up to {PG_INDEX_VERSION}: upgrade aiaudit"
            )))
        }
        other => {
            if other.is_some() {
                tracing::warn!("the search index in PostgreSQL has an older layout: rebuilding it");
            }
            tx.batch_execute("DROP TABLE IF EXISTS aiaudit_search").await?;
            tx.batch_execute(SCHEMA).await?;
            tx.execute("DELETE FROM aiaudit_search_state", &[]).await?;
            tx.execute(
                "INSERT INTO aiaudit_search_state VALUES (1, $1, 0)",
                &[&PG_INDEX_VERSION],
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// The indexed size; `lock` holds the state row until the transaction ends.
async fn indexed(c: &impl GenericClient, lock: bool) -> Result<u64> {
    let sql = if lock {
        "SELECT indexed FROM aiaudit_search_state WHERE id = 1 FOR UPDATE"
    } else {
        "SELECT indexed FROM aiaudit_search_state WHERE id = 1"
    };
    let row = c
        .query_opt(&c.prepare_cached(sql).await?, &[])
        .await?
        .ok_or_else(|| Error::Invalid("no indexed size".into()))?;
    Ok(row.try_get::<_, i64>(0)? as u64)
}

/// Inserts rows in one statement: one array per column, unnested.
async fn insert_rows(c: &impl GenericClient, rows: &[Row]) -> Result<()> {
    let idx: Vec<i64> = rows.iter().map(|r| r.index as i64).collect();
    let time_ms: Vec<Option<i64>> = rows.iter().map(|r| r.time_ms).collect();
    let column = |f: fn(&Row) -> Option<&str>| -> Vec<Option<&[u8]>> {
        rows.iter().map(|r| f(r).map(str::as_bytes)).collect()
    };
    let id = column(|r| Some(&r.id));
    let time = column(|r| Some(&r.time));
    let tenant = column(|r| Some(&r.tenant));
    let actor = column(|r| r.actor.as_deref());
    let action = column(|r| Some(&r.action));
    let outcome = column(|r| r.outcome.as_deref());
    let source = column(|r| r.source.as_deref());
    let provider = column(|r| r.provider.as_deref());
    let model = column(|r| r.model.as_deref());
    let risk = column(|r| r.risk.as_deref());
    let subject = column(|r| r.subject.as_deref());
    let trace_id = column(|r| r.trace_id.as_deref());
    let conversation = column(|r| r.conversation_id.as_deref());
    let sql = format!(
        "INSERT INTO aiaudit_search ({COLUMNS}) SELECT * FROM unnest(
             $1::int8[], $2::bytea[], $3::bytea[], $4::int8[], $5::bytea[], $6::bytea[],
             $7::bytea[], $8::bytea[], $9::bytea[], $10::bytea[], $11::bytea[], $12::bytea[],
             $13::bytea[], $14::bytea[], $15::bytea[])"
    );
    c.execute(
        &c.prepare_cached(&sql).await?,
        &[
            &idx,
            &id,
            &time,
            &time_ms,
            &tenant,
            &actor,
            &action,
            &outcome,
            &source,
            &provider,
            &model,
            &risk,
            &subject,
            &trace_id,
            &conversation,
        ],
    )
    .await?;
    Ok(())
}

fn as_param(b: &Param) -> &(dyn ToSql + Sync) {
    b.as_ref()
}

fn bytes_of(values: &[&str]) -> Vec<Vec<u8>> {
    values.iter().map(|v| v.as_bytes().to_vec()).collect()
}

/// The SQL condition of a query and its parameters ($1…, never spliced).
fn where_clause(q: &Query) -> (String, Vec<Param>) {
    let mut parts: Vec<String> = vec!["true".into()];
    let mut params: Vec<Param> = Vec::new();
    let bind = |params: &mut Vec<Param>, p: Param| {
        params.push(p);
        format!("${}", params.len())
    };
    if let Some(tenants) = &q.tenants {
        if tenants.is_empty() {
            parts.push("false".into());
        } else {
            let values: Vec<Vec<u8>> = tenants.iter().map(|t| t.as_bytes().to_vec()).collect();
            let n = bind(&mut params, Box::new(values));
            parts.push(format!("tenant = ANY({n})"));
        }
    }
    for (column, value) in FILTERS.iter().zip(q.filters()) {
        if let Some(v) = value {
            let n = bind(&mut params, Box::new(v.as_bytes().to_vec()));
            parts.push(format!("{column} = {n}"));
        }
    }
    if let Some(from) = q.from_ms {
        let n = bind(&mut params, Box::new(from));
        parts.push(format!("time_ms >= {n}"));
    }
    if let Some(to) = q.to_ms {
        let n = bind(&mut params, Box::new(to));
        parts.push(format!("time_ms < {n}"));
    }
    if let Some(after) = q.after {
        // No page ends at an index beyond i64: such a cursor continues
        // nothing, as in the file index.
        match i64::try_from(after) {
            Ok(after) => {
                let n = bind(&mut params, Box::new(after));
                parts.push(match q.order {
                    Order::Desc => format!("idx < {n}"),
                    Order::Asc => format!("idx > {n}"),
                });
            }
            Err(_) => parts.push("false".into()),
        }
    }
    (parts.join(" AND "), params)
}

fn text(r: &tokio_postgres::Row, i: usize) -> Result<String> {
    let b: Vec<u8> = r.try_get(i)?;
    String::from_utf8(b).map_err(|e| Error::Invalid(format!("a stored string: {e}")))
}

fn opt_text(r: &tokio_postgres::Row, i: usize) -> Result<Option<String>> {
    let b: Option<Vec<u8>> = r.try_get(i)?;
    b.map(|b| String::from_utf8(b).map_err(|e| Error::Invalid(format!("a stored string: {e}"))))
        .transpose()
}

fn read_row(r: &tokio_postgres::Row) -> Result<Row> {
    Ok(Row {
        index: r.try_get::<_, i64>(0)? as u64,
        id: text(r, 1)?,
        time: text(r, 2)?,
        time_ms: r.try_get(3)?,
        tenant: text(r, 4)?,
        actor: opt_text(r, 5)?,
        action: text(r, 6)?,
        outcome: opt_text(r, 7)?,
        source: opt_text(r, 8)?,
        provider: opt_text(r, 9)?,
        model: opt_text(r, 10)?,
        risk: opt_text(r, 11)?,
        subject: opt_text(r, 12)?,
        trace_id: opt_text(r, 13)?,
        conversation_id: opt_text(r, 14)?,
    })
}
