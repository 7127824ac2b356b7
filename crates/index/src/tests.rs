use super::*;
use proptest::prelude::*;
use rusqlite::Connection;
use serde_json::json;

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
const ACTIONS: [&str; 3] = ["model.invoke", "tool.call", "human.review"];
const MODELS: [&str; 3] = ["m-small", "m-large", "m-vision"];
const RISKS: [&str; 3] = ["low", "high", "critical"];

const APP_SOURCES: [&str; 2] = ["app", "batch"];
const SUBJECTS: [&str; 2] = ["alice", "bob"];

/// A generated event: choices index into the tables above; `None` leaves a field out.
#[derive(Debug, Clone)]
struct Gen {
    tenant: usize,
    action: usize,
    model: Option<usize>,
    risk: Option<usize>,
    actor: usize,
    failed: bool,
    conversation: Option<usize>,
    minute: u32,
    source: usize,
    subject: Option<usize>,
    trace: Option<usize>,
}

fn gen() -> impl Strategy<Value = Gen> {
    (
        (
            0..3usize,
            0..3usize,
            proptest::option::of(0..3usize),
            proptest::option::of(0..3usize),
            0..4usize,
            any::<bool>(),
            proptest::option::of(0..3usize),
            0..600u32,
        ),
        (
            0..2usize,
            proptest::option::of(0..2usize),
            proptest::option::of(0..4usize),
        ),
    )
        .prop_map(
            |(
                (tenant, action, model, risk, actor, failed, conversation, minute),
                (source, subject, trace),
            )| Gen {
                tenant,
                action,
                model,
                risk,
                actor,
                failed,
                conversation,
                minute,
                source,
                subject,
                trace,
            },
        )
}

fn trace_id(t: usize) -> String {
    format!("{:032x}", 0xabc0 + t)
}

fn entry(i: usize, g: &Gen) -> Vec<u8> {
    let mut e = json!({
        "id": format!("e{i}"),
        "time": format!("2026-11-27T{:02}:{:02}:00Z", g.minute / 60, g.minute % 60),
        "tenant": TENANTS[g.tenant],
        "source": {"name": APP_SOURCES[g.source]},
        "actor": {"id": format!("actor-{}", g.actor)},
        "action": ACTIONS[g.action],
        "outcome": {"status": if g.failed { "failure" } else { "success" }},
        "ai": {}
    });
    if let Some(m) = g.model {
        e["ai"]["gen_ai.request.model"] = json!(MODELS[m]);
        e["ai"]["gen_ai.provider.name"] = json!("prov");
    }
    if let Some(c) = g.conversation {
        e["ai"]["gen_ai.conversation.id"] = json!(format!("conv-{c}"));
    }
    if let Some(r) = g.risk {
        e["risk_level"] = json!(RISKS[r]);
    }
    if let Some(s) = g.subject {
        e["subject"] = json!(SUBJECTS[s]);
    }
    if let Some(t) = g.trace {
        e["trace_id"] = json!(trace_id(t));
    }
    aiaudit_event::prepare(e).unwrap().entry
}

fn matches(row: &Row, q: &Query) -> bool {
    let eq = |want: &Option<String>, got: &Option<String>| {
        want.as_ref().is_none_or(|w| got.as_ref() == Some(w))
    };
    q.tenants.as_ref().is_none_or(|ts| ts.contains(&row.tenant))
        && q.tenant.as_ref().is_none_or(|t| *t == row.tenant)
        && q.action.as_ref().is_none_or(|a| *a == row.action)
        && eq(&q.actor, &row.actor)
        && eq(&q.model, &row.model)
        && eq(&q.risk, &row.risk)
        && eq(&q.outcome, &row.outcome)
        && eq(&q.source, &row.source)
        && eq(&q.provider, &row.provider)
        && eq(&q.subject, &row.subject)
        && eq(&q.trace_id, &row.trace_id)
        && eq(&q.conversation_id, &row.conversation_id)
        && q.from_ms
            .is_none_or(|f| row.time_ms.is_some_and(|t| t >= f))
        && q.to_ms.is_none_or(|f| row.time_ms.is_some_and(|t| t < f))
}

fn all_pages(index: &SearchIndex, q: &Query) -> Vec<Row> {
    let mut out = Vec::new();
    let mut q = q.clone();
    loop {
        let page = index.query(&q).unwrap();
        assert!(page.rows.len() <= q.limit as usize);
        out.extend(page.rows);
        match page.next {
            Some(n) => q.after = Some(n),
            None => return out,
        }
    }
}

fn minute_ms(m: u32) -> i64 {
    parse_time_ms(&format!("2026-11-27T{:02}:{:02}:00Z", m / 60, m % 60)).unwrap()
}

