use super::*;

fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const NOW: i64 = 1_790_000_000_000;

#[test]
fn the_default_period_is_the_last_30_days() {
    let r = parse_request(&params(&[("tenant", "acme")]), NOW).unwrap();
    assert_eq!(r.to_ms, NOW);
    assert_eq!(r.from_ms, NOW - 30 * DAY_MS);
    assert_eq!(r.format, Format::Json);
    let r = parse_request(
        &params(&[
            ("tenant", "acme"),
            ("from", "2026-01-01T00:00:00Z"),
            ("to", "2026-02-01T00:00:00Z"),
            ("format", "md"),
        ]),
        NOW,
    )
    .unwrap();
    assert_eq!(days_in(r.from_ms, r.to_ms), 31);
    assert_eq!(r.format, Format::Markdown);
}

#[test]
fn bad_requests_name_their_parameter() {
    let bad = |pairs: &[(&str, &str)]| {
        parse_request(&params(pairs), NOW)
            .unwrap_err()
            .parameter
            .unwrap()
    };
    assert_eq!(bad(&[]), "tenant");
    assert_eq!(bad(&[("tenant", "acme"), ("from", "yesterday")]), "from");
    assert_eq!(bad(&[("tenant", "acme"), ("to", "2026-13-01")]), "to");
    assert_eq!(
        bad(&[
            ("tenant", "acme"),
            ("from", "2026-02-01T00:00:00Z"),
            ("to", "2026-01-01T00:00:00Z")
        ]),
        "to"
    );
    assert_eq!(
        bad(&[("tenant", "acme"), ("from", "1990-01-01T00:00:00Z")]),
        "from"
    );
    assert_eq!(bad(&[("tenant", "acme"), ("format", "pdf")]), "format");
    assert_eq!(bad(&[("tenant", "acme"), ("tenat", "x")]), "tenat");
}

#[test]
fn retention_is_checked_against_six_months() {
    let six_months_ago = NOW - 200 * DAY_MS;
    let r = retention(None, Some(six_months_ago), NOW);
    assert_eq!(
        (r.configured.as_str(), r.configured_ok, r.actual_ok),
        ("forever", true, Some(true))
    );
    assert_eq!(r.actual_days, Some(200));
    assert!(r.findings.is_empty());

    let short = Some((Duration::from_secs(90 * 86_400), "tenant"));
    let r = retention(short, Some(NOW - 10 * DAY_MS), NOW);
    assert!(!r.configured_ok);
    assert_eq!(r.configured_days, Some(90));
    assert_eq!(r.configured_by, "tenant");
    // A young log is not a failure: it cannot show six months yet.
    assert_eq!(r.actual_ok, None);
    assert_eq!(r.actual_status, "not yet demonstrable");
    assert_eq!(r.findings.len(), 2);

    let r = retention(Some((Duration::from_secs(365 * 86_400), "*")), None, NOW);
    assert!(r.configured_ok);
    assert_eq!(r.actual_status, "no records");
}

#[test]
fn the_review_ratio_needs_high_risk_events() {
    assert_eq!(oversight(1, 1, 0, 5, 0).review_ratio, None);
    assert_eq!(oversight(3, 1, 8, 5, 2).review_ratio, Some(0.5));
}

#[test]
fn per_day_fills_days_without_events() {
    let daily = vec![
        Tally {
            key: (0, Some("a".to_string())),
            count: 2,
        },
        Tally {
            key: (2, Some("a".to_string())),
            count: 5,
        },
        Tally {
            key: (1, Some("b".to_string())),
            count: 7,
        },
        // Out of range: ignored rather than a panic.
        Tally {
            key: (99, Some("a".to_string())),
            count: 1,
        },
    ];
    assert_eq!(per_day(&daily, &Some("a".into()), 4), vec![2, 0, 5, 0]);
    assert_eq!(per_day(&daily, &None, 2), vec![0, 0]);
}

