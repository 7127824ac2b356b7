//! Incidents (docs/incidents.md): a real Prometheus and Alertmanager open
//! and mitigate one from the ledger's own alert rules; the lifecycle,
//! breach clocks, packs and reviews over HTTP and the CLI; escalation and
//! webhooks; the ledger's own detections; bad input refused with nothing
//! logged.

use crate::harness::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn eventually<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn call(
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", server.url);
    let req = match method {
        "GET" => client().get(url),
        _ => client().post(url).json(&body.unwrap_or(Value::Null)),
    };
    let r = req.bearer_auth(token).send().unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn incident_events(server: &Server, tenant: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for a in [
        "opened",
        "acknowledged",
        "mitigated",
        "resolved",
        "reviewed",
        "reopened",
        "alert",
        "escalated",
        "breach",
        "notified",
        "note",
        "notification",
        "severity_changed",
    ] {
        let v = server.get_json(&format!(
            "/v1/events?tenant={tenant}&action=incident.{a}&limit=1000"
        ));
        out.extend(v["events"].as_array().unwrap().iter().cloned());
    }
    out
}

/// A webhook receiver: records each body, answers `status` (200 unless set).
fn webhook(status: u16) -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                seen.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
            }
            let _ = reader.get_mut().write_all(
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (url, bodies)
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

/// The ledger's own rule AiauditBlobIntegrity fires when a damaged blob is
/// read; a real Prometheus evaluates it, a real Alertmanager posts to the
/// ledger's webhook, the incident opens critical with the seed's deadlines;
/// once the alert resolves, the incident is mitigated.
#[test]
fn an_alert_from_the_rules_opens_an_incident_through_alertmanager_and_resolving_mitigates_it() {
    let am_bin = "prometheus-alertmanager";
    if !have("prometheus") || !have(am_bin) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install prometheus and prometheus-alertmanager"
        );
        skipped(
            "incidents via alertmanager: prometheus or prometheus-alertmanager is not installed",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    // The rules as shipped; only the 15-minute window of this one alert is
    // shortened, so that it also resolves within the test.
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/prometheus/alerts.yml"
    ))
    .unwrap();
    let needle = "increase(aiaudit_blob_integrity_failures_total[15m])";
    assert!(
        rules.contains(needle),
        "AiauditBlobIntegrity changed; update this test"
    );
    let rules_file = dir.path().join("alerts.yml");
    std::fs::write(
        &rules_file,
        rules.replace(
            needle,
            "increase(aiaudit_blob_integrity_failures_total[20s])",
        ),
    )
    .unwrap();

    let am_port = free_port();
    let am_config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &am_config,
        format!(
            "route:\n  receiver: ledger\n  group_by: ['alertname']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             \x20 routes:\n    - matchers: ['component=\"incidents\"']\n      receiver: people\n\
             receivers:\n  - name: people\n  - name: ledger\n    webhook_configs:\n      - url: '{}/v1/incidents/alertmanager'\n        send_resolved: true\n\
             \x20       http_config:\n          authorization:\n            type: Bearer\n            credentials: '{}'\n",
            server.url, server.token
        ),
    )
    .unwrap();
    let _am = Kill(
        Command::new(am_bin)
            .arg(format!("--config.file={}", am_config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prom_port = free_port();
    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\n\
             scrape_configs:\n  - job_name: aiaudit\n    static_configs:\n      - targets: ['{}']\n",
            rules_file.display(),
            server.url.trim_start_matches("http://")
        ),
    )
    .unwrap();
    let _prom = Kill(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Prometheus has seen the counter at 0 before it moves.
    eventually("Prometheus scraping the ledger", 60, || {
        let v: Value = client()
            .get(format!("http://127.0.0.1:{prom_port}/api/v1/query"))
            .query(&[("query", "aiaudit_blob_integrity_failures_total")])
            .send()
            .ok()?
            .json()
            .ok()?;
        (v["data"]["result"][0]["value"][1] == "0").then_some(())
    });

    // A damaged blob, read once.
    let mut e = event("big");
    e["input"] = json!({"content": incompressible(40_000)});
    server.post_events(&[e]);
    server.wait_size(1);
    let view = server.get_json("/v1/events/0?blobs=omit");
    let commitment = {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(view["blobs"][0]["commitment"].as_str().unwrap())
            .unwrap();
        raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let path = data.join("blobs").join(&commitment[..2]).join(&commitment);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(server.get("/v1/events/0").status(), 500);

    let incident = eventually("the incident Alertmanager opens", 120, || {
        let list = server.get_json("/v1/incidents?severity=critical");
        list["incidents"]
            .as_array()?
            .iter()
            .find(|i| i["origin"] == "alertmanager")
            .cloned()
    });
    assert_eq!(incident["tenant"], "aiaudit", "{incident}");
    assert!(
        incident["group_key"]
            .as_str()
            .unwrap()
            .contains("AiauditBlobIntegrity"),
        "{incident}"
    );
    assert_eq!(incident["status"], "open");
    let opened = time::OffsetDateTime::parse(
        incident["opened_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let respond = time::OffsetDateTime::parse(
        incident["respond_by"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(
        respond - opened,
        time::Duration::minutes(5),
        "critical: respond in 5 minutes"
    );
    assert_eq!(
        incident["escalate_at"], incident["opened_at"],
        "critical: escalate at once"
    );
    let id = incident["id"].as_str().unwrap().to_string();
    // Escalated at once, by the ledger, in the log.
    eventually("the escalation", 30, || {
        let i = server.get_json(&format!("/v1/incidents/{id}"));
        (i["escalations"][0]["reason"] == "escalation_time").then_some(())
    });

    let mitigated = eventually("the resolved alert mitigating the incident", 180, || {
        let i = server.get_json(&format!("/v1/incidents/{id}"));
        (i["status"] == "mitigated").then_some(i)
    });
    let last = mitigated["transitions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["action"], "incident.mitigated", "{mitigated}");
    assert!(
        last["skipped_acknowledgement"]
            .as_str()
            .unwrap()
            .contains("resolved before"),
        "{last}"
    );
    assert!(
        mitigated["alerts"].as_array().unwrap().len() >= 2,
        "firing and resolved: {mitigated}"
    );
    let logged = incident_events(&server, "aiaudit");
    for a in [
        "incident.opened",
        "incident.alert",
        "incident.escalated",
        "incident.mitigated",
    ] {
        assert!(
            logged.iter().any(|e| e["action"] == a),
            "{a} not in the log"
        );
    }
    assert!(server.metric("aiaudit_incidents_open{severity=\"critical\"}") == Some(1.0));
}

fn cli(server: &Server, token: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["incident"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--url", &server.url, "--token", token]);
    aiaudit(&all)
}

fn cli_json(server: &Server, token: &str, args: &[&str]) -> Value {
    let out = cli(server, token, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn the_lifecycle_breach_clocks_review_and_pack_are_logged_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("aiaudit.toml");
    std::fs::write(
        &config,
        "[incidents]\nutc_offset = \"+03:00\"\n[incidents.tenants.acme]\njurisdictions = [\"ng\", \"ke\"]\nrole = \"processor\"\norganisation = \"Acme Lending Ltd\"\ndpo_contact = \"dpo@acme.example\"\n",
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let server = Server::start_with(&data, &["--config", cfg]);
    let auditor = create_token(&server, "acme", "auditor", &[]);
    let other = create_token(&server, "globex", "auditor", &[]);
    let emitter = create_token(&server, "acme", "emitter", &[]);
    server.post_events(&[{
        let mut e = event("decision-1");
        e["trace_id"] = json!("4bf92f3577b34da6a3ce929d0e0e4736");
        e
    }]);

    let i = cli_json(
        &server,
        &auditor,
        &[
            "open",
            "--tenant",
            "acme",
            "--title",
            "Loan assistant leaked a customer's statement",
            "--severity",
            "high",
            "--trace-id",
            "4bf92f3577b34da6a3ce929d0e0e4736",
        ],
    );
    let id = i["id"].as_str().unwrap().to_string();
    assert_eq!(
        (
            i["status"].as_str(),
            i["severity"].as_str(),
            i["origin"].as_str()
        ),
        (Some("open"), Some("high"), Some("manual"))
    );
    // Others cannot see it or move it; emitters cannot read incidents.
    assert_eq!(
        call(&server, &other, "GET", &format!("/v1/incidents/{id}"), None).0,
        404
    );
    assert_eq!(
        call(
            &server,
            &other,
            "POST",
            &format!("/v1/incidents/{id}"),
            Some(json!({"status": "acknowledged"}))
        )
        .0,
        404
    );
    assert_eq!(call(&server, &emitter, "GET", "/v1/incidents", None).0, 403);
    assert_eq!(
        call(&server, &other, "GET", "/v1/incidents", None).1["total"],
        0
    );

    // No resolving an unacknowledged incident without saying why.
    let (s, p) = call(
        &server,
        &auditor,
        "POST",
        &format!("/v1/incidents/{id}"),
        Some(json!({"status": "resolved", "note": "n"})),
    );
    assert_eq!(s, 409, "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("skipped_acknowledgement"),
        "{p}"
    );
    cli_json(&server, &auditor, &["ack", &id, "--note", "on it"]);
    cli_json(
        &server,
        &auditor,
        &["severity", &id, "critical", "--note", "customer data"],
    );

    // A breach: Nigeria and Kenya's clocks start at the time of awareness;
    // as a processor, Kenya's 48-hour duty to the controller too.
    let aware = (time::OffsetDateTime::now_utc() - time::Duration::hours(2))
        .replace_nanosecond(0)
        .unwrap();
    let aware_s = aware
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let b = cli_json(
        &server,
        &auditor,
        &[
            "breach",
            &id,
            "--aware-at",
            &aware_s,
            "--detail",
            "nature=a statement sent to the wrong customer",
            "--detail",
            "data_subjects_approx=1",
            "--detail",
            "records_approx=1",
        ],
    );
    let clocks: Vec<(String, Option<String>)> = b["breach"]["clocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["key"].as_str().unwrap().to_string(),
                c["deadline"].as_str().map(str::to_string),
            )
        })
        .collect();
    let at = |h: i64| {
        (aware + time::Duration::hours(h))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let keys: Vec<&str> = clocks.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        keys,
        [
            "ng:authority",
            "ng:controller",
            "ke:authority",
            "ke:controller"
        ],
        "{b}"
    );
    let deadline = |k: &str| clocks.iter().find(|c| c.0 == k).unwrap().1.clone();
    assert_eq!(
        time::OffsetDateTime::parse(
            &deadline("ng:authority").unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .unwrap(),
        time::OffsetDateTime::parse(&at(72), &time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    assert_eq!(
        time::OffsetDateTime::parse(
            &deadline("ke:controller").unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .unwrap(),
        time::OffsetDateTime::parse(&at(48), &time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    assert_eq!(
        deadline("ng:controller"),
        None,
        "NDPA s. 40(1): without undue delay, no figure"
    );
    // Unknown clock and jurisdiction: 400 naming the field; nothing logged.
    let size = server.get_json("/v1/info")["sequenced_size"]
        .as_u64()
        .unwrap();
    let (s, p) = call(
        &server,
        &auditor,
        "POST",
        &format!("/v1/incidents/{id}/notified"),
        Some(json!({"clock": "za:authority"})),
    );
    assert_eq!(
        (s, p["errors"][0]["path"].as_str()),
        (400, Some("clock")),
        "{p}"
    );
    let (s, p) = call(
        &server,
        &auditor,
        "POST",
        "/v1/incidents",
        Some(json!({"tenant": "acme", "title": "t", "severity": "high",
                                                                               "breach": {"jurisdictions": ["xx"]}})),
    );
    assert_eq!(
        (s, p["errors"][0]["path"].as_str()),
        (400, Some("breach.jurisdictions")),
        "{p}"
    );
    let (s, p) = call(
        &server,
        &auditor,
        "POST",
        "/v1/incidents",
        Some(json!({"tenant": "acme", "title": "t", "severity": "severe"})),
    );
    assert_eq!(
        (s, p["errors"][0]["path"].as_str()),
        (400, Some("severity")),
        "{p}"
    );
    assert_eq!(
        server.get_json("/v1/info")["sequenced_size"]
            .as_u64()
            .unwrap(),
        size,
        "refused requests log nothing"
    );

    // What became known later is added; marking twice is refused.
    let (s, p) = call(
        &server,
        &auditor,
        "POST",
        &format!("/v1/incidents/{id}/breach"),
        Some(json!({"jurisdictions": ["za"]})),
    );
    assert_eq!(s, 409, "{p}");
    let added = cli_json(
        &server,
        &auditor,
        &[
            "breach",
            &id,
            "--detail",
            "consequences=possible fraud against one customer",
        ],
    );
    assert_eq!(
        added["breach"]["details"]["consequences"],
        "possible fraud against one customer"
    );
    assert_eq!(
        added["breach"]["details"]["records_approx"], 1,
        "earlier details kept"
    );
    let n = cli_json(
        &server,
        &auditor,
        &[
            "notified",
            &id,
            "--clock",
            "ng:authority",
            "--reference",
            "NDPC/BR/2026/0042",
        ],
    );
    let ng = n["breach"]["clocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "ng:authority")
        .unwrap()
        .clone();
    assert_eq!(
        (
            ng["notified"]["reference"].as_str(),
            ng["notified"]["on_time"].as_bool()
        ),
        (Some("NDPC/BR/2026/0042"), Some(true))
    );
    cli_json(
        &server,
        &auditor,
        &[
            "note",
            &id,
            "--section",
            "impact",
            "--text",
            "One customer's statement was shown to another.",
        ],
    );
    cli_json(
        &server,
        &auditor,
        &[
            "note",
            &id,
            "--section",
            "root_cause",
            "--text",
            "The retrieval filter ignored the account id.",
        ],
    );
    cli_json(
        &server,
        &auditor,
        &["mitigate", &id, "--note", "filter fixed"],
    );
    cli_json(
        &server,
        &auditor,
        &["resolve", &id, "--note", "patched and verified"],
    );

    // The pack: every field the NDPC asks for, prefilled where the log knows.
    let pack_file = dir.path().join("pack.md");
    let out = cli(
        &server,
        &auditor,
        &[
            "pack",
            &id,
            "--jurisdiction",
            "ng",
            "--out",
            pack_file.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pack = std::fs::read_to_string(&pack_file).unwrap();
    assert!(
        pack.contains("a statement sent to the wrong customer"),
        "{pack}"
    );
    assert!(pack.contains("dpo@acme.example"), "{pack}");
    assert!(
        pack.contains("possible fraud against one customer"),
        "details added later: {pack}"
    );
    assert!(pack.contains("NDPC/BR/2026/0042"), "{pack}");
    assert!(pack.contains("[TO BE COMPLETED"), "{pack}");
    let (s, p) = call(
        &server,
        &auditor,
        "GET",
        &format!("/v1/incidents/{id}/pack?jurisdiction=za"),
        None,
    );
    assert_eq!(
        s, 409,
        "a jurisdiction whose clocks this breach did not start: {p}"
    );

    // The review, then reviewed: nothing but reopening after that.
    let review_file = dir.path().join("review.html");
    let out = cli(
        &server,
        &auditor,
        &[
            "review",
            &id,
            "--out",
            review_file.to_str().unwrap(),
            "--done",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let review = std::fs::read_to_string(&review_file).unwrap();
    let r = client()
        .get(format!(
            "{}/v1/incidents/{id}/review?format=html",
            server.url
        ))
        .bearer_auth(&auditor)
        .send()
        .unwrap();
    assert_eq!(
        r.headers()["content-security-policy"],
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
        "a review holds alert text: no script may run in the ledger's origin"
    );
    assert!(
        review.contains("<html") && review.contains("The retrieval filter ignored the account id."),
        "{review}"
    );
    let md = call(
        &server,
        &auditor,
        "GET",
        &format!("/v1/incidents/{id}/review"),
        None,
    )
    .1;
    let md = md.as_str().unwrap().to_string();
    assert!(
        md.contains("| 0 | 2026-11-27T09:14:03.120Z | model.invoke | tester |"),
        "the related event by trace id: {md}"
    );
    // Anchored to a signed checkpoint that covers every event it lists.
    let anchored = md
        .split("## Anchoring")
        .nth(1)
        .expect("an anchoring section");
    let note: Vec<&str> = anchored
        .split("```")
        .nth(1)
        .unwrap()
        .trim()
        .lines()
        .collect();
    assert_eq!(note[0], "aiaudit.local/log");
    let covered: u64 = note[1].parse().unwrap();
    let last = server.get_json(&format!("/v1/incidents/{id}"))["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["index"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(
        covered > last,
        "checkpoint of {covered} entries, last event at {last}"
    );
    assert!(
        anchored.contains(&format!("| {last} |")),
        "the last event's inclusion proof"
    );
    // The same leaf and proof the log serves for that checkpoint, on the
    // last event's own row.
    let served = server.get_json(&format!("/v1/proof/inclusion?index={last}&size={covered}"));
    let hex = |b64: &str| -> String {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        raw.iter().map(|b| format!("{b:02x}")).collect()
    };
    let row = anchored
        .lines()
        .find(|l| l.starts_with(&format!("| {last} |")))
        .expect("a row for the last event");
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(
        cells[2].trim_matches('`'),
        hex(served["leaf_hash"].as_str().unwrap()),
        "{row}"
    );
    for h in served["proof"].as_array().unwrap() {
        assert!(
            cells[3].contains(&hex(h.as_str().unwrap())),
            "proof hash of {last}: {row}"
        );
    }
    let (s, p) = call(
        &server,
        &auditor,
        "POST",
        &format!("/v1/incidents/{id}"),
        Some(json!({"status": "resolved", "note": "again"})),
    );
    assert_eq!(s, 409, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("only be reopened"),
        "{p}"
    );

    // Callers cannot imitate the ledger's incident records.
    let mut forged = event("forged");
    forged["action"] = json!("incident.resolved");
    let r = server.post(
        "/v1/events",
        "application/json",
        serde_json::to_vec(&json!([forged])).unwrap(),
    );
    assert_eq!(r.status(), 403);

    let before = server.get_json(&format!("/v1/incidents/{id}"));
    assert_eq!(before["status"], "reviewed");
    // Raised to critical while acknowledged, it may also have been escalated
    // (escalate at once) if the watcher ticked before it was mitigated.
    let actions: Vec<&str> = before["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["action"].as_str().unwrap())
        .filter(|a| *a != "incident.escalated")
        .collect();
    assert_eq!(
        actions,
        [
            "incident.opened",
            "incident.acknowledged",
            "incident.severity_changed",
            "incident.breach",
            "incident.breach_details",
            "incident.notified",
            "incident.note",
            "incident.note",
            "incident.mitigated",
            "incident.resolved",
            "incident.reviewed"
        ]
    );
    assert!(before["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["by"].as_str().unwrap().starts_with("token:")));
    let metrics = server.get("/metrics").text().unwrap();
    assert!(
        metrics.contains("aiaudit_incidents_resolved_total{severity=\"critical\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aiaudit_incident_time_to_acknowledge_seconds_count{severity=\"high\"} 1"),
        "{metrics}"
    );

    // Rebuilt from the log alone after a restart.
    server.stop();
    let server = Server::start_with(&data, &["--config", cfg]);
    let without_countdown = |mut v: Value| {
        for c in v["breach"]["clocks"].as_array_mut().unwrap() {
            c.as_object_mut().unwrap().remove("seconds_left");
        }
        v
    };
    let after = without_countdown(server.get_json(&format!("/v1/incidents/{id}")));
    let before = without_countdown(before);
    for k in [
        "status",
        "severity",
        "respond_by",
        "escalate_at",
        "transitions",
        "breach",
        "sections",
    ] {
        assert_eq!(after[k], before[k], "{k}");
    }
}

#[test]
fn escalations_webhooks_and_the_ledgers_own_detections() {
    let dir = tempfile::tempdir().unwrap();
    let (json_url, json_bodies) = webhook(200);
    let (slack_url, slack_bodies) = webhook(200);
    let (dead_url, _) = webhook(503);
    let config = dir.path().join("aiaudit.toml");
    std::fs::write(
        &config,
        format!(
            "[incidents]\nrefused_burst_threshold = 5\n\
             [[incidents.webhooks]]\nurl = \"{json_url}\"\nname = \"oncall\"\n\
             [[incidents.webhooks]]\nurl = \"{dead_url}\"\nname = \"dead\"\nseverities = [\"low\"]\n\
             [[incidents.escalation_webhooks]]\nurl = \"{slack_url}\"\nformat = \"slack\"\n"
        ),
    )
    .unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    // A critical incident escalates at once: logged, announced on both.
    let (s, i) = call(
        &server,
        &server.token,
        "POST",
        "/v1/incidents",
        Some(json!({"tenant": "acme", "title": "Model serving PII", "severity": "critical"})),
    );
    assert_eq!(s, 201, "{i}");
    let id = i["id"].as_str().unwrap().to_string();
    let escalated = eventually("the escalation", 30, || {
        let i = server.get_json(&format!("/v1/incidents/{id}"));
        (i["escalations"].as_array()?.len() == 1).then_some(i)
    });
    assert_eq!(escalated["escalations"][0]["reason"], "escalation_time");
    eventually("the JSON webhook", 30, || {
        let b = json_bodies.lock().unwrap();
        (b.iter()
            .any(|x| x["kind"] == "opened" && x["incident"]["id"] == id.as_str())
            && b.iter().any(|x| x["kind"] == "escalated"))
        .then_some(())
    });
    let text = eventually("the Slack-format escalation", 30, || {
        let b = slack_bodies.lock().unwrap();
        b.iter()
            .find_map(|x| x["text"].as_str().map(str::to_string))
    });
    assert!(
        text.contains("[CRITICAL]")
            && text.contains("ESCALATED")
            && text.contains("Model serving PII"),
        "{text}"
    );
    assert!(
        server.metric(
            "aiaudit_incident_escalations_total{severity=\"critical\",reason=\"escalation_time\"}"
        ) == Some(1.0)
    );
    // Each attempt is on the incident; the URL (a secret for Slack) is not.
    let attempts = eventually("the logged attempts", 30, || {
        let i = server.get_json(&format!("/v1/incidents/{id}"));
        let n = i["notifications"].as_array()?.clone();
        (n.len() >= 3).then_some(n)
    });
    assert!(attempts.iter().all(|a| a["ok"] == true), "{attempts:?}");
    assert!(!serde_json::to_string(&attempts).unwrap().contains("/hook"));

    // A low incident goes to the failing hook too: 5 attempts, then given up.
    let (_, low) = call(
        &server,
        &server.token,
        "POST",
        "/v1/incidents",
        Some(json!({"tenant": "acme", "title": "Stale model card", "severity": "low"})),
    );
    let low_id = low["id"].as_str().unwrap().to_string();
    let failed = eventually("five failed attempts", 90, || {
        let i = server.get_json(&format!("/v1/incidents/{low_id}"));
        let n: Vec<Value> = i["notifications"]
            .as_array()?
            .iter()
            .filter(|a| a["channel"] == "dead")
            .cloned()
            .collect();
        (n.len() == 5).then_some(n)
    });
    assert!(
        failed
            .iter()
            .all(|a| a["ok"] == false && a["result"] == "status 503"),
        "{failed:?}"
    );
    eventually("the failure metric", 10, || {
        (server.metric("aiaudit_incident_notifications_failed_total") == Some(1.0)).then_some(())
    });

    // A burst of refused requests from one credential: an incident of the
    // ledger's own, seen by admins of every tenant, not by acme's auditor.
    // A guesser changes the token each time: still one burst.
    for n in 0..5 {
        let r = client()
            .get(format!("{}/v1/tokens", server.url))
            .bearer_auth(format!("aiaudit_guessed_{n}"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let burst = eventually("the burst incident", 30, || {
        let list = server.get_json("/v1/incidents?tenant=aiaudit");
        list["incidents"]
            .as_array()?
            .iter()
            .find(|i| i["origin"] == "ledger")
            .cloned()
    });
    assert_eq!(burst["severity"], "high");
    assert!(
        burst["title"]
            .as_str()
            .unwrap()
            .contains("refused requests"),
        "{burst}"
    );
    assert!(
        !burst.to_string().contains("aiaudit_guessed"),
        "never the secret"
    );
    let auditor = create_token(&server, "acme", "auditor", &[]);
    assert_eq!(
        call(
            &server,
            &auditor,
            "GET",
            &format!("/v1/incidents/{}", burst["id"].as_str().unwrap()),
            None
        )
        .0,
        404
    );
}

#[test]
fn malformed_alertmanager_bodies_and_out_of_order_transitions_are_refused_with_nothing_logged() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let token = server.token.clone();
    let good = json!({"version": "4", "groupKey": "{}:{alertname=\"X\"}", "status": "firing", "receiver": "ledger",
                      "commonLabels": {"alertname": "X", "tenant": "acme"},
                      "alerts": [{"status": "firing", "labels": {"alertname": "X", "severity": "warning"},
                                  "startsAt": "2026-12-03T10:00:00Z"}]});
    let size = server.get_json("/v1/info")["sequenced_size"]
        .as_u64()
        .unwrap();
    let cases = [
        ("/version", json!("3"), "version"),
        ("/groupKey", json!(7), "groupKey"),
        ("/alerts", json!([]), "alerts"),
        (
            "/alerts/0/labels/severity",
            json!("apocalyptic"),
            "alerts[0].labels.severity",
        ),
        (
            "/alerts/0/startsAt",
            json!("yesterday"),
            "alerts[0].startsAt",
        ),
        (
            "/commonLabels/tenant",
            json!("no such tenant!"),
            "commonLabels.tenant",
        ),
    ];
    for (pointer, value, field) in cases {
        let mut body = good.clone();
        *body.pointer_mut(pointer).unwrap() = value;
        let (s, p) = call(
            &server,
            &token,
            "POST",
            "/v1/incidents/alertmanager",
            Some(body),
        );
        assert_eq!(s, 400, "{field}: {p}");
        assert_eq!(p["errors"][0]["path"], field, "{p}");
    }
    let r = client()
        .post(format!("{}/v1/incidents/alertmanager", server.url))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    // A resolved notification for a group with no incident: 404, nothing logged.
    let mut resolved = good.clone();
    resolved["status"] = json!("resolved");
    assert_eq!(
        call(
            &server,
            &token,
            "POST",
            "/v1/incidents/alertmanager",
            Some(resolved.clone())
        )
        .0,
        404
    );
    assert_eq!(
        server.get_json("/v1/info")["sequenced_size"]
            .as_u64()
            .unwrap(),
        size
    );

    let (s, r) = call(
        &server,
        &token,
        "POST",
        "/v1/incidents/alertmanager",
        Some(good.clone()),
    );
    assert_eq!((s, r["result"].as_str()), (200, Some("opened")), "{r}");
    assert_eq!(
        r["incident"]["severity"], "medium",
        "warning maps to medium"
    );
    assert_eq!(r["incident"]["tenant"], "acme");
    let id = r["incident"]["id"].as_str().unwrap().to_string();
    let (_, r) = call(
        &server,
        &token,
        "POST",
        "/v1/incidents/alertmanager",
        Some(good.clone()),
    );
    assert_eq!(
        (r["result"].as_str(), r["incident"]["id"].as_str()),
        (Some("updated"), Some(id.as_str()))
    );
    let size = server.get_json("/v1/info")["sequenced_size"]
        .as_u64()
        .unwrap();
    for (body, status) in [
        (json!({"status": "reviewed"}), 409),
        (json!({"status": "reopened"}), 409),
        (json!({"status": "open"}), 400),
        (json!({"status": "closed"}), 400),
        (json!({"severity": "urgent"}), 400),
        (json!({}), 400),
        (json!({"status": "resolved"}), 400),
        (json!({"status": "acknowledged", "note": 5}), 400),
    ] {
        let (s, p) = call(
            &server,
            &token,
            "POST",
            &format!("/v1/incidents/{id}"),
            Some(body.clone()),
        );
        assert_eq!(s, status, "{body}: {p}");
        assert_eq!(
            p["type"]
                .as_str()
                .map(|t| t.starts_with("urn:aiaudit:problem:")),
            Some(true),
            "{p}"
        );
    }
    for (q, name) in [
        ("status=closed", "status"),
        ("severity=urgent", "severity"),
        ("limit=0", "limit"),
        ("colour=red", "colour"),
    ] {
        let (s, p) = call(&server, &token, "GET", &format!("/v1/incidents?{q}"), None);
        assert_eq!((s, p["parameter"].as_str()), (400, Some(name)), "{q}: {p}");
    }
    assert_eq!(
        server.get_json("/v1/info")["sequenced_size"]
            .as_u64()
            .unwrap(),
        size,
        "nothing half-written"
    );
}

/// A generated tenant history (two AI systems, erasure requests, one
/// completed, a breach notified on time in Nigeria and not in Kenya), and
/// the report of each data-protection framework checked field by field.
#[test]
fn ndpa_popia_and_kenya_reports_are_drawn_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("aiaudit.toml");
    std::fs::write(
        &config,
        "[compliance]\nerasure_target_days = 30\n[compliance.tenants.acme]\norganisation = \"Acme Lending Ltd\"\n\
         dpo_contact = \"dpo@acme.example\"\nregistration = \"NDPC-REG-0042\"\ndata_residency = \"Lagos, Nigeria\"\n\
         [compliance.tenants.acme.dpias]\nloan-assistant = \"DPIA-2026-004\"\n",
    )
    .unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let now = time::OffsetDateTime::now_utc();
    let ts = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let mut events = Vec::new();
    for (i, system) in ["loan-assistant", "loan-assistant", "kyc-checker"]
        .iter()
        .enumerate()
    {
        let mut e = event(&format!("ai-{i}"));
        e["source"] = json!({"name": system});
        e["time"] = json!(ts(now - time::Duration::hours(10)));
        events.push(e);
    }
    for (i, who) in ["customer-1", "customer-2"].iter().enumerate() {
        let mut e = event(&format!("erasure-request-{i}"));
        e["source"] = json!({"name": "privacy-desk"});
        e["action"] = json!("data_subject.erasure_requested");
        e["subject"] = json!(who);
        e["time"] = json!(ts(now - time::Duration::hours(5)));
        events.push(e);
    }
    server.post_events(&events);
    let (s, erased) = call(
        &server,
        &server.token,
        "POST",
        "/v1/erase",
        Some(json!({"tenant": "acme", "subject": "customer-1"})),
    );
    assert_eq!(s, 200, "{erased}");
    let (_, i) = call(
        &server,
        &server.token,
        "POST",
        "/v1/incidents",
        Some(
            json!({"tenant": "acme", "title": "Statements mailed to the wrong customers", "severity": "high",
                    "breach": {"jurisdictions": ["ng", "ke", "za"], "aware_at": ts(now - time::Duration::hours(3))}}),
        ),
    );
    let id = i["id"].as_str().unwrap();
    let (s, _) = call(
        &server,
        &server.token,
        "POST",
        &format!("/v1/incidents/{id}/notified"),
        Some(json!({"clock": "ng:authority", "reference": "NDPC/BR/7"})),
    );
    assert_eq!(s, 200);
    server.wait_size(
        server.get_json("/v1/info")["sequenced_size"]
            .as_u64()
            .unwrap(),
    );

    let report = |framework: &str| -> Value {
        eventually("the index to catch up", 30, || {
            let (s, r) = call(
                &server,
                &server.token,
                "GET",
                &format!("/v1/reports/compliance?tenant=acme&framework={framework}"),
                None,
            );
            assert_eq!(s, 200, "{r}");
            (r["privacy"]["erasure"]["requests"] == 2
                && r["privacy"]["breaches"]
                    .as_array()
                    .is_some_and(|b| !b.is_empty()))
            .then_some(r)
        })
    };
    for (framework, code, breach_ref) in [
        ("ndpa", "ng", "NDPA 2023 s. 40"),
        ("popia", "za", "POPIA s. 22"),
        ("kenya-dpa", "ke", "Data Protection Act 2019 s. 43"),
    ] {
        let r = report(framework);
        let p = &r["privacy"];
        assert_eq!(r["framework"], framework);
        assert!(
            p["law"]["breaches"]
                .as_str()
                .unwrap()
                .starts_with(breach_ref),
            "{p}"
        );
        assert_eq!(
            (p["organisation"].as_str(), p["dpo_contact"].as_str()),
            (Some("Acme Lending Ltd"), Some("dpo@acme.example"))
        );
        let systems: Vec<(String, u64, Option<String>)> = p["processing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["system"].as_str().unwrap().to_string(),
                    s["events"].as_u64().unwrap(),
                    s["dpia"].as_str().map(str::to_string),
                )
            })
            .collect();
        assert!(
            systems.contains(&("loan-assistant".into(), 2, Some("DPIA-2026-004".into()))),
            "{systems:?}"
        );
        assert!(
            systems.contains(&("kyc-checker".into(), 1, None)),
            "{systems:?}"
        );
        assert!(
            systems.iter().all(|s| !s.0.starts_with("aiaudit")),
            "the ledger's own records are not processing"
        );
        let e = &p["erasure"];
        assert_eq!(
            (
                e["requests"].as_u64(),
                e["completed"].as_u64(),
                e["pending"].as_u64(),
                e["erasures_logged"].as_u64()
            ),
            (Some(2), Some(1), Some(1), Some(1)),
            "{e}"
        );
        let done = e["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["completed_at"].is_string())
            .unwrap();
        assert_eq!(done["subject_tag"], erased["subject_tag"], "{e}");
        assert!(
            (done["hours"].as_f64().unwrap() - 5.0).abs() < 0.2,
            "requested 5 h before the erasure: {done}"
        );
        let clocks = p["breaches"][0]["clocks"].as_array().unwrap();
        assert!(
            clocks
                .iter()
                .all(|c| c["key"].as_str().unwrap().starts_with(code)),
            "{clocks:?}"
        );
        let authority = clocks
            .iter()
            .find(|c| c["key"] == format!("{code}:authority"))
            .unwrap();
        let expected = if code == "ng" { "on time" } else { "pending" };
        assert_eq!(authority["outcome"], expected, "{authority}");
        let findings = r["findings"].to_string();
        assert!(
            findings.contains("kyc-checker has no DPIA reference"),
            "{findings}"
        );
        assert!(
            !findings.contains("no data protection officer"),
            "{findings}"
        );
    }
    let (_, md) = call(
        &server,
        &server.token,
        "GET",
        "/v1/reports/compliance?tenant=acme&framework=ndpa&format=md",
        None,
    );
    let md = md.as_str().unwrap();
    assert!(
        md.contains("Annex: figures for the NDPC annual Compliance Audit Return"),
        "{md}"
    );
    assert!(md.contains("| NDPC registration | NDPC-REG-0042 |"), "{md}");
    let (s, p) = call(
        &server,
        &server.token,
        "GET",
        "/v1/reports/compliance?tenant=acme&framework=gdpr",
        None,
    );
    assert_eq!((s, p["parameter"].as_str()), (400, Some("framework")));
    // The CLI asks for the same.
    let out = aiaudit(&[
        "report",
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--tenant",
        "acme",
        "--framework",
        "kenya-dpa",
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(r["framework"], "kenya-dpa");
}

/// Breach clocks act on their own: a reminder at the configured lead time
/// before a deadline, once; a deadline passed with no notification logged
/// as missed, counted and sent to the escalation webhook; a notification
/// recorded after it judged late.
#[test]
fn breach_clocks_remind_once_and_record_a_missed_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (slack_url, slack_bodies) = webhook(200);
    let config = dir.path().join("aiaudit.toml");
    std::fs::write(
        &config,
        format!(
            "[incidents]\nbreach_reminders = [\"100h\"]\n\
             [[incidents.escalation_webhooks]]\nurl = \"{slack_url}\"\nformat = \"slack\"\n"
        ),
    )
    .unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let now = time::OffsetDateTime::now_utc();
    let ts = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let open = |title: &str, aware: time::OffsetDateTime| -> String {
        let (s, i) = call(
            &server,
            &server.token,
            "POST",
            "/v1/incidents",
            Some(
                json!({"tenant": "acme", "title": title, "severity": "medium",
                        "breach": {"jurisdictions": ["ng"], "aware_at": ts(aware)}}),
            ),
        );
        assert_eq!(s, 201, "{i}");
        i["id"].as_str().unwrap().to_string()
    };
    let actions = |id: &str, action: &str| -> Vec<Value> {
        server.get_json(&format!("/v1/incidents/{id}"))["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["action"] == action)
            .cloned()
            .collect()
    };
    // Known 73 hours ago: the NDPC's 72 hours are over.
    let late = open(
        "Backups readable by a contractor",
        now - time::Duration::hours(73),
    );
    let missed = eventually("the missed deadline", 30, || {
        let m = actions(&late, "incident.breach_deadline_missed");
        (!m.is_empty()).then_some(m)
    });
    assert_eq!(missed[0]["clock"], "ng:authority");
    assert_eq!(missed[0]["by"], "aiaudit:incidents");
    eventually("the missed-deadline metric", 10, || {
        (server.metric("aiaudit_breach_deadlines_missed_total{jurisdiction=\"ng\"}") == Some(1.0))
            .then_some(())
    });
    // Known now: 72 hours left, inside the 100-hour lead: one reminder.
    let fresh = open("Prompt log exposed", now);
    let reminder = eventually("the reminder", 30, || {
        let r = actions(&fresh, "incident.breach_reminder");
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(
        (
            reminder[0]["clock"].as_str(),
            reminder[0]["lead_seconds"].as_u64()
        ),
        (Some("ng:authority"), Some(360_000))
    );
    let texts = eventually("both on the escalation webhook", 30, || {
        let b = slack_bodies.lock().unwrap();
        let t: Vec<String> = b
            .iter()
            .filter_map(|x| x["text"].as_str().map(str::to_string))
            .collect();
        (t.iter()
            .any(|x| x.contains("deadline MISSED: ng:authority"))
            && t.iter()
                .any(|x| x.contains("breach notification to ng:authority due")))
        .then_some(t)
    });
    assert!(texts.iter().all(|t| !t.contains(&slack_url)), "{texts:?}");
    // Once: a third breach's reminder comes and goes, the first stays alone.
    let third = open("Model cache copied off-site", now);
    eventually("the third reminder", 30, || {
        (!actions(&third, "incident.breach_reminder").is_empty()).then_some(())
    });
    assert_eq!(actions(&fresh, "incident.breach_reminder").len(), 1);
    assert_eq!(actions(&late, "incident.breach_deadline_missed").len(), 1);
    // Notified after the deadline: recorded, and judged late.
    let (s, i) = call(
        &server,
        &server.token,
        "POST",
        &format!("/v1/incidents/{late}/notified"),
        Some(json!({"clock": "ng:authority", "reference": "NDPC/LATE/1"})),
    );
    assert_eq!(s, 200, "{i}");
    let clock = i["breach"]["clocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "ng:authority")
        .unwrap()
        .clone();
    assert_eq!(
        (
            clock["notified"]["on_time"].as_bool(),
            clock["overdue"].as_bool()
        ),
        (Some(false), Some(false)),
        "{clock}"
    );
    let (_, r) = call(
        &server,
        &server.token,
        "GET",
        "/v1/reports/compliance?tenant=acme&framework=ndpa",
        None,
    );
    let outcomes: Vec<&str> = r["privacy"]["breaches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["clocks"][0]["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes.contains(&"late") && outcomes.contains(&"pending"),
        "{outcomes:?}"
    );
}
