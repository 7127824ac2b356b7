//! The auditor dashboard (`/`, docs/dashboard.md): its assets and headers
//! over HTTP, then the app itself in Debian's Chromium driven by
//! playwright-core (tests/dashboard/run.mjs): sign in, overview, search,
//! an event verified in the browser, an incident with its breach clock,
//! tampered proofs failing, offline reload, at phone and desktop sizes.

use crate::harness::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What the browser loads before and while showing the overview.
const SHELL: &[&str] = &[
    "/",
    "/app.js",
    "/app.css",
    "/manifest.webmanifest",
    "/icon.svg",
    "/icon-192.png",
    "/js/api.js",
    "/js/ui.js",
    "/js/verify.js",
    "/js/signin.js",
    "/js/overview.js",
    "/js/chart.js",
    "/js/events.js",
    "/js/event.js",
    "/js/sections.js",
    "/js/incidents.js",
    "/js/violations.js",
    "/js/admin.js",
    "/vendor/uplot/uPlot.iife.min.js",
    "/vendor/uplot/uPlot.min.css",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dashboard_event(i: usize) -> Value {
    let mut e = event(&format!("d{i}"));
    e["actor"]["id"] = json!(format!("agent-{}", i % 3));
    e["action"] = json!(["model.invoke", "tool.call"][i % 2]);
    let model = ["claude-x", "claude-y"][i % 2];
    e["ai"] = json!({"gen_ai.provider.name": "anthropic", "gen_ai.request.model": model});
    e["outcome"] = json!({"status": "success"});
    e["input"] = json!({"content": format!("prompt {i}")});
    e
}

#[test]
fn dashboard_assets_are_served_without_a_token_with_strict_headers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut gzipped_total = 0;
    for path in SHELL {
        let r = client()
            .get(format!("{}{path}", server.url))
            .header("accept-encoding", "gzip")
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
        assert_eq!(h["x-content-type-options"], "nosniff");
        if !path.ends_with(".png") {
            assert_eq!(h["content-encoding"], "gzip", "{path}");
        }
        let etag = h["etag"].to_str().unwrap().to_string();
        gzipped_total += r.bytes().unwrap().len();
        // Revalidation is cheap: the ETag answers 304.
        let again = client()
            .get(format!("{}{path}", server.url))
            .header("if-none-match", &etag)
            .send()
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    // The service worker is fetched on the first load too.
    gzipped_total += client()
        .get(format!("{}/sw.js", server.url))
        .header("accept-encoding", "gzip")
        .send()
        .unwrap()
        .bytes()
        .unwrap()
        .len();
    println!("first-load shell, gzip: {gzipped_total} bytes");
    // The budget of docs/dashboard.md: under 100 KB compressed.
    assert!(gzipped_total < 100_000, "{gzipped_total} bytes");

    let sw = client()
        .get(format!("{}/sw.js", server.url))
        .send()
        .unwrap();
    assert_eq!(sw.headers()["cache-control"], "no-cache");
    assert!(sw.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let manifest: Value = client()
        .get(format!("{}/manifest.webmanifest", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(manifest["display"], "standalone");
    assert_eq!(manifest["start_url"], "/#/overview");
    // Unknown paths are still the API's problem+json 404.
    let missing = client()
        .get(format!("{}/nope.js", server.url))
        .send()
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
}

/// The browser's verifier module against the Go reference vectors, under
/// Node's WebCrypto (tests/dashboard/verify.test.mjs), and the app's pure
/// pieces (tests/dashboard/ui.test.mjs).
#[test]
fn dashboard_verifier_matches_reference_vectors() {
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        assert!(std::env::var_os("CI").is_none(), "CI needs node");
        skipped("node not installed");
        return;
    }
    let out = Command::new("node")
        .arg("--test")
        .arg(root().join("tests/dashboard/verify.test.mjs"))
        .arg(root().join("tests/dashboard/ui.test.mjs"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("# pass 15") && text.contains("# fail 0"),
        "{text}"
    );
}

/// Sends one event through `aiaudit emit` signed by a newly registered emitter.
fn emit_signed(server: &Server, dir: &Path) {
    let key = dir.join("edge.key");
    let run = |args: &[&str]| {
        let out = aiaudit(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
    };
    let vkey = run(&[
        "emitter",
        "keygen",
        "--name",
        "edge",
        "--out",
        key.to_str().unwrap(),
    ]);
    run(&[
        "emitter",
        "register",
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--name",
        "edge",
        "--public-key",
        vkey.trim(),
    ]);
    let file = dir.join("signed.ndjson");
    std::fs::write(&file, format!("{}\n", event("signed-0"))).unwrap();
    run(&[
        "emit",
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--signing-key",
        key.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
}

/// The screenshots docs/dashboard.md shows (`](screenshots/<name>)`).
fn documented_screenshots() -> Vec<String> {
    let doc = std::fs::read_to_string(root().join("docs/dashboard.md")).unwrap();
    doc.split("](screenshots/")
        .skip(1)
        .filter_map(|s| s.split_once(')'))
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Whether the browser test can run here; under CI it must.
fn browser_available() -> bool {
    let chromium = Path::new("/usr/bin/chromium").exists();
    let modules = root().join("tests/dashboard/node_modules");
    let playwright = ["playwright-core", "axe-core"]
        .iter()
        .all(|m| modules.join(m).exists());
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if chromium && playwright && node {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI needs chromium, node, playwright-core and axe-core: \
         apt-get install chromium && npm ci --prefix tests/dashboard"
    );
    skipped("needs /usr/bin/chromium, node and tests/dashboard/node_modules (npm ci --prefix tests/dashboard)");
    false
}

#[test]
fn dashboard_in_chromium() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Its counts are exact: reads are not logged here (triage.mjs runs
    // with the default, and checks the access records).
    let server = Server::start_with(dir.path(), NO_ACCESS_LOG);
    // More than one page of results (50), so endless scroll has to fetch more.
    let events: Vec<Value> = (0..120).map(dashboard_event).collect();
    server.post_events(&events);
    // And one signed by a registered emitter (index 120), for the signature status.
    emit_signed(&server, dir.path());
    server.wait_size(121);
    // And one whose content is stored beside the log (index 121).
    let mut large = dashboard_event(121);
    // An actor of its own, so the filtered counts below stay as they were.
    large["actor"]["id"] = json!("agent-large");
    large["input"] =
        json!({"content": format!("LARGE-CONTENT {}", "a retrieved passage ".repeat(4000))});
    server.post_events(&[large]);
    server.wait_size(122);
    // An incident marked a breach in Nigeria: its opening and its breach are
    // logged by the ledger itself (indexes 122 and 123). The title would be
    // markup if the page ever parsed it.
    let title = "Loan assistant shows another customer's record <img src=x id=injected>";
    let r = server
        .authorized(client().post(format!("{}/v1/incidents", server.url)))
        .json(
            &json!({"tenant": "acme", "title": title, "severity": "high",
                      "breach": {"jurisdictions": ["ng"]}}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
    let incident: Value = r.json().unwrap();
    let ng = incident["breach"]["clocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "ng:authority")
        .expect("an ng:authority clock")
        .clone();
    let reference = ng["reference"].as_str().unwrap();
    assert!(reference.starts_with("NDPA"), "{ng}");
    server.wait_size(124);
    let info = server.get_json("/v1/info");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.get_json("/v1/info")["index"]["indexed_size"]
        .as_u64()
        .unwrap()
        < 124
    {
        assert!(
            std::time::Instant::now() < deadline,
            "index never caught up"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A binary built without the dashboard would fail every step below; say so once.
    let shell = client().get(&server.url).send().unwrap();
    assert_eq!(
        shell.status(),
        200,
        "GET / on {BIN}: is it built from this tree?"
    );
    // Emptied first: an earlier run's screenshots must not satisfy this one.
    let shots = root().join("target/dashboard-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();

    let mut child = Command::new("node")
        .arg(root().join("tests/dashboard/run.mjs"))
        .env("DASH_URL", &server.url)
        .env("DASH_TOKEN", &server.token)
        .env("DASH_VKEY", info["verifier_key"].as_str().unwrap())
        .env("DASH_SIZE", "124")
        .env("DASH_SIGNED", "120")
        .env("DASH_LARGE", "121")
        .env("DASH_LARGE_START", "LARGE-CONTENT")
        .env("DASH_INCIDENT", incident["id"].as_str().unwrap())
        .env("DASH_INCIDENT_TITLE", title)
        .env("DASH_NG_DEADLINE", ng["deadline"].as_str().unwrap())
        .env("DASH_NG_REFERENCE", reference)
        .env("DASH_SCREENSHOTS", &shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("running node");
    let mut stdin = child.stdin.take().unwrap();
    let mut out = Vec::new();
    let mut server = Some(server);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        println!("run.mjs: {line}");
        // The script asks for the ledger to go away, to test offline use for real.
        if line == "STOP_SERVER" {
            if let Some(s) = server.take() {
                s.stop();
            }
            writeln!(stdin, "stopped").unwrap();
        }
        out.push(line);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "run.mjs failed: {status}");
    let out = out.join("\n");
    for step in [
        "PASS desktop sign-in",
        "PASS desktop overview",
        "PASS installable",
        "PASS desktop search",
        "PASS desktop endless scroll",
        "PASS desktop event verified",
        "PASS emitter signature shown",
        "PASS large content loads on request, verified",
        "PASS phone sign-in",
        "PASS phone overview",
        "PASS phone event verified",
        "PASS phone fits 360px",
        "PASS incidents listed with severity, filters and breach mark",
        "PASS incident shows the ng:authority clock with its deadline and NDPA reference",
        "PASS regulator pack downloaded with the token",
        "PASS phone incident fits 360px, accessible",
        "PASS all 124 proofs verify in the browser",
        "PASS tampered inclusion proof fails",
        "PASS tampered checkpoint fails",
        "PASS wrong pinned key fails",
        "PASS export downloaded",
        "PASS saved answers bound to their token, dropped on erasure and sign-out",
        "PASS desktop offline reload",
        "PASS phone offline reload",
        "PASS no console errors",
    ] {
        assert!(out.contains(step), "missing {step:?} in:\n{out}");
    }
    for shot in [
        "desktop-overview.png",
        "desktop-event.png",
        "desktop-incident.png",
        "phone-overview.png",
        "phone-event.png",
        "tampered.png",
        "desktop-offline.png",
    ] {
        assert!(shots.join(shot).exists(), "{shot}");
    }
}

/// Violation triage and the overview's server-side history
/// (tests/dashboard/triage.mjs): a ledger whose policy finds 57 high and 4
/// medium violations among events of the last minutes.
#[test]
fn dashboard_triage_in_chromium() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, format!("{DEEPSEEK_RULE}{TOKEN_BUDGET_RULE}")).unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--policy-file", rules.to_str().unwrap()],
    );
    let (high, medium, plain) = (57, 4, 9);
    let now = time::OffsetDateTime::now_utc() - time::Duration::minutes(2);
    let at = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let events: Vec<Value> = (0..high + medium + plain)
        .map(|i| {
            let mut e = dashboard_event(i);
            e["time"] = json!(at);
            if i < high {
                e["ai"]["gen_ai.provider.name"] = json!("deepseek");
            } else if i < high + medium {
                e["ai"]["gen_ai.usage.input_tokens"] = json!(5000);
            }
            e
        })
        .collect();
    server.post_events(&events);
    // Every violation logged and indexed: the events plus one per violation.
    let total = (2 * (high + medium) + plain) as u64;
    server.wait_size(total);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server.get_json("/v1/info")["index"]["indexed_size"].as_u64() < Some(total)
        || server.get_json("/v1/violations?limit=1")["total"] != high + medium
    {
        assert!(
            std::time::Instant::now() < deadline,
            "violations never indexed"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let info = server.get_json("/v1/info");
    // Apart from dashboard_in_chromium's, which it empties.
    let shots = root().join("target/triage-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg(root().join("tests/dashboard/triage.mjs"))
        .env("DASH_URL", &server.url)
        .env("DASH_TOKEN", &server.token)
        .env("DASH_VKEY", info["verifier_key"].as_str().unwrap())
        .env("DASH_HIGH", high.to_string())
        .env("DASH_MEDIUM", medium.to_string())
        .env("DASH_SENT", (high + medium + plain).to_string())
        .env("DASH_SCREENSHOTS", &shots)
        .stderr(Stdio::inherit())
        .output()
        .expect("running node");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(out.status.success(), "triage.mjs failed: {}", out.status);
    for step in [
        "PASS sign-in routes once",
        "PASS one poller, stopped on leaving the overview",
        "PASS overview: open violations counted, history from the server over a chosen range, UTC or local",
        "PASS events: the total from the server, fixed values as selects",
        "PASS events: drill-down from a field to the events that share it",
        "PASS events: a saved search",
        "PASS events: the rows shown download as CSV",
        "PASS violations: counts by status and severity, paged to the end",
        "PASS violations: a facet filters, kept in the URL",
        "PASS violations: bulk acknowledge and resolve with a comment, each logged",
        "PASS event page: who accessed it",
        "PASS keyboard only: skip link, navigation, select, comment and acknowledge",
        "PASS tokens and emitters: create (shown once), revoke, register",
        "PASS phone: triage, events, tokens and overview fit 360px",
        "PASS the HTML compliance report fits 360px",
        "PASS every page at 1280px: no serious or critical axe-core violation, touch targets of 44px",
        "PASS every page at 360px: no serious or critical axe-core violation, touch targets of 44px, no sideways scrolling",
        "PASS no console errors",
    ] {
        assert!(text.contains(step), "missing {step:?} in:\n{text}");
    }
    // docs/dashboard.md shows screenshots this test takes, by the same names
    // (tests/dashboard/screenshots.sh copies them into docs/screenshots/).
    let documented = documented_screenshots();
    assert!(documented.len() >= 6, "{documented:?}");
    for name in &documented {
        assert!(shots.join(name).exists(), "the test took no {name}");
        // (Not while screenshots.sh refreshes them.)
        let refreshing = std::env::var_os("AIAUDIT_REFRESH_SCREENSHOTS").is_some();
        assert!(
            refreshing || root().join("docs/screenshots").join(name).exists(),
            "docs/screenshots/{name} is missing: run tests/dashboard/screenshots.sh"
        );
    }
}