#[test]
fn rules_come_from_policy_actors() {
    assert_eq!(rule_of(Some("policy:pii-leak")), "pii-leak");
    assert_eq!(rule_of(Some("someone")), "someone");
    assert_eq!(rule_of(None), "(unknown)");
}

/// A report whose strings are hostile, to check every output escapes them.
fn sample() -> Report {
    let evil = "<script>alert(1)</script>|`x`\n# h";
    let mut r = Report {
        framework: "eu-ai-act",
        period: PeriodInfo {
            from_ms: NOW - 3 * DAY_MS,
            from: rfc3339(NOW - 3 * DAY_MS),
            to: rfc3339(NOW),
            days: 3,
        },
        tenant: "acme".into(),
        generated_at: rfc3339(NOW),
        log: LogInfo {
            origin: "example.org/log".into(),
            checkpoint_size: 10,
            root: "cm9vdA==".into(),
            checkpoint: "example.org/log\n10\ncm9vdA==\n\n— sig\n".into(),
            verifier_key: "example.org/log+abcd+key".into(),
            witnesses: vec!["w1".into(), "w3".into()],
        },
        art12: Art12 {
            total_events: 9,
            ledger_records: [("aiaudit-policy".to_string(), 2)].into(),
            systems: vec![
                System {
                    system: Some(evil.into()),
                    events: 6,
                    first: rfc3339(NOW - 3 * DAY_MS),
                    last: rfc3339(NOW - DAY_MS),
                    days_with_events: 3,
                    days_in_period: 3,
                    actions: [("model.invoke".to_string(), 6)].into(),
                    per_day: vec![1, 2, 3],
                },
                System {
                    system: None,
                    events: 3,
                    first: rfc3339(NOW - 3 * DAY_MS),
                    last: rfc3339(NOW - 3 * DAY_MS),
                    days_with_events: 1,
                    days_in_period: 3,
                    actions: [("agent.decision".to_string(), 3)].into(),
                    per_day: vec![3, 0, 0],
                },
            ],
        },
        art19_26_retention: retention(None, Some(NOW - 3 * DAY_MS), NOW),
        art14_oversight: oversight(0, 0, 3, 3, 3),
        integrity: Integrity {
            checkpoint_size: 10,
            checkpoint_root: "cm9vdA==".into(),
            checkpoint_age_seconds: 0.5,
            verification_failures_since_start: 0,
            indexed_size: 10,
            index_lag_events: 0,
            verify: vec!["aiaudit verify --url http://127.0.0.1:7381".into()],
        },
        violations: ViolationSummary {
            total: 4,
            rules: vec![
                RuleStat {
                    rule: evil.into(),
                    count: 3,
                    severity: "high".into(),
                    resolved: 1,
                    unresolved: 2,
                },
                RuleStat {
                    rule: "budget".into(),
                    count: 1,
                    severity: "low".into(),
                    resolved: 1,
                    unresolved: 0,
                },
            ],
            resolutions_logged: 2,
        },
        data_protection: DataProtection {
            erasures: 1,
            keys_destroyed: Some(2),
        },
        access: AccessSummary {
            records: 3,
            readers: vec![ReaderAccess {
                reader: format!("token:{evil}"),
                records: 3,
            }],
        },
        privacy: None,
        findings: vec![],
    };
    r.findings = findings(&r);
    r
}

#[test]
fn findings_name_what_to_act_on_most_severe_first() {
    let f = sample().findings;
    let texts: Vec<&str> = f.iter().map(|f| f.text.as_str()).collect();
    assert_eq!(f[0].severity, "high", "{texts:?}");
    assert!(texts[0].contains("2 of 3 violations"), "{texts:?}");
    assert!(f
        .iter()
        .any(|f| f.section == "art14_oversight" && f.severity == "medium"));
    assert!(f
        .iter()
        .any(|f| f.section == "art12" && f.text.contains("1 of 3 days")));
    assert!(f
        .iter()
        .any(|f| f.section == "art19_26_retention" && f.severity == "info"));
    assert!(
        !f.iter().any(|f| f.text.contains("budget")),
        "resolved rules are no finding"
    );
}

