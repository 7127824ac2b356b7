use super::*;
use proptest::prelude::*;
use serde_json::json;

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
const ACTIONS: [&str; 3] = ["model.invoke", "tool.call", "human.review"];
const MODELS: [&str; 3] = ["m-small", "m-large", "m-vision"];
const RISKS: [&str; 3] = ["low", "high", "critical"];

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
}

fn gen() -> impl Strategy<Value = Gen> {
    (
        0..3usize,
        0..3usize,
        proptest::option::of(0..3usize),
        proptest::option::of(0..3usize),
        0..4usize,
        any::<bool>(),
        proptest::option::of(0..3usize),
        0..600u32,
    )
        .prop_map(
            |(tenant, action, model, risk, actor, failed, conversation, minute)| Gen {
                tenant,
                action,
                model,
                risk,
                actor,
                failed,
                conversation,
                minute,
            },
        )
}

fn entry(i: usize, g: &Gen) -> Vec<u8> {
    let mut e = json!({
        "id": format!("e{i}"),
        "time": format!("2026-11-27T{:02}:{:02}:00Z", g.minute / 60, g.minute % 60),
        "tenant": TENANTS[g.tenant],
        "source": {"name": "app"},
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
        && eq(&q.conversation_id, &row.conversation_id)
        && q.from_ms
            .is_none_or(|f| row.time_ms.is_some_and(|t| t >= f))
        && q.to_ms.is_none_or(|f| row.time_ms.is_some_and(|t| t < f))
}

fn all_pages(index: &SearchIndex, q: &Query) -> Vec<u64> {
    let mut out = Vec::new();
    let mut q = q.clone();
    loop {
        let page = index.query(&q).unwrap();
        out.extend(page.rows.iter().map(|r| r.index));
        match page.next {
            Some(n) => q.after = Some(n),
            None => return out,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Every query, paged to the end, returns exactly what a brute-force
    /// scan of the same events finds, in log order.
    #[test]
    fn search_agrees_with_a_brute_force_scan(
        events in proptest::collection::vec(gen(), 1..300),
        tenant in proptest::option::of(0..3usize),
        action in proptest::option::of(0..3usize),
        model in proptest::option::of(0..3usize),
        risk in proptest::option::of(0..3usize),
        actor in proptest::option::of(0..4usize),
        failed in proptest::option::of(any::<bool>()),
        from in proptest::option::of(0..600u32),
        scoped in any::<bool>(),
        limit in 1..40u32,
        asc in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let index = SearchIndex::open(&dir.path().join(INDEX_FILE)).unwrap();
        let entries: Vec<Vec<u8>> = events.iter().enumerate().map(|(i, g)| entry(i, g)).collect();
        // Added in two chunks, as the indexer does.
        let half = entries.len() / 2;
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        index.add(0, &refs[..half]).unwrap();
        index.add(half as u64, &refs[half..]).unwrap();
        prop_assert_eq!(index.indexed_size().unwrap(), entries.len() as u64);

        let q = Query {
            tenants: scoped.then(|| vec!["acme".to_string(), "initech".to_string()]),
            tenant: tenant.map(|t| TENANTS[t].to_string()),
            action: action.map(|a| ACTIONS[a].to_string()),
            model: model.map(|m| MODELS[m].to_string()),
            risk: risk.map(|r| RISKS[r].to_string()),
            actor: actor.map(|a| format!("actor-{a}")),
            outcome: failed.map(|f| if f { "failure" } else { "success" }.to_string()),
            from_ms: from.map(|m| parse_time_ms(&format!("2026-11-27T{:02}:{:02}:00Z", m / 60, m % 60)).unwrap()),
            limit,
            order: if asc { Order::Asc } else { Order::Desc },
            ..Query::default()
        };
        let rows: Vec<Row> = refs.iter().enumerate().map(|(i, e)| row_from_entry(i as u64, e).unwrap()).collect();
        // The fast typed parse agrees with the general decoder on every entry.
        for (i, e) in refs.iter().enumerate() {
            prop_assert_eq!(lean_row(i as u64, e), Some(general_row(i as u64, e).unwrap()));
        }
        let mut expected: Vec<u64> = rows.iter().filter(|r| matches(r, &q)).map(|r| r.index).collect();
        if !asc {
            expected.reverse();
        }
        prop_assert_eq!(all_pages(&index, &q), expected.clone());
        prop_assert_eq!(index.count(&q).unwrap(), expected.len() as u64);
    }
}

#[test]
fn rows_come_from_clear_fields_of_sealed_entries_too() {
    let checked = aiaudit_event::check(&json!({"id": "s1", "time": "2026-11-27T10:00:00Z",
        "tenant": "acme", "source": {"name": "app"}, "actor": {"id": "u"}, "action": "model.invoke",
        "subject": "alice", "ai": {"gen_ai.request.model": "m", "gen_ai.conversation.id": "c1"},
        "input": {"content": "secret"}}))
    .unwrap();
    let sealed = aiaudit_event::envelope::seal(
        &checked,
        None,
        &[],
        Some("hmac-sha256:ab"),
        aiaudit_event::envelope::DataKey {
            id: 1,
            key: &[3; 32],
        },
        &[5; 56],
    )
    .unwrap();
    let row = row_from_entry(7, &sealed.entry).unwrap();
    assert_eq!(Some(row.clone()), lean_row(7, &sealed.entry));
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
        tenant in 0..3usize,
        from_minute in 0..(3 * 1440i64),
        length in 1..(3 * 1440i64),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let index = SearchIndex::open(&dir.path().join(INDEX_FILE)).unwrap();
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
