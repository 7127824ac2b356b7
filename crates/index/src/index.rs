//! The search index on either backend, for code that serves both.

use crate::{
    DaySource, Page, Period, PgSearchIndex, Query, Result, SearchIndex, SourceAction,
    SourceSummary, StatKey, Tally,
};

/// A node's own SQLite file, or the PostgreSQL index that every node of a
/// shared log reads. Each method is the backend's own, with the same
/// contract on both.
pub enum Index {
    File(SearchIndex),
    Postgres(PgSearchIndex),
}

macro_rules! delegate {
    ($self:ident, $i:ident => $call:expr) => {
        match $self {
            Index::File($i) => $call,
            Index::Postgres($i) => $call,
        }
    };
}

impl Index {
    /// Whether every node reads this index (PostgreSQL): one node adds to
    /// it and runs retention, the others only read it.
    pub fn shared(&self) -> bool {
        matches!(self, Index::Postgres(_))
    }

    /// How many log entries (from index 0) the index covers.
    pub fn indexed_size(&self) -> Result<u64> {
        delegate!(self, i => i.indexed_size())
    }

    /// Adds the entries at `start..`; `start` must be the indexed size.
    pub fn add(&self, start: u64, entries: &[&[u8]]) -> Result<()> {
        delegate!(self, i => i.add(start, entries))
    }

    /// One page of events matching `q`.
    pub fn query(&self, q: &Query) -> Result<Page> {
        delegate!(self, i => i.query(q))
    }

    /// How many events match `q` (limit and cursor ignored).
    pub fn count(&self, q: &Query) -> Result<u64> {
        delegate!(self, i => i.count(q))
    }

    /// Retention: drops the rows of `tenant` with an event time before `cutoff_ms`.
    pub fn delete_before(&self, tenant: &str, cutoff_ms: i64) -> Result<u64> {
        delegate!(self, i => i.delete_before(tenant, cutoff_ms))
    }

    /// Counts of the events matching `q` over time (`q.from_ms` required).
    pub fn stats(&self, q: &Query, step_ms: i64) -> Result<Vec<Tally<StatKey>>> {
        delegate!(self, i => i.stats(q, step_ms))
    }

    pub fn sources(&self, p: &Period) -> Result<Vec<SourceSummary>> {
        delegate!(self, i => i.sources(p))
    }

    pub fn daily_by_source(&self, p: &Period) -> Result<Vec<Tally<DaySource>>> {
        delegate!(self, i => i.daily_by_source(p))
    }

    pub fn actions_by_source(&self, p: &Period) -> Result<Vec<Tally<SourceAction>>> {
        delegate!(self, i => i.actions_by_source(p))
    }

    pub fn actors_of(&self, p: &Period, action: &str) -> Result<Vec<Tally<Option<String>>>> {
        delegate!(self, i => i.actors_of(p, action))
    }

    pub fn count_in(&self, p: &Period, actions: &[&str], risks: &[&str]) -> Result<u64> {
        delegate!(self, i => i.count_in(p, actions, risks))
    }

    pub fn oldest_ms(&self, tenant: &str) -> Result<Option<i64>> {
        delegate!(self, i => i.oldest_ms(tenant))
    }
}
