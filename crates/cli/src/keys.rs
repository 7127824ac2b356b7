//! `aiaudit keys rotate|rotate-master|status`, `aiaudit erase` and
//! `aiaudit hash`: key management against a running ledger.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::process::ExitCode;

/// Where the ledger is and who asks.
#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// Base URL of the ledger.
    #[arg(
        long,
        env = "AIAUDIT_URL",
        global = true,
        default_value = "http://127.0.0.1:7381"
    )]
    url: String,
    /// An API token (admin for keys and erase).
    #[arg(long, env = "AIAUDIT_TOKEN", global = true)]
    token: Option<String>,
}

impl Remote {
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        self.call_waiting(method, path, body, None)
    }

    /// [`Remote::call`], waiting up to `wait` (instead of the client's
    /// minute) for an answer.
    fn call_waiting(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        wait: Option<std::time::Duration>,
    ) -> anyhow::Result<Value> {
        let token = self
            .token
            .as_deref()
            .context("a token is required (--token or AIAUDIT_TOKEN)")?;
        let base = self.url.trim_end_matches('/');
        let mut req = crate::blocking_client(None)?
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(wait) = wait {
            req = req.timeout(wait);
        }
        let resp = req
            .send()
            .with_context(|| format!("{method} {base}{path}"))?;
        let status = resp.status();
        let body: Value = resp.json().unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("HTTP {status}: {}", body["detail"].as_str().unwrap_or(""));
        }
        Ok(body)
    }
}

#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// New data keys for every tenant and subject; old ones keep decrypting. No downtime.
    Rotate,
    /// New master key; every data key re-wrapped under it. No downtime.
    RotateMaster,
    /// Key counts (never key material).
    Status,
}

pub fn run_keys(args: KeysArgs) -> anyhow::Result<ExitCode> {
    let r = &args.remote;
    // A rotation is a pass over every key: minutes at millions of data
    // subjects. It goes on in the ledger if this command is stopped, and
    // running the command again finishes it.
    let rotation = Some(std::time::Duration::from_secs(6 * 3600));
    let body = match args.command {
        KeysCommand::Rotate => {
            let bar = PassBar::watch(r, "rotate");
            let b = r.call_waiting(reqwest::Method::POST, "/v1/keys/rotate", None, rotation)?;
            drop(bar);
            eprintln!("rotated {} data key(s)", b["rotated"]);
            b
        }
        KeysCommand::RotateMaster => {
            let bar = PassBar::watch(r, "rotate-master");
            let b = r.call_waiting(
                reqwest::Method::POST,
                "/v1/keys/rotate-master",
                None,
                rotation,
            )?;
            drop(bar);
            eprintln!(
                "re-wrapped {} key(s) under a new master key",
                b["rewrapped"]
            );
            b
        }
        KeysCommand::Status => r.call(reqwest::Method::GET, "/v1/keys", None)?,
    };
    println!("{body}");
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on a terminal for a pass over the keyring, from
/// `/v1/keys`'s `in_progress`, read once a second until dropped.
struct PassBar {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PassBar {
    fn watch(remote: &Remote, operation: &'static str) -> PassBar {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return PassBar {
                stop: None,
                thread: None,
            };
        }
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let remote = remote.clone();
        let thread = std::thread::spawn(move || {
            let bar = indicatif::ProgressBar::hidden();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {human_pos}/{human_len} records, {eta} left",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_message(operation);
            loop {
                if let Ok(b) = remote.call(reqwest::Method::GET, "/v1/keys", None) {
                    let p = &b["keys"]["in_progress"];
                    if p["operation"] == operation {
                        if bar.is_hidden() {
                            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                        }
                        bar.set_length(p["records"].as_u64().unwrap_or(0));
                        bar.set_position(p["records_done"].as_u64().unwrap_or(0));
                    }
                }
                match stopped.recv_timeout(std::time::Duration::from_secs(1)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            }
            bar.finish_and_clear();
        });
        PassBar {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for PassBar {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Args, Debug)]
pub struct EraseArgs {
    #[command(flatten)]
    remote: Remote,
    /// The tenant whose subject is erased.
    #[arg(long)]
    tenant: String,
    /// The data subject (the events' `subject` field).
    #[arg(long)]
    subject: String,
    /// Log the erasure even when the subject has no live keys (no sealed
    /// event names it: often a typo or the wrong tenant), without asking.
    #[arg(long)]
    yes: bool,
    /// Only say what the erasure would destroy; change and log nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Crypto-shredding: destroys the subject's data keys; the erasure is logged.
/// A subject with no live keys is most often a typo or the wrong tenant,
/// and an erasure once logged stays in the log: that case is said and
/// confirmed first (a prompt on a terminal, `--yes` elsewhere).
pub fn run_erase(args: EraseArgs) -> anyhow::Result<ExitCode> {
    let who = json!({"tenant": args.tenant, "subject": args.subject});
    let preview = args.remote.call(
        reqwest::Method::POST,
        "/v1/erase/preview",
        Some(who.clone()),
    );
    match &preview {
        Ok(p) => {
            let (live, destroyed) = (p["live_keys"].as_u64(), p["destroyed_keys"].as_u64());
            let (live, destroyed) = (live.unwrap_or(0), destroyed.unwrap_or(0));
            if args.dry_run {
                println!("{p}");
                eprintln!(
                    "would destroy {live} key(s) of this subject in tenant {:?} ({destroyed} already destroyed); nothing changed",
                    args.tenant
                );
                return Ok(ExitCode::SUCCESS);
            }
            if live == 0 {
                eprintln!(
                    "aiaudit: warning: this subject has no live keys in tenant {:?} ({destroyed} destroyed earlier): no sealed event of it is stored there. A typo, or another tenant? Erasing logs the request anyway, and the record stays in the log.",
                    args.tenant
                );
                if !args.yes && !confirm("Log the erasure anyway?")? {
                    eprintln!("aiaudit: nothing erased or logged (--yes logs it without asking)");
                    return Ok(ExitCode::from(1));
                }
            }
        }
        // A ledger from before the preview: erase as it always did.
        Err(e)
            if e.to_string().starts_with("HTTP 404") || e.to_string().starts_with("HTTP 405") =>
        {
            if args.dry_run {
                anyhow::bail!(
                    "this ledger cannot preview an erasure (it predates /v1/erase/preview)"
                );
            }
        }
        Err(_) => {
            preview?;
        }
    }
    let body = args.remote.call(
        reqwest::Method::POST,
        "/v1/erase",
        Some(json!({"tenant": args.tenant, "subject": args.subject})),
    )?;
    eprintln!(
        "destroyed {} key(s); erasure logged as event {} at index {}",
        body["keys_destroyed"], body["erasure_event"]["id"], body["erasure_event"]["index"]
    );
    println!("{body}");
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal; no terminal means no.
fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

#[derive(Args, Debug)]
pub struct HashArgs {
    #[command(flatten)]
    remote: Remote,
    #[arg(long)]
    tenant: String,
    /// The known value (a sensitive field's content, or a subject).
    #[arg(long)]
    value: String,
}

/// Prints the HMAC a sensitive field holding `value` was replaced by.
pub fn run_hash(args: HashArgs) -> anyhow::Result<ExitCode> {
    let body = args.remote.call(
        reqwest::Method::POST,
        "/v1/hash",
        Some(json!({"tenant": args.tenant, "value": args.value})),
    )?;
    println!("{}", body["hmac"].as_str().unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}
