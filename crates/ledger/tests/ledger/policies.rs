//! Policies at run time: a rule that fires logs a violation (and posts an
//! alert), its lifecycle is logged too, and the state is rebuilt from the
//! log after a restart.

use crate::common::*;
use aiaudit_ledger::policies::{Record, Status};
use aiaudit_ledger::reports::{self, Format, Request};
use aiaudit_ledger::{Kind, Ledger, LedgerConfig, Principal, Role};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

const RULES: &str = r#"
[[rule]]
id = "disallowed-provider"
description = "A model call went to a provider that is not approved"
severity = "high"
condition = 'ai["gen_ai.provider.name"] == "deepseek"'
tenants = ["acme"]
"#;

fn call(id: &str, tenant: &str, provider: &str) -> Value {
    let mut e = event(id, tenant);
    e["action"] = json!("model.invoke");
    e["ai"] = json!({"gen_ai.provider.name": provider});
    e
}

fn policy_config(data: &Path, rules: &Path) -> LedgerConfig {
    LedgerConfig {
        policy_file: Some(rules.to_path_buf()),
        ..config(data)
    }
}

async fn open_violations(ledger: &Arc<Ledger>, p: &Principal, n: usize) -> Vec<Record> {
    eventually("violations to be logged", || async {
        let v = ledger.violations(p, |_| true).unwrap();
        (v.len() >= n).then_some(v)
    })
    .await
}

