//! Events as large as AI conversations: members above the blob threshold
//! are stored out of line as sealed blobs the entry commits to, read back
//! whole and checked, or by range; damage is never served; erasure, limits,
//! crashes and verification all hold for them.

use crate::harness::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Prose-like ASCII (no character JSON escapes), `len` bytes, distinct per `seed`.
fn prose(len: usize, seed: u64) -> String {
    const WORDS: [&str; 12] = [
        "the ",
        "model ",
        "retrieved ",
        "document ",
        "answered ",
        "customer ",
        "loan ",
        "policy ",
        "agent ",
        "tool ",
        "context ",
        "window ",
    ];
    let mut s = String::with_capacity(len + 16);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while s.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
        if x.is_multiple_of(97) {
            s.push_str(&format!("#{x} "));
        }
    }
    s.truncate(len);
    s
}

fn large_event(id: &str, content: &str) -> Value {
    let mut e = event(id);
    e["input"] = json!({"content": content, "role": "user"});
    e["output"] = json!({"content": "short answer"});
    e
}

fn blob_files(data: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(shards) = std::fs::read_dir(data.join("blobs")) else {
        return out;
    };
    for shard in shards.flatten() {
        if shard.file_name().len() == 2 {
            for f in std::fs::read_dir(shard.path()).unwrap().flatten() {
                out.push(f.path());
            }
        }
    }
    out.sort();
    out
}

fn verify_dir(data: &Path) -> (bool, Value) {
    verify_dir_with(data, &[], &[])
}

/// `aiaudit verify --json --data-dir` with extra flags and environment.
fn verify_dir_with(data: &Path, extra: &[&str], env: &[(&str, String)]) -> (bool, Value) {
    let vkey = std::fs::read_to_string(data.join("log.vkey")).unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "verify",
            "--json",
            "--data-dir",
            data.to_str().unwrap(),
            "--vkey",
            vkey.trim(),
        ])
        .args(extra)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    (out.status.success(), v)
}

