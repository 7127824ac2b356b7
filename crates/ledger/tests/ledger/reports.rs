//! Compliance reports built by the engine from a small known set of
//! events: every section's numbers, findings, scope and rendering.

use crate::common::*;
use aiaudit_ledger::reports::{self, render, Format, Request};
use aiaudit_ledger::{Kind, Ledger, LedgerConfig, Role};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const DAY: Duration = Duration::from_secs(86_400);

fn ev(id: &str, tenant: &str, time: &str, source: &str, action: &str, risk: Option<&str>) -> Value {
    let mut e = json!({"id": id, "time": time, "tenant": tenant, "source": {"name": source},
                       "actor": {"id": "a", "type": "agent"}, "action": action});
    if let Some(r) = risk {
        e["risk_level"] = json!(r);
    }
    e
}

fn week(tenant: &str) -> Request {
    Request {
        framework: aiaudit_ledger::reports::privacy::Framework::EuAiAct,
        tenant: tenant.to_string(),
        from_ms: aiaudit_index::parse_time_ms("2026-01-05T00:00:00Z").unwrap(),
        to_ms: aiaudit_index::parse_time_ms("2026-01-12T00:00:00Z").unwrap(),
        format: Format::Json,
    }
}

/// Six acme events in the week of 2026-01-05 from two systems, one after
/// it, and one of globex within it.
async fn ledger_with_a_week(config: LedgerConfig) -> Arc<Ledger> {
    let ledger = open_with(config).await;
    append(
        &ledger,
        vec![
            ev(
                "r1",
                "acme",
                "2026-01-05T09:00:00Z",
                "loan-bot",
                "agent.decision",
                Some("high"),
            ),
            ev(
                "r2",
                "acme",
                "2026-01-05T10:00:00Z",
                "loan-bot",
                "human.review",
                None,
            ),
            ev(
                "r3",
                "acme",
                "2026-01-07T09:00:00Z",
                "loan-bot",
                "agent.decision",
                Some("low"),
            ),
            ev(
                "r4",
                "acme",
                "2026-01-07T11:00:00Z",
                "loan-bot",
                "model.invoke",
                None,
            ),
            ev(
                "r5",
                "acme",
                "2026-01-06T09:00:00Z",
                "chat",
                "model.invoke",
                Some("critical"),
            ),
            ev(
                "r6",
                "acme",
                "2026-01-06T10:00:00Z",
                "chat",
                "human.override",
                None,
            ),
            ev(
                "late",
                "acme",
                "2026-02-01T09:00:00Z",
                "loan-bot",
                "model.invoke",
                Some("high"),
            ),
            ev(
                "g1",
                "globex",
                "2026-01-06T09:00:00Z",
                "chat",
                "model.invoke",
                Some("high"),
            ),
        ],
    )
    .await;
    ledger.await_checkpoint(8).await.unwrap();
    indexed(&ledger).await;
    ledger
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_counts_the_tenants_systems_oversight_and_log_for_the_period() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger_with_a_week(config(dir.path())).await;
    let auditor = who(Role::Auditor, &["acme"]);
    let now = reports::now_ms();
    let r = ledger.report(&auditor, week("acme"), now).await.unwrap();

    assert_eq!((r.tenant.as_str(), r.period.days), ("acme", 7));
    assert_eq!(r.period.from, "2026-01-05T00:00:00Z");
    assert_eq!(r.art12.total_events, 6);
    let systems: Vec<_> = r
        .art12
        .systems
        .iter()
        .map(|s| {
            (
                s.system.clone().unwrap(),
                s.events,
                s.days_with_events,
                s.per_day.clone(),
            )
        })
        .collect();
    assert_eq!(
        systems,
        [
            ("chat".to_string(), 2, 1, vec![0, 2, 0, 0, 0, 0, 0]),
            ("loan-bot".to_string(), 4, 2, vec![2, 0, 2, 0, 0, 0, 0]),
        ]
    );
    let loan = &r.art12.systems[1];
    assert_eq!(loan.actions["agent.decision"], 2);
    assert_eq!(loan.actions["human.review"], 1);
    assert_eq!(
        (loan.first.as_str(), loan.last.as_str()),
        ("2026-01-05T09:00:00Z", "2026-01-07T11:00:00Z")
    );

    let o = &r.art14_oversight;
    assert_eq!(
        (
            o.reviews,
            o.overrides,
            o.high_risk_events,
            o.agent_decisions,
            o.high_risk_agent_decisions
        ),
        (1, 1, 2, 2, 1)
    );
    assert_eq!(o.review_ratio, Some(1.0));

    // Retention: none configured (kept forever); records go back far enough.
    let ret = &r.art19_26_retention;
    assert_eq!(
        (ret.configured.as_str(), ret.configured_by),
        ("forever", "default")
    );
    assert!(ret.configured_ok);
    assert_eq!(ret.oldest_record.as_deref(), Some("2026-01-05T09:00:00Z"));
    assert_eq!(ret.actual_status, "ok");

    // The log section is the latest signed checkpoint.
    let latest = ledger.latest();
    assert_eq!(r.log.checkpoint_size, latest.checkpoint.size);
    assert_eq!(r.log.checkpoint, latest.note);
    assert_eq!(r.log.verifier_key, ledger.verifier().to_vkey());
    assert_eq!(r.integrity.index_lag_events, 0);
    assert!(r
        .integrity
        .verify
        .iter()
        .all(|c| c.contains(&r.log.verifier_key)));
    assert_eq!((r.violations.total, r.data_protection.erasures), (0, 0));
    assert_eq!(r.data_protection.keys_destroyed, Some(0));

    // Only the gaps are findings: each system was silent on some days.
    let findings: Vec<_> = r.findings.iter().map(|f| (f.severity, f.section)).collect();
    assert_eq!(findings, [("info", "art12"), ("info", "art12")]);
    assert!(r.findings[1]
        .text
        .contains("loan-bot logged events on 2 of 7 days"));

    // Both renderings carry the numbers.
    let md = render::markdown(&r);
    assert!(md.contains("loan-bot") && md.contains("acme"), "{md}");
    let html = render::html(&r);
    assert!(html.contains("loan-bot") && html.contains("<svg"), "{html}");
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_for_readers_of_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger_with_a_week(config(dir.path())).await;
    let now = reports::now_ms();
    for p in [
        who(Role::Auditor, &["acme"]),
        who(Role::Emitter, &["globex"]),
    ] {
        let e = ledger.report(&p, week("globex"), now).await.unwrap_err();
        assert_eq!(e.kind, Kind::Forbidden);
    }
    let g = ledger
        .report(&who(Role::Admin, &["globex"]), week("globex"), now)
        .await
        .unwrap();
    assert_eq!(g.art12.total_events, 1);
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_retention_and_silent_tenants_are_findings() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger_with_a_week(LedgerConfig {
        retention: [("acme".to_string(), 30 * DAY), ("*".to_string(), 400 * DAY)].into(),
        ..config(dir.path())
    })
    .await;
    let now = reports::now_ms();
    let r = ledger.report(&root(), week("acme"), now).await.unwrap();
    let ret = &r.art19_26_retention;
    assert_eq!(
        (ret.configured.as_str(), ret.configured_by),
        ("30 days", "tenant")
    );
    assert!(!ret.configured_ok);
    assert_eq!(
        (r.findings[0].severity, r.findings[0].section),
        ("high", "art19_26_retention")
    );
    assert!(r.findings[0].text.contains("30 days"));

    // A tenant that logged nothing: the default retention, and a finding.
    let r = ledger.report(&root(), week("initech"), now).await.unwrap();
    assert_eq!(r.art12.total_events, 0);
    let ret = &r.art19_26_retention;
    assert_eq!((ret.configured_days, ret.configured_by), (Some(400), "*"));
    assert_eq!(
        (ret.actual_status, ret.oldest_record.clone()),
        ("no records", None)
    );
    assert_eq!(
        (r.findings[0].severity, r.findings[0].section),
        ("high", "art12")
    );
    assert_eq!(r.art14_oversight.review_ratio, None);
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasures_in_the_period_are_counted_with_the_keys_they_destroyed() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    let mut second = event("e2", "acme");
    second["subject"] = json!("customer-2");
    append(&ledger, vec![event("e1", "acme"), second]).await;
    let (one, ..) = ledger.erase(&root(), "acme", "customer-1").await.unwrap();
    let (two, ..) = ledger.erase(&root(), "acme", "customer-2").await.unwrap();
    indexed(&ledger).await;
    let now = reports::now_ms();
    let day = 86_400_000;
    let req = Request {
        framework: aiaudit_ledger::reports::privacy::Framework::EuAiAct,
        tenant: "acme".into(),
        from_ms: now - day,
        to_ms: now + day,
        format: Format::Json,
    };
    let r = ledger.report(&root(), req, now).await.unwrap();
    assert_eq!(r.data_protection.erasures, 2);
    assert_eq!(r.data_protection.keys_destroyed, Some((one + two) as u64));
    assert!(one + two >= 2);
    ledger.shutdown().await.unwrap();
}