/// A webhook receiver on the loopback interface: answers 503 to the first
/// `failures` requests and 200 to the rest, and hands over each JSON body.
async fn webhook(failures: usize) -> (String, mpsc::UnboundedReceiver<Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(failures));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let tx = tx.clone();
            let failures = failures.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut read = BufReader::new(read);
                loop {
                    let mut length = None;
                    loop {
                        let mut line = String::new();
                        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse::<usize>().ok();
                            }
                        }
                    }
                    let mut body = vec![0; length.unwrap_or(0)];
                    if read.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    let fail = failures
                        .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    let status = if fail {
                        "503 Service Unavailable"
                    } else {
                        "200 OK"
                    };
                    let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                    if write.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_violation_is_logged_alerted_acknowledged_and_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let rules = tempfile::tempdir().unwrap();
    let rule_file = rules.path().join("rules.toml");
    std::fs::write(&rule_file, RULES).unwrap();
    // The receiver fails once: the alert is sent again.
    let (url, mut alerts) = webhook(1).await;
    let ledger = open_with(LedgerConfig {
        webhook_url: Some(url),
        ..policy_config(dir.path(), &rule_file)
    })
    .await;
    let auditor = who(Role::Auditor, &["acme"]);
    // One match; a near miss, and a match in a tenant the rule is not for.
    let ix = append(
        &ledger,
        vec![
            call("c1", "acme", "deepseek"),
            call("c2", "acme", "openai"),
            call("c3", "globex", "deepseek"),
        ],
    )
    .await;

    let found = open_violations(&ledger, &auditor, 1).await;
    let v = &found[0];
    assert_eq!(
        (v.tenant.as_str(), v.status, v.rule()),
        ("acme", Status::Open, "disallowed-provider")
    );
    assert_eq!(v.attributes["severity"], "high");
    assert_eq!(v.attributes["event_id"], "c1");
    assert_eq!(v.attributes["event_index"], ix[0]);
    // The violation is an event the ledger appended itself.
    let logged = read(&ledger, &auditor, v.index).await;
    assert_eq!(logged["appended_by"], "ledger");
    assert_eq!(logged["event"]["id"], v.id.as_str());
    assert_eq!(logged["event"]["action"], "policy.violation");
    assert_eq!(logged["event"]["actor"]["id"], "policy:disallowed-provider");

    // Posted as an Alertmanager alert, and retried after the failure.
    let mut next = async || {
        tokio::time::timeout(PATIENCE, alerts.recv())
            .await
            .expect("an alert")
            .unwrap()
    };
    let refused = next().await;
    let posted = next().await;
    assert_eq!(refused, posted);
    assert_eq!(posted[0]["labels"]["alertname"], "AiauditPolicyViolation");
    assert_eq!(posted[0]["labels"]["rule"], "disallowed-provider");
    assert_eq!(posted[0]["labels"]["tenant"], "acme");
    assert_eq!(posted[0]["annotations"]["violation_id"], v.id.as_str());
    assert_eq!(posted[0]["annotations"]["event_id"], "c1");

    // Others' violations are missing, not forbidden; emitters may not look.
    let globex = who(Role::Auditor, &["globex"]);
    assert!(ledger.violations(&globex, |_| true).unwrap().is_empty());
    assert_eq!(
        ledger.violation(&globex, &v.id).unwrap_err().kind,
        Kind::NotFound
    );
    let emitter = who(Role::Emitter, &["acme"]);
    assert_eq!(
        ledger.violations(&emitter, |_| true).unwrap_err().kind,
        Kind::Forbidden
    );

    // Open, acknowledged, resolved: each step logged; nothing leaves resolved.
    let (acked, event_id, index) = ledger
        .transition_violation(
            &auditor,
            &v.id,
            Status::Acknowledged,
            Some("looking".into()),
        )
        .await
        .unwrap();
    assert_eq!(acked.status, Status::Acknowledged);
    assert_eq!(acked.history[0]["note"], "looking");
    assert_eq!(acked.history[0]["by"], "token:auditor-acme");
    let step = read(&ledger, &auditor, index).await;
    assert_eq!(step["appended_by"], "ledger");
    assert_eq!(step["event"]["id"], event_id.as_str());
    assert_eq!(step["event"]["action"], "policy.violation.acknowledged");
    assert_eq!(step["event"]["attributes"]["previous_status"], "open");
    let e = ledger
        .transition_violation(&auditor, &v.id, Status::Acknowledged, None)
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.slug.as_str()),
        (Kind::Conflict, "invalid-transition")
    );
    let e = ledger
        .transition_violation(&globex, &v.id, Status::Resolved, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, Kind::NotFound);
    let (resolved, _, _) = ledger
        .transition_violation(&auditor, &v.id, Status::Resolved, Some("blocked".into()))
        .await
        .unwrap();
    assert_eq!(
        (resolved.status, resolved.history.len()),
        (Status::Resolved, 2)
    );
    for next in [Status::Acknowledged, Status::Resolved] {
        let e = ledger
            .transition_violation(&auditor, &v.id, next, None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, Kind::Conflict);
    }
    let open = ledger
        .violations(&auditor, |r| r.status == Status::Open)
        .unwrap();
    assert!(open.is_empty());

    let text = ledger.metrics_text().await.unwrap();
    for needle in [
        "aiaudit_violations_detected_total{rule=\"disallowed-provider\",severity=\"high\"} 1",
        "aiaudit_violations_resolved_total{severity=\"high\"} 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }

    // The report's violations section: one, resolved, its resolution logged.
    indexed(&ledger).await;
    let now = reports::now_ms();
    let req = Request {
        framework: aiaudit_ledger::reports::privacy::Framework::EuAiAct,
        tenant: "acme".into(),
        from_ms: now - 86_400_000,
        to_ms: now + 86_400_000,
        format: Format::Json,
    };
    let r = ledger.report(&auditor, req, now).await.unwrap();
    assert_eq!(r.violations.total, 1);
    let rule = &r.violations.rules[0];
    assert_eq!(
        (
            rule.rule.as_str(),
            rule.severity.as_str(),
            rule.resolved,
            rule.unresolved
        ),
        ("disallowed-provider", "high", 1, 0)
    );
    assert_eq!(r.violations.resolutions_logged, 1);
    ledger.shutdown().await.unwrap();
}

/// Each violation's id, status and number of steps, newest first.
fn states(ledger: &Arc<Ledger>, auditor: &Principal) -> Vec<(String, Status, usize)> {
    ledger
        .violations(auditor, |_| true)
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.status, r.history.len()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_violations_are_rebuilt_from_the_log() {
    rebuilt_after_a_restart(0, false).await;
}

/// With the search index gone (a deleted file, an index rebuilt after a
/// restore), violations are rebuilt from the entries themselves, read a
/// bundle at a time: here across several bundles, with the ledger's records
/// in the last ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn violations_are_rebuilt_from_entries_the_search_index_has_not_reached() {
    rebuilt_after_a_restart(600, true).await;
}