fn problem(r: reqwest::blocking::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// Every file under `dir` (but the blob temp directory, always empty at rest).
fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn events_up_to_16_mib_round_trip_through_blobs_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    // 60 KB of incompressible text, 1 MiB and (almost) 16 MiB of prose.
    let marker = "PLAINTEXT-MARKER-7f3a";
    let contents = [
        format!("{marker} {}", incompressible(60_000)),
        format!("{marker} {}", prose(1 << 20, 1)),
        format!("{marker} {}", prose((16 << 20) - 4096, 2)),
    ];
    let mut indexes = Vec::new();
    for (i, c) in contents.iter().enumerate() {
        let r = server.post_events(&[large_event(&format!("big-{i}"), c)]);
        indexes.push(r["events"][0]["index"].as_u64().unwrap());
    }
    server.wait_size(3);
    for (i, c) in contents.iter().enumerate() {
        let sent = large_event(&format!("big-{i}"), c);
        let got = server.get_json(&format!("/v1/events/{}", indexes[i]));
        assert_eq!(got["event"], sent, "event {i} did not come back as sent");
        assert_eq!(got["content"], "sealed");
        let blobs = got["blobs"].as_array().unwrap();
        assert_eq!(blobs.len(), 1, "{:?}", got["blobs"]);
        assert_eq!(blobs[0]["pointer"], "/input/content");
        assert_eq!(blobs[0]["bytes"], c.len() as u64 + 2);
        assert_eq!(blobs[0]["included"], true);

        // Omitted: the member is left out and listed; the rest is there.
        let lean = server.get_json(&format!("/v1/events/{}?blobs=omit", indexes[i]));
        assert!(lean["event"]["input"].get("content").is_none());
        assert_eq!(lean["event"]["input"]["role"], "user");
        assert_eq!(lean["blobs"][0]["included"], false);

        // The member alone: whole, then a range.
        let r = server.get(&format!("/v1/events/{}/blobs/0", indexes[i]));
        assert_eq!(r.status(), 200);
        let whole = r.bytes().unwrap();
        assert_eq!(whole.as_ref(), format!("\"{c}\"").as_bytes());
        let r = server.authorized(
            client()
                .get(format!("{}/v1/events/{}/blobs/0", server.url, indexes[i]))
                .header("range", "bytes=1-21"),
        );
        let r = r.send().unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(
            r.headers()["content-range"].to_str().unwrap(),
            format!("bytes 1-21/{}", c.len() + 2)
        );
        assert_eq!(r.bytes().unwrap().as_ref(), marker.as_bytes());
    }
    // A range from the middle of the 16 MiB blob crosses a chunk boundary.
    let c = &contents[2];
    let (first, last) = ((1 << 20) - 10, (1 << 20) + 10);
    let r = server
        .authorized(
            client()
                .get(format!("{}/v1/events/{}/blobs/0", server.url, indexes[2]))
                .header("range", format!("bytes={first}-{last}")),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    let quoted = format!("\"{c}\"");
    assert_eq!(
        r.bytes().unwrap().as_ref(),
        &quoted.as_bytes()[first..=last]
    );
    let r = server
        .authorized(
            client()
                .get(format!("{}/v1/events/{}/blobs/0", server.url, indexes[0]))
                .header("range", "bytes=99999999-"),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(
        server
            .get(&format!("/v1/events/{}/blobs/1", indexes[0]))
            .status(),
        404
    );

    // Searches leave the large members out and say where they are.
    let found = server.get_json("/v1/events?tenant=acme");
    let first = found["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"]["id"] == "big-0")
        .unwrap();
    assert!(first["event"]["input"].get("content").is_none(), "{first}");
    assert_eq!(first["blobs"][0]["bytes"], contents[0].len() as u64 + 2);

    // Sending an event again answers the first copy, and its blob goes.
    let again = server.post_events(&[large_event("big-1", &contents[1])]);
    assert_eq!(again["events"][0]["duplicate"], true);
    assert_eq!(again["events"][0]["index"], indexes[1]);
    // Removed off the answer's path: wait for it, within a bound.
    let deadline = Instant::now() + Duration::from_secs(10);
    while blob_files(&data).len() != 3 {
        assert!(
            Instant::now() < deadline,
            "a duplicate's blob was left behind"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Entries stay small: the content is in the blobs, and nothing of it
    // is stored in the clear anywhere in the data directory.
    let entries = std::fs::metadata(data.join("log/entries")).unwrap().len();
    assert!(entries < 64 << 10, "log/entries holds {entries} bytes");
    let blob_bytes: u64 = blob_files(&data)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let content_bytes: u64 = contents.iter().map(|c| c.len() as u64).sum();
    assert!(
        blob_bytes < content_bytes,
        "{blob_bytes} stored for {content_bytes}"
    );
    server.stop();
    let mut files = Vec::new();
    all_files(&data, &mut files);
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "{} holds plaintext",
            f.display()
        );
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&f).unwrap().permissions());
        if f.starts_with(data.join("blobs")) {
            assert_eq!(mode & 0o777, 0o600, "{}", f.display());
        }
    }
    let (ok, report) = verify_dir(&data);
    assert!(ok, "{report}");
    assert_eq!(report["blobs"]["checked"], 3, "{report}");
    assert_eq!(report["blobs"]["orphans"], 0, "{report}");
}

#[test]
fn a_damaged_or_missing_blob_is_never_served_and_verify_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let content = prose(200_000, 3);
    server.post_events(&[event("small"), large_event("big", &content)]);
    server.post_events(&[large_event("big-2", &prose(50_000, 4))]);
    server.wait_size(3);
    let before = server.get_json("/v1/events/1?blobs=omit");
    let id_of = |v: &Value| -> String {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v["blobs"][0]["commitment"].as_str().unwrap())
            .unwrap();
        raw.iter().map(|b| format!("{b:02x}")).collect()
    };
    let id = id_of(&before);
    let path = data.join("blobs").join(&id[..2]).join(&id);
    assert!(path.exists());

    // One byte flipped in the stored blob, in place.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let (status, p) = problem(server.get("/v1/events/1"));
    assert_eq!(status, 500, "{p}");
    assert!(
        p["type"].as_str().unwrap().ends_with("integrity-error"),
        "{p}"
    );
    assert!(!p.to_string().contains(&content[..40]));
    let (status, _) = problem(server.get("/v1/events/1/blobs/0"));
    assert_eq!(status, 500);
    assert_eq!(
        server.metric("aiaudit_blob_integrity_failures_total"),
        Some(2.0)
    );
    // What does not touch the blob still reads.
    assert_eq!(server.get("/v1/events/1?blobs=omit").status(), 200);
    assert_eq!(server.get("/v1/events/0").status(), 200);

    // The other event's blob goes missing altogether.
    let other = id_of(&server.get_json("/v1/events/2?blobs=omit"));
    std::fs::remove_file(data.join("blobs").join(&other[..2]).join(&other)).unwrap();
    let (status, p) = problem(server.get("/v1/events/2"));
    assert_eq!(status, 500, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("missing"), "{p}");
    server.stop();

    let (ok, report) = verify_dir(&data);
    assert!(!ok, "{report}");
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["index"] == 1 && p["what"].as_str().unwrap().contains(&id)),
        "{report}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p["index"] == 2 && p["what"].as_str().unwrap().contains("missing")),
        "{report}"
    );
}