#[test]
fn html_is_self_contained_escaped_and_charted() {
    let html = render::html(&sample());
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg").count(), 2, "two charts");
    assert!(!html.contains("<script"), "event strings are escaped");
    assert!(html.contains("&lt;script&gt;"));
    for resource in ["src=", "href=", "url(", "@import"] {
        assert!(!html.contains(resource), "{resource} in the page");
    }
    // The only http(s) URLs are the SVG namespace and the ledger's own URL in
    // the command lines, never a resource to load.
    let without_ns = html
        .replace("http://www.w3.org/2000/svg", "")
        .replace("http://127.0.0.1:7381", "");
    assert!(!without_ns.contains("http://") && !without_ns.contains("https://"));
}

#[test]
fn markdown_has_the_tables_and_escapes_cells() {
    let md = render::markdown(&sample());
    assert!(md.starts_with("# Compliance report: acme"));
    for heading in [
        "## Art. 12",
        "## Art. 19 and 26",
        "## Art. 14",
        "## Integrity",
        "## Policy violations",
        "## Data protection",
    ] {
        assert!(md.contains(heading), "{heading}");
    }
    assert!(md.contains("| System | Events | First | Last | Days with events | Actions |"));
    assert!(md.contains("| (unnamed) | 3 |"));
    assert!(!md.contains("<script"));
    // Every table row keeps its column count: no pipe or newline from data.
    let separators: Vec<usize> = md
        .lines()
        .filter(|l| l.starts_with("| &lt;script"))
        .map(|l| l.matches(" | ").count())
        .collect();
    assert_eq!(separators, vec![5, 4], "{md}");
    // The signed checkpoint is an indented block, line by line.
    assert!(md.contains("    example.org/log\n    10\n"));
}

#[test]
fn empty_reports_render_without_charts() {
    let mut r = sample();
    r.art12 = Art12 {
        total_events: 0,
        systems: vec![],
        ledger_records: Default::default(),
    };
    r.violations = ViolationSummary {
        total: 0,
        rules: vec![],
        resolutions_logged: 0,
    };
    r.findings = findings(&r);
    assert!(r.findings.iter().any(|f| f.text.contains("no events")));
    let html = render::html(&r);
    assert!(!html.contains("<svg"));
    assert!(html.contains("nothing to chart"));
    render::markdown(&r);
}

#[test]
fn many_systems_fold_into_one_line() {
    let mut r = sample();
    let one = r.art12.systems[1].clone();
    r.art12.systems = (0..15)
        .map(|i| System {
            system: Some(format!("s{i}")),
            events: i,
            ..one.clone()
        })
        .collect();
    let html = render::html(&r);
    assert!(html.contains("5 other systems"));
}

/// The NDPA report of [`sample`]: hostile strings in every field the
/// privacy sections print.
fn sample_ndpa() -> Report {
    use super::privacy::*;
    let evil = "<script>alert(1)</script>|`x`\n# h";
    let mut r = sample();
    r.framework = "ndpa";
    r.privacy = Some(Privacy {
        framework: "ndpa",
        law: Framework::Ndpa.law_for_tests(),
        organisation: Some(evil.into()),
        dpo_contact: None,
        registration: None,
        processing: vec![Processing {
            system: Some(evil.into()),
            events: 3,
            first: rfc3339(NOW - DAY_MS),
            last: rfc3339(NOW),
            actions: [("model.invoke".to_string(), 3)].into(),
            dpia: None,
        }],
        erasure: Erasure {
            requests: 2,
            completed: 1,
            pending: 1,
            erasures_logged: 1,
            target_days: 30,
            over_target: 1,
            median_hours: Some(5.0),
            max_hours: Some(5.0),
            rows: vec![ErasureRow {
                subject_tag: evil.into(),
                requested_at: rfc3339(NOW - DAY_MS),
                completed_at: None,
                hours: None,
                request_index: 7,
                erasure_index: None,
            }],
        },
        breaches: vec![BreachRow {
            incident_id: "i-1".into(),
            title: evil.into(),
            severity: "high".into(),
            status: "resolved".into(),
            aware_at: rfc3339(NOW - 2 * DAY_MS),
            clocks: vec![ClockRow {
                key: "ng:authority".into(),
                notify: "Nigeria Data Protection Commission (NDPC)".into(),
                reference: "NDPA 2023 s. 40(2)".into(),
                deadline: Some(rfc3339(NOW + DAY_MS)),
                notified_at: None,
                notification_reference: None,
                outcome: "late",
            }],
        }],
        data_residency: None,
        cross_border_transfers: None,
    });
    r.findings = super::findings(&r);
    r
}

