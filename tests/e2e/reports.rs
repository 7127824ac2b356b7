//! Compliance reports on the real binary: a generated month of events for
//! three AI systems, genuine policy violations (one resolved), an erasure
//! and another tenant's events; the JSON report's key numbers are checked
//! exactly, then the HTML and Markdown renderings, access and bad input.

use crate::harness::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const RULES: &str = r#"
[[rule]]
id = "disallowed-provider"
description = "A model call went to an unapproved provider"
severity = "medium"
condition = '"gen_ai.provider.name" in ai && ai["gen_ai.provider.name"] == "deepseek"'

[[rule]]
id = "critical-decision"
description = "An agent took a critical decision"
severity = "high"
condition = 'action == "agent.decision" && risk_level == "critical"'
"#;

const DAY: Duration = Duration::from_secs(86_400);

fn at(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

fn ev(id: String, tenant: &str, time: OffsetDateTime, source: &str, action: &str) -> Value {
    json!({"id": id, "time": at(time), "tenant": tenant, "source": {"name": source},
           "actor": {"id": "svc", "type": "service"}, "action": action})
}

/// The month: days 0..30 of the period, three systems with known counts.
fn month(from: OffsetDateTime) -> Vec<Value> {
    let mut out = Vec::new();
    for d in 0..30u32 {
        let day = from + DAY * d + Duration::from_secs(10 * 3600);
        let id = |s: &str, n: u32| format!("{s}-{d}-{n}");
        for n in 0..3 {
            let mut e = ev(id("chat", n), "acme", day, "chat-assistant", "model.invoke");
            e["ai"] = json!({"gen_ai.provider.name": if n == 0 && d % 10 == 0 { "deepseek" } else { "openai" }});
            if n == 1 && d == 4 {
                e["subject"] = json!("alice");
            }
            out.push(e);
        }
        for n in 0..2 {
            let mut e = ev(
                id("credit", n),
                "acme",
                day,
                "credit-scoring",
                "agent.decision",
            );
            e["risk_level"] = json!("high");
            out.push(e);
        }
        if d % 5 == 0 {
            out.push(ev(
                id("review", 0),
                "acme",
                day,
                "credit-scoring",
                "human.review",
            ));
        }
        if d % 3 == 0 {
            let mut e = ev(id("triage", 0), "acme", day, "triage-bot", "agent.decision");
            e["risk_level"] = json!("critical");
            out.push(e);
            out.push(ev(
                id("override", 0),
                "acme",
                day,
                "triage-bot",
                "human.override",
            ));
        }
    }
    // Before the period: not counted, but the oldest record held.
    out.push(ev(
        "old-1".into(),
        "acme",
        from - DAY * 10,
        "chat-assistant",
        "model.invoke",
    ));
    // Another tenant, in the period: never counted for acme.
    for n in 0..5u32 {
        let mut e = ev(
            format!("globex-{n}"),
            "globex",
            from + DAY * (n + 1),
            "chat-assistant",
            "agent.decision",
        );
        e["risk_level"] = json!("critical");
        e["ai"] = json!({"gen_ai.provider.name": "deepseek"});
        out.push(e);
        out.push(ev(
            format!("globex-r{n}"),
            "globex",
            from + DAY * (n + 1),
            "chat-assistant",
            "human.review",
        ));
    }
    out
}

fn token(server: &Server, role: &str, tenant: &str) -> String {
    let r = server.post(
        "/v1/tokens",
        "application/json",
        json!({"role": role, "tenants": [tenant]})
            .to_string()
            .into_bytes(),
    );
    assert_eq!(r.status(), 201);
    r.json::<Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn report(server: &Server, token: &str, query: &str) -> reqwest::blocking::Response {
    client()
        .get(format!("{}/v1/reports/compliance?{query}", server.url))
        .bearer_auth(token)
        .send()
        .unwrap()
}

fn system<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["art12"]["systems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["system"] == name)
        .unwrap_or_else(|| panic!("no system {name}: {r:#}"))
}

fn rule<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["violations"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["rule"] == id)
        .unwrap_or_else(|| panic!("no rule {id}: {r:#}"))
}

#[test]
fn reports_over_a_generated_month_have_exact_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let config = dir.path().join("aiaudit.toml");
    std::fs::write(&config, "[retention]\nacme = \"90d\"\n").unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--policy-file",
            rules.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let auditor = token(&server, "auditor", "acme");
    let other = token(&server, "auditor", "globex");

    // The period: 30 whole days up to today, plus today and tomorrow so
    // that the violations and the erasure (logged now) fall inside.
    let today = OffsetDateTime::now_utc().replace_time(time::Time::MIDNIGHT);
    let from = today - DAY * 30;
    let to = today + DAY * 2;
    server.post_events(&month(from));

    // Erase one subject; resolve one violation once they are all logged.
    let r = server.post(
        "/v1/erase",
        "application/json",
        json!({"tenant": "acme", "subject": "alice"})
            .to_string()
            .into_bytes(),
    );
    assert_eq!(r.status(), 200);
    let keys_destroyed = r.json::<Value>().unwrap()["keys_destroyed"].clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let critical = loop {
        let list = server.get_json("/v1/violations?tenant=acme&rule=critical-decision&limit=100");
        let all = server.get_json("/v1/violations?tenant=acme&limit=100");
        if list["violations"].as_array().unwrap().len() == 10
            && all["violations"].as_array().unwrap().len() == 13
        {
            break list["violations"][0]["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "violations never logged: {all}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let r = server.post(
        &format!("/v1/violations/{critical}"),
        "application/json",
        json!({"status": "resolved", "note": "model retrained"})
            .to_string()
            .into_bytes(),
    );
    assert_eq!(r.status(), 200);

    let query = format!(
        "tenant=acme&from={}&to={}",
        at(from).replace('+', "%2B"),
        at(to).replace('+', "%2B")
    );
    // Wait for the index to catch up with every event logged so far.
    let deadline = Instant::now() + Duration::from_secs(30);
    let r: Value = loop {
        let r: Value = report(&server, &auditor, &query).json().unwrap();
        // The systems' 176, and the ledger's 25: 13 violations and 1
        // resolution, 1 erasure, the incident the ten high violations of one
        // rule opened (one incident, nine "detected again" notes).
        let own: u64 = r["art12"]["ledger_records"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
        if r["art12"]["total_events"] == 176
            && own == 25
            && r["violations"]["resolutions_logged"] == 1
        {
            break r;
        }
        assert!(Instant::now() < deadline, "report never complete: {r:#}");
        std::thread::sleep(Duration::from_millis(100));
    };

    assert_eq!(r["tenant"], "acme");
    assert_eq!(r["period"]["days"], 32);
    assert_eq!(r["period"]["from"], at(from));

    // Art. 12: per system.
    let chat = system(&r, "chat-assistant");
    assert_eq!(chat["events"], 90);
    assert_eq!(chat["days_with_events"], 30);
    assert_eq!(chat["days_in_period"], 32);
    assert_eq!(chat["actions"], json!({"model.invoke": 90}));
    assert_eq!(chat["first"], at(from + Duration::from_secs(10 * 3600)));
    assert_eq!(chat["per_day"].as_array().unwrap().len(), 32);
    assert_eq!(chat["per_day"][0], 3);
    assert_eq!(chat["per_day"][30], 0);
    let credit = system(&r, "credit-scoring");
    assert_eq!(credit["events"], 66);
    assert_eq!(
        credit["actions"],
        json!({"agent.decision": 60, "human.review": 6})
    );
    let triage = system(&r, "triage-bot");
    assert_eq!(triage["events"], 20);
    assert_eq!(triage["days_with_events"], 10);
    // The ledger's own records are not AI systems: 13 violations and 1
    // resolution, 1 erasure, an incident opened with 9 notes, apart.
    assert_eq!(r["art12"]["systems"].as_array().unwrap().len(), 3, "{r:#}");
    assert_eq!(r["art12"]["total_events"], 90 + 66 + 20);
    assert_eq!(
        r["art12"]["ledger_records"],
        json!({"aiaudit-policy": 14, "aiaudit": 1, "aiaudit-incident": 10})
    );

    // Art. 19 and 26: 90 days configured is too short; the records held go
    // back 40 days, not yet six months.
    let ret = &r["art19_26_retention"];
    assert_eq!(ret["configured"], "90 days");
    assert_eq!(ret["configured_by"], "tenant");
    assert_eq!(ret["required_days"], 183);
    assert_eq!(ret["configured_ok"], false);
    assert_eq!(ret["oldest_record"], at(from - DAY * 10));
    assert_eq!(ret["actual_ok"], Value::Null);
    assert_eq!(ret["actual_status"], "not yet demonstrable");

    // Art. 14.
    let o = &r["art14_oversight"];
    assert_eq!(o["reviews"], 6);
    assert_eq!(o["overrides"], 10);
    assert_eq!(o["high_risk_events"], 70);
    assert_eq!(o["agent_decisions"], 70);
    assert_eq!(o["high_risk_agent_decisions"], 70);
    assert!((o["review_ratio"].as_f64().unwrap() - 16.0 / 70.0).abs() < 1e-9);

    // Violations, genuine ones, per rule.
    assert_eq!(r["violations"]["total"], 13);
    let c = rule(&r, "critical-decision");
    assert_eq!(
        (
            &c["count"],
            &c["severity"],
            &c["resolved"],
            &c["unresolved"]
        ),
        (&json!(10), &json!("high"), &json!(1), &json!(9))
    );
    let d = rule(&r, "disallowed-provider");
    assert_eq!(
        (&d["count"], &d["severity"], &d["resolved"]),
        (&json!(3), &json!("medium"), &json!(0))
    );

    // Data protection, integrity and the log.
    assert_eq!(r["data_protection"]["erasures"], 1);
    assert_eq!(r["data_protection"]["keys_destroyed"], keys_destroyed);
    assert_eq!(r["integrity"]["verification_failures_since_start"], 0);
    let info = server.get_json("/v1/info");
    assert_eq!(r["log"]["origin"], info["origin"]);
    assert_eq!(r["log"]["verifier_key"], info["verifier_key"]);
    assert!(r["log"]["checkpoint"]
        .as_str()
        .unwrap()
        .starts_with(info["origin"].as_str().unwrap()));

    // Findings: the short retention and the unresolved critical decisions.
    let findings = r["findings"].as_array().unwrap();
    assert!(findings
        .iter()
        .any(|f| f["severity"] == "high" && f["section"] == "art19_26_retention"));
    assert!(findings.iter().any(|f| f["severity"] == "high"
        && f["text"]
            .as_str()
            .unwrap()
            .contains("9 of 10 violations of rule critical-decision")));

    // HTML: self-contained, charted, never script.
    let resp = report(&server, &auditor, &format!("{query}&format=html"));
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(
        h["content-security-policy"],
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    );
    assert_eq!(
        h["content-disposition"],
        format!(
            "attachment; filename=\"aiaudit-compliance-acme-{}-{}.html\"",
            &at(from)[..10],
            &at(to)[..10]
        )
        .as_str()
    );
    let html = resp.text().unwrap();
    assert_eq!(html.matches("<svg").count(), 2, "two charts");
    assert!(!html.contains("<script"));
    for resource in ["src=", "href=", "url(", "@import"] {
        assert!(!html.contains(resource), "{resource}");
    }
    assert!(html.contains("critical-decision") && html.contains("triage-bot"));

    // Markdown through the CLI, to a file.
    let out = dir.path().join("report.md");
    let o = aiaudit(&[
        "report",
        "--url",
        &server.url,
        "--token",
        &auditor,
        "--tenant",
        "acme",
        "--from",
        &at(from),
        "--to",
        &at(to),
        "--format",
        "md",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(&out).unwrap();
    assert!(md.contains("| System | Events | First | Last | Days with events | Actions |"));
    assert!(
        md.contains("| critical-decision | high | 10 | 1 | 9 |"),
        "{md}"
    );
    assert!(
        md.contains("| Human overrides (human.override) | 10 |"),
        "{md}"
    );

    // The CLI's default is HTML on standard output.
    let o = aiaudit(&[
        "report",
        "--url",
        &server.url,
        "--token",
        &auditor,
        "--tenant",
        "acme",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).starts_with("<!DOCTYPE html>"));

    // Access: another tenant's auditor, no token; bad input names its parameter.
    assert_eq!(report(&server, &other, &query).status(), 403);
    let globex: Value = report(&server, &other, "tenant=globex").json().unwrap();
    assert_eq!(globex["art14_oversight"]["reviews"], 5);
    let anonymous = client()
        .get(format!("{}/v1/reports/compliance?{query}", server.url))
        .send()
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    for (q, parameter) in [
        ("tenant=acme&from=last-week", "from"),
        ("from=2026-01-01T00:00:00Z", "tenant"),
        ("tenant=acme&format=pdf", "format"),
    ] {
        let r = report(&server, &auditor, q);
        assert_eq!(r.status(), 400, "{q}");
        assert_eq!(r.json::<Value>().unwrap()["parameter"], parameter, "{q}");
    }
    let o = aiaudit(&[
        "report",
        "--url",
        &server.url,
        "--token",
        &auditor,
        "--tenant",
        "acme",
        "--from",
        "nope",
        "--format",
        "json",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("from"));
}

/// The `compliance.*` records of a tenant, newest first, once there are
/// `n` of `action` (polled: the schedule runs on its own clock).
fn wait_records(server: &Server, tenant: &str, action: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = server.get_json(&format!(
            "/v1/events?tenant={tenant}&action={action}&order=desc&limit=100"
        ))["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "only {} {action} records of {tenant} after 60 s",
            found.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn record_event(r: &Value) -> &Value {
    if r["event"].is_object() {
        &r["event"]
    } else {
        r
    }
}

/// Seed §9.2: each tenant is checked on a schedule; the result is logged
/// through the engine, a high finding raises one violation (not one per
/// check) and an incident, the full reports are archived to the backup
/// location with their SHA-256 logged, `aiaudit report schedule` shows it
/// all, and no caller can write a record that passes for one.
#[test]
fn scheduled_compliance_checks_log_raise_and_archive() {
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "backup_to = [{:?}]\n[retention]\nacme = \"30d\"\n[compliance]\ncheck_every = \"2s\"\narchive_every = \"4s\"\n",
            backups.to_str().unwrap()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &["--config", config.to_str().unwrap()]);
    // The AI system keeps logging through every check's period (a period
    // with none of its events is a finding of its own).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = {
        let (url, token, stop) = (server.url.clone(), server.token.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let e = ev(
                    format!("sched-{n}"),
                    "acme",
                    OffsetDateTime::now_utc(),
                    "loan-assistant",
                    "model.invoke",
                );
                let _ = client()
                    .post(format!("{url}/v1/events"))
                    .bearer_auth(&token)
                    .json(&[e])
                    .send();
                n += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };

    // Three checks: each logged, each with the retention finding.
    let checks = wait_records(&server, "acme", "compliance.check", 3);
    for c in &checks {
        let e = record_event(c);
        assert_eq!(e["source"]["name"], "aiaudit", "{e}");
        assert_eq!(e["actor"]["id"], "aiaudit-compliance");
        assert_eq!(e["outcome"]["status"], "failure", "{e}");
        let a = &e["attributes"];
        assert_eq!(a["framework"], "eu-ai-act");
        assert!(a["checkpoint_size"].as_u64().unwrap() >= 1, "{a}");
        assert_eq!(a["report_sha256"].as_str().unwrap().len(), 64);
        let high = a["high_findings"].as_array().unwrap();
        assert!(
            high.iter().any(|f| f["section"] == "art19_26_retention"),
            "{a}"
        );
    }
    // Consecutive periods, no gap and no overlap.
    let ends: Vec<(i64, i64)> = checks
        .iter()
        .map(|c| {
            let a = &record_event(c)["attributes"];
            (
                a["period_from_ms"].as_i64().unwrap(),
                a["period_to_ms"].as_i64().unwrap(),
            )
        })
        .collect();
    for pair in ends.windows(2) {
        assert_eq!(pair[0].0, pair[1].1, "periods {ends:?}");
    }

    // One violation for the persisting finding, however many checks.
    let violations = server.get_json("/v1/violations?tenant=acme")["violations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let retention: Vec<&Value> = violations
        .iter()
        .filter(|v| v["rule"] == "compliance_check.art19_26_retention")
        .collect();
    assert_eq!(retention.len(), 1, "{violations:?}");
    assert_eq!(retention[0]["severity"], "high");
    assert_eq!(
        server.metric(
            "aiaudit_compliance_findings{tenant=\"acme\",framework=\"eu-ai-act\",severity=\"high\"}"
        ),
        Some(1.0)
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    feeder.join().unwrap();

    // The archive: both files at the backup location, their SHA-256 logged.
    let archived = wait_records(&server, "acme", "compliance.archived", 1);
    let a = &record_event(&archived[0])["attributes"];
    let files = a["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{a}");
    for f in files {
        let name = f["name"].as_str().unwrap();
        assert!(
            name.starts_with("evidence/compliance/acme/eu-ai-act-"),
            "{name}"
        );
        let bytes = std::fs::read(backups.join(name)).unwrap();
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        assert_eq!(f["sha256"], digest.as_str(), "{name}");
    }

    // The CLI shows what ran and what it found.
    let out = aiaudit(&[
        "report",
        "schedule",
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--tenant",
        "acme",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("acme  eu-ai-act"), "{text}");
    assert!(
        text.contains("HIGH art19_26_retention: retention is configured to 30 days"),
        "{text}"
    );
    assert!(text.contains("archived"), "{text}");

    // A caller cannot write a record that passes for the ledger's.
    let mut forged = ev(
        "forged-1".into(),
        "acme",
        OffsetDateTime::now_utc(),
        "loan-assistant",
        "compliance.check",
    );
    forged["attributes"] = json!({"framework": "eu-ai-act", "findings": {"high": 0}});
    let r = server.post(
        "/v1/events",
        "application/json",
        serde_json::to_vec(&[forged]).unwrap(),
    );
    assert!(r.status().is_client_error(), "{}", r.status());
    assert!(r.text().unwrap().contains("reserved"));
}