#[test]
fn an_event_over_the_maximum_is_refused_413_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--max-event-bytes", "1048576"]);
    let batch = json!([event("fits"), large_event("too-big", &prose(1_500_000, 5))]);
    let r = server.post(
        "/v1/events",
        "application/json",
        serde_json::to_vec(&batch).unwrap(),
    );
    let (status, p) = problem(r);
    assert_eq!(status, 413, "{p}");
    assert_eq!(p["errors"][0]["pointer"], "/1/input/content", "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("max_event_bytes"),
        "{p}"
    );
    // All or nothing: the event that fit was not logged either.
    server.wait_idle();
    assert_eq!(server.get_json("/v1/info")["sequenced_size"], 0);
    assert!(blob_files(dir.path()).is_empty());
}

#[test]
fn erasure_makes_blobs_unreadable_while_the_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let mut e = large_event("of-alice", &prose(300_000, 6));
    e["subject"] = json!("alice");
    let mut kept = large_event("of-bob", &prose(300_000, 7));
    kept["subject"] = json!("bob");
    server.post_events(&[e, kept.clone()]);
    server.wait_size(2);
    assert_eq!(server.get("/v1/events/0/blobs/0").status(), 200);
    let out = aiaudit(&[
        "erase",
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--tenant",
        "acme",
        "--subject",
        "alice",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let erased = server.get_json("/v1/events/0");
    assert_eq!(erased["content"], "erased");
    assert_eq!(erased["blobs"][0]["included"], false);
    let (status, p) = problem(server.get("/v1/events/0/blobs/0"));
    assert_eq!(status, 410, "{p}");
    assert_eq!(server.get_json("/v1/events/1")["event"], kept);
    // The log and every stored blob still check out, with no key.
    server.wait_size(3);
    let proved = server.get_json_when_ready("/v1/events/0?proof=true");
    assert!(proved["proof"]["inclusion"].is_array());
    server.stop();
    let (ok, report) = verify_dir(&data);
    assert!(ok, "{report}");
    assert_eq!(report["blobs"]["checked"], 2, "{report}");
}

#[test]
fn kill_9_while_a_large_event_is_written_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    let port = server
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    let acknowledged = large_event("acked", &prose(2 << 20, 8));
    server.post_events(std::slice::from_ref(&acknowledged));
    let tmp = data.join("blobs").join(".tmp");
    // Post 16 MiB events and kill the ledger while one's blob is being
    // written (a file in blobs/.tmp): until that moment is caught.
    let mut caught = false;
    for attempt in 0..5 {
        let url = server.url.clone();
        let token = server.token.clone();
        let body = serde_json::to_vec(&[large_event(
            &format!("in-flight-{attempt}"),
            &prose((16 << 20) - 4096, 100 + attempt),
        )])
        .unwrap();
        let sender = std::thread::spawn(move || {
            client()
                .post(format!("{url}/v1/events"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .map(|r| r.status().as_u16())
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sender.is_finished() && Instant::now() < deadline {
            if std::fs::read_dir(&tmp).is_ok_and(|mut d| d.next().is_some()) {
                caught = true;
                break;
            }
        }
        if caught {
            server.kill9();
            let _ = sender.join();
            server = Server::start_on(&data, port, &[]);
            break;
        }
        assert_eq!(sender.join().unwrap().unwrap(), 200);
    }
    assert!(caught, "no blob write was caught in flight in 5 attempts");
    // The interrupted write left nothing behind; what was acknowledged reads.
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    assert_eq!(server.get_json("/v1/events/0")["event"], acknowledged);
    let size = server.get_json("/v1/info")["sequenced_size"]
        .as_u64()
        .unwrap();
    for i in 0..size {
        assert_eq!(
            server.get(&format!("/v1/events/{i}")).status(),
            200,
            "event {i}"
        );
    }
    server.stop();
    let (ok, report) = verify_dir(&data);
    assert!(ok, "{report}");
}

/// An OTLP/JSON log record whose `input.content` attribute is `content`.
fn otlp_record(id: &str, content: &str) -> Value {
    let s = |v: &str| json!({"stringValue": v});
    let attr = |k: &str, v: Value| json!({"key": k, "value": v});
    json!({"resourceLogs": [{"resource": {"attributes": [attr("service.name", s("rag-app"))]},
        "scopeLogs": [{"logRecords": [{"timeUnixNano": "1764234843120000000",
            "attributes": [attr("tenant", s("acme")), attr("id", s(id)),
                attr("action", s("model.invoke")), attr("input.content", s(content))]}]}]}]})
}

#[test]
fn large_events_arrive_whole_through_otlp_and_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let agent = start_agent(&server.url, &server.token, &dir.path().join("spool"));
    let sizes = [60_000, 1 << 20, (16 << 20) - 4096];
    let mut sent = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        let otlp = prose(*n, 20 + i as u64);
        let r = server
            .authorized(client().post(format!("{}/v1/logs", server.url)))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&otlp_record(&format!("otlp-{i}"), &otlp)).unwrap())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let answer: Value = r.json().unwrap();
        assert!(answer.get("partialSuccess").is_none(), "otlp-{i}: {answer}");
        sent.push((format!("otlp-{i}"), otlp));
        let via_agent = prose(*n, 30 + i as u64);
        let r = agent
            .authorized(client().post(format!("{}/v1/events", agent.url)))
            .json(&[large_event(&format!("agent-{i}"), &via_agent)])
            .send()
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
        sent.push((format!("agent-{i}"), via_agent));
    }
    agent.wait_agent_drained();
    let status = agent.agent_status();
    assert_eq!(status["rejected"], 0, "{status}");
    let info = server.get_json("/v1/info");
    assert_eq!(info["sequenced_size"], 6, "{info} {status}");
    server.wait_size(6);
    for i in 0..6u64 {
        let got = server.get_json(&format!("/v1/events/{i}"));
        let id = got["event"]["id"].as_str().unwrap();
        let (_, content) = sent.iter().find(|(s, _)| s == id).unwrap();
        assert_eq!(
            got["event"]["input"]["content"].as_str().unwrap(),
            content,
            "{id} did not arrive whole"
        );
        assert_eq!(got["blobs"][0]["pointer"], "/input/content", "{id}");
    }
    assert_eq!(agent.agent_status()["rejected"], 0);
}

