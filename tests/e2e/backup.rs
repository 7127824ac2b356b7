//! `aiaudit backup` and `aiaudit restore` against a real ledger: full and
//! incremental backups to a directory and to S3 (moto's local server),
//! verification that catches tampering, and a restored log that verifies
//! and serves.

use crate::harness::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Sent in every event's content: with encryption at rest it must appear in no backup file.
const MARKER: &str = "BACKUP-MARKER-5e1f";

fn fill(server: &Server, from: usize, to: usize) {
    let events: Vec<Value> = (from..to)
        .map(|i| {
            let mut e = event(&format!("b{i}"));
            e["input"] = serde_json::json!({"content": format!("{MARKER} {i}")});
            e
        })
        .collect();
    for chunk in events.chunks(500) {
        server.post_events(chunk);
    }
    server.wait_size(to as u64);
}

/// Runs aiaudit with extra environment variables (the S3 settings).
fn run(args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(BIN)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("running aiaudit")
}

/// Runs a `--json` command; returns whether it succeeded and its JSON.
fn run_json(args: &[&str], env: &[(&str, String)]) -> (bool, Value) {
    let mut all = args.to_vec();
    all.push("--json");
    let out = run(&all, env);
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap_or_else(|e| {
        panic!(
            "{e}: {args:?}: {}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), v)
}

fn vkey(server: &Server) -> String {
    server.get_json("/v1/info")["verifier_key"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `aiaudit backup create`, the ledger named by `AIAUDIT_URL` as the other
/// commands take it.
fn create(server: &Server, to: &[&str], incremental: bool, env: &[(&str, String)]) -> Value {
    let mut args = vec!["backup", "create", "--token", &server.token];
    for t in to {
        args.extend(["--to", t]);
    }
    if incremental {
        args.push("--incremental");
    }
    let mut env = env.to_vec();
    env.push(("AIAUDIT_URL", server.url.clone()));
    let (ok, v) = run_json(&args, &env);
    assert!(ok, "{v}");
    v
}

/// `aiaudit verify --data-dir` on a restored directory: size and root.
fn verify_data_dir(dir: &Path, vkey: &str) -> (u64, String) {
    let (ok, v) = run_json(
        &[
            "verify",
            "--data-dir",
            dir.to_str().unwrap(),
            "--vkey",
            vkey,
        ],
        &[],
    );
    assert!(ok, "{v}");
    (
        v["size"].as_u64().unwrap(),
        v["root"].as_str().unwrap().to_string(),
    )
}

fn flip(path: &Path, offset: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[offset] ^= 0x20;
    std::fs::write(path, b).unwrap();
}

#[test]
fn full_and_incremental_backups_restore_into_a_log_that_verifies_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backups = dir.path().join("backups");
    let to = backups.to_str().unwrap();
    let server = Server::start(&data);
    let vkey = vkey(&server);

    // No backup yet: an incremental one has nothing to continue.
    let out = run(
        &[
            "backup",
            "create",
            "--url",
            &server.url,
            "--token",
            &server.token,
            "--to",
            to,
            "--incremental",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("take a full backup first"),
        "{}",
        stdout(&out)
    );

    fill(&server, 0, 600);
    let full = create(&server, &[to], false, &[]);
    let full_id = full["backups"][0]["id"].as_str().unwrap().to_string();
    assert!(full_id.ends_with("-full"), "{full}");
    assert_eq!(full["backups"][0]["size"], 600);

    fill(&server, 600, 1000);
    let incr = create(&server, &[to], true, &[]);
    let b = &incr["backups"][0];
    assert_eq!(
        (b["from"].as_u64(), b["size"].as_u64()),
        (Some(600), Some(1000)),
        "{incr}"
    );
    assert_eq!(b["parent"], full_id.as_str());
    let incr_id = b["id"].as_str().unwrap().to_string();

    let (_, list) = run_json(&["backup", "list", "--from", to], &[]);
    let ids: Vec<&str> = list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [full_id.as_str(), incr_id.as_str()]);

    let (ok, v) = run_json(&["backup", "verify", "--from", to, "--vkey", &vkey], &[]);
    assert!(ok, "{v}");
    assert_eq!(v["results"][0]["size"], 1000);
    assert_eq!(v["results"][0]["key_pinned"], true);

    // Restore the latest chain; it verifies offline and matches the ledger.
    let restored = dir.path().join("restored");
    let (ok, r) = run_json(
        &[
            "restore",
            "--from",
            to,
            "--data-dir",
            restored.to_str().unwrap(),
            "--vkey",
            &vkey,
            "--signing-key",
            data.join("log.key").to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{r}");
    assert_eq!(r["chain"], serde_json::json!([full_id, incr_id]));
    // Backups carry no gate file: the restore records gate 5, since the
    // entries use the openings dictionary (docs/operations.md).
    assert_eq!(
        std::fs::read_to_string(restored.join("entry-format")).unwrap(),
        "5\n"
    );
    let info = server.get_json("/v1/info");
    let (size, root) = verify_data_dir(&restored, &vkey);
    assert_eq!(size, 1000);
    assert_eq!(r["root"], root.as_str());
    assert_eq!(
        (info["size"].as_u64(), info["root"].as_str()),
        (Some(1000), Some(root.as_str()))
    );

    // An older backup restores too: the full one alone.
    let older = dir.path().join("older");
    let (ok, r) = run_json(
        &[
            "restore",
            "--from",
            to,
            "--id",
            &full_id,
            "--data-dir",
            older.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{r}");
    assert_eq!(verify_data_dir(&older, &vkey).0, 600);

    // Never into a directory that holds something.
    let (ok, r) = run_json(
        &[
            "restore",
            "--from",
            to,
            "--data-dir",
            restored.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        !ok && r["error"].as_str().unwrap().contains("not empty"),
        "{r}"
    );

    // The restored directory serves the same log, with the same key.
    // The master key is never in a backup: the operator brings it back.
    server.stop();
    assert_eq!(
        crate::encryption::files_containing(&backups, MARKER),
        Vec::<String>::new()
    );
    let master = data.join("master.key");
    let again = Server::start_with(&restored, &["--master-key-file", master.to_str().unwrap()]);
    let info2 = again.get_json("/v1/info");
    assert_eq!(info2["size"], 1000);
    assert_eq!(info2["verifier_key"], vkey.as_str());
    assert_eq!(info2["root"], root.as_str());
    let e = again.get_json("/v1/events/999");
    assert_eq!(e["content"], "sealed");
    assert!(e["event"]["input"]["content"]
        .as_str()
        .unwrap()
        .starts_with(MARKER));
    again.stop();

    // One changed byte in the increment: verification fails and names the file.
    let seg = backups.join(&incr_id).join("entries/00000000000000000600");
    flip(&seg, 100);
    let out = run(&["backup", "verify", "--from", to], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(&format!("{incr_id}/entries/00000000000000000600: SHA-256")),
        "{}",
        stdout(&out)
    );
    // The full backup alone is still intact.
    let out = run(&["backup", "verify", "--from", to, &full_id], &[]);
    assert!(out.status.success(), "{}", stdout(&out));
}

/// moto's S3 server on a loopback port, stopped on drop.
pub(crate) struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts moto, or returns None (outside CI only) when it is not installed.
    pub(crate) fn start() -> Option<Moto> {
        let installed = Command::new("python3")
            .args(["-c", "import moto.server, flask, boto3"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !installed {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI needs moto's S3 server: python3 -m pip install 'moto[server]'"
            );
            skipped("moto (python3 -m pip install 'moto[server]') not installed");
            return None;
        }
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while client().get(&moto.endpoint).send().is_err() {
            assert!(Instant::now() < deadline, "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }

    /// The standard AWS variables that point object_store at this server.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// Runs boto3 (installed with moto) against this server: `s3` is the client.
    pub(crate) fn boto3(&self, code: &str) {
        let script = format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='testing', \
             aws_secret_access_key='testing', region_name='us-east-1')\n{code}\n",
            self.endpoint
        );
        let out = Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_keyring_is_served_whole_or_by_byte_range_for_copies_in_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    // Events naming subjects: a family key per tag bucket they fall in
    // (4,096 buckets under a per-log salt, so two of the 40 share one about
    // one run in six; the file's size is not fixed).
    let events: Vec<Value> = (0..40)
        .map(|i| {
            let mut e = event(&format!("k{i}"));
            e["subject"] = Value::from(format!("subject-{i}"));
            e
        })
        .collect();
    server.post_events(&events);
    server.wait_size(40);
    let file = std::fs::read(data.join("keyring")).unwrap();
    let total = file.len();
    // Enough records that the ranges below cross record boundaries.
    assert!(total >= 64 + 30 * 256, "{total}");

    let whole = server.get("/v1/keys/keyring");
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(
        whole.headers()["content-length"],
        total.to_string().as_str()
    );
    assert_eq!(whole.bytes().unwrap().to_vec(), file);

    let range = |spec: &str| {
        server
            .authorized(client().get(format!("{}/v1/keys/keyring", server.url)))
            .header("Range", spec)
            .send()
            .unwrap()
    };
    // A range across the header's end and into the second record.
    let part = range("bytes=60-400");
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 60-400/{total}").as_str()
    );
    assert_eq!(part.bytes().unwrap().to_vec(), file[60..=400]);
    // Open-ended and past the end: up to the end.
    let tail = range(&format!("bytes={}-", total - 10));
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().unwrap().to_vec(), file[total - 10..]);
    let tail = range(&format!("bytes={}-{}", total - 3, total + 1000));
    assert_eq!(tail.bytes().unwrap().to_vec(), file[total - 3..]);
    // Nothing there: 416 naming the length, as a problem document.
    let none = range(&format!("bytes={total}-"));
    assert_eq!(none.status(), 416);
    assert_eq!(
        none.headers()["content-range"],
        format!("bytes */{total}").as_str()
    );
    assert_eq!(none.headers()["content-type"], "application/problem+json");
    assert_eq!(range("bytes=x-").status(), 416);
}

#[test]
fn backs_up_to_a_directory_and_s3_at_once_and_verifies_each() {
    let Some(moto) = Moto::start() else { return };
    moto.boto3("s3.create_bucket(Bucket='audit-backups')");
    let env = moto.env();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let vkey = vkey(&server);
    let local = dir.path().join("backups");
    let local = local.to_str().unwrap();
    let s3 = "s3://audit-backups/ledger-1";

    fill(&server, 0, 700);
    let full = create(&server, &[local, s3], false, &env);
    assert_eq!(full["backups"].as_array().unwrap().len(), 2, "{full}");
    fill(&server, 700, 900);
    let incr = create(&server, &[local, s3], true, &env);
    for b in incr["backups"].as_array().unwrap() {
        assert_eq!(
            (b["from"].as_u64(), b["size"].as_u64()),
            (Some(700), Some(900)),
            "{incr}"
        );
    }
    let incr_id = incr["backups"][1]["id"].as_str().unwrap().to_string();

    let (_, list) = run_json(&["backup", "list", "--from", s3], &env);
    assert_eq!(list["backups"].as_array().unwrap().len(), 2, "{list}");

    let (ok, v) = run_json(
        &[
            "backup", "verify", "--from", local, "--from", s3, "--vkey", &vkey,
        ],
        &env,
    );
    assert!(ok, "{v}");

    // Restore from S3 alone.
    let restored = dir.path().join("restored");
    let (ok, r) = run_json(
        &[
            "restore",
            "--from",
            s3,
            "--data-dir",
            restored.to_str().unwrap(),
            "--vkey",
            &vkey,
        ],
        &env,
    );
    assert!(ok, "{r}");
    let (size, root) = verify_data_dir(&restored, &vkey);
    assert_eq!((size, root.as_str()), (900, r["root"].as_str().unwrap()));
    // The keyring went up as a multipart upload and came back whole.
    let keyring = std::fs::read(restored.join("keyring")).unwrap();
    assert!(keyring.starts_with(b"aiaudit-keyring 1\n"));
    assert_eq!(
        keyring,
        std::fs::read(Path::new(local).join(&incr_id).join("keyring")).unwrap()
    );

    // Tamper with the S3 copy: that destination fails, naming the object; the directory still verifies.
    moto.boto3(&format!(
        "k = 'ledger-1/{incr_id}/entries/00000000000000000700'\n\
         b = bytearray(s3.get_object(Bucket='audit-backups', Key=k)['Body'].read())\n\
         b[50] ^= 0x20\n\
         s3.put_object(Bucket='audit-backups', Key=k, Body=bytes(b))"
    ));
    let (ok, v) = run_json(&["backup", "verify", "--from", local, "--from", s3], &env);
    assert!(!ok, "{v}");
    assert_eq!(v["results"][0]["ok"], true, "{v}");
    assert_eq!(v["results"][1]["ok"], false, "{v}");
    let err = v["results"][1]["error"].as_str().unwrap();
    assert!(
        err.contains(&format!(
            "s3://audit-backups/ledger-1/{incr_id}/entries/00000000000000000700: SHA-256"
        )),
        "{err}"
    );
}

#[test]
fn serve_takes_scheduled_backups_and_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backups = dir.path().join("scheduled");
    let server = Server::start_with(
        &data,
        &[
            "--backup-to",
            backups.to_str().unwrap(),
            "--backup-incremental-every",
            "2s",
        ],
    );
    fill(&server, 0, 300);
    // A full backup at start (none existed), then incrementals as the log grows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        let info = server.get_json("/v1/info");
        let loc = info["backup"]["locations"][0].clone();
        if loc["last_size"].as_u64() == Some(300) && loc["last_verified_unix"].is_u64() {
            break info["backup"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled backup: {info}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(status["scheduled"], true);
    assert!(status["locations"][0]["last_error"].is_null(), "{status}");
    let metrics = server.get("/metrics").text().unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("aiaudit_backup_age_seconds{"))
        .unwrap_or_else(|| panic!("{metrics}"));
    let age: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(age < 60.0, "{line}");
    assert!(metrics.contains("aiaudit_backup_max_age_seconds{"));
    assert!(metrics.contains("aiaudit_backup_last_result_success{"));
    // What the schedule wrote is a chain that verifies on its own.
    let vkey = vkey(&server);
    server.stop();
    let out = run(
        &[
            "backup",
            "verify",
            "--from",
            backups.to_str().unwrap(),
            "--vkey",
            &vkey,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn dr_drill_restores_serves_verifies_and_reports_rto_and_rpo() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backups = dir.path().join("backups");
    let server = Server::start(&data);
    fill(&server, 0, 400);
    create(&server, &[backups.to_str().unwrap()], false, &[]);
    // The live log moves on after the backup: the drill measures how far behind it is.
    fill(&server, 400, 450);
    let master = data.join("master.key");
    let out = run(
        &[
            "dr",
            "drill",
            "--from",
            backups.to_str().unwrap(),
            "--url",
            &server.url,
            "--master-key-file",
            master.to_str().unwrap(),
            "--signing-key",
            data.join("log.key").to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    let report: Value = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert!(out.status.success(), "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["restored"]["size"], 400);
    assert_eq!(report["live"]["size"], 450);
    assert_eq!(report["live"]["consistent"], true);
    assert_eq!(report["rpo_events"], 50);
    assert_eq!(report["content_checked"], true);
    assert_eq!(report["served"], true);
    assert_eq!(report["verification"]["ok"], true);
    assert!(report["rto_seconds"].as_f64().unwrap() < 300.0);
    assert_eq!(report["rto_met"], true);
    assert_eq!(report["rpo_met"], true);

    // A drill against another log's live server: not a prefix of it, the drill fails.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Server::start(&other_dir.path().join("data"));
    let out = run(
        &[
            "dr",
            "drill",
            "--from",
            backups.to_str().unwrap(),
            "--url",
            &other.url,
            "--json",
        ],
        &[],
    );
    assert!(!out.status.success());
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["ok"], false, "{report}");
    // Without the signing key: audited offline, text output for people.
    let out = run(&["dr", "drill", "--from", backups.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("PASSED"), "{}", stdout(&out));
}
