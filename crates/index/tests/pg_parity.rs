//! The PostgreSQL index answers exactly as the SQLite one: the same entries
//! go into both, and every query shape the server uses (each filter,
//! combinations, time windows, both orders, paging to the end, counts,
//! retention, the report aggregates) must give identical results.
//!
//! Runs a PostgreSQL server of its own on loopback (`aiaudit-testpg`);
//! skipped when PostgreSQL is not installed, unless `CI` is set.

use aiaudit_index::{Order, Period, PgSearchIndex, Query, Row, SearchIndex, DAY_MS};
use aiaudit_testpg::TempPostgres;
use serde_json::json;

const TENANTS: [&str; 4] = ["acme", "globex", "initech", "t.4"];
const ACTIONS: [&str; 5] = [
    "model.invoke",
    "tool.call",
    "human.review",
    "policy.violation",
    "data.access",
];
const MODELS: [&str; 3] = ["m-small", "m-large", "m-vision"];
const RISKS: [&str; 4] = ["minimal", "low", "high", "critical"];
const SOURCES: [&str; 3] = ["app", "batch", "Ünïcode"];
/// 2026-11-01T00:00:00Z.
const EPOCH_MS: i64 = 1_793_491_200_000;

fn mix(i: u64) -> u64 {
    let mut h = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Entry `i`: fields chosen independently, times over two months and out
/// of log order, some before the epoch of the reports' periods; every 997th entry cannot be decoded at all.
fn entry(i: u64) -> Vec<u8> {
    let h = mix(i);
    let pick = |shift: u32, n: u64| ((h >> shift) % n) as usize;
    if i % 997 == 5 {
        return b"not an entry".to_vec();
    }
    // Quarter hours, so that many events sit exactly on a window's bounds;
    // a third of them a few milliseconds later.
    let mut ms = EPOCH_MS + ((h >> 7) % (60 * 96)) as i64 * 900_000 - 2 * DAY_MS;
    if pick(50, 3) == 0 {
        ms += pick(52, 1000) as i64;
    }
    let mut e = json!({
        "id": format!("e-{i}"),
        "time": rfc3339(ms),
        "tenant": TENANTS[pick(1, 4)],
        "action": ACTIONS[pick(4, 5)],
        "actor": {"id": format!("agent-{}{}", pick(9, 7), if pick(12, 50) == 0 { "\u{0}" } else { "" }), "type": "agent"},
        "source": {"name": SOURCES[pick(14, 3)]},
        "outcome": {"status": if pick(16, 8) == 0 { "failure" } else { "success" }},
    });
    if pick(19, 3) > 0 {
        e["ai"] = json!({"gen_ai.provider.name": if pick(21, 2) == 0 { "p1" } else { "p2" },
                         "gen_ai.request.model": MODELS[pick(23, 3)]});
        if pick(25, 2) == 0 {
            e["ai"]["gen_ai.conversation.id"] = json!(format!("conv-{}", pick(27, 40)));
        }
    }
    if pick(33, 4) > 0 {
        e["risk_level"] = json!(RISKS[pick(35, 4)]);
    }
    if pick(38, 3) == 0 {
        e["subject"] = json!(format!("user-{}", pick(40, 9)));
    }
    if pick(45, 2) == 0 {
        e["trace_id"] = json!(format!("{:032x}", pick(47, 300) + 1));
    }
    match aiaudit_event::prepare(e) {
        Ok(p) => p.entry,
        Err(errors) => panic!("entry {i}: {errors:?}"),
    }
}

/// Asserts two pages hold the same rows, naming the first difference only.
fn same_rows(file: &[Row], pg: &[Row], q: &Query) {
    if let Some((a, b)) = file.iter().zip(pg).find(|(a, b)| a != b) {
        panic!("{q:?}:\n  file:       {a:?}\n  postgres:   {b:?}");
    }
    let ids = |rows: &[Row]| -> Vec<u64> { rows.iter().map(|r| r.index).collect() };
    assert_eq!(
        file.len(),
        pg.len(),
        "{q:?}: {:?} / {:?}",
        ids(file),
        ids(pg)
    );
}

struct Both {
    file: SearchIndex,
    pg: PgSearchIndex,
}

impl Both {
    fn add(&self, start: u64, end: u64) {
        let entries: Vec<Vec<u8>> = (start..end).map(entry).collect();
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        self.file.add(start, &refs).unwrap();
        self.pg.add(start, &refs).unwrap();
    }

    /// The pages of `q`, at most `max`, compared page by page; returns how
    /// many rows they held (all that match, when they end before `max`).
    fn pages(&self, q: &Query, max: usize) -> usize {
        let (mut qf, mut qp) = (q.clone(), q.clone());
        let mut total = 0;
        for _ in 0..max {
            let f = self.file.query(&qf).unwrap();
            let p = self.pg.query(&qp).unwrap();
            same_rows(&f.rows, &p.rows, &qf);
            assert_eq!(f.next, p.next, "cursor of {qf:?}");
            total += f.rows.len();
            match f.next {
                Some(n) => (qf.after, qp.after) = (Some(n), Some(n)),
                None => return total,
            }
        }
        total
    }

    /// Both orders, a large and a small page, and the count.
    fn check(&self, q: &Query) -> usize {
        let mut matched = None;
        for order in [Order::Desc, Order::Asc] {
            if q.after.is_some() {
                // A cursor leaves a different part in each order.
                matched = None;
            }
            // Every page to the end, then the first few small ones.
            let q = Query {
                order,
                limit: 1000,
                ..q.clone()
            };
            let n = self.pages(&q, 100);
            assert_eq!(*matched.get_or_insert(n), n, "{q:?}");
            self.pages(&Query { limit: 37, ..q }, 4);
        }
        let matched = matched.unwrap_or_default();
        let count = self.file.count(q).unwrap();
        assert_eq!(count, self.pg.count(q).unwrap(), "count of {q:?}");
        if q.after.is_none() {
            assert_eq!(count as usize, matched, "count and pages of {q:?}");
        }
        matched
    }

    fn check_reports(&self) {
        for tenant in TENANTS.iter().chain(&["nobody"]) {
            for (from, days) in [(0, 60), (3, 7), (59, 30), (-10, 5)] {
                let p = Period {
                    tenant: tenant.to_string(),
                    from_ms: EPOCH_MS + from * DAY_MS + 3_600_000,
                    to_ms: EPOCH_MS + (from + days) * DAY_MS,
                };
                let (f, g) = (&self.file, &self.pg);
                assert_eq!(f.sources(&p).unwrap(), g.sources(&p).unwrap(), "{p:?}");
                assert_eq!(
                    f.daily_by_source(&p).unwrap(),
                    g.daily_by_source(&p).unwrap()
                );
                assert_eq!(
                    f.actions_by_source(&p).unwrap(),
                    g.actions_by_source(&p).unwrap()
                );
                for action in ["policy.violation", "tool.call", "none"] {
                    assert_eq!(
                        f.actors_of(&p, action).unwrap(),
                        g.actors_of(&p, action).unwrap()
                    );
                }
                for (actions, risks) in [
                    (&[][..], &[][..]),
                    (&["model.invoke", "tool.call"][..], &[][..]),
                    (&[][..], &["high", "critical"][..]),
                    (&["human.review"][..], &["low"][..]),
                ] {
                    assert_eq!(
                        f.count_in(&p, actions, risks).unwrap(),
                        g.count_in(&p, actions, risks).unwrap(),
                        "{p:?} {actions:?} {risks:?}"
                    );
                }
            }
            assert_eq!(
                self.file.oldest_ms(tenant).unwrap(),
                self.pg.oldest_ms(tenant).unwrap()
            );
        }
        // Counts over time: every scope, with and without a source, steps
        // that do and do not divide the window.
        let mut counted = 0;
        for tenants in [
            None,
            Some(vec!["acme".to_string()]),
            Some(vec!["globex".to_string(), "t.4".to_string()]),
            Some(vec![]),
        ] {
            for source in [None, Some("Ünïcode".to_string())] {
                for (from, days, step_ms) in
                    [(0, 60, DAY_MS), (3, 2, 3_600_000), (-10, 15, 7_000_000)]
                {
                    let q = Query {
                        tenants: tenants.clone(),
                        source: source.clone(),
                        from_ms: Some(EPOCH_MS + from * DAY_MS + 900_000),
                        to_ms: Some(EPOCH_MS + (from + days) * DAY_MS),
                        ..Query::default()
                    };
                    let f = self.file.stats(&q, step_ms).unwrap();
                    assert_eq!(f, self.pg.stats(&q, step_ms).unwrap(), "{q:?} {step_ms}");
                    counted += f.iter().map(|t| t.count).sum::<u64>();
                }
            }
        }
        assert!(counted > 0, "the stats compared are not all empty");
    }

    /// Every query shape; asserts that the shapes are not all trivially empty.
    fn check_queries(&self) {
        let q = Query::default;
        let some = |s: &str| Some(s.to_string());
        let mut shapes = vec![
            q(),
            Query {
                tenants: Some(vec![]),
                ..q()
            },
            Query {
                tenants: Some(vec!["acme".into(), TENANTS[3].into()]),
                ..q()
            },
            Query {
                tenants: Some(vec!["globex".into()]),
                action: some("tool.call"),
                ..q()
            },
            Query {
                tenant: some("initech"),
                action: some("model.invoke"),
                risk: some("high"),
                ..q()
            },
            Query {
                actor: some("agent-3"),
                outcome: some("failure"),
                ..q()
            },
            Query {
                actor: some("agent-2\u{0}"),
                ..q()
            },
            Query {
                tenant: some("acme"),
                from_ms: Some(EPOCH_MS + 10 * DAY_MS),
                to_ms: Some(EPOCH_MS + 12 * DAY_MS + 1),
                ..q()
            },
            Query {
                from_ms: Some(EPOCH_MS + 55 * DAY_MS),
                ..q()
            },
            Query {
                to_ms: Some(EPOCH_MS + 2 * DAY_MS),
                model: some("m-vision"),
                ..q()
            },
            Query {
                provider: some("p1"),
                model: some("m-large"),
                source: some("Ünïcode"),
                ..q()
            },
            Query {
                after: Some(u64::MAX),
                ..q()
            },
            Query {
                after: Some(12_345),
                tenant: some("globex"),
                ..q()
            },
        ];
        let values: [(&str, &[&str]); 11] = [
            ("tenant", &["acme", TENANTS[3], "nobody"]),
            ("actor", &["agent-0", "agent-6", "nobody"]),
            ("action", &ACTIONS),
            ("outcome", &["success", "failure"]),
            ("source", &SOURCES),
            ("provider", &["p1", "p2"]),
            ("model", &MODELS),
            ("risk", &RISKS),
            ("subject", &["user-0", "user-8", ""]),
            ("trace_id", &["0000000000000000000000000000002a", "x"]),
            ("conversation_id", &["conv-7", "conv-39"]),
        ];
        for (field, vs) in values {
            for v in vs {
                let mut s = q();
                let slot = match field {
                    "tenant" => &mut s.tenant,
                    "actor" => &mut s.actor,
                    "action" => &mut s.action,
                    "outcome" => &mut s.outcome,
                    "source" => &mut s.source,
                    "provider" => &mut s.provider,
                    "model" => &mut s.model,
                    "risk" => &mut s.risk,
                    "subject" => &mut s.subject,
                    "trace_id" => &mut s.trace_id,
                    _ => &mut s.conversation_id,
                };
                *slot = some(v);
                shapes.push(s);
            }
        }
        let mut nonempty = 0;
        for s in &shapes {
            if self.check(s) > 0 {
                nonempty += 1;
            }
        }
        assert!(
            nonempty > shapes.len() / 2,
            "only {nonempty} of {} shapes matched anything",
            shapes.len()
        );
    }
}

#[test]
fn postgres_index_answers_as_the_file_index() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let both = Both {
        file: SearchIndex::open(&dir.path().join("search.sqlite")).unwrap(),
        pg: PgSearchIndex::open(&pg.url).unwrap(),
    };
    assert_eq!(both.pg.indexed_size().unwrap(), 0);
    // Chunks of uneven sizes, across the file index's blocks (8,192).
    let mut at = 0;
    for n in [1, 999, 7_000, 193, 9_000, 5_000] {
        both.add(at, at + n);
        at += n;
    }
    // A wrong start is refused by both, and changes nothing.
    let e = entry(at);
    for start in [at - 1, at + 1, 0] {
        assert!(both.file.add(start, &[&e]).is_err());
        assert!(both.pg.add(start, &[&e]).is_err());
    }
    assert_eq!(both.file.indexed_size().unwrap(), at);
    assert_eq!(both.pg.indexed_size().unwrap(), at);

    both.check_queries();
    both.check_reports();
    // Everything indexed is found, undecodable entries included (empty rows).
    assert_eq!(both.check(&Query::default()), at as usize);

    // Retention, then more entries on top of what it left.
    let cutoff = EPOCH_MS + 20 * DAY_MS;
    for tenant in ["acme", TENANTS[3], "nobody", ""] {
        let n = both.file.delete_before(tenant, cutoff).unwrap();
        assert_eq!(
            n,
            both.pg.delete_before(tenant, cutoff).unwrap(),
            "{tenant:?}"
        );
        assert_eq!(
            (n > 0),
            tenant.len() > 1 && tenant != "nobody",
            "{tenant:?}: {n}"
        );
    }
    both.add(at, at + 3_000);
    at += 3_000;
    assert_eq!(both.pg.indexed_size().unwrap(), at);
    both.check_queries();
    both.check_reports();
    assert!(both.check(&Query::default()) < at as usize);

    // A second handle (another node) sees the same index and may go on
    // from where it ends; the first cannot add those entries again.
    let other = PgSearchIndex::open(&pg.url).unwrap();
    assert_eq!(other.indexed_size().unwrap(), at);
    let e = entry(at);
    other.add(at, &[&e]).unwrap();
    assert!(both.pg.add(at, &[&e]).is_err());
    both.file.add(at, &[&e]).unwrap();
    both.check(&Query::default());
}