#[test]
fn backups_carry_blobs_and_a_restored_log_serves_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let first = large_event("backed-up-0", &prose(400_000, 40));
    server.post_events(&[first.clone(), event("small")]);
    server.wait_size(2);
    let to = dir.path().join("backups");
    let to = to.to_str().unwrap();
    let vkey = server.get_json("/v1/info")["verifier_key"]
        .as_str()
        .unwrap()
        .to_string();
    let run = |args: &[&str]| {
        let out = aiaudit(args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str::<Value>(stdout(&out).trim()).unwrap()
    };
    run(&[
        "backup",
        "create",
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--to",
        to,
        "--json",
    ]);
    // An incremental backup carries the blobs of its own entries.
    let second = large_event("backed-up-1", &prose(2 << 20, 41));
    server.post_events(std::slice::from_ref(&second));
    server.wait_size(3);
    run(&[
        "backup",
        "create",
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--to",
        to,
        "--incremental",
        "--json",
    ]);
    let checked = run(&["backup", "verify", "--from", to, "--vkey", &vkey, "--json"]);
    assert_eq!(checked["results"][0]["size"], 3, "{checked}");
    let restored = dir.path().join("restored");
    run(&[
        "restore",
        "--from",
        to,
        "--data-dir",
        restored.to_str().unwrap(),
        "--vkey",
        &vkey,
        "--signing-key",
        data.join("log.key").to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(blob_files(&restored).len(), 2);
    let (ok, report) = verify_dir(&restored);
    assert!(ok, "{report}");
    assert_eq!(report["blobs"]["checked"], 2, "{report}");
    let master = data.join("master.key");
    let again = Server::start_with(&restored, &["--master-key-file", master.to_str().unwrap()]);
    assert_eq!(again.get_json("/v1/events/0")["event"], first);
    assert_eq!(again.get_json("/v1/events/2")["event"], second);
}

#[test]
fn an_export_bundle_carries_blobs_and_verifies_offline() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let big = large_event("exported", &prose(1 << 20, 50));
    server.post_events(&[big.clone(), event("small-exported")]);
    server.wait_size(2);
    let bundle = dir.path().join("export.tar.gz");
    export_bundle(&server, "acme", &bundle);
    let vkey = server.get_json("/v1/info")["verifier_key"]
        .as_str()
        .unwrap()
        .to_string();
    let report = verify_bundle(&bundle, &vkey);
    assert_eq!(report["events"], 2, "{report}");
    assert_eq!(report["blobs"], 1, "{report}");
    // The content travels whole in blobs.bin, where events.ndjson points.
    let gz = std::fs::File::open(&bundle).unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    let (mut lines, mut blobs) = (String::new(), Vec::new());
    for f in tar.entries().unwrap() {
        let mut f = f.unwrap();
        let name = f.path().unwrap().to_string_lossy().into_owned();
        use std::io::Read;
        match name.as_str() {
            "events.ndjson" => {
                f.read_to_string(&mut lines).unwrap();
            }
            "blobs.bin" => {
                f.read_to_end(&mut blobs).unwrap();
            }
            _ => {}
        }
    }
    let line: Value = lines
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["event"]["id"] == "exported")
        .unwrap();
    let at = &line["blobs"][0];
    let (offset, bytes) = (
        at["offset"].as_u64().unwrap() as usize,
        at["bytes"].as_u64().unwrap() as usize,
    );
    let content: Value = serde_json::from_slice(&blobs[offset..offset + bytes]).unwrap();
    assert_eq!(content, big["input"]["content"]);
}

