//! Starting and stopping the real binary on a free loopback port.

use aiaudit_tlog::{decode_entry_bundle, Tile, TileKind};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_aiaudit");

pub struct Server {
    pub child: Child,
    pub url: String,
    /// The ledger's admin token, or an agent's local token.
    pub token: String,
}

pub use aiaudit_testpg::free_port;

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[])
    }

    /// Starts on a port the server picks itself (`--listen 127.0.0.1:0`) and
    /// reads back from its "serving" line: a port chosen here and bound later
    /// can be taken in between by another test's server, whose `/healthz`
    /// would then pass for this one's.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_on(data_dir, 0, extra)
    }

    pub fn start_on(data_dir: &Path, port: u16, extra: &[&str]) -> Server {
        Server::start_env(data_dir, port, extra, &[])
    }

    /// [`Server::start_on`] with extra environment variables (S3 settings).
    pub fn start_env(data_dir: &Path, port: u16, extra: &[&str], env: &[(&str, String)]) -> Server {
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(BIN)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(&listen)
            .arg("--publish-interval-ms")
            .arg("200")
            .args(extra)
            .env("AIAUDIT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting aiaudit serve");
        let (child, url) = listening(child, "aiaudit: serving log ");
        let mut server = Server {
            child,
            url,
            token: String::new(),
        };
        server.wait_ready();
        server.token = admin_token(data_dir);
        server
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = client().get(format!("{}/healthz", self.url)).send() {
                if r.status().is_success() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server at {} did not become ready", self.url);
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::mem::forget(self);
    }

    pub fn stop(mut self) {
        unsafe_sigterm(self.child.id());
        self.child.wait().unwrap();
        std::mem::forget(self);
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.authorized(client().get(format!("{}{path}", self.url)))
            .send()
            .unwrap()
    }

    /// Adds this ledger's admin token, if it has one.
    pub fn authorized(
        &self,
        req: reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder {
        if self.token.is_empty() {
            req
        } else {
            req.bearer_auth(&self.token)
        }
    }

    /// Waits until the ledger has no ingest request in flight (its
    /// `aiaudit_inflight_requests` gauge reads 0): once every sender is idle
    /// too, a count read after this is final.
    pub fn wait_idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.metric("aiaudit_inflight_requests") != Some(0.0) {
            assert!(
                Instant::now() < deadline,
                "requests still in flight after 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until an agent has delivered everything it took (no pending batch).
    pub fn wait_agent_drained(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.agent_status()["pending_batches"] != 0 {
            assert!(
                Instant::now() < deadline,
                "the agent still has batches pending"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// An agent's `GET /v1/agent/status`.
    pub fn agent_status(&self) -> Value {
        self.authorized(client().get(format!("{}/v1/agent/status", self.url)))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    pub fn get_json(&self, path: &str) -> Value {
        let r = self.get(path);
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().unwrap()
    }

    /// GET that waits out 503 (e.g. an event not yet in a checkpoint).
    /// The value of one series on `/metrics` (`name` with its labels, if
    /// any, exactly as exported), or `None` when it is not exported.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = self.get("/metrics").text().unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    pub fn get_json_when_ready(&self, path: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.get(path);
            if r.status() != 503 || Instant::now() > deadline {
                assert!(r.status().is_success(), "GET {path}: {}", r.status());
                return r.json().unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn post(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::blocking::Response {
        self.authorized(client().post(format!("{}{path}", self.url)))
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap()
    }

    pub fn post_events(&self, events: &[Value]) -> Value {
        let r = self.post(
            "/v1/events",
            "application/json",
            serde_json::to_vec(events).unwrap(),
        );
        assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
        r.json().unwrap()
    }

    /// Waits until the published checkpoint covers `size` entries.
    pub fn wait_size(&self, size: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.get_json("/v1/info")["size"].as_u64().unwrap() >= size {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("checkpoint never reached size {size}");
    }
}

/// Stops the process the way an operator would (SIGTERM, and SIGCONT in
/// case a test froze it), so it exits through `main` and an instrumented
/// build writes its coverage profile (.ci/coverage); SIGKILL after 10 s.
impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = Command::new("kill").args(["-CONT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

/// For tests that count the log's entries exactly and read as they go:
/// without it, the ledger logs their reads too (`trail.access`, on by
/// default; tests/e2e/access.rs tests it).
pub const NO_ACCESS_LOG: &[&str] = &["--access-log", "false"];

/// A policy rule: a model call to the "deepseek" provider is a high violation.
pub const DEEPSEEK_RULE: &str = r#"
[[rule]]
id = "disallowed-provider"
description = "A model call went to an unapproved provider"
severity = "high"
condition = 'ai["gen_ai.provider.name"] == "deepseek"'
"#;

/// A policy rule: more than 1,000 input tokens is a medium violation.
pub const TOKEN_BUDGET_RULE: &str = r#"
[[rule]]
id = "token-budget"
description = "Too many tokens"
severity = "medium"
condition = '"gen_ai.usage.input_tokens" in ai && ai["gen_ai.usage.input_tokens"] > 1000'
"#;

/// GET `path` with `token`: the status and the JSON body (null if none).
pub fn get_as(server: &Server, token: &str, path: &str) -> (u16, serde_json::Value) {
    let r = client()
        .get(format!("{}{path}", server.url))
        .bearer_auth(token)
        .send()
        .unwrap();
    (
        r.status().as_u16(),
        r.json().unwrap_or(serde_json::Value::Null),
    )
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// `len` characters of random hex, for content that must stay large once
/// stored (compression takes it to about half, never less).
pub fn incompressible(len: usize) -> String {
    let mut s = String::with_capacity(len + 32);
    while s.len() < len {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(len);
    s
}

pub fn event(id: &str) -> Value {
    json!({"id": id, "time": "2026-11-27T09:14:03.120Z", "tenant": "acme",
           "source": {"name": "e2e"}, "actor": {"id": "tester", "type": "service"},
           "action": "model.invoke", "attributes": {"n": id}})
}

pub fn aiaudit(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("running aiaudit")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Waits for the line (starting `announce`, then the URL) in which a
/// server says where it listens, and returns that URL. The child's stderr
/// keeps being copied to the test's, so a failing test shows it.
///
/// Panics if the child exits first: its port was taken, or it refused its
/// flags; either way the test must not go on against whatever answers there.
fn listening(mut child: Child, announce: &str) -> (Child, String) {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let announce = announce.to_string();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("{line}");
            if let Some(rest) = line.strip_prefix(&announce) {
                let url = rest
                    .split_whitespace()
                    .find(|w| w.starts_with("http://") || w.starts_with("https://"))
                    .map(|w| w.trim_end_matches(',').to_string());
                if let (Some(url), Some(tx)) = (url, tx.take()) {
                    let _ = tx.send(url);
                }
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(url) => (child, url),
        Err(_) => {
            let status = child.try_wait().ok().flatten();
            let _ = child.kill();
            panic!("the server never said where it listens (exit status {status:?}; stderr above)")
        }
    }
}

/// The admin token a ledger wrote into its data directory on first start.
pub fn admin_token(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("admin.token"))
        .map(|t| t.trim().to_string())
        .unwrap_or_default()
}

/// Creates a ledger's data directory (and so its admin token) without keeping it running.
pub fn init_ledger(data_dir: &Path) -> String {
    let s = Server::start(data_dir);
    let token = s.token.clone();
    s.stop();
    token
}

/// A running `aiaudit agent` forwarding with `token`.
pub fn start_agent(ledger_url: &str, token: &str, spool: &Path) -> Server {
    start_agent_with(ledger_url, token, spool, &[])
}

/// A running `aiaudit agent` with extra flags, on a port it picks itself.
pub fn start_agent_with(ledger_url: &str, token: &str, spool: &Path, extra: &[&str]) -> Server {
    let listen = "127.0.0.1:0";
    let child = Command::new(BIN)
        .args([
            "agent",
            "--ledger-url",
            ledger_url,
            "--token",
            token,
            "--listen",
            listen,
            "--spool-dir",
        ])
        .arg(spool)
        .args(extra)
        .env("AIAUDIT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting aiaudit agent");
    let (child, url) = listening(child, "aiaudit agent: listening on ");
    let mut agent = Server {
        child,
        url,
        token: String::new(),
    };
    agent.wait_ready();
    // Applications authenticate with the agent's local token.
    agent.token = std::fs::read_to_string(spool.join("agent.token"))
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
    agent
}

/// Every entry id in the log, by index, read through the public tile API.
pub fn logged_ids(server: &Server, size: u64) -> Vec<String> {
    let mut ids = Vec::new();
    let mut start = 0;
    while start < size {
        let width = (size - start).min(256) as u16;
        let tile = Tile {
            kind: TileKind::Entries,
            index: start / 256,
            width,
        };
        let bytes = server.get(&format!("/{}", tile.path())).bytes().unwrap();
        for e in decode_entry_bundle(&bytes).unwrap() {
            ids.push(aiaudit_event::entry_id(e).unwrap());
        }
        start += width as u64;
    }
    ids
}

/// Asks `server` for a consistency proof from `old` to `new` and checks it.
pub fn assert_consistent(
    server: &Server,
    old: &aiaudit_tlog::Checkpoint,
    new: &aiaudit_tlog::Checkpoint,
) {
    use base64::Engine;
    let c = server.get_json(&format!(
        "/v1/proof/consistency?old={}&size={}",
        old.size, new.size
    ));
    let proof: Vec<[u8; 32]> = c["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            base64::engine::general_purpose::STANDARD
                .decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    aiaudit_tlog::check_tree(&proof, new.size, &new.root, old.size, &old.root)
        .unwrap_or_else(|_| panic!("checkpoint {} inconsistent with {}", old.size, new.size));
}

/// `aiaudit export` of one tenant's events into the bundle `out`.
pub fn export_bundle(server: &Server, tenant: &str, out: &Path) {
    let out = aiaudit(&[
        "export",
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--tenant",
        tenant,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `aiaudit verify --bundle … --json` with the log's key: the report.
pub fn verify_bundle(bundle: &Path, vkey: &str) -> Value {
    let out = aiaudit(&[
        "verify",
        "--bundle",
        bundle.to_str().unwrap(),
        "--vkey",
        vkey,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout(&out).trim()).unwrap()
}

/// Says that a test was skipped (a tool it needs is missing) where whoever
/// runs the tests sees it: straight to the process's stderr, which the test
/// runner does not capture (it shows captured output only for failures).
/// Under CI the caller fails instead of calling this.
pub fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {why}");
}

/// A new token from `aiaudit token create` against `server` (its admin
/// token), for `tenant` with `role` and any `extra` flags.
pub fn create_token(server: &Server, tenant: &str, role: &str, extra: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["token", "create", "--tenant", tenant, "--role", role])
        .args(extra)
        .args(["--url", &server.url, "--token", &server.token])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out).trim().to_string()
}

/// Copies a directory tree (a stopped ledger's data, to tamper with or fork).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn a_server_whose_port_is_taken_is_never_mistaken_for_the_one_there() {
    // The flake this guards against: a port picked for one test's ledger was
    // bound first by another's, whose /healthz then passed for both.
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(&dir.path().join("first"));
    let port: u16 = first.url.rsplit(':').next().unwrap().parse().unwrap();
    let second = dir.path().join("second");
    let started = std::panic::catch_unwind(|| Server::start_on(&second, port, &[]));
    assert!(
        started.is_err(),
        "a second ledger on a taken port was taken for ready"
    );
    // The first one is still the one answering.
    assert!(first.get("/healthz").status().is_success());
}