/// Filters for a query: choices index into the tables; `None` leaves a filter out.
#[derive(Debug, Clone)]
struct Filters {
    tenant: Option<usize>,
    action: Option<usize>,
    model: Option<usize>,
    risk: Option<usize>,
    actor: Option<usize>,
    failed: Option<bool>,
    /// Bounds at the time of an event (picked from those of the test).
    from: Option<prop::sample::Index>,
    to: Option<prop::sample::Index>,
    scoped: bool,
    source: Option<usize>,
    subject: Option<usize>,
    trace: Option<usize>,
    conversation: Option<usize>,
    provider: bool,
}

fn filters() -> impl Strategy<Value = Filters> {
    use proptest::option::weighted as maybe;
    (
        (
            maybe(0.5, 0..3usize),
            maybe(0.3, 0..3usize),
            maybe(0.3, 0..3usize),
            maybe(0.3, 0..3usize),
            maybe(0.3, 0..4usize),
            maybe(0.3, any::<bool>()),
            maybe(0.3, any::<prop::sample::Index>()),
            maybe(0.3, any::<prop::sample::Index>()),
        ),
        (
            any::<bool>(),
            maybe(0.2, 0..2usize),
            maybe(0.2, 0..2usize),
            maybe(0.2, 0..5usize),
            maybe(0.2, 0..3usize),
            proptest::bool::weighted(0.1),
        ),
    )
        .prop_map(
            |(
                (tenant, action, model, risk, actor, failed, from, to),
                (scoped, source, subject, trace, conversation, provider),
            )| Filters {
                tenant,
                action,
                model,
                risk,
                actor,
                failed,
                from,
                to,
                scoped,
                source,
                subject,
                trace,
                conversation,
                provider,
            },
        )
}

fn query_of(f: &Filters, limit: u32, asc: bool, events: &[Gen]) -> Query {
    let at = |i: &prop::sample::Index| minute_ms(events[i.index(events.len())].minute);
    Query {
        tenants: f
            .scoped
            .then(|| vec!["acme".to_string(), "initech".to_string()]),
        tenant: f.tenant.map(|t| TENANTS[t].to_string()),
        action: f.action.map(|a| ACTIONS[a].to_string()),
        model: f.model.map(|m| MODELS[m].to_string()),
        risk: f.risk.map(|r| RISKS[r].to_string()),
        actor: f.actor.map(|a| format!("actor-{a}")),
        outcome: f
            .failed
            .map(|f| if f { "failure" } else { "success" }.to_string()),
        source: f.source.map(|s| APP_SOURCES[s].to_string()),
        provider: f.provider.then(|| "prov".to_string()),
        subject: f.subject.map(|s| SUBJECTS[s].to_string()),
        // Index 4 names a trace no event has.
        trace_id: f.trace.map(trace_id),
        conversation_id: f.conversation.map(|c| format!("conv-{c}")),
        from_ms: f.from.as_ref().map(at),
        to_ms: f.to.as_ref().map(at),
        limit,
        order: if asc { Order::Asc } else { Order::Desc },
        ..Query::default()
    }
}

/// Pages through `q` to the end and counts it: both must be exactly what a
/// brute-force scan of `rows` finds, in log order.
fn check_query(
    index: &SearchIndex,
    rows: &[Row],
    q: &Query,
) -> std::result::Result<(), TestCaseError> {
    let mut expected: Vec<Row> = rows.iter().filter(|r| matches(r, q)).cloned().collect();
    if q.order == Order::Desc {
        expected.reverse();
    }
    prop_assert_eq!(index.count(q).unwrap(), expected.len() as u64);
    prop_assert_eq!(all_pages(index, q), expected);
    Ok(())
}