#[test]
fn the_framework_parameter_is_checked() {
    let mut q = std::collections::HashMap::new();
    q.insert("tenant".to_string(), "acme".to_string());
    assert_eq!(
        parse_request(&q, NOW).unwrap().framework,
        super::privacy::Framework::EuAiAct
    );
    q.insert("framework".to_string(), "kenya-dpa".to_string());
    assert_eq!(
        parse_request(&q, NOW).unwrap().framework,
        super::privacy::Framework::KenyaDpa
    );
    q.insert("framework".to_string(), "gdpr".to_string());
    assert_eq!(
        parse_request(&q, NOW).unwrap_err().parameter.as_deref(),
        Some("framework")
    );
}

#[test]
fn ndpa_reports_name_each_provision_and_escape_what_they_print() {
    let r = sample_ndpa();
    let texts: Vec<&str> = r.findings.iter().map(|f| f.text.as_str()).collect();
    assert!(
        texts.iter().any(|t| t.contains("no DPIA reference")),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("no data protection officer")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("longer than 30 days")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("is late")), "{texts:?}");
    let md = render::markdown(&r);
    for needle in [
        "Compliance report (Nigeria Data Protection Act 2023",
        "Records of processing by AI systems (NDPA 2023 s. 24",
        "Erasure requests (NDPA 2023 s. 34",
        "Personal-data breaches and notifications (NDPA 2023 s. 40",
        "Cross-border transfers and residency (NDPA 2023 ss. 41-43",
        "Retention of records (NDPA 2023 s. 24(1)",
        "Annex: figures for the NDPC annual Compliance Audit Return",
        "| NDPA 2023 s. 40(2) |",
    ] {
        assert!(md.contains(needle), "{needle} missing:\n{md}");
    }
    assert!(
        !md.contains("Art. 14: human oversight"),
        "EU sections stay out"
    );
    assert!(!md.contains("<script>"), "{md}");
    let html = render::html(&r);
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;"));
}

#[test]
fn the_daily_chart_starts_at_the_first_day_with_events() {
    let line = |v: Vec<u64>| ("s".to_string(), v);
    let mut young = vec![0; 30];
    young[27] = 4;
    young[29] = 1;
    assert_eq!(render::charted_days(&[line(young)], 30), (27, 29));
    let mut last_only = vec![0; 30];
    last_only[29] = 9;
    assert_eq!(
        render::charted_days(&[line(last_only), line(vec![0; 30])], 30),
        (28, 29),
        "at least two days wide"
    );
    assert_eq!(render::charted_days(&[line(vec![5, 0, 0])], 3), (0, 2));
    assert_eq!(render::charted_days(&[line(vec![5])], 1), (0, 1));

    let mut r = sample();
    r.period.days = 30;
    r.period.from_ms = NOW - 30 * DAY_MS;
    for s in &mut r.art12.systems {
        s.per_day = vec![0; 30];
        s.per_day[28] = 2;
    }
    let html = render::html(&r);
    assert!(
        html.contains("no events before"),
        "the axis says where it starts"
    );
    assert!(html.contains("name=\"viewport\" content=\"width=device-width"));
    assert!(html.contains("<div class=\"table\" tabindex=\"0\"><table>"));
}