/// `filler` events, two violations moved on, a restart (on a copy without
/// its search index file when `without_index`): the same violations.
async fn rebuilt_after_a_restart(filler: usize, without_index: bool) {
    let dir = tempfile::tempdir().unwrap();
    let rules = tempfile::tempdir().unwrap();
    let rule_file = rules.path().join("rules.toml");
    std::fs::write(&rule_file, RULES).unwrap();
    let ledger = open_with(policy_config(dir.path(), &rule_file)).await;
    let auditor = who(Role::Auditor, &["acme"]);
    for chunk in 0..filler.div_ceil(200) {
        let events = (0..200.min(filler - 200 * chunk))
            .map(|i| event(&format!("f{chunk}-{i}"), "acme"))
            .collect();
        append(&ledger, events).await;
    }
    append(
        &ledger,
        vec![
            call("c1", "acme", "deepseek"),
            call("c2", "acme", "deepseek"),
        ],
    )
    .await;
    let found = open_violations(&ledger, &auditor, 2).await;
    let (first, second) = (found[1].id.clone(), found[0].id.clone());
    ledger
        .transition_violation(&auditor, &first, Status::Acknowledged, Some("mine".into()))
        .await
        .unwrap();
    ledger
        .transition_violation(&auditor, &second, Status::Resolved, Some("done".into()))
        .await
        .unwrap();
    let before = states(&ledger, &auditor);

    let copy = restart_copy(&ledger, dir.path()).await;
    if without_index {
        let mut removed = 0;
        for e in std::fs::read_dir(copy.path()).unwrap() {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().starts_with("search.sqlite") {
                std::fs::remove_file(e.path()).unwrap();
                removed += 1;
            }
        }
        assert!(
            removed > 0,
            "the search index file is where this test expects it"
        );
    }
    // Rebuilt without any rule file: the state is in the log alone.
    let again = open(copy.path()).await;
    let after = states(&again, &auditor);
    assert_eq!(after, before);
    assert_eq!(
        (after[0].1, after[1].1),
        (Status::Resolved, Status::Acknowledged),
        "newest first"
    );
    let r = again.violation(&auditor, &first).unwrap();
    assert_eq!(r.history[0]["note"], "mine");
    // And the lifecycle goes on from there.
    let (done, _, _) = again
        .transition_violation(&auditor, &first, Status::Resolved, None)
        .await
        .unwrap();
    assert_eq!(done.status, Status::Resolved);
    again.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_rule_file_is_reloaded_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let rules = tempfile::tempdir().unwrap();
    let rule_file = rules.path().join("rules.toml");
    std::fs::write(&rule_file, RULES).unwrap();
    let ledger = open_with(policy_config(dir.path(), &rule_file)).await;
    let auditor = who(Role::Auditor, &["acme"]);
    let added = RULES.to_string()
        + r#"
[[rule]]
id = "no-experiments"
description = "An experimental provider was called"
severity = "low"
condition = 'ai["gen_ai.provider.name"] == "lab"'
"#;
    std::fs::write(&rule_file, added).unwrap();
    // A clearly different modification time, whatever the file system's granularity.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&rule_file)
        .unwrap()
        .set_modified(later)
        .unwrap();
    // Calls keep coming until one is judged by the reloaded rules.
    let mut n = 0;
    let found = eventually("the new rule to fire", || {
        n += 1;
        let ledger = ledger.clone();
        let auditor = auditor.clone();
        async move {
            append(&ledger, vec![call(&format!("lab-{n}"), "acme", "lab")]).await;
            let v = ledger
                .violations(&auditor, |r| r.rule() == "no-experiments")
                .unwrap();
            v.into_iter().next()
        }
    })
    .await;
    assert_eq!(found.attributes["severity"], "low");
    ledger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_file_that_does_not_load_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let rules = tempfile::tempdir().unwrap();
    let rule_file = rules.path().join("rules.toml");
    std::fs::write(&rule_file, "[[rule]]\nid = \"x\"\ncondition = '(('\n").unwrap();
    let e = Ledger::open(policy_config(dir.path(), &rule_file))
        .await
        .err()
        .expect("refused");
    assert!(format!("{e:#}").contains("policy file"), "{e:#}");
}