#[test]
fn blobs_can_live_in_s3_compatible_object_storage() {
    let Some(moto) = crate::backup::Moto::start() else {
        return;
    };
    moto.boto3("s3.create_bucket(Bucket='audit-blobs')");
    let env = moto.env();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = "s3://audit-blobs/ledger-1";
    let server = Server::start_env(&data, 0, &["--blob-store", store], &env);
    let big = large_event("in-s3", &prose(3 << 20, 60));
    server.post_events(std::slice::from_ref(&big));
    server.wait_size(1);
    assert_eq!(server.get_json("/v1/events/0")["event"], big);
    // Nothing of it on the node's disk: the object holds the stored bytes.
    assert!(blob_files(&data).is_empty());
    server.stop();
    let verify = |extra: &[&str]| verify_dir_with(&data, extra, &env).1;
    let report = verify(&["--blob-store", store]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["blobs"]["checked"], 1, "{report}");
    // Looked for in the data directory instead, the blob is missing.
    assert_eq!(verify(&[])["ok"], false);
    // Changed in the bucket: never served.
    moto.boto3(
        "k = [o['Key'] for o in s3.list_objects_v2(Bucket='audit-blobs')['Contents']][0]\n\
         b = bytearray(s3.get_object(Bucket='audit-blobs', Key=k)['Body'].read())\n\
         b[100] ^= 1\n\
         s3.put_object(Bucket='audit-blobs', Key=k, Body=bytes(b))",
    );
    let again = Server::start_env(&data, 0, &["--blob-store", store], &env);
    assert_eq!(again.get("/v1/events/0").status(), 500);
    assert_eq!(verify(&["--blob-store", store])["ok"], false);
}
