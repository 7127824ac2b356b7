//! `aiaudit dr drill`: a disaster-recovery rehearsal. Restores the latest
//! backup into a scratch directory, starts a real server on it, audits the
//! log through it, checks it is a prefix of the live log when one is
//! reachable, and measures RTO and RPO against the objectives.

use aiaudit_backup::{Location, Quiet};
use aiaudit_tlog::{Checkpoint, Verifier};
use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct DrArgs {
    #[command(subcommand)]
    command: DrCommand,
}

#[derive(Subcommand, Debug)]
enum DrCommand {
    /// Restore the latest backup, serve it, verify it, compare with the live log; report RTO and RPO.
    Drill(DrillArgs),
}

#[derive(Args, Debug)]
struct DrillArgs {
    /// Backup location: a directory or s3://bucket/prefix.
    #[arg(long)]
    from: String,
    /// The live ledger, to check the restored log is a prefix of it and measure the RPO.
    #[arg(long)]
    url: Option<String>,
    /// The verifier key to trust (default: the live ledger's, else the backup's own).
    #[arg(long)]
    vkey: Option<String>,
    /// The log's signing key (log.key): needed to start a server on the restored
    /// log; without it the drill audits the restored directory offline.
    #[arg(long)]
    signing_key: Option<PathBuf>,
    /// The master key, to also check that sealed content opens after the restore.
    #[arg(long)]
    master_key_file: Option<PathBuf>,
    /// Recovery time objective, e.g. 5m.
    #[arg(long, default_value = "5m")]
    rto_objective: String,
    /// Recovery point objective, e.g. 6h (the incremental backup interval).
    #[arg(long, default_value = "6h")]
    rpo_objective: String,
    /// Scratch directory (default: a new temporary one, removed afterwards).
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// JSON report on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DrArgs) -> anyhow::Result<ExitCode> {
    let DrCommand::Drill(args) = args.command;
    let rto_objective = duration(&args.rto_objective, "--rto-objective")?;
    let rpo_objective = duration(&args.rpo_objective, "--rpo-objective")?;
    let started = Instant::now();
    let temp;
    let scratch = match &args.scratch {
        Some(p) => p.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let data = scratch.join("data");
    let mut report = json!({"location": args.from, "scratch": data});
    let result = drill(&args, &data, started, &mut report);
    let rto = report["rto_seconds"].as_f64();
    let rpo = report["rpo_seconds"].as_f64();
    let rto_ok = rto.is_some_and(|r| r <= rto_objective.as_secs_f64());
    // Offline and with no creation time in the backup there is nothing to
    // hold against the objective; otherwise the backup's age is.
    let rpo_ok = match (&args.url, rpo) {
        (None, None) => true,
        (_, r) => r.is_some_and(|r| r <= rpo_objective.as_secs_f64()),
    };
    report["rto_objective_seconds"] = json!(rto_objective.as_secs());
    report["rpo_objective_seconds"] = json!(rpo_objective.as_secs());
    report["rto_met"] = json!(rto_ok);
    report["rpo_met"] = json!(rpo_ok);
    if let Err(e) = &result {
        report["error"] = json!(format!("{e:#}"));
    }
    let ok = result.is_ok() && rto_ok && rpo_ok;
    report["ok"] = json!(ok);
    if args.json {
        println!("{report}");
    } else {
        print_text(&report);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn duration(s: &str, flag: &str) -> anyhow::Result<Duration> {
    aiaudit_ledger::auth::parse_duration_secs(s)
        .map(Duration::from_secs)
        .with_context(|| format!("{flag}: {s:?} is not a duration such as 5m or 6h"))
}

fn drill(
    args: &DrillArgs,
    data: &Path,
    started: Instant,
    report: &mut Value,
) -> anyhow::Result<()> {
    let live = match &args.url {
        Some(url) => Some(live_checkpoint(url)?),
        None => None,
    };
    let vkey: Option<Verifier> = match (&args.vkey, &live) {
        (Some(k), _) => Some(crate::verify::load_vkey(k)?),
        (None, Some((_, v, _))) => Some(v.clone()),
        (None, None) => None,
    };
    report["key_pinned"] = json!(vkey.is_some());

    // 1. Restore.
    let location = Location::parse(&args.from)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let signing_key = args
        .signing_key
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let restored = runtime
        .block_on(aiaudit_backup::restore(
            &location,
            None,
            data,
            vkey.as_ref(),
            signing_key.as_deref(),
            &Quiet,
        ))
        .context("restoring")?;
    crate::backup::record_gate(data, &restored)?;
    let backup_created = runtime
        .block_on(location.manifests())?
        .into_iter()
        .find(|m| Some(&m.id) == restored.chain.last())
        .map(|m| m.created);
    report["restored"] = json!({"chain": restored.chain, "size": restored.size,
        "root": restored.root, "backup_created": backup_created});
    report["restore_seconds"] = json!(started.elapsed().as_secs_f64());
    let content_checked = args.master_key_file.is_some();
    if !content_checked {
        // Without the master key the keyring cannot open: serve without it
        // (integrity needs no key), and say content was not checked.
        let _ = std::fs::remove_file(data.join("keyring"));
    }
    report["content_checked"] = json!(content_checked);

    if signing_key.is_none() {
        // No signing key: audit the restored directory offline instead of serving it.
        report["served"] = json!(false);
        let verified =
            crate::verify::audit(&crate::verify::VerifyArgs::of_dir(data, vkey.as_ref()))?;
        report["verification"] = verified.to_json();
        if !verified.ok() {
            bail!("the restored log does not verify: {}", verified.to_json());
        }
        report["rto_seconds"] = json!(started.elapsed().as_secs_f64());
        return compare_with_live(&live, &restored, backup_created, report);
    }
    report["served"] = json!(true);

    // 2. Serve it: the real server, in this process.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let config = aiaudit_ledger::LedgerConfig {
        data_dir: data.to_path_buf(),
        listen: format!("127.0.0.1:{port}"),
        master_key_file: args.master_key_file.clone(),
        ..Default::default()
    };
    let mut server = DrillServer::start(config)?;
    let probe = crate::ledger_client(&url, None)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !probe.ready() {
        if let Some(result) = server.finished() {
            bail!("the drill server stopped before it was ready: {result:#}");
        }
        if Instant::now() > deadline {
            bail!("the drill server was not ready within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    report["serving_seconds"] = json!(started.elapsed().as_secs_f64());

    // 3. Audit the restored log through the server, from the entries up.
    let token = std::fs::read_to_string(data.join("admin.token"))?;
    let verified = crate::verify::audit(&crate::verify::VerifyArgs::of_url(
        &url,
        Some(token.trim()),
        vkey.as_ref(),
    ))?;
    report["verification"] = verified.to_json();
    if !verified.ok() {
        bail!("the restored log does not verify: {}", verified.to_json());
    }
    if content_checked {
        let client = crate::ledger_client(&url, Some(token.trim()))?;
        let e = client
            .entry(restored.size.saturating_sub(1))
            .unwrap_or(Value::Null);
        if !matches!(e["content"].as_str(), Some("sealed" | "plain" | "erased")) {
            bail!("content of the last restored event cannot be read: {e}");
        }
    }
    let rto = started.elapsed().as_secs_f64();
    report["rto_seconds"] = json!(rto);
    server.stop()?;
    compare_with_live(&live, &restored, backup_created, report)
}

/// Step 4: the restored log must be a prefix of the live one; how far behind is the RPO.
fn compare_with_live(
    live: &Option<(Checkpoint, Verifier, String)>,
    restored: &aiaudit_backup::RestoreReport,
    backup_created: Option<String>,
    report: &mut Value,
) -> anyhow::Result<()> {
    // What a restore from this backup would lose, in time: everything
    // logged since it was taken. With the live log gone (a lost region)
    // that is all there is to measure; with it, also the events behind.
    let rpo_seconds = backup_created
        .as_deref()
        .and_then(|c| {
            time::OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(|t| {
            (time::OffsetDateTime::now_utc() - t)
                .as_seconds_f64()
                .max(0.0)
        });
    report["rpo_seconds"] = json!(rpo_seconds);
    if let (Some((cp, _, url)), Some(root)) = (live, decode_root(&restored.root)) {
        let behind = cp.size.saturating_sub(restored.size);
        let consistent = crate::ledger_client(url, None)?
            .is_prefix((restored.size, &root), (cp.size, &cp.root))?;
        report["live"] =
            json!({"size": cp.size, "events_behind": behind, "consistent": consistent});
        report["rpo_events"] = json!(behind);
        if !consistent {
            bail!("the restored log is not a prefix of the live log (consistency proof fails)");
        }
    }
    Ok(())
}

fn decode_root(b64: &str) -> Option<[u8; 32]> {
    B64.decode(b64).ok()?.try_into().ok()
}

/// The live log's signed checkpoint, checked with its announced key.
fn live_checkpoint(url: &str) -> anyhow::Result<(Checkpoint, Verifier, String)> {
    let client = crate::ledger_client(url, None)?;
    let vkey = client
        .announced_key()
        .context("the live ledger's verifier key")?;
    let (cp, _) = client
        .checkpoint(&vkey)
        .context("the live checkpoint's signature")?;
    Ok((cp, vkey, client.base_url().to_string()))
}

/// The drill's server: `aiaudit serve` on the restored log, on a thread of
/// its own in this process; stopped (gracefully) however the drill ends.
struct DrillServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl DrillServer {
    fn start(config: aiaudit_ledger::LedgerConfig) -> anyhow::Result<DrillServer> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("drill-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(aiaudit_server::serve(config, async {
                    let _ = stopped.await;
                }))
            })?;
        Ok(DrillServer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The server's result if it already stopped (it failed to start).
    fn finished(&mut self) -> Option<anyhow::Error> {
        if !self.thread.as_ref()?.is_finished() {
            return None;
        }
        match self.thread.take()?.join() {
            Ok(Ok(())) => Some(anyhow::anyhow!("it exited")),
            Ok(Err(e)) => Some(e),
            Err(_) => Some(anyhow::anyhow!("it panicked")),
        }
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => bail!("the drill server panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for DrillServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn print_text(r: &Value) {
    let f = |v: &Value| v.as_f64().map_or("-".into(), |x| format!("{x:.1} s"));
    println!(
        "DR drill from {}: {}",
        r["location"].as_str().unwrap_or(""),
        if r["ok"] == true { "PASSED" } else { "FAILED" }
    );
    println!(
        "  restored: {} entries from {} (chain {})",
        r["restored"]["size"], r["restored"]["backup_created"], r["restored"]["chain"]
    );
    println!(
        "  RTO: {} (objective {} s, {}); restore {}, serving {}",
        f(&r["rto_seconds"]),
        r["rto_objective_seconds"],
        if r["rto_met"] == true {
            "met"
        } else {
            "MISSED"
        },
        f(&r["restore_seconds"]),
        f(&r["serving_seconds"])
    );
    if r["live"].is_object() {
        println!(
            "  RPO: {} behind the live log, {} events (objective {} s, {}); consistent with live: {}",
            f(&r["rpo_seconds"]),
            r["rpo_events"],
            r["rpo_objective_seconds"],
            if r["rpo_met"] == true { "met" } else { "MISSED" },
            r["live"]["consistent"]
        );
    } else if r["rpo_seconds"].is_number() {
        println!(
            "  RPO: at most {} lost (the backup's age; no --url of a live ledger to count events) (objective {} s, {})",
            f(&r["rpo_seconds"]),
            r["rpo_objective_seconds"],
            if r["rpo_met"] == true { "met" } else { "MISSED" },
        );
    } else {
        println!("  RPO: not measured (no --url of a live ledger, no creation time in the backup)");
    }
    if r["content_checked"] != true {
        println!("  content: not checked (no --master-key-file); integrity needs no key");
    }
    if let Some(e) = r["error"].as_str() {
        println!("  error: {e}");
    }
}