/// Adds `entries` from `at` in chunks ending at `cuts` (and the end),
/// reopening the index after each chunk when `reopen` says so.
fn add_in_chunks(
    path: &std::path::Path,
    bits: u32,
    mut index: SearchIndex,
    entries: &[Vec<u8>],
    at: usize,
    cuts: &[usize],
    reopen: &[bool],
) -> SearchIndex {
    let mut ends: Vec<usize> = cuts
        .iter()
        .map(|c| at + c % (entries.len() - at + 1))
        .collect();
    ends.push(entries.len());
    ends.sort_unstable();
    let mut from = at;
    for (i, end) in ends.into_iter().enumerate() {
        let refs: Vec<&[u8]> = entries[from..end].iter().map(Vec::as_slice).collect();
        index.add(from as u64, &refs).unwrap();
        from = end;
        if reopen.get(i).copied().unwrap_or(false) {
            drop(index);
            index = SearchIndex::open_with(path, bits).unwrap();
        }
    }
    index
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every query, paged to the end, returns exactly what a brute-force
    /// scan of the same events finds, in log order, whether rows sit in
    /// full blocks (postings) or in the tail, whatever the chunks they were
    /// added in and however often the index was reopened between them.
    #[test]
    fn search_agrees_with_a_brute_force_scan(
        events in proptest::collection::vec(gen(), 1..300),
        bits in 4..7u32,
        cuts in proptest::collection::vec(any::<usize>(), 0..4),
        reopen in proptest::collection::vec(any::<bool>(), 0..4),
        queries in proptest::collection::vec((filters(), 1..40u32, any::<bool>()), 1..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(INDEX_FILE);
        let entries: Vec<Vec<u8>> = events.iter().enumerate().map(|(i, g)| entry(i, g)).collect();
        let index = SearchIndex::open_with(&path, bits).unwrap();
        let index = add_in_chunks(&path, bits, index, &entries, 0, &cuts, &reopen);
        prop_assert_eq!(index.indexed_size().unwrap(), entries.len() as u64);

        let rows: Vec<Row> = entries.iter().enumerate().map(|(i, e)| row_from_entry(i as u64, e).unwrap()).collect();
        // The fast typed parse agrees with the general decoder on every entry,
        // and the fastest reader answers for every one.
        for (i, e) in entries.iter().enumerate() {
            prop_assert_eq!(lean_row(i as u64, e), Some(general_row(i as u64, e).unwrap()));
            prop_assert!(scan::clear_fields(e).is_some());
        }
        for (f, limit, asc) in &queries {
            check_query(&index, &rows, &query_of(f, *limit, *asc, &events))?;
        }
        // An auditor of no tenant sees nothing; one of many is checked
        // row by row rather than through the postings.
        let none = Query { tenants: Some(vec![]), limit: 10, ..Query::default() };
        check_query(&index, &rows, &none)?;
        let many: Vec<String> = (0..20).map(|i| format!("t{i}")).chain(["initech".to_string()]).collect();
        let many = Query { tenants: Some(many), limit: 10, ..Query::default() };
        check_query(&index, &rows, &many)?;
    }

    /// Retention drops exactly the rows it says, from full blocks and the
    /// tail alike, and later adds and searches see only what remains.
    #[test]
    fn retention_leaves_exactly_the_rest(
        events in proptest::collection::vec(gen(), 2..200),
        bits in 4..6u32,
        split in any::<usize>(),
        tenant in 0..3usize,
        cutoff in 0..600u32,
        reopen in any::<bool>(),
        queries in proptest::collection::vec((filters(), 1..40u32, any::<bool>()), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(INDEX_FILE);
        let entries: Vec<Vec<u8>> = events.iter().enumerate().map(|(i, g)| entry(i, g)).collect();
        let mut rows: Vec<Row> = entries.iter().enumerate().map(|(i, e)| row_from_entry(i as u64, e).unwrap()).collect();
        let split = 1 + split % (entries.len() - 1);
        let index = SearchIndex::open_with(&path, bits).unwrap();
        let refs: Vec<&[u8]> = entries[..split].iter().map(Vec::as_slice).collect();
        index.add(0, &refs).unwrap();

        let cut = minute_ms(cutoff);
        let gone = |r: &Row| r.index < split as u64 && r.tenant == TENANTS[tenant] && r.time_ms.is_some_and(|t| t < cut);
        let want = rows.iter().filter(|r| gone(r)).count() as u64;
        prop_assert_eq!(index.delete_before(TENANTS[tenant], cut).unwrap(), want);
        rows.retain(|r| !gone(r));

        let index = if reopen { drop(index); SearchIndex::open_with(&path, bits).unwrap() } else { index };
        let index = add_in_chunks(&path, bits, index, &entries, split, &[], &[]);
        for (f, limit, asc) in &queries {
            check_query(&index, &rows, &query_of(f, *limit, *asc, &events))?;
        }
        let all = Query { limit: 1000, ..Query::default() };
        check_query(&index, &rows, &all)?;
    }
}

#[test]
fn an_index_of_another_version_is_emptied_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(INDEX_FILE);
    {
        // The layout of version 3, with a row in it.
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT INTO meta VALUES ('version', 3), ('indexed_size', 1);
             CREATE TABLE events (idx INTEGER PRIMARY KEY, id TEXT NOT NULL, time TEXT NOT NULL,
               time_ms INTEGER, tenant TEXT NOT NULL, actor TEXT, action TEXT NOT NULL, outcome TEXT,
               source TEXT, provider TEXT, model TEXT, risk TEXT, subject TEXT, trace_id TEXT,
               conversation_id TEXT, trace_key INTEGER, conversation_key INTEGER);
             CREATE INDEX ev_tenant ON events(tenant, idx);
             INSERT INTO events(idx, id, time, tenant, action) VALUES (0, 'old', 't', 'acme', 'a');",
        )
        .unwrap();
    }
    let index = SearchIndex::open(&path).unwrap();
    assert_eq!(
        index.indexed_size().unwrap(),
        0,
        "to be rebuilt from the log"
    );
    let g = Gen {
        tenant: 0,
        action: 0,
        model: None,
        risk: None,
        actor: 0,
        failed: false,
        conversation: None,
        minute: 0,
        source: 0,
        subject: None,
        trace: None,
    };
    let e = entry(0, &g);
    index.add(0, &[&e]).unwrap();
    let page = index
        .query(&Query {
            tenant: Some("acme".into()),
            limit: 10,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(page.rows.len(), 1);
    assert_eq!(page.rows[0].id, "e0", "nothing of the old layout is left");
    drop(index);
    // The same version is kept as it is.
    let index = SearchIndex::open(&path).unwrap();
    assert_eq!(index.indexed_size().unwrap(), 1);
}

#[test]
fn filter_codes_name_their_columns() {
    assert_eq!(
        (FILTERS[TENANT], FILTERS[ACTION], FILTERS[RISK]),
        ("tenant", "action", "risk")
    );
}

#[test]
fn postings_round_trip_as_lists_and_bitmaps() {
    for bits in [4, 8, 13] {
        let n = 1usize << bits;
        for offsets in [
            vec![],
            vec![0],
            vec![(n - 1) as u16],
            (0..n as u16).step_by(3).collect::<Vec<_>>(),
            (0..n as u16).collect(),
        ] {
            let mut blob = Vec::new();
            encode_rows(&offsets, bits, &mut blob);
            let mut words = vec![0u64; n.div_ceil(64)];
            decode_rows(&blob, bits, &mut words);
            let back: Vec<u16> = (0..n as u16)
                .filter(|&o| words[o as usize / 64] >> (o % 64) & 1 == 1)
                .collect();
            assert_eq!(back, offsets, "2^{bits} rows");
            assert!(blob.len() <= bitmap_len(bits));
        }
    }
}

#[test]
fn rows_come_from_clear_fields_of_sealed_entries_too() {
    let event = json!({"id": "s1", "time": "2026-11-27T10:00:00Z",
        "tenant": "acme", "source": {"name": "app"}, "actor": {"id": "u"}, "action": "model.invoke",
        "subject": "alice", "ai": {"gen_ai.request.model": "m", "gen_ai.conversation.id": "c1"},
        "input": {"content": "secret"}});
    let checked = aiaudit_event::check(&event).unwrap();
    let input = aiaudit_event::sealed_v3::SealInput {
        appended_by: Some("token:0123abcd"),
        subject_tag: Some("hmac-sha256:ab"),
        ..aiaudit_event::sealed_v3::SealInput::new(event.as_object().unwrap(), &checked)
    };
    let sealed = aiaudit_event::envelope::seal(
        &input,
        aiaudit_event::envelope::DataKey {
            id: 1,
            key: &[3; 32],
        },
        &[5; 56],
    )
    .unwrap();
    let row = row_from_entry(7, &sealed.entry).unwrap();
    assert_eq!(Some(row.clone()), lean_row(7, &sealed.entry));
    // The fast reader answers for it (long ciphertext and all).
    let fast = scan::clear_fields(&sealed.entry).expect("read without serde");
    assert_eq!(Fields::of_clear(&fast).to_row(7), row);
    assert_eq!(row, general_row(7, &sealed.entry).unwrap());
    assert_eq!(row.index, 7);
    assert_eq!(row.model.as_deref(), Some("m"));
    assert_eq!(row.conversation_id.as_deref(), Some("c1"));
    assert_eq!(row.subject.as_deref(), Some("hmac-sha256:ab"));
    assert_eq!(row.time_ms, parse_time_ms("2026-11-27T10:00:00Z"));
}

#[test]
fn adds_only_in_log_order_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(INDEX_FILE);
    let g = Gen {
        tenant: 0,
        action: 0,
        model: None,
        risk: None,
        actor: 0,
        failed: false,
        conversation: None,
        minute: 0,
        source: 0,
        subject: None,
        trace: None,
    };
    let e = entry(0, &g);
    {
        let index = SearchIndex::open(&path).unwrap();
        assert!(index.add(1, &[&e]).is_err(), "a gap is refused");
        index.add(0, &[&e, b"not an entry"]).unwrap();
        assert!(index.add(0, &[&e]).is_err(), "no row twice");
    }
    let index = SearchIndex::open(&path).unwrap();
    assert_eq!(index.indexed_size().unwrap(), 2);
    let page = index
        .query(&Query {
            limit: 10,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(page.rows.len(), 2);
    assert_eq!(page.rows[1].id, "e0");
    assert_eq!(
        page.rows[0].tenant, "",
        "an undecodable entry still takes its place"
    );
}

// ---- report aggregates ------------------------------------------------------

const SOURCES: [&str; 3] = ["chat-bot", "credit-scoring", "<b>triage</b>"];
const REPORT_ACTIONS: [&str; 6] = [
    "model.invoke",
    "agent.decision",
    "human.review",
    "human.override",
    "policy.violation",
    "data.erasure",
];

/// An event for the aggregates: spread over five days and three sources.
fn report_entry(
    i: usize,
    (tenant, source, action, risk, minute): (usize, usize, usize, Option<usize>, u32),
) -> Vec<u8> {
    let day = minute / 1440;
    let m = minute % 1440;
    let mut e = json!({
        "id": format!("r{i}"),
        "time": format!("2026-11-{:02}T{:02}:{:02}:00Z", 20 + day, m / 60, m % 60),
        "tenant": TENANTS[tenant],
        "source": {"name": SOURCES[source]},
        "actor": {"id": format!("policy:rule-{}", i % 3)},
        "action": REPORT_ACTIONS[action],
    });
    if let Some(r) = risk {
        e["risk_level"] = json!(RISKS[r]);
    }
    aiaudit_event::prepare(e).unwrap().entry
}

fn report_gen() -> impl Strategy<Value = (usize, usize, usize, Option<usize>, u32)> {
    (
        0..3usize,
        0..3usize,
        0..6usize,
        proptest::option::of(0..3usize),
        0..(5 * 1440u32),
    )
}

fn tallies<K>(m: std::collections::BTreeMap<K, u64>) -> Vec<Tally<K>> {
    m.into_iter()
        .map(|(key, count)| Tally { key, count })
        .collect()
}

fn ms(s: &str) -> i64 {
    parse_time_ms(s).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Every aggregate agrees with a brute-force pass over the same rows.
    #[test]
    fn aggregates_agree_with_a_brute_force_scan(
        events in proptest::collection::vec(report_gen(), 1..300),
        bits in 4..7u32,
        tenant in 0..3usize,
        from_minute in 0..(3 * 1440i64),
        length in 1..(3 * 1440i64),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let index = SearchIndex::open_with(&dir.path().join(INDEX_FILE), bits).unwrap();
        let entries: Vec<Vec<u8>> = events.iter().enumerate().map(|(i, g)| report_entry(i, *g)).collect();
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        index.add(0, &refs).unwrap();
        let rows: Vec<Row> = refs.iter().enumerate().map(|(i, e)| row_from_entry(i as u64, e).unwrap()).collect();

        let base = ms("2026-11-20T00:00:00Z");
        let p = Period {
            tenant: TENANTS[tenant].to_string(),
            from_ms: base + from_minute * 60_000,
            to_ms: base + (from_minute + length) * 60_000,
        };
        let inside: Vec<&Row> = rows
            .iter()
            .filter(|r| r.tenant == p.tenant && r.time_ms.is_some_and(|t| t >= p.from_ms && t < p.to_ms))
            .collect();
        let day = |r: &Row| ((r.time_ms.unwrap() - p.from_ms) / DAY_MS) as u64;

        // Per source.
        let mut want: std::collections::BTreeMap<Option<String>, Vec<&Row>> = Default::default();
        for r in &inside {
            want.entry(r.source.clone()).or_default().push(r);
        }
        let want_sources: Vec<SourceSummary> = want
            .iter()
            .map(|(source, rs)| SourceSummary {
                source: source.clone(),
                events: rs.len() as u64,
                first_ms: rs.iter().map(|r| r.time_ms.unwrap()).min().unwrap(),
                last_ms: rs.iter().map(|r| r.time_ms.unwrap()).max().unwrap(),
                days_with_events: rs.iter().map(|r| day(r)).collect::<std::collections::BTreeSet<_>>().len() as u64,
            })
            .collect();
        prop_assert_eq!(index.sources(&p).unwrap(), want_sources);

        // Per day and source, per source and action.
        let mut daily: std::collections::BTreeMap<(u64, Option<String>), u64> = Default::default();
        let mut actions: std::collections::BTreeMap<(Option<String>, String), u64> = Default::default();
        let mut actors: std::collections::BTreeMap<Option<String>, u64> = Default::default();
        for r in &inside {
            *daily.entry((day(r), r.source.clone())).or_default() += 1;
            *actions.entry((r.source.clone(), r.action.clone())).or_default() += 1;
            if r.action == "policy.violation" {
                *actors.entry(r.actor.clone()).or_default() += 1;
            }
        }
        prop_assert_eq!(index.daily_by_source(&p).unwrap(), tallies(daily));
        prop_assert_eq!(index.actions_by_source(&p).unwrap(), tallies(actions));
        prop_assert_eq!(index.actors_of(&p, "policy.violation").unwrap(), tallies(actors));

        // Filtered counts.
        let count = |acts: &[&str], risks: &[&str]| {
            inside
                .iter()
                .filter(|r| acts.is_empty() || acts.contains(&r.action.as_str()))
                .filter(|r| risks.is_empty() || r.risk.as_deref().is_some_and(|k| risks.contains(&k)))
                .count() as u64
        };
        for (acts, risks) in [
            (&["human.review", "human.override"][..], &[][..]),
            (&[][..], &["high", "critical"][..]),
            (&["agent.decision"][..], &["high", "critical"][..]),
            (&["data.erasure"][..], &[][..]),
            (&[][..], &[][..]),
        ] {
            prop_assert_eq!(index.count_in(&p, acts, risks).unwrap(), count(acts, risks));
        }

        // The oldest record, whatever the period.
        let oldest = rows.iter().filter(|r| r.tenant == p.tenant).filter_map(|r| r.time_ms).min();
        prop_assert_eq!(index.oldest_ms(&p.tenant).unwrap(), oldest);
    }
}

#[test]
fn aggregates_of_an_empty_tenant_are_empty() {
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(&dir.path().join(INDEX_FILE)).unwrap();
    let p = Period {
        tenant: "nobody' OR 1=1 --".to_string(),
        from_ms: 0,
        to_ms: i64::MAX,
    };
    assert!(index.sources(&p).unwrap().is_empty());
    assert!(index.daily_by_source(&p).unwrap().is_empty());
    assert_eq!(index.count_in(&p, &["a"], &["b"]).unwrap(), 0);
    assert_eq!(index.oldest_ms(&p.tenant).unwrap(), None);
}

// ---- the fast reader of clear fields ----------------------------------------

/// What serde_json reads from `entry`, as a row (none: not readable).
fn serde_fields(entry: &[u8]) -> Option<Row> {
    serde_clear(entry).map(|c| Fields::of_clear(&c).to_row(0))
}

fn scan_fields(entry: &[u8]) -> Option<Row> {
    scan::clear_fields(entry).map(|c| Fields::of_clear(&c).to_row(0))
}

/// Short strings with what JSON must escape, and what it need not.
fn any_text() -> impl Strategy<Value = String> {
    "[a-z0-9\"\\\\/\n\t\u{1}\u{7f}é😀 .-]{0,10}"
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e9..1e9f64).prop_map(Value::from),
        any_text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(any_text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A field value: mostly a plain string, sometimes anything at all.
fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => "[a-z0-9:.-]{0,12}".prop_map(Value::from),
        1 => any_text().prop_map(Value::from),
        1 => any_json(),
    ]
}

/// An object of some of `keys` (and maybe an unknown one) with `value`s.
fn object_of(
    keys: &'static [&'static str],
    value: impl Strategy<Value = Value> + 'static,
) -> impl Strategy<Value = Value> {
    (
        proptest::collection::btree_map(proptest::sample::select(keys), value, 0..keys.len() + 1),
        proptest::option::of((any_text(), any_json())),
    )
        .prop_map(|(m, extra)| {
            let mut o: Map<String, Value> =
                m.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            if let Some((k, v)) = extra {
                o.insert(k, v);
            }
            Value::Object(o)
        })
}

fn clear_json() -> impl Strategy<Value = Value> {
    const CLEAR: &[&str] = &[
        "id",
        "time",
        "tenant",
        "action",
        "risk_level",
        "subject",
        "trace_id",
    ];
    const NAMED: &[&str] = &["id", "name"];
    const AI: &[&str] = &[
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.conversation.id",
    ];
    (
        object_of(CLEAR, field_value()),
        proptest::option::of(object_of(NAMED, field_value())),
        proptest::option::of(object_of(NAMED, field_value())),
        proptest::option::of(object_of(&["status"], field_value())),
        proptest::option::of(object_of(AI, field_value())),
    )
        .prop_map(|(mut c, actor, source, outcome, ai)| {
            for (k, v) in [
                ("actor", actor),
                ("source", source),
                ("outcome", outcome),
                ("ai", ai),
            ] {
                if let Some(v) = v {
                    c[k] = v;
                }
            }
            c
        })
}

fn entry_json() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::option::of(clear_json()),
        proptest::option::of(clear_json()),
        prop_oneof![
            Just(json!(1)),
            Just(json!(2)),
            Just(json!(3)),
            Just(json!(1.0)),
            Just(json!("1"))
        ],
        proptest::option::of(("sealed|x|[a-z]{1,3}", any_json())),
        any::<bool>(),
    )
        .prop_map(|(event, index, v, extra, pretty)| {
            let mut e = json!({ "v": v });
            if let Some(c) = event {
                e["event"] = c;
            }
            if let Some(c) = index {
                e["index"] = c;
            }
            if let Some((k, x)) = extra {
                e[k] = x;
            }
            if pretty {
                serde_json::to_vec_pretty(&e).unwrap()
            } else {
                serde_json::to_vec(&e).unwrap()
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Wherever the fast reader answers, serde_json reads the same fields;
    /// on entries of plain strings it always answers.
    #[test]
    fn the_fast_reader_agrees_with_serde(entry in entry_json()) {
        let fast = scan_fields(&entry);
        if fast.is_some() {
            prop_assert_eq!(&fast, &serde_fields(&entry));
        }
        let text = String::from_utf8(entry.clone()).unwrap();
        let plain = !text.contains('\\') && !text.contains("null") && serde_fields(&entry).is_some();
        if plain && fast.is_none() {
            // Only a field of another type than expected may send a plain entry to serde.
            let v: Value = serde_json::from_slice(&entry).unwrap();
            let clear = if v["v"] == json!(1) { &v["event"] } else { &v["index"] };
            prop_assert!(clear.as_object().unwrap().values().any(|f| !f.is_string() && !f.is_object()), "{}", text);
        }
    }

    /// Broken entries: whatever the fast reader accepts, serde_json reads alike.
    #[test]
    fn the_fast_reader_accepts_nothing_serde_would_not(
        g in gen(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0..3u8, proptest::sample::select(&b"\"\\{}[],: 01-.eEnultr\n\x01a"[..])), 1..4),
    ) {
        let mut e = entry(7, &g);
        for (at, op, b) in edits {
            let i = at.index(e.len() + 1);
            match op {
                0 if i < e.len() => e[i] = b,
                1 if i < e.len() => { e.remove(i); }
                _ => e.insert(i, b),
            }
        }
        let fast = scan_fields(&e);
        if fast.is_some() {
            prop_assert_eq!(fast, serde_fields(&e), "{}", String::from_utf8_lossy(&e));
        }
    }
}

#[test]
fn the_fast_reader_leaves_the_odd_cases_to_serde() {
    let agree = |text: &str, fast_answers: bool| {
        let fast = scan_fields(text.as_bytes());
        assert_eq!(fast.is_some(), fast_answers, "{text}");
        if fast.is_some() {
            assert_eq!(fast, serde_fields(text.as_bytes()), "{text}");
        }
        // And the row the indexer stores is serde's either way.
        assert_eq!(
            lean_row(0, text.as_bytes()),
            serde_fields(text.as_bytes()),
            "{text}"
        );
    };
    agree(r#"{"event":{"tenant":"a","action":"x"},"v":1}"#, true);
    agree(r#" { "event" : { "tenant" : "a" } , "v" : 1 } "#, true);
    agree(
        r#"{"event":{"tenant":"a","note":"q\"\\\u00e9\n"},"v":1}"#,
        true,
    );
    agree(r#"{"index":{"tenant":"a"},"sealed":"AAAA","v":2}"#, true);
    // An escape in a field it returns: serde unescapes it.
    agree(r#"{"event":{"tenant":"a\"b"},"v":1}"#, false);
    agree(r#"{"event":{"tenant":"\u00e9"},"v":1}"#, false);
    agree(r#"{"event":{"ten\u0061nt":"a"},"v":1}"#, false);
    // Duplicates, nulls, odd types, other versions, trailing bytes.
    agree(r#"{"event":{"tenant":"a","tenant":"b"},"v":1}"#, false);
    agree(r#"{"event":{"tenant":null},"v":1}"#, false);
    agree(r#"{"event":{"actor":"u"},"v":1}"#, false);
    agree(r#"{"event":{"tenant":"a"},"v":1.0}"#, false);
    agree(r#"{"event":{"tenant":"a"},"v":10}"#, false);
    agree(r#"{"event":{"tenant":"a"},"v":1}x"#, false);
    agree(r#"{"event":{"tenant":"a"},"v":1,"v":1}"#, false);
    agree(r#"[1,{"tenant":"a"}]"#, false);
    agree(r#"{"event":{"tenant":"a"},"x":01,"v":1}"#, false);
    agree(r#"{"event":{"tenant":"a"},"x":"\q","v":1}"#, false);
    let deep = format!(
        r#"{{"event":{{"x":{}1{}}},"v":1}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    agree(&deep, false);
    // A long string (the vectorised skip) with an escape deep inside.
    let long = format!(
        r#"{{"event":{{"tenant":"a","x":"{}\"{}"}},"v":1}}"#,
        "a".repeat(100),
        "b".repeat(50)
    );
    agree(&long, true);
}

#[test]
fn fields_are_borrowed_from_the_entry() {
    let e = br#"{"event":{"tenant":"acme","actor":{"id":"u"}},"v":1}"#;
    let fast = scan::clear_fields(e).unwrap();
    assert!(matches!(fast.tenant, Some(Cow::Borrowed("acme"))));
    let slow = serde_clear(e).unwrap();
    assert!(matches!(slow.tenant, Some(Cow::Borrowed("acme"))));
    assert!(matches!(slow.actor.unwrap().id, Some(Cow::Borrowed("u"))));
}

#[test]
fn time_windows_reach_the_edges_of_blocks() {
    // Times in log order, as a ledger mostly has them: each block's range is
    // tight, so every window edge falls on some block's first or last event.
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open_with(&dir.path().join(INDEX_FILE), 4).unwrap();
    let events: Vec<Gen> = (0..40)
        .map(|i| Gen {
            tenant: i % 2,
            action: 0,
            model: None,
            risk: None,
            actor: 0,
            failed: false,
            conversation: None,
            minute: i as u32,
            source: 0,
            subject: None,
            trace: None,
        })
        .collect();
    let entries: Vec<Vec<u8>> = events
        .iter()
        .enumerate()
        .map(|(i, g)| entry(i, g))
        .collect();
    let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    index.add(0, &refs).unwrap();
    let rows: Vec<Row> = refs
        .iter()
        .enumerate()
        .map(|(i, e)| row_from_entry(i as u64, e).unwrap())
        .collect();
    for from in 0..41 {
        for to in from..42 {
            for tenant in [None, Some("acme".to_string())] {
                let q = Query {
                    tenant: tenant.clone(),
                    from_ms: Some(minute_ms(from)),
                    to_ms: Some(minute_ms(to)),
                    limit: 100,
                    ..Query::default()
                };
                check_query(&index, &rows, &q).unwrap();
            }
        }
    }
}

// ---- counts over time --------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Stats agree with a brute-force pass: every matching row counted once,
    /// in the bucket its event time falls in, whatever the scope and filters.
    #[test]
    fn stats_agree_with_a_brute_force_scan(
        events in proptest::collection::vec(gen(), 1..300),
        bits in 4..7u32,
        scope in 0..4usize,
        source in proptest::option::of(0..2usize),
        failed_only in any::<bool>(),
        from_minute in 0..600u32,
        length in 1..700u32,
        step_minutes in 1..120i64,
        // Off whole minutes: the start (no minute counts then) or the end
        // (its last minute counted from the rows).
        from_off in prop_oneof![3 => Just(0i64), 1 => 1..60_000i64],
        to_off in prop_oneof![1 => Just(0i64), 1 => 1..60_000i64],
        // Retention first: one tenant's rows before this minute dropped.
        retained in proptest::option::of((0..3usize, 0..700u32)),
        reopened in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(INDEX_FILE);
        let mut index = SearchIndex::open_with(&path, bits).unwrap();
        let entries: Vec<Vec<u8>> = events.iter().enumerate().map(|(i, g)| entry(i, g)).collect();
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        // In two batches, so that minutes are counted across transactions.
        let half = refs.len() / 2;
        index.add(0, &refs[..half]).unwrap();
        index.add(half as u64, &refs[half..]).unwrap();
        if let Some((t, cutoff)) = retained {
            index.delete_before(TENANTS[t], minute_ms(cutoff)).unwrap();
        }
        if reopened {
            // An index from before the minutes table: they are counted anew.
            drop(index);
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch("DROP TABLE minutes").unwrap();
            drop(c);
            index = SearchIndex::open_with(&path, bits).unwrap();
        }
        let from_ms = minute_ms(from_minute) + from_off;
        let q = Query {
            tenants: match scope {
                0 => None,
                1 => Some(vec![TENANTS[0].to_string()]),
                2 => Some(vec![TENANTS[1].to_string(), TENANTS[2].to_string()]),
                _ => Some(vec![]),
            },
            source: source.map(|s| APP_SOURCES[s].to_string()),
            outcome: failed_only.then(|| "failure".to_string()),
            from_ms: Some(from_ms),
            to_ms: Some(from_ms + length as i64 * 60_000 + to_off),
            ..Query::default()
        };
        let step_ms = step_minutes * 60_000;
        let mut want: BTreeMap<StatKey, u64> = BTreeMap::new();
        for (i, e) in refs.iter().enumerate() {
            let r = row_from_entry(i as u64, e).unwrap();
            let dropped = retained.is_some_and(|(t, cutoff)| {
                r.tenant == TENANTS[t] && r.time_ms.is_some_and(|ms| ms < minute_ms(cutoff))
            });
            if matches(&r, &q) && !dropped {
                let key = StatKey {
                    bucket: ((r.time_ms.unwrap() - from_ms) / step_ms) as u64,
                    tenant: r.tenant.clone(),
                    source: r.source.clone(),
                    outcome: r.outcome.clone(),
                };
                *want.entry(key).or_default() += 1;
            }
        }
        prop_assert_eq!(index.stats(&q, step_ms).unwrap(), tallies(want));
    }
}

#[test]
fn stats_need_a_start_and_a_positive_step() {
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(&dir.path().join(INDEX_FILE)).unwrap();
    let q = Query::default();
    assert!(index.stats(&q, 60_000).is_err());
    let q = Query {
        from_ms: Some(0),
        ..Query::default()
    };
    assert!(index.stats(&q, 0).is_err());
    assert!(index.stats(&q, 60_000).unwrap().is_empty());
}
